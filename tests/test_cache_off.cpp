// Singleflight without a cache (docs/reference.md, cache rule 5): with backend "null",
// enabled = false, no cache_config at all, or a backend that is down, concurrent reads of one
// key still run one query, so switching the cache off does not change the database's load;
// and a read that starts after a commit, of this process or another, never takes the result of
// a load that started before it.

#include <catch2/catch.hpp>

#include <atomic>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <ormcache/ormcache.hpp>  // and <sqlite3.h>, for the progress handler

#include "fake_backend.hpp"
#include "gate.hpp"
#include "models.hpp"
#include "test_support.hpp"
#include "thread_state.hpp"

using app::User;
using ormcache::CacheConfig;
using ormcache::Database;
using ormcache::DatabaseConfig;
using ormcache::Repository;
using ormcache_test::Gate;
using ormcache_test::GateState;
using ormcache_test::TempDir;

namespace {

constexpr int readers = 10;

/// Whether a SELECT on "users" is being stepped on `connection`.
bool reading_users(sqlite3* connection) {
    for (sqlite3_stmt* stmt = sqlite3_next_stmt(connection, nullptr); stmt != nullptr;
         stmt = sqlite3_next_stmt(connection, stmt)) {
        const char* text = sqlite3_sql(stmt);
        const std::string_view sql = text != nullptr ? text : "";
        if (sqlite3_stmt_busy(stmt) && sql.starts_with("SELECT") &&
            sql.find("FROM \"users\"") != std::string_view::npos)
            return true;
    }
    return false;
}

/// A file database with users 1..3 whose first SELECT on "users" after arm() stops on a gate,
/// and which counts those SELECTs.
struct Harness {
    explicit Harness(std::optional<CacheConfig> cache)
        : db(DatabaseConfig{.connection_string = dir.file("off.db"),
                            .cache_config = std::move(cache),
                            .on_query = [this](std::string_view sql) { on_query(sql); }}) {
        db.create_all<User>();
        auto s = db.session();
        Repository<User> users{s};
        for (int i = 1; i <= 3; ++i)
            users.add(User{.name = "old-" + std::to_string(i), .email = "e"});
        s.commit();
        user_selects = 0;
    }

    Gate arm() {
        auto state = std::make_shared<GateState>();
        std::lock_guard lock(mutex);
        stop_next = state;
        return Gate(state);
    }

    void on_query(std::string_view sql) {
        if (!sql.starts_with("SELECT") || sql.find("FROM \"users\"") == std::string_view::npos)
            return;
        ++user_selects;
        std::shared_ptr<GateState> gate;
        {
            std::lock_guard lock(mutex);
            gate = std::exchange(stop_next, nullptr);
        }
        if (gate)
            gate->block();
    }

    TempDir dir;
    std::atomic<int> user_selects{0};
    std::mutex mutex;                      // guards stop_next
    std::shared_ptr<GateState> stop_next;  // the gate the next user SELECT stops on
    Database db;
};

/// Stops the next SELECT on "users" of `session` inside sqlite3_step, once SQLite has begun the
/// statement's read transaction, i.e. taken its snapshot (the progress handler runs between the
/// opcodes of sqlite3_step), until `gate` is released.
struct StopInsideSelect {
    explicit StopInsideSelect(ormcache::Session& session)
        : connection(session.connection().getHandle()), gate(state) {
        sqlite3_progress_handler(
            connection, 1,
            [](void* p) {
                auto* s = static_cast<StopInsideSelect*>(p);
                if (sqlite3_txn_state(s->connection, "main") == SQLITE_TXN_READ &&
                    reading_users(s->connection) && s->armed.exchange(false))
                    s->state->block();
                return 0;
            },
            this);
    }
    ~StopInsideSelect() { sqlite3_progress_handler(connection, 0, nullptr, nullptr); }
    StopInsideSelect(const StopInsideSelect&) = delete;
    StopInsideSelect& operator=(const StopInsideSelect&) = delete;

    sqlite3* connection;
    std::shared_ptr<GateState> state = std::make_shared<GateState>();
    Gate gate;
    std::atomic<bool> armed{true};
};

/// `readers` threads read user 1 at once: the first one's SELECT is held until all the others
/// are blocked, then released. Returns the names they read.
std::vector<std::string> concurrent_gets(Harness& h) {
    std::vector<ormcache::Session> sessions;
    std::vector<std::unique_ptr<Repository<User>>> repos;
    for (int i = 0; i < readers; ++i) {
        sessions.push_back(h.db.session());
        repos.push_back(std::make_unique<Repository<User>>(sessions.back()));
    }
    std::vector<std::string> names(readers);
    Gate gate = h.arm();
    std::thread leader([&] { names[0] = repos[0]->get(1).name; });
    const bool leader_stopped = gate.wait_arrived();
    std::vector<pid_t> tids(readers - 1);
    std::atomic<int> started{0};
    std::vector<std::thread> others;
    for (int i = 1; i < readers; ++i) {
        others.emplace_back([&, i] {
            tids[static_cast<std::size_t>(i - 1)] = ormcache_test::current_tid();
            ++started;
            names[static_cast<std::size_t>(i)] = repos[static_cast<std::size_t>(i)]->get(1).name;
        });
    }
    while (started.load() < readers - 1)
        std::this_thread::yield();
    // Each of them either waits on the leader's flight (asleep) or, without singleflight, has
    // stopped in nothing and finishes its own SELECT: both are visible below.
    const bool all_waiting = ormcache_test::wait_all_asleep(
        tids, [&] { return h.user_selects.load() > 1; }, std::chrono::seconds{20});
    gate.release();
    leader.join();
    for (auto& t : others)
        t.join();
    CHECK(leader_stopped);
    CHECK(all_waiting);
    return names;
}

}  // namespace

TEST_CASE("Cache off: concurrent gets of one id run one SELECT, whatever the backend",
          "[cache][singleflight][rule5]") {
    // The readers arrive while the leader's SELECT runs. With a cache, the leader's fill under
    // its lease proves its row current for them: one SELECT in all. Without one nothing can:
    // another process may have committed between the leader's snapshot and their start, so
    // they wait for the leader, then share one more SELECT.
    std::optional<CacheConfig> cache;
    int selects = 2;
    SECTION("backend null") {
        cache = CacheConfig{.backend = "null"};
    }
    SECTION("enabled = false") {
        cache = CacheConfig{.backend = "memory", .enabled = false};
    }
    SECTION("no cache_config") {
        cache = std::nullopt;
    }
    SECTION("memory (for comparison)") {
        cache = CacheConfig{.backend = "memory"};
        selects = 1;
    }
    Harness h(cache);
    const auto before = h.db.cache_manager().stats();
    const auto names = concurrent_gets(h);
    CHECK(h.user_selects.load() == selects);
    for (const auto& name : names)
        CHECK(name == "old-1");
    const auto after = h.db.cache_manager().stats();
    CHECK(after.singleflight_waits - before.singleflight_waits == readers - 1);
    CHECK(after.singleflight_rereads - before.singleflight_rereads ==
          (selects == 1 ? 0 : readers - 1));
}

TEST_CASE("Cache off: concurrent gets run one SELECT while the cache backend is down",
          "[cache][singleflight][rule5]") {
    ormcache_test::register_fake_backend();
    auto store = ormcache_test::FakeStore::create();
    Harness h(store->config());
    store->fail_all();
    const auto before = h.db.cache_manager().stats();
    const auto names = concurrent_gets(h);
    // As with no cache: the late readers wait for the leader, then share one more SELECT.
    CHECK(h.user_selects.load() == 2);
    for (const auto& name : names)
        CHECK(name == "old-1");
    const auto after = h.db.cache_manager().stats();
    CHECK(after.singleflight_waits - before.singleflight_waits == readers - 1);
    CHECK(after.singleflight_rereads - before.singleflight_rereads == readers - 1);
    CHECK(after.misses - before.misses == readers);
    CHECK(after.errors > before.errors);
}

TEST_CASE("Cache off: a get that starts after a commit does not join a load that began before it",
          "[cache][singleflight][rule5]") {
    Harness h(CacheConfig{.backend = "null"});
    auto leader_session = h.db.session();
    Repository<User> leader_repo{leader_session};
    StopInsideSelect stop(leader_session);
    auto first = std::async(std::launch::async, [&] { return leader_repo.get(1).name; });
    REQUIRE(stop.gate.wait_arrived());

    {
        auto w = h.db.session();
        Repository<User> users{w};
        auto u = users.get(1, {.use_cache = false});
        u.name = "new";
        users.update(u);
        w.commit();
    }
    // Started after the commit returned: must read the database itself, not wait for the
    // leader's pre-commit row.
    auto reader_session = h.db.session();
    Repository<User> reader{reader_session};
    const auto waits = h.db.cache_manager().stats().singleflight_waits;
    auto second = std::async(std::launch::async, [&] { return reader.get(1).name; });
    const bool done_alone = second.wait_for(std::chrono::seconds{20}) == std::future_status::ready;
    stop.gate.release();
    CHECK(done_alone);
    CHECK(second.get() == "new");
    CHECK(first.get() == "old-1");
    CHECK(h.db.cache_manager().stats().singleflight_waits == waits);
}

TEST_CASE(
    "Cache off: a get that starts after another process's commit does not take the result "
    "of a load that read before it",
    "[cache][singleflight][rule5][process]") {
    Harness h(CacheConfig{.backend = "null"});
    // Another process, as far as h.db can tell: its own Database on the same file.
    Database other(DatabaseConfig{.connection_string = h.dir.file("off.db")});
    auto leader_session = h.db.session();
    Repository<User> leader_repo{leader_session};
    StopInsideSelect stop(leader_session);
    auto first = std::async(std::launch::async, [&] { return leader_repo.get(1).name; });
    REQUIRE(stop.gate.wait_arrived());
    {
        auto w = other.session();
        Repository<User> users{w};
        auto u = users.get(1);
        u.name = "new";
        users.update(u);
        w.commit();
    }
    // This process's commit count of the table did not move, so the reader finds the
    // leader's flight and waits; the leader's row predates the commit, so it reads again.
    auto reader_session = h.db.session();
    Repository<User> reader{reader_session};
    const auto before = h.db.cache_manager().stats();
    std::promise<pid_t> reader_tid;
    auto second = std::async(std::launch::async, [&] {
        reader_tid.set_value(ormcache_test::current_tid());
        return reader.get(1).name;
    });
    const pid_t tid = reader_tid.get_future().get();
    const bool waiting = ormcache_test::wait_all_asleep(
        {tid},
        [&] { return second.wait_for(std::chrono::seconds{0}) == std::future_status::ready; },
        std::chrono::seconds{20});
    stop.gate.release();
    CHECK(waiting);
    CHECK(first.get() == "old-1");
    CHECK(second.get() == "new");
    const auto after = h.db.cache_manager().stats();
    CHECK(after.singleflight_waits - before.singleflight_waits == 1);
    CHECK(after.singleflight_rereads - before.singleflight_rereads == 1);
    CHECK(h.user_selects.load() == 2);
}

TEST_CASE("Cache off: get_or_create still runs one creation for concurrent callers",
          "[cache][singleflight][rule5]") {
    Harness h(CacheConfig{.backend = "null"});
    auto& manager = h.db.cache_manager();
    std::atomic<int> creations{0};
    auto created = std::make_shared<GateState>();
    Gate gate(created);
    std::thread leader([&] {
        manager.get_or_create<int>("k", [&] {
            ++creations;
            created->block();
            return 42;
        });
    });
    REQUIRE(gate.wait_arrived());
    std::vector<pid_t> tids(4);
    std::atomic<int> started{0};
    std::vector<int> values(4);
    std::vector<std::thread> others;
    for (std::size_t i = 0; i < 4; ++i) {
        others.emplace_back([&, i] {
            tids[i] = ormcache_test::current_tid();
            ++started;
            values[i] = manager.get_or_create<int>("k", [&] {
                ++creations;
                return 7;
            });
        });
    }
    while (started.load() < 4)
        std::this_thread::yield();
    const bool all_waiting = ormcache_test::wait_all_asleep(
        tids, [&] { return creations.load() > 1; }, std::chrono::seconds{20});
    gate.release();
    leader.join();
    for (auto& t : others)
        t.join();
    CHECK(all_waiting);
    CHECK(creations.load() == 1);
    for (int v : values)
        CHECK(v == 42);
}
