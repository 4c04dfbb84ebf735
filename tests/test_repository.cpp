// Repository<T>: every method and every filter against a SQLite file, with the SQL observed
// through DatabaseConfig::on_query, and the error contract (which exception, what it says, and
// that the session and committed data survive it).

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>

#include "models.hpp"
#include "test_support.hpp"

namespace repo_test {

/// A model with a member ORMCACHE_MODEL does not list (`draft`).
struct Note {
    std::int64_t id = 0;
    std::string body;
    std::optional<std::int64_t> rank{};
    std::string draft;  // not mapped
};
ORMCACHE_MODEL(Note, "notes", id, body, rank)

}  // namespace repo_test

namespace {

using app::Tag;
using app::User;
using ormcache::BeforeAfter;
using ormcache::CollectionFilter;
using ormcache::ComparisonFilter;
using ormcache::LimitOffset;
using ormcache::NotInCollectionFilter;
using ormcache::Options;
using ormcache::OrderBy;
using ormcache::Repository;
using ormcache::SearchFilter;
using ormcache::Sort;
using ormcache_test::SqlLog;
using ormcache_test::TempDir;
using TimePoint = std::chrono::system_clock::time_point;

const std::string kUserColumns = R"("id", "name", "email", "age", "created_at")";
const std::string kUserGet = "SELECT " + kUserColumns + R"( FROM "users" WHERE "id" = ?)";
const std::string kTagColumns = R"("slug", "label", "uses")";

TimePoint t(int n) {
    return TimePoint{std::chrono::seconds{1'700'000'000 + n}};
}

/// A file database with the test models' tables and five committed users:
///   1 Ada 36 t(100), 2 Bob 25 t(200), 3 Cy NULL t(300), 4 Dee 36 t(400), 5 eve 17 t(500)
struct Fixture {
    TempDir dir;
    SqlLog log;
    ormcache::Database db{ormcache::DatabaseConfig{.connection_string = dir.file("repo.db"),
                                                   .on_query = log.callback()}};

    explicit Fixture(bool seed = true) {
        db.create_all<User, Tag, repo_test::Note, app::Author>();
        if (seed) {
            auto s = db.session();
            Repository<User> users{s};
            users.add_many({
                {.name = "Ada", .email = "ada@example.org", .age = 36, .created_at = t(100)},
                {.name = "Bob", .email = "bob@example.org", .age = 25, .created_at = t(200)},
                {.name = "Cy", .email = "cy@example.org", .age = {}, .created_at = t(300)},
                {.name = "Dee", .email = "dee@example.org", .age = 36, .created_at = t(400)},
                {.name = "eve", .email = "eve@example.org", .age = 17, .created_at = t(500)},
            });
            s.commit();
        }
        log.clear();
    }

    /// Committed state, seen from a fresh session: the five seeded users, unchanged.
    void check_committed_users_intact() {
        auto s = db.session();
        Repository<User> users{s};
        const auto all = users.list(OrderBy{&User::id});
        REQUIRE(all.size() == 5);
        const std::vector<std::string> names{"Ada", "Bob", "Cy", "Dee", "eve"};
        for (std::size_t i = 0; i < all.size(); ++i) {
            CHECK(all[i].id == static_cast<std::int64_t>(i) + 1);
            CHECK(all[i].name == names[i]);
        }
        CHECK(all[0].age == 36);
        CHECK(all[0].email == "ada@example.org");
    }
};

std::vector<std::int64_t> ids_of(const std::vector<User>& users) {
    std::vector<std::int64_t> out;
    for (const auto& u : users)
        out.push_back(u.id);
    return out;
}

std::vector<std::int64_t> sorted_ids(const std::vector<User>& users) {
    auto out = ids_of(users);
    std::sort(out.begin(), out.end());
    return out;
}

std::vector<std::int64_t> I(std::initializer_list<std::int64_t> ids) {
    return ids;
}

/// The statements with exactly this text prepared on the session's connection: how many there
/// are, and how many times they have run in total.
struct Prepared {
    int count = 0;
    int runs = 0;
};
Prepared prepared(ormcache::Session& session, const std::string& sql) {
    sqlite3* handle = session.connection().getHandle();
    Prepared out;
    for (sqlite3_stmt* st = sqlite3_next_stmt(handle, nullptr); st != nullptr;
         st = sqlite3_next_stmt(handle, st)) {
        if (sqlite3_sql(st) == sql) {
            ++out.count;
            out.runs += sqlite3_stmt_status(st, SQLITE_STMTSTATUS_RUN, 0);
        }
    }
    return out;
}

template <class E, class Fn>
E error_of(Fn&& fn) {
    try {
        fn();
    } catch (const E& e) {
        return e;
    }
    throw std::runtime_error("the expected exception was not thrown");
}

}  // namespace

// =============================================================================================
// Writes

TEST_CASE("add inserts, assigns integer keys and returns the stored row", "[repository][add]") {
    Fixture f{false};
    auto session = f.db.session();
    Repository<User> users{session};

    const User ada = users.add({.name = "Ada", .email = "a@x", .age = 36, .created_at = t(1)});
    CHECK(ada.id == 1);
    CHECK(ada.name == "Ada");
    CHECK(ada.age == 36);
    CHECK(ada.created_at == t(1));
    const auto statements = f.log.statements();
    REQUIRE(statements.size() == 2);
    CHECK(statements[0] == "BEGIN IMMEDIATE");  // the first write begins the transaction
    CHECK(statements[1] == R"(INSERT INTO "users" ("name", "email", "age", "created_at") )"
                           R"(VALUES (?, ?, ?, ?) RETURNING )" +
                               kUserColumns);
    CHECK(session.in_transaction());

    // An explicit key is kept; the next assigned key follows it.
    f.log.clear();
    CHECK(users.add({.id = 100, .name = "Hundred", .email = "h@x"}).id == 100);
    CHECK(f.log.statements() ==
          std::vector<std::string>{R"(INSERT INTO "users" ("id", "name", "email", "age", )"
                                   R"("created_at") VALUES (?, ?, ?, ?, ?) RETURNING )" +
                                   kUserColumns});
    CHECK(users.add({.name = "Next", .email = "n@x"}).id == 101);

    session.commit();
    auto other = f.db.session();
    Repository<User> seen{other};
    CHECK(seen.get(1).name == "Ada");
    CHECK(seen.get(100).name == "Hundred");
    CHECK(seen.count() == 3);
}

TEST_CASE("add_many inserts all rows in order and returns them", "[repository][add]") {
    Fixture f{false};
    auto session = f.db.session();
    Repository<User> users{session};
    const auto added = users.add_many({{.name = "a", .email = "a"},
                                       {.id = 50, .name = "b", .email = "b"},
                                       {.name = "c", .email = "c"}});
    CHECK(ids_of(added) == I({1, 50, 51}));
    CHECK(added[2].name == "c");
    CHECK(users.count() == 3);
    CHECK(users.add_many({}).empty());
    CHECK(users.count() == 3);
}

TEST_CASE("update changes every column by key and returns the row", "[repository][update]") {
    Fixture f;
    auto session = f.db.session();
    Repository<User> users{session};

    User bob = users.get(2);
    bob.name = "Robert";
    bob.email = "robert@example.org";
    bob.age = std::nullopt;
    bob.created_at = t(999);
    f.log.clear();
    const User updated = users.update(bob);
    CHECK(updated.name == "Robert");
    CHECK_FALSE(updated.age.has_value());
    CHECK(f.log.statements() ==
          std::vector<std::string>{"BEGIN IMMEDIATE",
                                   R"(UPDATE "users" SET "name" = ?, "email" = ?, "age" = ?, )"
                                   R"("created_at" = ? WHERE "id" = ? RETURNING )" +
                                       kUserColumns});
    const User again = users.get(2);
    CHECK(again.name == "Robert");
    CHECK(again.email == "robert@example.org");
    CHECK_FALSE(again.age.has_value());
    CHECK(again.created_at == t(999));
    CHECK(users.get(1).name == "Ada");  // only the row with that key
    CHECK(users.count() == 5);
}

TEST_CASE("update_many updates every row", "[repository][update]") {
    Fixture f;
    auto session = f.db.session();
    Repository<User> users{session};
    User a = users.get(1), d = users.get(4);
    a.age = 37;
    d.age = 38;
    const auto out = users.update_many({a, d});
    CHECK(ids_of(out) == I({1, 4}));
    CHECK(users.get(1).age == 37);
    CHECK(users.get(4).age == 38);
    CHECK(users.get(2).age == 25);
}

TEST_CASE("upsert inserts or updates by key", "[repository][upsert]") {
    Fixture f;
    auto session = f.db.session();
    Repository<User> users{session};

    SECTION("an integer key of 0 always inserts") {
        const User u = users.upsert({.name = "New", .email = "new@x"});
        CHECK(u.id == 6);
        CHECK(users.count() == 6);
    }
    SECTION("an absent key inserts with that key") {
        f.log.clear();
        const User u = users.upsert({.id = 42, .name = "Answer", .email = "42@x", .age = 42});
        CHECK(f.log.statements().back() ==
              R"(INSERT INTO "users" ()" + kUserColumns +
                  R"() VALUES (?, ?, ?, ?, ?) ON CONFLICT("id") DO UPDATE SET "name" = )"
                  R"(excluded."name", "email" = excluded."email", "age" = excluded."age", )"
                  R"("created_at" = excluded."created_at" RETURNING )" +
                  kUserColumns);
        CHECK(u.id == 42);
        CHECK(users.get(42).name == "Answer");
        CHECK(users.count() == 6);
    }
    SECTION("a present key updates every column") {
        const User u =
            users.upsert({.id = 3, .name = "Cyrus", .email = "cyrus@x", .created_at = t(7)});
        CHECK(u.id == 3);
        CHECK(u.name == "Cyrus");
        const User back = users.get(3);
        CHECK(back.name == "Cyrus");
        CHECK(back.email == "cyrus@x");
        CHECK(back.created_at == t(7));
        CHECK(users.count() == 5);
    }
}

TEST_CASE("remove deletes by key and returns the removed row", "[repository][remove]") {
    Fixture f;
    auto session = f.db.session();
    Repository<User> users{session};
    f.log.clear();
    const User removed = users.remove(2);
    CHECK(removed.id == 2);
    CHECK(removed.name == "Bob");
    CHECK(removed.age == 25);
    CHECK(
        f.log.statements() ==
        std::vector<std::string>{
            "BEGIN IMMEDIATE", R"(DELETE FROM "users" WHERE "id" = ? RETURNING )" + kUserColumns});
    CHECK_FALSE(users.get_or_none(2).has_value());
    CHECK(users.count() == 4);
    session.commit();
    auto other = f.db.session();
    Repository<User> seen{other};
    CHECK_FALSE(seen.exists(ComparisonFilter{&User::id, "=", std::int64_t{2}}));
}

TEST_CASE("remove_many returns the removed rows and skips absent keys", "[repository][remove]") {
    Fixture f;
    auto session = f.db.session();
    Repository<User> users{session};

    SECTION("some present, some absent") {
        const auto removed = users.remove_many({4, 99, 2, 4});
        CHECK(sorted_ids(removed) == I({2, 4}));
        CHECK(sorted_ids(users.list()) == I({1, 3, 5}));
    }
    SECTION("an empty list runs no SQL") {
        CHECK(users.remove_many({}).empty());
        CHECK(f.log.size() == 0);
        CHECK_FALSE(session.in_transaction());
    }
    SECTION("more keys than one statement binds") {
        std::vector<User> many(1'200, User{.name = "bulk", .email = "bulk@x"});
        const auto added = users.add_many(many);
        std::vector<std::int64_t> ids = ids_of(added);
        ids.push_back(123'456);  // absent
        ids.push_back(1);
        const auto removed = users.remove_many(ids);
        CHECK(removed.size() == 1'201);
        CHECK(sorted_ids(users.list()) == I({2, 3, 4, 5}));
    }
    SECTION("with a lowered variable limit") {
        // The per-statement chunk must respect the connection's real parameter limit.
        sqlite3_limit(session.connection().getHandle(), SQLITE_LIMIT_VARIABLE_NUMBER, 50);
        std::vector<User> many(120, User{.name = "bulk", .email = "bulk@x"});
        const auto added = users.add_many(many);
        const auto removed = users.remove_many(ids_of(added));
        CHECK(removed.size() == 120);
        CHECK(users.count() == 5);
    }
}

// =============================================================================================
// Reads

TEST_CASE("get and get_or_none read by key with one prepared statement", "[repository][get]") {
    Fixture f;
    auto session = f.db.session();
    Repository<User> users{session};

    const User ada = users.get(1);
    CHECK(ada.name == "Ada");
    CHECK(ada.email == "ada@example.org");
    CHECK(ada.age == 36);
    CHECK(ada.created_at == t(100));
    CHECK(users.get(4, {.use_cache = false}).name == "Dee");
    CHECK(users.get_or_none(5, Options{}).value().name == "eve");
    CHECK_FALSE(users.get_or_none(77).has_value());

    // Exactly the documented statement, the key bound (never inlined), the same text each time,
    // and a read outside a transaction does not begin one.
    CHECK(f.log.statements() == std::vector<std::string>(4, kUserGet));
    CHECK_FALSE(session.in_transaction());
    // Reused: one prepared statement for that text on the session's connection, run 4 times.
    CHECK(prepared(session, kUserGet).count == 1);
    CHECK(prepared(session, kUserGet).runs == 4);
}

TEST_CASE("list returns matching rows; the same filters reuse one statement",
          "[repository][list]") {
    Fixture f;
    auto session = f.db.session();
    Repository<User> users{session};

    CHECK(sorted_ids(users.list()) == I({1, 2, 3, 4, 5}));
    CHECK(f.log.statements() ==
          std::vector<std::string>{"SELECT " + kUserColumns + R"( FROM "users")"});

    f.log.clear();
    CHECK(ids_of(users.list(ComparisonFilter{&User::age, ">=", 30})) == I({1, 4}));
    CHECK(ids_of(users.list(ComparisonFilter{&User::age, ">=", 20})) == I({1, 2, 4}));
    const auto statements = f.log.statements();
    REQUIRE(statements.size() == 2);
    const std::string expected = "SELECT " + kUserColumns + R"( FROM "users" WHERE "age" >= ?)";
    CHECK(statements[0] == expected);
    CHECK(statements[1] == expected);  // another value, the same text
    CHECK(prepared(session, expected).count == 1);
    CHECK(prepared(session, expected).runs == 2);
}

TEST_CASE("filter values are always bound, never inlined", "[repository][filters][sql]") {
    Fixture f;
    auto session = f.db.session();
    Repository<User> users{session};
    const std::string evil = "O'Brien\"; DROP TABLE users; --";
    users.add({.name = evil, .email = "ob@example.org", .age = 1234567});
    f.log.clear();

    CHECK(ids_of(users.list(ComparisonFilter{&User::name, "=", evil})) == I({6}));
    CHECK(users.count(CollectionFilter{&User::name, std::vector<std::string>{evil, "Ada"}}) == 2);
    CHECK(users.exists(SearchFilter{&User::name, "Brien\"; DROP"}));
    CHECK(users.exists(SearchFilter{&User::name, "o'brien", true}));
    CHECK(users.list(ComparisonFilter{&User::age, "=", 1234567}).size() == 1);
    CHECK(users.list(BeforeAfter{&User::created_at, t(150), std::nullopt}).size() == 2);
    CHECK(users.list(LimitOffset{.limit = 987654, .offset = 876543}).empty());

    REQUIRE(f.log.size() >= 7);
    for (const auto& sql : f.log.statements()) {
        INFO(sql);
        CHECK(sql.find('?') != std::string::npos);
        CHECK(sql.find("Brien") == std::string::npos);
        CHECK(sql.find("brien") == std::string::npos);
        CHECK(sql.find("Ada") == std::string::npos);
        CHECK(sql.find("1234567") == std::string::npos);
        CHECK(sql.find("987654") == std::string::npos);
        CHECK(sql.find("876543") == std::string::npos);
        CHECK(sql.find(std::to_string(1'700'000'150)) == std::string::npos);
    }
    CHECK(users.count() == 6);  // and the table is still there
}

TEST_CASE("list_and_count returns the page and the total from one statement",
          "[repository][list_and_count]") {
    Fixture f;
    auto session = f.db.session();
    Repository<User> users{session};

    SECTION("a non-empty page: one statement") {
        const auto [page, total] =
            users.list_and_count(LimitOffset{.limit = 2, .offset = 1}, OrderBy{&User::name});
        CHECK(ids_of(page) == I({2, 3}));
        CHECK(total == 5);
        const auto statements = f.log.statements();
        REQUIRE(statements.size() == 1);
        CHECK(statements[0] == "SELECT " + kUserColumns +
                                   R"(, COUNT(*) OVER () FROM "users" ORDER BY "name" ASC, "id" )"
                                   R"(LIMIT ? OFFSET ?)");
    }
    SECTION("the total counts the filtered rows, ignoring limit and offset") {
        const auto [page, total] =
            users.list_and_count(ComparisonFilter{&User::age, ">", 20},
                                 LimitOffset{.limit = 1, .offset = 0}, OrderBy{&User::id});
        CHECK(ids_of(page) == I({1}));
        CHECK(total == 3);
        CHECK(f.log.size() == 1);
    }
    SECTION("no LimitOffset: every matching row") {
        const auto [page, total] = users.list_and_count(SearchFilter{&User::name, "e"});
        CHECK(sorted_ids(page) == I({4, 5}));
        CHECK(total == 2);
        CHECK(f.log.size() == 1);
    }
    SECTION("an empty page past the end still has the right total") {
        const auto [page, total] = users.list_and_count(LimitOffset{.limit = 2, .offset = 10});
        CHECK(page.empty());
        CHECK(total == 5);
    }
    SECTION("a zero limit still has the right total") {
        const auto [page, total] = users.list_and_count(LimitOffset{.limit = 0, .offset = 0},
                                                        ComparisonFilter{&User::age, "=", 36});
        CHECK(page.empty());
        CHECK(total == 2);
    }
    SECTION("nothing matches") {
        const auto [page, total] = users.list_and_count(ComparisonFilter{&User::age, ">", 100},
                                                        LimitOffset{.limit = 5, .offset = 0});
        CHECK(page.empty());
        CHECK(total == 0);
    }
}

TEST_CASE("count and exists ignore LimitOffset and OrderBy", "[repository][count]") {
    Fixture f;
    auto session = f.db.session();
    Repository<User> users{session};

    CHECK(users.count() == 5);
    CHECK(users.count(LimitOffset{.limit = 1, .offset = 3}, OrderBy{&User::name, Sort::desc}) == 5);
    CHECK(users.count(ComparisonFilter{&User::age, "=", 36}) == 2);
    CHECK(users.exists());
    CHECK(users.exists(ComparisonFilter{&User::name, "=", "Bob"}));
    CHECK_FALSE(users.exists(ComparisonFilter{&User::name, "=", "Zed"}));
    CHECK(users.exists(LimitOffset{.limit = 0, .offset = 100}));

    const auto statements = f.log.statements();
    REQUIRE(statements.size() == 7);
    CHECK(statements[0] == R"(SELECT COUNT(*) FROM "users")");
    CHECK(statements[1] == R"(SELECT COUNT(*) FROM "users")");
    CHECK(statements[2] == R"(SELECT COUNT(*) FROM "users" WHERE "age" = ?)");
    CHECK(statements[3] == R"(SELECT EXISTS(SELECT 1 FROM "users"))");
    CHECK(statements[4] == R"(SELECT EXISTS(SELECT 1 FROM "users" WHERE "name" = ?))");

    auto s2 = f.db.session();
    Repository<Tag> tags{s2};
    CHECK(tags.count() == 0);
    CHECK_FALSE(tags.exists());
}

// =============================================================================================
// Filters

TEST_CASE("LimitOffset pages with the key as the final sort key", "[repository][filters]") {
    Fixture f;
    auto session = f.db.session();
    Repository<User> users{session};

    SECTION("without OrderBy: pages by key") {
        CHECK(ids_of(users.list(LimitOffset{.limit = 2, .offset = 0})) == I({1, 2}));
        CHECK(ids_of(users.list(LimitOffset{.limit = 2, .offset = 2})) == I({3, 4}));
        CHECK(ids_of(users.list(LimitOffset{.limit = 2, .offset = 4})) == I({5}));
        CHECK(users.list(LimitOffset{.limit = 2, .offset = 6}).empty());
        CHECK(f.log.statements()[0] ==
              "SELECT " + kUserColumns + R"( FROM "users" ORDER BY "id" LIMIT ? OFFSET ?)");
    }
    SECTION("ties in OrderBy are broken by the key, so pages neither repeat nor skip") {
        std::vector<std::int64_t> seen;
        for (std::int64_t offset = 0; offset < 5; ++offset) {
            const auto page = users.list(OrderBy{&User::age, Sort::desc},
                                         LimitOffset{.limit = 1, .offset = offset});
            REQUIRE(page.size() == 1);
            seen.push_back(page[0].id);
        }
        CHECK(seen == I({1, 4, 2, 5, 3}));  // 36 (1 before 4), 25, 17, NULL last in DESC
    }
}

TEST_CASE("OrderBy: several columns, ascending and descending", "[repository][filters]") {
    Fixture f;
    auto session = f.db.session();
    Repository<User> users{session};

    CHECK(ids_of(users.list(OrderBy{&User::name})) == I({1, 2, 3, 4, 5}));  // BINARY collation
    CHECK(ids_of(users.list(OrderBy{&User::name, Sort::desc})) == I({5, 4, 3, 2, 1}));
    CHECK(ids_of(users.list(OrderBy{&User::age, Sort::desc}, OrderBy{&User::name, Sort::asc})) ==
          I({1, 4, 2, 5, 3}));
    CHECK(ids_of(users.list(OrderBy{&User::age, Sort::asc}, OrderBy{&User::name, Sort::desc})) ==
          I({3, 5, 2, 4, 1}));  // NULL first ascending
    CHECK(ids_of(users.list(OrderBy{&User::created_at, Sort::desc})) == I({5, 4, 3, 2, 1}));
    CHECK(f.log.statements()[2] ==
          "SELECT " + kUserColumns + R"( FROM "users" ORDER BY "age" DESC, "name" ASC)");
}

TEST_CASE("ComparisonFilter: all six operators, and NULL", "[repository][filters]") {
    Fixture f;
    auto session = f.db.session();
    Repository<User> users{session};
    // ages: 1->36, 2->25, 3->NULL, 4->36, 5->17

    CHECK(sorted_ids(users.list(ComparisonFilter{&User::age, "=", 36})) == I({1, 4}));
    CHECK(sorted_ids(users.list(ComparisonFilter{&User::age, "!=", 36})) == I({2, 5}));
    CHECK(sorted_ids(users.list(ComparisonFilter{&User::age, "<", 25})) == I({5}));
    CHECK(sorted_ids(users.list(ComparisonFilter{&User::age, "<=", 25})) == I({2, 5}));
    CHECK(sorted_ids(users.list(ComparisonFilter{&User::age, ">", 25})) == I({1, 4}));
    CHECK(sorted_ids(users.list(ComparisonFilter{&User::age, ">=", 25})) == I({1, 2, 4}));

    SECTION("an empty optional: = is IS NULL, != is IS NOT NULL") {
        f.log.clear();
        CHECK(sorted_ids(users.list(ComparisonFilter{&User::age, "=", std::nullopt})) == I({3}));
        CHECK(sorted_ids(users.list(ComparisonFilter{&User::age, "!=", std::nullopt})) ==
              I({1, 2, 4, 5}));
        CHECK(users.count(ComparisonFilter{&User::age, "=", std::optional<std::int32_t>{}}) == 1);
        const auto statements = f.log.statements();
        CHECK(statements[0] == "SELECT " + kUserColumns + R"( FROM "users" WHERE "age" IS NULL)");
        CHECK(statements[1] ==
              "SELECT " + kUserColumns + R"( FROM "users" WHERE "age" IS NOT NULL)");
    }
    SECTION("other column types") {
        CHECK(ids_of(users.list(ComparisonFilter{&User::name, "=", "Bob"})) == I({2}));
        CHECK(sorted_ids(users.list(ComparisonFilter{&User::name, ">", std::string("C")})) ==
              I({3, 4, 5}));
        CHECK(sorted_ids(users.list(ComparisonFilter{&User::created_at, ">=", t(300)})) ==
              I({3, 4, 5}));
        CHECK(sorted_ids(users.list(ComparisonFilter{&User::id, "!=", 3})) == I({1, 2, 4, 5}));
    }
    SECTION("several filters are ANDed") {
        CHECK(ids_of(users.list(ComparisonFilter{&User::age, ">", 20},
                                ComparisonFilter{&User::created_at, ">", t(150)})) == I({2, 4}));
    }
}

TEST_CASE("CollectionFilter and NotInCollectionFilter", "[repository][filters]") {
    Fixture f;
    auto session = f.db.session();
    Repository<User> users{session};

    CHECK(sorted_ids(users.list(
              CollectionFilter{&User::id, std::vector<std::int64_t>{1, 3, 99}})) == I({1, 3}));
    CHECK(sorted_ids(users.list(CollectionFilter{&User::id, {5, 5, 2}})) == I({2, 5}));
    CHECK(sorted_ids(users.list(CollectionFilter{
              &User::name, std::vector<std::string>{"Ada", "eve", "EVE"}})) == I({1, 5}));
    CHECK(sorted_ids(users.list(CollectionFilter{&User::age, {36, 17}})) == I({1, 4, 5}));
    CHECK(f.log.statements()[0] ==
          "SELECT " + kUserColumns + R"( FROM "users" WHERE "id" IN (?, ?, ?))");

    f.log.clear();
    CHECK(sorted_ids(users.list(NotInCollectionFilter{&User::id, {1, 2}})) == I({3, 4, 5}));
    CHECK(sorted_ids(users.list(NotInCollectionFilter{
              &User::name, std::vector<std::string>{"Bob", "Cy"}})) == I({1, 4, 5}));
    CHECK(f.log.statements()[0] ==
          "SELECT " + kUserColumns + R"( FROM "users" WHERE "id" NOT IN (?, ?))");
    CHECK(users.count(CollectionFilter{&User::id, {1, 2, 3}},
                      NotInCollectionFilter{&User::id, {2}}) == 2);
}

TEST_CASE("SearchFilter: substring, case-sensitive or not, with literal % and _",
          "[repository][filters]") {
    Fixture f{false};
    auto session = f.db.session();
    Repository<User> users{session};
    const std::vector<std::string> names{"100% pure", "100 pure", "a_b",         "axb",
                                         "Ada",       "ADA",      "back\\slash", "backXslash"};
    for (const auto& n : names)
        users.add({.name = n, .email = n});
    f.log.clear();

    auto matches = [&](std::string text, bool ignore_case) {
        std::vector<std::string> out;
        for (const auto& u :
             users.list(SearchFilter{&User::name, text, ignore_case}, OrderBy{&User::id}))
            out.push_back(u.name);
        return out;
    };
    using V = std::vector<std::string>;
    for (const bool ignore_case : {false, true}) {
        INFO("ignore_case = " << ignore_case);
        CHECK(matches("100%", ignore_case) == V{"100% pure"});
        CHECK(matches("%", ignore_case) == V{"100% pure"});
        CHECK(matches("a_b", ignore_case) == V{"a_b"});
        CHECK(matches("_", ignore_case) == V{"a_b"});
        CHECK(matches("k\\s", ignore_case) == V{"back\\slash"});
        CHECK(matches("pure", ignore_case) == V{"100% pure", "100 pure"});
        CHECK(matches("zzz", ignore_case).empty());
    }
    CHECK(matches("ada", false).empty());
    CHECK(matches("Ada", false) == V{"Ada"});
    CHECK(matches("ada", true) == V{"Ada", "ADA"});
    CHECK(matches("A_B", true) == V{"a_b"});
    CHECK(matches("A_B", false).empty());

    const auto statements = f.log.statements();
    CHECK(statements[0] == "SELECT " + kUserColumns +
                               R"( FROM "users" WHERE instr("name", ?) > 0 ORDER BY "id" ASC)");
    CHECK(std::count(statements.begin(), statements.end(),
                     "SELECT " + kUserColumns +
                         R"( FROM "users" WHERE "name" LIKE ? ESCAPE '\' ORDER BY "id" ASC)") == 9);
}

TEST_CASE("BeforeAfter: exclusive time range, either bound optional", "[repository][filters]") {
    Fixture f;
    auto session = f.db.session();
    Repository<User> users{session};
    // created_at: 1->t(100), 2->t(200), 3->t(300), 4->t(400), 5->t(500)

    CHECK(sorted_ids(users.list(BeforeAfter{&User::created_at, t(400), t(100)})) == I({2, 3}));
    CHECK(sorted_ids(users.list(BeforeAfter{&User::created_at, t(300), std::nullopt})) ==
          I({1, 2}));
    CHECK(sorted_ids(users.list(BeforeAfter{&User::created_at, std::nullopt, t(300)})) ==
          I({4, 5}));
    CHECK(sorted_ids(users.list(BeforeAfter{&User::created_at})) == I({1, 2, 3, 4, 5}));
    CHECK(users.list(BeforeAfter{&User::created_at, t(200), t(200)}).empty());
    // Microsecond precision at the bound.
    CHECK(ids_of(users.list(BeforeAfter{&User::created_at, t(100) + std::chrono::microseconds{1},
                                        t(100) - std::chrono::microseconds{1}})) == I({1}));
    const auto statements = f.log.statements();
    CHECK(statements[0] == "SELECT " + kUserColumns +
                               R"( FROM "users" WHERE "created_at" < ? AND "created_at" > ?)");
    CHECK(statements[3] == "SELECT " + kUserColumns + R"( FROM "users")");
}

TEST_CASE("filters and Options combine, Options in any position", "[repository][filters]") {
    Fixture f;
    auto session = f.db.session();
    Repository<User> users{session};
    const Options opts{.use_cache = false};
    const ComparisonFilter adults{&User::age, ">=", 18};

    const auto expected = I({1, 2, 4});
    CHECK(sorted_ids(users.list(Options{.use_cache = false}, adults)) == expected);
    CHECK(sorted_ids(users.list(adults, opts)) == expected);
    CHECK(ids_of(users.list(adults, opts, OrderBy{&User::name, Sort::desc})) == I({4, 2, 1}));
    CHECK(users.count(opts, adults) == 3);
    CHECK(users.count(adults, Options{}) == 3);
    CHECK(users.exists(Options{}, ComparisonFilter{&User::age, ">", 35}));
    CHECK_FALSE(users.exists(ComparisonFilter{&User::age, ">", 99}, opts));

    const auto [page, total] = users.list_and_count(
        opts, LimitOffset{.limit = 2, .offset = 1}, OrderBy{&User::created_at, Sort::desc}, adults,
        SearchFilter{&User::email, "EXAMPLE", true}, BeforeAfter{&User::created_at, t(450)});
    CHECK(ids_of(page) == I({2, 1}));
    CHECK(total == 3);
    CHECK(f.log.statements().back() ==
          "SELECT " + kUserColumns +
              R"(, COUNT(*) OVER () FROM "users" WHERE "age" >= ? AND "email" LIKE ? ESCAPE '\' )"
              R"(AND "created_at" < ? ORDER BY "created_at" DESC, "id" LIMIT ? OFFSET ?)");
}

// =============================================================================================
// auto_commit

TEST_CASE("Options::auto_commit commits the write", "[repository][auto_commit]") {
    Fixture f;
    auto session = f.db.session();
    Repository<User> users{session};
    auto other_session = f.db.session();
    Repository<User> other{other_session};

    // Control: without auto_commit the write stays in the open transaction.
    const User a = users.add({.name = "pending", .email = "p@x"});
    CHECK(session.in_transaction());
    CHECK_FALSE(other.get_or_none(a.id).has_value());
    session.rollback();

    const User b = users.add({.name = "committed", .email = "c@x"}, {.auto_commit = true});
    CHECK_FALSE(session.in_transaction());
    CHECK(other.get(b.id).name == "committed");

    User b2 = b;
    b2.name = "updated";
    users.update(b2, {.auto_commit = true});
    CHECK_FALSE(session.in_transaction());
    CHECK(other.get(b.id).name == "updated");

    users.upsert({.id = 70, .name = "upserted", .email = "u@x"}, {.auto_commit = true});
    CHECK_FALSE(session.in_transaction());
    CHECK(other.get(70).name == "upserted");

    const auto many = users.add_many({{.name = "m1", .email = "m1"}, {.name = "m2", .email = "m2"}},
                                     {.auto_commit = true});
    CHECK_FALSE(session.in_transaction());
    CHECK(other.count(CollectionFilter{&User::id, ids_of(many)}) == 2);

    users.update_many({users.get(1)}, {.auto_commit = true});
    CHECK_FALSE(session.in_transaction());

    users.remove_many(ids_of(many), {.auto_commit = true});
    CHECK_FALSE(session.in_transaction());
    CHECK(other.count(CollectionFilter{&User::id, ids_of(many)}) == 0);

    users.remove(b.id, {.auto_commit = true});
    CHECK_FALSE(session.in_transaction());
    CHECK_FALSE(other.get_or_none(b.id).has_value());

    SECTION("it also commits earlier work of the open transaction") {
        users.add({.id = 80, .name = "earlier", .email = "e@x"});
        users.add({.id = 81, .name = "later", .email = "l@x"}, {.auto_commit = true});
        CHECK_FALSE(session.in_transaction());
        CHECK(other.get(80).name == "earlier");
        CHECK(other.get(81).name == "later");
    }
    SECTION("a read with auto_commit does not commit") {
        users.add({.id = 90, .name = "open", .email = "o@x"});
        CHECK(users.list(Options{.auto_commit = true}).size() == 7);
        CHECK(session.in_transaction());
        CHECK_FALSE(other.get_or_none(90).has_value());
    }
    SECTION("a failed auto_commit write rolls back the transaction it began") {
        CHECK_THROWS_AS(users.add({.id = 1, .name = "dup", .email = "d@x"}, {.auto_commit = true}),
                        ormcache::IntegrityError);
        CHECK_FALSE(session.in_transaction());
        CHECK(users.get(1).name == "Ada");
    }
    SECTION("a failed auto_commit write inside an open transaction leaves it open and intact") {
        users.add({.id = 91, .name = "kept", .email = "k@x"});
        CHECK_THROWS_AS(users.add({.id = 1, .name = "dup", .email = "d@x"}, {.auto_commit = true}),
                        ormcache::IntegrityError);
        CHECK(session.in_transaction());
        CHECK(users.get(91).name == "kept");
        session.commit();
        CHECK(other.get(91).name == "kept");
    }
}

// =============================================================================================
// String keys

TEST_CASE("a string-key model: get, update, upsert, remove", "[repository][string_key]") {
    Fixture f{false};
    auto session = f.db.session();
    Repository<Tag> tags{session};

    const Tag cpp = tags.add({.slug = "cpp", .label = "C++", .uses = 3});
    CHECK(cpp.slug == "cpp");
    tags.add({.slug = "", .label = "empty key", .uses = 0});
    tags.add({.slug = "o'k \"q\"", .label = "quotes", .uses = 1});
    f.log.clear();

    CHECK(tags.get("cpp").label == "C++");
    CHECK(tags.get("").label == "empty key");
    CHECK(tags.get("o'k \"q\"").label == "quotes");
    CHECK_FALSE(tags.get_or_none("CPP").has_value());  // keys compare exactly
    CHECK(f.log.statements()[0] == "SELECT " + kTagColumns + R"( FROM "tags" WHERE "slug" = ?)");

    Tag changed = cpp;
    changed.label = "C plus plus";
    changed.uses = 4;
    CHECK(tags.update(changed).label == "C plus plus");
    CHECK(tags.get("cpp").uses == 4);

    CHECK(tags.upsert({.slug = "rust", .label = "Rust", .uses = 1}).label == "Rust");
    CHECK(tags.upsert({.slug = "cpp", .label = "C++20", .uses = 5}).uses == 5);
    CHECK(tags.get("cpp").label == "C++20");
    CHECK(tags.count() == 4);

    const Tag removed = tags.remove("rust");
    CHECK(removed.label == "Rust");
    CHECK_FALSE(tags.get_or_none("rust").has_value());
    CHECK(tags.remove_many({"", "nope", "o'k \"q\""}).size() == 2);

    const std::vector<Tag> left = tags.list();
    REQUIRE(left.size() == 1);
    CHECK(left[0].slug == "cpp");
    CHECK(tags.list(CollectionFilter{&Tag::slug, {"cpp", "x"}}).size() == 1);
    CHECK(tags.count(ComparisonFilter{&Tag::uses, ">", std::int64_t{4}}) == 1);

    session.commit();
    auto other = f.db.session();
    Repository<Tag> seen{other};
    CHECK(seen.get("cpp").uses == 5);
}

// =============================================================================================
// Errors

TEST_CASE("NotFoundError names the table and the key", "[repository][errors]") {
    Fixture f;
    auto session = f.db.session();
    Repository<User> users{session};
    Repository<Tag> tags{session};

    for (const auto& e : {
             error_of<ormcache::NotFoundError>([&] { users.get(424242); }),
             error_of<ormcache::NotFoundError>(
                 [&] { users.update({.id = 424242, .name = "x", .email = "x"}); }),
             error_of<ormcache::NotFoundError>([&] { users.remove(424242); }),
         }) {
        INFO(e.what());
        CHECK_THAT(e.what(), Catch::Contains("users") && Catch::Contains("424242"));
    }
    for (const auto& e : {
             error_of<ormcache::NotFoundError>([&] { tags.get("no-such-tag"); }),
             error_of<ormcache::NotFoundError>(
                 [&] { tags.update({.slug = "no-such-tag", .label = "x"}); }),
             error_of<ormcache::NotFoundError>([&] { tags.remove("no-such-tag"); }),
         }) {
        INFO(e.what());
        CHECK_THAT(e.what(), Catch::Contains("tags") && Catch::Contains("no-such-tag"));
    }
    CHECK_THROWS_AS(users.get(424242), ormcache::Error);
    // Nothing was created by the failed update, and the session still works.
    CHECK_FALSE(users.get_or_none(424242).has_value());
    CHECK(tags.count() == 0);
    CHECK(users.get(1).name == "Ada");
    session.commit();
    f.check_committed_users_intact();
}

TEST_CASE("QueryError: bad filters are rejected before any SQL runs", "[repository][errors]") {
    Fixture f;
    auto session = f.db.session();
    Repository<User> users{session};

    auto query_error = [&](auto&& fn) {
        f.log.clear();
        const auto e = error_of<ormcache::QueryError>(fn);
        CHECK(f.log.size() == 0);   // nothing ran
        CHECK(users.count() == 5);  // and the session still works
        return std::string(e.what());
    };

    SECTION("an unknown operator, named in the message") {
        for (const std::string op : {"LIKE", "==", "<>", "", "= 1 OR 1=1 --", "IS"}) {
            INFO("op = '" << op << "'");
            CHECK_THAT(query_error([&] {
                           users.list(ComparisonFilter{&User::age, op, 30});
                       }),
                       Catch::Contains("'" + op + "'"));
        }
    }
    SECTION("an ordering operator against NULL") {
        for (const std::string op : {"<", "<=", ">", ">="}) {
            INFO("op = " << op);
            CHECK_THAT(query_error([&] {
                           users.count(ComparisonFilter{&User::age, op, std::nullopt});
                       }),
                       Catch::Contains("'" + op + "'") && Catch::Contains("NULL"));
        }
    }
    SECTION("a member ORMCACHE_MODEL does not map") {
        auto s2 = f.db.session();
        Repository<repo_test::Note> notes{s2};
        notes.add({.body = "b", .draft = "not stored"});
        auto message = [&](auto&& fn) {
            return std::string(error_of<ormcache::QueryError>(fn).what());
        };
        CHECK_THAT(message([&] {
                       notes.list(ComparisonFilter{&repo_test::Note::draft, "=", "x"});
                   }),
                   Catch::Contains("notes"));
        CHECK_THAT(message([&] { notes.list(OrderBy{&repo_test::Note::draft}); }),
                   Catch::Contains("notes"));
        CHECK_THAT(message([&] {
                       notes.count(SearchFilter{&repo_test::Note::draft, "x"});
                   }),
                   Catch::Contains("notes"));
        CHECK_THAT(message([&] {
                       notes.exists(CollectionFilter{&repo_test::Note::draft,
                                                     std::vector<std::string>{"x"}});
                   }),
                   Catch::Contains("notes"));
        // The mapped members of the same type work.
        CHECK(notes.count(ComparisonFilter{&repo_test::Note::body, "=", "b"}) == 1);
        CHECK(notes.count(ComparisonFilter{&repo_test::Note::rank, "=", std::nullopt}) == 1);
        CHECK(notes.get(1).draft.empty());  // never stored
    }
    SECTION("an empty collection") {
        CHECK_THAT(query_error([&] {
                       users.list(CollectionFilter{&User::id, std::vector<std::int64_t>{}});
                   }),
                   Catch::Contains("empty"));
        CHECK_THAT(query_error([&] {
                       users.count(NotInCollectionFilter{&User::name, std::vector<std::string>{}});
                   }),
                   Catch::Contains("empty"));
    }
    SECTION("a negative LimitOffset") {
        query_error([&] { users.list(LimitOffset{.limit = -1, .offset = 0}); });
        query_error([&] { users.list_and_count(LimitOffset{.limit = 1, .offset = -1}); });
    }
    SECTION("LimitOffset given twice") {
        CHECK_THAT(query_error([&] {
                       users.list(LimitOffset{.limit = 1, .offset = 0},
                                  LimitOffset{.limit = 2, .offset = 0});
                   }),
                   Catch::Contains("twice"));
    }
    f.check_committed_users_intact();
}

TEST_CASE("QueryError: more values than SQLite binds per statement", "[repository][errors]") {
    Fixture f;
    auto session = f.db.session();
    Repository<User> users{session};
    sqlite3* handle = session.connection().getHandle();

    SECTION("the connection's real limit") {
        const int limit = sqlite3_limit(handle, SQLITE_LIMIT_VARIABLE_NUMBER, -1);
        REQUIRE(limit > 0);
        std::vector<std::int64_t> values(static_cast<std::size_t>(limit) + 1);
        for (std::size_t i = 0; i < values.size(); ++i)
            values[i] = static_cast<std::int64_t>(i);
        const auto e = error_of<ormcache::QueryError>([&] {
            users.list(CollectionFilter{&User::id, values});
        });
        CHECK_THAT(e.what(), Catch::Contains(std::to_string(limit)));
        CHECK_THROWS_AS(users.count(NotInCollectionFilter{&User::id, values}),
                        ormcache::QueryError);
        values.resize(static_cast<std::size_t>(limit) - 2);
        CHECK(users.count(CollectionFilter{&User::id, values}) == 5);
    }
    SECTION("a lowered limit is the one that applies") {
        sqlite3_limit(handle, SQLITE_LIMIT_VARIABLE_NUMBER, 40);
        std::vector<std::int64_t> values(41);
        for (std::size_t i = 0; i < values.size(); ++i)
            values[i] = static_cast<std::int64_t>(i);
        const auto e = error_of<ormcache::QueryError>([&] {
            users.list(CollectionFilter{&User::id, values});
        });
        CHECK_THAT(e.what(), Catch::Contains("40"));
        values.resize(38);  // with room for LIMIT and OFFSET
        CHECK(users.list(CollectionFilter{&User::id, values}, LimitOffset{.limit = 10}).size() ==
              5);
        CHECK(users.count(NotInCollectionFilter{&User::id, values}) == 0);
    }
    SECTION("the total over all filters counts, in any order") {
        sqlite3_limit(handle, SQLITE_LIMIT_VARIABLE_NUMBER, 40);
        std::vector<std::int64_t> values(30);
        for (std::size_t i = 0; i < values.size(); ++i)
            values[i] = static_cast<std::int64_t>(i);
        CHECK_THROWS_AS(users.list(CollectionFilter{&User::id, values},
                                   NotInCollectionFilter{&User::id, values}),
                        ormcache::QueryError);
        // Collection first, then scalar filters pushing the total over the limit: still a
        // QueryError (not SQLite's "too many SQL variables" DatabaseError at prepare time).
        values.resize(37);
        CHECK_THROWS_AS(
            users.list(CollectionFilter{&User::id, values}, ComparisonFilter{&User::age, ">", 1},
                       ComparisonFilter{&User::age, "<", 100}, SearchFilter{&User::name, "a"},
                       SearchFilter{&User::email, "a"}),
            ormcache::QueryError);
    }
    CHECK(users.get(1).name == "Ada");
    f.check_committed_users_intact();
}

TEST_CASE("IntegrityError for constraint violations, with code and SQL", "[repository][errors]") {
    Fixture f;
    auto session = f.db.session();
    Repository<User> users{session};

    SECTION("UNIQUE") {
        session.execute("CREATE UNIQUE INDEX users_email ON users(email)");
        session.commit();
        const auto e = error_of<ormcache::IntegrityError>(
            [&] { users.add({.name = "Ada 2", .email = "ada@example.org"}); });
        CHECK(e.code() == SQLITE_CONSTRAINT);
        CHECK(e.extended_code() == SQLITE_CONSTRAINT_UNIQUE);
        CHECK_THAT(e.sql(), Catch::StartsWith(R"(INSERT INTO "users")"));
        CHECK_THAT(e.what(), Catch::Contains("UNIQUE"));
        // It is a DatabaseError (and an ormcache::Error), so one handler catches both.
        CHECK_THROWS_AS(users.add({.name = "Ada 3", .email = "ada@example.org"}),
                        ormcache::DatabaseError);
        User bob = users.get(2);
        bob.email = "ada@example.org";
        CHECK_THROWS_AS(users.update(bob), ormcache::IntegrityError);
        CHECK_THROWS_AS(users.upsert({.id = 3, .name = "Cy", .email = "dee@example.org"}),
                        ormcache::IntegrityError);
        CHECK(users.get(2).email == "bob@example.org");
        CHECK(users.get(3).email == "cy@example.org");
    }
    SECTION("PRIMARY KEY") {
        const auto e = error_of<ormcache::IntegrityError>(
            [&] { users.add({.id = 1, .name = "again", .email = "again"}); });
        CHECK(e.code() == SQLITE_CONSTRAINT);
        CHECK(e.extended_code() == SQLITE_CONSTRAINT_PRIMARYKEY);
        Repository<Tag> tags{session};
        tags.add({.slug = "a", .label = "A"});
        CHECK_THROWS_AS(tags.add({.slug = "a", .label = "B"}), ormcache::IntegrityError);
        CHECK(tags.get("a").label == "A");
    }
    SECTION("NOT NULL") {
        const std::string sql = "INSERT INTO users (name, email, created_at) VALUES (?, NULL, 0)";
        const auto e = error_of<ormcache::IntegrityError>([&] { session.execute(sql, "x"); });
        CHECK(e.code() == SQLITE_CONSTRAINT);
        CHECK(e.extended_code() == SQLITE_CONSTRAINT_NOTNULL);
        CHECK(e.sql() == sql);
    }
    SECTION("FOREIGN KEY") {
        session.execute(
            "CREATE TABLE books (id INTEGER PRIMARY KEY, author_id INTEGER NOT NULL REFERENCES "
            "authors(id), title TEXT NOT NULL)");
        Repository<app::Author> authors{session};
        Repository<app::Book> books{session};
        const auto tolkien = authors.add({.name = "Tolkien"});
        const auto nobody = authors.add({.name = "Nobody"});
        books.add({.author_id = tolkien.id, .title = "The Hobbit"});
        session.commit();

        const auto e = error_of<ormcache::IntegrityError>(
            [&] { books.add({.author_id = 999, .title = "Orphan"}); });
        CHECK(e.code() == SQLITE_CONSTRAINT);
        CHECK(e.extended_code() == SQLITE_CONSTRAINT_FOREIGNKEY);
        CHECK_THAT(e.sql(), Catch::StartsWith(R"(INSERT INTO "books")"));
        CHECK_THROWS_AS(authors.remove(tolkien.id), ormcache::IntegrityError);
        // remove_many is all-or-nothing: the removable author stays too.
        CHECK_THROWS_AS(authors.remove_many({nobody.id, tolkien.id}), ormcache::IntegrityError);
        CHECK(authors.count() == 2);
        CHECK(books.count() == 1);
        session.commit();
        auto other = f.db.session();
        Repository<app::Author> seen{other};
        CHECK(seen.count() == 2);
    }
    // After the failure: the session works, a new write works, committed data is intact.
    CHECK(users.get(1).name == "Ada");
    const User added = users.add({.name = "after", .email = "after@example.org"});
    CHECK(users.get(added.id).name == "after");
    session.rollback();
    f.check_committed_users_intact();
}

TEST_CASE("session.execute: DatabaseError for bad SQL, QueryError for misuse",
          "[repository][errors][execute]") {
    Fixture f;
    auto session = f.db.session();
    Repository<User> users{session};

    SECTION("bad SQL") {
        const auto e = error_of<ormcache::DatabaseError>([&] { session.execute("SELEC 1"); });
        CHECK(e.code() == SQLITE_ERROR);
        CHECK(e.sql() == "SELEC 1");
        bool integrity = false;  // a syntax error is not a constraint violation
        try {
            session.execute("SELEC 1");
        } catch (const ormcache::IntegrityError&) {
            integrity = true;
        } catch (const ormcache::DatabaseError&) {
        }
        CHECK_FALSE(integrity);
        CHECK_THROWS_AS(session.execute("SELECT * FROM no_such_table"), ormcache::DatabaseError);
        CHECK_THROWS_AS(session.execute("UPDATE users SET no_such_column = 1"),
                        ormcache::DatabaseError);
    }
    SECTION("the wrong number of parameters") {
        CHECK_THROWS_AS(session.execute("UPDATE users SET name = ? WHERE id = ?", "x"),
                        ormcache::QueryError);
        CHECK_THROWS_AS(session.execute("UPDATE users SET name = ? WHERE id = ?", "x", 1, 2),
                        ormcache::QueryError);
        CHECK_THROWS_AS(session.execute("DELETE FROM users", 1), ormcache::QueryError);
        CHECK(users.count() == 5);
        CHECK(session.execute("UPDATE users SET name = ? WHERE id = ?", "Ada!", 1) == 1);
        CHECK(users.get(1).name == "Ada!");
    }
    SECTION("more than one statement: nothing runs") {
        CHECK_THROWS_AS(session.execute("UPDATE users SET name = 'zz'; DELETE FROM users"),
                        ormcache::QueryError);
        CHECK_THROWS_AS(session.execute("SELECT 1; SELECT 2"), ormcache::QueryError);
        CHECK_THROWS_AS(session.execute("UPDATE users SET name = 'zz'; ; DELETE FROM users"),
                        ormcache::QueryError);
        CHECK_THROWS_AS(session.execute("SELECT 1; /* c */ DELETE FROM users -- c"),
                        ormcache::QueryError);
        CHECK_THROWS_AS(session.execute("SELECT 1; not even sql"), ormcache::QueryError);
        CHECK(users.count() == 5);
        CHECK(users.count(ComparisonFilter{&User::name, "=", "zz"}) == 0);
        // One statement with a trailing semicolon, whitespace or comment is fine.
        CHECK(session.execute("UPDATE users SET age = 40 WHERE id = 1;  \n") == 1);
        CHECK(session.execute("UPDATE users SET age = 41 WHERE id = 1; -- bump") == 1);
        CHECK(session.execute("UPDATE users SET age = 42 WHERE id = 1; /* bump */ ;") == 1);
        CHECK(users.get(1).age == 42);
    }
    CHECK(users.get(2).name == "Bob");
    session.rollback();
    f.check_committed_users_intact();
}

TEST_CASE("add_many / update_many / remove_many are all-or-nothing inside the transaction",
          "[repository][errors][atomic]") {
    Fixture f;
    auto session = f.db.session();
    Repository<User> users{session};
    auto other_session = f.db.session();
    Repository<User> other{other_session};

    // Earlier work in the same (still open) transaction.
    const User earlier = users.add({.name = "earlier", .email = "earlier@x"});
    REQUIRE(session.in_transaction());

    SECTION("add_many with a duplicate key") {
        CHECK_THROWS_AS(users.add_many({{.name = "batch1", .email = "b1"},
                                        {.name = "batch2", .email = "b2"},
                                        {.id = 1, .name = "dup", .email = "dup"}}),
                        ormcache::IntegrityError);
        CHECK(users.count(SearchFilter{&User::name, "batch"}) == 0);
        CHECK(users.get(1).name == "Ada");
    }
    SECTION("update_many with a missing row") {
        User a = users.get(1), b = users.get(2);
        a.name = "A!";
        b.name = "B!";
        CHECK_THROWS_AS(users.update_many({a, b, User{.id = 4242, .name = "x", .email = "x"}}),
                        ormcache::NotFoundError);
        CHECK(users.get(1).name == "Ada");
        CHECK(users.get(2).name == "Bob");
    }
    SECTION("update_many with a constraint violation in the middle") {
        session.execute("CREATE UNIQUE INDEX users_email ON users(email)");
        User a = users.get(1), b = users.get(2), c = users.get(3);
        a.name = "A!";
        b.email = "cy@example.org";  // taken by 3
        c.name = "C!";
        CHECK_THROWS_AS(users.update_many({a, b, c}), ormcache::IntegrityError);
        CHECK(users.get(1).name == "Ada");
        CHECK(users.get(2).email == "bob@example.org");
        CHECK(users.get(3).name == "Cy");
    }
    // The outer transaction is still open and still holds the earlier work.
    CHECK(session.in_transaction());
    CHECK(users.get(earlier.id).name == "earlier");
    CHECK(users.count() == 6);
    session.commit();
    CHECK(other.get(earlier.id).name == "earlier");
    CHECK(other.count() == 6);
    CHECK(other.get(1).name == "Ada");
}

// =============================================================================================
// Messages that say where (issue 10, item 7)

TEST_CASE("QueryError names the filter's position and kind, its member's type, model and table",
          "[repository][errors][messages]") {
    Fixture f;
    auto session = f.db.session();
    Repository<User> users{session};
    Repository<repo_test::Note> notes{session};
    const auto message = [](auto&& fn) {
        return std::string(error_of<ormcache::QueryError>(fn).what());
    };

    SECTION("a bad operator, with the allowed ones") {
        const auto what = message([&] {
            users.list(OrderBy{&User::id}, ComparisonFilter{&User::age, "==", 30});
        });
        INFO(what);
        CHECK_THAT(what, Catch::Contains("ComparisonFilter (argument 2 of list())"));
        CHECK_THAT(what, Catch::Contains(R"("age")") && Catch::Contains("std::optional<int>"));
        CHECK_THAT(what, Catch::Contains("app::User") && Catch::Contains("'users'"));
        CHECK_THAT(what, Catch::Contains("'=='") && Catch::Contains("=, !=, <, <=, >, >="));
    }
    SECTION("an ordering operator against NULL") {
        const auto what = message([&] {
            users.count(Options{}, ComparisonFilter{&User::age, "<", std::nullopt});
        });
        INFO(what);
        CHECK_THAT(what, Catch::Contains("ComparisonFilter (argument 2 of count())") &&
                             Catch::Contains("'<'") && Catch::Contains("NULL"));
    }
    SECTION("a member ORMCACHE_MODEL does not map: its type, its class, the model") {
        const auto what = message([&] {
            notes.list(LimitOffset{.limit = 1}, OrderBy{&repo_test::Note::id},
                       OrderBy{&repo_test::Note::draft});
        });
        INFO(what);
        CHECK_THAT(what, Catch::Contains("OrderBy (argument 3 of list())"));
        CHECK_THAT(what, Catch::Contains("std::string") && Catch::Contains("repo_test::Note") &&
                             Catch::Contains("'notes'"));
        const auto search = message([&] {
            notes.exists(SearchFilter{&repo_test::Note::draft, "x"});
        });
        INFO(search);
        CHECK_THAT(search, Catch::Contains("SearchFilter (argument 1 of exists())"));
    }
    SECTION("an empty collection") {
        const auto what = message([&] {
            users.list_and_count(CollectionFilter{&User::id, std::vector<std::int64_t>{}});
        });
        INFO(what);
        CHECK_THAT(what, Catch::Contains("CollectionFilter (argument 1 of list_and_count())") &&
                             Catch::Contains(R"("id")") && Catch::Contains("empty"));
    }
    SECTION("LimitOffset twice: both positions") {
        const auto what = message([&] {
            users.list(LimitOffset{.limit = 1}, OrderBy{&User::id}, LimitOffset{.limit = 2});
        });
        INFO(what);
        CHECK_THAT(what, Catch::Contains("LimitOffset (argument 3 of list())") &&
                             Catch::Contains("first as argument 1") &&
                             Catch::Contains("app::User"));
    }
    SECTION("more values than SQLite binds, over all filters") {
        sqlite3_limit(session.connection().getHandle(), SQLITE_LIMIT_VARIABLE_NUMBER, 40);
        const std::vector<std::int64_t> values(30, 1);
        const auto what = message([&] {
            users.count(CollectionFilter{&User::id, values},
                        NotInCollectionFilter{&User::id, values});
        });
        INFO(what);
        CHECK_THAT(what, Catch::Contains("NotInCollectionFilter (argument 2 of count())") &&
                             Catch::Contains("40"));
    }
}

TEST_CASE("Errors outside queries name the model too", "[repository][errors][messages]") {
    SECTION("a payload that is not the model's JSON") {
        const auto what = std::string(error_of<ormcache::SerializationError>([] {
                                          ormcache::from_json<User>(nlohmann::json::array());
                                      }).what());
        INFO(what);
        CHECK_THAT(what, Catch::Contains("app::User") && Catch::Contains("'users'"));
        const auto field = std::string(
            error_of<ormcache::SerializationError>([] {
                ormcache::from_json<User>(nlohmann::json{
                    {"id", 1}, {"name", 2}, {"email", "e"}, {"age", nullptr}, {"created_at", 0}});
            }).what());
        INFO(field);
        CHECK_THAT(field, Catch::Contains("app::User") && Catch::Contains("'name'"));
    }
    SECTION("a repository whose session was closed") {
        Fixture f;
        std::optional<ormcache::Session> session = f.db.session();
        Repository<Tag> tags{*session};
        session.reset();
        const auto what = std::string(error_of<ormcache::Error>([&] { tags.count(); }).what());
        INFO(what);
        CHECK_THAT(what, Catch::Contains("app::Tag") && Catch::Contains("'tags'") &&
                             Catch::Contains("closed"));
    }
}
