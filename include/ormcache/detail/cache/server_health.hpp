#pragma once
// Failing open (docs/reference.md, cache rule 7), the same way for every backend that talks to
// a server or a file: a circuit breaker that stops paying a timeout on every call while the
// server stays down, on_error told of an outage once (IncidentTracker), and the invalidations
// it missed kept and delivered before anything else once it answers (PendingInvalidations).

#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <type_traits>
#include <utility>

#include "../../backend.hpp"
#include "../../errors.hpp"
#include "incident.hpp"
#include "pending_invalidations.hpp"

namespace ormcache::detail {

/// What a backend knows of one server (or file). Thread-safe; the hit path only reads atomics.
class ServerHealth {
  public:
    /// retry_interval: how long trip() keeps the circuit open; 0 = it never opens.
    explicit ServerHealth(std::chrono::milliseconds retry_interval = {})
        : retry_interval_(retry_interval) {}

    // ---- circuit breaker ----

    /// The server failed to answer: no I/O to it for retry_interval.
    void trip() noexcept {
        const auto until = Clock::now() + retry_interval_;
        retry_at_.store(until.time_since_epoch().count(), std::memory_order_relaxed);
    }

    /// Calls fail at once (tripped less than retry_interval ago).
    bool circuit_open() const noexcept {
        return Clock::now().time_since_epoch().count() < retry_at_.load(std::memory_order_relaxed);
    }

    /// The breaker spares reads a timeout per call; it must not hold back invalidations, which
    /// other processes that reach the server wait for. So while the circuit is open, one
    /// invalidation at a time may still try the server: true when the caller may (then it
    /// must call end_probe()), false while another probe is under way.
    bool begin_probe() noexcept { return !probing_.exchange(true, std::memory_order_acquire); }

    /// The probe is over; `answered`: the server answered it, so every call may go to it again.
    void end_probe(bool answered) noexcept {
        if (answered)
            retry_at_.store(0, std::memory_order_relaxed);
        probing_.store(false, std::memory_order_release);
    }

    // ---- incidents ----

    /// The server answered: any incident is over.
    void succeeded() noexcept { incident_.succeeded(); }
    /// Marks `error` as opening an incident or continuing one.
    void failed(CacheError& error) noexcept { incident_.failed(error); }

    /// Runs one operation on the server: its success ends the incident, its CacheError opens
    /// or continues one. Anything else it throws is turned into a CacheError by
    /// wrap(const std::exception&) when given (and passed on as it is otherwise).
    template <class Op, class Wrap = std::nullptr_t>
    auto track(Op&& op, Wrap wrap = nullptr) -> decltype(op()) {
        try {
            auto result = op();
            succeeded();
            return result;
        } catch (CacheError& e) {
            failed(e);
            throw;
        } catch (const std::exception& e) {
            if constexpr (std::is_same_v<Wrap, std::nullptr_t>) {
                throw;
            } else {
                CacheError error = wrap(e);
                failed(error);
                throw error;
            }
        }
    }

    // ---- undelivered invalidations ----

    /// Keeps `batch` until it is delivered (push it before trying: a failure leaves it here).
    void keep(const InvalidationBatch& batch) { pending_.push(batch); }

    /// Before any other I/O to the server: delivers what it missed, oldest first, through
    /// deliver(const InvalidationBatch&). A throw stops there and keeps the rest.
    template <class Deliver>
    void catch_up(Deliver&& deliver) {
        if (!pending_.empty())
            pending_.replay(std::forward<Deliver>(deliver));
    }

    /// Undelivered batches waiting (for tests and monitoring).
    std::size_t pending() const { return pending_.size(); }

  private:
    using Clock = std::chrono::steady_clock;

    const std::chrono::milliseconds retry_interval_;
    std::atomic<std::int64_t> retry_at_{0};  // steady clock ticks: no I/O before then
    std::atomic<bool> probing_{false};       // an invalidation is trying the open circuit
    IncidentTracker incident_;
    PendingInvalidations pending_;
};

}  // namespace ormcache::detail
