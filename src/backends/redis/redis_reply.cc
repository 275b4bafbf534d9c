#include "redis_reply.h"

#include <hiredis/hiredis.h>

#include <charconv>
#include <memory>
#include <new>
#include <utility>

namespace leasehold::redis {
namespace {

// hiredis builds replies through these functions: straight into Reply
// values, with a bound on the elements an array may claim (a hostile
// "*2000000000" header would otherwise allocate its element vector before
// a single element arrived). Returning nullptr makes the reader fail ("Out
// of memory"); the reader frees only the root of a reply (freeObject).
constexpr int kMaxElements = 1 << 20;

void* Place(const redisReadTask* task, Reply value) {
  if (task->parent) {
    auto* parent = static_cast<Reply*>(task->parent->obj);
    if (task->idx < 0 || static_cast<size_t>(task->idx) >= parent->elements.size()) return nullptr;
    Reply& slot = parent->elements[static_cast<size_t>(task->idx)];
    slot = std::move(value);
    return &slot;
  }
  return new (std::nothrow) Reply(std::move(value));
}

void* CreateString(const redisReadTask* task, char* str, size_t len) {
  Reply r;
  r.type = task->type == REDIS_REPLY_ERROR    ? Reply::Type::kError
           : task->type == REDIS_REPLY_STATUS ? Reply::Type::kStatus
                                              : Reply::Type::kString;
  r.str.assign(str, len);
  return Place(task, std::move(r));
}

void* CreateArray(const redisReadTask* task, int elements) {
  if (elements < 0 || elements > kMaxElements) return nullptr;
  Reply r;
  r.type = Reply::Type::kArray;
  r.elements.resize(static_cast<size_t>(elements));
  return Place(task, std::move(r));
}

void* CreateInteger(const redisReadTask* task, long long value) {
  Reply r;
  r.type = Reply::Type::kInteger;
  r.integer = value;
  return Place(task, std::move(r));
}

void* CreateNil(const redisReadTask* task) { return Place(task, Reply{}); }

void FreeObject(void* object) { delete static_cast<Reply*>(object); }

redisReplyObjectFunctions kFunctions = {CreateString, CreateArray, CreateInteger, CreateNil,
                                        FreeObject};

}  // namespace

std::optional<std::string> Reply::Text() const {
  if (type == Type::kString || type == Type::kStatus) return str;
  return std::nullopt;
}

std::optional<int64_t> Reply::Int() const {
  if (type == Type::kInteger) return integer;
  if (type == Type::kString) return ParseInt64(str);
  return std::nullopt;
}

std::string Reply::ErrorCode() const {
  if (type != Type::kError) return "";
  return str.substr(0, str.find(' '));
}

std::optional<int64_t> ParseInt64(std::string_view s) {
  if (s.empty() || s.size() > 20) return std::nullopt;
  int64_t v = 0;
  const char* end = s.data() + s.size();
  auto [p, ec] = std::from_chars(s.data(), end, v);
  if (ec != std::errc() || p != end) return std::nullopt;
  return v;
}

std::string GlobEscape(std::string_view literal) {
  std::string out;
  out.reserve(literal.size());
  for (char c : literal) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

void AppendCommand(std::string& out, const std::vector<std::string>& args) {
  out += '*';
  out += std::to_string(args.size());
  out += "\r\n";
  for (const std::string& a : args) {
    out += '$';
    out += std::to_string(a.size());
    out += "\r\n";
    out += a;
    out += "\r\n";
  }
}

ReplyReader::ReplyReader() : reader_(redisReaderCreateWithFunctions(&kFunctions)) {}

ReplyReader::~ReplyReader() {
  if (reader_) redisReaderFree(reader_);
}

Status ReplyReader::Feed(std::string_view bytes) {
  if (!reader_) return InternalError("redis: cannot allocate a reply reader");
  if (bytes.empty()) return Status::Ok();
  if (redisReaderFeed(reader_, bytes.data(), bytes.size()) != REDIS_OK) {
    return InternalError("redis: the reply reader cannot take more bytes");
  }
  return Status::Ok();
}

Result<std::optional<Reply>> ReplyReader::Next() {
  if (!reader_) return InternalError("redis: cannot allocate a reply reader");
  void* raw = nullptr;
  if (redisReaderGetReply(reader_, &raw) != REDIS_OK) {
    return DataLossError(std::string("redis: the server's reply is not RESP: ") + reader_->errstr);
  }
  if (!raw) return std::optional<Reply>();
  std::unique_ptr<Reply> reply(static_cast<Reply*>(raw));
  return std::optional<Reply>(std::move(*reply));
}

Result<std::vector<Reply>> ParseReplies(std::string_view bytes) {
  ReplyReader reader;
  if (Status s = reader.Feed(bytes); !s.ok()) return s;
  std::vector<Reply> out;
  for (;;) {
    Result<std::optional<Reply>> next = reader.Next();
    if (!next.ok()) return next.status();
    if (!*next) return out;
    out.push_back(std::move(**next));
  }
}

}  // namespace leasehold::redis
