// leasehold etcd backend, internal: the plumbing shared by the keepalive and
// watch streams -- a gRPC bidirectional stream with a write queue.
//
// Thread-safety: Send() and Cancel() are safe from any thread, including from
// inside gRPC's callbacks of the same stream (OnWriteDone may run inline in
// StartWrite). OnResponse runs on gRPC's threads, one read at a time.
#ifndef LEASEHOLD_BACKENDS_ETCD_ETCD_STREAM_H_
#define LEASEHOLD_BACKENDS_ETCD_ETCD_STREAM_H_

#include <grpcpp/grpcpp.h>
#include <grpcpp/support/client_callback.h>

#include <deque>
#include <mutex>

namespace leasehold::etcd {

// A bidirectional stream whose writes are queued (one in flight at a time, as
// gRPC requires) and whose answers go to OnResponse. Once the read side has
// ended, gRPC destroys its half of the call before OnDone, so no write may
// start from then on.
template <typename Request, typename Response>
class QueuedBidiStream : public grpc::ClientBidiReactor<Request, Response> {
 public:
  grpc::ClientContext& context() { return ctx_; }
  void Cancel() { ctx_.TryCancel(); }

  void Send(Request req) {
    std::lock_guard lock(mu_);
    queue_.push_back(std::move(req));
    if (!writing_ && !done_) {
      writing_ = true;
      this->StartWrite(&queue_.front());
    }
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard lock(mu_);
    queue_.pop_front();
    if (!ok) {
      done_ = true;
      writing_ = false;
      return;
    }
    if (!queue_.empty()) {
      this->StartWrite(&queue_.front());
    } else {
      writing_ = false;
    }
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      std::lock_guard lock(mu_);
      done_ = true;
      return;
    }
    OnResponse(resp_);
    this->StartRead(&resp_);
  }

 protected:
  virtual void OnResponse(const Response& response) = 0;

  grpc::ClientContext ctx_;
  Response resp_;

 private:
  std::recursive_mutex mu_;  // gRPC may run OnWriteDone inline
  std::deque<Request> queue_;
  bool writing_ = false;
  bool done_ = false;
};

}  // namespace leasehold::etcd

#endif  // LEASEHOLD_BACKENDS_ETCD_ETCD_STREAM_H_
