// The engine's only source of time. Persisted deadlines (lease deadlines, delays, retention)
// are wall-clock milliseconds so they survive restarts; in-process waiting uses the steady
// clock. Tests inject a ManualClock and move time by hand instead of sleeping.
#ifndef SPOOL_ENGINE_CLOCK_H_
#define SPOOL_ENGINE_CLOCK_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <string>

namespace spool::engine {

class Clock {
 public:
  virtual ~Clock() = default;
  // Milliseconds since the Unix epoch. May jump when the system clock is set.
  virtual int64_t NowMillis() = 0;
  // Microseconds on a clock that never goes backwards; only differences mean anything.
  virtual int64_t SteadyMicros() = 0;
  // Names the span over which SteadyMicros readings of different processes compare (for the
  // system clock: this boot of the machine); empty when they never do.
  virtual std::string SteadyEpoch() { return ""; }
};

// The process's real clocks (CLOCK_REALTIME and CLOCK_MONOTONIC).
std::shared_ptr<Clock> SystemClock();

// A clock that moves only when told to. Both readings advance together. Thread-safe.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(int64_t start_millis = 1'700'000'000'000) : wall_ms_(start_millis) {}
  int64_t NowMillis() override { return wall_ms_.load(); }
  int64_t SteadyMicros() override { return steady_us_.load(); }
  std::string SteadyEpoch() override { return "manual"; }
  void AdvanceMillis(int64_t ms) {
    wall_ms_ += ms;
    steady_us_ += ms * 1000;
  }
  // Moves only the wall clock, as an operator setting the system time would.
  void JumpWallMillis(int64_t ms) { wall_ms_ += ms; }

 private:
  std::atomic<int64_t> wall_ms_;
  std::atomic<int64_t> steady_us_{1'000'000};
};

}  // namespace spool::engine

#endif  // SPOOL_ENGINE_CLOCK_H_
