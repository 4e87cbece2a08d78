// Blocking forms of the engine's asynchronous calls, for tools, tests and benchmarks. Never
// call these from an engine callback (it would wait for itself).
#ifndef SPOOL_ENGINE_SYNC_H_
#define SPOOL_ENGINE_SYNC_H_

#include <future>
#include <utility>

#include "engine/engine.h"

namespace spool::engine {

// Runs call(callback) and waits for the callback's value.
template <typename T, typename Call>
absl::StatusOr<T> Await(Call&& call) {
  auto promise = std::make_shared<std::promise<absl::StatusOr<T>>>();
  auto future = promise->get_future();
  std::forward<Call>(call)(
      [promise](absl::StatusOr<T> result) { promise->set_value(std::move(result)); });
  return future.get();
}

inline absl::StatusOr<QueueInfo> CreateQueueSync(Engine& e, std::string name, QueueConfig config) {
  return Await<QueueInfo>([&](auto cb) { e.CreateQueue(std::move(name), std::move(config), cb); });
}
inline absl::StatusOr<QueueInfo> UpdateQueueSync(Engine& e, std::string name, QueueConfig config) {
  return Await<QueueInfo>([&](auto cb) { e.UpdateQueue(std::move(name), std::move(config), cb); });
}
inline absl::Status DeleteQueueSync(Engine& e, std::string name) {
  return Await<bool>([&](auto cb) { e.DeleteQueue(std::move(name), cb); }).status();
}
inline absl::StatusOr<uint64_t> PurgeQueueSync(Engine& e, std::string name) {
  return Await<uint64_t>([&](auto cb) { e.PurgeQueue(std::move(name), cb); });
}
inline absl::StatusOr<std::vector<EnqueueResult>> EnqueueSync(Engine& e, std::string queue,
                                                              std::vector<EnqueueEntry> entries) {
  return Await<std::vector<EnqueueResult>>(
      [&](auto cb) { e.Enqueue(std::move(queue), std::move(entries), cb); });
}
inline absl::StatusOr<std::vector<LeasedMessage>> LeaseSync(Engine& e, LeaseRequest request) {
  return Await<std::vector<LeasedMessage>>([&](auto cb) { e.Lease(std::move(request), cb); });
}
inline absl::StatusOr<std::vector<ReceiptOutcome>> AckSync(Engine& e, std::string queue,
                                                           std::vector<std::string> receipts) {
  return Await<std::vector<ReceiptOutcome>>(
      [&](auto cb) { e.Ack(std::move(queue), std::move(receipts), cb); });
}
inline absl::StatusOr<std::vector<ReceiptOutcome>> NackSync(Engine& e, std::string queue,
                                                            std::vector<std::string> receipts,
                                                            int64_t delay_ms) {
  return Await<std::vector<ReceiptOutcome>>(
      [&](auto cb) { e.Nack(std::move(queue), std::move(receipts), delay_ms, cb); });
}
inline absl::StatusOr<std::vector<ReceiptOutcome>> ExtendLeaseSync(
    Engine& e, std::string queue, std::vector<std::string> receipts,
    std::optional<int64_t> visibility_timeout_ms) {
  return Await<std::vector<ReceiptOutcome>>([&](auto cb) {
    e.ExtendLease(std::move(queue), std::move(receipts), visibility_timeout_ms, cb);
  });
}

inline absl::StatusOr<std::vector<MovedMessage>> MoveMessagesSync(Engine& e, std::string source,
                                                                  std::string destination,
                                                                  uint32_t max_messages) {
  return Await<std::vector<MovedMessage>>([&](auto cb) {
    e.MoveMessages(std::move(source), std::move(destination), max_messages, cb);
  });
}
inline absl::Status DeleteMessageSync(Engine& e, std::string queue, std::string message_id) {
  return Await<bool>([&](auto cb) { e.DeleteMessage(std::move(queue), std::move(message_id), cb); })
      .status();
}
inline absl::StatusOr<SettleResult> SettleSync(Engine& e,
                                               const std::shared_ptr<Subscription>& subscription,
                                               std::vector<std::string> acks,
                                               std::vector<std::string> nacks,
                                               int64_t nack_delay_ms = 0) {
  return Await<SettleResult>([&](auto cb) {
    e.Settle(subscription, std::move(acks), std::move(nacks), nack_delay_ms, cb);
  });
}
inline absl::StatusOr<uint64_t> UnsubscribeSync(Engine& e,
                                                const std::shared_ptr<Subscription>& subscription) {
  return Await<uint64_t>([&](auto cb) { e.Unsubscribe(subscription, cb); });
}

}  // namespace spool::engine

#endif  // SPOOL_ENGINE_SYNC_H_
