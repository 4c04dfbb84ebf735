// ormcache file-backend benchmarks (Google Benchmark). See docs/benchmarks.md, "File backend".
//
// One process, one SQLite file database of 10,000 users and one cache file next to it, in a
// fresh temporary directory. The figure that matters is a ratio of two medians measured in
// this same run: a Repository::get hit served by the file backend against a prepared
// primary-key SELECT on the application table through plain SQLiteCpp, on the same rows.

#include <SQLiteCpp/SQLiteCpp.h>
#include <benchmark/benchmark.h>
#include <stdlib.h>  // mkdtemp (POSIX)

#include <atomic>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <ormcache/backends/file.hpp>
#include <ormcache/ormcache.hpp>

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

constexpr std::int64_t kRows = 10000;
constexpr std::size_t kIdMask = 4095;  // random id sequences have kIdMask + 1 entries

std::atomic<std::uint64_t> g_statements{0};

void count_statement(std::string_view) {
    g_statements.fetch_add(1, std::memory_order_relaxed);
}

std::uint64_t splitmix64(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/// Ids in [1, kRows], uniformly distributed, reproducible from `seed`: both sides of the
/// comparison read the same rows in the same order.
std::vector<std::int64_t> random_ids(std::uint64_t seed) {
    std::vector<std::int64_t> ids(kIdMask + 1);
    for (std::size_t i = 0; i < ids.size(); ++i) {
        ids[i] = static_cast<std::int64_t>(splitmix64(seed * 1000003 + i) % kRows) + 1;
    }
    return ids;
}

User make_user(std::int64_t id) {
    const std::uint64_t h = splitmix64(static_cast<std::uint64_t>(id));
    char name[32];
    std::snprintf(name, sizeof name, "user-%08llx", static_cast<unsigned long long>(h >> 32));
    User u;
    u.id = id;
    u.name = name;
    u.email = "user" + std::to_string(id) + "@example.org";
    if (id % 10 != 0)
        u.age = static_cast<std::int32_t>(18 + h % 63);
    u.created_at = std::chrono::system_clock::time_point{} + std::chrono::hours{473040} +
                   std::chrono::minutes{id};
    return u;
}

class TempDir {
  public:
    TempDir() {
        std::string pattern =
            (std::filesystem::temp_directory_path() / "ormcache-bench-file-XXXXXX").string();
        if (mkdtemp(pattern.data()) == nullptr)
            throw std::runtime_error("mkdtemp failed");
        path_ = pattern;
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() {
        std::error_code ignored;
        std::filesystem::remove_all(path_, ignored);
    }
    const std::filesystem::path& path() const { return path_; }

  private:
    std::filesystem::path path_;
};

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
        db.create_all<User>();
        ormcache::Session session = db.session();
        Repository<User> users{session};
        std::vector<User> rows;
        rows.reserve(kRows);
        for (std::int64_t id = 1; id <= kRows; ++id)
            rows.push_back(make_user(id));
        users.add_many(rows, {.auto_commit = true});
        if (users.count() != kRows)
            throw std::runtime_error("fixture: wrong row count");
        for (std::int64_t id = 1; id <= kRows; ++id)
            benchmark::DoNotOptimize(users.get(id));
    }
};

Fixture* g_fixture = nullptr;
Fixture& fixture() {
    return *g_fixture;
}

/// The baseline: a prepared primary-key SELECT on a plain SQLiteCpp connection to the
/// application database, mapped into the struct by hand (the statement is reused).
void BM_RawSelect(benchmark::State& state) {
    SQLite::Database raw(fixture().app_path, SQLite::OPEN_READWRITE);
    SQLite::Statement stmt(raw, "SELECT id, name, email, age, created_at FROM users WHERE id = ?");
    const auto ids = random_ids(1);
    std::size_t i = 0;
    for (auto _ : state) {
        stmt.bind(1, ids[i++ & kIdMask]);
        if (!stmt.executeStep()) {
            state.SkipWithError("row not found");
            break;
        }
        User u;
        u.id = stmt.getColumn(0).getInt64();
        u.name = stmt.getColumn(1).getString();
        u.email = stmt.getColumn(2).getString();
        if (const SQLite::Column age = stmt.getColumn(3); !age.isNull())
            u.age = age.getInt();
        u.created_at = std::chrono::system_clock::time_point{
            std::chrono::microseconds{stmt.getColumn(4).getInt64()}};
        benchmark::DoNotOptimize(u);
        stmt.reset();
    }
}

/// Repository::get with every row in the cache file: one backend read, no SQL on the
/// application database (sql/op shows it), the JSON payload decoded.
void BM_FileGetHit(benchmark::State& state) {
    ormcache::Session session = fixture().db.session();
    Repository<User> users{session};
    const auto ids = random_ids(1);
    const auto before = fixture().db.cache_manager().stats();
    const auto statements_before = g_statements.load();
    std::size_t i = 0;
    for (auto _ : state) {
        User u = users.get(ids[i++ & kIdMask]);
        benchmark::DoNotOptimize(u);
    }
    const auto after = fixture().db.cache_manager().stats();
    const auto n = static_cast<double>(state.iterations());
    state.counters["sql/op"] = static_cast<double>(g_statements.load() - statements_before) / n;
    state.counters["hits/op"] = static_cast<double>(after.hits - before.hits) / n;
    state.counters["errors"] = static_cast<double>(after.errors - before.errors);
}

/// The part of a hit spent in the backend: FileBackend::read of an entry and its counter.
void BM_FileBackendRead(benchmark::State& state) {
    ormcache::FileBackend backend(ormcache::FileOptions{.filename = fixture().cache_path}, "aa:");
    backend.set("aa:bench:key", ormcache::CacheValue{std::string(120, 'x'), nullptr},
                ormcache::Ttl{60000});
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

/// Median CPU time per call of each benchmark, for the summary.
class Collector : public benchmark::ConsoleReporter {
  public:
    Collector() : ConsoleReporter(OO_Tabular) {}

    void ReportRuns(const std::vector<Run>& runs) override {
        for (const auto& run : runs) {
            if (run.error_occurred)
                continue;
            const bool aggregate = run.run_type == Run::RT_Aggregate;
            if (aggregate && run.aggregate_name != "median")
                continue;
            double scale = 1;
            if (run.time_unit == benchmark::kMicrosecond)
                scale = 1e3;
            if (run.time_unit == benchmark::kMillisecond)
                scale = 1e6;
            if (run.time_unit == benchmark::kSecond)
                scale = 1e9;
            const std::string name = run.run_name.function_name;
            if (aggregate || !ns_.count(name))
                ns_[name] = run.GetAdjustedCPUTime() * scale;
        }
        ConsoleReporter::ReportRuns(runs);
    }

    std::optional<double> ns(const std::string& name) const {
        const auto it = ns_.find(name);
        if (it == ns_.end())
            return std::nullopt;
        return it->second;
    }

  private:
    std::map<std::string, double> ns_;
};

void print_summary(const Collector& c) {
    std::cout << "\nSummary (one run, same process; ns/op = median CPU time of 3 repetitions)\n";
    const auto hit = c.ns("file/get_hit");
    const auto raw = c.ns("file/raw_sqlitecpp");
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
    if (const auto read = c.ns("file/backend_read")) {
        std::snprintf(line, sizeof line, "of which FileBackend::read %.0f ns (%.0f%%)\n", *read,
                      100.0 * *read / *hit);
        std::cout << line;
    }
    if (const auto uncached = c.ns("file/get_use_cache_false")) {
        std::snprintf(line, sizeof line, "get use_cache=false %.0f ns (%.2fx the raw select)\n",
                      *uncached, *uncached / *raw);
        std::cout << line;
    }
}

}  // namespace

int main(int argc, char** argv) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
        return 1;
    try {
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
    } catch (const std::exception& e) {
        std::cerr << "ormcache file bench: " << e.what() << '\n';
        return 1;
    }
    benchmark::Shutdown();
    return 0;
}
