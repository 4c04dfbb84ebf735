// The memcached backend's hit path against raw libmemcached (Google Benchmark); see
// docs/benchmarks.md. It starts its own memcached on a free 127.0.0.1 port
// (tests/support/memcached_server.hpp), fills the cache with 1,000 users, then measures in the
// same run:
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

#include <atomic>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <iostream>
#include <map>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <ormcache/backends/memcached.hpp>
#include <ormcache/ormcache.hpp>

#include "memcached_server.hpp"
#include "round_trip_proxy.hpp"

namespace app {

struct User {
    std::int64_t id = 0;
    std::string name;
    std::string email;
    std::optional<std::int32_t> age{};
    std::chrono::system_clock::time_point created_at{};
};
ORMCACHE_MODEL(User, "users", id, name, email, age, created_at)

}  // namespace app

namespace {

using app::User;
using ormcache::Repository;

constexpr std::int64_t kRows = 1000;
const std::string kPrefix = "bench:";

std::atomic<std::uint64_t> g_selects{0};

struct Fixture {
    ormcache_test::MemcachedServer server;
    ormcache_test::TempDir dir;
    ormcache::Database db{ormcache::DatabaseConfig{
        .connection_string = dir.file("bench.db"),
        .cache_config =
            ormcache::CacheConfig{
                .backend = "memcached",
                .arguments = {{"url", {server.address()}}},
                .key_prefix = kPrefix,
            },
        .on_query =
            [](std::string_view sql) {
                if (sql.starts_with("SELECT"))
                    g_selects.fetch_add(1, std::memory_order_relaxed);
            },
    }};

    Fixture() {
        db.create_all<User>();
        auto s = db.session();
        Repository<User> users{s};
        std::vector<User> rows;
        for (std::int64_t id = 1; id <= kRows; ++id) {
            rows.push_back(User{.id = id,
                                .name = "user-" + std::to_string(id * 7919 % 10007),
                                .email = "user" + std::to_string(id) + "@example.org",
                                .age = static_cast<std::int32_t>(18 + id % 60),
                                .created_at = std::chrono::system_clock::time_point{
                                    std::chrono::seconds{1700000000 + id}}});
        }
        users.add_many(rows, {.auto_commit = true});
        for (std::int64_t id = 1; id <= kRows; ++id)
            users.get(id);  // fills
    }

    /// The entity key the cache stores user `id` under (layout of detail/cache_core.hpp).
    static std::string entity_key(std::int64_t id) {
        char digest[17];
        std::snprintf(digest, sizeof digest, "%016llx",
                      static_cast<unsigned long long>(ormcache::detail::ModelInfo<User>::digest));
        return kPrefix + "e:users:" + digest + ":json:i" + std::to_string(id);
    }
};

Fixture* g_fixture = nullptr;

constexpr std::int64_t kChangedIds = 100;

/// A second database on the same server, reached through a proxy that counts round trips.
struct CommitFixture {
    ormcache_test::RoundTripProxy proxy;
    ormcache_test::TempDir dir;
    ormcache::Database db;

    explicit CommitFixture(int server_port)
        : proxy(server_port),
          db(ormcache::DatabaseConfig{
              .connection_string = dir.file("commit.db"),
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

std::vector<std::int64_t> ids() {
    std::vector<std::int64_t> out;
    std::uint64_t x = 88172645463325252ULL;
    for (int i = 0; i < 4096; ++i) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push_back(static_cast<std::int64_t>(x % kRows) + 1);
    }
    return out;
}

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
    const auto sequence = ids();
    const auto selects_before = g_selects.load();
    const auto hits_before = g_fixture->db.cache_manager().stats().hits;
    std::size_t i = 0;
    for (auto _ : state) {
        benchmark::DoNotOptimize(users.get(sequence[i++ & 4095]));
    }
    const auto n = static_cast<double>(state.iterations());
    state.counters["sql/op"] = static_cast<double>(g_selects.load() - selects_before) / n;
    state.counters["hits/op"] =
        static_cast<double>(g_fixture->db.cache_manager().stats().hits - hits_before) / n;
}

void BM_RawGetDecode(benchmark::State& state) {
    memcached_st* m = memcached_create(nullptr);
    memcached_server_add(m, "127.0.0.1", static_cast<in_port_t>(g_fixture->server.port()));
    // The socket settings the backend uses, so that only the work done differs.
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_TCP_NODELAY, 1);
    memcached_behavior_set(m, MEMCACHED_BEHAVIOR_NO_BLOCK, 1);
    const auto sequence = ids();
    std::vector<std::string> keys;
    for (const auto id : sequence)
        keys.push_back(Fixture::entity_key(id));
    std::size_t i = 0;
    for (auto _ : state) {
        const std::string& key = keys[i++ & 4095];
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

/// Keeps the medians of the two benchmarks for the summary.
class Collector : public benchmark::ConsoleReporter {
  public:
    void ReportRuns(const std::vector<Run>& runs) override {
        for (const auto& run : runs) {
            if (run.aggregate_name == "median") {
                // In the run's time unit (ns, or µs for the commit).
                medians_[run.run_name.function_name] = {run.GetAdjustedRealTime(),
                                                        run.GetAdjustedCPUTime()};
                for (const auto& [name, counter] : run.counters)
                    counters_[run.run_name.function_name + " " + name] = counter.value;
            }
        }
        ConsoleReporter::ReportRuns(runs);
    }
    /// (real, CPU) ns per call.
    std::optional<std::pair<double, double>> median(const std::string& name) const {
        const auto it = medians_.find(name);
        if (it == medians_.end())
            return std::nullopt;
        return it->second;
    }

    std::optional<double> counter(const std::string& benchmark, const std::string& name) const {
        const auto it = counters_.find(benchmark + " " + name);
        if (it == counters_.end())
            return std::nullopt;
        return it->second;
    }

  private:
    std::map<std::string, std::pair<double, double>> medians_;
    std::map<std::string, double> counters_;
};

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
        return 1;
    Fixture fixture;
    g_fixture = &fixture;
    CommitFixture commit_fixture(fixture.server.port());
    g_commit = &commit_fixture;
    Collector reporter;
    benchmark::RunSpecifiedBenchmarks(&reporter);
    const auto ours = reporter.median("memcached/get_hit");
    const auto base = reporter.median("memcached/raw_get_decode");
    std::cout << "\nmetric | ormcache ns/op | raw libmemcached + decode ns/op | throughput ratio | "
                 "goal | met?\n";
    if (ours && base) {
        // Throughput is calls per wall-clock second: the ratio of real times. The CPU-time
        // ratio says how much of it is our own work rather than waiting for the server.
        const double real_ratio = base->first / ours->first;
        const double cpu_ratio = base->second / ours->second;
        std::printf("memcached get hit (real time) | %.0f | %.0f | %.2fx | >= 0.90x | %s\n",
                    ours->first, base->first, real_ratio, real_ratio >= 0.9 ? "yes" : "NO");
        std::printf("memcached get hit (CPU time) | %.0f | %.0f | %.2fx | (for information) | -\n",
                    ours->second, base->second, cpu_ratio);
    } else {
        std::cout << "memcached get hit | not run\n";
    }
    const auto commit = reporter.median("memcached/commit/100_changed_ids");
    const auto trips = reporter.counter("memcached/commit/100_changed_ids", "round_trips/commit");
    if (commit && trips) {
        std::printf(
            "\nmemcached commit of 100 changed ids | %.0f us/commit | %.2f round trips per "
            "commit to the server\n",
            commit->first, *trips);
    }
    benchmark::Shutdown();
    g_fixture = nullptr;
    g_commit = nullptr;
    return 0;
}
