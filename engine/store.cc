#include "engine/store.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>

#include "engine/coding.h"
#include "engine/memtable.h"
#include "engine/strings.h"
#include "rocksdb/memtablerep.h"
#include "rocksdb/merge_operator.h"
#include "rocksdb/utilities/table_properties_collectors.h"

namespace spool::engine {
namespace {

// Adds little-endian int64 operands: the counters in the default column family.
class Int64AddOperator final : public rocksdb::AssociativeMergeOperator {
 public:
  bool Merge(const rocksdb::Slice&, const rocksdb::Slice* existing, const rocksdb::Slice& value,
             std::string* new_value, rocksdb::Logger*) const override {
    int64_t sum = DecodeInt64(value.ToStringView()).value_or(0);
    if (existing) sum += DecodeInt64(existing->ToStringView()).value_or(0);
    *new_value = EncodeInt64(sum);
    return true;
  }
  const char* Name() const override { return "spool.Int64Add"; }
};

}  // namespace

absl::StatusOr<int> LockDataDir(const std::string& data_dir, bool create) {
  if (create) {
    std::error_code ec;
    std::filesystem::create_directories(data_dir, ec);
    if (ec) {
      return absl::FailedPreconditionError(
          Cat("cannot create data directory ", data_dir, ": ", ec.message()));
    }
  }
  std::string lock_path = data_dir + "/spool.lock";
  int fd = ::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0) {
    return absl::FailedPreconditionError(
        Cat("cannot open ", lock_path, ": ", std::strerror(errno)));
  }
  if (::flock(fd, LOCK_EX | LOCK_NB) != 0) {
    int err = errno;
    ::close(fd);
    if (err == EWOULDBLOCK) {
      return absl::FailedPreconditionError(Cat(
          "data directory ", data_dir, " is in use by another spoold (it holds ", lock_path, ")"));
    }
    return absl::FailedPreconditionError(Cat("cannot lock ", lock_path, ": ", std::strerror(err)));
  }
  return fd;
}

std::string StorePath(const std::string& data_dir) { return data_dir + "/db"; }

rocksdb::DBOptions StoreOptions() {
  rocksdb::DBOptions o;
  o.create_if_missing = true;
  o.create_missing_column_families = true;
  // Refuse to open a log with a corrupted record in the middle rather than silently dropping
  // what followed it (acknowledged messages); a torn record at the tail is still recovered.
  o.wal_recovery_mode = rocksdb::WALRecoveryMode::kTolerateCorruptedTailRecords;
  o.max_total_wal_size = 256 << 20;
  o.max_open_files = -1;
  o.max_background_jobs = 2;
  o.info_log_level = rocksdb::InfoLogLevel::WARN_LEVEL;
  // One commit thread writes every group, so RocksDB never has concurrent memtable writers to
  // parallelise; and our memtable of the queue families (below) does not support them.
  o.allow_concurrent_memtable_write = false;
  return o;
}

std::vector<rocksdb::ColumnFamilyDescriptor> StoreFamilies() {
  rocksdb::ColumnFamilyOptions meta;
  meta.merge_operator = std::make_shared<Int64AddOperator>();
  rocksdb::ColumnFamilyOptions queue;
  // Queue data is short-lived: most of it is consumed before it reaches the bottom level, so
  // compressing it on every flush and compaction is CPU spent for nothing. Compress only what
  // stays long enough to reach the bottommost level.
  queue.compression = rocksdb::kNoCompression;
  queue.bottommost_compression = rocksdb::kSnappyCompression;
  // Consumed heads leave runs of tombstones; compact files dense with them.
  queue.table_properties_collector_factories.push_back(
      rocksdb::NewCompactOnDeletionCollectorFactory(10'000, 5'000, 0.3));
  rocksdb::ColumnFamilyOptions dedup = queue;
  rocksdb::ColumnFamilyOptions state = queue;
  // Within a queue, writes land (nearly) next to the previous one: new messages at the tail,
  // leases and acks in lease order near the head. The memtables are a skiplist of our own that
  // starts each insert from the previous one's place, without the assertions Debian's RocksDB
  // runs on every insert into its own (engine/memtable.h; engine/README.md, "The queue
  // families' memtables are a skiplist of our own"). Dedup keys are random within a queue, so
  // the finger rarely helps there, but the assertions' cost goes all the same.
  queue.memtable_factory = NewFingerSkipListFactory();
  state.memtable_factory = queue.memtable_factory;
  dedup.memtable_factory = queue.memtable_factory;
  return {{rocksdb::kDefaultColumnFamilyName, meta},
          {kMessagesFamily, queue},
          {kStateFamily, state},
          {kDedupFamily, dedup}};
}

}  // namespace spool::engine
