#pragma once
// The SQL a model needs, built once per model from its mapping, and the binding/reading of
// whole rows in mapping order.

#include <string>
#include <type_traits>

#include "../model.hpp"
#include "column_traits.hpp"
#include "session_state.hpp"
#include "sql_text.hpp"

namespace ormcache::detail {

template <Model T>
struct ModelSql {
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

    static const ModelSql& get() {
        static const ModelSql sql = build();
        return sql;
    }

  private:
    static ModelSql build() {
        using Info = ModelInfo<T>;
        ModelSql s;
        s.table = quote_identifier(Info::table);
        const std::string pk = quote_identifier(Info::pk_name());
        std::string defs, non_pk_cols, non_pk_marks, assignments, excluded;
        for_each_field<T>([&](const auto& f, auto index) {
            using M = std::remove_cv_t<typename std::remove_cvref_t<decltype(f)>::value_type>;
            const std::string name = quote_identifier(f.name);
            if (!s.columns.empty())
                s.columns += ", ";
            s.columns += name;
            if (!defs.empty())
                defs += ", ";
            defs += name;
            defs += ' ';
            defs += sql_type_name(sql_type_of<unwrap_optional_t<M>>());
            if constexpr (decltype(index)::value == 0) {
                defs += " PRIMARY KEY";
                if constexpr (!Info::integer_pk)
                    defs += " NOT NULL";
            } else {
                if constexpr (!is_optional_v<M>)
                    defs += " NOT NULL";
                if (!non_pk_cols.empty()) {
                    non_pk_cols += ", ";
                    non_pk_marks += ", ";
                    assignments += ", ";
                    excluded += ", ";
                }
                non_pk_cols += name;
                non_pk_marks += '?';
                assignments += name + " = ?";
                excluded += name + " = excluded." + name;
            }
        });
        // A model with nothing but its key still needs a SET list.
        if (assignments.empty()) {
            assignments = pk + " = " + pk;
            excluded = pk + " = excluded." + pk;
        }
        std::string all_marks = "?";
        for (std::size_t i = 1; i < Info::columns; ++i)
            all_marks += ", ?";
        s.returning = " RETURNING " + s.columns;
        s.create_table = "CREATE TABLE IF NOT EXISTS " + s.table + " (" + defs + ")";
        s.select = "SELECT " + s.columns + " FROM " + s.table;
        s.select_by_pk = s.select + " WHERE " + pk + " = ?";
        s.insert_all = "INSERT INTO " + s.table + " (" + s.columns + ") VALUES (" + all_marks +
                       ")" + s.returning;
        s.insert_auto = non_pk_cols.empty()
                            ? "INSERT INTO " + s.table + " DEFAULT VALUES" + s.returning
                            : "INSERT INTO " + s.table + " (" + non_pk_cols + ") VALUES (" +
                                  non_pk_marks + ")" + s.returning;
        s.update_by_pk =
            "UPDATE " + s.table + " SET " + assignments + " WHERE " + pk + " = ?" + s.returning;
        s.upsert = "INSERT INTO " + s.table + " (" + s.columns + ") VALUES (" + all_marks +
                   ") ON CONFLICT(" + pk + ") DO UPDATE SET " + excluded + s.returning;
        s.delete_by_pk = "DELETE FROM " + s.table + " WHERE " + pk + " = ?" + s.returning;
        s.delete_in_prefix = "DELETE FROM " + s.table + " WHERE " + pk + " IN (";
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
