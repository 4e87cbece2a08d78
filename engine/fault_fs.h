// Test-only: a RocksDB file system that fails the way disks and power cuts do, for the
// crash-torture harness and the storage-fault tests (tests/torture, issue 5). spoold builds it
// only under --test-faults; production never goes through it.
//
//   unsynced-loss             every byte appended to a file stays in this process's memory until
//                             the file is synced, so kill -9 loses exactly what a power cut
//                             would (the page cache cannot hide a missing fsync). Closing a file
//                             hands its bytes to the OS without syncing them, like close(2).
//   eio-on-wal-sync-after=N   after N successful syncs of write-ahead-log files, every further
//                             WAL sync fails with EIO (a dying disk).
//   enospc-after-bytes=N      after N bytes appended over all files, every further append fails
//                             with ENOSPC (a full disk).
//
// A spec is a comma-separated list of these, e.g. "unsynced-loss,enospc-after-bytes=1000000".
// FaultController::Crash() simulates a power cut inside one process: every byte not yet synced
// is dropped and every later write fails, so a test can close the engine and reopen the
// directory as a machine would find it after the cut.
#ifndef SPOOL_ENGINE_FAULT_FS_H_
#define SPOOL_ENGINE_FAULT_FS_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "absl/status/statusor.h"

namespace rocksdb {
class FileSystem;
}

namespace spool::engine {

struct FaultSpec {
  bool unsynced_loss = false;
  int64_t eio_on_wal_sync_after = -1;  // -1: never
  int64_t enospc_after_bytes = -1;     // -1: never
};

// INVALID_ARGUMENT naming the part of the spec it cannot read.
absl::StatusOr<FaultSpec> ParseFaultSpec(std::string_view spec);

// What the fault file system counts and whether the power is still on. Shared by every file it
// opens; a test keeps a pointer to crash and to read the counters.
class FaultController {
 public:
  explicit FaultController(FaultSpec spec) : spec_(spec) {}

  const FaultSpec& spec() const { return spec_; }

  // The power cut: unsynced bytes are dropped and every later write fails.
  void Crash() { crashed_.store(true); }
  bool crashed() const { return crashed_.load(); }

  int64_t wal_syncs() const { return wal_syncs_.load(); }
  int64_t bytes_appended() const { return bytes_appended_.load(); }
  int64_t injected_errors() const { return injected_errors_.load(); }

 private:
  friend class FaultFile;
  const FaultSpec spec_;
  std::atomic<bool> crashed_{false};
  std::atomic<int64_t> wal_syncs_{0};
  std::atomic<int64_t> bytes_appended_{0};
  std::atomic<int64_t> injected_errors_{0};
};

// Wraps base (usually rocksdb::FileSystem::Default()).
std::shared_ptr<rocksdb::FileSystem> NewFaultFileSystem(std::shared_ptr<rocksdb::FileSystem> base,
                                                        std::shared_ptr<FaultController> control);

}  // namespace spool::engine

#endif  // SPOOL_ENGINE_FAULT_FS_H_
