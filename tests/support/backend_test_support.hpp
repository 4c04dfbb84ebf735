#pragma once
// Small helpers the backend tests (test_redis*, test_memcached*, test_file*) share: key
// prefixes that keep tests apart on a shared server, ConfigError messages, polling with a
// deadline, and the five users most tests start from.

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <SQLiteCpp/SQLiteCpp.h>
#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <ormcache/ormcache.hpp>

#include "models.hpp"

namespace ormcache_test {

/// Writers queue for SQLite's write lock; under sanitizers on a loaded machine the default
/// 5 s can run out. These tests are about the cache, not about lock fairness.
inline constexpr std::chrono::milliseconds kBusyTimeout{60000};

/// A key prefix no other test (or earlier run against the same server) uses.
inline std::string unique_prefix(std::string_view label) {
    static std::atomic<int> counter{0};
    return "oct" + std::to_string(::getpid()) + "-" + std::to_string(++counter) + "-" +
           std::string(label) + ":";
}

/// The message of the ConfigError `fn` throws ("" if it throws nothing; other exceptions
/// propagate and fail the test).
template <class Fn>
std::string config_error(Fn&& fn) {
    try {
        fn();
    } catch (const ormcache::ConfigError& e) {
        return e.what();
    }
    return "";
}

/// The message of the ConfigError a Database whose cache is `backend` with `arguments` throws
/// ("" if none).
inline std::string config_error_for(const std::string& backend, const nlohmann::json& arguments) {
    ormcache::CacheConfig c;
    c.backend = backend;
    c.arguments = arguments;
    c.key_prefix = unique_prefix("cfg");
    return config_error(
        [&] { ormcache::Database db{ormcache::DatabaseConfig{.cache_config = c}}; });
}

/// Polls `condition` until it holds or `timeout` passes.
template <class Fn>
bool eventually(Fn&& condition, std::chrono::milliseconds timeout = std::chrono::seconds{10}) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
        if (condition())
            return true;
        std::this_thread::sleep_for(std::chrono::milliseconds{5});
    }
    return condition();
}

inline std::vector<std::string> names_of(const std::vector<app::User>& users) {
    std::vector<std::string> out;
    for (const auto& u : users)
        out.push_back(u.name);
    return out;
}

/// Adds and commits the five users the backend tests start from:
///   1 Ada, 2 Bob, 3 Cy, 4 Dee, 5 Eve
inline void seed_users(ormcache::Database& db) {
    auto s = db.session();
    ormcache::Repository<app::User> users{s};
    for (const char* name : {"Ada", "Bob", "Cy", "Dee", "Eve"})
        users.add({.name = name, .email = std::string(name) + "@example.org"});
    s.commit();
}

/// Renames user `id` through a fresh session of `db` (read past the cache) and commits.
inline void rename_user(ormcache::Database& db, std::int64_t id, const std::string& name) {
    auto s = db.session();
    ormcache::Repository<app::User> users{s};
    auto u = users.get(id, {.use_cache = false});
    u.name = name;
    users.update(u);
    s.commit();
}

/// The rows of the database file's outbox (docs/caching.md, "Across processes"): commits
/// whose delivery nobody has confirmed yet.
inline int outbox_rows(const std::string& database_path) {
    SQLite::Database db(database_path, SQLite::OPEN_READONLY);
    if (!db.tableExists("ormcache_outbox"))
        return 0;
    return db.execAndGet("SELECT count(*) FROM ormcache_outbox").getInt();
}

/// Runs `commit` in a forked child on a Database of its own on `database_path` with `cache`,
/// and waits for the child to exit (without running the parent's destructors). The child's
/// status: 0 when `commit` returned, 1 when it threw.
template <class Commit>
int commit_in_child(const std::string& database_path, const ormcache::CacheConfig& cache,
                    Commit&& commit) {
    const pid_t child = ::fork();
    if (child == 0) {
        int code = 1;
        try {
            ormcache::Database db(ormcache::DatabaseConfig{.connection_string = database_path,
                                                           .cache_config = cache});
            commit(db);
            code = 0;
        } catch (...) {
        }
        std::_Exit(code);
    }
    int status = 0;
    if (child < 0 || ::waitpid(child, &status, 0) != child || !WIFEXITED(status))
        return -1;
    return WEXITSTATUS(status);
}

/// The arguments for check_invalidation_goes_through_open_circuit(): quick timeouts, and a
/// circuit breaker that would stay open for ten minutes once a call fails.
inline nlohmann::json long_breaker_arguments() {
    return {{"socket_timeout_ms", 100}, {"connect_timeout_ms", 100}, {"retry_interval_ms", 600000}};
}

/// An invalidation is never held back by the circuit breaker that spares reads a timeout per
/// call (docs/reference.md, cache rule 7): the outbox keeper's, and the writer's own right after
/// its commit, try the server through the open circuit, and their success closes it. `f`: a
/// users fixture whose cache, on `server` (a ServerProcess), has long_breaker_arguments() and
/// an invalidation_bound of 200 ms; `unreachable`: the same cache (backend, key prefix, bound)
/// at an address that leads nowhere; `entry_key()` names the entry of user 1 once it is cached,
/// `present(key)` says whether the server holds it.
template <class Fixture, class Server, class EntryKey, class Present>
void check_invalidation_goes_through_open_circuit(Fixture& f, Server& server,
                                                  const ormcache::CacheConfig& unreachable,
                                                  EntryKey entry_key, Present present) {
    using Clock = std::chrono::steady_clock;
    using std::chrono::seconds;
    auto s = f.db->session();
    ormcache::Repository<app::User> users{s};
    users.get(1);
    const std::string key = entry_key();
    REQUIRE(present(key));
    // A read that times out on the paused server opens the circuit for ten minutes.
    const auto open_circuit = [&] {
        server.pause();
        users.get(2);
        server.resume();
    };
    {
        INFO(
            "a commit whose writer could not deliver it and exited: this process's keeper "
            "delivers it");
        open_circuit();
        REQUIRE(commit_in_child(f.path(), unreachable, [](ormcache::Database& db) {
                    rename_user(db, 1, "Ada (keeper)");
                }) == 0);
        const auto committed = Clock::now();
        CHECK(eventually([&] { return !present(key); }, seconds{20}));
        const auto elapsed = Clock::now() - committed;
        INFO("the stale entry went "
             << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()
             << " ms after the commit");
        CHECK(elapsed < seconds{10});
        CHECK(eventually([&] { return outbox_rows(f.path()) == 0; }, seconds{20}));
        // Its success closed the circuit: reads fill and hit the cache again.
        CHECK(users.get(1).name == "Ada (keeper)");
        f.log.clear();
        CHECK(users.get(1).name == "Ada (keeper)");
        CHECK(f.log.size() == 0);
        REQUIRE(present(key));
    }
    {
        INFO("a commit made once the server answers again: its writer delivers it at once");
        open_circuit();
        f.rename(1, "Ada (writer)");
        CHECK_FALSE(present(key));
        f.log.clear();
        CHECK(users.get(1).name == "Ada (writer)");
        CHECK(users.get(1).name == "Ada (writer)");
        CHECK(f.log.count("SELECT") == 1);  // the circuit is closed: the second get hits
    }
}

/// What `backend` holds at `key`, as a reader sees it without a lease: nothing for a miss, an
/// expired entry or another reader's lease. A backend deletes an expired entry it finds.
template <class B>
std::optional<ormcache::CacheValue> peek(B& backend, const std::string& key) {
    return backend.read(ormcache::ReadRequest{key, {}, std::nullopt, {}}).value;
}

/// Stores `value` at `key` unconditionally: a fill with no lease and no guards (a negative
/// `ttl`: never expires).
template <class B>
void put(B& backend, const std::string& key, ormcache::CacheValue value, ormcache::Ttl ttl) {
    backend.fill(ormcache::FillRequest{key, std::move(value), ttl, {}, {}});
}

}  // namespace ormcache_test
