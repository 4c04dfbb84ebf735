// The memcached backend's hit path against raw libmemcached (Google Benchmark); see
// docs/benchmarks.md. It starts its own memcached on a free 127.0.0.1 port
// (tests/support/memcached_server.hpp), fills the cache with 1,000 users (the rows of
// bench_support.hpp), then measures in the same run:
//   memcached/get_hit:         users.get(id), every entry cached (one gets of the entry and
//                              the table's generation counter, then the envelope decoded);
//   memcached/raw_get_decode:  the baseline: memcached_get of the same entry's bytes on a
//                              plain libmemcached handle, the envelope parsed and the JSON
//                              decoded into app::User by ormcache::from_json.
//   memcached/commit/100_changed_ids: update_many of 100 users and the commit, whose
//                              invalidation deletes 100 entity keys and bumps the list
//                              version; a RoundTripProxy (tests/support) between the backend
//                              and the server counts the round trips each commit costs.
// The summary prints the two hit figures, whether get_hit reaches 0.9x the baseline's
// throughput, and the commit's time and round trips.

#include <benchmark/benchmark.h>
#include <libmemcached/memcached.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <ormcache/backends/memcached.hpp>
#include <ormcache/ormcache.hpp>

#include "bench_support.hpp"
#include "memcached_server.hpp"
#include "round_trip_proxy.hpp"

namespace {

using app::User;
using ormcache::Repository;
using ormcache_bench::Collector;
using ormcache_bench::counter;
using ormcache_bench::kIdMask;
using ormcache_bench::random_ids;
using ormcache_bench::Result;
using ormcache_bench::statements;
using ormcache_bench::TempDir;

/// The users in the database and the cache; the get benchmarks read random ones of them.
constexpr std::int64_t kCachedRows = 1000;
const std::string kPrefix = "bench:";

struct Fixture {
    ormcache_test::MemcachedServer server;
    TempDir dir;
    ormcache::Database db{ormcache::DatabaseConfig{
        .connection_string = (dir.path() / "bench.db").string(),
        .cache_config =
            ormcache::CacheConfig{
                .backend = "memcached",
                .arguments = {{"url", {server.address()}}},
                .key_prefix = kPrefix,
            },
        .on_query = ormcache_bench::count_statement,
    }};

    Fixture() {
        ormcache_bench::fill_users(db, kCachedRows);
        auto s = db.session();
        Repository<User> users{s};
        ormcache_bench::warm_all(users, kCachedRows);  // fills
    }

    /// The entity key the cache stores user `id` under (layout of detail/cache/cache_core.hpp).
    std::string entity_key(std::int64_t id) const {
        char digest[17];
        std::snprintf(digest, sizeof digest, "%016llx",
                      static_cast<unsigned long long>(ormcache::detail::ModelInfo<User>::digest));
        return kPrefix + db.cache_identity() + ":e:users:" + digest + ":json:i" +
               std::to_string(id);
    }
};

Fixture* g_fixture = nullptr;

constexpr std::int64_t kChangedIds = 100;

/// A second database on the same server, reached through a proxy that counts round trips.
struct CommitFixture {
    ormcache_test::RoundTripProxy proxy;
    TempDir dir;
    ormcache::Database db;

    explicit CommitFixture(int server_port)
        : proxy(server_port),
          db(ormcache::DatabaseConfig{
              .connection_string = (dir.path() / "commit.db").string(),
              .cache_config =
                  ormcache::CacheConfig{
                      .backend = "memcached",
                      .arguments = {{"url", {proxy.address()}}},
                      .key_prefix = "bench-commit:",
                  },
          }) {
        db.create_all<User>();
        auto s = db.session();
        Repository<User> users{s};
        for (std::int64_t id = 1; id <= kChangedIds; ++id)
            users.add({.id = id, .name = "user", .email = "e"});
        s.commit();
    }
};

CommitFixture* g_commit = nullptr;

/// The envelope's payload, decoded: "oc1 <stamp> <check size>\n<check><payload>".
User decode_entry(std::string_view bytes) {
    if (!bytes.starts_with("oc1 "))
        throw std::runtime_error("not an ormcache entry");
    const auto newline = bytes.find('\n');
    const auto space = bytes.find(' ', 4);
    const auto check_size = std::stoull(std::string(bytes.substr(space + 1, newline - space - 1)));
    bytes.remove_prefix(newline + 1 + check_size);
    return ormcache::from_json<User>(nlohmann::json::parse(bytes));
}

void BM_GetHit(benchmark::State& state) {
    auto s = g_fixture->db.session();
    Repository<User> users{s};
    const auto sequence = random_ids(1, kCachedRows);
    const auto statements_before = statements();
    const auto hits_before = g_fixture->db.cache_manager().stats().hits;
    std::size_t i = 0;
    for (auto _ : state) {
        benchmark::DoNotOptimize(users.get(sequence[i++ & kIdMask]));
    }
    const auto n = static_cast<double>(state.iterations());
    state.counters["sql/op"] = static_cast<double>(statements() - statements_before) / n;
    state.counters["hits/op"] =
        static_cast<double>(g_fixture->db.cache_manager().stats().hits - hits_before) / n;
}

void BM_RawGetDecode(benchmark::State& state) {
    memcached_st* m = memcached_create(nullptr);
    memcached_server_add(m, "127.0.0.1", static_cast<in_port_t>(g_fixture->server.port()));
    // The socket settings the backend uses, so that only the work done differs.
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_NO_BLOCK, 1);
    std::vector<std::string> keys;
    for (const auto id : random_ids(1, kCachedRows))
        keys.push_back(g_fixture->entity_key(id));
    std::size_t i = 0;
    for (auto _ : state) {
        const std::string& key = keys[i++ & kIdMask];
        std::size_t length = 0;
        std::uint32_t flags = 0;
        memcached_return_t rc;
        char* value = memcached_get(m, key.data(), key.size(), &length, &flags, &rc);
        if (value == nullptr) {
            state.SkipWithError(("raw get missed " + key).c_str());
            break;
        }
        benchmark::DoNotOptimize(decode_entry(std::string_view(value, length)));
        std::free(value);
    }
    memcached_free(m);
}

void BM_Commit100ChangedIds(benchmark::State& state) {
    auto s = g_commit->db.session();
    Repository<User> users{s};
    std::vector<User> rows;
    for (std::int64_t id = 1; id <= kChangedIds; ++id)
        rows.push_back(users.get(id, {.use_cache = false}));
    std::uint64_t round_trips = 0, sequence = 0;
    for (auto _ : state) {
        ++sequence;
        for (auto& row : rows)
            row.name = "user v" + std::to_string(sequence);
        users.update_many(rows);
        const auto before = g_commit->proxy.round_trips();
        s.commit();
        round_trips += g_commit->proxy.round_trips() - before;
    }
    state.counters["round_trips/commit"] =
        static_cast<double>(round_trips) / static_cast<double>(state.iterations());
}

BENCHMARK(BM_GetHit)
    ->Name("memcached/get_hit")
    ->Repetitions(3)
    ->MinTime(0.5)
    ->ReportAggregatesOnly();
BENCHMARK(BM_RawGetDecode)
    ->Name("memcached/raw_get_decode")
    ->Repetitions(3)
    ->MinTime(0.5)
    ->ReportAggregatesOnly();
BENCHMARK(BM_Commit100ChangedIds)
    ->Name("memcached/commit/100_changed_ids")
    ->Repetitions(3)
    ->MinTime(0.5)
    ->Unit(benchmark::kMicrosecond)
    ->ReportAggregatesOnly();

}  // namespace

int main(int argc, char** argv) {
    return ormcache_bench::bench_main(argc, argv, "ormcache memcached bench", [] {
        Fixture fixture;
        g_fixture = &fixture;
        CommitFixture commit_fixture(fixture.server.port());
        g_commit = &commit_fixture;
        Collector reporter;
        benchmark::RunSpecifiedBenchmarks(&reporter);
        const Result* ours = reporter.find("memcached/get_hit");
        const Result* base = reporter.find("memcached/raw_get_decode");
        std::cout
            << "\nmetric | ormcache ns/op | raw libmemcached + decode ns/op | throughput ratio | "
               "goal | met?\n";
        if (ours != nullptr && base != nullptr) {
            // Throughput is calls per wall-clock second: the ratio of real times. The CPU-time
            // ratio says how much of it is our own work rather than waiting for the server.
            const double real_ratio = base->real_ns_per_op / ours->real_ns_per_op;
            const double cpu_ratio = base->ns_per_op / ours->ns_per_op;
            std::printf("memcached get hit (real time) | %.0f | %.0f | %.2fx | >= 0.90x | %s\n",
                        ours->real_ns_per_op, base->real_ns_per_op, real_ratio,
                        real_ratio >= 0.9 ? "yes" : "NO");
            std::printf(
                "memcached get hit (CPU time) | %.0f | %.0f | %.2fx | (for information) | -\n",
                ours->ns_per_op, base->ns_per_op, cpu_ratio);
        } else {
            std::cout << "memcached get hit | not run\n";
        }
        if (const Result* commit = reporter.find("memcached/commit/100_changed_ids")) {
            std::printf(
                "\nmemcached commit of 100 changed ids | %.0f us/commit | %.2f round trips per "
                "commit to the server\n",
                commit->real_ns_per_op / 1e3, counter(*commit, "round_trips/commit"));
        }
        g_fixture = nullptr;
        g_commit = nullptr;
    });
}
