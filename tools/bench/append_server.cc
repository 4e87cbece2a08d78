// spool-append-server: the least a durable queue server can do, as a ceiling for spoold's
// single-message Enqueue (issue 4, target 2).
//
// It serves spool.v1 Enqueue the way spoold does: gRPC's callback API; the handler adds the
// call's messages to the group being formed and returns; one commit thread writes each group
// with one write() and one fdatasync(); one completion thread then sends the group's replies
// (Finish). It stores nothing else: each message is appended to one file as a 4-byte length
// and its payload, with no index, no RocksDB, no queues (CreateQueue answers OK to any name;
// every other RPC is UNIMPLEMENTED). spool-bench's produce against it therefore measures what
// gRPC's calls plus a group fsync allow on this machine, with the same client and the same
// bytes as a run against spoold: the share of spoold's time that its engine costs is the gap.
//
//   spool-append-server --listen 127.0.0.1:0 --data-dir /tmp/append --port-file /tmp/p
//   spool-bench --server 127.0.0.1:PORT --workload produce --producers 4 --inflight 16 --batch 1
//
// With --no-fsync the groups are written without fdatasync: gRPC and the hand-off of replies to
// another thread alone. It has the health service, so spool-bench's noop phase runs against it
// too. Not a queue: nothing it wrote can be read back through it.
#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <grpcpp/health_check_service_interface.h>
#include <pthread.h>
#include <signal.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "engine/coding.h"
#include "spool/v1/queue.grpc.pb.h"

namespace {

namespace v1 = spool::v1;

// A group of calls: their bytes, written together, and the replies to send once they are durable.
struct Group {
  std::string bytes;
  std::vector<grpc::ServerUnaryReactor*> reactors;
};

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

  // Adds req's messages to the forming group, and their ids to resp; reactor is finished once
  // the group is durable (or with UNAVAILABLE if it could not be made so).
  void Submit(const v1::EnqueueRequest& req, v1::EnqueueResponse* resp,
              grpc::ServerUnaryReactor* reactor) {
    std::lock_guard<std::mutex> l(mu_);
    for (const auto& m : req.messages()) {
      uint32_t n = static_cast<uint32_t>(m.payload().size());
      forming_.bytes.append(reinterpret_cast<const char*>(&n), sizeof n);
      forming_.bytes.append(m.payload());
      resp->add_results()->set_message_id(spool::engine::FormatMessageId(++seq_));
    }
    forming_.reactors.push_back(reactor);
    formed_.notify_one();
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
      std::vector<std::pair<std::vector<grpc::ServerUnaryReactor*>, bool>> done;
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
  std::vector<std::pair<std::vector<grpc::ServerUnaryReactor*>, bool>> done_;
  uint64_t seq_ = 0;
  bool stopping_ = false;
  bool stopped_writing_ = false;
  std::thread commit_, complete_;
};

class Service final : public v1::QueueService::CallbackService {
 public:
  explicit Service(AppendLog* log) : log_(log) {}

  grpc::ServerUnaryReactor* Enqueue(grpc::CallbackServerContext* ctx, const v1::EnqueueRequest* req,
                                    v1::EnqueueResponse* resp) override {
    auto* reactor = ctx->DefaultReactor();
    if (req->messages().empty()) {
      reactor->Finish({grpc::StatusCode::INVALID_ARGUMENT, "messages: at least one is needed"});
    } else {
      log_->Submit(*req, resp, reactor);
    }
    return reactor;
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
  AppendLog* log_;
};

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "spool-append-server: Enqueue as an append to one file with a group fdatasync and nothing "
      "else, over gRPC as spoold serves it: the ceiling spoold's Enqueue is measured against."};
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

  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);

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
  if (!port_file.empty()) {
    std::string tmp = port_file + ".tmp";
    std::ofstream(tmp) << port << "\n";
    std::filesystem::rename(tmp, port_file);
  }

  int sig = 0;
  sigwait(&signals, &sig);
  server->Shutdown();
  log.Stop();
  close(fd);
  return 0;
}
