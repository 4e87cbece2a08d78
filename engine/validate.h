// Every range check of the contract, in one place. Messages name the field the way the
// spool.v1 contract spells it ("config.visibility_timeout", "messages[3].payload"), so the
// server can pass them to clients unchanged. All return OK or INVALID_ARGUMENT.
#ifndef SPOOL_ENGINE_VALIDATE_H_
#define SPOOL_ENGINE_VALIDATE_H_

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "engine/types.h"

namespace spool::engine {

// "500ms", "30s", "5m", "12h", "4d": the largest unit that divides the value exactly.
std::string FormatDuration(int64_t ms);

absl::Status ValidateQueueName(std::string_view name, std::string_view field);

// The config with every default filled in, or the first problem. Does not check that the
// dead-letter queue exists (the engine does, against its queues).
absl::StatusOr<QueueConfig> NormalizeConfig(std::string_view queue_name, const QueueConfig& in);

// Entry shapes and sizes against the queue's normalized config.
absl::Status ValidateEnqueue(const std::vector<EnqueueEntry>& entries, const QueueConfig& config);

absl::Status ValidateLease(const LeaseRequest& request);

// 1..1000 receipts. Malformed receipts are not an error: they get OUTCOME_INVALID_RECEIPT.
absl::Status ValidateReceiptCount(size_t count);
// The first request's fields of a subscription (queue name, max_outstanding, durations).
absl::Status ValidateSubscribe(const SubscribeRequest& request);
// At most 1,000 receipts in one Settle, acks and nacks together; the nack delay's range.
absl::Status ValidateSettle(size_t acks, size_t nacks, int64_t nack_delay_ms);

absl::Status ValidateNackDelay(int64_t delay_ms);

// An explicitly given visibility_timeout (Lease, ExtendLease).
absl::Status ValidateVisibility(std::optional<int64_t> visibility_timeout_ms);

absl::Status ValidatePeek(uint32_t max_messages, std::string_view start_after);

// MoveMessages: both names, distinct, and max_messages at most 1000.
absl::Status ValidateMove(std::string_view source, std::string_view destination,
                          uint32_t max_messages);

absl::Status ValidateList(std::string_view prefix, uint32_t page_size, std::string_view page_token);

}  // namespace spool::engine

#endif  // SPOOL_ENGINE_VALIDATE_H_
