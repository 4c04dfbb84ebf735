// FileOptions as the typed form of the file backend's CacheConfig::arguments
// (docs/reference.md, section 3.4): accepted by CacheConfig directly, read by the one
// table-driven reader, written back by the same table.

#include <chrono>
#include <string>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <ormcache/backends/file.hpp>
#include <ormcache/ormcache.hpp>

#include "test_support.hpp"

using namespace std::chrono_literals;

namespace {

using ormcache::CacheConfig;
using ormcache::CacheManager;
using ormcache::FileOptions;

std::string file_error(const nlohmann::json& arguments) {
    try {
        CacheManager m{CacheConfig{.backend = "file", .arguments = arguments}};
    } catch (const ormcache::ConfigError& e) {
        return e.what();
    }
    return "";
}

}  // namespace

TEST_CASE("File options: FileOptions is CacheConfig::arguments", "[file][config][options]") {
    ormcache_test::TempDir dir;
    const std::string filename = dir.file("cache.db");
    const CacheConfig typed{.backend = "file",
                            .arguments = FileOptions{.filename = filename, .pool_size = 2},
                            .key_prefix = "opt:"};
    CHECK(typed.arguments.at("filename") == filename);
    CHECK(typed.arguments.at("busy_timeout_ms") == 5000);
    CHECK(typed.arguments.at("pool_size") == 2);
    const CacheConfig json{.backend = "file",
                           .arguments = {{"filename", filename}, {"pool_size", 2}},
                           .key_prefix = "opt:"};
    CHECK(ormcache::detail::file_options(typed.arguments) ==
          ormcache::detail::file_options(json.arguments));

    // The same backend: what one manager stores, the other (on the same file) reads.
    CacheManager writer{typed};
    CacheManager reader{json};
    CHECK(writer.get_or_create<int>("k", [] { return 42; }) == 42);
    CHECK(reader.get_or_create<int>("k", [] { return -1; }) == 42);
    CHECK(reader.stats().hits == 1);
}

TEST_CASE("File options: round trip through JSON", "[file][config][options]") {
    for (const FileOptions& o :
         {FileOptions{.filename = "c.db"}, FileOptions{.filename = "/var/cache/app/ormcache.db",
                                           .busy_timeout = 0ms,
                                           .sweep_every = 0,
                                           .sweep_limit = 7,
                                           .pool_size = 3,
                                           .retry_interval = 0ms,
                                           .distributed_lock = true,
                                           .lock_timeout = 300ms}}) {
        const nlohmann::json j = o;
        CAPTURE(j.dump());
        CHECK(j.get<FileOptions>() == o);
        CHECK(ormcache::detail::file_options(j) == o);
    }
}

TEST_CASE("File options: errors name the field, the backend and the valid names",
          "[file][config][options]") {
    const auto unknown = file_error({{"filename", "c.db"}, {"path", "x"}});
    CHECK(unknown ==
          "CacheConfig::arguments.path: unknown argument for backend file; expected "
          "one of filename, busy_timeout_ms, sweep_every, sweep_limit, pool_size, "
          "retry_interval_ms, distributed_lock, lock_timeout_ms");
    CHECK(file_error({{"filename", "c.db"}, {"pool_size", "abc"}}) ==
          "CacheConfig::arguments.pool_size must be an integer in 1..4096, got \"abc\"");
    CHECK(file_error({{"filename", "c.db"}, {"busy_timeout_ms", -1}}) ==
          "CacheConfig::arguments.busy_timeout_ms must be an integer of milliseconds in "
          "0..3600000, got -1");
    CHECK(file_error({{"filename", "c.db"}, {"distributed_lock", 1}}) ==
          "CacheConfig::arguments.distributed_lock must be a boolean, got 1");
    CHECK(file_error({{"filename", 42}}) ==
          "CacheConfig::arguments.filename must be a non-empty string (the cache file's path), "
          "got 42");
    CHECK(file_error(nlohmann::json::object()) ==
          "CacheConfig::arguments.filename is required by the file backend (the cache file's "
          "path)");
    // A typed config is checked the same way: an empty filename is refused.
    CHECK_THAT(file_error(FileOptions{}), Catch::Contains("CacheConfig::arguments.filename"));
    CHECK_THAT(file_error(FileOptions{.filename = "c.db", .sweep_limit = 0}),
               Catch::Contains("CacheConfig::arguments.sweep_limit"));
}
