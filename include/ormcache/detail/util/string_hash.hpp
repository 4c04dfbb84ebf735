#pragma once
// The transparent hash of the library's string-keyed maps: a lookup by std::string_view does
// not build a std::string first (C++20 heterogeneous lookup, with std::equal_to<>).

#include <cstddef>
#include <functional>
#include <string_view>

namespace ormcache::detail {

struct StringHash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept {
        return std::hash<std::string_view>{}(s);
    }
};

}  // namespace ormcache::detail
