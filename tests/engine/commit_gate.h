// Holds a commit pipeline's commit thread before its next write, so that what a test submits
// meanwhile forms the group after it. Give Hook() to the pipeline as its at_point (directly,
// or as Options::test.at_point for an engine).
#ifndef SPOOL_TESTS_ENGINE_COMMIT_GATE_H_
#define SPOOL_TESTS_ENGINE_COMMIT_GATE_H_

#include <functional>
#include <string_view>

#include "absl/base/thread_annotations.h"
#include "absl/synchronization/mutex.h"

namespace spool::engine {

class CommitGate {
 public:
  // The gate must outlive whatever calls the hook.
  std::function<void(std::string_view)> Hook() {
    return [this](std::string_view point) {
      if (point != "before-write") return;
      absl::MutexLock lock(&mu_);
      ++writes_started_;
      mu_.Await(absl::Condition(this, &CommitGate::OpenLocked));
    };
  }
  // Closes the gate, runs submit, and returns once the write submit caused is held at it.
  void HoldWriteOf(const std::function<void()>& submit) {
    int before;
    {
      absl::MutexLock lock(&mu_);
      held_ = true;
      before = writes_started_;
    }
    submit();
    absl::MutexLock lock(&mu_);
    wait_for_ = before + 1;
    mu_.Await(absl::Condition(this, &CommitGate::HeldLocked));
  }
  void Release() {
    absl::MutexLock lock(&mu_);
    held_ = false;
  }

 private:
  bool OpenLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return !held_; }
  bool HeldLocked() const ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return writes_started_ >= wait_for_;
  }

  absl::Mutex mu_;
  bool held_ ABSL_GUARDED_BY(mu_) = false;
  int writes_started_ ABSL_GUARDED_BY(mu_) = 0;
  int wait_for_ ABSL_GUARDED_BY(mu_) = 0;
};

}  // namespace spool::engine

#endif  // SPOOL_TESTS_ENGINE_COMMIT_GATE_H_
