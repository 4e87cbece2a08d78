// spoold's Prometheus metrics (README "Observability"). Two kinds:
//  - recorded as things happen, in prometheus-cpp families: RPCs by method and status code (a
//    gRPC server interceptor), and commit groups (Engine Options::on_commit_group);
//  - read at scrape time from their owners: per-queue depth and counters from the engine's
//    stats (the same figures as GetQueue, stored counters that survive restarts), waiters and
//    storage sizes from Engine::Runtime, and the process's own figures from /proc.
// Scrape() writes the per-queue families in the text format (0.0.4) itself and the rest with
// prometheus-cpp's TextSerializer; the HTTP layer serves it. Thread-safe.
#ifndef SPOOL_SERVER_METRICS_H_
#define SPOOL_SERVER_METRICS_H_

#include <grpcpp/support/server_interceptor.h>
#include <prometheus/counter.h>
#include <prometheus/histogram.h>
#include <prometheus/registry.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "absl/container/flat_hash_map.h"
#include "engine/engine.h"

namespace spool::server {

class Metrics {
 public:
  // version and durability become spool_build_info's labels. max_queues: queues with their
  // own series; the rest are summed under queue="_other". Range 1 .. 100,000.
  Metrics(std::string version, std::string durability, int64_t max_queues);
  Metrics(const Metrics&) = delete;
  Metrics& operator=(const Metrics&) = delete;

  // For Options::on_commit_group.
  void ObserveCommitGroup(size_t operations, int64_t write_micros);

  // An interceptor factory for grpc::ServerBuilder that records every call's status code and
  // duration. REQUIRES: this Metrics outlives the gRPC server.
  std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface> InterceptorFactory();

  // The whole exposition. Holds the engine lock only per page of a few dozen queues.
  std::string Scrape(engine::Engine& engine);

  // One gRPC method's series, created on first use. Public for the interceptor.
  struct Method {
    std::string name;
    prometheus::Histogram* duration = nullptr;
    // Client-streaming methods only: requests read on their streams (a Publish request carries
    // up to 1000 messages, so this against messages shows how well clients batch).
    prometheus::Counter* received = nullptr;
    std::array<std::atomic<prometheus::Counter*>, 17> by_code{};
  };
  Method* FindMethod(const char* path);
  void CountCall(Method* m, int code, double seconds);

 private:
  const std::string version_, durability_;
  const int64_t max_queues_;
  std::shared_ptr<prometheus::Registry> registry_ = std::make_shared<prometheus::Registry>();
  prometheus::Family<prometheus::Counter>& rpc_requests_;
  prometheus::Family<prometheus::Histogram>& rpc_duration_;
  prometheus::Family<prometheus::Counter>& stream_requests_;
  prometheus::Counter& commit_groups_;
  prometheus::Histogram& commit_group_size_;
  prometheus::Histogram& commit_fsync_;

  // Keyed by the method's path ("/spool.v1.QueueService/Enqueue"): every method of the
  // services spoold serves, filled at construction and read without a lock after.
  absl::flat_hash_map<std::string, std::unique_ptr<Method>> known_;
  std::mutex mu_;  // creating series; the fast path reads the atomics above
  // Any other path (gRPC routes only registered methods, so this stays small).
  absl::flat_hash_map<std::string, std::unique_ptr<Method>> others_;
};

}  // namespace spool::server

#endif  // SPOOL_SERVER_METRICS_H_
