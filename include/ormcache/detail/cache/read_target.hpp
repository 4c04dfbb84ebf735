#pragma once
// What a cached read is asked to do: how it may use the cache (decided per call from the
// session's transaction state) and which entry and counter it looks up.

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ormcache::detail {

/// How a read may use the cache, decided per call from the session's state.
enum class FillMode {
    bypass,     ///< uncommitted changes to the model in this session: database only
    read_only,  ///< read hits, never fill (a transaction whose snapshot is not guarded)
    fill,       ///< fill under a lease (and guards), no singleflight
    shared,     ///< autocommit: singleflight, fill under a lease
};

struct ReadContext {
    FillMode mode = FillMode::shared;
    /// Counter values the fill must still see (the snapshot guard of an explicit transaction).
    std::vector<std::pair<std::string, std::int64_t>> guards;
    /// The commits of this process's Database that changed the table so far
    /// (DatabaseState::table_commits): the singleflight tag of a shared read that has no
    /// cache counter (null backend, backend down).
    std::uint64_t table_commits = 0;
};

/// What one read looks up: the entry and the counter it is valid under.
struct ReadTarget {
    std::string key;
    /// The table's entity generation (entities) or list version (query results).
    std::string counter;
    /// Stored with a query entry and compared on read, so that a hash collision is a miss
    /// (empty for entities, whose key is the whole identity).
    std::string_view check;
    /// Entity entries are never filled without the fill lease (see store()).
    bool entity = false;

    /// Whether the value is read from the database (an entity or a query result), so that a
    /// commit can make it old; a region value (get_or_create) is what the caller's function
    /// made, and only its TTL or a delete ends it.
    bool from_database() const noexcept { return entity || !counter.empty(); }
};

}  // namespace ormcache::detail
