#pragma once
// One table per backend options struct (RedisOptions, MemcachedOptions, FileOptions,
// MemoryOptions) and one generic reader and writer over it: the JSON name of each argument, the
// member it sets and its range are written once, next to the struct, as
//
//   template <> struct OptionTable<XOptions> {
//       static constexpr std::string_view backend = "x";
//       static constexpr auto fields = std::tuple{field(<json name>, &XOptions::member, {...})};
//   };
//
// read_options<XOptions>(json) walks the table: an unknown name is a ConfigError listing the
// table's names, a value of the wrong type or out of range a ConfigError naming
// "CacheConfig::arguments.<name>", what was expected and what it got. options_to_json() writes
// the struct back through the same table, so options -> JSON -> options is the identity. The
// tests and tests/docs/check_reference.cmake read the names from the `field("...")` entries.

#include <chrono>
#include <cstdint>
#include <limits>
#include <string>
#include <string_view>
#include <tuple>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "../../errors.hpp"
#include "../util/linkage.hpp"

namespace ormcache::detail {

/// Longest duration argument: an hour, in milliseconds (the `_ms` arguments).
inline constexpr std::int64_t max_argument_ms = 3600000;

/// How one argument is checked. Integers (and `_ms` durations) must lie in min..max.
struct FieldRules {
    std::int64_t min = 0;
    std::int64_t max = std::numeric_limits<std::int64_t>::max();
    /// Said after the expectation in an error, e.g. "0 = unbounded".
    std::string_view hint{};
    /// Strings: the empty string is refused.
    bool non_empty = false;
    /// The argument must be given (an absent one is a ConfigError).
    bool required = false;
    /// A bad value is described by its JSON type only, never quoted (passwords, urls).
    bool secret = false;
};

/// An argument stored in one member: std::string, bool, an integer or std::chrono::milliseconds.
template <class O, class T>
struct Field {
    std::string_view name;
    T O::*member;
    FieldRules rules;
};

/// An argument with its own reader and writer (a url that sets several members, a list).
/// `write` returns null to leave the argument out of the JSON.
template <class O>
struct CustomField {
    std::string_view name;
    void (*read)(O&, const nlohmann::json&);
    nlohmann::json (*write)(const O&);
    FieldRules rules;
};

template <class O, class T>
constexpr Field<O, T> field(std::string_view name, T O::*member, FieldRules rules = {}) {
    return {name, member, rules};
}

template <class O>
constexpr CustomField<O> field(std::string_view name, void (*read)(O&, const nlohmann::json&),
                               nlohmann::json (*write)(const O&), FieldRules rules = {}) {
    return {name, read, write, rules};
}

/// Specialized next to each options struct: `backend` (its name in messages), `fields` (a
/// tuple of field(...)), and optionally `static void check(const O&)` for rules that involve
/// more than one field.
template <class O>
struct OptionTable;

template <class O>
concept HasOptionCheck = requires(const O& o) {
    OptionTable<O>::check(o);
};

ORMCACHE_INLINE std::string argument_path(std::string_view name);
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE std::string argument_path(std::string_view name) {
    return "CacheConfig::arguments." + std::string(name);
}
#endif

/// "CacheConfig::arguments.<name> must be <expected>[ (<hint>)], got <value>".
[[noreturn]] ORMCACHE_INLINE void bad_argument(std::string_view name, const FieldRules& rules,
                                               const std::string& expected,
                                               const nlohmann::json& v);
#if ORMCACHE_DEFINITIONS
[[noreturn]] ORMCACHE_INLINE void bad_argument(std::string_view name, const FieldRules& rules,
                                               const std::string& expected,
                                               const nlohmann::json& v) {
    std::string message = argument_path(name) + " must be " + expected;
    if (!rules.hint.empty())
        message += " (" + std::string(rules.hint) + ")";
    message += ", got ";
    message += rules.secret ? "a " + std::string(v.type_name()) : v.dump();
    throw ConfigError(message);
}
#endif

ORMCACHE_INLINE std::string read_string_argument(std::string_view name, const nlohmann::json& v,
                                                 const FieldRules& rules = {});
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE std::string read_string_argument(std::string_view name, const nlohmann::json& v,
                                                 const FieldRules& rules) {
    if (!v.is_string() || (rules.non_empty && v.get_ref<const std::string&>().empty()))
        bad_argument(name, rules, rules.non_empty ? "a non-empty string" : "a string", v);
    return v.get<std::string>();
}
#endif

ORMCACHE_INLINE std::int64_t read_integer_argument(std::string_view name, const nlohmann::json& v,
                                                   const FieldRules& rules,
                                                   bool milliseconds = false);
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE std::int64_t read_integer_argument(std::string_view name, const nlohmann::json& v,
                                                   const FieldRules& rules, bool milliseconds) {
    const bool fits = v.is_number_integer() &&
                      !(v.is_number_unsigned() &&
                        v.get<std::uint64_t>() > std::uint64_t(rules.max < 0 ? 0 : rules.max));
    if (!fits || v.get<std::int64_t>() < rules.min || v.get<std::int64_t>() > rules.max) {
        std::string expected = milliseconds ? "an integer of milliseconds" : "an integer";
        if (rules.max == std::numeric_limits<std::int64_t>::max())
            expected += " >= " + std::to_string(rules.min);
        else
            expected += " in " + std::to_string(rules.min) + ".." + std::to_string(rules.max);
        bad_argument(name, rules, expected, v);
    }
    return v.get<std::int64_t>();
}
#endif

template <class O, class T>
void read_field(O& o, const Field<O, T>& f, const nlohmann::json& v) {
    if constexpr (std::is_same_v<T, std::string>) {
        o.*f.member = read_string_argument(f.name, v, f.rules);
    } else if constexpr (std::is_same_v<T, bool>) {
        if (!v.is_boolean())
            bad_argument(f.name, f.rules, "a boolean", v);
        o.*f.member = v.get<bool>();
    } else if constexpr (std::is_same_v<T, std::chrono::milliseconds>) {
        o.*f.member = std::chrono::milliseconds{read_integer_argument(f.name, v, f.rules, true)};
    } else {
        static_assert(std::is_integral_v<T>, "an argument is a string, bool, integer or ms");
        o.*f.member = static_cast<T>(read_integer_argument(f.name, v, f.rules));
    }
}

template <class O>
void read_field(O& o, const CustomField<O>& f, const nlohmann::json& v) {
    f.read(o, v);
}

template <class O, class T>
nlohmann::json write_field(const O& o, const Field<O, T>& f) {
    if constexpr (std::is_same_v<T, std::chrono::milliseconds>)
        return (o.*f.member).count();
    else
        return o.*f.member;
}

template <class O>
nlohmann::json write_field(const O& o, const CustomField<O>& f) {
    return f.write ? f.write(o) : nlohmann::json();
}

/// "host, port, db, ...": every name of the table, in its order.
template <class O>
std::string argument_names() {
    std::string names;
    std::apply(
        [&](const auto&... f) {
            ((names += (names.empty() ? "" : ", ") + std::string(f.name)), ...);
        },
        OptionTable<O>::fields);
    return names;
}

/// Reads an options struct from CacheConfig::arguments (a JSON object) through its table:
/// arguments are applied in table order (so a url listed first is overridden by the explicit
/// arguments after it); absent ones keep the struct's defaults.
template <class O>
O read_options(const nlohmann::json& args) {
    using Table = OptionTable<O>;
    if (!args.is_object()) {
        throw ConfigError("CacheConfig::arguments must be a JSON object, got " +
                          std::string(args.type_name()));
    }
    for (const auto& item : args.items()) {
        const bool known = std::apply(
            [&](const auto&... f) { return ((f.name == item.key()) || ...); }, Table::fields);
        if (!known) {
            throw ConfigError(argument_path(item.key()) + ": unknown argument for backend " +
                              std::string(Table::backend) + "; expected one of " +
                              argument_names<O>());
        }
    }
    O o{};
    std::apply(
        [&](const auto&... f) {
            (
                [&](const auto& one) {
                    const auto it = args.find(std::string(one.name));
                    if (it != args.end()) {
                        read_field(o, one, *it);
                    } else if (one.rules.required) {
                        std::string message = argument_path(one.name) + " is required by the " +
                                              std::string(Table::backend) + " backend";
                        if (!one.rules.hint.empty())
                            message += " (" + std::string(one.rules.hint) + ")";
                        throw ConfigError(message);
                    }
                }(f),
                ...);
        },
        Table::fields);
    if constexpr (HasOptionCheck<O>)
        Table::check(o);
    return o;
}

/// The CacheConfig::arguments object that read_options() turns back into `o`.
template <class O>
nlohmann::json options_to_json(const O& o) {
    nlohmann::json j = nlohmann::json::object();
    std::apply(
        [&](const auto&... f) {
            (
                [&](const auto& one) {
                    auto value = write_field(o, one);
                    if (!value.is_null())
                        j[std::string(one.name)] = std::move(value);
                }(f),
                ...);
        },
        OptionTable<O>::fields);
    return j;
}

}  // namespace ormcache::detail
