// spool.v1.QueueService over the engine. Each handler converts the request, calls the engine,
// and finishes the call from the engine's callback, so no gRPC thread waits on storage. A
// waiting Lease is one reactor (LeaseReactor in service.cc) that holds no thread.
#ifndef SPOOL_SERVER_SERVICE_H_
#define SPOOL_SERVER_SERVICE_H_

#include "engine/engine.h"
#include "server/auth.h"
#include "spool/v1/queue.grpc.pb.h"

namespace spool::server {

class QueueService final : public v1::QueueService::CallbackService {
 public:
  // REQUIRES: engine (and auth, when given) outlive the service. Without auth every caller may
  // do everything.
  explicit QueueService(engine::Engine* engine, const Authorizer* auth = nullptr)
      : engine_(engine), auth_(auth) {}

  grpc::ServerUnaryReactor* CreateQueue(grpc::CallbackServerContext* ctx,
                                        const v1::CreateQueueRequest* req,
                                        v1::Queue* resp) override;
  grpc::ServerUnaryReactor* GetQueue(grpc::CallbackServerContext* ctx,
                                     const v1::GetQueueRequest* req, v1::Queue* resp) override;
  grpc::ServerUnaryReactor* ListQueues(grpc::CallbackServerContext* ctx,
                                       const v1::ListQueuesRequest* req,
                                       v1::ListQueuesResponse* resp) override;
  grpc::ServerUnaryReactor* UpdateQueue(grpc::CallbackServerContext* ctx,
                                        const v1::UpdateQueueRequest* req,
                                        v1::Queue* resp) override;
  grpc::ServerUnaryReactor* DeleteQueue(grpc::CallbackServerContext* ctx,
                                        const v1::DeleteQueueRequest* req,
                                        v1::DeleteQueueResponse* resp) override;
  grpc::ServerUnaryReactor* PurgeQueue(grpc::CallbackServerContext* ctx,
                                       const v1::PurgeQueueRequest* req,
                                       v1::PurgeQueueResponse* resp) override;
  grpc::ServerUnaryReactor* Enqueue(grpc::CallbackServerContext* ctx, const v1::EnqueueRequest* req,
                                    v1::EnqueueResponse* resp) override;
  grpc::ServerUnaryReactor* Lease(grpc::CallbackServerContext* ctx, const v1::LeaseRequest* req,
                                  v1::LeaseResponse* resp) override;
  grpc::ServerUnaryReactor* Ack(grpc::CallbackServerContext* ctx, const v1::AckRequest* req,
                                v1::AckResponse* resp) override;
  grpc::ServerUnaryReactor* Nack(grpc::CallbackServerContext* ctx, const v1::NackRequest* req,
                                 v1::NackResponse* resp) override;
  grpc::ServerUnaryReactor* ExtendLease(grpc::CallbackServerContext* ctx,
                                        const v1::ExtendLeaseRequest* req,
                                        v1::ExtendLeaseResponse* resp) override;
  grpc::ServerUnaryReactor* Peek(grpc::CallbackServerContext* ctx, const v1::PeekRequest* req,
                                 v1::PeekResponse* resp) override;
  grpc::ServerUnaryReactor* MoveMessages(grpc::CallbackServerContext* ctx,
                                         const v1::MoveMessagesRequest* req,
                                         v1::MoveMessagesResponse* resp) override;
  grpc::ServerUnaryReactor* DeleteMessage(grpc::CallbackServerContext* ctx,
                                          const v1::DeleteMessageRequest* req,
                                          v1::DeleteMessageResponse* resp) override;

 private:
  // OK when the caller may go on: no tokens are configured, or its token sees every queue and
  // has `needed` (0: any permission, for reads). Sets *grant when tokens are configured.
  absl::Status Allow(grpc::CallbackServerContext* ctx, uint8_t needed,
                     std::initializer_list<std::string_view> queues,
                     const Authorizer::Grant** grant = nullptr);

  engine::Engine* const engine_;
  const Authorizer* const auth_;
};

}  // namespace spool::server

#endif  // SPOOL_SERVER_SERVICE_H_
