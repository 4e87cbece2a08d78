#!/usr/bin/python3
"""Counts the instructions spoold executes per message, with callgrind, for produce and consume.

Wall-clock figures on a shared 2-vCPU guest move by tens of percent from hour to hour; the
number of instructions a fixed workload costs does not (±1% between runs here). This is the
figure to compare two builds by when a change is about CPU:

    tools/bench/count_instructions.py                       # 50,000 messages per workload
    tools/bench/count_instructions.py --spoold /tmp/old/spoold --messages 20000
    tools/bench/count_instructions.py --only consume --spoold-arg=--test-mutation \
        --spoold-arg=no-persist-leases     # what the Lease's per-message write costs
    tools/bench/count_instructions.py --only consume --keep /tmp/cg   # then:
    callgrind_annotate --inclusive=yes /tmp/cg/callgrind.consume | less

spoold runs under `valgrind --tool=callgrind` with instrumentation off, listening on 127.0.0.1
on a free port with its data in a temporary directory. For each workload the preparation (a
queue filled for consume) runs uninstrumented; callgrind_control switches counting on for the
measured part only and dumps the count of every thread of spoold. Workloads:

    produce    4 producers, Enqueue batches of 100
    produce-dedup  the same, every message with a distinct dedup id (the dedup index is read
               and written at every enqueue)
    produce1   64 single-message Enqueues in flight (a tenth of --messages)
    noop       64 grpc.health.v1.Health/Check calls in flight, as many as produce1's calls:
               what gRPC alone costs spoold per call (target 2's ceiling, counted)
    consume    4 consumers, Lease 100 + Ack 100, from a queue filled beforehand

Needs the build (tools/dev.sh build) and Debian's valgrind (installed by tools/dev.sh setup).
"""
import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
BIN = os.path.join(ROOT, "build", "bin")

WORKLOADS = {
    # name: (preparation args or None, measured args, messages divisor)
    "produce": (None, ["--workload", "produce", "--producers", "4", "--batch", "100"], 1),
    "produce-dedup": (None, ["--workload", "produce", "--producers", "4", "--batch", "100",
                             "--dedup-ids"], 1),
    "produce1": (None, ["--workload", "produce", "--producers", "1", "--inflight", "64",
                        "--batch", "1"], 10),
    "noop": (None, ["--workload", "noop", "--producers", "1", "--inflight", "64"], 10),
    "consume": (["--workload", "produce", "--producers", "2", "--batch", "1000"],
                ["--workload", "consume", "--consumers", "4", "--batch", "100"], 1),
}


def run(args, timeout):
    return subprocess.run(args, capture_output=True, text=True, timeout=timeout, check=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--spoold", default=os.path.join(BIN, "spoold"))
    ap.add_argument("--bench", default=os.path.join(BIN, "spool-bench"))
    ap.add_argument("--messages", type=int, default=50000)
    ap.add_argument("--only", nargs="*", choices=sorted(WORKLOADS), default=list(WORKLOADS))
    ap.add_argument("--json", action="store_true", help="one JSON document instead of a table")
    ap.add_argument("--spoold-arg", action="append", default=[], metavar="ARG",
                    help="one more argument for spoold (repeat for more), e.g. "
                    "--spoold-arg=--durability --spoold-arg=async")
    ap.add_argument("--keep", metavar="DIR",
                    help="copy callgrind's dumps here, to read with callgrind_annotate")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="spool-instr-") as tmp:
        port_file = os.path.join(tmp, "port")
        out = os.path.join(tmp, "callgrind.out")
        proc = subprocess.Popen(
            ["valgrind", "--tool=callgrind", "--instr-atstart=no", "--callgrind-out-file=" + out,
             args.spoold, "--listen", "127.0.0.1:0", "--data-dir", os.path.join(tmp, "data"),
             "--port-file", port_file, *args.spoold_arg],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        results = []
        try:
            start = time.time()
            while not (os.path.exists(port_file) and os.path.getsize(port_file) > 0):
                if proc.poll() is not None or time.time() - start > 300:
                    sys.exit("spoold did not start under valgrind")
                time.sleep(0.1)
            with open(port_file) as f:
                server = "127.0.0.1:" + f.read().strip()
            for i, name in enumerate(args.only):
                prepare, measured, divisor = WORKLOADS[name]
                n = max(1, args.messages // divisor)
                common = [args.bench, "--server", server, "--no-baseline", "--queue",
                          f"instr-{name}", "--messages", str(n), "--duration", "600s"]
                if prepare:
                    run(common + prepare, 900)
                run(["callgrind_control", "--zero", str(proc.pid)], 60)
                run(["callgrind_control", "--instr=on", str(proc.pid)], 60)
                run(common + measured, 1800)
                run(["callgrind_control", "--instr=off", str(proc.pid)], 60)
                run(["callgrind_control", "--dump=" + name, str(proc.pid)], 60)
                dump = dump_file(out, i + 1)
                results.append({"workload": name, "messages": n, "instructions": total(dump)})
                if args.keep:
                    os.makedirs(args.keep, exist_ok=True)
                    shutil.copy(dump, os.path.join(args.keep, f"callgrind.{name}"))
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                proc.kill()

    for r in results:
        r["per_message"] = r["instructions"] / r["messages"]
    if args.json:
        print(json.dumps({"spoold": args.spoold, "results": results}, indent=1))
        return
    print(f"spoold: {args.spoold}")
    print("| workload | messages | spoold instructions | per message |")
    print("| --- | --- | --- | --- |")
    for r in results:
        print(f"| {r['workload']} | {r['messages']:,} | {r['instructions']:,} "
              f"| {r['per_message']:,.0f} |")


def dump_file(out, number):
    """The file of callgrind's dump `number` (1-based) of the run writing `out`."""
    path = f"{out}.{number}"
    deadline = time.time() + 60
    while not os.path.exists(path):
        if time.time() > deadline:
            sys.exit(f"callgrind wrote no dump {number}")
        time.sleep(0.1)
    return path


def total(dump):
    """The instructions a callgrind dump counted (all of spoold's threads)."""
    with open(dump) as f:
        for line in f:
            if line.startswith("totals:") or line.startswith("summary:"):
                if int(line.split()[1]) > 0:
                    return int(line.split()[1])
    sys.exit(f"{dump} counted no instructions")


if __name__ == "__main__":
    main()
