// The PostgreSQL test harness itself (tests/support/postgres_server.hpp), over raw libpq: a
// throwaway cluster starts and answers, stop() ends the postmaster and every process it forked,
// two servers are independent, and a test gets a database of its own. The engine's tests build
// on this. Without the PostgreSQL server binaries every test fails.

#include <signal.h>
#include <sys/types.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include <libpq-fe.h>
#include <catch2/catch.hpp>

#include "postgres_server.hpp"

namespace {

using ormcache_test::PgClient;
using ormcache_test::PostgresServer;

/// The processes whose parent is `parent` (from /proc/<pid>/stat: the field after the state).
std::vector<pid_t> children_of(pid_t parent) {
    std::vector<pid_t> out;
    for (const auto& entry : std::filesystem::directory_iterator("/proc")) {
        const std::string name = entry.path().filename().string();
        if (name.find_first_not_of("0123456789") != std::string::npos)
            continue;
        std::ifstream in(entry.path() / "stat");
        const std::string stat((std::istreambuf_iterator<char>(in)),
                               std::istreambuf_iterator<char>());
        const auto paren = stat.rfind(')');
        if (paren == std::string::npos || paren + 4 >= stat.size())
            continue;
        if (std::stol(stat.substr(paren + 4)) == parent)
            out.push_back(static_cast<pid_t>(std::stol(name)));
    }
    return out;
}

bool process_exists(pid_t pid) {
    return ::kill(pid, 0) == 0 || errno != ESRCH;
}

}  // namespace

TEST_CASE("a throwaway cluster starts and answers SQL over libpq", "[postgresql][harness]") {
    const auto started = std::chrono::steady_clock::now();
    PostgresServer server;
    const auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - started);
    WARN("PostgreSQL cluster (initdb + start until PQping answers): " << elapsed.count() << " ms");

    REQUIRE(server.running());
    CHECK(server.port() > 0);
    CHECK(PQping(server.conninfo().c_str()) == PQPING_OK);

    PgClient client(server.conninfo());
    CHECK(client.value("SELECT 1") == "1");
    // The settings the harness starts it with.
    CHECK(client.value("SHOW fsync") == "off");
    CHECK(client.value("SHOW synchronous_commit") == "off");
    CHECK(client.value("SHOW full_page_writes") == "off");
    CHECK(client.value("SHOW listen_addresses") == "127.0.0.1");
    CHECK(client.value("SHOW server_encoding") == "UTF8");
    CHECK(client.value("SELECT current_user") == "postgres");
    CHECK(client.value("SHOW data_directory") == server.data_dir());
    // The pid the harness holds is the postmaster's, not a runuser or shell in between.
    CHECK(client.value("SELECT pg_postmaster_start_time() IS NOT NULL") == "t");
    std::ifstream pid_file(server.data_dir() + "/postmaster.pid");
    pid_t postmaster = 0;
    pid_file >> postmaster;
    CHECK(postmaster == server.pid());
    // And a backend's parent is that postmaster.
    CHECK(std::stol(client.value("SELECT pg_backend_pid()")) > 0);
    const auto children = children_of(server.pid());
    CHECK(std::find(children.begin(), children.end(),
                    static_cast<pid_t>(std::stol(client.value("SELECT pg_backend_pid()")))) !=
          children.end());
}

TEST_CASE("stop() ends the postmaster and every process it started", "[postgresql][harness]") {
    PostgresServer server;
    const pid_t postmaster = server.pid();
    const std::string pid_file = server.data_dir() + "/postmaster.pid";
    std::vector<pid_t> children;
    {
        // An open session: a fast shutdown must not wait for it to end.
        PgClient client(server.conninfo());
        CHECK(client.value("SELECT 1") == "1");
        children = children_of(postmaster);
        REQUIRE(children.size() >= 2);  // at least the checkpointer and this session's backend
        REQUIRE(std::filesystem::exists(pid_file));

        const auto started = std::chrono::steady_clock::now();
        server.stop();
        CHECK(std::chrono::steady_clock::now() - started < std::chrono::seconds{5});
    }

    CHECK_FALSE(server.running());
    CHECK_FALSE(process_exists(postmaster));
    for (const pid_t child : children) {
        INFO("postmaster child " << child);
        CHECK_FALSE(process_exists(child));
    }
    CHECK_FALSE(std::filesystem::exists(pid_file));  // a clean shutdown removes it
    CHECK(PQping(server.conninfo().c_str()) == PQPING_NO_RESPONSE);

    // restart(): the same cluster on the same port, data kept.
    server.restart();
    CHECK(server.running());
    CHECK(server.pid() != postmaster);
    CHECK(PgClient(server.conninfo()).value("SELECT 2") == "2");
}

TEST_CASE("two servers get different ports and are independent", "[postgresql][harness]") {
    // The shared cluster is one of the two (one initdb less); the test's own one is stopped.
    PostgresServer& first = PostgresServer::shared();
    PostgresServer second;
    REQUIRE(first.port() != second.port());
    CHECK(first.pid() != second.pid());
    CHECK(first.data_dir() != second.data_dir());

    const std::string db = first.create_database();
    PgClient(first.conninfo(db)).query("CREATE TABLE only_here (id integer)");
    CHECK(PgClient(first.conninfo(db))
              .value("SELECT count(*) FROM pg_tables WHERE tablename = 'only_here'") == "1");
    CHECK(PgClient(second.conninfo())
              .value("SELECT count(*) FROM pg_database WHERE datname = '" + db + "'") == "0");

    second.stop();
    CHECK(PQping(second.conninfo().c_str()) == PQPING_NO_RESPONSE);
    CHECK(PQping(first.conninfo().c_str()) == PQPING_OK);
    CHECK(PgClient(first.conninfo(db)).value("SELECT 1") == "1");
}

TEST_CASE("a test gets a database of its own on the shared cluster", "[postgresql][harness]") {
    PostgresServer& server = PostgresServer::shared();
    const std::string db = server.create_database();
    const std::string other = server.create_database();
    REQUIRE(db != other);

    PgClient client(server.conninfo(db));
    CHECK(client.value("SELECT current_database()") == db);
    client.query("CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL)");
    client.query("INSERT INTO users VALUES (1, 'ada'), (2, 'grace')");
    const PgClient::Rows rows = client.query("SELECT id, name FROM users ORDER BY id");
    CHECK(rows == PgClient::Rows{{"1", "ada"}, {"2", "grace"}});

    // The URL form names the same database.
    PgClient by_url(server.url(db));
    CHECK(by_url.value("SELECT count(*) FROM users") == "2");

    // The other database does not see the table.
    CHECK(server.client(other)->value("SELECT count(*) FROM pg_tables WHERE tablename = 'users'") ==
          "0");
    // A server error is an exception that carries the server's message.
    CHECK_THROWS_WITH(client.query("SELECT * FROM missing_table"),
                      Catch::Contains("missing_table"));
}
