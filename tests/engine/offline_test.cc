// inspect and verify on a store built by the engine and then closed; verify must also catch a
// store that was broken behind the engine's back.
#include "engine/offline.h"

#include <gtest/gtest.h>

#include "engine/coding.h"
#include "engine/store.h"
#include "rocksdb/db.h"
#include "tests/engine/commit_gate.h"
#include "tests/engine/engine_fixture.h"

namespace spool::engine {
namespace {

class OfflineTest : public EngineFixture {
 protected:
  // A store with a bit of everything: acks, leases, delays, dead-lettering, a redrive, a purge,
  // a single delete and a deleted queue.
  void Build() {
    Create("dlq");
    QueueConfig c;
    c.max_deliveries = 1;
    c.dead_letter_queue = "dlq";
    Create("jobs", c);
    Create("gone");
    Send("gone", {"x"});
    ASSERT_TRUE(DeleteQueueSync(*engine_, "gone").ok());
    auto ids = Send("jobs", {"a", "b", "c", "d", "e"});
    Send("jobs", {"later"}, 60'000);
    AckOne("jobs", Take("jobs")[0].receipt);                        // a acked
    NackOne("jobs", Take("jobs")[0].receipt);                       // b nacked
    Take("jobs", 1, 30'000);                                        // b dead-lettered, c leased
    ASSERT_TRUE(DeleteMessageSync(*engine_, "jobs", ids[3]).ok());  // d deleted
    Create("scratch");
    Send("scratch", {"1", "2"});
    ASSERT_TRUE(PurgeQueueSync(*engine_, "scratch").ok());
    Send("dlq", {"direct"});
    ASSERT_TRUE(MoveMessagesSync(*engine_, "dlq", "scratch", 1).ok());
    engine_.reset();
  }

  // Writes to the closed store directly, as damage would.
  void Tamper(
      const std::function<void(rocksdb::DB*, std::vector<rocksdb::ColumnFamilyHandle*>&)>& f) {
    std::vector<rocksdb::ColumnFamilyHandle*> handles;
    rocksdb::DB* db;
    ASSERT_TRUE(
        rocksdb::DB::Open(StoreOptions(), StorePath(dir_.path()), StoreFamilies(), &handles, &db)
            .ok());
    f(db, handles);
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    delete db;
  }
};

TEST_F(OfflineTest, VerifyPassesOnAStoreTheEngineBuilt) {
  Build();
  auto report = VerifyStore(dir_.path());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->problems.empty()) << report->problems[0];
  EXPECT_EQ(report->queues, 3u);
  EXPECT_EQ(report->messages, 5u);  // c, e, later in jobs; b in dlq; "direct" in scratch
}

TEST_F(OfflineTest, InspectCountsWhatIsStored) {
  Build();
  auto report = InspectStore(dir_.path(), clock_->NowMillis());
  ASSERT_TRUE(report.ok()) << report.status();
  ASSERT_EQ(report->queues.size(), 3u);
  const QueueInfo& dlq = report->queues[0];
  const QueueInfo& jobs = report->queues[1];
  const QueueInfo& scratch = report->queues[2];
  EXPECT_EQ(dlq.name, "dlq");
  EXPECT_EQ(dlq.stats.total, 1u);  // b
  EXPECT_EQ(dlq.stats.moved_total, 1u);
  EXPECT_EQ(jobs.name, "jobs");
  EXPECT_EQ(jobs.stats.total, 3u);
  EXPECT_EQ(jobs.stats.ready, 1u);    // e
  EXPECT_EQ(jobs.stats.leased, 1u);   // c
  EXPECT_EQ(jobs.stats.delayed, 1u);  // later
  EXPECT_EQ(jobs.stats.acked_total, 1u);
  EXPECT_EQ(jobs.stats.dead_lettered_total, 1u);
  EXPECT_EQ(jobs.stats.deleted_total, 1u);
  EXPECT_EQ(jobs.config.max_deliveries, 1u);
  EXPECT_EQ(scratch.stats.total, 1u);
  EXPECT_EQ(scratch.stats.purged_total, 2u);
  EXPECT_EQ(report->families.size(), 4u);
  EXPECT_GT(report->disk_bytes, 0u);
}

TEST_F(OfflineTest, RefusesWhileTheStoreIsOpenAndWhenThereIsNone) {
  auto busy = VerifyStore(dir_.path());
  EXPECT_EQ(busy.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_NE(std::string(busy.status().message()).find("in use"), std::string::npos);
  EXPECT_EQ(InspectStore(dir_.path(), 0).status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(VerifyStore(dir_.path() + "/nothing-here").status().code(),
            absl::StatusCode::kNotFound);
}

TEST_F(OfflineTest, VerifyFindsAMissingPayload) {
  Build();
  Tamper([](rocksdb::DB* db, auto& h) {
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator({}, h[1]));
    it->SeekToFirst();
    ASSERT_TRUE(it->Valid());
    ASSERT_TRUE(db->Delete({}, h[1], it->key()).ok());
  });
  auto report = VerifyStore(dir_.path());
  ASSERT_TRUE(report.ok());
  ASSERT_FALSE(report->problems.empty());
  bool found = false;
  for (auto& p : report->problems)
    found |= p.find("has a state record but no payload") != std::string::npos;
  EXPECT_TRUE(found) << report->problems[0];
}

TEST_F(OfflineTest, VerifyFindsCountersThatDoNotAddUp) {
  Build();
  Tamper([](rocksdb::DB* db, auto& h) {
    ASSERT_TRUE(db->Merge({}, h[0], CounterKey(2, Counter::kAcked), EncodeInt64(1)).ok());
  });
  auto report = VerifyStore(dir_.path());
  ASSERT_TRUE(report.ok());
  ASSERT_EQ(report->problems.size(), 1u);
  EXPECT_NE(report->problems[0].find("counters say"), std::string::npos) << report->problems[0];
}

// An engine whose commit thread can be held before a write, so that the operations submitted
// meanwhile share the next group.
class HeldCommitTest : public EngineFixture {
 protected:
  Options MakeOptions() override {
    Options o = EngineFixture::MakeOptions();
    o.test.at_point = gate_.Hook();
    return o;
  }
  void TearDown() override {
    gate_.Release();
    EngineFixture::TearDown();
  }

  CommitGate gate_;
};

TEST_F(HeldCommitTest, AQueueDeletedInTheGroupThatCountedItsMessagesLeavesNoCounters) {
  Create("keep");
  Create("gone");
  std::atomic<int> done{0};
  gate_.HoldWriteOf([&] {
    engine_->Enqueue("keep", {{"k", {}, std::nullopt, ""}}, [&](auto r) {
      EXPECT_TRUE(r.ok()) << r.status();
      ++done;
    });
  });
  // Both of these form the next group: the enqueue moves gone's counter, the deletion removes
  // gone's counters.
  engine_->Enqueue("gone", {{"x", {}, std::nullopt, ""}, {"y", {}, std::nullopt, ""}}, [&](auto r) {
    EXPECT_TRUE(r.ok()) << r.status();
    ++done;
  });
  engine_->DeleteQueue("gone", [&](auto r) {
    EXPECT_TRUE(r.ok()) << r.status();
    ++done;
  });
  engine_->Enqueue("keep", {{"k2", {}, std::nullopt, ""}}, [&](auto r) {
    EXPECT_TRUE(r.ok()) << r.status();
    ++done;
  });
  gate_.Release();
  engine_.reset();  // closing writes out everything submitted
  EXPECT_EQ(done.load(), 4);
  auto report = VerifyStore(dir_.path());
  ASSERT_TRUE(report.ok()) << report.status();
  EXPECT_TRUE(report->problems.empty()) << report->problems[0];
  auto inspected = InspectStore(dir_.path(), clock_->NowMillis());
  ASSERT_TRUE(inspected.ok()) << inspected.status();
  ASSERT_EQ(inspected->queues.size(), 1u);
  EXPECT_EQ(inspected->queues[0].stats.enqueued_total, 2u);
}

TEST_F(OfflineTest, VerifyFindsMessagesOfADeletedQueue) {
  Build();
  Tamper([](rocksdb::DB* db, auto& h) {
    ASSERT_TRUE(db->Put({}, h[1], MessageKey(999, 1), "").ok());
    ASSERT_TRUE(db->Put({}, h[2], MessageKey(999, 1), "").ok());
  });
  auto report = VerifyStore(dir_.path());
  ASSERT_TRUE(report.ok());
  bool found = false;
  for (auto& p : report->problems)
    found |= p.find("after its queue was deleted") != std::string::npos;
  EXPECT_TRUE(found);
}

}  // namespace
}  // namespace spool::engine
