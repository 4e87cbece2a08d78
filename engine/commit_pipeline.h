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
// Counters: an operation adds to int64 counters (Int64Add merge operands in one column family)
// through its Group rather than its batch. A group's additions to one key are summed and
// written as a single operand at the end of the group's batch: still in the same atomic write
// as the changes they count, at one memtable entry per counter per group instead of one per
// operation (a group of 30 single-message Enqueues moved the same counter 30 times).
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
#include "absl/container/btree_map.h"
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

  // The group being formed, as an operation's fill sees it.
  class Group {
   public:
    rocksdb::WriteBatch& batch() { return batch_; }
    // Adds delta to the counter at key (in the pipeline's counter family).
    void AddToCounter(std::string key, int64_t delta);
    // Forgets this group's additions to keys that start with prefix. For an operation that
    // deletes those counters in batch(): an addition made before it must not land after the
    // deletion (the sums are written at the end of the batch).
    void DropCounters(std::string_view prefix);

   private:
    friend class CommitPipeline;
    // Appends one merge operand per counter moved, and forgets the sums.
    void WriteCounters(rocksdb::ColumnFamilyHandle* family);
    void Clear();

    rocksdb::WriteBatch batch_;
    absl::btree_map<std::string, int64_t> counters_;
  };

  // Called on the commit thread after each group that wrote something: how many operations
  // (Submit calls) it held and how long its write (and fsync, when sync) took.
  using GroupObserver = std::function<void(size_t operations, int64_t write_micros)>;

  // at_point (may be empty) is called at the named points of TestHooks::at_point. Counters go
  // to counter_family (nullptr: the default family), whose merge operator must add
  // little-endian int64 operands (EncodeInt64). observe (may be empty) times writes with
  // steady_micros, which must then be set.
  CommitPipeline(rocksdb::DB* db, bool sync, rocksdb::ColumnFamilyHandle* counter_family = nullptr,
                 std::function<void(std::string_view)> at_point = nullptr,
                 GroupObserver observe = nullptr, std::function<int64_t()> steady_micros = nullptr);
  ~CommitPipeline();  // Stop()s

  // Adds fill's writes to the forming group and queues done. Never calls done inline.
  void Submit(absl::FunctionRef<void(Group&)> fill, Done done);

  // While a Hold lives, the forming group is not taken for writing: Submits made under it go
  // into one group (an Ack and the lease it makes room for share an fsync). Hold only for
  // in-memory work.
  class Hold {
   public:
    explicit Hold(CommitPipeline* p);
    ~Hold();
    Hold(const Hold&) = delete;
    Hold& operator=(const Hold&) = delete;

   private:
    CommitPipeline* const p_;
  };

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
  rocksdb::ColumnFamilyHandle* const counter_family_;
  rocksdb::WriteOptions write_options_;
  const std::function<void(std::string_view)> at_point_;
  const GroupObserver observe_;
  const std::function<int64_t()> steady_micros_;

  absl::Mutex mu_;
  Group forming_ ABSL_GUARDED_BY(mu_);
  std::vector<Done> forming_done_ ABSL_GUARDED_BY(mu_);
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  int holds_ ABSL_GUARDED_BY(mu_) = 0;
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
