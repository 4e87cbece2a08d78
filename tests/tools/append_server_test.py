#!/usr/bin/python3
"""spool-append-server, the ceiling of targets 2 and 3, does what BENCHMARKS.md says it does.

Started on 127.0.0.1 as run_benchmarks.py starts it, it must: reply to every Enqueue with one
message id per message, increasing, after appending each message to its file; lease the oldest
messages not leased yet, in order, with their payloads and a receipt each, after appending
their ids; ack a leased message's receipt once (OUTCOME_OK, its id appended) and refuse any
other receipt (OUTCOME_INVALID_RECEIPT, nothing appended); refuse bad requests with
INVALID_ARGUMENT naming the field, writing nothing; answer RPCs it does not serve with
UNIMPLEMENTED; serve spool-bench's produce, consume and noop phases with every record written;
and exit 0 on SIGTERM. A ceiling that skipped a write or a reply would show up here, not as a
flattering figure.
"""
import importlib.util
import json
import os
import signal
import struct
import subprocess
import sys
import tempfile
import time
import unittest

import grpc

BIN = os.environ.get("SPOOL_BIN_DIR", "build/bin")
SOURCE = os.environ.get("SPOOL_SOURCE_DIR", ".")

spec = importlib.util.spec_from_file_location(
    "thumbnail_job", os.path.join(SOURCE, "tools", "examples", "thumbnail_job.py"))
thumbnail_job = importlib.util.module_from_spec(spec)
spec.loader.exec_module(thumbnail_job)


def records(path):
    """The records in the append server's file, in order: ("E", payload) for an enqueued
    message, ("L", id) for a leased one and ("A", id) for an acked one."""
    with open(path, "rb") as f:
        data = f.read()
    out, off = [], 0
    while off < len(data):
        kind = chr(data[off])
        if kind == "E":
            (n,) = struct.unpack_from("<I", data, off + 1)
            out.append((kind, data[off + 5:off + 5 + n]))
            off += 5 + n
        elif kind in "LA":
            out.append((kind, struct.unpack_from("<Q", data, off + 1)[0]))
            off += 9
        else:
            raise AssertionError(f"an unknown record {kind!r} at byte {off}")
    if off != len(data):
        raise AssertionError(f"a torn record at byte {off} of {len(data)}")
    return out


def enqueued(recs):
    return [p for k, p in recs if k == "E"]


class AppendServerTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.stubs_dir = tempfile.TemporaryDirectory(prefix="append-stubs-")
        thumbnail_job.load_stubs(cls.stubs_dir.name)
        from spool.v1 import queue_pb2, queue_pb2_grpc
        cls.pb, cls.pb_grpc = queue_pb2, queue_pb2_grpc

    @classmethod
    def tearDownClass(cls):
        cls.stubs_dir.cleanup()

    def setUp(self):
        self.start()

    def start(self, *flags):
        self.tmp = tempfile.TemporaryDirectory(prefix="append-server-")
        self.data = os.path.join(self.tmp.name, "data")
        port_file = os.path.join(self.tmp.name, "port")
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "spool-append-server"), "--listen", "127.0.0.1:0", "--data-dir",
             self.data, "--port-file", port_file, *flags], stderr=subprocess.DEVNULL)
        deadline = time.time() + 30
        while not os.path.exists(port_file):
            self.assertIsNone(self.proc.poll(), "spool-append-server exited at start")
            self.assertLess(time.time(), deadline, "spool-append-server did not start")
            time.sleep(0.01)
        with open(port_file) as f:
            self.address = "127.0.0.1:" + f.read().strip()
        self.channel = grpc.insecure_channel(self.address)
        self.stub = self.pb_grpc.QueueServiceStub(self.channel)

    def tearDown(self):
        self.stop()

    def stop(self):
        self.channel.close()
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.tmp.cleanup()

    def log(self):
        return records(os.path.join(self.data, "append.log"))

    def enqueue(self, *payloads):
        req = self.pb.EnqueueRequest(queue="q", messages=[
            self.pb.EnqueueEntry(payload=p) for p in payloads])
        return self.stub.Enqueue(req, timeout=10)

    def test_appends_before_replying_and_gives_increasing_ids(self):
        first = self.enqueue(b"a", b"bb", b"")
        self.assertEqual(self.log(), [("E", b"a"), ("E", b"bb"), ("E", b"")])
        second = self.enqueue(b"c" * 300)
        self.assertEqual(enqueued(self.log()), [b"a", b"bb", b"", b"c" * 300])
        ids = [r.message_id for r in list(first.results) + list(second.results)]
        self.assertEqual(len(ids), 4)
        self.assertEqual(ids, sorted(ids))
        self.assertEqual(len(set(ids)), 4)

    def test_refuses_an_enqueue_without_messages_and_writes_nothing(self):
        with self.assertRaises(grpc.RpcError) as e:
            self.stub.Enqueue(self.pb.EnqueueRequest(queue="q"), timeout=10)
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("messages", e.exception.details())
        self.assertEqual(self.log(), [])

    def test_leases_in_order_and_acks_each_receipt_once(self):
        ids = [r.message_id for r in self.enqueue(b"one", b"two", b"three").results]
        self.assertEqual(self.stub.Lease(self.pb.LeaseRequest(queue="q"), timeout=10)
                         .messages[0].payload, b"one")  # max_messages unset: one
        leased = self.stub.Lease(self.pb.LeaseRequest(queue="q", max_messages=5),
                                 timeout=10).messages
        self.assertEqual([(m.message_id, m.payload) for m in leased],
                         [(ids[1], b"two"), (ids[2], b"three")])
        self.assertTrue(all(len(m.receipt) == 50 and m.delivery_count == 1 for m in leased))
        self.assertEqual(len(self.stub.Lease(self.pb.LeaseRequest(queue="q", max_messages=5),
                                             timeout=10).messages), 0)

        bogus = "0" * 50
        results = self.stub.Ack(self.pb.AckRequest(queue="q", receipts=[
            leased[0].receipt, bogus]), timeout=10).results
        self.assertEqual([(r.receipt, r.outcome) for r in results],
                         [(leased[0].receipt, self.pb.OUTCOME_OK),
                          (bogus, self.pb.OUTCOME_INVALID_RECEIPT)])
        again = self.stub.Ack(self.pb.AckRequest(queue="q", receipts=[leased[0].receipt]),
                              timeout=10).results
        self.assertEqual(again[0].outcome, self.pb.OUTCOME_INVALID_RECEIPT)

        n = [int(i, 16) for i in ids]
        self.assertEqual([r for r in self.log() if r[0] != "E"],
                         [("L", n[0]), ("L", n[1]), ("L", n[2]), ("A", n[1])])

    def test_refuses_bad_leases_and_acks_and_writes_nothing(self):
        for call, req, field in [
                (self.stub.Lease, self.pb.LeaseRequest(queue="q", max_messages=1001),
                 "max_messages"),
                (self.stub.Ack, self.pb.AckRequest(queue="q"), "receipts"),
                (self.stub.Ack, self.pb.AckRequest(queue="q", receipts=["r"] * 1001),
                 "receipts")]:
            with self.assertRaises(grpc.RpcError) as e:
                call(req, timeout=10)
            self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
            self.assertIn(field, e.exception.details())
        self.assertEqual(self.log(), [])

    def test_answers_unserved_rpcs_with_unimplemented(self):
        q = self.stub.CreateQueue(self.pb.CreateQueueRequest(name="jobs"), timeout=10)
        self.assertEqual(q.name, "jobs")
        with self.assertRaises(grpc.RpcError) as e:
            self.stub.Nack(self.pb.NackRequest(queue="jobs", receipts=["r"]), timeout=10)
        self.assertEqual(e.exception.code(), grpc.StatusCode.UNIMPLEMENTED)

    def test_serves_spool_bench_produce_and_consume_and_stops_on_sigterm(self):
        out = subprocess.run(
            [os.path.join(BIN, "spool-bench"), "--server", self.address, "--workload",
             "produce", "--producers", "2", "--inflight", "8", "--batch", "1", "--messages",
             "3000", "--payload-bytes", "100", "--duration", "30s", "--json"],
            capture_output=True, text=True, timeout=120, check=True).stdout
        phases = {p["name"]: p for p in json.loads(out)["phases"]}
        self.assertEqual(phases["produce"]["messages"], 3000)
        self.assertEqual(phases["produce"]["errors"], {})
        self.assertGreater(phases["noop"]["calls"], 0)
        written = enqueued(self.log())
        self.assertEqual(len(written), 3000)
        self.assertTrue(all(len(p) == 100 for p in written))

        out = subprocess.run(
            [os.path.join(BIN, "spool-bench"), "--server", self.address, "--workload",
             "consume", "--consumers", "2", "--batch", "10", "--messages", "2000",
             "--payload-bytes", "100", "--duration", "30s", "--no-baseline", "--json"],
            capture_output=True, text=True, timeout=120, check=True).stdout
        phases = {p["name"]: p for p in json.loads(out)["phases"]}
        self.assertEqual(phases["consume"]["errors"], {})
        recs = self.log()
        acked = [i for k, i in recs if k == "A"]
        self.assertEqual(len(acked), phases["consume"]["messages"])
        self.assertGreaterEqual(len(acked), 2000)
        self.assertEqual(len(set(acked)), len(acked))
        self.assertLessEqual(set(acked), {i for k, i in recs if k == "L"})
        self.proc.send_signal(signal.SIGTERM)
        self.assertEqual(self.proc.wait(timeout=30), 0)

    def test_no_fsync_still_writes_every_message(self):
        self.stop()
        self.start("--no-fsync")
        self.enqueue(b"x", b"yz")
        self.assertEqual(enqueued(self.log()), [b"x", b"yz"])

    def test_refuses_an_unknown_flag(self):
        r = subprocess.run([os.path.join(BIN, "spool-append-server"), "--data-dir", self.data,
                            "--fsync-never"], capture_output=True, text=True, timeout=30)
        self.assertNotEqual(r.returncode, 0)
        self.assertIn("--fsync-never", r.stderr)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
