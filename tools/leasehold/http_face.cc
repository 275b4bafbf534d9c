#include "http_face.h"

#include <sys/socket.h>

#include "cli.h"
#ifdef LEASEHOLD_HAVE_PROMETHEUS
#include <prometheus/registry.h>
#include <prometheus/text_serializer.h>

#include "leasehold/observers/prometheus.h"
#endif

namespace leasehold::cli {

Result<std::pair<std::string, int>> ParseListenAddress(std::string_view text,
                                                       std::string_view flag) {
  auto bad = [&](const std::string& why) {
    return InvalidArgumentError(std::string(flag) + " \"" + std::string(text) + "\": " + why +
                                " (HOST:PORT, e.g. 127.0.0.1:8080 or [::1]:8080)");
  };
  std::string_view host, port;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string_view::npos) return bad("no ']' after the IPv6 address");
    host = text.substr(1, close - 1);
    if (text.substr(close + 1, 1) != ":") return bad("no ':PORT' after the address");
    port = text.substr(close + 2);
  } else {
    const size_t colon = text.rfind(':');
    if (colon == std::string_view::npos) return bad("no ':PORT'");
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
    if (host.find(':') != std::string_view::npos) return bad("an IPv6 address needs [brackets]");
  }
  if (host.empty()) return bad("no host");
  if (port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string_view::npos) {
    return bad("the port is not a number");
  }
  const int p = std::stoi(std::string(port));
  if (p < 1 || p > 65535) return bad("the port is not in 1..65535");
  return std::make_pair(std::string(host), p);
}

}  // namespace leasehold::cli

namespace leasehold::cli::internal {

#ifdef LEASEHOLD_HAVE_PROMETHEUS
struct HttpFace::Metrics {
  std::shared_ptr<prometheus::Registry> registry = std::make_shared<prometheus::Registry>();
};
#else
struct HttpFace::Metrics {};
#endif

HttpFace::HttpFace() : metrics_(std::make_unique<Metrics>()) {
#ifdef LEASEHOLD_HAVE_PROMETHEUS
  observer_ = std::make_shared<PrometheusObserver>(metrics_->registry);
#endif
  server_.Get(
      "/metrics", [metrics = metrics_.get()](const httplib::Request&, httplib::Response& res) {
#ifdef LEASEHOLD_HAVE_PROMETHEUS
        res.set_content(prometheus::TextSerializer().Serialize(metrics->registry->Collect()),
                        "text/plain; version=0.0.4");
#else
    (void)metrics;
    res.status = 501;
    res.set_content("leasehold was built without the Prometheus adapter\n", "text/plain");
#endif
      });
  server_.set_socket_options([](socket_t sock) {
    int yes = 1;
    setsockopt(sock, SOL_SOCKET, SO_REUSEADDR, &yes, sizeof yes);
  });
}

HttpFace::~HttpFace() { Stop(); }

void HttpFace::Stop() {
  if (thread_.joinable()) {
    server_.stop();
    thread_.join();
  }
}

Status HttpFace::Listen(std::string_view flag, std::string_view listen,
                        std::function<Status()> health) {
  auto address = ParseListenAddress(listen, flag);
  if (!address.ok()) return address.status();
  server_.Get("/healthz",
              [health = std::move(health)](const httplib::Request&, httplib::Response& res) {
                const Status s = health();
                if (s.ok()) {
                  res.set_content("ok\n", "text/plain");
                } else {
                  res.status = 503;
                  res.set_content(std::string(s.message()) + "\n", "text/plain");
                }
              });
  if (!server_.bind_to_port(address->first, address->second)) {
    return UnavailableError("cannot listen on " + std::string(listen) + " (" + std::string(flag) +
                            "): address in use, or not an address of this host");
  }
  thread_ = std::thread([this] { server_.listen_after_bind(); });
  return Status::Ok();
}

}  // namespace leasehold::cli::internal
