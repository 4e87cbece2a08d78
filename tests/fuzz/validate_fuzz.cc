// Request validation: configs, enqueue batches and leases built from arbitrary bytes. It must
// never crash; every refusal must be INVALID_ARGUMENT with a message that starts with a field
// name; every accepted config must be a fixed point of normalization and within the limits.
#include <fuzzer/FuzzedDataProvider.h>

#include <string>

#include "engine/validate.h"

using namespace spool::engine;

namespace {

std::optional<int64_t> MaybeDuration(FuzzedDataProvider& p) {
  if (!p.ConsumeBool()) return std::nullopt;
  return p.ConsumeBool() ? p.ConsumeIntegralInRange<int64_t>(-2 * kDay, 400 * kDay)
                         : p.ConsumeIntegral<int64_t>();
}

void CheckRefusal(const absl::Status& s) {
  if (s.ok()) return;
  if (s.code() != absl::StatusCode::kInvalidArgument) __builtin_trap();
  std::string m(s.message());
  size_t colon = m.find(": ");
  if (colon == std::string::npos || colon == 0) __builtin_trap();
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider p(data, size);
  QueueConfig c;
  c.visibility_timeout_ms = MaybeDuration(p);
  c.retention_ms = MaybeDuration(p);
  c.delay_ms = MaybeDuration(p);
  c.dedup_window_ms = MaybeDuration(p);
  c.max_deliveries = p.ConsumeIntegralInRange<uint32_t>(0, 1100);
  c.dead_letter_queue = p.ConsumeRandomLengthString(90);
  c.max_payload_bytes = p.ConsumeIntegral<uint32_t>();
  c.max_depth = p.ConsumeIntegral<uint64_t>();
  std::string name = p.ConsumeRandomLengthString(90);
  auto normalized = NormalizeConfig(name, c);
  CheckRefusal(normalized.status());
  if (normalized.ok()) {
    auto again = NormalizeConfig(name, *normalized);
    if (!again.ok() || !(*again == *normalized)) __builtin_trap();
    if (*normalized->visibility_timeout_ms < Limits::kMinVisibility ||
        *normalized->visibility_timeout_ms > Limits::kMaxVisibility ||
        normalized->max_payload_bytes > Limits::kMaxPayload) {
      __builtin_trap();
    }
    std::vector<EnqueueEntry> entries(p.ConsumeIntegralInRange<size_t>(0, 20));
    for (auto& e : entries) {
      e.payload = p.ConsumeRandomLengthString(300);
      for (size_t a = p.ConsumeIntegralInRange<size_t>(0, 20); a > 0; --a) {
        e.attributes[p.ConsumeRandomLengthString(140)] = p.ConsumeRandomLengthString(50);
      }
      e.delay_ms = MaybeDuration(p);
      e.dedup_id = p.ConsumeRandomLengthString(140);
    }
    CheckRefusal(ValidateEnqueue(entries, *normalized));
  }
  CheckRefusal(ValidateQueueName(name, "name"));
  LeaseRequest r;
  r.max_messages = p.ConsumeIntegral<uint32_t>();
  r.visibility_timeout_ms = MaybeDuration(p);
  r.wait_ms = p.ConsumeIntegral<int64_t>();
  CheckRefusal(ValidateLease(r));
  CheckRefusal(ValidatePeek(p.ConsumeIntegral<uint32_t>(), p.ConsumeRandomLengthString(20)));
  CheckRefusal(ValidateNackDelay(p.ConsumeIntegral<int64_t>()));
  return 0;
}
