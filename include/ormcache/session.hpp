#pragma once
// Session: one SQLite connection, its transaction and its change journal.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "detail/sqlite/session_state.hpp"
#include "errors.hpp"
#include "transaction.hpp"

namespace ormcache {

template <class T>
class Repository;
class Database;

namespace detail {

template <class A>
void bind_argument(Query& q, int index, const A& value) {
    if constexpr (std::is_same_v<A, std::nullptr_t> || std::is_same_v<A, std::nullopt_t>) {
        q.bind_null(index);
    } else if constexpr (std::is_convertible_v<const A&, std::string_view> &&
                         !std::is_same_v<A, std::string>) {
        q.bind(index, std::string(std::string_view(value)));
    } else {
        static_assert(ColumnType<A>,
                      "Session::execute: unsupported parameter type (use a column type, a string "
                      "literal, nullptr or std::nullopt)");
        q.bind(index, value);
    }
}

}  // namespace detail

/// A unit of work on its own SQLite connection. Move-only. Not thread-safe: use one session
/// per thread (a Database hands out any number).
///
/// A transaction begins lazily at the first write (BEGIN IMMEDIATE), or explicitly with
/// begin() (then every read sees one snapshot until commit/rollback). Destroying a session
/// with an open transaction rolls it back.
class Session {
  public:
    Session(Session&&) noexcept = default;
    Session& operator=(Session&& other) noexcept {
        if (this != &other) {
            close();
            state_ = std::move(other.state_);
        }
        return *this;
    }
    Session(const Session&) = delete;
    Session& operator=(const Session&) = delete;
    ~Session() { close(); }

    /// BEGIN an explicit transaction; its reads see one snapshot, taken now.
    /// Throws DatabaseError if a transaction is already open.
    void begin() {
        state().enter();
        state_->begin();
    }

    /// COMMIT; a no-op without an open transaction. After the database commit succeeded, the
    /// change set goes to the db.on_commit listeners (the cache among them).
    void commit() {
        state().enter();
        state_->commit();
    }

    /// ROLLBACK; a no-op without an open transaction. Discards the change journal.
    void rollback() {
        state().enter();
        state_->rollback();
    }

    bool in_transaction() const { return state_ && state_->in_transaction(); }

    /// SAVEPOINT (beginning a transaction first if none is open).
    [[nodiscard]] Savepoint begin_nested() {
        state().enter();
        auto name = state_->savepoint();
        return Savepoint(state_, std::move(name));
    }

    /// Runs one SQL statement with bound parameters and returns the number of rows it changed.
    /// A statement that writes begins the session's transaction first, as repository writes do.
    template <class... Args>
    std::int64_t execute(std::string_view sql, const Args&... args) {
        state().enter();
        auto q = state_->query(sql);
        const int expected = sqlite3_bind_parameter_count(q.stmt());
        if (expected != static_cast<int>(sizeof...(Args))) {
            throw QueryError("execute(): the statement has " + std::to_string(expected) +
                             " parameter(s) but " + std::to_string(sizeof...(Args)) +
                             " value(s) were given: " + std::string(sql));
        }
        int index = 0;
        (detail::bind_argument(q, ++index, args), ...);
        if (!sqlite3_stmt_readonly(q.stmt()) && !detail::is_connection_statement(sql)) {
            state_->begin_write();
        }
        const auto before = sqlite3_total_changes64(state_->handle());
        q.run();
        // sqlite3_changes64() keeps the count of the last INSERT/UPDATE/DELETE across
        // statements that change no rows (SELECT, DDL, ...): those changed nothing.
        if (sqlite3_total_changes64(state_->handle()) == before)
            return 0;
        return sqlite3_changes64(state_->handle());
    }

    /// The session's own SQLiteCpp connection. Writes made through it are journaled like any
    /// other (do not replace its hooks or authorizer: the journal lives on them).
    SQLite::Database& connection() {
        state().enter();
        return state_->connection();
    }

    /// Whether this session has uncommitted changes to `table`.
    bool has_changes(std::string_view table) const { return state_ && state_->dirty(table); }

  private:
    friend class Database;
    template <class T>
    friend class Repository;

    explicit Session(std::shared_ptr<detail::DatabaseState> db)
        : state_(std::make_shared<detail::SessionState>(std::move(db))) {}

    detail::SessionState& state() const {
        if (!state_)
            throw Error("the session was moved from");
        return *state_;
    }

    void close() noexcept {
        if (state_)
            state_->close();
        state_.reset();
    }

    std::shared_ptr<detail::SessionState> state_;
};

}  // namespace ormcache
