#include "engine/coding.h"

#include <gtest/gtest.h>

#include <cstdint>
#include <limits>

namespace spool::engine {
namespace {

constexpr uint64_t kBoundaries[] = {0,
                                    1,
                                    255,
                                    256,
                                    (1ull << 32) - 1,
                                    1ull << 32,
                                    (1ull << 32) + 1,
                                    std::numeric_limits<uint64_t>::max() - 1,
                                    std::numeric_limits<uint64_t>::max()};

TEST(CodingTest, BigEndianRoundTripsAtBoundaries) {
  for (uint64_t v : kBoundaries) {
    std::string s;
    AppendBigEndian64(&s, v);
    ASSERT_EQ(s.size(), 8u);
    EXPECT_EQ(DecodeBigEndian64(s), v);
  }
}

TEST(CodingTest, MessageKeysSortInNumericOrder) {
  for (uint64_t a : kBoundaries) {
    for (uint64_t b : kBoundaries) {
      EXPECT_EQ(MessageKey(7, a) < MessageKey(7, b), a < b) << a << " vs " << b;
      EXPECT_EQ(MessageKey(a, 0) < MessageKey(b, 0), a < b) << a << " vs " << b;
      auto parts = ParseMessageKey(MessageKey(a, b));
      ASSERT_TRUE(parts.has_value());
      EXPECT_EQ(parts->queue_id, a);
      EXPECT_EQ(parts->seq, b);
    }
  }
  EXPECT_FALSE(ParseMessageKey("short").has_value());
}

TEST(CodingTest, QueueRangeHoldsExactlyItsQueue) {
  for (uint64_t q : {uint64_t{0}, uint64_t{1}, (uint64_t{1} << 32) - 1, uint64_t{1} << 32}) {
    std::string lo = QueueStart(q), hi = QueueStart(q + 1);
    EXPECT_LE(lo, MessageKey(q, 0));
    EXPECT_LT(MessageKey(q, std::numeric_limits<uint64_t>::max()), hi);
    EXPECT_GE(MessageKey(q + 1, 0), hi);
    EXPECT_LE(lo, DedupKey(q, "some-id"));
    EXPECT_LT(DedupKey(q, std::string(128, '\xff')), hi);
  }
}

TEST(CodingTest, MessageIdsRoundTripAndSortLikeSeqs) {
  for (uint64_t a : kBoundaries) {
    std::string id = FormatMessageId(a);
    EXPECT_EQ(id.size(), 16u);
    EXPECT_EQ(ParseMessageId(id), a);
    for (uint64_t b : kBoundaries) EXPECT_EQ(FormatMessageId(a) < FormatMessageId(b), a < b);
  }
  EXPECT_EQ(FormatMessageId(42), "000000000000002a");
  EXPECT_FALSE(ParseMessageId("").has_value());
  EXPECT_FALSE(ParseMessageId("000000000000002A").has_value());  // upper case is not ours
  EXPECT_FALSE(ParseMessageId("00000000000002a").has_value());
  EXPECT_FALSE(ParseMessageId("0000000000000g2a").has_value());
}

TEST(CodingTest, Int64CountersRoundTrip) {
  for (int64_t v : {int64_t{0}, int64_t{-1}, int64_t{1}, std::numeric_limits<int64_t>::min(),
                    std::numeric_limits<int64_t>::max()}) {
    EXPECT_EQ(DecodeInt64(EncodeInt64(v)), v);
  }
  EXPECT_FALSE(DecodeInt64("1234567").has_value());
}

TEST(CodingTest, CounterKeysStayInsideTheirQueuePrefix) {
  std::string key = CounterKey(5, Counter::kPurged);
  EXPECT_GE(key, CounterPrefix(5));
  EXPECT_LT(key, CounterPrefix(6));
}

}  // namespace
}  // namespace spool::engine
