#pragma once
// Standard base64 (RFC 4648, with padding): the JSON form of BLOB columns, so that a model's
// JSON text stays valid JSON and round-trips every byte, NULs included.

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "linkage.hpp"

namespace ormcache::detail {

ORMCACHE_INLINE std::string base64_encode(const std::vector<std::uint8_t>& bytes);
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE std::string base64_encode(const std::vector<std::uint8_t>& bytes) {
    static constexpr char alphabet[] =
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    std::string out;
    out.reserve((bytes.size() + 2) / 3 * 4);
    std::size_t i = 0;
    for (; i + 2 < bytes.size(); i += 3) {
        const std::uint32_t n =
            (std::uint32_t{bytes[i]} << 16) | (std::uint32_t{bytes[i + 1]} << 8) | bytes[i + 2];
        out += alphabet[(n >> 18) & 63];
        out += alphabet[(n >> 12) & 63];
        out += alphabet[(n >> 6) & 63];
        out += alphabet[n & 63];
    }
    if (i + 1 == bytes.size()) {
        const std::uint32_t n = std::uint32_t{bytes[i]} << 16;
        out += alphabet[(n >> 18) & 63];
        out += alphabet[(n >> 12) & 63];
        out += "==";
    } else if (i + 2 == bytes.size()) {
        const std::uint32_t n =
            (std::uint32_t{bytes[i]} << 16) | (std::uint32_t{bytes[i + 1]} << 8);
        out += alphabet[(n >> 18) & 63];
        out += alphabet[(n >> 12) & 63];
        out += alphabet[(n >> 6) & 63];
        out += '=';
    }
    return out;
}
#endif

/// Returns nullopt for anything that is not canonical padded base64.
ORMCACHE_INLINE std::optional<std::vector<std::uint8_t>> base64_decode(std::string_view text);
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE std::optional<std::vector<std::uint8_t>> base64_decode(std::string_view text) {
    auto value_of = [](char c) -> int {
        if (c >= 'A' && c <= 'Z')
            return c - 'A';
        if (c >= 'a' && c <= 'z')
            return c - 'a' + 26;
        if (c >= '0' && c <= '9')
            return c - '0' + 52;
        if (c == '+')
            return 62;
        if (c == '/')
            return 63;
        return -1;
    };
    if (text.size() % 4 != 0) {
        return std::nullopt;
    }
    std::vector<std::uint8_t> out;
    out.reserve(text.size() / 4 * 3);
    for (std::size_t i = 0; i < text.size(); i += 4) {
        const bool last = i + 4 == text.size();
        int v[4];
        int padding = 0;
        for (int k = 0; k < 4; ++k) {
            const char c = text[i + k];
            if (c == '=' && last && k >= 2) {
                v[k] = 0;
                ++padding;
                continue;
            }
            if (padding > 0) {
                return std::nullopt;  // data after padding
            }
            v[k] = value_of(c);
            if (v[k] < 0) {
                return std::nullopt;
            }
        }
        const std::uint32_t n = (std::uint32_t(v[0]) << 18) | (std::uint32_t(v[1]) << 12) |
                                (std::uint32_t(v[2]) << 6) | std::uint32_t(v[3]);
        // Canonical: the bits the padding leaves over are zero ("QR==" is not "QQ==").
        if ((padding == 2 && (n & 0xffff) != 0) || (padding == 1 && (n & 0xff) != 0)) {
            return std::nullopt;
        }
        out.push_back(static_cast<std::uint8_t>(n >> 16));
        if (padding < 2)
            out.push_back(static_cast<std::uint8_t>((n >> 8) & 0xff));
        if (padding < 1)
            out.push_back(static_cast<std::uint8_t>(n & 0xff));
    }
    return out;
}
#endif

}  // namespace ormcache::detail
