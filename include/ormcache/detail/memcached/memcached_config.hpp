#pragma once
// The memcached backend's `url` argument: the servers, as "host:port", "host" or "[v6]:port",
// each checked and written back in one canonical form (so a server cannot be listed twice).

#include <algorithm>
#include <charconv>
#include <string>
#include <system_error>
#include <vector>

#include <nlohmann/json.hpp>

#include "../../errors.hpp"

namespace ormcache::detail {

struct MemcachedAddress {
    std::string host;
    int port = 11211;
};

/// "host:port", "host" (port 11211) or "[v6]:port".
inline MemcachedAddress memcached_address(const std::string& text) {
    MemcachedAddress a;
    std::string rest = text;
    std::string port;
    if (rest.starts_with('[')) {
        const auto close = rest.find(']');
        if (close == std::string::npos) {
            throw ConfigError("CacheConfig::arguments.url: '" + text + "' has no closing ']'");
        }
        a.host = rest.substr(1, close - 1);
        if (close + 1 < rest.size()) {
            if (rest[close + 1] != ':') {
                throw ConfigError("CacheConfig::arguments.url: '" + text + "' must be [host]:port");
            }
            port = rest.substr(close + 2);
            if (port.empty())
                throw ConfigError("CacheConfig::arguments.url: '" + text + "' has an empty port");
        }
    } else if (const auto colon = rest.rfind(':'); colon != std::string::npos) {
        a.host = rest.substr(0, colon);
        port = rest.substr(colon + 1);
        if (port.empty())
            throw ConfigError("CacheConfig::arguments.url: '" + text + "' has an empty port");
    } else {
        a.host = rest;
    }
    if (a.host.empty())
        throw ConfigError("CacheConfig::arguments.url: '" + text + "' has no host");
    if (!port.empty()) {
        const auto [end, error] = std::from_chars(port.data(), port.data() + port.size(), a.port);
        if (error != std::errc() || end != port.data() + port.size() || a.port <= 0 ||
            a.port > 65535) {
            throw ConfigError("CacheConfig::arguments.url: port '" + port + "' of '" + text +
                              "' is not a port number");
        }
    }
    return a;
}

/// The servers the `url` argument lists, as "host:port": the seed writes a list of
/// "host:port"; one server may also be a plain string.
inline std::vector<std::string> memcached_servers_from_json(const nlohmann::json& v) {
    const nlohmann::json list = v.is_string() ? nlohmann::json::array({v}) : v;
    if (!list.is_array() || list.empty()) {
        throw ConfigError(
            "CacheConfig::arguments.url must be a non-empty list of \"host:port\" "
            "strings, got " +
            v.dump());
    }
    std::vector<std::string> servers;
    for (const auto& item : list) {
        if (!item.is_string()) {
            throw ConfigError(
                "CacheConfig::arguments.url: every server must be a \"host:port\" string, got " +
                item.dump());
        }
        const auto a = memcached_address(item.get<std::string>());
        const std::string canonical = a.host + ":" + std::to_string(a.port);
        if (std::find(servers.begin(), servers.end(), canonical) != servers.end())
            throw ConfigError("CacheConfig::arguments.url lists " + canonical + " twice");
        servers.push_back(canonical);
    }
    return servers;
}

/// "127.0.0.1:11211, 10.0.0.2:11211".
inline std::string memcached_server_list(const std::vector<MemcachedAddress>& servers) {
    std::string out;
    for (const auto& s : servers)
        out += (out.empty() ? "" : ", ") + s.host + ":" + std::to_string(s.port);
    return out;
}

}  // namespace ormcache::detail
