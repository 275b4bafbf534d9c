#include "redis_scripts.h"

#include <openssl/sha.h>

#include <cstdio>

namespace leasehold::redis {
namespace {

// Shared by every script: an integer as leasehold writes it, and the
// server's time in ms (for operators; never read back for a decision).
constexpr const char* kPrelude = R"lua(
local function isint(s)
  return type(s) == 'string' and #s <= 20 and string.match(s, '^%-?%d+$') ~= nil
end
local function nowms()
  local t = redis.call('TIME')
  return t[1] .. string.sub(string.format('%06d', tonumber(t[2])), 1, 3)
end
)lua";

constexpr const char* kAcquire = R"lua(
local r = redis.call('HMGET', KEYS[1], 'holder', 'sequence', 'version', 'ttl_ms', 'store_id')
if r[3] and not isint(r[3]) then
  return redis.error_reply('LHDATA the record\'s version is not an integer')
end
local holder = r[1]
local ver = r[3] or '0'
if holder and holder ~= '' and holder ~= ARGV[1] and ver ~= ARGV[3] then
  if redis.call('HGET', KEYS[1], 'wanted') ~= ver then
    redis.call('HSET', KEYS[1], 'wanted', ver)
  end
  return {0, holder, r[2] or '', ver, r[4] or '', r[5] or ''}
end
local f = redis.call('HMGET', KEYS[2], 'last', 'store_id')
if f[1] and not (isint(f[1]) and string.sub(f[1], 1, 1) ~= '-') then
  return redis.error_reply('LHDATA the counter is not a non-negative integer')
end
local id = f[2]
if not f[1] then
  local base = '0'
  if isint(r[2]) and string.sub(r[2], 1, 1) ~= '-' and #r[2] < 19 then base = r[2] end
  id = id or r[5] or ARGV[4]
  redis.call('HSET', KEYS[2], 'last', base, 'store_id', id)
elseif not id then
  id = ARGV[4]
  redis.call('HSET', KEYS[2], 'store_id', id)
end
redis.call('HINCRBY', KEYS[2], 'last', 1)
local seq = redis.call('HGET', KEYS[2], 'last')
redis.call('HINCRBY', KEYS[1], 'version', 1)
local now = nowms()
redis.call('HSET', KEYS[1], 'holder', ARGV[1], 'sequence', seq, 'store_id', id,
           'ttl_ms', ARGV[2], 'acquired_ms', now, 'renewed_ms', now)
if holder ~= ARGV[1] then redis.call('PUBLISH', ARGV[5], ARGV[6]) end
return {1, seq, redis.call('HGET', KEYS[1], 'version'), id}
)lua";

constexpr const char* kRenew = R"lua(
local r = redis.call('HMGET', KEYS[1], 'holder', 'sequence', 'store_id', 'version', 'wanted')
if r[1] ~= ARGV[1] or r[2] ~= ARGV[2] or r[3] ~= ARGV[3] then
  return {0, redis.call('EXISTS', KEYS[1]), r[1] or '', r[2] or '', r[3] or ''}
end
if not isint(r[4]) then
  return redis.error_reply('LHDATA the record\'s version is not an integer')
end
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'ttl_ms', ARGV[4], 'renewed_ms', nowms())
local v = redis.call('HGET', KEYS[1], 'version')
local w = tonumber(r[5])
if w and isint(r[5]) and w >= tonumber(v) - 3 then redis.call('PUBLISH', ARGV[5], ARGV[6]) end
return {1, v}
)lua";

constexpr const char* kRelease = R"lua(
local r = redis.call('HMGET', KEYS[1], 'holder', 'sequence', 'store_id', 'version')
if r[1] ~= ARGV[1] or r[2] ~= ARGV[2] or r[3] ~= ARGV[3] then return 0 end
if r[4] and not isint(r[4]) then
  return redis.error_reply('LHDATA the record\'s version is not an integer')
end
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'holder', '')
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
)lua";

constexpr const char* kBreak = R"lua(
local r = redis.call('HMGET', KEYS[1], 'holder', 'version')
if not r[1] or r[1] == '' then return 0 end
if r[2] and not isint(r[2]) then
  return redis.error_reply('LHDATA the record\'s version is not an integer')
end
redis.call('HINCRBY', KEYS[1], 'version', 1)
redis.call('HSET', KEYS[1], 'holder', '')
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
)lua";

Script Make(const char* body) {
  Script s{std::string(kPrelude) + body, ""};
  unsigned char digest[SHA_DIGEST_LENGTH];
  SHA1(reinterpret_cast<const unsigned char*>(s.source.data()), s.source.size(), digest);
  char hex[2 * SHA_DIGEST_LENGTH + 1];
  for (int i = 0; i < SHA_DIGEST_LENGTH; ++i) std::snprintf(hex + 2 * i, 3, "%02x", digest[i]);
  s.sha1 = hex;
  return s;
}

}  // namespace

const Script& AcquireScript() {
  static const Script s = Make(kAcquire);
  return s;
}
const Script& RenewScript() {
  static const Script s = Make(kRenew);
  return s;
}
const Script& ReleaseScript() {
  static const Script s = Make(kRelease);
  return s;
}
const Script& BreakScript() {
  static const Script s = Make(kBreak);
  return s;
}

std::vector<std::string> ScriptCommand(const Script& script, bool by_source,
                                       const std::vector<std::string>& keys,
                                       const std::vector<std::string>& args) {
  std::vector<std::string> c;
  c.reserve(3 + keys.size() + args.size());
  c.push_back(by_source ? "EVAL" : "EVALSHA");
  c.push_back(by_source ? script.source : script.sha1);
  c.push_back(std::to_string(keys.size()));
  c.insert(c.end(), keys.begin(), keys.end());
  c.insert(c.end(), args.begin(), args.end());
  return c;
}

}  // namespace leasehold::redis
