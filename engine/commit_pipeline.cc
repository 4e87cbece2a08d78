#include "engine/commit_pipeline.h"

#include <pthread.h>

#include "engine/coding.h"
#include "engine/strings.h"

namespace spool::engine {

absl::Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = Cat(what, ": ", s.ToString());
  if (s.IsNoSpace()) return absl::ResourceExhaustedError(msg);
  if (s.IsCorruption()) return absl::DataLossError(msg);
  return absl::UnavailableError(msg);
}

void CommitPipeline::Group::AddToCounter(std::string key, int64_t delta) {
  if (delta != 0) counters_[std::move(key)] += delta;
}

void CommitPipeline::Group::DropCounters(std::string_view prefix) {
  auto it = counters_.lower_bound(std::string(prefix));
  while (it != counters_.end() && std::string_view(it->first).starts_with(prefix)) {
    it = counters_.erase(it);
  }
}

void CommitPipeline::Group::WriteCounters(rocksdb::ColumnFamilyHandle* family) {
  for (const auto& [key, sum] : counters_) {
    if (sum != 0) batch_.Merge(family, key, EncodeInt64(sum));
  }
  counters_.clear();
}

void CommitPipeline::Group::Clear() {
  batch_.Clear();
  counters_.clear();
}

CommitPipeline::CommitPipeline(rocksdb::DB* db, bool sync,
                               rocksdb::ColumnFamilyHandle* counter_family,
                               std::function<void(std::string_view)> at_point,
                               GroupObserver observe, std::function<int64_t()> steady_micros)
    : db_(db),
      counter_family_(counter_family ? counter_family : db->DefaultColumnFamily()),
      at_point_(std::move(at_point)),
      observe_(std::move(observe)),
      steady_micros_(std::move(steady_micros)) {
  write_options_.sync = sync;
  // Named for top -H, perf and gdb (at most 15 characters).
  thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "spool-commit");
    Run();
  });
  completion_thread_ = std::thread([this] {
    pthread_setname_np(pthread_self(), "spool-complete");
    Complete();
  });
}

CommitPipeline::~CommitPipeline() { Stop(); }

void CommitPipeline::Submit(absl::FunctionRef<void(Group&)> fill, Done done) {
  absl::MutexLock lock(&mu_);
  fill(forming_);
  forming_done_.push_back(std::move(done));
}

CommitPipeline::Hold::Hold(CommitPipeline* p) : p_(p) {
  absl::MutexLock lock(&p_->mu_);
  ++p_->holds_;
}

CommitPipeline::Hold::~Hold() {
  absl::MutexLock lock(&p_->mu_);
  --p_->holds_;
}

void CommitPipeline::Stop() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
  if (completion_thread_.joinable()) completion_thread_.join();
}

absl::Status CommitPipeline::error() {
  absl::MutexLock lock(&mu_);
  return error_;
}

uint64_t CommitPipeline::groups_written() {
  absl::MutexLock lock(&mu_);
  return groups_written_;
}

void CommitPipeline::Run() {
  Group group;
  std::vector<Done> group_done;
  for (;;) {
    absl::Status error;
    {
      absl::MutexLock lock(&mu_);
      // Stop only once nothing is left anywhere: callbacks still to run may submit more.
      mu_.Await(absl::Condition(
          +[](CommitPipeline* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) {
            return (!p->forming_done_.empty() && p->holds_ == 0) ||
                   (p->stopping_ && p->forming_done_.empty() && p->written_.empty() &&
                    !p->completing_);
          },
          this));
      if (forming_done_.empty()) {
        writer_done_ = true;
        return;
      }
      group.Clear();
      std::swap(group.batch_, forming_.batch_);
      std::swap(group.counters_, forming_.counters_);
      group_done.swap(forming_done_);
      error = error_;
    }
    group.WriteCounters(counter_family_);
    rocksdb::WriteBatch& batch = group.batch_;
    if (error.ok() && batch.Count() > 0) {
      if (at_point_) at_point_("before-write");
      int64_t start = observe_ ? steady_micros_() : 0;
      error = FromRocks(db_->Write(write_options_, &batch), "write");
      if (observe_) observe_(group_done.size(), steady_micros_() - start);
      if (at_point_ && error.ok()) at_point_("after-write");
    }
    absl::MutexLock lock(&mu_);
    if (batch.Count() > 0) ++groups_written_;
    if (!error.ok() && error_.ok()) error_ = error;
    written_.emplace_back(std::move(group_done), error);
    group_done.clear();
  }
}

void CommitPipeline::Complete() {
  for (;;) {
    std::pair<std::vector<Done>, absl::Status> next;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](CommitPipeline* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) {
            return p->writer_done_ || !p->written_.empty();
          },
          this));
      if (written_.empty()) return;  // the writer stopped with nothing left anywhere
      next = std::move(written_.front());
      written_.pop_front();
      completing_ = true;
    }
    for (size_t i = 0; i < next.first.size(); ++i) {
      if (i == 1 && at_point_) at_point_("mid-replies");
      next.first[i](next.second);
    }
    absl::MutexLock lock(&mu_);
    completing_ = false;
  }
}

}  // namespace spool::engine
