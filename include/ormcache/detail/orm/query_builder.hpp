#pragma once
// Turns a repository call's filters into SQL text plus bound values. The text depends only on
// the filters' shape (so prepared statements are reused) and the values are always bound.
// The (text, values) pair is also what the cache digests into a list key.

#include <array>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <variant>
#include <vector>

#include "../../errors.hpp"
#include "../../filters.hpp"
#include "../../model.hpp"
#include "../../options.hpp"
#include "../sqlite/session_state.hpp"
#include "../util/linkage.hpp"
#include "../util/type_name.hpp"
#include "column_traits.hpp"
#include "sql_text.hpp"

namespace ormcache::detail {

/// One bound value, independent of the C++ type it came from.
using SqlValue = std::variant<std::monostate, std::int64_t, double, std::string, Blob>;

template <ColumnType V>
SqlValue to_sql_value(const V& v) {
    if constexpr (is_optional_v<V>) {
        if (!v)
            return std::monostate{};
        return to_sql_value(*v);
    } else if constexpr (std::same_as<V, bool>) {
        return std::int64_t{v ? 1 : 0};
    } else if constexpr (IntegerLike<V>) {
        return to_int64(v);
    } else if constexpr (std::same_as<V, float> || std::same_as<V, double>) {
        return static_cast<double>(v);
    } else if constexpr (std::same_as<V, std::string> || std::same_as<V, Blob>) {
        return v;
    } else {
        return to_micros(v);
    }
}

ORMCACHE_INLINE void bind_sql_value(Query& q, int index, const SqlValue& v);
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE void bind_sql_value(Query& q, int index, const SqlValue& v) {
    std::visit(
        [&](const auto& x) {
            if constexpr (std::is_same_v<std::decay_t<decltype(x)>, std::monostate>) {
                q.bind_null(index);
            } else {
                q.bind(index, x);
            }
        },
        v);
}
#endif

/// Everything a list/count/exists call asked for, in SQL form.
struct QueryParts {
    std::string where;  // "" or " WHERE ..."
    std::string order;  // "" or " ORDER BY ..."
    std::optional<LimitOffset> page;
    std::vector<SqlValue> params;  // WHERE parameters, in order
    Options options;
    std::size_t max_params = 32766;

    void add_condition(std::string_view condition) {
        where += where.empty() ? " WHERE " : " AND ";
        where += condition;
    }

    /// " LIMIT ? OFFSET ?" when paged (its two values are bound after `params`).
    std::string page_sql() const { return page ? " LIMIT ? OFFSET ?" : ""; }

    /// Every bound value, typed and length-prefixed: with the SQL text, it identifies the
    /// query's result exactly (the cache's list key digests it and the entry stores it).
    std::string canonical_values() const;

    /// Whether a statement has the LIMIT/OFFSET placeholders (a list does, a count does not).
    enum class Paging : bool { without_page, with_page };

    /// Binds the WHERE values, then LIMIT/OFFSET when the statement has them.
    void bind(Query& q, Paging paging) const;
};

#if ORMCACHE_DEFINITIONS

ORMCACHE_INLINE std::string QueryParts::canonical_values() const {
    std::string out;
    auto add = [&](const SqlValue& v) {
        std::visit(
            [&](const auto& x) {
                using X = std::decay_t<decltype(x)>;
                if constexpr (std::is_same_v<X, std::monostate>) {
                    out += "n;";
                } else if constexpr (std::is_same_v<X, std::int64_t>) {
                    out += "i" + std::to_string(x) + ";";
                } else if constexpr (std::is_same_v<X, double>) {
                    std::uint64_t bits;
                    std::memcpy(&bits, &x, sizeof bits);
                    out += "d" + std::to_string(bits) + ";";
                } else {
                    out += (std::is_same_v<X, std::string> ? "s" : "b") + std::to_string(x.size()) +
                           ":";
                    out.append(reinterpret_cast<const char*>(x.data()), x.size());
                    out += ';';
                }
            },
            v);
    };
    for (const auto& v : params)
        add(v);
    if (page) {
        add(page->limit);
        add(page->offset);
    }
    return out;
}

ORMCACHE_INLINE void QueryParts::bind(Query& q, Paging paging) const {
    const bool paged = paging == Paging::with_page;
    int index = 0;
    for (const auto& v : params)
        bind_sql_value(q, ++index, v);
    if (paged && page) {
        q.bind(++index, page->limit);
        q.bind(++index, page->offset);
    }
}

#endif  // ORMCACHE_DEFINITIONS

template <class F>
inline constexpr std::string_view filter_name = "filter";
template <class C, class M>
inline constexpr std::string_view filter_name<OrderBy<C, M>> = "OrderBy";
template <class C, class M>
inline constexpr std::string_view filter_name<ComparisonFilter<C, M>> = "ComparisonFilter";
template <class C, class M, class V>
inline constexpr std::string_view filter_name<CollectionFilter<C, M, V>> = "CollectionFilter";
template <class C, class M, class V>
inline constexpr std::string_view filter_name<NotInCollectionFilter<C, M, V>> =
    "NotInCollectionFilter";
template <class C, class M>
inline constexpr std::string_view filter_name<SearchFilter<C, M>> = "SearchFilter";
template <class C, class M>
inline constexpr std::string_view filter_name<BeforeAfter<C, M>> = "BeforeAfter";

/// Where a filter came from, for QueryError messages: which repository call, and which of its
/// arguments (1-based), so that a message names the very filter a user wrote.
struct FilterSite {
    std::string_view call;  // "list", "count", ...
    std::size_t argument = 0;

    /// "ComparisonFilter (argument 2 of list())".
    std::string describe(std::string_view kind) const;
};

#if ORMCACHE_DEFINITIONS

ORMCACHE_INLINE std::string FilterSite::describe(std::string_view kind) const {
    return std::string(kind) + " (argument " + std::to_string(argument) + " of " +
           std::string(call) + "())";
}

#endif  // ORMCACHE_DEFINITIONS

/// "app::User (table 'users')".
template <Model T>
std::string model_description() {
    return type_name<T>() + " (table '" + std::string(ModelInfo<T>::table) + "')";
}

/// The quoted column a member pointer names; QueryError if ORMCACHE_MODEL does not list it.
template <Model T, class F, class C, class M>
std::string column_of(M C::*member, const FilterSite& site) {
    static_assert(std::is_same_v<C, T> || std::is_base_of_v<C, T>,
                  "this filter names a member of another model than the repository's");
    std::string_view found;
    for_each_field<T>([&](const auto& f, auto) {
        using FM = typename std::remove_cvref_t<decltype(f)>::value_type;
        if constexpr (std::is_same_v<FM, M>) {
            if (f.member == static_cast<M T::*>(member))
                found = f.name;
        }
    });
    if (found.empty()) {
        // The member has no name at run time; its type and class narrow it down.
        throw QueryError(site.describe(filter_name<F>) + " names a member of " + type_name<C>() +
                         " of type " + type_name<M>() + " that ORMCACHE_MODEL does not map for " +
                         model_description<T>() + "; map it, or filter on a mapped member");
    }
    return quote_identifier(found);
}

template <Model T>
struct FilterApplier {
    QueryParts& parts;
    FilterSite site{};
    std::size_t page_argument = 0;  // the argument that gave LimitOffset, once given

    /// "ComparisonFilter (argument 2 of list()) on "age" (std::optional<int>) of app::User
    /// (table 'users')".
    template <class F, class M>
    std::string on(const std::string& column) const {
        return site.describe(filter_name<F>) + " on " + column + " (" + type_name<M>() + ") of " +
               model_description<T>();
    }

    void operator()(const Options& o) { parts.options = o; }

    template <class X>
    void operator()(const X&) {
        static_assert(always_false<X>,
                      "not a filter of this library (LimitOffset, OrderBy, CollectionFilter, "
                      "NotInCollectionFilter, ComparisonFilter, SearchFilter, BeforeAfter) nor "
                      "ormcache::Options");
    }

    void operator()(const LimitOffset& p) {
        const std::string where = site.describe("LimitOffset") + " of " + model_description<T>();
        if (parts.page) {
            throw QueryError(where + ": given twice (first as argument " +
                             std::to_string(page_argument) + ")");
        }
        if (p.limit < 0 || p.offset < 0) {
            throw QueryError(where + ": needs limit >= 0 and offset >= 0, got limit=" +
                             std::to_string(p.limit) + ", offset=" + std::to_string(p.offset));
        }
        parts.page = p;
        page_argument = site.argument;
    }

    template <class C, class M>
    void operator()(const OrderBy<C, M>& f) {
        parts.order += parts.order.empty() ? " ORDER BY " : ", ";
        parts.order += column_of<T, OrderBy<C, M>>(f.field, site);
        parts.order += f.sort == Sort::desc ? " DESC" : " ASC";
    }

    template <class C, class M>
    void operator()(const ComparisonFilter<C, M>& f) {
        using F = ComparisonFilter<C, M>;
        static constexpr std::array<std::string_view, 6> ops{"=", "!=", "<", "<=", ">", ">="};
        const std::string column = column_of<T, F>(f.field, site);
        bool known = false;
        for (auto op : ops)
            known = known || op == f.op;
        if (!known) {
            throw QueryError(on<F, M>(column) + ": unknown operator '" + f.op +
                             "' (allowed: =, !=, <, <=, >, >=)");
        }
        SqlValue value = to_sql_value(f.value);
        if (std::holds_alternative<std::monostate>(value)) {
            if (f.op == "=")
                return parts.add_condition(column + " IS NULL");
            if (f.op == "!=")
                return parts.add_condition(column + " IS NOT NULL");
            throw QueryError(on<F, M>(column) + ": operator '" + f.op +
                             "' cannot compare with NULL (allowed with NULL: =, !=)");
        }
        parts.add_condition(column + " " + f.op + " ?");
        parts.params.push_back(std::move(value));
    }

    template <class F, class C, class M, class V>
    void collection(const F& f, std::string_view keyword) {
        static_assert(ColumnType<V>, "collection values must be a column type");
        const std::string column = column_of<T, F>(f.field, site);
        if (f.values.empty())
            throw QueryError(on<F, M>(column) + ": the collection is empty");
        if (f.values.size() + parts.params.size() + 2 > parts.max_params) {
            throw QueryError(on<F, M>(column) + ": " + std::to_string(f.values.size()) +
                             " values, with " + std::to_string(parts.params.size()) +
                             " bound before them; SQLite binds at most " +
                             std::to_string(parts.max_params) + " parameters per statement");
        }
        std::string condition = column;
        condition += keyword;
        condition += '(';
        for (std::size_t i = 0; i < f.values.size(); ++i) {
            condition += i == 0 ? "?" : ", ?";
            parts.params.push_back(to_sql_value(f.values[i]));
        }
        condition += ')';
        parts.add_condition(condition);
    }

    template <class C, class M, class V>
    void operator()(const CollectionFilter<C, M, V>& f) {
        collection<CollectionFilter<C, M, V>, C, M, V>(f, " IN ");
    }

    template <class C, class M, class V>
    void operator()(const NotInCollectionFilter<C, M, V>& f) {
        collection<NotInCollectionFilter<C, M, V>, C, M, V>(f, " NOT IN ");
    }

    template <class C, class M>
    void operator()(const SearchFilter<C, M>& f) {
        static_assert(std::is_same_v<unwrap_optional_t<M>, std::string>,
                      "SearchFilter applies to text (std::string) columns");
        const std::string column = column_of<T, SearchFilter<C, M>>(f.field, site);
        if (f.ignore_case) {
            std::string pattern = "%";
            for (char c : f.value) {
                if (c == '%' || c == '_' || c == '\\')
                    pattern += '\\';
                pattern += c;
            }
            pattern += '%';
            parts.add_condition(column + " LIKE ? ESCAPE '\\'");
            parts.params.emplace_back(std::move(pattern));
        } else {
            // LIKE folds ASCII case; instr() is an exact substring test.
            parts.add_condition("instr(" + column + ", ?) > 0");
            parts.params.emplace_back(f.value);
        }
    }

    template <class C, class M>
    void operator()(const BeforeAfter<C, M>& f) {
        static_assert(std::is_same_v<unwrap_optional_t<M>, TimePoint>,
                      "BeforeAfter applies to std::chrono::system_clock::time_point columns");
        const std::string column = column_of<T, BeforeAfter<C, M>>(f.field, site);
        if (f.before) {
            parts.add_condition(column + " < ?");
            parts.params.emplace_back(to_micros(*f.before));
        }
        if (f.after) {
            parts.add_condition(column + " > ?");
            parts.params.emplace_back(to_micros(*f.after));
        }
    }
};

template <class A>
inline constexpr bool is_options_v = std::is_same_v<std::remove_cvref_t<A>, Options>;

/// `call` names the repository method ("list", "count", ...) in QueryError messages.
template <Model T, class... Args>
QueryParts build_query(std::string_view call, std::size_t max_params, const Args&... args) {
    static_assert((0 + ... + (is_options_v<Args> ? 1 : 0)) <= 1,
                  "give at most one ormcache::Options per call");
    QueryParts parts;
    parts.max_params = max_params;
    // Unused when no filter is given. Each argument is applied with its position in the call.
    [[maybe_unused]] FilterApplier<T> apply{parts, FilterSite{call, 0}, 0};
    ((++apply.site.argument, apply(args)), ...);
    // Each collection checks itself against the limit; the whole query must fit too, whatever
    // the order of the filters (else SQLite fails at prepare time with a DatabaseError).
    const std::size_t total = parts.params.size() + (parts.page ? 2 : 0);
    if (total > max_params) {
        throw QueryError(std::string(call) + "() of " + model_description<T>() +
                         ": the query binds " + std::to_string(total) +
                         " values over all its filters; SQLite binds at most " +
                         std::to_string(max_params) + " parameters per statement");
    }
    return parts;
}

}  // namespace ormcache::detail
