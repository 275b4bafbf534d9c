// `leasehold status`: who holds a lease, with which sequence, for how long --
// and the helpers `watch` and `break` share with it (declared in
// command_util, below, until they move into cli.h).
#include <time.h>

#include <chrono>
#include <cstdio>
#include <nlohmann/json.hpp>

#include "cli.h"
#include "leasehold/future.h"
#include "leasehold/lease.h"

namespace leasehold::cli::internal {

// Parses `url`, opens the store on `runtime` and checks that it can hold
// `name`. On failure writes "leasehold: <why>" to `err`, sets `*exit_code` and
// returns null.
std::shared_ptr<Store> OpenOrReport(const std::string& url, const std::string& name,
                                    const std::shared_ptr<Runtime>& runtime, std::ostream& err,
                                    int* exit_code) {
  std::shared_ptr<Store> store = OpenStoreOrReport(url, runtime, err, exit_code);
  if (!store) return nullptr;
  if (Status s = store->ValidateName(name); !s.ok()) {
    err << "leasehold: " << s.message() << "\n";
    *exit_code = kExitUsage;
    return nullptr;
  }
  return store;
}

std::shared_ptr<Store> OpenStoreOrReport(const std::string& url,
                                         const std::shared_ptr<Runtime>& runtime, std::ostream& err,
                                         int* exit_code) {
  auto spec = ParseStoreUrl(url);
  if (!spec.ok()) {
    err << "leasehold: " << spec.status().message() << "\n";
    *exit_code = kExitUsage;
    return nullptr;
  }
  auto store = OpenStore(*spec, runtime);
  if (!store.ok()) {
    err << "leasehold: " << store.status().message() << "\n";
    *exit_code = store.status().code() == StatusCode::kUnimplemented ? kExitUnavailable
                                                                     : ExitCodeFor(store.status());
    return nullptr;
  }
  return *store;
}

// Reads the record of `name`; std::nullopt when the store has none.
Result<std::optional<LeaseRecord>> InspectNow(Store& store, const std::string& name,
                                              Duration timeout) {
  Promise<Result<LeaseRecord>> promise(nullptr);
  store.Inspect(name, store.runtime()->clock().Now() + timeout,
                [promise](Result<LeaseRecord> r) mutable { promise.Set(std::move(r)); });
  const Result<LeaseRecord>& r = promise.future().Wait();
  if (!r.ok()) {
    if (r.status().code() == StatusCode::kNotFound) return std::optional<LeaseRecord>();
    return r.status();
  }
  return std::optional<LeaseRecord>(*r);
}

bool IsHeld(const std::optional<LeaseRecord>& record) { return record && !record->holder.empty(); }

// "2024-05-01T12:00:00.123Z"; "-" for an unset time.
std::string FormatWallTime(WallTime t) {
  if (t.time_since_epoch().count() <= 0) return "-";
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch());
  const time_t secs = static_cast<time_t>(ms.count() / 1000);
  struct tm tm {};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms.count() % 1000));
  return buf;
}

// The status/watch JSON object: exactly name, held, holder, sequence, token,
// expires_in_ms. holder, token and expires_in_ms are null when not held;
// sequence is that of the current (or last) tenure, 0 if never held.
std::string RecordJson(const std::string& name, const std::optional<LeaseRecord>& record) {
  const bool held = IsHeld(record);
  nlohmann::json j;
  j["name"] = name;
  j["held"] = held;
  j["holder"] = held ? nlohmann::json(record->holder) : nlohmann::json(nullptr);
  j["sequence"] = record ? record->token.sequence : 0;
  j["token"] = held ? nlohmann::json(record->token.value) : nlohmann::json(nullptr);
  if (held && record->remaining) {
    j["expires_in_ms"] =
        std::chrono::duration_cast<std::chrono::milliseconds>(*record->remaining).count();
  } else {
    j["expires_in_ms"] = nullptr;
  }
  return JsonText(j);
}

std::string Printable(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c < 0x20 || c == 0x7f) {
      char escaped[5];
      std::snprintf(escaped, sizeof escaped, "\\x%02x", c);
      out += escaped;
    } else {
      out += ch;
    }
  }
  return out;
}

std::string JsonText(const nlohmann::json& j) {
  return j.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace);
}

// One line for `watch`: "<time> NAME held by H (sequence S, N left)" or free.
std::string RecordLine(const std::string& name, const std::optional<LeaseRecord>& record,
                       WallTime now) {
  std::string line = FormatWallTime(now) + " \"" + Printable(name) + "\" ";
  if (IsHeld(record)) {
    line += "held by " + Printable(record->holder) + " (sequence " +
            std::to_string(record->token.sequence);
    if (record->remaining) line += ", " + FormatDuration(*record->remaining) + " left";
    line += ")";
  } else if (record) {
    line += "free (last sequence " + std::to_string(record->token.sequence) + ")";
  } else {
    line += "free (never held)";
  }
  return line;
}

}  // namespace leasehold::cli::internal

namespace leasehold::cli {

using namespace internal;

int StatusCommand(const StatusArgs& args, std::ostream& out, std::ostream& err) {
  int code = kExitOk;
  CommandRuntime runtime;
  std::shared_ptr<Store> store = OpenOrReport(args.store_url, args.name, runtime.get(), err, &code);
  if (!store) return code;
  auto record = InspectNow(*store, args.name);
  if (!record.ok()) {
    err << "leasehold: status of \"" << args.name << "\": " << record.status().message() << "\n";
    return ExitCodeFor(record.status());
  }
  if (args.json) {
    out << RecordJson(args.name, *record) << "\n";
    return kExitOk;
  }
  const std::optional<LeaseRecord>& r = *record;
  out << "lease     " << args.name << "\n"
      << "store     " << store->Describe() << "\n";
  if (!r) {
    out << "state     free (never held in this store)\n";
    return kExitOk;
  }
  if (IsHeld(r)) {
    out << "state     held\n"
        << "holder    " << Printable(r->holder) << "\n"
        << "sequence  " << r->token.sequence << "\n"
        << "token     " << Printable(r->token.value) << "\n"
        << "acquired  " << FormatWallTime(r->acquired_at) << "\n"
        << "renewed   " << FormatWallTime(r->renewed_at) << "\n"
        << "time left "
        << (r->remaining ? FormatDuration(*r->remaining) + " (as this client sees it)" : "unknown")
        << "\n";
  } else {
    out << "state     free\n"
        << "sequence  " << r->token.sequence
        << " (last tenure; the next acquire gets a higher one)\n"
        << "acquired  " << FormatWallTime(r->acquired_at) << " (last tenure)\n"
        << "renewed   " << FormatWallTime(r->renewed_at) << " (last tenure)\n";
  }
  return kExitOk;
}

}  // namespace leasehold::cli
