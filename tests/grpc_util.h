// Small helpers for tests that talk spool.v1 over real gRPC: a stub on a loopback port, and
// request builders that keep the tests short.
#ifndef SPOOL_TESTS_GRPC_UTIL_H_
#define SPOOL_TESTS_GRPC_UTIL_H_

#include <grpcpp/grpcpp.h>

#include <chrono>
#include <memory>
#include <string>
#include <vector>

#include "spool/v1/queue.grpc.pb.h"

namespace spool::testing {

inline std::unique_ptr<v1::QueueService::Stub> StubFor(int port) {
  auto channel =
      grpc::CreateChannel("127.0.0.1:" + std::to_string(port), grpc::InsecureChannelCredentials());
  return v1::QueueService::NewStub(channel);
}

inline google::protobuf::Duration Seconds(int64_t s, int32_t nanos = 0) {
  google::protobuf::Duration d;
  d.set_seconds(s);
  d.set_nanos(nanos);
  return d;
}

inline void SetDeadline(grpc::ClientContext* ctx, std::chrono::milliseconds in) {
  ctx->set_deadline(std::chrono::system_clock::now() + in);
}

inline grpc::Status CreateQueue(v1::QueueService::Stub& stub, const std::string& name,
                                const v1::QueueConfig& config = {}) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, std::chrono::seconds(10));
  v1::CreateQueueRequest req;
  req.set_name(name);
  *req.mutable_config() = config;
  v1::Queue resp;
  return stub.CreateQueue(&ctx, req, &resp);
}

// Enqueues the payloads in one request; returns their ids (empty on error, with *status set).
inline std::vector<std::string> Enqueue(v1::QueueService::Stub& stub, const std::string& queue,
                                        const std::vector<std::string>& payloads,
                                        grpc::Status* status = nullptr) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, std::chrono::seconds(10));
  v1::EnqueueRequest req;
  req.set_queue(queue);
  for (const auto& p : payloads) req.add_messages()->set_payload(p);
  v1::EnqueueResponse resp;
  grpc::Status s = stub.Enqueue(&ctx, req, &resp);
  if (status) *status = s;
  std::vector<std::string> ids;
  if (s.ok()) {
    for (const auto& r : resp.results()) ids.push_back(r.message_id());
  }
  return ids;
}

inline v1::LeaseResponse Lease(v1::QueueService::Stub& stub, const std::string& queue, uint32_t max,
                               int64_t visibility_s = 0, int64_t wait_s = 0,
                               grpc::Status* status = nullptr) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, std::chrono::seconds(wait_s + 10));
  v1::LeaseRequest req;
  req.set_queue(queue);
  req.set_max_messages(max);
  if (visibility_s > 0) *req.mutable_visibility_timeout() = Seconds(visibility_s);
  if (wait_s > 0) *req.mutable_wait_time() = Seconds(wait_s);
  v1::LeaseResponse resp;
  grpc::Status s = stub.Lease(&ctx, req, &resp);
  if (status) *status = s;
  return resp;
}

inline v1::AckResponse Ack(v1::QueueService::Stub& stub, const std::string& queue,
                           const std::vector<std::string>& receipts,
                           grpc::Status* status = nullptr) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, std::chrono::seconds(10));
  v1::AckRequest req;
  req.set_queue(queue);
  for (const auto& r : receipts) req.add_receipts(r);
  v1::AckResponse resp;
  grpc::Status s = stub.Ack(&ctx, req, &resp);
  if (status) *status = s;
  return resp;
}

inline v1::Queue GetQueue(v1::QueueService::Stub& stub, const std::string& name,
                          grpc::Status* status = nullptr) {
  grpc::ClientContext ctx;
  SetDeadline(&ctx, std::chrono::seconds(10));
  v1::GetQueueRequest req;
  req.set_name(name);
  v1::Queue resp;
  grpc::Status s = stub.GetQueue(&ctx, req, &resp);
  if (status) *status = s;
  return resp;
}

// Every message in the queue, via Peek pages.
inline std::vector<v1::PeekedMessage> PeekAll(v1::QueueService::Stub& stub,
                                              const std::string& queue) {
  std::vector<v1::PeekedMessage> out;
  std::string after;
  for (;;) {
    grpc::ClientContext ctx;
    SetDeadline(&ctx, std::chrono::seconds(10));
    v1::PeekRequest req;
    req.set_queue(queue);
    req.set_max_messages(1000);
    req.set_start_after(after);
    v1::PeekResponse resp;
    if (!stub.Peek(&ctx, req, &resp).ok()) return out;
    for (auto& m : *resp.mutable_messages()) out.push_back(std::move(m));
    if (resp.next_start_after().empty()) return out;
    after = resp.next_start_after();
  }
}

}  // namespace spool::testing

#endif  // SPOOL_TESTS_GRPC_UTIL_H_
