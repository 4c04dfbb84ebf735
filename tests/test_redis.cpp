// The Redis backend against real redis-server processes (tests/support/redis_server.hpp). The
// backend contract (tests/contract/backend_contract.hpp, RedisContract below) covers hits and
// misses with the SQL counted, invalidation across Database instances and processes, corrupt
// entries, the fill races of cache rule 6 (docs/reference.md), clear() by prefix and
// distributed_lock. Here: configuration, fail-open behaviour, round trips counted on the server
// (INFO commandstats), the envelope and serializers, AUTH/ACL/db/unix socket, clear() with glob
// characters, and a fault run with the server stopped, restarted and paused under load.
//
// Most tests share one server per process and keep apart by key prefix; tests that stop,
// pause or reconfigure a server start their own. Without redis-server every test fails.

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <latch>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <ormcache/backends/redis.hpp>

#include "backend_contract.hpp"
#include "backend_test_support.hpp"
#include "envelope.hpp"
#include "error_log.hpp"
#include "fault_run.hpp"
#include "gated_backend.hpp"
#include "models.hpp"
#include "redis_server.hpp"
#include "round_trip_proxy.hpp"
#include "test_support.hpp"
#include "users_fixture.hpp"

using namespace std::chrono_literals;

namespace {

using app::User;
using ormcache::CacheConfig;
using ormcache::Database;
using ormcache::DatabaseConfig;
using ormcache::LimitOffset;
using ormcache::Options;
using ormcache::OrderBy;
using ormcache::Repository;
using ormcache_test::CommandDelta;
using ormcache_test::ErrorLog;
using ormcache_test::eventually;
using ormcache_test::fill_gate;
using ormcache_test::kBusyTimeout;
using ormcache_test::names_of;
using ormcache_test::parse_envelope;
using ormcache_test::RedisClient;
using ormcache_test::RedisMonitor;
using ormcache_test::RedisServer;
using ormcache_test::RedisServerOptions;
using ormcache_test::rename_user;
using ormcache_test::RoundTripProxy;
using ormcache_test::SlowDatabase;
using ormcache_test::SqlLog;
using ormcache_test::TempDir;
using ormcache_test::unique_prefix;
using ormcache_test::with_fill_held;
using Clock = std::chrono::steady_clock;

/// The server most tests share (started on first use, stopped at exit).
RedisServer& shared_server() {
    static std::unique_ptr<RedisServer> server;
    if (!server)
        server = std::make_unique<RedisServer>();
    return *server;
}

CacheConfig redis_config(int port, std::string prefix,
                         nlohmann::json extra = nlohmann::json::object()) {
    CacheConfig c;
    c.backend = "redis";
    c.arguments = {{"host", "127.0.0.1"}, {"port", port}};
    for (const auto& [k, v] : extra.items())
        c.arguments[k] = v;
    c.key_prefix = std::move(prefix);
    return c;
}

/// A SQLite file with the users table and five committed users, behind a Redis cache.
///   1 Ada, 2 Bob, 3 Cy, 4 Dee, 5 Eve
using Fixture = ormcache_test::UsersFixture<>;

std::string config_error_for(const nlohmann::json& arguments,
                             const std::string& backend = "redis") {
    return ormcache_test::config_error_for(backend, arguments);
}

/// Whether a raw value is a fill lease rather than an entry (redis.hpp stores leases as the
/// value itself).
bool is_lease(const std::string& value) {
    return value.rfind(std::string_view("\0lease:", 7), 0) == 0;
}

/// The keys under `prefix` that start with `part` and end with `suffix`.
std::vector<std::string> keys_like(RedisClient& client, const std::string& prefix,
                                   const std::string& part, const std::string& suffix = "") {
    std::vector<std::string> found;
    for (const auto& k : client.keys(prefix + part)) {
        if (k.size() >= suffix.size() &&
            k.compare(k.size() - suffix.size(), suffix.size(), suffix) == 0) {
            found.push_back(k);
        }
    }
    return found;
}

/// The one key under `prefix` that starts with `part` and ends with `suffix`.
std::string only_key(RedisClient& client, const std::string& prefix, const std::string& part,
                     const std::string& suffix = "") {
    const auto found = keys_like(client, prefix, part, suffix);
    INFO("keys under " << prefix << part << " ending in '" << suffix << "': " << found.size());
    REQUIRE(found.size() == 1);
    return found.front();
}

/// Polls until reading user 1 twice through `users` is a cache hit again (after an outage).
bool serves_hits_again(Fixture& f, Repository<User>& users) {
    return eventually([&] {
        const auto before = f.stats().hits;
        users.get(1);
        users.get(1);
        return f.stats().hits > before;
    });
}

/// The Redis backend with its fills held at fill_gate() when armed, as "redis-gated".
void register_gated_backend() {
    ormcache_test::register_gated_backend<ormcache::RedisBackend, ormcache::detail::redis_options>(
        "redis-gated");
}

/// The contract of tests/contract/backend_contract.hpp, on the shared server.
struct RedisContract {
    static constexpr std::string_view name = "redis";
    static constexpr bool shared = true;
    static constexpr bool shared_across_processes = true;
    static constexpr bool distributed_lock = true;
    static constexpr bool gated = true;
    static constexpr bool inspectable = true;

    static CacheConfig config(const TempDir&, std::string_view label, const nlohmann::json& extra) {
        return redis_config(shared_server().port(), unique_prefix(label), extra);
    }
    static void make_gated(CacheConfig& c) {
        register_gated_backend();
        c.backend = "redis-gated";
    }
    static std::vector<std::string> keys(const CacheConfig&, const std::string& start) {
        return shared_server().client()->keys(start);
    }
};

}  // namespace

ORMCACHE_BACKEND_CONTRACT(RedisContract, "[redis]");

// ---- configuration -----------------------------------------------------------------------

TEST_CASE("redis: a bad configuration is a ConfigError naming the field", "[redis][config]") {
    CHECK_THAT(config_error_for({{"port", "6379"}}), Catch::Contains("port"));
    CHECK_THAT(config_error_for({{"port", 0}}), Catch::Contains("port"));
    CHECK_THAT(config_error_for({{"port", 70000}}), Catch::Contains("port"));
    CHECK_THAT(config_error_for({{"port", 6379.5}}), Catch::Contains("port"));
    CHECK_THAT(config_error_for({{"db", -1}}), Catch::Contains("db"));
    CHECK_THAT(config_error_for({{"host", 127}}), Catch::Contains("host"));
    CHECK_THAT(config_error_for({{"pool_size", 0}}), Catch::Contains("pool_size"));
    CHECK_THAT(config_error_for({{"distributed_lock", "yes"}}),
               Catch::Contains("distributed_lock"));
    CHECK_THAT(config_error_for({{"socket_timeout_ms", "1s"}}),
               Catch::Contains("socket_timeout_ms"));
    CHECK_THAT(config_error_for({{"prot", 6379}}), Catch::Contains("prot"));
    CHECK_THAT(config_error_for({{"url", 42}}), Catch::Contains("url"));
    CHECK_THAT(config_error_for({{"url", "http://127.0.0.1:6379"}}), Catch::Contains("url"));
    CHECK_THAT(config_error_for({{"url", "redis://127.0.0.1:port/0"}}), Catch::Contains("port"));
    CHECK_THAT(config_error_for({{"url", "redis://127.0.0.1:0"}}), Catch::Contains("port"));
    CHECK_THAT(config_error_for({{"url", "redis://127.0.0.1:6379/x"}}),
               Catch::Contains("database"));
    CHECK_THAT(config_error_for({{"host", ""}}), Catch::Contains("host"));
    CHECK_THAT(config_error_for(nlohmann::json::array()), Catch::Contains("arguments"));
    // The same validation under the seed's spelling.
    CHECK_THAT(config_error_for({{"port", "6379"}}, "dogpile.cache.redis"),
               Catch::Contains("port"));
    // Well-formed arguments are not an error, even with no server behind them.
    CHECK(config_error_for({{"port", ormcache_test::free_port()},
                            {"distributed_lock", true},
                            {"lock_timeout_ms", 100},
                            {"pool_size", 2}}) == "");
}

TEST_CASE("redis: url gives host, port, db, user and password; explicit arguments win",
          "[redis][config]") {
    using ormcache::detail::redis_options;
    {
        const auto o = redis_options({{"url", "redis://alice:s3cret@cache.example.org:6380/4"}});
        CHECK(o.host == "cache.example.org");
        CHECK(o.port == 6380);
        CHECK(o.db == 4);
        CHECK(o.username == "alice");
        CHECK(o.password == "s3cret");
    }
    {
        const auto o = redis_options({{"url", "redis://:pw@10.0.0.7"}});
        CHECK(o.host == "10.0.0.7");
        CHECK(o.port == 6379);
        CHECK(o.db == 0);
        CHECK(o.username.empty());
        CHECK(o.password == "pw");
    }
    {
        // Percent-encoded credentials; no colon: a password for the default user.
        const auto o = redis_options({{"url", "redis://us%3Aer:p%40ss%2Fw0rd@h:1/1"}});
        CHECK(o.username == "us:er");
        CHECK(o.password == "p@ss/w0rd");
        CHECK(redis_options({{"url", "redis://secret@h"}}).password == "secret");
        CHECK(redis_options({{"url", "redis://secret@h"}}).username.empty());
        CHECK_THAT(config_error_for({{"url", "redis://u:bad%zz@h"}}),
                   Catch::Contains("percent-encoding"));
    }
    {
        const auto o = redis_options({{"url", "redis://h/"}});
        CHECK(o.host == "h");
        CHECK(o.port == 6379);
        CHECK(o.db == 0);
        CHECK(o.password.empty());
    }
    {
        // A password may contain '@' and ':' (the last '@' ends the credentials).
        const auto o = redis_options({{"url", "redis://bob:p@ss:w0rd@h:7000/2"}});
        CHECK(o.username == "bob");
        CHECK(o.password == "p@ss:w0rd");
        CHECK(o.host == "h");
        CHECK(o.port == 7000);
        CHECK(o.db == 2);
    }
    {
        const auto o = redis_options({{"url", "redis://h:1/2"}, {"port", 7001}, {"db", 5}});
        CHECK(o.host == "h");
        CHECK(o.port == 7001);
        CHECK(o.db == 5);
    }
    {
        const auto o = redis_options({{"unix_socket", "/run/redis.sock"},
                                      {"connect_timeout_ms", 25},
                                      {"socket_timeout_ms", 30},
                                      {"pool_size", 3},
                                      {"distributed_lock", true},
                                      {"lock_timeout_ms", 900}});
        CHECK(o.unix_socket == "/run/redis.sock");
        CHECK(o.connect_timeout == 25ms);
        CHECK(o.socket_timeout == 30ms);
        CHECK(o.pool_size == 3);
        CHECK(o.distributed_lock);
        CHECK(o.lock_timeout == 900ms);
    }

    // End to end: the url alone reaches the server and picks the database.
    auto& server = shared_server();
    CacheConfig c;
    c.backend = "redis";
    c.key_prefix = unique_prefix("url");
    c.arguments = {{"url", "redis://127.0.0.1:" + std::to_string(server.port()) + "/6"}};
    Fixture f(c);
    {
        auto s = f.db->session();
        Repository<User> users{s};
        users.get(1);
        CHECK(users.get(1).name == "Ada");
    }
    CHECK(f.stats().hits == 1);
    CHECK(f.errors.count() == 0);
    auto client = server.client();
    CHECK(client->keys(f.prefix).empty());
    client->select(6);
    CHECK_FALSE(client->keys(f.prefix).empty());
}

TEST_CASE("redis: the seed's spelling dogpile.cache.redis is the redis backend",
          "[redis][config]") {
    auto& server = shared_server();
    auto c = redis_config(server.port(), unique_prefix("dogpile"));
    c.backend = "dogpile.cache.redis";
    Fixture f(c);
    auto s = f.db->session();
    Repository<User> users{s};
    users.get(2);
    CHECK(users.get(2).name == "Bob");
    CHECK(f.log.count("SELECT") == 1);
    CHECK(f.stats().hits == 1);
    CHECK_FALSE(server.client()->keys(f.prefix).empty());
}

// ---- fail open ---------------------------------------------------------------------------

TEST_CASE("redis: an unreachable server at start-up is not an error; the cache connects later",
          "[redis][failopen]") {
    const int port = ormcache_test::free_port();  // nothing listens there (yet)
    Fixture f(redis_config(port, unique_prefix("down"),
                           {{"connect_timeout_ms", 200}, {"retry_interval_ms", 20}}));
    auto s = f.db->session();
    Repository<User> users{s};

    // Every call works, from the database.
    CHECK(users.get(1).name == "Ada");
    CHECK(users.get(1).name == "Ada");
    CHECK(users.list().size() == 5);
    CHECK(users.count() == 5);
    auto added = users.add({.name = "Fay", .email = "fay@example.org"});
    s.commit();  // the invalidation fails too, absorbed
    CHECK(users.get(added.id).name == "Fay");
    CHECK(users.list().size() == 6);
    CHECK(f.log.count("SELECT") >= 5);
    CHECK(f.stats().hits == 0);
    CHECK(f.stats().errors > 1);
    CHECK(f.errors.count() == 1);  // one outage, reported once; every failure counted
    {
        const auto reported = f.errors.entries();
        REQUIRE_FALSE(reported.empty());
        CHECK(reported.front().backend == "redis");
    }

    // A server appears on that port: the cache starts working without any reconfiguration.
    RedisServer server(RedisServerOptions{.port = port});
    const bool hit = serves_hits_again(f, users);
    CHECK(hit);
    f.log.clear();
    CHECK(users.get(1).name == "Ada");
    CHECK(f.log.size() == 0);
    CHECK_FALSE(server.client()->keys(f.prefix).empty());
}

// ---- hits, keys, SQL ---------------------------------------------------------------------

TEST_CASE("redis: get_or_create stores region values under key_prefix", "[redis][hits]") {
    auto& server = shared_server();
    Fixture f(redis_config(server.port(), unique_prefix("region")), false);
    int built = 0;
    auto build = [&] {
        ++built;
        return std::string("report body");
    };
    auto& manager = f.db->cache_manager();
    CHECK(manager.get_or_create<std::string>("report:42", build) == "report body");
    CHECK(manager.get_or_create<std::string>("report:42", build) == "report body");
    CHECK(built == 1);
    CHECK(manager.stats().hits == 1);
    auto client = server.client();
    const auto raw = client->get(f.prefix + "r:report:42");
    REQUIRE(raw.has_value());
    CHECK(raw->find("report body") != std::string::npos);
}

// ---- envelope, serializers, corrupt entries ----------------------------------------------

TEST_CASE("redis: the msgpack serializer stores msgpack inside the envelope",
          "[redis][serializer]") {
    auto& server = shared_server();
    auto c = redis_config(server.port(), unique_prefix("msgpack"));
    c.serializer = ormcache::serializers::msgpack();
    Fixture f(c);
    auto client = server.client();
    auto s = f.db->session();
    Repository<User> users{s};
    CHECK(users.get(4).name == "Dee");
    CHECK(users.list(OrderBy{&User::id}).size() == 5);

    const std::string entity = only_key(*client, f.space(), "e:users:", ":msgpack:i4");
    const auto raw = client->get(entity);
    REQUIRE(raw.has_value());
    const auto envelope = parse_envelope(*raw);
    REQUIRE(envelope.has_value());
    CHECK(std::to_string(envelope->stamp) == client->get(f.space() + "g:users").value());
    CHECK(envelope->check.empty());
    const auto decoded = nlohmann::json::from_msgpack(envelope->payload);
    CHECK(decoded.at("name") == "Dee");
    CHECK(decoded.at("email") == "Dee@example.org");
    CHECK(decoded.at("id") == 4);
    // Not JSON text: msgpack's fixmap marker first.
    REQUIRE_FALSE(envelope->payload.empty());
    CHECK((static_cast<unsigned char>(envelope->payload[0]) & 0xF0) == 0x80);

    const std::string query = only_key(*client, f.space(), "q:users:");
    CHECK(query.find(":msgpack:list:") != std::string::npos);
    const auto list_envelope = parse_envelope(client->get(query).value());
    REQUIRE(list_envelope.has_value());
    CHECK(std::to_string(list_envelope->stamp) == client->get(f.space() + "v:users").value());
    CHECK(list_envelope->check.find("SELECT") != std::string::npos);
    const auto list = nlohmann::json::from_msgpack(list_envelope->payload);
    REQUIRE(list.is_array());
    REQUIRE(list.size() == 5);
    CHECK(list[0].at("name") == "Ada");

    // And it reads back.
    f.log.clear();
    CHECK(users.get(4).name == "Dee");
    CHECK(users.list(OrderBy{&User::id}).size() == 5);
    CHECK(f.log.size() == 0);
}

// ---- connection options ------------------------------------------------------------------

TEST_CASE("redis: AUTH with requirepass and with an ACL user", "[redis][auth]") {
    RedisServer server(
        RedisServerOptions{.password = "adminpw", .acl_user = "app", .acl_password = "apppw"});
    auto admin = server.client();

    SECTION("default user's password") {
        Fixture f(redis_config(server.port(), unique_prefix("auth"), {{"password", "adminpw"}}));
        auto s = f.db->session();
        Repository<User> users{s};
        users.get(1);
        CHECK(users.get(1).name == "Ada");
        CHECK(f.stats().hits == 1);
        CHECK(f.errors.count() == 0);
        CHECK_FALSE(admin->keys(f.prefix).empty());
    }
    SECTION("ACL user and password, from a url") {
        CacheConfig c;
        c.backend = "redis";
        c.key_prefix = unique_prefix("acl");
        c.arguments = {
            {"url", "redis://app:apppw@127.0.0.1:" + std::to_string(server.port()) + "/0"}};
        Fixture f(c);
        auto s = f.db->session();
        Repository<User> users{s};
        users.get(1);
        CHECK(users.get(1).name == "Ada");
        CHECK(f.stats().hits == 1);
        CHECK(f.errors.count() == 0);
        CHECK_FALSE(admin->keys(f.prefix).empty());
        const auto clients = admin->command({"CLIENT", "LIST"}).str;
        CHECK(clients.find("user=app") != std::string::npos);
    }
    SECTION("a wrong password fails open") {
        Fixture f(redis_config(server.port(), unique_prefix("badauth"),
                               {{"username", "app"}, {"password", "wrong"}}));
        auto s = f.db->session();
        Repository<User> users{s};
        CHECK(users.get(1).name == "Ada");
        CHECK(users.get(1).name == "Ada");
        CHECK(f.log.count("SELECT") == 2);
        CHECK(f.stats().errors > 0);
        CHECK(admin->keys(f.prefix).empty());
    }
    SECTION("no password at all fails open") {
        Fixture f(redis_config(server.port(), unique_prefix("noauth")));
        auto s = f.db->session();
        Repository<User> users{s};
        CHECK(users.get(1).name == "Ada");
        CHECK(f.stats().errors > 0);
        CHECK(admin->keys(f.prefix).empty());
    }
}

TEST_CASE("redis: db selects the Redis database", "[redis][db]") {
    auto& server = shared_server();
    Fixture f(redis_config(server.port(), unique_prefix("db3"), {{"db", 3}}));
    auto s = f.db->session();
    Repository<User> users{s};
    users.get(1);
    users.list();
    s.commit();
    CHECK(users.get(1).name == "Ada");
    CHECK(f.stats().hits == 1);
    auto client = server.client();
    CHECK(client->keys(f.prefix).empty());
    client->select(3);
    const auto keys = client->keys(f.prefix);
    CHECK(keys.size() == 4);  // the entity, the list, v:users and g:users
    f.db->cache_manager().clear();
    CHECK(client->keys(f.prefix).empty());
}

TEST_CASE("redis: unix_socket connects through the socket", "[redis][socket]") {
    RedisServer server(RedisServerOptions{.unix_socket = true});
    REQUIRE_FALSE(server.unix_socket().empty());
    CacheConfig c;
    c.backend = "redis";
    c.key_prefix = unique_prefix("sock");
    c.arguments = {{"unix_socket", server.unix_socket()}};
    Fixture f(c);
    auto s = f.db->session();
    Repository<User> users{s};
    users.get(1);
    CHECK(users.get(1).name == "Ada");
    CHECK(f.stats().hits == 1);
    CHECK(f.errors.count() == 0);
    auto client = server.client();
    CHECK_FALSE(client->keys(f.prefix).empty());
    // The cache's connections are on the socket: none of them is a TCP client.
    const auto clients = client->command({"CLIENT", "LIST"}).str;
    CHECK(clients.find("flags=U") != std::string::npos);
}

TEST_CASE("redis: clear() removes only keys under key_prefix", "[redis][clear]") {
    auto& server = shared_server();
    auto client = server.client();
    // Glob characters in the prefix must match literally: unescaped, "t[ab]*:" would also
    // match "ta-foreign:x".
    const std::string prefix = unique_prefix("t[ab]*?");
    const std::string base = prefix.substr(0, prefix.find('['));
    const std::vector<std::string> foreign{base + "ta-foreign:x", base + "t", "foreign:" + prefix,
                                           base + "tb?:1"};
    for (const auto& k : foreign)
        client->set(k, "keep me");

    Fixture f(redis_config(server.port(), prefix));
    auto s = f.db->session();
    Repository<User> users{s};
    for (std::int64_t id = 1; id <= 5; ++id)
        users.get(id);
    users.list();
    f.db->cache_manager().get_or_create<std::string>("x", [] { return std::string("y"); });
    CHECK(client->keys(prefix).size() == 5 + 1 + 1 + 2);

    f.db->cache_manager().clear();
    CHECK(client->keys(prefix).empty());
    for (const auto& k : foreign) {
        INFO(k);
        CHECK(client->get(k) == std::optional<std::string>("keep me"));
    }
    // And the cache still works after it.
    f.log.clear();
    users.get(1);
    users.get(1);
    CHECK(f.log.count("SELECT") == 1);
    CHECK(f.errors.count() == 0);
    for (const auto& k : foreign)
        client->command({"DEL", k});
}

// ---- connection pool ---------------------------------------------------------------------

TEST_CASE("redis: the pool never has more than pool_size connections out", "[redis][pool]") {
    auto& server = shared_server();
    ormcache::RedisOptions options;
    options.port = server.port();
    options.pool_size = 1;
    options.socket_timeout = 100ms;  // how long acquire() waits for a busy pool
    ormcache::detail::RedisPool pool(options);
    {
        auto lease = pool.acquire();
        auto moved = std::move(lease);  // the moved-from lease must give nothing back
    }
    auto first = pool.acquire();
    CHECK_THROWS_AS(pool.acquire(), ormcache::CacheError);
}

// ---- round trips -------------------------------------------------------------------------

TEST_CASE("redis: a hit is one command; a commit of 100 changed ids is one script call",
          "[redis][roundtrips]") {
    auto& server = shared_server();
    auto client = server.client();
    Fixture f(redis_config(server.port(), unique_prefix("rtt")));
    auto s = f.db->session();
    Repository<User> users{s};
    std::vector<User> added;
    for (int i = 0; i < 100; ++i)
        added.push_back({.name = "n" + std::to_string(i), .email = "e"});
    added = users.add_many(added);
    s.commit();  // also loads the invalidation script
    users.get(1);
    users.get(1);  // scripts loaded, entry cached
    users.list(OrderBy{&User::id});
    users.count();

    // Round trips: the commands the cache sent (MONITOR, without what scripts ran inside the
    // server), and the script calls as INFO commandstats counts them.
    RedisMonitor monitor(server.port());
    struct Trips {
        std::vector<std::string> sent;
        CommandDelta stats;
        std::string describe() const {
            std::string out = "sent:";
            for (const auto& c : sent)
                out += " " + c;
            return out + "; commandstats: " + stats.describe();
        }
    };
    auto measure = [&](auto&& fn) {
        const auto before = client->command_calls();
        monitor.take(*client);
        fn();
        Trips t;
        t.sent = monitor.take(*client);
        t.stats = CommandDelta::between(before, client->command_calls());
        return t;
    };
    const std::vector<std::string> one_script{"EVALSHA"};
    const std::vector<std::string> one_mget{"MGET"};  // a hit: entry and counter together

    const auto get_hit = measure([&] { CHECK(users.get(1).name == "Ada"); });
    INFO("get hit: " << get_hit.describe());
    CHECK(get_hit.sent == one_mget);
    CHECK(get_hit.stats.of("mget") == 1);
    CHECK(get_hit.stats.total() == 1);

    const auto list_hit = measure([&] { CHECK(users.list(OrderBy{&User::id}).size() == 105); });
    INFO("list hit: " << list_hit.describe());
    CHECK(list_hit.sent == one_mget);
    CHECK(list_hit.stats.total() == 1);

    const auto count_hit = measure([&] { CHECK(users.count() == 105); });
    CHECK(count_hit.sent == one_mget);

    const auto get_miss = measure([&] { CHECK(users.get(2).name == "Bob"); });
    INFO("get miss: " << get_miss.describe());
    CHECK(get_miss.sent.size() <= 3);  // read, lease, fill
    const auto list_miss = measure([&] { CHECK(users.list(OrderBy{&User::name}).size() == 105); });
    INFO("list miss: " << list_miss.describe());
    CHECK(list_miss.sent.size() <= 3);

    for (const auto& u : added)
        users.get(u.id);
    CHECK(client->keys(f.space() + "e:users:").size() == 102);
    const auto version = std::stoll(client->get(f.space() + "v:users").value());
    for (auto& u : added)
        u.name += " v2";
    const auto commit = measure([&] {
        users.update_many(added);
        s.commit();
    });
    INFO("commit of 100 changed ids: " << commit.describe());
    CHECK(commit.sent == one_script);
    CHECK(commit.stats.of("evalsha") == 1);
    CHECK(commit.stats.of("del") == 100);  // inside the script
    WARN("round trips: get hit " << get_hit.sent.size() << ", list hit " << list_hit.sent.size()
                                 << ", get miss " << get_miss.sent.size() << ", list miss "
                                 << list_miss.sent.size() << ", commit of 100 ids "
                                 << commit.sent.size());
    CHECK(std::stoll(client->get(f.space() + "v:users").value()) == version + 1);
    CHECK(client->keys(f.space() + "e:users:").size() == 2);  // only ids 1 and 2 remain
    CHECK(f.stats().invalidations >= 100);
    CHECK(users.get(added[50].id).name == added[50].name);
    CHECK(f.errors.count() == 0);
}

// ---- outages -----------------------------------------------------------------------------

TEST_CASE("redis: invalidations that could not be delivered are replayed when it answers",
          "[redis][failopen]") {
    // This process reaches Redis through a proxy that can cut it off; the test looks at the
    // server directly.
    RedisServer server;
    RoundTripProxy proxy(server.port());
    Fixture f(redis_config(
        proxy.port(), unique_prefix("replay"),
        {{"socket_timeout_ms", 100}, {"connect_timeout_ms", 100}, {"retry_interval_ms", 1000}}));
    auto client = server.client();
    auto s = f.db->session();
    Repository<User> users{s};
    users.get(1);
    users.list(OrderBy{&User::id});

    // Cut off, a read fails and opens the circuit; the commit right after cannot send its
    // invalidation (its probe through the open circuit fails too).
    proxy.set_cut(true);
    users.get(2);
    const auto errors_before = f.stats().errors;
    f.rename(1, "Ada (cut off)");
    CHECK(f.stats().errors > errors_before);
    proxy.set_cut(false);
    {
        const auto key = keys_like(*client, f.space(), "e:users:", ":i1");
        REQUIRE(key.size() == 1);
        const auto raw = client->get(key.front());
        REQUIRE(raw.has_value());
        CHECK(raw->find("\"Ada\"") != std::string::npos);  // still the old row
    }

    // Until the circuit closes reads come from the database; then the replay runs before
    // anything else, so the old entry is never served.
    int stale = 0;
    const bool refilled = eventually([&] {
        if (users.get(1).name != "Ada (cut off)")
            ++stale;
        if (users.list(OrderBy{&User::id}).front().name != "Ada (cut off)")
            ++stale;
        // Gone for a moment when the outbox keeper's delivery lands before the refill.
        const auto keys = keys_like(*client, f.space(), "e:users:", ":i1");
        const auto raw = keys.empty() ? std::nullopt : client->get(keys.front());
        return raw && raw->find("Ada (cut off)") != std::string::npos;
    });
    CHECK(refilled);
    CHECK(stale == 0);
    f.log.clear();
    CHECK(users.get(1).name == "Ada (cut off)");
    CHECK(f.log.size() == 0);
}

TEST_CASE(
    "redis: a commit whose writer could not reach Redis and exited reaches the cache "
    "through the outbox within invalidation_bound",
    "[redis][outbox][process]") {
    auto config = redis_config(shared_server().port(), unique_prefix("outbox"));
    config.invalidation_bound = 200ms;
    Fixture f(config);
    auto s = f.db->session();
    Repository<User> users{s};
    CHECK(users.get(1).name == "Ada");  // cached from now on

    // Another process whose address for the same Redis leads nowhere: its commit cannot
    // invalidate, and it exits without ever delivering it.
    auto unreachable =
        redis_config(ormcache_test::free_port(), config.key_prefix, {{"connect_timeout_ms", 100}});
    unreachable.invalidation_bound = config.invalidation_bound;
    REQUIRE(ormcache_test::commit_in_child(f.path(), unreachable, [](Database& db) {
                rename_user(db, 1, "Ada (outbox)");
            }) == 0);
    const auto committed = Clock::now();

    // The commit's change set waits in the database's outbox; this process's keeper finds it
    // undelivered after half the bound and delivers it.
    const bool fresh = eventually([&] { return users.get(1).name == "Ada (outbox)"; }, 20s);
    const auto elapsed = Clock::now() - committed;
    CHECK(fresh);
    INFO("the stale entry went after "
         << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count() << " ms");
    // Never asserted as a tight timing (a shared machine); what must hold is that it goes long
    // before its TTL (an hour here).
    CHECK(elapsed < 10s);
    CHECK(eventually([&] { return ormcache_test::outbox_rows(f.path()) == 0; }, 20s));
}

TEST_CASE("redis: an invalidation goes through an open circuit breaker, and closes it",
          "[redis][outbox][failopen]") {
    RedisServer server;
    auto config = redis_config(server.port(), unique_prefix("outbox-circuit"),
                               ormcache_test::long_breaker_arguments());
    config.invalidation_bound = 200ms;
    Fixture f(config);
    auto unreachable =
        redis_config(ormcache_test::free_port(), config.key_prefix, {{"connect_timeout_ms", 100}});
    unreachable.invalidation_bound = config.invalidation_bound;
    auto client = server.client();
    ormcache_test::check_invalidation_goes_through_open_circuit(
        f, server, unreachable,
        [&] { return keys_like(*client, f.space(), "e:users:", ":i1").at(0); },
        [&](const std::string& key) { return client->get(key).has_value(); });
}

TEST_CASE("redis: a commit delivered by its writer leaves no outbox row behind",
          "[redis][outbox]") {
    auto config = redis_config(shared_server().port(), unique_prefix("outbox-clean"));
    config.invalidation_bound = 40ms;
    Fixture f(config);
    f.rename(1, "Ada 2");
    f.rename(2, "Bob 2");
    // The keeper deletes the rows its process delivered within a quarter of the bound.
    CHECK(eventually([&] { return ormcache_test::outbox_rows(f.path()) == 0; }, 20s));
    auto s = f.db->session();
    Repository<User> users{s};
    CHECK(users.get(1).name == "Ada 2");
}

TEST_CASE("redis: concurrent commits and reads: each writer reads its own commit back",
          "[redis][invalidation]") {
    // No outage. Writers rename their own user and read it back through the cache while
    // readers keep loading (and filling) the same users: the read after a commit must see
    // it, whatever other threads were loading or delivering at the time.
    auto& server = shared_server();
    Fixture f(redis_config(server.port(), unique_prefix("concurrent")));
    constexpr int writers = 4;
    constexpr int readers = 4;
    constexpr int rounds = 200;
    std::atomic<int> stale{0}, failures{0}, writing{writers};
    std::mutex first_failure_mutex;
    std::string first_failure;  // guarded by first_failure_mutex
    auto failed = [&](const std::exception& e) {
        std::lock_guard lock(first_failure_mutex);
        if (failures++ == 0)
            first_failure = e.what();
    };
    std::latch start(writers + readers);
    std::vector<std::thread> threads;
    for (int t = 0; t < writers; ++t) {
        threads.emplace_back([&, t] {
            try {
                auto s = f.db->session();
                Repository<User> users{s};
                const std::int64_t id = t + 1;
                start.arrive_and_wait();
                for (int round = 0; round < rounds; ++round) {
                    auto u = users.get(id);
                    u.name = "t" + std::to_string(t) + "-" + std::to_string(round);
                    users.update(u, {.auto_commit = true});
                    if (users.get(id).name != u.name)
                        ++stale;
                }
            } catch (const std::exception& e) {
                failed(e);
            }
            --writing;
        });
    }
    for (int t = 0; t < readers; ++t) {
        threads.emplace_back([&, t] {
            try {
                auto s = f.db->session();
                Repository<User> users{s};
                start.arrive_and_wait();
                for (std::int64_t i = t; writing > 0; ++i)
                    users.get(i % writers + 1);
            } catch (const std::exception& e) {
                failed(e);
            }
        });
    }
    for (auto& t : threads)
        t.join();
    CHECK(failures == 0);
    CHECK(stale == 0);
    CHECK(f.errors.count() == 0);
}

TEST_CASE("redis: fault run: readers and writers while Redis is stopped, restarted and paused",
          "[redis][fault]") {
    RedisServer server;
    TempDir dir;
    const std::string prefix = unique_prefix("fault");
    ErrorLog errors;
    auto config = redis_config(
        server.port(), prefix,
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

    const auto started = Clock::now();
    ormcache_test::FaultRun run(db, threads, ids, [&](ormcache_test::FaultRun::Worker& w) {
        switch (w.rng() % 10) {
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
            case 5: {
                auto [page, total] = w.users.list_and_count(LimitOffset{.limit = 5, .offset = 3},
                                                            OrderBy{&User::id});
                if (total != ids || page.size() != 5)
                    w.stale("list_and_count " + std::to_string(total));
                break;
            }
            case 6:
            case 7:
                w.rename_and_check(w.own());
                break;
            case 8: {
                w.session.begin();
                w.check_own(w.own(), "get in transaction");
                if (w.users.count() != ids)
                    w.stale();
                w.session.commit();
                break;
            }
            case 9: {
                auto a = w.users.get(w.own(), {.use_cache = false});
                auto b = w.users.get(w.own(), {.use_cache = false});
                if (a.id == b.id)
                    break;
                a.name = w.fresh_name(a.id, "m");
                b.name = w.fresh_name(b.id, "m");
                w.users.update_many({a, b});
                w.session.commit();
                w.committed(a.id, a.name);
                w.committed(b.id, b.name);
                break;
            }
        }
    });

    // About 10 s: killed (SIGKILL, a crash) and restarted twice, then hung and resumed. Each
    // phase lasts at least its time and until the workers got some work done in it.
    run.phase("up", 1200ms);
    server.kill();
    run.phase("killed", 1500ms);
    server.restart();
    run.phase("restarted", 1500ms);
    server.kill();
    run.phase("killed again", 1500ms);
    server.restart();
    run.phase("restarted again", 1500ms);
    server.pause();
    run.phase("paused", 1500ms);
    server.resume();
    run.phase("resumed", 1500ms);  // the data survived the pause: stale entries would show now
    run.stop();
    const auto elapsed = Clock::now() - started;

    for (const auto& [name, n] : run.phases()) {
        INFO("phase " << name);
        CHECK(n > 10);
    }
    INFO(run.notes());
    CHECK(run.failures() == 0);
    CHECK(run.stale() == 0);
    const auto stats = db.cache_manager().stats();
    CHECK(stats.errors > 0);
    // on_error hears of each outage (two kills, one hang) about once, not of every failed
    // call; the failures in flight as a server comes back may open one more each.
    CHECK(errors.count() >= 3);
    CHECK(errors.count() <= 3 * (threads + 1));
    CHECK(stats.hits > 0);
    CHECK(elapsed < 40s);
    WARN("fault run: " << run.ops() << " calls in "
                       << std::chrono::duration_cast<std::chrono::milliseconds>(elapsed).count()
                       << " ms, " << stats.errors << " cache errors absorbed, " << stats.hits
                       << " hits");

    // Settled: a cached read that adds no error means the server answers and whatever was
    // waiting to be replayed has been.
    auto s = db.session();
    Repository<User> users{s};
    const bool settled = eventually([&] {
        const auto before = db.cache_manager().stats().errors;
        users.get(1);
        return db.cache_manager().stats().errors == before;
    });
    REQUIRE(settled);
    const auto errors_settled = db.cache_manager().stats().errors;

    // What Redis holds, compared with the database directly: every entity entry under the
    // current generation.
    auto client = server.client();
    const std::string generation = client->get(space + "g:users").value_or("");
    int compared = 0, differing = 0;
    for (const auto& key : client->keys(space + "e:users:")) {
        const auto raw = client->get(key);
        if (!raw || is_lease(*raw))
            continue;
        const auto envelope = parse_envelope(*raw);
        REQUIRE(envelope.has_value());
        if (std::to_string(envelope->stamp) != generation)
            continue;  // unreachable anyway
        const auto id = std::stoll(key.substr(key.rfind(":i") + 2));
        const auto payload = nlohmann::json::parse(envelope->payload);
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

    // And through the repository: every id and the lists, cached against uncached.
    for (std::int64_t id = 1; id <= ids; ++id) {
        INFO("id " << id);
        CHECK(ormcache::to_json(users.get(id)) ==
              ormcache::to_json(users.get(id, {.use_cache = false})));
    }
    auto as_json = [](const std::vector<User>& v) {
        nlohmann::json out = nlohmann::json::array();
        for (const auto& u : v)
            out.push_back(ormcache::to_json(u));
        return out;
    };
    CHECK(as_json(users.list(OrderBy{&User::id})) ==
          as_json(users.list(OrderBy{&User::id}, Options{.use_cache = false})));
    CHECK(as_json(users.list(OrderBy{&User::id})) ==
          as_json(users.list(OrderBy{&User::id}, Options{.use_cache = false})));
    CHECK(users.count() == ids);
    CHECK(db.cache_manager().stats().errors == errors_settled);
}

TEST_CASE("redis: on_error hears of an outage once, and of the next outage again",
          "[redis][failopen][incident]") {
    RedisServer server;
    Fixture f(redis_config(
        server.port(), unique_prefix("incident"),
        {{"socket_timeout_ms", 200}, {"connect_timeout_ms", 200}, {"retry_interval_ms", 20}}));
    auto s = f.db->session();
    Repository<User> users{s};
    users.get(1);
    REQUIRE(f.errors.count() == 0);

    server.kill();
    for (int i = 0; i < 20; ++i)
        CHECK(users.get(1).name == "Ada");
    CHECK(f.stats().errors >= 20);  // every failure counted...
    CHECK(f.errors.count() == 1);   // ...the outage reported once

    server.restart();
    const bool back = serves_hits_again(f, users);
    REQUIRE(back);
    CHECK(f.errors.count() == 1);  // failures while it came back continue the same incident

    server.kill();
    CHECK(users.get(1).name == "Ada");
    CHECK(f.errors.count() == 2);  // a new outage
}

TEST_CASE("redis: a list miss after a commit leases the stale entry in the same round trip",
          "[redis][roundtrips]") {
    auto& server = shared_server();
    auto client = server.client();
    Fixture f(redis_config(server.port(), unique_prefix("stale-list")));
    auto s = f.db->session();
    Repository<User> users{s};
    users.list(OrderBy{&User::id});
    users.list(OrderBy{&User::id});  // scripts loaded, entry cached
    f.rename(3, "Cy (renamed)");     // the list version moves on: the entry is stale

    RedisMonitor monitor(server.port());
    monitor.take(*client);
    f.log.clear();
    CHECK(users.list(OrderBy{&User::id})[2].name == "Cy (renamed)");
    const auto sent = monitor.take(*client);
    INFO("sent: " << sent.size());
    // First read (MGET), the leader's read that leases over the stale entry, the fill.
    CHECK(sent == std::vector<std::string>{"MGET", "EVALSHA", "EVALSHA"});
    CHECK(f.log.count("SELECT") == 1);
    f.log.clear();
    CHECK(users.list(OrderBy{&User::id})[2].name == "Cy (renamed)");
    CHECK(f.log.size() == 0);
}

TEST_CASE("redis: a corrupt counter or a key of another type heals instead of failing every call",
          "[redis][corrupt]") {
    auto& server = shared_server();
    auto client = server.client();
    Fixture f(redis_config(server.port(), unique_prefix("heal")));
    auto s = f.db->session();
    Repository<User> users{s};
    users.get(1);
    users.list(OrderBy{&User::id});
    client->command({"SET", f.space() + "g:users", "not a number"});
    client->command({"DEL", f.space() + "v:users"});
    client->command({"LPUSH", f.space() + "v:users", "a list, not a counter"});

    // Served from the database, and the counters are re-created: cached again.
    CHECK(users.get(1).name == "Ada");
    CHECK(users.list(OrderBy{&User::id}).size() == 5);
    f.log.clear();
    CHECK(users.get(1).name == "Ada");
    CHECK(users.list(OrderBy{&User::id}).size() == 5);
    CHECK(f.log.size() == 0);
    const auto generation = client->get(f.space() + "g:users");
    REQUIRE(generation.has_value());
    CHECK(std::stoll(*generation) > 0);

    // An invalidation bumping a corrupt counter heals it too (it never fails for good).
    client->command({"SET", f.space() + "v:users", "garbage"});
    f.rename(1, "Ada (healed)");
    CHECK(users.get(1).name == "Ada (healed)");
    CHECK(users.list(OrderBy{&User::id}).front().name == "Ada (healed)");
    CHECK(std::stoll(client->get(f.space() + "v:users").value()) > 0);
    CHECK(f.stats().errors == 0);
}

// ---- messages that say where (issue 10, item 7) --------------------------------------------

TEST_CASE("redis: on_error names the server, host:port or socket path and db, never the password",
          "[redis][failopen][messages]") {
    const auto first_error = [](Fixture& f) {
        auto s = f.db->session();
        Repository<User> users{s};
        CHECK(users.get(1).name == "Ada");  // served from the database
        const auto reported = f.errors.entries();
        REQUIRE_FALSE(reported.empty());
        CHECK(reported.front().backend == "redis");
        return reported.front().what;
    };

    SECTION("a closed port on 127.0.0.1") {
        const int port = ormcache_test::free_port();  // nothing listens there
        Fixture f(
            redis_config(port, unique_prefix("where"),
                         {{"db", 3}, {"password", "hunter2-pw"}, {"connect_timeout_ms", 200}}));
        const std::string what = first_error(f);
        INFO(what);
        CHECK_THAT(what, Catch::Contains("127.0.0.1:" + std::to_string(port)) &&
                             Catch::Contains("db 3") && Catch::Contains("connect"));
        CHECK_THAT(what, !Catch::Contains("hunter2"));
    }
    SECTION("a unix socket nobody listens on") {
        TempDir dir;
        const std::string socket = dir.file("no-redis-here.sock");
        CacheConfig c;
        c.backend = "redis";
        c.arguments = {{"unix_socket", socket}, {"connect_timeout_ms", 200}};
        c.key_prefix = unique_prefix("where");
        Fixture f(c);
        const std::string what = first_error(f);
        INFO(what);
        CHECK_THAT(what, Catch::Contains(socket) && Catch::Contains("db 0"));
    }
    SECTION("an error reply of a server that is up") {
        RedisServer server(RedisServerOptions{.password = "right-pw"});
        Fixture f(redis_config(server.port(), unique_prefix("where"), {{"password", "wrong-pw"}}));
        const std::string what = first_error(f);
        INFO(what);
        CHECK_THAT(what, Catch::Contains("127.0.0.1:" + std::to_string(server.port())) &&
                             Catch::Contains("auth"));
        CHECK_THAT(what, !Catch::Contains("wrong-pw") && !Catch::Contains("right-pw"));
    }
}

TEST_CASE("redis: a ConfigError never quotes a password", "[redis][config][messages]") {
    const auto url = config_error_for({{"url", "rediss://app:hunter2@cache.example:6380/1"}});
    CHECK_THAT(url, Catch::Contains("url") && Catch::Contains("cache.example:6380"));
    CHECK_THAT(url, !Catch::Contains("hunter2"));
    const auto typed = config_error_for({{"password", 31337424242}});
    CHECK_THAT(typed, Catch::Contains("password") && !Catch::Contains("31337424242"));
}

TEST_CASE("redis: two databases on one server and prefix never see each other's rows",
          "[redis][identity]") {
    // The report: a brand-new database with no users table got a User from get(1), another
    // database's entry under the same key_prefix.
    auto& server = shared_server();
    auto client = server.client();
    const std::string prefix = unique_prefix("two-dbs");
    Fixture seeded(redis_config(server.port(), prefix));
    {
        auto s = seeded.db->session();
        CHECK(Repository<User>{s}.get(1).name == "Ada");  // cached in Redis now
    }
    TempDir other_dir;
    SqlLog other_log;
    Database fresh{DatabaseConfig{.connection_string = other_dir.file("fresh.db"),
                                  .cache_config = redis_config(server.port(), prefix),
                                  .on_query = other_log.callback()}};
    {
        auto s = fresh.session();
        Repository<User> users{s};
        CHECK_THROWS_AS(users.get(1), ormcache::DatabaseError);  // no such table: the database
    }
    fresh.create_all<User>();
    {
        auto s = fresh.session();
        Repository<User> users{s};
        other_log.clear();
        CHECK_FALSE(users.get_or_none(1).has_value());
        CHECK(users.list().empty());
        CHECK(other_log.count("SELECT") == 2);
    }
    // Each database's keys sit in its own key space under the prefix.
    CHECK(seeded.space() != prefix + fresh.cache_identity() + ":");
    CHECK(client->keys(seeded.space() + "e:users:").size() == 1);
    CHECK(client->keys(prefix + fresh.cache_identity() + ":e:users:").size() == 1);
}

// ---- typed options (docs/reference.md, section 3.4) -----------------------------------------

TEST_CASE("redis: RedisOptions is CacheConfig::arguments", "[redis][config][options]") {
    auto& server = shared_server();
    const std::string prefix = unique_prefix("typed");
    const CacheConfig typed{
        .backend = "redis",
        .arguments =
            ormcache::RedisOptions{.host = "127.0.0.1", .port = server.port(), .pool_size = 2},
        .key_prefix = prefix};
    CHECK(typed.arguments.at("port") == server.port());
    CHECK(typed.arguments.at("pool_size") == 2);
    CHECK_FALSE(typed.arguments.contains("url"));  // the members it would set are written
    // The same backend as the JSON arguments: what one manager stores, the other reads.
    ormcache::CacheManager writer{typed};
    ormcache::CacheManager reader{redis_config(server.port(), prefix)};
    CHECK(writer.get_or_create<int>("k", [] { return 42; }) == 42);
    CHECK(reader.get_or_create<int>("k", [] { return -1; }) == 42);
    CHECK(reader.stats().hits == 1);
}

TEST_CASE("redis: RedisOptions round trip through JSON", "[redis][config][options]") {
    using ormcache::RedisOptions;
    for (const RedisOptions& o :
         {RedisOptions{},
          RedisOptions{.host = "cache.example",
          .port = 6380,
          .db = 4,
          .username = "alice",
          .password = "p@ss:w/rd",
          .unix_socket = "/run/redis.sock",
          .connect_timeout = 25ms,
          .socket_timeout = 30ms,
          .pool_size = 3,
          .distributed_lock = true,
          .lock_timeout = 900ms,
          .retry_interval = 0ms},
          ormcache::detail::redis_options({{"url", "redis://bob:s%40cret@h:7000/2"}})}) {
        const nlohmann::json j = o;
        CHECK(j.get<RedisOptions>() == o);
        CHECK(ormcache::detail::redis_options(j) == o);
    }
}

TEST_CASE("redis: argument errors name the field, the backend and the valid names",
          "[redis][config][options]") {
    CHECK(config_error_for({{"prot", 6379}}) ==
          "CacheConfig::arguments.prot: unknown argument for backend redis; expected one of url, "
          "host, port, db, username, password, unix_socket, connect_timeout_ms, "
          "socket_timeout_ms, pool_size, distributed_lock, lock_timeout_ms, retry_interval_ms");
    CHECK(config_error_for({{"port", "abc"}}) ==
          "CacheConfig::arguments.port must be an integer in 1..65535, got \"abc\"");
    CHECK(config_error_for({{"socket_timeout_ms", 0}}) ==
          "CacheConfig::arguments.socket_timeout_ms must be an integer of milliseconds in "
          "1..3600000, got 0");
    CHECK(config_error_for({{"password", 7}}) ==
          "CacheConfig::arguments.password must be a string, got a number");
    CHECK(config_error_for({{"url", 7}}) ==
          "CacheConfig::arguments.url must be a string, got a number");
    // A typed config is checked the same way.
    CHECK_THAT(config_error_for(ormcache::RedisOptions{.port = 0}),
               Catch::Contains("CacheConfig::arguments.port must be an integer in 1..65535"));
    CHECK(config_error_for(ormcache::RedisOptions{.host = ""}) ==
          "CacheConfig::arguments.host is empty");
}
