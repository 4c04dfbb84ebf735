#pragma once
// Databases of users behind a cache, for the backend tests: UsersFixture (the five seeded users
// with the SQL and the cache errors logged) and SlowDatabase (a second Database on the same file
// whose queries can be made slow, to hold a fill lock while another Database waits for it).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>

#include <ormcache/ormcache.hpp>

#include "backend_test_support.hpp"
#include "error_log.hpp"
#include "models.hpp"
#include "test_support.hpp"

namespace ormcache_test {

/// A SQLite file in a fresh directory with the users table (and the tables of `Extra`) behind
/// the cache of `base`, and unless `seed` is false the five users of seed_users(). Its SQL goes
/// to `log` (cleared once set up), the cache's errors to `errors`.
template <class... Extra>
struct UsersFixture {
    TempDir dir;
    SqlLog log;
    ErrorLog errors;
    std::string prefix;
    ormcache::CacheConfig config;
    std::unique_ptr<ormcache::Database> db;

    explicit UsersFixture(const ormcache::CacheConfig& base, bool seed = true)
        : prefix(base.key_prefix), config(base) {
        errors.attach(config);
        db = std::make_unique<ormcache::Database>(
            ormcache::DatabaseConfig{.connection_string = path(),
                                     .cache_config = config,
                                     .on_query = log.callback(),
                                     .busy_timeout = kBusyTimeout});
        db->create_all<app::User, Extra...>();
        if (seed)
            seed_users(*db);
        log.clear();
    }

    std::string path() const { return dir.file("app.db"); }
    /// Where the database's keys start: key_prefix + its identity + ":".
    std::string space() const { return prefix + db->cache_identity() + ":"; }
    ormcache::CacheStats stats() const { return db->cache_manager().stats(); }

    /// Renames a user through a fresh session and commits.
    void rename(std::int64_t id, const std::string& name) { rename_user(*db, id, name); }
};

/// A Database on `path` whose SELECTs sleep for `delay` while `slow` is set: a load that holds
/// its fill lease (the distributed lock) for that long. `selects` counts its SELECTs.
struct SlowDatabase {
    std::atomic<bool> slow{false};
    std::atomic<int> selects{0};
    std::chrono::milliseconds delay;
    ormcache::Database db;

    SlowDatabase(const std::string& path, const ormcache::CacheConfig& config,
                 std::chrono::milliseconds d)
        : delay(d),
          db(ormcache::DatabaseConfig{.connection_string = path,
                                      .cache_config = config,
                                      .on_query =
                                          [this](std::string_view sql) {
                                              if (!sql.starts_with("SELECT"))
                                                  return;
                                              ++selects;
                                              if (slow.load())
                                                  std::this_thread::sleep_for(delay);
                                          },
                                      .busy_timeout = kBusyTimeout}) {}

    /// What overlap() saw.
    struct Overlap {
        bool held = false;     ///< the read's SELECT started in time (it held the fill lock)
        bool read_ok = false;  ///< what the read returned
        std::chrono::steady_clock::duration waited{};  ///< how long `meanwhile` took
    };

    /// A read through this database that holds the fill lock while another waits: `read` (which
    /// returns whether it read the right thing) runs on a thread of its own with this database's
    /// SELECTs slow; once its SELECT has started, which is within `start_timeout` or never,
    /// `meanwhile` runs on the calling thread and is timed. Catch2 assertions are not
    /// thread-safe: `read` only returns its result, the caller asserts on it.
    template <class Read, class Meanwhile>
    Overlap overlap(Read&& read, Meanwhile&& meanwhile, std::chrono::milliseconds start_timeout) {
        Overlap o;
        slow = true;
        std::atomic<bool> read_ok{false};
        std::thread holder([&] { read_ok = read(); });
        o.held = eventually([&] { return selects.load() > 0; }, start_timeout);
        if (o.held) {
            const auto started = std::chrono::steady_clock::now();
            try {
                meanwhile();
            } catch (...) {
                holder.join();  // never leave the thread unjoined
                throw;
            }
            o.waited = std::chrono::steady_clock::now() - started;
        }
        holder.join();
        o.read_ok = read_ok;
        slow = false;
        selects = 0;
        return o;
    }
};

}  // namespace ormcache_test
