// The torture checker on small hand-written histories: for every rule, one history that keeps
// it and one that breaks it. Times below are milliseconds.
#include "tools/torture/checker.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <fstream>

#include "tests/test_util.h"
#include "tools/torture/payload.h"

namespace spool::torture {
namespace {

constexpr char kQ[] = "torture";
constexpr char kDlq[] = "torture-dlq";

struct D {
  std::string uid;
  uint32_t count;
};

class HistoryBuilder {
 public:
  HistoryBuilder() {
    Event& c = Add("config", 0, 0);
    c.set_queue(kQ);
    c.set_max_deliveries(3);
    c.set_dead_letter_queue(kDlq);
  }

  Event& Add(const std::string& type, int64_t invoke_ms, int64_t complete_ms,
             const std::string& outcome = "ok") {
    Event& e = events_.emplace_back();
    e.set_type(type);
    e.set_invoke_us(invoke_ms * 1000);
    e.set_complete_us(complete_ms * 1000);
    if (type == "enqueue" || type == "lease" || type == "ack" || type == "nack" ||
        type == "extend") {
      e.set_outcome(outcome);
    }
    return e;
  }
  HistoryBuilder& Enqueue(const std::string& uid, int64_t t, const std::string& outcome = "ok") {
    Event& e = Add("enqueue", t, t + 1, outcome);
    e.set_queue(kQ);
    e.add_uids(uid);
    return *this;
  }
  HistoryBuilder& Lease(int64_t t0, int64_t t1, int64_t vt_ms, std::vector<D> got,
                        const std::string& queue = kQ, bool intact = true) {
    Event& e = Add("lease", t0, t1);
    e.set_queue(queue);
    e.set_visibility_ms(vt_ms);
    for (const D& d : got) {
      Delivery* x = e.add_deliveries();
      x->set_uid(d.uid);
      x->set_intact(intact);
      x->set_delivery_count(d.count);
    }
    return *this;
  }
  HistoryBuilder& UnknownLease(int64_t t0, int64_t t1, int64_t vt_ms = 0) {
    Event& e = Add("lease", t0, t1, "unknown");
    e.set_queue(kQ);
    e.set_visibility_ms(vt_ms);
    return *this;
  }
  // type: ack, nack, extend; result: OK, LEASE_LOST, or "" with call outcome unknown.
  HistoryBuilder& Use(const std::string& type, int64_t t0, int64_t t1, D d,
                      const std::string& result, int64_t ms = 0, const std::string& queue = kQ) {
    Event& e = Add(type, t0, t1, result.empty() ? "unknown" : "ok");
    e.set_queue(queue);
    if (type == "nack") e.set_delay_ms(ms);
    if (type == "extend") e.set_visibility_ms(ms);
    ReceiptResult* r = e.add_receipts();
    r->set_uid(d.uid);
    r->set_delivery_count(d.count);
    r->set_outcome(result);
    return *this;
  }
  // Deliveries pushed on Subscribe stream `stream`, opened at t_open and read at t_read.
  HistoryBuilder& Pushed(uint64_t stream, int64_t t_open, int64_t t_read, int64_t vt_ms,
                         int64_t max_lease_ms, std::vector<D> got) {
    Lease(t_open, t_read, vt_ms, std::move(got));
    events_.back().set_stream(stream);
    events_.back().set_max_lease_ms(max_lease_ms);
    return *this;
  }
  // The client began to end the stream (or saw it break) at t0; its status came at t1.
  HistoryBuilder& StreamEnd(uint64_t stream, int64_t t0, int64_t t1) {
    Add("stream_end", t0, t1).set_stream(stream);
    return *this;
  }
  HistoryBuilder& Crash(int64_t t0, int64_t t1) {
    Add("crash", t0, t1);
    return *this;
  }
  HistoryBuilder& Start(int64_t t) {
    Add("start", t, t);
    return *this;
  }
  HistoryBuilder& Ready(int64_t t, uint64_t ready_messages) {
    Add("ready", t, t).set_ready_messages(ready_messages);
    return *this;
  }
  HistoryBuilder& LoadStop(int64_t t) {
    Add("load_stop", t, t);
    return *this;
  }
  HistoryBuilder& DrainEnd(int64_t t) {
    Add("drain_end", t, t);
    return *this;
  }

  std::vector<std::string> Rules() const {
    Report r = Check(events_, CheckOptions());
    std::vector<std::string> rules;
    for (const Violation& v : r.violations) rules.push_back(v.rule);
    return rules;
  }
  const std::vector<Event>& events() const { return events_; }

 private:
  std::vector<Event> events_;
};

using Rules = std::vector<std::string>;

// A message's whole life done right: enqueued, leased, acked, drained.
HistoryBuilder Clean() {
  HistoryBuilder h;
  h.Enqueue("a", 0).Lease(10, 11, 1000, {{"a", 1}}).Use("ack", 20, 21, {"a", 1}, "OK");
  return h;
}

TEST(CheckerTest, CleanHistoryPasses) {
  EXPECT_EQ(Clean().LoadStop(100).DrainEnd(200).Rules(), Rules{});
}

TEST(CheckerTest, S1LostEnqueue) {
  HistoryBuilder h = Clean();
  h.Enqueue("b", 30);
  EXPECT_EQ(h.Rules(), Rules{}) << "without a final drain S1 cannot be judged";
  h.LoadStop(100).DrainEnd(200);
  EXPECT_EQ(h.Rules(), Rules{"S1"});
  // An enqueue whose outcome is unknown may be lost.
  HistoryBuilder u = Clean();
  u.Enqueue("b", 30, "unknown").LoadStop(100).DrainEnd(200);
  EXPECT_EQ(u.Rules(), Rules{});
  // Delivered from the dead-letter queue counts.
  HistoryBuilder d = Clean();
  d.Enqueue("b", 30)
      .Lease(40, 41, 1000, {{"b", 1}})
      .UnknownLease(1050, 1060)
      .UnknownLease(2100, 2110)
      .Lease(3200, 3201, 1000, {{"b", 1}}, kDlq)
      .Use("ack", 3210, 3211, {"b", 1}, "OK", 0, kDlq)
      .LoadStop(4000)
      .DrainEnd(4100);
  EXPECT_EQ(d.Rules(), Rules{});
}

TEST(CheckerTest, S2NeverEnqueuedOrDamaged) {
  HistoryBuilder h = Clean();
  h.Lease(30, 31, 1000, {{"ghost", 1}});
  EXPECT_EQ(h.Rules(), Rules{"S2"});
  HistoryBuilder d;
  d.Enqueue("a", 0).Lease(10, 11, 1000, {{"a", 1}}, kQ, /*intact=*/false);
  EXPECT_EQ(d.Rules(), Rules{"S2"});
}

TEST(CheckerTest, S3DeliveredAfterDefiniteFailure) {
  HistoryBuilder h;
  h.Enqueue("a", 0, "fail").Lease(10, 11, 1000, {{"a", 1}});
  EXPECT_EQ(h.Rules(), Rules{"S3"});
  HistoryBuilder u;
  u.Enqueue("a", 0, "unknown").Lease(10, 11, 1000, {{"a", 1}});
  EXPECT_EQ(u.Rules(), Rules{});
}

TEST(CheckerTest, UnknownCallMadeWhileDownCountsAsFailed) {
  HistoryBuilder h;
  h.Crash(0, 5).Enqueue("a", 10, "unknown").Start(20).Lease(30, 31, 1000, {{"a", 1}});
  EXPECT_EQ(h.Rules(), Rules{"S3"});
}

TEST(CheckerTest, S4OverlappingLeases) {
  HistoryBuilder h;
  h.Enqueue("a", 0).Lease(10, 11, 1000, {{"a", 1}}).Lease(500, 501, 1000, {{"a", 2}});
  EXPECT_EQ(h.Rules(), Rules{"S4"});
  HistoryBuilder expired;
  expired.Enqueue("a", 0).Lease(10, 11, 1000, {{"a", 1}}).Lease(1005, 1012, 1000, {{"a", 2}});
  EXPECT_EQ(expired.Rules(), Rules{}) << "within the slack";
  HistoryBuilder nacked;
  nacked.Enqueue("a", 0)
      .Lease(10, 11, 1000, {{"a", 1}})
      .Use("nack", 100, 101, {"a", 1}, "OK", 0)
      .Lease(200, 201, 1000, {{"a", 2}});
  EXPECT_EQ(nacked.Rules(), Rules{});
  HistoryBuilder extended;
  extended.Enqueue("a", 0)
      .Lease(10, 11, 1000, {{"a", 1}})
      .Use("extend", 900, 901, {"a", 1}, "OK", 1000)
      .Lease(1200, 1201, 1000, {{"a", 2}});
  EXPECT_EQ(extended.Rules(), Rules{"S4"}) << "the extension holds the lease to 1900";
  // An ExtendLease may shorten a lease; one whose outcome is unknown may have.
  HistoryBuilder shortened;
  shortened.Enqueue("a", 0)
      .Lease(10, 11, 5000, {{"a", 1}})
      .Use("extend", 100, 101, {"a", 1}, "", 1000)
      .Lease(1100, 1101, 1000, {{"a", 2}});
  EXPECT_EQ(shortened.Rules(), Rules{});
}

// A pushed delivery is renewed while its stream lives: another delivery before the stream's
// end is an overlap, whatever the visibility timeout; after the end, a crash or
// max_lease_duration it is not.
TEST(CheckerTest, S4StreamLeasesLastWhileTheStreamLives) {
  HistoryBuilder open;
  open.Enqueue("a", 0).Pushed(1, 5, 10, 1000, 60'000, {{"a", 1}});
  open.Lease(3000, 3001, 1000, {{"a", 2}}).StreamEnd(1, 5000, 5001);
  EXPECT_EQ(open.Rules(), Rules{"S4"}) << "renewal should have held it until 5000";
  HistoryBuilder ended;
  ended.Enqueue("a", 0).Pushed(1, 5, 10, 1000, 60'000, {{"a", 1}});
  ended.StreamEnd(1, 2000, 2001).Lease(3000, 3001, 1000, {{"a", 2}});
  EXPECT_EQ(ended.Rules(), Rules{});
  HistoryBuilder capped;
  capped.Enqueue("a", 0).Pushed(1, 5, 10, 1000, 1500, {{"a", 1}});
  capped.Lease(1600, 1601, 1000, {{"a", 2}}).StreamEnd(1, 5000, 5001);
  EXPECT_EQ(capped.Rules(), Rules{}) << "max_lease_duration ended the lease at 1505";
  HistoryBuilder crashed;
  crashed.Enqueue("a", 0).Pushed(1, 5, 10, 1000, 60'000, {{"a", 1}});
  crashed.Crash(1200, 1201).Start(1300).StreamEnd(1, 1202, 1203);
  crashed.Lease(2500, 2501, 1000, {{"a", 2}});
  EXPECT_EQ(crashed.Rules(), Rules{});
  HistoryBuilder too_soon;
  too_soon.Enqueue("a", 0).Pushed(1, 5, 10, 1000, 60'000, {{"a", 1}});
  too_soon.Lease(500, 501, 1000, {{"a", 2}}).StreamEnd(1, 5000, 5001);
  EXPECT_EQ(too_soon.Rules(), Rules{"S4"}) << "inside even the first visibility timeout";
}

TEST(CheckerTest, S5DeliveredAfterAck) {
  HistoryBuilder h = Clean();
  h.Lease(2000, 2001, 1000, {{"a", 2}});
  EXPECT_EQ(h.Rules(), Rules{"S5"});
  HistoryBuilder lost;
  lost.Enqueue("a", 0)
      .Lease(10, 11, 1000, {{"a", 1}})
      .Use("ack", 1500, 1501, {"a", 1}, "LEASE_LOST")
      .Lease(1400, 1401, 1000, {{"a", 2}});
  EXPECT_EQ(lost.Rules(), Rules{});
}

TEST(CheckerTest, S6StaleReceiptAccepted) {
  HistoryBuilder h;
  h.Enqueue("a", 0)
      .Lease(10, 11, 1000, {{"a", 1}})
      .Lease(1100, 1101, 1000, {{"a", 2}})
      .Use("nack", 1200, 1201, {"a", 1}, "OK", 0);
  EXPECT_EQ(h.Rules(), Rules{"S6"});
  HistoryBuilder refused;
  refused.Enqueue("a", 0)
      .Lease(10, 11, 1000, {{"a", 1}})
      .Lease(1100, 1101, 1000, {{"a", 2}})
      .Use("nack", 1200, 1201, {"a", 1}, "LEASE_LOST", 0)
      .Use("extend", 1300, 1301, {"a", 1}, "LEASE_LOST", 1000);
  EXPECT_EQ(refused.Rules(), Rules{});
  HistoryBuilder after_nack;
  after_nack.Enqueue("a", 0)
      .Lease(10, 11, 1000, {{"a", 1}})
      .Use("nack", 100, 101, {"a", 1}, "OK", 5000)
      .Use("extend", 200, 201, {"a", 1}, "OK", 1000);
  EXPECT_EQ(after_nack.Rules(), Rules{"S6"});
}

TEST(CheckerTest, S6StaleAckAcceptedWhileTheMessageWasThere) {
  HistoryBuilder h;
  h.Enqueue("a", 0)
      .Lease(10, 11, 1000, {{"a", 1}})
      .Lease(1100, 1101, 1000, {{"a", 2}})
      .Use("ack", 1200, 1201, {"a", 1}, "OK");
  EXPECT_EQ(h.Rules(), Rules{"S6"});
  // Gone already (acked through the newer lease): OK by contract.
  HistoryBuilder gone;
  gone.Enqueue("a", 0)
      .Lease(10, 11, 1000, {{"a", 1}})
      .Lease(1100, 1101, 1000, {{"a", 2}})
      .Use("ack", 1150, 1151, {"a", 2}, "OK")
      .Use("ack", 1200, 1201, {"a", 1}, "OK");
  EXPECT_EQ(gone.Rules(), Rules{});
  // The newer lease's Ack, sent while the stale one was in flight, may have been applied first.
  HistoryBuilder concurrent;
  concurrent.Enqueue("a", 0)
      .Lease(10, 11, 1000, {{"a", 1}})
      .Lease(1100, 1101, 1000, {{"a", 2}})
      .Use("ack", 1210, 1220, {"a", 2}, "OK")
      .Use("ack", 1200, 1230, {"a", 1}, "OK");
  EXPECT_EQ(concurrent.Rules(), Rules{});
  // Possibly dead-lettered (the newer lease was the last allowed): OK too.
  HistoryBuilder last;
  last.Enqueue("a", 0)
      .Lease(10, 11, 1000, {{"a", 2}})
      .Lease(1100, 1101, 1000, {{"a", 3}})
      .Use("ack", 2200, 2201, {"a", 2}, "OK");
  EXPECT_EQ(last.Rules(), Rules{});
}

TEST(CheckerTest, S7DeliveryCounts) {
  HistoryBuilder same;
  same.Enqueue("a", 0).Lease(10, 11, 1000, {{"a", 1}}).Lease(1100, 1101, 1000, {{"a", 1}});
  EXPECT_EQ(same.Rules(), Rules{"S7"});
  HistoryBuilder back;
  back.Enqueue("a", 0).Lease(10, 11, 1000, {{"a", 2}}).Lease(1100, 1101, 1000, {{"a", 1}});
  EXPECT_EQ(back.Rules(), Rules{"S7"});
  HistoryBuilder too_many;
  too_many.Enqueue("a", 0).Lease(10, 11, 1000, {{"a", 4}});
  EXPECT_EQ(too_many.Rules(), Rules{"S7"});
  HistoryBuilder gap;  // a delivery whose reply was lost leaves a gap: fine
  gap.Enqueue("a", 0).Lease(10, 11, 1000, {{"a", 1}}).Lease(2100, 2101, 1000, {{"a", 3}});
  EXPECT_EQ(gap.Rules(), Rules{});
}

TEST(CheckerTest, S8NackDelay) {
  HistoryBuilder early;
  early.Enqueue("a", 0)
      .Lease(10, 11, 1000, {{"a", 1}})
      .Use("nack", 100, 101, {"a", 1}, "OK", 500)
      .Lease(300, 301, 1000, {{"a", 2}});
  EXPECT_EQ(early.Rules(), Rules{"S8"});
  HistoryBuilder on_time;
  on_time.Enqueue("a", 0)
      .Lease(10, 11, 1000, {{"a", 1}})
      .Use("nack", 100, 101, {"a", 1}, "OK", 500)
      .Lease(599, 602, 1000, {{"a", 2}});
  EXPECT_EQ(on_time.Rules(), Rules{});
}

TEST(CheckerTest, S9DeadLetteringTooEarly) {
  HistoryBuilder h;
  h.Enqueue("a", 0)
      .Lease(10, 11, 1000, {{"a", 1}})
      .Lease(1100, 1101, 1000, {{"a", 2}})
      .Lease(2200, 2201, 1000, {{"a", 1}}, kDlq);
  EXPECT_EQ(h.Rules(), Rules{"S9"});
  // The same, with a Lease in flight at a crash that may have made the third delivery.
  HistoryBuilder lost_reply;
  lost_reply.Enqueue("a", 0)
      .Lease(10, 11, 1000, {{"a", 1}})
      .Lease(1100, 1101, 1000, {{"a", 2}})
      .UnknownLease(2100, 2150)
      .Lease(3300, 3301, 1000, {{"a", 1}}, kDlq);
  EXPECT_EQ(lost_reply.Rules(), Rules{});
  HistoryBuilder right;
  right.Enqueue("a", 0)
      .Lease(10, 11, 1000, {{"a", 1}})
      .Lease(1100, 1101, 1000, {{"a", 2}})
      .Lease(2200, 2201, 1000, {{"a", 3}})
      .Lease(3300, 3301, 1000, {{"a", 1}}, kDlq);
  EXPECT_EQ(right.Rules(), Rules{});
}

TEST(CheckerTest, S9AllowsADeliveryMadeUnseenAfterAStreamReleasedTheMessage) {
  // Delivery 2 is pushed on stream 1, whose end released it (a nack of unknown outcome, sent
  // at 1250). Another stream took it (delivery 3) and ended before the push reached its
  // client: all that stream left is an unknown lease over its life. Then it is dead-lettered.
  HistoryBuilder h;
  h.Enqueue("a", 0)
      .Lease(10, 11, 1000, {{"a", 1}})
      .Pushed(1, 1100, 1110, 1000, 60'000, {{"a", 2}})
      .UnknownLease(1200, 1300)
      .Use("nack", 1250, 1260, {"a", 2}, "")
      .StreamEnd(1, 1250, 1260)
      .Lease(1400, 1401, 1000, {{"a", 1}}, kDlq);
  EXPECT_EQ(h.Rules(), Rules{});
  // Without the other stream, nothing could have made delivery 3.
  HistoryBuilder alone;
  alone.Enqueue("a", 0)
      .Lease(10, 11, 1000, {{"a", 1}})
      .Pushed(1, 1100, 1110, 1000, 60'000, {{"a", 2}})
      .Use("nack", 1250, 1260, {"a", 2}, "")
      .StreamEnd(1, 1250, 1260)
      .Lease(1400, 1401, 1000, {{"a", 1}}, kDlq);
  EXPECT_EQ(alone.Rules(), Rules{"S9"});
}

TEST(CheckerTest, S9LastDeliveryUnackedMustReachTheDeadLetterQueue) {
  HistoryBuilder h;
  h.Enqueue("a", 0)
      .Lease(10, 11, 1000, {{"a", 1}})
      .Lease(1100, 1101, 1000, {{"a", 2}})
      .Lease(2200, 2201, 1000, {{"a", 3}})
      .Use("nack", 2300, 2301, {"a", 3}, "OK", 0)
      .LoadStop(2400)
      .DrainEnd(9000);
  Rules rules = h.Rules();
  EXPECT_NE(std::find(rules.begin(), rules.end(), "S9"), rules.end());
}

TEST(CheckerTest, L1UnackedMessageMustComeBack) {
  HistoryBuilder late;
  late.Enqueue("a", 0)
      .Lease(10, 11, 1000, {{"a", 1}})
      .LoadStop(500)
      .Lease(3000, 3001, 1000, {{"a", 2}});
  late.Use("ack", 3010, 3011, {"a", 2}, "OK").DrainEnd(3100);
  EXPECT_EQ(late.Rules(), Rules{"L1"});
  HistoryBuilder in_time;
  in_time.Enqueue("a", 0)
      .Lease(10, 11, 1000, {{"a", 1}})
      .LoadStop(500)
      .Lease(1020, 1030, 1000, {{"a", 2}});
  in_time.Use("ack", 1040, 1041, {"a", 2}, "OK").DrainEnd(1100);
  EXPECT_EQ(in_time.Rules(), Rules{});
  // Restart downtime extends the allowance.
  HistoryBuilder restarted;
  restarted.Enqueue("a", 0)
      .Lease(10, 11, 1000, {{"a", 1}})
      .Crash(100, 101)
      .Start(101)
      .Ready(2500, 0)
      .LoadStop(2600)
      .Lease(3000, 3001, 1000, {{"a", 2}});
  restarted.Use("ack", 3010, 3011, {"a", 2}, "OK").DrainEnd(3100);
  EXPECT_EQ(restarted.Rules(), Rules{});
}

// A message a stream still held when it ended comes back within a visibility timeout of the
// end (released at once when spoold lived through it, at the stored deadline when not).
TEST(CheckerTest, L1StreamDeliveryComesBackAfterItsStreamEnds) {
  HistoryBuilder late;
  late.Enqueue("a", 0).Pushed(1, 5, 10, 1000, 60'000, {{"a", 1}});
  late.StreamEnd(1, 4000, 4001).LoadStop(4100).Lease(7000, 7001, 1000, {{"a", 2}});
  late.Use("ack", 7010, 7011, {"a", 2}, "OK").DrainEnd(7100);
  EXPECT_EQ(late.Rules(), Rules{"L1"}) << "due by 4001 + 1000 + 1000";
  HistoryBuilder in_time;
  in_time.Enqueue("a", 0).Pushed(1, 5, 10, 1000, 60'000, {{"a", 1}});
  in_time.StreamEnd(1, 4000, 4001).LoadStop(4100).Lease(5500, 5501, 1000, {{"a", 2}});
  in_time.Use("ack", 5510, 5511, {"a", 2}, "OK").DrainEnd(5600);
  EXPECT_EQ(in_time.Rules(), Rules{}) << "renewal held it until the stream ended";
}

// A Lease whose reply was lost in a crash can take the message as its lease ends; the message
// is then hidden for that Lease's visibility timeout, and the next delivery seen skips a count.
TEST(CheckerTest, L1AllowsForALeaseWhoseReplyWasLost) {
  auto history = [](int64_t lost_vt_ms, uint32_t next_count) {
    HistoryBuilder h;
    h.Enqueue("a", 0)
        .Lease(10, 11, 1000, {{"a", 1}})
        .UnknownLease(900, 1012, lost_vt_ms)  // waiting when the lease ended; then a crash
        .Crash(1011, 1012)
        .Start(1012)
        .Ready(1100, 0)
        .LoadStop(1200)
        .Lease(2900, 2950, 1000, {{"a", next_count}});
    h.Use("ack", 2960, 2961, {"a", next_count}, "OK").DrainEnd(3000);
    return h.Rules();
  };
  EXPECT_EQ(history(2000, 3), Rules{});  // hidden until 3012 at the latest: in time
  // Too late even for the lost lease.
  EXPECT_EQ(history(500, 3), Rules{"L1"});
  // No count was skipped: nothing hid it, so 2950 is late (due 1100 + 1 s).
  EXPECT_EQ(history(2000, 2), Rules{"L1"});
}

TEST(CheckerTest, L2FirstLeaseAfterRestart) {
  HistoryBuilder slow;
  slow.Enqueue("a", 0).Crash(5, 6).Start(6).Ready(1000, 1).Lease(2500, 2501, 1000, {{"a", 1}});
  slow.Use("ack", 2510, 2511, {"a", 1}, "OK").Crash(5000, 5001);
  EXPECT_EQ(slow.Rules(), Rules{"L2"});
  HistoryBuilder quick;
  quick.Enqueue("a", 0).Crash(5, 6).Start(6).Ready(1000, 1).Lease(1100, 1101, 1000, {{"a", 1}});
  quick.Use("ack", 1110, 1111, {"a", 1}, "OK").Crash(5000, 5001);
  EXPECT_EQ(quick.Rules(), Rules{});
}

TEST(CheckerTest, ReportNamesRulesAndFigures) {
  HistoryBuilder h;
  h.Enqueue("a", 0).Lease(10, 11, 1000, {{"a", 1}}).Lease(500, 501, 1000, {{"a", 2}});
  Report r = Check(h.events(), CheckOptions());
  std::string text = r.Format();
  EXPECT_NE(text.find("FAIL, 1 violations: S4=1"), std::string::npos) << text;
  EXPECT_NE(text.find("enqueued: 1 ok"), std::string::npos) << text;
  EXPECT_NE(text.find("redeliveries by cause"), std::string::npos) << text;
}

TEST(HistoryFileTest, RoundTripsAndNamesTheBadLine) {
  testing::TempDir dir;
  std::string path = dir.path() + "/h.jsonl";
  HistoryBuilder clean = Clean();
  {
    std::ofstream out(path);
    for (const Event& e : clean.events()) out << ToJsonLine(e) << "\n";
  }
  std::vector<Event> back;
  std::string error;
  ASSERT_TRUE(ReadHistory(path, &back, &error)) << error;
  EXPECT_EQ(back.size(), clean.events().size());
  EXPECT_EQ(back[2].deliveries(0).uid(), "a");
  {
    std::ofstream out(path, std::ios::app);
    out << "{\"type\": 3\n";
  }
  back.clear();
  EXPECT_FALSE(ReadHistory(path, &back, &error));
  EXPECT_NE(error.find("h.jsonl:5"), std::string::npos) << error;
}

TEST(PayloadTest, RoundTripsAndCatchesDamage) {
  std::string p = MakePayload("p1-42", 100, 7);
  EXPECT_EQ(ParsePayload(p).value_or(""), "p1-42");
  EXPECT_EQ(Crc32("123456789"), 0xCBF43926u);  // the standard check value
  for (size_t i = 0; i < p.size(); ++i) {
    std::string bad = p;
    bad[i] ^= 0x01;
    EXPECT_NE(ParsePayload(bad).value_or(""), "p1-42") << "flip at " << i;
  }
  EXPECT_FALSE(ParsePayload("").has_value());
  EXPECT_FALSE(ParsePayload("no separators").has_value());
}

}  // namespace
}  // namespace spool::torture
