#pragma once
// Singleflight: concurrent misses on one key run one load; the others wait on a
// std::shared_future and get the same result or the same exception. Keyed by cache key (with
// the counters the key was read under, so a flight that started before an invalidation is
// never joined after it), with striped locks. No I/O happens under a lock.

#include <array>
#include <cstdint>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "statement_cache.hpp"  // StringHash

namespace ormcache::detail {

class Singleflight {
public:
    using Result = std::shared_ptr<const void>;

    /// Runs `load` unless a flight for `key` is under way, in which case waits for it.
    /// `waited` tells which happened. Exceptions of the load reach every waiter.
    template <class Load>
    Result run(const std::string& key, Load&& load, bool& waited) {
        Stripe& stripe = stripe_for(key);
        std::promise<Result> promise;
        std::shared_future<Result> flight;
        {
            std::lock_guard lock(stripe.mutex);
            auto it = stripe.flights.find(key);
            if (it != stripe.flights.end()) {
                flight = it->second;
            } else {
                stripe.flights.emplace(key, promise.get_future().share());
            }
        }
        if (flight.valid()) {
            waited = true;
            return flight.get();
        }
        waited = false;
        Result result;
        try {
            result = std::forward<Load>(load)();
        } catch (...) {
            // Land the flight before publishing, so an error is never served to a later caller.
            forget(key);
            promise.set_exception(std::current_exception());
            throw;
        }
        forget(key);
        promise.set_value(result);
        return result;
    }

    /// Ends `key`'s flight for newcomers (the load in progress still answers its waiters).
    void forget(const std::string& key) {
        Stripe& stripe = stripe_for(key);
        std::lock_guard lock(stripe.mutex);
        stripe.flights.erase(key);
    }

private:
    struct Stripe {
        std::mutex mutex;  // guards flights
        std::unordered_map<std::string, std::shared_future<Result>, StringHash, std::equal_to<>> flights;
    };

    Stripe& stripe_for(std::string_view key) {
        return stripes_[std::hash<std::string_view>{}(key) % stripes_.size()];
    }

    std::array<Stripe, 16> stripes_;
};

}  // namespace ormcache::detail
