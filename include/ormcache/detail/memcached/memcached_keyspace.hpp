#pragma once
// How the memcached backend's keys and values look on the wire: memcached takes keys of at
// most 250 printable bytes, so longer or odd keys are shortened with a hash and their entries
// carry the whole key; and memcached's own reading of expiration times.

#include <algorithm>
#include <charconv>
#include <cstddef>
#include <cstdint>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>

#include "../../backend.hpp"
#include "../util/sha256.hpp"

namespace ormcache::detail {

/// memcached's limit on key length (bytes).
inline constexpr std::size_t memcached_max_key = 250;
/// ':' and 64 hex digits of SHA-256, at the end of a shortened key.
inline constexpr std::size_t memcached_hash_suffix = 65;

/// Ends in ':' + 64 lowercase hex digits, like every shortened key. Such a key is shortened
/// too, even if it would fit: then no key sent as is can equal another key's shortened form.
inline bool memcached_looks_shortened(std::string_view key) {
    if (key.size() < memcached_hash_suffix || key[key.size() - memcached_hash_suffix] != ':')
        return false;
    return std::all_of(key.end() - 64, key.end(),
                       [](char c) { return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'); });
}

inline bool memcached_key_char(char c) {
    const auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u < 0x7f;  // printable ASCII, no space
}

/// The key as memcached gets it.
struct MemcachedKey {
    std::string wire;
    /// The wire key is a shortened form: entries stored there carry the whole key.
    bool shortened = false;
};

/// How the keys under one key prefix become memcached keys. Every wire key starts with
/// head(), which stands for the prefix, so that clear() can tell this prefix's keys from
/// other applications' among everything a server lists:
///  - the head is the prefix itself when memcached takes it as it is and it leaves room for
///    a hash after it; keys that fit then go as they are;
///  - otherwise it is "#" + 32 hex digits of the prefix's SHA-256 + ":", and every key is
///    shortened.
/// A shortened key is the head, a readable rest (the key after the prefix, forbidden bytes
/// replaced, cut to fit) and ":" + the SHA-256 of the whole key.
class MemcachedKeyspace {
  public:
    explicit MemcachedKeyspace(std::string prefix = {}) : prefix_(std::move(prefix)) {
        const bool usable = prefix_.size() <= memcached_max_key - memcached_hash_suffix &&
                            std::all_of(prefix_.begin(), prefix_.end(), memcached_key_char);
        head_ = usable ? prefix_ : "#" + sha256_hex(prefix_).substr(0, 32) + ":";
    }

    MemcachedKey key(std::string_view key) const {
        const bool under_prefix = key.starts_with(prefix_);
        if (under_prefix && head_ == prefix_ && !key.empty() && key.size() <= memcached_max_key &&
            std::all_of(key.begin(), key.end(), memcached_key_char) &&
            !memcached_looks_shortened(key)) {
            return {std::string(key), false};
        }
        const std::string_view rest = under_prefix ? key.substr(prefix_.size()) : key;
        MemcachedKey out{head_, true};
        out.wire.reserve(memcached_max_key);
        const std::size_t room = memcached_max_key - memcached_hash_suffix - head_.size();
        for (char c : rest.substr(0, room))
            out.wire += memcached_key_char(c) ? c : '_';
        out.wire += ':';
        out.wire += sha256_hex(key);
        return out;
    }

    /// `wire` (as a server lists it) is one of this prefix's keys. Like a prefix match in
    /// Redis, it also holds for the keys of a longer prefix that starts with this one.
    bool owns(std::string_view wire) const noexcept { return wire.starts_with(head_); }

    /// What every wire key of this prefix starts with.
    const std::string& head() const noexcept { return head_; }

  private:
    std::string prefix_;
    std::string head_;
};

/// The bytes stored for `value` at `key`: as is, or "<size>\n<key><value>" under a
/// shortened key.
inline std::string memcached_wrap(const MemcachedKey& wire, std::string_view key,
                                  std::string_view value) {
    if (!wire.shortened)
        return std::string(value);
    std::string out = std::to_string(key.size());
    out += '\n';
    out += key;
    out += value;
    return out;
}

/// The value stored for `key`, or nothing if the bytes belong to another key (or are not
/// wrapped at all): under a shortened key, anything else is a miss.
inline std::optional<std::string_view> memcached_unwrap(const MemcachedKey& wire,
                                                        std::string_view key,
                                                        std::string_view stored) {
    if (!wire.shortened)
        return stored;
    const auto newline = stored.find('\n');
    if (newline == std::string_view::npos)
        return std::nullopt;
    std::size_t size = 0;
    const auto [end, error] = std::from_chars(stored.data(), stored.data() + newline, size);
    if (error != std::errc() || end != stored.data() + newline || size != key.size())
        return std::nullopt;
    stored.remove_prefix(newline + 1);
    if (!stored.starts_with(key))
        return std::nullopt;
    stored.remove_prefix(key.size());
    return stored;
}

/// memcached's exptime for a TTL: whole seconds rounded up (at least 1), 0 for never, and an
/// absolute Unix time past 30 days, since memcached reads any larger number as one.
inline time_t memcached_expiration(Ttl ttl, std::time_t now = std::time(nullptr)) {
    constexpr std::int64_t relative_limit = 60 * 60 * 24 * 30;
    if (ttl.count() < 0)
        return 0;
    const std::int64_t seconds = std::max<std::int64_t>(1, (ttl.count() + 999) / 1000);
    if (seconds > relative_limit)
        return static_cast<time_t>(now + seconds);
    return static_cast<time_t>(seconds);
}

/// A counter's value, or nothing if the bytes are not a number (a counter overwritten by
/// someone else).
inline std::optional<std::int64_t> memcached_counter(std::string_view text) {
    std::int64_t value = 0;
    const auto [end, error] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (error != std::errc() || end != text.data() + text.size())
        return std::nullopt;
    return value;
}

}  // namespace ormcache::detail
