// Internal: a small blocking HTTPS client for the API server over libcurl.
// A pool of easy handles is reused (each keeps its TLS connection alive), TLS
// is always verified against the credentials' CA, and the bearer token comes
// from a TokenSource: on a 401 the token is invalidated (re-read) and the
// request is sent once more.
//
// Thread-safety: every method is safe from any thread; each call blocks.
#ifndef LEASEHOLD_SRC_BACKENDS_KUBERNETES_HTTP_CLIENT_H_
#define LEASEHOLD_SRC_BACKENDS_KUBERNETES_HTTP_CLIENT_H_

#include <atomic>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "leasehold/backends/kubernetes_credentials.h"
#include "leasehold/clock.h"
#include "leasehold/status.h"

namespace leasehold::kubernetes::detail {

struct HttpResponse {
  long status = 0;
  std::string body;
  std::optional<Duration> retry_after;  // from a Retry-After header in seconds
};

class HttpClient {
 public:
  // `describe` prefixes messages; `clock` must outlive the client.
  HttpClient(Credentials credentials, const Clock& clock, Duration request_timeout,
             Duration token_max_age, std::string describe);
  ~HttpClient();
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;

  // Sends one request (`body` JSON when non-null) and waits for the whole
  // reply, by `deadline` at the latest. Any HTTP status is a response; errors
  // are transport failures: kDeadlineExceeded (timed out / no time left),
  // kUnavailable (connection refused or cut), kFailedPrecondition (TLS
  // verification failed), kUnauthenticated (the token cannot be read).
  Result<HttpResponse> Send(std::string_view method, const std::string& path,
                            const std::string* body, TimePoint deadline);

  // For StreamMux: a new easy handle (CURL*) set up for a streaming GET of
  // `path` -- TLS, bearer token, connect timeout -- and, in *headers, its
  // header list (curl_slist*), which must outlive it.
  Result<void*> NewStream(const std::string& path, void** headers);
  // The end of such a stream, from curl's code `rc` and error text: the HTTP
  // status if the stream was answered (or `stopped` by its reader), else the
  // transport error. A 401 makes the next request re-read the token.
  Result<long> EndStream(void* handle, int rc, const char* errbuf, bool stopped);

 private:
  void* Take();
  void Give(void* handle);
  Result<HttpResponse> SendOnce(void* handle, std::string_view method, const std::string& path,
                                const std::string* body, TimePoint deadline,
                                const std::string& token);
  void Configure(void* handle, const std::string& url, const std::string& token,
                 void* header_list_out);

  const Credentials credentials_;
  const Clock& clock_;
  const Duration request_timeout_;
  const std::string describe_;
  TokenSource tokens_;
  std::mutex mu_;
  std::vector<void*> idle_;
};

}  // namespace leasehold::kubernetes::detail

#endif  // LEASEHOLD_SRC_BACKENDS_KUBERNETES_HTTP_CLIENT_H_
