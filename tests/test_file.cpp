// The file backend (backends/file.hpp) on real SQLite files. The backend contract
// (tests/contract/backend_contract.hpp, FileContract below) covers hits and misses with the SQL
// counted, invalidation across Database instances and processes, corrupt values, the stale-fill
// races of cache rule 6 (docs/reference.md), clear() by prefix, distributed_lock and an outage
// with its replay. Here: configuration, fail-open when the file cannot be opened or is not a
// database, the lease/guard protocol on the backend itself, TTL and the bounded sweep, surviving
// a restart, use after fork(), a soak of 8 threads, and the cache file's own view of an outage.
//
// Every test has its own temporary directory holding the application database and the cache
// file; the cache file is inspected with a plain SQLiteCpp connection.

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <SQLiteCpp/SQLiteCpp.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <latch>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <ormcache/backends/file.hpp>

#include "backend_contract.hpp"
#include "backend_test_support.hpp"
#include "error_log.hpp"
#include "gated_backend.hpp"
#include "models.hpp"
#include "test_support.hpp"
#include "users_fixture.hpp"

using namespace std::chrono_literals;

namespace {

using app::User;
using ormcache::CacheConfig;
using ormcache::Database;
using ormcache::DatabaseConfig;
using ormcache::FileBackend;
using ormcache::FileOptions;
using ormcache::Options;
using ormcache::OrderBy;
using ormcache::Repository;
using ormcache_test::ErrorLog;
using ormcache_test::eventually;
using ormcache_test::fill_gate;
using ormcache_test::kBusyTimeout;
using ormcache_test::names_of;
using ormcache_test::peek;
using ormcache_test::put;
using ormcache_test::rename_user;
using ormcache_test::SlowDatabase;
using ormcache_test::SqlLog;
using ormcache_test::TempDir;
using ormcache_test::with_fill_held;

CacheConfig file_config(const std::string& filename, std::string prefix = "aa:",
                        nlohmann::json extra = nlohmann::json::object()) {
    CacheConfig c;
    c.backend = "file";
    c.arguments = {{"filename", filename}, {"busy_timeout_ms", kBusyTimeout.count()}};
    for (const auto& [k, v] : extra.items())
        c.arguments[k] = v;
    c.key_prefix = std::move(prefix);
    return c;
}

/// A row of the cache file's entries table.
struct Entry {
    std::string key;
    std::optional<std::string> value;
    std::optional<std::int64_t> expires_at;
    std::optional<std::string> lease;
};

/// A plain SQLiteCpp connection to the cache file, to look at (and damage) what is stored.
class CacheFile {
  public:
    explicit CacheFile(const std::string& path)
        : db_(path, SQLite::OPEN_READWRITE, static_cast<int>(kBusyTimeout.count())) {}

    /// Entries whose key starts with `prefix` and contains `part`.
    std::vector<Entry> entries(const std::string& prefix = "", const std::string& part = "") {
        SQLite::Statement s(db_, "SELECT key, value, expires_at, lease FROM ormcache_entries");
        std::vector<Entry> out;
        while (s.executeStep()) {
            Entry e;
            e.key = s.getColumn(0).getString();
            if (e.key.rfind(prefix, 0) != 0 || e.key.find(part) == std::string::npos)
                continue;
            if (!s.getColumn(1).isNull())
                e.value = s.getColumn(1).getString();
            if (!s.getColumn(2).isNull())
                e.expires_at = s.getColumn(2).getInt64();
            if (!s.getColumn(3).isNull())
                e.lease = s.getColumn(3).getString();
            out.push_back(std::move(e));
        }
        return out;
    }

    /// The one entry whose key starts with `prefix` and contains `part`.
    Entry only(const std::string& prefix, const std::string& part) {
        auto found = entries(prefix, part);
        INFO("entries under " << prefix << " containing '" << part << "': " << found.size());
        REQUIRE(found.size() == 1);
        return found.front();
    }

    std::optional<std::int64_t> counter(const std::string& name) {
        SQLite::Statement s(db_, "SELECT value FROM ormcache_counters WHERE name = ?");
        s.bind(1, name);
        if (!s.executeStep())
            return std::nullopt;
        return s.getColumn(0).getInt64();
    }

    std::int64_t count(const std::string& where = "1") {
        return db_.execAndGet("SELECT count(*) FROM ormcache_entries WHERE " + where).getInt64();
    }

    void set_value(const std::string& key, const std::string& bytes) {
        SQLite::Statement s(db_, "UPDATE ormcache_entries SET value = ? WHERE key = ?");
        s.bind(1, bytes.data(), static_cast<int>(bytes.size()));
        s.bind(2, key);
        REQUIRE(s.exec() == 1);
    }

    SQLite::Database& db() { return db_; }

  private:
    SQLite::Database db_;
};

/// An application database with five committed users and a file cache next to it.
///   1 Ada, 2 Bob, 3 Cy, 4 Dee, 5 Eve
struct Fixture {
    TempDir dir;
    SqlLog log;
    ErrorLog errors;
    CacheConfig config;
    std::unique_ptr<Database> db;

    explicit Fixture(nlohmann::json extra = nlohmann::json::object(), std::string prefix = "aa:")
        : config(file_config(dir.file("cache.db"), std::move(prefix), std::move(extra))) {
        errors.attach(config);
        db = open(config, log);
        db->create_all<User>();
        ormcache_test::seed_users(*db);
        log.clear();
    }

    std::unique_ptr<Database> open(const CacheConfig& c, SqlLog& sql) const {
        return std::make_unique<Database>(DatabaseConfig{.connection_string = app_path(),
                                                         .cache_config = c,
                                                         .on_query = sql.callback(),
                                                         .busy_timeout = kBusyTimeout});
    }

    std::string app_path() const { return dir.file("app.db"); }
    std::string cache_path() const { return dir.file("cache.db"); }
    const std::string& prefix() const { return config.key_prefix; }
    /// Where the database's keys start: key_prefix + its identity + ":".
    std::string space() const { return prefix() + db->cache_identity() + ":"; }
    ormcache::CacheStats stats() const { return db->cache_manager().stats(); }
};

std::string config_error_for(const nlohmann::json& arguments) {
    return ormcache_test::config_error_for("file", arguments);
}

/// The application database of the fail-open tests, in `dir`: one committed user (1 Ada),
/// behind a file cache at `cache_path` that is tried again on every call (retry_interval_ms 0),
/// its SQL (from the first read on) and cache errors logged.
struct OneUserApp {
    ErrorLog errors;
    SqlLog log;
    std::unique_ptr<Database> db;

    OneUserApp(const TempDir& dir, const std::string& cache_path) {
        auto c = file_config(cache_path, "aa:", {{"retry_interval_ms", 0}});
        errors.attach(c);
        db = std::make_unique<Database>(DatabaseConfig{.connection_string = dir.file("app.db"),
                                                       .cache_config = c,
                                                       .on_query = log.callback()});
        db->create_all<User>();
        auto s = db->session();
        Repository<User> users{s};
        users.add({.name = "Ada", .email = "a@example.org"});
        s.commit();
        log.clear();
    }

    ormcache::CacheStats stats() const { return db->cache_manager().stats(); }
};

using ormcache_contract::run_in_child;

ormcache::CacheValue bytes(std::string text) {
    return ormcache::CacheValue{std::move(text), nullptr};
}

/// The file backend with its fills held at fill_gate() when armed, as "file-gated".
void register_gated_backend() {
    ormcache_test::register_gated_backend<FileBackend, ormcache::detail::file_options>(
        "file-gated");
}

/// The contract of tests/contract/backend_contract.hpp: a cache file in the test's scratch
/// directory.
struct FileContract {
    static constexpr std::string_view name = "file";
    static constexpr bool shared = true;
    static constexpr bool shared_across_processes = true;
    static constexpr bool distributed_lock = true;
    static constexpr bool gated = true;
    static constexpr bool inspectable = true;

    static CacheConfig config(const TempDir& scratch, std::string_view label,
                              const nlohmann::json& extra) {
        return file_config(scratch.file("cache.db"), ormcache_test::unique_prefix(label), extra);
    }
    static void make_gated(CacheConfig& c) {
        register_gated_backend();
        c.backend = "file-gated";
    }
    static constexpr bool faults = true;
    static constexpr bool replays = true;
    /// Another connection holds the cache file's write lock until end().
    struct Outage {
        CacheFile file;
        explicit Outage(const CacheConfig& c)
            : file(c.arguments.at("filename").get<std::string>()) {
            file.db().exec("BEGIN IMMEDIATE");
        }
        void end() { file.db().exec("COMMIT"); }
    };
    static nlohmann::json fault_arguments() { return {{"busy_timeout_ms", 50}}; }

    /// Entries (leases included) and counters.
    static std::vector<std::string> keys(const CacheConfig& c, const std::string& start) {
        const auto filename = c.arguments.at("filename").get<std::string>();
        std::vector<std::string> out;
        if (!std::filesystem::exists(filename))
            return out;
        CacheFile file(filename);
        for (const auto& e : file.entries(start))
            out.push_back(e.key);
        SQLite::Statement s(file.db(), "SELECT name FROM ormcache_counters");
        while (s.executeStep()) {
            std::string name = s.getColumn(0).getString();
            if (name.rfind(start, 0) == 0)
                out.push_back(std::move(name));
        }
        return out;
    }
};

}  // namespace

ORMCACHE_BACKEND_CONTRACT(FileContract, "[file]");

// ---- configuration ---------------------------------------------------------------------

TEST_CASE("file: a bad configuration is a ConfigError naming the field", "[file][config]") {
    CHECK_THAT(config_error_for(nlohmann::json::object()),
               Catch::Contains("CacheConfig::arguments.filename"));
    CHECK_THAT(config_error_for({{"filename", ""}}),
               Catch::Contains("CacheConfig::arguments.filename"));
    CHECK_THAT(config_error_for({{"filename", 42}}),
               Catch::Contains("CacheConfig::arguments.filename"));
    CHECK_THAT(config_error_for({{"filename", "c.db"}, {"busy_timeout_ms", "5"}}),
               Catch::Contains("CacheConfig::arguments.busy_timeout_ms"));
    CHECK_THAT(config_error_for({{"filename", "c.db"}, {"busy_timeout_ms", -1}}),
               Catch::Contains("CacheConfig::arguments.busy_timeout_ms"));
    CHECK_THAT(config_error_for({{"filename", "c.db"}, {"sweep_limit", 0}}),
               Catch::Contains("CacheConfig::arguments.sweep_limit"));
    CHECK_THAT(config_error_for({{"filename", "c.db"}, {"sweep_every", 1.5}}),
               Catch::Contains("CacheConfig::arguments.sweep_every"));
    CHECK_THAT(config_error_for({{"filename", "c.db"}, {"pool_size", 0}}),
               Catch::Contains("CacheConfig::arguments.pool_size"));
    const auto unknown = config_error_for({{"filename", "c.db"}, {"path", "x"}});
    CHECK_THAT(unknown, Catch::Contains("CacheConfig::arguments.path"));
    for (const char* known :
         {"filename", "busy_timeout_ms", "sweep_every", "sweep_limit", "pool_size",
          "retry_interval_ms", "distributed_lock", "lock_timeout_ms"}) {
        CHECK_THAT(unknown, Catch::Contains(known));
    }

    CHECK_THAT(config_error_for({{"filename", "c.db"}, {"distributed_lock", "yes"}}),
               Catch::Contains("CacheConfig::arguments.distributed_lock"));
    CHECK_THAT(config_error_for({{"filename", "c.db"}, {"lock_timeout_ms", 0}}),
               Catch::Contains("CacheConfig::arguments.lock_timeout_ms"));
    const auto o = ormcache::detail::file_options({{"filename", "c.db"},
                                                   {"busy_timeout_ms", 250},
                                                   {"sweep_every", 0},
                                                   {"sweep_limit", 7},
                                                   {"pool_size", 3},
                                                   {"retry_interval_ms", 0},
                                                   {"distributed_lock", true},
                                                   {"lock_timeout_ms", 300}});
    CHECK(o.filename == "c.db");
    CHECK(o.busy_timeout == 250ms);
    CHECK(o.sweep_every == 0);
    CHECK(o.sweep_limit == 7);
    CHECK(o.pool_size == 3);
    CHECK(o.retry_interval == 0ms);
    CHECK(o.distributed_lock);
    CHECK(o.lock_timeout == 300ms);
    const auto defaults = ormcache::detail::file_options({{"filename", "c.db"}});
    CHECK(defaults.busy_timeout == 5000ms);
    CHECK(defaults.sweep_every == 1000);
    CHECK(defaults.sweep_limit == 100);
}

TEST_CASE("file: the seed's spelling dogpile.cache.dbm is the file backend", "[file][config]") {
    TempDir dir;
    auto c = file_config(dir.file("cache.db"));
    c.backend = "dogpile.cache.dbm";
    ormcache::CacheManager manager{c};
    CHECK(manager.get_or_create<std::string>("k", [] { return std::string("v"); }) == "v");
    CHECK(manager.get_or_create<std::string>("k", [] { return std::string("other"); }) == "v");
    CHECK(manager.stats().hits == 1);
    CacheFile file(dir.file("cache.db"));
    CHECK(file.only("aa:r:k", "").value.value().find("\"v\"") != std::string::npos);
}

TEST_CASE("file: a file that cannot be opened is not a ConfigError; the cache opens it later",
          "[file][config][failure]") {
    TempDir dir;
    const auto missing = dir.path() / "not-yet" / "cache.db";
    OneUserApp app(dir, missing.string());
    {
        auto s = app.db->session();
        Repository<User> users{s};
        // Served from the database every time; every failure counted.
        CHECK(users.get(1).name == "Ada");
        CHECK(users.get(1).name == "Ada");
        CHECK(app.log.count("SELECT") == 2);
        CHECK(app.stats().hits == 0);
        CHECK(app.stats().errors >= 2);
        CHECK(app.errors.count() == 1);  // one outage, reported once
        {
            const auto reported = app.errors.entries();
            REQUIRE_FALSE(reported.empty());
            CHECK(reported.front().backend == "file");
            CHECK(reported.front().operation == "open");
        }
    }
    // The directory appears: the next call opens the file and the cache works.
    std::filesystem::create_directories(missing.parent_path());
    auto s = app.db->session();
    Repository<User> users{s};
    const auto errors_before = app.stats().errors;
    CHECK(users.get(1).name == "Ada");
    app.log.clear();
    CHECK(users.get(1).name == "Ada");
    CHECK(app.log.size() == 0);
    CHECK(app.stats().hits == 1);
    CHECK(app.stats().errors == errors_before);
    CHECK(std::filesystem::exists(missing));
}

TEST_CASE("file: a cache file that is not a database fails open", "[file][failure][corrupt]") {
    TempDir dir;
    {
        std::ofstream garbage(dir.file("cache.db"), std::ios::binary);
        for (int i = 0; i < 512; ++i)
            garbage << "this is not a SQLite database. ";
    }
    OneUserApp app(dir, dir.file("cache.db"));  // the commit's invalidation failed: absorbed
    auto s = app.db->session();
    Repository<User> users{s};
    CHECK(users.get(1).name == "Ada");
    CHECK(users.list().size() == 1);
    CHECK(users.get(1).name == "Ada");
    CHECK(app.log.count("SELECT") == 3);
    CHECK(app.stats().hits == 0);
    CHECK(app.stats().errors >= 3);
    CHECK(app.errors.count() == 1);
}

// ---- the protocol on the backend itself ------------------------------------------------

TEST_CASE("file backend: leases, guards, invalidation and TTL", "[file][protocol]") {
    TempDir dir;
    FileBackend backend(FileOptions{.filename = dir.file("cache.db")}, "p:");
    using ormcache::FillRequest;
    using ormcache::ReadRequest;

    // Counters are created from the clock (microseconds since the epoch) on first read.
    const auto before = std::chrono::duration_cast<std::chrono::microseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    auto first = backend.read(ReadRequest{"p:e:1", {"p:g:t"}, 30000ms, {}});
    REQUIRE(first.counters.size() == 1);
    CHECK(first.counters[0] >= before);
    CHECK_FALSE(first.value.has_value());
    REQUIRE_FALSE(first.lease.empty());
    CacheFile file(dir.file("cache.db"));
    CHECK(file.counter("p:g:t") == first.counters[0]);
    const Entry lease_row = file.only("p:e:1", "");
    CHECK(lease_row.lease == first.lease);
    CHECK_FALSE(lease_row.value.has_value());
    REQUIRE(lease_row.expires_at.has_value());

    // A second reader finds the lease: a miss, no lease of its own.
    auto second = backend.read(ReadRequest{"p:e:1", {"p:g:t"}, 30000ms, {}});
    CHECK_FALSE(second.value.has_value());
    CHECK(second.lease.empty());
    CHECK(second.locked_elsewhere);
    CHECK(second.counters == first.counters);

    // A fill with another token, or with a guard that moved, does not land.
    CHECK_FALSE(backend.fill(FillRequest{"p:e:1", bytes("x"), 60000ms, "not-the-lease", {}}));
    CHECK_FALSE(backend.fill(FillRequest{
        "p:e:1", bytes("x"), 60000ms, first.lease, {{"p:g:t", first.counters[0] - 1}}}));
    // ... and the failed guard gave the lease back.
    CHECK(file.entries("p:e:1").empty());

    // Lease, fill under it with the right guard: a hit for everyone.
    auto third = backend.read(ReadRequest{"p:e:1", {"p:g:t"}, 30000ms, {}});
    REQUIRE_FALSE(third.lease.empty());
    CHECK(backend.fill(
        FillRequest{"p:e:1", bytes("one"), 60000ms, third.lease, {{"p:g:t", third.counters[0]}}}));
    auto hit = backend.read(ReadRequest{"p:e:1", {"p:g:t"}, 30000ms, {}});
    REQUIRE(hit.value.has_value());
    CHECK(hit.value->bytes == "one");
    CHECK(hit.lease.empty());
    CHECK(peek(backend, "p:e:1").value().bytes == "one");
    const Entry stored = file.only("p:e:1", "");
    CHECK_FALSE(stored.lease.has_value());
    const auto now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                            std::chrono::system_clock::now().time_since_epoch())
                            .count();
    REQUIRE(stored.expires_at.has_value());
    CHECK(*stored.expires_at > now_ms + 50000);
    CHECK(*stored.expires_at <= now_ms + 60000);

    // An invalidation cancels a lease taken before it: the fill that follows is refused.
    auto leased = backend.read(ReadRequest{"p:e:2", {"p:g:t"}, 30000ms, {}});
    REQUIRE_FALSE(leased.lease.empty());
    backend.invalidate(ormcache::InvalidationBatch{{"p:e:1", "p:e:2"}, {"p:v:t", "p:g:t"}, {}});
    CHECK(file.counter("p:g:t") == first.counters[0] + 1);
    REQUIRE(file.counter("p:v:t").has_value());
    CHECK(*file.counter("p:v:t") >= before + 1);  // created from the clock, then bumped
    CHECK_FALSE(backend.fill(FillRequest{"p:e:2", bytes("old"), 60000ms, leased.lease, {}}));
    CHECK(file.entries("p:e:").empty());
    CHECK_FALSE(peek(backend, "p:e:1").has_value());

    // Stored and read without leases; negative TTL = never; an invalidation deletes it.
    put(backend, "p:r:a", bytes("forever"), ormcache::Ttl{-1});
    CHECK_FALSE(file.only("p:r:a", "").expires_at.has_value());
    CHECK(peek(backend, "p:r:a").value().bytes == "forever");
    backend.invalidate(ormcache::InvalidationBatch{{"p:r:a"}, {}, {}});
    CHECK_FALSE(peek(backend, "p:r:a").has_value());

    // An expired value is a miss, deleted by the read that finds it; an expired lease (a
    // holder that died) is replaced by the next reader's.
    put(backend, "p:r:short", bytes("soon gone"), 1ms);
    std::this_thread::sleep_for(5ms);
    CHECK_FALSE(peek(backend, "p:r:short").has_value());
    CHECK(file.entries("p:r:short").empty());
    auto dead = backend.read(ReadRequest{"p:e:3", {}, 1ms, {}});
    REQUIRE_FALSE(dead.lease.empty());
    std::this_thread::sleep_for(5ms);
    auto next = backend.read(ReadRequest{"p:e:3", {}, 30000ms, {}});
    REQUIRE_FALSE(next.lease.empty());
    CHECK(next.lease != dead.lease);
    CHECK_FALSE(backend.fill(FillRequest{"p:e:3", bytes("late"), 60000ms, dead.lease, {}}));
    CHECK(backend.fill(FillRequest{"p:e:3", bytes("fresh"), 60000ms, next.lease, {}}));
    CHECK(peek(backend, "p:e:3").value().bytes == "fresh");

    // A counters-only read (the snapshot guard of begin()) reads many counters at once.
    auto counters = backend.read(ReadRequest{"", {"p:v:t", "p:g:t", "p:v:new"}, std::nullopt, {}});
    REQUIRE(counters.counters.size() == 3);
    CHECK(counters.counters[0] == file.counter("p:v:t"));
    CHECK(counters.counters[1] == file.counter("p:g:t"));
    CHECK(counters.counters[2] == file.counter("p:v:new"));
}

TEST_CASE("file backend: a stale value is leased over in the same read", "[file][protocol]") {
    TempDir dir;
    FileBackend backend(FileOptions{.filename = dir.file("cache.db")}, "p:");
    using ormcache::ReadRequest;
    const auto counter = backend.read(ReadRequest{"", {"p:v:t"}, std::nullopt, {}}).counters[0];
    const std::string current = "oc1 " + std::to_string(counter) + " 0\n[1]";
    const std::string stale = "oc1 " + std::to_string(counter - 1) + " 0\n[0]";

    put(backend, "p:q:current", bytes(current), 60000ms);
    put(backend, "p:q:stale", bytes(stale), 60000ms);
    // A current value is a hit, with or without a lease asked.
    auto hit = backend.read(ReadRequest{"p:q:current", {"p:v:t"}, 30000ms, "oc1 "});
    REQUIRE(hit.value.has_value());
    CHECK(hit.value->bytes == current);
    CHECK(hit.lease.empty());
    // Without a lease the stale value is returned as it is (the CacheManager re-checks it) ...
    auto plain = backend.read(ReadRequest{"p:q:stale", {"p:v:t"}, std::nullopt, "oc1 "});
    REQUIRE(plain.value.has_value());
    CHECK(plain.value->bytes == stale);
    // ... with one, the read leases over it in the same step.
    auto leased = backend.read(ReadRequest{"p:q:stale", {"p:v:t"}, 30000ms, "oc1 "});
    CHECK_FALSE(leased.value.has_value());
    REQUIRE_FALSE(leased.lease.empty());
    CacheFile file(dir.file("cache.db"));
    const Entry row = file.only("p:q:stale", "");
    CHECK(row.lease == leased.lease);
    CHECK_FALSE(row.value.has_value());
    // Another reader's lease is never taken over.
    auto other = backend.read(ReadRequest{"p:q:stale", {"p:v:t"}, 30000ms, "oc1 "});
    CHECK(other.lease.empty());
    CHECK(other.locked_elsewhere);
    CHECK(file.only("p:q:stale", "").lease == leased.lease);
}

TEST_CASE("file backend: the bounded sweep deletes at most sweep_limit expired rows",
          "[file][sweep]") {
    TempDir dir;
    FileBackend backend(
        FileOptions{.filename = dir.file("cache.db"), .sweep_every = 3, .sweep_limit = 4}, "p:");
    put(backend, "p:keep", bytes("kept"), 60000ms);  // write 1
    backend.invalidate({});                          // nothing to invalidate: not a write
    // Ten rows that expired long ago, written directly: rows nobody reads again are what
    // only a sweep can purge.
    CacheFile file(dir.file("cache.db"));
    for (int i = 0; i < 10; ++i) {
        SQLite::Statement insert(
            file.db(), "INSERT INTO ormcache_entries (key, value, expires_at) VALUES (?, 'x', 1)");
        insert.bind(1, "p:old:" + std::to_string(i));
        insert.exec();
    }
    REQUIRE(file.count("expires_at <= 1") == 10);
    put(backend, "p:w2", bytes("2"), 60000ms);
    CHECK(file.count("expires_at <= 1") == 10);  // two writes: no sweep yet
    put(backend, "p:w3", bytes("3"), 60000ms);
    CHECK(file.count("expires_at <= 1") == 6);  // the third write swept 4
    backend.invalidate(ormcache::InvalidationBatch{{"p:none"}, {"p:v:t"}, {}});  // write 4
    put(backend, "p:w5", bytes("5"), 60000ms);
    CHECK(file.count("expires_at <= 1") == 6);
    put(backend, "p:w6", bytes("6"), 60000ms);
    CHECK(file.count("expires_at <= 1") == 2);
    CHECK(backend.sweep() == 2);  // and on demand
    CHECK(file.count("expires_at <= 1") == 0);
    CHECK(backend.sweep() == 0);
    // Rows that have not expired are never swept: keep, w2, w3, w5, w6.
    CHECK(file.count() == 5);
    CHECK(peek(backend, "p:keep").value().bytes == "kept");
}

// ---- TTL through a repository ------------------------------------------------------------

TEST_CASE("file: entries expire after expiration_time", "[file][ttl]") {
    Fixture f;
    auto s = f.db->session();
    Repository<User> users{s};
    const auto now_ms = [] {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
            .count();
    };
    const auto t0 = now_ms();
    CHECK(users.get(1, {.expiration_time = 1s}).name == "Ada");
    CHECK(users.get(2).name == "Bob");  // the config's 3600 s
    CacheFile file(f.cache_path());
    const auto short_lived = file.only(f.space() + "e:users:", ":i1").expires_at.value();
    const auto long_lived = file.only(f.space() + "e:users:", ":i2").expires_at.value();
    CHECK(short_lived >= t0 + 1000);
    CHECK(short_lived <= now_ms() + 1000);
    CHECK(long_lived >= t0 + 3600 * 1000);

    f.log.clear();
    CHECK(users.get(1).name == "Ada");
    CHECK(f.log.size() == 0);
    std::this_thread::sleep_for(std::chrono::milliseconds(short_lived - now_ms() + 20));
    CHECK(users.get(1).name == "Ada");  // expired: a miss, read from the database, refilled
    CHECK(f.log.count("SELECT") == 1);
    CHECK(users.get(2).name == "Bob");
    CHECK(f.log.count("SELECT") == 1);
    CHECK(f.stats().errors == 0);
}

// ---- across Database instances, processes and restarts -----------------------------------

TEST_CASE("file: the cache survives a restart of the process", "[file][process]") {
    TempDir dir;
    const std::string app = dir.file("app.db");
    const CacheConfig config = file_config(dir.file("cache.db"));
    {
        Database db{DatabaseConfig{.connection_string = app}};  // no cache: just the data
        db.create_all<User>();
        auto s = db.session();
        Repository<User> users{s};
        for (const char* name : {"Ada", "Bob", "Cy"}) {
            users.add({.name = name, .email = std::string(name) + "@example.org"});
        }
        s.commit();
    }
    // The first "run" of the application fills the cache and exits.
    const int code = run_in_child([&] {
        Database db{DatabaseConfig{.connection_string = app, .cache_config = config}};
        auto s = db.session();
        Repository<User> users{s};
        for (std::int64_t id = 1; id <= 3; ++id)
            users.get(id);
        users.list(OrderBy{&User::name});
        const auto stats = db.cache_manager().stats();
        return stats.sets == 4 && stats.errors == 0 ? 0 : 3;
    });
    REQUIRE(code == 0);

    // The second run: a fresh Database finds everything in the file.
    SqlLog log;
    Database db{DatabaseConfig{
        .connection_string = app, .cache_config = config, .on_query = log.callback()}};
    auto s = db.session();
    Repository<User> users{s};
    CHECK(users.get(1).name == "Ada");
    CHECK(users.get(3).name == "Cy");
    CHECK(names_of(users.list(OrderBy{&User::name})) ==
          std::vector<std::string>{"Ada", "Bob", "Cy"});
    CHECK(log.size() == 0);
    CHECK(db.cache_manager().stats().hits == 3);
    CHECK(db.cache_manager().stats().misses == 0);
}

TEST_CASE("file: a backend used before fork() works in the child and stays intact in the parent",
          "[file][process]") {
    TempDir dir;
    FileBackend backend(FileOptions{.filename = dir.file("cache.db")}, "p:");
    put(backend, "p:parent", bytes("from parent"), 60000ms);  // a pooled connection is open now
    const int code = run_in_child([&] {
        // The inherited connection is abandoned (never used, never closed); a new one opens.
        auto seen = peek(backend, "p:parent");
        if (!seen || seen->bytes != "from parent")
            return 3;
        put(backend, "p:child", bytes("from child"), 60000ms);
        return 0;
    });
    REQUIRE(code == 0);
    CHECK(peek(backend, "p:child").value().bytes == "from child");
    put(backend, "p:parent2", bytes("again"), 60000ms);
    CacheFile file(dir.file("cache.db"));
    CHECK(file.entries("p:").size() == 3);
    CHECK(file.db().execAndGet("PRAGMA integrity_check").getString() == "ok");
}

TEST_CASE("file: 8 processes opening a new cache file at once all open it", "[file][process]") {
    // The first open switches the file to WAL, which needs the file to itself: SQLite answers
    // the others "database is locked" at once (their busy timeout does not cover it), and a
    // process that took that as "cache down" kept its invalidations to itself for a while.
    constexpr int processes = 8;
    for (int round = 0; round < 10; ++round) {
        TempDir dir;
        const std::string path = dir.file("cache.db");
        int go[2];
        REQUIRE(::pipe(go) == 0);
        std::vector<pid_t> children;
        for (int i = 0; i < processes; ++i) {
            const pid_t pid = ::fork();
            REQUIRE(pid >= 0);
            if (pid == 0) {
                ::close(go[1]);
                char start = 0;
                if (::read(go[0], &start, 1) != 1)
                    ::_exit(2);
                try {
                    FileBackend backend(FileOptions{.filename = path}, "p:");
                    put(backend, "p:k" + std::to_string(i), bytes("v"), 60000ms);
                } catch (...) {
                    ::_exit(1);
                }
                ::_exit(0);
            }
            children.push_back(pid);
        }
        ::close(go[0]);
        const std::string start(processes, 'x');  // every child starts at once
        REQUIRE(::write(go[1], start.data(), start.size()) == processes);
        ::close(go[1]);
        int failed = 0;
        for (const pid_t pid : children) {
            int status = 0;
            ::waitpid(pid, &status, 0);
            if (!WIFEXITED(status) || WEXITSTATUS(status) != 0)
                ++failed;
        }
        INFO("round " << round);
        CHECK(failed == 0);
        CacheFile file(path);
        CHECK(file.entries("p:").size() == processes);
    }
}

// ---- many threads ------------------------------------------------------------------------

TEST_CASE("file: 8 threads reading and writing leave every cached entity equal to the database",
          "[file][concurrency]") {
    constexpr int kThreads = 8;
    constexpr std::int64_t kRows = 20;
    Fixture f;
    {
        auto s = f.db->session();
        Repository<User> users{s};
        for (std::int64_t id = 6; id <= kRows; ++id) {
            users.add({.name = "u" + std::to_string(id), .email = "e"});
        }
        s.commit();
    }
    std::atomic<long> reads{0}, writes{0};
    std::mutex failures_mutex;
    std::vector<std::string> failures;  // guarded by failures_mutex
    std::latch start(kThreads);
    const auto deadline = std::chrono::steady_clock::now() + 2s;
    std::vector<std::thread> threads;
    for (int t = 0; t < kThreads; ++t) {
        threads.emplace_back([&, t] {
            try {
                std::mt19937 rng(static_cast<unsigned>(t) * 7919u + 1);
                std::uniform_int_distribution<std::int64_t> pick(1, kRows);
                auto s = f.db->session();
                Repository<User> users{s};
                start.arrive_and_wait();
                int n = 0;
                while (std::chrono::steady_clock::now() < deadline) {
                    std::int64_t id = pick(rng);
                    if (++n % 4 == 0) {
                        // Each thread writes its own rows (id % kThreads == t), so what it
                        // reads back after its commit can only be its own write.
                        id = t + 1 + kThreads * (id % ((kRows - t - 1) / kThreads + 1));
                        auto u = users.get(id, {.use_cache = false});
                        u.name = "t" + std::to_string(t) + "-" + std::to_string(n);
                        users.update(u);
                        s.commit();
                        // Read-your-writes through the cache once committed.
                        if (users.get(id).name != u.name) {
                            std::lock_guard lock(failures_mutex);
                            failures.push_back("thread " + std::to_string(t) +
                                               " did not read its own commit of " +
                                               std::to_string(id));
                        }
                        ++writes;
                    } else {
                        (void)users.get(id);
                        if (n % 7 == 0)
                            (void)users.list(OrderBy{&User::id});
                        ++reads;
                    }
                }
            } catch (const std::exception& e) {
                std::lock_guard lock(failures_mutex);
                failures.push_back("thread " + std::to_string(t) + ": " + e.what());
            }
        });
    }
    for (auto& th : threads)
        th.join();
    INFO("reads " << reads.load() << ", writes " << writes.load());
    for (const auto& failure : failures)
        UNSCOPED_INFO(failure);
    CHECK(failures.empty());
    CHECK(writes.load() > kThreads);
    CHECK(reads.load() > kThreads);

    auto s = f.db->session();
    Repository<User> users{s};
    const auto cached_list = names_of(users.list(OrderBy{&User::id}));
    const auto stored_list = names_of(users.list(OrderBy{&User::id}, Options{.use_cache = false}));
    CHECK(cached_list == stored_list);
    int stale = 0;
    for (std::int64_t id = 1; id <= kRows; ++id) {
        const auto cached = users.get(id).name;
        const auto stored = users.get(id, {.use_cache = false}).name;
        if (cached != stored) {
            ++stale;
            UNSCOPED_INFO("user " << id << ": cached " << cached << ", database " << stored);
        }
    }
    CHECK(stale == 0);
    const auto stats = f.stats();
    CHECK(stats.hits > 0);
    CHECK(stats.errors == 0);
    CHECK(f.errors.count() == 0);
}

// ---- outages: the file locked past the busy timeout ----------------------------------------

TEST_CASE("file: an invalidation that could not be written is replayed before the next read",
          "[file][failure][incident]") {
    Fixture f(nlohmann::json{{"busy_timeout_ms", 50}});
    auto s = f.db->session();
    Repository<User> users{s};
    CHECK(users.get(1).name == "Ada");
    CHECK(users.get(1).name == "Ada");
    REQUIRE(f.stats().hits == 1);
    CacheFile file(f.cache_path());
    const auto version = file.counter(f.space() + "v:users").value_or(0);

    // Another process holds the cache file's write lock for longer than busy_timeout_ms.
    file.db().exec("BEGIN IMMEDIATE");
    rename_user(*f.db, 1, "Ada v2");  // committed; its invalidation cannot be written
    CHECK(f.stats().errors >= 1);
    // The old entry is still in the file, but no read may serve it: the undelivered
    // invalidation goes first, fails, and the call is served from the database.
    REQUIRE(file.entries(f.space() + "e:users:", ":i1").size() == 1);
    f.log.clear();
    CHECK(users.get(1).name == "Ada v2");
    CHECK(users.get(1).name == "Ada v2");
    CHECK(f.log.count("SELECT") == 2);
    CHECK(f.stats().errors >= 3);
    CHECK(f.errors.count() == 1);  // one outage, reported once
    file.db().exec("COMMIT");

    // The lock is gone: the invalidation lands first, then the read fills and hits.
    CHECK(users.get(1).name == "Ada v2");
    CHECK(file.counter(f.space() + "v:users") == version + 1);
    f.log.clear();
    CHECK(users.get(1).name == "Ada v2");
    CHECK(f.log.size() == 0);
    CHECK(f.errors.count() == 1);

    // A later outage is a new incident.
    file.db().exec("BEGIN IMMEDIATE");
    rename_user(*f.db, 2, "Bob v2");
    file.db().exec("COMMIT");
    CHECK(f.errors.count() == 2);
}

// ---- messages that say where (issue 10, item 7) --------------------------------------------

TEST_CASE("file: on_error names the cache file an operation failed on",
          "[file][failure][messages]") {
    Fixture f(nlohmann::json{{"busy_timeout_ms", 50}});
    auto s = f.db->session();
    Repository<User> users{s};
    CHECK(users.get(1).name == "Ada");
    CacheFile file(f.cache_path());
    file.db().exec("BEGIN IMMEDIATE");  // the cache file's write lock, held past the timeout
    rename_user(*f.db, 1, "Ada v2");    // its invalidation cannot be written
    file.db().exec("COMMIT");
    const auto reported = f.errors.entries();
    REQUIRE(reported.size() == 1);
    CHECK(reported.front().operation == "invalidate");
    INFO(reported.front().what);
    CHECK_THAT(reported.front().what, Catch::Contains(f.cache_path()) && Catch::Contains("locked"));
}

TEST_CASE("file: two databases sharing one cache file and prefix never see each other's rows",
          "[file][identity]") {
    Fixture f;  // app.db, five users, behind cache.db
    {
        auto s = f.db->session();
        CHECK(Repository<User>{s}.get(1).name == "Ada");
    }
    // A copy of the application database, behind the same cache file: it starts with the
    // same rows and the same stored id, but it is another database.
    const std::string copy_path = f.dir.file("copy.db");
    SQLite::Database(f.app_path(), SQLite::OPEN_READWRITE).exec("VACUUM INTO '" + copy_path + "'");
    SqlLog copy_log;
    Database copy{DatabaseConfig{.connection_string = copy_path,
                                 .cache_config = f.config,
                                 .on_query = copy_log.callback(),
                                 .busy_timeout = kBusyTimeout}};
    CHECK(copy.cache_identity() != f.db->cache_identity());
    rename_user(copy, 1, "Ada in the copy");
    auto s = copy.session();
    Repository<User> users{s};
    copy_log.clear();
    CHECK(users.get(1).name == "Ada in the copy");
    CHECK(copy_log.count("SELECT") == 1);
    auto original = f.db->session();
    f.log.clear();
    CHECK(Repository<User>{original}.get(1).name == "Ada");  // its own entry, untouched
    CHECK(f.log.count("SELECT") == 0);
    CacheFile file(f.cache_path());
    CHECK(file.entries(f.space() + "e:users:").size() == 1);
    CHECK(file.entries(f.prefix() + copy.cache_identity() + ":e:users:").size() == 1);
}
