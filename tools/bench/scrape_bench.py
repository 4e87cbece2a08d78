#!/usr/bin/python3
"""What a /metrics scrape costs spoold (issue 18): 1,000 queues, under full produce load.

Starts spoold (--spoold, default build/bin/spoold) with HTTP on loopback in a temporary
directory, creates --queues queues with a message each, starts spool-bench producing on one of
them for the whole run, and scrapes /metrics --scrapes times. Prints the CPU time of spoold's
HTTP thread per scrape (from /proc/PID/task/*/stat; a scrape runs on that thread alone), the
wall time of a scrape, and the produce rate with and without scraping, measured in one run.
Bounded: --scrapes scrapes, and spool-bench stops after its --duration.
"""
import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests",
                                "http"))
import spoold_http  # noqa: E402


def thread_cpu(pid, name):
    """CPU seconds of the thread of pid named name."""
    tick = os.sysconf("SC_CLK_TCK")
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/comm") as f:
                if f.read().strip() != name:
                    continue
            with open(f"/proc/{pid}/task/{tid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            return (int(fields[11]) + int(fields[12])) / tick
        except FileNotFoundError:
            continue
    raise RuntimeError(f"no thread {name} in {pid}")


def produce(bench, port, seconds):
    out = subprocess.run([bench, "--server", f"127.0.0.1:{port}", "--workload", "produce",
                          "--producers", "4", "--batch", "100", "--duration", f"{seconds}s",
                          "--queue", "load"], capture_output=True, text=True, check=True).stdout
    for line in out.splitlines():
        if line.startswith("produce"):
            return line.strip()
    return out.strip().splitlines()[-1]


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    top = os.path.join(here, "..", "..")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--spoold-dir", default=os.path.join(top, "build", "bin"))
    ap.add_argument("--queues", type=int, default=1000)
    ap.add_argument("--scrapes", type=int, default=50)
    ap.add_argument("--seconds", type=int, default=10, help="each produce run")
    args = ap.parse_args()
    spoold_http.BIN = args.spoold_dir
    s = spoold_http.temp_spoold()
    s.start()
    try:
        ctl = os.path.join(args.spoold_dir, "spoolctl")
        server = f"127.0.0.1:{s.grpc_port}"
        # Created in one go through spoolctl: 1,000 queues, one message each.
        for i in range(args.queues):
            name = f"queue-{i:04d}"
            subprocess.run([ctl, "--server", server, "create", name], check=True,
                           stdout=subprocess.DEVNULL)
            subprocess.run([ctl, "--server", server, "send", name, "x"], check=True,
                           stdout=subprocess.DEVNULL)
        url = f"http://127.0.0.1:{s.http_port}/metrics"
        bench = os.path.join(args.spoold_dir, "spool-bench")
        quiet = produce(bench, s.grpc_port, args.seconds)
        load = subprocess.Popen([bench, "--server", server, "--workload", "produce",
                                 "--producers", "4", "--batch", "100", "--duration",
                                 f"{args.seconds}s", "--queue", "load"],
                                stdout=subprocess.PIPE, text=True)
        time.sleep(1)
        cpu, wall, size = [], [], 0
        deadline = time.time() + args.seconds - 2
        while len(cpu) < args.scrapes and time.time() < deadline:
            c0 = thread_cpu(s.proc.pid, "spool-http")
            t0 = time.perf_counter()
            body = urllib.request.urlopen(url, timeout=10).read()
            wall.append(time.perf_counter() - t0)
            cpu.append(thread_cpu(s.proc.pid, "spool-http") - c0)
            size = len(body)
            time.sleep(0.1)
        out = load.communicate(timeout=args.seconds + 60)[0]
        busy = [l.strip() for l in out.splitlines() if l.startswith("produce")]
        n = len(cpu)
        print(f"scrapes: {n} of {args.queues} queues, {size} bytes each, under produce load")
        print(f"HTTP thread CPU per scrape: mean {1000 * sum(cpu) / n:.2f} ms "
              f"(clock ticks of {1000 / os.sysconf('SC_CLK_TCK'):.0f} ms, so read the mean)")
        print(f"scrape wall time: median {1000 * statistics.median(wall):.2f} ms, "
              f"max {1000 * max(wall):.2f} ms")
        print(f"produce without scrapes: {quiet}")
        print(f"produce while scraping every 0.1 s: {busy[-1] if busy else out.strip()}")
    finally:
        s.stop()


if __name__ == "__main__":
    main()
