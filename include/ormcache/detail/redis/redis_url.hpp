#pragma once
// The redis backend's `url` argument ("redis://[user:pass@]host:port/db"): parsed into the
// options it stands for, credentials percent-decoded, and never quoted with its password in a
// message.

#include <cstddef>
#include <exception>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

#include "../../errors.hpp"
#include "../util/percent_decoding.hpp"

namespace ormcache::detail {

/// "%40" -> "@": a password in a url may contain any byte, percent-encoded (RFC 3986).
inline std::string url_credential(const std::string& text, std::string_view field) {
    auto decoded = percent_decode(text);
    if (!decoded) {
        throw ConfigError("CacheConfig::arguments.url: bad percent-encoding in the " +
                          std::string(field));
    }
    return std::move(*decoded);
}

/// `url` with its credentials (whatever comes before the last '@') masked: a message may
/// quote a url, never a password.
inline std::string redacted_url(const std::string& url) {
    const auto at = url.rfind('@');
    if (at == std::string::npos)
        return url;
    const auto scheme = url.find("://");
    const auto start = scheme != std::string::npos && scheme < at ? scheme + 3 : 0;
    return url.substr(0, start) + "***" + url.substr(at);
}

/// Sets what `url` ("redis://[user:pass@]host:port/db") says in `o` (a RedisOptions), and
/// nothing else.
template <class Options>
void redis_url_into(Options& o, const std::string& url) {
    const std::string_view scheme = "redis://";
    if (url.rfind(scheme, 0) != 0) {
        throw ConfigError(
            "CacheConfig::arguments.url must look like redis://[user:pass@]host:port/db, got '" +
            redacted_url(url) + "'");
    }
    std::string rest = url.substr(scheme.size());
    if (const auto at = rest.rfind('@'); at != std::string::npos) {
        const std::string credentials = rest.substr(0, at);
        rest = rest.substr(at + 1);
        // "user:pass@", ":pass@" or "pass@" (no colon: a password for the default user, as
        // redis-cli -u and most clients read it).
        if (const auto colon = credentials.find(':'); colon != std::string::npos) {
            o.username = url_credential(credentials.substr(0, colon), "user name");
            o.password = url_credential(credentials.substr(colon + 1), "password");
        } else {
            o.password = url_credential(credentials, "password");
        }
    }
    if (const auto slash = rest.find('/'); slash != std::string::npos) {
        const std::string db = rest.substr(slash + 1);
        rest = rest.substr(0, slash);
        if (!db.empty()) {
            try {
                std::size_t used = 0;
                o.db = std::stoi(db, &used);
                if (used != db.size() || o.db < 0)
                    throw std::invalid_argument(db);
            } catch (const std::exception&) {
                throw ConfigError("CacheConfig::arguments.url: database '" + db +
                                  "' is not a number");
            }
        }
    }
    if (const auto colon = rest.rfind(':'); colon != std::string::npos) {
        const std::string port = rest.substr(colon + 1);
        rest = rest.substr(0, colon);
        try {
            std::size_t used = 0;
            o.port = std::stoi(port, &used);
            if (used != port.size() || o.port <= 0 || o.port > 65535)
                throw std::invalid_argument(port);
        } catch (const std::exception&) {
            throw ConfigError("CacheConfig::arguments.url: port '" + port +
                              "' is not a port number");
        }
    }
    if (!rest.empty())
        o.host = rest;
}

}  // namespace ormcache::detail
