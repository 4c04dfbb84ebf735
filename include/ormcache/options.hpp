#pragma once

#include <chrono>
#include <optional>

namespace ormcache {

/// Per-call options. An aggregate: add fields at the end only, never reorder
/// (designated initializers depend on the order).
struct Options {
    /// false: neither read nor write the cache for this call.
    bool use_cache = true;
    /// true: commit the session after a successful write (a no-op for reads).
    bool auto_commit = false;
    /// TTL for what this call stores in the cache; unset = CacheConfig::expiration_time.
    std::optional<std::chrono::seconds> expiration_time{};
};

}  // namespace ormcache
