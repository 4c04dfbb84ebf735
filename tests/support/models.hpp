#pragma once
// Models shared by the tests.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <ormcache/ormcache.hpp>

namespace app {

struct User {
    std::int64_t id = 0;
    std::string name;
    std::string email;
    std::optional<std::int32_t> age{};
    std::chrono::system_clock::time_point created_at{};
};
ORMCACHE_MODEL(User, "users", id, name, email, age, created_at)

/// A string primary key.
struct Tag {
    std::string slug;
    std::string label;
    std::int64_t uses = 0;
};
ORMCACHE_MODEL(Tag, "tags", slug, label, uses)

enum class Color : std::uint8_t { red = 1, green = 2, blue = 255 };
enum Level : std::int64_t { low = -5, high = 9000000000 };

/// Every supported column type.
struct AllTypes {
    std::int64_t id = 0;
    bool flag = false;
    std::int8_t i8 = 0;
    std::int16_t i16 = 0;
    std::int32_t i32 = 0;
    std::int64_t i64 = 0;
    std::uint8_t u8 = 0;
    std::uint16_t u16 = 0;
    std::uint32_t u32 = 0;
    std::uint64_t u64 = 0;
    float f32 = 0;
    double f64 = 0;
    std::string text;
    std::vector<std::uint8_t> blob;
    Color color = Color::red;
    Level level = low;
    std::chrono::system_clock::time_point at{};
    std::optional<bool> o_flag{};
    std::optional<std::int64_t> o_i64{};
    std::optional<std::uint64_t> o_u64{};
    std::optional<double> o_f64{};
    std::optional<std::string> o_text{};
    std::optional<std::vector<std::uint8_t>> o_blob{};
    std::optional<Color> o_color{};
    std::optional<std::chrono::system_clock::time_point> o_at{};
};
ORMCACHE_MODEL(AllTypes, "all_types", id, flag, i8, i16, i32, i64, u8, u16, u32, u64, f32, f64,
               text, blob, color, level, at, o_flag, o_i64, o_u64, o_f64, o_text, o_blob, o_color,
               o_at)

/// Parent/child pair for foreign-key cascades (the child table is created by hand in the tests
/// that need ON DELETE CASCADE).
struct Author {
    std::int64_t id = 0;
    std::string name;
};
ORMCACHE_MODEL(Author, "authors", id, name)

struct Book {
    std::int64_t id = 0;
    std::int64_t author_id = 0;
    std::string title;
};
ORMCACHE_MODEL(Book, "books", id, author_id, title)

}  // namespace app
