#pragma once
// How non-memory backends turn a value's JSON form into bytes and back. The built-ins wrap
// nlohmann_json's own encoders; a custom serializer is any pair of functions.

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "detail/util/linkage.hpp"

namespace ormcache {

/// A pair of functions between a JSON value and bytes. `name` is part of every cache key, so
/// switching serializers never makes one decode the other's bytes.
struct Serializer {
    std::function<std::string(const nlohmann::json&)> encode;
    std::function<nlohmann::json(std::string_view)> decode;
    std::string name = "custom";
};

namespace serializers {

ORMCACHE_INLINE Serializer json();
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE Serializer json() {
    return Serializer{[](const nlohmann::json& j) { return j.dump(); },
                      [](std::string_view bytes) { return nlohmann::json::parse(bytes); }, "json"};
}
#endif

ORMCACHE_INLINE Serializer msgpack();
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE Serializer msgpack() {
    return Serializer{[](const nlohmann::json& j) {
                          const std::vector<std::uint8_t> out = nlohmann::json::to_msgpack(j);
                          return std::string(out.begin(), out.end());
                      },
                      [](std::string_view bytes) {
                          return nlohmann::json::from_msgpack(bytes.begin(), bytes.end());
                      },
                      "msgpack"};
}
#endif

ORMCACHE_INLINE Serializer cbor();
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE Serializer cbor() {
    return Serializer{[](const nlohmann::json& j) {
                          const std::vector<std::uint8_t> out = nlohmann::json::to_cbor(j);
                          return std::string(out.begin(), out.end());
                      },
                      [](std::string_view bytes) {
                          return nlohmann::json::from_cbor(bytes.begin(), bytes.end());
                      },
                      "cbor"};
}
#endif

}  // namespace serializers
}  // namespace ormcache
