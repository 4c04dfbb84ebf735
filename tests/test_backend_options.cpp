// The typed backend options (docs/reference.md, section 3.4): MemoryOptions passed to
// CacheConfig directly, the one table-driven reader of CacheConfig::arguments and its messages,
// and the options -> JSON -> options round trip. The file, redis and memcached options are
// tested in their own binaries (tests/test_file_options.cpp, the end of test_redis.cpp and
// test_memcached.cpp).

#include <map>
#include <string>
#include <tuple>
#include <type_traits>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <ormcache/ormcache.hpp>

#include "test_support.hpp"

namespace {

using ormcache::CacheConfig;
using ormcache::CacheManager;
using ormcache::MemoryOptions;

std::string memory_error(const nlohmann::json& arguments) {
    try {
        CacheManager m{CacheConfig{.backend = "memory", .arguments = arguments}};
    } catch (const ormcache::ConfigError& e) {
        return e.what();
    }
    return "";
}

/// How many times each key's value was created over a fixed LRU workload.
std::map<std::string, int> lru_workload(const CacheConfig& config) {
    CacheManager m{config};
    std::map<std::string, int> created;
    for (const char* key : {"a", "b", "a", "c", "a", "c", "b", "c", "a"}) {
        m.get_or_create<std::string>(key, [&] {
            ++created[key];
            return std::string(key);
        });
    }
    return created;
}

}  // namespace

TEST_CASE("Backend options: MemoryOptions is CacheConfig::arguments", "[config][options]") {
    const CacheConfig typed{.backend = "memory",
                            .arguments = MemoryOptions{.max_entries = 2, .shards = 1}};
    CHECK(typed.arguments == nlohmann::json{{"max_entries", 2}, {"shards", 1}});
    const CacheConfig json{.backend = "memory", .arguments = {{"max_entries", 2}, {"shards", 1}}};
    // The same LRU behaviour: a capacity of 2 evicts b, then a.
    const auto created = lru_workload(typed);
    CHECK(created == lru_workload(json));
    CHECK(created == std::map<std::string, int>{{"a", 2}, {"b", 2}, {"c", 1}});
    // The default options are the backend's defaults.
    CHECK(CacheConfig{.arguments = MemoryOptions{}}.arguments ==
          nlohmann::json{{"max_entries", 100000}, {"shards", 16}});
    // MemoryBackend::Options is the same struct.
    CHECK(std::is_same_v<ormcache::MemoryBackend::Options, MemoryOptions>);
}

TEST_CASE("Backend options: MemoryOptions round trip through JSON", "[config][options]") {
    for (const MemoryOptions& o :
         {MemoryOptions{}, MemoryOptions{.max_entries = 0}, MemoryOptions{.shards = 1},
          MemoryOptions{.max_entries = 7, .shards = 3}}) {
        const nlohmann::json j = o;
        CAPTURE(j.dump());
        CHECK(j.get<MemoryOptions>() == o);
        CHECK(ormcache::detail::read_options<MemoryOptions>(j) == o);
    }
    CHECK(nlohmann::json::object().get<MemoryOptions>() == MemoryOptions{});
}

TEST_CASE("Backend options: memory argument errors name the field and the valid names",
          "[config][options]") {
    const auto unknown = memory_error({{"max_size", 10}});
    CHECK_THAT(unknown, Catch::Contains("CacheConfig::arguments.max_size") &&
                            Catch::Contains("unknown argument for backend memory") &&
                            Catch::Contains("expected one of max_entries, shards"));
    CHECK(memory_error({{"max_entries", "100"}}) ==
          "CacheConfig::arguments.max_entries must be an integer >= 0 (0 = unbounded), got "
          "\"100\"");
    CHECK(memory_error({{"max_entries", -1}}) ==
          "CacheConfig::arguments.max_entries must be an integer >= 0 (0 = unbounded), got -1");
    CHECK(memory_error({{"shards", 0}}) ==
          "CacheConfig::arguments.shards must be an integer >= 1, got 0");
    CHECK_THAT(memory_error({{"shards", 1.5}}), Catch::Contains("CacheConfig::arguments.shards"));
    // An unsigned JSON integer beyond int64 is out of range, not wrapped around.
    CHECK_THAT(memory_error({{"max_entries", 18446744073709551615ULL}}),
               Catch::Contains("CacheConfig::arguments.max_entries"));
    // A typed config is checked the same way (it becomes the same JSON).
    CHECK_THAT(memory_error(MemoryOptions{.shards = 0}),
               Catch::Contains("CacheConfig::arguments.shards"));
    CHECK_THROWS_AS(nlohmann::json({{"shards", 0}}).get<MemoryOptions>(), ormcache::ConfigError);
}

TEST_CASE("Backend options: the table lists every MemoryOptions member once", "[config][options]") {
    const auto& fields = ormcache::detail::OptionTable<MemoryOptions>::fields;
    CHECK(std::tuple_size_v<std::remove_cvref_t<decltype(fields)>> == 2);
    CHECK(ormcache::detail::argument_names<MemoryOptions>() == "max_entries, shards");
}
