// Built with nothing but `c++ main.cpp $(pkg-config --cflags --libs ormcache)`: proves that
// ormcache.pc alone is enough for the core (API.md 1-3). The .pc file does not cover the
// Redis/memcached backends.
#include <ormcache/ormcache.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
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

int main() {
    ormcache::Database db{ormcache::DatabaseConfig{.connection_string = ":memory:"}};
    db.create_all<app::User>();
    auto s = db.session();
    ormcache::Repository<app::User> users{s};
    auto u = users.add({.name = "Ada", .email = "a@b"});
    s.commit();
    return users.get(u.id).name == "Ada" ? 0 : 1;
}
