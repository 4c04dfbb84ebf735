#pragma once
// distributed_lock (docs/reference.md, cache rule 9): while another process holds the fill
// lock (lease) of a key, wait for the value it is filling, or for its lock to go away and then
// take it, but never longer than the lock timeout in total. Shared by the backends that offer
// the lock.

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <random>
#include <thread>
#include <utility>

#include "../../backend.hpp"

namespace ormcache::detail {

/// Calls attempt() (one read: entry, counters and lease, returning ReadResult) until the key
/// is no longer locked elsewhere. Between tries it sleeps with jittered exponential backoff
/// (1 ms doubling up to 50 ms), so N waiters do not poll in lockstep. On timeout it returns
/// the last result without value or lease: the caller reads the database and does not fill,
/// and a dead holder's lock expires on its own (its TTL is the lock timeout).
template <class Attempt>
ReadResult wait_for_lock(std::chrono::milliseconds timeout, Attempt&& attempt) {
    using Clock = std::chrono::steady_clock;
    const auto deadline = Clock::now() + timeout;
    thread_local std::minstd_rand jitter{std::random_device{}()};
    std::chrono::microseconds backoff{1000};
    constexpr std::chrono::microseconds max_backoff{50000};
    ReadResult result = attempt();
    while (result.locked_elsewhere) {
        const auto left =
            std::chrono::duration_cast<std::chrono::microseconds>(deadline - Clock::now());
        if (left.count() <= 0) {
            result.value.reset();
            result.lease.clear();
            return result;
        }
        // Sleep between half and all of the backoff, never past the deadline.
        const auto half = static_cast<std::uint64_t>(backoff.count() / 2);
        const std::chrono::microseconds pause{
            static_cast<std::int64_t>(half + jitter() % (half + 1))};
        std::this_thread::sleep_for(std::min(pause, left));
        backoff = std::min(backoff * 2, max_backoff);
        result = attempt();
    }
    return result;
}

/// A backend's read(request): read_once(std::optional<Ttl> lease_ttl) is one try. Without
/// distributed_lock, or when no lease is asked for, one try with the lease asked for. With
/// it, the fill lease is the lock: it lives lock_timeout, so a dead holder's lock expires
/// then, and nobody waits for it longer than that.
template <class ReadOnce>
ReadResult read_with_lock(const ReadRequest& request, bool distributed_lock,
                          std::chrono::milliseconds lock_timeout, ReadOnce&& read_once) {
    if (!request.lease_ttl || !distributed_lock)
        return read_once(request.lease_ttl);
    const std::optional<Ttl> lock_ttl = lock_timeout;
    return wait_for_lock(lock_timeout, [&] { return read_once(lock_ttl); });
}

}  // namespace ormcache::detail
