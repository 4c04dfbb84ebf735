#pragma once
// The Redis backend, on hiredis: a cache shared by every process of an application.
// Include this header and link ormcache::redis; then CacheConfig::backend = "redis" (or the
// seed's "dogpile.cache.redis") works.
//
// One round trip per operation: read (entry, counters and lease), fill (compare-and-set on the
// lease and the guard counters) and invalidate (delete entities, bump counters) are Lua scripts
// run with EVALSHA. It fails open: a server that is down, slow or answers garbage makes the
// operation throw a CacheError (the CacheManager absorbs it and serves from the database), and
// a circuit breaker stops paying the connect timeout on every call while it stays down.
// Invalidations that could not be delivered are kept and replayed before anything else once
// the server answers again, so an outage never leaves stale entries behind; past a bound they
// are folded into counter bumps, which make at least the same entries unreachable. on_error
// hears of an outage once (detail::ServerHealth), stats count every failure.
//
// Thread-safe: a pool of connections, each used by one thread at a time.
//
// The machinery is in detail/redis/: the url argument, the hiredis connection and its error
// mapper, the pool, the Lua scripts.

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <iterator>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <tuple>
#include <utility>
#include <vector>

#include <hiredis/hiredis.h>
#include <nlohmann/json.hpp>

#include "../backend.hpp"
#include "../detail/cache/backend_arguments.hpp"
#include "../detail/cache/lease_token.hpp"
#include "../detail/cache/lock_wait.hpp"
#include "../detail/cache/server_health.hpp"
#include "../detail/redis/redis_connection.hpp"
#include "../detail/redis/redis_pool.hpp"
#include "../detail/redis/redis_scripts.hpp"
#include "../detail/redis/redis_url.hpp"
#include "../errors.hpp"

namespace ormcache {

/// Redis connection settings: the typed form of CacheConfig::arguments (docs/reference.md,
/// section 3.4). An aggregate: append only. `CacheConfig{.backend = "redis", .arguments =
/// RedisOptions{.host = "cache", .port = 6380}}` works through to_json() below. The JSON-only
/// argument `url` sets host, port, db, username and password at once.
struct RedisOptions {
    /// Server host name or address; empty is allowed only with a unix_socket.
    std::string host = "127.0.0.1";
    /// Server TCP port, 1..65535.
    int port = 6379;
    /// Database number, SELECTed on every new connection; 0 = the default database.
    int db = 0;
    std::string username{};     ///< ACL user (Redis 6+); empty = the default user
    std::string password{};     ///< AUTH password; empty = no AUTH
    std::string unix_socket{};  ///< non-empty: connect to this socket instead of host:port
    /// Longest connect (>= 1 ms). JSON `connect_timeout_ms`.
    std::chrono::milliseconds connect_timeout{500};
    /// Longest wait for a reply, and for a free pooled connection (>= 1 ms). JSON
    /// `socket_timeout_ms`.
    std::chrono::milliseconds socket_timeout{500};
    std::size_t pool_size = 8;  ///< most connections open at once, 1..4096
    /// Cache rule 9 (docs/reference.md): concurrent misses of one key across processes run
    /// one query.
    bool distributed_lock = false;
    /// With distributed_lock: how long a lock lives and the longest a reader waits for one
    /// (>= 1 ms). JSON `lock_timeout_ms`.
    std::chrono::milliseconds lock_timeout{5000};
    /// How long the circuit stays open after a connection failure before one retry; 0 = every
    /// call tries again. JSON `retry_interval_ms`.
    std::chrono::milliseconds retry_interval{1000};

    friend bool operator==(const RedisOptions&, const RedisOptions&) = default;
};

namespace detail {

inline void redis_url_from_json(RedisOptions& o, const nlohmann::json& v) {
    redis_url_into(o, read_string_argument("url", v, {.secret = true}));
}

/// The redis backend's arguments: JSON name, member, range (docs/reference.md, section 3.4).
/// `url` comes first, so that the explicit arguments after it override what it says; it is
/// never written back (the members it sets are).
template <>
struct OptionTable<RedisOptions> {
    static constexpr std::string_view backend = "redis";
    static constexpr auto fields = std::tuple{
        field<RedisOptions>("url", &redis_url_from_json, nullptr),
        field("host", &RedisOptions::host),
        field("port", &RedisOptions::port, {.min = 1, .max = 65535}),
        field("db", &RedisOptions::db, {.max = 1 << 20}),
        field("username", &RedisOptions::username),
        field("password", &RedisOptions::password, {.secret = true}),
        field("unix_socket", &RedisOptions::unix_socket),
        field("connect_timeout_ms", &RedisOptions::connect_timeout,
              {.min = 1, .max = max_argument_ms}),
        field("socket_timeout_ms", &RedisOptions::socket_timeout,
              {.min = 1, .max = max_argument_ms}),
        field("pool_size", &RedisOptions::pool_size, {.min = 1, .max = 4096}),
        field("distributed_lock", &RedisOptions::distributed_lock),
        field("lock_timeout_ms", &RedisOptions::lock_timeout, {.min = 1, .max = max_argument_ms}),
        field("retry_interval_ms", &RedisOptions::retry_interval, {.max = max_argument_ms}),
    };
    static void check(const RedisOptions& o) {
        if (o.host.empty() && o.unix_socket.empty())
            throw ConfigError("CacheConfig::arguments.host is empty");
    }
};

inline RedisOptions redis_options(const nlohmann::json& args) {
    return read_options<RedisOptions>(args);
}

}  // namespace detail

/// RedisOptions as CacheConfig::arguments (found by ADL: `nlohmann::json j = options;`).
inline void to_json(nlohmann::json& j, const RedisOptions& o) {
    j = detail::options_to_json(o);
}

/// CacheConfig::arguments as RedisOptions (`j.get<RedisOptions>()`); ConfigError when invalid.
inline void from_json(const nlohmann::json& j, RedisOptions& o) {
    o = detail::read_options<RedisOptions>(j);
}

class RedisBackend {
  public:
    static constexpr bool stores_objects = false;

    RedisBackend(RedisOptions options, std::string key_prefix)
        : pool_(std::move(options)), prefix_(std::move(key_prefix)) {}

    std::string_view name() const noexcept { return "redis"; }
    const RedisOptions& options() const noexcept { return pool_.options(); }

    ReadResult read(const ReadRequest& request) {
        return health_.track([&] {
            return detail::read_with_lock(
                request, options().distributed_lock, options().lock_timeout,
                [&](std::optional<Ttl> lease_ttl) { return read_once(request, lease_ttl); });
        });
    }

    bool fill(const FillRequest& request) {
        return health_.track([&] {
            std::vector<std::string> args{request.key};
            for (const auto& [counter, value] : request.guards)
                args.push_back(counter);
            args.push_back(request.lease);
            args.push_back(request.value.bytes);
            args.push_back(std::to_string(request.ttl.count()));
            for (const auto& [counter, value] : request.guards)
                args.push_back(std::to_string(value));
            auto reply =
                run_script(detail::redis_fill_script, 1 + request.guards.size(), std::move(args));
            return to_integer(reply.get(), "fill") == 1;
        });
    }

    /// Kept until delivered: if the server does not answer now, the batch is replayed before
    /// anything else once it does. Tried even while the circuit is open (one probe at a time):
    /// other processes may reach the server and read what it invalidates.
    void invalidate(const InvalidationBatch& batch) {
        if (batch.empty())
            return;
        health_.keep(batch);
        health_.track([&] {
            auto c = pool_.acquire(Pool::Admission::probe);
            replay(c);
            if (c.probe())
                pool_.close_circuit();
            return true;
        });
    }

    void clear() {
        health_.track([&] {
            auto c = connect();
            clear_on(c);
            return true;
        });
    }

    /// Undelivered invalidation batches waiting for the server (for tests and monitoring).
    std::size_t pending_invalidations() const { return health_.pending(); }

  private:
    using Pool = detail::RedisPool<RedisOptions>;
    using Checkout = Pool::Checkout;

    ReadResult read_once(const ReadRequest& request, std::optional<Ttl> lease_ttl) {
        if (!lease_ttl && !request.key.empty()) {
            if (auto plain = read_plain(request))
                return std::move(*plain);
        }
        std::vector<std::string> args{request.key.empty() ? std::string("\x01") : request.key};
        for (const auto& c : request.counters)
            args.push_back(c);
        const std::string token = lease_ttl ? detail::new_lease_token() : std::string();
        args.push_back(lease_ttl ? std::to_string(std::max<std::int64_t>(1, lease_ttl->count()))
                                 : "0");
        args.push_back(token);
        args.push_back(std::to_string(detail::counter_start()));
        args.push_back(request.key.empty() ? "0" : "1");
        args.emplace_back(request.stamp_prefix);
        auto reply =
            run_script(detail::redis_read_script, 1 + request.counters.size(), std::move(args));
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 3 + request.counters.size()) {
            throw_garbage("read");
        }
        ReadResult result;
        const redisReply* entry = reply->element[0];
        if (entry->type == REDIS_REPLY_STRING) {
            result.value = CacheValue{std::string(entry->str, entry->len), nullptr};
        }
        const redisReply* lease = reply->element[1];
        if (lease->type == REDIS_REPLY_STRING)
            result.lease.assign(lease->str, lease->len);
        result.locked_elsewhere = to_integer(reply->element[2], "read") == 1;
        for (std::size_t i = 0; i < request.counters.size(); ++i) {
            result.counters.push_back(to_integer(reply->element[3 + i], "read"));
        }
        return result;
    }

    /// The hit path: a plain MGET of the entry and its counters (cheaper for the server than
    /// a script). Nothing if a counter is missing: the script creates it.
    std::optional<ReadResult> read_plain(const ReadRequest& request) {
        std::vector<std::string_view> command;
        command.reserve(2 + request.counters.size());
        command.push_back("MGET");
        command.push_back(request.key);
        command.insert(command.end(), request.counters.begin(), request.counters.end());
        auto c = connect();
        auto reply = checked(
            c, [&] { return c->command(command); }, "read");
        if (reply->type != REDIS_REPLY_ARRAY || reply->elements != command.size() - 1)
            throw_garbage("read");
        ReadResult result;
        result.counters.reserve(request.counters.size());
        for (std::size_t i = 1; i < reply->elements; ++i) {
            // Missing, or not a number (corrupt): the script re-creates it.
            const auto value = parse_integer(reply->element[i]);
            if (!value)
                return std::nullopt;
            result.counters.push_back(*value);
        }
        const redisReply* entry = reply->element[0];
        if (entry->type == REDIS_REPLY_STRING) {
            std::string_view bytes(entry->str, entry->len);
            if (bytes.starts_with(detail::lease_marker)) {
                result.locked_elsewhere = true;
            } else {
                result.value = CacheValue{std::string(bytes), nullptr};
            }
        } else if (entry->type != REDIS_REPLY_NIL) {
            throw_garbage("read");
        }
        return result;
    }

    [[noreturn]] void throw_garbage(std::string_view operation) const {
        throw detail::redis_error(pool_.endpoint(), operation, "unexpected reply from the server");
    }

    static std::optional<std::int64_t> parse_integer(const redisReply* r) {
        if (r->type == REDIS_REPLY_INTEGER)
            return r->integer;
        if (r->type == REDIS_REPLY_STRING) {
            std::int64_t value = 0;
            const auto [end, error] = std::from_chars(r->str, r->str + r->len, value);
            if (error == std::errc() && end == r->str + r->len)
                return value;
        }
        return std::nullopt;
    }

    std::int64_t to_integer(const redisReply* r, std::string_view operation) const {
        if (const auto value = parse_integer(r))
            return *value;
        if (r->type == REDIS_REPLY_ERROR)
            throw detail::redis_error(pool_.endpoint(), operation, std::string(r->str, r->len));
        throw_garbage(operation);
    }

    /// A pooled connection on which every undelivered invalidation has been replayed first.
    Checkout connect() {
        auto c = pool_.acquire();
        replay(c);
        return c;
    }

    /// Runs `op` on `c`; an I/O failure trips the circuit breaker before rethrowing.
    template <class Op>
    detail::RedisReply checked(Checkout& c, Op&& op, std::string_view operation) {
        try {
            auto reply = op();
            if (reply->type == REDIS_REPLY_ERROR)
                throw detail::redis_error(pool_.endpoint(), operation,
                                          std::string(reply->str, reply->len));
            return reply;
        } catch (...) {
            if (c->broken())
                pool_.trip();
            throw;
        }
    }

    detail::RedisReply run_script(std::string_view script, std::size_t keys,
                                  std::vector<std::string> args) {
        auto c = connect();
        return eval(c, script, keys, args);
    }

    /// `args`: any range of string-likes (the keys, then the script's arguments).
    template <class Args>
    detail::RedisReply eval(Checkout& c, std::string_view script, std::size_t keys,
                            const Args& args) {
        const std::string sha = sha_of(c, script);
        const std::string key_count = std::to_string(keys);
        std::vector<std::string_view> command{"EVALSHA", sha, key_count};
        command.reserve(3 + std::size(args));
        command.insert(command.end(), std::begin(args), std::end(args));
        try {
            return checked(
                c, [&] { return c->command(command); }, "script");
        } catch (const CacheError& e) {
            if (c->broken() ||
                std::string_view(e.what()).find("NOSCRIPT") == std::string_view::npos)
                throw;
        }
        // The server forgot the script (restart, SCRIPT FLUSH): send it whole.
        command[0] = "EVAL";
        command[1] = script;
        shas_.forget();
        return checked(
            c, [&] { return c->command(command); }, "script");
    }

    std::string sha_of(Checkout& c, std::string_view script) {
        if (auto sha = shas_.find(script))
            return std::move(*sha);
        auto reply = checked(
            c,
            [&] {
                return c->command({"SCRIPT", "LOAD", script});
            },
            "script");
        if (reply->type != REDIS_REPLY_STRING)
            throw_garbage("script");
        std::string sha(reply->str, reply->len);
        shas_.remember(script, sha);
        return sha;
    }

    /// Delivers the invalidations that failed earlier, oldest first.
    void replay(Checkout& c) {
        health_.catch_up([&](const InvalidationBatch& batch) {
            // Views of the batch's keys, not copies: a commit's batch may hold any number.
            const std::string removes = std::to_string(batch.remove.size());
            const std::string start = std::to_string(detail::counter_start());
            std::vector<std::string_view> args;
            args.reserve(batch.remove.size() + batch.bump.size() + 2);
            args.insert(args.end(), batch.remove.begin(), batch.remove.end());
            args.insert(args.end(), batch.bump.begin(), batch.bump.end());
            args.push_back(removes);
            args.push_back(start);
            eval(c, detail::redis_invalidate_script, batch.remove.size() + batch.bump.size(), args);
        });
    }

    void clear_on(Checkout& c) {
        std::string cursor = "0";
        do {
            auto reply = checked(
                c,
                [&] {
                    return c->command(
                        {"SCAN", cursor, "MATCH", glob_escape(prefix_) + "*", "COUNT", "1000"});
                },
                "clear");
            if (reply->type != REDIS_REPLY_ARRAY || reply->elements != 2 ||
                reply->element[0]->type != REDIS_REPLY_STRING ||
                reply->element[1]->type != REDIS_REPLY_ARRAY) {
                throw_garbage("clear");
            }
            cursor.assign(reply->element[0]->str, reply->element[0]->len);
            const redisReply* keys = reply->element[1];
            if (keys->elements > 0) {
                std::vector<std::string> del{"DEL"};
                for (std::size_t i = 0; i < keys->elements; ++i) {
                    del.emplace_back(keys->element[i]->str, keys->element[i]->len);
                }
                checked(
                    c, [&] { return c->command(del); }, "clear");
            }
        } while (cursor != "0");
    }

    static std::string glob_escape(std::string_view text) {
        std::string out;
        for (char ch : text) {
            if (ch == '*' || ch == '?' || ch == '[' || ch == ']' || ch == '\\')
                out += '\\';
            out += ch;
        }
        return out;
    }

    Pool pool_;
    std::string prefix_;
    detail::ServerHealth health_;  // no breaker of its own: the pool's covers the server
    detail::RedisScriptShas shas_;
};

namespace detail {
inline const bool redis_backend_registered = [] {
    const BackendFactory factory = [](const CacheConfig& config) {
        return std::make_unique<AnyBackend>(
            std::make_unique<RedisBackend>(redis_options(config.arguments), config.key_prefix));
    };
    register_backend("redis", factory);
    return true;
}();
}  // namespace detail

}  // namespace ormcache
