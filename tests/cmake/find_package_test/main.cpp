// Consumer of an installed ormcache (find_package). Uses only the public API (API.md 1-3).
#include <ormcache/ormcache.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>

// Including the backend headers proves that ormcache::redis / ormcache::memcached carry the
// hiredis / libmemcached include paths and libraries. The guard only exists while the
// backends are being written; it is true for every complete installation.
#if __has_include(<ormcache/backends/redis.hpp>)
#include <ormcache/backends/redis.hpp>
#endif
#if __has_include(<ormcache/backends/memcached.hpp>)
#include <ormcache/backends/memcached.hpp>
#endif

namespace app {
struct User {
    std::int64_t id = 0;
    std::string name;
    std::string email;
    std::optional<std::int32_t> age{};
    std::chrono::system_clock::time_point created_at{};
};
ORMCACHE_MODEL(User, "users", id, name, email, age, created_at)
}  // namespace app

int main() {
    ormcache::Database db{ormcache::DatabaseConfig{.connection_string = ":memory:"}};
    db.create_all<app::User>();
    auto s = db.session();
    ormcache::Repository<app::User> users{s};
    auto u = users.add({.name = "Ada", .email = "a@b"});
    s.commit();
    return users.get(u.id).name == "Ada" ? 0 : 1;
}
