#pragma once
// The shared state behind a CacheManager: the backend, the key layout, the fill protocol,
// singleflight, stats and the commit listener. Thread-safe.
//
// Keys (every one starts with key_prefix; a database's keys with its key space,
// key_prefix + <database identity> + ":", see detail/sqlite/database_identity.hpp):
//   <space>e:<table>:<digest>:<serializer>:<i|s><key>   one entity (or its absence)
//   <space>q:<table>:<digest>:<serializer>:<kind>:<hash> one list/count/exists result
//   <space>v:<table>                        list version, bumped by every committed change
//   <space>g:<table>                        entity generation, bumped when changed rows
//                                           cannot be named (whole-table changes)
//   <key_prefix>r:<user key>                get_or_create values (the application's keys,
//                                           not a database's)
// An entity entry stores the generation it was read under, a query entry the list version and
// its canonical query text; a read whose counter differs, or whose text differs (a hash
// collision), is a miss. So bumping a counter makes every older entry unreachable at once.

#include <atomic>
#include <charconv>
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

#include <nlohmann/json.hpp>

#include "../../backend.hpp"
#include "../../backends/memory.hpp"
#include "../../cache_config.hpp"
#include "../../cache_stats.hpp"
#include "../../change_set.hpp"
#include "../../codec.hpp"
#include "../../errors.hpp"
#include "../../model.hpp"
#include "../../model_json.hpp"
#include "../sqlite/database_state.hpp"
#include "../util/base64.hpp"
#include "singleflight.hpp"

namespace ormcache::detail {

// ---- payloads: a cached result's JSON form (for byte backends) ----

template <class R>
struct is_model_vector : std::false_type {};
template <Model T>
struct is_model_vector<std::vector<T>> : std::true_type {};

template <class R>
struct is_pair : std::false_type {};
template <class A, class B>
struct is_pair<std::pair<A, B>> : std::true_type {};

template <class R>
nlohmann::json to_payload(const R& value) {
    if constexpr (HasCodec<R>) {
        const std::string bytes = codec<R>::encode(value);
        return base64_encode(std::vector<std::uint8_t>(bytes.begin(), bytes.end()));
    } else if constexpr (Model<R>) {
        return ormcache::to_json(value);
    } else if constexpr (is_optional_v<R>) {
        return value ? to_payload(*value) : nlohmann::json(nullptr);
    } else if constexpr (is_model_vector<R>::value) {
        nlohmann::json out = nlohmann::json::array();
        for (const auto& item : value)
            out.push_back(to_payload(item));
        return out;
    } else if constexpr (is_pair<R>::value) {
        return nlohmann::json{{"items", to_payload(value.first)}, {"total", value.second}};
    } else {
        return nlohmann::json(value);  // nlohmann's own conversions (ADL to_json)
    }
}

template <class R>
R from_payload(const nlohmann::json& j) {
    if constexpr (HasCodec<R>) {
        if (!j.is_string())
            throw SerializationError("codec payload must be base64 text");
        auto bytes = base64_decode(j.get_ref<const std::string&>());
        if (!bytes)
            throw SerializationError("codec payload is not valid base64");
        return codec<R>::decode(
            std::string_view(reinterpret_cast<const char*>(bytes->data()), bytes->size()));
    } else if constexpr (Model<R>) {
        return ormcache::from_json<R>(j);
    } else if constexpr (is_optional_v<R>) {
        if (j.is_null())
            return std::nullopt;
        return from_payload<typename R::value_type>(j);
    } else if constexpr (is_model_vector<R>::value) {
        if (!j.is_array())
            throw SerializationError("cached list payload is not an array");
        R out;
        out.reserve(j.size());
        for (const auto& item : j)
            out.push_back(from_payload<typename R::value_type>(item));
        return out;
    } else if constexpr (is_pair<R>::value) {
        return R{from_payload<typename R::first_type>(j.at("items")),
                 j.at("total").template get<typename R::second_type>()};
    } else {
        return j.template get<R>();
    }
}

template <class K>
PrimaryKey to_primary_key(const K& key) {
    if constexpr (std::is_same_v<K, std::string>) {
        return key;
    } else {
        return to_int64(key);
    }
}

/// What an object-storing backend holds: the result plus its validity stamp and check text.
struct CachedObjectBase {
    const std::type_info* type;
    std::int64_t stamp;
    std::string check;
};
template <class R>
struct CachedObject : CachedObjectBase {
    CachedObject(std::int64_t s, std::string c, R v)
        : CachedObjectBase{&typeid(R), s, std::move(c)}, value(std::move(v)) {}
    R value;
};

/// How a read may use the cache, decided per call from the session's state.
enum class FillMode {
    bypass,     ///< uncommitted changes to the model in this session: database only
    read_only,  ///< read hits, never fill (a transaction whose snapshot is not guarded)
    fill,       ///< fill under a lease (and guards), no singleflight
    shared,     ///< autocommit: singleflight, fill under a lease
};

struct ReadContext {
    FillMode mode = FillMode::shared;
    /// Counter values the fill must still see (the snapshot guard of an explicit transaction).
    std::vector<std::pair<std::string, std::int64_t>> guards;
    /// The commits of this process's Database that changed the table so far
    /// (DatabaseState::table_commits): the singleflight tag of a shared read that has no
    /// cache counter (null backend, backend down).
    std::uint64_t table_commits = 0;
};

/// What one read looks up: the entry and the counter it is valid under.
struct ReadTarget {
    std::string key;
    /// The table's entity generation (entities) or list version (query results).
    std::string counter;
    /// Stored with a query entry and compared on read, so that a hash collision is a miss
    /// (empty for entities, whose key is the whole identity).
    std::string_view check;
    /// Entity entries are never filled without the fill lease (see store()).
    bool entity = false;
};

class CacheCore : public CacheHook, public std::enable_shared_from_this<CacheCore> {
  public:
    explicit CacheCore(CacheConfig config) : config_(std::move(config)) {
        validate();
        if (!config_.enabled) {
            backend_ = std::make_unique<AnyBackend>(std::make_unique<NullBackend>());
        } else {
            backend_ = make_backend(config_);
        }
        null_ = backend_->name() == "null";
    }

    const CacheConfig& config() const noexcept { return config_; }
    bool active() const noexcept { return !null_; }
    AnyBackend& backend() noexcept { return *backend_; }

    CacheStats stats() const {
        CacheStats s;
        s.hits = hits_.load(std::memory_order_relaxed);
        s.misses = misses_.load(std::memory_order_relaxed);
        s.sets = sets_.load(std::memory_order_relaxed);
        s.invalidations = invalidations_.load(std::memory_order_relaxed);
        s.version_bumps = version_bumps_.load(std::memory_order_relaxed);
        s.singleflight_waits = singleflight_waits_.load(std::memory_order_relaxed);
        s.errors = errors_.load(std::memory_order_relaxed);
        return s;
    }

    // ---- keys ----

    // Every read builds its key and counter name, so they are built in place, in one buffer
    // of the right size (no temporaries, no digest string).

    /// The key space of `database` in this cache: key_prefix + its identity + ":". Remembers
    /// the database, so that invalidate<T>() and invalidate_all<T>() reach it. A cache that
    /// is off gets a space no other Database of the process has (only its singleflight uses
    /// keys) and never asks for the identity, which may write to the database.
    std::string key_space(const DatabaseState& database) {
        if (!active())
            return "#" + std::to_string(database.serial()) + ':';
        const std::string& id = database.cache_identity();
        {
            std::shared_lock lock(databases_mutex_);
            if (databases_.contains(id))
                return config_.key_prefix + id + ':';
        }
        std::unique_lock lock(databases_mutex_);
        databases_.emplace(id);
        return config_.key_prefix + id + ':';
    }

    std::string version_key(std::string_view space, std::string_view table) const {
        return counter_key(space, "v:", table);
    }
    std::string generation_key(std::string_view space, std::string_view table) const {
        return counter_key(space, "g:", table);
    }

    template <Model T>
    std::string entity_key(std::string_view space, const PrimaryKey& key) const {
        const auto* text = std::get_if<std::string>(&key);
        std::string out = model_key_head<T>(space, "e:", 1 + (text != nullptr ? text->size() : 20));
        append_key(out, key);
        return out;
    }

    template <Model T>
    std::string query_key(std::string_view space, std::string_view kind,
                          std::string_view canonical) const {
        std::string out = model_key_head<T>(space, "q:", kind.size() + 1 + 32);
        out += kind;
        out += ':';
        append_hash_hex(out, canonical);
        return out;
    }

    template <Model T>
    ReadTarget entity_target(std::string_view space, const PrimaryKey& key) const {
        return ReadTarget{
            entity_key<T>(space, key), generation_key(space, ModelInfo<T>::table), {}, true};
    }

    /// `canonical` (the full query text) must outlive the read.
    template <Model T>
    ReadTarget query_target(std::string_view space, std::string_view kind,
                            std::string_view canonical) const {
        return ReadTarget{query_key<T>(space, kind, canonical),
                          version_key(space, ModelInfo<T>::table), canonical, false};
    }

    std::string region_key(std::string_view key) const {
        return config_.key_prefix + "r:" + std::string(key);
    }

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
        if (!active())
            return context.mode == FillMode::shared ? uncached_flight<R>(target, context, load)
                                                    : load();
        const std::string& key = target.key;
        // The lease is taken in this same round trip unless singleflight will decide who
        // fills (then the leader takes it, see below). Query keys take one too: it is what a
        // distributed lock waits on (an unleased query fill is still safe, see store()).
        const TakeLease lease_now = context.mode == FillMode::fill ? TakeLease::yes : TakeLease::no;
        auto first = lookup<R>(key, target.check, target.counter, lease_now);
        if (!first) {  // backend down: the database answers
            misses_.fetch_add(1, std::memory_order_relaxed);
            return context.mode == FillMode::shared ? uncached_flight<R>(target, context, load)
                                                    : load();
        }
        if (first->hit) {
            hits_.fetch_add(1, std::memory_order_relaxed);
            return std::move(*first->hit);
        }
        misses_.fetch_add(1, std::memory_order_relaxed);
        if (context.mode == FillMode::read_only)
            return load();
        if (context.mode == FillMode::fill) {
            return load_and_store<R>(target, first->stamp, first->lease, context.guards, ttl, load);
        }
        // Shared: one load per key and counter value in this process.
        bool waited = false;
        const CountWait count_wait{waited, singleflight_waits_};
        auto result = flights_.run(
            key, first->stamp,
            [&]() -> Singleflight::Result {
                std::string lease;
                std::int64_t stamp = first->stamp;
                // The leader re-checks: the key may have been filled since our first read, by
                // a flight that landed in between (a miss concurrent with it must not run a
                // second query). This read also takes the lease.
                if (auto second = lookup<R>(key, target.check, target.counter, TakeLease::yes)) {
                    if (second->hit)
                        return std::make_shared<const R>(std::move(*second->hit));
                    stamp = second->stamp;
                    lease = second->lease;
                }
                return std::make_shared<const R>(
                    load_and_store<R>(target, stamp, lease, {}, ttl, load));
            },
            waited);
        return *std::static_pointer_cast<const R>(result);
    }

    // ---- region-style get_or_create ----

    template <class V, class Create>
    V get_or_create(const std::string& user_key, Create&& create,
                    std::optional<std::chrono::seconds> ttl) {
        const std::string key = region_key(user_key);
        if (!active()) {
            // No cache, but concurrent callers still share one creation, as on every backend.
            bool waited = false;
            const CountWait count_wait{waited, singleflight_waits_};
            auto result = uncached_flights_.run(
                key, 0,
                [&]() -> Singleflight::Result { return std::make_shared<const V>(create()); },
                waited);
            return *std::static_pointer_cast<const V>(result);
        }
        // Region values have no counter (only a delete or their TTL ends them), but they go
        // through read and fill like every other entry: the fill lease is what a
        // distributed lock waits on, as dogpile's lock guards its creation functions.
        auto first = lookup<V>(key, {}, {}, TakeLease::no);
        if (first && first->hit) {
            hits_.fetch_add(1, std::memory_order_relaxed);
            return std::move(*first->hit);
        }
        misses_.fetch_add(1, std::memory_order_relaxed);
        bool waited = false;
        const CountWait count_wait{waited, singleflight_waits_};
        auto result = flights_.run(
            key, 0,
            [&]() -> Singleflight::Result {
                std::string lease;
                // Re-check (a flight may have landed since the first read) and take the lease.
                if (auto second = lookup<V>(key, {}, {}, TakeLease::yes)) {
                    if (second->hit)
                        return std::make_shared<const V>(std::move(*second->hit));
                    lease = std::move(second->lease);
                }
                return std::make_shared<const V>(load_and_store<V>(
                    ReadTarget{key, {}, {}, false}, 0, lease, {}, ttl, LoadRef<V>(create)));
            },
            waited);
        return *std::static_pointer_cast<const V>(result);
    }

    // ---- invalidation ----

    /// The commit listener of the database whose key space is `space`: after a successful
    /// commit, drop the changed entities and bump the list version of every changed table, in
    /// one backend batch.
    void on_commit(std::string_view space, const ChangeSet& changes) {
        if (!active() || changes.empty())
            return;
        InvalidationBatch batch;
        std::shared_lock lock(models_mutex_);
        for (const auto& table : changes.tables()) {
            batch.bump.push_back(version_key(space, table));
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
                batch.bump.push_back(generation_key(space, table));
                continue;
            }
            if (!keys.empty())
                batch.fallback_bump.push_back(generation_key(space, table));
            for (const auto& k : keys) {
                for (const auto& model : it->second) {
                    std::string key = std::string(space) + "e:" + table + ":" + model.digest + ":" +
                                      config_.serializer.name + ":";
                    append_key(key, k);
                    batch.remove.push_back(std::move(key));
                }
            }
        }
        lock.unlock();
        apply(batch);
    }

    /// Drops one entity of every database this cache serves (key_space()).
    template <Model T>
    void invalidate_entity(const PrimaryKey& key) {
        if (!active())
            return;  // null backend: nothing to drop, nothing to count
        InvalidationBatch batch;
        for (const auto& space : key_spaces()) {
            batch.remove.push_back(entity_key<T>(space, key));
            batch.bump.push_back(version_key(space, ModelInfo<T>::table));
            batch.fallback_bump.push_back(generation_key(space, ModelInfo<T>::table));
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
            batch.bump.push_back(version_key(space, ModelInfo<T>::table));
            batch.bump.push_back(generation_key(space, ModelInfo<T>::table));
            version_bumps_.fetch_add(1, std::memory_order_relaxed);
        }
        apply(batch);
    }

    void clear() {
        if (!active())
            return;
        guarded("clear", [&] {
            backend_->clear();
            return true;
        });
    }

    /// CacheHook: the counters of every registered table of `database`, read before an
    /// explicit transaction takes its snapshot (the snapshot guard).
    std::optional<CounterSnapshot> snapshot_counters(
        const DatabaseState& database) noexcept override {
        if (!active())
            return std::nullopt;
        std::vector<std::string> counters;
        try {
            const std::string space = key_space(database);
            std::shared_lock lock(models_mutex_);
            for (const auto& [table, entries] : models_) {
                counters.push_back(version_key(space, table));
                counters.push_back(generation_key(space, table));
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

    /// Counts every failure; on_error hears of an outage once (see CacheError::continues_incident).
    void report(const CacheError& error) noexcept {
        errors_.fetch_add(1, std::memory_order_relaxed);
        if (config_.on_error && !error.continues_incident()) {
            try {
                config_.on_error(error);
            } catch (...) {
                // The callback is for reporting; its own failure must not fail the call.
            }
        }
    }

    /// Leases outlive the slowest query we expect; a dead holder's lease only delays fills.
    static constexpr Ttl lease_ttl{30000};

    /// How a byte entry starts: "oc1 <stamp> <check size>\n<check><payload>".
    static constexpr std::string_view envelope_tag{"oc1 "};

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

    std::vector<std::string> key_spaces() const {
        std::shared_lock lock(databases_mutex_);
        std::vector<std::string> out;
        out.reserve(databases_.size());
        for (const auto& database : databases_)
            out.push_back(config_.key_prefix + database + ':');
        return out;
    }

    struct ModelEntry {
        std::string digest;
        bool text_pk;
    };

    void validate() {
        // `.arguments = {}` in a designated initializer makes a JSON null: it means "none".
        if (config_.arguments.is_null())
            config_.arguments = nlohmann::json::object();
        if (config_.expiration_time.count() < -1) {
            throw ConfigError(
                "CacheConfig::expiration_time must be >= 0 s, or -1 s for never, got " +
                std::to_string(config_.expiration_time.count()) + " s");
        }
        if (!config_.arguments.is_object()) {
            throw ConfigError("CacheConfig::arguments must be a JSON object, got " +
                              std::string(config_.arguments.type_name()));
        }
        if (!config_.serializer.encode || !config_.serializer.decode) {
            throw ConfigError("CacheConfig::serializer needs both encode and decode functions");
        }
        if (config_.serializer.name.empty() ||
            config_.serializer.name.find(':') != std::string::npos) {
            throw ConfigError("CacheConfig::serializer.name must be non-empty and contain no ':'");
        }
    }

    static std::string counter_key(std::string_view space, std::string_view kind,
                                   std::string_view table) {
        std::string out;
        out.reserve(space.size() + kind.size() + table.size());
        out += space;
        out += kind;
        out += table;
        return out;
    }

    /// "<space><kind><table>:<model digest>:<serializer>:", with room for `extra` more.
    template <Model T>
    std::string model_key_head(std::string_view space, std::string_view kind,
                               std::size_t extra) const {
        constexpr std::string_view table = ModelInfo<T>::table;
        std::string out;
        out.reserve(space.size() + kind.size() + table.size() + 1 + 16 + 1 +
                    config_.serializer.name.size() + 1 + extra);
        out += space;
        out += kind;
        out += table;
        out += ':';
        append_hex(out, ModelInfo<T>::digest);  // == model_digest<T>()
        out += ':';
        out += config_.serializer.name;
        out += ':';
        return out;
    }

    /// 16 lowercase hex digits, most significant first.
    static void append_hex(std::string& out, std::uint64_t value) {
        static constexpr char hex[] = "0123456789abcdef";
        char digits[16];
        for (int i = 15; i >= 0; --i, value >>= 4)
            digits[i] = hex[value & 15];
        out.append(digits, sizeof digits);
    }

    static void append_key(std::string& out, const PrimaryKey& key) {
        if (const auto* i = std::get_if<std::int64_t>(&key)) {
            out += 'i';
            char digits[24];
            const auto end = std::to_chars(digits, digits + sizeof digits, *i).ptr;
            out.append(digits, static_cast<std::size_t>(end - digits));
        } else if (const auto* s = std::get_if<std::string>(&key)) {
            out += 's';
            out += *s;
        } else {
            out += 'n';
        }
    }

    /// 128 bits from two independent 64-bit FNV-1a variants; the entry also stores the full
    /// text, so a collision is a miss, never a wrong answer.
    static void append_hash_hex(std::string& out, std::string_view text) {
        append_hex(out, fnv1a(0xcbf29ce484222325ULL, text));
        append_hex(out, fnv1a(0x84222325cbf29ce4ULL, text) ^ (text.size() * 0x9e3779b97f4a7c15ULL));
    }

    Ttl ttl_of(std::optional<std::chrono::seconds> ttl) const {
        const auto seconds = ttl.value_or(config_.expiration_time);
        if (seconds.count() < 0)
            return Ttl{-1};
        return std::chrono::duration_cast<Ttl>(seconds);
    }

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

    /// A byte entry: the envelope (see envelope_tag) around `payload`.
    static std::string seal_envelope(std::int64_t stamp, std::string_view check,
                                     std::string_view payload) {
        std::string out = std::string(envelope_tag) + std::to_string(stamp) + " " +
                          std::to_string(check.size()) + "\n";
        out.append(check);
        out.append(payload);
        return out;
    }

    /// The payload of a byte entry, or nullopt when it is stale (another stamp or check);
    /// throws SerializationError (or std::stoll's errors) when the envelope is corrupt.
    static std::optional<std::string_view> open_envelope(std::string_view bytes, std::int64_t stamp,
                                                         std::string_view check) {
        if (!bytes.starts_with(envelope_tag))
            throw SerializationError("unknown envelope");
        bytes.remove_prefix(envelope_tag.size());
        const auto space = bytes.find(' ');
        const auto newline = bytes.find('\n');
        if (space == std::string_view::npos || newline == std::string_view::npos ||
            newline < space) {
            throw SerializationError("truncated envelope");
        }
        const std::int64_t stored = std::stoll(std::string(bytes.substr(0, space)));
        const std::size_t check_size =
            std::stoull(std::string(bytes.substr(space + 1, newline - space - 1)));
        bytes.remove_prefix(newline + 1);
        if (bytes.size() < check_size)
            throw SerializationError("truncated envelope");
        if (stored != stamp || bytes.substr(0, check_size) != check)
            return std::nullopt;
        bytes.remove_prefix(check_size);
        return bytes;
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
    template <class R>
    R load_and_store(const ReadTarget& target, std::int64_t stamp, const std::string& lease,
                     const std::vector<std::pair<std::string, std::int64_t>>& guards,
                     std::optional<std::chrono::seconds> ttl, LoadRef<R> load) {
        R value = [&] {
            try {
                return load();
            } catch (...) {
                if (!lease.empty())
                    drop(target.key);
                throw;
            }
        }();
        store(target, value, stamp, ttl, lease, guards);
        return value;
    }

    template <class R>
    void store(const ReadTarget& target, const R& value, std::int64_t stamp,
               std::optional<std::chrono::seconds> ttl, const std::string& lease,
               const std::vector<std::pair<std::string, std::int64_t>>& guards) {
        // Never fill an entity without holding its lease. A query result may be stored
        // without one (the lease was someone else's, or a lock wait timed out): it is
        // stamped with the list version read before the query ran, so an overtaking commit
        // has made it unreachable already.
        if (target.entity && lease.empty())
            return;
        auto encoded = encode(target.key, value, stamp, target.check);
        if (!encoded) {
            // Give the lease back, or the key could not be filled until the lease expired.
            if (!lease.empty())
                drop(target.key);
            return;
        }
        auto landed = guarded("fill", [&] {
            return backend_->fill(
                FillRequest{target.key, std::move(*encoded), ttl_of(ttl), lease, guards});
        });
        if (landed && *landed)
            sets_.fetch_add(1, std::memory_order_relaxed);
    }

    /// A shared read with no cache to answer (null backend, or the backend is down): still
    /// one load per key among concurrent callers, so switching the cache off does not change
    /// the database's load. Tagged with the table's commit count, so a read that starts after
    /// a commit of this process never joins a load that started before it.
    template <class R>
    R uncached_flight(const ReadTarget& target, const ReadContext& context, LoadRef<R> load) {
        bool waited = false;
        const CountWait count_wait{waited, singleflight_waits_};
        auto result = uncached_flights_.run(
            target.key, static_cast<std::int64_t>(context.table_commits),
            [&]() -> Singleflight::Result { return std::make_shared<const R>(load()); }, waited);
        return *std::static_pointer_cast<const R>(result);
    }

    void apply(const InvalidationBatch& batch) {
        if (batch.empty())
            return;
        for (const auto& key : batch.remove)
            flights_.forget(key);
        if (guarded("invalidate", [&] {
                backend_->invalidate(batch);
                return true;
            })) {
            invalidations_.fetch_add(batch.remove.size(), std::memory_order_relaxed);
        }
    }

    CacheConfig config_;
    std::unique_ptr<AnyBackend> backend_;
    bool null_ = false;
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

}  // namespace ormcache::detail
