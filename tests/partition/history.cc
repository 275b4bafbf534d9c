#include "history.h"

#include <dirent.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <fstream>
#include <map>
#include <sstream>
#include <utility>

namespace leasehold::partition {
namespace {

std::string ReadAll(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::string Ms(int64_t ns) {
  std::ostringstream out;
  out << (ns / 1000) / 1000.0 << " ms";
  return out.str();
}

std::string Describe(const Tenure& t) { return t.holder + " seq " + std::to_string(t.sequence); }

}  // namespace

int64_t BootNs() {
  timespec ts{};
  syscall(SYS_clock_gettime, CLOCK_BOOTTIME, &ts);
  return static_cast<int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

Status ParseHolderLog(const std::string& text, const std::string& holder, const std::string& source,
                      History* out) {
  std::map<uint64_t, size_t> open;  // sequence -> index in out->tenures
  std::istringstream lines(text);
  std::string line;
  for (int n = 1; std::getline(lines, line); ++n) {
    if (line.empty()) continue;
    std::istringstream in(line);
    std::string kind, why;
    uint64_t seq = 0;
    int64_t t = 0;
    in >> kind >> seq >> t;
    if (kind == "ended") in >> why;
    const auto where = [&] { return source + ":" + std::to_string(n) + ": "; };
    if (in.fail() || t <= 0) return DataLossError(where() + "cannot parse \"" + line + "\"");
    if (kind == "acquired") {
      if (open.count(seq))
        return DataLossError(where() + "tenure " + std::to_string(seq) + " acquired twice");
      open[seq] = out->tenures.size();
      out->tenures.push_back(
          {.holder = holder, .sequence = seq, .start_ns = t, .last_alive_ns = t});
      continue;
    }
    const auto it = open.find(seq);
    if (it == open.end()) {
      return DataLossError(where() + kind + " of tenure " + std::to_string(seq) +
                           " that is not open");
    }
    Tenure& tenure = out->tenures[it->second];
    if (t < tenure.last_alive_ns) return DataLossError(where() + "time went backwards");
    if (kind == "alive") {
      tenure.last_alive_ns = t;
    } else if (kind == "ended" && (why == "lost" || why == "released" || why == "release-failed")) {
      tenure.end = why;
      open.erase(it);
    } else {
      return DataLossError(where() + "unknown record \"" + line + "\"");
    }
  }
  return Status::Ok();
}

Status ParseWriteLog(const std::string& text, const std::string& source, History* out) {
  std::istringstream lines(text);
  std::string line;
  for (int n = 1; std::getline(lines, line); ++n) {
    if (line.empty()) continue;
    std::istringstream in(line);
    Write w;
    std::string verdict;
    in >> w.at_ns >> w.sequence >> verdict >> w.holder;
    if (in.fail() || (verdict != "admitted" && verdict != "rejected")) {
      return DataLossError(source + ":" + std::to_string(n) + ": cannot parse \"" + line + "\"");
    }
    w.admitted = verdict == "admitted";
    out->writes.push_back(std::move(w));
  }
  return Status::Ok();
}

Result<History> ReadHistory(const std::string& dir) {
  History h;
  DIR* d = opendir(dir.c_str());
  if (d == nullptr) return NotFoundError("partition history: cannot open " + dir);
  std::vector<std::string> logs;
  while (const dirent* e = readdir(d)) {
    const std::string name = e->d_name;
    if (name.rfind("holder-", 0) == 0 && name.size() > 11 &&
        name.compare(name.size() - 4, 4, ".log") == 0) {
      logs.push_back(name);
    }
  }
  closedir(d);
  std::sort(logs.begin(), logs.end());
  for (const std::string& name : logs) {
    const std::string holder = name.substr(7, name.size() - 11);
    Status s = ParseHolderLog(ReadAll(dir + "/" + name), holder, dir + "/" + name, &h);
    if (!s.ok()) return s;
  }
  Status s = ParseWriteLog(ReadAll(dir + "/writes"), dir + "/writes", &h);
  if (!s.ok()) return s;
  return h;
}

Verdict Check(const History& history) {
  Verdict v;
  v.tenures = static_cast<int>(history.tenures.size());
  std::vector<const Tenure*> by_start;
  for (const Tenure& t : history.tenures) by_start.push_back(&t);
  std::sort(by_start.begin(), by_start.end(),
            [](const Tenure* a, const Tenure* b) { return a->start_ns < b->start_ns; });

  // Overlaps: sweep by start, keeping the tenure believed until the latest.
  const Tenure* latest = nullptr;
  for (const Tenure* t : by_start) {
    if (latest != nullptr && t->start_ns <= latest->last_alive_ns) {
      ++v.overlaps;
      v.problems.push_back("two holders: " + Describe(*t) + " acquired " +
                           Ms(latest->last_alive_ns - t->start_ns) + " before " +
                           Describe(*latest) + " last saw itself alive");
    }
    if (latest == nullptr || t->last_alive_ns > latest->last_alive_ns) latest = t;
  }

  // Sequences: unique, and growing with the tenures' starts.
  std::map<uint64_t, const Tenure*> seen;
  const Tenure* previous = nullptr;
  for (const Tenure* t : by_start) {
    auto [it, fresh] = seen.emplace(t->sequence, t);
    if (!fresh) {
      ++v.repeated_sequences;
      v.problems.push_back("sequence issued twice: " + Describe(*it->second) + " and " +
                           Describe(*t));
    }
    if (previous != nullptr && t->sequence < previous->sequence) {
      ++v.backward_sequences;
      v.problems.push_back("sequence went backwards: " + Describe(*t) + " started after " +
                           Describe(*previous));
    }
    previous = t;
  }

  // The fence: an admitted write never carries a sequence below one admitted
  // before it.
  uint64_t highest = 0;
  std::string highest_holder;
  for (const Write& w : history.writes) {
    if (!w.admitted) {
      ++v.stale_writes_rejected;
      continue;
    }
    ++v.writes_admitted;
    if (w.sequence < highest) {
      ++v.stale_writes_accepted;
      v.problems.push_back("stale write accepted: " + w.holder + " seq " +
                           std::to_string(w.sequence) + " after " + highest_holder + " seq " +
                           std::to_string(highest));
    } else {
      highest = w.sequence;
      highest_holder = w.holder;
    }
  }
  return v;
}

std::optional<int64_t> HeldAgainAfterNs(const History& history, int64_t heal_ns) {
  std::optional<int64_t> first;
  for (const Tenure& t : history.tenures) {
    if (t.last_alive_ns < heal_ns) continue;
    const int64_t at = std::max(t.start_ns, heal_ns);
    if (!first || at < *first) first = at;
  }
  if (!first) return std::nullopt;
  return *first - heal_ns;
}

}  // namespace leasehold::partition
