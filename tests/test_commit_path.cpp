// The commit path at scale (issue 10, item 5): what a commit of many rows hands to the cache.
// A commit of n rows must cost O(n): these tests use sizes at which the former quadratic
// steps could not finish within the 600 s that ctest gives the binary, while the linear ones
// take well under a second. No timing is asserted: the size is the assertion.

#include <catch2/catch.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <random>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include <ormcache/change_set.hpp>
#include <ormcache/detail/orm/change_journal.hpp>

#include "changes.hpp"

using ormcache::Change;
using ormcache::ChangeSet;
using ormcache::Operation;
using ormcache::PrimaryKey;
using ormcache::detail::ChangeJournal;
using ormcache_test::ins;
using ormcache_test::rem;
using ormcache_test::upd;
using ormcache_test::whole;

namespace {

/// A text key (short enough to need no allocation).
std::string row_key(std::int64_t i) {
    char text[] = "row-0000000";
    for (char* digit = text + sizeof text - 2; i > 0; i /= 10, --digit)
        *digit = static_cast<char>('0' + i % 10);
    return text;
}

/// The first i at which got[i] != want(i), or -1 when all of got matches (sizes checked apart:
/// Catch would print a million elements).
template <class T, class Want>
std::int64_t first_mismatch(const std::vector<T>& got, Want&& want) {
    for (std::size_t i = 0; i < got.size(); ++i) {
        if (!(got[i] == want(i)))
            return static_cast<std::int64_t>(i);
    }
    return -1;
}

}  // namespace

TEST_CASE("ChangeSet: keys() of a million distinct rows, distinct and in first-seen order",
          "[change_set][bulk]") {
    // keys() used to search the keys found so far for each key: 10^12 string comparisons
    // here, about an hour in a release build (measured: 9 s for 50,000 rows), far past the
    // ctest timeout. Indexed once by hashing: about a second, most of it making the keys.
    constexpr std::int64_t rows = 1'000'000;
    std::vector<Change> changes;
    changes.reserve(static_cast<std::size_t>(rows + rows / 1000 + 3));
    for (std::int64_t i = 0; i < rows; ++i) {
        // Every old key is the previous change's new key: half the keys are duplicates.
        changes.push_back(upd("big", row_key(i), row_key(i + 1)));
        // Another table in between, with the same keys again and again; the text "5" and the
        // integer 5 are different keys.
        if (i % 1000 == 0)
            changes.push_back(upd("small", std::string("5"), std::int64_t{5}));
    }
    changes.push_back(rem("small", std::string("last")));
    changes.push_back(whole("big"));             // a whole-table change next to named rows...
    changes.push_back(ins("big", row_key(17)));  // ...and a key seen long ago
    const ChangeSet set(std::move(changes));

    CHECK(set.tables() == std::vector<std::string>{"big", "small"});
    CHECK(set.whole_table("big"));
    CHECK_FALSE(set.whole_table("small"));
    const auto keys = set.keys("big");
    REQUIRE(keys.size() == static_cast<std::size_t>(rows + 1));
    CHECK(first_mismatch(keys, [](std::size_t i) {
              return PrimaryKey{row_key(static_cast<std::int64_t>(i))};
          }) == -1);
    const std::vector<PrimaryKey> small{std::string("5"), std::int64_t{5}, std::string("last")};
    CHECK(set.keys("small") == small);
    CHECK(set.keys("nothing").empty());
}

TEST_CASE("ChangeSet: copies and moves answer like the original", "[change_set]") {
    // Copies share the index built by whichever asks first; a moved-from set is empty.
    const std::vector<PrimaryKey> keys{std::int64_t{1}, std::string("1")};
    ChangeSet set({upd("a", std::int64_t{1}, std::string("1")), whole("b")});
    ChangeSet copy = set;
    CHECK(copy.keys("a") == keys);  // builds the shared index
    CHECK(set.keys("a") == keys);
    CHECK(set.whole_table("b"));
    ChangeSet assigned;
    CHECK(assigned.tables().empty());
    assigned = copy;
    CHECK(assigned.tables() == std::vector<std::string>{"a", "b"});
    const ChangeSet moved = std::move(copy);
    CHECK(moved.keys("a") == keys);
    CHECK(copy.empty());  // a moved-from std::vector is empty
    CHECK(copy.tables().empty());
    CHECK_FALSE(copy.touches("a"));
    CHECK(copy.keys("a").empty());
}

TEST_CASE("ChangeSet: 700,000 tables, each asked what the cache's commit listener asks",
          "[change_set][bulk]") {
    // tables() searched the names found so far, and whole_table() and keys() scanned every
    // change for each table (CacheCore::on_commit asks all three per table): 2.5 * 700,000^2
    // comparisons of names of one length here, about 40 minutes in a release build (measured:
    // 8 s for 40,000 tables), past the ctest timeout. Indexed once: about two seconds, most
    // of it allocating and hashing the names.
    constexpr std::size_t tables = 700'000;
    const auto name = [](std::size_t i) { return "t" + row_key(static_cast<std::int64_t>(i)); };
    std::vector<Change> changes;
    changes.reserve(tables + 2);
    for (std::size_t i = 0; i < tables; ++i)
        changes.push_back(ins(name(i), static_cast<std::int64_t>(i)));
    changes.push_back(whole(name(7)));
    changes.push_back(rem(name(3), std::int64_t{3}));  // no new table, no new key
    const ChangeSet set(std::move(changes));

    const auto names = set.tables();
    REQUIRE(names.size() == tables);
    CHECK(first_mismatch(names, name) == -1);
    // What the commit listener does with each table.
    std::size_t whole_tables = 0, keys = 0, wrong_keys = 0;
    for (std::size_t i = 0; i < names.size(); ++i) {
        whole_tables += set.whole_table(names[i]) ? 1 : 0;
        const auto k = set.keys(names[i]);
        keys += k.size();
        if (k != std::vector<PrimaryKey>{static_cast<std::int64_t>(i)})
            ++wrong_keys;
    }
    CHECK(whole_tables == 1);
    CHECK(set.whole_table(name(7)));
    CHECK(keys == tables);
    CHECK(wrong_keys == 0);
    CHECK(set.touches(name(tables - 1)));
    CHECK_FALSE(set.touches(name(tables)));
}

namespace {

/// The journal as it was before its collapse became lazy: a table collapsing to whole_table
/// erases its row records from the frame at once. What the journal delivers must not change.
class ReferenceJournal {
  public:
    ReferenceJournal() { frames_.emplace_back(); }

    void record(Change c) { add(frames_.back(), std::move(c)); }
    void savepoint(std::string name) {
        frames_.emplace_back();
        frames_.back().name = std::move(name);
    }
    void release(std::string_view name) {
        const auto index = find(name);
        if (index == 0)
            return;
        for (std::size_t i = index; i < frames_.size(); ++i) {
            for (auto& c : frames_[i].changes)
                add(frames_[index - 1], std::move(c));
        }
        frames_.resize(index);
    }
    void rollback_to(std::string_view name) {
        const auto index = find(name);
        if (index == 0)
            return;
        frames_.resize(index + 1);
        frames_[index].changes.clear();
        frames_[index].rows.clear();
    }
    std::vector<Change> take() {
        std::vector<Change> all;
        for (auto& f : frames_) {
            for (auto& c : f.changes)
                all.push_back(std::move(c));
        }
        frames_.clear();
        frames_.emplace_back();
        return all;
    }
    std::size_t depth() const { return frames_.size() - 1; }

  private:
    struct Frame {
        std::string name;
        std::vector<Change> changes;
        std::map<std::string, std::size_t> rows;  // SIZE_MAX: collapsed
    };

    std::size_t find(std::string_view name) const {
        for (std::size_t i = frames_.size() - 1; i > 0; --i) {
            if (frames_[i].name == name)
                return i;
        }
        return 0;
    }

    static void add(Frame& frame, Change change) {
        auto& count = frame.rows[change.table];
        if (count == SIZE_MAX)
            return;
        if (change.operation == Operation::whole_table ||
            count + 1 > ChangeJournal::max_rows_per_table) {
            const std::string table = change.table;
            std::erase_if(frame.changes, [&](const Change& c) { return c.table == table; });
            frame.changes.push_back(whole(table));
            count = SIZE_MAX;
            return;
        }
        ++count;
        frame.changes.push_back(std::move(change));
    }

    std::vector<Frame> frames_;
};

}  // namespace

TEST_CASE("ChangeJournal: tables collapsing in any frame deliver what they did before",
          "[journal][bulk]") {
    // The journal no longer erases a collapsing table's row records from the frame at once
    // (a pass over the frame per collapse): it skips them when the frame is read. Random
    // bursts of writes, savepoints, releases and rollbacks, against the former algorithm.
    constexpr std::size_t limit = ChangeJournal::max_rows_per_table;
    const char* const table_names[] = {"a", "b", "c", "d"};
    const char* const savepoints[] = {"s1", "s2", "s3"};
    std::mt19937 random(20240610);
    auto pick = [&](std::size_t n) {
        return std::uniform_int_distribution<std::size_t>(0, n - 1)(random);
    };
    std::int64_t next_key = 0;
    for (int trial = 0; trial < 12; ++trial) {
        ChangeJournal journal;
        ReferenceJournal reference;
        std::string ops;
        for (int step = 0; step < 40; ++step) {
            const std::size_t op = pick(10);
            if (op < 6) {  // a burst of row writes to one table, sometimes past the limit
                const std::string table = table_names[pick(4)];
                const std::size_t burst = 1 + pick(limit * 3 / 4);
                for (std::size_t i = 0; i < burst; ++i) {
                    const Change c = next_key % 3 == 0 ? ins(table, next_key)
                                                       : upd(table, next_key - 1, next_key);
                    ++next_key;
                    journal.record(c);
                    reference.record(c);
                }
                ops += " w" + table + std::to_string(burst);
            } else if (op == 6) {
                const std::string table = table_names[pick(4)];
                journal.record(whole(table));
                reference.record(whole(table));
                ops += " W" + table;
            } else if (op == 7) {
                const std::string name = savepoints[pick(3)];
                journal.savepoint(name);
                reference.savepoint(name);
                ops += " S" + name;
            } else if (op == 8) {
                const std::string name = savepoints[pick(3)];
                journal.release(name);
                reference.release(name);
                ops += " R" + name;
            } else {
                const std::string name = savepoints[pick(3)];
                journal.rollback_to(name);
                reference.rollback_to(name);
                ops += " B" + name;
            }
            REQUIRE(journal.depth() == reference.depth());
        }
        INFO("trial " << trial << ":" << ops);
        const auto got = journal.take().changes();
        const auto want = reference.take();
        REQUIRE(got.size() == want.size());
        CHECK(first_mismatch(got, [&](std::size_t i) { return want[i]; }) == -1);
        CHECK(journal.empty());
    }
}
