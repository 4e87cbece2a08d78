#!/usr/bin/python3
"""spool-bench --dedup-ids gives every message a dedup id, the same ids again in a second run.

Three runs into one queue: the first enqueues every message; the second makes the same ids
again, so the queue's dedup index turns every one away and spool-bench counts them as
duplicates; a third without the flag enqueues everything. Against the engine in process
(--engine-dir) and against a spoold this test starts on 127.0.0.1. A bench whose flag set no
id, or set ids that repeat within a run, fails here.
"""
import json
import os
import signal
import subprocess
import tempfile
import time
import unittest

BENCH = os.path.join(os.environ.get("SPOOL_BIN_DIR", "build/bin"), "spool-bench")
MESSAGES = 2000


SPOOLD = os.path.join(os.environ.get("SPOOL_BIN_DIR", "build/bin"), "spoold")


def bench(target, phase, *flags):
    out = subprocess.run(
        [BENCH, *target, "--producers", "2", "--consumers", "2", "--batch", "10", "--messages",
         str(MESSAGES), "--duration", "20s", "--json", *flags],
        capture_output=True, text=True, timeout=120, check=True).stdout
    doc = json.loads(out)
    phases = {p["name"]: p for p in doc["phases"]}
    return doc, phases[phase]


class BenchDedupTest(unittest.TestCase):
    def three_runs(self, produce_phase):
        doc, first = produce_phase("--dedup-ids")
        self.assertTrue(doc["dedup_ids"])
        self.assertEqual(first["messages"], MESSAGES)
        self.assertEqual(first["duplicates"], 0, "ids repeat within one run")

        _, second = produce_phase("--dedup-ids")
        self.assertEqual(second["messages"], MESSAGES)
        self.assertEqual(second["duplicates"], MESSAGES, "the second run's ids were not seen")

        doc, third = produce_phase()
        self.assertFalse(doc["dedup_ids"])
        self.assertEqual(third["duplicates"], 0)

    def test_in_process(self):
        with tempfile.TemporaryDirectory(prefix="spool-bench-dedup-") as tmp:
            self.three_runs(lambda *flags: bench(["--engine-dir", tmp], "engine-produce", *flags))

    def test_over_grpc(self):
        with tempfile.TemporaryDirectory(prefix="spool-bench-dedup-") as tmp:
            port_file = os.path.join(tmp, "port")
            proc = subprocess.Popen([SPOOLD, "--listen", "127.0.0.1:0", "--data-dir",
                                     os.path.join(tmp, "data"), "--port-file", port_file],
                                    stderr=subprocess.DEVNULL)
            try:
                deadline = time.time() + 60
                while not (os.path.exists(port_file) and os.path.getsize(port_file) > 0):
                    self.assertIsNone(proc.poll(), "spoold exited")
                    self.assertLess(time.time(), deadline, "spoold did not start")
                    time.sleep(0.02)
                with open(port_file) as f:
                    server = "127.0.0.1:" + f.read().strip()
                self.three_runs(lambda *flags: bench(
                    ["--server", server, "--workload", "produce", "--no-baseline"], "produce",
                    *flags))
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)


if __name__ == "__main__":
    unittest.main()
