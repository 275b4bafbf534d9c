#include "leasehold/detail/io.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <string>

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

namespace {

bool IsHostChar(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '-' || c == '.' || c == '_';
}

}  // namespace

Status CheckEndpoint(std::string_view ep) {
  std::string_view host;
  std::string_view port;
  if (!ep.empty() && ep.front() == '[') {
    const size_t close = ep.find(']');
    if (close == std::string_view::npos) {
      return InvalidArgumentError("unclosed '[' in \"" + std::string(ep) + "\"");
    }
    host = ep.substr(1, close - 1);
    if (close + 1 >= ep.size() || ep[close + 1] != ':') {
      return InvalidArgumentError("\"" + std::string(ep) + "\" needs a port after the address");
    }
    port = ep.substr(close + 2);
    if (host.empty() ||
        host.find_first_not_of("0123456789abcdefABCDEF:.") != std::string_view::npos) {
      return InvalidArgumentError("\"" + std::string(host) + "\" is not an IPv6 address");
    }
  } else {
    const size_t colon = ep.rfind(':');
    if (colon == std::string_view::npos) {
      return InvalidArgumentError("endpoint \"" + std::string(ep) + "\" needs a port (HOST:PORT)");
    }
    host = ep.substr(0, colon);
    port = ep.substr(colon + 1);
    if (host.empty() || !std::all_of(host.begin(), host.end(), IsHostChar)) {
      return InvalidArgumentError("\"" + std::string(host) + "\" is not a host name or address");
    }
  }
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string_view::npos) {
    return InvalidArgumentError("port \"" + std::string(port) + "\" is not a number");
  }
  const int p = std::atoi(std::string(port).c_str());
  if (p < 1 || p > 65535) {
    return InvalidArgumentError("port " + std::string(port) + " is out of range 1-65535");
  }
  return Status::Ok();
}

bool IsDnsLabel(std::string_view s) {
  return !s.empty() && s.size() <= 63 && s.find('.') == std::string_view::npos && IsDnsSubdomain(s);
}

bool IsDnsSubdomain(std::string_view name) {
  if (name.empty() || name.size() > 253) return false;
  size_t label_start = 0;
  for (size_t i = 0; i <= name.size(); ++i) {
    if (i == name.size() || name[i] == '.') {
      if (i == label_start) return false;
      if (name[label_start] == '-' || name[i - 1] == '-') return false;
      label_start = i + 1;
      continue;
    }
    const char c = name[i];
    if (!((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-')) return false;
  }
  return true;
}

}  // namespace leasehold::detail
