// Fuzzes what the memcached backend reads from servers and how it lays out keys
// (include/ormcache/detail/memcached/): splitting replies into lines (MemcachedLineBuffer),
// `lru_crawler metadump` listings (memcached_metadump_line, percent-decoded keys), incr and
// delete replies, counter values, key shortening and the wrapping of entries under shortened
// keys.
//
// Input: byte 0 picks the mode, byte 1 is a parameter, the rest is the text.
//  - 0: a metadump reply. The text's first line is the key prefix, the rest is what the server
//    sent, received in chunks of 1 + (byte 1) bytes; listed as clear() lists (by hash when
//    byte 1 is odd) until END, BUSY, BADCLASS or a line that is none of these;
//  - 1: incr/delete replies, one per line;
//  - 2: key layout: the text's first line is the prefix, the next the key, the rest a value.
//
// Properties:
//  - lines are the same whatever the chunks they arrive in, and the same as a plain split at
//    "\n" (one "\r" before it dropped); unread bytes are exactly the last unterminated line;
//  - every key a listing yields is the percent-decoding of its line's key= field and belongs
//    to the key prefix; nothing after the line that ends a listing is read;
//  - an incr reply is a new value exactly when it is a whole int64 number; counters written
//    as memcached writes them read back;
//  - a wire key is at most 250 printable bytes, starts with the prefix's head, is the key
//    itself when it is not shortened, and an entry wrapped under it unwraps to the same value
//    for its key and to nothing for another key.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <ormcache/detail/memcached/memcached_clear.hpp>
#include <ormcache/detail/memcached/memcached_invalidation.hpp>
#include <ormcache/detail/memcached/memcached_keyspace.hpp>
#include <ormcache/detail/memcached/memcached_socket.hpp>
#include <ormcache/detail/util/percent_decoding.hpp>

#include "fuzz_support.hpp"

namespace {

using namespace ormcache::detail;

/// The reference split: every "\n"-terminated line, one "\r" before the "\n" dropped.
std::vector<std::string_view> plain_lines(std::string_view bytes, std::string_view* tail) {
    std::vector<std::string_view> out;
    std::size_t start = 0;
    for (std::size_t end; (end = bytes.find('\n', start)) != std::string_view::npos;
         start = end + 1) {
        std::string_view line = bytes.substr(start, end - start);
        if (line.ends_with('\r'))
            line.remove_suffix(1);
        out.push_back(line);
    }
    *tail = bytes.substr(start);
    return out;
}

std::pair<std::string_view, std::string_view> first_line(std::string_view text) {
    const auto newline = text.find('\n');
    if (newline == std::string_view::npos)
        return {text, {}};
    return {text.substr(0, newline), text.substr(newline + 1)};
}

void metadump(std::uint8_t param, std::string_view text) {
    const auto [prefix, reply] = first_line(text);
    const MemcachedKeyspace keyspace{std::string(prefix)};
    const bool by_hash = param % 2 == 1;
    const std::size_t chunk = 1 + param;

    std::string_view tail;
    const auto expected = plain_lines(reply, &tail);

    // Received in chunks, handed out line by line as MemcachedSocket::exchange does.
    MemcachedLineBuffer buffer;
    std::vector<std::string> lines;  // copies: a view lives only until the next append
    std::vector<std::string> keys;
    bool ended = false;
    for (std::size_t at = 0; at < reply.size() && !ended; at += chunk) {
        buffer.append(reply.substr(at, chunk));
        while (!ended) {
            const auto line = buffer.next_line();
            if (!line)
                break;
            lines.emplace_back(*line);
            const std::size_t before = keys.size();
            const MetadumpLine kind = memcached_metadump_line(*line, by_hash, keyspace, keys);
            FUZZ_CHECK(keys.size() <= before + 1);
            if (kind == MetadumpLine::key) {
                FUZZ_CHECK(line->starts_with("key="));
                std::string_view field = line->substr(4);
                field = field.substr(0, field.find(' '));
                const auto decoded = percent_decode(field);
                const bool ours = decoded && keyspace.owns(*decoded);
                FUZZ_CHECK(keys.size() == before + (ours ? 1 : 0));
                if (ours)
                    FUZZ_CHECK(keys.back() == *decoded);
            } else {
                FUZZ_CHECK(keys.size() == before);
                FUZZ_CHECK(kind != MetadumpLine::end || *line == "END");
                FUZZ_CHECK(kind != MetadumpLine::busy || line->starts_with("BUSY"));
                FUZZ_CHECK(kind != MetadumpLine::bad_class ||
                           (by_hash && line->starts_with("BADCLASS")));
                ended = true;  // clear() stops reading here (unexpected: it throws)
            }
        }
        buffer.compact();
    }
    for (const auto& key : keys)
        FUZZ_CHECK(keyspace.owns(key));
    FUZZ_CHECK(lines.size() <= expected.size());
    for (std::size_t i = 0; i < lines.size(); ++i)
        FUZZ_CHECK(lines[i] == expected[i]);
    if (!ended) {
        // Everything was received: every line handed out, the unterminated rest kept.
        FUZZ_CHECK(lines.size() == expected.size());
        FUZZ_CHECK(buffer.has_unread() == !tail.empty());
    }
}

void replies(std::string_view text) {
    std::string_view tail;
    for (const auto line : plain_lines(text, &tail)) {
        const IncrReply kind = memcached_incr_reply(line);
        const auto counter = memcached_counter(line);
        FUZZ_CHECK((kind == IncrReply::bumped) == counter.has_value());
        if (kind == IncrReply::missing)
            FUZZ_CHECK(line == "NOT_FOUND");
        if (kind == IncrReply::not_a_number)
            FUZZ_CHECK(line.starts_with("CLIENT_ERROR"));
        if (counter)
            FUZZ_CHECK(memcached_counter(std::to_string(*counter)) == counter);
        FUZZ_CHECK(memcached_delete_reply(line) == (line == "DELETED" || line == "NOT_FOUND"));
    }
    std::uint64_t bits = 0;
    for (std::size_t i = 0; i < 8 && i < text.size(); ++i)
        bits = (bits << 8) | static_cast<unsigned char>(text[i]);
    const auto value = static_cast<std::int64_t>(bits);
    FUZZ_CHECK(memcached_counter(std::to_string(value)) == value);
}

void key_layout(std::string_view text) {
    const auto [prefix, after_prefix] = first_line(text);
    const auto [key, value] = first_line(after_prefix);
    const MemcachedKeyspace keyspace{std::string(prefix)};
    const MemcachedKey wire = keyspace.key(key);
    FUZZ_CHECK(!wire.wire.empty() && wire.wire.size() <= memcached_max_key);
    FUZZ_CHECK(std::all_of(wire.wire.begin(), wire.wire.end(), memcached_key_char));
    FUZZ_CHECK(wire.wire.starts_with(keyspace.head()) && keyspace.owns(wire.wire));
    FUZZ_CHECK(wire.shortened ? memcached_looks_shortened(wire.wire) : wire.wire == key);
    FUZZ_CHECK(keyspace.key(key).wire == wire.wire);

    const std::string stored = memcached_wrap(wire, key, value);
    const auto unwrapped = memcached_unwrap(wire, key, stored);
    FUZZ_CHECK(unwrapped && *unwrapped == value);
    if (wire.shortened) {
        const std::string other = std::string(key) + "x";
        FUZZ_CHECK(!memcached_unwrap(wire, other, stored));
        // Any bytes stored under the key: a value of the key, or nothing.
        if (const auto any = memcached_unwrap(wire, key, value))
            FUZZ_CHECK(value.ends_with(std::string(key) + std::string(*any)));
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2)
        return 0;
    const std::string_view text(reinterpret_cast<const char*>(data) + 2, size - 2);
    switch (data[0] % 3) {
        case 0:
            metadump(data[1], text);
            break;
        case 1:
            replies(text);
            break;
        default:
            key_layout(text);
            break;
    }
    return 0;
}
