// The engine's implementation, one class in several files (engine/README.md, "Where the
// engine's code lives"): this header holds the class and the in-memory state it guards; each
// .cc holds one concern of it.
//
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
#ifndef SPOOL_ENGINE_ENGINE_IMPL_H_
#define SPOOL_ENGINE_ENGINE_IMPL_H_

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
namespace internal {

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

inline storage::StateRecord ToRecord(const MsgState& m) {
  storage::StateRecord r;
  r.set_visible_at_ms(m.visible_at);
  r.set_enqueue_time_ms(m.enqueue_time);
  r.set_delivery_count(m.delivery_count);
  r.set_lease_gen(m.lease_gen);
  r.set_leased(m.leased);
  r.set_size(m.size);
  return r;
}

inline MsgState FromRecord(const storage::StateRecord& r) {
  MsgState m;
  m.visible_at = r.visible_at_ms();
  m.enqueue_time = r.enqueue_time_ms();
  m.delivery_count = r.delivery_count();
  m.lease_gen = r.lease_gen();
  m.leased = r.leased();
  m.size = r.size();
  return m;
}

inline storage::QueueRecord ToRecord(uint64_t id, const std::string& name, const QueueConfig& c,
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

inline QueueConfig ConfigFromRecord(const storage::QueueRecord& r) {
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

inline absl::Status NotFound(std::string_view queue) {
  return absl::NotFoundError(Cat("queue \"", queue, "\" not found"));
}

inline absl::Status Closing() { return absl::UnavailableError("spool is shutting down"); }

}  // namespace internal

class LeaseWait {
 public:
  enum class State { kWaiting, kClaimed, kDone };
  // Set when this wait is a subscription's turn in the queue's waiters: it takes as many
  // messages as the subscription has room for, and its messages are held by it.
  Subscription* sub = nullptr;
  uint64_t queue_id = 0;
  uint32_t max_messages = 1;
  int64_t visibility_ms = 0;
  int64_t deadline_us = 0;  // steady clock
  Callback<std::vector<LeasedMessage>> done;
  State state = State::kWaiting;  // guarded by the engine's mu_
};

// An open subscription. Everything but the callbacks is guarded by the engine's mu_.
class Subscription : public std::enable_shared_from_this<Subscription> {
 public:
  uint64_t queue_id = 0;
  uint32_t max_outstanding = 0;
  uint64_t max_bytes = 0;
  int64_t visibility_ms = 0;
  int64_t max_lease_ms = 0;
  SubscriptionCallbacks callbacks;

  // A message leased to this subscription and not yet settled.
  struct Held {
    uint32_t lease_gen = 0;
    uint32_t size = 0;
    int64_t delivered_at = 0;
    int64_t deadline = 0;  // the stored lease deadline
    int64_t due = 0;       // when the background pass next looks at it: renew, or let it go
  };
  absl::flat_hash_map<uint64_t, Held> held;              // by seq
  absl::btree_set<std::pair<int64_t, uint64_t>> by_due;  // (due, seq)
  uint64_t held_bytes = 0;
  // Its turn in the queue's waiters while it has room and nothing was visible.
  std::shared_ptr<LeaseWait> wait;
  bool open = true;  // until Unsubscribe, or the engine ends it
  // Set once the owner must hear nothing more: ended has run, or Unsubscribe was called.
  std::atomic<bool> quiet{false};

  // How many more messages it may take now.
  uint32_t Room() const {
    if (!open || held.size() >= max_outstanding || held_bytes >= max_bytes) return 0;
    return max_outstanding - static_cast<uint32_t>(held.size());
  }
};

namespace internal {

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

  // Open subscriptions, and which of them holds each message leased to one.
  std::vector<std::shared_ptr<Subscription>> subscriptions;
  absl::flat_hash_map<uint64_t, Subscription*> held_by;
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
  absl::StatusOr<std::shared_ptr<Subscription>> Subscribe(SubscribeRequest request,
                                                          SubscriptionCallbacks callbacks) override;
  void Settle(const std::shared_ptr<Subscription>& subscription, std::vector<std::string> acks,
              std::vector<std::string> nacks, int64_t nack_delay_ms,
              Callback<SettleResult> done) override;
  void Unsubscribe(const std::shared_ptr<Subscription>& subscription,
                   Callback<uint64_t> done) override;
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
  // A waiter leaves the queue's waiters (claimed, timed out or ended).
  void LeaveWaitersLocked(LeaseWait& w, LeaseWait::State to) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);

  // --- Subscriptions (subscribe.cc) ---
  // The callback a subscription's leases complete with: delivers, or ends it on an error.
  Callback<std::vector<LeasedMessage>> DeliveryFor(std::shared_ptr<Subscription> s);
  // Records that s holds message seq (leased to it just now, in state m).
  void HoldLocked(Queue& q, Subscription& s, uint64_t seq, const MsgState& m, int64_t now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void HoldJobLocked(Queue& q, Subscription& s, const LeaseJob& job, int64_t now)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The message is no longer leased to whichever subscription held it (settled, re-leased,
  // removed). Returns that subscription, or nullptr.
  Subscription* ForgetLocked(Queue& q, uint64_t seq) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // A held message's stored deadline moved (ExtendLease, renewal).
  void RedueLocked(Queue& q, uint64_t seq, int64_t deadline) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Leases what s has room for, or queues its turn among the waiters when nothing is visible.
  // done: what the lease completes with (default: s's delivery callback).
  std::shared_ptr<LeaseJob> FeedLocked(Queue& q, const std::shared_ptr<Subscription>& s,
                                       int64_t now,
                                       Callback<std::vector<LeasedMessage>> done = nullptr)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // After s took messages as a waiter: its next turn, at the back, if it has room.
  void RequeueLocked(Queue& q, Subscription& s) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Stops s and makes what it holds visible again, appending the state writes to *writes.
  // Returns how many were released.
  uint64_t ReleaseLocked(Queue& q, Subscription& s, int64_t now,
                         std::vector<std::pair<uint64_t, std::string>>* writes)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The background pass's share: renews leases due, lets go of those past max_lease_duration
  // whose lease ended, feeds subscriptions with room. Returns the steady time it wants to run.
  int64_t RenewLocked(Queue& q, int64_t now, int64_t steady, Jobs* jobs)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
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
                                 int64_t duration_ms, Callback<std::vector<ReceiptOutcome>>& done,
                                 Jobs* jobs) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // The in-memory half of a receipt operation on q: outcomes, messages deleted and state
  // records to write; subscriptions whose messages it settled go to *freed.
  struct ReceiptWrites {
    std::vector<uint64_t> deleted;
    std::vector<std::pair<uint64_t, std::string>> updated;  // seq, new state record
    bool wake = false;                                      // a message became visible now
  };
  std::vector<ReceiptOutcome> ApplyReceiptsLocked(
      ReceiptOp op, Queue& q, const std::vector<std::optional<ReceiptFields>>& receipts,
      int64_t duration_ms, int64_t now, ReceiptWrites* w, std::vector<Subscription*>* freed)
      ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  // Adds the writes of ApplyReceiptsLocked to a group.
  void WriteReceipts(CommitPipeline::Group& g, uint64_t queue_id, const ReceiptWrites& w,
                     int64_t nacked);
  // Feeds the subscriptions in freed (other than skip) that have room.
  void FeedFreedLocked(Queue& q, const std::vector<Subscription*>& freed, const Subscription* skip,
                       int64_t now, Jobs* jobs) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  void SubmitAdmin(std::string name, QueueConfig config, bool create, Callback<QueueInfo> done);
  absl::Status SubmitAdminLocked(const std::string& name, const QueueConfig& c, bool create,
                                 Callback<QueueInfo>& done) ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_);
  absl::Status DeleteQueueLocked(const std::string& name, Callback<bool>& done,
                                 std::vector<std::shared_ptr<LeaseWait>>* ended,
                                 std::vector<std::shared_ptr<Subscription>>* ended_subs)
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
  int64_t num_waiters_ ABSL_GUARDED_BY(mu_) = 0;  // waiting Lease calls, not subscriptions
  int64_t num_subscriptions_ ABSL_GUARDED_BY(mu_) = 0;
  int64_t num_held_ ABSL_GUARDED_BY(mu_) = 0;  // messages held by subscriptions
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

}  // namespace internal
}  // namespace spool::engine

#endif  // SPOOL_ENGINE_ENGINE_IMPL_H_
