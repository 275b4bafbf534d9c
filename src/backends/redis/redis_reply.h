// leasehold::redis: RESP replies as values, and their reading.
//
// hiredis (0.14, Debian's libhiredis-dev) parses the protocol; the replies
// are copied into Reply values at once, so nothing of hiredis outlives a
// read. A server's reply is input like any other: a malformed stream, a
// nesting too deep, or a reply of the wrong shape is an error naming what was
// wrong, never a crash.
//
// Thread-safety: values and pure functions; a ReplyReader is used by one
// thread at a time.
#ifndef LEASEHOLD_SRC_BACKENDS_REDIS_REDIS_REPLY_H_
#define LEASEHOLD_SRC_BACKENDS_REDIS_REDIS_REPLY_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "leasehold/status.h"

struct redisReader;

namespace leasehold::redis {

struct Reply {
  enum class Type { kString, kStatus, kError, kInteger, kNil, kArray };
  Type type = Type::kNil;
  std::string str;  // kString, kStatus, kError
  int64_t integer = 0;
  std::vector<Reply> elements;  // kArray

  bool is_error() const { return type == Type::kError; }
  bool is_nil() const { return type == Type::kNil; }
  // The text of a string or status reply.
  std::optional<std::string> Text() const;
  // An integer reply, or a string reply that is a decimal int64.
  std::optional<int64_t> Int() const;
  // The first word of an error reply ("NOSCRIPT", "WRONGPASS", "ERR").
  std::string ErrorCode() const;
};

// A command's arguments, encoded as RESP (an array of bulk strings).
void AppendCommand(std::string& out, const std::vector<std::string>& args);

// Incremental reading of replies from a byte stream.
class ReplyReader {
 public:
  ReplyReader();
  ~ReplyReader();
  ReplyReader(const ReplyReader&) = delete;
  ReplyReader& operator=(const ReplyReader&) = delete;

  // Feeds bytes read from the server. Errors: kInternal only if the reader
  // could not take them (out of memory).
  Status Feed(std::string_view bytes);
  // The next complete reply, nullopt when more bytes are needed. Errors:
  // kDataLoss for a stream that is not RESP (the stream is then unusable).
  Result<std::optional<Reply>> Next();

 private:
  redisReader* reader_;
};

// Every complete reply in `bytes` (for tests and the fuzzer).
Result<std::vector<Reply>> ParseReplies(std::string_view bytes);

// A decimal int64, the whole of `s` (no sign other than a leading '-', no
// spaces, no overflow).
std::optional<int64_t> ParseInt64(std::string_view s);

// `literal` as a glob pattern (SCAN MATCH, KEYS) that matches exactly it:
// every '*', '?', '[', ']' and '\\' is escaped.
std::string GlobEscape(std::string_view literal);

}  // namespace leasehold::redis

#endif  // LEASEHOLD_SRC_BACKENDS_REDIS_REDIS_REPLY_H_
