// EXPECT: ORMCACHE_MODEL: the primary key \(first field\) must be an integer or std::string
// Must not compile: a bool primary key (bool is an integral type, but not a key type).
#include <string>

#include <ormcache/ormcache.hpp>

namespace cf {
struct Flag {
    bool id = false;
    std::string name;
};
ORMCACHE_MODEL(Flag, "flags", id, name)
}  // namespace cf

int main() {
    ormcache::Database db{ormcache::DatabaseConfig{}};
    db.create_all<cf::Flag>();
}
