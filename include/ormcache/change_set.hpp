#pragma once
// What one committed transaction changed, as delivered to db.on_commit listeners.

#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <variant>
#include <vector>

#include "detail/util/linkage.hpp"

namespace ormcache {

enum class Operation {
    insert,
    update,
    remove,
    /// Rows that no hook could name (DROP/ALTER TABLE, or more changed rows than the journal
    /// keeps per table): treat every row of the table as changed.
    whole_table,
};

/// A primary key as recorded by the journal: an integer, a string, or nothing.
/// For tables whose key is not a rowid alias and that no model registered on this Database,
/// the journal records the rowid (an integer): a consumer whose key is text must then treat
/// the change as whole-table.
using PrimaryKey = std::variant<std::monostate, std::int64_t, std::string>;

struct Change {
    std::string table;
    Operation operation = Operation::update;
    PrimaryKey old_key{};  ///< update/remove: the key before (empty for insert, whole_table)
    PrimaryKey new_key{};  ///< insert/update: the key after (empty for remove, whole_table)

    bool operator==(const Change&) const = default;
};

/// An immutable list of changes, in the order they happened.
///
/// Thread-safe for reading, like any immutable value: the per-table index behind tables(),
/// touches(), whole_table() and keys() is built once, on the first of those calls (under a
/// std::once_flag), and then only read. Copies share it (their changes are the same).
class ChangeSet {
  public:
    ChangeSet() = default;
    explicit ChangeSet(std::vector<Change> changes)
        : changes_(std::move(changes)),
          // Allocated here, not at first use, so that building the index needs no lock; not
          // for an empty set, which never needs one.
          lazy_(changes_.empty() ? nullptr : std::make_shared<Lazy>()) {}

    const std::vector<Change>& changes() const noexcept { return changes_; }
    bool empty() const noexcept { return changes_.empty(); }
    std::size_t size() const noexcept { return changes_.size(); }

    /// Distinct table names, in first-seen order.
    std::vector<std::string> tables() const;

    bool touches(std::string_view table) const { return index().find(table) != nullptr; }

    /// True when some change to `table` names no rows (Operation::whole_table).
    bool whole_table(std::string_view table) const;

    /// Distinct old and new keys of `table`'s changed rows, in first-seen order (a change's
    /// old key before its new key).
    std::vector<PrimaryKey> keys(std::string_view table) const;

  private:
    /// Where a distinct key was first seen: changes_[change], its new or its old key.
    /// Positions, not pointers, so that copies can share the index.
    struct KeyRef {
        std::size_t change;
        bool is_new;
    };

    struct TableIndex {
        std::size_t first_change;  // where the table was first seen (its name)
        bool whole = false;
        std::vector<KeyRef> keys;  // distinct, first-seen order
    };

    struct NameHash {
        using is_transparent = void;
        std::size_t operator()(std::string_view s) const noexcept {
            return std::hash<std::string_view>{}(s);
        }
    };

    struct Index {
        std::vector<TableIndex> tables;  // first-seen order
        std::unordered_map<std::string, std::size_t, NameHash, std::equal_to<>> by_name;

        const TableIndex* find(std::string_view table) const {
            const auto it = by_name.find(table);
            return it == by_name.end() ? nullptr : &tables[it->second];
        }
    };

    struct Lazy {
        std::once_flag once;
        Index index;
    };

    // The one pass over the changes that every query reads from: a hash lookup per table name
    // and per key, so that a commit of n rows costs O(n), not the O(n^2) of searching the keys
    // seen so far (issue 10, item 5).
    static Index build(const std::vector<Change>& changes);

    const Index& index() const;

    std::vector<Change> changes_;
    std::shared_ptr<Lazy> lazy_;  // null when changes_ is empty
};

#if ORMCACHE_DEFINITIONS

ORMCACHE_INLINE std::vector<std::string> ChangeSet::tables() const {
    const Index& all = index();
    std::vector<std::string> out;
    out.reserve(all.tables.size());
    for (const auto& t : all.tables)
        out.push_back(changes_[t.first_change].table);
    return out;
}

ORMCACHE_INLINE bool ChangeSet::whole_table(std::string_view table) const {
    const TableIndex* t = index().find(table);
    return t != nullptr && t->whole;
}

ORMCACHE_INLINE std::vector<PrimaryKey> ChangeSet::keys(std::string_view table) const {
    std::vector<PrimaryKey> out;
    const TableIndex* t = index().find(table);
    if (t == nullptr)
        return out;
    out.reserve(t->keys.size());
    for (const auto& ref : t->keys) {
        const Change& c = changes_[ref.change];
        out.push_back(ref.is_new ? c.new_key : c.old_key);
    }
    return out;
}

ORMCACHE_INLINE ChangeSet::Index ChangeSet::build(const std::vector<Change>& changes) {
    // One set for every table's keys: a key is distinct within its table (slot).
    struct Seen {
        std::size_t slot;
        const PrimaryKey* key;
    };
    struct SeenHash {
        std::size_t operator()(const Seen& s) const noexcept {
            return std::hash<PrimaryKey>{}(*s.key) ^ (s.slot * 0x9e3779b97f4a7c15ULL);
        }
    };
    struct SeenEqual {
        bool operator()(const Seen& a, const Seen& b) const noexcept {
            return a.slot == b.slot && *a.key == *b.key;
        }
    };
    Index out;
    std::unordered_set<Seen, SeenHash, SeenEqual> seen;
    seen.reserve(changes.size());
    std::size_t slot = 0;
    for (std::size_t i = 0; i < changes.size(); ++i) {
        const Change& c = changes[i];
        // Changes come in runs of one table: only a new name costs a lookup.
        if (out.tables.empty() || changes[out.tables[slot].first_change].table != c.table) {
            const auto [it, inserted] = out.by_name.try_emplace(c.table, out.tables.size());
            slot = it->second;
            if (inserted)
                out.tables.push_back(TableIndex{i, false, {}});
        }
        TableIndex& t = out.tables[slot];
        if (c.operation == Operation::whole_table)
            t.whole = true;
        for (const bool is_new : {false, true}) {
            const PrimaryKey& k = is_new ? c.new_key : c.old_key;
            if (!std::holds_alternative<std::monostate>(k) && seen.insert(Seen{slot, &k}).second)
                t.keys.push_back(KeyRef{i, is_new});
        }
    }
    return out;
}

ORMCACHE_INLINE const ChangeSet::Index& ChangeSet::index() const {
    static const Index none;
    if (!lazy_)
        return none;  // empty, or moved from
    std::call_once(lazy_->once, [this] { lazy_->index = build(changes_); });
    return lazy_->index;
}

#endif  // ORMCACHE_DEFINITIONS

}  // namespace ormcache
