// Seeded simulation: the engine against a small in-memory model of the contract. Each seed
// runs a random sequence of enqueues (some delayed), leases, acks, nacks (with delays),
// extensions, stale receipts, clock advances, power cuts through the fault file system
// (unsynced-loss: whatever was not fsynced is gone) and clean restarts, with a fake clock, and
// checks every reply, every queue's contents and its stats against the model. Everything is
// single-threaded and every call completes before the next, so the model knows exactly what
// each reply must be.
//
// A subscription (one at a time, on q) comes and goes among them: it is fed whatever is
// visible up to its credit, settles receipts (its own and others'), is renewed by the
// background pass halfway through each lease until max_lease_duration, and releases what it
// holds when it ends (Unsubscribe, a clean restart; a power cut leaves the stored deadlines).
// The engine pushes deliveries from its own threads, so after each step the simulation runs
// the background pass (which feeds a subscription "at the latest") and waits until the
// deliveries the model expects have arrived, then compares them. Before a power cut it
// makes one more write, so that the renewals written in the background are durable and the
// model stays exact: losing a renewal is safe, but then either deadline would be right.
//
//   engine_simulation --seeds 2000            # CI: seeds 1..2000 on 4 threads
//   engine_simulation --seed 1234 --verbose   # replay one seed, printing every step
//   engine_simulation --mutation nack-ignores-delay --expect-failure
//
// Exit status: 0 all seeds passed (or, with --expect-failure, some seed failed); 1 otherwise.
#include <algorithm>
#include <atomic>
#include <condition_variable>
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

// The model of the open subscription: what it holds and when the background pass next looks
// at each (as the engine's DueFor: halfway through the lease, or at its end once a renewal
// could not reach past max_lease_duration).
struct SubModel {
  struct Held {
    uint32_t gen;
    int64_t delivered_at, deadline, due;
  };
  uint32_t max_outstanding = 1;
  int64_t vt = 0, max_lease = 0;
  std::map<std::string, Held> held;  // payload -> its lease here

  int64_t DueFor(const Held& h) const {
    if (h.deadline >= h.delivered_at + max_lease) return h.deadline;
    return h.deadline - vt / 2;
  }
};

// What the engine's threads delivered to the subscription.
struct Inbox {
  std::mutex mu;
  std::condition_variable cv;
  std::vector<LeasedMessage> got;

  void Add(std::vector<LeasedMessage> ms) {
    std::lock_guard<std::mutex> lock(mu);
    for (auto& m : ms) got.push_back(std::move(m));
    cv.notify_all();
  }
};

// Across all seeds, so a run shows the subscription paths were taken.
std::atomic<uint64_t> g_pushed{0}, g_renewed{0}, g_released{0};

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
    Must(CreateQueueSync(*engine_, "barrier", dlq), "create barrier");
    for (step_ = 0; step_ < ops; ++step_) {
      int r = static_cast<int>(rng_() % 100);
      if (r < 22) {
        DoEnqueue();
      } else if (r < 44) {
        DoLease(rng_() % 4 == 0 ? "dlq" : "q");
      } else if (r < 64) {
        DoReceipt();
      } else if (r < 72) {
        if (sub_) {
          DoSettle();
        } else {
          DoSubscribe();
        }
      } else if (r < 74) {
        if (sub_) DoUnsubscribe();
      } else if (r < 89) {
        int64_t ms = static_cast<int64_t>(rng_() % 3000);
        Say("advance " + std::to_string(ms) + " ms");
        clock_->AdvanceMillis(ms);
        engine_->Tick();
        ModelTick();
      } else if (r < 93) {
        Say("power cut and restart");
        if (sub_) Barrier();
        faults_->Crash();
        engine_.reset();
        sub_.reset();  // its leases stay as stored
        Open();
      } else if (r < 94) {
        Say("clean restart");
        engine_.reset();
        if (sub_) ModelRelease();  // Close releases what subscriptions hold
        sub_.reset();
        Open();
      } else {
        CheckContents();
      }
      if (sub_) {
        // The background pass feeds a subscription at the latest; then what the model
        // expects must arrive.
        engine_->Tick();
        ModelTick();
        Barrier();  // a feed that only dead-lettered is delivered nothing: wait for its write
        CheckDeliveries();
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
  std::vector<std::string> ModelLease(const std::string& queue, uint32_t max, int64_t vt,
                                      bool for_sub = false) {
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
      // A message whose lease ran out while the subscription held it is no longer its own.
      if (sub_) sub_->held.erase(p);
      if (for_sub) {
        SubModel::Held h{m.gen, Now(), m.visible_at, 0};
        h.due = sub_->DueFor(h);
        sub_->held[p] = h;
        want_.push_back({p, m.count, m.visible_at});
      }
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
      if (valid) {
        msgs.erase(it);
        if (sub_) sub_->held.erase(h.payload);
      }
    } else if (op == 1) {
      int64_t delay = rng_() % 2 ? 0 : static_cast<int64_t>(rng_() % 4000);
      Say("nack " + h.payload + " (lease " + std::to_string(h.gen) + ") delay " +
          std::to_string(delay));
      got = NackSync(*engine_, h.queue, {h.receipt}, delay);
      if (valid) {
        it->second.leased = false;
        it->second.visible_at = Now() + delay;
        if (sub_) sub_->held.erase(h.payload);
      }
    } else {
      int64_t vt = 1000 + static_cast<int64_t>(rng_() % 5000);
      Say("extend " + h.payload + " (lease " + std::to_string(h.gen) + ") by " +
          std::to_string(vt));
      got = ExtendLeaseSync(*engine_, h.queue, {h.receipt}, vt);
      if (valid) {
        it->second.visible_at = Now() + vt;
        Redue(h.payload, it->second.visible_at);
      }
    }
    auto outcomes = Must(std::move(got), "receipt call");
    if (outcomes.size() != 1 || outcomes[0].outcome != want) {
      Fail("receipt of " + h.payload + " (lease " + std::to_string(h.gen) + "): outcome " +
           std::to_string(outcomes.empty() ? -1 : static_cast<int>(outcomes[0].outcome)) +
           ", the model says " + std::to_string(static_cast<int>(want)));
    }
  }

  // Returns once every write the engine has started is durable: groups commit in order.
  void Barrier() { Must(EnqueueSync(*engine_, "barrier", {{"b", {}, 0, ""}}), "barrier"); }

  // The subscription's lease of payload, if it holds one, now ends at deadline.
  void Redue(const std::string& payload, int64_t deadline) {
    if (!sub_) return;
    auto it = sub_->held.find(payload);
    if (it == sub_->held.end()) return;
    it->second.deadline = deadline;
    it->second.due = sub_->DueFor(it->second);
  }

  // Fills the subscription's credit from what is visible, as the engine feeds it.
  void ModelFeed() {
    if (!sub_ || sub_->held.size() >= sub_->max_outstanding) return;
    ModelLease("q", sub_->max_outstanding - static_cast<uint32_t>(sub_->held.size()), sub_->vt,
               true);
  }

  // The background pass: renew what is due (up to max_lease_duration after delivery), forget
  // what has ended, then feed.
  void ModelTick() {
    if (!sub_) return;
    auto& msgs = queues_["q"];
    for (auto it = sub_->held.begin(); it != sub_->held.end();) {
      SubModel::Held& h = it->second;
      if (h.due > Now()) {
        ++it;
        continue;
      }
      auto m = msgs.find(it->first);
      if (m == msgs.end() || !m->second.leased || m->second.gen != h.gen ||
          m->second.visible_at <= Now()) {
        it = sub_->held.erase(it);
        continue;
      }
      int64_t target = std::min(Now() + sub_->vt, h.delivered_at + sub_->max_lease);
      if (target > m->second.visible_at) {
        m->second.visible_at = target;
        ++g_renewed;
      }
      h.deadline = m->second.visible_at;
      h.due = std::max(sub_->DueFor(h), Now() + 1);
      ++it;
    }
    ModelFeed();
  }

  // What Unsubscribe and Close do: every message still leased to the subscription is visible
  // now, its delivery counted. Returns how many.
  uint64_t ModelRelease() {
    uint64_t n = 0;
    auto& msgs = queues_["q"];
    for (const auto& [p, h] : sub_->held) {
      auto m = msgs.find(p);
      if (m == msgs.end() || !m->second.leased || m->second.gen != h.gen) continue;
      m->second.leased = false;
      m->second.visible_at = Now();
      ++n;
    }
    g_released += n;
    sub_->held.clear();
    return n;
  }

  void DoSubscribe() {
    sub_ = std::make_unique<SubModel>();
    sub_->max_outstanding = 1 + static_cast<uint32_t>(rng_() % 4);
    sub_->vt = 1000 + static_cast<int64_t>(rng_() % 5000);
    std::optional<int64_t> max_lease;
    if (rng_() % 2 == 0) max_lease = sub_->vt + static_cast<int64_t>(rng_() % (2 * sub_->vt));
    sub_->max_lease = max_lease.value_or(Limits::kDefaultMaxLease);
    Say("subscribe to q, max_outstanding " + std::to_string(sub_->max_outstanding) + ", vt " +
        std::to_string(sub_->vt) + " ms, max lease " + std::to_string(sub_->max_lease) + " ms");
    inbox_ = std::make_shared<Inbox>();
    delivered_ = 0;
    want_.clear();
    SubscribeRequest req{"q", sub_->max_outstanding, sub_->vt, max_lease, 0};
    SubscriptionCallbacks cb{
        .deliver = [inbox = inbox_](std::vector<LeasedMessage> ms) { inbox->Add(std::move(ms)); },
        .ended = [](absl::Status) {}};
    handle_ = Must(engine_->Subscribe(req, std::move(cb)), "subscribe");
    ModelFeed();
  }

  void DoSettle() {
    // Receipts of q held by anyone (the subscription or a Lease), now and then one of dlq's.
    std::vector<Held> picked;
    int n = 1 + static_cast<int>(rng_() % 3);
    for (int k = 0; k < n && !held_.empty(); ++k) {
      size_t i = rng_() % held_.size();
      picked.push_back(held_[i]);
      if (rng_() % 3 != 0) held_.erase(held_.begin() + static_cast<std::ptrdiff_t>(i));
    }
    int64_t delay = rng_() % 2 ? 0 : static_cast<int64_t>(rng_() % 4000);
    std::vector<std::string> acks, nacks;
    std::vector<Outcome> want_acks, want_nacks;
    std::string said = "settle on the subscription:";
    auto& msgs = queues_["q"];
    // The engine applies every ack, then every nack: split first, then apply in that order.
    std::vector<Held> ack_list, nack_list;
    for (const Held& h : picked) (rng_() % 2 ? ack_list : nack_list).push_back(h);
    for (int pass = 0; pass < 2; ++pass) {
      for (const Held& h : pass == 0 ? ack_list : nack_list) {
        said += (pass == 0 ? " ack " : " nack ") + h.payload + "@" + h.queue + "/" +
                std::to_string(h.gen);
        Outcome want;
        auto it = msgs.find(h.payload);
        if (h.queue != "q") {
          want = Outcome::kInvalidReceipt;
        } else if (it == msgs.end()) {
          want = pass == 0 ? Outcome::kOk : Outcome::kLeaseLost;
        } else if (!it->second.leased || it->second.gen != h.gen) {
          want = Outcome::kLeaseLost;
        } else {
          want = Outcome::kOk;
          sub_->held.erase(h.payload);
          if (pass == 0) {
            msgs.erase(it);
          } else {
            it->second.leased = false;
            it->second.visible_at = Now() + delay;
          }
        }
        (pass == 0 ? acks : nacks).push_back(h.receipt);
        (pass == 0 ? want_acks : want_nacks).push_back(want);
      }
    }
    Say(said + " (nack delay " + std::to_string(delay) + ")");
    auto r = Must(SettleSync(*engine_, handle_, acks, nacks, delay), "settle");
    inbox_->Add(std::move(r.delivered));
    auto outcomes = [](const std::vector<ReceiptOutcome>& v) {
      std::vector<Outcome> out;
      for (const auto& o : v) out.push_back(o.outcome);
      return out;
    };
    if (outcomes(r.acks) != want_acks || outcomes(r.nacks) != want_nacks) {
      Fail("settle: outcomes differ from the model's (" + said + ")");
    }
    ModelFeed();
  }

  void DoUnsubscribe() {
    Say("unsubscribe");
    uint64_t n = Must(UnsubscribeSync(*engine_, handle_), "unsubscribe");
    CheckDeliveries();  // nothing delivered before it may be missing
    uint64_t want = ModelRelease();
    if (n != want) {
      Fail("unsubscribe released " + std::to_string(n) + ", the model says " +
           std::to_string(want));
    }
    sub_.reset();
    handle_.reset();
  }

  // Waits (for the engine's threads, at most 10 s) until the deliveries the model expects
  // have arrived; compares each step's new ones, in any order, with the model's.
  void CheckDeliveries() {
    std::vector<LeasedMessage> got;
    {
      std::unique_lock<std::mutex> lock(inbox_->mu);
      inbox_->cv.wait_for(lock, std::chrono::seconds(10),
                          [&] { return inbox_->got.size() >= delivered_ + want_.size(); });
      got.assign(inbox_->got.begin() + static_cast<std::ptrdiff_t>(delivered_), inbox_->got.end());
    }
    delivered_ += got.size();
    g_pushed += got.size();
    std::vector<Want> seen;
    for (const LeasedMessage& m : got) {
      seen.push_back({m.payload, m.delivery_count, m.lease_deadline_ms});
      held_.push_back({"q", m.receipt, m.payload, m.delivery_count});  // gen == count in q
    }
    std::sort(seen.begin(), seen.end());
    std::sort(want_.begin(), want_.end());
    if (seen != want_) {
      auto list = [](const std::vector<Want>& v) {
        std::string out;
        for (const Want& w : v) {
          out += (out.empty() ? "" : " ") + w.payload + "#" + std::to_string(w.count) + "@" +
                 std::to_string(w.deadline);
        }
        return out;
      };
      Fail("the subscription was delivered [" + list(seen) + "], the model says [" + list(want_) +
           "]");
    }
    want_.clear();
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
  // The subscription, while one is open, and what it was delivered.
  struct Want {
    std::string payload;
    uint32_t count;
    int64_t deadline;
    auto operator<=>(const Want&) const = default;
  };
  std::unique_ptr<SubModel> sub_;
  std::shared_ptr<Subscription> handle_;
  std::shared_ptr<Inbox> inbox_;
  size_t delivered_ = 0;    // how many of inbox_->got have been compared
  std::vector<Want> want_;  // deliveries the model expects and the engine has not yet shown
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
  std::printf(
      "%llu seeds passed (%llu .. %llu, %d operations each); subscriptions: %llu messages "
      "pushed, %llu lease renewals, %llu released at their end\n",
      static_cast<unsigned long long>(seeds), static_cast<unsigned long long>(first),
      static_cast<unsigned long long>(first + seeds - 1), ops,
      static_cast<unsigned long long>(g_pushed.load()),
      static_cast<unsigned long long>(g_renewed.load()),
      static_cast<unsigned long long>(g_released.load()));
  if (expect_failure) {
    std::printf("mutation %s was NOT caught\n", mutation_name.c_str());
    return 1;
  }
  return 0;
}
