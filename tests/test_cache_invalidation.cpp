// The cache layer against docs/reference.md sections 6 and 7: cache rules 3, 4 and 6
// (transaction-aware invalidation, read-your-writes, old snapshots never fill) and the
// CacheManager, as seen by one process (tests/support/cache_test_fixture.hpp).

#include <catch2/catch.hpp>

#include "cache_test_fixture.hpp"

using namespace cache_test;

// =============================================================================================
// Cache rule 3 (docs/reference.md): transaction-aware invalidation

TEST_CASE("Cache rule 3: a commit invalidates the changed entities and every query of the model",
          "[cache][rule3]") {
    const std::string backend = GENERATE(as<std::string>{}, "memory", "fake");
    CAPTURE(backend);
    Fixture f(backend);
    auto reader = f.db->session();
    auto writer = f.db->session();
    Repository<User> users{reader};
    Repository<Tag> tags{reader};
    Repository<User> w{writer};

    auto warm = [&] {
        users.get(1);
        users.get(2);
        users.list();
        users.count();
        users.exists(ComparisonFilter{&User::name, "=", "Zed"});
        users.list_and_count(LimitOffset{2, 0});
        tags.get("a");
        tags.list();
    };
    warm();
    f.reset();
    CHECK(sql_of(f, warm) == 0);

    auto ada = w.get(1);
    ada.name = "Ada2";
    w.update(ada);
    const auto zed = w.add({.name = "Zed", .email = "zed@example.org"});
    // Nothing is visible, nor invalidated, before the commit.
    CHECK(sql_of(f, warm) == 0);
    CHECK(users.get(1).name == "Ada");
    f.reset();
    writer.commit();
    CHECK(f.delta().version_bumps == 1);
    CHECK(f.delta().invalidations == 2);  // users 1 and the new one
    if (f.fake()) {
        CHECK(f.store->calls(Op::invalidate) == 1);  // one batch
        CHECK(f.store->was_removed(f.user_key(1)));
        CHECK(f.store->was_removed(f.user_key(zed.id)));
        CHECK_FALSE(f.store->was_removed(f.user_key(2)));
    }

    f.reset();
    CHECK(sql_of(f, [&] { CHECK(users.get(1).name == "Ada2"); }) == 1);
    CHECK(sql_of(f, [&] { CHECK(users.get(2).name == "Bob"); }) == 0);  // untouched: still cached
    CHECK(sql_of(f, [&] { CHECK(users.list().size() == 6); }) == 1);
    CHECK(sql_of(f, [&] { CHECK(users.count() == 6); }) == 1);
    CHECK(sql_of(f, [&] { CHECK(users.exists(ComparisonFilter{&User::name, "=", "Zed"})); }) == 1);
    CHECK(sql_of(f, [&] { CHECK(users.list_and_count(LimitOffset{2, 0}).second == 6); }) == 1);
    CHECK(sql_of(f, [&] { CHECK(users.get(zed.id).name == "Zed"); }) == 1);
    // Another model's entries are not touched by a commit that did not change it.
    CHECK(sql_of(f, [&] {
              tags.get("a");
              tags.list();
          }) == 0);
    CHECK(f.moved() == Traffic{3, 6, 6});
}

TEST_CASE("Cache rule 3: a rollback invalidates nothing", "[cache][rule3]") {
    const std::string backend = GENERATE(as<std::string>{}, "memory", "fake");
    CAPTURE(backend);
    Fixture f(backend);
    auto reader = f.db->session();
    auto writer = f.db->session();
    Repository<User> users{reader};
    Repository<User> w{writer};
    users.get(1);
    users.get(2);
    users.list();

    auto ada = w.get(1);
    ada.name = "Ada2";
    w.update(ada);
    w.remove(2);
    w.add({.name = "Zed"});
    writer.execute("UPDATE users SET age = 99");
    f.reset();
    SECTION("explicit rollback") {
        writer.rollback();
    }
    SECTION("the session is destroyed with the transaction open") {
        auto gone = std::move(writer);
    }
    CHECK(f.delta().version_bumps == 0);
    CHECK(f.delta().invalidations == 0);
    CHECK(f.store->calls(Op::invalidate) == 0);
    CHECK(sql_of(f, [&] {
              CHECK(users.get(1).name == "Ada");
              CHECK(users.get(2).name == "Bob");
              CHECK(users.list().size() == 5);
          }) == 0);
    CHECK(f.moved() == Traffic{3, 0, 0});
}

TEST_CASE("Cache rule 3: rolling back a savepoint discards only its changes", "[cache][rule3]") {
    const std::string backend = GENERATE(as<std::string>{}, "memory", "fake");
    CAPTURE(backend);
    Fixture f(backend);
    auto reader = f.db->session();
    auto writer = f.db->session();
    Repository<User> users{reader};
    Repository<User> w{writer};
    users.get(1);
    users.get(2);
    users.list();
    f.reset();

    SECTION("a rolled-back savepoint's entity survives; the rest is invalidated") {
        {
            auto sp = writer.begin_nested();
            auto ada = w.get(1);
            ada.name = "Ada2";
            w.update(ada);
            sp.rollback();
        }
        auto bob = w.get(2);
        bob.name = "Bob2";
        w.update(bob);
        writer.commit();
        CHECK(f.delta().invalidations == 1);
        CHECK(sql_of(f, [&] { CHECK(users.get(1).name == "Ada"); }) == 0);
        CHECK(sql_of(f, [&] { CHECK(users.get(2).name == "Bob2"); }) == 1);
        CHECK(sql_of(f, [&] { users.list(); }) == 1);
        if (f.fake()) {
            CHECK_FALSE(f.store->was_removed(f.user_key(1)));
            CHECK(f.store->was_removed(f.user_key(2)));
        }
    }
    SECTION(
        "a transaction whose only changes were rolled back to a savepoint invalidates nothing") {
        {
            auto sp = writer.begin_nested();
            w.remove(1);
            w.add({.name = "Zed"});
            // the destructor rolls back
        }
        writer.commit();
        CHECK(f.delta().version_bumps == 0);
        CHECK(f.store->calls(Op::invalidate) == 0);
        CHECK(sql_of(f, [&] {
                  CHECK(users.get(1).name == "Ada");
                  CHECK(users.list().size() == 5);
              }) == 0);
    }
    SECTION("a released savepoint's changes are committed and invalidated") {
        auto sp = writer.begin_nested();
        w.remove(1);
        sp.commit();
        writer.commit();
        CHECK(sql_of(f, [&] { CHECK_FALSE(users.get_or_none(1)); }) == 1);
        CHECK(sql_of(f, [&] { CHECK(users.list().size() == 4); }) == 1);
    }
}

TEST_CASE("Cache rule 3: raw SQL writes invalidate like repository writes", "[cache][rule3][raw]") {
    const std::string backend = GENERATE(as<std::string>{}, "memory", "fake");
    CAPTURE(backend);
    Fixture f(backend);
    auto reader = f.db->session();
    auto writer = f.db->session();
    Repository<User> users{reader};
    Repository<User> w{writer};
    auto warm = [&] {
        for (std::int64_t id = 1; id <= 5; ++id)
            users.get(id);
        users.list();
        users.count();
    };
    warm();
    f.reset();
    REQUIRE(sql_of(f, warm) == 0);

    SECTION("session.execute UPDATE") {
        CHECK(writer.execute("UPDATE users SET name = ? WHERE id = ?", "Bee", 2) == 1);
        writer.commit();
        CHECK(users.get(2).name == "Bee");
        CHECK(users.list()[1].name == "Bee");
        CHECK(sql_of(f, [&] { users.get(1); }) == 0);
    }
    SECTION("session.execute DELETE without WHERE") {
        CHECK(writer.execute("DELETE FROM users") == 5);
        writer.commit();
        for (std::int64_t id = 1; id <= 5; ++id)
            CHECK_FALSE(users.get_or_none(id));
        CHECK(users.list().empty());
        CHECK(users.count() == 0);
    }
    SECTION("raw connection DELETE without WHERE, autocommit") {
        writer.connection().exec("DELETE FROM users");
        for (std::int64_t id = 1; id <= 5; ++id)
            CHECK_FALSE(users.get_or_none(id));
        CHECK(users.count() == 0);
    }
    SECTION("raw connection UPDATE, autocommit, via SQLite::Statement") {
        SQLite::Statement st(writer.connection(), "UPDATE users SET name = 'Cee' WHERE id = 3");
        CHECK(st.exec() == 1);
        CHECK(users.get(3).name == "Cee");
        CHECK(users.list()[2].name == "Cee");
    }
    SECTION("raw BEGIN ... COMMIT on the connection") {
        writer.connection().exec("BEGIN");
        writer.connection().exec("UPDATE users SET name = 'Dee2' WHERE id = 4");
        writer.connection().exec("COMMIT");
        writer.commit();  // a call on the session: the commit is delivered by now at the latest
        CHECK(users.get(4).name == "Dee2");
        CHECK(users.count() == 5);
    }
    SECTION("INSERT OR REPLACE over an existing key") {
        writer.execute(
            "INSERT OR REPLACE INTO users (id, name, email, created_at) VALUES (1, 'New', 'n@x', "
            "0)");
        writer.commit();
        CHECK(users.get(1).name == "New");
        CHECK(users.list()[0].name == "New");
    }
    SECTION("INSERT OR REPLACE deleting another row through a UNIQUE column") {
        writer.connection().exec("CREATE UNIQUE INDEX users_email ON users (email)");
        writer.execute(
            "INSERT OR REPLACE INTO users (id, name, email, created_at) VALUES (9, 'Nine', "
            "'bob@example.org', 0)");
        writer.commit();
        CHECK_FALSE(users.get_or_none(2));  // replaced away, although only id 9 was named
        CHECK(users.get(9).name == "Nine");
        CHECK(users.count() == 5);
    }
    SECTION("repository upsert, update_many and remove_many") {
        w.upsert({.id = 1, .name = "Up", .email = "up@x"});
        auto two = w.get(2);
        two.name = "Many";
        w.update_many({two});
        CHECK(w.remove_many({3, 4}).size() == 2);
        writer.commit();
        CHECK(users.get(1).name == "Up");
        CHECK(users.get(2).name == "Many");
        CHECK_FALSE(users.get_or_none(3));
        CHECK_FALSE(users.get_or_none(4));
        CHECK(sql_of(f, [&] { CHECK(users.get(5).name == "eve"); }) == 0);
        CHECK(users.count() == 3);
    }
}

TEST_CASE("Cache rule 3: foreign-key cascades and triggers invalidate the rows they write",
          "[cache][rule3][cascade]") {
    const std::string backend = GENERATE(as<std::string>{}, "memory", "fake");
    CAPTURE(backend);
    Fixture f(backend);
    auto setup = f.db->session();
    setup.connection().exec(
        "CREATE TABLE books (id INTEGER PRIMARY KEY, author_id INTEGER NOT NULL REFERENCES "
        "authors(id) ON DELETE CASCADE, title TEXT NOT NULL)");
    setup.execute("INSERT INTO authors VALUES (1, 'A'), (2, 'B')");
    setup.execute("INSERT INTO books VALUES (10, 1, 'x'), (11, 1, 'y'), (12, 2, 'z')");
    setup.commit();

    auto reader = f.db->session();
    auto writer = f.db->session();
    Repository<app::Book> books{reader};
    Repository<app::Author> authors{writer};
    CHECK(books.get(10).title == "x");
    CHECK(books.get(12).title == "z");
    CHECK(books.list(ComparisonFilter{&app::Book::author_id, "=", 1}).size() == 2);
    CHECK(books.count() == 3);
    f.reset();

    SECTION("ON DELETE CASCADE") {
        authors.remove(1);
        writer.commit();
        CHECK(sql_of(f, [&] { CHECK_FALSE(books.get_or_none(10)); }) == 1);
        CHECK_FALSE(books.get_or_none(11));
        CHECK(books.list(ComparisonFilter{&app::Book::author_id, "=", 1}).empty());
        CHECK(books.count() == 1);
        CHECK(sql_of(f, [&] { CHECK(books.get(12).title == "z"); }) == 0);
    }
    SECTION("a trigger's writes") {
        writer.connection().exec(
            "CREATE TRIGGER authors_au AFTER UPDATE ON authors BEGIN "
            "  UPDATE books SET title = title || '!' WHERE author_id = new.id; END;");
        writer.execute("UPDATE authors SET name = 'B2' WHERE id = 2");
        writer.commit();
        CHECK(books.get(12).title == "z!");
        CHECK(sql_of(f, [&] { CHECK(books.get(10).title == "x"); }) == 0);
    }
}

TEST_CASE("Cache rule 3: a text-keyed model (app::Tag)", "[cache][rule3][text_key]") {
    const std::string backend = GENERATE(as<std::string>{}, "memory", "fake");
    CAPTURE(backend);
    Fixture f(backend);
    auto reader = f.db->session();
    auto writer = f.db->session();
    Repository<Tag> tags{reader};
    Repository<Tag> w{writer};
    CHECK(tags.get("a").label == "Alpha");
    CHECK(tags.get("b").label == "Beta");
    CHECK(tags.get("c").uses == 3);
    CHECK_FALSE(tags.get_or_none("zz"));
    CHECK(tags.list(OrderBy{&Tag::slug}).size() == 3);
    f.reset();
    CHECK(sql_of(f, [&] {
              tags.get("a");
              tags.get("b");
              tags.get_or_none("zz");
          }) == 0);
    if (f.fake()) {
        CHECK(f.store->contains(f.tag_key("a")));
        CHECK(f.store->contains(f.tag_key("zz")));
    }

    auto a = w.get("a");
    a.label = "Alef";
    w.update(a);
    w.add({"zz", "Zed", 0});
    writer.execute("UPDATE tags SET uses = uses + 1 WHERE slug = ?", "c");
    writer.commit();
    CHECK(sql_of(f, [&] { CHECK(tags.get("a").label == "Alef"); }) == 1);
    CHECK(sql_of(f, [&] { CHECK(tags.get("zz").label == "Zed"); }) == 1);
    CHECK(sql_of(f, [&] { CHECK(tags.get("c").uses == 4); }) == 1);
    CHECK(sql_of(f, [&] { CHECK(tags.get("b").label == "Beta"); }) == 0);
    CHECK(tags.list(OrderBy{&Tag::slug}).size() == 4);

    w.remove("b");
    writer.commit();
    CHECK_FALSE(tags.get_or_none("b"));
}

// =============================================================================================
// CacheManager (docs/reference.md, section 7)

TEST_CASE("CacheManager: invalidate<T>(id), invalidate_all<T>() and clear()", "[cache][manager]") {
    const std::string backend = GENERATE(as<std::string>{}, "memory", "fake");
    CAPTURE(backend);
    Fixture f(backend);
    auto reader = f.db->session();
    Repository<User> users{reader};
    Repository<Tag> tags{reader};
    int created = 0;
    auto region = [&] {
        return f.manager().get_or_create<int>("region", [&] { return ++created; });
    };
    auto warm = [&] {
        users.get(1);
        users.get(2);
        users.list();
        tags.get("a");
        region();
    };
    warm();

    // Change the rows behind the cache's back: another Database on the same file, no cache.
    Database other{DatabaseConfig{.connection_string = f.dir.file("cache.db")}};
    {
        auto s = other.session();
        s.execute("UPDATE users SET name = name || '*'");
        s.execute("UPDATE tags SET label = label || '*'");
        s.commit();
    }
    f.reset();
    CHECK(sql_of(f, [&] {
              CHECK(users.get(1).name == "Ada");  // stale, which shows the cache is in use
              CHECK(users.get(2).name == "Bob");
              CHECK(users.list()[0].name == "Ada");
              CHECK(tags.get("a").label == "Alpha");
          }) == 0);

    f.reset();
    f.manager().invalidate<User>(1);
    CHECK(f.delta().invalidations == 1);
    CHECK(f.delta().version_bumps == 1);
    CHECK(sql_of(f, [&] { CHECK(users.get(1).name == "Ada*"); }) == 1);
    CHECK(sql_of(f, [&] { CHECK(users.list()[1].name == "Bob*"); }) == 1);
    CHECK(sql_of(f, [&] { CHECK(users.get(2).name == "Bob"); }) == 0);  // only id 1 was dropped

    f.manager().invalidate<Tag>(std::string("a"));
    CHECK(tags.get("a").label == "Alpha*");

    f.reset();
    f.manager().invalidate_all<User>();
    CHECK(f.delta().version_bumps == 1);
    CHECK(sql_of(f, [&] { CHECK(users.get(2).name == "Bob*"); }) == 1);
    CHECK(sql_of(f, [&] { CHECK(users.get(3).name == "Cy*"); }) == 1);
    CHECK(sql_of(f, [&] { users.list(); }) == 1);
    // ...and the entries filled after it are used again.
    CHECK(sql_of(f, [&] {
              CHECK(users.get(2).name == "Bob*");
              users.list();
          }) == 0);

    // clear() drops every model's entries and get_or_create values.
    {
        auto s = other.session();
        s.execute("UPDATE tags SET label = 'cleared' WHERE slug = 'a'");
        s.commit();
    }
    CHECK(tags.get("a").label == "Alpha*");
    CHECK(region() == 1);
    f.manager().clear();
    CHECK(tags.get("a").label == "cleared");
    CHECK(region() == 2);
    CHECK(f.delta().errors == 0);
    if (f.fake())
        CHECK(f.store->calls(Op::clear) == 1);
}

TEST_CASE("CacheManager: get_or_create caches the value; the creator runs once",
          "[cache][manager][get_or_create]") {
    const std::string backend = GENERATE(as<std::string>{}, "memory", "fake");
    CAPTURE(backend);
    Fixture f(backend);
    auto& m = f.manager();
    int calls = 0;
    auto build = [&] {
        ++calls;
        return std::string("report body");
    };
    CHECK(m.get_or_create<std::string>("report:42", build) == "report body");
    CHECK(m.get_or_create<std::string>("report:42", build) == "report body");
    CHECK(m.get_or_create<std::string>("report:42", build) == "report body");
    CHECK(calls == 1);
    CHECK(f.moved() == Traffic{2, 1, 1});
    CHECK(m.get_or_create<std::string>("report:43", build) == "report body");
    CHECK(calls == 2);

    // Any value with nlohmann to_json/from_json.
    const std::map<std::string, std::vector<int>> value{{"a", {1, 2}}, {"b", {}}};
    int map_calls = 0;
    for (int i = 0; i < 2; ++i) {
        CHECK(m.get_or_create<std::map<std::string, std::vector<int>>>("map", [&] {
            ++map_calls;
            return value;
        }) == value);
    }
    CHECK(map_calls == 1);

    if (f.fake()) {
        const auto key = f.cache.key_prefix + "r:report:42";
        REQUIRE(f.store->contains(key));
        CHECK(nlohmann::json::parse(parse_envelope(*f.store->raw(key)).payload) == "report body");
        CHECK(f.store->ttl(key) == std::chrono::milliseconds{3'600'000});
        m.get_or_create<int>(
            "short", [] { return 1; }, std::chrono::seconds{5});
        CHECK(f.store->ttl(f.cache.key_prefix + "r:short") == std::chrono::milliseconds{5'000});
    }

    // A commit does not touch region values.
    auto s = f.db->session();
    Repository<User> users{s};
    users.remove(5, {.auto_commit = true});
    CHECK(m.get_or_create<std::string>("report:42", build) == "report body");
    CHECK(calls == 2);
    CHECK(f.delta().errors == 0);
}

TEST_CASE("CacheManager: an exception from the creator propagates and is not cached",
          "[cache][manager][get_or_create]") {
    const std::string backend = GENERATE(as<std::string>{}, "memory", "fake");
    CAPTURE(backend);
    Fixture f(backend);
    struct Boom : std::runtime_error {
        using std::runtime_error::runtime_error;
    };
    int calls = 0;
    CHECK_THROWS_MATCHES(f.manager().get_or_create<int>("k",
                                                        [&]() -> int {
                                                            ++calls;
                                                            throw Boom("creator failed");
                                                        }),
                         Boom, Catch::Matchers::Message("creator failed"));
    CHECK(f.delta().sets == 0);
    CHECK(f.delta().errors == 0);  // not a cache failure
    if (f.fake())
        CHECK_FALSE(f.store->contains(f.cache.key_prefix + "r:k"));
    CHECK(f.manager().get_or_create<int>("k", [&] { return ++calls; }) == 2);
    CHECK(f.manager().get_or_create<int>("k", [&] { return ++calls; }) == 2);
    CHECK(calls == 2);
    CHECK(f.delta().sets == 1);
}

TEST_CASE("CacheManager: a value of another type under the same key is a miss, not an error",
          "[cache][manager][get_or_create]") {
    const std::string backend = GENERATE(as<std::string>{}, "memory", "fake");
    CAPTURE(backend);
    Fixture f(backend);
    CHECK(f.manager().get_or_create<int>("k", [] { return 7; }) == 7);
    CHECK(f.manager().get_or_create<std::string>("k", [] { return std::string("seven"); }) ==
          "seven");
    CHECK(f.manager().get_or_create<std::string>("k", [] { return std::string("other"); }) ==
          "seven");
    // The undecodable entry was counted as an error (cache rule 7), reported, and replaced.
    CHECK(f.delta().errors == 1);
    REQUIRE(f.errors.count() == 1);
    CHECK(f.errors.entries()[0].operation == "decode");
}

// =============================================================================================
// Cache rule 4 (docs/reference.md): read-your-writes, no dirty fills

TEST_CASE(
    "Cache rule 4: a session with uncommitted changes reads the model from the database and "
    "never fills it",
    "[cache][rule4]") {
    const std::string backend = GENERATE(as<std::string>{}, "memory", "fake");
    CAPTURE(backend);
    Fixture f(backend);
    auto s = f.db->session();
    auto other = f.db->session();
    Repository<User> users{s};
    Repository<Tag> tags{s};
    Repository<User> other_users{other};
    CHECK(users.get(1).name == "Ada");
    users.list();
    other_users.get(2);

    auto ada = users.get(1);
    ada.name = "Ada-w";
    users.update(ada);
    const auto zed = users.add({.name = "Zed"});
    CHECK(s.has_changes("users"));

    f.reset();
    // Own writes are seen, from the database, with no cache traffic at all for users.
    CHECK(sql_of(f, [&] { CHECK(users.get(1).name == "Ada-w"); }) == 1);
    CHECK(sql_of(f, [&] { CHECK(users.get(1).name == "Ada-w"); }) == 1);
    CHECK(sql_of(f, [&] { CHECK(users.get(zed.id).name == "Zed"); }) == 1);
    CHECK(sql_of(f, [&] { CHECK(users.get(2).name == "Bob"); }) == 1);  // even an unchanged row
    CHECK(sql_of(f, [&] { CHECK(users.list().size() == 6); }) == 1);
    CHECK(sql_of(f, [&] { CHECK(users.count() == 6); }) == 1);
    CHECK(sql_of(f, [&] { CHECK(users.list_and_count().second == 6); }) == 1);
    CHECK(sql_of(f, [&] { CHECK(users.exists(ComparisonFilter{&User::name, "=", "Zed"})); }) == 1);
    CHECK(all_zero(f.delta()));
    CHECK(f.store->total_calls() == 0);

    // Other models in the same session still use the cache.
    CHECK(sql_of(f, [&] { CHECK(tags.get("a").label == "Alpha"); }) == 1);
    CHECK(sql_of(f, [&] { CHECK(tags.get("a").label == "Alpha"); }) == 0);
    CHECK(sql_of(f, [&] { CHECK(tags.count() == 3); }) == 1);
    CHECK(sql_of(f, [&] { CHECK(tags.count() == 3); }) == 0);
    CHECK(f.moved() == Traffic{2, 2, 2});
    if (f.fake())
        CHECK(f.store->keys_containing(":e:users:").size() == 2);  // 1 and 2, from before

    // Another session still reads the committed state from the cache.
    CHECK(sql_of(f, [&] {
              CHECK(other_users.get(1).name == "Ada");
              CHECK(other_users.list().size() == 5);
          }) == 0);

    SECTION("after commit the session fills again") {
        s.commit();
        CHECK_FALSE(s.has_changes("users"));
        f.reset();
        CHECK(sql_of(f, [&] { CHECK(users.get(1).name == "Ada-w"); }) == 1);
        CHECK(sql_of(f, [&] { CHECK(users.get(1).name == "Ada-w"); }) == 0);
        CHECK(sql_of(f, [&] { CHECK(other_users.get(1).name == "Ada-w"); }) == 0);
        CHECK(sql_of(f, [&] { CHECK(users.list().size() == 6); }) == 1);
        CHECK(f.moved() == Traffic{2, 2, 2});
    }
    SECTION("after rollback the cached entries are used again") {
        s.rollback();
        f.reset();
        CHECK(sql_of(f, [&] {
                  CHECK(users.get(1).name == "Ada");
                  CHECK(users.list().size() == 5);
              }) == 0);
        CHECK_FALSE(users.get_or_none(zed.id));
    }
}

TEST_CASE("Cache rule 4: raw writes make the session dirty too", "[cache][rule4][raw]") {
    Fixture f("fake");
    auto s = f.db->session();
    Repository<User> users{s};
    users.get(3);
    s.execute("UPDATE users SET name = 'Cee' WHERE id = 3");
    f.reset();
    CHECK(sql_of(f, [&] { CHECK(users.get(3).name == "Cee"); }) == 1);
    CHECK(f.store->total_calls() == 0);
    CHECK(all_zero(f.delta()));
    s.commit();
    CHECK(users.get(3).name == "Cee");
    CHECK(sql_of(f, [&] { CHECK(users.get(3).name == "Cee"); }) == 0);
}

TEST_CASE("Cache rule 4: changes rolled back to a savepoint no longer make the session dirty",
          "[cache][rule4]") {
    Fixture f("fake");
    auto s = f.db->session();
    Repository<User> users{s};
    users.get(1);
    {
        auto sp = s.begin_nested();
        auto ada = users.get(1);
        ada.name = "X";
        users.update(ada);
        f.reset();
        CHECK(sql_of(f, [&] { CHECK(users.get(1).name == "X"); }) == 1);
        CHECK(f.store->total_calls() == 0);
        sp.rollback();
    }
    CHECK(s.in_transaction());
    CHECK_FALSE(s.has_changes("users"));
    f.reset();
    CHECK(sql_of(f, [&] { CHECK(users.get(1).name == "Ada"); }) == 0);
    CHECK(f.moved() == Traffic{1, 0, 0});
    s.commit();
}

// =============================================================================================
// Cache rule 6 (docs/reference.md), sequentially: an old snapshot never fills

TEST_CASE("Cache rule 6: a reader whose snapshot predates a commit does not fill old data",
          "[cache][rule6]") {
    const std::string backend = GENERATE(as<std::string>{}, "memory", "fake");
    CAPTURE(backend);
    Fixture f(backend);
    auto reader = f.db->session();
    auto writer = f.db->session();
    auto fresh = f.db->session();
    Repository<User> users{reader};
    Repository<User> w{writer};
    Repository<User> fresh_users{fresh};

    reader.begin();
    auto ada = w.get(1, {.use_cache = false});
    ada.name = "Ada2";
    w.update(ada, {.auto_commit = true});
    f.reset();
    CHECK(users.get(1).name == "Ada");  // its snapshot
    CHECK(users.list()[0].name == "Ada");
    CHECK(f.delta().sets == 0);
    CHECK(fresh_users.get(1).name == "Ada2");
    CHECK(fresh_users.list()[0].name == "Ada2");
    reader.commit();
    CHECK(users.get(1).name == "Ada2");
}

TEST_CASE("Cache rule 6: a transaction begun by raw SQL reads hits but never fills",
          "[cache][rule6][raw]") {
    const std::string backend = GENERATE(as<std::string>{}, "memory", "fake");
    CAPTURE(backend);
    Fixture f(backend);
    auto s = f.db->session();
    Repository<User> users{s};
    users.get(1);
    s.connection().exec("BEGIN");
    f.reset();
    CHECK(sql_of(f, [&] { CHECK(users.get(1).name == "Ada"); }) == 0);
    CHECK(sql_of(f, [&] { CHECK(users.get(2).name == "Bob"); }) == 1);
    CHECK(sql_of(f, [&] { CHECK(users.get(2).name == "Bob"); }) == 1);
    CHECK(sql_of(f, [&] { CHECK(users.list().size() == 5); }) == 1);
    CHECK(f.delta().sets == 0);
    s.connection().exec("COMMIT");
    CHECK(sql_of(f, [&] { users.get(2); }) == 1);
    CHECK(sql_of(f, [&] { users.get(2); }) == 0);
    CHECK(f.delta().sets == 1);
}
