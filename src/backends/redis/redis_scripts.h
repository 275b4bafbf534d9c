// leasehold::redis: the store's Lua scripts, and how they are sent.
//
// Each write of the store is one script, atomic in the server. Keys: the
// record (KEYS[1]) and, for acquire, the counter (KEYS[2]); both carry the
// lease's name as their hash tag. Every value the scripts read is checked
// before the first write (a script that fails after a write would leave a
// half-done change: Redis does not roll scripts back), and a value that is
// not what leasehold writes is an error reply starting "LHDATA".
//
//   acquire  ARGV: holder, ttl_ms, expected version ("" for none), a fresh
//            random store id (used only when the counter has none), channel,
//            name.
//            -> {1, sequence, version, store_id}             granted
//            -> {0, holder, sequence, version, ttl_ms, store_id}  held by
//               another (and the record's `wanted` set to its version)
//   renew    ARGV: holder, sequence, store_id, ttl_ms, channel, name
//            -> {1, version}  renewed
//            -> {0, exists (0/1), holder, sequence, store_id}  not ours
//   release  ARGV: holder, sequence, store_id, channel, name -> 1 | 0
//   break    ARGV: channel, name -> 1 (freed) | 0 (was free or missing)
//
// Thread-safety: constants and pure functions.
#ifndef LEASEHOLD_SRC_BACKENDS_REDIS_REDIS_SCRIPTS_H_
#define LEASEHOLD_SRC_BACKENDS_REDIS_REDIS_SCRIPTS_H_

#include <string>
#include <vector>

namespace leasehold::redis {

struct Script {
  std::string source;
  std::string sha1;  // lowercase hex, as EVALSHA takes it
};

const Script& AcquireScript();
const Script& RenewScript();
const Script& ReleaseScript();
const Script& BreakScript();

// EVALSHA (or EVAL with the source, `by_source`) of `script` on `keys`.
std::vector<std::string> ScriptCommand(const Script& script, bool by_source,
                                       const std::vector<std::string>& keys,
                                       const std::vector<std::string>& args);

}  // namespace leasehold::redis

#endif  // LEASEHOLD_SRC_BACKENDS_REDIS_REDIS_SCRIPTS_H_
