// The engine a connection string selects, the ConfigError for an engine this program does not
// have, connection strings in messages without their password, and the database error types.

#include <catch2/catch.hpp>

#include <filesystem>
#include <string>
#include <string_view>
#include <type_traits>

#include <ormcache/detail/engine/engine_kind.hpp>

#include "models.hpp"
#include "test_support.hpp"

using ormcache::detail::engine_kind_of;
using ormcache::detail::EngineKind;
using ormcache::detail::redact_connection_string;
using ormcache_test::TempDir;

namespace {

/// The message of the ConfigError that building a Database on `connection_string` throws.
std::string config_error_of(const std::string& connection_string) {
    try {
        ormcache::Database db{ormcache::DatabaseConfig{.connection_string = connection_string}};
    } catch (const ormcache::ConfigError& e) {
        return e.what();
    }
    FAIL("no ConfigError for '" << connection_string << "'");
    return {};
}

}  // namespace

TEST_CASE("Engine selection: which connection strings are PostgreSQL", "[engine]") {
    const auto [text, kind] = GENERATE(table<std::string_view, EngineKind>({
        // SQLite: paths, ":memory:", "file:" URIs, and anything else.
        {":memory:", EngineKind::sqlite},
        {"", EngineKind::sqlite},
        {"app.db", EngineKind::sqlite},
        {"/var/lib/app/app.db", EngineKind::sqlite},
        {"file:app.db?mode=memory&cache=shared", EngineKind::sqlite},
        {"file:/data/app.db?host=x", EngineKind::sqlite},
        {"FILE:dbname=x.db", EngineKind::sqlite},
        {"/data/dbname=x/app.db", EngineKind::sqlite},  // '=' in a directory name
        {"/data/x host=y/app.db", EngineKind::sqlite},  // '/' before the first '='
        {"./dbname=x.db", EngineKind::sqlite},
        {"C:\\data\\host=x.db", EngineKind::sqlite},
        {"data/myhost=x.db", EngineKind::sqlite},
        {"myhost=h", EngineKind::sqlite},            // not at a word start
        {"hostaddr=127.0.0.1", EngineKind::sqlite},  // neither host nor dbname
        {"user=app password=secret", EngineKind::sqlite},
        {"HOST=h DBNAME=d", EngineKind::sqlite},  // libpq keywords are lowercase
        {"mysql://h/db", EngineKind::sqlite},
        {"postgresql:/h/db", EngineKind::sqlite},
        // PostgreSQL: the two URI schemes (any case) and keyword/value strings.
        {"postgresql://app:secret@db.internal:5432/app", EngineKind::postgresql},
        {"postgres://h/db", EngineKind::postgresql},
        {"postgresql://", EngineKind::postgresql},
        {"POSTGRESQL://h/db", EngineKind::postgresql},
        {"Postgres://h/db", EngineKind::postgresql},
        {"  postgresql://h/db\n", EngineKind::postgresql},
        {"host=h", EngineKind::postgresql},
        {"dbname=app", EngineKind::postgresql},
        {"host=/var/run/postgresql dbname=app", EngineKind::postgresql},
        {"user=app dbname=app", EngineKind::postgresql},
        {"port=5432\thost=h", EngineKind::postgresql},
        {"host = h", EngineKind::postgresql},
        {"\t host=h ", EngineKind::postgresql},
        {"dbname=x.db", EngineKind::postgresql},  // a relative path reads as keywords
    }));
    CAPTURE(text);
    CHECK(engine_kind_of(text) == kind);
}

TEST_CASE("Engine selection: a connection string in a message never shows a password", "[engine]") {
    const auto [text, shown] = GENERATE(table<std::string_view, std::string_view>({
        {"postgresql://u:secret@h/db", "postgresql://u:***@h/db"},
        {"postgres://u:s%40cret@h:5432,h2:5433/db", "postgres://u:***@h:5432,h2:5433/db"},
        {"postgresql://u:sec@ret@h/db", "postgresql://u:***@h/db"},
        {"postgresql://u:@h/db", "postgresql://u:***@h/db"},
        {"postgresql://u@h/db", "postgresql://u@h/db"},
        {"postgresql://h/db?password=secret", "postgresql://h/db?password=***"},
        {"postgresql://h/db?user=u&password=secret&sslmode=require",
         "postgresql://h/db?user=u&password=***&sslmode=require"},
        {"postgresql://h/db?pass%77ord=secret", "postgresql://h/db?pass%77ord=***"},
        {"postgresql://h/db?sslpassword=secret", "postgresql://h/db?sslpassword=***"},
        {"postgresql://h/db?password=se@cret", "postgresql://h/db?password=***"},
        {"password=secret host=h", "password=*** host=h"},
        {"host=h password = secret dbname=d", "host=h password = *** dbname=d"},
        {"host=h password='sec ret\\' x' dbname=d", "host=h password=*** dbname=d"},
        {"host=h sslpassword=secret", "host=h sslpassword=***"},
        {"host=h passfile=/home/u/.pgpass", "host=h passfile=/home/u/.pgpass"},
        {"user=app password=secret", "user=app password=***"},
        {":memory:", ":memory:"},
        {"/data/app.db", "/data/app.db"},
        {"/data/dbname=x/app.db", "/data/dbname=x/app.db"},
        {"file:app.db?mode=memory&cache=shared", "file:app.db?mode=memory&cache=shared"},
    }));
    CAPTURE(text);
    CHECK(redact_connection_string(text) == shown);
}

TEST_CASE(
    "Engine selection: a PostgreSQL string without the engine is a ConfigError naming "
    "the header and the target, without the password",
    "[engine]") {
    const std::string text =
        GENERATE(as<std::string>{}, "postgresql://u:secret@h/db", "postgres://u:secret@h:5432/db",
                 "POSTGRESQL://u:secret@h/db", "postgresql://h/db?password=secret",
                 "postgresql://h/db?sslmode=require&password=secret", "password=secret host=h",
                 "dbname=app password='secret'", " host=h dbname=d user=u password=secret ");
    CAPTURE(text);
    const std::string message = config_error_of(text);
    CAPTURE(message);
    CHECK(message.find("<ormcache/engines/postgresql.hpp>") != std::string::npos);
    CHECK(message.find("ormcache::postgresql") != std::string::npos);
    CHECK(message.find("PostgreSQL") != std::string::npos);
    CHECK(message.find("secret") == std::string::npos);
}

TEST_CASE("Engine selection: SQLite connection strings open as before", "[engine]") {
    TempDir dir;
    SECTION(":memory:") {
        ormcache::Database db{ormcache::DatabaseConfig{.connection_string = ":memory:"}};
        db.create_all<app::User>();
        auto s = db.session();
        ormcache::Repository<app::User> users{s};
        users.add({.name = "Ada", .email = "ada@x"}, {.auto_commit = true});
        CHECK(users.count() == 1);
    }
    SECTION("a file path, also with '=' in a directory name") {
        const auto sub = dir.path() / "dbname=x host=y";
        std::filesystem::create_directories(sub);
        for (const std::string& path : {dir.file("app.db"), (sub / "app.db").string()}) {
            CAPTURE(path);
            {
                ormcache::Database db{ormcache::DatabaseConfig{.connection_string = path}};
                db.create_all<app::User>();
                auto s = db.session();
                ormcache::Repository<app::User>{s}.add({.name = "Ada", .email = "ada@x"},
                                                       {.auto_commit = true});
            }
            CHECK(std::filesystem::exists(path));
        }
    }
    SECTION("a file: URI") {
        const std::string uri = "file:" + dir.file("uri.db") + "?mode=rwc";
        ormcache::Database db{ormcache::DatabaseConfig{.connection_string = uri}};
        db.create_all<app::User>();
        auto s = db.session();
        ormcache::Repository<app::User> users{s};
        users.add({.name = "Ada", .email = "ada@x"}, {.auto_commit = true});
        CHECK(users.count() == 1);
        CHECK(std::filesystem::exists(dir.file("uri.db")));
    }
    SECTION("a path that cannot be opened is quoted as given") {
        const std::string path = dir.file("no-such-dir/app.db");
        const std::string message = config_error_of(path);
        CHECK(message.find("DatabaseConfig::connection_string '" + path + "' cannot be opened") !=
              std::string::npos);
    }
    SECTION("an empty string is still the empty-string error") {
        CHECK(config_error_of("").find("is empty") != std::string::npos);
    }
}

TEST_CASE("Errors: sqlstate(), retryable() and TransactionConflictError", "[engine]") {
    static_assert(std::is_base_of_v<ormcache::DatabaseError, ormcache::TransactionConflictError>);
    static_assert(std::is_base_of_v<ormcache::DatabaseError, ormcache::IntegrityError>);
    static_assert(!std::is_base_of_v<ormcache::DatabaseError, ormcache::SerializationError>);

    SECTION("a SQLite constraint violation has no SQLSTATE and is not retryable") {
        ormcache::Database db{ormcache::DatabaseConfig{.connection_string = ":memory:"}};
        db.create_all<app::User>();
        auto s = db.session();
        ormcache::Repository<app::User> users{s};
        users.add({.id = 1, .name = "Ada", .email = "ada@x"}, {.auto_commit = true});
        try {
            users.add({.id = 1, .name = "dup", .email = "d@x"}, {.auto_commit = true});
            FAIL("no IntegrityError");
        } catch (const ormcache::IntegrityError& e) {
            CHECK(e.sqlstate().empty());
            CHECK_FALSE(e.retryable());
            CHECK_FALSE(e.sql().empty());
        }
    }
    SECTION("a SQLite syntax error has no SQLSTATE and is not retryable") {
        ormcache::Database db{ormcache::DatabaseConfig{.connection_string = ":memory:"}};
        auto s = db.session();
        try {
            s.execute("SELEC 1");
            FAIL("no DatabaseError");
        } catch (const ormcache::DatabaseError& e) {
            CHECK(e.sqlstate().empty());
            CHECK_FALSE(e.retryable());
        }
    }
    SECTION("the constructors: four arguments as before, or five with the SQLSTATE") {
        const ormcache::DatabaseError plain("m", 5, 517, "COMMIT");
        CHECK(plain.sqlstate().empty());
        CHECK_FALSE(plain.retryable());
        const ormcache::IntegrityError integrity("m", 19, 2067, "INSERT", "23505");
        CHECK(integrity.sqlstate() == "23505");
        CHECK_FALSE(integrity.retryable());
        const ormcache::TransactionConflictError conflict("m", 5, 0, "UPDATE", "40001");
        const ormcache::DatabaseError& as_base = conflict;
        CHECK(as_base.retryable());
        CHECK(as_base.sqlstate() == "40001");
        CHECK(as_base.sql() == "UPDATE");
        CHECK(as_base.code() == 5);
    }
}
