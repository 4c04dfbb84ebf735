#pragma once
// Singleflight: concurrent misses on one key run one load; the others wait on a
// std::shared_future and get the same result or the same exception. Keyed by cache key and a
// tag (the counter the key was read under), with striped locks. An invalidation ends every
// flight of the key, whatever its tag, so that a flight that started before it is never joined
// after it. No I/O happens under a lock.
//
// That covers the commits of this process only. A commit in another process reaches this one
// through the shared backend, never through forget(), so a waiter also checks that the result
// it is handed is fresh enough for it: each result carries a tick of the cache's FlightClock
// before which every finished commit is known to be in it (Outcome::fresh_as_of), and a read
// that started at or after that tick reads again instead of taking it (docs/caching.md,
// "Stampede protection").

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../util/linkage.hpp"
#include "../util/string_hash.hpp"

namespace ormcache::detail {

/// A non-owning reference to a callable returning R (the referenced callable must outlive it).
/// The read path takes its loads through it, so that its code is compiled once per result type
/// rather than once per call site's lambda.
template <class R>
class LoadRef {
  public:
    template <class F>
    requires(!std::is_same_v<std::remove_cv_t<F>, LoadRef>) explicit LoadRef(F& f) noexcept
        : object_(const_cast<void*>(static_cast<const void*>(std::addressof(f)))),
          call_([](void* object) -> R { return (*static_cast<F*>(object))(); }) {}

    R operator()() const { return call_(object_); }

  private:
    void* object_;
    R (*call_)(void*);
};

/// The clock the flights' freshness is told by: a process-wide order of read starts, load
/// starts and fills that agrees with real time. One per cache, shared by its flights.
class FlightClock {
  public:
    using Tick = std::uint64_t;

    /// The clock now, without advancing it: when a read starts (cheap: one load of a shared
    /// word, done on every cached read).
    Tick now() const noexcept { return value_.load(); }

    /// A new tick, later than every now() and tick() already returned: taken right before a
    /// load reads the database, and right before a fill that may prove its value current.
    Tick tick() noexcept { return value_.fetch_add(1) + 1; }

  private:
    /// Sequentially consistent (the default): a tick must not be seen to come before the I/O
    /// that follows it in the code. Read on every cached read and written on every load, so
    /// it has a cache line of its own (the class is aligned for that).
    alignas(64) std::atomic<Tick> value_{0};
};

class Singleflight {
  public:
    using Result = std::shared_ptr<const void>;
    using Tick = FlightClock::Tick;

    /// A result that needs no tick: its tag proves it fresh (see Outcome).
    static constexpr Tick always_fresh = UINT64_MAX;

    /// What a load hands its waiters: the result, and a FlightClock tick such that every
    /// commit that had finished, in any process, before that tick was taken is reflected in
    /// it. A waiter whose read started before that tick takes the result; a later one reads
    /// again.
    struct Outcome {
        Result value;
        Tick fresh_as_of = 0;
    };

    /// Runs `load` unless a flight for `key` and `tag` is under way, in which case waits for
    /// it, and takes its result if that is fresh for a read that started at FlightClock tick
    /// `started` (otherwise runs or joins a later flight). `waited` tells whether the call waited
    /// on another's load. Exceptions of the load reach every waiter.
    template <class Load>
    Result run(const std::string& key, std::int64_t tag, Tick started, Load&& load, bool& waited) {
        return run_ref(key, tag, started, LoadRef<Outcome>(load), waited);
    }

    /// run() for a type-erased load: compiled once, whatever the caller's lambda.
    Result run_ref(const std::string& key, std::int64_t tag, Tick started, LoadRef<Outcome> load,
                   bool& waited);

    /// Ends every flight of `key` for newcomers (the loads in progress still answer their
    /// waiters).
    void forget(const std::string& key);

    /// Waits whose result was too old for the waiter, which then read again.
    std::uint64_t rereads() const noexcept { return rereads_.load(std::memory_order_relaxed); }

  private:
    struct Flight {
        std::int64_t tag;
        std::uint64_t id;  // tells this flight from a later one with the same key and tag
        std::shared_ptr<std::promise<Outcome>> promise;  // set by the reader that leads it
        std::shared_future<Outcome> future;
        /// Whether a reader runs its load: a successor (see land()) is taken up by the first
        /// of the readers it was made for.
        bool led = false;
        std::vector<Tick> waiter_starts;  // the `started` of each of its waiters
        /// A successor: how many readers of the flight before it found that flight's result
        /// too old (they will come back for this one), and how many have come back so far.
        std::size_t awaited = 0;
        std::size_t returned = 0;
    };

    struct Stripe {
        std::mutex mutex;  // guards flights and last_id
        std::unordered_map<std::string, std::vector<Flight>, StringHash, std::equal_to<>> flights;
        std::uint64_t last_id = 0;
        /// Signalled when a reader comes back for a successor, or forget() ends flights.
        std::condition_variable returned;
    };

    static Flight new_flight(std::int64_t tag, std::uint64_t id);

    /// Flight `id` of `key`, or nullptr once it landed or forget() ended it. Under the lock.
    static Flight* find(Stripe& stripe, const std::string& key, std::uint64_t id);

    /// Ends flight `id` only (after forget(), a newer flight of the key may be under way). If
    /// `outcome` is too old for some of its waiters, the flight is replaced by a successor
    /// under the same tag that those waiters, which read again, share.
    static void land(Stripe& stripe, const std::string& key, std::uint64_t id,
                     const Outcome* outcome);

    /// How long the reader that takes up a successor waits for the others it was made for
    /// before its load starts anyway. They were woken together, with no I/O before they come
    /// back, so this is only reached when a thread is not scheduled for that long.
    static constexpr std::chrono::milliseconds successor_wait{100};

    Stripe& stripe_for(std::string_view key) {
        return stripes_[std::hash<std::string_view>{}(key) % stripes_.size()];
    }

    std::array<Stripe, 16> stripes_;
    std::atomic<std::uint64_t> rereads_{0};
};

#if ORMCACHE_DEFINITIONS

ORMCACHE_INLINE Singleflight::Result Singleflight::run_ref(const std::string& key, std::int64_t tag,
                                                           Tick started, LoadRef<Outcome> load,
                                                           bool& waited) {
    Stripe& stripe = stripe_for(key);
    waited = false;
    // Each round either leads a load (and returns its result) or waits on a flight whose load
    // was under way when it looked. A reader that finds the result too old meets the other
    // such readers in the successor its flight left behind, whose load starts after all of
    // them: the second round ends it, unless forget() came in between.
    bool retrying = false;
    for (;;) {
        std::shared_ptr<std::promise<Outcome>> lead;
        std::shared_future<Outcome> wait;
        std::uint64_t id = 0;
        bool came_back = false;
        bool successor = false;
        {
            std::lock_guard lock(stripe.mutex);
            auto& flights = stripe.flights[key];
            Flight* flight = nullptr;
            for (auto& f : flights) {
                if (f.tag == tag)
                    flight = &f;
            }
            if (flight == nullptr)
                flight = &flights.emplace_back(new_flight(tag, ++stripe.last_id));
            if (retrying && flight->returned < flight->awaited) {
                ++flight->returned;
                came_back = true;
            }
            if (!flight->led) {
                flight->led = true;
                lead = flight->promise;
                id = flight->id;
                successor = flight->awaited > 0;
            } else {
                flight->waiter_starts.push_back(started);
                wait = flight->future;
            }
        }
        if (came_back)
            stripe.returned.notify_all();
        if (!lead) {
            waited = true;
            const Outcome& outcome = wait.get();
            if (outcome.fresh_as_of > started)
                return outcome.value;
            rereads_.fetch_add(1, std::memory_order_relaxed);
            retrying = true;
            continue;
        }
        if (successor) {
            // A successor's load starts once the readers it was made for are all waiting on
            // it, so that they share it rather than each running its own.
            std::unique_lock lock(stripe.mutex);
            stripe.returned.wait_for(lock, successor_wait, [&] {
                const Flight* flight = find(stripe, key, id);
                return flight == nullptr || flight->returned >= flight->awaited;
            });
        }
        Outcome outcome;
        try {
            outcome = load();
        } catch (...) {
            // Land the flight before publishing, so an error is never served to a later caller.
            land(stripe, key, id, nullptr);
            lead->set_exception(std::current_exception());
            throw;
        }
        land(stripe, key, id, &outcome);
        lead->set_value(outcome);
        return outcome.value;
    }
}

ORMCACHE_INLINE void Singleflight::forget(const std::string& key) {
    Stripe& stripe = stripe_for(key);
    {
        std::lock_guard lock(stripe.mutex);
        stripe.flights.erase(key);
    }
    stripe.returned.notify_all();  // a successor's leader stops waiting for its readers
}

ORMCACHE_INLINE Singleflight::Flight* Singleflight::find(Stripe& stripe, const std::string& key,
                                                         std::uint64_t id) {
    const auto it = stripe.flights.find(key);
    if (it == stripe.flights.end())
        return nullptr;
    for (auto& f : it->second) {
        if (f.id == id)
            return &f;
    }
    return nullptr;
}

ORMCACHE_INLINE Singleflight::Flight Singleflight::new_flight(std::int64_t tag, std::uint64_t id) {
    auto promise = std::make_shared<std::promise<Outcome>>();
    auto future = promise->get_future().share();
    return Flight{tag, id, std::move(promise), std::move(future)};
}

ORMCACHE_INLINE void Singleflight::land(Stripe& stripe, const std::string& key, std::uint64_t id,
                                        const Outcome* outcome) {
    std::lock_guard lock(stripe.mutex);
    Flight* flight = find(stripe, key, id);
    if (flight == nullptr)
        return;
    if (outcome != nullptr) {
        const auto too_late = static_cast<std::size_t>(
            std::count_if(flight->waiter_starts.begin(), flight->waiter_starts.end(),
                          [&](Tick start) { return start >= outcome->fresh_as_of; }));
        if (too_late > 0) {
            *flight = new_flight(flight->tag, ++stripe.last_id);
            flight->awaited = too_late;
            return;
        }
    }
    auto& flights = stripe.flights.find(key)->second;
    flights.erase(flights.begin() + (flight - flights.data()));
    if (flights.empty())
        stripe.flights.erase(key);
}

#endif  // ORMCACHE_DEFINITIONS

}  // namespace ormcache::detail
