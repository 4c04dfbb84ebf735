#pragma once
// Which engine a DatabaseConfig::connection_string names, and the form of a connection string
// that messages may quote (never its password).
//
// PostgreSQL: a URI whose scheme is "postgresql" or "postgres" (any case), or a libpq
// keyword/value string that sets `host` or `dbname`. Everything else is SQLite: a file path,
// ":memory:", a "file:" URI. Surrounding whitespace is ignored when choosing.
//
// A SQLite path may contain '=' (a directory "/data/dbname=x/app.db"): a keyword/value string
// starts with a keyword, so a string with '/' or '\' before its first '=' is a path, and the
// keyword must start a word (the start, or after whitespace), with optional whitespace before
// its '=', as libpq reads it. Keywords are lowercase, as libpq requires. A relative path that
// would read as keywords ("dbname=x.db") is opened as SQLite when written "./dbname=x.db".

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>

namespace ormcache::detail {

enum class EngineKind { sqlite, postgresql };

inline constexpr bool is_blank(char c) noexcept {
    return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v';
}

inline constexpr std::string_view trim_blanks(std::string_view s) noexcept {
    while (!s.empty() && is_blank(s.front()))
        s.remove_prefix(1);
    while (!s.empty() && is_blank(s.back()))
        s.remove_suffix(1);
    return s;
}

/// Whether `s` starts with `prefix`, ASCII case-insensitively (URI schemes, RFC 3986 3.1).
inline constexpr bool starts_with_nocase(std::string_view s, std::string_view prefix) noexcept {
    if (s.size() < prefix.size())
        return false;
    for (std::size_t i = 0; i < prefix.size(); ++i) {
        char c = s[i];
        if (c >= 'A' && c <= 'Z')
            c = static_cast<char>(c - 'A' + 'a');
        if (c != prefix[i])
            return false;
    }
    return true;
}

/// Whether `keyword` appears in `s` at the start of a word, followed by optional whitespace and
/// '='; on success `value_at` is the index after the '='.
inline constexpr bool find_keyword(std::string_view s, std::string_view keyword,
                                   std::size_t& value_at, std::size_t from = 0) noexcept {
    for (std::size_t at = s.find(keyword, from); at != std::string_view::npos;
         at = s.find(keyword, at + 1)) {
        if (at > 0 && !is_blank(s[at - 1]))
            continue;
        std::size_t i = at + keyword.size();
        while (i < s.size() && is_blank(s[i]))
            ++i;
        if (i < s.size() && s[i] == '=') {
            value_at = i + 1;
            return true;
        }
    }
    return false;
}

/// The engine `connection_string` selects (see the top of this file).
inline constexpr EngineKind engine_kind_of(std::string_view connection_string) noexcept {
    const std::string_view s = trim_blanks(connection_string);
    if (starts_with_nocase(s, "postgresql://") || starts_with_nocase(s, "postgres://"))
        return EngineKind::postgresql;
    const std::size_t first_equals = s.find('=');
    if (first_equals == std::string_view::npos ||
        s.substr(0, first_equals).find_first_of("/\\") != std::string_view::npos ||
        starts_with_nocase(s, "file:")) {
        return EngineKind::sqlite;
    }
    std::size_t value_at = 0;
    return find_keyword(s, "host", value_at) || find_keyword(s, "dbname", value_at)
               ? EngineKind::postgresql
               : EngineKind::sqlite;
}

/// `connection_string` as a message may quote it: the values of `password` and `sslpassword`
/// (as libpq keywords or URI query parameters) and the password of a URI's user information
/// ("scheme://user:password@host") are replaced by "***". Applied to every connection string
/// a message quotes, whatever its engine; a string without these is returned unchanged. Errs
/// on the side of hiding too much: an '@' in a URI's query hides what precedes it.
inline std::string redact_connection_string(std::string_view connection_string) {
    std::string s{connection_string};
    constexpr std::string_view mask = "***";
    // Keyword values: a bare word, or a single-quoted string with backslash escapes.
    for (const std::string_view keyword :
         {std::string_view{"password"}, std::string_view{"sslpassword"}}) {
        std::size_t value_at = 0;
        std::size_t from = 0;
        while (find_keyword(s, keyword, value_at, from)) {
            std::size_t begin = value_at;
            while (begin < s.size() && is_blank(s[begin]))
                ++begin;
            std::size_t end = begin;
            if (end < s.size() && s[end] == '\'') {
                for (++end; end < s.size() && s[end] != '\''; ++end) {
                    if (s[end] == '\\')
                        ++end;
                }
                end = end < s.size() ? end + 1 : s.size();
            } else {
                while (end < s.size() && !is_blank(s[end]))
                    ++end;
            }
            s.replace(begin, end - begin, mask);
            from = begin + mask.size();
        }
    }
    const std::size_t scheme_end = s.find("://");
    const bool uri =
        scheme_end != std::string::npos && scheme_end > 0 &&
        s.substr(0, scheme_end)
                .find_first_not_of(
                    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+-.") ==
            std::string::npos;
    if (!uri)
        return s;
    // Query parameters ("?password=...&"); a key may be percent-encoded ("pass%77ord").
    for (std::size_t key = s.find('?'); key != std::string::npos; key = s.find('&', key)) {
        ++key;
        const std::size_t equals = s.find('=', key);
        if (equals == std::string::npos)
            break;
        std::string decoded;
        for (std::size_t i = key; i < equals && s[i] != '&'; ++i) {
            const auto hex = [](char c) {
                return c >= '0' && c <= '9'   ? c - '0'
                       : c >= 'a' && c <= 'f' ? c - 'a' + 10
                       : c >= 'A' && c <= 'F' ? c - 'A' + 10
                                              : -1;
            };
            if (s[i] == '%' && i + 2 < equals && hex(s[i + 1]) >= 0 && hex(s[i + 2]) >= 0) {
                decoded += static_cast<char>(hex(s[i + 1]) * 16 + hex(s[i + 2]));
                i += 2;
            } else {
                decoded += s[i];
            }
        }
        if (decoded == "password" || decoded == "sslpassword") {
            const std::size_t end = std::min(s.find('&', equals), s.size());
            s.replace(equals + 1, end - equals - 1, mask);
        }
    }
    // User information: what precedes the last '@'; a ':' in it starts the password.
    const std::size_t authority = scheme_end + 3;
    const std::size_t at = s.rfind('@');
    if (at != std::string::npos && at > authority) {
        const std::size_t colon = s.find(':', authority);
        if (colon < at)
            s.replace(colon + 1, at - colon - 1, mask);
    }
    return s;
}

/// The ConfigError text for a connection string whose engine this program does not have.
inline std::string missing_engine_message(std::string_view connection_string) {
    return "DatabaseConfig::connection_string '" + redact_connection_string(connection_string) +
           "' is a PostgreSQL connection string, and the PostgreSQL engine is not in this "
           "program: include <ormcache/engines/postgresql.hpp> and link ormcache::postgresql";
}

}  // namespace ormcache::detail
