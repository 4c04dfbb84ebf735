#pragma once
// The key layout of a cache. Every key starts with key_prefix; a database's keys with its key
// space, key_prefix + <database identity> + ":" (see detail/sqlite/database_identity.hpp):
//   <space>e:<table>:<digest>:<serializer>:<i|s><key>   one entity (or its absence)
//   <space>q:<table>:<digest>:<serializer>:<kind>:<hash> one list/count/exists result
//   <space>v:<table>                        list version, bumped by every committed change
//   <space>g:<table>                        entity generation, bumped when changed rows
//                                           cannot be named (whole-table changes)
//   <key_prefix>r:<user key>                get_or_create values (the application's keys,
//                                           not a database's)
// An entity entry stores the generation it was read under, a query entry the list version and
// its canonical query text; a read whose counter differs, or whose text differs (a hash
// collision), is a miss. So bumping a counter makes every older entry unreachable at once.
//
// Every read builds its key and counter name, so they are built in place, in one buffer of
// the right size (no temporaries, no digest string). The per-model parts are one line each;
// the rest is not a template, so it is compiled once whatever the number of models.

#include <charconv>
#include <cstdint>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

#include "../../change_set.hpp"
#include "../../model.hpp"
#include "read_target.hpp"

namespace ormcache::detail {

/// The PrimaryKey (the variant change sets and keys use) of a model's key value.
template <class K>
PrimaryKey to_primary_key(const K& key) {
    if constexpr (std::is_same_v<K, std::string>) {
        return key;
    } else {
        return to_int64(key);
    }
}

class KeyLayout {
  public:
    KeyLayout(std::string key_prefix, std::string serializer_name)
        : prefix_(std::move(key_prefix)), serializer_(std::move(serializer_name)) {}

    /// The key space of the database whose cache identity is `identity`.
    std::string space(std::string_view identity) const {
        std::string out;
        out.reserve(prefix_.size() + identity.size() + 1);
        out += prefix_;
        out += identity;
        out += ':';
        return out;
    }

    static std::string version_key(std::string_view space, std::string_view table) {
        return counter_key(space, "v:", table);
    }
    static std::string generation_key(std::string_view space, std::string_view table) {
        return counter_key(space, "g:", table);
    }

    /// The entry of one entity of the model whose mapping digest is `digest` (16 hex digits).
    std::string entity_key(std::string_view space, std::string_view table, std::string_view digest,
                           const PrimaryKey& key) const {
        const auto* text = std::get_if<std::string>(&key);
        std::string out =
            model_key_head(space, "e:", table, digest, 1 + (text != nullptr ? text->size() : 20));
        append_key(out, key);
        return out;
    }

    template <Model T>
    std::string entity_key(std::string_view space, const PrimaryKey& key) const {
        return entity_key(space, ModelInfo<T>::table, digest_of<T>(), key);
    }

    template <Model T>
    std::string query_key(std::string_view space, std::string_view kind,
                          std::string_view canonical) const {
        return query_key(space, ModelInfo<T>::table, digest_of<T>(), kind, canonical);
    }

    std::string query_key(std::string_view space, std::string_view table, std::string_view digest,
                          std::string_view kind, std::string_view canonical) const {
        std::string out = model_key_head(space, "q:", table, digest, kind.size() + 1 + 32);
        out += kind;
        out += ':';
        append_hash_hex(out, canonical);
        return out;
    }

    template <Model T>
    ReadTarget entity_target(std::string_view space, const PrimaryKey& key) const {
        return ReadTarget{
            entity_key<T>(space, key), generation_key(space, ModelInfo<T>::table), {}, true};
    }

    /// `canonical` (the full query text) must outlive the read.
    template <Model T>
    ReadTarget query_target(std::string_view space, std::string_view kind,
                            std::string_view canonical) const {
        return ReadTarget{query_key<T>(space, kind, canonical),
                          version_key(space, ModelInfo<T>::table), canonical, false};
    }

    std::string region_key(std::string_view key) const {
        std::string out;
        out.reserve(prefix_.size() + 2 + key.size());
        out += prefix_;
        out += "r:";
        out += key;
        return out;
    }

    /// The 16 hex digits of a mapping digest, as in the keys (== model_digest<T>()).
    struct Digest {
        char digits[16];
        operator std::string_view() const noexcept { return {digits, sizeof digits}; }
    };
    template <Model T>
    static Digest digest_of() {
        Digest d;
        write_hex(d.digits, ModelInfo<T>::digest);
        return d;
    }

  private:
    static std::string counter_key(std::string_view space, std::string_view kind,
                                   std::string_view table) {
        std::string out;
        out.reserve(space.size() + kind.size() + table.size());
        out += space;
        out += kind;
        out += table;
        return out;
    }

    /// "<space><kind><table>:<digest>:<serializer>:", with room for `extra` more.
    std::string model_key_head(std::string_view space, std::string_view kind,
                               std::string_view table, std::string_view digest,
                               std::size_t extra) const {
        std::string out;
        out.reserve(space.size() + kind.size() + table.size() + 1 + digest.size() + 1 +
                    serializer_.size() + 1 + extra);
        out += space;
        out += kind;
        out += table;
        out += ':';
        out += digest;
        out += ':';
        out += serializer_;
        out += ':';
        return out;
    }

    /// 16 lowercase hex digits, most significant first.
    static void write_hex(char (&digits)[16], std::uint64_t value) {
        static constexpr char hex[] = "0123456789abcdef";
        for (int i = 15; i >= 0; --i, value >>= 4)
            digits[i] = hex[value & 15];
    }

    static void append_key(std::string& out, const PrimaryKey& key) {
        if (const auto* i = std::get_if<std::int64_t>(&key)) {
            out += 'i';
            char digits[24];
            const auto end = std::to_chars(digits, digits + sizeof digits, *i).ptr;
            out.append(digits, static_cast<std::size_t>(end - digits));
        } else if (const auto* s = std::get_if<std::string>(&key)) {
            out += 's';
            out += *s;
        } else {
            out += 'n';
        }
    }

    /// 128 bits from two independent 64-bit FNV-1a variants; the entry also stores the full
    /// text, so a collision is a miss, never a wrong answer.
    static void append_hash_hex(std::string& out, std::string_view text) {
        char digits[16];
        write_hex(digits, fnv1a(0xcbf29ce484222325ULL, text));
        out.append(digits, sizeof digits);
        write_hex(digits,
                  fnv1a(0x84222325cbf29ce4ULL, text) ^ (text.size() * 0x9e3779b97f4a7c15ULL));
        out.append(digits, sizeof digits);
    }

    std::string prefix_;
    std::string serializer_;
};

}  // namespace ormcache::detail
