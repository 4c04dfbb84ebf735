// ormcache quick start, after Advanced Alchemy's caching quick start: configure a cache, read
// an entity twice (the second read comes from the cache, no SQL), change it, and watch the
// commit invalidate the cached copy.
//
// Build and run on a fresh Debian 12 machine: scripts/quickstart.sh

#include <chrono>
#include <cstdint>
#include <iostream>
#include <optional>
#include <string>

#include <ormcache/ormcache.hpp>

namespace app {

struct User {
    std::int64_t id = 0;  // primary key; 0 = assigned by SQLite on add()
    std::string name;
    std::string email;
    std::optional<std::int32_t> age{};
    std::chrono::system_clock::time_point created_at{};
};
ORMCACHE_MODEL(User, "users", id, name, email, age, created_at)

}  // namespace app

namespace {

int statements = 0;

void show_stats(const ormcache::CacheManager& manager) {
    const ormcache::CacheStats s = manager.stats();
    std::cout << "  cache: hits=" << s.hits << " misses=" << s.misses << " sets=" << s.sets
              << " invalidations=" << s.invalidations << " version_bumps=" << s.version_bumps
              << " | SQL statements so far: " << statements << '\n';
}

}  // namespace

int main() {
    // 1. Configure: SQLite plus an in-memory cache, entries live for an hour.
    ormcache::CacheConfig cache{
        .backend = "memory",  // or "dogpile.cache.memory", as in a config ported from Python
        .expiration_time = std::chrono::seconds{3600},
        .arguments = {{"max_entries", 10000}},
    };
    ormcache::Database db{ormcache::DatabaseConfig{
        .connection_string = ":memory:",
        .cache_config = cache,
        .on_query =
            [](std::string_view sql) {
                ++statements;
                std::cout << "  SQL: " << sql << '\n';
            },
    }};
    db.create_all<app::User>();
    ormcache::CacheManager& manager = db.cache_manager();

    ormcache::Session session = db.session();
    ormcache::Repository<app::User> users{session};

    std::cout << "add a user and commit\n";
    const app::User ada = users.add({.name = "Ada",
                                     .email = "ada@example.org",
                                     .age = 36,
                                     .created_at = std::chrono::system_clock::now()});
    session.commit();

    // 2. Read twice: the first read misses and loads, the second is served from the cache.
    std::cout << "first get (cache miss: one SELECT)\n";
    users.get(ada.id);
    show_stats(manager);
    std::cout << "second get (cache hit: no SQL)\n";
    const app::User cached = users.get(ada.id);
    show_stats(manager);

    // 3. Lists are cached too, under the model's list version.
    std::cout << "list twice\n";
    users.list(ormcache::OrderBy{&app::User::name});
    users.list(ormcache::OrderBy{&app::User::name});
    show_stats(manager);

    // 4. A committed change invalidates the entity and bumps the list version.
    std::cout << "update and commit (invalidates)\n";
    app::User changed = cached;
    changed.name = "Ada Lovelace";
    users.update(changed);
    session.commit();
    show_stats(manager);

    std::cout << "get again (miss, then fresh data)\n";
    const std::string name = users.get(ada.id).name;
    std::cout << "  -> " << name << '\n';
    show_stats(manager);

    // 5. Bypass the cache for one call.
    std::cout << "get with use_cache = false (always SQL)\n";
    users.get(ada.id, {.use_cache = false});
    show_stats(manager);

    const ormcache::CacheStats s = manager.stats();
    const bool ok = name == "Ada Lovelace" && s.hits >= 2 && s.invalidations >= 1;
    std::cout << (ok ? "quick start OK\n" : "quick start FAILED\n");
    return ok ? 0 : 1;
}
