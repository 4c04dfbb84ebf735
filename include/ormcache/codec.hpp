#pragma once
// codec<T>: a per-type byte encoding for non-memory backends. Specialise it with
//   static std::string encode(const T&);  static T decode(std::string_view);
// Without a specialisation, values go through their JSON form (a model's ORMCACHE_MODEL
// mapping, or nlohmann to_json/from_json) and the configured Serializer.

#include <concepts>
#include <string>
#include <string_view>

namespace ormcache {

/// Primary template: "no codec". Specialisations provide encode/decode.
template <class T>
struct codec;

/// T has an ormcache::codec specialisation.
template <class T>
concept HasCodec = requires(const T& value, std::string_view bytes) {
    { codec<T>::encode(value) } -> std::convertible_to<std::string>;
    { codec<T>::decode(bytes) } -> std::convertible_to<T>;
};

}  // namespace ormcache
