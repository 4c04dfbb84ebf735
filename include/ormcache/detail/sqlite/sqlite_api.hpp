#pragma once
// The one place that includes <sqlite3.h>. Debian's (and most distributions') SQLite is built
// with SQLITE_ENABLE_PREUPDATE_HOOK, but the declarations are only visible when the macro is
// defined before the header. The ormcache::ormcache target and ormcache.pc define it on the
// command line, so the include order in the user's files does not matter; the #define below
// is the fallback for a build that only adds ormcache's include directory.

// <sqlite3.h> has no way to be re-read: once it was included without the macro, the preupdate
// declarations the change journal calls are gone for this translation unit, and the compiler
// would only say "'sqlite3_preupdate_hook' was not declared". SQLITE_VERSION_NUMBER is defined
// by every version of <sqlite3.h> (its include guard changed name over the years).
#if defined(SQLITE_VERSION_NUMBER) && !defined(SQLITE_ENABLE_PREUPDATE_HOOK)
#error \
    "ormcache: <sqlite3.h> was included before ormcache without SQLITE_ENABLE_PREUPDATE_HOOK, so the preupdate hook ormcache uses is not declared. Link the CMake target ormcache::ormcache or compile with `pkg-config --cflags ormcache` (both define it), or #define SQLITE_ENABLE_PREUPDATE_HOOK 1 before #include <sqlite3.h>, or include <ormcache/ormcache.hpp> first."
#endif

#ifndef SQLITE_ENABLE_PREUPDATE_HOOK
#define SQLITE_ENABLE_PREUPDATE_HOOK 1
#endif
#include <sqlite3.h>

#include <SQLiteCpp/Database.h>
#include <SQLiteCpp/Exception.h>
#include <SQLiteCpp/Statement.h>
