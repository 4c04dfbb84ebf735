// Fuzzes the redis backend's `url` argument (include/ormcache/detail/redis/redis_url.hpp) and
// percent-decoding (include/ormcache/detail/util/percent_decoding.hpp).
//
// Input: byte 0 picks the mode, the rest is text.
//  - even: the rest is a whole url, parsed into RedisOptions;
//  - odd: the rest is split at its first two NUL bytes into user name, password and the part
//    after the '@' (host:port/db); the url "redis://<user>:pw-<password>@<rest>" is parsed.
// Every mode also percent-decodes the text, and encodes and decodes it again.
//
// Properties:
//  - parsing throws ConfigError or nothing; every error message names the url only redacted:
//    never the password;
//  - a url built from options (credentials percent-encoded) parses back to those options;
//  - percent_decode() never throws, decodes percent_encode(any bytes) back to them, and
//    leaves text without '%' as it is.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <ormcache/backends/redis.hpp>
#include <ormcache/detail/redis/redis_url.hpp>
#include <ormcache/detail/util/percent_decoding.hpp>

#include "fuzz_support.hpp"

namespace {

using ormcache::ConfigError;
using ormcache::RedisOptions;
using ormcache::detail::percent_decode;
using ormcache::detail::redis_url_into;

std::string percent_encode(std::string_view bytes) {
    static constexpr char hex[] = "0123456789ABCDEF";
    std::string out;
    for (const char c : bytes) {
        const auto u = static_cast<unsigned char>(c);
        if ((u >= 'a' && u <= 'z') || (u >= 'A' && u <= 'Z') || (u >= '0' && u <= '9') ||
            u == '-' || u == '.' || u == '_' || u == '~') {
            out += c;
        } else {
            out += '%';
            out += hex[u >> 4];
            out += hex[u & 15];
        }
    }
    return out;
}

/// Parses `url`; nullopt (with the message) when it throws ConfigError.
std::optional<RedisOptions> parse(const std::string& url, std::string* message = nullptr) {
    RedisOptions o;
    try {
        redis_url_into(o, url);
        return o;
    } catch (const ConfigError& e) {
        if (message != nullptr)
            *message = e.what();
        return std::nullopt;
    }
}

void check_percent_decoding(std::string_view text) {
    const auto decoded = percent_decode(text);
    if (decoded)
        FUZZ_CHECK(decoded->size() <= text.size());
    if (text.find('%') == std::string_view::npos)
        FUZZ_CHECK(decoded && *decoded == text);
    const auto back = percent_decode(percent_encode(text));
    FUZZ_CHECK(back && *back == text);
}

void whole_url(const std::string& url) {
    const auto o = parse(url);
    if (!o)
        return;
    FUZZ_CHECK(url.starts_with("redis://"));
    FUZZ_CHECK(o->port > 0 && o->port <= 65535 && o->db >= 0);
    // What it parsed, written back as a url, parses to the same options.
    if (o->host.find_first_of(":/@") == std::string::npos && !o->host.empty()) {
        const std::string again_url = "redis://" + percent_encode(o->username) + ":" +
                                      percent_encode(o->password) + "@" + o->host + ":" +
                                      std::to_string(o->port) + "/" + std::to_string(o->db);
        const auto again = parse(again_url);
        FUZZ_CHECK(again && *again == *o);
    }
}

void built_url(std::string_view text) {
    const auto first = text.find('\0');
    const auto second = first == std::string_view::npos ? first : text.find('\0', first + 1);
    if (second == std::string_view::npos)
        return;
    const std::string user(text.substr(0, first));
    const std::string password = "pw-" + std::string(text.substr(first + 1, second - first - 1));
    const std::string rest(text.substr(second + 1));
    const std::string url = "redis://" + user + ":" + password + "@" + rest;

    std::string message;
    const auto o = parse(url, &message);
    if (!o) {
        // The password part of the url (all of it between ':' and the last '@', as typed).
        const auto at = url.rfind('@');
        const std::string typed = url.substr(url.find(':', 8) + 1, at - url.find(':', 8) - 1);
        // Short ones may occur in the message's own words, and the part after the '@' is
        // quoted (a port or database that is not a number) and may repeat the password.
        if (typed.size() >= 12 && url.find(typed, at) == std::string::npos)
            FUZZ_CHECK(message.find(typed) == std::string::npos);
        return;
    }
    if (rest.find('@') == std::string::npos && user.find(':') == std::string::npos) {
        FUZZ_CHECK(percent_decode(user) && o->username == *percent_decode(user));
        FUZZ_CHECK(percent_decode(password) && o->password == *percent_decode(password));
    }

    // Options -> url -> options: any credentials and database, a host of safe bytes.
    RedisOptions want;
    want.username = user;
    want.password = password;
    want.db = static_cast<int>(rest.size());
    want.port = 1 + static_cast<int>(text.size() % 65535);
    for (const char c : rest) {
        if (c != ':' && c != '/' && c != '@')
            want.host += c;
    }
    if (want.host.empty())
        want.host = "cache.internal";
    const std::string encoded = "redis://" + percent_encode(want.username) + ":" +
                                percent_encode(want.password) + "@" + want.host + ":" +
                                std::to_string(want.port) + "/" + std::to_string(want.db);
    const auto got = parse(encoded);
    FUZZ_CHECK(got && *got == want);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 1)
        return 0;
    const std::string text(reinterpret_cast<const char*>(data) + 1, size - 1);
    check_percent_decoding(text);
    if (data[0] % 2 == 0) {
        whole_url(text);
    } else {
        built_url(text);
    }
    return 0;
}
