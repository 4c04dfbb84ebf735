// Second translation unit of every consumer project: the include order a new user reported
// as broken (issue 10), <sqlite3.h> before ormcache. It compiles only because the way the
// consumer found ormcache (a CMake target or `pkg-config --cflags ormcache`) defines
// SQLITE_ENABLE_PREUPDATE_HOOK on the command line. consumer_main.cpp covers the other order.
#ifndef SQLITE_ENABLE_PREUPDATE_HOOK
#error "this consumer path did not put SQLITE_ENABLE_PREUPDATE_HOOK on the command line"
#endif
#include <sqlite3.h>

#include <ormcache/ormcache.hpp>

#include <type_traits>

// Declared by <sqlite3.h> only when the macro was seen before it.
static_assert(std::is_function_v<decltype(sqlite3_preupdate_hook)>);

// Called by consumer_main.cpp so the TU is linked in. Nothing more is instantiated here: the
// point is the include order, and every consumer runs on a CI budget.
int consumer_sqlite_first() {
    ormcache::DatabaseConfig config{.connection_string = ":memory:"};
    return config.connection_string.empty() ? 1 : 0;
}
