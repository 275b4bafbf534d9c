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

}  // namespace leasehold::detail

#endif  // LEASEHOLD_DETAIL_IO_H_
