#pragma once
// Repository<T>: CRUD and filtered queries for one model on one session.

#include <algorithm>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "cache_manager.hpp"
#include "detail/cache/cache_core.hpp"
#include "detail/orm/model_sql.hpp"
#include "detail/orm/query_builder.hpp"
#include "detail/util/type_name.hpp"
#include "errors.hpp"
#include "filters.hpp"
#include "model.hpp"
#include "options.hpp"
#include "session.hpp"

namespace ormcache {

/// Typed access to T's table through one session. Cheap to construct; not thread-safe (like
/// its session). Writes begin the session's transaction; reads run in it when one is open.
template <class T>
class Repository {
    static_assert(Model<T>, "Repository<T>: T is not mapped with ORMCACHE_MODEL");
    using Info = detail::ModelInfo<T>;
    using Sql = detail::ModelSql<T>;

  public:
    using pk_type = primary_key_type<T>;

    /// Uses the cache of the session's Database (`db.cache_manager()`).
    explicit Repository(Session& session)
        : Repository(session, std::static_pointer_cast<detail::CacheCore>(
                                  session.state().database().default_cache())) {}

    /// Manual setup: uses `manager` (see setup_cache_listeners).
    Repository(Session& session, CacheManager& manager) : Repository(session, manager.core_) {}

    // ---- writes ----

    /// INSERT; an integer key equal to 0 is assigned by SQLite. Returns the stored row.
    T add(const T& entity, Options options = {}) {
        return write(options, [&] { return insert_one(entity); });
    }

    /// Inserts all or none (a savepoint undoes a partial batch).
    std::vector<T> add_many(const std::vector<T>& entities, Options options = {}) {
        return write_each(entities, options, &Repository::insert_one);
    }

    /// UPDATE every column by primary key; NotFoundError if the row is gone.
    T update(const T& entity, Options options = {}) {
        return write(options, [&] { return update_one(entity); });
    }

    /// Updates all or none; NotFoundError (and nothing changed) if any row is gone.
    std::vector<T> update_many(const std::vector<T>& entities, Options options = {}) {
        return write_each(entities, options, &Repository::update_one);
    }

    /// INSERT, or UPDATE of the row with the same key (an integer key of 0 always inserts).
    T upsert(const T& entity, Options options = {}) {
        return write(options, [&] {
            if constexpr (Info::integer_pk) {
                if (Info::pk(entity) == 0)
                    return insert_one(entity);
            }
            auto q = state().query(Sql::get().upsert);
            detail::bind_entity(q, entity, 1, false);
            return single_row(q);
        });
    }

    /// DELETE by key; returns the removed row; NotFoundError if absent.
    T remove(const pk_type& id, Options options = {}) {
        return write(options, [&] {
            auto q = state().query(Sql::get().delete_by_pk);
            q.bind(1, id);
            if (!q.step())
                throw not_found(id);
            T removed = detail::read_entity<T>(q.stmt());
            q.run();
            return removed;
        });
    }

    /// Deletes the rows with these keys; returns the removed rows (absent keys are skipped).
    std::vector<T> remove_many(const std::vector<pk_type>& ids, Options options = {}) {
        if (ids.empty()) {
            state().enter();
            return {};
        }
        return write(options, [&] {
            return atomically([&] {
                std::vector<T> out;
                // At most 500 keys per statement, and never more than the connection binds.
                const int limit = sqlite3_limit(state().handle(), SQLITE_LIMIT_VARIABLE_NUMBER, -1);
                const std::size_t chunk =
                    std::min<std::size_t>(500, static_cast<std::size_t>(std::max(limit, 1)));
                for (std::size_t start = 0; start < ids.size(); start += chunk) {
                    const std::size_t n = std::min(chunk, ids.size() - start);
                    std::string sql = Sql::get().delete_in_prefix;
                    for (std::size_t i = 0; i < n; ++i)
                        sql += i == 0 ? "?" : ", ?";
                    sql += ")" + Sql::get().returning;
                    auto q = state().query(sql);
                    for (std::size_t i = 0; i < n; ++i)
                        q.bind(static_cast<int>(i + 1), ids[start + i]);
                    while (q.step())
                        out.push_back(detail::read_entity<T>(q.stmt()));
                }
                return out;
            });
        });
    }

    // ---- reads ----

    /// The row with this key; NotFoundError if absent.
    T get(const pk_type& id, Options options = {}) {
        auto found = get_or_none(id, options);
        if (!found)
            throw not_found(id);
        return std::move(*found);
    }

    /// Cached by key (docs/reference.md, cache rule 1); absence is cached too, and a committed
    /// insert of the key invalidates it.
    std::optional<T> get_or_none(const pk_type& id, Options options = {}) {
        auto& s = state();
        s.enter();
        if (!options.use_cache)
            return load_by_pk(id);
        return cache_->template read<std::optional<T>>(
            cache_->keys().template entity_target<T>(space_, detail::to_primary_key(id)), context(),
            options.expiration_time, [&] { return load_by_pk(id); });
    }

    /// Rows matching the filters (any number of filters and at most one Options, any order).
    /// Cached under T's list version and the query's text and values.
    template <class... Args>
    std::vector<T> list(const Args&... args) {
        state().enter();
        const auto parts = build("list", args...);
        return cached_query<std::vector<T>>("list", list_sql(parts, ""), parts,
                                            [&] { return load_list(parts); });
    }

    /// The page of rows and the total number of matching rows (ignoring LimitOffset).
    template <class... Args>
    std::pair<std::vector<T>, std::int64_t> list_and_count(const Args&... args) {
        state().enter();
        const auto parts = build("list_and_count", args...);
        return cached_query<std::pair<std::vector<T>, std::int64_t>>(
            "list_and_count", list_sql(parts, ", COUNT(*) OVER ()"), parts,
            [&] { return load_list_and_count(parts); });
    }

    /// Number of matching rows (LimitOffset and OrderBy do not apply).
    template <class... Args>
    std::int64_t count(const Args&... args) {
        state().enter();
        const auto parts = build("count", args...);
        return cached_query<std::int64_t>("count", count_sql(parts), parts,
                                          [&] { return load_count(parts); });
    }

    /// Whether any row matches (LimitOffset and OrderBy do not apply).
    template <class... Args>
    bool exists(const Args&... args) {
        state().enter();
        const auto parts = build("exists", args...);
        const std::string sql =
            "SELECT EXISTS(SELECT 1 FROM " + Sql::get().table + parts.where + ")";
        return cached_query<bool>("exists", sql, parts, [&] {
            auto q = state().query(sql);
            parts.bind(q, detail::QueryParts::Paging::without_page);
            q.step();
            return sqlite3_column_int64(q.stmt(), 0) != 0;
        });
    }

  private:
    Repository(Session& session, std::shared_ptr<detail::CacheCore> cache)
        : session_(session.state_), cache_(std::move(cache)) {
        state().enter();
        session_->register_table(Info::table);
        cache_->template register_model<T>();
        auto& database = session_->database();
        space_ = cache_->key_space(database);
        table_commits_ = &database.table_commits(Info::table);
    }

    /// How this call may use the cache, from the session's transaction state.
    detail::ReadContext context() const {
        using Kind = detail::SessionState::TxnKind;
        using detail::FillMode;
        const auto& s = state();
        if (s.dirty(Info::table))
            return {FillMode::bypass, {}};  // read-your-writes
        switch (s.txn_kind()) {
            case Kind::none:
                return {FillMode::shared, {}, table_commits_->load(std::memory_order_acquire)};
            case Kind::immediate:
                return {FillMode::fill, {}};
            case Kind::unknown:
                return {FillMode::read_only, {}};
            case Kind::snapshot:
                break;
        }
        // An explicit transaction fills only while the table's counters are still the ones
        // read before its snapshot was taken.
        const auto* guard = s.snapshot_guard(cache_.get());
        if (guard == nullptr)
            return {FillMode::read_only, {}};
        detail::ReadContext ctx{FillMode::fill, {}};
        for (const auto& counter : {cache_->keys().version_key(space_, Info::table),
                                    cache_->keys().generation_key(space_, Info::table)}) {
            const auto it = guard->find(counter);
            if (it == guard->end())
                return {FillMode::read_only, {}};
            ctx.guards.emplace_back(counter, it->second);
        }
        return ctx;
    }

    template <class R, class Load>
    R cached_query(std::string_view kind, const std::string& sql, const detail::QueryParts& parts,
                   Load&& load) {
        if (!parts.options.use_cache)
            return load();
        const std::string canonical =
            std::string(kind) + '\n' + sql + '\n' + parts.canonical_values();
        return cache_->template read<R>(
            cache_->keys().template query_target<T>(space_, kind, canonical), context(),
            parts.options.expiration_time, std::forward<Load>(load));
    }

    std::string count_sql(const detail::QueryParts& parts) const {
        return "SELECT COUNT(*) FROM " + Sql::get().table + parts.where;
    }

    detail::SessionState& state() const {
        if (!session_ || !session_->is_open()) {
            throw Error("Repository<" + detail::type_name<T>() + "> (table '" +
                        std::string(Info::table) + "'): the repository's session is closed");
        }
        return *session_;
    }

    template <class... Args>
    detail::QueryParts build(std::string_view call, const Args&... args) const {
        const auto max = static_cast<std::size_t>(
            sqlite3_limit(state().handle(), SQLITE_LIMIT_VARIABLE_NUMBER, -1));
        return detail::build_query<T>(call, max, args...);
    }

    static NotFoundError not_found(const pk_type& id) {
        std::string key;
        if constexpr (Info::integer_pk) {
            key = std::to_string(id);
        } else {
            key = "'" + id + "'";
        }
        return NotFoundError("no row in '" + std::string(Info::table) + "' with " +
                             std::string(Info::pk_name()) + " = " + key);
    }

    /// Runs a write: begins the transaction, commits after it when auto_commit is set. A
    /// failure rolls back only a transaction this call began for auto_commit.
    template <class Fn>
    auto write(const Options& options, Fn&& fn) {
        auto& s = state();
        s.enter();
        const bool began = !s.in_transaction();
        s.begin_write();
        try {
            auto result = fn();
            if (options.auto_commit)
                s.commit();
            return result;
        } catch (...) {
            if (began && options.auto_commit) {
                try {
                    s.rollback();
                } catch (...) {
                }
            }
            throw;
        }
    }

    /// Applies `one` to each entity inside one savepoint: all of them or none.
    std::vector<T> write_each(const std::vector<T>& entities, const Options& options,
                              T (Repository::*one)(const T&)) {
        return write(options, [&] {
            return atomically([&] {
                std::vector<T> out;
                out.reserve(entities.size());
                for (const auto& e : entities)
                    out.push_back((this->*one)(e));
                return out;
            });
        });
    }

    /// Runs fn inside a savepoint: all of it or none of it.
    template <class Fn>
    auto atomically(Fn&& fn) {
        auto& s = state();
        const std::string name = s.savepoint();
        try {
            auto result = fn();
            s.release(name);
            return result;
        } catch (...) {
            try {
                s.rollback_to(name);
            } catch (...) {
            }
            throw;
        }
    }

    T single_row(detail::Query& q) {
        if (!q.step()) {
            throw DatabaseError("statement returned no row [SQL: " + std::string(q.sql()) + "]",
                                SQLITE_INTERNAL, SQLITE_INTERNAL, std::string(q.sql()));
        }
        T row = detail::read_entity<T>(q.stmt());
        q.run();
        return row;
    }

    T insert_one(const T& entity) {
        bool auto_key = false;
        if constexpr (Info::integer_pk)
            auto_key = Info::pk(entity) == 0;
        auto q = state().query(auto_key ? Sql::get().insert_auto : Sql::get().insert_all);
        detail::bind_entity(q, entity, 1, auto_key);
        return single_row(q);
    }

    T update_one(const T& entity) {
        auto q = state().query(Sql::get().update_by_pk);
        detail::bind_for_update(q, entity);
        if (!q.step())
            throw not_found(Info::pk(entity));
        T row = detail::read_entity<T>(q.stmt());
        q.run();
        return row;
    }

    std::optional<T> load_by_pk(const pk_type& id) {
        auto q = state().query(Sql::get().select_by_pk);
        q.bind(1, id);
        if (!q.step())
            return std::nullopt;
        return detail::read_entity<T>(q.stmt());
    }

    std::string list_sql(const detail::QueryParts& parts, std::string_view extra_column) const {
        std::string sql = "SELECT " + Sql::get().columns;
        sql += extra_column;
        sql += " FROM " + Sql::get().table + parts.where + parts.order;
        if (parts.page) {
            // A page needs a total order, or rows can repeat or vanish between pages.
            sql += parts.order.empty() ? " ORDER BY " : ", ";
            sql += detail::quote_identifier(Info::pk_name());
        }
        return sql + parts.page_sql();
    }

    std::vector<T> load_list(const detail::QueryParts& parts) {
        auto q = state().query(list_sql(parts, ""));
        parts.bind(q, detail::QueryParts::Paging::with_page);
        std::vector<T> out;
        while (q.step())
            out.push_back(detail::read_entity<T>(q.stmt()));
        return out;
    }

    std::pair<std::vector<T>, std::int64_t> load_list_and_count(const detail::QueryParts& parts) {
        std::vector<T> rows;
        std::int64_t total = 0;
        {
            // One statement: rows and total come from the same snapshot.
            auto q = state().query(list_sql(parts, ", COUNT(*) OVER ()"));
            parts.bind(q, detail::QueryParts::Paging::with_page);
            while (q.step()) {
                rows.push_back(detail::read_entity<T>(q.stmt()));
                total = sqlite3_column_int64(q.stmt(), static_cast<int>(Info::columns));
            }
        }
        if (rows.empty() && parts.page && (parts.page->offset > 0 || parts.page->limit == 0)) {
            total = load_count(parts);  // the page is empty, so the window had no row to say it
        }
        return {std::move(rows), total};
    }

    std::int64_t load_count(const detail::QueryParts& parts) {
        auto q = state().query(count_sql(parts));
        parts.bind(q, detail::QueryParts::Paging::without_page);
        q.step();
        return sqlite3_column_int64(q.stmt(), 0);
    }

    std::shared_ptr<detail::SessionState> session_;
    std::shared_ptr<detail::CacheCore> cache_;
    std::string space_;  // the session's database's key space in cache_ (CacheCore::key_space)
    const std::atomic<std::uint64_t>* table_commits_ = nullptr;  // DatabaseState::table_commits
};

}  // namespace ormcache
