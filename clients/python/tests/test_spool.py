#!/usr/bin/python3
"""The Python library against real spoold processes on 127.0.0.1 (Debian's /usr/bin/python3,
python3-grpcio). Needs the assembled package (build/python, the python_client target) on
PYTHONPATH, or SPOOL_PYTHON_DIR; spoold from SPOOL_BIN_DIR (build/bin)."""
import asyncio
import os
import re
import signal
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
SOURCE = os.path.abspath(os.path.join(HERE, "..", "..", ".."))
PYTHON_DIR = os.environ.get("SPOOL_PYTHON_DIR", os.path.join(SOURCE, "build", "python"))
sys.path.insert(0, PYTHON_DIR)
sys.path.insert(0, os.path.join(SOURCE, "tests", "http"))
sys.path.insert(0, os.path.join(SOURCE, "tests"))
import spool  # noqa: E402
import spool.aio  # noqa: E402
import spoold_http  # noqa: E402
from certs import make_ca, make_cert  # noqa: E402


def wait_for(predicate, timeout, what):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.02)


class ServerCase(unittest.TestCase):
    """A fresh spoold per test, on a fixed port so that a restart keeps its address."""
    extra_args = ()

    def setUp(self):
        self.tmp = tempfile.TemporaryDirectory()
        self.addCleanup(self.tmp.cleanup)
        self.port = spoold_http.free_port()
        self.server = spoold_http.Spoold(os.path.join(self.tmp.name, "data"),
                                         self.extra_args, listen=f"127.0.0.1:{self.port}")
        self.server.start()
        self.addCleanup(self.server.kill)
        self.target = f"127.0.0.1:{self.port}"
        self.client = spool.Client(self.target, timeout=10)
        self.addCleanup(self.client.close)

    def stream_requests(self, method):
        _, _, body = self.server.request("GET", "/metrics")
        m = re.search(r'^spool_stream_requests_total\{method="%s"\} (\S+)$' % method,
                      body.decode(), re.M)
        return float(m.group(1)) if m else 0.0

    def worker_process(self, module_source, *args):
        """python3 -m spool worker jobmod:handle in a child process (its own process group)."""
        path = os.path.join(self.tmp.name, "jobmod.py")
        with open(path, "w") as f:
            f.write(textwrap.dedent(module_source))
        env = dict(os.environ, PYTHONPATH=PYTHON_DIR)
        with open(os.path.join(self.tmp.name, "worker.log"), "ab") as log:
            p = subprocess.Popen(["/usr/bin/python3", "-m", "spool", "--server", self.target,
                                  "worker", "jobmod:handle", *args], cwd=self.tmp.name,
                                 env=env, stderr=log)
        self.addCleanup(lambda: p.poll() is None and (p.kill(), p.wait()))
        return p

    def lines(self, name):
        path = os.path.join(self.tmp.name, name)
        if not os.path.exists(path):
            return []
        with open(path) as f:
            return f.read().split()


class Producing(ServerCase):
    def test_round_trip_json_bytes_str_and_attributes(self):
        q = self.client.queue("jobs")
        info = q.create(visibility_timeout=30, exist_ok=True)
        self.assertEqual(info.config["visibility_timeout"], 30.0)
        self.assertEqual(q.create(exist_ok=True).name, "jobs")  # exist_ok: no error
        with self.assertRaises(spool.AlreadyExists):  # the same name with other settings
            q.create(visibility_timeout=99)
        self.assertEqual(q.create(visibility_timeout=99, exist_ok=True).config[
            "visibility_timeout"], 30.0)  # exist_ok returns the queue as it is
        ids = [q.send({"file_id": "abc-123", "type": "resize"}, dedup_id="abc-123/resize"),
               q.send(b"\x00\xffraw", attributes={"kind": "raw"}), q.send("text é")]
        self.assertEqual(len(set(ids)), 3)
        self.assertEqual(q.send({"other": 1}, dedup_id="abc-123/resize"), ids[0])  # dedup
        got = q.lease(10, wait=1)
        self.assertEqual([m.id for m in got], ids)
        self.assertEqual(got[0].json(), {"file_id": "abc-123", "type": "resize"})
        self.assertEqual(got[1].payload, b"\x00\xffraw")
        self.assertEqual(got[1].attributes, {"kind": "raw"})
        self.assertEqual(got[2].text(), "text é")
        self.assertEqual(got[0].delivery_count, 1)
        self.assertEqual(q.ack(*got), ["OK"] * 3)
        self.assertEqual(q.ack(got[0]), ["OK"])  # acking again is harmless
        self.assertEqual(q.nack("not a receipt"), ["INVALID_RECEIPT"])
        self.assertEqual(q.info().stats["total"], 0)

    def test_errors_are_the_librarys_and_name_the_field(self):
        with self.assertRaises(spool.NotFound) as e:
            self.client.queue("nowhere").send(b"x")
        self.assertIn('"nowhere"', e.exception.message)
        with self.assertRaises(spool.InvalidArgument) as e:
            self.client.queue("jobs").create(visibility_timeout=0.5)
        self.assertIn("visibility_timeout", str(e.exception))
        with self.assertRaises(TypeError):
            self.client.queue("jobs").send(object())
        self.assertEqual(self.client.list_queues(), [])  # nothing was half-created

    def test_send_async_batches_on_one_publish_stream(self):
        q = self.client.queue("jobs")
        q.create()
        before = self.stream_requests("Publish")
        futures, lock = [], threading.Lock()

        def produce(k):
            mine = [q.send_async({"n": k * 1000 + i}) for i in range(500)]
            with lock:
                futures.extend(mine)
        threads = [threading.Thread(target=produce, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        q.flush(timeout=30)
        ids = [f.result(timeout=0) for f in futures]
        self.assertEqual(len(set(ids)), 2000)
        requests = self.stream_requests("Publish") - before
        # 2,000 sends made at once become a few requests (up to 1,000 each), not 2,000.
        self.assertGreaterEqual(requests, 2)
        self.assertLess(requests, 200, f"{requests} Publish requests for 2000 sends")
        self.assertEqual(q.info().stats["ready"], 2000)
        # One at a time (each waited for) is one request each: the linger is short.
        before = self.stream_requests("Publish")
        for i in range(5):
            q.send_async(b"one").result(timeout=10)
        self.assertEqual(self.stream_requests("Publish") - before, 5)

    def test_send_async_error_fails_its_futures(self):
        f = self.client.queue("nowhere").send_async(b"x")
        with self.assertRaises(spool.NotFound):
            f.result(timeout=10)
        q = self.client.queue("jobs")
        q.create(max_payload_bytes=1024)
        big = q.send_async(b"x" * 2000)
        with self.assertRaises(spool.InvalidArgument):
            big.result(timeout=10)
        self.assertTrue(q.send_async(b"fine").result(timeout=10))  # the stream goes on

    def test_sends_retried_across_a_restart_never_duplicate(self):
        q = self.client.queue("jobs")
        q.create()
        self.server.kill()
        restarted = threading.Timer(1.0, self.server.start)
        restarted.start()
        self.addCleanup(restarted.cancel)
        msg_id = q.send(b"while down")  # retried with backoff until spoold is back
        restarted.join()
        futures = [q.send_async(b"async %d" % i) for i in range(300)]
        self.server.kill()  # some of these are in flight, answered or not
        self.server.start()
        q.flush(timeout=30)
        ids = [f.result(timeout=0) for f in futures]
        self.assertEqual(len(set(ids)), 300)
        got = q.lease(1000, wait=1)
        self.assertEqual(len(got), 301)  # each once: a resent request repeated its dedup ids
        self.assertEqual(got[0].id, msg_id)

    def test_cli(self):
        env = dict(os.environ, PYTHONPATH=PYTHON_DIR)
        help_ = subprocess.run(["/usr/bin/python3", "-m", "spool", "--help"], env=env,
                               capture_output=True, text=True, timeout=30)
        self.assertEqual(help_.returncode, 0)
        self.assertIn("worker", help_.stdout)
        self.client.queue("jobs").create()
        sent = subprocess.run(["/usr/bin/python3", "-m", "spool", "--server", self.target,
                               "send", "jobs"], input="a\nb\nc\n", env=env,
                              capture_output=True, text=True, timeout=30)
        self.assertEqual(sent.returncode, 0, sent.stderr)
        self.assertEqual(len(sent.stdout.split()), 3)
        self.assertEqual([m.text() for m in self.client.queue("jobs").lease(5)],
                         ["a", "b", "c"])
        bad = subprocess.run(["/usr/bin/python3", "-m", "spool", "--server", self.target,
                              "send", "nowhere", "x"], env=env, capture_output=True,
                             text=True, timeout=30)
        self.assertEqual(bad.returncode, 1)
        self.assertIn("NOT_FOUND", bad.stderr)


class Workers(ServerCase):
    def run_worker(self, handler, **options):
        w = spool.Worker(self.client, "jobs", handler, **options)
        w.start()
        self.addCleanup(w.stop, 5)
        return w

    def test_acks_on_success(self):
        q = self.client.queue("jobs")
        q.create()
        q.send_batch([{"n": i} for i in range(50)])
        done = []
        w = self.run_worker(lambda job: done.append(job.json()["n"]), concurrency=4)
        wait_for(lambda: w.stats()["acked"] == 50, 20, "50 acks")
        self.assertEqual(sorted(done), list(range(50)))
        self.assertEqual(q.info().stats["total"], 0)
        self.assertEqual(w.stats()["succeeded"], 50)

    def test_exception_nacks_with_backoff_and_redelivers(self):
        q = self.client.queue("jobs")
        q.create()
        q.send(b"flaky")
        seen = []

        def handler(job):
            seen.append((job.delivery_count, time.monotonic()))
            if job.delivery_count == 1:
                raise RuntimeError("first try fails")
        errors = []
        w = self.run_worker(handler, retry_backoff=(1, 300),
                            on_error=lambda job, e: errors.append((job.id, repr(e))))
        wait_for(lambda: w.stats()["acked"] == 1, 20, "the second delivery's ack")
        self.assertEqual([d for d, _ in seen], [1, 2])
        self.assertGreaterEqual(seen[1][1] - seen[0][1], 0.9)  # backoff 1 s at delivery 1
        self.assertEqual(w.stats()["failed"], 1)
        self.assertEqual(len(errors), 1)
        self.assertIn("first try fails", errors[0][1])

    def test_retry_after(self):
        q = self.client.queue("jobs")
        q.create()
        q.send(b"later")
        seen = []

        def handler(job):
            seen.append(time.monotonic())
            if len(seen) == 1:
                raise spool.Retry(after=2)
        w = self.run_worker(handler)
        wait_for(lambda: w.stats()["acked"] == 1, 20, "the retried job's ack")
        self.assertGreaterEqual(seen[1] - seen[0], 1.9)
        self.assertEqual((w.stats()["retried"], w.stats()["failed"]), (1, 0))

    def test_a_job_longer_than_three_visibility_timeouts_is_not_redelivered(self):
        q = self.client.queue("jobs")
        q.create(visibility_timeout=1)
        q.send(b"slow")
        runs = []
        w = self.run_worker(lambda job: (runs.append(job.delivery_count), time.sleep(3.5)),
                            concurrency=2)
        wait_for(lambda: w.stats()["acked"] == 1, 20, "the slow job's ack")
        self.assertEqual(runs, [1])
        self.assertEqual(q.info().stats["total"], 0)

    def test_per_job_timeout_nacks_and_another_thread_goes_on(self):
        q = self.client.queue("jobs")
        q.create()
        q.send(b"hangs once")
        q.send(b"quick")
        runs = []

        def handler(job):
            runs.append((job.payload, job.delivery_count))
            if job.payload == b"hangs once" and job.delivery_count == 1:
                time.sleep(3)
        w = self.run_worker(handler, concurrency=1, timeout=0.5, retry_backoff=(0.2, 1))
        wait_for(lambda: w.stats()["acked"] == 2, 20, "both acked")
        s = w.stats()
        self.assertEqual((s["timed_out"], s["succeeded"]), (1, 2))
        # concurrency 1, yet "quick" ran while the hung thread slept: a thread took its place.
        self.assertIn((b"quick", 1), runs)
        self.assertIn((b"hangs once", 2), runs)

    def test_poison_job_ends_in_the_dead_letter_queue(self):
        dead = self.client.queue("jobs-dead")
        dead.create()
        q = self.client.queue("jobs")
        q.create(max_deliveries=3, dead_letter_queue="jobs-dead")
        q.send(b"poison")

        def handler(job):
            raise ValueError("cannot parse")
        w = self.run_worker(handler, retry_backoff=(0.1, 0.1), on_error=lambda *_: None)
        wait_for(lambda: dead.info().stats["ready"] == 1, 20, "the dead-lettered job")
        self.assertEqual(w.stats()["failed"], 3)
        self.assertEqual(q.info().stats["total"], 0)

    def test_unknown_queue_stops_the_worker_with_its_error(self):
        w = spool.Worker(self.client, "nowhere", lambda job: None)
        with self.assertRaises(spool.NotFound):
            spool.run_workers(w)

    def test_spoold_killed_and_restarted_under_a_running_worker(self):
        q = self.client.queue("jobs")
        q.create(visibility_timeout=2)
        n = 40
        q.send_batch([b"%d" % i for i in range(n)])
        done, lock = [], threading.Lock()

        def handler(job):
            time.sleep(0.05)
            with lock:
                done.append(job.text())
        w = self.run_worker(handler, concurrency=4, on_error=lambda *_: None)
        wait_for(lambda: len(done) >= 10, 20, "10 jobs done")
        self.server.kill()
        time.sleep(0.3)
        self.server.start()
        def drained():
            try:
                return q.info().stats["total"] == 0
            except spool.Unavailable:
                return False
        wait_for(drained, 30, "the queue to drain after the restart")
        s = w.stats()
        self.assertGreaterEqual(s["reconnects"], 1)
        self.assertEqual(set(done), {str(i) for i in range(n)})  # nothing lost
        # Every message was acked exactly once (the stored counter survives the restart);
        # jobs done twice (at-least-once) are those whose ack the crash lost.
        self.assertEqual(q.info().stats["acked_total"], n)
        self.assertEqual(len(done) - n, s["ack_lost"] + (s["succeeded"] - s["acked"]
                                                         - s["ack_lost"]))

    def test_worker_killed_mid_job_is_redone_by_another_within_a_second(self):
        q = self.client.queue("jobs")
        q.create(visibility_timeout=60)
        q.send(b"the job")
        p = self.worker_process("""
            import time
            def handle(job):
                open("started", "a").write(job.id + "\\n")
                time.sleep(60)
        """, "--queue", "jobs")
        wait_for(lambda: self.lines("started"), 20, "the job to start")
        p.send_signal(signal.SIGKILL)
        p.wait()
        killed = time.monotonic()
        taken = []
        w = self.run_worker(lambda job: taken.append(time.monotonic()))
        wait_for(lambda: taken, 5, "another worker to take the job")
        self.assertLess(taken[0] - killed, 1.0)
        wait_for(lambda: w.stats()["acked"] == 1, 5, "its ack")

    def test_sigterm_finishes_running_jobs_releases_the_rest_exits_0(self):
        q = self.client.queue("jobs")
        q.create(visibility_timeout=60)
        q.send_batch([b"%d" % i for i in range(10)])
        p = self.worker_process("""
            import time
            def handle(job):
                open("started", "a").write(job.text() + "\\n")
                time.sleep(1.5)
                open("finished", "a").write(job.text() + "\\n")
        """, "--queue", "jobs", "--concurrency", "2", "--max-outstanding", "4")
        wait_for(lambda: len(self.lines("started")) == 2, 20, "two jobs to start")
        p.send_signal(signal.SIGTERM)
        self.assertEqual(p.wait(timeout=20), 0)
        self.assertEqual(sorted(self.lines("finished")), sorted(self.lines("started")))
        stats = q.info().stats
        # The two finished were acked; the two held but not started are visible at once.
        self.assertEqual((stats["total"], stats["ready"], stats["leased"]), (8, 8, 0))


class Asyncio(ServerCase):
    def test_send_and_worker(self):
        async def main():
            async with spool.aio.AsyncClient(self.target) as client:
                q = client.queue("jobs")
                await q.create(exist_ok=True)
                ids = [await q.send({"n": i}) for i in range(5)]
                self.assertEqual(len(set(ids)), 5)
                seen = []

                async def handle(job):
                    seen.append((job.json()["n"], job.delivery_count))
                    await asyncio.sleep(0.01)
                    if job.json()["n"] == 0 and job.delivery_count == 1:
                        raise RuntimeError("once")
                w = q.worker(handle, concurrency=3, retry_backoff=(0.3, 1),
                             on_error=lambda *_: None)
                await w.start()
                for _ in range(500):
                    if w.stats()["acked"] == 5:
                        break
                    await asyncio.sleep(0.02)
                await w.stop()
                self.assertEqual(w.stats()["acked"], 5)
                self.assertEqual(w.stats()["failed"], 1)
                self.assertIn((0, 2), seen)
                self.assertEqual((await q.info()).stats["total"], 0)
                with self.assertRaises(spool.NotFound):
                    await client.queue("nowhere").send(b"x")
        asyncio.run(main())


class AuthAndTLS(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        d = cls.d = cls.tmp.name
        make_ca(d, "ca")
        make_cert(d, "ca", "server")
        make_cert(d, "ca", "client")
        with open(os.path.join(d, "tokens"), "w") as f:
            f.write("tok-ops      admin,produce,consume  *\n"
                    "tok-uploader produce                jobs\n")

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def spoold(self, *flags):
        s = spoold_http.Spoold(tempfile.mkdtemp(dir=self.d) + "/data", flags).start()
        self.addCleanup(s.kill)
        return f"127.0.0.1:{s.grpc_port}"

    def p(self, name):
        return os.path.join(self.d, name)

    def test_tokens(self):
        target = self.spoold("--auth-file", self.p("tokens"))
        with self.assertRaises(spool.Unauthenticated):
            spool.Client(target).queue("jobs").create()
        ops = spool.Client(target, token="tok-ops")
        ops.queue("jobs").create()
        uploader = spool.Client(target, token="tok-uploader")
        self.assertTrue(uploader.queue("jobs").send(b"x"))
        self.assertTrue(uploader.queue("jobs").send_async(b"y").result(timeout=10))
        with self.assertRaises(spool.PermissionDenied):
            uploader.queue("jobs").lease()
        w = spool.Worker(uploader, "jobs", lambda job: None)
        with self.assertRaises(spool.PermissionDenied):
            spool.run_workers(w)
        done = []
        w = spool.Worker(ops, "jobs", lambda job: done.append(job.payload)).start()
        wait_for(lambda: len(done) == 2, 10, "the ops worker")
        w.stop()

    def test_tls_and_mutual_tls(self):
        target = self.spoold("--tls-cert", self.p("server.pem"), "--tls-key", self.p("server.key"))
        c = spool.Client(target, tls=spool.TLS(ca=self.p("ca.pem")))
        c.queue("jobs").create()
        self.assertTrue(c.queue("jobs").send(b"over tls"))
        with self.assertRaises(spool.Unavailable):
            spool.Client(target, retry_for=0, timeout=3).queue("jobs").send(b"plaintext")
        mutual = self.spoold("--tls-cert", self.p("server.pem"), "--tls-key",
                             self.p("server.key"), "--tls-client-ca", self.p("ca.pem"))
        with self.assertRaises(spool.Unavailable):
            spool.Client(mutual, tls=spool.TLS(ca=self.p("ca.pem")), retry_for=0,
                         timeout=3).queue("jobs").create()
        with open(self.p("client.key"), "rb") as f:
            key = f.read()  # PEM bytes work as well as paths
        m = spool.Client(mutual, tls=spool.TLS(ca=self.p("ca.pem"), cert=self.p("client.pem"),
                                               key=key))
        m.queue("jobs").create()
        self.assertEqual(len(m.queue("jobs").send_batch([b"a", b"b"])), 2)
        with self.assertRaises(ValueError):
            spool.TLS(ca=self.p("ca.pem"), cert=self.p("client.pem")).credentials()


if __name__ == "__main__":
    unittest.main(verbosity=2)
