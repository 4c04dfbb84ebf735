#pragma once
// type_name<T>(): a readable name of T for error messages ("app::User", "std::optional<int>"),
// read from the compiler's own spelling of a function signature (__PRETTY_FUNCTION__ on g++
// and clang). The spelling differs between compilers ("long int" / "long"), so it is for
// messages only, never for keys or digests.

#include <array>
#include <string>
#include <string_view>
#include <typeinfo>
#include <utility>

namespace ormcache::detail {

template <class T>
constexpr std::string_view compiler_type_name() {
#if defined(__clang__) || defined(__GNUC__)
    // g++:   "... compiler_type_name() [with T = app::User; std::string_view = ...]"
    // clang: "... compiler_type_name() [T = app::User]"
    std::string_view signature = __PRETTY_FUNCTION__;
    const auto start = signature.find("T = ");
    const auto end = signature.find(';', start);
    if (start == std::string_view::npos)
        return {};
    const auto stop = end != std::string_view::npos ? end : signature.rfind(']');
    return signature.substr(start + 4, stop - start - 4);
#else
    return {};
#endif
}

template <class T>
std::string type_name() {
    std::string name(compiler_type_name<T>());
    if (name.empty())
        return typeid(T).name();  // another compiler: its (maybe mangled) name
    // The standard library's long spellings of the column types users write short.
    static constexpr std::array<std::pair<std::string_view, std::string_view>, 4> short_names{{
        {"std::__cxx11::basic_string<char>", "std::string"},
        {"std::basic_string<char>", "std::string"},
        {"std::chrono::time_point<std::chrono::_V2::system_clock, std::chrono::duration<long "
         "int, std::ratio<1, 1000000000> > >",
         "std::chrono::system_clock::time_point"},
        {"std::chrono::time_point<std::chrono::system_clock, std::chrono::duration<long, "
         "std::ratio<1, 1000000000>>>",
         "std::chrono::system_clock::time_point"},
    }};
    const auto replace_all = [&name](std::string_view spelled, std::string_view written) {
        for (auto at = name.find(spelled); at != std::string::npos;
             at = name.find(spelled, at + written.size())) {
            name.replace(at, spelled.size(), written);
        }
    };
    for (const auto& [spelled, written] : short_names)
        replace_all(spelled, written);
    replace_all(" >", ">");  // g++'s "std::optional<std::string >"
    return name;
}

}  // namespace ormcache::detail
