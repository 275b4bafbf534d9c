#include "etcd_session.h"

#include <algorithm>
#include <chrono>
#include <string>

#include "etcd_state.h"

namespace leasehold {
namespace etcd {

int64_t TtlSeconds(Duration ttl) {
  const auto s = std::chrono::ceil<std::chrono::seconds>(ttl).count();
  return std::max<int64_t>(1, s);
}

// etcd raises a TTL below its minimum (1.5 election timeouts, rounded up:
// seconds, even with slow elections), and never lowers one.
int64_t MaxGrantedTtl(int64_t requested) { return std::max<int64_t>(requested, 3600); }

void KeepAliveStream::Start(pb::Lease::Stub* stub) {
  stub->async()->LeaseKeepAlive(&ctx_, this);
  StartRead(&resp_);
  StartCall();
}

void KeepAliveStream::Send(int64_t id) {
  pb::LeaseKeepAliveRequest req;
  req.set_id(id);
  QueuedBidiStream::Send(std::move(req));
}

void KeepAliveStream::OnDone(const grpc::Status& status) {
  if (auto s = state_.lock()) s->OnKeepAliveStreamDone(this, status);
  delete this;
}

void KeepAliveStream::OnResponse(const pb::LeaseKeepAliveResponse& response) {
  if (auto s = state_.lock()) s->OnKeepAliveResponse(response);
}

}  // namespace etcd

using etcd::KeepAliveAnswer;
using etcd::KeepAliveCallback;
using etcd::KeepAliveStream;
using etcd::Session;
using etcd::SessionInfo;
namespace pb = etcd::pb;

std::shared_ptr<Session> etcd::State::SessionForId(int64_t id) {
  for (auto& [ttl, s] : sessions) {
    if (s->alive && s->id == id) return s;
  }
  return nullptr;
}

void etcd::State::ForgetAnchor(int64_t session_id, TimePoint anchor) {
  std::lock_guard lock(mu);
  auto s = SessionForId(session_id);
  if (s && s->anchor == anchor) s->anchor = TimePoint{};
}

void etcd::State::GetSession(int64_t ttl_s, TimePoint deadline,
                             std::function<void(Result<SessionInfo>)> done) {
  std::unique_lock lock(mu);
  if (shutting_down) {
    lock.unlock();
    done(FailedPreconditionError(describe + ": store is shutting down"));
    return;
  }
  auto& slot = sessions[ttl_s];
  if (!slot) {
    slot = std::make_shared<Session>();
    slot->ttl_s = ttl_s;
  }
  auto s = slot;
  if (s->alive) {
    const SessionInfo info{s->id, s->ttl, s->anchor, s->anchor_term};
    // A session whose last proof of life is old would give a new tenure a
    // short deadline: refresh it first.
    if (clock.Now() - s->anchor < s->ttl / 3) {
      lock.unlock();
      done(info);
      return;
    }
    lock.unlock();
    auto self = SharedFromThis();
    KeepAlive(s, deadline, [self, s, ttl_s, deadline, done](Result<KeepAliveAnswer> a) {
      if (!a.ok()) {
        done(a.status());
        return;
      }
      if (a->ttl_s <= 0) {
        self->GetSession(ttl_s, deadline, done);  // it was marked dead: grant anew
        return;
      }
      std::lock_guard lock(self->mu);
      done(SessionInfo{s->id, s->ttl, s->anchor, s->anchor_term});
    });
    return;
  }
  auto self = SharedFromThis();
  s->grant_waiters.push_back([self, s, done](Status st) {
    if (!st.ok()) {
      done(st);
      return;
    }
    SessionInfo info;
    {
      std::lock_guard lock(self->mu);
      info = {s->id, s->ttl, s->anchor, s->anchor_term};
    }
    done(info);
  });
  if (s->granting) return;
  s->granting = true;
  lock.unlock();
  Grant(s, deadline);
}

void etcd::State::Grant(const std::shared_ptr<Session>& s, TimePoint deadline) {
  pb::LeaseGrantRequest req;
  req.set_ttl(s->ttl_s);
  const TimePoint sent = clock.Now();
  auto self = SharedFromThis();
  Call("grant a session lease of " + std::to_string(s->ttl_s) + "s", std::move(req), deadline,
       &etcd::Endpoint::lease, &pb::Lease::Stub::async::LeaseGrant,
       [self, s, sent](Result<pb::LeaseGrantResponse> r) {
         Status st;
         if (r.ok()) {
           self->NoteHeader(r->header());
           if (r->id() == 0 || r->ttl() <= 0 || !r->error().empty()) {
             st = self->Malformed("grant a session lease" +
                                  (r->error().empty() ? "" : " (" + r->error() + ")"));
           } else if (r->ttl() > etcd::MaxGrantedTtl(s->ttl_s)) {
             // etcd raises a TTL below its minimum (a few election timeouts),
             // never by hours: a reply that does would keep CheckAlive() true
             // long after the lease is gone (or overflow the deadline).
             st = self->Malformed("grant a session lease of " + std::to_string(s->ttl_s) +
                                  "s: granted " + std::to_string(r->ttl()) + "s");
           }
         } else {
           st = r.status();
         }
         std::vector<std::function<void(Status)>> waiters;
         {
           std::lock_guard lock(self->mu);
           s->granting = false;
           if (st.ok()) {
             s->alive = true;
             s->id = r->id();
             s->ttl = std::chrono::seconds(r->ttl());
             s->anchor = sent;
             s->anchor_term = r->header().raft_term();
             s->in_flight.clear();
           }
           waiters.swap(s->grant_waiters);
         }
         for (auto& w : waiters) w(st);
       });
}

void etcd::State::KeepAlive(const std::shared_ptr<Session>& s, TimePoint deadline,
                            KeepAliveCallback done) {
  if (NeedsToken()) {
    auto self = SharedFromThis();
    Authenticate(current.load() % endpoints.size(), deadline,
                 [self, s, deadline, done = std::move(done)](Status st) mutable {
                   if (!st.ok()) {
                     done(st);
                     return;
                   }
                   self->KeepAlive(s, deadline, std::move(done));
                 });
    return;
  }
  std::unique_lock lock(mu);
  if (!s->alive) {
    lock.unlock();
    done(KeepAliveAnswer{0, {}, 0});
    return;
  }
  if (clock.Now() >= deadline) {
    lock.unlock();
    done(DeadlineExceededError(describe + ": keepalive: deadline passed before the request"));
    return;
  }
  KeepAliveStream* stream = ka_stream;
  if (stream == nullptr) {
    const size_t ep = current.load() % endpoints.size();
    stream = new KeepAliveStream(SharedFromThis(), ep);
    AddMetadata(stream->context());
    ka_stream = stream;
    ++streams_running;
    stream->Start(endpoints[ep].lease.get());
  }
  const uint64_t serial = ++next_serial;
  s->in_flight.emplace_back(serial, clock.Now());
  std::weak_ptr<State> weak = SharedFromThis();
  const TimerId timer = runtime->RunAt(deadline, [weak, serial] {
    if (auto st = weak.lock()) st->ExpireKeepAlive(serial);
  });
  ka_waiters.emplace(serial, std::make_pair(std::move(done), timer));
  stream->Send(s->id);
}

void etcd::State::ExpireKeepAlive(uint64_t serial) {
  KeepAliveCallback cb;
  {
    std::lock_guard lock(mu);
    auto it = ka_waiters.find(serial);
    if (it == ka_waiters.end()) return;
    cb = std::move(it->second.first);
    ka_waiters.erase(it);
    // The member has not answered for a while: start over on the next
    // endpoint. Not for a keepalive whose caller simply had a short budget (a
    // try-acquire of a few ms): tearing the shared stream down would fail
    // every other session's keepalive in flight and leave a healthy member.
    TimePoint sent = TimePoint::max();
    for (const auto& [ttl, session] : sessions) {
      for (const auto& [in_flight_serial, at] : session->in_flight) {
        if (in_flight_serial == serial) sent = at;
      }
    }
    if (ka_stream != nullptr && sent != TimePoint::max() &&
        clock.Now() - sent >= etcd::kUnresponsiveMember) {
      Rotate(ka_stream->endpoint());
      ka_stream->Cancel();
    }
  }
  cb(DeadlineExceededError(describe + ": keepalive: no answer before the deadline"));
}

void etcd::State::OnKeepAliveResponse(const pb::LeaseKeepAliveResponse& resp) {
  std::vector<std::pair<KeepAliveCallback, Result<KeepAliveAnswer>>> calls;
  std::vector<TimerId> timers;
  {
    std::lock_guard lock(mu);
    NoteHeader(resp.header());
    auto s = SessionForId(resp.id());
    if (!s || s->in_flight.empty()) return;
    auto [serial, sent] = s->in_flight.front();
    s->in_flight.pop_front();
    const int64_t granted = std::chrono::duration_cast<std::chrono::seconds>(s->ttl).count();
    const bool gone = resp.ttl() <= 0;
    if (gone) {
      s->alive = false;
      // Every keepalive still in flight for it has the same answer.
      while (!s->in_flight.empty()) {
        auto it = ka_waiters.find(s->in_flight.front().first);
        if (it != ka_waiters.end()) {
          timers.push_back(it->second.second);
          calls.emplace_back(std::move(it->second.first),
                             KeepAliveAnswer{0, sent, resp.header().raft_term()});
          ka_waiters.erase(it);
        }
        s->in_flight.pop_front();
      }
    }
    // A keepalive answers with the TTL that was granted: more is garbage (it
    // would stretch the safe deadline past what etcd keeps the key for).
    const bool garbage = !gone && resp.ttl() > granted;
    if (!gone && !garbage && sent >= s->anchor) {
      s->anchor = sent;
      s->anchor_term = resp.header().raft_term();
    }
    auto it = ka_waiters.find(serial);
    if (it != ka_waiters.end()) {
      timers.push_back(it->second.second);
      if (garbage) {
        calls.emplace_back(
            std::move(it->second.first),
            Malformed("keepalive of session lease " + std::to_string(resp.id()) + ": TTL " +
                      std::to_string(resp.ttl()) + "s, granted " + std::to_string(granted) + "s"));
      } else {
        calls.emplace_back(std::move(it->second.first),
                           KeepAliveAnswer{gone ? 0 : resp.ttl(), sent, resp.header().raft_term()});
      }
      ka_waiters.erase(it);
    }
  }
  for (TimerId t : timers) runtime->CancelTimer(t);
  for (auto& [cb, r] : calls) cb(std::move(r));
}

void etcd::State::OnKeepAliveStreamDone(KeepAliveStream* stream, const grpc::Status& status) {
  std::vector<KeepAliveCallback> calls;
  std::vector<TimerId> timers;
  Status st =
      Error(status.ok() ? grpc::Status(grpc::StatusCode::UNAVAILABLE, "stream ended") : status,
            "keepalive stream", endpoints[stream->endpoint()]);
  if (st.code() != StatusCode::kUnavailable && st.code() != StatusCode::kDeadlineExceeded &&
      st.code() != StatusCode::kUnauthenticated && st.code() != StatusCode::kPermissionDenied) {
    st = UnavailableError(st.message());
  }
  {
    std::lock_guard lock(mu);
    if (ka_stream == stream) {
      ka_stream = nullptr;
      if (etcd::Failover(status.error_code())) Rotate(stream->endpoint());
      if (etcd::NeedsNewToken(status)) ForgetToken();
      for (auto& [ttl, s] : sessions) s->in_flight.clear();
      for (auto& [serial, w] : ka_waiters) {
        calls.push_back(std::move(w.first));
        timers.push_back(w.second);
      }
      ka_waiters.clear();
    }
    StreamEnded();
  }
  for (TimerId t : timers) runtime->CancelTimer(t);
  for (auto& cb : calls) cb(st);
}

}  // namespace leasehold
