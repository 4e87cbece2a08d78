// A running spoold: the engine, the gRPC server on its port with the queue service, health and
// reflection, and a watcher that turns health NOT_SERVING after a storage error. main.cc and
// the integration tests start it the same way.
#ifndef SPOOL_SERVER_SERVER_H_
#define SPOOL_SERVER_SERVER_H_

#include <grpcpp/server.h>

#include <memory>
#include <optional>
#include <string>
#include <thread>

#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "engine/engine.h"
#include "server/admin_api.h"
#include "server/http/http_server.h"
#include "server/metrics.h"
#include "server/service.h"

namespace spool::server {

struct ServerOptions {
  // HOST:PORT to listen on; port 0 picks a free one (see Server::port()). Default: loopback.
  std::string listen = "127.0.0.1:7420";
  engine::Options engine;
  // Largest request accepted, in bytes; larger ones get RESOURCE_EXHAUSTED. Range 1 MiB ..
  // 1 GiB. Default: 32 MiB (enough for 7 maximum-size messages in one Enqueue).
  int64_t max_request_bytes = 32 << 20;
  // Most concurrent calls on one connection. Range 1 .. 100,000. Default: 1,000.
  int64_t max_streams_per_connection = 1000;
  // Open Publish streams at most, over all connections; beyond it RESOURCE_EXHAUSTED.
  int64_t max_streams = 10'000;
  // A connection that has not completed its HTTP/2 (and TLS) handshake within this many
  // milliseconds is closed, so silent or half-open connections cannot pile up. Range
  // 100 .. 600,000. Default: 10,000.
  int64_t handshake_timeout_ms = 10'000;
  // Keepalive: the server pings a connection idle this long (so long polls over NATs and
  // proxies stay up) and drops it if the ping is not answered within the timeout. Ranges
  // 1,000 .. 7,200,000 and 1,000 .. 600,000. Defaults: 60,000 and 20,000.
  int64_t keepalive_time_ms = 60'000;
  int64_t keepalive_timeout_ms = 20'000;
  // Clients may ping (even with no call open) at most this often; a client pinging more often
  // is told "too_many_pings" and disconnected. Range 1,000 .. 3,600,000. Default: 10,000.
  int64_t min_client_ping_interval_ms = 10'000;
  // Token file (auth.h); empty: no tokens, every caller may do everything. Default: empty.
  std::string auth_file;
  // PEM files. With cert and key, spoold speaks TLS only; with client_ca too, clients must
  // present a certificate signed by that CA (mutual TLS). Default: empty (plaintext).
  std::string tls_cert, tls_key, tls_client_ca;

  // HTTP (admin API, /metrics, dashboard): HOST:PORT, port 0 for any free one; empty: off.
  // Served over TLS with tls_cert/tls_key when those are set. Default: off.
  std::string http_listen;
  // Most HTTP connections at once (the next gets 503). Range 1 .. 100,000. Default: 1,000.
  int64_t http_max_connections = 1000;
  // Idle HTTP connections are closed after this. Range 100 .. 3,600,000 ms. Default: 60,000.
  int64_t http_idle_timeout_ms = 60'000;
  // Require a token for /metrics and /healthz too. Default: false (open).
  bool http_auth_metrics = false;
  // Queues with their own metric series; the rest are summed as queue="_other". Range
  // 1 .. 100,000. Default: 1,000.
  int64_t metrics_max_queues = 1000;
};

class Server {
 public:
  // Opens the engine, starts serving, and marks health SERVING. Errors name the failed step.
  static absl::StatusOr<std::unique_ptr<Server>> Start(const ServerOptions& options,
                                                       std::shared_ptr<engine::Clock> clock);
  ~Server();  // Shutdown()

  int port() const { return port_; }
  // The HTTP port, or 0 when HTTP is off.
  int http_port() const { return http_ ? http_->port() : 0; }
  engine::Engine& engine() { return *engine_; }

  // Health NOT_SERVING; ends waiting Leases (they return what they have); writes out every
  // accepted change; stops the gRPC server (calls still running after `grace` are cancelled);
  // closes the store. Idempotent.
  void Shutdown(std::chrono::milliseconds grace = std::chrono::milliseconds(2000));

 private:
  Server() = default;
  void WatchHealth();

  std::unique_ptr<Metrics> metrics_;
  std::unique_ptr<engine::Engine> engine_;
  std::optional<Authorizer> auth_;
  std::unique_ptr<AdminApi> admin_;
  std::unique_ptr<http::HttpServer> http_;
  std::unique_ptr<QueueService> service_;
  std::unique_ptr<grpc::Server> server_;
  int port_ = 0;
  absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  std::thread health_thread_;
};

}  // namespace spool::server

#endif  // SPOOL_SERVER_SERVER_H_
