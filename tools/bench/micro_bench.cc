// Micro-benchmarks of the hot paths (Google Benchmark): key encoding, receipt signing and
// checking, and lease selection in the engine (in memory, async durability, so the figure is
// the engine's own work rather than the disk's).
#include <benchmark/benchmark.h>

#include <filesystem>

#include "engine/coding.h"
#include "engine/engine.h"
#include "engine/receipt.h"
#include "engine/sync.h"

namespace spool::engine {
namespace {

void BM_MessageKey(benchmark::State& state) {
  uint64_t seq = 1;
  for (auto _ : state) benchmark::DoNotOptimize(MessageKey(42, seq++));
}
BENCHMARK(BM_MessageKey);

void BM_ParseMessageKey(benchmark::State& state) {
  std::string key = MessageKey(42, 123456789);
  for (auto _ : state) benchmark::DoNotOptimize(ParseMessageKey(key));
}
BENCHMARK(BM_ParseMessageKey);

void BM_FormatMessageId(benchmark::State& state) {
  uint64_t seq = 1;
  for (auto _ : state) benchmark::DoNotOptimize(FormatMessageId(seq++));
}
BENCHMARK(BM_FormatMessageId);

void BM_ReceiptSign(benchmark::State& state) {
  ReceiptSigner signer(NewReceiptSecret());
  uint64_t seq = 1;
  for (auto _ : state) benchmark::DoNotOptimize(signer.Sign({7, seq++, 3}));
}
BENCHMARK(BM_ReceiptSign);

void BM_ReceiptVerify(benchmark::State& state) {
  ReceiptSigner signer(NewReceiptSecret());
  std::string receipt = signer.Sign({7, 99, 3});
  for (auto _ : state) benchmark::DoNotOptimize(signer.Verify(receipt));
}
BENCHMARK(BM_ReceiptVerify);

// An engine on a fresh scratch directory (async durability: the engine's work, not the disk's).
std::unique_ptr<Engine> OpenScratch(const std::string& dir) {
  std::filesystem::remove_all(dir);
  Options o;
  o.data_dir = dir;
  o.durability = Durability::kAsync;
  o.log = [](const std::string&) {};
  return std::move(*Engine::Open(o, SystemClock()));
}

// Lease one message and ack it, on a queue holding state.range(0) messages: the cost must not
// grow with depth.
void BM_LeaseAckAtDepth(benchmark::State& state) {
  std::string dir = std::filesystem::temp_directory_path() / "spool-microbench";
  std::unique_ptr<Engine> e = OpenScratch(dir);
  Engine& eng = *e;
  (void)CreateQueueSync(eng, "q", {});
  std::vector<EnqueueEntry> batch(1000, EnqueueEntry{std::string(64, 'x'), {}, {}, ""});
  for (int64_t n = 0; n < state.range(0); n += 1000) (void)EnqueueSync(eng, "q", batch);
  LeaseRequest req;
  req.queue = "q";
  req.visibility_timeout_ms = 60'000;
  for (auto _ : state) {
    auto m = LeaseSync(eng, req);
    (void)AckSync(eng, "q", {(*m)[0].receipt});
    state.PauseTiming();
    (void)EnqueueSync(eng, "q", {EnqueueEntry{std::string(64, 'x'), {}, {}, ""}});
    state.ResumeTiming();
  }
  e.reset();
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_LeaseAckAtDepth)
    ->Arg(1'000)
    ->Arg(100'000)
    ->Arg(1'000'000)
    ->Unit(benchmark::kMicrosecond);

// One page of ListQueues as /metrics reads it (32 queues, of 1,000): the time the engine lock
// is held per page, which is what an Enqueue can wait behind during a scrape.
void BM_ListQueuesPage(benchmark::State& state) {
  std::string dir = std::filesystem::temp_directory_path() / "spool-microbench-list";
  std::unique_ptr<Engine> e = OpenScratch(dir);
  Engine& eng = *e;
  for (int i = 0; i < 1000; ++i) {
    std::string name = "queue-" + std::to_string(i);
    (void)CreateQueueSync(eng, name, {});
    (void)EnqueueSync(eng, name, {EnqueueEntry{"x", {}, {}, ""}});
  }
  std::string token = "queue-500";
  for (auto _ : state) {
    benchmark::DoNotOptimize(eng.ListQueues("", static_cast<uint32_t>(state.range(0)), token));
  }
  e.reset();
  std::filesystem::remove_all(dir);
}
BENCHMARK(BM_ListQueuesPage)->Arg(32)->Arg(1000)->Unit(benchmark::kMicrosecond);

}  // namespace
}  // namespace spool::engine

BENCHMARK_MAIN();
