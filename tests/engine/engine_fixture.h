// A fixture that opens an Engine on a temporary directory with a ManualClock and no
// background thread: tests move time with Advance() and run background work with Tick().
#ifndef SPOOL_TESTS_ENGINE_ENGINE_FIXTURE_H_
#define SPOOL_TESTS_ENGINE_ENGINE_FIXTURE_H_

#include <gtest/gtest.h>

#include <chrono>
#include <future>
#include <memory>
#include <string>
#include <vector>

#include "engine/engine.h"
#include "engine/sync.h"
#include "tests/test_util.h"

namespace spool::engine {

// A Lease that may wait, seen from the test: its result arrives through a future.
struct Waiter {
  using Result = absl::StatusOr<std::vector<LeasedMessage>>;
  std::shared_ptr<std::promise<Result>> promise = std::make_shared<std::promise<Result>>();
  std::future<Result> future = promise->get_future();
  std::shared_ptr<LeaseWait> handle;

  bool Ready() {
    return future.wait_for(std::chrono::milliseconds(0)) == std::future_status::ready;
  }
  Result Get() {
    if (future.wait_for(std::chrono::seconds(10)) != std::future_status::ready) {
      ADD_FAILURE() << "the Lease did not return within 10 s";
      return absl::DeadlineExceededError("the Lease did not return");
    }
    return future.get();
  }
};

class EngineFixture : public ::testing::Test {
 protected:
  void SetUp() override { Open(); }
  void TearDown() override { engine_.reset(); }

  virtual Options MakeOptions() {
    Options o;
    o.data_dir = dir_.path();
    o.durability = Durability::kAsync;  // crash tests cover sync; these are about semantics
    o.background_thread = false;
    o.log = [](const std::string&) {};
    return o;
  }
  void Open() {
    auto e = Engine::Open(MakeOptions(), clock_);
    ASSERT_TRUE(e.ok()) << e.status();
    engine_ = std::move(*e);
  }
  void Reopen() {
    engine_.reset();
    Open();
  }
  void Advance(int64_t ms) {
    clock_->AdvanceMillis(ms);
    engine_->Tick();
  }

  QueueInfo Create(const std::string& name, QueueConfig config = {}) {
    auto q = CreateQueueSync(*engine_, name, config);
    EXPECT_TRUE(q.ok()) << q.status();
    return q.ok() ? *q : QueueInfo{};
  }
  // Creates "dlq", then queue, which dead-letters into it after max_deliveries.
  void CreateWithDeadLetters(const std::string& queue, uint32_t max_deliveries) {
    Create("dlq");
    QueueConfig c;
    c.max_deliveries = max_deliveries;
    c.dead_letter_queue = "dlq";
    Create(queue, c);
  }
  std::vector<std::string> Send(const std::string& queue, const std::vector<std::string>& payloads,
                                std::optional<int64_t> delay_ms = std::nullopt) {
    std::vector<EnqueueEntry> entries;
    for (const auto& p : payloads) entries.push_back({p, {}, delay_ms, ""});
    auto r = EnqueueSync(*engine_, queue, entries);
    EXPECT_TRUE(r.ok()) << r.status();
    std::vector<std::string> ids;
    if (r.ok()) {
      for (auto& x : *r) ids.push_back(x.message_id);
    }
    return ids;
  }
  std::vector<LeasedMessage> Take(const std::string& queue, uint32_t max = 1,
                                  std::optional<int64_t> visibility_ms = std::nullopt) {
    LeaseRequest req;
    req.queue = queue;
    req.max_messages = max;
    req.visibility_timeout_ms = visibility_ms;
    auto r = LeaseSync(*engine_, req);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? *r : std::vector<LeasedMessage>{};
  }
  std::vector<std::string> Payloads(const std::vector<LeasedMessage>& ms) {
    std::vector<std::string> out;
    for (auto& m : ms) out.push_back(m.payload);
    return out;
  }
  Outcome AckOne(const std::string& queue, const std::string& receipt) {
    auto r = AckSync(*engine_, queue, {receipt});
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? (*r)[0].outcome : Outcome::kInvalidReceipt;
  }
  Outcome NackOne(const std::string& queue, const std::string& receipt, int64_t delay_ms = 0) {
    auto r = NackSync(*engine_, queue, {receipt}, delay_ms);
    EXPECT_TRUE(r.ok()) << r.status();
    return r.ok() ? (*r)[0].outcome : Outcome::kInvalidReceipt;
  }
  // Starts a Lease of up to max messages that waits up to wait_ms for them.
  std::unique_ptr<Waiter> Wait(const std::string& queue, int64_t wait_ms, uint32_t max = 1) {
    auto w = std::make_unique<Waiter>();
    LeaseRequest r;
    r.queue = queue;
    r.max_messages = max;
    r.wait_ms = wait_ms;
    auto p = w->promise;
    w->handle = engine_->Lease(r, [p](Waiter::Result res) { p->set_value(std::move(res)); });
    return w;
  }
  QueueStats Stats(const std::string& queue) {
    auto q = engine_->GetQueue(queue);
    EXPECT_TRUE(q.ok()) << q.status();
    return q.ok() ? q->stats : QueueStats{};
  }

  testing::TempDir dir_;
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  std::unique_ptr<Engine> engine_;
};

}  // namespace spool::engine

#endif  // SPOOL_TESTS_ENGINE_ENGINE_FIXTURE_H_
