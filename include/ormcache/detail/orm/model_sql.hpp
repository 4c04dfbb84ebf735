#pragma once
// The SQL a model needs, built once per model from its mapping, and the binding/reading of
// whole rows in mapping order.

#include <array>
#include <cstddef>
#include <initializer_list>
#include <span>
#include <string>
#include <string_view>
#include <type_traits>

#include "../../model.hpp"
#include "../sqlite/session_state.hpp"
#include "../util/linkage.hpp"
#include "column_traits.hpp"
#include "sql_text.hpp"

namespace ormcache::detail {

/// One column of a model, as the SQL builder needs it.
struct ColumnSpec {
    std::string_view name;  // unquoted
    SqlType type;
    bool nullable;  // std::optional<...> member
};

/// The SQL text of a model; built by build_model_sql(), which does not depend on the model type
/// (compiled once per translation unit, not once per model).
struct ModelSqlText {
    std::string table;    // quoted
    std::string columns;  // quoted, mapping order
    std::string create_table;
    std::string select;  // SELECT columns FROM table
    std::string select_by_pk;
    std::string insert_all;   // every column, pk included
    std::string insert_auto;  // pk left to SQLite (integer keys equal to 0)
    std::string update_by_pk;
    std::string upsert;
    std::string delete_by_pk;
    std::string delete_in_prefix;  // DELETE FROM table WHERE pk IN (
    std::string returning;
};

/// The parts, joined: one out-of-line loop instead of a chain of inlined operator+ temporaries.
ORMCACHE_INLINE std::string concat_sql(std::initializer_list<std::string_view> parts);
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE std::string concat_sql(std::initializer_list<std::string_view> parts) {
    std::size_t size = 0;
    for (const std::string_view part : parts)
        size += part.size();
    std::string out;
    out.reserve(size);
    for (const std::string_view part : parts)
        out.append(part);
    return out;
}
#endif

/// `cols` in mapping order, the primary key first.
ORMCACHE_INLINE void build_model_sql(ModelSqlText& s, std::string_view table, bool integer_pk,
                                     std::span<const ColumnSpec> cols);
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE void build_model_sql(ModelSqlText& s, std::string_view table, bool integer_pk,
                                     std::span<const ColumnSpec> cols) {
    s.table = quote_identifier(table);
    const std::string pk = quote_identifier(cols[0].name);
    std::string defs, non_pk_cols, non_pk_marks, assignments, excluded;
    for (std::size_t i = 0; i < cols.size(); ++i) {
        const std::string name = quote_identifier(cols[i].name);
        const std::string_view sep = i == 0 ? "" : ", ";
        s.columns.append(sep).append(name);
        defs.append(sep).append(name).append(" ").append(sql_type_name(cols[i].type));
        if (i == 0) {
            defs.append(integer_pk ? " PRIMARY KEY" : " PRIMARY KEY NOT NULL");
            continue;
        }
        if (!cols[i].nullable)
            defs.append(" NOT NULL");
        const std::string_view non_pk_sep = non_pk_cols.empty() ? "" : ", ";
        non_pk_cols.append(non_pk_sep).append(name);
        non_pk_marks.append(non_pk_sep).append("?");
        assignments.append(non_pk_sep).append(name).append(" = ?");
        excluded.append(non_pk_sep).append(name).append(" = excluded.").append(name);
    }
    // A model with nothing but its key still needs a SET list.
    if (assignments.empty()) {
        assignments = concat_sql({pk, " = ", pk});
        excluded = concat_sql({pk, " = excluded.", pk});
    }
    std::string all_marks = "?";
    for (std::size_t i = 1; i < cols.size(); ++i)
        all_marks.append(", ?");
    s.returning = concat_sql({" RETURNING ", s.columns});
    s.create_table = concat_sql({"CREATE TABLE IF NOT EXISTS ", s.table, " (", defs, ")"});
    s.select = concat_sql({"SELECT ", s.columns, " FROM ", s.table});
    s.select_by_pk = concat_sql({s.select, " WHERE ", pk, " = ?"});
    s.insert_all = concat_sql(
        {"INSERT INTO ", s.table, " (", s.columns, ") VALUES (", all_marks, ")", s.returning});
    s.insert_auto = non_pk_cols.empty()
                        ? concat_sql({"INSERT INTO ", s.table, " DEFAULT VALUES", s.returning})
                        : concat_sql({"INSERT INTO ", s.table, " (", non_pk_cols, ") VALUES (",
                                      non_pk_marks, ")", s.returning});
    s.update_by_pk =
        concat_sql({"UPDATE ", s.table, " SET ", assignments, " WHERE ", pk, " = ?", s.returning});
    s.upsert = concat_sql({"INSERT INTO ", s.table, " (", s.columns, ") VALUES (", all_marks,
                           ") ON CONFLICT(", pk, ") DO UPDATE SET ", excluded, s.returning});
    s.delete_by_pk = concat_sql({"DELETE FROM ", s.table, " WHERE ", pk, " = ?", s.returning});
    s.delete_in_prefix = concat_sql({"DELETE FROM ", s.table, " WHERE ", pk, " IN ("});
}
#endif

template <Model T>
struct ModelSql : ModelSqlText {
    static const ModelSql& get() {
        static const ModelSql sql = build();
        return sql;
    }

  private:
    static ModelSql build() {
        using Info = ModelInfo<T>;
        std::array<ColumnSpec, Info::columns> cols{};
        for_each_field<T>([&](const auto& f, auto index) {
            using M = std::remove_cv_t<typename std::remove_cvref_t<decltype(f)>::value_type>;
            cols[decltype(index)::value] = {f.name, sql_type_of<unwrap_optional_t<M>>(),
                                            is_optional_v<M>};
        });
        ModelSql s;
        build_model_sql(s, Info::table, Info::integer_pk, cols);
        return s;
    }
};

/// Binds the entity's columns in mapping order from parameter `first`; returns the next index.
template <Model T>
int bind_entity(Query& q, const T& entity, int first, bool skip_pk) {
    int index = first;
    for_each_field<T>([&](const auto& f, auto i) {
        if (decltype(i)::value == 0 && skip_pk)
            return;
        q.bind(index++, entity.*(f.member));
    });
    return index;
}

/// Binds the non-key columns, then the key (the UPDATE ... SET ... WHERE pk = ? order).
template <Model T>
void bind_for_update(Query& q, const T& entity) {
    int index = 1;
    if constexpr (ModelInfo<T>::columns > 1)
        index = bind_entity(q, entity, 1, true);
    q.bind(index, ModelInfo<T>::pk(entity));
}

/// Reads the model's columns (mapping order) from the current row, starting at column `first`.
template <Model T>
T read_entity(sqlite3_stmt* stmt, int first = 0) {
    T entity{};
    for_each_field<T>([&](const auto& f, auto i) {
        using M = std::remove_cv_t<typename std::remove_cvref_t<decltype(f)>::value_type>;
        entity.*(f.member) = read_value<M>(stmt, first + static_cast<int>(decltype(i)::value));
    });
    return entity;
}

}  // namespace ormcache::detail
