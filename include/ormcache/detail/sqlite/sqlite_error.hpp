#pragma once
// Maps SQLite result codes onto ormcache's exception types. check() is the only place a result
// code becomes an exception, and wrap_sqlite() the only place SQLite::Exception is translated.

#include <string>
#include <string_view>
#include <utility>

#include "../../errors.hpp"
#include "sqlite_api.hpp"

namespace ormcache::detail {

[[noreturn]] inline void throw_database_error(int code, int extended_code, std::string_view what,
                                              std::string_view sql) {
    std::string message{what};
    if (!sql.empty()) {
        message.append(" [SQL: ").append(sql).append("]");
    }
    if ((code & 0xff) == SQLITE_CONSTRAINT) {
        throw IntegrityError(message, code & 0xff, extended_code, std::string{sql});
    }
    throw DatabaseError(message, code & 0xff, extended_code, std::string{sql});
}

/// Throws the mapped exception for a failed sqlite3_* call on `db`.
[[noreturn]] inline void throw_from_handle(sqlite3* db, int rc, std::string_view sql) {
    const char* msg = db != nullptr ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    const int extended = db != nullptr ? sqlite3_extended_errcode(db) : rc;
    throw_database_error(rc, extended, msg != nullptr ? msg : sqlite3_errstr(rc), sql);
}

inline void check(sqlite3* db, int rc, std::string_view sql) {
    if (rc != SQLITE_OK && rc != SQLITE_ROW && rc != SQLITE_DONE) {
        throw_from_handle(db, rc, sql);
    }
}

/// Runs `fn`, translating SQLite::Exception (thrown by SQLiteCpp) into ormcache's types.
template <class Fn>
decltype(auto) wrap_sqlite(std::string_view sql, Fn&& fn) {
    try {
        return std::forward<Fn>(fn)();
    } catch (const SQLite::Exception& e) {
        throw_database_error(e.getErrorCode(), e.getExtendedErrorCode(), e.what(), sql);
    }
}

}  // namespace ormcache::detail
