#pragma once
// The envelope the byte-storing backends hold, "oc1 <stamp> <len>\n<check><payload>"
// (detail/cache/cache_core.hpp), taken apart and put together independently of the library, so that
// the tests check the format rather than trust it.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace ormcache_test {

struct Envelope {
    std::int64_t stamp = 0;
    std::string check;
    std::string payload;
};

/// The envelope in `bytes`, or nullopt if they are not one.
inline std::optional<Envelope> parse_envelope(std::string_view bytes) {
    if (!bytes.starts_with("oc1 "))
        return std::nullopt;
    bytes.remove_prefix(4);
    const auto space = bytes.find(' ');
    const auto newline = bytes.find('\n');
    if (space == std::string_view::npos || newline == std::string_view::npos || newline < space) {
        return std::nullopt;
    }
    Envelope e;
    e.stamp = std::stoll(std::string(bytes.substr(0, space)));
    const auto size = std::stoull(std::string(bytes.substr(space + 1, newline - space - 1)));
    bytes.remove_prefix(newline + 1);
    if (bytes.size() < size)
        return std::nullopt;
    e.check = std::string(bytes.substr(0, size));
    e.payload = std::string(bytes.substr(size));
    return e;
}

inline std::string make_envelope(std::int64_t stamp, const std::string& check,
                                 const std::string& payload) {
    return "oc1 " + std::to_string(stamp) + " " + std::to_string(check.size()) + "\n" + check +
           payload;
}

}  // namespace ormcache_test
