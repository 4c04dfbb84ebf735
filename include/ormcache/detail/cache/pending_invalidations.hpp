#pragma once
// Invalidations a backend could not deliver (server unreachable), kept and replayed before
// anything else once the server answers again. A server that was only unreachable, not
// restarted, still holds the entries those invalidations were meant to remove: serving them
// would be serving stale data.
//
// Bounded: past max_keys, every waiting batch is folded into one batch of counter bumps
// (bump + fallback_bump), which makes at least the same entries unreachable and stays as
// small as the number of tables.

#include <algorithm>
#include <atomic>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "../../backend.hpp"

namespace ormcache::detail {

/// Thread-safe. No I/O under its lock: replay() delivers with the lock released.
class PendingInvalidations {
  public:
    explicit PendingInvalidations(std::size_t max_keys = 100000) : max_keys_(max_keys) {}

    void push(const InvalidationBatch& batch) {
        if (batch.empty())
            return;
        std::lock_guard lock(mutex_);
        const std::size_t keys = batch.remove.size() + batch.bump.size();
        if (folded_ || keys_ + keys > max_keys_) {
            fold(batch);
        } else {
            batches_.emplace_back(++serial_, std::make_shared<const InvalidationBatch>(batch));
            keys_ += keys;
        }
        waiting_.store(true, std::memory_order_release);
    }

    /// Nothing waiting (lock-free: read on every operation of a backend).
    bool empty() const noexcept { return !waiting_.load(std::memory_order_acquire); }

    /// Batches waiting.
    std::size_t size() const {
        std::lock_guard lock(mutex_);
        return batches_.size();
    }

    /// Delivers the waiting batches, oldest first, through deliver(const InvalidationBatch&).
    /// A throw stops the replay there and keeps that batch and the later ones. Several
    /// threads may replay at once: a batch may then be delivered twice, which only deletes
    /// and bumps again.
    template <class Deliver>
    void replay(Deliver&& deliver) {
        std::unique_lock lock(mutex_);
        while (!batches_.empty()) {
            // Only the batch just delivered may be dropped afterwards: popping whatever is at
            // the front by then could drop one nobody delivered (another thread's replay, or
            // a fold, may have changed the queue while the lock was released).
            // Shared, not copied: a commit's batch may hold any number of keys, and the copy
            // would be made under the lock.
            const auto [serial, batch] = batches_.front();
            lock.unlock();
            deliver(std::as_const(*batch));
            lock.lock();
            if (!batches_.empty() && batches_.front().first == serial) {
                keys_ -= batch->remove.size() + batch->bump.size();
                batches_.pop_front();
                if (batches_.empty())
                    folded_ = false;
            }
        }
        waiting_.store(false, std::memory_order_release);
    }

  private:
    /// Turns everything waiting, plus `batch`, into one batch of distinct counter bumps.
    void fold(const InvalidationBatch& batch) {
        std::vector<std::string> bumps;
        auto add = [&bumps](const std::vector<std::string>& counters) {
            bumps.insert(bumps.end(), counters.begin(), counters.end());
        };
        for (const auto& [serial, waiting] : batches_) {
            add(waiting->bump);
            add(waiting->fallback_bump);
        }
        add(batch.bump);
        add(batch.fallback_bump);
        std::sort(bumps.begin(), bumps.end());
        bumps.erase(std::unique(bumps.begin(), bumps.end()), bumps.end());
        batches_.clear();
        keys_ = bumps.size();
        batches_.emplace_back(++serial_, std::make_shared<const InvalidationBatch>(
                                             InvalidationBatch{{}, std::move(bumps), {}}));
        folded_ = true;
    }

    const std::size_t max_keys_;
    mutable std::mutex mutex_;  // guards batches_, serial_, keys_, folded_
    std::deque<std::pair<std::uint64_t, std::shared_ptr<const InvalidationBatch>>>
        batches_;  // (serial, batch), oldest first
    std::uint64_t serial_ = 0;
    std::size_t keys_ = 0;  // remove + bump keys over batches_
    bool folded_ = false;   // batches_ is one folded batch: later pushes fold into it too
    std::atomic<bool> waiting_{false};
};

}  // namespace ormcache::detail
