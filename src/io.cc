#include "leasehold/detail/io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <random>

namespace leasehold::detail {

std::string RandomHexId() {
  std::random_device rd;
  char buf[17];
  std::snprintf(buf, sizeof buf, "%08x%08x", rd(), rd());
  return buf;
}

Result<std::string> ReadSmallFile(const std::string& path, std::string_view what,
                                  size_t max_bytes) {
  const std::string where = std::string(what) + " \"" + path + "\"";
  // O_NONBLOCK: opening a FIFO must not wait for a writer; fstat then refuses it.
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK | O_NOCTTY);
  if (fd < 0) {
    const int e = errno;
    const std::string why = where + ": " + std::strerror(e);
    if (e == ENOENT || e == ENOTDIR) return NotFoundError(why);
    if (e == EACCES || e == EPERM) return PermissionDeniedError(why);
    return InvalidArgumentError(why);
  }
  struct Closer {
    int fd;
    ~Closer() { ::close(fd); }
  } closer{fd};
  struct stat st {};
  if (::fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    return InvalidArgumentError(where + " is not a regular file");
  }
  std::string text;
  char buf[8192];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      return UnavailableError(where + ": " + std::strerror(errno));
    }
    if (n == 0) break;
    if (text.size() + static_cast<size_t>(n) > max_bytes) {
      return InvalidArgumentError(where + " is larger than " + std::to_string(max_bytes) +
                                  " bytes");
    }
    text.append(buf, static_cast<size_t>(n));
  }
  return text;
}

}  // namespace leasehold::detail
