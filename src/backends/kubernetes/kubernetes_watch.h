// Internal: the watches of one Kubernetes store. A waiting lease watches the
// one Lease object it read; its watch stream runs on the store's StreamMux
// (one thread for all of them, stream_mux.h) and its callback on the runtime
// -- never on the mux thread, since a callback may end the store.
//
// The callbacks are kept by the backend kit's WatchRegistry, which holds the
// Store watch contract (leasehold/store.h): a callback runs at most once, and
// after Cancel(id) returns it will not start.
//
// Thread-safety: every method is safe from any thread.
#ifndef LEASEHOLD_SRC_BACKENDS_KUBERNETES_KUBERNETES_WATCH_H_
#define LEASEHOLD_SRC_BACKENDS_KUBERNETES_KUBERNETES_WATCH_H_

#include <atomic>
#include <memory>
#include <string>

#include "http_client.h"
#include "leasehold/runtime.h"
#include "leasehold/store.h"
#include "stream_mux.h"

namespace leasehold::kubernetes::detail {

class Watches {
 public:
  Watches(std::shared_ptr<HttpClient> http, std::shared_ptr<Runtime> runtime);
  // Cancels every watch, then joins the mux thread.
  ~Watches();
  Watches(const Watches&) = delete;
  Watches& operator=(const Watches&) = delete;

  // Opens a watch stream on `path` (a `watch=1` URL of one object) and calls
  // `on_change` once when it reports anything but a bookmark, or ends.
  // Returns 0 (the waiter then polls) once the server has refused a watch
  // with 403, after CancelAll, or if the stream cannot be set up.
  WatchId Open(const std::string& path, Task on_change);
  void Cancel(WatchId id) noexcept;
  // Cancels every watch; Open returns 0 from now on.
  void CancelAll();

  // Set once the server answered a watch with 403 (a Role without the
  // `watch` verb): waiters poll instead of opening watches that are refused.
  bool forbidden() const noexcept { return forbidden_->load(); }

 private:
  // The waiters and their streams; held weakly by the stream handlers and
  // the wake-ups they post, which may outlive the store.
  struct Shared;

  const std::shared_ptr<Runtime> runtime_;
  const std::shared_ptr<std::atomic<bool>> forbidden_ = std::make_shared<std::atomic<bool>>(false);
  const std::shared_ptr<Shared> shared_;
  StreamMux mux_;
};

}  // namespace leasehold::kubernetes::detail

#endif  // LEASEHOLD_SRC_BACKENDS_KUBERNETES_KUBERNETES_WATCH_H_
