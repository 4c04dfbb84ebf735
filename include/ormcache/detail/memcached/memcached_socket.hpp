#pragma once
// A plain TCP connection speaking memcached's text protocol, for the two things libmemcached
// cannot do for the memcached backend: pipelining any number of commands in one round trip
// while still reading every reply (invalidations: each must be known delivered), and the LRU
// crawler's `lru_crawler metadump` (clear(): the only way to list a server's keys).
//
// Not thread-safe: one thread uses a socket at a time (the backend keeps a pool per server).

#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/types.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace ormcache::detail {

/// A failed connect or exchange. The backend turns it into a CacheError naming the server.
class MemcachedSocketError : public std::runtime_error {
  public:
    MemcachedSocketError(const std::string& what, bool timed_out)
        : std::runtime_error(what), timed_out_(timed_out) {}
    /// The server took too long (as opposed to refusing or closing the connection): it may
    /// still run what it was sent, and trying again would only wait as long again.
    bool timed_out() const noexcept { return timed_out_; }

  private:
    bool timed_out_;
};

/// Received reply bytes, handed out line by line: how MemcachedSocket::exchange splits what
/// it reads, kept apart from the socket so that it is a pure function of the bytes
/// (tests/fuzz/fuzz_memcached.cpp feeds it any bytes, in any chunks).
class MemcachedLineBuffer {
  public:
    /// Appends received bytes. Invalidates every line handed out before.
    void append(std::string_view bytes) { buffer_.append(bytes); }

    /// The next complete line, without its "\r\n" or "\n", or nothing until more bytes
    /// arrive. The view lives until the next append(), compact() or clear().
    std::optional<std::string_view> next_line() {
        const auto end = buffer_.find('\n', consumed_);
        if (end == std::string::npos)
            return std::nullopt;
        std::string_view line(buffer_.data() + consumed_, end - consumed_);
        if (line.ends_with('\r'))
            line.remove_suffix(1);
        consumed_ = end + 1;
        return line;
    }

    /// Drops the bytes already handed out once they are half the buffer or more: the buffer
    /// stays about as small as the unread part.
    void compact() {
        if (consumed_ > 0 && consumed_ * 2 >= buffer_.size()) {
            buffer_.erase(0, consumed_);
            consumed_ = 0;
        }
    }

    /// Bytes received but not handed out as a line (a partial line, or lines not asked for).
    bool has_unread() const noexcept { return consumed_ < buffer_.size(); }

    void clear() noexcept {
        buffer_.clear();
        consumed_ = 0;
    }

  private:
    std::string buffer_;        // received bytes; [consumed_, size) not handed out yet
    std::size_t consumed_ = 0;  // bytes of buffer_ already handed out as lines
};

class MemcachedSocket {
  public:
    /// Connects to host:port within `connect_timeout`; afterwards `io_timeout` is the longest
    /// wait for the server to take bytes or answer. Throws MemcachedSocketError.
    MemcachedSocket(const std::string& host, int port, std::chrono::milliseconds connect_timeout,
                    std::chrono::milliseconds io_timeout)
        : io_timeout_(io_timeout) {
        addrinfo hints{};
        hints.ai_family = AF_UNSPEC;
        hints.ai_socktype = SOCK_STREAM;
        hints.ai_flags = AI_NUMERICSERV;
        addrinfo* found = nullptr;
        const std::string service = std::to_string(port);
        if (const int rc = ::getaddrinfo(host.c_str(), service.c_str(), &hints, &found); rc != 0)
            throw MemcachedSocketError(std::string("cannot resolve: ") + ::gai_strerror(rc), false);
        std::string last_error = "no address";
        bool timed_out = false;
        for (const addrinfo* a = found; a != nullptr && fd_ < 0; a = a->ai_next) {
            const int fd = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
                                    a->ai_protocol);
            if (fd < 0) {
                last_error = std::strerror(errno);
                continue;
            }
            if (::connect(fd, a->ai_addr, a->ai_addrlen) == 0 || errno == EINPROGRESS) {
                // Non-blocking: the connect ends when the socket becomes writable.
                pollfd p{fd, POLLOUT, 0};
                const int ready = ::poll(&p, 1, static_cast<int>(connect_timeout.count()));
                int error = 0;
                socklen_t size = sizeof error;
                if (ready == 1 && ::getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &size) == 0 &&
                    error == 0) {
                    fd_ = fd;
                    break;
                }
                timed_out = ready == 0;
                last_error =
                    ready == 0 ? "connect timed out" : std::strerror(error ? error : errno);
            } else {
                last_error = std::strerror(errno);
            }
            ::close(fd);
        }
        ::freeaddrinfo(found);
        if (fd_ < 0)
            throw MemcachedSocketError("cannot connect: " + last_error, timed_out);
        // Commands go out as soon as they are written: a pipeline is one write anyway.
        const int one = 1;
        ::setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }

    MemcachedSocket(const MemcachedSocket&) = delete;
    MemcachedSocket& operator=(const MemcachedSocket&) = delete;
    ~MemcachedSocket() { ::close(fd_); }

    /// Sends `request` and hands each reply line (without its "\r\n" or "\n") to
    /// `on_line(std::string_view) -> bool` until it returns false. Reads while it writes: a
    /// request bigger than the socket buffers would otherwise deadlock against a server that
    /// stops reading until its replies are read. Throws MemcachedSocketError (the socket is
    /// then unusable), or whatever on_line throws (likewise).
    template <class OnLine>
    void exchange(std::string_view request, OnLine&& on_line) {
        if (lines_.has_unread())
            throw MemcachedSocketError("unread reply bytes left from an earlier exchange", false);
        lines_.clear();
        bool more = true;
        while (more) {
            // Hand out every complete line received so far.
            while (const auto line = lines_.next_line()) {
                if (!on_line(*line)) {
                    more = false;
                    break;
                }
            }
            if (!more)
                break;
            lines_.compact();
            pollfd p{fd_, static_cast<short>(POLLIN | (request.empty() ? 0 : POLLOUT)), 0};
            const int ready = ::poll(&p, 1, static_cast<int>(io_timeout_.count()));
            if (ready == 0)
                throw MemcachedSocketError("no reply within the socket timeout", true);
            if (ready < 0) {
                if (errno == EINTR)
                    continue;
                throw MemcachedSocketError(std::string("poll: ") + std::strerror(errno), false);
            }
            if ((p.revents & POLLOUT) != 0 && !request.empty()) {
                const auto sent = ::send(fd_, request.data(), request.size(), MSG_NOSIGNAL);
                if (sent < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                    throw MemcachedSocketError(std::string("send: ") + std::strerror(errno), false);
                if (sent > 0)
                    request.remove_prefix(static_cast<std::size_t>(sent));
            }
            if ((p.revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
                char chunk[16384];
                const auto received = ::recv(fd_, chunk, sizeof chunk, 0);
                if (received == 0)
                    throw MemcachedSocketError("connection closed by the server", false);
                if (received < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
                    throw MemcachedSocketError(std::string("recv: ") + std::strerror(errno), false);
                if (received > 0)
                    lines_.append(std::string_view(chunk, static_cast<std::size_t>(received)));
            }
        }
        if (!request.empty())
            throw MemcachedSocketError("the server answered before taking the whole request",
                                       false);
    }

  private:
    int fd_ = -1;
    std::chrono::milliseconds io_timeout_;
    MemcachedLineBuffer lines_;  // received bytes not handed out yet
};

}  // namespace ormcache::detail
