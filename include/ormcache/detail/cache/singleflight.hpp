#pragma once
// Singleflight: concurrent misses on one key run one load; the others wait on a
// std::shared_future and get the same result or the same exception. Keyed by cache key and a
// tag (the counter the key was read under), with striped locks. An invalidation ends every
// flight of the key, whatever its tag, so that a flight that started before it is never joined
// after it. No I/O happens under a lock.

#include <array>
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

class Singleflight {
  public:
    using Result = std::shared_ptr<const void>;

    /// Runs `load` unless a flight for `key` and `tag` is under way, in which case waits for
    /// it. `waited` tells which happened. Exceptions of the load reach every waiter.
    template <class Load>
    Result run(const std::string& key, std::int64_t tag, Load&& load, bool& waited) {
        return run_ref(key, tag, LoadRef<Result>(load), waited);
    }

    /// run() for a type-erased load: compiled once, whatever the caller's lambda.
    Result run_ref(const std::string& key, std::int64_t tag, LoadRef<Result> load, bool& waited);

    /// Ends every flight of `key` for newcomers (the loads in progress still answer their
    /// waiters).
    void forget(const std::string& key);

  private:
    struct Flight {
        std::int64_t tag;
        std::uint64_t id;  // tells this flight from a later one with the same key and tag
        std::shared_future<Result> future;
    };

    struct Stripe {
        std::mutex mutex;  // guards flights and last_id
        std::unordered_map<std::string, std::vector<Flight>, StringHash, std::equal_to<>> flights;
        std::uint64_t last_id = 0;
    };

    /// Removes flight `id` only: after forget(), a newer flight of the key may be under way.
    static void land(Stripe& stripe, const std::string& key, std::uint64_t id);

    Stripe& stripe_for(std::string_view key) {
        return stripes_[std::hash<std::string_view>{}(key) % stripes_.size()];
    }

    std::array<Stripe, 16> stripes_;
};

#if ORMCACHE_DEFINITIONS

ORMCACHE_INLINE Singleflight::Result Singleflight::run_ref(const std::string& key, std::int64_t tag,
                                                           LoadRef<Result> load, bool& waited) {
    Stripe& stripe = stripe_for(key);
    std::promise<Result> promise;
    std::shared_future<Result> flight;
    std::uint64_t id = 0;
    {
        std::lock_guard lock(stripe.mutex);
        auto& flights = stripe.flights[key];
        for (const auto& f : flights) {
            if (f.tag == tag)
                flight = f.future;
        }
        if (!flight.valid()) {
            id = ++stripe.last_id;
            flights.push_back(Flight{tag, id, promise.get_future().share()});
        }
    }
    if (flight.valid()) {
        waited = true;
        return flight.get();
    }
    waited = false;
    Result result;
    try {
        result = load();
    } catch (...) {
        // Land the flight before publishing, so an error is never served to a later caller.
        land(stripe, key, id);
        promise.set_exception(std::current_exception());
        throw;
    }
    land(stripe, key, id);
    promise.set_value(result);
    return result;
}

ORMCACHE_INLINE void Singleflight::forget(const std::string& key) {
    Stripe& stripe = stripe_for(key);
    std::lock_guard lock(stripe.mutex);
    stripe.flights.erase(key);
}

ORMCACHE_INLINE void Singleflight::land(Stripe& stripe, const std::string& key, std::uint64_t id) {
    std::lock_guard lock(stripe.mutex);
    const auto it = stripe.flights.find(key);
    if (it == stripe.flights.end())
        return;
    std::erase_if(it->second, [&](const Flight& f) { return f.id == id; });
    if (it->second.empty())
        stripe.flights.erase(it);
}

#endif  // ORMCACHE_DEFINITIONS

}  // namespace ormcache::detail
