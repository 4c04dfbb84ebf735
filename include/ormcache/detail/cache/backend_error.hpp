#pragma once
// The one shape of a backend's CacheError message, "<backend> <operation> on <where>: <what>":
// on_error must say which server (or file) failed doing what. Each C library's mapper
// (redis_error, memcached_error, file_error) builds its errors with it.

#include <string>
#include <string_view>

#include "../../errors.hpp"

namespace ormcache::detail {

inline CacheError backend_error(std::string_view backend, std::string_view where,
                                std::string_view operation, std::string_view what) {
    return CacheError(std::string(backend) + " " + std::string(operation) + " on " +
                          std::string(where) + ": " + std::string(what),
                      std::string(backend), std::string(operation));
}

}  // namespace ormcache::detail
