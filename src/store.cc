#include "leasehold/store.h"

namespace leasehold {

std::string_view LossReasonName(LossReason reason) noexcept {
  switch (reason) {
    case LossReason::kExpired:
      return "expired";
    case LossReason::kTakenOver:
      return "taken over";
    case LossReason::kDeleted:
      return "deleted";
    case LossReason::kUnauthorized:
      return "unauthorized";
    case LossReason::kBackendError:
      return "backend error";
  }
  return "unknown";
}

Store::Store(std::shared_ptr<Runtime> runtime) : runtime_(std::move(runtime)) {}

Store::~Store() = default;

Status Store::ValidateName(std::string_view name) const {
  if (name.empty()) return InvalidArgumentError(Describe() + ": lease name is empty");
  if (name.size() > 253) {
    return InvalidArgumentError(Describe() + ": lease name is " + std::to_string(name.size()) +
                                " bytes long; at most 253 are allowed");
  }
  if (name.find('\0') != std::string_view::npos) {
    return InvalidArgumentError(Describe() + ": lease name contains a NUL byte");
  }
  return Status::Ok();
}

void Store::Break(std::string name, TimePoint, StatusCallback done) {
  done(UnimplementedError(Describe() + ": breaking lease \"" + name + "\" is not supported"));
}

void Store::List(std::string, TimePoint, ListCallback done) {
  done(UnimplementedError(Describe() + ": listing leases is not supported"));
}

WatchId Store::Watch(const std::string&, const std::string&, Task) { return 0; }
void Store::CancelWatch(WatchId) noexcept {}

}  // namespace leasehold
