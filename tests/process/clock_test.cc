// spoold restarted under a wall clock moved back and then forward (Debian's faketime, with the
// monotonic clock left alone, as when an operator or NTP steps the system time): nothing is
// lost, leases end no later than their deadline plus the jump, and the jump is logged.
#include <gtest/gtest.h>

#include <set>

#include "tests/grpc_util.h"
#include "tests/process/spoold_process.h"
#include "tests/test_util.h"

namespace spool {
namespace {

using namespace std::chrono_literals;
using spool::testing::SpooldProcess;

// libfaketime preloaded into spoold itself (the faketime command would put a process of its
// own between the test and spoold, and kill -9 must reach spoold).
constexpr char kLibFaketime[] = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

std::vector<std::pair<std::string, std::string>> Faketime(const std::string& offset) {
  return {
      {"LD_PRELOAD", kLibFaketime}, {"FAKETIME", offset}, {"FAKETIME_DONT_FAKE_MONOTONIC", "1"}};
}

// spoold with glibc's malloc: libfaketime deadlocks with jemalloc (server/CMakeLists.txt).
std::string SpooldForFaketime() {
  return spool::testing::BinDir() + "/../tests/spoold-glibc-malloc";
}

TEST(ClockJumpProcessTest, RestartsUnderAClockMovedBackThenForward) {
  ASSERT_TRUE(std::filesystem::exists(kLibFaketime))
      << "libfaketime is missing: tools/dev.sh setup installs the faketime package";
  spool::testing::TempDir dir;
  std::string data = dir.path() + "/data";
  SpooldProcess spoold(data);
  ASSERT_TRUE(spoold.Start()) << spoold.Log();
  auto stub = spool::testing::StubFor(spoold.port());
  ASSERT_TRUE(spool::testing::CreateQueue(*stub, "jobs").ok());
  std::vector<std::string> payloads;
  for (int i = 0; i < 20; ++i) payloads.push_back("job-" + std::to_string(i));
  ASSERT_EQ(spool::testing::Enqueue(*stub, "jobs", payloads).size(), 20u);
  auto leased = spool::testing::Lease(*stub, "jobs", 5, /*visibility_s=*/3);
  ASSERT_EQ(leased.messages_size(), 5);
  auto leased_at = std::chrono::steady_clock::now();
  std::set<std::string> held;
  for (const auto& m : leased.messages()) held.insert(m.message_id());
  spoold.Kill9();

  // Back by 5 s: logged; every message there; the leased ones stay hidden past their deadline
  // (a wall time) and come back no later than the deadline plus the jump.
  spoold.RunUnder(SpooldForFaketime(), {}, Faketime("-5s"));
  ASSERT_TRUE(spoold.Start()) << spoold.Log();
  stub = spool::testing::StubFor(spoold.port());
  EXPECT_NE(spoold.Log().find("the wall clock moved back by 5."), std::string::npos)
      << spoold.Log();
  EXPECT_EQ(spool::testing::PeekAll(*stub, "jobs").size(), 20u);
  auto rest = spool::testing::Lease(*stub, "jobs", 100, 60);
  EXPECT_EQ(rest.messages_size(), 15);
  std::set<std::string> returned;
  while (returned.size() < held.size() && std::chrono::steady_clock::now() < leased_at + 15s) {
    auto again = spool::testing::Lease(*stub, "jobs", 100, 60, /*wait_s=*/1);
    for (const auto& m : again.messages()) {
      EXPECT_TRUE(held.contains(m.message_id())) << m.message_id();
      returned.insert(m.message_id());
    }
  }
  double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - leased_at).count();
  EXPECT_EQ(returned, held);
  EXPECT_GE(seconds, 3.0) << "a lease ended before its deadline";
  EXPECT_LE(seconds, 3.0 + 5.0 + 1.5) << "a lease outlived its deadline plus the jump";
  spoold.Kill9();

  // Forward by an hour: logged; every message there; every lease has ended.
  spoold.RunUnder(SpooldForFaketime(), {}, Faketime("+1h"));
  ASSERT_TRUE(spoold.Start()) << spoold.Log();
  stub = spool::testing::StubFor(spoold.port());
  EXPECT_NE(spoold.Log().find("the wall clock moved forward by 360"), std::string::npos)
      << spoold.Log();
  auto all = spool::testing::Lease(*stub, "jobs", 100, 60);
  EXPECT_EQ(all.messages_size(), 20);
}

}  // namespace
}  // namespace spool
