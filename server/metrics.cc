#include "server/metrics.h"

#include <dirent.h>
#include <google/protobuf/descriptor.h>
#include <prometheus/text_serializer.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <chrono>
#include <fstream>
#include <sstream>
#include <string_view>

#include "absl/strings/numbers.h"
#include "absl/strings/str_split.h"
#include "tools/status_names.h"

namespace spool::server {
namespace {

using prometheus::ClientMetric;
using prometheus::MetricFamily;
using prometheus::MetricType;

// Long polls wait up to a minute, so the RPC buckets reach past it.
const prometheus::Histogram::BucketBoundaries kRpcBuckets = {
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05,
    0.1,    0.25,    0.5,    1,     2.5,    5,     10,   30,    60};
const prometheus::Histogram::BucketBoundaries kGroupBuckets = {1,  2,   4,   8,   16,  32,
                                                               64, 128, 256, 512, 1024};
const prometheus::Histogram::BucketBoundaries kFsyncBuckets = {
    0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1};

// The services spoold registers; their methods get series named by the bare method name for
// spool.v1 (the contract's names) and service/method for the others.
constexpr const char* kServices[] = {"spool.v1.QueueService", "grpc.health.v1.Health",
                                     "grpc.reflection.v1alpha.ServerReflection"};

class RpcInterceptor final : public grpc::experimental::Interceptor {
 public:
  RpcInterceptor(Metrics* metrics, Metrics::Method* method)
      : metrics_(metrics), method_(method), start_(std::chrono::steady_clock::now()) {}

  void Intercept(grpc::experimental::InterceptorBatchMethods* batch) override {
    if (batch->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::PRE_SEND_STATUS)) {
      std::chrono::duration<double> took = std::chrono::steady_clock::now() - start_;
      metrics_->CountCall(method_, batch->GetSendStatus().error_code(), took.count());
    }
    if (method_->received != nullptr &&
        batch->QueryInterceptionHookPoint(
            grpc::experimental::InterceptionHookPoints::POST_RECV_MESSAGE)) {
      method_->received->Increment();
    }
    batch->Proceed();
  }

 private:
  Metrics* const metrics_;
  Metrics::Method* const method_;
  const std::chrono::steady_clock::time_point start_;
};

class RpcInterceptorFactory final : public grpc::experimental::ServerInterceptorFactoryInterface {
 public:
  explicit RpcInterceptorFactory(Metrics* metrics) : metrics_(metrics) {}
  grpc::experimental::Interceptor* CreateServerInterceptor(
      grpc::experimental::ServerRpcInfo* info) override {
    return new RpcInterceptor(metrics_, metrics_->FindMethod(info->method()));
  }

 private:
  Metrics* const metrics_;
};

ClientMetric Value(double v, std::vector<ClientMetric::Label> labels = {}) {
  ClientMetric m;
  m.label = std::move(labels);
  m.gauge.value = v;
  m.counter.value = v;
  return m;
}

MetricFamily Family(std::string name, std::string help, MetricType type) {
  MetricFamily f;
  f.name = std::move(name);
  f.help = std::move(help);
  f.type = type;
  return f;
}

// The process's own figures, named as every Prometheus client library names them.
void AddProcessMetrics(std::vector<MetricFamily>* out) {
  static const double kTicks = static_cast<double>(sysconf(_SC_CLK_TCK));
  static const double kPage = static_cast<double>(sysconf(_SC_PAGESIZE));
  std::ifstream stat_file("/proc/self/stat");
  std::string stat((std::istreambuf_iterator<char>(stat_file)), std::istreambuf_iterator<char>());
  // Fields after the command name (which may hold spaces), from field 3 on.
  size_t paren = stat.rfind(')');
  std::vector<std::string> f;
  if (paren != std::string::npos) {
    f = absl::StrSplit(stat.substr(paren + 2), ' ', absl::SkipEmpty());
  }
  auto field = [&](size_t n) {  // n as in proc(5), 1-based
    double v = 0;
    if (n >= 3 && n - 3 < f.size()) (void)absl::SimpleAtod(f[n - 3], &v);
    return v;
  };
  MetricFamily cpu = Family("process_cpu_seconds_total",
                            "User and system CPU time spent, in seconds.", MetricType::Counter);
  cpu.metric.push_back(Value((field(14) + field(15)) / kTicks));
  out->push_back(std::move(cpu));

  MetricFamily rss =
      Family("process_resident_memory_bytes", "Resident memory size in bytes.", MetricType::Gauge);
  rss.metric.push_back(Value(field(24) * kPage));
  out->push_back(std::move(rss));

  double fds = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (dirent* e = readdir(d)) {
      if (e->d_name[0] != '.') ++fds;
    }
    closedir(d);
    --fds;  // the directory's own descriptor
  }
  MetricFamily open_fds =
      Family("process_open_fds", "Number of open file descriptors.", MetricType::Gauge);
  open_fds.metric.push_back(Value(fds));
  out->push_back(std::move(open_fds));

  static const double kBootTime = [] {
    std::ifstream in("/proc/stat");
    std::string line;
    while (std::getline(in, line)) {
      double v = 0;
      if (line.rfind("btime ", 0) == 0 && absl::SimpleAtod(line.substr(6), &v)) return v;
    }
    return 0.0;
  }();
  MetricFamily start =
      Family("process_start_time_seconds",
             "Start time of the process since the Unix epoch, in seconds.", MetricType::Gauge);
  start.metric.push_back(Value(kBootTime + field(22) / kTicks));
  out->push_back(std::move(start));
}

// The text format by hand for the per-queue families, which are nearly all of a scrape's
// series (13 per queue): building prometheus-cpp's ClientMetric for each, with its label
// strings, and formatting through its ostream serializer cost more than the engine reads.
void AppendUint(std::string* out, uint64_t v) {
  char buf[24];
  auto r = std::to_chars(buf, buf + sizeof buf, v);
  out->append(buf, r.ptr);
}

// Milliseconds as seconds with three decimals, exactly.
void AppendMillisAsSeconds(std::string* out, int64_t ms) {
  uint64_t v = ms > 0 ? static_cast<uint64_t>(ms) : 0;
  AppendUint(out, v / 1000);
  char frac[5] = {'.', static_cast<char>('0' + v % 1000 / 100),
                  static_cast<char>('0' + v % 100 / 10), static_cast<char>('0' + v % 10), 0};
  out->append(frac, 4);
}

void AppendFamilyHeader(std::string* out, std::string_view name, std::string_view help,
                        std::string_view type) {
  out->append("# HELP ").append(name).append(" ").append(help).append("\n");
  out->append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

// `name{queue="q"` — the caller closes the braces. Queue names hold only A-Z a-z 0-9 . _ -
// (ValidateQueueName), none of which a label value escapes.
void AppendQueueSeries(std::string* out, std::string_view name, std::string_view queue) {
  out->append(name).append("{queue=\"").append(queue).push_back('"');
}

// Per-queue series: the deepest max_queues queues by name, the rest summed as "_other".
void AppendQueueMetrics(std::vector<engine::QueueInfo> queues, int64_t max_queues,
                        std::string* out) {
  if (queues.size() > static_cast<size_t>(max_queues)) {
    std::stable_sort(queues.begin(), queues.end(),
                     [](const auto& a, const auto& b) { return a.stats.total > b.stats.total; });
    engine::QueueInfo other;
    other.name = "_other";
    for (size_t i = max_queues; i < queues.size(); ++i) {
      const engine::QueueStats& s = queues[i].stats;
      engine::QueueStats& o = other.stats;
      o.ready += s.ready, o.leased += s.leased, o.delayed += s.delayed, o.total += s.total;
      o.oldest_ready_age_ms = std::max(o.oldest_ready_age_ms, s.oldest_ready_age_ms);
      o.enqueued_total += s.enqueued_total, o.delivered_total += s.delivered_total;
      o.acked_total += s.acked_total, o.nacked_total += s.nacked_total;
      o.dead_lettered_total += s.dead_lettered_total, o.expired_total += s.expired_total;
      o.purged_total += s.purged_total, o.deleted_total += s.deleted_total;
      o.moved_total += s.moved_total;
    }
    queues.resize(max_queues);
    std::sort(queues.begin(), queues.end(),
              [](const auto& a, const auto& b) { return a.name < b.name; });
    queues.push_back(std::move(other));
  }
  // About 60 bytes a series.
  out->reserve(out->size() + queues.size() * 13 * 64 + 4096);

  constexpr std::string_view kDepth = "spool_queue_messages";
  AppendFamilyHeader(out, kDepth, "Messages in the queue by state (the figures of GetQueue).",
                     "gauge");
  struct StateDef {
    std::string_view label;
    uint64_t engine::QueueStats::*field;
  };
  static constexpr StateDef kStates[] = {{"ready", &engine::QueueStats::ready},
                                         {"leased", &engine::QueueStats::leased},
                                         {"delayed", &engine::QueueStats::delayed}};
  for (const engine::QueueInfo& q : queues) {
    for (const StateDef& st : kStates) {
      AppendQueueSeries(out, kDepth, q.name);
      out->append(",state=\"").append(st.label).append("\"} ");
      AppendUint(out, q.stats.*st.field);
      out->push_back('\n');
    }
  }

  constexpr std::string_view kAge = "spool_queue_oldest_ready_age_seconds";
  AppendFamilyHeader(out, kAge, "How long the first ready message has waited to be leased.",
                     "gauge");
  for (const engine::QueueInfo& q : queues) {
    AppendQueueSeries(out, kAge, q.name);
    out->append("} ");
    AppendMillisAsSeconds(out, q.stats.oldest_ready_age_ms);
    out->push_back('\n');
  }

  struct CounterDef {
    std::string_view name;
    std::string_view help;
    uint64_t engine::QueueStats::*field;
  };
  static constexpr CounterDef kCounters[] = {
      {"spool_queue_enqueued_total", "Messages that entered the queue.",
       &engine::QueueStats::enqueued_total},
      {"spool_queue_delivered_total", "Leases handed out.", &engine::QueueStats::delivered_total},
      {"spool_queue_acked_total", "Acks that deleted a message.", &engine::QueueStats::acked_total},
      {"spool_queue_nacked_total", "Leases ended early by a Nack.",
       &engine::QueueStats::nacked_total},
      {"spool_queue_dead_lettered_total", "Messages moved out to the dead-letter queue.",
       &engine::QueueStats::dead_lettered_total},
      {"spool_queue_expired_total", "Messages removed by retention.",
       &engine::QueueStats::expired_total},
      {"spool_queue_purged_total", "Messages removed by PurgeQueue.",
       &engine::QueueStats::purged_total},
      {"spool_queue_deleted_total", "Messages removed one by one by DeleteMessage.",
       &engine::QueueStats::deleted_total},
      {"spool_queue_moved_total", "Messages moved out by MoveMessages.",
       &engine::QueueStats::moved_total},
  };
  for (const CounterDef& c : kCounters) {
    AppendFamilyHeader(out, c.name, c.help, "counter");
    for (const engine::QueueInfo& q : queues) {
      AppendQueueSeries(out, c.name, q.name);
      out->append("} ");
      AppendUint(out, q.stats.*c.field);
      out->push_back('\n');
    }
  }
}

}  // namespace

Metrics::Metrics(std::string version, std::string durability, int64_t max_queues)
    : version_(std::move(version)),
      durability_(std::move(durability)),
      max_queues_(std::clamp<int64_t>(max_queues, 1, 100'000)),
      rpc_requests_(prometheus::BuildCounter()
                        .Name("spool_rpc_requests_total")
                        .Help("gRPC calls finished, by method and status code.")
                        .Register(*registry_)),
      rpc_duration_(prometheus::BuildHistogram()
                        .Name("spool_rpc_duration_seconds")
                        .Help("gRPC call duration from start to status, by method.")
                        .Register(*registry_)),
      stream_requests_(prometheus::BuildCounter()
                           .Name("spool_stream_requests_total")
                           .Help("Requests read on client-streaming calls (Publish, Subscribe), "
                                 "by method.")
                           .Register(*registry_)),
      commit_groups_(prometheus::BuildCounter()
                         .Name("spool_commit_groups_total")
                         .Help("Commit groups written: one atomic write (and fsync) each.")
                         .Register(*registry_)
                         .Add({})),
      commit_group_size_(prometheus::BuildHistogram()
                             .Name("spool_commit_group_size")
                             .Help("Operations that shared one commit group.")
                             .Register(*registry_)
                             .Add({}, kGroupBuckets)),
      commit_fsync_(prometheus::BuildHistogram()
                        .Name("spool_commit_fsync_duration_seconds")
                        .Help("Time to write one commit group to the log, fsync included "
                              "under --durability sync.")
                        .Register(*registry_)
                        .Add({}, kFsyncBuckets)) {
  const auto* pool = google::protobuf::DescriptorPool::generated_pool();
  for (const char* service : kServices) {
    const google::protobuf::ServiceDescriptor* d = pool->FindServiceByName(service);
    if (d == nullptr) continue;  // not linked into this binary
    for (int i = 0; i < d->method_count(); ++i) {
      std::string name = d->method(i)->name();
      if (std::string_view(service) != "spool.v1.QueueService") {
        name = std::string(service) + "/" + name;
      }
      auto m = std::make_unique<Method>();
      m->name = name;
      m->duration = &rpc_duration_.Add({{"method", name}}, kRpcBuckets);
      if (d->method(i)->client_streaming()) {
        m->received = &stream_requests_.Add({{"method", name}});
      }
      known_["/" + std::string(service) + "/" + d->method(i)->name()] = std::move(m);
    }
  }
}

void Metrics::ObserveCommitGroup(size_t operations, int64_t write_micros) {
  commit_groups_.Increment();
  commit_group_size_.Observe(static_cast<double>(operations));
  commit_fsync_.Observe(static_cast<double>(write_micros) / 1e6);
}

std::unique_ptr<grpc::experimental::ServerInterceptorFactoryInterface>
Metrics::InterceptorFactory() {
  return std::make_unique<RpcInterceptorFactory>(this);
}

Metrics::Method* Metrics::FindMethod(const char* path) {
  absl::string_view key = path ? path : "";
  if (auto it = known_.find(key); it != known_.end()) return it->second.get();
  std::lock_guard<std::mutex> lock(mu_);
  auto& m = others_[key];
  if (!m) {
    m = std::make_unique<Method>();
    m->name = key.empty() ? "unknown" : std::string(key.substr(key[0] == '/' ? 1 : 0));
    m->duration = &rpc_duration_.Add({{"method", m->name}}, kRpcBuckets);
  }
  return m.get();
}

void Metrics::CountCall(Method* m, int code, double seconds) {
  if (code < 0 || code > 16) code = 2;  // UNKNOWN
  prometheus::Counter* c = m->by_code[code].load(std::memory_order_acquire);
  if (c == nullptr) {
    std::lock_guard<std::mutex> lock(mu_);
    c = m->by_code[code].load(std::memory_order_relaxed);
    if (c == nullptr) {
      c = &rpc_requests_.Add(
          {{"method", m->name},
           {"code", tools::StatusCodeName(static_cast<grpc::StatusCode>(code))}});
      m->by_code[code].store(c, std::memory_order_release);
    }
  }
  c->Increment();
  m->duration->Observe(seconds);
}

std::string Metrics::Scrape(engine::Engine& engine) {
  std::vector<MetricFamily> families;
  // Small pages: each holds the engine lock for a few microseconds at most.
  std::vector<engine::QueueInfo> queues;
  std::string token;
  bool serving = engine.Health().ok();
  do {
    auto page = engine.ListQueues("", 32, token);
    if (!page.ok()) {
      serving = false;
      break;
    }
    for (auto& q : page->queues) queues.push_back(std::move(q));
    token = page->next_page_token;
  } while (!token.empty());
  std::string text;
  AppendQueueMetrics(std::move(queues), max_queues_, &text);

  engine::RuntimeStats rt = engine.Runtime();
  MetricFamily waiters =
      Family("spool_lease_waiters", "Lease calls waiting for messages now.", MetricType::Gauge);
  waiters.metric.push_back(Value(static_cast<double>(rt.lease_waiters)));
  families.push_back(std::move(waiters));
  MetricFamily storage =
      Family("spool_storage_bytes", "Bytes of the store, by kind.", MetricType::Gauge);
  storage.metric.push_back(Value(rt.live_sst_bytes, {{"kind", "live_sst"}}));
  storage.metric.push_back(Value(rt.total_sst_bytes, {{"kind", "total_sst"}}));
  storage.metric.push_back(Value(rt.wal_bytes, {{"kind", "wal"}}));
  storage.metric.push_back(Value(rt.memtable_bytes, {{"kind", "memtable"}}));
  families.push_back(std::move(storage));

  MetricFamily up = Family("spool_up",
                           "1 while the store accepts writes; 0 after a storage error or while "
                           "shutting down.",
                           MetricType::Gauge);
  up.metric.push_back(Value(serving ? 1 : 0));
  families.push_back(std::move(up));
  MetricFamily build =
      Family("spool_build_info", "Always 1; the labels describe this spoold.", MetricType::Gauge);
  build.metric.push_back(Value(1, {{"durability", durability_}, {"version", version_}}));
  families.push_back(std::move(build));

  for (auto& f : registry_->Collect()) families.push_back(std::move(f));
  AddProcessMetrics(&families);
  text += prometheus::TextSerializer().Serialize(families);
  return text;
}

}  // namespace spool::server
