#pragma once
// MemcachedServer: a private memcached for the tests, on a free 127.0.0.1 port.
// MemcachedClient: a raw text-protocol client for assertions (raw values, which keys a server
// holds and when they expire, stats), independent of libmemcached and of the backend.
//
// Modelled on redis_server.hpp: fork/exec, wait (bounded) until the server answers `version`,
// PR_SET_PDEATHSIG so a test binary killed by a timeout leaves no server behind (the signal
// follows the *thread* that started the server: start, restart and destroy servers from the
// test's own thread), SIGTERM + waitpid in the destructor. A missing memcached binary is an
// exception (a failed test), never a skip. Not thread-safe: one thread drives a server;
// clients are per thread.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "test_support.hpp"

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
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        addr.sin_port = htons(static_cast<std::uint16_t>(port));
        if (::connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
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

/// A memcached child process on 127.0.0.1 (see the file comment).
class MemcachedServer {
  public:
    /// port 0: pick a free one.
    explicit MemcachedServer(int port = 0) {
        const bool pick = port == 0;
        for (int attempt = 0;; ++attempt) {
            port_ = pick ? free_port() : port;
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

    MemcachedServer(const MemcachedServer&) = delete;
    MemcachedServer& operator=(const MemcachedServer&) = delete;

    ~MemcachedServer() {
        try {
            stop();
        } catch (...) {
            // Destructors must not throw; stop() already escalated to SIGKILL if it had to.
        }
    }

    int port() const noexcept { return port_; }
    bool running() const noexcept { return pid_ > 0; }
    /// "127.0.0.1:<port>", as CacheConfig::arguments.url lists servers.
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }

    /// A port nothing listens on right now (bind 127.0.0.1:0, read it, close).
    static int free_port() {
        const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            throw std::runtime_error("socket() failed");
        sockaddr_in addr{};
        addr.sin_family = AF_INET;
        addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
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

    /// A fresh, empty server on the same port.
    void restart() {
        stop();
        start();
    }

    /// SIGSTOP: connections are still accepted (the kernel's backlog) but nothing answers,
    /// like a hung server or a network that drops packets; the data survives.
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

    std::unique_ptr<MemcachedClient> client() const {
        return std::make_unique<MemcachedClient>(port_);
    }

    /// The server's output so far (for failure messages).
    std::string log() const {
        std::ifstream in(log_path());
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }

  private:
    std::string log_path() const { return dir_.file("memcached.log"); }

    bool log_contains(std::string_view text) const { return log().find(text) != std::string::npos; }

    static std::string find_binary() {
        if (const char* env = std::getenv("ORMCACHE_MEMCACHED"); env != nullptr && *env) {
            if (::access(env, X_OK) != 0) {
                throw std::runtime_error(std::string("ORMCACHE_MEMCACHED=") + env +
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
            const std::string candidate = dir + "/memcached";
            if (::access(candidate.c_str(), X_OK) == 0)
                return candidate;
        }
        throw std::runtime_error(
            "memcached is not installed (not on PATH, ORMCACHE_MEMCACHED unset): the memcached "
            "tests need it; install it with scripts/setup-debian.sh (apt-get install memcached)");
    }

    void start() {
        std::vector<std::string> args{find_binary(), "-l", "127.0.0.1", "-p", std::to_string(port_),
                                      "-U", "0", "-m", "64", "-t", "2",
                                      // One LRU per slab class: with the segmented LRU, items
                                      // move between queues while a metadump crawls them,
                                      // and the dump can miss some (keys() must see all).
                                      "-o", "no_lru_maintainer"};
        // memcached refuses to run as root unless told which user to be (CI containers).
        if (::geteuid() == 0)
            args.insert(args.end(), {"-u", "root"});

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

    /// Polls `version` until it answers (10 s at most); a server that exits fails at once.
    void wait_until_ready() {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
        std::string last_error;
        while (std::chrono::steady_clock::now() < deadline) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                throw std::runtime_error("memcached on port " + std::to_string(port_) +
                                         " exited during start-up; its output:\n" + log());
            }
            try {
                MemcachedClient c(port_);
                if (!c.version().empty())
                    return;
            } catch (const std::exception& e) {
                last_error = e.what();
            }
            std::this_thread::sleep_for(std::chrono::milliseconds{5});
        }
        const std::string output = log();
        stop();
        throw std::runtime_error("memcached on port " + std::to_string(port_) +
                                 " did not answer `version` within 10 s (" + last_error +
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
            if (paren != std::string::npos && paren + 2 < stat.size() && stat[paren + 2] == state)
                return;
            std::this_thread::sleep_for(std::chrono::milliseconds{1});
        }
        throw std::runtime_error("memcached did not reach state " + std::string(1, state));
    }

    TempDir dir_;
    int port_ = 0;
    pid_t pid_ = -1;
    bool paused_ = false;
};

}  // namespace ormcache_test
