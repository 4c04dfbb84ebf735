#pragma once
// The envelope of a byte entry: what a byte backend stores is "oc1 <stamp> <check size>\n",
// the check text, then the serializer's payload. The stamp is the counter value the entry
// was filled under and the check the full query text, so a read under another counter, or a
// hash collision of query keys, is a miss and never a wrong answer. Objects stored by the
// memory backend carry the same two fields (CachedObject, payload.hpp).

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "../../errors.hpp"
#include "../util/linkage.hpp"

namespace ormcache::detail {

/// How a byte entry starts (and what ReadRequest::stamp_prefix is built from).
inline constexpr std::string_view envelope_tag{"oc1 "};

/// A byte entry: the envelope (see envelope_tag) around `payload`.
ORMCACHE_INLINE std::string seal_envelope(std::int64_t stamp, std::string_view check,
                                          std::string_view payload);
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE std::string seal_envelope(std::int64_t stamp, std::string_view check,
                                          std::string_view payload) {
    std::string out = std::string(envelope_tag) + std::to_string(stamp) + " " +
                      std::to_string(check.size()) + "\n";
    out.append(check);
    out.append(payload);
    return out;
}
#endif

/// The payload of a byte entry, or nullopt when it is stale (another stamp or check);
/// throws SerializationError (or std::stoll's errors) when the envelope is corrupt.
ORMCACHE_INLINE std::optional<std::string_view> open_envelope(std::string_view bytes,
                                                              std::int64_t stamp,
                                                              std::string_view check);
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE std::optional<std::string_view> open_envelope(std::string_view bytes,
                                                              std::int64_t stamp,
                                                              std::string_view check) {
    if (!bytes.starts_with(envelope_tag))
        throw SerializationError("unknown envelope");
    bytes.remove_prefix(envelope_tag.size());
    const auto space = bytes.find(' ');
    const auto newline = bytes.find('\n');
    if (space == std::string_view::npos || newline == std::string_view::npos || newline < space) {
        throw SerializationError("truncated envelope");
    }
    const std::int64_t stored = std::stoll(std::string(bytes.substr(0, space)));
    const std::size_t check_size =
        std::stoull(std::string(bytes.substr(space + 1, newline - space - 1)));
    bytes.remove_prefix(newline + 1);
    if (bytes.size() < check_size)
        throw SerializationError("truncated envelope");
    if (stored != stamp || bytes.substr(0, check_size) != check)
        return std::nullopt;
    bytes.remove_prefix(check_size);
    return bytes;
}
#endif

}  // namespace ormcache::detail
