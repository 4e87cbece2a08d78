#!/usr/bin/python3
"""Spool beside two of the durable peers of BENCHMARKS.md, measured on this machine in one run:
Redis streams with `appendfsync always` and PostgreSQL as a SKIP LOCKED queue with synchronous
commit.

    tools/bench/peers.py                      # 3 runs of each system, 400,000 messages a run
    tools/bench/peers.py --only spool redis --runs 1 --messages 20000
    tools/bench/peers.py --connections 64 --batch 1 --messages 64000   # one message a call
    tools/bench/peers.py --only spool redis --batch 1 --inflight 64 --publish --messages 256000

The issue's figures for the peers were measured on another machine; this measures them here,
turn about with Spool, so that the comparison does not depend on the machine or the hour.
Each system is driven by the fastest client this machine has for it, all written in C or C++,
with the same shape of load: 4 connections (--connections), each with one batch of 100
messages (--batch) of 256 bytes in flight, counted when the reply (sent after the fsync)
arrives. In Spool's turns it also measures gRPC's own ceiling at the same concurrency (health
Checks), which bounds any gRPC service's rate of small calls.

  Spool       spool-bench (build/bin). Produce: Enqueue of 100 entries. Consume: Lease 100,
              then Ack their receipts (two fsynced commits per batch).
  Redis       redis-benchmark, against redis-server with appendonly yes, appendfsync always.
              Produce: a pipeline of 100 XADD. Consume: one EVALSHA of a script that does
              XREADGROUP COUNT 100 and XACKs what it read, returning the entries: one round
              trip and one fsync per batch where a real worker needs two. The entries stay in
              the stream. Both make this lighter than what Spool is asked to do.
  PostgreSQL  pgbench (prepared statements), against PostgreSQL 15 with fsync and
              synchronous_commit on (the defaults). Produce: one INSERT of 100 rows, its own
              transaction. Consume: BEGIN; SELECT id, payload ... ORDER BY id LIMIT 100 FOR
              UPDATE SKIP LOCKED; DELETE those rows; COMMIT (one fsynced commit).

Payloads: spool-bench sends its own random bytes; Redis and PostgreSQL get the same number of
printable bytes, since their command-line clients take text. None of the three compresses
records this small.

Each run starts every server fresh on 127.0.0.1 with its data in a temporary directory, and
stops it at the end; PostgreSQL runs as the postgres user when this runs as root. A run checks
the end state of every system: everything produced is stored, then everything is consumed
exactly once, or the run fails. A system whose programs are missing is skipped with a message
(--require-all fails instead). The peers' packages: apt-get install redis-server postgresql.
"""
import argparse
import base64
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.environ.get("SPOOL_BIN_DIR", os.path.join(ROOT, "build", "bin"))
PG_BIN = "/usr/lib/postgresql/15/bin"
CONNECTIONS = 4  # --connections
INFLIGHT = 1  # --inflight: batches in flight per connection (Spool and Redis)
PUBLISH = False  # --publish: Spool produces over Publish streams instead of unary Enqueue
SUBSCRIBE = False  # --subscribe: Spool consumes over Subscribe streams instead of unary Lease


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(ready, what, proc, seconds=60):
    deadline = time.monotonic() + seconds
    while not ready():
        if proc.poll() is not None:
            raise RuntimeError(f"{what} exited with {proc.returncode} before it was ready")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} was not ready within {seconds} s")
        time.sleep(0.05)


def stop(proc):
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(cmd, limit, **kw):
    return subprocess.run(cmd, capture_output=True, text=True, timeout=limit, check=True,
                          **kw).stdout


def cpu_seconds(pid):
    """User + system CPU a process has used so far (Linux /proc), in seconds."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def text_payload(size):
    """size printable bytes: the same bytes go to every system (Redis and pgbench take text)."""
    return base64.b64encode(os.urandom(size))[:size].decode()


class Spool:
    name = "Spool"

    @staticmethod
    def missing():
        for prog in ("spoold", "spool-bench", "spoolctl"):
            if not os.path.exists(os.path.join(BIN, prog)):
                return f"no {BIN}/{prog} (tools/dev.sh build)"
        return None

    def __init__(self, tmp, payload):
        self.payload_bytes = len(payload)
        port_file = os.path.join(tmp, "port")
        self.proc = subprocess.Popen([os.path.join(BIN, "spoold"), "--listen", "127.0.0.1:0",
                                      "--data-dir", os.path.join(tmp, "data"),
                                      "--port-file", port_file], stderr=subprocess.DEVNULL)
        wait_until(lambda: os.path.exists(port_file) and os.path.getsize(port_file) > 0,
                   "spoold", self.proc)
        with open(port_file) as f:
            self.address = "127.0.0.1:" + f.read().strip()

    def bench(self, workload, workers_flag, messages, batch, limit, *extra):
        out = run([os.path.join(BIN, "spool-bench"), "--server", self.address, "--queue", "bench",
                   "--workload", workload, workers_flag, str(CONNECTIONS), "--batch", str(batch),
                   "--inflight", str(INFLIGHT), *extra,
                   "--payload-bytes", str(self.payload_bytes), "--messages", str(messages),
                   "--duration", f"{int(limit)}s", "--no-baseline", "--json"], limit + 30)
        p = json.loads(out)["phases"][0]
        if p["errors"] or p["messages"] != messages or p.get("duplicates", 0):
            raise RuntimeError(f"spool-bench {workload}: {p['messages']} of {messages}, "
                               f"errors {p['errors']}")
        return p["messages_per_second"]

    def produce(self, messages, batch, limit):
        return self.bench("publish" if PUBLISH else "produce", "--producers", messages, batch,
                          limit)

    def noop(self, seconds=3):
        """gRPC's own ceiling at this concurrency: health Checks, calls per second."""
        out = run([os.path.join(BIN, "spool-bench"), "--server", self.address, "--workload",
                   "noop", "--producers", str(CONNECTIONS), "--inflight", str(INFLIGHT),
                   "--duration", f"{seconds}s",
                   "--json"], seconds + 60)
        return json.loads(out)["phases"][0]["calls_per_second"]

    def consume(self, messages, batch, limit):
        if SUBSCRIBE:
            # As many unacked on each stream as Redis has in flight per connection.
            return self.bench("subscribe", "--consumers", messages, batch, limit,
                              "--max-outstanding", str(batch * INFLIGHT))
        return self.bench("consume", "--consumers", messages, batch, limit)

    def check(self, stored, consumed):
        # spool-bench counted every Ack outcome, good or not; the queue's own counters must
        # agree: all enqueued, all acked once (a failed or repeated ack falls short), none left.
        out = run([os.path.join(BIN, "spoolctl"), "--server", self.address, "--output", "json",
                   "stats", "bench"], 30)
        stats = {k: int(v) for k, v in json.loads(out)["stats"].items() if str(v).isdigit()}
        if (stats["total"], stats["enqueued_total"], stats["acked_total"]) != (
                stored - consumed, stored, consumed):
            raise RuntimeError(f"Spool's counters {stats} after {consumed} of {stored} consumed")

    def stop(self):
        stop(self.proc)


class Redis:
    name = "Redis 7 streams, appendfsync always"
    CONSUME = """
local got = redis.call('XREADGROUP', 'GROUP', 'workers', ARGV[1], 'COUNT', ARGV[2],
                       'STREAMS', KEYS[1], '>')
if not got then return 0 end
local ids = {}
for i, entry in ipairs(got[1][2]) do ids[i] = entry[1] end
redis.call('XACK', KEYS[1], 'workers', unpack(ids))
return got
"""

    @staticmethod
    def missing():
        for prog in ("redis-server", "redis-benchmark", "redis-cli"):
            if not shutil.which(prog):
                return f"no {prog} (apt-get install redis-server)"
        return None

    def __init__(self, tmp, payload):
        self.payload = payload
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["redis-server", "--bind", "127.0.0.1", "--port", str(self.port), "--dir", tmp,
             "--appendonly", "yes", "--appendfsync", "always", "--save", "",
             "--logfile", os.path.join(tmp, "redis.log")], stdout=subprocess.DEVNULL)

        def ready():
            return subprocess.run(self.cli("PING"), capture_output=True).returncode == 0
        wait_until(ready, "redis-server", self.proc)
        run(self.cli("XGROUP", "CREATE", "bench", "workers", "0", "MKSTREAM"), 30)
        self.script = run(self.cli("SCRIPT", "LOAD", self.CONSUME), 30).strip()

    def cli(self, *args):
        return ["redis-cli", "-h", "127.0.0.1", "-p", str(self.port), *args]

    def bench(self, requests, pipeline, limit, *command):
        out = run(["redis-benchmark", "-h", "127.0.0.1", "-p", str(self.port), "-c",
                   str(CONNECTIONS), "-P", str(pipeline), "-n", str(requests), "--csv", *command],
                  limit)
        rows = [line.split('","') for line in out.splitlines() if line.startswith('"')]
        return float(rows[1][1])  # requests per second

    def produce(self, messages, batch, limit):
        # INFLIGHT batches of XADDs in one pipeline: as many messages in flight as Spool's.
        return self.bench(messages, batch * INFLIGHT, limit, "XADD", "bench", "*", "p",
                          self.payload)

    def consume(self, messages, batch, limit):
        calls = messages // batch
        return batch * self.bench(calls, INFLIGHT, limit, "EVALSHA", self.script, "1", "bench", "c",
                                  str(batch))

    def check(self, stored, consumed):
        length = int(run(self.cli("XLEN", "bench"), 30))
        info = run(self.cli("--json", "XINFO", "GROUPS", "bench"), 30)
        group = json.loads(info)[0]
        if length != stored or (group["entries-read"] or 0) != consumed or group["pending"] != 0:
            raise RuntimeError(f"Redis holds {length} entries, group {group}, after {consumed} "
                               f"of {stored} consumed")

    def stop(self):
        stop(self.proc)


class Postgres:
    name = "PostgreSQL 15, SKIP LOCKED, synchronous commit"

    @staticmethod
    def missing():
        for prog in ("postgres", "initdb", "pgbench", "psql"):
            if not os.path.exists(os.path.join(PG_BIN, prog)):
                return f"no {PG_BIN}/{prog} (apt-get install postgresql)"
        return None

    def __init__(self, tmp, payload):
        self.tmp = tmp
        self.payload = payload
        self.port = free_port()
        data = os.path.join(tmp, "pg")
        os.makedirs(data)
        self.as_user = []
        if os.geteuid() == 0:  # PostgreSQL refuses to run as root
            os.chmod(tmp, 0o755)
            shutil.chown(data, "postgres", "postgres")
            self.as_user = ["runuser", "-u", "postgres", "--"]
        run(self.as_user + [f"{PG_BIN}/initdb", "-D", data, "-U", "postgres", "-A", "trust",
                            "--no-sync"], 120)
        self.proc = subprocess.Popen(
            self.as_user + [f"{PG_BIN}/postgres", "-D", data, "-p", str(self.port),
                            "-c", "listen_addresses=127.0.0.1",
                            "-c", f"unix_socket_directories={data}",
                            "-c", "shared_buffers=512MB", "-c", "max_wal_size=4GB"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

        def ready():
            return subprocess.run([f"{PG_BIN}/pg_isready", "-q", "-h", "127.0.0.1", "-p",
                                   str(self.port)]).returncode == 0
        wait_until(ready, "postgres", self.proc)
        settings = self.sql("SELECT current_setting('fsync') || ' ' || "
                            "current_setting('synchronous_commit')")
        if settings != "on on":
            raise RuntimeError(f"PostgreSQL runs with fsync, synchronous_commit = {settings}")
        self.sql("CREATE TABLE bench (id bigserial PRIMARY KEY, payload text NOT NULL)")

    def sql(self, statement):
        return run([f"{PG_BIN}/psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres",
                    "-X", "-A", "-t", "-v", "ON_ERROR_STOP=1", "-c", statement], 60).strip()

    def bench(self, script, messages, batch, limit, *flags):
        path = os.path.join(self.tmp, "script.sql")
        with open(path, "w") as f:
            f.write(script)
        out = run([f"{PG_BIN}/pgbench", "-h", "127.0.0.1", "-p", str(self.port), "-U",
                   "postgres", "-n", "-M", "prepared", "-c", str(CONNECTIONS), "-j", "2", "-t",
                   str(messages // batch // CONNECTIONS), "-f", path, *flags, "postgres"], limit)
        tps = [line for line in out.splitlines() if line.startswith("tps = ")]
        return batch * float(tps[0].split()[2])

    def produce(self, messages, batch, limit):
        script = "INSERT INTO bench (payload) VALUES " + ",".join(["(:p)"] * batch) + ";\n"
        return self.bench(script, messages, batch, limit, "-D", f"p={self.payload}")

    def consume(self, messages, batch, limit):
        script = ("BEGIN;\n"
                  f"SELECT id, payload FROM bench ORDER BY id LIMIT {batch} "
                  "FOR UPDATE SKIP LOCKED;\n"
                  "DELETE FROM bench WHERE id IN (SELECT id FROM bench ORDER BY id "
                  f"LIMIT {batch} FOR UPDATE SKIP LOCKED);\n"
                  "COMMIT;\n")
        return self.bench(script, messages, batch, limit)

    def check(self, stored, consumed):
        rows = int(self.sql("SELECT count(*) FROM bench"))
        if rows != stored - consumed:
            raise RuntimeError(f"PostgreSQL holds {rows} rows after {consumed} of {stored} "
                               "consumed")

    def stop(self):
        stop(self.proc)


SYSTEMS = {"spool": Spool, "redis": Redis, "postgres": Postgres}


def run_once(system, payload, args):
    """Produce args.messages into a fresh server, then consume them all; rates in msg/s (and
    for Spool, gRPC's noop ceiling at the same concurrency, in calls/s)."""
    tmp = tempfile.mkdtemp(prefix=f"spool-peers-{system}-")
    server = None
    try:
        server = SYSTEMS[system](tmp, payload)
        # The server's CPU for the produce phase, where it is one process (Spool, Redis;
        # PostgreSQL's backends are not its postmaster).
        pid = server.proc.pid if system != "postgres" else None
        before = cpu_seconds(pid) if pid else 0
        made = server.produce(args.messages, args.batch, args.max_seconds)
        produce_cpu = (cpu_seconds(pid) - before) * 1e6 / args.messages if pid else None
        server.check(args.messages, 0)
        taken = server.consume(args.messages, args.batch, args.max_seconds)
        server.check(args.messages, args.messages)
        result = {"produce": made, "consume": taken}
        if produce_cpu is not None:
            result["produce_cpu_us"] = produce_cpu
        if system == "spool":
            result["noop_calls"] = server.noop()
        return result
    finally:
        if server:
            server.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def take_turns(systems, runs, run_one, describe):
    """Calls run_one(system) for each system in turn, runs times over, so that a slow stretch
    of the machine falls on all of them. run_one returns {name: result}; the answer is
    {name: [result of each run]}, and describe(result) is printed as each comes in."""
    out = {}
    for i in range(runs):
        for system in systems:
            for name, result in run_one(system).items():
                out.setdefault(name, []).append(result)
                print(f"run {i + 1} {name}: {describe(result)}", file=sys.stderr)
    return out


def summary(values, fmt="{:,.0f}"):
    values = sorted(values)
    return (f"{fmt.format(statistics.median(values))} "
            f"({fmt.format(values[0])}–{fmt.format(values[-1])})")


def main():
    global CONNECTIONS, INFLIGHT, PUBLISH, SUBSCRIBE
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=list(SYSTEMS), default=list(SYSTEMS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--messages", type=int, default=400_000,
                        help="per run; a multiple of batch x connections")
    parser.add_argument("--batch", type=int, default=100, help="messages per call (1 to 1000)")
    parser.add_argument("--connections", type=int, default=CONNECTIONS,
                        help="clients, each with one call in flight (1 to 256)")
    parser.add_argument("--inflight", type=int, default=1,
                        help="batches in flight per connection, for Spool and Redis (Redis: "
                             "a pipeline of batch x inflight XADDs); PostgreSQL's pgbench "
                             "keeps one")
    parser.add_argument("--publish", action="store_true",
                        help="Spool produces over Publish streams (one per connection)")
    parser.add_argument("--subscribe", action="store_true",
                        help="Spool consumes over Subscribe streams (one per connection, "
                             "max_outstanding batch x inflight, each message acked on its stream)")
    parser.add_argument("--payload-bytes", type=int, default=256)
    parser.add_argument("--max-seconds", type=float, default=300,
                        help="a phase that takes longer fails the run")
    parser.add_argument("--require-all", action="store_true",
                        help="fail, rather than skip, a system that is not installed")
    parser.add_argument("--json", action="store_true", help="print the runs as JSON")
    args = parser.parse_args()
    if not 1 <= args.batch <= 1000 or not 1 <= args.connections <= 256:
        parser.error("--batch must be 1 to 1000 and --connections 1 to 256")
    if args.messages <= 0 or args.messages % (args.batch * args.connections):
        parser.error("--messages must be a positive multiple of "
                     f"{args.batch * args.connections} (batch x connections)")
    if not 1 <= args.inflight <= 1000:
        parser.error("--inflight must be 1 to 1000")
    CONNECTIONS, INFLIGHT, PUBLISH, SUBSCRIBE = (args.connections, args.inflight, args.publish,
                                                 args.subscribe)

    systems = []
    for system in args.only:
        why = SYSTEMS[system].missing()
        if why and args.require_all:
            sys.exit(f"peers.py: {system}: {why}")
        if why:
            print(f"skipped {system}: {why}", file=sys.stderr)
        else:
            systems.append(system)
    payload = text_payload(args.payload_bytes)
    runs = take_turns(systems, args.runs, lambda s: {s: run_once(s, payload, args)},
                      lambda r: f"produce {r['produce']:,.0f} msg/s, "
                                f"consume {r['consume']:,.0f} msg/s")
    if args.json:
        print(json.dumps(runs, indent=1))
        return
    spool_produce = "Publish streams" if PUBLISH else "unary Enqueue"
    spool_consume = "Subscribe streams" if SUBSCRIBE else "unary Lease + Ack"
    print(f"\nSpool produces with {spool_produce} and consumes with {spool_consume}. "
          f"{CONNECTIONS} connections, each with {INFLIGHT} batch(es) of {args.batch} in flight, "
          f"{args.payload_bytes} B payloads, {args.messages:,} messages a run. Median of "
          f"{args.runs} (min–max); Spool's ratio to each peer is taken run by run.\n")
    print("| system | produce msg/s | consume msg/s | Spool ÷ this, produce | consume |")
    print("|---|---|---|---|---|")
    for system in systems:
        mine = runs[system]
        cells = [SYSTEMS[system].name,
                 summary([r["produce"] for r in mine]), summary([r["consume"] for r in mine])]
        for kind in ("produce", "consume"):
            if "spool" in runs and system != "spool":
                cells.append(summary([s[kind] / r[kind] for s, r in zip(runs["spool"], mine)],
                                     "{:.2f}×"))
            else:
                cells.append("–")
        print("| " + " | ".join(cells) + " |")
    for system in systems:
        mine = runs[system]
        if "produce_cpu_us" in mine[0]:
            line = (f"{SYSTEMS[system].name}: server CPU per produced message "
                    f"{summary([r['produce_cpu_us'] for r in mine], '{:.1f}')} µs")
            if "spool" in runs and system != "spool":
                ratio = summary([s["produce_cpu_us"] / r["produce_cpu_us"]
                                 for s, r in zip(runs["spool"], mine)], "{:.2f}×")
                line += f"; Spool ÷ this: {ratio}"
            print(line)
    if "spool" in runs:
        noop = summary([r["noop_calls"] for r in runs["spool"]])
        print(f"\ngRPC's own ceiling at this concurrency (health Check through spool-bench, in "
              f"Spool's turns): {noop} calls/s.")


if __name__ == "__main__":
    main()
