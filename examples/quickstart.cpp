// ormcache quick start: map a model, open a database, write, read back.
//
// Build and run on a fresh Debian 12 machine: scripts/quickstart.sh

#include <chrono>
#include <cstdint>
#include <iostream>
#include <optional>
#include <string>

#include <ormcache/ormcache.hpp>

namespace app {

struct User {
    std::int64_t id = 0;  // primary key; 0 = assigned by SQLite on add()
    std::string name;
    std::string email;
    std::optional<std::int32_t> age{};
    std::chrono::system_clock::time_point created_at{};
};
ORMCACHE_MODEL(User, "users", id, name, email, age, created_at)

}  // namespace app

int main() {
    int statements = 0;
    ormcache::Database db{ormcache::DatabaseConfig{
        .connection_string = ":memory:",
        .on_query = [&](std::string_view sql) {
            ++statements;
            std::cout << "  SQL: " << sql << '\n';
        },
    }};
    db.on_commit([](const ormcache::ChangeSet& changes) {
        std::cout << "  committed " << changes.size() << " row change(s)\n";
    });
    db.create_all<app::User>();

    ormcache::Session session = db.session();
    ormcache::Repository<app::User> users{session};

    std::cout << "add two users and commit\n";
    app::User ada = users.add({.name = "Ada", .email = "ada@example.org", .age = 36,
                               .created_at = std::chrono::system_clock::now()});
    users.add({.name = "Alan", .email = "alan@example.org", .age = 41,
               .created_at = std::chrono::system_clock::now()});
    session.commit();

    std::cout << "get by id\n";
    app::User loaded = users.get(ada.id);
    std::cout << "  -> " << ormcache::to_json(loaded).dump() << '\n';

    std::cout << "list, filtered and ordered, with the total\n";
    auto [page, total] = users.list_and_count(
        ormcache::ComparisonFilter{&app::User::age, ">=", 18},
        ormcache::OrderBy{&app::User::name, ormcache::Sort::desc},
        ormcache::LimitOffset{.limit = 10, .offset = 0});
    for (const auto& u : page) std::cout << "  -> " << u.name << '\n';
    std::cout << "  total: " << total << '\n';

    std::cout << "update, then remove inside a savepoint that is rolled back\n";
    loaded.name = "Ada L.";
    users.update(loaded);
    {
        auto savepoint = session.begin_nested();
        users.remove(loaded.id);
        savepoint.rollback();
    }
    session.commit();
    const std::string name = users.get(ada.id).name;
    std::cout << "  -> " << name << " is still there\n";

    std::cout << statements << " SQL statements in all\n";
    return name == "Ada L." ? 0 : 1;
}
