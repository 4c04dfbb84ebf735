#pragma once
// Database: configuration, sessions and commit listeners over one SQLite database.

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>

#include "change_set.hpp"
#include "database_config.hpp"
#include "detail/database_state.hpp"
#include "detail/model_sql.hpp"
#include "model.hpp"
#include "session.hpp"

namespace ormcache {

/// Thread-safe: any number of threads may each open their own Session.
/// Configuration is validated here; a bad config throws ConfigError.
class Database {
public:
    explicit Database(DatabaseConfig config)
        : state_(std::make_shared<detail::DatabaseState>(std::move(config))) {}

    Database(const Database&) = delete;
    Database& operator=(const Database&) = delete;

    /// A new session on its own connection.
    Session session() { return Session(state_); }

    /// CREATE TABLE IF NOT EXISTS for each model, in order.
    template <Model... Ts>
    void create_all() {
        Session s = session();
        (create_one<Ts>(*s.state_), ...);
    }

    /// Registers a listener for what each committed transaction changed. It runs on the
    /// committing thread, after the commit succeeded; it must not use that session.
    /// Returns an id for remove_commit_listener.
    std::uint64_t on_commit(std::function<void(const ChangeSet&)> listener) {
        return state_->add_listener(std::move(listener));
    }

    bool remove_commit_listener(std::uint64_t id) { return state_->remove_listener(id); }

    const DatabaseConfig& config() const noexcept { return state_->config(); }

private:
    template <Model T>
    static void create_one(detail::SessionState& s) {
        s.enter();
        s.run(detail::ModelSql<T>::get().create_table);
        s.register_table(detail::ModelInfo<T>::table);
    }

    std::shared_ptr<detail::DatabaseState> state_;
};

}  // namespace ormcache
