#pragma once
// Header-only (the default) or compiled mode, as fmt and spdlog offer it. The non-template
// functions whose code is large or used by every program (the cache core, the SQLite hooks,
// change sets, the SQL text of a model) are defined under `#if ORMCACHE_DEFINITIONS`:
//
//  - header-only: every translation unit sees the definitions, `inline`;
//  - compiled (link ormcache::ormcache_compiled, which defines ORMCACHE_COMPILED): user
//    translation units see declarations only, and src/ormcache_compiled.cpp, built once
//    with ORMCACHE_BUILDING_LIBRARY as well, holds the one definition of each. Templates stay
//    in the headers either way.

#if defined(ORMCACHE_COMPILED) && !defined(ORMCACHE_BUILDING_LIBRARY)
#define ORMCACHE_DEFINITIONS 0
#else
#define ORMCACHE_DEFINITIONS 1
#endif

#if defined(ORMCACHE_COMPILED)
#define ORMCACHE_INLINE
#else
#define ORMCACHE_INLINE inline
#endif
