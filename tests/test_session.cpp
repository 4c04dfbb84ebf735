// Sessions: transactions (lazy and explicit), savepoints, lifetime, raw SQL, connection settings.

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <future>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "models.hpp"
#include "test_support.hpp"

using namespace std::chrono_literals;
using ormcache_test::CommitLog;
using ormcache_test::SqlLog;
using ormcache_test::TempDir;

namespace {

ormcache::DatabaseConfig file_config(const TempDir& dir, SqlLog* log = nullptr) {
    ormcache::DatabaseConfig config{.connection_string = dir.file("session.db")};
    if (log != nullptr)
        config.on_query = log->callback();
    return config;
}

app::User user(std::string name) {
    return app::User{.name = name, .email = name + "@example.org"};
}

std::int64_t count_users(ormcache::Session& s) {
    return ormcache::Repository<app::User>{s}.count();
}

bool logged(const SqlLog& log, std::string_view sql) {
    const auto all = log.statements();
    return std::find(all.begin(), all.end(), sql) != all.end();
}

/// The DatabaseError code a call throws, or -1 if it throws nothing.
template <class Fn>
int error_code_of(Fn&& fn) {
    try {
        fn();
    } catch (const ormcache::DatabaseError& e) {
        return e.code();
    }
    return -1;
}

}  // namespace

TEST_CASE("Session: commit and rollback are no-ops without a transaction", "[session]") {
    TempDir dir;
    SqlLog log;
    ormcache::Database db{file_config(dir, &log)};
    db.create_all<app::User>();
    CommitLog commits{db};
    auto s = db.session();
    log.clear();

    CHECK_FALSE(s.in_transaction());
    CHECK_NOTHROW(s.commit());
    CHECK_NOTHROW(s.rollback());
    CHECK_NOTHROW(s.commit());
    CHECK_FALSE(s.in_transaction());
    CHECK(log.size() == 0);  // no COMMIT/ROLLBACK sent to SQLite
    CHECK(commits.size() == 0);

    // Reads outside a transaction do not open one.
    ormcache::Repository<app::User> users{s};
    CHECK(users.list().empty());
    CHECK(users.count() == 0);
    CHECK_FALSE(s.in_transaction());
    CHECK(log.count("BEGIN") == 0);
}

TEST_CASE("Session: the first write begins a transaction with BEGIN IMMEDIATE", "[session]") {
    TempDir dir;
    SqlLog log;
    ormcache::Database db{file_config(dir, &log)};
    db.create_all<app::User>();
    auto s = db.session();
    ormcache::Repository<app::User> users{s};
    log.clear();

    const auto ada = users.add(user("ada"));
    CHECK(ada.id > 0);
    CHECK(s.in_transaction());
    auto statements = log.statements();
    REQUIRE(statements.size() >= 2);
    CHECK(statements[0] == "BEGIN IMMEDIATE");
    CHECK(statements[1].rfind("INSERT INTO", 0) == 0);

    users.add(user("bob"));
    users.update(app::User{.id = ada.id, .name = "ada2", .email = "x@y"});
    CHECK(log.count("BEGIN") == 1);  // one transaction for all three writes

    // Not visible to another session before the commit, visible after it.
    auto other = db.session();
    CHECK(count_users(other) == 0);
    s.commit();
    CHECK_FALSE(s.in_transaction());
    CHECK(logged(log, "COMMIT"));
    CHECK(count_users(other) == 2);

    // The next write begins a new transaction.
    log.clear();
    users.remove(ada.id);
    CHECK(s.in_transaction());
    CHECK(log.statements().front() == "BEGIN IMMEDIATE");
    s.rollback();
    CHECK_FALSE(s.in_transaction());
    CHECK(logged(log, "ROLLBACK"));
    CHECK(count_users(other) == 2);
}

TEST_CASE("Session: begin() takes one snapshot for every read until the transaction ends",
          "[session]") {
    TempDir dir;
    ormcache::Database db{file_config(dir)};
    db.create_all<app::User>();
    auto reader = db.session();
    auto writer = db.session();
    ormcache::Repository<app::User> r{reader};
    ormcache::Repository<app::User> w{writer};
    w.add(user("before"));
    writer.commit();

    const bool end_with_commit = GENERATE(true, false);
    CAPTURE(end_with_commit);

    reader.begin();
    CHECK(reader.in_transaction());
    // Written and committed after begin(), before the reader's first read: the snapshot is the
    // one of begin(), so the reader must not see it.
    const auto later = w.add(user("after-begin"));
    writer.commit();
    CHECK(r.count() == 1);
    CHECK_FALSE(r.get_or_none(later.id).has_value());

    const auto third = w.add(user("after-read"));
    writer.commit();
    CHECK(r.count() == 1);
    CHECK(r.list().size() == 1);
    CHECK_FALSE(r.exists(ormcache::ComparisonFilter{&app::User::id, "=", third.id}));

    if (end_with_commit) {
        reader.commit();
    } else {
        reader.rollback();
    }
    CHECK_FALSE(reader.in_transaction());
    CHECK(r.count() == 3);
    CHECK(r.get(later.id).name == "after-begin");
}

TEST_CASE("Session: begin() inside an open transaction throws DatabaseError", "[session]") {
    TempDir dir;
    ormcache::Database db{file_config(dir)};
    db.create_all<app::User>();
    auto s = db.session();

    SECTION("explicit transaction") {
        s.begin();
        CHECK_THROWS_AS(s.begin(), ormcache::DatabaseError);
        CHECK(s.in_transaction());
        s.rollback();
        CHECK_NOTHROW(s.begin());
        s.rollback();
    }
    SECTION("lazy write transaction") {
        ormcache::Repository<app::User> users{s};
        users.add(user("a"));
        CHECK_THROWS_AS(s.begin(), ormcache::DatabaseError);
        // The failed begin() must not have ended the write transaction.
        CHECK(s.in_transaction());
        s.commit();
        CHECK(users.count() == 1);
    }
}

TEST_CASE("Session: nested savepoints three deep", "[session][savepoint]") {
    TempDir dir;
    ormcache::Database db{file_config(dir)};
    db.create_all<app::User>();
    auto s = db.session();
    ormcache::Repository<app::User> users{s};

    const auto a = users.add(user("a"));  // outer transaction
    std::int64_t b = 0, c = 0, d = 0, e = 0;
    {
        auto sp1 = s.begin_nested();
        CHECK(sp1.active());
        b = users.add(user("b")).id;
        {
            auto sp2 = s.begin_nested();
            c = users.add(user("c")).id;
            {
                auto sp3 = s.begin_nested();
                d = users.add(user("d")).id;
                sp3.commit();  // d joins sp2
                CHECK_FALSE(sp3.active());
            }
            CHECK(users.get_or_none(d).has_value());
            sp2.rollback();  // discards c and, with it, d
            CHECK_FALSE(sp2.active());
        }
        CHECK_FALSE(users.get_or_none(c).has_value());
        CHECK_FALSE(users.get_or_none(d).has_value());
        CHECK(users.get_or_none(b).has_value());
        e = users.add(user("e")).id;
        sp1.commit();
    }
    CHECK(s.in_transaction());
    s.commit();

    auto other = db.session();
    ormcache::Repository<app::User> o{other};
    std::vector<std::string> names;
    for (const auto& u : o.list(ormcache::OrderBy{&app::User::id, ormcache::Sort::asc})) {
        names.push_back(u.name);
    }
    CHECK(names == std::vector<std::string>{"a", "b", "e"});
    CHECK(o.get(a.id).name == "a");
    CHECK(o.get(e).name == "e");
}

TEST_CASE("Session: a savepoint rolls back when destroyed without commit", "[session][savepoint]") {
    TempDir dir;
    SqlLog log;
    ormcache::Database db{file_config(dir, &log)};
    db.create_all<app::User>();
    auto s = db.session();
    ormcache::Repository<app::User> users{s};
    const auto kept = users.add(user("kept"));
    std::int64_t dropped = 0;
    {
        auto sp = s.begin_nested();
        dropped = users.add(user("dropped")).id;
        CHECK(users.count() == 2);
        log.clear();
    }
    CHECK(log.count("ROLLBACK TO") == 1);
    CHECK(s.in_transaction());  // only the savepoint ended
    CHECK(users.count() == 1);
    CHECK_FALSE(users.get_or_none(dropped).has_value());
    s.commit();
    auto other = db.session();
    ormcache::Repository<app::User> o{other};
    CHECK(o.count() == 1);
    CHECK(o.get(kept.id).name == "kept");
}

TEST_CASE("Session: begin_nested() without a transaction begins one", "[session][savepoint]") {
    TempDir dir;
    ormcache::Database db{file_config(dir)};
    db.create_all<app::User>();
    auto s = db.session();
    ormcache::Repository<app::User> users{s};
    auto sp = s.begin_nested();
    CHECK(s.in_transaction());
    users.add(user("x"));
    sp.commit();
    // Releasing the only savepoint must not have committed: the session's transaction is open.
    CHECK(s.in_transaction());
    auto other = db.session();
    CHECK(count_users(other) == 0);
    s.commit();
    CHECK(count_users(other) == 1);
}

TEST_CASE("Session: a savepoint can be ended only once", "[session][savepoint]") {
    TempDir dir;
    ormcache::Database db{file_config(dir)};
    db.create_all<app::User>();
    auto s = db.session();
    ormcache::Repository<app::User> users{s};

    auto sp = s.begin_nested();
    users.add(user("x"));
    sp.commit();
    CHECK_THROWS_AS(sp.commit(), ormcache::Error);
    CHECK_THROWS_AS(sp.rollback(), ormcache::Error);
    CHECK(users.count() == 1);  // the second calls did not undo the released savepoint

    auto sp2 = s.begin_nested();
    users.add(user("y"));
    sp2.rollback();
    CHECK_THROWS_AS(sp2.rollback(), ormcache::Error);
    CHECK_THROWS_AS(sp2.commit(), ormcache::Error);
    CHECK(users.count() == 1);

    // A moved-from savepoint is inactive; the moved-to one owns the rollback.
    std::int64_t z = 0;
    {
        auto sp3 = s.begin_nested();
        z = users.add(user("z")).id;
        ormcache::Savepoint moved{std::move(sp3)};
        CHECK_FALSE(sp3.active());  // NOLINT(bugprone-use-after-move)
        CHECK(moved.active());
    }
    CHECK_FALSE(users.get_or_none(z).has_value());
    s.commit();
    CHECK(users.count() == 1);
}

TEST_CASE("Session: destroying a session with an open transaction rolls it back",
          "[session][lifetime]") {
    TempDir dir;
    SqlLog log;
    ormcache::Database db{file_config(dir, &log)};
    db.create_all<app::User>();
    CommitLog commits{db};
    {
        auto s = db.session();
        ormcache::Repository<app::User> users{s};
        users.add(user("ghost"));
        auto sp = s.begin_nested();
        users.add(user("ghost2"));
        log.clear();
    }
    CHECK(logged(log, "ROLLBACK"));
    CHECK(commits.size() == 0);
    auto other = db.session();
    CHECK(count_users(other) == 0);
    // The write lock was released: another session can write at once.
    ormcache::Repository<app::User> o{other};
    o.add(user("real"));
    other.commit();
    CHECK(commits.size() == 1);
    CHECK(count_users(other) == 1);
}

TEST_CASE("Session: move construction and move assignment", "[session][lifetime]") {
    TempDir dir;
    ormcache::Database db{file_config(dir)};
    db.create_all<app::User>();
    CommitLog commits{db};

    SECTION("move construction keeps the open transaction and the repositories") {
        auto s = db.session();
        ormcache::Repository<app::User> users{s};
        users.add(user("a"));
        ormcache::Session moved{std::move(s)};
        CHECK(moved.in_transaction());
        CHECK_FALSE(s.in_transaction());                          // NOLINT(bugprone-use-after-move)
        CHECK_THROWS_AS(s.commit(), ormcache::Error);             // NOLINT(bugprone-use-after-move)
        CHECK_THROWS_AS(s.connection(), ormcache::Error);         // NOLINT(bugprone-use-after-move)
        CHECK_THROWS_AS(s.execute("SELECT 1"), ormcache::Error);  // NOLINT(bugprone-use-after-move)
        users.add(user("b"));  // the repository follows the session's state, not the object
        moved.commit();
        CHECK(commits.size() == 1);
        CHECK(commits.last().size() == 2);
        auto other = db.session();
        CHECK(count_users(other) == 2);
    }
    SECTION("move assignment rolls back the target's transaction and takes the source's") {
        auto target = db.session();
        ormcache::Repository<app::User> target_users{target};
        target_users.add(user("discarded"));
        auto source = db.session();
        // The target holds the write lock, so the source only writes after the assignment.
        target = std::move(source);
        CHECK_FALSE(target.in_transaction());
        CHECK_THROWS_AS(target_users.count(), ormcache::Error);  // its session was closed
        ormcache::Repository<app::User> users{target};
        users.add(user("kept"));
        target.commit();
        CHECK(commits.size() == 1);
        auto other = db.session();
        ormcache::Repository<app::User> o{other};
        REQUIRE(o.count() == 1);
        CHECK(o.list().front().name == "kept");
    }
    SECTION("self move assignment is harmless") {
        auto s = db.session();
        ormcache::Repository<app::User> users{s};
        users.add(user("a"));
        auto& alias = s;
        s = std::move(alias);
        CHECK(s.in_transaction());
        s.commit();
        CHECK(users.count() == 1);
    }
}

TEST_CASE("Session: a repository whose session was destroyed throws ormcache::Error",
          "[session][lifetime]") {
    TempDir dir;
    ormcache::Database db{file_config(dir)};
    db.create_all<app::User>();
    std::optional<ormcache::Session> s{db.session()};
    ormcache::Repository<app::User> users{*s};
    const auto a = users.add(user("a"));
    s->commit();
    s.reset();
    CHECK_THROWS_AS(users.get(a.id), ormcache::Error);
    CHECK_THROWS_AS(users.get_or_none(a.id), ormcache::Error);
    CHECK_THROWS_AS(users.list(), ormcache::Error);
    CHECK_THROWS_AS(users.count(), ormcache::Error);
    CHECK_THROWS_AS(users.add(user("b")), ormcache::Error);
    CHECK_THROWS_AS(users.remove(a.id), ormcache::Error);
    // Not NotFoundError: the failure is about the session, not the row.
    try {
        users.get(a.id);
    } catch (const ormcache::NotFoundError&) {
        FAIL("NotFoundError for a closed session");
    } catch (const ormcache::Error&) {
    }
}

TEST_CASE("Session: execute() binds parameters and returns the changed-row count",
          "[session][execute]") {
    TempDir dir;
    SqlLog log;
    ormcache::Database db{file_config(dir, &log)};
    db.create_all<app::User>();
    auto s = db.session();
    ormcache::Repository<app::User> users{s};
    for (int i = 0; i < 3; ++i)
        users.add(app::User{.name = "u" + std::to_string(i), .email = "e", .age = 20 + i});
    s.commit();
    log.clear();

    // A write begins the transaction first (BEGIN IMMEDIATE), like a repository write.
    const std::string new_name = "renamed";
    CHECK(s.execute("UPDATE users SET name = ? WHERE age >= ?", new_name, 21) == 2);
    CHECK(s.in_transaction());
    const auto statements = log.statements();
    REQUIRE(statements.size() == 2);
    CHECK(statements[0] == "BEGIN IMMEDIATE");
    CHECK(statements[1] == "UPDATE users SET name = ? WHERE age >= ?");
    CHECK(users.count(ormcache::ComparisonFilter{&app::User::name, "=", std::string("renamed")}) ==
          2);
    auto other = db.session();
    ormcache::Repository<app::User> o{other};
    CHECK(o.count(ormcache::ComparisonFilter{&app::User::name, "=", std::string("renamed")}) == 0);

    CHECK(s.execute("UPDATE users SET age = ? WHERE name = ?", nullptr, "u0") == 1);
    CHECK(s.execute("UPDATE users SET age = ? WHERE id = ?", std::nullopt, 999) == 0);
    CHECK(s.execute("DELETE FROM users WHERE age IS NULL") == 1);
    s.commit();
    CHECK(o.count() == 2);
    CHECK(o.count(ormcache::ComparisonFilter{&app::User::name, "=", std::string("renamed")}) == 2);

    // Reads do not begin a transaction.
    log.clear();
    s.execute("SELECT count(*) FROM users WHERE age > ?", 0);
    CHECK_FALSE(s.in_transaction());
    CHECK(log.count("BEGIN") == 0);

    // Wrong arity, several statements, constraint violations.
    CHECK_THROWS_AS(s.execute("UPDATE users SET name = ? WHERE id = ?", "x"), ormcache::QueryError);
    CHECK_THROWS_AS(s.execute("UPDATE users SET name = 'x'", 1), ormcache::QueryError);
    CHECK_THROWS_AS(s.execute("SELECT 1; SELECT 2"), ormcache::QueryError);
    CHECK_THROWS_AS(
        s.execute("INSERT INTO users (id, name, email, created_at) VALUES (?, 'n', 'e', 0)",
                  users.list().front().id),
        ormcache::IntegrityError);
    CHECK_THROWS_AS(s.execute("SELECT * FROM no_such_table"), ormcache::DatabaseError);
    s.rollback();
}

TEST_CASE("Session: execute() counts only the rows its own statement changed",
          "[session][execute]") {
    TempDir dir;
    ormcache::Database db{file_config(dir)};
    db.create_all<app::User>();
    auto s = db.session();
    CHECK(s.execute("INSERT INTO users (name, email, created_at) VALUES ('a', 'e', 0), "
                    "('b', 'e', 0), ('c', 'e', 0)") == 3);
    // sqlite3_changes() still reports the last INSERT/UPDATE/DELETE after statements that
    // change no rows; execute() must report what *this* statement changed.
    CHECK(s.execute("SELECT count(*) FROM users") == 0);
    CHECK(s.execute("CREATE TABLE other (x INTEGER)") == 0);
    CHECK(s.execute("UPDATE users SET name = 'z' WHERE id > 100") == 0);
    s.commit();
}

TEST_CASE("Session: connection() is the session's own connection", "[session][connection]") {
    TempDir dir;
    ormcache::Database db{file_config(dir)};
    db.create_all<app::User>();
    auto s = db.session();
    SQLite::Database& raw = s.connection();
    CHECK(&raw == &s.connection());
    auto other = db.session();
    CHECK(&other.connection() != &raw);
    CHECK(other.connection().getHandle() != raw.getHandle());

    ormcache::Repository<app::User> users{s};
    // Autocommit raw write: visible to the session at once, and to others (committed).
    raw.exec("INSERT INTO users (id, name, email, created_at) VALUES (7, 'raw', 'r@x', 0)");
    CHECK(users.get(7).name == "raw");
    CHECK(count_users(other) == 1);

    // Raw write inside the session's transaction: visible to the session's reads only.
    users.add(user("repo"));
    raw.exec("UPDATE users SET name = 'raw2' WHERE id = 7");
    CHECK(s.in_transaction());
    CHECK(users.get(7).name == "raw2");
    CHECK(users.count() == 2);
    ormcache::Repository<app::User> o{other};
    CHECK(o.get(7).name == "raw");
    CHECK(o.count() == 1);
    s.commit();
    CHECK(o.get(7).name == "raw2");
    CHECK(o.count() == 2);

    // A raw BEGIN is the session's transaction too.
    raw.exec("BEGIN");
    CHECK(s.in_transaction());
    s.rollback();
    CHECK_FALSE(s.in_transaction());
}

TEST_CASE("Session: \":memory:\" is one database shared by the sessions of a Database",
          "[session][memory]") {
    ormcache::Database db{ormcache::DatabaseConfig{.connection_string = ":memory:"}};
    db.create_all<app::User>();
    std::int64_t id = 0;
    {
        auto s1 = db.session();
        ormcache::Repository<app::User> users{s1};
        id = users.add(user("shared")).id;
        // (The memdb VFS does not let another connection start a read while a write
        // transaction is open, so the other session reads after the commit.)
        s1.commit();
        auto s2 = db.session();
        CHECK(s2.connection().tableExists("users"));  // the schema is shared
        CHECK(ormcache::Repository<app::User>{s2}.get(id).name == "shared");
        // Raw SQL on one session's connection reaches the same database too.
        s2.connection().exec("UPDATE users SET name = 'raw' WHERE id = " + std::to_string(id));
        CHECK(users.get(id).name == "raw");
    }
    // Every session is gone: the database lives as long as the Database object.
    auto s3 = db.session();
    CHECK(ormcache::Repository<app::User>{s3}.get(id).name == "raw");

    // Another Database on ":memory:" is another database.
    ormcache::Database db2{ormcache::DatabaseConfig{.connection_string = ":memory:"}};
    auto t = db2.session();
    CHECK_FALSE(t.connection().tableExists("users"));
    db2.create_all<app::User>();
    CHECK(count_users(t) == 0);
    ormcache::Repository<app::User>{t}.add(user("only-in-db2"));
    t.commit();
    CHECK(count_users(s3) == 1);
    CHECK(count_users(t) == 1);
}

TEST_CASE("Session: foreign keys are on in every session", "[session][config]") {
    TempDir dir;
    const bool in_memory = GENERATE(false, true);
    CAPTURE(in_memory);
    ormcache::Database db{in_memory
                              ? ormcache::DatabaseConfig{}
                              : ormcache::DatabaseConfig{.connection_string = dir.file("fk.db")}};
    db.create_all<app::Author>();
    std::vector<ormcache::Session> sessions;
    for (int i = 0; i < 3; ++i)
        sessions.push_back(db.session());
    for (auto& s : sessions) {
        CHECK(s.connection().execAndGet("PRAGMA foreign_keys").getInt() == 1);
    }
    auto& s = sessions.front();
    s.execute(
        "CREATE TABLE IF NOT EXISTS book_refs (id INTEGER PRIMARY KEY, author_id INTEGER NOT NULL "
        "REFERENCES authors(id))");
    s.commit();
    auto& s2 = sessions.back();
    CHECK_THROWS_AS(s2.execute("INSERT INTO book_refs (author_id) VALUES (?)", 42),
                    ormcache::IntegrityError);
    s2.rollback();
}

TEST_CASE("Session: DDL runs on session connections", "[session][connection]") {
    // The session's authorizer (which makes DELETE name its rows) must not block DDL.
    TempDir dir;
    ormcache::Database db{file_config(dir)};
    db.create_all<app::User>();
    auto s = db.session();
    s.execute("CREATE TABLE scratch (id INTEGER PRIMARY KEY, v TEXT)");
    s.execute("CREATE VIEW scratch_view AS SELECT v FROM scratch");
    s.execute("CREATE TEMP TABLE temp_scratch (id INTEGER PRIMARY KEY)");
    s.commit();
    auto other = db.session();
    CHECK(other.connection().tableExists("scratch"));
    s.execute("DROP VIEW scratch_view");
    s.execute("DROP TABLE scratch");
    s.execute("DROP TABLE temp.temp_scratch");
    s.commit();
    CHECK_FALSE(s.connection().tableExists("scratch"));
    CHECK_FALSE(other.connection().tableExists("scratch"));
    CHECK(other.connection()
              .execAndGet("SELECT count(*) FROM sqlite_schema WHERE name = "
                          "'scratch_view'")
              .getInt() == 0);
    CHECK(s.connection().execAndGet("SELECT count(*) FROM sqlite_temp_schema").getInt() == 0);
    s.connection().exec("CREATE TABLE raw_scratch (id INTEGER PRIMARY KEY)");
    s.connection().exec("DROP TABLE raw_scratch");
    CHECK_FALSE(other.connection().tableExists("raw_scratch"));
}

TEST_CASE("Session: file databases are in WAL mode", "[session][config]") {
    TempDir dir;
    {
        ormcache::Database db{ormcache::DatabaseConfig{.connection_string = dir.file("wal.db")}};
        auto s = db.session();
        CHECK(s.connection().execAndGet("PRAGMA journal_mode").getString() == "wal");
        auto s2 = db.session();
        CHECK(s2.connection().execAndGet("PRAGMA journal_mode").getString() == "wal");
    }
    // WAL is a property of the file: it holds when the database is opened again.
    ormcache::Database again{ormcache::DatabaseConfig{.connection_string = dir.file("wal.db")}};
    auto s = again.session();
    CHECK(s.connection().execAndGet("PRAGMA journal_mode").getString() == "wal");
}

TEST_CASE("Session: a writer waits for another writer up to busy_timeout", "[session][busy]") {
    TempDir dir;
    // on_query reports each statement just before it is stepped: the second writer's
    // BEGIN IMMEDIATE announces that it is about to contend for the lock.
    std::promise<void> contending;
    std::atomic<bool> armed{false};
    ormcache::DatabaseConfig config{.connection_string = dir.file("busy.db")};
    config.busy_timeout = 10s;
    config.on_query = [&](std::string_view sql) {
        if (sql == "BEGIN IMMEDIATE" && armed.exchange(false))
            contending.set_value();
    };
    ormcache::Database db{config};
    db.create_all<app::User>();

    auto first = db.session();
    ormcache::Repository<app::User> users{first};
    users.add(user("first"));  // holds the write lock
    REQUIRE(first.in_transaction());

    armed = true;
    auto second = std::async(std::launch::async, [&] {
        auto s = db.session();
        s.execute("INSERT INTO users (name, email, created_at) VALUES ('second', 'e', 0)");
        s.commit();
    });
    contending.get_future().wait();
    // The second writer is blocked on the lock (it neither finished nor failed).
    CHECK(second.wait_for(300ms) == std::future_status::timeout);
    first.commit();
    REQUIRE(second.wait_for(30s) == std::future_status::ready);
    CHECK_NOTHROW(second.get());
    CHECK(users.count() == 2);
}

TEST_CASE("Session: busy_timeout = 0 fails at once with SQLITE_BUSY", "[session][busy]") {
    TempDir dir;
    ormcache::DatabaseConfig config{.connection_string = dir.file("busy0.db")};
    config.busy_timeout = 0ms;
    ormcache::Database db{config};
    db.create_all<app::User>();
    auto first = db.session();
    ormcache::Repository<app::User> users{first};
    users.add(user("first"));

    auto second = db.session();
    ormcache::Repository<app::User> users2{second};
    const auto started = std::chrono::steady_clock::now();
    CHECK(error_code_of([&] { users2.add(user("second")); }) == SQLITE_BUSY);
    CHECK(error_code_of([&] {
              second.execute("INSERT INTO users (name, email, created_at) VALUES ('x', 'e', 0)");
          }) == SQLITE_BUSY);
    CHECK(std::chrono::steady_clock::now() - started < 2s);
    CHECK_FALSE(second.in_transaction());
    // Reads are not blocked by a writer in WAL mode.
    CHECK(users2.count() == 0);

    first.commit();
    CHECK_NOTHROW(users2.add(user("second")));
    second.commit();
    CHECK(users.count() == 2);
}

TEST_CASE("Session: invalid configurations throw ConfigError", "[session][config]") {
    TempDir dir;
    CHECK_THROWS_AS(ormcache::Database(ormcache::DatabaseConfig{.connection_string = ""}),
                    ormcache::ConfigError);
    ormcache::DatabaseConfig negative{.connection_string = dir.file("neg.db")};
    negative.busy_timeout = -1ms;
    CHECK_THROWS_AS(ormcache::Database(negative), ormcache::ConfigError);
    CHECK_THROWS_AS(ormcache::Database(ormcache::DatabaseConfig{
                        .connection_string = dir.file("no-such-directory/deeper/db.sqlite")}),
                    ormcache::ConfigError);
    // ConfigError is an ormcache::Error.
    CHECK_THROWS_AS(ormcache::Database(ormcache::DatabaseConfig{.connection_string = ""}),
                    ormcache::Error);
    // busy_timeout 0 is valid.
    ormcache::DatabaseConfig zero{.connection_string = dir.file("zero.db")};
    zero.busy_timeout = 0ms;
    CHECK_NOTHROW(ormcache::Database(zero));
}
