// The real spoold, killed with SIGKILL at awkward moments and restarted on the same data
// directory: nothing acknowledged is lost, acked messages never return, leases and configs
// survive. (kill -9 cannot catch a missing fsync, since the page cache survives the process;
// the power-loss file system of issue 5 covers that.)
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <random>
#include <set>
#include <thread>

#include "tests/grpc_util.h"
#include "tests/process/spoold_process.h"
#include "tests/test_util.h"

namespace spool {
namespace {

using namespace std::chrono_literals;
using spool::testing::SpooldProcess;

std::set<std::string> Ids(const std::vector<v1::PeekedMessage>& ms) {
  std::set<std::string> out;
  for (const auto& m : ms) out.insert(m.message_id());
  return out;
}

TEST(CrashTest, KillNineKeepsAcknowledgedWorkAndLeases) {
  spool::testing::TempDir dir;
  SpooldProcess spoold(dir.path() + "/data");
  ASSERT_TRUE(spoold.Start()) << spoold.Log();
  auto stub = spool::testing::StubFor(spoold.port());

  ASSERT_TRUE(spool::testing::CreateQueue(*stub, "dlq").ok());
  v1::QueueConfig config;
  *config.mutable_visibility_timeout() = spool::testing::Seconds(20);
  config.set_max_deliveries(5);
  config.set_dead_letter_queue("dlq");
  config.set_max_depth(10'000);
  ASSERT_TRUE(spool::testing::CreateQueue(*stub, "jobs", config).ok());
  v1::Queue before = spool::testing::GetQueue(*stub, "jobs");

  std::set<std::string> enqueued;
  for (int b = 0; b < 20; ++b) {
    std::vector<std::string> payloads;
    for (int i = 0; i < 10; ++i) payloads.push_back("job-" + std::to_string(b * 10 + i));
    for (auto& id : spool::testing::Enqueue(*stub, "jobs", payloads)) enqueued.insert(id);
  }
  ASSERT_EQ(enqueued.size(), 200u);
  auto leased = spool::testing::Lease(*stub, "jobs", 50, /*visibility_s=*/6);
  ASSERT_EQ(leased.messages_size(), 50);
  std::vector<std::string> to_ack;
  std::set<std::string> acked, held;
  for (int i = 0; i < 50; ++i) {
    if (i % 2 == 0) {
      to_ack.push_back(leased.messages(i).receipt());
      acked.insert(leased.messages(i).message_id());
    } else {
      held.insert(leased.messages(i).message_id());
    }
  }
  auto ack = spool::testing::Ack(*stub, "jobs", to_ack);
  for (const auto& r : ack.results()) ASSERT_EQ(r.outcome(), v1::OUTCOME_OK);

  spoold.Kill9();
  ASSERT_TRUE(spoold.Start()) << spoold.Log();
  stub = spool::testing::StubFor(spoold.port());

  // Every acknowledged enqueue is there; no acked message is.
  std::set<std::string> present = Ids(spool::testing::PeekAll(*stub, "jobs"));
  std::set<std::string> expected;
  for (const auto& id : enqueued) {
    if (!acked.contains(id)) expected.insert(id);
  }
  EXPECT_EQ(present, expected);

  // The configs came back as they were.
  v1::Queue after = spool::testing::GetQueue(*stub, "jobs");
  EXPECT_EQ(after.config().SerializeAsString(), before.config().SerializeAsString());
  EXPECT_EQ(after.stats().acked_total(), 25u);

  // Leased, unacked messages stay invisible until their deadline ...
  auto fresh = spool::testing::Lease(*stub, "jobs", 1000, 60);
  std::set<std::string> fresh_ids;
  for (const auto& m : fresh.messages()) {
    fresh_ids.insert(m.message_id());
    EXPECT_EQ(m.delivery_count(), 1u);
  }
  EXPECT_EQ(fresh_ids.size(), 150u);
  for (const auto& id : held) EXPECT_FALSE(fresh_ids.contains(id)) << id;

  // ... and then come back with their delivery count incremented; acked ones never do.
  std::set<std::string> returned;
  auto deadline = std::chrono::steady_clock::now() + 20s;
  while (returned.size() < held.size() && std::chrono::steady_clock::now() < deadline) {
    auto again = spool::testing::Lease(*stub, "jobs", 1000, 60, /*wait_s=*/10);
    for (const auto& m : again.messages()) {
      returned.insert(m.message_id());
      EXPECT_EQ(m.delivery_count(), 2u);
      EXPECT_FALSE(acked.contains(m.message_id()));
    }
  }
  EXPECT_EQ(returned, held);
}

// Producers and a consumer run flat out while spoold is killed, three times over, in each
// durability mode (a kill -9 loses nothing in either).
class KillUnderLoadTest : public ::testing::TestWithParam<std::string> {};

TEST_P(KillUnderLoadTest, LosesNothingAcknowledged) {
  spool::testing::TempDir dir;
  SpooldProcess spoold(dir.path() + "/data", {"--durability", GetParam()});
  ASSERT_TRUE(spoold.Start()) << spoold.Log();
  ASSERT_TRUE(spool::testing::CreateQueue(*spool::testing::StubFor(spoold.port()), "jobs").ok());
  std::mt19937 rng(42);
  std::mutex mu;
  // An Ack whose call failed at the kill may or may not have been applied: its messages are
  // "unknown", neither required to be present nor to be gone.
  std::set<std::string> enqueued_ok, acked_ok, ack_unknown;
  for (int cycle = 0; cycle < 3; ++cycle) {
    std::atomic<bool> stop{false};
    int port = spoold.port();
    std::vector<std::thread> threads;
    for (int p = 0; p < 3; ++p) {
      threads.emplace_back([&, p] {
        auto stub = spool::testing::StubFor(port);
        for (int n = 0; !stop && n < 100'000; ++n) {
          std::vector<std::string> payloads(
              10, "c" + std::to_string(cycle) + "p" + std::to_string(p) + "n" + std::to_string(n));
          grpc::Status s;
          auto ids = spool::testing::Enqueue(*stub, "jobs", payloads, &s);
          if (!s.ok()) break;
          std::lock_guard<std::mutex> l(mu);
          enqueued_ok.insert(ids.begin(), ids.end());
        }
      });
    }
    threads.emplace_back([&] {
      auto stub = spool::testing::StubFor(port);
      for (int n = 0; !stop && n < 100'000; ++n) {
        grpc::Status s;
        auto leased = spool::testing::Lease(*stub, "jobs", 20, 60, 0, &s);
        if (!s.ok()) break;
        std::vector<std::string> receipts;
        for (const auto& m : leased.messages()) receipts.push_back(m.receipt());
        if (receipts.empty()) continue;
        auto ack = spool::testing::Ack(*stub, "jobs", receipts, &s);
        std::lock_guard<std::mutex> l(mu);
        if (!s.ok()) {
          for (const auto& m : leased.messages()) ack_unknown.insert(m.message_id());
          break;
        }
        for (int i = 0; i < ack.results_size(); ++i) {
          if (ack.results(i).outcome() == v1::OUTCOME_OK) {
            acked_ok.insert(leased.messages(i).message_id());
          }
        }
      }
    });
    std::this_thread::sleep_for(std::chrono::milliseconds(300 + rng() % 700));
    spoold.Kill9();
    stop = true;
    for (auto& t : threads) t.join();
    ASSERT_TRUE(spoold.Start()) << spoold.Log();
  }
  auto stub = spool::testing::StubFor(spoold.port());
  std::set<std::string> present = Ids(spool::testing::PeekAll(*stub, "jobs"));
  size_t missing = 0, resurrected = 0;
  for (const auto& id : enqueued_ok) {
    if (!acked_ok.contains(id) && !ack_unknown.contains(id) && !present.contains(id)) ++missing;
  }
  for (const auto& id : acked_ok) {
    if (present.contains(id)) ++resurrected;
  }
  EXPECT_GT(enqueued_ok.size(), 100u);
  EXPECT_GT(acked_ok.size(), 10u);
  EXPECT_EQ(missing, 0u) << "acknowledged enqueues lost";
  EXPECT_EQ(resurrected, 0u) << "acked messages came back";
  v1::Queue q = spool::testing::GetQueue(*stub, "jobs");
  EXPECT_EQ(q.stats().total(), present.size());
}

INSTANTIATE_TEST_SUITE_P(Durability, KillUnderLoadTest, ::testing::Values("sync", "async"));

TEST(ProcessTest, ASecondSpooldOnTheSameDirectoryExitsAtOnce) {
  spool::testing::TempDir dir;
  SpooldProcess first(dir.path() + "/data");
  ASSERT_TRUE(first.Start()) << first.Log();
  std::string log = dir.path() + "/second.log";
  auto start = std::chrono::steady_clock::now();
  int code = SpooldProcess::Run({spool::testing::BinDir() + "/spoold", "--listen", "127.0.0.1:0",
                                 "--data-dir", dir.path() + "/data"},
                                log, 10s);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_NE(code, 0);
  std::ifstream in(log);
  std::string text(std::istreambuf_iterator<char>(in), {});
  EXPECT_NE(text.find("in use"), std::string::npos) << text;
  // The first one is unaffected.
  EXPECT_TRUE(spool::testing::CreateQueue(*spool::testing::StubFor(first.port()), "q").ok());
}

// An operator's `top -H` or `perf` tells spoold's own threads apart.
TEST(ProcessTest, SpooldsThreadsCarryTheirNames) {
  spool::testing::TempDir dir;
  SpooldProcess spoold(dir.path() + "/data");
  ASSERT_TRUE(spoold.Start()) << spoold.Log();
  std::set<std::string> names;
  std::string tasks = "/proc/" + std::to_string(spoold.pid()) + "/task";
  for (const auto& task : std::filesystem::directory_iterator(tasks)) {
    std::ifstream in(task.path() / "comm");
    std::string name;
    std::getline(in, name);
    names.insert(name);
  }
  for (const char* want : {"spool-commit", "spool-complete", "spool-timers", "spool-health"}) {
    EXPECT_TRUE(names.count(want)) << want << " is not among spoold's threads";
  }
}

TEST(ProcessTest, SigtermEndsWaitsAndExitsZero) {
  spool::testing::TempDir dir;
  SpooldProcess spoold(dir.path() + "/data");
  ASSERT_TRUE(spoold.Start()) << spoold.Log();
  auto stub = spool::testing::StubFor(spoold.port());
  ASSERT_TRUE(spool::testing::CreateQueue(*stub, "jobs").ok());
  grpc::Status status;
  v1::LeaseResponse resp;
  std::thread consumer(
      [&] { resp = spool::testing::Lease(*stub, "jobs", 1, 30, /*wait_s=*/20, &status); });
  std::this_thread::sleep_for(300ms);
  auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(spoold.Terminate(5s), 0) << spoold.Log();
  consumer.join();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(resp.messages_size(), 0);
  std::string log = spoold.Log();
  EXPECT_NE(log.find("serving spool.v1.QueueService on 127.0.0.1:"), std::string::npos) << log;
  EXPECT_NE(log.find("data directory"), std::string::npos);
}

}  // namespace
}  // namespace spool
