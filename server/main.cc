// spoold: flags, signals, start-up and shutdown order. Everything else lives in server.cc and
// the engine.
#include <signal.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>

#include "absl/synchronization/mutex.h"
#include "engine/fault_fs.h"
#include "server/server.h"

namespace {

bool IsLoopback(const std::string& listen) {
  return listen.rfind("127.", 0) == 0 || listen.rfind("localhost:", 0) == 0 ||
         listen.rfind("[::1]:", 0) == 0;
}

}  // namespace

int main(int argc, char** argv) {
  // Debian's Abseil checks every mutex acquisition for lock-order cycles; that is a debugging
  // aid that costs on every lock of the hot path.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  spool::server::ServerOptions options;
  options.engine.data_dir = "spool-data";
  std::string durability = "sync";
  std::string port_file;
  bool allow_insecure = false;

  CLI::App app{"spoold: the Spool queue server (spool.v1.QueueService over gRPC)."};
  app.footer(
      "Example:\n  spoold --listen 127.0.0.1:7420 --data-dir /var/lib/spool\n\n"
      "gRPC 1.51 as shipped by Debian 12 has known denial-of-service CVEs: keep the port on\n"
      "loopback or a private network, or behind a maintained proxy (see README).");
  app.add_option("--listen", options.listen, "HOST:PORT to serve on (port 0: any free port)")
      ->capture_default_str();
  app.add_option("--data-dir", options.engine.data_dir, "Directory of the store")
      ->capture_default_str();
  app.add_option("--durability", durability,
                 "sync: fsync every change before replying (survives power loss); async: write "
                 "the log without fsync (survives a crash of spoold, not of the machine)")
      ->check(CLI::IsMember({"sync", "async"}))
      ->capture_default_str();
  app.add_option("--max-request-bytes", options.max_request_bytes,
                 "Largest request accepted; larger ones get RESOURCE_EXHAUSTED")
      ->check(CLI::Range(int64_t{1} << 20, int64_t{1} << 30))
      ->capture_default_str();
  app.add_option("--max-waiting-leases", options.engine.max_waiters,
                 "Most Lease calls waiting at once; beyond it a Lease returns at once")
      ->check(CLI::Range(0, 1'000'000))
      ->capture_default_str();
  app.add_option("--max-streams", options.max_streams,
                 "Most open Publish and Subscribe streams at once, over all connections; beyond it a new "
                 "stream ends with RESOURCE_EXHAUSTED")
      ->check(CLI::Range(1, 1'000'000))
      ->capture_default_str();
  app.add_option("--max-streams-per-connection", options.max_streams_per_connection,
                 "Most concurrent calls on one client connection")
      ->check(CLI::Range(1, 100'000))
      ->capture_default_str();
  app.add_option("--handshake-timeout-ms", options.handshake_timeout_ms,
                 "Close connections that have not completed their handshake by then")
      ->check(CLI::Range(int64_t{100}, int64_t{600'000}))
      ->capture_default_str();
  app.add_option("--keepalive-time-ms", options.keepalive_time_ms,
                 "Ping a connection idle this long, so long polls survive NATs and proxies")
      ->check(CLI::Range(int64_t{1'000}, int64_t{7'200'000}))
      ->capture_default_str();
  app.add_option("--keepalive-timeout-ms", options.keepalive_timeout_ms,
                 "Drop a connection whose keepalive ping is not answered within this")
      ->check(CLI::Range(int64_t{1'000}, int64_t{600'000}))
      ->capture_default_str();
  app.add_option("--min-client-ping-interval-ms", options.min_client_ping_interval_ms,
                 "Clients may ping at most this often; faster pingers are disconnected "
                 "(too_many_pings)")
      ->check(CLI::Range(int64_t{1'000}, int64_t{3'600'000}))
      ->capture_default_str();
  app.add_option("--auth-file", options.auth_file,
                 "Tokens and what they may do (README \"Access control\"); without it, any "
                 "client may do anything");
  app.add_option("--tls-cert", options.tls_cert, "PEM certificate chain: serve TLS only");
  app.add_option("--tls-key", options.tls_key, "PEM private key of --tls-cert");
  app.add_option("--tls-client-ca", options.tls_client_ca,
                 "PEM CA: require client certificates it signed (mutual TLS)");
  app.add_flag("--allow-insecure", allow_insecure,
               "Serve plaintext beyond loopback (only on a network you trust)");
  app.add_option("--port-file", port_file,
                 "Write the port served on to this file once SERVING (useful with port 0)");
  app.add_option("--http-listen", options.http_listen,
                 "HOST:PORT for HTTP: the dashboard at /, /metrics, /healthz and the JSON admin "
                 "API under /api/v1/ (README \"Observability\"); port 0: any free port. Off "
                 "when not given");
  app.add_option("--http-max-connections", options.http_max_connections,
                 "Most HTTP connections open at once; the next gets 503")
      ->check(CLI::Range(1, 100'000))
      ->capture_default_str();
  app.add_option("--http-idle-timeout-ms", options.http_idle_timeout_ms,
                 "Close HTTP connections idle this long")
      ->check(CLI::Range(int64_t{100}, int64_t{3'600'000}))
      ->capture_default_str();
  app.add_flag("--http-auth-metrics", options.http_auth_metrics,
               "With --auth-file, /metrics and /healthz need a token too");
  app.add_option("--metrics-max-queues", options.metrics_max_queues,
                 "Queues with their own metric series (the deepest); the rest are summed "
                 "under queue=\"_other\"")
      ->check(CLI::Range(1, 100'000))
      ->capture_default_str();
  std::string test_faults, test_mutation, test_crash_at;
  app.add_option("--test-faults", test_faults,
                 "TESTS ONLY: run the store on the fault file system (unsynced-loss, "
                 "eio-on-wal-sync-after=N, enospc-after-bytes=N; engine/fault_fs.h)")
      ->group("Testing");
  app.add_option("--test-mutation", test_mutation,
                 "TESTS ONLY: switch on a deliberate bug to prove the torture checker catches it")
      ->group("Testing");
  app.add_option("--test-crash-at", test_crash_at,
                 "TESTS ONLY: POINT:N kills spoold (SIGKILL) the Nth time the commit path reaches "
                 "POINT (before-write, after-write, mid-replies)")
      ->group("Testing");
  CLI11_PARSE(app, argc, argv);
  if (!test_faults.empty()) {
    auto spec = spool::engine::ParseFaultSpec(test_faults);
    if (!spec.ok()) {
      std::fprintf(stderr, "spoold: --test-faults: %s\n",
                   std::string(spec.status().message()).c_str());
      return 2;
    }
    options.engine.test.faults = std::make_shared<spool::engine::FaultController>(*spec);
    std::fprintf(stderr, "spoold: TEST FAULTS ON: %s\n", test_faults.c_str());
  }
  if (!test_mutation.empty()) {
    auto mutation = spool::engine::ParseMutation(test_mutation);
    if (!mutation.ok()) {
      std::fprintf(stderr, "spoold: --test-mutation: %s\n",
                   std::string(mutation.status().message()).c_str());
      return 2;
    }
    options.engine.test.mutation = *mutation;
    std::fprintf(stderr, "spoold: TEST MUTATION ON (deliberately broken): %s\n",
                 test_mutation.c_str());
  }
  if (!test_crash_at.empty()) {
    size_t colon = test_crash_at.rfind(':');
    std::string point = test_crash_at.substr(0, colon);
    int64_t n = colon == std::string::npos ? 0 : std::atoll(test_crash_at.c_str() + colon + 1);
    if (n < 1 || (point != "before-write" && point != "after-write" && point != "mid-replies")) {
      std::fprintf(stderr,
                   "spoold: --test-crash-at must be POINT:N with POINT one of before-write, "
                   "after-write, mid-replies and N >= 1 (got \"%s\")\n",
                   test_crash_at.c_str());
      return 2;
    }
    auto hits = std::make_shared<std::atomic<int64_t>>(0);
    options.engine.test.at_point = [point, n, hits](std::string_view at) {
      if (at == point && hits->fetch_add(1) + 1 == n) raise(SIGKILL);
    };
  }
  options.engine.durability =
      durability == "sync" ? spool::engine::Durability::kSync : spool::engine::Durability::kAsync;
  options.engine.log = [](const std::string& line) {
    std::fprintf(stderr, "spoold: %s\n", line.c_str());
  };

  // Signals are taken by sigwait below, never by a handler in some other thread.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

  if (!IsLoopback(options.listen) && options.tls_cert.empty() && !allow_insecure) {
    std::fprintf(stderr,
                 "spoold: refusing to serve %s, beyond loopback, in plaintext: anyone who can "
                 "reach it could read and change every queue, and Debian's gRPC 1.51 has known "
                 "denial-of-service CVEs. Use --tls-cert/--tls-key (and --auth-file), put a "
                 "proxy in front (README \"Exposure\"), or pass --allow-insecure on a network "
                 "you trust.\n",
                 options.listen.c_str());
    return 2;
  }
  if (!options.http_listen.empty() && !IsLoopback(options.http_listen) &&
      options.auth_file.empty() && !allow_insecure) {
    std::fprintf(stderr,
                 "spoold: refusing to serve HTTP on %s, beyond loopback, without --auth-file: "
                 "anyone who can reach it could purge every queue. Give --auth-file (and "
                 "--tls-cert/--tls-key), or pass --allow-insecure on a network you trust.\n",
                 options.http_listen.c_str());
    return 2;
  }
  // Up to --http-max-connections sockets, beside the store's files and gRPC's connections:
  // the soft descriptor limit (often 1024) is raised to the hard one.
  if (struct rlimit rl; getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  auto server = spool::server::Server::Start(options, spool::engine::SystemClock());
  if (!server.ok()) {
    std::fprintf(stderr, "spoold: %s\n", std::string(server.status().message()).c_str());
    return 1;
  }
  std::string host = options.listen.substr(0, options.listen.rfind(':'));
  std::fprintf(stderr,
               "spoold: serving spool.v1.QueueService on %s:%d, data directory %s, "
               "durability %s\n",
               host.c_str(), (*server)->port(),
               std::filesystem::absolute(options.engine.data_dir).c_str(), durability.c_str());
  if ((*server)->http_port() != 0) {
    std::string http_host = options.http_listen.substr(0, options.http_listen.rfind(':'));
    std::fprintf(stderr, "spoold: serving HTTP on %s://%s:%d/ (dashboard, /metrics, /api/v1/)\n",
                 options.tls_cert.empty() ? "http" : "https", http_host.c_str(),
                 (*server)->http_port());
  }
  if (!port_file.empty()) {
    // Line 1: the gRPC port; line 2, with --http-listen: the HTTP port.
    std::string tmp = port_file + ".tmp";
    std::ofstream out(tmp);
    out << (*server)->port() << "\n";
    if ((*server)->http_port() != 0) out << (*server)->http_port() << "\n";
    out.close();
    std::filesystem::rename(tmp, port_file);
  }

  int sig = 0;
  sigwait(&signals, &sig);
  std::fprintf(stderr, "spoold: %s received, shutting down\n",
               sig == SIGTERM ? "SIGTERM" : "SIGINT");
  (*server)->Shutdown();
  std::fprintf(stderr, "spoold: stopped\n");
  return 0;
}
