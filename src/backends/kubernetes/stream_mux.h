// Internal: many streaming GETs (watches) on one thread.
//
// Each waiting Kubernetes lease keeps a watch open until the record changes.
// A blocking stream per waiter would cost a thread each; StreamMux drives
// every stream of a store through one libcurl multi handle on one thread of
// its own, started at the first Open() and joined by the destructor. A
// thousand waiters cost one thread (and one connection each over HTTP/1.1; an
// HTTP/2 API server multiplexes them on one).
//
// Handlers run on the mux thread, one at a time, and must not block: the
// watch code only parses and posts to the runtime.
//
// Thread-safety: Open and Close are safe from any thread, including from a
// handler. The destructor must not run on the mux thread (it joins it); the
// mux holds nothing of its users but their handlers, so owners that keep
// their own state out of those handlers (weak references) are never
// destroyed there.
#ifndef LEASEHOLD_SRC_BACKENDS_KUBERNETES_STREAM_MUX_H_
#define LEASEHOLD_SRC_BACKENDS_KUBERNETES_STREAM_MUX_H_

#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "http_client.h"
#include "leasehold/status.h"

namespace leasehold::kubernetes::detail {

class StreamMux {
 public:
  // A chunk of the body as it arrives; return false to end the stream.
  using OnData = std::function<bool(std::string_view)>;
  // The stream ended: the HTTP status (also when on_data ended it), or the
  // transport error. Not called for a stream that was closed.
  using OnEnd = std::function<void(Result<long>)>;

  explicit StreamMux(std::shared_ptr<HttpClient> http);
  // Ends every open stream (without OnEnd) and joins the thread.
  ~StreamMux();
  StreamMux(const StreamMux&) = delete;
  StreamMux& operator=(const StreamMux&) = delete;

  // Opens a streaming GET of `path`. Returns its id (never 0), or the error
  // if the request could not be set up (its token cannot be read, ...).
  Result<uint64_t> Open(const std::string& path, OnData on_data, OnEnd on_end);

  // Ends stream `id`. After Close returns, no handler of it starts, and none
  // is running -- unless Close is called from that very handler, which then
  // is the last. Unknown or ended ids are ignored.
  void Close(uint64_t id);

  // Streams open or being opened; and whether the thread has been started
  // (for tests and the benchmark).
  size_t open_streams() const;
  bool thread_started() const;

 private:
  struct Stream;
  void Run(const std::stop_token& stop);
  void Wake();
  static size_t OnBody(char* data, size_t size, size_t n, void* user);

  const std::shared_ptr<HttpClient> http_;
  void* const multi_;  // CURLM*, touched only by the mux thread (and Wake)

  mutable std::mutex mu_;
  std::condition_variable idle_;  // busy_ changed
  std::map<uint64_t, std::unique_ptr<Stream>> streams_;
  std::vector<Stream*> to_add_;
  std::vector<uint64_t> to_remove_;
  uint64_t next_id_ = 0;
  uint64_t busy_ = 0;  // the stream whose handler runs now, if any
  std::jthread thread_;
};

}  // namespace leasehold::kubernetes::detail

#endif  // LEASEHOLD_SRC_BACKENDS_KUBERNETES_STREAM_MUX_H_
