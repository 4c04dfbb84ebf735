#pragma once
// The outbox of one database for one cache that other processes share (docs/caching.md,
// "Across processes: durable invalidation"). A commit made by Session::commit() writes its
// change set into the table ormcache_outbox inside its own transaction, so the row exists if and
// only if the commit does; right after the commit the committing process delivers it to the
// cache as before. A keeper thread, one per Outbox, deletes the rows its process delivered and
// delivers the rows nobody confirmed within half the bound: their writer died, is stopped, or
// cannot reach the cache. Thread-safe.
//
// fork(): the keepers of the process are stopped before it (pthread_atfork) and started again
// right after it in the parent; in the child, each starts at the first commit through its
// Database there. A child that only execs, or never uses the parent's Databases, starts no
// thread (and never shares the parent's cache connections with one).

#include <pthread.h>

#include <algorithm>
#include <atomic>

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

    /// Deletes one row (parameter: its id): delivered, or its commit undone.
    static constexpr std::string_view delete_sql{"DELETE FROM ormcache_outbox WHERE id = ?1"};

    /// Milliseconds since the epoch: what written_ms holds.
    static std::int64_t now_ms() noexcept;

    /// After the commit: delivers `changes`, and notes `row` (the commit's outbox row, if it
    /// wrote one) delivered when the backend accepted it.
    void deliver(std::optional<std::int64_t> row, const ChangeSet& changes) noexcept;

  private:
    friend class OutboxRegistry;

    void start_keeper();
    void stop_keeper() noexcept;
    void keep() noexcept;
    /// One round of the keeper; throws when the database cannot be used now (keep() retries).
    void round(SQLite::Database& db);

    Open open_;
    const std::string cache_;
    const std::chrono::milliseconds bound_;
    Deliver deliver_;

    mutable std::mutex mutex_;  // guards delivered_ and stop_
    std::condition_variable wake_;
    std::vector<std::int64_t> delivered_;
    bool stop_ = false;
    std::thread keeper_;  // started and stopped under OutboxRegistry's lock
    /// In a fork()'s child until its first commit there: no keeper yet (see the top).
    std::atomic<bool> forked_{false};
};

/// Every Outbox of the process, so that fork() can stop their keepers first and start them
/// again after it. Never destroyed (an Outbox of a static Database may outlive any static).
class OutboxRegistry {
  public:
    static OutboxRegistry& instance();

    /// Registers `outbox` and starts its keeper.
    void add(Outbox& outbox);
    /// Stops `outbox`'s keeper and forgets it.
    void remove(Outbox& outbox) noexcept;
    /// Starts the keeper of an outbox inherited by a fork()'s child.
    void resume(Outbox& outbox);

  private:
    OutboxRegistry();
    static void before_fork() noexcept;
    static void after_fork_in_parent() noexcept;
    static void after_fork_in_child() noexcept;

    std::mutex mutex_;  // guards live_ and every keeper's start and stop; held across fork()
    std::vector<Outbox*> live_;
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
    OutboxRegistry::instance().add(*this);
}

ORMCACHE_INLINE Outbox::~Outbox() {
    OutboxRegistry::instance().remove(*this);
}

ORMCACHE_INLINE void Outbox::start_keeper() {
    {
        std::lock_guard lock(mutex_);
        stop_ = false;
    }
    keeper_ = std::thread([this] { keep(); });
}

ORMCACHE_INLINE void Outbox::stop_keeper() noexcept {
    {
        std::lock_guard lock(mutex_);
        stop_ = true;
    }
    wake_.notify_all();
    if (keeper_.joinable())
        keeper_.join();
}

ORMCACHE_INLINE OutboxRegistry& OutboxRegistry::instance() {
    static OutboxRegistry* const registry = new OutboxRegistry();
    return *registry;
}

ORMCACHE_INLINE OutboxRegistry::OutboxRegistry() {
    ::pthread_atfork(&before_fork, &after_fork_in_parent, &after_fork_in_child);
}

ORMCACHE_INLINE void OutboxRegistry::add(Outbox& outbox) {
    std::lock_guard lock(mutex_);
    live_.push_back(&outbox);
    outbox.start_keeper();
}

ORMCACHE_INLINE void OutboxRegistry::remove(Outbox& outbox) noexcept {
    std::lock_guard lock(mutex_);
    std::erase(live_, &outbox);
    outbox.stop_keeper();
}

ORMCACHE_INLINE void OutboxRegistry::before_fork() noexcept {
    auto& self = instance();
    self.mutex_.lock();  // unlocked by after_fork(), in the parent and in the child
    for (Outbox* outbox : self.live_)
        outbox->stop_keeper();
}

ORMCACHE_INLINE void OutboxRegistry::resume(Outbox& outbox) {
    std::lock_guard lock(mutex_);
    if (outbox.forked_.exchange(false))
        outbox.start_keeper();
}

ORMCACHE_INLINE void OutboxRegistry::after_fork_in_parent() noexcept {
    auto& self = instance();
    for (Outbox* outbox : self.live_) {
        try {
            outbox->start_keeper();
        } catch (...) {
            // No thread could be started: this process's commits are still delivered by
            // their writers, and what they cannot deliver by the keepers of other processes.
        }
    }
    self.mutex_.unlock();
}

ORMCACHE_INLINE void OutboxRegistry::after_fork_in_child() noexcept {
    auto& self = instance();
    for (Outbox* outbox : self.live_)
        outbox->forked_ = true;
    self.mutex_.unlock();
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
        if (forked_.load(std::memory_order_relaxed))
            OutboxRegistry::instance().resume(*this);
        accepted = deliver_(changes);
    } catch (...) {
        // The commit has happened: a failed delivery is left to the keepers.
    }
    if (!accepted || !row)
        return;
    std::lock_guard lock(mutex_);
    delivered_.push_back(*row);
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
    std::vector<std::int64_t> done;
    {
        std::lock_guard lock(mutex_);
        done.swap(delivered_);
    }
    if (!overdue.empty() && (changes.empty() || deliver_(ChangeSet(std::move(changes)))))
        done.insert(done.end(), overdue.begin(), overdue.end());
    if (done.empty())
        return;
    try {
        SQLite::Transaction transaction(db);
        SQLite::Statement remove(db, std::string(delete_sql));
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
