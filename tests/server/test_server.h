// An in-process spoold on a free loopback port, for the integration tests.
#ifndef SPOOL_TESTS_SERVER_TEST_SERVER_H_
#define SPOOL_TESTS_SERVER_TEST_SERVER_H_

#include <gtest/gtest.h>

#include <memory>
#include <string>

#include "server/server.h"

namespace spool::server {

// Options for a quiet server on 127.0.0.1:0 over data_dir; adjust before StartTestServer.
inline ServerOptions TestServerOptions(const std::string& data_dir) {
  ServerOptions o;
  o.listen = "127.0.0.1:0";
  o.engine.data_dir = data_dir;
  o.engine.log = [](const std::string&) {};
  return o;
}

// The running server, or nullptr after a test failure saying why.
inline std::unique_ptr<Server> StartTestServer(const ServerOptions& options) {
  auto s = Server::Start(options, engine::SystemClock());
  EXPECT_TRUE(s.ok()) << s.status();
  return s.ok() ? std::move(*s) : nullptr;
}

}  // namespace spool::server

#endif  // SPOOL_TESTS_SERVER_TEST_SERVER_H_
