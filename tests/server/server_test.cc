// spool.v1 over real gRPC on loopback, against an in-process server with the real clock.
// These are the behaviours only the server has: status mapping, Duration handling, long polls
// woken by real events, deadlines, cancellation, limits, health, reflection, shutdown.
#include "server/server.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <mutex>

#include "grpc/health/v1/health.grpc.pb.h"
#include "grpcpp/health_check_service_interface.h"
#include "tests/grpc_util.h"
#include "tests/server/test_server.h"
#include "tests/test_util.h"

namespace spool::server {
namespace {

using namespace std::chrono_literals;
using spool::testing::Seconds;
using Clock = std::chrono::steady_clock;

class ServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = StartTestServer(TestServerOptions(dir_.path()));
    ASSERT_NE(server_, nullptr);
    stub_ = spool::testing::StubFor(server_->port());
  }

  spool::testing::TempDir dir_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<v1::QueueService::Stub> stub_;
};

TEST_F(ServerTest, CreateReturnsTheConfigWithDefaults) {
  grpc::ClientContext ctx;
  v1::CreateQueueRequest req;
  req.set_name("jobs");
  req.mutable_config()->set_max_depth(10);
  v1::Queue q;
  ASSERT_TRUE(stub_->CreateQueue(&ctx, req, &q).ok());
  EXPECT_EQ(q.name(), "jobs");
  EXPECT_EQ(q.config().visibility_timeout().seconds(), 30);
  EXPECT_EQ(q.config().max_payload_bytes(), 262144u);
  EXPECT_EQ(q.config().dedup_window().seconds(), 300);
  EXPECT_EQ(q.config().max_depth(), 10u);
  EXPECT_GT(q.create_time().seconds(), 1'600'000'000);
}

TEST_F(ServerTest, StatusCodesAndFieldNames) {
  grpc::Status s;
  spool::testing::GetQueue(*stub_, "nope", &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(s.error_message().find("nope"), std::string::npos);

  v1::QueueConfig bad;
  *bad.mutable_visibility_timeout() = Seconds(0, 500'000'000);
  s = spool::testing::CreateQueue(*stub_, "jobs", bad);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message().rfind("config.visibility_timeout:", 0), 0u) << s.error_message();

  v1::QueueConfig malformed;
  *malformed.mutable_delay() = Seconds(5, -1);  // nanos of the other sign
  s = spool::testing::CreateQueue(*stub_, "jobs", malformed);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message().rfind("config.delay:", 0), 0u) << s.error_message();

  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "jobs").ok());
  v1::QueueConfig other;
  other.set_max_depth(5);
  EXPECT_EQ(spool::testing::CreateQueue(*stub_, "jobs", other).error_code(),
            grpc::StatusCode::ALREADY_EXISTS);

  grpc::ClientContext ctx;
  v1::EnqueueRequest req;
  req.set_queue("jobs");
  req.add_messages()->set_payload("fine");
  auto* e = req.add_messages();
  e->set_payload("x");
  *e->mutable_delay() = Seconds(31 * 86400);
  v1::EnqueueResponse resp;
  s = stub_->Enqueue(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message().rfind("messages[1].delay:", 0), 0u) << s.error_message();
  EXPECT_EQ(spool::testing::GetQueue(*stub_, "jobs").stats().total(), 0u);

  grpc::ClientContext ctx2;
  v1::LeaseRequest lreq;
  lreq.set_queue("jobs");
  lreq.set_max_messages(1001);
  v1::LeaseResponse lresp;
  s = stub_->Lease(&ctx2, lreq, &lresp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message().rfind("max_messages:", 0), 0u);

  grpc::ClientContext ctx3;
  v1::AckRequest areq;
  areq.set_queue("jobs");
  v1::AckResponse aresp;
  s = stub_->Ack(&ctx3, areq, &aresp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_EQ(s.error_message().rfind("receipts:", 0), 0u);
}

TEST_F(ServerTest, FullCycleWithOutcomes) {
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "jobs").ok());
  auto ids = spool::testing::Enqueue(*stub_, "jobs", {"a", "b"});
  ASSERT_EQ(ids.size(), 2u);
  auto leased = spool::testing::Lease(*stub_, "jobs", 10, 30);
  ASSERT_EQ(leased.messages_size(), 2);
  EXPECT_EQ(leased.messages(0).message_id(), ids[0]);
  EXPECT_EQ(leased.messages(0).payload(), "a");
  EXPECT_EQ(leased.messages(0).delivery_count(), 1u);

  grpc::ClientContext ctx;
  v1::ExtendLeaseRequest ereq;
  ereq.set_queue("jobs");
  ereq.add_receipts(leased.messages(1).receipt());
  *ereq.mutable_visibility_timeout() = Seconds(120);
  v1::ExtendLeaseResponse eresp;
  ASSERT_TRUE(stub_->ExtendLease(&ctx, ereq, &eresp).ok());
  EXPECT_EQ(eresp.results(0).outcome(), v1::OUTCOME_OK);
  EXPECT_EQ(eresp.results(0).receipt(), leased.messages(1).receipt());
  EXPECT_GT(eresp.results(0).lease_deadline().seconds(),
            leased.messages(1).lease_deadline().seconds() + 60);

  auto acked = spool::testing::Ack(*stub_, "jobs", {leased.messages(0).receipt(), "not-a-receipt"});
  ASSERT_EQ(acked.results_size(), 2);
  EXPECT_EQ(acked.results(0).outcome(), v1::OUTCOME_OK);
  EXPECT_EQ(acked.results(1).outcome(), v1::OUTCOME_INVALID_RECEIPT);

  grpc::ClientContext nctx;
  v1::NackRequest nreq;
  nreq.set_queue("jobs");
  nreq.add_receipts(leased.messages(1).receipt());
  *nreq.mutable_delay() = Seconds(3600);
  v1::NackResponse nresp;
  ASSERT_TRUE(stub_->Nack(&nctx, nreq, &nresp).ok());
  EXPECT_EQ(nresp.results(0).outcome(), v1::OUTCOME_OK);

  auto peek = spool::testing::PeekAll(*stub_, "jobs");
  ASSERT_EQ(peek.size(), 1u);
  EXPECT_EQ(peek[0].state(), v1::MESSAGE_STATE_DELAYED);
  v1::Queue q = spool::testing::GetQueue(*stub_, "jobs");
  EXPECT_EQ(q.stats().delayed(), 1u);
  EXPECT_EQ(q.stats().acked_total(), 1u);
}

TEST_F(ServerTest, LongPollWokenByEnqueue) {
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "jobs").ok());
  std::atomic<int64_t> returned_at{0};
  v1::LeaseResponse resp;
  std::thread consumer([&] {
    resp = spool::testing::Lease(*stub_, "jobs", 1, 30, 20);
    returned_at = Clock::now().time_since_epoch().count();
  });
  std::this_thread::sleep_for(300ms);  // the consumer is waiting by now
  EXPECT_EQ(returned_at.load(), 0);
  auto sent_at = Clock::now();
  spool::testing::Enqueue(*stub_, "jobs", {"wake"});
  consumer.join();
  ASSERT_EQ(resp.messages_size(), 1);
  EXPECT_EQ(resp.messages(0).payload(), "wake");
  auto latency = Clock::duration(returned_at.load()) - sent_at.time_since_epoch();
  EXPECT_LT(latency, 100ms);
}

TEST_F(ServerTest, LongPollWokenByLeaseExpiryAndByDelay) {
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "jobs").ok());
  spool::testing::Enqueue(*stub_, "jobs", {"a"});
  auto first = spool::testing::Lease(*stub_, "jobs", 1, /*visibility_s=*/1);
  ASSERT_EQ(first.messages_size(), 1);
  auto start = Clock::now();
  auto again = spool::testing::Lease(*stub_, "jobs", 1, 30, /*wait_s=*/10);
  auto waited = Clock::now() - start;
  ASSERT_EQ(again.messages_size(), 1);
  EXPECT_EQ(again.messages(0).delivery_count(), 2u);
  EXPECT_GT(waited, 800ms);
  EXPECT_LT(waited, 1100ms + 100ms);

  grpc::ClientContext ctx;
  v1::EnqueueRequest req;
  req.set_queue("jobs");
  auto* e = req.add_messages();
  e->set_payload("later");
  *e->mutable_delay() = Seconds(1);
  v1::EnqueueResponse eresp;
  ASSERT_TRUE(stub_->Enqueue(&ctx, req, &eresp).ok());
  start = Clock::now();
  auto delayed = spool::testing::Lease(*stub_, "jobs", 1, 30, 10);
  waited = Clock::now() - start;
  ASSERT_EQ(delayed.messages_size(), 1);
  EXPECT_EQ(delayed.messages(0).payload(), "later");
  EXPECT_LT(waited, 1100ms + 100ms);
}

// A Lease waiting 20 s under a shorter client deadline returns an empty OK shortly before the
// deadline (not DEADLINE_EXCEEDED), and leases nothing after it.
void ExpectWaitEndsEmptyJustBefore(v1::QueueService::Stub& stub,
                                   std::chrono::milliseconds deadline) {
  ASSERT_TRUE(spool::testing::CreateQueue(stub, "jobs").ok());
  grpc::ClientContext ctx;
  spool::testing::SetDeadline(&ctx, deadline);
  v1::LeaseRequest req;
  req.set_queue("jobs");
  *req.mutable_wait_time() = Seconds(20);
  v1::LeaseResponse resp;
  auto start = Clock::now();
  grpc::Status s = stub.Lease(&ctx, req, &resp);
  auto took = Clock::now() - start;
  EXPECT_TRUE(s.ok()) << "not DEADLINE_EXCEEDED: " << s.error_message();
  EXPECT_EQ(resp.messages_size(), 0);
  EXPECT_LT(took, deadline);
  EXPECT_GT(took, deadline - 500ms);
  spool::testing::Enqueue(stub, "jobs", {"x"});
  auto after = spool::testing::Lease(stub, "jobs", 1);
  ASSERT_EQ(after.messages_size(), 1);
  EXPECT_EQ(after.messages(0).delivery_count(), 1u) << "the ended wait leased it";
}

TEST_F(ServerTest, WaitEndsEmptyBeforeTheClientDeadline) {
  ExpectWaitEndsEmptyJustBefore(*stub_, 1500ms);
}

// The exact case: a 5 s deadline and a 20 s wait.
TEST_F(ServerTest, FiveSecondDeadlineTwentySecondWaitEndsEmptyJustBefore) {
  ExpectWaitEndsEmptyJustBefore(*stub_, 5000ms);
}

TEST_F(ServerTest, CancelledWaitLeasesNothing) {
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "jobs").ok());
  grpc::ClientContext ctx;
  v1::LeaseRequest req;
  req.set_queue("jobs");
  *req.mutable_wait_time() = Seconds(20);
  v1::LeaseResponse resp;
  std::mutex mu;
  std::condition_variable cv;
  bool done = false;
  grpc::Status status;
  stub_->async()->Lease(&ctx, &req, &resp, [&](grpc::Status s) {
    std::lock_guard<std::mutex> l(mu);
    status = s;
    done = true;
    cv.notify_all();
  });
  std::this_thread::sleep_for(300ms);
  ctx.TryCancel();
  {
    std::unique_lock<std::mutex> l(mu);
    ASSERT_TRUE(cv.wait_for(l, 5s, [&] { return done; }));
  }
  EXPECT_EQ(status.error_code(), grpc::StatusCode::CANCELLED);
  spool::testing::Enqueue(*stub_, "jobs", {"x"});
  EXPECT_EQ(spool::testing::Lease(*stub_, "jobs", 1).messages_size(), 1);
}

TEST_F(ServerTest, FiveHundredWaitingLeases) {
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "jobs").ok());
  constexpr int kWaiters = 500;
  struct Call {
    grpc::ClientContext ctx;
    v1::LeaseRequest req;
    v1::LeaseResponse resp;
    grpc::Status status;
  };
  std::vector<std::unique_ptr<Call>> calls;
  std::mutex mu;
  std::condition_variable cv;
  int finished = 0;
  // Spread over a few channels, as many workers would be.
  std::vector<std::unique_ptr<v1::QueueService::Stub>> stubs;
  for (int i = 0; i < 5; ++i) stubs.push_back(spool::testing::StubFor(server_->port()));
  for (int i = 0; i < kWaiters; ++i) {
    auto c = std::make_unique<Call>();
    c->req.set_queue("jobs");
    *c->req.mutable_wait_time() = Seconds(30);
    spool::testing::SetDeadline(&c->ctx, 60s);
    Call* raw = c.get();
    stubs[i % stubs.size()]->async()->Lease(&c->ctx, &c->req, &c->resp, [&, raw](grpc::Status s) {
      std::lock_guard<std::mutex> l(mu);
      raw->status = s;
      ++finished;
      cv.notify_all();
    });
    calls.push_back(std::move(c));
  }
  std::this_thread::sleep_for(500ms);
  {
    std::lock_guard<std::mutex> l(mu);
    EXPECT_EQ(finished, 0);
  }
  std::vector<std::string> payloads;
  for (int i = 0; i < kWaiters; ++i) payloads.push_back("m" + std::to_string(i));
  spool::testing::Enqueue(*stub_, "jobs", payloads);
  {
    std::unique_lock<std::mutex> l(mu);
    ASSERT_TRUE(cv.wait_for(l, 20s, [&] { return finished == kWaiters; })) << finished;
  }
  std::set<std::string> got;
  for (auto& c : calls) {
    EXPECT_TRUE(c->status.ok());
    ASSERT_EQ(c->resp.messages_size(), 1);
    got.insert(c->resp.messages(0).payload());
  }
  EXPECT_EQ(got.size(), static_cast<size_t>(kWaiters));
}

TEST_F(ServerTest, OversizeRequestIsRefused) {
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "jobs").ok());
  grpc::ClientContext ctx;
  v1::EnqueueRequest req;
  req.set_queue("jobs");
  for (int i = 0; i < 9; ++i) req.add_messages()->set_payload(std::string(4 << 20, 'x'));
  v1::EnqueueResponse resp;
  grpc::Status s = stub_->Enqueue(&ctx, req, &resp);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED) << s.error_message();
  EXPECT_EQ(spool::testing::GetQueue(*stub_, "jobs").stats().total(), 0u);
}

TEST_F(ServerTest, PayloadOverTheQueueLimitNamesTheFix) {
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "jobs").ok());
  grpc::Status s;
  spool::testing::Enqueue(*stub_, "jobs", {std::string(262145, 'x')}, &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::INVALID_ARGUMENT);
  EXPECT_NE(s.error_message().find("messages[0].payload"), std::string::npos);
  EXPECT_NE(s.error_message().find("URL"), std::string::npos);
  spool::testing::Enqueue(*stub_, "jobs", {std::string(262144, 'x')}, &s);
  EXPECT_TRUE(s.ok());
}

TEST_F(ServerTest, MaxDepthIsResourceExhausted) {
  v1::QueueConfig c;
  c.set_max_depth(2);
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "jobs", c).ok());
  grpc::Status s;
  spool::testing::Enqueue(*stub_, "jobs", {"a", "b", "c"}, &s);
  EXPECT_EQ(s.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_EQ(spool::testing::GetQueue(*stub_, "jobs").stats().total(), 0u);
}

TEST_F(ServerTest, HealthIsServing) {
  auto channel = grpc::CreateChannel("127.0.0.1:" + std::to_string(server_->port()),
                                     grpc::InsecureChannelCredentials());
  auto health = grpc::health::v1::Health::NewStub(channel);
  for (std::string service : {"", "spool.v1.QueueService"}) {
    grpc::ClientContext ctx;
    grpc::health::v1::HealthCheckRequest req;
    req.set_service(service);
    grpc::health::v1::HealthCheckResponse resp;
    ASSERT_TRUE(health->Check(&ctx, req, &resp).ok());
    EXPECT_EQ(resp.status(), grpc::health::v1::HealthCheckResponse::SERVING);
  }
}

TEST_F(ServerTest, LeaseWithoutMaxMessagesTakesOne) {
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "jobs").ok());
  spool::testing::Enqueue(*stub_, "jobs", {"a", "b"});
  grpc::ClientContext ctx;
  v1::LeaseRequest req;
  req.set_queue("jobs");
  v1::LeaseResponse resp;
  ASSERT_TRUE(stub_->Lease(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.messages_size(), 1);
  EXPECT_EQ(resp.messages(0).payload(), "a");
  // And the lease length is the queue's default.
  EXPECT_NEAR(resp.messages(0).lease_deadline().seconds() - std::time(nullptr), 30, 2);
}

TEST_F(ServerTest, MoveMessagesAndDeleteMessage) {
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "dlq").ok());
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "jobs").ok());
  auto ids = spool::testing::Enqueue(*stub_, "dlq", {"a", "b", "c"});
  grpc::ClientContext ctx;
  v1::MoveMessagesRequest req;
  req.set_source("dlq");
  req.set_destination("jobs");
  req.set_max_messages(2);
  v1::MoveMessagesResponse resp;
  ASSERT_TRUE(stub_->MoveMessages(&ctx, req, &resp).ok());
  ASSERT_EQ(resp.moved_size(), 2);
  EXPECT_EQ(resp.moved(0).source_id(), ids[0]);
  v1::Queue dlq = spool::testing::GetQueue(*stub_, "dlq");
  EXPECT_EQ(dlq.stats().total(), 1u);
  EXPECT_EQ(dlq.stats().moved_total(), 2u);

  grpc::ClientContext bad;
  req.set_destination("dlq");
  EXPECT_EQ(stub_->MoveMessages(&bad, req, &resp).error_code(), grpc::StatusCode::INVALID_ARGUMENT);

  grpc::ClientContext del;
  v1::DeleteMessageRequest dreq;
  dreq.set_queue("dlq");
  dreq.set_message_id(ids[2]);
  v1::DeleteMessageResponse dresp;
  ASSERT_TRUE(stub_->DeleteMessage(&del, dreq, &dresp).ok());
  grpc::ClientContext again;
  EXPECT_EQ(stub_->DeleteMessage(&again, dreq, &dresp).error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_EQ(spool::testing::GetQueue(*stub_, "dlq").stats().deleted_total(), 1u);
}

TEST_F(ServerTest, ShutdownEndsWaitingLeasesEmptyAndRefusesNewCalls) {
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "jobs").ok());
  grpc::Status status;
  v1::LeaseResponse resp;
  std::thread consumer([&] { resp = spool::testing::Lease(*stub_, "jobs", 1, 30, 20, &status); });
  std::this_thread::sleep_for(300ms);
  auto start = Clock::now();
  server_->Shutdown();
  consumer.join();
  EXPECT_LT(Clock::now() - start, 5s);
  EXPECT_TRUE(status.ok()) << status.error_message();
  EXPECT_EQ(resp.messages_size(), 0);
  grpc::Status after;
  spool::testing::GetQueue(*stub_, "jobs", &after);
  EXPECT_EQ(after.error_code(), grpc::StatusCode::UNAVAILABLE);
}

}  // namespace
}  // namespace spool::server
