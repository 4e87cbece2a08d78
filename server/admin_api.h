// The HTTP admin front end of spoold: /healthz, /metrics, the JSON admin API under /api/v1/ and
// the dashboard at / (README "Observability"). An adapter like the gRPC service: it decodes
// (server/http/admin_params.h), calls the same engine methods spoolctl's commands reach over
// gRPC, and encodes; engine statuses become HTTP statuses in one table (admin_api.cc).
//
// Auth is the gRPC service's: with tokens configured, every /api/ call needs
// "Authorization: Bearer TOKEN" with the rights the same call needs over gRPC. State-changing
// calls (POST, DELETE) whose Origin header names another host than Host are refused (403), so a
// page of another site in the operator's browser cannot purge a queue.
#ifndef SPOOL_SERVER_ADMIN_API_H_
#define SPOOL_SERVER_ADMIN_API_H_

#include "engine/engine.h"
#include "server/auth.h"
#include "server/http/router.h"
#include "server/metrics.h"

namespace spool::server {

struct AdminOptions {
  // Require a token for /metrics and /healthz too (they are open by default so Prometheus
  // and load balancers need none). Default: false.
  bool auth_metrics = false;
};

class AdminApi {
 public:
  // REQUIRES: engine, metrics (and auth, when given) outlive the API.
  AdminApi(engine::Engine* engine, const Authorizer* auth, Metrics* metrics, AdminOptions options);

  // The http::Handler.
  void Handle(http::Request&& request, http::Responder respond);

 private:
  // OK (with the caller's grant, or nullptr without tokens), or the 401/403 to send.
  absl::StatusOr<const Authorizer::Grant*> Authorize(const http::Call& call, uint8_t needed,
                                                     std::string_view queue) const;

  void Health(http::Call call);
  void ServeMetrics(http::Call call);
  void ListQueues(http::Call call);
  void GetQueue(http::Call call);
  void PeekMessages(http::Call call);
  void Purge(http::Call call);
  void Redrive(http::Call call);
  void DeleteMessage(http::Call call);
  void Asset(http::Call call);

  engine::Engine* const engine_;
  const Authorizer* const auth_;
  Metrics* const metrics_;
  const AdminOptions options_;
  http::Router router_;
};

}  // namespace spool::server

#endif  // SPOOL_SERVER_ADMIN_API_H_
