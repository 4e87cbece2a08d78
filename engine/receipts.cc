// Receipt operations: Ack, Nack and ExtendLease.
#include "engine/engine_impl.h"

namespace spool::engine::internal {

void EngineImpl::Ack(std::string queue, std::vector<std::string> receipts,
                     Callback<std::vector<ReceiptOutcome>> done) {
  ReceiptCall(ReceiptOp::kAck, std::move(queue), std::move(receipts), 0, std::move(done));
}

void EngineImpl::Nack(std::string queue, std::vector<std::string> receipts, int64_t delay_ms,
                      Callback<std::vector<ReceiptOutcome>> done) {
  if (auto s = ValidateNackDelay(delay_ms); !s.ok()) return done(s);
  ReceiptCall(ReceiptOp::kNack, std::move(queue), std::move(receipts), delay_ms, std::move(done));
}

void EngineImpl::ExtendLease(std::string queue, std::vector<std::string> receipts,
                             std::optional<int64_t> visibility_timeout_ms,
                             Callback<std::vector<ReceiptOutcome>> done) {
  if (auto s = ValidateVisibility(visibility_timeout_ms); !s.ok()) return done(s);
  // -1: the queue's default, resolved under the lock.
  ReceiptCall(ReceiptOp::kExtend, std::move(queue), std::move(receipts),
              visibility_timeout_ms.value_or(-1), std::move(done));
}

void EngineImpl::ReceiptCall(ReceiptOp op, std::string queue, std::vector<std::string> receipts,
                             int64_t duration_ms, Callback<std::vector<ReceiptOutcome>> done) {
  absl::Status error = ValidateReceiptCount(receipts.size());
  Jobs jobs;
  if (error.ok()) {
    // Checking the signatures needs no lock, and is most of what the call would hold it for.
    std::vector<std::optional<ReceiptFields>> fields(receipts.size());
    for (size_t i = 0; i < receipts.size(); ++i) fields[i] = signer_->Verify(receipts[i]);
    absl::MutexLock lock(&mu_);
    error = ReceiptCallLocked(op, queue, fields, duration_ms, done, &jobs);
  }
  if (!error.ok()) done(error);
  for (auto& job : jobs) ReadPayloads(job);
}

std::vector<ReceiptOutcome> EngineImpl::ApplyReceiptsLocked(
    ReceiptOp op, Queue& q, const std::vector<std::optional<ReceiptFields>>& receipts,
    int64_t duration_ms, int64_t now, ReceiptWrites* w, std::vector<Subscription*>* freed) {
  std::vector<ReceiptOutcome> outcomes(receipts.size());
  for (size_t i = 0; i < receipts.size(); ++i) {
    const std::optional<ReceiptFields>& f = receipts[i];
    if (!f || f->queue_id != q.id) {
      outcomes[i].outcome = Outcome::kInvalidReceipt;
      continue;
    }
    auto it = q.messages.find(f->seq);
    if (it == q.messages.end()) {
      // Already gone (acked, expired, purged, dead-lettered): a retried Ack is fine; there is
      // nothing left to nack or extend.
      outcomes[i].outcome = op == ReceiptOp::kAck ? Outcome::kOk : Outcome::kLeaseLost;
      continue;
    }
    MsgState& m = it->second;
    if ((!m.leased || m.lease_gen != f->lease_gen) &&
        options_.test.mutation != Mutation::kStaleReceipts) {
      outcomes[i].outcome = Outcome::kLeaseLost;
      continue;
    }
    outcomes[i].outcome = Outcome::kOk;
    IndexRemoveLocked(q, f->seq, m);
    switch (op) {
      case ReceiptOp::kAck:
        if (Subscription* s = ForgetLocked(q, f->seq)) freed->push_back(s);
        q.messages.erase(it);
        w->deleted.push_back(f->seq);
        continue;
      case ReceiptOp::kNack:
        if (Subscription* s = ForgetLocked(q, f->seq)) freed->push_back(s);
        m.leased = false;
        m.visible_at =
            now + (options_.test.mutation == Mutation::kNackIgnoresDelay ? 0 : duration_ms);
        w->wake = w->wake || duration_ms == 0;
        break;
      case ReceiptOp::kExtend:
        m.visible_at = now + duration_ms;
        outcomes[i].lease_deadline_ms = m.visible_at;
        RedueLocked(q, f->seq, m.visible_at);
        break;
    }
    IndexAddLocked(q, f->seq, m);
    w->updated.emplace_back(f->seq, ToRecord(m).SerializeAsString());
  }
  q.counters[static_cast<int>(Counter::kAcked)] += w->deleted.size();
  if (op == ReceiptOp::kNack) {
    q.counters[static_cast<int>(Counter::kNacked)] += w->updated.size();
  }
  return outcomes;
}

void EngineImpl::WriteReceipts(CommitPipeline::Group& g, uint64_t queue_id, const ReceiptWrites& w,
                               int64_t nacked) {
  rocksdb::WriteBatch& b = g.batch();
  for (uint64_t seq : w.deleted) {
    std::string key = MessageKey(queue_id, seq);
    b.SingleDelete(messages_cf_, key);
    b.Delete(state_cf_, key);
  }
  for (auto& [seq, state] : w.updated) b.Put(state_cf_, MessageKey(queue_id, seq), state);
  MergeCounter(g, queue_id, Counter::kAcked, static_cast<int64_t>(w.deleted.size()));
  MergeCounter(g, queue_id, Counter::kNacked, nacked);
}

void EngineImpl::FeedFreedLocked(Queue& q, const std::vector<Subscription*>& freed,
                                 const Subscription* skip, int64_t now, Jobs* jobs) {
  if (freed.empty()) return;
  for (const auto& s : q.subscriptions) {
    if (s.get() == skip || std::find(freed.begin(), freed.end(), s.get()) == freed.end()) continue;
    if (auto job = FeedLocked(q, s, now)) jobs->push_back(std::move(job));
  }
}

absl::Status EngineImpl::ReceiptCallLocked(
    ReceiptOp op, std::string_view queue, const std::vector<std::optional<ReceiptFields>>& receipts,
    int64_t duration_ms, Callback<std::vector<ReceiptOutcome>>& done, Jobs* jobs) {
  if (closed_) return Closing();
  auto found = FindLocked(queue);
  if (!found.ok()) return found.status();
  Queue& q = **found;
  if (op == ReceiptOp::kExtend && duration_ms < 0) duration_ms = *q.config.visibility_timeout_ms;
  int64_t now = NowLocked();
  ReceiptWrites w;
  std::vector<Subscription*> freed;
  // The leases the settled messages make room for go into the same group as the settling.
  CommitPipeline::Hold hold(pipeline_.get());
  std::vector<ReceiptOutcome> outcomes =
      ApplyReceiptsLocked(op, q, receipts, duration_ms, now, &w, &freed);
  const int64_t nacked = op == ReceiptOp::kNack ? static_cast<int64_t>(w.updated.size()) : 0;
  std::vector<uint64_t> wake_queues;
  if (w.wake) wake_queues.push_back(q.id);
  pipeline_->Submit([&](CommitPipeline::Group& g) { WriteReceipts(g, q.id, w, nacked); },
                    [this, outcomes = std::move(outcomes), wake_queues = std::move(wake_queues),
                     done = std::move(done)](const absl::Status& s) mutable {
                      AfterCommit(s, {}, wake_queues);
                      if (!s.ok()) return done(s);
                      done(std::move(outcomes));
                    });
  FeedFreedLocked(q, freed, nullptr, now, jobs);
  return absl::OkStatus();
}

}  // namespace spool::engine::internal
