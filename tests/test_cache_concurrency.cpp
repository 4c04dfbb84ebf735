// The cache under concurrency (docs/reference.md, cache rules 4, 5 and 6; the fill protocol of
// docs/caching.md, "Correctness"): deterministic races between a fill and a commit's invalidation
// (threads are stopped at chosen points by PausingBackend gates or by an on_query gate, never timed
// with sleeps), singleflight with results and exceptions, and a soak of mixed reads and writes that
// must leave no stale entry behind.

#include <catch2/catch.hpp>

#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include <SQLiteCpp/SQLiteCpp.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <fstream>
#include <functional>
#include <future>
#include <latch>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <sstream>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "backend_test_support.hpp"
#include "models.hpp"
#include "pausing_backend.hpp"
#include "test_support.hpp"
#include "thread_state.hpp"

using namespace std::chrono_literals;
using app::User;
using ormcache::Options;
using ormcache::Repository;
using ormcache_test::current_tid;
using ormcache_test::entity_key;
using ormcache_test::Gate;
using ormcache_test::PauseControl;
using ormcache_test::PausingBackend;
using ormcache_test::query_keys;
using ormcache_test::TempDir;
using ormcache_test::wait_all_asleep;
using Op = PauseControl::Op;
using At = PauseControl::At;

namespace {

bool is_user_select(std::string_view sql) {
    return sql.starts_with("SELECT") && sql.find("FROM \"users\"") != std::string_view::npos;
}

/// on_query: logs every statement and can stop the next one that matches on a gate.
class SqlHook {
  public:
    std::function<void(std::string_view)> callback() {
        return [this](std::string_view sql) { on_query(sql); };
    }

    Gate stop_next(std::function<bool(std::string_view)> match) {
        auto state = std::make_shared<ormcache_test::GateState>();
        std::lock_guard lock(mutex_);
        armed_.emplace_back(std::move(match), state);
        return Gate(std::move(state));
    }

    /// The thread that was stopped by the last gate.
    pid_t stopped_tid() const {
        std::lock_guard lock(mutex_);
        return stopped_tid_;
    }

    std::size_t user_selects() const {
        std::size_t n = 0;
        for (const auto& s : log_.statements())
            n += is_user_select(s) ? 1 : 0;
        return n;
    }
    void clear() { log_.clear(); }

  private:
    void on_query(std::string_view sql) {
        log_.callback()(sql);
        std::shared_ptr<ormcache_test::GateState> gate;
        {
            std::lock_guard lock(mutex_);
            for (auto it = armed_.begin(); it != armed_.end(); ++it) {
                if (it->first(sql)) {
                    gate = it->second;
                    armed_.erase(it);
                    stopped_tid_ = current_tid();
                    break;
                }
            }
        }
        if (gate)
            gate->block();
    }

    ormcache_test::SqlLog log_;
    mutable std::mutex mutex_;  // guards armed_, stopped_tid_
    std::vector<
        std::pair<std::function<bool(std::string_view)>, std::shared_ptr<ormcache_test::GateState>>>
        armed_;
    pid_t stopped_tid_ = 0;
};

nlohmann::json as_json(const User& u) {
    return ormcache::to_json(u);
}
nlohmann::json as_json(const std::optional<User>& u) {
    return u ? ormcache::to_json(*u) : nlohmann::json(nullptr);
}
nlohmann::json as_json(const std::vector<User>& users) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& u : users)
        out.push_back(ormcache::to_json(u));
    return out;
}

std::vector<std::string> names(const std::vector<User>& users) {
    std::vector<std::string> out;
    for (const auto& u : users)
        out.push_back(u.name);
    return out;
}

/// A file database with a PausingBackend cache, users 1..rows named "old-<id>".
struct Fixture {
    explicit Fixture(int rows = 3)
        : control(PausingBackend::install()), db(config(dir, *control, sql)) {
        db.create_all<User>();
        auto s = db.session();
        Repository<User> users{s};
        for (int i = 1; i <= rows; ++i) {
            users.add(User{.name = "old-" + std::to_string(i), .email = "e", .age = i % 5});
        }
        s.commit();
        sql.clear();
        control->reset_log();
    }

    static ormcache::DatabaseConfig config(const TempDir& dir, const PauseControl& control,
                                           SqlHook& sql) {
        ormcache::CacheConfig cache;
        cache.backend = control.name();
        ormcache::DatabaseConfig c{.connection_string = dir.file("race.db"), .cache_config = cache};
        c.on_query = sql.callback();
        return c;
    }

    /// Renames user `id` to `name` and commits, from a session of its own (the commit
    /// listener has invalidated the cache when this returns).
    void commit_rename(std::int64_t id, const std::string& name) {
        ormcache_test::rename_user(db, id, name);
    }

    /// What a fresh autocommit session gets for user `id` through the cache.
    std::string fresh_name(std::int64_t id) {
        auto s = db.session();
        return Repository<User>{s}.get(id).name;
    }
    std::vector<std::string> fresh_list() {
        auto s = db.session();
        return names(Repository<User>{s}.list());
    }

    TempDir dir;
    SqlHook sql;
    std::shared_ptr<PauseControl> control;
    ormcache::Database db;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// Cache rule 6 (1): the entity fill overtaken by a commit.

TEST_CASE("Cache race: an entity fill overtaken by a commit is refused", "[cache][concurrency]") {
    Fixture f;
    auto rs = f.db.session();
    Repository<User> reader{rs};
    const bool snapshot = GENERATE(false, true);
    CAPTURE(snapshot);
    if (snapshot)
        rs.begin();  // FillMode::fill under lease and guards instead of singleflight

    // The reader misses, reads the old row and stops just before its fill.
    Gate fill = f.control->pause_next(Op::fill, entity_key("users", 1));
    auto read = std::async(std::launch::async, [&] { return reader.get(1); });
    REQUIRE(fill.wait_arrived());
    CHECK(f.sql.user_selects() == 1);

    f.commit_rename(1, "new");  // its invalidation runs before this returns
    fill.release();
    CHECK(read.get().name == "old-1");  // the reader's own answer predates the commit
    if (snapshot)
        rs.commit();

    CHECK(f.control->fills_refused(entity_key("users", 1)) == 1);
    CHECK(f.control->fills_landed(entity_key("users", 1)) == 0);

    f.sql.clear();
    CHECK(f.fresh_name(1) == "new");
    CHECK(f.sql.user_selects() == 1);  // a miss: the refused fill left nothing
    CHECK(f.fresh_name(1) == "new");
    CHECK(f.sql.user_selects() == 1);  // and now the new row is cached
}

TEST_CASE("Cache race: a list fill overtaken by a commit is unreachable", "[cache][concurrency]") {
    Fixture f;
    auto rs = f.db.session();
    Repository<User> reader{rs};
    const bool snapshot = GENERATE(false, true);
    CAPTURE(snapshot);
    if (snapshot)
        rs.begin();

    Gate fill = f.control->pause_next(Op::fill, query_keys("users"));
    auto read = std::async(std::launch::async, [&] { return names(reader.list()); });
    REQUIRE(fill.wait_arrived());
    CHECK(f.sql.user_selects() == 1);

    f.commit_rename(2, "new");
    fill.release();
    CHECK(read.get() == std::vector<std::string>{"old-1", "old-2", "old-3"});
    if (snapshot)
        rs.commit();

    // Refused, or stored under a list version the commit has left behind.
    f.sql.clear();
    CHECK(f.fresh_list() == std::vector<std::string>{"old-1", "new", "old-3"});
    CHECK(f.sql.user_selects() == 1);
    CHECK(f.fresh_list() == std::vector<std::string>{"old-1", "new", "old-3"});
    CHECK(f.sql.user_selects() == 1);
}

TEST_CASE("Cache race: a get that starts after a commit does not join a flight that read before it",
          "[cache][concurrency]") {
    Fixture f;
    auto as = f.db.session();
    Repository<User> a{as};
    auto bs = f.db.session();
    Repository<User> b{bs};

    // A leads the flight for user 1: it has read the old row and stops before its fill.
    Gate fill = f.control->pause_next(Op::fill, entity_key("users", 1));
    auto first = std::async(std::launch::async, [&] { return a.get(1); });
    REQUIRE(fill.wait_arrived());

    f.commit_rename(1, "new");

    // B begins after the commit and its invalidation: it must read the database itself. Were
    // it to wait for A's flight it would get A's pre-commit row (and only once A goes on).
    const auto before = f.db.cache_manager().stats().singleflight_waits;
    auto second = std::async(std::launch::async, [&] { return b.get(1); });
    const bool done_alone = second.wait_for(20s) == std::future_status::ready;
    fill.release();
    CHECK(done_alone);
    CHECK(second.get().name == "new");
    CHECK(f.db.cache_manager().stats().singleflight_waits == before);
    CHECK(first.get().name == "old-1");

    f.sql.clear();
    CHECK(f.fresh_name(1) == "new");
    CHECK(f.sql.user_selects() == 0);  // B's fill landed; A's was refused
    CHECK(f.control->fills_refused(entity_key("users", 1)) == 1);
}

/// A second Database on the fixture's file with a cache manager of its own on the same cache:
/// what another process sharing the cache server is to `f.db`. Its commits reach the cache,
/// never f.db's in-flight loads.
struct OtherProcess {
    explicit OtherProcess(Fixture& f) : db(Fixture::config(f.dir, *f.control, sql)) {}

    void commit_rename(std::int64_t id, const std::string& name) {
        ormcache_test::rename_user(db, id, name);
    }

    SqlHook sql;
    ormcache::Database db;
};

TEST_CASE(
    "Cache race: a get that starts after another process's commit does not take the result "
    "of a flight that read before it",
    "[cache][concurrency][process]") {
    Fixture f;
    OtherProcess other(f);
    auto as = f.db.session();
    Repository<User> a{as};
    auto bs = f.db.session();
    Repository<User> b{bs};

    // A leads the flight for user 1: it has read the old row and stops before its fill.
    Gate fill = f.control->pause_next(Op::fill, entity_key("users", 1));
    auto first = std::async(std::launch::async, [&] { return a.get(1); });
    REQUIRE(fill.wait_arrived());

    // The other process commits; its invalidation removes A's lease from the shared cache but
    // cannot end A's flight, which lives in this process.
    other.commit_rename(1, "new");

    // B begins after that commit, misses, and finds A's flight under the same tag (the table's
    // entity generation, which a row commit does not move): it waits for it.
    const auto stats_before = f.db.cache_manager().stats();
    std::promise<pid_t> b_tid;
    auto second = std::async(std::launch::async, [&] {
        b_tid.set_value(current_tid());
        return b.get(1);
    });
    const pid_t tid = b_tid.get_future().get();
    const bool waiting =
        wait_all_asleep({tid}, [&] { return second.wait_for(0s) == std::future_status::ready; });
    fill.release();
    CHECK(waiting);
    CHECK(first.get().name == "old-1");  // A started before the commit: its row is fine for A
    // A's fill was refused (the lease was gone), so nothing proves A's row current for B: B
    // reads again and sees the commit.
    CHECK(second.get().name == "new");
    const auto stats = f.db.cache_manager().stats();
    CHECK(stats.singleflight_waits - stats_before.singleflight_waits == 1);
    CHECK(stats.singleflight_rereads - stats_before.singleflight_rereads == 1);
    CHECK(f.control->fills_refused(entity_key("users", 1)) == 1);

    f.sql.clear();
    CHECK(f.fresh_name(1) == "new");
    CHECK(f.sql.user_selects() == 0);  // B's reread filled the cache
}

TEST_CASE(
    "Singleflight: a miss that arrives during the leader's query takes its result when the "
    "fill lands",
    "[cache][concurrency]") {
    Fixture f;
    auto as = f.db.session();
    Repository<User> a{as};
    auto bs = f.db.session();
    Repository<User> b{bs};

    // A stops in its query; B arrives only now, after A's query began, but before A's fill.
    Gate query = f.sql.stop_next(is_user_select);
    auto first = std::async(std::launch::async, [&] { return a.get(1).name; });
    REQUIRE(query.wait_arrived());
    std::promise<pid_t> b_tid;
    auto second = std::async(std::launch::async, [&] {
        b_tid.set_value(current_tid());
        return b.get(1).name;
    });
    const pid_t tid = b_tid.get_future().get();
    const bool waiting =
        wait_all_asleep({tid}, [&] { return second.wait_for(0s) == std::future_status::ready; });
    query.release();
    CHECK(waiting);
    CHECK(first.get() == "old-1");
    // The fill under A's lease, sent after B started, landed: no invalidation of the key
    // finished between A's lease and the fill, so A's row is current for B too. One query.
    CHECK(second.get() == "old-1");
    CHECK(f.sql.user_selects() == 1);
    const auto stats = f.db.cache_manager().stats();
    CHECK(stats.singleflight_waits == 1);
    CHECK(stats.singleflight_rereads == 0);
}

TEST_CASE("Singleflight: a flight ended by an invalidation does not end its successor",
          "[cache][concurrency]") {
    Fixture f;
    auto as = f.db.session();
    Repository<User> a{as};
    auto bs = f.db.session();
    Repository<User> b{bs};
    auto cs = f.db.session();
    Repository<User> c{cs};

    // A's flight reads the old row and stops before its fill; a commit ends it for newcomers.
    Gate fill = f.control->pause_next(Op::fill, entity_key("users", 1));
    auto first = std::async(std::launch::async, [&] { return a.get(1).name; });
    REQUIRE(fill.wait_arrived());
    f.commit_rename(1, "new");

    // B leads the next flight and stops before its query.
    f.sql.clear();
    Gate query = f.sql.stop_next(is_user_select);
    auto second = std::async(std::launch::async, [&] { return b.get(1).name; });
    REQUIRE(query.wait_arrived(20s));  // (B must not join A's flight, see above)

    // A's flight lands now; B's flight must still be the one newcomers join.
    fill.release();
    CHECK(first.get() == "old-1");

    f.control->reset_log();
    const auto waits = f.db.cache_manager().stats().singleflight_waits;
    std::promise<pid_t> c_tid;
    auto third = std::async(std::launch::async, [&] {
        c_tid.set_value(current_tid());
        return c.get(1).name;
    });
    const pid_t tid = c_tid.get_future().get();
    REQUIRE(f.control->wait_count(Op::read, entity_key("users", 1), 1));
    const bool joined =
        wait_all_asleep({tid}, [&] { return third.wait_for(0s) == std::future_status::ready; });
    query.release();
    CHECK(joined);
    CHECK(second.get() == "new");
    CHECK(third.get() == "new");
    CHECK(f.sql.user_selects() == 1);  // B's query only
    CHECK(f.db.cache_manager().stats().singleflight_waits - waits == 1);
}

TEST_CASE("Singleflight: a miss that reaches the flight after it landed finds the fill",
          "[cache][concurrency]") {
    // T misses, then is held before it joins; L's flight runs and fills meanwhile. T's miss was
    // concurrent with L's, so it must not run a second query.
    const bool entity = GENERATE(true, false);
    CAPTURE(entity);
    Fixture f;
    auto ts = f.db.session();
    Repository<User> t{ts};
    auto ls = f.db.session();
    Repository<User> l{ls};
    auto read = [&](Repository<User>& r) { return entity ? as_json(r.get(2)) : as_json(r.list()); };

    Gate held = f.control->pause_next(
        Op::read, entity ? entity_key("users", 2) : query_keys("users"), At::after);
    auto late = std::async(std::launch::async, [&] { return read(t); });
    REQUIRE(held.wait_arrived());
    const auto value = read(l);
    CHECK(f.sql.user_selects() == 1);
    held.release();
    CHECK(late.get() == value);
    CHECK(f.sql.user_selects() == 1);
}

// ---------------------------------------------------------------------------------------------
// Cache rule 6 (2): a reader whose snapshot predates a commit never caches what it saw.

TEST_CASE("Cache race: an old snapshot does not fill the cache", "[cache][concurrency]") {
    Fixture f;
    auto rs = f.db.session();
    Repository<User> reader{rs};

    SECTION("get") {
        const int before = GENERATE(0, 1, 2);  // what R read before the commit
        CAPTURE(before);
        rs.begin();
        if (before == 1)
            CHECK(reader.get(3).name == "old-3");  // an unrelated row
        if (before == 2)
            CHECK(reader.get(1).name == "old-1");  // the row itself (and cached it)
        f.commit_rename(1, "new");

        f.control->reset_log();
        f.sql.clear();
        CHECK(reader.get(1).name == "old-1");  // right for R's snapshot
        CHECK(f.sql.user_selects() == 1);
        CHECK(f.control->fills_landed() == 0);
        CHECK(reader.get(2).name == "old-2");  // no fill for any row of the changed table
        CHECK(f.control->fills_landed() == 0);
        CHECK(f.control->fills_refused() >= 1);
        CHECK(reader.get(1).name == "old-1");
        CHECK(f.fresh_name(1) == "new");
        rs.commit();
        CHECK(f.fresh_name(1) == "new");
        CHECK(reader.get(1).name == "new");
    }

    SECTION("list") {
        const bool listed_before = GENERATE(false, true);
        CAPTURE(listed_before);
        rs.begin();
        if (listed_before)
            CHECK(names(reader.list()).size() == 3);
        f.commit_rename(2, "new");

        f.control->reset_log();
        f.sql.clear();
        const std::vector<std::string> old_rows{"old-1", "old-2", "old-3"};
        const std::vector<std::string> new_rows{"old-1", "new", "old-3"};
        CHECK(names(reader.list()) == old_rows);
        CHECK(f.sql.user_selects() == 1);
        CHECK(reader.count() == 3);
        CHECK(reader.list_and_count().second == 3);
        CHECK(f.control->fills_landed() == 0);
        CHECK(f.fresh_list() == new_rows);
        rs.commit();
        CHECK(f.fresh_list() == new_rows);
        CHECK(names(reader.list()) == new_rows);
    }
}

TEST_CASE("Cache race: a commit while begin() reads the counters leaves nothing stale",
          "[cache][concurrency]") {
    // Whether begin() reads the cache's counters before or after it takes its snapshot, a
    // commit landing at that moment must not let the transaction fill old rows.
    const At at = GENERATE(At::before, At::after);
    CAPTURE(at == At::before);
    Fixture f;
    auto rs = f.db.session();
    Repository<User> reader{rs};  // registers the model: begin() guards its counters

    Gate counters = f.control->pause_next(
        Op::read, [](std::string_view key) { return key.empty(); }, at);
    auto begun = std::async(std::launch::async, [&] { rs.begin(); });
    REQUIRE(counters.wait_arrived());
    f.commit_rename(1, "new");
    counters.release();
    begun.get();

    const auto seen = reader.get(1).name;
    const auto listed = names(reader.list());
    rs.commit();
    CHECK(listed.front() == seen);
    CHECK(f.fresh_name(1) == "new");
    CHECK(f.fresh_list().front() == "new");
}

// ---------------------------------------------------------------------------------------------
// Cache rule 6 (3) and (4): a snapshot with no concurrent commit fills; a raw BEGIN never does.

TEST_CASE("Cache: a begin() transaction with no concurrent commit fills the cache",
          "[cache][concurrency]") {
    Fixture f;
    auto rs = f.db.session();
    Repository<User> reader{rs};
    rs.begin();
    CHECK(reader.get(1).name == "old-1");
    CHECK(names(reader.list()).size() == 3);
    CHECK(reader.count() == 3);
    CHECK(f.sql.user_selects() == 3);
    CHECK(f.control->fills_landed(entity_key("users", 1)) == 1);
    CHECK(f.control->fills_landed(query_keys("users")) == 2);
    CHECK(f.control->fills_refused() == 0);

    CHECK(reader.get(1).name == "old-1");  // hits, inside the transaction
    CHECK(names(reader.list()).size() == 3);
    CHECK(f.sql.user_selects() == 3);
    CHECK(f.fresh_name(1) == "old-1");  // and for everyone else
    CHECK(f.fresh_list().size() == 3);
    CHECK(f.sql.user_selects() == 3);
    rs.commit();
}

TEST_CASE("Cache: a transaction begun by raw SQL on connection() never fills",
          "[cache][concurrency]") {
    const std::string begin =
        GENERATE("BEGIN", "BEGIN DEFERRED", "begin immediate", "SAVEPOINT raw");
    CAPTURE(begin);
    Fixture f;
    auto rs = f.db.session();
    Repository<User> reader{rs};
    CHECK(reader.get(3).name == "old-3");  // cached before the transaction

    f.control->reset_log();
    f.sql.clear();
    rs.connection().exec(begin);
    REQUIRE(rs.in_transaction());
    CHECK(reader.get(1).name == "old-1");
    CHECK(reader.get(1).name == "old-1");
    CHECK(names(reader.list()).size() == 3);
    CHECK(reader.count() == 3);
    CHECK(f.sql.user_selects() == 4);      // every read went to the database
    CHECK(reader.get(3).name == "old-3");  // a hit is still served
    CHECK(f.sql.user_selects() == 4);
    CHECK(f.control->count(Op::fill) == 0);

    if (begin != "begin immediate") {
        // Its snapshot is now older than this commit: still no fill, and nothing stale.
        f.commit_rename(1, "new");
        f.commit_rename(2, "new");
        CHECK(reader.get(1).name == "old-1");
        CHECK(names(reader.list())[1] == "old-2");
        CHECK(f.control->count(Op::fill) == 0);
        CHECK(f.fresh_name(1) == "new");
        CHECK(f.fresh_list() == std::vector<std::string>{"new", "new", "old-3"});
    }
    rs.connection().exec(begin == "SAVEPOINT raw" ? "RELEASE raw" : "COMMIT");
    CHECK_FALSE(rs.in_transaction());
}

// ---------------------------------------------------------------------------------------------
// Cache rule 5: singleflight.

namespace {

constexpr int flight_threads = 16;

/// 16 threads, each with its own session, miss the same key at once. The first database read
/// is stopped (on_query gate) until every other thread has read the cache and is asleep on the
/// flight; `between` runs at that moment. Returns each thread's result or exception text.
template <class Read>
struct Flight {
    struct Outcome {
        nlohmann::json value;
        std::string error_type;
        std::string error;
        // Kept until the threads are joined: the exception object is shared by every thread
        // (a std::exception_ptr in the flight), and its reference count lives in libstdc++,
        // which ThreadSanitizer does not see; freed by whichever thread drops it last, it
        // would be reported as racing with the others' reads.
        std::exception_ptr exception;
    };

    static std::vector<Outcome> run(Fixture& f, const ormcache_test::KeyMatch& key,
                                    std::size_t cache_reads, Read read,
                                    const std::function<void()>& between = {}) {
        std::vector<ormcache::Session> sessions;
        std::vector<std::unique_ptr<Repository<User>>> repos;
        for (int i = 0; i < flight_threads; ++i) {
            sessions.push_back(f.db.session());
            repos.push_back(std::make_unique<Repository<User>>(sessions.back()));
        }
        f.sql.clear();
        f.control->reset_log();

        Gate query = f.sql.stop_next(is_user_select);
        std::vector<Outcome> outcomes(flight_threads);
        std::vector<pid_t> tids(flight_threads);
        std::latch start(flight_threads);
        std::vector<std::thread> threads;
        for (int i = 0; i < flight_threads; ++i) {
            threads.emplace_back([&, i] {
                tids[static_cast<std::size_t>(i)] = current_tid();
                start.arrive_and_wait();
                auto& out = outcomes[static_cast<std::size_t>(i)];
                try {
                    out.value = read(*repos[static_cast<std::size_t>(i)]);
                } catch (const ormcache::DatabaseError& e) {
                    out.exception = std::current_exception();
                    out.error_type = "DatabaseError";
                    out.error = e.what();
                } catch (const std::exception& e) {
                    out.exception = std::current_exception();
                    out.error_type = "other";
                    out.error = e.what();
                }
            });
        }
        struct Joiner {
            std::vector<std::thread>& threads;
            Gate& gate;
            ~Joiner() {
                gate.release();
                for (auto& t : threads)
                    t.join();
            }
        } joiner{threads, query};

        REQUIRE(query.wait_arrived());
        // Every thread has missed (the leader also re-read for its lease) ...
        REQUIRE(f.control->wait_count(Op::read, key, cache_reads));
        // ... and each one but the leader can now only be waiting on the flight.
        std::vector<pid_t> waiters;
        for (pid_t t : tids) {
            if (t != f.sql.stopped_tid())
                waiters.push_back(t);
        }
        REQUIRE(waiters.size() == flight_threads - 1);
        REQUIRE(wait_all_asleep(waiters));
        if (between)
            between();
        query.release();
        for (auto& t : threads)
            t.join();
        threads.clear();
        return outcomes;
    }
};

template <class Read>
std::vector<typename Flight<Read>::Outcome> run_flight(Fixture& f,
                                                       const ormcache_test::KeyMatch& key,
                                                       std::size_t cache_reads, Read read,
                                                       const std::function<void()>& between = {}) {
    return Flight<Read>::run(f, key, cache_reads, std::move(read), between);
}

}  // namespace

TEST_CASE("Singleflight: 16 concurrent misses run one query and share its result",
          "[cache][concurrency]") {
    Fixture f(5);
    const auto waits = f.db.cache_manager().stats().singleflight_waits;

    SECTION("get") {
        // 16 cache reads, plus the leader's re-read (which takes the lease).
        auto outcomes = run_flight(f, entity_key("users", 4), flight_threads + 1,
                                   [](Repository<User>& r) { return as_json(r.get(4)); });
        CHECK(f.sql.user_selects() == 1);
        for (const auto& o : outcomes) {
            CHECK(o.error == "");
            CHECK(o.value == outcomes.front().value);
        }
        CHECK(outcomes.front().value.at("name") == "old-4");
        CHECK(f.db.cache_manager().stats().singleflight_waits - waits == flight_threads - 1);
        CHECK(f.control->fills_landed(entity_key("users", 4)) == 1);
        f.sql.clear();
        CHECK(f.fresh_name(4) == "old-4");
        CHECK(f.sql.user_selects() == 0);
    }

    SECTION("list") {
        const ormcache::ComparisonFilter filter{&User::age, ">=", 2};
        auto outcomes = run_flight(f, query_keys("users"), flight_threads + 1,
                                   [&](Repository<User>& r) { return as_json(r.list(filter)); });
        CHECK(f.sql.user_selects() == 1);
        for (const auto& o : outcomes) {
            CHECK(o.error == "");
            CHECK(o.value == outcomes.front().value);
        }
        CHECK(outcomes.front().value.size() == 3);  // ages 2, 3, 4
        CHECK(f.db.cache_manager().stats().singleflight_waits - waits == flight_threads - 1);
        CHECK(f.control->fills_landed(query_keys("users")) == 1);
    }

    SECTION("count") {
        auto outcomes = run_flight(f, query_keys("users"), flight_threads + 1,
                                   [](Repository<User>& r) { return nlohmann::json(r.count()); });
        CHECK(f.sql.user_selects() == 1);
        for (const auto& o : outcomes)
            CHECK(o.value == 5);
        CHECK(f.db.cache_manager().stats().singleflight_waits - waits == flight_threads - 1);
    }
}

TEST_CASE("Singleflight: a failed load reaches every waiter and caches nothing",
          "[cache][concurrency]") {
    Fixture f(5);
    // While the leader is stopped before its query runs, another process renames the table
    // away (a plain SQLite connection: no journal, no invalidation, the counters stay put), so
    // the query fails with a DatabaseError ("no such table").
    SQLite::Database other(f.dir.file("race.db"), SQLite::OPEN_READWRITE);
    other.setBusyTimeout(5000);
    const auto waits = f.db.cache_manager().stats().singleflight_waits;

    auto check_failed = [&](const auto& outcomes) {
        CHECK(f.sql.user_selects() == 1);
        for (const auto& o : outcomes) {
            CHECK(o.error_type == "DatabaseError");
            CHECK(o.error == outcomes.front().error);
            CHECK(o.exception == outcomes.front().exception);  // the very same object
        }
        CHECK(outcomes.front().error.find("no such table") != std::string::npos);
        CHECK(f.db.cache_manager().stats().singleflight_waits - waits == flight_threads - 1);
        CHECK(f.control->count(Op::fill) == 0);
    };
    const auto away = [&] { other.exec("ALTER TABLE users RENAME TO users_away"); };

    SECTION("get") {
        check_failed(run_flight(
            f, entity_key("users", 4), flight_threads + 1,
            [](Repository<User>& r) { return as_json(r.get(4)); }, away));
        other.exec("ALTER TABLE users_away RENAME TO users");
        // Nothing was kept: not the error, not a value, not the leader's lease.
        f.sql.clear();
        CHECK(f.fresh_name(4) == "old-4");
        CHECK(f.sql.user_selects() == 1);
        CHECK(f.control->fills_landed(entity_key("users", 4)) == 1);
        CHECK(f.fresh_name(4) == "old-4");
        CHECK(f.sql.user_selects() == 1);
    }

    SECTION("list") {
        check_failed(run_flight(
            f, query_keys("users"), flight_threads,
            [](Repository<User>& r) { return as_json(r.list()); }, away));
        other.exec("ALTER TABLE users_away RENAME TO users");
        f.sql.clear();
        CHECK(f.fresh_list().size() == 5);
        CHECK(f.sql.user_selects() == 1);
        CHECK(f.fresh_list().size() == 5);
        CHECK(f.sql.user_selects() == 1);
    }
}

TEST_CASE("Singleflight: a session with uncommitted changes never joins a flight",
          "[cache][concurrency]") {
    Fixture f;
    auto ds = f.db.session();
    Repository<User> dirty{ds};
    auto mine = dirty.get(1, Options{.use_cache = false});
    mine.name = "mine";
    dirty.update(mine);  // uncommitted
    REQUIRE(ds.has_changes("users"));

    auto rs = f.db.session();
    Repository<User> reader{rs};
    f.sql.clear();
    // The reader leads a flight for user 1 and for the list, stopped inside each before its
    // query. Joining either would block the dirty session until the reader goes on.
    for (const bool list : {false, true}) {
        CAPTURE(list);
        Gate query = f.sql.stop_next(is_user_select);
        auto read = std::async(std::launch::async, [&] {
            return list ? names(reader.list()).at(0) : reader.get(1).name;
        });
        REQUIRE(query.wait_arrived());
        const auto waits = f.db.cache_manager().stats().singleflight_waits;
        auto own = std::async(std::launch::async,
                              [&] { return list ? names(dirty.list()).at(0) : dirty.get(1).name; });
        const bool done_alone = own.wait_for(20s) == std::future_status::ready;
        query.release();
        CHECK(done_alone);
        CHECK(own.get() == "mine");    // its own write
        CHECK(read.get() == "old-1");  // the committed row
        CHECK(f.db.cache_manager().stats().singleflight_waits == waits);
    }
    // With no flight around either, its reads fill nothing (cache rule 4).
    f.control->reset_log();
    CHECK(dirty.get(1).name == "mine");
    CHECK(names(dirty.list(ormcache::ComparisonFilter{&User::id, "<=", 2})).at(0) == "mine");
    CHECK(f.control->count(Op::fill) == 0);
    ds.rollback();
    CHECK(f.fresh_name(1) == "old-1");
    CHECK(f.fresh_list().at(0) == "old-1");
    auto fs = f.db.session();
    CHECK(names(Repository<User>{fs}.list(ormcache::ComparisonFilter{&User::id, "<=", 2})).at(0) ==
          "old-1");
}

// ---------------------------------------------------------------------------------------------
// Soak: mixed reads and writes on 8 sessions, then no cached answer may differ from the
// database.

namespace {

constexpr int soak_threads = 8;
constexpr int soak_rows = 24;
constexpr int soak_rounds = 3;
constexpr auto soak_duration = 1500ms;
constexpr int soak_max_ops = 20000;  // per thread and round

/// The queries the soak caches, each also compared at the end.
std::vector<std::function<nlohmann::json(Repository<User>&, Options)>> soak_queries() {
    using ormcache::ComparisonFilter;
    using ormcache::LimitOffset;
    using ormcache::OrderBy;
    return {
        [](Repository<User>& r, Options o) { return as_json(r.list(o)); },
        [](Repository<User>& r, Options o) {
            return as_json(r.list(ComparisonFilter{&User::age, ">=", 2}, o));
        },
        [](Repository<User>& r, Options o) {
            return as_json(r.list(OrderBy{&User::name, ormcache::Sort::desc},
                                  LimitOffset{.limit = 5, .offset = 3}, o));
        },
        [](Repository<User>& r, Options o) {
            auto [page, total] = r.list_and_count(LimitOffset{.limit = 4, .offset = 0}, o);
            return nlohmann::json{{"page", as_json(page)}, {"total", total}};
        },
        [](Repository<User>& r, Options o) { return nlohmann::json(r.count(o)); },
        [](Repository<User>& r, Options o) {
            return nlohmann::json(r.count(ComparisonFilter{&User::age, "<", 2}, o));
        },
        [](Repository<User>& r, Options o) {
            return nlohmann::json(r.exists(ComparisonFilter{&User::name, "=", "t0-0"}, o));
        },
    };
}

void soak_worker(ormcache::Database& db, int t, std::latch& start,
                 std::chrono::steady_clock::time_point deadline, std::vector<std::string>& errors,
                 std::mutex& errors_mutex, std::atomic<long>& ops) {
    try {
        auto s = db.session();
        // No fsync per commit (the default FULL makes the soak wait on the disk, not race).
        s.connection().exec("PRAGMA synchronous = NORMAL");
        Repository<User> users{s};
        const auto queries = soak_queries();
        std::mt19937 rng(static_cast<unsigned>(t * 7919 + 1));
        auto pick = [&](int n) { return static_cast<int>(rng() % static_cast<unsigned>(n)); };
        auto id = [&] { return static_cast<std::int64_t>(pick(soak_rows) + 1); };
        int n = 0;
        int gone = 0;  // writes that found their row removed by another thread meanwhile
        auto rename = [&](std::int64_t which) {
            if (auto u = users.get_or_none(which)) {
                u->name = "t" + std::to_string(t) + "-" + std::to_string(n);
                u->age = pick(5);
                users.update(*u);
            }
        };
        start.arrive_and_wait();
        for (; n < soak_max_ops && std::chrono::steady_clock::now() < deadline; ++n) {
            const int dice = pick(100);
            try {
                if (dice < 40) {
                    (void)users.get_or_none(id());
                } else if (dice < 72) {
                    (void)queries[static_cast<std::size_t>(pick(static_cast<int>(queries.size())))](
                        users, Options{});
                } else if (dice < 82) {  // one update, autocommit-style
                    rename(id());
                    s.commit();
                } else if (dice < 87) {  // a snapshot: several reads, maybe filling
                    s.begin();
                    (void)users.get_or_none(id());
                    (void)queries[0](users, Options{});
                    (void)users.get_or_none(id());
                    s.commit();
                } else if (dice < 92) {  // a write transaction that also reads (dirty: bypass)
                    rename(id());
                    rename(id());
                    (void)users.get_or_none(id());
                    (void)queries[1](users, Options{});
                    if (pick(3) == 0) {
                        s.rollback();
                    } else {
                        s.commit();
                    }
                } else if (dice < 96) {  // raw SQL, through execute() and through connection()
                    if (pick(2) == 0) {
                        s.execute("UPDATE users SET age = ? WHERE id = ?", pick(5), id());
                    } else {
                        s.connection().exec("UPDATE users SET name = 'raw" + std::to_string(t) +
                                            "' WHERE id = " + std::to_string(id()));
                    }
                    s.commit();
                } else if (dice < 98) {  // remove or bring back a row
                    const auto which = id();
                    if (users.get_or_none(which)) {
                        users.remove(which);
                    } else {
                        users.upsert(User{.id = which, .name = "back", .email = "e", .age = 1});
                    }
                    s.commit();
                } else {  // a transaction begun by raw SQL (read only)
                    s.connection().exec("BEGIN");
                    (void)users.get_or_none(id());
                    (void)queries[2](users, Options{});
                    s.connection().exec("COMMIT");
                }
            } catch (const ormcache::NotFoundError&) {
                ++gone;  // a race between threads, not a failure
                s.rollback();
            }
        }
        ops += n;
        (void)gone;
    } catch (const std::exception& e) {
        std::lock_guard lock(errors_mutex);
        errors.push_back("thread " + std::to_string(t) + ": " + e.what());
    }
}

}  // namespace

TEST_CASE("Cache soak: 8 sessions reading and writing leave no stale entry",
          "[cache][concurrency]") {
    for (int round = 0; round < soak_rounds; ++round) {
        CAPTURE(round);
        TempDir dir;
        ormcache::CacheConfig cache;
        cache.backend = "memory";
        ormcache::DatabaseConfig config{.connection_string = dir.file("soak.db"),
                                        .cache_config = cache};
        config.busy_timeout = 60s;
        ormcache::Database db(config);
        db.create_all<User>();
        {
            auto s = db.session();
            Repository<User> users{s};
            for (int i = 1; i <= soak_rows; ++i) {
                users.add(User{.name = "u" + std::to_string(i), .email = "e", .age = i % 5});
            }
            s.commit();
        }

        std::vector<std::string> errors;
        std::mutex errors_mutex;
        std::atomic<long> ops{0};
        std::latch start(soak_threads);
        const auto deadline = std::chrono::steady_clock::now() + soak_duration;
        std::vector<std::thread> threads;
        for (int t = 0; t < soak_threads; ++t) {
            threads.emplace_back(
                [&, t] { soak_worker(db, t, start, deadline, errors, errors_mutex, ops); });
        }
        for (auto& th : threads)
            th.join();
        INFO("operations: " << ops.load());
        CHECK(errors.empty());
        for (const auto& e : errors)
            UNSCOPED_INFO(e);
        CHECK(ops.load() > soak_threads * 20);

        // Every cached answer equals the database's.
        auto s = db.session();
        Repository<User> users{s};
        int stale = 0;
        for (std::int64_t id = 1; id <= soak_rows; ++id) {
            const auto cached = as_json(users.get_or_none(id));
            const auto stored = as_json(users.get_or_none(id, Options{.use_cache = false}));
            if (cached != stored) {
                ++stale;
                UNSCOPED_INFO("user " << id << ": cached " << cached.dump() << ", database "
                                      << stored.dump());
            }
        }
        const auto queries = soak_queries();
        for (std::size_t q = 0; q < queries.size(); ++q) {
            const auto cached = queries[q](users, Options{});
            const auto stored = queries[q](users, Options{.use_cache = false});
            if (cached != stored) {
                ++stale;
                UNSCOPED_INFO("query " << q << ": cached " << cached.dump() << ", database "
                                       << stored.dump());
            }
        }
        CHECK(stale == 0);
        const auto stats = db.cache_manager().stats();
        CHECK(stats.hits > 0);
        CHECK(stats.errors == 0);
    }
}
