// spoolctl: the operator's command line for Spool. Flags and subcommands only; the work is in
// commands.cc.
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cstdlib>
#include <iostream>

#include "tools/spoolctl/commands.h"
#include "tools/spoolctl/format.h"

namespace {

using spool::ctl::ParseDuration;
using spool::ctl::ParseSize;

// A flag taking a duration ("30s"); a malformed one is a usage error naming the flag.
template <typename T>
CLI::Option* DurationFlag(CLI::App* app, const std::string& name, T& target,
                          const std::string& help) {
  return app->add_option_function<std::string>(
      name,
      [&target, name](const std::string& v) {
        auto ms = ParseDuration(v);
        if (!ms) {
          throw CLI::ValidationError(
              name, "\"" + v + "\" is not a duration (use 500ms, 30s, 5m, 12h, 4d)");
        }
        target = *ms;
      },
      help);
}

void ConfigOptions(CLI::App* cmd, spool::ctl::ConfigFlags& f) {
  DurationFlag(cmd, "--visibility-timeout", f.visibility_timeout_ms,
               "Lease length when a Lease does not say (1s..12h; default 30s)");
  cmd->add_option("--max-deliveries", f.max_deliveries,
                  "Deliveries before a message is dead-lettered (1..1000; 0 = unlimited)");
  cmd->add_option("--dead-letter", f.dead_letter_queue,
                  "Queue that receives messages past --max-deliveries");
  DurationFlag(cmd, "--retention", f.retention_ms,
               "Delete messages older than this (1m..365d; 0 = keep until acked)");
  DurationFlag(cmd, "--delay", f.delay_ms, "Default delay of new messages (0..30d)");
  cmd->add_option("--max-depth", f.max_depth,
                  "Refuse enqueues past this many stored messages (0 = unlimited)");
  cmd->add_option_function<std::string>(
      "--max-payload",
      [&f](const std::string& v) {
        auto n = ParseSize(v);
        if (!n)
          throw CLI::ValidationError("--max-payload", "\"" + v + "\" is not a size (256KiB, 1MiB)");
        f.max_payload_bytes = *n;
      },
      "Largest payload plus attributes (up to 4MiB; default 256KiB)");
  DurationFlag(cmd, "--dedup-window", f.dedup_window_ms,
               "How long a dedup id is remembered (1s..7d; default 5m)");
}

}  // namespace

int main(int argc, char** argv) {
  spool::ctl::Global global;
  if (const char* env = std::getenv("SPOOL_SERVER")) global.server = env;
  if (const char* env = std::getenv("SPOOL_TOKEN")) global.token = env;
  std::string output = "table";
  int64_t timeout_ms = global.timeout_ms;

  CLI::App app{"spoolctl: inspect, repair and drive Spool queues."};
  app.require_subcommand(1);
  app.footer(
      "Examples:\n"
      "  spoolctl queues\n"
      "  spoolctl create thumbnails --visibility-timeout 2m --max-deliveries 5 --dead-letter "
      "thumbnails-dead\n"
      "  spoolctl peek thumbnails-dead\n"
      "  spoolctl redrive thumbnails-dead --to thumbnails\n"
      "  spoolctl --data-dir /var/lib/spool verify      (with spoold stopped)");
  app.add_option("--server", global.server, "spoold's HOST:PORT (or SPOOL_SERVER)")
      ->capture_default_str();
  app.add_option("--output", output, "table or json (one JSON document per command)")
      ->check(CLI::IsMember({"table", "json"}))
      ->capture_default_str();
  DurationFlag(&app, "--timeout", timeout_ms, "How long to wait for spoold (default 10s)");
  app.add_option("--token", global.token,
                 "Bearer token, when spoold has --auth-file (or SPOOL_TOKEN; prefer the "
                 "variable: command lines are visible to other users)");
  app.add_option("--tls-ca", global.tls_ca, "Talk TLS, trusting this PEM CA for spoold")
      ->check(CLI::ExistingFile);
  app.add_option("--tls-cert", global.tls_cert, "PEM client certificate (mutual TLS)")
      ->check(CLI::ExistingFile);
  app.add_option("--tls-key", global.tls_key, "PEM key of --tls-cert")->check(CLI::ExistingFile);
  app.add_option("--data-dir", global.data_dir,
                 "A stopped spoold's data directory, for inspect and verify");

  spool::ctl::ConfigFlags config;
  std::string name, prefix, id, to;
  std::vector<std::string> receipts, names;
  bool yes = false;
  spool::ctl::PeekFlags peek;
  spool::ctl::SendFlags send;
  spool::ctl::TailFlags tail;
  uint32_t max = 1;
  uint64_t redrive_max = 0;
  double rate = 0;
  std::optional<int64_t> visibility, wait, delay;
  int64_t extend_visibility = 0;
  int64_t interval_ms = 1000;
  int iterations = 0;

  auto* queues = app.add_subcommand("queues", "List queues with their depth");
  queues->add_option("--prefix", prefix, "Only queues whose names start with this");
  queues->footer("Example:\n  spoolctl queues --prefix thumbnails");

  auto* create = app.add_subcommand("create", "Create a queue");
  create->add_option("NAME", name, "Queue name")->required();
  ConfigOptions(create, config);
  create->footer(
      "Example:\n  spoolctl create orders --visibility-timeout 1m --max-deliveries 5 "
      "--dead-letter orders-dead --max-depth 100000");

  auto* update = app.add_subcommand("update", "Change settings of a queue (the others stay)");
  update->add_option("NAME", name, "Queue name")->required();
  ConfigOptions(update, config);
  update->footer("Example:\n  spoolctl update orders --max-depth 500000");

  auto* del = app.add_subcommand("delete", "Delete a queue and all its messages");
  del->add_option("NAME", name, "Queue name")->required();
  del->add_flag("--yes", yes, "Do not ask for confirmation");
  del->footer("Example:\n  spoolctl delete scratch --yes");

  auto* stats = app.add_subcommand("stats", "Show a queue's settings and counters");
  stats->add_option("NAME", name, "Queue name")->required();
  stats->footer("Example:\n  spoolctl stats orders");

  auto* peekc = app.add_subcommand("peek", "Show messages without changing them");
  peekc->add_option("NAME", name, "Queue name")->required();
  peekc->add_option("--limit", peek.limit, "How many messages")
      ->check(CLI::Range(1, 100000))
      ->capture_default_str();
  peekc->add_option("--state", peek.state, "Only messages in this state")
      ->check(CLI::IsMember({"ready", "leased", "delayed"}));
  peekc->add_option("--after", peek.after, "Start after this message id");
  peekc->add_flag("--raw", peek.raw, "Write the first message's payload to stdout, byte for byte");
  peekc->footer(
      "Examples:\n  spoolctl peek orders-dead --limit 5\n"
      "  spoolctl peek orders --state leased\n"
      "  spoolctl peek orders --raw > payload.bin");

  auto* sendc = app.add_subcommand("send", "Enqueue a message (or one per line of stdin)");
  sendc->add_option("NAME", name, "Queue name")->required();
  sendc->add_option("PAYLOAD", send.payload, "The payload; - or nothing: read standard input");
  sendc->add_option("--attr", send.attributes, "An attribute key=value (repeatable)");
  DurationFlag(sendc, "--delay", send.delay_ms, "Visible only after this delay (0..30d)");
  sendc->add_option("--dedup-id", send.dedup_id, "Deduplication id (with --lines: ID:LINE)");
  sendc->add_flag("--lines", send.lines, "One message per line of standard input, in batches");
  sendc->footer(
      "Examples:\n  spoolctl send thumbnails '{\"file_id\": \"abc-123\", \"type\": \"resize\"}'\n"
      "  spoolctl send thumbnails --lines < jobs.jsonl");

  auto* lease = app.add_subcommand("lease", "Lease messages (for scripts and debugging)");
  lease->add_option("NAME", name, "Queue name")->required();
  lease->add_option("--max", max, "At most this many (1..1000)")->capture_default_str();
  DurationFlag(lease, "--visibility-timeout", visibility, "Lease length (default: the queue's)");
  DurationFlag(lease, "--wait", wait, "Wait up to this long for a message (0..60s)");
  lease->footer("Example:\n  spoolctl lease orders --max 10 --visibility-timeout 5m --wait 20s");

  auto* tailc = app.add_subcommand("tail", "Print messages as they arrive (a Subscribe stream)");
  tailc->add_option("NAME", name, "Queue name")->required();
  tailc->add_flag("--ack", tail.ack,
                  "Ack each message once printed (without it, all are released at the end)");
  tailc
      ->add_option("--max-outstanding", tail.max_outstanding,
                   "At most this many delivered and not yet acked (1..10000)")
      ->capture_default_str();
  DurationFlag(tailc, "--visibility-timeout", tail.visibility_ms,
               "Lease length, renewed while tail runs (default: the queue's)");
  tailc->add_option("--max", tail.max, "Stop after this many messages (default: no limit)");
  DurationFlag(tailc, "--for", tail.for_ms, "Stop after this long (default: at Ctrl-C)");
  tailc->footer(
      "Without --ack, tail leases up to --max-outstanding messages and gives them back when it\n"
      "stops (their delivery counts go up); peek looks without leasing.\n"
      "Examples:\n  spoolctl tail orders\n"
      "  spoolctl tail orders --ack --max 10  (consume ten)\n"
      "  spoolctl --output json tail orders --for 30s");

  auto* ack = app.add_subcommand("ack", "Acknowledge (delete) leased messages");
  ack->add_option("NAME", name, "Queue name")->required();
  ack->add_option("RECEIPT", receipts, "Receipts from lease")->required();
  ack->footer("Example:\n  spoolctl ack orders AQAAAAAAAAAB...");

  auto* nack = app.add_subcommand("nack", "Give leased messages back, now or after a delay");
  nack->add_option("NAME", name, "Queue name")->required();
  nack->add_option("RECEIPT", receipts, "Receipts from lease")->required();
  DurationFlag(nack, "--delay", delay, "Visible again after this delay (0..12h)");
  nack->footer("Example:\n  spoolctl nack orders AQAAAAAAAAAB... --delay 30s");

  auto* extend = app.add_subcommand("extend", "Extend leases");
  extend->add_option("NAME", name, "Queue name")->required();
  extend->add_option("RECEIPT", receipts, "Receipts from lease")->required();
  DurationFlag(extend, "--visibility-timeout", extend_visibility, "New lease length from now")
      ->required();
  extend->footer("Example:\n  spoolctl extend orders AQAAAAAAAAAB... --visibility-timeout 10m");

  auto* purge = app.add_subcommand("purge", "Remove every message of a queue");
  purge->add_option("NAME", name, "Queue name")->required();
  purge->add_flag("--yes", yes, "Do not ask for confirmation (for scripts)");
  purge->footer("Example:\n  spoolctl purge scratch --yes");

  auto* redrive = app.add_subcommand("redrive", "Move messages from a dead-letter queue back");
  redrive->add_option("DLQ", name, "Queue to move from")->required();
  redrive->add_option("--to", to, "Queue to move to")->required();
  redrive->add_option("--max", redrive_max, "At most this many (default: all ready ones)");
  redrive->add_option("--rate", rate, "At most this many per second")
      ->check(CLI::NonNegativeNumber);
  redrive->footer("Example:\n  spoolctl redrive orders-dead --to orders --max 1000 --rate 200");

  auto* delmsg = app.add_subcommand("delete-message", "Remove one message by id");
  delmsg->add_option("NAME", name, "Queue name")->required();
  delmsg->add_option("ID", id, "Message id (from peek)")->required();
  delmsg->footer("Example:\n  spoolctl delete-message orders-dead 00000000000004d2");

  auto* watch = app.add_subcommand("watch", "Live depth and rates, refreshed until Ctrl-C");
  watch->add_option("NAME", names, "Queues to watch (default: all)");
  DurationFlag(watch, "--interval", interval_ms, "Refresh period (default 1s)");
  watch->add_option("--iterations", iterations, "Stop after this many refreshes (0: never)");
  watch->footer("Example:\n  spoolctl watch orders orders-dead");

  auto* health = app.add_subcommand("health", "Exit 0 when spoold answers SERVING");
  health->footer("Example:\n  spoolctl health && echo up");

  auto* inspect = app.add_subcommand("inspect", "Offline: queues and disk use of a stopped store");
  inspect->footer("Example:\n  spoolctl --data-dir /var/lib/spool inspect");
  auto* verify = app.add_subcommand("verify", "Offline: check every invariant of a stopped store");
  verify->footer("Example:\n  spoolctl --data-dir /var/lib/spool verify");

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) return app.exit(e);  // --help
    std::cerr << "spoolctl: " << e.what() << "\n(see spoolctl --help)\n";
    return 2;
  }
  global.json = output == "json";
  global.timeout_ms = timeout_ms;
  bool offline = inspect->parsed() || verify->parsed();
  if (offline && global.data_dir.empty()) {
    std::cerr << "spoolctl: " << (inspect->parsed() ? "inspect" : "verify")
              << " needs --data-dir DIR (the data directory of a stopped spoold)\n";
    return 2;
  }
  if (!offline && !global.data_dir.empty()) {
    std::cerr << "spoolctl: --data-dir is only for inspect and verify\n";
    return 2;
  }
  spool::ctl::Io io{std::cout, std::cerr, std::cin, isatty(0) && isatty(2), isatty(1) != 0};
  spool::ctl::Ctl ctl(global, io);
  if (queues->parsed()) return ctl.Queues(prefix);
  if (create->parsed()) return ctl.Create(name, config);
  if (update->parsed()) return ctl.Update(name, config);
  if (del->parsed()) return ctl.Delete(name, yes);
  if (stats->parsed()) return ctl.Stats(name);
  if (peekc->parsed()) return ctl.Peek(name, peek);
  if (sendc->parsed()) return ctl.Send(name, send);
  if (lease->parsed()) return ctl.Lease(name, max, visibility, wait);
  if (tailc->parsed()) return ctl.Tail(name, tail);
  if (ack->parsed()) return ctl.Ack(name, receipts);
  if (nack->parsed()) return ctl.Nack(name, receipts, delay);
  if (extend->parsed()) return ctl.Extend(name, receipts, extend_visibility);
  if (purge->parsed()) return ctl.Purge(name, yes);
  if (redrive->parsed()) return ctl.Redrive(name, to, redrive_max, rate);
  if (delmsg->parsed()) return ctl.DeleteMessage(name, id);
  if (watch->parsed()) return ctl.Watch(names, interval_ms, iterations);
  if (health->parsed()) return ctl.Health();
  if (inspect->parsed()) return ctl.Inspect();
  if (verify->parsed()) return ctl.Verify();
  return 2;
}
