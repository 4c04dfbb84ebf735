#pragma once
// The backend contract: one suite of Catch2 test cases that every cache backend passes, the cache
// rules of docs/reference.md section 6 seen through repositories, with the SQL counted
// (DatabaseConfig::on_query). A backend runs it by writing a traits type and expanding
//
//   ORMCACHE_BACKEND_CONTRACT(MyTraits, "[mine]");
//
// once in one of its test binaries, at namespace scope (after including this header): that
// registers the test cases "<MyTraits::name>: contract: ...", tagged [contract] and the given
// tags. What a traits type says:
//
//   struct MyTraits {
//       static constexpr std::string_view name = "mine";   // test names start with it
//       // A CacheConfig for a new test: the backend's name and arguments with `extra` merged
//       // into CacheConfig::arguments, and a key prefix of its own (e.g.
//       // ormcache_test::unique_prefix(label)). `scratch` lives as long as the test: a backend
//       // that keeps files puts them there. Two Databases given the same config share entries.
//       static ormcache::CacheConfig config(const ormcache_test::TempDir& scratch,
//                                           std::string_view label, const nlohmann::json& extra);
//       // Whether two Databases (and processes) with equal configs share one cache: false for
//       // an in-process store such as "memory" (the tests across Databases are left out).
//       static constexpr bool shared = true;
//       // Whether another process with an equal config shares it too (a store in shared
//       // memory of one process does not).
//       static constexpr bool shared_across_processes = true;
//       // Whether it takes the arguments distributed_lock and lock_timeout_ms (cache rule 9).
//       static constexpr bool distributed_lock = true;
//       // Whether make_gated() exists: it turns a config of this backend into one whose fills
//       // stop at ormcache_test::fill_gate() when armed (tests/support/gated_backend.hpp),
//       // for the stale-fill races of cache rule 6.
//       static constexpr bool gated = true;
//       static void make_gated(ormcache::CacheConfig& c);
//       // Whether keys() exists: every key the store behind `c` holds (entries, leases and
//       // counters, of any prefix) that starts with `start`. It lets the suite look at what is
//       // stored, through the backend's own read(); a byte backend (stores_objects
//       // false) that has it also runs the corrupt-entry test.
//       static constexpr bool inspectable = true;
//       static std::vector<std::string> keys(const ormcache::CacheConfig& c,
//                                            const std::string& start);
//       // Optional: whether an outage can be caused (cache rule 7). Outage(config) makes the
//       // store behind the config fail until end(); fault_arguments() are the arguments that
//       // make those failures quick; replays: whether invalidations an outage kept from the
//       // store are replayed once it answers.
//       static constexpr bool faults = true;
//       struct Outage { explicit Outage(const ormcache::CacheConfig&); void end(); };
//       static nlohmann::json fault_arguments();
//       static constexpr bool replays = true;
//   };
//
// The test cases a backend lacks the capability for are not registered.

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include <catch2/catch.hpp>
#include <nlohmann/json.hpp>
#include <ormcache/ormcache.hpp>

#include "backend_test_support.hpp"
#include "envelope.hpp"
#include "gated_backend.hpp"
#include "models.hpp"
#include "test_support.hpp"
#include "users_fixture.hpp"

namespace ormcache_contract {

using namespace std::chrono_literals;

/// The five users of seed_users() behind a cache of `Traits`, its config built for `label`.
///   1 Ada, 2 Bob, 3 Cy, 4 Dee, 5 Eve
template <class Traits>
struct Users {
    ormcache_test::TempDir scratch;
    /// Every key the store held before the fixture was built (inspectable backends).
    std::vector<std::string> keys_at_start;
    ormcache_test::UsersFixture<> f;

    explicit Users(std::string_view label, const nlohmann::json& extra = nlohmann::json::object(),
                   bool gated = false)
        : f(make(label, extra, gated)) {}

    ormcache::CacheConfig make(std::string_view label, const nlohmann::json& extra, bool gated) {
        auto c = Traits::config(scratch, label, extra);
        if constexpr (Traits::gated) {
            if (gated)
                Traits::make_gated(c);
        }
        if constexpr (Traits::inspectable)
            keys_at_start = Traits::keys(c, "");
        return c;
    }

    /// The same config as the ungated backend (for a second Database next to a gated one).
    ormcache::CacheConfig plain_config() const {
        auto c = Traits::config(scratch, "unused", nlohmann::json::object());
        c.arguments = f.config.arguments;
        c.key_prefix = f.config.key_prefix;
        return c;
    }

    /// A second Database on the same SQLite file and cache; its SQL goes to `log`.
    std::unique_ptr<ormcache::Database> open(const ormcache::CacheConfig& c,
                                             ormcache_test::SqlLog& log) const {
        return std::make_unique<ormcache::Database>(
            ormcache::DatabaseConfig{.connection_string = f.path(),
                                     .cache_config = c,
                                     .on_query = log.callback(),
                                     .busy_timeout = ormcache_test::kBusyTimeout});
    }
};

/// The store behind `c`, looked at through the backend itself (get, read of counters) and the
/// traits' keys().
template <class Traits>
class Stored {
  public:
    explicit Stored(const ormcache::CacheConfig& c)
        : config_(c), backend_(ormcache::detail::make_backend(make_plain(c))) {}

    /// Keys that start with `start` and end with `end`.
    std::vector<std::string> keys(const std::string& start, const std::string& end = "") const {
        std::vector<std::string> out;
        for (auto& k : Traits::keys(config_, start)) {
            if (k.size() >= end.size() && k.compare(k.size() - end.size(), end.size(), end) == 0)
                out.push_back(std::move(k));
        }
        return out;
    }

    /// The one key that starts with `start` and ends with `end`.
    std::string only(const std::string& start, const std::string& end = "") const {
        const auto found = keys(start, end);
        INFO("keys starting with " << start << " and ending in '" << end << "': " << found.size());
        REQUIRE(found.size() == 1);
        return found.front();
    }

    /// The envelope stored at `key` (nullopt: nothing, a lease, or not an envelope).
    std::optional<std::string> entry(const std::string& key) {
        const auto v = ormcache_test::peek(*backend_, key);
        if (!v || !ormcache_test::parse_envelope(v->bytes))
            return std::nullopt;
        return v->bytes;
    }

    std::int64_t counter(const std::string& key) {
        return backend_->read(ormcache::ReadRequest{"", {key}, std::nullopt, {}}).counters.at(0);
    }

    /// Stores `bytes` at `key` as the backend would store an entry (it wraps them as it does
    /// every value).
    void put(const std::string& key, const std::string& bytes) {
        ormcache_test::put(*backend_, key, ormcache::CacheValue{bytes, nullptr}, 600000ms);
    }

  private:
    static ormcache::CacheConfig make_plain(ormcache::CacheConfig c) {
        c.on_error = nullptr;
        return c;
    }

    ormcache::CacheConfig config_;
    std::unique_ptr<ormcache::AnyBackend> backend_;
};

inline std::vector<std::string> all_names() {
    return {"Ada", "Bob", "Cy", "Dee", "Eve"};
}

// ---- cache rules 1 and 2: hits, misses, absence, queries -------------------------------------

template <class Traits>
void hits_and_misses() {
    using app::User;
    using ormcache::OrderBy;
    using ormcache_test::names_of;
    Users<Traits> u("hits");
    auto& f = u.f;
    const auto& keys_before = u.keys_at_start;
    auto s = f.db->session();
    ormcache::Repository<User> users{s};

    CHECK(users.get(3).name == "Cy");
    CHECK(f.log.count("SELECT") == 1);
    CHECK(users.get(3).name == "Cy");
    CHECK(users.get_or_none(3)->name == "Cy");
    CHECK(f.log.count("SELECT") == 1);

    CHECK_FALSE(users.get_or_none(99).has_value());  // absence is cached too
    CHECK_FALSE(users.get_or_none(99).has_value());
    CHECK(f.log.count("SELECT") == 2);

    CHECK(names_of(users.list(OrderBy{&User::id})) == all_names());
    CHECK(names_of(users.list(OrderBy{&User::id})) == all_names());
    CHECK(f.log.count("SELECT") == 3);
    auto [page, total] =
        users.list_and_count(ormcache::LimitOffset{.limit = 2, .offset = 1}, OrderBy{&User::id});
    CHECK(names_of(page) == std::vector<std::string>{"Bob", "Cy"});
    CHECK(total == 5);
    auto [page2, total2] =
        users.list_and_count(ormcache::LimitOffset{.limit = 2, .offset = 1}, OrderBy{&User::id});
    CHECK(names_of(page2) == std::vector<std::string>{"Bob", "Cy"});
    CHECK(total2 == 5);
    CHECK(users.count() == 5);
    CHECK(users.count() == 5);
    CHECK(users.exists(ormcache::ComparisonFilter{&User::name, "=", std::string("Dee")}));
    CHECK(users.exists(ormcache::ComparisonFilter{&User::name, "=", std::string("Dee")}));
    CHECK(f.log.count("SELECT") == 6);

    // A different query is a different entry; use_cache=false always reads the database.
    users.list(OrderBy{&User::name});
    CHECK(f.log.count("SELECT") == 7);
    users.get(3, {.use_cache = false});
    users.list(OrderBy{&User::id}, ormcache::Options{.use_cache = false});
    CHECK(f.log.count("SELECT") == 9);

    const auto stats = f.stats();
    CHECK(stats.hits == 7);
    CHECK(stats.misses == 7);
    CHECK(stats.errors == 0);
    CHECK(f.errors.count() == 0);

    if constexpr (Traits::inspectable) {
        // Everything written since the test began is under the prefix: entities (users 3 and
        // 99), queries (two lists, list_and_count, count, exists) and the two counters. Every
        // entry is a value, not a lease left behind.
        Stored<Traits> stored(f.config);
        const auto keys_after = Traits::keys(f.config, "");
        std::vector<std::string> added;
        for (const auto& k : keys_after) {
            if (std::find(keys_before.begin(), keys_before.end(), k) == keys_before.end())
                added.push_back(k);
        }
        REQUIRE_FALSE(added.empty());
        for (const auto& k : added) {
            INFO(k);
            CHECK(k.rfind(f.prefix, 0) == 0);
        }
        const auto entities = stored.keys(f.space() + "e:users:");
        const auto queries = stored.keys(f.space() + "q:users:");
        CHECK(entities.size() == 2);
        CHECK(queries.size() == 5);
        for (const auto& k : entities) {
            INFO(k);
            CHECK(stored.entry(k).has_value());
        }
        for (const auto& k : queries) {
            INFO(k);
            CHECK(stored.entry(k).has_value());
        }
        CHECK(stored.keys(f.space() + "v:users").size() == 1);
        CHECK(stored.keys(f.space() + "g:users").size() == 1);
        CHECK(added.size() == stored.keys(f.prefix).size());
        CHECK(added.size() == entities.size() + queries.size() + 2);

        // A commit invalidates: user 3's entity entry is deleted, the list version bumped.
        const auto version = stored.counter(f.space() + "v:users");
        f.rename(3, "Cy v2");
        CHECK(stored.keys(f.space() + "e:users:", ":i3").empty());
        CHECK(stored.counter(f.space() + "v:users") == version + 1);
    } else {
        f.rename(3, "Cy v2");
    }
    // The changed row and the lists and counts are read again, once.
    f.log.clear();
    CHECK(users.get(3).name == "Cy v2");
    CHECK(users.list(OrderBy{&User::id})[2].name == "Cy v2");
    CHECK(users.count() == 5);
    CHECK(f.log.count("SELECT") == 3);
    CHECK(users.get(3).name == "Cy v2");
    CHECK(users.list(OrderBy{&User::id})[2].name == "Cy v2");
    CHECK(f.log.count("SELECT") == 3);
    CHECK(f.errors.count() == 0);
}

// ---- expiration: Options::expiration_time, CacheConfig::expiration_time ----------------------

template <class Traits>
void entries_expire() {
    using app::User;
    using ormcache::Options;
    using namespace std::chrono_literals;
    Users<Traits> u("ttl");
    auto& f = u.f;
    auto s = f.db->session();
    ormcache::Repository<User> users{s};

    // 1 s: the shortest TTL every backend keeps (memcached counts whole seconds).
    const Options short_lived{.expiration_time = 1s};
    CHECK(users.get(3, short_lived).name == "Cy");
    CHECK(users.count(short_lived) == 5);
    CHECK(users.get(4).name == "Dee");  // the config's expiration_time (an hour)
    CHECK(users.get(5, Options{.expiration_time = -1s}).name == "Eve");  // never expires
    CHECK(f.log.count("SELECT") == 4);
    // Within their TTL, all are hits.
    CHECK(users.get(3, short_lived).name == "Cy");
    CHECK(users.count(short_lived) == 5);
    CHECK(f.log.count("SELECT") == 4);

    // Once the TTL has passed, the entry is gone: the next read runs its SELECT again (polled,
    // not timed: a backend may drop an expired entry up to its clock's resolution late).
    const auto expires = [&](auto&& read) {
        const auto selects_before = f.log.count("SELECT");
        return ormcache_test::eventually(
            [&] {
                read();
                return f.log.count("SELECT") > selects_before;
            },
            10s);
    };
    CHECK(expires([&] { users.get(3, short_lived); }));
    CHECK(expires([&] { users.count(short_lived); }));
    // The entries with a longer or no TTL are still served.
    f.log.clear();
    CHECK(users.get(4).name == "Dee");
    CHECK(users.get(5).name == "Eve");
    CHECK(f.log.count("SELECT") == 0);
    CHECK(f.errors.count() == 0);
}

// ---- cache rule 3: invalidation across Databases and processes, rollback ---------------------

template <class Traits>
void second_database_invalidates() {
    using app::User;
    using ormcache::OrderBy;
    Users<Traits> u("two");
    auto& a = u.f;
    ormcache_test::SqlLog b_log;
    auto b = u.open(a.config, b_log);

    auto sa = a.db->session();
    ormcache::Repository<User> ua{sa};
    CHECK(ua.get(1).name == "Ada");
    CHECK(ua.list(OrderBy{&User::id}).front().name == "Ada");
    CHECK(ua.count() == 5);
    a.log.clear();
    CHECK(ua.get(1).name == "Ada");  // all cached now
    CHECK(ua.list(OrderBy{&User::id}).front().name == "Ada");
    CHECK(a.log.size() == 0);

    SECTION("update") {
        {
            auto sb = b->session();
            ormcache::Repository<User> ub{sb};
            CHECK(ub.get(1).name == "Ada");  // b shares a's cache: a hit
            CHECK(b_log.count("SELECT") == 0);
            auto user = ub.get(1);
            user.name = "Ada B.";
            ub.update(user);
            sb.commit();
        }
        CHECK(ua.get(1).name == "Ada B.");
        CHECK(ua.list(OrderBy{&User::id}).front().name == "Ada B.");
        CHECK(ua.count() == 5);
        CHECK(a.log.count("SELECT") == 3);
        CHECK(ua.get(1).name == "Ada B.");  // and cached again
        CHECK(a.log.count("SELECT") == 3);
    }
    SECTION("raw SQL delete of every row") {
        {
            auto sb = b->session();
            sb.execute("DELETE FROM users");
            sb.commit();
        }
        CHECK_FALSE(ua.get_or_none(1).has_value());
        CHECK(ua.list().empty());
        CHECK(ua.count() == 0);
    }
    CHECK(a.errors.count() == 0);
}

/// Runs `child` in a forked process and returns its exit code (0: success). No session may be
/// open across the fork; the child uses nothing it inherited.
template <class Child>
int run_in_child(Child&& child) {
    const pid_t pid = ::fork();
    if (pid == 0) {
        int code = 1;
        try {
            code = child();
        } catch (...) {
            code = 2;
        }
        ::_exit(code);
    }
    if (pid < 0)
        return -1;
    int status = 0;
    if (::waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
        return -2;
    return WEXITSTATUS(status);
}

template <class Traits>
void other_process_invalidates() {
    using app::User;
    using ormcache::OrderBy;
    using ormcache::Repository;
    Users<Traits> u("fork");
    auto& f = u.f;
    {
        auto s = f.db->session();
        Repository<User> users{s};
        CHECK(users.get(2).name == "Bob");
        CHECK(users.list(OrderBy{&User::id})[1].name == "Bob");
        CHECK(users.get(2).name == "Bob");
        CHECK(f.stats().hits == 1);
    }  // no session (and so no SQLite transaction) is open across fork()

    const std::string path = f.path();
    auto child_config = f.config;
    child_config.on_error = nullptr;
    const int code = run_in_child([&] {
        ormcache::Database db{
            ormcache::DatabaseConfig{.connection_string = path,
                                     .cache_config = child_config,
                                     .busy_timeout = ormcache_test::kBusyTimeout}};
        auto s = db.session();
        Repository<User> users{s};
        if (users.get(2).name != "Bob")
            return 3;
        if (db.cache_manager().stats().hits != 1)
            return 4;  // the parent's entry
        auto user = users.get(2, {.use_cache = false});
        user.name = "Bob (child)";
        users.update(user);
        users.add({.name = "Gus", .email = "gus@example.org"});
        s.commit();
        return db.cache_manager().stats().errors == 0 ? 0 : 5;
    });
    REQUIRE(code == 0);

    auto s = f.db->session();
    Repository<User> users{s};
    f.log.clear();
    CHECK(users.get(2).name == "Bob (child)");
    const auto all = users.list(OrderBy{&User::id});
    REQUIRE(all.size() == 6);
    CHECK(all[1].name == "Bob (child)");
    CHECK(all[5].name == "Gus");
    CHECK(f.log.count("SELECT") == 2);
    CHECK(f.errors.count() == 0);
}

template <class Traits>
void rollback_discards() {
    using app::User;
    using ormcache::OrderBy;
    using ormcache::Repository;
    Users<Traits> u("rollback");
    auto& f = u.f;
    auto reader = f.db->session();
    Repository<User> users{reader};
    auto read_all = [&] {
        users.get(1);
        users.get(2);
        users.list(OrderBy{&User::id});
    };
    read_all();
    read_all();
    const auto sets = f.stats().sets;
    f.log.clear();

    SECTION("a rolled back transaction invalidates nothing") {
        {
            auto w = f.db->session();
            Repository<User> writer{w};
            auto ada = writer.get(1, {.use_cache = false});
            ada.name = "Ada (rolled back)";
            writer.update(ada);
            w.rollback();
        }
        f.log.clear();
        read_all();
        CHECK(f.log.size() == 0);
        CHECK(users.get(1).name == "Ada");
    }
    SECTION("a savepoint rolled back is discarded, the rest of its transaction is not") {
        {
            auto w = f.db->session();
            Repository<User> writer{w};
            auto bob = writer.get(2, {.use_cache = false});
            bob.name = "Bob v2";
            writer.update(bob);
            auto sp = w.begin_nested();
            auto ada = writer.get(1, {.use_cache = false});
            ada.name = "Ada (rolled back)";
            writer.update(ada);
            sp.rollback();
            w.commit();
        }
        f.log.clear();
        CHECK(users.get(1).name == "Ada");  // its entry was not touched: a hit
        CHECK(f.log.size() == 0);
        CHECK(users.get(2).name == "Bob v2");  // invalidated by the commit
        CHECK(users.list(OrderBy{&User::id})[1].name == "Bob v2");
        CHECK(f.log.count("SELECT") == 2);
    }
    CHECK(f.stats().sets >= sets);
    CHECK(f.errors.count() == 0);
}

// ---- cache rule 6: fills never outlive the commits that invalidated them ---------------------

template <class Traits>
void fill_races() {
    using app::User;
    using ormcache::OrderBy;
    using ormcache::Repository;
    using ormcache_test::fill_gate;
    using ormcache_test::names_of;
    using ormcache_test::rename_user;
    using ormcache_test::with_fill_held;
    Users<Traits> u("race", nlohmann::json::object(), true);
    auto& a = u.f;                        // the reader, whose fills can be held
    const std::string space = a.space();  // where a's (and b's: one file) keys start
    ormcache_test::SqlLog b_log;
    auto b_db = u.open(u.plain_config(), b_log);  // the writer, on the same files
    ormcache::Database& b = *b_db;

    // User 1's entry: absent, a lease, or holding the committed row.
    auto entity_is_fresh = [&] {
        if constexpr (Traits::inspectable) {
            Stored<Traits> stored(a.config);
            for (const auto& key : stored.keys(space + "e:users:", ":i1")) {
                const auto raw = stored.entry(key);
                if (raw && raw->find("Ada v2") == std::string::npos)
                    return false;
            }
        }
        return true;
    };
    // Whatever the interleaving, a reader afterwards sees the commit (from the database).
    auto everyone_sees_the_commit = [&] {
        auto s = a.db->session();
        Repository<User> users{s};
        a.log.clear();
        CHECK(users.get(1).name == "Ada v2");
        CHECK(users.list(OrderBy{&User::id}).front().name == "Ada v2");
        CHECK(a.log.count("SELECT") == 2);
        CHECK(a.errors.count() == 0);
    };

    SECTION("entity") {
        std::string seen;
        const bool reached = with_fill_held(
            fill_gate().arm(space + "e:users:"),
            [&] {
                auto s = a.db->session();
                Repository<User> users{s};
                seen = users.get(1).name;  // reads "Ada", then its fill is held
            },
            [&] { rename_user(b, 1, "Ada v2"); });
        REQUIRE(reached);
        CHECK(seen == "Ada");
        CHECK(a.stats().sets == 0);  // the held fill was refused (its lease was deleted)
        CHECK(entity_is_fresh());
        everyone_sees_the_commit();
    }
    SECTION("list") {
        std::vector<std::string> seen;
        const bool reached = with_fill_held(
            fill_gate().arm(space + "q:users:"),
            [&] {
                auto s = a.db->session();
                Repository<User> users{s};
                seen = names_of(users.list(OrderBy{&User::id}));
            },
            [&] { rename_user(b, 1, "Ada v2"); });
        REQUIRE(reached);
        REQUIRE_FALSE(seen.empty());
        CHECK(seen.front() == "Ada");
        // The held fill may land, but under the version it read, which the commit bumped.
        everyone_sees_the_commit();
    }
    SECTION("snapshot of an explicit transaction that began before the commit") {
        {
            auto s = a.db->session();
            Repository<User> users{s};
            CHECK(users.get(1).name == "Ada");  // cached before the transaction
            CHECK(users.list(OrderBy{&User::id}).front().name == "Ada");
            const auto sets_before = a.stats().sets;
            s.begin();
            rename_user(b, 1, "Ada v2");
            // The snapshot still says Ada; it must not be written back over the invalidation.
            CHECK(users.get(1).name == "Ada");
            CHECK(users.list(OrderBy{&User::id}).front().name == "Ada");
            s.commit();
            CHECK(a.stats().sets == sets_before);
            CHECK(entity_is_fresh());
            if constexpr (Traits::inspectable) {
                Stored<Traits> stored(a.config);
                CHECK(stored.keys(space + "e:users:", ":i1").empty());
            }
        }
        everyone_sees_the_commit();
    }
}

template <class Traits>
void read_after_commit_never_joins_older_load() {
    // Reader R loads user 1 and is held before its fill. The row is then renamed and committed
    // through the same Database (so the same cache and singleflight). A read that starts after
    // that commit must load the new row itself, not wait for R's old one.
    using app::User;
    using ormcache::Repository;
    Users<Traits> u("flight", nlohmann::json::object(), true);
    auto& f = u.f;

    ormcache_test::Gate gate = ormcache_test::fill_gate().arm(f.space() + "e:users:");
    std::string r_name;
    std::thread r([&] {
        auto s = f.db->session();
        Repository<User> users{s};
        r_name = users.get(1).name;
    });
    const bool reached = gate.wait_arrived();
    std::atomic<bool> m_done{false};
    std::string m_name;
    std::optional<std::thread> m;
    if (reached) {
        f.rename(1, "Ada v2");
        m.emplace([&] {
            auto s = f.db->session();
            Repository<User> users{s};
            m_name = users.get(1).name;
            m_done = true;
        });
    }
    // R stays held until M is done (or 5 s, if M waits for R's flight).
    const bool m_alone = reached && ormcache_test::eventually([&] { return m_done.load(); }, 5s);
    gate.release();
    r.join();
    if (m)
        m->join();
    REQUIRE(reached);
    CHECK(m_alone);
    CHECK(m_name == "Ada v2");
    CHECK(r_name == "Ada");
    CHECK(f.errors.count() == 0);
}

// ---- cache rule 9: distributed_lock ----------------------------------------------------------

template <class Traits>
void distributed_lock_waits() {
    using app::User;
    using ormcache::OrderBy;
    using ormcache::Repository;
    Users<Traits> u("lock", {{"distributed_lock", true}, {"lock_timeout_ms", 5000}});
    auto& waiter = u.f;  // seeds the file; its SQL is counted in waiter.log
    ormcache_test::SlowDatabase holder(waiter.path(), u.plain_config(), 400ms);

    auto run = [&](auto&& read_holder, auto&& read_waiter) {
        const auto o = holder.overlap(
            read_holder,
            [&] {
                waiter.log.clear();
                read_waiter();
            },
            10s);
        // The holder has the lock once its SELECT started (it sleeps inside it).
        REQUIRE(o.held);
        CHECK(o.read_ok);
        CHECK(waiter.log.count("SELECT") == 0);  // one query in total: the holder's
        CHECK(o.waited < 5s);
    };
    SECTION("get") {
        run(
            [&] {
                auto s = holder.db.session();
                return Repository<User>{s}.get(4).name == "Dee";
            },
            [&] {
                auto s = waiter.db->session();
                CHECK(Repository<User>{s}.get(4).name == "Dee");
            });
    }
    SECTION("list") {
        run(
            [&] {
                auto s = holder.db.session();
                return Repository<User>{s}.list(OrderBy{&User::name}).size() == 5;
            },
            [&] {
                auto s = waiter.db->session();
                CHECK(Repository<User>{s}.list(OrderBy{&User::name}).size() == 5);
            });
    }
    CHECK(waiter.errors.count() == 0);
}

template <class Traits>
void distributed_lock_timeout() {
    using app::User;
    using ormcache::Repository;
    Users<Traits> u("lock-timeout", {{"distributed_lock", true}, {"lock_timeout_ms", 300}});
    auto& waiter = u.f;
    ormcache_test::SlowDatabase holder(waiter.path(), u.plain_config(), 2000ms);
    const auto o = holder.overlap(
        [&] {
            auto s = holder.db.session();
            return Repository<User>{s}.get(2).name == "Bob";
        },
        [&] {
            waiter.log.clear();
            auto s = waiter.db->session();
            CHECK(Repository<User>{s}.get(2).name == "Bob");
        },
        10s);
    REQUIRE(o.held);
    CHECK(o.read_ok);
    CHECK(waiter.log.count("SELECT") == 1);  // gave up waiting and read the database
    // Not a speed assertion: the bound of cache rule 9 (the holder sleeps 2 s, the lock is 300 ms).
    CHECK(o.waited < 1500ms);
    CHECK(waiter.errors.count() == 0);
}

// ---- clear() ---------------------------------------------------------------------------------

template <class Traits>
void clear_by_prefix() {
    using app::User;
    using ormcache::Repository;
    Users<Traits> u("clear");
    auto& a = u.f;
    const std::string base = a.prefix;
    // a: <base>app1:, b: <base>app10: (which app1:'s range must not reach either), c: <base>app1
    // (a prefix of both others).
    auto with_prefix = [&](const std::string& p) {
        auto c = a.config;
        c.key_prefix = base + p;
        return c;
    };
    ormcache_test::SqlLog a_log, b_log, c_log;
    auto da = u.open(with_prefix("app1:"), a_log);
    auto db = u.open(with_prefix("app10:"), b_log);
    auto dc = u.open(with_prefix("app1"), c_log);
    auto fill = [](ormcache::Database& d) {
        auto s = d.session();
        Repository<User> users{s};
        users.get(1);
        users.list();
        users.get(1);
        users.list();
    };
    auto selects_of_reading = [](ormcache::Database& d, ormcache_test::SqlLog& log) {
        log.clear();
        auto s = d.session();
        Repository<User> users{s};
        users.get(1);
        users.list();
        return log.count("SELECT");
    };
    for (auto* d : {da.get(), db.get(), dc.get()})
        fill(*d);
    auto region = [](ormcache::Database& d) {
        return d.cache_manager().get_or_create<std::string>("x", [] { return std::string("y"); });
    };
    region(*da);
    // Whether an entry (not a counter, not a lease) is stored under `p`.
    auto entries_under = [&](const std::string& p) {
        std::size_t n = 0;
        if constexpr (Traits::inspectable) {
            Stored<Traits> stored(a.config);
            for (const auto& k : stored.keys(p))
                n += stored.entry(k).has_value() ? 1 : 0;
        }
        return n;
    };
    if constexpr (Traits::inspectable) {
        CHECK(entries_under(base + "app1:") == 3);
        CHECK(entries_under(base + "app10:") == 2);
        CHECK(entries_under(base + "app1") == 7);
    }

    da->cache_manager().clear();
    if constexpr (Traits::inspectable) {
        CHECK(entries_under(base + "app1:") == 0);
        CHECK(entries_under(base + "app10:") == 2);
        CHECK(entries_under(base + "app1") == 4);
    }
    CHECK(selects_of_reading(*db, b_log) == 0);  // still hits
    CHECK(selects_of_reading(*dc, c_log) == 0);
    CHECK(selects_of_reading(*da, a_log) == 2);  // cleared
    CHECK(selects_of_reading(*da, a_log) == 0);  // and the cache works after it

    dc->cache_manager().clear();  // "app1" covers app1:... and app10:... and its own
    if constexpr (Traits::inspectable)
        CHECK(entries_under(base + "app1") == 0);
    CHECK(selects_of_reading(*da, a_log) == 2);
    CHECK(selects_of_reading(*db, b_log) == 2);
    CHECK(selects_of_reading(*dc, c_log) == 2);
    CHECK(a.errors.count() == 0);
}

// ---- cache rule 7: fail open, replay ----------------------------------------------------------

/// Whether `Traits` can make its store fail (Traits::faults; optional, false when left out).
template <class Traits>
inline constexpr bool has_faults = requires {
    requires Traits::faults;
};

template <class Traits>
void fails_open() {
    using app::User;
    using ormcache::OrderBy;
    using ormcache::Repository;
    Users<Traits> u("outage", Traits::fault_arguments());
    auto& f = u.f;
    auto s = f.db->session();
    Repository<User> users{s};
    CHECK(users.get(1).name == "Ada");
    CHECK(users.list(OrderBy{&User::id}).front().name == "Ada");
    CHECK(users.get(1).name == "Ada");
    REQUIRE(f.stats().hits == 1);
    REQUIRE(f.stats().errors == 0);
    {
        typename Traits::Outage outage(f.config);
        f.rename(1, "Ada v2");  // committed; its invalidation cannot be delivered
        CHECK(f.stats().errors >= 1);
        // Every call is served from the database, and never from the old entry.
        const auto before = f.stats();
        f.log.clear();
        CHECK(users.get(1).name == "Ada v2");
        CHECK(users.list(OrderBy{&User::id}).front().name == "Ada v2");
        CHECK(users.get(2).name == "Bob");
        CHECK(f.log.count("SELECT") == 3);
        CHECK(f.stats().hits == before.hits);
        CHECK(f.stats().errors >= before.errors + 3);
        CHECK(f.errors.count() >= 1);
        outage.end();
    }
    if constexpr (Traits::replays) {
        // It answers again: the kept invalidation lands first, then reads fill and hit.
        CHECK(users.get(1).name == "Ada v2");
        CHECK(users.list(OrderBy{&User::id}).front().name == "Ada v2");
        f.log.clear();
        CHECK(users.get(1).name == "Ada v2");
        CHECK(users.list(OrderBy{&User::id}).front().name == "Ada v2");
        CHECK(f.log.size() == 0);
    }
}

// ---- cache rule 7: corrupt entries -----------------------------------------------------------

template <class Traits>
void corrupt_entries() {
    using app::User;
    using ormcache::OrderBy;
    using ormcache::Repository;
    using ormcache_test::parse_envelope;
    Users<Traits> u("corrupt");
    auto& f = u.f;
    Stored<Traits> stored(f.config);
    auto s = f.db->session();
    Repository<User> users{s};
    users.get(5);
    users.list(OrderBy{&User::id});
    const std::string entity = stored.only(f.space() + "e:users:", ":i5");
    const std::string query = stored.only(f.space() + "q:users:");

    // What to put at `key` instead of its good entry. The last two keep a valid envelope
    // (current stamp, right check text), so only the payload is wrong.
    auto corrupt = [&](const std::string& key, const std::string& kind) -> std::string {
        const auto good = parse_envelope(stored.entry(key).value());
        REQUIRE(good.has_value());
        const std::string head = "oc1 " + std::to_string(good->stamp) + " " +
                                 std::to_string(good->check.size()) + "\n" + good->check;
        if (kind == "garbage")
            return "garbage";
        if (kind == "bad stamp")
            return "oc1 x 0\n{}";
        if (kind == "truncated")
            return "oc1 1 99\nshort";
        if (kind == "empty")
            return "";
        if (kind == "binary")
            return std::string("\xff\xfe\x00\x01", 4);
        if (kind == "wrong shape")
            return head + R"({"id": "not a model"})";
        return head + R"({"id": )";
    };

    // One fixture for every kind of corruption (a fixture per kind costs more than the test).
    for (const std::string kind :
         {"garbage", "bad stamp", "truncated", "empty", "binary", "wrong shape", "bad json"}) {
        INFO("corruption: " << kind);
        {
            INFO("served from the database, counted and refilled");
            stored.put(entity, corrupt(entity, kind));
            stored.put(query, corrupt(query, kind));
            const auto before = f.stats();
            f.log.clear();
            CHECK(users.get(5).name == "Eve");
            CHECK(users.list(OrderBy{&User::id}).size() == 5);
            CHECK(f.log.count("SELECT") == 2);
            CHECK(f.stats().errors - before.errors == 2);
            CHECK(f.stats().misses - before.misses == 2);
            CHECK(f.stats().hits == before.hits);
            // The next reads are hits on good entries again.
            f.log.clear();
            CHECK(users.get(5).name == "Eve");
            CHECK(users.list(OrderBy{&User::id}).size() == 5);
            CHECK(f.log.size() == 0);
            CHECK(stored.entry(entity).has_value());
            CHECK(stored.entry(query).has_value());
        }
        {
            INFO("removed even by a reader that may not fill");
            stored.put(entity, corrupt(entity, kind));
            // A transaction begun by raw SQL never fills (nothing is known of its snapshot),
            // so the only change left in the store is the corrupt entry's removal.
            s.execute("BEGIN");
            const auto before = f.stats();
            CHECK(users.get(5).name == "Eve");
            CHECK(f.stats().errors - before.errors == 1);
            s.execute("COMMIT");
            CHECK(stored.keys(entity).empty());
            users.get(5);  // filled again for the next kind
            REQUIRE(stored.entry(entity).has_value());
        }
    }
    CHECK(f.errors.count() == static_cast<int>(f.stats().errors));
}

// ---- registration ----------------------------------------------------------------------------

/// Registers the test cases of the contract that `Traits` has the capabilities for, named
/// "<Traits::name>: contract: ..." and tagged [contract] and `tags`. Returns true (for a static
/// initializer: ORMCACHE_BACKEND_CONTRACT).
template <class Traits>
bool register_suite(std::string_view tags) {
    const auto add = [&](void (*test)(), std::string_view title, std::string_view own_tags) {
        const std::string name = std::string(Traits::name) + ": contract: " + std::string(title);
        const std::string all_tags = "[contract]" + std::string(own_tags) + std::string(tags);
        Catch::AutoReg(Catch::makeTestInvoker(test), CATCH_INTERNAL_LINEINFO, Catch::StringRef(),
                       Catch::NameAndTags{name, all_tags});
    };
    add(&hits_and_misses<Traits>,
        "hits run no SQL, misses one SELECT; absence is cached; a commit invalidates", "[hits]");
    add(&rollback_discards<Traits>, "a rolled back transaction or savepoint invalidates nothing",
        "[invalidation]");
    add(&entries_expire<Traits>,
        "an entry expires after its TTL (Options or CacheConfig::expiration_time); -1 s never",
        "[ttl]");
    if constexpr (Traits::shared) {
        add(&second_database_invalidates<Traits>, "a commit through a second Database invalidates",
            "[invalidation]");
        add(&clear_by_prefix<Traits>, "clear() removes only the entries under key_prefix",
            "[clear]");
    }
    if constexpr (Traits::shared_across_processes) {
        add(&other_process_invalidates<Traits>,
            "a commit in another process invalidates this process's cache",
            "[invalidation][process]");
    }
    if constexpr (Traits::gated) {
        if constexpr (Traits::shared) {
            add(&fill_races<Traits>, "a fill overtaken by a commit in another Database never lands",
                "[race]");
        }
        add(&read_after_commit_never_joins_older_load<Traits>,
            "a read after a commit never joins a load that started before the commit", "[race]");
    }
    if constexpr (Traits::shared && Traits::distributed_lock) {
        add(&distributed_lock_waits<Traits>,
            "distributed_lock: a miss waits for another Database's fill instead of querying",
            "[lock]");
        add(&distributed_lock_timeout<Traits>,
            "distributed_lock: nobody waits longer than lock_timeout_ms for a slow holder",
            "[lock]");
    }
    if constexpr (has_faults<Traits>) {
        add(&fails_open<Traits>,
            Traits::replays ? "an outage is served from the database; the invalidations it missed "
                              "are replayed"
                            : "an outage is served from the database",
            "[failopen]");
    }
    if constexpr (Traits::inspectable) {
        add(&corrupt_entries<Traits>, "corrupt entries are misses, removed and counted",
            "[corrupt]");
    }
    return true;
}

}  // namespace ormcache_contract

/// Registers the contract's test cases for `Traits` (see the top of this file) in this test
/// binary, tagged [contract] and `tags` (e.g. "[file]"). Once per binary and backend, at
/// namespace scope.
#define ORMCACHE_BACKEND_CONTRACT(Traits, tags)                                   \
    static const bool INTERNAL_CATCH_UNIQUE_NAME(ormcache_contract_registered_) = \
        ormcache_contract::register_suite<Traits>(tags)
