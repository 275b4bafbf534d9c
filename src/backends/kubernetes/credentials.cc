#include "leasehold/backends/kubernetes_credentials.h"

#include <fstream>
#include <sstream>
#include <utility>

namespace leasehold::kubernetes {
namespace {

Result<std::string> ReadTokenFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return UnavailableError("cannot read the token file " + path);
  std::ostringstream text;
  text << in.rdbuf();
  std::string token = text.str();
  while (!token.empty() && (token.back() == '\n' || token.back() == '\r' ||
                            token.back() == ' ' || token.back() == '\t')) {
    token.pop_back();
  }
  if (token.empty()) return UnavailableError("the token file " + path + " is empty");
  if (token.find_first_of("\r\n") != std::string::npos) {
    return InvalidArgumentError("the token file " + path + " holds more than one line");
  }
  return token;
}

}  // namespace

TokenSource::TokenSource(Credentials credentials, const Clock* clock, Duration max_age)
    : credentials_(std::move(credentials)),
      clock_(clock != nullptr ? clock : &RealClock()),
      max_age_(max_age),
      token_(credentials_.token) {}

Result<std::string> TokenSource::Current() {
  std::lock_guard lock(mu_);
  if (credentials_.token_file.empty()) return token_;
  const TimePoint now = clock_->Now();
  if (fresh_ && now - read_at_ < max_age_) return token_;
  ++reads_;
  Result<std::string> read = ReadTokenFile(credentials_.token_file);
  if (!read.ok()) {
    // Keep serving the last good token: the kubelet rewrites the file
    // atomically, so a failed read is transient; the server says if the old
    // token stopped working.
    if (token_.empty()) return read.status();
    return token_;
  }
  token_ = *std::move(read);
  read_at_ = now;
  fresh_ = true;
  return token_;
}

void TokenSource::Invalidate() {
  std::lock_guard lock(mu_);
  fresh_ = false;
}

uint64_t TokenSource::reads() const {
  std::lock_guard lock(mu_);
  return reads_;
}

}  // namespace leasehold::kubernetes
