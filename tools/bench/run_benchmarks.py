#!/usr/bin/python3
"""Runs the benchmark targets of BENCHMARKS.md against fresh spoold processes on this machine
and prints a Markdown table per target: the median of --runs runs, with min and max.

    tools/bench/run_benchmarks.py              # every target, 3 runs each (about 10 minutes)
    tools/bench/run_benchmarks.py --only 1 2   # some targets
    tools/bench/run_benchmarks.py --scale 10000000   # target 5's depth and history sizes
    tools/bench/run_benchmarks.py --quick --runs 1 --only 1 2 4 6   # does it all still run?
    tools/bench/run_benchmarks.py --quick --only 5 --scale 20000    # target 5's, in 30 s

Each server (spoold, and for targets 1-3 spool-append-server, the least a durable queue can do)
listens on 127.0.0.1 on a free port with its data under a temporary directory, and is stopped
at the end. Needs the build (tools/dev.sh build).
"""
import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "build", "bin")
# Phase lengths of targets 1, 2, 4 and 6, and target 5's wait after each load (s) and rounds of
# measurements in turn; --quick shortens them (a check that the script runs).
PHASE = {"short": "5s", "e2e": "20s", "settle": 10, "rounds": 3}


class Spoold:
    """A spoold (or, with binary="spool-append-server", the ceiling of targets 1-3, which takes
    the same flags) on 127.0.0.1, on a free port."""

    def __init__(self, data_dir, *flags, binary="spoold"):
        self.data_dir = data_dir
        self.port_file = data_dir + ".port"
        if os.path.exists(self.port_file):
            os.remove(self.port_file)
        start = time.time()
        self.proc = subprocess.Popen([os.path.join(BIN, binary), "--listen", "127.0.0.1:0",
                                      "--data-dir", data_dir, "--port-file", self.port_file,
                                      *flags], stderr=subprocess.DEVNULL)
        while not os.path.exists(self.port_file):
            if self.proc.poll() is not None or time.time() - start > 120:
                raise RuntimeError(f"{binary} did not start")
            time.sleep(0.005)
        self.ready_seconds = time.time() - start
        with open(self.port_file) as f:
            self.address = "127.0.0.1:" + f.read().strip()

    def rss_mib(self):
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
        return 0

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=60)


def bench(server, *args):
    out = subprocess.run([os.path.join(BIN, "spool-bench"), "--server", server.address,
                          "--server-pid", str(server.proc.pid), "--json", *args],
                         capture_output=True, text=True, timeout=900, check=True).stdout
    return {p["name"]: p for p in json.loads(out)["phases"]}


def summary(values, fmt="{:,.0f}"):
    values = sorted(values)
    return f"{fmt.format(statistics.median(values))} ({fmt.format(values[0])}–{fmt.format(values[-1])})"


def table(title, header, rows):
    print(f"\n### {title}\n")
    print("| " + " | ".join(header) + " |")
    print("|" + "---|" * len(header))
    for r in rows:
        print("| " + " | ".join(r) + " |")


def fresh(tmp, name, *flags, binary="spoold"):
    d = os.path.join(tmp, name)
    shutil.rmtree(d, ignore_errors=True)
    return Spoold(d, *flags, binary=binary)


def target1(tmp, runs):
    """Beside raw RocksDB's synced WriteBatches of the same bytes (in spool-bench's run) and
    spool-append-server (the same calls over gRPC, answered by a file append and a group
    fdatasync). Returns the medians of Spool's, raw RocksDB's and the append server's rates."""
    rate, ratio, raw, append = [], [], [], []
    args = ["--workload", "produce", "--producers", "4", "--batch", "100", "--payload-bytes",
            "256", "--duration", PHASE["short"], "--no-baseline"]
    for i in range(runs):
        s = fresh(tmp, f"t1-{i}")
        r = bench(s, *args, "--rocksdb-dir", os.path.join(tmp, f"t1-raw-{i}"))
        s.stop()
        a = fresh(tmp, f"t1-append-{i}", binary="spool-append-server")
        ra = bench(a, *args)
        a.stop()
        rate.append(r["produce"]["messages_per_second"])
        ratio.append(r["produce"]["ratio_to_rocksdb"])
        raw.append(r["rocksdb"]["messages_per_second"])
        append.append(ra["produce"]["messages_per_second"])
    table("Target 1: produce, 256 B, batch 100, 4 producers",
          ["msg/s", "ratio to raw RocksDB (same run)", "target", "append server msg/s",
           "Spool ÷ append server"],
          [[summary(rate), summary(ratio, "{:.2f}"), "≥ 250,000 msg/s and ≥ 0.50",
            summary(append), summary([x / y for x, y in zip(rate, append)], "{:.2f}")]])
    return statistics.median(rate), statistics.median(raw), statistics.median(append)


def target2(tmp, runs):
    """Against spoold, then against spool-append-server (the same calls answered by one file
    append and a group fdatasync, nothing else: what gRPC and group commit alone allow), then
    against spool-append-server --no-fsync (gRPC with the replies sent from another thread,
    without the disk), in turn, each run with its own noop phase."""
    rate, noop, ratio, append, append_ratio, share = [], [], [], [], [], []
    nosync, nosync_ratio = [], []
    single = ["--workload", "produce", "--producers", "4", "--inflight", "16", "--batch", "1",
              "--duration", PHASE["short"]]
    for i in range(runs):
        s = fresh(tmp, f"t2-{i}")
        r = bench(s, *single)
        s.stop()
        a = fresh(tmp, f"t2-append-{i}", binary="spool-append-server")
        ra = bench(a, *single)
        a.stop()
        a = fresh(tmp, f"t2-nosync-{i}", "--no-fsync", binary="spool-append-server")
        rn = bench(a, *single)
        a.stop()
        nosync.append(rn["produce"]["calls_per_second"])
        nosync_ratio.append(rn["produce"]["ratio_to_noop"])
        rate.append(r["produce"]["calls_per_second"])
        noop.append(r["noop"]["calls_per_second"])
        ratio.append(r["produce"]["ratio_to_noop"])
        append.append(ra["produce"]["calls_per_second"])
        append_ratio.append(ra["produce"]["ratio_to_noop"])
        share.append(rate[-1] / append[-1])
    table("Target 2: produce, single-message Enqueue, 64 in flight (4 workers × 16)",
          ["Enqueue/s", "noop (health Check)/s, same run", "ratio", "target",
           "append server: Enqueue/s; ratio to its own noop", "Spool ÷ append server",
           "append server without fdatasync: Enqueue/s; ratio to its own noop"],
          [[summary(rate), summary(noop), summary(ratio, "{:.2f}"), "≥ 0.70",
            summary(append) + "; " + summary(append_ratio, "{:.2f}"),
            summary(share, "{:.2f}"),
            summary(nosync) + "; " + summary(nosync_ratio, "{:.2f}")]])


def target3(tmp, runs, t1_rate, t1_append):
    """Spool's consume, and spool-append-server's in turn (its ratio to its own produce in
    target 1 is what gRPC and group fsync alone allow)."""
    batch, single, single_msgs, noop, ratio, append = [], [], [], [], [], []
    consume100 = ["--workload", "consume", "--consumers", "4", "--batch", "100", "--messages",
                  "600000", "--duration", "60s", "--no-baseline", "--queue", "batch"]
    for i in range(runs):
        s = fresh(tmp, f"t3-{i}")
        r = bench(s, *consume100)
        batch.append(r["consume"]["messages_per_second"])
        r = bench(s, "--workload", "consume", "--consumers", "4", "--inflight", "16", "--batch",
                  "1", "--messages", "150000", "--duration", "20s", "--queue", "single")
        s.stop()
        single.append(r["consume"]["calls_per_second"])
        single_msgs.append(r["consume"]["messages_per_second"])
        noop.append(r["noop"]["calls_per_second"])
        ratio.append(r["consume"]["ratio_to_noop"])
        a = fresh(tmp, f"t3-append-{i}", binary="spool-append-server")
        append.append(bench(a, *consume100)["consume"]["messages_per_second"])
        a.stop()
    table("Target 3: consume",
          ["workload", "result", "ceiling", "ratio", "target"],
          [["Lease 100 + Ack 100, 4 consumers", summary(batch) + " msg/s",
            f"target 1: {t1_rate:,.0f} msg/s" if t1_rate else "target 1",
            summary([b / t1_rate for b in batch], "{:.2f}") if t1_rate else "-", "≥ 0.80"],
           ["Lease 1 + Ack 1, 64 in flight", summary(single) + " calls/s (" + summary(single_msgs) + " msg/s)",
            summary(noop) + " noop calls/s", summary(ratio, "{:.2f}") + " (calls)", "≥ 0.35"],
           ["append server: Lease 100 + Ack 100, 4 consumers", summary(append) + " msg/s",
            f"its produce in target 1: {t1_append:,.0f} msg/s" if t1_append else "-",
            summary([b / t1_append for b in append], "{:.2f}") if t1_append else "-",
            "(what gRPC and group fsync allow)"]])


def target4(tmp, runs):
    p50, p99, p999, disk50, disk99, ratio = [], [], [], [], [], []
    for i in range(runs):
        s = fresh(tmp, f"t4-{i}")
        r = bench(s, "--workload", "e2e", "--rate", "1000", "--consumers", "4", "--batch", "10",
                  "--duration", PHASE["e2e"], "--no-baseline",
                  "--fsync-dir", os.path.join(tmp, f"t4-disk-{i}"))
        s.stop()
        e2e = r["e2e"]["latency_us"]["e2e"]
        disk = r["fsync"]["latency_us"]["fsync"]
        p50.append(e2e["p50"] / 1000)
        p99.append(e2e["p99"] / 1000)
        p999.append(e2e["p999"] / 1000)
        disk50.append(disk["p50"] / 1000)
        disk99.append(disk["p99"] / 1000)
        ratio.append(e2e["p99"] / disk["p99"])
    table("Target 4: end to end at a steady 1,000 msg/s, 4 consumers long-polling",
          ["p50 ms", "p99 ms", "p99.9 ms",
           "disk alone (write + fdatasync at 1,000/s) p50 / p99 ms", "e2e p99 ÷ disk p99",
           "target"],
          [[summary(p50, "{:.2f}"), summary(p99, "{:.2f}"), summary(p999, "{:.2f}"),
            summary(disk50, "{:.2f}") + " / " + summary(disk99, "{:.2f}"),
            summary(ratio, "{:.2f}"), "p50 ≤ 0.6 ms, p99 ≤ 1 ms"]])


def target6(tmp, runs, t1_rate, t1_raw):
    """Beside raw RocksDB's unsynced WriteBatches of the same bytes in the same run: their rate
    over target 1's synced raw RocksDB is what storage alone gains from dropping the fsync."""
    rate, raw = [], []
    for i in range(runs):
        s = fresh(tmp, f"t6-{i}", "--durability", "async")
        r = bench(s, "--workload", "produce", "--producers", "4", "--batch", "100",
                  "--duration", PHASE["short"], "--no-baseline", "--async",
                  "--rocksdb-dir", os.path.join(tmp, f"t6-raw-{i}"))
        s.stop()
        rate.append(r["produce"]["messages_per_second"])
        raw.append(r["rocksdb"]["messages_per_second"])
    table("Target 6: async durability, produce batch 100, 4 producers",
          ["msg/s", "ratio to target 1 (sync)", "target",
           "raw RocksDB unsynced msg/s, same run", "raw RocksDB: unsynced ÷ synced (target 1's)"],
          [[summary(rate), summary([x / t1_rate for x in rate], "{:.2f}") if t1_rate else "-",
            "≥ 1.5", summary(raw),
            summary([x / t1_raw for x in raw], "{:.2f}") if t1_raw else "-"]])


def lease_p99(s, queue, n=10000):
    """Lease p99 (ms) of single-message Lease + Ack, 4 consumers x 4 in flight."""
    r = bench(s, "--workload", "consume", "--consumers", "4", "--inflight", "4", "--batch", "1",
              "--messages", str(n), "--duration", "60s", "--no-baseline", "--queue", queue)
    return r["consume"]["latency_us"]["lease"]["p99"] / 1000


def in_turn(s, queue, baseline):
    """Lease p99 of `queue` and of a baseline queue on the same server, measured in turn
    (PHASE["rounds"] rounds); the medians of each. baseline(k) names the baseline queue of round k. A p99
    of 10,000 calls moves by a third between runs on this guest with a handful of slow fsyncs
    (the disk's tail, background flushes), so one run against one run measured minutes apart
    could not tell 1.2x from noise."""
    p, b = [], []
    for k in range(PHASE["rounds"]):
        p.append(lease_p99(s, queue))
        b.append(lease_p99(s, baseline(k)))
    return statistics.median(p), statistics.median(b)


def target5(tmp, scale, json_path=None):
    """Lease p99 against depth and against history. Each point is measured in turn with a
    baseline queue on the same server (median of 3 each): the 10k-message queue for depth, a
    new queue for history. The ratio to the baseline measured before the load, minutes
    earlier, is printed too."""
    settle = PHASE["settle"]
    rows = []
    curves = {"depth": [], "history": []}
    # Depth: Lease p99 with `scale` messages stored against 10k stored.
    s = fresh(tmp, "t5-depth")
    bench(s, "--workload", "produce", "--producers", "2", "--inflight", "2", "--batch", "1000",
          "--messages", "20000", "--no-baseline", "--queue", "shallow", "--duration", "600s")
    time.sleep(settle)
    shallow = lease_p99(s, "shallow")
    points = sorted({p for p in (100_000, 1_000_000) if p < scale} | {scale})
    stored = 0
    for n in points:
        bench(s, "--workload", "produce", "--producers", "2", "--inflight", "2", "--batch", "1000",
              "--messages", str(n - stored), "--no-baseline", "--queue", "deep",
              "--duration", "900s")
        stored = n
        time.sleep(settle)  # let the flushes and compactions of the load finish
        p99, base = in_turn(s, "deep", lambda k: "shallow")
        stored -= PHASE["rounds"] * 10000  # each measurement consumed 10,000 of them
        rss = s.rss_mib()
        rows.append([f"{n:,} stored", f"{p99:.2f}", f"{base:.2f}", f"{p99 / base:.2f}",
                     f"{p99 / shallow:.2f}", f"{rss:,.0f}"])
        curves["depth"].append({"n": n, "p99_ms": p99, "baseline_ms": base,
                                "before_ms": shallow, "rss_mib": rss})
    payload_bytes = stored * 256
    s.stop()
    disk = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(s.data_dir)
               for f in fs)
    restart = Spoold(s.data_dir)
    ready = restart.ready_seconds
    rss_after = restart.rss_mib()
    # Then a crash: enough enqueued to fill the log up to its bound (max_total_wal_size, 256
    # MiB: about 800,000 messages) and spoold killed, so the next start replays all of it.
    crash_load = min(800_000, scale)
    bench(restart, "--workload", "produce", "--producers", "2", "--inflight", "2", "--batch",
          "1000", "--messages", str(crash_load), "--no-baseline", "--queue", "deep",
          "--duration", "900s")
    restart.proc.kill()
    restart.proc.wait()
    db = os.path.join(s.data_dir, "db")
    log_mib = sum(os.path.getsize(os.path.join(db, f)) for f in os.listdir(db)
                  if f.endswith(".log")) / 2**20
    crashed = Spoold(s.data_dir)
    crash_ready = crashed.ready_seconds
    crashed.stop()
    table(f"Target 5a: Lease cost against depth (single-message Lease + Ack, 16 in flight, "
          f"10,000 leases a measurement, {settle} s after loading; median of {PHASE['rounds']} in "
          "turn with the 10k-message queue)",
          ["queue", "Lease p99 ms", "10k-message queue p99 ms, same server, in turn", "ratio",
           f"ratio to the 10k queue before loading ({shallow:.2f} ms)", "spoold RSS MiB"], rows)
    print(f"\nWith {stored:,} messages of 256 B stored: restart to SERVING {ready:.2f} s, RSS after "
          f"restart {rss_after:,.0f} MiB, data directory {disk / 2**20:,.0f} MiB = "
          f"{disk / payload_bytes:.2f}× the payload bytes (incompressible payloads). Then "
          f"{crash_load:,} more enqueued and spoold killed (SIGKILL): restart to SERVING "
          f"{crash_ready:.2f} s, replaying {log_mib:,.0f} MiB of log.")
    # History: Lease p99 on a nearly empty queue after `scale` messages went through it.
    s = fresh(tmp, "t5-history")
    bench(s, "--workload", "produce", "--producers", "2", "--inflight", "2", "--batch", "1000",
          "--messages", "20000", "--no-baseline", "--queue", "fresh", "--duration", "600s")
    time.sleep(settle)
    fresh_p99 = lease_p99(s, "fresh")
    rows = []
    done = 0
    for n in points:
        bench(s, "--workload", "consume", "--consumers", "4", "--batch", "1000", "--messages",
              str(n - done), "--no-baseline", "--queue", "history", "--duration", "900s")
        done = n
        bench(s, "--workload", "produce", "--producers", "1", "--batch", "1000", "--messages",
              "10000", "--no-baseline", "--queue", "history", "--duration", "60s")
        time.sleep(settle)
        p99, base = in_turn(s, "history", lambda k, n=n: f"new-{n}-{k}")
        rss = s.rss_mib()
        rows.append([f"{n:,} consumed", f"{p99:.2f}", f"{base:.2f}", f"{p99 / base:.2f}",
                     f"{p99 / fresh_p99:.2f}", f"{rss:,.0f}"])
        curves["history"].append({"n": n, "p99_ms": p99, "baseline_ms": base,
                                  "before_ms": fresh_p99, "rss_mib": rss})
    s.stop()
    table("Target 5b: Lease cost against history (queue nearly empty after N messages went "
          f"through; median of {PHASE['rounds']} in turn with a new queue)",
          ["history", "Lease p99 ms", "new queue p99 ms, same server, in turn", "ratio",
           f"ratio to a fresh queue before the history ({fresh_p99:.2f} ms)", "spoold RSS MiB"],
          rows)
    if json_path:
        with open(json_path, "w") as f:
            json.dump(curves, f)
        print(f"\nCurves written to {json_path}; draw them with tools/bench/plot_target5.py")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--only", type=int, nargs="*", default=[1, 2, 3, 4, 5, 6])
    ap.add_argument("--scale", type=int, default=10_000_000)
    ap.add_argument("--target5-json", help="also write target 5's curves to this file, for "
                    "tools/bench/plot_target5.py")
    ap.add_argument("--quick", action="store_true",
                    help="1-second phases (3 s for target 4; for target 5, a 1-second wait and one "
                    "round, with --scale 100000 at most), targets 1, 2, 4, 5 and 6 only: a check "
                    "that the script and the tools it drives work, not a measurement")
    a = ap.parse_args()
    if a.quick:
        if set(a.only) - {1, 2, 4, 5, 6}:
            ap.error("--quick goes with --only and targets among 1, 2, 4, 5 and 6")
        if 5 in a.only and a.scale > 100_000:
            ap.error("--quick with target 5 needs --scale 100000 or less")
        PHASE.update(short="1s", e2e="3s", settle=1, rounds=1)
    with tempfile.TemporaryDirectory(prefix="spool-bench-") as tmp:
        print(f"spool-bench targets, {a.runs} runs each, median (min–max), on {os.cpu_count()} cores")
        t1, t1_raw, t1_append = target1(tmp, a.runs) if 1 in a.only else (0, 0, 0)
        if 2 in a.only:
            target2(tmp, a.runs)
        if 3 in a.only:
            target3(tmp, a.runs, t1, t1_append)
        if 4 in a.only:
            target4(tmp, a.runs)
        if 6 in a.only:
            target6(tmp, a.runs, t1, t1_raw)
        if 5 in a.only:
            target5(tmp, a.scale, a.target5_json)


if __name__ == "__main__":
    main()
