#!/usr/bin/python3
"""spool-reply-paths answers every Check in each of its six ways, and a group waits its delay.

For each API (callback, async, sync) and each finish (inline, group), a server started on
127.0.0.1 must answer all of spool-bench's noop calls without an error and exit 0 on SIGTERM;
with --finish group --delay-us 20000 no call may come back sooner than the delay (so the reply
really waits for its group); --delay-us without --finish group is refused. The callback API
also answers spool-bench's Publish streams, every request, and its Subscribe streams, a push
for each ack, inline or after its group's delay.
"""
import json
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

BIN = os.environ.get("SPOOL_BIN_DIR", "build/bin")
CALLS = 400


class ReplyPathsTest(unittest.TestCase):
    def serve(self, *flags, workload="noop", bench=()):
        """Runs spool-bench's workload against a fresh server; returns its phase."""
        with tempfile.TemporaryDirectory(prefix="reply-paths-") as tmp:
            port_file = os.path.join(tmp, "port")
            proc = subprocess.Popen([os.path.join(BIN, "spool-reply-paths"), "--port-file",
                                     port_file, *flags], stderr=subprocess.DEVNULL)
            try:
                deadline = time.time() + 30
                while not os.path.exists(port_file):
                    self.assertIsNone(proc.poll(), "spool-reply-paths exited at start")
                    self.assertLess(time.time(), deadline, "spool-reply-paths did not start")
                    time.sleep(0.01)
                with open(port_file) as f:
                    address = "127.0.0.1:" + f.read().strip()
                out = subprocess.run(
                    [os.path.join(BIN, "spool-bench"), "--server", address, "--workload",
                     workload, "--producers", "2", "--inflight", "4", "--batch", "3",
                     "--messages", str(CALLS), "--duration", "30s", "--json", *bench],
                    capture_output=True, text=True, timeout=60, check=True).stdout
                proc.send_signal(signal.SIGTERM)
                self.assertEqual(proc.wait(timeout=30), 0)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
        return {p["name"]: p for p in json.loads(out)["phases"]}[workload]

    def test_every_api_and_finish_answers_every_call(self):
        for api in ("callback", "async", "sync"):
            for finish in ("inline", "group"):
                with self.subTest(api=api, finish=finish):
                    noop = self.serve("--api", api, "--finish", finish)
                    self.assertEqual(noop["calls"], CALLS)
                    self.assertEqual(noop["errors"], {})

    def test_a_group_reply_waits_for_the_delay(self):
        for api in ("callback", "async", "sync"):
            with self.subTest(api=api):
                noop = self.serve("--api", api, "--finish", "group", "--delay-us", "20000")
                self.assertEqual(noop["calls"], CALLS)
                self.assertGreaterEqual(noop["latency_us"]["check"]["p50"], 19000)

    def test_publish_streams_are_answered_inline_or_after_the_group(self):
        for flags in (("--finish", "inline"), ("--finish", "group", "--delay-us", "20000")):
            with self.subTest(flags=flags):
                publish = self.serve("--api", "callback", *flags, workload="publish")
                self.assertEqual(publish["messages"], CALLS)
                self.assertEqual(publish["calls"], -(-CALLS // 3))  # requests of up to 3
                self.assertEqual(publish["errors"], {})
                if "group" in flags:
                    self.assertGreaterEqual(publish["latency_us"]["publish"]["p50"], 19000)

    def test_subscribe_streams_push_one_message_per_ack(self):
        for flags in (("--finish", "inline"), ("--finish", "group", "--delay-us", "20000")):
            with self.subTest(flags=flags):
                sub = self.serve("--api", "callback", *flags, workload="subscribe",
                                 bench=("--consumers", "2", "--max-outstanding", "1"))
                self.assertGreaterEqual(sub["messages"], CALLS)  # acked OK, each one
                self.assertEqual(sub["errors"], {})
                if "group" in flags:
                    self.assertGreaterEqual(sub["latency_us"]["ack"]["p50"], 19000)

    def test_refuses_a_delay_without_groups(self):
        r = subprocess.run([os.path.join(BIN, "spool-reply-paths"), "--delay-us", "100"],
                           capture_output=True, text=True, timeout=30)
        self.assertEqual(r.returncode, 2)
        self.assertIn("--delay-us goes with --finish group", r.stderr)


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1], verbosity=2)
