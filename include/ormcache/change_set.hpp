#pragma once
// What one committed transaction changed, as delivered to db.on_commit listeners.

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

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
class ChangeSet {
public:
    ChangeSet() = default;
    explicit ChangeSet(std::vector<Change> changes) : changes_(std::move(changes)) {}

    const std::vector<Change>& changes() const noexcept { return changes_; }
    bool empty() const noexcept { return changes_.empty(); }
    std::size_t size() const noexcept { return changes_.size(); }

    /// Distinct table names, in first-seen order.
    std::vector<std::string> tables() const {
        std::vector<std::string> out;
        for (const auto& c : changes_) {
            if (std::find(out.begin(), out.end(), c.table) == out.end()) out.push_back(c.table);
        }
        return out;
    }

    bool touches(std::string_view table) const {
        return std::any_of(changes_.begin(), changes_.end(),
                           [&](const Change& c) { return c.table == table; });
    }

    /// True when some change to `table` names no rows (Operation::whole_table).
    bool whole_table(std::string_view table) const {
        return std::any_of(changes_.begin(), changes_.end(), [&](const Change& c) {
            return c.table == table && c.operation == Operation::whole_table;
        });
    }

    /// Distinct old and new keys of `table`'s changed rows.
    std::vector<PrimaryKey> keys(std::string_view table) const {
        std::vector<PrimaryKey> out;
        auto add = [&](const PrimaryKey& k) {
            if (!std::holds_alternative<std::monostate>(k) &&
                std::find(out.begin(), out.end(), k) == out.end()) {
                out.push_back(k);
            }
        };
        for (const auto& c : changes_) {
            if (c.table != table) continue;
            add(c.old_key);
            add(c.new_key);
        }
        return out;
    }

private:
    std::vector<Change> changes_;
};

}  // namespace ormcache
