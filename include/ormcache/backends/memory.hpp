#pragma once
// The in-process memory backend: sharded LRU with a TTL per entry. It stores decoded objects
// (stores_objects), so a hit parses nothing. Thread-safe; no global lock on the hit path: a
// key's shard lock, and the counter's shard lock when the read asks for a counter.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <list>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <tuple>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../backend.hpp"
#include "../detail/cache/backend_arguments.hpp"
#include "../detail/cache/lease_token.hpp"
#include "../detail/util/linkage.hpp"
#include "../detail/util/string_hash.hpp"

namespace ormcache {

/// Memory backend settings: the typed form of CacheConfig::arguments (docs/reference.md,
/// section 3.4). An aggregate: append only. `CacheConfig{.arguments = MemoryOptions{
/// .max_entries = 1000}}` works through to_json() below.
struct MemoryOptions {
    /// Most entries kept (leases included); the least recently used go first. 0 = unbounded.
    std::size_t max_entries = 100000;
    /// Independent LRU shards, >= 1 (more shards, less contention; each holds
    /// max_entries/shards; never more shards than max_entries).
    std::size_t shards = 16;

    friend bool operator==(const MemoryOptions&, const MemoryOptions&) = default;
};

namespace detail {

/// The memory backend's arguments: JSON name, member, range (docs/reference.md, section 3.4).
template <>
struct OptionTable<MemoryOptions> {
    static constexpr std::string_view backend = "memory";
    static constexpr auto fields = std::tuple{
        field("max_entries", &MemoryOptions::max_entries, {.hint = "0 = unbounded"}),
        field("shards", &MemoryOptions::shards, {.min = 1}),
    };
};

}  // namespace detail

/// MemoryOptions as CacheConfig::arguments (found by ADL: `nlohmann::json j = options;`).
ORMCACHE_INLINE void to_json(nlohmann::json& j, const MemoryOptions& o);
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE void to_json(nlohmann::json& j, const MemoryOptions& o) {
    j = detail::options_to_json(o);
}
#endif

/// CacheConfig::arguments as MemoryOptions (`j.get<MemoryOptions>()`); ConfigError when invalid.
ORMCACHE_INLINE void from_json(const nlohmann::json& j, MemoryOptions& o);
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE void from_json(const nlohmann::json& j, MemoryOptions& o) {
    o = detail::read_options<MemoryOptions>(j);
}
#endif

class MemoryBackend {
  public:
    static constexpr bool stores_objects = true;

    using Options = MemoryOptions;

    MemoryBackend() : MemoryBackend(Options{}) {}
    explicit MemoryBackend(Options options);

    std::string_view name() const noexcept { return "memory"; }

    ReadResult read(const ReadRequest& request);

    bool fill(const FillRequest& request);

    void invalidate(const InvalidationBatch& batch);

    void clear();

    /// Entries held now (leases included; expired entries not yet swept count too).
    std::size_t size() const;

    /// Entries dropped to stay within max_entries.
    std::uint64_t evictions() const noexcept { return evictions_.load(std::memory_order_relaxed); }

  private:
    using Clock = std::chrono::steady_clock;

    struct Slot {
        CacheValue value;
        std::string lease;  // non-empty: a fill lease, not a value
        Clock::time_point expires = Clock::time_point::max();
        std::list<const std::string*>::iterator lru;
    };

    struct Shard {
        mutable std::mutex mutex;  // guards map and lru
        std::unordered_map<std::string, Slot, detail::StringHash, std::equal_to<>> map;
        std::list<const std::string*> lru;  // most recent first; points at map keys
    };

    struct CounterShard {
        std::mutex mutex;  // guards values
        std::unordered_map<std::string, std::int64_t, detail::StringHash, std::equal_to<>> values;
    };

    static bool expired(const Slot& slot, Clock::time_point now) { return slot.expires <= now; }

    static Clock::time_point expiry(Clock::time_point now, Ttl ttl) {
        if (ttl.count() < 0)
            return Clock::time_point::max();
        return now + ttl;
    }

    std::size_t index_of(std::string_view key) const {
        return std::hash<std::string_view>{}(key) % shard_count_;
    }
    Shard& shard_for(std::string_view key) { return shards_[index_of(key)]; }

    /// Reads a counter, creating it from the clock when missing, after adding `delta`.
    std::int64_t counter_value(const std::string& key, std::int64_t delta);

    void touch(Shard& shard, Slot& slot) {
        shard.lru.splice(shard.lru.begin(), shard.lru, slot.lru);
    }

    void insert(Shard& shard, const std::string& key, Slot slot);

    template <class It>
    static void erase(Shard& shard, It it) {
        shard.lru.erase(it->second.lru);
        shard.map.erase(it);
    }

    Options options_;
    std::size_t shard_count_;
    std::size_t per_shard_capacity_ = 0;
    std::vector<Shard> shards_;
    std::vector<CounterShard> counter_shards_;
    std::atomic<std::uint64_t> evictions_{0};
};

#if ORMCACHE_DEFINITIONS

ORMCACHE_INLINE MemoryBackend::MemoryBackend(Options options)
    : options_(options),
      shard_count_(std::max<std::size_t>(1, options.max_entries == 0
                                                ? options.shards
                                                : std::min(options.shards, options.max_entries))),
      shards_(shard_count_),
      counter_shards_(shard_count_) {
    if (options_.max_entries != 0) {
        per_shard_capacity_ = (options_.max_entries + shard_count_ - 1) / shard_count_;
    }
}

ORMCACHE_INLINE ReadResult MemoryBackend::read(const ReadRequest& request) {
    ReadResult result;
    result.counters.reserve(request.counters.size());
    for (const auto& counter : request.counters)
        result.counters.push_back(counter_value(counter, 0));
    Shard& shard = shard_for(request.key);
    std::lock_guard lock(shard.mutex);
    const auto now = Clock::now();
    auto it = shard.map.find(request.key);
    if (it != shard.map.end() && expired(it->second, now)) {
        erase(shard, it);
        it = shard.map.end();
    }
    if (it != shard.map.end()) {
        if (it->second.lease.empty()) {
            touch(shard, it->second);
            result.value = it->second.value;
        } else {
            result.locked_elsewhere = true;
        }
        return result;  // a hit, or someone else's lease: a miss without a lease
    }
    if (request.lease_ttl) {
        result.lease = detail::new_lease_token();
        Slot slot;
        slot.lease = result.lease;
        slot.expires = expiry(now, *request.lease_ttl);
        insert(shard, request.key, std::move(slot));
    }
    return result;
}

ORMCACHE_INLINE bool MemoryBackend::fill(const FillRequest& request) {
    Shard& shard = shard_for(request.key);
    std::lock_guard lock(shard.mutex);
    auto it = shard.map.find(request.key);
    if (!request.lease.empty()) {
        if (it == shard.map.end() || it->second.lease != request.lease)
            return false;
    }
    for (const auto& [counter, expected] : request.guards) {
        if (counter_value(counter, 0) != expected) {
            if (it != shard.map.end() && !request.lease.empty())
                erase(shard, it);
            return false;
        }
    }
    Slot slot;
    slot.value = request.value;
    slot.expires = expiry(Clock::now(), request.ttl);
    if (it != shard.map.end())
        erase(shard, it);
    insert(shard, request.key, std::move(slot));
    return true;
}

ORMCACHE_INLINE void MemoryBackend::invalidate(const InvalidationBatch& batch) {
    // Bump first: a reader that sees the new counter must not then find the old entry.
    for (const auto& counter : batch.bump)
        counter_value(counter, 1);
    for (const auto& key : batch.remove) {
        Shard& shard = shard_for(key);
        std::lock_guard lock(shard.mutex);
        if (auto it = shard.map.find(key); it != shard.map.end())
            erase(shard, it);
    }
}

ORMCACHE_INLINE void MemoryBackend::clear() {
    for (auto& shard : shards_) {
        std::lock_guard lock(shard.mutex);
        shard.map.clear();
        shard.lru.clear();
    }
    // Counters survive clear(): dropping them could let a re-created counter repeat an
    // old value; they are tiny.
}

ORMCACHE_INLINE std::size_t MemoryBackend::size() const {
    std::size_t n = 0;
    for (const auto& shard : shards_) {
        std::lock_guard lock(shard.mutex);
        n += shard.map.size();
    }
    return n;
}

ORMCACHE_INLINE std::int64_t MemoryBackend::counter_value(const std::string& key,
                                                          std::int64_t delta) {
    CounterShard& shard = counter_shards_[index_of(key)];
    std::lock_guard lock(shard.mutex);
    auto it = shard.values.find(key);
    if (it == shard.values.end())
        it = shard.values.emplace(key, detail::counter_start()).first;
    it->second += delta;
    return it->second;
}

ORMCACHE_INLINE void MemoryBackend::insert(Shard& shard, const std::string& key, Slot slot) {
    auto [it, inserted] = shard.map.emplace(key, std::move(slot));
    shard.lru.push_front(&it->first);
    it->second.lru = shard.lru.begin();
    if (per_shard_capacity_ == 0)
        return;
    while (shard.map.size() > per_shard_capacity_) {
        const std::string* victim = shard.lru.back();
        erase(shard, shard.map.find(*victim));
        evictions_.fetch_add(1, std::memory_order_relaxed);
    }
}

#endif  // ORMCACHE_DEFINITIONS

/// Stores nothing: every read misses, nothing is written. Also what `enabled = false` gives.
class NullBackend {
  public:
    static constexpr bool stores_objects = true;
    std::string_view name() const noexcept { return "null"; }
    ReadResult read(const ReadRequest& r) {
        return ReadResult{std::nullopt, std::vector<std::int64_t>(r.counters.size(), 0), {}};
    }
    bool fill(const FillRequest&) { return false; }
    void invalidate(const InvalidationBatch&) {}
    void clear() {}
};

namespace detail {

/// Reads MemoryOptions from CacheConfig::arguments; ConfigError names a bad field.
ORMCACHE_INLINE MemoryOptions memory_options(const CacheConfig& config);
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE MemoryOptions memory_options(const CacheConfig& config) {
    return read_options<MemoryOptions>(config.arguments);
}
#endif

inline const bool builtin_backends_registered = [] {
    register_backend("memory", [](const CacheConfig& config) {
        return std::make_unique<AnyBackend>(
            std::make_unique<MemoryBackend>(memory_options(config)));
    });
    register_backend("null", [](const CacheConfig&) {
        return std::make_unique<AnyBackend>(std::make_unique<NullBackend>());
    });
    return true;
}();

}  // namespace detail
}  // namespace ormcache
