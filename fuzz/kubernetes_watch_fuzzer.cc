// Fuzzes the watch-event line parser: a watch stream is whatever the server
// (or a proxy in between) sends. Never crash; an accepted event has a type.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "lease_codec.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto event = leasehold::kubernetes::detail::ParseWatchLine(text);
  if (event.ok()) {
    if (event->type.empty()) __builtin_trap();
    if (event->error_code < 0 || event->error_code >= 1000) __builtin_trap();
  }
  return 0;
}
