// Subscriptions: standing leases the engine keeps filling (as a waiter among the queue's
// waiters, or straight from an enqueue's hand-off), renews in the background pass, and
// releases in one write when they end.
#include "engine/engine_impl.h"

namespace spool::engine::internal {

namespace {

// When the background pass next looks at a held message: halfway through its lease, to renew
// it; or, once a renewal could not reach past max_lease_duration, when the lease ends.
int64_t DueFor(const Subscription& s, const Subscription::Held& h) {
  if (h.deadline >= h.delivered_at + s.max_lease_ms) return h.deadline;
  return h.deadline - s.visibility_ms / 2;
}

// A Settle's reply: the receipts' write and, when they made room, the lease that followed.
struct SettleJoin {
  std::atomic<int> remaining{1};
  SettleResult result;
  absl::Status commit_status, delivery_status;
  Callback<SettleResult> done;

  void PartDone() {
    if (remaining.fetch_sub(1) != 1) return;
    if (!commit_status.ok()) return done(commit_status);
    if (!delivery_status.ok()) return done(delivery_status);
    done(std::move(result));
  }
};

}  // namespace

Callback<std::vector<LeasedMessage>> EngineImpl::DeliveryFor(std::shared_ptr<Subscription> s) {
  return [s = std::move(s)](absl::StatusOr<std::vector<LeasedMessage>> r) {
    if (s->quiet.load()) return;
    if (!r.ok()) {
      if (!s->quiet.exchange(true)) s->callbacks.ended(r.status());
      return;
    }
    if (!r->empty()) s->callbacks.deliver(std::move(*r));
  };
}

void EngineImpl::HoldLocked(Queue& q, Subscription& s, uint64_t seq, const MsgState& m,
                            int64_t now) {
  Subscription::Held h;
  h.lease_gen = m.lease_gen;
  h.size = m.size;
  h.delivered_at = now;
  h.deadline = m.visible_at;
  h.due = DueFor(s, h);
  auto [it, fresh] = s.held.emplace(seq, h);
  if (!fresh) return;  // cannot happen: a message is forgotten before it is leased again
  s.by_due.insert({h.due, seq});
  s.held_bytes += h.size;
  q.held_by[seq] = &s;
  ++num_held_;
}

void EngineImpl::HoldJobLocked(Queue& q, Subscription& s, const LeaseJob& job, int64_t now) {
  for (size_t k = 0; k < job.seqs.size(); ++k) {
    HoldLocked(q, s, job.seqs[k], q.messages.at(job.seqs[k]), now);
  }
}

Subscription* EngineImpl::ForgetLocked(Queue& q, uint64_t seq) {
  if (q.held_by.empty()) return nullptr;
  auto it = q.held_by.find(seq);
  if (it == q.held_by.end()) return nullptr;
  Subscription* s = it->second;
  q.held_by.erase(it);
  auto h = s->held.find(seq);
  s->by_due.erase({h->second.due, seq});
  s->held_bytes -= h->second.size;
  s->held.erase(h);
  --num_held_;
  return s;
}

void EngineImpl::RedueLocked(Queue& q, uint64_t seq, int64_t deadline) {
  if (q.held_by.empty()) return;
  auto it = q.held_by.find(seq);
  if (it == q.held_by.end()) return;
  Subscription& s = *it->second;
  Subscription::Held& h = s.held.at(seq);
  s.by_due.erase({h.due, seq});
  h.deadline = deadline;
  h.due = DueFor(s, h);
  s.by_due.insert({h.due, seq});
}

std::shared_ptr<LeaseJob> EngineImpl::FeedLocked(Queue& q, const std::shared_ptr<Subscription>& s,
                                                 int64_t now,
                                                 Callback<std::vector<LeasedMessage>> done) {
  uint32_t room = s->Room();
  if (room == 0 || s->wait) return nullptr;  // full, or already waiting its turn
  auto job = SelectLocked(q, room, s->visibility_ms, now, done ? std::move(done) : DeliveryFor(s));
  if (job) HoldJobLocked(q, *s, *job, now);
  // Room left means nothing more was visible (or the response was full, which the next
  // background pass serves): wait for what comes next, behind whoever waits already.
  RequeueLocked(q, *s);
  return job;
}

void EngineImpl::RequeueLocked(Queue& q, Subscription& s) {
  if (s.Room() == 0 || s.wait) return;
  auto w = std::make_shared<LeaseWait>();
  w->sub = &s;
  w->queue_id = q.id;
  w->visibility_ms = s.visibility_ms;
  w->deadline_us = INT64_MAX;
  w->done = DeliveryFor(s.shared_from_this());
  s.wait = w;
  q.waiters.push_back(std::move(w));
}

uint64_t EngineImpl::ReleaseLocked(Queue& q, Subscription& s, int64_t now,
                                   std::vector<std::pair<uint64_t, std::string>>* writes) {
  if (!s.open) return 0;
  if (s.wait) LeaveWaitersLocked(*s.wait, LeaseWait::State::kDone);
  s.open = false;
  --num_subscriptions_;
  uint64_t released = 0;
  for (const auto& [seq, h] : s.held) {
    q.held_by.erase(seq);
    auto it = q.messages.find(seq);
    if (it == q.messages.end()) continue;
    MsgState& m = it->second;
    if (!m.leased || m.lease_gen != h.lease_gen) continue;
    IndexRemoveLocked(q, seq, m);
    m.leased = false;
    m.visible_at = now;  // delivery_count stays: this delivery happened
    IndexAddLocked(q, seq, m);
    writes->emplace_back(seq, ToRecord(m).SerializeAsString());
    ++released;
  }
  num_held_ -= static_cast<int64_t>(s.held.size());
  s.held.clear();
  s.by_due.clear();
  s.held_bytes = 0;
  return released;
}

int64_t EngineImpl::RenewLocked(Queue& q, int64_t now, int64_t steady, Jobs* jobs) {
  int64_t next = INT64_MAX;
  std::vector<std::pair<uint64_t, std::string>> renewed;
  for (const auto& sp : q.subscriptions) {
    Subscription& s = *sp;
    while (!s.by_due.empty() && s.by_due.begin()->first <= now) {
      uint64_t seq = s.by_due.begin()->second;
      Subscription::Held& h = s.held.at(seq);
      auto it = q.messages.find(seq);
      if (it == q.messages.end() || !it->second.leased || it->second.lease_gen != h.lease_gen ||
          it->second.visible_at <= now) {
        ForgetLocked(q, seq);  // its lease has ended: no longer outstanding here
        continue;
      }
      MsgState& m = it->second;
      s.by_due.erase(s.by_due.begin());
      int64_t target = std::min(now + s.visibility_ms, h.delivered_at + s.max_lease_ms);
      if (target > m.visible_at && options_.test.mutation != Mutation::kNoRenewal) {
        IndexRemoveLocked(q, seq, m);
        m.visible_at = target;
        IndexAddLocked(q, seq, m);
        renewed.emplace_back(seq, ToRecord(m).SerializeAsString());
      }
      h.deadline = m.visible_at;
      h.due = std::max(DueFor(s, h), now + 1);
      s.by_due.insert({h.due, seq});
    }
    // Room made by anything that settled its messages without feeding it (a purge, an ended
    // lease, a message deleted): it is filled here at the latest.
    if (auto job = FeedLocked(q, sp, now)) jobs->push_back(std::move(job));
    if (!s.by_due.empty()) next = std::min(next, s.by_due.begin()->first);
  }
  if (!renewed.empty()) {
    pipeline_->Submit(
        [&](CommitPipeline::Group& g) {
          for (auto& [seq, state] : renewed) g.batch().Put(state_cf_, MessageKey(q.id, seq), state);
        },
        [](const absl::Status&) {});
  }
  return next == INT64_MAX ? INT64_MAX : steady + (next - now) * 1000;
}

absl::StatusOr<std::shared_ptr<Subscription>> EngineImpl::Subscribe(
    SubscribeRequest request, SubscriptionCallbacks callbacks) {
  if (auto s = ValidateSubscribe(request); !s.ok()) return s;
  auto sub = std::make_shared<Subscription>();
  sub->callbacks = std::move(callbacks);
  sub->max_outstanding =
      request.max_outstanding == 0 ? Limits::kDefaultMaxOutstanding : request.max_outstanding;
  sub->max_bytes = request.max_outstanding_bytes == 0 ? Limits::kDefaultMaxOutstandingBytes
                                                      : request.max_outstanding_bytes;
  sub->max_lease_ms = request.max_lease_duration_ms.value_or(Limits::kDefaultMaxLease);
  std::shared_ptr<LeaseJob> job;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return Closing();
    auto found = FindLocked(request.queue);
    if (!found.ok()) return found.status();
    Queue& q = **found;
    sub->queue_id = q.id;
    sub->visibility_ms = request.visibility_timeout_ms.value_or(*q.config.visibility_timeout_ms);
    q.subscriptions.push_back(sub);
    ++num_subscriptions_;
    job = FeedLocked(q, sub, NowLocked());
  }
  if (job) ReadPayloads(job);
  absl::MutexLock lock(&bg_mu_);
  bg_cv_.Signal();  // the background pass now has leases to renew
  return sub;
}

void EngineImpl::Settle(const std::shared_ptr<Subscription>& sub, std::vector<std::string> acks,
                        std::vector<std::string> nacks, int64_t nack_delay_ms,
                        Callback<SettleResult> done) {
  if (auto s = ValidateSettle(acks.size(), nacks.size(), nack_delay_ms); !s.ok()) return done(s);
  std::vector<std::optional<ReceiptFields>> ack_fields(acks.size()), nack_fields(nacks.size());
  for (size_t i = 0; i < acks.size(); ++i) ack_fields[i] = signer_->Verify(acks[i]);
  for (size_t i = 0; i < nacks.size(); ++i) nack_fields[i] = signer_->Verify(nacks[i]);
  Jobs jobs;
  absl::Status error;
  {
    absl::MutexLock lock(&mu_);
    Queue* q = closed_ ? nullptr : FindByIdLocked(sub->queue_id);
    if (closed_) {
      error = Closing();
    } else if (!sub->open || q == nullptr) {
      error = absl::FailedPreconditionError("the subscription has ended");
    } else {
      int64_t now = NowLocked();
      CommitPipeline::Hold hold(pipeline_.get());  // the receipts and the leases: one group
      auto join = std::make_shared<SettleJoin>();
      join->done = std::move(done);
      ReceiptWrites acked, nacked;
      std::vector<Subscription*> freed;
      join->result.acks =
          ApplyReceiptsLocked(ReceiptOp::kAck, *q, ack_fields, 0, now, &acked, &freed);
      join->result.nacks = ApplyReceiptsLocked(ReceiptOp::kNack, *q, nack_fields, nack_delay_ms,
                                               now, &nacked, &freed);
      std::vector<uint64_t> wake;
      if (nacked.wake) wake.push_back(q->id);
      uint64_t queue_id = q->id;
      pipeline_->Submit(
          [&](CommitPipeline::Group& g) {
            WriteReceipts(g, queue_id, acked, 0);
            WriteReceipts(g, queue_id, nacked, static_cast<int64_t>(nacked.updated.size()));
          },
          [this, join, wake = std::move(wake)](const absl::Status& s) {
            AfterCommit(s, {}, wake);
            join->commit_status = s;
            join->PartDone();
          });
      // Nothing in this group is written before the hold ends, so neither part can finish
      // before the count is right.
      auto job = FeedLocked(*q, sub, now, [join](absl::StatusOr<std::vector<LeasedMessage>> r) {
        if (r.ok()) {
          join->result.delivered = std::move(*r);
        } else {
          join->delivery_status = r.status();
        }
        join->PartDone();
      });
      if (job) {
        join->remaining = 2;
        jobs.push_back(std::move(job));
      }
      FeedFreedLocked(*q, freed, sub.get(), now, &jobs);
    }
  }
  if (!error.ok()) return done(error);
  for (auto& job : jobs) ReadPayloads(job);
}

void EngineImpl::Unsubscribe(const std::shared_ptr<Subscription>& sub, Callback<uint64_t> done) {
  sub->quiet = true;
  bool submitted = false;
  {
    absl::MutexLock lock(&mu_);
    Queue* q = closed_ ? nullptr : FindByIdLocked(sub->queue_id);
    if (sub->open && q != nullptr) {
      std::vector<std::pair<uint64_t, std::string>> released;
      uint64_t n = ReleaseLocked(*q, *sub, NowLocked(), &released);
      std::erase(q->subscriptions, sub);
      uint64_t queue_id = q->id;
      pipeline_->Submit(
          [&](CommitPipeline::Group& g) {
            for (auto& [seq, state] : released) {
              g.batch().Put(state_cf_, MessageKey(queue_id, seq), state);
            }
          },
          [this, n, queue_id, done = std::move(done)](const absl::Status& s) {
            AfterCommit(s, {}, {queue_id});  // others may take what was released
            if (!s.ok()) return done(s);
            done(n);
          });
      submitted = true;
    }
  }
  if (!submitted) done(uint64_t{0});
}

}  // namespace spool::engine::internal
