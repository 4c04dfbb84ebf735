// Fuzzes base64 (include/ormcache/detail/util/base64.hpp), the JSON form of BLOB columns in
// every cache payload: base64_decode() over any text, and the encode -> decode round trip.
//
// Properties:
//  - base64_decode() returns bytes or nullopt, never throws, and accepts only canonical
//    padded base64 (as it documents): whatever it accepts encodes back to the same text;
//  - base64_encode() of any bytes decodes back to those bytes, with the expected length.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <ormcache/detail/util/base64.hpp>

#include "fuzz_support.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    using ormcache::detail::base64_decode;
    using ormcache::detail::base64_encode;
    const std::string_view text(reinterpret_cast<const char*>(data), size);

    if (const auto decoded = base64_decode(text)) {
        FUZZ_CHECK(decoded->size() <= size / 4 * 3);
        FUZZ_CHECK(base64_encode(*decoded) == text);
    }

    const std::vector<std::uint8_t> bytes(data, data + size);
    const std::string encoded = base64_encode(bytes);
    FUZZ_CHECK(encoded.size() == (size + 2) / 3 * 4);
    const auto back = base64_decode(encoded);
    FUZZ_CHECK(back && *back == bytes);
    return 0;
}
