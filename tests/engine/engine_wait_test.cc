// Long-polling Leases: woken by enqueue, by an ended lease, by an ended delay; timing out;
// cancelled; ended by Close. Time is a ManualClock; the waits below only wait for the engine's
// own threads to deliver a callback, never for time to pass.
#include <gtest/gtest.h>

#include <chrono>
#include <future>

#include "tests/engine/engine_fixture.h"

namespace spool::engine {
namespace {

using Result = Waiter::Result;

using EngineWaitTest = EngineFixture;

TEST_F(EngineWaitTest, EnqueueWakesAWaiter) {
  Create("jobs");
  auto w = Wait("jobs", 20'000);
  EXPECT_FALSE(w->Ready());
  Send("jobs", {"hello"});
  Result r = w->Get();
  ASSERT_TRUE(r.ok()) << r.status();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].payload, "hello");
  EXPECT_EQ((*r)[0].delivery_count, 1u);
}

TEST_F(EngineWaitTest, TimesOutEmpty) {
  Create("jobs");
  auto w = Wait("jobs", 5'000);
  Advance(4'999);
  EXPECT_FALSE(w->Ready());
  Advance(1);
  Result r = w->Get();
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
  Send("jobs", {"late"});
  EXPECT_EQ(Take("jobs").size(), 1u);  // nothing was leased for the finished wait
}

TEST_F(EngineWaitTest, AnEndedLeaseWakesAWaiter) {
  Create("jobs");
  Send("jobs", {"a"});
  auto first = Take("jobs", 1, 3'000);
  auto w = Wait("jobs", 20'000);
  Advance(2'999);
  EXPECT_FALSE(w->Ready());
  Advance(1);
  Result r = w->Get();
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].delivery_count, 2u);
}

TEST_F(EngineWaitTest, AnEndedDelayWakesAWaiter) {
  Create("jobs");
  Send("jobs", {"later"}, 4'000);
  auto w = Wait("jobs", 20'000);
  Advance(3'000);
  EXPECT_FALSE(w->Ready());
  Advance(1'000);
  EXPECT_EQ(w->Get()->size(), 1u);
}

TEST_F(EngineWaitTest, NackWakesAWaiter) {
  Create("jobs");
  Send("jobs", {"a"});
  auto m = Take("jobs");
  auto w = Wait("jobs", 20'000);
  NackOne("jobs", m[0].receipt);
  EXPECT_EQ(w->Get()->size(), 1u);
}

TEST_F(EngineWaitTest, CancelEndsTheWaitWithCancelled) {
  Create("jobs");
  auto w = Wait("jobs", 20'000);
  engine_->CancelLease(w->handle);
  EXPECT_EQ(w->Get().status().code(), absl::StatusCode::kCancelled);
  engine_->CancelLease(w->handle);  // a second cancel is harmless
  Send("jobs", {"a"});
  EXPECT_EQ(Take("jobs").size(), 1u);  // the cancelled wait leased nothing
}

TEST_F(EngineWaitTest, CloseEndsWaitsEmpty) {
  Create("jobs");
  auto w = Wait("jobs", 20'000);
  engine_->Close();
  Result r = w->Get();
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
  EXPECT_EQ(engine_->GetQueue("jobs").status().code(), absl::StatusCode::kUnavailable);
}

TEST_F(EngineWaitTest, DeleteQueueEndsWaitsWithNotFound) {
  Create("jobs");
  auto w = Wait("jobs", 20'000);
  ASSERT_TRUE(DeleteQueueSync(*engine_, "jobs").ok());
  EXPECT_EQ(w->Get().status().code(), absl::StatusCode::kNotFound);
}

TEST_F(EngineWaitTest, ManyWaitersAreServedInArrivalOrder) {
  Create("jobs");
  std::vector<std::unique_ptr<Waiter>> waiters;
  for (int i = 0; i < 500; ++i) waiters.push_back(Wait("jobs", 30'000));
  std::vector<std::string> payloads;
  for (int i = 0; i < 300; ++i) payloads.push_back("m" + std::to_string(i));
  Send("jobs", payloads);
  std::set<std::string> got;
  for (int i = 0; i < 300; ++i) {
    Result r = waiters[i]->Get();
    ASSERT_TRUE(r.ok());
    ASSERT_EQ(r->size(), 1u) << i;
    got.insert((*r)[0].payload);
  }
  EXPECT_EQ(got.size(), 300u);  // each message to exactly one waiter
  for (int i = 300; i < 500; ++i) EXPECT_FALSE(waiters[i]->Ready());
  Advance(30'000);
  for (int i = 300; i < 500; ++i) EXPECT_TRUE(waiters[i]->Get()->empty());
}

// A message enqueued while Leases wait is leased to them in the enqueue's own write (the
// hand-off): in arrival order, each waiter up to its max_messages, the rest left ready.
TEST_F(EngineWaitTest, NewMessagesGoStraightToTheWaitersInOrder) {
  Create("jobs");
  auto first = Wait("jobs", 20'000, 2);
  auto second = Wait("jobs", 20'000, 1);
  Send("jobs", {"a", "b", "c", "d"});
  Result r1 = first->Get();
  Result r2 = second->Get();
  ASSERT_TRUE(r1.ok() && r2.ok());
  EXPECT_EQ(Payloads(*r1), (std::vector<std::string>{"a", "b"}));
  EXPECT_EQ(Payloads(*r2), (std::vector<std::string>{"c"}));
  for (const auto& m : *r1) {
    EXPECT_EQ(m.delivery_count, 1u);
    EXPECT_EQ(m.lease_deadline_ms, clock_->NowMillis() + 30'000);  // the queue's default
  }
  QueueStats stats = Stats("jobs");
  EXPECT_EQ(stats.leased, 3u);
  EXPECT_EQ(stats.ready, 1u);
  EXPECT_EQ(Payloads(Take("jobs", 10)), (std::vector<std::string>{"d"}));
  // The receipts are ordinary ones: an ack works, a lease that ends brings the message back.
  EXPECT_EQ(AckOne("jobs", (*r1)[0].receipt), Outcome::kOk);
  EXPECT_EQ(AckOne("jobs", (*r2)[0].receipt), Outcome::kOk);
  Advance(30'000);
  auto back = Take("jobs", 10);
  ASSERT_EQ(back.size(), 2u);
  EXPECT_EQ(Payloads(back), (std::vector<std::string>{"b", "d"}));
  EXPECT_EQ(back[0].delivery_count, 2u);
}

// A hand-off fills a waiter only up to the response size a Lease would return (about 3.5 MB),
// then goes on to the next waiter, like a Lease that finds the messages ready.
TEST_F(EngineWaitTest, AHandOffStopsAtTheResponseSizeLimit) {
  QueueConfig config;
  config.max_payload_bytes = 1'000'000;
  Create("jobs", config);
  auto first = Wait("jobs", 20'000, 10);
  auto second = Wait("jobs", 20'000, 10);
  std::vector<std::string> big;
  for (char c : {'a', 'b', 'c', 'd'}) big.push_back(std::string(1'000'000, c));
  Send("jobs", big);
  Result r1 = first->Get();
  Result r2 = second->Get();
  ASSERT_TRUE(r1.ok() && r2.ok());
  ASSERT_EQ(r1->size(), 3u);
  ASSERT_EQ(r2->size(), 1u);
  EXPECT_EQ((*r2)[0].payload[0], 'd');
}

// A message whose lease ended before the background pass noticed is still served first: a new
// message is not handed past it.
TEST_F(EngineWaitTest, AMessageAlreadyReadyIsServedBeforeANewOne) {
  Create("jobs");
  Send("jobs", {"old"});
  ASSERT_EQ(Take("jobs", 1, 1'000).size(), 1u);
  auto w = Wait("jobs", 20'000);
  clock_->AdvanceMillis(1'000);  // the lease has ended; no Tick has run
  EXPECT_FALSE(w->Ready());
  Send("jobs", {"new"});
  Result r = w->Get();
  ASSERT_TRUE(r.ok());
  ASSERT_EQ(r->size(), 1u);
  EXPECT_EQ((*r)[0].payload, "old");
  EXPECT_EQ((*r)[0].delivery_count, 2u);
  EXPECT_EQ(Payloads(Take("jobs")), (std::vector<std::string>{"new"}));
}

TEST_F(EngineWaitTest, ADelayedMessageIsNotHandedOffBeforeItsTime) {
  Create("jobs");
  auto w = Wait("jobs", 20'000);
  Send("jobs", {"later"}, 5'000);
  EXPECT_FALSE(w->Ready());
  Send("jobs", {"now"});
  Result r = w->Get();
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(Payloads(*r), (std::vector<std::string>{"now"}));
  auto w2 = Wait("jobs", 20'000);
  Advance(4'999);
  EXPECT_FALSE(w2->Ready());
  Advance(1);
  EXPECT_EQ(Payloads(*w2->Get()), (std::vector<std::string>{"later"}));
}

TEST_F(EngineWaitTest, AHandedOffLeaseSurvivesARestart) {
  QueueConfig config;
  config.visibility_timeout_ms = 10'000;
  Create("jobs", config);
  auto w = Wait("jobs", 20'000);
  Send("jobs", {"x"});
  ASSERT_EQ(w->Get()->size(), 1u);
  Reopen();
  EXPECT_TRUE(Take("jobs").empty());
  EXPECT_EQ(Stats("jobs").leased, 1u);
  Advance(10'000);
  auto back = Take("jobs");
  ASSERT_EQ(back.size(), 1u);
  EXPECT_EQ(back[0].delivery_count, 2u);
  EXPECT_EQ(Stats("jobs").delivered_total, 2u);
}

class EngineFewWaitersTest : public EngineWaitTest {
  Options MakeOptions() override {
    Options o = EngineWaitTest::MakeOptions();
    o.max_waiters = 2;
    return o;
  }
};

TEST_F(EngineFewWaitersTest, BeyondMaxWaitersLeaseReturnsAtOnce) {
  Create("jobs");
  auto a = Wait("jobs", 20'000);
  auto b = Wait("jobs", 20'000);
  auto c = Wait("jobs", 20'000);
  Result r = c->Get();  // did not wait
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
  EXPECT_FALSE(a->Ready());
  EXPECT_FALSE(b->Ready());
}

}  // namespace
}  // namespace spool::engine
