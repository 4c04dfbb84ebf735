#pragma once
// ErrorLog: what CacheConfig::on_error receives, for assertions on how often a failure was
// reported and what it named.

#include <atomic>
#include <cstddef>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include <ormcache/ormcache.hpp>

namespace ormcache_test {

/// Counts every error handed to on_error and keeps the first kKept of them (a fault run under
/// load reports thousands). Thread-safe: on_error runs on any thread.
class ErrorLog {
  public:
    struct Entry {
        std::string backend, operation, what;
    };

    static constexpr std::size_t kKept = 1000;

    std::function<void(const ormcache::CacheError&)> callback() {
        return [this](const ormcache::CacheError& e) {
            ++count_;
            std::lock_guard lock(mutex_);
            if (entries_.size() < kKept)
                entries_.push_back({e.backend(), e.operation(), e.what()});
        };
    }

    /// Points `config.on_error` at this log.
    void attach(ormcache::CacheConfig& config) { config.on_error = callback(); }

    /// Errors reported so far (kept or not).
    int count() const { return count_.load(); }

    std::vector<Entry> entries() const {
        std::lock_guard lock(mutex_);
        return entries_;
    }

    /// The operation of each kept entry, in order.
    std::vector<std::string> operations() const {
        std::vector<std::string> out;
        for (const auto& e : entries())
            out.push_back(e.operation);
        return out;
    }

    void clear() {
        std::lock_guard lock(mutex_);
        entries_.clear();
        count_ = 0;
    }

  private:
    std::atomic<int> count_{0};
    mutable std::mutex mutex_;  // guards entries_
    std::vector<Entry> entries_;
};

}  // namespace ormcache_test
