// EXPECT: ORMCACHE_MODEL: unsupported column type
// Must not compile: a mapped column of a type ormcache cannot store (std::map).
#include <cstdint>
#include <map>

#include <ormcache/ormcache.hpp>

namespace cf {
struct Histogram {
    std::int64_t id = 0;
    std::map<int, int> buckets;
};
ORMCACHE_MODEL(Histogram, "histograms", id, buckets)
}  // namespace cf

int main() {
    return static_cast<int>(ormcache::model_digest<cf::Histogram>().size());
}
