// Reading a store that no spoold is running on: what `spoolctl --data-dir DIR inspect` and
// `verify` show. Both take the data directory's lock (so they refuse while spoold runs) and open
// the store read-only: they never change it.
#ifndef SPOOL_ENGINE_OFFLINE_H_
#define SPOOL_ENGINE_OFFLINE_H_

#include <cstdint>
#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "engine/types.h"

namespace spool::engine {

struct FamilyReport {
  std::string name;
  uint64_t live_sst_bytes = 0;   // in table files still in use
  uint64_t total_sst_bytes = 0;  // in all table files, including obsolete ones not yet deleted
  uint64_t keys_estimate = 0;
  uint64_t tombstones_estimate = 0;  // deletions recorded in table files, not yet compacted away
};

struct StoreReport {
  std::vector<QueueInfo> queues;  // by name; stats counted from the stored messages
  std::vector<FamilyReport> families;
  uint64_t disk_bytes = 0;  // everything under the data directory
};

// NOT_FOUND when DIR holds no store; FAILED_PRECONDITION when a spoold holds it.
absl::StatusOr<StoreReport> InspectStore(const std::string& data_dir, int64_t now_ms);

struct VerifyReport {
  uint64_t queues = 0;
  uint64_t messages = 0;
  std::vector<std::string> problems;  // empty: every invariant holds
};

// Checks every invariant of storage_format.md: each message has both its payload and its state
// record, both parse, every record belongs to an existing queue, every seq was reserved, and
// each queue's counters add up to the messages it holds.
absl::StatusOr<VerifyReport> VerifyStore(const std::string& data_dir);

}  // namespace spool::engine

#endif  // SPOOL_ENGINE_OFFLINE_H_
