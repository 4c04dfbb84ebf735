#pragma once
// A real backend (Redis, memcached, file) whose fills can be held, for the stale-fill races of
// cache rule 6 (docs/reference.md): the test arms fill_gate() for a key, starts a reader, and once
// the reader's fill has arrived at the gate, commits elsewhere before it lets the fill go on.
//
//   ormcache_test::register_gated_backend<ormcache::RedisBackend,
//                                         ormcache::detail::redis_options>("redis-gated");
//   config.backend = "redis-gated";      // otherwise the arguments of a "redis" config
//   const bool held = ormcache_test::with_fill_held(
//       ormcache_test::fill_gate().arm(prefix + "e:users:"),
//       [&] { ... a read that misses and fills ... },
//       [&] { ... while its fill is held: a commit in another Database ... });
//   REQUIRE(held);
//
// (or, for other interleavings, the Gate that arm() returns: wait_arrived(), release()).

#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <ormcache/ormcache.hpp>

#include "gate.hpp"

namespace ormcache_test {

/// Stops the next fill whose key contains the armed part (one shot). Thread-safe.
class FillGate {
  public:
    /// Arms the gate for the next fill whose key contains `key_part` (replacing an earlier
    /// arm that no fill reached).
    Gate arm(std::string key_part) {
        std::lock_guard lock(mutex_);
        match_ = std::move(key_part);
        state_ = std::make_shared<GateState>();
        return Gate(state_);
    }

    /// The filling thread's side: stops here until the release if the gate is armed for `key`.
    void pass(std::string_view key) {
        std::shared_ptr<GateState> stop;
        {
            std::lock_guard lock(mutex_);
            if (!state_ || key.find(match_) == std::string_view::npos)
                return;
            stop = std::exchange(state_, nullptr);
        }
        stop->block();  // outside the lock: arm() must not wait for the release
    }

  private:
    std::mutex mutex_;  // guards match_ and state_
    std::string match_;
    std::shared_ptr<GateState> state_;
};

/// The gate every GatedBackend of the test binary passes.
inline FillGate& fill_gate() {
    static FillGate gate;
    return gate;
}

/// `Inner`, built as its registered backend is (its options read from CacheConfig::arguments by
/// `read_options`, and the key prefix), with fill() passing fill_gate() first. Everything else
/// goes straight to `Inner`.
template <class Inner, auto read_options>
class GatedBackend {
  public:
    static constexpr bool stores_objects = Inner::stores_objects;

    GatedBackend(std::string name, const ormcache::CacheConfig& c)
        : name_(std::move(name)), inner_(read_options(c.arguments), c.key_prefix) {}

    std::string_view name() const noexcept { return name_; }
    ormcache::ReadResult read(const ormcache::ReadRequest& r) { return inner_.read(r); }
    bool fill(const ormcache::FillRequest& f) {
        fill_gate().pass(f.key);
        return inner_.fill(f);
    }
    void invalidate(const ormcache::InvalidationBatch& b) { inner_.invalidate(b); }
    void clear() { inner_.clear(); }

  private:
    const std::string name_;
    Inner inner_;
};

/// Runs `read` on a thread of its own and, once its fill has arrived at `gate`, `meanwhile`
/// (typically a commit that overtakes the fill); then lets the fill go on and waits for the
/// thread. Returns whether the fill arrived (if not, `meanwhile` did not run).
template <class Read, class Meanwhile>
bool with_fill_held(Gate gate, Read&& read, Meanwhile&& meanwhile) {
    std::thread reader(std::forward<Read>(read));
    bool arrived = false;
    try {
        arrived = gate.wait_arrived();
        if (arrived)
            meanwhile();
    } catch (...) {
        gate.release();  // never leave the reader stopped, nor its thread unjoined
        reader.join();
        throw;
    }
    gate.release();
    reader.join();
    return arrived;
}

/// Registers GatedBackend<Inner, read_options> under `name` (once per binary and Inner).
template <class Inner, auto read_options>
void register_gated_backend(const std::string& name) {
    using Gated = GatedBackend<Inner, read_options>;
    static std::once_flag once;
    std::call_once(once, [&] {
        ormcache::register_backend_type<Gated>(
            name, [name](const ormcache::CacheConfig& c) { return new Gated(name, c); });
    });
}

}  // namespace ormcache_test
