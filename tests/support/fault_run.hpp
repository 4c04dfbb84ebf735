#pragma once
// FaultRun: the load of the fault runs (test_redis, test_memcached): worker threads reading and
// writing users on one Database while the test stops, restarts and pauses its cache servers.
//
// Worker t owns the ids with (id - 1) % threads == t: only it renames them, so it knows their
// committed names and checks every read of them (read-your-commits through the cache, whatever
// the servers are doing). What a worker does in one step is the test's (its mix of calls); the
// bookkeeping is here: calls made, calls that failed, stale reads, the first notes, and how many
// calls each phase of the run got through. Catch2 assertions are not thread-safe, so the
// workers only count and note; the test asserts on the totals once they have stopped.

#include <atomic>
#include <chrono>
#include <cstdint>
#include <exception>
#include <functional>
#include <iterator>
#include <map>
#include <mutex>
#include <random>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include <ormcache/ormcache.hpp>

#include "backend_test_support.hpp"
#include "models.hpp"

namespace ormcache_test {

class FaultRun {
  public:
    /// One worker, on its own thread: its session and repository, its own ids with their
    /// committed names, its random numbers.
    class Worker {
      public:
        Worker(FaultRun& run, int index)
            : session(run.db_.session()),
              users(session),
              rng(static_cast<unsigned>(index) * 7919u + 1u),
              index_(index),
              run_(run) {
            for (std::int64_t id = index + 1; id <= run.ids_; id += run.threads_)
                mine_[id] = initial_name(id);
        }

        ormcache::Session session;
        ormcache::Repository<app::User> users;
        std::mt19937 rng;

        /// A random id of its own.
        std::int64_t own() {
            auto it = mine_.begin();
            std::advance(it, rng() % mine_.size());
            return it->first;
        }

        /// Reads `id` (one of its own) through the cache: stale unless it has the committed name.
        void check_own(std::int64_t id, const std::string& where) {
            const auto name = users.get(id).name;
            if (name != mine_[id]) {
                stale(where + ": id " + std::to_string(id) + " read '" + name + "', committed '" +
                      mine_[id] + "'");
            }
        }

        /// A name no earlier write used: "u<id>-<seq><tag><worker>".
        std::string fresh_name(std::int64_t id, const char* tag) {
            return "u" + std::to_string(id) + "-" + std::to_string(++seq_) + tag +
                   std::to_string(index_);
        }

        /// Records the committed name of `id` (once its commit succeeded).
        void committed(std::int64_t id, std::string name) { mine_[id] = std::move(name); }

        /// Renames `id` (one of its own) in an auto-committed update, then checks the read.
        void rename_and_check(std::int64_t id) {
            auto u = users.get(id, {.use_cache = false});
            u.name = fresh_name(id, "t");
            users.update(u, {.auto_commit = true});
            committed(id, u.name);
            check_own(id, "get after commit");
        }

        /// Counts a stale read; `what`, if any, is noted for the failure message.
        void stale(std::string what = {}) {
            ++run_.stale_;
            if (!what.empty())
                run_.note(std::move(what));
        }

      private:
        int index_;
        int seq_ = 0;
        std::map<std::int64_t, std::string> mine_;
        FaultRun& run_;
    };

    using Step = std::function<void(Worker&)>;

    /// The name every user starts with.
    static std::string initial_name(std::int64_t id) { return "u" + std::to_string(id) + "-0"; }

    /// Adds users 1 to `ids` with their initial names (before the run starts).
    static void seed(ormcache::Database& db, std::int64_t ids) {
        auto s = db.session();
        ormcache::Repository<app::User> users{s};
        for (std::int64_t id = 1; id <= ids; ++id)
            users.add({.name = initial_name(id), .email = "e"});
        s.commit();
    }

    /// Starts `threads` workers on `db` (whose users 1 to `ids` are seeded), each calling
    /// `step` until stop(). A step that throws counts as a failed call, noted, and rolls back.
    FaultRun(ormcache::Database& db, int threads, std::int64_t ids, Step step)
        : db_(db), threads_(threads), ids_(ids), step_(std::move(step)) {
        for (int t = 0; t < threads; ++t)
            workers_.emplace_back([this, t] { work(t); });
    }

    FaultRun(const FaultRun&) = delete;
    FaultRun& operator=(const FaultRun&) = delete;
    ~FaultRun() { stop(); }

    /// Lasts at least `length`, and until the workers got some work done in it.
    void phase(const std::string& name, std::chrono::milliseconds length) {
        const auto begin_ops = ops_.load();
        const auto end = std::chrono::steady_clock::now() + length;
        eventually(
            [&] { return std::chrono::steady_clock::now() >= end && ops_.load() > begin_ops + 10; },
            length + std::chrono::seconds{20});
        phases_.emplace_back(name, ops_.load() - begin_ops);
    }

    /// Stops the workers and waits for them.
    void stop() {
        stop_ = true;
        for (auto& w : workers_) {
            if (w.joinable())
                w.join();
        }
    }

    std::uint64_t ops() const { return ops_.load(); }
    std::uint64_t failures() const { return failures_.load(); }
    std::uint64_t stale() const { return stale_.load(); }
    /// Each phase's name and the calls made during it.
    const std::vector<std::pair<std::string, std::uint64_t>>& phases() const { return phases_; }

    /// The first notes (stale reads, failed calls), one per line.
    std::string notes() const {
        std::lock_guard lock(notes_mutex_);
        std::string out;
        for (const auto& n : notes_)
            out += n + "\n";
        return out;
    }

  private:
    void work(int index) {
        Worker worker(*this, index);
        while (!stop_.load()) {
            try {
                step_(worker);
                ++ops_;
            } catch (const std::exception& e) {
                ++failures_;
                note(std::string("call failed: ") + e.what());
                try {
                    worker.session.rollback();
                } catch (...) {
                }
            }
        }
    }

    void note(std::string what) {
        std::lock_guard lock(notes_mutex_);
        if (notes_.size() < 10)
            notes_.push_back(std::move(what));
    }

    ormcache::Database& db_;
    const int threads_;
    const std::int64_t ids_;
    const Step step_;
    std::atomic<bool> stop_{false};
    std::atomic<std::uint64_t> ops_{0}, failures_{0}, stale_{0};
    mutable std::mutex notes_mutex_;  // guards notes_
    std::vector<std::string> notes_;
    std::vector<std::pair<std::string, std::uint64_t>> phases_;  // the test's thread only
    std::vector<std::thread> workers_;
};

}  // namespace ormcache_test
