#pragma once
// A cache Backend for race tests: it delegates to one ormcache::MemoryBackend, records every
// operation, counts fills that landed and fills that were refused, and can stop a chosen
// operation on a gate until the test releases it. The test learns that the operation has
// arrived at the gate from a condition variable, never from a sleep.
//
//   auto control = ormcache_test::PausingBackend::install();  // registers a fresh name
//   cache_config.backend = control->name();
//   ormcache_test::Gate gate = control->pause_next(Op::fill, entity_key("users", 1));
//   ... start the thread that will fill ...
//   REQUIRE(gate.wait_arrived());     // the thread is now stopped inside fill()
//   ... do whatever must happen in between ...
//   gate.release();                   // (also done by the Gate's destructor)
//
// A gate (gate.hpp) stops the thread either before the operation reaches the memory backend
// (At::before) or after it returned there, before its result goes back to the cache layer
// (At::after).

#include <algorithm>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <ormcache/ormcache.hpp>

#include "gate.hpp"

namespace ormcache_test {

/// Picks the keys a gate or a count applies to.
using KeyMatch = std::function<bool(std::string_view)>;

inline KeyMatch any_key() {
    return [](std::string_view) { return true; };
}
/// Keys that contain `part`.
inline KeyMatch key_containing(std::string part) {
    return [part = std::move(part)](std::string_view key) {
        return key.find(part) != std::string_view::npos;
    };
}
/// The entity entry of `table` with integer primary key `id` (layout "e:<table>:...:i<id>").
inline KeyMatch entity_key(std::string table, std::int64_t id) {
    return [prefix = "e:" + table + ":", suffix = ":i" + std::to_string(id)](std::string_view key) {
        return key.find(prefix) != std::string_view::npos && key.ends_with(suffix);
    };
}
/// Every entity entry of `table`.
inline KeyMatch entity_keys(std::string table) {
    return key_containing("e:" + table + ":");
}
/// Every list / count / exists entry of `table`.
inline KeyMatch query_keys(std::string table) {
    return key_containing("q:" + table + ":");
}

class PausingBackend;

/// What a PausingBackend (and every backend built from its registered name) shares with the
/// test: the operation log, the fill counts and the armed gates; and with each other: one
/// MemoryBackend, so that two Databases on one database file, each with its own cache
/// manager, share a cache as two processes share a cache server. Thread-safe.
class PauseControl {
  public:
    enum class Op { read, fill, invalidate, clear };
    enum class At { before, after };

    struct Event {
        Op op;
        std::string key;      ///< read/fill: the key; invalidate/clear: empty
        bool landed = false;  ///< fill: whether it was stored
        bool lease = false;   ///< read: whether a lease was asked for
    };

    explicit PauseControl(std::string name) : name_(std::move(name)) {}

    /// The backend name to put in CacheConfig::backend.
    const std::string& name() const noexcept { return name_; }

    /// Stops the next `op` on a key that `match` accepts, at `at`. One shot.
    Gate pause_next(Op op, KeyMatch match, At at = At::before) {
        auto state = std::make_shared<GateState>();
        std::lock_guard lock(mutex_);
        armed_.push_back(Armed{op, std::move(match), at, state});
        return Gate(std::move(state));
    }

    /// Operations of kind `op` on keys that `match` accepts, so far.
    std::size_t count(Op op, const KeyMatch& match = any_key()) const {
        std::lock_guard lock(mutex_);
        return static_cast<std::size_t>(
            std::count_if(events_.begin(), events_.end(),
                          [&](const Event& e) { return e.op == op && match(e.key); }));
    }

    /// Waits until count(op, match) >= n (false on timeout).
    bool wait_count(Op op, const KeyMatch& match, std::size_t n,
                    std::chrono::milliseconds timeout = gate_timeout) {
        std::unique_lock lock(mutex_);
        return cv_.wait_for(lock, timeout, [&] {
            return std::count_if(events_.begin(), events_.end(), [&](const Event& e) {
                       return e.op == op && match(e.key);
                   }) >= static_cast<std::ptrdiff_t>(n);
        });
    }

    std::size_t fills_landed(const KeyMatch& match = any_key()) const { return fills(match, true); }
    std::size_t fills_refused(const KeyMatch& match = any_key()) const {
        return fills(match, false);
    }

    std::vector<Event> events() const {
        std::lock_guard lock(mutex_);
        return events_;
    }

    /// Forgets the log (gates stay armed).
    void reset_log() {
        std::lock_guard lock(mutex_);
        events_.clear();
    }

  private:
    friend class PausingBackend;

    /// The storage of every backend built from this name.
    ormcache::MemoryBackend memory_;

    struct Armed {
        Op op;
        KeyMatch match;
        At at;
        std::shared_ptr<GateState> gate;
    };

    std::size_t fills(const KeyMatch& match, bool landed) const {
        std::lock_guard lock(mutex_);
        return static_cast<std::size_t>(
            std::count_if(events_.begin(), events_.end(), [&](const Event& e) {
                return e.op == Op::fill && e.landed == landed && match(e.key);
            }));
    }

    /// Takes the first armed gate for this operation, if any.
    std::shared_ptr<GateState> take(Op op, std::string_view key, At at) {
        std::lock_guard lock(mutex_);
        for (auto it = armed_.begin(); it != armed_.end(); ++it) {
            if (it->op == op && it->at == at && it->match(key)) {
                auto gate = it->gate;
                armed_.erase(it);
                return gate;
            }
        }
        return nullptr;
    }

    void stop_if_armed(Op op, std::string_view key, At at) {
        if (auto gate = take(op, key, at))
            gate->block();
    }

    void record(Event event) {
        std::lock_guard lock(mutex_);
        events_.push_back(std::move(event));
        cv_.notify_all();
    }

    std::string name_;
    mutable std::mutex mutex_;  // guards armed_ and events_
    std::condition_variable cv_;
    std::vector<Armed> armed_;
    std::vector<Event> events_;
};

/// The Backend itself: the control's MemoryBackend with gates and a log around each operation.
class PausingBackend {
  public:
    using Op = PauseControl::Op;
    using At = PauseControl::At;
    static constexpr bool stores_objects = true;

    explicit PausingBackend(std::shared_ptr<PauseControl> control) : control_(std::move(control)) {}

    /// Registers a fresh backend name whose backends all report to the returned control.
    static std::shared_ptr<PauseControl> install() {
        static std::atomic<int> counter{0};
        auto control = std::make_shared<PauseControl>("pausing-" + std::to_string(++counter));
        ormcache::register_backend_type<PausingBackend>(
            control->name(),
            [control](const ormcache::CacheConfig&) { return new PausingBackend(control); });
        return control;
    }

    std::string_view name() const noexcept { return control_->name(); }

    ormcache::ReadResult read(const ormcache::ReadRequest& request) {
        control_->stop_if_armed(Op::read, request.key, At::before);
        auto result = control_->memory_.read(request);
        control_->record({Op::read, request.key, false, request.lease_ttl.has_value()});
        control_->stop_if_armed(Op::read, request.key, At::after);
        return result;
    }

    bool fill(const ormcache::FillRequest& request) {
        control_->stop_if_armed(Op::fill, request.key, At::before);
        const bool landed = control_->memory_.fill(request);
        control_->record({Op::fill, request.key, landed, false});
        control_->stop_if_armed(Op::fill, request.key, At::after);
        return landed;
    }

    void invalidate(const ormcache::InvalidationBatch& batch) {
        control_->stop_if_armed(Op::invalidate, {}, At::before);
        control_->memory_.invalidate(batch);
        control_->record({Op::invalidate, {}, false, false});
        control_->stop_if_armed(Op::invalidate, {}, At::after);
    }

    void clear() {
        control_->memory_.clear();
        control_->record({Op::clear, {}, false, false});
    }

  private:
    std::shared_ptr<PauseControl> control_;
};

static_assert(ormcache::Backend<PausingBackend>);

}  // namespace ormcache_test
