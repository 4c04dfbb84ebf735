// ormcache commit benchmark (Google Benchmark): the cost per changed row of a commit, from the
// UPDATE to the backend's invalidation, for 1, 100, 10,000 and 100,000 changed rows (issue 10,
// item 5: a commit of many rows was quadratic). See docs/benchmarks.md, "Commit of many rows".
//
// Three Databases, each on its own in-memory SQLite database (no disk in the figures) holding
// ten tables of 10,000 rows: no cache (the baseline: SQLite and the change journal), the memory
// backend, and the Redis backend on a private redis-server (tests/support). One iteration is
// one transaction: UPDATE statements changing `rows` rows, then commit(). The rows are spread
// over as many tables as needed to keep at most 10,000 in each (the journal's
// max_rows_per_table), so that every row is named to the cache, none collapses into a
// whole-table change. The changed rows are not cached: the backend deletes each row's key
// whether or not it holds an entry (a Redis DEL, a hash-map lookup), which is what a commit
// costs the cache whatever was read before.
//
// The figure is the time per changed row (`per_row`, real time): it stays flat when the commit
// path is linear in the number of rows. A summary prints it for each backend and size, next to
// the uncached baseline.

#include <benchmark/benchmark.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <memory>
#include <stdexcept>
#include <string>
#include <vector>

#include <ormcache/backends/redis.hpp>
#include <ormcache/ormcache.hpp>

#include "bench_support.hpp"
#include "redis_server.hpp"

namespace app {

// Ten tables alike, so that 100,000 changed rows stay named (at most 10,000 per table).
#define ORMCACHE_BENCH_ITEM_MODEL(n) \
    struct Item##n {                 \
        std::int64_t id = 0;         \
        std::int64_t v = 0;          \
    };                               \
    ORMCACHE_MODEL(Item##n, "items_" #n, id, v)

ORMCACHE_BENCH_ITEM_MODEL(0)
ORMCACHE_BENCH_ITEM_MODEL(1)
ORMCACHE_BENCH_ITEM_MODEL(2)
ORMCACHE_BENCH_ITEM_MODEL(3)
ORMCACHE_BENCH_ITEM_MODEL(4)
ORMCACHE_BENCH_ITEM_MODEL(5)
ORMCACHE_BENCH_ITEM_MODEL(6)
ORMCACHE_BENCH_ITEM_MODEL(7)
ORMCACHE_BENCH_ITEM_MODEL(8)
ORMCACHE_BENCH_ITEM_MODEL(9)

#undef ORMCACHE_BENCH_ITEM_MODEL

}  // namespace app

namespace {

using ormcache_bench::Collector;
using ormcache_bench::fixed;
using ormcache_bench::Result;
using ormcache_test::RedisServer;

constexpr int kTables = 10;
/// Rows per table: the journal's max_rows_per_table, so that a full table is still named.
constexpr std::int64_t kRowsPerTable = ormcache::detail::ChangeJournal::max_rows_per_table;
constexpr std::int64_t kSizes[] = {1, 100, 10000, 100000};
static_assert(kTables * kRowsPerTable >= 100000);

/// Creates the ten tables, fills them, and registers the models with the cache (a
/// repository does), so that the cache names the changed rows' keys.
template <class... Items>
void prepare(ormcache::Database& db) {
    db.create_all<Items...>();
    ormcache::Session session = db.session();
    int table = 0;
    const auto fill = [&]<class Item>() {
        ormcache::Repository<Item> registers{session};
        session.execute(
            "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < "
            "?) INSERT INTO items_" +
                std::to_string(table++) + " (id, v) SELECT x, 0 FROM c",
            kRowsPerTable);
    };
    (fill.template operator()<Items>(), ...);
    session.commit();
}

struct Variant {
    std::string name;
    std::unique_ptr<ormcache::Database> db;
};

struct Fixture {
    RedisServer server;
    std::vector<Variant> variants;

    Fixture() {
        ormcache::CacheConfig redis;
        redis.backend = "redis";
        redis.arguments = {{"host", "127.0.0.1"}, {"port", server.port()}};
        redis.key_prefix = "occ:";
        add("no_cache", std::nullopt);
        add("memory", ormcache::CacheConfig{.backend = "memory"});
        add("redis", redis);
    }

    void add(std::string name, std::optional<ormcache::CacheConfig> cache) {
        auto db = std::make_unique<ormcache::Database>(ormcache::DatabaseConfig{
            .connection_string = ":memory:", .cache_config = std::move(cache)});
        prepare<app::Item0, app::Item1, app::Item2, app::Item3, app::Item4, app::Item5, app::Item6,
                app::Item7, app::Item8, app::Item9>(*db);
        variants.push_back(Variant{std::move(name), std::move(db)});
    }
};

Fixture* g_fixture = nullptr;

/// One iteration: UPDATE `rows` rows (at most kRowsPerTable per table), then commit().
void BM_Commit(benchmark::State& state, ormcache::Database* db) {
    const std::int64_t rows = state.range(0);
    std::vector<std::string> updates;
    for (int t = 0; t < kTables; ++t)
        updates.push_back("UPDATE items_" + std::to_string(t) + " SET v = v + 1 WHERE id <= ?");
    ormcache::Session session = db->session();
    const auto before = db->cache_manager().stats();
    for (auto _ : state) {
        std::int64_t changed = 0;
        for (int t = 0; changed < rows; ++t) {
            changed += session.execute(updates[static_cast<std::size_t>(t)],
                                       std::min(rows - changed, kRowsPerTable));
        }
        session.commit();
    }
    // Every changed row's key was handed to the backend (none collapsed into a whole-table
    // change): 1 for the cached variants, 0 without a cache.
    const auto after = db->cache_manager().stats();
    state.counters["removed/row"] =
        static_cast<double>(after.invalidations - before.invalidations) /
        (static_cast<double>(rows) * static_cast<double>(state.iterations()));
    // Seconds per changed row (printed as such by Google Benchmark: kInvert of a rate).
    state.counters["per_row"] = benchmark::Counter(
        static_cast<double>(rows),
        benchmark::Counter::kIsIterationInvariantRate | benchmark::Counter::kInvert);
}

/// The outbox's cost (docs/caching.md, "Across processes"): a commit of one changed row on a
/// database file, with the Redis backend with and without the outbox (durable_invalidation),
/// and with the memory backend (which needs none). The file is in /dev/shm: no fsync in the
/// figures, so the outbox's INSERT is as large a share of the commit as it can be.
struct OutboxFixture {
    explicit OutboxFixture(int redis_port) {
        ormcache::CacheConfig redis;
        redis.backend = "redis";
        redis.arguments = {{"host", "127.0.0.1"}, {"port", redis_port}};
        redis.key_prefix = "oco:";
        add("redis_outbox", redis);
        redis.durable_invalidation = false;
        add("redis_no_outbox", redis);
        add("memory", ormcache::CacheConfig{.backend = "memory"});
    }
    ~OutboxFixture() {
        variants.clear();
        std::filesystem::remove_all(dir);
    }

    void add(std::string name, ormcache::CacheConfig cache) {
        auto db = std::make_unique<ormcache::Database>(
            ormcache::DatabaseConfig{.connection_string = (dir / (name + ".db")).string(),
                                     .cache_config = std::move(cache)});
        db->create_all<app::Item0>();
        auto session = db->session();
        ormcache::Repository<app::Item0> registers{session};
        registers.add(app::Item0{.id = 1, .v = 0});
        session.commit();
        variants.push_back(Variant{std::move(name), std::move(db)});
    }

    std::filesystem::path dir = [] {
        std::string pattern = "/dev/shm/ormcache-bench-commit-XXXXXX";
        if (mkdtemp(pattern.data()) == nullptr)
            throw std::runtime_error("cannot create a directory in /dev/shm");
        return std::filesystem::path(pattern);
    }();
    std::vector<Variant> variants;
};

OutboxFixture* g_outbox = nullptr;

void BM_CommitOneRow(benchmark::State& state, ormcache::Database* db) {
    ormcache::Session session = db->session();
    for (auto _ : state) {
        session.execute("UPDATE items_0 SET v = v + 1 WHERE id = 1");
        session.commit();
    }
}

void register_benchmarks() {
    for (auto& variant : g_outbox->variants) {
        benchmark::RegisterBenchmark(("outbox/" + variant.name).c_str(), BM_CommitOneRow,
                                     variant.db.get())
            ->MinTime(0.5)
            ->Repetitions(5)
            ->ReportAggregatesOnly(true)
            ->UseRealTime();
    }
    for (auto& variant : g_fixture->variants) {
        auto* b = benchmark::RegisterBenchmark(("commit/" + variant.name).c_str(), BM_Commit,
                                               variant.db.get());
        for (const auto rows : kSizes)
            b->Arg(rows);
        b->ArgName("rows")->MinTime(0.3)->Repetitions(3)->ReportAggregatesOnly(true)->UseRealTime();
    }
}

void print_outbox_summary(const Collector& c) {
    const Result* on = c.find("outbox/redis_outbox");
    const Result* off = c.find("outbox/redis_no_outbox");
    const Result* memory = c.find("outbox/memory");
    std::cout << "\nCommit of one changed row on a database file in /dev/shm (median of 5)\n"
                 "redis, outbox us | redis, no outbox us | outbox / no outbox | memory us\n";
    const auto us = [](const Result* r) {
        return r == nullptr ? std::string("-") : fixed(r->real_ns_per_op / 1000.0, 1);
    };
    std::cout << us(on) << " | " << us(off) << " | "
              << (on == nullptr || off == nullptr
                      ? std::string("-")
                      : fixed(on->real_ns_per_op / off->real_ns_per_op, 2) + "x")
              << " | " << us(memory) << '\n';
}

void print_summary(const Collector& c) {
    std::cout
        << "\nCommit of N changed rows: real time per changed row (UPDATE + commit, median of "
           "3 repetitions)\nrows | ";
    for (const auto& variant : g_fixture->variants)
        std::cout << variant.name << " ns/row | ";
    std::cout << "memory - no_cache | redis - no_cache\n";
    for (const auto rows : kSizes) {
        std::cout << rows;
        std::vector<double> per_row;
        for (const auto& variant : g_fixture->variants) {
            const Result* r = c.find("commit/" + variant.name + "/rows:" + std::to_string(rows));
            per_row.push_back(r == nullptr ? -1 : r->real_ns_per_op / static_cast<double>(rows));
            std::cout << " | " << (r == nullptr ? "-" : fixed(per_row.back(), 1));
        }
        for (std::size_t i = 1; i < per_row.size(); ++i) {
            std::cout << " | "
                      << (per_row[0] < 0 || per_row[i] < 0 ? "-"
                                                           : fixed(per_row[i] - per_row[0], 1));
        }
        std::cout << '\n';
    }
}

}  // namespace

int main(int argc, char** argv) {
    return ormcache_bench::bench_main(argc, argv, "ormcache commit bench", [] {
        Fixture f;
        g_fixture = &f;
        OutboxFixture outbox(f.server.port());
        g_outbox = &outbox;
        std::cout << "ormcache commit bench: " << kTables << " tables of " << kRowsPerTable
                  << " rows per Database; redis-server on 127.0.0.1:" << f.server.port() << '\n';
        register_benchmarks();
        Collector reporter;
        benchmark::RunSpecifiedBenchmarks(&reporter);
        print_summary(reporter);
        print_outbox_summary(reporter);
        g_fixture = nullptr;
        g_outbox = nullptr;
    });
}
