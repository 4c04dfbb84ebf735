#pragma once
// Small, allocation-light helpers over SQL text: identifier quoting, and recognising the
// handful of statements the change journal must follow by name (savepoints and DDL), in raw
// SQL as well as in the library's own.

#include <algorithm>
#include <optional>
#include <string>
#include <string_view>

#include "../util/linkage.hpp"

namespace ormcache::detail {

inline char ascii_lower(char c) {
    return (c >= 'A' && c <= 'Z') ? char(c - 'A' + 'a') : c;
}

inline bool iequals(std::string_view a, std::string_view b) {
    return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
               return ascii_lower(x) == ascii_lower(y);
           });
}

/// "name" with embedded quotes doubled: safe in any identifier position.
ORMCACHE_INLINE std::string quote_identifier(std::string_view name);
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE std::string quote_identifier(std::string_view name) {
    std::string out;
    out.reserve(name.size() + 2);
    out += '"';
    for (char c : name) {
        if (c == '"')
            out += '"';
        out += c;
    }
    out += '"';
    return out;
}
#endif

/// A forward-only reader over one SQL statement.
class SqlCursor {
  public:
    explicit SqlCursor(std::string_view sql) : rest_(sql) {}

    /// Consumes `keyword` (case-insensitive, whole word) if it comes next.
    bool keyword(std::string_view keyword) {
        skip_space();
        if (rest_.size() < keyword.size() || !iequals(rest_.substr(0, keyword.size()), keyword)) {
            return false;
        }
        if (rest_.size() > keyword.size() && is_ident_char(rest_[keyword.size()]))
            return false;
        rest_.remove_prefix(keyword.size());
        return true;
    }

    bool symbol(char c) {
        skip_space();
        if (rest_.empty() || rest_.front() != c)
            return false;
        rest_.remove_prefix(1);
        return true;
    }

    /// An identifier: bare, "double", [bracket], `backtick` or 'single' quoted.
    std::optional<std::string> identifier() {
        skip_space();
        if (rest_.empty())
            return std::nullopt;
        const char open = rest_.front();
        const char close = open == '[' ? ']' : open;
        if (open == '"' || open == '`' || open == '\'' || open == '[') {
            std::string out;
            std::size_t i = 1;
            while (i < rest_.size()) {
                if (rest_[i] == close) {
                    if (close != ']' && i + 1 < rest_.size() && rest_[i + 1] == close) {
                        out += close;
                        i += 2;
                        continue;
                    }
                    rest_.remove_prefix(i + 1);
                    return out;
                }
                out += rest_[i++];
            }
            return std::nullopt;
        }
        std::size_t n = 0;
        while (n < rest_.size() && is_ident_char(rest_[n]))
            ++n;
        if (n == 0)
            return std::nullopt;
        std::string out(rest_.substr(0, n));
        rest_.remove_prefix(n);
        return out;
    }

    /// [schema.]name, returned as "name" for main and "schema.name" otherwise.
    std::optional<std::string> table_name() {
        auto first = identifier();
        if (!first)
            return std::nullopt;
        if (symbol('.')) {
            auto second = identifier();
            if (!second)
                return std::nullopt;
            if (iequals(*first, "main"))
                return second;
            return *first + "." + *second;
        }
        return first;
    }

  private:
    static bool is_ident_char(char c) {
        return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
               c == '_' || c == '$' || static_cast<unsigned char>(c) >= 0x80;
    }

    void skip_space() {
        for (;;) {
            while (!rest_.empty() &&
                   (rest_.front() == ' ' || rest_.front() == '\t' || rest_.front() == '\n' ||
                    rest_.front() == '\r' || rest_.front() == '\f' || rest_.front() == '\v')) {
                rest_.remove_prefix(1);
            }
            if (rest_.starts_with("--")) {
                const auto end = rest_.find('\n');
                rest_ = end == std::string_view::npos ? std::string_view{} : rest_.substr(end + 1);
            } else if (rest_.starts_with("/*")) {
                const auto end = rest_.find("*/", 2);
                rest_ = end == std::string_view::npos ? std::string_view{} : rest_.substr(end + 2);
            } else {
                return;
            }
        }
    }

    std::string_view rest_;
};

/// What a statement does to the journal's frame stack or to whole tables.
struct StatementEffect {
    enum class Kind { none, savepoint, release, rollback_to, whole_table } kind = Kind::none;
    std::string name;         // savepoint name, or table for whole_table
    std::string second_name;  // ALTER TABLE ... RENAME TO: the new table name
};

ORMCACHE_INLINE StatementEffect classify_statement(std::string_view sql);
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE StatementEffect classify_statement(std::string_view sql) {
    using Kind = StatementEffect::Kind;
    SqlCursor c(sql);
    StatementEffect effect;
    if (c.keyword("SAVEPOINT")) {
        if (auto n = c.identifier())
            effect = {Kind::savepoint, *n, {}};
    } else if (c.keyword("RELEASE")) {
        c.keyword("SAVEPOINT");
        if (auto n = c.identifier())
            effect = {Kind::release, *n, {}};
    } else if (c.keyword("ROLLBACK")) {
        c.keyword("TRANSACTION");
        if (c.keyword("TO")) {
            c.keyword("SAVEPOINT");
            if (auto n = c.identifier())
                effect = {Kind::rollback_to, *n, {}};
        }
    } else if (c.keyword("DROP")) {
        if (c.keyword("TABLE")) {
            if (c.keyword("IF"))
                c.keyword("EXISTS");
            if (auto n = c.table_name())
                effect = {Kind::whole_table, *n, {}};
        }
    } else if (c.keyword("ALTER")) {
        if (c.keyword("TABLE")) {
            if (auto n = c.table_name()) {
                effect = {Kind::whole_table, *n, {}};
                if (c.keyword("RENAME") && c.keyword("TO")) {
                    if (auto to = c.identifier())
                        effect.second_name = *to;
                }
            }
        }
    }
    return effect;
}
#endif

/// Statements that must not be wrapped in an implicit BEGIN by Session::execute.
ORMCACHE_INLINE bool is_connection_statement(std::string_view sql);
#if ORMCACHE_DEFINITIONS
ORMCACHE_INLINE bool is_connection_statement(std::string_view sql) {
    SqlCursor c(sql);
    return c.keyword("PRAGMA") || c.keyword("VACUUM") || c.keyword("ATTACH") ||
           c.keyword("DETACH") || c.keyword("BEGIN") || c.keyword("COMMIT") || c.keyword("END") ||
           c.keyword("ROLLBACK") || c.keyword("SAVEPOINT") || c.keyword("RELEASE");
}
#endif

}  // namespace ormcache::detail
