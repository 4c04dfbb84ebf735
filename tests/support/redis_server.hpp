#pragma once
// RedisServer: a private redis-server for the tests, on a free 127.0.0.1 port. RedisClient: a
// small hiredis client for assertions (keys under a prefix, raw values, INFO commandstats);
// RedisMonitor and CommandDelta count the commands (round trips) a piece of code sends.
//
// The server is started with fork/exec, waited for until it answers PING (bounded, with its
// log in the failure), and stopped with SIGTERM + waitpid in the destructor. It gets
// PR_SET_PDEATHSIG, so a test binary killed by a timeout does not leave servers behind; that
// signal follows the *thread* that started the server, so start, restart and destroy servers
// from the test's own thread. A missing redis-server binary is an exception (a failed test),
// never a skip. Not thread-safe: one thread drives a server; clients are per thread.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include <hiredis/hiredis.h>

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

/// A redis-server child process on 127.0.0.1 (see the file comment).
class RedisServer {
  public:
    explicit RedisServer(RedisServerOptions options = {}) : options_(std::move(options)) {
        if (options_.unix_socket) {
            // sun_path holds 107 bytes; a deep build directory would not fit, /tmp does.
            std::string pattern = dir_.path().string() + "/redis.sock";
            if (pattern.size() > 100) {
                char tmpl[] = "/tmp/ormcache-sock-XXXXXX";
                if (mkdtemp(tmpl) == nullptr)
                    throw std::runtime_error("mkdtemp failed");
                socket_dir_ = tmpl;
                pattern = socket_dir_ + "/redis.sock";
            }
            socket_ = pattern;
        }
        const bool pick = options_.port == 0;
        for (int attempt = 0;; ++attempt) {
            port_ = pick ? free_port() : options_.port;
            try {
                start();
                return;
            } catch (const std::exception&) {
                // Another process may have taken the port between free_port() and the bind.
                if (!pick || attempt == 2 || !log_contains("Address already in use"))
                    throw;
            }
        }
    }

    RedisServer(const RedisServer&) = delete;
    RedisServer& operator=(const RedisServer&) = delete;

    ~RedisServer() {
        try {
            stop();
        } catch (...) {
            // Destructors must not throw; stop() already escalated to SIGKILL if it had to.
        }
        if (!socket_dir_.empty()) {
            std::error_code ec;
            std::filesystem::remove_all(socket_dir_, ec);
        }
    }

    int port() const noexcept { return port_; }
    const std::string& unix_socket() const noexcept { return socket_; }
    bool running() const noexcept { return pid_ > 0; }
    pid_t pid() const noexcept { return pid_; }

    /// A port nothing listens on right now (bind 127.0.0.1:0, read it, close).
    static int free_port() {
        const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            throw std::runtime_error("socket() failed");
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = 0;
        socklen_t len = sizeof addr;
        if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
            ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
            ::close(fd);
            throw std::runtime_error("cannot bind 127.0.0.1:0 to find a free port");
        }
        ::close(fd);
        return ntohs(addr.sin_port);
    }

    /// SIGTERM (SIGCONT first, in case it is paused), then waitpid; SIGKILL after 10 s.
    void stop() {
        if (pid_ <= 0)
            return;
        ::kill(pid_, SIGCONT);
        ::kill(pid_, SIGTERM);
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
        int status = 0;
        while (::waitpid(pid_, &status, WNOHANG) == 0) {
            if (std::chrono::steady_clock::now() > deadline) {
                ::kill(pid_, SIGKILL);
                ::waitpid(pid_, &status, 0);
                break;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds{2});
        }
        pid_ = -1;
        paused_ = false;
    }

    /// SIGKILL, then waitpid: a crash, no chance to close connections cleanly.
    void kill() {
        if (pid_ <= 0)
            return;
        ::kill(pid_, SIGKILL);
        int status = 0;
        ::waitpid(pid_, &status, 0);
        pid_ = -1;
        paused_ = false;
    }

    /// A fresh, empty server on the same port (and socket).
    void restart() {
        stop();
        start();
    }

    /// SIGSTOP: the port still accepts connections (the kernel's backlog), but nothing
    /// answers, like a server that hangs or a network that drops packets.
    void pause() {
        if (pid_ <= 0 || paused_)
            return;
        if (::kill(pid_, SIGSTOP) != 0)
            throw std::runtime_error("SIGSTOP failed");
        wait_for_state('T');
        paused_ = true;
    }

    void resume() {
        if (pid_ <= 0 || !paused_)
            return;
        if (::kill(pid_, SIGCONT) != 0)
            throw std::runtime_error("SIGCONT failed");
        paused_ = false;
        wait_until_ready();
    }

    /// A client with the default user's credentials (over TCP).
    std::unique_ptr<RedisClient> client() const {
        return std::make_unique<RedisClient>(port_, options_.password);
    }

    /// The server's output so far (for failure messages).
    std::string log() const {
        std::ifstream in(log_path());
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }

  private:
    std::string log_path() const { return dir_.file("redis.log"); }

    bool log_contains(std::string_view text) const { return log().find(text) != std::string::npos; }

    static std::string find_binary() {
        if (const char* env = std::getenv("ORMCACHE_REDIS_SERVER"); env != nullptr && *env) {
            if (::access(env, X_OK) != 0) {
                throw std::runtime_error(std::string("ORMCACHE_REDIS_SERVER=") + env +
                                         " is not an executable file");
            }
            return env;
        }
        const char* path = std::getenv("PATH");
        std::string dirs = path != nullptr ? path : "/usr/bin:/bin";
        dirs += ":/usr/sbin:/sbin:/usr/local/bin";
        std::istringstream in(dirs);
        std::string dir;
        while (std::getline(in, dir, ':')) {
            if (dir.empty())
                continue;
            const std::string candidate = dir + "/redis-server";
            if (::access(candidate.c_str(), X_OK) == 0)
                return candidate;
        }
        throw std::runtime_error(
            "redis-server is not installed (not on PATH, ORMCACHE_REDIS_SERVER unset): the Redis "
            "tests need it; install it with scripts/setup-debian.sh (apt-get install "
            "redis-server)");
    }

    void start() {
        const std::string binary = find_binary();
        std::vector<std::string> args{binary,
                                      "--port",
                                      std::to_string(port_),
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
                                      dir_.path().string()};
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

        // Everything the child needs is built before fork(): after it, only async-signal-safe
        // calls until exec.
        std::vector<char*> argv;
        for (auto& a : args)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        const int log_fd =
            ::open(log_path().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (log_fd < 0)
            throw std::runtime_error("cannot open " + log_path());
        const pid_t parent = ::getpid();

        const pid_t pid = ::fork();
        if (pid < 0) {
            ::close(log_fd);
            throw std::runtime_error("fork() failed");
        }
        if (pid == 0) {
            ::prctl(PR_SET_PDEATHSIG, SIGTERM);
            if (::getppid() != parent)
                ::_exit(127);  // the parent died before prctl
            ::dup2(log_fd, STDOUT_FILENO);
            ::dup2(log_fd, STDERR_FILENO);
            ::close_range(3, ~0U, 0);  // the test's own sockets and files stay with the test
            ::execv(argv[0], argv.data());
            ::_exit(127);
        }
        ::close(log_fd);
        pid_ = pid;
        paused_ = false;
        wait_until_ready();
    }

    /// Polls PING until it answers (10 s at most); a server that exits fails at once.
    void wait_until_ready() {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
        std::string last_error;
        while (std::chrono::steady_clock::now() < deadline) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                throw std::runtime_error("redis-server on port " + std::to_string(port_) +
                                         " exited during start-up; its output:\n" + log());
            }
            try {
                RedisClient c(port_, options_.password);
                if (c.command({"PING"}).str == "PONG")
                    return;
            } catch (const std::exception& e) {
                last_error = e.what();
            }
            std::this_thread::sleep_for(std::chrono::milliseconds{5});
        }
        const std::string output = log();
        stop();
        throw std::runtime_error("redis-server on port " + std::to_string(port_) +
                                 " did not answer PING within 10 s (" + last_error +
                                 "); its output:\n" + output);
    }

    /// Waits until /proc says the process is in `state` (T = stopped), 5 s at most.
    void wait_for_state(char state) {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{5};
        const std::string path = "/proc/" + std::to_string(pid_) + "/stat";
        while (std::chrono::steady_clock::now() < deadline) {
            std::ifstream in(path);
            std::string stat((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
            const auto paren = stat.rfind(')');
            if (paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == state) {
                return;
            }
            std::this_thread::sleep_for(std::chrono::milliseconds{1});
        }
        throw std::runtime_error("redis-server did not reach state " + std::string(1, state));
    }

    RedisServerOptions options_;
    TempDir dir_;
    std::string socket_dir_;
    std::string socket_;
    int port_ = 0;
    pid_t pid_ = -1;
    bool paused_ = false;
};

}  // namespace ormcache_test
