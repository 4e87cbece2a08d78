// Subscribe, the streaming Lease, over real gRPC on loopback: push, credit, acks answered with
// the next delivery, half-close, cancel and shutdown releasing what is outstanding, bad
// arguments ending the stream, --max-streams, auth, and a client that stops reading.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "server/server.h"
#include "tests/grpc_util.h"
#include "tests/server/test_server.h"
#include "tests/test_util.h"

namespace spool::server {
namespace {

using namespace std::chrono_literals;
using Stream = grpc::ClientReaderWriter<v1::SubscribeRequest, v1::SubscribeResponse>;

v1::SubscribeRequest First(const std::string& queue, uint32_t max_outstanding) {
  v1::SubscribeRequest r;
  r.set_queue(queue);
  r.set_max_outstanding(max_outstanding);
  return r;
}

v1::SubscribeRequest Acks(std::vector<std::string> receipts) {
  v1::SubscribeRequest r;
  for (auto& x : receipts) r.add_ack(std::move(x));
  return r;
}

class SubscribeTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(TestServerOptions(dir_.path() + "/data")); }

  void Start(ServerOptions o) {
    server_ = StartTestServer(o);
    ASSERT_NE(server_, nullptr);
    stub_ = spool::testing::StubFor(server_->port());
  }

  std::unique_ptr<Stream> Open(grpc::ClientContext* ctx) {
    spool::testing::SetDeadline(ctx, 30s);
    return stub_->Subscribe(ctx);
  }

  void Send(const std::string& queue, int n, size_t bytes = 0) {
    for (int i = 0; i < n;) {
      grpc::ClientContext ctx;
      v1::EnqueueRequest req;
      req.set_queue(queue);
      for (int k = 0; k < 10 && i < n; ++k, ++i) {
        std::string p = "m" + std::to_string(i);
        p.resize(std::max(bytes, p.size()), '.');
        req.add_messages()->set_payload(p);
      }
      v1::EnqueueResponse resp;
      ASSERT_TRUE(stub_->Enqueue(&ctx, req, &resp).ok());
    }
  }

  // Reads until n messages have come (answers in between are kept in *answers).
  std::vector<v1::LeasedMessage> ReadMessages(
      Stream* s, int n, std::vector<v1::SubscribeResponse>* answers = nullptr) {
    std::vector<v1::LeasedMessage> out;
    v1::SubscribeResponse resp;
    while (static_cast<int>(out.size()) < n && s->Read(&resp)) {
      for (auto& m : resp.messages()) out.push_back(m);
      if (answers && (resp.ack_results_size() > 0 || resp.nack_results_size() > 0)) {
        answers->push_back(resp);
      }
    }
    return out;
  }

  v1::QueueStats Stats(const std::string& queue) {
    return spool::testing::GetQueue(*stub_, queue).stats();
  }

  // Polls (at most 10 s) until the queue has `ready` visible messages.
  bool WaitReady(const std::string& queue, uint64_t ready) {
    for (int i = 0; i < 200; ++i) {
      if (Stats(queue).ready() == ready) return true;
      std::this_thread::sleep_for(50ms);
    }
    return false;
  }

  spool::testing::TempDir dir_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<v1::QueueService::Stub> stub_;
};

TEST_F(SubscribeTest, PushesAndAnswersEachAckWithTheNextMessage) {
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "jobs").ok());
  Send("jobs", 3);
  grpc::ClientContext ctx;
  auto stream = Open(&ctx);
  ASSERT_TRUE(stream->Write(First("jobs", 1)));
  auto got = ReadMessages(stream.get(), 1);
  ASSERT_EQ(got.size(), 1u);
  EXPECT_EQ(got[0].payload(), "m0");
  EXPECT_EQ(got[0].delivery_count(), 1u);
  for (int i = 1; i <= 3; ++i) {
    ASSERT_TRUE(stream->Write(Acks({got[0].receipt()})));
    v1::SubscribeResponse resp;
    ASSERT_TRUE(stream->Read(&resp));
    ASSERT_EQ(resp.ack_results_size(), 1);
    EXPECT_EQ(resp.ack_results(0).receipt(), got[0].receipt());
    EXPECT_EQ(resp.ack_results(0).outcome(), v1::OUTCOME_OK);
    if (i == 3) {
      EXPECT_EQ(resp.messages_size(), 0);  // nothing left
      break;
    }
    // The next job rides on the ack's answer: one write, one fsync, one response.
    ASSERT_EQ(resp.messages_size(), 1);
    EXPECT_EQ(resp.messages(0).payload(), "m" + std::to_string(i));
    got = {resp.messages(0)};
  }
  Send("jobs", 1);  // pushed as soon as it is enqueued
  auto later = ReadMessages(stream.get(), 1);
  ASSERT_EQ(later.size(), 1u);
  EXPECT_EQ(later[0].payload(), "m0");
  ASSERT_TRUE(stream->WritesDone());
  v1::SubscribeResponse resp;
  EXPECT_FALSE(stream->Read(&resp));
  EXPECT_TRUE(stream->Finish().ok());
  EXPECT_TRUE(WaitReady("jobs", 1));  // released on the half-close
}

TEST_F(SubscribeTest, NeverMoreThanMaxOutstandingOnTheStream) {
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "jobs").ok());
  Send("jobs", 20);
  grpc::ClientContext ctx;
  auto stream = Open(&ctx);
  ASSERT_TRUE(stream->Write(First("jobs", 5)));
  auto got = ReadMessages(stream.get(), 5);
  ASSERT_EQ(got.size(), 5u);
  v1::QueueStats s = Stats("jobs");
  EXPECT_EQ(s.leased(), 5u);
  EXPECT_EQ(s.ready(), 15u);
  // A unary Ack of a stream's receipt frees its credit too.
  grpc::ClientContext actx;
  v1::AckRequest areq;
  areq.set_queue("jobs");
  areq.add_receipts(got[0].receipt());
  v1::AckResponse aresp;
  ASSERT_TRUE(stub_->Ack(&actx, areq, &aresp).ok());
  auto one = ReadMessages(stream.get(), 1);
  ASSERT_EQ(one.size(), 1u);
  EXPECT_EQ(one[0].payload(), "m5");
  EXPECT_EQ(Stats("jobs").leased(), 5u);
  ctx.TryCancel();
  stream->Finish();
}

TEST_F(SubscribeTest, HalfCloseAnswersTheAcksAndReleasesTheRest) {
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "jobs").ok());
  Send("jobs", 4);
  grpc::ClientContext ctx;
  auto stream = Open(&ctx);
  ASSERT_TRUE(stream->Write(First("jobs", 10)));
  auto got = ReadMessages(stream.get(), 4);
  ASSERT_EQ(got.size(), 4u);
  v1::SubscribeRequest last = Acks({got[0].receipt()});
  last.add_nack(got[1].receipt());
  last.mutable_nack_delay()->set_seconds(60);
  ASSERT_TRUE(stream->Write(last));
  ASSERT_TRUE(stream->WritesDone());
  v1::SubscribeResponse resp;
  ASSERT_TRUE(stream->Read(&resp));
  ASSERT_EQ(resp.ack_results_size(), 1);
  EXPECT_EQ(resp.ack_results(0).outcome(), v1::OUTCOME_OK);
  ASSERT_EQ(resp.nack_results_size(), 1);
  EXPECT_EQ(resp.nack_results(0).outcome(), v1::OUTCOME_OK);
  EXPECT_EQ(resp.messages_size(), 0);  // nothing delivered after the half-close
  EXPECT_FALSE(stream->Read(&resp));
  grpc::Status s = stream->Finish();
  EXPECT_TRUE(s.ok()) << s.error_message();
  // Released at once, not after the 30 s visibility timeout; the nacked one waits its delay.
  v1::QueueStats st = Stats("jobs");
  EXPECT_EQ(st.ready(), 2u);
  EXPECT_EQ(st.delayed(), 1u);
  EXPECT_EQ(st.leased(), 0u);
  auto again = spool::testing::Lease(*stub_, "jobs", 10, 60);
  ASSERT_EQ(again.messages_size(), 2);
  for (const auto& m : again.messages()) EXPECT_EQ(m.delivery_count(), 2u);
}

TEST_F(SubscribeTest, CancelReleasesWhatIsOutstanding) {
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "jobs").ok());
  Send("jobs", 3);
  grpc::ClientContext ctx;
  auto stream = Open(&ctx);
  ASSERT_TRUE(stream->Write(First("jobs", 10)));
  ASSERT_EQ(ReadMessages(stream.get(), 3).size(), 3u);
  EXPECT_EQ(Stats("jobs").leased(), 3u);
  ctx.TryCancel();
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_TRUE(WaitReady("jobs", 3)) << "not released after the cancel";
}

TEST_F(SubscribeTest, BadArgumentsEndTheStreamNamingTheField) {
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "jobs").ok());
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "other").ok());
  struct Case {
    std::vector<v1::SubscribeRequest> requests;
    grpc::StatusCode code;
    std::string mention;
  };
  v1::SubscribeRequest bad_vis = First("jobs", 1);
  bad_vis.mutable_visibility_timeout()->set_nanos(5'000'000);
  v1::SubscribeRequest bad_lease = First("jobs", 1);
  bad_lease.mutable_max_lease_duration()->set_seconds(13 * 3600);
  v1::SubscribeRequest bad_delay = Acks({"x"});
  bad_delay.mutable_nack_delay()->set_seconds(-1);
  v1::SubscribeRequest too_many;
  for (int i = 0; i < 1001; ++i) too_many.add_ack("x");
  v1::SubscribeRequest later_max;
  later_max.set_max_outstanding(5);
  std::vector<Case> cases = {
      {{First("", 1)}, grpc::StatusCode::INVALID_ARGUMENT, "queue: required"},
      {{First("jobs", 10'001)}, grpc::StatusCode::INVALID_ARGUMENT, "max_outstanding"},
      {{bad_vis}, grpc::StatusCode::INVALID_ARGUMENT, "visibility_timeout"},
      {{bad_lease}, grpc::StatusCode::INVALID_ARGUMENT, "max_lease_duration"},
      {{First("nope", 1)}, grpc::StatusCode::NOT_FOUND, "nope"},
      {{First("jobs", 1), too_many}, grpc::StatusCode::INVALID_ARGUMENT, "1000"},
      {{First("jobs", 1), bad_delay}, grpc::StatusCode::INVALID_ARGUMENT, "nack_delay"},
      {{First("jobs", 1), First("other", 0)}, grpc::StatusCode::INVALID_ARGUMENT, "\"other\""},
      {{First("jobs", 1), later_max}, grpc::StatusCode::INVALID_ARGUMENT, "max_outstanding"},
  };
  for (const Case& k : cases) {
    grpc::ClientContext ctx;
    auto stream = Open(&ctx);
    for (const auto& r : k.requests) stream->Write(r);
    v1::SubscribeResponse resp;
    EXPECT_FALSE(stream->Read(&resp)) << k.mention << ": " << resp.DebugString();
    grpc::Status s = stream->Finish();
    EXPECT_EQ(s.error_code(), k.code) << k.mention << ": " << s.error_message();
    EXPECT_NE(s.error_message().find(k.mention), std::string::npos) << s.error_message();
  }
  EXPECT_EQ(Stats("jobs").total(), 0u);
}

TEST_F(SubscribeTest, ShutdownEndsItUnavailableAndReleasesWhatIsOutstanding) {
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "jobs").ok());
  Send("jobs", 2);
  grpc::ClientContext ctx;
  auto stream = Open(&ctx);
  ASSERT_TRUE(stream->Write(First("jobs", 10)));
  ASSERT_EQ(ReadMessages(stream.get(), 2).size(), 2u);
  std::thread stopper([&] { server_->Shutdown(); });
  v1::SubscribeResponse resp;
  EXPECT_FALSE(stream->Read(&resp));
  grpc::Status s = stream->Finish();
  stopper.join();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  server_.reset();
  Start(TestServerOptions(dir_.path() + "/data"));
  EXPECT_EQ(Stats("jobs").ready(), 2u);  // visible at once, not after the lease
}

TEST_F(SubscribeTest, DeletingTheQueueEndsItNotFound) {
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "jobs").ok());
  grpc::ClientContext ctx;
  auto stream = Open(&ctx);
  ASSERT_TRUE(stream->Write(First("jobs", 10)));
  Send("jobs", 1);
  ASSERT_EQ(ReadMessages(stream.get(), 1).size(), 1u);
  grpc::ClientContext del;
  v1::DeleteQueueRequest dreq;
  dreq.set_name("jobs");
  v1::DeleteQueueResponse dresp;
  ASSERT_TRUE(stub_->DeleteQueue(&del, dreq, &dresp).ok());
  v1::SubscribeResponse resp;
  EXPECT_FALSE(stream->Read(&resp));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(SubscribeTest, MaxStreamsCountsSubscribeAndPublishTogether) {
  server_->Shutdown();
  ServerOptions o = TestServerOptions(dir_.path() + "/data2");
  o.max_streams = 1;
  Start(o);
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "jobs").ok());
  grpc::ClientContext pctx;
  spool::testing::SetDeadline(&pctx, 30s);
  auto publish = stub_->Publish(&pctx);
  v1::PublishRequest preq;
  preq.set_queue("jobs");
  preq.add_messages()->set_payload("x");
  ASSERT_TRUE(publish->Write(preq));
  v1::PublishResponse presp;
  ASSERT_TRUE(publish->Read(&presp));  // open on the server
  grpc::ClientContext ctx;
  auto stream = Open(&ctx);
  stream->Write(First("jobs", 1));
  v1::SubscribeResponse resp;
  EXPECT_FALSE(stream->Read(&resp));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  publish->WritesDone();
  EXPECT_TRUE(publish->Finish().ok());
  EXPECT_EQ(Stats("jobs").ready(), 1u);  // the refused Subscribe leased nothing
}

TEST_F(SubscribeTest, NeedsConsumePermissionOnTheQueue) {
  server_->Shutdown();
  std::string file = dir_.path() + "/tokens";
  std::ofstream(file) << "tok-ops admin,produce,consume *\n"
                         "tok-producer produce jobs\n"
                         "tok-worker consume jobs\n";
  ServerOptions o = TestServerOptions(dir_.path() + "/data3");
  o.auth_file = file;
  Start(o);
  {
    grpc::ClientContext ctx;
    ctx.AddMetadata("authorization", "Bearer tok-ops");
    v1::CreateQueueRequest req;
    req.set_name("jobs");
    v1::Queue resp;
    ASSERT_TRUE(stub_->CreateQueue(&ctx, req, &resp).ok());
  }
  struct Case {
    std::string token;
    grpc::StatusCode end;
  };
  for (const Case& k :
       {Case{"tok-producer", grpc::StatusCode::PERMISSION_DENIED},
        Case{"", grpc::StatusCode::UNAUTHENTICATED}, Case{"tok-worker", grpc::StatusCode::OK}}) {
    grpc::ClientContext ctx;
    if (!k.token.empty()) ctx.AddMetadata("authorization", "Bearer " + k.token);
    auto stream = Open(&ctx);
    stream->Write(First("jobs", 1));
    stream->WritesDone();
    v1::SubscribeResponse resp;
    EXPECT_FALSE(stream->Read(&resp));
    grpc::Status s = stream->Finish();
    EXPECT_EQ(s.error_code(), k.end) << k.token << ": " << s.error_message();
  }
}

TEST_F(SubscribeTest, AClientThatStopsReadingPinsABoundedAmount) {
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "jobs").ok());
  v1::QueueConfig big;
  big.set_max_payload_bytes(256 * 1024);
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "big", big).ok());
  // 600 messages of 200 KB: 120 MB, past the 64 MiB a stream may hold outstanding.
  Send("big", 600, 200'000);
  grpc::ClientContext ctx;
  auto stream = Open(&ctx);
  ASSERT_TRUE(stream->Write(First("big", 10'000)));  // and then never reads
  // Wait until the count has stood still for half a second (at most 10 s).
  uint64_t leased = 0;
  for (int i = 0, still = 0; i < 200 && still < 10; ++i) {
    std::this_thread::sleep_for(50ms);
    uint64_t now = Stats("big").leased();
    still = now > 0 && now == leased ? still + 1 : 0;
    leased = now;
  }
  std::printf("leased %llu of 600 messages of 200 KB to a stream that reads nothing\n",
              static_cast<unsigned long long>(leased));
  EXPECT_GT(leased, 0u);
  EXPECT_LE(leased * 200'000, (64u << 20) + 3'500'000 + 200'000);
  ctx.TryCancel();
  stream->Finish();
  EXPECT_TRUE(WaitReady("big", 600));
}

}  // namespace
}  // namespace spool::server
