#include "fake_faults.h"

#include <httplib.h>

#include <chrono>
#include <mutex>
#include <string>
#include <utility>

#include "fake_state.h"

namespace leasehold::kubernetes::testing::detail {

std::optional<PendingFault> Faults::Take(Verb verb) {
  for (auto it = pending.begin(); it != pending.end(); ++it) {
    if (it->only && *it->only != verb) continue;
    PendingFault f = *it;
    if (--it->remaining <= 0) pending.erase(it);
    return f;
  }
  return std::nullopt;
}

FaultOutcome AwaitFaults(ServerState& st, uint64_t epoch, Verb verb) {
  std::unique_lock lock(st.mu);
  auto stopping = [&] { return st.Stopping(epoch); };
  if (st.faults.delay > Duration::zero()) {
    const auto until = std::chrono::steady_clock::now() + st.faults.delay;
    st.cv.wait_until(lock, until, stopping);
  }
  st.cv.wait(lock, [&] { return !st.faults.hang || stopping(); });
  if (stopping()) return {true, std::nullopt};
  return {false, st.faults.Take(verb)};
}

json InjectedStatus(int status, std::optional<int> retry_after) {
  std::string message;
  json details = nullptr;
  switch (status) {
    case 429:
      message = "Too many requests, please try again later.";
      break;
    case 500:
      message = "Internal error occurred: injected fault";
      details = {{"causes", json::array({{{"message", "injected fault"}}})}};
      break;
    case 503:
      message = "the server is currently unable to handle the request";
      break;
    case 504:
      message = "Timeout: request did not complete within the allotted timeout";
      break;
    default:
      message = "injected fault";
  }
  if (retry_after) {
    if (details.is_null()) details = json::object();
    details["retryAfterSeconds"] = *retry_after;
  }
  return StatusObject(status, ReasonFor(status), message, std::move(details));
}

void CutConnection(httplib::Response& res) {
  res.status = 200;
  res.body.clear();
  res.set_content_provider(1024, "application/json", [](size_t, size_t, httplib::DataSink& sink) {
    sink.write("{\"kind\":", 8);
    return false;  // httplib closes the connection
  });
}

}  // namespace leasehold::kubernetes::testing::detail
