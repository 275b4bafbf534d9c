// leasehold::testing: what a backend's fault tests watch while they break
// things -- OnLost deliveries and when they came (LossLog), how each renewal
// ended (RecordingStore), and whether two leases ever both believed they held
// (TenureSampler) -- and the check that a loss came once and on time.
//
// Thread-safety: every class may be used from the test's thread while the
// leases run on the runtime's threads.
#ifndef LEASEHOLD_TESTS_TESTING_TENURE_PROBE_H_
#define LEASEHOLD_TESTS_TESTING_TENURE_PROBE_H_

#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <functional>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <variant>
#include <vector>

#include "leasehold/forwarding_store.h"
#include "leasehold/lease.h"

namespace leasehold::testing {

inline std::string Ms(Duration d) {
  return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count()) + " ms";
}

// Polls `done` every few milliseconds until it holds or `limit` passes.
inline bool Eventually(const std::function<bool()>& done, Duration limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  for (;;) {
    if (done()) return true;
    if (std::chrono::steady_clock::now() >= until) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
}

// Records every OnLost event with the time it was delivered.
class LossLog {
 public:
  explicit LossLog(const Clock& clock) : clock_(clock) {}
  std::function<void(const LostEvent&)> Handler() {
    return [this](const LostEvent& e) {
      std::lock_guard lock(mu_);
      events_.emplace_back(e, clock_.Now());
    };
  }
  size_t size() {
    std::lock_guard lock(mu_);
    return events_.size();
  }
  std::pair<LostEvent, TimePoint> at(size_t i) {
    std::lock_guard lock(mu_);
    return events_.at(i);
  }

 private:
  const Clock& clock_;
  std::mutex mu_;
  std::vector<std::pair<LostEvent, TimePoint>> events_;
};

// Passes everything through and records how each renewal ended: "ok",
// "lost: ..." or the error.
class RecordingStore final : public ForwardingStore {
 public:
  using ForwardingStore::ForwardingStore;

  void Renew(std::vector<RenewRequest> batch, RenewCallback done) override {
    ForwardingStore::Renew(std::move(batch), [this, done = std::move(done)](
                                                 std::vector<Result<RenewOutcome>> results) {
      {
        std::lock_guard lock(mu_);
        for (const auto& r : results) {
          if (!r.ok()) {
            renewals_.push_back(r.status().ToString());
          } else if (const auto* lost = std::get_if<Lost>(&*r)) {
            renewals_.push_back("lost: " + lost->message);
          } else {
            renewals_.push_back("ok");
          }
        }
      }
      done(std::move(results));
    });
  }

  std::vector<std::string> renewals() {
    std::lock_guard lock(mu_);
    return renewals_;
  }
  // How many renewals ended in an error whose text contains `what`.
  int Errors(const std::string& what) {
    std::lock_guard lock(mu_);
    return static_cast<int>(std::count_if(renewals_.begin(), renewals_.end(), [&](auto& s) {
      return s != "ok" && s.find(what) != std::string::npos;
    }));
  }

 private:
  std::mutex mu_;
  std::vector<std::string> renewals_;
};

// Samples every sampled lease's CheckAlive() and safe_deadline() every
// millisecond: counts the samples in which two leases both said true, and
// keeps each lease's latest safe deadline (the one its loss is judged by).
class TenureSampler {
 public:
  ~TenureSampler() { Stop(); }
  void Sample(Lease& l) {
    std::lock_guard lock(mu_);
    sampled_.push_back(&l);
  }
  void Start() {
    thread_ = std::jthread([this](std::stop_token stop) {
      while (!stop.stop_requested()) {
        {
          std::lock_guard lock(mu_);
          int alive = 0;
          for (auto* l : sampled_) {
            if (auto d = l->safe_deadline()) {
              auto& latest = latest_deadline_[l];
              latest = std::max(latest, *d);
            }
            alive += l->CheckAlive() ? 1 : 0;
          }
          if (alive > 1 && overlaps_++ == 0) {
            for (auto* l : sampled_) {
              auto t = l->token();
              overlap_report_ += l->identity() + ": seq " +
                                 (t ? std::to_string(t->sequence) : std::string("-")) + "; ";
            }
          }
        }
        std::this_thread::sleep_for(std::chrono::milliseconds(1));
      }
    });
  }
  void Stop() {
    if (thread_.joinable()) {
      thread_.request_stop();
      thread_.join();
    }
  }
  // The latest safe deadline the sampler saw `l` hold.
  TimePoint LatestDeadline(Lease& l) {
    std::lock_guard lock(mu_);
    return latest_deadline_[&l];
  }
  int overlaps() const { return overlaps_.load(); }
  std::string overlap_report() {
    std::lock_guard lock(mu_);
    return overlap_report_;
  }

 private:
  std::mutex mu_;
  std::vector<Lease*> sampled_;
  std::map<Lease*, TimePoint> latest_deadline_;
  std::atomic<int> overlaps_{0};
  std::string overlap_report_;  // the leases at the first overlap (under mu_)
  std::jthread thread_;
};

// Asserts that `l` lost its tenure exactly once, as `reason`, at most
// `slack` after the latest safe deadline `sampler` saw it hold; waits up to
// 2 x ttl + 4 x slack for the loss.
inline void ExpectLostOnTime(TenureSampler& sampler, Lease& l, LossLog& losses, LossReason reason,
                             Duration ttl, Duration slack) {
  ASSERT_TRUE(Eventually([&] { return losses.size() > 0; }, ttl * 2 + slack * 4))
      << l.identity() << ": OnLost never fired";
  EXPECT_FALSE(l.CheckAlive());
  std::this_thread::sleep_for(slack);  // a second event would be a bug
  ASSERT_EQ(losses.size(), 1u);
  const auto [event, at] = losses.at(0);
  EXPECT_EQ(event.reason, reason) << event.message;
  const TimePoint deadline = sampler.LatestDeadline(l);
  EXPECT_LE(at, deadline + slack) << "OnLost " << Ms(at - deadline)
                                  << " after the safe deadline: " << event.message;
  std::printf("[ lost    ] %s, %s after the safe deadline: %s\n",
              std::string(LossReasonName(event.reason)).c_str(),
              at >= deadline ? Ms(at - deadline).c_str() : ("-" + Ms(deadline - at)).c_str(),
              event.message.c_str());
}

}  // namespace leasehold::testing

#endif  // LEASEHOLD_TESTS_TESTING_TENURE_PROBE_H_
