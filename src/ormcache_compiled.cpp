// The one definition of every function the headers define under ORMCACHE_DEFINITIONS
// (detail/util/linkage.hpp): the translation unit of ormcache::ormcache_compiled. Programs
// that link that target compile only declarations of these functions in their own
// translation units.

#ifndef ORMCACHE_BUILDING_LIBRARY
#error "src/ormcache_compiled.cpp is built by the ormcache_compiled target only"
#endif

#include <ormcache/ormcache.hpp>
// Not reached from the umbrella header: used by backends/redis.hpp only.
#include <ormcache/detail/util/percent_decoding.hpp>
