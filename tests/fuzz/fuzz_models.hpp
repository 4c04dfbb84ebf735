#pragma once
// The models of the fuzz targets, self-contained (no test framework): a row with every kind
// of column a cache entry can carry, a text-keyed one, and a value comparison that survives
// NaN and strings that are not UTF-8; the database the cache-path targets read row 1 of, and
// the check text of a cache entry.

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <ormcache/detail/cache/envelope.hpp>
#include <ormcache/detail/cache/payload.hpp>
#include <ormcache/ormcache.hpp>

namespace fuzz {

enum class Color : std::uint8_t { red = 1, green = 2, blue = 255 };

/// A row with every column type a cache entry can carry: integers of each width and sign,
/// floating point, text, blob, an enum, time points, and optionals of them.
struct Row {
    std::int64_t id = 0;
    bool flag = false;
    std::int8_t i8 = 0;
    std::int16_t i16 = 0;
    std::int32_t i32 = 0;
    std::uint16_t u16 = 0;
    std::uint32_t u32 = 0;
    std::uint64_t u64 = 0;
    float f32 = 0;
    double f64 = 0;
    std::string text;
    std::vector<std::uint8_t> blob;
    Color color = Color::red;
    std::chrono::system_clock::time_point at{};
    std::optional<bool> o_flag{};
    std::optional<std::int64_t> o_i64{};
    std::optional<double> o_f64{};
    std::optional<std::string> o_text{};
    std::optional<std::vector<std::uint8_t>> o_blob{};
    std::optional<Color> o_color{};
    std::optional<std::chrono::system_clock::time_point> o_at{};
};
ORMCACHE_MODEL(Row, "fuzz_rows", id, flag, i8, i16, i32, u16, u32, u64, f32, f64, text, blob, color,
               at, o_flag, o_i64, o_f64, o_text, o_blob, o_color, o_at)

/// A text primary key.
struct Tag {
    std::string slug;
    std::string label;
    std::int64_t uses = 0;
};
ORMCACHE_MODEL(Tag, "fuzz_tags", slug, label, uses)

/// The row the cache-path targets store in their database (id 1): every column set.
inline Row sample_row() {
    using namespace std::chrono;
    Row r;
    r.id = 1;
    r.flag = true;
    r.i8 = -8;
    r.i16 = -1600;
    r.i32 = 320000;
    r.u16 = 65535;
    r.u32 = 4000000000U;
    r.u64 = 18000000000000000000ULL;
    r.f32 = 1.5F;
    r.f64 = -2.25e-300;
    r.text = "Ada Lovelace <ada@example.org>";
    r.blob = {0x00, 0x01, 0xfe, 0xff, 'o', 'k'};
    r.color = Color::blue;
    r.at = system_clock::time_point{microseconds{1700000000123456}};
    r.o_flag = false;
    r.o_i64 = -9000000000;
    r.o_text = std::string("caf\xc3\xa9");
    r.o_blob = std::vector<std::uint8_t>{};
    r.o_color = Color::green;
    r.o_at = system_clock::time_point{microseconds{-1}};
    return r;
}

/// A value's identity for comparisons: its payload as msgpack bytes, which (unlike JSON text)
/// exist for strings that are not UTF-8, and (unlike == on doubles) equal themselves for NaN.
template <class R>
std::string identity(const R& value) {
    const auto bytes = nlohmann::json::to_msgpack(ormcache::detail::to_payload(value));
    return std::string(bytes.begin(), bytes.end());
}

/// A database whose table of Row holds sample_row() as row 1 (committed), with a session and a
/// repository on it: what the cache-path targets read through their caches.
struct SampleDatabase {
    void open(const std::string& path, ormcache::CacheConfig cache) {
        db = std::make_unique<ormcache::Database>(
            ormcache::DatabaseConfig{.connection_string = path, .cache_config = std::move(cache)});
        db->create_all<Row>();
        session = std::make_unique<ormcache::Session>(db->session());
        rows = std::make_unique<ormcache::Repository<Row>>(*session);
        rows->add(sample_row());
        session->commit();
    }

    std::unique_ptr<ormcache::Database> db;
    std::unique_ptr<ormcache::Session> session;
    std::unique_ptr<ormcache::Repository<Row>> rows;
};

/// The check text of a cache entry (its envelope's second field).
inline std::string check_of(const std::string& entry) {
    const auto space = entry.find(' ', ormcache::detail::envelope_tag.size());
    const auto newline = entry.find('\n');
    const auto size = std::stoull(entry.substr(space + 1, newline - space - 1));
    return entry.substr(newline + 1, size);
}

/// The three built-in serializers, by index (what the first input byte picks).
inline const std::vector<ormcache::Serializer>& serializers() {
    static const std::vector<ormcache::Serializer> all{ormcache::serializers::json(),
                                                       ormcache::serializers::msgpack(),
                                                       ormcache::serializers::cbor()};
    return all;
}

}  // namespace fuzz
