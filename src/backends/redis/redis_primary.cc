#include "redis_primary.h"

#include <algorithm>
#include <utility>

namespace leasehold::redis {

Status ReplyError(const Reply& r, const std::string& what) {
  const std::string code = r.ErrorCode();
  const std::string text = what + ": " + r.str.substr(0, 300);
  if (code == "NOAUTH" || code == "WRONGPASS") return UnauthenticatedError(text);
  if (code == "NOPERM") return PermissionDeniedError(text);
  if (code == "READONLY" || code == "LOADING" || code == "BUSY" || code == "MASTERDOWN" ||
      code == "TRYAGAIN" || code == "CLUSTERDOWN" || code == "OOM") {
    return UnavailableError(text);
  }
  if (code == "MOVED" || code == "ASK" || code == "CROSSSLOT") {
    return FailedPreconditionError(text + " (Redis Cluster is not supported yet: give one node)");
  }
  return DataLossError(text);  // LHDATA, WRONGTYPE, script errors: the data is not ours
}

Result<Endpoint> Primary::Locate(TimePoint deadline) const {
  if (options_.sentinel_master.empty()) {
    return Endpoint{options_.endpoints[0].host, options_.endpoints[0].port};
  }
  std::string errors;
  for (const RedisEndpoint& s : options_.endpoints) {
    Connection sc(clock_, describe_ + " (sentinel)");
    const Endpoint e{s.host, s.port};
    Status st = sc.Open(e, tls_, std::min(deadline, clock_.Now() + options_.connect_timeout));
    std::vector<Command> cmds;
    if (!options_.sentinel_password.empty()) {
      cmds.push_back(options_.sentinel_username.empty()
                         ? Command{"AUTH", options_.sentinel_password}
                         : Command{"AUTH", options_.sentinel_username, options_.sentinel_password});
    }
    cmds.push_back({"SENTINEL", "get-master-addr-by-name", options_.sentinel_master});
    if (st.ok()) {
      Result<std::vector<Reply>> out = sc.Run(cmds, deadline, "ask sentinel " + e.ToString());
      if (!out.ok()) {
        st = out.status();
      } else if (out->front().is_error()) {
        st = ReplyError(out->front(), "sentinel " + e.ToString());
      } else {
        const Reply& a = out->back();
        if (a.is_error()) {
          st = ReplyError(a, "sentinel " + e.ToString());
        } else if (a.type == Reply::Type::kArray && a.elements.size() == 2 &&
                   a.elements[0].Text() && a.elements[1].Int() && *a.elements[1].Int() > 0 &&
                   *a.elements[1].Int() <= 65535) {
          return Endpoint{*a.elements[0].Text(), static_cast<int>(*a.elements[1].Int())};
        } else {
          st = UnavailableError("sentinel " + e.ToString() + " does not know master \"" +
                                options_.sentinel_master + "\"");
        }
      }
    }
    if (st.code() == StatusCode::kUnauthenticated) return st;
    errors += (errors.empty() ? "" : "; ") + st.message();
  }
  return UnavailableError(describe_ + ": no sentinel gave the primary: " + errors);
}

std::vector<Command> Primary::Hello() const {
  std::vector<Command> cmds;
  if (!options_.password.empty()) {
    cmds.push_back(options_.username.empty()
                       ? Command{"AUTH", options_.password}
                       : Command{"AUTH", options_.username, options_.password});
  }
  if (options_.database != 0) cmds.push_back({"SELECT", std::to_string(options_.database)});
  return cmds;
}

Status Primary::Open(Connection& c, TimePoint deadline) const {
  deadline = std::min(deadline, clock_.Now() + options_.connect_timeout);
  Result<Endpoint> primary = Locate(deadline);
  if (!primary.ok()) return primary.status();
  if (Status s = c.Open(*primary, tls_, deadline); !s.ok()) return s;
  const std::vector<Command> hello = Hello();
  if (hello.empty()) return Status::Ok();
  Result<std::vector<Reply>> out = c.Run(hello, deadline, "authenticate");
  if (!out.ok()) return out.status();
  for (const Reply& r : *out) {
    if (r.is_error()) {
      c.Close();
      return ReplyError(r, describe_ + ": authenticate");
    }
  }
  return Status::Ok();
}

Status Primary::OpenChecked(Connection& conn, TimePoint deadline) const {
  conn.Close();
  if (Status s = Open(conn, deadline); !s.ok()) return s;
  std::vector<Command> checks = {{"ROLE"}};
  if (!options_.allow_eviction) checks.push_back({"CONFIG", "GET", "maxmemory-policy"});
  if (options_.require_aof) checks.push_back({"CONFIG", "GET", "appendonly"});
  Result<std::vector<Reply>> out = conn.Run(checks, deadline, "check the server");
  if (!out.ok()) return out.status();
  Status bad = CheckServer(conn, *out);
  if (!bad.ok()) conn.Close();
  return bad;
}

Status Primary::CheckServer(const Connection& conn, const std::vector<Reply>& out) const {
  const Reply& role = out[0];
  if (role.is_error()) return ReplyError(role, describe_ + ": ROLE");
  if (role.type != Reply::Type::kArray || role.elements.empty() ||
      role.elements[0].Text() != "master") {
    return UnavailableError(
        describe_ + ": " + conn.endpoint().ToString() + " is not a primary (ROLE says " +
        (role.elements.empty() ? std::string("nothing") : role.elements[0].Text().value_or("?")) +
        ")");
  }
  size_t k = 1;
  auto config = [&](const char* setting) -> Result<std::string> {
    const Reply& r = out[k++];
    if (r.is_error()) {
      return FailedPreconditionError(describe_ + ": cannot read " + setting +
                                     " (CONFIG GET refused: " + r.str.substr(0, 200) +
                                     "); set allow-eviction=1 once you have checked it yourself");
    }
    if (r.type != Reply::Type::kArray || r.elements.size() != 2 || !r.elements[1].Text()) {
      return DataLossError(describe_ + ": CONFIG GET " + setting + " answered oddly");
    }
    return *r.elements[1].Text();
  };
  if (!options_.allow_eviction) {
    Result<std::string> policy = config("maxmemory-policy");
    if (!policy.ok()) return policy.status();
    if (*policy != "noeviction") {
      return FailedPreconditionError(
          describe_ + ": maxmemory-policy is \"" + *policy +
          "\": Redis may evict lease records and fencing counters under memory pressure, "
          "silently freeing leases and restarting sequences. Set maxmemory-policy noeviction "
          "(or allow-eviction=1 to accept the risk)");
    }
  }
  if (options_.require_aof) {
    Result<std::string> aof = config("appendonly");
    if (!aof.ok()) return aof.status();
    if (*aof != "yes") {
      return FailedPreconditionError(describe_ + ": appendonly is \"" + *aof +
                                     "\" and require-aof is set: without AOF a restart loses "
                                     "the fencing counters");
    }
  }
  return Status::Ok();
}

}  // namespace leasehold::redis
