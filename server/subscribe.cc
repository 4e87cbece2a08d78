// Subscribe: a standing engine subscription behind one bidi stream (README "Streams").
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "engine/strings.h"
#include "server/convert.h"
#include "server/streams.h"

namespace spool::server {

namespace {

// Requests with receipts accepted and not yet answered (in the engine, or answered and waiting
// for the client to read): past this the stream stops reading, so a client that stops reading
// holds at most this many answers in spoold's memory. Deliveries are bounded by the engine
// (max_outstanding, and 64 MiB of outstanding payload).
constexpr size_t kMaxQueuedAnswers = 256;

// One Subscribe stream. As in Publish, every event changes the state under the lock and then
// starts what the new state calls for: gRPC reads and writes under the lock (they never run a
// reaction inline), engine calls and Finish after it is released.
//
// The engine's callbacks (deliveries, the subscription's end) can come at any time, also
// after the stream has finished, so they reach the reactor through a Link that outlives it:
// the reactor's mutex lives there, and OnDone clears the pointer under it.
class SubscribeReactor final
    : public grpc::ServerBidiReactor<v1::SubscribeRequest, v1::SubscribeResponse>,
      public RegisteredStream {
 public:
  SubscribeReactor(grpc::CallbackServerContext* ctx, engine::Engine* engine,
                   StreamRegistry* registry, AllowFn allow)
      : ctx_(ctx),
        engine_(engine),
        registry_(registry),
        allow_(std::move(allow)),
        link_(std::make_shared<Link>()) {
    link_->reactor = this;
    if (auto s = registry_->Add(this); !s.ok()) {
      finished_ = true;
      Finish(ToGrpc(s));
      return;
    }
    registered_ = true;
    reading_ = true;
    StartRead(&request_);
  }

  void OnReadDone(bool ok) override {
    bool accept = false;
    Step([&] {
      reading_ = false;
      if (!ok) {
        // The client half-closed (no more acks will come) or went away: answer what is in
        // the engine, release the rest, end OK (a client that went away never sees it).
        if (!end_) end_ = grpc::Status::OK;
      } else if (!end_) {
        accepting_ = true;
        accept = true;
      }
    });
    if (accept) Accept();
  }

  void OnWriteDone(bool ok) override {
    Step([&] {
      writing_ = false;
      write_buf_.Clear();
      if (!ok) {
        write_failed_ = true;
        if (!end_) end_ = grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
      }
    });
  }

  void OnCancel() override {
    Step([&] {
      write_failed_ = true;
      if (!end_) {
        end_ = grpc::Status(grpc::StatusCode::CANCELLED, "the Subscribe call was cancelled");
      }
    });
  }

  void OnDone() override {
    {
      std::lock_guard<std::mutex> lock(link_->mu);
      link_->reactor = nullptr;
    }
    if (registered_) registry_->Remove(this);
    delete this;
  }

  bool EndLocked(const grpc::Status& status) override {
    std::lock_guard<std::mutex> lock(link_->mu);
    if (finished_) return false;
    if (!end_) end_ = status;
    ++kicks_;  // holds off finishing until AfterEnd has run
    return true;
  }

  void AfterEnd() override {
    Step([&] { --kicks_; });
  }

 private:
  struct Link {
    std::mutex mu;
    SubscribeReactor* reactor = nullptr;  // guarded by mu; null once the stream is done
  };
  // One request's acks and nacks: answered in request order.
  struct Slot {
    bool done = false;
    bool answer = true;  // false when its error ended the stream (the status answers it)
    std::vector<std::string> acks, nacks;
    v1::SubscribeResponse response;
  };
  struct Actions {
    bool read = false, write = false;
    std::shared_ptr<engine::Subscription> unsubscribe;
    std::optional<grpc::Status> finish;
  };

  Actions DecideLocked() {
    Actions a;
    if (finished_) return a;
    const bool stopping = end_.has_value();
    if (stopping) pushed_.clear_messages();  // no deliveries once ending: they are released
    if (!writing_) {
      while (!slots_.empty() && slots_.front().done && !slots_.front().answer) slots_.pop_front();
    }
    if (!writing_ && !write_failed_) {
      if (!slots_.empty() && slots_.front().done) {
        write_buf_ = std::move(slots_.front().response);
        slots_.pop_front();
        if (stopping) write_buf_.clear_messages();
        // Deliveries waiting to go out ride along with the answer.
        for (auto& m : *pushed_.mutable_messages()) *write_buf_.add_messages() = std::move(m);
        pushed_.clear_messages();
        a.write = true;
      } else if (pushed_.messages_size() > 0) {
        write_buf_.Swap(&pushed_);
        a.write = true;
      }
      writing_ = a.write;
    }
    if (write_failed_) {
      while (!slots_.empty() && slots_.front().done) slots_.pop_front();
    }
    if (!stopping && !reading_ && !accepting_ && slots_.size() < kMaxQueuedAnswers) {
      reading_ = true;
      a.read = true;
    }
    bool settled = !accepting_ && (slots_.empty() || slots_.back().done);
    for (const Slot& s : slots_) settled = settled && s.done;
    if (stopping && settled && sub_ && !unsubscribing_) {
      unsubscribing_ = true;
      a.unsubscribe = sub_;
    }
    bool released = !sub_ || unsubscribed_;
    if (stopping && settled && released && !writing_ && slots_.empty() && kicks_ == 0) {
      finished_ = true;
      a.finish = *end_;
    }
    return a;
  }

  // One event: `change` under the lock, then what the new state calls for.
  template <typename Change>
  void Step(Change change) {
    Actions a;
    {
      std::lock_guard<std::mutex> lock(link_->mu);
      change();
      a = DecideLocked();
      if (a.write) StartWrite(&write_buf_);
      if (a.read) StartRead(&request_);
    }
    Carry(a);
  }

  // The parts of a decision that run outside the lock. Unsubscribe's reply may come on this
  // thread; the stream cannot finish before it, so the reactor is alive here either way.
  void Carry(Actions& a) {
    if (a.unsubscribe) {
      engine_->Unsubscribe(a.unsubscribe, [link = link_](absl::StatusOr<uint64_t>) {
        Reach(link, [](SubscribeReactor* r) { r->unsubscribed_ = true; });
      });
    }
    if (a.finish) Finish(*a.finish);
  }

  // Runs f on the reactor under its lock if the stream is not done yet, then carries on.
  template <typename F>
  static void Reach(const std::shared_ptr<Link>& link, F f) {
    Actions a;
    SubscribeReactor* r;
    {
      std::lock_guard<std::mutex> lock(link->mu);
      r = link->reactor;
      if (r == nullptr || r->finished_) return;
      f(r);
      a = r->DecideLocked();
      if (a.write) r->StartWrite(&r->write_buf_);
      if (a.read) r->StartRead(&r->request_);
    }
    r->Carry(a);
  }

  void EndLocked(const absl::Status& s) {
    if (!end_) end_ = ToGrpc(s);
  }

  // The request just read: the first opens the subscription; any carries receipts to settle.
  void Accept() {
    absl::Status refused;
    std::shared_ptr<engine::Subscription> sub;
    engine::SubscribeRequest open;
    bool opening;
    {
      std::lock_guard<std::mutex> lock(link_->mu);
      opening = !sub_;
      refused = opening ? ReadFirstLocked(&open) : CheckLaterLocked();
      sub = sub_;
    }
    if (refused.ok() && opening) {
      // Deliveries may arrive before Subscribe returns; they only need the link.
      auto opened = engine_->Subscribe(
          std::move(open), {.deliver =
                                [link = link_](std::vector<engine::LeasedMessage> messages) {
                                  Reach(link, [&](SubscribeReactor* r) {
                                    for (auto& m : messages)
                                      ToProto(std::move(m), r->pushed_.add_messages());
                                  });
                                },
                            .ended =
                                [link = link_](absl::Status s) {
                                  Reach(link, [&](SubscribeReactor* r) {
                                    r->EndLocked(s);
                                    r->unsubscribed_ = true;  // the engine has let go of it already
                                  });
                                }});
      if (opened.ok()) {
        sub = *opened;
        std::lock_guard<std::mutex> lock(link_->mu);
        sub_ = sub;
      } else {
        refused = opened.status();
      }
    }
    Slot* slot = nullptr;
    int64_t nack_delay = 0;
    if (refused.ok() && (request_.ack_size() > 0 || request_.nack_size() > 0)) {
      if (request_.has_nack_delay()) {
        auto d = FromDuration(request_.nack_delay(), "nack_delay");
        if (d.ok()) {
          nack_delay = *d;
        } else {
          refused = d.status();
        }
      }
      if (refused.ok()) {
        std::lock_guard<std::mutex> lock(link_->mu);
        slot = &slots_.emplace_back();
        slot->acks.assign(request_.ack().begin(), request_.ack().end());
        slot->nacks.assign(request_.nack().begin(), request_.nack().end());
      }
    }
    if (!refused.ok()) {
      return Step([&] {
        accepting_ = false;
        EndLocked(refused);
      });
    }
    if (slot != nullptr) {
      // The slot (and this reactor) stays until the engine has answered: the stream does not
      // finish while a slot is not done.
      engine_->Settle(sub, slot->acks, slot->nacks, nack_delay,
                      [link = link_, slot](absl::StatusOr<engine::SettleResult> result) {
                        Reach(link, [&](SubscribeReactor* r) { r->AnswerLocked(slot, result); });
                      });
    }
    // Only now the next read: the engine settles this stream's requests in the order they came.
    Step([&] { accepting_ = false; });
  }

  void AnswerLocked(Slot* slot, absl::StatusOr<engine::SettleResult>& result) {
    slot->done = true;
    if (!result.ok()) {
      slot->answer = false;
      return EndLocked(result.status());
    }
    for (size_t i = 0; i < result->acks.size(); ++i) {
      ToProto(slot->acks[i], result->acks[i], slot->response.add_ack_results());
    }
    for (size_t i = 0; i < result->nacks.size(); ++i) {
      ToProto(slot->nacks[i], result->nacks[i], slot->response.add_nack_results());
    }
    for (auto& m : result->delivered) ToProto(std::move(m), slot->response.add_messages());
    slot->acks.clear();
    slot->nacks.clear();
  }

  // The first request: which queue, and how. Its errors end the stream.
  absl::Status ReadFirstLocked(engine::SubscribeRequest* out) {
    out->queue = request_.queue();
    if (out->queue.empty()) {
      return absl::InvalidArgumentError(
          "queue: required on the first request of a Subscribe stream");
    }
    out->max_outstanding = request_.max_outstanding();
    if (request_.has_visibility_timeout()) {
      auto d = FromDuration(request_.visibility_timeout(), "visibility_timeout");
      if (!d.ok()) return d.status();
      out->visibility_timeout_ms = *d;
    }
    if (request_.has_max_lease_duration()) {
      auto d = FromDuration(request_.max_lease_duration(), "max_lease_duration");
      if (!d.ok()) return d.status();
      out->max_lease_duration_ms = *d;
    }
    if (auto s = allow_(ctx_, out->queue); !s.ok()) return s;
    queue_ = out->queue;
    return absl::OkStatus();
  }

  // A later request carries receipts only; naming another queue or new settings is refused.
  absl::Status CheckLaterLocked() {
    if (!request_.queue().empty() && request_.queue() != queue_) {
      return absl::InvalidArgumentError(
          engine::Cat("queue: this stream subscribes to \"", queue_,
                      "\"; a later request may name only that queue, or none (got \"",
                      request_.queue(), "\")"));
    }
    if (request_.max_outstanding() != 0 || request_.has_visibility_timeout() ||
        request_.has_max_lease_duration()) {
      return absl::InvalidArgumentError(
          "max_outstanding, visibility_timeout, max_lease_duration: only the first request of a "
          "Subscribe stream sets them");
    }
    return absl::OkStatus();
  }

  grpc::CallbackServerContext* const ctx_;
  engine::Engine* const engine_;
  StreamRegistry* const registry_;
  const AllowFn allow_;
  const std::shared_ptr<Link> link_;
  bool registered_ = false;

  // Guarded by link_->mu.
  v1::SubscribeRequest request_;  // the read in progress, then Accept's until accepting_ clears
  std::string queue_;
  std::shared_ptr<engine::Subscription> sub_;
  std::deque<Slot> slots_;           // answers in request order
  v1::SubscribeResponse pushed_;     // deliveries not yet written
  v1::SubscribeResponse write_buf_;  // the write in progress
  bool reading_ = false, writing_ = false, accepting_ = false;
  bool unsubscribing_ = false, unsubscribed_ = false;
  bool write_failed_ = false, finished_ = false;
  int kicks_ = 0;
  std::optional<grpc::Status> end_;
};

}  // namespace

grpc::ServerBidiReactor<v1::SubscribeRequest, v1::SubscribeResponse>* NewSubscribeReactor(
    grpc::CallbackServerContext* ctx, engine::Engine* engine, StreamRegistry* registry,
    AllowFn allow) {
  return new SubscribeReactor(ctx, engine, registry, std::move(allow));
}

}  // namespace spool::server
