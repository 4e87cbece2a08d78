// Leasing: choosing messages from the index (dead-lettering those past max_deliveries), the
// waiting Lease calls, reading payloads beside the lease write, and serving waiters after a
// commit.
#include "engine/engine_impl.h"

namespace spool::engine::internal {

LeasedMessage EngineImpl::MarkLeasedLocked(MsgState& m, int64_t visibility_ms, int64_t now) {
  ++m.delivery_count;
  ++m.lease_gen;
  m.leased = true;
  m.visible_at =
      now + (options_.test.mutation == Mutation::kLeaseIgnoresDeadline ? visibility_ms / 4
                                                                       : visibility_ms);
  LeasedMessage out;  // its id and receipt: LeaseJob::IdentifyMessages, outside the lock
  out.delivery_count = m.delivery_count;
  out.enqueue_time_ms = m.enqueue_time;
  out.lease_deadline_ms = m.visible_at;
  return out;
}

std::shared_ptr<LeaseJob> EngineImpl::SelectLocked(Queue& q, uint32_t max, int64_t visibility_ms,
                                                   int64_t now,
                                                   Callback<std::vector<LeasedMessage>> done) {
  std::vector<uint64_t> take, dead;
  std::vector<MsgState*> taken;  // the states of take, found by the scan
  uint64_t bytes = 0;
  size_t scanned = 0;
  bool skipped = false;  // an entry was passed over
  bool head = true;      // what is taken is the head of the index, nothing passed over in it
  for (auto it = q.index.begin();
       it != q.index.end() && it->first <= now && take.size() < max && scanned < kMaxLeaseScan;
       ++it, ++scanned) {
    MsgState& m = q.messages.at(it->second);
    if (m.pending) {
      skipped = true;
      continue;
    }
    uint32_t dead_at = q.config.max_deliveries;
    if (options_.test.mutation == Mutation::kDeadLetterEarly && dead_at > 1) --dead_at;
    if (q.config.max_deliveries > 0 && m.delivery_count >= dead_at) {
      dead.push_back(it->second);
      skipped = true;
      continue;
    }
    if (!take.empty() && bytes + m.size > kMaxResponseBytes) break;
    bytes += m.size;
    take.push_back(it->second);
    taken.push_back(&m);
    if (skipped) head = false;
  }

  if (!dead.empty()) {
    MoveLocked(q, *by_name_.at(q.config.dead_letter_queue), dead, now, MoveKind::kDeadLetter,
               nullptr, nullptr);
    // Removing the dead from q.messages may have moved the others' states.
    for (size_t k = 0; k < take.size(); ++k) taken[k] = &q.messages.at(take[k]);
  }
  if (take.empty()) return nullptr;
  // A message whose lease ran out while a subscription held it is no longer that one's.
  if (!q.held_by.empty()) {
    for (uint64_t seq : take) ForgetLocked(q, seq);
  }

  auto job = std::make_shared<LeaseJob>();
  job->queue_id = q.id;
  job->done = std::move(done);
  job->seqs = take;
  job->messages.resize(take.size());
  job->lease_gens.resize(take.size());
  job->found.assign(take.size(), false);
  std::vector<std::string> states(take.size());
  // Nothing below adds to or removes from q.messages, so taken stays valid.
  // The usual case, a queue handing out its head: the entries leave the index as one range
  // (dead-lettering above removed only entries after them), and come back with the same
  // deadline in the same order, each right after the one before.
  if (head) {
    for (MsgState* m : taken) CountLocked(q, *m, -1);
    auto end = q.index.begin();
    std::advance(end, take.size());
    q.index.erase(q.index.begin(), end);
  } else {
    for (size_t k = 0; k < take.size(); ++k) IndexRemoveLocked(q, take[k], *taken[k]);
  }
  auto hint = q.index.end();
  for (size_t k = 0; k < take.size(); ++k) {
    MsgState& m = *taken[k];
    job->messages[k] = MarkLeasedLocked(m, visibility_ms, now);
    job->lease_gens[k] = m.lease_gen;
    hint = IndexAddLocked(q, take[k], m, hint);
    states[k] = ToRecord(m).SerializeAsString();
  }
  q.counters[static_cast<int>(Counter::kDelivered)] += take.size();
  pipeline_->Submit(
      [&](CommitPipeline::Group& g) {
        rocksdb::WriteBatch& b = g.batch();
        for (size_t k = 0; k < take.size(); ++k) {
          if (options_.test.mutation == Mutation::kNoPersistLeases) break;
          b.Put(state_cf_, MessageKey(q.id, take[k]), states[k]);
        }
        MergeCounter(g, q.id, Counter::kDelivered, static_cast<int64_t>(take.size()));
      },
      [job](const absl::Status& s) {
        job->commit_status = s;
        job->PartDone();
      });
  return job;
}

void EngineImpl::ReadPayloads(const std::shared_ptr<LeaseJob>& job) {
  job->IdentifyMessages(*signer_);
  size_t n = job->seqs.size();
  {
    // Pinned values must be released before the store can close: all of it under db_mu_.
    absl::ReaderMutexLock lock(&db_mu_);
    if (db_closed_) {
      job->read_status = Closing();
    } else {
      storage::MessageRecord record;
      auto take = [&](size_t k, rocksdb::Slice value) {
        if (!record.ParseFromArray(value.data(), static_cast<int>(value.size()))) return;
        LeasedMessage& out = job->messages[k];
        out.payload = std::move(*record.mutable_payload());
        for (const auto& a : record.attributes()) out.attributes[a.key()] = a.value();
        job->found[k] = true;
      };
      // Messages leased together are usually neighbours (a FIFO queue hands out its head), and
      // one seek plus a short scan reads a run of neighbours for much less than a point lookup
      // each, which searches the memtable and every overlapping table file per key. The scan is
      // bounded to the leased range, so it skips at most as many keys as it reads.
      bool ascending = true;
      for (size_t k = 1; k < n && ascending; ++k) ascending = job->seqs[k] > job->seqs[k - 1];
      if (n >= 4 && ascending && job->seqs.back() - job->seqs.front() < 2 * n) {
        std::string first = MessageKey(job->queue_id, job->seqs.front());
        std::string upper = MessageKey(job->queue_id, job->seqs.back() + 1);
        rocksdb::Slice upper_slice(upper);
        rocksdb::ReadOptions ro;
        ro.iterate_upper_bound = &upper_slice;
        std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, messages_cf_));
        size_t k = 0;
        for (it->Seek(first); it->Valid() && k < n; it->Next()) {
          auto parts = ParseMessageKey(std::string_view(it->key().data(), it->key().size()));
          if (!parts) continue;
          while (k < n && job->seqs[k] < parts->seq) ++k;  // gone since the lease: skipped
          if (k < n && job->seqs[k] == parts->seq) take(k++, it->value());
        }
        if (!it->status().ok()) job->read_status = FromRocks(it->status(), "read");
      } else {
        std::vector<std::string> keys(n);
        std::vector<rocksdb::Slice> slices(n);
        for (size_t k = 0; k < n; ++k) {
          keys[k] = MessageKey(job->queue_id, job->seqs[k]);
          slices[k] = keys[k];
        }
        std::vector<rocksdb::PinnableSlice> values(n);
        std::vector<rocksdb::Status> statuses(n);
        db_->MultiGet({}, messages_cf_, n, slices.data(), values.data(), statuses.data());
        for (size_t k = 0; k < n; ++k) {
          // Not found: purged or deleted between the lease and this read; it is not returned.
          if (statuses[k].ok()) take(k, values[k]);
        }
      }
    }
  }
  job->PartDone();
}

void EngineImpl::LeaveWaitersLocked(LeaseWait& w, LeaseWait::State to) {
  w.state = to;
  if (w.sub == nullptr) {
    --num_waiters_;
  } else if (w.sub->wait.get() == &w) {
    w.sub->wait.reset();
  }
}

void EngineImpl::ServeWaitersLocked(Queue& q, int64_t now, Jobs* jobs) {
  while (!q.waiters.empty()) {
    std::shared_ptr<LeaseWait> w = q.waiters.front();
    uint32_t max = w->sub != nullptr ? w->sub->Room() : w->max_messages;
    if (w->state != LeaseWait::State::kWaiting || max == 0) {
      if (w->state == LeaseWait::State::kWaiting) LeaveWaitersLocked(*w, LeaseWait::State::kDone);
      q.waiters.pop_front();
      continue;
    }
    auto job = SelectLocked(q, max, w->visibility_ms, now, w->done);
    if (!job) return;
    LeaveWaitersLocked(*w, LeaseWait::State::kClaimed);
    q.waiters.pop_front();
    if (w->sub != nullptr) {
      HoldJobLocked(q, *w->sub, *job, now);
      RequeueLocked(q, *w->sub);
    }
    jobs->push_back(std::move(job));
  }
}

void EngineImpl::AfterCommit(const absl::Status& s, const Activations& activate,
                             const std::vector<uint64_t>& wake) {
  if (!s.ok()) return;  // the engine refuses writes from now on; a restart rebuilds memory
  Jobs jobs;
  {
    absl::MutexLock lock(&mu_);
    int64_t now = NowLocked();
    absl::flat_hash_set<uint64_t> touched(wake.begin(), wake.end());
    for (auto [queue_id, seq] : activate) {
      Queue* q = FindByIdLocked(queue_id);
      if (q == nullptr) continue;
      auto it = q->messages.find(seq);
      if (it == q->messages.end()) continue;  // purged meanwhile
      it->second.pending = false;
      touched.insert(queue_id);
    }
    for (uint64_t id : touched) {
      if (Queue* q = FindByIdLocked(id); q != nullptr) ServeWaitersLocked(*q, now, &jobs);
    }
  }
  for (auto& job : jobs) ReadPayloads(job);
}

std::shared_ptr<LeaseWait> EngineImpl::Lease(LeaseRequest request,
                                             Callback<std::vector<LeasedMessage>> done) {
  absl::Status error = ValidateLease(request);
  std::shared_ptr<LeaseJob> job;
  std::shared_ptr<LeaseWait> wait;
  if (error.ok()) {
    absl::MutexLock lock(&mu_);
    error = LeaseLocked(request, done, &job, &wait);
  }
  if (!error.ok()) {
    done(error);
  } else if (job) {
    ReadPayloads(job);
  } else if (wait) {
    absl::MutexLock lock(&bg_mu_);
    bg_cv_.Signal();  // the background thread recomputes when to wake
  }
  return wait;
}

absl::Status EngineImpl::LeaseLocked(const LeaseRequest& request,
                                     Callback<std::vector<LeasedMessage>>& done,
                                     std::shared_ptr<LeaseJob>* job,
                                     std::shared_ptr<LeaseWait>* wait) {
  if (closed_) return Closing();
  auto found = FindLocked(request.queue);
  if (!found.ok()) return found.status();
  Queue& q = **found;
  uint32_t max = request.max_messages == 0 ? 1 : request.max_messages;
  int64_t visibility = request.visibility_timeout_ms.value_or(*q.config.visibility_timeout_ms);
  int64_t now = NowLocked();
  *job = SelectLocked(q, max, visibility, now, done);
  if (!*job && request.wait_ms > 0 && num_waiters_ < options_.max_waiters) {
    auto w = std::make_shared<LeaseWait>();
    w->queue_id = q.id;
    w->max_messages = max;
    w->visibility_ms = visibility;
    w->deadline_us = clock_->SteadyMicros() + request.wait_ms * 1000;
    w->done = std::move(done);
    q.waiters.push_back(w);
    ++num_waiters_;
    *wait = std::move(w);
  } else if (!*job) {
    // Nothing to lease. Reply through the pipeline all the same, so the reply comes after any
    // dead-lettering this call decided is durable, as every other reply does.
    pipeline_->Submit([](CommitPipeline::Group&) {},
                      [done = std::move(done)](const absl::Status& s) {
                        if (!s.ok()) return done(s);
                        done(std::vector<LeasedMessage>{});
                      });
  }
  return absl::OkStatus();
}

void EngineImpl::CancelLease(const std::shared_ptr<LeaseWait>& wait) {
  if (!wait) return;
  {
    absl::MutexLock lock(&mu_);
    if (wait->state != LeaseWait::State::kWaiting) return;
    LeaveWaitersLocked(*wait, LeaseWait::State::kDone);
    if (Queue* q = FindByIdLocked(wait->queue_id); q != nullptr) {
      std::erase(q->waiters, wait);
    }
  }
  wait->done(absl::CancelledError("the Lease call was cancelled"));
}

}  // namespace spool::engine::internal
