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
  if (error.ok()) {
    // Checking the signatures needs no lock, and is most of what the call would hold it for.
    std::vector<std::optional<ReceiptFields>> fields(receipts.size());
    for (size_t i = 0; i < receipts.size(); ++i) fields[i] = signer_->Verify(receipts[i]);
    absl::MutexLock lock(&mu_);
    error = ReceiptCallLocked(op, queue, fields, duration_ms, done);
  }
  if (!error.ok()) done(error);
}

absl::Status EngineImpl::ReceiptCallLocked(
    ReceiptOp op, std::string_view queue, const std::vector<std::optional<ReceiptFields>>& receipts,
    int64_t duration_ms, Callback<std::vector<ReceiptOutcome>>& done) {
  if (closed_) return Closing();
  auto found = FindLocked(queue);
  if (!found.ok()) return found.status();
  Queue& q = **found;
  if (op == ReceiptOp::kExtend && duration_ms < 0) duration_ms = *q.config.visibility_timeout_ms;
  int64_t now = NowLocked();
  std::vector<ReceiptOutcome> outcomes(receipts.size());
  std::vector<uint64_t> deleted;
  std::vector<std::pair<uint64_t, std::string>> updated;  // seq, new state record
  bool wake = false;
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
        q.messages.erase(it);
        deleted.push_back(f->seq);
        continue;
      case ReceiptOp::kNack:
        m.leased = false;
        m.visible_at =
            now + (options_.test.mutation == Mutation::kNackIgnoresDelay ? 0 : duration_ms);
        wake = wake || duration_ms == 0;
        break;
      case ReceiptOp::kExtend:
        m.visible_at = now + duration_ms;
        outcomes[i].lease_deadline_ms = m.visible_at;
        break;
    }
    IndexAddLocked(q, f->seq, m);
    updated.emplace_back(f->seq, ToRecord(m).SerializeAsString());
  }
  q.counters[static_cast<int>(Counter::kAcked)] += deleted.size();
  const int64_t nacked = op == ReceiptOp::kNack ? static_cast<int64_t>(updated.size()) : 0;
  q.counters[static_cast<int>(Counter::kNacked)] += nacked;
  std::vector<uint64_t> wake_queues;
  if (wake) wake_queues.push_back(q.id);
  pipeline_->Submit(
      [&](CommitPipeline::Group& g) {
        rocksdb::WriteBatch& b = g.batch();
        for (uint64_t seq : deleted) {
          std::string key = MessageKey(q.id, seq);
          b.SingleDelete(messages_cf_, key);
          b.Delete(state_cf_, key);
        }
        for (auto& [seq, state] : updated) b.Put(state_cf_, MessageKey(q.id, seq), state);
        MergeCounter(g, q.id, Counter::kAcked, static_cast<int64_t>(deleted.size()));
        MergeCounter(g, q.id, Counter::kNacked, nacked);
      },
      [this, outcomes = std::move(outcomes), wake_queues = std::move(wake_queues),
       done = std::move(done)](const absl::Status& s) mutable {
        AfterCommit(s, {}, wake_queues);
        if (!s.ok()) return done(s);
        done(std::move(outcomes));
      });
  return absl::OkStatus();
}

}  // namespace spool::engine::internal
