#pragma once
// Fixtures shared by the test binaries: a scratch directory per test, a thread-safe log of the
// SQL the library runs (DatabaseConfig::on_query) and a recorder of commit change sets.

#include <stdlib.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <ormcache/ormcache.hpp>

namespace ormcache_test {

/// A fresh directory under $ORMCACHE_TEST_TMPDIR (or the system temp dir), removed on exit.
class TempDir {
  public:
    TempDir() {
        const char* base = std::getenv("ORMCACHE_TEST_TMPDIR");
        std::filesystem::path root =
            base != nullptr ? base : std::filesystem::temp_directory_path();
        std::filesystem::create_directories(root);
        std::string pattern = (root / "ormcache-XXXXXX").string();
        if (mkdtemp(pattern.data()) == nullptr)
            throw std::runtime_error("mkdtemp failed");
        path_ = pattern;
    }
    TempDir(const TempDir&) = delete;
    TempDir& operator=(const TempDir&) = delete;
    ~TempDir() {
        std::error_code ec;
        std::filesystem::remove_all(path_, ec);
    }
    const std::filesystem::path& path() const { return path_; }
    std::string file(std::string_view name) const { return (path_ / name).string(); }

  private:
    std::filesystem::path path_;
};

/// Collects every statement passed to on_query. Thread-safe.
class SqlLog {
  public:
    std::function<void(std::string_view)> callback() {
        return [this](std::string_view sql) {
            std::lock_guard lock(mutex_);
            statements_.emplace_back(sql);
        };
    }
    std::vector<std::string> statements() const {
        std::lock_guard lock(mutex_);
        return statements_;
    }
    std::size_t size() const {
        std::lock_guard lock(mutex_);
        return statements_.size();
    }
    /// Statements that start with `prefix` (e.g. "SELECT").
    std::size_t count(std::string_view prefix) const {
        std::lock_guard lock(mutex_);
        return static_cast<std::size_t>(
            std::count_if(statements_.begin(), statements_.end(),
                          [&](const std::string& s) { return s.rfind(prefix, 0) == 0; }));
    }
    void clear() {
        std::lock_guard lock(mutex_);
        statements_.clear();
    }

  private:
    mutable std::mutex mutex_;
    std::vector<std::string> statements_;
};

/// Records the change sets delivered to db.on_commit. Thread-safe.
class CommitLog {
  public:
    explicit CommitLog(ormcache::Database& db) {
        db.on_commit([this](const ormcache::ChangeSet& c) {
            std::lock_guard lock(mutex_);
            sets_.push_back(c);
        });
    }
    std::vector<ormcache::ChangeSet> sets() const {
        std::lock_guard lock(mutex_);
        return sets_;
    }
    std::size_t size() const {
        std::lock_guard lock(mutex_);
        return sets_.size();
    }
    /// The only change set delivered so far (fails the test if there is not exactly one).
    ormcache::ChangeSet last() const {
        std::lock_guard lock(mutex_);
        if (sets_.empty())
            throw std::runtime_error("no change set was delivered");
        return sets_.back();
    }
    void clear() {
        std::lock_guard lock(mutex_);
        sets_.clear();
    }

  private:
    mutable std::mutex mutex_;
    std::vector<ormcache::ChangeSet> sets_;
};

}  // namespace ormcache_test
