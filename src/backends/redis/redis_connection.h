// leasehold::redis::Connection: one connection to a Redis server, TCP or
// TLS, with every wait bounded by a deadline.
//
// Commands go out in one write and their replies are read back in order: a
// pipeline of N commands is one round trip. The socket is non-blocking;
// each wait (connect, TLS handshake, write, read) polls up to the deadline,
// and a connection that missed one, or broke, is closed -- a reply that
// arrives later can never be taken for another request's. TLS is OpenSSL's
// (Debian's hiredis 0.14 has none of its own): the peer is verified against
// the given CA and the host name (or tls_server_name), and a client
// certificate is sent when one is given.
//
// Thread-safety: one thread at a time (the store serialises its use).
#ifndef LEASEHOLD_SRC_BACKENDS_REDIS_REDIS_CONNECTION_H_
#define LEASEHOLD_SRC_BACKENDS_REDIS_REDIS_CONNECTION_H_

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "leasehold/clock.h"
#include "leasehold/status.h"
#include "redis_reply.h"

namespace leasehold::redis {

struct Endpoint {
  std::string host;
  int port = 6379;
  std::string ToString() const;
};

struct TlsSettings {
  std::string ca_file;      // PEM; empty: the system's trust store
  std::string cert_file;    // client certificate (PEM), optional
  std::string key_file;     // its key (PEM), with cert_file
  std::string server_name;  // name to verify; empty: the endpoint's host
};

// An OpenSSL client context made once per store (certificates loaded once).
class TlsContext;
Result<std::shared_ptr<TlsContext>> MakeTlsContext(const TlsSettings& settings,
                                                   const std::string& describe);

using Command = std::vector<std::string>;

class Connection {
 public:
  // `describe` names the store in messages.
  Connection(const Clock& clock, std::string describe);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // Connects (TCP, then TLS when `tls` is set) by `deadline`. Errors:
  // kUnavailable (refused, unreachable, timed out, TLS refused or not
  // verified).
  Status Open(const Endpoint& endpoint, const std::shared_ptr<TlsContext>& tls, TimePoint deadline);
  bool is_open() const { return fd_ >= 0; }
  // Whether an open connection is still usable, as far as can be told
  // without a round trip: a request connection has nothing to read between
  // requests, so what is readable is the server closing it (a restart,
  // CLIENT KILL, a timeout) -- closed here, so that nothing is sent on a
  // connection already dead. TLS records that carry no data (session
  // tickets) are consumed.
  bool Idle();
  const Endpoint& endpoint() const { return endpoint_; }

  // Sends `commands` in one write and reads one reply per command, by
  // `deadline`. Error replies are replies (the caller judges them); a
  // transport failure is kUnavailable, a missed deadline kDeadlineExceeded,
  // a stream that is not RESP kDataLoss -- and the connection is closed.
  Result<std::vector<Reply>> Run(const std::vector<Command>& commands, TimePoint deadline,
                                 const std::string& what);

  // For a subscriber: sends without reading, and reads one reply (a pushed
  // message), waiting until `deadline` or until `wake_fd` (if >= 0) is
  // readable. Woken: nullopt. At the deadline: nullopt when `idle_ok` (the
  // connection stays open), else kDeadlineExceeded (and closed).
  Status Send(const std::vector<Command>& commands, TimePoint deadline, const std::string& what);
  Result<std::optional<Reply>> Read(TimePoint deadline, int wake_fd, const std::string& what,
                                    bool idle_ok = false);

  void Close() noexcept;

 private:
  enum class Io { kDone, kWantRead, kWantWrite, kClosed, kError };
  Io WriteSome(const char* data, size_t len, size_t& written);
  Io ReadSome(char* data, size_t len, size_t& got);
  // Polls until the socket is ready: true; woken by wake_fd, or at the
  // deadline when `idle_ok`: false; else kDeadlineExceeded (closed).
  Result<bool> Wait(bool for_write, TimePoint deadline, int wake_fd, const std::string& what,
                    bool idle_ok = false);
  Status Broken(const std::string& what, const std::string& why);

  const Clock& clock_;
  const std::string describe_;
  Endpoint endpoint_;
  int fd_ = -1;
  struct Ssl;
  std::unique_ptr<Ssl> ssl_;
  std::unique_ptr<ReplyReader> reader_;
};

}  // namespace leasehold::redis

#endif  // LEASEHOLD_SRC_BACKENDS_REDIS_REDIS_CONNECTION_H_
