#include "server/server.h"

#include <grpcpp/ext/proto_server_reflection_plugin.h>
#include <grpcpp/health_check_service_interface.h>
#include <grpcpp/security/server_credentials.h>
#include <grpcpp/server_builder.h>
#include <pthread.h>

#include <fstream>
#include <sstream>

#include "engine/strings.h"

namespace spool::server {

using engine::Cat;

namespace {
constexpr char kServiceName[] = "spool.v1.QueueService";
}

absl::StatusOr<std::unique_ptr<Server>> Server::Start(const ServerOptions& options,
                                                      std::shared_ptr<engine::Clock> clock) {
  if (options.max_request_bytes < (1 << 20) || options.max_request_bytes > (1 << 30)) {
    return absl::InvalidArgumentError("max_request_bytes: must be between 1MiB and 1GiB");
  }
  if (options.handshake_timeout_ms < 100 || options.handshake_timeout_ms > 600'000) {
    return absl::InvalidArgumentError("handshake_timeout: must be between 100ms and 10m");
  }
  if (options.max_streams < 1 || options.max_streams > 1'000'000) {
    return absl::InvalidArgumentError("max_streams: must be between 1 and 1000000");
  }
  if (options.max_streams_per_connection < 1 || options.max_streams_per_connection > 100000) {
    return absl::InvalidArgumentError("max_streams_per_connection: must be between 1 and 100000");
  }
  std::unique_ptr<Server> s(new Server());
  if (!options.auth_file.empty()) {
    auto auth = Authorizer::Load(options.auth_file);
    if (!auth.ok()) return auth.status();
    s->auth_ = std::move(*auth);
  }
  if (options.metrics_max_queues < 1 || options.metrics_max_queues > 100'000) {
    return absl::InvalidArgumentError("metrics_max_queues: must be between 1 and 100000");
  }
  s->metrics_ = std::make_unique<Metrics>(
      SPOOL_VERSION, options.engine.durability == engine::Durability::kSync ? "sync" : "async",
      options.metrics_max_queues);
  engine::Options engine_options = options.engine;
  engine_options.on_commit_group = [m = s->metrics_.get(),
                                    chained = options.engine.on_commit_group](size_t ops,
                                                                              int64_t micros) {
    m->ObserveCommitGroup(ops, micros);
    if (chained) chained(ops, micros);
  };
  auto engine = engine::Engine::Open(engine_options, std::move(clock));
  if (!engine.ok()) return engine.status();
  s->engine_ = std::move(*engine);
  s->service_ = std::make_unique<QueueService>(s->engine_.get(), s->auth_ ? &*s->auth_ : nullptr,
                                               options.max_streams);

  std::shared_ptr<grpc::ServerCredentials> credentials = grpc::InsecureServerCredentials();
  if (!options.tls_cert.empty() || !options.tls_key.empty() || !options.tls_client_ca.empty()) {
    auto read = [](const std::string& path, const char* what) -> absl::StatusOr<std::string> {
      std::ifstream in(path);
      if (!in) return absl::NotFoundError(Cat("cannot read the ", what, " ", path));
      std::stringstream text;
      text << in.rdbuf();
      return text.str();
    };
    if (options.tls_cert.empty() || options.tls_key.empty()) {
      return absl::InvalidArgumentError("TLS needs both --tls-cert and --tls-key");
    }
    auto cert = read(options.tls_cert, "TLS certificate");
    if (!cert.ok()) return cert.status();
    auto key = read(options.tls_key, "TLS key");
    if (!key.ok()) return key.status();
    grpc::SslServerCredentialsOptions tls;
    tls.pem_key_cert_pairs.push_back({*key, *cert});
    if (!options.tls_client_ca.empty()) {
      auto ca = read(options.tls_client_ca, "client CA");
      if (!ca.ok()) return ca.status();
      tls.pem_root_certs = *ca;
      tls.client_certificate_request = GRPC_SSL_REQUEST_AND_REQUIRE_CLIENT_CERTIFICATE_AND_VERIFY;
    }
    credentials = grpc::SslServerCredentials(tls);
  }

  grpc::EnableDefaultHealthCheckService(true);
  grpc::reflection::InitProtoReflectionServerBuilderPlugin();
  grpc::ServerBuilder builder;
  builder.AddListeningPort(options.listen, credentials, &s->port_);
  builder.RegisterService(s->service_.get());
  std::vector<std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>> interceptors;
  interceptors.push_back(s->metrics_->InterceptorFactory());
  builder.experimental().SetInterceptorCreators(std::move(interceptors));
  builder.SetMaxReceiveMessageSize(static_cast<int>(options.max_request_bytes));
  builder.AddChannelArgument(GRPC_ARG_SERVER_HANDSHAKE_TIMEOUT_MS,
                             static_cast<int>(options.handshake_timeout_ms));
  builder.AddChannelArgument(GRPC_ARG_MAX_CONCURRENT_STREAMS,
                             static_cast<int>(options.max_streams_per_connection));
  // Long polls sit quiet for up to a minute: keep connections alive, and accept the clients'
  // keepalive pings without calling them abusive.
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIME_MS,
                             static_cast<int>(options.keepalive_time_ms));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_TIMEOUT_MS,
                             static_cast<int>(options.keepalive_timeout_ms));
  builder.AddChannelArgument(GRPC_ARG_KEEPALIVE_PERMIT_WITHOUT_CALLS, 1);
  builder.AddChannelArgument(GRPC_ARG_HTTP2_MIN_RECV_PING_INTERVAL_WITHOUT_DATA_MS,
                             static_cast<int>(options.min_client_ping_interval_ms));
  s->server_ = builder.BuildAndStart();
  if (!s->server_ || s->port_ == 0) {
    s->engine_->Close();
    return absl::UnavailableError(
        Cat("cannot listen on ", options.listen, " (in use, or not an address of this machine)"));
  }
  if (!options.http_listen.empty()) {
    s->admin_ = std::make_unique<AdminApi>(s->engine_.get(), s->auth_ ? &*s->auth_ : nullptr,
                                           s->metrics_.get(),
                                           AdminOptions{.auth_metrics = options.http_auth_metrics});
    http::ServerOptions h;
    h.listen = options.http_listen;
    h.max_connections = options.http_max_connections;
    h.idle_timeout_ms = options.http_idle_timeout_ms;
    h.body_limit = static_cast<uint64_t>(options.max_request_bytes);
    h.tls_cert = options.tls_cert;
    h.tls_key = options.tls_key;
    auto http = http::HttpServer::Start(
        h, [admin = s->admin_.get()](http::Request&& r, http::Responder respond) {
          admin->Handle(std::move(r), std::move(respond));
        });
    if (!http.ok()) return http.status();  // ~Server stops what started
    s->http_ = std::move(*http);
  }
  grpc::HealthCheckServiceInterface* health = s->server_->GetHealthCheckService();
  health->SetServingStatus(true);
  health->SetServingStatus(kServiceName, true);
  s->health_thread_ = std::thread([p = s.get()] {
    pthread_setname_np(pthread_self(), "spool-health");
    p->WatchHealth();
  });
  return s;
}

Server::~Server() { Shutdown(); }

void Server::WatchHealth() {
  bool serving = true;
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    mu_.AwaitWithTimeout(absl::Condition(&stopping_), absl::Milliseconds(200));
    if (stopping_) break;
    bool ok = engine_->Health().ok();
    if (ok != serving) {
      serving = ok;
      server_->GetHealthCheckService()->SetServingStatus(ok);
      server_->GetHealthCheckService()->SetServingStatus(kServiceName, ok);
      std::fprintf(stderr, "spoold: health %s: %s\n", ok ? "SERVING" : "NOT_SERVING",
                   std::string(engine_->Health().message()).c_str());
    }
  }
}

void Server::Shutdown(std::chrono::milliseconds grace) {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (health_thread_.joinable()) health_thread_.join();
  if (server_) {
    server_->GetHealthCheckService()->SetServingStatus(false);
    server_->GetHealthCheckService()->SetServingStatus(kServiceName, false);
  }
  // Closing the engine first ends waiting Leases and completes every accepted call, so the
  // gRPC shutdown below has nothing left to wait for; calls that arrive meanwhile get
  // UNAVAILABLE.
  if (engine_) engine_->Close();
  if (service_) service_->StopStreams();
  if (server_) {
    server_->Shutdown(std::chrono::system_clock::now() + grace);
    server_->Wait();
  }
  // Last, so that /healthz answers 503 while the rest stops; every engine callback that could
  // still answer an HTTP request has run by now.
  if (http_) http_->Stop();
}

}  // namespace spool::server
