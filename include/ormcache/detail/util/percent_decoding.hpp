#pragma once
// RFC 3986 percent-decoding ("%20" -> " "), as memcached's metadump writes keys.

#include <optional>
#include <string>
#include <string_view>

#include "linkage.hpp"

namespace ormcache::detail {

/// The decoded bytes, or nothing if a '%' is not followed by two hex digits.
ORMCACHE_INLINE std::optional<std::string> percent_decode(std::string_view text);
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE std::optional<std::string> percent_decode(std::string_view text) {
    const auto hex = [](char c) -> int {
        if (c >= '0' && c <= '9')
            return c - '0';
        if (c >= 'a' && c <= 'f')
            return c - 'a' + 10;
        if (c >= 'A' && c <= 'F')
            return c - 'A' + 10;
        return -1;
    };
    std::string out;
    out.reserve(text.size());
    for (std::size_t i = 0; i < text.size(); ++i) {
        if (text[i] != '%') {
            out += text[i];
            continue;
        }
        if (i + 2 >= text.size())
            return std::nullopt;
        const int high = hex(text[i + 1]);
        const int low = hex(text[i + 2]);
        if (high < 0 || low < 0)
            return std::nullopt;
        out += static_cast<char>(high * 16 + low);
        i += 2;
    }
    return out;
}
#endif

}  // namespace ormcache::detail
