// Queue administration: create, update, get, list, delete, purge.
#include "engine/engine_impl.h"

namespace spool::engine::internal {

// ---------------------------------------------------------------------------------------------
// Administration

void EngineImpl::CreateQueue(std::string name, QueueConfig config, Callback<QueueInfo> done) {
  SubmitAdmin(std::move(name), std::move(config), /*create=*/true, std::move(done));
}

void EngineImpl::UpdateQueue(std::string name, QueueConfig config, Callback<QueueInfo> done) {
  SubmitAdmin(std::move(name), std::move(config), /*create=*/false, std::move(done));
}

void EngineImpl::SubmitAdmin(std::string name, QueueConfig config, bool create,
                             Callback<QueueInfo> done) {
  absl::Status error = ValidateQueueName(name, "name");
  absl::StatusOr<QueueConfig> normalized = NormalizeConfig(name, config);
  if (error.ok()) error = normalized.status();
  if (error.ok()) {
    absl::MutexLock lock(&mu_);
    error = SubmitAdminLocked(name, *normalized, create, done);
  }
  if (!error.ok()) done(error);
}

absl::Status EngineImpl::SubmitAdminLocked(const std::string& name, const QueueConfig& c,
                                           bool create, Callback<QueueInfo>& done) {
  if (closed_) return Closing();
  if (!c.dead_letter_queue.empty() && !by_name_.contains(c.dead_letter_queue)) {
    return absl::InvalidArgumentError(
        Cat("config.dead_letter_queue: queue \"", c.dead_letter_queue, "\" does not exist"));
  }
  int64_t now = NowLocked();
  Queue* q = nullptr;
  bool write = true;
  std::optional<uint64_t> new_next_id;
  auto existing = by_name_.find(name);
  if (create) {
    if (existing != by_name_.end()) {
      q = existing->second;
      if (!(q->config == c)) {
        return absl::AlreadyExistsError(
            Cat("queue \"", name, "\" already exists with a different config; use UpdateQueue"));
      }
      write = false;  // identical: return it, once anything pending about it is durable
    } else {
      auto fresh = std::make_unique<Queue>();
      fresh->id = next_queue_id_++;
      new_next_id = next_queue_id_;
      fresh->name = name;
      fresh->config = c;
      fresh->create_time_ms = now;
      fresh->split_at = now;
      q = fresh.get();
      by_name_[name] = q;
      queues_[q->id] = std::move(fresh);
    }
  } else {
    if (existing == by_name_.end()) return NotFound(name);
    q = existing->second;
    q->config = c;
  }
  QueueInfo info = InfoLocked(*q, now);
  storage::QueueRecord record = ToRecord(q->id, q->name, q->config, q->create_time_ms);
  pipeline_->Submit(
      [&](CommitPipeline::Group& g) {
        rocksdb::WriteBatch& b = g.batch();
        if (!write) return;
        b.Put(default_cf_, QueueRecordKey(record.queue_id()), record.SerializeAsString());
        if (new_next_id) {
          std::string v;
          AppendBigEndian64(&v, *new_next_id);
          b.Put(default_cf_, kNextQueueIdKey, v);
        }
      },
      [info = std::move(info), done = std::move(done)](const absl::Status& s) {
        if (!s.ok()) return done(s);
        done(info);
      });
  return absl::OkStatus();
}

absl::StatusOr<QueueInfo> EngineImpl::GetQueue(std::string_view name) {
  absl::MutexLock lock(&mu_);
  if (closed_) return Closing();
  auto q = FindLocked(name);
  if (!q.ok()) return q.status();
  return InfoLocked(**q, NowLocked());
}

absl::StatusOr<ListQueuesResult> EngineImpl::ListQueues(std::string_view prefix, uint32_t page_size,
                                                        std::string_view page_token) {
  if (auto s = ValidateList(prefix, page_size, page_token); !s.ok()) return s;
  if (page_size == 0) page_size = Limits::kDefaultPageSize;
  absl::MutexLock lock(&mu_);
  if (closed_) return Closing();
  int64_t now = NowLocked();
  ListQueuesResult result;
  auto it = page_token.empty() ? by_name_.lower_bound(prefix) : by_name_.upper_bound(page_token);
  if (!page_token.empty() && page_token < prefix) it = by_name_.lower_bound(prefix);
  for (; it != by_name_.end() && std::string_view(it->first).starts_with(prefix); ++it) {
    if (result.queues.size() == page_size) {
      result.next_page_token = result.queues.back().name;
      break;
    }
    result.queues.push_back(InfoLocked(*it->second, now));
  }
  return result;
}

void EngineImpl::DeleteQueue(std::string name, Callback<bool> done) {
  std::vector<std::shared_ptr<LeaseWait>> ended;
  std::vector<std::shared_ptr<Subscription>> ended_subs;
  absl::Status error;
  {
    absl::MutexLock lock(&mu_);
    error = DeleteQueueLocked(name, done, &ended, &ended_subs);
  }
  if (!error.ok()) done(error);
  for (auto& w : ended) w->done(NotFound(name));
  for (auto& sub : ended_subs) {
    if (!sub->quiet.exchange(true)) sub->callbacks.ended(NotFound(name));
  }
}

absl::Status EngineImpl::DeleteQueueLocked(const std::string& name, Callback<bool>& done,
                                           std::vector<std::shared_ptr<LeaseWait>>* ended,
                                           std::vector<std::shared_ptr<Subscription>>* ended_subs) {
  if (closed_) return Closing();
  auto found = FindLocked(name);
  if (!found.ok()) return found.status();
  Queue* q = *found;
  for (auto& [other_name, other] : by_name_) {
    if (other != q && other->config.dead_letter_queue == name) {
      return absl::FailedPreconditionError(Cat("queue \"", name,
                                               "\" is the dead-letter queue of \"", other_name,
                                               "\"; change that queue's dead_letter_queue first"));
    }
  }
  for (auto& w : q->waiters) {
    if (w->state == LeaseWait::State::kWaiting && w->sub == nullptr) {
      LeaveWaitersLocked(*w, LeaseWait::State::kDone);
      ended->push_back(w);
    }
  }
  for (auto& sub : q->subscriptions) {
    if (sub->wait) LeaveWaitersLocked(*sub->wait, LeaseWait::State::kDone);
    sub->open = false;
    num_held_ -= static_cast<int64_t>(sub->held.size());
    --num_subscriptions_;
    ended_subs->push_back(std::move(sub));
  }
  q->subscriptions.clear();
  uint64_t id = q->id;
  by_name_.erase(q->name);
  queues_.erase(id);  // q is gone from here on
  pipeline_->Submit(
      [&](CommitPipeline::Group& g) {
        rocksdb::WriteBatch& b = g.batch();
        std::string lo = QueueStart(id), hi = QueueStart(id + 1);
        b.DeleteRange(messages_cf_, lo, hi);
        b.DeleteRange(state_cf_, lo, hi);
        b.DeleteRange(dedup_cf_, lo, hi);
        // Counters this group moved earlier are summed at the end of the batch, which
        // would put them after this deletion.
        g.DropCounters(CounterPrefix(id));
        b.DeleteRange(default_cf_, CounterPrefix(id), CounterPrefix(id + 1));
        b.Delete(default_cf_, QueueRecordKey(id));
      },
      [done = std::move(done)](const absl::Status& s) {
        if (!s.ok()) return done(s);
        done(true);
      });
  return absl::OkStatus();
}

void EngineImpl::PurgeQueue(std::string name, Callback<uint64_t> done) {
  absl::Status error;
  {
    absl::MutexLock lock(&mu_);
    error = PurgeQueueLocked(name, done);
  }
  if (!error.ok()) done(error);
}

absl::Status EngineImpl::PurgeQueueLocked(const std::string& name, Callback<uint64_t>& done) {
  if (closed_) return Closing();
  auto found = FindLocked(name);
  if (!found.ok()) return found.status();
  Queue& q = **found;
  uint64_t n = q.messages.size();
  for (auto& sub : q.subscriptions) {
    num_held_ -= static_cast<int64_t>(sub->held.size());
    sub->held.clear();
    sub->by_due.clear();
    sub->held_bytes = 0;
  }
  q.held_by.clear();  // the subscriptions get new messages at the next background pass
  q.messages.clear();
  q.index.clear();
  q.n_ready = q.n_leased = q.n_delayed = 0;
  q.counters[static_cast<int>(Counter::kPurged)] += n;
  uint64_t id = q.id;
  pipeline_->Submit(
      [&](CommitPipeline::Group& g) {
        rocksdb::WriteBatch& b = g.batch();
        std::string lo = QueueStart(id), hi = QueueStart(id + 1);
        b.DeleteRange(messages_cf_, lo, hi);
        b.DeleteRange(state_cf_, lo, hi);
        MergeCounter(g, id, Counter::kPurged, static_cast<int64_t>(n));
      },
      [n, done = std::move(done)](const absl::Status& s) {
        if (!s.ok()) return done(s);
        done(n);
      });
  return absl::OkStatus();
}

}  // namespace spool::engine::internal
