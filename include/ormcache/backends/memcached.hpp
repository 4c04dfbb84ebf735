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
//                own connection (detail/memcached/memcached_invalidation.hpp), every reply read:
//                known delivered, in one round trip per server whatever the number of keys (a
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
//
// The machinery is in detail/memcached/: the url argument (memcached_config), the key space
// (memcached_keyspace), the handle pool and error mapper (memcached_pool), each server's state
// and connections (memcached_server, memcached_socket), clear() (memcached_clear) and the
// pipelined invalidation (memcached_invalidation).

#include <libmemcached/memcached.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../backend.hpp"
#include "../detail/cache/backend_arguments.hpp"
#include "../detail/cache/lease_token.hpp"
#include "../detail/cache/lock_wait.hpp"
#include "../detail/cache/server_health.hpp"
#include "../detail/memcached/memcached_clear.hpp"
#include "../detail/memcached/memcached_config.hpp"
#include "../detail/memcached/memcached_invalidation.hpp"
#include "../detail/memcached/memcached_keyspace.hpp"
#include "../detail/memcached/memcached_pool.hpp"
#include "../detail/memcached/memcached_server.hpp"
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

/// `url`: the seed writes a list of "host:port"; one server may also be a plain string.
inline void memcached_url_from_json(MemcachedOptions& o, const nlohmann::json& v) {
    o.servers = memcached_servers_from_json(v);
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

class MemcachedBackend {
  public:
    static constexpr bool stores_objects = false;

    MemcachedBackend(MemcachedOptions options, std::string key_prefix)
        : options_(std::move(options)),
          keys_(std::move(key_prefix)),
          pool_(options_, addresses(options_)) {
        for (const auto& address : options_.servers)
            servers_.push_back(std::make_unique<detail::MemcachedServer>(
                address, options_.retry_interval, options_.connect_timeout, options_.socket_timeout,
                options_.pool_size));
        // Our per-server state is indexed by libmemcached's server positions: check they
        // follow the order the servers were added in.
        for (std::uint32_t i = 0; i < servers_.size(); ++i) {
            const auto* instance = memcached_server_instance_by_position(pool_.master(), i);
            const std::string name = std::string(memcached_server_name(instance)) + ":" +
                                     std::to_string(memcached_server_port(instance));
            if (instance == nullptr || name != servers_[i]->address()) {
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
            if (!item ||
                detail::memcached_counter(item->value) != std::optional(request.guards[i].second)) {
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
            servers_[s]->health().keep(parts[s]);
        }
        std::optional<CacheError> failure;
        for (std::size_t s = 0; s < parts.size(); ++s) {
            if (parts[s].empty())
                continue;
            try {
                prepare(s, Admission::probe);
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
                detail::memcached_clear(*servers_[s], keys_);
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
            n += s->health().pending();
        return n;
    }

    /// The position in options().servers of the server that holds `key` (for tests and
    /// monitoring).
    std::size_t server_index(std::string_view key) const { return server_of(keys_.key(key).wire); }

  private:
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
        detail::MemcachedServer& s = *servers_[server];
        if (memcached_fatal(rc))
            s.health().trip();
        const char* why = memcached_last_error_message(h.get());
        CacheError error = detail::memcached_error(
            s.address(), operation,
            why != nullptr && *why != '\0' ? why : memcached_strerror(h.get(), rc));
        s.health().failed(error);
        throw error;
    }

    void check(const detail::MemcachedPool::Checkout& h, std::size_t server, memcached_return_t rc,
               std::string_view operation) {
        if (memcached_failed(rc))
            fail(h, server, rc, operation);
        servers_[server]->health().succeeded();
    }

    /// Whether a call may try a server while its circuit is open.
    enum class Admission {
        closed_circuit,  ///< no: reads and fills, which the database serves meanwhile
        probe,           ///< yes, unless another probe is under way: invalidations (ServerHealth)
    };

    /// Before any I/O to `server`: fail at once while its circuit is open (but for a probe),
    /// and deliver what it missed before anything else is done on it.
    void prepare(std::size_t server, Admission admission = Admission::closed_circuit) {
        auto& health = servers_[server]->health();
        if (!health.circuit_open() || admission != Admission::probe || !health.begin_probe()) {
            guard_circuit(server);
            health.catch_up([&](const InvalidationBatch& batch) { deliver(batch); });
            return;
        }
        try {
            health.catch_up([&](const InvalidationBatch& batch) { deliver(batch, server); });
        } catch (...) {
            health.end_probe(false);
            throw;
        }
        health.end_probe(true);
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
                value = detail::memcached_counter(item->value);
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
            if (const auto value = detail::memcached_counter(again.front()->value))
                return *value;
            remove_key(h, server, wire);
        }
        servers_[server]->fail("counter " + wire + " keeps disappearing", "read", false);
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
    /// `probed`: a server whose open circuit this delivery may go through (see prepare()).
    void deliver(const InvalidationBatch& batch, std::optional<std::size_t> probed = std::nullopt) {
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
            if (server != probed)
                guard_circuit(server);
            detail::memcached_deliver(*servers_[server], bumps[server], removals[server]);
        }
    }

    /// Throws while `server`'s circuit is open (no replay: for use inside one).
    void guard_circuit(std::size_t server) {
        detail::MemcachedServer& s = *servers_[server];
        if (s.health().circuit_open())
            s.fail("server unavailable (circuit open, retrying later)", "connect", false);
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
                servers_[s]->health().succeeded();
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
    std::vector<std::unique_ptr<detail::MemcachedServer>>
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
