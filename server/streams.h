// The streaming RPCs of spool.v1.QueueService (README "Streams"). Each stream is one callback
// reactor that holds no thread. Every open stream is in a StreamRegistry, which bounds their
// number (--max-streams) and ends them all at shutdown.
#ifndef SPOOL_SERVER_STREAMS_H_
#define SPOOL_SERVER_STREAMS_H_

#include <grpcpp/support/server_callback.h>

#include <cstdint>
#include <functional>
#include <mutex>
#include <unordered_set>

#include "absl/status/status.h"
#include "engine/engine.h"
#include "spool/v1/queue.grpc.pb.h"

namespace spool::server {

// What a stream must do when the registry ends it: stop taking requests, answer what it has
// accepted, and finish with `status`. EndLocked runs under the registry's lock and may start
// no call; it returns true when the registry must call AfterEnd once the lock is released
// (to finish, or to start what ending takes). The stream cannot finish in between.
class RegisteredStream {
 public:
  virtual ~RegisteredStream() = default;
  virtual bool EndLocked(const grpc::Status& status) = 0;
  virtual void AfterEnd() = 0;
};

class StreamRegistry {
 public:
  explicit StreamRegistry(int64_t max_streams) : max_streams_(max_streams) {}

  // OK, or RESOURCE_EXHAUSTED past max_streams, or UNAVAILABLE once stopping.
  absl::Status Add(RegisteredStream* s);
  void Remove(RegisteredStream* s);
  // Refuses new streams and ends every open one with UNAVAILABLE.
  void StopAll();

 private:
  const int64_t max_streams_;
  std::mutex mu_;
  std::unordered_set<RegisteredStream*> open_;
  bool stopping_ = false;
};

// Checks that the caller may use a queue with a permission (QueueService::Allow).
using AllowFn = std::function<absl::Status(grpc::CallbackServerContext*, std::string_view queue)>;

// Publish: one reactor per stream. REQUIRES: engine and registry outlive it.
grpc::ServerBidiReactor<v1::PublishRequest, v1::PublishResponse>* NewPublishReactor(
    grpc::CallbackServerContext* ctx, engine::Engine* engine, StreamRegistry* registry,
    AllowFn allow);

// Subscribe: one reactor per stream. REQUIRES: engine and registry outlive it.
grpc::ServerBidiReactor<v1::SubscribeRequest, v1::SubscribeResponse>* NewSubscribeReactor(
    grpc::CallbackServerContext* ctx, engine::Engine* engine, StreamRegistry* registry,
    AllowFn allow);

}  // namespace spool::server

#endif  // SPOOL_SERVER_STREAMS_H_
