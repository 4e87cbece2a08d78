#include "engine/commit_pipeline.h"

#include "engine/strings.h"

namespace spool::engine {

absl::Status FromRocks(const rocksdb::Status& s, std::string_view what) {
  if (s.ok()) return absl::OkStatus();
  std::string msg = Cat(what, ": ", s.ToString());
  if (s.IsNoSpace()) return absl::ResourceExhaustedError(msg);
  if (s.IsCorruption()) return absl::DataLossError(msg);
  return absl::UnavailableError(msg);
}

CommitPipeline::CommitPipeline(rocksdb::DB* db, bool sync) : db_(db) {
  write_options_.sync = sync;
  thread_ = std::thread([this] { Run(); });
}

CommitPipeline::~CommitPipeline() { Stop(); }

void CommitPipeline::Submit(absl::FunctionRef<void(rocksdb::WriteBatch&)> fill, Done done) {
  absl::MutexLock lock(&mu_);
  fill(forming_);
  forming_done_.push_back(std::move(done));
}

void CommitPipeline::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_ && !thread_.joinable()) return;
    stopping_ = true;
  }
  if (thread_.joinable()) thread_.join();
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
  rocksdb::WriteBatch group;
  std::vector<Done> group_done;
  for (;;) {
    absl::Status error;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](CommitPipeline* p) ABSL_EXCLUSIVE_LOCKS_REQUIRED(p->mu_) {
            return p->stopping_ || !p->forming_done_.empty();
          },
          this));
      if (forming_done_.empty()) return;  // stopping and drained
      group.Clear();
      std::swap(group, forming_);
      group_done.swap(forming_done_);
      error = error_;
    }
    if (error.ok() && group.Count() > 0) {
      error = FromRocks(db_->Write(write_options_, &group), "write");
      absl::MutexLock lock(&mu_);
      ++groups_written_;
      if (!error.ok() && error_.ok()) error_ = error;
    }
    for (Done& done : group_done) done(error);
    group_done.clear();
  }
}

}  // namespace spool::engine
