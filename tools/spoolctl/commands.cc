#include "tools/spoolctl/commands.h"

#include <google/protobuf/util/json_util.h>
#include <grpcpp/grpcpp.h>
#include <unistd.h>

#include <atomic>
#include <csignal>
#include <deque>
#include <fstream>
#include <iostream>
#include <mutex>
#include <sstream>
#include <thread>

#include "engine/clock.h"
#include "engine/offline.h"
#include "grpc/health/v1/health.grpc.pb.h"
#include "server/convert.h"
#include "tools/spoolctl/format.h"
#include "tools/spoolctl/output.pb.h"

namespace spool::ctl {
namespace {

using Flags = std::map<std::string, std::string>;

const Flags kConfigFlags = {
    {"config.visibility_timeout", "--visibility-timeout"},
    {"config.max_deliveries", "--max-deliveries"},
    {"config.dead_letter_queue", "--dead-letter"},
    {"config.retention", "--retention"},
    {"config.delay", "--delay"},
    {"config.max_payload_bytes", "--max-payload"},
    {"config.max_depth", "--max-depth"},
    {"config.dedup_window", "--dedup-window"},
};

int64_t NowMs() { return engine::SystemClock()->NowMillis(); }

int64_t ToMs(const google::protobuf::Duration& d) {
  return d.seconds() * 1000 + d.nanos() / 1'000'000;
}
int64_t ToMs(const google::protobuf::Timestamp& t) {
  return t.seconds() * 1000 + t.nanos() / 1'000'000;
}
google::protobuf::Duration FromMs(int64_t ms) {
  google::protobuf::Duration d;
  server::ToDuration(ms, &d);
  return d;
}

std::string StateName(v1::MessageState s) {
  switch (s) {
    case v1::MESSAGE_STATE_READY:
      return "ready";
    case v1::MESSAGE_STATE_LEASED:
      return "leased";
    case v1::MESSAGE_STATE_DELAYED:
      return "delayed";
    default:
      return "?";
  }
}

std::string OutcomeName(v1::Outcome o) {
  switch (o) {
    case v1::OUTCOME_OK:
      return "ok";
    case v1::OUTCOME_LEASE_LOST:
      return "lease lost";
    case v1::OUTCOME_INVALID_RECEIPT:
      return "invalid receipt";
    default:
      return "?";
  }
}

std::string Attributes(const google::protobuf::Map<std::string, std::string>& attrs) {
  std::map<std::string, std::string> sorted(attrs.begin(), attrs.end());
  std::string out;
  for (const auto& [k, v] : sorted) out += (out.empty() ? "" : ",") + k + "=" + v;
  return out.empty() ? "-" : out;
}

void ApplyFlags(const ConfigFlags& f, v1::QueueConfig* c) {
  if (f.visibility_timeout_ms) *c->mutable_visibility_timeout() = FromMs(*f.visibility_timeout_ms);
  if (f.retention_ms) *c->mutable_retention() = FromMs(*f.retention_ms);
  if (f.delay_ms) *c->mutable_delay() = FromMs(*f.delay_ms);
  if (f.dedup_window_ms) *c->mutable_dedup_window() = FromMs(*f.dedup_window_ms);
  if (f.max_deliveries) c->set_max_deliveries(*f.max_deliveries);
  if (f.dead_letter_queue) c->set_dead_letter_queue(*f.dead_letter_queue);
  if (f.max_depth) c->set_max_depth(*f.max_depth);
  if (f.max_payload_bytes) c->set_max_payload_bytes(static_cast<uint32_t>(*f.max_payload_bytes));
}

std::string Count(uint64_t n) { return std::to_string(n); }

volatile std::sig_atomic_t g_interrupted = 0;

}  // namespace

Ctl::Ctl(Global global, Io io) : global_(std::move(global)), io_(io) {
  if (global_.data_dir.empty()) {
    grpc::ChannelArguments args;
    args.SetMaxReceiveMessageSize(64 << 20);
    std::shared_ptr<grpc::ChannelCredentials> creds = grpc::InsecureChannelCredentials();
    if (!global_.tls_ca.empty()) {
      auto read = [](const std::string& path) {
        std::ifstream in(path);
        return std::string(std::istreambuf_iterator<char>(in), {});
      };
      grpc::SslCredentialsOptions tls;
      tls.pem_root_certs = read(global_.tls_ca);
      if (!global_.tls_cert.empty()) {
        tls.pem_cert_chain = read(global_.tls_cert);
        tls.pem_private_key = read(global_.tls_key);
      }
      creds = grpc::SslCredentials(tls);
    }
    channel_ = grpc::CreateCustomChannel(global_.server, creds, args);
    stub_ = v1::QueueService::NewStub(channel_);
  }
}

std::unique_ptr<grpc::ClientContext> Ctl::Context(int64_t extra_ms) {
  auto ctx = std::make_unique<grpc::ClientContext>();
  if (!global_.token.empty()) ctx->AddMetadata("authorization", "Bearer " + global_.token);
  ctx->set_deadline(std::chrono::system_clock::now() +
                    std::chrono::milliseconds(global_.timeout_ms + extra_ms));
  return ctx;
}

int Ctl::Fail(const std::string& sentence) {
  io_.err << "spoolctl: " << sentence << "\n";
  return 1;
}

int Ctl::Fail(const grpc::Status& status, const Flags& flags) {
  const std::string& msg = status.error_message();
  switch (status.error_code()) {
    case grpc::StatusCode::UNAVAILABLE:
      if (msg.find("andshake") != std::string::npos || msg.find("SSL") != std::string::npos ||
          msg.find("ssl") != std::string::npos) {
        return Fail("the TLS handshake with spoold at " + global_.server + " failed (" + msg +
                    "); check --tls-ca, --tls-cert and --tls-key");
      }
      if (msg.find("onnect") != std::string::npos) {
        if (msg.find("refused") != std::string::npos) {
          return Fail("cannot reach spoold at " + global_.server +
                      " (connection refused) — is it running?");
        }
        // gRPC reports a failed TLS handshake the same way as an unreachable host.
        return Fail("cannot reach spoold at " + global_.server +
                    " (cannot connect) — is it running, and if it uses TLS, do --tls-ca (and "
                    "--tls-cert/--tls-key for mutual TLS) match it?");
      }
      return Fail("spoold at " + global_.server + " is unavailable: " + msg);
    case grpc::StatusCode::UNAUTHENTICATED:
      return Fail("spoold at " + global_.server +
                  " needs a token (--token or SPOOL_TOKEN): " + msg);
    case grpc::StatusCode::DEADLINE_EXCEEDED:
      return Fail("spoold at " + global_.server + " did not answer within " +
                  ExactDuration(global_.timeout_ms) + " (see --timeout)");
    default:
      break;
  }
  // "config.visibility_timeout: must be ..." -> "--visibility-timeout must be ..."
  size_t colon = msg.find(": ");
  if (colon != std::string::npos) {
    auto flag = flags.find(msg.substr(0, colon));
    if (flag != flags.end()) return Fail(flag->second + " " + msg.substr(colon + 2));
  }
  return Fail(msg);
}

void Ctl::PrintJson(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  options.add_whitespace = true;
  std::string json;
  (void)google::protobuf::util::MessageToJsonString(m, &json, options);
  io_.out << json;
  if (json.empty() || json.back() != '\n') io_.out << "\n";
}

int Ctl::Confirm(const std::string& verb, const std::string& name, uint64_t messages, bool yes) {
  if (yes) return 0;
  if (!io_.interactive) {
    io_.err << "spoolctl: refusing to " << verb << " \"" << name
            << "\" without --yes (not on a terminal, so there is nobody to ask)\n";
    return 2;
  }
  io_.err << "This will " << verb << " \"" << name << "\", removing " << messages
          << " messages for good.\nType the queue name to confirm: ";
  io_.err.flush();
  std::string answer;
  std::getline(io_.in, answer);
  if (answer != name) {
    io_.err << "spoolctl: not confirmed; nothing was changed\n";
    return 1;
  }
  return 0;
}

grpc::Status Ctl::FetchQueues(const std::string& prefix, std::vector<v1::Queue>* out) {
  std::string token;
  do {
    v1::ListQueuesRequest req;
    req.set_prefix(prefix);
    req.set_page_size(1000);
    req.set_page_token(token);
    v1::ListQueuesResponse resp;
    grpc::Status s = stub_->ListQueues(Context().get(), req, &resp);
    if (!s.ok()) return s;
    for (auto& q : *resp.mutable_queues()) out->push_back(std::move(q));
    token = resp.next_page_token();
  } while (!token.empty());
  return grpc::Status::OK;
}

int Ctl::Queues(const std::string& prefix) {
  std::vector<v1::Queue> queues;
  if (auto s = FetchQueues(prefix, &queues); !s.ok()) return Fail(s, {{"prefix", "--prefix"}});
  QueueList list;
  Totals& t = *list.mutable_totals();
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "READY", "LEASED", "DELAYED", "TOTAL", "OLDEST READY", "DEAD-LETTER"}};
  for (const auto& q : queues) {
    const v1::QueueStats& s = q.stats();
    t.set_ready(t.ready() + s.ready());
    t.set_leased(t.leased() + s.leased());
    t.set_delayed(t.delayed() + s.delayed());
    t.set_total(t.total() + s.total());
    rows.push_back({q.name(), Count(s.ready()), Count(s.leased()), Count(s.delayed()),
                    Count(s.total()), s.ready() ? Age(ToMs(s.oldest_ready_age())) : "-",
                    q.config().dead_letter_queue().empty() ? "-" : q.config().dead_letter_queue()});
    *list.add_queues() = q;
  }
  if (global_.json) {
    PrintJson(list);
    return 0;
  }
  rows.push_back({std::to_string(queues.size()) + (queues.size() == 1 ? " queue" : " queues"),
                  Count(t.ready()), Count(t.leased()), Count(t.delayed()), Count(t.total()), "",
                  ""});
  io_.out << Table(rows);
  return 0;
}

int Ctl::Create(const std::string& name, const ConfigFlags& flags) {
  v1::CreateQueueRequest req;
  req.set_name(name);
  ApplyFlags(flags, req.mutable_config());
  v1::Queue q;
  if (auto s = stub_->CreateQueue(Context().get(), req, &q); !s.ok()) return Fail(s, kConfigFlags);
  if (global_.json) {
    PrintJson(q);
  } else {
    io_.out << "queue \"" << name << "\" is ready\n";
  }
  return 0;
}

int Ctl::Update(const std::string& name, const ConfigFlags& flags) {
  // UpdateQueue replaces the whole config; the command changes only the flags given.
  v1::GetQueueRequest get;
  get.set_name(name);
  v1::Queue current;
  if (auto s = stub_->GetQueue(Context().get(), get, &current); !s.ok()) return Fail(s);
  v1::UpdateQueueRequest req;
  req.set_name(name);
  *req.mutable_config() = current.config();
  ApplyFlags(flags, req.mutable_config());
  if (flags.max_deliveries && *flags.max_deliveries == 0 && !flags.dead_letter_queue) {
    req.mutable_config()->clear_dead_letter_queue();  // turning dead-lettering off
  }
  v1::Queue q;
  if (auto s = stub_->UpdateQueue(Context().get(), req, &q); !s.ok()) return Fail(s, kConfigFlags);
  if (global_.json) {
    PrintJson(q);
  } else {
    io_.out << "queue \"" << name << "\" updated\n";
  }
  return 0;
}

int Ctl::Delete(const std::string& name, bool yes) {
  v1::GetQueueRequest get;
  get.set_name(name);
  v1::Queue current;
  if (auto s = stub_->GetQueue(Context().get(), get, &current); !s.ok()) return Fail(s);
  if (current.stats().total() > 0) {
    if (int rc = Confirm("delete", name, current.stats().total(), yes); rc != 0) return rc;
  }
  v1::DeleteQueueRequest req;
  req.set_name(name);
  v1::DeleteQueueResponse resp;
  if (auto s = stub_->DeleteQueue(Context().get(), req, &resp); !s.ok()) return Fail(s);
  if (global_.json) {
    PrintJson(resp);
  } else {
    io_.out << "queue \"" << name << "\" deleted (" << Plural(current.stats().total(), "message")
            << " removed)\n";
  }
  return 0;
}

int Ctl::Stats(const std::string& name) {
  v1::GetQueueRequest req;
  req.set_name(name);
  v1::Queue q;
  if (auto s = stub_->GetQueue(Context().get(), req, &q); !s.ok()) return Fail(s);
  if (global_.json) {
    PrintJson(q);
    return 0;
  }
  const v1::QueueConfig& c = q.config();
  const v1::QueueStats& s = q.stats();
  std::vector<std::vector<std::string>> rows = {
      {"queue", q.name()},
      {"created", Time(ToMs(q.create_time()))},
      {"", ""},
      {"ready", Count(s.ready())},
      {"leased", Count(s.leased())},
      {"delayed", Count(s.delayed())},
      {"total", Count(s.total())},
      {"oldest ready", s.ready() ? Age(ToMs(s.oldest_ready_age())) : "-"},
      {"", ""},
      {"enqueued", Count(s.enqueued_total())},
      {"delivered", Count(s.delivered_total())},
      {"acked", Count(s.acked_total())},
      {"nacked", Count(s.nacked_total())},
      {"dead-lettered", Count(s.dead_lettered_total())},
      {"expired", Count(s.expired_total())},
      {"purged", Count(s.purged_total())},
      {"deleted", Count(s.deleted_total())},
      {"moved out", Count(s.moved_total())},
      {"", ""},
      {"visibility timeout", ExactDuration(ToMs(c.visibility_timeout()))},
      {"max deliveries", c.max_deliveries() ? Count(c.max_deliveries()) : "unlimited"},
      {"dead-letter queue", c.dead_letter_queue().empty() ? "-" : c.dead_letter_queue()},
      {"retention", ToMs(c.retention()) ? ExactDuration(ToMs(c.retention())) : "until acked"},
      {"delay", ExactDuration(ToMs(c.delay()))},
      {"max payload", Bytes(c.max_payload_bytes())},
      {"max depth", c.max_depth() ? Count(c.max_depth()) : "unlimited"},
      {"dedup window", ExactDuration(ToMs(c.dedup_window()))},
  };
  for (const auto& row : rows) {
    if (row[0].empty()) {
      io_.out << "\n";
    } else {
      std::string label = row[0] + ":";
      label.resize(std::max<size_t>(label.size(), 20), ' ');
      io_.out << label << row[1] << "\n";
    }
  }
  return 0;
}

int Ctl::Peek(const std::string& name, const PeekFlags& flags) {
  std::map<std::string, v1::MessageState> states = {{"ready", v1::MESSAGE_STATE_READY},
                                                    {"leased", v1::MESSAGE_STATE_LEASED},
                                                    {"delayed", v1::MESSAGE_STATE_DELAYED}};
  v1::PeekResponse found;
  std::string after = flags.after;
  uint32_t want = flags.raw ? 1 : flags.limit;
  // Pages through the queue until enough messages of the asked state are found.
  for (;;) {
    v1::PeekRequest req;
    req.set_queue(name);
    req.set_max_messages(flags.state.empty() ? std::min<uint32_t>(want, 1000) : 1000);
    req.set_start_after(after);
    v1::PeekResponse page;
    if (auto s = stub_->Peek(Context().get(), req, &page); !s.ok()) {
      return Fail(s, {{"start_after", "--after"}, {"max_messages", "--limit"}});
    }
    for (auto& m : *page.mutable_messages()) {
      if (found.messages_size() == static_cast<int>(want)) break;
      if (flags.state.empty() || m.state() == states[flags.state]) {
        *found.add_messages() = std::move(m);
      }
    }
    after = page.next_start_after();
    if (found.messages_size() == static_cast<int>(want) || after.empty()) break;
  }
  if (found.messages_size() == static_cast<int>(want) && !after.empty()) {
    found.set_next_start_after(found.messages(found.messages_size() - 1).message_id());
  }
  if (flags.raw) {
    if (found.messages_size() == 0) return Fail("no message to print in queue \"" + name + "\"");
    io_.out << found.messages(0).payload();
    return 0;
  }
  if (global_.json) {
    PrintJson(found);
    return 0;
  }
  int64_t now = NowMs();
  // Messages that were dead-lettered say where from.
  bool from = false;
  for (const auto& m : found.messages()) from |= !m.dead_letter_source_queue().empty();
  std::vector<std::vector<std::string>> rows = {
      {"ID", "STATE", "DELIVERIES", "AGE", "VISIBLE", "ATTRIBUTES", "PAYLOAD"}};
  if (from) rows[0].insert(rows[0].begin() + 6, "FROM");
  for (const auto& m : found.messages()) {
    int64_t visible = ToMs(m.visible_time());
    rows.push_back({m.message_id(), StateName(m.state()), Count(m.delivery_count()),
                    Age(now - ToMs(m.enqueue_time())),
                    visible <= now ? "now" : "in " + Age(visible - now), Attributes(m.attributes()),
                    Preview(m.payload(), 60)});
    if (from) {
      rows.back().insert(rows.back().begin() + 6,
                         m.dead_letter_source_queue().empty()
                             ? "-"
                             : m.dead_letter_source_queue() + "/" + m.dead_letter_source_id());
    }
  }
  io_.out << Table(rows);
  if (!found.next_start_after().empty()) {
    io_.out << "more: spoolctl peek " << name << " --after " << found.next_start_after() << "\n";
  }
  return 0;
}

int Ctl::Send(const std::string& name, const SendFlags& flags) {
  v1::EnqueueEntry base;
  for (const auto& kv : flags.attributes) {
    size_t eq = kv.find('=');
    if (eq == std::string::npos || eq == 0) {
      io_.err << "spoolctl: --attr \"" << kv << "\" is not key=value\n";
      return 2;
    }
    (*base.mutable_attributes())[kv.substr(0, eq)] = kv.substr(eq + 1);
  }
  if (flags.delay_ms) *base.mutable_delay() = FromMs(*flags.delay_ms);
  Flags field_flags = {{"messages[0].delay", "--delay"},
                       {"messages[0].dedup_id", "--dedup-id"},
                       {"messages[0].attributes", "--attr"}};
  SendResult result;
  // Counts what the server stored and what it turned away as duplicates.
  auto count = [&](const google::protobuf::RepeatedPtrField<v1::EnqueueResult>& results) {
    for (const auto& r : results) {
      if (r.duplicate()) {
        result.set_duplicates(result.duplicates() + 1);
      } else {
        result.set_sent(result.sent() + 1);
      }
    }
  };

  if (!flags.lines) {
    v1::EnqueueRequest req;
    req.set_queue(name);
    v1::EnqueueEntry* e = req.add_messages();
    *e = base;
    e->set_dedup_id(flags.dedup_id);
    if (flags.payload && *flags.payload != "-") {
      e->set_payload(*flags.payload);
    } else {
      std::ostringstream buf;
      buf << io_.in.rdbuf();
      e->set_payload(buf.str());
    }
    v1::EnqueueResponse resp;
    grpc::Status s = stub_->Enqueue(Context().get(), req, &resp);
    if (!s.ok()) return Fail(s, field_flags);
    count(resp.results());
    *result.mutable_results() = std::move(*resp.mutable_results());
    if (global_.json) {
      PrintJson(result);
    } else {
      const v1::EnqueueResult& r = result.results(0);
      io_.out << r.message_id() << (r.duplicate() ? " (duplicate: already enqueued)" : "") << "\n";
    }
    return 0;
  }

  // One message per line of standard input, in batches of up to 1000 lines or ~1 MiB, over
  // one Publish stream with up to kInFlight batches unanswered.
  constexpr size_t kInFlight = 8;
  grpc::ClientContext ctx;  // no deadline: standard input may come slowly
  if (!global_.token.empty()) ctx.AddMetadata("authorization", "Bearer " + global_.token);
  auto stream = stub_->Publish(&ctx);
  std::deque<std::pair<uint64_t, uint64_t>> in_flight;  // first and last line of each batch
  // The stream ended early: its status says why.
  auto ended = [&]() {
    ctx.TryCancel();
    grpc::Status s = stream->Finish();
    return Fail(
        s.ok() ? grpc::Status(grpc::StatusCode::UNKNOWN, "the Publish stream ended early") : s,
        field_flags);
  };
  // A refused batch stops reading standard input; batches already in flight behind it are
  // still answered (some may be stored), and every refused range is reported at the end.
  std::optional<grpc::Status> refused;
  std::vector<std::pair<uint64_t, uint64_t>> refused_lines;
  auto answer = [&]() -> int {
    v1::PublishResponse resp;
    if (!stream->Read(&resp)) return ended();
    auto lines = in_flight.front();
    in_flight.pop_front();
    if (resp.code() != 0) {
      if (!refused) {
        refused = grpc::Status(static_cast<grpc::StatusCode>(resp.code()), resp.error());
      }
      refused_lines.push_back(lines);
      return 0;
    }
    count(resp.results());
    if (io_.interactive) io_.err << "\rsent " << result.sent() << " messages" << std::flush;
    return 0;
  };
  v1::PublishRequest req;
  req.set_queue(name);
  size_t bytes = 0;
  std::string line;
  uint64_t line_no = 0, sequence = 0;
  auto flush = [&]() -> int {
    if (req.messages_size() == 0) return 0;
    req.set_sequence(sequence++);
    in_flight.emplace_back(line_no - req.messages_size() + 1, line_no);
    if (!stream->Write(req)) return ended();
    req.clear_messages();
    req.clear_queue();  // named once, on the first request
    bytes = 0;
    return in_flight.size() >= kInFlight ? answer() : 0;
  };
  while (!refused && std::getline(io_.in, line)) {
    ++line_no;
    v1::EnqueueEntry* e = req.add_messages();
    *e = base;
    if (!flags.dedup_id.empty()) e->set_dedup_id(flags.dedup_id + ":" + std::to_string(line_no));
    bytes += line.size();
    e->set_payload(std::move(line));
    if (req.messages_size() == 1000 || bytes >= (1 << 20)) {
      if (int rc = flush(); rc != 0) return rc;
    }
  }
  if (!refused) {
    if (int rc = flush(); rc != 0) return rc;
  }
  stream->WritesDone();
  while (!in_flight.empty()) {
    if (int rc = answer(); rc != 0) return rc;
  }
  if (grpc::Status s = stream->Finish(); !s.ok()) return Fail(s, field_flags);
  if (refused) {
    if (io_.interactive) io_.err << "\n";
    for (auto [first, last] : refused_lines) {
      io_.err << "spoolctl: lines " << first << "-" << last << " of standard input were not sent\n";
    }
    io_.err << "spoolctl: " << Plural(result.sent(), "message") << " sent to \"" << name
            << "\"; reading standard input stopped at line " << line_no << "\n";
    return Fail(*refused, field_flags);
  }
  if (io_.interactive) io_.err << "\n";
  if (global_.json) {
    PrintJson(result);
  } else {
    io_.out << "sent " << Plural(result.sent(), "message") << " to \"" << name << "\"";
    if (result.duplicates()) io_.out << " (" << result.duplicates() << " duplicates skipped)";
    io_.out << "\n";
  }
  return 0;
}

int Ctl::Lease(const std::string& name, uint32_t max, std::optional<int64_t> visibility_ms,
               std::optional<int64_t> wait_ms) {
  v1::LeaseRequest req;
  req.set_queue(name);
  req.set_max_messages(max);
  if (visibility_ms) *req.mutable_visibility_timeout() = FromMs(*visibility_ms);
  if (wait_ms) *req.mutable_wait_time() = FromMs(*wait_ms);
  v1::LeaseResponse resp;
  grpc::Status s = stub_->Lease(Context(wait_ms.value_or(0)).get(), req, &resp);
  if (!s.ok()) {
    return Fail(s, {{"visibility_timeout", "--visibility-timeout"},
                    {"wait_time", "--wait"},
                    {"max_messages", "--max"}});
  }
  if (global_.json) {
    PrintJson(resp);
    return 0;
  }
  if (resp.messages_size() == 0) {
    io_.err << "no message was ready in \"" << name << "\"\n";
    return 0;
  }
  int64_t now = NowMs();
  std::vector<std::vector<std::string>> rows = {
      {"ID", "DELIVERIES", "LEASED FOR", "RECEIPT", "PAYLOAD"}};
  for (const auto& m : resp.messages()) {
    rows.push_back({m.message_id(), Count(m.delivery_count()), Age(ToMs(m.lease_deadline()) - now),
                    m.receipt(), Preview(m.payload(), 40)});
  }
  io_.out << Table(rows);
  return 0;
}

int Ctl::Outcomes(const google::protobuf::RepeatedPtrField<v1::ReceiptOutcome>& results,
                  const google::protobuf::Message& response) {
  bool all_ok = true;
  for (const auto& r : results) all_ok &= r.outcome() == v1::OUTCOME_OK;
  if (global_.json) {
    PrintJson(response);
  } else {
    std::vector<std::vector<std::string>> rows = {{"RECEIPT", "OUTCOME"}};
    for (const auto& r : results) {
      std::string outcome = OutcomeName(r.outcome());
      if (r.has_lease_deadline()) outcome += ", lease until " + Time(ToMs(r.lease_deadline()));
      rows.push_back({Preview(r.receipt(), 24), outcome});
    }
    io_.out << Table(rows);
  }
  if (!all_ok) io_.err << "spoolctl: not every receipt was accepted\n";
  return all_ok ? 0 : 1;
}

int Ctl::Ack(const std::string& name, const std::vector<std::string>& receipts) {
  v1::AckRequest req;
  req.set_queue(name);
  for (const auto& r : receipts) req.add_receipts(r);
  v1::AckResponse resp;
  if (auto s = stub_->Ack(Context().get(), req, &resp); !s.ok()) return Fail(s);
  return Outcomes(resp.results(), resp);
}

int Ctl::Nack(const std::string& name, const std::vector<std::string>& receipts,
              std::optional<int64_t> delay_ms) {
  v1::NackRequest req;
  req.set_queue(name);
  for (const auto& r : receipts) req.add_receipts(r);
  if (delay_ms) *req.mutable_delay() = FromMs(*delay_ms);
  v1::NackResponse resp;
  if (auto s = stub_->Nack(Context().get(), req, &resp); !s.ok()) {
    return Fail(s, {{"delay", "--delay"}});
  }
  return Outcomes(resp.results(), resp);
}

int Ctl::Extend(const std::string& name, const std::vector<std::string>& receipts,
                int64_t visibility_ms) {
  v1::ExtendLeaseRequest req;
  req.set_queue(name);
  for (const auto& r : receipts) req.add_receipts(r);
  *req.mutable_visibility_timeout() = FromMs(visibility_ms);
  v1::ExtendLeaseResponse resp;
  if (auto s = stub_->ExtendLease(Context().get(), req, &resp); !s.ok()) {
    return Fail(s, {{"visibility_timeout", "--visibility-timeout"}});
  }
  return Outcomes(resp.results(), resp);
}

int Ctl::Purge(const std::string& name, bool yes) {
  v1::GetQueueRequest get;
  get.set_name(name);
  v1::Queue current;
  if (auto s = stub_->GetQueue(Context().get(), get, &current); !s.ok()) return Fail(s);
  if (int rc = Confirm("purge", name, current.stats().total(), yes); rc != 0) return rc;
  v1::PurgeQueueRequest req;
  req.set_name(name);
  v1::PurgeQueueResponse resp;
  if (auto s = stub_->PurgeQueue(Context().get(), req, &resp); !s.ok()) return Fail(s);
  PurgeResult result;
  result.set_queue(name);
  result.set_purged(resp.purged());
  if (global_.json) {
    PrintJson(result);
  } else {
    io_.out << "purged " << Plural(resp.purged(), "message") << " from \"" << name << "\"\n";
  }
  return 0;
}

int Ctl::Redrive(const std::string& from, const std::string& to, uint64_t max, double rate) {
  RedriveResult result;
  result.set_from(from);
  result.set_to(to);
  auto start = std::chrono::steady_clock::now();
  for (;;) {
    uint64_t batch = 100;
    if (max > 0) batch = std::min<uint64_t>(batch, max - result.moved());
    if (rate > 0)
      batch = std::min<uint64_t>(batch, std::max<uint64_t>(1, static_cast<uint64_t>(rate)));
    if (batch == 0) break;
    if (rate > 0) {
      // Open-loop pacing: batch k may start no earlier than moved / rate seconds in.
      auto due = start + std::chrono::microseconds(static_cast<int64_t>(
                             1e6 * static_cast<double>(result.moved()) / rate));
      std::this_thread::sleep_until(due);
    }
    v1::MoveMessagesRequest req;
    req.set_source(from);
    req.set_destination(to);
    req.set_max_messages(static_cast<uint32_t>(batch));
    v1::MoveMessagesResponse resp;
    grpc::Status s = stub_->MoveMessages(Context().get(), req, &resp);
    if (!s.ok()) {
      if (io_.interactive) io_.err << "\n";
      io_.err << "spoolctl: moved " << Plural(result.moved(), "message") << " before this error\n";
      return Fail(s, {{"destination", "--to"}, {"max_messages", "--max"}});
    }
    result.set_moved(result.moved() + resp.moved_size());
    for (auto& m : *resp.mutable_moved()) *result.add_messages() = std::move(m);
    if (io_.interactive) io_.err << "\rmoved " << result.moved() << std::flush;
    if (resp.moved_size() < static_cast<int>(batch)) break;  // nothing more is ready
  }
  if (io_.interactive) io_.err << "\n";
  if (global_.json) {
    PrintJson(result);
  } else {
    io_.out << "moved " << Plural(result.moved(), "message") << " from \"" << from << "\" to \""
            << to << "\"\n";
  }
  return 0;
}

int Ctl::DeleteMessage(const std::string& name, const std::string& id) {
  v1::DeleteMessageRequest req;
  req.set_queue(name);
  req.set_message_id(id);
  v1::DeleteMessageResponse resp;
  if (auto s = stub_->DeleteMessage(Context().get(), req, &resp); !s.ok()) return Fail(s);
  if (global_.json) {
    PrintJson(resp);
  } else {
    io_.out << "message " << id << " deleted from \"" << name << "\"\n";
  }
  return 0;
}

int Ctl::Tail(const std::string& name, const TailFlags& flags) {
  const Flags field_flags = {{"max_outstanding", "--max-outstanding"},
                             {"visibility_timeout", "--visibility-timeout"}};
  g_interrupted = 0;
  // The first Ctrl-C ends the stream cleanly; a second one, if spoold does not answer, exits.
  auto on_signal = [](int) {
    if (g_interrupted) _exit(130);
    g_interrupted = 1;
  };
  std::signal(SIGINT, on_signal);
  std::signal(SIGTERM, on_signal);
  grpc::ClientContext ctx;  // no deadline: a tail runs until told to stop
  if (!global_.token.empty()) ctx.AddMetadata("authorization", "Bearer " + global_.token);
  auto stream = stub_->Subscribe(&ctx);
  v1::SubscribeRequest first;
  first.set_queue(name);
  first.set_max_outstanding(flags.max_outstanding);
  if (flags.visibility_ms) *first.mutable_visibility_timeout() = FromMs(*flags.visibility_ms);
  stream->Write(first);  // a failure shows in Read and Finish

  // Writes come from this thread (acks) and from the stopper (WritesDone), never at once.
  std::mutex write_mu;
  bool closed = false;
  auto close = [&]() {
    std::lock_guard<std::mutex> lock(write_mu);
    if (!closed) stream->WritesDone();
    closed = true;
  };
  std::atomic<bool> done{false};
  auto stop_at = flags.for_ms > 0
                     ? std::chrono::steady_clock::now() + std::chrono::milliseconds(flags.for_ms)
                     : std::chrono::steady_clock::time_point::max();
  std::thread stopper([&]() {
    while (!done && !g_interrupted && std::chrono::steady_clock::now() < stop_at) {
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    if (!done) close();  // the server answers the acks it has, releases the rest, ends OK
  });

  google::protobuf::util::JsonPrintOptions one_line;
  one_line.preserve_proto_field_names = true;
  uint64_t printed = 0, acked = 0, lost = 0;
  v1::SubscribeResponse resp;
  while (stream->Read(&resp)) {
    for (const auto& o : resp.ack_results()) {
      if (o.outcome() == v1::OUTCOME_OK) {
        ++acked;
      } else {
        ++lost;
      }
    }
    v1::SubscribeRequest acks;
    for (const auto& m : resp.messages()) {
      {
        std::lock_guard<std::mutex> lock(write_mu);
        if (closed) break;  // not printed: the server releases it
      }
      if (global_.json) {
        std::string json;
        (void)google::protobuf::util::MessageToJsonString(m, &json, one_line);
        io_.out << json << "\n";
      } else {
        io_.out << m.message_id() << "  " << m.delivery_count() << "  " << Preview(m.payload(), 200)
                << "\n";
      }
      io_.out.flush();
      ++printed;
      if (flags.ack) acks.add_ack(m.receipt());
      if (flags.max > 0 && printed >= flags.max) {
        if (acks.ack_size() > 0) {
          std::lock_guard<std::mutex> lock(write_mu);
          stream->Write(acks);
          acks.clear_ack();
        }
        close();
        break;
      }
    }
    if (acks.ack_size() > 0) {
      std::lock_guard<std::mutex> lock(write_mu);
      if (!closed) stream->Write(acks);
    }
  }
  done = true;
  stopper.join();
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  grpc::Status s = stream->Finish();
  if (!s.ok()) return Fail(s, field_flags);
  io_.err << "spoolctl: " << Plural(printed, "message") << " from \"" << name << "\"";
  if (flags.ack) {
    io_.err << ", " << acked << " acked";
  } else {
    io_.err << ", released";
  }
  io_.err << "\n";
  if (lost > 0) {
    return Fail(Plural(lost, "ack") + " came too late: the lease had ended (lease lost)");
  }
  return 0;
}

int Ctl::Watch(const std::vector<std::string>& names, int64_t interval_ms, int iterations) {
  g_interrupted = 0;
  std::signal(SIGINT, [](int) { g_interrupted = 1; });
  std::map<std::string, v1::QueueStats> previous;
  auto previous_at = std::chrono::steady_clock::now();
  for (int frame = 0; (iterations <= 0 || frame < iterations) && !g_interrupted; ++frame) {
    if (frame > 0) {
      auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(interval_ms);
      while (!g_interrupted && std::chrono::steady_clock::now() < until) {
        std::this_thread::sleep_for(std::chrono::milliseconds(20));
      }
      if (g_interrupted) break;
    }
    std::vector<v1::Queue> queues;
    grpc::Status s;
    if (names.empty()) {
      s = FetchQueues("", &queues);
    } else {
      for (const auto& n : names) {
        v1::GetQueueRequest req;
        req.set_name(n);
        v1::Queue q;
        s = stub_->GetQueue(Context().get(), req, &q);
        if (!s.ok()) break;
        queues.push_back(std::move(q));
      }
    }
    if (!s.ok()) return Fail(s);
    auto now = std::chrono::steady_clock::now();
    double seconds = std::chrono::duration<double>(now - previous_at).count();
    WatchFrame wf;
    std::vector<std::vector<std::string>> rows = {
        {"NAME", "READY", "LEASED", "DELAYED", "TOTAL", "ENQUEUED/S", "LEASED/S", "ACKED/S"}};
    for (const auto& q : queues) {
      WatchRow* row = wf.add_rows();
      row->set_name(q.name());
      row->set_ready(q.stats().ready());
      row->set_leased(q.stats().leased());
      row->set_delayed(q.stats().delayed());
      row->set_total(q.stats().total());
      auto prev = previous.find(q.name());
      auto rate = [&](uint64_t now_v, uint64_t before) {
        return prev == previous.end() || seconds <= 0
                   ? 0.0
                   : static_cast<double>(now_v - std::min(now_v, before)) / seconds;
      };
      if (prev != previous.end()) {
        row->set_enqueued_per_second(
            rate(q.stats().enqueued_total(), prev->second.enqueued_total()));
        row->set_leased_per_second(
            rate(q.stats().delivered_total(), prev->second.delivered_total()));
        row->set_acked_per_second(rate(q.stats().acked_total(), prev->second.acked_total()));
      }
      auto fmt = [&](double v) {
        if (prev == previous.end()) return std::string("-");
        char buf[32];
        std::snprintf(buf, sizeof buf, "%.1f", v);
        return std::string(buf);
      };
      rows.push_back({q.name(), Count(row->ready()), Count(row->leased()), Count(row->delayed()),
                      Count(row->total()), fmt(row->enqueued_per_second()),
                      fmt(row->leased_per_second()), fmt(row->acked_per_second())});
      previous[q.name()] = q.stats();
    }
    previous_at = now;
    if (global_.json) {
      google::protobuf::util::JsonPrintOptions options;
      options.preserve_proto_field_names = true;
      options.always_print_primitive_fields = true;
      std::string json;
      (void)google::protobuf::util::MessageToJsonString(wf, &json, options);
      io_.out << json << "\n" << std::flush;  // one frame per line
    } else {
      if (io_.out_is_terminal) io_.out << "\x1b[H\x1b[2J";
      io_.out << "spoolctl watch — " << global_.server << " — every " << ExactDuration(interval_ms)
              << ", Ctrl-C to stop\n\n"
              << Table(rows) << std::flush;
    }
  }
  std::signal(SIGINT, SIG_DFL);
  return 0;
}

int Ctl::Health() {
  auto health = grpc::health::v1::Health::NewStub(channel_);
  grpc::health::v1::HealthCheckRequest req;
  grpc::health::v1::HealthCheckResponse resp;
  grpc::Status s = health->Check(Context().get(), req, &resp);
  if (!s.ok()) return Fail(s);
  HealthResult result;
  result.set_status(grpc::health::v1::HealthCheckResponse::ServingStatus_Name(resp.status()));
  if (global_.json) {
    PrintJson(result);
  } else {
    io_.out << result.status() << "\n";
  }
  return resp.status() == grpc::health::v1::HealthCheckResponse::SERVING ? 0 : 1;
}

namespace {

int OfflineFailure(std::ostream& err, const absl::Status& s, const std::string& dir) {
  if (s.code() == absl::StatusCode::kFailedPrecondition &&
      std::string(s.message()).find("in use") != std::string::npos) {
    err << "spoolctl: spoold is running on " << dir
        << "; stop it first, or use the online commands (spoolctl queues, spoolctl stats NAME)\n";
  } else {
    err << "spoolctl: " << s.message() << "\n";
  }
  return 1;
}

}  // namespace

int Ctl::Inspect() {
  auto report = engine::InspectStore(global_.data_dir, NowMs());
  if (!report.ok()) return OfflineFailure(io_.err, report.status(), global_.data_dir);
  InspectReport out;
  out.set_data_dir(global_.data_dir);
  out.set_disk_bytes(report->disk_bytes);
  for (const auto& q : report->queues) server::ToProto(q, out.add_queues());
  for (const auto& f : report->families) {
    Family* fam = out.add_families();
    fam->set_name(f.name);
    fam->set_live_sst_bytes(f.live_sst_bytes);
    fam->set_total_sst_bytes(f.total_sst_bytes);
    fam->set_keys_estimate(f.keys_estimate);
    fam->set_tombstones_estimate(f.tombstones_estimate);
  }
  if (global_.json) {
    PrintJson(out);
    return 0;
  }
  std::vector<std::vector<std::string>> rows = {
      {"NAME", "READY", "LEASED", "DELAYED", "TOTAL", "ENQUEUED", "ACKED", "DEAD-LETTER"}};
  for (const auto& q : out.queues()) {
    rows.push_back({q.name(), Count(q.stats().ready()), Count(q.stats().leased()),
                    Count(q.stats().delayed()), Count(q.stats().total()),
                    Count(q.stats().enqueued_total()), Count(q.stats().acked_total()),
                    q.config().dead_letter_queue().empty() ? "-" : q.config().dead_letter_queue()});
  }
  io_.out << "store " << global_.data_dir << " (" << Bytes(out.disk_bytes()) << " on disk)\n\n"
          << Table(rows) << "\n";
  std::vector<std::vector<std::string>> fams = {
      {"FAMILY", "LIVE SST", "TOTAL SST", "KEYS (EST.)", "TOMBSTONES (EST.)"}};
  for (const auto& f : out.families()) {
    fams.push_back({f.name(), Bytes(f.live_sst_bytes()), Bytes(f.total_sst_bytes()),
                    Count(f.keys_estimate()), Count(f.tombstones_estimate())});
  }
  io_.out << Table(fams);
  return 0;
}

int Ctl::Verify() {
  auto report = engine::VerifyStore(global_.data_dir);
  if (!report.ok()) return OfflineFailure(io_.err, report.status(), global_.data_dir);
  VerifyReport out;
  out.set_data_dir(global_.data_dir);
  out.set_ok(report->problems.empty());
  out.set_queues(report->queues);
  out.set_messages(report->messages);
  for (const auto& p : report->problems) out.add_problems(p);
  if (global_.json) {
    PrintJson(out);
  } else if (out.ok()) {
    io_.out << "ok: " << Plural(out.queues(), "queue") << ", " << Plural(out.messages(), "message")
            << ", every invariant holds\n";
  } else {
    for (const auto& p : out.problems()) io_.out << "problem: " << p << "\n";
    io_.out << out.problems_size() << " problems in " << global_.data_dir << "\n";
  }
  return out.ok() ? 0 : 1;
}

}  // namespace spool::ctl
