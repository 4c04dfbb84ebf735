#pragma once
// Reading a backend's CacheConfig::arguments: every backend checks types and ranges the same
// way, and every ConfigError names the field ("CacheConfig::arguments.<name>") and says what
// was expected and what it got.

#include <chrono>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "../errors.hpp"

namespace ormcache::detail {

inline std::string argument_text(const std::string& key, const nlohmann::json& v) {
    if (!v.is_string()) {
        throw ConfigError("CacheConfig::arguments." + key + " must be a string, got " + v.dump());
    }
    return v.get<std::string>();
}

inline std::int64_t argument_integer(const std::string& key, const nlohmann::json& v,
                                     std::int64_t min, std::int64_t max) {
    if (!v.is_number_integer() || v.get<std::int64_t>() < min || v.get<std::int64_t>() > max) {
        throw ConfigError("CacheConfig::arguments." + key + " must be an integer from " +
                          std::to_string(min) + " to " + std::to_string(max) + ", got " + v.dump());
    }
    return v.get<std::int64_t>();
}

/// A duration given in milliseconds (the `_ms` arguments), at most an hour.
inline std::chrono::milliseconds argument_milliseconds(const std::string& key,
                                                       const nlohmann::json& v,
                                                       std::int64_t min = 1) {
    return std::chrono::milliseconds{argument_integer(key, v, min, 3600000)};
}

inline bool argument_bool(const std::string& key, const nlohmann::json& v) {
    if (!v.is_boolean()) {
        throw ConfigError("CacheConfig::arguments." + key + " must be a boolean, got " + v.dump());
    }
    return v.get<bool>();
}

}  // namespace ormcache::detail
