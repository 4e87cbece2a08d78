#!/usr/bin/python3
"""The streaming RPCs from Python, through Debian's grpcio (python3-grpcio) and stubs made here
with protoc: a publisher that keeps many requests in flight on one Publish stream and reads
the answers in order, a bad request answered on the stream without ending it, and a kill -9
of spoold after answers came back (nothing answered is lost). Run with /usr/bin/python3."""
import os
import queue
import sys
import tempfile
import threading
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


if __name__ == "__main__":
    unittest.main()
