#!/usr/bin/python3
"""spoold's /metrics against the contract (HTTP-SPEC "Metrics exported at /metrics").

Starts the real spoold with its HTTP listener (spoold_http.py), drives a scripted workload over
gRPC and checks that every spool_queue_* series equals what GetQueue says, across a SIGTERM
restart and a kill -9; that RPCs, commits, lease waiters, storage, build and process metrics
move as they should; that --metrics-max-queues folds the shallow queues into queue="_other";
and that the Grafana dashboard and the alert rules in deploy/ only use names spoold exports.
Debian's /usr/bin/python3 with python3-grpcio, python3-prometheus-client and python3-yaml.
When promtool (Debian package `prometheus`) is on PATH or in $PROMTOOL, the rule file and the
config are also checked by it, and the alert rules are unit-tested with `promtool test rules`.
"""
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import spoold_http  # noqa: E402

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

SOURCE = spoold_http.SOURCE
DASHBOARD = os.path.join(SOURCE, "deploy", "grafana", "spool-overview.json")
ALERTS = os.path.join(SOURCE, "deploy", "prometheus", "alerts.yml")
PROMETHEUS_CONFIG = os.path.join(SOURCE, "deploy", "prometheus", "prometheus.yml")
PROMTOOL = os.environ.get("PROMTOOL") or shutil.which("promtool")

# The contract's names. A counter's sample is its name; a histogram's are _bucket/_sum/_count.
QUEUE_COUNTERS = ("enqueued", "delivered", "acked", "nacked", "dead_lettered", "expired",
                  "purged", "deleted", "moved")
STATES = ("ready", "leased", "delayed")
HISTOGRAMS = ("spool_rpc_duration_seconds", "spool_commit_group_size",
              "spool_commit_fsync_duration_seconds")
TYPES = {
    "spool_queue_messages": "gauge",
    "spool_queue_oldest_ready_age_seconds": "gauge",
    **{f"spool_queue_{c}_total": "counter" for c in QUEUE_COUNTERS},
    "spool_rpc_requests_total": "counter",
    **{h: "histogram" for h in HISTOGRAMS},
    "spool_commit_groups_total": "counter",
    "spool_stream_requests_total": "counter",
    "spool_lease_waiters": "gauge",
    "spool_storage_bytes": "gauge",
    "spool_up": "gauge",
    "spool_build_info": "gauge",
    "process_resident_memory_bytes": "gauge",
    "process_cpu_seconds_total": "counter",
    "process_open_fds": "gauge",
    "process_start_time_seconds": "gauge",
}
SPEC_SAMPLE_NAMES = frozenset(
    [n for n, t in TYPES.items() if t != "histogram"]
    + [h + s for h in HISTOGRAMS for s in ("_bucket", "_sum", "_count")])
STORAGE_KINDS = {"live_sst", "total_sst", "wal", "memtable"}
# Names the deploy files may use that spoold does not export: Prometheus' own scrape series.
ALLOWED_FOREIGN = frozenset({"up"})

grpc = pb = pb_grpc = duration_pb2 = None  # imported once the stubs are generated
_stubs_dir = None


def setUpModule():
    pass


def tearDownModule():
    if _stubs_dir is not None:
        _stubs_dir.cleanup()


def load_grpc():
    """Generates the spool.v1 stubs (once) and imports them into this module's globals."""
    global grpc, pb, pb_grpc, duration_pb2, _stubs_dir
    if pb is not None:
        return
    _stubs_dir = tempfile.TemporaryDirectory()
    spoold_http.generate_stubs(_stubs_dir.name)
    import grpc as grpc_module
    from google.protobuf import duration_pb2 as duration_module
    from spool.v1 import queue_pb2, queue_pb2_grpc
    grpc, duration_pb2, pb, pb_grpc = grpc_module, duration_module, queue_pb2, queue_pb2_grpc


def require_spoold():
    """Raises (an error, not a skip: the suite must not pass without the server) unless
    build/bin/spoold exists and has the HTTP listener."""
    path = os.path.join(spoold_http.BIN, "spoold")
    if not os.access(path, os.X_OK):
        raise RuntimeError(f"{path} does not exist; build it first")
    out = subprocess.run([path, "--help"], capture_output=True, text=True, timeout=20)
    if "--http-listen" not in out.stdout + out.stderr:
        raise RuntimeError(f"{path} --help has no --http-listen")


def seconds(s):
    return duration_pb2.Duration(seconds=s)


def poll(predicate, timeout, interval=0.05):
    """predicate()'s first truthy value within timeout seconds, else its last value."""
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value or time.time() > deadline:
            return value
        time.sleep(interval)


# ---- The exposition --------------------------------------------------------------------------

_LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\[\\"n])*"'
_SAMPLE_LINE = re.compile(
    r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(?:' + _LABEL + r'(?:,' + _LABEL + r')*,?)?\})?'
    r'[ \t]+(\S+)(?:[ \t]+-?[0-9]+)?$')
_TYPE_LINE = re.compile(r'^# TYPE ([a-zA-Z_:][a-zA-Z0-9_:]*) (counter|gauge|histogram|summary|untyped)$')


def exposition_problems(text):
    """What in text breaks Prometheus' text format 0.0.4, as sentences (empty when none).

    Stricter than prometheus_client's parser, which silently turns what it cannot place into
    untyped metrics: every sample line must be well formed, each TYPE comes once and before its
    samples, and a metric family's lines are not interleaved with another's."""
    problems = []
    if text and not text.endswith("\n"):
        problems.append("the exposition does not end with a newline")
    types, finished, current = {}, set(), None
    for n, line in enumerate(text.split("\n"), 1):
        if not line:
            continue
        if line.startswith("#"):
            if line.startswith("# TYPE"):
                m = _TYPE_LINE.match(line)
                if not m:
                    problems.append(f"line {n}: malformed TYPE line {line!r}")
                    continue
                if m.group(1) in types:
                    problems.append(f"line {n}: second TYPE line for {m.group(1)}")
                types[m.group(1)] = m.group(2)
            elif line.startswith("# HELP") and len(line.split(None, 3)) < 3:
                problems.append(f"line {n}: malformed HELP line {line!r}")
            continue
        m = _SAMPLE_LINE.match(line)
        if not m:
            problems.append(f"line {n}: malformed sample line {line!r}")
            continue
        try:
            float(m.group(3))
        except ValueError:
            problems.append(f"line {n}: value {m.group(3)!r} is not a number")
        name = m.group(1)
        family = name
        for suffix in ("_bucket", "_sum", "_count"):
            base = name[:-len(suffix)]
            if name.endswith(suffix) and types.get(base) in ("histogram", "summary"):
                family = base
        if family not in types:
            problems.append(f"line {n}: sample {name} has no TYPE line before it")
        if family != current:
            if family in finished:
                problems.append(f"line {n}: samples of {family} are not grouped together")
            if current is not None:
                finished.add(current)
            current = family
    return problems


class Scrape:
    """One parsed GET /metrics."""

    def __init__(self, text):
        self.text = text
        self.families = {}  # sample name -> family type ("counter", "gauge", "histogram", ...)
        self.values = {}    # (sample name, frozenset of label items) -> value
        self.duplicates = []
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                key = (s.name, frozenset(s.labels.items()))
                if key in self.values:
                    self.duplicates.append(key)
                self.values[key] = s.value
                self.families[s.name] = family.type

    def get(self, name, **labels):
        """The value of the series with exactly these labels, or None."""
        return self.values.get((name, frozenset(labels.items())))

    def series(self, name):
        """[(labels dict, value)] of every series of the sample name."""
        return [(dict(labels), v) for (n, labels), v in self.values.items() if n == name]

    def sample_names(self):
        return {n for n, _ in self.values}

    def queues(self, name="spool_queue_messages"):
        return {labels["queue"] for labels, _ in self.series(name) if "queue" in labels}


# ---- PromQL: the metric names an expression reads ---------------------------------------------

PROMQL_FUNCTIONS = frozenset("""
abs absent absent_over_time acos acosh asin asinh atan atanh avg_over_time ceil changes clamp
clamp_max clamp_min cos cosh count_over_time day_of_month day_of_week day_of_year days_in_month
deg delta deriv exp floor histogram_count histogram_fraction histogram_quantile histogram_sum
histogram_stddev histogram_stdvar holt_winters hour idelta increase irate label_join
label_replace last_over_time ln log10 log2 mad_over_time max_over_time min_over_time minute
month pi predict_linear present_over_time quantile_over_time rad rate resets round scalar sgn
sin sinh sort sort_desc sqrt stddev_over_time stdvar_over_time sum_over_time tan tanh time
timestamp vector year start end
""".split())
PROMQL_AGGREGATIONS = frozenset(
    "sum min max avg group stddev stdvar count count_values bottomk topk quantile".split())
PROMQL_KEYWORDS = frozenset(
    "by without on ignoring group_left group_right bool and or unless offset atan2 inf nan"
    .split())
_TEMPLATE_VARIABLE = re.compile(r'\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*|\[\[[^\]]*\]\]')
_STRING = re.compile(r'"(?:[^"\\]|\\.)*"|\'(?:[^\'\\]|\\.)*\'|`[^`]*`')
_LABEL_LIST = re.compile(r'\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)',
                         re.IGNORECASE)
_IDENTIFIER = re.compile(r'[A-Za-z_:][A-Za-z0-9_:]*')
_NUMBER = re.compile(r'(?<![A-Za-z0-9_:])[0-9][A-Za-z0-9_.]*')


def promql_metric_names(expr):
    """The metric names an expression selects (a set).

    Grafana's template variables are dropped first ($var, ${var}, ${var:fmt}, [[var]]), then
    string literals (remembered for __name__="..." matchers), label matchers {...}, ranges and
    subqueries [...], the label lists of by/without/on/ignoring/group_left/group_right, comments
    and numbers. What remains is operators, functions, aggregations, keywords and metric names.
    An identifier followed by "(" that is not a PromQL function or aggregation is returned as a
    name, so a misspelt function fails the check like a misspelt metric."""
    text = _TEMPLATE_VARIABLE.sub(" 0 ", expr)
    text = re.sub(r'#[^\n]*', ' ', text)
    strings = []

    def keep_string(m):
        strings.append(m.group(0)[1:-1])
        return f'"{len(strings) - 1}"'
    text = _STRING.sub(keep_string, text)
    names = set()
    for body in re.findall(r'\{([^{}]*)\}', text):
        for m in re.finditer(r'__name__\s*=~?\s*"(\d+)"', body):
            names.add(strings[int(m.group(1))])
    text = re.sub(r'\{[^{}]*\}', ' ', text)
    text = re.sub(r'"\d+"', ' ', text)
    while True:
        stripped = re.sub(r'\[[^\[\]]*\]', ' ', text)
        if stripped == text:
            break
        text = stripped
    text = _LABEL_LIST.sub(r' \1 ', text)
    text = _NUMBER.sub(' ', text)
    for m in _IDENTIFIER.finditer(text):
        word = m.group(0)
        called = re.match(r'\s*\(', text[m.end():]) is not None
        if word.lower() in PROMQL_KEYWORDS or word.lower() in PROMQL_AGGREGATIONS:
            continue
        if called and word in PROMQL_FUNCTIONS:
            continue
        names.add(word)
    return names


def grafana_variable_expression(query):
    """The PromQL inside a Grafana Prometheus variable query, or None when it names no metric
    (label_values(label), label_names(), metrics(regex))."""
    m = re.fullmatch(r'\s*label_values\((.*),\s*[A-Za-z_][A-Za-z0-9_]*\s*\)\s*', query, re.S)
    if m:
        return m.group(1)
    m = re.fullmatch(r'\s*query_result\((.*)\)\s*', query, re.S)
    return m.group(1) if m else None


def dashboard_expressions(dashboard):
    """[(where, PromQL)] of every panel target and every query variable of the dashboard."""
    found = []

    def walk(node, where):
        if isinstance(node, dict):
            if isinstance(node.get("expr"), str):
                found.append((where, node["expr"]))
            for k, v in node.items():
                walk(v, f"{where} > {node.get('title', k)}" if k == "targets" else where)
        elif isinstance(node, list):
            for item in node:
                walk(item, where)
    walk(dashboard.get("panels", []), "panels")
    for var in dashboard.get("templating", {}).get("list", []):
        if var.get("type") != "query":
            continue
        query = var.get("query")
        if isinstance(query, dict):
            query = query.get("query", "")
        expr = grafana_variable_expression(query or "")
        if expr is not None:
            found.append((f"variable {var.get('name')}", expr))
    return found


def alert_rules(rules_doc):
    return [r for g in rules_doc.get("groups", []) for r in g.get("rules", [])]


def alert_expressions(rules_doc):
    """[(where, PromQL)] of every rule not labelled requires: node_exporter."""
    return [(f"rule {r.get('alert') or r.get('record')}", r["expr"])
            for r in alert_rules(rules_doc)
            if r.get("labels", {}).get("requires") != "node_exporter"]


def unknown_metric_names(expressions, exported):
    """Sentences for every name an expression reads that is not in exported (nor `up`), and for
    every expression that reads no metric at all (an extractor that finds nothing proves
    nothing)."""
    problems = []
    for where, expr in expressions:
        names = promql_metric_names(expr)
        if not names:
            problems.append(f"{where}: no metric name found in {expr!r}")
        for name in sorted(names - set(exported) - ALLOWED_FOREIGN):
            problems.append(f"{where}: {name} is not exported (in {expr!r})")
    return problems


def load_dashboard():
    with open(DASHBOARD) as f:
        return json.load(f)


def load_yaml(path):
    import yaml
    with open(path) as f:
        return yaml.safe_load(f)


# ---- gRPC ----------------------------------------------------------------------------------

class CountingStub:
    """The QueueService stub, counting every call by (method, status code name), as
    spool_rpc_requests_total should. Every call gets a deadline."""

    def __init__(self, stub):
        self._stub = stub
        self._lock = threading.Lock()
        self.calls = collections.Counter()

    def __getattr__(self, method):
        fn = getattr(self._stub, method)

        def call(request, **kwargs):
            kwargs.setdefault("timeout", 30)
            try:
                response = fn(request, **kwargs)
                code = "OK"
                return response
            except grpc.RpcError as e:
                code = e.code().name
                raise
            finally:
                with self._lock:
                    self.calls[(method, code)] += 1
        return call


def stats_of(queue):
    """{metric name or (messages, state): value} as the metrics should show queue's stats."""
    s = queue.stats
    if "nacked_total" not in type(s).DESCRIPTOR.fields_by_name:
        raise AssertionError("QueueStats in proto/spool/v1/queue.proto has no nacked_total")
    out = {("spool_queue_messages", state): getattr(s, state) for state in STATES}
    for c in QUEUE_COUNTERS:
        out[f"spool_queue_{c}_total"] = getattr(s, f"{c}_total")
    return out


def age_of(queue):
    d = queue.stats.oldest_ready_age
    return d.seconds + d.nanos / 1e9


def metric_stats(scrape, queue):
    """The same keys as stats_of, read from a scrape (None where a series is missing)."""
    out = {("spool_queue_messages", state): scrape.get("spool_queue_messages", queue=queue,
                                                         state=state) for state in STATES}
    for c in QUEUE_COUNTERS:
        name = f"spool_queue_{c}_total"
        out[name] = scrape.get(name, queue=queue)
    return out


def queue_counters(scrape):
    """{queue: {counter name: value}} of every spool_queue_*_total series."""
    out = collections.defaultdict(dict)
    for c in QUEUE_COUNTERS:
        name = f"spool_queue_{c}_total"
        for labels, v in scrape.series(name):
            out[labels["queue"]][name] = v
    return dict(out)


class ServerCase(unittest.TestCase):
    """A spoold on a temporary data directory, restartable, with a counting stub."""
    extra_args = ()

    @classmethod
    def setUpClass(cls):
        require_spoold()
        load_grpc()
        cls.spoold = spoold_http.temp_spoold(cls.extra_args)
        cls.channel = None
        cls.start_server()

    @classmethod
    def tearDownClass(cls):
        cls.stop_server()
        cls.spoold.tmp.cleanup()

    @classmethod
    def start_server(cls):
        cls.started_before = time.time()
        cls.spoold.start()
        cls.started_after = time.time()
        cls.channel = grpc.insecure_channel(f"127.0.0.1:{cls.spoold.grpc_port}")
        grpc.channel_ready_future(cls.channel).result(timeout=15)
        cls.rpc = CountingStub(pb_grpc.QueueServiceStub(cls.channel))

    @classmethod
    def stop_server(cls, kill=False):
        if cls.channel is not None:
            cls.channel.close()
            cls.channel = None
        if cls.spoold.proc is not None and cls.spoold.proc.poll() is None:
            cls.spoold.kill() if kill else cls.spoold.stop()

    def scrape(self):
        status, headers, body = self.spoold.request("GET", "/metrics")
        self.assertEqual(status, 200, body[:500])
        ctype = headers.get("content-type", "")
        self.assertTrue(ctype.startswith("text/plain") and "version=0.0.4" in ctype, ctype)
        text = body.decode("utf-8")
        scrape = Scrape(text)  # the parser raises on what it cannot parse
        self.assertEqual(scrape.duplicates, [], "series exported twice")
        return scrape

    # -- helpers -------------------------------------------------------------------------------

    def enqueue(self, queue, n, delay=None, tag="m"):
        extra = {} if delay is None else {"delay": seconds(delay)}
        entries = [pb.EnqueueEntry(payload=f"{tag}-{i}".encode(), **extra) for i in range(n)]
        return self.rpc.Enqueue(pb.EnqueueRequest(queue=queue, messages=entries)).results

    def lease(self, queue, n, visibility=300):
        return self.rpc.Lease(pb.LeaseRequest(queue=queue, max_messages=n,
                                              visibility_timeout=seconds(visibility))).messages

    def all_queues(self):
        queues, token = [], ""
        while True:
            r = self.rpc.ListQueues(pb.ListQueuesRequest(page_size=1000, page_token=token))
            queues += r.queues
            token = r.next_page_token
            if not token:
                return {q.name: q for q in queues}

    def assert_queue_matches(self, scrape, name, before, after):
        """Every spool_queue_* series of queue name equals its GetQueue stats, read just before
        (before) and after (after) the scrape; the age lies between the two readings."""
        want_before, want_after = stats_of(before), stats_of(after)
        got = metric_stats(scrape, name)
        for key, value in got.items():
            self.assertIsNotNone(value, f"queue {name}: no series {key}")
            self.assertIn(value, (want_before[key], want_after[key]),
                          f"queue {name}: {key} is {value}, GetQueue says {want_after[key]}")
        age = scrape.get("spool_queue_oldest_ready_age_seconds", queue=name)
        self.assertIsNotNone(age, f"queue {name}: no spool_queue_oldest_ready_age_seconds")
        self.assertGreaterEqual(age, age_of(before) - 1.5, f"queue {name}")
        self.assertLessEqual(age, age_of(after) + 1.5, f"queue {name}")
        if after.stats.ready == 0 and before.stats.ready == 0:
            self.assertEqual(age, 0, f"queue {name}: no ready message, yet an age")

    def assert_all_queues_match(self):
        before = self.all_queues()
        scrape = self.scrape()
        after = self.all_queues()
        self.assertEqual(set(before), set(after), "queues changed during the check")
        self.assertEqual(scrape.queues(), set(after), "queues with series vs ListQueues")
        for name in after:
            self.assert_queue_matches(scrape, name, before[name], after[name])
        return scrape

    def assert_rpc_metrics_match_calls(self):
        """spool_rpc_requests_total equals the calls made since the server started, and each
        method's spool_rpc_duration_seconds_count their sum. Waits up to 2 s, in case the
        server counts a call after replying."""
        calls = dict(self.rpc.calls)

        def mismatches():
            scrape = self.scrape()
            bad = []
            for labels, v in scrape.series("spool_rpc_requests_total"):
                if set(labels) != {"method", "code"}:
                    bad.append(f"spool_rpc_requests_total has labels {sorted(labels)}")
                elif v != calls.get((labels["method"], labels["code"]), 0):
                    bad.append(f"{labels}: {v}, calls made {calls.get((labels['method'], labels['code']), 0)}")
            for (method, code), n in calls.items():
                if scrape.get("spool_rpc_requests_total", method=method, code=code) is None:
                    bad.append(f"no series for {method} {code} ({n} calls)")
            per_method = collections.Counter()
            for (method, _), n in calls.items():
                per_method[method] += n
            for method, n in per_method.items():
                count = scrape.get("spool_rpc_duration_seconds_count", method=method)
                if count != n:
                    bad.append(f"spool_rpc_duration_seconds_count{{method={method}}}: {count}, "
                               f"calls made {n}")
            return bad, scrape
        def matched():
            bad, scrape = mismatches()
            return None if bad else scrape
        scrape = poll(matched, 2)
        if scrape is None:
            bad, scrape = mismatches()
            self.assertEqual(bad, [])
        return scrape

    def assert_histogram_sane(self, scrape, name, **labels):
        """Buckets cumulative, +Inf bucket == _count, _sum >= 0. Returns _count."""
        buckets = sorted(((float(l["le"]), v) for l, v in scrape.series(name + "_bucket")
                          if {k: x for k, x in l.items() if k != "le"} == labels),
                         key=lambda b: b[0])
        self.assertTrue(buckets, f"{name}{labels} has no buckets")
        counts = [v for _, v in buckets]
        self.assertEqual(counts, sorted(counts), f"{name}{labels}: buckets not cumulative")
        self.assertEqual(buckets[-1][0], float("inf"), f"{name}{labels}: no +Inf bucket")
        count = scrape.get(name + "_count", **labels)
        self.assertEqual(count, buckets[-1][1], f"{name}{labels}: _count vs +Inf bucket")
        self.assertGreaterEqual(scrape.get(name + "_sum", **labels), 0)
        return count


class MetricsTest(ServerCase):
    """One spoold, a scripted workload, then the metrics; restarts last (tests run by name)."""

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        cls.run_workload()

    @classmethod
    def run_workload(cls):
        self = cls  # the helpers only use class state
        rpc = cls.rpc
        Config = pb.QueueConfig
        rpc.CreateQueue(pb.CreateQueueRequest(name="work-dead"))
        rpc.CreateQueue(pb.CreateQueueRequest(name="work", config=Config(
            max_deliveries=2, dead_letter_queue="work-dead", visibility_timeout=seconds(300))))
        for name in ("orders", "scratch", "doomed", "idle"):
            rpc.CreateQueue(pb.CreateQueueRequest(name=name))

        # orders: 12 in, 4 leased; 2 acked, 1 nacked back to ready, 1 nacked for an hour;
        # 2 enqueued with an hour's delay.
        ServerCase.enqueue(self, "orders", 5, tag="a")
        ServerCase.enqueue(self, "orders", 5, tag="b")
        ServerCase.enqueue(self, "orders", 2, delay=3600, tag="later")
        leased = ServerCase.lease(self, "orders", 4)
        assert len(leased) == 4, leased
        rpc.Ack(pb.AckRequest(queue="orders", receipts=[m.receipt for m in leased[:2]]))
        rpc.Nack(pb.NackRequest(queue="orders", receipts=[leased[2].receipt], delay=seconds(0)))
        rpc.Nack(pb.NackRequest(queue="orders", receipts=[leased[3].receipt],
                                delay=seconds(3600)))

        # work (max_deliveries 2): one poison message, leased and nacked twice; the third
        # Lease moves it to work-dead instead of returning it.
        ServerCase.enqueue(self, "work", 1, tag="poison")
        for delivery in (1, 2):
            got = ServerCase.lease(self, "work", 1)
            assert len(got) == 1 and got[0].delivery_count == delivery, got
            rpc.Nack(pb.NackRequest(queue="work", receipts=[got[0].receipt], delay=seconds(0)))
        cls.third_lease = ServerCase.lease(self, "work", 1)
        # redrive it back: a move out of work-dead.
        cls.moved = rpc.MoveMessages(pb.MoveMessagesRequest(
            source="work-dead", destination="work", max_messages=10)).moved

        # scratch: 5 purged; then 3 in, one deleted by id.
        ServerCase.enqueue(self, "scratch", 5, tag="p")
        cls.purged = rpc.PurgeQueue(pb.PurgeQueueRequest(name="scratch")).purged
        ids = [r.message_id for r in ServerCase.enqueue(self, "scratch", 3, tag="d")]
        rpc.DeleteMessage(pb.DeleteMessageRequest(queue="scratch", message_id=ids[1]))

        ServerCase.enqueue(self, "doomed", 2, tag="x")

    # -- 0x: the workload and the exposition -------------------------------------------------

    def test_00_workload_did_what_it_says(self):
        # Not about metrics: if these fail, the engine's semantics differ from this script's
        # assumptions, and the comparisons below mean less.
        q = {name: self.rpc.GetQueue(pb.GetQueueRequest(name=name)).stats
             for name in ("orders", "work", "work-dead", "scratch")}
        self.assertEqual((q["orders"].acked_total, q["orders"].nacked_total,
                          q["orders"].delivered_total, q["orders"].total), (2, 2, 4, 10))
        self.assertEqual((q["orders"].leased, q["orders"].delayed), (0, 3))
        self.assertEqual(list(self.third_lease), [])
        self.assertEqual((q["work"].dead_lettered_total, q["work"].nacked_total), (1, 2))
        self.assertEqual(len(self.moved), 1)
        self.assertEqual((q["work-dead"].moved_total, q["work-dead"].total), (1, 0))
        self.assertEqual(self.purged, 5)
        self.assertEqual((q["scratch"].purged_total, q["scratch"].deleted_total,
                          q["scratch"].total), (5, 1, 2))

    def test_01_exposition_parses_with_types_and_content_type(self):
        scrape = self.scrape()
        self.assertEqual(exposition_problems(scrape.text), [])
        for name, typ in TYPES.items():
            samples = [name] if typ != "histogram" else [name + "_bucket", name + "_count"]
            for sample in samples:
                self.assertIn(sample, scrape.families, f"{sample} is not exported")
                self.assertEqual(scrape.families[sample], typ, f"TYPE of {sample}")

    def test_02_promtool_check_metrics(self):
        if not PROMTOOL:
            self.skipTest("promtool not found (Debian package prometheus; or set $PROMTOOL)")
        text = self.scrape().text
        r = subprocess.run([PROMTOOL, "check", "metrics"], input=text, capture_output=True,
                           text=True, timeout=30)
        # 1 is a parse error; 3 only lint advice (e.g. a missing HELP), which we print.
        self.assertNotEqual(r.returncode, 1, r.stdout + r.stderr)
        if r.returncode != 0:
            print(f"\npromtool check metrics (lint only):\n{r.stdout}{r.stderr}", file=sys.stderr)

    # -- 1x: queues ----------------------------------------------------------------------------

    def test_10_every_queue_series_equals_get_queue(self):
        scrape = self.assert_all_queues_match()
        self.assertNotIn("_other", scrape.queues(), "_other with fewer queues than the limit")
        for labels, _ in scrape.series("spool_queue_messages"):
            self.assertEqual(set(labels), {"queue", "state"})
            self.assertIn(labels["state"], STATES)

    def test_11_deleted_queue_series_disappear(self):
        self.assertIn("doomed", self.scrape().queues())
        self.rpc.DeleteQueue(pb.DeleteQueueRequest(name="doomed"))

        def leftovers():
            scrape = self.scrape()
            return [(n, labels) for (n, labels) in
                    ((n, dict(l)) for n, l in scrape.values)
                    if n.startswith("spool_queue_") and labels.get("queue") == "doomed"]
        poll(lambda: not leftovers(), 2)
        self.assertEqual(leftovers(), [])
        self.assert_all_queues_match()

    # -- 2x: RPCs ------------------------------------------------------------------------------

    def test_20_rpc_requests_count_calls_and_codes(self):
        with self.assertRaises(grpc.RpcError) as e:
            self.enqueue("no-such-queue", 1)
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)
        scrape = self.assert_rpc_metrics_match_calls()
        self.assertEqual(scrape.get("spool_rpc_requests_total", method="Enqueue", code="OK"),
                         self.rpc.calls[("Enqueue", "OK")])
        self.assertGreaterEqual(self.rpc.calls[("Enqueue", "OK")], 5)
        self.assertEqual(scrape.get("spool_rpc_requests_total", method="Enqueue",
                                    code="NOT_FOUND"), 1)
        for method in {m for m, _ in self.rpc.calls}:
            self.assert_histogram_sane(scrape, "spool_rpc_duration_seconds", method=method)

    # -- 3x: commits, lease waiters, storage, build, process ---------------------------------

    def test_30_commit_metrics_grow_with_writes(self):
        before = self.scrape()
        groups = before.get("spool_commit_groups_total")
        self.assertGreater(groups, 0)
        sizes = self.assert_histogram_sane(before, "spool_commit_group_size")
        fsyncs = self.assert_histogram_sane(before, "spool_commit_fsync_duration_seconds")
        self.assertGreater(sizes, 0)
        self.assertGreater(fsyncs, 0)  # --durability sync: every group is fsynced
        self.assertGreaterEqual(before.get("spool_commit_group_size_sum"), sizes,
                                "a commit group holds at least one operation")
        self.enqueue("scratch", 1, tag="c")
        after = self.scrape()
        self.assertGreater(after.get("spool_commit_groups_total"), groups)
        self.assertGreater(self.assert_histogram_sane(after, "spool_commit_group_size"), sizes)
        self.assertGreater(
            self.assert_histogram_sane(after, "spool_commit_fsync_duration_seconds"), fsyncs)

    def test_31_lease_waiters_counts_a_waiting_lease(self):
        self.assertEqual(self.scrape().get("spool_lease_waiters"), 0)
        result = {}

        def wait():
            result["response"] = self.rpc.Lease(pb.LeaseRequest(
                queue="idle", wait_time=seconds(5), visibility_timeout=seconds(300)),
                timeout=20)
        t = threading.Thread(target=wait, daemon=True)
        start = time.time()
        t.start()
        seen = poll(lambda: self.scrape().get("spool_lease_waiters") == 1, 4)
        t.join(timeout=15)
        self.assertFalse(t.is_alive(), "the Lease did not return")
        self.assertTrue(seen, "spool_lease_waiters never showed the waiting Lease")
        self.assertEqual(list(result["response"].messages), [])
        self.assertGreater(time.time() - start, 4, "the Lease did not wait")
        self.assertTrue(poll(lambda: self.scrape().get("spool_lease_waiters") == 0, 2),
                        "spool_lease_waiters did not go back to 0")

    def test_32_storage_bytes_has_the_four_kinds(self):
        scrape = self.scrape()
        kinds = {l["kind"]: v for l, v in scrape.series("spool_storage_bytes")}
        self.assertEqual(set(kinds), STORAGE_KINDS)
        for kind, v in kinds.items():
            self.assertGreaterEqual(v, 0, kind)
        self.assertGreaterEqual(kinds["total_sst"], kinds["live_sst"])
        self.assertGreater(kinds["total_sst"] + kinds["wal"] + kinds["memtable"], 0,
                           "a store that has been written to takes no bytes")

    def test_33_up_and_build_info(self):
        scrape = self.scrape()
        self.assertEqual(scrape.get("spool_up"), 1)
        info = scrape.series("spool_build_info")
        self.assertEqual(len(info), 1, info)
        labels, value = info[0]
        self.assertEqual(value, 1)
        self.assertEqual(set(labels), {"version", "durability"})
        self.assertTrue(labels["version"])
        self.assertEqual(labels["durability"], "sync")

    def test_34_process_metrics_are_sane(self):
        scrape = self.scrape()
        pid = self.spoold.proc.pid
        rss = scrape.get("process_resident_memory_bytes")
        self.assertGreater(rss, 1 << 20)
        with open(f"/proc/{pid}/status") as f:
            vm_rss = int(re.search(r"VmRSS:\s+(\d+) kB", f.read()).group(1)) * 1024
        self.assertTrue(vm_rss / 2 < rss < vm_rss * 2, f"RSS {rss} vs /proc's {vm_rss}")
        fds = scrape.get("process_open_fds")
        self.assertGreater(fds, 0)
        real_fds = len(os.listdir(f"/proc/{pid}/fd"))
        self.assertLess(abs(fds - real_fds), 20, f"open fds {fds} vs /proc's {real_fds}")
        start = scrape.get("process_start_time_seconds")
        self.assertTrue(self.started_before - 5 < start < self.started_after + 5,
                        f"start time {start}, spawned between {self.started_before} and "
                        f"{self.started_after}")
        cpu = scrape.get("process_cpu_seconds_total")
        self.assertTrue(0 <= cpu < time.time() - self.started_before + 60, cpu)

    # -- 5x: the deploy files against the live names -----------------------------------------

    def test_50_dashboard_and_alerts_use_only_exported_names(self):
        exported = self.scrape().sample_names()
        self.assertEqual(unknown_metric_names(dashboard_expressions(load_dashboard()),
                                              exported), [])
        self.assertEqual(unknown_metric_names(alert_expressions(load_yaml(ALERTS)), exported),
                         [])

    # -- 9x: restarts (last: they replace the server) ----------------------------------------

    def test_90_counters_survive_sigterm_and_kill_9(self):
        for how in ("SIGTERM", "kill -9"):
            with self.subTest(how=how):
                self.enqueue("orders", 1, tag=how)  # a write just before the stop
                before = queue_counters(self.assert_all_queues_match())
                type(self).stop_server(kill=(how == "kill -9"))
                type(self).start_server()
                after_scrape = self.assert_all_queues_match()
                self.assertEqual(queue_counters(after_scrape), before,
                                 f"queue counters changed across a {how} restart")
                self.assertEqual(after_scrape.get("spool_up"), 1)
                # RPC counters belong to the process: they start again from this one's calls.
                self.assert_rpc_metrics_match_calls()


class MetricsMaxQueuesTest(ServerCase):
    """--metrics-max-queues 3: the 3 deepest queues have series, the rest sum into _other."""
    extra_args = ("--metrics-max-queues", "3", "--durability", "async")
    DEPTHS = {"q-a": 2, "q-b": 5, "q-c": 1, "q-d": 4, "q-e": 3}

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        for name, depth in cls.DEPTHS.items():
            cls.rpc.CreateQueue(pb.CreateQueueRequest(name=name))
            # depth + 1 in, one leased and acked: counters differ from the depth.
            ServerCase.enqueue(cls, name, depth + 1)
            m = ServerCase.lease(cls, name, 1)
            cls.rpc.Ack(pb.AckRequest(queue=name, receipts=[m[0].receipt]))

    def test_the_three_deepest_have_series_and_other_sums_the_rest(self):
        before = self.all_queues()
        scrape = self.scrape()
        after = self.all_queues()
        self.assertEqual({n: q.stats.total for n, q in after.items()}, self.DEPTHS)
        deepest = {"q-b", "q-d", "q-e"}
        for name in ["spool_queue_messages", "spool_queue_oldest_ready_age_seconds"] + \
                [f"spool_queue_{c}_total" for c in QUEUE_COUNTERS]:
            queues = scrape.queues(name)
            self.assertTrue(deepest <= queues, f"{name}: {sorted(queues)}")
            self.assertFalse({"q-a", "q-c"} & queues, f"{name}: {sorted(queues)}")
            if name != "spool_queue_oldest_ready_age_seconds":  # how _other ages: unspecified
                self.assertIn("_other", queues, name)
        for name in deepest:
            self.assert_queue_matches(scrape, name, before[name], after[name])
        rest = [stats_of(after[n]) for n in ("q-a", "q-c")]
        other = metric_stats(scrape, "_other")
        for key, value in other.items():
            self.assertEqual(value, sum(r[key] for r in rest), f"_other {key}")
        self.assertEqual(other[("spool_queue_messages", "ready")], 3)

    def test_build_info_says_async(self):
        (labels, _), = self.scrape().series("spool_build_info")
        self.assertEqual(labels["durability"], "async")


class DeployFilesTest(unittest.TestCase):
    """deploy/grafana and deploy/prometheus, without a server (names checked against the spec;
    MetricsTest checks them against a live /metrics too)."""

    def test_extractor_finds_names_and_only_names(self):
        cases = {
            'histogram_quantile(0.99, sum by (le, method) (rate(spool_rpc_duration_seconds_bucket'
            '{method=~"$method", instance=~"${instance:regex}"}[$__rate_interval])))':
                {"spool_rpc_duration_seconds_bucket"},
            'sum(rate(spool_commit_group_size_sum[5m])) / sum without (instance) '
            '(rate(spool_commit_group_size_count[5m] offset 1h)) > bool 1e+3':
                {"spool_commit_group_size_sum", "spool_commit_group_size_count"},
            'spool_up == 0 and on(instance) group_left(version) spool_build_info':
                {"spool_up", "spool_build_info"},
            '{__name__="spool_lease_waiters", job="spool"} or absent(up{job="spool"})':
                {"spool_lease_waiters", "up"},
            'label_replace(spool_queue_messages, "q", "spool_not_a_metric", "queue", "(.*)")':
                {"spool_queue_messages"},
            'predict_linear(spool_storage_bytes{kind="total_sst"}[6h], 24 * 3600) > 100 * 1024^3':
                {"spool_storage_bytes"},
            'max_over_time(rate(spool_queue_acked_total[1m])[1h30m:1m])':
                {"spool_queue_acked_total"},
            'time() - process_start_time_seconds # uptime': {"process_start_time_seconds"},
            'topk(3, sum by (queue) (spool_queue_messages{state="ready"}))':
                {"spool_queue_messages"},
            # a misspelt function is read as a name, so it fails the check too
            'rat(spool_queue_acked_total[5m])': {"rat", "spool_queue_acked_total"},
        }
        for expr, names in cases.items():
            with self.subTest(expr=expr):
                self.assertEqual(promql_metric_names(expr), names)
        self.assertEqual(grafana_variable_expression(
            'label_values(spool_queue_messages{instance=~"$instance"}, queue)'),
            'spool_queue_messages{instance=~"$instance"}')
        self.assertIsNone(grafana_variable_expression("label_values(instance)"))

    def test_check_fails_on_a_wrong_name(self):
        exprs = [("t", "sum by (queue) (rate(spool_queue_enqueud_total[5m]))"),
                 ("t", "rat(spool_queue_acked_total[5m])"),
                 ("t", "time()")]
        problems = unknown_metric_names(exprs, SPEC_SAMPLE_NAMES)
        self.assertEqual(len(problems), 3, problems)
        self.assertIn("spool_queue_enqueud_total", problems[0])
        self.assertIn("rat", problems[1])
        self.assertIn("no metric name", problems[2])
        # The real files, with one name misspelt, fail; unchanged they pass (below).
        dashboard = load_dashboard()
        text = json.dumps(dashboard).replace("spool_queue_oldest_ready_age_seconds",
                                             "spool_queue_oldest_ready_age", 1)
        self.assertTrue(unknown_metric_names(dashboard_expressions(json.loads(text)),
                                             SPEC_SAMPLE_NAMES))
        rules = load_yaml(ALERTS)
        rule = next(r for r in alert_rules(rules) if "spool_up" in r["expr"])
        rule["expr"] = rule["expr"].replace("spool_up", "spool_upp")
        self.assertTrue(unknown_metric_names(alert_expressions(rules), SPEC_SAMPLE_NAMES))
        # and a node_exporter name in a rule without the label fails
        rules = load_yaml(ALERTS)
        for r in alert_rules(rules):
            r.get("labels", {}).pop("requires", None)
        self.assertTrue(unknown_metric_names(alert_expressions(rules), SPEC_SAMPLE_NAMES))

    def test_deploy_files_use_only_spec_names(self):
        self.assertEqual(unknown_metric_names(dashboard_expressions(load_dashboard()),
                                              SPEC_SAMPLE_NAMES), [])
        self.assertEqual(unknown_metric_names(alert_expressions(load_yaml(ALERTS)),
                                              SPEC_SAMPLE_NAMES), [])

    def test_dashboard_structure(self):
        d = load_dashboard()
        self.assertTrue(36 <= d["schemaVersion"] <= 39, d["schemaVersion"])
        self.assertTrue(d.get("uid") and d.get("title"))
        variables = {v["name"]: v for v in d["templating"]["list"]}
        self.assertEqual((variables["datasource"]["type"], variables["datasource"]["query"]),
                         ("datasource", "prometheus"))
        queue = variables["queue"]
        self.assertEqual(queue["type"], "query")
        self.assertTrue(queue["multi"] and queue["includeAll"])
        self.assertIn("label_values(spool_queue_messages", json.dumps(queue["query"]))
        ids, panels = set(), []

        def walk(ps):
            for p in ps:
                panels.append(p)
                walk(p.get("panels", []))
        walk(d["panels"])
        for p in panels:
            self.assertNotIn(p["id"], ids, f"panel id {p['id']} twice")
            ids.add(p["id"])
            g = p["gridPos"]
            self.assertLessEqual(g["x"] + g["w"], 24, p["title"])
            if p["type"] == "row":
                continue
            self.assertEqual(p["datasource"], {"type": "prometheus", "uid": "${datasource}"},
                             p["title"])
            self.assertTrue(p["targets"], p["title"])
            for t in p["targets"]:
                self.assertEqual(t["datasource"]["uid"], "${datasource}", p["title"])
        used = set()
        for _, expr in dashboard_expressions(d):
            used |= promql_metric_names(expr)
        for name in ("spool_queue_messages", "spool_queue_oldest_ready_age_seconds",
                     "spool_queue_enqueued_total", "spool_queue_delivered_total",
                     "spool_queue_acked_total", "spool_queue_dead_lettered_total",
                     "spool_rpc_requests_total", "spool_rpc_duration_seconds_bucket",
                     "spool_commit_fsync_duration_seconds_bucket",
                     "spool_commit_group_size_bucket", "spool_commit_group_size_sum",
                     "spool_commit_group_size_count", "process_resident_memory_bytes",
                     "spool_storage_bytes", "spool_lease_waiters", "spool_up", "up"):
            self.assertIn(name, used, f"no panel shows {name}")

    def test_alert_rules_structure(self):
        doc = load_yaml(ALERTS)
        self.assertEqual([g["name"] for g in doc["groups"]], ["spool"])
        rules = alert_rules(doc)
        for r in rules:
            with self.subTest(alert=r.get("alert")):
                self.assertTrue(r.get("alert") and r.get("expr"))
                self.assertIn(r["labels"]["severity"], ("critical", "warning", "info"))
                self.assertTrue(r["annotations"]["summary"].strip())
                self.assertTrue(r["annotations"]["description"].strip())
                if "for" in r:
                    self.assertRegex(str(r["for"]), r"^\d+[smh]$")
        foreign = [r["alert"] for r in rules if r["labels"].get("requires") == "node_exporter"]
        self.assertLessEqual(len(foreign), 1, foreign)
        used = set()
        for _, expr in alert_expressions(doc):
            used |= promql_metric_names(expr)
        for name in ("spool_queue_oldest_ready_age_seconds", "spool_queue_dead_lettered_total",
                     "spool_up", "up", "spool_storage_bytes"):
            self.assertIn(name, used, f"no alert reads {name}")

    def test_prometheus_config(self):
        cfg = load_yaml(PROMETHEUS_CONFIG)
        rule_files = [os.path.join(os.path.dirname(PROMETHEUS_CONFIG), f)
                      for f in cfg["rule_files"]]
        self.assertIn(os.path.realpath(ALERTS), [os.path.realpath(f) for f in rule_files])
        job, = [j for j in cfg["scrape_configs"] if j["job_name"] == "spool"]
        targets = [t for sc in job["static_configs"] for t in sc["targets"]]
        self.assertEqual(targets, ["127.0.0.1:7421"])
        self.assertEqual(job.get("metrics_path", "/metrics"), "/metrics")

    def promtool(self, *args, cwd=None):
        if not PROMTOOL:
            self.skipTest("promtool not found (Debian package prometheus; or set $PROMTOOL)")
        r = subprocess.run([PROMTOOL, *args], capture_output=True, text=True, timeout=60,
                           cwd=cwd)
        self.assertEqual(r.returncode, 0, r.stdout + r.stderr)

    def test_promtool_checks_rules_and_config(self):
        self.promtool("check", "rules", ALERTS)
        self.promtool("check", "config", PROMETHEUS_CONFIG)

    def test_promtool_alert_rules_fire_when_they_should(self):
        """`promtool test rules` on synthetic series. promtool compares annotations exactly, so
        it runs on a copy of alerts.yml without them (check rules above parses their
        templates)."""
        if not PROMTOOL:
            self.skipTest("promtool not found (Debian package prometheus; or set $PROMTOOL)")
        import yaml
        doc = load_yaml(ALERTS)
        for r in alert_rules(doc):
            r.pop("annotations", None)
        gib = 1 << 30
        base = {"job": "spool", "instance": "a"}

        def series(name, values, **labels):
            text = ",".join(f'{k}="{v}"' for k, v in {**base, **labels}.items())
            return {"series": f"{name}{{{text}}}", "values": values}

        def fires(alert, at, *label_sets, severity="warning", **extra):
            return {"eval_time": at, "alertname": alert, "exp_alerts": [
                {"exp_labels": {**base, **labels, "severity": severity, **extra}}
                for labels in label_sets]}
        tests = [
            {"interval": "1m", "input_series": [
                series("spool_queue_oldest_ready_age_seconds", "0+60x30", queue="jobs"),
                series("spool_queue_oldest_ready_age_seconds", "5x30", queue="fast"),
                series("spool_queue_dead_lettered_total", "0 0 0" + " 1" * 40, queue="jobs"),
                series("spool_queue_dead_lettered_total", "0x40", queue="fine"),
                series("up", "1 1 1" + " 0" * 10),
                series("spool_up", "1 1" + " 0" * 10, instance="b"),
                series("spool_rpc_requests_total", "0+10x20", method="Enqueue",
                       code="UNAVAILABLE"),
                series("spool_rpc_requests_total", "0+10x20", method="GetQueue",
                       code="NOT_FOUND"),
                series("spool_commit_fsync_duration_seconds_bucket", "0x40", le="0.01"),
                series("spool_commit_fsync_duration_seconds_bucket", "0x40", le="0.1"),
                series("spool_commit_fsync_duration_seconds_bucket", "0+10x40", le="1"),
                series("spool_commit_fsync_duration_seconds_bucket", "0+10x40", le="+Inf"),
                series("spool_commit_fsync_duration_seconds_bucket", "0+10x40", le="0.01",
                       instance="fast"),
                series("spool_commit_fsync_duration_seconds_bucket", "0+10x40", le="+Inf",
                       instance="fast"),
            ], "alert_rule_test": [
                fires("SpoolOldestReadyMessageTooOld", "9m"),  # over 300 s only since 6m
                fires("SpoolOldestReadyMessageTooOld", "12m", {"queue": "jobs"}),
                fires("SpoolMessagesDeadLettered", "2m"),
                fires("SpoolMessagesDeadLettered", "5m", {"queue": "jobs"}),
                fires("SpoolMessagesDeadLettered", "25m"),  # 15 min without one: cleared
                fires("SpoolScrapeFailing", "4m"),
                fires("SpoolScrapeFailing", "6m", {}, severity="critical"),
                fires("SpoolTargetMissing", "12m"),
                fires("SpoolNotServing", "4m", {"instance": "b"}, severity="critical"),
                fires("SpoolRpcServerErrors", "12m", {"method": "Enqueue",
                                                      "code": "UNAVAILABLE"}),
                fires("SpoolFsyncSlow", "25m", {}),
            ]},
            {"interval": "1m", "input_series": [  # nothing scraped at all
                {"series": 'spool_up{job="other"}', "values": "1x20"},
            ], "alert_rule_test": [
                {"eval_time": "12m", "alertname": "SpoolTargetMissing", "exp_alerts": [
                    {"exp_labels": {"job": "spool", "severity": "warning"}}]},
            ]},
            {"interval": "1m", "input_series": [
                series("spool_storage_bytes", f"0+{gib}x420", kind="total_sst"),
                series("spool_storage_bytes", f"{10 * gib}x420", kind="total_sst",
                       instance="flat"),
                {"series": 'node_filesystem_avail_bytes{job="node",instance="a",'
                           'mountpoint="/var/lib/spool",fstype="ext4"}',
                 "values": f"{150 * gib}-{gib // 5}x60"},
                {"series": 'node_filesystem_size_bytes{job="node",instance="a",'
                           'mountpoint="/var/lib/spool",fstype="ext4"}',
                 "values": f"{1000 * gib}x60"},
            ], "alert_rule_test": [
                fires("SpoolStoreGrowingPastBudget", "7h", {"kind": "total_sst"}),
                {"eval_time": "45m", "alertname": "SpoolVolumeFillingUp", "exp_alerts": [
                    {"exp_labels": {"job": "node", "instance": "a", "fstype": "ext4",
                                    "mountpoint": "/var/lib/spool", "severity": "warning",
                                    "requires": "node_exporter"}}]},
            ]},
        ]
        with tempfile.TemporaryDirectory() as tmp:
            with open(os.path.join(tmp, "rules.yml"), "w") as f:
                yaml.safe_dump(doc, f)
            with open(os.path.join(tmp, "test.yml"), "w") as f:
                yaml.safe_dump({"rule_files": ["rules.yml"], "evaluation_interval": "1m",
                                "tests": tests}, f)
            self.promtool("test", "rules", "test.yml", cwd=tmp)


if __name__ == "__main__":
    unittest.main(verbosity=2)
