#pragma once
// What the benchmark executables share: the model and its deterministic rows, reproducible
// random id sequences, SQL statement counting, the raw SQLiteCpp baseline of a get, a scratch
// directory, a console reporter that keeps each result so that main() can print a summary of
// ratios after the Google Benchmark table, and the body of main() itself.

#include <SQLiteCpp/SQLiteCpp.h>
#include <benchmark/benchmark.h>
#include <stdlib.h>  // mkdtemp (POSIX)

#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <filesystem>
#include <iostream>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

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

namespace ormcache_bench {

using app::User;

constexpr std::int64_t kRows = 10000;
constexpr std::size_t kIdMask = 4095;  // random id sequences have kIdMask + 1 entries

// ---- deterministic data ----

inline std::uint64_t splitmix64(std::uint64_t x) {
    x += 0x9e3779b97f4a7c15ULL;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return x ^ (x >> 31);
}

/// Ids in [1, rows], uniformly distributed, reproducible from `seed`.
inline std::vector<std::int64_t> random_ids(std::uint64_t seed, std::int64_t rows = kRows) {
    std::vector<std::int64_t> ids(kIdMask + 1);
    for (std::size_t i = 0; i < ids.size(); ++i) {
        ids[i] = static_cast<std::int64_t>(splitmix64(seed * 1000003 + i) %
                                           static_cast<std::uint64_t>(rows)) +
                 1;
    }
    return ids;
}

inline User make_user(std::int64_t id) {
    const std::uint64_t h = splitmix64(static_cast<std::uint64_t>(id));
    char name[32];
    std::snprintf(name, sizeof name, "user-%08llx", static_cast<unsigned long long>(h >> 32));
    User u;
    u.id = id;
    u.name = name;  // random order with respect to id, so ORDER BY name has to sort
    u.email = "user" + std::to_string(id) + "@example.org";
    if (id % 10 != 0)
        u.age = static_cast<std::int32_t>(18 + h % 63);
    u.created_at = std::chrono::system_clock::time_point{} + std::chrono::hours{473040} +
                   std::chrono::minutes{id};
    return u;
}

/// The users table with the rows of make_user() for ids 1 to `rows`, written in one
/// transaction.
inline void fill_users(ormcache::Database& db, std::int64_t rows = kRows) {
    db.create_all<User>();
    ormcache::Session session = db.session();
    ormcache::Repository<User> users{session};
    std::vector<User> all;
    all.reserve(static_cast<std::size_t>(rows));
    for (std::int64_t id = 1; id <= rows; ++id)
        all.push_back(make_user(id));
    users.add_many(all, {.auto_commit = true});
    if (users.count() != rows)
        throw std::runtime_error("fixture: wrong row count");
}

/// Reads ids 1 to `rows` through `users`: every entity cached (those already cached stay).
inline void warm_all(ormcache::Repository<User>& users, std::int64_t rows = kRows) {
    for (std::int64_t id = 1; id <= rows; ++id)
        benchmark::DoNotOptimize(users.get(id));
}

/// The loop of the multi-thread get-hit benchmarks: random ids (a sequence of their own for
/// each thread) read through `users`, items counted.
inline void get_hits_per_thread(benchmark::State& state, ormcache::Repository<User>& users) {
    const auto ids = random_ids(100 + static_cast<std::uint64_t>(state.thread_index()));
    std::size_t i = 0;
    for (auto _ : state) {
        User u = users.get(ids[i++ & kIdMask]);
        benchmark::DoNotOptimize(u);
    }
    state.SetItemsProcessed(state.iterations());
}

// ---- SQL statement counting (DatabaseConfig::on_query = count_statement): a hit runs none ----

inline std::atomic<std::uint64_t> g_statements{0};

inline void count_statement(std::string_view) {
    g_statements.fetch_add(1, std::memory_order_relaxed);
}

inline std::uint64_t statements() {
    return g_statements.load(std::memory_order_relaxed);
}

// ---- the baseline of a get: plain SQLiteCpp ----

/// The row `stmt` (SELECT id, name, email, age, created_at) stands on, mapped by hand.
inline User read_user(SQLite::Statement& stmt) {
    User u;
    u.id = stmt.getColumn(0).getInt64();
    u.name = stmt.getColumn(1).getString();
    u.email = stmt.getColumn(2).getString();
    const SQLite::Column age = stmt.getColumn(3);
    if (!age.isNull())
        u.age = age.getInt();
    u.created_at = std::chrono::system_clock::time_point{
        std::chrono::microseconds{stmt.getColumn(4).getInt64()}};
    return u;
}

/// The loop of the raw baseline: a prepared primary-key SELECT of random ids on a plain
/// SQLiteCpp connection to the database file `path`, mapped into the struct by hand (the
/// statement is reused).
inline void raw_select_loop(benchmark::State& state, const std::string& path) {
    SQLite::Database raw(path, SQLite::OPEN_READWRITE);
    SQLite::Statement stmt(raw, "SELECT id, name, email, age, created_at FROM users WHERE id = ?");
    const auto ids = random_ids(1);
    std::size_t i = 0;
    for (auto _ : state) {
        stmt.bind(1, ids[i++ & kIdMask]);
        if (!stmt.executeStep()) {
            state.SkipWithError("row not found");
            break;
        }
        User u = read_user(stmt);
        benchmark::DoNotOptimize(u);
        stmt.reset();
    }
}

// ---- a scratch directory ----

class TempDir {
  public:
    TempDir() {
        std::string pattern =
            (std::filesystem::temp_directory_path() / "ormcache-bench-XXXXXX").string();
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

// ---- results, for the summary ----

struct Result {
    double ns_per_op = 0;  // CPU time for single-threaded runs (the median of the repetitions)
    double real_ns_per_op = 0;
    double items_per_second = 0;
    benchmark::UserCounters counters;
};

/// The usual console table, plus every result kept by name ("<name>/<args>/<threads>"): the
/// median when the benchmark has repetitions, else the single run.
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
            std::string name = run.run_name.function_name;
            if (!run.run_name.args.empty())
                name += "/" + run.run_name.args;
            if (!run.run_name.threads.empty())
                name += "/" + run.run_name.threads;
            const double scale = to_ns(run.time_unit);
            Result r;
            r.ns_per_op = run.GetAdjustedCPUTime() * scale;
            r.real_ns_per_op = run.GetAdjustedRealTime() * scale;
            if (auto it = run.counters.find("items_per_second"); it != run.counters.end()) {
                r.items_per_second = it->second.value;
            }
            r.counters = run.counters;
            // A median, once there is one, wins over the single repetitions.
            if (aggregate || !results_.count(name))
                results_[name] = r;
        }
        ConsoleReporter::ReportRuns(runs);
    }

    const Result* find(const std::string& name) const {
        const auto it = results_.find(name);
        return it == results_.end() ? nullptr : &it->second;
    }

  private:
    static double to_ns(benchmark::TimeUnit unit) {
        switch (unit) {
            case benchmark::kNanosecond:
                return 1;
            case benchmark::kMicrosecond:
                return 1e3;
            case benchmark::kMillisecond:
                return 1e6;
            case benchmark::kSecond:
                return 1e9;
        }
        return 1;
    }

    std::map<std::string, Result> results_;
};

inline std::string fixed(double v, int digits) {
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.*f", digits, v);
    return buf;
}

/// The body of a benchmark executable's main(): Google Benchmark's flags, then `run` (build the
/// fixture, register and run the benchmarks through a Collector, print the summary). An
/// exception from `run` is a message naming `program` and exit code 1.
template <class Run>
int bench_main(int argc, char** argv, std::string_view program, Run&& run) {
    benchmark::Initialize(&argc, argv);
    if (benchmark::ReportUnrecognizedArguments(argc, argv))
        return 1;
    try {
        run();
    } catch (const std::exception& e) {
        std::cerr << program << ": " << e.what() << '\n';
        return 1;
    }
    benchmark::Shutdown();
    return 0;
}

/// A user counter of `r`, NaN if the benchmark did not set it.
inline double counter(const Result& r, const char* name) {
    const auto it = r.counters.find(name);
    return it == r.counters.end() ? NAN : it->second.value;
}

}  // namespace ormcache_bench
