#include "engine/validate.h"

#include "engine/coding.h"
#include "engine/strings.h"

namespace spool::engine {
namespace {

absl::Status Invalid(std::string_view field, std::string_view problem) {
  return absl::InvalidArgumentError(Cat(field, ": ", problem));
}

absl::Status CheckRange(std::string_view field, int64_t value, int64_t lo, int64_t hi) {
  if (value < lo || value > hi) {
    return Invalid(field, Cat("must be between ", FormatDuration(lo), " and ", FormatDuration(hi),
                              " (got ", FormatDuration(value), ")"));
  }
  return absl::OkStatus();
}

bool NameChar(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' ||
         c == '_' || c == '-';
}

}  // namespace

std::string FormatDuration(int64_t ms) {
  // The magnitude as unsigned, so that INT64_MIN (a saturated huge negative input) works too.
  uint64_t mag = ms < 0 ? ~static_cast<uint64_t>(ms) + 1 : static_cast<uint64_t>(ms);
  std::string sign = ms < 0 ? "-" : "";
  if (mag == 0) return "0s";
  struct Unit {
    uint64_t ms;
    const char* suffix;
  };
  static constexpr Unit kUnits[] = {{kDay, "d"}, {kHour, "h"}, {kMinute, "m"}, {kSecond, "s"}};
  for (const Unit& u : kUnits) {
    if (mag % u.ms == 0) return Cat(sign, mag / u.ms, u.suffix);
  }
  return Cat(sign, mag, "ms");
}

absl::Status ValidateQueueName(std::string_view name, std::string_view field) {
  if (name.empty() || name.size() > Limits::kMaxQueueName) {
    return Invalid(field, Cat("must be 1 to ", Limits::kMaxQueueName, " characters long (got ",
                              name.size(), ")"));
  }
  for (char c : name) {
    if (!NameChar(c)) return Invalid(field, "may contain only A-Z a-z 0-9 . _ -");
  }
  return absl::OkStatus();
}

absl::StatusOr<QueueConfig> NormalizeConfig(std::string_view queue_name, const QueueConfig& in) {
  QueueConfig out = in;
  out.visibility_timeout_ms = in.visibility_timeout_ms.value_or(Limits::kDefaultVisibility);
  if (auto s = CheckRange("config.visibility_timeout", *out.visibility_timeout_ms,
                          Limits::kMinVisibility, Limits::kMaxVisibility);
      !s.ok()) {
    return s;
  }
  if (out.max_deliveries > Limits::kMaxDeliveries) {
    return Invalid("config.max_deliveries",
                   Cat("must be 0 (unlimited) or 1 to ", Limits::kMaxDeliveries, " (got ",
                       out.max_deliveries, ")"));
  }
  if (out.max_deliveries > 0 && out.dead_letter_queue.empty()) {
    return Invalid("config.dead_letter_queue", "is required when max_deliveries is set");
  }
  if (!out.dead_letter_queue.empty()) {
    if (out.max_deliveries == 0) {
      return Invalid("config.dead_letter_queue",
                     "has no effect without max_deliveries; set max_deliveries too");
    }
    if (auto s = ValidateQueueName(out.dead_letter_queue, "config.dead_letter_queue"); !s.ok()) {
      return s;
    }
    if (out.dead_letter_queue == queue_name) {
      return Invalid("config.dead_letter_queue", "must not be the queue itself");
    }
  }
  out.retention_ms = in.retention_ms.value_or(0);
  if (*out.retention_ms != 0) {
    if (auto s = CheckRange("config.retention", *out.retention_ms, Limits::kMinRetention,
                            Limits::kMaxRetention);
        !s.ok()) {
      return s;
    }
  }
  out.delay_ms = in.delay_ms.value_or(0);
  if (auto s = CheckRange("config.delay", *out.delay_ms, 0, Limits::kMaxDelay); !s.ok()) return s;
  if (out.max_payload_bytes == 0) out.max_payload_bytes = Limits::kDefaultMaxPayload;
  if (out.max_payload_bytes > Limits::kMaxPayload) {
    return Invalid("config.max_payload_bytes", Cat("must be at most ", Limits::kMaxPayload,
                                                   " (got ", out.max_payload_bytes, ")"));
  }
  out.dedup_window_ms = in.dedup_window_ms.value_or(0);
  if (*out.dedup_window_ms == 0) out.dedup_window_ms = Limits::kDefaultDedupWindow;
  if (auto s = CheckRange("config.dedup_window", *out.dedup_window_ms, Limits::kMinDedupWindow,
                          Limits::kMaxDedupWindow);
      !s.ok()) {
    return s;
  }
  return out;
}

absl::Status ValidateEnqueue(const std::vector<EnqueueEntry>& entries, const QueueConfig& config) {
  if (entries.empty() || entries.size() > Limits::kMaxBatch) {
    return Invalid("messages", Cat("must have 1 to ", Limits::kMaxBatch, " entries (got ",
                                   entries.size(), ")"));
  }
  for (size_t i = 0; i < entries.size(); ++i) {
    const EnqueueEntry& e = entries[i];
    std::string field = Cat("messages[", i, "]");
    if (e.attributes.size() > Limits::kMaxAttributes) {
      return Invalid(Cat(field, ".attributes"), Cat("at most ", Limits::kMaxAttributes,
                                                    " attributes (got ", e.attributes.size(), ")"));
    }
    size_t size = e.payload.size();
    for (const auto& [key, value] : e.attributes) {
      if (key.empty() || key.size() > Limits::kMaxAttributeKey) {
        return Invalid(Cat(field, ".attributes"),
                       Cat("keys must be 1 to ", Limits::kMaxAttributeKey, " characters (got ",
                           key.size(), ")"));
      }
      size += key.size() + value.size();
    }
    if (size > config.max_payload_bytes) {
      return Invalid(
          Cat(field, ".payload"),
          Cat(size,
              " bytes (payload plus attributes) is over the queue's "
              "max_payload_bytes of ",
              config.max_payload_bytes, "; store large data elsewhere and enqueue its URL"));
    }
    if (e.delay_ms) {
      if (auto s = CheckRange(Cat(field, ".delay"), *e.delay_ms, 0, Limits::kMaxDelay); !s.ok()) {
        return s;
      }
    }
    if (e.dedup_id.size() > Limits::kMaxDedupId) {
      return Invalid(Cat(field, ".dedup_id"), Cat("must be at most ", Limits::kMaxDedupId,
                                                  " characters (got ", e.dedup_id.size(), ")"));
    }
  }
  return absl::OkStatus();
}

absl::Status ValidateVisibility(std::optional<int64_t> visibility_timeout_ms) {
  if (!visibility_timeout_ms) return absl::OkStatus();
  return CheckRange("visibility_timeout", *visibility_timeout_ms, Limits::kMinVisibility,
                    Limits::kMaxVisibility);
}

absl::Status ValidateLease(const LeaseRequest& request) {
  if (request.max_messages > Limits::kMaxBatch) {
    return Invalid("max_messages",
                   Cat("must be at most ", Limits::kMaxBatch, " (got ", request.max_messages, ")"));
  }
  if (auto s = ValidateVisibility(request.visibility_timeout_ms); !s.ok()) return s;
  return CheckRange("wait_time", request.wait_ms, 0, Limits::kMaxWait);
}

absl::Status ValidateReceiptCount(size_t count) {
  if (count == 0 || count > Limits::kMaxBatch) {
    return Invalid("receipts",
                   Cat("must have 1 to ", Limits::kMaxBatch, " entries (got ", count, ")"));
  }
  return absl::OkStatus();
}

absl::Status ValidateSubscribe(const SubscribeRequest& request) {
  if (auto s = ValidateQueueName(request.queue, "queue"); !s.ok()) return s;
  if (request.max_outstanding > Limits::kMaxOutstanding) {
    return Invalid("max_outstanding", Cat("must be at most ", Limits::kMaxOutstanding, " (got ",
                                          request.max_outstanding, ")"));
  }
  if (auto s = ValidateVisibility(request.visibility_timeout_ms); !s.ok()) return s;
  if (request.max_lease_duration_ms) {
    return CheckRange("max_lease_duration", *request.max_lease_duration_ms, Limits::kMinMaxLease,
                      Limits::kMaxMaxLease);
  }
  return absl::OkStatus();
}

absl::Status ValidateSettle(size_t acks, size_t nacks, int64_t nack_delay_ms) {
  if (acks + nacks > Limits::kMaxBatch) {
    return Invalid("ack", Cat("ack and nack together must have at most ", Limits::kMaxBatch,
                              " receipts in one request (got ", acks, " + ", nacks, ")"));
  }
  return CheckRange("nack_delay", nack_delay_ms, 0, Limits::kMaxNackDelay);
}

absl::Status ValidateNackDelay(int64_t delay_ms) {
  return CheckRange("delay", delay_ms, 0, Limits::kMaxNackDelay);
}

absl::Status ValidatePeek(uint32_t max_messages, std::string_view start_after) {
  if (max_messages > Limits::kMaxPage) {
    return Invalid("max_messages",
                   Cat("must be at most ", Limits::kMaxPage, " (got ", max_messages, ")"));
  }
  if (!start_after.empty() && !ParseMessageId(start_after)) {
    return Invalid("start_after", "is not a message id (16 lower-case hex digits)");
  }
  return absl::OkStatus();
}

absl::Status ValidateMove(std::string_view source, std::string_view destination,
                          uint32_t max_messages) {
  if (auto s = ValidateQueueName(source, "source"); !s.ok()) return s;
  if (auto s = ValidateQueueName(destination, "destination"); !s.ok()) return s;
  if (source == destination) return Invalid("destination", "must differ from source");
  if (max_messages > Limits::kMaxBatch) {
    return Invalid("max_messages",
                   Cat("must be at most ", Limits::kMaxBatch, " (got ", max_messages, ")"));
  }
  return absl::OkStatus();
}

absl::Status ValidateList(std::string_view prefix, uint32_t page_size,
                          std::string_view page_token) {
  if (page_size > Limits::kMaxPage) {
    return Invalid("page_size",
                   Cat("must be at most ", Limits::kMaxPage, " (got ", page_size, ")"));
  }
  if (prefix.size() > Limits::kMaxQueueName) {
    return Invalid("prefix", Cat("must be at most ", Limits::kMaxQueueName, " characters"));
  }
  if (!page_token.empty()) {
    if (auto s = ValidateQueueName(page_token, "page_token"); !s.ok()) {
      return Invalid("page_token", "is not a token this server returned");
    }
  }
  return absl::OkStatus();
}

}  // namespace spool::engine
