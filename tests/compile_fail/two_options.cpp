// EXPECT: give at most one ormcache::Options per call
// Must not compile: two ormcache::Options in one list call.
#include <cstdint>
#include <string>

#include <ormcache/ormcache.hpp>

namespace cf {
struct User {
    std::int64_t id = 0;
    std::string name;
};
ORMCACHE_MODEL(User, "users", id, name)
}  // namespace cf

int main() {
    ormcache::Database db{ormcache::DatabaseConfig{}};
    auto session = db.session();
    ormcache::Repository<cf::User> users{session};
    return static_cast<int>(users
                                .list(ormcache::Options{.use_cache = false},
                                      ormcache::ComparisonFilter{&cf::User::name, "=", "x"},
                                      ormcache::Options{.auto_commit = true})
                                .size());
}
