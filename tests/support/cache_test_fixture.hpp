#pragma once
// What the cache-layer tests (test_cache*.cpp) share: the models only they use, the Fixture
// (a file database with seeded rows behind a byte-storing fake backend), and helpers that
// count SQL and compare stats.

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

namespace cache_test {

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

inline TimePoint t(int n) {
    return TimePoint{std::chrono::seconds{1'700'000'000 + n}};
}

inline nlohmann::json json_of(const User& u) {
    return ormcache::to_json(u);
}
inline std::string dump(const std::vector<User>& users) {
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
inline Traffic traffic(const CacheStats& s) {
    return {s.hits, s.misses, s.sets};
}
inline std::ostream& operator<<(std::ostream& os, const Traffic& t) {
    return os << "{hits " << t.hits << ", misses " << t.misses << ", sets " << t.sets << "}";
}

inline bool all_zero(const CacheStats& s) {
    return s.hits == 0 && s.misses == 0 && s.sets == 0 && s.invalidations == 0 &&
           s.version_bumps == 0 && s.singleflight_waits == 0 && s.errors == 0;
}

inline CacheStats minus(const CacheStats& a, const CacheStats& b) {
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
inline Envelope parse_envelope(const std::string& raw) {
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
inline std::size_t sql_of(Fixture& f, Fn&& fn) {
    const auto before = f.log.size();
    fn();
    return f.log.size() - before;
}

/// The ConfigError a config gives, from the Database constructor and from CacheManager{config}
/// (both must throw it, with the same message).
inline std::string config_error(const CacheConfig& config) {
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
inline void accepted(const CacheConfig& config) {
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

inline CacheConfig with_backend(std::string name) {
    CacheConfig c;
    c.backend = std::move(name);
    return c;
}

/// Reads user 1 twice through a fresh database on `config`: returns (SELECTs run, stats).
inline std::pair<std::size_t, CacheStats> read_twice(const CacheConfig& config) {
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

}  // namespace cache_test
