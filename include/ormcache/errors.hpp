#pragma once
// The exception hierarchy of ormcache. Every exception the library throws derives from
// ormcache::Error; SQLite::Exception and nlohmann::json exceptions never escape raw.

#include <stdexcept>
#include <string>
#include <utility>

namespace ormcache {

/// Base of every exception thrown by ormcache.
class Error : public std::runtime_error {
  public:
    using std::runtime_error::runtime_error;
};

/// get/update/remove of a primary key that has no row.
class NotFoundError : public Error {
  public:
    using Error::Error;
};

/// A bad DatabaseConfig / CacheConfig, detected when the Database or CacheManager is built.
class ConfigError : public Error {
  public:
    using Error::Error;
};

/// A query that cannot be built: unknown operator, unmapped member, empty or oversized collection.
class QueryError : public Error {
  public:
    using Error::Error;
};

/// A model's JSON (or serializer bytes) that does not decode into the model.
class SerializationError : public Error {
  public:
    using Error::Error;
};

/// Any failure reported by the database. Keeps SQLite's primary and extended result codes, the
/// SQLSTATE (PostgreSQL) and the SQL that failed, so that callers can react to SQLITE_BUSY and
/// friends without parsing messages.
class DatabaseError : public Error {
  public:
    DatabaseError(const std::string& message, int code, int extended_code, std::string sql,
                  std::string sqlstate = {})
        : Error(message),
          code_(code),
          extended_code_(extended_code),
          sql_(std::move(sql)),
          sqlstate_(std::move(sqlstate)) {}

    /// SQLite primary result code (SQLITE_BUSY, SQLITE_CONSTRAINT, ...).
    int code() const noexcept { return code_; }
    /// SQLite extended result code (SQLITE_CONSTRAINT_UNIQUE, SQLITE_BUSY_SNAPSHOT, ...).
    int extended_code() const noexcept { return extended_code_; }
    /// The statement that failed (may be empty for connection-level failures).
    const std::string& sql() const noexcept { return sql_; }
    /// The five-character SQLSTATE ("23505", "40001", ...); empty on SQLite, which has none.
    const std::string& sqlstate() const noexcept { return sqlstate_; }
    /// Whether running the transaction again may succeed: true for TransactionConflictError
    /// only.
    virtual bool retryable() const noexcept { return false; }

  private:
    int code_;
    int extended_code_;
    std::string sql_;
    std::string sqlstate_;
};

/// A constraint violation (UNIQUE, NOT NULL, CHECK, FOREIGN KEY, PRIMARY KEY).
/// It is a DatabaseError, as in Python's DB-API, so one handler can catch both.
class IntegrityError : public DatabaseError {
  public:
    using DatabaseError::DatabaseError;
};

/// A serialization failure or a deadlock (SQLSTATE 40001, 40P01): the transaction was rolled
/// back and running it again may succeed. SQLite never throws it (SQLITE_BUSY stays a
/// DatabaseError).
class TransactionConflictError : public DatabaseError {
  public:
    using DatabaseError::DatabaseError;
    bool retryable() const noexcept override { return true; }
};

/// A cache backend failure (server down, timeout, corrupt payload). The cache layer absorbs
/// these: they are counted and handed to CacheConfig::on_error, never thrown out of a
/// repository call. Backends throw them; users see them only in on_error.
class CacheError : public Error {
  public:
    CacheError(const std::string& message, std::string backend, std::string operation)
        : Error(message), backend_(std::move(backend)), operation_(std::move(operation)) {}

    /// Registered name of the backend that failed ("redis", "memcached", ...).
    const std::string& backend() const noexcept { return backend_; }
    /// What was being done: "get", "set", "invalidate", "connect", "decode", ...
    const std::string& operation() const noexcept { return operation_; }

    /// True when this failure continues an outage already reported (the server has not
    /// answered since). It is counted in CacheStats::errors, but on_error is called once per
    /// incident, not for every call that fails while a server is down.
    bool continues_incident() const noexcept { return continues_incident_; }
    void set_continues_incident(bool value) noexcept { continues_incident_ = value; }

  private:
    std::string backend_;
    std::string operation_;
    bool continues_incident_ = false;
};

}  // namespace ormcache
