// The engine on the fault file system: power cuts inside the process, EIO on a log sync, a
// full disk. Each test checks what was acknowledged against what a reopen finds.
#include <gtest/gtest.h>

#include "engine/fault_fs.h"
#include "tests/engine/engine_fixture.h"

namespace spool::engine {
namespace {

TEST(FaultSpecTest, ParsesEveryFault) {
  auto spec = ParseFaultSpec("unsynced-loss,eio-on-wal-sync-after=7,enospc-after-bytes=4096");
  ASSERT_TRUE(spec.ok()) << spec.status();
  EXPECT_TRUE(spec->unsynced_loss);
  EXPECT_EQ(spec->eio_on_wal_sync_after, 7);
  EXPECT_EQ(spec->enospc_after_bytes, 4096);
  auto none = ParseFaultSpec("");
  ASSERT_TRUE(none.ok());
  EXPECT_FALSE(none->unsynced_loss);
  EXPECT_EQ(none->eio_on_wal_sync_after, -1);
}

TEST(FaultSpecTest, RefusesWhatItCannotRead) {
  for (const char* bad : {"unsynced", "eio-on-wal-sync-after", "eio-on-wal-sync-after=x",
                          "enospc-after-bytes=-1", "unsynced-loss=3", "enospc-after-bytes=1k"}) {
    auto spec = ParseFaultSpec(bad);
    EXPECT_EQ(spec.status().code(), absl::StatusCode::kInvalidArgument) << bad;
  }
}

TEST(MutationTest, ParsesEveryName) {
  for (const char* name : {"reply-before-fsync", "lease-ignores-deadline", "stale-receipts",
                           "no-persist-leases", "dead-letter-early", "nack-ignores-delay"}) {
    EXPECT_TRUE(ParseMutation(name).ok()) << name;
  }
  EXPECT_EQ(ParseMutation("off-by-one").status().code(), absl::StatusCode::kInvalidArgument);
}

class FaultTest : public EngineFixture {
 protected:
  void SetUp() override {}  // each test opens with its own faults

  Options MakeOptions() override {
    Options o = EngineFixture::MakeOptions();
    o.durability = durability_;
    o.test.faults = faults_;
    o.test.mutation = mutation_;
    return o;
  }
  void OpenWith(const std::string& spec, Durability durability = Durability::kSync,
                Mutation mutation = Mutation::kNone) {
    auto parsed = ParseFaultSpec(spec);
    ASSERT_TRUE(parsed.ok()) << parsed.status();
    faults_ = std::make_shared<FaultController>(*parsed);
    durability_ = durability;
    mutation_ = mutation;
    Open();
  }
  // The power cut: what was not synced is gone; then the directory is opened as a restarted
  // machine would find it, without faults.
  void CrashAndReopen() {
    faults_->Crash();
    engine_.reset();
    faults_ = nullptr;
    mutation_ = Mutation::kNone;
    Open();
  }
  // Enqueues one message per call (so each is its own acknowledged write) and returns how many
  // were acknowledged before the first error, and that error.
  std::pair<int, absl::Status> SendEach(const std::string& queue, int n) {
    for (int i = 0; i < n; ++i) {
      auto r = EnqueueSync(*engine_, queue, {{"m" + std::to_string(i), {}, std::nullopt, ""}});
      if (!r.ok()) return {i, r.status()};
    }
    return {n, absl::OkStatus()};
  }
  int Depth(const std::string& queue) { return static_cast<int>(Stats(queue).total); }

  std::shared_ptr<FaultController> faults_;
  Durability durability_ = Durability::kSync;
  Mutation mutation_ = Mutation::kNone;
};

TEST_F(FaultTest, PowerCutKeepsEverySyncedEnqueue) {
  OpenWith("unsynced-loss");
  Create("q");
  auto [sent, error] = SendEach("q", 200);
  ASSERT_TRUE(error.ok()) << error;
  EXPECT_GE(faults_->wal_syncs(), 200);
  CrashAndReopen();
  EXPECT_EQ(Depth("q"), 200);
}

// The same cut with the engine replying before fsync: the layer must lose acknowledged writes,
// or it could not catch that bug (kill -9 alone would not: the page cache keeps them).
TEST_F(FaultTest, PowerCutLosesWhatWasAcknowledgedBeforeFsync) {
  OpenWith("unsynced-loss", Durability::kSync, Mutation::kReplyBeforeFsync);
  Create("q");
  auto [sent, error] = SendEach("q", 200);
  ASSERT_TRUE(error.ok()) << error;
  CrashAndReopen();
  auto q = engine_->GetQueue("q");
  // Even the queue itself was acknowledged without a sync, so it may be gone too.
  int kept = q.ok() ? static_cast<int>(q->stats.total) : 0;
  EXPECT_LT(kept, 200);
}

TEST_F(FaultTest, AsyncDurabilityLosesUnsyncedWritesOnPowerCut) {
  OpenWith("unsynced-loss", Durability::kAsync);
  Create("q");
  ASSERT_TRUE(SendEach("q", 50).second.ok());
  CrashAndReopen();
  auto q = engine_->GetQueue("q");
  EXPECT_LT(q.ok() ? static_cast<int>(q->stats.total) : 0, 50);
}

TEST_F(FaultTest, LeasesSurviveAPowerCut) {
  OpenWith("unsynced-loss");
  QueueConfig config;
  config.visibility_timeout_ms = 30'000;
  Create("q", config);
  Send("q", {"a", "b"});
  auto leased = Take("q", 1);
  ASSERT_EQ(leased.size(), 1u);
  CrashAndReopen();
  // The lease is still held: only the other message is visible, the leased one comes back at
  // its deadline with its delivery counted.
  auto next = Take("q", 2);
  ASSERT_EQ(next.size(), 1u);
  EXPECT_NE(next[0].message_id, leased[0].message_id);
  EXPECT_EQ(AckOne("q", next[0].receipt), Outcome::kOk);
  Advance(30'001);
  auto back = Take("q", 2);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].message_id, leased[0].message_id);
  EXPECT_EQ(back[0].delivery_count, 2u);
}

// A Lease waiting when a message arrives takes it in the enqueue's own write: one log sync
// for both replies, and after a power cut the message is still leased, its delivery counted.
TEST_F(FaultTest, AWaitingLeaseTakesANewMessageInTheEnqueuesOwnSync) {
  OpenWith("unsynced-loss");
  QueueConfig config;
  config.visibility_timeout_ms = 30'000;
  Create("q", config);
  auto waiter = Wait("q", 20'000);
  int64_t syncs = faults_->wal_syncs();
  Send("q", {"a"});
  auto leased = waiter->Get();
  ASSERT_TRUE(leased.ok()) << leased.status();
  ASSERT_EQ(leased->size(), 1u);
  EXPECT_EQ(faults_->wal_syncs() - syncs, 1);
  CrashAndReopen();
  EXPECT_TRUE(Take("q").empty());
  Advance(30'000);
  auto back = Take("q");
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].payload, "a");
  EXPECT_EQ(back[0].delivery_count, 2u);
}

TEST_F(FaultTest, EioOnLogSyncFailsTheWriteAndEveryLaterOne) {
  OpenWith("eio-on-wal-sync-after=20");
  Create("q");
  Send("q", {"held"});
  auto [sent, error] = SendEach("q", 100);
  EXPECT_LT(sent, 100);
  EXPECT_EQ(error.code(), absl::StatusCode::kUnavailable) << error;
  EXPECT_GE(faults_->injected_errors(), 1);
  // Sticky: the engine reports it and refuses writes, but still answers reads.
  EXPECT_EQ(engine_->Health().code(), absl::StatusCode::kUnavailable);
  auto again = EnqueueSync(*engine_, "q", {{"late", {}, std::nullopt, ""}});
  EXPECT_EQ(again.status().code(), absl::StatusCode::kUnavailable);
  auto peek = engine_->Peek("q", 10, "");
  ASSERT_TRUE(peek.ok()) << peek.status();
  EXPECT_FALSE(peek->messages.empty());
  // After a restart everything acknowledged is there; the failed write may or may not be (its
  // outcome was unknown), nothing else.
  CrashAndReopen();
  EXPECT_GE(Depth("q"), 1 + sent);
  EXPECT_LE(Depth("q"), 1 + sent + 1);
  EXPECT_TRUE(engine_->Health().ok());
}

TEST_F(FaultTest, FullDiskIsResourceExhaustedAndReadsKeepWorking) {
  OpenWith("enospc-after-bytes=20000");
  Create("q");
  Send("q", {"first"});
  auto [sent, error] = SendEach("q", 1000);
  EXPECT_LT(sent, 1000);
  EXPECT_EQ(error.code(), absl::StatusCode::kResourceExhausted) << error;
  EXPECT_EQ(engine_->Health().code(), absl::StatusCode::kResourceExhausted);
  auto late = EnqueueSync(*engine_, "q", {{"late", {}, std::nullopt, ""}});
  EXPECT_EQ(late.status().code(), absl::StatusCode::kResourceExhausted);
  auto info = engine_->GetQueue("q");
  ASSERT_TRUE(info.ok()) << info.status();
  auto peek = engine_->Peek("q", 1000, "");
  ASSERT_TRUE(peek.ok()) << peek.status();
  EXPECT_GE(static_cast<int>(peek->messages.size()), 1 + sent);
  // Space comes back (a restart without the fault): nothing acknowledged is missing, and
  // writes work again.
  CrashAndReopen();
  EXPECT_GE(Depth("q"), 1 + sent);
  EXPECT_EQ(Send("q", {"after"}).size(), 1u);
}

}  // namespace
}  // namespace spool::engine

namespace spool::engine {
namespace {

// Wall-clock jumps between runs and while running: logged, nothing lost, leases end by their
// wall-time deadline (later by a jump back, earlier by a jump forward).
class ClockJumpTest : public EngineFixture {
 protected:
  Options MakeOptions() override {
    Options o = EngineFixture::MakeOptions();
    o.log = [this](const std::string& line) { log_.push_back(line); };
    return o;
  }
  bool Logged(const std::string& needle) {
    for (const auto& line : log_) {
      if (line.find(needle) != std::string::npos) return true;
    }
    return false;
  }
  std::vector<std::string> log_;
};

TEST_F(ClockJumpTest, NoJumpNoWord) {
  Create("q");
  Advance(120'000);
  Reopen();
  EXPECT_FALSE(Logged("wall clock")) << log_.back();
}

TEST_F(ClockJumpTest, BackBetweenRunsIsLoggedAndHoldsLeasesByTheJump) {
  QueueConfig config;
  config.visibility_timeout_ms = 10'000;
  Create("q", config);
  Send("q", {"a", "b"});
  auto leased = Take("q", 1);
  ASSERT_EQ(leased.size(), 1u);
  engine_.reset();
  clock_->JumpWallMillis(-5'000);
  Open();
  EXPECT_TRUE(Logged("the wall clock moved back by 5.0 s since this store was last open"));
  EXPECT_EQ(Stats("q").total, 2u);
  Advance(10'001);  // the lease's length has passed, but its wall deadline has not
  auto early = Take("q", 2);
  ASSERT_EQ(early.size(), 1u);
  EXPECT_NE(early[0].message_id, leased[0].message_id);
  Advance(5'000);  // deadline plus the jump
  auto back = Take("q", 2);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].message_id, leased[0].message_id);
}

TEST_F(ClockJumpTest, ForwardBetweenRunsIsLoggedAndEndsLeasesEarly) {
  Create("q");
  Send("q", {"a"});
  ASSERT_EQ(Take("q", 1).size(), 1u);
  engine_.reset();
  clock_->JumpWallMillis(3'600'000);
  Open();
  EXPECT_TRUE(Logged("the wall clock moved forward by 3600.0 s since this store was last open"));
  auto back = Take("q", 1);
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].delivery_count, 2u);
}

TEST_F(ClockJumpTest, JumpWhileRunningIsLogged) {
  Create("q");
  Advance(1'000);
  clock_->JumpWallMillis(-3'000);
  engine_->Tick();
  EXPECT_TRUE(Logged("the wall clock moved back by 3.0 s while spoold was running"));
  log_.clear();
  Advance(1'000);
  EXPECT_FALSE(Logged("wall clock"));
}

}  // namespace
}  // namespace spool::engine
