// ormcache Redis backend benchmarks (Google Benchmark). See docs/benchmarks.md ("Redis backend")
// for how to run them and what every number means.
//
// One process, one private redis-server on a free 127.0.0.1 port (tests/support), one SQLite
// file of 10,000 users behind a Redis-cached Database. Every comparison is between two figures
// of this same run and the same cached bytes:
//   - a get hit through ormcache against the honest raw alternative: a hiredis GET of the very
//     value the cache wrote, its envelope header skipped, the payload decoded with the same
//     serializer and ormcache::from_json into the same struct;
//   - round trips of a list hit and of a commit that changes 100 cached ids, counted on the
//     server (MONITOR: the commands clients sent; INFO commandstats: what the server ran,
//     commands inside scripts included);
//   - throughput with 1 to 8 threads, ormcache over its pool against one hiredis connection
//     per thread.
// A summary with the goals follows the Google Benchmark table.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <cstdint>
#include <iostream>
#include <map>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <hiredis/hiredis.h>
#include <ormcache/backends/redis.hpp>
#include <ormcache/ormcache.hpp>

#include "bench_support.hpp"
#include "redis_server.hpp"

namespace {

using app::User;
using ormcache::Repository;
using ormcache_bench::Collector;
using ormcache_bench::count_statement;
using ormcache_bench::counter;
using ormcache_bench::fixed;
using ormcache_bench::kIdMask;
using ormcache_bench::kRows;
using ormcache_bench::random_ids;
using ormcache_bench::Result;
using ormcache_bench::statements;
using ormcache_bench::TempDir;
using ormcache_test::CommandDelta;
using ormcache_test::RedisClient;
using ormcache_test::RedisMonitor;
using ormcache_test::RedisServer;

/// ormcache's pool and the number of raw connections in the widest multi-thread case.
constexpr int kThreads = 8;
/// Each timed case runs kRepetitions repetitions of kMinTime seconds, randomly interleaved
/// with the other cases' (see main()), and the summary takes their median.
constexpr double kMinTime = 0.25;
constexpr int kRepetitions = 6;

// ---- the shared fixture ----

ormcache::CacheConfig redis_cache_config(int port) {
    ormcache::CacheConfig c;
    c.backend = "redis";
    c.arguments = {{"host", "127.0.0.1"}, {"port", port}, {"pool_size", kThreads}};
    c.key_prefix = "ocb:";
    return c;  // default serializer: json
}

struct Fixture {
    RedisServer server;
    TempDir dir;
    std::string path = (dir.path() / "bench.db").string();
    ormcache::CacheConfig cache_config = redis_cache_config(server.port());
    ormcache::Database db{ormcache::DatabaseConfig{
        .connection_string = path, .cache_config = cache_config, .on_query = count_statement}};
    /// For INFO commandstats, SCAN and the MONITOR markers (never used by the timed loops).
    std::unique_ptr<RedisClient> client = server.client();
    /// The entity key the cache wrote for each id (index id - 1), read back by SCAN.
    std::vector<std::string> entity_keys;

    Fixture() {
        ormcache_bench::fill_users(db);
        {
            ormcache::Session session = db.session();
            Repository<User> users{session};
            ormcache_bench::warm_all(users);
        }
        entity_keys.resize(static_cast<std::size_t>(kRows));
        for (const auto& key :
             client->keys(cache_config.key_prefix + db.cache_identity() + ":e:users:")) {
            // ...:json:i<id>
            const auto tag = key.rfind(":i");
            std::int64_t id = 0;
            const auto [end, ec] =
                std::from_chars(key.data() + tag + 2, key.data() + key.size(), id);
            if (tag == std::string::npos || ec != std::errc{} || end != key.data() + key.size() ||
                id < 1 || id > kRows) {
                throw std::runtime_error("fixture: unexpected entity key " + key);
            }
            entity_keys[static_cast<std::size_t>(id - 1)] = key;
        }
        for (std::size_t i = 0; i < entity_keys.size(); ++i) {
            if (entity_keys[i].empty())
                throw std::runtime_error("fixture: no cache entry for id " + std::to_string(i + 1));
        }
    }
};

Fixture* g_fixture = nullptr;
Fixture& fixture() {
    return *g_fixture;
}

// ---- what the server did: commands run (INFO commandstats), CPU time used (INFO cpu) ----

struct ServerSnapshot {
    std::map<std::string, long long> calls;
    double cpu_seconds = 0;  ///< used_cpu_user + used_cpu_sys of the redis-server process
};

/// The number after "<name>:" in an INFO reply (whose lines end in "\r\n").
double info_number(const std::string& info, std::string_view name) {
    const std::string tag = "\n" + std::string(name) + ":";
    const auto at = info.find(tag);
    if (at == std::string::npos)
        throw std::runtime_error("INFO has no " + std::string(name));
    return std::stod(info.substr(at + tag.size()));
}

ServerSnapshot server_snapshot() {
    auto& client = *fixture().client;
    ServerSnapshot s;
    s.calls = client.command_calls();
    const std::string cpu = client.command({"INFO", "cpu"}).str;
    s.cpu_seconds = info_number(cpu, "used_cpu_user") + info_number(cpu, "used_cpu_sys");
    return s;
}

/// Sets, per operation since `before`: `server_cmds/op`, every command the server ran
/// (scripts' inner ones included), and `server_cpu_us/op`, the server's CPU time (its network
/// I/O included). Both sides of a comparison are measured the same way, whatever they send.
void server_counters(benchmark::State& state, double ops, const ServerSnapshot& before) {
    const ServerSnapshot after = server_snapshot();
    state.counters["server_cmds/op"] =
        static_cast<double>(CommandDelta::between(before.calls, after.calls).total()) / ops;
    state.counters["server_cpu_us/op"] = (after.cpu_seconds - before.cpu_seconds) * 1e6 / ops;
}

// ---- 1. get hit: ormcache against raw hiredis GET + decode of the same bytes ----

void BM_RedisGetHit(benchmark::State& state) {
    ormcache::Session session = fixture().db.session();
    Repository<User> users{session};
    const auto ids = random_ids(1);
    const auto stats_before = fixture().db.cache_manager().stats();
    const auto statements_before = statements();
    const auto server_before = server_snapshot();
    std::size_t i = 0;
    for (auto _ : state) {
        User u = users.get(ids[i++ & kIdMask]);
        benchmark::DoNotOptimize(u);
    }
    const auto n = static_cast<double>(state.iterations());
    const auto stats_after = fixture().db.cache_manager().stats();
    server_counters(state, n, server_before);
    state.counters["hits/op"] = static_cast<double>(stats_after.hits - stats_before.hits) / n;
    state.counters["sql/op"] = static_cast<double>(statements() - statements_before) / n;
}

/// A hiredis connection of its own, as an application without ormcache would hold.
class RawConnection {
  public:
    explicit RawConnection(int port) : c_(redisConnect("127.0.0.1", port)) {
        if (c_ == nullptr || c_->err != 0)
            throw std::runtime_error("raw hiredis connection failed");
    }
    RawConnection(const RawConnection&) = delete;
    RawConnection& operator=(const RawConnection&) = delete;
    ~RawConnection() { redisFree(c_); }

    /// GET `key`, then the payload decoded into a User. The envelope the cache writes,
    /// "oc1 <stamp> <check length>\n<check><payload>", is skipped, nothing in it checked:
    /// what a program reading its own JSON values from Redis would do.
    User get_user(const std::string& key, const ormcache::Serializer& serializer) {
        const char* argv[] = {"GET", key.data()};
        const std::size_t lengths[] = {3, key.size()};
        auto* reply = static_cast<redisReply*>(redisCommandArgv(c_, 2, argv, lengths));
        if (reply == nullptr)
            throw std::runtime_error(std::string("raw GET failed: ") + c_->errstr);
        const std::unique_ptr<redisReply, void (*)(void*)> owned(reply, freeReplyObject);
        if (reply->type != REDIS_REPLY_STRING)
            throw std::runtime_error("raw GET: no value at " + key);
        std::string_view bytes(reply->str, reply->len);
        const auto newline = bytes.find('\n');
        const auto space = bytes.rfind(' ', newline);
        std::size_t check_size = 0;
        if (!bytes.starts_with("oc1 ") || newline == std::string_view::npos ||
            std::from_chars(bytes.data() + space + 1, bytes.data() + newline, check_size).ec !=
                std::errc{}) {
            throw std::runtime_error("raw GET: not an ormcache envelope at " + key);
        }
        bytes.remove_prefix(newline + 1 + check_size);
        return ormcache::from_json<User>(serializer.decode(bytes));
    }

  private:
    redisContext* c_;
};

void BM_RawHiredisGetDecode(benchmark::State& state) {
    RawConnection raw(fixture().server.port());
    const auto& keys = fixture().entity_keys;
    const auto& serializer = fixture().cache_config.serializer;
    const auto ids = random_ids(1);
    const auto server_before = server_snapshot();
    std::size_t i = 0;
    for (auto _ : state) {
        const std::int64_t id = ids[i++ & kIdMask];
        User u = raw.get_user(keys[static_cast<std::size_t>(id - 1)], serializer);
        if (u.id != id) {
            state.SkipWithError("raw GET decoded the wrong row");
            break;
        }
        benchmark::DoNotOptimize(u);
    }
    server_counters(state, static_cast<double>(state.iterations()), server_before);
}

// ---- 2. a filtered, ordered 50-row list hit ----

std::vector<User> list_page(Repository<User>& users) {
    return users.list(ormcache::ComparisonFilter{&User::age, ">=", 30},
                      ormcache::OrderBy{&User::name, ormcache::Sort::asc},
                      ormcache::LimitOffset{.limit = 50, .offset = 100});
}

void BM_RedisListHit(benchmark::State& state) {
    ormcache::Session session = fixture().db.session();
    Repository<User> users{session};
    if (list_page(users).size() != 50) {
        state.SkipWithError("the list did not return 50 rows");
        return;
    }
    const auto statements_before = statements();
    const auto server_before = server_snapshot();
    for (auto _ : state) {
        auto rows = list_page(users);
        benchmark::DoNotOptimize(rows);
    }
    const auto n = static_cast<double>(state.iterations());
    server_counters(state, n, server_before);
    state.counters["sql/op"] = static_cast<double>(statements() - statements_before) / n;
}

// ---- 3. throughput with 1-8 threads ----

/// Each thread its own session and repository; they share the Database's pool of kThreads.
void BM_RedisGetHitThreads(benchmark::State& state) {
    ormcache::Session session = fixture().db.session();
    Repository<User> users{session};
    ormcache_bench::get_hits_per_thread(state, users);
}

/// Each thread its own hiredis connection.
void BM_RawHiredisGetDecodeThreads(benchmark::State& state) {
    RawConnection raw(fixture().server.port());
    const auto& keys = fixture().entity_keys;
    const auto& serializer = fixture().cache_config.serializer;
    const auto ids = random_ids(100 + static_cast<std::uint64_t>(state.thread_index()));
    std::size_t i = 0;
    for (auto _ : state) {
        User u = raw.get_user(keys[static_cast<std::size_t>(ids[i++ & kIdMask] - 1)], serializer);
        benchmark::DoNotOptimize(u);
    }
    state.SetItemsProcessed(state.iterations());
}

// ---- 4. round trips, counted on the server ----

/// Counts what a piece of code sends to the server: MONITOR lists the commands clients sent
/// (one per round trip, as the backend never pipelines), INFO commandstats what the server
/// ran, commands inside scripts included. Only between begin() and end(); the monitor slows
/// the server, so no timed benchmark runs while one exists.
class TripCounter {
  public:
    TripCounter() : monitor_(fixture().server.port()) {}

    void begin() {
        // In this order: the INFO of command_calls() is then reported by the monitor before
        // the marker that take() sends, so it is never counted as the code's own command.
        before_ = client().command_calls();
        monitor_.take(client());
    }
    void end() {
        for (const auto& name : monitor_.take(client()))
            ++sent_[name];
        const auto delta = CommandDelta::between(before_, client().command_calls());
        for (const auto& [name, calls] : delta.calls)
            ran_[name] += calls;
    }

    double sent() const { return total(sent_); }
    double ran() const { return total(ran_); }
    /// "EVALSHA=5; ran del=500 evalsha=5" for the summary.
    std::string describe() const {
        std::string out;
        for (const auto& [name, n] : sent_)
            out += (out.empty() ? "" : " ") + name + "=" + std::to_string(n);
        out += "; server ran";
        for (const auto& [name, n] : ran_)
            out += " " + name + "=" + std::to_string(n);
        return out;
    }

  private:
    static RedisClient& client() { return *fixture().client; }
    static double total(const std::map<std::string, long long>& m) {
        long long n = 0;
        for (const auto& [name, calls] : m)
            n += calls;
        return static_cast<double>(n);
    }

    RedisMonitor monitor_;
    std::map<std::string, long long> before_;
    std::map<std::string, long long> sent_;
    std::map<std::string, long long> ran_;
};

constexpr int kCountedOps = 100;
constexpr int kCountedCommits = 5;
constexpr std::size_t kChangedIds = 100;

/// What each round-trip benchmark sent, by name, for the summary.
std::map<std::string, std::string> g_trip_details;

void report_trips(benchmark::State& state, const TripCounter& trips, double ops,
                  std::uint64_t statements_before, const std::string& name) {
    state.counters["round_trips/op"] = trips.sent() / ops;
    state.counters["server_cmds/op"] = trips.ran() / ops;
    state.counters["sql/op"] = static_cast<double>(statements() - statements_before) / ops;
    g_trip_details[name] = trips.describe();
}

/// One iteration: kCountedOps get hits of different ids, counted.
void BM_TripsGetHit(benchmark::State& state) {
    ormcache::Session session = fixture().db.session();
    Repository<User> users{session};
    for (auto _ : state) {
        TripCounter trips;
        const auto statements_before = statements();
        trips.begin();
        for (std::int64_t id = 1; id <= kCountedOps; ++id)
            benchmark::DoNotOptimize(users.get(id));
        trips.end();
        report_trips(state, trips, kCountedOps, statements_before, "get_hit");
    }
}

/// One iteration: kCountedOps get misses (each id invalidated first, outside the count).
void BM_TripsGetMiss(benchmark::State& state) {
    ormcache::Session session = fixture().db.session();
    Repository<User> users{session};
    for (auto _ : state) {
        TripCounter trips;
        const auto statements_before = statements();
        for (std::int64_t id = 1; id <= kCountedOps; ++id) {
            fixture().db.cache_manager().invalidate<User>(id);
            trips.begin();
            benchmark::DoNotOptimize(users.get(id));
            trips.end();
        }
        // Less the SQL of the invalidations (none: they only touch the cache).
        report_trips(state, trips, kCountedOps, statements_before, "get_miss");
    }
}

/// One iteration: kCountedOps hits of the 50-row list.
void BM_TripsListHit(benchmark::State& state) {
    ormcache::Session session = fixture().db.session();
    Repository<User> users{session};
    benchmark::DoNotOptimize(list_page(users));  // cached (again, after a get miss run)
    for (auto _ : state) {
        TripCounter trips;
        const auto statements_before = statements();
        trips.begin();
        for (int i = 0; i < kCountedOps; ++i)
            benchmark::DoNotOptimize(list_page(users));
        trips.end();
        report_trips(state, trips, kCountedOps, statements_before, "list_hit");
    }
}

/// The first kChangedIds ids, each with its name changed (a different name every round).
std::vector<User> changed_rows(Repository<User>& users, std::int64_t round) {
    std::vector<User> rows;
    rows.reserve(kChangedIds);
    for (std::int64_t id = 1; id <= static_cast<std::int64_t>(kChangedIds); ++id) {
        User u = users.get(id);  // also (re)fills its cache entry
        u.name = "renamed-" + std::to_string(round) + "-" + std::to_string(id);
        rows.push_back(std::move(u));
    }
    return rows;
}

/// Reads the first kChangedIds ids into the cache again: a commit benchmark leaves the cache
/// as complete as it found it, whatever runs next (the raw GETs need every entry).
void refill_changed(Repository<User>& users) {
    for (std::int64_t id = 1; id <= static_cast<std::int64_t>(kChangedIds); ++id)
        benchmark::DoNotOptimize(users.get(id));
}

bool all_cached(RedisClient& client) {
    for (std::size_t i = 0; i < kChangedIds; ++i) {
        if (!client.get(fixture().entity_keys[i]))
            return false;
    }
    return true;
}

/// One iteration: kCountedCommits commits, each updating kChangedIds cached rows in one
/// transaction; only the commit() is counted (the update statements send nothing to Redis).
void BM_TripsCommit(benchmark::State& state) {
    ormcache::Session session = fixture().db.session();
    Repository<User> users{session};
    std::int64_t round = 0;
    for (auto _ : state) {
        TripCounter trips;
        for (int c = 0; c < kCountedCommits; ++c) {
            auto rows = changed_rows(users, ++round);
            if (!all_cached(*fixture().client)) {
                state.SkipWithError("the changed ids were not cached before the commit");
                return;
            }
            users.update_many(rows);
            trips.begin();
            session.commit();
            trips.end();
        }
        state.counters["round_trips/commit"] = trips.sent() / kCountedCommits;
        state.counters["server_cmds/commit"] = trips.ran() / kCountedCommits;
        g_trip_details["commit"] = trips.describe();
    }
    refill_changed(users);
}

/// Time of update_many(100 cached rows) + commit(), invalidation included; the rows are read
/// (and so cached again) between iterations, outside the timing.
void BM_RedisCommit100(benchmark::State& state) {
    ormcache::Session session = fixture().db.session();
    Repository<User> users{session};
    std::int64_t round = 1000000;
    for (auto _ : state) {
        state.PauseTiming();
        auto rows = changed_rows(users, ++round);
        state.ResumeTiming();
        users.update_many(rows);
        session.commit();
    }
    refill_changed(users);
    state.SetItemsProcessed(state.iterations() * static_cast<std::int64_t>(kChangedIds));
}

// ---- registration ----

void register_benchmarks() {
    auto timed = [](const char* name, void (*fn)(benchmark::State&)) {
        // Real time: the client waits for the server, which runs on another core.
        return benchmark::RegisterBenchmark(name, fn)
            ->MinTime(kMinTime)
            ->Repetitions(kRepetitions)
            ->ReportAggregatesOnly(true)
            ->UseRealTime();
    };
    timed("get/redis_hit", BM_RedisGetHit);
    timed("get/raw_hiredis_get_decode", BM_RawHiredisGetDecode);
    timed("list50/redis_hit", BM_RedisListHit);
    timed("mt/redis_get_hit", BM_RedisGetHitThreads)->ThreadRange(1, kThreads);
    timed("mt/raw_hiredis_get_decode", BM_RawHiredisGetDecodeThreads)->ThreadRange(1, kThreads);
    // Counting runs (MONITOR on): one iteration each. Every case leaves the cache complete, so
    // their order does not matter.
    benchmark::RegisterBenchmark("trips/get_hit", BM_TripsGetHit)->Iterations(1);
    benchmark::RegisterBenchmark("trips/get_miss", BM_TripsGetMiss)->Iterations(1);
    benchmark::RegisterBenchmark("trips/list50_hit", BM_TripsListHit)->Iterations(1);
    benchmark::RegisterBenchmark("trips/commit_100_ids", BM_TripsCommit)->Iterations(1);
    benchmark::RegisterBenchmark("commit/100_changed_ids", BM_RedisCommit100)
        ->Iterations(50)
        ->UseRealTime();
}

// ---- the summary ----

void print_summary(const Collector& c) {
    std::cout << "\nSummary (one run, one redis-server on 127.0.0.1:" << fixture().server.port()
              << "; ns/op and k/s = medians of " << kRepetitions << " repetitions, real time)\n"
              << "metric | ormcache | raw baseline | ratio | goal | met?\n";
    auto row = [](const std::string& metric, const std::string& ours, const std::string& base,
                  const std::string& ratio, const std::string& goal, const char* met) {
        std::cout << metric << " | " << ours << " | " << base << " | " << ratio << " | " << goal
                  << " | " << met << '\n';
    };
    auto yes_no = [](bool met) { return met ? "yes" : "NO"; };
    auto missing = [](const std::string& metric) {
        std::cout << metric << " | not run (filtered out)\n";
    };

    const char* get_metric = "get hit, 1 thread: throughput vs raw hiredis GET + decode";
    if (const Result* o = c.find("get/redis_hit"), *b = c.find("get/raw_hiredis_get_decode");
        o != nullptr && b != nullptr) {
        const double ratio = b->real_ns_per_op / o->real_ns_per_op;
        row(get_metric, fixed(o->real_ns_per_op, 0) + " ns", fixed(b->real_ns_per_op, 0) + " ns",
            fixed(ratio, 2) + "x", ">= 0.90x", yes_no(ratio >= 0.9));
        std::cout << "  client CPU ns/op " << fixed(o->ns_per_op, 0) << " vs "
                  << fixed(b->ns_per_op, 0) << "; server CPU ns/op "
                  << fixed(counter(*o, "server_cpu_us/op") * 1e3, 0) << " vs "
                  << fixed(counter(*b, "server_cpu_us/op") * 1e3, 0) << "; server commands/op "
                  << fixed(counter(*o, "server_cmds/op"), 2) << " vs "
                  << fixed(counter(*b, "server_cmds/op"), 2) << '\n';
    } else {
        missing(get_metric);
    }

    auto trips = [&](const std::string& metric, const std::string& name, const char* key,
                     const std::string& detail) {
        const Result* r = c.find(name);
        if (r == nullptr) {
            missing(metric);
            return;
        }
        const double n = counter(*r, key);
        row(metric, fixed(n, 2) + " (" + g_trip_details[detail] + ")", "-", "-", "1",
            yes_no(n == 1));
    };
    trips("list 50 rows hit: round trips", "trips/list50_hit", "round_trips/op", "list_hit");
    trips("commit of 100 changed ids: round trips", "trips/commit_100_ids", "round_trips/commit",
          "commit");
    trips("get hit: round trips", "trips/get_hit", "round_trips/op", "get_hit");
    if (const Result* r = c.find("trips/get_miss")) {
        std::cout << "get miss: round trips | " << fixed(counter(*r, "round_trips/op"), 2) << " ("
                  << g_trip_details["get_miss"] << ") | - | - | - | -\n";
    }

    const std::string mt_metric =
        "get hit, " + std::to_string(kThreads) + " threads: throughput vs raw";
    const std::string suffix = "/threads:" + std::to_string(kThreads);
    if (const Result* o = c.find("mt/redis_get_hit" + suffix),
        *b = c.find("mt/raw_hiredis_get_decode" + suffix);
        o != nullptr && b != nullptr) {
        const double ratio = o->items_per_second / b->items_per_second;
        row(mt_metric, fixed(o->items_per_second / 1e3, 1) + " k/s",
            fixed(b->items_per_second / 1e3, 1) + " k/s", fixed(ratio, 2) + "x", "-", "-");
    } else {
        missing(mt_metric);
    }
    if (const Result* r = c.find("commit/100_changed_ids")) {
        std::cout << "commit of 100 changed ids: time | " << fixed(r->real_ns_per_op / 1e3, 0)
                  << " us per commit (update_many + commit) | - | - | - | -\n";
    }

    std::cout << "\nget-hit throughput (items/s, real time, total of all threads)\n"
              << "threads | ormcache (pool " << kThreads
              << ") | raw hiredis GET + decode (a connection per thread) | ratio\n";
    for (int t = 1; t <= kThreads; t *= 2) {
        const std::string s = "/threads:" + std::to_string(t);
        const Result* o = c.find("mt/redis_get_hit" + s);
        const Result* b = c.find("mt/raw_hiredis_get_decode" + s);
        if (o == nullptr && b == nullptr)
            continue;
        std::cout << t << " | " << (o ? fixed(o->items_per_second / 1e3, 1) + " k/s" : "-") << " | "
                  << (b ? fixed(b->items_per_second / 1e3, 1) + " k/s" : "-") << " | "
                  << (o && b ? fixed(o->items_per_second / b->items_per_second, 2) + "x" : "-")
                  << '\n';
    }
}

}  // namespace

int main(int argc, char** argv) {
    // Repetitions of the cases run in random order, so that a slow spell of a shared machine
    // (other processes) does not land on one side of a comparison only. Placed first: a
    // --benchmark_enable_random_interleaving=false given by the user comes later and wins.
    std::vector<char*> args(argv, argv + argc);
    char interleave[] = "--benchmark_enable_random_interleaving=true";
    args.insert(args.begin() + 1, interleave);
    return ormcache_bench::bench_main(
        static_cast<int>(args.size()), args.data(), "ormcache redis bench", [] {
            Fixture f;
            g_fixture = &f;
            std::cout << "ormcache redis bench: " << kRows << " rows in " << f.path
                      << ", all cached in redis-server on 127.0.0.1:" << f.server.port() << '\n';
            register_benchmarks();
            Collector reporter;
            benchmark::RunSpecifiedBenchmarks(&reporter);
            print_summary(reporter);
            g_fixture = nullptr;
        });
}
