// spool-bench: load and latency figures for Spool, each beside a ceiling measured in the same
// run. Over gRPC it drives a running spoold with gRPC's callback client, keeping --inflight
// calls outstanding per worker, and first measures the gRPC ceiling (grpc.health.v1 Check at
// the same concurrency). With --engine-dir it drives the engine in process, and first measures
// the storage ceiling (raw RocksDB sync WriteBatches of the same payload bytes). Every run is
// bounded by --messages and --duration and stops by itself.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <sys/resource.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <map>
#include <mutex>
#include <sstream>
#include <thread>

#include "absl/synchronization/mutex.h"
#include "engine/engine.h"
#include "engine/sync.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "rocksdb/db.h"
#include "spool/v1/queue.grpc.pb.h"
#include "tools/bench/histogram.h"
#include "tools/spoolctl/format.h"
#include "tools/status_names.h"

namespace spool::bench {
namespace {

using Clock = std::chrono::steady_clock;

int64_t NowNs() { return Clock::now().time_since_epoch().count(); }

// Payload bytes that do not compress, and differ from message to message (a block compressor
// would otherwise find each message repeated in the next), so that disk figures are honest:
// the n-th payload is a slice of a fixed random pool at a pseudo-random offset.
const std::string& PayloadPool() {
  static const std::string pool = [] {
    std::string p(4 << 20, '\0');
    uint64_t x = 0x9e3779b97f4a7c15;
    for (char& c : p) {
      x ^= x << 13;
      x ^= x >> 7;
      x ^= x << 17;
      c = static_cast<char>(x);
    }
    return p;
  }();
  return pool;
}

std::string Payload(size_t n, uint64_t k = 0) {
  const std::string& pool = PayloadPool();
  size_t room = pool.size() - std::min(n, pool.size());
  return pool.substr(room ? (k * 0x9e3779b97f4a7c15ull >> 20) % room : 0, n);
}

std::atomic<uint64_t> g_payloads{0};

// --dedup-ids: the k-th message's dedup id, 32 hex digits in UUID form, distinct for every k (the
// first half is a bijection of k) and in no order, as ids made by clients are.
std::string DedupId(uint64_t k) {
  auto mix = [](uint64_t z) {  // SplitMix64's finaliser: a bijection of 64-bit integers
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
  };
  uint64_t a = mix(k), b = mix(k ^ 0x5bd1e9955bd1e995ull);
  char out[37];
  std::snprintf(
      out, sizeof out, "%08llx-%04llx-%04llx-%04llx-%012llx",
      static_cast<unsigned long long>(a >> 32), static_cast<unsigned long long>((a >> 16) & 0xffff),
      static_cast<unsigned long long>(a & 0xffff), static_cast<unsigned long long>(b >> 48),
      static_cast<unsigned long long>(b & 0xffffffffffffull));
  return out;
}

struct Config {
  std::string server = "127.0.0.1:7420";
  std::string queue = "bench";
  std::string workload = "produce";
  int producers = 4, consumers = 4, inflight = 1, batch = 1, channels = 4;
  int payload_bytes = 256;
  bool dedup_ids = false;  // produce: a distinct dedup id on every message
  uint64_t messages = 0;   // 0: use duration only
  int64_t duration_ms = 10'000;
  double rate = 1000;            // e2e: messages per second, open loop
  uint32_t max_outstanding = 1;  // subscribe, e2e-stream: the Subscribe credit of each stream
  bool json = false;
  bool baseline = true;  // measure the ceiling first
  int server_pid = 0;
  std::string engine_dir;   // in-process engine instead of gRPC
  std::string rocksdb_dir;  // gRPC workloads: also measure raw RocksDB here, first
  std::string fsync_dir;    // e2e: also measure the disk's write + fdatasync latency here, first
  bool engine_async = false;
};

// What one phase measured.
struct Result {
  std::string name;
  double seconds = 0;
  uint64_t messages = 0, calls = 0;
  uint64_t duplicates = 0;  // produce: enqueues the queue's dedup index turned away
  std::map<std::string, Histogram> latency;  // per RPC kind, and "e2e"
  std::map<std::string, uint64_t> errors;
  double client_cpu = 0, server_cpu = 0;
  double rate() const { return seconds > 0 ? static_cast<double>(messages) / seconds : 0; }
  double call_rate() const { return seconds > 0 ? static_cast<double>(calls) / seconds : 0; }
};

double ClientCpu() {
  rusage u;
  getrusage(RUSAGE_SELF, &u);
  return static_cast<double>(u.ru_utime.tv_sec + u.ru_stime.tv_sec) +
         static_cast<double>(u.ru_utime.tv_usec + u.ru_stime.tv_usec) / 1e6;
}

double ProcessCpu(int pid) {
  if (pid <= 0) return 0;
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string stat((std::istreambuf_iterator<char>(in)), {});
  size_t close = stat.rfind(')');
  if (close == std::string::npos) return 0;
  std::istringstream rest(stat.substr(close + 2));
  std::string field;
  double utime = 0, stime = 0;
  for (int i = 3; rest >> field; ++i) {
    if (i == 14) utime = std::stod(field);
    if (i == 15) {
      stime = std::stod(field);
      break;
    }
  }
  return (utime + stime) / static_cast<double>(sysconf(_SC_CLK_TCK));
}

// Per-thread recording, merged at the end; each recorder is touched by one thread at a time.
class Recorder {
 public:
  void Latency(const std::string& kind, int64_t ns) {
    std::lock_guard<std::mutex> l(mu_);
    latency_[kind].Record(ns);
  }
  void Error(const std::string& what) {
    std::lock_guard<std::mutex> l(mu_);
    ++errors_[what];
  }
  void Into(Result* r) {
    std::lock_guard<std::mutex> l(mu_);
    for (auto& [k, h] : latency_) r->latency[k].Merge(h);
    for (auto& [k, n] : errors_) r->errors[k] += n;
  }

 private:
  std::mutex mu_;
  std::map<std::string, Histogram> latency_;
  std::map<std::string, uint64_t> errors_;
};

std::string CodeName(const grpc::Status& s) { return spool::tools::StatusCodeName(s.error_code()); }

// Counts down to the end of a phase: a message budget, a deadline, or both.
class Budget {
 public:
  Budget(uint64_t messages, int64_t duration_ms)
      : messages_(messages), deadline_(Clock::now() + std::chrono::milliseconds(duration_ms)) {}
  // Takes up to n messages from the budget; 0 when the phase is over.
  uint64_t Take(uint64_t n) {
    if (Clock::now() >= deadline_) return 0;
    if (messages_ == 0) return n;
    uint64_t before = taken_.fetch_add(n);
    if (before >= messages_) return 0;
    return std::min(n, messages_ - before);
  }
  bool Over() const {
    return Clock::now() >= deadline_ || (messages_ > 0 && taken_.load() >= messages_);
  }

 private:
  const uint64_t messages_;
  const Clock::time_point deadline_;
  std::atomic<uint64_t> taken_{0};
};

// Waits for `outstanding` call chains to finish, printing progress on a terminal.
class Tracker {
 public:
  explicit Tracker(int chains) : running_(chains) {}
  void ChainDone() {
    std::lock_guard<std::mutex> l(mu_);
    if (--running_ == 0) cv_.notify_all();
  }
  void Wait(const std::atomic<uint64_t>& progress, const char* what) {
    bool tty = isatty(2);
    auto start = Clock::now();
    std::unique_lock<std::mutex> l(mu_);
    while (!cv_.wait_for(l, std::chrono::milliseconds(500), [&] { return running_ == 0; })) {
      if (tty) {
        double s = std::chrono::duration<double>(Clock::now() - start).count();
        std::fprintf(stderr, "\r  %s: %llu messages, %.0f/s   ", what,
                     static_cast<unsigned long long>(progress.load()),
                     static_cast<double>(progress.load()) / s);
      }
    }
    if (tty) std::fprintf(stderr, "\r%60s\r", "");
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  int running_;
};

class GrpcBench {
 public:
  explicit GrpcBench(const Config& c) : c_(c) {
    for (int i = 0; i < c.channels; ++i) {
      grpc::ChannelArguments args;
      args.SetMaxReceiveMessageSize(64 << 20);
      args.SetInt("spool.bench.channel", i);  // distinct channels, not one shared subchannel
      auto ch = grpc::CreateCustomChannel(c.server, grpc::InsecureChannelCredentials(), args);
      channels_.push_back(ch);
      stubs_.push_back(v1::QueueService::NewStub(ch));
      health_.push_back(grpc::health::v1::Health::NewStub(ch));
    }
  }

  bool EnsureQueue() {
    grpc::ClientContext ctx;
    ctx.set_deadline(std::chrono::system_clock::now() + std::chrono::seconds(10));
    v1::CreateQueueRequest req;
    req.set_name(c_.queue);
    v1::Queue q;
    grpc::Status s = stubs_[0]->CreateQueue(&ctx, req, &q);
    if (!s.ok()) {
      std::fprintf(stderr, "spool-bench: cannot create queue %s at %s: %s\n", c_.queue.c_str(),
                   c_.server.c_str(), s.error_message().c_str());
    }
    return s.ok();
  }

  uint64_t Depth() {
    grpc::ClientContext ctx;
    v1::GetQueueRequest req;
    req.set_name(c_.queue);
    v1::Queue q;
    return stubs_[0]->GetQueue(&ctx, req, &q).ok() ? q.stats().total() : 0;
  }

  // grpc.health.v1 Check with workers x inflight calls outstanding.
  Result Noop(int workers) {
    Result r;
    r.name = "noop";
    Budget budget(c_.messages, std::min<int64_t>(c_.duration_ms, 5000));
    Recorder rec;
    std::atomic<uint64_t> done{0};
    int chains = workers * c_.inflight;
    Tracker tracker(chains);
    struct Slot {
      std::unique_ptr<grpc::ClientContext> ctx;
      grpc::health::v1::HealthCheckRequest req;
      grpc::health::v1::HealthCheckResponse resp;
      int64_t start;
      grpc::health::v1::Health::Stub* stub;
    };
    std::vector<std::unique_ptr<Slot>> slots;
    std::function<void(Slot*)> issue = [&](Slot* s) {
      if (budget.Take(1) == 0) return tracker.ChainDone();
      s->ctx = std::make_unique<grpc::ClientContext>();
      s->start = NowNs();
      s->stub->async()->Check(s->ctx.get(), &s->req, &s->resp, [&, s](grpc::Status st) {
        rec.Latency("check", NowNs() - s->start);
        if (!st.ok()) rec.Error("check " + CodeName(st));
        ++done;
        issue(s);
      });
    };
    return Run(r, chains, slots, issue, tracker, done, rec,
               [&](Result& res) { res.messages = res.calls = done.load(); });
  }

  // Enqueue batches of c_.batch, producers x inflight outstanding.
  Result Produce(Budget& budget, const char* name = "produce") {
    Result r;
    r.name = name;
    Recorder rec;
    std::atomic<uint64_t> sent{0}, calls{0}, duplicates{0};
    int chains = c_.producers * c_.inflight;
    Tracker tracker(chains);
    struct Slot {
      std::unique_ptr<grpc::ClientContext> ctx;
      v1::EnqueueRequest req;
      v1::EnqueueResponse resp;
      int64_t start;
      v1::QueueService::Stub* stub;
      uint64_t n;
    };
    std::vector<std::unique_ptr<Slot>> slots;
    std::function<void(Slot*)> issue = [&](Slot* s) {
      uint64_t n = budget.Take(c_.batch);
      if (n == 0) return tracker.ChainDone();
      if (s->req.messages_size() != static_cast<int>(n)) {
        s->req.clear_messages();
        for (uint64_t i = 0; i < n; ++i) s->req.add_messages();
      }
      for (auto& m : *s->req.mutable_messages()) {
        uint64_t k = g_payloads++;
        m.set_payload(Payload(c_.payload_bytes, k));
        if (c_.dedup_ids) m.set_dedup_id(DedupId(k));
      }
      s->n = n;
      s->ctx = std::make_unique<grpc::ClientContext>();
      s->resp.Clear();
      s->start = NowNs();
      s->stub->async()->Enqueue(s->ctx.get(), &s->req, &s->resp, [&, s](grpc::Status st) {
        rec.Latency("enqueue", NowNs() - s->start);
        ++calls;
        if (st.ok()) {
          sent += s->n;
          for (const auto& result : s->resp.results()) duplicates += result.duplicate();
        } else {
          rec.Error("enqueue " + CodeName(st));
        }
        issue(s);
      });
    };
    return Run(r, chains, slots, issue, tracker, sent, rec, [&](Result& res) {
      res.messages = sent.load();
      res.calls = calls.load();
      res.duplicates = duplicates.load();
    });
  }

  // Publish: one stream per producer, each with c_.inflight requests of c_.batch messages
  // outstanding (written one after another, answered in order).
  Result Publish(Budget& budget) {
    Result r;
    r.name = "publish";
    Recorder rec;
    std::atomic<uint64_t> sent{0}, calls{0}, duplicates{0};
    Tracker tracker(c_.producers);
    const Config& c = c_;
    class Stream final : public grpc::ClientBidiReactor<v1::PublishRequest, v1::PublishResponse> {
     public:
      Stream(const Config& c, Budget& budget, Recorder& rec, Tracker& tracker,
             std::atomic<uint64_t>& sent, std::atomic<uint64_t>& calls,
             std::atomic<uint64_t>& duplicates)
          : c_(c),
            budget_(budget),
            rec_(rec),
            tracker_(tracker),
            sent_(sent),
            calls_(calls),
            duplicates_(duplicates) {}

      void Begin(v1::QueueService::Stub* stub) {
        stub->async()->Publish(&ctx_, this);
        StartRead(&resp_);
        {
          std::lock_guard<std::mutex> lock(mu_);
          FillLocked();
        }
        StartCall();
      }

      void OnWriteDone(bool ok) override {
        std::lock_guard<std::mutex> lock(mu_);
        queue_.pop_front();
        writing_ = false;
        if (!ok) return;  // the stream failed; OnDone reports it
        WriteNextLocked();
      }

      void OnReadDone(bool ok) override {
        if (!ok) return;
        {
          std::lock_guard<std::mutex> lock(mu_);
          auto it = started_.find(resp_.sequence());
          if (it != started_.end()) {
            rec_.Latency("publish", NowNs() - it->second);
            started_.erase(it);
          }
          ++calls_;
          if (resp_.code() == 0) {
            sent_ += resp_.results_size();
            for (const auto& result : resp_.results()) duplicates_ += result.duplicate();
          } else {
            rec_.Error("publish code " + std::to_string(resp_.code()));
          }
          --outstanding_;
          FillLocked();
        }
        StartRead(&resp_);
      }

      void OnDone(const grpc::Status& s) override {
        if (!s.ok()) rec_.Error("publish stream " + CodeName(s));
        tracker_.ChainDone();
      }

     private:
      void FillLocked() {
        while (outstanding_ < c_.inflight) {
          uint64_t n = budget_.Take(c_.batch);
          if (n == 0) break;
          v1::PublishRequest& req = queue_.emplace_back();
          if (next_seq_ == 0) req.set_queue(c_.queue);
          req.set_sequence(next_seq_++);
          for (uint64_t i = 0; i < n; ++i) {
            uint64_t k = g_payloads++;
            auto* m = req.add_messages();
            m->set_payload(Payload(c_.payload_bytes, k));
            if (c_.dedup_ids) m->set_dedup_id(DedupId(k));
          }
          started_[req.sequence()] = NowNs();
          ++outstanding_;
        }
        WriteNextLocked();
      }

      void WriteNextLocked() {
        if (writing_) return;
        if (!queue_.empty()) {
          writing_ = true;
          StartWrite(&queue_.front());
        } else if (outstanding_ == 0 && !writes_done_) {
          writes_done_ = true;  // the budget is spent and everything answered
          StartWritesDone();
        }
      }

      const Config& c_;
      Budget& budget_;
      Recorder& rec_;
      Tracker& tracker_;
      std::atomic<uint64_t>&sent_, &calls_, &duplicates_;
      grpc::ClientContext ctx_;
      std::mutex mu_;
      std::deque<v1::PublishRequest> queue_;  // to write; the front one is being written
      std::map<uint64_t, int64_t> started_;   // sequence -> when it was queued
      v1::PublishResponse resp_;
      uint64_t next_seq_ = 0;
      int outstanding_ = 0;
      bool writing_ = false, writes_done_ = false;
    };
    std::vector<std::unique_ptr<Stream>> streams;
    for (int i = 0; i < c.producers; ++i) {
      streams.push_back(std::make_unique<Stream>(c, budget, rec, tracker, sent, calls, duplicates));
    }
    double cpu0 = ClientCpu(), scpu0 = ProcessCpu(c.server_pid);
    auto start = Clock::now();
    for (int i = 0; i < c.producers; ++i) streams[i]->Begin(stubs_[i % stubs_.size()].get());
    tracker.Wait(sent, r.name.c_str());
    r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    r.client_cpu = ClientCpu() - cpu0;
    r.server_cpu = ProcessCpu(c.server_pid) - scpu0;
    r.messages = sent.load();
    r.calls = calls.load();
    r.duplicates = duplicates.load();
    rec.Into(&r);
    return r;
  }

  // Lease c_.batch, then Ack them, consumers x inflight outstanding; until the budget is
  // spent or the queue is empty.
  Result Consume(Budget& budget, bool stop_when_empty, const char* name = "consume") {
    Result r;
    r.name = name;
    Recorder rec;
    std::atomic<uint64_t> acked{0}, calls{0};
    int chains = c_.consumers * c_.inflight;
    Tracker tracker(chains);
    struct Slot {
      std::unique_ptr<grpc::ClientContext> ctx;
      v1::LeaseRequest lease;
      v1::LeaseResponse leased;
      v1::AckRequest ack;
      v1::AckResponse acked;
      int64_t start;
      v1::QueueService::Stub* stub;
    };
    std::vector<std::unique_ptr<Slot>> slots;
    std::function<void(Slot*)> issue = [&](Slot* s) {
      if (budget.Over()) return tracker.ChainDone();
      s->lease.set_queue(c_.queue);
      s->lease.set_max_messages(c_.batch);
      s->lease.mutable_visibility_timeout()->set_seconds(60);
      if (!stop_when_empty) s->lease.mutable_wait_time()->set_seconds(1);
      s->ctx = std::make_unique<grpc::ClientContext>();
      s->leased.Clear();
      s->start = NowNs();
      s->stub->async()->Lease(s->ctx.get(), &s->lease, &s->leased, [&, s](grpc::Status st) {
        rec.Latency("lease", NowNs() - s->start);
        ++calls;
        if (!st.ok()) {
          rec.Error("lease " + CodeName(st));
          return issue(s);
        }
        if (s->leased.messages_size() == 0) {
          if (stop_when_empty) return tracker.ChainDone();
          return issue(s);
        }
        s->ack.set_queue(c_.queue);
        s->ack.clear_receipts();
        for (const auto& m : s->leased.messages()) s->ack.add_receipts(m.receipt());
        s->ctx = std::make_unique<grpc::ClientContext>();
        s->acked.Clear();
        s->start = NowNs();
        s->stub->async()->Ack(s->ctx.get(), &s->ack, &s->acked, [&, s](grpc::Status st2) {
          rec.Latency("ack", NowNs() - s->start);
          ++calls;
          if (st2.ok()) {
            acked += s->acked.results_size();
            budget.Take(s->acked.results_size());
          } else {
            rec.Error("ack " + CodeName(st2));
          }
          issue(s);
        });
      });
    };
    return Run(r, chains, slots, issue, tracker, acked, rec, [&](Result& res) {
      res.messages = acked.load();
      res.calls = calls.load();
    });
  }

  // Open loop: a sender schedules enqueues at c_.rate per second, each carrying its scheduled
  // send time; consumers long-poll and ack. End-to-end latency = lease reply - scheduled time,
  // so a stall of the sender is counted, not hidden.
  Result EndToEnd() {
    Result r;
    r.name = "e2e";
    Recorder rec;
    std::atomic<uint64_t> received{0}, calls{0};
    std::atomic<bool> sending{true};
    uint64_t total =
        c_.messages > 0 ? c_.messages : static_cast<uint64_t>(c_.rate * c_.duration_ms / 1000.0);
    int chains = c_.consumers;
    Tracker tracker(chains);
    auto deadline = Clock::now() + std::chrono::milliseconds(c_.duration_ms + 5000);
    struct Slot {
      std::unique_ptr<grpc::ClientContext> ctx;
      v1::LeaseRequest lease;
      v1::LeaseResponse leased;
      v1::AckRequest ack;
      v1::AckResponse acked;
      int64_t start;
      v1::QueueService::Stub* stub;
    };
    std::vector<std::unique_ptr<Slot>> slots;
    std::function<void(Slot*)> issue = [&](Slot* s) {
      if ((!sending && received.load() >= total) || Clock::now() > deadline) {
        return tracker.ChainDone();
      }
      s->lease.set_queue(c_.queue);
      s->lease.set_max_messages(c_.batch);
      s->lease.mutable_visibility_timeout()->set_seconds(60);
      s->lease.mutable_wait_time()->set_nanos(200'000'000);
      s->ctx = std::make_unique<grpc::ClientContext>();
      s->leased.Clear();
      s->start = NowNs();
      s->stub->async()->Lease(s->ctx.get(), &s->lease, &s->leased, [&, s](grpc::Status st) {
        int64_t now = NowNs();
        ++calls;
        if (!st.ok()) {
          rec.Error("lease " + CodeName(st));
          return issue(s);
        }
        if (s->leased.messages_size() > 0) rec.Latency("lease", now - s->start);
        s->ack.set_queue(c_.queue);
        s->ack.clear_receipts();
        for (const auto& m : s->leased.messages()) {
          int64_t scheduled = 0;
          std::memcpy(&scheduled, m.payload().data(), sizeof scheduled);
          rec.Latency("e2e", now - scheduled);
          s->ack.add_receipts(m.receipt());
        }
        received += s->leased.messages_size();
        if (s->ack.receipts_size() == 0) return issue(s);
        // Ack and lease again at once; the ack's reply is not waited for.
        auto ack_state = std::make_shared<
            std::pair<grpc::ClientContext, std::pair<v1::AckRequest, v1::AckResponse>>>();
        ack_state->second.first = s->ack;
        int64_t ack_start = NowNs();
        s->stub->async()->Ack(&ack_state->first, &ack_state->second.first,
                              &ack_state->second.second,
                              [&, ack_state, ack_start](grpc::Status st2) {
                                rec.Latency("ack", NowNs() - ack_start);
                                if (!st2.ok()) rec.Error("ack " + CodeName(st2));
                              });
        issue(s);
      });
    };
    for (int i = 0; i < chains; ++i) {
      auto s = std::make_unique<Slot>();
      s->stub = stubs_[i % stubs_.size()].get();
      slots.push_back(std::move(s));
    }
    double cpu0 = ClientCpu(), scpu0 = ProcessCpu(c_.server_pid);
    auto start = Clock::now();
    for (auto& s : slots) issue(s.get());
    // The sender: one enqueue of one message per scheduled time.
    std::atomic<uint64_t> outstanding{0};
    std::thread sender([&] {
      auto t0 = Clock::now();
      for (uint64_t k = 0; k < total; ++k) {
        auto due = t0 + std::chrono::nanoseconds(static_cast<int64_t>(1e9 * k / c_.rate));
        std::this_thread::sleep_until(due);
        int64_t scheduled = due.time_since_epoch().count();
        auto call = std::make_shared<
            std::tuple<grpc::ClientContext, v1::EnqueueRequest, v1::EnqueueResponse>>();
        std::get<1>(*call).set_queue(c_.queue);
        std::string payload = Payload(std::max<int>(c_.payload_bytes, 8), k);
        std::memcpy(payload.data(), &scheduled, sizeof scheduled);
        std::get<1>(*call).add_messages()->set_payload(std::move(payload));
        ++outstanding;
        int64_t send_start = NowNs();
        stubs_[k % stubs_.size()]->async()->Enqueue(&std::get<0>(*call), &std::get<1>(*call),
                                                    &std::get<2>(*call),
                                                    [&, call, send_start](grpc::Status st) {
                                                      rec.Latency("enqueue", NowNs() - send_start);
                                                      if (!st.ok())
                                                        rec.Error("enqueue " + CodeName(st));
                                                      --outstanding;
                                                    });
      }
      while (outstanding.load() > 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
      sending = false;
    });
    tracker.Wait(received, "e2e");
    sender.join();
    r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    r.client_cpu = ClientCpu() - cpu0;
    r.server_cpu = ProcessCpu(c_.server_pid) - scpu0;
    r.messages = received.load();
    r.calls = calls.load() + total;
    rec.Into(&r);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));  // let the last acks land
    return r;
  }

  // A Subscribe stream that acks every message on the stream as soon as it arrives (the
  // messages of one response in one request), until Stop(); on_message sees each delivery.
  class Subscriber final
      : public grpc::ClientBidiReactor<v1::SubscribeRequest, v1::SubscribeResponse> {
   public:
    using OnMessage = std::function<void(const v1::LeasedMessage&, int64_t now_ns)>;
    Subscriber(const Config& c, Recorder& rec, Tracker& tracker, std::atomic<uint64_t>& acked,
               OnMessage on_message)
        : c_(c), rec_(rec), tracker_(tracker), acked_(acked), on_message_(std::move(on_message)) {}

    void Begin(v1::QueueService::Stub* stub) {
      stub->async()->Subscribe(&ctx_, this);
      {
        std::lock_guard<std::mutex> lock(mu_);
        v1::SubscribeRequest& first = queue_.emplace_back();
        first.set_queue(c_.queue);
        first.set_max_outstanding(c_.max_outstanding);
        first.mutable_visibility_timeout()->set_seconds(60);
        WriteNextLocked();
      }
      StartRead(&resp_);
      StartCall();
    }

    // No more acks after those queued: WritesDone, and the server ends the stream.
    void Stop() {
      std::lock_guard<std::mutex> lock(mu_);
      stopping_ = true;
      WriteNextLocked();
    }

    void OnWriteDone(bool ok) override {
      std::lock_guard<std::mutex> lock(mu_);
      queue_.pop_front();
      writing_ = false;
      if (!ok) return;  // the stream failed; OnDone reports it
      WriteNextLocked();
    }

    void OnReadDone(bool ok) override {
      if (!ok) return;
      int64_t now = NowNs();
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (resp_.ack_results_size() > 0 && !ack_sent_.empty()) {
          rec_.Latency("ack", now - ack_sent_.front());
          ack_sent_.pop_front();
        }
        for (const auto& o : resp_.ack_results()) {
          if (o.outcome() == v1::OUTCOME_OK) {
            ++acked_;
          } else {
            rec_.Error("ack outcome " + std::to_string(o.outcome()));
          }
        }
        if (resp_.messages_size() > 0 && !stopping_) {
          v1::SubscribeRequest& acks = queue_.emplace_back();
          for (const auto& m : resp_.messages()) {
            if (on_message_) on_message_(m, now);
            acks.add_ack(m.receipt());
          }
          ack_sent_.push_back(now);
          WriteNextLocked();
        }
      }
      StartRead(&resp_);
    }

    void OnDone(const grpc::Status& s) override {
      if (!s.ok()) rec_.Error("subscribe stream " + CodeName(s));
      tracker_.ChainDone();
    }

   private:
    void WriteNextLocked() {
      if (writing_) return;
      if (!queue_.empty()) {
        writing_ = true;
        StartWrite(&queue_.front());
      } else if (stopping_ && !writes_done_) {
        writes_done_ = true;
        StartWritesDone();
      }
    }

    const Config& c_;
    Recorder& rec_;
    Tracker& tracker_;
    std::atomic<uint64_t>& acked_;
    OnMessage on_message_;
    grpc::ClientContext ctx_;
    std::mutex mu_;
    std::deque<v1::SubscribeRequest> queue_;  // to write; the front one is being written
    std::deque<int64_t> ack_sent_;            // when each ack request was queued
    v1::SubscribeResponse resp_;
    bool writing_ = false, writes_done_ = false, stopping_ = false;
  };

  // --consumers Subscribe streams of credit --max-outstanding each, acking on the stream, until
  // `want` messages are acked or the budget's time is up.
  Result Subscribe(uint64_t want, int64_t duration_ms) {
    Result r;
    r.name = "subscribe";
    Recorder rec;
    std::atomic<uint64_t> acked{0};
    Tracker tracker(c_.consumers);
    std::vector<std::unique_ptr<Subscriber>> subs;
    for (int i = 0; i < c_.consumers; ++i) {
      subs.push_back(std::make_unique<Subscriber>(c_, rec, tracker, acked, nullptr));
    }
    double cpu0 = ClientCpu(), scpu0 = ProcessCpu(c_.server_pid);
    auto start = Clock::now();
    auto deadline = start + std::chrono::milliseconds(duration_ms);
    for (int i = 0; i < c_.consumers; ++i) subs[i]->Begin(stubs_[i % stubs_.size()].get());
    while (acked.load() < want && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    r.client_cpu = ClientCpu() - cpu0;
    r.server_cpu = ProcessCpu(c_.server_pid) - scpu0;
    r.messages = acked.load();
    r.calls = r.messages;  // one ack each; the ceiling compares calls with calls
    for (auto& sub : subs) sub->Stop();
    tracker.Wait(acked, r.name.c_str());
    rec.Into(&r);
    return r;
  }

  // e2e over streams: the open-loop sender of EndToEnd writes one message per request on
  // --producers Publish streams (no waiting for answers), and --consumers Subscribe streams
  // receive and ack on the stream. Latency = delivery on a Subscribe stream - scheduled time.
  Result EndToEndStreams() {
    Result r;
    r.name = "e2e-stream";
    Recorder rec;
    std::atomic<uint64_t> received{0}, acked{0};
    uint64_t total =
        c_.messages > 0 ? c_.messages : static_cast<uint64_t>(c_.rate * c_.duration_ms / 1000.0);
    Tracker sub_tracker(c_.consumers), pub_tracker(c_.producers);
    std::vector<std::unique_ptr<Subscriber>> subs;
    for (int i = 0; i < c_.consumers; ++i) {
      subs.push_back(std::make_unique<Subscriber>(
          c_, rec, sub_tracker, acked, [&](const v1::LeasedMessage& m, int64_t now) {
            int64_t scheduled = 0;
            std::memcpy(&scheduled, m.payload().data(), sizeof scheduled);
            rec.Latency("e2e", now - scheduled);
            ++received;
          }));
    }
    // A Publish stream the sender thread hands requests to.
    class Publisher final
        : public grpc::ClientBidiReactor<v1::PublishRequest, v1::PublishResponse> {
     public:
      Publisher(const Config& c, Recorder& rec, Tracker& tracker)
          : c_(c), rec_(rec), tracker_(tracker) {}
      void Begin(v1::QueueService::Stub* stub) {
        stub->async()->Publish(&ctx_, this);
        StartRead(&resp_);
        StartCall();
      }
      void Send(int64_t scheduled, uint64_t k) {
        std::lock_guard<std::mutex> lock(mu_);
        v1::PublishRequest& req = queue_.emplace_back();
        if (next_seq_ == 0) req.set_queue(c_.queue);
        req.set_sequence(next_seq_++);
        std::string payload = Payload(std::max<int>(c_.payload_bytes, 8), k);
        std::memcpy(payload.data(), &scheduled, sizeof scheduled);
        req.add_messages()->set_payload(std::move(payload));
        sent_at_.push_back(NowNs());
        WriteNextLocked();
      }
      void Close() {
        std::lock_guard<std::mutex> lock(mu_);
        closing_ = true;
        WriteNextLocked();
      }
      void OnWriteDone(bool ok) override {
        std::lock_guard<std::mutex> lock(mu_);
        queue_.pop_front();
        writing_ = false;
        if (ok) WriteNextLocked();
      }
      void OnReadDone(bool ok) override {
        if (!ok) return;
        {
          std::lock_guard<std::mutex> lock(mu_);
          if (!sent_at_.empty()) {
            rec_.Latency("publish", NowNs() - sent_at_.front());
            sent_at_.pop_front();
          }
          if (resp_.code() != 0) rec_.Error("publish code " + std::to_string(resp_.code()));
        }
        StartRead(&resp_);
      }
      void OnDone(const grpc::Status& s) override {
        if (!s.ok()) rec_.Error("publish stream " + CodeName(s));
        tracker_.ChainDone();
      }

     private:
      void WriteNextLocked() {
        if (writing_) return;
        if (!queue_.empty()) {
          writing_ = true;
          StartWrite(&queue_.front());
        } else if (closing_ && !writes_done_) {
          writes_done_ = true;
          StartWritesDone();
        }
      }
      const Config& c_;
      Recorder& rec_;
      Tracker& tracker_;
      grpc::ClientContext ctx_;
      std::mutex mu_;
      std::deque<v1::PublishRequest> queue_;
      std::deque<int64_t> sent_at_;
      v1::PublishResponse resp_;
      uint64_t next_seq_ = 0;
      bool writing_ = false, writes_done_ = false, closing_ = false;
    };
    std::vector<std::unique_ptr<Publisher>> pubs;
    for (int i = 0; i < c_.producers; ++i) {
      pubs.push_back(std::make_unique<Publisher>(c_, rec, pub_tracker));
    }
    double cpu0 = ClientCpu(), scpu0 = ProcessCpu(c_.server_pid);
    auto start = Clock::now();
    for (int i = 0; i < c_.consumers; ++i) subs[i]->Begin(stubs_[i % stubs_.size()].get());
    for (int i = 0; i < c_.producers; ++i) pubs[i]->Begin(stubs_[i % stubs_.size()].get());
    auto t0 = Clock::now();
    for (uint64_t k = 0; k < total; ++k) {
      auto due = t0 + std::chrono::nanoseconds(static_cast<int64_t>(1e9 * k / c_.rate));
      std::this_thread::sleep_until(due);
      pubs[k % pubs.size()]->Send(due.time_since_epoch().count(), k);
    }
    for (auto& p : pubs) p->Close();
    pub_tracker.Wait(received, "e2e-stream publish");
    auto deadline = Clock::now() + std::chrono::seconds(5);
    while (received.load() < total && Clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1));
    }
    r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    r.client_cpu = ClientCpu() - cpu0;
    r.server_cpu = ProcessCpu(c_.server_pid) - scpu0;
    r.messages = received.load();
    r.calls = total + acked.load();
    for (auto& sub : subs) sub->Stop();
    sub_tracker.Wait(received, r.name.c_str());
    rec.Into(&r);
    if (r.messages < total) {
      rec.Error("not delivered within 5 s of the last send");
      r.errors["not delivered within 5 s of the last send"] += total - r.messages;
    }
    return r;
  }

 private:
  template <typename Slot, typename Issue, typename Finish>
  Result Run(Result& r, int chains, std::vector<std::unique_ptr<Slot>>& slots, Issue& issue,
             Tracker& tracker, std::atomic<uint64_t>& progress, Recorder& rec, Finish finish) {
    for (int i = 0; i < chains; ++i) {
      auto s = std::make_unique<Slot>();
      if constexpr (requires { s->req.set_queue(""); }) s->req.set_queue(c_.queue);
      if constexpr (std::is_same_v<decltype(s->stub), grpc::health::v1::Health::Stub*>) {
        s->stub = health_[i % health_.size()].get();
      } else {
        s->stub = stubs_[i % stubs_.size()].get();
      }
      slots.push_back(std::move(s));
    }
    double cpu0 = ClientCpu(), scpu0 = ProcessCpu(c_.server_pid);
    auto start = Clock::now();
    for (auto& s : slots) issue(s.get());
    tracker.Wait(progress, r.name.c_str());
    r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    r.client_cpu = ClientCpu() - cpu0;
    r.server_cpu = ProcessCpu(c_.server_pid) - scpu0;
    finish(r);
    rec.Into(&r);
    return r;
  }

  const Config& c_;
  std::vector<std::shared_ptr<grpc::Channel>> channels_;
  std::vector<std::unique_ptr<v1::QueueService::Stub>> stubs_;
  std::vector<std::unique_ptr<grpc::health::v1::Health::Stub>> health_;
};

// The storage ceiling: threads writing sync WriteBatches of `batch` puts of the same payload
// bytes (16-byte keys, as the engine's) to a raw RocksDB.
Result RawRocksDb(const Config& c, const std::string& dir) {
  Result r;
  r.name = "rocksdb";
  std::filesystem::create_directories(dir);
  rocksdb::Options o;
  o.create_if_missing = true;
  rocksdb::DB* raw;
  rocksdb::Status st = rocksdb::DB::Open(o, dir, &raw);
  if (!st.ok()) {
    std::fprintf(stderr, "spool-bench: %s\n", st.ToString().c_str());
    return r;
  }
  std::unique_ptr<rocksdb::DB> db(raw);
  rocksdb::WriteOptions wo;
  wo.sync = !c.engine_async;
  Budget budget(c.messages, c.duration_ms);
  std::atomic<uint64_t> n{0}, key{0};
  Recorder rec;
  auto start = Clock::now();
  double cpu0 = ClientCpu();
  std::vector<std::thread> threads;
  for (int t = 0; t < c.producers; ++t) {
    threads.emplace_back([&] {
      for (;;) {
        uint64_t take = budget.Take(c.batch);
        if (take == 0) return;
        rocksdb::WriteBatch b;
        for (uint64_t i = 0; i < take; ++i) {
          uint64_t k = key++;
          char kb[16] = {};
          std::memcpy(kb + 8, &k, 8);
          b.Put(rocksdb::Slice(kb, 16), Payload(c.payload_bytes, k));
        }
        int64_t t0 = NowNs();
        if (db->Write(wo, &b).ok()) n += take;
        rec.Latency("write", NowNs() - t0);
      }
    });
  }
  for (auto& t : threads) t.join();
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  r.client_cpu = ClientCpu() - cpu0;
  r.messages = n.load();
  rec.Into(&r);
  return r;
}

// The disk's own latency at the e2e load: one message's bytes (payload and a 16-byte key)
// appended to a file and fdatasync'd, message i at its scheduled time start + i / rate, timed
// from that scheduled time as e2e is (a slow sync delays the next ones, and that is counted).
// No RocksDB and no gRPC: the floor under any durable enqueue on this disk.
Result DiskFloor(const Config& c, const std::string& dir) {
  Result r;
  r.name = "fsync";
  std::filesystem::create_directories(dir);
  std::string path = dir + "/spool-bench-fsync.log";
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0644);
  if (fd < 0) {
    std::fprintf(stderr, "spool-bench: %s: %s\n", path.c_str(), std::strerror(errno));
    return r;
  }
  uint64_t total =
      c.messages > 0 ? c.messages : static_cast<uint64_t>(c.rate * c.duration_ms / 1000.0);
  std::string record = Payload(c.payload_bytes + 16);
  Recorder rec;
  auto start = Clock::now();
  double cpu0 = ClientCpu();
  for (uint64_t i = 0; i < total; ++i) {
    auto due = start + std::chrono::nanoseconds(static_cast<int64_t>(1e9 * i / c.rate));
    std::this_thread::sleep_until(due);
    if (::write(fd, record.data(), record.size()) != static_cast<ssize_t>(record.size()) ||
        ::fdatasync(fd) != 0) {
      rec.Error(std::string("write or fdatasync: ") + std::strerror(errno));
      continue;
    }
    rec.Latency("fsync",
                std::chrono::duration_cast<std::chrono::nanoseconds>(Clock::now() - due).count());
    ++r.messages;
  }
  r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
  r.client_cpu = ClientCpu() - cpu0;
  ::close(fd);
  std::filesystem::remove(path);
  rec.Into(&r);
  return r;
}

// The engine in process: producers enqueue batches (inflight each), then consumers lease and
// ack what was produced.
std::vector<Result> EngineBench(const Config& c) {
  std::vector<Result> out;
  out.push_back(RawRocksDb(c, c.engine_dir + "/raw-rocksdb"));
  engine::Options o;
  o.data_dir = c.engine_dir + "/engine";
  o.durability = c.engine_async ? engine::Durability::kAsync : engine::Durability::kSync;
  o.log = [](const std::string&) {};
  auto e = engine::Engine::Open(o, engine::SystemClock());
  if (!e.ok()) {
    std::fprintf(stderr, "spool-bench: %s\n", std::string(e.status().message()).c_str());
    return out;
  }
  engine::Engine& eng = **e;
  (void)engine::CreateQueueSync(eng, c.queue, {});
  for (const char* phase : {"engine-produce", "engine-consume"}) {
    bool produce = std::strcmp(phase, "engine-produce") == 0;
    Result r;
    r.name = phase;
    Budget budget(produce ? c.messages : 0, c.duration_ms);
    Recorder rec;
    std::atomic<uint64_t> n{0}, duplicates{0};
    // One thread per outstanding call, each making blocking calls: the engine's own threads
    // stay free of client work.
    int chains = (produce ? c.producers : c.consumers) * c.inflight;
    auto start = Clock::now();
    double cpu0 = ClientCpu();
    std::vector<std::thread> threads;
    for (int i = 0; i < chains; ++i) {
      threads.emplace_back([&] {
        for (;;) {
          if (produce) {
            uint64_t take = budget.Take(c.batch);
            if (take == 0) return;
            std::vector<engine::EnqueueEntry> entries;
            entries.reserve(take);
            for (uint64_t i = 0; i < take; ++i) {
              uint64_t k = g_payloads++;
              entries.push_back(
                  {Payload(c.payload_bytes, k), {}, {}, c.dedup_ids ? DedupId(k) : ""});
            }
            int64_t t0 = NowNs();
            auto res = engine::EnqueueSync(eng, c.queue, std::move(entries));
            rec.Latency("enqueue", NowNs() - t0);
            if (res.ok()) {
              n += take;
              for (const auto& result : *res) duplicates += result.duplicate;
            }
          } else {
            if (budget.Over()) return;
            engine::LeaseRequest req;
            req.queue = c.queue;
            req.max_messages = c.batch;
            req.visibility_timeout_ms = 60'000;
            int64_t t0 = NowNs();
            auto leased = engine::LeaseSync(eng, req);
            rec.Latency("lease", NowNs() - t0);
            if (!leased.ok() || leased->empty()) return;
            std::vector<std::string> receipts;
            for (auto& m : *leased) receipts.push_back(std::move(m.receipt));
            size_t k = receipts.size();
            int64_t t1 = NowNs();
            auto acked = engine::AckSync(eng, c.queue, std::move(receipts));
            rec.Latency("ack", NowNs() - t1);
            if (acked.ok()) n += k;
          }
        }
      });
    }
    for (auto& t : threads) t.join();
    r.seconds = std::chrono::duration<double>(Clock::now() - start).count();
    r.client_cpu = ClientCpu() - cpu0;
    r.messages = n.load();
    r.duplicates = duplicates.load();
    rec.Into(&r);
    out.push_back(std::move(r));
  }
  eng.Close();
  return out;
}

void Print(const Config& c, const std::vector<Result>& results) {
  if (c.json) {
    std::printf(
        "{\n  \"workload\": \"%s\", \"producers\": %d, \"consumers\": %d, "
        "\"inflight\": %d, \"batch\": %d, \"payload_bytes\": %d, \"dedup_ids\": %s,\n"
        "  \"phases\": [\n",
        c.workload.c_str(), c.producers, c.consumers, c.inflight, c.batch, c.payload_bytes,
        c.dedup_ids ? "true" : "false");
    for (size_t i = 0; i < results.size(); ++i) {
      const Result& r = results[i];
      std::printf(
          "    {\"name\": \"%s\", \"seconds\": %.3f, \"messages\": %llu, \"calls\": %llu, "
          "\"messages_per_second\": %.1f, \"calls_per_second\": %.1f, "
          "\"client_cpu_seconds\": %.2f, \"server_cpu_seconds\": %.2f, \"duplicates\": %llu",
          r.name.c_str(), r.seconds, static_cast<unsigned long long>(r.messages),
          static_cast<unsigned long long>(r.calls), r.rate(), r.call_rate(), r.client_cpu,
          r.server_cpu, static_cast<unsigned long long>(r.duplicates));
      for (const Result& ceiling : results) {
        bool is_ceiling = ceiling.name == "noop" || ceiling.name == "rocksdb";
        if (!is_ceiling || &ceiling == &r || ceiling.rate() <= 0 || r.name == "noop" ||
            r.name == "rocksdb") {
          continue;
        }
        std::printf(", \"ratio_to_%s\": %.3f", ceiling.name.c_str(),
                    (ceiling.name == "noop" ? r.call_rate() : r.rate()) / ceiling.rate());
      }
      std::printf(", \"latency_us\": {");
      bool first = true;
      for (const auto& [k, h] : r.latency) {
        std::printf(
            "%s\"%s\": {\"count\": %llu, \"p50\": %.1f, \"p90\": %.1f, \"p99\": %.1f, "
            "\"p999\": %.1f, \"max\": %.1f}",
            first ? "" : ", ", k.c_str(), static_cast<unsigned long long>(h.count()),
            h.Quantile(0.5) / 1e3, h.Quantile(0.9) / 1e3, h.Quantile(0.99) / 1e3,
            h.Quantile(0.999) / 1e3, h.max() / 1e3);
        first = false;
      }
      std::printf("}, \"errors\": {");
      first = true;
      for (const auto& [k, n] : r.errors) {
        std::printf("%s\"%s\": %llu", first ? "" : ", ", k.c_str(),
                    static_cast<unsigned long long>(n));
        first = false;
      }
      std::printf("}}%s\n", i + 1 < results.size() ? "," : "");
    }
    std::printf("  ]\n}\n");
    return;
  }
  for (const Result& r : results) {
    std::printf("%-15s %10.0f msg/s %10.0f calls/s  %8llu msgs in %.2fs  cpu client %.2fs",
                r.name.c_str(), r.rate(), r.call_rate(),
                static_cast<unsigned long long>(r.messages), r.seconds, r.client_cpu);
    if (c.server_pid) std::printf(" server %.2fs", r.server_cpu);
    // Against the gRPC ceiling, calls are compared with calls; against RocksDB, messages.
    for (const Result& ceiling : results) {
      bool is_ceiling = ceiling.name == "noop" || ceiling.name == "rocksdb";
      if (!is_ceiling || &ceiling == &r || ceiling.rate() <= 0 || r.name == "noop" ||
          r.name == "rocksdb") {
        continue;
      }
      double ratio = (ceiling.name == "noop" ? r.call_rate() : r.rate()) / ceiling.rate();
      std::printf("  = %.2f x %s", ratio, ceiling.name.c_str());
    }
    std::printf("\n");
    if (r.duplicates > 0) {
      std::printf("    duplicates: %llu (turned away by the dedup index)\n",
                  static_cast<unsigned long long>(r.duplicates));
    }
    for (const auto& [k, h] : r.latency) {
      std::printf("    %-8s p50 %8.3f ms  p90 %8.3f  p99 %8.3f  p999 %8.3f  max %8.3f  (%llu)\n",
                  k.c_str(), h.Quantile(0.5) / 1e6, h.Quantile(0.9) / 1e6, h.Quantile(0.99) / 1e6,
                  h.Quantile(0.999) / 1e6, h.max() / 1e6,
                  static_cast<unsigned long long>(h.count()));
    }
    for (const auto& [k, n] : r.errors) {
      std::printf("    errors: %s x %llu\n", k.c_str(), static_cast<unsigned long long>(n));
    }
  }
}

int Main(int argc, char** argv) {
  // Debian's Abseil checks every mutex acquisition for lock-order cycles; that is a debugging
  // aid that costs on every lock of the hot path.
  absl::SetMutexDeadlockDetectionMode(absl::OnDeadlockCycle::kIgnore);
  Config c;
  CLI::App app{
      "spool-bench: Spool's throughput and latency, beside ceilings measured in the same run."};
  app.footer(
      "Examples (BENCHMARKS.md has the full set):\n"
      "  spool-bench --workload produce --producers 4 --batch 100\n"
      "  spool-bench --workload consume --consumers 4 --batch 100 --messages 500000\n"
      "  spool-bench --workload publish --producers 4 --inflight 64 --batch 1\n"
      "  spool-bench --workload subscribe --consumers 4 --max-outstanding 1\n"
      "  spool-bench --workload e2e --rate 1000 --consumers 4 --duration 20s\n"
      "  spool-bench --workload e2e-stream --rate 1000 --producers 1 --consumers 4\n"
      "  spool-bench --engine-dir /tmp/bench --producers 4 --batch 100");
  app.add_option("--server", c.server, "spoold's HOST:PORT")->capture_default_str();
  app.add_option("--queue", c.queue, "Queue to use (created if missing)")->capture_default_str();
  app.add_option("--workload", c.workload,
                 "produce, publish, consume, subscribe, e2e, e2e-stream, mixed or noop")
      ->check(CLI::IsMember(
          {"produce", "publish", "consume", "subscribe", "e2e", "e2e-stream", "mixed", "noop"}))
      ->capture_default_str();
  app.add_option("--producers", c.producers, "Producer workers")->check(CLI::Range(1, 256));
  app.add_option("--consumers", c.consumers, "Consumer workers")->check(CLI::Range(1, 256));
  app.add_option("--inflight", c.inflight, "Calls outstanding per worker")
      ->check(CLI::Range(1, 1024));
  app.add_option("--batch", c.batch, "Messages per Enqueue, Lease and Ack")
      ->check(CLI::Range(1, 1000));
  app.add_option("--channels", c.channels, "gRPC channels (connections)")->check(CLI::Range(1, 64));
  app.add_option("--payload-bytes", c.payload_bytes, "Payload size")->check(CLI::Range(8, 4 << 20));
  app.add_flag("--dedup-ids", c.dedup_ids,
               "Produce: give every message a distinct dedup id (36 characters, UUID form), so "
               "each enqueue also reads and writes the queue's dedup index");
  app.add_option("--messages", c.messages, "Stop after this many messages (consume: prefill)");
  app.add_option_function<std::string>(
      "--duration",
      [&c](const std::string& v) {
        auto ms = ctl::ParseDuration(v);
        if (!ms) throw CLI::ValidationError("--duration", "not a duration");
        c.duration_ms = *ms;
      },
      "Stop after this long (default 10s)");
  app.add_option("--max-outstanding", c.max_outstanding,
                 "subscribe, e2e-stream: each Subscribe stream's credit")
      ->check(CLI::Range(1, 10000));
  app.add_option("--rate", c.rate, "e2e: messages per second, scheduled")
      ->check(CLI::PositiveNumber);
  app.add_flag("--json", c.json, "One JSON document on stdout");
  app.add_option("--server-pid", c.server_pid, "spoold's pid, to report its CPU seconds");
  app.add_flag("!--no-baseline", c.baseline, "Skip the ceiling phase");
  app.add_option("--engine-dir", c.engine_dir,
                 "Benchmark the engine in process (no gRPC) in this directory, beside raw RocksDB");
  app.add_flag("--async", c.engine_async,
               "Raw RocksDB and --engine-dir: write without fsync (to compare with spoold "
               "--durability async)");
  app.add_option("--rocksdb-dir", c.rocksdb_dir,
                 "Also measure raw RocksDB sync WriteBatches of the same bytes in this directory "
                 "(same disk as spoold's), as a second ceiling");
  app.add_option("--fsync-dir", c.fsync_dir,
                 "e2e: first measure a bare write + fdatasync of each message's bytes at --rate "
                 "in this directory (same disk as spoold's): the disk's latency floor");
  CLI11_PARSE(app, argc, argv);

  if (!c.fsync_dir.empty() && (c.workload != "e2e" || !c.engine_dir.empty())) {
    std::fprintf(stderr, "spool-bench: --fsync-dir goes with --workload e2e against a spoold\n");
    return 2;
  }
  std::vector<Result> results;
  if (!c.engine_dir.empty()) {
    results = EngineBench(c);
    Print(c, results);
    return 0;
  }
  GrpcBench bench(c);
  // noop calls only the health service: it needs no queue (and may run against any gRPC server
  // with one, such as spool-reply-paths).
  if (c.workload != "noop" && !bench.EnsureQueue()) return 1;
  int workers = c.workload == "consume" || c.workload == "e2e" || c.workload == "subscribe" ||
                        c.workload == "e2e-stream"
                    ? c.consumers
                    : c.producers;
  if (c.baseline || c.workload == "noop") results.push_back(bench.Noop(workers));
  if (!c.rocksdb_dir.empty()) results.push_back(RawRocksDb(c, c.rocksdb_dir));
  if (!c.fsync_dir.empty()) {
    results.push_back(DiskFloor(c, c.fsync_dir));
    if (results.back().messages == 0) {
      std::fprintf(stderr, "spool-bench: --fsync-dir: no write + fdatasync succeeded\n");
      return 1;
    }
  }
  if (c.workload == "produce") {
    Budget budget(c.messages, c.duration_ms);
    results.push_back(bench.Produce(budget));
  } else if (c.workload == "publish") {
    Budget budget(c.messages, c.duration_ms);
    results.push_back(bench.Publish(budget));
  } else if (c.workload == "consume") {
    uint64_t want = c.messages > 0 ? c.messages : 200'000;
    uint64_t have = bench.Depth();
    if (have < want) {
      Config fill = c;
      fill.batch = 1000;
      fill.producers = 2;
      fill.inflight = 2;
      GrpcBench filler(fill);
      Budget budget(want - have, 600'000);
      filler.Produce(budget, "prefill");
    }
    Budget budget(want, c.duration_ms);
    results.push_back(bench.Consume(budget, /*stop_when_empty=*/true));
  } else if (c.workload == "mixed") {
    Budget produce_budget(c.messages, c.duration_ms), consume_budget(0, c.duration_ms);
    Result consumed;
    std::thread consumer([&] { consumed = bench.Consume(consume_budget, false, "mixed-consume"); });
    results.push_back(bench.Produce(produce_budget, "mixed-produce"));
    consumer.join();
    results.push_back(std::move(consumed));
  } else if (c.workload == "subscribe") {
    uint64_t want = c.messages > 0 ? c.messages : 200'000;
    uint64_t have = bench.Depth();
    if (have < want) {
      Config fill = c;
      fill.batch = 1000;
      fill.producers = 2;
      fill.inflight = 2;
      GrpcBench filler(fill);
      Budget budget(want - have, 600'000);
      filler.Produce(budget, "prefill");
    }
    results.push_back(bench.Subscribe(want, c.duration_ms));
  } else if (c.workload == "e2e") {
    results.push_back(bench.EndToEnd());
  } else if (c.workload == "e2e-stream") {
    results.push_back(bench.EndToEndStreams());
  }
  Print(c, results);
  return 0;
}

}  // namespace
}  // namespace spool::bench

int main(int argc, char** argv) { return spool::bench::Main(argc, argv); }
