#pragma once
// The Backend concept: what a cache store offers the CacheManager, and the registry of backend
// names. The operations are shaped so that every backend can close the races between a fill
// and an invalidation (see docs/caching.md, "Correctness") with one round trip per call:
//
//  - read:       the entry, the counters that decide whether it is still valid, and (on a
//                miss, if asked) a fill lease on the entry's key, all at once;
//  - fill:       store only if the lease is still ours and every guard counter still has the
//                value the reader saw; an invalidation in between deletes the lease or bumps a
//                counter, and the stale fill is dropped;
//  - invalidate: delete keys and bump counters in one batch, after a commit succeeded.
//
// Counters (list versions, entity generations) only ever grow while they exist. A counter
// that is missing (never written, evicted, server restarted) is created from the clock, so a
// re-created counter never equals a value some old entry was stored under.

#include <chrono>
#include <concepts>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "cache_config.hpp"
#include "detail/util/linkage.hpp"
#include "errors.hpp"

namespace ormcache {

/// A cached value: serializer bytes (byte backends) or the decoded object itself (backends
/// with `stores_objects`, such as the in-process memory backend, so a hit parses nothing).
struct CacheValue {
    std::string bytes;
    std::shared_ptr<const void> object;
};

/// Time to live; a negative value means "never expires".
using Ttl = std::chrono::milliseconds;

struct ReadRequest {
    std::string key;
    /// Counters to return with the entry (created from the clock when missing).
    std::vector<std::string> counters;
    /// On a miss, take a fill lease on `key` for this long (unset: take none).
    std::optional<Ttl> lease_ttl;
    /// Non-empty: the entry is current only while its bytes start with stamp_prefix, the
    /// value of counters[0] and a space (the envelope CacheCore writes). A byte backend may
    /// then treat any other entry as absent, and lease the key over it in the same step: a
    /// stale entry costs no extra round trips, and no reader ever deletes it from under
    /// another reader's lease. Backends may also ignore it (the CacheManager re-checks).
    std::string_view stamp_prefix{};
};

struct ReadResult {
    std::optional<CacheValue> value;     ///< empty on a miss (or while a lease holds the key)
    std::vector<std::int64_t> counters;  ///< one per requested counter, same order
    std::string lease;                   ///< the lease token taken; empty if none was taken
    /// The key holds another reader's lease: a fill is in flight elsewhere. With a
    /// distributed lock, the backend has already waited for it (see detail/cache/lock_wait.hpp).
    bool locked_elsewhere = false;
};

struct FillRequest {
    std::string key;
    CacheValue value;
    Ttl ttl{-1};
    /// Set only while this lease still holds `key` (empty: no lease involved).
    std::string lease;
    /// Set only while each counter still has the given value.
    std::vector<std::pair<std::string, std::int64_t>> guards;
};

struct InvalidationBatch {
    std::vector<std::string> remove;  ///< entry keys to delete (leases on them are cancelled)
    std::vector<std::string> bump;    ///< counters to increment
    /// Counters whose bump invalidates at least every entry in `remove` (the entity
    /// generation of their tables): what a backend bumps instead of deleting those keys when
    /// it must fold undelivered invalidations to keep them bounded.
    std::vector<std::string> fallback_bump;
    bool empty() const noexcept { return remove.empty() && bump.empty(); }
};

/// A cache store. Every operation may throw (a CacheError, or anything): the CacheManager
/// absorbs, counts and reports failures, and serves the call from the database.
/// Implementations must be thread-safe.
template <class B>
concept Backend = requires(B& b, const B& cb, const ReadRequest& read, const FillRequest& fill,
                           const InvalidationBatch& batch) {
    { cb.name() } -> std::convertible_to<std::string_view>;
    { B::stores_objects } -> std::convertible_to<bool>;
    { b.read(read) } -> std::same_as<ReadResult>;
    { b.fill(fill) } -> std::same_as<bool>;
    { b.invalidate(batch) } -> std::same_as<void>;
    { b.clear() } -> std::same_as<void>;
};

/// Type-erased Backend, what the CacheManager holds.
class AnyBackend {
  public:
    template <Backend B>
    explicit AnyBackend(std::unique_ptr<B> backend)
        : self_(std::make_unique<Holder<B>>(std::move(backend))) {}

    std::string_view name() const { return self_->name(); }
    bool stores_objects() const noexcept { return self_->stores_objects(); }
    ReadResult read(const ReadRequest& r) { return self_->read(r); }
    bool fill(const FillRequest& f) { return self_->fill(f); }
    void invalidate(const InvalidationBatch& batch) { self_->invalidate(batch); }
    void clear() { self_->clear(); }

  private:
    struct Interface {
        virtual ~Interface() = default;
        virtual std::string_view name() const = 0;
        virtual bool stores_objects() const noexcept = 0;
        virtual ReadResult read(const ReadRequest&) = 0;
        virtual bool fill(const FillRequest&) = 0;
        virtual void invalidate(const InvalidationBatch&) = 0;
        virtual void clear() = 0;
    };
    template <class B>
    struct Holder final : Interface {
        explicit Holder(std::unique_ptr<B> b) : backend(std::move(b)) {}
        std::string_view name() const override { return backend->name(); }
        bool stores_objects() const noexcept override { return B::stores_objects; }
        ReadResult read(const ReadRequest& r) override { return backend->read(r); }
        bool fill(const FillRequest& f) override { return backend->fill(f); }
        void invalidate(const InvalidationBatch& b) override { backend->invalidate(b); }
        void clear() override { backend->clear(); }
        std::unique_ptr<B> backend;
    };
    std::unique_ptr<Interface> self_;
};

/// Builds a backend from a validated CacheConfig. Throws ConfigError for bad arguments.
using BackendFactory = std::function<std::unique_ptr<AnyBackend>(const CacheConfig&)>;

namespace detail {

struct BackendRegistry {
    std::mutex mutex;  // guards factories
    std::map<std::string, BackendFactory, std::less<>> factories;

    static BackendRegistry& instance() {
        static BackendRegistry registry;
        return registry;
    }
};

/// The seed's dogpile.cache spellings, mapped onto ormcache's names.
ORMCACHE_INLINE std::string canonical_backend_name(std::string_view name);
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE std::string canonical_backend_name(std::string_view name) {
    static constexpr std::pair<std::string_view, std::string_view> aliases[] = {
        {"dogpile.cache.memory", "memory"},
        {"dogpile.cache.memory_pickle", "memory"},
        {"dogpile.cache.redis", "redis"},
        {"dogpile.cache.redis_sentinel", "redis"},
        {"dogpile.cache.memcached", "memcached"},
        {"dogpile.cache.pylibmc", "memcached"},
        {"dogpile.cache.bmemcached", "memcached"},
        {"dogpile.cache.pymemcache", "memcached"},
        {"dogpile.cache.null", "null"},
        {"dogpile.cache.dbm", "file"},
    };
    for (const auto& [alias, canonical] : aliases) {
        if (name == alias)
            return std::string(canonical);
    }
    return std::string(name);
}
#endif

ORMCACHE_INLINE std::unique_ptr<AnyBackend> make_backend(const CacheConfig& config);
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE std::unique_ptr<AnyBackend> make_backend(const CacheConfig& config) {
    const std::string name = canonical_backend_name(config.backend);
    BackendFactory factory;
    {
        auto& registry = BackendRegistry::instance();
        std::lock_guard lock(registry.mutex);
        if (auto it = registry.factories.find(name); it != registry.factories.end())
            factory = it->second;
    }
    if (!factory) {
        std::string hint;
        if (name == "redis") {
            hint = ": include <ormcache/backends/redis.hpp> and link ormcache::redis";
        } else if (name == "memcached") {
            hint = ": include <ormcache/backends/memcached.hpp> and link ormcache::memcached";
        } else if (name == "file") {
            hint = ": include <ormcache/backends/file.hpp>";
        } else {
            hint =
                " (known: memory, null, redis, memcached, file, or a name given to "
                "ormcache::register_backend)";
        }
        throw ConfigError("CacheConfig::backend '" + config.backend + "' is not registered" + hint);
    }
    auto backend = factory(config);
    if (!backend)
        throw ConfigError("the factory of backend '" + name + "' returned no backend");
    return backend;
}
#endif

}  // namespace detail

/// Makes `name` usable as CacheConfig::backend. Registering a name again replaces its factory.
ORMCACHE_INLINE void register_backend(std::string name, BackendFactory factory);
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE void register_backend(std::string name, BackendFactory factory) {
    auto& registry = detail::BackendRegistry::instance();
    std::lock_guard lock(registry.mutex);
    registry.factories[std::move(name)] = std::move(factory);
}
#endif

/// Registers a Backend type under `name`, built by `make(const CacheConfig&)`.
template <Backend B, class Make>
void register_backend_type(std::string name, Make make) {
    register_backend(std::move(name), [make = std::move(make)](const CacheConfig& config) {
        return std::make_unique<AnyBackend>(std::unique_ptr<B>(make(config)));
    });
}

}  // namespace ormcache
