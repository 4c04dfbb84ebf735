#pragma once

#include <chrono>
#include <functional>
#include <optional>
#include <string>
#include <string_view>

#include "cache_config.hpp"

namespace ormcache {

/// An aggregate: fields are declared in API order; add new ones at the end only.
struct DatabaseConfig {
    /// A SQLite file path, ":memory:" (one in-memory database shared by every session of the
    /// Database) or a "file:" URI. It selects the engine: "postgresql://", "postgres://" and
    /// libpq keyword strings setting host or dbname are PostgreSQL, which this version refuses
    /// with a ConfigError (see detail/engine/engine_kind.hpp for the exact rule).
    std::string connection_string = ":memory:";
    /// Absent = no cache (db.cache_manager() is then a manager on the null backend).
    std::optional<CacheConfig> cache_config{};
    /// Invalidate the cache automatically after each successful commit.
    bool enable_cache_listener = true;
    /// Called with every SQL statement a session or repository runs, transaction control
    /// included (the per-connection setup PRAGMAs are not reported).
    std::function<void(std::string_view)> on_query{};
    /// How long a statement waits for another connection's lock before failing with
    /// SQLITE_BUSY. 0 = fail at once.
    std::chrono::milliseconds busy_timeout{5000};
    /// The database's identity in cache keys: Database objects (in any process) whose
    /// identities are equal share cache entries, others never do. Empty (the default) =
    /// derived from an id stored in the database and, for a file, its inode, so that a copy
    /// of the file gets its own entries. Set it (1-64 of [A-Za-z0-9._-]) to make databases
    /// share entries on purpose, e.g. a copy you know holds the same data.
    std::string cache_identity{};
};

}  // namespace ormcache
