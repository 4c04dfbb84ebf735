#pragma once
// Connections of the file backend (backends/file.hpp) to its own SQLite cache file, and the
// small pool that hands them out. A SQLite connection must not be used by two threads at once,
// so each operation checks one out of the pool and gives it back when done.
//
// fork(): a connection must never be used, nor closed, in a child process (closing it there
// could checkpoint and delete the WAL the parent still writes to, because the child does not
// hold the parent's locks). The pool tells inherited connections apart by a generation counted
// in a pthread_atfork child handler and abandons them in the child without closing them.

#include <pthread.h>

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../../errors.hpp"
#include "../sqlite/sqlite_api.hpp"
#include "../sqlite/sqlite_error.hpp"
#include "../sqlite/statement_cache.hpp"

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
        db_.exec("PRAGMA journal_mode = WAL");
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
    SQLite::Database db_;
    StatementCache statements_;  // declared after db_: finalized before the connection closes
    std::uint64_t generation_;
};

/// Hands out connections to one cache file; keeps up to `max_idle` of them open between calls
/// and opens more when more threads need one at once. After a failed open it does not try
/// again for `retry_interval` (each call fails at once meanwhile), so a missing directory does
/// not cost an open attempt per cache call. Thread-safe; never opens while holding its lock.
class FileConnectionPool {
  public:
    FileConnectionPool(std::string filename, std::chrono::milliseconds busy_timeout,
                       std::size_t max_idle, std::chrono::milliseconds retry_interval)
        : filename_(std::move(filename)),
          busy_timeout_(busy_timeout),
          max_idle_(max_idle),
          retry_interval_(retry_interval) {}

    FileConnectionPool(const FileConnectionPool&) = delete;
    FileConnectionPool& operator=(const FileConnectionPool&) = delete;

    ~FileConnectionPool() { abandon_inherited(); }

    /// A connection checked out of the pool: given back on destruction unless discarded.
    class Checkout {
      public:
        Checkout(FileConnectionPool& pool, std::unique_ptr<FileConnection> c)
            : pool_(&pool), connection_(std::move(c)) {}
        Checkout(Checkout&& other) noexcept
            : pool_(std::exchange(other.pool_, nullptr)),
              connection_(std::move(other.connection_)) {}
        Checkout& operator=(Checkout&&) = delete;
        ~Checkout() {
            if (pool_ != nullptr && connection_)
                pool_->give_back(std::move(connection_));
        }

        FileConnection& operator*() const noexcept { return *connection_; }
        FileConnection* operator->() const noexcept { return connection_.get(); }

        /// After a failure: close this connection instead of keeping it (it may be in a state
        /// nobody wants to inherit, and a fresh one costs little).
        void discard() noexcept { connection_.reset(); }

      private:
        FileConnectionPool* pool_;
        std::unique_ptr<FileConnection> connection_;
    };

    /// Throws CacheError("file", "open") when the file cannot be opened (or while waiting to
    /// retry after such a failure).
    Checkout acquire() {
        const std::uint64_t generation = fork_generation();
        {
            std::unique_lock lock(mutex_);
            if (generation_ != generation)
                abandon_inherited_locked(generation);
            if (!idle_.empty()) {
                auto c = std::move(idle_.back());
                idle_.pop_back();
                return Checkout(*this, std::move(c));
            }
            if (Clock::now() < retry_at_) {
                throw CacheError("file open: cannot open " + filename_ + " (" + last_failure_ +
                                     "; retrying later)",
                                 "file", "open");
            }
        }
        try {
            auto c = std::make_unique<FileConnection>(filename_, busy_timeout_);
            return Checkout(*this, std::move(c));
        } catch (const std::exception& e) {
            std::lock_guard lock(mutex_);
            last_failure_ = e.what();
            retry_at_ = Clock::now() + retry_interval_;
            throw CacheError("file open: cannot open " + filename_ + ": " + e.what(), "file",
                             "open");
        }
    }

    const std::string& filename() const noexcept { return filename_; }

  private:
    using Clock = std::chrono::steady_clock;

    void give_back(std::unique_ptr<FileConnection> c) {
        std::unique_lock lock(mutex_);
        if (c->generation() != fork_generation()) {
            (void)c.release();  // opened before a fork, in the parent: see the file comment
            return;
        }
        if (idle_.size() < max_idle_) {
            idle_.push_back(std::move(c));
            return;
        }
        lock.unlock();  // closing may checkpoint: no I/O under the lock
    }

    void abandon_inherited() noexcept {
        std::lock_guard lock(mutex_);
        abandon_inherited_locked(fork_generation());
    }

    void abandon_inherited_locked(std::uint64_t generation) noexcept {
        for (auto& c : idle_) {
            if (c->generation() != generation)
                (void)c.release();
        }
        std::erase(idle_, nullptr);
        generation_ = generation;
    }

    const std::string filename_;
    const std::chrono::milliseconds busy_timeout_;
    const std::size_t max_idle_;
    const std::chrono::milliseconds retry_interval_;

    std::mutex mutex_;  // guards idle_, generation_, retry_at_, last_failure_
    std::vector<std::unique_ptr<FileConnection>> idle_;
    std::uint64_t generation_ = fork_generation();
    Clock::time_point retry_at_{};
    std::string last_failure_;
};

}  // namespace ormcache::detail
