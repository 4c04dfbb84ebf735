// EXPECT: this filter names a member of another model than the repository's
// Must not compile: a filter on a member of another model than the repository's.
#include <cstdint>
#include <string>

#include <ormcache/ormcache.hpp>

namespace cf {
struct User {
    std::int64_t id = 0;
    std::string name;
};
ORMCACHE_MODEL(User, "users", id, name)

struct Tag {
    std::int64_t id = 0;
    std::string label;
};
ORMCACHE_MODEL(Tag, "tags", id, label)
}  // namespace cf

int main() {
    ormcache::Database db{ormcache::DatabaseConfig{}};
    auto session = db.session();
    ormcache::Repository<cf::User> users{session};
    return static_cast<int>(users.count(ormcache::ComparisonFilter{&cf::Tag::label, "=", "x"}));
}
