#!/usr/bin/python3
"""spoold's keepalive policy, as a client sees it: a client that pings more often than
--min-client-ping-interval-ms allows is sent GOAWAY "too_many_pings" and loses its connection;
with the limit lowered, the same client keeps it. Out-of-range keepalive flags are refused.
Run with Debian's /usr/bin/python3, which sees python3-grpcio.
"""
import os
import subprocess
import tempfile
import time
import unittest

import grpc

SOURCE = os.environ.get("SPOOL_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("SPOOL_BIN_DIR", os.path.join(SOURCE, "build", "bin"))


class Spoold:
    def __init__(self, *flags):
        self.dir = tempfile.TemporaryDirectory()
        port_file = os.path.join(self.dir.name, "port")
        self.proc = subprocess.Popen(
            [f"{BIN}/spoold", "--listen", "127.0.0.1:0", "--data-dir",
             os.path.join(self.dir.name, "data"), "--port-file", port_file, *flags],
            stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while not os.path.exists(port_file):
            if self.proc.poll() is not None or time.time() > deadline:
                raise RuntimeError("spoold did not start")
            time.sleep(0.05)
        self.port = int(open(port_file).read())

    def stop(self):
        self.proc.terminate()
        self.proc.wait(timeout=20)
        self.dir.cleanup()


def states_of_pinging_client(port, ping_every_ms, seconds):
    """Connects a client that pings every ping_every_ms with no call open; returns the
    connectivity states it went through within `seconds`."""
    channel = grpc.insecure_channel(f"127.0.0.1:{port}", options=[
        ("grpc.keepalive_time_ms", ping_every_ms),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0)])
    states = []
    channel.subscribe(states.append, try_to_connect=True)
    time.sleep(seconds)
    channel.close()
    return states


class KeepaliveTest(unittest.TestCase):
    # A client pinging every 1.5 s: gRPC counts a strike per ping that comes sooner than the
    # limit and sends GOAWAY at the third, so by default (10 s) it is gone after ~6 s.
    def test_a_client_pinging_too_often_is_disconnected(self):
        spoold = Spoold()
        try:
            states = states_of_pinging_client(spoold.port, 1500, 8)
        finally:
            spoold.stop()
        self.assertIn(grpc.ChannelConnectivity.READY, states)
        ready_at = states.index(grpc.ChannelConnectivity.READY)
        self.assertIn(grpc.ChannelConnectivity.IDLE, states[ready_at:],
                      f"the connection survived a ping every 1.5 s: {states}")

    def test_a_lower_limit_lets_the_same_client_stay(self):
        spoold = Spoold("--min-client-ping-interval-ms", "1000")
        try:
            states = states_of_pinging_client(spoold.port, 1500, 8)
        finally:
            spoold.stop()
        self.assertEqual(states[-1], grpc.ChannelConnectivity.READY, states)

    def test_out_of_range_keepalive_flags_are_refused(self):
        for flag, value in (("--keepalive-time-ms", "10"), ("--keepalive-timeout-ms", "0"),
                            ("--min-client-ping-interval-ms", "999999999")):
            with tempfile.TemporaryDirectory() as d:
                r = subprocess.run([f"{BIN}/spoold", "--data-dir", d, flag, value],
                                   capture_output=True, text=True, timeout=20)
                self.assertNotEqual(r.returncode, 0, flag)
                self.assertIn(flag, r.stderr + r.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
