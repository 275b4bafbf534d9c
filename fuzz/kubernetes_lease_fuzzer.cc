// Fuzzes the Lease object decoder (and the Status and MicroTime decoders it
// leans on) with arbitrary bytes: records and replies come from anyone who can
// write to the API server. Never crash; whatever is accepted must hold the
// invariants the store relies on.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "lease_codec.h"

namespace {

void Require(bool ok) {
  if (!ok) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  using namespace leasehold::kubernetes::detail;
  auto lease = DecodeLease(text);
  if (lease.ok()) {
    Require(!lease->name.empty() && !lease->uid.empty() && !lease->resource_version.empty());
    Require(lease->object.is_object());
    // What we write back must serialise.
    (void)lease->object.dump();
    if (lease->renew_time) {
      auto again = ParseMicroTime(FormatMicroTime(*lease->renew_time));
      Require(again.has_value());
    }
  } else {
    Require(!lease.status().message().empty());
  }
  auto status = DecodeStatus(text);
  Require(status.message.size() <= 1024 && status.causes.size() <= 1024);
  if (auto t = ParseMicroTime(text)) {
    const std::string formatted = FormatMicroTime(*t);
    Require(formatted.size() >= 27 && formatted.back() == 'Z');
  }
  (void)IsDnsSubdomain(text);
  return 0;
}
