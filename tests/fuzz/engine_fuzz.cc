// The engine driven through a sequence of operations decoded from the input (enqueue, lease,
// ack/nack/extend with real or forged receipts, peek, purge, time passing, reopen), with the
// invariants checked after each: the stats add up to what Peek lists, nothing fails with a code
// the contract does not give it, and an acked message never comes back.
#include <fuzzer/FuzzedDataProvider.h>
#include <unistd.h>

#include <filesystem>
#include <map>
#include <set>
#include <string>

#include "engine/engine.h"
#include "engine/sync.h"

using namespace spool::engine;

namespace {

bool Allowed(const absl::Status& s) {
  switch (s.code()) {
    case absl::StatusCode::kOk:
    case absl::StatusCode::kInvalidArgument:
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kResourceExhausted:
    case absl::StatusCode::kAlreadyExists:
      return true;
    default:
      return false;
  }
}

void Check(bool cond) {
  if (!cond) __builtin_trap();
}

void CheckConsistent(Engine& e) {
  auto q = e.GetQueue("q");
  Check(q.ok());
  const QueueStats& s = q->stats;
  Check(s.ready + s.leased + s.delayed == s.total);
  uint64_t listed = 0;
  std::string after;
  for (;;) {
    auto page = e.Peek("q", 1000, after);
    Check(page.ok());
    listed += page->messages.size();
    if (page->next_start_after.empty()) break;
    after = page->next_start_after;
  }
  Check(listed == s.total);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  FuzzedDataProvider p(data, size);
  std::string dir = "/dev/shm/spool-fuzz-" + std::to_string(getpid());
  std::filesystem::remove_all(dir);
  auto clock = std::make_shared<ManualClock>();
  Options o;
  o.data_dir = dir;
  o.durability = Durability::kAsync;
  o.background_thread = false;
  o.log = [](const std::string&) {};
  auto opened = Engine::Open(o, clock);
  Check(opened.ok());
  std::unique_ptr<Engine> e = std::move(*opened);
  QueueConfig c;
  c.max_depth = p.ConsumeIntegralInRange<uint64_t>(0, 50);
  c.retention_ms = p.ConsumeBool() ? std::optional<int64_t>(kMinute) : std::nullopt;
  Check(CreateQueueSync(*e, "q", c).ok());
  std::vector<std::string> receipts;
  std::map<std::string, std::string> leased_id;  // receipt -> message id
  std::set<std::string> acked;
  constexpr int kMaxReopens = 4;
  int reopens = 0;
  for (int step = 0; step < 64 && p.remaining_bytes() > 0; ++step) {
    switch (p.ConsumeIntegralInRange<int>(0, 8)) {
      case 0: {
        std::vector<EnqueueEntry> entries(p.ConsumeIntegralInRange<size_t>(1, 5));
        for (auto& en : entries) {
          en.payload = p.ConsumeRandomLengthString(64);
          if (p.ConsumeBool()) en.delay_ms = p.ConsumeIntegralInRange<int64_t>(0, 5000);
          if (p.ConsumeBool()) en.dedup_id = p.ConsumeRandomLengthString(4);
        }
        Check(Allowed(EnqueueSync(*e, "q", entries).status()));
        break;
      }
      case 1: {
        LeaseRequest r;
        r.queue = "q";
        r.max_messages = p.ConsumeIntegralInRange<uint32_t>(0, 10);
        r.visibility_timeout_ms = p.ConsumeIntegralInRange<int64_t>(1000, 5000);
        auto leased = LeaseSync(*e, r);
        Check(Allowed(leased.status()));
        if (leased.ok()) {
          for (auto& m : *leased) {
            Check(!acked.contains(m.message_id));  // an acked message never comes back
            receipts.push_back(m.receipt);
            leased_id[m.receipt] = m.message_id;
          }
        }
        break;
      }
      case 2:
      case 3:
      case 4: {
        std::vector<std::string> rs;
        for (size_t n = p.ConsumeIntegralInRange<size_t>(1, 4); n > 0; --n) {
          if (!receipts.empty() && p.ConsumeBool()) {
            rs.push_back(receipts[p.ConsumeIntegralInRange<size_t>(0, receipts.size() - 1)]);
          } else {
            rs.push_back(p.ConsumeRandomLengthString(60));
          }
        }
        int kind = p.ConsumeIntegralInRange<int>(0, 2);
        absl::StatusOr<std::vector<ReceiptOutcome>> out =
            kind == 0 ? AckSync(*e, "q", rs)
            : kind == 1
                ? NackSync(*e, "q", rs, p.ConsumeIntegralInRange<int64_t>(0, 3000))
                : ExtendLeaseSync(*e, "q", rs, p.ConsumeIntegralInRange<int64_t>(1000, 9000));
        Check(Allowed(out.status()));
        if (kind == 0 && out.ok()) {
          for (size_t i = 0; i < rs.size(); ++i) {
            auto it = leased_id.find(rs[i]);
            if ((*out)[i].outcome == Outcome::kOk && it != leased_id.end())
              acked.insert(it->second);
          }
        }
        break;
      }
      case 5:
        clock->AdvanceMillis(p.ConsumeIntegralInRange<int64_t>(0, 70'000));
        e->Tick();
        break;
      case 6:
        if (p.ConsumeIntegralInRange<int>(0, 9) == 0) Check(PurgeQueueSync(*e, "q").ok());
        break;
      case 7: {
        // A reopen costs RocksDB's open and close (about 150 ms under the sanitizers): an input
        // that is mostly reopens would take seconds and be reported as a slow unit, while
        // teaching nothing a few reopens do not.
        if (++reopens > kMaxReopens) break;
        e.reset();
        auto again = Engine::Open(o, clock);
        Check(again.ok());
        e = std::move(*again);
        break;
      }
      case 8:
        Check(Allowed(e->Peek("q", p.ConsumeIntegralInRange<uint32_t>(0, 1200),
                              p.ConsumeRandomLengthString(17))
                          .status()));
        break;
    }
    CheckConsistent(*e);
  }
  e.reset();
  std::filesystem::remove_all(dir);
  return 0;
}
