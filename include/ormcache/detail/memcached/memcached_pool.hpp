#pragma once
// libmemcached handles: RAII, the one place a memcached failure becomes a CacheError
// (memcached_error), and the memcached backend's use of the one connection pool
// (detail/util/connection_pool.hpp), handing out clones of one configured master handle.

#include <libmemcached/memcached.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "../../errors.hpp"
#include "../cache/backend_error.hpp"
#include "../util/connection_pool.hpp"
#include "memcached_config.hpp"

namespace ormcache::detail {

/// The one place a memcached failure becomes an error. `servers` is the server that failed
/// ("10.0.0.2:11211"), or for a failure that is no one server's the list of them all
/// ("127.0.0.1:11211, 10.0.0.2:11211"), so that on_error says which cache it was.
inline CacheError memcached_error(std::string_view servers, std::string_view operation,
                                  std::string_view what) {
    return backend_error("memcached", servers, operation, what);
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
    /// `o`: a MemcachedOptions (pool_size, connect and socket timeouts).
    template <class Options>
    MemcachedPool(const Options& o, const std::vector<MemcachedAddress>& servers)
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
            throw memcached_error(servers_, "connect", "cannot allocate a handle");
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
                throw memcached_error(servers_, "connect", memcached_strerror(master_.get(), rc));
        }
    }

    MemcachedPool(const MemcachedPool&) = delete;
    MemcachedPool& operator=(const MemcachedPool&) = delete;

    // The idle clones go before the master they were cloned from (the base class would
    // otherwise free them after it).
    ~MemcachedPool() { trip(); }

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
            throw memcached_error(servers_, "connect", "cannot allocate a handle");
        return h;
    }

    const std::string servers_;  // memcached_server_list(), for messages
    MemcachedHandle master_;     // configured once, then only cloned and hashed with
    std::mutex master_mutex_;    // serializes clones of master_
};

}  // namespace ormcache::detail
