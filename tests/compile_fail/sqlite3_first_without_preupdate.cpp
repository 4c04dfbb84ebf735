// EXPECT: <sqlite3\.h> was included before ormcache without SQLITE_ENABLE_PREUPDATE_HOOK
// Must not compile, with ormcache's own message: <sqlite3.h> seen without
// SQLITE_ENABLE_PREUPDATE_HOOK before ormcache. ormcache::ormcache defines the macro on the
// command line, so undefine it to stand for a build that does not pass the target's flags.
#undef SQLITE_ENABLE_PREUPDATE_HOOK
#include <sqlite3.h>

#include <ormcache/ormcache.hpp>

int main() {
    return 0;
}
