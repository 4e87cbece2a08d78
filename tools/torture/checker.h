// The torture checker: reads a history of calls, crashes and restarts (history.proto) and says
// whether Spool kept its promises. Rules (issue 5):
//   S1  every enqueue that returned OK is delivered at least once (from the queue or its
//       dead-letter queue) by the end of the final drain
//   S2  nothing is delivered that was never enqueued, and payloads are intact
//   S3  nothing whose enqueue definitely failed is ever delivered
//   S4  two leases of one message never overlap while the first is valid (slack allowed),
//       unless the first ended by ack or nack
//   S5  a message acked OK is never delivered again (nor nacked or extended OK afterwards)
//   S6  a receipt is never accepted after the message was leased again or nacked with it; an
//       Ack of a message already gone is OK by contract, so a stale Ack counts only when the
//       message was provably still there
//   S7  delivery_count strictly increases across deliveries and never exceeds max_deliveries
//   S8  a nacked message is not delivered before its nack delay
//   S9  dead-lettering happens exactly after the max_deliveries-th delivery ends unacked
//   L1  after the load stops, every message not acked and not dead-lettered is delivered again
//       within its lease deadline (or nack delay) plus restart downtime plus 1 s; if the next
//       delivery seen skips a count, a Lease whose reply was lost may have held it until that
//       call's end plus its visibility timeout, plus 1 s
//   L2  after each restart, the first lease on a queue with ready messages succeeds within 1 s
// Subscribe streams: a pushed delivery is a lease taken at the earliest when its stream opened
// and renewed by the server until the stream ends, spoold crashes or its max_lease_duration
// runs out (S4 holds it to that); once the stream ended it is visible again within one
// visibility timeout (L1). Pushes lost in flight are an unknown lease over the stream's life,
// and what a stream held at its end a nack (delay 0) of unknown outcome.
// A call whose outcome is unknown may or may not have happened; the checker allows both, but
// a call made entirely while spoold was down (between a crash and the next start) cannot have
// happened and counts as failed.
#ifndef SPOOL_TOOLS_TORTURE_CHECKER_H_
#define SPOOL_TOOLS_TORTURE_CHECKER_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "tools/torture/history.pb.h"

namespace spool::torture {

struct CheckOptions {
  std::string queue = "torture";          // the main queue
  int64_t slack_us = 20'000;              // S4, S8: clock granularity and scheduling
  int64_t liveness_grace_us = 1'000'000;  // L1, L2
};

struct Violation {
  std::string rule;  // "S1" .. "S9", "L1", "L2"
  std::string detail;
};

struct Report {
  std::vector<Violation> violations;
  // Figures.
  int64_t enqueued_ok = 0, enqueued_failed = 0, enqueued_unknown = 0;
  int64_t deliveries = 0, dead_letter_deliveries = 0, stream_deliveries = 0, crashes = 0;
  int64_t unknown_made_failed = 0;  // unknown calls made while spoold was down
  std::map<std::string, int64_t> redeliveries_by_cause;
  std::map<std::string, int64_t> redelivery_delay_ms;  // histogram bucket -> count
  int64_t max_restart_to_lease_us = 0;                 // L2's worst case

  bool ok() const { return violations.empty(); }
  // Counts per rule, then the first few violations of each, then the figures.
  std::string Format(size_t per_rule = 5) const;
};

// final_drain: the history ends with a drain (load_stop ... drain_end), so S1 and the second
// half of S9 can be judged; without it only the rules about what was seen are.
Report Check(const std::vector<Event>& history, const CheckOptions& options);

// Reads one JSON Event per line. Fails with a message naming the line.
bool ReadHistory(const std::string& path, std::vector<Event>* out, std::string* error);
std::string ToJsonLine(const Event& e);

}  // namespace spool::torture

#endif  // SPOOL_TOOLS_TORTURE_CHECKER_H_
