// Seeded simulation: the engine against a small in-memory model of the contract. Each seed
// runs a random sequence of enqueues (some delayed), leases, acks, nacks (with delays),
// extensions, stale receipts, clock advances, power cuts through the fault file system
// (unsynced-loss: whatever was not fsynced is gone) and clean restarts, with a fake clock, and
// checks every reply, every queue's contents and its stats against the model. Everything is
// single-threaded and every call completes before the next, so the model knows exactly what
// each reply must be.
//
//   engine_simulation --seeds 2000            # CI: seeds 1..2000 on 4 threads
//   engine_simulation --seed 1234 --verbose   # replay one seed, printing every step
//   engine_simulation --mutation nack-ignores-delay --expect-failure
//
// Exit status: 0 all seeds passed (or, with --expect-failure, some seed failed); 1 otherwise.
#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <random>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "engine/engine.h"
#include "engine/fault_fs.h"
#include "engine/sync.h"
#include "tests/test_util.h"

namespace spool::engine {
namespace {

constexpr uint32_t kMaxDeliveries = 3;
constexpr int64_t kVisibility = 5'000;

// The model of one message.
struct Msg {
  std::string payload;
  uint64_t order;  // the engine's sequence order: allocation order of enqueues and moves
  int64_t visible_at;
  uint32_t count = 0;
  uint32_t gen = 0;  // leases so far: a receipt is valid while it names the latest
  bool leased = false;
};

// A receipt a worker holds, with what it was for.
struct Held {
  std::string queue, receipt, payload;
  uint32_t gen;
};

class Failure : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

class Simulation {
 public:
  Simulation(uint64_t seed, Mutation mutation, bool verbose)
      : rng_(seed), mutation_(mutation), verbose_(verbose) {}

  void Run(int ops) {
    Open();
    QueueConfig dlq;
    dlq.visibility_timeout_ms = kVisibility;
    Must(CreateQueueSync(*engine_, "dlq", dlq), "create dlq");
    QueueConfig q = dlq;
    q.max_deliveries = kMaxDeliveries;
    q.dead_letter_queue = "dlq";
    Must(CreateQueueSync(*engine_, "q", q), "create q");
    for (step_ = 0; step_ < ops; ++step_) {
      int r = static_cast<int>(rng_() % 100);
      if (r < 25) {
        DoEnqueue();
      } else if (r < 50) {
        DoLease(rng_() % 4 == 0 ? "dlq" : "q");
      } else if (r < 75) {
        DoReceipt();
      } else if (r < 91) {
        int64_t ms = static_cast<int64_t>(rng_() % 3000);
        Say("advance " + std::to_string(ms) + " ms");
        clock_->AdvanceMillis(ms);
        engine_->Tick();
      } else if (r < 95) {
        Say("power cut and restart");
        faults_->Crash();
        engine_.reset();
        Open();
      } else if (r < 96) {
        Say("clean restart");
        engine_.reset();
        Open();
      } else {
        CheckContents();
      }
    }
    CheckContents();
    engine_.reset();
  }

 private:
  void Say(const std::string& what) {
    if (verbose_) std::printf("  step %d: %s\n", step_, what.c_str());
  }
  [[noreturn]] void Fail(const std::string& what) {
    throw Failure("step " + std::to_string(step_) + ": " + what);
  }
  template <typename T>
  T Must(absl::StatusOr<T> r, const std::string& what) {
    if (!r.ok()) Fail(what + " failed: " + r.status().ToString());
    return *std::move(r);
  }

  void Open() {
    FaultSpec spec;
    spec.unsynced_loss = true;
    faults_ = std::make_shared<FaultController>(spec);
    Options o;
    o.data_dir = dir_.path();
    o.durability = Durability::kSync;
    o.background_thread = false;
    o.log = [](const std::string&) {};
    o.test.faults = faults_;
    o.test.mutation = mutation_;
    auto e = Engine::Open(o, clock_);
    if (!e.ok()) Fail("open failed: " + e.status().ToString());
    engine_ = std::move(*e);
  }

  int64_t Now() { return clock_->NowMillis(); }

  void DoEnqueue() {
    int n = 1 + static_cast<int>(rng_() % 3);
    std::vector<EnqueueEntry> entries;
    std::vector<int64_t> delays;
    for (int i = 0; i < n; ++i) {
      int64_t delay = rng_() % 3 == 0 ? 100 + static_cast<int64_t>(rng_() % 4000) : 0;
      entries.push_back({"m" + std::to_string(next_payload_++), {}, delay, ""});
      delays.push_back(delay);
    }
    Say("enqueue " + std::to_string(n));
    auto ids = Must(EnqueueSync(*engine_, "q", entries), "enqueue");
    for (int i = 0; i < n; ++i) {
      queues_["q"][entries[i].payload] = {entries[i].payload, next_order_++, Now() + delays[i]};
    }
  }

  // Which payloads a Lease of max from queue must return, applying the model's changes
  // (including dead-lettering what it meets past max_deliveries, as the engine does).
  std::vector<std::string> ModelLease(const std::string& queue, uint32_t max, int64_t vt) {
    auto& msgs = queues_[queue];
    std::vector<Msg*> visible;
    for (auto& [p, m] : msgs) {
      if (m.visible_at <= Now()) visible.push_back(&m);
    }
    std::sort(visible.begin(), visible.end(), [](const Msg* a, const Msg* b) {
      return std::tie(a->visible_at, a->order) < std::tie(b->visible_at, b->order);
    });
    std::vector<std::string> take, dead;
    for (Msg* m : visible) {
      if (take.size() >= max) break;
      if (queue == "q" && m->count >= kMaxDeliveries) {
        dead.push_back(m->payload);
        continue;
      }
      take.push_back(m->payload);
    }
    for (const std::string& p : dead) {
      Msg moved{p, next_order_++, Now()};
      msgs.erase(p);
      queues_["dlq"][p] = moved;
    }
    for (const std::string& p : take) {
      Msg& m = msgs.at(p);
      ++m.count;
      ++m.gen;
      m.leased = true;
      m.visible_at = Now() + vt;
    }
    return take;
  }

  void DoLease(const std::string& queue) {
    uint32_t max = 1 + static_cast<uint32_t>(rng_() % 4);
    int64_t vt = 1000 + static_cast<int64_t>(rng_() % 5000);
    Say("lease " + std::to_string(max) + " from " + queue + " for " + std::to_string(vt) + " ms");
    LeaseRequest req{queue, max, vt, 0};
    auto got = Must(LeaseSync(*engine_, req), "lease");
    std::vector<std::string> want = ModelLease(queue, max, vt);
    std::vector<std::string> payloads;
    for (const LeasedMessage& m : got) payloads.push_back(m.payload);
    if (payloads != want) {
      Fail("lease from " + queue + " returned [" + Join(payloads) + "], the model says [" +
           Join(want) + "]");
    }
    for (const LeasedMessage& m : got) {
      const Msg& model = queues_[queue].at(m.payload);
      if (m.delivery_count != model.count) {
        Fail("lease of " + m.payload + ": delivery_count " + std::to_string(m.delivery_count) +
             ", the model says " + std::to_string(model.count));
      }
      if (m.lease_deadline_ms != model.visible_at) {
        Fail("lease of " + m.payload + ": deadline " + std::to_string(m.lease_deadline_ms) +
             ", the model says " + std::to_string(model.visible_at));
      }
      held_.push_back({queue, m.receipt, m.payload, model.gen});
    }
  }

  void DoReceipt() {
    if (held_.empty()) return;
    size_t i = rng_() % held_.size();
    Held h = held_[i];
    // Receipts are reused now and then: stale ones must be refused.
    if (rng_() % 3 != 0) held_.erase(held_.begin() + static_cast<std::ptrdiff_t>(i));
    int op = static_cast<int>(rng_() % 3);
    auto& msgs = queues_[h.queue];
    auto it = msgs.find(h.payload);
    bool gone = it == msgs.end();
    bool valid = !gone && it->second.leased && it->second.gen == h.gen;
    Outcome want = valid ? Outcome::kOk : Outcome::kLeaseLost;
    absl::StatusOr<std::vector<ReceiptOutcome>> got;
    if (op == 0) {
      Say("ack " + h.payload + " (lease " + std::to_string(h.gen) + ")");
      if (gone) want = Outcome::kOk;  // already gone: a retried Ack is fine
      got = AckSync(*engine_, h.queue, {h.receipt});
      if (valid) msgs.erase(it);
    } else if (op == 1) {
      int64_t delay = rng_() % 2 ? 0 : static_cast<int64_t>(rng_() % 4000);
      Say("nack " + h.payload + " (lease " + std::to_string(h.gen) + ") delay " +
          std::to_string(delay));
      got = NackSync(*engine_, h.queue, {h.receipt}, delay);
      if (valid) {
        it->second.leased = false;
        it->second.visible_at = Now() + delay;
      }
    } else {
      int64_t vt = 1000 + static_cast<int64_t>(rng_() % 5000);
      Say("extend " + h.payload + " (lease " + std::to_string(h.gen) + ") by " +
          std::to_string(vt));
      got = ExtendLeaseSync(*engine_, h.queue, {h.receipt}, vt);
      if (valid) it->second.visible_at = Now() + vt;
    }
    auto outcomes = Must(std::move(got), "receipt call");
    if (outcomes.size() != 1 || outcomes[0].outcome != want) {
      Fail("receipt of " + h.payload + " (lease " + std::to_string(h.gen) + "): outcome " +
           std::to_string(outcomes.empty() ? -1 : static_cast<int>(outcomes[0].outcome)) +
           ", the model says " + std::to_string(static_cast<int>(want)));
    }
  }

  // Every message of both queues, with its count and state, and the stats.
  void CheckContents() {
    Say("check contents");
    for (const char* queue : {"q", "dlq"}) {
      auto peek = Must(engine_->Peek(queue, 1000, ""), "peek");
      std::map<std::string, const PeekedMessage*> seen;
      for (const PeekedMessage& m : peek.messages) seen[m.payload] = &m;
      auto& msgs = queues_[queue];
      if (seen.size() != msgs.size()) {
        Fail(std::string(queue) + " holds " + std::to_string(seen.size()) +
             " messages, the model " + std::to_string(msgs.size()));
      }
      uint64_t ready = 0;
      for (auto& [p, m] : msgs) {
        auto s = seen.find(p);
        if (s == seen.end()) Fail(std::string(queue) + " lost " + p);
        MessageState state = m.visible_at <= Now() ? MessageState::kReady
                             : m.leased            ? MessageState::kLeased
                                                   : MessageState::kDelayed;
        ready += state == MessageState::kReady;
        if (s->second->delivery_count != m.count || s->second->state != state ||
            s->second->visible_time_ms != m.visible_at) {
          Fail(std::string(queue) + ": " + p + " has count " +
               std::to_string(s->second->delivery_count) + ", state " +
               std::to_string(static_cast<int>(s->second->state)) + ", visible at " +
               std::to_string(s->second->visible_time_ms) + "; the model says " +
               std::to_string(m.count) + ", " + std::to_string(static_cast<int>(state)) + ", " +
               std::to_string(m.visible_at));
        }
      }
      QueueInfo info = Must(engine_->GetQueue(queue), "get queue");
      if (info.stats.total != msgs.size() || info.stats.ready != ready) {
        Fail(std::string(queue) + " stats say total " + std::to_string(info.stats.total) +
             ", ready " + std::to_string(info.stats.ready) + "; the model " +
             std::to_string(msgs.size()) + ", " + std::to_string(ready));
      }
    }
  }

  static std::string Join(const std::vector<std::string>& v) {
    std::string out;
    for (const auto& s : v) out += (out.empty() ? "" : " ") + s;
    return out;
  }

  std::mt19937_64 rng_;
  const Mutation mutation_;
  const bool verbose_;
  int step_ = 0;
  testing::TempDir dir_;
  std::shared_ptr<ManualClock> clock_ = std::make_shared<ManualClock>();
  std::shared_ptr<FaultController> faults_;
  std::unique_ptr<Engine> engine_;
  std::map<std::string, std::map<std::string, Msg>> queues_;  // queue -> payload -> message
  std::vector<Held> held_;
  uint64_t next_payload_ = 0, next_order_ = 0;
};

}  // namespace
}  // namespace spool::engine

int main(int argc, char** argv) {
  using namespace spool::engine;
  uint64_t first = 1, seeds = 200;
  int ops = 120;
  int jobs = 4;
  bool verbose = false, expect_failure = false;
  Mutation mutation = Mutation::kNone;
  std::string mutation_name;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto next = [&]() -> std::string {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "engine_simulation: %s needs a value\n", a.c_str());
        std::exit(2);
      }
      return argv[++i];
    };
    if (a == "--seed") {
      first = std::stoull(next());
      seeds = 1;
      jobs = 1;
    } else if (a == "--seeds") {
      seeds = std::stoull(next());
    } else if (a == "--first-seed") {
      first = std::stoull(next());
    } else if (a == "--ops") {
      ops = std::stoi(next());
    } else if (a == "--jobs") {
      jobs = std::max(1, std::stoi(next()));
    } else if (a == "--verbose") {
      verbose = true;
    } else if (a == "--mutation") {
      mutation_name = next();
      auto m = ParseMutation(mutation_name);
      if (!m.ok()) {
        std::fprintf(stderr, "engine_simulation: %s\n", std::string(m.status().message()).c_str());
        return 2;
      }
      mutation = *m;
    } else if (a == "--expect-failure") {
      expect_failure = true;
    } else {
      std::fprintf(stderr,
                   "usage: engine_simulation [--seeds N] [--first-seed S] [--seed S] [--ops N] "
                   "[--jobs N] [--verbose] [--mutation NAME --expect-failure]\n");
      return 2;
    }
  }
  // Seeds run on several threads: a seed spends much of its time waiting (RocksDB pauses a
  // second after a background error, as it meets when a power cut interrupts a compaction).
  std::atomic<uint64_t> next{first};
  std::atomic<bool> failed{false};
  std::mutex mu;
  std::vector<std::thread> threads;
  for (int j = 0; j < jobs; ++j) {
    threads.emplace_back([&] {
      for (uint64_t seed = next++; seed < first + seeds && !failed.load(); seed = next++) {
        try {
          if (verbose) std::printf("seed %llu:\n", static_cast<unsigned long long>(seed));
          Simulation(seed, mutation, verbose).Run(ops);
        } catch (const Failure& f) {
          std::lock_guard<std::mutex> lock(mu);
          if (failed.exchange(true)) return;
          std::printf(
              "seed %llu FAILED at %s\nreproduce: engine_simulation --seed %llu --ops %d%s%s "
              "--verbose\n",
              static_cast<unsigned long long>(seed), f.what(),
              static_cast<unsigned long long>(seed), ops,
              mutation_name.empty() ? "" : " --mutation ", mutation_name.c_str());
        }
      }
    });
  }
  for (auto& t : threads) t.join();
  if (failed.load()) {
    if (expect_failure) std::printf("the simulation caught mutation %s\n", mutation_name.c_str());
    return expect_failure ? 0 : 1;
  }
  std::printf("%llu seeds passed (%llu .. %llu, %d operations each)\n",
              static_cast<unsigned long long>(seeds), static_cast<unsigned long long>(first),
              static_cast<unsigned long long>(first + seeds - 1), ops);
  if (expect_failure) {
    std::printf("mutation %s was NOT caught\n", mutation_name.c_str());
    return 1;
  }
  return 0;
}
