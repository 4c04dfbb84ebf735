// The program every consumer-project test builds and runs, whichever way it found ormcache:
// find_package after an install, add_subdirectory, FetchContent, or bare pkg-config flags.
// Uses only the public API (docs/reference.md, sections 2-5).
//
// Include order (issue 10): this TU includes ormcache before <sqlite3.h>;
// consumer_sqlite_first.cpp, linked into the same program, the other way round. The #undef
// stands for a build that adds only ormcache's include directory and none of the target's or
// the .pc's flags: ormcache's own headers must then define SQLITE_ENABLE_PREUPDATE_HOOK
// before they include <sqlite3.h>.
#undef SQLITE_ENABLE_PREUPDATE_HOOK
#include <ormcache/ormcache.hpp>
// The file backend is part of the core target: every consumer, pkg-config included, gets it.
#include <ormcache/backends/file.hpp>

// A block of its own, so that clang-format's include sorting keeps it after ormcache.
#include <sqlite3.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

// The CMake consumers (ORMCACHE_CONSUMER_WITH_BACKENDS) also include the backend headers, which
// proves that ormcache::redis / ormcache::memcached carry the hiredis / libmemcached include
// paths and libraries. The __has_include guard only exists while the backends are being
// written; it is true for every complete installation. The pkg-config consumer covers the
// core only: ormcache.pc does not describe the backends.
#ifdef ORMCACHE_CONSUMER_WITH_BACKENDS
#if __has_include(<ormcache/backends/redis.hpp>)
#include <ormcache/backends/redis.hpp>
#endif
#if __has_include(<ormcache/backends/memcached.hpp>)
#include <ormcache/backends/memcached.hpp>
#endif
#endif

namespace app {
struct User {
    std::int64_t id = 0;
    std::string name;
    std::string email;
    std::optional<std::int32_t> age{};
    std::chrono::system_clock::time_point created_at{};
};
ORMCACHE_MODEL(User, "users", id, name, email, age, created_at)
}  // namespace app

int consumer_sqlite_first();  // consumer_sqlite_first.cpp

int main() {
    if (consumer_sqlite_first() != 0)
        return 1;
    ormcache::Database db{ormcache::DatabaseConfig{.connection_string = ":memory:"}};
    db.create_all<app::User>();
    auto s = db.session();
    ormcache::Repository<app::User> users{s};
    auto u = users.add({.name = "Ada", .email = "a@b"});
    s.commit();
    return users.get(u.id).name == "Ada" ? 0 : 1;
}
