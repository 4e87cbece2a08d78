#include "server/admin_api.h"

#include <google/protobuf/util/json_util.h>
#include <google/protobuf/util/time_util.h>

#include <memory>

#include "absl/strings/ascii.h"
#include "absl/strings/escaping.h"
#include "engine/strings.h"
#include "server/convert.h"
#include "server/dashboard_assets.h"
#include "server/http/admin_params.h"
#include "server/http/json.h"

namespace spool::server {
namespace {

namespace bhttp = boost::beast::http;
using engine::Cat;
using http::Call;
using http::JsonError;
using http::JsonQuote;
using http::MakeResponse;
using http::Status;
using http::Sv;

// How much of a payload a peek shows as text, and how many messages it looks at (state filter)
// before it answers with what it found and a cursor to go on from.
constexpr size_t kPreviewBytes = 1024;
constexpr size_t kMaxPeekScan = 10'000;

// The one table from engine (and auth) statuses to HTTP statuses.
Status HttpStatus(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kOk:
      return Status::ok;
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kOutOfRange:
      return Status::bad_request;
    case absl::StatusCode::kUnauthenticated:
      return Status::unauthorized;
    case absl::StatusCode::kPermissionDenied:
      return Status::forbidden;
    case absl::StatusCode::kNotFound:
      return Status::not_found;
    case absl::StatusCode::kAlreadyExists:
    case absl::StatusCode::kFailedPrecondition:
    case absl::StatusCode::kAborted:
      return Status::conflict;
    case absl::StatusCode::kResourceExhausted:
      return Status::too_many_requests;
    case absl::StatusCode::kUnavailable:
      return Status::service_unavailable;
    case absl::StatusCode::kDeadlineExceeded:
      return Status::gateway_timeout;
    case absl::StatusCode::kUnimplemented:
      return Status::not_implemented;
    default:
      return Status::internal_server_error;
  }
}

using Renames = std::initializer_list<std::pair<std::string_view, std::string_view>>;

// An error reply for s. INVALID_ARGUMENT messages start with the field ("limit: ..."); that
// becomes the reply's "field". The engine names its own parameters: renames gives this API's
// name for each (the redrive's "destination" is "to").
http::Response ErrorReply(const absl::Status& s, Renames renames = {}) {
  std::string message(s.message());
  std::string field;
  if (s.code() == absl::StatusCode::kInvalidArgument) {
    size_t colon = message.find(": ");
    if (colon != std::string::npos && message.substr(0, colon).find(' ') == std::string::npos) {
      field = message.substr(0, colon);
      for (const auto& [from, to] : renames) {
        if (field == from) {
          field = std::string(to);
          message = Cat(to, message.substr(colon));
        }
      }
    }
  }
  http::Response r = JsonError(HttpStatus(s.code()), message, field);
  if (s.code() == absl::StatusCode::kUnauthenticated)
    r.set(bhttp::field::www_authenticate, "Bearer");
  return r;
}

std::string ToJson(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(m, &json, options);
  return json;
}

std::string QueueJson(const engine::QueueInfo& q) {
  v1::Queue proto;
  ToProto(q, &proto);
  return ToJson(proto);
}

std::string Rfc3339(int64_t ms) {
  google::protobuf::Timestamp t;
  ToTimestamp(ms, &t);
  return google::protobuf::util::TimeUtil::ToString(t);
}

const char* StateName(engine::MessageState s) {
  switch (s) {
    case engine::MessageState::kReady:
      return "ready";
    case engine::MessageState::kLeased:
      return "leased";
    case engine::MessageState::kDelayed:
      return "delayed";
  }
  return "unknown";
}

std::string MessageJson(const engine::PeekedMessage& m, bool force_base64) {
  std::string payload;
  std::string encoding = "text";
  bool truncated = false;
  if (!force_base64 && http::IsValidUtf8(m.payload)) {
    size_t n = http::Utf8Prefix(m.payload, kPreviewBytes);
    truncated = n < m.payload.size();
    payload = JsonQuote(std::string_view(m.payload).substr(0, n));
  } else {
    encoding = "base64";
    std::string_view shown = m.payload;
    if (!force_base64 && shown.size() > kPreviewBytes) {
      shown = shown.substr(0, kPreviewBytes);
      truncated = true;
    }
    payload = JsonQuote(absl::Base64Escape(std::string(shown)));
  }
  std::string attributes = "{";
  for (const auto& [k, v] : m.attributes) {
    if (attributes.size() > 1) attributes += ", ";
    attributes += Cat(JsonQuote(k), ": ", JsonQuote(v));
  }
  attributes += "}";
  return Cat("{\"message_id\": ", JsonQuote(m.message_id), ", \"state\": \"", StateName(m.state),
             "\", \"delivery_count\": ", m.delivery_count, ", \"enqueue_time\": \"",
             Rfc3339(m.enqueue_time_ms), "\", \"visible_time\": \"", Rfc3339(m.visible_time_ms),
             "\", \"attributes\": ", attributes, ", \"payload\": ", payload,
             ", \"payload_encoding\": \"", encoding, "\", \"payload_bytes\": ", m.payload.size(),
             ", \"payload_truncated\": ", truncated ? "true" : "false",
             ", \"dead_letter_source_queue\": ", JsonQuote(m.dead_letter_source_queue),
             ", \"dead_letter_source_id\": ", JsonQuote(m.dead_letter_source_id), "}");
}

// The host and port an Origin header names ("https://a.example:8443" -> "a.example:8443").
std::string_view OriginHost(std::string_view origin) {
  size_t scheme = origin.find("://");
  if (scheme == std::string_view::npos) return "";
  std::string_view rest = origin.substr(scheme + 3);
  return rest.substr(0, rest.find('/'));
}

std::string Lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = absl::ascii_tolower(static_cast<unsigned char>(c));
  return out;
}

// Every queue (each page holds the engine lock briefly); an error ends the listing.
absl::StatusOr<std::vector<engine::QueueInfo>> AllQueues(engine::Engine& engine,
                                                         std::string_view prefix) {
  std::vector<engine::QueueInfo> out;
  std::string token;
  do {
    auto page = engine.ListQueues(prefix, 100, token);
    if (!page.ok()) return page.status();
    for (auto& q : page->queues) out.push_back(std::move(q));
    token = page->next_page_token;
  } while (!token.empty());
  return out;
}

}  // namespace

AdminApi::AdminApi(engine::Engine* engine, const Authorizer* auth, Metrics* metrics,
                   AdminOptions options)
    : engine_(engine), auth_(auth), metrics_(metrics), options_(options) {
  using bhttp::verb;
  auto route = [this](void (AdminApi::*handler)(Call)) {
    return [this, handler](Call call) { (this->*handler)(std::move(call)); };
  };
  router_.Add(verb::get, "/healthz", route(&AdminApi::Health));
  router_.Add(verb::get, "/metrics", route(&AdminApi::ServeMetrics));
  router_.Add(verb::get, http::kQueuesPath, route(&AdminApi::ListQueues));
  router_.Add(verb::get, http::kQueuePath, route(&AdminApi::GetQueue));
  router_.Add(verb::get, http::kMessagesPath, route(&AdminApi::PeekMessages));
  router_.Add(verb::delete_, http::kMessagePath, route(&AdminApi::DeleteMessage));
  router_.Add(verb::post, http::kPurgePath, route(&AdminApi::Purge));
  router_.Add(verb::post, http::kRedrivePath, route(&AdminApi::Redrive));
  router_.Add(verb::get, "/", route(&AdminApi::Asset));
  router_.Add(verb::get, "/assets/{file}", route(&AdminApi::Asset));
}

void AdminApi::Handle(http::Request&& request, http::Responder respond) {
  bhttp::verb method = request.method();
  if (method == bhttp::verb::post || method == bhttp::verb::delete_ || method == bhttp::verb::put ||
      method == bhttp::verb::patch) {
    auto origin = request.find(bhttp::field::origin);
    if (origin != request.end()) {
      auto host = request.find(bhttp::field::host);
      std::string want = host == request.end() ? "" : Lower(Sv(host->value()));
      std::string got = Lower(OriginHost(Sv(origin->value())));
      if (want.empty() || got != want) {
        return respond(JsonError(Status::forbidden, Cat("a ", Sv(request.method_string()),
                                                        " from the page of "
                                                        "another origin (",
                                                        Sv(origin->value()), ") is refused")));
      }
    }
  }
  router_.Dispatch(std::move(request), std::move(respond));
}

absl::StatusOr<const Authorizer::Grant*> AdminApi::Authorize(const Call& call, uint8_t needed,
                                                             std::string_view queue) const {
  if (auth_ == nullptr) return nullptr;
  auto header = call.request.find(bhttp::field::authorization);
  auto grant = auth_->IdentifyHeader(header == call.request.end() ? "" : http::Sv(header->value()),
                                     "header");
  if (!grant.ok()) return grant.status();
  if (queue.empty()) return grant;
  if (needed == 0) {
    if (!(*grant)->Sees(queue)) {
      return absl::PermissionDeniedError(Cat("this token may not use queue \"", queue, "\""));
    }
  } else if (auto s = Authorizer::Check(**grant, static_cast<Permission>(needed), queue); !s.ok()) {
    return s;
  }
  return grant;
}

void AdminApi::Health(Call call) {
  if (options_.auth_metrics) {
    if (auto g = Authorize(call, 0, ""); !g.ok()) return call.respond(ErrorReply(g.status()));
  }
  absl::Status s = engine_->Health();
  if (s.ok()) return call.respond(MakeResponse(Status::ok, "{\"status\": \"SERVING\"}\n"));
  call.respond(
      MakeResponse(Status::service_unavailable, Cat("{\"status\": \"NOT_SERVING\", \"error\": ",
                                                    JsonQuote(std::string(s.message())), "}\n")));
}

void AdminApi::ServeMetrics(Call call) {
  if (options_.auth_metrics) {
    if (auto g = Authorize(call, 0, ""); !g.ok()) return call.respond(ErrorReply(g.status()));
  }
  call.respond(MakeResponse(Status::ok, metrics_->Scrape(*engine_),
                            "text/plain; version=0.0.4; charset=utf-8"));
}

void AdminApi::ListQueues(Call call) {
  auto grant = Authorize(call, 0, "");
  if (!grant.ok()) return call.respond(ErrorReply(grant.status()));
  auto params = http::ParseListParams(call.target.query);
  if (!params.ok()) return call.respond(ErrorReply(params.status()));
  auto queues = AllQueues(*engine_, params->prefix);
  if (!queues.ok()) return call.respond(ErrorReply(queues.status()));
  std::string body = "{\"queues\": [";
  engine::QueueStats totals;
  bool first = true;
  for (const engine::QueueInfo& q : *queues) {
    if (*grant != nullptr && !(*grant)->Sees(q.name)) continue;
    if (!first) body += ", ";
    first = false;
    body += QueueJson(q);
    totals.ready += q.stats.ready, totals.leased += q.stats.leased;
    totals.delayed += q.stats.delayed, totals.total += q.stats.total;
  }
  // Totals as spoolctl prints them: protobuf JSON writes uint64 as strings.
  body += Cat("], \"totals\": {\"ready\": \"", totals.ready, "\", \"leased\": \"", totals.leased,
              "\", \"delayed\": \"", totals.delayed, "\", \"total\": \"", totals.total, "\"}}\n");
  call.respond(MakeResponse(Status::ok, std::move(body)));
}

void AdminApi::GetQueue(Call call) {
  const std::string& name = call.param("queue");
  if (auto g = Authorize(call, 0, name); !g.ok()) return call.respond(ErrorReply(g.status()));
  if (!call.target.query.empty()) {
    return call.respond(ErrorReply(
        absl::InvalidArgumentError(Cat(call.target.query.begin()->first, ": unknown parameter"))));
  }
  auto q = engine_->GetQueue(name);
  if (!q.ok()) return call.respond(ErrorReply(q.status()));
  call.respond(MakeResponse(Status::ok, QueueJson(*q) + "\n"));
}

void AdminApi::PeekMessages(Call call) {
  const std::string& name = call.param("queue");
  // Peek is a consumer's read over gRPC; the dashboard's operator holds an admin token, so
  // either right will do here.
  if (auto g = Authorize(call, kConsume | kAdmin, name); !g.ok()) {
    return call.respond(ErrorReply(g.status()));
  }
  auto params = http::ParsePeekParams(call.target.query);
  if (!params.ok()) return call.respond(ErrorReply(params.status()));
  std::vector<std::string> found;
  std::string cursor = params->after, next;
  size_t scanned = 0;
  for (;;) {
    uint32_t want = params->state ? engine::Limits::kMaxPage
                                  : params->limit - static_cast<uint32_t>(found.size());
    auto page = engine_->Peek(name, want, cursor);
    if (!page.ok()) {
      return call.respond(ErrorReply(page.status(), {{"start_after", "after"}}));
    }
    for (const engine::PeekedMessage& m : page->messages) {
      ++scanned;
      cursor = m.message_id;
      if (params->state && m.state != *params->state) continue;
      found.push_back(MessageJson(m, params->base64));
      if (found.size() == params->limit) break;
    }
    bool more = !page->next_start_after.empty() ||
                (!page->messages.empty() && cursor != page->messages.back().message_id);
    if (found.size() == params->limit || scanned >= kMaxPeekScan) {
      // Where to go on from; empty only when nothing follows.
      if (more) next = cursor;
      break;
    }
    if (page->next_start_after.empty()) break;
    cursor = page->next_start_after;
  }
  std::string body = "{\"messages\": [";
  for (size_t i = 0; i < found.size(); ++i) {
    if (i > 0) body += ", ";
    body += found[i];
  }
  body += Cat("], \"next_after\": ", JsonQuote(next), "}\n");
  call.respond(MakeResponse(Status::ok, std::move(body)));
}

void AdminApi::Purge(Call call) {
  std::string name = call.param("queue");
  if (auto g = Authorize(call, kAdmin, name); !g.ok()) return call.respond(ErrorReply(g.status()));
  if (auto s = http::ParseEmptyBody(call.request.body()); !s.ok()) {
    return call.respond(ErrorReply(s));
  }
  engine_->PurgeQueue(name, [name, respond = std::move(call.respond)](auto result) {
    if (!result.ok()) return respond(ErrorReply(result.status()));
    respond(MakeResponse(
        Status::ok, Cat("{\"queue\": ", JsonQuote(name), ", \"purged\": \"", *result, "\"}\n")));
  });
}

void AdminApi::Redrive(Call call) {
  std::string from = call.param("queue");
  auto params = http::ParseRedriveBody(call.request.body());
  if (!params.ok()) return call.respond(ErrorReply(params.status()));
  if (params->to.empty()) {
    // The queue that dead-letters into this one, when there is exactly one.
    auto queues = AllQueues(*engine_, "");
    if (!queues.ok()) return call.respond(ErrorReply(queues.status()));
    std::vector<std::string> sources;
    for (const auto& q : *queues) {
      if (q.config.dead_letter_queue == from) sources.push_back(q.name);
    }
    if (sources.size() != 1) {
      return call.respond(ErrorReply(absl::InvalidArgumentError(
          sources.empty()
              ? Cat("to: no queue dead-letters into \"", from, "\"; say where to move its messages")
              : Cat("to: ", sources.size(), " queues dead-letter into \"", from,
                    "\"; say which"))));
    }
    params->to = sources[0];
  }
  for (const std::string& q : {from, params->to}) {
    if (auto g = Authorize(call, kAdmin, q); !g.ok()) return call.respond(ErrorReply(g.status()));
  }
  // Batches of at most a thousand, one engine write each, until max or nothing is ready.
  struct Run {
    engine::Engine* engine;
    std::string from, to;
    uint64_t max, moved = 0;
    http::Responder respond;

    static void Next(std::shared_ptr<Run> run) {
      uint64_t left = run->max == 0 ? engine::Limits::kMaxPage : run->max - run->moved;
      uint32_t batch = static_cast<uint32_t>(std::min<uint64_t>(left, engine::Limits::kMaxPage));
      run->engine->MoveMessages(run->from, run->to, batch, [run, batch](auto result) {
        if (!result.ok()) {
          absl::Status s = result.status();
          if (run->moved > 0) {
            s = absl::Status(s.code(),
                             Cat(std::string(s.message()), " (after ", run->moved, " were moved)"));
          }
          return run->respond(
              ErrorReply(s, {{"destination", "to"}, {"source", "queue"}, {"max_messages", "max"}}));
        }
        run->moved += result->size();
        if (result->size() < batch || (run->max > 0 && run->moved >= run->max)) {
          return run->respond(MakeResponse(
              Status::ok, Cat("{\"from\": ", JsonQuote(run->from), ", \"to\": ", JsonQuote(run->to),
                              ", \"moved\": \"", run->moved, "\"}\n")));
        }
        Next(run);
      });
    }
  };
  Run::Next(std::make_shared<Run>(
      Run{engine_, from, params->to, params->max, 0, std::move(call.respond)}));
}

void AdminApi::DeleteMessage(Call call) {
  std::string name = call.param("queue");
  if (auto g = Authorize(call, kAdmin, name); !g.ok()) return call.respond(ErrorReply(g.status()));
  engine_->DeleteMessage(name, call.param("id"), [respond = std::move(call.respond)](auto result) {
    if (!result.ok()) return respond(ErrorReply(result.status()));
    respond(MakeResponse(Status::ok, "{\"deleted\": true}\n"));
  });
}

void AdminApi::Asset(Call call) {
  std::string path = call.params.contains("file") ? "/assets/" + call.param("file") : "/";
  const DashboardAsset* asset = FindDashboardAsset(path);
  if (asset == nullptr) {
    return call.respond(JsonError(Status::not_found, Cat("no such file: ", path)));
  }
  http::Response r = MakeResponse(Status::ok, std::string(asset->body), asset->content_type);
  // The page loads nothing from elsewhere and may not be framed by another site.
  r.set("Content-Security-Policy",
        "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
        "frame-ancestors 'none'");
  r.set("X-Content-Type-Options", "nosniff");
  r.set("X-Frame-Options", "DENY");
  call.respond(std::move(r));
}

}  // namespace spool::server
