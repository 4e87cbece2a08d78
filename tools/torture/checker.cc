#include "tools/torture/checker.h"

#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <climits>
#include <fstream>
#include <set>
#include <sstream>
#include <tuple>

namespace spool::torture {
namespace {

constexpr char kOk[] = "ok", kFail[] = "fail", kUnknown[] = "unknown";

std::string Ms(int64_t us) {
  std::ostringstream s;
  s.setf(std::ios::fixed);
  s.precision(1);
  s << us / 1000.0 << " ms";
  return s.str();
}

// One message handed out, as the checker sees it.
struct Deliv {
  const Event* lease;
  uint32_t count;
  bool intact;
  int64_t invoke() const { return lease->invoke_us(); }
  int64_t complete() const { return lease->complete_us(); }
  int64_t vt_us() const { return lease->visibility_ms() * 1000; }
  uint64_t stream() const { return lease->stream(); }
  int64_t max_lease_us() const { return lease->max_lease_ms() * 1000; }
};

// One receipt used in an Ack/Nack/Extend (or given up), as the checker sees it.
struct Use {
  const Event* call;
  std::string outcome;  // OK, LEASE_LOST, INVALID_RECEIPT, or "" when unknown
  bool ok() const { return outcome == "OK"; }
  bool maybe() const { return outcome == "OK" || outcome.empty(); }  // OK or unknown
};

using MsgKey = std::pair<std::string, std::string>;  // queue, uid
using RcptKey = std::tuple<std::string, std::string, uint32_t>;

class Checker {
 public:
  Checker(const std::vector<Event>& history, const CheckOptions& options)
      : h_(history), o_(options) {}

  Report Run() {
    Index();
    CheckPayloads();     // S1 S2 S3
    CheckLeases();       // S4 S7
    CheckReceipts();     // S5 S6 S8
    CheckDeadLetters();  // S9
    CheckLiveness();     // L1 L2
    Figures();
    return std::move(r_);
  }

 private:
  void Add(const char* rule, std::string detail) {
    r_.violations.push_back({rule, std::move(detail)});
  }

  // Downtime: from the moment a crashed spoold was reaped to the next start. A call inside one
  // never reached a server.
  bool InDowntime(const Event& e) const {
    for (auto [from, to] : downtime_) {
      if (e.invoke_us() >= from && e.complete_us() <= to) return true;
    }
    return false;
  }

  std::string Outcome(const Event& e) const {
    if (e.outcome() == kUnknown && InDowntime(e)) return kFail;
    return e.outcome();
  }

  void Index() {
    int64_t last_crash = -1;
    for (const Event& e : h_) {
      const std::string& t = e.type();
      if (t == "config") {
        if (e.queue() == o_.queue) {
          max_deliveries_ = e.max_deliveries();
          dlq_ = e.dead_letter_queue();
        }
      } else if (t == "crash") {
        ++r_.crashes;
        last_crash = e.complete_us();
        crashes_.push_back(&e);
      } else if (t == "start") {
        if (last_crash >= 0) downtime_.emplace_back(last_crash, e.invoke_us());
        last_crash = -1;
      } else if (t == "ready") {
        readies_.push_back(&e);
      } else if (t == "load_stop") {
        load_stops_.push_back(&e);
      } else if (t == "drain_end") {
        drained_ = true;
      } else if (t == "stream_end") {
        stream_ends_[e.stream()] = &e;
      }
    }
    for (const Event& e : h_) {
      const std::string& t = e.type();
      if (t != "enqueue" && t != "lease" && t != "ack" && t != "nack" && t != "extend" &&
          t != "abandon") {
        continue;
      }
      std::string outcome = Outcome(e);
      if (e.outcome() == kUnknown && outcome == kFail) ++r_.unknown_made_failed;
      if (t == "enqueue") {
        for (const std::string& uid : e.uids()) {
          auto& slot = enqueued_[uid];
          // A uid is sent once; keep the strongest claim if a history repeats it.
          if (slot.empty() || outcome == kOk || (outcome == kUnknown && slot == kFail)) {
            slot = outcome;
          }
        }
        (outcome == kOk     ? r_.enqueued_ok
         : outcome == kFail ? r_.enqueued_failed
                            : r_.enqueued_unknown) += e.uids_size();
      } else if (t == "lease") {
        if (outcome == kUnknown) unknown_leases_[e.queue()].push_back(&e);
        if (outcome != kOk) continue;
        for (const Delivery& d : e.deliveries()) {
          ++r_.deliveries;
          if (e.stream() != 0) ++r_.stream_deliveries;
          if (e.queue() == dlq_ && !dlq_.empty()) ++r_.dead_letter_deliveries;
          if (d.uid().empty() || !d.intact()) {
            Add("S2", "a delivery from " + e.queue() + " (id " + d.message_id() +
                          ") has a damaged payload");
            continue;
          }
          deliveries_[{e.queue(), d.uid()}].push_back({&e, d.delivery_count(), d.intact()});
          if (first_delivery_.find(d.uid()) == first_delivery_.end()) {
            first_delivery_[d.uid()] = &e;
          }
        }
      } else {
        for (const ReceiptResult& rr : e.receipts()) {
          uses_[{e.queue(), rr.uid(), rr.delivery_count()}].push_back(
              {&e, outcome == kOk ? rr.outcome() : ""});
          if (outcome == kFail)
            uses_[{e.queue(), rr.uid(), rr.delivery_count()}].back().outcome = "FAILED";
        }
      }
    }
    for (auto& [key, ds] : deliveries_) {
      std::sort(ds.begin(), ds.end(),
                [](const Deliv& a, const Deliv& b) { return a.complete() < b.complete(); });
    }
  }

  const std::vector<Use>& UsesOf(const std::string& queue, const std::string& uid,
                                 uint32_t count) const {
    static const std::vector<Use> kNone;
    auto it = uses_.find({queue, uid, count});
    return it == uses_.end() ? kNone : it->second;
  }

  // S1 S2 S3.
  void CheckPayloads() {
    for (const auto& [uid, first] : first_delivery_) {
      auto it = enqueued_.find(uid);
      if (it == enqueued_.end()) {
        Add("S2", "message " + uid + " was delivered but never enqueued");
      } else if (it->second == kFail) {
        Add("S3", "message " + uid + " was delivered although its enqueue definitely failed");
      }
    }
    if (!drained_) return;
    for (const auto& [uid, outcome] : enqueued_) {
      if (outcome == kOk && first_delivery_.find(uid) == first_delivery_.end()) {
        Add("S1", "message " + uid + " was enqueued OK and never delivered: lost");
      }
    }
  }

  // The lease of d is valid at least until this (a lower bound of the server's deadline).
  // ExtendLease sets the deadline to now + its timeout, which may shorten it: one that returned
  // OK replaces the bound, one whose outcome is unknown may have.
  int64_t ValidUntil(const std::string& queue, const std::string& uid, const Deliv& d) const {
    int64_t until = d.invoke() + d.vt_us();
    if (d.stream() != 0) {
      // Renewed while its stream lives: at least until the client began to end the stream (or
      // saw it break), spoold crashed, or max_lease_duration ran out, whichever came first.
      until = std::max(until, std::min({StreamEnd(d).first, NextCrash(d.invoke()),
                                        d.invoke() + d.max_lease_us()}));
    }
    for (const Use& u : UsesOf(queue, uid, d.count)) {
      if (u.call->type() != "extend") continue;
      int64_t extended = u.call->invoke_us() + u.call->visibility_ms() * 1000;
      if (u.ok()) until = extended;
      if (u.outcome.empty()) until = std::min(until, extended);
    }
    return until;
  }

  // S4 S7.
  void CheckLeases() {
    for (const auto& [key, ds] : deliveries_) {
      const auto& [queue, uid] = key;
      for (size_t i = 0; i + 1 < ds.size(); ++i) {
        const Deliv& a = ds[i];
        const Deliv& b = ds[i + 1];
        bool ended = false;
        for (const Use& u : UsesOf(queue, uid, a.count)) {
          if ((u.call->type() == "ack" || u.call->type() == "nack") && u.maybe() &&
              u.call->invoke_us() < b.complete()) {
            ended = true;
          }
        }
        int64_t until = ValidUntil(queue, uid, a);
        if (!ended && b.complete() < until - o_.slack_us) {
          Add("S4", "message " + uid + " in " + queue + ": delivery " + std::to_string(b.count) +
                        " came " + Ms(until - b.complete()) + " before the lease of delivery " +
                        std::to_string(a.count) + " could end");
        }
      }
      for (size_t i = 0; i < ds.size(); ++i) {
        if (queue == o_.queue && max_deliveries_ > 0 && ds[i].count > max_deliveries_) {
          Add("S7", "message " + uid + " delivered with count " + std::to_string(ds[i].count) +
                        " > max_deliveries " + std::to_string(max_deliveries_));
        }
        for (size_t j = i + 1; j < ds.size(); ++j) {
          const Deliv& a = ds[i];
          const Deliv& b = ds[j];
          if (a.count == b.count) {
            Add("S7", "message " + uid + " in " + queue + " delivered twice with count " +
                          std::to_string(a.count));
          } else if (a.complete() < b.invoke() && a.count > b.count) {
            Add("S7", "message " + uid + " in " + queue + ": count went from " +
                          std::to_string(a.count) + " back to " + std::to_string(b.count));
          }
        }
      }
    }
  }

  // S5 S6 S8.
  void CheckReceipts() {
    for (const auto& [rk, uses] : uses_) {
      const auto& [queue, uid, count] = rk;
      auto dit = deliveries_.find({queue, uid});
      static const std::vector<Deliv> kNone;
      const std::vector<Deliv>& ds = dit == deliveries_.end() ? kNone : dit->second;
      for (const Use& u : uses) {
        const Event& c = *u.call;
        if (!u.ok()) continue;
        if (c.type() == "ack") {
          for (const Deliv& d : ds) {
            if (d.invoke() > c.complete_us()) {
              Add("S5", "message " + uid + " in " + queue + " was acked OK and delivered again " +
                            Ms(d.invoke() - c.complete_us()) + " later (count " +
                            std::to_string(d.count) + ")");
            }
          }
          for (auto it = uses_.lower_bound({queue, uid, 0});
               it != uses_.end() && std::get<0>(it->first) == queue &&
               std::get<1>(it->first) == uid;
               ++it) {
            for (const Use& u2 : it->second) {
              if (u2.ok() && u2.call->type() != "ack" && u2.call->invoke_us() > c.complete_us()) {
                Add("S5", "message " + uid + " in " + queue + " was acked OK and then " +
                              u2.call->type() + "ed OK");
              }
            }
          }
          if (StaleAckAccepted(queue, uid, count, c, ds)) {
            Add("S6", "a receipt of delivery " + std::to_string(count) + " of " + uid +
                          " was accepted by ack after the message was leased again, while it "
                          "was still in " +
                          queue);
          }
          continue;
        }
        if (c.type() != "nack" && c.type() != "extend") continue;
        // S6: used after the message was leased again, or after a nack with this receipt.
        for (const Deliv& d : ds) {
          if (d.count > count && d.complete() < c.invoke_us()) {
            Add("S6", "a receipt of delivery " + std::to_string(count) + " of " + uid +
                          " was accepted by " + c.type() + " after delivery " +
                          std::to_string(d.count));
            break;
          }
        }
        for (const Use& other : uses) {
          if (other.call != u.call && other.call->type() == "nack" && other.ok() &&
              other.call->complete_us() < c.invoke_us()) {
            Add("S6", "a receipt of delivery " + std::to_string(count) + " of " + uid +
                          " was accepted by " + c.type() + " after it was nacked");
            break;
          }
        }
        // S8: no delivery after this nack before its delay.
        if (c.type() == "nack") {
          int64_t visible = c.invoke_us() + c.delay_ms() * 1000;
          for (const Deliv& d : ds) {
            if (d.count > count && d.complete() > c.invoke_us() &&
                d.complete() < visible - o_.slack_us) {
              Add("S8", "message " + uid + " nacked with delay " + std::to_string(c.delay_ms()) +
                            " ms came back " + Ms(visible - d.complete()) + " early");
            }
          }
        }
      }
    }
  }

  // An Ack of a message already gone is OK by contract, so a stale Ack is wrong only if the
  // message was provably still there: leased again before the Ack was sent, and nothing could
  // have removed it before the Ack was applied (no other Ack that may have worked and may have
  // come first, no dead-lettering possible).
  bool StaleAckAccepted(const std::string& queue, const std::string& uid, uint32_t count,
                        const Event& ack, const std::vector<Deliv>& ds) const {
    bool leased_again = false;
    for (const Deliv& d : ds) {
      if (d.count > count && d.complete() < ack.invoke_us()) leased_again = true;
      if (queue == o_.queue && max_deliveries_ > 0 && d.count >= max_deliveries_) return false;
    }
    if (!leased_again || (queue == o_.queue && deliveries_.contains({dlq_, uid}))) return false;
    for (auto it = uses_.lower_bound({queue, uid, 0});
         it != uses_.end() && std::get<0>(it->first) == queue && std::get<1>(it->first) == uid;
         ++it) {
      for (const Use& u : it->second) {
        // Any Ack sent before this one returned may have been applied first.
        if (u.call != &ack && u.call->type() == "ack" && u.maybe() &&
            u.call->invoke_us() < ack.complete_us()) {
          return false;
        }
      }
    }
    return true;
  }

  // When delivery d's lease ended at the earliest (expiry, or a nack with its delay), and at
  // the latest (for liveness).
  std::pair<int64_t, int64_t> VisibleAgain(const std::string& queue, const std::string& uid,
                                           const Deliv& d) const {
    int64_t lo = ValidUntil(queue, uid, d);
    int64_t hi = d.complete() + d.vt_us();
    if (d.stream() != 0) {
      // The last renewal came before the stream ended and reached no further than
      // max_lease_duration after delivery; a stream end that spoold lived through released it.
      hi = std::max(hi, std::min(StreamEnd(d).second + d.vt_us(), d.complete() + d.max_lease_us()));
    }
    for (const Use& u : UsesOf(queue, uid, d.count)) {
      const Event& c = *u.call;
      if (c.type() == "extend" && u.maybe()) {
        hi = std::max(hi, c.complete_us() + c.visibility_ms() * 1000);
      } else if (c.type() == "nack" && u.maybe()) {
        // A nack of unknown outcome (a stream's release at its end, a call cut by a crash)
        // may have taken effect as soon as it was sent.
        lo = std::min(lo, c.invoke_us() + c.delay_ms() * 1000);
        hi = std::max(hi, c.complete_us() + c.delay_ms() * 1000);
      }
    }
    return {lo, hi};
  }

  // When the client began to end d's stream (or saw it break), and when its status arrived;
  // a stream without a recorded end counts as never ending.
  std::pair<int64_t, int64_t> StreamEnd(const Deliv& d) const {
    auto it = stream_ends_.find(d.stream());
    if (it == stream_ends_.end()) return {INT64_MAX / 4, INT64_MAX / 4};
    return {it->second->invoke_us(), it->second->complete_us()};
  }

  // The first crash sent after t.
  int64_t NextCrash(int64_t t) const {
    int64_t next = INT64_MAX / 4;
    for (const Event* c : crashes_) {
      if (c->invoke_us() > t) next = std::min(next, c->invoke_us());
    }
    return next;
  }

  bool Acked(const std::string& queue, const std::string& uid, const Deliv& d) const {
    for (const Use& u : UsesOf(queue, uid, d.count)) {
      if (u.call->type() == "ack" && u.maybe()) return true;
    }
    return false;
  }

  // S9.
  void CheckDeadLetters() {
    if (dlq_.empty() || max_deliveries_ == 0) return;
    for (const auto& [key, dlq_ds] : deliveries_) {
      if (key.first != dlq_) continue;
      const std::string& uid = key.second;
      auto it = deliveries_.find({o_.queue, uid});
      uint32_t seen = 0;
      int64_t from = 0;
      if (it != deliveries_.end()) {
        for (const Deliv& d : it->second) {
          if (d.count >= seen) {
            seen = d.count;
            from = VisibleAgain(o_.queue, uid, d).first;
          }
        }
      }
      if (seen >= max_deliveries_) continue;
      // Deliveries we did not see can only come from Lease calls whose replies were lost.
      int64_t to = dlq_ds.front().complete();
      bool could_have = false;
      for (const Event* e : unknown_leases_[o_.queue]) {
        if (e->complete_us() >= from - o_.slack_us && e->invoke_us() <= to) could_have = true;
      }
      if (!could_have) {
        Add("S9", "message " + uid + " was dead-lettered after " + std::to_string(seen) +
                      " deliveries (max_deliveries " + std::to_string(max_deliveries_) + ")");
      }
    }
    if (!drained_) return;
    for (const auto& [key, ds] : deliveries_) {
      if (key.first != o_.queue) continue;
      const Deliv& last = ds.back();
      if (last.count != max_deliveries_ || Acked(key.first, key.second, last)) continue;
      if (deliveries_.find({dlq_, key.second}) == deliveries_.end()) {
        Add("S9", "message " + key.second + ": its delivery " + std::to_string(last.count) +
                      " (the last allowed) ended unacked, and it never reached " + dlq_);
      }
    }
  }

  // L1 L2.
  void CheckLiveness() {
    for (const Event* stop : load_stops_) {
      int64_t t = stop->invoke_us();
      int64_t restart = 0;
      for (const Event* r : readies_) {
        if (r->complete_us() <= t) restart = std::max(restart, r->complete_us());
      }
      for (const auto& [key, ds] : deliveries_) {
        const auto& [queue, uid] = key;
        const Deliv* last = nullptr;
        for (const Deliv& d : ds) {
          if (d.invoke() < t) last = &d;
        }
        if (last == nullptr || Acked(queue, uid, *last)) continue;
        // Already dead-lettered (after a delivery whose reply was lost): the dead-letter
        // queue's own deliveries are judged on their own.
        if (queue == o_.queue && deliveries_.contains({dlq_, uid})) continue;
        auto [visible_from, visible_by] = VisibleAgain(queue, uid, *last);
        int64_t due = std::max(visible_by, restart) + o_.liveness_grace_us;
        // A Lease whose reply was lost in a crash may have taken the message once it was
        // visible again (the next delivery seen then skips a count): it stayed hidden until
        // that lease ended, at the latest the call's end plus its visibility timeout.
        int64_t hidden_due = due;
        for (const Event* e : unknown_leases_[queue]) {
          if (e->complete_us() >= visible_from - o_.slack_us && e->invoke_us() <= due) {
            hidden_due = std::max(
                hidden_due, e->complete_us() + e->visibility_ms() * 1000 + o_.liveness_grace_us);
          }
        }
        bool to_dlq = queue == o_.queue && max_deliveries_ > 0 && last->count >= max_deliveries_;
        const std::vector<Deliv>* next = nullptr;
        if (to_dlq) {
          auto it = deliveries_.find({dlq_, uid});
          if (it != deliveries_.end()) next = &it->second;
        } else {
          next = &ds;
        }
        bool came = false;
        if (next != nullptr) {
          for (const Deliv& d : *next) {
            int64_t by = !to_dlq && d.count > last->count + 1 ? hidden_due : due;
            if ((to_dlq || d.count > last->count) && d.complete() <= by) came = true;
          }
        }
        if (!came) {
          Add("L1", "message " + uid + " in " + queue + " (delivery " +
                        std::to_string(last->count) + " unacked at load stop) was not " +
                        (to_dlq ? "dead-lettered and delivered" : "delivered again") +
                        " within its deadline + 1 s");
        }
      }
    }
    for (const Event* r : readies_) {
      if (r->ready_messages() == 0) continue;
      int64_t at = r->complete_us();
      int64_t next_crash = INT64_MAX;
      for (const Event* c : crashes_) {
        if (c->invoke_us() > at) next_crash = std::min(next_crash, c->invoke_us());
      }
      int64_t first = INT64_MAX;
      for (const Event& e : h_) {
        if (e.type() == "lease" && e.queue() == o_.queue && e.outcome() == kOk &&
            e.deliveries_size() > 0 && e.complete_us() >= at && e.complete_us() < next_crash) {
          first = std::min(first, e.complete_us());
        }
      }
      if (first != INT64_MAX)
        r_.max_restart_to_lease_us = std::max(r_.max_restart_to_lease_us, first - at);
      if (first > at + o_.liveness_grace_us && next_crash > at + o_.liveness_grace_us) {
        Add("L2", "after the restart at " + Ms(at) + " with " +
                      std::to_string(r->ready_messages()) +
                      " ready messages, no Lease returned one within 1 s");
      }
    }
  }

  // Duplicates by cause and how long after becoming visible again they came.
  void Figures() {
    for (const auto& [key, ds] : deliveries_) {
      const auto& [queue, uid] = key;
      for (size_t i = 1; i < ds.size(); ++i) {
        const Deliv& a = ds[i - 1];
        const Deliv& b = ds[i];
        std::string cause = "lease expired";
        bool nacked = false;
        for (const Use& u : UsesOf(queue, uid, a.count)) {
          const std::string& t = u.call->type();
          if (t == "nack" && u.ok()) {
            cause = "nacked", nacked = true;
          } else if (cause == "lease expired" && t == "abandon") {
            cause = "abandoned by the worker";
          } else if (cause == "lease expired" && t == "ack" && u.outcome.empty()) {
            cause = "ack lost in a crash";
          } else if (cause == "lease expired" && t == "ack" && u.outcome == "LEASE_LOST") {
            cause = "worker too slow";
          }
        }
        if (b.count > a.count + 1) cause = "lease reply lost in a crash";
        ++r_.redeliveries_by_cause[cause];
        int64_t visible = nacked ? VisibleAgain(queue, uid, a).first : ValidUntil(queue, uid, a);
        int64_t delay_ms = (b.complete() - visible) / 1000;
        const char* bucket = delay_ms < 10     ? "a: < 10 ms"
                             : delay_ms < 100  ? "b: 10-100 ms"
                             : delay_ms < 250  ? "c: 100-250 ms"
                             : delay_ms < 500  ? "d: 250-500 ms"
                             : delay_ms < 1000 ? "e: 0.5-1 s"
                             : delay_ms < 2000 ? "f: 1-2 s"
                                               : "g: >= 2 s";
        ++r_.redelivery_delay_ms[bucket];
      }
    }
  }

  const std::vector<Event>& h_;
  const CheckOptions o_;
  Report r_;
  uint32_t max_deliveries_ = 0;
  std::string dlq_;
  bool drained_ = false;
  std::vector<std::pair<int64_t, int64_t>> downtime_;
  std::vector<const Event*> crashes_, readies_, load_stops_;
  std::map<std::string, std::string> enqueued_;  // uid -> ok/fail/unknown
  std::map<std::string, const Event*> first_delivery_;
  std::map<MsgKey, std::vector<Deliv>> deliveries_;
  std::map<RcptKey, std::vector<Use>> uses_;
  std::map<std::string, std::vector<const Event*>> unknown_leases_;
  std::map<uint64_t, const Event*> stream_ends_;
};

}  // namespace

Report Check(const std::vector<Event>& history, const CheckOptions& options) {
  return Checker(history, options).Run();
}

std::string Report::Format(size_t per_rule) const {
  std::ostringstream out;
  std::map<std::string, std::vector<const Violation*>> by_rule;
  for (const Violation& v : violations) by_rule[v.rule].push_back(&v);
  if (violations.empty()) {
    out << "checker: PASS, no violations\n";
  } else {
    out << "checker: FAIL, " << violations.size() << " violations:";
    for (const auto& [rule, vs] : by_rule) out << " " << rule << "=" << vs.size();
    out << "\n";
    for (const auto& [rule, vs] : by_rule) {
      for (size_t i = 0; i < vs.size() && i < per_rule; ++i) {
        out << "  " << rule << ": " << vs[i]->detail << "\n";
      }
      if (vs.size() > per_rule)
        out << "  " << rule << ": ... " << vs.size() - per_rule << " more\n";
    }
  }
  out << "enqueued: " << enqueued_ok << " ok, " << enqueued_failed << " failed, "
      << enqueued_unknown << " unknown; deliveries: " << deliveries << " ("
      << dead_letter_deliveries << " from the dead-letter queue, " << stream_deliveries
      << " pushed on Subscribe streams); crashes: " << crashes
      << "; unknown calls made while spoold was down (counted as failed): " << unknown_made_failed
      << "\n";
  out << "redeliveries by cause:";
  if (redeliveries_by_cause.empty()) out << " none";
  for (const auto& [cause, n] : redeliveries_by_cause) out << " [" << cause << ": " << n << "]";
  out << "\nredelivery delay after becoming visible again:";
  for (const auto& [bucket, n] : redelivery_delay_ms)
    out << " [" << bucket.substr(3) << ": " << n << "]";
  out << "\nworst restart-to-first-lease: " << Ms(max_restart_to_lease_us) << "\n";
  return out.str();
}

bool ReadHistory(const std::string& path, std::vector<Event>* out, std::string* error) {
  std::ifstream in(path);
  if (!in) {
    *error = "cannot open " + path;
    return false;
  }
  std::string line;
  int n = 0;
  while (std::getline(in, line)) {
    ++n;
    if (line.empty()) continue;
    Event e;
    auto s = google::protobuf::util::JsonStringToMessage(line, &e);
    if (!s.ok()) {
      *error = path + ":" + std::to_string(n) + ": " + std::string(s.message());
      return false;
    }
    out->push_back(std::move(e));
  }
  return true;
}

std::string ToJsonLine(const Event& e) {
  std::string json;
  google::protobuf::util::JsonPrintOptions o;
  o.preserve_proto_field_names = true;
  (void)google::protobuf::util::MessageToJsonString(e, &json, o);
  return json;
}

}  // namespace spool::torture
