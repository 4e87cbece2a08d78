// The one HTTP/1.1 server of spoold, on Boost.Asio/Beast: every protocol that is not gRPC (the
// admin API, /metrics and the dashboard today; SQS next) is a Handler given to it. It owns the
// sockets, the limits and the lives of connections; a front end never sees a socket or a thread.
//
// Threads: one I/O thread runs every connection. A handler is called on it and must return
// quickly; it answers through its Responder, at once or later from any thread (after an engine
// callback, say), so a slow or long-polling request holds no thread. One request is handled at a
// time per connection (HTTP/1.1 without pipelined processing): the next is read only after the
// previous one's response is written.
//
// Limits, each answered with a one-line JSON error and the connection closed: request line and
// headers over header_limit -> 431; a body over body_limit -> 413; anything unparsable -> 400; a
// connection past max_connections -> 503. Idle connections are closed after idle_timeout.
#ifndef SPOOL_SERVER_HTTP_HTTP_SERVER_H_
#define SPOOL_SERVER_HTTP_HTTP_SERVER_H_

#include <boost/beast/http.hpp>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace spool::http {

using Request = boost::beast::http::request<boost::beast::http::string_body>;
using Response = boost::beast::http::response<boost::beast::http::string_body>;
using Status = boost::beast::http::status;

// Beast's string_view (Boost's, in 1.74) as the standard one, and back.
inline std::string_view Sv(boost::beast::string_view s) { return {s.data(), s.size()}; }
inline boost::beast::string_view Bsv(std::string_view s) { return {s.data(), s.size()}; }

// Sends the response to a request. Call it exactly once, from any thread; calling it after the
// server stopped (or the client went away) drops the response.
using Responder = std::function<void(Response)>;
using Handler = std::function<void(Request&& request, Responder respond)>;

struct ServerOptions {
  // HOST:PORT with HOST an IP address, [IPv6], or localhost; port 0 picks a free one.
  std::string listen = "127.0.0.1:0";
  // Most connections open at once; the next one gets 503 and is closed. Range 1 .. 100,000.
  // Default: 1,000.
  int64_t max_connections = 1000;
  // A connection with no request in progress for this long is closed. Also bounds how long one
  // request may take to arrive. Range 100 .. 3,600,000 ms. Default: 60,000.
  int64_t idle_timeout_ms = 60'000;
  // Request line plus headers, in bytes. Default: 16 KiB.
  uint32_t header_limit = 16 * 1024;
  // Request body, in bytes. Default: 32 MiB (spoold passes its gRPC max request size).
  uint64_t body_limit = 32 << 20;
  // PEM files; both set: serve HTTPS only. Default: plaintext.
  std::string tls_cert, tls_key;
};

// Sets a request parser's limits as the server does (the fuzz target parses the same way).
void ConfigureParser(boost::beast::http::request_parser<boost::beast::http::string_body>& parser,
                     const ServerOptions& options);

// A response with a one-line JSON body {"error": message[, "field": field]}.
Response JsonError(Status status, std::string_view message, std::string_view field = "");
// A response with body and content type; keep-alive and length are set when it is sent.
Response MakeResponse(Status status, std::string body,
                      std::string_view content_type = "application/json");

class HttpServer {
 public:
  // Binds, listens and starts the I/O thread. INVALID_ARGUMENT for a bad address or option,
  // UNAVAILABLE when the address cannot be bound, NOT_FOUND for unreadable TLS files.
  static absl::StatusOr<std::unique_ptr<HttpServer>> Start(const ServerOptions& options,
                                                           Handler handler);
  ~HttpServer();  // Stop()

  int port() const { return port_; }
  // Connections open now (for tests and metrics).
  int64_t connections() const;

  // Stops accepting, closes every connection and joins the I/O thread; responses still to come
  // are dropped. Idempotent.
  void Stop();

 private:
  struct Impl;
  explicit HttpServer(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
  int port_ = 0;
};

}  // namespace spool::http

#endif  // SPOOL_SERVER_HTTP_HTTP_SERVER_H_
