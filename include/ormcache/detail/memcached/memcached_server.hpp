#pragma once
// What the memcached backend knows of one server, shared by every pooled libmemcached handle:
// its health (breaker, incident, invalidations it missed; detail/cache/server_health.hpp), and
// a pool of our own text-protocol connections to it (memcached_socket.hpp) for what
// libmemcached cannot do in one round trip.

#include <atomic>
#include <chrono>
#include <cstddef>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "../../errors.hpp"
#include "../cache/server_health.hpp"
#include "../util/connection_pool.hpp"
#include "memcached_config.hpp"
#include "memcached_pool.hpp"
#include "memcached_socket.hpp"

namespace ormcache::detail {

/// Thread-safe.
class MemcachedServer {
  public:
    /// `address`: "host:port". Up to `max_idle` sockets are kept between exchanges.
    MemcachedServer(std::string address, std::chrono::milliseconds retry_interval,
                    std::chrono::milliseconds connect_timeout,
                    std::chrono::milliseconds socket_timeout, std::size_t max_idle)
        : address_(std::move(address)),
          endpoint_(memcached_address(address_)),
          socket_timeout_(socket_timeout),
          health_(retry_interval),
          sockets_(
              {.max_open = 0, .max_idle = max_idle},
              [host = endpoint_.host, port = endpoint_.port, connect_timeout, socket_timeout] {
                  return std::make_unique<MemcachedSocket>(host, port, connect_timeout,
                                                           socket_timeout);
              },
              nullptr) {}

    /// "host:port", as the options list it.
    const std::string& address() const noexcept { return address_; }
    std::chrono::milliseconds socket_timeout() const noexcept { return socket_timeout_; }
    ServerHealth& health() noexcept { return health_; }
    const ServerHealth& health() const noexcept { return health_; }

    /// Whether `lru_crawler metadump hash` is understood; older servers answer BADCLASS and
    /// are walked by LRU instead (`metadump all`).
    std::atomic<bool> metadump_by_hash{true};

    /// A failure of this server not seen through libmemcached: reported as part of its
    /// incident, its circuit opened first if it is unreachable, then thrown.
    [[noreturn]] void fail(const std::string& why, std::string_view operation, bool unreachable) {
        if (unreachable)
            health_.trip();
        CacheError error = memcached_error(address_, operation, why);
        health_.failed(error);
        throw error;
    }

    /// A reply that is no answer to what was sent: the server is up but refused the command.
    [[noreturn]] void refused(std::string_view operation, std::string_view reply) {
        fail("unexpected reply '" + std::string(reply) + "'", operation, false);
    }

    /// Runs `exchange(MemcachedSocket&)` on one of the pooled sockets. A pooled socket the
    /// server has closed since (restarted, idle timeout) makes every pooled one suspect: they
    /// are dropped and the exchange runs once more on a new one, so `exchange` must be safe to
    /// repeat. Any other failure to connect or talk opens the circuit and throws a CacheError;
    /// what `exchange` throws leaves the socket unused.
    template <class Exchange>
    void exchange(std::string_view operation, Exchange&& exchange) {
        for (int attempt = 0;; ++attempt) {
            bool reused = false;
            try {
                auto socket = sockets_.acquire();
                reused = socket.reused();
                try {
                    exchange(*socket);
                } catch (...) {
                    socket.discard();
                    throw;
                }
            } catch (const MemcachedSocketError& e) {
                if (reused && attempt == 0 && !e.timed_out()) {
                    sockets_.trip();  // retry_interval 0: drops the idle ones, nothing more
                    continue;
                }
                fail(e.what(), operation, true);
            }
            health_.succeeded();
            return;
        }
    }

  private:
    const std::string address_;
    const MemcachedAddress endpoint_;
    const std::chrono::milliseconds socket_timeout_;
    ServerHealth health_;
    ConnectionPool<MemcachedSocket> sockets_;
};

}  // namespace ormcache::detail
