#include "server/service.h"

#include <chrono>
#include <mutex>

#include "engine/strings.h"
#include "server/convert.h"

namespace spool::server {
namespace {

using grpc::CallbackServerContext;
using grpc::ServerUnaryReactor;

// A Lease that waits must return before the client's deadline, with what it has, rather than
// let the client see DEADLINE_EXCEEDED (and lose messages leased for it). This is the margin.
constexpr int64_t kDeadlineMarginMs = 200;

ServerUnaryReactor* Fail(CallbackServerContext* ctx, const absl::Status& s) {
  ServerUnaryReactor* r = ctx->DefaultReactor();
  r->Finish(ToGrpc(s));
  return r;
}

// Milliseconds left before the client's deadline, or nullopt when it set none.
std::optional<int64_t> MillisToDeadline(CallbackServerContext* ctx) {
  auto deadline = ctx->deadline();
  if (deadline == std::chrono::system_clock::time_point::max()) return std::nullopt;
  return std::chrono::duration_cast<std::chrono::milliseconds>(deadline -
                                                               std::chrono::system_clock::now())
      .count();
}

// One Lease call from start to finish. The engine calls back exactly once (messages, empty,
// error, or CANCELLED after OnCancel), and that callback finishes the call; OnDone deletes.
// If the client went away after messages were leased for it, they are released (nacked with
// no delay) so they do not stay invisible for the whole visibility timeout.
class LeaseReactor final : public ServerUnaryReactor {
 public:
  LeaseReactor(engine::Engine* engine, v1::LeaseResponse* resp) : engine_(engine), resp_(resp) {}

  void Start(engine::LeaseRequest request) {
    queue_ = request.queue;
    std::shared_ptr<engine::LeaseWait> wait =
        engine_->Lease(std::move(request), [this](auto result) { OnLeased(std::move(result)); });
    std::lock_guard<std::mutex> lock(mu_);
    wait_ = std::move(wait);
    if (cancelled_ && wait_) engine_->CancelLease(wait_);
  }

  void OnCancel() override {
    std::shared_ptr<engine::LeaseWait> wait;
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled_ = true;
      wait = wait_;
    }
    if (wait) engine_->CancelLease(wait);
  }

  void OnDone() override { delete this; }

 private:
  void OnLeased(absl::StatusOr<std::vector<engine::LeasedMessage>> result) {
    bool cancelled;
    {
      std::lock_guard<std::mutex> lock(mu_);
      cancelled = cancelled_;
    }
    if (!result.ok()) return Finish(ToGrpc(result.status()));
    if (cancelled) {
      if (!result->empty()) {
        std::vector<std::string> receipts;
        for (auto& m : *result) receipts.push_back(std::move(m.receipt));
        engine_->Nack(queue_, std::move(receipts), 0, [](auto) {});
      }
      return Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the Lease call was cancelled"));
    }
    for (auto& m : *result) ToProto(std::move(m), resp_->add_messages());
    Finish(grpc::Status::OK);
  }

  engine::Engine* const engine_;
  v1::LeaseResponse* const resp_;
  std::string queue_;
  std::mutex mu_;
  bool cancelled_ = false;
  std::shared_ptr<engine::LeaseWait> wait_;
};

// The receipts of an Ack, Nack or ExtendLease, and their outcomes into the response.
template <typename Response>
engine::Callback<std::vector<engine::ReceiptOutcome>> FinishOutcomes(
    ServerUnaryReactor* reactor, const google::protobuf::RepeatedPtrField<std::string>& receipts,
    Response* resp) {
  return [reactor, &receipts, resp](auto result) {
    if (!result.ok()) return reactor->Finish(ToGrpc(result.status()));
    for (size_t i = 0; i < result->size(); ++i) {
      ToProto(receipts[static_cast<int>(i)], (*result)[i], resp->add_results());
    }
    reactor->Finish(grpc::Status::OK);
  };
}

std::vector<std::string> Receipts(const google::protobuf::RepeatedPtrField<std::string>& in) {
  return {in.begin(), in.end()};
}

}  // namespace

absl::Status QueueService::Allow(CallbackServerContext* ctx, uint8_t needed,
                                 std::initializer_list<std::string_view> queues,
                                 const Authorizer::Grant** grant) {
  if (auth_ == nullptr) return absl::OkStatus();
  auto g = auth_->Identify(ctx);
  if (!g.ok()) return g.status();
  if (grant) *grant = *g;
  for (std::string_view q : queues) {
    if (q.empty()) continue;
    if (needed == 0) {
      if (!(*g)->Sees(q)) {
        return absl::PermissionDeniedError(engine::Cat("this token may not use queue \"", q, "\""));
      }
    } else if (auto s = Authorizer::Check(**g, static_cast<Permission>(needed), q); !s.ok()) {
      return s;
    }
  }
  return absl::OkStatus();
}

ServerUnaryReactor* QueueService::CreateQueue(CallbackServerContext* ctx,
                                              const v1::CreateQueueRequest* req, v1::Queue* resp) {
  if (auto s = Allow(ctx, kAdmin, {req->name(), req->config().dead_letter_queue()}); !s.ok()) {
    return Fail(ctx, s);
  }
  auto config = FromProto(req->config());
  if (!config.ok()) return Fail(ctx, config.status());
  ServerUnaryReactor* reactor = ctx->DefaultReactor();
  engine_->CreateQueue(req->name(), *config, [reactor, resp](auto result) {
    if (result.ok()) ToProto(*result, resp);
    reactor->Finish(ToGrpc(result.status()));
  });
  return reactor;
}

ServerUnaryReactor* QueueService::GetQueue(CallbackServerContext* ctx,
                                           const v1::GetQueueRequest* req, v1::Queue* resp) {
  if (auto s = Allow(ctx, 0, {req->name()}); !s.ok()) return Fail(ctx, s);
  auto info = engine_->GetQueue(req->name());
  if (info.ok()) ToProto(*info, resp);
  return Fail(ctx, info.status());
}

ServerUnaryReactor* QueueService::ListQueues(CallbackServerContext* ctx,
                                             const v1::ListQueuesRequest* req,
                                             v1::ListQueuesResponse* resp) {
  const Authorizer::Grant* grant = nullptr;
  if (auto s = Allow(ctx, 0, {}, &grant); !s.ok()) return Fail(ctx, s);
  auto page = engine_->ListQueues(req->prefix(), req->page_size(), req->page_token());
  if (page.ok()) {
    for (const auto& q : page->queues) {
      if (grant == nullptr || grant->Sees(q.name)) ToProto(q, resp->add_queues());
    }
    resp->set_next_page_token(page->next_page_token);
  }
  return Fail(ctx, page.status());
}

ServerUnaryReactor* QueueService::UpdateQueue(CallbackServerContext* ctx,
                                              const v1::UpdateQueueRequest* req, v1::Queue* resp) {
  if (auto s = Allow(ctx, kAdmin, {req->name(), req->config().dead_letter_queue()}); !s.ok()) {
    return Fail(ctx, s);
  }
  auto config = FromProto(req->config());
  if (!config.ok()) return Fail(ctx, config.status());
  ServerUnaryReactor* reactor = ctx->DefaultReactor();
  engine_->UpdateQueue(req->name(), *config, [reactor, resp](auto result) {
    if (result.ok()) ToProto(*result, resp);
    reactor->Finish(ToGrpc(result.status()));
  });
  return reactor;
}

ServerUnaryReactor* QueueService::DeleteQueue(CallbackServerContext* ctx,
                                              const v1::DeleteQueueRequest* req,
                                              v1::DeleteQueueResponse*) {
  if (auto s = Allow(ctx, kAdmin, {req->name()}); !s.ok()) return Fail(ctx, s);
  ServerUnaryReactor* reactor = ctx->DefaultReactor();
  engine_->DeleteQueue(req->name(),
                       [reactor](auto result) { reactor->Finish(ToGrpc(result.status())); });
  return reactor;
}

ServerUnaryReactor* QueueService::PurgeQueue(CallbackServerContext* ctx,
                                             const v1::PurgeQueueRequest* req,
                                             v1::PurgeQueueResponse* resp) {
  if (auto s = Allow(ctx, kAdmin, {req->name()}); !s.ok()) return Fail(ctx, s);
  ServerUnaryReactor* reactor = ctx->DefaultReactor();
  engine_->PurgeQueue(req->name(), [reactor, resp](auto result) {
    if (result.ok()) resp->set_purged(*result);
    reactor->Finish(ToGrpc(result.status()));
  });
  return reactor;
}

ServerUnaryReactor* QueueService::Enqueue(CallbackServerContext* ctx, const v1::EnqueueRequest* req,
                                          v1::EnqueueResponse* resp) {
  if (auto s = Allow(ctx, kProduce, {req->queue()}); !s.ok()) return Fail(ctx, s);
  // The payloads are moved out of the request rather than copied; gRPC does not read the
  // request again after the handler starts.
  auto* mutable_req = const_cast<v1::EnqueueRequest*>(req);
  auto entries = FromProto(mutable_req->mutable_messages());
  if (!entries.ok()) return Fail(ctx, entries.status());
  ServerUnaryReactor* reactor = ctx->DefaultReactor();
  engine_->Enqueue(req->queue(), std::move(*entries), [reactor, resp](auto result) {
    if (result.ok()) {
      for (auto& r : *result) {
        v1::EnqueueResult* out = resp->add_results();
        out->set_message_id(std::move(r.message_id));
        out->set_duplicate(r.duplicate);
      }
    }
    reactor->Finish(ToGrpc(result.status()));
  });
  return reactor;
}

ServerUnaryReactor* QueueService::Lease(CallbackServerContext* ctx, const v1::LeaseRequest* req,
                                        v1::LeaseResponse* resp) {
  if (auto s = Allow(ctx, kConsume, {req->queue()}); !s.ok()) return Fail(ctx, s);
  auto request = FromProto(*req);
  if (!request.ok()) return Fail(ctx, request.status());
  if (auto left = MillisToDeadline(ctx)) {
    if (*left <= kDeadlineMarginMs / 4) {
      // Too late to lease anything the client could still receive.
      return Fail(ctx, absl::OkStatus());
    }
    if (request->wait_ms > 0 && request->wait_ms <= engine::Limits::kMaxWait) {
      request->wait_ms =
          std::max<int64_t>(0, std::min(request->wait_ms, *left - kDeadlineMarginMs));
    }
  }
  auto* reactor = new LeaseReactor(engine_, resp);
  reactor->Start(std::move(*request));
  return reactor;
}

ServerUnaryReactor* QueueService::Ack(CallbackServerContext* ctx, const v1::AckRequest* req,
                                      v1::AckResponse* resp) {
  if (auto s = Allow(ctx, kConsume, {req->queue()}); !s.ok()) return Fail(ctx, s);
  ServerUnaryReactor* reactor = ctx->DefaultReactor();
  engine_->Ack(req->queue(), Receipts(req->receipts()),
               FinishOutcomes(reactor, req->receipts(), resp));
  return reactor;
}

ServerUnaryReactor* QueueService::Nack(CallbackServerContext* ctx, const v1::NackRequest* req,
                                       v1::NackResponse* resp) {
  if (auto s = Allow(ctx, kConsume, {req->queue()}); !s.ok()) return Fail(ctx, s);
  int64_t delay = 0;
  if (req->has_delay()) {
    auto d = FromDuration(req->delay(), "delay");
    if (!d.ok()) return Fail(ctx, d.status());
    delay = *d;
  }
  ServerUnaryReactor* reactor = ctx->DefaultReactor();
  engine_->Nack(req->queue(), Receipts(req->receipts()), delay,
                FinishOutcomes(reactor, req->receipts(), resp));
  return reactor;
}

ServerUnaryReactor* QueueService::ExtendLease(CallbackServerContext* ctx,
                                              const v1::ExtendLeaseRequest* req,
                                              v1::ExtendLeaseResponse* resp) {
  if (auto s = Allow(ctx, kConsume, {req->queue()}); !s.ok()) return Fail(ctx, s);
  std::optional<int64_t> visibility;
  if (req->has_visibility_timeout()) {
    auto v = FromDuration(req->visibility_timeout(), "visibility_timeout");
    if (!v.ok()) return Fail(ctx, v.status());
    visibility = *v;
  }
  ServerUnaryReactor* reactor = ctx->DefaultReactor();
  engine_->ExtendLease(req->queue(), Receipts(req->receipts()), visibility,
                       FinishOutcomes(reactor, req->receipts(), resp));
  return reactor;
}

ServerUnaryReactor* QueueService::Peek(CallbackServerContext* ctx, const v1::PeekRequest* req,
                                       v1::PeekResponse* resp) {
  if (auto s = Allow(ctx, kConsume, {req->queue()}); !s.ok()) return Fail(ctx, s);
  auto page = engine_->Peek(req->queue(), req->max_messages(), req->start_after());
  if (page.ok()) {
    for (auto& m : page->messages) ToProto(std::move(m), resp->add_messages());
    resp->set_next_start_after(std::move(page->next_start_after));
  }
  return Fail(ctx, page.status());
}

ServerUnaryReactor* QueueService::MoveMessages(CallbackServerContext* ctx,
                                               const v1::MoveMessagesRequest* req,
                                               v1::MoveMessagesResponse* resp) {
  if (auto s = Allow(ctx, kAdmin, {req->source(), req->destination()}); !s.ok()) {
    return Fail(ctx, s);
  }
  ServerUnaryReactor* reactor = ctx->DefaultReactor();
  engine_->MoveMessages(req->source(), req->destination(), req->max_messages(),
                        [reactor, resp](auto result) {
                          if (result.ok()) {
                            for (auto& m : *result) {
                              v1::MovedMessage* out = resp->add_moved();
                              out->set_source_id(std::move(m.source_id));
                              out->set_destination_id(std::move(m.destination_id));
                            }
                          }
                          reactor->Finish(ToGrpc(result.status()));
                        });
  return reactor;
}

ServerUnaryReactor* QueueService::DeleteMessage(CallbackServerContext* ctx,
                                                const v1::DeleteMessageRequest* req,
                                                v1::DeleteMessageResponse*) {
  if (auto s = Allow(ctx, kAdmin, {req->queue()}); !s.ok()) return Fail(ctx, s);
  ServerUnaryReactor* reactor = ctx->DefaultReactor();
  engine_->DeleteMessage(req->queue(), req->message_id(),
                         [reactor](auto result) { reactor->Finish(ToGrpc(result.status())); });
  return reactor;
}

grpc::ServerBidiReactor<v1::PublishRequest, v1::PublishResponse>* QueueService::Publish(
    CallbackServerContext* ctx) {
  return NewPublishReactor(ctx, engine_, &streams_,
                           [this](CallbackServerContext* c, std::string_view queue) {
                             return Allow(c, kProduce, {queue});
                           });
}

grpc::ServerBidiReactor<v1::SubscribeRequest, v1::SubscribeResponse>* QueueService::Subscribe(
    CallbackServerContext* ctx) {
  return NewSubscribeReactor(ctx, engine_, &streams_,
                             [this](CallbackServerContext* c, std::string_view queue) {
                               return Allow(c, kConsume, {queue});
                             });
}

}  // namespace spool::server
