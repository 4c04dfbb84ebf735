// Compile-time probe (scripts/compile-time.sh): what a user writes, one model, one Database
// with the memory cache, one Repository<T> calling add/get/list/count.

#include <chrono>
#include <cstdint>
#include <optional>
#include <ormcache/ormcache.hpp>
#include <string>

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

std::int64_t one_model_use() {
    ormcache::Database db{ormcache::DatabaseConfig{
        .connection_string = ":memory:",
        .cache_config = ormcache::CacheConfig{.backend = "memory",
                                              .expiration_time = std::chrono::seconds{3600}},
    }};
    db.create_all<app::User>();
    ormcache::Session session = db.session();
    ormcache::Repository<app::User> users{session};
    const app::User ada = users.add({.name = "Ada", .email = "ada@example.org", .age = 36});
    session.commit();
    const app::User again = users.get(ada.id);
    const std::vector<app::User> all = users.list(ormcache::OrderBy{&app::User::name});
    return users.count() + static_cast<std::int64_t>(all.size()) + again.id;
}
