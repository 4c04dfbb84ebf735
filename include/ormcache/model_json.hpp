#pragma once
// The JSON form of a model: an object with one member per mapped column. ormcache::to_json /
// ormcache::from_json<T> are explicit functions, so a user's own ADL to_json/from_json for the
// same type keep working untouched. BLOBs are base64 text (binary is accepted when decoding
// msgpack/CBOR), time points integer microseconds since the epoch, non-finite floating-point
// values the strings "NaN", "Infinity", "-Infinity".

#include <string>

#include <nlohmann/json.hpp>

#include "detail/util/type_name.hpp"
#include "errors.hpp"
#include "model.hpp"

namespace ormcache {

template <Model T>
nlohmann::json to_json(const T& entity) {
    (void)detail::ModelInfo<T>::digest;  // instantiate the mapping checks
    nlohmann::json out = nlohmann::json::object();
    detail::for_each_field<T>([&](const auto& f, auto) {
        out[std::string(f.name)] = detail::value_to_json(entity.*(f.member));
    });
    return out;
}

/// Throws SerializationError naming the model and the field when `j` is not this model's JSON
/// form.
template <Model T>
T from_json(const nlohmann::json& j) {
    (void)detail::ModelInfo<T>::digest;
    // "app::User (table 'users')": a cache entry or a payload of which model.
    const auto model = [] {
        return detail::type_name<T>() + " (table '" + std::string(detail::ModelInfo<T>::table) +
               "')";
    };
    if (!j.is_object()) {
        throw SerializationError("JSON of " + model() + " must be an object, got " + j.type_name());
    }
    T entity{};
    detail::for_each_field<T>([&](const auto& f, auto) {
        using M = std::remove_cv_t<typename std::remove_cvref_t<decltype(f)>::value_type>;
        const auto it = j.find(f.name);
        if (it == j.end()) {
            throw SerializationError("JSON of " + model() + " lacks field '" + std::string(f.name) +
                                     "'");
        }
        try {
            entity.*(f.member) = detail::value_from_json<M>(*it, f.name);
        } catch (const SerializationError& e) {
            throw SerializationError("JSON of " + model() + ": " + e.what());
        }
    });
    return entity;
}

}  // namespace ormcache
