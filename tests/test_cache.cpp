// The cache layer against docs/reference.md sections 3, 6 and 7: configuration, the cache
// rules (1-4, 6-8 as seen by one process) and the CacheManager, on SQLite files, with the SQL
// counted through DatabaseConfig::on_query, stats() asserted, and a byte-storing fake backend
// (tests/support/fake_backend.hpp) that exposes what is stored and injects failures.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <catch2/catch.hpp>
#include <ormcache/detail/util/base64.hpp>

#include "envelope.hpp"
#include "error_log.hpp"
#include "fake_backend.hpp"
#include "models.hpp"
#include "test_support.hpp"

// ---- models only these tests use ----

namespace mapping_v1 {
/// The users table as an older build mapped it (fewer columns): another model digest.
struct User {
    std::int64_t id = 0;
    std::string name;
};
ORMCACHE_MODEL(User, "users", id, name)
}  // namespace mapping_v1

namespace codec_test {

/// A model with its own byte codec.
struct Note {
    std::int64_t id = 0;
    std::string body;
};
ORMCACHE_MODEL(Note, "codec_notes", id, body)

/// A get_or_create value with its own byte codec (and no JSON form at all).
struct Report {
    int number = 0;
    std::string title;
};

inline std::atomic<int> note_encodes{0}, note_decodes{0}, report_encodes{0}, report_decodes{0};

inline std::string note_bytes(const Note& n) {
    return "NOTE|" + std::to_string(n.id) + "|" + n.body;
}
inline std::string report_bytes(const Report& r) {
    return "REPORT|" + std::to_string(r.number) + "|" + r.title;
}

}  // namespace codec_test

template <>
struct ormcache::codec<codec_test::Note> {
    static std::string encode(const codec_test::Note& n) {
        ++codec_test::note_encodes;
        return codec_test::note_bytes(n);
    }
    static codec_test::Note decode(std::string_view bytes) {
        ++codec_test::note_decodes;
        if (!bytes.starts_with("NOTE|"))
            throw std::runtime_error("not a note");
        bytes.remove_prefix(5);
        const auto bar = bytes.find('|');
        if (bar == std::string_view::npos)
            throw std::runtime_error("truncated note");
        return codec_test::Note{std::stoll(std::string(bytes.substr(0, bar))),
                                std::string(bytes.substr(bar + 1))};
    }
};

template <>
struct ormcache::codec<codec_test::Report> {
    static std::string encode(const codec_test::Report& r) {
        ++codec_test::report_encodes;
        return codec_test::report_bytes(r);
    }
    static codec_test::Report decode(std::string_view bytes) {
        ++codec_test::report_decodes;
        if (!bytes.starts_with("REPORT|"))
            throw std::runtime_error("not a report");
        bytes.remove_prefix(7);
        const auto bar = bytes.find('|');
        if (bar == std::string_view::npos)
            throw std::runtime_error("truncated report");
        return codec_test::Report{std::stoi(std::string(bytes.substr(0, bar))),
                                  std::string(bytes.substr(bar + 1))};
    }
};

namespace {

using app::Tag;
using app::User;
using ormcache::CacheConfig;
using ormcache::CacheError;
using ormcache::CacheManager;
using ormcache::CacheStats;
using ormcache::CollectionFilter;
using ormcache::ComparisonFilter;
using ormcache::ConfigError;
using ormcache::Database;
using ormcache::DatabaseConfig;
using ormcache::LimitOffset;
using ormcache::NotFoundError;
using ormcache::NotInCollectionFilter;
using ormcache::Options;
using ormcache::OrderBy;
using ormcache::Repository;
using ormcache::SearchFilter;
using ormcache::Sort;
using ormcache_test::Envelope;
using ormcache_test::ErrorLog;
using ormcache_test::FakeStore;
using ormcache_test::Fault;
using ormcache_test::make_envelope;
using ormcache_test::Op;
using ormcache_test::SqlLog;
using ormcache_test::TempDir;
using TimePoint = std::chrono::system_clock::time_point;
using namespace std::chrono_literals;

TimePoint t(int n) {
    return TimePoint{std::chrono::seconds{1'700'000'000 + n}};
}

nlohmann::json json_of(const User& u) {
    return ormcache::to_json(u);
}
std::string dump(const std::vector<User>& users) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& u : users)
        out.push_back(ormcache::to_json(u));
    return out.dump();
}

/// hits, misses and sets of a stats delta, comparable and printable.
struct Traffic {
    std::uint64_t hits = 0, misses = 0, sets = 0;
    bool operator==(const Traffic&) const = default;
};
Traffic traffic(const CacheStats& s) {
    return {s.hits, s.misses, s.sets};
}
std::ostream& operator<<(std::ostream& os, const Traffic& t) {
    return os << "{hits " << t.hits << ", misses " << t.misses << ", sets " << t.sets << "}";
}

bool all_zero(const CacheStats& s) {
    return s.hits == 0 && s.misses == 0 && s.sets == 0 && s.invalidations == 0 &&
           s.version_bumps == 0 && s.singleflight_waits == 0 && s.errors == 0;
}

CacheStats minus(const CacheStats& a, const CacheStats& b) {
    CacheStats d;
    d.hits = a.hits - b.hits;
    d.misses = a.misses - b.misses;
    d.sets = a.sets - b.sets;
    d.invalidations = a.invalidations - b.invalidations;
    d.version_bumps = a.version_bumps - b.version_bumps;
    d.singleflight_waits = a.singleflight_waits - b.singleflight_waits;
    d.errors = a.errors - b.errors;
    return d;
}

/// The envelope in `raw` (envelope.hpp); fails the test if it is not one.
Envelope parse_envelope(const std::string& raw) {
    auto envelope = ormcache_test::parse_envelope(raw);
    REQUIRE(envelope.has_value());
    return *envelope;
}

/// A file database with a cache and seeded rows:
///   users 1 Ada 36, 2 Bob 25, 3 Cy NULL, 4 Dee 36, 5 eve 17
///   tags  a Alpha 1, b Beta 2, c Gamma 3
/// `backend` "fake" uses a fresh FakeStore; any other name is used as is.
struct Fixture {
    TempDir dir;
    SqlLog log;
    ErrorLog errors;
    std::shared_ptr<FakeStore> store = FakeStore::create();
    CacheConfig cache;
    std::unique_ptr<Database> db;
    CacheStats base{};

    explicit Fixture(const std::string& backend = "fake",
                     const std::function<void(CacheConfig&)>& tweak = {}, bool seed = true,
                     const std::string& file = "cache.db") {
        ormcache_test::register_fake_backend();
        if (backend == "fake") {
            cache = store->config();
        } else {
            cache.backend = backend;
        }
        cache.on_error = errors.callback();
        if (tweak)
            tweak(cache);
        db = std::make_unique<Database>(DatabaseConfig{.connection_string = dir.file(file),
                                                       .cache_config = cache,
                                                       .on_query = log.callback()});
        db->create_all<User, Tag, app::Author>();
        if (seed)
            seed_rows();
        reset();
    }

    void seed_rows() {
        auto s = db->session();
        Repository<User> users{s};
        Repository<Tag> tags{s};
        users.add_many({
            {.name = "Ada", .email = "ada@example.org", .age = 36, .created_at = t(100)},
            {.name = "Bob", .email = "bob@example.org", .age = 25, .created_at = t(200)},
            {.name = "Cy", .email = "cy@example.org", .age = {}, .created_at = t(300)},
            {.name = "Dee", .email = "dee@example.org", .age = 36, .created_at = t(400)},
            {.name = "eve", .email = "eve@example.org", .age = 17, .created_at = t(500)},
        });
        tags.add_many({{"a", "Alpha", 1}, {"b", "Beta", 2}, {"c", "Gamma", 3}});
        s.commit();
    }

    /// Forgets the SQL, backend calls, removals and errors so far; stats are counted from here.
    void reset() {
        log.clear();
        store->reset_calls();
        store->clear_removed();
        errors.clear();
        base = manager().stats();
    }

    CacheManager& manager() { return db->cache_manager(); }
    CacheStats delta() const { return minus(db->cache_manager().stats(), base); }
    Traffic moved() const { return traffic(delta()); }
    bool fake() const { return cache.backend == "fake"; }

    /// Where this database's keys start: key_prefix + its identity + ":".
    std::string space() const { return cache.key_prefix + db->cache_identity() + ":"; }

    template <class T>
    std::string entity_key(const std::string& pk) const {
        return space() + "e:" + std::string(ormcache::table_name<T>()) + ":" +
               ormcache::model_digest<T>() + ":" + cache.serializer.name + ":" + pk;
    }
    std::string user_key(std::int64_t id) const {
        return entity_key<User>("i" + std::to_string(id));
    }
    std::string tag_key(const std::string& slug) const { return entity_key<Tag>("s" + slug); }
    std::string version_key(const std::string& table) const { return space() + "v:" + table; }
    std::string generation_key(const std::string& table) const { return space() + "g:" + table; }
    std::vector<std::string> query_keys(const std::string& table) const {
        return store->keys_containing(space() + "q:" + table + ":");
    }

    /// The committed rows, read without the cache.
    User db_user(std::int64_t id) {
        auto s = db->session();
        return Repository<User>{s}.get(id, {.use_cache = false});
    }
};

/// Runs `fn` and returns how many SQL statements it ran.
template <class Fn>
std::size_t sql_of(Fixture& f, Fn&& fn) {
    const auto before = f.log.size();
    fn();
    return f.log.size() - before;
}

/// The ConfigError a config gives, from the Database constructor and from CacheManager{config}
/// (both must throw it, with the same message).
std::string config_error(const CacheConfig& config) {
    ormcache_test::register_fake_backend();
    TempDir dir;
    std::string from_db, from_manager;
    try {
        Database db{DatabaseConfig{.connection_string = dir.file("c.db"), .cache_config = config}};
        FAIL("the Database constructor accepted backend '" << config.backend << "'");
    } catch (const ConfigError& e) {
        from_db = e.what();
    }
    try {
        CacheManager manager{config};
        FAIL("CacheManager{config} accepted backend '" << config.backend << "'");
    } catch (const ConfigError& e) {
        from_manager = e.what();
    }
    CHECK(from_db == from_manager);
    return from_db;
}

/// A config is accepted by both constructors, and the Database reads through it.
void accepted(const CacheConfig& config) {
    ormcache_test::register_fake_backend();
    TempDir dir;
    CHECK_NOTHROW(CacheManager{config});
    Database db{DatabaseConfig{.connection_string = dir.file("ok.db"), .cache_config = config}};
    db.create_all<User>();
    auto s = db.session();
    Repository<User> users{s};
    users.add({.name = "a"}, {.auto_commit = true});
    CHECK(users.get(1).name == "a");
}

CacheConfig with_backend(std::string name) {
    CacheConfig c;
    c.backend = std::move(name);
    return c;
}

/// Reads user 1 twice through a fresh database on `config`: returns (SELECTs run, stats).
std::pair<std::size_t, CacheStats> read_twice(const CacheConfig& config) {
    TempDir dir;
    SqlLog log;
    Database db{DatabaseConfig{
        .connection_string = dir.file("r.db"), .cache_config = config, .on_query = log.callback()}};
    db.create_all<User>();
    auto s = db.session();
    Repository<User> users{s};
    users.add({.name = "a"}, {.auto_commit = true});
    const auto before = db.cache_manager().stats();
    log.clear();
    CHECK(users.get(1).name == "a");
    CHECK(users.get(1).name == "a");
    return {log.count("SELECT"), minus(db.cache_manager().stats(), before)};
}

}  // namespace

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
