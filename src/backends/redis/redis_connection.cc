#include "redis_connection.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <utility>

namespace leasehold::redis {
namespace {

std::string Errno(int e) { return std::strerror(e); }

std::string OpenSslError() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown TLS error" : out;
}

bool IsIpAddress(const std::string& host) {
  unsigned char buf[sizeof(in6_addr)];
  return inet_pton(AF_INET, host.c_str(), buf) == 1 || inet_pton(AF_INET6, host.c_str(), buf) == 1;
}

// OpenSSL writes to the socket with write(2): a peer that closed would
// raise SIGPIPE in the host program. While a TLS call runs, SIGPIPE is
// blocked on this thread, and one it raised is taken before unblocking (as
// libcurl does): the call then just fails with EPIPE.
class SigpipeGuard {
 public:
  SigpipeGuard() {
    sigset_t pipe;
    sigemptyset(&pipe);
    sigaddset(&pipe, SIGPIPE);
    sigset_t pending;
    sigpending(&pending);
    was_pending_ = sigismember(&pending, SIGPIPE) == 1;
    pthread_sigmask(SIG_BLOCK, &pipe, &old_);
  }
  ~SigpipeGuard() {
    if (!was_pending_) {
      sigset_t pending;
      sigpending(&pending);
      if (sigismember(&pending, SIGPIPE) == 1) {
        sigset_t pipe;
        sigemptyset(&pipe);
        sigaddset(&pipe, SIGPIPE);
        const timespec zero{0, 0};
        sigtimedwait(&pipe, nullptr, &zero);
      }
    }
    pthread_sigmask(SIG_SETMASK, &old_, nullptr);
  }
  SigpipeGuard(const SigpipeGuard&) = delete;
  SigpipeGuard& operator=(const SigpipeGuard&) = delete;

 private:
  sigset_t old_{};
  bool was_pending_ = false;
};

}  // namespace

std::string Endpoint::ToString() const {
  const bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

class TlsContext {
 public:
  explicit TlsContext(SSL_CTX* ctx, std::string server_name)
      : ctx_(ctx), server_name_(std::move(server_name)) {}
  ~TlsContext() { SSL_CTX_free(ctx_); }
  TlsContext(const TlsContext&) = delete;
  TlsContext& operator=(const TlsContext&) = delete;
  SSL_CTX* get() const { return ctx_; }
  const std::string& server_name() const { return server_name_; }

 private:
  SSL_CTX* const ctx_;
  const std::string server_name_;
};

Result<std::shared_ptr<TlsContext>> MakeTlsContext(const TlsSettings& s,
                                                   const std::string& describe) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) return InternalError(describe + ": cannot create a TLS context: " + OpenSslError());
  auto out = std::make_shared<TlsContext>(ctx, s.server_name);
  SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
  SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (!s.ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, s.ca_file.c_str(), nullptr) != 1) {
      return InvalidArgumentError(describe + ": cannot load the TLS CA file \"" + s.ca_file +
                                  "\": " + OpenSslError());
    }
  } else if (SSL_CTX_set_default_verify_paths(ctx) != 1) {
    return InternalError(describe +
                         ": cannot load the system's TLS trust store: " + OpenSslError());
  }
  if (s.cert_file.empty() != s.key_file.empty()) {
    return InvalidArgumentError(describe +
                                ": a TLS client certificate needs both a certificate and a key");
  }
  if (!s.cert_file.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, s.cert_file.c_str()) != 1) {
      return InvalidArgumentError(describe + ": cannot load the TLS client certificate \"" +
                                  s.cert_file + "\": " + OpenSslError());
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, s.key_file.c_str(), SSL_FILETYPE_PEM) != 1 ||
        SSL_CTX_check_private_key(ctx) != 1) {
      return InvalidArgumentError(describe + ": cannot load the TLS client key \"" + s.key_file +
                                  "\" (or it does not match the certificate): " + OpenSslError());
    }
  }
  return out;
}

struct Connection::Ssl {
  SSL* ssl = nullptr;
  ~Ssl() {
    if (ssl) SSL_free(ssl);
  }
};

Connection::Connection(const Clock& clock, std::string describe)
    : clock_(clock), describe_(std::move(describe)) {}

Connection::~Connection() { Close(); }

void Connection::Close() noexcept {
  ssl_.reset();  // no close_notify: the socket goes at once
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
  reader_.reset();
}

Status Connection::Broken(const std::string& what, const std::string& why) {
  Close();
  return UnavailableError(what + ": " + endpoint_.ToString() + ": " + why);
}

Result<bool> Connection::Wait(bool for_write, TimePoint deadline, int wake_fd,
                              const std::string& what, bool idle_ok) {
  for (;;) {
    const Duration left = deadline - clock_.Now();
    if (left <= Duration::zero()) {
      if (idle_ok) return false;
      Close();
      return DeadlineExceededError(what + ": " + endpoint_.ToString() +
                                   ": no answer by the deadline");
    }
    pollfd fds[2] = {{fd_, static_cast<short>(for_write ? POLLOUT : POLLIN), 0},
                     {wake_fd, POLLIN, 0}};
    const auto ms = std::chrono::ceil<std::chrono::milliseconds>(left).count();
    const int n =
        ::poll(fds, wake_fd >= 0 ? 2 : 1, static_cast<int>(std::min<int64_t>(ms, 60'000)));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Broken(what, "poll: " + Errno(errno));
    }
    if (n == 0) continue;
    if (wake_fd >= 0 && (fds[1].revents & POLLIN)) return false;
    if (fds[0].revents) return true;
  }
}

Status Connection::Open(const Endpoint& endpoint, const std::shared_ptr<TlsContext>& tls,
                        TimePoint deadline) {
  Close();
  endpoint_ = endpoint;
  const std::string what = describe_ + ": connect";
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV;
  addrinfo* found = nullptr;
  const std::string port = std::to_string(endpoint.port);
  if (int rc = getaddrinfo(endpoint.host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    return UnavailableError(what + ": " + endpoint.ToString() + ": " + gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, decltype(&freeaddrinfo)> addresses(found, freeaddrinfo);
  std::string last_error = "no address";
  for (addrinfo* a = found; a; a = a->ai_next) {
    fd_ = ::socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC, a->ai_protocol);
    if (fd_ < 0) {
      last_error = "socket: " + Errno(errno);
      continue;
    }
    const int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    if (::connect(fd_, a->ai_addr, a->ai_addrlen) == 0) break;
    if (errno != EINPROGRESS) {
      last_error = Errno(errno);
      Close();
      continue;
    }
    Result<bool> ready = Wait(/*for_write=*/true, deadline, -1, what);
    if (!ready.ok()) return ready.status();
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err == 0) break;
    last_error = Errno(err);
    Close();
  }
  if (fd_ < 0) return UnavailableError(what + ": " + endpoint.ToString() + ": " + last_error);
  if (tls) {
    ERR_clear_error();
    ssl_ = std::make_unique<Ssl>();
    ssl_->ssl = SSL_new(tls->get());
    if (!ssl_->ssl) return Broken(what, "TLS: " + OpenSslError());
    SSL_set_fd(ssl_->ssl, fd_);
    const std::string& name = tls->server_name().empty() ? endpoint.host : tls->server_name();
    if (IsIpAddress(name)) {
      X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_->ssl), name.c_str());
    } else {
      SSL_set_tlsext_host_name(ssl_->ssl, name.c_str());
      SSL_set1_host(ssl_->ssl, name.c_str());
    }
    for (;;) {
      int rc;
      int err;
      {
        SigpipeGuard guard;
        rc = SSL_connect(ssl_->ssl);
        err = rc == 1 ? SSL_ERROR_NONE : SSL_get_error(ssl_->ssl, rc);
      }
      if (rc == 1) break;
      if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) {
        Result<bool> ready = Wait(err == SSL_ERROR_WANT_WRITE, deadline, -1, what + " (TLS)");
        if (!ready.ok()) return ready.status();
        continue;
      }
      const long verify = SSL_get_verify_result(ssl_->ssl);
      if (verify != X509_V_OK) {
        return Broken(what, std::string("TLS: the server's certificate was not accepted: ") +
                                X509_verify_cert_error_string(verify));
      }
      return Broken(what, "TLS handshake failed: " + OpenSslError());
    }
  }
  reader_ = std::make_unique<ReplyReader>();
  return Status::Ok();
}

Connection::Io Connection::WriteSome(const char* data, size_t len, size_t& written) {
  written = 0;
  if (ssl_) {
    SigpipeGuard guard;
    ERR_clear_error();
    const int rc = SSL_write(ssl_->ssl, data, static_cast<int>(std::min<size_t>(len, 1 << 30)));
    if (rc > 0) {
      written = static_cast<size_t>(rc);
      return Io::kDone;
    }
    const int err = SSL_get_error(ssl_->ssl, rc);
    if (err == SSL_ERROR_WANT_READ) return Io::kWantRead;
    if (err == SSL_ERROR_WANT_WRITE) return Io::kWantWrite;
    return err == SSL_ERROR_ZERO_RETURN ? Io::kClosed : Io::kError;
  }
  const ssize_t n = ::send(fd_, data, len, MSG_NOSIGNAL);
  if (n >= 0) {
    written = static_cast<size_t>(n);
    return Io::kDone;
  }
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return Io::kWantWrite;
  return Io::kError;
}

Connection::Io Connection::ReadSome(char* data, size_t len, size_t& got) {
  got = 0;
  if (ssl_) {
    SigpipeGuard guard;
    ERR_clear_error();
    const int rc = SSL_read(ssl_->ssl, data, static_cast<int>(std::min<size_t>(len, 1 << 30)));
    if (rc > 0) {
      got = static_cast<size_t>(rc);
      return Io::kDone;
    }
    const int err = SSL_get_error(ssl_->ssl, rc);
    if (err == SSL_ERROR_WANT_READ) return Io::kWantRead;
    if (err == SSL_ERROR_WANT_WRITE) return Io::kWantWrite;
    return err == SSL_ERROR_ZERO_RETURN ? Io::kClosed : Io::kError;
  }
  const ssize_t n = ::recv(fd_, data, len, 0);
  if (n > 0) {
    got = static_cast<size_t>(n);
    return Io::kDone;
  }
  if (n == 0) return Io::kClosed;
  if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR) return Io::kWantRead;
  return Io::kError;
}

bool Connection::Idle() {
  for (int reads = 0; is_open() && reads < 4; ++reads) {
    pollfd p{fd_, POLLIN, 0};
    if (::poll(&p, 1, 0) <= 0) return true;
    char buf[512];
    size_t n = 0;
    const Io io = ReadSome(buf, sizeof buf, n);
    if (io == Io::kWantRead || io == Io::kWantWrite) continue;
    Close();  // closed, broken, or bytes nobody asked for
    return false;
  }
  return is_open();
}

Status Connection::Send(const std::vector<Command>& commands, TimePoint deadline,
                        const std::string& what) {
  if (!is_open()) return UnavailableError(what + ": not connected");
  std::string out;
  for (const Command& c : commands) AppendCommand(out, c);
  size_t off = 0;
  while (off < out.size()) {
    size_t n = 0;
    const Io io = WriteSome(out.data() + off, out.size() - off, n);
    if (io == Io::kDone) {
      off += n;
      continue;
    }
    if (io == Io::kClosed || io == Io::kError) {
      return Broken(what, "the connection broke while sending: " + Errno(errno));
    }
    Result<bool> ready = Wait(io == Io::kWantWrite, deadline, -1, what);
    if (!ready.ok()) return ready.status();
  }
  return Status::Ok();
}

Result<std::optional<Reply>> Connection::Read(TimePoint deadline, int wake_fd,
                                              const std::string& what, bool idle_ok) {
  if (!is_open()) return UnavailableError(what + ": not connected");
  char buf[16384];
  for (;;) {
    Result<std::optional<Reply>> next = reader_->Next();
    if (!next.ok()) {
      Close();
      return next.status().WithContext(what);
    }
    if (*next) return next;
    size_t n = 0;
    const Io io = ReadSome(buf, sizeof buf, n);
    if (io == Io::kDone) {
      if (Status s = reader_->Feed(std::string_view(buf, n)); !s.ok()) {
        Close();
        return s;
      }
      continue;
    }
    if (io == Io::kClosed) return Broken(what, "the server closed the connection");
    if (io == Io::kError) return Broken(what, "the connection broke: " + Errno(errno));
    Result<bool> ready = Wait(io == Io::kWantWrite, deadline, wake_fd, what, idle_ok);
    if (!ready.ok()) return ready.status();
    if (!*ready) return std::optional<Reply>();  // woken, or idle until the deadline
  }
}

Result<std::vector<Reply>> Connection::Run(const std::vector<Command>& commands, TimePoint deadline,
                                           const std::string& what) {
  if (Status s = Send(commands, deadline, what); !s.ok()) return s;
  std::vector<Reply> replies;
  replies.reserve(commands.size());
  while (replies.size() < commands.size()) {
    Result<std::optional<Reply>> r = Read(deadline, -1, what);
    if (!r.ok()) return r.status();
    replies.push_back(std::move(**r));
  }
  return replies;
}

}  // namespace leasehold::redis
