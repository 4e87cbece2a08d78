// Every on-disk key encoding of the engine, in one place. Integers in keys are big-endian so
// that RocksDB's bytewise order is numeric order. storage_format.md documents the layout;
// coding_test.cc checks round trips and ordering at the boundaries.
#ifndef SPOOL_ENGINE_CODING_H_
#define SPOOL_ENGINE_CODING_H_

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace spool::engine {

void AppendBigEndian64(std::string* out, uint64_t value);
// REQUIRES: in.size() >= 8.
uint64_t DecodeBigEndian64(std::string_view in);

// Column family names.
inline constexpr char kMessagesFamily[] = "messages";
inline constexpr char kStateFamily[] = "state";
inline constexpr char kDedupFamily[] = "dedup";

// Singleton keys of the default column family.
inline constexpr std::string_view kFormatVersionKey = "format_version";
inline constexpr std::string_view kSecretKey = "secret";
inline constexpr std::string_view kSeqReservedKey = "seq_reserved";
inline constexpr std::string_view kNextQueueIdKey = "next_queue_id";
// Not starting with "c" or "q": those prefixes hold counters and queue records.
inline constexpr std::string_view kClockMarkKey = "wall_clock_mark";
inline constexpr uint64_t kFormatVersion = 1;

// "q" + queue_id: a QueueRecord.
inline constexpr char kQueuePrefix = 'q';
std::string QueueRecordKey(uint64_t queue_id);

// "c" + queue_id + counter: an int64 moved by the Int64Add merge operator.
inline constexpr char kCounterPrefix = 'c';
// (1 is unused: the number of messages held is derived from the lease index, not stored.)
enum class Counter : uint8_t {
  kEnqueued = 2,
  kAcked = 3,
  kDelivered = 4,
  kDeadLettered = 5,
  kExpired = 6,
  kPurged = 7,
  kDeleted = 8,
  kMoved = 9,    // moved out by MoveMessages
  kNacked = 10,  // receipts nacked
};
inline constexpr int kCounterCount = 11;  // indexable by static_cast<int>(Counter)
std::string CounterKey(uint64_t queue_id, Counter counter);
std::string CounterPrefix(uint64_t queue_id);  // "c" + queue_id
std::string EncodeInt64(int64_t value);        // 8 bytes, little-endian
std::optional<int64_t> DecodeInt64(std::string_view in);

// messages and state families: queue_id + seq.
std::string MessageKey(uint64_t queue_id, uint64_t seq);
struct MessageKeyParts {
  uint64_t queue_id;
  uint64_t seq;
};
std::optional<MessageKeyParts> ParseMessageKey(std::string_view key);
// The first key of a queue's range in any queue-keyed family ([QueueStart(q), QueueStart(q+1))
// holds all of queue q).
std::string QueueStart(uint64_t queue_id);

// dedup family: queue_id + dedup_id.
std::string DedupKey(uint64_t queue_id, std::string_view dedup_id);

// Message ids as clients see them: 16 lower-case hex digits, so string order is seq order.
std::string FormatMessageId(uint64_t seq);
std::optional<uint64_t> ParseMessageId(std::string_view id);

}  // namespace spool::engine

#endif  // SPOOL_ENGINE_CODING_H_
