// spool.v1.QueueService over the engine. Each handler converts the request, calls the engine,
// and finishes the call from the engine's callback, so no gRPC thread waits on storage. A
// waiting Lease is one reactor (LeaseReactor in service.cc) that holds no thread.
#ifndef SPOOL_SERVER_SERVICE_H_
#define SPOOL_SERVER_SERVICE_H_

#include <google/protobuf/arena.h>
#include <grpcpp/support/message_allocator.h>

#include "engine/engine.h"
#include "server/auth.h"
#include "server/streams.h"
#include "spool/v1/queue.grpc.pb.h"

namespace spool::server {

// Puts a call's request and response on one protobuf arena that dies with the call, so the
// hundred messages of a batch and their fields are not a few hundred separate allocations.
// (String contents still live on the heap: protobuf 3.21 arenas hold only the string objects;
// payloads are moved in and out rather than copied.)
template <typename Request, typename Response>
class ArenaAllocator final : public grpc::MessageAllocator<Request, Response> {
 public:
  grpc::MessageHolder<Request, Response>* AllocateMessages() override { return new Holder(); }

 private:
  class Holder final : public grpc::MessageHolder<Request, Response> {
   public:
    Holder() : arena_(Options(initial_block_)) {
      this->set_request(google::protobuf::Arena::CreateMessage<Request>(&arena_));
      this->set_response(google::protobuf::Arena::CreateMessage<Response>(&arena_));
    }
    void Release() override { delete this; }

   private:
    static google::protobuf::ArenaOptions Options(char* initial_block) {
      google::protobuf::ArenaOptions o;
      // A one-message call fits in the block that comes inside the holder (no allocation
      // beyond the holder's); a batch grows the arena in blocks of up to 64 KiB.
      o.initial_block = initial_block;
      o.initial_block_size = sizeof(initial_block_);
      o.max_block_size = 64 * 1024;
      return o;
    }
    alignas(8) char initial_block_[1024];
    google::protobuf::Arena arena_;
  };
};

class QueueService final : public v1::QueueService::CallbackService {
 public:
  // REQUIRES: engine (and auth, when given) outlive the service. Without auth every caller may
  // do everything.
  // max_streams: open Publish and Subscribe streams at most (--max-streams).
  explicit QueueService(engine::Engine* engine, const Authorizer* auth = nullptr,
                        int64_t max_streams = 10'000)
      : engine_(engine), auth_(auth), streams_(max_streams) {
    SetMessageAllocatorFor_Enqueue(&enqueue_allocator_);
    SetMessageAllocatorFor_Lease(&lease_allocator_);
    SetMessageAllocatorFor_Ack(&ack_allocator_);
  }

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
  grpc::ServerBidiReactor<v1::PublishRequest, v1::PublishResponse>* Publish(
      grpc::CallbackServerContext* ctx) override;
  grpc::ServerBidiReactor<v1::SubscribeRequest, v1::SubscribeResponse>* Subscribe(
      grpc::CallbackServerContext* ctx) override;

  // Refuses new streams and ends every open one with UNAVAILABLE once it has answered what it
  // accepted. Call after the engine is closed (so every accepted request has its answer) and
  // before the gRPC server shuts down.
  void StopStreams() { streams_.StopAll(); }

 private:
  // OK when the caller may go on: no tokens are configured, or its token sees every queue and
  // has `needed` (0: any permission, for reads). Sets *grant when tokens are configured.
  absl::Status Allow(grpc::CallbackServerContext* ctx, uint8_t needed,
                     std::initializer_list<std::string_view> queues,
                     const Authorizer::Grant** grant = nullptr);

  engine::Engine* const engine_;
  const Authorizer* const auth_;
  // The hot calls, whose requests or responses carry up to a batch of messages.
  ArenaAllocator<v1::EnqueueRequest, v1::EnqueueResponse> enqueue_allocator_;
  ArenaAllocator<v1::LeaseRequest, v1::LeaseResponse> lease_allocator_;
  ArenaAllocator<v1::AckRequest, v1::AckResponse> ack_allocator_;
  StreamRegistry streams_;
};

}  // namespace spool::server

#endif  // SPOOL_SERVER_SERVICE_H_
