#pragma once
// Connections of the file backend (backends/file.hpp) to its own SQLite cache file, and the
// pool (detail/util/connection_pool.hpp) that hands them out. A SQLite connection must not be used
// by two threads at once, so each operation checks one out of the pool and gives it back when done.
//
// fork(): a connection must never be used, nor closed, in a child process (closing it there
// could checkpoint and delete the WAL the parent still writes to, because the child does not
// hold the parent's locks). The pool tells inherited connections apart by a generation counted
// in a pthread_atfork child handler and abandons them in the child without closing them.

#include <pthread.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <utility>

#include "../../errors.hpp"
#include "../cache/backend_error.hpp"
#include "../sqlite/sqlite_api.hpp"
#include "../sqlite/sqlite_error.hpp"
#include "../sqlite/statement_cache.hpp"
#include "../util/connection_pool.hpp"

namespace ormcache::detail {

/// How many fork()s this process is removed from the one that first asked (0 in a process
/// that never forked since). Lock-free: read on every checkout.
inline std::uint64_t fork_generation() noexcept {
    static std::atomic<std::uint64_t> generation{0};
    static const bool registered = [] {
        ::pthread_atfork(nullptr, nullptr,
                         [] { generation.fetch_add(1, std::memory_order_relaxed); });
        return true;
    }();
    (void)registered;
    return generation.load(std::memory_order_relaxed);
}

/// The one place a failure on the cache file becomes an error (SQLite's own codes were mapped
/// by detail/sqlite/sqlite_error.hpp first): several caches may use several files, so on_error
/// must say which one failed.
inline CacheError file_error(std::string_view filename, std::string_view operation,
                             std::string_view what) {
    return backend_error("file", filename, operation, what);
}

/// The cache file's schema. The tables carry an `ormcache_` prefix although the file is the
/// cache's own: pointed by mistake at an application database, clear() must never meet a
/// table of the application that happens to be called `entries`.
///
///   ormcache_entries:  a value (lease NULL) or a fill lease (value NULL, lease = token);
///                      expires_at in ms since the Unix epoch, NULL = never.
///   ormcache_counters: list versions and entity generations; they only grow.
inline constexpr std::string_view file_cache_schema = R"sql(
CREATE TABLE IF NOT EXISTS ormcache_entries (
    key TEXT PRIMARY KEY NOT NULL,
    value BLOB,
    expires_at INTEGER,
    lease TEXT
);
CREATE INDEX IF NOT EXISTS ormcache_entries_by_expiry
    ON ormcache_entries (expires_at) WHERE expires_at IS NOT NULL;
CREATE TABLE IF NOT EXISTS ormcache_counters (
    name TEXT PRIMARY KEY NOT NULL,
    value INTEGER NOT NULL
);
)sql";

/// A prepared statement of one connection, checked out of its StatementCache: binds by index,
/// steps, reads columns. Bound text and blobs are not copied (SQLITE_STATIC), so they must
/// outlive the statement, which they do: every statement lives within one backend call.
class FileStatement {
  public:
    FileStatement(sqlite3* db, StatementCache::Checkout checkout)
        : db_(db), checkout_(std::move(checkout)) {}

    FileStatement& bind(int index, std::string_view text) {
        check(db_,
              sqlite3_bind_text(checkout_.get(), index, text.data(), static_cast<int>(text.size()),
                                SQLITE_STATIC),
              checkout_.sql());
        return *this;
    }
    FileStatement& bind_blob(int index, std::string_view bytes) {
        check(db_,
              sqlite3_bind_blob(checkout_.get(), index, bytes.data(),
                                static_cast<int>(bytes.size()), SQLITE_STATIC),
              checkout_.sql());
        return *this;
    }
    FileStatement& bind(int index, std::int64_t value) {
        check(db_, sqlite3_bind_int64(checkout_.get(), index, value), checkout_.sql());
        return *this;
    }
    FileStatement& bind_null(int index) {
        check(db_, sqlite3_bind_null(checkout_.get(), index), checkout_.sql());
        return *this;
    }

    /// true: a row is ready; false: done.
    bool step() {
        const int rc = sqlite3_step(checkout_.get());
        if (rc == SQLITE_ROW)
            return true;
        if (rc == SQLITE_DONE)
            return false;
        throw_from_handle(db_, rc, checkout_.sql());
    }

    /// Runs a statement that returns no rows; returns the rows it changed.
    int run() {
        step();
        return sqlite3_changes(db_);
    }

    bool is_null(int column) const {
        return sqlite3_column_type(checkout_.get(), column) == SQLITE_NULL;
    }
    std::int64_t integer(int column) const { return sqlite3_column_int64(checkout_.get(), column); }
    std::string bytes(int column) const {
        const void* data = sqlite3_column_blob(checkout_.get(), column);
        const int size = sqlite3_column_bytes(checkout_.get(), column);
        return data == nullptr
                   ? std::string()
                   : std::string(static_cast<const char*>(data), static_cast<std::size_t>(size));
    }

  private:
    sqlite3* db_;
    StatementCache::Checkout checkout_;
};

/// One connection to the cache file, with the schema in place and its statements cached.
/// Used by one thread at a time.
class FileConnection {
  public:
    FileConnection(const std::string& filename, std::chrono::milliseconds busy_timeout)
        : db_(filename,
              SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE | SQLite::OPEN_URI |
                  SQLite::OPEN_NOMUTEX,
              static_cast<int>(busy_timeout.count())),
          statements_(db_.getHandle(), 32),
          generation_(fork_generation()) {
        // WAL: readers never wait for a writer, and processes share the file safely. It is
        // persistent in the file, so this only changes anything the first time. NORMAL
        // synchronous: a commit survives the crash of a process (what a cache needs), not a
        // power cut, and costs no fsync.
        switch_to_wal(busy_timeout);
        db_.exec("PRAGMA synchronous = NORMAL");
        db_.exec(std::string(file_cache_schema));
    }

    FileConnection(const FileConnection&) = delete;
    FileConnection& operator=(const FileConnection&) = delete;

    FileStatement prepare(std::string_view sql) {
        return FileStatement(db_.getHandle(), statements_.acquire(sql));
    }

    SQLite::Database& database() noexcept { return db_; }
    std::uint64_t generation() const noexcept { return generation_; }

  private:
    /// The first open of a new file switches it to WAL, which needs the file to itself: when
    /// several processes open it at once, SQLite answers the others SQLITE_BUSY at once, without
    /// calling the busy handler (it would risk a deadlock), so they retry here, with backoff,
    /// for up to the busy timeout. On a file already in WAL mode the PRAGMA changes nothing.
    void switch_to_wal(std::chrono::milliseconds busy_timeout) {
        using Clock = std::chrono::steady_clock;
        const auto deadline = Clock::now() + busy_timeout;
        std::chrono::microseconds pause{500};
        for (;;) {
            try {
                db_.exec("PRAGMA journal_mode = WAL");
                return;
            } catch (const SQLite::Exception& e) {
                if (e.getErrorCode() != SQLITE_BUSY || Clock::now() >= deadline)
                    throw;
            }
            std::this_thread::sleep_for(pause);
            pause = std::min<std::chrono::microseconds>(pause * 2, std::chrono::milliseconds{50});
        }
    }

    SQLite::Database db_;
    StatementCache statements_;  // declared after db_: finalized before the connection closes
    std::uint64_t generation_;
};

/// Hands out connections to one cache file; keeps up to `max_idle` of them open between calls
/// and opens more when more threads need one at once. After a failed open it does not try
/// again for `retry_interval` (each call fails at once meanwhile), so a missing directory does
/// not cost an open attempt per cache call. Connections opened before a fork() are abandoned
/// in the child. Thread-safe.
class FileConnectionPool : public ConnectionPool<FileConnection> {
  public:
    /// A checkout throws CacheError("file", "open") when the file cannot be opened (or while
    /// waiting to retry after such a failure).
    FileConnectionPool(const std::string& filename, std::chrono::milliseconds busy_timeout,
                       std::size_t max_idle, std::chrono::milliseconds retry_interval)
        : ConnectionPool(
              {.max_open = 0, .max_idle = max_idle, .retry_interval = retry_interval},
              [filename, busy_timeout] {
                  return std::make_unique<FileConnection>(filename, busy_timeout);
              },
              [filename](PoolRefusal refusal, std::string_view why) {
                  const std::string reason(why);
                  return CacheError(refusal == PoolRefusal::circuit_open
                                        ? "file open: cannot open " + filename + " (" + reason +
                                              "; retrying later)"
                                        : "file open: cannot open " + filename + ": " + reason,
                                    "file", "open");
              },
              &fork_generation) {}
};

}  // namespace ormcache::detail
