#pragma once
// The file backend: a cache that survives restarts and is shared by the processes of one
// machine, kept in a SQLite file of its own (WAL mode, busy timeout). Include this header;
// then CacheConfig::backend = "file" (or the seed's "dogpile.cache.dbm") with
// arguments {"filename": "/var/cache/app/ormcache.db"} works. No dependency beyond the core.
//
// Semantics are those of the memory and Redis backends (backend.hpp):
//  - read:       the entry and its counters; a missing counter is created from the clock
//                (microseconds since the epoch), so a re-created counter never equals an old
//                one; on a miss, a fill lease (a row holding a token and no value) if asked;
//  - fill:       one BEGIN IMMEDIATE transaction: stores only while the lease is still ours
//                and every guard counter is unchanged;
//  - invalidate: one transaction deletes the entries and bumps the counters.
// Every entry has its own TTL (expires_at); expired rows are misses and are deleted when read,
// and every `sweep_every` writes a bounded sweep deletes up to `sweep_limit` expired rows.
// With `distributed_lock`, a lease is also a lock across processes (detail/cache/lock_wait.hpp).
//
// Failures: any SQLite failure (busy past the timeout, corrupt file, disk full) is a
// CacheError("file", operation); the CacheManager absorbs it and serves from the database,
// and on_error hears of an outage once (detail/cache/incident.hpp). An invalidation that could not
// be written is kept and replayed before the next read or fill: until it lands those fail
// too, so the entries it was meant to remove are never served
// (detail/cache/pending_invalidations.hpp). A file that cannot be opened (missing directory, no
// permission) is not a ConfigError: the Database is built, the cache fails open and opens the file
// once it can (retrying at most every `retry_interval`). Creating the directory is the
// application's job. The choice is the one made for unreachable servers (docs/reference.md, cache
// rule 7): a cache must never keep an application from starting, and a path that is wrong at
// start-up may be right a moment later (a volume not yet mounted).
//
// Thread-safe: a pool of connections, each used by one thread at a time. Process-safe:
// SQLite's file locking. Safe across fork(): see detail/file/file_connection.hpp.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <SQLiteCpp/Transaction.h>
#include <nlohmann/json.hpp>

#include "../backend.hpp"
#include "../detail/cache/backend_arguments.hpp"
#include "../detail/cache/lease_token.hpp"
#include "../detail/cache/lock_wait.hpp"
#include "../detail/cache/server_health.hpp"
#include "../detail/file/file_connection.hpp"
#include "../errors.hpp"

namespace ormcache {

/// File backend settings: the typed form of CacheConfig::arguments (docs/reference.md, section
/// 3.4). An aggregate: append only. `CacheConfig{.backend = "file", .arguments =
/// FileOptions{.filename = "c.db"}}` works through to_json() below.
struct FileOptions {
    /// The cache file (created if missing; its directory must exist). Required: empty is a
    /// ConfigError. JSON `filename`.
    std::string filename{};
    /// How long an operation waits for another connection's write lock before it fails;
    /// 0 = it fails at once. JSON `busy_timeout_ms`.
    std::chrono::milliseconds busy_timeout{5000};
    /// A bounded sweep of expired rows runs every this many writes (fills, sets,
    /// invalidations) of this process; 0 = never (expired rows are still deleted when read).
    std::size_t sweep_every = 1000;
    /// Most expired rows one sweep deletes, so that no write pays for a large purge (>= 1).
    std::size_t sweep_limit = 100;
    /// Most connections kept open between calls (more are opened while more threads need
    /// one); >= 1.
    std::size_t pool_size = 8;
    /// After the file could not be opened, how long calls fail at once before the next try;
    /// 0 = every call tries again. JSON `retry_interval_ms`.
    std::chrono::milliseconds retry_interval{1000};
    /// Cache rule 9 (docs/reference.md) across the processes sharing the file: a miss that
    /// finds another reader's fill lease waits for its value (or for the lease to go) instead
    /// of querying.
    bool distributed_lock = false;
    /// With distributed_lock: how long a lease (the lock) lives, so a dead holder's lock is
    /// released after it, and the longest a reader waits (>= 1 ms). JSON `lock_timeout_ms`.
    std::chrono::milliseconds lock_timeout{5000};

    friend bool operator==(const FileOptions&, const FileOptions&) = default;
};

namespace detail {

/// The file backend's arguments: JSON name, member, range (docs/reference.md, section 3.4).
template <>
struct OptionTable<FileOptions> {
    static constexpr std::string_view backend = "file";
    static constexpr auto fields = std::tuple{
        field("filename", &FileOptions::filename,
              {.hint = "the cache file's path", .non_empty = true, .required = true}),
        field("busy_timeout_ms", &FileOptions::busy_timeout, {.max = max_argument_ms}),
        field("sweep_every", &FileOptions::sweep_every, {.max = 1 << 30}),
        field("sweep_limit", &FileOptions::sweep_limit, {.min = 1, .max = 1 << 30}),
        field("pool_size", &FileOptions::pool_size, {.min = 1, .max = 4096}),
        field("retry_interval_ms", &FileOptions::retry_interval, {.max = max_argument_ms}),
        field("distributed_lock", &FileOptions::distributed_lock),
        field("lock_timeout_ms", &FileOptions::lock_timeout, {.min = 1, .max = max_argument_ms}),
    };
};

/// Reads FileOptions from CacheConfig::arguments; ConfigError names the bad field.
inline FileOptions file_options(const nlohmann::json& args) {
    return read_options<FileOptions>(args);
}

}  // namespace detail

/// FileOptions as CacheConfig::arguments (found by ADL: `nlohmann::json j = options;`).
inline void to_json(nlohmann::json& j, const FileOptions& o) {
    j = detail::options_to_json(o);
}

/// CacheConfig::arguments as FileOptions (`j.get<FileOptions>()`); ConfigError when invalid.
inline void from_json(const nlohmann::json& j, FileOptions& o) {
    o = detail::read_options<FileOptions>(j);
}

class FileBackend {
  public:
    static constexpr bool stores_objects = false;

    FileBackend(FileOptions options, std::string key_prefix)
        : options_(std::move(options)),
          prefix_(std::move(key_prefix)),
          pool_(options_.filename, options_.busy_timeout, options_.pool_size,
                options_.retry_interval) {}

    std::string_view name() const noexcept { return "file"; }
    const FileOptions& options() const noexcept { return options_; }

    ReadResult read(const ReadRequest& request) {
        return run("read", [&](detail::FileConnection& c) {
            return detail::read_with_lock(
                request, options_.distributed_lock, options_.lock_timeout,
                [&](std::optional<Ttl> lease_ttl) { return read_on(c, request, lease_ttl); });
        });
    }

    bool fill(const FillRequest& request) {
        return run("fill", [&](detail::FileConnection& c) { return fill_on(c, request); });
    }

    /// Kept until delivered: if the file cannot be written now (locked past the busy
    /// timeout, unreadable), the batch is replayed before any later read or fill, which would
    /// otherwise find the entries it was meant to remove. Tried even while the circuit is open
    /// (one probe at a time): other processes may open the file and read what it invalidates.
    void invalidate(const InvalidationBatch& batch) {
        if (batch.empty())
            return;
        health_.keep(batch);
        run(
            "invalidate", [&](detail::FileConnection&) { return true; },
            detail::FileConnectionPool::Admission::probe);
    }

    /// Deletes every entry whose key starts with the key prefix (other configurations may
    /// share the file under other prefixes). Counters stay: they are tiny, every entry stored
    /// under them is gone, and keeping them means a counter never goes back to a value that
    /// some process still holds in a guard.
    void clear() {
        run("clear", [&](detail::FileConnection& c) {
            // A range on the primary key: keys compare as bytes (BINARY collation), so the
            // keys that start with the prefix are exactly [prefix, successor(prefix)).
            if (const auto end = prefix_successor(prefix_)) {
                c.prepare(clear_range_sql).bind(1, prefix_).bind(2, *end).run();
            } else {
                c.prepare(clear_from_sql).bind(1, prefix_).run();
            }
            return true;
        });
    }

    /// Runs one bounded sweep now; returns how many expired rows it deleted.
    std::size_t sweep() {
        return run("sweep", [&](detail::FileConnection& c) {
            return static_cast<std::size_t>(sweep_on(c, now_ms()));
        });
    }

    /// Undelivered invalidation batches waiting for the file (for tests and monitoring).
    std::size_t pending_invalidations() const { return health_.pending(); }

  private:
    // ---- SQL (prepared once per connection) ----

    static constexpr std::string_view select_entry_and_counter_sql =
        "SELECT e.value, e.expires_at, e.lease, e.key IS NOT NULL, "
        "(SELECT value FROM ormcache_counters WHERE name = ?2) "
        "FROM (SELECT 1) LEFT JOIN ormcache_entries AS e ON e.key = ?1";
    static constexpr std::string_view select_entry_sql =
        "SELECT value, expires_at, lease, 1 FROM ormcache_entries WHERE key = ?1";
    static constexpr std::string_view select_counter_sql =
        "SELECT value FROM ormcache_counters WHERE name = ?1";
    static constexpr std::string_view create_counter_sql =
        "INSERT OR IGNORE INTO ormcache_counters (name, value) VALUES (?1, ?2)";
    // A missing counter is created from the clock and bumped (?2 = start + 1), as Redis does.
    static constexpr std::string_view bump_counter_sql =
        "INSERT INTO ormcache_counters (name, value) VALUES (?1, ?2) "
        "ON CONFLICT (name) DO UPDATE SET value = value + 1";
    // Takes the lease on a key that is absent, expired, or holds a value that does not start
    // with ?5 (the current stamp, when the reader gave a stamp prefix: a stale entry), never
    // over another reader's lease or a current value: changes() tells whether it did.
    static constexpr std::string_view take_lease_sql =
        "INSERT INTO ormcache_entries (key, value, expires_at, lease) VALUES (?1, NULL, ?2, ?3) "
        "ON CONFLICT (key) DO UPDATE SET value = NULL, expires_at = excluded.expires_at, "
        "lease = excluded.lease WHERE ormcache_entries.expires_at <= ?4 OR (?5 IS NOT NULL AND "
        "ormcache_entries.lease IS NULL AND "
        "substr(ormcache_entries.value, 1, length(?5)) IS NOT ?5)";
    static constexpr std::string_view delete_expired_sql =
        "DELETE FROM ormcache_entries WHERE key = ?1 AND expires_at <= ?2";
    static constexpr std::string_view select_lease_sql =
        "SELECT lease FROM ormcache_entries WHERE key = ?1";
    static constexpr std::string_view store_sql =
        "INSERT INTO ormcache_entries (key, value, expires_at, lease) VALUES (?1, ?2, ?3, NULL) "
        "ON CONFLICT (key) DO UPDATE SET value = excluded.value, "
        "expires_at = excluded.expires_at, lease = NULL";
    static constexpr std::string_view delete_entry_sql =
        "DELETE FROM ormcache_entries WHERE key = ?1";
    static constexpr std::string_view sweep_sql =
        "DELETE FROM ormcache_entries WHERE rowid IN (SELECT rowid FROM ormcache_entries "
        "WHERE expires_at IS NOT NULL AND expires_at <= ?1 LIMIT ?2)";
    static constexpr std::string_view clear_range_sql =
        "DELETE FROM ormcache_entries WHERE key >= ?1 AND key < ?2";
    static constexpr std::string_view clear_from_sql =
        "DELETE FROM ormcache_entries WHERE key >= ?1";

    /// Wall-clock milliseconds: expiry times are shared with other processes.
    static std::int64_t now_ms() {
        return std::chrono::duration_cast<std::chrono::milliseconds>(
                   std::chrono::system_clock::now().time_since_epoch())
            .count();
    }

    /// The smallest string greater than every string that starts with `prefix` (none when
    /// the prefix is empty or all 0xFF bytes).
    static std::optional<std::string> prefix_successor(std::string prefix) {
        while (!prefix.empty()) {
            auto& last = reinterpret_cast<unsigned char&>(prefix.back());
            if (last != 0xFF) {
                ++last;
                return prefix;
            }
            prefix.pop_back();
        }
        return std::nullopt;
    }

    /// Runs `op` on a pooled connection, after replaying any undelivered invalidation. Any
    /// failure becomes a CacheError("file", operation), closes the connection, and opens an
    /// incident or continues one (on_error hears of an outage once); a success ends it.
    template <class Op>
    auto run(const char* operation, Op&& op,
             detail::FileConnectionPool::Admission admission =
                 detail::FileConnectionPool::Admission::closed_circuit)
        -> decltype(op(std::declval<detail::FileConnection&>())) {
        return health_.track(
            [&] {
                auto connection = pool_.acquire(admission);
                try {
                    replay(*connection);
                    auto result = op(*connection);
                    if (connection.probe())
                        pool_.close_circuit();
                    return result;
                } catch (...) {
                    connection.discard();
                    throw;
                }
            },
            [&](const std::exception& e) {
                return detail::file_error(options_.filename, operation, e.what());
            });
    }

    /// Delivers the invalidations that failed earlier, oldest first.
    void replay(detail::FileConnection& c) {
        health_.catch_up([&](const InvalidationBatch& batch) { deliver(c, batch); });
    }

    ReadResult read_on(detail::FileConnection& c, const ReadRequest& request,
                       std::optional<Ttl> lease_ttl) {
        ReadResult result;
        result.counters.resize(request.counters.size());
        std::vector<bool> found(request.counters.size(), false);
        const bool has_entry = !request.key.empty();
        struct Row {
            bool exists = false;
            std::optional<std::string> value;
            std::optional<std::int64_t> expires_at;
            bool leased = false;
        } row;
        auto take_row = [&](detail::FileStatement& s) {
            row.exists = s.integer(3) != 0;
            if (!row.exists)
                return;
            if (!s.is_null(0))
                row.value = s.bytes(0);
            if (!s.is_null(1))
                row.expires_at = s.integer(1);
            row.leased = !s.is_null(2);
        };

        std::size_t first_counter = 0;
        if (has_entry && request.counters.size() == 1) {
            // The hit path: the entry and its counter in one statement.
            auto s = c.prepare(select_entry_and_counter_sql);
            s.bind(1, request.key).bind(2, request.counters[0]);
            if (s.step()) {
                take_row(s);
                if (!s.is_null(4)) {
                    result.counters[0] = s.integer(4);
                    found[0] = true;
                }
            }
            first_counter = 1;
        } else if (has_entry) {
            auto s = c.prepare(select_entry_sql);
            s.bind(1, request.key);
            if (s.step())
                take_row(s);
        }
        for (std::size_t i = first_counter; i < request.counters.size(); ++i) {
            auto s = c.prepare(select_counter_sql);
            if (s.bind(1, request.counters[i]).step()) {
                result.counters[i] = s.integer(0);
                found[i] = true;
            }
        }
        for (std::size_t i = 0; i < request.counters.size(); ++i) {
            if (found[i])
                continue;
            // Another process may create it at the same moment: insert-or-ignore, then read
            // whichever value won.
            c.prepare(create_counter_sql)
                .bind(1, request.counters[i])
                .bind(2, detail::counter_start())
                .run();
            auto s = c.prepare(select_counter_sql);
            if (!s.bind(1, request.counters[i]).step()) {
                throw detail::file_error(options_.filename, "read",
                                         "counter " + request.counters[i] + " vanished");
            }
            result.counters[i] = s.integer(0);
        }
        if (!has_entry)
            return result;

        const std::int64_t now = now_ms();
        const bool expired = row.exists && row.expires_at && *row.expires_at <= now;
        // With a stamp prefix, a value that does not carry the current stamp is stale: a
        // reader that asks for a lease takes it over that value in the same step.
        std::optional<std::string> stamp;
        if (!request.stamp_prefix.empty() && !request.counters.empty()) {
            stamp = std::string(request.stamp_prefix) + std::to_string(result.counters[0]) + ' ';
        }
        const bool stale = lease_ttl && stamp && row.value && !row.leased &&
                           !std::string_view(*row.value).starts_with(*stamp);
        if (row.exists && !expired && !stale) {
            if (row.leased) {
                result.locked_elsewhere = true;  // a miss without a lease
            } else if (row.value) {
                result.value = CacheValue{std::move(*row.value), nullptr};
            }
            return result;
        }
        if (lease_ttl) {
            const std::string token = detail::new_lease_token();
            auto take = c.prepare(take_lease_sql);
            take.bind(1, request.key)
                .bind(2, now + std::max<std::int64_t>(1, lease_ttl->count()))
                .bind(3, token)
                .bind(4, now);
            if (stamp) {
                take.bind_blob(5, *stamp);
            } else {
                take.bind_null(5);
            }
            if (take.run() == 1) {
                result.lease = token;
            } else {
                // Another process leased or filled the key since our read; the next read
                // (after waiting, with a distributed lock) tells which.
                result.locked_elsewhere = true;
            }
        } else if (expired) {
            c.prepare(delete_expired_sql).bind(1, request.key).bind(2, now).run();
        }
        return result;
    }

    bool fill_on(detail::FileConnection& c, const FillRequest& request) {
        SQLite::Transaction transaction(c.database(), SQLite::TransactionBehavior::IMMEDIATE);
        if (!request.lease.empty()) {
            auto s = c.prepare(select_lease_sql);
            if (!s.bind(1, request.key).step() || s.is_null(0) || s.bytes(0) != request.lease) {
                return false;  // the lease was cancelled by an invalidation (or expired and taken)
            }
        }
        for (const auto& [counter, expected] : request.guards) {
            auto s = c.prepare(select_counter_sql);
            if (!s.bind(1, counter).step() || s.integer(0) != expected) {
                // A commit happened since the read: give the lease back, so the next reader
                // fills with fresh data instead of waiting for this lease to expire.
                if (!request.lease.empty())
                    c.prepare(delete_entry_sql).bind(1, request.key).run();
                transaction.commit();
                return false;
            }
        }
        const std::int64_t now = now_ms();
        if (request.ttl.count() == 0) {
            c.prepare(delete_entry_sql).bind(1, request.key).run();  // expired on arrival
        } else {
            auto s = c.prepare(store_sql);
            s.bind(1, request.key).bind_blob(2, request.value.bytes);
            if (request.ttl.count() < 0) {
                s.bind_null(3);
            } else {
                s.bind(3, now + request.ttl.count());
            }
            s.run();
        }
        maybe_sweep(c, now);
        transaction.commit();
        return true;
    }

    /// One transaction: bump first, then delete (inside a transaction the order is invisible
    /// to readers; it only matters for the statements' own reads).
    void deliver(detail::FileConnection& c, const InvalidationBatch& batch) {
        SQLite::Transaction transaction(c.database(), SQLite::TransactionBehavior::IMMEDIATE);
        for (const auto& counter : batch.bump) {
            c.prepare(bump_counter_sql).bind(1, counter).bind(2, detail::counter_start() + 1).run();
        }
        for (const auto& key : batch.remove)
            c.prepare(delete_entry_sql).bind(1, key).run();
        maybe_sweep(c, now_ms());
        transaction.commit();
    }

    /// Every sweep_every writes of this backend, a bounded sweep, inside the caller's write
    /// transaction (it already holds the write lock).
    void maybe_sweep(detail::FileConnection& c, std::int64_t now) {
        if (options_.sweep_every == 0)
            return;
        const auto writes = writes_.fetch_add(1, std::memory_order_relaxed) + 1;
        if (writes % options_.sweep_every != 0)
            return;
        sweep_on(c, now);
    }

    int sweep_on(detail::FileConnection& c, std::int64_t now) {
        return c.prepare(sweep_sql)
            .bind(1, now)
            .bind(2, static_cast<std::int64_t>(options_.sweep_limit))
            .run();
    }

    FileOptions options_;
    std::string prefix_;
    detail::FileConnectionPool pool_;
    detail::ServerHealth health_;  // no breaker of its own: the pool's covers opening the file
    std::atomic<std::uint64_t> writes_{0};
};

static_assert(Backend<FileBackend>);

namespace detail {
inline const bool file_backend_registered = [] {
    register_backend("file", [](const CacheConfig& config) {
        return std::make_unique<AnyBackend>(
            std::make_unique<FileBackend>(file_options(config.arguments), config.key_prefix));
    });
    return true;
}();
}  // namespace detail

}  // namespace ormcache
