// The memcached backend against real memcached processes (tests/support/memcached_server.hpp):
// three servers per test binary, keys spread over them by consistent hashing. The backend
// contract (tests/contract/backend_contract.hpp, MemcachedContract below) covers hits and misses
// counted in SQL, invalidation, corrupt entries, the fill races of cache rule 6
// (docs/reference.md), clear() by prefix and distributed_lock. Here: configuration, keys
// memcached would refuse (spaces, newlines, 300-byte ids, unicode), TTLs past 30 days, a
// distributed lock across processes, and fault runs with one server stopped, restarted and
// paused under load.
//
// Most tests share the three servers and keep apart by key prefix; tests that stop or pause
// a server start their own. Without memcached every test fails.

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <functional>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <ormcache/backends/memcached.hpp>

#include "backend_contract.hpp"
#include "backend_test_support.hpp"
#include "error_log.hpp"
#include "fault_run.hpp"
#include "gated_backend.hpp"
#include "memcached_server.hpp"
#include "models.hpp"
#include "round_trip_proxy.hpp"
#include "test_support.hpp"
#include "users_fixture.hpp"

using namespace std::chrono_literals;

namespace {

using app::Tag;
using app::User;
using ormcache::CacheConfig;
using ormcache::Database;
using ormcache::DatabaseConfig;
using ormcache::LimitOffset;
using ormcache::Options;
using ormcache::OrderBy;
using ormcache::Repository;
using ormcache_test::ErrorLog;
using ormcache_test::eventually;
using ormcache_test::fill_gate;
using ormcache_test::kBusyTimeout;
using ormcache_test::MemcachedClient;
using ormcache_test::MemcachedServer;
using ormcache_test::names_of;
using ormcache_test::rename_user;
using ormcache_test::RoundTripProxy;
using ormcache_test::SqlLog;
using ormcache_test::TempDir;
using ormcache_test::unique_prefix;
using ormcache_test::with_fill_held;
using Clock = std::chrono::steady_clock;

using Servers = std::vector<std::unique_ptr<MemcachedServer>>;

/// Three servers of the test's own (for the tests that stop, restart or pause one).
Servers own_servers() {
    Servers servers;
    for (int i = 0; i < 3; ++i)
        servers.push_back(std::make_unique<MemcachedServer>());
    return servers;
}

/// The three servers most tests share (started on first use, stopped at exit).
const Servers& shared_servers() {
    static const Servers servers = own_servers();
    return servers;
}

nlohmann::json urls_of(const Servers& servers) {
    nlohmann::json url = nlohmann::json::array();
    for (const auto& s : servers)
        url.push_back(s->address());
    return url;
}

CacheConfig memcached_config(nlohmann::json url, std::string prefix,
                             nlohmann::json extra = nlohmann::json::object()) {
    CacheConfig c;
    c.backend = "memcached";
    c.arguments = {{"url", std::move(url)}};
    for (const auto& [k, v] : extra.items())
        c.arguments[k] = v;
    c.key_prefix = std::move(prefix);
    return c;
}

CacheConfig shared_config(std::string_view label, nlohmann::json extra = nlohmann::json::object()) {
    return memcached_config(urls_of(shared_servers()), unique_prefix(label), std::move(extra));
}

/// A SQLite file with the users and tags tables and five committed users, behind a memcached
/// cache.
///   1 Ada, 2 Bob, 3 Cy, 4 Dee, 5 Eve
using Fixture = ormcache_test::UsersFixture<Tag>;

/// A backend on the fixture's servers and key prefix, asked only where keys live
/// (server_index()).
ormcache::MemcachedBackend placement_of(const Fixture& f) {
    return ormcache::MemcachedBackend(ormcache::detail::memcached_options(f.config.arguments),
                                      f.prefix);
}

/// Every key under `prefix` on any of `servers`, with the server index holding it.
std::map<std::string, std::size_t> keys_on(const Servers& servers, const std::string& prefix) {
    std::map<std::string, std::size_t> out;
    for (std::size_t i = 0; i < servers.size(); ++i) {
        if (!servers[i]->running())
            continue;
        for (const auto& key : servers[i]->client()->keys_with_prefix(prefix))
            out[key] = i;
    }
    return out;
}

/// The raw value of `key` wherever it lives among `servers`.
std::optional<std::string> raw_get(const Servers& servers, const std::string& key) {
    for (const auto& s : servers) {
        if (!s->running())
            continue;
        if (auto v = s->client()->get(key))
            return v;
    }
    return std::nullopt;
}

/// Whether a raw value is a fill lease rather than an entry (memcached.hpp stores the lease
/// marker inside its wrapping of the value).
bool is_lease(std::string_view value) {
    return value.find(std::string_view("\0lease:", 7)) != std::string_view::npos;
}

std::string config_error_for(const nlohmann::json& arguments,
                             const std::string& backend = "memcached") {
    return ormcache_test::config_error_for(backend, arguments);
}

/// The memcached backend with its fills held at fill_gate() when armed, as "memcached-gated".
void register_gated_backend() {
    ormcache_test::register_gated_backend<ormcache::MemcachedBackend,
                                          ormcache::detail::memcached_options>("memcached-gated");
}

/// The contract of tests/contract/backend_contract.hpp, on the three shared servers.
struct MemcachedContract {
    static constexpr std::string_view name = "memcached";
    static constexpr bool shared = true;
    static constexpr bool shared_across_processes = true;
    static constexpr bool distributed_lock = true;
    static constexpr bool gated = true;
    static constexpr bool inspectable = true;

    static CacheConfig config(const TempDir&, std::string_view label, const nlohmann::json& extra) {
        return shared_config(label, extra);
    }
    static void make_gated(CacheConfig& c) {
        register_gated_backend();
        c.backend = "memcached-gated";
    }
    static std::vector<std::string> keys(const CacheConfig&, const std::string& start) {
        std::vector<std::string> out;
        for (const auto& [key, server] : keys_on(shared_servers(), start))
            out.push_back(key);
        return out;
    }
};

}  // namespace

ORMCACHE_BACKEND_CONTRACT(MemcachedContract, "[memcached]");

// ---- configuration -----------------------------------------------------------------------

TEST_CASE("memcached: a bad configuration is a ConfigError naming the field",
          "[memcached][config]") {
    CHECK_THAT(config_error_for({{"url", 11211}}), Catch::Contains("url"));
    CHECK_THAT(config_error_for({{"url", nlohmann::json::array()}}), Catch::Contains("url"));
    CHECK_THAT(config_error_for({{"url", {"127.0.0.1:11211", 7}}}), Catch::Contains("url"));
    CHECK_THAT(config_error_for({{"url", {"127.0.0.1:port"}}}), Catch::Contains("port"));
    CHECK_THAT(config_error_for({{"url", {"127.0.0.1:0"}}}), Catch::Contains("port"));
    CHECK_THAT(config_error_for({{"url", {"127.0.0.1:70000"}}}), Catch::Contains("port"));
    CHECK_THAT(config_error_for({{"url", {":11211"}}}), Catch::Contains("host"));
    CHECK_THAT(config_error_for({{"url", {"127.0.0.1:11211", "127.0.0.1:11211"}}}),
               Catch::Contains("twice"));
    CHECK_THAT(config_error_for({{"pool_size", 0}}), Catch::Contains("pool_size"));
    CHECK_THAT(config_error_for({{"connect_timeout_ms", "1s"}}),
               Catch::Contains("connect_timeout_ms"));
    CHECK_THAT(config_error_for({{"distributed_lock", "yes"}}),
               Catch::Contains("distributed_lock"));
    CHECK_THAT(config_error_for({{"lock_timeout_ms", -1}}), Catch::Contains("lock_timeout_ms"));
    CHECK_THAT(config_error_for({{"servers", {"127.0.0.1:11211"}}}), Catch::Contains("servers"));
    CHECK_THAT(config_error_for(nlohmann::json::array()), Catch::Contains("arguments"));
    CHECK_THAT(config_error_for({{"url", 1}}, "dogpile.cache.memcached"), Catch::Contains("url"));
    // Well-formed arguments are not an error, even with no server behind them.
    CHECK(config_error_for({{"url",
                             {"127.0.0.1:" + std::to_string(ormcache_test::free_port()),
                              "localhost", "[::1]:11311"}},
                            {"connect_timeout_ms", 50},
                            {"pool_size", 2},
                            {"distributed_lock", true},
                            {"lock_timeout_ms", 100}}) == "");
    CHECK(config_error_for({{"url", "127.0.0.1:11211"}}) == "");  // one server as a string

    const auto o =
        ormcache::detail::memcached_options({{"url", {"10.0.0.1:11211", "cache-b", "[::1]:11311"}},
                                             {"connect_timeout_ms", 25},
                                             {"socket_timeout_ms", 30},
                                             {"pool_size", 3},
                                             {"distributed_lock", true},
                                             {"lock_timeout_ms", 900},
                                             {"retry_interval_ms", 40}});
    CHECK(o.servers == std::vector<std::string>{"10.0.0.1:11211", "cache-b:11211", "::1:11311"});
    CHECK(o.connect_timeout == 25ms);
    CHECK(o.socket_timeout == 30ms);
    CHECK(o.pool_size == 3);
    CHECK(o.distributed_lock);
    CHECK(o.lock_timeout == 900ms);
    CHECK(o.retry_interval == 40ms);
}

TEST_CASE("memcached: keys memcached refuses are shortened with a hash, never confused",
          "[memcached][keys]") {
    using ormcache::detail::memcached_unwrap;
    using ormcache::detail::memcached_wrap;
    using ormcache::detail::MemcachedKeyspace;
    using ormcache::detail::sha256_hex;
    // FIPS 180-2 test vectors.
    CHECK(sha256_hex("") == "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855");
    CHECK(sha256_hex("abc") == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    CHECK(sha256_hex("abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq") ==
          "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1");

    const MemcachedKeyspace keys("aa:");
    CHECK(keys.head() == "aa:");
    const std::string plain = "aa:e:users:0123456789abcdef:json:i42";
    CHECK(keys.key(plain).wire == plain);
    CHECK_FALSE(keys.key(plain).shortened);
    CHECK(keys.owns(plain));

    const std::vector<std::string> hostile = {
        "aa:e:tags:x:json:shello world",
        "aa:e:tags:x:json:sline\nbreak",
        "aa:e:tags:x:json:s\r\n",
        "aa:e:tags:x:json:s" + std::string(300, 'x'),
        "aa:e:tags:x:json:s" + std::string(299, 'x') + "y",
        "aa:e:tags:x:json:sgr\xc3\xbc\xc3\x9f \xe6\x97\xa5\xe6\x9c\xac",
        std::string("aa:e:tags:x:json:s\0nul", 22),
        // Fits, but looks like a shortened key: shortened too, so it cannot be one.
        "aa:" + std::string(":") + sha256_hex("anything"),
    };
    std::set<std::string> wires{keys.key(plain).wire};
    for (const auto& key : hostile) {
        INFO(key);
        const auto k = keys.key(key);
        CHECK(k.shortened);
        CHECK(k.wire.size() <= 250);
        CHECK(std::all_of(k.wire.begin(), k.wire.end(), [](char c) {
            return static_cast<unsigned char>(c) > 0x20 && static_cast<unsigned char>(c) < 0x7f;
        }));
        // The head stays readable, and clear() finds the key by its prefix.
        CHECK(k.wire.starts_with(key.starts_with("aa:e:tags:") ? "aa:e:tags:" : "aa:"));
        CHECK(keys.owns(k.wire));
        CHECK(wires.insert(k.wire).second);  // no two keys share a wire key
        // The entry carries the whole key: another key under the same wire key is a miss.
        const std::string stored = memcached_wrap(k, key, "payload");
        CHECK(memcached_unwrap(k, key, stored) == std::optional<std::string_view>("payload"));
        CHECK_FALSE(memcached_unwrap(k, key + "x", stored).has_value());
        CHECK_FALSE(memcached_unwrap(k, key, "payload").has_value());
    }
    CHECK_FALSE(MemcachedKeyspace("bb:").owns(keys.key(hostile.front()).wire));

    // A prefix memcached would refuse (a space; or too long to leave room for the hash) is
    // replaced by a hash of it at the head of every key, all of them shortened.
    const std::string spaced = "my app:";
    const std::string long_prefix = std::string(190, 'p') + ":";
    for (const auto& prefix : {spaced, long_prefix}) {
        INFO(prefix);
        const MemcachedKeyspace odd(prefix);
        CHECK(odd.head() == "#" + sha256_hex(prefix).substr(0, 32) + ":");
        const auto k = odd.key(prefix + "e:users:0123456789abcdef:json:i42");
        CHECK(k.shortened);
        CHECK(k.wire.size() <= 250);
        CHECK(k.wire.rfind(odd.head() + "e:users:0123456789abcdef:json:i42:", 0) == 0);
        CHECK(odd.owns(k.wire));
        CHECK_FALSE(keys.owns(k.wire));
        CHECK(odd.key(prefix + std::string(400, 'x')).wire.size() <= 250);
        CHECK(odd.owns(odd.key(prefix + std::string(400, 'x')).wire));
    }
    CHECK(MemcachedKeyspace(spaced).head() != MemcachedKeyspace(long_prefix).head());
    // The longest prefix that still goes as it is: 185 bytes, room left for ':' + hash.
    const std::string longest(185, 'q');
    CHECK(MemcachedKeyspace(longest).head() == longest);
    CHECK(MemcachedKeyspace(longest).key(longest + std::string(100, 'r')).wire.size() == 250);
}

TEST_CASE("memcached: TTLs become memcached exptimes that mean what they say", "[memcached][ttl]") {
    using ormcache::detail::memcached_expiration;
    const std::time_t now = 1700000000;
    CHECK(memcached_expiration(ormcache::Ttl{-1}, now) == 0);  // never
    CHECK(memcached_expiration(ormcache::Ttl{1}, now) == 1);   // rounded up, at least 1 s
    CHECK(memcached_expiration(ormcache::Ttl{1000}, now) == 1);
    CHECK(memcached_expiration(ormcache::Ttl{1001}, now) == 2);
    CHECK(memcached_expiration(std::chrono::hours{24 * 30}, now) == 2592000);  // still relative
    CHECK(memcached_expiration(std::chrono::hours{24 * 30} + 1s, now) == now + 2592001);
    CHECK(memcached_expiration(std::chrono::hours{24 * 365}, now) == now + 31536000);

    // On the servers: entries stored for 40 days live 40 days (as an absolute time memcached
    // would otherwise read 3456000 as: 1970, expired at once).
    auto& servers = shared_servers();
    auto c = shared_config("ttl");
    c.expiration_time = std::chrono::hours{24 * 40};
    Fixture f(c);
    auto s = f.db->session();
    Repository<User> users{s};
    users.get(1);
    users.list(OrderBy{&User::id});
    users.get(2, {.expiration_time = std::chrono::seconds{-1}});
    users.get(3, {.expiration_time = std::chrono::hours{24 * 30}});
    f.log.clear();
    CHECK(users.get(1).name == "Ada");  // hits: not expired at once
    CHECK(users.list(OrderBy{&User::id}).size() == 5);
    CHECK(users.get(2).name == "Bob");
    CHECK(users.get(3).name == "Cy");
    CHECK(f.log.size() == 0);

    const long long wall = std::time(nullptr);
    // Within two minutes: memcached's clock ticks once a second and may lag on a loaded
    // machine; what is checked is days (40 days, 30 days, never), not seconds.
    constexpr long long slack = 120;
    int checked = 0;
    for (std::size_t i = 0; i < servers.size(); ++i) {
        for (const auto& [key, exp] : servers[i]->client()->keys()) {
            if (key.rfind(f.prefix, 0) != 0)
                continue;
            INFO(key << " exp " << exp << " now " << wall);
            if (key.find(":e:users:") != std::string::npos && key.ends_with(":i1")) {
                CHECK(std::llabs(exp - (wall + 40 * 86400)) < slack);
                ++checked;
            } else if (key.find(":q:users:") != std::string::npos) {
                CHECK(std::llabs(exp - (wall + 40 * 86400)) < slack);
                ++checked;
            } else if (key.ends_with(":i2")) {
                CHECK(exp == -1);  // never expires
                ++checked;
            } else if (key.ends_with(":i3")) {
                CHECK(std::llabs(exp - (wall + 30 * 86400)) < slack);
                ++checked;
            } else if (key == f.space() + "g:users" || key == f.space() + "v:users") {
                CHECK(exp == -1);  // counters never expire
            }
        }
    }
    CHECK(checked == 4);
}

// ---- hits, keys, SQL ---------------------------------------------------------------------

TEST_CASE("memcached: keys spread over the three servers by consistent hashing",
          "[memcached][distribution]") {
    auto& servers = shared_servers();
    Fixture f(shared_config("spread"), false);
    {
        auto s = f.db->session();
        Repository<User> users{s};
        for (int i = 0; i < 90; ++i)
            users.add({.name = "u" + std::to_string(i), .email = "e"});
        s.commit();
    }
    auto s = f.db->session();
    Repository<User> users{s};
    for (std::int64_t id = 1; id <= 90; ++id)
        users.get(id);

    const ormcache::MemcachedBackend probe = placement_of(f);
    std::vector<int> per_server(servers.size(), 0);
    for (const auto& [key, server] : keys_on(servers, f.space() + "e:users:")) {
        ++per_server[server];
        INFO(key);
        CHECK(probe.server_index(key) == server);  // where the backend says it is
    }
    INFO("entities per server: " << per_server[0] << " " << per_server[1] << " " << per_server[2]);
    CHECK(per_server[0] + per_server[1] + per_server[2] == 90);
    for (const int n : per_server)
        CHECK(n >= 10);

    // Adding a fourth server moves about a quarter of the keys, not most of them.
    auto four = f.config.arguments;
    four["url"].push_back("127.0.0.1:" + std::to_string(ormcache_test::free_port()));
    ormcache::MemcachedBackend wider(ormcache::detail::memcached_options(four), f.prefix);
    int moved = 0, total = 0;
    for (int i = 0; i < 2000; ++i) {
        const std::string key = f.space() + "e:users:x:json:i" + std::to_string(i);
        ++total;
        if (probe.server_index(key) != wider.server_index(key))
            ++moved;
    }
    INFO(moved << " of " << total << " keys moved");
    CHECK(moved > total / 10);
    CHECK(moved < total * 4 / 10);
}

TEST_CASE("memcached: hostile primary keys work and never collide", "[memcached][keys]") {
    auto& servers = shared_servers();
    // A long prefix too (the readable head of a shortened key keeps 185 bytes of it).
    Fixture f(shared_config(std::string(120, 'p')), false);
    const std::vector<std::string> slugs = {
        "hello world",
        "line\nbreak",
        "tab\there",
        std::string(300, 'x'),
        std::string(299, 'x') + "y",
        std::string(1024, 'z'),
        "gr\xc3\xbc\xc3\x9f \xe6\x97\xa5\xe6\x9c\xac",
        "plain",
    };
    {
        auto s = f.db->session();
        Repository<Tag> tags{s};
        for (std::size_t i = 0; i < slugs.size(); ++i)
            tags.add({.slug = slugs[i], .label = "label " + std::to_string(i)});
        s.commit();
    }
    auto s = f.db->session();
    Repository<Tag> tags{s};
    for (std::size_t i = 0; i < slugs.size(); ++i) {
        INFO("slug #" << i);
        CHECK(tags.get(slugs[i]).label == "label " + std::to_string(i));
    }
    f.log.clear();
    for (std::size_t i = 0; i < slugs.size(); ++i) {
        INFO("slug #" << i);
        CHECK(tags.get(slugs[i]).label == "label " + std::to_string(i));
    }
    CHECK(f.log.size() == 0);  // all hits
    CHECK(f.stats().errors == 0);
    CHECK(f.errors.count() == 0);

    // What reached memcached: short keys, one per slug, the readable head kept.
    std::size_t entity_keys = 0;
    for (const auto& [key, server] : keys_on(servers, f.prefix)) {
        INFO(key);
        CHECK(key.size() <= 250);
        if (key.find("e:tags:") != std::string::npos)
            ++entity_keys;
    }
    CHECK(entity_keys == slugs.size());

    // An update of one hostile key invalidates that entry only.
    {
        auto w = f.db->session();
        Repository<Tag> ws{w};
        auto t = ws.get(slugs[1], {.use_cache = false});
        t.label = "changed";
        ws.update(t);
        w.commit();
    }
    f.log.clear();
    CHECK(tags.get(slugs[1]).label == "changed");
    CHECK(tags.get(slugs[0]).label == "label 0");
    CHECK(tags.get(slugs[3]).label == "label 3");
    CHECK(f.log.count("SELECT") == 1);
}

TEST_CASE("memcached: get_or_create and clear", "[memcached][clear]") {
    auto& servers = shared_servers();
    Fixture f(shared_config("region"));
    int built = 0;
    auto build = [&] {
        ++built;
        return std::string("report body");
    };
    auto& manager = f.db->cache_manager();
    CHECK(manager.get_or_create<std::string>("report:42", build) == "report body");
    CHECK(manager.get_or_create<std::string>("report:42", build) == "report body");
    CHECK(built == 1);
    const auto raw = raw_get(servers, f.prefix + "r:report:42");
    REQUIRE(raw.has_value());
    CHECK(raw->find("report body") != std::string::npos);

    auto s = f.db->session();
    Repository<User> users{s};
    users.get(1);
    CHECK_FALSE(keys_on(servers, f.prefix).empty());
    manager.clear();
    CHECK(keys_on(servers, f.prefix).empty());
    f.log.clear();
    CHECK(users.get(1).name == "Ada");
    CHECK(f.log.count("SELECT") == 1);
    CHECK(manager.get_or_create<std::string>("report:42", build) == "report body");
    CHECK(built == 2);
    CHECK(f.errors.count() == 0);
}

namespace {

const std::vector<std::string> kClearSlugs = {"plain", "with space", std::string(300, 'l'),
                                              "line\nbreak"};

/// Adds the tags of kClearSlugs to `f`'s database.
void add_clear_tags(Fixture& f) {
    auto s = f.db->session();
    Repository<Tag> tags{s};
    for (const auto& slug : kClearSlugs)
        tags.add({.slug = slug, .label = "label of " + slug.substr(0, 10)});
    s.commit();
}

/// Reads everything add_clear_tags and the fixture's users put there: 5 users, a list, the
/// tags. Returns the number of reads (each a hit or one SELECT).
std::size_t read_everything(Fixture& f) {
    auto s = f.db->session();
    Repository<User> users{s};
    Repository<Tag> tags{s};
    std::size_t reads = 0;
    for (std::int64_t id = 1; id <= 5; ++id, ++reads)
        CHECK(users.get(id).id == id);
    CHECK(users.list(OrderBy{&User::id}).size() == 5);
    ++reads;
    for (const auto& slug : kClearSlugs) {
        CHECK(tags.get(slug).slug == slug);
        ++reads;
    }
    return reads;
}

}  // namespace

TEST_CASE("memcached: clear() drops its own prefix's keys only, shortened ones included",
          "[memcached][clear]") {
    auto& servers = shared_servers();
    // Three applications on the same servers: two plain prefixes, and one memcached would
    // refuse as it is (a space), whose keys all go under a hash of it.
    Fixture mine(shared_config("clear-mine"));
    Fixture other(shared_config("clear-other"));
    Fixture odd(memcached_config(urls_of(servers), unique_prefix("clear odd")));
    const ormcache::detail::MemcachedKeyspace odd_keys(odd.prefix);
    REQUIRE(odd_keys.head() != odd.prefix);
    // And a key written by something else entirely.
    servers[1]->client()->set("foreign-app:key", "theirs");

    for (Fixture* f : {&mine, &other, &odd}) {
        add_clear_tags(*f);
        read_everything(*f);
    }
    const auto mine_before = keys_on(servers, mine.prefix);
    const auto odd_before = keys_on(servers, odd_keys.head());
    const auto shortened = [](const std::map<std::string, std::size_t>& keys) {
        return std::count_if(keys.begin(), keys.end(), [](const auto& entry) {
            return ormcache::detail::memcached_looks_shortened(entry.first);
        });
    };
    CHECK(shortened(mine_before) == 3);  // the three slugs memcached refuses
    CHECK(mine_before.size() > 10);      // entries and counters
    CHECK(shortened(odd_before) == static_cast<std::ptrdiff_t>(odd_before.size()));
    CHECK(odd_before.size() == mine_before.size());

    mine.db->cache_manager().clear();
    CHECK(keys_on(servers, mine.prefix).empty());
    CHECK(mine.stats().errors == 0);
    CHECK(mine.errors.count() == 0);
    // The others' entries are all still there: hits, no SQL.
    for (Fixture* f : {&other, &odd}) {
        f->log.clear();
        read_everything(*f);
        CHECK(f->log.size() == 0);
    }
    CHECK(keys_on(servers, odd_keys.head()).size() == odd_before.size());
    CHECK(servers[1]->client()->get("foreign-app:key") == std::optional<std::string>("theirs"));
    // Ours are gone: every read runs its query once, then hits again.
    mine.log.clear();
    const auto reads = read_everything(mine);
    CHECK(mine.log.count("SELECT") == reads);
    mine.log.clear();
    read_everything(mine);
    CHECK(mine.log.size() == 0);

    // The prefix that goes hashed finds its keys by the hash.
    odd.db->cache_manager().clear();
    CHECK(keys_on(servers, odd_keys.head()).empty());
    CHECK(odd.errors.count() == 0);
    other.log.clear();
    read_everything(other);
    CHECK(other.log.size() == 0);
    CHECK_FALSE(keys_on(servers, mine.prefix).empty());
    CHECK(servers[1]->client()->get("foreign-app:key") == std::optional<std::string>("theirs"));
    servers[1]->client()->remove("foreign-app:key");
}

TEST_CASE("memcached: clear() with a server down clears the others and fails open",
          "[memcached][clear][failopen]") {
    const Servers servers = own_servers();
    Fixture f(memcached_config(
        urls_of(servers), unique_prefix("clear-down"),
        {{"connect_timeout_ms", 200}, {"socket_timeout_ms", 200}, {"retry_interval_ms", 100}}));
    add_clear_tags(f);
    read_everything(f);
    const auto before = keys_on(servers, f.prefix);
    std::set<std::size_t> holding;
    for (const auto& [key, server] : before)
        holding.insert(server);
    REQUIRE(holding.size() == 3);

    servers[2]->stop();
    const auto errors_before = f.stats().errors;
    f.db->cache_manager().clear();  // absorbed: never thrown
    CHECK(f.stats().errors == errors_before + 1);
    CHECK(f.errors.count() == 1);
    {
        const auto reported = f.errors.entries();
        REQUIRE(reported.size() == 1);
        CHECK(reported[0].what.find(servers[2]->address()) != std::string::npos);
    }
    CHECK(keys_on(servers, f.prefix).empty());  // the two live servers hold none of ours
}

TEST_CASE("memcached: corrupt entries and counters are misses, removed and counted",
          "[memcached][corrupt]") {
    auto& servers = shared_servers();
    Fixture f(shared_config("corrupt"));
    auto s = f.db->session();
    Repository<User> users{s};
    users.get(5);
    std::string entity;
    std::size_t where = 0;
    for (const auto& [key, server] : keys_on(servers, f.space() + "e:users:")) {
        entity = key;
        where = server;
    }
    REQUIRE_FALSE(entity.empty());
    servers[where]->client()->set(entity, "garbage");
    const auto before = f.stats();
    f.log.clear();
    CHECK(users.get(5).name == "Eve");
    CHECK(f.log.count("SELECT") == 1);
    CHECK(f.stats().errors - before.errors == 1);
    f.log.clear();
    CHECK(users.get(5).name == "Eve");  // refilled, a hit again
    CHECK(f.log.size() == 0);

    // A counter overwritten with garbage starts afresh from the clock: a miss, no error.
    const std::string generation = f.space() + "g:users";
    const auto old = raw_get(servers, generation);
    REQUIRE(old.has_value());
    for (const auto& server : servers)
        if (server->client()->get(generation))
            server->client()->set(generation, "not a number");
    f.log.clear();
    CHECK(users.get(5).name == "Eve");
    CHECK(f.log.count("SELECT") == 1);
    const auto now = raw_get(servers, generation);
    REQUIRE(now.has_value());
    CHECK(std::stoll(*now) > std::stoll(*old));
}

// ---- invalidation: one round trip per server ----------------------------------------------

TEST_CASE("memcached: a commit that changes K ids costs one round trip per server, whatever K",
          "[memcached][invalidate]") {
    auto& servers = shared_servers();
    // The backend talks to the servers through proxies that count its round trips.
    std::vector<std::unique_ptr<RoundTripProxy>> proxies;
    nlohmann::json url = nlohmann::json::array();
    for (const auto& server : servers) {
        proxies.push_back(std::make_unique<RoundTripProxy>(server->port()));
        url.push_back(proxies.back()->address());
    }
    Fixture f(memcached_config(url, unique_prefix("batch")), false);
    constexpr std::int64_t kUsers = 100;
    {
        auto s = f.db->session();
        Repository<User> users{s};
        for (std::int64_t i = 1; i <= kUsers; ++i)
            users.add({.name = "user " + std::to_string(i), .email = "e"});
        s.commit();
    }
    auto s = f.db->session();
    Repository<User> users{s};
    const std::string version = f.space() + "v:users";
    const auto stat_sum = [&](const std::string& name) {
        long long sum = 0;
        for (const auto& server : servers)
            sum += server->client()->stat(name);
        return sum;
    };

    // Caches ids 1..count and the list, renames them in one commit (`before_commit` runs
    // just before it); returns the round trips each server saw during the commit.
    // `involved` gets the servers that hold a changed entry or the version counter.
    const auto commit_renames = [&](
                                    std::int64_t count, const std::string& tag,
                                    std::set<std::size_t>& involved,
                                    const std::function<void()>& before_commit = [] {}) {
        for (std::int64_t id = 1; id <= count; ++id)
            users.get(id);
        users.list(OrderBy{&User::id});
        involved.clear();
        for (const auto& [key, server] : keys_on(servers, f.space() + "e:users:")) {
            const auto id = std::stoll(key.substr(key.rfind(":i") + 2));
            if (id <= count)
                involved.insert(server);
        }
        for (const auto& [key, server] : keys_on(servers, version))
            involved.insert(server);
        auto w = f.db->session();
        Repository<User> writer{w};
        std::vector<User> changed;
        for (std::int64_t id = 1; id <= count; ++id) {
            auto u = writer.get(id, {.use_cache = false});
            u.name = tag + " " + std::to_string(id);
            changed.push_back(u);
        }
        writer.update_many(changed);
        before_commit();
        std::vector<std::uint64_t> before;
        for (const auto& proxy : proxies)
            before.push_back(proxy->round_trips());
        w.commit();
        std::vector<std::uint64_t> trips;
        for (std::size_t i = 0; i < proxies.size(); ++i)
            trips.push_back(proxies[i]->round_trips() - before[i]);
        return trips;
    };
    const auto expect_one_each = [&](const std::vector<std::uint64_t>& trips,
                                     const std::set<std::size_t>& involved) {
        for (std::size_t i = 0; i < trips.size(); ++i) {
            INFO("server " << i);
            CHECK(trips[i] == (involved.count(i) != 0 ? 1u : 0u));
        }
    };

    SECTION("100 ids: one pipelined request per server, every delete and incr done") {
        const auto deletes_before = stat_sum("delete_hits");
        const auto incrs_before = stat_sum("incr_hits");
        std::set<std::size_t> involved;
        const auto trips = commit_renames(kUsers, "v2", involved);
        CHECK(involved.size() == 3);  // 100 keys spread over all three
        expect_one_each(trips, involved);
        CHECK(stat_sum("delete_hits") - deletes_before == kUsers);  // every entry deleted
        CHECK(stat_sum("incr_hits") - incrs_before == 1);           // the list version
        CHECK(f.stats().errors == 0);
        // Delivered: every read is a miss that sees the commit.
        f.log.clear();
        for (std::int64_t id = 1; id <= kUsers; ++id)
            CHECK(users.get(id).name == "v2 " + std::to_string(id));
        CHECK(users.list(OrderBy{&User::id}).back().name == "v2 100");
        CHECK(f.log.count("SELECT") == kUsers + 1);

        // One id: the same one round trip per server involved.
        const auto single = commit_renames(1, "v3", involved);
        CHECK(involved.size() <= 2);
        expect_one_each(single, involved);
        CHECK(users.get(1).name == "v3 1");
    }

    SECTION("a missing version counter is re-created from the clock: one round trip more") {
        std::set<std::size_t> involved;
        commit_renames(kUsers, "v2", involved);  // creates the counter
        const std::size_t holder = keys_on(servers, version).begin()->second;
        long long clock_before = 0;
        const auto trips = commit_renames(kUsers, "v3", involved, [&] {
            servers[holder]->client()->remove(version);  // as if evicted
            clock_before = std::chrono::duration_cast<std::chrono::microseconds>(
                               std::chrono::system_clock::now().time_since_epoch())
                               .count();
        });
        for (std::size_t i = 0; i < trips.size(); ++i) {
            INFO("server " << i);
            CHECK(trips[i] == (i == holder ? 2u : (involved.count(i) != 0 ? 1u : 0u)));
        }
        const auto created = servers[holder]->client()->get(version);
        REQUIRE(created.has_value());
        CHECK(std::stoll(*created) > clock_before);
        f.log.clear();
        CHECK(users.list(OrderBy{&User::id}).back().name == "v3 100");
        CHECK(f.log.count("SELECT") == 1);
        CHECK(f.stats().errors == 0);
    }
}

// ---- Cache rule 9: one query across processes --------------------------------------------

namespace {

/// Forks `children` processes that each open the database behind `config`, wait for the
/// others, then read user 1 once; each SELECT takes `query_time`. Returns the SELECTs run in
/// all children (-1 if one failed or read a wrong name).
int selects_across_processes(const std::string& path, const CacheConfig& config, int children,
                             std::chrono::milliseconds query_time) {
    int ready[2], go[2], report[2];
    REQUIRE(::pipe(ready) == 0);
    REQUIRE(::pipe(go) == 0);
    REQUIRE(::pipe(report) == 0);
    std::vector<pid_t> pids;
    for (int i = 0; i < children; ++i) {
        const pid_t pid = ::fork();
        REQUIRE(pid >= 0);
        if (pid == 0) {
            int selects = 0;
            int code = 0;
            try {
                std::atomic<int> count{0};
                Database db{DatabaseConfig{.connection_string = path,
                                           .cache_config = config,
                                           .on_query = [&](std::string_view sql) {
                                               if (sql.starts_with("SELECT")) {
                                                   ++count;
                                                   std::this_thread::sleep_for(query_time);
                                               }
                                           }}};
                auto s = db.session();
                Repository<User> users{s};
                char byte = 'r';
                if (::write(ready[1], &byte, 1) != 1 || ::read(go[0], &byte, 1) != 1)
                    code = 2;
                if (users.get(1).name != "Ada")
                    code = 3;
                selects = count.load();
            } catch (...) {
                code = 4;
            }
            const char out = static_cast<char>(code == 0 ? selects : 100 + code);
            if (::write(report[1], &out, 1) != 1)
                ::_exit(5);
            ::_exit(0);
        }
        pids.push_back(pid);
    }
    for (int i = 0; i < children; ++i) {
        char byte = 0;
        REQUIRE(::read(ready[0], &byte, 1) == 1);
    }
    const std::string all(static_cast<std::size_t>(children), 'g');
    REQUIRE(::write(go[1], all.data(), all.size()) == static_cast<ssize_t>(all.size()));
    int total = 0;
    bool failed = false;
    for (int i = 0; i < children; ++i) {
        char byte = 0;
        REQUIRE(::read(report[0], &byte, 1) == 1);
        if (byte >= 100)
            failed = true;
        else
            total += byte;
    }
    for (const pid_t pid : pids) {
        int status = 0;
        ::waitpid(pid, &status, 0);
    }
    for (int fd : {ready[0], ready[1], go[0], go[1], report[0], report[1]})
        ::close(fd);
    return failed ? -1 : total;
}

}  // namespace

TEST_CASE("memcached: distributed_lock: processes missing one key run one query in total",
          "[memcached][lock][process]") {
    auto& servers = shared_servers();
    TempDir dir;
    const std::string path = dir.file("lock.db");
    {
        Database db{DatabaseConfig{.connection_string = path}};
        db.create_all<User>();
        auto s = db.session();
        Repository<User> users{s};
        users.add({.name = "Ada", .email = "ada@example.org"});
        s.commit();
    }
    constexpr int children = 6;
    SECTION("with the lock: one SELECT") {
        auto c = memcached_config(urls_of(servers), unique_prefix("lock"),
                                  {{"distributed_lock", true}, {"lock_timeout_ms", 5000}});
        CHECK(selects_across_processes(path, c, children, 300ms) == 1);
    }
    SECTION("without it: every process runs its own") {
        auto c = memcached_config(urls_of(servers), unique_prefix("nolock"));
        CHECK(selects_across_processes(path, c, children, 300ms) == children);
    }
}

TEST_CASE("memcached: distributed_lock: a dead holder's lock is waited for at most lock_timeout",
          "[memcached][lock]") {
    auto& servers = shared_servers();
    Fixture f(shared_config("deadlock", {{"distributed_lock", true}, {"lock_timeout_ms", 700}}));
    // A lease nobody will ever fill, as if its holder died: the key's lease, taken directly.
    ormcache::MemcachedBackend backend(ormcache::detail::memcached_options(f.config.arguments),
                                       f.prefix);
    auto s = f.db->session();
    Repository<User> users{s};
    users.get(2);  // learn the entity key's name from the servers
    std::string key;
    for (const auto& [k, server] : keys_on(servers, f.space() + "e:users:"))
        key = k;
    REQUIRE_FALSE(key.empty());
    backend.invalidate(ormcache::InvalidationBatch{{key}, {}, {}});
    const auto held =
        backend.read(ormcache::ReadRequest{key, {f.space() + "g:users"}, ormcache::Ttl{700}, {}});
    REQUIRE_FALSE(held.lease.empty());

    f.log.clear();
    const auto started = Clock::now();
    CHECK(users.get(2).name == "Bob");  // waited for the lock, then read the database
    const auto waited = Clock::now() - started;
    CHECK(waited >= 600ms);
    CHECK(waited < 700ms + 500ms);
    CHECK(f.log.count("SELECT") == 1);
    CHECK(f.errors.count() == 0);
    // Once the lease has expired (memcached counts whole seconds), the next miss fills.
    CHECK(eventually(
        [&] {
            users.get(2);
            f.log.clear();
            users.get(2);
            return f.log.size() == 0;
        },
        5s));
}

// ---- outages -----------------------------------------------------------------------------

TEST_CASE("memcached: a dead server costs only its share of keys; on_error hears of it once",
          "[memcached][failopen]") {
    const Servers servers = own_servers();
    Fixture f(memcached_config(
        urls_of(servers), unique_prefix("dead"),
        {{"connect_timeout_ms", 200}, {"socket_timeout_ms", 200}, {"retry_interval_ms", 100}}));
    {
        auto s = f.db->session();
        Repository<User> users{s};
        for (int i = 0; i < 55; ++i)
            users.add({.name = "x" + std::to_string(i), .email = "e"});
        s.commit();
    }
    const ormcache::MemcachedBackend probe = placement_of(f);
    // Stop a server that holds neither counter of the users table, so that only the entity
    // keys it holds are affected.
    const std::size_t v = probe.server_index(f.space() + "v:users");
    const std::size_t g = probe.server_index(f.space() + "g:users");
    std::size_t dead = 0;
    while (dead == v || dead == g)
        ++dead;
    if (v == g && dead == 3)
        dead = (v + 1) % 3;
    REQUIRE(dead < 3);
    REQUIRE(dead != g);

    auto s = f.db->session();
    Repository<User> users{s};
    for (std::int64_t id = 1; id <= 60; ++id)
        users.get(id);
    servers[dead]->stop();
    f.log.clear();
    const auto before = f.stats();
    const int reported_before = f.errors.count();
    for (int round = 0; round < 3; ++round) {
        for (std::int64_t id = 1; id <= 60; ++id) {
            CHECK(users.get(id).id == id);  // never a failed call
        }
    }
    // What the dead server does not hold is still served from the cache (one entity key
    // per id on the live servers).
    const int hits_expected = static_cast<int>(keys_on(servers, f.space() + "e:users:").size());
    const auto after = f.stats();
    CHECK(after.hits - before.hits == static_cast<std::uint64_t>(3 * hits_expected));
    CHECK(f.log.count("SELECT") == static_cast<std::size_t>(3 * (60 - hits_expected)));
    CHECK(hits_expected >= 20);  // two servers' worth
    CHECK(hits_expected < 60);
    CHECK(after.errors > before.errors);
    CHECK(f.errors.count() - reported_before == 1);  // one outage, reported once

    // Restarted: its keys are filled and served again.
    servers[dead]->restart();
    CHECK(eventually([&] {
        for (std::int64_t id = 1; id <= 60; ++id)
            users.get(id);
        f.log.clear();
        for (std::int64_t id = 1; id <= 60; ++id)
            users.get(id);
        return f.log.size() == 0;
    }));
}

TEST_CASE("memcached: invalidations a cut-off server missed are replayed before it is read",
          "[memcached][failopen]") {
    // This process reaches each server through a proxy that can cut it off; the test looks at
    // the servers directly.
    const Servers servers = own_servers();
    std::vector<std::unique_ptr<RoundTripProxy>> proxies;
    nlohmann::json url = nlohmann::json::array();
    for (const auto& server : servers) {
        proxies.push_back(std::make_unique<RoundTripProxy>(server->port()));
        url.push_back(proxies.back()->address());
    }
    Fixture f(memcached_config(
        url, unique_prefix("replay"),
        {{"connect_timeout_ms", 100}, {"socket_timeout_ms", 100}, {"retry_interval_ms", 1500}}));
    auto s = f.db->session();
    Repository<User> users{s};
    const ormcache::MemcachedBackend probe = placement_of(f);
    // A user whose entry lives on a server that holds neither counter.
    const std::size_t v = probe.server_index(f.space() + "v:users");
    const std::size_t g = probe.server_index(f.space() + "g:users");
    std::int64_t id = 0;
    std::string key;
    std::size_t where = 0;
    for (std::int64_t candidate = 1; candidate <= 5 && id == 0; ++candidate) {
        users.get(candidate);
        for (const auto& [k, server] : keys_on(servers, f.space() + "e:users:")) {
            if (k.ends_with(":i" + std::to_string(candidate)) && server != v && server != g) {
                id = candidate;
                key = k;
                where = server;
            }
        }
    }
    if (id == 0) {
        // All five landed next to a counter: add users until one does not.
        for (int i = 0; i < 50 && id == 0; ++i) {
            auto added = users.add({.name = "extra", .email = "e"});
            s.commit();
            users.get(added.id);
            for (const auto& [k, server] : keys_on(servers, f.space() + "e:users:")) {
                if (k.ends_with(":i" + std::to_string(added.id)) && server != v && server != g) {
                    id = added.id;
                    key = k;
                    where = server;
                }
            }
        }
    }
    REQUIRE(id != 0);
    const std::string old_name = users.get(id).name;

    // Cut off, a read fails and opens the server's circuit; the commit right after cannot
    // send its delete (its probe through the open circuit fails too).
    proxies[where]->set_cut(true);
    CHECK(users.get(id).name == old_name);
    const auto errors_before = f.stats().errors;
    f.rename(id, "renamed while cut off");
    CHECK(f.stats().errors > errors_before);
    proxies[where]->set_cut(false);
    // The server still holds the old row...
    const auto raw = servers[where]->client()->get(key);
    REQUIRE(raw.has_value());
    CHECK(raw->find(old_name) != std::string::npos);
    // ...but it is never served: the replay runs before anything else is read there.
    int stale = 0;
    const bool refilled = eventually([&] {
        if (users.get(id).name != "renamed while cut off")
            ++stale;
        const auto now = servers[where]->client()->get(key);
        return now && now->find("renamed while cut off") != std::string::npos;
    });
    CHECK(refilled);
    CHECK(stale == 0);
    f.log.clear();
    CHECK(users.get(id).name == "renamed while cut off");
    CHECK(f.log.size() == 0);
}

TEST_CASE("memcached: an invalidation goes through an open circuit breaker, and closes it",
          "[memcached][outbox][failopen]") {
    MemcachedServer server;
    auto config =
        memcached_config(nlohmann::json::array({server.address()}), unique_prefix("outbox-circuit"),
                         ormcache_test::long_breaker_arguments());
    config.invalidation_bound = 200ms;
    Fixture f(config);
    auto unreachable = memcached_config(
        nlohmann::json::array({"127.0.0.1:" + std::to_string(ormcache_test::free_port())}),
        config.key_prefix, {{"connect_timeout_ms", 100}});
    unreachable.invalidation_bound = config.invalidation_bound;
    auto client = server.client();
    ormcache_test::check_invalidation_goes_through_open_circuit(
        f, server, unreachable,
        [&] {
            for (const auto& key : client->keys_with_prefix(f.space() + "e:users:")) {
                if (key.ends_with(":i1"))
                    return key;
            }
            return std::string();
        },
        [&](const std::string& key) { return client->get(key).has_value(); });
}

TEST_CASE("memcached: fault run: 8 threads while one server is stopped and restarted",
          "[memcached][fault]") {
    const Servers servers = own_servers();
    TempDir dir;
    const std::string prefix = unique_prefix("fault");
    ErrorLog errors;
    auto config = memcached_config(
        urls_of(servers), prefix,
        {{"socket_timeout_ms", 150}, {"connect_timeout_ms", 150}, {"retry_interval_ms", 20}});
    errors.attach(config);
    Database db{DatabaseConfig{.connection_string = dir.file("fault.db"),
                               .cache_config = config,
                               .busy_timeout = kBusyTimeout}};
    db.create_all<User>();
    const std::string space = prefix + db.cache_identity() + ":";
    constexpr int threads = 8;
    constexpr std::int64_t ids = 48;
    ormcache_test::FaultRun::seed(db, ids);

    ormcache_test::FaultRun run(db, threads, ids, [&](ormcache_test::FaultRun::Worker& w) {
        switch (w.rng() % 8) {
            case 0:
            case 1:
            case 2:
                w.check_own(w.own(), "get");
                break;
            case 3:
                w.users.get(static_cast<std::int64_t>(w.rng() % ids) + 1);
                break;
            case 4: {
                const auto all = w.users.list(OrderBy{&User::id});
                if (static_cast<std::int64_t>(all.size()) != ids)
                    w.stale("list of " + std::to_string(all.size()));
                break;
            }
            case 5:
            case 6:
                w.rename_and_check(w.own());
                break;
            case 7: {
                w.session.begin();
                w.check_own(w.own(), "get in transaction");
                if (w.users.count() != ids)
                    w.stale();
                w.session.commit();
                break;
            }
        }
    });

    run.phase("up", 800ms);
    servers[1]->stop();
    run.phase("one server stopped", 1000ms);
    servers[1]->restart();
    run.phase("restarted", 1200ms);
    run.stop();

    for (const auto& [name, n] : run.phases()) {
        INFO("phase " << name);
        CHECK(n > 10);
    }
    INFO(run.notes());
    CHECK(run.failures() == 0);
    CHECK(run.stale() == 0);
    const auto stats = db.cache_manager().stats();
    CHECK(stats.errors > 0);
    CHECK(stats.hits > 0);
    WARN("fault run: " << run.ops() << " calls, " << stats.errors << " cache errors absorbed, "
                       << errors.count() << " reported, " << stats.hits << " hits");

    // Settled: a round of reads that adds no error.
    auto s = db.session();
    Repository<User> users{s};
    const bool settled = eventually([&] {
        const auto before = db.cache_manager().stats().errors;
        for (std::int64_t id = 1; id <= ids; ++id)
            users.get(id);
        return db.cache_manager().stats().errors == before;
    });
    REQUIRE(settled);

    // What the servers hold, compared with the database: every entity entry that carries the
    // current generation holds the committed row.
    const auto generation = raw_get(servers, space + "g:users");
    REQUIRE(generation.has_value());
    int compared = 0, differing = 0;
    for (const auto& [key, server] : keys_on(servers, space + "e:users:")) {
        const auto raw = servers[server]->client()->get(key);
        if (!raw || is_lease(*raw))
            continue;
        if (raw->rfind("oc1 " + *generation + " ", 0) != 0)
            continue;  // unreachable anyway
        const auto id = std::stoll(key.substr(key.rfind(":i") + 2));
        const auto payload = nlohmann::json::parse(raw->substr(raw->find('\n') + 1));
        const auto fresh = users.get_or_none(id, {.use_cache = false});
        ++compared;
        if (payload.is_null() != !fresh.has_value() ||
            (fresh && payload != ormcache::to_json(*fresh))) {
            ++differing;
            UNSCOPED_INFO("cached " << key << " = " << payload.dump());
        }
    }
    CHECK(compared > 0);
    CHECK(differing == 0);
    for (std::int64_t id = 1; id <= ids; ++id) {
        INFO("id " << id);
        CHECK(ormcache::to_json(users.get(id)) ==
              ormcache::to_json(users.get(id, {.use_cache = false})));
    }
}

// ---- messages that say where (issue 10, item 7) --------------------------------------------

TEST_CASE("memcached: every failure names the server, host:port, that failed",
          "[memcached][failopen][messages]") {
    const std::string dead = "127.0.0.1:" + std::to_string(ormcache_test::free_port());

    SECTION("on_error, for a read from a closed port") {
        ormcache_test::UsersFixture<> f(
            memcached_config({dead}, unique_prefix("where"), {{"connect_timeout_ms", 200}}));
        auto s = f.db->session();
        Repository<User> users{s};
        CHECK(users.get(1).name == "Ada");  // served from the database
        const auto reported = f.errors.entries();
        REQUIRE_FALSE(reported.empty());
        INFO(reported.front().what);
        CHECK_THAT(reported.front().what, Catch::Contains(dead));
    }
    SECTION("read and invalidate of a key on the dead one of two servers") {
        const std::string live = shared_servers()[0]->address();
        ormcache::MemcachedBackend backend(ormcache::MemcachedOptions{.servers = {live, dead},
                                                                      .connect_timeout = 200ms,
                                                                      .socket_timeout = 200ms,
                                                                      .retry_interval = 0ms},
                                           unique_prefix("where"));
        std::string key;
        for (int i = 0; key.empty() || backend.server_index(key) != 1; ++i)
            key = "e:users:i" + std::to_string(i);
        const auto error_of = [](auto&& op) -> std::string {
            try {
                op();
            } catch (const ormcache::CacheError& e) {
                return e.what();
            }
            return "(no error)";
        };
        for (const auto& what : {error_of([&] {
                                     backend.read(ormcache::ReadRequest{key, {}, std::nullopt, {}});
                                 }),
                                 error_of([&] {
                                     backend.invalidate(ormcache::InvalidationBatch{{key}, {}, {}});
                                 })}) {
            INFO(what);
            CHECK_THAT(what, Catch::Contains(dead) && !Catch::Contains(live));
        }
    }
}

// ---- typed options (docs/reference.md, section 3.4) -----------------------------------------

TEST_CASE("memcached: MemcachedOptions is CacheConfig::arguments", "[memcached][config][options]") {
    const auto& servers = shared_servers();
    const auto urls = urls_of(servers);
    const std::string prefix = unique_prefix("typed");
    const CacheConfig typed{
        .backend = "memcached",
        .arguments = ormcache::MemcachedOptions{.servers = urls.get<std::vector<std::string>>(),
                                                .pool_size = 2},
        .key_prefix = prefix};
    CHECK(typed.arguments.at("url") == urls);
    CHECK(typed.arguments.at("pool_size") == 2);
    // The same backend as the JSON arguments: what one manager stores, the other reads.
    ormcache::CacheManager writer{typed};
    ormcache::CacheManager reader{memcached_config(urls, prefix)};
    CHECK(writer.get_or_create<int>("k", [] { return 42; }) == 42);
    CHECK(reader.get_or_create<int>("k", [] { return -1; }) == 42);
    CHECK(reader.stats().hits == 1);
}

TEST_CASE("memcached: MemcachedOptions round trip through JSON", "[memcached][config][options]") {
    using ormcache::MemcachedOptions;
    for (const MemcachedOptions& o :
         {MemcachedOptions{},
          MemcachedOptions{.servers = {"10.0.0.1:11211", "cache-b:11212", "::1:11311"},
          .connect_timeout = 25ms,
          .socket_timeout = 30ms,
          .pool_size = 3,
          .distributed_lock = true,
          .lock_timeout = 900ms,
          .retry_interval = 0ms}}) {
        const nlohmann::json j = o;
        CAPTURE(j.dump());
        CHECK(j.get<MemcachedOptions>() == o);
        CHECK(ormcache::detail::memcached_options(j) == o);
    }
}

TEST_CASE("memcached: argument errors name the field, the backend and the valid names",
          "[memcached][config][options]") {
    CHECK(config_error_for({{"servers", {"127.0.0.1:11211"}}}) ==
          "CacheConfig::arguments.servers: unknown argument for backend memcached; expected one "
          "of url, connect_timeout_ms, socket_timeout_ms, pool_size, distributed_lock, "
          "lock_timeout_ms, retry_interval_ms");
    CHECK(config_error_for({{"pool_size", "abc"}}) ==
          "CacheConfig::arguments.pool_size must be an integer in 1..4096, got \"abc\"");
    CHECK(config_error_for({{"distributed_lock", "yes"}}) ==
          "CacheConfig::arguments.distributed_lock must be a boolean, got \"yes\"");
    // A typed config is checked the same way.
    CHECK_THAT(config_error_for(ormcache::MemcachedOptions{.servers = {}}),
               Catch::Contains("CacheConfig::arguments.url"));
    CHECK_THAT(config_error_for(ormcache::MemcachedOptions{.lock_timeout = 0ms}),
               Catch::Contains("CacheConfig::arguments.lock_timeout_ms"));
}
