#!/usr/bin/python3
"""spoold's HTTP admin API against the real binary: every endpoint's reply checked field by field,
and a hostile-input table (bad parameters, wrong methods, unknown paths, malformed and oversize
raw requests, missing or weak tokens, cross-site POSTs, too many connections) where every bad
request gets a 4xx JSON error naming the field, changes nothing in the store (compared over gRPC
before and after), and leaves spoold serving.

The contract is the HTTP section of the spec (README "HTTP"): /healthz, /metrics,
/api/v1/queues[/{name}[/messages|/purge|/redrive|/messages/{id}]], the dashboard files.
Run with Debian's /usr/bin/python3 (python3-grpcio): /usr/bin/python3 tests/http/admin_api_test.py -v
"""
import base64
import datetime
import json
import os
import re
import resource
import select
import socket
import subprocess
import sys
import tempfile
import time
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import spoold_http  # noqa: E402
from spoold_http import BIN, generate_stubs, temp_spoold  # noqa: E402

_STUBS = tempfile.TemporaryDirectory()
generate_stubs(_STUBS.name)
import grpc  # noqa: E402
from google.protobuf.duration_pb2 import Duration  # noqa: E402
from spool.v1 import queue_pb2 as pb  # noqa: E402

# The connection tests open up to ~1,000 sockets; spoold inherits this limit too.
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
_want = 8192 if _hard == resource.RLIM_INFINITY else min(_hard, 8192)
if _soft != resource.RLIM_INFINITY and _soft < _want:
    resource.setrlimit(resource.RLIMIT_NOFILE, (_want, _hard))

HELP = subprocess.run([os.path.join(BIN, "spoold"), "--help"], capture_output=True, text=True,
                      timeout=30).stdout


def _flag_default(flag):
    m = re.search(re.escape(flag) + r"\b[^\n]*?=(\d+)[ \t]*$", HELP, re.M)
    return int(m.group(1)) if m else None


IDLE_FLAG = next(iter(re.findall(r"--http-[a-z-]*idle[a-z-]*", HELP)), None)
MAX_CONN_DEFAULT = _flag_default("--http-max-connections")

# Observations that are not failures but belong in a report (printed at the end).
NOTES = []


def note(text):
    if text not in NOTES:
        NOTES.append(text)


TS = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$")
DURATION = re.compile(r"^\d+(\.\d{1,9})?s$")
MSG_ID = re.compile(r"^[0-9a-f]{16}$")
MESSAGE_KEYS = {"message_id", "state", "delivery_count", "enqueue_time", "visible_time",
                "attributes", "payload", "payload_encoding", "payload_bytes", "payload_truncated",
                "dead_letter_source_queue", "dead_letter_source_id"}
STATE_NAMES = {pb.MESSAGE_STATE_READY: "ready", pb.MESSAGE_STATE_LEASED: "leased",
               pb.MESSAGE_STATE_DELAYED: "delayed"}


def ts_ms(text):
    """Milliseconds since the epoch of an RFC 3339 time (sub-millisecond digits dropped)."""
    m = TS.match(text)
    assert m, f"not an RFC 3339 time: {text!r}"
    base = datetime.datetime.fromisoformat(m.group(1) + ("+00:00" if m.group(3) == "Z"
                                                        else m.group(3)))
    frac = (m.group(2) or ".0")[1:]
    return int(base.timestamp()) * 1000 + int((frac + "000")[:3])


def pb_ms(ts):
    return ts.seconds * 1000 + ts.nanos // 1_000_000


def secs(n):
    return Duration(seconds=n)


# ---------------------------------------------------------------------------------------------
# Raw HTTP over a socket, for what http.client will not send or parse.

class RawConn:
    """One TCP connection to spoold's HTTP port, reading responses one at a time."""

    def __init__(self, port, timeout=5.0):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""

    def send(self, data):
        self.sock.sendall(data)

    def close(self):
        self.sock.close()

    def _fill(self, deadline):
        left = deadline - time.monotonic()
        if left <= 0:
            raise socket.timeout("no complete response in time")
        self.sock.settimeout(left)
        chunk = self.sock.recv(65536)
        if not chunk:
            raise EOFError("connection closed")
        self.buf += chunk

    def read_response(self, timeout=5.0):
        """(status, headers with lower-case names, body). Raises EOFError when the server closes
        before a whole response, socket.timeout when none arrives in time."""
        deadline = time.monotonic() + timeout
        while b"\r\n\r\n" not in self.buf:
            self._fill(deadline)
        head, self.buf = self.buf.split(b"\r\n\r\n", 1)
        lines = head.decode("latin-1").split("\r\n")
        m = re.match(r"^HTTP/1\.[01] (\d{3})", lines[0])
        if not m:
            raise AssertionError(f"not an HTTP/1.x status line: {lines[0]!r}")
        status = int(m.group(1))
        headers = {}
        for line in lines[1:]:
            k, _, v = line.partition(":")
            headers[k.strip().lower()] = v.strip()
        if "content-length" in headers:
            n = int(headers["content-length"])
            while len(self.buf) < n:
                self._fill(deadline)
            body, self.buf = self.buf[:n], self.buf[n:]
        elif "chunked" in headers.get("transfer-encoding", "").lower():
            body = b""
            while True:
                while b"\r\n" not in self.buf:
                    self._fill(deadline)
                size_line, self.buf = self.buf.split(b"\r\n", 1)
                size = int(size_line.split(b";")[0], 16)
                while len(self.buf) < size + 2:
                    self._fill(deadline)
                body += self.buf[:size]
                self.buf = self.buf[size + 2:]
                if size == 0:
                    break
        elif status in (204, 304) or status < 200:
            body = b""
        else:  # until the server closes
            try:
                while True:
                    self._fill(deadline)
            except (EOFError, ConnectionResetError):
                pass
            body, self.buf = self.buf, b""
        return status, headers, body

    def closed_by_peer(self, timeout):
        """True when the server closes (or resets) this connection within timeout."""
        deadline = time.monotonic() + timeout
        try:
            while True:
                self._fill(deadline)
        except (EOFError, ConnectionResetError):
            return True
        except socket.timeout:
            return False


def _send_watching(c, pieces, deadline):
    """Sends each piece of pieces (an iterable of bytes), stopping early when the server answers
    or closes, so that an early refusal is read rather than lost. Returns the bytes sent."""
    sent = 0
    c.sock.setblocking(False)
    try:
        for piece in pieces:
            while piece:
                if time.monotonic() > deadline:
                    return sent
                r, w, _ = select.select([c.sock], [c.sock], [], 0.5)
                if r:
                    return sent
                if not w:
                    continue
                try:
                    n = c.sock.send(piece)
                except (BrokenPipeError, ConnectionResetError):
                    return sent
                except BlockingIOError:
                    continue
                sent += n
                piece = piece[n:]
        return sent
    finally:
        c.sock.setblocking(True)


def _read_outcome(c, timeout):
    try:
        return ("response",) + c.read_response(timeout)
    except (EOFError, ConnectionResetError, BrokenPipeError):
        return ("closed",)
    except socket.timeout:
        return ("timeout",)


def raw_probe(port, data, timeout=5.0):
    """Sends data on a fresh connection. ("response", status, headers, body), ("closed",) when
    the server closed or reset it without a whole response, or ("timeout",)."""
    c = RawConn(port, timeout)
    try:
        _send_watching(c, (data[i:i + 65536] for i in range(0, len(data), 65536)),
                       time.monotonic() + timeout)
        return _read_outcome(c, timeout)
    finally:
        c.close()


def stream_oversize(port, head, body_bytes, chunk_fn, timeout=15.0):
    """Sends head, then body_bytes of body made by chunk_fn(n) in pieces of up to 64 KiB,
    stopping as soon as the server answers or closes; (raw_probe's outcome, body bytes sent)."""
    c = RawConn(port, timeout)
    try:
        c.send(head)

        def pieces():
            left = body_bytes
            while left > 0:
                n = min(65536, left)
                left -= n
                yield chunk_fn(n)
        sent = _send_watching(c, pieces(), time.monotonic() + timeout)
        return _read_outcome(c, timeout), sent
    finally:
        c.close()


def get_req(path, host="127.0.0.1", extra=b"", version=b"HTTP/1.1"):
    return b"GET " + path + b" " + version + b"\r\nHost: " + host.encode() + b"\r\n" + extra + b"\r\n"


# ---------------------------------------------------------------------------------------------

class HttpCase(unittest.TestCase):
    """A spoold per test class, with gRPC helpers to set up queues and to snapshot the store."""

    EXTRA_ARGS = ()
    TOKEN = None  # gRPC token for setup, when the server has --auth-file

    @classmethod
    def setUpClass(cls):
        cls.s = temp_spoold(list(cls.EXTRA_ARGS) + cls.more_args())
        cls.s.start()
        cls.channel = grpc.insecure_channel(f"127.0.0.1:{cls.s.grpc_port}")
        from spool.v1 import queue_pb2_grpc
        cls.stub = queue_pb2_grpc.QueueServiceStub(cls.channel)
        cls.md = (("authorization", f"Bearer {cls.TOKEN}"),) if cls.TOKEN else ()
        cls.port = cls.s.http_port
        cls.host = f"127.0.0.1:{cls.port}"

    @classmethod
    def more_args(cls):
        return []

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        try:
            cls.s.stop()
        finally:
            cls.s.tmp.cleanup()

    def tearDown(self):
        if self.s.proc.poll() is not None:
            self.fail(f"spoold exited with {self.s.proc.returncode}; log:\n{self.s.read_log()}")

    # gRPC ------------------------------------------------------------------------------------

    def call(self, method, request):
        return getattr(self.stub, method)(request, metadata=self.md, timeout=10)

    def create(self, name, **config):
        return self.call("CreateQueue", pb.CreateQueueRequest(name=name,
                                                               config=pb.QueueConfig(**config)))

    def enqueue(self, queue, *payloads, delay=None, attributes=None):
        entries = []
        for p in payloads:
            e = pb.EnqueueEntry(payload=p if isinstance(p, bytes) else p.encode(),
                                attributes=attributes or {})
            if delay is not None:
                e.delay.CopyFrom(secs(delay))
            entries.append(e)
        r = self.call("Enqueue", pb.EnqueueRequest(queue=queue, messages=entries))
        return [x.message_id for x in r.results]

    def lease(self, queue, n=1, visibility=600):
        return self.call("Lease", pb.LeaseRequest(queue=queue, max_messages=n,
                                                  visibility_timeout=secs(visibility))).messages

    def stats(self, queue):
        return self.call("GetQueue", pb.GetQueueRequest(name=queue)).stats

    def grpc_peek_all(self, queue):
        out, after = [], ""
        for _ in range(100):
            r = self.call("Peek", pb.PeekRequest(queue=queue, max_messages=1000,
                                                 start_after=after))
            out += list(r.messages)
            if not r.next_start_after:
                return out
            after = r.next_start_after
        raise AssertionError("Peek did not end")

    def snapshot(self):
        """Every queue's config and stats (less the clock-driven oldest_ready_age) and every
        message, as text: what a bad request must leave exactly as it was."""
        out, token = [], ""
        while True:
            r = self.call("ListQueues", pb.ListQueuesRequest(page_size=1000, page_token=token))
            for q in r.queues:
                q.stats.ClearField("oldest_ready_age")
                out.append(str(q))
                out += [str(m) for m in self.grpc_peek_all(q.name)]
            token = r.next_page_token
            if not token:
                return out

    def assertUnchanged(self, before, what):
        after = self.snapshot()
        if after != before:
            self.fail(f"{what}: the store changed\nbefore:\n" + "\n".join(before) +
                      "\nafter:\n" + "\n".join(after))

    # HTTP ------------------------------------------------------------------------------------

    def req(self, method, path, body=None, headers=None):
        return self.s.request(method, path, body=body, headers=headers)

    def ok_json(self, method, path, body=None, headers=None, status=200):
        code, h, b = self.req(method, path, body, headers)
        self.assertEqual(code, status, f"{method} {path}: {b[:500]!r}")
        self.assertEqual(h.get("content-type", "").split(";")[0].strip().lower(),
                         "application/json", f"{method} {path}: Content-Type {h}")
        return json.loads(b)

    def assertJsonError(self, reply, code, field=None, what=""):
        status, h, body = reply
        codes = code if isinstance(code, (set, tuple, list)) else {code}
        self.assertIn(status, codes, f"{what}: got {status} {body[:300]!r}")
        self.assertEqual(h.get("content-type", "").split(";")[0].strip().lower(),
                         "application/json", f"{what}: error reply's Content-Type: {h}")
        text = body.decode("utf-8")
        self.assertNotIn("\n", text.strip(), f"{what}: error body is not one line: {text!r}")
        doc = json.loads(text)
        self.assertIsInstance(doc, dict, what)
        self.assertIsInstance(doc.get("error"), str, f"{what}: {doc}")
        self.assertTrue(doc["error"], f"{what}: empty error sentence")
        if field is not None:
            self.assertEqual(doc.get("field"), field, f"{what}: {doc}")
        return doc

    def assertServing(self, what=""):
        deadline = time.monotonic() + 10
        while True:
            try:
                status, h, body = self.req("GET", "/healthz")
                break
            except OSError:
                if time.monotonic() > deadline or self.s.proc.poll() is not None:
                    raise
                time.sleep(0.1)
        self.assertIsNone(self.s.proc.poll(), f"{what}: spoold died; log:\n{self.s.read_log()}")
        self.assertEqual((status, json.loads(body)), (200, {"status": "SERVING"}), what)

    def spoolctl_json(self, *args, token=None):
        env = {k: v for k, v in os.environ.items() if k not in ("SPOOL_TOKEN", "SPOOL_SERVER")}
        if token:
            env["SPOOL_TOKEN"] = token
        r = subprocess.run(
            [os.path.join(BIN, "spoolctl"), "--server", f"127.0.0.1:{self.s.grpc_port}",
             "--output", "json", *args], capture_output=True, timeout=30, env=env)
        self.assertEqual(r.returncode, 0, r.stderr.decode())
        return json.loads(r.stdout)


def drop_clock_fields(doc):
    """oldest_ready_age moves with the clock: left out of comparisons."""
    if isinstance(doc, dict):
        return {k: drop_clock_fields(v) for k, v in doc.items() if k != "oldest_ready_age"}
    if isinstance(doc, list):
        return [drop_clock_fields(v) for v in doc]
    return doc


def fill_missing_zeros(http_doc, ref):
    """The spec lets the HTTP reply leave out unset fields (read as 0): copy such zero values
    from the reference so that everything else can be compared exactly."""
    if isinstance(http_doc, dict) and isinstance(ref, dict):
        out = dict(http_doc)
        for k, v in ref.items():
            if k not in out and v in ("0", 0, "0s", "", False, {}, []):
                out[k] = v
            elif k in out:
                out[k] = fill_missing_zeros(out[k], v)
        return out
    if isinstance(http_doc, list) and isinstance(ref, list) and len(http_doc) == len(ref):
        return [fill_missing_zeros(a, b) for a, b in zip(http_doc, ref)]
    return http_doc


# ---------------------------------------------------------------------------------------------

class AdminApiTest(HttpCase):
    """No auth; --max-request-bytes at its minimum (1 MiB) for the oversize cases."""

    EXTRA_ARGS = ("--max-request-bytes", "1048576")

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        self = cls("snapshot")  # an instance only for its helpers
        # A store with something in every state (as in tests/server/bad_input_test.cc).
        self.create("jobs-dead")
        self.create("jobs", max_deliveries=3, dead_letter_queue="jobs-dead")
        self.enqueue("jobs", "a")
        self.lease("jobs", 1)
        self.enqueue("jobs", "b", "c")
        self.enqueue("jobs", "later", delay=600)
        self.enqueue("jobs-dead", "dead-1", "dead-2")
        # A dead-letter queue two queues feed ("to" is then required) and one nobody feeds.
        self.create("shared-dead")
        self.create("src1", max_deliveries=2, dead_letter_queue="shared-dead")
        self.create("src2", max_deliveries=2, dead_letter_queue="shared-dead")
        self.enqueue("shared-dead", "s1", "s2")
        self.create("lonely")
        self.enqueue("lonely", "l1")

    # --- endpoints ------------------------------------------------------------------------------

    def test_healthz(self):
        doc = self.ok_json("GET", "/healthz")
        self.assertEqual(doc, {"status": "SERVING"})

    def test_metrics(self):
        status, h, body = self.req("GET", "/metrics")
        self.assertEqual(status, 200, body[:300])
        ct = h.get("content-type", "")
        self.assertTrue(ct.startswith("text/plain") and "version=0.0.4" in ct, ct)
        text = body.decode()
        types, samples = {}, []
        for line in text.splitlines():
            if line.startswith("# TYPE "):
                _, _, name, kind = line.split(" ", 3)
                types[name] = kind
            elif line and not line.startswith("#"):
                m = re.match(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? (\S+)( \d+)?$', line)
                self.assertTrue(m, f"not a Prometheus sample line: {line!r}")
                labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"',
                                         m.group(3) or ""))
                samples.append((m.group(1), labels, float(m.group(4))))
        expected = {
            "spool_queue_messages": "gauge", "spool_queue_oldest_ready_age_seconds": "gauge",
            "spool_queue_enqueued_total": "counter", "spool_queue_delivered_total": "counter",
            "spool_queue_acked_total": "counter", "spool_queue_nacked_total": "counter",
            "spool_queue_dead_lettered_total": "counter", "spool_queue_expired_total": "counter",
            "spool_queue_purged_total": "counter", "spool_queue_deleted_total": "counter",
            "spool_queue_moved_total": "counter", "spool_rpc_requests_total": "counter",
            "spool_rpc_duration_seconds": "histogram", "spool_commit_groups_total": "counter",
            "spool_commit_group_size": "histogram",
            "spool_commit_fsync_duration_seconds": "histogram", "spool_lease_waiters": "gauge",
            "spool_storage_bytes": "gauge", "spool_up": "gauge", "spool_build_info": "gauge",
            "process_resident_memory_bytes": "gauge", "process_cpu_seconds_total": "counter",
            "process_open_fds": "gauge", "process_start_time_seconds": "gauge"}
        for name, kind in expected.items():
            self.assertEqual(types.get(name), kind, f"# TYPE of {name}")

        def value(name, **labels):
            found = [v for n, l, v in samples if n == name and l == labels]
            self.assertEqual(len(found), 1, f"{name}{labels}: {found}")
            return found[0]

        self.assertEqual(value("spool_up"), 1)
        st = self.stats("jobs")
        for state in ("ready", "leased", "delayed"):
            self.assertEqual(value("spool_queue_messages", queue="jobs", state=state),
                             getattr(st, state), state)
        self.assertEqual(value("spool_queue_enqueued_total", queue="jobs"), st.enqueued_total)
        self.assertGreaterEqual(value("spool_rpc_requests_total", method="Enqueue", code="OK"), 1)
        self.assertTrue(any(n == "spool_rpc_duration_seconds_bucket" and l.get("le") == "+Inf"
                            for n, l, _ in samples))
        for kind in ("live_sst", "total_sst", "wal", "memtable"):
            value("spool_storage_bytes", kind=kind)
        info = [l for n, l, _ in samples if n == "spool_build_info"]
        self.assertEqual(len(info), 1)
        self.assertEqual(set(info[0]), {"version", "durability"})
        self.assertEqual(info[0]["durability"], "sync")

    def test_dashboard_files(self):
        for path, ctype in (("/", "text/html"), ("/assets/app.js", "javascript"),
                            ("/assets/app.css", "text/css")):
            status, h, body = self.req("GET", path)
            self.assertEqual(status, 200, path)
            self.assertIn(ctype, h.get("content-type", ""), path)
            self.assertTrue(body, path)
        self.assertJsonError(self.req("GET", "/assets/nope.js"), 404, what="/assets/nope.js")

    def test_list_queues_is_spoolctls_json(self):
        for args, path in (((), "/api/v1/queues"),
                           (("--prefix", "jobs"), "/api/v1/queues?prefix=jobs"),
                           (("--prefix", "src"), "/api/v1/queues?prefix=src"),
                           (("--prefix", "zzz"), "/api/v1/queues?prefix=zzz")):
            http_doc = self.ok_json("GET", path)
            ctl = self.spoolctl_json("queues", *args)
            self.assertEqual(drop_clock_fields(fill_missing_zeros(http_doc, ctl)),
                             drop_clock_fields(ctl), path)
        doc = self.ok_json("GET", "/api/v1/queues?prefix=jobs")
        self.assertEqual([q["name"] for q in doc["queues"]], ["jobs", "jobs-dead"])
        jobs = doc["queues"][0]
        # The contract's types: uint64 as strings, uint32 as numbers, durations "30s".
        self.assertEqual(jobs["config"]["max_deliveries"], 3)
        self.assertEqual(jobs["config"]["max_payload_bytes"], 262144)
        self.assertEqual(jobs["config"]["max_depth"], "0")
        self.assertEqual(jobs["config"]["visibility_timeout"], "30s")
        self.assertEqual(jobs["config"]["dedup_window"], "300s")
        self.assertEqual(jobs["config"]["dead_letter_queue"], "jobs-dead")
        st = self.stats("jobs")
        for k in ("ready", "leased", "delayed", "total", "enqueued_total", "delivered_total"):
            self.assertEqual(jobs["stats"][k], str(getattr(st, k)), k)
        self.assertEqual((jobs["stats"]["ready"], jobs["stats"]["leased"],
                          jobs["stats"]["delayed"]), ("2", "1", "1"))
        self.assertRegex(jobs["stats"].get("oldest_ready_age", "0s"), DURATION)
        ts_ms(jobs["create_time"])
        self.assertEqual(doc["totals"], {"ready": "4", "leased": "1", "delayed": "1",
                                         "total": "6"})

    def test_get_queue(self):
        doc = self.ok_json("GET", "/api/v1/queues/jobs")
        ctl = self.spoolctl_json("stats", "jobs")
        self.assertEqual(drop_clock_fields(fill_missing_zeros(doc, ctl)), drop_clock_fields(ctl))
        self.assertEqual(doc["name"], "jobs")
        q = self.call("GetQueue", pb.GetQueueRequest(name="jobs"))
        self.assertEqual(ts_ms(doc["create_time"]), pb_ms(q.create_time))

    def check_message(self, m, g, what):
        """An HTTP peek entry m against the gRPC PeekedMessage g."""
        self.assertEqual(set(m), MESSAGE_KEYS, what)
        self.assertEqual(m["message_id"], g.message_id, what)
        self.assertEqual(m["state"], STATE_NAMES[g.state], what)
        self.assertIs(type(m["delivery_count"]), int, what)
        self.assertEqual(m["delivery_count"], g.delivery_count, what)
        self.assertEqual(ts_ms(m["enqueue_time"]), pb_ms(g.enqueue_time), what)
        self.assertEqual(ts_ms(m["visible_time"]), pb_ms(g.visible_time), what)
        self.assertEqual(m["attributes"], dict(g.attributes), what)
        self.assertIs(type(m["payload_bytes"]), int, what)
        self.assertEqual(m["payload_bytes"], len(g.payload), what)
        self.assertEqual(m["dead_letter_source_queue"], g.dead_letter_source_queue, what)
        self.assertEqual(m["dead_letter_source_id"], g.dead_letter_source_id, what)

    def test_peek_states(self):
        self.create("states")
        [leased_id] = self.enqueue("states", "will be leased")
        [lm] = self.lease("states", 1, visibility=600)
        [ready1] = self.enqueue("states", "ready one", attributes={"k": "v"})
        [delayed_id] = self.enqueue("states", "delayed one", delay=600)
        [ready2] = self.enqueue("states", "ready two")
        before = self.snapshot()
        grpc_msgs = {g.message_id: g for g in self.grpc_peek_all("states")}
        doc = self.ok_json("GET", "/api/v1/queues/states/messages")
        self.assertEqual(set(doc), {"messages", "next_after"})
        self.assertEqual(doc["next_after"], "")
        got = [(m["message_id"], m["state"]) for m in doc["messages"]]
        self.assertEqual(got, [(leased_id, "leased"), (ready1, "ready"), (delayed_id, "delayed"),
                               (ready2, "ready")])
        for m in doc["messages"]:
            self.check_message(m, grpc_msgs[m["message_id"]], m["message_id"])
        by_id = {m["message_id"]: m for m in doc["messages"]}
        self.assertEqual(by_id[leased_id]["delivery_count"], 1)
        self.assertEqual(ts_ms(by_id[leased_id]["visible_time"]), pb_ms(lm.lease_deadline))
        self.assertEqual(ts_ms(by_id[delayed_id]["visible_time"]) -
                         ts_ms(by_id[delayed_id]["enqueue_time"]), 600_000)
        self.assertEqual(by_id[ready1]["attributes"], {"k": "v"})
        self.assertEqual(by_id[ready1]["payload"], "ready one")
        self.assertEqual(by_id[ready1]["payload_encoding"], "text")
        self.assertIs(by_id[ready1]["payload_truncated"], False)
        for state, want in (("ready", [ready1, ready2]), ("leased", [leased_id]),
                            ("delayed", [delayed_id])):
            d = self.ok_json("GET", f"/api/v1/queues/states/messages?state={state}")
            self.assertEqual([m["message_id"] for m in d["messages"]], want, state)
            self.assertTrue(all(m["state"] == state for m in d["messages"]), state)
        # A state filter with paging: every ready message once, in order.
        ids, after = [], ""
        for _ in range(10):
            path = "/api/v1/queues/states/messages?state=ready&limit=1"
            d = self.ok_json("GET", path + (f"&after={after}" if after else ""))
            self.assertLessEqual(len(d["messages"]), 1)
            ids += [m["message_id"] for m in d["messages"]]
            after = d["next_after"]
            if not after:
                break
        self.assertEqual(ids, [ready1, ready2])
        # Percent-encoded query values decode.
        d = self.ok_json("GET", "/api/v1/queues/states/messages?state=re%61dy")
        self.assertEqual([m["message_id"] for m in d["messages"]], [ready1, ready2])
        self.assertUnchanged(before, "peek")

    def test_peek_limit_and_after_paging(self):
        self.create("pages")
        ids = self.enqueue("pages", *[f"m{i}" for i in range(25)])
        before = self.snapshot()
        walked, after, pages = [], None, []
        for _ in range(10):
            path = "/api/v1/queues/pages/messages?limit=10" + (f"&after={after}" if after else "")
            d = self.ok_json("GET", path)
            pages.append(len(d["messages"]))
            walked += [m["message_id"] for m in d["messages"]]
            self.assertEqual([m["payload"] for m in d["messages"]],
                             [f"m{ids.index(m['message_id'])}" for m in d["messages"]])
            after = d["next_after"]
            if not after:
                break
            self.assertEqual(after, walked[-1])
        self.assertEqual(pages, [10, 10, 5])
        self.assertEqual(walked, ids)
        d = self.ok_json("GET", "/api/v1/queues/pages/messages")
        self.assertEqual(len(d["messages"]), 20)  # the default limit
        self.assertEqual(d["next_after"], ids[19])
        d = self.ok_json("GET", "/api/v1/queues/pages/messages?limit=1000")
        self.assertEqual([m["message_id"] for m in d["messages"]], ids)
        self.assertEqual(d["next_after"], "")
        d = self.ok_json("GET", "/api/v1/queues/pages/messages?limit=1")
        self.assertEqual([m["message_id"] for m in d["messages"]], ids[:1])
        d = self.ok_json("GET", f"/api/v1/queues/pages/messages?after={ids[-1]}")
        self.assertEqual(d, {"messages": [], "next_after": ""})
        d = self.ok_json("GET", "/api/v1/queues/pages/messages?after=ffffffffffffffff")
        self.assertEqual(d, {"messages": [], "next_after": ""})
        self.assertUnchanged(before, "peek pages")

    def test_payload_text_and_base64(self):
        self.create("payloads")
        long_text = "".join(chr(ord("a") + i % 26) for i in range(5000))
        split_utf8 = "a" + "\u00e9" * 1500  # byte 1024 falls inside a 2-byte character
        binary = bytes(range(256)) * 12
        cases = [("json", b'{"file_id": "abc"}'), ("utf8", "h\u00e9llo \u2713".encode()),
                 ("empty", b""), ("binary", b"\xff\xfe\x00\x01abc"),
                 ("long", long_text.encode()), ("split", split_utf8.encode()),
                 ("long-binary", binary), ("nul", b"a\x00b")]
        ids = {}
        for name, payload in cases:
            [ids[name]] = self.enqueue("payloads", payload, attributes={"case": name})
        d = self.ok_json("GET", "/api/v1/queues/payloads/messages")
        got = {m["attributes"]["case"]: m for m in d["messages"]}
        for name, payload in cases:
            m = got[name]
            self.assertEqual(m["payload_bytes"], len(payload), name)
            try:
                text = payload.decode("utf-8")
            except UnicodeDecodeError:
                text = None
            if text is None:
                self.assertEqual(m["payload_encoding"], "base64", name)
                raw = base64.b64decode(m["payload"], validate=True)
                self.assertTrue(payload.startswith(raw), name)
                self.assertEqual(m["payload_truncated"], len(raw) < len(payload), name)
                if len(payload) <= 1024:
                    self.assertEqual(raw, payload, name)
            elif len(payload) <= 1024:
                self.assertEqual((m["payload_encoding"], m["payload"], m["payload_truncated"]),
                                 ("text", text, False), name)
            else:  # a preview of the first 1 KiB, cut on a character boundary
                self.assertEqual(m["payload_encoding"], "text", name)
                self.assertIs(m["payload_truncated"], True, name)
                self.assertTrue(text.startswith(m["payload"]), name)
                self.assertLessEqual(len(m["payload"].encode()), 1024, name)
                self.assertGreaterEqual(len(m["payload"].encode()), 1021, name)
        self.assertEqual(got["long"]["payload"], long_text[:1024])
        for enc in ("base64",):
            d = self.ok_json("GET", f"/api/v1/queues/payloads/messages?encoding={enc}")
            got = {m["attributes"]["case"]: m for m in d["messages"]}
            for name, payload in cases:
                m = got[name]
                self.assertEqual(m["payload_encoding"], "base64", name)
                self.assertEqual(base64.b64decode(m["payload"], validate=True), payload, name)
                self.assertIs(m["payload_truncated"], False, name)
                self.assertEqual(m["payload_bytes"], len(payload), name)
        d = self.ok_json("GET", "/api/v1/queues/payloads/messages?encoding=text")
        self.assertEqual({m["attributes"]["case"]: m["payload"] for m in d["messages"]}["utf8"],
                         "h\u00e9llo \u2713")

    def test_purge(self):
        self.create("to-purge")
        self.enqueue("to-purge", "x")
        self.lease("to-purge")
        self.enqueue("to-purge", "y")
        self.enqueue("to-purge", "z", delay=600)
        doc = self.ok_json("POST", "/api/v1/queues/to-purge/purge")
        self.assertEqual(doc, {"queue": "to-purge", "purged": "3"})
        st = self.stats("to-purge")
        self.assertEqual((st.total, st.ready, st.leased, st.delayed, st.purged_total),
                         (0, 0, 0, 0, 3))
        self.assertEqual(self.grpc_peek_all("to-purge"), [])
        doc = self.ok_json("POST", "/api/v1/queues/to-purge/purge")
        self.assertEqual(doc, {"queue": "to-purge", "purged": "0"})

    def test_redrive(self):
        self.create("rd-dead")
        self.create("rd", max_deliveries=1, dead_letter_queue="rd-dead")
        # One real dead-lettering, to see where it came from.
        [poison] = self.enqueue("rd", "poison")
        self.lease("rd", 1, visibility=1)
        deadline = time.monotonic() + 10
        while self.stats("rd-dead").total == 0:
            self.assertLess(time.monotonic(), deadline, "not dead-lettered")
            time.sleep(0.2)
            self.lease("rd", 1, visibility=1)
        d = self.ok_json("GET", "/api/v1/queues/rd-dead/messages")
        [m] = d["messages"]
        self.assertEqual((m["dead_letter_source_queue"], m["dead_letter_source_id"],
                          m["delivery_count"], m["payload"], m["state"]),
                         ("rd", poison, 0, "poison", "ready"))
        payloads = ["poison"] + [f"d{i}" for i in range(149)]
        self.enqueue("rd-dead", *payloads[1:])
        self.enqueue("rd-dead", "still delayed", delay=600)
        doc = self.ok_json("POST", "/api/v1/queues/rd-dead/redrive", body={"to": "rd", "max": 3},
                           headers={"Content-Type": "application/json"})
        self.assertEqual(doc, {"from": "rd-dead", "to": "rd", "moved": "3"})
        self.assertEqual(sorted(g.payload.decode() for g in self.grpc_peek_all("rd")),
                         sorted(payloads[:3]))
        self.assertEqual(self.stats("rd-dead").total, 148)
        # "to" left out: rd is the only queue that dead-letters into rd-dead; max 0 means all,
        # beyond MoveMessages' 100 per call.
        doc = self.ok_json("POST", "/api/v1/queues/rd-dead/redrive", body={"max": 0},
                           headers={"Content-Type": "application/json"})
        self.assertEqual(doc, {"from": "rd-dead", "to": "rd", "moved": "147"})
        arrived = self.grpc_peek_all("rd")
        self.assertEqual(sorted(g.payload.decode() for g in arrived), sorted(payloads))
        self.assertTrue(all(g.delivery_count == 0 for g in arrived))
        dead = self.stats("rd-dead")
        self.assertEqual((dead.total, dead.delayed, dead.moved_total), (1, 1, 150))
        doc = self.ok_json("POST", "/api/v1/queues/rd-dead/redrive", body={"to": "rd"},
                           headers={"Content-Type": "application/json"})
        self.assertEqual(doc, {"from": "rd-dead", "to": "rd", "moved": "0"})

    def test_delete_message(self):
        self.create("del")
        a, b = self.enqueue("del", "a", "b")
        self.lease("del", 1)  # a is leased: deleted whatever its state
        doc = self.ok_json("DELETE", f"/api/v1/queues/del/messages/{a}")
        self.assertEqual(doc, {"deleted": True})
        self.assertEqual([g.message_id for g in self.grpc_peek_all("del")], [b])
        st = self.stats("del")
        self.assertEqual((st.total, st.deleted_total, st.leased), (1, 1, 0))
        before = self.snapshot()
        self.assertJsonError(self.req("DELETE", f"/api/v1/queues/del/messages/{a}"), 404,
                             what="second DELETE")
        self.assertUnchanged(before, "second DELETE")

    def test_queue_name_percent_encoded(self):
        # Names are 1..80 of A-Z a-z 0-9 . _ -: none needs escaping, but escapes must decode.
        name = "a.b-c_D9"
        self.create(name)
        self.enqueue(name, "hi")
        for path in ("a.b-c_D9", "a%2Eb%2Dc_D9", "a%2eb%2dc%5fD9", "%61.b-c_D9",
                     "%61%2E%62%2D%63%5F%44%39"):
            doc = self.ok_json("GET", f"/api/v1/queues/{path}")
            self.assertEqual(doc["name"], name, path)
            d = self.ok_json("GET", f"/api/v1/queues/{path}/messages")
            self.assertEqual([m["payload"] for m in d["messages"]], ["hi"], path)
        long_name = "q" * 80
        self.create(long_name)
        self.assertEqual(self.ok_json("GET", f"/api/v1/queues/{long_name}")["name"], long_name)
        doc = self.ok_json("POST", "/api/v1/queues/a%2Eb%2Dc_D9/purge")
        self.assertEqual(doc, {"queue": name, "purged": "1"})
        # "." and ".." are valid queue names; a literal ".." segment is refused (below), an
        # escaped one may name the queue or be refused, but never reach another resource.
        self.create("..")
        status, h, body = self.req("GET", "/api/v1/queues/%2E%2E")
        if status == 200:
            self.assertEqual(json.loads(body)["name"], "..")
            note("GET /api/v1/queues/%2E%2E returns the queue named '..' (200)")
        else:
            self.assertJsonError((status, h, body), {400, 404}, what="/api/v1/queues/%2E%2E")
            note(f"GET /api/v1/queues/%2E%2E (queue '..' exists): {status} {body.decode()}")

    # --- errors -------------------------------------------------------------------------------

    def test_unknown_queue_is_404(self):
        before = self.snapshot()
        for method, path in (("GET", "/api/v1/queues/x"), ("GET", "/api/v1/queues/x/messages"),
                             ("POST", "/api/v1/queues/x/purge"),
                             ("POST", "/api/v1/queues/x/redrive"),
                             ("DELETE", "/api/v1/queues/x/messages/0000000000000001")):
            body = b'{"to": "jobs"}' if path.endswith("redrive") else None
            doc = self.assertJsonError(self.req(method, path, body), 404, what=f"{method} {path}")
            self.assertEqual(doc["error"], 'queue "x" not found', f"{method} {path}")
            if path == "/api/v1/queues/x":
                self.assertEqual(doc, {"error": 'queue "x" not found'})
        self.assertUnchanged(before, "404s")

    def test_unknown_path_is_404(self):
        before = self.snapshot()
        for path in ("/nope", "/api", "/api/v1", "/api/v1/", "/api/v2/queues", "/api/v1/nope",
                     "/api/v1/queues/jobs/nope", "/api/v1/queues/jobs/messages/x/y",
                     "/healthz/x", "/assets/", "/api/v1/queues/jobs/purge/x",
                     "/API/V1/QUEUES"):
            self.assertJsonError(self.req("GET", path), 404, what=f"GET {path}")
        self.assertUnchanged(before, "unknown paths")

    def test_wrong_method_is_405(self):
        before = self.snapshot()
        cases = [("GET", "/api/v1/queues/jobs/purge", "POST"),
                 ("GET", "/api/v1/queues/jobs/redrive", "POST"),
                 ("DELETE", "/api/v1/queues/jobs/purge", "POST"),
                 ("PUT", "/api/v1/queues/jobs/redrive", "POST"),
                 ("POST", "/api/v1/queues", "GET"),
                 ("DELETE", "/api/v1/queues", "GET"),
                 ("POST", "/api/v1/queues/jobs", "GET"),
                 ("DELETE", "/api/v1/queues/jobs", "GET"),
                 ("PATCH", "/api/v1/queues/jobs", "GET"),
                 ("POST", "/api/v1/queues/jobs/messages", "GET"),
                 ("DELETE", "/api/v1/queues/jobs/messages", "GET"),
                 ("POST", "/healthz", "GET"),
                 ("DELETE", "/metrics", "GET"),
                 ("GET", "/api/v1/queues/jobs/messages/0000000000000002", "DELETE"),
                 ("POST", "/api/v1/queues/jobs/messages/0000000000000002", "DELETE")]
        allow_seen = {}
        for method, path, allowed in cases:
            status, h, body = self.req(method, path, b"" if method in ("POST", "PUT", "PATCH")
                                       else None)
            self.assertJsonError((status, h, body), 405, what=f"{method} {path}")
            allow_seen[f"{method} {path}"] = h.get("allow")
            if h.get("allow") is not None:
                methods = {x.strip() for x in h["allow"].split(",")}
                self.assertIn(allowed, methods, f"{method} {path}: Allow: {h['allow']}")
                self.assertNotIn(method, methods, f"{method} {path}: Allow: {h['allow']}")
        self.assertUnchanged(before, "405s")
        with_allow = [k for k, v in allow_seen.items() if v is not None]
        note(f"405 replies with an Allow header: {len(with_allow)} of {len(allow_seen)}"
             + (f" (e.g. {with_allow[0]}: Allow: {allow_seen[with_allow[0]]})" if with_allow
                else ""))

    def test_bad_parameters_are_400_naming_the_field_and_change_nothing(self):
        msgs = "/api/v1/queues/jobs/messages"
        redrive = "/api/v1/queues/jobs-dead/redrive"
        jsonh = {"Content-Type": "application/json"}
        cases = [
            ("state=bogus", "GET", msgs + "?state=bogus", None, 400, "state"),
            ("state=READY", "GET", msgs + "?state=READY", None, 400, "state"),
            ("limit=0", "GET", msgs + "?limit=0", None, 400, "limit"),
            ("limit=1001", "GET", msgs + "?limit=1001", None, 400, "limit"),
            ("limit=abc", "GET", msgs + "?limit=abc", None, 400, "limit"),
            ("limit=-1", "GET", msgs + "?limit=-1", None, 400, "limit"),
            ("limit=1.5", "GET", msgs + "?limit=1.5", None, 400, "limit"),
            ("limit=10abc", "GET", msgs + "?limit=10abc", None, 400, "limit"),
            ("limit=2^64", "GET", msgs + "?limit=18446744073709551616", None, 400, "limit"),
            ("limit=2^32+5", "GET", msgs + "?limit=4294967301", None, 400, "limit"),
            ("encoding=hex", "GET", msgs + "?encoding=hex", None, 400, "encoding"),
            ("after=zz", "GET", msgs + "?after=zz", None, 400, "after"),
            ("after upper-case", "GET", msgs + "?after=ABCDEF0123456789", None, 400, "after"),
            ("limit=%zz", "GET", msgs + "?limit=%zz", None, 400, None),
            ("redrive: not JSON", "POST", redrive, b"not json", 400, None),
            ("redrive: truncated JSON", "POST", redrive, b'{"to": "jobs"', 400, None),
            ("redrive: array", "POST", redrive, b"[1, 2]", 400, None),
            ("redrive: string", "POST", redrive, b'"jobs"', 400, None),
            ("redrive: not UTF-8", "POST", redrive, b'{"to": "\xff\xfe"}', 400, None),
            ("redrive: deeply nested", "POST", redrive, b"[" * 100000, 400, None),
            ("redrive: deeply nested object", "POST", redrive, b'{"to":' * 50000, 400, None),
            ("redrive: max -1", "POST", redrive, b'{"to": "jobs", "max": -1}', 400, "max"),
            ("redrive: max abc", "POST", redrive, b'{"to": "jobs", "max": "abc"}', 400, "max"),
            ("redrive: max 1.5", "POST", redrive, b'{"to": "jobs", "max": 1.5}', 400, "max"),
            ("redrive: max 1e30", "POST", redrive, b'{"to": "jobs", "max": 1e30}', 400, "max"),
            ("redrive: max true", "POST", redrive, b'{"to": "jobs", "max": true}', 400, "max"),
            ("redrive: max 2^64", "POST", redrive,
             b'{"to": "jobs", "max": 18446744073709551616}', 400, "max"),
            ("redrive: unknown field", "POST", redrive, b'{"to": "jobs", "maxx": 3}', 400, "maxx"),
            ("redrive: to not a string", "POST", redrive, b'{"to": 5}', 400, "to"),
            ("redrive: to itself", "POST", redrive, b'{"to": "jobs-dead"}', 400, "to"),
            ("redrive: to missing, two sources", "POST", "/api/v1/queues/shared-dead/redrive",
             b"{}", 400, "to"),
            ("redrive: to missing, no source", "POST", "/api/v1/queues/lonely/redrive",
             b"{}", 400, "to"),
            ("redrive: to an unknown queue", "POST", redrive, b'{"to": "nope"}', {400, 404},
             None),
            ("redrive: to an invalid name", "POST", redrive, b'{"to": "a b"}', {400, 404}, None),
            ("delete: malformed id", "DELETE", "/api/v1/queues/jobs/messages/zz", None,
             {400, 404}, None),
            ("delete: unknown id", "DELETE",
             "/api/v1/queues/jobs/messages/ffffffffffffffff", None, 404, None),
            ("name with a space", "GET", "/api/v1/queues/a%20b", None, {400, 404}, None),
            ("name with NUL", "GET", "/api/v1/queues/a%00b", None, {400, 404}, None),
            ("name not UTF-8", "GET", "/api/v1/queues/a%FFb", None, {400, 404}, None),
            ("name of 81 chars", "GET", "/api/v1/queues/" + "q" * 81, None, {400, 404}, None),
            ("escaped slash", "GET", "/api/v1/queues/jobs%2Fmessages", None, {400, 404}, None),
            ("escaped slash purge", "POST", "/api/v1/queues/jobs%2Fpurge", b"", {400, 404, 405},
             None),
        ]
        for name, method, path, body, code, field in cases:
            with self.subTest(name):
                before = self.snapshot()
                reply = self.req(method, path, body, jsonh if method == "POST" else None)
                doc = self.assertJsonError(reply, code, field, what=name)
                if code == {400, 404} and reply[0] == 400 and field is None:
                    note(f"{name}: 400 {json.dumps(doc)}")
                self.assertUnchanged(before, name)
        self.assertServing("after the bad parameters")

    # --- CSRF ---------------------------------------------------------------------------------

    def test_cross_origin_post_is_refused(self):
        self.create("csrf")
        [mid] = self.enqueue("csrf", "keep me", "and me")[:1]
        before = self.snapshot()
        for origin in ("http://evil.example", f"http://evil.example:{self.port}",
                       f"http://127.0.0.1:{self.port + 1 if self.port < 65535 else 1}",
                       f"http://localhost:{self.port}", "null", f"https://127.0.0.1:{self.port}x",
                       "http://127.0.0.1"):
            for method, path, body in (("POST", "/api/v1/queues/csrf/purge", None),
                                       ("POST", "/api/v1/queues/csrf/redrive",
                                        b'{"to": "jobs"}'),
                                       ("DELETE", f"/api/v1/queues/csrf/messages/{mid}", None)):
                self.assertJsonError(self.req(method, path, body, {"Origin": origin}), 403,
                                     what=f"{method} {path} Origin {origin}")
            self.assertUnchanged(before, f"Origin {origin}")
        # A GET from another origin reads (not a change) and grants no cross-origin access.
        status, h, _ = self.req("GET", "/api/v1/queues", headers={"Origin": "http://evil.example"})
        self.assertEqual(status, 200)
        self.assertNotIn("access-control-allow-origin", h)
        # The dashboard's own origin, and no Origin at all (curl), are served.
        doc = self.ok_json("POST", "/api/v1/queues/csrf/purge",
                           headers={"Origin": f"http://127.0.0.1:{self.port}"})
        self.assertEqual(doc, {"queue": "csrf", "purged": "2"})
        self.enqueue("csrf", "again")
        doc = self.ok_json("POST", "/api/v1/queues/csrf/purge")
        self.assertEqual(doc, {"queue": "csrf", "purged": "1"})

    # --- oversize -----------------------------------------------------------------------------

    def test_headers_over_16k_are_431(self):
        before = self.snapshot()
        ok = raw_probe(self.port, get_req(b"/healthz", extra=b"X-Pad: " + b"a" * 12000 + b"\r\n"))
        self.assertEqual(ok[:2], ("response", 200), "12 KB of headers is within the limit")
        for name, req in (
                ("one 17 KiB header", get_req(b"/healthz",
                                              extra=b"X-Big: " + b"a" * 17 * 1024 + b"\r\n")),
                ("200 headers of 100 bytes",
                 get_req(b"/healthz", extra=b"".join(b"X-H%d: %s\r\n" % (i, b"b" * 100)
                                                     for i in range(200)))),
                ("a 1 MiB header", get_req(b"/healthz",
                                           extra=b"X-Huge: " + b"c" * (1 << 20) + b"\r\n"))):
            with self.subTest(name):
                r = raw_probe(self.port, req, timeout=10)
                self.assertEqual(r[0], "response", f"{name}: {r}")
                self.assertJsonError(r[1:], 431, what=name)
        r = raw_probe(self.port, get_req(b"/api/v1/queues/" + b"q" * 17 * 1024), timeout=10)
        self.assertEqual(r[0], "response", f"17 KiB URL: {r}")
        self.assertJsonError(r[1:], {414, 431}, what="17 KiB URL")
        note(f"a 17 KiB request line gets {r[1]}")
        self.assertUnchanged(before, "big headers")
        self.assertServing("after big headers")

    def test_body_over_max_request_bytes_is_413(self):
        before = self.snapshot()
        size = 1153434  # 1.1 MiB, over --max-request-bytes 1048576
        head = (b"POST /api/v1/queues/jobs-dead/redrive HTTP/1.1\r\nHost: " + self.host.encode() +
                b"\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % size)
        r, sent = stream_oversize(self.port, head, size, lambda n: b" " * n)
        self.assertEqual(r[0], "response", f"Content-Length body: {r} after {sent} body bytes")
        self.assertJsonError(r[1:], 413, what="1.1 MiB body")
        note(f"413 for a Content-Length of 1.1 MiB: {sent} body bytes had been accepted by the "
             "socket when it came")
        head = (b"POST /api/v1/queues/jobs-dead/redrive HTTP/1.1\r\nHost: " + self.host.encode() +
                b"\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n")
        r, sent = stream_oversize(self.port, head, size + 100 * 8,
                                  lambda n: b"%x\r\n%s\r\n" % (n - 8, b" " * (n - 8)))
        self.assertEqual(r[0], "response", f"chunked body: {r} after {sent} bytes")
        self.assertJsonError(r[1:], 413, what="1.1 MiB chunked body")
        self.assertUnchanged(before, "oversize bodies")
        self.assertServing("after oversize bodies")

    # --- malformed raw requests ---------------------------------------------------------------

    def test_malformed_requests_get_4xx_or_close(self):
        h = b"Host: " + self.host.encode() + b"\r\n"
        post = b"POST /api/v1/queues/jobs-dead/redrive HTTP/1.1\r\n" + h
        cases = [
            ("garbage line", b"GARBAGE\r\n\r\n", ()),
            ("binary garbage", bytes(range(1, 256)) + b"\r\n\r\n", ()),
            ("TLS hello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64 +
             b"\r\n\r\n", ()),
            ("HTTP/2 preface", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", (505,)),
            ("bad version 9.9", b"GET /healthz HTTP/9.9\r\n" + h + b"\r\n", (505,)),
            ("bad version text", b"GET /healthz HTTP/1.x\r\n" + h + b"\r\n", ()),
            ("bad protocol", b"GET /healthz FOO/1.1\r\n" + h + b"\r\n", ()),
            ("no version", b"GET /healthz\r\n" + h + b"\r\n", ()),
            ("empty method", b" /healthz HTTP/1.1\r\n" + h + b"\r\n", ()),
            ("huge method", b"G" * 5000 + b" /healthz HTTP/1.1\r\n" + h + b"\r\n", (501,)),
            ("Content-Length abc", post + b"Content-Length: abc\r\n\r\n", ()),
            ("Content-Length -1", post + b"Content-Length: -1\r\n\r\n", ()),
            ("Content-Length overflow", post + b"Content-Length: 99999999999999999999999\r\n\r\n",
             (413,)),
            ("two Content-Lengths", post + b"Content-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
             ()),
            ("Content-Length 1,2", post + b"Content-Length: 1, 2\r\n\r\n{}", ()),
            ("NUL in path", b"GET /heal\x00thz HTTP/1.1\r\n" + h + b"\r\n", ()),
            ("NUL in header value", b"GET /healthz HTTP/1.1\r\n" + h + b"X-A: a\x00b\r\n\r\n", ()),
            ("NUL in header name", b"GET /healthz HTTP/1.1\r\n" + h + b"X\x00A: ab\r\n\r\n", ()),
            ("header without colon", b"GET /healthz HTTP/1.1\r\n" + h + b"NoColon\r\n\r\n", ()),
            ("space before colon", b"GET /healthz HTTP/1.1\r\n" + h + b"X-A : b\r\n\r\n", ()),
            ("huge chunk size", post + b"Transfer-Encoding: chunked\r\n\r\n"
             b"FFFFFFFFFFFFFFFFFFFFFFFF\r\n{}\r\n0\r\n\r\n", (413,)),
            ("chunk size 2^64-1", post + b"Transfer-Encoding: chunked\r\n\r\n"
             b"FFFFFFFFFFFFFFFF\r\n{}\r\n0\r\n\r\n", (413,)),
            ("bad chunk size", post + b"Transfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n",
             ()),
            ("unknown transfer-encoding", post + b"Transfer-Encoding: gzip\r\n\r\n{}", (411, 501)),
            ("path without slash", b"GET healthz HTTP/1.1\r\n" + h + b"\r\n", ()),
            ("asterisk path", b"GET * HTTP/1.1\r\n" + h + b"\r\n", ()),
            ("dot-dot to /etc", b"GET /../../etc/passwd HTTP/1.1\r\n" + h + b"\r\n", ()),
            ("dot-dot under assets", b"GET /assets/../../../etc/passwd HTTP/1.1\r\n" + h +
             b"\r\n", ()),
            ("escaped dot-dot under assets", b"GET /assets/%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\n" +
             h + b"\r\n", ()),
            ("escaped slashes under assets",
             b"GET /assets/..%2F..%2F..%2Fetc%2Fpasswd HTTP/1.1\r\n" + h + b"\r\n", ()),
            ("dot-dot in the API", b"GET /api/v1/queues/../queues HTTP/1.1\r\n" + h + b"\r\n", ()),
            ("dot-dot onto purge", b"POST /api/v1/queues/jobs/x/../purge HTTP/1.1\r\n" + h +
             b"Content-Length: 0\r\n\r\n", ()),
            ("dot segment", b"GET /api/v1/./queues HTTP/1.1\r\n" + h + b"\r\n", ()),
            ("%zz", b"GET /api/v1/queues/%zz HTTP/1.1\r\n" + h + b"\r\n", ()),
            ("% at the end", b"GET /api/v1/queues/jobs% HTTP/1.1\r\n" + h + b"\r\n", ()),
            ("%0", b"GET /api/v1/queues/%0 HTTP/1.1\r\n" + h + b"\r\n", ()),
            ("bare LF and CR", b"GET /healthz HTTP/1.1\r" + h + b"\r\n", ()),
            ("non-ASCII path", b"GET /api/v1/queues/\xc3\xa9 HTTP/1.1\r\n" + h + b"\r\n", ()),
        ]
        outcomes = {}
        for name, data, also_ok in cases:
            with self.subTest(name):
                before = self.snapshot()
                r = raw_probe(self.port, data, timeout=5)
                outcomes[name] = r[0] if r[0] != "response" else r[1]
                self.assertNotEqual(r[0], "timeout", f"{name}: no answer and not closed in 5 s")
                if r[0] == "response":
                    status = r[1]
                    self.assertTrue(400 <= status < 500 or status in also_ok,
                                    f"{name}: {status} {r[3][:200]!r}")
                    self.assertNotIn(b"root:", r[3], name)
                    self.assertJsonError(r[1:], status, what=name)
                self.assertUnchanged(before, name)
                self.assertIsNone(self.s.proc.poll(), f"{name}: spoold died")
        closed = [k for k, v in outcomes.items() if v == "closed"]
        if closed:
            note("malformed requests closed without a reply: " + ", ".join(closed))
        self.assertServing("after malformed requests")

    def test_missing_host_header(self):
        r = raw_probe(self.port, b"GET /healthz HTTP/1.1\r\n\r\n")
        note(f"HTTP/1.1 request without Host: {r[0] if r[0] != 'response' else r[1]} "
             "(RFC 9112 says 400)")
        self.assertNotEqual(r[0], "timeout")

    # --- connections --------------------------------------------------------------------------

    def test_keep_alive(self):
        c = RawConn(self.port)
        try:
            for path in (b"/healthz", b"/api/v1/queues/jobs", b"/healthz"):
                c.send(get_req(path, self.host))
                status, h, body = c.read_response()
                self.assertEqual(status, 200, path)
                self.assertNotEqual(h.get("connection", "").lower(), "close", path)
            # Pipelined: two requests at once, two answers in order.
            c.send(get_req(b"/api/v1/queues/jobs", self.host) + get_req(b"/healthz", self.host))
            s1, _, b1 = c.read_response()
            s2, _, b2 = c.read_response()
            self.assertEqual((s1, json.loads(b1)["name"]), (200, "jobs"))
            self.assertEqual((s2, json.loads(b2)), (200, {"status": "SERVING"}))
            # An error reply keeps the connection usable.
            c.send(get_req(b"/api/v1/queues/x", self.host))
            self.assertEqual(c.read_response()[0], 404)
            c.send(get_req(b"/healthz", self.host))
            self.assertEqual(c.read_response()[0], 200)
            c.send(get_req(b"/healthz", self.host, extra=b"Connection: close\r\n"))
            self.assertEqual(c.read_response()[0], 200)
            self.assertTrue(c.closed_by_peer(5), "Connection: close was not honoured")
        finally:
            c.close()
        c = RawConn(self.port)
        try:
            c.send(get_req(b"/healthz", self.host, version=b"HTTP/1.0"))
            self.assertEqual(c.read_response()[0], 200)
            self.assertTrue(c.closed_by_peer(5), "HTTP/1.0 connection left open")
        finally:
            c.close()

    @unittest.skipUnless(MAX_CONN_DEFAULT == 1000, "default --http-max-connections is not 1000")
    def test_default_connection_limit_of_1000(self):
        start = time.monotonic()
        check_connection_limit(self, 1000)
        note(f"1000-connection limit test took {time.monotonic() - start:.1f} s")


def check_connection_limit(t, limit):
    """Fills the limit with idle keep-alive connections, checks one more is refused, and that
    after closing them a new request is served."""
    conns = []
    try:
        for i in range(limit):
            c = RawConn(t.port)
            conns.append(c)
            c.send(get_req(b"/healthz", t.host))
            t.assertEqual(c.read_response()[0], 200, f"connection {i}")
        r = raw_probe(t.port, get_req(b"/healthz", t.host), timeout=5)
        t.assertNotEqual(r[0], "timeout", f"connection {limit + 1}: neither refused nor closed")
        if r[0] == "response":
            t.assertJsonError(r[1:], 503, what=f"connection {limit + 1}")
            note(f"connection {limit + 1} over --http-max-connections {limit}: 503 "
                 f"{r[3].decode(errors='replace')}")
        else:
            note(f"connection {limit + 1} over --http-max-connections {limit}: closed, no reply")
        # The idle ones are still served.
        conns[0].send(get_req(b"/healthz", t.host))
        t.assertEqual(conns[0].read_response()[0], 200)
    finally:
        for c in conns:
            c.close()
    wait_until_served(t, "after closing the idle ones")


def wait_until_served(t, what):
    """spoold sees closed connections when it next reads them: wait (10 s at most) until a new
    one is served again."""
    deadline = time.monotonic() + 10
    while True:
        r = raw_probe(t.port, get_req(b"/healthz", t.host), timeout=5)
        if r[0] == "response" and r[1] == 200:
            return
        t.assertLess(time.monotonic(), deadline, f"not served {what}: {r}")
        time.sleep(0.1)


class ConnectionLimitTest(HttpCase):
    EXTRA_ARGS = ("--http-max-connections", "50", "--metrics-max-queues", "2")

    @classmethod
    def more_args(cls):
        if IDLE_FLAG:
            return [IDLE_FLAG, "1000" if IDLE_FLAG.endswith("-ms") else "1"]
        return []

    def test_connection_limit(self):
        check_connection_limit(self, 50)
        self.assertServing()

    def test_connection_limit_counts_silent_connections(self):
        silent = [RawConn(self.port) for _ in range(50)]
        try:
            time.sleep(0.3)
            r = raw_probe(self.port, get_req(b"/healthz", self.host), timeout=5)
            self.assertNotEqual(r[0], "timeout", "51st connection neither refused nor closed")
            if r[0] == "response":
                self.assertEqual(r[1], 503, r)
        finally:
            for c in silent:
                c.close()
        wait_until_served(self, "after closing the silent ones")

    @unittest.skipUnless(IDLE_FLAG, "spoold has no HTTP idle-timeout flag")
    def test_idle_connection_is_closed(self):
        c = RawConn(self.port)
        try:
            c.send(get_req(b"/healthz", self.host))
            self.assertEqual(c.read_response()[0], 200)
            start = time.monotonic()
            self.assertTrue(c.closed_by_peer(6), f"idle connection still open with {IDLE_FLAG}")
            note(f"{IDLE_FLAG} 1 s: idle connection closed after {time.monotonic() - start:.1f} s")
        finally:
            c.close()
        silent = RawConn(self.port)  # never sends a byte
        try:
            self.assertTrue(silent.closed_by_peer(6), "silent connection still open")
        finally:
            silent.close()

    def test_metrics_max_queues_folds_the_rest_into_other(self):
        for name in ("m1", "m2", "m3", "m4"):
            self.create(name)
            self.enqueue(name, *["x"] * (int(name[1]) + 1))
        status, _, body = self.req("GET", "/metrics")
        self.assertEqual(status, 200)
        per_queue = {}
        for line in body.decode().splitlines():
            m = re.match(r'^spool_queue_enqueued_total\{queue="([^"]*)"\} (\S+)$', line)
            if m:
                per_queue[m.group(1)] = float(m.group(2))
        self.assertIn("_other", per_queue, per_queue)
        self.assertEqual(len(per_queue), 3, per_queue)
        self.assertEqual(sum(per_queue.values()), 2 + 3 + 4 + 5, per_queue)


if not IDLE_FLAG:
    note("spoold --help lists no HTTP idle-timeout flag: the 60 s idle close was not tested")

AUTH_FILE = """# test tokens
tok-admin   admin,produce,consume   *
tok-consume consume                 jobs*
"""


class AuthTest(HttpCase):
    TOKEN = "tok-admin"
    ADMIN = {"Authorization": "Bearer tok-admin"}
    CONSUME = {"Authorization": "Bearer tok-consume"}

    @classmethod
    def more_args(cls):
        cls.auth_dir = tempfile.TemporaryDirectory()
        path = os.path.join(cls.auth_dir.name, "tokens")
        with open(path, "w") as f:
            f.write(AUTH_FILE)
        return ["--auth-file", path] + list(cls.AUTH_EXTRA)

    AUTH_EXTRA = ()

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        self = cls("snapshot")
        for name in ("jobs-a", "jobs-b", "other"):
            self.create(name)
            self.enqueue(name, f"{name} 1", f"{name} 2")

    @classmethod
    def tearDownClass(cls):
        super().tearDownClass()
        cls.auth_dir.cleanup()


class AdminAuthTest(AuthTest):
    def test_no_or_wrong_token_is_401_and_changes_nothing(self):
        before = self.snapshot()
        [mid] = [g.message_id for g in self.grpc_peek_all("jobs-a")][:1]
        calls = [("GET", "/api/v1/queues", None), ("GET", "/api/v1/queues/jobs-a", None),
                 ("GET", "/api/v1/queues/jobs-a/messages", None),
                 ("POST", "/api/v1/queues/jobs-a/purge", None),
                 ("POST", "/api/v1/queues/jobs-a/redrive", b'{"to": "other"}'),
                 ("DELETE", f"/api/v1/queues/jobs-a/messages/{mid}", None),
                 ("GET", "/api/v1/queues/nope", None)]
        www = set()
        for auth in (None, "Bearer tok-wrong", "Bearer tok-admi", "Bearer tok-adminx",
                     "Bearer", "Bearer ", "tok-admin", "Basic dG9rLWFkbWluOg==",
                     "Bearer tok-admin tok-admin", "Bearer\ttok-wrong"):
            for method, path, body in calls:
                headers = {} if auth is None else {"Authorization": auth}
                reply = self.req(method, path, body, headers)
                self.assertJsonError(reply, 401, what=f"{method} {path} with {auth!r}")
                www.add(reply[1].get("www-authenticate"))
        self.assertUnchanged(before, "401s")
        note(f"401 WWW-Authenticate header values seen: {sorted(map(str, www))}")

    def test_consume_token_cannot_change_anything(self):
        before = self.snapshot()
        mid = self.grpc_peek_all("jobs-a")[0].message_id
        for method, path, body in (("POST", "/api/v1/queues/jobs-a/purge", None),
                                   ("POST", "/api/v1/queues/jobs-a/redrive", b'{"to": "jobs-b"}'),
                                   ("DELETE", f"/api/v1/queues/jobs-a/messages/{mid}", None),
                                   ("POST", "/api/v1/queues/other/purge", None)):
            self.assertJsonError(self.req(method, path, body, self.CONSUME), 403,
                                 what=f"consume token {method} {path}")
        self.assertUnchanged(before, "403s")

    def test_consume_token_sees_only_its_queues(self):
        doc = self.ok_json("GET", "/api/v1/queues", headers=self.CONSUME)
        self.assertEqual([q["name"] for q in doc["queues"]], ["jobs-a", "jobs-b"])
        self.assertEqual(doc["totals"]["total"], "4")
        ctl = self.spoolctl_json("queues", token="tok-consume")
        self.assertEqual(drop_clock_fields(fill_missing_zeros(doc, ctl)), drop_clock_fields(ctl))
        d = self.ok_json("GET", "/api/v1/queues/jobs-a/messages", headers=self.CONSUME)
        self.assertEqual([m["payload"] for m in d["messages"]], ["jobs-a 1", "jobs-a 2"])
        self.assertEqual(self.ok_json("GET", "/api/v1/queues/jobs-b",
                                      headers=self.CONSUME)["name"], "jobs-b")
        for path in ("/api/v1/queues/other", "/api/v1/queues/other/messages"):
            reply = self.req("GET", path, headers=self.CONSUME)
            self.assertJsonError(reply, {403, 404}, what=f"consume token GET {path}")
            self.assertNotIn(b"other 1", reply[2])
            note(f"consume token (jobs*) GET {path}: {reply[0]} {reply[2].decode()}")

    def test_admin_token_does_everything(self):
        doc = self.ok_json("GET", "/api/v1/queues", headers=self.ADMIN)
        self.assertEqual([q["name"] for q in doc["queues"]], ["jobs-a", "jobs-b", "other"])
        self.create("adm")
        self.create("adm-dead")
        self.enqueue("adm-dead", "1", "2")
        a, b = self.enqueue("adm", "x", "y")
        self.assertEqual(self.ok_json("GET", "/api/v1/queues/adm/messages",
                                      headers=self.ADMIN)["messages"][0]["message_id"], a)
        self.assertEqual(self.ok_json("DELETE", f"/api/v1/queues/adm/messages/{a}",
                                      headers=self.ADMIN), {"deleted": True})
        self.assertEqual(self.ok_json("POST", "/api/v1/queues/adm-dead/redrive",
                                      body=b'{"to": "adm"}', headers=self.ADMIN),
                         {"from": "adm-dead", "to": "adm", "moved": "2"})
        self.assertEqual(self.ok_json("POST", "/api/v1/queues/adm/purge", headers=self.ADMIN),
                         {"queue": "adm", "purged": "3"})

    def test_health_metrics_and_dashboard_need_no_token(self):
        self.assertEqual(self.ok_json("GET", "/healthz"), {"status": "SERVING"})
        status, _, body = self.req("GET", "/metrics")
        self.assertEqual(status, 200)
        self.assertIn(b"spool_up", body)
        status, _, _ = self.req("GET", "/")
        self.assertEqual(status, 200)

    def test_cross_origin_with_a_valid_token_is_still_refused(self):
        before = self.snapshot()
        self.assertJsonError(self.req("POST", "/api/v1/queues/other/purge",
                                      headers={**self.ADMIN, "Origin": "http://evil.example"}),
                             403, what="admin token from another origin")
        self.assertUnchanged(before, "cross-origin admin purge")


class MetricsAuthTest(AuthTest):
    AUTH_EXTRA = ("--http-auth-metrics",)

    def test_metrics_and_health_need_a_token(self):
        for path in ("/metrics", "/healthz"):
            for headers in ({}, {"Authorization": "Bearer nope"}):
                self.assertJsonError(self.req("GET", path, headers=headers), 401,
                                     what=f"GET {path} {headers}")
            status, _, body = self.req("GET", path, headers=self.ADMIN)
            self.assertEqual(status, 200, f"{path} with the admin token: {body[:200]!r}")
            status, _, body = self.req("GET", path, headers=self.CONSUME)
            note(f"--http-auth-metrics: GET {path} with a consume-only token: {status}")
        self.assertJsonError(self.req("GET", "/api/v1/queues"), 401, what="api without token")


def tearDownModule():
    if NOTES:
        sys.stderr.write("\nObservations (not failures):\n" +
                         "".join(f"  - {n}\n" for n in NOTES))


if __name__ == "__main__":
    unittest.main(verbosity=2)
