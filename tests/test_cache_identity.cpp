// Database identity in cache keys (docs/reference.md, "Database identity"): Database objects
// on one database share entries, different databases never do, whatever their key_prefix; a
// copy of a database file gets an identity of its own unless the user says otherwise.

#include <catch2/catch.hpp>

#include <filesystem>
#include <string>

#include <ormcache/ormcache.hpp>

#include "models.hpp"
#include "test_support.hpp"

using app::User;
using ormcache::CacheConfig;
using ormcache::CacheManager;
using ormcache::Database;
using ormcache::DatabaseConfig;
using ormcache::Repository;
using ormcache_test::SqlLog;
using ormcache_test::TempDir;

namespace {

/// A Database on `path` whose statements go to `log`, cached by `cache` (or not at all).
DatabaseConfig config_for(const std::string& path, SqlLog& log,
                          std::optional<CacheConfig> cache = std::nullopt) {
    return DatabaseConfig{
        .connection_string = path, .cache_config = std::move(cache), .on_query = log.callback()};
}

/// Adds a user and commits, through the database's own cache manager.
std::int64_t add_user(Database& db, const std::string& name) {
    auto s = db.session();
    const auto id = Repository<User>{s}.add(User{.name = name, .email = name + "@example.org"}).id;
    s.commit();
    return id;
}

/// How many SELECTs `read` runs on the database logged by `log`.
template <class Read>
std::size_t selects_of(SqlLog& log, Read&& read) {
    log.clear();
    read();
    return log.count("SELECT");
}

bool has_table(const std::string& path, const std::string& table) {
    SQLite::Database raw(path, SQLite::OPEN_READONLY);
    return raw.tableExists(table);
}

/// Two databases in one directory and one memory cache manager for both, as a manual setup
/// would share it (two processes sharing a cache server are the same case: the Redis,
/// memcached and file tests check that).
struct TwoDatabases {
    TempDir dir;
    SqlLog log_a, log_b;
    CacheManager manager{CacheConfig{.backend = "memory"}};
    Database a{config_for(dir.file("a.db"), log_a)};
    Database b{config_for(dir.file("b.db"), log_b)};
};

}  // namespace

TEST_CASE("Identity: two databases sharing one cache and prefix never see each other's rows",
          "[cache][identity]") {
    TwoDatabases two;
    auto& [dir, log_a, log_b, manager, a, b] = two;
    ormcache::setup_cache_listeners(a, manager);
    ormcache::setup_cache_listeners(b, manager);
    a.create_all<User>();
    const auto id = add_user(a, "only-in-a");

    auto as = a.session();
    Repository<User> users_a{as, manager};
    CHECK(users_a.get(id).name == "only-in-a");  // cached now under a's identity

    SECTION("b has the table but not the row") {
        b.create_all<User>();
        auto bs = b.session();
        Repository<User> users_b{bs, manager};
        CHECK(selects_of(log_b, [&] { CHECK_FALSE(users_b.get_or_none(id)); }) == 1);
        CHECK(selects_of(log_b, [&] { CHECK(users_b.list().empty()); }) == 1);
        CHECK(selects_of(log_b, [&] { CHECK(users_b.count() == 0); }) == 1);
    }
    SECTION("b has no table at all: the database answers (an error), not a's entry") {
        auto bs = b.session();
        Repository<User> users_b{bs, manager};
        CHECK_THROWS_AS(users_b.get(id), ormcache::DatabaseError);
    }
    SECTION("a commit on b does not invalidate a's entries") {
        b.create_all<User>();
        add_user(b, "in-b");
        CHECK(selects_of(log_a, [&] { CHECK(users_a.get(id).name == "only-in-a"); }) == 0);
    }
    CHECK(a.cache_identity() != b.cache_identity());
}

TEST_CASE("Identity: Database objects on one file share entries and keep them across a restart",
          "[cache][identity]") {
    TempDir dir;
    const std::string path = dir.file("app.db");
    CacheManager manager{CacheConfig{.backend = "memory"}};
    SqlLog log_1, log_2;
    std::string identity;
    std::int64_t id = 0;
    {
        Database first{config_for(path, log_1)};
        ormcache::setup_cache_listeners(first, manager);
        first.create_all<User>();
        id = add_user(first, "shared");
        auto s = first.session();
        CHECK(selects_of(log_1, [&] { Repository<User>{s, manager}.get(id); }) == 1);
        identity = first.cache_identity();
    }
    CHECK(identity.size() == 16);
    CHECK(has_table(path, "ormcache_meta"));

    Database second{config_for(path, log_2)};  // a restart, or another process
    ormcache::setup_cache_listeners(second, manager);
    CHECK(second.cache_identity() == identity);
    auto s = second.session();
    Repository<User> users{s, manager};
    CHECK(selects_of(log_2, [&] { CHECK(users.get(id).name == "shared"); }) == 0);

    // A hard link reaches the same file: the same database, the same entries.
    const std::string link = dir.file("link.db");
    std::filesystem::create_hard_link(path, link);
    SqlLog log_3;
    Database linked{config_for(link, log_3)};
    CHECK(linked.cache_identity() == identity);
}

TEST_CASE("Identity: a copy of the file gets its own entries unless told to share",
          "[cache][identity]") {
    TempDir dir;
    const std::string original_path = dir.file("original.db");
    const std::string copy_path = dir.file("copy.db");
    SqlLog log_o, log_c;
    CacheManager manager{CacheConfig{.backend = "memory"}};

    std::int64_t id = 0;
    {
        Database original{config_for(original_path, log_o)};
        original.create_all<User>();
        id = add_user(original, "before-copy");
        // Record the original's identity before the copy, so the copy carries the stored id.
        CHECK(original.cache_identity().size() == 16);
    }
    std::filesystem::copy_file(original_path, copy_path);

    Database original{config_for(original_path, log_o)};
    Database copy{config_for(copy_path, log_c)};
    ormcache::setup_cache_listeners(original, manager);
    ormcache::setup_cache_listeners(copy, manager);
    CHECK(copy.cache_identity() != original.cache_identity());

    auto os = original.session();
    Repository<User> from_original{os, manager};
    auto cs = copy.session();
    Repository<User> from_copy{cs, manager};
    from_original.get(id);
    {
        // The copy diverges: what the original cached must not answer for it.
        auto w = copy.session();
        auto u = Repository<User>{w}.get(id, {.use_cache = false});
        u.name = "changed-in-copy";
        Repository<User>{w}.update(u);
        w.commit();
    }
    CHECK(selects_of(log_c, [&] { CHECK(from_copy.get(id).name == "changed-in-copy"); }) == 1);
    CHECK(selects_of(log_o, [&] { CHECK(from_original.get(id).name == "before-copy"); }) == 0);

    SECTION("DatabaseConfig::cache_identity makes them share on purpose") {
        SqlLog log_1, log_2;
        auto c1 = config_for(original_path, log_1);
        auto c2 = config_for(copy_path, log_2);
        c1.cache_identity = c2.cache_identity = "replica-set.1";
        Database one{c1};
        Database two{c2};
        ormcache::setup_cache_listeners(one, manager);
        ormcache::setup_cache_listeners(two, manager);
        CHECK(one.cache_identity() == "replica-set.1");
        auto s1 = one.session();
        auto s2 = two.session();
        CHECK(selects_of(log_1, [&] { Repository<User>{s1, manager}.get(id); }) == 1);
        CHECK(selects_of(log_2, [&] {
                  CHECK(Repository<User>{s2, manager}.get(id).name == "before-copy");
              }) == 0);
    }
}

TEST_CASE("Identity: the keys a cache writes carry the database's identity", "[cache][identity]") {
    TempDir dir;
    SqlLog log;
    Database db{config_for(dir.file("keys.db"), log,
                           CacheConfig{.backend = "memory", .key_prefix = "app:"})};
    db.create_all<User>();
    const auto id = add_user(db, "k");
    auto s = db.session();
    Repository<User> users{s};
    users.get(id);
    // invalidate() reaches the entry through the database's key space: the next get reads.
    db.cache_manager().invalidate<User>(id);
    CHECK(selects_of(log, [&] { users.get(id); }) == 1);
    db.cache_manager().invalidate_all<User>();
    CHECK(selects_of(log, [&] { users.get(id); }) == 1);
    CHECK(selects_of(log, [&] { users.get(id); }) == 0);
}

TEST_CASE("Identity: one manager's invalidate() reaches every database it serves",
          "[cache][identity]") {
    TwoDatabases two;
    auto& [dir, log_a, log_b, manager, a, b] = two;
    a.create_all<User>();
    b.create_all<User>();
    add_user(a, "a1");
    add_user(b, "b1");
    auto as = a.session();
    auto bs = b.session();
    // No setup_cache_listeners: a Repository built on the manager is enough for it to know
    // the database.
    Repository<User> users_a{as, manager};
    Repository<User> users_b{bs, manager};
    users_a.get(1);
    users_b.get(1);
    manager.invalidate<User>(1);
    CHECK(selects_of(log_a, [&] { CHECK(users_a.get(1).name == "a1"); }) == 1);
    CHECK(selects_of(log_b, [&] { CHECK(users_b.get(1).name == "b1"); }) == 1);
}

TEST_CASE("Identity: a database without a cache is not written to", "[cache][identity]") {
    TempDir dir;
    const std::string path = dir.file("plain.db");
    SqlLog log;
    {
        Database db{config_for(path, log)};
        db.create_all<User>();
        add_user(db, "p");
        auto s = db.session();
        Repository<User>{s}.get(1);  // the null manager needs no identity
    }
    CHECK_FALSE(has_table(path, "ormcache_meta"));
}

TEST_CASE("Identity: ':memory:' databases are distinct, each with its own identity",
          "[cache][identity]") {
    SqlLog log_a, log_b;
    CacheManager manager{CacheConfig{.backend = "memory"}};
    Database a{config_for(":memory:", log_a)};
    Database b{config_for(":memory:", log_b)};
    CHECK(a.cache_identity() != b.cache_identity());
    a.create_all<User>();
    b.create_all<User>();
    add_user(a, "in-a");
    auto as = a.session();
    auto bs = b.session();
    Repository<User>{as, manager}.get(1);
    CHECK_FALSE(Repository<User>{bs, manager}.get_or_none(1));
}

TEST_CASE("Identity: a bad DatabaseConfig::cache_identity is a ConfigError naming the field",
          "[cache][identity][config]") {
    for (const std::string& bad : {std::string("has space"), std::string("a:b"),
                                   std::string(65, 'x'), std::string("caf\xc3\xa9")}) {
        DatabaseConfig config{.connection_string = ":memory:"};
        config.cache_identity = bad;
        CHECK_THROWS_WITH(Database{config}, Catch::Contains("DatabaseConfig::cache_identity") &&
                                                Catch::Contains(bad));
    }
}

TEST_CASE("Identity: a read-only database that never recorded its identity is a ConfigError",
          "[cache][identity][config]") {
    TempDir dir;
    const std::string path = dir.file("ro.db");
    {
        SqlLog log;
        Database db{config_for(path, log)};  // no cache: no identity recorded
        db.create_all<User>();
    }
    SqlLog log;
    const std::string uri = "file:" + path + "?mode=ro";
    CHECK_THROWS_WITH(Database(config_for(uri, log, CacheConfig{.backend = "memory"})),
                      Catch::Contains("cache identity") &&
                          Catch::Contains("DatabaseConfig::cache_identity") &&
                          Catch::Contains(uri));

    // Once recorded by a writable open, read-only opens find it.
    std::string identity;
    {
        Database writable{config_for(path, log, CacheConfig{.backend = "memory"})};
        identity = writable.cache_identity();
    }
    Database read_only{config_for(uri, log, CacheConfig{.backend = "memory"})};
    CHECK(read_only.cache_identity() == identity);
}
