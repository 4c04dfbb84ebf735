#pragma once
// The redis backend's Lua scripts: read, fill and invalidate each run as one script, so each
// is one atomic step and one round trip (backend.hpp: a fill checks the lease and the guard
// counters in the same step as it writes). They are sent by SHA1 (EVALSHA); RedisScriptShas
// remembers the SHA1s the server gave.

#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace ormcache::detail {

// Every script reads through get() (and the read script through counter()): a key of another
// type (WRONGTYPE) or a counter that is not a number is corrupt; it is replaced, never left to
// fail every call (and every replay of an invalidation) from then on.
inline constexpr std::string_view redis_lua_get = R"lua(
local function get(k)
  local v = redis.pcall('GET', k)
  if type(v) == 'table' then redis.call('DEL', k) return false end
  return v
end
)lua";

// Each script is one object for the program's life: RedisScriptShas knows it by its address.

// KEYS[1] entry (ARGV[4] = "0": none), KEYS[2..] counters.
// ARGV: lease ttl ms (0 = none), lease token, counter start, has-entry flag, stamp prefix.
// Returns {entry, lease taken, locked elsewhere (0/1), counters...}. An entry that does not
// carry the current counters[0] stamp (when a stamp prefix is given) is stale: it is not
// returned, and a lease asked for is taken over it.
inline const std::string redis_read_script =
    std::string(redis_lua_get) + R"lua(local function counter(k, start)
  local v = get(k)
  if not v or not string.match(v, '^%-?%d+$') then redis.call('SET', k, start) return start end
  return v
end
local n = #KEYS
local ttl, token, start, has_entry, stamp = tonumber(ARGV[1]), ARGV[2], ARGV[3], ARGV[4], ARGV[5]
local out = {false, false, 0}
for i = 2, n do
  out[i + 2] = counter(KEYS[i], start)
end
if has_entry == '1' then
  local e = get(KEYS[1])
  local stale = false
  if e then
    if string.sub(e, 1, 7) == '\0lease:' then
      out[3] = 1
    elseif stamp ~= '' and n >= 2 and string.sub(e, 1, #stamp + #out[4] + 1) ~= stamp .. out[4] .. ' ' then
      stale = true
    else
      out[1] = e
    end
  end
  if ttl > 0 then
    if stale then
      redis.call('SET', KEYS[1], '\0lease:' .. token, 'PX', ttl)
      out[2] = token
    elseif not e and redis.call('SET', KEYS[1], '\0lease:' .. token, 'PX', ttl, 'NX') then
      out[2] = token
    end
  end
end
return out
)lua";

// KEYS[1] entry, KEYS[2..] guard counters.
// ARGV: lease token ('' = none), value, ttl ms (< 0 = none), expected counter values.
inline const std::string redis_fill_script =
    std::string(redis_lua_get) + R"lua(local lease, value, ttl = ARGV[1], ARGV[2], tonumber(ARGV[3])
if lease ~= '' and get(KEYS[1]) ~= '\0lease:' .. lease then return 0 end
for i = 2, #KEYS do
  if get(KEYS[i]) ~= ARGV[i + 2] then
    if lease ~= '' then redis.call('DEL', KEYS[1]) end
    return 0
  end
end
if ttl < 0 then
  redis.call('SET', KEYS[1], value)
elseif ttl == 0 then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], value, 'PX', ttl)
end
return 1
)lua";

// KEYS: entries to delete, then counters to bump. ARGV: number of entries, counter start.
inline const std::string redis_invalidate_script =
    std::string(redis_lua_get) + R"lua(local removes, start = tonumber(ARGV[1]), ARGV[2]
for i = 1, #KEYS do
  if i <= removes then
    redis.call('DEL', KEYS[i])
  else
    local v = get(KEYS[i])
    if not v or not string.match(v, '^%-?%d+$') then redis.call('SET', KEYS[i], start) end
    redis.call('INCR', KEYS[i])
  end
end
return 1
)lua";

/// The SHA1 of each script loaded on the server. Thread-safe.
class RedisScriptShas {
  public:
    std::optional<std::string> find(std::string_view script) const {
        std::lock_guard lock(mutex_);
        for (const auto& [text, sha] : shas_) {
            if (text == script.data())
                return sha;
        }
        return std::nullopt;
    }

    void remember(std::string_view script, std::string sha) {
        std::lock_guard lock(mutex_);
        shas_.emplace_back(script.data(), std::move(sha));
    }

    /// The server forgot its scripts (restart, SCRIPT FLUSH).
    void forget() {
        std::lock_guard lock(mutex_);
        shas_.clear();
    }

  private:
    mutable std::mutex mutex_;  // guards shas_
    // By the script's address: every script is one of the constants above.
    std::vector<std::pair<const char*, std::string>> shas_;
};

}  // namespace ormcache::detail
