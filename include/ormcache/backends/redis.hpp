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
// hears of an outage once (detail::IncidentTracker), stats count every failure.
//
// Thread-safe: a pool of connections, each used by one thread at a time.

#include <sys/time.h>

#include <array>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <mutex>
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
#include "../detail/util/connection_pool.hpp"
#include "../detail/util/percent_decoding.hpp"
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

/// "%40" -> "@": a password in a url may contain any byte, percent-encoded (RFC 3986).
inline std::string url_credential(const std::string& text, std::string_view field) {
    auto decoded = percent_decode(text);
    if (!decoded) {
        throw ConfigError("CacheConfig::arguments.url: bad percent-encoding in the " +
                          std::string(field));
    }
    return std::move(*decoded);
}

/// `url` with its credentials (whatever comes before the last '@') masked: a message may
/// quote a url, never a password.
inline std::string redacted_url(const std::string& url) {
    const auto at = url.rfind('@');
    if (at == std::string::npos)
        return url;
    const auto scheme = url.find("://");
    const auto start = scheme != std::string::npos && scheme < at ? scheme + 3 : 0;
    return url.substr(0, start) + "***" + url.substr(at);
}

inline void redis_url_into(RedisOptions& o, const std::string& url) {
    const std::string_view scheme = "redis://";
    if (url.rfind(scheme, 0) != 0) {
        throw ConfigError(
            "CacheConfig::arguments.url must look like redis://[user:pass@]host:port/db, got '" +
            redacted_url(url) + "'");
    }
    std::string rest = url.substr(scheme.size());
    if (const auto at = rest.rfind('@'); at != std::string::npos) {
        const std::string credentials = rest.substr(0, at);
        rest = rest.substr(at + 1);
        // "user:pass@", ":pass@" or "pass@" (no colon: a password for the default user, as
        // redis-cli -u and most clients read it).
        if (const auto colon = credentials.find(':'); colon != std::string::npos) {
            o.username = url_credential(credentials.substr(0, colon), "user name");
            o.password = url_credential(credentials.substr(colon + 1), "password");
        } else {
            o.password = url_credential(credentials, "password");
        }
    }
    if (const auto slash = rest.find('/'); slash != std::string::npos) {
        const std::string db = rest.substr(slash + 1);
        rest = rest.substr(0, slash);
        if (!db.empty()) {
            try {
                std::size_t used = 0;
                o.db = std::stoi(db, &used);
                if (used != db.size() || o.db < 0)
                    throw std::invalid_argument(db);
            } catch (const std::exception&) {
                throw ConfigError("CacheConfig::arguments.url: database '" + db +
                                  "' is not a number");
            }
        }
    }
    if (const auto colon = rest.rfind(':'); colon != std::string::npos) {
        const std::string port = rest.substr(colon + 1);
        rest = rest.substr(0, colon);
        try {
            std::size_t used = 0;
            o.port = std::stoi(port, &used);
            if (used != port.size() || o.port <= 0 || o.port > 65535)
                throw std::invalid_argument(port);
        } catch (const std::exception&) {
            throw ConfigError("CacheConfig::arguments.url: port '" + port +
                              "' is not a port number");
        }
    }
    if (!rest.empty())
        o.host = rest;
}

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

namespace detail {

inline timeval to_timeval(std::chrono::milliseconds ms) {
    timeval tv{};
    tv.tv_sec = static_cast<decltype(tv.tv_sec)>(ms.count() / 1000);
    tv.tv_usec = static_cast<decltype(tv.tv_usec)>((ms.count() % 1000) * 1000);
    return tv;
}

struct RedisContextDeleter {
    void operator()(redisContext* c) const noexcept { redisFree(c); }
};
struct RedisReplyDeleter {
    void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using RedisReply = std::unique_ptr<redisReply, RedisReplyDeleter>;

/// Which server `o` talks to, for messages: "127.0.0.1:6379 (db 0)", or
/// "unix socket /run/redis.sock (db 0)". Never the password.
inline std::string redis_endpoint(const RedisOptions& o) {
    const std::string server = o.unix_socket.empty() ? o.host + ":" + std::to_string(o.port)
                                                     : "unix socket " + o.unix_socket;
    return server + " (db " + std::to_string(o.db) + ")";
}

/// The one place a hiredis failure becomes an error. `endpoint` is redis_endpoint(): an
/// on_error message must say which server failed.
inline CacheError redis_error(std::string_view endpoint, std::string_view operation,
                              std::string_view what) {
    return CacheError("redis " + std::string(operation) + " on " + std::string(endpoint) + ": " +
                          std::string(what),
                      "redis", std::string(operation));
}

[[noreturn]] inline void throw_redis(std::string_view endpoint, std::string_view operation,
                                     std::string_view what) {
    throw redis_error(endpoint, operation, what);
}

/// One connection. Any I/O or protocol error marks it broken (hiredis cannot reuse it).
class RedisConnection {
  public:
    explicit RedisConnection(const RedisOptions& o) : endpoint_(redis_endpoint(o)) {
        redisContext* c =
            o.unix_socket.empty()
                ? redisConnectWithTimeout(o.host.c_str(), o.port, to_timeval(o.connect_timeout))
                : redisConnectUnixWithTimeout(o.unix_socket.c_str(), to_timeval(o.connect_timeout));
        context_.reset(c);
        if (c == nullptr)
            throw_redis(endpoint_, "connect", "cannot allocate a context");
        if (c->err != 0)
            throw_redis(endpoint_, "connect", c->errstr);
        if (redisSetTimeout(c, to_timeval(o.socket_timeout)) != REDIS_OK)
            throw_redis(endpoint_, "connect", c->errstr);
        if (!o.password.empty()) {
            std::vector<std::string> auth{"AUTH"};
            if (!o.username.empty())
                auth.push_back(o.username);
            auth.push_back(o.password);
            expect_ok(command(auth), "auth");
        }
        if (o.db != 0)
            expect_ok(command({"SELECT", std::to_string(o.db)}), "select");
    }

    bool broken() const noexcept { return broken_; }

    /// Sends one command and reads its reply: one round trip. The arguments (any range of
    /// string-likes) are passed to hiredis as pointers and lengths, never copied here.
    template <class Args>
    RedisReply command(const Args& args) {
        // Up to 16 arguments (every hit and fill) need no heap for the argv arrays.
        constexpr std::size_t inline_count = 16;
        const std::size_t count = std::size(args);
        std::array<const char*, inline_count> inline_argv;
        std::array<std::size_t, inline_count> inline_lengths;
        std::vector<const char*> heap_argv;
        std::vector<std::size_t> heap_lengths;
        const char** argv = inline_argv.data();
        std::size_t* lengths = inline_lengths.data();
        if (count > inline_count) {
            heap_argv.resize(count);
            heap_lengths.resize(count);
            argv = heap_argv.data();
            lengths = heap_lengths.data();
        }
        std::size_t i = 0;
        for (const auto& a : args) {
            argv[i] = std::data(a);
            lengths[i] = std::size(a);
            ++i;
        }
        if (redisAppendCommandArgv(context_.get(), static_cast<int>(count), argv, lengths) !=
            REDIS_OK) {
            fail("send");
        }
        void* reply = nullptr;
        if (redisGetReply(context_.get(), &reply) != REDIS_OK || reply == nullptr)
            fail("receive");
        return RedisReply(static_cast<redisReply*>(reply));
    }

    RedisReply command(std::initializer_list<std::string_view> args) {
        return command<std::initializer_list<std::string_view>>(args);
    }

  private:
    [[noreturn]] void fail(std::string_view operation) {
        broken_ = true;
        throw_redis(endpoint_, operation,
                    context_->errstr[0] != '\0' ? context_->errstr : "connection lost");
    }

    void expect_ok(const RedisReply& r, std::string_view operation) const {
        if (r->type == REDIS_REPLY_ERROR)
            throw_redis(endpoint_, operation, std::string(r->str, r->len));
    }

    std::string endpoint_;  // redis_endpoint() of the options, for messages
    std::unique_ptr<redisContext, RedisContextDeleter> context_;
    bool broken_ = false;
};

/// At most pool_size connections to the server; a checkout waits up to socket_timeout for one.
/// A failed connect, or trip() after an I/O failure, opens the circuit for retry_interval.
class RedisPool : public ConnectionPool<RedisConnection> {
  public:
    explicit RedisPool(RedisOptions options)
        : ConnectionPool(
              {.max_open = options.pool_size,
               .max_idle = options.pool_size,
               .wait = options.socket_timeout,
               .retry_interval = options.retry_interval},
              [this] { return std::make_unique<RedisConnection>(options_); },
              [this](PoolRefusal refusal, std::string_view why) {
                  return redis_error(endpoint_, "connect", refusal_text(refusal, why));
              }),
          options_(std::move(options)),
          endpoint_(redis_endpoint(options_)) {}

    const RedisOptions& options() const noexcept { return options_; }
    /// redis_endpoint(options()), for messages.
    const std::string& endpoint() const noexcept { return endpoint_; }

  private:
    std::string refusal_text(PoolRefusal refusal, std::string_view why) const {
        switch (refusal) {
            case PoolRefusal::busy:
                return "all " + std::to_string(options_.pool_size) + " pooled connections are busy";
            case PoolRefusal::circuit_open:
                return "server unavailable (circuit open, retrying later)";
            case PoolRefusal::open_failed:
                break;
        }
        return std::string(why);
    }

    const RedisOptions options_;
    const std::string endpoint_;  // redis_endpoint(options_), for messages
};

}  // namespace detail

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
            auto reply = run_script(fill_script, 1 + request.guards.size(), std::move(args));
            return to_integer(reply.get(), "fill") == 1;
        });
    }

    /// Kept until delivered: if the server does not answer now, the batch is replayed before
    /// anything else once it does.
    void invalidate(const InvalidationBatch& batch) {
        if (batch.empty())
            return;
        health_.keep(batch);
        health_.track([&] {
            auto c = pool_.acquire();
            replay(c);
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
    // KEYS[1] entry (ARGV[4] = "0": none), KEYS[2..] counters.
    // ARGV: lease ttl ms (0 = none), lease token, counter start, has-entry flag, stamp prefix.
    // Returns {entry, lease taken, locked elsewhere (0/1), counters...}. An entry that does not
    // carry the current counters[0] stamp (when a stamp prefix is given) is stale: it is not
    // returned, and a lease asked for is taken over it.
    //
    // Every script reads through get() and counter(): a key of another type (WRONGTYPE) or a
    // counter that is not a number is corrupt; it is replaced, never left to fail every call
    // (and every replay of an invalidation) from then on.
    static constexpr std::string_view read_script = R"lua(
local function get(k)
  local v = redis.pcall('GET', k)
  if type(v) == 'table' then redis.call('DEL', k) return false end
  return v
end
local function counter(k, start)
  local v = get(k)
  if not v or not string.match(v, '^%-?%d+$') then redis.call('SET', k, start) return start end
  return v
end
local n = #KEYS
local ttl, token, start, has_entry, stamp = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local out = {false, false, 0}
for i = 2, n do
  out[i + 2] = counter(KEYS[i], start)
end
if has_entry == '1' then
  local e = get(KEYS[1])
  local stale = false
  if e then
    if string.sub(e, 1, 7) == '\0lease:' then
      out[3] = 1
    elseif stamp ~= '' and n >= 2 and string.sub(e, 1, #stamp + #out[4] + 1) ~= stamp .. out[4] .. ' ' then
      stale = true
    else
      out[1] = e
    end
  end
  if ttl > 0 then
    if stale then
      redis.call('SET', KEYS[1], '\0lease:' .. token, 'PX', ttl)
      out[2] = token
    elseif not e and redis.call('SET', KEYS[1], '\0lease:' .. token, 'PX', ttl, 'NX') then
      out[2] = token
    end
  end
end
return out
)lua";

    // KEYS[1] entry, KEYS[2..] guard counters.
    // ARGV: lease token ('' = none), value, ttl ms (< 0 = none), expected counter values.
    static constexpr std::string_view fill_script = R"lua(
local function get(k)
  local v = redis.pcall('GET', k)
  if type(v) == 'table' then redis.call('DEL', k) return false end
  return v
end
local lease, value, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
if lease ~= '' and get(KEYS[1]) ~= '\0lease:' .. lease then return 0 end
for i = 2, #KEYS do
  if get(KEYS[i]) ~= ARGV[i + 2] then
    if lease ~= '' then redis.call('DEL', KEYS[1]) end
    return 0
  end
end
if ttl < 0 then
  redis.call('SET', KEYS[1], value)
elseif ttl == 0 then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], value, 'PX', ttl)
end
return 1
)lua";

    // KEYS: entries to delete, then counters to bump. ARGV: number of entries, counter start.
    static constexpr std::string_view invalidate_script = R"lua(
local function get(k)
  local v = redis.pcall('GET', k)
  if type(v) == 'table' then redis.call('DEL', k) return false end
  return v
end
local removes, start = tonumber(ARGV[1]), ARGV[2]
for i = 1, #KEYS do
  if i <= removes then
    redis.call('DEL', KEYS[i])
  else
    local v = get(KEYS[i])
    if not v or not string.match(v, '^%-?%d+$') then redis.call('SET', KEYS[i], start) end
    redis.call('INCR', KEYS[i])
  end
end
return 1
)lua";

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
        auto reply = run_script(read_script, 1 + request.counters.size(), std::move(args));
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
        detail::throw_redis(pool_.endpoint(), operation, "unexpected reply from the server");
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
            detail::throw_redis(pool_.endpoint(), operation, std::string(r->str, r->len));
        throw_garbage(operation);
    }

    /// A pooled connection on which every undelivered invalidation has been replayed first.
    detail::RedisPool::Checkout connect() {
        auto c = pool_.acquire();
        replay(c);
        return c;
    }

    /// Runs `op` on `c`; an I/O failure trips the circuit breaker before rethrowing.
    template <class Op>
    detail::RedisReply checked(detail::RedisPool::Checkout& c, Op&& op,
                               std::string_view operation) {
        try {
            auto reply = op();
            if (reply->type == REDIS_REPLY_ERROR)
                detail::throw_redis(pool_.endpoint(), operation,
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
    detail::RedisReply eval(detail::RedisPool::Checkout& c, std::string_view script,
                            std::size_t keys, const Args& args) {
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
        forget_shas();
        return checked(
            c, [&] { return c->command(command); }, "script");
    }

    std::string sha_of(detail::RedisPool::Checkout& c, std::string_view script) {
        {
            std::lock_guard lock(sha_mutex_);
            for (const auto& [text, sha] : shas_) {
                if (text == script.data())
                    return sha;
            }
        }
        auto reply = checked(
            c,
            [&] {
                return c->command({"SCRIPT", "LOAD", script});
            },
            "script");
        if (reply->type != REDIS_REPLY_STRING)
            throw_garbage("script");
        std::string sha(reply->str, reply->len);
        std::lock_guard lock(sha_mutex_);
        shas_.emplace_back(script.data(), sha);
        return sha;
    }

    void forget_shas() {
        std::lock_guard lock(sha_mutex_);
        shas_.clear();
    }

    /// Delivers the invalidations that failed earlier, oldest first.
    void replay(detail::RedisPool::Checkout& c) {
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
            eval(c, invalidate_script, batch.remove.size() + batch.bump.size(), args);
        });
    }

    void clear_on(detail::RedisPool::Checkout& c) {
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

    detail::RedisPool pool_;
    std::string prefix_;
    detail::ServerHealth health_;  // no breaker of its own: the pool's covers the server

    std::mutex sha_mutex_;  // guards shas_
    std::vector<std::pair<const char*, std::string>> shas_;
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
