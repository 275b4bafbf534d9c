#include "http_client.h"

#include <curl/curl.h>

#include <algorithm>
#include <cctype>
#include <chrono>
#include <cstdlib>
#include <utility>

namespace leasehold::kubernetes::detail {
namespace {

constexpr size_t kMaxBody = size_t{8} << 20;
constexpr size_t kMaxIdle = 16;

void GlobalInit() {
  static const bool done = [] {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    return true;
  }();
  (void)done;
}

struct Sink {
  std::string body;
  bool too_big = false;
  std::optional<Duration> retry_after;
};

size_t WriteBody(char* data, size_t size, size_t n, void* user) {
  auto* sink = static_cast<Sink*>(user);
  const size_t len = size * n;
  if (sink->body.size() + len > kMaxBody) {
    sink->too_big = true;
    return CURL_WRITEFUNC_ERROR;
  }
  sink->body.append(data, len);
  return len;
}

size_t WriteHeader(char* data, size_t size, size_t n, void* user) {
  auto* sink = static_cast<Sink*>(user);
  const size_t len = size * n;
  std::string_view line(data, len);
  constexpr std::string_view kName = "retry-after:";
  if (line.size() > kName.size()) {
    bool match = true;
    for (size_t i = 0; i < kName.size(); ++i) {
      if (std::tolower(static_cast<unsigned char>(line[i])) != kName[i]) {
        match = false;
        break;
      }
    }
    if (match) {
      std::string value(line.substr(kName.size()));
      char* end = nullptr;
      const long secs = std::strtol(value.c_str(), &end, 10);
      if (end != value.c_str() && secs >= 0 && secs <= 3600) {
        sink->retry_after = std::chrono::seconds(secs);
      }
    }
  }
  return len;
}

}  // namespace

HttpClient::HttpClient(Credentials credentials, const Clock& clock, Duration request_timeout,
                       Duration token_max_age, std::string describe)
    : credentials_(credentials),
      clock_(clock),
      request_timeout_(request_timeout),
      describe_(std::move(describe)),
      tokens_(std::move(credentials), &clock, token_max_age) {
  GlobalInit();
}

HttpClient::~HttpClient() {
  for (void* h : idle_) curl_easy_cleanup(static_cast<CURL*>(h));
}

void* HttpClient::Take() {
  {
    std::lock_guard lock(mu_);
    if (!idle_.empty()) {
      void* h = idle_.back();
      idle_.pop_back();
      return h;
    }
  }
  return curl_easy_init();
}

void HttpClient::Give(void* handle) {
  std::lock_guard lock(mu_);
  if (idle_.size() < kMaxIdle) {
    idle_.push_back(handle);
    return;
  }
  curl_easy_cleanup(static_cast<CURL*>(handle));
}

void HttpClient::Configure(void* handle, const std::string& url, const std::string& token,
                           void* header_list_out) {
  CURL* h = static_cast<CURL*>(handle);
  // Reset keeps the handle's connection cache: the next request reuses the
  // TLS connection.
  curl_easy_reset(h);
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "https,http");
  if (!credentials_.ca_pem.empty()) {
    curl_blob ca{const_cast<char*>(credentials_.ca_pem.data()), credentials_.ca_pem.size(),
                 CURL_BLOB_COPY};
    curl_easy_setopt(h, CURLOPT_CAINFO_BLOB, &ca);
  }
  if (!credentials_.client_cert_pem.empty() && !credentials_.client_key_pem.empty()) {
    curl_blob cert{const_cast<char*>(credentials_.client_cert_pem.data()),
                   credentials_.client_cert_pem.size(), CURL_BLOB_COPY};
    curl_blob key{const_cast<char*>(credentials_.client_key_pem.data()),
                  credentials_.client_key_pem.size(), CURL_BLOB_COPY};
    curl_easy_setopt(h, CURLOPT_SSLCERT_BLOB, &cert);
    curl_easy_setopt(h, CURLOPT_SSLCERTTYPE, "PEM");
    curl_easy_setopt(h, CURLOPT_SSLKEY_BLOB, &key);
    curl_easy_setopt(h, CURLOPT_SSLKEYTYPE, "PEM");
  }
  if (credentials_.insecure_skip_tls_verify) {
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 0L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 0L);
  }
  curl_slist* headers = nullptr;
  headers = curl_slist_append(headers, "Accept: application/json");
  headers = curl_slist_append(headers, "Content-Type: application/json");
  headers = curl_slist_append(headers, "Expect:");
  if (!token.empty())
    headers = curl_slist_append(headers, ("Authorization: Bearer " + token).c_str());
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers);
  curl_easy_setopt(h, CURLOPT_USERAGENT, "leasehold");
  *static_cast<curl_slist**>(header_list_out) = headers;
}

namespace {

Status TransportError(const std::string& describe, CURLcode rc, const char* errbuf) {
  std::string what = errbuf[0] != '\0' ? errbuf : curl_easy_strerror(rc);
  switch (rc) {
    case CURLE_OPERATION_TIMEDOUT:
      return DeadlineExceededError(describe + ": no answer in time: " + what);
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_ISSUER_ERROR:
      return FailedPreconditionError(describe + ": TLS verification of the API server failed (" +
                                     what + "); check the CA (certificate-authority) you trust");
    default:
      return UnavailableError(describe + ": " + what);
  }
}

}  // namespace

Result<HttpResponse> HttpClient::SendOnce(void* handle, std::string_view method,
                                          const std::string& path, const std::string* body,
                                          TimePoint deadline, const std::string& token) {
  const Duration left = deadline - clock_.Now();
  if (left <= Duration::zero()) {
    return DeadlineExceededError(describe_ + ": no time left to send " + std::string(method));
  }
  const auto ms = std::max<int64_t>(
      1, std::chrono::duration_cast<std::chrono::milliseconds>(std::min(left, request_timeout_))
             .count());
  CURL* h = static_cast<CURL*>(handle);
  curl_slist* headers = nullptr;
  Configure(handle, credentials_.server + path, token, &headers);
  Sink sink;
  char errbuf[CURL_ERROR_SIZE] = {0};
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, errbuf);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &WriteBody);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &sink);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &WriteHeader);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &sink);
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS, static_cast<long>(ms));
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS, static_cast<long>(ms));
  const std::string m(method);
  if (m != "GET") curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, m.c_str());
  if (body != nullptr) {
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body->data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body->size()));
  }
  const CURLcode rc = curl_easy_perform(h);
  // The handle outlives this frame (pooled, or cleaned up by the caller, when
  // curl may still write an error while closing the connection): it must not
  // keep pointers to our locals.
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, nullptr);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, nullptr);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, nullptr);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, nullptr);
  curl_easy_setopt(h, CURLOPT_POSTFIELDS, nullptr);
  curl_slist_free_all(headers);
  if (sink.too_big) {
    return DataLossError(describe_ + ": the reply to " + m + " is larger than 8 MiB");
  }
  if (rc != CURLE_OK) return TransportError(describe_, rc, errbuf);
  HttpResponse out;
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &out.status);
  out.body = std::move(sink.body);
  out.retry_after = sink.retry_after;
  return out;
}

Result<HttpResponse> HttpClient::Send(std::string_view method, const std::string& path,
                                      const std::string* body, TimePoint deadline) {
  for (int attempt = 0;; ++attempt) {
    Result<std::string> token = tokens_.Current();
    if (!token.ok()) {
      return UnauthenticatedError(describe_ +
                                  ": cannot read the bearer token: " + token.status().message());
    }
    void* h = Take();
    if (h == nullptr) return InternalError(describe_ + ": curl_easy_init failed");
    Result<HttpResponse> r = SendOnce(h, method, path, body, deadline, *token);
    if (!r.ok()) {
      // The connection may be broken in a way curl only notices by failing:
      // start the next request on a fresh one.
      curl_easy_cleanup(static_cast<CURL*>(h));
      if (r.status().code() == StatusCode::kUnavailable && attempt == 0) continue;
      return r;
    }
    Give(h);
    // A 401 usually means the token rotated: re-read it and try once more.
    if (r.ok() && r->status == 401 && attempt == 0 && !credentials_.token_file.empty()) {
      tokens_.Invalidate();
      continue;
    }
    return r;
  }
}

Result<void*> HttpClient::NewStream(const std::string& path, void** headers) {
  Result<std::string> token = tokens_.Current();
  if (!token.ok()) {
    return UnauthenticatedError(describe_ +
                                ": cannot read the bearer token: " + token.status().message());
  }
  CURL* h = curl_easy_init();
  if (h == nullptr) return InternalError(describe_ + ": curl_easy_init failed");
  Configure(h, credentials_.server + path, *token, headers);
  curl_easy_setopt(
      h, CURLOPT_CONNECTTIMEOUT_MS,
      static_cast<long>(
          std::chrono::duration_cast<std::chrono::milliseconds>(request_timeout_).count()));
  return static_cast<void*>(h);
}

Result<long> HttpClient::EndStream(void* handle, int rc, const char* errbuf, bool stopped) {
  long status = 0;
  curl_easy_getinfo(static_cast<CURL*>(handle), CURLINFO_RESPONSE_CODE, &status);
  if (status == 401) tokens_.Invalidate();
  if (stopped || rc == CURLE_OK) return status;
  return TransportError(describe_, static_cast<CURLcode>(rc), errbuf);
}

}  // namespace leasehold::kubernetes::detail
