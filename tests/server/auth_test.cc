// Tokens (--auth-file): the file format, and every rule over real gRPC with the issue's example.
#include "server/auth.h"

#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <fstream>

#include "server/server.h"
#include "tests/grpc_util.h"
#include "tests/server/test_server.h"
#include "tests/test_util.h"

namespace spool::server {
namespace {

constexpr char kExample[] = R"(# token        permissions            queues
tok-uploader   produce                thumbs-*
tok-worker     consume,produce        thumbs-*,done
tok-ops        admin,produce,consume  *
)";

void ExpectLineError(std::string_view text, const std::string& prefix) {
  auto a = Authorizer::Parse(text);
  ASSERT_FALSE(a.ok());
  EXPECT_EQ(std::string(a.status().message()).rfind(prefix, 0), 0u) << a.status();
}

TEST(AuthFileTest, ParsesTheExampleAndMatchesPatterns) {
  auto a = Authorizer::Parse(kExample);
  ASSERT_TRUE(a.ok()) << a.status();
  Authorizer::Grant g;
  g.patterns = {"thumbs-*", "done"};
  EXPECT_TRUE(g.Sees("thumbs-"));
  EXPECT_TRUE(g.Sees("thumbs-large"));
  EXPECT_TRUE(g.Sees("done"));
  EXPECT_FALSE(g.Sees("thumbs"));
  EXPECT_FALSE(g.Sees("done-2"));
  EXPECT_FALSE(g.Sees("other"));
  g.patterns = {"*"};
  EXPECT_TRUE(g.Sees("anything"));
}

TEST(AuthFileTest, ErrorsNameTheLine) {
  ExpectLineError("tok-a produce q\ntok-b prduce q\n", "line 2: unknown permission \"prduce\"");
  ExpectLineError("# c\n\ntok-a produce\n", "line 3: expected a token");
  ExpectLineError("tok-a produce q extra\n", "line 1: unexpected \"extra\"");
  ExpectLineError("tok-a produce thumbs-*-x\n", "line 1: \"thumbs-*-x\" is not a queue name");
  ExpectLineError("tok-a produce ../x\n", "line 1: \"../x\" is not a queue name");
  ExpectLineError("tok-a produce q\ntok-a consume q\n", "line 2: this token is listed twice");
  ExpectLineError("# nothing\n", "no token in the file");
}

class AuthServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string file = dir_.path() + "/tokens";
    std::ofstream(file) << kExample;
    ServerOptions o = TestServerOptions(dir_.path() + "/data");
    o.auth_file = file;
    server_ = StartTestServer(o);
    ASSERT_NE(server_, nullptr);
    stub_ = spool::testing::StubFor(server_->port());
    for (std::string q : {"thumbs-small", "done", "secret"}) {
      ASSERT_TRUE(Create("tok-ops", q).ok());
    }
  }

  std::unique_ptr<grpc::ClientContext> As(const std::string& token) {
    auto ctx = std::make_unique<grpc::ClientContext>();
    if (!token.empty()) ctx->AddMetadata("authorization", "Bearer " + token);
    return ctx;
  }
  grpc::Status Create(const std::string& token, const std::string& name) {
    v1::CreateQueueRequest req;
    req.set_name(name);
    v1::Queue resp;
    return stub_->CreateQueue(As(token).get(), req, &resp);
  }
  grpc::Status Enqueue(const std::string& token, const std::string& queue) {
    v1::EnqueueRequest req;
    req.set_queue(queue);
    req.add_messages()->set_payload("x");
    v1::EnqueueResponse resp;
    return stub_->Enqueue(As(token).get(), req, &resp);
  }
  grpc::Status Lease(const std::string& token, const std::string& queue) {
    v1::LeaseRequest req;
    req.set_queue(queue);
    v1::LeaseResponse resp;
    return stub_->Lease(As(token).get(), req, &resp);
  }
  grpc::Status Get(const std::string& token, const std::string& queue) {
    v1::GetQueueRequest req;
    req.set_name(queue);
    v1::Queue resp;
    return stub_->GetQueue(As(token).get(), req, &resp);
  }
  std::vector<std::string> List(const std::string& token) {
    v1::ListQueuesRequest req;
    v1::ListQueuesResponse resp;
    EXPECT_TRUE(stub_->ListQueues(As(token).get(), req, &resp).ok());
    std::vector<std::string> names;
    for (const auto& q : resp.queues()) names.push_back(q.name());
    return names;
  }

  spool::testing::TempDir dir_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<v1::QueueService::Stub> stub_;
};

TEST_F(AuthServerTest, NoOrUnknownTokenIsUnauthenticated) {
  EXPECT_EQ(Enqueue("", "done").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  EXPECT_EQ(Enqueue("tok-nobody", "done").error_code(), grpc::StatusCode::UNAUTHENTICATED);
  {
    v1::ListQueuesRequest req;
    v1::ListQueuesResponse resp;
    EXPECT_EQ(stub_->ListQueues(As("tok-nobody").get(), req, &resp).error_code(),
              grpc::StatusCode::UNAUTHENTICATED);
  }
  grpc::ClientContext ctx;
  ctx.AddMetadata("authorization", "Basic dG9rLW9wcw==");
  v1::ListQueuesRequest req;
  v1::ListQueuesResponse resp;
  EXPECT_EQ(stub_->ListQueues(&ctx, req, &resp).error_code(), grpc::StatusCode::UNAUTHENTICATED);
}

TEST_F(AuthServerTest, EachTokenStaysWithinItsRights) {
  // produce only, thumbs-*
  EXPECT_TRUE(Enqueue("tok-uploader", "thumbs-small").ok());
  EXPECT_EQ(Enqueue("tok-uploader", "done").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Lease("tok-uploader", "thumbs-small").error_code(),
            grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Create("tok-uploader", "thumbs-new").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // consume and produce, thumbs-* and done
  EXPECT_TRUE(Lease("tok-worker", "thumbs-small").ok());
  EXPECT_TRUE(Enqueue("tok-worker", "done").ok());
  EXPECT_EQ(Lease("tok-worker", "secret").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  EXPECT_EQ(Create("tok-worker", "done-2").error_code(), grpc::StatusCode::PERMISSION_DENIED);
  // admin everywhere
  EXPECT_TRUE(Create("tok-ops", "anything").ok());
  EXPECT_TRUE(Enqueue("tok-ops", "secret").ok());
  EXPECT_TRUE(Lease("tok-ops", "secret").ok());
  // Nothing refused was done: "done" holds only tok-worker's message.
  v1::GetQueueRequest req;
  req.set_name("done");
  v1::Queue q;
  ASSERT_TRUE(stub_->GetQueue(As("tok-ops").get(), req, &q).ok());
  EXPECT_EQ(q.stats().enqueued_total(), 1u);
}

TEST_F(AuthServerTest, ListAndGetShowOnlyWhatATokenMaySee) {
  EXPECT_EQ(List("tok-uploader"), (std::vector<std::string>{"thumbs-small"}));
  EXPECT_EQ(List("tok-worker"), (std::vector<std::string>{"done", "thumbs-small"}));
  EXPECT_EQ(List("tok-ops"), (std::vector<std::string>{"done", "secret", "thumbs-small"}));
  EXPECT_TRUE(Get("tok-uploader", "thumbs-small").ok());
  EXPECT_EQ(Get("tok-uploader", "secret").error_code(), grpc::StatusCode::PERMISSION_DENIED);
}

TEST(AuthStartTest, ABrokenFileStopsTheServerWithTheLine) {
  spool::testing::TempDir dir;
  std::string file = dir.path() + "/tokens";
  std::ofstream(file) << "tok-a produce q\ntok-b everything q\n";
  ServerOptions o;
  o.listen = "127.0.0.1:0";
  o.engine.data_dir = dir.path() + "/data";
  o.auth_file = file;
  auto s = Server::Start(o, engine::SystemClock());
  ASSERT_FALSE(s.ok());
  EXPECT_NE(std::string(s.status().message()).find("line 2: unknown permission \"everything\""),
            std::string::npos)
      << s.status();
}

}  // namespace
}  // namespace spool::server
