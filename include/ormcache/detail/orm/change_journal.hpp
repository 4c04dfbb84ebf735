#pragma once
// The per-session change journal: a stack of frames, one per open savepoint (the base frame is
// the transaction itself). Releasing a savepoint merges its frame into the parent, rolling back
// to it empties it, and only a successful outermost commit hands the whole journal on.
// Not thread-safe: it belongs to one session, touched only from SQLite hooks on that
// session's connection and from the session's own calls.

#include <algorithm>
#include <cstddef>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "../../change_set.hpp"
#include "../util/linkage.hpp"
#include "../util/string_hash.hpp"
#include "sql_text.hpp"

namespace ormcache::detail {

class ChangeJournal {
  public:
    /// Past this many row records for one table in one frame, the table's records collapse
    /// into a single whole_table record: bounded memory for bulk writes, and a bulk write
    /// would invalidate most of the model anyway.
    static constexpr std::size_t max_rows_per_table = 10000;

    ChangeJournal() { frames_.emplace_back(); }

    void record(Change change) { add(frames_.back(), std::move(change)); }

    void savepoint(std::string name);

    /// RELEASE name: merges the frames from the most recent `name` upwards into its parent.
    /// Unknown names are ignored (SQLite rejects the statement itself).
    void release(std::string_view name);

    /// ROLLBACK TO name: discards what was recorded since SAVEPOINT name; `name` stays open.
    void rollback_to(std::string_view name);

    /// The transaction ended without committing: forget everything.
    void clear() {
        frames_.clear();
        frames_.emplace_back();
    }

    /// Removes and returns everything recorded (the transaction committed).
    ChangeSet take();

    /// What take() would return, leaving the journal as it is (the outbox row a commit writes
    /// before COMMIT).
    ChangeSet peek() const;

    bool empty() const {
        return std::all_of(frames_.begin(), frames_.end(),
                           [](const Frame& f) { return f.changes.empty(); });
    }

    /// Has anything been recorded for `table` in the open transaction?
    bool touches(std::string_view table) const;

    std::size_t depth() const { return frames_.size() - 1; }

  private:
    struct Frame {
        std::string name;  // empty for the base frame
        std::vector<Change> changes;
        // table -> number of row records in this frame (SIZE_MAX once collapsed to whole_table)
        std::unordered_map<std::string, std::size_t, StringHash, std::equal_to<>> rows_per_table;
        // Row records in `changes` of tables collapsed since: skipped when the frame is read.
        std::size_t superseded = 0;
    };

    static constexpr std::size_t collapsed = static_cast<std::size_t>(-1);

    // Index of the most recent frame named `name`, or 0 when none (frame 0 has no name).
    std::size_t find(std::string_view name) const;

    /// Whether `c`, a record of `frame`, still counts: not a row record of a table that has
    /// collapsed to whole_table since.
    static bool live(const Frame& frame, const Change& c);

    static void add(Frame& frame, Change change);

    std::vector<Frame> frames_;
};

#if ORMCACHE_DEFINITIONS

ORMCACHE_INLINE void ChangeJournal::savepoint(std::string name) {
    frames_.emplace_back();
    frames_.back().name = std::move(name);
}

ORMCACHE_INLINE void ChangeJournal::release(std::string_view name) {
    const auto index = find(name);
    if (index == 0)
        return;
    Frame& parent = frames_[index - 1];
    for (std::size_t i = index; i < frames_.size(); ++i) {
        Frame& child = frames_[i];
        for (auto& c : child.changes) {
            if (live(child, c))
                add(parent, std::move(c));
        }
    }
    frames_.resize(index);
}

ORMCACHE_INLINE void ChangeJournal::rollback_to(std::string_view name) {
    const auto index = find(name);
    if (index == 0)
        return;
    frames_.resize(index + 1);
    Frame& frame = frames_[index];
    frame.changes.clear();
    frame.rows_per_table.clear();
    frame.superseded = 0;
}

ORMCACHE_INLINE ChangeSet ChangeJournal::take() {
    std::vector<Change> all;
    std::size_t total = 0;
    for (const auto& f : frames_)
        total += f.changes.size() - f.superseded;
    all.reserve(total);
    for (auto& f : frames_) {
        for (auto& c : f.changes) {
            if (live(f, c))
                all.push_back(std::move(c));
        }
    }
    clear();
    return ChangeSet(std::move(all));
}

ORMCACHE_INLINE ChangeSet ChangeJournal::peek() const {
    std::vector<Change> all;
    for (const auto& f : frames_) {
        for (const auto& c : f.changes) {
            if (live(f, c))
                all.push_back(c);
        }
    }
    return ChangeSet(std::move(all));
}

ORMCACHE_INLINE bool ChangeJournal::touches(std::string_view table) const {
    // On every cached read: no allocation (heterogeneous lookup).
    return std::any_of(frames_.begin(), frames_.end(), [&](const Frame& f) {
        return f.rows_per_table.find(table) != f.rows_per_table.end();
    });
}

ORMCACHE_INLINE std::size_t ChangeJournal::find(std::string_view name) const {
    for (std::size_t i = frames_.size() - 1; i > 0; --i) {
        if (iequals(frames_[i].name, name))
            return i;
    }
    return 0;
}

ORMCACHE_INLINE bool ChangeJournal::live(const Frame& frame, const Change& c) {
    if (frame.superseded == 0 || c.operation == Operation::whole_table)
        return true;
    const auto it = frame.rows_per_table.find(c.table);
    return it == frame.rows_per_table.end() || it->second != collapsed;
}

ORMCACHE_INLINE void ChangeJournal::add(Frame& frame, Change change) {
    auto [it, inserted] = frame.rows_per_table.try_emplace(change.table, 0);
    std::size_t& count = it->second;
    if (count == collapsed)
        return;  // the whole table is already recorded
    if (change.operation == Operation::whole_table || count + 1 > max_rows_per_table) {
        // The table's row records stay where they are, superseded, until the frame is read
        // (take, release): erasing them now would cost a pass over the whole frame for
        // each table that collapses. They are at most max_rows_per_table per table.
        frame.superseded += count;
        frame.changes.push_back(Change{std::move(change.table), Operation::whole_table, {}, {}});
        count = collapsed;
        return;
    }
    ++count;
    frame.changes.push_back(std::move(change));
}

#endif  // ORMCACHE_DEFINITIONS

}  // namespace ormcache::detail
