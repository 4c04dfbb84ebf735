// Fuzzes cached payloads: the three serializers' decoders (include/ormcache/serializer.hpp)
// with from_payload<R> (include/ormcache/detail/cache/payload.hpp) into models with every
// column type, and the whole read path of the cache core (CacheCore::decode in
// include/ormcache/detail/cache/cache_core.hpp) behind Repository::get_or_none, with the fuzzer's
// bytes as the entry a byte backend returns.
//
// Input: byte 0 picks the serializer (json, msgpack, cbor: (byte 0) % 4, 3 = json) and the
// mode ((byte 0) / 4 % 4); the rest is:
//  - mode 0: a payload, decoded into the result type picked by byte 1 (a model, an optional
//    one, a list, a (list, total) pair as list_and_count caches, a text-keyed model), after
//    byte 1;
//  - mode 1: the whole cache entry Repository<Row>::get_or_none(1) reads from the backend (an
//    optional<Row>: get and get_or_none share it, and a cached null is a cached absence);
//  - mode 2: a payload, which get_or_none(1) reads inside a valid envelope (right
//    stamp and check), so every input reaches the payload decoder;
//  - mode 3: as mode 0.
//
// Properties:
//  - decoding throws std::exception (SerializationError, nlohmann's errors) or returns; a
//    decoded value encodes and decodes again to the same value;
//  - Repository::get_or_none never throws for a corrupt entry: it returns the database's row,
//  counts
//    one error, deletes the entry and fills a good one; a stale entry is a miss without an
//    error; an entry that decodes is a hit returning exactly what it decodes to.

#include <cstddef>
#include <cstdint>
#include <exception>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <ormcache/detail/cache/envelope.hpp>
#include <ormcache/detail/cache/payload.hpp>
#include <ormcache/ormcache.hpp>

#include "fuzz_models.hpp"
#include "fuzz_support.hpp"

namespace {

using fuzz::Row;
using fuzz::Tag;
using ormcache::detail::from_payload;
using ormcache::detail::to_payload;

// ---- mode 0: the decoders ---------------------------------------------------------------

template <class R>
void round_trip(const ormcache::Serializer& serializer, std::string_view bytes) {
    std::optional<R> first;
    try {
        first = from_payload<R>(serializer.decode(bytes));
    } catch (const std::exception&) {
        return;  // what the cache core turns into a miss
    }
    // What decoded encodes (a JSON payload's strings are UTF-8, a binary one's need not be,
    // but then the serializer is binary too) and decodes to the same value.
    const std::string again = serializer.encode(to_payload(*first));
    const R second = from_payload<R>(serializer.decode(again));
    FUZZ_CHECK(fuzz::identity(*first) == fuzz::identity(second));
}

void decode_as(std::uint8_t type, const ormcache::Serializer& serializer, std::string_view bytes) {
    switch (type % 5) {
        case 0:
            return round_trip<Row>(serializer, bytes);
        case 1:
            return round_trip<std::optional<Row>>(serializer, bytes);
        case 2:
            return round_trip<std::vector<Row>>(serializer, bytes);
        case 3:
            return round_trip<std::pair<std::vector<Row>, std::int64_t>>(serializer, bytes);
        default:
            return round_trip<Tag>(serializer, bytes);
    }
}

// ---- modes 1 and 2: the cache core behind a repository ------------------------------------

constexpr std::int64_t stamp = 1764771234567;  // every counter's value

/// One entry slot per serializer: what the backend holds for the one key the target reads.
struct Slot {
    std::mutex mutex;
    std::string key;  // the entity key of row 1, learnt on the first read
    std::optional<std::string> value;
    int removed = 0;
};
std::vector<std::unique_ptr<Slot>>& slots = *new std::vector<std::unique_ptr<Slot>>;  // as envs

/// A byte backend holding one entry: counters are always `stamp`, a miss always gets the
/// lease, a fill always lands.
class SlotBackend {
  public:
    static constexpr bool stores_objects = false;
    explicit SlotBackend(Slot& slot) : slot_(slot) {}
    std::string_view name() const noexcept { return "fuzz-slot"; }

    ormcache::ReadResult read(const ormcache::ReadRequest& request) {
        std::lock_guard lock(slot_.mutex);
        ormcache::ReadResult out;
        out.counters.assign(request.counters.size(), stamp);
        if (request.key.empty())
            return out;
        if (slot_.key.empty())
            slot_.key = request.key;
        if (request.key == slot_.key && slot_.value) {
            out.value = ormcache::CacheValue{*slot_.value, nullptr};
        } else if (request.lease_ttl) {
            out.lease = "lease";
        }
        return out;
    }
    bool fill(const ormcache::FillRequest& request) {
        std::lock_guard lock(slot_.mutex);
        if (request.key == slot_.key)
            slot_.value = request.value.bytes;
        return true;
    }
    void invalidate(const ormcache::InvalidationBatch& batch) {
        std::lock_guard lock(slot_.mutex);
        for (const auto& key : batch.remove) {
            if (key == slot_.key) {
                slot_.value.reset();
                ++slot_.removed;
            }
        }
    }
    void clear() {
        std::lock_guard lock(slot_.mutex);
        slot_.value.reset();
    }

  private:
    Slot& slot_;
};

struct Env : fuzz::SampleDatabase {
    Slot* slot = nullptr;
    std::string check;  // the check text of row 1's entry
    std::string row;    // identity of the database's row 1
};
// Never destroyed: the databases and connections live until the process ends, and the leak
// check at exit must not see them freed halfway (a global's destructor runs before it).
std::vector<Env>& envs = *new std::vector<Env>;

void set_up() {
    const std::string dir = fuzz::scratch_directory("fuzz-payload");
    ormcache::register_backend("fuzz-slot", [](const ormcache::CacheConfig& config) {
        const auto index = config.arguments.at("slot").get<std::size_t>();
        return std::make_unique<ormcache::AnyBackend>(
            std::make_unique<SlotBackend>(*slots.at(index)));
    });
    for (std::size_t i = 0; i < fuzz::serializers().size(); ++i) {
        slots.push_back(std::make_unique<Slot>());
        Env env;
        env.slot = slots.back().get();
        env.open(dir + "/db-" + std::to_string(i) + ".sqlite",
                 ormcache::CacheConfig{.backend = "fuzz-slot",
                                       .arguments = {{"slot", i}},
                                       .serializer = fuzz::serializers()[i]});
        const auto row = env.rows->get_or_none(1);  // a miss, filled
        env.row = fuzz::identity(row);
        FUZZ_CHECK(env.row == fuzz::identity(std::optional<Row>(fuzz::sample_row())));
        FUZZ_CHECK(!env.slot->key.empty() && env.slot->value);
        env.check = fuzz::check_of(*env.slot->value);
        FUZZ_CHECK(fuzz::identity(env.rows->get_or_none(1)) == env.row);  // a hit
        FUZZ_CHECK(env.db->cache_manager().stats().hits == 1);
        envs.push_back(std::move(env));
    }
}

void read_through_cache(std::size_t which, std::string entry) {
    Env& env = envs[which];
    const auto& serializer = fuzz::serializers()[which];
    // What the entry is: a hit with this value, stale, or corrupt.
    enum class Kind { hit, stale, corrupt } kind = Kind::corrupt;
    std::string value;
    try {
        if (const auto payload = ormcache::detail::open_envelope(entry, stamp, env.check)) {
            value = fuzz::identity(from_payload<std::optional<Row>>(serializer.decode(*payload)));
            kind = Kind::hit;
        } else {
            kind = Kind::stale;
        }
    } catch (const std::exception&) {
        kind = Kind::corrupt;
    }

    {
        std::lock_guard lock(env.slot->mutex);
        env.slot->value = std::move(entry);
        env.slot->removed = 0;
    }
    const auto before = env.db->cache_manager().stats();
    const auto got = env.rows->get_or_none(1);  // never throws: the database answers
    const auto after = env.db->cache_manager().stats();

    std::lock_guard lock(env.slot->mutex);
    if (kind == Kind::hit) {
        FUZZ_CHECK(fuzz::identity(got) == value);
        FUZZ_CHECK(after.hits == before.hits + 1 && after.errors == before.errors);
        return;
    }
    FUZZ_CHECK(fuzz::identity(got) == env.row);
    FUZZ_CHECK(after.misses == before.misses + 1 && after.hits == before.hits);
    FUZZ_CHECK(after.errors == before.errors + (kind == Kind::corrupt ? 1 : 0));
    FUZZ_CHECK(env.slot->removed >= 1);  // corrupt or stale: deleted before the fill
    // Filled again with the row from the database.
    FUZZ_CHECK(env.slot->value);
    const auto payload = ormcache::detail::open_envelope(*env.slot->value, stamp, env.check);
    FUZZ_CHECK(payload && fuzz::identity(from_payload<std::optional<Row>>(
                              serializer.decode(*payload))) == env.row);
}

// ---- seeds --------------------------------------------------------------------------------

void write_seeds(const std::string& dir) {
    Row other = fuzz::sample_row();
    other.id = 2;
    other.text = "";
    other.o_text.reset();
    other.o_blob = std::vector<std::uint8_t>{'\0'};
    other.o_f64 = 0.5;
    const std::vector<Row> list{fuzz::sample_row(), other};
    for (std::size_t s = 0; s < fuzz::serializers().size(); ++s) {
        const auto& serializer = fuzz::serializers()[s];
        const auto seed = [&](std::uint8_t mode, const std::string& name, std::string body,
                              std::optional<std::uint8_t> type = std::nullopt) {
            std::string input(1, static_cast<char>(s + 4 * mode));
            if (type)
                input += static_cast<char>(*type);
            fuzz::write_seed(dir, serializer.name + "-" + name, input + body);
        };
        const auto encode = [&](const auto& v) { return serializer.encode(to_payload(v)); };
        seed(0, "row", encode(fuzz::sample_row()), 0);
        seed(0, "optional-none", encode(std::optional<Row>()), 1);
        seed(0, "list", encode(list), 2);
        seed(0, "list-and-count", encode(std::pair{list, std::int64_t{17}}), 3);
        seed(0, "tag", encode(Tag{"c++", "C++", 3}), 4);
        const std::string payload = encode(fuzz::sample_row());
        seed(1, "entry", ormcache::detail::seal_envelope(stamp, envs[s].check, payload));
        seed(1, "entry-stale", ormcache::detail::seal_envelope(stamp - 1, envs[s].check, payload));
        seed(2, "payload", payload);
        seed(2, "payload-other-row", encode(other));
    }
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
    set_up();
    fuzz::write_seeds_if_asked(write_seeds);
    return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2)
        return 0;
    const std::size_t which = data[0] % 4 % 3;
    const auto& serializer = fuzz::serializers()[which];
    const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
    switch (data[0] / 4 % 4) {
        case 1:
            read_through_cache(which, std::string(rest));
            break;
        case 2:
            read_through_cache(which,
                               ormcache::detail::seal_envelope(stamp, envs[which].check, rest));
            break;
        default:
            decode_as(data[1], serializer, rest.substr(1));
            break;
    }
    return 0;
}
