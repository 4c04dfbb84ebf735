// ormcache cache benchmarks (Google Benchmark). See docs/benchmarks.md for how to run them and
// what every number means.
//
// Everything runs in one process against one file database of 10,000 rows in a fresh temporary
// directory, so every comparison is a ratio of two figures measured in the same run: absolute
// timings depend on the machine and are never asserted. After the benchmarks, a summary table
// prints each issue goal with both figures, their ratio, and whether the goal was met.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <atomic>
#include <barrier>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <iostream>
#include <list>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include <ormcache/ormcache.hpp>

#include "bench_support.hpp"

namespace {

using app::User;
using ormcache::Repository;
using ormcache_bench::Collector;
using ormcache_bench::counter;
using ormcache_bench::fixed;
using ormcache_bench::kIdMask;
using ormcache_bench::kRows;
using ormcache_bench::make_user;
using ormcache_bench::random_ids;
using ormcache_bench::Result;
using ormcache_bench::statements;
using ormcache_bench::TempDir;
using ormcache_bench::warm_all;

// ---- SQL statement counting (DatabaseConfig::on_query): statements(), and SELECTs apart ----

std::atomic<std::uint64_t> g_selects{0};
/// When set, every SELECT waits this long before it runs: a slow query, so that concurrent
/// misses really overlap (the singleflight benchmark's second variant).
std::atomic<int> g_select_delay_us{0};

void count_and_delay(std::string_view sql) {
    ormcache_bench::count_statement(sql);
    if (!sql.starts_with("SELECT"))
        return;
    g_selects.fetch_add(1, std::memory_order_relaxed);
    if (const int delay = g_select_delay_us.load(std::memory_order_relaxed); delay > 0) {
        std::this_thread::sleep_for(std::chrono::microseconds{delay});
    }
}

std::uint64_t selects() {
    return g_selects.load(std::memory_order_relaxed);
}

// ---- the shared fixture: one temp directory, one file database, one cached Database ----

ormcache::DatabaseConfig database_config(const std::string& path, std::int64_t max_entries) {
    return ormcache::DatabaseConfig{
        .connection_string = path,
        .cache_config =
            ormcache::CacheConfig{
                .backend = "memory",
                .arguments = {{"max_entries", max_entries}},
            },
        .on_query = count_and_delay,
    };
}

struct Fixture {
    TempDir dir;
    std::string path = (dir.path() / "bench.db").string();
    ormcache::Database db{database_config(path, 100000)};  // holds the whole table

    Fixture() { ormcache_bench::fill_users(db); }
};

Fixture* g_fixture = nullptr;
Fixture& fixture() {
    return *g_fixture;
}

// ---- 1. get: cache hit, cache off, and the raw SQLiteCpp baseline ----

/// The baseline: a prepared primary-key SELECT on a plain SQLiteCpp connection, mapped into
/// the struct by hand.
void BM_RawSelect(benchmark::State& state) {
    ormcache_bench::raw_select_loop(state, fixture().path);
}

void get_loop(benchmark::State& state, ormcache::Options options) {
    ormcache::Session session = fixture().db.session();
    Repository<User> users{session};
    warm_all(users);
    const auto ids = random_ids(1);
    const auto before = fixture().db.cache_manager().stats();
    const auto statements_before = statements();
    std::size_t i = 0;
    for (auto _ : state) {
        User u = users.get(ids[i++ & kIdMask], options);
        benchmark::DoNotOptimize(u);
    }
    const auto after = fixture().db.cache_manager().stats();
    const auto n = static_cast<double>(state.iterations());
    state.counters["sql/op"] = static_cast<double>(statements() - statements_before) / n;
    state.counters["hits/op"] = static_cast<double>(after.hits - before.hits) / n;
}

void BM_GetHit(benchmark::State& state) {
    get_loop(state, {});
}
void BM_GetNoCache(benchmark::State& state) {
    get_loop(state, {.use_cache = false});
}

// ---- 2. a filtered, ordered 50-row list: cache hit and uncached ----

std::vector<User> list_page(Repository<User>& users, ormcache::Options options) {
    return users.list(ormcache::ComparisonFilter{&User::age, ">=", 30},
                      ormcache::OrderBy{&User::name, ormcache::Sort::asc},
                      ormcache::LimitOffset{.limit = 50, .offset = 100}, options);
}

void list_loop(benchmark::State& state, ormcache::Options options) {
    ormcache::Session session = fixture().db.session();
    Repository<User> users{session};
    if (list_page(users, options).size() != 50) {
        state.SkipWithError("the list did not return 50 rows");
        return;
    }
    const auto statements_before = statements();
    for (auto _ : state) {
        auto rows = list_page(users, options);
        benchmark::DoNotOptimize(rows);
    }
    state.counters["sql/op"] = static_cast<double>(statements() - statements_before) /
                               static_cast<double>(state.iterations());
}

void BM_ListHit(benchmark::State& state) {
    list_loop(state, {});
}
void BM_ListNoCache(benchmark::State& state) {
    list_loop(state, {.use_cache = false});
}

// ---- 3. singleflight: 16 threads miss the same key at once ----

constexpr int kFlightThreads = 16;

/// Each iteration is one round: the key is invalidated, then 16 threads (each on its own
/// session) released together by a barrier all get() it. Counts the SELECTs of each round.
/// Argument: extra latency of each SELECT in microseconds (0: the query as it is).
void BM_Singleflight(benchmark::State& state) {
    auto& db = fixture().db;
    g_select_delay_us.store(static_cast<int>(state.range(0)));
    auto& manager = db.cache_manager();
    std::atomic<std::int64_t> key{0};
    std::atomic<bool> stop{false};
    std::atomic<int> failures{0};
    std::barrier start(kFlightThreads + 1);
    std::barrier done(kFlightThreads + 1);
    std::vector<std::thread> workers;
    for (int t = 0; t < kFlightThreads; ++t) {
        workers.emplace_back([&] {
            ormcache::Session session = db.session();
            Repository<User> users{session};
            for (;;) {
                start.arrive_and_wait();
                if (stop.load())
                    break;
                try {
                    if (users.get(key.load()).id != key.load())
                        failures.fetch_add(1);
                } catch (...) {
                    failures.fetch_add(1);
                }
                done.arrive_and_wait();
            }
        });
    }
    std::uint64_t total = 0, min_round = UINT64_MAX, max_round = 0;
    const auto before = manager.stats();
    std::int64_t round = 0;
    for (auto _ : state) {
        const std::int64_t id = ++round * 37 % kRows + 1;
        manager.invalidate<User>(id);  // the next get of `id` is a miss for everyone
        key.store(id);
        const auto selects_before = selects();
        start.arrive_and_wait();
        done.arrive_and_wait();
        const auto n = selects() - selects_before;
        total += n;
        min_round = std::min(min_round, n);
        max_round = std::max(max_round, n);
    }
    const auto after = manager.stats();
    g_select_delay_us.store(0);
    stop.store(true);
    start.arrive_and_wait();
    for (auto& w : workers)
        w.join();
    if (failures.load() != 0)
        state.SkipWithError("a get() failed or returned the wrong row");
    const auto rounds = static_cast<double>(state.iterations());
    state.counters["selects/round"] = static_cast<double>(total) / rounds;
    state.counters["min_selects"] = static_cast<double>(min_round);
    state.counters["max_selects"] = static_cast<double>(max_round);
    state.counters["waits/round"] =
        static_cast<double>(after.singleflight_waits - before.singleflight_waits) / rounds;
    state.counters["hits/round"] = static_cast<double>(after.hits - before.hits) / rounds;
}

// ---- 4. throughput of get hits with 1/2/4/8 threads ----

/// Through the repository: each thread has its own session and repository.
void BM_GetHitThreads(benchmark::State& state) {
    ormcache::Session session = fixture().db.session();
    Repository<User> users{session};
    if (state.thread_index() == 0)
        warm_all(users);
    ormcache_bench::get_hits_per_thread(state, users);
}

/// The memory backend alone (what a get hit asks of it: entry plus generation counter).
ormcache::MemoryBackend g_backend;
std::vector<std::string> g_backend_keys;

void BM_BackendReadThreads(benchmark::State& state) {
    if (state.thread_index() == 0 && g_backend_keys.empty()) {
        for (std::int64_t id = 1; id <= kRows; ++id) {
            g_backend_keys.push_back("aa:e:users:0123456789abcdef:json:i" + std::to_string(id));
            g_backend.fill(ormcache::FillRequest{
                g_backend_keys.back(),
                ormcache::CacheValue{{}, std::make_shared<const User>(make_user(id))},
                ormcache::Ttl{-1},
                {},
                {}});
        }
    }
    const auto ids = random_ids(200 + static_cast<std::uint64_t>(state.thread_index()));
    ormcache::ReadRequest request{{}, {"aa:g:users"}, std::nullopt};
    std::size_t i = 0;
    for (auto _ : state) {
        request.key = g_backend_keys[static_cast<std::size_t>(ids[i++ & kIdMask] - 1)];
        auto result = g_backend.read(request);
        benchmark::DoNotOptimize(result);
    }
    state.SetItemsProcessed(state.iterations());
}

// ---- 5. LRU eviction under a skewed access pattern ----

constexpr std::size_t kWarmAccesses = 50000;
constexpr std::size_t kMeasuredAccesses = 100000;

/// Ranks drawn from Zipf(s) over kRows items (s = 0: uniform), mapped onto ids through a fixed
/// permutation so that the hot ids are scattered over the table and the shards.
struct AccessTrace {
    std::vector<std::int64_t> ids;
    std::vector<double> probability;  // by rank, descending
};

AccessTrace zipf_trace(double s, std::size_t length, std::uint64_t seed) {
    std::vector<double> weights(kRows);
    double sum = 0;
    for (std::size_t r = 0; r < weights.size(); ++r) {
        weights[r] = 1.0 / std::pow(static_cast<double>(r + 1), s);
        sum += weights[r];
    }
    AccessTrace trace;
    std::vector<double> cdf(weights.size());
    double acc = 0;
    for (std::size_t r = 0; r < weights.size(); ++r) {
        trace.probability.push_back(weights[r] / sum);
        acc += weights[r] / sum;
        cdf[r] = acc;
    }
    std::vector<std::int64_t> id_of_rank(kRows);
    for (std::int64_t i = 0; i < kRows; ++i)
        id_of_rank[static_cast<std::size_t>(i)] = i + 1;
    std::mt19937_64 rng(seed);
    std::shuffle(id_of_rank.begin(), id_of_rank.end(), rng);
    trace.ids.reserve(length);
    for (std::size_t i = 0; i < length; ++i) {
        const double u = static_cast<double>(rng() >> 11) * 0x1.0p-53;
        const auto rank =
            static_cast<std::size_t>(std::lower_bound(cdf.begin(), cdf.end(), u) - cdf.begin());
        trace.ids.push_back(id_of_rank[std::min(rank, id_of_rank.size() - 1)]);
    }
    return trace;
}

/// Hit ratio of one exact (unsharded) LRU of `capacity` over the measured part of the trace.
double simulate_lru(const std::vector<std::int64_t>& ids, std::size_t capacity) {
    std::list<std::int64_t> order;
    std::unordered_map<std::int64_t, std::list<std::int64_t>::iterator> where;
    std::size_t hits = 0;
    for (std::size_t i = 0; i < ids.size(); ++i) {
        const auto it = where.find(ids[i]);
        if (it != where.end()) {
            if (i >= kWarmAccesses)
                ++hits;
            order.splice(order.begin(), order, it->second);
            continue;
        }
        order.push_front(ids[i]);
        where[ids[i]] = order.begin();
        if (order.size() > capacity) {
            where.erase(order.back());
            order.pop_back();
        }
    }
    return static_cast<double>(hits) / static_cast<double>(ids.size() - kWarmAccesses);
}

/// Arguments: max_entries, Zipf exponent x100 (0 = uniform).
void BM_LruZipf(benchmark::State& state) {
    const auto max_entries = static_cast<std::size_t>(state.range(0));
    const double s = static_cast<double>(state.range(1)) / 100.0;
    ormcache::Database db{database_config(fixture().path, state.range(0))};
    ormcache::Session session = db.session();
    Repository<User> users{session};
    const AccessTrace trace = zipf_trace(s, kWarmAccesses + kMeasuredAccesses, 42);
    for (std::size_t i = 0; i < kWarmAccesses; ++i)
        benchmark::DoNotOptimize(users.get(trace.ids[i]));
    const auto before = db.cache_manager().stats();
    std::size_t i = kWarmAccesses;
    for (auto _ : state) {
        User u = users.get(trace.ids[i]);
        benchmark::DoNotOptimize(u);
        if (++i == trace.ids.size())
            i = kWarmAccesses;
    }
    const auto after = db.cache_manager().stats();
    const auto hits = static_cast<double>(after.hits - before.hits);
    const auto misses = static_cast<double>(after.misses - before.misses);
    // The memory backend splits max_entries over 16 shards (rounding up per shard).
    const std::size_t shards = std::min<std::size_t>(16, max_entries);
    const std::size_t capacity = (max_entries + shards - 1) / shards * shards;
    double top = 0;
    for (std::size_t r = 0; r < std::min(capacity, trace.probability.size()); ++r) {
        top += trace.probability[r];
    }
    state.counters["hit_ratio"] = hits / (hits + misses);
    state.counters["exact_lru"] = simulate_lru(trace.ids, capacity);
    state.counters["top_k_mass"] = top;  // hit ratio of a perfect frequency-based cache
}

// ---- registration ----

constexpr double kMinTime = 0.3;

void register_benchmarks() {
    auto pair = [](const char* name, void (*fn)(benchmark::State&)) {
        benchmark::RegisterBenchmark(name, fn)
            ->MinTime(kMinTime)
            ->Repetitions(3)
            ->ReportAggregatesOnly(true);
    };
    pair("get/raw_sqlitecpp", BM_RawSelect);
    pair("get/cache_hit", BM_GetHit);
    pair("get/use_cache_false", BM_GetNoCache);
    pair("list50/cache_hit", BM_ListHit);
    pair("list50/use_cache_false", BM_ListNoCache);
    benchmark::RegisterBenchmark("singleflight/16_threads_one_key", BM_Singleflight)
        ->ArgName("select_delay_us")
        ->Arg(0)
        ->Arg(2000)
        ->Iterations(200)
        ->UseRealTime();
    benchmark::RegisterBenchmark("mt/get_hit", BM_GetHitThreads)
        ->MinTime(kMinTime)
        ->ThreadRange(1, 8)
        ->UseRealTime();
    benchmark::RegisterBenchmark("mt/memory_backend_read", BM_BackendReadThreads)
        ->MinTime(kMinTime)
        ->ThreadRange(1, 8)
        ->UseRealTime();
    benchmark::RegisterBenchmark("lru/get", BM_LruZipf)
        ->ArgNames({"max_entries", "zipf_x100"})
        ->Args({500, 99})
        ->Args({1000, 99})
        ->Args({2000, 99})
        ->Args({1000, 70})
        ->Args({1000, 0})
        ->Iterations(kMeasuredAccesses);
}

// ---- the summary: each goal of the issue with both figures measured in this run ----

void print_summary(const Collector& c) {
    std::cout << "\nSummary (one run, same process; ns/op = median CPU time of 3 repetitions)\n"
              << "metric | ormcache ns/op | baseline ns/op | ratio | goal | met?\n";
    auto row = [](const std::string& metric, const std::string& ours, const std::string& base,
                  const std::string& ratio, const std::string& goal, bool met) {
        std::cout << metric << " | " << ours << " | " << base << " | " << ratio << " | " << goal
                  << " | " << (met ? "yes" : "NO") << '\n';
    };
    auto speedup = [&](const char* metric, const char* ours, const char* base, double goal) {
        const Result* o = c.find(ours);
        const Result* b = c.find(base);
        if (o == nullptr || b == nullptr) {
            std::cout << metric << " | not run (filtered out)\n";
            return;
        }
        const double ratio = b->ns_per_op / o->ns_per_op;
        row(metric, fixed(o->ns_per_op, 1), fixed(b->ns_per_op, 1), fixed(ratio, 1) + "x faster",
            ">= " + fixed(goal, 0) + "x faster", ratio >= goal);
    };
    speedup("get hit (memory) vs raw SQLiteCpp PK select", "get/cache_hit", "get/raw_sqlitecpp",
            20);
    if (const Result* o = c.find("get/use_cache_false"), *b = c.find("get/raw_sqlitecpp");
        o != nullptr && b != nullptr) {
        const double ratio = o->ns_per_op / b->ns_per_op;
        row("get use_cache=false vs raw SQLiteCpp PK select", fixed(o->ns_per_op, 1),
            fixed(b->ns_per_op, 1), fixed(ratio, 2) + "x slower", "<= 1.30x slower", ratio <= 1.3);
    } else {
        std::cout << "get use_cache=false vs raw SQLiteCpp PK select | not run (filtered out)\n";
    }
    speedup("list 50 rows (filter+order) hit vs uncached", "list50/cache_hit",
            "list50/use_cache_false", 100);
    for (const int delay : {0, 2000}) {
        const std::string metric = "16 threads miss one key (SELECT delay " +
                                   std::to_string(delay) + " us): SELECTs/round";
        const Result* f =
            c.find("singleflight/16_threads_one_key/select_delay_us:" + std::to_string(delay));
        if (f == nullptr) {
            std::cout << metric << " | not run (filtered out)\n";
            continue;
        }
        const double lo = counter(*f, "min_selects");
        const double hi = counter(*f, "max_selects");
        row(metric,
            fixed(counter(*f, "selects/round"), 2) + " (min " + fixed(lo, 0) + ", max " +
                fixed(hi, 0) + ")",
            "-",
            fixed(counter(*f, "waits/round"), 1) + " waits, " +
                fixed(counter(*f, "hits/round"), 1) + " hits/round",
            "exactly 1", lo == 1 && hi == 1);
    }

    std::cout << "\nget-hit throughput (items/s, real time; the machine's cores bound it)\n"
              << "threads | repository get hit | memory backend read\n";
    for (int t = 1; t <= 8; t *= 2) {
        const std::string suffix = "/threads:" + std::to_string(t);
        const Result* g = c.find("mt/get_hit" + suffix);
        const Result* b = c.find("mt/memory_backend_read" + suffix);
        if (g == nullptr && b == nullptr)
            continue;
        std::cout << t << " | " << (g ? fixed(g->items_per_second / 1e6, 2) + " M/s" : "-") << " | "
                  << (b ? fixed(b->items_per_second / 1e6, 2) + " M/s" : "-") << '\n';
    }

    std::cout << "\nLRU under max_entries < working set (10,000 ids, " << kMeasuredAccesses
              << " measured gets after " << kWarmAccesses << " warm-up gets)\n"
              << "max_entries | access | hit ratio | exact LRU (simulated) | top-k mass (perfect "
                 "LFU bound) | get ns/op (avg)\n";
    for (const auto& [cap, zipf] : std::vector<std::pair<int, int>>{
             {500, 99}, {1000, 99}, {2000, 99}, {1000, 70}, {1000, 0}}) {
        const std::string name =
            "lru/get/max_entries:" + std::to_string(cap) + "/zipf_x100:" + std::to_string(zipf);
        const Result* r = c.find(name);
        if (r == nullptr)
            continue;
        const std::string access =
            zipf == 0 ? "uniform" : "zipf s=" + fixed(static_cast<double>(zipf) / 100.0, 2);
        std::cout << cap << " | " << access << " | " << fixed(counter(*r, "hit_ratio"), 3) << " | "
                  << fixed(counter(*r, "exact_lru"), 3) << " | "
                  << fixed(counter(*r, "top_k_mass"), 3) << " | " << fixed(r->ns_per_op, 0) << '\n';
    }
}

}  // namespace

int main(int argc, char** argv) {
    return ormcache_bench::bench_main(argc, argv, "ormcache bench", [] {
        Fixture f;
        g_fixture = &f;
        std::cout << "ormcache bench: " << kRows << " rows in " << f.path << '\n';
        register_benchmarks();
        Collector reporter;
        benchmark::RunSpecifiedBenchmarks(&reporter);
        print_summary(reporter);
        g_fixture = nullptr;
    });
}
