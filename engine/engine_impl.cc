// The engine: queues and messages in RocksDB (layout in storage_format.md), with each queue's
// lease index held in memory and rebuilt at open (layout "B" of DESIGN-NOTES.md §3).
//
// Concurrency: one mutex, mu_, guards every queue's in-memory state. It is held only for
// in-memory decisions and for handing the resulting writes to the commit pipeline, never
// across a write, an fsync or a payload read (the one exception, dead-lettering, reads one
// payload under it; see engine/README.md). Because writes are submitted under mu_, the log
// order is the decision order. Replies go out from the pipeline's callbacks, after the write is
// durable. A message whose enqueue is not yet durable is "pending": counted, but neither
// leased nor peeked until its write completes.
#include <pthread.h>
#include <unistd.h>

#include <atomic>
#include <deque>
#include <filesystem>
#include <map>
#include <thread>

#include "absl/base/thread_annotations.h"
#include "absl/container/btree_map.h"
#include "absl/container/btree_set.h"
#include "absl/container/flat_hash_map.h"
#include "absl/container/flat_hash_set.h"
#include "absl/functional/function_ref.h"
#include "absl/synchronization/mutex.h"
#include "engine/check.h"
#include "engine/coding.h"
#include "engine/commit_pipeline.h"
#include "engine/engine.h"
#include "engine/fault_fs.h"
#include "engine/receipt.h"
#include "engine/storage.pb.h"
#include "engine/store.h"
#include "engine/strings.h"
#include "engine/validate.h"
#include "rocksdb/db.h"
#include "rocksdb/env.h"
#include "rocksdb/file_system.h"
#include "rocksdb/options.h"

namespace spool::engine {

// Lease and Peek responses stop adding messages past this many payload bytes (always at least
// one message), so they fit gRPC clients' default 4 MiB receive limit with room for envelopes.
inline constexpr uint64_t kMaxResponseBytes = 3'500'000;
// Sequence numbers are reserved in blocks, persisted in the batch that first uses a block.
inline constexpr uint64_t kSeqBlock = 1 << 20;
// Payload records (messages family) are Put exactly once, when a message arrives in a queue,
// and removed exactly once, so they are removed with SingleDelete: a Put and its SingleDelete
// cancel out when the memtable is flushed, and a message consumed soon after it was enqueued
// never reaches a table file. (Purge and DeleteQueue use DeleteRange, which is also fine.)
// Most index entries one Lease looks at (skipping pending ones) before giving up.
inline constexpr size_t kMaxLeaseScan = 100'000;

namespace {

struct MsgState {
  int64_t visible_at = 0;  // wall ms: lease deadline, or when it becomes/became ready
  int64_t enqueue_time = 0;
  uint32_t delivery_count = 0;
  uint32_t size = 0;  // payload plus attribute bytes
  uint32_t lease_gen = 0;
  bool leased = false;   // the receipt of lease_gen is live
  bool pending = false;  // enqueue not yet durable
};

using IndexKey = std::pair<int64_t, uint64_t>;  // (visible_at, seq)

storage::StateRecord ToRecord(const MsgState& m) {
  storage::StateRecord r;
  r.set_visible_at_ms(m.visible_at);
  r.set_enqueue_time_ms(m.enqueue_time);
  r.set_delivery_count(m.delivery_count);
  r.set_lease_gen(m.lease_gen);
  r.set_leased(m.leased);
  r.set_size(m.size);
  return r;
}

MsgState FromRecord(const storage::StateRecord& r) {
  MsgState m;
  m.visible_at = r.visible_at_ms();
  m.enqueue_time = r.enqueue_time_ms();
  m.delivery_count = r.delivery_count();
  m.lease_gen = r.lease_gen();
  m.leased = r.leased();
  m.size = r.size();
  return m;
}

storage::QueueRecord ToRecord(uint64_t id, const std::string& name, const QueueConfig& c,
                              int64_t create_time_ms) {
  storage::QueueRecord r;
  r.set_queue_id(id);
  r.set_name(name);
  r.set_create_time_ms(create_time_ms);
  r.set_visibility_timeout_ms(c.visibility_timeout_ms.value_or(0));
  r.set_max_deliveries(c.max_deliveries);
  r.set_dead_letter_queue(c.dead_letter_queue);
  r.set_retention_ms(c.retention_ms.value_or(0));
  r.set_delay_ms(c.delay_ms.value_or(0));
  r.set_max_payload_bytes(c.max_payload_bytes);
  r.set_max_depth(c.max_depth);
  r.set_dedup_window_ms(c.dedup_window_ms.value_or(0));
  return r;
}

QueueConfig ConfigFromRecord(const storage::QueueRecord& r) {
  QueueConfig c;
  c.visibility_timeout_ms = r.visibility_timeout_ms();
  c.max_deliveries = r.max_deliveries();
  c.dead_letter_queue = r.dead_letter_queue();
  c.retention_ms = r.retention_ms();
  c.delay_ms = r.delay_ms();
  c.max_payload_bytes = r.max_payload_bytes();
  c.max_depth = r.max_depth();
  c.dedup_window_ms = r.dedup_window_ms();
  return c;
}

absl::Status NotFound(std::string_view queue) {
  return absl::NotFoundError(Cat("queue \"", queue, "\" not found"));
}

absl::Status Closing() { return absl::UnavailableError("spool is shutting down"); }

// Bytes of write-ahead log in a store's directory: what opening it will replay (0 for a new
// store, and for what cannot be read, which DB::Open will report).
uint64_t LogBytes(const std::string& db_path) {
  uint64_t bytes = 0;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(db_path, ec), end; !ec && it != end;
       it.increment(ec)) {
    if (it->path().extension() != ".log") continue;
    std::error_code size_ec;
    uintmax_t size = it->file_size(size_ec);
    if (!size_ec) bytes += size;
  }
  return bytes;
}

// One message's state, as read from the state family at open.
struct LoadedState {
  uint64_t queue_id;
  uint64_t seq;
  MsgState m;
};

// Reads and parses every message state on a thread of its own and hands them to `take` on the
// calling thread, in key order, a chunk at a time. Reading the store and building the
// in-memory maps from it are most of a restart's time (10 million messages stored: about two
// thirds and one third of it); this way they overlap. At most kMaxChunks chunks wait at once.
absl::Status ScanStates(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* family,
                        absl::FunctionRef<void(const std::vector<LoadedState>&)> take) {
  constexpr size_t kChunk = 4096;
  constexpr size_t kMaxChunks = 8;
  struct Shared {
    absl::Mutex mu;
    std::deque<std::vector<LoadedState>> chunks ABSL_GUARDED_BY(mu);
    bool done ABSL_GUARDED_BY(mu) = false;
    absl::Status status ABSL_GUARDED_BY(mu);
  } shared;
  std::thread reader([db, family, &shared] {
    pthread_setname_np(pthread_self(), "spool-load");
    // A scan reads every block once: filling the block cache with them would only evict.
    rocksdb::ReadOptions ro;
    ro.fill_cache = false;
    ro.readahead_size = 2 << 20;
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro, family));
    storage::StateRecord r;
    std::vector<LoadedState> chunk;
    chunk.reserve(kChunk);
    absl::Status status;
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      auto parts = ParseMessageKey(it->key().ToStringView());
      if (!parts || !r.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        status = absl::DataLossError("a message state record in the store is damaged");
        break;
      }
      chunk.push_back({parts->queue_id, parts->seq, FromRecord(r)});
      if (chunk.size() == kChunk) {
        absl::MutexLock lock(&shared.mu);
        shared.mu.Await(absl::Condition(
            +[](Shared* s)
                 ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) { return s->chunks.size() < kMaxChunks; },
            &shared));
        shared.chunks.push_back(std::move(chunk));
        chunk = {};
        chunk.reserve(kChunk);
      }
    }
    if (status.ok() && !it->status().ok())
      status = FromRocks(it->status(), "loading message states");
    absl::MutexLock lock(&shared.mu);
    if (!chunk.empty()) shared.chunks.push_back(std::move(chunk));
    shared.status = status;
    shared.done = true;
  });
  for (;;) {
    std::vector<LoadedState> chunk;
    {
      absl::MutexLock lock(&shared.mu);
      shared.mu.Await(absl::Condition(
          +[](Shared* s)
               ABSL_EXCLUSIVE_LOCKS_REQUIRED(s->mu) { return s->done || !s->chunks.empty(); },
          &shared));
      if (shared.chunks.empty()) break;
      chunk = std::move(shared.chunks.front());
      shared.chunks.pop_front();
    }
    take(chunk);
  }
  reader.join();
  absl::MutexLock lock(&shared.mu);
  return shared.status;
}

}  // namespace

class LeaseWait {
 public:
  enum class State { kWaiting, kClaimed, kDone };
  uint64_t queue_id = 0;
  uint32_t max_messages = 1;
  int64_t visibility_ms = 0;
  int64_t deadline_us = 0;  // steady clock
  Callback<std::vector<LeasedMessage>> done;
  State state = State::kWaiting;  // guarded by the engine's mu_
};

namespace {

// One Lease's messages on their way out: complete when both the lease write is durable and
// the payloads are read (the two overlap).
struct LeaseJob {
  uint64_t queue_id = 0;
  std::vector<uint64_t> seqs;
  std::vector<uint32_t> lease_gens;
  std::vector<LeasedMessage> messages;  // without ids, receipts and payloads until filled in
  std::vector<bool> found;
  Callback<std::vector<LeasedMessage>> done;
  absl::Status commit_status;
  absl::Status read_status;
  std::atomic<int> remaining{2};

  // The messages' ids and signed receipts. Outside the engine's lock: signing is most of what
  // a Lease of many messages would otherwise hold it for.
  void IdentifyMessages(const ReceiptSigner& signer) {
    for (size_t k = 0; k < messages.size(); ++k) {
      messages[k].message_id = FormatMessageId(seqs[k]);
      messages[k].receipt = signer.Sign({queue_id, seqs[k], lease_gens[k]});
    }
  }

  void PartDone() {
    if (remaining.fetch_sub(1) != 1) return;
    if (!commit_status.ok() || !read_status.ok()) {
      done(!commit_status.ok() ? commit_status : read_status);
      return;
    }
    std::vector<LeasedMessage> out;
    out.reserve(messages.size());
    for (size_t i = 0; i < messages.size(); ++i) {
      if (found[i]) out.push_back(std::move(messages[i]));
    }
    done(std::move(out));
  }
};

struct Queue {
  uint64_t id = 0;
  std::string name;
  QueueConfig config;  // normalized
  int64_t create_time_ms = 0;

  absl::btree_map<uint64_t, MsgState> messages;
  absl::btree_set<IndexKey> index;  // every message, pending ones too

  // The ready/leased/delayed split is kept as counts over the index, as of split_at: an entry
  // with visible_at <= split_at counts as ready. RefreshSplit moves split_at to now.
  int64_t split_at = 0;
  uint64_t n_ready = 0, n_leased = 0, n_delayed = 0;

  std::array<int64_t, kCounterCount> counters{};

  struct DedupEntry {
    uint64_t seq;
    int64_t expire_at;
  };
  absl::flat_hash_map<std::string, DedupEntry> dedup;
  std::deque<std::pair<int64_t, std::string>> dedup_order;  // (expire_at, id), insertion order

  std::deque<std::shared_ptr<LeaseWait>> waiters;
};

class EngineImpl final : public Engine {
 public:
  EngineImpl(Options options, std::shared_ptr<Clock> clock)
      : options_(std::move(options)), clock_(std::move(clock)) {}
  ~EngineImpl() override { Close(); }

  absl::Status OpenStore();
  void StartBackground();

  void Close() override;
  absl::Status Health() override;
  void CreateQueue(std::string name, QueueConfig config, Callback<QueueInfo> done) override;
  absl::StatusOr<QueueInfo> GetQueue(std::string_view name) override;
  absl::StatusOr<ListQueuesResult> ListQueues(std::string_view prefix, uint32_t page_size,
                                              std::string_view page_token) override;
  void UpdateQueue(std::string name, QueueConfig config, Callback<QueueInfo> done) override;
  void DeleteQueue(std::string name, Callback<bool> done) override;
  void PurgeQueue(std::string name, Callback<uint64_t> done) override;
  void Enqueue(std::string queue, std::vector<EnqueueEntry> entries,
               Callback<std::vector<EnqueueResult>> done) override;
  std::shared_ptr<LeaseWait> Lease(LeaseRequest request,
                                   Callback<std::vector<LeasedMessage>> done) override;
  void CancelLease(const std::shared_ptr<LeaseWait>& wait) override;
  void Ack(std::string queue, std::vector<std::string> receipts,
           Callback<std::vector<ReceiptOutcome>> done) override;
  void Nack(std::string queue, std::vector<std::string> receipts, int64_t delay_ms,
            Callback<std::vector<ReceiptOutcome>> done) override;
  void ExtendLease(std::string queue, std::vector<std::string> receipts,
                   std::optional<int64_t> visibility_timeout_ms,
                   Callback<std::vector<ReceiptOutcome>> done) override;
  absl::StatusOr<PeekResult> Peek(std::string_view queue, uint32_t max_messages,
                                  std::string_view start_after) override;
  void MoveMessages(std::string source, std::string destination, uint32_t max_messages,
                    Callback<std::vector<MovedMessage>> done) override;
  void DeleteMessage(std::string queue, std::string message_id, Callback<bool> done) override;
  RuntimeStats Runtime() override;
  void Tick() override { TickInternal(); }

 private:
  enum class ReceiptOp { kAck, kNack, kExtend };
  using Jobs = std::vector<std::shared_ptr<LeaseJob>>;
  using Activations = std::vector<std::pair<uint64_t, uint64_t>>;  // (queue_id, seq)

  void Log(const std::string& line);
  absl::StatusOr<Queue*> FindLocked(std::string_view name) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  Queue* FindByIdLocked(uint64_t id) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  QueueInfo InfoLocked(Queue& q, int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  void CountLocked(Queue& q, const MsgState& m, int delta) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void IndexAddLocked(Queue& q, uint64_t seq, const MsgState& m) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The same, trying `hint` first (the place just after where the entry belongs: no search of
  // the tree when it is right); returns the place just after the new entry, the hint for an
  // entry that follows it.
  absl::btree_set<IndexKey>::iterator IndexAddLocked(Queue& q, uint64_t seq, const MsgState& m,
                                                     absl::btree_set<IndexKey>::iterator hint)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void IndexRemoveLocked(Queue& q, uint64_t seq, const MsgState& m)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void RefreshSplitLocked(Queue& q, int64_t now) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds the counter delta to the group, which sums each counter's deltas into one operand;
  // the caller has already moved the in-memory value.
  void MergeCounter(CommitPipeline::Group& g, uint64_t queue_id, Counter c, int64_t delta);
  uint64_t AllocSeqsLocked(uint64_t n, std::optional<uint64_t>* new_reservation)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // Marks m leased to a new holder for visibility_ms from now; returns what the holder gets,
  // without its id, receipt (LeaseJob::IdentifyMessages) and payload.
  LeasedMessage MarkLeasedLocked(MsgState& m, int64_t visibility_ms, int64_t now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Leases up to max messages of q (dead-lettering those past max_deliveries on the way) and
  // submits the writes. Returns nullptr when nothing was leased.
  std::shared_ptr<LeaseJob> SelectLocked(Queue& q, uint32_t max, int64_t visibility_ms, int64_t now,
                                         Callback<std::vector<LeasedMessage>> done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Moves the messages from one queue to another as new messages (new seq, delivery count 0),
  // in one batch, and submits it. kDeadLetter records where each came from; kRedrive clears
  // that. Appends what moved to *moved when given. Messages whose record cannot be read stay.
  enum class MoveKind { kDeadLetter, kRedrive };
  void MoveLocked(Queue& from, Queue& to, const std::vector<uint64_t>& seqs, int64_t now,
                  MoveKind kind, std::vector<MovedMessage>* moved, CommitPipeline::Done extra_done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status MoveMessagesLocked(const std::string& source, const std::string& destination,
                                  uint32_t max, Callback<std::vector<MovedMessage>>& done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status DeleteMessageLocked(const std::string& queue, const std::string& id,
                                   Callback<bool>& done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void ServeWaitersLocked(Queue& q, int64_t now, Jobs* jobs) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Reads the payloads of a job's messages, then completes its half. Call without mu_.
  void ReadPayloads(const std::shared_ptr<LeaseJob>& job);
  // After a write: clears pending on the named messages and serves waiters of the queues
  // touched. Call without mu_.
  void AfterCommit(const absl::Status& s, const Activations& activate,
                   const std::vector<uint64_t>& wake);

  // The *Locked forms below return an error without calling done (the public wrappers call it
  // after releasing mu_, so callbacks never run under the lock); on OK they have handed done to
  // the commit pipeline.
  void ReceiptCall(ReceiptOp op, std::string queue, std::vector<std::string> receipts,
                   int64_t duration_ms, Callback<std::vector<ReceiptOutcome>> done);
  // receipts: what each receipt says, or nullopt for one that is not ours (ReceiptSigner).
  absl::Status ReceiptCallLocked(ReceiptOp op, std::string_view queue,
                                 const std::vector<std::optional<ReceiptFields>>& receipts,
                                 int64_t duration_ms, Callback<std::vector<ReceiptOutcome>>& done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SubmitAdmin(std::string name, QueueConfig config, bool create, Callback<QueueInfo> done);
  absl::Status SubmitAdminLocked(const std::string& name, const QueueConfig& c, bool create,
                                 Callback<QueueInfo>& done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status DeleteQueueLocked(const std::string& name, Callback<bool>& done,
                                 std::vector<std::shared_ptr<LeaseWait>>* ended)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status PurgeQueueLocked(const std::string& name, Callback<uint64_t>& done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status EnqueueLocked(const std::string& queue, std::vector<EnqueueEntry>& entries,
                             Callback<std::vector<EnqueueResult>>& done)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status LeaseLocked(const LeaseRequest& request, Callback<std::vector<LeasedMessage>>& done,
                           std::shared_ptr<LeaseJob>* job, std::shared_ptr<LeaseWait>* wait)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Returns the steady time (us) by which Tick wants to run again.
  int64_t TickInternal();
  // The engine's time: the wall clock, but never earlier than a time already used. A wall
  // clock set back would otherwise hide ready messages (a message's visible time is when it
  // was enqueued); instead the engine's time stands still until the wall clock catches up.
  int64_t NowLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    last_now_ = std::max(last_now_, clock_->NowMillis());
    return last_now_;
  }
  void CheckClockAtOpenLocked() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void CheckClockLocked(int64_t now, int64_t steady) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void WriteClockMarkLocked(int64_t now, int64_t steady) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void BackgroundLoop();

  const Options options_;
  const std::shared_ptr<Clock> clock_;
  int lock_fd_ = -1;
  std::unique_ptr<rocksdb::Env> env_;  // the fault file system's, when TestHooks ask for it
  // Wall and steady readings at the last tick and the last stored clock mark.
  int64_t tick_wall_ ABSL_GUARDED_BY(mu_) = 0, tick_steady_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t mark_steady_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t last_now_ ABSL_GUARDED_BY(mu_) = 0;  // see NowLocked
  std::unique_ptr<rocksdb::DB> db_;
  rocksdb::ColumnFamilyHandle* default_cf_ = nullptr;
  rocksdb::ColumnFamilyHandle* messages_cf_ = nullptr;
  rocksdb::ColumnFamilyHandle* state_cf_ = nullptr;
  rocksdb::ColumnFamilyHandle* dedup_cf_ = nullptr;
  std::vector<rocksdb::ColumnFamilyHandle*> handles_;
  // Set at open and only read after: used without mu_ (its methods are const and thread-safe).
  std::unique_ptr<ReceiptSigner> signer_;
  std::unique_ptr<CommitPipeline> pipeline_;

  absl::Mutex mu_;
  absl::flat_hash_map<uint64_t, std::unique_ptr<Queue>> queues_ ABSL_GUARDED_BY(mu_);
  std::map<std::string, Queue*, std::less<>> by_name_ ABSL_GUARDED_BY(mu_);
  uint64_t next_seq_ ABSL_GUARDED_BY(mu_) = 1;
  uint64_t seq_reserved_ ABSL_GUARDED_BY(mu_) = 1;  // seqs below this may have been used
  uint64_t next_queue_id_ ABSL_GUARDED_BY(mu_) = 1;
  int64_t num_waiters_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;

  // Reads outside mu_ (payloads for Lease and Peek) hold this shared; Close takes it exclusive
  // before it frees the store, and sets db_closed_.
  absl::Mutex db_mu_;
  bool db_closed_ ABSL_GUARDED_BY(db_mu_) = false;

  absl::Mutex bg_mu_;
  absl::CondVar bg_cv_;
  bool bg_stop_ ABSL_GUARDED_BY(bg_mu_) = false;
  std::thread bg_thread_;
};

void EngineImpl::Log(const std::string& line) {
  if (options_.log) {
    options_.log(line);
  } else {
    std::fprintf(stderr, "spool: %s\n", line.c_str());
  }
}

// ---------------------------------------------------------------------------------------------
// Opening and closing

absl::Status EngineImpl::OpenStore() {
  absl::StatusOr<int> dir_lock = LockDataDir(options_.data_dir, /*create=*/true);
  if (!dir_lock.ok()) return dir_lock.status();
  lock_fd_ = *dir_lock;
  rocksdb::DB* raw = nullptr;
  std::string db_path = StorePath(options_.data_dir);
  rocksdb::DBOptions db_options = StoreOptions();
  if (options_.test.faults) {
    env_ = rocksdb::NewCompositeEnv(
        NewFaultFileSystem(rocksdb::FileSystem::Default(), options_.test.faults));
    db_options.env = env_.get();
    // RocksDB retries a failed background write once a second; after an injected fault (a
    // simulated power cut) that only makes closing wait. The engine's own error is sticky
    // anyway (commit_pipeline.h).
    db_options.max_bgerror_resume_count = 0;
  }
  // After a crash during heavy writing (a large log left to replay), compactions wait until
  // the messages are loaded: those owed would otherwise take one of the machine's cores from
  // the scan below (10.8 million stored and a 290 MB log to replay after a kill -9, four runs
  // each: spoold's CPU by SERVING 7.0-10.0 s -> 4.7-5.2 s, time to SERVING 4.2-6.0 s ->
  // 3.9-4.2 s). Nothing writes to the store until then but the small first-open batch.
  const uint64_t log_bytes = LogBytes(db_path);
  const bool defer_compactions = log_bytes >= options_.defer_compactions_log_bytes;
  std::vector<rocksdb::ColumnFamilyDescriptor> families = StoreFamilies();
  for (auto& f : families) f.options.disable_auto_compactions = defer_compactions;
  rocksdb::Status s = rocksdb::DB::Open(db_options, db_path, families, &handles_, &raw);
  if (!s.ok()) {
    if (s.IsCorruption()) {
      return absl::DataLossError(Cat(
          "the store in ", db_path, " is damaged and opening it would lose data (", s.ToString(),
          "); spoold will not start on it. Keep a copy of the directory; see README "
          "\"Recovering a damaged store\""));
    }
    return FromRocks(s, Cat("opening the store in ", db_path));
  }
  db_.reset(raw);
  default_cf_ = handles_[0];
  messages_cf_ = handles_[1];
  state_cf_ = handles_[2];
  dedup_cf_ = handles_[3];

  // Format version and receipt secret; a new store gets both in one synced write.
  std::string value;
  rocksdb::WriteBatch init;
  s = db_->Get({}, default_cf_, kFormatVersionKey, &value);
  if (s.IsNotFound()) {
    std::string v;
    AppendBigEndian64(&v, kFormatVersion);
    init.Put(default_cf_, kFormatVersionKey, v);
  } else if (!s.ok()) {
    return FromRocks(s, "reading the format version");
  } else if (value.size() != 8 || DecodeBigEndian64(value) != kFormatVersion) {
    return absl::FailedPreconditionError(
        Cat("the store in ", db_path, " has an unknown format version"));
  }
  s = db_->Get({}, default_cf_, kSecretKey, &value);
  if (s.IsNotFound()) {
    value = NewReceiptSecret();
    init.Put(default_cf_, kSecretKey, value);
  } else if (!s.ok()) {
    return FromRocks(s, "reading the receipt secret");
  }
  if (value.size() != ReceiptSigner::kSecretBytes) {
    return absl::DataLossError("the receipt secret in the store is damaged");
  }
  signer_ = std::make_unique<ReceiptSigner>(value);
  if (init.Count() > 0) {
    rocksdb::WriteOptions wo;
    wo.sync = true;
    if (auto st = FromRocks(db_->Write(wo, &init), "initializing the store"); !st.ok()) return st;
  }

  absl::MutexLock lock(&mu_);
  int64_t now = NowLocked();
  for (auto [key, target] :
       {std::pair{kNextQueueIdKey, &next_queue_id_}, std::pair{kSeqReservedKey, &seq_reserved_}}) {
    s = db_->Get({}, default_cf_, key, &value);
    if (s.ok() && value.size() == 8) {
      *target = DecodeBigEndian64(value);
    } else if (!s.IsNotFound()) {
      return absl::DataLossError(Cat("cannot read ", key, ": ", s.ToString()));
    }
  }
  next_seq_ = seq_reserved_;

  // Queues and their counters.
  {
    std::string lo(1, kQueuePrefix), hi(1, kQueuePrefix + 1);
    rocksdb::Slice lo_s(lo), hi_s(hi);
    rocksdb::ReadOptions ro;
    ro.iterate_lower_bound = &lo_s;
    ro.iterate_upper_bound = &hi_s;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, default_cf_));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      storage::QueueRecord r;
      if (!r.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        return absl::DataLossError("a queue record in the store is damaged");
      }
      auto q = std::make_unique<Queue>();
      q->id = r.queue_id();
      q->name = r.name();
      q->config = ConfigFromRecord(r);
      q->create_time_ms = r.create_time_ms();
      q->split_at = now;
      by_name_[q->name] = q.get();
      queues_[q->id] = std::move(q);
    }
    if (!it->status().ok()) return FromRocks(it->status(), "loading queues");
  }
  {
    std::string lo(1, kCounterPrefix), hi(1, kCounterPrefix + 1);
    rocksdb::Slice lo_s(lo), hi_s(hi);
    rocksdb::ReadOptions ro;
    ro.iterate_lower_bound = &lo_s;
    ro.iterate_upper_bound = &hi_s;
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(ro, default_cf_));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      std::string_view key = it->key().ToStringView();
      auto v = DecodeInt64(it->value().ToStringView());
      if (key.size() != 10 || !v) return absl::DataLossError("a counter in the store is damaged");
      Queue* q = FindByIdLocked(DecodeBigEndian64(key.substr(1)));
      uint8_t c = static_cast<uint8_t>(key[9]);
      if (q != nullptr && c < kCounterCount) q->counters[c] = *v;
    }
    if (!it->status().ok()) return FromRocks(it->status(), "loading counters");
  }

  // Every message's state: rebuilds the messages and the lease index of every queue.
  uint64_t loaded = 0, orphans = 0;
  Queue* q = nullptr;
  absl::Status scanned =
      ScanStates(db_.get(), state_cf_, [&](const std::vector<LoadedState>& chunk) {
        mu_.AssertHeld();  // held by this thread, which runs `take`
        for (const LoadedState& state : chunk) {
          if (q == nullptr || q->id != state.queue_id) q = FindByIdLocked(state.queue_id);
          if (q == nullptr) {
            ++orphans;
            continue;
          }
          SPOOL_CHECK(state.seq < seq_reserved_,
                      "a stored message has an unreserved sequence number");
          last_now_ = std::max(last_now_, state.m.enqueue_time);
          q->messages.emplace_hint(q->messages.end(), state.seq, state.m);
          // Scanned by sequence number, a backlog that was never leased comes in index order
          // too (enqueue times do not decrease): placed after the last entry, it costs no
          // search of the tree, which was a fifth of the restart with 10 million messages
          // stored. Entries out of that order fall back to a search.
          IndexAddLocked(*q, state.seq, state.m, q->index.end());
          ++loaded;
        }
      });
  if (!scanned.ok()) return scanned;
  {
    std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator({}, dedup_cf_));
    for (it->SeekToFirst(); it->Valid(); it->Next()) {
      std::string_view key = it->key().ToStringView();
      storage::DedupRecord r;
      if (key.size() < 8 ||
          !r.ParseFromArray(it->value().data(), static_cast<int>(it->value().size()))) {
        return absl::DataLossError("a dedup record in the store is damaged");
      }
      Queue* q = FindByIdLocked(DecodeBigEndian64(key));
      if (q == nullptr) continue;
      std::string id(key.substr(8));
      q->dedup[id] = {r.seq(), r.expire_at_ms()};
      q->dedup_order.emplace_back(r.expire_at_ms(), std::move(id));
    }
    if (!it->status().ok()) return FromRocks(it->status(), "loading dedup ids");
    for (auto& [id, q] : queues_) {
      std::sort(q->dedup_order.begin(), q->dedup_order.end());
    }
  }
  pipeline_ = std::make_unique<CommitPipeline>(
      db_.get(),
      options_.durability == Durability::kSync &&
          options_.test.mutation != Mutation::kReplyBeforeFsync,
      default_cf_, options_.test.at_point, options_.on_commit_group,
      [clock = clock_] { return clock->SteadyMicros(); });
  if (defer_compactions) {
    // Unlike SetOptions, this also schedules the compactions now owed.
    s = db_->EnableAutoCompaction(handles_);
    if (!s.ok()) return FromRocks(s, "starting compactions");
  }
  CheckClockAtOpenLocked();
  Log(Cat("opened ", options_.data_dir, ": ", queues_.size(), " queues, ", loaded, " messages",
          orphans ? Cat(", ", orphans, " orphaned states") : "",
          defer_compactions ? Cat(", ", log_bytes >> 20, " MiB of log replayed") : "",
          ", durability ", options_.durability == Durability::kSync ? "sync" : "async"));
  return absl::OkStatus();
}

void EngineImpl::StartBackground() {
  if (options_.background_thread) {
    bg_thread_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "spool-timers");
      BackgroundLoop();
    });
  }
}

void EngineImpl::Close() {
  std::vector<std::shared_ptr<LeaseWait>> waiting;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return;
    closed_ = true;
    for (auto& [id, q] : queues_) {
      for (auto& w : q->waiters) {
        if (w->state == LeaseWait::State::kWaiting) {
          w->state = LeaseWait::State::kDone;
          waiting.push_back(w);
        }
      }
      q->waiters.clear();
    }
    num_waiters_ = 0;
  }
  for (auto& w : waiting) w->done(std::vector<LeasedMessage>{});
  {
    absl::MutexLock lock(&bg_mu_);
    bg_stop_ = true;
    bg_cv_.Signal();
  }
  if (bg_thread_.joinable()) bg_thread_.join();
  if (pipeline_) pipeline_->Stop();
  absl::MutexLock db_lock(&db_mu_);
  db_closed_ = true;
  // After a simulated power cut (TestHooks) there is nothing to write out and no point trying.
  bool power_off = options_.test.faults && options_.test.faults->crashed();
  if (db_) {
    // A clean stop flushes the memtables, so the next open need not replay the log.
    rocksdb::Status s =
        power_off ? rocksdb::Status::OK() : db_->Flush(rocksdb::FlushOptions(), handles_);
    if (!s.ok()) {
      Log(Cat("flush at close failed (the log will be replayed at the next open): ", s.ToString()));
    }
    for (auto* h : handles_) db_->DestroyColumnFamilyHandle(h);
    handles_.clear();
    db_->Close();
    db_.reset();
  }
  if (lock_fd_ >= 0) {
    ::close(lock_fd_);  // releases the flock
    lock_fd_ = -1;
  }
}

RuntimeStats EngineImpl::Runtime() {
  RuntimeStats r;
  {
    absl::MutexLock lock(&mu_);
    r.lease_waiters = num_waiters_;
  }
  absl::ReaderMutexLock db_lock(&db_mu_);
  if (db_closed_ || !db_) return r;
  for (auto* h : handles_) {
    uint64_t v = 0;
    if (db_->GetIntProperty(h, rocksdb::DB::Properties::kLiveSstFilesSize, &v)) {
      r.live_sst_bytes += v;
    }
    if (db_->GetIntProperty(h, rocksdb::DB::Properties::kTotalSstFilesSize, &v)) {
      r.total_sst_bytes += v;
    }
    if (db_->GetIntProperty(h, rocksdb::DB::Properties::kCurSizeAllMemTables, &v)) {
      r.memtable_bytes += v;
    }
  }
  rocksdb::VectorLogPtr wals;
  if (db_->GetSortedWalFiles(wals).ok()) {
    for (const auto& w : wals) r.wal_bytes += w->SizeFileBytes();
  }
  return r;
}

absl::Status EngineImpl::Health() {
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return Closing();
  }
  return pipeline_->error();
}

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
  absl::Status error;
  {
    absl::MutexLock lock(&mu_);
    error = DeleteQueueLocked(name, done, &ended);
  }
  if (!error.ok()) done(error);
  for (auto& w : ended) w->done(NotFound(name));
}

absl::Status EngineImpl::DeleteQueueLocked(const std::string& name, Callback<bool>& done,
                                           std::vector<std::shared_ptr<LeaseWait>>* ended) {
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
    if (w->state == LeaseWait::State::kWaiting) {
      w->state = LeaseWait::State::kDone;
      --num_waiters_;
      ended->push_back(w);
    }
  }
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
      while (taker_left == 0 && !q.waiters.empty()) {
        std::shared_ptr<LeaseWait> w = std::move(q.waiters.front());
        q.waiters.pop_front();
        if (w->state != LeaseWait::State::kWaiting) continue;
        w->state = LeaseWait::State::kClaimed;
        --num_waiters_;
        auto job = std::make_shared<LeaseJob>();
        job->queue_id = q.id;
        job->done = std::move(w->done);
        job->remaining = 1;  // the payloads are in hand: only the write is outstanding
        handoffs.push_back(std::move(job));
        taker_left = std::max<uint32_t>(w->max_messages, 1);
        taker_bytes = 0;
        taker_visibility = w->visibility_ms;
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

void EngineImpl::MoveLocked(Queue& from, Queue& to, const std::vector<uint64_t>& seqs, int64_t now,
                            MoveKind kind, std::vector<MovedMessage>* moved,
                            CommitPipeline::Done extra_done) {
  // The payload record is rewritten under the new key, so it is read here, under the lock.
  // Moves are rare (poison messages, operator redrives) and this keeps each one atomic.
  struct Move {
    uint64_t seq, new_seq;
    std::string new_key, record;
  };
  std::vector<Move> moves;
  for (uint64_t seq : seqs) {
    std::string value;
    rocksdb::Status s = db_->Get({}, messages_cf_, MessageKey(from.id, seq), &value);
    storage::MessageRecord record;
    if (!s.ok() || !record.ParseFromString(value)) {
      Log(Cat("cannot read message ", FormatMessageId(seq), " of queue ", from.name,
              " to move it: ", s.ok() ? "damaged record" : s.ToString()));
      continue;
    }
    record.set_enqueue_time_ms(now);
    if (kind == MoveKind::kDeadLetter) {
      record.set_dead_letter_source_queue(from.name);
      record.set_dead_letter_source_seq(seq);
    } else {
      record.clear_dead_letter_source_queue();
      record.clear_dead_letter_source_seq();
    }
    moves.push_back({seq, 0, "", record.SerializeAsString()});
  }
  std::optional<uint64_t> reservation;
  uint64_t first = AllocSeqsLocked(moves.size(), &reservation);
  Activations activate;
  std::vector<std::string> states;
  for (size_t k = 0; k < moves.size(); ++k) {
    Move& mv = moves[k];
    mv.new_seq = first + k;
    mv.new_key = MessageKey(to.id, mv.new_seq);
    const MsgState& old = from.messages.at(mv.seq);
    IndexRemoveLocked(from, mv.seq, old);
    MsgState m;
    m.enqueue_time = now;
    m.visible_at = now;
    m.size = old.size;
    m.pending = true;
    from.messages.erase(mv.seq);
    to.messages.emplace(mv.new_seq, m);
    IndexAddLocked(to, mv.new_seq, m);
    activate.emplace_back(to.id, mv.new_seq);
    states.push_back(ToRecord(m).SerializeAsString());
    if (moved) moved->push_back({FormatMessageId(mv.seq), FormatMessageId(mv.new_seq)});
  }
  int64_t n = static_cast<int64_t>(moves.size());
  Counter out = kind == MoveKind::kDeadLetter ? Counter::kDeadLettered : Counter::kMoved;
  from.counters[static_cast<int>(out)] += n;
  to.counters[static_cast<int>(Counter::kEnqueued)] += n;
  pipeline_->Submit(
      [&](CommitPipeline::Group& g) {
        rocksdb::WriteBatch& b = g.batch();
        for (size_t k = 0; k < moves.size(); ++k) {
          std::string old_key = MessageKey(from.id, moves[k].seq);
          b.SingleDelete(messages_cf_, old_key);
          b.Delete(state_cf_, old_key);
          b.Put(messages_cf_, moves[k].new_key, moves[k].record);
          b.Put(state_cf_, moves[k].new_key, states[k]);
        }
        MergeCounter(g, from.id, out, n);
        MergeCounter(g, to.id, Counter::kEnqueued, n);
        if (reservation) {
          std::string v;
          AppendBigEndian64(&v, *reservation);
          b.Put(default_cf_, kSeqReservedKey, v);
        }
      },
      [this, activate = std::move(activate),
       extra_done = std::move(extra_done)](const absl::Status& s) {
        AfterCommit(s, activate, {});
        if (extra_done) extra_done(s);
      });
}

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

void EngineImpl::ServeWaitersLocked(Queue& q, int64_t now, Jobs* jobs) {
  while (!q.waiters.empty()) {
    std::shared_ptr<LeaseWait> w = q.waiters.front();
    if (w->state != LeaseWait::State::kWaiting) {
      q.waiters.pop_front();
      continue;
    }
    auto job = SelectLocked(q, w->max_messages, w->visibility_ms, now, w->done);
    if (!job) return;
    w->state = LeaseWait::State::kClaimed;
    q.waiters.pop_front();
    --num_waiters_;
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
    wait->state = LeaseWait::State::kDone;
    --num_waiters_;
    if (Queue* q = FindByIdLocked(wait->queue_id); q != nullptr) {
      std::erase(q->waiters, wait);
    }
  }
  wait->done(absl::CancelledError("the Lease call was cancelled"));
}

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

absl::StatusOr<PeekResult> EngineImpl::Peek(std::string_view queue, uint32_t max_messages,
                                            std::string_view start_after) {
  if (auto s = ValidatePeek(max_messages, start_after); !s.ok()) return s;
  if (max_messages == 0) max_messages = Limits::kDefaultPeek;
  PeekResult result;
  uint64_t queue_id;
  {
    absl::MutexLock lock(&mu_);
    if (closed_) return Closing();
    auto found = FindLocked(queue);
    if (!found.ok()) return found.status();
    Queue& q = **found;
    queue_id = q.id;
    int64_t now = NowLocked();
    auto it = start_after.empty() ? q.messages.begin()
                                  : q.messages.upper_bound(*ParseMessageId(start_after));
    uint64_t bytes = 0;
    for (; it != q.messages.end(); ++it) {
      const MsgState& m = it->second;
      if (m.pending) continue;
      if (result.messages.size() == max_messages ||
          (!result.messages.empty() && bytes + m.size > kMaxResponseBytes)) {
        result.next_start_after = result.messages.back().message_id;
        break;
      }
      bytes += m.size;
      PeekedMessage& out = result.messages.emplace_back();
      out.message_id = FormatMessageId(it->first);
      out.state = m.visible_at <= now ? MessageState::kReady
                  : m.leased          ? MessageState::kLeased
                                      : MessageState::kDelayed;
      out.delivery_count = m.delivery_count;
      out.enqueue_time_ms = m.enqueue_time;
      out.visible_time_ms = m.visible_at;
    }
  }
  size_t n = result.messages.size();
  std::vector<std::string> keys(n);
  std::vector<rocksdb::Slice> slices(n);
  for (size_t k = 0; k < n; ++k) {
    keys[k] = MessageKey(queue_id, *ParseMessageId(result.messages[k].message_id));
    slices[k] = keys[k];
  }
  std::vector<PeekedMessage> kept;
  kept.reserve(n);
  absl::ReaderMutexLock lock(&db_mu_);
  if (db_closed_) return Closing();
  std::vector<rocksdb::PinnableSlice> values(n);
  std::vector<rocksdb::Status> statuses(n);
  db_->MultiGet({}, messages_cf_, n, slices.data(), values.data(), statuses.data());
  storage::MessageRecord record;
  for (size_t k = 0; k < n; ++k) {
    if (statuses[k].IsNotFound()) continue;  // removed since we looked
    if (!statuses[k].ok()) return FromRocks(statuses[k], "reading a message");
    if (!record.ParseFromArray(values[k].data(), static_cast<int>(values[k].size()))) {
      return absl::DataLossError("a stored message record is damaged");
    }
    PeekedMessage& out = result.messages[k];
    out.payload = std::move(*record.mutable_payload());
    for (const auto& a : record.attributes()) out.attributes[a.key()] = a.value();
    out.dead_letter_source_queue = record.dead_letter_source_queue();
    if (record.dead_letter_source_seq() != 0) {
      out.dead_letter_source_id = FormatMessageId(record.dead_letter_source_seq());
    }
    kept.push_back(std::move(out));
  }
  result.messages = std::move(kept);
  return result;
}

void EngineImpl::MoveMessages(std::string source, std::string destination, uint32_t max_messages,
                              Callback<std::vector<MovedMessage>> done) {
  absl::Status error = ValidateMove(source, destination, max_messages);
  if (error.ok()) {
    absl::MutexLock lock(&mu_);
    error = MoveMessagesLocked(source, destination, max_messages, done);
  }
  if (!error.ok()) done(error);
}

absl::Status EngineImpl::MoveMessagesLocked(const std::string& source,
                                            const std::string& destination, uint32_t max,
                                            Callback<std::vector<MovedMessage>>& done) {
  if (closed_) return Closing();
  auto from = FindLocked(source);
  if (!from.ok()) return from.status();
  auto to = FindLocked(destination);
  if (!to.ok()) return to.status();
  if (max == 0) max = Limits::kDefaultPeek;
  int64_t now = NowLocked();
  std::vector<uint64_t> seqs;
  for (auto it = (*from)->index.begin();
       it != (*from)->index.end() && it->first <= now && seqs.size() < max; ++it) {
    if (!(*from)->messages.at(it->second).pending) seqs.push_back(it->second);
  }
  uint64_t depth = (*to)->config.max_depth;
  if (depth > 0 && (*to)->messages.size() + seqs.size() > depth) {
    return absl::ResourceExhaustedError(Cat("queue \"", destination, "\" is full: max_depth is ",
                                            depth, " and ", (*to)->messages.size(),
                                            " messages are stored"));
  }
  auto moved = std::make_shared<std::vector<MovedMessage>>();
  MoveLocked(**from, **to, seqs, now, MoveKind::kRedrive, moved.get(),
             [moved, done = std::move(done)](const absl::Status& s) {
               if (!s.ok()) return done(s);
               done(std::move(*moved));
             });
  return absl::OkStatus();
}

void EngineImpl::DeleteMessage(std::string queue, std::string message_id, Callback<bool> done) {
  absl::Status error;
  {
    absl::MutexLock lock(&mu_);
    error = DeleteMessageLocked(queue, message_id, done);
  }
  if (!error.ok()) done(error);
}

absl::Status EngineImpl::DeleteMessageLocked(const std::string& queue, const std::string& id,
                                             Callback<bool>& done) {
  if (closed_) return Closing();
  auto found = FindLocked(queue);
  if (!found.ok()) return found.status();
  Queue& q = **found;
  std::optional<uint64_t> seq = ParseMessageId(id);
  if (!seq)
    return absl::InvalidArgumentError("message_id: is not a message id (16 lower-case hex digits)");
  auto it = q.messages.find(*seq);
  if (it == q.messages.end() || it->second.pending) {
    return absl::NotFoundError(Cat("message ", id, " not found in queue \"", queue, "\""));
  }
  IndexRemoveLocked(q, *seq, it->second);
  q.messages.erase(it);
  q.counters[static_cast<int>(Counter::kDeleted)] += 1;
  pipeline_->Submit(
      [&](CommitPipeline::Group& g) {
        rocksdb::WriteBatch& b = g.batch();
        std::string key = MessageKey(q.id, *seq);
        b.SingleDelete(messages_cf_, key);
        b.Delete(state_cf_, key);
        MergeCounter(g, q.id, Counter::kDeleted, 1);
      },
      [done = std::move(done)](const absl::Status& s) {
        if (!s.ok()) return done(s);
        done(true);
      });
  return absl::OkStatus();
}

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
      if (!q.waiters.empty()) {
        for (auto it = q.waiters.begin(); it != q.waiters.end();) {
          LeaseWait& w = **it;
          if (w.state == LeaseWait::State::kWaiting && w.deadline_us <= steady) {
            w.state = LeaseWait::State::kDone;
            --num_waiters_;
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

}  // namespace

absl::StatusOr<std::unique_ptr<Engine>> Engine::Open(const Options& options,
                                                     std::shared_ptr<Clock> clock) {
  if (auto s = ValidateOptions(options); !s.ok()) return s;
  if (!clock) clock = SystemClock();
  auto engine = std::make_unique<EngineImpl>(options, std::move(clock));
  if (auto s = engine->OpenStore(); !s.ok()) return s;
  engine->StartBackground();
  return engine;
}

}  // namespace spool::engine
