// In-memory bookkeeping under mu_: finding queues, the lease index and its ready/leased/delayed
// counts, queue figures, counters and sequence numbers.
#include "engine/engine_impl.h"

namespace spool::engine::internal {

// ---------------------------------------------------------------------------------------------
// In-memory bookkeeping

absl::StatusOr<Queue*> EngineImpl::FindLocked(std::string_view name) {
  auto it = by_name_.find(name);
  if (it == by_name_.end()) {
    if (auto s = ValidateQueueName(name, "queue"); !s.ok()) return s;
    return NotFound(name);
  }
  return it->second;
}

Queue* EngineImpl::FindByIdLocked(uint64_t id) {
  auto it = queues_.find(id);
  return it == queues_.end() ? nullptr : it->second.get();
}

void EngineImpl::CountLocked(Queue& q, const MsgState& m, int delta) {
  uint64_t& n = m.visible_at <= q.split_at ? q.n_ready : (m.leased ? q.n_leased : q.n_delayed);
  n += delta;
}

void EngineImpl::IndexAddLocked(Queue& q, uint64_t seq, const MsgState& m) {
  q.index.insert({m.visible_at, seq});
  CountLocked(q, m, +1);
}

absl::btree_set<IndexKey>::iterator EngineImpl::IndexAddLocked(
    Queue& q, uint64_t seq, const MsgState& m, absl::btree_set<IndexKey>::iterator hint) {
  CountLocked(q, m, +1);
  return std::next(q.index.insert(hint, {m.visible_at, seq}));
}

void EngineImpl::IndexRemoveLocked(Queue& q, uint64_t seq, const MsgState& m) {
  size_t erased = q.index.erase({m.visible_at, seq});
  SPOOL_CHECK(erased == 1, "lease index out of step with message states");
  CountLocked(q, m, -1);
}

void EngineImpl::RefreshSplitLocked(Queue& q, int64_t now) {
  // Entries whose visible_at lies between the old and the new split change sides.
  int64_t lo = std::min(q.split_at, now), hi = std::max(q.split_at, now);
  int delta = now > q.split_at ? +1 : -1;
  for (auto it = q.index.upper_bound({lo, UINT64_MAX}); it != q.index.end() && it->first <= hi;
       ++it) {
    const MsgState& m = q.messages.at(it->second);
    (m.leased ? q.n_leased : q.n_delayed) -= delta;
    q.n_ready += delta;
  }
  q.split_at = now;
}

QueueInfo EngineImpl::InfoLocked(Queue& q, int64_t now) {
  RefreshSplitLocked(q, now);
  QueueInfo info;
  info.name = q.name;
  info.config = q.config;
  info.create_time_ms = q.create_time_ms;
  QueueStats& s = info.stats;
  s.ready = q.n_ready;
  s.leased = q.n_leased;
  s.delayed = q.n_delayed;
  s.total = q.messages.size();
  for (auto it = q.index.begin(); it != q.index.end() && it->first <= now; ++it) {
    if (!q.messages.at(it->second).pending) {
      s.oldest_ready_age_ms = now - it->first;
      break;
    }
  }
  auto counter = [&](Counter c) { return static_cast<uint64_t>(q.counters[static_cast<int>(c)]); };
  s.enqueued_total = counter(Counter::kEnqueued);
  s.acked_total = counter(Counter::kAcked);
  s.delivered_total = counter(Counter::kDelivered);
  s.dead_lettered_total = counter(Counter::kDeadLettered);
  s.expired_total = counter(Counter::kExpired);
  s.purged_total = counter(Counter::kPurged);
  s.deleted_total = counter(Counter::kDeleted);
  s.moved_total = counter(Counter::kMoved);
  s.nacked_total = counter(Counter::kNacked);
  return info;
}

void EngineImpl::MergeCounter(CommitPipeline::Group& g, uint64_t queue_id, Counter c,
                              int64_t delta) {
  g.AddToCounter(CounterKey(queue_id, c), delta);
}

uint64_t EngineImpl::AllocSeqsLocked(uint64_t n, std::optional<uint64_t>* new_reservation) {
  uint64_t first = next_seq_;
  next_seq_ += n;
  if (next_seq_ > seq_reserved_) {
    seq_reserved_ = next_seq_ + kSeqBlock;
    *new_reservation = seq_reserved_;
  }
  return first;
}

}  // namespace spool::engine::internal
