// ormcache file-backend benchmarks (Google Benchmark). See docs/benchmarks.md, "File backend".
//
// One process, one SQLite file database of 10,000 users and one cache file next to it, in a
// fresh temporary directory. The figure that matters is a ratio of two medians measured in
// this same run: a Repository::get hit served by the file backend against a prepared
// primary-key SELECT on the application table through plain SQLiteCpp, on the same rows.

#include <benchmark/benchmark.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <iostream>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <ormcache/backends/file.hpp>
#include <ormcache/ormcache.hpp>

#include "bench_support.hpp"

namespace {

using namespace ormcache_bench;
using ormcache::Repository;

struct Fixture {
    TempDir dir;
    std::string app_path = (dir.path() / "bench.db").string();
    std::string cache_path = (dir.path() / "cache.db").string();
    ormcache::Database db{ormcache::DatabaseConfig{
        .connection_string = app_path,
        .cache_config =
            ormcache::CacheConfig{
                .backend = "file",
                .arguments = {{"filename", cache_path}},
            },
        .on_query = count_statement,
    }};

    Fixture() {
        fill_users(db);
        ormcache::Session session = db.session();
        Repository<User> users{session};
        warm_all(users);
    }
};

Fixture* g_fixture = nullptr;
Fixture& fixture() {
    return *g_fixture;
}

/// The baseline: a prepared primary-key SELECT on a plain SQLiteCpp connection to the
/// application database, mapped into the struct by hand (the statement is reused).
void BM_RawSelect(benchmark::State& state) {
    raw_select_loop(state, fixture().app_path);
}

/// Repository::get with every row in the cache file: one backend read, no SQL on the
/// application database (sql/op shows it), the JSON payload decoded.
void BM_FileGetHit(benchmark::State& state) {
    ormcache::Session session = fixture().db.session();
    Repository<User> users{session};
    const auto ids = random_ids(1);
    const auto before = fixture().db.cache_manager().stats();
    const auto statements_before = statements();
    std::size_t i = 0;
    for (auto _ : state) {
        User u = users.get(ids[i++ & kIdMask]);
        benchmark::DoNotOptimize(u);
    }
    const auto after = fixture().db.cache_manager().stats();
    const auto n = static_cast<double>(state.iterations());
    state.counters["sql/op"] = static_cast<double>(statements() - statements_before) / n;
    state.counters["hits/op"] = static_cast<double>(after.hits - before.hits) / n;
    state.counters["errors"] = static_cast<double>(after.errors - before.errors);
}

/// The part of a hit spent in the backend: FileBackend::read of an entry and its counter.
void BM_FileBackendRead(benchmark::State& state) {
    ormcache::FileBackend backend(ormcache::FileOptions{.filename = fixture().cache_path}, "aa:");
    backend.fill(ormcache::FillRequest{"aa:bench:key",
                                       ormcache::CacheValue{std::string(120, 'x'), nullptr},
                                       ormcache::Ttl{60000},
                                       {},
                                       {}});
    const ormcache::ReadRequest request{"aa:bench:key", {"aa:g:users"}, std::nullopt, {}};
    for (auto _ : state) {
        auto result = backend.read(request);
        if (!result.value) {
            state.SkipWithError("miss");
            break;
        }
        benchmark::DoNotOptimize(result);
    }
}

/// Repository::get with use_cache = false: the same rows through the ORM without the cache.
void BM_GetNoCache(benchmark::State& state) {
    ormcache::Session session = fixture().db.session();
    Repository<User> users{session};
    const auto ids = random_ids(1);
    std::size_t i = 0;
    for (auto _ : state) {
        User u = users.get(ids[i++ & kIdMask], {.use_cache = false});
        benchmark::DoNotOptimize(u);
    }
}

/// Median CPU time per call of `name`, if it ran.
std::optional<double> cpu_ns(const Collector& c, const std::string& name) {
    if (const Result* r = c.find(name))
        return r->ns_per_op;
    return std::nullopt;
}

void print_summary(const Collector& c) {
    std::cout << "\nSummary (one run, same process; ns/op = median CPU time of 3 repetitions)\n";
    const auto hit = cpu_ns(c, "file/get_hit");
    const auto raw = cpu_ns(c, "file/raw_sqlitecpp");
    if (!hit || !raw) {
        std::cout << "file hit vs raw select | not run (filtered out)\n";
        return;
    }
    char line[256];
    std::snprintf(line, sizeof line,
                  "file-backend get hit %.0f ns | raw SQLiteCpp PK select %.0f ns | ratio "
                  "hit/raw = %.2f (%s)\n",
                  *hit, *raw, *hit / *raw, *hit < *raw ? "the hit is faster" : "the hit is slower");
    std::cout << line;
    if (const auto read = cpu_ns(c, "file/backend_read")) {
        std::snprintf(line, sizeof line, "of which FileBackend::read %.0f ns (%.0f%%)\n", *read,
                      100.0 * *read / *hit);
        std::cout << line;
    }
    if (const auto uncached = cpu_ns(c, "file/get_use_cache_false")) {
        std::snprintf(line, sizeof line, "get use_cache=false %.0f ns (%.2fx the raw select)\n",
                      *uncached, *uncached / *raw);
        std::cout << line;
    }
}

}  // namespace

int main(int argc, char** argv) {
    return bench_main(argc, argv, "ormcache file bench", [] {
        Fixture f;
        g_fixture = &f;
        std::cout << "ormcache file bench: " << kRows << " rows in " << f.app_path
                  << ", cache file " << f.cache_path << '\n';
        for (const auto& [name, fn] :
             std::vector<std::pair<const char*, void (*)(benchmark::State&)>>{
                 {"file/raw_sqlitecpp", BM_RawSelect},
                 {"file/get_hit", BM_FileGetHit},
                 {"file/backend_read", BM_FileBackendRead},
                 {"file/get_use_cache_false", BM_GetNoCache}}) {
            benchmark::RegisterBenchmark(name, fn)
                ->MinTime(0.3)
                ->Repetitions(3)
                ->ReportAggregatesOnly(true);
        }
        Collector reporter;
        benchmark::RunSpecifiedBenchmarks(&reporter);
        print_summary(reporter);
        g_fixture = nullptr;
    });
}
