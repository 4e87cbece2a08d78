// Background work: the tick (lease expiry, delays, retention, dedup expiry, waiter deadlines)
// and the wall-clock guard.
#include "engine/engine_impl.h"

namespace spool::engine::internal {

// ---------------------------------------------------------------------------------------------
// Background work

// ---------------------------------------------------------------------------------------------
// Wall-clock jumps. Lease deadlines, delays and retention are wall times (they must mean the
// same after a restart), so a clock set back holds them longer by the jump and a clock set
// forward ends them early. The engine cannot undo that; it notices and says so. A mark (wall
// and steady readings, and the steady clock's epoch) is stored at open and once a minute; the
// next open in the same epoch (boot) knows how much wall time should have passed.

namespace {

std::string Seconds(int64_t ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f s", static_cast<double>(ms) / 1000);
  return buf;
}

std::string JumpMessage(int64_t jump_ms, std::string_view when) {
  return jump_ms < 0
             ? Cat("the wall clock moved back by ", Seconds(-jump_ms), when,
                   ": Spool's time stands still until the wall clock catches up, so lease "
                   "deadlines, delays and retention end up to ",
                   Seconds(-jump_ms), " later than set; ready messages stay ready; nothing is lost")
             : Cat("the wall clock moved forward by ", Seconds(jump_ms), when,
                   ": lease deadlines, delays and retention are wall times, so they end up to ",
                   Seconds(jump_ms),
                   " earlier than set (leased messages may be delivered "
                   "again early); nothing is lost");
}

constexpr int64_t kJumpThresholdMs = 2'000;
constexpr int64_t kMarkEveryUs = 60'000'000;

}  // namespace

void EngineImpl::CheckClockAtOpenLocked() {
  int64_t now = clock_->NowMillis(), steady = clock_->SteadyMicros();
  std::string value;
  storage::ClockMark mark;
  rocksdb::Status s = db_->Get({}, default_cf_, kClockMarkKey, &value);
  if (s.ok() && mark.ParseFromString(value)) {
    last_now_ = std::max(last_now_, mark.wall_ms());
    std::string epoch = clock_->SteadyEpoch();
    if (!epoch.empty() && mark.boot_id() == epoch && steady >= mark.steady_us()) {
      int64_t jump = now - (mark.wall_ms() + (steady - mark.steady_us()) / 1000);
      if (std::abs(jump) >= kJumpThresholdMs) {
        Log(JumpMessage(jump, " since this store was last open"));
      }
    } else if (now < mark.wall_ms() - kJumpThresholdMs) {
      Log(JumpMessage(now - mark.wall_ms(), " since this store was last open (or more)"));
    }
  }
  tick_wall_ = now;
  tick_steady_ = steady;
  WriteClockMarkLocked(now, steady);
}

void EngineImpl::CheckClockLocked(int64_t now, int64_t steady) {
  int64_t jump = (now - tick_wall_) - (steady - tick_steady_) / 1000;
  tick_wall_ = now;
  tick_steady_ = steady;
  if (std::abs(jump) >= kJumpThresholdMs) {
    Log(JumpMessage(jump, " while spoold was running"));
    WriteClockMarkLocked(now, steady);
  } else if (steady - mark_steady_ >= kMarkEveryUs) {
    WriteClockMarkLocked(now, steady);
  }
}

void EngineImpl::WriteClockMarkLocked(int64_t now, int64_t steady) {
  mark_steady_ = steady;
  storage::ClockMark mark;
  mark.set_wall_ms(now);
  mark.set_steady_us(steady);
  mark.set_boot_id(clock_->SteadyEpoch());
  std::string value = mark.SerializeAsString();
  pipeline_->Submit(
      [&](CommitPipeline::Group& g) { g.batch().Put(default_cf_, kClockMarkKey, value); },
      [](const absl::Status&) {});
}

int64_t EngineImpl::TickInternal() {
  Jobs jobs;
  std::vector<std::shared_ptr<LeaseWait>> timed_out;
  int64_t steady = clock_->SteadyMicros();
  int64_t next_due = steady + 1'000'000;  // stats refresh, retention and dedup: once a second
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return next_due;
    CheckClockLocked(clock_->NowMillis(), steady);
    int64_t now = NowLocked();
    for (auto& [id, qp] : queues_) {
      Queue& q = *qp;
      RefreshSplitLocked(q, now);
      if (!q.subscriptions.empty())
        next_due = std::min(next_due, RenewLocked(q, now, steady, &jobs));
      if (!q.waiters.empty()) {
        for (auto it = q.waiters.begin(); it != q.waiters.end();) {
          LeaseWait& w = **it;
          if (w.state == LeaseWait::State::kWaiting && w.deadline_us <= steady) {
            LeaveWaitersLocked(w, LeaseWait::State::kDone);
            timed_out.push_back(*it);
            it = q.waiters.erase(it);
          } else {
            if (w.state == LeaseWait::State::kWaiting) next_due = std::min(next_due, w.deadline_us);
            ++it;
          }
        }
        ServeWaitersLocked(q, now, &jobs);
        // Wake when the next lease or delay ends. Entries visible already are pending
        // enqueues, whose commit serves the waiters itself: waking for them would spin.
        if (auto next = q.index.upper_bound({now, UINT64_MAX});
            !q.waiters.empty() && next != q.index.end()) {
          next_due = std::min(next_due, steady + (next->first - now) * 1000);
        }
      }

      // Retention: messages are in enqueue order, so the expired ones are at the front.
      std::vector<uint64_t> expired;
      if (*q.config.retention_ms > 0) {
        for (auto it = q.messages.begin();
             it != q.messages.end() &&
             expired.size() < static_cast<size_t>(options_.background_batch);
             ++it) {
          if (it->second.pending || it->second.enqueue_time + *q.config.retention_ms > now) break;
          expired.push_back(it->first);
        }
        for (uint64_t seq : expired) {
          ForgetLocked(q, seq);
          IndexRemoveLocked(q, seq, q.messages.at(seq));
          q.messages.erase(seq);
        }
        q.counters[static_cast<int>(Counter::kExpired)] += expired.size();
      }
      // Dedup ids past their window.
      std::vector<std::string> forgotten;
      while (!q.dedup_order.empty() &&
             forgotten.size() < static_cast<size_t>(options_.background_batch) &&
             q.dedup_order.front().first <= now) {
        auto& [expire_at, dedup_id] = q.dedup_order.front();
        auto it = q.dedup.find(dedup_id);
        if (it != q.dedup.end() && it->second.expire_at == expire_at) {
          q.dedup.erase(it);
          forgotten.push_back(std::move(dedup_id));
        }
        q.dedup_order.pop_front();
      }
      if (!expired.empty() || !forgotten.empty()) {
        pipeline_->Submit(
            [&](CommitPipeline::Group& g) {
              rocksdb::WriteBatch& b = g.batch();
              for (uint64_t seq : expired) {
                std::string key = MessageKey(q.id, seq);
                b.SingleDelete(messages_cf_, key);
                b.Delete(state_cf_, key);
              }
              MergeCounter(g, q.id, Counter::kExpired, static_cast<int64_t>(expired.size()));
              for (const std::string& dedup_id : forgotten) {
                b.Delete(dedup_cf_, DedupKey(q.id, dedup_id));
              }
            },
            [](const absl::Status&) {});
      }
    }
  }
  for (auto& w : timed_out) w->done(std::vector<LeasedMessage>{});
  for (auto& job : jobs) ReadPayloads(job);
  return next_due;
}

void EngineImpl::BackgroundLoop() {
  for (;;) {
    int64_t next_due = TickInternal();
    // Never sleep longer than 50 ms, so a wait that was registered while we slept, or a clock
    // that moved, is noticed promptly.
    int64_t sleep_us = std::clamp<int64_t>(next_due - clock_->SteadyMicros(), 0, 50'000);
    absl::MutexLock lock(&bg_mu_);
    if (bg_stop_) return;
    if (sleep_us > 0) bg_cv_.WaitWithTimeout(&bg_mu_, absl::Microseconds(sleep_us));
    if (bg_stop_) return;
  }
}

}  // namespace spool::engine::internal
