// The backend contract (tests/contract/backend_contract.hpp) on the backends of the core
// binary: "memory" (in-process: one Database's own cache, so the cases across Databases are
// left out) and the byte-storing FakeBackend of tests/support/fake_backend.hpp (one FakeStore
// shared by the Databases of a test, its keys listed). The file, Redis and memcached backends
// run it in their own binaries.

#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <ormcache/ormcache.hpp>

#include "backend_contract.hpp"
#include "backend_test_support.hpp"
#include "fake_backend.hpp"
#include "test_support.hpp"

namespace {

using ormcache::CacheConfig;
using ormcache_test::FakeStore;
using ormcache_test::TempDir;

struct MemoryContract {
    static constexpr std::string_view name = "memory";
    static constexpr bool shared = false;
    static constexpr bool shared_across_processes = false;
    static constexpr bool distributed_lock = false;
    static constexpr bool gated = false;
    static constexpr bool inspectable = false;

    static CacheConfig config(const TempDir&, std::string_view label, const nlohmann::json& extra) {
        CacheConfig c;
        c.backend = "memory";
        c.arguments = extra;
        c.key_prefix = ormcache_test::unique_prefix(label);
        return c;
    }
};

struct FakeContract {
    static constexpr std::string_view name = "fake";
    static constexpr bool shared = true;                    // one FakeStore, found by its id
    static constexpr bool shared_across_processes = false;  // a forked child has a copy
    static constexpr bool distributed_lock = false;
    static constexpr bool gated = false;
    static constexpr bool inspectable = true;

    static CacheConfig config(const TempDir&, std::string_view label, const nlohmann::json& extra) {
        ormcache_test::register_fake_backend();
        auto store = FakeStore::create();
        {
            // Stores live as long as the binary (a test's config may outlive its locals).
            static std::mutex mutex;
            static std::vector<std::shared_ptr<FakeStore>> kept;
            std::lock_guard lock(mutex);
            kept.push_back(store);
        }
        auto c = store->config();
        for (const auto& [k, v] : extra.items())
            c.arguments[k] = v;
        c.key_prefix = ormcache_test::unique_prefix(label);
        return c;
    }
    static constexpr bool faults = true;
    static constexpr bool replays = false;  // what a failed invalidation missed is lost
    /// Every operation of the store fails until end().
    struct Outage {
        std::shared_ptr<FakeStore> store;
        explicit Outage(const CacheConfig& c) : store(find(c)) { store->fail_all(); }
        void end() { store->heal(); }
    };
    static nlohmann::json fault_arguments() { return nlohmann::json::object(); }

    static std::shared_ptr<FakeStore> find(const CacheConfig& c) {
        auto store = FakeStore::find(c.arguments.at("store").get<std::string>());
        REQUIRE(store != nullptr);
        return store;
    }
    /// Values, leases and counters.
    static std::vector<std::string> keys(const CacheConfig& c, const std::string& start) {
        const auto store = find(c);
        std::vector<std::string> all = store->keys();
        for (auto& k : store->lease_keys())
            all.push_back(std::move(k));
        for (const auto& [k, value] : store->counters())
            all.push_back(k);
        std::vector<std::string> out;
        for (auto& k : all) {
            if (k.rfind(start, 0) == 0)
                out.push_back(std::move(k));
        }
        return out;
    }
};

}  // namespace

ORMCACHE_BACKEND_CONTRACT(MemoryContract, "[memory]");
ORMCACHE_BACKEND_CONTRACT(FakeContract, "[fake]");
