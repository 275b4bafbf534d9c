// `leasehold list [PREFIX]`: the leases a store has, one line (or JSON
// object) each.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <vector>

#include "cli.h"
#include "leasehold/future.h"

namespace leasehold::cli {

using namespace internal;

int ListCommand(const ListArgs& args, std::ostream& out, std::ostream& err) {
  int code = kExitOk;
  CommandRuntime runtime;
  std::shared_ptr<Store> store = OpenStoreOrReport(args.store_url, runtime.get(), err, &code);
  if (!store) return code;
  Promise<Result<std::vector<LeaseRecord>>> promise(nullptr);
  store->List(args.prefix, store->runtime()->clock().Now() + std::chrono::seconds(30),
              [promise](Result<std::vector<LeaseRecord>> r) mutable { promise.Set(std::move(r)); });
  const Result<std::vector<LeaseRecord>>& listed = promise.future().Wait();
  if (!listed.ok()) {
    err << "leasehold: list: " << listed.status().message() << "\n";
    return ExitCodeFor(listed.status());
  }
  if (args.json) {
    out << "[";
    for (size_t i = 0; i < listed->size(); ++i) {
      const LeaseRecord& r = (*listed)[i];
      out << (i == 0 ? "" : ",") << RecordJson(r.name, r);
    }
    out << "]\n";
    return kExitOk;
  }
  // Columns as wide as their widest cell.
  struct Row {
    std::string name, holder, sequence, left;
  };
  std::vector<Row> rows{{"NAME", "HOLDER", "SEQUENCE", "TIME LEFT"}};
  for (const LeaseRecord& r : *listed) {
    const bool held = !r.holder.empty();
    rows.push_back({Printable(r.name), held ? Printable(r.holder) : "-",
                    std::to_string(r.token.sequence),
                    held && r.remaining ? FormatDuration(*r.remaining) : "-"});
  }
  size_t w_name = 0, w_holder = 0, w_sequence = 0;
  for (const Row& row : rows) {
    w_name = std::max(w_name, row.name.size());
    w_holder = std::max(w_holder, row.holder.size());
    w_sequence = std::max(w_sequence, row.sequence.size());
  }
  for (const Row& row : rows) {
    out << row.name << std::string(w_name - row.name.size() + 2, ' ') << row.holder
        << std::string(w_holder - row.holder.size() + 2, ' ') << row.sequence
        << std::string(w_sequence - row.sequence.size() + 2, ' ') << row.left << "\n";
  }
  return kExitOk;
}

}  // namespace leasehold::cli
