#!/usr/bin/python3
"""tools/bench/peers.py and peers_latency.py must keep working, and peers.py's end-state checks
must be able to fail.

A short run of all three systems (the test command installs Redis and PostgreSQL), then, for
each system, a server with a known number of messages whose check is given a wrong count: a
check that accepted it would let a benchmark that lost or repeated messages report a rate.
Never the figures: performance is measured by running peers.py, not by tests.
"""
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
import unittest

SOURCE = os.environ.get("SPOOL_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
PEERS = os.path.join(SOURCE, "tools", "bench", "peers.py")
LATENCY = os.path.join(SOURCE, "tools", "bench", "peers_latency.py")

spec = importlib.util.spec_from_file_location("peers", PEERS)
peers = importlib.util.module_from_spec(spec)
spec.loader.exec_module(peers)


class PeersTest(unittest.TestCase):
    def test_a_short_run_of_every_system(self):
        # Batches of 100 over 4 connections, and single messages over 8.
        for shape in (["--messages", "4000"], ["--messages", "800", "--batch", "1",
                                               "--connections", "8"]):
            with self.subTest(shape=shape):
                out = subprocess.run(["/usr/bin/python3", PEERS, "--runs", "1", *shape,
                                      "--max-seconds", "60", "--require-all", "--json"],
                                     capture_output=True, text=True, timeout=240)
                self.assertEqual(out.returncode, 0, out.stderr)
                runs = json.loads(out.stdout)
                self.assertEqual(sorted(runs), ["postgres", "redis", "spool"])
                for system, results in runs.items():
                    self.assertEqual(len(results), 1, system)
                    self.assertGreater(results[0]["produce"], 0, system)
                    self.assertGreater(results[0]["consume"], 0, system)
                self.assertGreater(runs["spool"][0]["noop_calls"], 0)
                # The server's CPU for the produce phase, where it is one process.
                for system in ("spool", "redis"):
                    self.assertGreater(runs[system][0]["produce_cpu_us"], 0, system)
                self.assertNotIn("produce_cpu_us", runs["postgres"][0])

    def test_spool_over_streams(self):
        # Publish and Subscribe in Spool's turns; its end-state check (every message stored,
        # each acked once, none left) runs after the consume phase as in the unary shape.
        out = subprocess.run(["/usr/bin/python3", PEERS, "--runs", "1", "--only", "spool",
                              "--messages", "800", "--batch", "1", "--inflight", "4",
                              "--publish", "--subscribe", "--max-seconds", "60",
                              "--require-all", "--json"],
                             capture_output=True, text=True, timeout=240)
        self.assertEqual(out.returncode, 0, out.stderr)
        runs = json.loads(out.stdout)
        self.assertEqual(sorted(runs), ["spool"])
        self.assertGreater(runs["spool"][0]["produce"], 0)
        self.assertGreater(runs["spool"][0]["consume"], 0)

    def test_checks_refuse_a_wrong_count(self):
        payload = peers.text_payload(256)
        for name, cls in peers.SYSTEMS.items():
            with self.subTest(system=name):
                tmp = tempfile.mkdtemp(prefix=f"peers-test-{name}-")
                server = None
                try:
                    server = cls(tmp, payload)
                    server.produce(800, 100, 60)
                    server.check(800, 0)
                    with self.assertRaises(RuntimeError):
                        server.check(801, 0)  # one message lost
                    server.consume(800, 100, 60)
                    server.check(800, 800)
                    with self.assertRaises(RuntimeError):
                        server.check(800, 799)  # one consumed twice, or one left behind
                finally:
                    if server:
                        server.stop()
                    shutil.rmtree(tmp, ignore_errors=True)

    def test_a_short_latency_run(self):
        # peers_latency.py fails a run in which a message sent is not received exactly once.
        out = subprocess.run(["/usr/bin/python3", LATENCY, "--runs", "1", "--seconds", "1",
                              "--rate", "200", "--json"],
                             capture_output=True, text=True, timeout=240)
        self.assertEqual(out.returncode, 0, out.stderr)
        runs = json.loads(out.stdout)
        self.assertEqual(sorted(runs), ["disk", "redis", "spool", "spool-bench", "spool-bench-streams",
                                        "spool-streams"])
        for name, results in runs.items():
            r = results[0]
            self.assertTrue(0 < r["p50"] <= r["p99"] <= r["p999"] <= r["max"], (name, r))

    def test_messages_must_fill_whole_batches(self):
        out = subprocess.run(["/usr/bin/python3", PEERS, "--messages", "1001", "--only", "spool"],
                             capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 2)
        self.assertIn("--messages must be a positive multiple of 400", out.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
