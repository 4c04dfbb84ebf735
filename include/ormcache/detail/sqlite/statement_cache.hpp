#pragma once
// Prepared statements of one connection, keyed by SQL text and reused across calls.
// Not thread-safe (one per session). A statement that is already checked out (re-entrant use) is
// prepared afresh for the second checkout, so a checkout never sees another's bindings.

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>

#include "../../errors.hpp"
#include "../util/linkage.hpp"
#include "../util/string_hash.hpp"
#include "sqlite_error.hpp"

namespace ormcache::detail {

class StatementCache {
    struct Entry {
        sqlite3_stmt* stmt = nullptr;
        std::uint64_t last_used = 0;
        bool in_use = false;
    };

  public:
    /// A statement checked out of the cache; reset (bindings cleared) when the checkout ends.
    class Checkout {
      public:
        Checkout(const Checkout&) = delete;
        Checkout& operator=(const Checkout&) = delete;
        Checkout(Checkout&& other) noexcept
            : stmt_(std::exchange(other.stmt_, nullptr)),
              entry_(std::exchange(other.entry_, nullptr)),
              sql_(other.sql_) {}
        Checkout& operator=(Checkout&&) = delete;
        ~Checkout() {
            if (stmt_ == nullptr)
                return;
            sqlite3_reset(stmt_);
            sqlite3_clear_bindings(stmt_);
            if (entry_ != nullptr) {
                entry_->in_use = false;
            } else {
                sqlite3_finalize(stmt_);
            }
        }

        sqlite3_stmt* get() const noexcept { return stmt_; }
        std::string_view sql() const noexcept { return sql_; }

      private:
        friend class StatementCache;
        Checkout(sqlite3_stmt* stmt, Entry* entry, std::string_view sql)
            : stmt_(stmt), entry_(entry), sql_(sql) {}
        sqlite3_stmt* stmt_;
        Entry* entry_;  // null for a one-off statement, finalized at the end of the checkout
        std::string_view sql_;
    };

    explicit StatementCache(sqlite3* db, std::size_t capacity = 256)
        : db_(db), capacity_(capacity) {}
    StatementCache(const StatementCache&) = delete;
    StatementCache& operator=(const StatementCache&) = delete;
    ~StatementCache() { clear(); }

    /// Finalizes every cached statement (none may be checked out).
    void clear() noexcept {
        for (auto& [sql, entry] : entries_)
            sqlite3_finalize(entry.stmt);
        entries_.clear();
    }

    Checkout acquire(std::string_view sql);

  private:
    sqlite3_stmt* prepare(std::string_view sql);

    void evict_one();

    sqlite3* db_;
    std::size_t capacity_;
    std::uint64_t tick_ = 0;
    // Node-based: Entry addresses stay valid while checked out, whatever is inserted.
    std::unordered_map<std::string, Entry, StringHash, std::equal_to<>> entries_;
};

#if ORMCACHE_DEFINITIONS

ORMCACHE_INLINE StatementCache::Checkout StatementCache::acquire(std::string_view sql) {
    auto it = entries_.find(sql);
    if (it != entries_.end()) {
        Entry& entry = it->second;
        if (!entry.in_use) {
            entry.in_use = true;
            entry.last_used = ++tick_;
            return Checkout(entry.stmt, &entry, it->first);
        }
        return Checkout(prepare(sql), nullptr, it->first);
    }
    sqlite3_stmt* stmt = prepare(sql);
    if (entries_.size() >= capacity_)
        evict_one();
    auto [pos, inserted] = entries_.emplace(std::string(sql), Entry{stmt, ++tick_, true});
    return Checkout(stmt, &pos->second, pos->first);
}

ORMCACHE_INLINE sqlite3_stmt* StatementCache::prepare(std::string_view sql) {
    sqlite3_stmt* stmt = nullptr;
    const char* tail = nullptr;
    const int rc = sqlite3_prepare_v3(db_, sql.data(), static_cast<int>(sql.size()),
                                      SQLITE_PREPARE_PERSISTENT, &stmt, &tail);
    if (rc != SQLITE_OK) {
        sqlite3_finalize(stmt);
        throw_from_handle(db_, rc, sql);
    }
    if (stmt == nullptr) {
        throw QueryError("empty SQL statement: '" + std::string(sql) + "'");
    }
    // What follows may only be empty statements: whitespace, ';' and comments, from which
    // SQLite prepares nothing. Anything else is a second statement.
    const char* const end = sql.data() + sql.size();
    for (const char* p = tail; p != nullptr && p < end;) {
        sqlite3_stmt* next = nullptr;
        const char* rest = nullptr;
        const int next_rc = sqlite3_prepare_v2(db_, p, static_cast<int>(end - p), &next, &rest);
        if (next_rc != SQLITE_OK || next != nullptr || rest == nullptr || rest <= p) {
            sqlite3_finalize(next);
            sqlite3_finalize(stmt);
            throw QueryError(
                "execute() runs exactly one statement; use session.connection().exec() for a "
                "script: '" +
                std::string(sql) + "'");
        }
        p = rest;
    }
    return stmt;
}

ORMCACHE_INLINE void StatementCache::evict_one() {
    auto victim = entries_.end();
    for (auto it = entries_.begin(); it != entries_.end(); ++it) {
        if (!it->second.in_use &&
            (victim == entries_.end() || it->second.last_used < victim->second.last_used)) {
            victim = it;
        }
    }
    if (victim != entries_.end()) {
        sqlite3_finalize(victim->second.stmt);
        entries_.erase(victim);
    }
}

#endif  // ORMCACHE_DEFINITIONS

}  // namespace ormcache::detail
