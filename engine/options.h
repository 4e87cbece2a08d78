// How an Engine is opened. Every field says its unit, range and default; Engine::Open checks
// them in one place (ValidateOptions in options.cc).
#ifndef SPOOL_ENGINE_OPTIONS_H_
#define SPOOL_ENGINE_OPTIONS_H_

#include <cstdint>
#include <functional>
#include <string>

#include "absl/status/status.h"

namespace spool::engine {

enum class Durability {
  // Every state change is fsynced before it is acknowledged. Survives power loss.
  kSync,
  // The write-ahead log is written but not fsynced. Survives a crash of the process (kill -9),
  // not of the machine.
  kAsync,
};

struct Options {
  // Directory holding the store. Created if missing. Required.
  std::string data_dir;

  // Default: kSync.
  Durability durability = Durability::kSync;

  // Run the background thread that ends long-poll waits, wakes waiters when leases and delays
  // expire, refreshes the ready/leased/delayed split, and applies retention and dedup expiry.
  // Tests with a ManualClock turn it off and call Engine::Tick() themselves.
  // Default: true.
  bool background_thread = true;

  // Most Lease calls that may wait at once, over all queues. Beyond it a Lease with a
  // wait_time returns at once with what is visible. Range 0 .. 1,000,000. Default: 10,000.
  int64_t max_waiters = 10'000;

  // Most messages a background pass expires (retention) or forgets (dedup ids) per queue, so a
  // pass never holds the engine for long. Range 1 .. 100,000. Default: 1,000.
  int64_t background_batch = 1'000;

  // Receives one line per notable event (open, recovery figures, storage errors).
  // Default (empty): written to stderr.
  std::function<void(const std::string&)> log;
};

// OK, or INVALID_ARGUMENT naming the field.
absl::Status ValidateOptions(const Options& options);

}  // namespace spool::engine

#endif  // SPOOL_ENGINE_OPTIONS_H_
