// Fuzzes the envelope of a byte cache entry (include/ormcache/detail/cache/envelope.hpp):
// open_envelope() over any bytes, and the seal_envelope() -> open_envelope() round trip.
//
// Input: byte 0 picks the mode (even: open the rest as an entry; odd: seal the rest as a
// payload and open it again), bytes 1-8 the stamp (little endian), byte 9 the length n of the
// check text, the next n bytes the check, and what follows the entry or the payload.
//
// Properties:
//  - open_envelope() returns, or throws SerializationError or std::stoll's errors
//    (std::invalid_argument, std::out_of_range), as it documents; nothing else;
//  - a payload it returns is the end of the entry, right after the check text, and a read
//    under any other stamp of the same entry is stale (nullopt);
//  - whatever seal_envelope() makes starts with the stamp prefix backends match on
//    (ReadRequest::stamp_prefix) and opens to the same payload under the same stamp and
//    check, to nullopt under another stamp or check, and every cut inside its header or
//    check is an error, not a payload.

#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>

#include <ormcache/detail/cache/envelope.hpp>

#include "fuzz_models.hpp"
#include "fuzz_support.hpp"

namespace {

using ormcache::SerializationError;
using ormcache::detail::open_envelope;
using ormcache::detail::seal_envelope;

/// open_envelope(), with the errors it documents turned into "corrupt" (nullopt outside).
std::optional<std::optional<std::string_view>> try_open(std::string_view bytes, std::int64_t stamp,
                                                        std::string_view check) {
    try {
        return open_envelope(bytes, stamp, check);
    } catch (const SerializationError&) {
    } catch (const std::invalid_argument&) {
    } catch (const std::out_of_range&) {
    }
    return std::nullopt;
}

void open_any(std::string_view entry, std::int64_t stamp, std::string_view check) {
    const auto opened = try_open(entry, stamp, check);
    if (!opened || !*opened)
        return;
    const std::string_view payload = **opened;
    // A view into the entry, at its end, right after the check text.
    FUZZ_CHECK(payload.data() >= entry.data() &&
               payload.data() + payload.size() == entry.data() + entry.size());
    const std::size_t before = entry.size() - payload.size();
    FUZZ_CHECK(before >= check.size() + ormcache::detail::envelope_tag.size());
    FUZZ_CHECK(entry.substr(before - check.size(), check.size()) == check);
    FUZZ_CHECK(entry.starts_with(ormcache::detail::envelope_tag));
    // Another stamp: the same parse, so a current entry under one stamp is stale under another.
    const std::int64_t other =
        stamp == std::numeric_limits<std::int64_t>::max() ? stamp - 1 : stamp + 1;
    const auto again = try_open(entry, other, check);
    FUZZ_CHECK(again.has_value() && !again->has_value());
}

void seal_and_open(std::int64_t stamp, std::string_view check, std::string_view payload) {
    const std::string entry = seal_envelope(stamp, check, payload);
    const std::string prefix =
        std::string(ormcache::detail::envelope_tag) + std::to_string(stamp) + ' ';
    FUZZ_CHECK(entry.starts_with(prefix));
    FUZZ_CHECK(entry.ends_with(payload));

    const auto opened = open_envelope(entry, stamp, check);  // must not throw
    FUZZ_CHECK(opened && *opened == payload);
    FUZZ_CHECK(!open_envelope(entry, stamp ^ 1, check));
    FUZZ_CHECK(!open_envelope(entry, stamp, std::string(check) + "x"));
    if (!check.empty()) {
        std::string changed(check);
        changed.back() = static_cast<char>(changed.back() ^ 0x20);
        FUZZ_CHECK(!open_envelope(entry, stamp, changed));
        FUZZ_CHECK(!open_envelope(entry, stamp, check.substr(1)));
    }
    // Cut anywhere before the payload starts: an error, never a (wrong) payload.
    const std::size_t payload_start = entry.size() - payload.size();
    for (std::size_t cut = 0; cut < payload_start && cut < 512; ++cut) {
        const auto truncated = try_open(std::string_view(entry).substr(0, cut), stamp, check);
        FUZZ_CHECK(!truncated.has_value());
    }
}

void write_seeds(const std::string& dir) {
    const auto input = [](std::uint8_t mode, std::int64_t stamp, std::string_view check,
                          std::string_view rest) {
        std::string out(1, static_cast<char>(mode));
        for (int i = 0; i < 8; ++i)
            out += static_cast<char>((static_cast<std::uint64_t>(stamp) >> (8 * i)) & 0xff);
        out += static_cast<char>(check.size());
        out.append(check);
        out.append(rest);
        return out;
    };
    const std::string check = "SELECT * FROM users WHERE id = ? [1]";
    const std::int64_t stamp = 1764771234567;

    for (const auto& serializer : fuzz::serializers()) {
        const std::string payload =
            serializer.encode(ormcache::detail::to_payload(fuzz::sample_row()));
        const std::string entry = seal_envelope(stamp, check, payload);
        fuzz::write_seed(dir, "open-" + serializer.name, input(0, stamp, check, entry));
        fuzz::write_seed(dir, "stale-" + serializer.name, input(2, stamp + 1, check, entry));
        fuzz::write_seed(dir, "seal-" + serializer.name, input(1, stamp, check, payload));
    }
    fuzz::write_seed(dir, "open-empty-check", input(0, 7, "", seal_envelope(7, "", "[]")));
    fuzz::write_seed(dir, "open-negative-stamp",
                     input(0, -42, "k", seal_envelope(-42, "k", "null")));
    fuzz::write_seed(dir, "open-truncated", input(0, stamp, check, "oc1 1764771234567 36\nSEL"));
    fuzz::write_seed(dir, "open-old-version", input(0, 5, "", "oc0 5 0\n{}"));
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    fuzz::write_seeds_if_asked(write_seeds);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 10)
        return 0;
    const std::string_view input(reinterpret_cast<const char*>(data), size);
    std::uint64_t raw_stamp = 0;
    for (int i = 0; i < 8; ++i)
        raw_stamp |= static_cast<std::uint64_t>(data[1 + i]) << (8 * i);
    const auto stamp = static_cast<std::int64_t>(raw_stamp);
    const std::size_t check_size = std::min<std::size_t>(data[9], size - 10);
    const std::string_view check = input.substr(10, check_size);
    const std::string_view rest = input.substr(10 + check_size);
    if (data[0] % 2 == 0) {
        open_any(rest, stamp, check);
    } else {
        seal_and_open(stamp, check, rest);
    }
    return 0;
}
