// Enqueue: validation against the queue, dedup, max_depth, and the write that makes messages
// pending until it is durable.
#include "engine/engine_impl.h"

namespace spool::engine::internal {

// ---------------------------------------------------------------------------------------------
// Messages

void EngineImpl::Enqueue(std::string queue, std::vector<EnqueueEntry> entries,
                         Callback<std::vector<EnqueueResult>> done) {
  absl::Status error;
  {
    absl::MutexLock lock(&mu_);
    error = EnqueueLocked(queue, entries, done);
  }
  if (!error.ok()) done(error);
}

absl::Status EngineImpl::EnqueueLocked(const std::string& queue, std::vector<EnqueueEntry>& entries,
                                       Callback<std::vector<EnqueueResult>>& done) {
  if (closed_) return Closing();
  auto found = FindLocked(queue);
  if (!found.ok()) return found.status();
  Queue& q = **found;
  if (auto s = ValidateEnqueue(entries, q.config); !s.ok()) return s;
  int64_t now = NowLocked();

  // Decide which entries are new: a dedup_id seen within the window (or earlier in this
  // request) returns the first message's id.
  std::vector<EnqueueResult> results(entries.size());
  std::vector<size_t> fresh;
  absl::flat_hash_map<std::string_view, size_t> in_request;  // dedup_id -> entry index
  std::vector<std::pair<size_t, size_t>> duplicate_of;       // (entry, earlier entry)
  for (size_t i = 0; i < entries.size(); ++i) {
    const std::string& dedup_id = entries[i].dedup_id;
    if (!dedup_id.empty()) {
      if (auto d = q.dedup.find(dedup_id); d != q.dedup.end() && d->second.expire_at > now) {
        results[i] = {FormatMessageId(d->second.seq), true};
        continue;
      }
      if (auto r = in_request.find(dedup_id); r != in_request.end()) {
        duplicate_of.emplace_back(i, r->second);
        continue;
      }
      in_request.emplace(dedup_id, i);
    }
    fresh.push_back(i);  // its id is assigned below
  }
  if (q.config.max_depth > 0 && q.messages.size() + fresh.size() > q.config.max_depth) {
    return absl::ResourceExhaustedError(
        Cat("queue \"", q.name, "\" is full: max_depth is ", q.config.max_depth, " and ",
            q.messages.size(),
            " messages are stored; consumers are behind or max_depth is too "
            "low"));
  }
  std::optional<uint64_t> reservation;
  uint64_t first = AllocSeqsLocked(fresh.size(), &reservation);
  Activations activate;
  activate.reserve(fresh.size());
  // Hand-off: a Lease waits on this queue only while nothing in it is ready, so when nothing is
  // ready or about to be (an index entry at or before now is a ready or pending message), a new
  // ready message goes straight to the oldest waiter, leased in this enqueue's own write. The
  // consumer then waits for one fsync instead of two and nothing reads the payload back.
  Jobs handoffs;
  bool handoff = !q.waiters.empty() && (q.index.empty() || q.index.begin()->first > now);
  // The waiter now being filled: how many messages and bytes it may still take (0: none).
  uint32_t taker_left = 0;
  uint64_t taker_bytes = 0;
  int64_t taker_visibility = 0;
  Subscription* taker_sub = nullptr;  // when the taker is a subscription
  std::vector<Subscription*> fed;     // subscriptions that took some: their next turn, after
  int64_t handed_off = 0;
  for (size_t k = 0; k < fresh.size(); ++k) {
    EnqueueEntry& e = entries[fresh[k]];
    uint64_t seq = first + k;
    MsgState m;
    m.enqueue_time = now;
    m.visible_at = now + e.delay_ms.value_or(*q.config.delay_ms);
    m.size = static_cast<uint32_t>(e.payload.size());
    for (const auto& [key, value] : e.attributes) m.size += key.size() + value.size();
    m.pending = true;
    if (handoff && m.visible_at <= now) {
      if (taker_left > 0 && taker_bytes + m.size > kMaxResponseBytes) taker_left = 0;
      if (taker_sub != nullptr && taker_sub->Room() == 0) taker_left = 0;
      while (taker_left == 0 && !q.waiters.empty()) {
        std::shared_ptr<LeaseWait> w = std::move(q.waiters.front());
        q.waiters.pop_front();
        if (w->state != LeaseWait::State::kWaiting) continue;
        uint32_t room = w->sub != nullptr ? w->sub->Room() : std::max<uint32_t>(w->max_messages, 1);
        LeaveWaitersLocked(*w, room == 0 ? LeaseWait::State::kDone : LeaseWait::State::kClaimed);
        if (room == 0) continue;
        auto job = std::make_shared<LeaseJob>();
        job->queue_id = q.id;
        job->done = w->sub != nullptr ? w->done : std::move(w->done);
        job->remaining = 1;  // the payloads are in hand: only the write is outstanding
        handoffs.push_back(std::move(job));
        taker_left = room;
        taker_bytes = 0;
        taker_visibility = w->visibility_ms;
        taker_sub = w->sub;
        if (taker_sub != nullptr) fed.push_back(taker_sub);
      }
      if (taker_left == 0) {
        handoff = false;
      } else {
        --taker_left;
        taker_bytes += m.size;
        LeaseJob& job = *handoffs.back();
        job.seqs.push_back(seq);
        job.found.push_back(true);
        LeasedMessage& out = job.messages.emplace_back(MarkLeasedLocked(m, taker_visibility, now));
        job.lease_gens.push_back(m.lease_gen);
        out.payload = e.payload;
        out.attributes = e.attributes;
        ++handed_off;
        if (taker_sub != nullptr) HoldLocked(q, *taker_sub, seq, m, now);
      }
    }
    q.messages.emplace(seq, m);
    IndexAddLocked(q, seq, m);
    activate.emplace_back(q.id, seq);
    results[fresh[k]].message_id = FormatMessageId(seq);
    if (!e.dedup_id.empty()) {
      int64_t expire_at = now + *q.config.dedup_window_ms;
      q.dedup[e.dedup_id] = {seq, expire_at};
      q.dedup_order.emplace_back(expire_at, e.dedup_id);
    }
  }
  for (Subscription* sub : fed) RequeueLocked(q, *sub);
  for (auto [i, first_i] : duplicate_of) results[i] = {results[first_i].message_id, true};
  q.counters[static_cast<int>(Counter::kEnqueued)] += fresh.size();
  q.counters[static_cast<int>(Counter::kDelivered)] += handed_off;
  pipeline_->Submit(
      [&](CommitPipeline::Group& g) {
        rocksdb::WriteBatch& b = g.batch();
        storage::MessageRecord record;
        std::string buf;
        for (size_t k = 0; k < fresh.size(); ++k) {
          EnqueueEntry& e = entries[fresh[k]];
          uint64_t seq = first + k;
          std::string key = MessageKey(q.id, seq);
          record.Clear();
          record.set_payload(std::move(e.payload));
          for (const auto& [key, value] : e.attributes) {
            storage::Attribute* a = record.add_attributes();
            a->set_key(key);
            a->set_value(value);
          }
          record.set_enqueue_time_ms(now);
          record.set_dedup_id(e.dedup_id);
          record.SerializeToString(&buf);
          b.Put(messages_cf_, key, buf);
          MsgState state = q.messages.at(seq);
          if (state.leased && options_.test.mutation == Mutation::kNoPersistLeases) {
            state.visible_at = now;  // written as if never leased
            state.delivery_count = 0;
            state.lease_gen = 0;
            state.leased = false;
          }
          b.Put(state_cf_, key, ToRecord(state).SerializeAsString());
          if (!e.dedup_id.empty()) {
            storage::DedupRecord d;
            d.set_seq(seq);
            d.set_expire_at_ms(q.dedup[e.dedup_id].expire_at);
            b.Put(dedup_cf_, DedupKey(q.id, e.dedup_id), d.SerializeAsString());
          }
        }
        MergeCounter(g, q.id, Counter::kEnqueued, static_cast<int64_t>(fresh.size()));
        if (handed_off > 0) MergeCounter(g, q.id, Counter::kDelivered, handed_off);
        if (reservation) {
          std::string v;
          AppendBigEndian64(&v, *reservation);
          b.Put(default_cf_, kSeqReservedKey, v);
        }
      },
      [this, activate = std::move(activate), results = std::move(results),
       handoffs = std::move(handoffs), done = std::move(done)](const absl::Status& s) mutable {
        AfterCommit(s, activate, {});
        for (auto& job : handoffs) {
          job->IdentifyMessages(*signer_);
          job->commit_status = s;
          job->PartDone();
        }
        if (!s.ok()) return done(s);
        done(std::move(results));
      });
  return absl::OkStatus();
}

}  // namespace spool::engine::internal
