#pragma once
// One session's connection and everything hooked onto it. SQLite's hooks on the connection
// feed the change journal with every row written through it, whoever ran the statement:
//
//  - preupdate hook: each inserted, updated or deleted row, with old and new primary key
//    (cascades, triggers and INSERT OR REPLACE's deletions included);
//  - authorizer: returns SQLITE_IGNORE for SQLITE_DELETE, which turns off the truncate
//    optimisation so that even `DELETE FROM t` names its rows to the preupdate hook;
//  - trace (statement start): follows SAVEPOINT / RELEASE / ROLLBACK TO by name, raw or not,
//    records DROP/ALTER TABLE as whole-table changes, and settles a pending commit;
//  - commit hook: marks the journal "commit pending" (the commit may still fail, e.g. BUSY);
//  - rollback hook: discards the journal;
//  - WAL hook: runs right after a commit has succeeded and its lock is released, and
//    delivers the journal to the commit listeners (it replaces SQLite's auto-checkpoint
//    hook, so it checkpoints the same way).
//
// Databases without WAL (":memory:") have no post-commit hook: a pending commit is settled
// when Session::commit() returns, at the start of the connection's next statement, or at the
// next call on the session, whichever comes first.
//
// Not thread-safe: a session and its repositories belong to one thread at a time.

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "../../errors.hpp"
#include "../orm/change_journal.hpp"
#include "../orm/column_traits.hpp"
#include "../orm/sql_text.hpp"
#include "../util/linkage.hpp"
#include "database_state.hpp"
#include "sqlite_error.hpp"
#include "statement_cache.hpp"

namespace ormcache::detail {

class SessionState;

/// A checked-out statement being bound and stepped; reports itself to on_query on its first step.
class Query {
  public:
    Query(StatementCache::Checkout checkout, SessionState& session)
        : checkout_(std::move(checkout)), session_(&session) {}

    sqlite3_stmt* stmt() const noexcept { return checkout_.get(); }
    std::string_view sql() const noexcept { return checkout_.sql(); }

    template <ColumnType V>
    void bind(int index, const V& value) {
        check_bind(bind_value(checkout_.get(), index, value));
    }
    void bind_null(int index) { check_bind(sqlite3_bind_null(checkout_.get(), index)); }

    /// true: a row is ready; false: done. Throws the mapped error.
    bool step();

    /// Steps to the end, ignoring rows.
    void run() {
        while (step()) {
        }
    }

  private:
    void check_bind(int rc);

    StatementCache::Checkout checkout_;
    SessionState* session_;
    bool started_ = false;
};

class SessionState {
  public:
    explicit SessionState(std::shared_ptr<DatabaseState> db);

    SessionState(const SessionState&) = delete;
    SessionState& operator=(const SessionState&) = delete;
    ~SessionState() { close(); }

    /// Rolls back an open transaction, delivers a commit still pending, closes the connection.
    void close() noexcept;

    bool is_open() const noexcept { return conn_ != nullptr; }

    /// Every public entry point starts here: fails on a closed session and settles a commit
    /// that raw SQL left pending.
    void enter();

    sqlite3* handle() const noexcept { return handle_; }
    SQLite::Database& connection() { return *conn_; }
    DatabaseState& database() noexcept { return *db_; }
    const std::shared_ptr<DatabaseState>& database_ptr() const noexcept { return db_; }
    const ChangeJournal& journal() const noexcept { return journal_; }

    Query query(std::string_view sql) { return Query(statements_->acquire(sql), *this); }
    void run(std::string_view sql) { query(sql).run(); }

    bool in_transaction() const noexcept {
        return handle_ != nullptr && sqlite3_get_autocommit(handle_) == 0;
    }

    /// How the open transaction began, which decides how its reads may fill the cache.
    enum class TxnKind {
        none,       ///< autocommit: each statement reads the latest committed state
        immediate,  ///< BEGIN IMMEDIATE by the library: holds the write lock, so no commit
                    ///< can land between its reads; they see the latest committed state
        snapshot,   ///< begin(): reads see the snapshot taken at begin()
        unknown,    ///< begun by raw SQL: nothing is known of its snapshot
    };

    TxnKind txn_kind() const noexcept {
        if (!in_transaction())
            return TxnKind::none;
        return txn_kind_ == TxnKind::none ? TxnKind::unknown : txn_kind_;
    }

    /// The counters `hook` had before this session's begin() took its snapshot, if read.
    const CounterSnapshot* snapshot_guard(const CacheHook* hook) const noexcept {
        if (txn_kind() != TxnKind::snapshot)
            return nullptr;
        for (const auto& [h, snapshot] : guards_) {
            if (h == hook)
                return snapshot ? &*snapshot : nullptr;
        }
        return nullptr;
    }

    /// Lazy transaction start before a write. IMMEDIATE takes the write lock now, so two
    /// writers never deadlock upgrading a read lock (one waits up to busy_timeout instead).
    void begin_write();

    /// Explicit transaction: reads until commit/rollback see one snapshot, taken here.
    void begin();

    void commit();

    void rollback();

    /// SAVEPOINT inside the current transaction (a write transaction is begun first, so that
    /// releasing the savepoint never commits by itself). Returns its name.
    std::string savepoint();
    void release(const std::string& name) { run("RELEASE SAVEPOINT " + name); }
    void rollback_to(const std::string& name) {
        run("ROLLBACK TO SAVEPOINT " + name);
        run("RELEASE SAVEPOINT " + name);
    }

    /// Uncommitted changes to `table` exist in this session (read-your-writes).
    bool dirty(std::string_view table) const {
        // A commit that succeeded but is not delivered yet (raw COMMIT on ":memory:") has
        // left nothing uncommitted.
        if (commit_pending_ && !in_transaction())
            return false;
        return journal_.touches(table);
    }

    void register_table(std::string_view table) { db_->register_table(handle_, table); }

    /// Delivers a commit that has happened; forgets one that failed with the transaction
    /// still open. Called wherever the outcome has become known.
    void settle() noexcept;

  private:
    /// How the hook names `name`'s rows: the registry's answer for model tables; for other
    /// tables the rowid, unless the table has none (WITHOUT ROWID: the hook's rowid arguments
    /// are undefined), which is told by asking SQLite's C API for its "rowid" column (no SQL
    /// runs, so the statement executing the hook is undisturbed). Cached per session.
    std::optional<TableInfo> table_info(const char* schema, const char* table,
                                        const std::string& name);

    static PrimaryKey key_of(sqlite3_value* v);

    static void on_preupdate(void* ctx, sqlite3* db, int op, const char* schema, const char* table,
                             sqlite3_int64 old_rowid, sqlite3_int64 new_rowid) noexcept;

    void end_transaction() noexcept {
        txn_kind_ = TxnKind::none;
        guards_.clear();
    }

    /// Writes the journal into every outbox of the database, in the open transaction, right
    /// before COMMIT (detail/sqlite/outbox.hpp). Not reported to on_query: ormcache's own
    /// bookkeeping, like the hooks.
    void write_outbox();

    /// Takes back the rows write_outbox() wrote when COMMIT failed and left the transaction
    /// open: the next commit() writes them again with whatever it changes meanwhile.
    void unwrite_outbox() noexcept;

    static int on_commit(void* ctx) noexcept {
        auto* self = static_cast<SessionState*>(ctx);
        self->commit_pending_ = true;
        // Whether or not this commit succeeds, what is known of the transaction's start no
        // longer holds for whatever runs next (a failed commit's transaction reads as unknown).
        self->end_transaction();
        return 0;
    }

    static void on_rollback(void* ctx) noexcept {
        auto* self = static_cast<SessionState*>(ctx);
        self->commit_pending_ = false;
        self->end_transaction();
        self->journal_.clear();
        self->outbox_rows_.clear();
    }

    static int on_wal(void* ctx, sqlite3* db, const char* schema, int frames) noexcept {
        static_cast<SessionState*>(ctx)->settle();
        // Replaces sqlite3_wal_autocheckpoint's hook: same default threshold, same call.
        if (frames >= 1000)
            sqlite3_wal_checkpoint_v2(db, schema, SQLITE_CHECKPOINT_PASSIVE, nullptr, nullptr);
        return SQLITE_OK;
    }

    static int on_trace(unsigned type, void* ctx, void* /*stmt*/, void* sql_text) noexcept;

    static int on_authorize(void* ctx, int action, const char* table, const char*, const char*,
                            const char*) noexcept;

    std::shared_ptr<DatabaseState> db_;
    std::unique_ptr<SQLite::Database> conn_;
    sqlite3* handle_;
    std::unique_ptr<StatementCache> statements_;  // finalized before conn_ closes
    ChangeJournal journal_;
    /// The outbox rows the open transaction's commit() wrote (delivered with its change set).
    DatabaseState::OutboxRows outbox_rows_;
    bool commit_pending_ = false;
    TxnKind txn_kind_ = TxnKind::none;
    std::vector<std::pair<const CacheHook*, std::optional<CounterSnapshot>>> guards_;
    int last_auth_action_ = 0;  // the authorizer's previous action code
    std::uint64_t savepoint_counter_ = 0;
    std::unordered_map<std::string, std::optional<TableInfo>> table_cache_;
    std::uint64_t table_cache_version_ = static_cast<std::uint64_t>(-1);
};

#if ORMCACHE_DEFINITIONS

ORMCACHE_INLINE SessionState::SessionState(std::shared_ptr<DatabaseState> db)
    : db_(std::move(db)),
      conn_(db_->open_connection()),
      handle_(conn_->getHandle()),
      statements_(std::make_unique<StatementCache>(handle_)) {
    sqlite3_preupdate_hook(handle_, &on_preupdate, this);
    sqlite3_commit_hook(handle_, &on_commit, this);
    sqlite3_rollback_hook(handle_, &on_rollback, this);
    sqlite3_wal_hook(handle_, &on_wal, this);
    sqlite3_trace_v2(handle_, SQLITE_TRACE_STMT, &on_trace, this);
    sqlite3_set_authorizer(handle_, &on_authorize, this);
}

ORMCACHE_INLINE void SessionState::close() noexcept {
    if (conn_ == nullptr)
        return;
    settle();
    if (in_transaction()) {
        try {
            run("ROLLBACK");
        } catch (...) {
            // Closing must not throw; SQLite rolls back on close anyway.
        }
    }
    settle();
    journal_.clear();
    statements_.reset();
    sqlite3_preupdate_hook(handle_, nullptr, nullptr);
    sqlite3_commit_hook(handle_, nullptr, nullptr);
    sqlite3_rollback_hook(handle_, nullptr, nullptr);
    sqlite3_wal_hook(handle_, nullptr, nullptr);
    sqlite3_trace_v2(handle_, 0, nullptr, nullptr);
    sqlite3_set_authorizer(handle_, nullptr, nullptr);
    conn_.reset();
    handle_ = nullptr;
}

ORMCACHE_INLINE void SessionState::enter() {
    if (conn_ == nullptr)
        throw Error("the session is closed");
    settle();
}

ORMCACHE_INLINE void SessionState::begin_write() {
    if (in_transaction())
        return;
    run("BEGIN IMMEDIATE");
    txn_kind_ = TxnKind::immediate;
    guards_.clear();
}

ORMCACHE_INLINE void SessionState::begin() {
    // The caches' counters are read before the snapshot exists, so a commit landing
    // between the two only makes the guard stricter (docs/reference.md, cache rule 6).
    std::vector<std::pair<const CacheHook*, std::optional<CounterSnapshot>>> guards;
    for (const auto& hook : db_->caches())
        guards.emplace_back(hook.get(), hook->snapshot_counters(*db_));
    run("BEGIN");
    // BEGIN is deferred: SQLite takes the read snapshot at the first read. Read now so
    // the snapshot is the one of begin(), not of some later statement.
    run("PRAGMA schema_version");
    txn_kind_ = TxnKind::snapshot;
    guards_ = std::move(guards);
}

ORMCACHE_INLINE void SessionState::commit() {
    if (!in_transaction())
        return;
    write_outbox();
    try {
        run("COMMIT");
    } catch (...) {
        // COMMIT failed. If SQLite rolled back, the rollback hook already cleared the
        // journal; if the transaction is still open (SQLITE_BUSY), its records stay.
        commit_pending_ = false;
        if (in_transaction())
            unwrite_outbox();
        throw;
    }
    end_transaction();
    settle();
}

ORMCACHE_INLINE void SessionState::rollback() {
    if (!in_transaction())
        return;
    run("ROLLBACK");
    journal_.clear();
    end_transaction();
}

ORMCACHE_INLINE std::string SessionState::savepoint() {
    begin_write();
    std::string name = "ormcache_sp_" + std::to_string(++savepoint_counter_);
    run("SAVEPOINT " + name);
    return name;
}

ORMCACHE_INLINE void SessionState::settle() noexcept {
    if (!commit_pending_)
        return;
    commit_pending_ = false;
    if (in_transaction())
        return;  // the commit failed (SQLITE_BUSY): records stay
    ChangeSet changes = journal_.take();
    const DatabaseState::OutboxRows rows = std::exchange(outbox_rows_, {});
    if (!changes.empty())
        db_->publish(changes, rows);
}

ORMCACHE_INLINE void SessionState::write_outbox() {
    outbox_rows_.clear();
    if (journal_.empty())
        return;
    const auto outboxes = db_->outboxes();
    if (outboxes->empty())
        return;
    const std::string changes = change_set_to_json(journal_.peek());
    const std::int64_t now = Outbox::now_ms();
    for (const auto& outbox : *outboxes) {
        auto insert = statements_->acquire(Outbox::insert_sql);
        const auto check = [&](int rc) {
            if (rc != SQLITE_OK && rc != SQLITE_DONE)
                throw_from_handle(handle_, rc, Outbox::insert_sql);
        };
        check(bind_value(insert.get(), 1, outbox->cache()));
        check(bind_value(insert.get(), 2, now));
        check(bind_value(insert.get(), 3, changes));
        check(sqlite3_step(insert.get()));
        outbox_rows_.emplace_back(outbox.get(), sqlite3_last_insert_rowid(handle_));
    }
}

ORMCACHE_INLINE void SessionState::unwrite_outbox() noexcept {
    for (const auto& [outbox, id] : std::exchange(outbox_rows_, {})) {
        try {
            auto remove = statements_->acquire(Outbox::delete_sql);
            bind_value(remove.get(), 1, id);
            sqlite3_step(remove.get());
        } catch (...) {
            // The row stays: its change set is delivered once more, which costs a miss.
        }
    }
}

ORMCACHE_INLINE std::optional<TableInfo> SessionState::table_info(const char* schema,
                                                                  const char* table,
                                                                  const std::string& name) {
    const auto version = db_->registry_version();
    if (version != table_cache_version_) {
        table_cache_.clear();
        table_cache_version_ = version;
    }
    auto it = table_cache_.find(name);
    if (it == table_cache_.end()) {
        std::optional<TableInfo> info = db_->table_info(name);
        if (!info &&
            sqlite3_table_column_metadata(handle_, schema, table, "rowid", nullptr, nullptr,
                                          nullptr, nullptr, nullptr) != SQLITE_OK) {
            info = TableInfo{-1, false};  // no rowid and no registered key: whole table
        }
        it = table_cache_.emplace(name, info).first;
    }
    return it->second;
}

ORMCACHE_INLINE PrimaryKey SessionState::key_of(sqlite3_value* v) {
    switch (sqlite3_value_type(v)) {
        case SQLITE_INTEGER:
            return sqlite3_value_int64(v);
        case SQLITE_NULL:
            return std::monostate{};
        default: {
            const auto* text = reinterpret_cast<const char*>(sqlite3_value_text(v));
            return std::string(text != nullptr ? text : "",
                               static_cast<std::size_t>(sqlite3_value_bytes(v)));
        }
    }
}

ORMCACHE_INLINE void SessionState::on_preupdate(void* ctx, sqlite3* db, int op, const char* schema,
                                                const char* table, sqlite3_int64 old_rowid,
                                                sqlite3_int64 new_rowid) noexcept {
    auto* self = static_cast<SessionState*>(ctx);
    if (std::string_view(schema) == "main" && std::string_view(table) == Outbox::table)
        return;  // ormcache's own bookkeeping, not a change of the application's data
    Change change;
    change.table =
        std::string_view(schema) == "main" ? std::string(table) : std::string(schema) + "." + table;
    change.operation = op == SQLITE_INSERT   ? Operation::insert
                       : op == SQLITE_DELETE ? Operation::remove
                                             : Operation::update;
    const auto info = self->table_info(schema, table, change.table);
    if (info && info->pk_column < 0) {
        change.operation = Operation::whole_table;
    } else if (!info || info->rowid_alias) {
        if (op != SQLITE_INSERT)
            change.old_key = old_rowid;
        if (op != SQLITE_DELETE)
            change.new_key = new_rowid;
    } else {
        sqlite3_value* v = nullptr;
        if (op != SQLITE_INSERT && sqlite3_preupdate_old(db, info->pk_column, &v) == SQLITE_OK)
            change.old_key = key_of(v);
        if (op != SQLITE_DELETE && sqlite3_preupdate_new(db, info->pk_column, &v) == SQLITE_OK)
            change.new_key = key_of(v);
    }
    self->journal_.record(std::move(change));
}

ORMCACHE_INLINE int SessionState::on_trace(unsigned type, void* ctx, void* /*stmt*/,
                                           void* sql_text) noexcept {
    if (type != SQLITE_TRACE_STMT)
        return 0;
    auto* self = static_cast<SessionState*>(ctx);
    self->settle();
    const char* sql = static_cast<const char*>(sql_text);
    if (sql == nullptr)
        return 0;
    using Kind = StatementEffect::Kind;
    auto effect = classify_statement(sql);
    switch (effect.kind) {
        case Kind::none:
            break;
        case Kind::savepoint:
            self->journal_.savepoint(std::move(effect.name));
            break;
        case Kind::release:
            self->journal_.release(effect.name);
            break;
        case Kind::rollback_to:
            self->journal_.rollback_to(effect.name);
            break;
        case Kind::whole_table:
            self->journal_.record(Change{effect.name, Operation::whole_table, {}, {}});
            if (!effect.second_name.empty()) {
                self->journal_.record(Change{effect.second_name, Operation::whole_table, {}, {}});
            }
            break;
    }
    return 0;
}

ORMCACHE_INLINE int SessionState::on_authorize(void* ctx, int action, const char* table,
                                               const char*, const char*, const char*) noexcept {
    auto* self = static_cast<SessionState*>(ctx);
    const int previous = std::exchange(self->last_auth_action_, action);
    // SQLITE_IGNORE on SQLITE_DELETE keeps the DELETE but disables the truncate
    // optimisation, so every deleted row passes the preupdate hook.
    // DROP TABLE/VIEW also asks for SQLITE_DELETE on the dropped object, right after its
    // SQLITE_DROP_* code, and silently skips the drop on anything but SQLITE_OK.
    const bool dropping = previous == SQLITE_DROP_TABLE || previous == SQLITE_DROP_TEMP_TABLE ||
                          previous == SQLITE_DROP_VIEW || previous == SQLITE_DROP_TEMP_VIEW ||
                          previous == SQLITE_DROP_VTABLE;
    if (action == SQLITE_DELETE && !dropping && table != nullptr &&
        std::string_view(table).substr(0, 7) != "sqlite_") {
        return SQLITE_IGNORE;
    }
    return SQLITE_OK;
}

#endif  // ORMCACHE_DEFINITIONS

inline bool Query::step() {
    if (!started_) {
        started_ = true;
        session_->database().report_query(checkout_.sql());
    }
    const int rc = sqlite3_step(checkout_.get());
    if (rc == SQLITE_ROW)
        return true;
    if (rc == SQLITE_DONE)
        return false;
    throw_from_handle(session_->handle(), rc, checkout_.sql());
}

inline void Query::check_bind(int rc) {
    if (rc != SQLITE_OK)
        throw_from_handle(session_->handle(), rc, checkout_.sql());
}

}  // namespace ormcache::detail
