// spoolctl's commands, one method each, over a spool.v1 stub (or, for inspect and verify, a
// stopped store). main.cc only parses flags and calls these. Every method returns the process
// exit code: 0 done, 1 the operation failed (one sentence on stderr), 2 a usage error.
#ifndef SPOOL_TOOLS_SPOOLCTL_COMMANDS_H_
#define SPOOL_TOOLS_SPOOLCTL_COMMANDS_H_

#include <chrono>
#include <iosfwd>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "spool/v1/queue.grpc.pb.h"

namespace google::protobuf {
class Message;
}

namespace spool::ctl {

struct Global {
  std::string server = "127.0.0.1:7420";
  bool json = false;
  int64_t timeout_ms = 10'000;
  std::string data_dir;  // offline commands only
  std::string token;     // sent as "authorization: Bearer <token>" when set
  // TLS: the CA that signed spoold's certificate (enables TLS), and for mutual TLS the
  // client's own certificate and key. PEM file paths.
  std::string tls_ca, tls_cert, tls_key;
};

// Queue settings given on the command line; unset ones are left as they are (update) or to
// the server's defaults (create).
struct ConfigFlags {
  std::optional<int64_t> visibility_timeout_ms, retention_ms, delay_ms, dedup_window_ms;
  std::optional<uint32_t> max_deliveries;
  std::optional<std::string> dead_letter_queue;
  std::optional<uint64_t> max_depth, max_payload_bytes;
};

struct PeekFlags {
  uint32_t limit = 20;
  std::string state;  // "", ready, leased, delayed
  std::string after;
  bool raw = false;
};

struct SendFlags {
  std::optional<std::string> payload;   // nullopt or "-": standard input
  std::vector<std::string> attributes;  // k=v
  std::optional<int64_t> delay_ms;
  std::string dedup_id;
  bool lines = false;
};

struct TailFlags {
  bool ack = false;                // ack each message once printed; else release all at the end
  uint32_t max_outstanding = 100;  // delivered and not yet settled at once
  std::optional<int64_t> visibility_ms;
  uint64_t max = 0;    // stop after this many messages (0: no limit)
  int64_t for_ms = 0;  // stop after this long (0: until interrupted)
};

struct Io {
  std::ostream& out;
  std::ostream& err;
  std::istream& in;
  bool interactive = false;  // standard input and error are a terminal: prompts, progress
  bool out_is_terminal = false;
};

class Ctl {
 public:
  Ctl(Global global, Io io);

  int Queues(const std::string& prefix);
  int Create(const std::string& name, const ConfigFlags& flags);
  int Update(const std::string& name, const ConfigFlags& flags);
  int Delete(const std::string& name, bool yes);
  int Stats(const std::string& name);
  int Peek(const std::string& name, const PeekFlags& flags);
  int Send(const std::string& name, const SendFlags& flags);
  int Lease(const std::string& name, uint32_t max, std::optional<int64_t> visibility_ms,
            std::optional<int64_t> wait_ms);
  int Ack(const std::string& name, const std::vector<std::string>& receipts);
  int Nack(const std::string& name, const std::vector<std::string>& receipts,
           std::optional<int64_t> delay_ms);
  int Extend(const std::string& name, const std::vector<std::string>& receipts,
             int64_t visibility_ms);
  int Purge(const std::string& name, bool yes);
  // Moves up to max (0: all) messages, batch by batch, at most rate per second (0: no limit).
  int Redrive(const std::string& from, const std::string& to, uint64_t max, double rate);
  int DeleteMessage(const std::string& name, const std::string& id);
  // Subscribes and prints each message as it is pushed, until interrupted, --max or --for.
  int Tail(const std::string& name, const TailFlags& flags);
  // Refreshes every interval until interrupted, or after iterations frames when > 0.
  int Watch(const std::vector<std::string>& names, int64_t interval_ms, int iterations);
  int Health();
  int Inspect();
  int Verify();

 private:
  std::unique_ptr<grpc::ClientContext> Context(int64_t extra_ms = 0);
  // Prints the one-sentence error for a failed call and returns 1. flags maps contract field
  // names (config.visibility_timeout) to the flags that set them (--visibility-timeout).
  int Fail(const grpc::Status& status, const std::map<std::string, std::string>& flags = {});
  int Fail(const std::string& sentence);
  void PrintJson(const google::protobuf::Message& m);
  // On a terminal, asks for the queue name; elsewhere, requires --yes. Returns 0 to go on.
  int Confirm(const std::string& verb, const std::string& name, uint64_t messages, bool yes);
  int Outcomes(const google::protobuf::RepeatedPtrField<v1::ReceiptOutcome>& results,
               const google::protobuf::Message& response);
  grpc::Status FetchQueues(const std::string& prefix, std::vector<v1::Queue>* out);

  Global global_;
  Io io_;
  std::unique_ptr<v1::QueueService::Stub> stub_;
  std::shared_ptr<grpc::Channel> channel_;
};

}  // namespace spool::ctl

#endif  // SPOOL_TOOLS_SPOOLCTL_COMMANDS_H_
