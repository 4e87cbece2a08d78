// Small definitions of the public headers: the system clock, option checks, SPOOL_CHECK.
#include <time.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <utility>

#include "engine/check.h"
#include "engine/clock.h"
#include "engine/options.h"
#include "engine/strings.h"

namespace spool::engine {
namespace {

class RealClock final : public Clock {
 public:
  int64_t NowMillis() override {
    timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return int64_t{ts.tv_sec} * 1000 + ts.tv_nsec / 1'000'000;
  }
  int64_t SteadyMicros() override {
    timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return int64_t{ts.tv_sec} * 1'000'000 + ts.tv_nsec / 1000;
  }
  // CLOCK_MONOTONIC counts from boot, so readings compare across processes of one boot.
  std::string SteadyEpoch() override {
    static const std::string boot_id = [] {
      std::string id;
      std::ifstream("/proc/sys/kernel/random/boot_id") >> id;
      return id;
    }();
    return boot_id;
  }
};

}  // namespace

std::shared_ptr<Clock> SystemClock() {
  static const std::shared_ptr<Clock> clock = std::make_shared<RealClock>();
  return clock;
}

absl::Status ValidateOptions(const Options& options) {
  if (options.data_dir.empty()) return absl::InvalidArgumentError("data_dir: is required");
  if (options.max_waiters < 0 || options.max_waiters > 1'000'000) {
    return absl::InvalidArgumentError(
        Cat("max_waiters: must be between 0 and 1000000 (got ", options.max_waiters, ")"));
  }
  if (options.background_batch < 1 || options.background_batch > 100'000) {
    return absl::InvalidArgumentError(
        Cat("background_batch: must be between 1 and 100000 (got ", options.background_batch, ")"));
  }
  return absl::OkStatus();
}

absl::StatusOr<Mutation> ParseMutation(std::string_view name) {
  static constexpr std::pair<std::string_view, Mutation> kNames[] = {
      {"reply-before-fsync", Mutation::kReplyBeforeFsync},
      {"lease-ignores-deadline", Mutation::kLeaseIgnoresDeadline},
      {"stale-receipts", Mutation::kStaleReceipts},
      {"no-persist-leases", Mutation::kNoPersistLeases},
      {"dead-letter-early", Mutation::kDeadLetterEarly},
      {"nack-ignores-delay", Mutation::kNackIgnoresDelay},
      {"no-renewal", Mutation::kNoRenewal},
  };
  std::string known;
  for (auto [n, m] : kNames) {
    if (n == name) return m;
    known += Cat(known.empty() ? "" : ", ", n);
  }
  return absl::InvalidArgumentError(
      Cat("test mutation: unknown \"", name, "\" (known: ", known, ")"));
}

namespace internal {
void CheckFailed(const char* file, int line, const char* cond, const char* msg) {
  std::fprintf(stderr, "spool: invariant broken at %s:%d: %s (%s); stopping to protect data\n",
               file, line, msg, cond);
  std::fflush(stderr);
  std::abort();
}
}  // namespace internal

}  // namespace spool::engine
