// Hostile and malformed requests over real gRPC: each gets the documented status with a message
// naming the field, and the store is left exactly as it was (every queue's config and stats and
// every message, compared before and after). Boundary values succeed. Forged, altered and
// replayed receipts are never accepted.
#include <grpcpp/grpcpp.h>
#include <gtest/gtest.h>

#include <functional>
#include <random>

#include "server/server.h"
#include "tests/grpc_util.h"
#include "tests/server/test_server.h"
#include "tests/test_util.h"

namespace spool::server {
namespace {

using spool::testing::Seconds;

google::protobuf::Duration Ms(int64_t ms) {
  google::protobuf::Duration d;
  d.set_seconds(ms / 1000);
  d.set_nanos(static_cast<int32_t>(ms % 1000) * 1'000'000);
  return d;
}

constexpr int64_t kHourMs = 3'600'000, kDayMs = 24 * kHourMs;

class BadInputTest : public ::testing::Test {
 protected:
  void SetUp() override {
    server_ = StartTestServer(TestServerOptions(dir_.path()));
    ASSERT_NE(server_, nullptr);
    stub_ = spool::testing::StubFor(server_->port());
    // A store with something in every state, and a queue that is full.
    ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "dlq").ok());
    v1::QueueConfig jobs;
    jobs.set_max_deliveries(3);
    jobs.set_dead_letter_queue("dlq");
    ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "jobs", jobs).ok());
    v1::QueueConfig full;
    full.set_max_depth(2);
    ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "full", full).ok());
    spool::testing::Enqueue(*stub_, "full", {"1", "2"});
    spool::testing::Enqueue(*stub_, "jobs", {"a", "b", "c"});
    leased_ = spool::testing::Lease(*stub_, "jobs", 1, 600);
    ASSERT_EQ(leased_.messages_size(), 1);
  }

  // Every queue with its config and stats, and every message: what must not change.
  std::string Snapshot() {
    std::string out;
    grpc::ClientContext ctx;
    v1::ListQueuesRequest req;
    v1::ListQueuesResponse resp;
    EXPECT_TRUE(stub_->ListQueues(&ctx, req, &resp).ok());
    for (auto& q : *resp.mutable_queues()) {
      q.mutable_stats()->clear_oldest_ready_age();  // moves with the clock
      out += q.SerializeAsString();
      for (const auto& m : spool::testing::PeekAll(*stub_, q.name())) out += m.SerializeAsString();
    }
    return out;
  }

  spool::testing::TempDir dir_;
  std::unique_ptr<Server> server_;
  std::unique_ptr<v1::QueueService::Stub> stub_;
  v1::LeaseResponse leased_;
};

struct Case {
  std::string name;
  std::function<grpc::Status(v1::QueueService::Stub&)> call;
  grpc::StatusCode code;
  std::string field;  // the message must start with "field:" (empty: any message)
};

template <typename Req, typename Resp>
std::function<grpc::Status(v1::QueueService::Stub&)> Call(
    grpc::Status (v1::QueueService::Stub::*method)(grpc::ClientContext*, const Req&, Resp*),
    std::function<void(Req&)> fill) {
  return [method, fill](v1::QueueService::Stub& stub) {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    Req req;
    fill(req);
    Resp resp;
    return (stub.*method)(&ctx, req, &resp);
  };
}

using S = v1::QueueService::Stub;
using grpc::StatusCode;

std::vector<Case> BadCases() {
  auto create = [](std::function<void(v1::CreateQueueRequest&)> f) {
    return Call<v1::CreateQueueRequest, v1::Queue>(&S::CreateQueue, [f](auto& r) {
      r.set_name("new-queue");
      f(r);
    });
  };
  auto config = [&](std::function<void(v1::QueueConfig&)> f) {
    return create([f](auto& r) { f(*r.mutable_config()); });
  };
  auto enqueue = [](std::function<void(v1::EnqueueRequest&)> f) {
    return Call<v1::EnqueueRequest, v1::EnqueueResponse>(&S::Enqueue, [f](auto& r) {
      r.set_queue("jobs");
      f(r);
    });
  };
  auto lease = [](std::function<void(v1::LeaseRequest&)> f) {
    return Call<v1::LeaseRequest, v1::LeaseResponse>(&S::Lease, [f](auto& r) {
      r.set_queue("jobs");
      f(r);
    });
  };
  auto receipts = [](v1::AckRequest& r, int n) {
    for (int i = 0; i < n; ++i) r.add_receipts("x");
  };
  std::string name81(81, 'q');
  return {
      {"create: empty name", create([](auto& r) { r.set_name(""); }), StatusCode::INVALID_ARGUMENT,
       "name"},
      {"create: 81-char name", create([=](auto& r) { r.set_name(name81); }),
       StatusCode::INVALID_ARGUMENT, "name"},
      {"create: path-like name", create([](auto& r) { r.set_name("../x"); }),
       StatusCode::INVALID_ARGUMENT, "name"},
      {"create: name with a space", create([](auto& r) { r.set_name("a b"); }),
       StatusCode::INVALID_ARGUMENT, "name"},
      {"create: name with NUL", create([](auto& r) { r.set_name(std::string("a\0b", 3)); }),
       StatusCode::INVALID_ARGUMENT, "name"},
      {"create: non-ASCII name", create([](auto& r) { r.set_name("file\xc3\xa9"); }),
       StatusCode::INVALID_ARGUMENT, "name"},
      {"create: visibility 0", config([](auto& c) { *c.mutable_visibility_timeout() = Ms(0); }),
       StatusCode::INVALID_ARGUMENT, "config.visibility_timeout"},
      {"create: visibility 999ms",
       config([](auto& c) { *c.mutable_visibility_timeout() = Ms(999); }),
       StatusCode::INVALID_ARGUMENT, "config.visibility_timeout"},
      {"create: visibility 12h+1ms",
       config([](auto& c) { *c.mutable_visibility_timeout() = Ms(12 * kHourMs + 1); }),
       StatusCode::INVALID_ARGUMENT, "config.visibility_timeout"},
      {"create: visibility nanos out of range",
       config([](auto& c) { *c.mutable_visibility_timeout() = Seconds(30, 1'000'000'000); }),
       StatusCode::INVALID_ARGUMENT, "config.visibility_timeout"},
      {"create: visibility hugely negative (saturates; once crashed spoold)",
       config([](auto& c) { *c.mutable_visibility_timeout() = Seconds(INT64_MIN / 2); }),
       StatusCode::INVALID_ARGUMENT, "config.visibility_timeout"},
      {"create: visibility huge",
       config([](auto& c) { *c.mutable_visibility_timeout() = Seconds(INT64_MAX / 2); }),
       StatusCode::INVALID_ARGUMENT, "config.visibility_timeout"},
      {"create: max_deliveries 1001", config([](auto& c) {
         c.set_max_deliveries(1001);
         c.set_dead_letter_queue("dlq");
       }),
       StatusCode::INVALID_ARGUMENT, "config.max_deliveries"},
      {"create: max_deliveries without dlq", config([](auto& c) { c.set_max_deliveries(3); }),
       StatusCode::INVALID_ARGUMENT, "config.dead_letter_queue"},
      {"create: dlq is itself", config([](auto& c) {
         c.set_max_deliveries(3);
         c.set_dead_letter_queue("new-queue");
       }),
       StatusCode::INVALID_ARGUMENT, "config.dead_letter_queue"},
      {"create: dlq does not exist", config([](auto& c) {
         c.set_max_deliveries(3);
         c.set_dead_letter_queue("nope");
       }),
       StatusCode::INVALID_ARGUMENT, "config.dead_letter_queue"},
      {"create: retention 59s", config([](auto& c) { *c.mutable_retention() = Ms(59'000); }),
       StatusCode::INVALID_ARGUMENT, "config.retention"},
      {"create: retention 365d+1ms",
       config([](auto& c) { *c.mutable_retention() = Ms(365 * kDayMs + 1); }),
       StatusCode::INVALID_ARGUMENT, "config.retention"},
      {"create: negative delay", config([](auto& c) { *c.mutable_delay() = Seconds(-1); }),
       StatusCode::INVALID_ARGUMENT, "config.delay"},
      {"create: delay 30d+1ms", config([](auto& c) { *c.mutable_delay() = Ms(30 * kDayMs + 1); }),
       StatusCode::INVALID_ARGUMENT, "config.delay"},
      {"create: max_payload 4MiB+1", config([](auto& c) { c.set_max_payload_bytes(4194305); }),
       StatusCode::INVALID_ARGUMENT, "config.max_payload_bytes"},
      {"create: dedup 999ms", config([](auto& c) { *c.mutable_dedup_window() = Ms(999); }),
       StatusCode::INVALID_ARGUMENT, "config.dedup_window"},
      {"create: dedup 7d+1ms",
       config([](auto& c) { *c.mutable_dedup_window() = Ms(7 * kDayMs + 1); }),
       StatusCode::INVALID_ARGUMENT, "config.dedup_window"},
      {"create: exists with another config",
       Call<v1::CreateQueueRequest, v1::Queue>(&S::CreateQueue,
                                               [](auto& r) { r.set_name("jobs"); }),
       StatusCode::ALREADY_EXISTS, ""},
      {"get: unknown queue",
       Call<v1::GetQueueRequest, v1::Queue>(&S::GetQueue, [](auto& r) { r.set_name("nope"); }),
       StatusCode::NOT_FOUND, ""},
      {"list: page_size 1001",
       Call<v1::ListQueuesRequest, v1::ListQueuesResponse>(&S::ListQueues,
                                                           [](auto& r) { r.set_page_size(1001); }),
       StatusCode::INVALID_ARGUMENT, "page_size"},
      {"list: forged page_token",
       Call<v1::ListQueuesRequest, v1::ListQueuesResponse>(
           &S::ListQueues, [](auto& r) { r.set_page_token("../etc"); }),
       StatusCode::INVALID_ARGUMENT, "page_token"},
      {"update: unknown queue",
       Call<v1::UpdateQueueRequest, v1::Queue>(&S::UpdateQueue,
                                               [](auto& r) { r.set_name("nope"); }),
       StatusCode::NOT_FOUND, ""},
      {"update: visibility 0",
       Call<v1::UpdateQueueRequest, v1::Queue>(&S::UpdateQueue,
                                               [](auto& r) {
                                                 r.set_name("jobs");
                                                 *r.mutable_config()->mutable_visibility_timeout() =
                                                     Ms(0);
                                               }),
       StatusCode::INVALID_ARGUMENT, "config.visibility_timeout"},
      {"delete: dlq in use",
       Call<v1::DeleteQueueRequest, v1::DeleteQueueResponse>(&S::DeleteQueue,
                                                             [](auto& r) { r.set_name("dlq"); }),
       StatusCode::FAILED_PRECONDITION, ""},
      {"delete: unknown queue",
       Call<v1::DeleteQueueRequest, v1::DeleteQueueResponse>(&S::DeleteQueue,
                                                             [](auto& r) { r.set_name("nope"); }),
       StatusCode::NOT_FOUND, ""},
      {"purge: unknown queue",
       Call<v1::PurgeQueueRequest, v1::PurgeQueueResponse>(&S::PurgeQueue,
                                                           [](auto& r) { r.set_name("nope"); }),
       StatusCode::NOT_FOUND, ""},
      {"enqueue: no entries", enqueue([](auto&) {}), StatusCode::INVALID_ARGUMENT, "messages"},
      {"enqueue: 1001 entries", enqueue([](auto& r) {
         for (int i = 0; i < 1001; ++i) r.add_messages()->set_payload("x");
       }),
       StatusCode::INVALID_ARGUMENT, "messages"},
      {"enqueue: payload one byte over",
       enqueue([](auto& r) { r.add_messages()->set_payload(std::string(262145, 'x')); }),
       StatusCode::INVALID_ARGUMENT, "messages[0].payload"},
      {"enqueue: attributes push it over", enqueue([](auto& r) {
         auto* e = r.add_messages();
         e->set_payload(std::string(262144, 'x'));
         (*e->mutable_attributes())["k"] = "";
       }),
       StatusCode::INVALID_ARGUMENT, "messages[0].payload"},
      {"enqueue: 17 attributes", enqueue([](auto& r) {
         auto* e = r.add_messages();
         for (int i = 0; i < 17; ++i) (*e->mutable_attributes())["k" + std::to_string(i)] = "v";
       }),
       StatusCode::INVALID_ARGUMENT, "messages[0].attributes"},
      {"enqueue: 129-char attribute key", enqueue([](auto& r) {
         (*r.add_messages()->mutable_attributes())[std::string(129, 'k')] = "v";
       }),
       StatusCode::INVALID_ARGUMENT, "messages[0].attributes"},
      {"enqueue: empty attribute key",
       enqueue([](auto& r) { (*r.add_messages()->mutable_attributes())[""] = "v"; }),
       StatusCode::INVALID_ARGUMENT, "messages[0].attributes"},
      {"enqueue: second entry's delay 30d+1ms", enqueue([](auto& r) {
         r.add_messages()->set_payload("ok");
         *r.add_messages()->mutable_delay() = Ms(30 * kDayMs + 1);
       }),
       StatusCode::INVALID_ARGUMENT, "messages[1].delay"},
      {"enqueue: negative delay",
       enqueue([](auto& r) { *r.add_messages()->mutable_delay() = Seconds(-5); }),
       StatusCode::INVALID_ARGUMENT, "messages[0].delay"},
      {"enqueue: 129-char dedup_id",
       enqueue([](auto& r) { r.add_messages()->set_dedup_id(std::string(129, 'd')); }),
       StatusCode::INVALID_ARGUMENT, "messages[0].dedup_id"},
      {"enqueue: unknown queue", enqueue([](auto& r) {
         r.set_queue("nope");
         r.add_messages();
       }),
       StatusCode::NOT_FOUND, ""},
      {"enqueue: bad queue name", enqueue([](auto& r) {
         r.set_queue("../x");
         r.add_messages();
       }),
       StatusCode::INVALID_ARGUMENT, "queue"},
      {"enqueue: past max_depth", enqueue([](auto& r) {
         r.set_queue("full");
         r.add_messages();
       }),
       StatusCode::RESOURCE_EXHAUSTED, ""},
      {"lease: max_messages 1001", lease([](auto& r) { r.set_max_messages(1001); }),
       StatusCode::INVALID_ARGUMENT, "max_messages"},
      {"lease: visibility 999ms", lease([](auto& r) { *r.mutable_visibility_timeout() = Ms(999); }),
       StatusCode::INVALID_ARGUMENT, "visibility_timeout"},
      {"lease: visibility 12h+1ms",
       lease([](auto& r) { *r.mutable_visibility_timeout() = Ms(12 * kHourMs + 1); }),
       StatusCode::INVALID_ARGUMENT, "visibility_timeout"},
      {"lease: wait 60s+1ms", lease([](auto& r) { *r.mutable_wait_time() = Ms(60'001); }),
       StatusCode::INVALID_ARGUMENT, "wait_time"},
      {"lease: negative wait", lease([](auto& r) { *r.mutable_wait_time() = Seconds(-1); }),
       StatusCode::INVALID_ARGUMENT, "wait_time"},
      {"lease: unknown queue", lease([](auto& r) { r.set_queue("nope"); }), StatusCode::NOT_FOUND,
       ""},
      {"ack: no receipts",
       Call<v1::AckRequest, v1::AckResponse>(&S::Ack, [](auto& r) { r.set_queue("jobs"); }),
       StatusCode::INVALID_ARGUMENT, "receipts"},
      {"ack: 1001 receipts",
       Call<v1::AckRequest, v1::AckResponse>(&S::Ack,
                                             [=](auto& r) {
                                               r.set_queue("jobs");
                                               receipts(r, 1001);
                                             }),
       StatusCode::INVALID_ARGUMENT, "receipts"},
      {"ack: unknown queue",
       Call<v1::AckRequest, v1::AckResponse>(&S::Ack,
                                             [=](auto& r) {
                                               r.set_queue("nope");
                                               receipts(r, 1);
                                             }),
       StatusCode::NOT_FOUND, ""},
      {"nack: delay 12h+1ms",
       Call<v1::NackRequest, v1::NackResponse>(&S::Nack,
                                               [](auto& r) {
                                                 r.set_queue("jobs");
                                                 r.add_receipts("x");
                                                 *r.mutable_delay() = Ms(12 * kHourMs + 1);
                                               }),
       StatusCode::INVALID_ARGUMENT, "delay"},
      {"extend: visibility 12h+1ms",
       Call<v1::ExtendLeaseRequest, v1::ExtendLeaseResponse>(&S::ExtendLease,
                                                             [](auto& r) {
                                                               r.set_queue("jobs");
                                                               r.add_receipts("x");
                                                               *r.mutable_visibility_timeout() =
                                                                   Ms(12 * kHourMs + 1);
                                                             }),
       StatusCode::INVALID_ARGUMENT, "visibility_timeout"},
      {"peek: max_messages 1001",
       Call<v1::PeekRequest, v1::PeekResponse>(&S::Peek,
                                               [](auto& r) {
                                                 r.set_queue("jobs");
                                                 r.set_max_messages(1001);
                                               }),
       StatusCode::INVALID_ARGUMENT, "max_messages"},
      {"peek: start_after not an id",
       Call<v1::PeekRequest, v1::PeekResponse>(&S::Peek,
                                               [](auto& r) {
                                                 r.set_queue("jobs");
                                                 r.set_start_after("zzz");
                                               }),
       StatusCode::INVALID_ARGUMENT, "start_after"},
      {"move: to itself",
       Call<v1::MoveMessagesRequest, v1::MoveMessagesResponse>(&S::MoveMessages,
                                                               [](auto& r) {
                                                                 r.set_source("jobs");
                                                                 r.set_destination("jobs");
                                                               }),
       StatusCode::INVALID_ARGUMENT, "destination"},
      {"move: max_messages 1001",
       Call<v1::MoveMessagesRequest, v1::MoveMessagesResponse>(&S::MoveMessages,
                                                               [](auto& r) {
                                                                 r.set_source("jobs");
                                                                 r.set_destination("dlq");
                                                                 r.set_max_messages(1001);
                                                               }),
       StatusCode::INVALID_ARGUMENT, "max_messages"},
      {"move: past destination max_depth",
       Call<v1::MoveMessagesRequest, v1::MoveMessagesResponse>(&S::MoveMessages,
                                                               [](auto& r) {
                                                                 r.set_source("jobs");
                                                                 r.set_destination("full");
                                                               }),
       StatusCode::RESOURCE_EXHAUSTED, ""},
      {"delete-message: not an id",
       Call<v1::DeleteMessageRequest, v1::DeleteMessageResponse>(&S::DeleteMessage,
                                                                 [](auto& r) {
                                                                   r.set_queue("jobs");
                                                                   r.set_message_id("../1");
                                                                 }),
       StatusCode::INVALID_ARGUMENT, "message_id"},
      {"delete-message: absent",
       Call<v1::DeleteMessageRequest, v1::DeleteMessageResponse>(&S::DeleteMessage,
                                                                 [](auto& r) {
                                                                   r.set_queue("jobs");
                                                                   r.set_message_id(
                                                                       "00000000000fffff");
                                                                 }),
       StatusCode::NOT_FOUND, ""},
  };
}

TEST_F(BadInputTest, EveryBadRequestGetsItsStatusNamesTheFieldAndChangesNothing) {
  std::string before = Snapshot();
  std::vector<Case> cases = BadCases();
  ASSERT_GE(cases.size(), 40u);
  for (const Case& c : cases) {
    grpc::Status s = c.call(*stub_);
    EXPECT_EQ(s.error_code(), c.code) << c.name << ": " << s.error_message();
    if (!c.field.empty()) {
      EXPECT_EQ(s.error_message().rfind(c.field + ":", 0), 0u)
          << c.name << ": message should start with \"" << c.field << ":\" but is \""
          << s.error_message() << "\"";
    }
    EXPECT_FALSE(s.error_message().empty()) << c.name;
  }
  EXPECT_EQ(Snapshot(), before) << "a refused request changed the store";
}

TEST_F(BadInputTest, BoundaryValuesSucceed) {
  v1::QueueConfig lo, hi;
  *lo.mutable_visibility_timeout() = Ms(1000);
  *lo.mutable_retention() = Ms(60'000);
  *lo.mutable_dedup_window() = Ms(1000);
  lo.set_max_deliveries(1);
  lo.set_dead_letter_queue("dlq");
  EXPECT_TRUE(spool::testing::CreateQueue(*stub_, "lo", lo).ok());
  *hi.mutable_visibility_timeout() = Ms(12 * kHourMs);
  *hi.mutable_retention() = Ms(365 * kDayMs);
  *hi.mutable_delay() = Ms(30 * kDayMs);
  *hi.mutable_dedup_window() = Ms(7 * kDayMs);
  hi.set_max_deliveries(1000);
  hi.set_dead_letter_queue("dlq");
  hi.set_max_payload_bytes(4194304);
  EXPECT_TRUE(spool::testing::CreateQueue(*stub_, std::string(80, 'h'), hi).ok());

  grpc::ClientContext ctx;
  v1::EnqueueRequest req;
  req.set_queue("jobs");
  auto* e = req.add_messages();
  e->set_payload(std::string(262144 - 16 * (128 + 1), 'x'));
  for (int i = 0; i < 16; ++i) {
    (*e->mutable_attributes())[std::string(127, 'k') + static_cast<char>('a' + i)] = "v";
  }
  e->set_dedup_id(std::string(128, 'd'));
  *e->mutable_delay() = Ms(30 * kDayMs);
  for (int i = 1; i < 1000; ++i) req.add_messages()->set_payload("p");
  v1::EnqueueResponse resp;
  grpc::Status s = stub_->Enqueue(&ctx, req, &resp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_EQ(resp.results_size(), 1000);

  grpc::ClientContext lctx;
  v1::LeaseRequest lreq;
  lreq.set_queue("jobs");
  lreq.set_max_messages(1000);
  *lreq.mutable_visibility_timeout() = Ms(12 * kHourMs);
  *lreq.mutable_wait_time() = Ms(60'000);  // messages are there: returns at once
  v1::LeaseResponse lresp;
  s = stub_->Lease(&lctx, lreq, &lresp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  EXPECT_GT(lresp.messages_size(), 0);

  grpc::ClientContext nctx;
  v1::NackRequest nreq;
  nreq.set_queue("jobs");
  for (const auto& m : lresp.messages()) nreq.add_receipts(m.receipt());
  *nreq.mutable_delay() = Ms(12 * kHourMs);
  v1::NackResponse nresp;
  s = stub_->Nack(&nctx, nreq, &nresp);
  EXPECT_TRUE(s.ok()) << s.error_message();
  for (const auto& r : nresp.results()) EXPECT_EQ(r.outcome(), v1::OUTCOME_OK);

  grpc::ClientContext pctx;
  v1::PeekRequest preq;
  preq.set_queue("jobs");
  preq.set_max_messages(1000);
  v1::PeekResponse presp;
  EXPECT_TRUE(stub_->Peek(&pctx, preq, &presp).ok());
}

TEST_F(BadInputTest, ForgedAlteredAndReplayedReceiptsAreNeverAccepted) {
  std::string before = Snapshot();
  const std::string valid = leased_.messages(0).receipt();
  auto ack_all = [&](const std::string& queue, const std::vector<std::string>& receipts) {
    size_t accepted = 0;
    for (size_t i = 0; i < receipts.size(); i += 1000) {
      grpc::ClientContext ctx;
      v1::AckRequest req;
      req.set_queue(queue);
      for (size_t k = i; k < std::min(receipts.size(), i + 1000); ++k)
        req.add_receipts(receipts[k]);
      v1::AckResponse resp;
      grpc::Status st = stub_->Ack(&ctx, req, &resp);
      EXPECT_TRUE(st.ok()) << st.error_code() << " " << st.error_message();
      for (const auto& r : resp.results()) accepted += r.outcome() == v1::OUTCOME_OK;
    }
    return accepted;
  };
  std::mt19937_64 rng(20261124);
  static constexpr char kAlphabet[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::vector<std::string> random(100'000);
  for (auto& r : random) {
    r.resize(rng() % 2 ? valid.size() : rng() % 80);
    for (char& c : r) c = kAlphabet[rng() % 64];
  }
  EXPECT_EQ(ack_all("jobs", random), 0u);
  // Single-bit flips. A flip of bit 7 makes the string invalid UTF-8, which protobuf refuses
  // to carry in a `string` field: gRPC rejects such a call before Spool sees it. Those go one
  // per call and must fail; the others go through Spool's own checks, a thousand per call.
  std::vector<std::string> flipped;
  size_t transport_refused = 0, sent_high = 0;
  for (int i = 0; i < 10'000; ++i) {
    std::string r = valid;
    size_t bit = rng() % (r.size() * 8);
    r[bit / 8] = static_cast<char>(r[bit / 8] ^ (1 << (bit % 8)));
    if (bit % 8 != 7) {
      flipped.push_back(std::move(r));
      continue;
    }
    ++sent_high;
    grpc::ClientContext ctx;
    v1::AckRequest req;
    req.set_queue("jobs");
    req.add_receipts(r);
    v1::AckResponse resp;
    grpc::Status st = stub_->Ack(&ctx, req, &resp);
    if (!st.ok()) {
      ++transport_refused;
      // As the README's status table says: gRPC's own refusal of a request it cannot parse.
      EXPECT_TRUE(st.error_code() == grpc::StatusCode::UNIMPLEMENTED ||
                  st.error_code() == grpc::StatusCode::INTERNAL)
          << st.error_code() << " " << st.error_message();
    } else {
      EXPECT_NE(resp.results(0).outcome(), v1::OUTCOME_OK);
    }
  }
  EXPECT_EQ(transport_refused, sent_high);
  EXPECT_GT(flipped.size(), 8'000u);
  EXPECT_EQ(ack_all("jobs", flipped), 0u);
  // The same receipt on another queue.
  EXPECT_EQ(ack_all("dlq", {valid}), 0u);
  EXPECT_EQ(Snapshot(), before);

  // On a deleted-and-recreated queue of the same name.
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "temp").ok());
  spool::testing::Enqueue(*stub_, "temp", {"t"});
  auto temp = spool::testing::Lease(*stub_, "temp", 1, 600);
  grpc::ClientContext dctx;
  v1::DeleteQueueRequest dreq;
  dreq.set_name("temp");
  v1::DeleteQueueResponse dresp;
  ASSERT_TRUE(stub_->DeleteQueue(&dctx, dreq, &dresp).ok());
  ASSERT_TRUE(spool::testing::CreateQueue(*stub_, "temp").ok());
  spool::testing::Enqueue(*stub_, "temp", {"t2"});
  auto ack = spool::testing::Ack(*stub_, "temp", {temp.messages(0).receipt()});
  EXPECT_EQ(ack.results(0).outcome(), v1::OUTCOME_INVALID_RECEIPT);
  // The valid receipt still works where it belongs.
  EXPECT_EQ(ack_all("jobs", {valid}), 1u);
}

}  // namespace
}  // namespace spool::server
