#pragma once
// The memcached backend, on libmemcached: a cache shared by every process of an application,
// spread over one or more memcached servers. Include this header and link ormcache::memcached;
// then CacheConfig::backend = "memcached" (or the seed's "dogpile.cache.memcached") works.
//
// Same semantics as the Redis backend (redis.hpp), built from memcached's own atomic steps
// since it has no scripts:
//  - read:       one multi-get (gets) of the entry and its counters, all servers at once; a
//                missing counter is created with `add` of the clock (µs), a lease is an
//                `add key "\0lease:<token>"` (or a `cas` over a stale entry);
//  - fill:       gets the entry and the guard counters, check that the entry still holds our
//                lease and every counter is unchanged, then `cas` with the CAS id just read.
//                The invalidator bumps counters and deletes keys: every interleaving either
//                fails the guard check (a bumped counter) or the cas (a deleted lease);
//  - invalidate: per server, every incr then every delete pipelined in one request on our
//                own connection (detail/memcached/memcached_socket.hpp), every reply read: known
//                delivered, in one round trip per server whatever the number of keys (a
//                counter found missing is then added from the clock: one more).
//
// Keys are spread by consistent hashing (ketama), so adding a server moves few keys. A dead
// server is NOT ejected: ejecting would move its keys to another server and back when it
// returns, which can serve stale entries. Its keys are misses instead (fail open, counted as
// errors), and a per-server circuit breaker stops paying its timeout on every call. What
// could not be delivered to a server is kept per server and replayed before anything else is
// done on it once it answers (a server that was unreachable, not restarted, still holds the
// entries those invalidations were meant to remove).
//
// memcached keys are at most 250 bytes with no spaces or control characters; any other key
// is sent as a readable head plus the SHA-256 of the whole key, and its entries carry the
// whole key, so two keys can never read each other's entry. Every key sent starts with the
// key prefix (or, if memcached would refuse the prefix itself, a hash of it): clear() lists
// each server's keys with the LRU crawler and deletes only those, leaving other
// applications' entries on shared servers alone.
//
// Thread-safe: a pool of libmemcached handles, and per server a pool of our own connections,
// each used by one thread at a time.

#include <libmemcached/memcached.h>

#include <algorithm>
#include <atomic>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <ctime>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../backend.hpp"
#include "../detail/cache/backend_arguments.hpp"
#include "../detail/cache/lease_token.hpp"
#include "../detail/cache/lock_wait.hpp"
#include "../detail/cache/server_health.hpp"
#include "../detail/memcached/memcached_socket.hpp"
#include "../detail/util/connection_pool.hpp"
#include "../detail/util/percent_decoding.hpp"
#include "../detail/util/sha256.hpp"
#include "../errors.hpp"

namespace ormcache {

/// Memcached settings: the typed form of CacheConfig::arguments (docs/reference.md, section
/// 3.4). An aggregate: append only. `CacheConfig{.backend = "memcached", .arguments =
/// MemcachedOptions{.servers = {"10.0.0.1:11211"}}}` works through to_json() below.
struct MemcachedOptions {
    /// "host:port", "host" (port 11211) or "[v6]:port" of every server (JSON `url`); keys are
    /// spread over them. Empty is a ConfigError; read back as "host:port".
    std::vector<std::string> servers{"127.0.0.1:11211"};
    /// Longest connect (>= 1 ms). JSON `connect_timeout_ms`.
    std::chrono::milliseconds connect_timeout{500};
    /// Longest wait for a reply (and for a free pooled handle), >= 1 ms. JSON
    /// `socket_timeout_ms`.
    std::chrono::milliseconds socket_timeout{500};
    std::size_t pool_size = 8;  ///< most handles in use at once (each may connect to every server)
    /// Concurrent misses of one key across processes run one query (docs/reference.md,
    /// cache rule 9).
    bool distributed_lock = false;
    /// With distributed_lock: how long a lock lives (a dead holder's is released then) and
    /// the longest a reader waits for one (>= 1 ms). JSON `lock_timeout_ms`.
    std::chrono::milliseconds lock_timeout{5000};
    /// How long a server's circuit stays open after a failure before one retry; 0 = every
    /// call tries again. JSON `retry_interval_ms`.
    std::chrono::milliseconds retry_interval{1000};

    friend bool operator==(const MemcachedOptions&, const MemcachedOptions&) = default;
};

namespace detail {

// ---- configuration -----------------------------------------------------------------------

struct MemcachedAddress {
    std::string host;
    int port = 11211;
};

/// "host:port", "host" (port 11211) or "[v6]:port".
inline MemcachedAddress memcached_address(const std::string& text) {
    MemcachedAddress a;
    std::string rest = text;
    std::string port;
    if (rest.starts_with('[')) {
        const auto close = rest.find(']');
        if (close == std::string::npos) {
            throw ConfigError("CacheConfig::arguments.url: '" + text + "' has no closing ']'");
        }
        a.host = rest.substr(1, close - 1);
        if (close + 1 < rest.size()) {
            if (rest[close + 1] != ':') {
                throw ConfigError("CacheConfig::arguments.url: '" + text + "' must be [host]:port");
            }
            port = rest.substr(close + 2);
            if (port.empty())
                throw ConfigError("CacheConfig::arguments.url: '" + text + "' has an empty port");
        }
    } else if (const auto colon = rest.rfind(':'); colon != std::string::npos) {
        a.host = rest.substr(0, colon);
        port = rest.substr(colon + 1);
        if (port.empty())
            throw ConfigError("CacheConfig::arguments.url: '" + text + "' has an empty port");
    } else {
        a.host = rest;
    }
    if (a.host.empty())
        throw ConfigError("CacheConfig::arguments.url: '" + text + "' has no host");
    if (!port.empty()) {
        const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), a.port);
        if (error != std::errc() || end != port.data() + port.size() || a.port <= 0 ||
            a.port > 65535) {
            throw ConfigError("CacheConfig::arguments.url: port '" + port + "' of '" + text +
                              "' is not a port number");
        }
    }
    return a;
}

/// `url`: the seed writes a list of "host:port"; one server may also be a plain string.
inline void memcached_url_from_json(MemcachedOptions& o, const nlohmann::json& v) {
    const nlohmann::json list = v.is_string() ? nlohmann::json::array({v}) : v;
    if (!list.is_array() || list.empty()) {
        throw ConfigError(
            "CacheConfig::arguments.url must be a non-empty list of \"host:port\" "
            "strings, got " +
            v.dump());
    }
    o.servers.clear();
    for (const auto& item : list) {
        if (!item.is_string()) {
            throw ConfigError(
                "CacheConfig::arguments.url: every server must be a \"host:port\" string, got " +
                item.dump());
        }
        const auto a = memcached_address(item.get<std::string>());
        const std::string canonical = a.host + ":" + std::to_string(a.port);
        if (std::find(o.servers.begin(), o.servers.end(), canonical) != o.servers.end())
            throw ConfigError("CacheConfig::arguments.url lists " + canonical + " twice");
        o.servers.push_back(canonical);
    }
}

inline nlohmann::json memcached_url_to_json(const MemcachedOptions& o) {
    return o.servers;
}

/// The memcached backend's arguments: JSON name, member, range (docs/reference.md, section
/// 3.4).
template <>
struct OptionTable<MemcachedOptions> {
    static constexpr std::string_view backend = "memcached";
    static constexpr auto fields = std::tuple{
        field<MemcachedOptions>("url", &memcached_url_from_json, &memcached_url_to_json),
        field("connect_timeout_ms", &MemcachedOptions::connect_timeout,
              {.min = 1, .max = max_argument_ms}),
        field("socket_timeout_ms", &MemcachedOptions::socket_timeout,
              {.min = 1, .max = max_argument_ms}),
        field("pool_size", &MemcachedOptions::pool_size, {.min = 1, .max = 4096}),
        field("distributed_lock", &MemcachedOptions::distributed_lock),
        field("lock_timeout_ms", &MemcachedOptions::lock_timeout,
              {.min = 1, .max = max_argument_ms}),
        field("retry_interval_ms", &MemcachedOptions::retry_interval, {.max = max_argument_ms}),
    };
};

inline MemcachedOptions memcached_options(const nlohmann::json& args) {
    return read_options<MemcachedOptions>(args);
}

}  // namespace detail

/// MemcachedOptions as CacheConfig::arguments (found by ADL: `nlohmann::json j = options;`).
inline void to_json(nlohmann::json& j, const MemcachedOptions& o) {
    j = detail::options_to_json(o);
}

/// CacheConfig::arguments as MemcachedOptions (`j.get<MemcachedOptions>()`); ConfigError when
/// invalid.
inline void from_json(const nlohmann::json& j, MemcachedOptions& o) {
    o = detail::read_options<MemcachedOptions>(j);
}

namespace detail {

// ---- keys and values ---------------------------------------------------------------------

/// memcached's limit on key length (bytes).
inline constexpr std::size_t memcached_max_key = 250;
/// ':' and 64 hex digits of SHA-256, at the end of a shortened key.
inline constexpr std::size_t memcached_hash_suffix = 65;

/// Ends in ':' + 64 lowercase hex digits, like every shortened key. Such a key is shortened
/// too, even if it would fit: then no key sent as is can equal another key's shortened form.
inline bool memcached_looks_shortened(std::string_view key) {
    if (key.size() < memcached_hash_suffix || key[key.size() - memcached_hash_suffix] != ':')
        return false;
    return std::all_of(key.end() - 64, key.end(),
                       [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

inline bool memcached_key_char(char c) {
    const auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u < 0x7f;  // printable ASCII, no space
}

/// The key as memcached gets it.
struct MemcachedKey {
    std::string wire;
    /// The wire key is a shortened form: entries stored there carry the whole key.
    bool shortened = false;
};

/// How the keys under one key prefix become memcached keys. Every wire key starts with
/// head(), which stands for the prefix, so that clear() can tell this prefix's keys from
/// other applications' among everything a server lists:
///  - the head is the prefix itself when memcached takes it as it is and it leaves room for
///    a hash after it; keys that fit then go as they are;
///  - otherwise it is "#" + 32 hex digits of the prefix's SHA-256 + ":", and every key is
///    shortened.
/// A shortened key is the head, a readable rest (the key after the prefix, forbidden bytes
/// replaced, cut to fit) and ":" + the SHA-256 of the whole key.
class MemcachedKeyspace {
  public:
    explicit MemcachedKeyspace(std::string prefix = {}) : prefix_(std::move(prefix)) {
        const bool usable = prefix_.size() <= memcached_max_key - memcached_hash_suffix &&
                            std::all_of(prefix_.begin(), prefix_.end(), memcached_key_char);
        head_ = usable ? prefix_ : "#" + sha256_hex(prefix_).substr(0, 32) + ":";
    }

    MemcachedKey key(std::string_view key) const {
        const bool under_prefix = key.starts_with(prefix_);
        if (under_prefix && head_ == prefix_ && !key.empty() && key.size() <= memcached_max_key &&
            std::all_of(key.begin(), key.end(), memcached_key_char) &&
            !memcached_looks_shortened(key)) {
            return {std::string(key), false};
        }
        const std::string_view rest = under_prefix ? key.substr(prefix_.size()) : key;
        MemcachedKey out{head_, true};
        out.wire.reserve(memcached_max_key);
        const std::size_t room = memcached_max_key - memcached_hash_suffix - head_.size();
        for (char c : rest.substr(0, room))
            out.wire += memcached_key_char(c) ? c : '_';
        out.wire += ':';
        out.wire += sha256_hex(key);
        return out;
    }

    /// `wire` (as a server lists it) is one of this prefix's keys. Like a prefix match in
    /// Redis, it also holds for the keys of a longer prefix that starts with this one.
    bool owns(std::string_view wire) const noexcept { return wire.starts_with(head_); }

    /// What every wire key of this prefix starts with.
    const std::string& head() const noexcept { return head_; }

  private:
    std::string prefix_;
    std::string head_;
};

/// The bytes stored for `value` at `key`: as is, or "<size>\n<key><value>" under a
/// shortened key.
inline std::string memcached_wrap(const MemcachedKey& wire, std::string_view key,
                                  std::string_view value) {
    if (!wire.shortened)
        return std::string(value);
    std::string out = std::to_string(key.size());
    out += '\n';
    out += key;
    out += value;
    return out;
}

/// The value stored for `key`, or nothing if the bytes belong to another key (or are not
/// wrapped at all): under a shortened key, anything else is a miss.
inline std::optional<std::string_view> memcached_unwrap(const MemcachedKey& wire,
                                                        std::string_view key,
                                                        std::string_view stored) {
    if (!wire.shortened)
        return stored;
    const auto newline = stored.find('\n');
    if (newline == std::string_view::npos)
        return std::nullopt;
    std::size_t size = 0;
    const auto [end, error] = std::from_chars(stored.data(), stored.data() + newline, size);
    if (error != std::errc() || end != stored.data() + newline || size != key.size())
        return std::nullopt;
    stored.remove_prefix(newline + 1);
    if (!stored.starts_with(key))
        return std::nullopt;
    stored.remove_prefix(key.size());
    return stored;
}

/// memcached's exptime for a TTL: whole seconds rounded up (at least 1), 0 for never, and an
/// absolute Unix time past 30 days, since memcached reads any larger number as one.
inline time_t memcached_expiration(Ttl ttl, std::time_t now = std::time(nullptr)) {
    constexpr std::int64_t relative_limit = 60 * 60 * 24 * 30;
    if (ttl.count() < 0)
        return 0;
    const std::int64_t seconds = std::max<std::int64_t>(1, (ttl.count() + 999) / 1000);
    if (seconds > relative_limit)
        return static_cast<time_t>(now + seconds);
    return static_cast<time_t>(seconds);
}

// ---- handles -----------------------------------------------------------------------------

/// The one place a memcached failure becomes an error. `servers` is the server that failed
/// ("10.0.0.2:11211"), or for a failure that is no one server's the list of them all
/// ("127.0.0.1:11211, 10.0.0.2:11211"), so that on_error says which cache it was.
inline CacheError memcached_error(std::string_view servers, std::string_view operation,
                                  std::string_view what) {
    return CacheError("memcached " + std::string(operation) + " on " + std::string(servers) + ": " +
                          std::string(what),
                      "memcached", std::string(operation));
}

[[noreturn]] inline void throw_memcached(std::string_view servers, std::string_view operation,
                                         std::string_view what) {
    throw memcached_error(servers, operation, what);
}

/// "127.0.0.1:11211, 10.0.0.2:11211".
inline std::string memcached_server_list(const std::vector<MemcachedAddress>& servers) {
    std::string out;
    for (const auto& s : servers)
        out += (out.empty() ? "" : ", ") + s.host + ":" + std::to_string(s.port);
    return out;
}

struct MemcachedDeleter {
    void operator()(memcached_st* m) const noexcept { memcached_free(m); }
};
using MemcachedHandle = std::unique_ptr<memcached_st, MemcachedDeleter>;

/// A bounded pool of libmemcached handles, clones of one configured master. A handle knows
/// every server and reconnects by itself, so none is ever thrown away. (Ours rather than
/// libmemcachedutil's memcached_pool, whose wait has whole-second granularity.)
class MemcachedPool : public ConnectionPool<memcached_st, MemcachedDeleter> {
  public:
    MemcachedPool(const MemcachedOptions& o, const std::vector<MemcachedAddress>& servers)
        : ConnectionPool(
              {.max_open = o.pool_size, .max_idle = o.pool_size, .wait = o.socket_timeout},
              [this] { return clone(); },
              [this, size = o.pool_size](PoolRefusal refusal, std::string_view why) {
                  return memcached_error(
                      servers_, "connect",
                      refusal == PoolRefusal::busy
                          ? "all " + std::to_string(size) + " pooled handles are busy"
                          : std::string(why));
              }),
          servers_(memcached_server_list(servers)),
          master_(memcached_create(nullptr)) {
        if (!master_)
            throw_memcached(servers_, "connect", "cannot allocate a handle");
        for (const auto& s : servers) {
            const auto rc =
                memcached_server_add(master_.get(), s.host.c_str(), static_cast<in_port_t>(s.port));
            if (memcached_failed(rc)) {
                throw ConfigError("CacheConfig::arguments.url: cannot use server " + s.host + ":" +
                                  std::to_string(s.port) + ": " +
                                  memcached_strerror(master_.get(), rc));
            }
        }
        const auto ms = [](std::chrono::milliseconds d) {
            return static_cast<std::uint64_t>(d.count());
        };
        const std::pair<memcached_behavior_t, std::uint64_t> behaviors[] = {
            // ketama: a server added or gone moves only its share of the keys. The hashes
            // first: setting the distribution builds the continuum with them.
            {MEMCACHED_BEHAVIOR_KETAMA_HASH, MEMCACHED_HASH_MD5},
            {MEMCACHED_BEHAVIOR_HASH, MEMCACHED_HASH_MD5},
            {MEMCACHED_BEHAVIOR_DISTRIBUTION, MEMCACHED_DISTRIBUTION_CONSISTENT_KETAMA},
            // Never eject: see the file comment.
            {MEMCACHED_BEHAVIOR_REMOVE_FAILED_SERVERS, 0},
            // Every read is a `gets`: fill needs the CAS id of what it read.
            {MEMCACHED_BEHAVIOR_SUPPORT_CAS, 1},
            // Non-blocking sockets: the only mode in which the connect timeout applies.
            {MEMCACHED_BEHAVIOR_NO_BLOCK, 1},
            {MEMCACHED_BEHAVIOR_TCP_NODELAY, 1},
            {MEMCACHED_BEHAVIOR_CONNECT_TIMEOUT, ms(o.connect_timeout)},
            {MEMCACHED_BEHAVIOR_POLL_TIMEOUT, ms(o.socket_timeout)},
            {MEMCACHED_BEHAVIOR_SND_TIMEOUT, ms(o.socket_timeout) * 1000},
            {MEMCACHED_BEHAVIOR_RCV_TIMEOUT, ms(o.socket_timeout) * 1000},
            // libmemcached's own back-off counts whole seconds; ours (retry_interval) decides.
            {MEMCACHED_BEHAVIOR_RETRY_TIMEOUT, 0},
        };
        for (const auto& [behavior, value] : behaviors) {
            const auto rc = memcached_behavior_set(master_.get(), behavior, value);
            if (memcached_failed(rc))
                throw_memcached(servers_, "connect", memcached_strerror(master_.get(), rc));
        }
    }

    /// For routing only (no I/O): which server position a wire key maps to.
    std::uint32_t position_of(std::string_view wire) const {
        return memcached_generate_hash(master_.get(), wire.data(), wire.size());
    }

    const memcached_st* master() const noexcept { return master_.get(); }

  private:
    /// Copies the master's settings and server list (no I/O: handles connect on first use).
    MemcachedHandle clone() {
        std::lock_guard lock(master_mutex_);  // memcached_clone reads the master
        MemcachedHandle h(memcached_clone(nullptr, master_.get()));
        if (!h)
            throw_memcached(servers_, "connect", "cannot allocate a handle");
        return h;
    }

    const std::string servers_;  // memcached_server_list(), for messages
    MemcachedHandle master_;     // configured once, then only cloned and hashed with
    std::mutex master_mutex_;    // serializes clones of master_
};

}  // namespace detail

class MemcachedBackend {
  public:
    static constexpr bool stores_objects = false;

    MemcachedBackend(MemcachedOptions options, std::string key_prefix)
        : options_(std::move(options)),
          keys_(std::move(key_prefix)),
          pool_(options_, addresses(options_)) {
        for (const auto& address : options_.servers)
            servers_.push_back(std::make_unique<Server>(address, options_.retry_interval));
        // Our per-server state is indexed by libmemcached's server positions: check they
        // follow the order the servers were added in.
        for (std::uint32_t i = 0; i < servers_.size(); ++i) {
            const auto* instance = memcached_server_instance_by_position(pool_.master(), i);
            const std::string name = std::string(memcached_server_name(instance)) + ":" +
                                     std::to_string(memcached_server_port(instance));
            if (instance == nullptr || name != servers_[i]->address) {
                throw ConfigError("CacheConfig::arguments.url: libmemcached reordered the servers");
            }
        }
    }

    std::string_view name() const noexcept { return "memcached"; }
    const MemcachedOptions& options() const noexcept { return options_; }

    ReadResult read(const ReadRequest& request) {
        return detail::read_with_lock(
            request, options_.distributed_lock, options_.lock_timeout,
            [&](std::optional<Ttl> lease_ttl) { return read_once(request, lease_ttl); });
    }

    bool fill(const FillRequest& request) {
        auto h = pool_.acquire();
        const auto wire = keys_.key(request.key);
        const std::size_t server = server_of(wire.wire);
        if (request.lease.empty() && request.guards.empty()) {
            store(h, server, wire, request.key, request.value.bytes, request.ttl);
            return true;
        }
        std::vector<std::string> keys;
        std::vector<std::size_t> servers;
        if (!request.lease.empty()) {
            keys.push_back(wire.wire);
            servers.push_back(server);
        }
        for (const auto& [counter, expected] : request.guards) {
            keys.push_back(keys_.key(counter).wire);
            servers.push_back(server_of(keys.back()));
        }
        const auto items = multi_get(h, keys, servers, "fill");
        std::uint64_t cas = 0;
        if (!request.lease.empty()) {
            const auto& entry = items.front();
            const auto held =
                entry ? detail::memcached_unwrap(wire, request.key, entry->value) : std::nullopt;
            if (!held || *held != lease_marker_of(request.lease))
                return false;  // invalidated
            cas = entry->cas;
        }
        const std::size_t first_guard = request.lease.empty() ? 0 : 1;
        for (std::size_t i = 0; i < request.guards.size(); ++i) {
            const auto& item = items[first_guard + i];
            if (!item || parse_counter(item->value) != std::optional(request.guards[i].second)) {
                // Give the lease back, so that the next reader can fill.
                if (!request.lease.empty())
                    remove_key(h, server, wire.wire);
                return false;
            }
        }
        if (request.lease.empty()) {
            store(h, server, wire, request.key, request.value.bytes, request.ttl);
            return true;
        }
        if (request.ttl.count() == 0) {  // expires at once: the lease simply goes
            remove_key(h, server, wire.wire);
            return true;
        }
        const std::string bytes = detail::memcached_wrap(wire, request.key, request.value.bytes);
        const auto rc =
            memcached_cas(h.get(), wire.wire.data(), wire.wire.size(), bytes.data(), bytes.size(),
                          detail::memcached_expiration(request.ttl), 0, cas);
        // DATA_EXISTS / NOTFOUND: an invalidation deleted the lease (or a reader replaced it)
        // since we read it.
        if (rc == MEMCACHED_DATA_EXISTS || rc == MEMCACHED_NOTFOUND)
            return false;
        check(h, server, rc, "fill");
        return true;
    }

    /// Kept per server until delivered: a server that does not answer now gets its part
    /// replayed before anything else once it does.
    void invalidate(const InvalidationBatch& batch) {
        if (batch.empty())
            return;
        std::vector<InvalidationBatch> parts(servers_.size());
        for (const auto& key : batch.remove) {
            auto& part = parts[server_of(keys_.key(key).wire)];
            part.remove.push_back(key);
        }
        for (const auto& counter : batch.bump)
            parts[server_of(keys_.key(counter).wire)].bump.push_back(counter);
        for (std::size_t s = 0; s < parts.size(); ++s) {
            // A part folded (too much waiting) bumps these instead of deleting its keys.
            if (!parts[s].remove.empty())
                parts[s].fallback_bump = batch.fallback_bump;
            servers_[s]->health.keep(parts[s]);
        }
        std::optional<CacheError> failure;
        for (std::size_t s = 0; s < parts.size(); ++s) {
            if (parts[s].empty())
                continue;
            try {
                prepare(s);
            } catch (const CacheError& e) {
                if (!failure)
                    failure = e;  // the other servers still get theirs
            }
        }
        if (failure)
            throw *failure;
    }

    /// Drops every key under key_prefix on every server, and nothing else: memcached
    /// cannot delete by prefix, so each server lists its keys (`lru_crawler metadump`) and
    /// ours are deleted, until a listing finds none left (a listing can miss keys that move
    /// while it runs). Counters go too; re-created from the clock, they never repeat an old
    /// value. A server that does not answer keeps its keys and makes clear() throw, once the
    /// others are cleared.
    void clear() {
        std::optional<CacheError> failure;
        for (std::size_t s = 0; s < servers_.size(); ++s) {
            try {
                prepare(s);
                clear_on(s);
            } catch (const CacheError& e) {
                if (!failure)
                    failure = e;
            }
        }
        if (failure)
            throw *failure;
    }

    /// Undelivered invalidation batches waiting, over all servers (for tests and monitoring).
    std::size_t pending_invalidations() const {
        std::size_t n = 0;
        for (const auto& s : servers_)
            n += s->health.pending();
        return n;
    }

    /// The position in options().servers of the server that holds `key` (for tests and
    /// monitoring).
    std::size_t server_index(std::string_view key) const { return server_of(keys_.key(key).wire); }

  private:
    using Clock = std::chrono::steady_clock;

    /// What we know of one server. Shared by every pooled handle.
    struct Server {
        Server(std::string a, std::chrono::milliseconds retry_interval)
            : address(std::move(a)),
              endpoint(detail::memcached_address(address)),
              health(retry_interval) {}
        const std::string address;
        const detail::MemcachedAddress endpoint;
        /// Its circuit breaker, incident and undelivered invalidations.
        detail::ServerHealth health;
        /// Whether `lru_crawler metadump hash` is understood; older servers answer BADCLASS
        /// and are walked by LRU instead (`metadump all`).
        std::atomic<bool> metadump_by_hash{true};
        std::mutex sockets_mutex;  // guards idle_sockets
        /// Our own text-protocol connections, idle (see detail/memcached/memcached_socket.hpp).
        std::vector<std::unique_ptr<detail::MemcachedSocket>> idle_sockets;
    };

    struct Item {
        std::string value;
        std::uint64_t cas = 0;
    };

    static std::vector<detail::MemcachedAddress> addresses(const MemcachedOptions& o) {
        if (o.servers.empty())
            throw ConfigError("CacheConfig::arguments.url lists no server");
        std::vector<detail::MemcachedAddress> out;
        for (const auto& s : o.servers)
            out.push_back(detail::memcached_address(s));
        return out;
    }

    static std::string lease_marker_of(std::string_view token) {
        std::string out(detail::lease_marker);
        out += token;
        return out;
    }

    /// Nothing if the bytes are not a number (a counter overwritten by someone else).
    static std::optional<std::int64_t> parse_counter(std::string_view text) {
        std::int64_t value = 0;
        const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
        if (error != std::errc() || end != text.data() + text.size())
            return std::nullopt;
        return value;
    }

    std::size_t server_of(std::string_view wire) const {
        if (servers_.size() == 1)
            return 0;  // no hashing to do (libmemcached skips it too)
        const auto position = pool_.position_of(wire);
        return position < servers_.size() ? position : 0;
    }

    // ---- failures ----

    /// A failure of `server`: a connection-level one opens its circuit; either way it is
    /// reported as part of the server's incident, then thrown.
    [[noreturn]] void fail(const detail::MemcachedPool::Checkout& h, std::size_t server,
                           memcached_return_t rc, std::string_view operation) {
        Server& s = *servers_[server];
        if (memcached_fatal(rc))
            s.health.trip();
        const char* why = memcached_last_error_message(h.get());
        CacheError error = detail::memcached_error(
            s.address, operation,
            why != nullptr && *why != '\0' ? why : memcached_strerror(h.get(), rc));
        s.health.failed(error);
        throw error;
    }

    void check(const detail::MemcachedPool::Checkout& h, std::size_t server, memcached_return_t rc,
               std::string_view operation) {
        if (memcached_failed(rc))
            fail(h, server, rc, operation);
        servers_[server]->health.succeeded();
    }

    /// A failure of `s` not seen through libmemcached: reported as part of the server's
    /// incident, its circuit opened first if the server is unreachable, then thrown.
    [[noreturn]] void fail(Server& s, const std::string& why, std::string_view operation,
                           bool unreachable) {
        if (unreachable)
            s.health.trip();
        CacheError error = detail::memcached_error(s.address, operation, why);
        s.health.failed(error);
        throw error;
    }

    // ---- our own connections ----

    /// Runs `exchange(detail::MemcachedSocket&)` on one of `server`'s pooled connections. A
    /// pooled connection the server has closed since (restarted, idle timeout) makes every
    /// pooled one suspect: they are dropped and the exchange runs once more on a new one, so
    /// `exchange` must be safe to repeat. Any other failure to connect or talk opens the
    /// circuit and throws a CacheError; what `exchange` throws leaves the connection unused.
    template <class Exchange>
    void exchange_with(std::size_t server, std::string_view operation, Exchange&& exchange) {
        Server& s = *servers_[server];
        for (int attempt = 0;; ++attempt) {
            std::unique_ptr<detail::MemcachedSocket> socket;
            if (attempt == 0) {
                std::lock_guard lock(s.sockets_mutex);
                if (!s.idle_sockets.empty()) {
                    socket = std::move(s.idle_sockets.back());
                    s.idle_sockets.pop_back();
                }
            }
            const bool reused = socket != nullptr;
            try {
                if (!socket) {
                    socket = std::make_unique<detail::MemcachedSocket>(
                        s.endpoint.host, s.endpoint.port, options_.connect_timeout,
                        options_.socket_timeout);
                }
                exchange(*socket);
            } catch (const detail::MemcachedSocketError& e) {
                if (reused && !e.timed_out()) {
                    std::vector<std::unique_ptr<detail::MemcachedSocket>> stale;
                    {
                        std::lock_guard lock(s.sockets_mutex);
                        stale.swap(s.idle_sockets);
                    }
                    continue;  // closed outside the lock
                }
                fail(s, e.what(), operation, true);
            }
            s.health.succeeded();
            std::lock_guard lock(s.sockets_mutex);
            if (s.idle_sockets.size() < options_.pool_size)
                s.idle_sockets.push_back(std::move(socket));
            return;
        }
    }

    /// A reply that is no answer to what was sent: the server is up but refused the command.
    [[noreturn]] void refused(std::size_t server, std::string_view operation,
                              std::string_view reply) {
        fail(*servers_[server], "unexpected reply '" + std::string(reply) + "'", operation, false);
    }

    // ---- clear ----

    /// The keys `server` lists that belong to key_prefix (wire form).
    std::vector<std::string> list_own_keys(std::size_t server) {
        Server& s = *servers_[server];
        // The crawler runs one listing at a time per server (any client's, or its own
        // background work): a busy one is asked again shortly, for a while.
        const auto give_up = Clock::now() + std::max<Clock::duration>(options_.socket_timeout,
                                                                      std::chrono::seconds{2});
        for (;;) {
            const bool by_hash = s.metadump_by_hash.load(std::memory_order_relaxed);
            std::vector<std::string> keys;
            bool busy = false, unsupported = false;
            exchange_with(server, "clear", [&](detail::MemcachedSocket& socket) {
                keys.clear();
                busy = unsupported = false;
                socket.exchange(
                    by_hash ? "lru_crawler metadump hash\r\n" : "lru_crawler metadump all\r\n",
                    [&](std::string_view line) {
                        if (line.starts_with("key=")) {
                            take_listed_key(line, keys);
                            return true;
                        }
                        if (line == "END")
                            return false;
                        if (line.starts_with("BUSY")) {
                            busy = true;
                            return false;
                        }
                        if (by_hash && line.starts_with("BADCLASS")) {
                            unsupported = true;
                            return false;
                        }
                        refused(server, "clear", line);
                    });
            });
            if (unsupported) {
                s.metadump_by_hash.store(false, std::memory_order_relaxed);
                continue;
            }
            if (!busy)
                return keys;
            if (Clock::now() > give_up) {
                fail(s, "the LRU crawler stayed busy (another metadump running)", "clear", false);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds{5});
        }
    }

    /// From a metadump line "key=<percent-encoded key> exp=... ...": the key, if it is ours.
    void take_listed_key(std::string_view line, std::vector<std::string>& keys) const {
        line.remove_prefix(4);
        line = line.substr(0, line.find(' '));
        auto key = detail::percent_decode(line);
        if (key && keys_.owns(*key))
            keys.push_back(std::move(*key));
    }

    void clear_on(std::size_t server) {
        // Listed until a listing finds none of ours: one that found some is followed by
        // another, which catches what it missed. Keys filled meanwhile may keep appearing:
        // past a few rounds they are new entries, not old ones.
        for (int round = 0; round < 4; ++round) {
            const auto keys = list_own_keys(server);
            if (keys.empty())
                return;
            delete_keys(server, keys, "clear");
        }
    }

    /// Deletes `wire_keys` on `server`, pipelined, every reply checked.
    void delete_keys(std::size_t server, const std::vector<std::string>& wire_keys,
                     std::string_view operation) {
        // In slices, so that a large clear does not build one huge request.
        constexpr std::size_t slice = 4096;
        for (std::size_t first = 0; first < wire_keys.size(); first += slice) {
            const std::size_t last = std::min(wire_keys.size(), first + slice);
            std::string request;
            for (std::size_t i = first; i < last; ++i) {
                request += "delete ";
                request += wire_keys[i];
                request += "\r\n";
            }
            exchange_with(server, operation, [&](detail::MemcachedSocket& socket) {
                std::size_t replies = 0;
                socket.exchange(request, [&](std::string_view line) {
                    if (line != "DELETED" && line != "NOT_FOUND")
                        refused(server, operation, line);
                    return ++replies < last - first;
                });
            });
        }
    }

    /// Before any I/O to `server`: fail at once while its circuit is open, and deliver what
    /// it missed before anything else is done on it.
    void prepare(std::size_t server) {
        guard_circuit(server);
        Server& s = *servers_[server];
        s.health.catch_up([&](const InvalidationBatch& batch) { deliver(batch); });
    }

    // ---- the operations ----

    ReadResult read_once(const ReadRequest& request, std::optional<Ttl> lease_ttl) {
        auto h = pool_.acquire();
        const bool has_entry = !request.key.empty();
        const auto wire = has_entry ? keys_.key(request.key) : detail::MemcachedKey{};
        std::vector<std::string> keys;
        std::vector<std::size_t> servers;
        if (has_entry) {
            keys.push_back(wire.wire);
            servers.push_back(server_of(wire.wire));
        }
        for (const auto& counter : request.counters) {
            keys.push_back(keys_.key(counter).wire);
            servers.push_back(server_of(keys.back()));
        }
        auto items = multi_get(h, keys, servers, "read");

        ReadResult result;
        const std::size_t first_counter = has_entry ? 1 : 0;
        for (std::size_t i = 0; i < request.counters.size(); ++i) {
            const auto& item = items[first_counter + i];
            const std::size_t server = servers[first_counter + i];
            const std::string& counter = keys[first_counter + i];
            std::optional<std::int64_t> value;
            if (item)
                value = parse_counter(item->value);
            if (item && !value)
                remove_key(h, server, counter);  // garbage: start it afresh
            result.counters.push_back(value ? *value : create_counter(h, server, counter));
        }
        if (!has_entry)
            return result;

        const std::size_t server = servers.front();
        auto& entry = items.front();
        std::optional<std::string_view> value;
        if (entry)
            value = detail::memcached_unwrap(wire, request.key, entry->value);
        if (entry && !value)
            return result;  // another key's entry under a shortened key: a miss
        bool stale = false;
        if (value) {
            if (value->starts_with(detail::lease_marker)) {
                result.locked_elsewhere = true;
                return result;
            }
            // Only worth knowing when a lease is asked for (it is taken over a stale entry);
            // otherwise the caller checks the stamp, and tells corrupt entries apart.
            stale = lease_ttl && !request.stamp_prefix.empty() && !result.counters.empty() &&
                    !carries_stamp(*value, request.stamp_prefix, result.counters.front());
            if (!stale) {
                // Unshortened, the value is the fetched bytes themselves: no copy.
                result.value = CacheValue{
                    wire.shortened ? std::string(*value) : std::move(entry->value), nullptr};
                return result;
            }
        }
        if (!lease_ttl)
            return result;  // a miss (a stale entry is one too)
        const std::string token = detail::new_lease_token();
        const std::string lease = detail::memcached_wrap(wire, request.key, lease_marker_of(token));
        // One second more: memcached counts whole seconds from its own clock tick, so an
        // item may go up to a second early, and a lock must live at least its timeout.
        const auto exptime = detail::memcached_expiration(*lease_ttl + std::chrono::seconds{1});
        // Over a stale entry: cas, so that a fill that replaced it since is not overwritten.
        const auto rc = stale ? memcached_cas(h.get(), wire.wire.data(), wire.wire.size(),
                                              lease.data(), lease.size(), exptime, 0, entry->cas)
                              : memcached_add(h.get(), wire.wire.data(), wire.wire.size(),
                                              lease.data(), lease.size(), exptime, 0);
        if (rc == MEMCACHED_NOTSTORED || rc == MEMCACHED_DATA_EXISTS || rc == MEMCACHED_NOTFOUND) {
            // Another reader got there first (a lease or a fill): what it put there is read
            // again by whoever waits for it.
            result.locked_elsewhere = true;
            return result;
        }
        check(h, server, rc, "read");
        result.lease = token;
        return result;
    }

    static bool carries_stamp(std::string_view value, std::string_view prefix, std::int64_t stamp) {
        if (!value.starts_with(prefix))
            return false;
        value.remove_prefix(prefix.size());
        char digits[24];
        const auto end = std::to_chars(digits, digits + sizeof digits, stamp).ptr;
        const std::string_view text(digits, static_cast<std::size_t>(end - digits));
        return value.starts_with(text) && value.size() > text.size() && value[text.size()] == ' ';
    }

    /// A counter that is missing (never written, evicted, server restarted) starts from the
    /// clock, so it never repeats a value some old entry was stored under.
    std::int64_t create_counter(const detail::MemcachedPool::Checkout& h, std::size_t server,
                                const std::string& wire) {
        for (int attempt = 0; attempt < 3; ++attempt) {
            const std::int64_t start = detail::counter_start();
            const std::string text = std::to_string(start);
            const auto rc =
                memcached_add(h.get(), wire.data(), wire.size(), text.data(), text.size(), 0, 0);
            if (rc != MEMCACHED_NOTSTORED) {
                check(h, server, rc, "read");
                return start;
            }
            // Created by someone else in between: read theirs.
            const auto again = multi_get(h, {wire}, {server}, "read");
            if (!again.front())
                continue;
            if (const auto value = parse_counter(again.front()->value))
                return *value;
            remove_key(h, server, wire);
        }
        fail(*servers_[server], "counter " + wire + " keeps disappearing", "read", false);
    }

    /// Stores `value` at `key` unconditionally (0 ttl: deletes it).
    void store(const detail::MemcachedPool::Checkout& h, std::size_t server,
               const detail::MemcachedKey& wire, std::string_view key, std::string_view value,
               Ttl ttl) {
        prepare(server);
        if (ttl.count() == 0) {
            remove_key(h, server, wire.wire);
            return;
        }
        const std::string bytes = detail::memcached_wrap(wire, key, value);
        check(h, server,
              memcached_set(h.get(), wire.wire.data(), wire.wire.size(), bytes.data(), bytes.size(),
                            detail::memcached_expiration(ttl), 0),
              "set");
    }

    void remove_key(const detail::MemcachedPool::Checkout& h, std::size_t server,
                    const std::string& wire) {
        const auto rc = memcached_delete(h.get(), wire.data(), wire.size(), 0);
        if (rc != MEMCACHED_NOTFOUND)
            check(h, server, rc, "remove");
    }

    /// Bumps, then deletes; one round trip per server holding any of the keys (usually one
    /// server: invalidate() hands each server its own part). Throws at the first failure
    /// (the batch stays pending: repeating what was already done is harmless).
    void deliver(const InvalidationBatch& batch) {
        std::vector<std::vector<std::string>> bumps(servers_.size()), removals(servers_.size());
        for (const auto& counter : batch.bump) {
            auto wire = keys_.key(counter).wire;
            bumps[server_of(wire)].push_back(std::move(wire));
        }
        for (const auto& key : batch.remove) {
            auto wire = keys_.key(key).wire;
            removals[server_of(wire)].push_back(std::move(wire));
        }
        for (std::size_t server = 0; server < servers_.size(); ++server) {
            if (bumps[server].empty() && removals[server].empty())
                continue;
            guard_circuit(server);
            deliver_to(server, bumps[server], removals[server]);
        }
    }

    /// Every incr, then every delete, pipelined in one request whose replies are all read:
    /// memcached runs a connection's commands in order, so once the last reply is in,
    /// everything is done, in one round trip whatever the number of keys. Counters found
    /// missing or not a number take one more.
    void deliver_to(std::size_t server, const std::vector<std::string>& bumps,
                    const std::vector<std::string>& removals) {
        std::string request;
        for (const auto& wire : bumps)
            request.append("incr ").append(wire).append(" 1\r\n");
        for (const auto& wire : removals)
            request.append("delete ").append(wire).append("\r\n");
        std::vector<std::string> missing, garbage;
        exchange_with(server, "invalidate", [&](detail::MemcachedSocket& socket) {
            missing.clear();
            garbage.clear();
            std::size_t replied = 0;
            socket.exchange(request, [&](std::string_view line) {
                if (replied < bumps.size()) {
                    if (line == "NOT_FOUND") {
                        missing.push_back(bumps[replied]);
                    } else if (line.starts_with("CLIENT_ERROR")) {
                        garbage.push_back(bumps[replied]);  // "non-numeric value"
                    } else if (!parse_counter(line)) {
                        refused(server, "invalidate", line);
                    }
                } else if (line != "DELETED" && line != "NOT_FOUND") {
                    refused(server, "invalidate", line);
                }
                return ++replied < bumps.size() + removals.size();
            });
        });
        if (!missing.empty() || !garbage.empty())
            repair_counters(server, missing, garbage);
    }

    /// The counters an incr could not bump. A missing one is created from the clock, already
    /// bumped (as the Redis backend does); if a reader created it in between, it is bumped
    /// after all. One that is not a number (overwritten by someone else) is deleted: that
    /// invalidates as well, since it comes back from the clock, above every value it had.
    void repair_counters(std::size_t server, const std::vector<std::string>& missing,
                         const std::vector<std::string>& garbage) {
        std::string request;
        const std::string created = std::to_string(detail::counter_start() + 1);
        for (const auto& wire : missing) {
            request.append("add ").append(wire).append(" 0 0 ");
            request.append(std::to_string(created.size())).append("\r\n");
            request.append(created).append("\r\n");
        }
        for (const auto& wire : garbage)
            request.append("delete ").append(wire).append("\r\n");
        std::string bump_again;
        exchange_with(server, "invalidate", [&](detail::MemcachedSocket& socket) {
            bump_again.clear();
            std::size_t replied = 0;
            socket.exchange(request, [&](std::string_view line) {
                if (replied < missing.size()) {
                    if (line == "NOT_STORED")
                        bump_again.append("incr ").append(missing[replied]).append(" 1\r\n");
                    else if (line != "STORED")
                        refused(server, "invalidate", line);
                } else if (line != "DELETED" && line != "NOT_FOUND") {
                    refused(server, "invalidate", line);
                }
                return ++replied < missing.size() + garbage.size();
            });
        });
        if (bump_again.empty())
            return;
        const auto expected =
            static_cast<std::size_t>(std::count(bump_again.begin(), bump_again.end(), '\n'));
        exchange_with(server, "invalidate", [&](detail::MemcachedSocket& socket) {
            std::size_t replied = 0;
            socket.exchange(bump_again, [&](std::string_view line) {
                // Gone again, or overwritten again: either way it comes back from the clock.
                if (!parse_counter(line) && line != "NOT_FOUND" &&
                    !line.starts_with("CLIENT_ERROR"))
                    refused(server, "invalidate", line);
                return ++replied < expected;
            });
        });
    }

    /// Throws while `server`'s circuit is open (no replay: for use inside one).
    void guard_circuit(std::size_t server) {
        Server& s = *servers_[server];
        if (s.health.circuit_open())
            fail(s, "server unavailable (circuit open, retrying later)", "connect", false);
    }

    /// One multi-get (gets) of `keys`, all servers at once; `servers[i]` holds keys[i].
    /// Returns the items in the same order (nothing for a miss).
    std::vector<std::optional<Item>> multi_get(const detail::MemcachedPool::Checkout& h,
                                               const std::vector<std::string>& keys,
                                               const std::vector<std::size_t>& servers,
                                               std::string_view operation) {
        std::vector<std::size_t> distinct = servers;
        std::sort(distinct.begin(), distinct.end());
        distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());
        for (const auto s : distinct)
            prepare(s);
        std::vector<std::optional<Item>> items(keys.size());
        const auto rc = fetch_into(h, keys, {}, items);
        if (!memcached_failed(rc)) {
            for (const auto s : distinct)
                servers_[s]->health.succeeded();
            return items;
        }
        if (distinct.size() == 1)
            fail(h, distinct.front(), rc, operation);
        // Several servers and one failed: ask each on its own to find which (a rare path;
        // the failed one's circuit opens, so the next calls skip it).
        std::optional<CacheError> failure;
        for (const auto s : distinct) {
            std::vector<std::size_t> mine;
            for (std::size_t i = 0; i < keys.size(); ++i) {
                if (servers[i] == s)
                    mine.push_back(i);
            }
            try {
                std::vector<std::string> subset;
                for (const auto i : mine)
                    subset.push_back(keys[i]);
                std::vector<std::optional<Item>> found(subset.size());
                check(h, s, fetch_into(h, subset, subset.front(), found), operation);
                for (std::size_t j = 0; j < mine.size(); ++j)
                    items[mine[j]] = std::move(found[j]);
            } catch (const CacheError& e) {
                if (!failure)
                    failure = e;
            }
        }
        if (failure)
            throw *failure;
        return items;  // it was a passing failure: everyone answered this time
    }

    /// mget + fetch every result (always to the end, so the handle is left clean). With a
    /// group key, every key is asked of that key's server. Returns the first failure, if any.
    static memcached_return_t fetch_into(const detail::MemcachedPool::Checkout& h,
                                         const std::vector<std::string>& keys,
                                         std::string_view group,
                                         std::vector<std::optional<Item>>& items) {
        std::vector<const char*> pointers;
        std::vector<std::size_t> lengths;
        for (const auto& k : keys) {
            pointers.push_back(k.data());
            lengths.push_back(k.size());
        }
        memcached_return_t failure = memcached_mget_by_key(
            h.get(), group.data(), group.size(), pointers.data(), lengths.data(), keys.size());
        if (memcached_failed(failure) && failure != MEMCACHED_SOME_ERRORS)
            return failure;
        memcached_result_st result;
        memcached_result_create(h.get(), &result);
        memcached_return_t rc = MEMCACHED_SUCCESS;
        while (memcached_fetch_result(h.get(), &result, &rc) != nullptr) {
            const std::string_view key(memcached_result_key_value(&result),
                                       memcached_result_key_length(&result));
            for (std::size_t i = 0; i < keys.size(); ++i) {
                if (keys[i] == key) {
                    items[i] = Item{std::string(memcached_result_value(&result),
                                                memcached_result_length(&result)),
                                    memcached_result_cas(&result)};
                }
            }
        }
        memcached_result_free(&result);
        if (memcached_failed(failure))
            return failure;
        if (rc == MEMCACHED_END || rc == MEMCACHED_NOTFOUND || rc == MEMCACHED_SUCCESS)
            return MEMCACHED_SUCCESS;
        return rc;
    }

    MemcachedOptions options_;
    detail::MemcachedKeyspace keys_;
    mutable detail::MemcachedPool pool_;
    std::vector<std::unique_ptr<Server>>
        servers_;  // in options_.servers order; fixed after construction
};

namespace detail {
inline const bool memcached_backend_registered = [] {
    const BackendFactory factory = [](const CacheConfig& config) {
        return std::make_unique<AnyBackend>(std::make_unique<MemcachedBackend>(
            memcached_options(config.arguments), config.key_prefix));
    };
    register_backend("memcached", factory);
    return true;
}();
}  // namespace detail

}  // namespace ormcache
