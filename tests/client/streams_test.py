#!/usr/bin/python3
"""The streaming RPCs from Python, through Debian's grpcio (python3-grpcio) and stubs made here
with protoc: a publisher that keeps many requests in flight on one Publish stream and reads
the answers in order, a bad request answered on the stream without ending it, and a kill -9
of spoold after answers came back (nothing answered is lost). Subscribe the same way: pushed
deliveries and acks on the stream, a kill -9 of spoold with messages outstanding (they come
back when their leases end, delivery_count one higher), and a kill -9 of the subscribing
client process (spoold releases what it held at once, not at the end of the lease). Run with
/usr/bin/python3."""
import os
import queue
import sys
import subprocess
import tempfile
import threading
import time
import unittest

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "http"))
import spoold_http  # noqa: E402


class PublishFromPython(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        spoold_http.generate_stubs(cls.tmp.name)
        from spool.v1 import queue_pb2
        cls.pb = queue_pb2

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def setUp(self):
        self.server = spoold_http.Spoold(tempfile.mkdtemp(dir=self.tmp.name)).start()
        self.addCleanup(self.server.kill)
        self.stub = self.server.grpc_stub()
        self.stub.CreateQueue(self.pb.CreateQueueRequest(name="jobs"), timeout=10)

    def requests(self, outbox):
        """Yields what the test puts in outbox until it puts None (then WritesDone)."""
        while True:
            r = outbox.get(timeout=30)
            if r is None:
                return
            yield r

    def test_many_in_flight_answered_in_order_then_a_bad_one(self):
        pb = self.pb
        outbox = queue.Queue()
        answers = self.stub.Publish(self.requests(outbox), timeout=60)
        n = 300
        for i in range(n):  # all written before the first answer is read
            outbox.put(pb.PublishRequest(queue="jobs" if i == 0 else "", sequence=i,
                                         messages=[pb.EnqueueEntry(payload=b"job %d" % i)]))
        ids = []
        for i in range(n):
            a = next(answers)
            self.assertEqual(a.sequence, i)
            self.assertEqual(a.code, 0, a.error)
            ids.append(a.results[0].message_id)
        self.assertEqual(len(set(ids)), n)
        # A request for another queue is answered INVALID_ARGUMENT (3); the stream goes on.
        outbox.put(pb.PublishRequest(queue="elsewhere", sequence=n,
                                     messages=[pb.EnqueueEntry(payload=b"x")]))
        outbox.put(pb.PublishRequest(sequence=n + 1, messages=[pb.EnqueueEntry(payload=b"y")]))
        bad, good = next(answers), next(answers)
        self.assertEqual((bad.sequence, bad.code), (n, 3))
        self.assertTrue(bad.error.startswith("queue: "), bad.error)
        self.assertEqual((good.sequence, good.code), (n + 1, 0))
        outbox.put(None)
        self.assertEqual(list(answers), [])  # the stream ends OK after WritesDone

        # Answered means durable: kill -9, restart, every answered message is there, in order.
        self.server.kill()
        self.server.start()
        stub = self.server.grpc_stub()
        leased = stub.Lease(pb.LeaseRequest(queue="jobs", max_messages=1000), timeout=10)
        self.assertEqual([m.payload for m in leased.messages],
                         [b"job %d" % i for i in range(n)] + [b"y"])

    def test_unknown_queue_ends_the_stream_not_found(self):
        import grpc
        pb = self.pb
        answers = self.stub.Publish(
            iter([pb.PublishRequest(queue="nope", messages=[pb.EnqueueEntry(payload=b"x")])]),
            timeout=30)
        with self.assertRaises(grpc.RpcError) as e:
            list(answers)
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)
        self.assertIn('"nope"', e.exception.details())


# A subscriber in its own process: subscribes to "jobs" with a 60 s visibility timeout, prints
# the message ids it was pushed, then waits to be killed.
SUBSCRIBER = r"""
import sys, threading, time
sys.path.insert(0, sys.argv[1])
import grpc
from spool.v1 import queue_pb2 as pb, queue_pb2_grpc
from google.protobuf import duration_pb2
stub = queue_pb2_grpc.QueueServiceStub(grpc.insecure_channel("127.0.0.1:" + sys.argv[2]))
stop = threading.Event()
def requests():
    yield pb.SubscribeRequest(queue="jobs", max_outstanding=50,
                              visibility_timeout=duration_pb2.Duration(seconds=60))
    stop.wait(120)
seen = 0
for r in stub.Subscribe(requests(), timeout=120):
    for m in r.messages:
        print(m.message_id, flush=True)
        seen += 1
"""


class SubscribeFromPython(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        spoold_http.generate_stubs(cls.tmp.name)
        from spool.v1 import queue_pb2
        from google.protobuf import duration_pb2
        cls.pb = queue_pb2
        cls.duration = duration_pb2.Duration

    @classmethod
    def tearDownClass(cls):
        cls.tmp.cleanup()

    def setUp(self):
        self.server = spoold_http.Spoold(tempfile.mkdtemp(dir=self.tmp.name)).start()
        self.addCleanup(self.server.kill)
        self.stub = self.server.grpc_stub()
        self.stub.CreateQueue(self.pb.CreateQueueRequest(name="jobs"), timeout=10)

    def enqueue(self, n):
        pb = self.pb
        self.stub.Enqueue(pb.EnqueueRequest(
            queue="jobs", messages=[pb.EnqueueEntry(payload=b"job %d" % i) for i in range(n)]),
            timeout=10)

    def lease_all(self, stub, n, within):
        """Leases until n messages came back or `within` seconds passed; returns them."""
        pb = self.pb
        got, deadline = [], time.time() + within
        while len(got) < n and time.time() < deadline:
            r = stub.Lease(pb.LeaseRequest(queue="jobs", max_messages=1000,
                                           wait_time=self.duration(seconds=1)), timeout=10)
            got.extend(r.messages)
        return got

    def test_pushed_acked_on_the_stream_and_kill_9_of_spoold_redelivers(self):
        pb = self.pb
        outbox = queue.Queue()
        outbox.put(pb.SubscribeRequest(queue="jobs", max_outstanding=10,
                                       visibility_timeout=self.duration(seconds=4)))
        responses = self.stub.Subscribe(iter(outbox.get, None), timeout=60)
        self.enqueue(15)
        pushed = []
        while len(pushed) < 10:  # the credit: ten, then nothing until some are settled
            pushed.extend(next(responses).messages)
        self.assertEqual(len(pushed), 10)
        self.assertEqual([m.delivery_count for m in pushed], [1] * 10)
        # Ack three on the stream: answered in ack_results, and three more are pushed.
        outbox.put(pb.SubscribeRequest(ack=[m.receipt for m in pushed[:3]]))
        acked, more = [], []
        while not acked or len(more) < 3:
            r = next(responses)
            acked.extend(r.ack_results)
            more.extend(r.messages)
        self.assertEqual([o.outcome for o in acked], [pb.OUTCOME_OK] * 3)
        self.assertEqual(len(more), 3)
        outstanding = {m.message_id for m in pushed[3:] + more}
        self.assertEqual(len(outstanding), 10)

        # kill -9 with ten outstanding: none is lost, none is leased again before its lease
        # ends, and each comes back with delivery_count 2 (the five never pushed: 1).
        killed_at = time.time()
        self.server.kill()
        outbox.put(None)
        self.server.start()
        stub = self.server.grpc_stub()
        early = stub.Lease(pb.LeaseRequest(queue="jobs", max_messages=1000), timeout=10)
        self.assertEqual(len(early.messages), 2)  # the two never pushed
        self.assertEqual([m.delivery_count for m in early.messages], [1, 1])
        if time.time() - killed_at < 1.5:  # each lease had at least 2 s left at the kill
            self.assertEqual(len(stub.Lease(pb.LeaseRequest(queue="jobs", max_messages=1000),
                                        timeout=10).messages), 0)
        back = self.lease_all(stub, 10, within=15)
        self.assertEqual({m.message_id for m in back}, outstanding)
        self.assertEqual([m.delivery_count for m in back], [2] * 10)

    def test_kill_9_of_the_subscriber_releases_its_messages_at_once(self):
        pb = self.pb
        self.enqueue(20)
        child = subprocess.Popen(
            [sys.executable, "-c", SUBSCRIBER, self.tmp.name, str(self.server.grpc_port)],
            stdout=subprocess.PIPE, text=True)
        self.addCleanup(lambda: child.poll() is None and child.kill())
        ids = [child.stdout.readline().strip() for _ in range(20)]
        self.assertEqual(len(set(ids)), 20)
        self.assertEqual(len(self.stub.Lease(pb.LeaseRequest(queue="jobs"), timeout=10).messages),
                         0)  # all twenty held by the subscriber
        child.kill()
        child.wait(timeout=10)
        child.stdout.close()
        started = time.time()
        back = self.lease_all(self.stub, 20, within=10)  # not the 60 s of the lease
        self.assertEqual(sorted(m.message_id for m in back), sorted(ids))
        self.assertEqual([m.delivery_count for m in back], [2] * 20)
        self.assertLess(time.time() - started, 10)


if __name__ == "__main__":
    unittest.main()
