// leasehold: small helpers the backends and the CLI share. Not part of the
// stable API (namespace detail): they may change without notice.
//
// Thread-safety: every function is safe from any thread.
#ifndef LEASEHOLD_DETAIL_IO_H_
#define LEASEHOLD_DETAIL_IO_H_

#include <cstddef>
#include <string>
#include <string_view>

#include "leasehold/status.h"

namespace leasehold::detail {

// 64 bits from std::random_device as 16 lowercase hex digits: ids that must
// differ between processes and restarts (store instances, incarnations).
std::string RandomHexId();

// The whole content of a small regular file: credentials, certificates, keys,
// tokens, passwords. Refuses anything but a regular file (a FIFO or a device
// would block or never end) and anything larger than `max_bytes`. Errors name
// `what` and the path: kNotFound (missing), kPermissionDenied (unreadable),
// kInvalidArgument (not a regular file, or too large), kUnavailable (an I/O
// error while reading).
inline constexpr size_t kMaxSmallFileBytes = size_t{1} << 20;
Result<std::string> ReadSmallFile(const std::string& path, std::string_view what,
                                  size_t max_bytes = kMaxSmallFileBytes);

// Names and addresses, checked the same way by the backends and the CLI.
//
// "host:port" or "[v6]:port", the host made of letters, digits, '-', '.' and
// '_', the port in 1..65535. OK, or kInvalidArgument saying what is wrong
// with `endpoint` (callers prefix where it came from).
Status CheckEndpoint(std::string_view endpoint);
// A DNS-1123 label (a Kubernetes namespace): 1-63 of [a-z0-9-], starting and
// ending with a letter or digit.
bool IsDnsLabel(std::string_view s);
// A DNS-1123 subdomain (a Kubernetes object name): DNS labels joined by '.',
// at most 253 characters.
bool IsDnsSubdomain(std::string_view s);

}  // namespace leasehold::detail

#endif  // LEASEHOLD_DETAIL_IO_H_
