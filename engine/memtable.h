// The memtable of the messages, state and dedup families: a skiplist of our own instead of
// RocksDB's.
//
// Debian's librocksdb is built without NDEBUG, and its skiplist re-checks the whole remembered
// search path on every insert: four key comparisons per level, each through two virtual calls.
// Each produced message inserts its payload and its state record (and a dedup key, if it has an
// id) and each consumed message three more entries, so those checks were the largest CPU cost
// left on the commit thread, which is what limits produce and consume (engine/README.md, "The
// queue families' memtables are a skiplist of our own"). This skiplist is the textbook
// single-writer, many-reader one; what it adds is a finger (the last insert's predecessor at
// every level), so an insert next to the previous one costs a few comparisons instead of a
// search from the top, and a comparison written for the one order it serves.
//
// Only for a column family whose comparator is RocksDB's default bytewise one, with
// allow_concurrent_memtable_write off (StoreOptions). Internal to engine/.
#ifndef SPOOL_ENGINE_MEMTABLE_H_
#define SPOOL_ENGINE_MEMTABLE_H_

#include <memory>

#include "rocksdb/memtablerep.h"

namespace spool::engine {

// check_order: every comparison is also made with the comparator RocksDB hands the memtable,
// and the process aborts with a message if the two disagree. For tests: it doubles the cost of
// each comparison.
std::shared_ptr<rocksdb::MemTableRepFactory> NewFingerSkipListFactory(bool check_order = false);

}  // namespace spool::engine

#endif  // SPOOL_ENGINE_MEMTABLE_H_
