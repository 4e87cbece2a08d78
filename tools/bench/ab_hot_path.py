#!/usr/bin/python3
"""Two spoold builds in alternating runs on targets 1 and 3a of BENCHMARKS.md (issue 18: what
recording metrics costs the hot path).

For each round, for each build in turn (A first in odd rounds, B first in even ones): a fresh
spoold on a temporary directory, spool-bench --workload produce (4 producers, batches of 100,
256 B) and then --workload consume (4 consumers, Lease 100 + Ack 100 of 300,000 messages).
Prints every run and the medians, and B / A. Bounded: --rounds rounds, each run --seconds.
  tools/bench/ab_hot_path.py --a /tmp/base/spoold --b build/bin/spoold
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))


def start(binary, data):
    port_file = data + ".port"
    p = subprocess.Popen([binary, "--listen", "127.0.0.1:0", "--data-dir", data, "--port-file",
                          port_file], stderr=subprocess.DEVNULL)
    deadline = time.time() + 30
    while not os.path.exists(port_file):
        if p.poll() is not None or time.time() > deadline:
            raise RuntimeError(f"{binary} did not start")
        time.sleep(0.05)
    return p, int(open(port_file).readline())


def bench(tool, port, *args):
    out = subprocess.run([tool, "--server", f"127.0.0.1:{port}", "--json", *args],
                         capture_output=True, text=True, check=True).stdout
    return {phase["name"]: phase for phase in json.loads(out)["phases"]}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--a", required=True, help="spoold of the baseline build")
    ap.add_argument("--b", required=True, help="spoold of the build under test")
    ap.add_argument("--bench", default=os.path.join(HERE, "..", "..", "build", "bin",
                                                    "spool-bench"))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=int, default=6)
    args = ap.parse_args()
    rates = {"a": {"produce": [], "consume": []}, "b": {"produce": [], "consume": []}}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.rounds):
            order = ["a", "b"] if r % 2 == 0 else ["b", "a"]
            for which in order:
                p, port = start(getattr(args, which), os.path.join(tmp, f"{which}-{r}"))
                try:
                    prod = bench(args.bench, port, "--workload", "produce", "--producers", "4",
                                 "--batch", "100", "--payload-bytes", "256", "--duration",
                                 f"{args.seconds}s", "--no-baseline")
                    cons = bench(args.bench, port, "--workload", "consume", "--consumers", "4",
                                 "--batch", "100", "--messages", "300000", "--duration",
                                 f"{args.seconds * 5}s", "--no-baseline", "--queue", "batch")
                finally:
                    p.terminate()
                    p.wait(timeout=30)
                pr = prod["produce"]["messages_per_second"]
                cr = cons["consume"]["messages_per_second"]
                rates[which]["produce"].append(pr)
                rates[which]["consume"].append(cr)
                print(f"round {r + 1} {which}: produce {pr:,.0f} msg/s, consume {cr:,.0f} msg/s",
                      flush=True)
    for w in ("produce", "consume"):
        a, b = statistics.median(rates["a"][w]), statistics.median(rates["b"][w])
        print(f"{w}: A median {a:,.0f}, B median {b:,.0f} msg/s, B/A {b / a:.3f} "
              f"(A runs {min(rates['a'][w]):,.0f}-{max(rates['a'][w]):,.0f}, "
              f"B runs {min(rates['b'][w]):,.0f}-{max(rates['b'][w]):,.0f})")


if __name__ == "__main__":
    sys.exit(main())
