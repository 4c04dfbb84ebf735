#pragma once
// Database: configuration, sessions, commit listeners and the cache over one SQLite database.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "cache_manager.hpp"
#include "change_set.hpp"
#include "database_config.hpp"
#include "detail/orm/model_sql.hpp"
#include "detail/sqlite/database_state.hpp"
#include "detail/util/linkage.hpp"
#include "model.hpp"
#include "session.hpp"

namespace ormcache {

class Database;
void setup_cache_listeners(Database& db, CacheManager& manager);

namespace detail {
inline CacheConfig config_or_null(const DatabaseConfig& config) {
    if (config.cache_config)
        return *config.cache_config;
    CacheConfig null_config;
    null_config.backend = "null";
    return null_config;
}
}  // namespace detail

/// Thread-safe: any number of threads may each open their own Session.
/// Configuration (cache_config included) is validated here; a bad config throws ConfigError.
class Database {
  public:
    explicit Database(DatabaseConfig config);

    Database(const Database&) = delete;
    Database& operator=(const Database&) = delete;

    /// A new session on its own connection.
    Session session() { return Session(state_); }

    /// CREATE TABLE IF NOT EXISTS for each model, in order.
    template <Model... Ts>
    void create_all() {
        Session s = session();
        (create_one<Ts>(*s.state_), ...);
    }

    /// Registers a listener for what each committed transaction changed. It runs on the
    /// committing thread, after the commit succeeded; it must not use that session.
    /// Returns an id for remove_commit_listener.
    std::uint64_t on_commit(std::function<void(const ChangeSet&)> listener) {
        return state_->add_listener(std::move(listener));
    }

    bool remove_commit_listener(std::uint64_t id) { return state_->remove_listener(id); }

    const DatabaseConfig& config() const noexcept { return state_->config(); }

    /// This database's identity in cache keys: every key a cache stores for it starts with
    /// key_prefix + cache_identity() + ":". Databases with equal identities share entries
    /// (see DatabaseConfig::cache_identity). The first call may record an id in the database
    /// (table ormcache_meta), as attaching a cache does.
    const std::string& cache_identity() const { return state_->cache_identity(); }

    /// The manager built from cache_config (on the null backend when there is none).
    CacheManager& cache_manager() noexcept { return cache_; }

  private:
    friend void setup_cache_listeners(Database& db, CacheManager& manager);

    template <Model T>
    static void create_one(detail::SessionState& s) {
        s.enter();
        s.run(detail::ModelSql<T>::get().create_table);
        s.register_table(detail::ModelInfo<T>::table);
    }

    std::shared_ptr<detail::DatabaseState> state_;
    CacheManager cache_;
};

#if ORMCACHE_DEFINITIONS

ORMCACHE_INLINE Database::Database(DatabaseConfig config)
    : state_(std::make_shared<detail::DatabaseState>(config)),
      cache_(std::make_shared<detail::CacheCore>(detail::config_or_null(config))) {
    state_->set_default_cache(cache_.core_);
    if (config.cache_config) {
        // The key space needs the database's identity: settle it here, so that a database
        // whose identity can be neither read nor recorded fails now, with a ConfigError.
        cache_.core_->key_space(*state_);
        if (config.enable_cache_listener)
            setup_cache_listeners(*this, cache_);
    }
}

#endif  // ORMCACHE_DEFINITIONS

/// Manual setup, as in the seed: every commit on `db` invalidates `manager`'s cache, and
/// explicit transactions on `db` guard their fills against `manager`'s counters. The listener
/// holds the manager weakly: it stops when the manager is destroyed.
ORMCACHE_INLINE void setup_cache_listeners(Database& db, CacheManager& manager);
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE void setup_cache_listeners(Database& db, CacheManager& manager) {
    std::weak_ptr<detail::CacheCore> weak = manager.core_;
    auto deliver = [weak, space = manager.core_->key_space(*db.state_)](const ChangeSet& changes) {
        const auto core = weak.lock();
        return core == nullptr || core->on_commit(space, changes);
    };
    if (manager.core_->uses_outbox() && db.state_->can_share_caches()) {
        // Other processes read this cache: the change set goes through the database's outbox,
        // which outlives this process (docs/caching.md, "Across processes").
        db.state_->attach_outbox(manager.core_->outbox_name(), manager.config().invalidation_bound,
                                 std::move(deliver));
    } else {
        db.state_->add_listener(
            [deliver = std::move(deliver)](const ChangeSet& changes) { deliver(changes); });
    }
    db.state_->attach_cache(manager.core_);
}
#endif

}  // namespace ormcache
