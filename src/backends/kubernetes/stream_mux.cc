#include "stream_mux.h"

#include <curl/curl.h>

#include <utility>

namespace leasehold::kubernetes::detail {

struct StreamMux::Stream {
  Stream(StreamMux* m, void* e, void* h, OnData d, OnEnd n)
      : mux(m), easy(e), headers(h), on_data(std::move(d)), on_end(std::move(n)) {}
  ~Stream() {
    curl_easy_cleanup(static_cast<CURL*>(easy));
    curl_slist_free_all(static_cast<curl_slist*>(headers));
  }
  StreamMux* const mux;
  void* const easy;
  void* const headers;
  const OnData on_data;
  const OnEnd on_end;
  uint64_t id = 0;
  char errbuf[CURL_ERROR_SIZE] = {0};
  bool closed = false;   // guarded by mux->mu_
  bool added = false;    // mux thread only: in the multi handle
  bool stopped = false;  // mux thread only: on_data ended it
};

StreamMux::StreamMux(std::shared_ptr<HttpClient> http)
    : http_(std::move(http)), multi_(curl_multi_init()) {}

StreamMux::~StreamMux() {
  if (thread_.joinable()) {
    thread_.request_stop();
    Wake();
    thread_.join();
  }
  // The thread is gone: what it left is ours.
  for (auto& [id, s] : streams_) {
    if (s->added) curl_multi_remove_handle(static_cast<CURLM*>(multi_), s->easy);
  }
  streams_.clear();
  if (multi_) curl_multi_cleanup(static_cast<CURLM*>(multi_));
}

void StreamMux::Wake() {
  if (multi_) curl_multi_wakeup(static_cast<CURLM*>(multi_));
}

Result<uint64_t> StreamMux::Open(const std::string& path, OnData on_data, OnEnd on_end) {
  if (multi_ == nullptr) return InternalError("curl_multi_init failed");
  void* headers = nullptr;
  Result<void*> easy = http_->NewStream(path, &headers);
  if (!easy.ok()) return easy.status();
  auto s = std::make_unique<Stream>(this, *easy, headers, std::move(on_data), std::move(on_end));
  CURL* h = static_cast<CURL*>(s->easy);
  curl_easy_setopt(h, CURLOPT_ERRORBUFFER, s->errbuf);
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &StreamMux::OnBody);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, s.get());
  curl_easy_setopt(h, CURLOPT_PRIVATE, s.get());
  uint64_t id;
  {
    std::lock_guard lock(mu_);
    id = s->id = ++next_id_;
    to_add_.push_back(s.get());
    streams_.emplace(id, std::move(s));
    if (!thread_.joinable()) {
      thread_ = std::jthread([this](const std::stop_token& stop) { Run(stop); });
    }
  }
  Wake();
  return id;
}

void StreamMux::Close(uint64_t id) {
  {
    std::unique_lock lock(mu_);
    auto it = streams_.find(id);
    if (it == streams_.end() || it->second->closed) return;
    it->second->closed = true;
    to_remove_.push_back(id);
    // From a handler (of this stream or another), waiting would deadlock:
    // the mux thread is ours, and no other handler runs meanwhile.
    if (std::this_thread::get_id() != thread_.get_id()) {
      idle_.wait(lock, [&] { return busy_ != id; });
    }
  }
  Wake();
}

size_t StreamMux::open_streams() const {
  std::lock_guard lock(mu_);
  return streams_.size();
}

bool StreamMux::thread_started() const {
  std::lock_guard lock(mu_);
  return thread_.joinable();
}

size_t StreamMux::OnBody(char* data, size_t size, size_t n, void* user) {
  auto* s = static_cast<Stream*>(user);
  StreamMux* mux = s->mux;
  {
    std::lock_guard lock(mux->mu_);
    if (s->closed) return CURL_WRITEFUNC_ERROR;
    mux->busy_ = s->id;
  }
  bool more = false;
  try {
    more = s->on_data(std::string_view(data, size * n));
  } catch (...) {
  }
  {
    std::lock_guard lock(mux->mu_);
    mux->busy_ = 0;
  }
  mux->idle_.notify_all();
  if (!more) {
    s->stopped = true;
    return CURL_WRITEFUNC_ERROR;
  }
  return size * n;
}

void StreamMux::Run(const std::stop_token& stop) {
  CURLM* multi = static_cast<CURLM*>(multi_);
  while (!stop.stop_requested()) {
    std::vector<std::unique_ptr<Stream>> dead;  // freed outside the lock
    {
      std::lock_guard lock(mu_);
      for (Stream* s : to_add_) {
        if (s->closed) continue;  // its id is in to_remove_
        curl_multi_add_handle(multi, s->easy);
        s->added = true;
      }
      to_add_.clear();
      for (uint64_t id : to_remove_) {
        auto it = streams_.find(id);
        if (it == streams_.end()) continue;
        if (it->second->added) curl_multi_remove_handle(multi, it->second->easy);
        dead.push_back(std::move(it->second));
        streams_.erase(it);
      }
      to_remove_.clear();
    }
    dead.clear();

    int running = 0;
    curl_multi_perform(multi, &running);
    std::vector<std::pair<Stream*, CURLcode>> ended;
    int queued = 0;
    while (CURLMsg* msg = curl_multi_info_read(multi, &queued)) {
      if (msg->msg != CURLMSG_DONE) continue;
      char* priv = nullptr;
      curl_easy_getinfo(msg->easy_handle, CURLINFO_PRIVATE, &priv);
      ended.emplace_back(reinterpret_cast<Stream*>(priv), msg->data.result);
    }
    for (auto [s, rc] : ended) {
      curl_multi_remove_handle(multi, s->easy);
      s->added = false;
      const Result<long> result = http_->EndStream(s->easy, rc, s->errbuf, s->stopped);
      bool call;
      {
        std::lock_guard lock(mu_);
        call = !s->closed;
        if (call) busy_ = s->id;
      }
      if (call) {
        try {
          s->on_end(result);
        } catch (...) {
        }
      }
      {
        std::lock_guard lock(mu_);
        busy_ = 0;
        auto it = streams_.find(s->id);
        dead.push_back(std::move(it->second));
        streams_.erase(it);
      }
      idle_.notify_all();
    }
    dead.clear();
    // Woken at once by Open, Close and the destructor (curl_multi_wakeup).
    curl_multi_poll(multi, nullptr, 0, 1000, nullptr);
  }
}

}  // namespace leasehold::kubernetes::detail
