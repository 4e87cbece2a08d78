#!/usr/bin/python3
"""TLS and mutual TLS between spoolctl and spoold, with a CA and certificates made here by the
openssl command, and spoold's refusal to serve plaintext beyond loopback."""
import os
import signal
import subprocess
import sys
import tempfile
import time
import unittest

SOURCE = os.environ.get("SPOOL_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("SPOOL_BIN_DIR", os.path.join(SOURCE, "build", "bin"))
sys.path.insert(0, os.path.join(SOURCE, "tests"))
from certs import make_ca, make_cert  # noqa: E402


class TlsTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        d = cls.d = cls.tmp.name
        make_ca(d, "ca")
        make_ca(d, "other-ca")
        make_cert(d, "ca", "server")
        make_cert(d, "ca", "client")
        make_cert(d, "other-ca", "stranger")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def spoold(self, *flags):
        port_file = os.path.join(self.d, "port")
        if os.path.exists(port_file):
            os.remove(port_file)
        proc = subprocess.Popen([os.path.join(BIN, "spoold"), "--listen", "127.0.0.1:0",
                                 "--data-dir", os.path.join(self.d, "data"),
                                 "--port-file", port_file, *flags], stderr=subprocess.DEVNULL)
        deadline = time.time() + 20
        while not os.path.exists(port_file):
            self.assertIsNone(proc.poll(), "spoold exited")
            self.assertLess(time.time(), deadline)
            time.sleep(0.02)
        with open(port_file) as f:
            return proc, "127.0.0.1:" + f.read().strip()

    def ctl(self, server, *args):
        p = subprocess.run([os.path.join(BIN, "spoolctl"), "--server", server, "--timeout", "5s",
                            *args], capture_output=True, text=True, timeout=30)
        return p.returncode, p.stdout, p.stderr

    def path(self, name):
        return os.path.join(self.d, name)

    def test_tls_only(self):
        proc, server = self.spoold("--tls-cert", self.path("server.pem"),
                                   "--tls-key", self.path("server.key"))
        try:
            rc, out, err = self.ctl(server, "--tls-ca", self.path("ca.pem"), "health")
            self.assertEqual((rc, out), (0, "SERVING\n"), err)
            rc, _, err = self.ctl(server, "health")  # plaintext against a TLS server
            self.assertEqual(rc, 1)
            rc, _, err = self.ctl(server, "--tls-ca", self.path("other-ca.pem"), "health")
            self.assertEqual(rc, 1)  # a server certificate from a CA we do not trust
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)

    def test_mutual_tls(self):
        proc, server = self.spoold("--tls-cert", self.path("server.pem"),
                                   "--tls-key", self.path("server.key"),
                                   "--tls-client-ca", self.path("ca.pem"))
        try:
            ca = ["--tls-ca", self.path("ca.pem")]
            rc, out, err = self.ctl(server, *ca, "--tls-cert", self.path("client.pem"),
                                    "--tls-key", self.path("client.key"), "create", "q")
            self.assertEqual(rc, 0, err)
            rc, _, err = self.ctl(server, *ca, "queues")  # no client certificate
            self.assertEqual(rc, 1)
            rc, _, err = self.ctl(server, *ca, "--tls-cert", self.path("stranger.pem"),
                                  "--tls-key", self.path("stranger.key"), "queues")
            self.assertEqual(rc, 1)  # a client certificate from another CA
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=10)

    def test_plaintext_beyond_loopback_is_refused(self):
        p = subprocess.run([os.path.join(BIN, "spoold"), "--listen", "0.0.0.0:0", "--data-dir",
                            os.path.join(self.d, "exposed")], capture_output=True, text=True,
                           timeout=20)
        self.assertEqual(p.returncode, 2)
        self.assertIn("refusing to serve 0.0.0.0:0, beyond loopback, in plaintext", p.stderr)
        self.assertIn("--allow-insecure", p.stderr)
        self.assertFalse(os.path.exists(os.path.join(self.d, "exposed")))  # nothing was opened


if __name__ == "__main__":
    unittest.main(verbosity=2)
