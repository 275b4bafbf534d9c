// The fake Kubernetes API server's store of Lease objects: one global
// resourceVersion counter, server-owned fields (uid, creationTimestamp,
// resourceVersion), create/update/delete semantics with the update's
// compare-and-swap, and the event history that watches read.
//
// Thread-safety: none of its own. The server guards the registry with its one
// mutex (ServerState::mu); every method requires it held. Changes notify the
// condition variable given at construction.
#ifndef LEASEHOLD_SRC_BACKENDS_KUBERNETES_TESTING_FAKE_REGISTRY_H_
#define LEASEHOLD_SRC_BACKENDS_KUBERNETES_TESTING_FAKE_REGISTRY_H_

#include <condition_variable>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include "fake_common.h"

namespace leasehold::kubernetes::testing::detail {

// Which objects a list or watch covers: the URL's namespace and name, narrowed
// by a fieldSelector on metadata.name and metadata.namespace. Empty: any.
struct Selector {
  std::string url_ns;
  std::string url_name;
  std::string ns;
  std::string name;
  std::string error;  // the fieldSelector's 400 message; empty when it parsed

  bool Matches(const std::string& object_ns, const std::string& object_name) const;
};

// Parses `field_selector` (metadata.name=X,metadata.namespace=Y) for the URL's
// scope `url_ns`/`url_name`.
Selector ParseSelector(const std::string& field_selector, std::string url_ns, std::string url_name);

class Registry {
 public:
  // A change, as watches see it.
  struct Event {
    uint64_t rv;
    std::string type;  // ADDED, MODIFIED, DELETED
    std::string ns;
    std::string name;
    json object;
  };

  // Keeps the last `history_limit` events; notifies `changed` on every change.
  Registry(size_t history_limit, std::condition_variable& changed)
      : history_limit_(history_limit), changed_(changed) {}

  // The stored object, or nullptr.
  const json* Find(const std::string& ns, const std::string& name) const;
  // The stored objects `selector` matches, in (namespace, name) order.
  std::vector<json> Select(const Selector& selector) const;
  // A LeaseList of `items` (as Select returns them) at the current version.
  json ListObject(std::vector<json> items) const;

  // The API's writes, on a decoded and validated object: 201/200 with the
  // stored object, or the error Status (404, 409, 500).
  Answer Create(const std::string& ns, json obj);
  Answer Update(const std::string& ns, const std::string& name, json obj);
  Answer Delete(const std::string& ns, const std::string& name, const json& options);

  // Another writer's: stores `obj` (a JSON object) as is but for the
  // server-owned fields; returns the new resourceVersion.
  std::string Put(const std::string& ns, const std::string& name, json obj);
  // Deletes the object; false if there was none.
  bool Remove(const std::string& ns, const std::string& name);

  // Forgets the event history.
  void Compact();

  // The newest resourceVersion issued.
  uint64_t rv() const { return rv_; }
  // Watches from before this resourceVersion get 410 Gone.
  uint64_t compacted() const { return compacted_; }
  const std::deque<Event>& history() const { return history_; }

 private:
  // Records a change for watchers and wakes them.
  void Emit(const std::string& type, const std::string& ns, const std::string& name,
            const json& object);
  // Sets the server-owned fields of an object to store.
  json Stamp(json obj, const std::string& ns, const std::string& name, const json* previous);

  const size_t history_limit_;
  std::condition_variable& changed_;
  std::map<std::pair<std::string, std::string>, json> objects_;  // (ns, name) -> object
  uint64_t rv_ = 1000;  // arbitrary start: clients must not assume small numbers
  uint64_t compacted_ = 1000;
  std::deque<Event> history_;
};

}  // namespace leasehold::kubernetes::testing::detail

#endif  // LEASEHOLD_SRC_BACKENDS_KUBERNETES_TESTING_FAKE_REGISTRY_H_
