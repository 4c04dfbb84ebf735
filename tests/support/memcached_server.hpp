#pragma once
// MemcachedServer: a private memcached for the tests, on a free 127.0.0.1 port (the process
// side, start/stop/kill/restart/pause/resume, is ServerProcess in server_process.hpp, as for
// RedisServer; it is ready when it answers `version`). MemcachedClient: a raw text-protocol
// client for assertions (raw values, which keys a server holds and when they expire, stats),
// independent of libmemcached and of the backend. Not thread-safe: one thread drives a server;
// clients are per thread.

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "loopback.hpp"
#include "server_process.hpp"

namespace ormcache_test {

/// A blocking text-protocol connection to 127.0.0.1:port. Throws std::runtime_error on any
/// I/O failure or unexpected reply.
class MemcachedClient {
  public:
    explicit MemcachedClient(int port) : port_(port) {
        fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd_ < 0)
            throw std::runtime_error("MemcachedClient: socket() failed");
        const timeval timeout{5, 0};
        ::setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
        ::setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof timeout);
        const int one = 1;
        ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        const sockaddr_in addr = loopback_address(port);
        if (::connect(fd_, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
            ::close(fd_);
            throw std::runtime_error("MemcachedClient: cannot connect to port " +
                                     std::to_string(port));
        }
    }
    MemcachedClient(const MemcachedClient&) = delete;
    MemcachedClient& operator=(const MemcachedClient&) = delete;
    ~MemcachedClient() { ::close(fd_); }

    /// The server's version string ("1.6.18").
    std::string version() {
        send("version\r\n");
        const std::string line = read_line();
        if (line.rfind("VERSION ", 0) != 0)
            throw std::runtime_error("MemcachedClient: version answered '" + line + "'");
        return line.substr(8);
    }

    /// The raw value stored at `key`, if any.
    std::optional<std::string> get(const std::string& key) {
        send("get " + key + "\r\n");
        std::optional<std::string> value;
        for (;;) {
            const std::string line = read_line();
            if (line == "END")
                return value;
            std::istringstream head(line);
            std::string tag, name;
            std::uint32_t flags = 0;
            std::size_t bytes = 0;
            head >> tag >> name >> flags >> bytes;
            if (tag != "VALUE")
                throw std::runtime_error("MemcachedClient: get answered '" + line + "'");
            std::string data = read_exact(bytes + 2);
            data.resize(bytes);
            value = std::move(data);
        }
    }

    /// Stores `value` at `key` (exptime as memcached reads it: 0 = never).
    void set(const std::string& key, std::string_view value, long long exptime = 0) {
        send("set " + key + " 0 " + std::to_string(exptime) + " " + std::to_string(value.size()) +
             "\r\n" + std::string(value) + "\r\n");
        const std::string line = read_line();
        if (line != "STORED")
            throw std::runtime_error("MemcachedClient: set answered '" + line + "'");
    }

    void remove(const std::string& key) {
        send("delete " + key + "\r\n");
        const std::string line = read_line();
        if (line != "DELETED" && line != "NOT_FOUND")
            throw std::runtime_error("MemcachedClient: delete answered '" + line + "'");
    }

    /// Every live key the server holds with its expiry (`lru_crawler metadump all`):
    /// exp = -1 means never, otherwise an absolute Unix time.
    std::map<std::string, long long> keys() {
        // The crawler skips an item some server thread still holds a reference to (one just
        // read or written, its reply not yet released): two dumps a moment apart see them all.
        auto all = dump_once();
        std::this_thread::sleep_for(std::chrono::milliseconds{20});
        all.merge(dump_once());
        return all;
    }

    /// The keys the server holds that start with `prefix`.
    std::vector<std::string> keys_with_prefix(const std::string& prefix) {
        std::vector<std::string> out;
        for (const auto& [key, exp] : keys()) {
            if (key.rfind(prefix, 0) == 0)
                out.push_back(key);
        }
        return out;
    }

  private:
    std::map<std::string, long long> dump_once() {
        for (;;) {
            send("lru_crawler metadump all\r\n");
            // One "key=... exp=... ..." line per item, ended by '\n' alone; then "END\r\n".
            std::string dump;
            for (;;) {
                const std::string line = read_line();
                if (line.rfind("BUSY", 0) == 0 || line.rfind("ERROR", 0) == 0) {
                    dump.clear();
                    break;  // the crawler is still busy with an earlier dump: again shortly
                }
                dump += line;
                dump += '\n';
                if (line == "END" || line.ends_with("\nEND"))
                    return parse_dump(dump);
            }
            std::this_thread::sleep_for(std::chrono::milliseconds{5});
        }
    }

  public:
    /// `stats` as name -> value.
    std::map<std::string, std::string> stats() {
        send("stats\r\n");
        std::map<std::string, std::string> out;
        for (;;) {
            const std::string line = read_line();
            if (line == "END")
                return out;
            std::istringstream fields(line);
            std::string tag, name, value;
            fields >> tag >> name >> value;
            out[name] = value;
        }
    }

    long long stat(const std::string& name) { return std::stoll(stats().at(name)); }

    void flush_all() {
        send("flush_all\r\n");
        const std::string line = read_line();
        if (line != "OK")
            throw std::runtime_error("MemcachedClient: flush_all answered '" + line + "'");
    }

  private:
    static std::map<std::string, long long> parse_dump(const std::string& dump) {
        std::map<std::string, long long> out;
        std::istringstream lines(dump);
        std::string line;
        while (std::getline(lines, line)) {
            std::string key;
            long long exp = 0;
            std::istringstream fields(line);
            std::string field;
            while (fields >> field) {
                if (field.rfind("key=", 0) == 0)
                    key = url_decode(field.substr(4));
                else if (field.rfind("exp=", 0) == 0)
                    exp = std::stoll(field.substr(4));
            }
            if (!key.empty())
                out[key] = exp;
        }
        return out;
    }

    static std::string url_decode(const std::string& in) {
        std::string out;
        for (std::size_t i = 0; i < in.size(); ++i) {
            if (in[i] == '%' && i + 2 < in.size()) {
                out += static_cast<char>(std::stoi(in.substr(i + 1, 2), nullptr, 16));
                i += 2;
            } else {
                out += in[i];
            }
        }
        return out;
    }

    void send(const std::string& data) {
        std::size_t sent = 0;
        while (sent < data.size()) {
            const auto n = ::send(fd_, data.data() + sent, data.size() - sent, MSG_NOSIGNAL);
            if (n <= 0)
                throw std::runtime_error("MemcachedClient: send to port " + std::to_string(port_) +
                                         " failed");
            sent += static_cast<std::size_t>(n);
        }
    }

    void fill() {
        char chunk[16384];
        const auto n = ::recv(fd_, chunk, sizeof chunk, 0);
        if (n <= 0)
            throw std::runtime_error("MemcachedClient: no reply from port " +
                                     std::to_string(port_));
        buffer_.append(chunk, static_cast<std::size_t>(n));
    }

    std::string read_line() {
        for (;;) {
            if (const auto end = buffer_.find("\r\n"); end != std::string::npos) {
                std::string line = buffer_.substr(0, end);
                buffer_.erase(0, end + 2);
                return line;
            }
            fill();
        }
    }

    std::string read_exact(std::size_t n) {
        while (buffer_.size() < n)
            fill();
        std::string out = buffer_.substr(0, n);
        buffer_.erase(0, n);
        return out;
    }

    int port_;
    int fd_ = -1;
    std::string buffer_;
};

/// A memcached child process on 127.0.0.1 (see the file comment and server_process.hpp).
class MemcachedServer : public ServerProcess {
  public:
    /// port 0: pick a free one.
    explicit MemcachedServer(int port = 0)
        : ServerProcess(Program{.binary = "memcached",
                                .binary_env = "ORMCACHE_MEMCACHED",
                                .needed_by = "the memcached tests",
                                .package = "memcached",
                                .ready_probe = "`version`"}) {
        launch(port);
    }

    /// "127.0.0.1:<port>", as CacheConfig::arguments.url lists servers.
    std::string address() const { return "127.0.0.1:" + std::to_string(port()); }

    std::unique_ptr<MemcachedClient> client() const {
        return std::make_unique<MemcachedClient>(port());
    }

  private:
    std::vector<std::string> command_line(const std::string& binary) const override {
        std::vector<std::string> args{binary, "-l", "127.0.0.1", "-p", std::to_string(port()), "-U",
                                      "0", "-m", "64", "-t", "2",
                                      // One LRU per slab class: with the segmented LRU, items
                                      // move between queues while a metadump crawls them,
                                      // and the dump can miss some (keys() must see all).
                                      "-o", "no_lru_maintainer"};
        // memcached refuses to run as root unless told which user to be (CI containers).
        if (::geteuid() == 0)
            args.insert(args.end(), {"-u", "root"});
        return args;
    }

    bool answers() const override { return !MemcachedClient(port()).version().empty(); }
};

}  // namespace ormcache_test
