#pragma once
// A cached result's JSON form (for byte backends, through CacheConfig::serializer) and the
// object form an object-storing backend (memory) keeps instead, so a hit parses nothing.
// Results are models, optionals of models, vectors of models, (vector, total) pairs, or any
// type with a codec<R> or a JSON conversion.

#include <cstdint>
#include <optional>
#include <string>
#include <type_traits>
#include <typeinfo>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../../codec.hpp"
#include "../../errors.hpp"
#include "../../model.hpp"
#include "../../model_json.hpp"
#include "../util/base64.hpp"

namespace ormcache::detail {

template <class R>
struct is_model_vector : std::false_type {};
template <Model T>
struct is_model_vector<std::vector<T>> : std::true_type {};

template <class R>
struct is_pair : std::false_type {};
template <class A, class B>
struct is_pair<std::pair<A, B>> : std::true_type {};

template <class R>
nlohmann::json to_payload(const R& value) {
    if constexpr (HasCodec<R>) {
        const std::string bytes = codec<R>::encode(value);
        return base64_encode(std::vector<std::uint8_t>(bytes.begin(), bytes.end()));
    } else if constexpr (Model<R>) {
        return ormcache::to_json(value);
    } else if constexpr (is_optional_v<R>) {
        return value ? to_payload(*value) : nlohmann::json(nullptr);
    } else if constexpr (is_model_vector<R>::value) {
        nlohmann::json out = nlohmann::json::array();
        for (const auto& item : value)
            out.push_back(to_payload(item));
        return out;
    } else if constexpr (is_pair<R>::value) {
        return nlohmann::json{{"items", to_payload(value.first)}, {"total", value.second}};
    } else {
        return nlohmann::json(value);  // nlohmann's own conversions (ADL to_json)
    }
}

template <class R>
R from_payload(const nlohmann::json& j) {
    if constexpr (HasCodec<R>) {
        if (!j.is_string())
            throw SerializationError("codec payload must be base64 text");
        auto bytes = base64_decode(j.get_ref<const std::string&>());
        if (!bytes)
            throw SerializationError("codec payload is not valid base64");
        return codec<R>::decode(
            std::string_view(reinterpret_cast<const char*>(bytes->data()), bytes->size()));
    } else if constexpr (Model<R>) {
        return ormcache::from_json<R>(j);
    } else if constexpr (is_optional_v<R>) {
        if (j.is_null())
            return std::nullopt;
        return from_payload<typename R::value_type>(j);
    } else if constexpr (is_model_vector<R>::value) {
        if (!j.is_array())
            throw SerializationError("cached list payload is not an array");
        R out;
        out.reserve(j.size());
        for (const auto& item : j)
            out.push_back(from_payload<typename R::value_type>(item));
        return out;
    } else if constexpr (is_pair<R>::value) {
        return R{from_payload<typename R::first_type>(j.at("items")),
                 j.at("total").template get<typename R::second_type>()};
    } else {
        return j.template get<R>();
    }
}
/// What an object-storing backend holds: the result plus its validity stamp and check text.
struct CachedObjectBase {
    const std::type_info* type;
    std::int64_t stamp;
    std::string check;
};
template <class R>
struct CachedObject : CachedObjectBase {
    CachedObject(std::int64_t s, std::string c, R v)
        : CachedObjectBase{&typeid(R), s, std::move(c)}, value(std::move(v)) {}
    R value;
};

}  // namespace ormcache::detail
