// A damaged write-ahead log, as the real spoold meets it after kill -9: bytes flipped in the
// middle make it refuse to start with a clear error (never start with acknowledged messages
// missing); a torn last record, which is what a crash mid-write leaves, recovers silently.
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <set>

#include "tests/grpc_util.h"
#include "tests/process/spoold_process.h"
#include "tests/test_util.h"

namespace spool {
namespace {

using namespace std::chrono_literals;
using spool::testing::SpooldProcess;

// The newest write-ahead log file of the store (the one the last writes went to).
std::string NewestLog(const std::string& data_dir) {
  std::string best;
  for (const auto& entry : std::filesystem::directory_iterator(data_dir + "/db")) {
    std::string path = entry.path().string();
    if (path.ends_with(".log") && (best.empty() || path > best)) best = path;
  }
  return best;
}

std::string ReadFile(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void WriteFile(const std::string& path, const std::string& bytes) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << bytes;
}

std::set<std::string> Ids(const std::vector<v1::PeekedMessage>& ms) {
  std::set<std::string> out;
  for (const auto& m : ms) out.insert(m.message_id());
  return out;
}

// Starts spoold, creates "jobs", enqueues n messages one request each (so each is its own log
// record), optionally one more, then kill -9 (so nothing is flushed out of the log). Returns
// the acknowledged ids.
std::set<std::string> FillAndKill(const std::string& data, int n, std::string* last_id) {
  SpooldProcess spoold(data);
  EXPECT_TRUE(spoold.Start()) << spoold.Log();
  auto stub = spool::testing::StubFor(spoold.port());
  EXPECT_TRUE(spool::testing::CreateQueue(*stub, "jobs").ok());
  std::set<std::string> ids;
  for (int i = 0; i < n; ++i) {
    auto got = spool::testing::Enqueue(*stub, "jobs", {"job-" + std::to_string(i)});
    EXPECT_EQ(got.size(), 1u);
    if (!got.empty()) ids.insert(got[0]);
  }
  if (last_id != nullptr) {
    auto got = spool::testing::Enqueue(*stub, "jobs", {std::string(200, 'x')});
    EXPECT_EQ(got.size(), 1u);
    if (!got.empty()) *last_id = got[0];
  }
  spoold.Kill9();
  return ids;
}

TEST(CorruptionTest, FlippedBytesInTheMiddleOfTheLogRefuseToStart) {
  spool::testing::TempDir dir;
  std::string data = dir.path() + "/data";
  std::set<std::string> acked = FillAndKill(data, 400, nullptr);
  ASSERT_EQ(acked.size(), 400u);

  std::string log = NewestLog(data);
  ASSERT_FALSE(log.empty());
  std::string original = ReadFile(log);
  ASSERT_GT(original.size(), 20'000u) << "the writes should still be in the log";
  std::string damaged = original;
  for (size_t i = damaged.size() / 2; i < damaged.size() / 2 + 8; ++i) damaged[i] ^= 0x5A;
  WriteFile(log, damaged);

  std::string out = dir.path() + "/refused.log";
  int code = SpooldProcess::Run(
      {spool::testing::BinDir() + "/spoold", "--listen", "127.0.0.1:0", "--data-dir", data}, out,
      30s);
  std::string said = ReadFile(out);
  EXPECT_EQ(code, 1) << said;
  EXPECT_NE(said.find("is damaged and opening it would lose data"), std::string::npos) << said;
  EXPECT_NE(said.find("Recovering a damaged store"), std::string::npos) << said;
  EXPECT_EQ(said.find("serving"), std::string::npos) << said;

  // The refusal changed nothing: with the bytes put back, every acknowledged message is there.
  WriteFile(log, original);
  SpooldProcess spoold(data);
  ASSERT_TRUE(spoold.Start()) << spoold.Log();
  auto stub = spool::testing::StubFor(spoold.port());
  EXPECT_EQ(Ids(spool::testing::PeekAll(*stub, "jobs")), acked);
}

TEST(CorruptionTest, ATornLastRecordRecoversSilently) {
  spool::testing::TempDir dir;
  std::string data = dir.path() + "/data";
  std::string torn_id;
  std::set<std::string> acked = FillAndKill(data, 300, &torn_id);
  ASSERT_EQ(acked.size(), 300u);

  // Cut the last record (the extra message's) short, as a crash in the middle of writing it
  // would. That message was acknowledged here, but in a real crash it would not have been.
  std::string log = NewestLog(data);
  std::string bytes = ReadFile(log);
  ASSERT_GT(bytes.size(), 100u);
  WriteFile(log, bytes.substr(0, bytes.size() - 60));

  SpooldProcess spoold(data);
  ASSERT_TRUE(spoold.Start()) << spoold.Log();
  auto stub = spool::testing::StubFor(spoold.port());
  std::set<std::string> present = Ids(spool::testing::PeekAll(*stub, "jobs"));
  EXPECT_EQ(present, acked);
  EXPECT_FALSE(present.contains(torn_id));
  EXPECT_EQ(spoold.Log().find("damaged"), std::string::npos) << spoold.Log();
  // And it goes on working.
  EXPECT_EQ(spool::testing::Enqueue(*stub, "jobs", {"after"}).size(), 1u);
}

}  // namespace
}  // namespace spool
