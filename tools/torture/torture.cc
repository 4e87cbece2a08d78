// spool-torture: crash torture with a history checker (issue 5).
//
// Starts spoold (on 127.0.0.1, a directory of its own, the unsynced-loss fault file system),
// runs producers, consumers and a dead-letter reader against it while a nemesis kills it with
// SIGKILL at random moments or at named points of its commit path and starts it again. Every
// call goes to a history (one JSON line each, CLOCK_MONOTONIC times, outcome ok/fail/unknown).
// After the last cycle (or every --check-every cycles) the load stops, the queues are drained,
// and the checker (checker.h) judges the history.
//
// Exit status: 0 the checker passed (or, with --expect, found the expected violation);
// 1 it found violations (or, with --expect, did not find the expected one); 2 the harness could
// not do its job (spoold would not start, time bound reached).
#include <grpcpp/grpcpp.h>
#include <signal.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <deque>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "grpc/health/v1/health.grpc.pb.h"
#include "server/convert.h"
#include "spool/v1/queue.grpc.pb.h"
#include "tools/status_names.h"
#include "tools/torture/checker.h"
#include "tools/torture/payload.h"

namespace spool::torture {
namespace {

namespace v1 = spool::v1;

int64_t NowUs() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return int64_t{ts.tv_sec} * 1'000'000 + ts.tv_nsec / 1000;
}

void SleepMs(int64_t ms) { std::this_thread::sleep_for(std::chrono::milliseconds(ms)); }

struct Flags {
  std::string spoold;
  std::string dir;
  int cycles = 30;
  int check_every = 0;
  uint64_t seed = 0;
  int producers = 2;
  int consumers = 4;
  int stream_producers = 1;  // over Publish
  int stream_consumers = 2;  // over Subscribe
  std::string mutation;
  std::string expect;
  double crash_point_share = 0.3;
  std::string crash_at;  // every crash-point cycle dies here (POINT:N) rather than at a random one
  double storage_fault_share = 0.0;
  int uptime_min_ms = 400;
  int uptime_max_ms = 1200;
  int max_seconds = 900;
};

const char* const kQueue = "torture";
const char* const kDeadLetters = "torture-dlq";
constexpr uint32_t kMaxDeliveries = 3;

// A definite error changed nothing; anything else may or may not have happened.
const char* Classify(const grpc::Status& s) {
  // The channel had no connection to send it on: the call never left this process.
  if (s.error_code() == grpc::StatusCode::UNAVAILABLE &&
      s.error_message().starts_with("failed to connect to all addresses")) {
    return "fail";
  }
  switch (s.error_code()) {
    case grpc::StatusCode::OK:
      return "ok";
    case grpc::StatusCode::INVALID_ARGUMENT:
    case grpc::StatusCode::NOT_FOUND:
    case grpc::StatusCode::ALREADY_EXISTS:
    case grpc::StatusCode::FAILED_PRECONDITION:
    case grpc::StatusCode::PERMISSION_DENIED:
    case grpc::StatusCode::UNAUTHENTICATED:
    case grpc::StatusCode::OUT_OF_RANGE:
    case grpc::StatusCode::RESOURCE_EXHAUSTED:
      return "fail";
    default:
      return "unknown";
  }
}

// The outcome's name without the enum prefix: OK, LEASE_LOST, INVALID_RECEIPT.
std::string OutcomeName(v1::Outcome o) { return v1::Outcome_Name(o).substr(sizeof "OUTCOME_" - 1); }

// The history: appended by every thread, written as JSON lines, kept in memory for the checker.
class History {
 public:
  explicit History(const std::string& path) : out_(path) {}
  bool good() const { return out_.good(); }
  void Record(Event e) {
    std::lock_guard<std::mutex> lock(mu_);
    out_ << ToJsonLine(e) << "\n";
    events_.push_back(std::move(e));
  }
  std::vector<Event> Snapshot() {
    std::lock_guard<std::mutex> lock(mu_);
    out_.flush();
    return events_;
  }

 private:
  std::mutex mu_;
  std::ofstream out_;
  std::vector<Event> events_;
};

void SetCall(Event* e, const grpc::Status& s, int64_t invoke) {
  e->set_invoke_us(invoke);
  e->set_complete_us(NowUs());
  e->set_outcome(Classify(s));
  e->set_code(spool::tools::StatusCodeName(s.error_code()));
  if (!s.ok()) e->set_error(s.error_message());
}

std::shared_ptr<grpc::Channel> Connect(int port) {
  grpc::ChannelArguments args;
  // spoold restarts often: reconnect at once rather than after gRPC's default second.
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MIN_RECONNECT_BACKOFF_MS, 50);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 200);
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  return grpc::CreateCustomChannel("127.0.0.1:" + std::to_string(port),
                                   grpc::InsecureChannelCredentials(), args);
}

void Deadline(grpc::ClientContext* ctx, int64_t ms) {
  ctx->set_deadline(std::chrono::system_clock::now() + std::chrono::milliseconds(ms));
}

// Fills messages with 1..4 new messages of producer id (of this phase) and returns the enqueue
// event that records them; the caller sets its times.
Event NewMessages(int id, int phase, uint64_t* next_uid, std::mt19937_64& rng,
                  google::protobuf::RepeatedPtrField<v1::EnqueueEntry>* messages) {
  Event e;
  e.set_type("enqueue");
  e.set_worker(id);
  e.set_queue(kQueue);
  int n = 1 + static_cast<int>(rng() % 4);
  for (int i = 0; i < n; ++i) {
    std::string uid = "p" + std::to_string(id) +
                      (phase > 0 ? "." + std::to_string(phase) : std::string()) + "-" +
                      std::to_string((*next_uid)++);
    messages->Add()->set_payload(MakePayload(uid, 16 + rng() % 200, rng()));
    e.add_uids(uid);
  }
  return e;
}

// Records m as a delivery of e; returns its uid unless its payload is damaged.
std::optional<std::string> AddDelivery(const v1::LeasedMessage& m, Event* e) {
  Delivery* d = e->add_deliveries();
  std::optional<std::string> uid = ParsePayload(m.payload());
  d->set_uid(uid.value_or(""));
  d->set_intact(uid.has_value());
  d->set_message_id(m.message_id());
  d->set_delivery_count(m.delivery_count());
  return uid;
}

// A lease this worker holds, or gave up.
struct Held {
  std::string queue, receipt, uid;
  uint32_t count;
  int64_t leased_at_us;
};

class Worker {
 public:
  // phase: which load this worker belongs to (one per --check-every phase); it goes into the
  // uids a producer makes, so that no two phases enqueue messages the checker would take for
  // one.
  Worker(int id, int port, History* history, uint64_t seed, int phase = 0)
      : id_(id),
        phase_(phase),
        port_(port),
        stub_(v1::QueueService::NewStub(Connect(port))),
        history_(history),
        rng_(seed) {}

  // gRPC backs off reconnecting to a server that refused it, which can outlast a restart; a
  // worker that keeps failing starts a fresh channel, as a client in a hurry would.
  void Observe(const grpc::Status& s) {
    if (s.error_code() != grpc::StatusCode::UNAVAILABLE) {
      failures_ = 0;
    } else if (++failures_ >= 3) {
      stub_ = v1::QueueService::NewStub(Connect(port_));
      failures_ = 0;
    }
  }

  // Enqueues 1..4 messages with fresh uids.
  void Produce() {
    v1::EnqueueRequest req;
    req.set_queue(kQueue);
    Event e = NewMessages(id_, phase_, &next_uid_, rng_, req.mutable_messages());
    v1::EnqueueResponse resp;
    grpc::ClientContext ctx;
    Deadline(&ctx, 3000);
    int64_t t = NowUs();
    grpc::Status s = stub_->Enqueue(&ctx, req, &resp);
    SetCall(&e, s, t);
    Observe(s);
    history_->Record(std::move(e));
    if (!s.ok()) SleepMs(20);
  }

  // Leases from queue; returns what it got (recorded).
  std::vector<Held> Lease(const std::string& queue, uint32_t max, int64_t visibility_ms,
                          int64_t wait_ms) {
    v1::LeaseRequest req;
    req.set_queue(queue);
    req.set_max_messages(max);
    server::ToDuration(visibility_ms, req.mutable_visibility_timeout());
    server::ToDuration(wait_ms, req.mutable_wait_time());
    v1::LeaseResponse resp;
    grpc::ClientContext ctx;
    Deadline(&ctx, 3000);
    Event e;
    e.set_type("lease");
    e.set_worker(id_);
    e.set_queue(queue);
    e.set_visibility_ms(visibility_ms);
    int64_t t = NowUs();
    grpc::Status s = stub_->Lease(&ctx, req, &resp);
    SetCall(&e, s, t);
    Observe(s);
    std::vector<Held> held;
    for (const v1::LeasedMessage& m : resp.messages()) {
      std::optional<std::string> uid = AddDelivery(m, &e);
      if (uid) held.push_back({queue, m.receipt(), *uid, m.delivery_count(), t});
    }
    history_->Record(std::move(e));
    if (!s.ok()) SleepMs(20);
    return held;
  }

  // Ack, Nack or ExtendLease of the given leases in one call.
  void Settle(const std::string& type, const std::vector<Held>& leases, int64_t ms = 0) {
    if (leases.empty()) return;
    const std::string& queue = leases[0].queue;
    grpc::ClientContext ctx;
    Deadline(&ctx, 3000);
    Event e;
    e.set_type(type);
    e.set_worker(id_);
    e.set_queue(queue);
    google::protobuf::RepeatedPtrField<v1::ReceiptOutcome> results;
    int64_t t = NowUs();
    grpc::Status s;
    if (type == "ack") {
      s = WithReceipts(&v1::QueueService::Stub::Ack, &ctx, v1::AckRequest(), leases, &results);
    } else if (type == "nack") {
      v1::NackRequest req;
      server::ToDuration(ms, req.mutable_delay());
      e.set_delay_ms(ms);
      s = WithReceipts(&v1::QueueService::Stub::Nack, &ctx, req, leases, &results);
    } else {
      v1::ExtendLeaseRequest req;
      server::ToDuration(ms, req.mutable_visibility_timeout());
      e.set_visibility_ms(ms);
      s = WithReceipts(&v1::QueueService::Stub::ExtendLease, &ctx, req, leases, &results);
    }
    SetCall(&e, s, t);
    Observe(s);
    for (size_t i = 0; i < leases.size(); ++i) {
      ReceiptResult* r = e.add_receipts();
      r->set_uid(leases[i].uid);
      r->set_delivery_count(leases[i].count);
      if (s.ok() && static_cast<int>(i) < results.size()) {
        r->set_outcome(OutcomeName(results[static_cast<int>(i)].outcome()));
      }
    }
    history_->Record(std::move(e));
  }

  // Ack, Nack or ExtendLease (method) of the leases' receipts, with req's other fields.
  template <typename Req, typename Resp>
  grpc::Status WithReceipts(grpc::Status (v1::QueueService::Stub::*method)(grpc::ClientContext*,
                                                                           const Req&, Resp*),
                            grpc::ClientContext* ctx, Req req, const std::vector<Held>& leases,
                            google::protobuf::RepeatedPtrField<v1::ReceiptOutcome>* results) {
    req.set_queue(leases[0].queue);
    for (const Held& h : leases) req.add_receipts(h.receipt);
    Resp resp;
    grpc::Status s = (stub_.get()->*method)(ctx, req, &resp);
    *results = resp.results();
    return s;
  }

  // One round of a consumer of the main queue: lease, then for each message do what workers
  // do (ack, nack with a delay, extend then ack, give up, be too slow), and now and then use a
  // stale receipt of a lease given up earlier.
  void Consume() {
    for (size_t i = 0; i < late_.size();) {
      if (late_[i].first > NowUs()) {
        ++i;
        continue;
      }
      Settle("ack", {late_[i].second});
      late_.erase(late_.begin() + static_cast<std::ptrdiff_t>(i));
    }
    int64_t vt = 1000 + static_cast<int64_t>(rng_() % 1001);
    for (const Held& h : Lease(kQueue, 1 + rng_() % 3, vt, 200)) {
      int r = static_cast<int>(rng_() % 100);
      if (r < 62) {
        if (rng_() % 2) SleepMs(static_cast<int64_t>(rng_() % 10));
        Settle("ack", {h});
      } else if (r < 72) {
        Settle("nack", {h}, rng_() % 4 == 0 ? 0 : 100 + static_cast<int64_t>(rng_() % 701));
      } else if (r < 80) {
        Settle("extend", {h}, 1000);
        Settle("ack", {h});
      } else if (r < 90) {
        Event e;
        e.set_type("abandon");
        e.set_worker(id_);
        e.set_queue(h.queue);
        e.set_invoke_us(NowUs());
        e.set_complete_us(e.invoke_us());
        ReceiptResult* rr = e.add_receipts();
        rr->set_uid(h.uid);
        rr->set_delivery_count(h.count);
        history_->Record(std::move(e));
        if (stale_.size() < 100) stale_.push_back(h);
      } else if (r < 93) {
        late_.push_back({NowUs() + (vt + 100) * 1000, h});  // acked after its lease ended
      } else {
        Settle("ack", {h});
      }
    }
    if (!stale_.empty() && rng_() % 100 < 8) {
      Held h = stale_.front();
      if (NowUs() - h.leased_at_us > 2'500'000) {
        stale_.erase(stale_.begin());
        int r = static_cast<int>(rng_() % 3);
        if (r == 0) Settle("nack", {h}, 0);
        if (r == 1) Settle("extend", {h}, 1000);
        if (r == 2) Settle("ack", {h});
      }
    }
  }

  // Reads the dead-letter queue (or, draining, any queue) and acks everything.
  size_t Drain(const std::string& queue, int64_t visibility_ms) {
    std::vector<Held> got = Lease(queue, 50, visibility_ms, 300);
    Settle("ack", got);
    return got.size();
  }

  v1::QueueService::Stub& stub() { return *stub_; }

 private:
  const int id_;
  const int phase_;
  const int port_;
  int failures_ = 0;
  std::unique_ptr<v1::QueueService::Stub> stub_;
  History* const history_;
  std::mt19937_64 rng_;
  uint64_t next_uid_ = 0;
  std::vector<Held> stale_;
  std::vector<std::pair<int64_t, Held>> late_;  // (when, lease) to ack too late
};

// What a stream's reader thread hands the worker: responses in arrival order, then the end.
template <typename Resp>
struct Inbox {
  std::mutex mu;
  std::condition_variable cv;
  std::deque<Resp> got;
  bool ended = false;
  int64_t ended_at = 0;

  // Reads rw until it ends, on its own thread.
  template <typename RW>
  std::thread Start(RW* rw) {
    return std::thread([this, rw] {
      Resp r;
      while (rw->Read(&r)) {
        std::lock_guard<std::mutex> lock(mu);
        got.push_back(std::move(r));
        cv.notify_one();
      }
      std::lock_guard<std::mutex> lock(mu);
      ended = true;
      ended_at = NowUs();
      cv.notify_one();
    });
  }
  // Waits until something arrived, the stream ended or until; takes what arrived. True once
  // the stream has ended.
  bool Take(int64_t until_us, std::deque<Resp>* out) {
    std::unique_lock<std::mutex> lock(mu);
    cv.wait_for(lock, std::chrono::microseconds(std::max<int64_t>(0, until_us - NowUs())),
                [&] { return !got.empty() || ended; });
    out->swap(got);
    got.clear();
    return ended;
  }
  // Waits up to ms for the end.
  bool WaitEnd(int64_t ms) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, std::chrono::milliseconds(ms), [&] { return ended; });
  }
};

// A producer over Publish streams: each stream lives a random while with up to 8 requests in
// flight; each request is recorded as an enqueue, answered (ok/fail by its code) or, when the
// stream ends first, unknown.
class StreamProducer {
 public:
  StreamProducer(int id, int port, History* history, uint64_t seed, int phase)
      : id_(id), phase_(phase), port_(port), history_(history), rng_(seed) {}

  void RunStream(const std::atomic<bool>& stop) {
    auto stub = v1::QueueService::NewStub(Connect(port_));
    grpc::ClientContext ctx;
    auto rw = stub->Publish(&ctx);
    Inbox<v1::PublishResponse> inbox;
    std::thread reader = inbox.Start(rw.get());
    std::deque<std::pair<uint64_t, Event>> pending;  // sequence, its enqueue
    const int64_t end_at = NowUs() + 300'000 + static_cast<int64_t>(rng_() % 2'200'000);
    int64_t next_send = NowUs();
    uint64_t sequence = 0;
    bool broken = false;
    auto answer = [&](const v1::PublishResponse& r) {
      if (pending.empty() || pending.front().first != r.sequence()) {
        std::fprintf(stderr, "spool-torture: Publish answered sequence %llu out of order\n",
                     static_cast<unsigned long long>(r.sequence()));
        return;
      }
      Event e = std::move(pending.front().second);
      pending.pop_front();
      grpc::Status s(static_cast<grpc::StatusCode>(r.code()), r.error());
      SetCall(&e, s, e.invoke_us());
      history_->Record(std::move(e));
    };
    while (!broken && !stop.load() && NowUs() < end_at) {
      if (pending.size() < 8 && NowUs() >= next_send) {
        v1::PublishRequest req;
        if (sequence == 0) req.set_queue(kQueue);
        req.set_sequence(++sequence);
        Event e = NewMessages(id_, phase_, &next_uid_, rng_, req.mutable_messages());
        e.set_detail("publish");
        e.set_invoke_us(NowUs());
        pending.emplace_back(sequence, std::move(e));
        if (!rw->Write(req)) broken = true;
        next_send = NowUs() + 5'000 + static_cast<int64_t>(rng_() % 11'000);
      }
      std::deque<v1::PublishResponse> got;
      broken = inbox.Take(std::min(next_send, end_at), &got) || broken;
      for (const auto& r : got) answer(r);
    }
    if (!broken) rw->WritesDone();  // the server answers what it accepted, then ends OK
    if (!inbox.WaitEnd(3000)) ctx.TryCancel();
    reader.join();
    std::deque<v1::PublishResponse> rest;
    inbox.Take(0, &rest);
    for (const auto& r : rest) answer(r);
    grpc::Status s = rw->Finish();
    for (auto& [seq, e] : pending) {
      // The stream ended before its answer: stored or not, nobody can say.
      e.set_complete_us(NowUs());
      e.set_outcome("unknown");
      e.set_code(spool::tools::StatusCodeName(s.error_code()));
      e.set_error("no answer before the stream ended: " + s.error_message());
      history_->Record(std::move(e));
    }
    if (!s.ok()) SleepMs(20);
  }

 private:
  const int id_, phase_, port_;
  History* const history_;
  std::mt19937_64 rng_;
  uint64_t next_uid_ = 0;
};

// A consumer over Subscribe streams. Each stream lives a random while (a crash may cut it
// short) with 1..16 messages outstanding and a 1 s visibility timeout that the server renews;
// some streams cap that at 1.5 s (max_lease_duration). Each message is acked on the stream,
// nacked on it, held past its visibility timeout and then acked (renewal keeps it), acked by
// a unary Ack, or kept until the stream ends (released). Recorded for the checker: pushes as
// leases of the stream, acks and nacks on the stream matched to their answers in order, and
// at the end an unknown lease over the stream's life (pushes lost in flight), a nack of
// unknown outcome of what it still held, and the stream_end.
class StreamConsumer {
 public:
  StreamConsumer(int id, int port, History* history, uint64_t seed)
      : id_(id),
        port_(port),
        history_(history),
        rng_(seed),
        unary_(id, port, history, seed ^ 0x5eed) {}

  void RunStream(const std::atomic<bool>& stop) {
    static std::atomic<uint64_t> streams{0};  // every stream of the run has its own id
    const uint64_t sid = ++streams;
    const int64_t vt_ms = 1000;
    const int64_t max_lease_ms = rng_() % 3 == 0 ? 1500 : 60'000;
    auto stub = v1::QueueService::NewStub(Connect(port_));
    grpc::ClientContext ctx;
    const int64_t open = NowUs();
    auto rw = stub->Subscribe(&ctx);
    Inbox<v1::SubscribeResponse> inbox;
    std::thread reader = inbox.Start(rw.get());
    v1::SubscribeRequest first;
    first.set_queue(kQueue);
    first.set_max_outstanding(1 + static_cast<uint32_t>(rng_() % 16));
    server::ToDuration(vt_ms, first.mutable_visibility_timeout());
    server::ToDuration(max_lease_ms, first.mutable_max_lease_duration());
    bool broken = !rw->Write(first);
    // What this stream holds: the lease, what to do with it and when.
    enum Action { kAck, kNack, kUnaryAck, kKeep };
    struct Out {
      Held h;
      Action action;
      int64_t at;
    };
    std::vector<Out> held;
    std::deque<Event> pending;  // acks and nacks written, in order, not yet answered
    const int64_t end_at = open + 300'000 + static_cast<int64_t>(rng_() % 2'500'000);
    auto handle = [&](const v1::SubscribeResponse& r) {
      if (r.ack_results_size() + r.nack_results_size() > 0) {
        if (pending.empty()) {
          std::fprintf(stderr, "spool-torture: Subscribe answered a request never sent\n");
        } else {
          Event e = std::move(pending.front());
          pending.pop_front();
          const auto& results = e.type() == "ack" ? r.ack_results() : r.nack_results();
          SetCall(&e, grpc::Status::OK, e.invoke_us());
          for (int i = 0; i < e.receipts_size(); ++i) {
            if (i < results.size()) {
              e.mutable_receipts(i)->set_outcome(OutcomeName(results[i].outcome()));
            }
          }
          history_->Record(std::move(e));
        }
      }
      if (r.messages_size() == 0) return;
      Event e;
      e.set_type("lease");
      e.set_worker(id_);
      e.set_queue(kQueue);
      e.set_stream(sid);
      e.set_visibility_ms(vt_ms);
      e.set_max_lease_ms(max_lease_ms);
      SetCall(&e, grpc::Status::OK, open);
      for (const v1::LeasedMessage& m : r.messages()) {
        std::optional<std::string> uid = AddDelivery(m, &e);
        if (!uid) continue;
        int x = static_cast<int>(rng_() % 100);
        Action a = x < 55 ? kAck : x < 65 ? kNack : x < 75 ? kAck : x < 80 ? kUnaryAck : kKeep;
        int64_t at =
            NowUs() + (x >= 65 && x < 75 ? 1'200'000 + static_cast<int64_t>(rng_() % 1'000'000)
                                         : static_cast<int64_t>(rng_() % 5'000));
        held.push_back({{kQueue, m.receipt(), *uid, m.delivery_count(), open}, a, at});
      }
      history_->Record(std::move(e));
    };
    auto settle = [&](const char* type, const Out& o, int64_t delay_ms) {
      v1::SubscribeRequest req;
      Event e;
      e.set_type(type);
      e.set_worker(id_);
      e.set_queue(kQueue);
      e.set_stream(sid);
      ReceiptResult* rr = e.add_receipts();
      rr->set_uid(o.h.uid);
      rr->set_delivery_count(o.h.count);
      if (std::string(type) == "ack") {
        req.add_ack(o.h.receipt);
      } else {
        req.add_nack(o.h.receipt);
        server::ToDuration(delay_ms, req.mutable_nack_delay());
        e.set_delay_ms(delay_ms);
      }
      e.set_invoke_us(NowUs());
      pending.push_back(std::move(e));
      if (!rw->Write(req)) broken = true;
    };
    while (!broken && !stop.load() && NowUs() < end_at) {
      int64_t wake = std::min(end_at, NowUs() + 50'000);
      for (const Out& o : held) {
        if (o.action != kKeep) wake = std::min(wake, o.at);
      }
      std::deque<v1::SubscribeResponse> got;
      broken = inbox.Take(wake, &got);
      for (const auto& r : got) handle(r);
      int64_t now = NowUs();
      for (size_t i = 0; !broken && i < held.size();) {
        const Out o = held[i];
        if (o.action == kKeep || o.at > now) {
          ++i;
          continue;
        }
        held.erase(held.begin() + static_cast<std::ptrdiff_t>(i));
        if (o.action == kAck) settle("ack", o, 0);
        if (o.action == kNack) {
          settle("nack", o, rng_() % 4 == 0 ? 0 : 100 + static_cast<int64_t>(rng_() % 701));
        }
        if (o.action == kUnaryAck) unary_.Settle("ack", {o.h});
      }
    }
    // The end: half-close (the server answers what it has, releases the rest, ends OK) or
    // cancel, unless a crash ended it already.
    int64_t end_invoke = NowUs();
    std::string how = "broken";
    if (!broken && rng_() % 2 == 0) {
      how = "half-close";
      rw->WritesDone();
    } else if (!broken) {
      how = "cancel";
      ctx.TryCancel();
    }
    if (!inbox.WaitEnd(3000)) ctx.TryCancel();
    reader.join();
    if (broken) end_invoke = std::min(end_invoke, inbox.ended_at);
    std::deque<v1::SubscribeResponse> rest;
    inbox.Take(0, &rest);
    for (const auto& r : rest) handle(r);
    grpc::Status s = rw->Finish();
    int64_t end = NowUs();
    for (Event& e : pending) {
      e.set_complete_us(end);
      e.set_outcome("unknown");
      e.set_code(spool::tools::StatusCodeName(s.error_code()));
      e.set_error("no answer before the stream ended");
      history_->Record(std::move(e));
    }
    // Pushes can have been lost in flight unless the credit was used up by what this stream
    // holds: then the server could lease it nothing more (no lease can end under a 60 s cap).
    const bool credit_full = held.size() >= first.max_outstanding() && pending.empty() &&
                             max_lease_ms * 1000 > end - open;
    Event lost;
    lost.set_type("lease");
    lost.set_worker(id_);
    lost.set_queue(kQueue);
    lost.set_stream(sid);
    lost.set_visibility_ms(vt_ms);
    lost.set_max_lease_ms(max_lease_ms);
    lost.set_invoke_us(open);
    lost.set_complete_us(end);
    lost.set_outcome("unknown");
    lost.set_detail("pushes that may have been lost in flight");
    if (!credit_full) history_->Record(std::move(lost));
    if (!held.empty()) {
      Event release;
      release.set_type("nack");
      release.set_worker(id_);
      release.set_queue(kQueue);
      release.set_stream(sid);
      release.set_invoke_us(end_invoke);
      release.set_complete_us(end);
      release.set_outcome("unknown");
      release.set_detail("released at the stream's end");
      for (const Out& o : held) {
        ReceiptResult* rr = release.add_receipts();
        rr->set_uid(o.h.uid);
        rr->set_delivery_count(o.h.count);
      }
      history_->Record(std::move(release));
    }
    Event se;
    se.set_type("stream_end");
    se.set_worker(id_);
    se.set_queue(kQueue);
    se.set_stream(sid);
    se.set_invoke_us(end_invoke);
    se.set_complete_us(end);
    se.set_code(spool::tools::StatusCodeName(s.error_code()));
    se.set_detail(how + (s.ok() ? "" : ": " + s.error_message()));
    history_->Record(std::move(se));
    if (how == "broken") SleepMs(20);
  }

 private:
  const int id_, port_;
  History* const history_;
  std::mt19937_64 rng_;
  Worker unary_;
};

// Runs one spoold at a time in its own directory.
class Spoold {
 public:
  Spoold(const Flags& flags, History* history) : flags_(flags), history_(history) {}

  // Starts it (with a named crash point when crash_at is set) and waits until it serves and
  // the queues exist. False when it died on the way (recorded as a crash).
  bool Start(const std::string& crash_at, const std::string& faults = "") {
    std::string port_file = flags_.dir + "/port";
    std::filesystem::remove(port_file);
    std::vector<std::string> args = {flags_.spoold,
                                     "--listen=127.0.0.1:" + std::to_string(port_),
                                     "--data-dir=" + flags_.dir + "/data",
                                     "--port-file=" + port_file,
                                     "--durability=sync",
                                     "--test-faults=unsynced-loss" + faults};
    if (!flags_.mutation.empty()) args.push_back("--test-mutation=" + flags_.mutation);
    if (!crash_at.empty()) args.push_back("--test-crash-at=" + crash_at);
    Event start;
    start.set_type("start");
    start.set_worker(-1);
    start.set_detail((crash_at.empty() ? "" : "--test-crash-at=" + crash_at) +
                     (faults.empty() ? "" : " --test-faults=unsynced-loss" + faults));
    start.set_invoke_us(NowUs());
    start.set_complete_us(start.invoke_us());
    history_->Record(start);
    pid_ = fork();
    if (pid_ == 0) {
      std::string log = flags_.dir + "/spoold.log";
      FILE* f = std::freopen(log.c_str(), "a", stderr);
      (void)f;
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      std::perror("execv spoold");
      _exit(127);
    }
    int64_t until = NowUs() + 15'000'000;
    while (NowUs() < until) {
      if (Exited()) {
        RecordCrash(NowUs(), "died while starting");
        return false;
      }
      std::ifstream in(port_file);
      int port = 0;
      if (in >> port && port > 0) {
        port_ = port;
        break;
      }
      SleepMs(5);
    }
    if (port_ == 0) return Fail("spoold did not write its port file within 15 s");
    auto channel = Connect(port_);
    channel_ = channel;
    auto health = grpc::health::v1::Health::NewStub(channel);
    while (NowUs() < until) {
      grpc::ClientContext ctx;
      Deadline(&ctx, 300);
      grpc::health::v1::HealthCheckRequest req;
      grpc::health::v1::HealthCheckResponse resp;
      if (health->Check(&ctx, req, &resp).ok() &&
          resp.status() == grpc::health::v1::HealthCheckResponse::SERVING) {
        break;
      }
      if (Exited()) {
        RecordCrash(NowUs(), "died while starting");
        return false;
      }
      SleepMs(5);
    }
    Event ready;
    ready.set_type("ready");
    ready.set_worker(-1);
    ready.set_invoke_us(NowUs());
    ready.set_complete_us(ready.invoke_us());
    // The queues, idempotently: a store that lost them (a mutation) gets them back.
    auto stub = v1::QueueService::NewStub(channel);
    for (const char* name : {kDeadLetters, kQueue}) {
      v1::CreateQueueRequest req;
      req.set_name(name);
      if (std::string(name) == kQueue) {
        req.mutable_config()->mutable_visibility_timeout()->set_seconds(2);
        req.mutable_config()->set_max_deliveries(kMaxDeliveries);
        req.mutable_config()->set_dead_letter_queue(kDeadLetters);
      } else {
        req.mutable_config()->mutable_visibility_timeout()->set_seconds(5);
      }
      v1::Queue q;
      grpc::ClientContext ctx;
      Deadline(&ctx, 3000);
      grpc::Status s = stub->CreateQueue(&ctx, req, &q);
      if (!s.ok()) {
        // A crash point (or a storage fault) on this CreateQueue's own write kills spoold as
        // it answers: give the exit a moment to be seen. A spoold that is still there but
        // cannot be reached is killed; either way this is a crash, recorded, and the caller
        // starts it again. Only an answer that makes no sense for this call ends the run.
        int64_t until = NowUs() + 2'000'000;
        while (NowUs() < until) {
          if (Exited()) {
            RecordCrash(NowUs(), "died while starting (" + std::string(name) + ")");
            return false;
          }
          SleepMs(5);
        }
        if (s.error_code() == grpc::StatusCode::UNAVAILABLE ||
            s.error_code() == grpc::StatusCode::DEADLINE_EXCEEDED ||
            s.error_code() == grpc::StatusCode::INTERNAL) {
          Kill("kill -9: creating queue " + std::string(name) +
               " failed while starting: " + s.error_message());
          return false;
        }
        return Fail("cannot create queue " + std::string(name) + ": " + s.error_message());
      }
      if (std::string(name) == kQueue) ready.set_ready_messages(q.stats().ready());
    }
    history_->Record(ready);
    if (!configured_) {
      Event config;
      config.set_type("config");
      config.set_worker(-1);
      config.set_queue(kQueue);
      config.set_max_deliveries(kMaxDeliveries);
      config.set_dead_letter_queue(kDeadLetters);
      history_->Record(config);
      configured_ = true;
    }
    return true;
  }

  // kill -9 now; recorded with when it was sent and when the process was gone.
  void Kill(const std::string& why) {
    int64_t t = NowUs();
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status;
      waitpid(pid_, &status, 0);
      pid_ = -1;
    }
    RecordCrash(t, why);
  }

  // Waits up to ms for it to die by itself (a named crash point); true if it did.
  bool WaitExit(int64_t ms) {
    int64_t until = NowUs() + ms * 1000;
    while (NowUs() < until) {
      if (Exited()) {
        RecordCrash(NowUs(), "crash point reached");
        return true;
      }
      SleepMs(2);
    }
    return false;
  }

  // SIGTERM, then up to 15 s for a clean exit. Its exit status, or -1.
  int Stop() {
    if (pid_ <= 0) return -1;
    ::kill(pid_, SIGTERM);
    int64_t until = NowUs() + 15'000'000;
    int status = 0;
    while (NowUs() < until) {
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
      }
      SleepMs(10);
    }
    ::kill(pid_, SIGKILL);
    waitpid(pid_, &status, 0);
    pid_ = -1;
    return -1;
  }

  bool Exited() {
    if (pid_ <= 0) return true;
    int status;
    if (waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return true;
    }
    return false;
  }

  int port() const { return port_; }
  const std::string& error() const { return error_; }

  // A spoold started with a storage fault: waits up to ms for health to say NOT_SERVING, then
  // checks that a write fails with want (and is recorded, so the checker holds it to that) and
  // that a read still works. Returns what went wrong, or "" (and sets *fired).
  std::string CheckFault(grpc::StatusCode want, int64_t ms, bool* fired) {
    *fired = false;
    auto health = grpc::health::v1::Health::NewStub(channel_);
    int64_t start = NowUs(), until = start + ms * 1000;
    bool serving = true;
    while (serving && NowUs() < until && !Exited()) {
      grpc::ClientContext ctx;
      Deadline(&ctx, 300);
      grpc::health::v1::HealthCheckRequest req;
      grpc::health::v1::HealthCheckResponse resp;
      grpc::Status s = health->Check(&ctx, req, &resp);
      serving = !s.ok() || resp.status() == grpc::health::v1::HealthCheckResponse::SERVING;
      if (serving) SleepMs(20);
    }
    if (serving) return "";  // the fault did not fire while it was up
    *fired = true;
    auto stub = v1::QueueService::NewStub(channel_);
    Event e;
    e.set_type("enqueue");
    e.set_worker(-1);
    e.set_queue(kQueue);
    std::string uid = "f-" + std::to_string(next_probe_++);
    e.add_uids(uid);
    v1::EnqueueRequest req;
    req.set_queue(kQueue);
    req.add_messages()->set_payload(MakePayload(uid, 32, static_cast<uint64_t>(next_probe_)));
    v1::EnqueueResponse resp;
    grpc::ClientContext ctx;
    Deadline(&ctx, 3000);
    int64_t t = NowUs();
    grpc::Status s = stub->Enqueue(&ctx, req, &resp);
    SetCall(&e, s, t);
    history_->Record(e);
    std::string problem;
    if (s.error_code() != want) {
      problem = std::string("after the fault an Enqueue returned ") +
                spool::tools::StatusCodeName(s.error_code()) + ", not " +
                spool::tools::StatusCodeName(want);
    }
    v1::GetQueueRequest get;
    get.set_name(kQueue);
    v1::Queue q;
    grpc::ClientContext ctx2;
    Deadline(&ctx2, 3000);
    grpc::Status r = stub->GetQueue(&ctx2, get, &q);
    if (!r.ok()) {
      problem += std::string(problem.empty() ? "" : "; ") +
                 "after the fault GetQueue failed: " + r.error_message();
    }
    return problem;
  }

  bool Fail(std::string error) {
    error_ = std::move(error);
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int status;
      waitpid(pid_, &status, 0);
      pid_ = -1;
    }
    return false;
  }

 private:
  void RecordCrash(int64_t sent, const std::string& why) {
    Event e;
    e.set_type("crash");
    e.set_worker(-1);
    e.set_invoke_us(sent);
    e.set_complete_us(NowUs());
    e.set_detail(why);
    history_->Record(std::move(e));
  }

  const Flags& flags_;
  History* const history_;
  pid_t pid_ = -1;
  int port_ = 0;
  int next_probe_ = 0;
  std::shared_ptr<grpc::Channel> channel_;
  bool configured_ = false;
  std::string error_;
};

// Producers, consumers and the dead-letter reader, on threads, until Stop().
class Load {
 public:
  Load(const Flags& flags, int port, History* history, uint64_t seed, int phase) {
    for (int i = 0; i < flags.producers; ++i) {
      threads_.emplace_back([this, i, port, history, seed, phase] {
        Worker w(i, port, history, seed + static_cast<uint64_t>(i), phase);
        std::mt19937 pause(static_cast<uint32_t>(seed + static_cast<uint64_t>(i)));
        while (!stop_.load()) {
          w.Produce();
          SleepMs(5 + pause() % 11);
        }
      });
    }
    for (int i = 0; i < flags.consumers; ++i) {
      threads_.emplace_back([this, i, port, history, seed] {
        Worker w(10 + i, port, history, seed + 10 + static_cast<uint64_t>(i));
        while (!stop_.load()) w.Consume();
      });
    }
    for (int i = 0; i < flags.stream_producers; ++i) {
      threads_.emplace_back([this, i, port, history, seed, phase] {
        StreamProducer p(30 + i, port, history, seed + 30 + static_cast<uint64_t>(i), phase);
        while (!stop_.load()) p.RunStream(stop_);
      });
    }
    for (int i = 0; i < flags.stream_consumers; ++i) {
      threads_.emplace_back([this, i, port, history, seed] {
        StreamConsumer c(40 + i, port, history, seed + 40 + static_cast<uint64_t>(i));
        while (!stop_.load()) c.RunStream(stop_);
      });
    }
    threads_.emplace_back([this, port, history, seed] {
      Worker w(20, port, history, seed + 20);
      while (!stop_.load()) w.Drain(kDeadLetters, 5000);
    });
  }
  void Stop() {
    stop_.store(true);
    for (auto& t : threads_) t.join();
    threads_.clear();
  }
  ~Load() {
    if (!threads_.empty()) Stop();
  }

 private:
  std::atomic<bool> stop_{false};
  std::vector<std::thread> threads_;
};

// After the load stops: lease and ack everything left in both queues. True when both are
// empty; false at the time bound (the checker then reports what was not delivered).
bool Drain(int port, History* history, uint64_t seed) {
  std::atomic<bool> stop{false};
  std::vector<std::thread> drainers;
  for (int i = 0; i < 2; ++i) {
    drainers.emplace_back([&, i] {
      Worker w(100 + i, port, history, seed + static_cast<uint64_t>(i));
      while (!stop.load()) w.Drain(i == 0 ? kQueue : kDeadLetters, 10'000);
    });
  }
  auto stub = v1::QueueService::NewStub(Connect(port));
  bool empty = false;
  for (int64_t until = NowUs() + 30'000'000; !empty && NowUs() < until; SleepMs(100)) {
    uint64_t left = 0;
    for (const char* name : {kQueue, kDeadLetters}) {
      v1::GetQueueRequest req;
      req.set_name(name);
      v1::Queue q;
      grpc::ClientContext ctx;
      Deadline(&ctx, 3000);
      left += stub->GetQueue(&ctx, req, &q).ok() ? q.stats().total() : 1;
    }
    empty = left == 0;
  }
  stop.store(true);
  for (auto& t : drainers) t.join();
  return empty;
}

// Whether the report has a violation of one of rules (comma-separated).
bool Reports(const Report& report, std::string_view rules) {
  for (const Violation& v : report.violations) {
    for (std::string_view rest = rules; !rest.empty();) {
      std::string_view rule = rest.substr(0, rest.find(','));
      rest.remove_prefix(std::min(rest.size(), rule.size() + 1));
      if (v.rule == rule) return true;
    }
  }
  return false;
}

int Run(const Flags& flags) {
  std::filesystem::create_directories(flags.dir);
  History history(flags.dir + "/history.jsonl");
  if (!history.good()) {
    std::fprintf(stderr, "spool-torture: cannot write %s/history.jsonl\n", flags.dir.c_str());
    return 2;
  }
  std::printf("spool-torture: %d cycles, seed %llu, directory %s%s%s\n", flags.cycles,
              static_cast<unsigned long long>(flags.seed), flags.dir.c_str(),
              flags.mutation.empty() ? "" : ", MUTATION ", flags.mutation.c_str());
  std::fflush(stdout);
  std::mt19937_64 rng(flags.seed);
  Spoold spoold(flags, &history);
  const int64_t deadline = NowUs() + int64_t{flags.max_seconds} * 1'000'000;
  const int phase = flags.check_every > 0 ? flags.check_every : flags.cycles;
  auto start_clean = [&]() {
    for (int attempt = 0; attempt < 3; ++attempt) {
      if (spoold.Start("")) return true;
      if (!spoold.error().empty()) break;
    }
    std::fprintf(stderr, "spool-torture: %s\n",
                 spoold.error().empty() ? "spoold keeps dying" : spoold.error().c_str());
    return false;
  };
  if (!start_clean()) return 2;
  Report report;
  int cycle = 0;
  std::unique_ptr<Load> load;
  std::string fault;  // the storage fault of the spoold now running: "", "eio" or "enospc"
  std::vector<std::string> fault_problems;
  int faults_started = 0;
  std::map<std::string, int> faults_fired;
  while (cycle < flags.cycles) {
    if (!load) load = std::make_unique<Load>(flags, spoold.port(), &history, rng(), cycle / phase);
    // One cycle: up for a random while, then killed (at random, or at a crash point it was
    // started with). With a storage fault, until the fault has shown and been checked.
    int64_t up = flags.uptime_min_ms +
                 static_cast<int64_t>(
                     rng() % static_cast<uint64_t>(flags.uptime_max_ms - flags.uptime_min_ms + 1));
    if (!fault.empty()) {
      bool fired = false;
      std::string problem = spoold.CheckFault(
          fault == "eio" ? grpc::StatusCode::UNAVAILABLE : grpc::StatusCode::RESOURCE_EXHAUSTED,
          up + 3000, &fired);
      faults_fired[fault] += fired;
      if (!problem.empty()) fault_problems.push_back(fault + ": " + problem);
      if (!spoold.Exited()) spoold.Kill("kill -9 after a storage fault (" + fault + ")");
    } else if (!spoold.WaitExit(up)) {
      spoold.Kill("kill -9 at a random moment");
    }
    fault.clear();
    ++cycle;
    if (NowUs() > deadline) {
      std::fprintf(stderr, "spool-torture: time bound of %d s reached after %d cycles\n",
                   flags.max_seconds, cycle);
      load->Stop();
      return 2;
    }
    bool phase_end = cycle % phase == 0 || cycle == flags.cycles;
    if (!phase_end) {
      std::string crash_at;
      if (std::uniform_real_distribution<double>(0, 1)(rng) < flags.crash_point_share) {
        static const char* const kPoints[] = {"before-write", "after-write", "mid-replies"};
        crash_at = !flags.crash_at.empty()
                       ? flags.crash_at
                       : std::string(kPoints[rng() % 3]) + ":" + std::to_string(1 + rng() % 300);
      }
      std::string faults;
      if (crash_at.empty() &&
          std::uniform_real_distribution<double>(0, 1)(rng) < flags.storage_fault_share) {
        fault = faults_started++ % 2 == 0 ? "eio" : "enospc";
        faults = fault == "eio" ? ",eio-on-wal-sync-after=" + std::to_string(20 + rng() % 300)
                                : ",enospc-after-bytes=" + std::to_string(50'000 + rng() % 500'000);
      }
      bool started = spoold.Start(crash_at, faults);
      if (!started) fault.clear();
      for (int attempt = 0; !started && spoold.error().empty() && attempt < 5; ++attempt) {
        started = spoold.Start("");
      }
      if (!started && spoold.error().empty()) spoold.Fail("spoold keeps dying while starting");
      if (!started) {
        std::fprintf(stderr, "spool-torture: %s\n", spoold.error().c_str());
        return 2;
      }
      continue;
    }
    // End of a phase: a clean start, the load stops, everything is drained and checked.
    if (!start_clean()) return 2;
    load->Stop();
    load.reset();
    Event stop;
    stop.set_type("load_stop");
    stop.set_worker(-1);
    stop.set_invoke_us(NowUs());
    stop.set_complete_us(stop.invoke_us());
    history.Record(stop);
    bool drained = Drain(spoold.port(), &history, rng());
    Event end;
    end.set_type("drain_end");
    end.set_worker(-1);
    end.set_invoke_us(NowUs());
    end.set_complete_us(end.invoke_us());
    end.set_detail(drained ? "both queues empty" : "time bound reached");
    history.Record(end);
    report = Check(history.Snapshot(), CheckOptions());
    for (const std::string& p : fault_problems) report.violations.push_back({"F1", p});
    std::printf("after %d cycles: %zu violations\n", cycle, report.violations.size());
    std::fflush(stdout);
    // Stop at the first violation; looking for a given rule (--expect), at the first check
    // that reports it.
    if (!report.ok() && (flags.expect.empty() || Reports(report, flags.expect))) break;
    if (cycle < flags.cycles) spoold.Kill("kill -9 after a drain");
    if (cycle < flags.cycles && !start_clean()) return 2;
  }
  if (load) load->Stop();
  int exit_status = spoold.Stop();
  std::printf("%s", report.Format().c_str());
  std::printf(
      "cycles: %d; storage faults that fired and were checked: EIO %d, ENOSPC %d; "
      "history: %s/history.jsonl; spoold's last exit status: %d\n",
      cycle, faults_fired["eio"], faults_fired["enospc"], flags.dir.c_str(), exit_status);
  if (flags.storage_fault_share > 0 && report.ok() &&
      (faults_fired["eio"] == 0 || faults_fired["enospc"] == 0)) {
    std::printf("storage faults were asked for, but not both kinds fired: run more cycles\n");
    return 2;
  }
  if (!flags.expect.empty()) {
    bool found = Reports(report, flags.expect);
    std::printf("expected a %s violation: %s\n", flags.expect.c_str(),
                found ? "found (the checker caught the mutation)" : "NOT FOUND");
    return found ? 0 : 1;
  }
  return report.ok() ? 0 : 1;
}

}  // namespace
}  // namespace spool::torture

int main(int argc, char** argv) {
  spool::torture::Flags flags;
  CLI::App app{
      "spool-torture: kill -9 spoold again and again under load, on a file system that loses "
      "what was not fsynced, and check the history of every call against Spool's promises."};
  app.footer(
      "Examples:\n"
      "  spool-torture --cycles 30                          # CI mode, about a minute\n"
      "  spool-torture --cycles 500                         # long mode\n"
      "  spool-torture --mutation reply-before-fsync --check-every 5 --expect S1");
  app.add_option("--spoold", flags.spoold, "spoold binary (default: next to this one)");
  app.add_option("--dir", flags.dir,
                 "Work directory: data, spoold.log, history.jsonl "
                 "(default: a new one under /tmp)");
  app.add_option("--cycles", flags.cycles, "Kill cycles")
      ->check(CLI::Range(1, 100'000))
      ->capture_default_str();
  app.add_option("--check-every", flags.check_every,
                 "Stop the load, drain and check every N cycles; stop at the first violation "
                 "(0: once, at the end)")
      ->check(CLI::Range(0, 100'000));
  app.add_option("--seed", flags.seed, "Random seed (default: from the time; printed)");
  app.add_option("--producers", flags.producers)->check(CLI::Range(1, 64))->capture_default_str();
  app.add_option("--consumers", flags.consumers)->check(CLI::Range(1, 64))->capture_default_str();
  app.add_option("--stream-producers", flags.stream_producers, "Producers over Publish streams")
      ->check(CLI::Range(0, 64))
      ->capture_default_str();
  app.add_option("--stream-consumers", flags.stream_consumers,
                 "Consumers over Subscribe streams (renewed leases, acks on the stream, "
                 "releases at the stream's end)")
      ->check(CLI::Range(0, 64))
      ->capture_default_str();
  app.add_option("--mutation", flags.mutation,
                 "Run spoold with this deliberate bug (spoold --test-mutation)");
  app.add_option(
      "--expect", flags.expect,
      "Succeed only if the checker reports a violation of one of these rules (e.g. S1,L1)");
  app.add_option("--crash-point-share", flags.crash_point_share,
                 "Share of cycles that die at a named point of the commit path")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--crash-at", flags.crash_at,
                 "Crash-point cycles die at this POINT:N (spoold --test-crash-at) instead of a "
                 "random one; before-write:1 dies on the start's own CreateQueue");
  app.add_option("--storage-fault-share", flags.storage_fault_share,
                 "Share of cycles whose spoold gets EIO on a log sync or a full disk (ENOSPC) "
                 "at a random point; the harness checks writes fail with the right code, reads "
                 "still work and health says NOT_SERVING, then kills and restarts it")
      ->check(CLI::Range(0.0, 1.0))
      ->capture_default_str();
  app.add_option("--uptime-min-ms", flags.uptime_min_ms)
      ->check(CLI::Range(50, 600'000))
      ->capture_default_str();
  app.add_option("--uptime-max-ms", flags.uptime_max_ms)
      ->check(CLI::Range(50, 600'000))
      ->capture_default_str();
  app.add_option("--max-seconds", flags.max_seconds, "Give up (exit 2) after this long")
      ->check(CLI::Range(10, 86'400))
      ->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  if (flags.uptime_max_ms < flags.uptime_min_ms) {
    std::fprintf(stderr, "spool-torture: --uptime-max-ms must be at least --uptime-min-ms\n");
    return 2;
  }
  if (flags.spoold.empty()) {
    flags.spoold = (std::filesystem::canonical("/proc/self/exe").parent_path() / "spoold").string();
  }
  if (flags.seed == 0) flags.seed = static_cast<uint64_t>(spool::torture::NowUs());
  if (flags.dir.empty()) {
    char tmpl[] = "/tmp/spool-torture-XXXXXX";
    if (mkdtemp(tmpl) == nullptr) {
      std::perror("spool-torture: mkdtemp");
      return 2;
    }
    flags.dir = tmpl;
  }
  signal(SIGPIPE, SIG_IGN);
  return spool::torture::Run(flags);
}
