// spool-append-server: the least a durable queue server can do, as the ceiling spoold's
// Enqueue, Lease and Ack are measured against (issue 4, targets 1 to 3).
//
// It serves spool.v1 Enqueue, Lease and Ack the way spoold does: gRPC's callback API; the
// handler adds the call's records to the group being formed and returns; one commit thread
// writes each group with one write() and one fdatasync(); one completion thread then sends the
// group's replies (Finish). What it does beyond that is the least a queue can: every record is
// appended to one file (an Enqueue's messages as a type byte, a 4-byte length and the payload; a
// Lease's and an Ack's message ids as a type byte and 8 bytes each); the payloads of messages
// not yet leased are kept in memory, in order, for Lease; a receipt is the message id padded to
// a receipt's 50 characters and only checked against the set of leased ids. No index, no
// RocksDB, no queues (CreateQueue answers OK to any name and every queue is the same one), no
// visibility timeout (a leased message never comes back), no waiting Lease (it returns what
// there is), no recovery. Every other RPC is UNIMPLEMENTED.
//
// spool-bench against it therefore measures what gRPC's calls plus a group fsync allow on this
// machine, with the same client and the same bytes as a run against spoold: the share of
// spoold's time that its engine costs is the gap.
//
//   spool-append-server --listen 127.0.0.1:0 --data-dir /tmp/append --port-file /tmp/p
//   spool-bench --server 127.0.0.1:PORT --workload produce --producers 4 --inflight 16 --batch 1
//   spool-bench --server 127.0.0.1:PORT --workload consume --consumers 4 --batch 100
//
// With --no-fsync the groups are written without fdatasync: gRPC and the hand-off of replies to
// another thread alone. It has the health service, so spool-bench's noop phase runs against it
// too.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <pthread.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <filesystem>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "absl/container/flat_hash_set.h"
#include "engine/coding.h"
#include "spool/v1/queue.grpc.pb.h"
#include "tools/bench/serve.h"

namespace {

namespace v1 = spool::v1;

constexpr char kEnqueued = 'E', kLeased = 'L', kAcked = 'A';
constexpr size_t kReceiptChars = 50;  // spoold's receipts' length

// A group of calls: their records, written together, and the replies to send once durable.
struct Group {
  std::string bytes;
  std::vector<grpc::ServerUnaryReactor*> reactors;
};

int64_t NowMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

void SetTimestamp(int64_t ms, google::protobuf::Timestamp* t) {
  t->set_seconds(ms / 1000);
  t->set_nanos(static_cast<int32_t>(ms % 1000) * 1'000'000);
}

void AppendId(std::string& bytes, char type, uint64_t id) {
  bytes.push_back(type);
  bytes.append(reinterpret_cast<const char*>(&id), sizeof id);
}

class AppendLog {
 public:
  AppendLog(int fd, bool sync) : fd_(fd), sync_(sync) {
    commit_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "append-commit");
      CommitLoop();
    });
    complete_ = std::thread([this] {
      pthread_setname_np(pthread_self(), "append-complete");
      CompleteLoop();
    });
  }
  ~AppendLog() { Stop(); }

  // Each call adds its records to the forming group and fills resp; reactor is finished once
  // the group is durable (or with UNAVAILABLE if it could not be made so).
  void Enqueue(const v1::EnqueueRequest& req, v1::EnqueueResponse* resp,
               grpc::ServerUnaryReactor* reactor) {
    int64_t now = NowMs();
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& m : req.messages()) {
      uint32_t n = static_cast<uint32_t>(m.payload().size());
      forming_.bytes.push_back(kEnqueued);
      forming_.bytes.append(reinterpret_cast<const char*>(&n), sizeof n);
      forming_.bytes.append(m.payload());
      uint64_t id = ++seq_;
      ready_.push_back({id, now, m.payload()});
      resp->add_results()->set_message_id(spool::engine::FormatMessageId(id));
    }
    JoinLocked(reactor);
  }

  // The oldest messages not leased yet, up to max_messages, in order. Returns at once, without
  // a write, when there are none.
  void Lease(const v1::LeaseRequest& req, v1::LeaseResponse* resp,
             grpc::ServerUnaryReactor* reactor) {
    uint32_t n = std::max<uint32_t>(req.max_messages(), 1);
    int64_t now = NowMs();
    int64_t deadline =
        now + (req.has_visibility_timeout() ? req.visibility_timeout().seconds() * 1000 : 30'000);
    std::unique_lock<std::mutex> l(mu_);
    if (ready_.empty()) {
      l.unlock();
      reactor->Finish(grpc::Status::OK);
      return;
    }
    for (; n > 0 && !ready_.empty(); --n) {
      Ready& r = ready_.front();
      auto* m = resp->add_messages();
      std::string id = spool::engine::FormatMessageId(r.id);
      std::string receipt = id;
      receipt.resize(kReceiptChars, 'r');
      m->set_message_id(std::move(id));
      m->set_payload(std::move(r.payload));
      m->set_receipt(std::move(receipt));
      m->set_delivery_count(1);
      SetTimestamp(r.enqueue_ms, m->mutable_enqueue_time());
      SetTimestamp(deadline, m->mutable_lease_deadline());
      AppendId(forming_.bytes, kLeased, r.id);
      leased_.insert(r.id);
      ready_.pop_front();
    }
    JoinLocked(reactor);
  }

  // OK for each receipt of a leased message (which is then gone), INVALID_RECEIPT otherwise.
  void Ack(const v1::AckRequest& req, v1::AckResponse* resp, grpc::ServerUnaryReactor* reactor) {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& receipt : req.receipts()) {
      auto* out = resp->add_results();
      out->set_receipt(receipt);
      std::optional<uint64_t> id;
      if (receipt.size() == kReceiptChars) {
        id = spool::engine::ParseMessageId(std::string_view(receipt).substr(0, 16));
      }
      bool ok = id && leased_.erase(*id) > 0;
      out->set_outcome(ok ? v1::OUTCOME_OK : v1::OUTCOME_INVALID_RECEIPT);
      if (ok) AppendId(forming_.bytes, kAcked, *id);
    }
    JoinLocked(reactor);
  }

  void Stop() {
    {
      std::lock_guard<std::mutex> l(mu_);
      stopping_ = true;
      formed_.notify_one();
      written_.notify_one();
    }
    if (commit_.joinable()) commit_.join();
    if (complete_.joinable()) complete_.join();
  }

 private:
  // A written group's replies, and whether its write (and fdatasync) succeeded.
  using Written = std::vector<std::pair<std::vector<grpc::ServerUnaryReactor*>, bool>>;

  struct Ready {
    uint64_t id;
    int64_t enqueue_ms;
    std::string payload;
  };

  void JoinLocked(grpc::ServerUnaryReactor* reactor) {
    forming_.reactors.push_back(reactor);
    formed_.notify_one();
  }

  void CommitLoop() {
    Group g;
    for (;;) {
      {
        std::unique_lock<std::mutex> l(mu_);
        formed_.wait(l, [&] { return stopping_ || !forming_.reactors.empty(); });
        if (forming_.reactors.empty()) {
          stopped_writing_ = true;
          written_.notify_one();
          return;
        }
        std::swap(g, forming_);
      }
      bool ok = WriteAll(g.bytes) && (!sync_ || fdatasync(fd_) == 0);
      if (!ok) std::perror("spool-append-server: write or fdatasync");
      g.bytes.clear();
      std::lock_guard<std::mutex> l(mu_);
      done_.emplace_back(std::move(g.reactors), ok);
      g.reactors.clear();
      written_.notify_one();
    }
  }

  void CompleteLoop() {
    for (;;) {
      Written done;
      {
        std::unique_lock<std::mutex> l(mu_);
        written_.wait(l, [&] { return stopped_writing_ || !done_.empty(); });
        if (done_.empty()) return;
        done.swap(done_);
      }
      for (auto& [reactors, ok] : done) {
        for (auto* r : reactors) {
          r->Finish(ok ? grpc::Status::OK
                       : grpc::Status(grpc::StatusCode::UNAVAILABLE, "write or fdatasync failed"));
        }
      }
    }
  }

  bool WriteAll(const std::string& bytes) {
    size_t off = 0;
    while (off < bytes.size()) {
      ssize_t n = write(fd_, bytes.data() + off, bytes.size() - off);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) return false;
      off += static_cast<size_t>(n);
    }
    return true;
  }

  const int fd_;
  const bool sync_;
  std::mutex mu_;
  std::condition_variable formed_, written_;
  Group forming_;
  Written done_;
  uint64_t seq_ = 0;
  std::deque<Ready> ready_;
  absl::flat_hash_set<uint64_t> leased_;
  bool stopping_ = false;
  bool stopped_writing_ = false;
  std::thread commit_, complete_;
};

class Service final : public v1::QueueService::CallbackService {
 public:
  explicit Service(AppendLog* log) : log_(log) {}

  grpc::ServerUnaryReactor* Enqueue(grpc::CallbackServerContext* ctx, const v1::EnqueueRequest* req,
                                    v1::EnqueueResponse* resp) override {
    bool bad = req->messages().empty() || req->messages_size() > 1000;
    return Answer(ctx, bad ? "messages: 1 to 1000 are needed" : nullptr,
                  [&](auto* reactor) { log_->Enqueue(*req, resp, reactor); });
  }

  grpc::ServerUnaryReactor* Lease(grpc::CallbackServerContext* ctx, const v1::LeaseRequest* req,
                                  v1::LeaseResponse* resp) override {
    return Answer(ctx, req->max_messages() > 1000 ? "max_messages: at most 1000" : nullptr,
                  [&](auto* reactor) { log_->Lease(*req, resp, reactor); });
  }

  grpc::ServerUnaryReactor* Ack(grpc::CallbackServerContext* ctx, const v1::AckRequest* req,
                                v1::AckResponse* resp) override {
    bool bad = req->receipts().empty() || req->receipts_size() > 1000;
    return Answer(ctx, bad ? "receipts: 1 to 1000 are needed" : nullptr,
                  [&](auto* reactor) { log_->Ack(*req, resp, reactor); });
  }

  grpc::ServerUnaryReactor* CreateQueue(grpc::CallbackServerContext* ctx,
                                        const v1::CreateQueueRequest* req,
                                        v1::Queue* resp) override {
    resp->set_name(req->name());
    auto* reactor = ctx->DefaultReactor();
    reactor->Finish(grpc::Status::OK);
    return reactor;
  }

 private:
  // Refuses the call with INVALID_ARGUMENT and refusal as its message, or (refusal null) hands
  // it to submit, which finishes it later.
  template <typename Submit>
  static grpc::ServerUnaryReactor* Answer(grpc::CallbackServerContext* ctx, const char* refusal,
                                          Submit submit) {
    auto* reactor = ctx->DefaultReactor();
    if (refusal != nullptr) {
      reactor->Finish({grpc::StatusCode::INVALID_ARGUMENT, refusal});
    } else {
      submit(reactor);
    }
    return reactor;
  }

  AppendLog* log_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "spool-append-server: Enqueue, Lease and Ack as appends to one file with a group "
      "fdatasync and next to nothing else, over gRPC as spoold serves them: the ceiling "
      "spoold is measured against."};
  std::string listen = "127.0.0.1:0", data_dir, port_file;
  app.add_option("--listen", listen, "HOST:PORT to serve on (port 0: any free port)")
      ->capture_default_str();
  app.add_option("--data-dir", data_dir, "Directory for the append-only file (created)")
      ->required();
  app.add_option("--port-file", port_file, "Write the port served on to this file once serving");
  bool no_fsync = false;
  app.add_flag("--no-fsync", no_fsync,
               "Write each group without fdatasync: what the replies after a hand-off to "
               "another thread cost alone, without the disk");
  CLI11_PARSE(app, argc, argv);

  std::error_code ec;
  std::filesystem::create_directories(data_dir, ec);
  std::string path = data_dir + "/append.log";
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  if (fd < 0) {
    std::fprintf(stderr, "spool-append-server: cannot open %s: %s\n", path.c_str(),
                 std::strerror(errno));
    return 1;
  }

  sigset_t signals = spool::bench::BlockStopSignals();

  AppendLog log(fd, !no_fsync);
  Service service(&log);
  grpc::EnableDefaultHealthCheckService(true);
  grpc::ServerBuilder builder;
  int port = 0;
  builder.AddListeningPort(listen, grpc::InsecureServerCredentials(), &port);
  builder.RegisterService(&service);
  auto server = builder.BuildAndStart();
  if (!server || port == 0) {
    std::fprintf(stderr, "spool-append-server: cannot listen on %s\n", listen.c_str());
    return 1;
  }
  std::fprintf(stderr, "spool-append-server: serving on port %d, appending to %s\n", port,
               path.c_str());
  spool::bench::WritePortFile(port_file, port);
  spool::bench::WaitForStopSignal(signals);
  server->Shutdown();
  log.Stop();
  close(fd);
  return 0;
}
