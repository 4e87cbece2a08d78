// The contract's rules, one test each, against a real store with a ManualClock.
#include <gtest/gtest.h>

#include <mutex>

#include "tests/engine/engine_fixture.h"

namespace spool::engine {
namespace {

using Strings = std::vector<std::string>;

class EngineTest : public EngineFixture {};

TEST_F(EngineTest, LeasesInFifoOrder) {
  Create("jobs");
  Send("jobs", {"a", "b", "c"});
  Send("jobs", {"d"});
  EXPECT_EQ(Payloads(Take("jobs", 2)), (Strings{"a", "b"}));
  EXPECT_EQ(Payloads(Take("jobs", 10)), (Strings{"c", "d"}));
  EXPECT_TRUE(Take("jobs", 10).empty());
}

TEST_F(EngineTest, LeasedMessageCarriesEverything) {
  Create("jobs");
  std::vector<EnqueueEntry> e = {{R"({"file_id": "abc-123", "type": "resize"})",
                                  {{"content-type", "application/json"}},
                                  std::nullopt,
                                  ""}};
  auto ids = EnqueueSync(*engine_, "jobs", e);
  ASSERT_TRUE(ids.ok());
  int64_t t0 = clock_->NowMillis();
  auto m = Take("jobs", 1, 45'000);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].message_id, (*ids)[0].message_id);
  EXPECT_EQ(m[0].payload, e[0].payload);
  EXPECT_EQ(m[0].attributes, e[0].attributes);
  EXPECT_EQ(m[0].delivery_count, 1u);
  EXPECT_EQ(m[0].enqueue_time_ms, t0);
  EXPECT_EQ(m[0].lease_deadline_ms, t0 + 45'000);
  EXPECT_FALSE(m[0].receipt.empty());
}

TEST_F(EngineTest, ExpiredLeaseMakesMessageVisibleAgain) {
  Create("jobs");
  Send("jobs", {"a"});
  auto first = Take("jobs", 1, 30'000);
  ASSERT_EQ(first.size(), 1u);
  Advance(29'000);
  EXPECT_TRUE(Take("jobs").empty());
  Advance(2'000);
  auto again = Take("jobs");
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].message_id, first[0].message_id);
  EXPECT_EQ(again[0].delivery_count, 2u);
  EXPECT_NE(again[0].receipt, first[0].receipt);
}

TEST_F(EngineTest, DefaultVisibilityComesFromTheQueue) {
  QueueConfig c;
  c.visibility_timeout_ms = 5'000;
  Create("jobs", c);
  Send("jobs", {"a"});
  auto m = Take("jobs");
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].lease_deadline_ms, clock_->NowMillis() + 5'000);
  Advance(5'000);
  EXPECT_EQ(Take("jobs").size(), 1u);
}

TEST_F(EngineTest, AckDeletesAndIsIdempotent) {
  Create("jobs");
  Send("jobs", {"a"});
  auto m = Take("jobs");
  EXPECT_EQ(AckOne("jobs", m[0].receipt), Outcome::kOk);
  EXPECT_EQ(AckOne("jobs", m[0].receipt), Outcome::kOk);  // a retried Ack
  Advance(60'000);
  EXPECT_TRUE(Take("jobs").empty());
  EXPECT_EQ(Stats("jobs").total, 0u);
  EXPECT_EQ(Stats("jobs").acked_total, 1u);
}

TEST_F(EngineTest, AckAfterDeadlineSucceedsIfNobodyLeasedSince) {
  Create("jobs");
  Send("jobs", {"a"});
  auto m = Take("jobs", 1, 1'000);
  Advance(10'000);
  EXPECT_EQ(AckOne("jobs", m[0].receipt), Outcome::kOk);
  EXPECT_TRUE(Take("jobs").empty());
}

TEST_F(EngineTest, StaleReceiptLosesTheLease) {
  Create("jobs");
  Send("jobs", {"a"});
  auto first = Take("jobs", 1, 1'000);
  Advance(1'000);
  auto second = Take("jobs", 1, 30'000);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(AckOne("jobs", first[0].receipt), Outcome::kLeaseLost);
  EXPECT_EQ(NackOne("jobs", first[0].receipt), Outcome::kLeaseLost);
  auto ext = ExtendLeaseSync(*engine_, "jobs", {first[0].receipt}, 60'000);
  EXPECT_EQ((*ext)[0].outcome, Outcome::kLeaseLost);
  // The current holder is unaffected.
  EXPECT_EQ(AckOne("jobs", second[0].receipt), Outcome::kOk);
}

TEST_F(EngineTest, ForgedAndForeignReceiptsAreInvalid) {
  Create("jobs");
  Create("other");
  Send("jobs", {"a"});
  Send("other", {"b"});
  auto mine = Take("jobs");
  auto theirs = Take("other");
  std::string altered = mine[0].receipt;
  altered[10] = altered[10] == 'A' ? 'B' : 'A';
  auto r = AckSync(*engine_, "jobs", {"garbage", altered, theirs[0].receipt, mine[0].receipt});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ((*r)[0].outcome, Outcome::kInvalidReceipt);
  EXPECT_EQ((*r)[1].outcome, Outcome::kInvalidReceipt);
  EXPECT_EQ((*r)[2].outcome, Outcome::kInvalidReceipt);
  EXPECT_EQ((*r)[3].outcome, Outcome::kOk);
  // The other queue's message was not touched.
  EXPECT_EQ(AckOne("other", theirs[0].receipt), Outcome::kOk);
}

TEST_F(EngineTest, ReceiptDoesNotOutliveARecreatedQueue) {
  Create("jobs");
  Send("jobs", {"a"});
  auto m = Take("jobs");
  ASSERT_TRUE(DeleteQueueSync(*engine_, "jobs").ok());
  Create("jobs");
  Send("jobs", {"b"});
  EXPECT_EQ(AckOne("jobs", m[0].receipt), Outcome::kInvalidReceipt);
  EXPECT_EQ(Stats("jobs").total, 1u);
}

TEST_F(EngineTest, NackWithDelay) {
  Create("jobs");
  Send("jobs", {"a"});
  auto m = Take("jobs");
  EXPECT_EQ(NackOne("jobs", m[0].receipt, 10'000), Outcome::kOk);
  EXPECT_EQ(NackOne("jobs", m[0].receipt), Outcome::kLeaseLost);  // the receipt ended
  EXPECT_EQ(AckOne("jobs", m[0].receipt), Outcome::kLeaseLost);
  EXPECT_EQ(Stats("jobs").delayed, 1u);
  Advance(9'999);
  EXPECT_TRUE(Take("jobs").empty());
  Advance(1);
  auto again = Take("jobs");
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].delivery_count, 2u);
}

TEST_F(EngineTest, NacksAreCountedAndTheCountSurvivesAReopen) {
  Create("jobs");
  Send("jobs", {"a", "b"});
  auto m = Take("jobs", 2);
  EXPECT_EQ(NackOne("jobs", m[0].receipt), Outcome::kOk);
  EXPECT_EQ(NackOne("jobs", m[0].receipt), Outcome::kLeaseLost);  // not counted twice
  EXPECT_EQ(AckOne("jobs", m[1].receipt), Outcome::kOk);
  EXPECT_EQ(Stats("jobs").nacked_total, 1u);
  EXPECT_EQ(Stats("jobs").acked_total, 1u);
  Reopen();
  EXPECT_EQ(Stats("jobs").nacked_total, 1u);
  auto again = Take("jobs");
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(NackOne("jobs", again[0].receipt, 5'000), Outcome::kOk);
  EXPECT_EQ(Stats("jobs").nacked_total, 2u);
}

TEST_F(EngineTest, RuntimeCountsWaitersAndStorage) {
  Create("jobs");
  Send("jobs", {"a"});
  EXPECT_EQ(engine_->Runtime().lease_waiters, 0);
  Take("jobs");
  auto w = Wait("jobs", 10'000);
  EXPECT_EQ(engine_->Runtime().lease_waiters, 1);
  Send("jobs", {"b"});
  auto got = w->Get();
  ASSERT_TRUE(got.ok()) << got.status();
  ASSERT_EQ(got->size(), 1u);
  RuntimeStats r = engine_->Runtime();
  EXPECT_EQ(r.lease_waiters, 0);
  EXPECT_GT(r.wal_bytes, 0u);
  EXPECT_GT(r.memtable_bytes, 0u);
  EXPECT_GE(r.total_sst_bytes, r.live_sst_bytes);
}

// Every group written reaches on_commit_group with its operations, timed on the engine's clock.
class CommitObserverTest : public EngineFixture {
 protected:
  Options MakeOptions() override {
    Options o = EngineFixture::MakeOptions();
    o.on_commit_group = [this](size_t operations, int64_t micros) {
      std::lock_guard<std::mutex> lock(mu_);
      ++groups_;
      operations_ += operations;
      EXPECT_GE(micros, 0);
    };
    return o;
  }
  std::mutex mu_;
  size_t groups_ = 0, operations_ = 0;
};

TEST_F(CommitObserverTest, SeesEveryOperation) {
  Create("jobs");
  size_t groups_before, operations_before;
  {
    std::lock_guard<std::mutex> lock(mu_);
    groups_before = groups_;
    operations_before = operations_;
    EXPECT_GE(groups_before, 1u);  // the CreateQueue's write, at least
  }
  Send("jobs", {"a"});
  Send("jobs", {"b", "c"});
  auto m = Take("jobs", 3);
  ASSERT_EQ(m.size(), 3u);
  std::lock_guard<std::mutex> lock(mu_);
  // Two Enqueues and the Lease: each waited for its own write.
  EXPECT_EQ(groups_ - groups_before, 3u);
  EXPECT_EQ(operations_ - operations_before, 3u);
}

TEST_F(EngineTest, NackWithoutDelayIsVisibleAtOnce) {
  Create("jobs");
  Send("jobs", {"a", "b"});
  auto m = Take("jobs");
  Advance(1);
  EXPECT_EQ(NackOne("jobs", m[0].receipt), Outcome::kOk);
  // Visible time of "a" is now its nack time, after "b"'s enqueue time.
  EXPECT_EQ(Payloads(Take("jobs", 2)), (Strings{"b", "a"}));
}

TEST_F(EngineTest, ExtendMovesTheDeadline) {
  Create("jobs");
  Send("jobs", {"a"});
  auto m = Take("jobs", 1, 10'000);
  Advance(8'000);
  auto ext = ExtendLeaseSync(*engine_, "jobs", {m[0].receipt}, 20'000);
  ASSERT_TRUE(ext.ok());
  EXPECT_EQ((*ext)[0].outcome, Outcome::kOk);
  EXPECT_EQ((*ext)[0].lease_deadline_ms, clock_->NowMillis() + 20'000);
  Advance(19'000);
  EXPECT_TRUE(Take("jobs").empty());
  EXPECT_EQ(AckOne("jobs", m[0].receipt), Outcome::kOk);  // the receipt stays valid
}

TEST_F(EngineTest, ExtendWithoutTimeoutUsesTheQueueDefault) {
  QueueConfig c;
  c.visibility_timeout_ms = 7'000;
  Create("jobs", c);
  Send("jobs", {"a"});
  auto m = Take("jobs", 1, 1'000);
  auto ext = ExtendLeaseSync(*engine_, "jobs", {m[0].receipt}, std::nullopt);
  EXPECT_EQ((*ext)[0].lease_deadline_ms, clock_->NowMillis() + 7'000);
}

// A Lease reads a run of neighbouring messages with one bounded scan; messages inside the run
// that are not leased (here delayed, then acked) must be stepped over, not returned.
TEST_F(EngineTest, ALeaseOfNeighboursWithGapsReturnsExactlyTheLeased) {
  Create("jobs");
  Send("jobs", {"a", "b"});
  Send("jobs", {"c", "d"}, 1'000);
  Send("jobs", {"e", "f", "g"});
  auto leased = Take("jobs", 10);
  EXPECT_EQ(Payloads(leased), (Strings{"a", "b", "e", "f", "g"}));
  for (const auto& m : leased) ASSERT_EQ(AckOne("jobs", m.receipt), Outcome::kOk);
  Send("jobs", {"h", "i", "j"});
  Advance(1'000);
  // c and d became ready after h, i, j were enqueued; their neighbours e-g are gone.
  EXPECT_EQ(Payloads(Take("jobs", 10)), (Strings{"h", "i", "j", "c", "d"}));
  Send("jobs", {"k", "l", "m", "n", "o", "p"});
  EXPECT_EQ(Payloads(Take("jobs", 2)), (Strings{"k", "l"}));
  EXPECT_EQ(Payloads(Take("jobs", 10)), (Strings{"m", "n", "o", "p"}));
}

TEST_F(EngineTest, DelayedMessagesWaitTheirTurn) {
  QueueConfig c;
  c.delay_ms = 5'000;
  Create("jobs", c);
  Send("jobs", {"queue-default"});
  Send("jobs", {"own-delay"}, 1'000);
  Send("jobs", {"no-delay"}, 0);
  EXPECT_EQ(Payloads(Take("jobs", 10)), (Strings{"no-delay"}));
  Advance(1'000);
  EXPECT_EQ(Payloads(Take("jobs", 10)), (Strings{"own-delay"}));
  Advance(3'999);
  EXPECT_TRUE(Take("jobs", 10).empty());
  Advance(1);
  EXPECT_EQ(Payloads(Take("jobs", 10)), (Strings{"queue-default"}));
}

TEST_F(EngineTest, OrderAfterRedeliveryFollowsVisibleTime) {
  Create("jobs");
  Send("jobs", {"a"});
  auto a = Take("jobs", 1, 5'000);
  Advance(1'000);
  Send("jobs", {"b"});
  Advance(1'000);
  Send("jobs", {"c"});
  Advance(3'000);  // a's lease ends now: it is visible after b and c
  Advance(1);
  EXPECT_EQ(Payloads(Take("jobs", 10)), (Strings{"b", "c", "a"}));
}

TEST_F(EngineTest, DeadLettersAfterMaxDeliveries) {
  CreateWithDeadLetters("jobs", 2);
  Send("jobs", {"poison", "fine"});
  for (int delivery = 1; delivery <= 2; ++delivery) {
    auto m = Take("jobs", 1, 1'000);
    ASSERT_EQ(m.size(), 1u);
    EXPECT_EQ(m[0].payload, "poison");
    EXPECT_EQ(m[0].delivery_count, static_cast<uint32_t>(delivery));
    EXPECT_EQ(NackOne("jobs", m[0].receipt), Outcome::kOk);
  }
  // The third attempt moves it instead of returning it.
  EXPECT_EQ(Payloads(Take("jobs", 1)), (Strings{"fine"}));
  EXPECT_EQ(Stats("jobs").dead_lettered_total, 1u);
  EXPECT_EQ(Stats("jobs").total, 1u);
  EXPECT_EQ(Stats("dlq").total, 1u);
  auto dead = Take("dlq");
  ASSERT_EQ(dead.size(), 1u);
  EXPECT_EQ(dead[0].payload, "poison");
  EXPECT_EQ(dead[0].delivery_count, 1u);
  auto peek = engine_->Peek("dlq", 10, "");
  ASSERT_TRUE(peek.ok());
  ASSERT_EQ(peek->messages.size(), 1u);
  EXPECT_EQ(peek->messages[0].dead_letter_source_queue, "jobs");
  EXPECT_FALSE(peek->messages[0].dead_letter_source_id.empty());
}

// A Lease takes the head of the queue as one block of the lease index, or, when it passes
// over a message (here one it dead-letters), message by message; either way the index and the
// ready/leased split must come out the same.
TEST_F(EngineTest, LeasesPastADeadLetteredMessageKeepTheIndexInStep) {
  CreateWithDeadLetters("jobs", 1);
  Send("jobs", {"poison"});
  ASSERT_EQ(Payloads(Take("jobs", 1, 1'000)), (Strings{"poison"}));
  Advance(1'000);                 // poison is ready again, with no deliveries left
  Send("jobs", {"a", "b", "c"});  // ready as of now: after poison in the index
  auto taken = Take("jobs", 2, 5'000);
  EXPECT_EQ(Payloads(taken), (Strings{"a", "b"}));
  QueueStats s = Stats("jobs");
  EXPECT_EQ(s.total, 3u);
  EXPECT_EQ(s.leased, 2u);
  EXPECT_EQ(s.ready, 1u);
  EXPECT_EQ(s.dead_lettered_total, 1u);
  auto head = Take("jobs", 10, 5'000);  // the head block: c alone
  EXPECT_EQ(Payloads(head), (Strings{"c"}));
  EXPECT_EQ(Stats("jobs").leased, 3u);
  EXPECT_EQ(AckOne("jobs", taken[1].receipt), Outcome::kOk);  // b
  Advance(5'000);  // the other leases end: a and c are ready, with no deliveries left
  s = Stats("jobs");
  EXPECT_EQ(s.ready, 2u);
  EXPECT_EQ(s.leased, 0u);
  EXPECT_EQ(s.total, 2u);
  EXPECT_TRUE(Take("jobs", 10).empty());  // both go to the dead-letter queue, in order
  EXPECT_EQ(Stats("jobs").total, 0u);
  EXPECT_EQ(Payloads(Take("dlq", 10)), (Strings{"poison", "a", "c"}));
}

TEST_F(EngineTest, DeadLetteringHappensOnLeaseExpiryToo) {
  CreateWithDeadLetters("jobs", 1);
  Send("jobs", {"x"});
  ASSERT_EQ(Take("jobs", 1, 1'000).size(), 1u);
  Advance(1'000);
  EXPECT_TRUE(Take("jobs").empty());
  EXPECT_EQ(Payloads(Take("dlq")), (Strings{"x"}));
}

TEST_F(EngineTest, DedupWindow) {
  QueueConfig c;
  c.dedup_window_ms = 60'000;
  Create("jobs", c);
  std::vector<EnqueueEntry> e = {{"first", {}, std::nullopt, "order-1"}};
  auto a = EnqueueSync(*engine_, "jobs", e);
  ASSERT_TRUE(a.ok());
  EXPECT_FALSE((*a)[0].duplicate);
  Advance(59'999);
  e[0].payload = "second";
  auto b = EnqueueSync(*engine_, "jobs", e);
  EXPECT_TRUE((*b)[0].duplicate);
  EXPECT_EQ((*b)[0].message_id, (*a)[0].message_id);
  EXPECT_EQ(Stats("jobs").total, 1u);
  Advance(1);
  auto c2 = EnqueueSync(*engine_, "jobs", e);
  EXPECT_FALSE((*c2)[0].duplicate);
  EXPECT_NE((*c2)[0].message_id, (*a)[0].message_id);
  EXPECT_EQ(Stats("jobs").total, 2u);
}

TEST_F(EngineTest, DedupWithinOneRequestAndAfterAck) {
  Create("jobs");
  std::vector<EnqueueEntry> e = {
      {"a", {}, std::nullopt, "x"}, {"b", {}, std::nullopt, "x"}, {"c", {}, std::nullopt, ""}};
  auto r = EnqueueSync(*engine_, "jobs", e);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE((*r)[0].duplicate);
  EXPECT_TRUE((*r)[1].duplicate);
  EXPECT_EQ((*r)[1].message_id, (*r)[0].message_id);
  EXPECT_FALSE((*r)[2].duplicate);
  EXPECT_EQ(Stats("jobs").total, 2u);
  auto m = Take("jobs");
  AckOne("jobs", m[0].receipt);
  auto again = EnqueueSync(*engine_, "jobs", {{"a", {}, std::nullopt, "x"}});
  EXPECT_TRUE((*again)[0].duplicate);  // still within the window, even though it was acked
}

TEST_F(EngineTest, RetentionExpiresOldMessages) {
  QueueConfig c;
  c.retention_ms = 60'000;
  Create("jobs", c);
  Send("jobs", {"old"});
  Advance(30'000);
  Send("jobs", {"new"});
  auto leased = Take("jobs");  // leased messages expire too
  Advance(30'000);
  EXPECT_EQ(Stats("jobs").total, 1u);
  EXPECT_EQ(Stats("jobs").expired_total, 1u);
  EXPECT_EQ(Payloads(Take("jobs")), (Strings{"new"}));
  EXPECT_EQ(AckOne("jobs", leased[0].receipt), Outcome::kOk);  // gone already
}

TEST_F(EngineTest, MaxDepthRefusesTheWholeBatch) {
  QueueConfig c;
  c.max_depth = 3;
  Create("jobs", c);
  Send("jobs", {"a", "b"});
  auto r = EnqueueSync(*engine_, "jobs", {{"c", {}, {}, ""}, {"d", {}, {}, ""}});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kResourceExhausted) << r.status();
  EXPECT_EQ(Stats("jobs").total, 2u);
  EXPECT_EQ(Send("jobs", {"c"}).size(), 1u);
  auto m = Take("jobs");
  AckOne("jobs", m[0].receipt);
  EXPECT_EQ(Send("jobs", {"d"}).size(), 1u);
}

TEST_F(EngineTest, PurgeRemovesEverything) {
  Create("jobs");
  Send("jobs", {"a", "b", "c"});
  Send("jobs", {"later"}, 60'000);
  auto leased = Take("jobs");
  auto n = PurgeQueueSync(*engine_, "jobs");
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 4u);
  QueueStats s = Stats("jobs");
  EXPECT_EQ(s.total, 0u);
  EXPECT_EQ(s.ready + s.leased + s.delayed, 0u);
  EXPECT_EQ(s.purged_total, 4u);
  Advance(120'000);
  EXPECT_TRUE(Take("jobs", 10).empty());
  Send("jobs", {"fresh"});
  EXPECT_EQ(Payloads(Take("jobs", 10)), (Strings{"fresh"}));
  Reopen();
  EXPECT_EQ(Stats("jobs").purged_total, 4u);
}

TEST_F(EngineTest, DeleteQueue) {
  Create("jobs");
  Send("jobs", {"a"});
  ASSERT_TRUE(DeleteQueueSync(*engine_, "jobs").ok());
  EXPECT_EQ(engine_->GetQueue("jobs").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(DeleteQueueSync(*engine_, "jobs").code(), absl::StatusCode::kNotFound);
  auto r = EnqueueSync(*engine_, "jobs", {{"x", {}, {}, ""}});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kNotFound);
  Create("jobs");
  EXPECT_EQ(Stats("jobs").total, 0u);
  EXPECT_EQ(Stats("jobs").enqueued_total, 0u);
  Reopen();
  EXPECT_EQ(Stats("jobs").total, 0u);
}

TEST_F(EngineTest, CannotDeleteADeadLetterQueueInUse) {
  Create("dlq");
  QueueConfig c;
  c.max_deliveries = 3;
  c.dead_letter_queue = "dlq";
  Create("jobs", c);
  auto s = DeleteQueueSync(*engine_, "dlq");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition) << s;
  EXPECT_NE(std::string(s.message()).find("jobs"), std::string::npos);
  ASSERT_TRUE(UpdateQueueSync(*engine_, "jobs", QueueConfig{}).ok());
  EXPECT_TRUE(DeleteQueueSync(*engine_, "dlq").ok());
}

TEST_F(EngineTest, CreateIsIdempotentForTheSameConfig) {
  QueueConfig c;
  c.visibility_timeout_ms = 30'000;  // the default, spelled out
  QueueInfo a = Create("jobs");
  auto b = CreateQueueSync(*engine_, "jobs", c);
  ASSERT_TRUE(b.ok()) << b.status();
  EXPECT_EQ(b->create_time_ms, a.create_time_ms);
  c.visibility_timeout_ms = 31'000;
  EXPECT_EQ(CreateQueueSync(*engine_, "jobs", c).status().code(), absl::StatusCode::kAlreadyExists);
}

TEST_F(EngineTest, ConfigReadsBackWithDefaults) {
  QueueInfo q = Create("jobs");
  EXPECT_EQ(q.config.visibility_timeout_ms, 30'000);
  EXPECT_EQ(q.config.max_payload_bytes, 262144u);
  EXPECT_EQ(q.config.dedup_window_ms, 300'000);
  EXPECT_EQ(q.config.retention_ms, 0);
  EXPECT_EQ(q.config.delay_ms, 0);
  EXPECT_EQ(engine_->GetQueue("jobs")->config, q.config);
}

TEST_F(EngineTest, DeadLetterQueueMustExist) {
  QueueConfig c;
  c.max_deliveries = 3;
  c.dead_letter_queue = "missing";
  auto r = CreateQueueSync(*engine_, "jobs", c);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(engine_->GetQueue("jobs").status().code(), absl::StatusCode::kNotFound);
}

TEST_F(EngineTest, UpdateReplacesTheConfig) {
  QueueConfig c;
  c.visibility_timeout_ms = 5'000;
  c.max_depth = 10;
  Create("jobs", c);
  QueueConfig d;
  d.delay_ms = 1'000;
  auto u = UpdateQueueSync(*engine_, "jobs", d);
  ASSERT_TRUE(u.ok());
  EXPECT_EQ(u->config.visibility_timeout_ms, 30'000);  // back to the default
  EXPECT_EQ(u->config.max_depth, 0u);
  EXPECT_EQ(u->config.delay_ms, 1'000);
  Reopen();
  EXPECT_EQ(engine_->GetQueue("jobs")->config, u->config);
  EXPECT_EQ(UpdateQueueSync(*engine_, "nope", d).status().code(), absl::StatusCode::kNotFound);
}

TEST_F(EngineTest, StatsSplit) {
  Create("jobs");
  Send("jobs", {"a", "b", "c"});
  Send("jobs", {"d"}, 10'000);
  Take("jobs", 1, 5'000);
  QueueStats s = Stats("jobs");
  EXPECT_EQ(s.ready, 2u);
  EXPECT_EQ(s.leased, 1u);
  EXPECT_EQ(s.delayed, 1u);
  EXPECT_EQ(s.total, 4u);
  EXPECT_EQ(s.enqueued_total, 4u);
  EXPECT_EQ(s.delivered_total, 1u);
  Advance(5'000);  // the lease ends
  s = Stats("jobs");
  EXPECT_EQ(s.ready, 3u);
  EXPECT_EQ(s.leased, 0u);
  EXPECT_EQ(s.delayed, 1u);
  EXPECT_EQ(s.oldest_ready_age_ms, 5'000);
  Advance(5'000);  // the delay ends
  s = Stats("jobs");
  EXPECT_EQ(s.ready, 4u);
  EXPECT_EQ(s.delayed, 0u);
  EXPECT_EQ(s.ready + s.leased + s.delayed, s.total);
}

// The engine's time never goes back: after a wall-clock step backwards an expired lease stays
// expired and a ready message stays ready (and leasable); time stands still until the wall
// clock catches up.
TEST_F(EngineTest, AWallClockStepBackwardsLeavesReadyMessagesReady) {
  Create("jobs");
  Send("jobs", {"a"});
  Send("jobs", {"b"}, 4'000);
  Take("jobs", 1, 5'000);
  Advance(6'000);
  EXPECT_EQ(Stats("jobs").ready, 2u);
  clock_->JumpWallMillis(-3'000);  // by the wall clock, the lease and delay are live again
  engine_->Tick();
  QueueStats s = Stats("jobs");
  EXPECT_EQ(s.ready, 2u);
  EXPECT_EQ(s.leased, 0u);
  EXPECT_EQ(s.ready + s.leased + s.delayed, s.total);
  EXPECT_EQ(Take("jobs", 2).size(), 2u);
}

TEST_F(EngineTest, PeekListsInIdOrderWithStatesAndChangesNothing) {
  Create("jobs");
  auto ids = Send("jobs", {"a", "b", "c"});
  Send("jobs", {"d"}, 10'000);
  Take("jobs");
  auto p = engine_->Peek("jobs", 2, "");
  ASSERT_TRUE(p.ok()) << p.status();
  ASSERT_EQ(p->messages.size(), 2u);
  EXPECT_EQ(p->messages[0].message_id, ids[0]);
  EXPECT_EQ(p->messages[0].state, MessageState::kLeased);
  EXPECT_EQ(p->messages[0].delivery_count, 1u);
  EXPECT_EQ(p->messages[1].state, MessageState::kReady);
  EXPECT_EQ(p->next_start_after, ids[1]);
  auto rest = engine_->Peek("jobs", 10, p->next_start_after);
  ASSERT_EQ(rest->messages.size(), 2u);
  EXPECT_EQ(rest->messages[0].payload, "c");
  EXPECT_EQ(rest->messages[1].state, MessageState::kDelayed);
  EXPECT_EQ(rest->messages[1].visible_time_ms, clock_->NowMillis() + 10'000);
  EXPECT_TRUE(rest->next_start_after.empty());
  EXPECT_EQ(Stats("jobs").delivered_total, 1u);
  EXPECT_EQ(Payloads(Take("jobs", 10)), (Strings{"b", "c"}));
}

TEST_F(EngineTest, PeekPagesOfAHundredByDefault) {
  Create("jobs");
  Send("jobs", std::vector<std::string>(150, "m"));
  auto first = engine_->Peek("jobs", 0, "");
  ASSERT_TRUE(first.ok());
  EXPECT_EQ(first->messages.size(), 100u);
  auto second = engine_->Peek("jobs", 0, first->next_start_after);
  EXPECT_EQ(second->messages.size(), 50u);
  EXPECT_TRUE(second->next_start_after.empty());
}

TEST_F(EngineTest, ListQueuesPagesByName) {
  for (std::string n : {"b", "a", "c", "ab", "x"}) Create(n);
  auto page = engine_->ListQueues("", 2, "");
  ASSERT_TRUE(page.ok());
  ASSERT_EQ(page->queues.size(), 2u);
  EXPECT_EQ(page->queues[0].name, "a");
  EXPECT_EQ(page->queues[1].name, "ab");
  page = engine_->ListQueues("", 2, page->next_page_token);
  EXPECT_EQ(page->queues[0].name, "b");
  EXPECT_EQ(page->queues[1].name, "c");
  page = engine_->ListQueues("", 2, page->next_page_token);
  ASSERT_EQ(page->queues.size(), 1u);
  EXPECT_TRUE(page->next_page_token.empty());
  auto a = engine_->ListQueues("a", 0, "");
  ASSERT_EQ(a->queues.size(), 2u);
  EXPECT_TRUE(a->next_page_token.empty());
}

TEST_F(EngineTest, UnknownQueuesAreNotFound) {
  EXPECT_EQ(engine_->GetQueue("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(EnqueueSync(*engine_, "nope", {{"x", {}, {}, ""}}).status().code(),
            absl::StatusCode::kNotFound);
  LeaseRequest r;
  r.queue = "nope";
  EXPECT_EQ(LeaseSync(*engine_, r).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(AckSync(*engine_, "nope", {"r"}).status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(engine_->Peek("nope", 1, "").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(PurgeQueueSync(*engine_, "nope").status().code(), absl::StatusCode::kNotFound);
  // A name that could never exist is reported as malformed, naming the field.
  EXPECT_EQ(engine_->GetQueue("../etc").status().code(), absl::StatusCode::kInvalidArgument);
}

TEST_F(EngineTest, BadEnqueueChangesNothing) {
  Create("jobs");
  Send("jobs", {"a"});
  std::vector<EnqueueEntry> e = {{"ok", {}, {}, ""}, {std::string(262145, 'x'), {}, {}, ""}};
  auto r = EnqueueSync(*engine_, "jobs", e);
  EXPECT_EQ(r.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(r.status().message()).find("messages[1].payload"), std::string::npos);
  EXPECT_EQ(Stats("jobs").total, 1u);
  EXPECT_EQ(Stats("jobs").enqueued_total, 1u);
}

TEST_F(EngineTest, MessageIdsAreNeverReused) {
  Create("jobs");
  auto a = Send("jobs", {"a"});
  AckOne("jobs", Take("jobs")[0].receipt);
  Reopen();
  auto b = Send("jobs", {"b"});
  EXPECT_GT(b[0], a[0]);
  ASSERT_TRUE(DeleteQueueSync(*engine_, "jobs").ok());
  Create("jobs");
  auto c = Send("jobs", {"c"});
  EXPECT_GT(c[0], b[0]);
}

TEST_F(EngineTest, LargeLeaseResponsesAreCappedButNeverEmpty) {
  QueueConfig c;
  c.max_payload_bytes = 4 * 1024 * 1024;
  Create("big", c);
  Send("big", {std::string(4 * 1024 * 1024, 'x'), std::string(1024 * 1024, 'y')});
  auto first = Take("big", 10);
  ASSERT_EQ(first.size(), 1u);  // one message over the cap still comes back
  EXPECT_EQ(first[0].payload.size(), 4u * 1024 * 1024);
  EXPECT_EQ(Take("big", 10).size(), 1u);
}

TEST_F(EngineTest, MoveMessagesRedrivesReadyMessagesWithFreshCounts) {
  CreateWithDeadLetters("jobs", 1);
  Send("jobs", {"a", "b", "c"});
  for (int i = 0; i < 3; ++i) NackOne("jobs", Take("jobs")[0].receipt);
  EXPECT_TRUE(Take("jobs", 10).empty());  // all three dead-lettered now
  ASSERT_EQ(Stats("dlq").total, 3u);
  auto leased_in_dlq = Take("dlq");  // a leased one is not moved
  auto moved = MoveMessagesSync(*engine_, "dlq", "jobs", 10);
  ASSERT_TRUE(moved.ok()) << moved.status();
  ASSERT_EQ(moved->size(), 2u);
  EXPECT_NE((*moved)[0].source_id, (*moved)[0].destination_id);
  QueueStats dlq = Stats("dlq"), jobs = Stats("jobs");
  EXPECT_EQ(dlq.total, 1u);
  EXPECT_EQ(dlq.moved_total, 2u);
  EXPECT_EQ(jobs.total, 2u);
  auto again = Take("jobs", 10);
  ASSERT_EQ(again.size(), 2u);
  EXPECT_EQ(again[0].payload, "b");        // lease order of the dead-letter queue
  EXPECT_EQ(again[0].delivery_count, 1u);  // counted afresh
  EXPECT_EQ(again[0].message_id, (*moved)[0].destination_id);
  auto peek = engine_->Peek("jobs", 10, "");
  EXPECT_TRUE(peek->messages[0].dead_letter_source_queue.empty());
  EXPECT_EQ(AckOne("dlq", leased_in_dlq[0].receipt), Outcome::kOk);
  Reopen();
  EXPECT_EQ(Stats("dlq").moved_total, 2u);
  EXPECT_EQ(Stats("jobs").total, 2u);
}

TEST_F(EngineTest, MoveMessagesMovesAtMostMaxAndChecksItsArguments) {
  Create("a");
  QueueConfig small;
  small.max_depth = 3;
  Create("b", small);
  Send("a", {"1", "2", "3", "4", "5"});
  auto moved = MoveMessagesSync(*engine_, "a", "b", 2);
  ASSERT_EQ(moved->size(), 2u);
  EXPECT_EQ(MoveMessagesSync(*engine_, "a", "b", 2).status().code(),
            absl::StatusCode::kResourceExhausted);
  EXPECT_EQ(Stats("a").total, 3u);  // the refused move changed nothing
  EXPECT_EQ(MoveMessagesSync(*engine_, "a", "a", 2).status().code(),
            absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(MoveMessagesSync(*engine_, "a", "nope", 2).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(MoveMessagesSync(*engine_, "a", "b", 1001).status().code(),
            absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(PurgeQueueSync(*engine_, "a").ok());
  EXPECT_TRUE(MoveMessagesSync(*engine_, "a", "b", 2)->empty());
}

TEST_F(EngineTest, DeleteMessageRemovesOneMessageInAnyState) {
  Create("jobs");
  auto ids = Send("jobs", {"poison", "fine"});
  auto leased = Take("jobs");
  ASSERT_TRUE(DeleteMessageSync(*engine_, "jobs", ids[0]).ok());
  EXPECT_EQ(DeleteMessageSync(*engine_, "jobs", ids[0]).code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(DeleteMessageSync(*engine_, "jobs", "zz").code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(Stats("jobs").total, 1u);
  EXPECT_EQ(Stats("jobs").deleted_total, 1u);
  EXPECT_EQ(AckOne("jobs", leased[0].receipt), Outcome::kOk);  // gone already
  EXPECT_EQ(Payloads(Take("jobs", 10)), (Strings{"fine"}));
  Reopen();
  EXPECT_EQ(Stats("jobs").deleted_total, 1u);
}

// gRPC clients cannot send invalid UTF-8 in string fields, but the engine's own callers can;
// such bytes must be stored and returned as they are (found by engine_fuzz).
TEST_F(EngineTest, ArbitraryBytesInAttributesAndDedupIdsRoundTrip) {
  Create("jobs");
  std::string odd("\xff\xfe\x00k", 4), value("\x80v\x00", 3), dedup("\xc3(", 2);
  auto r = EnqueueSync(*engine_, "jobs", {{"p", {{odd, value}}, std::nullopt, dedup}});
  ASSERT_TRUE(r.ok()) << r.status();
  auto again = EnqueueSync(*engine_, "jobs", {{"p", {}, std::nullopt, dedup}});
  EXPECT_TRUE((*again)[0].duplicate);
  Reopen();
  auto peek = engine_->Peek("jobs", 10, "");
  ASSERT_TRUE(peek.ok()) << peek.status();
  ASSERT_EQ(peek->messages.size(), 1u);
  EXPECT_EQ(peek->messages[0].attributes.at(odd), value);
  auto m = Take("jobs");
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].attributes.at(odd), value);
}

class EngineSmallBatchTest : public EngineFixture {
  Options MakeOptions() override {
    Options o = EngineFixture::MakeOptions();
    o.background_batch = 10;
    return o;
  }
};

TEST_F(EngineSmallBatchTest, RetentionWorkIsBoundedPerPass) {
  QueueConfig c;
  c.retention_ms = kMinute;
  Create("jobs", c);
  Send("jobs", std::vector<std::string>(25, "m"));
  clock_->AdvanceMillis(kMinute);
  engine_->Tick();
  EXPECT_EQ(Stats("jobs").total, 15u);
  engine_->Tick();
  engine_->Tick();
  EXPECT_EQ(Stats("jobs").total, 0u);
  EXPECT_EQ(Stats("jobs").expired_total, 25u);
  Reopen();
  EXPECT_EQ(Stats("jobs").total, 0u);
  EXPECT_EQ(Stats("jobs").expired_total, 25u);
}

}  // namespace
}  // namespace spool::engine
