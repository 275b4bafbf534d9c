#include "kit/observations.h"

#include <algorithm>

namespace leasehold::kit {

std::shared_ptr<ObservationBook> ObservationBook::For(bool share,
                                                      const std::shared_ptr<Runtime>& runtime) {
  static const auto process = std::make_shared<ObservationBook>();
  if (!share) return std::make_shared<ObservationBook>();
  if (&runtime->clock() == &RealClock()) return process;
  // One book per live runtime; entries of runtimes that are gone are dropped
  // (a new runtime at the same address gets a new book).
  struct Entry {
    std::weak_ptr<Runtime> runtime;
    std::weak_ptr<ObservationBook> book;
  };
  static std::mutex mu;
  static std::unordered_map<const Runtime*, Entry> books;
  std::lock_guard lock(mu);
  std::erase_if(books, [](const auto& e) { return e.second.runtime.expired(); });
  Entry& e = books[runtime.get()];
  auto book = e.book.lock();
  if (!book || e.runtime.lock() != runtime) {
    book = std::make_shared<ObservationBook>();
    e = {runtime, book};
  }
  return book;
}

Duration ObservationBook::Observe(const std::string& key, const std::string& version,
                                  TimePoint now) {
  std::lock_guard lock(mu_);
  Seen& s = seen_[key];
  if (s.version != version) s = {version, now};
  return now - s.since;
}

Duration ObservationWindow(std::optional<Duration> record_ttl, Duration our_ttl,
                           double max_factor) {
  const auto cap = std::chrono::duration_cast<Duration>(
      std::chrono::duration<double, std::nano>(static_cast<double>(our_ttl.count()) * max_factor));
  if (!record_ttl || *record_ttl <= Duration::zero()) return cap;
  return std::min(cap, *record_ttl);
}

}  // namespace leasehold::kit
