// leasehold: errors.
//
// A Status says whether an operation could find out what it was asked. It is
// never used for contention: "someone else holds the lease" is a normal value
// (false / std::nullopt), not an error. A non-OK Status means "we could not find
// out" -- the store was unreachable, timed out, refused our credentials or
// answered something we cannot trust -- and carries a message an operator can act
// on (the lease name, the store, the store's own words).
//
// Each code comes with a rule for the caller, following the canonical codes:
//   kUnavailable, kDeadlineExceeded, kResourceExhausted
//                          transient: retrying the same call may succeed.
//   kAborted               a compare-and-swap was lost; re-read and retry higher up
//                          (the engine does this itself within the acquire budget).
//   kUnauthenticated, kPermissionDenied
//                          fix the credentials or the RBAC rules first.
//   kInvalidArgument       fix the input (options, URL, lease name) first.
//   kFailedPrecondition    the system is not in a state that allows the call.
//   kCancelled             the caller's stop token was triggered.
//   kDataLoss, kInternal   the store answered something inconsistent; report it.
//   kUnimplemented         the store does not offer this (e.g. fencing tokens).
//
// Thread-safety: Status and Result are values; distinct objects may be used from
// any thread, one object is not synchronised.
#ifndef LEASEHOLD_STATUS_H_
#define LEASEHOLD_STATUS_H_

#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

namespace leasehold {

enum class StatusCode {
  kOk = 0,
  kCancelled,
  kInvalidArgument,
  kDeadlineExceeded,
  kNotFound,
  kPermissionDenied,
  kResourceExhausted,
  kFailedPrecondition,
  kAborted,
  kUnimplemented,
  kInternal,
  kUnavailable,
  kDataLoss,
  kUnauthenticated,
};

// "UNAVAILABLE", "DEADLINE_EXCEEDED", ...
std::string_view StatusCodeName(StatusCode code) noexcept;

// True for the codes where repeating the same call may succeed without anyone
// fixing anything: kUnavailable, kDeadlineExceeded, kResourceExhausted, kAborted.
bool IsTransient(StatusCode code) noexcept;

class [[nodiscard]] Status {
 public:
  // OK.
  Status() noexcept = default;
  // REQUIRES: code != kOk, or message is empty.
  Status(StatusCode code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status Ok() noexcept { return Status(); }

  bool ok() const noexcept { return code_ == StatusCode::kOk; }
  StatusCode code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }

  // "UNAVAILABLE: memory store: injected fault" or "OK".
  std::string ToString() const;

  // Returns a copy whose message is "context: message". OK stays OK.
  Status WithContext(std::string_view context) const;

  friend bool operator==(const Status& a, const Status& b) noexcept {
    return a.code_ == b.code_ && a.message_ == b.message_;
  }

 private:
  StatusCode code_ = StatusCode::kOk;
  std::string message_;
};

// Shorthands. Each returns a Status with that code and the given message.
Status CancelledError(std::string message);
Status InvalidArgumentError(std::string message);
Status DeadlineExceededError(std::string message);
Status NotFoundError(std::string message);
Status PermissionDeniedError(std::string message);
Status ResourceExhaustedError(std::string message);
Status FailedPreconditionError(std::string message);
Status AbortedError(std::string message);
Status UnimplementedError(std::string message);
Status InternalError(std::string message);
Status UnavailableError(std::string message);
Status DataLossError(std::string message);
Status UnauthenticatedError(std::string message);

// Thrown by Result<T>::value() on an error Result. Reaching it is a programming
// error (the caller did not check ok()); it is an exception rather than an abort
// so that a service can contain it.
class BadResultAccess : public std::logic_error {
 public:
  explicit BadResultAccess(const Status& status)
      : std::logic_error("leasehold::Result::value() on error: " + status.ToString()) {}
};

// Either a T or a non-OK Status.
template <typename T>
class [[nodiscard]] Result {
  static_assert(!std::is_same_v<T, Status>, "Result<Status> is meaningless");

 public:
  // REQUIRES: !status.ok(). An OK status without a value becomes kInternal.
  Result(Status status) : status_(std::move(status)) {  // NOLINT: implicit
    if (status_.ok()) status_ = InternalError("Result constructed from OK Status");
  }
  Result(T value) : value_(std::move(value)) {}  // NOLINT: implicit

  bool ok() const noexcept { return value_.has_value(); }
  const Status& status() const noexcept { return status_; }

  // Throws BadResultAccess when !ok().
  T& value() & {
    Check();
    return *value_;
  }
  const T& value() const& {
    Check();
    return *value_;
  }
  T&& value() && {
    Check();
    return std::move(*value_);
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

 private:
  void Check() const {
    if (!value_) throw BadResultAccess(status_);
  }
  Status status_;
  std::optional<T> value_;
};

}  // namespace leasehold

#endif  // LEASEHOLD_STATUS_H_
