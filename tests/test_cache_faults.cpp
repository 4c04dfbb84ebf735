// The cache layer against docs/reference.md section 6: cache rules 7 and 8 (backend failures
// never fail a call; keys carry the mapping digest, serializers and codecs) and the memory
// backend (tests/support/cache_test_fixture.hpp).

#include <catch2/catch.hpp>

#include "cache_test_fixture.hpp"

using namespace cache_test;

// =============================================================================================
// Cache rule 7 (docs/reference.md): backend failures never fail a call

TEST_CASE("Cache rule 7: a backend failing on every operation never fails a repository call",
          "[cache][rule7]") {
    const Fault fault = GENERATE(Fault::cache_error, Fault::runtime_error);
    CAPTURE(fault == Fault::cache_error ? "CacheError" : "std::runtime_error");
    Fixture f("fake");
    auto reader = f.db->session();
    auto writer = f.db->session();
    Repository<User> users{reader};
    Repository<User> w{writer};
    users.get(1);  // one entry stored while the backend worked
    const User ada = f.db_user(1);
    const std::string all_users = dump(users.list(Options{.use_cache = false}));
    f.reset();
    f.store->fail_all(fault);

    for (int round = 0; round < 2; ++round) {
        CHECK(sql_of(f, [&] { CHECK(json_of(users.get(1)) == json_of(ada)); }) == 1);
        CHECK(sql_of(f, [&] { CHECK_FALSE(users.get_or_none(99)); }) == 1);
        CHECK_THROWS_AS(users.get(99), NotFoundError);
        CHECK(dump(users.list()) == all_users);
        CHECK(users.list_and_count(LimitOffset{2, 0}).second == 5);
        CHECK(users.count() == 5);
        CHECK(users.exists(ComparisonFilter{&User::name, "=", "Bob"}));
    }
    // Writes, their commit and its invalidation.
    const auto zed = w.add({.name = "Zed"});
    writer.commit();
    auto bob = w.get(2);
    bob.name = "Bob2";
    w.update(bob, {.auto_commit = true});
    CHECK(w.remove(3, {.auto_commit = true}).name == "Cy");
    CHECK(users.get(zed.id).name == "Zed");
    CHECK(users.get(2).name == "Bob2");
    CHECK_FALSE(users.get_or_none(3));
    // An explicit transaction (its counters cannot be read).
    reader.begin();
    CHECK(users.get(1).name == "Ada");
    CHECK(users.count() == 5);
    reader.commit();
    // The manager's own calls.
    int created = 0;
    CHECK(f.manager().get_or_create<int>("k", [&] { return ++created; }) == 1);
    CHECK(f.manager().get_or_create<int>("k", [&] { return ++created; }) == 2);
    f.manager().invalidate<User>(1);
    f.manager().invalidate_all<User>();
    f.manager().clear();

    // Every failure was counted and reported, once, with the backend and the operation.
    const auto failed = f.store->failed_ops();
    CHECK(f.delta().errors == failed.size());
    CHECK(f.errors.operations() == failed);
    const std::set<std::string> ops(failed.begin(), failed.end());
    CHECK(ops == std::set<std::string>{"read", "fill", "invalidate", "clear"});
    for (const auto& e : f.errors.entries()) {
        CHECK(e.backend == "fake");
        CHECK_THAT(e.what, Catch::Contains("injected"));
    }
    CHECK(f.delta().hits == 0);
    CHECK(f.delta().sets == 0);

    // Healed, the cache works again.
    f.store->heal();
    f.manager().clear();
    f.reset();
    CHECK(sql_of(f, [&] { users.get(1); }) == 1);
    CHECK(sql_of(f, [&] { users.get(1); }) == 0);
    CHECK(f.delta().errors == 0);
}

TEST_CASE("Cache rule 7: a single failed call is absorbed and the next call uses the cache",
          "[cache][rule7]") {
    Fixture f("fake");
    auto s = f.db->session();
    Repository<User> users{s};

    SECTION("read") {
        f.store->fail_next(Op::read, 1);
        CHECK(sql_of(f, [&] { CHECK(users.get(1).name == "Ada"); }) == 1);
        CHECK(f.delta().errors == 1);
        CHECK(f.moved() == Traffic{0, 1, 0});  // it went to the database: a miss
        CHECK(sql_of(f, [&] { users.get(1); }) == 1);
        CHECK(sql_of(f, [&] { users.get(1); }) == 0);
        CHECK(f.moved() == Traffic{1, 2, 1});
    }
    SECTION("fill") {
        f.store->fail_next(Op::fill, 1, Fault::runtime_error);
        CHECK(sql_of(f, [&] { CHECK(users.list().size() == 5); }) == 1);
        CHECK(f.delta().errors == 1);
        CHECK(f.moved() == Traffic{0, 1, 0});
        CHECK(f.query_keys("users").empty());
        CHECK(sql_of(f, [&] { users.list(); }) == 1);
        CHECK(sql_of(f, [&] { users.list(); }) == 0);
        CHECK(f.moved() == Traffic{1, 2, 1});
        REQUIRE(f.errors.count() == 1);
        CHECK(f.errors.entries()[0].operation == "fill");
        CHECK(f.errors.entries()[0].backend == "fake");
        // Not a CacheError: the message still says which backend failed doing what.
        CHECK(f.errors.entries()[0].what == "fake fill: injected runtime failure in fill");
    }
    SECTION("fill and read of get_or_create") {
        f.store->fail_next(Op::fill, 1);
        int calls = 0;
        CHECK(f.manager().get_or_create<int>("k", [&] { return ++calls; }) == 1);
        CHECK(f.manager().get_or_create<int>("k", [&] { return ++calls; }) == 2);
        f.manager().clear();
        f.store->fail_next(Op::read, 1);
        CHECK(f.manager().get_or_create<int>("k", [&] { return ++calls; }) == 3);  // read through
        CHECK(f.manager().get_or_create<int>("k", [&] { return ++calls; }) == 3);  // and stored
        CHECK(f.delta().errors == 2);
        CHECK(f.errors.operations() == std::vector<std::string>{"fill", "read"});
    }
}

TEST_CASE("Cache rule 7: an on_error callback that throws does not fail the call",
          "[cache][rule7]") {
    int reported = 0;
    Fixture f("fake", [&](CacheConfig& c) {
        c.on_error = [&](const CacheError&) {
            ++reported;
            throw std::runtime_error("the callback itself fails");
        };
    });
    auto s = f.db->session();
    Repository<User> users{s};
    f.store->fail_all(Fault::cache_error);
    CHECK(users.get(1).name == "Ada");
    CHECK(users.list().size() == 5);
    users.remove(5, {.auto_commit = true});
    CHECK(f.manager().get_or_create<int>("k", [] { return 1; }) == 1);
    f.manager().clear();
    CHECK(reported > 0);
    CHECK(f.delta().errors == static_cast<std::uint64_t>(reported));
}

TEST_CASE("Cache rule 7: a corrupt entry is a miss, is removed, and is counted",
          "[cache][rule7][corrupt]") {
    Fixture f("fake");
    auto s = f.db->session();
    Repository<User> users{s};
    const User ada = f.db_user(1);
    users.get(1);
    users.list();
    const auto key = f.user_key(1);
    const auto good = parse_envelope(*f.store->raw(key));
    const auto list_key = f.query_keys("users").at(0);
    const auto good_list = parse_envelope(*f.store->raw(list_key));

    struct Case {
        std::string name, bytes;
    };
    const std::vector<Case> cases{
        {"garbage", std::string("\x01garbage\xff", 9)},
        {"empty", ""},
        {"another envelope version", "oc2 " + std::to_string(good.stamp) + " 0\n{}"},
        {"truncated header", "oc1 " + std::to_string(good.stamp)},
        {"non-numeric stamp", "oc1 abc 0\n{}"},
        {"check longer than the entry", "oc1 " + std::to_string(good.stamp) + " 99\n"},
        {"payload not JSON", make_envelope(good.stamp, good.check, "{not json")},
        {"payload of the wrong shape", make_envelope(good.stamp, good.check, R"({"id":"one"})")},
        {"payload missing fields", make_envelope(good.stamp, good.check, R"({"id":1})")},
    };
    for (const auto& c : cases) {
        CAPTURE(c.name);
        f.reset();
        REQUIRE(f.store->corrupt(key, c.bytes));
        User got;
        CHECK(sql_of(f, [&] { got = users.get(1); }) == 1);
        CHECK(json_of(got) == json_of(ada));
        CHECK(f.delta().errors == 1);
        CHECK(f.moved() == Traffic{0, 1, 1});
        CHECK(f.store->was_removed(key));
        REQUIRE(f.errors.count() == 1);
        CHECK(f.errors.entries()[0].operation == "decode");
        CHECK(f.errors.entries()[0].backend == "fake");
        // Filled again with a good entry.
        CHECK(nlohmann::json::parse(parse_envelope(*f.store->raw(key)).payload) == json_of(ada));
        CHECK(sql_of(f, [&] { users.get(1); }) == 0);
    }

    // A query entry: the same.
    f.reset();
    REQUIRE(f.store->corrupt(list_key,
                             make_envelope(good_list.stamp, good_list.check, R"([{"id":1}])")));
    CHECK(sql_of(f, [&] { CHECK(users.list().size() == 5); }) == 1);
    CHECK(f.delta().errors == 1);
    CHECK(f.store->was_removed(list_key));
    CHECK(sql_of(f, [&] { CHECK(users.list().size() == 5); }) == 0);

    // Inside a write transaction (fills under a lease and without singleflight): the same.
    Repository<Tag> tags{s};
    tags.get("a");
    s.execute("UPDATE users SET age = age WHERE id = 5");
    REQUIRE(s.in_transaction());
    const auto tag_key = f.tag_key("a");
    f.reset();
    REQUIRE(f.store->corrupt(tag_key));
    CHECK(sql_of(f, [&] { CHECK(tags.get("a").label == "Alpha"); }) == 1);
    CHECK(f.delta().errors == 1);
    CHECK(f.moved() == Traffic{0, 1, 1});
    CHECK(f.store->was_removed(tag_key));
    CHECK(f.store->lease_keys().empty());
    CHECK(sql_of(f, [&] { CHECK(tags.get("a").label == "Alpha"); }) == 0);
    s.rollback();
}

// =============================================================================================
// Cache rule 8 (docs/reference.md) and serializers: keys carry the mapping's digest and the
// serializer

TEST_CASE("Cache rule 8: entity keys carry the model digest; another mapping never decodes them",
          "[cache][rule8]") {
    Fixture f("fake");
    REQUIRE(ormcache::model_digest<User>() != ormcache::model_digest<mapping_v1::User>());
    auto reader = f.db->session();
    auto writer = f.db->session();
    Repository<User> users{reader};
    Repository<mapping_v1::User> old_users{reader};
    Repository<User> w{writer};

    CHECK(sql_of(f, [&] { CHECK(old_users.get(1).name == "Ada"); }) == 1);
    CHECK(sql_of(f, [&] { CHECK(users.get(1).email == "ada@example.org"); }) == 1);  // no sharing
    CHECK(sql_of(f, [&] { CHECK(old_users.get(1).name == "Ada"); }) == 0);
    CHECK(sql_of(f, [&] { CHECK(users.get(1).email == "ada@example.org"); }) == 0);
    CHECK(f.delta().errors == 0);

    const std::string v1_key = f.entity_key<mapping_v1::User>("i1");
    const std::string v2_key = f.user_key(1);
    CHECK(v1_key != v2_key);
    CHECK_THAT(v1_key, Catch::Contains(ormcache::model_digest<mapping_v1::User>()));
    CHECK_THAT(v2_key, Catch::Contains(ormcache::model_digest<User>()));
    CHECK(f.store->keys_containing(":e:users:") ==
          std::vector<std::string>{std::min(v1_key, v2_key), std::max(v1_key, v2_key)});
    CHECK(v2_key == "aa:" + f.db->cache_identity() + ":e:users:" + ormcache::model_digest<User>() +
                        ":json:i1");

    // Queries too.
    old_users.list();
    users.list();
    const auto queries = f.query_keys("users");
    REQUIRE(queries.size() == 2);
    CHECK(std::count_if(queries.begin(), queries.end(), [](const std::string& k) {
              return k.find(ormcache::model_digest<mapping_v1::User>()) != std::string::npos;
          }) == 1);

    // A commit to the table invalidates the entries of both mappings.
    auto ada = w.get(1);
    ada.name = "Ada2";
    w.update(ada, {.auto_commit = true});
    CHECK(f.store->was_removed(v1_key));
    CHECK(f.store->was_removed(v2_key));
    CHECK(old_users.get(1).name == "Ada2");
    CHECK(users.get(1).name == "Ada2");

    // Bytes of the old mapping found under the new key are undecodable, never a wrong answer.
    f.reset();
    const auto v1_envelope = parse_envelope(*f.store->raw(v1_key));
    f.store->put_raw(v2_key, make_envelope(*f.store->counter(f.generation_key("users")), "",
                                           v1_envelope.payload));
    CHECK(users.get(1).email == "ada@example.org");
    CHECK(f.delta().errors == 1);
}

TEST_CASE("Serializers: json, msgpack and cbor bytes in the backend", "[cache][serializer]") {
    struct Codec {
        std::string name;
        std::function<ormcache::Serializer()> make;
        std::function<nlohmann::json(const std::string&)> decode;
    };
    const std::vector<Codec> codecs{
        {"json", ormcache::serializers::json,
         [](const std::string& b) { return nlohmann::json::parse(b); }},
        {"msgpack", ormcache::serializers::msgpack,
         [](const std::string& b) { return nlohmann::json::from_msgpack(b); }},
        {"cbor", ormcache::serializers::cbor,
         [](const std::string& b) { return nlohmann::json::from_cbor(b); }},
    };
    const auto index = GENERATE(0, 1, 2);
    const auto& codec = codecs[static_cast<std::size_t>(index)];
    CAPTURE(codec.name);
    Fixture f("fake", [&](CacheConfig& c) {
        if (codec.name != "json")
            c.serializer = codec.make();
    });
    REQUIRE(f.cache.serializer.name == codec.name);
    auto s = f.db->session();
    Repository<User> users{s};
    std::vector<User> all = users.list(Options{.use_cache = false});

    users.get(1);
    users.get_or_none(99);
    users.list();
    users.list_and_count(LimitOffset{2, 0});
    users.count();
    users.exists();
    f.manager().get_or_create<std::vector<int>>("numbers", [] {
        return std::vector<int>{1, 2, 3};
    });

    const auto entity = parse_envelope(*f.store->raw(f.user_key(1)));
    CHECK(entity.stamp == f.store->counter(f.generation_key("users")));
    CHECK(codec.decode(entity.payload) == json_of(all[0]));
    if (codec.name != "json")
        CHECK_THROWS(nlohmann::json::parse(entity.payload));  // really binary
    CHECK(codec.decode(parse_envelope(*f.store->raw(f.user_key(99))).payload).is_null());

    std::map<std::string, nlohmann::json> by_kind;
    for (const auto& key : f.query_keys("users")) {
        CHECK_THAT(key, Catch::Contains(":" + codec.name + ":"));
        const auto e = parse_envelope(*f.store->raw(key));
        CHECK(e.stamp == f.store->counter(f.version_key("users")));
        by_kind[e.check.substr(0, e.check.find('\n'))] = codec.decode(e.payload);
    }
    REQUIRE(by_kind.size() == 4);
    nlohmann::json list_json = nlohmann::json::array();
    for (const auto& u : all)
        list_json.push_back(json_of(u));
    CHECK(by_kind["list"] == list_json);
    CHECK(by_kind["list_and_count"] ==
          nlohmann::json{{"items", nlohmann::json::array({json_of(all[0]), json_of(all[1])})},
                         {"total", 5}});
    CHECK(by_kind["count"] == 5);
    CHECK(by_kind["exists"] == true);
    CHECK(codec.decode(parse_envelope(*f.store->raw(f.cache.key_prefix + "r:numbers")).payload) ==
          nlohmann::json::array({1, 2, 3}));

    // And everything reads back from those bytes.
    f.reset();
    CHECK(sql_of(f, [&] {
              CHECK(json_of(users.get(1)) == json_of(all[0]));
              CHECK_FALSE(users.get_or_none(99));
              CHECK(dump(users.list()) == dump(all));
              CHECK(users.list_and_count(LimitOffset{2, 0}).second == 5);
              CHECK(users.count() == 5);
              CHECK(users.exists());
          }) == 0);
    CHECK(f.manager().get_or_create<std::vector<int>>(
              "numbers", [] { return std::vector<int>{}; }) == std::vector<int>{1, 2, 3});
    CHECK(f.moved() == Traffic{7, 0, 0});
    CHECK(f.delta().errors == 0);
}

TEST_CASE("Serializers: every column type round-trips through each serializer",
          "[cache][serializer]") {
    const auto which = GENERATE(0, 1, 2);
    Fixture f("fake", [&](CacheConfig& c) {
        c.serializer = which == 0   ? ormcache::serializers::json()
                       : which == 1 ? ormcache::serializers::msgpack()
                                    : ormcache::serializers::cbor();
    });
    CAPTURE(f.cache.serializer.name);
    f.db->create_all<app::AllTypes>();
    auto s = f.db->session();
    Repository<app::AllTypes> repo{s};
    app::AllTypes row{.flag = true,
                      .i8 = -8,
                      .i16 = -16,
                      .i32 = -32,
                      .i64 = -64,
                      .u8 = 255,
                      .u16 = 65535,
                      .u32 = 4'000'000'000U,
                      .u64 = 18'000'000'000'000'000'000ULL,
                      .f32 = 1.5F,
                      .f64 = -2.25,
                      .text = "t\xC3\xA9xt\n\"q\"",
                      .blob = {0, 1, 2, 255},
                      .color = app::Color::blue,
                      .level = app::high,
                      .at = t(5) + std::chrono::microseconds{7},
                      .o_flag = false,
                      .o_i64 = -1,
                      .o_u64 = 1,
                      .o_f64 = 0.5,
                      .o_text = "",
                      .o_blob = std::vector<std::uint8_t>{},
                      .o_color = app::Color::green,
                      .o_at = t(6)};
    const auto stored = repo.add(row, {.auto_commit = true});
    const auto truth = ormcache::to_json(repo.get(stored.id, {.use_cache = false}));
    CHECK(ormcache::to_json(repo.get(stored.id)) == truth);  // miss: filled
    CHECK(ormcache::to_json(repo.get(stored.id)) == truth);  // hit: decoded from bytes
    CHECK(ormcache::to_json(repo.list()[0]) == truth);
    CHECK(ormcache::to_json(repo.list()[0]) == truth);
    CHECK(f.moved() == Traffic{2, 2, 2});
    CHECK(f.delta().errors == 0);
}

TEST_CASE("Serializers: a custom pair of functions", "[cache][serializer]") {
    std::atomic<int> encodes{0}, decodes{0};
    Fixture f("fake", [&](CacheConfig& c) {
        c.serializer = ormcache::Serializer{[&](const nlohmann::json& j) {
                                                ++encodes;
                                                return "CUSTOM:" + j.dump();
                                            },
                                            [&](std::string_view bytes) {
                                                ++decodes;
                                                if (!bytes.starts_with("CUSTOM:"))
                                                    throw std::runtime_error("not mine");
                                                return nlohmann::json::parse(bytes.substr(7));
                                            },
                                            "custom1"};
    });
    auto s = f.db->session();
    Repository<User> users{s};
    const User ada = f.db_user(1);
    CHECK(json_of(users.get(1)) == json_of(ada));
    CHECK(encodes == 1);
    CHECK(decodes == 0);
    CHECK(json_of(users.get(1)) == json_of(ada));
    CHECK(decodes == 1);
    const auto key = f.user_key(1);
    CHECK_THAT(key, Catch::Contains(":custom1:"));
    const auto e = parse_envelope(*f.store->raw(key));
    CHECK(e.payload == "CUSTOM:" + json_of(ada).dump());
    users.list();
    users.list();
    CHECK(encodes == 2);
    CHECK(decodes == 2);

    // A decode failure of the custom function is a corrupt entry: a miss, counted.
    f.reset();
    f.store->corrupt(key, make_envelope(e.stamp, "", "json:" + json_of(ada).dump()));
    CHECK(sql_of(f, [&] { CHECK(json_of(users.get(1)) == json_of(ada)); }) == 1);
    CHECK(f.delta().errors == 1);
    // An encode failure is a failed fill, not a failed call.
    Fixture g("fake", [](CacheConfig& c) {
        c.serializer = ormcache::Serializer{
            [](const nlohmann::json&) -> std::string { throw std::runtime_error("no"); },
            [](std::string_view) { return nlohmann::json(); }, "broken"};
    });
    auto s2 = g.db->session();
    Repository<User> users2{s2};
    CHECK(users2.get(1).name == "Ada");
    CHECK(users2.list().size() == 5);
    CHECK(g.delta().errors == 2);
    CHECK(g.delta().sets == 0);
    REQUIRE(g.errors.count() == 2);
    CHECK(g.errors.entries()[0].operation == "encode");
}

TEST_CASE("Serializers: an ormcache::codec<T> specialisation is used instead of the serializer",
          "[cache][serializer][codec]") {
    std::atomic<int> encodes{0}, decodes{0};
    Fixture f("fake", [&](CacheConfig& c) {
        c.serializer = ormcache::Serializer{[&](const nlohmann::json& j) {
                                                ++encodes;
                                                return j.dump();
                                            },
                                            [&](std::string_view b) {
                                                ++decodes;
                                                return nlohmann::json::parse(b);
                                            },
                                            "counted"};
    });
    codec_test::report_encodes = codec_test::report_decodes = 0;
    codec_test::note_encodes = codec_test::note_decodes = 0;

    SECTION("a get_or_create value: the codec's bytes are the payload") {
        int created = 0;
        auto make = [&] {
            ++created;
            return codec_test::Report{7, "seven|sept"};
        };
        auto r = f.manager().get_or_create<codec_test::Report>("report", make);
        CHECK(r.number == 7);
        CHECK(r.title == "seven|sept");
        CHECK(codec_test::report_encodes == 1);
        const auto e = parse_envelope(*f.store->raw(f.cache.key_prefix + "r:report"));
        CHECK(e.payload == codec_test::report_bytes(r));
        r = f.manager().get_or_create<codec_test::Report>("report", make);
        CHECK(created == 1);
        CHECK(codec_test::report_decodes == 1);
        CHECK(r.title == "seven|sept");
        CHECK(encodes == 0);
        CHECK(decodes == 0);
    }
    SECTION("a model: the codec encodes every instance") {
        f.db->create_all<codec_test::Note>();
        auto s = f.db->session();
        Repository<codec_test::Note> notes{s};
        notes.add({.body = "first"});
        notes.add({.body = "second"});
        s.commit();
        codec_test::note_encodes = codec_test::note_decodes = 0;

        CHECK(notes.get(1).body == "first");
        CHECK(codec_test::note_encodes == 1);
        const auto key = f.entity_key<codec_test::Note>("i1");
        const auto payload = nlohmann::json::parse(parse_envelope(*f.store->raw(key)).payload);
        REQUIRE(payload.is_string());  // the codec's bytes, not the model's JSON object
        const std::string bytes = codec_test::note_bytes({1, "first"});
        CHECK(
            payload.get<std::string>() ==
            ormcache::detail::base64_encode(std::vector<std::uint8_t>(bytes.begin(), bytes.end())));
        CHECK(notes.get(1).body == "first");
        CHECK(codec_test::note_decodes == 1);

        const auto all = notes.list();
        REQUIRE(all.size() == 2);
        CHECK(codec_test::note_encodes == 3);
        CHECK(notes.list()[1].body == "second");
        CHECK(codec_test::note_decodes == 3);
    }
}

// =============================================================================================
// The memory backend

TEST_CASE("Memory backend: LRU eviction under max_entries", "[cache][memory][eviction]") {
    SECTION("one shard: exact LRU") {
        CacheManager m{
            CacheConfig{.backend = "memory", .arguments = {{"max_entries", 2}, {"shards", 1}}}};
        std::map<std::string, int> created;
        auto get = [&](const std::string& key) {
            return m.get_or_create<std::string>(key, [&] {
                ++created[key];
                return key + "-value";
            });
        };
        CHECK(get("a") == "a-value");
        CHECK(get("b") == "b-value");
        CHECK(get("a") == "a-value");  // a is now the most recently used
        CHECK(get("c") == "c-value");  // evicts b
        CHECK(get("a") == "a-value");
        CHECK(get("c") == "c-value");
        CHECK(created == std::map<std::string, int>{{"a", 1}, {"b", 1}, {"c", 1}});
        CHECK(get("b") == "b-value");  // evicted: created again (and evicts a)
        CHECK(created["b"] == 2);
        CHECK(get("c") == "c-value");
        CHECK(created["c"] == 1);
        CHECK(get("a") == "a-value");
        CHECK(created["a"] == 2);
        CHECK(traffic(m.stats()) == Traffic{4, 5, 5});
    }
    SECTION("entities through a repository") {
        Fixture f("memory", [](CacheConfig& c) {
            c.arguments = {{"max_entries", 2}, {"shards", 1}};
        });
        auto s = f.db->session();
        Repository<User> users{s};
        users.get(1);
        users.get(2);
        CHECK(sql_of(f, [&] { users.get(1); }) == 0);
        CHECK(sql_of(f, [&] { users.get(3); }) == 1);  // evicts 2
        CHECK(sql_of(f, [&] { users.get(1); }) == 0);
        CHECK(sql_of(f, [&] { users.get(3); }) == 0);
        CHECK(sql_of(f, [&] { users.get(2); }) == 1);
    }
    SECTION("default shards: never more than max_entries") {
        CacheManager m{CacheConfig{.backend = "memory", .arguments = {{"max_entries", 3}}}};
        for (int i = 0; i < 50; ++i)
            m.get_or_create<int>("k" + std::to_string(i), [i] { return i; });
        const auto before = m.stats();
        // Newest first: each shard's survivor is requested before anything can evict it.
        for (int i = 49; i >= 0; --i)
            CHECK(m.get_or_create<int>("k" + std::to_string(i), [i] { return i; }) == i);
        const auto hits = m.stats().hits - before.hits;
        CHECK(hits >= 1);
        CHECK(hits <= 3);
    }
    SECTION("max_entries 0 is unbounded") {
        CacheManager m{CacheConfig{.backend = "memory", .arguments = {{"max_entries", 0}}}};
        for (int i = 0; i < 2000; ++i)
            m.get_or_create<int>("k" + std::to_string(i), [i] { return i; });
        for (int i = 0; i < 2000; ++i)
            m.get_or_create<int>("k" + std::to_string(i), [] { return -1; });
        CHECK(traffic(m.stats()) == Traffic{2000, 2000, 2000});
    }
}

TEST_CASE("Keys: everything the library writes starts with key_prefix", "[cache][keys]") {
    Fixture f("fake", [](CacheConfig& c) { c.key_prefix = "myapp:"; });
    auto reader = f.db->session();
    auto writer = f.db->session();
    Repository<User> users{reader};
    Repository<Tag> tags{reader};
    Repository<User> w{writer};
    reader.begin();  // reads the counters of every model
    users.get(1);
    reader.commit();
    users.get(2);
    users.list();
    tags.get("a");
    f.manager().get_or_create<int>("k", [] { return 1; });
    w.remove(5, {.auto_commit = true});
    f.manager().invalidate_all<Tag>();

    CHECK(f.store->keys().size() >= 5);
    for (const auto& key : f.store->keys())
        CHECK_THAT(key, Catch::StartsWith("myapp:"));
    for (const auto& [counter, value] : f.store->counters())
        CHECK_THAT(counter, Catch::StartsWith("myapp:"));
    const std::string space = "myapp:" + f.db->cache_identity() + ":";
    CHECK(f.store->contains(space + "e:users:" + ormcache::model_digest<User>() + ":json:i2"));
    CHECK(f.store->contains(space + "e:tags:" + ormcache::model_digest<Tag>() + ":json:sa"));
    CHECK(f.store->contains("myapp:r:k"));
}

TEST_CASE("Config: arguments = {} (a JSON null) means no arguments", "[cache][config]") {
    CacheConfig config{.backend = "memory", .arguments = {}};
    REQUIRE(config.arguments.is_null());
    accepted(config);
}

TEST_CASE("An encoding failure gives the fill lease back, so the next read fills",
          "[cache][rule7]") {
    int encodes = 0;
    Fixture f("fake", [&](CacheConfig& c) {
        c.serializer = ormcache::Serializer{
            .encode =
                [&encodes](const nlohmann::json& j) {
                    if (++encodes == 1)
                        throw std::runtime_error("cannot encode");
                    return j.dump();
                },
            .decode = [](std::string_view bytes) { return nlohmann::json::parse(bytes); },
            .name = "flaky"};
    });
    auto s = f.db->session();
    Repository<User> users{s};
    CHECK(users.get(1).name == "Ada");  // miss; the encode fails: nothing stored
    CHECK(f.store->lease_keys().empty());
    CHECK(f.delta().errors == 1);
    CHECK(f.delta().sets == 0);
    CHECK(users.get(1).name == "Ada");  // miss again; this time it fills
    CHECK(f.delta().sets == 1);
    CHECK(sql_of(f, [&] { CHECK(users.get(1).name == "Ada"); }) == 0);  // and hits
}

TEST_CASE("A read the backend could not answer counts as a miss", "[cache][rule7]") {
    Fixture f("fake");
    auto s = f.db->session();
    Repository<User> users{s};
    f.store->fail_all();
    users.get(1);
    users.list();
    CHECK(f.delta().misses == 2);
    CHECK(f.delta().hits == 0);
}
