// Many threads, one Database: each thread has its own session; nothing fails, nothing is lost,
// and the commit listeners hear about every row exactly once.

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <exception>
#include <latch>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "models.hpp"
#include "test_support.hpp"

using namespace std::chrono_literals;
using ormcache_test::TempDir;

namespace {

// Kept modest: the file also runs under ThreadSanitizer (about ten times slower).
constexpr int file_threads = 8;
constexpr int file_rows_per_thread = 60;
constexpr int file_batch = 3;  // rows per transaction
constexpr int file_rounds = 4;

/// Failures seen on worker threads (Catch2 assertions are not thread-safe).
class Failures {
  public:
    void add(std::string what) {
        std::lock_guard lock(mutex_);
        list_.push_back(std::move(what));
    }
    /// Runs fn, recording any exception as a failure.
    template <class Fn>
    void guard(const std::string& who, Fn&& fn) {
        try {
            fn();
        } catch (const std::exception& e) {
            add(who + ": " + e.what());
        } catch (...) {
            add(who + ": unknown exception");
        }
    }
    std::vector<std::string> list() const {
        std::lock_guard lock(mutex_);
        return list_;
    }

  private:
    mutable std::mutex mutex_;
    std::vector<std::string> list_;
};

/// Collects the keys of every committed change, per operation. Thread-safe.
class Deliveries {
  public:
    explicit Deliveries(ormcache::Database& db) {
        db.on_commit([this](const ormcache::ChangeSet& set) {
            std::lock_guard lock(mutex_);
            ++sets_;
            for (const auto& c : set.changes()) {
                if (c.table == "users" && c.operation == ormcache::Operation::insert &&
                    std::holds_alternative<std::int64_t>(c.new_key)) {
                    inserted_.push_back(std::get<std::int64_t>(c.new_key));
                } else {
                    ++other_;
                }
            }
        });
    }
    std::vector<std::int64_t> inserted() const {
        std::lock_guard lock(mutex_);
        return inserted_;
    }
    std::size_t other() const {
        std::lock_guard lock(mutex_);
        return other_;
    }
    std::size_t sets() const {
        std::lock_guard lock(mutex_);
        return sets_;
    }

  private:
    mutable std::mutex mutex_;
    std::vector<std::int64_t> inserted_;
    std::size_t other_ = 0;
    std::size_t sets_ = 0;
};

std::string describe(const std::vector<std::string>& failures) {
    std::string out;
    for (std::size_t i = 0; i < failures.size() && i < 10; ++i)
        out += failures[i] + "\n";
    if (failures.size() > 10)
        out += "... " + std::to_string(failures.size()) + " in all\n";
    return out;
}

/// One writer/reader thread: inserts `rows` users tagged with age = `tag`, `batch` per
/// transaction, and checks its reads between transactions.
void writer_reader(ormcache::Database& db, int tag, int rows, int batch, std::latch& start,
                   std::vector<std::int64_t>& my_ids, Failures& failures) {
    const std::string who = "thread " + std::to_string(tag);
    failures.guard(who, [&] {
        auto s = db.session();
        ormcache::Repository<app::User> users{s};
        const ormcache::ComparisonFilter mine{&app::User::age, "=", tag};
        start.arrive_and_wait();
        std::int64_t previous_total = 0;
        int written = 0;
        while (written < rows) {
            for (int j = 0; j < batch && written < rows; ++j, ++written) {
                const auto u = users.add(app::User{
                    .name = "t" + std::to_string(tag) + "-" + std::to_string(written),
                    .email = "e",
                    .age = tag,
                });
                my_ids.push_back(u.id);
            }
            s.commit();

            // get: the last row this thread committed.
            const auto last = users.get(my_ids.back());
            if (last.age != tag ||
                last.name != "t" + std::to_string(tag) + "-" + std::to_string(written - 1)) {
                failures.add(who + ": get() returned another row");
            }
            // count/list of this thread's rows: nobody else writes them, so exact.
            const auto own = users.count(mine);
            if (own != written) {
                failures.add(who + ": count(mine) = " + std::to_string(own) + ", expected " +
                             std::to_string(written));
            }
            const auto listed = users.list(mine);
            if (listed.size() != static_cast<std::size_t>(written)) {
                failures.add(who + ": list(mine) has " + std::to_string(listed.size()) +
                             " rows, expected " + std::to_string(written));
            }
            // The total only grows, and includes at least this thread's rows.
            const auto total = users.count();
            if (total < previous_total || total < written) {
                failures.add(who + ": count() went from " + std::to_string(previous_total) +
                             " to " + std::to_string(total));
            }
            previous_total = total;
            // A snapshot: count and list agree while other threads commit.
            if (written % (batch * 3) == 0) {
                s.begin();
                const auto n = users.count();
                const auto all = users.list();
                if (static_cast<std::int64_t>(all.size()) != n) {
                    failures.add(who + ": snapshot count " + std::to_string(n) + " but list has " +
                                 std::to_string(all.size()));
                }
                s.commit();
            }
        }
    });
}

/// Checks the end state: every id present exactly once, deliveries matching the inserts.
void check_final(ormcache::Database& db, const std::vector<std::vector<std::int64_t>>& ids,
                 const Deliveries& deliveries, std::size_t expected_rows) {
    std::vector<std::int64_t> written;
    for (const auto& v : ids)
        written.insert(written.end(), v.begin(), v.end());
    std::sort(written.begin(), written.end());
    CHECK(written.size() == expected_rows);
    CHECK(std::adjacent_find(written.begin(), written.end()) == written.end());  // unique ids

    auto s = db.session();
    ormcache::Repository<app::User> users{s};
    CHECK(users.count() == static_cast<std::int64_t>(expected_rows));
    std::vector<std::int64_t> stored;
    for (const auto& u : users.list())
        stored.push_back(u.id);
    std::sort(stored.begin(), stored.end());
    CHECK(stored == written);

    auto delivered = deliveries.inserted();
    std::sort(delivered.begin(), delivered.end());
    CHECK(delivered.size() == expected_rows);
    CHECK(delivered == written);
    CHECK(deliveries.other() == 0);
}

}  // namespace

TEST_CASE("Concurrency: threads writing and reading one file database", "[concurrency]") {
    for (int round = 0; round < file_rounds; ++round) {
        CAPTURE(round);
        TempDir dir;
        ormcache::DatabaseConfig config{.connection_string = dir.file("concurrent.db")};
        config.busy_timeout = 60s;  // generous: a waiting writer must never give up
        ormcache::Database db{config};
        db.create_all<app::User>();
        Deliveries deliveries{db};
        Failures failures;

        std::vector<std::vector<std::int64_t>> ids(file_threads);
        std::latch start(file_threads);
        std::vector<std::thread> threads;
        for (int t = 0; t < file_threads; ++t) {
            threads.emplace_back(writer_reader, std::ref(db), t + 1, file_rows_per_thread,
                                 file_batch, std::ref(start), std::ref(ids[t]), std::ref(failures));
        }
        for (auto& t : threads)
            t.join();

        const auto seen = failures.list();
        INFO(describe(seen));
        CHECK(seen.empty());
        check_final(db, ids, deliveries,
                    static_cast<std::size_t>(file_threads) * file_rows_per_thread);
        // One delivery per committed write transaction.
        constexpr int commits_per_thread = (file_rows_per_thread + file_batch - 1) / file_batch;
        CHECK(deliveries.sets() == static_cast<std::size_t>(file_threads * commits_per_thread));
    }
}

TEST_CASE("Concurrency: sessions of a \":memory:\" database", "[concurrency][memory]") {
    constexpr int writers = 2;
    constexpr int readers = 2;
    constexpr int rows = 150;
    constexpr int batch = 3;
    ormcache::DatabaseConfig config{.connection_string = ":memory:"};
    config.busy_timeout = 60s;
    ormcache::Database db{config};
    db.create_all<app::User>();
    Deliveries deliveries{db};
    Failures failures;

    std::vector<std::vector<std::int64_t>> ids(writers);
    std::latch start(writers + readers);
    std::latch writers_done(writers);
    std::vector<std::thread> threads;
    for (int t = 0; t < writers; ++t) {
        threads.emplace_back([&, t] {
            writer_reader(db, t + 1, rows, batch, start, ids[t], failures);
            writers_done.count_down();
        });
    }
    for (int r = 0; r < readers; ++r) {
        threads.emplace_back([&, r] {
            failures.guard("reader " + std::to_string(r), [&] {
                auto s = db.session();
                ormcache::Repository<app::User> users{s};
                start.arrive_and_wait();
                std::int64_t previous = 0;
                // Read until the writers are done, then once more.
                for (bool last = false; !last;) {
                    last = writers_done.try_wait();
                    const auto n = users.count();
                    const auto listed = users.list().size();
                    if (n < previous)
                        failures.add("reader: count() decreased");
                    if (static_cast<std::int64_t>(listed) < n) {
                        failures.add("reader: list() shorter than an earlier count()");
                    }
                    previous = n;
                    if (last && n != writers * rows) {
                        failures.add("reader: final count " + std::to_string(n));
                    }
                }
            });
        });
    }
    for (auto& t : threads)
        t.join();

    const auto seen = failures.list();
    INFO(describe(seen));
    CHECK(seen.empty());
    check_final(db, ids, deliveries, static_cast<std::size_t>(writers) * rows);
}
