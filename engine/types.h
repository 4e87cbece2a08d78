// Plain values that cross the engine's public boundary: queue configuration and statistics,
// messages going in and out, and the limits of the contract. No RocksDB or protobuf here; the
// server converts these to and from spool.v1 messages.
#ifndef SPOOL_ENGINE_TYPES_H_
#define SPOOL_ENGINE_TYPES_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

namespace spool::engine {

inline constexpr int64_t kSecond = 1000;  // durations are milliseconds
inline constexpr int64_t kMinute = 60 * kSecond;
inline constexpr int64_t kHour = 60 * kMinute;
inline constexpr int64_t kDay = 24 * kHour;

// Limits of the contract (README "API reference").
struct Limits {
  static constexpr size_t kMaxQueueName = 80;
  static constexpr int64_t kMinVisibility = kSecond, kMaxVisibility = 12 * kHour;
  static constexpr int64_t kDefaultVisibility = 30 * kSecond;
  static constexpr uint32_t kMaxDeliveries = 1000;
  static constexpr int64_t kMinRetention = kMinute, kMaxRetention = 365 * kDay;
  static constexpr int64_t kMaxDelay = 30 * kDay;
  static constexpr uint32_t kDefaultMaxPayload = 256 * 1024, kMaxPayload = 4 * 1024 * 1024;
  static constexpr int64_t kMinDedupWindow = kSecond, kMaxDedupWindow = 7 * kDay;
  static constexpr int64_t kDefaultDedupWindow = 5 * kMinute;
  static constexpr size_t kMaxBatch = 1000;  // entries per Enqueue, receipts per Ack/Nack/Extend
  static constexpr size_t kMaxAttributes = 16, kMaxAttributeKey = 128, kMaxDedupId = 128;
  static constexpr int64_t kMaxWait = 60 * kSecond;
  static constexpr int64_t kMaxNackDelay = 12 * kHour;
  // Subscriptions (Engine::Subscribe).
  static constexpr uint32_t kDefaultMaxOutstanding = 100, kMaxOutstanding = 10'000;
  static constexpr int64_t kDefaultMaxLease = kHour, kMinMaxLease = kSecond,
                           kMaxMaxLease = 12 * kHour;
  static constexpr uint64_t kDefaultMaxOutstandingBytes = 64 << 20;
  static constexpr uint32_t kDefaultPeek = 100, kDefaultPageSize = 100, kMaxPage = 1000;
};

// A queue's configuration. Optional durations are "unset" when empty; Normalize (in
// validate.h) fills defaults, and every QueueInfo carries the filled-in form.
struct QueueConfig {
  std::optional<int64_t> visibility_timeout_ms;
  uint32_t max_deliveries = 0;
  std::string dead_letter_queue;
  std::optional<int64_t> retention_ms;  // 0 = keep until acked
  std::optional<int64_t> delay_ms;
  uint32_t max_payload_bytes = 0;  // 0 = default
  uint64_t max_depth = 0;          // 0 = unlimited
  std::optional<int64_t> dedup_window_ms;

  bool operator==(const QueueConfig&) const = default;
};

struct QueueStats {
  uint64_t ready = 0, leased = 0, delayed = 0, total = 0;
  int64_t oldest_ready_age_ms = 0;
  uint64_t enqueued_total = 0, acked_total = 0, delivered_total = 0;
  uint64_t dead_lettered_total = 0, expired_total = 0, purged_total = 0;
  uint64_t deleted_total = 0, moved_total = 0;
  uint64_t nacked_total = 0;  // receipts nacked (lease ended early by the consumer)
};

struct QueueInfo {
  std::string name;
  QueueConfig config;  // defaults filled in
  QueueStats stats;
  int64_t create_time_ms = 0;
};

struct ListQueuesResult {
  std::vector<QueueInfo> queues;
  std::string next_page_token;
};

using Attributes = std::map<std::string, std::string>;

struct EnqueueEntry {
  std::string payload;
  Attributes attributes;
  std::optional<int64_t> delay_ms;  // unset -> the queue's delay
  std::string dedup_id;
};

struct EnqueueResult {
  std::string message_id;
  bool duplicate = false;
};

struct LeaseRequest {
  std::string queue;
  uint32_t max_messages = 0;                     // 0 -> 1
  std::optional<int64_t> visibility_timeout_ms;  // unset -> the queue's
  int64_t wait_ms = 0;
};

// A standing lease on a queue (Engine::Subscribe).
struct SubscribeRequest {
  std::string queue;
  uint32_t max_outstanding = 0;                  // 0 -> 100; at most 10,000
  std::optional<int64_t> visibility_timeout_ms;  // each lease and renewal; unset -> the queue's
  std::optional<int64_t> max_lease_duration_ms;  // renewal stops this long after delivery; 1 h
  // Also stop delivering while the messages outstanding hold this many payload and attribute
  // bytes (always at least one message): bounds the memory a slow reader can pin. 0 -> 64 MiB.
  uint64_t max_outstanding_bytes = 0;
};

struct LeasedMessage {
  std::string message_id;
  std::string payload;
  Attributes attributes;
  std::string receipt;
  uint32_t delivery_count = 0;
  int64_t enqueue_time_ms = 0;
  int64_t lease_deadline_ms = 0;
};

enum class Outcome { kOk = 1, kLeaseLost = 2, kInvalidReceipt = 3 };

struct ReceiptOutcome {
  Outcome outcome = Outcome::kInvalidReceipt;
  int64_t lease_deadline_ms = 0;  // set by ExtendLease on kOk
};

// What Engine::Settle did: an outcome per receipt, in request order, and the messages the
// acks and nacks made room for, leased in the same write.
struct SettleResult {
  std::vector<ReceiptOutcome> acks, nacks;
  std::vector<LeasedMessage> delivered;
};

enum class MessageState { kReady = 1, kLeased = 2, kDelayed = 3 };

struct PeekedMessage {
  std::string message_id;
  std::string payload;
  Attributes attributes;
  MessageState state = MessageState::kReady;
  uint32_t delivery_count = 0;
  int64_t enqueue_time_ms = 0;
  int64_t visible_time_ms = 0;
  std::string dead_letter_source_queue;
  std::string dead_letter_source_id;
};

struct MovedMessage {
  std::string source_id;
  std::string destination_id;
};

// The engine as a whole, for metrics (Engine::Runtime). Storage figures are RocksDB's, summed
// over the store's column families.
struct RuntimeStats {
  int64_t lease_waiters = 0;        // Lease calls waiting for messages now
  int64_t subscriptions = 0;        // open subscriptions
  int64_t subscribed_messages = 0;  // messages outstanding on them (delivered, not settled)
  uint64_t live_sst_bytes = 0;      // table files holding live data
  uint64_t total_sst_bytes = 0;     // every table file, obsolete ones not yet deleted included
  uint64_t wal_bytes = 0;           // write-ahead log files
  uint64_t memtable_bytes = 0;      // memtables, active and immutable
};

struct PeekResult {
  std::vector<PeekedMessage> messages;
  std::string next_start_after;
};

}  // namespace spool::engine

#endif  // SPOOL_ENGINE_TYPES_H_
