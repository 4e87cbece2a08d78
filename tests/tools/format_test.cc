#include "tools/spoolctl/format.h"

#include <gtest/gtest.h>

namespace spool::ctl {
namespace {

TEST(FormatTest, ParsesDurations) {
  EXPECT_EQ(ParseDuration("500ms"), 500);
  EXPECT_EQ(ParseDuration("30s"), 30'000);
  EXPECT_EQ(ParseDuration("5m"), 300'000);
  EXPECT_EQ(ParseDuration("12h"), 43'200'000);
  EXPECT_EQ(ParseDuration("4d"), 345'600'000);
  EXPECT_EQ(ParseDuration("0"), 0);
  EXPECT_EQ(ParseDuration("0s"), 0);
  for (const char* bad : {"", "s", "30", "3x", "-1s", "1.5s", "30 s", "1h30m", "99999999999d"}) {
    EXPECT_FALSE(ParseDuration(bad).has_value()) << bad;
  }
}

TEST(FormatTest, ParsesSizes) {
  EXPECT_EQ(ParseSize("262144"), 262144u);
  EXPECT_EQ(ParseSize("256KiB"), 262144u);
  EXPECT_EQ(ParseSize("1MiB"), 1048576u);
  EXPECT_EQ(ParseSize("4MiB"), 4194304u);
  EXPECT_EQ(ParseSize("1GiB"), 1073741824u);
  EXPECT_EQ(ParseSize("1MB"), 1000000u);
  for (const char* bad : {"", "KiB", "1.5MiB", "1 MiB", "1mib", "-1"}) {
    EXPECT_FALSE(ParseSize(bad).has_value()) << bad;
  }
}

TEST(FormatTest, PrintsDurationsAgesBytesAndTimes) {
  EXPECT_EQ(ExactDuration(30'000), "30s");
  EXPECT_EQ(ExactDuration(1'500), "1500ms");
  EXPECT_EQ(ExactDuration(86'400'000), "1d");
  EXPECT_EQ(Age(0), "0s");
  EXPECT_EQ(Age(999), "0s");
  EXPECT_EQ(Age(45'000), "45s");
  EXPECT_EQ(Age(192'000), "3m12s");
  EXPECT_EQ(Age(7'500'000), "2h5m");
  EXPECT_EQ(Age(4 * 86'400'000LL + 3 * 3'600'000LL), "4d3h");
  EXPECT_EQ(Age(-5), "0s");
  EXPECT_EQ(Bytes(0), "0 B");
  EXPECT_EQ(Bytes(1023), "1023 B");
  EXPECT_EQ(Bytes(262144), "256 KiB");
  EXPECT_EQ(Bytes(1572864), "1.5 MiB");
  EXPECT_EQ(Time(1'700'000'000'123), "2023-11-14T22:13:20.123Z");
}

TEST(FormatTest, PreviewsTextAndBinary) {
  EXPECT_EQ(Preview("hello", 10), "hello");
  EXPECT_EQ(Preview("naïve café", 20), "naïve café");
  EXPECT_EQ(Preview("abcdefghij", 4), "abcd…(10 bytes)");
  EXPECT_EQ(Preview(std::string("\x00\x01\xff", 3), 20), "hex:0001ff");
  EXPECT_EQ(Preview("line\nbreak", 40), "hex:6c696e650a627265616b");
  EXPECT_EQ(Preview(std::string(100, '\x01'), 10), "hex:010101…(100 bytes)");
  EXPECT_EQ(Preview("\xc3", 10), "hex:c3");  // a cut UTF-8 sequence is not text
  EXPECT_EQ(Preview("", 10), "");
}

TEST(FormatTest, TablesAlignNamesLeftAndNumbersRight) {
  std::string t = Table({{"NAME", "TOTAL", "ID", "NOTE"},
                         {"a", "5", "0000000000000001", "-"},
                         {"longer", "1234", "00000000000000ff", "-"}});
  EXPECT_EQ(t,
            "NAME    TOTAL  ID                NOTE\n"
            "a           5  0000000000000001  -\n"
            "longer   1234  00000000000000ff  -\n");
}

}  // namespace
}  // namespace spool::ctl
