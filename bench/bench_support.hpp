#pragma once
// What the benchmark executables share: the model and its deterministic rows, reproducible
// random id sequences, a scratch directory, and a console reporter that keeps each result so
// that main() can print a summary of ratios after the Google Benchmark table.

#include <benchmark/benchmark.h>
#include <stdlib.h>  // mkdtemp (POSIX)

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <map>
#include <optional>
#include <stdexcept>
#include <string>
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

/// Ids in [1, kRows], uniformly distributed, reproducible from `seed`.
inline std::vector<std::int64_t> random_ids(std::uint64_t seed) {
    std::vector<std::int64_t> ids(kIdMask + 1);
    for (std::size_t i = 0; i < ids.size(); ++i) {
        ids[i] = static_cast<std::int64_t>(splitmix64(seed * 1000003 + i) % kRows) + 1;
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

/// The kRows rows of make_user(), written in one transaction.
inline void fill_users(ormcache::Database& db) {
    db.create_all<User>();
    ormcache::Session session = db.session();
    ormcache::Repository<User> users{session};
    std::vector<User> rows;
    rows.reserve(kRows);
    for (std::int64_t id = 1; id <= kRows; ++id)
        rows.push_back(make_user(id));
    users.add_many(rows, {.auto_commit = true});
    if (users.count() != kRows)
        throw std::runtime_error("fixture: wrong row count");
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

/// A user counter of `r`, NaN if the benchmark did not set it.
inline double counter(const Result& r, const char* name) {
    const auto it = r.counters.find(name);
    return it == r.counters.end() ? NAN : it->second.value;
}

}  // namespace ormcache_bench
