// Subscriptions (Engine::Subscribe): push on enqueue, the max_outstanding credit, fairness
// with Lease waiters and other subscriptions, renewal past many visibility timeouts and its end
// at max_lease_duration, release on Unsubscribe and Close, settling on and off the
// subscription. Time is a ManualClock; the waits below only wait for the engine's threads to
// deliver a callback.
#include <gtest/gtest.h>

#include <condition_variable>
#include <mutex>

#include "tests/engine/engine_fixture.h"

namespace spool::engine {
namespace {

// A subscription seen from the test: what it was delivered, and how it ended. The callbacks
// hold the record, not the Sub, since the engine may end a subscription (at Close, when the
// fixture is torn down) after the test body has dropped its Sub.
class Sub {
 public:
  SubscriptionCallbacks Callbacks() {
    return {.deliver =
                [r = record_](std::vector<LeasedMessage> ms) {
                  std::lock_guard<std::mutex> lock(r->mu);
                  for (auto& m : ms) r->got.push_back(std::move(m));
                  r->cv.notify_all();
                },
            .ended =
                [r = record_](absl::Status s) {
                  std::lock_guard<std::mutex> lock(r->mu);
                  r->ended = s;
                  ++r->ended_calls;
                  r->cv.notify_all();
                }};
  }
  // Waits (for engine threads, at most 10 s) until n messages have been delivered in all.
  std::vector<LeasedMessage> WaitFor(size_t n) {
    std::unique_lock<std::mutex> lock(record_->mu);
    if (!record_->cv.wait_for(lock, std::chrono::seconds(10),
                              [&] { return record_->got.size() >= n; })) {
      ADD_FAILURE() << "only " << record_->got.size() << " of " << n << " messages were delivered";
    }
    return record_->got;
  }
  std::vector<LeasedMessage> Got() {
    std::lock_guard<std::mutex> lock(record_->mu);
    return record_->got;
  }
  absl::Status WaitEnded() {
    std::unique_lock<std::mutex> lock(record_->mu);
    if (!record_->cv.wait_for(lock, std::chrono::seconds(10),
                              [&] { return record_->ended_calls > 0; })) {
      ADD_FAILURE() << "the subscription did not end";
    }
    return record_->ended;
  }
  int EndedCalls() {
    std::lock_guard<std::mutex> lock(record_->mu);
    return record_->ended_calls;
  }

  std::shared_ptr<Subscription> handle;

 private:
  struct Record {
    std::mutex mu;
    std::condition_variable cv;
    std::vector<LeasedMessage> got;
    absl::Status ended;
    int ended_calls = 0;
  };
  std::shared_ptr<Record> record_ = std::make_shared<Record>();
};

class EngineSubscribeTest : public EngineFixture {
 protected:
  std::unique_ptr<Sub> Subscribe(const std::string& queue, uint32_t max_outstanding,
                                 std::optional<int64_t> visibility_ms = std::nullopt,
                                 std::optional<int64_t> max_lease_ms = std::nullopt) {
    auto sub = std::make_unique<Sub>();
    SubscribeRequest r;
    r.queue = queue;
    r.max_outstanding = max_outstanding;
    r.visibility_timeout_ms = visibility_ms;
    r.max_lease_duration_ms = max_lease_ms;
    auto h = engine_->Subscribe(r, sub->Callbacks());
    EXPECT_TRUE(h.ok()) << h.status();
    if (h.ok()) sub->handle = *h;
    return sub;
  }
  static std::vector<std::string> Receipts(const std::vector<LeasedMessage>& ms) {
    std::vector<std::string> out;
    for (const auto& m : ms) out.push_back(m.receipt);
    return out;
  }
  // Groups the commit thread has written so far (TestHooks::at_point "before-write").
  int Groups() { return groups_->load(); }

  Options MakeOptions() override {
    Options o = EngineFixture::MakeOptions();
    o.test.at_point = [groups = groups_](std::string_view point) {
      if (point == "before-write") ++*groups;
    };
    return o;
  }

  std::shared_ptr<std::atomic<int>> groups_ = std::make_shared<std::atomic<int>>(0);
};

TEST_F(EngineSubscribeTest, DeliversWhatIsVisibleAndThenEachEnqueue) {
  Create("jobs");
  Send("jobs", {"a", "b"});
  auto sub = Subscribe("jobs", 10);
  EXPECT_EQ(Payloads(sub->WaitFor(2)), (std::vector<std::string>{"a", "b"}));
  Send("jobs", {"c"});
  Send("jobs", {"d", "e"});
  auto got = sub->WaitFor(5);
  EXPECT_EQ(Payloads(got), (std::vector<std::string>{"a", "b", "c", "d", "e"}));
  for (const auto& m : got) EXPECT_EQ(m.delivery_count, 1u);
  EXPECT_EQ(Stats("jobs").leased, 5u);
  EXPECT_TRUE(Take("jobs").empty());
}

TEST_F(EngineSubscribeTest, NeverMoreThanMaxOutstandingAndSettlingMakesRoom) {
  Create("jobs");
  Send("jobs", {"1", "2", "3", "4", "5", "6"});
  auto sub = Subscribe("jobs", 2);
  auto got = sub->WaitFor(2);
  EXPECT_EQ(sub->Got().size(), 2u);
  EXPECT_EQ(Stats("jobs").ready, 4u);
  // Acking one makes room for one: it comes back with the ack's answer, in the same write.
  int before = Groups();
  auto r = SettleSync(*engine_, sub->handle, {got[0].receipt}, {});
  ASSERT_TRUE(r.ok()) << r.status();
  EXPECT_EQ(Groups() - before, 1);
  ASSERT_EQ(r->acks.size(), 1u);
  EXPECT_EQ(r->acks[0].outcome, Outcome::kOk);
  EXPECT_EQ(Payloads(r->delivered), (std::vector<std::string>{"3"}));
  EXPECT_EQ(sub->Got().size(), 2u);  // not also through deliver
  // Acking the same receipt again is a retried ack: OK, and no room is made twice.
  r = SettleSync(*engine_, sub->handle, {got[0].receipt}, {});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->acks[0].outcome, Outcome::kOk);
  EXPECT_TRUE(r->delivered.empty());
  EXPECT_EQ(engine_->Runtime().subscribed_messages, 2);
}

TEST_F(EngineSubscribeTest, NackOnTheSubscriptionWithADelay) {
  Create("jobs");
  Send("jobs", {"a"});
  auto sub = Subscribe("jobs", 1);
  auto got = sub->WaitFor(1);
  auto r = SettleSync(*engine_, sub->handle, {}, {got[0].receipt}, 5'000);
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->nacks[0].outcome, Outcome::kOk);
  EXPECT_TRUE(r->delivered.empty());
  EXPECT_EQ(Stats("jobs").delayed, 1u);
  Advance(5'000);  // visible again, and the subscription has room: it is delivered again
  auto again = sub->WaitFor(2);
  EXPECT_EQ(again[1].payload, "a");
  EXPECT_EQ(again[1].delivery_count, 2u);
}

TEST_F(EngineSubscribeTest, AUnaryAckOrNackOfItsReceiptMakesRoom) {
  Create("jobs");
  Send("jobs", {"a", "b", "c"});
  auto sub = Subscribe("jobs", 1);
  auto got = sub->WaitFor(1);
  EXPECT_EQ(AckOne("jobs", got[0].receipt), Outcome::kOk);
  got = sub->WaitFor(2);
  EXPECT_EQ(got[1].payload, "b");
  EXPECT_EQ(NackOne("jobs", got[1].receipt, 60'000), Outcome::kOk);
  got = sub->WaitFor(3);
  EXPECT_EQ(got[2].payload, "c");
}

TEST_F(EngineSubscribeTest, ReceiptsOfAnotherQueueOrForgedOnesAreOutcomesNotErrors) {
  Create("jobs");
  Create("other");
  Send("other", {"x"});
  auto theirs = Take("other");
  auto sub = Subscribe("jobs", 1);
  auto r = SettleSync(*engine_, sub->handle, {theirs[0].receipt, "forged"}, {});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->acks[0].outcome, Outcome::kInvalidReceipt);
  EXPECT_EQ(r->acks[1].outcome, Outcome::kInvalidReceipt);
  EXPECT_EQ(Stats("other").leased, 1u);
}

TEST_F(EngineSubscribeTest, SubscriptionsAndWaitingLeasesShareTheQueueOldestFirst) {
  Create("jobs");
  auto a = Subscribe("jobs", 5);
  auto w = Wait("jobs", 60'000);
  auto b = Subscribe("jobs", 5);
  // Each enqueue goes to the oldest waiter; a subscription with room then waits again, last.
  for (std::string p : {"1", "2", "3", "4", "5"}) Send("jobs", {p});
  auto lease = w->Get();
  ASSERT_TRUE(lease.ok());
  EXPECT_EQ(Payloads(*lease), (std::vector<std::string>{"2"}));
  EXPECT_EQ(Payloads(a->WaitFor(2)), (std::vector<std::string>{"1", "4"}));
  EXPECT_EQ(Payloads(b->WaitFor(2)), (std::vector<std::string>{"3", "5"}));
}

TEST_F(EngineSubscribeTest, LeasesAreRenewedWhileOpenPastManyVisibilityTimeouts) {
  Create("jobs");
  Send("jobs", {"long job"});
  auto sub = Subscribe("jobs", 1, 10'000);
  auto got = sub->WaitFor(1);
  EXPECT_EQ(got[0].lease_deadline_ms, clock_->NowMillis() + 10'000);
  for (int i = 0; i < 60; ++i) Advance(1'000);  // a minute: six visibility timeouts
  EXPECT_TRUE(Take("jobs").empty());
  EXPECT_EQ(Stats("jobs").leased, 1u);
  EXPECT_EQ(sub->Got().size(), 1u);
  // Renewed in storage too: after a restart it is still leased for up to one timeout.
  auto peek = engine_->Peek("jobs", 1, "");
  ASSERT_TRUE(peek.ok());
  EXPECT_GT(peek->messages[0].visible_time_ms, clock_->NowMillis());
  EXPECT_LE(peek->messages[0].visible_time_ms, clock_->NowMillis() + 10'000);
  // The first receipt still holds.
  auto r = SettleSync(*engine_, sub->handle, {got[0].receipt}, {});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->acks[0].outcome, Outcome::kOk);
  EXPECT_EQ(Stats("jobs").total, 0u);
}

TEST_F(EngineSubscribeTest, RenewalStopsAtMaxLeaseDuration) {
  Create("jobs");
  Send("jobs", {"stuck"});
  auto sub = Subscribe("jobs", 1, 10'000, 30'000);
  auto got = sub->WaitFor(1);
  for (int i = 0; i < 29; ++i) Advance(1'000);
  EXPECT_EQ(sub->Got().size(), 1u);
  EXPECT_EQ(Stats("jobs").leased, 1u);
  Advance(1'000);  // 30 s since delivery: the lease ends and the subscription, with room again,
  Advance(0);      // gets the message once more
  got = sub->WaitFor(2);
  EXPECT_EQ(got[1].payload, "stuck");
  EXPECT_EQ(got[1].delivery_count, 2u);
  // The old receipt is gone: the message was leased again.
  EXPECT_EQ(AckOne("jobs", got[0].receipt), Outcome::kLeaseLost);
}

TEST_F(EngineSubscribeTest, ExtendLeaseOfAHeldMessageMovesItsRenewal) {
  Create("jobs");
  Send("jobs", {"a"});
  auto sub = Subscribe("jobs", 1, 10'000, 20'000);
  auto got = sub->WaitFor(1);
  auto r = ExtendLeaseSync(*engine_, "jobs", {got[0].receipt}, 3'600'000);
  ASSERT_TRUE(r.ok());
  for (int i = 0; i < 120; ++i) Advance(1'000);  // past max_lease_duration: the extension holds
  EXPECT_EQ(sub->Got().size(), 1u);
  EXPECT_EQ(Stats("jobs").leased, 1u);
}

TEST_F(EngineSubscribeTest, UnsubscribeReleasesEverythingAtOnceAndDurably) {
  Create("jobs");
  Send("jobs", {"a", "b", "c"});
  auto sub = Subscribe("jobs", 10, 600'000);
  sub->WaitFor(3);
  int before = Groups();
  auto n = UnsubscribeSync(*engine_, sub->handle);
  ASSERT_TRUE(n.ok());
  EXPECT_EQ(*n, 3u);
  EXPECT_EQ(Groups() - before, 1);
  EXPECT_EQ(Stats("jobs").ready, 3u);
  EXPECT_EQ(*UnsubscribeSync(*engine_, sub->handle), 0u);  // idempotent
  EXPECT_EQ(sub->EndedCalls(), 0);
  Reopen();  // visible at once after a restart too, not after the 10-minute lease
  auto again = Take("jobs", 10);
  ASSERT_EQ(again.size(), 3u);
  for (const auto& m : again) EXPECT_EQ(m.delivery_count, 2u);
}

TEST_F(EngineSubscribeTest, ReleasedMessagesGoToTheNextWaiter) {
  Create("jobs");
  Send("jobs", {"a", "b"});
  auto a = Subscribe("jobs", 10);
  a->WaitFor(2);
  auto b = Subscribe("jobs", 10);
  ASSERT_TRUE(UnsubscribeSync(*engine_, a->handle).ok());
  EXPECT_EQ(Payloads(b->WaitFor(2)), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(a->Got().size(), 2u);  // nothing more for the closed one
}

TEST_F(EngineSubscribeTest, CloseReleasesWhatIsHeldAndEndsWithUnavailable) {
  Create("jobs");
  Send("jobs", {"a", "b"});
  auto sub = Subscribe("jobs", 10, 600'000);
  sub->WaitFor(2);
  engine_->Close();
  absl::Status ended = sub->WaitEnded();
  EXPECT_EQ(ended.code(), absl::StatusCode::kUnavailable) << ended;
  EXPECT_EQ(sub->EndedCalls(), 1);
  Reopen();
  EXPECT_EQ(Take("jobs", 10).size(), 2u);
}

TEST_F(EngineSubscribeTest, DeleteQueueEndsItWithNotFound) {
  Create("jobs");
  auto sub = Subscribe("jobs", 10);
  ASSERT_TRUE(DeleteQueueSync(*engine_, "jobs").ok());
  EXPECT_EQ(sub->WaitEnded().code(), absl::StatusCode::kNotFound);
  auto r = SettleSync(*engine_, sub->handle, {"x"}, {});
  EXPECT_EQ(r.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(*UnsubscribeSync(*engine_, sub->handle), 0u);
  EXPECT_EQ(sub->EndedCalls(), 1);
}

TEST_F(EngineSubscribeTest, APurgeMakesRoomByTheNextBackgroundPass) {
  Create("jobs");
  Send("jobs", {"a"});
  auto sub = Subscribe("jobs", 1);
  sub->WaitFor(1);
  ASSERT_TRUE(PurgeQueueSync(*engine_, "jobs").ok());
  EXPECT_EQ(engine_->Runtime().subscribed_messages, 0);
  Advance(0);
  Send("jobs", {"b"});
  EXPECT_EQ(sub->WaitFor(2)[1].payload, "b");
}

TEST_F(EngineSubscribeTest, ReleasesCountAsDeliveriesTowardTheDeadLetterQueue) {
  CreateWithDeadLetters("jobs", 2);
  Send("jobs", {"poison"});
  for (int i = 0; i < 2; ++i) {
    auto sub = Subscribe("jobs", 1);
    EXPECT_EQ(sub->WaitFor(1)[0].delivery_count, static_cast<uint32_t>(i + 1));
    ASSERT_TRUE(UnsubscribeSync(*engine_, sub->handle).ok());
  }
  auto sub = Subscribe("jobs", 1);
  EXPECT_TRUE(sub->Got().empty());
  EXPECT_EQ(Stats("dlq").ready, 1u);
}

TEST_F(EngineSubscribeTest, ADelayedMessageIsDeliveredWhenItsDelayEnds) {
  Create("jobs");
  auto sub = Subscribe("jobs", 5);
  Send("jobs", {"later"}, 4'000);
  Advance(3'999);
  EXPECT_TRUE(sub->Got().empty());
  Advance(1);
  EXPECT_EQ(sub->WaitFor(1)[0].payload, "later");
}

TEST_F(EngineSubscribeTest, BadArgumentsAreRefusedNamingTheField) {
  Create("jobs");
  Sub sub;
  auto refused = [&](SubscribeRequest r) {
    auto h = engine_->Subscribe(r, sub.Callbacks());
    return h.ok() ? absl::OkStatus() : h.status();
  };
  SubscribeRequest r;
  r.queue = "jobs";
  r.max_outstanding = 10'001;
  EXPECT_NE(std::string(refused(r).message()).find("max_outstanding"), std::string::npos)
      << refused(r);
  r.max_outstanding = 1;
  r.visibility_timeout_ms = 0;
  EXPECT_NE(std::string(refused(r).message()).find("visibility_timeout"), std::string::npos)
      << refused(r);
  r.visibility_timeout_ms.reset();
  r.max_lease_duration_ms = 12 * kHour + 1;
  EXPECT_NE(std::string(refused(r).message()).find("max_lease_duration"), std::string::npos)
      << refused(r);
  r.max_lease_duration_ms.reset();
  r.queue = "";
  EXPECT_EQ(refused(r).code(), absl::StatusCode::kInvalidArgument);
  r.queue = "nope";
  EXPECT_EQ(refused(r).code(), absl::StatusCode::kNotFound);

  auto ok = Subscribe("jobs", 1);
  std::vector<std::string> many(1001, "x");
  auto s = SettleSync(*engine_, ok->handle, many, {});
  EXPECT_EQ(s.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_NE(std::string(s.status().message()).find("1000"), std::string::npos) << s.status();
  s = SettleSync(*engine_, ok->handle, {}, {"x"}, -1);
  EXPECT_NE(std::string(s.status().message()).find("nack_delay"), std::string::npos) << s.status();
  EXPECT_EQ(engine_->Runtime().subscriptions, 1);
}

}  // namespace
}  // namespace spool::engine
