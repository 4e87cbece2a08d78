#include "server/http/http_server.h"

#include <pthread.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/ssl.hpp>
#include <mutex>
#include <optional>
#include <set>
#include <thread>

#include "absl/strings/numbers.h"
#include "engine/strings.h"
#include "server/http/json.h"

namespace spool::http {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = beast::http;
using tcp = asio::ip::tcp;
using engine::Cat;

// How long a closing connection may take to send its last response and read what the client
// still sends (so that the client sees the response rather than a reset), and how long a TLS
// handshake may take.
constexpr auto kLingerTime = std::chrono::seconds(1);
constexpr auto kHandshakeTime = std::chrono::seconds(10);

absl::StatusOr<tcp::endpoint> ParseListen(const std::string& listen) {
  size_t colon = listen.rfind(':');
  if (colon == std::string::npos) {
    return absl::InvalidArgumentError(Cat("http_listen: \"", listen, "\" is not HOST:PORT"));
  }
  std::string host = listen.substr(0, colon);
  uint32_t port = 0;
  if (!absl::SimpleAtoi(listen.substr(colon + 1), &port) || port > 65535) {
    return absl::InvalidArgumentError(Cat("http_listen: \"", listen, "\" has no valid port"));
  }
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
  }
  if (host == "localhost") host = "127.0.0.1";
  boost::system::error_code ec;
  asio::ip::address address = asio::ip::make_address(host, ec);
  if (ec) {
    return absl::InvalidArgumentError(
        Cat("http_listen: \"", host, "\" is not an IP address (or localhost)"));
  }
  return tcp::endpoint(address, static_cast<uint16_t>(port));
}

// What every connection shares with the server, and what a Responder needs to reach its
// connection: it holds this (never the connection itself), so a response that comes after
// Stop() is dropped rather than posted to a dead I/O context.
struct Shared {
  ServerOptions options;
  Handler handler;
  std::optional<asio::ssl::context> tls;
  std::atomic<int64_t> connections{0};

  std::mutex mu;
  bool stopped = false;  // guarded by mu
  std::optional<asio::io_context::executor_type> executor;
};

class SessionBase {
 public:
  virtual ~SessionBase() = default;
  virtual void Close() = 0;
};

// One connection from accept to close: read a request, hand it to the handler, write its
// response, repeat. Every member is used on the I/O thread only.
template <typename Stream>
class Session final : public SessionBase, public std::enable_shared_from_this<Session<Stream>> {
 public:
  Session(Stream stream, std::shared_ptr<Shared> shared,
          std::set<std::shared_ptr<SessionBase>>* live, bool refuse)
      : stream_(std::move(stream)), shared_(std::move(shared)), live_(live), refuse_(refuse) {
    if (!refuse_) ++shared_->connections;
  }
  ~Session() override {
    if (!refuse_) --shared_->connections;
  }

  void Start() {
    live_->insert(this->shared_from_this());
    if constexpr (kTls) {
      beast::get_lowest_layer(stream_).expires_after(kHandshakeTime);
      stream_.async_handshake(asio::ssl::stream_base::server,
                              [self = this->shared_from_this()](beast::error_code ec) {
                                if (ec) return self->Close();
                                self->Begin();
                              });
    } else {
      Begin();
    }
  }

  void Close() override {
    if (closed_) return;
    closed_ = true;
    beast::error_code ignored;
    beast::get_lowest_layer(stream_).socket().shutdown(tcp::socket::shutdown_both, ignored);
    beast::get_lowest_layer(stream_).close();
    live_->erase(this->shared_from_this());
  }

 private:
  static constexpr bool kTls = !std::is_same_v<Stream, beast::tcp_stream>;

  void Begin() {
    if (refuse_) {
      return Send(JsonError(Status::service_unavailable,
                            Cat("too many connections (at most ", shared_->options.max_connections,
                                "); try again later")),
                  /*close=*/true);
    }
    Read();
  }

  void Read() {
    parser_.emplace();
    ConfigureParser(*parser_, shared_->options);
    beast::get_lowest_layer(stream_).expires_after(
        std::chrono::milliseconds(shared_->options.idle_timeout_ms));
    bhttp::async_read(
        stream_, buffer_, *parser_,
        [self = this->shared_from_this()](beast::error_code ec, size_t) { self->OnRead(ec); });
  }

  void OnRead(beast::error_code ec) {
    if (ec == bhttp::error::header_limit) {
      return Send(JsonError(Status::request_header_fields_too_large,
                            Cat("the request line and headers exceed ",
                                shared_->options.header_limit, " bytes")),
                  true);
    }
    if (ec == bhttp::error::body_limit) {
      return Send(JsonError(Status::payload_too_large,
                            Cat("the request body exceeds ", shared_->options.body_limit,
                                " bytes (store large payloads elsewhere and send their URL)")),
                  true);
    }
    if (ec == bhttp::error::end_of_stream || ec == beast::error::timeout ||
        ec == asio::error::operation_aborted || ec == asio::error::connection_reset ||
        ec == asio::error::eof || (ec && parser_->got_some() == false)) {
      return Close();
    }
    if (ec) {
      return Send(JsonError(Status::bad_request, Cat("malformed HTTP request: ", ec.message())),
                  true);
    }
    Request request = parser_->release();
    // Framing Beast would accept but this server does not: a transfer coding other than
    // chunked (the body's end would be guessed, and what follows read as another request),
    // and an HTTP/1.1 request without Host (RFC 9112, 3.2).
    if (auto te = request.find(bhttp::field::transfer_encoding); te != request.end()) {
      std::string value(Sv(te->value()));
      for (char& c : value) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
      if (value != "chunked") {
        return Send(JsonError(Status::bad_request, "Transfer-Encoding: only chunked is accepted",
                              "Transfer-Encoding"),
                    true);
      }
    }
    if (request.version() >= 11 && request.find(bhttp::field::host) == request.end()) {
      return Send(JsonError(Status::bad_request, "an HTTP/1.1 request needs a Host header", "Host"),
                  true);
    }
    keep_alive_ = request.keep_alive();
    awaiting_ = true;
    // The handler has as long as it needs (a long poll may wait); the client's going away is
    // seen when the response is written.
    beast::get_lowest_layer(stream_).expires_never();
    std::weak_ptr<Session> weak = this->shared_from_this();
    std::shared_ptr<Shared> shared = shared_;
    shared_->handler(std::move(request), [weak, shared](Response response) {
      std::lock_guard<std::mutex> lock(shared->mu);
      if (shared->stopped) return;
      asio::post(*shared->executor, [weak, response = std::move(response)]() mutable {
        if (auto self = weak.lock()) self->Send(std::move(response), false);
      });
    });
  }

  void Send(Response response, bool close) {
    if (closed_) return;
    if (!close && !awaiting_) return;  // a second answer to one request
    awaiting_ = false;
    bool keep = keep_alive_ && !close;
    response.keep_alive(keep);
    response.set(bhttp::field::server, "spoold");
    response.prepare_payload();
    response_ = std::make_shared<Response>(std::move(response));
    beast::get_lowest_layer(stream_).expires_after(
        std::chrono::milliseconds(shared_->options.idle_timeout_ms));
    bhttp::async_write(stream_, *response_,
                       [self = this->shared_from_this(), keep](beast::error_code ec, size_t) {
                         self->response_.reset();
                         if (ec) return self->Close();
                         if (keep) return self->Read();
                         self->Linger();
                       });
  }

  // Ends the connection after its last response: stop sending, then read and discard what the
  // client still sends for a moment, so that unread bytes do not make the kernel reset the
  // connection before the client has read the response.
  void Linger() {
    if constexpr (kTls) {
      beast::get_lowest_layer(stream_).expires_after(kLingerTime);
      stream_.async_shutdown(
          [self = this->shared_from_this()](beast::error_code) { self->Close(); });
    } else {
      beast::error_code ignored;
      stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
      beast::get_lowest_layer(stream_).expires_after(kLingerTime);
      Drain();
    }
  }

  void Drain() {
    stream_.async_read_some(asio::buffer(drain_),
                            [self = this->shared_from_this()](beast::error_code ec, size_t) {
                              if (ec) return self->Close();
                              self->Drain();
                            });
  }

  Stream stream_;
  const std::shared_ptr<Shared> shared_;
  std::set<std::shared_ptr<SessionBase>>* const live_;
  const bool refuse_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  std::shared_ptr<Response> response_;
  bool keep_alive_ = false, awaiting_ = false, closed_ = false;
  char drain_[4096];
};

}  // namespace

void ConfigureParser(bhttp::request_parser<bhttp::string_body>& parser,
                     const ServerOptions& options) {
  parser.header_limit(options.header_limit);
  parser.body_limit(options.body_limit);
}

Response MakeResponse(Status status, std::string body, std::string_view content_type) {
  Response r(status, 11);
  r.set(bhttp::field::content_type, Bsv(content_type));
  r.set(bhttp::field::cache_control, "no-store");
  r.body() = std::move(body);
  return r;
}

Response JsonError(Status status, std::string_view message, std::string_view field) {
  std::string body = Cat("{\"error\": ", JsonQuote(message));
  if (!field.empty()) body += Cat(", \"field\": ", JsonQuote(field));
  body += "}\n";
  return MakeResponse(status, std::move(body));
}

struct HttpServer::Impl {
  std::shared_ptr<Shared> shared = std::make_shared<Shared>();
  asio::io_context io{1};
  std::optional<asio::executor_work_guard<asio::io_context::executor_type>> work;
  tcp::acceptor acceptor{io};
  std::set<std::shared_ptr<SessionBase>> live;  // used on the I/O thread only
  std::thread thread;
  bool stopped = false;

  void Accept() {
    acceptor.async_accept(io, [this](beast::error_code ec, tcp::socket socket) {
      if (ec == asio::error::operation_aborted || !acceptor.is_open()) return;
      if (!ec) {
        bool refuse = shared->connections.load() >= shared->options.max_connections;
        if (shared->tls) {
          using Stream = beast::ssl_stream<beast::tcp_stream>;
          std::make_shared<Session<Stream>>(
              Stream(beast::tcp_stream(std::move(socket)), *shared->tls), shared, &live, refuse)
              ->Start();
        } else {
          std::make_shared<Session<beast::tcp_stream>>(beast::tcp_stream(std::move(socket)), shared,
                                                       &live, refuse)
              ->Start();
        }
      }
      // Out of descriptors (EMFILE) and the like: keep accepting, the next may succeed.
      Accept();
    });
  }
};

HttpServer::HttpServer(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

absl::StatusOr<std::unique_ptr<HttpServer>> HttpServer::Start(const ServerOptions& options,
                                                              Handler handler) {
  if (options.max_connections < 1 || options.max_connections > 100'000) {
    return absl::InvalidArgumentError("http_max_connections: must be between 1 and 100000");
  }
  if (options.idle_timeout_ms < 100 || options.idle_timeout_ms > 3'600'000) {
    return absl::InvalidArgumentError("http_idle_timeout: must be between 100ms and 1h");
  }
  auto endpoint = ParseListen(options.listen);
  if (!endpoint.ok()) return endpoint.status();
  auto impl = std::make_unique<Impl>();
  Shared& shared = *impl->shared;
  shared.options = options;
  shared.handler = std::move(handler);
  shared.executor = impl->io.get_executor();
  if (!options.tls_cert.empty() || !options.tls_key.empty()) {
    if (options.tls_cert.empty() || options.tls_key.empty()) {
      return absl::InvalidArgumentError("HTTPS needs both --tls-cert and --tls-key");
    }
    try {
      asio::ssl::context tls(asio::ssl::context::tls_server);
      tls.set_options(asio::ssl::context::default_workarounds | asio::ssl::context::no_sslv2 |
                      asio::ssl::context::no_sslv3 | asio::ssl::context::no_tlsv1 |
                      asio::ssl::context::no_tlsv1_1 | asio::ssl::context::single_dh_use);
      tls.use_certificate_chain_file(options.tls_cert);
      tls.use_private_key_file(options.tls_key, asio::ssl::context::pem);
      shared.tls.emplace(std::move(tls));
    } catch (const boost::system::system_error& e) {
      return absl::NotFoundError(Cat("cannot load the TLS certificate ", options.tls_cert,
                                     " and key ", options.tls_key, " for HTTPS: ", e.what()));
    }
  }
  beast::error_code ec;
  tcp::acceptor& acceptor = impl->acceptor;
  acceptor.open(endpoint->protocol(), ec);
  if (!ec) acceptor.set_option(asio::socket_base::reuse_address(true), ec);
  if (!ec) acceptor.bind(*endpoint, ec);
  if (!ec) acceptor.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    return absl::UnavailableError(
        Cat("cannot listen for HTTP on ", options.listen, ": ", ec.message()));
  }
  int port = acceptor.local_endpoint().port();
  impl->work.emplace(impl->io.get_executor());
  impl->Accept();
  impl->thread = std::thread([io = &impl->io] {
    pthread_setname_np(pthread_self(), "spool-http");
    io->run();
  });
  std::unique_ptr<HttpServer> server(new HttpServer(std::move(impl)));
  server->port_ = port;
  return server;
}

HttpServer::~HttpServer() { Stop(); }

int64_t HttpServer::connections() const { return impl_->shared->connections.load(); }

void HttpServer::Stop() {
  if (impl_->stopped) return;
  impl_->stopped = true;
  Impl* impl = impl_.get();
  asio::post(impl->io, [impl] {
    beast::error_code ignored;
    impl->acceptor.close(ignored);
    // Close() erases from the set, so close copies.
    auto live = impl->live;
    for (auto& s : live) s->Close();
    impl->work.reset();
  });
  if (impl->thread.joinable()) impl->thread.join();
  std::lock_guard<std::mutex> lock(impl->shared->mu);
  impl->shared->stopped = true;
}

}  // namespace spool::http
