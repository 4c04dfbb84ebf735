#pragma once
// RedisServer: a private redis-server for the tests, on a free 127.0.0.1 port (the process side,
// start/stop/kill/restart/pause/resume, is ServerProcess in server_process.hpp; it is ready when
// it answers PING). RedisClient: a small hiredis client for assertions (keys under a prefix, raw
// values, INFO commandstats); RedisMonitor and CommandDelta count the commands (round trips) a
// piece of code sends. Not thread-safe: one thread drives a server; clients are per thread.

#include <stdlib.h>  // mkdtemp (POSIX)
#include <sys/time.h>

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include <hiredis/hiredis.h>

#include "server_process.hpp"
#include "test_support.hpp"

namespace ormcache_test {

/// How to start a RedisServer. An aggregate.
struct RedisServerOptions {
    int port = 0;                ///< 0: pick a free port
    std::string password{};      ///< non-empty: --requirepass (the default user's password)
    std::string acl_user{};      ///< non-empty: an ACL user with every permission...
    std::string acl_password{};  ///< ...and this password
    bool unix_socket = false;    ///< also listen on a socket in a private directory
    std::vector<std::string> extra_args{};
};

/// A synchronous hiredis connection for assertions. Throws std::runtime_error on any failure.
class RedisClient {
  public:
    struct Reply {
        int type = REDIS_REPLY_NIL;
        long long integer = 0;
        std::string str;
        std::vector<Reply> elements;
    };

    /// TCP to 127.0.0.1:port, or the unix socket when `socket` is non-empty.
    RedisClient(int port, const std::string& password = {}, const std::string& socket = {},
                const std::string& user = {}) {
        const timeval timeout{5, 0};
        c_ = socket.empty() ? redisConnectWithTimeout("127.0.0.1", port, timeout)
                            : redisConnectUnixWithTimeout(socket.c_str(), timeout);
        if (c_ == nullptr || c_->err != 0) {
            const std::string why = c_ != nullptr ? c_->errstr : "out of memory";
            if (c_ != nullptr)
                redisFree(c_);
            throw std::runtime_error("RedisClient: cannot connect to port " + std::to_string(port) +
                                     ": " + why);
        }
        redisSetTimeout(c_, timeout);
        if (!password.empty()) {
            std::vector<std::string> auth{"AUTH"};
            if (!user.empty())
                auth.push_back(user);
            auth.push_back(password);
            command(auth);
        }
    }
    RedisClient(const RedisClient&) = delete;
    RedisClient& operator=(const RedisClient&) = delete;
    ~RedisClient() { redisFree(c_); }

    /// Any command; a Redis error reply is an exception.
    Reply command(const std::vector<std::string>& args) {
        std::vector<const char*> argv;
        std::vector<std::size_t> lengths;
        for (const auto& a : args) {
            argv.push_back(a.data());
            lengths.push_back(a.size());
        }
        auto* r = static_cast<redisReply*>(
            redisCommandArgv(c_, static_cast<int>(argv.size()), argv.data(), lengths.data()));
        if (r == nullptr) {
            throw std::runtime_error("RedisClient: " + args.front() + " failed: " + c_->errstr);
        }
        Reply out = convert(r);
        freeReplyObject(r);
        if (out.type == REDIS_REPLY_ERROR) {
            throw std::runtime_error("RedisClient: " + args.front() + ": " + out.str);
        }
        return out;
    }

    void select(int db) { command({"SELECT", std::to_string(db)}); }

    /// The next reply pushed by the server (after MONITOR), as text.
    std::string next_line() {
        void* reply = nullptr;
        if (redisGetReply(c_, &reply) != REDIS_OK || reply == nullptr) {
            throw std::runtime_error(std::string("RedisClient: no reply: ") + c_->errstr);
        }
        Reply out = convert(static_cast<redisReply*>(reply));
        freeReplyObject(reply);
        return out.str;
    }

    /// Every key that starts with `prefix` (SCAN with the glob characters escaped), sorted.
    std::vector<std::string> keys(const std::string& prefix = {}) {
        std::string pattern;
        for (char ch : prefix) {
            if (ch == '*' || ch == '?' || ch == '[' || ch == ']' || ch == '\\')
                pattern += '\\';
            pattern += ch;
        }
        pattern += '*';
        std::vector<std::string> out;
        std::string cursor = "0";
        do {
            const Reply r = command({"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"});
            cursor = r.elements.at(0).str;
            for (const auto& k : r.elements.at(1).elements)
                out.push_back(k.str);
        } while (cursor != "0");
        std::sort(out.begin(), out.end());
        return out;
    }

    /// The raw bytes at `key`, or nullopt if there is no such key.
    std::optional<std::string> get(const std::string& key) {
        const Reply r = command({"GET", key});
        if (r.type == REDIS_REPLY_NIL)
            return std::nullopt;
        return r.str;
    }

    void set(const std::string& key, const std::string& value) { command({"SET", key, value}); }

    /// Calls per command since the server started (INFO commandstats), e.g. {"evalsha", 3}.
    /// Subcommands keep their "|" names ("script|load").
    std::map<std::string, long long> command_calls() {
        const Reply r = command({"INFO", "commandstats"});
        std::map<std::string, long long> out;
        std::istringstream lines(r.str);
        std::string line;
        while (std::getline(lines, line)) {
            static constexpr std::string_view tag = "cmdstat_";
            if (line.rfind(tag, 0) != 0)
                continue;
            const auto colon = line.find(':');
            const auto calls = line.find("calls=");
            if (colon == std::string::npos || calls == std::string::npos)
                continue;
            out[line.substr(tag.size(), colon - tag.size())] = std::stoll(line.substr(calls + 6));
        }
        return out;
    }

  private:
    static Reply convert(const redisReply* r) {
        Reply out;
        out.type = r->type;
        out.integer = r->integer;
        if (r->str != nullptr)
            out.str.assign(r->str, r->len);
        for (std::size_t i = 0; i < r->elements; ++i)
            out.elements.push_back(convert(r->element[i]));
        return out;
    }

    redisContext* c_ = nullptr;
};

/// The commands clients send, as Redis MONITOR reports them, without the ones scripts run
/// inside the server: one entry per round trip of a client that does not pipeline.
class RedisMonitor {
  public:
    explicit RedisMonitor(int port, const std::string& password = {}) : client_(port, password) {
        client_.command({"MONITOR"});
    }

    /// The command names (upper case) sent since the previous call (or construction), by
    /// any client but `marker`'s marker: `marker` sends ECHO <token>, and everything the
    /// monitor reported before that token is returned.
    std::vector<std::string> take(RedisClient& marker) {
        const std::string token = "ormcache-monitor-" + std::to_string(++markers_);
        marker.command({"ECHO", token});
        std::vector<std::string> out;
        for (;;) {
            const std::string line = client_.next_line();
            const auto bracket = line.find("] \"");
            if (bracket == std::string::npos)
                continue;
            const std::string source = line.substr(0, bracket);
            const auto start = bracket + 3;
            const auto end = line.find('"', start);
            std::string name = line.substr(start, end - start);
            for (auto& ch : name)
                ch = static_cast<char>(std::toupper(static_cast<unsigned char>(ch)));
            if (name == "ECHO" && line.find(token) != std::string::npos)
                return out;
            if (source.size() >= 3 && source.compare(source.size() - 3, 3, "lua") == 0)
                continue;
            out.push_back(name);
        }
    }

  private:
    RedisClient client_;
    int markers_ = 0;
};

/// Commands run between two command_calls() snapshots, scripts' inner calls included.
struct CommandDelta {
    std::map<std::string, long long> calls;

    long long of(const std::string& name) const {
        const auto it = calls.find(name);
        return it == calls.end() ? 0 : it->second;
    }
    long long total() const {
        long long n = 0;
        for (const auto& [name, count] : calls)
            n += count;
        return n;
    }
    std::string describe() const {
        std::string out;
        for (const auto& [name, count] : calls)
            out += name + "=" + std::to_string(count) + " ";
        return out.empty() ? "(none)" : out;
    }

    static CommandDelta between(const std::map<std::string, long long>& before,
                                const std::map<std::string, long long>& after) {
        CommandDelta d;
        for (const auto& [name, count] : after) {
            const auto it = before.find(name);
            const long long diff = count - (it == before.end() ? 0 : it->second);
            // INFO and ECHO are the helper's own (command_calls(), RedisMonitor::take()).
            if (diff != 0 && name != "info" && name != "echo")
                d.calls[name] = diff;
        }
        return d;
    }
};

/// A redis-server child process on 127.0.0.1 (see the file comment and server_process.hpp).
class RedisServer : public ServerProcess {
  public:
    explicit RedisServer(RedisServerOptions options = {})
        : ServerProcess(Program{.binary = "redis-server",
                                .binary_env = "ORMCACHE_REDIS_SERVER",
                                .needed_by = "the Redis tests",
                                .package = "redis-server",
                                .ready_probe = "PING"}),
          options_(std::move(options)) {
        if (options_.unix_socket) {
            // sun_path holds 107 bytes; a deep build directory would not fit, /tmp does.
            std::string pattern = dir().path().string() + "/redis.sock";
            if (pattern.size() > 100) {
                char tmpl[] = "/tmp/ormcache-sock-XXXXXX";
                if (mkdtemp(tmpl) == nullptr)
                    throw std::runtime_error("mkdtemp failed");
                socket_dir_ = tmpl;
                pattern = socket_dir_ + "/redis.sock";
            }
            socket_ = pattern;
        }
        launch(options_.port);
    }

    ~RedisServer() override {
        try {
            stop();  // before its socket's directory goes
        } catch (...) {
            // Destructors must not throw; stop() already escalated to SIGKILL if it had to.
        }
        if (!socket_dir_.empty()) {
            std::error_code ec;
            std::filesystem::remove_all(socket_dir_, ec);
        }
    }

    const std::string& unix_socket() const noexcept { return socket_; }

    /// A client with the default user's credentials (over TCP).
    std::unique_ptr<RedisClient> client() const {
        return std::make_unique<RedisClient>(port(), options_.password);
    }

  private:
    std::vector<std::string> command_line(const std::string& binary) const override {
        std::vector<std::string> args{binary,
                                      "--port",
                                      std::to_string(port()),
                                      "--bind",
                                      "127.0.0.1",
                                      "--save",
                                      "",
                                      "--appendonly",
                                      "no",
                                      "--protected-mode",
                                      "no",
                                      "--daemonize",
                                      "no",
                                      "--dir",
                                      dir().path().string()};
        if (!options_.password.empty()) {
            args.insert(args.end(), {"--requirepass", options_.password});
        }
        if (!options_.acl_user.empty()) {
            args.insert(args.end(), {"--user", options_.acl_user, "on", ">" + options_.acl_password,
                                     "~*", "&*", "+@all"});
        }
        if (!socket_.empty())
            args.insert(args.end(), {"--unixsocket", socket_, "--unixsocketperm", "700"});
        args.insert(args.end(), options_.extra_args.begin(), options_.extra_args.end());
        return args;
    }

    bool answers() const override {
        RedisClient c(port(), options_.password);
        return c.command({"PING"}).str == "PONG";
    }

    RedisServerOptions options_;
    std::string socket_dir_;
    std::string socket_;
};

}  // namespace ormcache_test
