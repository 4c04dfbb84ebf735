#pragma once

#include <cstdint>

namespace ormcache {

/// Monotonic counters of one CacheManager.
struct CacheStats {
    std::uint64_t hits = 0;                ///< reads answered by the cache
    std::uint64_t misses = 0;              ///< reads that went to the database
    std::uint64_t sets = 0;                ///< entries written (fills that landed, get_or_create)
    std::uint64_t invalidations = 0;       ///< entity entries dropped (by commits or invalidate)
    std::uint64_t version_bumps = 0;       ///< list versions bumped (one per changed model)
    std::uint64_t singleflight_waits = 0;  ///< misses that waited for another thread's load
    /// waits whose result was not known to be fresh for the waiter, which then read again
    std::uint64_t singleflight_rereads = 0;
    std::uint64_t errors = 0;  ///< backend failures and corrupt entries, absorbed
};

}  // namespace ormcache
