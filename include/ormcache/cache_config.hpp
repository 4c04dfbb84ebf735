#pragma once
// CacheConfig mirrors Advanced Alchemy's CacheConfig (backend, expiration_time, arguments,
// key_prefix, enabled) plus the serializer and an error callback.

#include <chrono>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

#include "errors.hpp"
#include "serializer.hpp"

namespace ormcache {

/// An aggregate: fields are declared in API order; add new ones at the end only.
struct CacheConfig {
    /// "memory" | "redis" | "memcached" | "file" | "null" | a registered name; the seed's
    /// "dogpile.cache.*" spellings are accepted too.
    std::string backend = "memory";
    /// Default TTL of every entry; -1 s = never expire.
    std::chrono::seconds expiration_time{3600};
    /// Backend-specific arguments (a JSON object).
    nlohmann::json arguments = nlohmann::json::object();
    /// Every key the library writes starts with it.
    std::string key_prefix = "aa:";
    /// false: behave exactly like backend "null".
    bool enabled = true;
    /// Bytes of non-memory backends.
    Serializer serializer = serializers::json();
    /// Called with every backend failure after it was absorbed (optional).
    std::function<void(const CacheError&)> on_error{};
    /// D: how late, at most, a committed change reaches a cache that other processes share
    /// when its writer could not deliver it (it died, or could not reach the cache), counted
    /// from the later of the commit and the cache answering again (docs/caching.md, "Across
    /// processes"). The outbox keepers look every D/4 for changes older than D/2.
    std::chrono::milliseconds invalidation_bound{1000};
    /// false: commits write no outbox row, so an invalidation its writer could not deliver is
    /// lost when the writer exits (other processes serve the old entries until their TTL).
    /// For a cache only one process uses, to save the row each commit writes.
    bool durable_invalidation = true;
};

}  // namespace ormcache
