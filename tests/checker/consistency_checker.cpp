// ormcache_consistency_checker: checks, across processes and threads, the rule every cache
// backend promises: a read that starts after a commit has finished (in any thread of any
// process) never returns data older than that commit.
//
// Worker processes (fork) run threads that increment the `version` of rows in committed
// transactions, write negative versions in transactions they roll back, and read the rows
// through the cache (get, list, list_and_count, count, exists). Every event goes to the
// thread's own file, timed on CLOCK_MONOTONIC (one clock for every process of the machine):
// each read's start and end, each committed version and the time its commit() returned.
// Afterwards the parent reads the files and flags:
//
//  - a stale read: a read of row r that started at s returned version v although a commit that
//    set r to a version > v had returned before s (its staleness is s minus the finish time of
//    the newest such commit). Reads that start during an injected fault or within the window D
//    after it ends (--window-ms) are counted apart: that is where the known limits of failing
//    open live, and the largest staleness found tells how wide the window needs to be;
//  - a rolled-back value seen: a negative version, which only rolled-back transactions write;
//  - staleness at quiescence: once the workers have stopped and the faults ended, a fresh
//    Database (a fresh process's view of the shared cache) is opened and, D later, reads every
//    row through the cache and compares it with the database. A memory cache lives and dies with
//    its one worker process, which checks it itself.
//
// A commit whose process was killed never reports its end: every transaction also inserts its
// id into checker_commits, so the database tells afterwards which of them committed, and
// such a commit counts as finished when its process died.
//
// Usage: ormcache_consistency_checker --backend memory|file|redis|memcached [--processes P]
//        [--threads T] [--seconds S] [--rows N] [--window-ms D] [--ttl-seconds S]
//        [--fault none|server-kill|server-pause|partition|writer-kill] [--break-invalidation]
//        [--slow-fill-us N] [--seed N]
//
// Faults, from 0.5 s until 1 s before the end, each D + 1 s after the previous one ended, so
// that reads are checked without excuse for at least 1 s between faults (redis/memcached servers
// are started before the first fork, by tests/support, so every process shares them):
//  - server-kill:  SIGKILL the server, restart it empty on the same port 300 ms later;
//  - server-pause: SIGSTOP the server for 400 ms, then SIGCONT;
//  - partition:    worker 0 reaches the server through a proxy that cuts it off for 600 ms,
//                  while the other workers still reach it;
//                  (a last pause or cut begins 300 ms before the end and lasts until every
//                  worker has exited: what they could not deliver by then is lost with them)
//  - writer-kill:  a worker, chosen at random, kills itself at its next invalidation, after
//                  its commit has succeeded in the database and before the cache hears of it;
//                  a replacement worker is started (but for the last one, 300 ms before the
//                  end).
// --break-invalidation drops every invalidation: the checker must then fail (a ctest checks).
// --slow-fill-us delays every cache fill by up to N microseconds (a slow cache round trip): it
// widens the windows in which a commit elsewhere overtakes a load, so races show up in seconds.
// Prints one summary line (then a few examples of violations) and exits 1 if any violation
// falls outside the fault windows, 2 if the run itself went wrong.

#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <fcntl.h>

#include <ormcache/backends/file.hpp>
#include <ormcache/ormcache.hpp>
#if ORMCACHE_CHECKER_WITH_REDIS
#include <ormcache/backends/redis.hpp>

#include "redis_server.hpp"
#endif
#if ORMCACHE_CHECKER_WITH_MEMCACHED
#include <ormcache/backends/memcached.hpp>

#include "memcached_server.hpp"
#endif
#include "round_trip_proxy.hpp"
#include "server_process.hpp"
#include "test_support.hpp"

namespace checker {

struct CheckedRow {
    std::int64_t id = 0;
    std::int64_t version = 0;
};
ORMCACHE_MODEL(CheckedRow, "checker_rows", id, version)

// --- time and settings ------------------------------------------------------------------------

/// Nanoseconds on CLOCK_MONOTONIC: comparable between the processes of one machine.
std::int64_t now_ns() {
    timespec ts{};
    ::clock_gettime(CLOCK_MONOTONIC, &ts);
    return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

constexpr std::int64_t kMillisecond = 1'000'000;

void sleep_ms(std::int64_t ms) {
    std::this_thread::sleep_for(std::chrono::milliseconds{ms});
}

enum class Fault { none, server_kill, server_pause, partition, writer_kill };

struct Settings {
    std::string backend = "memory";
    int processes = 0;  // 0: 3, or 1 for the memory backend
    int threads = 3;
    double seconds = 6;
    int rows = 32;
    std::int64_t window_ms = 2000;
    int ttl_seconds = 300;
    Fault fault = Fault::none;
    bool break_invalidation = false;
    std::int64_t slow_fill_us = 0;
    std::uint64_t seed = 1;

    bool shared_server() const { return backend == "redis" || backend == "memcached"; }
};

[[noreturn]] void usage(const std::string& problem) {
    std::cerr << "ormcache_consistency_checker: " << problem
              << "\nusage: ormcache_consistency_checker --backend memory|file|redis|memcached "
                 "[--processes P] [--threads T] [--seconds S] [--rows N] [--window-ms D] "
                 "[--ttl-seconds S] [--fault none|server-kill|server-pause|partition|writer-kill] "
                 "[--break-invalidation] [--slow-fill-us N] [--seed N]\n";
    std::exit(2);
}

Settings parse_settings(int argc, char** argv) {
    Settings s;
    const std::map<std::string, Fault> faults{{"none", Fault::none},
                                              {"server-kill", Fault::server_kill},
                                              {"server-pause", Fault::server_pause},
                                              {"partition", Fault::partition},
                                              {"writer-kill", Fault::writer_kill}};
    for (int i = 1; i < argc; ++i) {
        const std::string arg = argv[i];
        if (arg == "--break-invalidation") {
            s.break_invalidation = true;
            continue;
        }
        if (i + 1 >= argc)
            usage(arg + " needs a value");
        const std::string value = argv[++i];
        try {
            if (arg == "--backend")
                s.backend = value;
            else if (arg == "--processes")
                s.processes = std::stoi(value);
            else if (arg == "--threads")
                s.threads = std::stoi(value);
            else if (arg == "--seconds")
                s.seconds = std::stod(value);
            else if (arg == "--rows")
                s.rows = std::stoi(value);
            else if (arg == "--window-ms")
                s.window_ms = std::stoll(value);
            else if (arg == "--ttl-seconds")
                s.ttl_seconds = std::stoi(value);
            else if (arg == "--slow-fill-us")
                s.slow_fill_us = std::stoll(value);
            else if (arg == "--seed")
                s.seed = std::stoull(value);
            else if (arg == "--fault" && faults.contains(value))
                s.fault = faults.at(value);
            else
                usage("unknown argument " + arg + " " + value);
        } catch (const std::logic_error&) {
            usage("bad value for " + arg + ": " + value);
        }
    }
    if (s.backend != "memory" && s.backend != "file" && !s.shared_server())
        usage("unknown backend " + s.backend);
    if (s.processes == 0)
        s.processes = s.backend == "memory" ? 1 : 3;
    if (s.processes < 1 || s.threads < 1 || s.threads > 255 || s.rows < 4 || s.seconds <= 0 ||
        s.window_ms < 0)
        usage("processes >= 1, threads 1-255, rows >= 4, seconds > 0, window-ms >= 0");
    if (s.backend == "memory" && s.processes != 1) {
        // A memory cache is private to its process: several processes would each check
        // their own cache against commits they cannot see.
        std::cerr << "ormcache_consistency_checker: the memory backend runs in one process\n";
        s.processes = 1;
    }
    const bool needs_server = s.fault == Fault::server_kill || s.fault == Fault::server_pause ||
                              s.fault == Fault::partition;
    if (needs_server && !s.shared_server())
        usage("--fault server-kill/server-pause/partition need --backend redis or memcached");
    return s;
}

const char* fault_name(Fault f) {
    switch (f) {
        case Fault::none:
            return "none";
        case Fault::server_kill:
            return "server-kill";
        case Fault::server_pause:
            return "server-pause";
        case Fault::partition:
            return "partition";
        case Fault::writer_kill:
            return "writer-kill";
    }
    return "?";
}

// --- events -----------------------------------------------------------------------------------

enum class Kind : std::uint8_t {
    read,        // row `row` had version `value` (flag: the first row of its call)
    at_least,    // "row `row` has version >= `value`" was answered `flag`
    intent,      // transaction `txid` set row `row` to version `value` (written before commit)
    commit,      // commit() of `txid` returned at `end` (flag: it did not throw)
    rollback,    // a transaction that wrote a negative version was rolled back
    death,       // process `txid` kills itself at `end`, its commits written and unreported
    failure,     // a call threw
    quiescence,  // at quiescence, row `row` read `value` through the cache, `txid` from the db
};

enum class Op : std::uint8_t { get, list_some, list_all, page, count, exists, write, quiet };

const char* op_name(Op op) {
    static constexpr const char* names[] = {"get",   "list(id IN)", "list(all)", "list_and_count",
                                            "count", "exists",      "write",     "quiescence"};
    return names[static_cast<int>(op)];
}

struct Event {
    Kind kind{};
    Op op{};
    bool flag = false;
    std::int32_t row = 0;
    std::int64_t value = 0;
    std::int64_t txid = 0;
    std::int64_t start = 0;
    std::int64_t end = 0;
};

/// One thread's event file. Buffered, and flushed before every commit, so that a process killed
/// in a commit has written the commit's intents (reads it had not flushed are simply lost).
class EventLog {
  public:
    explicit EventLog(const std::string& path)
        : fd_(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644)) {
        if (fd_ < 0)
            throw std::runtime_error("cannot create " + path);
    }
    EventLog(const EventLog&) = delete;
    EventLog& operator=(const EventLog&) = delete;
    ~EventLog() {
        flush();
        ::close(fd_);
    }

    void add(const Event& e) {
        buffer_.push_back(e);
        if (buffer_.size() >= 256)
            flush();
    }

    void flush() {
        const auto* data = reinterpret_cast<const char*>(buffer_.data());
        std::size_t left = buffer_.size() * sizeof(Event);
        while (left > 0) {
            const auto n = ::write(fd_, data, left);
            if (n < 0 && errno == EINTR)
                continue;
            if (n <= 0)
                break;  // the disk is full: the analysis will miss these events, nothing worse
            data += n;
            left -= static_cast<std::size_t>(n);
        }
        buffer_.clear();
    }

  private:
    int fd_;
    std::vector<Event> buffer_;
};

std::string event_path(const std::filesystem::path& dir, pid_t pid, int thread) {
    return (dir / ("events-" + std::to_string(pid) + "-" + std::to_string(thread) + ".bin"))
        .string();
}

std::vector<Event> load_events(const std::filesystem::path& dir) {
    std::vector<Event> all;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
        const std::string name = entry.path().filename().string();
        if (!name.starts_with("events-"))
            continue;
        std::ifstream in(entry.path(), std::ios::binary);
        Event e;
        while (in.read(reinterpret_cast<char*>(&e), sizeof e))
            all.push_back(e);
    }
    return all;
}

// --- the backend decorator: dropped invalidations, a writer killed before its invalidation ----

/// Set from the SIGUSR1 handler of a worker (the writer-kill fault): the next invalidation of
/// this process kills it, after its commit has returned from the database and before any of
/// its invalidation is delivered.
/// (A lock-free atomic, not a volatile sig_atomic_t: the handler runs on any thread.)
std::atomic<bool> die_at_next_invalidation{false};
static_assert(std::atomic<bool>::is_always_lock_free);

/// The event log of the calling thread, for the death record.
thread_local EventLog* thread_log = nullptr;

/// What the "checker" backend wraps (set once per process, before any Database is built).
struct Wrapping {
    std::string inner;
    bool drop_invalidations = false;
    std::int64_t slow_fill_us = 0;
};
Wrapping wrapping;

/// The backend named by wrapping.inner, with invalidate() dropped (--break-invalidation: the
/// checker must then find stale reads) or turned into the process's death when armed, and
/// fill() slowed down (--slow-fill-us).
template <bool Objects>
class CheckerBackend {
  public:
    static constexpr bool stores_objects = Objects;

    explicit CheckerBackend(std::unique_ptr<ormcache::AnyBackend> inner)
        : inner_(std::move(inner)) {}

    std::string_view name() const noexcept { return "checker"; }
    ormcache::ReadResult read(const ormcache::ReadRequest& r) { return inner_->read(r); }
    bool fill(const ormcache::FillRequest& f) {
        if (wrapping.slow_fill_us > 0) {
            thread_local std::minstd_rand rng(static_cast<unsigned>(now_ns()));
            std::this_thread::sleep_for(std::chrono::microseconds{
                static_cast<std::int64_t>(rng() % static_cast<unsigned>(wrapping.slow_fill_us))});
        }
        return inner_->fill(f);
    }
    void invalidate(const ormcache::InvalidationBatch& b) {
        if (die_at_next_invalidation.load(std::memory_order_relaxed)) {
            if (thread_log != nullptr) {
                thread_log->add(Event{.kind = Kind::death, .txid = ::getpid(), .end = now_ns()});
                thread_log->flush();
            }
            ::raise(SIGKILL);
        }
        if (!wrapping.drop_invalidations)
            inner_->invalidate(b);
    }
    void clear() { inner_->clear(); }

  private:
    std::unique_ptr<ormcache::AnyBackend> inner_;
};

void register_checker_backend() {
    ormcache::register_backend("checker", [](const ormcache::CacheConfig& config) {
        ormcache::CacheConfig inner_config = config;
        inner_config.backend = wrapping.inner;
        auto inner = ormcache::detail::make_backend(inner_config);
        if (inner->stores_objects()) {
            return std::make_unique<ormcache::AnyBackend>(
                std::make_unique<CheckerBackend<true>>(std::move(inner)));
        }
        return std::make_unique<ormcache::AnyBackend>(
            std::make_unique<CheckerBackend<false>>(std::move(inner)));
    });
}

// --- workers ----------------------------------------------------------------------------------

bool wraps_backend(const Settings& s) {
    return s.break_invalidation || s.fault == Fault::writer_kill || s.slow_fill_us > 0;
}

/// Where a worker process finds everything (fixed before the first fork).
struct Run {
    Settings settings;
    std::filesystem::path dir;
    std::string db_path;
    int server_port = 0;  // redis/memcached
    int proxy_port = 0;   // the partition fault: the port worker 0 uses instead
    std::int64_t deadline = 0;
};

ormcache::CacheConfig cache_config(const Run& run, bool through_proxy) {
    const Settings& s = run.settings;
    ormcache::CacheConfig c;
    c.backend = s.backend;
    c.key_prefix = "chk:";
    c.expiration_time = std::chrono::seconds{s.ttl_seconds};
    const int port = through_proxy ? run.proxy_port : run.server_port;
    if (s.backend == "file")
        c.arguments = {{"filename", (run.dir / "cache.db").string()}};
    else if (s.backend == "redis")
        c.arguments = {{"host", "127.0.0.1"}, {"port", port}};
    else if (s.backend == "memcached")
        c.arguments = {{"url", {"127.0.0.1:" + std::to_string(port)}}};
    if (wraps_backend(s))
        c.backend = "checker";
    return c;
}

ormcache::DatabaseConfig database_config(const Run& run, bool through_proxy) {
    return ormcache::DatabaseConfig{.connection_string = run.db_path,
                                    .cache_config = cache_config(run, through_proxy),
                                    .busy_timeout = std::chrono::seconds{30}};
}

/// Rolled-back transactions write versions <= this; committed ones only versions >= 0.
constexpr std::int64_t kRolledBackMarker = -1;

/// One worker thread: its session, repository, event file and random numbers.
class Worker {
  public:
    Worker(const Run& run, ormcache::Database& db, int process, int thread)
        : run_(run),
          log_(event_path(run.dir, ::getpid(), thread)),
          session_(db.session()),
          rows_(session_),
          rng_(run.settings.seed * 1'000'003 + static_cast<std::uint64_t>(process) * 1009 +
               static_cast<std::uint64_t>(thread)),
          last_seen_(static_cast<std::size_t>(run.settings.rows) + 1, 0),
          thread_(thread) {
        thread_log = &log_;
    }

    void run_until_deadline() {
        int reported = 0;
        while (now_ns() < run_.deadline) {
            try {
                step();
            } catch (const std::exception& e) {
                log_.add(Event{.kind = Kind::failure, .end = now_ns()});
                if (reported++ < 3)
                    std::cerr << "worker " << ::getpid() << ": call failed: " << e.what() << "\n";
                try {
                    session_.rollback();
                } catch (...) {
                    // the session is unusable: the next step fails too, and is counted
                }
            }
        }
        thread_log = nullptr;
    }

  private:
    void step() {
        const unsigned dice = rng_() % 100;
        if (dice < 20)
            commit_increments();
        else if (dice < 24)
            roll_back_marker();
        else if (dice < 54)
            read_get();
        else if (dice < 66)
            read_some();
        else if (dice < 74)
            read_all();
        else if (dice < 82)
            read_page();
        else
            read_at_least(dice < 91 ? Op::count : Op::exists);
    }

    /// Half of the picks go to rows 1 and 2: races need several threads and processes on one
    /// row at once (concurrent misses that share a load, a commit landing during a fill).
    std::int64_t random_row() {
        const unsigned range = rng_() % 2 == 0 ? 2u : static_cast<unsigned>(run_.settings.rows);
        return 1 + static_cast<std::int64_t>(rng_() % range);
    }

    std::vector<std::int64_t> distinct_rows(std::size_t n) {
        std::set<std::int64_t> ids;
        while (ids.size() < n)
            ids.insert(random_row());
        return {ids.begin(), ids.end()};
    }

    void observe(Op op, const CheckedRow& row, std::int64_t start, std::int64_t end,
                 bool first = true) {
        log_.add(Event{.kind = Kind::read,
                       .op = op,
                       .flag = first,
                       .row = static_cast<std::int32_t>(row.id),
                       .value = row.version,
                       .start = start,
                       .end = end});
        if (row.version >= 0)
            last_seen_[static_cast<std::size_t>(row.id)] = row.version;
    }

    void observe_all(Op op, const std::vector<CheckedRow>& rows, std::int64_t start,
                     std::int64_t end) {
        for (const auto& row : rows)
            observe(op, row, start, end, &row == &rows.front());
    }

    void read_get() {
        const auto id = random_row();
        const auto start = now_ns();
        const CheckedRow row = rows_.get(id);
        observe(Op::get, row, start, now_ns());
    }

    void read_some() {
        const auto ids = distinct_rows(3);
        const auto start = now_ns();
        const auto found = rows_.list(ormcache::CollectionFilter{&CheckedRow::id, ids});
        observe_all(Op::list_some, found, start, now_ns());
    }

    void read_all() {
        const auto start = now_ns();
        const auto found = rows_.list(ormcache::OrderBy{&CheckedRow::id});
        observe_all(Op::list_all, found, start, now_ns());
    }

    void read_page() {
        const std::int64_t offset = random_row() - 1;
        const auto start = now_ns();
        const auto [page, total] =
            rows_.list_and_count(ormcache::LimitOffset{.limit = 8, .offset = offset},
                                 ormcache::OrderBy{&CheckedRow::id});
        observe_all(Op::page, page, start, now_ns());
    }

    /// count/exists of "row id has version >= k", k the last version this thread saw of it
    /// (or one more): a stale answer says no although a commit that reached k has finished.
    void read_at_least(Op op) {
        const auto id = random_row();
        const std::int64_t k = last_seen_[static_cast<std::size_t>(id)] + (rng_() % 2);
        const ormcache::ComparisonFilter is_row{&CheckedRow::id, "=", id};
        const ormcache::ComparisonFilter reached{&CheckedRow::version, ">=", k};
        const auto start = now_ns();
        const bool yes =
            op == Op::count ? rows_.count(is_row, reached) > 0 : rows_.exists(is_row, reached);
        log_.add(Event{.kind = Kind::at_least,
                       .op = op,
                       .flag = yes,
                       .row = static_cast<std::int32_t>(id),
                       .value = k,
                       .start = start,
                       .end = now_ns()});
    }

    /// One transaction that increments 1 to 3 rows; its id goes into checker_commits with it.
    void commit_increments() {
        // Unique across the run: process id, thread, sequence number.
        const std::int64_t txid = (static_cast<std::int64_t>(::getpid()) << 32) |
                                  (static_cast<std::int64_t>(thread_) << 24) | ++sequence_;
        // The first write takes the database's write lock, so the reads below are current.
        session_.execute("INSERT INTO checker_commits (txid) VALUES (?)", txid);
        for (const auto id : distinct_rows(1 + rng_() % 3)) {
            CheckedRow row = rows_.get(id, {.use_cache = false});
            ++row.version;
            rows_.update(row);
            log_.add(Event{.kind = Kind::intent,
                           .op = Op::write,
                           .row = static_cast<std::int32_t>(id),
                           .value = row.version,
                           .txid = txid});
        }
        log_.flush();
        try {
            session_.commit();
        } catch (...) {
            // It may still have committed (the database tells, after the run).
            log_.add(Event{.kind = Kind::commit, .flag = false, .txid = txid, .end = now_ns()});
            throw;
        }
        log_.add(Event{.kind = Kind::commit, .flag = true, .txid = txid, .end = now_ns()});
    }

    /// Writes a negative version, which no read may ever return, and rolls it back.
    void roll_back_marker() {
        CheckedRow row = rows_.get(random_row(), {.use_cache = false});
        row.version = kRolledBackMarker - static_cast<std::int64_t>(rng_() % 1000);
        rows_.update(row);
        session_.rollback();
        log_.add(Event{.kind = Kind::rollback, .op = Op::write, .end = now_ns()});
    }

    const Run& run_;
    EventLog log_;
    ormcache::Session session_;
    ormcache::Repository<CheckedRow> rows_;
    std::mt19937_64 rng_;
    std::vector<std::int64_t> last_seen_;
    const int thread_;
    std::int64_t sequence_ = 0;
};

/// Reads every row through the cache and from the database; one quiescence event per row.
/// Also compares list() through the cache with the database.
std::vector<Event> check_quiescence(ormcache::Database& db, int rows) {
    auto session = db.session();
    ormcache::Repository<CheckedRow> repo{session};
    std::vector<Event> out;
    const auto listed = repo.list(ormcache::OrderBy{&CheckedRow::id});
    for (std::int64_t id = 1; id <= rows; ++id) {
        const auto truth = repo.get(id, {.use_cache = false}).version;
        out.push_back(Event{.kind = Kind::quiescence,
                            .op = Op::get,
                            .row = static_cast<std::int32_t>(id),
                            .value = repo.get(id).version,
                            .txid = truth});
        const auto it = std::find_if(listed.begin(), listed.end(),
                                     [&](const CheckedRow& r) { return r.id == id; });
        out.push_back(Event{.kind = Kind::quiescence,
                            .op = Op::list_all,
                            .row = static_cast<std::int32_t>(id),
                            .value = it == listed.end() ? -1 : it->version,
                            .txid = truth});
    }
    return out;
}

void on_arm_signal(int) {
    die_at_next_invalidation.store(true, std::memory_order_relaxed);
}

/// A worker process's body: its threads until the deadline. With the memory backend (one
/// process), it also checks quiescence itself, since nobody else sees its cache.
[[noreturn]] void worker_process(const Run& run, int process, bool through_proxy) {
    int status = 0;
    try {
        if (run.settings.fault == Fault::writer_kill)
            ::signal(SIGUSR1, on_arm_signal);
        ormcache::Database db{database_config(run, through_proxy)};
        std::vector<std::thread> threads;
        for (int t = 0; t < run.settings.threads; ++t) {
            threads.emplace_back([&, t] {
                try {
                    Worker(run, db, process, t).run_until_deadline();
                } catch (const std::exception& e) {
                    std::cerr << "worker " << ::getpid() << " thread " << t << ": " << e.what()
                              << "\n";
                    ::_exit(3);
                }
            });
        }
        for (auto& t : threads)
            t.join();
        if (run.settings.backend == "memory") {
            sleep_ms(run.settings.window_ms);
            EventLog log(event_path(run.dir, ::getpid(), run.settings.threads));
            for (const auto& e : check_quiescence(db, run.settings.rows))
                log.add(e);
        }
    } catch (const std::exception& e) {
        std::cerr << "worker " << ::getpid() << ": " << e.what() << "\n";
        status = 3;
    }
    // _exit: the parent's servers, proxy and scratch directory were copied into this process
    // by fork, and their destructors must run in the parent only.
    ::_exit(status);
}

// --- the parent: servers, faults, analysis ----------------------------------------------------

/// The partition fault's proxy, in a process of its own so that the parent, which forks the
/// workers, never has a second thread. SIGUSR1 cuts, SIGUSR2 reconnects, SIGTERM ends it.
class ProxyProcess {
  public:
    explicit ProxyProcess(int target_port) {
        int ports[2];
        if (::pipe(ports) != 0)
            throw std::runtime_error("pipe failed");
        sigset_t signals;
        sigemptyset(&signals);
        sigaddset(&signals, SIGUSR1);
        sigaddset(&signals, SIGUSR2);
        sigaddset(&signals, SIGTERM);
        pid_ = ::fork();
        if (pid_ < 0)
            throw std::runtime_error("fork failed");
        if (pid_ == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGTERM);
            ::sigprocmask(SIG_BLOCK, &signals, nullptr);  // before the proxy's thread exists
            {
                ormcache_test::RoundTripProxy proxy(target_port);
                const int port = proxy.port();
                [[maybe_unused]] const auto n = ::write(ports[1], &port, sizeof port);
                for (int sig = 0; sigwait(&signals, &sig) == 0 && sig != SIGTERM;)
                    proxy.set_cut(sig == SIGUSR1);
            }
            ::_exit(0);
        }
        ::close(ports[1]);
        if (::read(ports[0], &port_, sizeof port_) != sizeof port_)
            throw std::runtime_error("the proxy process did not start");
        ::close(ports[0]);
    }
    ProxyProcess(const ProxyProcess&) = delete;
    ProxyProcess& operator=(const ProxyProcess&) = delete;
    ~ProxyProcess() {
        ::kill(pid_, SIGTERM);
        ::waitpid(pid_, nullptr, 0);
    }

    int port() const { return port_; }
    void set_cut(bool cut) { ::kill(pid_, cut ? SIGUSR1 : SIGUSR2); }

  private:
    pid_t pid_ = -1;
    int port_ = 0;
};

struct FaultWindow {
    std::int64_t begin = 0;
    std::int64_t end = 0;
};

void prepare_database(const Run& run) {
    ormcache::Database db{ormcache::DatabaseConfig{.connection_string = run.db_path}};
    db.create_all<CheckedRow>();
    auto session = db.session();
    session.execute("CREATE TABLE IF NOT EXISTS checker_commits (txid INTEGER PRIMARY KEY)");
    ormcache::Repository<CheckedRow> rows{session};
    for (std::int64_t id = 1; id <= run.settings.rows; ++id)
        rows.add({.id = id, .version = 0});
    session.commit();
}

std::set<std::int64_t> committed_transactions(const Run& run) {
    ormcache::Database db{ormcache::DatabaseConfig{.connection_string = run.db_path}};
    auto session = db.session();
    SQLite::Statement query(session.connection(), "SELECT txid FROM checker_commits");
    std::set<std::int64_t> ids;
    while (query.executeStep())
        ids.insert(query.getColumn(0).getInt64());
    return ids;
}

class Supervisor {
  public:
    explicit Supervisor(Run& run) : run_(run), rng_(run.settings.seed) {}

    /// Starts the workers, injects the faults until the deadline, waits for the workers.
    void drive(ormcache_test::ServerProcess* server, ProxyProcess* proxy) {
        for (int p = 0; p < run_.settings.processes; ++p)
            spawn(p == 0 && proxy != nullptr);
        const Fault fault = run_.settings.fault;
        std::int64_t next_fault = now_ns() + 500 * kMillisecond;
        const std::int64_t last_fault = run_.deadline - 1000 * kMillisecond;
        // A last fault the workers do not outlive: an outage they cannot see the end of, or a
        // writer killed before its invalidation and not replaced. What was not delivered
        // then is lost with the workers, and only the quiescence check can find it.
        const bool final_outage = fault == Fault::partition || fault == Fault::server_pause;
        // (A lone worker killed at the end would leave nobody to check a memory cache.)
        const bool final_fault =
            final_outage || (fault == Fault::writer_kill && run_.settings.processes > 1);
        std::optional<std::int64_t> final_fault_began;
        while (now_ns() < run_.deadline) {
            reap(false);
            if (fault != Fault::none && now_ns() >= next_fault && now_ns() < last_fault) {
                inject(fault, server, proxy);
                // The gap outlasts the window after the fault, so that part of every cycle
                // is checked without excuse.
                next_fault = now_ns() + (run_.settings.window_ms + 1000) * kMillisecond;
            }
            if (final_fault && !final_fault_began &&
                now_ns() >= run_.deadline - 300 * kMillisecond) {
                final_fault_began = now_ns();
                if (final_outage)
                    begin_outage(fault, server, proxy);
                else
                    inject(fault, server, proxy);
            }
            sleep_ms(5);
        }
        reap(true);
        if (final_outage && final_fault_began) {
            end_outage(fault, server, proxy);
            faults_.push_back(FaultWindow{*final_fault_began, now_ns()});
        }
    }

    const std::vector<FaultWindow>& faults() const { return faults_; }
    /// When each worker that died of a signal was reaped.
    const std::map<pid_t, std::int64_t>& deaths() const { return deaths_; }
    int crashed_workers() const { return crashed_; }

  private:
    void spawn(bool through_proxy) {
        const int process = next_process_++;
        const pid_t pid = ::fork();
        if (pid < 0)
            throw std::runtime_error("fork failed");
        if (pid == 0)
            worker_process(run_, process, through_proxy);
        workers_[pid] = through_proxy;
    }

    /// A server killed (restarted empty by end_outage), paused, or cut off from worker 0.
    static void begin_outage(Fault fault, ormcache_test::ServerProcess* server,
                             ProxyProcess* proxy) {
        if (fault == Fault::server_kill)
            server->kill();
        else if (fault == Fault::server_pause)
            server->pause();
        else if (fault == Fault::partition)
            proxy->set_cut(true);
    }

    static void end_outage(Fault fault, ormcache_test::ServerProcess* server, ProxyProcess* proxy) {
        if (fault == Fault::server_kill)
            server->restart();
        else if (fault == Fault::server_pause)
            server->resume();
        else if (fault == Fault::partition)
            proxy->set_cut(false);
    }

    void inject(Fault fault, ormcache_test::ServerProcess* server, ProxyProcess* proxy) {
        const std::int64_t begin = now_ns();
        switch (fault) {
            case Fault::server_kill:
            case Fault::server_pause:
            case Fault::partition: {
                static const std::map<Fault, std::int64_t> length_ms{
                    {Fault::server_kill, 300}, {Fault::server_pause, 400}, {Fault::partition, 600}};
                begin_outage(fault, server, proxy);
                sleep_ms(length_ms.at(fault));
                end_outage(fault, server, proxy);
                break;
            }
            case Fault::writer_kill: {
                // The victim dies at its next invalidation; its window closes when it is reaped.
                if (workers_.empty())
                    return;  // every worker failed: the run reports it
                auto it = workers_.begin();
                std::advance(it, static_cast<long>(rng_() % workers_.size()));
                ::kill(it->first, SIGUSR1);
                armed_[it->first] = begin;
                return;
            }
            case Fault::none:
                return;
        }
        faults_.push_back(FaultWindow{begin, now_ns()});
    }

    /// Reaps finished workers; a worker killed before the deadline is replaced. `all`: waits
    /// for every worker (they stop at the deadline; a hung one is killed after a minute).
    void reap(bool all) {
        const std::int64_t give_up = run_.deadline + 60'000 * kMillisecond;
        while (!workers_.empty()) {
            // Worker by worker, not waitpid(-1): the servers are children too, and theirs to
            // reap is ServerProcess's.
            int status = 0;
            pid_t pid = 0;
            for (const auto& [worker, proxied] : workers_) {
                if (::waitpid(worker, &status, WNOHANG) == worker) {
                    pid = worker;
                    break;
                }
            }
            if (pid == 0) {
                if (!all)
                    return;
                if (now_ns() > give_up) {
                    for (const auto& [worker, proxied] : workers_)
                        ::kill(worker, SIGKILL);
                }
                sleep_ms(5);
                continue;
            }
            const bool proxied = workers_.at(pid);
            workers_.erase(pid);
            const std::int64_t now = now_ns();
            if (WIFSIGNALED(status)) {
                deaths_[pid] = now;
                if (const auto armed = armed_.find(pid); armed != armed_.end())
                    faults_.push_back(FaultWindow{armed->second, now});
                if (now < run_.deadline - 500 * kMillisecond)
                    spawn(proxied);
            } else if (WEXITSTATUS(status) != 0) {
                ++crashed_;
            }
        }
    }

    Run& run_;
    std::mt19937_64 rng_;
    int next_process_ = 0;
    std::map<pid_t, bool> workers_;  // running workers, and whether they use the proxy
    std::map<pid_t, std::int64_t> armed_;
    std::map<pid_t, std::int64_t> deaths_;
    std::vector<FaultWindow> faults_;
    int crashed_ = 0;
};

/// The committed versions of one row, in the order their commits finished.
class RowHistory {
  public:
    void add(std::int64_t finish, std::int64_t version) { commits_.push_back({finish, version}); }

    void seal() {
        std::sort(commits_.begin(), commits_.end());
        std::int64_t highest = 0;
        for (const auto& c : commits_) {
            highest = std::max(highest, c.version);
            highest_.push_back(highest);
        }
    }

    /// The highest version committed by a commit that finished before `start`.
    std::int64_t finished_before(std::int64_t start) const {
        const auto n = finished_count(start);
        return n == 0 ? 0 : highest_[n - 1];
    }

    /// The finish time of the newest commit that finished before `start` with a version >=
    /// `version` (the newest commit the read missed); `start` if there is none.
    std::int64_t newest_missed(std::int64_t start, std::int64_t version) const {
        for (auto n = finished_count(start); n > 0; --n) {
            if (commits_[n - 1].version >= version)
                return commits_[n - 1].finish;
        }
        return start;
    }

  private:
    struct Commit {
        std::int64_t finish;
        std::int64_t version;
        auto operator<=>(const Commit&) const = default;
    };

    std::size_t finished_count(std::int64_t start) const {
        return static_cast<std::size_t>(
            std::lower_bound(commits_.begin(), commits_.end(), Commit{start, INT64_MIN}) -
            commits_.begin());
    }

    std::vector<Commit> commits_;
    std::vector<std::int64_t> highest_;
};

struct Verdict {
    std::uint64_t operations = 0, reads_checked = 0, stale = 0, stale_in_window = 0;
    std::uint64_t rolled_back_seen = 0, stale_at_quiescence = 0, failed_calls = 0;
    std::uint64_t quiescent_reads = 0;  // 0: the quiescence check did not run
    std::uint64_t commits = 0, unresolved_commits = 0, lost_commits = 0;
    std::int64_t max_staleness = 0, max_staleness_in_window = 0;  // nanoseconds
    std::vector<std::string> examples;

    bool violated() const {
        return stale > 0 || rolled_back_seen > 0 || stale_at_quiescence > 0 || lost_commits > 0;
    }
};

Verdict analyse(const Run& run, const std::vector<Event>& events,
                const std::set<std::int64_t>& committed, const Supervisor& supervisor) {
    Verdict v;
    struct Transaction {
        std::vector<std::pair<std::int32_t, std::int64_t>> writes;
        std::optional<std::int64_t> finish;
        bool returned = false;
    };
    std::unordered_map<std::int64_t, Transaction> transactions;
    std::map<pid_t, std::int64_t> deaths = supervisor.deaths();
    for (const auto& e : events) {
        if (e.kind == Kind::intent) {
            transactions[e.txid].writes.emplace_back(e.row, e.value);
        } else if (e.kind == Kind::commit) {
            transactions[e.txid].finish = e.end;
            transactions[e.txid].returned = e.flag;
            ++v.operations;
        } else if (e.kind == Kind::failure) {
            ++v.failed_calls;
            ++v.operations;
        } else if (e.kind == Kind::rollback ||
                   ((e.kind == Kind::read && e.flag) || e.kind == Kind::at_least)) {
            ++v.operations;
        } else if (e.kind == Kind::death) {
            // A process that killed itself said when: more precise than when it was reaped.
            deaths[static_cast<pid_t>(e.txid)] = e.end;
        }
    }
    std::vector<RowHistory> history(static_cast<std::size_t>(run.settings.rows) + 1);
    for (const auto& [txid, t] : transactions) {
        const auto pid = static_cast<pid_t>(txid >> 32);
        if (!committed.contains(txid)) {
            if (t.returned)
                ++v.lost_commits;  // commit() returned and the database does not have it
            continue;
        }
        std::optional<std::int64_t> finish = t.finish;
        if (!finish && deaths.contains(pid))
            finish = deaths.at(pid);
        if (!finish) {
            ++v.unresolved_commits;
            continue;
        }
        ++v.commits;
        for (const auto& [row, version] : t.writes)
            history[static_cast<std::size_t>(row)].add(*finish, version);
    }
    for (auto& h : history)
        h.seal();

    const auto in_window = [&](std::int64_t start) {
        return std::any_of(
            supervisor.faults().begin(), supervisor.faults().end(), [&](const FaultWindow& f) {
                return start >= f.begin && start <= f.end + run.settings.window_ms * kMillisecond;
            });
    };
    const auto stale = [&](const Event& e, std::int64_t expected, std::int64_t missed_finish) {
        const std::int64_t staleness = e.start - missed_finish;
        const bool windowed = in_window(e.start);
        ++(windowed ? v.stale_in_window : v.stale);
        auto& max = windowed ? v.max_staleness_in_window : v.max_staleness;
        max = std::max(max, staleness);
        if (v.examples.size() < 5 && !windowed) {
            std::ostringstream out;
            out << "  stale " << op_name(e.op) << ": row " << e.row << " read "
                << (e.kind == Kind::at_least ? "< " : "") << e.value << ", a commit of version "
                << expected << " had finished " << static_cast<double>(staleness) / 1e6
                << " ms before the read started";
            v.examples.push_back(out.str());
        }
    };
    for (const auto& e : events) {
        if (e.kind == Kind::read) {
            ++v.reads_checked;
            if (e.value < 0) {
                ++v.rolled_back_seen;
                continue;
            }
            const auto& h = history[static_cast<std::size_t>(e.row)];
            const auto expected = h.finished_before(e.start);
            if (expected > e.value)
                stale(e, expected, h.newest_missed(e.start, e.value + 1));
        } else if (e.kind == Kind::at_least) {
            ++v.reads_checked;
            const auto& h = history[static_cast<std::size_t>(e.row)];
            const auto expected = h.finished_before(e.start);
            if (!e.flag && expected >= e.value)
                stale(e, expected, h.newest_missed(e.start, e.value));
        } else if (e.kind == Kind::quiescence) {
            ++v.quiescent_reads;
            if (e.value == e.txid)
                continue;
            ++v.stale_at_quiescence;
            if (v.examples.size() < 10) {
                v.examples.push_back("  at quiescence, " + std::string(op_name(e.op)) + " row " +
                                     std::to_string(e.row) + " read " + std::to_string(e.value) +
                                     " through the cache, the database has " +
                                     std::to_string(e.txid));
            }
        }
    }
    return v;
}

int run_checker(const Settings& settings) {
    ormcache_test::TempDir scratch;
    Run run{.settings = settings,
            .dir = scratch.path(),
            .db_path = scratch.file("checker.db"),
            .deadline = 0};
    if (wraps_backend(settings)) {
        wrapping = Wrapping{.inner = settings.backend,
                            .drop_invalidations = settings.break_invalidation,
                            .slow_fill_us = settings.slow_fill_us};
        register_checker_backend();
    }
    prepare_database(run);

    // Servers and the proxy start before the first fork: every process shares them.
    std::unique_ptr<ormcache_test::ServerProcess> server;
#if ORMCACHE_CHECKER_WITH_REDIS
    if (settings.backend == "redis")
        server = std::make_unique<ormcache_test::RedisServer>();
#endif
#if ORMCACHE_CHECKER_WITH_MEMCACHED
    if (settings.backend == "memcached")
        server = std::make_unique<ormcache_test::MemcachedServer>();
#endif
    if (settings.shared_server() && !server) {
        std::cerr << "ormcache_consistency_checker: built without the " << settings.backend
                  << " backend\n";
        return 2;
    }
    if (server)
        run.server_port = server->port();
    std::unique_ptr<ProxyProcess> proxy;
    if (settings.fault == Fault::partition) {
        proxy = std::make_unique<ProxyProcess>(run.server_port);
        run.proxy_port = proxy->port();
    }

    if (settings.fault == Fault::writer_kill) {
        // Inherited by every worker until it installs its handler: a worker armed before that
        // must not die of the signal's default action.
        ::signal(SIGUSR1, SIG_IGN);
    }
    const std::int64_t began = now_ns();
    run.deadline = began + static_cast<std::int64_t>(settings.seconds * 1e9);
    Supervisor supervisor(run);
    supervisor.drive(server.get(), proxy.get());

    std::vector<Event> events = load_events(run.dir);
    if (settings.backend != "memory") {
        // A fresh Database is what a fresh process sees of the shared cache. It is opened
        // before the window D, not after: the changes that writers which died cut off from the
        // cache could not deliver wait in the database's outbox, and what delivers them within
        // D is a process that has the database open and reaches the cache (docs/reference.md,
        // cache rule 7).
        ormcache::Database fresh{database_config(run, false)};
        sleep_ms(settings.window_ms);
        for (const auto& e : check_quiescence(fresh, settings.rows))
            events.push_back(e);
    }
    const double seconds = static_cast<double>(now_ns() - began) / 1e9;
    const Verdict v = analyse(run, events, committed_transactions(run), supervisor);

    std::printf(
        "checker backend=%s%s fault=%s processes=%dx%d seconds=%.1f operations=%llu "
        "commits=%llu reads_checked=%llu stale=%llu stale_in_window=%llu window_ms=%lld "
        "max_staleness_ms=%.1f max_staleness_in_window_ms=%.1f rolled_back_seen=%llu "
        "stale_at_quiescence=%llu "
        "failed_calls=%llu -> %s\n",
        settings.backend.c_str(), settings.break_invalidation ? "(break-invalidation)" : "",
        fault_name(settings.fault), settings.processes, settings.threads, seconds,
        static_cast<unsigned long long>(v.operations), static_cast<unsigned long long>(v.commits),
        static_cast<unsigned long long>(v.reads_checked), static_cast<unsigned long long>(v.stale),
        static_cast<unsigned long long>(v.stale_in_window),
        static_cast<long long>(settings.window_ms), static_cast<double>(v.max_staleness) / 1e6,
        static_cast<double>(v.max_staleness_in_window) / 1e6,
        static_cast<unsigned long long>(v.rolled_back_seen),
        static_cast<unsigned long long>(v.stale_at_quiescence),
        static_cast<unsigned long long>(v.failed_calls), v.violated() ? "FAIL" : "PASS");
    for (const auto& example : v.examples)
        std::printf("%s\n", example.c_str());
    if (v.lost_commits > 0)
        std::printf("  %llu commits returned but are not in the database\n",
                    static_cast<unsigned long long>(v.lost_commits));
    if (v.unresolved_commits > 0 || supervisor.crashed_workers() > 0) {
        std::printf("  %llu commits of unknown finish time, %d workers exited with an error\n",
                    static_cast<unsigned long long>(v.unresolved_commits),
                    supervisor.crashed_workers());
    }
    if (v.quiescent_reads == 0)
        std::printf("  the quiescence check did not run (its worker died)\n");
    std::fflush(stdout);
    if (supervisor.crashed_workers() > 0 || v.operations == 0 || v.quiescent_reads == 0)
        return 2;
    return v.violated() ? 1 : 0;
}

}  // namespace checker

int main(int argc, char** argv) {
    try {
        return checker::run_checker(checker::parse_settings(argc, argv));
    } catch (const std::exception& e) {
        std::cerr << "ormcache_consistency_checker: " << e.what() << "\n";
        return 2;
    }
}
