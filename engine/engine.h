// Engine is the whole storage core of Spool: durable queues with leases, delays, dead-letter
// queues, dedup and retention, on one RocksDB store. The server, the CLI's offline commands,
// the benchmarks and the tests all go through this header and nothing else.
//
// Every operation that changes state calls its callback only after the change is durable (see
// Durability in options.h), and a change that failed changed nothing. Callbacks run on an
// engine thread, or on the caller's thread when the call fails before reaching storage; they
// must be quick and must not block on another engine call (the blocking wrappers in sync.h are
// for threads that are not engine threads). Errors are absl::Status codes, numerically gRPC's:
//   NOT_FOUND           the queue does not exist
//   INVALID_ARGUMENT    a field is out of range or malformed; the message names the field
//   ALREADY_EXISTS      CreateQueue of an existing queue with a different config
//   FAILED_PRECONDITION DeleteQueue of a queue that another queue dead-letters into
//   RESOURCE_EXHAUSTED  max_depth reached, or the disk is full
//   UNAVAILABLE         a storage error (the outcome is unknown), or the engine is closing
#ifndef SPOOL_ENGINE_ENGINE_H_
#define SPOOL_ENGINE_ENGINE_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/clock.h"
#include "engine/options.h"
#include "engine/types.h"

namespace spool::engine {

template <typename T>
using Callback = std::function<void(absl::StatusOr<T>)>;

// A Lease call in progress; pass it to CancelLease.
class LeaseWait;
// An open subscription (Subscribe); pass it to Settle and Unsubscribe.
class Subscription;

// How a subscription reaches its owner. Both may run on any engine thread, deliver on several
// at once; neither may block. They must stay callable until the subscription's last
// shared_ptr is gone: a delivery decided before Unsubscribe may still arrive after its done
// (its messages are released already; drop it).
struct SubscriptionCallbacks {
  // Messages leased for the subscription, once their lease is durable.
  std::function<void(std::vector<LeasedMessage>)> deliver;
  // The engine ended the subscription: its queue was deleted (NOT_FOUND), the engine is closing
  // (UNAVAILABLE; what it held was released first) or a write failed. Called at most once, and
  // not once Unsubscribe has been called.
  std::function<void(absl::Status)> ended;
};

class Engine {
 public:
  // Takes the data directory's lock, opens (or creates) the store, loads queues and rebuilds the
  // in-memory lease index. The message says which step failed; a directory held by another
  // process is FAILED_PRECONDITION, a store that will not open without losing data is
  // DATA_LOSS.
  static absl::StatusOr<std::unique_ptr<Engine>> Open(const Options& options,
                                                      std::shared_ptr<Clock> clock);

  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;
  // Calls Close().
  virtual ~Engine() = default;

  // Refuses new calls (UNAVAILABLE), ends waiting Leases with what they have (empty), writes
  // out every change already accepted, stops background work and closes the store.
  // Idempotent.
  virtual void Close() = 0;

  // OK while the engine accepts writes; after a storage error, that error (UNAVAILABLE or
  // RESOURCE_EXHAUSTED) for good: only a restart rebuilds state from disk.
  virtual absl::Status Health() = 0;

  // --- Queue administration ---
  // Returns the queue (config with defaults filled in). An existing queue with an identical
  // config is returned as is; with a different config, ALREADY_EXISTS.
  virtual void CreateQueue(std::string name, QueueConfig config, Callback<QueueInfo> done) = 0;
  virtual absl::StatusOr<QueueInfo> GetQueue(std::string_view name) = 0;
  // Queues in name order whose names start with prefix; page_size 0 -> 100, at most 1000.
  virtual absl::StatusOr<ListQueuesResult> ListQueues(std::string_view prefix, uint32_t page_size,
                                                      std::string_view page_token) = 0;
  // Replaces the whole config. Messages already stored keep their delays and leases.
  virtual void UpdateQueue(std::string name, QueueConfig config, Callback<QueueInfo> done) = 0;
  // Removes the queue and every message in it.
  virtual void DeleteQueue(std::string name, Callback<bool> done) = 0;
  // Removes every message (ready, leased and delayed); returns how many.
  virtual void PurgeQueue(std::string name, Callback<uint64_t> done) = 0;

  // --- Messages ---
  // All or nothing. Results in request order; a dedup_id seen within the queue's dedup window
  // returns the first message's id with duplicate = true and stores nothing.
  virtual void Enqueue(std::string queue, std::vector<EnqueueEntry> entries,
                       Callback<std::vector<EnqueueResult>> done) = 0;
  // Leases up to max_messages visible messages, in order of visible time then enqueue order.
  // With wait_ms > 0 and nothing visible, waits (holding no thread) until something is or the
  // wait ends, then returns what it could lease, possibly nothing.
  virtual std::shared_ptr<LeaseWait> Lease(LeaseRequest request,
                                           Callback<std::vector<LeasedMessage>> done) = 0;
  // Ends a waiting Lease: its callback gets CANCELLED unless messages were already leased for
  // it, in which case it gets them (and the caller should Nack them). The callback is called
  // exactly once either way.
  virtual void CancelLease(const std::shared_ptr<LeaseWait>& wait) = 0;
  // --- Subscriptions: a standing lease that the engine keeps filling and renewing ---
  // Delivers visible messages as they become visible, never more than max_outstanding (or
  // max_outstanding_bytes) not yet settled, sharing the queue with waiting Leases and other
  // subscriptions oldest waiter first. While the subscription is open each message's lease is
  // renewed halfway through its visibility timeout (stored, in bulk, by the background pass)
  // until max_lease_duration after its delivery; then it ends, and the message becomes
  // visible again. A message stops counting against the limit as soon as it is no longer
  // leased to the subscription for any reason (settled here or by a unary Ack/Nack, its lease
  // ended, purged, deleted). Errors (bad fields, unknown queue, closing) come back at once.
  virtual absl::StatusOr<std::shared_ptr<Subscription>> Subscribe(
      SubscribeRequest request, SubscriptionCallbacks callbacks) = 0;
  // Acks and nacks receipts (any receipts of the queue, as Ack and Nack do) and, in the same
  // write, leases what that made room for; the result carries both. At most 1,000 receipts.
  virtual void Settle(const std::shared_ptr<Subscription>& subscription,
                      std::vector<std::string> acks, std::vector<std::string> nacks,
                      int64_t nack_delay_ms, Callback<SettleResult> done) = 0;
  // Ends the subscription: stops delivering and makes every message it holds visible again
  // (delivery counts stay as counted) in one write; done gets how many, once durable.
  // Idempotent: once ended, done gets 0.
  virtual void Unsubscribe(const std::shared_ptr<Subscription>& subscription,
                           Callback<uint64_t> done) = 0;

  // One outcome per receipt, in request order.
  virtual void Ack(std::string queue, std::vector<std::string> receipts,
                   Callback<std::vector<ReceiptOutcome>> done) = 0;
  virtual void Nack(std::string queue, std::vector<std::string> receipts, int64_t delay_ms,
                    Callback<std::vector<ReceiptOutcome>> done) = 0;
  // visibility_timeout_ms unset -> the queue's.
  virtual void ExtendLease(std::string queue, std::vector<std::string> receipts,
                           std::optional<int64_t> visibility_timeout_ms,
                           Callback<std::vector<ReceiptOutcome>> done) = 0;
  // Messages in id order after start_after (empty: from the start); changes nothing.
  virtual absl::StatusOr<PeekResult> Peek(std::string_view queue, uint32_t max_messages,
                                          std::string_view start_after) = 0;
  // Moves up to max_messages (0 -> 100, at most 1000) ready messages of source, in lease order,
  // to destination in one atomic write; each arrives as a new message (new id, delivery count
  // 0). Returns the moves, empty when nothing is ready. INVALID_ARGUMENT when source ==
  // destination; RESOURCE_EXHAUSTED when destination's max_depth would be passed.
  virtual void MoveMessages(std::string source, std::string destination, uint32_t max_messages,
                            Callback<std::vector<MovedMessage>> done) = 0;
  // Removes one message whatever its state. NOT_FOUND when the queue has no such message.
  virtual void DeleteMessage(std::string queue, std::string message_id, Callback<bool> done) = 0;

  // Waiters and storage sizes as of now. Holds the engine lock only to read the waiter count.
  virtual RuntimeStats Runtime() = 0;

  // Runs one pass of background work at the clock's current time: ends waits whose time is up,
  // serves waiters whose messages became visible, refreshes stats, applies retention and dedup
  // expiry. The background thread calls it; tests with a ManualClock call it by hand.
  virtual void Tick() = 0;

 protected:
  Engine() = default;
};

}  // namespace spool::engine

#endif  // SPOOL_ENGINE_ENGINE_H_
