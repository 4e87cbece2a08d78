#include "server/http/router.h"

#include "absl/strings/str_join.h"
#include "engine/strings.h"

namespace spool::http {
namespace {

namespace bhttp = boost::beast::http;
using engine::Cat;

int HexValue(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

absl::StatusOr<std::string> Decode(std::string_view in, bool plus_is_space, std::string_view what) {
  std::string out;
  out.reserve(in.size());
  for (size_t i = 0; i < in.size(); ++i) {
    char c = in[i];
    if (c == '%') {
      int hi = i + 1 < in.size() ? HexValue(in[i + 1]) : -1;
      int lo = i + 2 < in.size() ? HexValue(in[i + 2]) : -1;
      if (hi < 0 || lo < 0) {
        return absl::InvalidArgumentError(Cat(what, ": bad percent-escape \"",
                                              in.substr(i, std::min<size_t>(3, in.size() - i)),
                                              "\""));
      }
      char decoded = static_cast<char>(hi * 16 + lo);
      if (decoded == '\0') return absl::InvalidArgumentError(Cat(what, ": contains %00"));
      out += decoded;
      i += 2;
    } else if (c == '+' && plus_is_space) {
      out += ' ';
    } else {
      out += c;
    }
  }
  return out;
}

// s split at every sep; empty pieces are kept unless skip_empty.
std::vector<std::string_view> Split(std::string_view s, char sep, bool skip_empty = false) {
  std::vector<std::string_view> out;
  for (;;) {
    size_t at = s.find(sep);
    std::string_view piece = s.substr(0, at);
    if (!piece.empty() || !skip_empty) out.push_back(piece);
    if (at == std::string_view::npos) return out;
    s = s.substr(at + 1);
  }
}

std::vector<std::string> SplitPattern(std::string_view pattern) {
  std::vector<std::string> out;
  for (std::string_view s : Split(pattern.substr(1), '/')) out.emplace_back(s);
  return out;
}

bool IsPlaceholder(const std::string& s) {
  return s.size() > 2 && s.front() == '{' && s.back() == '}';
}

}  // namespace

absl::StatusOr<Target> ParseTarget(std::string_view target) {
  if (target.empty() || target[0] != '/') {
    return absl::InvalidArgumentError("path: the request target must be an absolute path");
  }
  Target out;
  size_t q = target.find('?');
  std::string_view path = target.substr(0, q);
  std::string_view query = q == std::string_view::npos ? "" : target.substr(q + 1);
  if (size_t hash = query.find('#'); hash != std::string_view::npos) query = query.substr(0, hash);
  for (std::string_view raw : Split(path.substr(1), '/')) {
    auto segment = Decode(raw, false, "path");
    if (!segment.ok()) return segment.status();
    if (*segment == "." || *segment == "..") {
      return absl::InvalidArgumentError("path: \".\" and \"..\" segments are not allowed");
    }
    out.segments.push_back(std::move(*segment));
  }
  if (!query.empty()) {
    for (std::string_view pair : Split(query, '&', true)) {
      size_t eq = pair.find('=');
      auto name = Decode(pair.substr(0, eq), true, "query");
      if (!name.ok()) return name.status();
      if (name->empty()) return absl::InvalidArgumentError("query: a parameter has no name");
      auto value = Decode(eq == std::string_view::npos ? "" : pair.substr(eq + 1), true, *name);
      if (!value.ok()) return value.status();
      if (!out.query.emplace(*name, std::move(*value)).second) {
        return absl::InvalidArgumentError(Cat(*name, ": given more than once"));
      }
    }
  }
  return out;
}

void Router::Add(bhttp::verb method, std::string_view pattern, Route route) {
  entries_.push_back({method, SplitPattern(pattern), std::move(route)});
}

void Router::Dispatch(Request&& request, Responder respond) const {
  auto target = ParseTarget(Sv(request.target()));
  if (!target.ok()) {
    std::string message(target.status().message());
    size_t colon = message.find(':');
    return respond(JsonError(Status::bad_request, message,
                             colon == std::string::npos ? "" : message.substr(0, colon)));
  }
  std::vector<std::string> allowed;
  for (const Entry& e : entries_) {
    if (e.pattern.size() != target->segments.size()) continue;
    std::map<std::string, std::string> params;
    bool match = true;
    for (size_t i = 0; i < e.pattern.size() && match; ++i) {
      const std::string& want = e.pattern[i];
      const std::string& got = target->segments[i];
      if (IsPlaceholder(want)) {
        match = !got.empty();
        params[want.substr(1, want.size() - 2)] = got;
      } else {
        match = want == got;
      }
    }
    if (!match) continue;
    if (e.method != request.method()) {
      allowed.emplace_back(Sv(bhttp::to_string(e.method)));
      continue;
    }
    Call call{std::move(request), std::move(*target), std::move(params), std::move(respond)};
    return e.route(std::move(call));
  }
  if (!allowed.empty()) {
    Response r = JsonError(Status::method_not_allowed,
                           Cat(Sv(request.method_string()), " is not allowed here; use ",
                               absl::StrJoin(allowed, " or ")));
    r.set(bhttp::field::allow, absl::StrJoin(allowed, ", "));
    return respond(std::move(r));
  }
  respond(JsonError(Status::not_found, Cat("no such endpoint: ", Sv(request.method_string()), " ",
                                           Sv(request.target()))));
}

}  // namespace spool::http
