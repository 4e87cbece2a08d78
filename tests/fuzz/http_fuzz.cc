// The HTTP front door: raw request bytes through the parser as the server configures it, then
// the router with the admin API's routes and their decoders (server/http/admin_params.h). It
// must never crash; every refusal must be INVALID_ARGUMENT starting with a field name; every
// reply body must be valid JSON whose text is valid UTF-8 (JsonQuote's promise).
#include <fuzzer/FuzzedDataProvider.h>
#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include <boost/asio/buffer.hpp>
#include <string>

#include "server/http/admin_params.h"
#include "server/http/http_server.h"
#include "server/http/json.h"
#include "server/http/router.h"

using namespace spool::http;
namespace bhttp = boost::beast::http;

namespace {

void CheckRefusal(const absl::Status& s) {
  if (s.ok()) return;
  if (s.code() != absl::StatusCode::kInvalidArgument) __builtin_trap();
  std::string m(s.message());
  size_t colon = m.find(": ");
  if (colon == std::string::npos || colon == 0) __builtin_trap();
}

void CheckReply(const Response& r) {
  int code = static_cast<int>(r.result());
  if (code < 200 || code > 599) __builtin_trap();
  if (!IsValidUtf8(r.body())) __builtin_trap();
  google::protobuf::Struct parsed;
  if (!google::protobuf::util::JsonStringToMessage(r.body(), &parsed).ok()) __builtin_trap();
}

Router MakeRouter() {
  Router router;
  auto reply = [](Call& call, const absl::Status& s) {
    CheckRefusal(s);
    call.respond(s.ok() ? MakeResponse(Status::ok, "{}")
                        : JsonError(Status::bad_request, std::string(s.message())));
  };
  router.Add(bhttp::verb::get, kQueuesPath,
             [reply](Call call) { reply(call, ParseListParams(call.target.query).status()); });
  router.Add(bhttp::verb::get, kQueuePath, [reply](Call call) {
    if (call.param("queue").empty()) __builtin_trap();
    reply(call, absl::OkStatus());
  });
  router.Add(bhttp::verb::get, kMessagesPath,
             [reply](Call call) { reply(call, ParsePeekParams(call.target.query).status()); });
  router.Add(bhttp::verb::post, kRedrivePath,
             [reply](Call call) { reply(call, ParseRedriveBody(call.request.body()).status()); });
  router.Add(bhttp::verb::post, kPurgePath,
             [reply](Call call) { reply(call, ParseEmptyBody(call.request.body())); });
  router.Add(bhttp::verb::delete_, kMessagePath, [reply](Call call) {
    if (call.param("id").empty()) __builtin_trap();
    reply(call, absl::OkStatus());
  });
  return router;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const Router router = MakeRouter();
  ServerOptions options;
  options.body_limit = 64 * 1024;  // the server's check, at a size a fuzzer reaches
  options.header_limit = 4 * 1024;
  bhttp::request_parser<bhttp::string_body> parser;
  ConfigureParser(parser, options);
  parser.eager(true);
  // The whole input is all there is: feed it until the parser stops taking bytes, then tell it
  // the connection ended. A parser waiting for a declared body takes nothing from an empty
  // buffer and reports no error, so "took nothing" (not need_more) is what ends the feeding.
  boost::beast::error_code ec;
  size_t used = 0;
  while (!parser.is_done()) {
    size_t n = parser.put(boost::asio::buffer(data + used, size - used), ec);
    used += n;
    if (ec == bhttp::error::need_more) ec = {};
    if (ec) break;
    if (n == 0) {
      if (parser.got_some()) parser.put_eof(ec);
      break;
    }
  }
  if (ec || !parser.is_done()) {
    // What the server would send for a refused request must be well-formed too.
    CheckReply(JsonError(Status::bad_request, "malformed HTTP request: " + ec.message()));
    return 0;
  }
  Request request = parser.release();
  bool answered = false;
  router.Dispatch(std::move(request), [&answered](Response r) {
    if (answered) __builtin_trap();  // exactly one answer
    answered = true;
    CheckReply(r);
  });
  if (!answered) __builtin_trap();
  return 0;
}
