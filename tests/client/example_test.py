#!/usr/bin/python3
"""tools/examples/thumbnail_job.py, the README's job as a program, against real spoolds: over
plaintext, with bearer tokens (none, too few rights, enough), over TLS and mutual TLS with
certificates made here by openssl. Run with Debian's /usr/bin/python3."""
import os
import subprocess
import sys
import tempfile
import time
import unittest

SOURCE = os.environ.get("SPOOL_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("SPOOL_BIN_DIR", os.path.join(SOURCE, "build", "bin"))
EXAMPLE = os.path.join(SOURCE, "tools", "examples", "thumbnail_job.py")
sys.path.insert(0, os.path.join(SOURCE, "tests"))
from certs import make_ca, make_cert  # noqa: E402


class ExampleTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        d = cls.d = cls.tmp.name
        make_ca(d, "ca")
        make_cert(d, "ca", "server")
        make_cert(d, "ca", "client")
        with open(os.path.join(d, "tokens"), "w") as f:
            f.write("tok-ops      admin,produce,consume  thumbnails*,done\n"
                    "tok-uploader produce                thumbnails*\n")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def path(self, name):
        return os.path.join(self.d, name)

    def spoold(self, *flags):
        data = tempfile.mkdtemp(dir=self.d)
        port_file = os.path.join(data, "port")
        proc = subprocess.Popen([os.path.join(BIN, "spoold"), "--listen", "127.0.0.1:0",
                                 "--data-dir", os.path.join(data, "db"),
                                 "--port-file", port_file, *flags], stderr=subprocess.DEVNULL)
        self.addCleanup(lambda: (proc.terminate(), proc.wait(timeout=20)))
        deadline = time.time() + 20
        while not os.path.exists(port_file):
            self.assertIsNone(proc.poll(), "spoold exited")
            self.assertLess(time.time(), deadline)
            time.sleep(0.02)
        with open(port_file) as f:
            return "127.0.0.1:" + f.read().strip()

    def example(self, server, *args):
        p = subprocess.run(["/usr/bin/python3", EXAMPLE, "--server", server, *args],
                           capture_output=True, text=True, timeout=60)
        return p.returncode, p.stdout, p.stderr

    def assertWentThrough(self, result):
        rc, out, err = result
        self.assertEqual(rc, 0, err)
        self.assertIn('leased', out)
        self.assertIn('"file_id": "abc-123"', out)
        self.assertIn("OUTCOME_OK", out)
        self.assertIn("thumbnails: 0 stored, 1 acked in all", out)

    def test_plaintext(self):
        self.assertWentThrough(self.example(self.spoold()))

    def test_tokens(self):
        server = self.spoold("--auth-file", self.path("tokens"))
        rc, _, err = self.example(server)
        self.assertEqual(rc, 1)
        self.assertIn("UNAUTHENTICATED", err)
        rc, _, err = self.example(server, "--token", "tok-uploader")
        self.assertEqual(rc, 1)
        self.assertIn("PERMISSION_DENIED", err)
        self.assertWentThrough(self.example(server, "--token", "tok-ops"))

    def test_tls_and_mutual_tls(self):
        server = self.spoold("--tls-cert", self.path("server.pem"),
                             "--tls-key", self.path("server.key"))
        self.assertWentThrough(self.example(server, "--tls-ca", self.path("ca.pem")))
        rc, _, err = self.example(server)  # plaintext against TLS
        self.assertEqual(rc, 1)
        self.assertIn("UNAVAILABLE", err)
        mutual = self.spoold("--tls-cert", self.path("server.pem"),
                             "--tls-key", self.path("server.key"),
                             "--tls-client-ca", self.path("ca.pem"))
        rc, _, err = self.example(mutual, "--tls-ca", self.path("ca.pem"))  # no client cert
        self.assertEqual(rc, 1)
        self.assertWentThrough(self.example(mutual, "--tls-ca", self.path("ca.pem"),
                                            "--tls-cert", self.path("client.pem"),
                                            "--tls-key", self.path("client.key")))


if __name__ == "__main__":
    unittest.main(verbosity=2)
