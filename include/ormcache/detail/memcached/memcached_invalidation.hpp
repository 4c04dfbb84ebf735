#pragma once
// Invalidation on one memcached server, on our own connection (memcached_socket.hpp): every
// incr, then every delete, pipelined in one request and every reply read, so the batch is
// known delivered in one round trip whatever the number of keys (libmemcached would either
// wait for each reply or not read them at all).

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

#include "../cache/lease_token.hpp"
#include "memcached_keyspace.hpp"
#include "memcached_server.hpp"
#include "memcached_socket.hpp"

namespace ormcache::detail {

/// What memcached answered to one `incr <key> 1`.
enum class IncrReply {
    bumped,        ///< the new value
    missing,       ///< "NOT_FOUND": no such counter
    not_a_number,  ///< "CLIENT_ERROR ...": the value is not a number ("non-numeric value")
    unexpected     ///< anything else: the server refused the command
};

/// Reads the reply to an incr (a pure function of the bytes, fuzzed by
/// tests/fuzz/fuzz_memcached.cpp).
inline IncrReply memcached_incr_reply(std::string_view line) {
    if (line == "NOT_FOUND")
        return IncrReply::missing;
    if (line.starts_with("CLIENT_ERROR"))
        return IncrReply::not_a_number;
    return memcached_counter(line) ? IncrReply::bumped : IncrReply::unexpected;
}

/// The reply to a delete: "DELETED" or "NOT_FOUND" (gone either way).
inline bool memcached_delete_reply(std::string_view line) {
    return line == "DELETED" || line == "NOT_FOUND";
}

/// The counters an incr could not bump. A missing one is created from the clock, already
/// bumped (as the Redis backend does); if a reader created it in between, it is bumped
/// after all. One that is not a number (overwritten by someone else) is deleted: that
/// invalidates as well, since it comes back from the clock, above every value it had.
inline void memcached_repair_counters(MemcachedServer& server,
                                      const std::vector<std::string>& missing,
                                      const std::vector<std::string>& garbage) {
    std::string request;
    const std::string created = std::to_string(counter_start() + 1);
    for (const auto& wire : missing) {
        request.append("add ").append(wire).append(" 0 0 ");
        request.append(std::to_string(created.size())).append("\r\n");
        request.append(created).append("\r\n");
    }
    for (const auto& wire : garbage)
        request.append("delete ").append(wire).append("\r\n");
    std::string bump_again;
    server.exchange("invalidate", [&](MemcachedSocket& socket) {
        bump_again.clear();
        std::size_t replied = 0;
        socket.exchange(request, [&](std::string_view line) {
            if (replied < missing.size()) {
                if (line == "NOT_STORED")
                    bump_again.append("incr ").append(missing[replied]).append(" 1\r\n");
                else if (line != "STORED")
                    server.refused("invalidate", line);
            } else if (!memcached_delete_reply(line)) {
                server.refused("invalidate", line);
            }
            return ++replied < missing.size() + garbage.size();
        });
    });
    if (bump_again.empty())
        return;
    const auto expected =
        static_cast<std::size_t>(std::count(bump_again.begin(), bump_again.end(), '\n'));
    server.exchange("invalidate", [&](MemcachedSocket& socket) {
        std::size_t replied = 0;
        socket.exchange(bump_again, [&](std::string_view line) {
            // Gone again, or overwritten again: either way it comes back from the clock.
            if (!memcached_counter(line) && line != "NOT_FOUND" &&
                !line.starts_with("CLIENT_ERROR"))
                server.refused("invalidate", line);
            return ++replied < expected;
        });
    });
}

/// Every incr, then every delete, pipelined in one request whose replies are all read:
/// memcached runs a connection's commands in order, so once the last reply is in,
/// everything is done, in one round trip whatever the number of keys. Counters found
/// missing or not a number take one more.
inline void memcached_deliver(MemcachedServer& server, const std::vector<std::string>& bumps,
                              const std::vector<std::string>& removals) {
    std::string request;
    for (const auto& wire : bumps)
        request.append("incr ").append(wire).append(" 1\r\n");
    for (const auto& wire : removals)
        request.append("delete ").append(wire).append("\r\n");
    std::vector<std::string> missing, garbage;
    server.exchange("invalidate", [&](MemcachedSocket& socket) {
        missing.clear();
        garbage.clear();
        std::size_t replied = 0;
        socket.exchange(request, [&](std::string_view line) {
            if (replied < bumps.size()) {
                switch (memcached_incr_reply(line)) {
                    case IncrReply::bumped:
                        break;
                    case IncrReply::missing:
                        missing.push_back(bumps[replied]);
                        break;
                    case IncrReply::not_a_number:
                        garbage.push_back(bumps[replied]);  // "non-numeric value"
                        break;
                    case IncrReply::unexpected:
                        server.refused("invalidate", line);
                }
            } else if (!memcached_delete_reply(line)) {
                server.refused("invalidate", line);
            }
            return ++replied < bumps.size() + removals.size();
        });
    });
    if (!missing.empty() || !garbage.empty())
        memcached_repair_counters(server, missing, garbage);
}

}  // namespace ormcache::detail
