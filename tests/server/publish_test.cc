// Publish, the streaming Enqueue, over real gRPC on loopback: order and sequence echo with many
// requests in flight, per-request errors that leave the stream open, errors that end it,
// --max-streams, auth, shutdown, and a client that stops reading.
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
using Stream = grpc::ClientReaderWriter<v1::PublishRequest, v1::PublishResponse>;

v1::PublishRequest Request(const std::string& queue, uint64_t sequence,
                           std::vector<std::string> payloads) {
  v1::PublishRequest r;
  r.set_queue(queue);
  r.set_sequence(sequence);
  for (auto& p : payloads) r.add_messages()->set_payload(std::move(p));
  return r;
}

class PublishTest : public ::testing::Test {
 protected:
  void SetUp() override { Start(TestServerOptions(dir_.path() + "/data")); }

  void Start(ServerOptions o) {
    server_ = StartTestServer(o);
    ASSERT_NE(server_, nullptr);
    stub_ = spool::testing::StubFor(server_->port());
  }

  // A stream with a deadline, so a test that goes wrong ends.
  std::unique_ptr<Stream> Open(grpc::ClientContext* ctx) {
    spool::testing::SetDeadline(ctx, 30s);
    return stub_->Publish(ctx);
  }

  uint64_t Total(const std::string& queue) {
    return spool::testing::GetQueue(*stub_, queue).stats().total();
  }

  spool::testing::TempDir dir_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<v1::QueueService::Stub> stub_;
};

TEST_F(PublishTest, ManyInFlightAnsweredInOrderAndEnqueuedInOrder) {
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "jobs").ok());
  grpc::ClientContext ctx;
  auto stream = Open(&ctx);
  constexpr int kRequests = 200;
  // Every request is written before any answer is read: they are in flight together.
  for (int i = 0; i < kRequests; ++i) {
    // Only the first names the queue; later ones may leave it empty or repeat it.
    std::string queue = i == 0 || i % 2 == 1 ? "jobs" : "";
    ASSERT_TRUE(stream->Write(Request(queue, 1000 + i, {"m" + std::to_string(i)})));
  }
  ASSERT_TRUE(stream->WritesDone());
  std::set<std::string> ids;
  v1::PublishResponse resp;
  for (int i = 0; i < kRequests; ++i) {
    ASSERT_TRUE(stream->Read(&resp)) << "answer " << i;
    EXPECT_EQ(resp.sequence(), 1000u + i);
    EXPECT_EQ(resp.code(), 0) << resp.error();
    ASSERT_EQ(resp.results_size(), 1);
    EXPECT_FALSE(resp.results(0).duplicate());
    ids.insert(resp.results(0).message_id());
  }
  EXPECT_FALSE(stream->Read(&resp));
  grpc::Status s = stream->Finish();
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(ids.size(), static_cast<size_t>(kRequests));
  // The queue holds them in the order they were published.
  auto leased = spool::testing::Lease(*stub_, "jobs", 1000, 60);
  ASSERT_EQ(leased.messages_size(), kRequests);
  for (int i = 0; i < kRequests; ++i) {
    EXPECT_EQ(leased.messages(i).payload(), "m" + std::to_string(i));
    EXPECT_TRUE(ids.count(leased.messages(i).message_id()));
  }
}

TEST_F(PublishTest, BadRequestsAreAnsweredAndTheStreamGoesOn) {
  v1::QueueConfig c;
  c.set_max_depth(3);
  c.set_max_payload_bytes(1024);
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "jobs", c).ok());
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "other").ok());
  grpc::ClientContext ctx;
  auto stream = Open(&ctx);
  struct Case {
    v1::PublishRequest request;
    int code;
    std::string error_prefix;
  };
  v1::PublishRequest dedup = Request("", 5, {"d"});
  dedup.mutable_messages(0)->set_dedup_id("same");
  v1::PublishRequest bad_delay = Request("", 7, {"x"});
  bad_delay.mutable_messages(0)->mutable_delay()->set_seconds(-1);
  std::vector<Case> cases = {
      {Request("", 1, {"x"}), 3, "queue: required on the first request"},
      {Request("jobs", 2, {}), 3, "messages"},
      {Request("jobs", 3, {"ok"}), 0, ""},
      {Request("other", 4, {"x"}), 3, "queue: this stream publishes to \"jobs\""},
      {dedup, 0, ""},
      {Request("", 6, {std::string(2000, 'p')}), 3, "messages[0].payload"},
      {bad_delay, 3, "messages[0].delay"},
      {Request("", 8, {"a", "b"}), 8, ""},  // max_depth 3: 2 stored, 2 more do not fit
      {dedup, 0, ""},                       // a duplicate of 5
  };
  cases.back().request.set_sequence(9);
  for (const Case& k : cases) ASSERT_TRUE(stream->Write(k.request));
  v1::PublishResponse resp;
  for (const Case& k : cases) {
    ASSERT_TRUE(stream->Read(&resp));
    EXPECT_EQ(resp.sequence(), k.request.sequence());
    EXPECT_EQ(resp.code(), k.code) << "request " << k.request.sequence() << ": " << resp.error();
    if (k.code != 0) {
      EXPECT_EQ(resp.results_size(), 0);
      EXPECT_EQ(resp.error().rfind(k.error_prefix, 0), 0u)
          << "request " << k.request.sequence() << ": " << resp.error();
    } else {
      EXPECT_EQ(resp.results_size(), k.request.messages_size());
    }
  }
  ASSERT_TRUE(stream->WritesDone());
  grpc::Status s = stream->Finish();
  EXPECT_TRUE(s.ok()) << s.error_message();
  // The refused requests changed nothing: "ok" and the one dedup message.
  EXPECT_EQ(Total("jobs"), 2u);
  EXPECT_EQ(Total("other"), 0u);
}

TEST_F(PublishTest, UnknownQueueEndsTheStream) {
  grpc::ClientContext ctx;
  auto stream = Open(&ctx);
  ASSERT_TRUE(stream->Write(Request("nope", 1, {"x"})));
  v1::PublishResponse resp;
  EXPECT_FALSE(stream->Read(&resp));
  grpc::Status s = stream->Finish();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::NOT_FOUND);
  EXPECT_NE(s.error_message().find("nope"), std::string::npos) << s.error_message();
}

TEST_F(PublishTest, AnswersWhatItAcceptedBeforeAnErrorEndsTheStream) {
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "jobs").ok());
  grpc::ClientContext ctx;
  auto stream = Open(&ctx);
  ASSERT_TRUE(stream->Write(Request("jobs", 1, {"a"})));
  v1::PublishResponse resp;
  ASSERT_TRUE(stream->Read(&resp));
  EXPECT_EQ(resp.code(), 0);
  // The queue goes away under the stream: the next request ends it with NOT_FOUND.
  grpc::ClientContext del;
  v1::DeleteQueueRequest dreq;
  dreq.set_name("jobs");
  v1::DeleteQueueResponse dresp;
  ASSERT_TRUE(stub_->DeleteQueue(&del, dreq, &dresp).ok());
  ASSERT_TRUE(stream->Write(Request("", 2, {"b"})));
  EXPECT_FALSE(stream->Read(&resp));
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::NOT_FOUND);
}

TEST_F(PublishTest, MaxStreamsRefusesOneMore) {
  server_->Shutdown();
  ServerOptions o = TestServerOptions(dir_.path() + "/data2");
  o.max_streams = 2;
  Start(o);
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "jobs").ok());
  grpc::ClientContext c1, c2, c3;
  auto s1 = Open(&c1), s2 = Open(&c2);
  v1::PublishResponse resp;
  for (auto* s : {s1.get(), s2.get()}) {  // answered: both are open on the server
    ASSERT_TRUE(s->Write(Request("jobs", 1, {"x"})));
    ASSERT_TRUE(s->Read(&resp));
  }
  auto s3 = Open(&c3);
  s3->Write(Request("jobs", 1, {"x"}));
  EXPECT_FALSE(s3->Read(&resp));
  grpc::Status refused = s3->Finish();
  EXPECT_EQ(refused.error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
  EXPECT_NE(refused.error_message().find("--max-streams"), std::string::npos);
  // One closes; a new one is taken.
  ASSERT_TRUE(s1->WritesDone());
  ASSERT_TRUE(s1->Finish().ok());
  // The server forgets s1 when its OnDone has run, a moment after Finish: until then a new
  // stream may still be refused, so try a few times.
  std::vector<std::unique_ptr<grpc::ClientContext>> contexts;
  std::unique_ptr<Stream> s4;
  bool answered = false;
  for (int attempt = 0; attempt < 100 && !answered; ++attempt) {
    if (s4) {
      EXPECT_EQ(s4->Finish().error_code(), grpc::StatusCode::RESOURCE_EXHAUSTED);
      std::this_thread::sleep_for(50ms);
    }
    contexts.push_back(std::make_unique<grpc::ClientContext>());
    s4 = Open(contexts.back().get());
    s4->Write(Request("jobs", 2, {"y"}));
    answered = s4->Read(&resp);
  }
  EXPECT_TRUE(answered);
  EXPECT_EQ(resp.code(), 0);
  s2->WritesDone();
  EXPECT_TRUE(s2->Finish().ok());
  s4->WritesDone();
  EXPECT_TRUE(s4->Finish().ok());
  EXPECT_EQ(Total("jobs"), 3u);
}

TEST_F(PublishTest, ShutdownEndsTheStreamUnavailableAndKeepsWhatWasAnswered) {
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "jobs").ok());
  grpc::ClientContext ctx;
  auto stream = Open(&ctx);
  ASSERT_TRUE(stream->Write(Request("jobs", 1, {"kept"})));
  v1::PublishResponse resp;
  ASSERT_TRUE(stream->Read(&resp));
  ASSERT_EQ(resp.code(), 0);
  auto start = std::chrono::steady_clock::now();
  std::thread stopper([&] { server_->Shutdown(); });
  EXPECT_FALSE(stream->Read(&resp));
  grpc::Status s = stream->Finish();
  stopper.join();
  EXPECT_EQ(s.error_code(), grpc::StatusCode::UNAVAILABLE) << s.error_message();
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  server_.reset();
  Start(TestServerOptions(dir_.path() + "/data"));
  EXPECT_EQ(Total("jobs"), 1u);
}

TEST_F(PublishTest, AClientThatStopsReadingIsNotReadFurther) {
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "jobs").ok());
  grpc::ClientContext ctx;
  auto stream = Open(&ctx);
  // Requests of 1,000 messages make answers of ~30 KB: the client's receive window fills after
  // a few hundred, then the server's 256 unanswered requests, then it reads no more.
  constexpr int kRequests = 800;
  std::vector<std::string> payloads(1000, "p");
  std::atomic<int> written{0};
  std::thread writer([&] {
    for (int i = 0; i < kRequests; ++i) {
      if (!stream->Write(Request("jobs", i, payloads))) return;
      ++written;
    }
  });
  uint64_t last = 0;
  auto quiet_since = std::chrono::steady_clock::now();
  auto deadline = quiet_since + 60s;
  while (std::chrono::steady_clock::now() < deadline) {
    std::this_thread::sleep_for(200ms);
    uint64_t now = Total("jobs");
    if (now != last) {
      last = now, quiet_since = std::chrono::steady_clock::now();
    } else if (std::chrono::steady_clock::now() - quiet_since > 1500ms) {
      break;
    }
  }
  std::printf("accepted %llu of %d requests before the client's reading stopped the server's\n",
              static_cast<unsigned long long>(last / 1000), kRequests);
  EXPECT_LT(last, static_cast<uint64_t>(kRequests) * 1000) << "the server read every request";
  EXPECT_GE(last, 256u * 1000) << "the server should take up to 256 unanswered requests";
  // The client goes away; the server ends the stream, and what it accepted stays.
  ctx.TryCancel();
  writer.join();
  EXPECT_EQ(stream->Finish().error_code(), grpc::StatusCode::CANCELLED);
  EXPECT_EQ(Total("jobs") % 1000, 0u);
}

TEST_F(PublishTest, NeedsProducePermissionOnTheQueue) {
  server_->Shutdown();
  std::string file = dir_.path() + "/tokens";
  std::ofstream(file) << "tok-ops admin,produce,consume *\n"
                         "tok-worker consume jobs\n"
                         "tok-other produce other\n";
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
       {Case{"tok-worker", grpc::StatusCode::PERMISSION_DENIED},
        Case{"tok-other", grpc::StatusCode::PERMISSION_DENIED},
        Case{"", grpc::StatusCode::UNAUTHENTICATED}, Case{"tok-ops", grpc::StatusCode::OK}}) {
    grpc::ClientContext ctx;
    if (!k.token.empty()) ctx.AddMetadata("authorization", "Bearer " + k.token);
    auto stream = Open(&ctx);
    stream->Write(Request("jobs", 1, {"x"}));
    stream->WritesDone();
    v1::PublishResponse resp;
    bool answered = stream->Read(&resp);
    EXPECT_EQ(answered, k.end == grpc::StatusCode::OK) << k.token;
    grpc::Status s = stream->Finish();
    EXPECT_EQ(s.error_code(), k.end) << k.token << ": " << s.error_message();
  }
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Bearer tok-ops");
  v1::GetQueueRequest req;
  req.set_name("jobs");
  v1::Queue q;
  ASSERT_TRUE(stub_->GetQueue(&ctx, req, &q).ok());
  EXPECT_EQ(q.stats().total(), 1u);
}

}  // namespace
}  // namespace spool::server
