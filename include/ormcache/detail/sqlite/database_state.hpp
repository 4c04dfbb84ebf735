#pragma once
// State shared by a Database and all of its sessions: the validated config, how to open a
// connection, the commit listeners and the registry of model tables' primary keys.
// Thread-safe: sessions on many threads use it at once.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../../change_set.hpp"
#include "../../database_config.hpp"
#include "../../errors.hpp"
#include "../engine/engine_kind.hpp"
#include "../orm/sql_text.hpp"
#include "../util/linkage.hpp"
#include "database_identity.hpp"
#include "outbox.hpp"
#include "sqlite_error.hpp"
#include "statement_cache.hpp"

namespace ormcache::detail {

/// Where a table's primary key lives, for the journal's preupdate hook.
struct TableInfo {
    int pk_column = -1;       ///< column index of the primary key; -1: rows cannot be named
    bool rowid_alias = true;  ///< INTEGER PRIMARY KEY: the rowid is the key
};

using CommitListener = std::function<void(const ChangeSet&)>;

/// Counter values (list versions, entity generations) by counter key.
using CounterSnapshot = std::unordered_map<std::string, std::int64_t>;

class DatabaseState;

/// What a session needs from a cache attached to its database, without depending on the
/// cache layer: the counters to guard fills with, read before an explicit transaction takes
/// its snapshot.
class CacheHook {
  public:
    virtual ~CacheHook() = default;
    /// The counters of `database`'s tables; nullopt when the cache cannot answer (then the
    /// transaction never fills).
    virtual std::optional<CounterSnapshot> snapshot_counters(
        const DatabaseState& database) noexcept = 0;
};

class DatabaseState {
  public:
    explicit DatabaseState(DatabaseConfig config);

    DatabaseState(const DatabaseState&) = delete;
    DatabaseState& operator=(const DatabaseState&) = delete;

    const DatabaseConfig& config() const noexcept { return config_; }

    /// A new connection with the per-connection settings applied.
    std::unique_ptr<SQLite::Database> open_connection() const {
        try {
            return open_raw();
        } catch (const SQLite::Exception& e) {
            // Redacted here, not before the call: opening a session pays nothing for it.
            throw_database_error(e.getErrorCode(), e.getExtendedErrorCode(), e.what(),
                                 "open " + redact_connection_string(path_));
        }
    }

    /// The database's identity in cache keys (see detail/sqlite/database_identity.hpp), computed at
    /// the first call, which may record an id in the database: only databases a cache is
    /// attached to pay for it. Throws ConfigError when it can be neither read nor recorded.
    const std::string& cache_identity() const;

    /// How many commits of this Database's sessions changed `table`: what a read that has no
    /// cache counter to go by (the null backend, a backend that is down) keys its
    /// singleflight with, so that a load that started before a commit is never joined by a
    /// read that starts after it. The counter lives as long as this state; its address is
    /// stable.
    /// Unique among the DatabaseStates of this process, for the whole process's life.
    std::uint64_t serial() const noexcept { return serial_; }

    const std::atomic<std::uint64_t>& table_commits(std::string_view table);

    void report_query(std::string_view sql) const {
        if (config_.on_query)
            config_.on_query(sql);
    }

    std::uint64_t add_listener(CommitListener listener);

    bool remove_listener(std::uint64_t id);

    /// Hands a committed change set to every listener. Runs without holding any lock (the list
    /// is copy-on-write), so a listener may do I/O or register listeners. A listener that
    /// throws does not keep the others from running: the commit has already happened and
    /// cannot be reported as failed, so the exception is dropped here.
    void publish(const ChangeSet& changes) noexcept { publish(changes, {}); }

    /// The outbox rows a commit wrote, one per outbox (see Outbox).
    using OutboxRows = std::vector<std::pair<const Outbox*, std::int64_t>>;

    /// publish() for a commit that wrote outbox rows: each outbox delivers the change set
    /// (noting its row delivered if the cache accepted it) before the listeners run.
    void publish(const ChangeSet& changes, const OutboxRows& rows) noexcept;

    /// Delivers this database's commits to a cache through an outbox from now on (instead of
    /// a commit listener). Creates the table if needed; throws the SQLite error if it cannot.
    /// Not for ":memory:" databases (can_share_caches()).
    void attach_outbox(std::string cache, std::chrono::milliseconds bound, Outbox::Deliver deliver);

    /// The outboxes a commit writes its change set into.
    std::shared_ptr<const std::vector<std::shared_ptr<Outbox>>> outboxes() const {
        std::lock_guard lock(outboxes_mutex_);
        return outboxes_;
    }

    /// Whether other processes can open this database (it is not ":memory:" or a memory URI),
    /// so that its caches may be shared with them.
    bool can_share_caches() const noexcept { return !in_memory_; }

    /// Caches whose snapshot guard sessions take at begin() (held weakly: a manual
    /// CacheManager may go away first).
    void attach_cache(const std::shared_ptr<CacheHook>& hook);

    /// The Database's own cache (its cache_manager()), set once by the Database.
    void set_default_cache(std::shared_ptr<CacheHook> hook) { default_cache_ = std::move(hook); }
    const std::shared_ptr<CacheHook>& default_cache() const noexcept { return default_cache_; }

    std::vector<std::shared_ptr<CacheHook>> caches() const;

    /// Learns where `table`'s primary key is from the schema (not from the C++ mapping: an
    /// existing table may order its columns differently). No-op when the table does not exist.
    void register_table(sqlite3* conn, std::string_view table);

    std::optional<TableInfo> table_info(std::string_view table) const;

    std::uint64_t registry_version() const noexcept {
        return registry_version_.load(std::memory_order_acquire);
    }

  private:
    using OwnedStatement = std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)>;

    /// A one-off statement (not reported to on_query) with the table name bound to ?1.
    static OwnedStatement prepare_for_table(sqlite3* conn, std::string_view sql,
                                            std::string_view table);

    std::unique_ptr<SQLite::Database> open_raw() const;

    using Listeners = std::vector<std::pair<std::uint64_t, std::shared_ptr<const CommitListener>>>;

    static std::uint64_t next_serial() noexcept {
        static std::atomic<std::uint64_t> last{0};
        return last.fetch_add(1, std::memory_order_relaxed) + 1;
    }

    DatabaseConfig config_;
    const std::uint64_t serial_ = next_serial();
    std::string path_;
    bool in_memory_ = false;
    std::unique_ptr<SQLite::Database> keeper_;  // keeps a memdb alive; checks a file opens;
                                                // used by cache_identity() (under identity_once_)
    mutable std::once_flag identity_once_;      // guards identity_ and the use of keeper_
    mutable std::string identity_;

    mutable std::shared_mutex commits_mutex_;  // guards commits_ (the map, not the counters)
    std::unordered_map<std::string, std::unique_ptr<std::atomic<std::uint64_t>>, StringHash,
                       std::equal_to<>>
        commits_;

    mutable std::mutex listeners_mutex_;  // guards listeners_ (the pointer, not the list)
    std::shared_ptr<const Listeners> listeners_ = std::make_shared<const Listeners>();
    std::uint64_t next_listener_id_ = 0;

    std::shared_ptr<CacheHook> default_cache_;
    mutable std::mutex caches_mutex_;  // guards caches_
    std::vector<std::weak_ptr<CacheHook>> caches_;

    mutable std::shared_mutex registry_mutex_;  // guards registry_
    std::unordered_map<std::string, TableInfo, StringHash, std::equal_to<>> registry_;
    std::atomic<std::uint64_t> registry_version_{0};
    mutable std::mutex outboxes_mutex_;  // guards outboxes_ (the pointer, not the list)
    /// Copy-on-write. Last: destroyed first, so that the keepers stop before anything they
    /// open connections with goes.
    std::shared_ptr<const std::vector<std::shared_ptr<Outbox>>> outboxes_ =
        std::make_shared<const std::vector<std::shared_ptr<Outbox>>>();
};

#if ORMCACHE_DEFINITIONS

ORMCACHE_INLINE DatabaseState::DatabaseState(DatabaseConfig config) : config_(std::move(config)) {
    // Until the engine registry exists, SQLite is the only engine a program can have.
    if (engine_kind_of(config_.connection_string) != EngineKind::sqlite)
        throw ConfigError(missing_engine_message(config_.connection_string));
    if (config_.connection_string.empty()) {
        throw ConfigError(
            "DatabaseConfig::connection_string is empty; use a file path, "
            "\":memory:\" or a \"file:\" URI");
    }
    if (config_.busy_timeout.count() < 0) {
        throw ConfigError("DatabaseConfig::busy_timeout must be >= 0 ms, got " +
                          std::to_string(config_.busy_timeout.count()) + " ms");
    }
    if (!config_.cache_identity.empty() && !valid_cache_identity(config_.cache_identity)) {
        throw ConfigError("DatabaseConfig::cache_identity '" + config_.cache_identity +
                          "' must be 1-64 characters of A-Z a-z 0-9 . _ -");
    }
    static std::atomic<std::uint64_t> memory_counter{0};
    if (config_.connection_string == ":memory:") {
        // One in-memory database for every session: a named memdb, kept alive by keeper_.
        // Unlike shared-cache mode it uses ordinary file locking, so busy_timeout applies.
        path_ = "file:/ormcache-memdb-" + std::to_string(++memory_counter) + "?vfs=memdb";
        in_memory_ = true;
    } else {
        path_ = config_.connection_string;
        in_memory_ = path_.find("mode=memory") != std::string::npos;
    }
    try {
        keeper_ = open_raw();
        if (!in_memory_) {
            // WAL is persistent in the file: set it once, here, before any session exists.
            keeper_->exec("PRAGMA journal_mode = WAL");
        }
    } catch (const SQLite::Exception& e) {
        throw ConfigError("DatabaseConfig::connection_string '" +
                          redact_connection_string(config_.connection_string) +
                          "' cannot be opened: " + e.what());
    }
}

ORMCACHE_INLINE const std::string& DatabaseState::cache_identity() const {
    std::call_once(identity_once_, [&] {
        identity_ =
            !config_.cache_identity.empty()
                ? config_.cache_identity
                : sqlite_database_identity(*keeper_, in_memory_,
                                           redact_connection_string(config_.connection_string));
    });
    return identity_;
}

ORMCACHE_INLINE const std::atomic<std::uint64_t>& DatabaseState::table_commits(
    std::string_view table) {
    {
        std::shared_lock lock(commits_mutex_);
        if (const auto it = commits_.find(table); it != commits_.end())
            return *it->second;
    }
    std::unique_lock lock(commits_mutex_);
    auto& slot = commits_[std::string(table)];
    if (!slot)
        slot = std::make_unique<std::atomic<std::uint64_t>>(0);
    return *slot;
}

ORMCACHE_INLINE std::uint64_t DatabaseState::add_listener(CommitListener listener) {
    std::lock_guard lock(listeners_mutex_);
    const std::uint64_t id = ++next_listener_id_;
    auto next = std::make_shared<Listeners>(*listeners_);
    next->emplace_back(id, std::make_shared<const CommitListener>(std::move(listener)));
    listeners_ = std::move(next);
    return id;
}

ORMCACHE_INLINE bool DatabaseState::remove_listener(std::uint64_t id) {
    std::lock_guard lock(listeners_mutex_);
    auto next = std::make_shared<Listeners>(*listeners_);
    const auto removed = std::erase_if(*next, [&](const auto& p) { return p.first == id; });
    listeners_ = std::move(next);
    return removed > 0;
}

ORMCACHE_INLINE void DatabaseState::attach_outbox(std::string cache,
                                                  std::chrono::milliseconds bound,
                                                  Outbox::Deliver deliver) {
    auto outbox = std::make_shared<Outbox>([this] { return open_connection(); }, std::move(cache),
                                           bound, std::move(deliver));
    std::lock_guard lock(outboxes_mutex_);
    // Commits in progress may hold the current list: replace it, never change it.
    auto next = std::make_shared<std::vector<std::shared_ptr<Outbox>>>(*outboxes_);
    next->push_back(std::move(outbox));
    outboxes_ = std::move(next);
}

ORMCACHE_INLINE void DatabaseState::publish(const ChangeSet& changes,
                                            const OutboxRows& rows) noexcept {
    {
        // Before the listeners: a read that starts once commit() has returned must not
        // join a load that started before it, whether or not a cache listens.
        std::shared_lock lock(commits_mutex_);
        for (const auto& table : changes.tables()) {
            if (const auto it = commits_.find(table); it != commits_.end())
                it->second->fetch_add(1, std::memory_order_release);
        }
    }
    for (const auto& outbox : *outboxes()) {
        std::optional<std::int64_t> row;
        for (const auto& [owner, id] : rows) {
            if (owner == outbox.get())
                row = id;
        }
        outbox->deliver(row, changes);
    }
    std::shared_ptr<const Listeners> current;
    {
        std::lock_guard lock(listeners_mutex_);
        current = listeners_;
    }
    for (const auto& [id, listener] : *current) {
        try {
            (*listener)(changes);
        } catch (...) {
        }
    }
}

ORMCACHE_INLINE void DatabaseState::attach_cache(const std::shared_ptr<CacheHook>& hook) {
    std::lock_guard lock(caches_mutex_);
    std::erase_if(caches_, [](const auto& w) { return w.expired(); });
    caches_.push_back(hook);
}

ORMCACHE_INLINE std::vector<std::shared_ptr<CacheHook>> DatabaseState::caches() const {
    std::lock_guard lock(caches_mutex_);
    std::vector<std::shared_ptr<CacheHook>> out;
    for (const auto& w : caches_) {
        if (auto hook = w.lock())
            out.push_back(std::move(hook));
    }
    return out;
}

ORMCACHE_INLINE void DatabaseState::register_table(sqlite3* conn, std::string_view table) {
    {
        std::shared_lock lock(registry_mutex_);
        if (registry_.find(table) != registry_.end())
            return;
    }
    static constexpr std::string_view sql = "SELECT cid, type, pk FROM pragma_table_info(?)";
    const auto guard = prepare_for_table(conn, sql, table);
    sqlite3_stmt* stmt = guard.get();
    int pk_columns = 0;
    TableInfo info;
    int rc;
    while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
        if (sqlite3_column_int(stmt, 2) > 0) {
            ++pk_columns;
            info.pk_column = sqlite3_column_int(stmt, 0);
            const auto* type = reinterpret_cast<const char*>(sqlite3_column_text(stmt, 1));
            info.rowid_alias = type != nullptr && iequals(type, "INTEGER");
        }
    }
    check(conn, rc, sql);
    if (pk_columns != 1)
        return;  // missing table, or no single-column key to name rows by
    if (info.rowid_alias) {
        // An INTEGER key is the rowid unless SQLite gave it an index of its own: WITHOUT
        // ROWID tables (whose preupdate rowids are undefined) and INTEGER PRIMARY KEY DESC.
        static constexpr std::string_view pk_index =
            "SELECT 1 FROM pragma_index_list(?) WHERE origin = 'pk'";
        const auto ix_guard = prepare_for_table(conn, pk_index, table);
        sqlite3_stmt* ix = ix_guard.get();
        rc = sqlite3_step(ix);
        check(conn, rc, pk_index);
        info.rowid_alias = rc != SQLITE_ROW;
    }
    std::unique_lock lock(registry_mutex_);
    registry_.emplace(std::string(table), info);
    registry_version_.fetch_add(1, std::memory_order_release);
}

ORMCACHE_INLINE std::optional<TableInfo> DatabaseState::table_info(std::string_view table) const {
    std::shared_lock lock(registry_mutex_);
    const auto it = registry_.find(table);
    if (it == registry_.end())
        return std::nullopt;
    return it->second;
}

ORMCACHE_INLINE DatabaseState::OwnedStatement DatabaseState::prepare_for_table(
    sqlite3* conn, std::string_view sql, std::string_view table) {
    sqlite3_stmt* stmt = nullptr;
    const int rc = sqlite3_prepare_v2(conn, sql.data(), int(sql.size()), &stmt, nullptr);
    OwnedStatement owned(stmt, sqlite3_finalize);
    check(conn, rc, sql);
    sqlite3_bind_text(stmt, 1, table.data(), int(table.size()), SQLITE_TRANSIENT);
    return owned;
}

ORMCACHE_INLINE std::unique_ptr<SQLite::Database> DatabaseState::open_raw() const {
    const int flags =
        SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE | SQLite::OPEN_URI | SQLite::OPEN_NOMUTEX;
    auto db = std::make_unique<SQLite::Database>(path_, flags,
                                                 static_cast<int>(config_.busy_timeout.count()));
    db->exec("PRAGMA foreign_keys = ON");
    return db;
}

#endif  // ORMCACHE_DEFINITIONS

}  // namespace ormcache::detail
