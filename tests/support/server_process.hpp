#pragma once
// ServerProcess: the process side of the private servers the tests start (RedisServer,
// MemcachedServer): a child on a free 127.0.0.1 port, started with fork/exec and waited for
// (bounded, its output in the failure) until it answers, stopped with SIGTERM + waitpid in the
// destructor, and stopped, killed, restarted, paused and resumed on demand by the fault tests.
//
// The child gets PR_SET_PDEATHSIG, so a test binary killed by a timeout does not leave servers
// behind; that signal follows the *thread* that started the server, so start, restart and
// destroy servers from the test's own thread. A server that refuses to run as root (PostgreSQL)
// names a user (Program::run_as): when the tests run as root the child switches to it before
// exec, so the pid stop() signals is the server itself, never a runuser/su in between. A
// missing server binary is an exception (a failed test), never a skip. Not thread-safe: one
// thread drives a server.

#include <fcntl.h>
#include <grp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <exception>
#include <filesystem>
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

    /// Program::stop_signal (SIGTERM unless the server says otherwise; SIGCONT first, in case
    /// it is paused), then waitpid; SIGKILL after 10 s.
    void stop() {
        if (pid_ <= 0)
            return;
        ::kill(pid_, SIGCONT);
        ::kill(pid_, program_.stop_signal);
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
        std::string binary;         ///< the executable looked for on PATH: "redis-server"
        std::string binary_env;     ///< the environment variable that names it instead
        std::string needed_by;      ///< who needs it, when it is missing: "the Redis tests"
        std::string package;        ///< the Debian package that installs it
        std::string ready_probe;    ///< what answers() sends, when it never answers: "PING"
        std::string search_path{};  ///< directories (':'-separated) searched before PATH
        int stop_signal = SIGTERM;  ///< what stop() and the parent's death send it
        std::string run_as{};       ///< when root: the user the child runs as (empty: root)
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

    /// The path of executable `name`: for the server binary the one Program::binary_env names,
    /// if set; else the first found next to that one, in Program::search_path, on PATH, then in
    /// the sbin directories. Missing: an exception that says what to install.
    std::string find_binary(const std::string& name) const {
        std::string dirs;
        if (const char* env = std::getenv(program_.binary_env.c_str()); env != nullptr && *env) {
            if (name == program_.binary) {
                if (::access(env, X_OK) != 0) {
                    throw std::runtime_error(program_.binary_env + "=" + env +
                                             " is not an executable file");
                }
                return env;
            }
            dirs = std::filesystem::path(env).parent_path().string() + ":";
        }
        const char* path = std::getenv("PATH");
        dirs += program_.search_path + ":";
        dirs += path != nullptr ? path : "/usr/bin:/bin";
        dirs += ":/usr/sbin:/sbin:/usr/local/bin";
        std::istringstream in(dirs);
        std::string dir;
        while (std::getline(in, dir, ':')) {
            if (dir.empty())
                continue;
            const std::string candidate = dir + "/" + name;
            if (::access(candidate.c_str(), X_OK) == 0)
                return candidate;
        }
        throw std::runtime_error(name + " is not installed (not in " +
                                 (program_.search_path.empty() ? "" : program_.search_path + ", ") +
                                 "not on PATH, " + program_.binary_env +
                                 " unset): " + program_.needed_by +
                                 " need it; install it with scripts/setup-debian.sh (apt-get "
                                 "install " +
                                 program_.package + ")");
    }

    /// Runs `args` (the executable first) to completion as the server would run (the same
    /// user, output appended to the server's log, in `cwd`) and returns its exit status
    /// (waitpid's), for the set-up a server needs before it starts (initdb).
    int run_to_exit(std::vector<std::string> args, const std::string& cwd) {
        const pid_t pid = spawn(std::move(args), cwd);
        int status = 0;
        while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
        }
        return status;
    }

    /// The user and groups a child switches to (when the tests run as root and the server
    /// names a user); looked up before fork(), since the child may only make system calls.
    struct Credentials {
        bool change = false;
        uid_t uid = 0;
        gid_t gid = 0;
        std::vector<gid_t> groups;
    };

    Credentials credentials() const {
        Credentials out;
        if (program_.run_as.empty() || ::geteuid() != 0)
            return out;
        const passwd* user = ::getpwnam(program_.run_as.c_str());
        if (user == nullptr) {
            throw std::runtime_error("user '" + program_.run_as + "' does not exist: " +
                                     program_.needed_by + " run " + program_.binary +
                                     " as that user when root; install it with "
                                     "scripts/setup-debian.sh (apt-get install " +
                                     program_.package + ")");
        }
        out.change = true;
        out.uid = user->pw_uid;
        out.gid = user->pw_gid;
        // getgrouplist() sets `count` to the size it needs when the vector is too small.
        int count = 32;
        for (int size = 0; size != count;) {
            size = count;
            out.groups.resize(static_cast<std::size_t>(size));
            if (::getgrouplist(user->pw_name, out.gid, out.groups.data(), &count) >= 0)
                break;
        }
        out.groups.resize(static_cast<std::size_t>(count));
        return out;
    }

    /// The command line of a server on port(), `binary` first.
    virtual std::vector<std::string> command_line(const std::string& binary) const = 0;

    /// Whether the server on port() answers; an exception counts as "not yet", its message is
    /// kept for the failure message.
    virtual bool answers() const = 0;

  private:
    std::string log_path() const { return dir_.file("server.log"); }

    bool log_contains(std::string_view text) const { return log().find(text) != std::string::npos; }

    void start() {
        const pid_t pid = spawn(command_line(find_binary(program_.binary)), {});
        pid_ = pid;
        paused_ = false;
        wait_until_ready();
    }

    /// fork + exec of `args` (the executable first), output appended to the log, in `cwd`
    /// (empty: the test's), as Program::run_as when root; returns the child's pid.
    pid_t spawn(std::vector<std::string> args, const std::string& cwd) {
        // Everything the child needs is built before fork(): after it, only async-signal-safe
        // calls until exec.
        const Credentials as = credentials();
        std::vector<char*> argv;
        for (auto& a : args)
            argv.push_back(a.data());
        argv.push_back(nullptr);
        const int log_fd =
            ::open(log_path().c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
        if (log_fd < 0)
            throw std::runtime_error("cannot open " + log_path());
        const pid_t parent = ::getpid();
        const int death_signal = program_.stop_signal;

        const pid_t pid = ::fork();
        if (pid < 0) {
            ::close(log_fd);
            throw std::runtime_error("fork() failed");
        }
        if (pid == 0) {
            // Groups, then group, then user: after setuid() the others can no longer change.
            if (as.change && (::setgroups(as.groups.size(), as.groups.data()) != 0 ||
                              ::setgid(as.gid) != 0 || ::setuid(as.uid) != 0))
                child_fails(log_fd, "server_process: cannot switch to the server's user\n");
            // After the credential change, which clears it.
            ::prctl(PR_SET_PDEATHSIG, death_signal);
            if (::getppid() != parent)
                ::_exit(127);  // the parent died before prctl
            if (!cwd.empty() && ::chdir(cwd.c_str()) != 0)
                child_fails(log_fd, "server_process: cannot change to the working directory\n");
            ::dup2(log_fd, STDOUT_FILENO);
            ::dup2(log_fd, STDERR_FILENO);
            ::close_range(3, ~0U, 0);  // the test's own sockets and files stay with the test
            ::execv(argv[0], argv.data());
            child_fails(STDERR_FILENO, "server_process: exec failed\n");
        }
        ::close(log_fd);
        return pid;
    }

    /// In the child before exec: says why in the log (write() is async-signal-safe) and exits.
    [[noreturn]] static void child_fails(int fd, std::string_view why) noexcept {
        [[maybe_unused]] const auto written = ::write(fd, why.data(), why.size());
        ::_exit(126);
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
