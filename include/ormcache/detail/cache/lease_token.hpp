#pragma once
// What every backend's fill leases and counters are made of: lease tokens no other holder
// has, the marker a byte store keeps in a leased key, and the clock value a missing counter is
// re-created from.

#include <unistd.h>  // getpid

#include <atomic>
#include <chrono>
#include <cstdint>
#include <random>
#include <string>
#include <string_view>

#include "../util/linkage.hpp"

namespace ormcache::detail {

/// A fill lease token unique across threads, processes and machines: random bits, the
/// process id (a fork copies the generator's state, so without it a child would draw its
/// parent's next tokens) and a per-process sequence number.
ORMCACHE_INLINE std::string new_lease_token();
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE std::string new_lease_token() {
    thread_local std::mt19937_64 rng{std::random_device{}()};
    static std::atomic<std::uint64_t> sequence{0};
    return std::to_string(::getpid()) + "-" + std::to_string(rng()) + "-" +
           std::to_string(sequence.fetch_add(1, std::memory_order_relaxed));
}
#endif

/// What a byte store holds in a key while a reader's fill lease is on it: the marker, then
/// the token. No envelope starts with a NUL byte, so a lease is never taken for a value.
inline constexpr std::string_view lease_marker{"\0lease:", 7};

/// The value a missing counter (never written, evicted, server restarted) is created with:
/// wall-clock microseconds, so a re-created counter never equals a value some old entry was
/// stored under (counters only grow, by one per commit).
inline std::int64_t counter_start() {
    return std::chrono::duration_cast<std::chrono::microseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

}  // namespace ormcache::detail
