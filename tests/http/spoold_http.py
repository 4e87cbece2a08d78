"""A spoold with its HTTP listener on, for the tests of the HTTP surface (tests/http/).

Starts build/bin/spoold on free loopback ports (gRPC and HTTP), reads both from the port file
(line 1 gRPC, line 2 HTTP), and gives plain-socket HTTP helpers. Debian's /usr/bin/python3.
"""
import http.client
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

SOURCE = os.environ.get("SPOOL_SOURCE_DIR",
                        os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..")))
BIN = os.environ.get("SPOOL_BIN_DIR", os.path.join(SOURCE, "build", "bin"))


def generate_stubs(out_dir):
    """spool.v1 stubs into out_dir (protoc + grpc_python_plugin), importable afterwards."""
    subprocess.run(
        ["protoc", f"--proto_path={SOURCE}/proto", f"--python_out={out_dir}",
         f"--grpc_out={out_dir}", "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin",
         f"{SOURCE}/proto/spool/v1/queue.proto"],
        check=True)
    for d in ("spool", "spool/v1"):
        open(os.path.join(out_dir, d, "__init__.py"), "a").close()
    if out_dir not in sys.path:
        sys.path.insert(0, out_dir)


class Spoold:
    """One spoold process on data_dir; start() again after stop() or kill() reuses the data."""

    def __init__(self, data_dir, extra_args=(), listen="127.0.0.1:0"):
        """listen: the gRPC address; a fixed port keeps it across restarts (clients that
        reconnect), port 0 takes a free one at each start."""
        self.data_dir = data_dir
        self.listen = listen
        self.extra_args = list(extra_args)
        self.proc = None
        self.grpc_port = self.http_port = None
        self.log_path = data_dir + ".log"

    def start(self, timeout=30):
        port_file = self.data_dir + ".port"
        if os.path.exists(port_file):
            os.remove(port_file)
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [os.path.join(BIN, "spoold"), "--listen", self.listen, "--http-listen",
             "127.0.0.1:0", "--data-dir", self.data_dir, "--port-file", port_file,
             *self.extra_args],
            stdout=self.log, stderr=self.log)
        deadline = time.time() + timeout
        while True:
            if os.path.exists(port_file):
                with open(port_file) as f:
                    lines = f.read().split()
                if len(lines) >= 2:
                    self.grpc_port, self.http_port = int(lines[0]), int(lines[1])
                    return self
            if self.proc.poll() is not None or time.time() > deadline:
                self.kill()  # not left running when it did not start in time
                raise RuntimeError(f"spoold did not start; log:\n{self.read_log()}")
            time.sleep(0.05)

    def read_log(self):
        with open(self.log_path, "rb") as f:
            return f.read().decode(errors="replace")

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            self.proc.wait(timeout=30)
        self.log.close()

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        self.log.close()

    def request(self, method, path, body=None, headers=None, timeout=10):
        """(status, headers dict with lower-case names, body bytes)."""
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        try:
            if isinstance(body, (dict, list)):
                body = json.dumps(body).encode()
            conn.request(method, path, body=body, headers=headers or {})
            r = conn.getresponse()
            return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
        finally:
            conn.close()

    def get_json(self, path, headers=None):
        status, _, body = self.request("GET", path, headers=headers)
        return status, json.loads(body)

    def grpc_stub(self):
        import grpc
        from spool.v1 import queue_pb2_grpc
        channel = grpc.insecure_channel(f"127.0.0.1:{self.grpc_port}")
        return queue_pb2_grpc.QueueServiceStub(channel)


def free_port():
    """A loopback port free now (for a server that must keep its port across restarts)."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def temp_spoold(extra_args=()):
    """A Spoold in a fresh temporary directory (kept on the object as .tmp)."""
    tmp = tempfile.TemporaryDirectory()
    s = Spoold(os.path.join(tmp.name, "data"), extra_args)
    s.tmp = tmp
    return s
