#include "fake_watch.h"

#include <httplib.h>
#include <openssl/ssl.h>
#include <poll.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <mutex>
#include <utility>

#include "fake_common.h"
#include "fake_http_front.h"
#include "fake_registry.h"
#include "fake_state.h"

namespace leasehold::kubernetes::testing::detail {
namespace {

// True when the peer has closed its end of the connection (watch streams
// notice a client that went away without waiting for the next event).
bool PeerClosed(const SSL* ssl) {
  if (ssl == nullptr) return false;
  const int fd = SSL_get_fd(ssl);
  if (fd < 0) return true;
  pollfd p{fd, POLLRDHUP, 0};
  return poll(&p, 1, 0) > 0 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR | POLLNVAL)) != 0;
}

std::string EventLine(const std::string& type, const json& object) {
  return json({{"type", type}, {"object", object}}).dump() + "\n";
}

}  // namespace

void ServeWatch(const std::shared_ptr<ServerState>& state, uint64_t epoch,
                const httplib::Request& req, httplib::Response& res, const std::string& ns,
                const std::string& name, RequestRecord rec) {
  ServerState& st = *state;
  const Selector sel = ParseSelector(req.get_param_value("fieldSelector"), ns, name);
  if (!sel.error.empty()) {
    Reply(res, 400, StatusObject(400, "BadRequest", sel.error));
    return st.Record(std::move(rec), res.status);
  }
  const std::string rv_text = req.get_param_value("resourceVersion");
  uint64_t from = 0;
  bool initial = rv_text.empty() || rv_text == "0";
  if (!initial) {
    char* end = nullptr;
    errno = 0;
    from = std::strtoull(rv_text.c_str(), &end, 10);
    if (end == rv_text.c_str() || *end != '\0' || errno == ERANGE) {
      Reply(res, 400,
            StatusObject(400, "BadRequest",
                         "resourceVersion: Invalid value: \"" + rv_text +
                             "\": strconv.ParseUint: parsing \"" + rv_text + "\": invalid syntax"));
      return st.Record(std::move(rec), res.status);
    }
  }
  Duration timeout = Duration::max();
  if (const std::string t = req.get_param_value("timeoutSeconds"); !t.empty()) {
    timeout = std::chrono::seconds(std::atoll(t.c_str()));
  }
  const bool bookmarks = req.get_param_value("allowWatchBookmarks") == "true" ||
                         req.get_param_value("allowWatchBookmarks") == "1";

  std::string first;  // events known at the start
  uint64_t cursor;
  {
    std::lock_guard lock(st.mu);
    const Registry& reg = st.registry;
    if (!initial && from < reg.compacted()) {
      const json gone = StatusObject(
          410, st.options.gone_as_http_status ? "Gone" : "Expired",
          "too old resource version: " + rv_text + " (" + std::to_string(reg.compacted()) + ")");
      if (st.options.gone_as_http_status) {
        st.log.push_back(rec);
        st.log.back().status = 410;
        res.status = 410;
        res.set_content(gone.dump(), "application/json");
        return;
      }
      rec.status = 200;
      st.log.push_back(rec);
      res.status = 200;
      res.set_content(EventLine("ERROR", gone), "application/json");
      return;
    }
    if (initial) {
      for (const json& obj : reg.Select(sel)) first += EventLine("ADDED", obj);
      cursor = reg.rv();
    } else {
      cursor = from;
    }
    rec.status = 200;
    st.log.push_back(rec);
    ++st.watches_open;
  }

  struct Stream {
    std::string pending;
    uint64_t cursor;
    uint64_t watch_epoch;
    std::chrono::steady_clock::time_point end;
    std::chrono::steady_clock::time_point next_bookmark;
  };
  auto stream = std::make_shared<Stream>();
  const auto now = std::chrono::steady_clock::now();
  stream->pending = std::move(first);
  stream->cursor = cursor;
  {
    std::lock_guard lock(st.mu);
    stream->watch_epoch = st.watch_epoch;
  }
  stream->end =
      timeout == Duration::max() ? std::chrono::steady_clock::time_point::max() : now + timeout;
  const Duration every = st.options.bookmark_interval;
  stream->next_bookmark = bookmarks && every > Duration::zero()
                              ? now + every
                              : std::chrono::steady_clock::time_point::max();
  const SSL* ssl = req.ssl;
  res.status = 200;
  res.set_chunked_content_provider(
      "application/json",
      [state, epoch, stream, sel, ssl, every](size_t, httplib::DataSink& sink) {
        ServerState& st = *state;
        const Registry& reg = st.registry;
        while (true) {
          if (!stream->pending.empty()) {
            std::string out = std::move(stream->pending);
            stream->pending.clear();
            if (!sink.write(out.data(), out.size())) return false;
            continue;
          }
          std::unique_lock lock(st.mu);
          const auto now = std::chrono::steady_clock::now();
          if (st.Stopping(epoch) || PeerClosed(ssl)) return false;
          if (st.watch_epoch != stream->watch_epoch || now >= stream->end) {
            lock.unlock();
            sink.done();
            return true;
          }
          if (stream->cursor < reg.compacted()) {
            // Fell behind a compaction while streaming: the real server ends
            // such a watch with 410 too.
            stream->pending = EventLine(
                "ERROR",
                StatusObject(410, "Expired",
                             "too old resource version: " + std::to_string(stream->cursor) + " (" +
                                 std::to_string(reg.compacted()) + ")"));
            stream->end = now;
            continue;
          }
          for (const Registry::Event& e : reg.history()) {
            if (e.rv <= stream->cursor) continue;
            stream->cursor = e.rv;
            if (sel.Matches(e.ns, e.name)) stream->pending += EventLine(e.type, e.object);
          }
          stream->cursor = std::max(stream->cursor, reg.rv());
          if (!stream->pending.empty()) continue;
          if (now >= stream->next_bookmark) {
            stream->next_bookmark = now + every;
            stream->pending = EventLine(
                "BOOKMARK", {{"kind", "Lease"},
                             {"apiVersion", kApiVersion},
                             {"metadata", {{"resourceVersion", std::to_string(reg.rv())}}}});
            continue;
          }
          // Wake for new events, and every 50 ms to notice a vanished client.
          st.cv.wait_for(lock, std::chrono::milliseconds(50));
        }
      },
      [state](bool) {
        std::lock_guard lock(state->mu);
        --state->watches_open;
      });
}

}  // namespace leasehold::kubernetes::testing::detail
