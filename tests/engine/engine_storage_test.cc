// What survives closing and reopening the store, the directory lock, the commit pipeline's
// grouping, and the cost of leasing after a long history (tombstones).
#include <gtest/gtest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <thread>

#include "engine/coding.h"
#include "engine/commit_pipeline.h"
#include "engine/store.h"
#include "rocksdb/perf_context.h"
#include "tests/engine/commit_gate.h"
#include "tests/engine/engine_fixture.h"

namespace spool::engine {
namespace {

class EngineStorageTest : public EngineFixture {};

TEST_F(EngineStorageTest, LeasesSurviveReopen) {
  QueueConfig c;
  c.visibility_timeout_ms = 10'000;
  Create("jobs", c);
  Send("jobs", {"a", "b"});
  auto leased = Take("jobs");
  ASSERT_EQ(leased.size(), 1u);
  Reopen();
  auto next = Take("jobs", 10, 60'000);
  ASSERT_EQ(next.size(), 1u);  // "a" is still leased
  EXPECT_EQ(next[0].payload, "b");
  Advance(10'000);
  auto again = Take("jobs", 10);
  ASSERT_EQ(again.size(), 1u);
  EXPECT_EQ(again[0].payload, "a");
  EXPECT_EQ(again[0].delivery_count, 2u);
  // The receipt from before the restart is stale now.
  EXPECT_EQ(AckOne("jobs", leased[0].receipt), Outcome::kLeaseLost);
  EXPECT_EQ(AckOne("jobs", again[0].receipt), Outcome::kOk);
}

TEST_F(EngineStorageTest, ReceiptsStayValidAcrossReopen) {
  Create("jobs");
  Send("jobs", {"a"});
  auto m = Take("jobs");
  Reopen();
  EXPECT_EQ(AckOne("jobs", m[0].receipt), Outcome::kOk);
}

TEST_F(EngineStorageTest, ConfigsCountersAndDelaysSurviveReopen) {
  Create("dlq");
  QueueConfig c;
  c.visibility_timeout_ms = 2'000;
  c.max_deliveries = 5;
  c.dead_letter_queue = "dlq";
  c.max_depth = 100;
  c.retention_ms = 3'600'000;
  QueueInfo before = Create("jobs", c);
  Send("jobs", {"a", "b"});
  Send("jobs", {"later"}, 60'000);
  AckOne("jobs", Take("jobs")[0].receipt);
  Take("jobs");
  Reopen();
  auto after = engine_->GetQueue("jobs");
  ASSERT_TRUE(after.ok());
  EXPECT_EQ(after->config, before.config);
  EXPECT_EQ(after->create_time_ms, before.create_time_ms);
  EXPECT_EQ(after->stats.total, 2u);
  EXPECT_EQ(after->stats.enqueued_total, 3u);
  EXPECT_EQ(after->stats.acked_total, 1u);
  EXPECT_EQ(after->stats.delivered_total, 2u);
  EXPECT_EQ(after->stats.leased, 1u);
  EXPECT_EQ(after->stats.delayed, 1u);
  Advance(60'000);
  EXPECT_EQ(Take("jobs", 10).size(), 2u);
}

// Opening rebuilds the lease index from a scan in sequence order; here that order is not the
// index's (an older message delayed past newer ones, leases with different deadlines).
TEST_F(EngineStorageTest, TheLeaseOrderSurvivesReopenWhateverTheScanOrder) {
  Create("jobs");
  Send("jobs", {"late"}, 60'000);
  Send("jobs", {"a", "b", "c", "d"});
  auto first = Take("jobs", 1, 30'000);
  auto second = Take("jobs", 1, 10'000);
  ASSERT_EQ(first.size(), 1u);
  ASSERT_EQ(second.size(), 1u);
  EXPECT_EQ(first[0].payload, "a");
  EXPECT_EQ(second[0].payload, "b");
  Reopen();
  auto info = engine_->GetQueue("jobs");
  ASSERT_TRUE(info.ok());
  EXPECT_EQ(info->stats.total, 5u);
  EXPECT_EQ(info->stats.leased, 2u);
  EXPECT_EQ(info->stats.delayed, 1u);
  EXPECT_EQ(Payloads(Take("jobs", 10, 100'000)), (std::vector<std::string>{"c", "d"}));
  Advance(10'000);  // b's lease ends first, although a was leased first
  EXPECT_EQ(Payloads(Take("jobs", 10, 100'000)), (std::vector<std::string>{"b"}));
  Advance(20'000);
  EXPECT_EQ(Payloads(Take("jobs", 10, 100'000)), (std::vector<std::string>{"a"}));
  Advance(30'000);
  EXPECT_EQ(Payloads(Take("jobs", 10, 100'000)), (std::vector<std::string>{"late"}));
}

// Enough messages that opening reads the states in many chunks, with the reader ahead of the
// maps being built from them; two queues, their sequence numbers interleaved.
TEST_F(EngineStorageTest, ManyMessagesInTwoQueuesReloadInOrder) {
  Create("a");
  Create("b");
  std::vector<std::string> batch(1000);
  for (int round = 0; round < 25; ++round) {
    for (int i = 0; i < 1000; ++i) batch[i] = std::to_string(round * 1000 + i);
    Send("a", batch);
    if (round < 20) Send("b", batch);
  }
  ASSERT_EQ(Take("a", 10, 60'000).size(), 10u);
  Reopen();
  auto a = engine_->GetQueue("a");
  auto b = engine_->GetQueue("b");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_EQ(a->stats.total, 25'000u);
  EXPECT_EQ(a->stats.leased, 10u);
  EXPECT_EQ(a->stats.ready, 24'990u);
  EXPECT_EQ(b->stats.total, 20'000u);
  EXPECT_EQ(b->stats.ready, 20'000u);
  auto next = Take("a", 1000);
  ASSERT_EQ(next.size(), 1000u);
  EXPECT_EQ(next.front().payload, "10");
  EXPECT_EQ(next.back().payload, "1009");
  for (int k = 0; k < 20; ++k) {
    auto got = Take("b", 1000);
    ASSERT_EQ(got.size(), 1000u);
    EXPECT_EQ(got.front().payload, std::to_string(k * 1000));
    EXPECT_EQ(got.back().payload, std::to_string(k * 1000 + 999));
  }
  EXPECT_TRUE(Take("b", 1).empty());
}

TEST_F(EngineStorageTest, ADamagedStateRecordStopsTheOpen) {
  Create("jobs");
  auto ids = Send("jobs", {"a", "b"});
  engine_.reset();
  {
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(
        rocksdb::DB::Open(StoreOptions(), StorePath(dir_.path()), StoreFamilies(), &handles, &db)
            .ok());
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator({}, handles[2]));
    it->SeekToLast();
    ASSERT_TRUE(it->Valid());
    std::string key = it->key().ToString();
    it.reset();
    ASSERT_TRUE(db->Put({}, handles[2], key, "\xff\xff\xff").ok());
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    delete db;
  }
  auto e = Engine::Open(MakeOptions(), clock_);
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.status().code(), absl::StatusCode::kDataLoss);
  EXPECT_NE(e.status().message().find("state record"), std::string::npos) << e.status();
}

// With a large log to replay, opening holds compactions back until the messages are loaded,
// and its log line says so; they must be on once it is done. RocksDB records each change of
// options in a new OPTIONS file: the newest must have compactions on in every family. (A
// threshold of 0 holds them back at every open; the default one does not for this small log.)
TEST_F(EngineStorageTest, CompactionsAreOnOnceOpen) {
  Create("jobs");
  Send("jobs", {"a"});
  std::vector<std::string> lines;
  Options o = MakeOptions();
  o.log = [&lines](const std::string& line) { lines.push_back(line); };
  auto OpenLine = [&lines] {
    for (const std::string& line : lines)
      if (line.starts_with("opened ")) return line;
    return std::string();
  };
  engine_.reset();
  {
    auto small = Engine::Open(o, clock_);
    ASSERT_TRUE(small.ok()) << small.status();
  }
  EXPECT_EQ(OpenLine().find("of log replayed"), std::string::npos) << OpenLine();
  lines.clear();
  o.defer_compactions_log_bytes = 0;
  auto opened = Engine::Open(o, clock_);
  ASSERT_TRUE(opened.ok()) << opened.status();
  EXPECT_NE(OpenLine().find("MiB of log replayed"), std::string::npos) << OpenLine();
  LeaseRequest lease;
  lease.queue = "jobs";
  auto leased = LeaseSync(**opened, lease);
  ASSERT_TRUE(leased.ok()) << leased.status();
  EXPECT_EQ(Payloads(*leased), std::vector<std::string>{"a"});
  opened->reset();
  std::string newest;
  uint64_t newest_number = 0;
  for (const auto& entry : std::filesystem::directory_iterator(StorePath(dir_.path()))) {
    std::string name = entry.path().filename().string();
    if (!name.starts_with("OPTIONS-")) continue;
    uint64_t number = std::stoull(name.substr(8));
    if (number >= newest_number) {
      newest_number = number;
      newest = entry.path().string();
    }
  }
  ASSERT_FALSE(newest.empty());
  std::ifstream in(newest);
  int on = 0, off = 0;
  for (std::string line; std::getline(in, line);) {
    on += line.find("disable_auto_compactions=false") != std::string::npos;
    off += line.find("disable_auto_compactions=true") != std::string::npos;
  }
  EXPECT_EQ(on, 4) << newest;
  EXPECT_EQ(off, 0) << newest;
}

TEST_F(EngineStorageTest, DedupIdsSurviveReopen) {
  Create("jobs");
  auto a = EnqueueSync(*engine_, "jobs", {{"a", {}, {}, "k"}});
  Reopen();
  auto b = EnqueueSync(*engine_, "jobs", {{"a", {}, {}, "k"}});
  EXPECT_TRUE((*b)[0].duplicate);
  EXPECT_EQ((*b)[0].message_id, (*a)[0].message_id);
}

TEST_F(EngineStorageTest, ASecondOpenOfTheDirectoryIsRefused) {
  Options o = MakeOptions();
  auto second = Engine::Open(o, clock_);
  ASSERT_FALSE(second.ok());
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(second.status().message()).find("in use"), std::string::npos)
      << second.status();
  engine_.reset();  // released on close
  EXPECT_TRUE(Engine::Open(o, clock_).ok());
}

TEST_F(EngineStorageTest, SyncDurabilityWorks) {
  engine_.reset();
  Options o = MakeOptions();
  o.durability = Durability::kSync;
  auto e = Engine::Open(o, clock_);
  ASSERT_TRUE(e.ok());
  engine_ = std::move(*e);
  Create("jobs");
  Send("jobs", {"a"});
  EXPECT_EQ(Take("jobs").size(), 1u);
}

// A queue that has seen a long history must not make Lease skip the history's tombstones.
TEST_F(EngineStorageTest, LeaseSkipsNoTombstonesAfterALongHistory) {
  Create("jobs");
  constexpr int kBatches = 60, kPerBatch = 1000;  // 60,000 messages through the queue
  std::vector<std::string> payloads(kPerBatch, std::string(64, 'p'));
  for (int b = 0; b < kBatches; ++b) {
    Send("jobs", payloads);
    auto ms = Take("jobs", 1000);
    ASSERT_EQ(ms.size(), static_cast<size_t>(kPerBatch));
    std::vector<std::string> receipts;
    for (auto& m : ms) receipts.push_back(m.receipt);
    auto acked = AckSync(*engine_, "jobs", receipts);
    ASSERT_TRUE(acked.ok());
  }
  Send("jobs", {"last"});
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableCount);
  rocksdb::get_perf_context()->Reset();
  auto m = Take("jobs");
  uint64_t skipped = rocksdb::get_perf_context()->internal_delete_skipped_count;
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
  ASSERT_EQ(m.size(), 1u);
  EXPECT_EQ(m[0].payload, "last");
  EXPECT_LE(skipped, 4u) << "Lease skipped " << skipped << " tombstones";
  // Peek from the start of the queue is just as cheap.
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kEnableCount);
  rocksdb::get_perf_context()->Reset();
  auto p = engine_->Peek("jobs", 10, "");
  skipped = rocksdb::get_perf_context()->internal_delete_skipped_count;
  rocksdb::SetPerfLevel(rocksdb::PerfLevel::kDisable);
  ASSERT_EQ(p->messages.size(), 1u);
  EXPECT_LE(skipped, 4u);
}

// The messages, state and dedup families use our own skiplist memtable (engine/memtable.h; its
// own tests are in memtable_test.cc). Here, through the store's real options: state records and
// dedup keys written out of order, replayed from the log at the next open, come back in order.
TEST(StoreTest, TheQueueFamiliesReplayTheirMemtablesInOrder) {
  testing::TempDir dir;
  auto families = StoreFamilies();
  ASSERT_EQ(families[1].name, "messages");
  ASSERT_EQ(families[2].name, "state");
  ASSERT_EQ(families[3].name, "dedup");
  for (int f = 1; f <= 3; ++f) {
    EXPECT_STREQ(families[f].options.memtable_factory->Name(), "spool.FingerSkipList");
  }

  auto open = [&](rocksdb::DB** db, std::vector<rocksdb::ColumnFamilyHandle*>* handles) {
    ASSERT_TRUE(
        rocksdb::DB::Open(StoreOptions(), StorePath(dir.path()), families, handles, db).ok());
  };
  auto close = [](rocksdb::DB* db, std::vector<rocksdb::ColumnFamilyHandle*>& handles) {
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    delete db;  // with the log on, closing does not flush: the next open replays it
  };
  constexpr uint64_t kRecords = 3000;
  // The k-th key of each family in order. A dedup key here is 15 bytes (the queue id and a
  // 7-byte id), so the general comparison orders them, not the one for 16-byte message keys.
  auto state_key = [](uint64_t k) { return MessageKey(1, k); };
  auto dedup_key = [](uint64_t k) {
    char id[16];
    std::snprintf(id, sizeof id, "%04llu-id", static_cast<unsigned long long>(k));
    return DedupKey(1, id);
  };
  rocksdb::DB* db;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  open(&db, &handles);
  for (uint64_t i = 0; i < kRecords; ++i) {
    uint64_t k = (i * 7919) % kRecords;  // out of order
    ASSERT_TRUE(db->Put({}, handles[2], state_key(k), "state").ok());
    ASSERT_TRUE(db->Put({}, handles[3], dedup_key(k), "dedup").ok());
  }
  auto expect_in_order = [&](const char* where) {
    SCOPED_TRACE(where);
    for (auto [family, key] : {std::pair{2, +state_key}, std::pair{3, +dedup_key}}) {
      std::unique_ptr<rocksdb::Iterator> it(db->NewIterator({}, handles[family]));
      uint64_t expected = 0;
      for (it->SeekToFirst(); it->Valid(); it->Next(), ++expected) {
        ASSERT_EQ(it->key().ToString(), key(expected)) << "family " << family;
      }
      EXPECT_TRUE(it->status().ok());
      EXPECT_EQ(expected, kRecords) << "family " << family;
    }
  };
  for (int family : {2, 3}) {
    uint64_t live = 0;
    ASSERT_TRUE(db->GetIntProperty(handles[family], "rocksdb.num-entries-active-mem-table", &live));
    EXPECT_EQ(live, kRecords);
  }
  expect_in_order("from the memtable");
  close(db, handles);

  open(&db, &handles);
  expect_in_order("after the replay");
  close(db, handles);
}

TEST(CommitPipelineTest, ConcurrentSubmissionsShareWritesAndKeepOrder) {
  testing::TempDir dir;
  rocksdb::Options o;
  o.create_if_missing = true;
  rocksdb::DB* raw;
  ASSERT_TRUE(rocksdb::DB::Open(o, dir.path(), &raw).ok());
  std::unique_ptr<rocksdb::DB> db(raw);
  CommitPipeline pipeline(db.get(), /*sync=*/true);
  constexpr int kThreads = 8, kEach = 200;
  std::atomic<int> done{0};
  absl::Mutex order_mu;
  std::vector<int> order;
  std::vector<std::thread> threads;
  absl::Mutex submit_mu;  // as the engine does: submission order is decided under a lock
  int next = 0;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < kEach; ++i) {
        absl::MutexLock lock(&submit_mu);
        int n = next++;
        pipeline.Submit(
            [&](CommitPipeline::Group& g) { g.batch().Put("k" + std::to_string(n), "v"); },
            [&, n](const absl::Status& s) {
              EXPECT_TRUE(s.ok());
              absl::MutexLock l(&order_mu);
              order.push_back(n);
              ++done;
            });
      }
    });
  }
  for (auto& t : threads) t.join();
  pipeline.Stop();
  EXPECT_EQ(done.load(), kThreads * kEach);
  for (size_t i = 0; i < order.size(); ++i) ASSERT_EQ(order[i], static_cast<int>(i));
  EXPECT_LT(pipeline.groups_written(), static_cast<uint64_t>(kThreads * kEach));
  std::string v;
  EXPECT_TRUE(db->Get({}, "k1599", &v).ok());
}

// A pipeline whose commit thread can be held before its next write, so that what is submitted
// meanwhile forms one group; on a store whose default family adds int64 counters.
class HeldPipeline {
 public:
  explicit HeldPipeline(const std::string& path) {
    rocksdb::Options o;
    o.create_if_missing = true;
    o.merge_operator = StoreFamilies()[0].options.merge_operator;
    rocksdb::DB* raw;
    EXPECT_TRUE(rocksdb::DB::Open(o, path, &raw).ok());
    db.reset(raw);
    pipeline = std::make_unique<CommitPipeline>(db.get(), /*sync=*/false, nullptr, gate.Hook());
  }
  ~HeldPipeline() {
    gate.Release();
    pipeline->Stop();
  }
  std::vector<std::string> Operands(const std::string& key) {
    std::vector<rocksdb::PinnableSlice> slices(16);
    rocksdb::GetMergeOperandsOptions options;
    options.expected_max_number_of_operands = 16;
    int n = 0;
    rocksdb::Status s =
        db->GetMergeOperands({}, db->DefaultColumnFamily(), key, slices.data(), &options, &n);
    std::vector<std::string> out;
    if (!s.ok()) return out;
    for (int i = 0; i < n; ++i) out.push_back(slices[i].ToString());
    return out;
  }

  CommitGate gate;
  std::unique_ptr<rocksdb::DB> db;
  std::unique_ptr<CommitPipeline> pipeline;
};

TEST(CommitPipelineTest, AGroupWritesOneSumPerCounter) {
  testing::TempDir dir;
  HeldPipeline p(dir.path());
  std::atomic<int> done{0};
  auto count = [&](const absl::Status& s) {
    EXPECT_TRUE(s.ok()) << s;
    ++done;
  };
  p.gate.HoldWriteOf(
      [&] { p.pipeline->Submit([](CommitPipeline::Group& g) { g.AddToCounter("a", 1); }, count); });
  // These three form the next group while the first is held.
  for (int delta : {2, 3, -1}) {
    p.pipeline->Submit(
        [&](CommitPipeline::Group& g) {
          g.AddToCounter("a", delta);
          g.AddToCounter("b", 10);
          g.batch().Put("k" + std::to_string(delta), "v");
        },
        count);
  }
  p.pipeline->Submit([](CommitPipeline::Group& g) { g.AddToCounter("c", 0); }, count);
  p.gate.Release();
  p.pipeline->Stop();
  EXPECT_EQ(done.load(), 5);
  EXPECT_EQ(p.pipeline->groups_written(), 2u);
  // One operand for the first group's 1 and one for the second group's 2 + 3 - 1.
  EXPECT_EQ(p.Operands("a"), (std::vector<std::string>{EncodeInt64(1), EncodeInt64(4)}));
  EXPECT_EQ(p.Operands("b"), (std::vector<std::string>{EncodeInt64(30)}));
  std::string v;
  ASSERT_TRUE(p.db->Get({}, "a", &v).ok());
  EXPECT_EQ(DecodeInt64(v), 5);
  EXPECT_TRUE(p.db->Get({}, "c", &v).IsNotFound());  // a zero sum writes nothing
  EXPECT_TRUE(p.db->Get({}, "k3", &v).ok());
}

TEST(CommitPipelineTest, DroppedCountersDoNotOutliveTheirDeletionInTheSameGroup) {
  testing::TempDir dir;
  HeldPipeline p(dir.path());
  auto ok = [](const absl::Status& s) { EXPECT_TRUE(s.ok()) << s; };
  p.gate.HoldWriteOf(
      [&] { p.pipeline->Submit([](CommitPipeline::Group& g) { g.AddToCounter("q1/x", 1); }, ok); });
  p.pipeline->Submit(
      [](CommitPipeline::Group& g) {
        g.AddToCounter("q1/x", 5);
        g.AddToCounter("q1/y", 5);
        g.AddToCounter("q2/x", 7);
      },
      ok);
  p.pipeline->Submit(
      [](CommitPipeline::Group& g) {  // deletes q1's counters, as DeleteQueue does
        g.DropCounters("q1/");
        g.batch().DeleteRange("q1/", "q10");
      },
      ok);
  p.gate.Release();
  p.pipeline->Stop();
  std::string v;
  EXPECT_TRUE(p.db->Get({}, "q1/x", &v).IsNotFound());
  EXPECT_TRUE(p.db->Get({}, "q1/y", &v).IsNotFound());
  ASSERT_TRUE(p.db->Get({}, "q2/x", &v).ok());
  EXPECT_EQ(DecodeInt64(v), 7);
}

}  // namespace
}  // namespace spool::engine
