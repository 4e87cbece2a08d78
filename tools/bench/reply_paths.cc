// spool-reply-paths: what a gRPC reply costs on this machine when it is sent after a durable
// write, by each of gRPC's three C++ server APIs (BENCHMARKS.md, "What limits": target 2).
//
// It answers grpc.health.v1.Health/Check, so spool-bench's noop workload drives it, in one of
// these ways:
//   --api callback   gRPC's callback API, as spoold serves its calls;
//   --api async      the completion-queue API, with --threads threads each draining one queue;
//   --api sync       the synchronous API: one handler thread per call in flight.
//   --finish inline  the reply is sent by the handler itself, at once (gRPC's own health
//                    service does this);
//   --finish group   the call joins a group; one thread takes each group, sleeps --delay-us
//                    (a stand-in for the group's fsync, 0: none) and then has every call of it
//                    replied to: callback and async finish from that thread, as spoold's
//                    completion thread does, and sync wakes the blocked handlers.
//
// With --api callback it also answers spool.v1 Publish and Subscribe streams the same way
// (and CreateQueue, as a no-op), so spool-bench's publish and subscribe workloads measure what
// gRPC's streams cost with no engine behind them: a Publish request is answered with its
// sequence and one result per message; a Subscribe stream is pushed max_outstanding messages
// at once and one more for each one acked. Answers are written one at a time, as spoold
// writes them.
//
//   spool-reply-paths --api callback --finish group --delay-us 200 --port-file /tmp/p
//   spool-bench --server 127.0.0.1:PORT --workload noop --producers 4 --inflight 16
//   spool-bench --server 127.0.0.1:PORT --workload publish --producers 4 --inflight 64
//   spool-bench --server 127.0.0.1:PORT --workload subscribe --consumers 4 --max-outstanding 1
#include <grpcpp/grpcpp.h>
#include <pthread.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "grpc/health/v1/health.grpc.pb.h"
#include "spool/v1/queue.grpc.pb.h"
#include "tools/bench/serve.h"

namespace {

using grpc::health::v1::Health;
using grpc::health::v1::HealthCheckRequest;
using grpc::health::v1::HealthCheckResponse;

// Runs the functions given to it in groups: whatever has gathered, after delay_us.
class Grouper {
 public:
  explicit Grouper(int delay_us) : delay_us_(delay_us) {
    thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "reply-group");
      Loop();
    });
  }
  ~Grouper() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stopping_ = true;
      cv_.notify_one();
    }
    thread_.join();
  }
  void Add(std::function<void()> f) {
    std::lock_guard<std::mutex> l(mu_);
    pending_.push_back(std::move(f));
    cv_.notify_one();
  }

 private:
  void Loop() {
    for (;;) {
      std::vector<std::function<void()>> group;
      {
        std::unique_lock<std::mutex> l(mu_);
        cv_.wait(l, [&] { return stopping_ || !pending_.empty(); });
        if (pending_.empty()) return;
        group.swap(pending_);
      }
      if (delay_us_ > 0) usleep(static_cast<useconds_t>(delay_us_));
      for (auto& f : group) f();
    }
  }

  const int delay_us_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::function<void()>> pending_;
  bool stopping_ = false;
  std::thread thread_;
};

class CallbackHealth final : public Health::CallbackService {
 public:
  explicit CallbackHealth(Grouper* grouper) : grouper_(grouper) {}
  grpc::ServerUnaryReactor* Check(grpc::CallbackServerContext* ctx, const HealthCheckRequest*,
                                  HealthCheckResponse* resp) override {
    resp->set_status(HealthCheckResponse::SERVING);
    auto* reactor = ctx->DefaultReactor();
    if (grouper_ == nullptr) {
      reactor->Finish(grpc::Status::OK);
    } else {
      grouper_->Add([reactor] { reactor->Finish(grpc::Status::OK); });
    }
    return reactor;
  }

 private:
  Grouper* grouper_;
};

// A stream of spool.v1 requests answered with no engine: each request's answer is made at once
// and sent at once or by the group's thread; answers are written one at a time, in order, as
// spoold writes them.
template <typename Req, typename Resp>
class EchoStream final : public grpc::ServerBidiReactor<Req, Resp> {
 public:
  EchoStream(Grouper* grouper, std::function<Resp(const Req&)> answer)
      : grouper_(grouper), answer_(std::move(answer)) {
    this->StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    if (!ok) {
      std::lock_guard<std::mutex> l(mu_);
      reads_done_ = true;
      MaybeFinishLocked();
      return;
    }
    Resp r = answer_(request_);
    {
      std::lock_guard<std::mutex> l(mu_);
      ++unanswered_;
    }
    if (grouper_ == nullptr) {
      Answer(std::move(r));
    } else {
      grouper_->Add([this, r = std::move(r)]() mutable { Answer(std::move(r)); });
    }
    this->StartRead(&request_);
  }

  void OnWriteDone(bool ok) override {
    std::lock_guard<std::mutex> l(mu_);
    out_.pop_front();
    writing_ = false;
    if (!ok) failed_ = true;
    WriteLocked();
    MaybeFinishLocked();
  }

  void OnDone() override { delete this; }

 private:
  void Answer(Resp r) {
    std::lock_guard<std::mutex> l(mu_);
    --unanswered_;
    out_.push_back(std::move(r));
    WriteLocked();
  }
  void WriteLocked() {
    if (writing_ || failed_ || out_.empty()) return;
    writing_ = true;
    this->StartWrite(&out_.front());
  }
  // Finish runs OnDone (which deletes this) only after this reaction returns.
  void MaybeFinishLocked() {
    if (!reads_done_ || writing_ || unanswered_ > 0 || finished_) return;
    if (!failed_ && !out_.empty()) return;
    finished_ = true;
    this->Finish(grpc::Status::OK);
  }

  Grouper* const grouper_;
  const std::function<Resp(const Req&)> answer_;
  Req request_;
  std::mutex mu_;
  std::deque<Resp> out_;  // the front one is being written when writing_
  int unanswered_ = 0;
  bool writing_ = false, reads_done_ = false, failed_ = false, finished_ = false;
};

// Publish: the request's sequence and one result per message.
spool::v1::PublishResponse EchoPublish(const spool::v1::PublishRequest& req) {
  spool::v1::PublishResponse r;
  r.set_sequence(req.sequence());
  for (int i = 0; i < req.messages_size(); ++i) r.add_results()->set_message_id("m");
  return r;
}

// Subscribe from a queue that never runs dry: the first request gets max_outstanding messages
// (0: 100); each later one its outcomes, all OK, and one new message per receipt settled.
class EchoSubscribe {
 public:
  spool::v1::SubscribeResponse operator()(const spool::v1::SubscribeRequest& req) {
    spool::v1::SubscribeResponse r;
    int fresh = req.ack_size() + req.nack_size();
    if (first_) {
      first_ = false;
      fresh = req.max_outstanding() == 0 ? 100 : static_cast<int>(req.max_outstanding());
    }
    for (int i = 0; i < req.ack_size(); ++i)
      r.add_ack_results()->set_outcome(spool::v1::OUTCOME_OK);
    for (int i = 0; i < req.nack_size(); ++i) {
      r.add_nack_results()->set_outcome(spool::v1::OUTCOME_OK);
    }
    for (int i = 0; i < fresh; ++i) {
      spool::v1::LeasedMessage* m = r.add_messages();
      m->set_message_id("m");
      m->set_payload(std::string(256, 'x'));
      m->set_receipt("r" + std::to_string(next_++));
      m->set_delivery_count(1);
    }
    return r;
  }

 private:
  bool first_ = true;
  uint64_t next_ = 0;
};

class CallbackQueues final : public spool::v1::QueueService::CallbackService {
 public:
  explicit CallbackQueues(Grouper* grouper) : grouper_(grouper) {}
  grpc::ServerUnaryReactor* CreateQueue(grpc::CallbackServerContext* ctx,
                                        const spool::v1::CreateQueueRequest* req,
                                        spool::v1::Queue* resp) override {
    resp->set_name(req->name());
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  // Deep enough that spool-bench's subscribe loads nothing first.
  grpc::ServerUnaryReactor* GetQueue(grpc::CallbackServerContext* ctx,
                                     const spool::v1::GetQueueRequest* req,
                                     spool::v1::Queue* resp) override {
    resp->set_name(req->name());
    resp->mutable_stats()->set_total(uint64_t{1} << 40);
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }
  grpc::ServerBidiReactor<spool::v1::PublishRequest, spool::v1::PublishResponse>* Publish(
      grpc::CallbackServerContext*) override {
    return new EchoStream<spool::v1::PublishRequest, spool::v1::PublishResponse>(grouper_,
                                                                                 EchoPublish);
  }
  grpc::ServerBidiReactor<spool::v1::SubscribeRequest, spool::v1::SubscribeResponse>* Subscribe(
      grpc::CallbackServerContext*) override {
    return new EchoStream<spool::v1::SubscribeRequest, spool::v1::SubscribeResponse>(
        grouper_, EchoSubscribe());
  }

 private:
  Grouper* grouper_;
};

class SyncHealth final : public Health::Service {
 public:
  explicit SyncHealth(Grouper* grouper) : grouper_(grouper) {}
  grpc::Status Check(grpc::ServerContext*, const HealthCheckRequest*,
                     HealthCheckResponse* resp) override {
    resp->set_status(HealthCheckResponse::SERVING);
    if (grouper_ == nullptr) return grpc::Status::OK;
    std::mutex mu;
    std::condition_variable cv;
    bool done = false;
    grouper_->Add([&] {
      std::lock_guard<std::mutex> l(mu);
      done = true;
      cv.notify_one();
    });
    std::unique_lock<std::mutex> l(mu);
    cv.wait(l, [&] { return done; });
    return grpc::Status::OK;
  }

 private:
  Grouper* grouper_;
};

// One Check on the completion-queue API: requested, then answered, then deleted.
class AsyncCheck {
 public:
  AsyncCheck(Health::AsyncService* service, grpc::ServerCompletionQueue* cq, Grouper* grouper)
      : service_(service), cq_(cq), grouper_(grouper), writer_(&ctx_) {
    service_->RequestCheck(&ctx_, &req_, &writer_, cq_, cq_, this);
  }
  // Called with each event of this call from the queue's thread.
  void Proceed(bool ok) {
    if (answered_ || !ok) {
      delete this;
      return;
    }
    new AsyncCheck(service_, cq_, grouper_);  // the next call
    answered_ = true;
    resp_.set_status(HealthCheckResponse::SERVING);
    if (grouper_ == nullptr) {
      writer_.Finish(resp_, grpc::Status::OK, this);
    } else {
      grouper_->Add([this] { writer_.Finish(resp_, grpc::Status::OK, this); });
    }
  }

 private:
  Health::AsyncService* service_;
  grpc::ServerCompletionQueue* cq_;
  Grouper* grouper_;
  grpc::ServerContext ctx_;
  HealthCheckRequest req_;
  HealthCheckResponse resp_;
  grpc::ServerAsyncResponseWriter<HealthCheckResponse> writer_;
  bool answered_ = false;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "spool-reply-paths: grpc.health.v1 Check answered through gRPC's callback, async or sync "
      "API, inline or after a group wait on another thread: what a reply after a durable "
      "write costs gRPC here."};
  std::string listen = "127.0.0.1:0", port_file, api = "callback", finish = "inline";
  int delay_us = 0, threads = 2;
  app.add_option("--listen", listen, "HOST:PORT to serve on (port 0: any free port)")
      ->capture_default_str();
  app.add_option("--port-file", port_file, "Write the port served on to this file once serving");
  app.add_option("--api", api, "callback, async or sync")
      ->check(CLI::IsMember({"callback", "async", "sync"}))
      ->capture_default_str();
  app.add_option("--finish", finish, "inline, or group (replied to from the group's thread)")
      ->check(CLI::IsMember({"inline", "group"}))
      ->capture_default_str();
  app.add_option("--delay-us", delay_us, "--finish group: wait this long per group")
      ->check(CLI::Range(0, 1'000'000));
  app.add_option("--threads", threads, "--api async: completion queues, one thread each")
      ->check(CLI::Range(1, 64))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (delay_us > 0 && finish != "group") {
    std::fprintf(stderr, "spool-reply-paths: --delay-us goes with --finish group\n");
    return 2;
  }

  sigset_t signals = spool::bench::BlockStopSignals();

  std::unique_ptr<Grouper> grouper;
  if (finish == "group") grouper = std::make_unique<Grouper>(delay_us);
  CallbackHealth callback_health(grouper.get());
  CallbackQueues callback_queues(grouper.get());
  SyncHealth sync_health(grouper.get());
  Health::AsyncService async_health;

  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  std::vector<std::unique_ptr<grpc::ServerCompletionQueue>> cqs;
  if (api == "callback") {
    builder.RegisterService(&callback_health);
    builder.RegisterService(&callback_queues);
  } else if (api == "sync") {
    builder.RegisterService(&sync_health);
  } else {
    builder.RegisterService(&async_health);
    for (int i = 0; i < threads; ++i) cqs.push_back(builder.AddCompletionQueue());
  }
  auto server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "spool-reply-paths: cannot listen on %s\n", listen.c_str());
    return 1;
  }
  std::vector<std::thread> drains;
  for (auto& cq : cqs) {
    for (int i = 0; i < 64; ++i) new AsyncCheck(&async_health, cq.get(), grouper.get());
    drains.emplace_back([q = cq.get()] {
      void* tag;
      bool ok;
      while (q->Next(&tag, &ok)) static_cast<AsyncCheck*>(tag)->Proceed(ok);
    });
  }
  std::fprintf(stderr, "spool-reply-paths: serving on port %d (%s API, finish %s, delay %d us)\n",
               port, api.c_str(), finish.c_str(), delay_us);
  spool::bench::WritePortFile(port_file, port);
  spool::bench::WaitForStopSignal(signals);
  server->Shutdown();
  for (auto& cq : cqs) cq->Shutdown();
  for (auto& t : drains) t.join();
  return 0;
}
