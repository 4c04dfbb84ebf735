#pragma once
// FakeBackend: a byte-storing cache backend for the tests, registered by name with
// ormcache::register_backend the way a user's own backend would be.
//
// It stores bytes (stores_objects = false), so every value goes through the envelope, the
// serializer and the codecs, as with a network cache. It keeps its data in a FakeStore that the
// test holds too, so a test can look at the stored keys and raw bytes, count the calls of each
// operation, and inject faults: throw a CacheError or a std::runtime_error on chosen operations
// (always, or for the next N calls), or corrupt a stored value. Thread-safe (one mutex).
//
// Semantics follow the Backend concept of <ormcache/backend.hpp>, like the memory backend:
// entries with a TTL, fill leases, counters created from the clock when missing, guarded fills.
//
//   auto store = ormcache_test::FakeStore::create();
//   ormcache::CacheConfig cache = store->config();   // backend "fake", arguments {"store": id}

#include <array>
#include <atomic>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <ormcache/ormcache.hpp>

namespace ormcache_test {

/// The operations of the Backend concept, named as CacheError::operation() names them.
enum class Op : std::size_t { read, fill, invalidate, clear };
inline constexpr std::size_t kOpCount = 4;
inline constexpr std::array<Op, kOpCount> kAllOps{Op::read, Op::fill, Op::invalidate, Op::clear};

inline const char* op_name(Op op) {
    static constexpr const char* names[] = {"read", "fill", "invalidate", "clear"};
    return names[static_cast<std::size_t>(op)];
}

/// What an injected failure throws.
enum class Fault {
    cache_error,    ///< ormcache::CacheError{"injected ...", "fake", <operation>}
    runtime_error,  ///< std::runtime_error (the manager must wrap it itself)
};

class FakeStore {
  public:
    using Clock = std::chrono::steady_clock;

    /// A new, empty store, reachable by the "fake" backend through its id.
    static std::shared_ptr<FakeStore> create() {
        auto store = std::shared_ptr<FakeStore>(new FakeStore(next_id()));
        auto& reg = registry();
        std::lock_guard lock(reg.mutex);
        reg.stores[store->id_] = store;
        return store;
    }

    /// The store registered under `id`, if it is still alive.
    static std::shared_ptr<FakeStore> find(const std::string& id) {
        auto& reg = registry();
        std::lock_guard lock(reg.mutex);
        auto it = reg.stores.find(id);
        return it == reg.stores.end() ? nullptr : it->second.lock();
    }

    const std::string& id() const noexcept { return id_; }

    /// A CacheConfig whose backend is this store.
    ormcache::CacheConfig config(std::string backend = "fake") const {
        ormcache::CacheConfig c;
        c.backend = std::move(backend);
        c.arguments = nlohmann::json{{"store", id_}};
        return c;
    }

    // ---- fault injection ----

    /// Every call of `op` fails until heal().
    void fail(Op op, Fault fault = Fault::cache_error) {
        std::lock_guard lock(mutex_);
        always_[index(op)] = fault;
    }
    /// Every call of every operation fails until heal().
    void fail_all(Fault fault = Fault::cache_error) {
        for (Op op : kAllOps)
            fail(op, fault);
    }
    /// The next `n` calls of `op` fail.
    void fail_next(Op op, std::size_t n, Fault fault = Fault::cache_error) {
        std::lock_guard lock(mutex_);
        next_[index(op)] = {n, fault};
    }
    /// No more injected failures.
    void heal() {
        std::lock_guard lock(mutex_);
        for (auto& a : always_)
            a.reset();
        for (auto& n : next_)
            n = {0, Fault::cache_error};
    }

    // ---- calls ----

    /// Calls of `op` so far (failed ones included).
    std::size_t calls(Op op) const {
        std::lock_guard lock(mutex_);
        return calls_[index(op)];
    }
    std::size_t total_calls() const {
        std::lock_guard lock(mutex_);
        std::size_t n = 0;
        for (auto c : calls_)
            n += c;
        return n;
    }
    /// Injected failures thrown so far.
    std::size_t failures() const {
        std::lock_guard lock(mutex_);
        return failures_;
    }
    /// The operation of each injected failure so far, in order.
    std::vector<std::string> failed_ops() const {
        std::lock_guard lock(mutex_);
        return failed_ops_;
    }
    void reset_calls() {
        std::lock_guard lock(mutex_);
        calls_.fill(0);
        failures_ = 0;
        failed_ops_.clear();
    }
    /// How many backends the factory built on this store.
    std::size_t backends_built() const { return built_.load(); }
    /// Values handed over as objects instead of bytes (never expected: stores_objects = false).
    std::size_t objects_received() const { return objects_.load(); }

    // ---- contents ----

    /// Keys holding a value (not a lease, not expired), in order.
    std::vector<std::string> keys() const {
        std::lock_guard lock(mutex_);
        std::vector<std::string> out;
        const auto now = Clock::now();
        for (const auto& [key, e] : entries_) {
            if (e.lease.empty() && !expired(e, now))
                out.push_back(key);
        }
        return out;
    }
    /// Keys holding a value whose name contains `part`.
    std::vector<std::string> keys_containing(std::string_view part) const {
        std::vector<std::string> out;
        for (auto& k : keys()) {
            if (k.find(part) != std::string::npos)
                out.push_back(std::move(k));
        }
        return out;
    }
    /// Keys held by a fill lease now.
    std::vector<std::string> lease_keys() const {
        std::lock_guard lock(mutex_);
        std::vector<std::string> out;
        const auto now = Clock::now();
        for (const auto& [key, e] : entries_) {
            if (!e.lease.empty() && !expired(e, now))
                out.push_back(key);
        }
        return out;
    }
    /// The raw bytes stored under `key` (not a lease, not expired).
    std::optional<std::string> raw(const std::string& key) const {
        std::lock_guard lock(mutex_);
        auto it = entries_.find(key);
        if (it == entries_.end() || !it->second.lease.empty() ||
            expired(it->second, Clock::now())) {
            return std::nullopt;
        }
        return it->second.bytes;
    }
    bool contains(const std::string& key) const { return raw(key).has_value(); }
    /// The TTL the value under `key` was stored with.
    std::optional<ormcache::Ttl> ttl(const std::string& key) const {
        std::lock_guard lock(mutex_);
        auto it = entries_.find(key);
        if (it == entries_.end() || !it->second.lease.empty())
            return std::nullopt;
        return it->second.ttl;
    }
    /// Stores `bytes` under `key` directly (no call is counted).
    void put_raw(const std::string& key, std::string bytes, ormcache::Ttl ttl = ormcache::Ttl{-1}) {
        std::lock_guard lock(mutex_);
        entries_[key] = make_entry(std::move(bytes), ttl, Clock::now());
    }
    /// Replaces the value under `key` with `bytes`; false if no value is there.
    bool corrupt(const std::string& key, std::string bytes = std::string("\x01garbage\xff", 9)) {
        std::lock_guard lock(mutex_);
        auto it = entries_.find(key);
        if (it == entries_.end() || !it->second.lease.empty())
            return false;
        it->second.bytes = std::move(bytes);
        return true;
    }
    /// Takes a lease on `key` as another process would (fills by others are then dropped).
    void plant_lease(const std::string& key, ormcache::Ttl ttl = ormcache::Ttl{60000}) {
        std::lock_guard lock(mutex_);
        Entry e = make_entry({}, ttl, Clock::now());
        e.lease = "foreign-lease";
        entries_[key] = std::move(e);
    }
    /// A counter's value, if it exists.
    std::optional<std::int64_t> counter(const std::string& key) const {
        std::lock_guard lock(mutex_);
        auto it = counters_.find(key);
        if (it == counters_.end())
            return std::nullopt;
        return it->second;
    }
    std::map<std::string, std::int64_t> counters() const {
        std::lock_guard lock(mutex_);
        return counters_;
    }
    /// Every key in an invalidation batch's `remove`, in order.
    std::vector<std::string> removed() const {
        std::lock_guard lock(mutex_);
        return removed_;
    }
    bool was_removed(const std::string& key) const {
        for (const auto& k : removed()) {
            if (k == key)
                return true;
        }
        return false;
    }
    void clear_removed() {
        std::lock_guard lock(mutex_);
        removed_.clear();
    }

    // ---- the Backend operations (called by FakeBackend) ----

    ormcache::ReadResult read(const ormcache::ReadRequest& request) {
        std::lock_guard lock(mutex_);
        enter(Op::read);
        ormcache::ReadResult result;
        for (const auto& c : request.counters)
            result.counters.push_back(counter_locked(c));
        const auto now = Clock::now();
        auto it = find_live(request.key, now);
        if (it != entries_.end()) {
            if (it->second.lease.empty())
                result.value = ormcache::CacheValue{it->second.bytes, nullptr};
            return result;  // a value, or someone's lease: a miss without a lease
        }
        if (request.lease_ttl) {
            Entry e = make_entry({}, *request.lease_ttl, now);
            e.lease = "lease-" + std::to_string(++lease_counter_);
            result.lease = e.lease;
            entries_[request.key] = std::move(e);
        }
        return result;
    }

    bool fill(const ormcache::FillRequest& request) {
        std::lock_guard lock(mutex_);
        enter(Op::fill);
        if (request.value.object)
            ++objects_;
        const auto now = Clock::now();
        auto it = find_live(request.key, now);
        if (!request.lease.empty()) {
            if (it == entries_.end() || it->second.lease != request.lease)
                return false;
        }
        for (const auto& [counter, expected] : request.guards) {
            if (counter_locked(counter) != expected) {
                if (it != entries_.end() && !request.lease.empty())
                    entries_.erase(it);
                return false;
            }
        }
        entries_[request.key] = make_entry(request.value.bytes, request.ttl, now);
        return true;
    }

    void invalidate(const ormcache::InvalidationBatch& batch) {
        std::lock_guard lock(mutex_);
        enter(Op::invalidate);
        for (const auto& c : batch.bump)
            counters_[c] = counter_locked(c) + 1;
        for (const auto& k : batch.remove) {
            removed_.push_back(k);
            entries_.erase(k);
        }
    }

    /// Drops every entry under `prefix` (counters stay, as in the memory backend).
    void clear(const std::string& prefix) {
        std::lock_guard lock(mutex_);
        enter(Op::clear);
        for (auto it = entries_.begin(); it != entries_.end();) {
            it = it->first.starts_with(prefix) ? entries_.erase(it) : std::next(it);
        }
    }

    void note_built() { ++built_; }

  private:
    struct Entry {
        std::string bytes;
        std::string lease;  // non-empty: a fill lease, not a value
        ormcache::Ttl ttl{-1};
        Clock::time_point expires = Clock::time_point::max();
    };

    struct Registry {
        std::mutex mutex;  // guards stores
        std::map<std::string, std::weak_ptr<FakeStore>> stores;
    };

    explicit FakeStore(std::string id) : id_(std::move(id)) {}

    static Registry& registry() {
        static Registry r;
        return r;
    }
    static std::string next_id() {
        static std::atomic<std::uint64_t> n{0};
        return "fake-store-" + std::to_string(++n);
    }
    static std::size_t index(Op op) { return static_cast<std::size_t>(op); }

    static bool expired(const Entry& e, Clock::time_point now) { return e.expires <= now; }

    static Entry make_entry(std::string bytes, ormcache::Ttl ttl, Clock::time_point now) {
        Entry e;
        e.bytes = std::move(bytes);
        e.ttl = ttl;
        if (ttl.count() >= 0)
            e.expires = now + ttl;
        return e;
    }

    std::map<std::string, Entry>::iterator find_live(const std::string& key,
                                                     Clock::time_point now) {
        auto it = entries_.find(key);
        if (it != entries_.end() && expired(it->second, now)) {
            entries_.erase(it);
            return entries_.end();
        }
        return it;
    }

    std::int64_t counter_locked(const std::string& key) {
        auto it = counters_.find(key);
        if (it == counters_.end()) {
            const auto seed = std::chrono::duration_cast<std::chrono::microseconds>(
                                  std::chrono::system_clock::now().time_since_epoch())
                                  .count();
            it = counters_.emplace(key, seed).first;
        }
        return it->second;
    }

    /// Counts the call and throws if a failure is due. Called with mutex_ held.
    void enter(Op op) {
        ++calls_[index(op)];
        std::optional<Fault> fault = always_[index(op)];
        auto& next = next_[index(op)];
        if (!fault && next.first > 0) {
            --next.first;
            fault = next.second;
        }
        if (!fault)
            return;
        ++failures_;
        failed_ops_.emplace_back(op_name(op));
        if (*fault == Fault::cache_error) {
            throw ormcache::CacheError(std::string("injected failure in ") + op_name(op), "fake",
                                       op_name(op));
        }
        throw std::runtime_error(std::string("injected runtime failure in ") + op_name(op));
    }

    const std::string id_;
    mutable std::mutex mutex_;  // guards everything below except the atomics
    std::map<std::string, Entry> entries_;
    std::map<std::string, std::int64_t> counters_;
    std::vector<std::string> removed_;
    std::array<std::size_t, kOpCount> calls_{};
    std::array<std::optional<Fault>, kOpCount> always_{};
    std::array<std::pair<std::size_t, Fault>, kOpCount> next_{};
    std::size_t failures_ = 0;
    std::vector<std::string> failed_ops_;
    std::uint64_t lease_counter_ = 0;
    std::atomic<std::size_t> built_{0};
    std::atomic<std::size_t> objects_{0};
};

/// The Backend: a thin handle on a FakeStore. clear() drops only keys under the config's
/// key_prefix (the store may be shared by managers with different prefixes).
class FakeBackend {
  public:
    static constexpr bool stores_objects = false;

    FakeBackend(std::shared_ptr<FakeStore> store, std::string key_prefix)
        : store_(std::move(store)), prefix_(std::move(key_prefix)) {}

    std::string_view name() const noexcept { return "fake"; }
    ormcache::ReadResult read(const ormcache::ReadRequest& r) { return store_->read(r); }
    bool fill(const ormcache::FillRequest& f) { return store_->fill(f); }
    void invalidate(const ormcache::InvalidationBatch& batch) { store_->invalidate(batch); }
    void clear() { store_->clear(prefix_); }

    FakeStore& store() noexcept { return *store_; }

  private:
    std::shared_ptr<FakeStore> store_;
    std::string prefix_;
};

static_assert(ormcache::Backend<FakeBackend>);

/// Registers the fake backend under `name`, as a user registers a backend. Its arguments:
/// "store" (required, a FakeStore id); any other argument is a ConfigError naming it.
inline void register_fake_backend(const std::string& name = "fake") {
    ormcache::register_backend(name, [](const ormcache::CacheConfig& config) {
        std::shared_ptr<FakeStore> store;
        for (const auto& [key, value] : config.arguments.items()) {
            if (key != "store") {
                throw ormcache::ConfigError("CacheConfig::arguments." + key +
                                            " is not an argument of the fake backend (store)");
            }
            if (!value.is_string()) {
                throw ormcache::ConfigError("CacheConfig::arguments.store must be a string");
            }
            store = FakeStore::find(value.get<std::string>());
            if (!store) {
                throw ormcache::ConfigError("CacheConfig::arguments.store: no fake store named " +
                                            value.get<std::string>());
            }
        }
        if (!store)
            throw ormcache::ConfigError("CacheConfig::arguments.store is required");
        store->note_built();
        return std::make_unique<ormcache::AnyBackend>(
            std::make_unique<FakeBackend>(std::move(store), config.key_prefix));
    });
}

}  // namespace ormcache_test
