#pragma once
// The one connection pool of the remote and file backends: a connection (hiredis context,
// libmemcached handle, SQLite connection) must not be used by two threads at once, so each
// operation checks one out and hands it back when done. Opening is slow and may fail, so the
// pool never opens while holding its lock, and after a failed open it stops trying for a while
// (a circuit breaker) instead of paying the connect timeout on every call. The breaker only
// spares reads and fills that timeout: an invalidation may still try the server through it (a
// probe, one at a time), since other processes that reach the server wait for it.

#include <chrono>
#include <concepts>
#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../../errors.hpp"

namespace ormcache::detail {

/// Why the pool refuses a checkout without trying to open a connection.
enum class PoolRefusal {
    busy,          ///< max_open connections were checked out for the whole wait
    circuit_open,  ///< an open failed less than retry_interval ago (or the pool was tripped)
    open_failed,   ///< opening threw something that is not a CacheError
};

/// How a pool is sized and how long it waits. An aggregate.
struct ConnectionPoolLimits {
    /// Most connections open at once (checked out, idle or being opened); 0 = no bound.
    std::size_t max_open = 0;
    /// Most idle connections kept between checkouts; more are closed when handed back.
    std::size_t max_idle = 0;
    /// With max_open: the longest a checkout waits for a connection to come back.
    std::chrono::milliseconds wait{0};
    /// How long the circuit stays open after a failed open or trip(); 0 = never open.
    std::chrono::milliseconds retry_interval{0};
};

/// Thread-safe. `Connection` may offer:
///  - `bool broken() const`: a broken connection handed back is closed, not kept;
///  - `std::uint64_t generation() const` (fork_generation() when opened): a connection opened
///    before a fork() is abandoned in the child, never used nor closed there (see
///    detail/file/file_connection.hpp).
template <class Connection, class Deleter = std::default_delete<Connection>>
class ConnectionPool {
  public:
    using Handle = std::unique_ptr<Connection, Deleter>;
    /// Opens a connection; may throw (a CacheError is passed on as it is).
    using Open = std::function<Handle()>;
    /// The error a refused checkout throws; `detail` is what the last failed open threw (for
    /// circuit_open and open_failed; may be empty). May be empty for a pool with neither
    /// max_open nor retry_interval: what a failed open threw is then passed on as it is.
    using Refuse = std::function<CacheError(PoolRefusal, std::string_view detail)>;
    /// Which fork() generation this process is in (see Connection::generation()).
    using Generation = std::uint64_t (*)() noexcept;

    ConnectionPool(ConnectionPoolLimits limits, Open open, Refuse refuse,
                   Generation generation = nullptr)
        : limits_(limits),
          connect_(std::move(open)),
          refuse_(std::move(refuse)),
          generation_of_(generation),
          generation_(generation != nullptr ? generation() : 0) {}

    ConnectionPool(const ConnectionPool&) = delete;
    ConnectionPool& operator=(const ConnectionPool&) = delete;

    ~ConnectionPool() {
        std::lock_guard lock(mutex_);
        abandon_inherited_locked();
    }

    /// A connection checked out of the pool: handed back on destruction unless discarded.
    class Checkout {
      public:
        Checkout(ConnectionPool& pool, Handle c, bool reused, bool probe)
            : pool_(&pool), c_(std::move(c)), reused_(reused), probe_(probe) {}
        // Not defaulted: the moved-from checkout must not hand anything back (a null
        // connection handed back counts as a closed one, and the pool would open one too
        // many).
        Checkout(Checkout&& other) noexcept
            : pool_(std::exchange(other.pool_, nullptr)),
              c_(std::move(other.c_)),
              reused_(other.reused_),
              probe_(other.probe_) {}
        Checkout& operator=(Checkout&&) = delete;
        ~Checkout() {
            if (pool_ != nullptr)
                pool_->give_back(std::move(c_), probe_);
        }

        Connection& operator*() const noexcept { return *c_; }
        Connection* operator->() const noexcept { return c_.get(); }
        Connection* get() const noexcept { return c_.get(); }

        /// After a failure: close this connection instead of keeping it (it may be in a
        /// state nobody wants to inherit, and a fresh one costs little).
        void discard() noexcept { c_.reset(); }

        /// The connection was idle in the pool, not opened for this checkout: the server may
        /// have closed it since.
        bool reused() const noexcept { return reused_; }

        /// Opened through the open circuit (acquire(Admission::probe)): once the call made on
        /// it succeeded, close_circuit().
        bool probe() const noexcept { return probe_; }

      private:
        ConnectionPool* pool_;
        Handle c_;
        bool reused_;
        bool probe_;
    };

    /// Whether a checkout may try the server while the circuit is open.
    enum class Admission {
        closed_circuit,  ///< no: reads and fills, which the database serves meanwhile
        probe,           ///< yes, unless another probe is under way: invalidations
    };

    /// An idle connection, or a new one; throws what refuse() makes when it cannot.
    Checkout acquire(Admission admission = Admission::closed_circuit) {
        std::unique_lock lock(mutex_);
        abandon_inherited_locked();
        const auto deadline = Clock::now() + limits_.wait;
        bool probe = false;
        for (;;) {
            if (!idle_.empty()) {
                auto c = std::move(idle_.back());
                idle_.pop_back();
                return Checkout(*this, std::move(c), true, false);
            }
            const bool circuit_open = Clock::now() < retry_at_;
            if (circuit_open && (admission != Admission::probe || probing_))
                throw refuse_(PoolRefusal::circuit_open, last_failure_);
            if (limits_.max_open == 0 || open_ < limits_.max_open) {
                probe = probing_ = circuit_open;
                break;
            }
            if (available_.wait_until(lock, deadline) == std::cv_status::timeout && idle_.empty() &&
                open_ >= limits_.max_open) {
                throw refuse_(PoolRefusal::busy, {});
            }
        }
        ++open_;
        lock.unlock();
        try {
            Handle c = connect_();
            if (!probe) {
                lock.lock();
                retry_at_ = {};  // the one retry after retry_interval worked
                lock.unlock();
            }
            return Checkout(*this, std::move(c), false, probe);
        } catch (const CacheError& e) {
            closed_after_failure(e.what(), probe);
            throw;  // already says which server and what failed
        } catch (const std::exception& e) {
            closed_after_failure(e.what(), probe);
            if (!refuse_)
                throw;
            throw refuse_(PoolRefusal::open_failed, e.what());
        } catch (...) {
            closed_after_failure("unknown exception", probe);
            throw;
        }
    }

    /// After a probe's call succeeded: the server answers, every call may go to it again.
    /// (A probe that only connected proves little: a stopped server's kernel still accepts.)
    void close_circuit() {
        std::lock_guard lock(mutex_);
        retry_at_ = {};
    }

    /// After an I/O failure on a checked-out connection: close the idle ones (the server
    /// probably went away) and open the circuit.
    void trip() {
        std::vector<Handle> idle;
        {
            std::lock_guard lock(mutex_);
            open_ -= idle_.size();
            idle.swap(idle_);
            retry_at_ = Clock::now() + limits_.retry_interval;
        }
        // Closed here, outside the lock: closing may do I/O.
    }

  private:
    using Clock = std::chrono::steady_clock;

    void closed_after_failure(std::string why, bool probe) {
        std::lock_guard lock(mutex_);
        --open_;
        if (probe)
            probing_ = false;
        last_failure_ = std::move(why);
        retry_at_ = Clock::now() + limits_.retry_interval;  // stop paying the open timeout
        available_.notify_one();
    }

    void give_back(Handle c, bool probe) {
        std::unique_lock lock(mutex_);
        if (probe)
            probing_ = false;
        if (c && inherited(*c)) {
            (void)c.release();  // opened before a fork, in the parent: see the class comment
            return;
        }
        const bool keep = c && !broken(*c) && idle_.size() < keep_idle();
        if (keep) {
            idle_.push_back(std::move(c));
        } else {
            --open_;
        }
        available_.notify_one();
        lock.unlock();  // a connection not kept is closed here: no I/O under the lock
    }

    std::size_t keep_idle() const noexcept {
        return limits_.max_idle != 0 ? limits_.max_idle : limits_.max_open;
    }

    static bool broken(const Connection& c) {
        if constexpr (requires {
                          { c.broken() } -> std::convertible_to<bool>;
                      })
            return c.broken();
        return false;
    }

    bool inherited(const Connection& c) const {
        if constexpr (requires {
                          { c.generation() } -> std::convertible_to<std::uint64_t>;
                      }) {
            return generation_of_ != nullptr && c.generation() != generation_of_();
        }
        return false;
    }

    /// In a child after fork(): forgets the idle connections opened before it, unclosed.
    void abandon_inherited_locked() noexcept {
        if (generation_of_ == nullptr)
            return;
        const std::uint64_t now = generation_of_();
        if (now == generation_)
            return;
        for (auto& c : idle_) {
            if (inherited(*c))
                (void)c.release();
        }
        std::erase(idle_, nullptr);
        // Whatever the parent had checked out never comes back here.
        open_ = idle_.size();
        probing_ = false;
        generation_ = now;
    }

    const ConnectionPoolLimits limits_;
    const Open connect_;
    const Refuse refuse_;
    const Generation generation_of_;

    std::mutex mutex_;  // guards idle_, open_, retry_at_, probing_, last_failure_, generation_
    std::condition_variable available_;
    std::vector<Handle> idle_;
    std::size_t open_ = 0;
    Clock::time_point retry_at_{};
    bool probing_ = false;  // a probe's connection is checked out (or being opened)
    std::string last_failure_;
    std::uint64_t generation_;
};

}  // namespace ormcache::detail
