// The one write path of the engine. Operations append their changes to the group being
// formed and give a callback; one commit thread writes each group as a single atomic
// WriteBatch with one fsync (in sync mode) and hands it to one completion thread, which calls
// the group's callbacks in submit order. While a group is being written the next one forms,
// and while its callbacks run (sending replies) the next one is written, so concurrent
// operations share fsyncs (LevelDB's BuildBatchGroup, made explicit) and replies never hold up
// the log. No engine lock is held across the write.
//
// Ordering: groups reach the log in submit order, and a callback runs only after every group
// submitted before it is durable. The engine submits while holding its own mutex, so log order
// is decision order.
//
// A failed write is sticky: its group's callbacks and every later one get the error, because
// after a storage error RocksDB's state and the engine's memory may disagree; only a restart
// (which rebuilds memory from disk) clears it.
#ifndef SPOOL_ENGINE_COMMIT_PIPELINE_H_
#define SPOOL_ENGINE_COMMIT_PIPELINE_H_

#include <deque>
#include <functional>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/functional/function_ref.h"
#include "absl/status/status.h"
#include "absl/synchronization/mutex.h"
#include "rocksdb/db.h"
#include "rocksdb/write_batch.h"

namespace spool::engine {

// RocksDB's status as the engine reports it: no space -> RESOURCE_EXHAUSTED, corruption ->
// DATA_LOSS, anything else -> UNAVAILABLE (the outcome of the write is unknown).
absl::Status FromRocks(const rocksdb::Status& s, std::string_view what);

class CommitPipeline {
 public:
  using Done = std::function<void(const absl::Status&)>;

  // at_point (may be empty) is called at the named points of TestHooks::at_point.
  CommitPipeline(rocksdb::DB* db, bool sync,
                 std::function<void(std::string_view)> at_point = nullptr);
  ~CommitPipeline();  // Stop()s

  // Appends fill's writes to the forming group and queues done. Never calls done inline.
  void Submit(absl::FunctionRef<void(rocksdb::WriteBatch&)> fill, Done done);

  // Writes out everything submitted, runs every callback, and ends the thread. Idempotent.
  void Stop();

  // OK, or the sticky error of a failed write.
  absl::Status error();

  // Test-only: how many groups were written (to check that writes are grouped).
  uint64_t groups_written();

 private:
  void Run();
  void Complete();

  rocksdb::DB* const db_;
  rocksdb::WriteOptions write_options_;
  const std::function<void(std::string_view)> at_point_;

  absl::Mutex mu_;
  rocksdb::WriteBatch forming_ ABSL_GUARDED_BY(mu_);
  std::vector<Done> forming_done_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::Status error_ ABSL_GUARDED_BY(mu_);
  uint64_t groups_written_ ABSL_GUARDED_BY(mu_) = 0;
  // Written groups waiting for their callbacks, oldest first.
  std::deque<std::pair<std::vector<Done>, absl::Status>> written_ ABSL_GUARDED_BY(mu_);
  bool writer_done_ ABSL_GUARDED_BY(mu_) = false;
  bool completing_ ABSL_GUARDED_BY(mu_) = false;  // callbacks are running (they may Submit)
  std::thread thread_;
  std::thread completion_thread_;
};

}  // namespace spool::engine

#endif  // SPOOL_ENGINE_COMMIT_PIPELINE_H_
