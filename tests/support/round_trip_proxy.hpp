#pragma once
// RoundTripProxy: a TCP proxy on a free 127.0.0.1 port in front of a server, counting round
// trips, to check from outside the library how many times a client waits for a server.
//
// A round trip starts when a client sends bytes while it has no request awaiting an answer
// on that connection, and ends when the server answers: a pipelined batch of any size sent
// in one write and answered at once is one round trip, the same commands each awaited in
// turn are as many round trips as commands. Bytes are forwarded unchanged.
//
// set_cut(true) makes the server unreachable through the proxy (every connection is closed,
// new ones are closed as soon as they are accepted) until set_cut(false): a network cut seen by
// the proxy's clients only, while other clients still reach the server directly.
//
// One thread polls every connection. Thread-safe: the counter may be read, and set_cut called,
// from any thread.

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "loopback.hpp"

namespace ormcache_test {

class RoundTripProxy {
  public:
    explicit RoundTripProxy(int target_port) : target_port_(target_port) {
        listener_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        sockaddr_in addr = loopback_address(0);
        socklen_t size = sizeof addr;
        if (listener_ < 0 || ::bind(listener_, reinterpret_cast<sockaddr*>(&addr), size) != 0 ||
            ::listen(listener_, 64) != 0 ||
            ::getsockname(listener_, reinterpret_cast<sockaddr*>(&addr), &size) != 0) {
            if (listener_ >= 0)
                ::close(listener_);
            throw std::runtime_error("RoundTripProxy: cannot listen on 127.0.0.1");
        }
        port_ = ntohs(addr.sin_port);
        if (::pipe2(wake_, O_CLOEXEC) != 0) {
            ::close(listener_);
            throw std::runtime_error("RoundTripProxy: pipe2 failed");
        }
        thread_ = std::thread([this] { run(); });
    }

    RoundTripProxy(const RoundTripProxy&) = delete;
    RoundTripProxy& operator=(const RoundTripProxy&) = delete;

    ~RoundTripProxy() {
        const char stop = 's';
        [[maybe_unused]] const auto written = ::write(wake_[1], &stop, 1);
        thread_.join();
        for (const auto& link : links_) {
            ::close(link.client);
            ::close(link.server);
        }
        ::close(listener_);
        ::close(wake_[0]);
        ::close(wake_[1]);
    }

    int port() const noexcept { return port_; }
    /// "127.0.0.1:<port>", as CacheConfig::arguments.url lists servers.
    std::string address() const { return "127.0.0.1:" + std::to_string(port_); }
    /// Round trips so far, over every connection.
    std::uint64_t round_trips() const noexcept { return round_trips_.load(); }
    /// Connections accepted so far.
    std::uint64_t connections() const noexcept { return connections_.load(); }

    /// Cuts the proxy's clients off the server (true) or lets them through again (false).
    void set_cut(bool cut) {
        cut_ = cut;
        const char wake = 'c';
        [[maybe_unused]] const auto written = ::write(wake_[1], &wake, 1);
    }

  private:
    struct Link {
        int client = -1;
        int server = -1;
        bool awaiting_answer = false;  // the client sent bytes the server has not answered yet
    };

    /// Writes all of `data` (blocking: both ends read promptly).
    static bool send_all(int fd, const char* data, std::size_t size) {
        while (size > 0) {
            const auto n = ::send(fd, data, size, MSG_NOSIGNAL);
            if (n <= 0)
                return false;
            data += n;
            size -= static_cast<std::size_t>(n);
        }
        return true;
    }

    void accept_one() {
        const int client = ::accept4(listener_, nullptr, nullptr, SOCK_CLOEXEC);
        if (client < 0)
            return;
        if (cut_.load()) {
            ::close(client);
            return;
        }
        const int server = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        const sockaddr_in target = loopback_address(target_port_);
        if (server < 0 ||
            ::connect(server, reinterpret_cast<const sockaddr*>(&target), sizeof target) != 0) {
            // The server is down: so is the proxy, for this client.
            ::close(client);
            if (server >= 0)
                ::close(server);
            return;
        }
        const int one = 1;
        ::setsockopt(client, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        ::setsockopt(server, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        links_.push_back(Link{client, server, false});
        ++connections_;
    }

    /// Forwards what `from` has; false when the connection is over.
    bool forward(Link& link, bool from_client) {
        char chunk[65536];
        const int from = from_client ? link.client : link.server;
        const int to = from_client ? link.server : link.client;
        const auto n = ::recv(from, chunk, sizeof chunk, 0);
        if (n <= 0)
            return false;
        if (from_client && !link.awaiting_answer) {
            link.awaiting_answer = true;
            ++round_trips_;
        } else if (!from_client) {
            link.awaiting_answer = false;
        }
        return send_all(to, chunk, static_cast<std::size_t>(n));
    }

    void run() {
        for (;;) {
            std::vector<pollfd> fds{{wake_[0], POLLIN, 0}, {listener_, POLLIN, 0}};
            for (const auto& link : links_) {
                fds.push_back({link.client, POLLIN, 0});
                fds.push_back({link.server, POLLIN, 0});
            }
            if (::poll(fds.data(), fds.size(), -1) < 0)
                continue;  // EINTR
            if (fds[0].revents != 0) {
                char wake = 's';
                if (::read(wake_[0], &wake, 1) != 1 || wake == 's')
                    return;
                if (cut_.load()) {
                    for (const auto& link : links_) {
                        ::close(link.client);
                        ::close(link.server);
                    }
                    links_.clear();
                }
                continue;
            }
            std::vector<Link> open;
            for (std::size_t i = 0; i < links_.size(); ++i) {
                Link& link = links_[i];
                bool alive = true;
                if (fds[2 + 2 * i].revents != 0)
                    alive = forward(link, true);
                if (alive && fds[3 + 2 * i].revents != 0)
                    alive = forward(link, false);
                if (alive) {
                    open.push_back(link);
                } else {
                    ::close(link.client);
                    ::close(link.server);
                }
            }
            links_.swap(open);
            if (fds[1].revents != 0)
                accept_one();
        }
    }

    const int target_port_;
    int port_ = 0;
    int listener_ = -1;
    int wake_[2] = {-1, -1};
    std::vector<Link> links_;  // only the proxy thread touches it (and the destructor, after)
    std::atomic<std::uint64_t> round_trips_{0};
    std::atomic<std::uint64_t> connections_{0};
    std::atomic<bool> cut_{false};
    std::thread thread_;
};

}  // namespace ormcache_test
