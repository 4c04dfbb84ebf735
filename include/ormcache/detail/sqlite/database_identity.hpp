#pragma once
// The identity of a database in cache keys (docs/reference.md, "Database identity"). Two
// Database objects, in any processes, share cache entries exactly when their identities are
// equal; so the identity must be the same for every opening of one database and differ for
// every other database, a copy of the file included.
//
// For SQLite it is derived from two parts:
//   - a random id stored in the database itself (table ormcache_meta), written at the first
//     open that needs it: it survives restarts and names the database, not the path that
//     happens to reach it;
//   - the file's device and inode: a copy of the file carries the stored id with it, but not
//     the inode, so a copy (or a backup restored by replacing the file) never silently shares
//     the original's entries. A hard link or a rename on the same file system keeps both.
// In-memory databases have no inode; their stored id is enough (a ":memory:" database of
// ormcache's is new for every Database object, a shared-cache "mode=memory" one is shared by
// the Database objects of one process that name it).

#include <sys/stat.h>

#include <array>
#include <cstdint>
#include <memory>
#include <random>
#include <string>
#include <string_view>

#include "../../errors.hpp"
#include "../util/linkage.hpp"
#include "../util/sha256.hpp"
#include "sqlite_api.hpp"
#include "sqlite_error.hpp"

namespace ormcache::detail {

/// The table that keeps the stored id. Created only for databases a cache is attached to.
inline constexpr std::string_view identity_table{"ormcache_meta"};

/// What a user-chosen identity (DatabaseConfig::cache_identity) may contain: it becomes part
/// of every key, and every backend accepts these characters in a key.
ORMCACHE_INLINE bool valid_cache_identity(std::string_view id);
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE bool valid_cache_identity(std::string_view id) {
    if (id.empty() || id.size() > 64)
        return false;
    for (const char c : id) {
        const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
                        (c >= '0' && c <= '9') || c == '-' || c == '_' || c == '.';
        if (!ok)
            return false;
    }
    return true;
}
#endif

ORMCACHE_INLINE std::string hex_of(const std::uint8_t* bytes, std::size_t size);
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE std::string hex_of(const std::uint8_t* bytes, std::size_t size) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string out;
    out.reserve(size * 2);
    for (std::size_t i = 0; i < size; ++i) {
        out += digits[bytes[i] >> 4];
        out += digits[bytes[i] & 15];
    }
    return out;
}
#endif

/// 128 random bits as 32 hex digits.
ORMCACHE_INLINE std::string random_database_id();
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE std::string random_database_id() {
    std::random_device device;
    std::array<std::uint8_t, 16> bytes{};
    for (std::size_t i = 0; i < bytes.size(); i += 4) {
        const std::uint32_t r = device();
        for (std::size_t j = 0; j < 4; ++j)
            bytes[i + j] = static_cast<std::uint8_t>(r >> (8 * j));
    }
    return hex_of(bytes.data(), bytes.size());
}
#endif

/// The stored id of the database on `conn`, or an empty string when it has none yet.
ORMCACHE_INLINE std::string read_stored_database_id(sqlite3* conn);
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE std::string read_stored_database_id(sqlite3* conn) {
    const std::string sql =
        "SELECT value FROM " + std::string(identity_table) + " WHERE key = 'database_id'";
    sqlite3_stmt* raw = nullptr;
    int rc = sqlite3_prepare_v2(conn, sql.c_str(), static_cast<int>(sql.size()), &raw, nullptr);
    const std::unique_ptr<sqlite3_stmt, int (*)(sqlite3_stmt*)> stmt(raw, sqlite3_finalize);
    if (rc != SQLITE_OK) {
        // "no such table": never recorded. Anything else is a real error.
        if (std::string_view(sqlite3_errmsg(conn)).starts_with("no such table"))
            return {};
        check(conn, rc, sql);
    }
    rc = sqlite3_step(raw);
    if (rc == SQLITE_ROW) {
        const auto* text = reinterpret_cast<const char*>(sqlite3_column_text(raw, 0));
        return text != nullptr ? std::string(text) : std::string();
    }
    if (rc != SQLITE_DONE)
        check(conn, rc, sql);
    return {};
}
#endif

/// Reads the stored id, recording a new random one first if there is none. Two processes
/// opening a new database at once agree: the insert is conditional, and both read the winner.
ORMCACHE_INLINE std::string stored_database_id(SQLite::Database& conn);
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE std::string stored_database_id(SQLite::Database& conn) {
    if (auto id = read_stored_database_id(conn.getHandle()); !id.empty())
        return id;
    const std::string table(identity_table);
    conn.exec("BEGIN IMMEDIATE");
    try {
        conn.exec("CREATE TABLE IF NOT EXISTS " + table +
                  " (key TEXT PRIMARY KEY, value TEXT NOT NULL)");
        conn.exec("INSERT OR IGNORE INTO " + table + " (key, value) VALUES ('database_id', '" +
                  random_database_id() + "')");
        conn.exec("COMMIT");
    } catch (...) {
        try {
            conn.exec("ROLLBACK");
        } catch (...) {
            // The error that made us roll back is the one to report.
        }
        throw;
    }
    return read_stored_database_id(conn.getHandle());
}
#endif

/// The identity of the SQLite database open on `conn` (see the top of this file). Throws
/// ConfigError naming `display` (the connection string) when it can be neither read nor
/// recorded, e.g. a read-only file that has never been opened writable with a cache.
ORMCACHE_INLINE std::string sqlite_database_identity(SQLite::Database& conn, bool in_memory,
                                                     const std::string& display);
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE std::string sqlite_database_identity(SQLite::Database& conn, bool in_memory,
                                                     const std::string& display) {
    std::string material;
    try {
        material = stored_database_id(conn);
    } catch (const std::exception& e) {
        throw ConfigError("DatabaseConfig::connection_string '" + display +
                          "': cannot read or record the database's cache identity (table " +
                          std::string(identity_table) + "): " + e.what() +
                          "; open it writable once, or set DatabaseConfig::cache_identity");
    }
    if (!in_memory) {
        const char* file = sqlite3_db_filename(conn.getHandle(), "main");
        struct stat info {};
        if (file == nullptr || *file == '\0' || ::stat(file, &info) != 0) {
            throw ConfigError("DatabaseConfig::connection_string '" + display +
                              "': cannot stat the database file for its cache identity");
        }
        material += ':' + std::to_string(static_cast<std::uint64_t>(info.st_dev)) + ':' +
                    std::to_string(static_cast<std::uint64_t>(info.st_ino));
    }
    // 64 bits of SHA-256: short in every key, and two databases sharing one cache collide
    // with probability 2^-64 per pair.
    const auto digest = sha256(material);
    return hex_of(digest.data(), 8);
}
#endif

}  // namespace ormcache::detail
