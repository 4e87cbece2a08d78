// How an Engine is opened. Every field says its unit, range and default; Engine::Open checks
// them in one place (ValidateOptions in options.cc).
#ifndef SPOOL_ENGINE_OPTIONS_H_
#define SPOOL_ENGINE_OPTIONS_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/status.h"
#include "absl/status/statusor.h"

namespace spool::engine {

class FaultController;

enum class Durability {
  // Every state change is fsynced before it is acknowledged. Survives power loss.
  kSync,
  // The write-ahead log is written but not fsynced. Survives a crash of the process (kill -9),
  // not of the machine.
  kAsync,
};

// Deliberate bugs, switched on one at a time by the crash-torture harness to prove that its
// checker catches each kind of broken promise (tests/torture). Never used otherwise.
enum class Mutation {
  kNone,
  kReplyBeforeFsync,      // acknowledge writes before they are fsynced
  kLeaseIgnoresDeadline,  // a leased message is visible again after a quarter of its lease
  kStaleReceipts,         // accept receipts of earlier leases and of nacked leases
  kNoPersistLeases,       // leases live only in memory: a restart forgets them
  kDeadLetterEarly,       // dead-letter after max_deliveries - 1 deliveries
  kNackIgnoresDelay,      // a nacked message is visible again at once
  kNoRenewal,             // a subscription's leases are never renewed
};

// "reply-before-fsync", "lease-ignores-deadline", "stale-receipts", "no-persist-leases",
// "dead-letter-early", "nack-ignores-delay", "no-renewal"; INVALID_ARGUMENT for anything else.
absl::StatusOr<Mutation> ParseMutation(std::string_view name);

// Test-only hooks for the crash-torture harness and the storage-fault tests. Production leaves
// every field at its default.
struct TestHooks {
  // Non-null: the store goes through the fault file system (fault_fs.h) this controls.
  std::shared_ptr<FaultController> faults;
  Mutation mutation = Mutation::kNone;
  // Called at named points of the commit path: "before-write" (a group is about to be written),
  // "after-write" (it is durable, no reply sent yet) and "mid-replies" (some of its replies are
  // sent). spoold's --test-crash-at kills the process from here.
  std::function<void(std::string_view point)> at_point;
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

  // When the write-ahead log to replay at open is at least this many bytes (a crash after
  // heavy writing), compactions are held back until the messages are loaded, so that the
  // compactions owed do not take a core from the load. Below it they start at once: holding
  // them back costs RocksDB a rewrite of its OPTIONS file per column family. Default: 64 MiB.
  uint64_t defer_compactions_log_bytes = 64 << 20;

  // Receives one line per notable event (open, recovery figures, storage errors).
  // Default (empty): written to stderr.
  std::function<void(const std::string&)> log;

  // Called on the commit thread after every group written to the store: how many operations
  // shared the write, and how long the write took in microseconds (with its fsync under
  // kSync). For metrics; it must be quick and must not call the engine. Default: none.
  std::function<void(size_t operations, int64_t write_micros)> on_commit_group;

  // Test-only; see TestHooks.
  TestHooks test;
};

// OK, or INVALID_ARGUMENT naming the field.
absl::Status ValidateOptions(const Options& options);

}  // namespace spool::engine

#endif  // SPOOL_ENGINE_OPTIONS_H_
