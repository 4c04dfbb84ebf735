#pragma once
// Tells a new outage from the continuation of one already reported, so that on_error hears of
// a server going down once, not once per call while it stays down (CacheStats::errors still
// counts every failure).

#include <atomic>

#include "../../errors.hpp"

namespace ormcache::detail {

/// The incident state of one server. Thread-safe and lock-free: the hit path only calls
/// succeeded(), which is a relaxed load while nothing is wrong.
class IncidentTracker {
  public:
    /// The server answered: any incident is over, the next failure opens a new one.
    void succeeded() noexcept {
        if (open_.load(std::memory_order_relaxed))
            open_.store(false, std::memory_order_relaxed);
    }

    /// The first failure opens an incident; later ones, until succeeded(), continue it.
    void failed(CacheError& error) noexcept {
        error.set_continues_incident(open_.exchange(true, std::memory_order_relaxed));
    }

    bool open() const noexcept { return open_.load(std::memory_order_relaxed); }

  private:
    std::atomic<bool> open_{false};
};

}  // namespace ormcache::detail
