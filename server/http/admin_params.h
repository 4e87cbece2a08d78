// The admin API's request decoders: query parameters and JSON bodies into checked values. They
// depend on neither the engine's code nor gRPC, so the HTTP fuzz target runs them on hostile
// input as the server does. Each error is INVALID_ARGUMENT whose message starts with the field
// ("limit: must be between 1 and 1000").
#ifndef SPOOL_SERVER_HTTP_ADMIN_PARAMS_H_
#define SPOOL_SERVER_HTTP_ADMIN_PARAMS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"
#include "engine/types.h"

namespace spool::http {

// The admin API's endpoints, as Router patterns.
inline constexpr char kQueuesPath[] = "/api/v1/queues";
inline constexpr char kQueuePath[] = "/api/v1/queues/{queue}";
inline constexpr char kMessagesPath[] = "/api/v1/queues/{queue}/messages";
inline constexpr char kMessagePath[] = "/api/v1/queues/{queue}/messages/{id}";
inline constexpr char kPurgePath[] = "/api/v1/queues/{queue}/purge";
inline constexpr char kRedrivePath[] = "/api/v1/queues/{queue}/redrive";

using Query = std::map<std::string, std::string>;

// GET /api/v1/queues?prefix=P
struct ListParams {
  std::string prefix;
};
absl::StatusOr<ListParams> ParseListParams(const Query& query);

// GET .../messages?state=ready|leased|delayed&limit=N&after=ID&encoding=text|base64
struct PeekParams {
  std::optional<engine::MessageState> state;  // unset: every state
  uint32_t limit = 20;                        // 1 .. 1000
  std::string after;                          // a message id; empty: from the first
  bool base64 = false;                        // the whole payload, base64, always
};
inline constexpr uint32_t kDefaultPeekLimit = 20;
absl::StatusOr<PeekParams> ParsePeekParams(const Query& query);

// POST .../redrive with {"to": "queue", "max": N}; an empty body is {}.
struct RedriveParams {
  std::string to;    // empty: the one queue that dead-letters into the source
  uint64_t max = 0;  // 0: every ready message
};
inline constexpr uint64_t kMaxRedrive = 1'000'000'000;
absl::StatusOr<RedriveParams> ParseRedriveBody(std::string_view body);

// POST bodies that take nothing (purge) must be empty or {}.
absl::Status ParseEmptyBody(std::string_view body);

}  // namespace spool::http

#endif  // SPOOL_SERVER_HTTP_ADMIN_PARAMS_H_
