#pragma once
// A ChangeSet as JSON, the form the outbox stores it in (docs/caching.md, "Across processes:
// durable invalidation"): an array of [table, operation, old key, new key], keys as null, an
// integer or a string. The same text for every database engine.

#include <cstdint>
#include <string>
#include <variant>
#include <vector>

#include <nlohmann/json.hpp>

#include "../../change_set.hpp"
#include "../../errors.hpp"

namespace ormcache::detail {

inline nlohmann::json key_to_json(const PrimaryKey& key) {
    if (const auto* i = std::get_if<std::int64_t>(&key))
        return *i;
    if (const auto* s = std::get_if<std::string>(&key))
        return *s;
    return nullptr;
}

inline PrimaryKey key_from_json(const nlohmann::json& j) {
    if (j.is_null())
        return {};
    if (j.is_number_integer())
        return j.get<std::int64_t>();
    if (j.is_string())
        return j.get<std::string>();
    throw SerializationError("change set: a key must be null, an integer or a string");
}

inline std::string change_set_to_json(const ChangeSet& changes) {
    nlohmann::json out = nlohmann::json::array();
    for (const auto& c : changes.changes()) {
        out.push_back(nlohmann::json::array({c.table, static_cast<int>(c.operation),
                                             key_to_json(c.old_key), key_to_json(c.new_key)}));
    }
    return out.dump();
}

/// Throws SerializationError on anything change_set_to_json() does not write.
inline ChangeSet change_set_from_json(const std::string& text) {
    try {
        const auto in = nlohmann::json::parse(text);
        if (!in.is_array())
            throw SerializationError("change set: not a JSON array");
        std::vector<Change> changes;
        changes.reserve(in.size());
        for (const auto& item : in) {
            if (!item.is_array() || item.size() != 4 || !item[0].is_string() ||
                !item[1].is_number_integer())
                throw SerializationError("change set: a change must be [table, op, old, new]");
            const int op = item[1].get<int>();
            if (op < static_cast<int>(Operation::insert) ||
                op > static_cast<int>(Operation::whole_table))
                throw SerializationError("change set: unknown operation " + std::to_string(op));
            changes.push_back(Change{item[0].get<std::string>(), static_cast<Operation>(op),
                                     key_from_json(item[2]), key_from_json(item[3])});
        }
        return ChangeSet(std::move(changes));
    } catch (const nlohmann::json::exception& e) {
        throw SerializationError(std::string("change set: ") + e.what());
    }
}

}  // namespace ormcache::detail
