#pragma once
// Savepoint: RAII over SAVEPOINT / RELEASE / ROLLBACK TO, as SQLiteCpp's Savepoint.

#include <memory>
#include <string>
#include <utility>

#include "detail/sqlite/session_state.hpp"
#include "errors.hpp"

namespace ormcache {

/// A nested transaction from Session::begin_nested(). commit() releases it (its changes join
/// the enclosing transaction); rollback() discards exactly what was done since it began.
/// The destructor rolls back unless commit() or rollback() was called, and never throws.
/// Not thread-safe, like its session; it must not outlive the session's transaction.
class Savepoint {
  public:
    Savepoint(const Savepoint&) = delete;
    Savepoint& operator=(const Savepoint&) = delete;
    Savepoint(Savepoint&& other) noexcept
        : session_(std::move(other.session_)),
          name_(std::move(other.name_)),
          done_(std::exchange(other.done_, true)) {}
    Savepoint& operator=(Savepoint&&) = delete;

    ~Savepoint() {
        if (done_ || !session_ || !session_->is_open())
            return;
        try {
            session_->rollback_to(name_);
        } catch (...) {
            // A destructor must not throw. The savepoint may already be gone, e.g. when the
            // whole transaction was rolled back first; there is then nothing left to undo.
        }
    }

    /// RELEASE: keeps the changes in the enclosing transaction. Throws if already ended.
    void commit() {
        ensure_active("commit");
        session_->enter();
        done_ = true;
        session_->release(name_);
    }

    /// ROLLBACK TO + RELEASE: discards the changes made since the savepoint began.
    void rollback() {
        ensure_active("rollback");
        session_->enter();
        done_ = true;
        session_->rollback_to(name_);
    }

    bool active() const noexcept { return !done_; }
    const std::string& name() const noexcept { return name_; }

  private:
    friend class Session;
    Savepoint(std::shared_ptr<detail::SessionState> session, std::string name)
        : session_(std::move(session)), name_(std::move(name)) {}

    void ensure_active(const char* what) const {
        if (done_) {
            throw Error(std::string("Savepoint::") + what + "(): savepoint '" + name_ +
                        "' was already committed or rolled back");
        }
    }

    std::shared_ptr<detail::SessionState> session_;
    std::string name_;
    bool done_ = false;
};

}  // namespace ormcache
