#pragma once
// The outbox of one database for one cache that other processes share (docs/caching.md,
// "Across processes: durable invalidation"). A commit made by Session::commit() writes its
// change set into the table ormcache_outbox inside its own transaction, so the row exists if and
// only if the commit does; right after the commit the committing process delivers it to the
// cache as before. A keeper thread, one per Outbox, deletes the rows its process delivered and
// delivers the rows nobody confirmed within half the bound: their writer died, is stopped, or
// cannot reach the cache. Thread-safe.

#include <sys/types.h>
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <SQLiteCpp/SQLiteCpp.h>

#include "../../change_set.hpp"
#include "../orm/change_set_json.hpp"
#include "../util/linkage.hpp"
#include "sqlite_api.hpp"

namespace ormcache::detail {

class Outbox {
  public:
    static constexpr std::string_view table{"ormcache_outbox"};

    /// Delivers a change set to the cache; true when the backend accepted it.
    using Deliver = std::function<bool(const ChangeSet&)>;
    /// Opens a connection to the database (the keeper's own).
    using Open = std::function<std::unique_ptr<SQLite::Database>()>;

    /// Creates the table if needed (through `open`) and starts the keeper. `cache` names the
    /// cache the rows are for; `bound` is CacheConfig::invalidation_bound.
    Outbox(Open open, std::string cache, std::chrono::milliseconds bound, Deliver deliver);
    ~Outbox();

    Outbox(const Outbox&) = delete;
    Outbox& operator=(const Outbox&) = delete;

    const std::string& cache() const noexcept { return cache_; }

    /// The INSERT a committing transaction runs (parameters: cache, written_ms, changes).
    static constexpr std::string_view insert_sql{
        "INSERT INTO ormcache_outbox (cache, written_ms, changes) VALUES (?1, ?2, ?3)"};

    /// Milliseconds since the epoch: what written_ms holds.
    static std::int64_t now_ms() noexcept;

    /// After the commit: delivers `changes`, and notes `row` (the commit's outbox row, if it
    /// wrote one) delivered when the backend accepted it.
    void deliver(std::optional<std::int64_t> row, const ChangeSet& changes) noexcept;

    /// Rows delivered by this process and not deleted yet (for tests).
    std::size_t delivered_pending() const;

  private:
    void keep() noexcept;
    /// One round of the keeper; false when the database cannot be used now.
    void round(SQLite::Database& db);

    Open open_;
    const std::string cache_;
    const std::chrono::milliseconds bound_;
    Deliver deliver_;

    mutable std::mutex mutex_;  // guards delivered_ and stop_
    std::condition_variable wake_;
    std::vector<std::int64_t> delivered_;
    bool stop_ = false;
    const pid_t owner_ = ::getpid();
    std::thread keeper_;
};

#if ORMCACHE_DEFINITIONS

ORMCACHE_INLINE Outbox::Outbox(Open open, std::string cache, std::chrono::milliseconds bound,
                               Deliver deliver)
    : open_(std::move(open)),
      cache_(std::move(cache)),
      bound_(bound),
      deliver_(std::move(deliver)) {
    auto db = open_();
    db->exec(
        "CREATE TABLE IF NOT EXISTS ormcache_outbox (id INTEGER PRIMARY KEY, cache TEXT NOT NULL, "
        "written_ms INTEGER NOT NULL, changes TEXT NOT NULL)");
    keeper_ = std::thread([this] { keep(); });
}

ORMCACHE_INLINE Outbox::~Outbox() {
    if (::getpid() != owner_) {
        // A fork()'s child: the keeper thread is its parent's, it does not exist here. Leave
        // it alone (joining it would wait forever).
        keeper_.detach();
        return;
    }
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
    }
    wake_.notify_all();
    keeper_.join();
}

ORMCACHE_INLINE std::int64_t Outbox::now_ms() noexcept {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

ORMCACHE_INLINE void Outbox::deliver(std::optional<std::int64_t> row,
                                     const ChangeSet& changes) noexcept {
    bool accepted = false;
    try {
        accepted = deliver_(changes);
    } catch (...) {
        // The commit has happened: a failed delivery is left to the keepers.
    }
    if (!accepted || !row || ::getpid() != owner_)
        return;  // (a fork()'s child has no keeper of its own to delete it: others will)
    std::lock_guard lock(mutex_);
    delivered_.push_back(*row);
}

ORMCACHE_INLINE std::size_t Outbox::delivered_pending() const {
    std::lock_guard lock(mutex_);
    return delivered_.size();
}

ORMCACHE_INLINE void Outbox::keep() noexcept {
    std::unique_ptr<SQLite::Database> db;
    const auto interval = std::max(bound_ / 4, std::chrono::milliseconds{1});
    for (;;) {
        {
            std::unique_lock lock(mutex_);
            if (wake_.wait_for(lock, interval, [&] { return stop_; }))
                return;
        }
        try {
            if (!db)
                db = open_();
            round(*db);
        } catch (...) {
            // The database is busy or gone for now: the rows wait for the next round.
            db.reset();
        }
    }
}

ORMCACHE_INLINE void Outbox::round(SQLite::Database& db) {
    std::vector<std::int64_t> done;
    {
        std::lock_guard lock(mutex_);
        done.swap(delivered_);
    }
    // The rows nobody confirmed: written more than half the bound ago and still here.
    std::vector<std::int64_t> overdue;
    std::vector<Change> changes;
    {
        SQLite::Statement select(db,
                                 "SELECT id, changes FROM ormcache_outbox WHERE cache = ?1 AND "
                                 "written_ms <= ?2 ORDER BY id LIMIT 1000");
        select.bind(1, cache_);
        select.bind(2, static_cast<std::int64_t>(now_ms() - bound_.count() / 2));
        while (select.executeStep()) {
            const std::int64_t id = select.getColumn(0).getInt64();
            overdue.push_back(id);
            try {
                const ChangeSet set = change_set_from_json(select.getColumn(1).getString());
                changes.insert(changes.end(), set.changes().begin(), set.changes().end());
            } catch (const SerializationError&) {
                // Not a row ormcache wrote: nothing to deliver, and it must not block the rest.
            }
        }
    }
    if (!overdue.empty() && (changes.empty() || deliver_(ChangeSet(std::move(changes)))))
        done.insert(done.end(), overdue.begin(), overdue.end());
    if (done.empty())
        return;
    try {
        SQLite::Transaction transaction(db);
        SQLite::Statement remove(db, "DELETE FROM ormcache_outbox WHERE id = ?1");
        for (const auto id : done) {
            remove.bind(1, id);
            remove.exec();
            remove.reset();
        }
        transaction.commit();
    } catch (...) {
        // Try again next round; a row left behind is only delivered once more.
        std::lock_guard lock(mutex_);
        delivered_.insert(delivered_.end(), done.begin(), done.end());
        throw;
    }
}

#endif  // ORMCACHE_DEFINITIONS

}  // namespace ormcache::detail
