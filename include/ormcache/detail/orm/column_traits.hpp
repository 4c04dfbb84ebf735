#pragma once
// Everything ormcache knows about one column type: its SQL type, how it is bound and read on
// the raw sqlite3 API (the hot path of every query), its JSON form and its code in the mapping
// digest. Supported: bool, integers, float, double, std::string, std::vector<std::uint8_t>
// (BLOB), enums (as their underlying integer), std::chrono::system_clock::time_point (integer
// microseconds since the epoch, UTC) and std::optional of any of these (NULL).

#include <algorithm>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <limits>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "../../errors.hpp"
#include "../sqlite/sqlite_api.hpp"
#include "../util/base64.hpp"

namespace ormcache::detail {

template <class T>
inline constexpr bool always_false = false;

template <class T>
struct is_optional : std::false_type {};
template <class T>
struct is_optional<std::optional<T>> : std::true_type {};
template <class T>
inline constexpr bool is_optional_v = is_optional<T>::value;

template <class T>
struct unwrap_optional {
    using type = T;
};
template <class T>
struct unwrap_optional<std::optional<T>> {
    using type = T;
};
template <class T>
using unwrap_optional_t = typename unwrap_optional<T>::type;

using Blob = std::vector<std::uint8_t>;
using TimePoint = std::chrono::system_clock::time_point;

/// A non-optional column value type.
template <class T>
concept ScalarColumn =
    std::same_as<T, bool> ||(std::integral<T> && !std::same_as<T, bool>) ||
    std::same_as<T, float> || std::same_as<T, double> || std::same_as<T, std::string> ||
    std::same_as<T, Blob> || std::is_enum_v<T> || std::same_as<T, TimePoint>;

template <class T>
concept ColumnType = ScalarColumn<T> ||(is_optional_v<T>&& ScalarColumn<unwrap_optional_t<T>>);

template <class T>
concept IntegerLike = (std::integral<T> && !std::same_as<T, bool>) || std::is_enum_v<T>;

enum class SqlType { integer, real, text, blob };

template <ScalarColumn T>
constexpr SqlType sql_type_of() {
    if constexpr (std::same_as<T, float> || std::same_as<T, double>) {
        return SqlType::real;
    } else if constexpr (std::same_as<T, std::string>) {
        return SqlType::text;
    } else if constexpr (std::same_as<T, Blob>) {
        return SqlType::blob;
    } else {
        return SqlType::integer;
    }
}

constexpr std::string_view sql_type_name(SqlType t) {
    switch (t) {
        case SqlType::integer:
            return "INTEGER";
        case SqlType::real:
            return "REAL";
        case SqlType::text:
            return "TEXT";
        case SqlType::blob:
            return "BLOB";
    }
    return "BLOB";
}

/// The type's code in the mapping digest: a changed C++ type changes every cache key.
template <ScalarColumn T>
constexpr std::string_view scalar_type_code() {
    if constexpr (std::same_as<T, bool>)
        return "bool";
    else if constexpr (std::is_enum_v<T>) {
        using U = std::underlying_type_t<T>;
        if constexpr (std::is_signed_v<U>) {
            if constexpr (sizeof(U) == 1)
                return "enum:i8";
            else if constexpr (sizeof(U) == 2)
                return "enum:i16";
            else if constexpr (sizeof(U) == 4)
                return "enum:i32";
            else
                return "enum:i64";
        } else {
            if constexpr (sizeof(U) == 1)
                return "enum:u8";
            else if constexpr (sizeof(U) == 2)
                return "enum:u16";
            else if constexpr (sizeof(U) == 4)
                return "enum:u32";
            else
                return "enum:u64";
        }
    } else if constexpr (std::integral<T>) {
        if constexpr (std::is_signed_v<T>) {
            if constexpr (sizeof(T) == 1)
                return "i8";
            else if constexpr (sizeof(T) == 2)
                return "i16";
            else if constexpr (sizeof(T) == 4)
                return "i32";
            else
                return "i64";
        } else {
            if constexpr (sizeof(T) == 1)
                return "u8";
            else if constexpr (sizeof(T) == 2)
                return "u16";
            else if constexpr (sizeof(T) == 4)
                return "u32";
            else
                return "u64";
        }
    } else if constexpr (std::same_as<T, float>)
        return "f32";
    else if constexpr (std::same_as<T, double>)
        return "f64";
    else if constexpr (std::same_as<T, std::string>)
        return "text";
    else if constexpr (std::same_as<T, Blob>)
        return "blob";
    else
        return "time_us";
}

/// The microseconds a TimePoint can hold: its duration (nanoseconds with libstdc++) spans less
/// than int64 microseconds, and floor(time_point::min()) is already outside it.
inline constexpr std::int64_t min_micros =
    std::chrono::ceil<std::chrono::microseconds>(TimePoint::duration::min()).count();
inline constexpr std::int64_t max_micros =
    std::chrono::floor<std::chrono::microseconds>(TimePoint::duration::max()).count();

/// Floored to the microsecond, except that the earliest time points round up to min_micros
/// (flooring them would not convert back: the conversion overflowed into the far future).
inline std::int64_t to_micros(TimePoint tp) {
    return std::max(std::chrono::floor<std::chrono::microseconds>(tp.time_since_epoch()).count(),
                    min_micros);
}
/// Saturates a stored value outside the clock's range instead of overflowing.
inline TimePoint from_micros(std::int64_t us) {
    us = std::clamp(us, min_micros, max_micros);
    return TimePoint{
        std::chrono::duration_cast<TimePoint::duration>(std::chrono::microseconds{us})};
}

/// The integer SQLite stores for an integer-like value. Unsigned 64-bit values above INT64_MAX
/// keep their bits (they read back exactly; SQL ordering sees them as negative).
template <class T>
std::int64_t to_int64(T v) {
    if constexpr (std::is_enum_v<T>) {
        return static_cast<std::int64_t>(static_cast<std::underlying_type_t<T>>(v));
    } else {
        return static_cast<std::int64_t>(v);
    }
}

// ---- binding (raw API: no exceptions, the caller checks the result code) ----

template <ColumnType T>
int bind_value(sqlite3_stmt* stmt, int index, const T& value) {
    if constexpr (is_optional_v<T>) {
        if (!value)
            return sqlite3_bind_null(stmt, index);
        return bind_value(stmt, index, *value);
    } else if constexpr (std::same_as<T, bool>) {
        return sqlite3_bind_int64(stmt, index, value ? 1 : 0);
    } else if constexpr (IntegerLike<T>) {
        return sqlite3_bind_int64(stmt, index, to_int64(value));
    } else if constexpr (std::same_as<T, float> || std::same_as<T, double>) {
        return sqlite3_bind_double(stmt, index, static_cast<double>(value));
    } else if constexpr (std::same_as<T, std::string>) {
        return sqlite3_bind_text64(stmt, index, value.data(), value.size(), SQLITE_TRANSIENT,
                                   SQLITE_UTF8);
    } else if constexpr (std::same_as<T, Blob>) {
        // A zero-length blob must stay a blob, not NULL: pass a non-null pointer.
        static const std::uint8_t empty = 0;
        return sqlite3_bind_blob64(stmt, index, value.empty() ? &empty : value.data(), value.size(),
                                   SQLITE_TRANSIENT);
    } else {
        return sqlite3_bind_int64(stmt, index, to_micros(value));
    }
}

// ---- reading ----

template <ColumnType T>
T read_value(sqlite3_stmt* stmt, int col) {
    if constexpr (is_optional_v<T>) {
        if (sqlite3_column_type(stmt, col) == SQLITE_NULL)
            return std::nullopt;
        return read_value<unwrap_optional_t<T>>(stmt, col);
    } else if constexpr (std::same_as<T, bool>) {
        return sqlite3_column_int64(stmt, col) != 0;
    } else if constexpr (std::is_enum_v<T>) {
        return static_cast<T>(
            static_cast<std::underlying_type_t<T>>(sqlite3_column_int64(stmt, col)));
    } else if constexpr (std::integral<T>) {
        return static_cast<T>(sqlite3_column_int64(stmt, col));
    } else if constexpr (std::same_as<T, float> || std::same_as<T, double>) {
        return static_cast<T>(sqlite3_column_double(stmt, col));
    } else if constexpr (std::same_as<T, std::string>) {
        // column_blob + column_bytes: binary-safe (embedded NULs) and no UTF conversion.
        const auto* data = static_cast<const char*>(sqlite3_column_blob(stmt, col));
        const int size = sqlite3_column_bytes(stmt, col);
        return data != nullptr ? std::string(data, static_cast<std::size_t>(size)) : std::string{};
    } else if constexpr (std::same_as<T, Blob>) {
        const auto* data = static_cast<const std::uint8_t*>(sqlite3_column_blob(stmt, col));
        const int size = sqlite3_column_bytes(stmt, col);
        return data != nullptr ? Blob(data, data + size) : Blob{};
    } else {
        return from_micros(sqlite3_column_int64(stmt, col));
    }
}

// ---- JSON form ----

template <ColumnType T>
nlohmann::json value_to_json(const T& value) {
    if constexpr (is_optional_v<T>) {
        if (!value)
            return nullptr;
        return value_to_json(*value);
    } else if constexpr (std::same_as<T, bool>) {
        return value;
    } else if constexpr (std::is_enum_v<T>) {
        return static_cast<std::underlying_type_t<T>>(value);
    } else if constexpr (std::integral<T>) {
        return value;
    } else if constexpr (std::same_as<T, float> || std::same_as<T, double>) {
        // JSON has no NaN or infinities; spell them so they round-trip instead of becoming null.
        if (std::isnan(value))
            return "NaN";
        if (std::isinf(value))
            return value > 0 ? "Infinity" : "-Infinity";
        return static_cast<double>(value);
    } else if constexpr (std::same_as<T, std::string>) {
        return value;
    } else if constexpr (std::same_as<T, Blob>) {
        return base64_encode(value);
    } else {
        return to_micros(value);
    }
}

[[noreturn]] inline void json_type_error(std::string_view field, std::string_view expected,
                                         const nlohmann::json& got) {
    std::string message = "field '";
    message.append(field).append("' expects ").append(expected).append(", got JSON ");
    message.append(got.type_name());
    throw SerializationError(message);
}

template <class I>
I json_integer(const nlohmann::json& j, std::string_view field) {
    if (j.is_number_unsigned()) {
        const auto v = j.get<std::uint64_t>();
        if (std::in_range<I>(v))
            return static_cast<I>(v);
    } else if (j.is_number_integer()) {
        const auto v = j.get<std::int64_t>();
        if (std::in_range<I>(v))
            return static_cast<I>(v);
    } else {
        json_type_error(field, "an integer", j);
    }
    throw SerializationError("field '" + std::string(field) + "': integer out of range");
}

template <ColumnType T>
T value_from_json(const nlohmann::json& j, std::string_view field) {
    if constexpr (is_optional_v<T>) {
        if (j.is_null())
            return std::nullopt;
        return value_from_json<unwrap_optional_t<T>>(j, field);
    } else if constexpr (std::same_as<T, bool>) {
        if (!j.is_boolean())
            json_type_error(field, "a boolean", j);
        return j.get<bool>();
    } else if constexpr (std::is_enum_v<T>) {
        return static_cast<T>(json_integer<std::underlying_type_t<T>>(j, field));
    } else if constexpr (std::integral<T>) {
        return json_integer<T>(j, field);
    } else if constexpr (std::same_as<T, float> || std::same_as<T, double>) {
        if (j.is_number())
            return static_cast<T>(j.get<double>());
        if (j.is_string()) {
            const auto& s = j.get_ref<const std::string&>();
            if (s == "NaN")
                return std::numeric_limits<T>::quiet_NaN();
            if (s == "Infinity")
                return std::numeric_limits<T>::infinity();
            if (s == "-Infinity")
                return -std::numeric_limits<T>::infinity();
        }
        json_type_error(field, "a number", j);
    } else if constexpr (std::same_as<T, std::string>) {
        if (!j.is_string())
            json_type_error(field, "a string", j);
        return j.get<std::string>();
    } else if constexpr (std::same_as<T, Blob>) {
        if (j.is_binary())
            return Blob(j.get_binary().begin(), j.get_binary().end());
        if (!j.is_string())
            json_type_error(field, "base64 text", j);
        auto bytes = base64_decode(j.get_ref<const std::string&>());
        if (!bytes)
            throw SerializationError("field '" + std::string(field) + "': invalid base64");
        return std::move(*bytes);
    } else {
        const auto us = json_integer<std::int64_t>(j, field);
        if (us < min_micros || us > max_micros) {
            throw SerializationError("field '" + std::string(field) +
                                     "': time point out of the clock's range");
        }
        return from_micros(us);
    }
}

}  // namespace ormcache::detail
