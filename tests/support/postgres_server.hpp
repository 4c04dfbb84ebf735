#pragma once
// PostgresServer: a private, throwaway PostgreSQL cluster for the tests, on a free 127.0.0.1
// port (the process side, start/stop/kill/restart/pause/resume, is ServerProcess in
// server_process.hpp, as for RedisServer; it is ready when PQping() says PQPING_OK). PgClient:
// a small libpq connection for set-up and assertions. Not thread-safe: one thread drives a
// server; clients are per thread.
//
// Each instance runs initdb into its own directory (`--no-sync -A trust -U postgres`, UTF8,
// locale C) and starts `postgres` there with fsync, synchronous_commit and full_page_writes off
// and its unix socket in the same directory: about a second, all of it thrown away with the
// object. initdb and postgres refuse to run as root: when the tests are root both run as the
// `postgres` user (ServerProcess switches in the child, so the pid stop() signals is the
// postmaster). stop() is a fast shutdown (SIGINT: open sessions are ended). The binaries come
// from `pg_config --bindir` (Debian keeps them off PATH), then /usr/lib/postgresql/<version>/bin,
// then PATH; ORMCACHE_POSTGRES names a `postgres` binary instead (initdb is then looked for next
// to it). A missing binary or a failed initdb is an exception, never a skip.
//
// Unlike RedisServer, restart() keeps the data (the cluster is on disk), and pause() stops the
// postmaster only: new connections hang, sessions already open keep working. After kill() the
// backends notice the postmaster's death on their own, within a moment.

#include <pwd.h>
#include <stdio.h>   // popen (POSIX)
#include <stdlib.h>  // mkdtemp (POSIX)
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <filesystem>
#include <memory>
#include <stdexcept>
#include <string>
#include <system_error>
#include <vector>

#include <libpq-fe.h>

#include "server_process.hpp"
#include "test_support.hpp"

namespace ormcache_test {

/// A blocking libpq connection for set-up and assertions. Throws std::runtime_error on any
/// failure, with the server's message.
class PgClient {
  public:
    explicit PgClient(const std::string& conninfo) : conn_(PQconnectdb(conninfo.c_str())) {
        if (conn_ == nullptr || PQstatus(conn_) != CONNECTION_OK) {
            const std::string why = conn_ != nullptr ? PQerrorMessage(conn_) : "out of memory";
            PQfinish(conn_);
            throw std::runtime_error("PgClient: cannot connect (" + conninfo + "): " + why);
        }
    }
    PgClient(const PgClient&) = delete;
    PgClient& operator=(const PgClient&) = delete;
    ~PgClient() { PQfinish(conn_); }

    using Rows = std::vector<std::vector<std::string>>;

    /// Runs `sql` (one or more statements, no parameters) and returns the last one's rows as
    /// text (NULL as "").
    Rows query(const std::string& sql) {
        std::unique_ptr<PGresult, decltype(&PQclear)> result(PQexec(conn_, sql.c_str()), &PQclear);
        const ExecStatusType status = result ? PQresultStatus(result.get()) : PGRES_FATAL_ERROR;
        if (status != PGRES_COMMAND_OK && status != PGRES_TUPLES_OK) {
            throw std::runtime_error("PgClient: '" + sql + "' failed: " + PQerrorMessage(conn_));
        }
        Rows rows;
        for (int r = 0; r < PQntuples(result.get()); ++r) {
            auto& row = rows.emplace_back();
            for (int c = 0; c < PQnfields(result.get()); ++c)
                row.emplace_back(PQgetvalue(result.get(), r, c));
        }
        return rows;
    }

    /// The one value a one-row, one-column query returns.
    std::string value(const std::string& sql) {
        const Rows rows = query(sql);
        if (rows.size() != 1 || rows.front().size() != 1)
            throw std::runtime_error("PgClient: '" + sql + "' did not return one value");
        return rows.front().front();
    }

    PGconn* get() const noexcept { return conn_; }

  private:
    PGconn* conn_;
};

/// A PostgreSQL cluster and its postmaster on 127.0.0.1 (see the file comment).
class PostgresServer : public ServerProcess {
  public:
    /// port 0: pick a free one.
    explicit PostgresServer(int port = 0) : ServerProcess(program()) {
        make_cluster_dir();
        init_cluster();
        launch(port);
    }

    ~PostgresServer() override {
        try {
            stop();  // before its directory goes
        } catch (...) {
            // Destructors must not throw; stop() already escalated to SIGKILL if it had to.
        }
        if (!own_dir_.empty()) {
            std::error_code ec;
            std::filesystem::remove_all(own_dir_, ec);
        }
    }

    /// One cluster for the whole test binary, started on first use and stopped at exit. Tests
    /// that share it take a database each (create_database()).
    static PostgresServer& shared() {
        static PostgresServer server;
        return server;
    }

    /// The data directory (`-D`).
    std::string data_dir() const { return (cluster_ / "data").string(); }

    /// A libpq connection string for `database` on this server, over TCP.
    std::string conninfo(const std::string& database = "postgres") const {
        return "host=127.0.0.1 port=" + std::to_string(port()) +
               " user=postgres dbname=" + database + " connect_timeout=5";
    }

    /// The same as a URL: postgresql://postgres@127.0.0.1:<port>/<database>.
    std::string url(const std::string& database = "postgres") const {
        return "postgresql://postgres@127.0.0.1:" + std::to_string(port()) + "/" + database;
    }

    /// A new, empty database (from template0), for one test: its name.
    std::string create_database() {
        const std::string name = "t_" + std::to_string(++databases_);
        client()->query("CREATE DATABASE " + name + " TEMPLATE template0");
        return name;
    }

    std::unique_ptr<PgClient> client(const std::string& database = "postgres") const {
        return std::make_unique<PgClient>(conninfo(database));
    }

  private:
    static Program program() {
        return {.binary = "postgres",
                .binary_env = "ORMCACHE_POSTGRES",
                .needed_by = "the PostgreSQL tests",
                .package = "postgresql",
                .ready_probe = "PQping",
                .search_path = binary_dirs(),
                .stop_signal = SIGINT,  // fast shutdown: open sessions are ended
                .run_as = "postgres"};
    }

    /// pg_config's bindir, then Debian's versioned directories, newest first.
    static std::string binary_dirs() {
        std::string dirs;
        if (FILE* pipe = ::popen("pg_config --bindir 2>/dev/null", "r"); pipe != nullptr) {
            char line[4096];
            if (std::fgets(line, sizeof line, pipe) != nullptr) {
                dirs = line;
                dirs.erase(dirs.find_last_not_of("\r\n") + 1);
            }
            ::pclose(pipe);
        }
        std::vector<std::string> versions;
        std::error_code ec;
        for (const auto& entry : std::filesystem::directory_iterator("/usr/lib/postgresql", ec))
            versions.push_back((entry.path() / "bin").string());
        std::sort(versions.begin(), versions.end(), [](const auto& a, const auto& b) {
            return a.size() != b.size() ? a.size() > b.size() : a > b;  // "15" after "9.6"
        });
        for (const auto& dir : versions)
            dirs += ":" + dir;
        return dirs;
    }

    /// Whether every directory from `dir` up to / lets other users through (x for others).
    static bool others_can_reach(std::filesystem::path dir) {
        for (;;) {
            struct stat st {};
            if (::stat(dir.c_str(), &st) != 0 || (st.st_mode & S_IXOTH) == 0)
                return false;
            if (dir == dir.parent_path())
                return true;
            dir = dir.parent_path();
        }
    }

    /// The cluster's directory, owned by the user the server runs as. Under dir() when that
    /// user can reach it and the socket path fits (sun_path: 107 bytes); else in /tmp (a build
    /// directory under /root, 0700, is out of the postgres user's reach).
    void make_cluster_dir() {
        const Credentials as = credentials();
        if (as.change)
            std::filesystem::permissions(dir().path(), std::filesystem::perms::others_exec,
                                         std::filesystem::perm_options::add);
        cluster_ = dir().path() / "pg";
        if (cluster_.string().size() > 90 || (as.change && !others_can_reach(dir().path()))) {
            char pattern[] = "/tmp/ormcache-pg-XXXXXX";
            if (::mkdtemp(pattern) == nullptr)
                throw std::runtime_error("mkdtemp failed");
            own_dir_ = pattern;
            std::filesystem::permissions(own_dir_, std::filesystem::perms::others_exec,
                                         std::filesystem::perm_options::add);
            cluster_ = own_dir_ / "pg";
        }
        std::filesystem::create_directory(cluster_);
        if (as.change && ::chown(cluster_.c_str(), as.uid, as.gid) != 0)
            throw std::runtime_error("cannot give " + cluster_.string() + " to user postgres");
    }

    void init_cluster() {
        const std::string initdb = find_binary("initdb");
        const int status = run_to_exit({initdb, "-D", data_dir(), "--no-sync", "-A", "trust", "-U",
                                        "postgres", "-E", "UTF8", "--locale=C"},
                                       cluster_.string());
        if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
            throw std::runtime_error(initdb + " -D " + data_dir() + " failed (wait status " +
                                     std::to_string(status) + "); its output:\n" + log());
        }
    }

    std::vector<std::string> command_line(const std::string& binary) const override {
        return {binary,
                "-D",
                data_dir(),
                "-p",
                std::to_string(port()),
                "-k",
                cluster_.string(),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "max_connections=200"};
    }

    bool answers() const override { return PQping(conninfo().c_str()) == PQPING_OK; }

    std::filesystem::path own_dir_;  ///< the /tmp directory made when dir() would not do
    std::filesystem::path cluster_;
    int databases_ = 0;
};

}  // namespace ormcache_test
