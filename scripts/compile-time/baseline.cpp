// Compile-time baseline (scripts/compile-time.sh): the two libraries ormcache builds on,
// included and used trivially. ormcache's goal is a one-model TU within 2x of this one.

#include <SQLiteCpp/SQLiteCpp.h>

#include <nlohmann/json.hpp>
#include <string>

int baseline_use() {
    SQLite::Database db{":memory:", SQLite::OPEN_READWRITE | SQLite::OPEN_CREATE};
    db.exec("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)");
    SQLite::Statement insert{db, "INSERT INTO t (name) VALUES (?)"};
    insert.bind(1, std::string{"Ada"});
    insert.exec();

    nlohmann::json row{{"id", db.getLastInsertRowid()}, {"name", "Ada"}};
    const std::string text = row.dump();
    return static_cast<int>(nlohmann::json::parse(text).at("id").get<long long>());
}
