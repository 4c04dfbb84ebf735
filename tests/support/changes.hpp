#pragma once
// Building Change records by hand: the journal and commit-path tests feed these to the journal
// and to ChangeSet and compare what comes out.

#include <string>
#include <utility>

#include <ormcache/change_set.hpp>

namespace ormcache_test {

inline ormcache::Change ins(std::string table, ormcache::PrimaryKey key) {
    return ormcache::Change{std::move(table), ormcache::Operation::insert, {}, std::move(key)};
}
inline ormcache::Change upd(std::string table, ormcache::PrimaryKey old_key,
                            ormcache::PrimaryKey new_key) {
    return ormcache::Change{std::move(table), ormcache::Operation::update, std::move(old_key),
                            std::move(new_key)};
}
inline ormcache::Change rem(std::string table, ormcache::PrimaryKey key) {
    return ormcache::Change{std::move(table), ormcache::Operation::remove, std::move(key), {}};
}
inline ormcache::Change whole(std::string table) {
    return ormcache::Change{std::move(table), ormcache::Operation::whole_table, {}, {}};
}

}  // namespace ormcache_test
