#include "etcd_errors.h"

#include <cstdio>

namespace leasehold::etcd {

std::string Quote(std::string_view s) {
  std::string out = "\"";
  for (unsigned char c : s) {
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      out += static_cast<char>(c);
    } else {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02x", c);
      out += buf;
    }
  }
  return out + "\"";
}

StatusCode CodeFor(grpc::StatusCode code) {
  switch (code) {
    case grpc::StatusCode::UNAVAILABLE:
    case grpc::StatusCode::CANCELLED:
    case grpc::StatusCode::UNKNOWN:
      return StatusCode::kUnavailable;
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return StatusCode::kDeadlineExceeded;
    case grpc::StatusCode::UNAUTHENTICATED:
      return StatusCode::kUnauthenticated;
    case grpc::StatusCode::PERMISSION_DENIED:
      return StatusCode::kPermissionDenied;
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::OUT_OF_RANGE:
      return StatusCode::kInvalidArgument;
    case grpc::StatusCode::NOT_FOUND:
      return StatusCode::kNotFound;
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return StatusCode::kResourceExhausted;
    case grpc::StatusCode::FAILED_PRECONDITION:
      return StatusCode::kFailedPrecondition;
    case grpc::StatusCode::ABORTED:
      return StatusCode::kAborted;
    case grpc::StatusCode::UNIMPLEMENTED:
      return StatusCode::kUnimplemented;
    default:
      return StatusCode::kInternal;
  }
}

bool Failover(grpc::StatusCode code) {
  return code == grpc::StatusCode::UNAVAILABLE || code == grpc::StatusCode::DEADLINE_EXCEEDED;
}

// The token expired or was revoked, or the server's auth store changed since
// it was issued (etcd says "revision of auth store is old" as
// INVALID_ARGUMENT; a JWT carries the revision, so any user or role change
// invalidates every token).
bool NeedsNewToken(const grpc::Status& s) {
  if (s.error_code() == grpc::StatusCode::UNAUTHENTICATED) return true;
  return s.error_code() == grpc::StatusCode::INVALID_ARGUMENT &&
         s.error_message().find("revision") != std::string::npos &&
         s.error_message().find("auth") != std::string::npos;
}

Status FromGrpc(const grpc::Status& s, const std::string& describe, const std::string& what,
                const std::string& address) {
  return Status(CodeFor(s.error_code()),
                describe + ": " + what + ": " + s.error_message() + " (gRPC code " +
                    std::to_string(static_cast<int>(s.error_code())) + " from " + address + ")");
}

Status Malformed(const std::string& describe, const std::string& what) {
  return DataLossError(describe + ": " + what + ": malformed reply from etcd");
}

}  // namespace leasehold::etcd
