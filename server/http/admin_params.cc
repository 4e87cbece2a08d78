#include "server/http/admin_params.h"

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <cmath>
#include <set>

#include "absl/strings/numbers.h"
#include "engine/strings.h"

namespace spool::http {
namespace {

using engine::Cat;

absl::Status OnlyKnown(const Query& query, const std::set<std::string_view>& known) {
  for (const auto& [name, value] : query) {
    if (!known.contains(name)) {
      return absl::InvalidArgumentError(Cat(name, ": unknown parameter"));
    }
  }
  return absl::OkStatus();
}

// Parses body as one JSON object. Empty (or white space) is {}.
absl::StatusOr<google::protobuf::Struct> JsonObject(std::string_view body) {
  google::protobuf::Struct out;
  size_t first = body.find_first_not_of(" \t\r\n");
  if (first == std::string_view::npos) return out;
  if (body[first] != '{') {
    return absl::InvalidArgumentError("body: must be a JSON object");
  }
  auto s = google::protobuf::util::JsonStringToMessage(std::string(body), &out);
  if (!s.ok()) {
    return absl::InvalidArgumentError(Cat("body: not valid JSON (", std::string(s.message()), ")"));
  }
  return out;
}

}  // namespace

absl::StatusOr<ListParams> ParseListParams(const Query& query) {
  if (auto s = OnlyKnown(query, {"prefix"}); !s.ok()) return s;
  ListParams p;
  if (auto it = query.find("prefix"); it != query.end()) {
    if (it->second.size() > engine::Limits::kMaxQueueName) {
      return absl::InvalidArgumentError(
          Cat("prefix: at most ", engine::Limits::kMaxQueueName, " characters"));
    }
    p.prefix = it->second;
  }
  return p;
}

absl::StatusOr<PeekParams> ParsePeekParams(const Query& query) {
  if (auto s = OnlyKnown(query, {"state", "limit", "after", "encoding"}); !s.ok()) return s;
  PeekParams p;
  if (auto it = query.find("state"); it != query.end() && !it->second.empty()) {
    const std::string& v = it->second;
    if (v == "ready") {
      p.state = engine::MessageState::kReady;
    } else if (v == "leased") {
      p.state = engine::MessageState::kLeased;
    } else if (v == "delayed") {
      p.state = engine::MessageState::kDelayed;
    } else if (v != "all") {
      return absl::InvalidArgumentError("state: must be ready, leased, delayed or all");
    }
  }
  if (auto it = query.find("limit"); it != query.end()) {
    uint32_t limit = 0;
    if (!absl::SimpleAtoi(it->second, &limit) || limit < 1 || limit > engine::Limits::kMaxPage) {
      return absl::InvalidArgumentError(
          Cat("limit: must be a whole number from 1 to ", engine::Limits::kMaxPage));
    }
    p.limit = limit;
  }
  if (auto it = query.find("after"); it != query.end()) {
    if (it->second.size() > 64) return absl::InvalidArgumentError("after: not a message id");
    p.after = it->second;
  }
  if (auto it = query.find("encoding"); it != query.end()) {
    if (it->second == "base64") {
      p.base64 = true;
    } else if (it->second != "text") {
      return absl::InvalidArgumentError("encoding: must be text or base64");
    }
  }
  return p;
}

namespace {
// A field the caller sent, as an error names it: an empty name is shown as "".
std::string FieldName(const std::string& name) { return name.empty() ? "\"\"" : name; }
}  // namespace

absl::StatusOr<RedriveParams> ParseRedriveBody(std::string_view body) {
  auto object = JsonObject(body);
  if (!object.ok()) return object.status();
  RedriveParams p;
  for (const auto& [name, value] : object->fields()) {
    if (name == "to") {
      if (value.kind_case() != google::protobuf::Value::kStringValue) {
        return absl::InvalidArgumentError("to: must be a queue name (a string)");
      }
      p.to = value.string_value();
    } else if (name == "max") {
      double v = value.number_value();
      if (value.kind_case() != google::protobuf::Value::kNumberValue || v < 0 ||
          v != std::floor(v) || v > static_cast<double>(kMaxRedrive)) {
        return absl::InvalidArgumentError(
            Cat("max: must be a whole number from 0 (every ready message) to ", kMaxRedrive));
      }
      p.max = static_cast<uint64_t>(v);
    } else {
      return absl::InvalidArgumentError(Cat(FieldName(name), ": unknown field (known: to, max)"));
    }
  }
  return p;
}

absl::Status ParseEmptyBody(std::string_view body) {
  auto object = JsonObject(body);
  if (!object.ok()) return object.status();
  if (!object->fields().empty()) {
    return absl::InvalidArgumentError(
        Cat(FieldName(object->fields().begin()->first), ": unknown field (this call takes none)"));
  }
  return absl::OkStatus();
}

}  // namespace spool::http
