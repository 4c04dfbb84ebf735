// distributed_lock (docs/reference.md, cache rule 9) across processes: four forked children, each
// with its own Database on one SQLite file and one Redis key prefix, miss the same key at the same
// moment while the first query is made slow. Checked: one query in total; a holder killed mid-query
// (SIGKILL) delays the others by at most lock_timeout_ms, and its lock expires; a holder that is
// alive but slower than lock_timeout_ms never makes anyone wait longer.
//
// The query is made slow by DatabaseConfig::on_query, which runs on the loading thread just
// before the statement: the first SELECT of the users table over all children (a flag in
// shared memory) sleeps there, holding the fill lock. Queries are counted the same way and
// reported to the parent through a pipe; the parent never opens a session across fork().

#include <poll.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <new>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <ormcache/backends/redis.hpp>

#include "backend_test_support.hpp"
#include "models.hpp"
#include "redis_server.hpp"
#include "test_support.hpp"

using namespace std::chrono_literals;

namespace {

using app::User;
using ormcache::CacheConfig;
using ormcache::Database;
using ormcache::DatabaseConfig;
using ormcache::OrderBy;
using ormcache::Repository;
using ormcache_test::RedisClient;
using ormcache_test::RedisServer;
using ormcache_test::TempDir;
using ormcache_test::unique_prefix;
using Clock = std::chrono::steady_clock;

constexpr int kChildren = 4;

/// How much later than lock_timeout_ms a waiter may return: its own (fast) query, the round
/// trips and process scheduling on a loaded 2-core machine, under sanitizers too.
constexpr std::chrono::milliseconds kSlack{700};

RedisServer& lock_server() {
    static std::unique_ptr<RedisServer> server;
    if (!server)
        server = std::make_unique<RedisServer>();
    return *server;
}

/// What the children share, in memory mapped before fork(). Lock-free atomics work across
/// processes on a MAP_SHARED mapping.
struct SharedState {
    std::atomic<int> queries{0};       ///< SELECTs of users run by any child after "go"
    std::atomic<int> holder_pid{0};    ///< the child whose SELECT sleeps (the first one)
    std::atomic<int> holder_awake{0};  ///< set when the holder's sleep ended
};
static_assert(std::atomic<int>::is_always_lock_free);

class SharedMemory {
  public:
    SharedMemory() {
        void* p = ::mmap(nullptr, sizeof(SharedState), PROT_READ | PROT_WRITE,
                         MAP_SHARED | MAP_ANONYMOUS, -1, 0);
        if (p == MAP_FAILED)
            throw std::runtime_error("mmap failed");
        state_ = new (p) SharedState;
    }
    SharedMemory(const SharedMemory&) = delete;
    SharedMemory& operator=(const SharedMemory&) = delete;
    ~SharedMemory() {
        state_->~SharedState();
        ::munmap(state_, sizeof(SharedState));
    }
    SharedState& operator*() const { return *state_; }
    SharedState* operator->() const { return state_; }

  private:
    SharedState* state_;
};

class Pipe {
  public:
    Pipe() {
        if (::pipe(fds_) != 0)
            throw std::runtime_error("pipe failed");
    }
    Pipe(const Pipe&) = delete;
    Pipe& operator=(const Pipe&) = delete;
    ~Pipe() {
        close_read();
        close_write();
    }
    int read_end() const { return fds_[0]; }
    int write_end() const { return fds_[1]; }
    void close_read() { close(fds_[0]); }
    void close_write() { close(fds_[1]); }

  private:
    static void close(int& fd) {
        if (fd >= 0)
            ::close(fd);
        fd = -1;
    }
    int fds_[2];
};

/// Reads exactly `size` bytes before `deadline`; false on timeout or end of file.
bool read_fully(int fd, void* buffer, std::size_t size, Clock::time_point deadline) {
    auto* out = static_cast<char*>(buffer);
    std::size_t got = 0;
    while (got < size) {
        const auto left =
            std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
        if (left.count() <= 0)
            return false;
        pollfd p{fd, POLLIN, 0};
        if (::poll(&p, 1, static_cast<int>(left.count())) <= 0)
            continue;
        const ssize_t n = ::read(fd, out + got, size - got);
        if (n <= 0)
            return false;
        got += static_cast<std::size_t>(n);
    }
    return true;
}

enum class Call { get, list };

const char* name_of(Call call) {
    return call == Call::get ? "get" : "list";
}

/// The cached call every child makes at once, and whether its answer is right.
bool make_call(Repository<User>& users, Call call) {
    if (call == Call::get)
        return users.get(3).name == "Cy";
    const auto all = users.list(OrderBy{&User::id});
    return all.size() == 5 && all[0].name == "Ada" && all[4].name == "Eve";
}

/// One child's account, written to the report pipe in one write (atomic: < PIPE_BUF).
struct ChildReport {
    int pid = 0;
    int selects = 0;     ///< SELECTs of users this child ran during the call
    int elapsed_ms = 0;  ///< how long the call took
    int correct = 0;     ///< the call returned the right rows
    int errors = 0;      ///< CacheStats::errors at the end
};

struct Scenario {
    std::string db_path;
    CacheConfig config;
    Call call = Call::get;
    std::chrono::milliseconds holder_sleep{200};
};

/// The child's whole life; returns its exit code. Never returns into Catch2.
int child_main(const Scenario& s, SharedState& shared, int ready_fd, int go_fd, int report_fd) {
    std::atomic<bool> counting{false};
    std::atomic<int> selects{0};
    Database db{DatabaseConfig{.connection_string = s.db_path,
                               .cache_config = s.config,
                               .on_query =
                                   [&](std::string_view sql) {
                                       if (!counting.load() || !sql.starts_with("SELECT") ||
                                           sql.find("users") == std::string_view::npos) {
                                           return;
                                       }
                                       ++selects;
                                       if (shared.queries.fetch_add(1) == 0) {
                                           // The first query of all: hold the lock (the lease)
                                           // while it sleeps.
                                           shared.holder_pid.store(::getpid());
                                           std::this_thread::sleep_for(s.holder_sleep);
                                           shared.holder_awake.store(1);
                                       }
                                   },
                               .busy_timeout = 60s}};
    auto session = db.session();
    Repository<User> users{session};
    // Open the SQLite connection and load the Redis scripts before the race (another key).
    if (users.get(5).name != "Eve")
        return 3;
    if (::write(ready_fd, "r", 1) != 1)
        return 4;
    char go = 0;
    if (::read(go_fd, &go, 1) != 1)
        return 5;
    counting.store(true);
    const auto start = Clock::now();
    const bool correct = make_call(users, s.call);
    const auto elapsed = Clock::now() - start;
    counting.store(false);
    const ChildReport report{
        ::getpid(), selects.load(),
        static_cast<int>(std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()),
        correct ? 1 : 0, static_cast<int>(db.cache_manager().stats().errors)};
    if (::write(report_fd, &report, sizeof report) != static_cast<ssize_t>(sizeof report))
        return 6;
    return 0;
}

/// Forks kChildren children running `s`, releases them together, and collects their reports.
/// `during` runs in the parent right after the release. Children that are still running at
/// the end (a failed REQUIRE) are killed and reaped.
class Race {
  public:
    explicit Race(const Scenario& s) : scenario_(s) {}
    Race(const Race&) = delete;
    Race& operator=(const Race&) = delete;
    ~Race() {
        for (const pid_t pid : running_) {
            ::kill(pid, SIGKILL);
            int status = 0;
            ::waitpid(pid, &status, 0);
        }
    }

    SharedState& shared() { return *shared_; }

    void start() {
        for (int i = 0; i < kChildren; ++i) {
            const pid_t pid = ::fork();
            if (pid < 0)
                throw std::runtime_error("fork failed");
            if (pid == 0) {
                int code = 2;
                try {
                    ready_.close_read();
                    go_.close_write();
                    report_.close_read();
                    code = child_main(scenario_, *shared_, ready_.write_end(), go_.read_end(),
                                      report_.write_end());
                } catch (...) {
                    code = 1;
                }
                ::_exit(code);
            }
            running_.push_back(pid);
        }
        ready_.close_write();
        go_.close_read();
        report_.close_write();
        const auto deadline = Clock::now() + 60s;
        for (int i = 0; i < kChildren; ++i) {
            char ready = 0;
            if (!read_fully(ready_.read_end(), &ready, 1, deadline))
                throw std::runtime_error("a child did not get ready");
        }
        const std::string go(kChildren, 'g');
        if (::write(go_.write_end(), go.data(), go.size()) != kChildren)
            throw std::runtime_error("cannot release the children");
    }

    /// Waits for every child (60 s at most); returns the reports of those that sent one.
    /// `exit_codes` gets each child's exit code, or -signal if a signal ended it.
    std::vector<ChildReport> finish(std::vector<int>& exit_codes) {
        std::vector<ChildReport> reports;
        const auto deadline = Clock::now() + 60s;
        ChildReport r;
        while (read_fully(report_.read_end(), &r, sizeof r, deadline))
            reports.push_back(r);  // ends at end of file: every child has exited
        for (const pid_t pid : running_) {
            int status = 0;
            ::waitpid(pid, &status, 0);
            exit_codes.push_back(WIFEXITED(status) ? WEXITSTATUS(status) : -WTERMSIG(status));
        }
        running_.clear();
        return reports;
    }

  private:
    Scenario scenario_;
    SharedMemory shared_;
    Pipe ready_, go_, report_;
    std::vector<pid_t> running_;
};

CacheConfig lock_config(const std::string& prefix, std::chrono::milliseconds lock_timeout) {
    CacheConfig c;
    c.backend = "redis";
    c.arguments = {{"host", "127.0.0.1"},
                   {"port", lock_server().port()},
                   {"distributed_lock", true},
                   {"lock_timeout_ms", lock_timeout.count()}};
    c.key_prefix = prefix;
    return c;
}

/// A scenario on a fresh SQLite file in `dir` holding five users (1 Ada, 2 Bob, 3 Cy, 4 Dee,
/// 5 Eve), written without a cache: that Database is gone before any fork().
Scenario seeded_scenario(const TempDir& dir, const std::string& prefix,
                         std::chrono::milliseconds lock_timeout, Call call,
                         std::chrono::milliseconds holder_sleep) {
    Scenario s{dir.file("lock.db"), lock_config(prefix, lock_timeout), call, holder_sleep};
    Database db{DatabaseConfig{.connection_string = s.db_path}};
    db.create_all<User>();
    ormcache_test::seed_users(db);
    return s;
}

/// "child <pid>: <n> SELECTs, <t> ms", for the assertions on each report.
std::string describe(const ChildReport& r) {
    return "child " + std::to_string(r.pid) + ": " + std::to_string(r.selects) + " SELECTs, " +
           std::to_string(r.elapsed_ms) + " ms";
}

/// The key all the children race for: the entity of id 3, or the one cached list.
std::string contested_key(RedisClient& client, const std::string& prefix, Call call) {
    std::vector<std::string> found;
    // Under the prefix, in the database's key space (its identity follows the prefix).
    const std::string kind = call == Call::get ? ":e:users:" : ":q:users:";
    for (const auto& k : client.keys(prefix)) {
        if (k.find(kind) == std::string::npos)
            continue;
        if (call == Call::list || k.ends_with(":i3"))
            found.push_back(k);
    }
    return found.size() == 1 ? found.front() : std::string();
}

long long pttl(RedisClient& client, const std::string& key) {
    return client.command({"PTTL", key}).integer;
}

int total_selects(const std::vector<ChildReport>& reports) {
    int n = 0;
    for (const auto& r : reports)
        n += r.selects;
    return n;
}

/// The parent's own look at the file and the cache once the children are gone.
void check_parent_reads(const Scenario& s) {
    Database db{DatabaseConfig{.connection_string = s.db_path, .cache_config = s.config}};
    auto session = db.session();
    Repository<User> users{session};
    CHECK(make_call(users, s.call));
    CHECK(db.cache_manager().stats().errors == 0);
}

}  // namespace

TEST_CASE(
    "redis: distributed_lock across 4 processes: all miss one key at once, one query in total",
    "[redis][lock][process]") {
    for (const Call call : {Call::get, Call::list}) {
        INFO("call: " << name_of(call));
        TempDir dir;
        const std::string prefix = unique_prefix(name_of(call));
        // A lock timeout far beyond the query (200 ms): nobody may give up and query too.
        const Scenario s = seeded_scenario(dir, prefix, 10s, call, 200ms);
        auto client = lock_server().client();

        Race race(s);
        race.start();
        std::vector<int> codes;
        const auto reports = race.finish(codes);

        CHECK(codes == std::vector<int>(kChildren, 0));
        REQUIRE(reports.size() == kChildren);
        CHECK(total_selects(reports) == 1);
        CHECK(race.shared().queries.load() == 1);
        for (const auto& r : reports) {
            INFO(describe(r));
            CHECK(r.correct == 1);
            CHECK(r.errors == 0);
            // Everyone waited for the one query: nobody finished before it could have.
            CHECK(r.elapsed_ms >= 150);
        }
        // The holder's fill landed: the key holds the value (an envelope), not a lock.
        const std::string key = contested_key(*client, prefix, call);
        REQUIRE_FALSE(key.empty());
        CHECK(client->get(key).value_or("").starts_with("oc1 "));
        check_parent_reads(s);
    }
}

TEST_CASE(
    "redis: distributed_lock across 4 processes: a holder killed mid-query delays the others "
    "by at most lock_timeout_ms, and its lock expires",
    "[redis][lock][process]") {
    constexpr auto lock_timeout = 800ms;
    for (const Call call : {Call::get, Call::list}) {
        INFO("call: " << name_of(call));
        TempDir dir;
        const std::string prefix = unique_prefix(std::string("kill-") + name_of(call));
        // The holder would sleep for a minute: only the lock's expiry can free the others.
        const Scenario s = seeded_scenario(dir, prefix, lock_timeout, call, 60s);
        auto client = lock_server().client();

        Race race(s);
        race.start();
        const auto deadline = Clock::now() + 30s;
        while (race.shared().holder_pid.load() == 0 && Clock::now() < deadline)
            std::this_thread::sleep_for(1ms);
        const pid_t holder = race.shared().holder_pid.load();
        REQUIRE(holder != 0);
        // The holder's lock is a key that expires by itself within lock_timeout_ms.
        const std::string key = contested_key(*client, prefix, call);
        REQUIRE_FALSE(key.empty());
        const long long ttl = pttl(*client, key);
        CHECK(ttl > 0);
        CHECK(ttl <= lock_timeout.count());
        REQUIRE(::kill(holder, SIGKILL) == 0);
        const auto killed_at = Clock::now();

        std::vector<int> codes;
        const auto reports = race.finish(codes);
        const auto all_done =
            std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - killed_at);

        CHECK(race.shared().holder_awake.load() == 0);
        int killed = 0, clean = 0;
        for (const int code : codes) {
            killed += code == -SIGKILL;
            clean += code == 0;
        }
        CHECK(killed == 1);
        CHECK(clean == kChildren - 1);
        REQUIRE(reports.size() == kChildren - 1);
        for (const auto& r : reports) {
            INFO(describe(r));
            CHECK(r.pid != holder);
            CHECK(r.correct == 1);  // from the database, or from whoever filled after the lock
            CHECK(r.errors == 0);
            CHECK(r.elapsed_ms <= (lock_timeout + kSlack).count());
        }
        CHECK(all_done <= lock_timeout + kSlack);
        // The dead holder's lock is gone: the key is absent or holds a real value.
        const auto value = client->get(key);
        CHECK((!value || value->starts_with("oc1 ")));
        check_parent_reads(s);
    }
}

TEST_CASE(
    "redis: distributed_lock across 4 processes: a live holder slower than lock_timeout_ms "
    "never makes the others wait longer",
    "[redis][lock][process]") {
    constexpr auto lock_timeout = 600ms;
    for (const Call call : {Call::get, Call::list}) {
        INFO("call: " << name_of(call));
        TempDir dir;
        const std::string prefix = unique_prefix(std::string("slow-") + name_of(call));
        const Scenario s = seeded_scenario(dir, prefix, lock_timeout, call, 3000ms);

        Race race(s);
        race.start();
        std::vector<int> codes;
        const auto reports = race.finish(codes);

        CHECK(codes == std::vector<int>(kChildren, 0));
        REQUIRE(reports.size() == kChildren);
        const pid_t holder = race.shared().holder_pid.load();
        int waiters = 0;
        for (const auto& r : reports) {
            INFO(describe(r));
            CHECK(r.correct == 1);
            CHECK(r.errors == 0);
            if (r.pid == holder) {
                CHECK(r.elapsed_ms >= 3000);
                continue;
            }
            ++waiters;
            // They waited for the lock (not straight to the database)...
            CHECK(r.elapsed_ms >= lock_timeout.count() / 2);
            // ...but never longer than lock_timeout_ms, though the holder was still busy.
            CHECK(r.elapsed_ms <= (lock_timeout + kSlack).count());
        }
        CHECK(waiters == kChildren - 1);
        // Beside the holder's, at least one waiter queried after the wait (at most each).
        CHECK(total_selects(reports) >= 2);
        CHECK(total_selects(reports) <= kChildren);
        check_parent_reads(s);
    }
}
