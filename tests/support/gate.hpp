#pragma once
// Gate: a one-shot rendezvous that stops a thread inside a cache operation until the test
// releases it. The test learns that the thread has arrived from a condition variable, never
// from a sleep. Used by PausingBackend (pausing_backend.hpp) and by the gated real backends
// (gated_backend.hpp).

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <utility>

namespace ormcache_test {

/// How long a test waits for a thread to reach a gate before it gives up (and fails), and how
/// long a stopped thread waits for its release before it goes on by itself: safety nets that
/// turn a broken test into a failure instead of a hang. Generous, for ThreadSanitizer.
inline constexpr std::chrono::seconds gate_timeout{60};

/// One-shot rendezvous between a stopped thread and the test. Thread-safe.
class GateState {
  public:
    /// The stopped thread's side: announce the arrival, then wait for the release.
    void block() {
        std::unique_lock lock(mutex_);
        arrived_ = true;
        cv_.notify_all();
        if (!cv_.wait_for(lock, gate_timeout, [&] { return released_; }))
            timed_out_ = true;
    }
    /// The test's side: wait until a thread is stopped at the gate.
    bool wait_arrived(std::chrono::milliseconds timeout = gate_timeout) {
        std::unique_lock lock(mutex_);
        return cv_.wait_for(lock, timeout, [&] { return arrived_; });
    }
    bool arrived() const {
        std::lock_guard lock(mutex_);
        return arrived_;
    }
    void release() {
        std::lock_guard lock(mutex_);
        released_ = true;
        cv_.notify_all();
    }
    /// Whether the stopped thread gave up waiting (the test never released it).
    bool timed_out() const {
        std::lock_guard lock(mutex_);
        return timed_out_;
    }

  private:
    mutable std::mutex mutex_;  // guards the flags
    std::condition_variable cv_;
    bool arrived_ = false;
    bool released_ = false;
    bool timed_out_ = false;
};

/// The test's handle on a gate; releases it when destroyed, so that a failing assertion never
/// leaves a thread stopped.
class Gate {
  public:
    Gate() = default;
    explicit Gate(std::shared_ptr<GateState> state) : state_(std::move(state)) {}
    Gate(Gate&&) noexcept = default;
    Gate& operator=(Gate&& other) noexcept {
        if (this != &other) {
            release();
            state_ = std::move(other.state_);
        }
        return *this;
    }
    Gate(const Gate&) = delete;
    Gate& operator=(const Gate&) = delete;
    ~Gate() { release(); }

    bool wait_arrived(std::chrono::milliseconds timeout = gate_timeout) {
        return state_ && state_->wait_arrived(timeout);
    }
    bool arrived() const { return state_ && state_->arrived(); }
    void release() {
        if (state_)
            state_->release();
    }
    bool timed_out() const { return state_ && state_->timed_out(); }
    const std::shared_ptr<GateState>& state() const { return state_; }

  private:
    std::shared_ptr<GateState> state_;
};

}  // namespace ormcache_test
