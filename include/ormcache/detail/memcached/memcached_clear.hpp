#pragma once
// clear() on memcached: memcached cannot delete by prefix, so each server lists its keys with
// the LRU crawler (`lru_crawler metadump`) and the key prefix's own are deleted, leaving other
// applications' entries on a shared server alone.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "../util/percent_decoding.hpp"
#include "memcached_keyspace.hpp"
#include "memcached_server.hpp"
#include "memcached_socket.hpp"

namespace ormcache::detail {

/// From a metadump line "key=<percent-encoded key> exp=... ...": the key, if it is ours.
inline void memcached_take_listed_key(std::string_view line, const MemcachedKeyspace& keyspace,
                                      std::vector<std::string>& keys) {
    line.remove_prefix(4);
    line = line.substr(0, line.find(' '));
    auto key = percent_decode(line);
    if (key && keyspace.owns(*key))
        keys.push_back(std::move(*key));
}

/// What one line of a `lru_crawler metadump` listing says.
enum class MetadumpLine {
    key,        ///< "key=...": an entry (its key was taken if it is ours)
    end,        ///< "END": the listing is complete
    busy,       ///< "BUSY ...": the crawler is running another listing
    bad_class,  ///< "BADCLASS ..." to `metadump hash`: a server too old to list by hash
    unexpected  ///< anything else: the server refused the command
};

/// Reads one line of a metadump listing (a pure function of the bytes, fuzzed by
/// tests/fuzz/fuzz_memcached.cpp); the key of a key line goes to `keys` if it is ours.
inline MetadumpLine memcached_metadump_line(std::string_view line, bool by_hash,
                                            const MemcachedKeyspace& keyspace,
                                            std::vector<std::string>& keys) {
    if (line.starts_with("key=")) {
        memcached_take_listed_key(line, keyspace, keys);
        return MetadumpLine::key;
    }
    if (line == "END")
        return MetadumpLine::end;
    if (line.starts_with("BUSY"))
        return MetadumpLine::busy;
    if (by_hash && line.starts_with("BADCLASS"))
        return MetadumpLine::bad_class;
    return MetadumpLine::unexpected;
}

/// The keys `server` lists that belong to `keyspace` (wire form).
inline std::vector<std::string> memcached_list_own_keys(MemcachedServer& server,
                                                        const MemcachedKeyspace& keyspace) {
    using Clock = std::chrono::steady_clock;
    // The crawler runs one listing at a time per server (any client's, or its own
    // background work): a busy one is asked again shortly, for a while.
    const auto give_up =
        Clock::now() + std::max<Clock::duration>(server.socket_timeout(), std::chrono::seconds{2});
    for (;;) {
        const bool by_hash = server.metadump_by_hash.load(std::memory_order_relaxed);
        std::vector<std::string> keys;
        bool busy = false, unsupported = false;
        server.exchange("clear", [&](MemcachedSocket& socket) {
            keys.clear();
            busy = unsupported = false;
            socket.exchange(
                by_hash ? "lru_crawler metadump hash\r\n" : "lru_crawler metadump all\r\n",
                [&](std::string_view line) {
                    switch (memcached_metadump_line(line, by_hash, keyspace, keys)) {
                        case MetadumpLine::key:
                            return true;
                        case MetadumpLine::end:
                            return false;
                        case MetadumpLine::busy:
                            busy = true;
                            return false;
                        case MetadumpLine::bad_class:
                            unsupported = true;
                            return false;
                        case MetadumpLine::unexpected:
                            break;
                    }
                    server.refused("clear", line);
                });
        });
        if (unsupported) {
            server.metadump_by_hash.store(false, std::memory_order_relaxed);
            continue;
        }
        if (!busy)
            return keys;
        if (Clock::now() > give_up)
            server.fail("the LRU crawler stayed busy (another metadump running)", "clear", false);
        std::this_thread::sleep_for(std::chrono::milliseconds{5});
    }
}

/// Deletes `wire_keys` on `server`, pipelined, every reply checked.
inline void memcached_delete_keys(MemcachedServer& server,
                                  const std::vector<std::string>& wire_keys,
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
        server.exchange(operation, [&](MemcachedSocket& socket) {
            std::size_t replies = 0;
            socket.exchange(request, [&](std::string_view line) {
                if (line != "DELETED" && line != "NOT_FOUND")
                    server.refused(operation, line);
                return ++replies < last - first;
            });
        });
    }
}

/// Deletes every key of `keyspace` on `server`.
inline void memcached_clear(MemcachedServer& server, const MemcachedKeyspace& keyspace) {
    // Listed until a listing finds none of ours: one that found some is followed by
    // another, which catches what it missed. Keys filled meanwhile may keep appearing:
    // past a few rounds they are new entries, not old ones.
    for (int round = 0; round < 4; ++round) {
        const auto keys = memcached_list_own_keys(server, keyspace);
        if (keys.empty())
            return;
        memcached_delete_keys(server, keys, "clear");
    }
}

}  // namespace ormcache::detail
