#pragma once
// ServerProcess: the process side of the private servers the tests start (RedisServer,
// MemcachedServer): a child on a free 127.0.0.1 port, started with fork/exec and waited for
// (bounded, its output in the failure) until it answers, stopped with SIGTERM + waitpid in the
// destructor, and stopped, killed, restarted, paused and resumed on demand by the fault tests.
//
// The child gets PR_SET_PDEATHSIG, so a test binary killed by a timeout does not leave servers
// behind; that signal follows the *thread* that started the server, so start, restart and
// destroy servers from the test's own thread. A missing server binary is an exception (a failed
// test), never a skip. Not thread-safe: one thread drives a server.

#include <fcntl.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <iterator>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

#include "loopback.hpp"
#include "test_support.hpp"

namespace ormcache_test {

/// A server child process on 127.0.0.1 (see the file comment). A subclass says how to start its
/// kind of server (command_line()) and how to tell that it answers (answers()), and calls
/// launch() from its constructor.
class ServerProcess {
  public:
    ServerProcess(const ServerProcess&) = delete;
    ServerProcess& operator=(const ServerProcess&) = delete;

    virtual ~ServerProcess() {
        try {
            stop();
        } catch (...) {
            // Destructors must not throw; stop() already escalated to SIGKILL if it had to.
        }
    }

    int port() const noexcept { return port_; }
    bool running() const noexcept { return pid_ > 0; }
    pid_t pid() const noexcept { return pid_; }

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

    /// A fresh, empty server on the same port.
    void restart() {
        stop();
        start();
    }

    /// SIGSTOP: the port still accepts connections (the kernel's backlog), but nothing
    /// answers, like a server that hangs or a network that drops packets; the data survives.
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

    /// The server's output so far (for failure messages).
    std::string log() const {
        std::ifstream in(log_path());
        std::stringstream ss;
        ss << in.rdbuf();
        return ss.str();
    }

  protected:
    /// One kind of server, as the error messages name it.
    struct Program {
        std::string binary;       ///< the executable looked for on PATH: "redis-server"
        std::string binary_env;   ///< the environment variable that names it instead
        std::string needed_by;    ///< who needs it, when it is missing: "the Redis tests"
        std::string package;      ///< the Debian package that installs it
        std::string ready_probe;  ///< what answers() sends, when it never answers: "PING"
    };

    explicit ServerProcess(Program program) : program_(std::move(program)) {}

    /// Starts the server on `port`; 0 picks a free one, and picks again (three tries in all)
    /// when another process takes it between free_port() and the server's bind. Called by the
    /// subclass's constructor once everything command_line() reads is set.
    void launch(int port) {
        const bool pick = port == 0;
        for (int attempt = 0;; ++attempt) {
            port_ = pick ? free_port() : port;
            try {
                start();
                return;
            } catch (const std::exception&) {
                if (!pick || attempt == 2 || !log_contains("Address already in use"))
                    throw;
            }
        }
    }

    /// A private directory the server may keep files in (its log is there too).
    const TempDir& dir() const noexcept { return dir_; }

    /// The command line of a server on port(), `binary` first.
    virtual std::vector<std::string> command_line(const std::string& binary) const = 0;

    /// Whether the server on port() answers; an exception counts as "not yet", its message is
    /// kept for the failure message.
    virtual bool answers() const = 0;

  private:
    std::string log_path() const { return dir_.file("server.log"); }

    bool log_contains(std::string_view text) const { return log().find(text) != std::string::npos; }

    std::string find_binary() const {
        if (const char* env = std::getenv(program_.binary_env.c_str()); env != nullptr && *env) {
            if (::access(env, X_OK) != 0) {
                throw std::runtime_error(program_.binary_env + "=" + env +
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
            const std::string candidate = dir + "/" + program_.binary;
            if (::access(candidate.c_str(), X_OK) == 0)
                return candidate;
        }
        throw std::runtime_error(program_.binary + " is not installed (not on PATH, " +
                                 program_.binary_env + " unset): " + program_.needed_by +
                                 " need it; install it with scripts/setup-debian.sh (apt-get "
                                 "install " +
                                 program_.package + ")");
    }

    void start() {
        std::vector<std::string> args = command_line(find_binary());

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

    /// Polls answers() until it says yes (10 s at most); a server that exits fails at once.
    void wait_until_ready() {
        const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds{10};
        std::string last_error;
        while (std::chrono::steady_clock::now() < deadline) {
            int status = 0;
            if (::waitpid(pid_, &status, WNOHANG) == pid_) {
                pid_ = -1;
                throw std::runtime_error(program_.binary + " on port " + std::to_string(port_) +
                                         " exited during start-up; its output:\n" + log());
            }
            try {
                if (answers())
                    return;
            } catch (const std::exception& e) {
                last_error = e.what();
            }
            std::this_thread::sleep_for(std::chrono::milliseconds{5});
        }
        const std::string output = log();
        stop();
        throw std::runtime_error(program_.binary + " on port " + std::to_string(port_) +
                                 " did not answer " + program_.ready_probe + " within 10 s (" +
                                 last_error + "); its output:\n" + output);
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
        throw std::runtime_error(program_.binary + " did not reach state " + std::string(1, state));
    }

    Program program_;
    TempDir dir_;
    int port_ = 0;
    pid_t pid_ = -1;
    bool paused_ = false;
};

}  // namespace ormcache_test
