#include "server/streams.h"

#include <deque>
#include <optional>
#include <string>
#include <vector>

#include "engine/strings.h"
#include "server/convert.h"

namespace spool::server {

absl::Status StreamRegistry::Add(RegisteredStream* s) {
  std::lock_guard<std::mutex> lock(mu_);
  if (stopping_) return absl::UnavailableError("spool is shutting down");
  if (static_cast<int64_t>(open_.size()) >= max_streams_) {
    return absl::ResourceExhaustedError(
        engine::Cat("this spoold has its maximum of ", max_streams_,
                    " open streams (--max-streams); close one or retry later"));
  }
  open_.insert(s);
  return absl::OkStatus();
}

void StreamRegistry::Remove(RegisteredStream* s) {
  std::lock_guard<std::mutex> lock(mu_);
  open_.erase(s);
}

void StreamRegistry::StopAll() {
  // A stream that can finish now is marked finished under the lock (so it cannot reach OnDone
  // and leave the set while we hold a pointer to it) and finished after the lock is released:
  // Finish may run OnDone, which takes the lock to remove the stream.
  std::vector<RegisteredStream*> finish;
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
    const grpc::Status status(grpc::StatusCode::UNAVAILABLE, "spool is shutting down");
    for (RegisteredStream* s : open_) {
      if (s->EndLocked(status)) finish.push_back(s);
    }
  }
  for (RegisteredStream* s : finish) s->AfterEnd();
}

namespace {

// Requests accepted on one stream and not yet answered (in the engine, or answered and waiting
// for the client to read): past either bound the stream stops reading until some are written,
// so a client that stops reading holds at most this much of spoold's memory.
constexpr size_t kMaxQueuedRequests = 256;
constexpr uint64_t kMaxInFlightBytes = 16 << 20;

// Errors that end a Publish stream rather than one request: the stream cannot go on (unknown
// queue, no permission, shutdown, storage failure).
bool EndsStream(absl::StatusCode code) {
  switch (code) {
    case absl::StatusCode::kNotFound:
    case absl::StatusCode::kPermissionDenied:
    case absl::StatusCode::kUnauthenticated:
    case absl::StatusCode::kUnavailable:
    case absl::StatusCode::kInternal:
    case absl::StatusCode::kDataLoss:
    case absl::StatusCode::kUnknown:
    case absl::StatusCode::kCancelled:
      return true;
    default:
      return false;
  }
}

// One Publish stream. Events (a read, a write, an engine reply, cancellation, shutdown) change
// the state under mu_ and decide what to start next; the gRPC calls that start it are made
// after mu_ is released.
class PublishReactor final
    : public grpc::ServerBidiReactor<v1::PublishRequest, v1::PublishResponse>,
      public RegisteredStream {
 public:
  PublishReactor(grpc::CallbackServerContext* ctx, engine::Engine* engine, StreamRegistry* registry,
                 AllowFn allow)
      : ctx_(ctx), engine_(engine), registry_(registry), allow_(std::move(allow)) {
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
    std::optional<grpc::Status> finish;
    {
      std::lock_guard<std::mutex> lock(mu_);
      reading_ = false;
      if (ok && !end_ && !finished_) {
        accepting_ = true;
      } else {
        if (!ok) reads_done_ = true;
        finish = StartLocked(DecideLocked());
      }
    }
    if (finish) return Finish(*finish);
    if (ok) Accept();
  }

  void OnWriteDone(bool ok) override {
    Step([&] {
      writing_ = false;
      slots_.pop_front();
      if (!ok) {
        write_failed_ = true;  // the client is gone; it cannot be answered any more
        if (!end_) end_ = grpc::Status(grpc::StatusCode::CANCELLED, "the client went away");
      }
    });
  }

  void OnCancel() override {
    Step([&] {
      write_failed_ = true;
      if (!end_) end_ = grpc::Status(grpc::StatusCode::CANCELLED, "the Publish call was cancelled");
    });
  }

  void OnDone() override {
    if (registered_) registry_->Remove(this);
    delete this;
  }

  // Called by the registry, under its lock.
  bool EndLocked(const grpc::Status& status) override {
    std::lock_guard<std::mutex> lock(mu_);
    if (!end_) end_ = status;
    return StartLocked(DecideLocked()).has_value();
  }

  void AfterEnd() override {
    grpc::Status s;
    {
      std::lock_guard<std::mutex> lock(mu_);
      s = *end_;
    }
    Finish(s);
  }

 private:
  struct Slot {
    bool done = false;
    bool answer = true;  // false for a request whose error ended the stream
    uint64_t bytes = 0;
    v1::PublishResponse response;
  };
  struct Actions {
    const v1::PublishResponse* write = nullptr;
    bool read = false;
    std::optional<grpc::Status> finish;
  };

  // Decides what to start next. Marks the stream finished when it decides to finish it.
  Actions DecideLocked() {
    Actions a;
    if (finished_) return a;
    // Requests whose error ended the stream are not answered (the stream's status is).
    if (!writing_) {
      while (!slots_.empty() && slots_.front().done && !slots_.front().answer) slots_.pop_front();
    }
    if (!writing_ && !write_failed_ && !slots_.empty() && slots_.front().done) {
      writing_ = true;
      a.write = &slots_.front().response;
    }
    size_t in_engine = 0;
    for (const Slot& s : slots_) in_engine += s.done ? 0 : 1;
    bool stopping = end_.has_value() || reads_done_;
    if (!stopping && !reading_ && !accepting_ && slots_.size() < kMaxQueuedRequests &&
        (in_flight_bytes_ < kMaxInFlightBytes || in_engine == 0)) {
      reading_ = true;
      a.read = true;
    }
    bool answered_all = write_failed_ || slots_.empty();
    if (stopping && !writing_ && !accepting_ && in_engine == 0 && answered_all) {
      finished_ = true;
      a.finish = end_ ? *end_ : grpc::Status::OK;
    }
    return a;
  }

  // One event: `change` under mu_, then whatever the new state calls for.
  template <typename Change>
  void Step(Change change) {
    std::optional<grpc::Status> finish;
    {
      std::lock_guard<std::mutex> lock(mu_);
      change();
      finish = StartLocked(DecideLocked());
    }
    if (finish) Finish(*finish);
  }

  // Starts the write or read DecideLocked chose, under mu_ (gRPC's callback API runs no
  // reaction inline of StartWrite or StartRead), and returns the status to finish with, which
  // the caller passes to Finish after releasing mu_: OnDone may run as soon as Finish is
  // called and deletes this reactor, mutex included. Once finished_ is set no event starts
  // anything, so nothing is started after Finish.
  std::optional<grpc::Status> StartLocked(const Actions& a) {
    if (a.write) StartWrite(a.write);
    if (a.read) StartRead(&request_);
    return a.finish;
  }

  // The request just read: answered at once when it is bad, otherwise handed to the engine.
  void Accept() {
    Slot* slot;
    std::vector<engine::EnqueueEntry> entries;
    std::string queue;
    absl::Status refused;
    std::optional<grpc::Status> finish;
    {
      std::lock_guard<std::mutex> lock(mu_);
      slots_.push_back(Slot{});
      slot = &slots_.back();
      slot->response.set_sequence(request_.sequence());
      refused = CheckQueueLocked();
      if (refused.ok()) {
        queue = queue_;
        for (const auto& m : request_.messages()) slot->bytes += m.payload().size();
        auto converted = FromProto(request_.mutable_messages());
        if (converted.ok()) {
          entries = std::move(*converted);
        } else {
          refused = converted.status();
        }
      }
      if (!refused.ok()) {
        accepting_ = false;
        CompleteLocked(slot, refused);
        finish = StartLocked(DecideLocked());
      } else {
        in_flight_bytes_ += slot->bytes;
      }
    }
    if (finish) return Finish(*finish);
    if (!refused.ok()) return;
    // The slot stays in slots_ (and this reactor alive) until the engine has answered.
    engine_->Enqueue(std::move(queue), std::move(entries), [this, slot](auto result) {
      Step([&] {
        in_flight_bytes_ -= slot->bytes;
        if (!result.ok()) return CompleteLocked(slot, result.status());
        for (auto& r : *result) {
          v1::EnqueueResult* out = slot->response.add_results();
          out->set_message_id(std::move(r.message_id));
          out->set_duplicate(r.duplicate);
        }
        slot->done = true;
      });
    });
    // Only now the next read: the engine takes this stream's requests in the order they came.
    // While accepting_ is set the stream cannot finish, so this reactor is still alive here.
    Step([&] { accepting_ = false; });
  }

  // The queue rule: the first request names the queue (and the caller's right to publish to
  // it is checked once, then); later requests name the same or none.
  absl::Status CheckQueueLocked() {
    const std::string& named = request_.queue();
    if (queue_.empty()) {
      if (named.empty()) {
        return absl::InvalidArgumentError(
            "queue: required on the first request of a Publish stream");
      }
      if (auto s = allow_(ctx_, named); !s.ok()) return s;
      queue_ = named;
      return absl::OkStatus();
    }
    if (!named.empty() && named != queue_) {
      return absl::InvalidArgumentError(engine::Cat("queue: this stream publishes to \"", queue_,
                                                    "\"; a later request may name only that "
                                                    "queue, or none (got \"",
                                                    named, "\")"));
    }
    return absl::OkStatus();
  }

  void CompleteLocked(Slot* slot, const absl::Status& s) {
    slot->done = true;
    if (EndsStream(s.code())) {
      slot->answer = false;
      if (!end_) end_ = ToGrpc(s);
      return;
    }
    slot->response.set_code(static_cast<int32_t>(s.code()));
    slot->response.set_error(std::string(s.message()));
  }

  grpc::CallbackServerContext* const ctx_;
  engine::Engine* const engine_;
  StreamRegistry* const registry_;
  const AllowFn allow_;
  bool registered_ = false;

  std::mutex mu_;
  v1::PublishRequest request_;  // the read in progress, then Accept's until accepting_ clears
  std::string queue_;
  std::deque<Slot> slots_;  // in request order; the front one is being written when writing_
  uint64_t in_flight_bytes_ = 0;
  bool reading_ = false, writing_ = false;
  bool accepting_ = false;  // between a read's end and the engine taking its request
  bool reads_done_ = false, write_failed_ = false, finished_ = false;
  std::optional<grpc::Status> end_;
};

}  // namespace

grpc::ServerBidiReactor<v1::PublishRequest, v1::PublishResponse>* NewPublishReactor(
    grpc::CallbackServerContext* ctx, engine::Engine* engine, StreamRegistry* registry,
    AllowFn allow) {
  return new PublishReactor(ctx, engine, registry, std::move(allow));
}

}  // namespace spool::server
