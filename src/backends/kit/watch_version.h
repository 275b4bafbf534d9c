// leasehold::kit: a record's version as a store with notified watches hands
// it to the engine -- stamped with NotifiedWatches::Heard() at the read,
// which Watch() needs back ("<version>@<heard>").
//
// Header-only and free of the rest of the kit, so that parsers compiled on
// their own (the fuzzers) can use it.
//
// Thread-safety: pure functions.
#ifndef LEASEHOLD_SRC_BACKENDS_KIT_WATCH_VERSION_H_
#define LEASEHOLD_SRC_BACKENDS_KIT_WATCH_VERSION_H_

#include <charconv>
#include <cstdint>
#include <string>
#include <utility>

namespace leasehold::kit {

inline std::string StampVersion(const std::string& version, uint64_t heard) {
  return version + "@" + std::to_string(heard);
}

// Both parts; heard 0 when `stamped` carries none (then every later
// notification counts as news).
inline std::pair<std::string, uint64_t> UnstampVersion(const std::string& stamped) {
  const size_t at = stamped.rfind('@');
  if (at == std::string::npos) return {stamped, 0};
  uint64_t heard = 0;
  const char* end = stamped.data() + stamped.size();
  auto [p, ec] = std::from_chars(stamped.data() + at + 1, end, heard);
  if (ec != std::errc() || p != end) return {stamped, 0};
  return {stamped.substr(0, at), heard};
}

}  // namespace leasehold::kit

#endif  // LEASEHOLD_SRC_BACKENDS_KIT_WATCH_VERSION_H_
