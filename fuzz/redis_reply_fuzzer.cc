// Fuzzes what the Redis store parses: the server's replies (RESP, through
// hiredis' reader with the store's own reply builders), fed in chunks as a
// socket would deliver them, and store URLs. None may crash or allocate
// without bound; a password in a URL never reaches an error message.
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "leasehold/backends/redis.h"
#include "redis_reply.h"

namespace {

using namespace leasehold;

void Require(bool ok) {
  if (!ok) __builtin_trap();
}

size_t Depth(const redis::Reply& r) {
  size_t d = 0;
  for (const redis::Reply& e : r.elements) d = std::max(d, Depth(e));
  return d + 1;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) return 0;
  const size_t chunk = 1 + data[0] % 64;
  const std::string_view in(reinterpret_cast<const char*>(data) + 1, size - 1);

  // Replies, in chunks: the same replies as all at once.
  redis::ReplyReader reader;
  size_t replies = 0;
  bool failed = false;
  for (size_t off = 0; off < in.size() && !failed; off += chunk) {
    Require(reader.Feed(in.substr(off, chunk)).ok());
    for (;;) {
      auto next = reader.Next();
      if (!next.ok()) {
        failed = true;
        break;
      }
      if (!*next) break;
      Require(Depth(**next) <= 16);
      (void)(*next)->Text();
      (void)(*next)->Int();
      (void)(*next)->ErrorCode();
      ++replies;
    }
  }
  auto whole = redis::ParseReplies(in);
  if (!failed) {
    Require(whole.ok());
    Require(whole->size() == replies);
  }

  // The input as a store URL, with a password that must never be shown.
  const std::string url = "redis://user:Pw0rdZZ@" + std::string(in);
  auto parsed = ParseRedisUrl(url);
  if (!parsed.ok()) {
    // (Unless the rest of the URL holds the same text: an echoed host or path
    // is not the password.)
    Require(in.find("Pw0rdZZ") != std::string_view::npos ||
            std::string(parsed.status().message()).find("Pw0rdZZ") == std::string::npos);
  } else {
    Require(!parsed->endpoints.empty());
    for (const auto& e : parsed->endpoints) Require(e.port >= 1 && e.port <= 65535);
  }
  auto raw = ParseRedisUrl(std::string(in));
  (void)raw;
  return 0;
}
