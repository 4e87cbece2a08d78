// How the store is opened, shared by the engine and the offline reader (offline.h): the data
// directory's lock, RocksDB's options, and the column families with their merge operator.
// Internal to engine/.
#ifndef SPOOL_ENGINE_STORE_H_
#define SPOOL_ENGINE_STORE_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "rocksdb/db.h"
#include "rocksdb/options.h"

namespace spool::engine {

// Takes the exclusive flock on DIR/spool.lock (creating the directory first when create) and
// returns its descriptor; closing it releases the lock. FAILED_PRECONDITION "... is in use ..."
// when another process holds it.
absl::StatusOr<int> LockDataDir(const std::string& data_dir, bool create);

std::string StorePath(const std::string& data_dir);  // DIR/db

rocksdb::DBOptions StoreOptions();

// default, messages, state, dedup, in that order.
std::vector<rocksdb::ColumnFamilyDescriptor> StoreFamilies();

}  // namespace spool::engine

#endif  // SPOOL_ENGINE_STORE_H_
