#pragma once
// ORMCACHE_MODEL: the single source of truth for a model's table, columns, JSON form and cache
// keys. The macro defines one constexpr function, found by argument-dependent lookup on
// std::type_identity<Type>, so it claims no name the user might want (in particular not the
// user's own ADL to_json/from_json).

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>
#include <utility>

#include "detail/orm/column_traits.hpp"
#include "detail/orm/preprocessor.hpp"

namespace ormcache {
namespace detail {

/// One mapped column: its name and the member it reads.
template <class T, class M>
struct FieldDef {
    using model_type = T;
    using value_type = M;
    std::string_view name;
    M T::*member;
};

/// The whole mapping of T. Built once, at compile time, by the macro.
template <class T, class... Fields>
struct ModelDef {
    std::string_view table;
    std::tuple<Fields...> fields;
};

template <class T, class C, class M>
constexpr auto make_field(std::string_view name, M C::*member) {
    static_assert(std::is_base_of_v<C, T> || std::is_same_v<C, T>);
    static_assert(!std::is_function_v<M>,
                  "ORMCACHE_MODEL: a listed name is a member function, not a data member");
    static_assert(ColumnType<std::remove_cv_t<M>>,
                  "ORMCACHE_MODEL: unsupported column type. Supported: bool, integers, float, "
                  "double, std::string, std::vector<std::uint8_t>, enums, "
                  "std::chrono::system_clock::time_point, and std::optional of these");
    return FieldDef<T, M>{name, static_cast<M T::*>(member)};
}

template <class T>
constexpr std::nullptr_t make_field(std::string_view, std::nullptr_t) {
    return nullptr;  // only reached after the "not a data member" static_assert fired
}

template <class T, class... Fields>
constexpr auto make_model(std::string_view table, Fields... fields) {
    static_assert(sizeof...(Fields) >= 1, "ORMCACHE_MODEL: list at least the primary key");
    return ModelDef<T, Fields...>{table, std::tuple<Fields...>{fields...}};
}

// Never viable: gives unqualified lookup something to find so that ADL does the work.
void ormcache_model_definition();

}  // namespace detail

/// A type mapped with ORMCACHE_MODEL.
template <class T>
concept Model = requires {
    ormcache_model_definition(std::type_identity<T>{});
};

namespace detail {

template <Model T>
inline constexpr auto model_def = ormcache_model_definition(std::type_identity<T>{});

template <Model T>
using model_fields_t = std::remove_cvref_t<decltype(model_def<T>.fields)>;

template <Model T>
inline constexpr std::size_t column_count = std::tuple_size_v<model_fields_t<T>>;

template <Model T, std::size_t I>
using field_type_t = typename std::tuple_element_t<I, model_fields_t<T>>::value_type;

template <Model T>
using primary_key_t = field_type_t<T, 0>;

/// Calls fn(field, index_constant) for each mapped column, in mapping order.
template <Model T, class Fn>
constexpr void for_each_field(Fn&& fn) {
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        (fn(std::get<I>(model_def<T>.fields), std::integral_constant<std::size_t, I>{}), ...);
    }
    (std::make_index_sequence<column_count<T>>{});
}

constexpr std::uint64_t fnv1a(std::uint64_t h, std::string_view s) {
    for (char c : s) {
        h ^= static_cast<unsigned char>(c);
        h *= 0x100000001b3ULL;
    }
    return h;
}

template <Model T>
constexpr bool validate_model() {
    const auto& def = model_def<T>;
    if (def.table.empty())
        return false;
    bool ok = true;
    [&]<std::size_t... I>(std::index_sequence<I...>) {
        const std::array<std::string_view, sizeof...(I)> names{std::get<I>(def.fields).name...};
        for (std::size_t a = 0; a < names.size(); ++a)
            for (std::size_t b = a + 1; b < names.size(); ++b)
                if (names[a] == names[b])
                    ok = false;
    }
    (std::make_index_sequence<column_count<T>>{});
    return ok;
}

/// Compile-time facts about a model, with the checks that need the whole mapping.
template <Model T>
struct ModelInfo {
    using pk_type = primary_key_t<T>;
    static_assert(
        (std::integral<pk_type> && !std::same_as<pk_type, bool>) ||
            std::same_as<pk_type, std::string>,
        "ORMCACHE_MODEL: the primary key (first field) must be an integer or std::string");
    static_assert(validate_model<T>(),
                  "ORMCACHE_MODEL: the table name is empty or a field is listed twice");

    static constexpr bool integer_pk = std::integral<pk_type>;
    static constexpr std::string_view table = model_def<T>.table;
    static constexpr std::size_t columns = column_count<T>;

    /// Digest of table, column names and C++ types. It is part of every cache key, so a changed
    /// struct never decodes entries written by the old one.
    static constexpr std::uint64_t digest = [] {
        std::uint64_t h = fnv1a(0xcbf29ce484222325ULL, model_def<T>.table);
        for_each_field<T>([&](const auto& f, auto) {
            using M = std::remove_cv_t<typename std::remove_cvref_t<decltype(f)>::value_type>;
            h = fnv1a(h, "|");
            h = fnv1a(h, f.name);
            h = fnv1a(h, is_optional_v<M> ? ":?" : ":");
            h = fnv1a(h, scalar_type_code<unwrap_optional_t<M>>());
        });
        return h;
    }();

    static const pk_type& pk(const T& entity) {
        return entity.*(std::get<0>(model_def<T>.fields).member);
    }
    static pk_type& pk(T& entity) { return entity.*(std::get<0>(model_def<T>.fields).member); }
    static constexpr std::string_view pk_name() { return std::get<0>(model_def<T>.fields).name; }
};

}  // namespace detail

/// The type of T's primary key (its first mapped member): what Repository<T>::get, get_or_none,
/// remove and CacheManager::invalidate<T> take.
template <Model T>
using primary_key_type = detail::primary_key_t<T>;

/// The mapping digest of T as 16 hex digits (what the cache puts in its keys).
template <Model T>
std::string model_digest() {
    static constexpr char hex[] = "0123456789abcdef";
    std::string out(16, '0');
    std::uint64_t d = detail::ModelInfo<T>::digest;
    for (int i = 15; i >= 0; --i, d >>= 4)
        out[static_cast<std::size_t>(i)] = hex[d & 15];
    return out;
}

/// The table T is mapped to.
template <Model T>
constexpr std::string_view table_name() {
    return detail::ModelInfo<T>::table;
}

}  // namespace ormcache

#define ORMCACHE_DETAIL_FIELD(Type, member)                                                       \
    ::ormcache::detail::make_field<Type>(                                                         \
        #member, []<class OrmcacheModelT>(::std::type_identity<OrmcacheModelT>) {                 \
            if constexpr (requires { &OrmcacheModelT::member; }) {                                \
                return &OrmcacheModelT::member;                                                   \
            } else {                                                                              \
                static_assert(::ormcache::detail::always_false<OrmcacheModelT>,                   \
                              "ORMCACHE_MODEL: '" #member "' is not a data member of the model"); \
                return nullptr;                                                                   \
            }                                                                                     \
        }(::std::type_identity<Type>{}))

/// ORMCACHE_MODEL(Type, "table", pk, fields...): maps Type (at namespace scope, in Type's own
/// namespace, no trailing semicolon). The first field is the primary key.
#define ORMCACHE_MODEL(Type, table, ...)                                                    \
    [[maybe_unused]] constexpr auto ormcache_model_definition(::std::type_identity<Type>) { \
        return ::ormcache::detail::make_model<Type>(                                        \
            table, ORMCACHE_PP_FOR_EACH(ORMCACHE_DETAIL_FIELD, Type, __VA_ARGS__));         \
    }
