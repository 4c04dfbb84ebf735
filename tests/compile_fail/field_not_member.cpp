// EXPECT: ORMCACHE_MODEL: 'nickname' is not a data member of the model
// Must not compile: ORMCACHE_MODEL lists a name that is not a data member of the model.
#include <cstdint>
#include <string>

#include <ormcache/ormcache.hpp>

namespace cf {
struct Person {
    std::int64_t id = 0;
    std::string name;
};
ORMCACHE_MODEL(Person, "people", id, name, nickname)
}  // namespace cf

int main() {
    return static_cast<int>(ormcache::model_digest<cf::Person>().size());
}
