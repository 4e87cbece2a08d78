// Request routing for the HTTP front ends: a table of METHOD + path pattern -> handler, the
// decoding of the request target (percent-escapes, query parameters), and the 404 and 405
// replies, in one place. Patterns are literal segments and {name} placeholders, e.g.
// "/api/v1/queues/{queue}/messages/{id}"; a placeholder matches one non-empty segment, decoded.
#ifndef SPOOL_SERVER_HTTP_ROUTER_H_
#define SPOOL_SERVER_HTTP_ROUTER_H_

#include <functional>
#include <map>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/statusor.h"
#include "server/http/http_server.h"

namespace spool::http {

struct Target {
  std::vector<std::string> segments;         // the path's segments, decoded ("/a/b%2F" -> a, b/)
  std::map<std::string, std::string> query;  // decoded; '+' is a space
};

// INVALID_ARGUMENT (the message names what is wrong) for a target that is not an absolute
// path, has a bad or NUL percent-escape, a "." or ".." segment, or a query parameter that is
// repeated or has no name.
absl::StatusOr<Target> ParseTarget(std::string_view target);

// One routed request: everything a handler needs, by value, so it can be moved into a callback.
struct Call {
  Request request;
  Target target;
  std::map<std::string, std::string> params;  // the pattern's placeholders
  Responder respond;

  const std::string& param(const std::string& name) const { return params.at(name); }
};
using Route = std::function<void(Call call)>;

class Router {
 public:
  // REQUIRES: pattern starts with '/'; no two routes share a method and pattern.
  void Add(boost::beast::http::verb method, std::string_view pattern, Route route);

  // Calls the matching route, or answers 400 (bad target), 404 (no pattern matches) or 405
  // (a pattern matches, not for this method; with an Allow header). HEAD is not served.
  void Dispatch(Request&& request, Responder respond) const;

 private:
  struct Entry {
    boost::beast::http::verb method;
    std::vector<std::string> pattern;  // "{name}" for a placeholder
    Route route;
  };
  std::vector<Entry> entries_;
};

}  // namespace spool::http

#endif  // SPOOL_SERVER_HTTP_ROUTER_H_
