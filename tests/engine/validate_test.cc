#include "engine/validate.h"

#include <gtest/gtest.h>

namespace spool::engine {
namespace {

void ExpectInvalid(const absl::Status& s, const std::string& field) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_EQ(std::string(s.message()).rfind(field + ":", 0), 0u)
      << "message should start with the field name " << field << ": " << s;
}

TEST(ValidateTest, FormatsDurations) {
  EXPECT_EQ(FormatDuration(0), "0s");
  EXPECT_EQ(FormatDuration(500), "500ms");
  EXPECT_EQ(FormatDuration(30 * kSecond), "30s");
  EXPECT_EQ(FormatDuration(5 * kMinute), "5m");
  EXPECT_EQ(FormatDuration(12 * kHour), "12h");
  EXPECT_EQ(FormatDuration(4 * kDay), "4d");
  EXPECT_EQ(FormatDuration(kSecond + 1), "1001ms");
  EXPECT_EQ(FormatDuration(-30 * kSecond), "-30s");
  // Saturated extremes (found by validate_fuzz: INT64_MIN recursed until the stack overflowed).
  EXPECT_EQ(FormatDuration(INT64_MIN), "-9223372036854775808ms");
  EXPECT_EQ(FormatDuration(INT64_MAX), "9223372036854775807ms");
}

TEST(ValidateTest, QueueNames) {
  EXPECT_TRUE(ValidateQueueName("a", "name").ok());
  EXPECT_TRUE(ValidateQueueName(std::string(80, 'x'), "name").ok());
  EXPECT_TRUE(ValidateQueueName("Thumbs_jobs-1.v2", "name").ok());
  for (std::string bad :
       {std::string(), std::string(81, 'x'), std::string("../x"), std::string("a b"),
        std::string("a\0b", 3), std::string("é"), std::string("a/b"), std::string("q*")}) {
    ExpectInvalid(ValidateQueueName(bad, "name"), "name");
  }
}

TEST(ValidateTest, DefaultsAreFilledIn) {
  auto c = NormalizeConfig("q", QueueConfig{});
  ASSERT_TRUE(c.ok()) << c.status();
  EXPECT_EQ(c->visibility_timeout_ms, 30 * kSecond);
  EXPECT_EQ(c->retention_ms, 0);
  EXPECT_EQ(c->delay_ms, 0);
  EXPECT_EQ(c->max_payload_bytes, 262144u);
  EXPECT_EQ(c->dedup_window_ms, 5 * kMinute);
  EXPECT_EQ(c->max_depth, 0u);
  // Normalizing twice changes nothing.
  EXPECT_EQ(*NormalizeConfig("q", *c), *c);
}

TEST(ValidateTest, ConfigRangesAtBothEnds) {
  struct Case {
    std::function<void(QueueConfig&)> set;
    bool ok;
    std::string field;
  };
  std::vector<Case> cases = {
      {[](QueueConfig& c) { c.visibility_timeout_ms = kSecond; }, true, ""},
      {[](QueueConfig& c) { c.visibility_timeout_ms = 12 * kHour; }, true, ""},
      {[](QueueConfig& c) { c.visibility_timeout_ms = kSecond - 1; }, false,
       "config.visibility_timeout"},
      {[](QueueConfig& c) { c.visibility_timeout_ms = 0; }, false, "config.visibility_timeout"},
      {[](QueueConfig& c) { c.visibility_timeout_ms = 12 * kHour + 1; }, false,
       "config.visibility_timeout"},
      {[](QueueConfig& c) {
         c.max_deliveries = 1;
         c.dead_letter_queue = "dlq";
       },
       true, ""},
      {[](QueueConfig& c) {
         c.max_deliveries = 1000;
         c.dead_letter_queue = "dlq";
       },
       true, ""},
      {[](QueueConfig& c) {
         c.max_deliveries = 1001;
         c.dead_letter_queue = "dlq";
       },
       false, "config.max_deliveries"},
      {[](QueueConfig& c) { c.max_deliveries = 3; }, false, "config.dead_letter_queue"},
      {[](QueueConfig& c) { c.dead_letter_queue = "dlq"; }, false, "config.dead_letter_queue"},
      {[](QueueConfig& c) {
         c.max_deliveries = 3;
         c.dead_letter_queue = "q";
       },
       false, "config.dead_letter_queue"},
      {[](QueueConfig& c) {
         c.max_deliveries = 3;
         c.dead_letter_queue = "../x";
       },
       false, "config.dead_letter_queue"},
      {[](QueueConfig& c) { c.retention_ms = 0; }, true, ""},
      {[](QueueConfig& c) { c.retention_ms = kMinute; }, true, ""},
      {[](QueueConfig& c) { c.retention_ms = 365 * kDay; }, true, ""},
      {[](QueueConfig& c) { c.retention_ms = kMinute - 1; }, false, "config.retention"},
      {[](QueueConfig& c) { c.retention_ms = 365 * kDay + 1; }, false, "config.retention"},
      {[](QueueConfig& c) { c.delay_ms = 30 * kDay; }, true, ""},
      {[](QueueConfig& c) { c.delay_ms = -1; }, false, "config.delay"},
      {[](QueueConfig& c) { c.delay_ms = 30 * kDay + 1; }, false, "config.delay"},
      {[](QueueConfig& c) { c.max_payload_bytes = 4194304; }, true, ""},
      {[](QueueConfig& c) { c.max_payload_bytes = 4194305; }, false, "config.max_payload_bytes"},
      {[](QueueConfig& c) { c.dedup_window_ms = kSecond; }, true, ""},
      {[](QueueConfig& c) { c.dedup_window_ms = 7 * kDay; }, true, ""},
      {[](QueueConfig& c) { c.dedup_window_ms = kSecond - 1; }, false, "config.dedup_window"},
      {[](QueueConfig& c) { c.dedup_window_ms = 7 * kDay + 1; }, false, "config.dedup_window"},
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    QueueConfig c;
    cases[i].set(c);
    auto r = NormalizeConfig("q", c);
    if (cases[i].ok) {
      EXPECT_TRUE(r.ok()) << "case " << i << ": " << r.status();
    } else {
      ExpectInvalid(r.status(), cases[i].field);
    }
  }
}

TEST(ValidateTest, EnqueueShapes) {
  QueueConfig c = *NormalizeConfig("q", QueueConfig{});
  EnqueueEntry ok{"hello", {{"k", "v"}}, std::nullopt, ""};
  EXPECT_TRUE(ValidateEnqueue({ok}, c).ok());
  ExpectInvalid(ValidateEnqueue({}, c), "messages");
  ExpectInvalid(ValidateEnqueue(std::vector<EnqueueEntry>(1001, ok), c), "messages");
  EXPECT_TRUE(ValidateEnqueue(std::vector<EnqueueEntry>(1000, ok), c).ok());

  EnqueueEntry exact{std::string(262144, 'x'), {}, std::nullopt, ""};
  EXPECT_TRUE(ValidateEnqueue({exact}, c).ok());
  EnqueueEntry over{std::string(262145, 'x'), {}, std::nullopt, ""};
  ExpectInvalid(ValidateEnqueue({ok, over}, c), "messages[1].payload");
  EnqueueEntry attrs_over{std::string(262140, 'x'), {{"key", "value"}}, std::nullopt, ""};
  ExpectInvalid(ValidateEnqueue({attrs_over}, c), "messages[0].payload");

  EnqueueEntry many = ok;
  for (int i = 0; i < 17; ++i) many.attributes["k" + std::to_string(i)] = "v";
  ExpectInvalid(ValidateEnqueue({many}, c), "messages[0].attributes");
  EnqueueEntry long_key = ok;
  long_key.attributes[std::string(129, 'k')] = "v";
  ExpectInvalid(ValidateEnqueue({long_key}, c), "messages[0].attributes");
  EnqueueEntry empty_key = ok;
  empty_key.attributes[""] = "v";
  ExpectInvalid(ValidateEnqueue({empty_key}, c), "messages[0].attributes");
  EnqueueEntry key128 = ok;
  key128.attributes[std::string(128, 'k')] = "v";
  EXPECT_TRUE(ValidateEnqueue({key128}, c).ok());

  EnqueueEntry delay = ok;
  delay.delay_ms = 30 * kDay;
  EXPECT_TRUE(ValidateEnqueue({delay}, c).ok());
  delay.delay_ms = 30 * kDay + 1;
  ExpectInvalid(ValidateEnqueue({ok, ok, delay}, c), "messages[2].delay");
  delay.delay_ms = -1;
  ExpectInvalid(ValidateEnqueue({delay}, c), "messages[0].delay");

  EnqueueEntry dedup = ok;
  dedup.dedup_id = std::string(128, 'd');
  EXPECT_TRUE(ValidateEnqueue({dedup}, c).ok());
  dedup.dedup_id = std::string(129, 'd');
  ExpectInvalid(ValidateEnqueue({dedup}, c), "messages[0].dedup_id");
}

TEST(ValidateTest, LeaseAndReceiptArguments) {
  LeaseRequest r;
  EXPECT_TRUE(ValidateLease(r).ok());
  r.max_messages = 1000;
  EXPECT_TRUE(ValidateLease(r).ok());
  r.max_messages = 1001;
  ExpectInvalid(ValidateLease(r), "max_messages");
  r = {};
  r.visibility_timeout_ms = 999;
  ExpectInvalid(ValidateLease(r), "visibility_timeout");
  r.visibility_timeout_ms = 12 * kHour + 1;
  ExpectInvalid(ValidateLease(r), "visibility_timeout");
  r = {};
  r.wait_ms = 60 * kSecond;
  EXPECT_TRUE(ValidateLease(r).ok());
  r.wait_ms = 60 * kSecond + 1;
  ExpectInvalid(ValidateLease(r), "wait_time");
  r.wait_ms = -1;
  ExpectInvalid(ValidateLease(r), "wait_time");

  ExpectInvalid(ValidateReceiptCount(0), "receipts");
  ExpectInvalid(ValidateReceiptCount(1001), "receipts");
  EXPECT_TRUE(ValidateReceiptCount(1000).ok());
  EXPECT_TRUE(ValidateNackDelay(12 * kHour).ok());
  ExpectInvalid(ValidateNackDelay(12 * kHour + 1), "delay");
  ExpectInvalid(ValidateNackDelay(-1), "delay");

  ExpectInvalid(ValidatePeek(1001, ""), "max_messages");
  ExpectInvalid(ValidatePeek(10, "nope"), "start_after");
  EXPECT_TRUE(ValidatePeek(1000, "000000000000002a").ok());
  ExpectInvalid(ValidateList("", 1001, ""), "page_size");
  ExpectInvalid(ValidateList("", 10, "../x"), "page_token");
}

}  // namespace
}  // namespace spool::engine
