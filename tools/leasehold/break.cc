// `leasehold break`: the operator's tool -- force a lease free whoever holds it.
// The store keeps the sequence, so the next acquire gets a higher one and every
// resource that fences on it rejects the broken holder's late writes. The
// broken holder itself learns it at its next renewal (its `run` exits 76).
#include "cli.h"
#include "leasehold/future.h"

namespace leasehold::cli {

using namespace internal;

namespace {
constexpr Duration kBreakTimeout = std::chrono::seconds(10);
}  // namespace

int BreakCommand(const BreakArgs& args, std::ostream& out, std::ostream& err) {
  if (!args.yes) {
    err << "leasehold break: breaking a lease needs --yes (its holder keeps running until its "
           "next renewal; fenced resources reject it from now on)\n";
    return kExitUsage;
  }
  int code = kExitOk;
  CommandRuntime runtime;
  std::shared_ptr<Store> store = OpenOrReport(args.store_url, args.name, runtime.get(), err, &code);
  if (!store) return code;
  // What is about to be broken, for the operator's record. Another tenure may
  // start between this read and the break; the break frees that one too.
  auto before = InspectNow(*store, args.name);
  if (!before.ok()) {
    err << "leasehold: break \"" << args.name << "\": " << before.status().message() << "\n";
    return ExitCodeFor(before.status());
  }
  Promise<Status> promise(nullptr);
  store->Break(args.name, store->runtime()->clock().Now() + kBreakTimeout,
               [promise](Status s) mutable { promise.Set(std::move(s)); });
  const Status& status = promise.future().Wait();
  if (status.code() == StatusCode::kUnimplemented) {
    err << "leasehold: break \"" << args.name << "\": the store " << store->Describe()
        << " cannot break leases: " << status.message() << "\n";
    return kExitUnavailable;
  }
  if (!status.ok()) {
    err << "leasehold: break \"" << args.name << "\": " << status.message() << "\n";
    return ExitCodeFor(status);
  }
  const std::optional<LeaseRecord>& r = *before;
  if (IsHeld(r)) {
    out << "broke lease \"" << args.name << "\" held by " << r->holder << " at sequence "
        << r->token.sequence << "\n"
        << "the next acquire gets a sequence above " << r->token.sequence
        << ": resources fencing on it reject the broken holder\n";
  } else {
    out << "lease \"" << args.name << "\" was not held"
        << (r ? " (last sequence " + std::to_string(r->token.sequence) + ")" : "")
        << "; nothing to break\n";
  }
  return kExitOk;
}

}  // namespace leasehold::cli
