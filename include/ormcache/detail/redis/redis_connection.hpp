#pragma once
// One hiredis connection, RAII all the way (context and replies), and the one place a hiredis
// failure becomes a CacheError (redis_error). A connection is used by one thread at a time:
// RedisPool (redis_pool.hpp) hands them out.

#include <sys/time.h>

#include <array>
#include <chrono>
#include <cstddef>
#include <initializer_list>
#include <iterator>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include <hiredis/hiredis.h>

#include "../../errors.hpp"
#include "../cache/backend_error.hpp"

namespace ormcache::detail {

inline timeval to_timeval(std::chrono::milliseconds ms) {
    timeval tv{};
    tv.tv_sec = static_cast<decltype(tv.tv_sec)>(ms.count() / 1000);
    tv.tv_usec = static_cast<decltype(tv.tv_usec)>((ms.count() % 1000) * 1000);
    return tv;
}

struct RedisContextDeleter {
    void operator()(redisContext* c) const noexcept { redisFree(c); }
};
struct RedisReplyDeleter {
    void operator()(redisReply* r) const noexcept { freeReplyObject(r); }
};
using RedisReply = std::unique_ptr<redisReply, RedisReplyDeleter>;

/// Which server `o` talks to, for messages: "127.0.0.1:6379 (db 0)", or
/// "unix socket /run/redis.sock (db 0)". Never the password.
template <class Options>
std::string redis_endpoint(const Options& o) {
    const std::string server = o.unix_socket.empty() ? o.host + ":" + std::to_string(o.port)
                                                     : "unix socket " + o.unix_socket;
    return server + " (db " + std::to_string(o.db) + ")";
}

/// The one place a hiredis failure becomes an error. `endpoint` is redis_endpoint(): an
/// on_error message must say which server failed.
inline CacheError redis_error(std::string_view endpoint, std::string_view operation,
                              std::string_view what) {
    return backend_error("redis", endpoint, operation, what);
}

/// One connection. Any I/O or protocol error marks it broken (hiredis cannot reuse it).
class RedisConnection {
  public:
    /// `o`: a RedisOptions.
    template <class Options>
    explicit RedisConnection(const Options& o) : endpoint_(redis_endpoint(o)) {
        redisContext* c =
            o.unix_socket.empty()
                ? redisConnectWithTimeout(o.host.c_str(), o.port, to_timeval(o.connect_timeout))
                : redisConnectUnixWithTimeout(o.unix_socket.c_str(), to_timeval(o.connect_timeout));
        context_.reset(c);
        if (c == nullptr)
            throw redis_error(endpoint_, "connect", "cannot allocate a context");
        if (c->err != 0)
            throw redis_error(endpoint_, "connect", c->errstr);
        if (redisSetTimeout(c, to_timeval(o.socket_timeout)) != REDIS_OK)
            throw redis_error(endpoint_, "connect", c->errstr);
        if (!o.password.empty()) {
            std::vector<std::string> auth{"AUTH"};
            if (!o.username.empty())
                auth.push_back(o.username);
            auth.push_back(o.password);
            expect_ok(command(auth), "auth");
        }
        if (o.db != 0)
            expect_ok(command({"SELECT", std::to_string(o.db)}), "select");
    }

    bool broken() const noexcept { return broken_; }

    /// Sends one command and reads its reply: one round trip. The arguments (any range of
    /// string-likes) are passed to hiredis as pointers and lengths, never copied here.
    template <class Args>
    RedisReply command(const Args& args) {
        // Up to 16 arguments (every hit and fill) need no heap for the argv arrays.
        constexpr std::size_t inline_count = 16;
        const std::size_t count = std::size(args);
        std::array<const char*, inline_count> inline_argv;
        std::array<std::size_t, inline_count> inline_lengths;
        std::vector<const char*> heap_argv;
        std::vector<std::size_t> heap_lengths;
        const char** argv = inline_argv.data();
        std::size_t* lengths = inline_lengths.data();
        if (count > inline_count) {
            heap_argv.resize(count);
            heap_lengths.resize(count);
            argv = heap_argv.data();
            lengths = heap_lengths.data();
        }
        std::size_t i = 0;
        for (const auto& a : args) {
            argv[i] = std::data(a);
            lengths[i] = std::size(a);
            ++i;
        }
        if (redisAppendCommandArgv(context_.get(), static_cast<int>(count), argv, lengths) !=
            REDIS_OK) {
            fail("send");
        }
        void* reply = nullptr;
        if (redisGetReply(context_.get(), &reply) != REDIS_OK || reply == nullptr)
            fail("receive");
        return RedisReply(static_cast<redisReply*>(reply));
    }

    RedisReply command(std::initializer_list<std::string_view> args) {
        return command<std::initializer_list<std::string_view>>(args);
    }

  private:
    [[noreturn]] void fail(std::string_view operation) {
        broken_ = true;
        throw redis_error(endpoint_, operation,
                          context_->errstr[0] != '\0' ? context_->errstr : "connection lost");
    }

    void expect_ok(const RedisReply& r, std::string_view operation) const {
        if (r->type == REDIS_REPLY_ERROR)
            throw redis_error(endpoint_, operation, std::string(r->str, r->len));
    }

    std::string endpoint_;  // redis_endpoint() of the options, for messages
    std::unique_ptr<redisContext, RedisContextDeleter> context_;
    bool broken_ = false;
};

}  // namespace ormcache::detail
