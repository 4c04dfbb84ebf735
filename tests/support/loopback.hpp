#pragma once
// 127.0.0.1 for the test servers and their clients: the socket address of a port, and a port
// nothing listens on.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdint>
#include <stdexcept>

namespace ormcache_test {

/// 127.0.0.1:`port` (0: let bind() pick one).
inline sockaddr_in loopback_address(int port) {
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    addr.sin_port = htons(static_cast<std::uint16_t>(port));
    return addr;
}

/// A port nothing listens on right now (bind 127.0.0.1:0, read it, close). Another process may
/// take it before the caller binds it: ServerProcess picks again when that happens.
inline int free_port() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
        throw std::runtime_error("socket() failed");
    sockaddr_in addr = loopback_address(0);
    socklen_t len = sizeof addr;
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0 ||
        ::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
        ::close(fd);
        throw std::runtime_error("cannot bind 127.0.0.1:0 to find a free port");
    }
    ::close(fd);
    return ntohs(addr.sin_port);
}

}  // namespace ormcache_test
