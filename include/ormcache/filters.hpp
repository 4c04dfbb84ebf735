#pragma once
// Query filters, as in Advanced Alchemy. Columns are named by member pointer; every value is a
// bound parameter. Class template argument deduction picks the model and column type, so
// `ComparisonFilter{&User::age, ">=", 18}` needs no template arguments.

#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <vector>

#include "detail/orm/column_traits.hpp"

namespace ormcache {

enum class Sort { asc, desc };

/// LIMIT / OFFSET. At most one per query; both must be >= 0.
struct LimitOffset {
    std::int64_t limit = 0;
    std::int64_t offset = 0;
};

/// ORDER BY one column. Several may be given; they apply in order.
template <class C, class M>
struct OrderBy {
    M C::*field;
    Sort sort = Sort::asc;
};
template <class C, class M>
OrderBy(M C::*) -> OrderBy<C, M>;
template <class C, class M>
OrderBy(M C::*, Sort) -> OrderBy<C, M>;

/// `field op value` with op one of "=", "!=", "<", "<=", ">", ">=". An empty optional value
/// with "=" / "!=" means IS NULL / IS NOT NULL.
template <class C, class M>
struct ComparisonFilter {
    M C::*field;
    std::string op;
    M value;
};
template <class C, class M, class Op, class V>
ComparisonFilter(M C::*, Op, V) -> ComparisonFilter<C, M>;

/// The value type a filter on a member of type M compares with: M, or V when M is
/// std::optional<V>.
template <class M>
using filter_value_t = detail::unwrap_optional_t<M>;

/// `field IN (values...)`. An empty collection is a QueryError.
template <class C, class M, class V>
struct CollectionFilter {
    M C::*field;
    std::vector<V> values;
};
template <class C, class M, class V>
CollectionFilter(M C::*, std::vector<V>) -> CollectionFilter<C, M, V>;
template <class C, class M>
CollectionFilter(M C::*, std::initializer_list<filter_value_t<M>>)
    -> CollectionFilter<C, M, filter_value_t<M>>;

/// `field NOT IN (values...)`. An empty collection is a QueryError.
template <class C, class M, class V>
struct NotInCollectionFilter {
    M C::*field;
    std::vector<V> values;
};
template <class C, class M, class V>
NotInCollectionFilter(M C::*, std::vector<V>) -> NotInCollectionFilter<C, M, V>;
template <class C, class M>
NotInCollectionFilter(M C::*, std::initializer_list<filter_value_t<M>>)
    -> NotInCollectionFilter<C, M, filter_value_t<M>>;

/// Substring search on a text column. Case-sensitive by default; ignore_case folds ASCII
/// letters only (SQLite's LIKE, without ICU).
template <class C, class M>
struct SearchFilter {
    M C::*field;
    std::string value;
    bool ignore_case = false;
};
template <class C, class M, class V>
SearchFilter(M C::*, V) -> SearchFilter<C, M>;
template <class C, class M, class V>
SearchFilter(M C::*, V, bool) -> SearchFilter<C, M>;

/// A time range on a time-point column: `field < before` and/or `field > after`
/// (exclusive, as in Advanced Alchemy). An unset bound is not applied.
template <class C, class M>
struct BeforeAfter {
    M C::*field;
    std::optional<std::chrono::system_clock::time_point> before{};
    std::optional<std::chrono::system_clock::time_point> after{};
};
template <class C, class M, class... Rest>
BeforeAfter(M C::*, Rest...) -> BeforeAfter<C, M>;

}  // namespace ormcache
