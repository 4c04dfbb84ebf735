// Fuzzes the rows of the file backend's cache file (include/ormcache/backends/file.hpp,
// include/ormcache/detail/file/file_connection.hpp): before each read, the fuzzer writes the
// cache file's row of the entry Repository<Row>::get_or_none(1) reads (ormcache_entries: value,
// expires_at, lease) and the counter it is stamped under (ormcache_counters), each column of
// any SQLite type (NULL, integer, real, text, blob) and any content: whole envelopes, valid
// envelopes around the fuzzer's payload or the right one under another stamp, numbers where
// bytes are expected and text where an integer is, and so on, as another process or a damaged
// file could leave them. Then it reads through the backend and the cache core.
//
// Input: consumed with FuzzedDataProvider (any bytes are an input).
//
// Properties:
//  - Repository::get_or_none never throws: a row it cannot use is a miss the database answers;
//  - what it returns is the database's row, or (a hit) exactly what the stored value decodes
//    to under the stored counter, as this target reads both with SQLite's own conversions;
//  - a stored value that is corrupt (not an envelope, or a payload that does not decode),
//    with no lease and not expired, is counted as an error;
//  - a second read right after returns a correct answer too.

#include <sqlite3.h>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <exception>
#include <limits>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <fuzzer/FuzzedDataProvider.h>

#include <ormcache/backends/file.hpp>
#include <ormcache/detail/cache/envelope.hpp>
#include <ormcache/detail/cache/payload.hpp>
#include <ormcache/ormcache.hpp>

#include "fuzz_models.hpp"
#include "fuzz_support.hpp"

namespace {

using fuzz::Row;
using ormcache::detail::from_payload;
using ormcache::detail::to_payload;

struct Env : fuzz::SampleDatabase {
    sqlite3* file = nullptr;  // this target's own connection to the cache file
    std::string key;          // row 1's entry
    std::string counter;      // the generation counter its entry is stamped under
    std::string check;        // its entry's check text
    std::string row;          // identity of the database's row 1
    std::string payload;      // the serializer's payload of row 1
};
// Never destroyed: the databases and connections live until the process ends, and the leak
// check at exit must not see them freed halfway (a global's destructor runs before it).
std::vector<Env>& envs = *new std::vector<Env>;

void exec(sqlite3* db, const char* sql) {
    char* error = nullptr;
    if (sqlite3_exec(db, sql, nullptr, nullptr, &error) != SQLITE_OK)
        fuzz::fail(std::string("sqlite: ") + (error != nullptr ? error : "?") + " in " + sql);
}

/// A prepared statement, finalized when it goes.
struct Statement {
    Statement(sqlite3* db, const char* sql) {
        if (sqlite3_prepare_v2(db, sql, -1, &s, nullptr) != SQLITE_OK)
            fuzz::fail(std::string("sqlite: ") + sqlite3_errmsg(db));
    }
    ~Statement() { sqlite3_finalize(s); }
    Statement(const Statement&) = delete;
    Statement& operator=(const Statement&) = delete;
    sqlite3_stmt* s = nullptr;
};

std::int64_t now_ms() {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
}

void set_up() {
    const std::string dir = fuzz::scratch_directory("fuzz-file-rows");
    for (std::size_t i = 0; i < fuzz::serializers().size(); ++i) {
        Env env;
        const std::string cache_file = dir + "/cache-" + std::to_string(i) + ".sqlite";
        env.open(dir + "/db-" + std::to_string(i) + ".sqlite",
                 ormcache::CacheConfig{.backend = "file",
                                       .arguments = {{"filename", cache_file},
                                                     {"retry_interval_ms", 0},
                                                     {"busy_timeout_ms", 10000},
                                                     {"pool_size", 1}},
                                       .serializer = fuzz::serializers()[i]});
        env.row = fuzz::identity(env.rows->get_or_none(1));  // a miss, filled

        if (sqlite3_open(cache_file.c_str(), &env.file) != SQLITE_OK)
            fuzz::fail("cannot open " + cache_file);
        sqlite3_busy_timeout(env.file, 10000);
        exec(env.file, "PRAGMA synchronous = OFF");
        {
            Statement s(env.file, "SELECT key, value FROM ormcache_entries");
            FUZZ_CHECK(sqlite3_step(s.s) == SQLITE_ROW);
            env.key = reinterpret_cast<const char*>(sqlite3_column_text(s.s, 0));
            const auto* value = static_cast<const char*>(sqlite3_column_blob(s.s, 1));
            const std::string entry(value, static_cast<std::size_t>(sqlite3_column_bytes(s.s, 1)));
            env.check = fuzz::check_of(entry);
            FUZZ_CHECK(sqlite3_step(s.s) == SQLITE_DONE);
            const auto payload = ormcache::detail::open_envelope(
                entry, std::stoll(entry.substr(ormcache::detail::envelope_tag.size())), env.check);
            FUZZ_CHECK(payload);
            env.payload = std::string(*payload);
        }
        {
            Statement s(env.file,
                        "SELECT name FROM ormcache_counters WHERE name LIKE '%g:fuzz_rows'");
            FUZZ_CHECK(sqlite3_step(s.s) == SQLITE_ROW);
            env.counter = reinterpret_cast<const char*>(sqlite3_column_text(s.s, 0));
            FUZZ_CHECK(sqlite3_step(s.s) == SQLITE_DONE);
        }
        envs.push_back(std::move(env));
    }
}

/// Binds a value of a type the fuzzer picks; `number` and `bytes` are its content.
void bind_any(sqlite3_stmt* s, int index, std::uint8_t type, std::int64_t number,
              const std::string& bytes, bool null_allowed) {
    switch (type % 5) {
        case 0:
            if (null_allowed) {
                sqlite3_bind_null(s, index);
                break;
            }
            [[fallthrough]];
        case 1:
            sqlite3_bind_int64(s, index, number);
            break;
        case 2:
            sqlite3_bind_double(s, index, static_cast<double>(number) / 7.0);
            break;
        case 3:
            sqlite3_bind_text(s, index, bytes.data(), static_cast<int>(bytes.size()),
                              SQLITE_TRANSIENT);
            break;
        default:
            sqlite3_bind_blob(s, index, bytes.data(), static_cast<int>(bytes.size()),
                              SQLITE_TRANSIENT);
            break;
    }
}

/// The stored entry and counter as the backend reads them (sqlite3_column_blob/int64).
struct Stored {
    bool exists = false;
    std::optional<std::string> value;
    bool expired = false;
    bool leased = false;
    std::int64_t counter = 0;
};

Stored read_back(Env& env) {
    Stored out;
    {
        Statement s(env.file,
                    "SELECT value, expires_at, lease FROM ormcache_entries WHERE key = ?1");
        sqlite3_bind_text(s.s, 1, env.key.data(), static_cast<int>(env.key.size()), SQLITE_STATIC);
        if (sqlite3_step(s.s) == SQLITE_ROW) {
            out.exists = true;
            if (sqlite3_column_type(s.s, 0) != SQLITE_NULL) {
                const void* data = sqlite3_column_blob(s.s, 0);
                const int size = sqlite3_column_bytes(s.s, 0);
                out.value = data == nullptr ? std::string()
                                            : std::string(static_cast<const char*>(data),
                                                          static_cast<std::size_t>(size));
            }
            out.expired = sqlite3_column_type(s.s, 1) != SQLITE_NULL &&
                          sqlite3_column_int64(s.s, 1) <= now_ms();
            out.leased = sqlite3_column_type(s.s, 2) != SQLITE_NULL;
        }
    }
    Statement s(env.file, "SELECT value FROM ormcache_counters WHERE name = ?1");
    sqlite3_bind_text(s.s, 1, env.counter.data(), static_cast<int>(env.counter.size()),
                      SQLITE_STATIC);
    if (sqlite3_step(s.s) == SQLITE_ROW)
        out.counter = sqlite3_column_int64(s.s, 0);
    return out;
}

/// What `value` decodes to under `counter`: nullopt when stale, throws when corrupt.
std::optional<std::string> decoded(std::size_t which, const std::string& value,
                                   std::int64_t counter) {
    const auto payload = ormcache::detail::open_envelope(value, counter, envs[which].check);
    if (!payload)
        return std::nullopt;
    return fuzz::identity(
        from_payload<std::optional<Row>>(fuzz::serializers()[which].decode(*payload)));
}

/// One read; checks what it returned against what was stored before it.
void read_and_check(std::size_t which) {
    Env& env = envs[which];
    const Stored stored = read_back(env);
    bool corrupt = false;
    if (stored.value) {
        try {
            (void)decoded(which, *stored.value, stored.counter);
        } catch (const std::exception&) {
            corrupt = true;
        }
    }
    const auto before = env.db->cache_manager().stats();
    const auto got = env.rows->get_or_none(1);  // never throws
    const auto after = env.db->cache_manager().stats();
    const std::string identity = fuzz::identity(got);
    if (after.hits > before.hits) {
        FUZZ_CHECK(stored.value);
        const auto value = decoded(which, *stored.value, stored.counter);
        FUZZ_CHECK(value && *value == identity);
    } else {
        FUZZ_CHECK(identity == env.row);
    }
    if (corrupt && stored.exists && !stored.expired && !stored.leased)
        FUZZ_CHECK(after.errors > before.errors);
}

void write_rows(std::size_t which, FuzzedDataProvider& in) {
    Env& env = envs[which];
    exec(env.file, "BEGIN IMMEDIATE");
    exec(env.file, "DELETE FROM ormcache_entries");
    exec(env.file, "DELETE FROM ormcache_counters");

    const std::int64_t now = now_ms();
    const auto stamp = in.ConsumeIntegral<std::int64_t>();
    if (in.ConsumeBool()) {  // the counter
        Statement s(env.file, "INSERT INTO ormcache_counters (name, value) VALUES (?1, ?2)");
        sqlite3_bind_text(s.s, 1, env.counter.data(), static_cast<int>(env.counter.size()),
                          SQLITE_STATIC);
        const auto type = in.ConsumeIntegral<std::uint8_t>();
        const std::string text =
            in.ConsumeBool() ? std::to_string(stamp) : in.ConsumeRandomLengthString(32);
        bind_any(s.s, 2, type, stamp, text, false);
        FUZZ_CHECK(sqlite3_step(s.s) == SQLITE_DONE);
    }
    if (in.ConsumeBool()) {  // the entry
        Statement s(env.file,
                    "INSERT INTO ormcache_entries (key, value, expires_at, lease) "
                    "VALUES (?1, ?2, ?3, ?4)");
        sqlite3_bind_text(s.s, 1, env.key.data(), static_cast<int>(env.key.size()), SQLITE_STATIC);
        const auto value_type = in.ConsumeIntegral<std::uint8_t>();
        const auto expiry_type = in.ConsumeIntegral<std::uint8_t>();
        const auto expiry = in.PickValueInArray<std::int64_t>(
            {now + 3600000, now - 3600000, 0, -1, std::numeric_limits<std::int64_t>::max()});
        const auto lease_type = in.ConsumeIntegral<std::uint8_t>();
        const std::string lease = in.ConsumeRandomLengthString(40);
        std::string value;
        switch (in.ConsumeIntegralInRange<int>(0, 3)) {
            case 0:  // the right payload, under the fuzzer's stamp
                value = ormcache::detail::seal_envelope(stamp, env.check, env.payload);
                break;
            case 1:  // the fuzzer's payload in a valid envelope
                value = ormcache::detail::seal_envelope(stamp, env.check,
                                                        in.ConsumeRandomLengthString(4096));
                break;
            case 2:  // the right entry, cut
                value = ormcache::detail::seal_envelope(stamp, env.check, env.payload);
                value.resize(in.ConsumeIntegralInRange<std::size_t>(0, value.size()));
                break;
            default:
                value = in.ConsumeRemainingBytesAsString();
                break;
        }
        bind_any(s.s, 2, value_type, stamp, value, true);
        bind_any(s.s, 3, expiry_type, expiry, std::to_string(expiry), true);
        bind_any(s.s, 4, lease_type, stamp, lease, true);
        FUZZ_CHECK(sqlite3_step(s.s) == SQLITE_DONE);
    }
    exec(env.file, "COMMIT");
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    set_up();
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    FuzzedDataProvider in(data, size);
    const std::size_t which = in.ConsumeIntegralInRange<std::size_t>(0, envs.size() - 1);
    write_rows(which, in);
    read_and_check(which);
    read_and_check(which);  // whatever the first read left (a fill, a lease, nothing)
    return 0;
}
