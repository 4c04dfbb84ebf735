// The cache layer against docs/reference.md sections 3 and 6: configuration and cache rules 1
// and 2 (get by id, queries), on SQLite files, with the SQL counted through
// DatabaseConfig::on_query, stats() asserted, and a byte-storing fake backend
// (tests/support/fake_backend.hpp) that exposes what is stored and injects failures.

#include <catch2/catch.hpp>

#include "cache_test_fixture.hpp"

using namespace cache_test;

// =============================================================================================
// Configuration (docs/reference.md, section 3)

TEST_CASE("Config: \"memory\" and \"null\", and the seed's dogpile.cache spellings of them",
          "[cache][config]") {
    for (const std::string name : {"memory", "dogpile.cache.memory"}) {
        CAPTURE(name);
        const auto [selects, stats] = read_twice(with_backend(name));
        CHECK(selects == 1);
        CHECK(traffic(stats) == Traffic{1, 1, 1});
        CHECK(stats.errors == 0);
    }
    for (const std::string name : {"null", "dogpile.cache.null"}) {
        CAPTURE(name);
        const auto [selects, stats] = read_twice(with_backend(name));
        CHECK(selects == 2);
        CHECK(all_zero(stats));
    }
}

TEST_CASE("Config: redis, memcached and file without their headers name the header to include",
          "[cache][config]") {
    struct Case {
        std::string name, header, target;
    };
    const std::vector<Case> cases{
        {"redis", "<ormcache/backends/redis.hpp>", "ormcache::redis"},
        {"dogpile.cache.redis", "<ormcache/backends/redis.hpp>", "ormcache::redis"},
        {"memcached", "<ormcache/backends/memcached.hpp>", "ormcache::memcached"},
        {"dogpile.cache.memcached", "<ormcache/backends/memcached.hpp>", "ormcache::memcached"},
        {"file", "<ormcache/backends/file.hpp>", ""},
        {"dogpile.cache.dbm", "<ormcache/backends/file.hpp>", ""},
    };
    for (const auto& c : cases) {
        CAPTURE(c.name);
        const std::string message = config_error(with_backend(c.name));
        CHECK_THAT(message, Catch::Contains(c.header));
        CHECK_THAT(message, Catch::Contains(c.target));
        CHECK_THAT(message, Catch::Contains("backend"));
    }
}

TEST_CASE("Config: an unknown backend name is a ConfigError naming it", "[cache][config]") {
    for (const std::string name : {"nosuch", "dogpile.cache.nosuch", ""}) {
        CAPTURE(name);
        const std::string message = config_error(with_backend(name));
        CHECK_THAT(message, Catch::Contains("'" + name + "'"));
        CHECK_THAT(message, Catch::Contains("register_backend"));
    }
}

TEST_CASE("Config: expiration_time -1 means never; below -1 is a ConfigError", "[cache][config]") {
    CacheConfig never = with_backend("memory");
    never.expiration_time = std::chrono::seconds{-1};
    accepted(never);

    // On a byte backend the entries carry no expiry at all.
    Fixture f("fake", [](CacheConfig& c) { c.expiration_time = std::chrono::seconds{-1}; });
    auto s = f.db->session();
    Repository<User> users{s};
    users.get(1);
    REQUIRE(f.store->ttl(f.user_key(1)).has_value());
    CHECK(f.store->ttl(f.user_key(1))->count() < 0);

    for (const auto seconds : {-2, -100}) {
        CAPTURE(seconds);
        CacheConfig bad = with_backend("memory");
        bad.expiration_time = std::chrono::seconds{seconds};
        const auto message = config_error(bad);
        CHECK_THAT(message, Catch::Contains("expiration_time"));
        CHECK_THAT(message, Catch::Contains(std::to_string(seconds)));
    }
}

TEST_CASE("Config: arguments must be a JSON object", "[cache][config]") {
    for (const nlohmann::json& arguments :
         {nlohmann::json::array({1, 2}), nlohmann::json(42), nlohmann::json("max_entries=10"),
          nlohmann::json(true)}) {
        CAPTURE(arguments.dump());
        CacheConfig bad = with_backend("memory");
        bad.arguments = arguments;
        CHECK_THAT(config_error(bad), Catch::Contains("arguments"));
    }
}

TEST_CASE("Config: memory arguments are checked and a bad one is named",
          "[cache][config][memory]") {
    for (const nlohmann::json& value :
         {nlohmann::json("100"), nlohmann::json(1.5), nlohmann::json(true), nlohmann::json(-1),
          nlohmann::json::array({10}), nlohmann::json(nullptr)}) {
        CAPTURE(value.dump());
        CacheConfig bad = with_backend("memory");
        bad.arguments = {{"max_entries", value}};
        CHECK_THAT(config_error(bad), Catch::Contains("max_entries"));
    }
    {
        CacheConfig bad = with_backend("memory");
        bad.arguments = {{"max_size", 10}};
        CHECK_THAT(config_error(bad), Catch::Contains("max_size"));
    }
    {
        CacheConfig bad = with_backend("dogpile.cache.memory");
        bad.arguments = {{"max_entries", 10}, {"expiration", 5}};
        CHECK_THAT(config_error(bad), Catch::Contains("expiration"));
    }
    for (const int max_entries : {0, 1, 100000}) {
        CAPTURE(max_entries);
        CacheConfig ok = with_backend("memory");
        ok.arguments = {{"max_entries", max_entries}};
        accepted(ok);
    }
}

TEST_CASE("Config: a serializer needs encode, decode and a usable name",
          "[cache][config][serializer]") {
    {
        CacheConfig bad = with_backend("memory");
        bad.serializer.encode = nullptr;
        CHECK_THAT(config_error(bad), Catch::Contains("serializer"));
    }
    {
        CacheConfig bad = with_backend("memory");
        bad.serializer.decode = nullptr;
        CHECK_THAT(config_error(bad), Catch::Contains("serializer"));
    }
    {
        CacheConfig bad = with_backend("memory");
        bad.serializer = ormcache::Serializer{};  // neither
        CHECK_THAT(config_error(bad), Catch::Contains("serializer"));
    }
    for (const std::string name : {"", "my:serializer"}) {
        CAPTURE(name);
        CacheConfig bad = with_backend("memory");
        bad.serializer.name = name;
        CHECK_THAT(config_error(bad), Catch::Contains("serializer.name"));
    }
}

TEST_CASE("Config: a user's backend is registered by name and validates its own arguments",
          "[cache][config][register]") {
    auto store = FakeStore::create();
    accepted(store->config());
    CHECK(store->backends_built() >= 2);  // once per constructor
    CHECK(store->calls(Op::fill) > 0);    // and it is the one doing the caching

    CacheConfig bad = store->config();
    bad.arguments["colour"] = "blue";
    CHECK_THAT(config_error(bad), Catch::Contains("colour"));

    // A factory that builds nothing is a ConfigError too.
    ormcache::register_backend("fake-nothing", [](const CacheConfig&) { return nullptr; });
    CHECK_THAT(config_error(with_backend("fake-nothing")), Catch::Contains("fake-nothing"));

    // Registering a name again replaces its factory.
    auto second = FakeStore::create();
    ormcache::register_backend("fake-replaced",
                               [](const CacheConfig&) -> std::unique_ptr<ormcache::AnyBackend> {
                                   throw ConfigError("first factory");
                               });
    ormcache::register_backend("fake-replaced", [second](const CacheConfig& c) {
        return std::make_unique<ormcache::AnyBackend>(
            std::make_unique<ormcache_test::FakeBackend>(second, c.key_prefix));
    });
    accepted(with_backend("fake-replaced"));
    CHECK(second->calls(Op::fill) > 0);
}

TEST_CASE("Config: enabled = false behaves exactly like \"null\"", "[cache][config]") {
    // Disabled fake and memory backends, and the null backend itself, side by side.
    for (const std::string backend : {"fake", "memory", "null"}) {
        CAPTURE(backend);
        Fixture f(backend, [&](CacheConfig& c) { c.enabled = backend == "null"; });
        auto reader = f.db->session();
        auto writer = f.db->session();
        Repository<User> users{reader};
        Repository<User> w{writer};
        for (int round = 0; round < 2; ++round) {
            CHECK(sql_of(f, [&] { CHECK(users.get(1).name == "Ada"); }) == 1);
            CHECK(sql_of(f, [&] { CHECK_FALSE(users.get_or_none(99)); }) == 1);
            CHECK(sql_of(f, [&] { CHECK(users.list().size() == 5); }) == 1);
            CHECK(sql_of(f, [&] { CHECK(users.count() == 5); }) == 1);
        }
        int created = 0;
        for (int round = 0; round < 2; ++round) {
            CHECK(f.manager().get_or_create<std::string>(
                      "k", [&] { return std::to_string(++created); }) == std::to_string(round + 1));
        }
        CHECK(created == 2);
        auto u = w.get(2);
        u.name = "Bobby";
        w.update(u);
        writer.commit();
        CHECK(users.get(2).name == "Bobby");
        f.manager().invalidate<User>(1);
        f.manager().invalidate_all<User>();
        f.manager().clear();
        CHECK(all_zero(f.manager().stats()));
        CHECK(f.errors.count() == 0);
    }
    // The fake store behind the disabled config was never even built.
    Fixture f("fake", [](CacheConfig& c) { c.enabled = false; });
    auto s = f.db->session();
    Repository<User> users{s};
    users.get(1);
    users.list();
    f.manager().get_or_create<int>("x", [] { return 1; });
    CHECK(f.store->backends_built() == 0);
    CHECK(f.store->total_calls() == 0);
}

TEST_CASE("Config: db.cache_manager() without cache_config is a manager on the null backend",
          "[cache][config]") {
    TempDir dir;
    SqlLog log;
    Database db{
        DatabaseConfig{.connection_string = dir.file("plain.db"), .on_query = log.callback()}};
    db.create_all<User>();
    auto s = db.session();
    Repository<User> users{s};
    users.add({.name = "a"}, {.auto_commit = true});
    log.clear();
    for (int i = 0; i < 3; ++i) {
        CHECK(users.get(1).name == "a");
        CHECK(users.list().size() == 1);
    }
    CHECK(log.count("SELECT") == 6);
    int created = 0;
    CHECK(db.cache_manager().get_or_create<int>("k", [&] { return ++created; }) == 1);
    CHECK(db.cache_manager().get_or_create<int>("k", [&] { return ++created; }) == 2);
    db.cache_manager().invalidate<User>(1);
    db.cache_manager().invalidate_all<User>();
    db.cache_manager().clear();
    CHECK(all_zero(db.cache_manager().stats()));
    CHECK(db.cache_manager().config().backend == "null");
}

TEST_CASE("Config: manual setup with CacheManager and setup_cache_listeners", "[cache][config]") {
    ormcache_test::register_fake_backend();
    auto store = FakeStore::create();
    TempDir dir;
    SqlLog log;
    Database db{
        DatabaseConfig{.connection_string = dir.file("manual.db"), .on_query = log.callback()}};
    db.create_all<User>();
    CacheManager manager{store->config()};
    ormcache::setup_cache_listeners(db, manager);

    auto reader = db.session();
    auto writer = db.session();
    Repository<User> users{reader, manager};
    Repository<User> w{writer, manager};
    w.add({.name = "a"}, {.auto_commit = true});
    log.clear();
    CHECK(users.get(1).name == "a");
    CHECK(users.get(1).name == "a");
    CHECK(log.count("SELECT") == 1);
    CHECK(traffic(manager.stats()) == Traffic{1, 1, 1});
    CHECK(all_zero(db.cache_manager().stats()));  // the database's own manager is not involved

    auto u = w.get(1);
    u.name = "b";
    w.update(u, {.auto_commit = true});
    CHECK(users.get(1).name == "b");
}

TEST_CASE("Config: enable_cache_listener = false leaves invalidation to the application",
          "[cache][config]") {
    ormcache_test::register_fake_backend();
    TempDir dir;
    Database db{DatabaseConfig{.connection_string = dir.file("nolistener.db"),
                               .cache_config = CacheConfig{.backend = "memory"},
                               .enable_cache_listener = false}};
    db.create_all<User>();
    auto reader = db.session();
    auto writer = db.session();
    Repository<User> users{reader};
    Repository<User> w{writer};
    w.add({.name = "a"}, {.auto_commit = true});
    CHECK(users.get(1).name == "a");
    auto u = w.get(1, {.use_cache = false});
    u.name = "b";
    w.update(u, {.auto_commit = true});
    CHECK(users.get(1).name == "a");  // nothing invalidated it
    db.cache_manager().invalidate<User>(1);
    CHECK(users.get(1).name == "b");
}

// =============================================================================================
// Cache rule 1 (docs/reference.md): get by id

TEST_CASE("Cache rule 1: a get hit runs no SQL; a miss loads once and stores the entity",
          "[cache][rule1]") {
    const std::string backend = GENERATE(as<std::string>{}, "memory", "fake");
    CAPTURE(backend);
    Fixture f(backend);
    auto s = f.db->session();
    Repository<User> users{s};
    const User expected = f.db_user(1);
    f.reset();

    User first;
    CHECK(sql_of(f, [&] { first = users.get(1); }) == 1);
    CHECK(f.log.count("SELECT") == 1);
    CHECK(json_of(first) == json_of(expected));
    CHECK(f.moved() == Traffic{0, 1, 1});

    for (int i = 0; i < 3; ++i) {
        User again;
        CHECK(sql_of(f, [&] { again = users.get(1); }) == 0);
        CHECK(json_of(again) == json_of(expected));
    }
    CHECK(f.moved() == Traffic{3, 1, 1});
    CHECK(f.delta().errors == 0);

    // get_or_none shares the entry.
    CHECK(sql_of(f, [&] { CHECK(users.get_or_none(1)->name == "Ada"); }) == 0);
    // Another id is another entry.
    CHECK(sql_of(f, [&] { CHECK(users.get(2).name == "Bob"); }) == 1);
    CHECK(f.moved() == Traffic{4, 2, 2});

    if (f.fake()) {
        // A hit is one backend read.
        f.store->reset_calls();
        users.get(1);
        CHECK(f.store->calls(Op::read) == 1);
        CHECK(f.store->total_calls() == 1);
        // The stored entry is user 1 under its generation.
        const auto envelope = parse_envelope(*f.store->raw(f.user_key(1)));
        CHECK(envelope.check.empty());
        CHECK(envelope.stamp == f.store->counter(f.generation_key("users")));
        CHECK(nlohmann::json::parse(envelope.payload) == json_of(expected));
        CHECK(f.store->objects_received() == 0);
        CHECK(f.store->lease_keys().empty());
    }
}

TEST_CASE("Cache rule 1: entries are stored with the config TTL or Options::expiration_time",
          "[cache][rule1][ttl]") {
    Fixture f("fake");
    auto s = f.db->session();
    Repository<User> users{s};
    Repository<Tag> tags{s};
    users.get(1);
    users.get(2, {.expiration_time = std::chrono::seconds{5}});
    users.list(Options{.expiration_time = std::chrono::seconds{7}});
    users.count();
    tags.get("a");
    CHECK(f.store->ttl(f.user_key(1)) == std::chrono::milliseconds{3'600'000});
    CHECK(f.store->ttl(f.user_key(2)) == std::chrono::milliseconds{5'000});
    std::set<std::int64_t> query_ttls;
    for (const auto& key : f.query_keys("users"))
        query_ttls.insert(f.store->ttl(key)->count());
    CHECK(query_ttls == std::set<std::int64_t>{7'000, 3'600'000});
}

TEST_CASE("Cache rule 1: TTL expiry (config expiration_time and Options::expiration_time)",
          "[cache][rule1][ttl][memory]") {
    // Four caches, one sleep: a 1 s config TTL on the fake and the memory backend, and a 1 s
    // per-call TTL under a 3600 s config; entries stored with a long TTL must survive.
    auto one_second = [](CacheConfig& c) { c.expiration_time = std::chrono::seconds{1}; };
    Fixture fake_short("fake", one_second);
    Fixture memory_short("memory", one_second);
    Fixture fake_long("fake");
    Fixture memory_long("memory");
    const Options short_ttl{.expiration_time = std::chrono::seconds{1}};
    const Options long_ttl{.expiration_time = std::chrono::seconds{3600}};

    struct Reader {
        Fixture& f;
        ormcache::Session s;
        Repository<User> users;
        explicit Reader(Fixture& fx) : f(fx), s(fx.db->session()), users(s) {}
    };
    Reader a(fake_short), b(memory_short), c(fake_long), d(memory_long);
    for (Reader* r : {&a, &b}) {
        r->users.get(1);            // config TTL: 1 s
        r->users.get(2, long_ttl);  // the call's TTL wins
        r->users.list();            // 1 s
        r->users.count(long_ttl);   // 3600 s
    }
    for (Reader* r : {&c, &d}) {
        r->users.get(1, short_ttl);
        r->users.get(2);
        r->users.list(short_ttl);
        r->users.count();
    }
    for (Reader* r : {&a, &b, &c, &d}) {
        r->f.reset();
        CHECK(sql_of(r->f, [&] {
                  r->users.get(1);
                  r->users.get(2);
                  r->users.list();
                  r->users.count();
              }) == 0);
    }

    std::this_thread::sleep_for(1200ms);

    for (Reader* r : {&a, &b, &c, &d}) {
        CAPTURE(r->f.cache.backend, r->f.cache.expiration_time.count());
        r->f.reset();
        CHECK(sql_of(r->f, [&] { CHECK(r->users.get(1).name == "Ada"); }) == 1);
        CHECK(sql_of(r->f, [&] { CHECK(r->users.list().size() == 5); }) == 1);
        CHECK(sql_of(r->f, [&] { CHECK(r->users.get(2).name == "Bob"); }) == 0);
        CHECK(sql_of(r->f, [&] { CHECK(r->users.count() == 5); }) == 0);
        CHECK(r->f.moved() == Traffic{2, 2, 2});
    }
}

TEST_CASE("Cache rule 1: a missing id is cached as absent until an insert of it commits",
          "[cache][rule1]") {
    const std::string backend = GENERATE(as<std::string>{}, "memory", "fake");
    CAPTURE(backend);
    Fixture f(backend);
    auto reader = f.db->session();
    auto writer = f.db->session();
    Repository<User> users{reader};
    Repository<User> w{writer};

    CHECK(sql_of(f, [&] { CHECK_FALSE(users.get_or_none(42)); }) == 1);
    CHECK(sql_of(f, [&] { CHECK_FALSE(users.get_or_none(42)); }) == 0);
    CHECK(sql_of(f, [&] { CHECK_THROWS_AS(users.get(42), NotFoundError); }) == 0);
    CHECK(f.moved() == Traffic{2, 1, 1});
    if (f.fake()) {
        CHECK(
            nlohmann::json::parse(parse_envelope(*f.store->raw(f.user_key(42))).payload).is_null());
    }

    SECTION("insert through the repository") {
        w.add({.id = 42, .name = "Late", .email = "late@example.org"});
        CHECK_FALSE(users.get_or_none(42));  // not committed yet: still absent
        writer.commit();
    }
    SECTION("insert through session.execute") {
        writer.execute(
            "INSERT INTO users (id, name, email, created_at) VALUES (42, 'Late', 'l', 0)");
        writer.commit();
    }
    SECTION("insert through the raw connection in autocommit mode") {
        writer.connection().exec(
            "INSERT INTO users (id, name, email, created_at) VALUES (42, 'Late', 'l', 0)");
    }
    SECTION("upsert") {
        w.upsert({.id = 42, .name = "Late", .email = "late@example.org"}, {.auto_commit = true});
    }
    CHECK(sql_of(f, [&] {
              auto found = users.get_or_none(42);
              REQUIRE(found);
              CHECK(found->name == "Late");
          }) == 1);
    CHECK(sql_of(f, [&] { CHECK(users.get(42).name == "Late"); }) == 0);
}

// =============================================================================================
// Cache rule 2 (docs/reference.md): queries

TEST_CASE("Cache rule 2: every distinct query is its own entry; the same query is a hit",
          "[cache][rule2]") {
    const std::string backend = GENERATE(as<std::string>{}, "memory", "fake");
    CAPTURE(backend);
    Fixture f(backend);
    auto s = f.db->session();
    Repository<User> users{s};

    using Query = std::function<std::string(Options)>;
    auto page = [](const std::pair<std::vector<User>, std::int64_t>& p) {
        return dump(p.first) + " total " + std::to_string(p.second);
    };
    const std::vector<std::pair<std::string, Query>> queries{
        {"list()", [&](Options o) { return dump(users.list(o)); }},
        {"age >= 18",
         [&](Options o) {
             return dump(users.list(ComparisonFilter{&User::age, ">=", 18}, o));
         }},
        {"age >= 30",
         [&](Options o) {
             return dump(users.list(ComparisonFilter{&User::age, ">=", 30}, o));
         }},
        {"age > 18",
         [&](Options o) {
             return dump(users.list(ComparisonFilter{&User::age, ">", 18}, o));
         }},
        {"age = NULL",
         [&](Options o) {
             return dump(
                 users.list(ComparisonFilter{&User::age, "=", std::optional<std::int32_t>{}}, o));
         }},
        {"name = Ada",
         [&](Options o) {
             return dump(users.list(ComparisonFilter{&User::name, "=", "Ada"}, o));
         }},
        {"name = Bob",
         [&](Options o) {
             return dump(users.list(ComparisonFilter{&User::name, "=", "Bob"}, o));
         }},
        {"order name asc",
         [&](Options o) {
             return dump(users.list(OrderBy{&User::name, Sort::asc}, o));
         }},
        {"order name desc",
         [&](Options o) {
             return dump(users.list(OrderBy{&User::name, Sort::desc}, o));
         }},
        {"order age, name",
         [&](Options o) { return dump(users.list(OrderBy{&User::age}, OrderBy{&User::name}, o)); }},
        {"order name, age",
         [&](Options o) { return dump(users.list(OrderBy{&User::name}, OrderBy{&User::age}, o)); }},
        {"limit 2 offset 0",
         [&](Options o) {
             return dump(users.list(LimitOffset{2, 0}, o));
         }},
        {"limit 2 offset 2",
         [&](Options o) {
             return dump(users.list(LimitOffset{2, 2}, o));
         }},
        {"limit 3 offset 0",
         [&](Options o) {
             return dump(users.list(LimitOffset{3, 0}, o));
         }},
        {"id in 1,2",
         [&](Options o) {
             return dump(users.list(CollectionFilter{&User::id, {1, 2}}, o));
         }},
        {"id in 1,3",
         [&](Options o) {
             return dump(users.list(CollectionFilter{&User::id, {1, 3}}, o));
         }},
        {"id not in 1",
         [&](Options o) {
             return dump(users.list(NotInCollectionFilter{&User::id, {1}}, o));
         }},
        {"search e",
         [&](Options o) {
             return dump(users.list(SearchFilter{&User::name, "e"}, o));
         }},
        {"search E",
         [&](Options o) {
             return dump(users.list(SearchFilter{&User::name, "E"}, o));
         }},
        {"search E ignore case",
         [&](Options o) {
             return dump(users.list(SearchFilter{&User::name, "E", true}, o));
         }},
        {"created before 350",
         [&](Options o) {
             return dump(
                 users.list(ormcache::BeforeAfter{&User::created_at, t(350), std::nullopt}, o));
         }},
        {"created after 350",
         [&](Options o) {
             return dump(
                 users.list(ormcache::BeforeAfter{&User::created_at, std::nullopt, t(350)}, o));
         }},
        {"list_and_count()", [&](Options o) { return page(users.list_and_count(o)); }},
        {"list_and_count limit 2",
         [&](Options o) {
             return page(users.list_and_count(LimitOffset{2, 0}, o));
         }},
        {"list_and_count limit 2 offset 2",
         [&](Options o) {
             return page(users.list_and_count(LimitOffset{2, 2}, o));
         }},
        {"list_and_count age >= 30",
         [&](Options o) {
             return page(users.list_and_count(ComparisonFilter{&User::age, ">=", 30}, o));
         }},
        {"count()", [&](Options o) { return std::to_string(users.count(o)); }},
        {"count age >= 18",
         [&](Options o) {
             return std::to_string(users.count(ComparisonFilter{&User::age, ">=", 18}, o));
         }},
        {"count age >= 30",
         [&](Options o) {
             return std::to_string(users.count(ComparisonFilter{&User::age, ">=", 30}, o));
         }},
        {"exists()", [&](Options o) { return std::to_string(users.exists(o)); }},
        {"exists name = Ada",
         [&](Options o) {
             return std::to_string(users.exists(ComparisonFilter{&User::name, "=", "Ada"}, o));
         }},
        {"exists name = Zed",
         [&](Options o) {
             return std::to_string(users.exists(ComparisonFilter{&User::name, "=", "Zed"}, o));
         }},
    };

    // The truth, from the database; use_cache = false touches no cache at all.
    std::vector<std::string> expected;
    for (const auto& [name, query] : queries) {
        CAPTURE(name);
        std::string result;
        CHECK(sql_of(f, [&] { result = query({.use_cache = false}); }) >= 1);
        expected.push_back(result);
    }
    CHECK(all_zero(f.delta()));
    CHECK(f.store->total_calls() == 0);
    // Spot checks that the truth is the truth.
    CHECK(expected[2] != expected[1]);
    CHECK(expected.back() == "0");
    CHECK(expected[expected.size() - 2] == "1");

    for (std::size_t i = 0; i < queries.size(); ++i) {
        CAPTURE(queries[i].first);
        std::string result;
        CHECK(sql_of(f, [&] { result = queries[i].second({}); }) >= 1);
        CHECK(result == expected[i]);
        CHECK(f.moved() == Traffic{0, i + 1, i + 1});
    }
    if (f.fake())
        CHECK(f.query_keys("users").size() == queries.size());
    for (std::size_t i = 0; i < queries.size(); ++i) {
        CAPTURE(queries[i].first);
        std::string result;
        CHECK(sql_of(f, [&] { result = queries[i].second({}); }) == 0);
        CHECK(result == expected[i]);
    }
    CHECK(f.moved() == Traffic{queries.size(), queries.size(), queries.size()});
    CHECK(f.delta().errors == 0);
}

TEST_CASE("Cache rule 2: Options{.use_cache = false} neither reads nor writes the cache",
          "[cache][rule2]") {
    Fixture f("fake");
    auto s = f.db->session();
    Repository<User> users{s};
    const Options off{.use_cache = false};
    for (int round = 0; round < 2; ++round) {
        CHECK(sql_of(f, [&] {
                  CHECK(users.get(1, off).name == "Ada");
                  CHECK_FALSE(users.get_or_none(99, off));
                  CHECK(users.list(off).size() == 5);
                  CHECK(users.list(off, LimitOffset{1, 0}).size() == 1);  // Options in any position
                  CHECK(users.list_and_count(off).second == 5);
                  CHECK(users.count(off) == 5);
                  CHECK(users.exists(off));
              }) == 7);
    }
    CHECK(f.store->total_calls() == 0);
    CHECK(all_zero(f.delta()));
    CHECK(f.store->keys_containing(":e:").empty());
    CHECK(f.store->keys_containing(":q:").empty());

    // A cached entry is not consulted either.
    users.get(1);
    f.reset();
    CHECK(sql_of(f, [&] { users.get(1, off); }) == 1);
    CHECK(f.store->total_calls() == 0);
}

TEST_CASE("Cache rule 2: a query entry is stored under the list version with the query as check",
          "[cache][rule2]") {
    Fixture f("fake");
    auto s = f.db->session();
    Repository<User> users{s};
    users.list(ComparisonFilter{&User::name, "=", "Ada"});
    const auto keys = f.query_keys("users");
    REQUIRE(keys.size() == 1);
    CHECK(keys[0].rfind(f.space() + "q:users:" + ormcache::model_digest<User>() + ":json:list:",
                        0) == 0);
    const auto envelope = parse_envelope(*f.store->raw(keys[0]));
    CHECK(envelope.stamp == f.store->counter(f.version_key("users")));
    CHECK_THAT(envelope.check, Catch::StartsWith("list\nSELECT"));
    CHECK_THAT(envelope.check, Catch::Contains("s3:Ada"));  // the bound value
    const auto payload = nlohmann::json::parse(envelope.payload);
    REQUIRE(payload.is_array());
    REQUIRE(payload.size() == 1);
    CHECK(payload[0] == json_of(f.db_user(1)));

    // A stale entry (older list version) is a miss, not an error.
    f.store->put_raw(keys[0], make_envelope(envelope.stamp - 1, envelope.check, "[]"));
    f.reset();
    CHECK(sql_of(f, [&] {
              CHECK(users.list(ComparisonFilter{&User::name, "=", "Ada"}).size() == 1);
          }) == 1);
    CHECK(f.delta().errors == 0);
    // An entry whose check text differs (a hash collision) is a miss, not a wrong answer.
    f.store->put_raw(keys[0], make_envelope(*f.store->counter(f.version_key("users")),
                                            "list\nSELECT other", "[]"));
    CHECK(sql_of(f, [&] {
              CHECK(users.list(ComparisonFilter{&User::name, "=", "Ada"}).size() == 1);
          }) == 1);
    CHECK(f.delta().errors == 0);
}
