#!/usr/bin/python3
"""End-to-end latency of Spool and Redis on this machine, under one Python harness: target 4's
load (a steady 1,000 msg/s, 4 consumers long-polling, the enqueue and the delivery both
fsynced), to tell how much of target 4's p99 this machine allows any durable queue.

    tools/bench/peers_latency.py                    # 3 runs of each, 10 s each
    tools/bench/peers_latency.py --runs 1 --seconds 2

Both systems get the same client code, written in Python (Debian's python3-grpcio and
python3-redis), so both pay the same harness: one sender process whose 4 threads send message
i at its scheduled time start + i / rate (a late send is counted from the time it was due, so
a stall is not hidden), and 4 consumer processes that each long-poll for up to 10 messages,
take the time, and acknowledge. Latency = the time a consumer holds the message minus its
scheduled send time (CLOCK_MONOTONIC, shared by the processes).

  Spool: Enqueue of one message; Lease (max 10, wait 1 s), then Ack.
  Spool over streams, the same library: each sender thread publishes on its own Publish
  stream; each consumer has one Subscribe stream (max_outstanding 10) and acks on it.
  Redis 7.0 streams with appendonly yes, appendfsync always: XADD; XREADGROUP BLOCK 1000
  COUNT 10, then XACK. Redis writes the delivery (the consumer group's pending entry) to its
  append-only file and fsyncs it before replying, as Spool fsyncs the lease.

Each run also measures Spool with spool-bench's C++ client (target 4's own command), so the
harness's share shows; the same load over streams with spool-bench (one Publish stream, 4
Subscribe streams with max_outstanding 1, acks on the stream: issue 21's target 3); and the
disk alone: one message's bytes appended and fdatasync'd at the
same rate, timed from the scheduled time (the floor under any durable enqueue here; its server
CPU column is 0). Servers are started fresh on 127.0.0.1 by tools/bench/peers.py's
classes and stopped at the end of each run.
"""
import argparse
import json
import multiprocessing
import os
import queue
import shutil
import struct
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path[:0] = [HERE, os.path.join(HERE, "..", "examples")]
import peers  # noqa: E402
from thumbnail_job import load_stubs  # noqa: E402  (protoc's Python stubs of proto/)


class SpoolClient:
    def __init__(self, where):
        address, stubs = where
        sys.path.insert(0, stubs)
        import grpc
        from google.protobuf import duration_pb2
        from spool.v1 import queue_pb2 as pb
        from spool.v1 import queue_pb2_grpc as pb_grpc
        self.pb = pb
        self.stub = pb_grpc.QueueServiceStub(grpc.insecure_channel(address))
        self.visibility = duration_pb2.Duration(seconds=60)
        self.wait = duration_pb2.Duration(seconds=1)

    def send(self, payload):
        self.stub.Enqueue(self.pb.EnqueueRequest(
            queue="bench", messages=[self.pb.EnqueueEntry(payload=payload)]))

    def take(self, n):
        got = self.stub.Lease(self.pb.LeaseRequest(queue="bench", max_messages=n,
                                                   visibility_timeout=self.visibility,
                                                   wait_time=self.wait))
        return [(m.payload, m.receipt) for m in got.messages]

    def ack(self, tokens):
        self.stub.Ack(self.pb.AckRequest(queue="bench", receipts=tokens))


class SpoolStreamClient(SpoolClient):
    """Spool over streams with the same Python library: send() writes a request on this
    client's Publish stream (its answers are read, and checked, on a thread of their own);
    take() returns the Subscribe stream's next push (max_outstanding 10, as many as a Lease
    takes here), read on the consumer's own thread; ack() writes the acks on that stream."""

    def __init__(self, where):
        super().__init__(where)
        self.out, self.errors, self.answers, self.sequence = None, [], 0, 0
        self.acks, self.sub = None, None

    def _answers(self):
        for r in self.published:
            self.answers += 1
            if r.code:
                self.errors.append(r.error)

    def send(self, payload):
        if self.out is None:
            self.out = queue.Queue()
            self.published = self.stub.Publish(iter(self.out.get, None))
            self.reader = threading.Thread(target=self._answers)
            self.reader.start()
        self.sequence += 1
        self.out.put(self.pb.PublishRequest(
            queue="bench", sequence=self.sequence,
            messages=[self.pb.EnqueueEntry(payload=payload)]))

    def watch(self, received, count, until):
        """The consumer blocks in the stream's next(): a watcher ends the stream (a cancel)
        once all count are received, or until passes."""
        def stop_when_done():
            while time.monotonic() < until and received.value < count:
                time.sleep(0.05)
            if self.sub is not None:
                self.sub.cancel()
        self.acks = queue.Queue()
        self.acks.put(self.pb.SubscribeRequest(queue="bench", max_outstanding=10,
                                               visibility_timeout=self.visibility))
        self.sub = self.stub.Subscribe(iter(self.acks.get, None))
        threading.Thread(target=stop_when_done, daemon=True).start()

    def take(self, n):
        import grpc
        try:
            r = next(self.sub)
        except (StopIteration, grpc.RpcError):
            time.sleep(0.01)  # ended: the consumer's loop is about to stop too
            return []
        return [(m.payload, m.receipt) for m in r.messages]

    def ack(self, tokens):
        self.acks.put(self.pb.SubscribeRequest(ack=tokens))

    def close(self):
        """Half-closes both streams; fails unless every Publish was answered OK."""
        if self.out is not None:
            self.out.put(None)
            self.reader.join(timeout=30)
        if self.acks is not None:
            self.acks.put(None)
        if self.errors or self.answers != self.sequence:
            raise RuntimeError(f"Publish: {self.answers} of {self.sequence} answered, "
                               f"errors {self.errors[:3]}")


class RedisClient:
    def __init__(self, where):
        import redis
        self.client = redis.Redis(port=where[0])
        self.me = f"c{os.getpid()}"

    def send(self, payload):
        self.client.xadd("bench", {"p": payload})

    def take(self, n):
        got = self.client.xreadgroup("workers", self.me, {"bench": ">"}, count=n, block=1000)
        return [(fields[b"p"], i) for i, fields in got[0][1]] if got else []

    def ack(self, tokens):
        self.client.xack("bench", "workers", *tokens)


CLIENTS = {"spool": SpoolClient, "spool-streams": SpoolStreamClient, "redis": RedisClient}


def sender(system, where, rate, count, payload_bytes, start):
    threads = 4

    def send_every(k):
        client = CLIENTS[system](where)
        for i in range(k, count, threads):
            due = start + i / rate
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            client.send(struct.pack("<d", due).ljust(payload_bytes, b"."))
        if hasattr(client, "close"):
            client.close()
    workers = [threading.Thread(target=send_every, args=(k,)) for k in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()


def consumer(system, where, count, received, until, results):
    """Takes messages until all count are received (by the 4) or until passes."""
    client = CLIENTS[system](where)
    if hasattr(client, "watch"):
        client.watch(received, count, until)
    seen = []
    while time.monotonic() < until and received.value < count:
        got = client.take(10)
        now = time.monotonic()
        if got:
            seen.extend(now - struct.unpack("<d", payload[:8])[0] for payload, _ in got)
            client.ack([token for _, token in got])
            with received.get_lock():
                received.value += len(got)
    if hasattr(client, "close"):
        client.close()
    results.put(seen)


def harness(system, where, server_pid, args):
    ctx = multiprocessing.get_context("spawn")  # gRPC's Python library must not be forked
    count = int(args.rate * args.seconds)
    start = time.monotonic() + 2.0  # time for the processes to start and connect
    results, received = ctx.Queue(), ctx.Value("q", 0)
    until = start + args.seconds + 30.0  # a bound, in case messages go missing
    consumers = [ctx.Process(target=consumer,
                             args=(system, where, count, received, until, results))
                 for _ in range(4)]
    for c in consumers:
        c.start()
    send = ctx.Process(target=sender, args=(system, where, args.rate, count, args.payload_bytes,
                                            start))
    cpu = peers.cpu_seconds(server_pid)
    send.start()
    send.join(timeout=args.seconds + 60)
    seen = []
    for _ in consumers:
        seen.extend(results.get(timeout=90))
    for c in consumers:
        c.join()
    cpu = peers.cpu_seconds(server_pid) - cpu
    if send.exitcode != 0 or len(seen) != count:
        raise RuntimeError(f"{system}: {len(seen)} of {count} messages received "
                           f"(sender exit {send.exitcode})")
    result = percentiles([s * 1e3 for s in seen])
    result["server_cpu_us"] = 1e6 * cpu / count
    return result


def percentiles(ms):
    ms = sorted(ms)

    def at(q):
        return ms[min(len(ms) - 1, int(q * len(ms)))]
    return {"p50": at(0.5), "p99": at(0.99), "p999": at(0.999), "max": ms[-1]}


def spool_bench_e2e(server, tmp, args):
    """spool-bench's e2e on server, after its measure of the disk alone (--fsync-dir)."""
    out = peers.run([os.path.join(peers.BIN, "spool-bench"), "--server", server.address,
                     "--queue", "e2e", "--workload", "e2e", "--rate", str(int(args.rate)),
                     "--consumers", "4", "--batch", "10", "--payload-bytes",
                     str(args.payload_bytes), "--duration", f"{int(args.seconds)}s",
                     "--server-pid", str(server.proc.pid), "--no-baseline", "--json",
                     "--fsync-dir", os.path.join(tmp, "disk")], 2 * args.seconds + 120)
    phases = {p["name"]: p for p in json.loads(out)["phases"]}
    results = {}
    for name, phase, kind in (("spool-bench", phases["e2e"], "e2e"),
                              ("disk", phases["fsync"], "fsync")):
        lat = phase["latency_us"][kind]
        results[name] = {k: lat[k] / 1000 for k in ("p50", "p99", "p999", "max")}
        results[name]["server_cpu_us"] = 1e6 * phase["server_cpu_seconds"] / phase["messages"]
    # The same load over streams (issue 21's target 3): one Publish stream sends, 4 Subscribe
    # streams with one message outstanding each receive and ack on the stream.
    out = peers.run([os.path.join(peers.BIN, "spool-bench"), "--server", server.address,
                     "--queue", "e2e-stream", "--workload", "e2e-stream", "--rate",
                     str(int(args.rate)), "--producers", "1", "--consumers", "4",
                     "--max-outstanding", "1", "--payload-bytes", str(args.payload_bytes),
                     "--duration", f"{int(args.seconds)}s", "--server-pid",
                     str(server.proc.pid), "--no-baseline", "--json"], 2 * args.seconds + 120)
    phase = {p["name"]: p for p in json.loads(out)["phases"]}["e2e-stream"]
    if phase["errors"]:
        raise RuntimeError(f"spool-bench e2e-stream: {phase['errors']} errors")
    lat = phase["latency_us"]["e2e"]
    results["spool-bench-streams"] = {k: lat[k] / 1000 for k in ("p50", "p99", "p999", "max")}
    results["spool-bench-streams"]["server_cpu_us"] = (
        1e6 * phase["server_cpu_seconds"] / phase["messages"])
    return results


def one_run(system, args):
    tmp = tempfile.mkdtemp(prefix=f"spool-latency-{system}-")
    server = None
    try:
        if system == "spool":
            stubs = os.path.join(tmp, "stubs")
            os.makedirs(stubs)
            load_stubs(stubs)
            payload = peers.text_payload(args.payload_bytes)
            server = peers.Spool(os.path.join(tmp, "server"), payload)
            peers.run([os.path.join(peers.BIN, "spoolctl"), "--server", server.address,
                       "create", "bench"], 30)
            where = (server.address, stubs)
            return {"spool": harness(system, where, server.proc.pid, args),
                    "spool-streams": harness("spool-streams", where, server.proc.pid, args),
                    **spool_bench_e2e(server, tmp, args)}
        server = peers.Redis(tmp, peers.text_payload(args.payload_bytes))
        return {"redis": harness(system, (server.port,), server.proc.pid, args)}
    finally:
        if server:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


NAMES = {"spool": "Spool, Python client", "redis": "Redis 7.0 streams, Python client",
         "spool-streams": "Spool over Publish + Subscribe, Python client",
         "spool-bench": "Spool, spool-bench (C++ client)",
         "spool-bench-streams": "Spool over Publish + Subscribe, spool-bench (C++ client)",
         "disk": "the disk alone: write + fdatasync at the same rate (spool-bench --fsync-dir)"}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=float, default=1000)
    parser.add_argument("--payload-bytes", type=int, default=256)
    parser.add_argument("--json", action="store_true", help="print the runs as JSON")
    args = parser.parse_args()
    for cls in (peers.Spool, peers.Redis):
        why = cls.missing()
        if why:
            sys.exit(f"peers_latency.py: {why}")
    try:
        import redis  # noqa: F401
    except ImportError:
        sys.exit("peers_latency.py: no python3-redis (apt-get install python3-redis)")
    runs = peers.take_turns(("spool", "redis"), args.runs, lambda s: one_run(s, args),
                            lambda r: f"p50 {r['p50']:.2f} ms, p99 {r['p99']:.2f} ms, "
                                      f"p99.9 {r['p999']:.2f} ms")
    if args.json:
        print(json.dumps(runs, indent=1))
        return
    print(f"\n{args.rate:,.0f} msg/s for {args.seconds:g} s, 4 consumers, {args.payload_bytes} B. "
          f"Median of {args.runs} (min–max), ms.\n")
    print("| system | p50 | p99 | p99.9 | server CPU µs per message |")
    print("|---|---|---|---|---|")
    for name, results in runs.items():
        print(f"| {NAMES[name]} | " + " | ".join(
            peers.summary([r[q] for r in results], "{:.2f}") for q in ("p50", "p99", "p999"))
            + " | " + peers.summary([r["server_cpu_us"] for r in results], "{:.0f}") + " |")


if __name__ == "__main__":
    main()
