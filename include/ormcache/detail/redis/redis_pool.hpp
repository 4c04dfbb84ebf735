#pragma once
// The redis backend's use of the one connection pool (detail/util/connection_pool.hpp): its
// size, its waits and the messages of a refused checkout, which name the server.

#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "../util/connection_pool.hpp"
#include "redis_connection.hpp"

namespace ormcache::detail {

/// At most pool_size connections to the server; a checkout waits up to socket_timeout for one.
/// A failed connect, or trip() after an I/O failure, opens the circuit for retry_interval.
template <class Options>
class RedisPool : public ConnectionPool<RedisConnection> {
  public:
    /// `options`: a RedisOptions.
    explicit RedisPool(Options options)
        : ConnectionPool(
              {.max_open = options.pool_size,
               .max_idle = options.pool_size,
               .wait = options.socket_timeout,
               .retry_interval = options.retry_interval},
              [this] { return std::make_unique<RedisConnection>(options_); },
              [this](PoolRefusal refusal, std::string_view why) {
                  return redis_error(this->endpoint_, "connect", refusal_text(refusal, why));
              }),
          options_(std::move(options)),
          endpoint_(redis_endpoint(options_)) {}

    const Options& options() const noexcept { return options_; }
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

    const Options options_;
    const std::string endpoint_;  // redis_endpoint(options_), for messages
};

}  // namespace ormcache::detail
