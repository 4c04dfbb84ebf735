#pragma once
// CacheManager: the cache of one configuration (backend, TTL, prefix, serializer), shared by
// any number of repositories and sessions. Thread-safe.

#include <chrono>
#include <memory>
#include <optional>
#include <string>
#include <utility>

#include "backends/memory.hpp"
#include "cache_config.hpp"
#include "cache_stats.hpp"
#include "detail/cache/cache_core.hpp"
#include "model.hpp"

namespace ormcache {

class Database;
template <class T>
class Repository;

class CacheManager {
  public:
    /// Validates `config` (ConfigError naming the field) and builds its backend. An
    /// unreachable cache server is not an error: the cache fails open.
    explicit CacheManager(CacheConfig config)
        : core_(std::make_shared<detail::CacheCore>(std::move(config))) {}

    CacheManager(const CacheManager&) = delete;
    CacheManager& operator=(const CacheManager&) = delete;

    CacheStats stats() const { return core_->stats(); }
    const CacheConfig& config() const noexcept { return core_->config(); }

    /// Drops one entity and bumps T's list version, in every database this manager has
    /// served (its Database's, those given to setup_cache_listeners, and those of the
    /// sessions of Repositories built on it, in this process).
    template <Model T>
    void invalidate(const primary_key_type<T>& id) {
        core_->template register_model<T>();
        core_->template invalidate_entity<T>(detail::to_primary_key(id));
    }

    /// Bumps T's list version and entity generation: every cached entry of T is gone, in
    /// every database this manager has served (as invalidate()).
    template <Model T>
    void invalidate_all() {
        core_->template register_model<T>();
        core_->template invalidate_model<T>();
    }

    /// Region-style caching of any value: returns the cached V for `key`, or runs `create`
    /// (once per key across concurrent callers) and caches its result. V needs nlohmann
    /// to_json/from_json or an ormcache::codec<V> for non-memory backends. An exception from
    /// `create` reaches every waiting caller and is not cached.
    template <class V, class Create>
    V get_or_create(const std::string& key, Create&& create,
                    std::optional<std::chrono::seconds> expiration_time = std::nullopt) {
        return core_->template get_or_create<V>(key, std::forward<Create>(create), expiration_time);
    }

    /// Drops everything this manager's backend holds under key_prefix.
    void clear() { core_->clear(); }

  private:
    friend class Database;
    friend void setup_cache_listeners(Database& db, CacheManager& manager);
    template <class T>
    friend class Repository;

    explicit CacheManager(std::shared_ptr<detail::CacheCore> core) : core_(std::move(core)) {}

    std::shared_ptr<detail::CacheCore> core_;
};

}  // namespace ormcache
