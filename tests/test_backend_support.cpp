// The pieces every remote backend shares (include/ormcache/detail/): undelivered
// invalidations kept and folded, incident tracking for on_error, the circuit breaker and the
// probes that invalidations make through it, and the distributed-lock wait. The backends' own tests
// exercise them against real servers; these pin their contracts.

#include <atomic>
#include <chrono>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <ormcache/detail/cache/incident.hpp>
#include <ormcache/detail/cache/lock_wait.hpp>
#include <ormcache/detail/cache/pending_invalidations.hpp>
#include <ormcache/detail/cache/server_health.hpp>
#include <ormcache/detail/util/connection_pool.hpp>

using ormcache::CacheError;
using ormcache::InvalidationBatch;
using ormcache::ReadResult;
using ormcache::detail::IncidentTracker;
using ormcache::detail::PendingInvalidations;
using ormcache::detail::PoolRefusal;
using ormcache::detail::ServerHealth;
using ormcache::detail::wait_for_lock;
using namespace std::chrono_literals;

namespace {

std::vector<InvalidationBatch> drain(PendingInvalidations& pending) {
    std::vector<InvalidationBatch> delivered;
    pending.replay([&](const InvalidationBatch& b) { delivered.push_back(b); });
    return delivered;
}

}  // namespace

TEST_CASE("PendingInvalidations: replays oldest first and keeps what failed",
          "[backend][pending]") {
    PendingInvalidations pending;
    CHECK(pending.empty());
    pending.push(InvalidationBatch{{"e:1"}, {"v:t"}, {"g:t"}});
    pending.push(InvalidationBatch{{"e:2"}, {"v:t"}, {"g:t"}});
    pending.push(InvalidationBatch{});  // nothing to deliver: not kept
    CHECK_FALSE(pending.empty());
    CHECK(pending.size() == 2);

    // The server fails on the second batch: the first is gone, the second is kept.
    int calls = 0;
    CHECK_THROWS_AS(pending.replay([&](const InvalidationBatch& b) {
        if (++calls == 2)
            throw CacheError("down", "test", "invalidate");
        CHECK(b.remove == std::vector<std::string>{"e:1"});
    }),
                    CacheError);
    CHECK(pending.size() == 1);
    CHECK_FALSE(pending.empty());

    const auto delivered = drain(pending);
    REQUIRE(delivered.size() == 1);
    CHECK(delivered[0].remove == std::vector<std::string>{"e:2"});
    CHECK(pending.empty());
    CHECK(pending.size() == 0);
    CHECK(drain(pending).empty());
}

TEST_CASE("PendingInvalidations: past its bound, folds everything into counter bumps",
          "[backend][pending]") {
    PendingInvalidations pending(4);
    pending.push(InvalidationBatch{{"e:a:1", "e:a:2"}, {"v:a"}, {"g:a"}});  // 3 keys
    pending.push(InvalidationBatch{{"e:b:1"}, {"v:b"}, {"g:b"}});           // 5 > 4: fold
    pending.push(InvalidationBatch{{"e:a:3"}, {"v:a"}, {"g:a"}});           // folded too
    CHECK(pending.size() == 1);
    const auto delivered = drain(pending);
    REQUIRE(delivered.size() == 1);
    CHECK(delivered[0].remove.empty());
    // Every entity the lost deletes named is made unreachable by its table's generation.
    CHECK(std::set<std::string>(delivered[0].bump.begin(), delivered[0].bump.end()) ==
          std::set<std::string>{"g:a", "g:b", "v:a", "v:b"});
    CHECK(delivered[0].bump.size() == 4);  // no duplicates

    // Once delivered, batches are kept one by one again.
    pending.push(InvalidationBatch{{"e:c:1"}, {"v:c"}, {"g:c"}});
    const auto next = drain(pending);
    REQUIRE(next.size() == 1);
    CHECK(next[0].remove == std::vector<std::string>{"e:c:1"});
}

TEST_CASE("PendingInvalidations: concurrent pushes and replays deliver every batch",
          "[backend][pending][concurrency]") {
    for (int round = 0; round < 20; ++round) {
        PendingInvalidations pending;
        std::atomic<bool> failing{true};
        std::mutex mutex;
        std::set<std::string> delivered;  // guarded by mutex
        auto deliver = [&](const InvalidationBatch& b) {
            if (failing.load())
                throw CacheError("down", "test", "invalidate");
            std::lock_guard lock(mutex);
            delivered.insert(b.remove.begin(), b.remove.end());
        };
        std::vector<std::thread> threads;
        for (int t = 0; t < 4; ++t) {
            threads.emplace_back([&, t] {
                for (int i = 0; i < 50; ++i) {
                    pending.push(
                        InvalidationBatch{{std::to_string(t) + ":" + std::to_string(i)}, {}, {}});
                    if (i == 25 && t == 0)
                        failing = false;
                    try {
                        pending.replay(deliver);
                    } catch (const CacheError&) {
                    }
                }
            });
        }
        for (auto& t : threads)
            t.join();
        pending.replay(deliver);
        CHECK(pending.empty());
        CHECK(delivered.size() == 200);
    }
}

TEST_CASE("IncidentTracker: the first failure opens an incident, a success ends it",
          "[backend][incident]") {
    IncidentTracker tracker;
    CacheError first("down", "test", "read");
    tracker.failed(first);
    CHECK_FALSE(first.continues_incident());
    CacheError second("down", "test", "read");
    tracker.failed(second);
    CHECK(second.continues_incident());
    CHECK(tracker.open());
    tracker.succeeded();
    CHECK_FALSE(tracker.open());
    CacheError third("down again", "test", "read");
    tracker.failed(third);
    CHECK_FALSE(third.continues_incident());
}

TEST_CASE(
    "ConnectionPool: an open circuit refuses reads, lets one probe through at a time, and "
    "closes when a probe's call succeeded",
    "[backend][circuit]") {
    struct Connection {};
    using Pool = ormcache::detail::ConnectionPool<Connection>;
    int opens = 0;
    bool down = true;
    Pool pool(
        {.max_idle = 1, .retry_interval = 10min},
        [&] {
            ++opens;
            if (down)
                throw CacheError("down", "test", "connect");
            return std::make_unique<Connection>();
        },
        [](PoolRefusal refusal, std::string_view) {
            return CacheError(refusal == PoolRefusal::circuit_open ? "circuit open" : "refused",
                              "test", "connect");
        });
    CHECK_THROWS_WITH(pool.acquire(), "down");  // opens the circuit
    CHECK_THROWS_WITH(pool.acquire(), "circuit open");
    CHECK(opens == 1);
    // A failed probe lets the next one try.
    CHECK_THROWS_WITH(pool.acquire(Pool::Admission::probe), "down");
    CHECK(opens == 2);
    down = false;
    {
        auto probe = pool.acquire(Pool::Admission::probe);
        CHECK(probe.probe());
        CHECK(opens == 3);
        CHECK_THROWS_WITH(pool.acquire(Pool::Admission::probe), "circuit open");  // one at a time
        CHECK_THROWS_WITH(pool.acquire(), "circuit open");  // a connect alone proves little
        probe.discard();                                    // its call failed
    }
    CHECK_THROWS_WITH(pool.acquire(), "circuit open");
    {
        auto probe = pool.acquire(Pool::Admission::probe);
        CHECK(probe.probe());
        pool.close_circuit();  // its call succeeded
    }
    auto read = pool.acquire();  // the probe's connection, kept
    CHECK_FALSE(read.probe());
    CHECK(read.reused());
    CHECK(opens == 4);
}

TEST_CASE("ServerHealth: one probe at a time through an open circuit; one that answered closes it",
          "[backend][circuit]") {
    ServerHealth health(10min);
    CHECK_FALSE(health.circuit_open());
    health.trip();
    CHECK(health.circuit_open());
    REQUIRE(health.begin_probe());
    CHECK_FALSE(health.begin_probe());
    health.end_probe(false);
    CHECK(health.circuit_open());
    REQUIRE(health.begin_probe());
    health.end_probe(true);
    CHECK_FALSE(health.circuit_open());
    CHECK(health.begin_probe());  // the next probe may go
    health.end_probe(true);
}

TEST_CASE("wait_for_lock: returns what the holder filled, or gives up at the timeout",
          "[backend][lock]") {
    SECTION("not locked: one attempt") {
        int attempts = 0;
        const auto r = wait_for_lock(1000ms, [&] {
            ++attempts;
            ReadResult result;
            result.lease = "mine";
            return result;
        });
        CHECK(attempts == 1);
        CHECK(r.lease == "mine");
    }
    SECTION("the holder fills while we wait") {
        int attempts = 0;
        const auto r = wait_for_lock(5000ms, [&] {
            ReadResult result;
            if (++attempts < 4) {
                result.locked_elsewhere = true;
            } else {
                result.value = ormcache::CacheValue{"filled", nullptr};
            }
            return result;
        });
        CHECK(attempts == 4);
        REQUIRE(r.value.has_value());
        CHECK(r.value->bytes == "filled");
    }
    SECTION("the holder never finishes: neither value nor lease after the timeout") {
        int attempts = 0;
        const auto started = std::chrono::steady_clock::now();
        const auto r = wait_for_lock(100ms, [&] {
            ++attempts;
            ReadResult result;
            result.locked_elsewhere = true;
            result.lease = "never taken";  // what a confused backend might say
            return result;
        });
        const auto waited = std::chrono::steady_clock::now() - started;
        CHECK_FALSE(r.value.has_value());
        CHECK(r.lease.empty());
        CHECK(attempts > 2);     // it polled, with backoff...
        CHECK(attempts < 100);   // ...not in a busy loop
        CHECK(waited >= 100ms);  // and gave up only at the timeout
    }
}
