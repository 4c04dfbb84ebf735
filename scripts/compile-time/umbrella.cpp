// Compile-time probe (scripts/compile-time.sh): the umbrella header alone, no model.

#include <ormcache/ormcache.hpp>
