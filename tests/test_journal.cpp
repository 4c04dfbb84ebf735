// The change journal: exactly which changes reach db.on_commit listeners, and when.

#include <catch2/catch.hpp>

#include <chrono>
#include <cstdint>
#include <sstream>
#include <stdexcept>
#include <string>
#include <variant>
#include <vector>

#include "changes.hpp"
#include "models.hpp"
#include "test_support.hpp"

using namespace std::chrono_literals;
using ormcache::Change;
using ormcache::ChangeSet;
using ormcache::Operation;
using ormcache::PrimaryKey;
using ormcache_test::CommitLog;
using ormcache_test::ins;
using ormcache_test::rem;
using ormcache_test::TempDir;
using ormcache_test::upd;
using ormcache_test::whole;
using Changes = std::vector<Change>;

namespace {

std::string describe(const PrimaryKey& key) {
    if (const auto* i = std::get_if<std::int64_t>(&key))
        return std::to_string(*i);
    if (const auto* s = std::get_if<std::string>(&key))
        return "'" + *s + "'";
    return "-";
}

std::string describe(const Changes& changes) {
    std::ostringstream out;
    out << "[";
    for (std::size_t i = 0; i < changes.size(); ++i) {
        const auto& c = changes[i];
        if (i == 20) {
            out << " ... (" << changes.size() << " in all)";
            break;
        }
        const char* op = c.operation == Operation::insert   ? "ins"
                         : c.operation == Operation::update ? "upd"
                         : c.operation == Operation::remove ? "rem"
                                                            : "whole";
        out << (i == 0 ? "" : ", ") << op << "(" << c.table << ", " << describe(c.old_key) << " -> "
            << describe(c.new_key) << ")";
    }
    out << "]";
    return out.str();
}

// Compares two vectors of changes and prints both on failure.
#define CHECK_CHANGES(got_expr, ...)                                       \
    do {                                                                   \
        const Changes got_ = (got_expr);                                   \
        const Changes want_ = __VA_ARGS__;                                 \
        INFO("got:  " << describe(got_) << "\nwant: " << describe(want_)); \
        CHECK(got_ == want_);                                              \
    } while (false)

/// The only change set delivered since the last clear(); fails the test otherwise.
Changes only_delivery(CommitLog& log) {
    const auto sets = log.sets();
    REQUIRE(sets.size() == 1);
    log.clear();
    return sets.front().changes();
}

/// A file database with users, tags and authors, and a recorder of what was committed.
struct FileDb {
    TempDir dir;
    ormcache::Database db{ormcache::DatabaseConfig{.connection_string = dir.file("journal.db")}};
    CommitLog commits{db};
    FileDb() { db.create_all<app::User, app::Tag, app::Author>(); }
};

struct MemoryDb {
    ormcache::Database db{ormcache::DatabaseConfig{.connection_string = ":memory:"}};
    CommitLog commits{db};
    MemoryDb() { db.create_all<app::User, app::Tag, app::Author>(); }
};

app::User user(std::string name) {
    return app::User{.name = name, .email = name + "@example.org"};
}

const char* const insert_user_sql =
    "INSERT INTO users (id, name, email, created_at) VALUES (?, ?, 'e', 0)";

}  // namespace

TEST_CASE("Journal: repository writes", "[journal]") {
    FileDb f;
    auto s = f.db.session();
    ormcache::Repository<app::User> users{s};

    const auto a = users.add(user("a"));
    const auto b = users.add(user("b"));
    CHECK(f.commits.size() == 0);  // nothing before the commit
    s.commit();
    CHECK_CHANGES(only_delivery(f.commits), {ins("users", a.id), ins("users", b.id)});

    auto a2 = a;
    a2.name = "a2";
    users.update(a2);
    s.commit();
    CHECK_CHANGES(only_delivery(f.commits), {upd("users", a.id, a.id)});

    users.remove(b.id);
    s.commit();
    CHECK_CHANGES(only_delivery(f.commits), {rem("users", b.id)});

    // One transaction: insert, update and delete of the same row, in order.
    const auto c = users.add(user("c"));
    users.update(c);
    users.remove(c.id);
    s.commit();
    CHECK_CHANGES(only_delivery(f.commits),
                  {ins("users", c.id), upd("users", c.id, c.id), rem("users", c.id)});

    // Batches (add_many and friends run inside a savepoint that is released).
    const auto many = users.add_many({user("d"), user("e")});
    users.update_many(many);
    users.remove_many({many[0].id, many[1].id, 999});
    s.commit();
    CHECK_CHANGES(
        only_delivery(f.commits),
        {ins("users", many[0].id), ins("users", many[1].id), upd("users", many[0].id, many[0].id),
         upd("users", many[1].id, many[1].id), rem("users", many[0].id), rem("users", many[1].id)});

    // upsert: the insert path, then the update path.
    const auto u = users.upsert(app::User{.id = 50, .name = "u", .email = "u@x"});
    users.upsert(app::User{.id = 50, .name = "u2", .email = "u@x"});
    s.commit();
    CHECK_CHANGES(only_delivery(f.commits), {ins("users", u.id), upd("users", 50, 50)});

    // A write that fails with NotFoundError records nothing.
    CHECK_THROWS_AS(users.remove(12345), ormcache::NotFoundError);
    CHECK_THROWS_AS(users.update(app::User{.id = 12345, .name = "x", .email = "y"}),
                    ormcache::NotFoundError);
    s.commit();
    CHECK(f.commits.size() == 0);

    // auto_commit delivers at once.
    const auto v = users.add(user("v"), ormcache::Options{.auto_commit = true});
    CHECK_FALSE(s.in_transaction());
    CHECK_CHANGES(only_delivery(f.commits), {ins("users", v.id)});
}

TEST_CASE("Journal: string keys are recorded as strings", "[journal]") {
    FileDb f;
    auto s = f.db.session();
    ormcache::Repository<app::Tag> tags{s};
    tags.add(app::Tag{.slug = "red", .label = "Red"});
    tags.add(app::Tag{.slug = "blue", .label = "Blue"});
    s.commit();
    CHECK_CHANGES(only_delivery(f.commits), {ins("tags", "red"), ins("tags", "blue")});

    tags.update(app::Tag{.slug = "red", .label = "Rouge", .uses = 3});
    tags.upsert(app::Tag{.slug = "blue", .label = "Bleu"});
    tags.upsert(app::Tag{.slug = "green", .label = "Vert"});
    tags.remove("blue");
    s.commit();
    CHECK_CHANGES(only_delivery(f.commits), {upd("tags", "red", "red"), upd("tags", "blue", "blue"),
                                             ins("tags", "green"), rem("tags", "blue")});

    // Raw SQL on the same table: still string keys, including a key change.
    s.execute("UPDATE tags SET slug = ? WHERE slug = ?", "scarlet", "red");
    s.execute("DELETE FROM tags WHERE slug = ?", "green");
    s.commit();
    CHECK_CHANGES(only_delivery(f.commits), {upd("tags", "red", "scarlet"), rem("tags", "green")});

    const auto set = ChangeSet({upd("tags", "red", "scarlet")});
    CHECK(set.keys("tags") == std::vector<PrimaryKey>{"red", "scarlet"});
}

TEST_CASE("Journal: a table registered after its first writes switches to its real keys",
          "[journal]") {
    TempDir dir;
    ormcache::Database db{ormcache::DatabaseConfig{.connection_string = dir.file("late.db")}};
    CommitLog commits{db};
    auto s = db.session();
    // The same schema as app::Tag's, created by hand: not registered yet, so rowids.
    s.connection().exec(
        "CREATE TABLE tags (slug TEXT PRIMARY KEY NOT NULL, label TEXT NOT NULL, uses INTEGER NOT "
        "NULL)");
    s.execute("INSERT INTO tags VALUES ('a', 'A', 0)");
    s.commit();
    CHECK_CHANGES(only_delivery(commits), {ins("tags", std::int64_t{1})});

    // create_all registers the existing table (from another session): string keys from now on.
    db.create_all<app::Tag>();
    s.execute("INSERT INTO tags VALUES ('b', 'B', 0)");
    s.commit();
    CHECK_CHANGES(only_delivery(commits), {ins("tags", "b")});
}

TEST_CASE("Journal: an unregistered table's changes are recorded by rowid", "[journal]") {
    FileDb f;
    auto s = f.db.session();
    s.connection().exec("CREATE TABLE notes (code TEXT PRIMARY KEY, body TEXT)");
    s.connection().exec("CREATE TABLE counters (id INTEGER PRIMARY KEY, n INTEGER)");
    f.commits.clear();
    s.execute("INSERT INTO notes (code, body) VALUES ('x', 'first'), ('y', 'second')");
    s.execute("UPDATE notes SET body = 'changed' WHERE code = 'y'");
    s.execute("DELETE FROM notes WHERE code = 'x'");
    s.execute("INSERT INTO counters (id, n) VALUES (40, 1)");
    s.commit();
    CHECK_CHANGES(only_delivery(f.commits),
                  {ins("notes", std::int64_t{1}), ins("notes", std::int64_t{2}),
                   upd("notes", std::int64_t{2}, std::int64_t{2}), rem("notes", std::int64_t{1}),
                   ins("counters", std::int64_t{40})});
}

TEST_CASE("Journal: a registered table whose integer key is not the rowid",
          "[journal][without_rowid]") {
    TempDir dir;
    ormcache::Database db{ormcache::DatabaseConfig{.connection_string = dir.file("wr.db")}};
    CommitLog commits{db};
    auto s = db.session();
    // An existing table that a model maps. SQLite leaves the preupdate hook's rowid arguments
    // undefined for WITHOUT ROWID tables, and a DESC integer key is not the rowid either: the
    // key must come from the primary key column.
    const bool without_rowid = GENERATE(true, false);
    CAPTURE(without_rowid);
    s.connection().exec(
        without_rowid
            ? "CREATE TABLE authors (id INTEGER PRIMARY KEY, name TEXT NOT NULL) WITHOUT ROWID"
            : "CREATE TABLE authors (id INTEGER PRIMARY KEY DESC, name TEXT NOT NULL)");
    commits.clear();

    ormcache::Repository<app::Author> authors{s};
    authors.add(app::Author{.id = 41, .name = "x"});
    authors.add(app::Author{.id = 42, .name = "y"});
    authors.update(app::Author{.id = 41, .name = "z"});
    authors.remove(42);
    s.execute("UPDATE authors SET id = 43 WHERE id = 41");
    s.commit();
    CHECK_CHANGES(only_delivery(commits),
                  {ins("authors", 41), ins("authors", 42), upd("authors", 41, 41),
                   rem("authors", 42), upd("authors", 41, 43)});
}

TEST_CASE("Journal: an unregistered WITHOUT ROWID table is a whole-table change",
          "[journal][without_rowid]") {
    // SQLite leaves the preupdate hook's rowid arguments undefined for WITHOUT ROWID tables,
    // so the rows of an unregistered one cannot be named: the journal records the table.
    TempDir dir;
    ormcache::Database db{ormcache::DatabaseConfig{.connection_string = dir.file("wr.db")}};
    CommitLog commits{db};
    auto s = db.session();
    s.connection().exec("CREATE TABLE wr_notes (id INTEGER PRIMARY KEY, body TEXT) WITHOUT ROWID");
    commits.clear();
    s.execute("INSERT INTO wr_notes (id, body) VALUES (7, 'a'), (8, 'b')");
    s.commit();
    CHECK_CHANGES(only_delivery(commits), {whole("wr_notes")});
}

TEST_CASE("Journal: raw session.execute()", "[journal]") {
    FileDb f;
    auto s = f.db.session();
    s.execute(insert_user_sql, 1, "a");
    s.execute(insert_user_sql, 2, "b");
    s.execute("INSERT INTO users (name, email, created_at) VALUES ('c', 'e', 0)");  // rowid 3
    s.execute("UPDATE users SET name = ? WHERE id >= ?", "z", 2);
    s.execute("DELETE FROM users WHERE id = ?", 1);
    s.commit();
    CHECK_CHANGES(only_delivery(f.commits),
                  {ins("users", 1), ins("users", 2), ins("users", 3), upd("users", 2, 2),
                   upd("users", 3, 3), rem("users", 1)});

    // An UPDATE that matches nothing records nothing (and delivers nothing).
    s.execute("UPDATE users SET name = 'q' WHERE id = 999");
    s.commit();
    CHECK(f.commits.size() == 0);
}

TEST_CASE("Journal: raw writes on connection() in autocommit mode", "[journal]") {
    SECTION("file database: delivered as soon as the statement committed") {
        FileDb f;
        auto s = f.db.session();
        auto& raw = s.connection();
        raw.exec("INSERT INTO users (id, name, email, created_at) VALUES (1, 'a', 'e', 0)");
        CHECK_FALSE(s.in_transaction());
        CHECK_CHANGES(only_delivery(f.commits), {ins("users", 1)});

        // Two statements, two autocommit transactions, two deliveries.
        raw.exec("UPDATE users SET name = 'b' WHERE id = 1; INSERT INTO tags VALUES ('t', 'T', 0)");
        const auto sets = f.commits.sets();
        REQUIRE(sets.size() == 2);
        CHECK_CHANGES(sets[0].changes(), {upd("users", 1, 1)});
        CHECK_CHANGES(sets[1].changes(), {ins("tags", "t")});
        f.commits.clear();

        // SQLiteCpp statements too.
        SQLite::Statement del(raw, "DELETE FROM users WHERE id = ?");
        del.bind(1, 1);
        CHECK(del.exec() == 1);
        CHECK_CHANGES(only_delivery(f.commits), {rem("users", 1)});
    }
    SECTION("\":memory:\": delivered by the next call on the session") {
        MemoryDb m;
        auto s = m.db.session();
        ormcache::Repository<app::User> users{s};
        s.connection().exec(
            "INSERT INTO users (id, name, email, created_at) VALUES (1, 'a', 'e', 0)");
        CHECK_FALSE(s.in_transaction());
        CHECK(m.commits.size() <= 1);
        CHECK(users.count() == 1);  // any call on the session settles the commit
        CHECK_CHANGES(only_delivery(m.commits), {ins("users", 1)});
        // ...and only once.
        s.commit();
        users.count();
        CHECK(m.commits.size() == 0);

        s.connection().exec("DELETE FROM users WHERE id = 1");
        s.commit();  // a no-op commit is a call on the session too
        CHECK_CHANGES(only_delivery(m.commits), {rem("users", 1)});
    }
}

TEST_CASE("Journal: DELETE without WHERE names every row", "[journal]") {
    FileDb f;
    auto s = f.db.session();
    ormcache::Repository<app::User> users{s};
    ormcache::Repository<app::Tag> tags{s};
    for (int i = 1; i <= 3; ++i)
        s.execute(insert_user_sql, i, "u");
    tags.add(app::Tag{.slug = "a", .label = "A"});
    tags.add(app::Tag{.slug = "b", .label = "B"});
    s.commit();
    f.commits.clear();

    SECTION("through execute()") {
        CHECK(s.execute("DELETE FROM users") == 3);
        s.execute("DELETE FROM main.tags");
        s.commit();
        CHECK_CHANGES(only_delivery(f.commits), {rem("users", 1), rem("users", 2), rem("users", 3),
                                                 rem("tags", "a"), rem("tags", "b")});
    }
    SECTION("through the raw connection, in autocommit mode") {
        s.connection().exec("DELETE FROM users");
        CHECK_CHANGES(only_delivery(f.commits),
                      {rem("users", 1), rem("users", 2), rem("users", 3)});
    }
    CHECK(users.count() == 0);
}

TEST_CASE("Journal: INSERT OR REPLACE records the rows it deletes", "[journal]") {
    FileDb f;
    auto s = f.db.session();
    s.connection().exec("CREATE UNIQUE INDEX users_email ON users (email)");
    s.execute("INSERT INTO users (id, name, email, created_at) VALUES (1, 'a', 'a@x', 0)");
    s.execute("INSERT INTO users (id, name, email, created_at) VALUES (2, 'b', 'b@x', 0)");
    s.execute("INSERT INTO tags VALUES ('red', 'Red', 0)");
    s.commit();
    f.commits.clear();

    SECTION("over an existing primary key") {
        s.execute(
            "INSERT OR REPLACE INTO users (id, name, email, created_at) VALUES (1, 'n', 'n@x', 0)");
        s.execute("REPLACE INTO tags VALUES ('red', 'Rouge', 1)");
        s.commit();
        CHECK_CHANGES(only_delivery(f.commits),
                      {rem("users", 1), ins("users", 1), rem("tags", "red"), ins("tags", "red")});
    }
    SECTION("over another row's UNIQUE column") {
        s.execute(
            "INSERT OR REPLACE INTO users (id, name, email, created_at) VALUES (3, 'c', 'a@x', 0)");
        s.commit();
        CHECK_CHANGES(only_delivery(f.commits), {rem("users", 1), ins("users", 3)});
    }
    SECTION("over one row's key and another row's UNIQUE column") {
        s.execute(
            "INSERT OR REPLACE INTO users (id, name, email, created_at) VALUES (1, 'c', 'b@x', 0)");
        s.commit();
        CHECK_CHANGES(only_delivery(f.commits),
                      {rem("users", 1), rem("users", 2), ins("users", 1)});
    }
    SECTION("raw ON CONFLICT DO UPDATE is an update") {
        s.connection().exec(
            "INSERT INTO users (id, name, email, created_at) VALUES (2, 'b2', 'b@x', 0) "
            "ON CONFLICT (id) DO UPDATE SET name = excluded.name");
        CHECK_CHANGES(only_delivery(f.commits), {upd("users", 2, 2)});
    }
}

TEST_CASE("Journal: an UPDATE that changes the primary key records both keys", "[journal]") {
    FileDb f;
    auto s = f.db.session();
    s.execute(insert_user_sql, 1, "a");
    s.execute("INSERT INTO tags VALUES ('old', 'O', 0)");
    s.commit();
    f.commits.clear();
    s.execute("UPDATE users SET id = 100 WHERE id = 1");
    s.execute("UPDATE tags SET slug = 'new' WHERE slug = 'old'");
    s.commit();
    CHECK_CHANGES(only_delivery(f.commits), {upd("users", 1, 100), upd("tags", "old", "new")});
    const ChangeSet set({upd("users", 1, 100)});
    CHECK(set.keys("users") == std::vector<PrimaryKey>{std::int64_t{1}, std::int64_t{100}});
}

TEST_CASE("Journal: foreign-key cascades", "[journal]") {
    FileDb f;
    auto s = f.db.session();
    s.connection().exec(
        "CREATE TABLE books (id INTEGER PRIMARY KEY, author_id INTEGER NOT NULL REFERENCES "
        "authors(id) ON DELETE CASCADE ON UPDATE CASCADE, title TEXT NOT NULL)");
    ormcache::Repository<app::Author> authors{s};
    authors.add(app::Author{.id = 1, .name = "a"});
    authors.add(app::Author{.id = 2, .name = "b"});
    s.execute("INSERT INTO books VALUES (10, 1, 'x'), (11, 1, 'y'), (12, 2, 'z')");
    s.commit();
    f.commits.clear();

    SECTION("ON DELETE CASCADE through the repository") {
        authors.remove(1);
        s.commit();
        CHECK_CHANGES(only_delivery(f.commits),
                      {rem("authors", 1), rem("books", 10), rem("books", 11)});
    }
    SECTION("ON DELETE CASCADE from a DELETE without WHERE on the raw connection") {
        s.connection().exec("DELETE FROM authors");
        const auto changes = only_delivery(f.commits);
        CHECK_CHANGES(changes, {rem("authors", 1), rem("books", 10), rem("books", 11),
                                rem("authors", 2), rem("books", 12)});
    }
    SECTION("ON UPDATE CASCADE") {
        s.execute("UPDATE authors SET id = 5 WHERE id = 2");
        s.commit();
        CHECK_CHANGES(only_delivery(f.commits), {upd("authors", 2, 5), upd("books", 12, 12)});
    }
}

TEST_CASE("Journal: writes made by triggers", "[journal]") {
    FileDb f;
    auto s = f.db.session();
    s.connection().exec(
        "CREATE TABLE audit (id INTEGER PRIMARY KEY, user_id INTEGER, what TEXT);"
        "CREATE TRIGGER users_ai AFTER INSERT ON users BEGIN "
        "  INSERT INTO audit (user_id, what) VALUES (new.id, 'insert'); END;"
        "CREATE TRIGGER users_bd BEFORE DELETE ON users BEGIN "
        "  UPDATE tags SET uses = uses - 1 WHERE slug = 'hot'; END;");
    s.execute("INSERT INTO tags VALUES ('hot', 'Hot', 10)");
    s.commit();
    f.commits.clear();

    ormcache::Repository<app::User> users{s};
    const auto a = users.add(user("a"));
    users.remove(a.id);
    s.commit();
    CHECK_CHANGES(only_delivery(f.commits), {ins("users", a.id), ins("audit", std::int64_t{1}),
                                             upd("tags", "hot", "hot"), rem("users", a.id)});
}

TEST_CASE("Journal: DROP TABLE and ALTER TABLE are whole-table changes", "[journal]") {
    FileDb f;
    auto s = f.db.session();
    s.connection().exec(
        "CREATE TABLE scratch (id INTEGER PRIMARY KEY, v TEXT);"
        "INSERT INTO scratch (v) VALUES ('a'), ('b');"
        "CREATE TABLE \"odd name\" (id INTEGER PRIMARY KEY);"
        "CREATE TABLE renamed_from (id INTEGER PRIMARY KEY)");
    f.commits.clear();

    SECTION("DROP TABLE") {
        s.execute("INSERT INTO scratch (v) VALUES ('c')");
        s.execute("DROP TABLE scratch");
        s.execute("DROP TABLE IF EXISTS main.\"odd name\"");
        s.commit();
        CHECK_FALSE(s.connection().tableExists("scratch"));
        CHECK_FALSE(s.connection().tableExists("odd name"));
        // The whole-table record replaces the table's row records.
        CHECK_CHANGES(only_delivery(f.commits), {whole("scratch"), whole("odd name")});
    }
    SECTION("ALTER TABLE") {
        s.execute("ALTER TABLE users ADD COLUMN nickname TEXT");
        s.execute(insert_user_sql, 1, "a");  // already whole-table: no row record
        s.execute("ALTER TABLE renamed_from RENAME TO renamed_to");
        s.commit();
        CHECK(s.connection().tableExists("renamed_to"));
        CHECK_FALSE(s.connection().tableExists("renamed_from"));
        CHECK_CHANGES(only_delivery(f.commits),
                      {whole("users"), whole("renamed_from"), whole("renamed_to")});
    }
    SECTION("DROP TABLE of a parent table deletes the children first") {
        s.connection().exec(
            "CREATE TABLE kids (id INTEGER PRIMARY KEY, scratch_id INTEGER REFERENCES "
            "scratch(id) ON DELETE CASCADE);"
            "INSERT INTO kids (id, scratch_id) VALUES (5, 1), (6, 2)");
        f.commits.clear();
        s.execute("DROP TABLE scratch");
        s.commit();
        CHECK_FALSE(s.connection().tableExists("scratch"));
        CHECK(s.connection().execAndGet("SELECT count(*) FROM kids").getInt() == 0);
        CHECK_CHANGES(only_delivery(f.commits), {whole("scratch"), rem("kids", std::int64_t{5}),
                                                 rem("kids", std::int64_t{6})});
    }
    SECTION("DROP VIEW and DROP INDEX work and change no rows") {
        s.connection().exec(
            "CREATE VIEW scratch_view AS SELECT * FROM scratch;"
            "CREATE INDEX scratch_v ON scratch (v)");
        f.commits.clear();
        s.execute("DROP VIEW scratch_view");
        s.execute("DROP INDEX scratch_v");
        s.commit();
        CHECK(s.connection()
                  .execAndGet("SELECT count(*) FROM sqlite_schema WHERE name IN "
                              "('scratch_view', 'scratch_v')")
                  .getInt() == 0);
        CHECK(f.commits.size() == 0);
    }
    SECTION("raw DDL on the connection, autocommit") {
        s.connection().exec("DROP TABLE scratch");
        CHECK_FALSE(s.connection().tableExists("scratch"));
        CHECK_CHANGES(only_delivery(f.commits), {whole("scratch")});
        s.connection().exec("alter table tags add column color text");
        CHECK_CHANGES(only_delivery(f.commits), {whole("tags")});
    }
}

TEST_CASE("Journal: more rows than max_rows_per_table collapse to whole_table", "[journal][bulk]") {
    constexpr std::int64_t limit = ormcache::detail::ChangeJournal::max_rows_per_table;
    STATIC_REQUIRE(limit == 10000);
    FileDb f;
    auto s = f.db.session();
    s.connection().exec("CREATE TABLE bulk (id INTEGER PRIMARY KEY, v INTEGER)");
    f.commits.clear();
    const char* const fill =
        "WITH RECURSIVE c(x) AS (SELECT ? UNION ALL SELECT x + 1 FROM c WHERE x < ?) "
        "INSERT INTO bulk (id, v) SELECT x, x FROM c";

    SECTION("exactly the limit: every row is named") {
        s.execute(insert_user_sql, 1, "a");
        CHECK(s.execute(fill, 1, limit) == limit);
        s.commit();
        const auto changes = only_delivery(f.commits);
        REQUIRE(changes.size() == static_cast<std::size_t>(limit + 1));
        CHECK(changes.front() == ins("users", 1));
        CHECK(changes[1] == ins("bulk", 1));
        CHECK(changes.back() == ins("bulk", limit));
        CHECK_FALSE(ChangeSet(changes).whole_table("bulk"));
    }
    SECTION("one more: one whole_table record, other tables untouched") {
        s.execute(insert_user_sql, 1, "a");
        s.execute(fill, 1, limit + 1);
        s.execute(insert_user_sql, 2, "b");
        s.commit();
        CHECK_CHANGES(only_delivery(f.commits), {ins("users", 1), whole("bulk"), ins("users", 2)});
    }
    SECTION("counted per savepoint frame, merged on release") {
        s.execute(fill, 1, 6000);
        auto sp = s.begin_nested();
        s.execute(fill, 6001, 12000);
        sp.commit();
        s.commit();
        CHECK_CHANGES(only_delivery(f.commits), {whole("bulk")});
    }
    SECTION("a collapsed savepoint that is rolled back leaves the outer rows") {
        s.execute(fill, 1, 3);
        auto sp = s.begin_nested();
        s.execute(fill, 4, limit + 10);
        sp.rollback();
        s.commit();
        CHECK_CHANGES(only_delivery(f.commits), {ins("bulk", 1), ins("bulk", 2), ins("bulk", 3)});
    }
    SECTION("DELETE without WHERE of many rows") {
        s.execute(fill, 1, limit + 1);
        s.commit();
        f.commits.clear();
        s.connection().exec("DELETE FROM bulk");
        CHECK_CHANGES(only_delivery(f.commits), {whole("bulk")});
    }
}

TEST_CASE("Journal: rolling back a savepoint discards exactly its records",
          "[journal][savepoint]") {
    FileDb f;
    auto s = f.db.session();

    SECTION("begin_nested(), three deep") {
        ormcache::Repository<app::User> users{s};
        const auto a = users.add(user("a"));
        auto sp1 = s.begin_nested();
        const auto b = users.add(user("b"));
        {
            auto sp2 = s.begin_nested();
            const auto c = users.add(user("c"));
            users.update(a);
            {
                auto sp3 = s.begin_nested();
                users.add(user("d"));
                users.remove(b.id);
                sp3.commit();
            }
            CHECK(s.has_changes("users"));
            sp2.rollback();
            (void)c;
        }
        const auto e = users.add(user("e"));
        sp1.commit();
        s.commit();
        CHECK_CHANGES(only_delivery(f.commits),
                      {ins("users", a.id), ins("users", b.id), ins("users", e.id)});
    }
    SECTION("raw SAVEPOINT / ROLLBACK TO / RELEASE on the connection") {
        auto& raw = s.connection();
        raw.exec("BEGIN");
        raw.exec("INSERT INTO users (id, name, email, created_at) VALUES (1, 'a', 'e', 0)");
        raw.exec("SAVEPOINT one");
        raw.exec("INSERT INTO users (id, name, email, created_at) VALUES (2, 'b', 'e', 0)");
        raw.exec("SAVEPOINT two");
        raw.exec("INSERT INTO users (id, name, email, created_at) VALUES (3, 'c', 'e', 0)");
        raw.exec("SAVEPOINT \"Three\"");
        raw.exec("INSERT INTO users (id, name, email, created_at) VALUES (4, 'd', 'e', 0)");
        raw.exec("RELEASE three");                          // names are case-insensitive
        raw.exec("ROLLBACK TRANSACTION TO SAVEPOINT TWO");  // discards 3 and 4; "two" stays open
        raw.exec("INSERT INTO tags VALUES ('t', 'T', 0)");  // recorded in "two"
        raw.exec("RELEASE one");
        raw.exec("INSERT INTO users (id, name, email, created_at) VALUES (5, 'e', 'e', 0)");
        CHECK(f.commits.size() == 0);
        raw.exec("COMMIT");
        CHECK_CHANGES(only_delivery(f.commits),
                      {ins("users", 1), ins("users", 2), ins("tags", "t"), ins("users", 5)});
    }
    SECTION("the same savepoint name twice: ROLLBACK TO the innermost") {
        s.execute("SAVEPOINT sp");  // begins the transaction
        CHECK(s.in_transaction());
        s.execute(insert_user_sql, 1, "a");
        s.execute("SAVEPOINT sp");
        s.execute(insert_user_sql, 2, "b");
        s.execute("ROLLBACK TO sp");
        s.execute("RELEASE sp");  // the inner one
        s.execute(insert_user_sql, 3, "c");
        CHECK(f.commits.size() == 0);
        s.execute("RELEASE sp");  // the outer one, which began the transaction: commits
        CHECK_FALSE(s.in_transaction());
        CHECK_CHANGES(only_delivery(f.commits), {ins("users", 1), ins("users", 3)});
    }
    SECTION("raw savepoints mixed with begin_nested()") {
        ormcache::Repository<app::User> users{s};
        const auto a = users.add(user("a"));
        auto sp = s.begin_nested();
        users.add(user("b"));
        s.connection().exec("SAVEPOINT raw");
        users.add(user("c"));
        sp.rollback();  // ROLLBACK TO the outer savepoint discards the raw one's rows too
        s.commit();
        CHECK_CHANGES(only_delivery(f.commits), {ins("users", a.id)});
    }
}

TEST_CASE("Journal: rollback delivers nothing", "[journal]") {
    FileDb f;
    auto s = f.db.session();
    ormcache::Repository<app::User> users{s};

    users.add(user("a"));
    CHECK(s.has_changes("users"));
    s.rollback();
    CHECK_FALSE(s.has_changes("users"));
    CHECK(f.commits.size() == 0);

    users.add(user("b"));
    s.connection().exec("ROLLBACK");  // raw
    CHECK_FALSE(s.in_transaction());
    s.commit();
    CHECK(f.commits.size() == 0);

    // A statement with ON CONFLICT ROLLBACK rolls the whole transaction back.
    s.execute(insert_user_sql, 1, "one");
    s.commit();
    f.commits.clear();
    s.execute(insert_user_sql, 2, "two");
    CHECK_THROWS_AS(
        s.execute(
            "INSERT OR ROLLBACK INTO users (id, name, email, created_at) VALUES (1, 'x', 'e', 0)"),
        ormcache::IntegrityError);
    CHECK_FALSE(s.in_transaction());
    s.execute(insert_user_sql, 3, "three");
    s.commit();
    CHECK_CHANGES(only_delivery(f.commits), {ins("users", 3)});

    // Destroying the session with an open transaction delivers nothing either.
    {
        auto t = f.db.session();
        t.execute(insert_user_sql, 4, "four");
    }
    CHECK(f.commits.size() == 0);
}

TEST_CASE("Journal: a raw COMMIT inside the session's transaction is honoured", "[journal]") {
    SECTION("file database") {
        FileDb f;
        auto s = f.db.session();
        ormcache::Repository<app::User> users{s};
        const auto a = users.add(user("a"));
        s.connection().exec("COMMIT");
        CHECK_FALSE(s.in_transaction());
        CHECK_CHANGES(only_delivery(f.commits), {ins("users", a.id)});
        s.commit();  // nothing left to commit or deliver
        CHECK(f.commits.size() == 0);
    }
    SECTION("\":memory:\"") {
        MemoryDb m;
        auto s = m.db.session();
        ormcache::Repository<app::User> users{s};
        const auto a = users.add(user("a"));
        s.connection().exec("END TRANSACTION");
        CHECK_FALSE(s.in_transaction());
        // Delivered at the latest by the next call on the session or its repositories.
        CHECK(users.get(a.id).name == "a");
        CHECK_CHANGES(only_delivery(m.commits), {ins("users", a.id)});
        s.commit();
        CHECK(m.commits.size() == 0);
    }
}

TEST_CASE("Journal: has_changes() after a raw COMMIT on \":memory:\"", "[journal]") {
    MemoryDb m;
    auto s = m.db.session();
    ormcache::Repository<app::User> users{s};
    users.add(user("a"));
    CHECK(s.has_changes("users"));
    s.connection().exec("COMMIT");
    // The changes are committed: none are uncommitted any more, even before the next call
    // settles the delivery.
    CHECK_FALSE(s.has_changes("users"));
}

TEST_CASE(
    "Journal: a COMMIT failing on a deferred foreign key delivers nothing and keeps the records",
    "[journal][failed_commit]") {
    FileDb f;
    auto s = f.db.session();
    const bool pragma = GENERATE(false, true);
    CAPTURE(pragma);
    if (pragma) {
        s.connection().exec(
            "CREATE TABLE refs (id INTEGER PRIMARY KEY, author_id INTEGER REFERENCES authors(id))");
    } else {
        s.connection().exec(
            "CREATE TABLE refs (id INTEGER PRIMARY KEY, author_id INTEGER REFERENCES authors(id) "
            "DEFERRABLE INITIALLY DEFERRED)");
    }
    f.commits.clear();

    ormcache::Repository<app::Author> authors{s};
    authors.add(app::Author{.id = 1, .name = "a"});
    if (pragma)
        s.execute("PRAGMA defer_foreign_keys = ON");
    s.execute("INSERT INTO refs (id, author_id) VALUES (10, 99)");  // dangling until 99 exists

    CHECK_THROWS_AS(s.commit(), ormcache::IntegrityError);
    CHECK(s.in_transaction());  // SQLite keeps the transaction open
    CHECK(f.commits.size() == 0);
    CHECK(s.has_changes("refs"));
    // A raw COMMIT fails the same way.
    CHECK_THROWS(s.connection().exec("COMMIT"));
    CHECK(s.in_transaction());
    CHECK(authors.count() == 1);  // a call on the session: settles nothing
    CHECK(f.commits.size() == 0);

    authors.add(app::Author{.id = 99, .name = "late"});
    s.commit();
    CHECK_FALSE(s.in_transaction());
    CHECK_CHANGES(only_delivery(f.commits),
                  {ins("authors", 1), ins("refs", std::int64_t{10}), ins("authors", 99)});
    s.commit();
    CHECK(f.commits.size() == 0);
}

TEST_CASE("Journal: a COMMIT failing with SQLITE_BUSY delivers nothing and keeps the records",
          "[journal][failed_commit]") {
    ormcache::DatabaseConfig config{.connection_string = ":memory:"};
    config.busy_timeout = 50ms;
    ormcache::Database db{config};
    db.create_all<app::User>();
    CommitLog commits{db};

    auto writer = db.session();
    ormcache::Repository<app::User> users{writer};
    auto reader = db.session();
    ormcache::Repository<app::User> reading{reader};
    reader.begin();  // holds a read lock (rollback-journal mode) until it ends
    CHECK(reading.count() == 0);

    const auto a = users.add(user("a"));
    const auto b = users.add(user("b"));
    const bool raw_commit = GENERATE(false, true);
    CAPTURE(raw_commit);
    if (raw_commit) {
        try {
            writer.connection().exec("COMMIT");
            FAIL("COMMIT succeeded while another session held a read lock");
        } catch (const SQLite::Exception& e) {
            CHECK(e.getErrorCode() == SQLITE_BUSY);
        }
    } else {
        try {
            writer.commit();
            FAIL("commit() succeeded while another session held a read lock");
        } catch (const ormcache::DatabaseError& e) {
            CHECK(e.code() == SQLITE_BUSY);
        }
    }
    CHECK(writer.in_transaction());
    CHECK(writer.has_changes("users"));
    CHECK(users.count() == 2);  // a call on the writer session: must not deliver
    CHECK(commits.size() == 0);

    reader.rollback();
    writer.commit();
    CHECK_FALSE(writer.in_transaction());
    CHECK_CHANGES(only_delivery(commits), {ins("users", a.id), ins("users", b.id)});
    writer.commit();
    users.count();
    CHECK(commits.size() == 0);
    CHECK(reading.count() == 2);
}

TEST_CASE("Journal: listeners run after the commit, isolated from each other",
          "[journal][listeners]") {
    FileDb f;
    const bool in_memory = GENERATE(false, true);
    CAPTURE(in_memory);
    MemoryDb m;
    ormcache::Database& db = in_memory ? m.db : f.db;
    CommitLog& commits = in_memory ? m.commits : f.commits;

    std::vector<std::int64_t> seen_by_fresh_session;
    db.on_commit([](const ChangeSet&) { throw std::runtime_error("listener failure"); });
    db.on_commit([&](const ChangeSet&) {
        // The commit has happened: another connection sees it.
        auto other = db.session();
        seen_by_fresh_session.push_back(ormcache::Repository<app::User>{other}.count());
    });
    db.on_commit([](const ChangeSet&) { throw 42; });  // not even a std::exception
    CommitLog after_throwers{db};

    auto s = db.session();
    ormcache::Repository<app::User> users{s};
    users.add(user("a"));
    CHECK_NOTHROW(s.commit());
    CHECK_FALSE(s.in_transaction());
    users.count();  // settles a ":memory:" delivery at the latest
    CHECK(commits.size() == 1);
    CHECK(after_throwers.size() == 1);
    CHECK(seen_by_fresh_session == std::vector<std::int64_t>{1});
}

TEST_CASE("Journal: remove_commit_listener stops delivery", "[journal][listeners]") {
    FileDb f;
    int calls = 0;
    const auto id = f.db.on_commit([&](const ChangeSet&) { ++calls; });
    auto s = f.db.session();
    ormcache::Repository<app::User> users{s};
    users.add(user("a"), ormcache::Options{.auto_commit = true});
    CHECK(calls == 1);
    CHECK(f.db.remove_commit_listener(id));
    CHECK_FALSE(f.db.remove_commit_listener(id));
    CHECK_FALSE(f.db.remove_commit_listener(id + 1000));
    users.add(user("b"), ormcache::Options{.auto_commit = true});
    CHECK(calls == 1);
    CHECK(f.commits.size() == 2);  // the other listener still runs
}

TEST_CASE("Journal: ChangeSet helpers", "[journal][change_set]") {
    const ChangeSet empty;
    CHECK(empty.empty());
    CHECK(empty.size() == 0);
    CHECK(empty.tables().empty());
    CHECK_FALSE(empty.touches("users"));
    CHECK_FALSE(empty.whole_table("users"));
    CHECK(empty.keys("users").empty());

    const ChangeSet set({ins("users", 1), upd("tags", "a", "b"), upd("users", 1, 2),
                         rem("users", 3), whole("bulk"), ins("tags", "a"), rem("users", 2)});
    CHECK_FALSE(set.empty());
    CHECK(set.size() == 7);
    CHECK(set.tables() == std::vector<std::string>{"users", "tags", "bulk"});
    CHECK(set.touches("users"));
    CHECK(set.touches("bulk"));
    CHECK_FALSE(set.touches("user"));
    CHECK(set.whole_table("bulk"));
    CHECK_FALSE(set.whole_table("users"));
    CHECK_FALSE(set.whole_table("nothing"));
    CHECK(set.keys("users") ==
          std::vector<PrimaryKey>{std::int64_t{1}, std::int64_t{2}, std::int64_t{3}});
    CHECK(set.keys("tags") == std::vector<PrimaryKey>{"a", "b"});
    CHECK(set.keys("bulk").empty());  // whole_table names no key
    CHECK(set.keys("nothing").empty());
    CHECK(set.changes().front() == ins("users", 1));
    CHECK(set.changes().back() == rem("users", 2));

    // Delivered sets answer the same questions.
    FileDb f;
    auto s = f.db.session();
    ormcache::Repository<app::Tag> tags{s};
    tags.add(app::Tag{.slug = "x", .label = "X"});
    s.connection().exec("CREATE TABLE gone (id INTEGER PRIMARY KEY)");
    s.execute("DROP TABLE gone");
    s.commit();
    const auto sets = f.commits.sets();
    REQUIRE_FALSE(sets.empty());
    const auto& last = sets.back();
    CHECK(last.tables() == std::vector<std::string>{"tags", "gone"});
    CHECK(last.keys("tags") == std::vector<PrimaryKey>{"x"});
    CHECK(last.whole_table("gone"));
}

TEST_CASE("Journal: a failed statement's written rows stay recorded", "[journal]") {
    // The preupdate hook saw rows 2 and 3 before the statement failed on row 1. Under the
    // default ABORT resolution SQLite undoes them, under OR FAIL it keeps them, and no hook
    // says which: the journal keeps them. Over-invalidation is safe; missing a row is not.
    FileDb f;
    auto s = f.db.session();
    s.execute(insert_user_sql, 1, "a");
    s.commit();
    f.commits.clear();
    CHECK_THROWS_AS(s.execute("INSERT INTO users (id, name, email, created_at) VALUES "
                              "(2, 'b', 'e', 0), (3, 'c', 'e', 0), (1, 'dup', 'e', 0)"),
                    ormcache::IntegrityError);
    CHECK(s.in_transaction());
    s.execute(insert_user_sql, 4, "d");
    s.commit();
    CHECK_CHANGES(only_delivery(f.commits), {ins("users", 2), ins("users", 3), ins("users", 4)});
}
