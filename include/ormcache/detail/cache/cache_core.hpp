#pragma once
// The shared state behind a CacheManager: the backend, the fill protocol (docs/caching.md,
// "Correctness"), singleflight, stats and the commit listener. Thread-safe. What it is built
// from: the key layout (key_layout.hpp), the entry envelope (envelope.hpp), the payloads
// (payload.hpp) and what a read is asked to do (read_target.hpp).

#include <atomic>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <typeinfo>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include "../../backend.hpp"
#include "../../backends/memory.hpp"
#include "../../cache_config.hpp"
#include "../../cache_stats.hpp"
#include "../../change_set.hpp"
#include "../../codec.hpp"
#include "../../errors.hpp"
#include "../../model.hpp"
#include "../sqlite/database_state.hpp"
#include "../util/linkage.hpp"
#include "envelope.hpp"
#include "key_layout.hpp"
#include "payload.hpp"
#include "read_target.hpp"
#include "singleflight.hpp"

namespace ormcache::detail {

class CacheCore : public CacheHook, public std::enable_shared_from_this<CacheCore> {
  public:
    explicit CacheCore(CacheConfig config);

    const CacheConfig& config() const noexcept { return config_; }
    bool active() const noexcept { return !null_; }
    AnyBackend& backend() noexcept { return *backend_; }

    CacheStats stats() const;

    // ---- keys (key_layout.hpp) ----

    const KeyLayout& keys() const noexcept { return keys_; }

    /// The key space of `database` in this cache: key_prefix + its identity + ":". Remembers
    /// the database, so that invalidate<T>() and invalidate_all<T>() reach it. A cache that
    /// is off gets a space no other Database of the process has (only its singleflight uses
    /// keys) and never asks for the identity, which may write to the database.
    std::string key_space(const DatabaseState& database);

    // ---- models ----

    template <Model T>
    void register_model() {
        const std::string digest = model_digest<T>();
        std::unique_lock lock(models_mutex_);
        auto& entries = models_[std::string(ModelInfo<T>::table)];
        for (const auto& e : entries) {
            if (e.digest == digest)
                return;
        }
        entries.push_back(ModelEntry{digest, !ModelInfo<T>::integer_pk});
    }

    // ---- the read path ----

    /// A cached read: `load` runs the query on the database.
    template <class R, class Load>
    R read(const ReadTarget& target, const ReadContext& context,
           std::optional<std::chrono::seconds> ttl, Load&& load) {
        return read_ref<R>(target, context, ttl, LoadRef<R>(load));
    }

    /// read() for a type-erased load: compiled once per result type, whatever the caller's
    /// lambda.
    template <class R>
    R read_ref(const ReadTarget& target, const ReadContext& context,
               std::optional<std::chrono::seconds> ttl, LoadRef<R> load) {
        if (context.mode == FillMode::bypass)
            return load();  // read-your-writes: never shares a load with other sessions
        // Taken before the first look at the cache: a flight may hand this read only a result
        // known to include every commit that had finished by now (Singleflight::Outcome).
        const FlightClock::Tick started = flight_clock_.now();
        if (!active())
            return context.mode == FillMode::shared
                       ? uncached_flight<R>(target, context, started, load)
                       : load();
        const std::string& key = target.key;
        // The lease is taken in this same round trip unless singleflight will decide who
        // fills (then the leader takes it, see below). Query keys take one too: it is what a
        // distributed lock waits on (an unleased query fill is still safe, see store()).
        const TakeLease lease_now = context.mode == FillMode::fill ? TakeLease::yes : TakeLease::no;
        auto first = lookup<R>(key, target.check, target.counter, lease_now);
        if (first && first->hit) {
            hits_.fetch_add(1, std::memory_order_relaxed);
            return std::move(*first->hit);
        }
        misses_.fetch_add(1, std::memory_order_relaxed);
        // Backend down: the database answers. An entry under a counter cannot be filled
        // without having read the counter; a region value (get_or_create) has none, so its
        // flight's leader reads again below and fills if the backend answers by then.
        if (!first && !target.counter.empty()) {
            return context.mode == FillMode::shared
                       ? uncached_flight<R>(target, context, started, load)
                       : load();
        }
        const std::int64_t first_stamp = first ? first->stamp : 0;
        if (context.mode == FillMode::read_only)
            return load();
        if (context.mode == FillMode::fill) {
            return load_and_store<R>(target, first_stamp, first ? first->lease : std::string(),
                                     context.guards, ttl, load);
        }
        // Shared: one load per key and counter value in this process. A list entry's tag is
        // the list version, which every commit of its table bumps before it finishes: a read
        // that starts after a commit reads a newer version and never meets an older flight.
        // A region value has nothing a commit could make old. An entity's tag (its table's
        // generation) does not move with row commits, so its result carries a tick: the one
        // taken before the leader looked again, or, once the leader's fill under its lease
        // landed, the one taken right before the fill was sent: an invalidation of the key that
        // finished before then either came before the lease (the load saw its commit) or
        // removed the lease (the fill could not land). Not a tick after the fill: a commit
        // whose invalidation came just after the fill landed would be missed by a read that
        // started in between.
        const bool tag_proves_fresh = !target.entity;
        bool waited = false;
        const CountWait count_wait{waited, singleflight_waits_};
        auto result = flights_.run(
            key, first_stamp, started,
            [&]() -> Singleflight::Outcome {
                FlightClock::Tick fresh_as_of =
                    tag_proves_fresh ? Singleflight::always_fresh : flight_clock_.tick();
                std::string lease;
                std::int64_t stamp = first_stamp;
                // The leader re-checks: the key may have been filled since our first read, by
                // a flight that landed in between (a miss concurrent with it must not run a
                // second query). This read also takes the lease.
                if (auto second = lookup<R>(key, target.check, target.counter, TakeLease::yes)) {
                    if (second->hit)
                        return {std::make_shared<const R>(std::move(*second->hit)), fresh_as_of};
                    stamp = second->stamp;
                    lease = second->lease;
                }
                FillReport fill;
                if (!tag_proves_fresh)
                    fill.clock = &flight_clock_;
                auto value = std::make_shared<const R>(
                    load_and_store<R>(target, stamp, lease, {}, ttl, load, &fill));
                if (fill.landed && !lease.empty() && !tag_proves_fresh)
                    fresh_as_of = fill.sent_at;
                return {std::move(value), fresh_as_of};
            },
            waited);
        return *std::static_pointer_cast<const R>(result);
    }

    // ---- region-style get_or_create ----

    /// Region values have no counter (only a delete or their TTL ends them) and belong to
    /// no table, but they take the read path of every other entry: one creation per key
    /// among concurrent callers (with or without a cache), and the fill lease, which is what
    /// a distributed lock waits on, as dogpile's lock guards its creation functions.
    template <class V, class Create>
    V get_or_create(const std::string& user_key, Create&& create,
                    std::optional<std::chrono::seconds> ttl) {
        return read_ref<V>(ReadTarget{keys_.region_key(user_key), {}, {}, false},
                           ReadContext{FillMode::shared, {}, 0}, ttl, LoadRef<V>(create));
    }

    // ---- invalidation ----

    /// The commit listener of the database whose key space is `space`: after a successful
    /// commit, drop the changed entities and bump the list version of every changed table, in
    /// one backend batch.
    /// Returns whether the backend accepted the batch (or there was nothing to deliver).
    bool on_commit(std::string_view space, const ChangeSet& changes);

    /// Whether commits go through the database's outbox (CacheConfig::durable_invalidation):
    /// when processes other than this one may read what this cache stores (a backend that
    /// stores bytes), a commit's invalidation must outlive its writer.
    bool uses_outbox() const {
        return active() && !backend_->stores_objects() && config_.durable_invalidation;
    }

    /// What the outbox rows for this cache are marked with: the backend and the key prefix.
    std::string outbox_name() const {
        return std::string(backend_->name()) + " " + config_.key_prefix;
    }

    /// Drops one entity of every database this cache serves (key_space()).
    template <Model T>
    void invalidate_entity(const PrimaryKey& key) {
        if (!active())
            return;  // null backend: nothing to drop, nothing to count
        InvalidationBatch batch;
        for (const auto& space : key_spaces()) {
            batch.remove.push_back(keys_.entity_key<T>(space, key));
            batch.bump.push_back(keys_.version_key(space, ModelInfo<T>::table));
            batch.fallback_bump.push_back(keys_.generation_key(space, ModelInfo<T>::table));
            version_bumps_.fetch_add(1, std::memory_order_relaxed);
        }
        apply(batch);
    }

    /// Drops every entry of T of every database this cache serves.
    template <Model T>
    void invalidate_model() {
        if (!active())
            return;
        InvalidationBatch batch;
        for (const auto& space : key_spaces()) {
            batch.bump.push_back(keys_.version_key(space, ModelInfo<T>::table));
            batch.bump.push_back(keys_.generation_key(space, ModelInfo<T>::table));
            version_bumps_.fetch_add(1, std::memory_order_relaxed);
        }
        apply(batch);
    }

    void clear();

    /// CacheHook: the counters of every registered table of `database`, read before an
    /// explicit transaction takes its snapshot (the snapshot guard).
    std::optional<CounterSnapshot> snapshot_counters(
        const DatabaseState& database) noexcept override;

    /// Counts every failure; on_error hears of an outage once (see CacheError::continues_incident).
    void report(const CacheError& error) noexcept;

    /// Leases outlive the slowest query we expect; a dead holder's lease only delays fills.
    static constexpr Ttl lease_ttl{30000};

  private:
    /// Counts a singleflight wait when the call leaves, whether the flight it waited on
    /// returned or threw.
    struct CountWait {
        const bool& waited;
        std::atomic<std::uint64_t>& waits;
        ~CountWait() {
            if (waited)
                waits.fetch_add(1, std::memory_order_relaxed);
        }
    };

    std::vector<std::string> key_spaces() const;

    struct ModelEntry {
        std::string digest;
        bool text_pk;
    };

    void validate();

    Ttl ttl_of(std::optional<std::chrono::seconds> ttl) const;

    /// Runs a backend operation; a failure is counted, reported and turned into nullopt.
    template <class Op>
    auto guarded(const char* operation, Op&& op) noexcept -> std::optional<decltype(op())> {
        try {
            return op();
        } catch (const CacheError& e) {
            report(e);
        } catch (const std::exception& e) {
            // A backend that throws something other than CacheError still gets a message that
            // says which backend failed doing what, as the backends' own errors do.
            report(CacheError(std::string(backend_->name()) + " " + operation + ": " + e.what(),
                              std::string(backend_->name()), operation));
        } catch (...) {
            report(
                CacheError(std::string(backend_->name()) + " " + operation + ": unknown exception",
                           std::string(backend_->name()), operation));
        }
        return std::nullopt;
    }

    template <class R>
    std::optional<CacheValue> encode(const std::string& key, const R& value, std::int64_t stamp,
                                     std::string_view check) noexcept {
        try {
            CacheValue out;
            if (backend_->stores_objects()) {
                out.object =
                    std::make_shared<const CachedObject<R>>(stamp, std::string(check), value);
            } else {
                std::string payload;
                if constexpr (HasCodec<R>) {
                    payload = codec<R>::encode(value);
                } else {
                    payload = config_.serializer.encode(to_payload(value));
                }
                out.bytes = seal_envelope(stamp, check, payload);
            }
            return out;
        } catch (const std::exception& e) {
            report(CacheError(std::string("cannot encode value for ") + key + ": " + e.what(),
                              std::string(backend_->name()), "encode"));
            return std::nullopt;
        }
    }

    /// The entry's value if it decodes and is still valid (stamp and check match). A corrupt
    /// entry is counted, reported and deleted; a stale one is simply a miss.
    template <class R>
    std::optional<R> decode(const std::string& key, const CacheValue& cached, std::int64_t stamp,
                            std::string_view check, bool* stale = nullptr) noexcept {
        try {
            if (cached.object) {
                const auto* base = static_cast<const CachedObjectBase*>(cached.object.get());
                if (*base->type != typeid(R))
                    throw SerializationError("cached object has another type");
                if (base->stamp != stamp || base->check != check) {
                    if (stale != nullptr)
                        *stale = true;
                    return std::nullopt;
                }
                return static_cast<const CachedObject<R>*>(base)->value;
            }
            const std::optional<std::string_view> opened =
                open_envelope(cached.bytes, stamp, check);
            if (!opened) {
                if (stale != nullptr)
                    *stale = true;
                return std::nullopt;
            }
            const std::string_view bytes = *opened;
            if constexpr (HasCodec<R>) {
                return codec<R>::decode(bytes);
            } else {
                return from_payload<R>(config_.serializer.decode(bytes));
            }
        } catch (const std::exception& e) {
            report(CacheError(std::string("corrupt cache entry ") + key + ": " + e.what(),
                              std::string(backend_->name()), "decode"));
            drop(key);
            return std::nullopt;
        }
    }

    /// Deletes `key` (a corrupt or stale entry, or a lease given back); a failure is absorbed.
    void drop(const std::string& key) noexcept {
        guarded("remove", [&] {
            backend_->invalidate(InvalidationBatch{{key}, {}, {}});
            return true;
        });
    }

    template <class R>
    struct Lookup {
        std::optional<R> hit;
        std::int64_t stamp = 0;
        std::string lease;
    };

    /// One backend read: a valid entry, or the counter (and a lease when asked); no counter
    /// (empty) for region values. An entry that is stale (older counter) is removed, so that
    /// the lease can be taken on the key: left in place it would block every fill until it
    /// expired (byte backends that honour ReadRequest::stamp_prefix never return one then).
    /// Whether a lookup that misses also takes the fill lease on the key.
    enum class TakeLease : bool { no, yes };

    template <class R>
    std::optional<Lookup<R>> lookup(const std::string& key, std::string_view check,
                                    std::string_view counter, TakeLease take_lease) {
        const bool lease = take_lease == TakeLease::yes;
        const auto request = [&] {
            return backend_->read(
                ReadRequest{key,
                            counter.empty() ? std::vector<std::string>{}
                                            : std::vector<std::string>{std::string(counter)},
                            lease ? std::optional<Ttl>(lease_ttl) : std::nullopt, envelope_tag});
        };
        auto result = guarded("read", request);
        if (!result)
            return std::nullopt;
        Lookup<R> out;
        out.stamp = result->counters.empty() ? 0 : result->counters[0];
        out.lease = std::move(result->lease);
        if (!result->value)
            return out;
        bool stale = false;
        out.hit = decode<R>(key, *result->value, out.stamp, check, &stale);
        if (out.hit || !lease)
            return out;
        if (stale)
            drop(key);
        // Stale or corrupt (decode removed it): try again for the lease on the now-empty key.
        if (auto again = guarded("read", request)) {
            out.stamp = again->counters.empty() ? 0 : again->counters[0];
            out.lease = std::move(again->lease);
        }
        return out;
    }

    /// Loads from the database and stores the result under the lease and guards. If the load
    /// throws, the lease is given back (removing the key), so the next reader can fill.
    /// What load_and_store() tells a flight's leader of its fill.
    struct FillReport {
        FlightClock* clock = nullptr;  ///< when set, `sent_at` is ticked right before the fill
        FlightClock::Tick sent_at = 0;
        bool landed = false;  ///< the value landed in the cache
    };

    template <class R>
    R load_and_store(const ReadTarget& target, std::int64_t stamp, const std::string& lease,
                     const std::vector<std::pair<std::string, std::int64_t>>& guards,
                     std::optional<std::chrono::seconds> ttl, LoadRef<R> load,
                     FillReport* report = nullptr) {
        R value = [&] {
            try {
                return load();
            } catch (...) {
                if (!lease.empty())
                    drop(target.key);
                throw;
            }
        }();
        if (report != nullptr && report->clock != nullptr)
            report->sent_at = report->clock->tick();
        const bool landed = store(target, value, stamp, ttl, lease, guards);
        if (report != nullptr)
            report->landed = landed;
        return value;
    }

    /// Whether the value landed in the cache.
    template <class R>
    bool store(const ReadTarget& target, const R& value, std::int64_t stamp,
               std::optional<std::chrono::seconds> ttl, const std::string& lease,
               const std::vector<std::pair<std::string, std::int64_t>>& guards) {
        // Never fill an entity without holding its lease. A query result may be stored
        // without one (the lease was someone else's, or a lock wait timed out): it is
        // stamped with the list version read before the query ran, so an overtaking commit
        // has made it unreachable already.
        if (target.entity && lease.empty())
            return false;
        auto encoded = encode(target.key, value, stamp, target.check);
        if (!encoded) {
            // Give the lease back, or the key could not be filled until the lease expired.
            if (!lease.empty())
                drop(target.key);
            return false;
        }
        auto landed = guarded("fill", [&] {
            return backend_->fill(
                FillRequest{target.key, std::move(*encoded), ttl_of(ttl), lease, guards});
        });
        if (!landed || !*landed)
            return false;
        sets_.fetch_add(1, std::memory_order_relaxed);
        return true;
    }

    /// A shared read with no cache to answer (null backend, or the backend is down): still
    /// one load per key among concurrent callers, so switching the cache off does not change
    /// the database's load. Tagged with the table's commit count, so a read that starts after
    /// a commit of this process never joins a load that started before it; a commit of another
    /// process is invisible here, so a database result is only ever fresh for the reads that
    /// started before its load did (the others wait for it, then read again).
    template <class R>
    R uncached_flight(const ReadTarget& target, const ReadContext& context,
                      FlightClock::Tick started, LoadRef<R> load) {
        bool waited = false;
        const CountWait count_wait{waited, singleflight_waits_};
        auto result = uncached_flights_.run(
            target.key, static_cast<std::int64_t>(context.table_commits), started,
            [&]() -> Singleflight::Outcome {
                const FlightClock::Tick fresh_as_of =
                    target.from_database() ? flight_clock_.tick() : Singleflight::always_fresh;
                return {std::make_shared<const R>(load()), fresh_as_of};
            },
            waited);
        return *std::static_pointer_cast<const R>(result);
    }

    /// Whether the backend accepted the batch.
    bool apply(const InvalidationBatch& batch);

    CacheConfig config_;
    KeyLayout keys_{config_.key_prefix, config_.serializer.name};
    std::unique_ptr<AnyBackend> backend_;
    bool null_ = false;
    FlightClock flight_clock_;       // tells both kinds of flight which results are fresh
    Singleflight flights_;           // reads with a cache counter, tagged with its value
    Singleflight uncached_flights_;  // reads without one, tagged with the table's commit count

    mutable std::shared_mutex models_mutex_;  // guards models_
    std::unordered_map<std::string, std::vector<ModelEntry>> models_;

    mutable std::shared_mutex databases_mutex_;  // guards databases_
    /// Identities of the databases this cache has served (key_space()).
    std::set<std::string, std::less<>> databases_;

    std::atomic<std::uint64_t> hits_{0}, misses_{0}, sets_{0}, invalidations_{0}, version_bumps_{0},
        singleflight_waits_{0}, errors_{0};
};

#if ORMCACHE_DEFINITIONS

ORMCACHE_INLINE CacheCore::CacheCore(CacheConfig config) : config_(std::move(config)) {
    validate();
    if (!config_.enabled) {
        backend_ = std::make_unique<AnyBackend>(std::make_unique<NullBackend>());
    } else {
        backend_ = make_backend(config_);
    }
    null_ = backend_->name() == "null";
}

ORMCACHE_INLINE CacheStats CacheCore::stats() const {
    CacheStats s;
    s.hits = hits_.load(std::memory_order_relaxed);
    s.misses = misses_.load(std::memory_order_relaxed);
    s.sets = sets_.load(std::memory_order_relaxed);
    s.invalidations = invalidations_.load(std::memory_order_relaxed);
    s.version_bumps = version_bumps_.load(std::memory_order_relaxed);
    s.singleflight_waits = singleflight_waits_.load(std::memory_order_relaxed);
    s.singleflight_rereads = flights_.rereads() + uncached_flights_.rereads();
    s.errors = errors_.load(std::memory_order_relaxed);
    return s;
}

ORMCACHE_INLINE std::string CacheCore::key_space(const DatabaseState& database) {
    if (!active())
        return "#" + std::to_string(database.serial()) + ':';
    const std::string& id = database.cache_identity();
    {
        std::shared_lock lock(databases_mutex_);
        if (databases_.contains(id))
            return keys_.space(id);
    }
    std::unique_lock lock(databases_mutex_);
    databases_.emplace(id);
    return keys_.space(id);
}

ORMCACHE_INLINE bool CacheCore::on_commit(std::string_view space, const ChangeSet& changes) {
    if (!active() || changes.empty())
        return true;
    InvalidationBatch batch;
    std::shared_lock lock(models_mutex_);
    for (const auto& table : changes.tables()) {
        batch.bump.push_back(keys_.version_key(space, table));
        version_bumps_.fetch_add(1, std::memory_order_relaxed);
        const auto it = models_.find(table);
        bool whole = it == models_.end() || changes.whole_table(table);
        std::vector<PrimaryKey> keys;
        if (!whole) {
            keys = changes.keys(table);
            for (const auto& k : keys) {
                for (const auto& model : it->second) {
                    // A text-keyed model that got rowids cannot name its rows.
                    if (model.text_pk && !std::holds_alternative<std::string>(k))
                        whole = true;
                }
            }
        }
        if (whole) {
            batch.bump.push_back(keys_.generation_key(space, table));
            continue;
        }
        if (!keys.empty())
            batch.fallback_bump.push_back(keys_.generation_key(space, table));
        for (const auto& k : keys) {
            for (const auto& model : it->second)
                batch.remove.push_back(keys_.entity_key(space, table, model.digest, k));
        }
    }
    lock.unlock();
    return apply(batch);
}

ORMCACHE_INLINE void CacheCore::clear() {
    if (!active())
        return;
    guarded("clear", [&] {
        backend_->clear();
        return true;
    });
}

ORMCACHE_INLINE std::optional<CounterSnapshot> CacheCore::snapshot_counters(
    const DatabaseState& database) noexcept {
    if (!active())
        return std::nullopt;
    std::vector<std::string> counters;
    try {
        const std::string space = key_space(database);
        std::shared_lock lock(models_mutex_);
        for (const auto& [table, entries] : models_) {
            counters.push_back(keys_.version_key(space, table));
            counters.push_back(keys_.generation_key(space, table));
        }
    } catch (...) {
        // No identity (ConfigError) or no memory: the transaction reads without filling.
        return std::nullopt;
    }
    auto result = guarded("read", [&] {
        return backend_->read(ReadRequest{{}, counters, std::nullopt, {}});
    });
    if (!result || result->counters.size() != counters.size())
        return std::nullopt;
    CounterSnapshot snapshot;
    for (std::size_t i = 0; i < counters.size(); ++i)
        snapshot.emplace(counters[i], result->counters[i]);
    return snapshot;
}

ORMCACHE_INLINE void CacheCore::report(const CacheError& error) noexcept {
    errors_.fetch_add(1, std::memory_order_relaxed);
    if (config_.on_error && !error.continues_incident()) {
        try {
            config_.on_error(error);
        } catch (...) {
            // The callback is for reporting; its own failure must not fail the call.
        }
    }
}

ORMCACHE_INLINE std::vector<std::string> CacheCore::key_spaces() const {
    std::shared_lock lock(databases_mutex_);
    std::vector<std::string> out;
    out.reserve(databases_.size());
    for (const auto& database : databases_)
        out.push_back(keys_.space(database));
    return out;
}

ORMCACHE_INLINE void CacheCore::validate() {
    // `.arguments = {}` in a designated initializer makes a JSON null: it means "none".
    if (config_.arguments.is_null())
        config_.arguments = nlohmann::json::object();
    if (config_.expiration_time.count() < -1) {
        throw ConfigError("CacheConfig::expiration_time must be >= 0 s, or -1 s for never, got " +
                          std::to_string(config_.expiration_time.count()) + " s");
    }
    if (!config_.arguments.is_object()) {
        throw ConfigError("CacheConfig::arguments must be a JSON object, got " +
                          std::string(config_.arguments.type_name()));
    }
    if (!config_.serializer.encode || !config_.serializer.decode) {
        throw ConfigError("CacheConfig::serializer needs both encode and decode functions");
    }
    if (config_.serializer.name.empty() || config_.serializer.name.find(':') != std::string::npos) {
        throw ConfigError("CacheConfig::serializer.name must be non-empty and contain no ':'");
    }
    if (config_.invalidation_bound < std::chrono::milliseconds{4} ||
        config_.invalidation_bound > std::chrono::hours{1}) {
        throw ConfigError("CacheConfig::invalidation_bound must be 4 ms to 1 hour, got " +
                          std::to_string(config_.invalidation_bound.count()) + " ms");
    }
}

ORMCACHE_INLINE Ttl CacheCore::ttl_of(std::optional<std::chrono::seconds> ttl) const {
    const auto seconds = ttl.value_or(config_.expiration_time);
    if (seconds.count() < 0)
        return Ttl{-1};
    return std::chrono::duration_cast<Ttl>(seconds);
}

ORMCACHE_INLINE bool CacheCore::apply(const InvalidationBatch& batch) {
    if (batch.empty())
        return true;
    for (const auto& key : batch.remove)
        flights_.forget(key);
    if (!guarded("invalidate", [&] {
            backend_->invalidate(batch);
            return true;
        }))
        return false;
    invalidations_.fetch_add(batch.remove.size(), std::memory_order_relaxed);
    return true;
}

#endif  // ORMCACHE_DEFINITIONS

}  // namespace ormcache::detail
