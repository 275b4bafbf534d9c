#include "fake_api_server.h"

#include <algorithm>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <utility>

#include "fake_http_front.h"
#include "fake_registry.h"
#include "fake_state.h"
#include "testing/temp_dir.h"

namespace leasehold::kubernetes::testing {

using detail::HttpFront;
using detail::ServerState;
using json = nlohmann::json;
using leasehold::testing::TempDir;
using leasehold::testing::TestPki;

std::string_view VerbName(Verb verb) {
  switch (verb) {
    case Verb::kGet:
      return "get";
    case Verb::kList:
      return "list";
    case Verb::kWatch:
      return "watch";
    case Verb::kCreate:
      return "create";
    case Verb::kUpdate:
      return "update";
    case Verb::kPatch:
      return "patch";
    case Verb::kDelete:
      return "delete";
    case Verb::kDeleteCollection:
      return "deletecollection";
    case Verb::kDiscovery:
      return "discovery";
    case Verb::kOther:
      return "other";
  }
  return "other";
}

Result<std::unique_ptr<FakeApiServer>> FakeApiServer::Start(FakeApiServerOptions options) {
  std::unique_ptr<FakeApiServer> server(new FakeApiServer());
  server->state_ = std::make_shared<ServerState>(std::move(options));
  ServerState& st = *server->state_;
  std::string dir = st.options.pki_dir;
  if (dir.empty()) {
    st.own_dir = std::make_unique<TempDir>("fake-apiserver");
    if (!st.own_dir->ok()) {
      return InternalError("fake API server: cannot create a temporary directory");
    }
    dir = st.own_dir->path();
  }
  auto pki = TestPki::Create(dir, "leasehold-client", "leasehold-testers");
  if (!pki.ok()) return pki.status();
  st.pki = std::move(*pki);
  server->listener_ = std::make_unique<HttpFront>(server->state_, 0);
  if (Status s = server->listener_->Start(); !s.ok()) return s;
  return server;
}

FakeApiServer::~FakeApiServer() { Suspend(); }

std::string FakeApiServer::url() const {
  return "https://127.0.0.1:" + std::to_string(state_->port);
}
int FakeApiServer::port() const { return state_->port; }
const TestPki& FakeApiServer::pki() const { return state_->pki; }

std::string FakeApiServer::Kubeconfig(const std::string& token, const std::string& ns) const {
  std::string out = "apiVersion: v1\nkind: Config\n";
  out += "clusters:\n- name: fake\n  cluster:\n";
  out += "    server: " + url() + "\n";
  out += "    certificate-authority: " + state_->pki.ca_file + "\n";
  out += "users:\n- name: tester\n  user:\n";
  out += "    token: " + token + "\n";
  out += "contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: tester\n";
  out += "    namespace: " + ns + "\n";
  out += "current-context: fake\n";
  return out;
}

void FakeApiServer::Suspend() {
  {
    std::lock_guard lock(state_->mu);
    ++state_->listener_epoch;  // requests in handlers of the old listener end
    state_->cv.notify_all();
  }
  listener_.reset();
}

Status FakeApiServer::Resume() {
  if (listener_) return Status::Ok();
  uint64_t epoch;
  {
    std::lock_guard lock(state_->mu);
    epoch = state_->listener_epoch;
  }
  auto listener = std::make_unique<HttpFront>(state_, epoch);
  if (Status s = listener->Start(); !s.ok()) return s;
  listener_ = std::move(listener);
  return Status::Ok();
}

void FakeApiServer::SetTokens(std::map<std::string, std::string> tokens) {
  std::lock_guard lock(state_->mu);
  state_->tokens = std::move(tokens);
}

void FakeApiServer::Deny(const std::string& user, Verb verb) {
  std::lock_guard lock(state_->mu);
  state_->denied.insert({user, verb});
}

void FakeApiServer::AllowAll() {
  std::lock_guard lock(state_->mu);
  state_->denied.clear();
}

std::optional<std::string> FakeApiServer::GetLease(const std::string& ns,
                                                   const std::string& name) const {
  std::lock_guard lock(state_->mu);
  const json* obj = state_->registry.Find(ns, name);
  if (obj == nullptr) return std::nullopt;
  return obj->dump();
}

Result<std::string> FakeApiServer::PutLease(const std::string& ns, const std::string& name,
                                            const std::string& json_text) {
  json obj;
  try {
    obj = json::parse(json_text);
  } catch (const json::exception& e) {
    return InvalidArgumentError(std::string("PutLease: not JSON: ") + e.what());
  }
  if (!obj.is_object()) return InvalidArgumentError("PutLease: not a JSON object");
  std::lock_guard lock(state_->mu);
  return state_->registry.Put(ns, name, std::move(obj));
}

bool FakeApiServer::DeleteLease(const std::string& ns, const std::string& name) {
  std::lock_guard lock(state_->mu);
  return state_->registry.Remove(ns, name);
}

std::string FakeApiServer::resource_version() const {
  std::lock_guard lock(state_->mu);
  return std::to_string(state_->registry.rv());
}

void FakeApiServer::Compact() {
  std::lock_guard lock(state_->mu);
  state_->registry.Compact();
}

void FakeApiServer::CloseWatches() {
  std::lock_guard lock(state_->mu);
  ++state_->watch_epoch;
  state_->cv.notify_all();
}

void FakeApiServer::SetDelay(Duration d) {
  std::lock_guard lock(state_->mu);
  state_->faults.delay = d;
  state_->cv.notify_all();
}

void FakeApiServer::FailNext(int n, int status, std::optional<int> retry_after_seconds,
                             std::optional<Verb> only) {
  std::lock_guard lock(state_->mu);
  state_->faults.pending.push_back({n, only, status, retry_after_seconds, std::nullopt});
}

void FakeApiServer::DropNext(int n, DropPoint point, std::optional<Verb> only) {
  std::lock_guard lock(state_->mu);
  state_->faults.pending.push_back({n, only, 0, std::nullopt, point});
}

void FakeApiServer::SetHang(bool on) {
  std::lock_guard lock(state_->mu);
  state_->faults.hang = on;
  state_->cv.notify_all();
}

std::vector<RequestRecord> FakeApiServer::Requests() const {
  std::lock_guard lock(state_->mu);
  return state_->log;
}

size_t FakeApiServer::CountRequests(Verb verb) const {
  std::lock_guard lock(state_->mu);
  return static_cast<size_t>(std::count_if(state_->log.begin(), state_->log.end(),
                                           [&](const RequestRecord& r) { return r.verb == verb; }));
}

void FakeApiServer::ClearRequests() {
  std::lock_guard lock(state_->mu);
  state_->log.clear();
}

int FakeApiServer::active_watches() const {
  std::lock_guard lock(state_->mu);
  return state_->watches_open;
}

size_t FakeApiServer::connections_accepted() const { return state_->connections.accepted.load(); }

}  // namespace leasehold::kubernetes::testing
