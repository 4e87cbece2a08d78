// A real spoold under pressure: a thousand waiting Leases, a thousand oversize requests. The
// server's threads and memory stay bounded and it keeps answering. Latency is reported, not
// asserted (timing belongs to the benchmarks).
#include <arpa/inet.h>
#include <dirent.h>
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <fstream>
#include <mutex>

#include "tests/grpc_util.h"
#include "tests/process/spoold_process.h"
#include "tests/test_util.h"

namespace spool {
namespace {

using namespace std::chrono_literals;
using spool::testing::SpooldProcess;

int Threads(pid_t pid) {
  int n = 0;
  DIR* d = opendir(("/proc/" + std::to_string(pid) + "/task").c_str());
  if (d == nullptr) return -1;
  while (readdir(d) != nullptr) ++n;
  closedir(d);
  return n - 2;  // . and ..
}

double RssMiB(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("VmRSS:", 0) == 0) return std::stod(line.substr(6)) / 1024;
  }
  return -1;
}

std::shared_ptr<grpc::Channel> Channel(int port, int i) {
  grpc::ChannelArguments args;
  args.SetInt("spool.test.channel", i);  // a connection of its own
  return grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::InsecureChannelCredentials(), args);
}

TEST(ExhaustionTest, AThousandWaitingLeasesHoldNoThreadsAndLittleMemory) {
  spool::testing::TempDir dir;
  SpooldProcess spoold(dir.path() + "/data");
  ASSERT_TRUE(spoold.Start()) << spoold.Log();
  auto admin = spool::testing::StubFor(spoold.port());
  ASSERT_TRUE(spool::testing::CreateQueue(*admin, "jobs").ok());
  int threads_idle = Threads(spoold.pid());

  constexpr int kWaiters = 1000, kConnections = 10;
  std::vector<std::unique_ptr<v1::QueueService::Stub>> stubs;
  for (int i = 0; i < kConnections; ++i)
    stubs.push_back(v1::QueueService::NewStub(Channel(spoold.port(), i)));
  struct Call {
    grpc::ClientContext ctx;
    v1::LeaseRequest req;
    v1::LeaseResponse resp;
  };
  std::vector<std::unique_ptr<Call>> calls;
  std::atomic<int> finished{0}, got{0};
  for (int i = 0; i < kWaiters; ++i) {
    auto c = std::make_unique<Call>();
    c->req.set_queue("jobs");
    *c->req.mutable_wait_time() = spool::testing::Seconds(20);
    c->ctx.set_deadline(std::chrono::system_clock::now() + 40s);
    Call* raw = c.get();
    stubs[i % kConnections]->async()->Lease(&c->ctx, &c->req, &c->resp, [&, raw](grpc::Status s) {
      if (s.ok()) got += raw->resp.messages_size();
      ++finished;
    });
    calls.push_back(std::move(c));
  }
  std::this_thread::sleep_for(1s);
  EXPECT_EQ(finished.load(), 0);
  int threads_waiting = Threads(spoold.pid());
  double rss_waiting = RssMiB(spoold.pid());

  // Another client enqueues one message at a time meanwhile; each wakes one waiter.
  std::vector<double> latencies;
  auto producer = v1::QueueService::NewStub(Channel(spoold.port(), 99));
  for (int i = 0; i < 500; ++i) {
    auto start = std::chrono::steady_clock::now();
    grpc::Status s;
    spool::testing::Enqueue(*producer, "jobs", {"m" + std::to_string(i)}, &s);
    ASSERT_TRUE(s.ok()) << s.error_message();
    latencies.push_back(
        std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - start)
            .count());
  }
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (got.load() < 500 && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  EXPECT_EQ(got.load(), 500);
  std::sort(latencies.begin(), latencies.end());
  std::printf(
      "enqueue with %d leases waiting: p50 %.2f ms, p99 %.2f ms; spoold threads idle %d, "
      "with waiters %d; RSS %.0f MiB\n",
      kWaiters, latencies[latencies.size() / 2], latencies[latencies.size() * 99 / 100],
      threads_idle, threads_waiting, rss_waiting);
  EXPECT_LT(threads_waiting, threads_idle + 16) << "waiting Leases must not hold threads";
  EXPECT_LT(rss_waiting, 512);
  for (auto& c : calls) c->ctx.TryCancel();
  deadline = std::chrono::steady_clock::now() + 20s;
  while (finished.load() < kWaiters && std::chrono::steady_clock::now() < deadline)
    std::this_thread::sleep_for(20ms);
  EXPECT_EQ(finished.load(), kWaiters);
}

TEST(ExhaustionTest, AThousandOversizeRequestsAreRefusedWithoutGrowingMemory) {
  spool::testing::TempDir dir;
  SpooldProcess spoold(dir.path() + "/data", {"--max-request-bytes", "1048576"});
  ASSERT_TRUE(spoold.Start()) << spoold.Log();
  auto stub = spool::testing::StubFor(spoold.port());
  ASSERT_TRUE(spool::testing::CreateQueue(*stub, "jobs").ok());
  v1::EnqueueRequest big;
  big.set_queue("jobs");
  big.add_messages()->set_payload(std::string((1 << 20) + 1024, 'x'));
  auto send = [&] {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + 10s);
    v1::EnqueueResponse resp;
    return stub->Enqueue(&ctx, big, &resp);
  };
  for (int i = 0; i < 50; ++i) send();  // warm up allocator pools before measuring
  double before = RssMiB(spoold.pid());
  for (int i = 0; i < 1000; ++i) {
    grpc::Status s = send();
    ASSERT_TRUE(s.error_code() == grpc::StatusCode::RESOURCE_EXHAUSTED ||
                s.error_code() == grpc::StatusCode::INVALID_ARGUMENT)
        << i << ": " << s.error_code() << " " << s.error_message();
  }
  double after = RssMiB(spoold.pid());
  std::printf("RSS before %.0f MiB, after 1000 oversize requests %.0f MiB\n", before, after);
  EXPECT_LT(after - before, 64) << "refused requests must not leave memory behind";
  // Still serving, and nothing was stored.
  EXPECT_EQ(spool::testing::GetQueue(*stub, "jobs").stats().total(), 0u);
  spool::testing::Enqueue(*stub, "jobs", {"small"});
  EXPECT_EQ(spool::testing::GetQueue(*stub, "jobs").stats().total(), 1u);
}

// Connects a raw TCP socket to the port, writes `send`, and returns how long the server took
// to close it (or 10 s if it did not).
std::chrono::milliseconds TimeToClose(int port, const std::string& send) {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(static_cast<uint16_t>(port));
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  if (!send.empty()) {
    EXPECT_EQ(::write(fd, send.data(), send.size()), static_cast<ssize_t>(send.size()));
  }
  timeval tv{10, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  auto start = std::chrono::steady_clock::now();
  char buf[256];
  while (::read(fd, buf, sizeof buf) > 0) {
  }
  ::close(fd);
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() -
                                                               start);
}

TEST(ExhaustionTest, SilentAndHalfOpenConnectionsAreClosed) {
  spool::testing::TempDir dir;
  SpooldProcess spoold(dir.path() + "/data", {"--handshake-timeout-ms", "1000"});
  ASSERT_TRUE(spoold.Start()) << spoold.Log();
  auto silent = TimeToClose(spoold.port(), "");
  auto half = TimeToClose(spoold.port(), "PRI * HTTP/2.0\r\n");
  std::printf("closed after: silent %lld ms, half a preface %lld ms\n",
              static_cast<long long>(silent.count()), static_cast<long long>(half.count()));
  EXPECT_LT(silent, 5s);
  EXPECT_LT(half, 5s);
  // A normal client is unaffected, including a long poll that outlasts the timeout.
  auto stub = spool::testing::StubFor(spoold.port());
  ASSERT_TRUE(spool::testing::CreateQueue(*stub, "jobs").ok());
  grpc::Status s;
  spool::testing::Lease(*stub, "jobs", 1, 30, /*wait_s=*/2, &s);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_TRUE(spool::testing::CreateQueue(*stub, "other").ok());
}

}  // namespace
}  // namespace spool
