// Our own skiplist memtable, for the messages, state and dedup families (engine/memtable.h),
// against RocksDB's: the same writes into two databases, one with each, and every read compared,
// while every comparison inside ours is also made with RocksDB's comparator (check_order). Then
// concurrent readers while one thread writes, as the engine's Lease reads while the commit thread
// writes.
#include "engine/memtable.h"

#include <gtest/gtest.h>

#include <atomic>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <thread>
#include <vector>

#include "engine/coding.h"
#include "rocksdb/db.h"
#include "tests/test_util.h"

namespace spool::engine {
namespace {

rocksdb::Options DbOptions(bool ours) {
  rocksdb::Options o;
  o.create_if_missing = true;
  o.allow_concurrent_memtable_write = false;
  o.write_buffer_size = 64 << 20;  // everything stays in the memtable until the test flushes
  if (ours) o.memtable_factory = NewFingerSkipListFactory(/*check_order=*/true);
  return o;
}

std::unique_ptr<rocksdb::DB> Open(const std::string& path, bool ours) {
  rocksdb::DB* db = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(DbOptions(ours), path, &db);
  EXPECT_TRUE(s.ok()) << s.ToString();
  return std::unique_ptr<rocksdb::DB>(db);
}

using Entries = std::vector<std::pair<std::string, std::string>>;

Entries ScanForward(rocksdb::DB* db, const rocksdb::Snapshot* snapshot = nullptr) {
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(ro));
  Entries out;
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    out.emplace_back(it->key().ToString(), it->value().ToString());
  }
  EXPECT_TRUE(it->status().ok());
  return out;
}

Entries ScanBackward(rocksdb::DB* db) {
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator({}));
  Entries out;
  for (it->SeekToLast(); it->Valid(); it->Prev()) {
    out.emplace_back(it->key().ToString(), it->value().ToString());
  }
  EXPECT_TRUE(it->status().ok());
  return out;
}

std::optional<std::string> Get(rocksdb::DB* db, const std::string& key,
                               const rocksdb::Snapshot* snapshot = nullptr) {
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot;
  std::string value;
  rocksdb::Status s = db->Get(ro, key, &value);
  EXPECT_TRUE(s.ok() || s.IsNotFound()) << s.ToString();
  if (!s.ok()) return std::nullopt;
  return value;
}

// Where a Seek and a SeekForPrev land, and two steps either way from there.
std::vector<std::string> Around(rocksdb::DB* db, const std::string& target) {
  std::unique_ptr<rocksdb::Iterator> it(db->NewIterator({}));
  std::vector<std::string> out;
  auto note = [&] { out.push_back(it->Valid() ? it->key().ToString() : "<end>"); };
  it->Seek(target);
  note();
  for (int i = 0; i < 2 && it->Valid(); ++i) {
    it->Prev();
    note();
  }
  it->SeekForPrev(target);
  note();
  for (int i = 0; i < 2 && it->Valid(); ++i) {
    it->Next();
    note();
  }
  return out;
}

// Keys of every shape: 16-byte message keys (queue id, seq), mostly written in order as a queue
// writes them; dedup keys (a queue id and a client's id of 0 to 23 bytes); and short strings.
// The variable parts are over a tiny alphabet, so that prefixes, empty keys and the bytes 0x00
// and 0xff meet the general comparison.
class KeyMaker {
 public:
  explicit KeyMaker(uint32_t seed) : rng_(seed) {}
  std::string Random() {
    static const char kAlphabet[] = {'a', 'b', '\0', '\xff'};
    switch (rng_() % 4) {
      case 0: {
        std::string s(rng_() % 6, 'a');
        for (char& c : s) c = kAlphabet[rng_() % 4];
        return s;
      }
      case 1: {  // a dedup key: queue id, then a client's id of any length (16 bytes in all too)
        std::string id(rng_() % 24, 'a');
        for (char& c : id) c = kAlphabet[rng_() % 4];
        return DedupKey(1 + rng_() % 2, id);
      }
      default:
        return MessageKey(1 + rng_() % 3, rng_() % 400);
    }
  }
  std::string NextTail(uint64_t queue) { return MessageKey(queue, tail_[queue % 4]++); }
  std::mt19937& rng() { return rng_; }

 private:
  std::mt19937 rng_;
  uint64_t tail_[4] = {1000, 1000, 1000, 1000};
};

void ExpectSame(rocksdb::DB* theirs, rocksdb::DB* ours,
                const std::map<std::string, std::string>& model, KeyMaker& keys,
                const std::string& when) {
  SCOPED_TRACE(when);
  Entries forward = ScanForward(ours);
  ASSERT_EQ(forward, ScanForward(theirs));
  ASSERT_EQ(forward, Entries(model.begin(), model.end()));
  Entries backward = ScanBackward(ours);
  ASSERT_EQ(Entries(backward.rbegin(), backward.rend()), forward);
  for (int i = 0; i < 50; ++i) {
    std::string k = i % 2 ? keys.Random()
                          : (forward.empty() ? "" : forward[keys.rng()() % forward.size()].first);
    auto want = model.find(k);
    EXPECT_EQ(Get(ours, k), want == model.end() ? std::nullopt : std::optional(want->second)) << k;
    EXPECT_EQ(Around(ours, k), Around(theirs, k));
  }
  std::vector<std::string> batch;
  for (int i = 0; i < 20; ++i) batch.push_back(keys.Random());
  std::vector<rocksdb::Slice> slices(batch.begin(), batch.end());
  std::vector<std::string> a, b;
  auto sa = ours->MultiGet({}, slices, &a);
  auto sb = theirs->MultiGet({}, slices, &b);
  for (size_t i = 0; i < batch.size(); ++i) {
    ASSERT_EQ(sa[i].code(), sb[i].code());
    if (sa[i].ok()) {
      EXPECT_EQ(a[i], b[i]);
    }
  }
}

TEST(FingerSkipListTest, ReadsAgreeWithRocksDBsSkipListUnderRandomWrites) {
  for (uint32_t seed = 1; seed <= 12; ++seed) {
    SCOPED_TRACE(::testing::Message() << "seed " << seed);
    spool::testing::TempDir dir_theirs, dir_ours;
    auto theirs = Open(dir_theirs.path(), false);
    auto ours = Open(dir_ours.path(), true);
    ASSERT_TRUE(theirs && ours);
    KeyMaker keys(seed);
    std::map<std::string, std::string> model;
    std::map<std::string, int> puts_since_delete;  // SingleDelete only after exactly one Put
    std::vector<std::pair<const rocksdb::Snapshot*, const rocksdb::Snapshot*>> snapshots;
    std::vector<Entries> at_snapshot;
    uint64_t head = 1000;  // the next tail key of queue 1 to be consumed
    for (int step = 0; step < 3000; ++step) {
      rocksdb::WriteBatch batch;
      int ops = 1 + keys.rng()() % 4;
      for (int op = 0; op < ops; ++op) {
        uint32_t roll = keys.rng()() % 10;
        std::string key;
        if (roll < 3) {  // a queue's tail
          key = keys.NextTail(1 + keys.rng()() % 2);
          std::string value = "v" + std::to_string(step);
          batch.Put(key, value);
          model[key] = value;
          puts_since_delete[key]++;
        } else if (roll < 5) {  // a queue's head, in order, as acks come
          key = MessageKey(1, head++);
          if (puts_since_delete[key] == 1) {
            batch.SingleDelete(key);
            model.erase(key);
            puts_since_delete[key] = 0;
          }
        } else if (roll < 8) {
          key = keys.Random();
          std::string value = "r" + std::to_string(step);
          batch.Put(key, value);
          model[key] = value;
          puts_since_delete[key]++;
        } else {
          key = keys.Random();
          batch.Delete(key);
          model.erase(key);
          puts_since_delete[key] = 0;
        }
      }
      ASSERT_TRUE(theirs->Write({}, &batch).ok());
      ASSERT_TRUE(ours->Write({}, &batch).ok());
      if (step % 700 == 0) {
        snapshots.emplace_back(theirs->GetSnapshot(), ours->GetSnapshot());
        at_snapshot.push_back(Entries(model.begin(), model.end()));
      }
      if (step % 500 == 499) ExpectSame(theirs.get(), ours.get(), model, keys, "in the memtable");
    }
    for (size_t i = 0; i < snapshots.size(); ++i) {
      EXPECT_EQ(ScanForward(ours.get(), snapshots[i].second), at_snapshot[i]);
      EXPECT_EQ(ScanForward(theirs.get(), snapshots[i].first), at_snapshot[i]);
      theirs->ReleaseSnapshot(snapshots[i].first);
      ours->ReleaseSnapshot(snapshots[i].second);
    }

    // Closing without a flush: the next open replays the log into a new memtable of ours.
    ours.reset();
    ours = Open(dir_ours.path(), true);
    ASSERT_TRUE(ours);
    ExpectSame(theirs.get(), ours.get(), model, keys, "replayed from the log");

    ASSERT_TRUE(theirs->Flush({}).ok());
    ASSERT_TRUE(ours->Flush({}).ok());
    ExpectSame(theirs.get(), ours.get(), model, keys, "flushed to a table file");
  }
}

// One writer appends message keys in order and acks (SingleDeletes) an older range, as the
// commit thread does; readers Get and scan meanwhile. A key whose Put has returned must be
// found until it is deleted, and a scan must see keys strictly in order.
TEST(FingerSkipListTest, ReadersRunWhileOneThreadWrites) {
  spool::testing::TempDir dir;
  rocksdb::Options o = DbOptions(true);
  o.memtable_factory = NewFingerSkipListFactory(/*check_order=*/false);  // at full speed
  rocksdb::DB* raw = nullptr;
  ASSERT_TRUE(rocksdb::DB::Open(o, dir.path(), &raw).ok());
  std::unique_ptr<rocksdb::DB> db(raw);

  constexpr uint64_t kKeys = 30'000, kKeep = 5'000;  // the writer deletes all but the last kKeep
  std::atomic<uint64_t> written{0}, deleted{0};
  std::atomic<bool> failed{false};
  std::thread writer([&] {
    for (uint64_t seq = 0; seq < kKeys; ++seq) {
      rocksdb::WriteBatch b;
      b.Put(MessageKey(7, seq), std::to_string(seq));
      if (seq >= kKeep) b.SingleDelete(MessageKey(7, seq - kKeep));
      if (!db->Write({}, &b).ok()) failed = true;
      if (seq >= kKeep) deleted.store(seq - kKeep + 1, std::memory_order_release);
      written.store(seq + 1, std::memory_order_release);
    }
  });
  auto reader = [&](uint32_t seed) {
    std::mt19937 rng(seed);
    uint64_t gets = 0, scans = 0;
    while (written.load(std::memory_order_acquire) < kKeys && !failed) {
      uint64_t lo = deleted.load(std::memory_order_acquire);
      uint64_t hi = written.load(std::memory_order_acquire);
      if (hi == 0) continue;
      if (rng() % 8 != 0) {
        uint64_t seq = lo + rng() % (hi - lo);
        std::string value;
        rocksdb::Status s = db->Get({}, MessageKey(7, seq), &value);
        // Missing is right only if the writer has deleted it meanwhile: at most the key after
        // the last one it has reported deleted, which its write in flight may be removing.
        bool gone = s.IsNotFound() && seq <= deleted.load(std::memory_order_acquire);
        if (!gone && (!s.ok() || value != std::to_string(seq))) {
          ADD_FAILURE() << "Get " << seq << ": " << s.ToString() << " '" << value << "'";
          failed = true;
        }
        ++gets;
      } else {
        std::unique_ptr<rocksdb::Iterator> it(db->NewIterator({}));
        std::string previous;
        uint64_t seen = 0;
        for (it->Seek(MessageKey(7, lo)); it->Valid() && seen < 500; it->Next(), ++seen) {
          std::string key = it->key().ToString();
          if (!previous.empty() && !(previous < key)) {
            ADD_FAILURE() << "scan out of order";
            failed = true;
          }
          previous = key;
        }
        ++scans;
      }
    }
    EXPECT_GT(gets + scans, 0u);
  };
  std::thread r1(reader, 1), r2(reader, 2);
  writer.join();
  r1.join();
  r2.join();
  EXPECT_FALSE(failed);
  // What is left: exactly the last kKeep keys, in order.
  Entries all = ScanForward(db.get());
  ASSERT_EQ(all.size(), kKeep);
  for (uint64_t i = 0; i < kKeep; ++i) {
    ASSERT_EQ(all[i].first, MessageKey(7, kKeys - kKeep + i));
  }
}

}  // namespace
}  // namespace spool::engine
