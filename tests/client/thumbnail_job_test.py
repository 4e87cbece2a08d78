#!/usr/bin/python3
"""A Python client against a real spoold: the proof that "any language" holds.

Generates stubs from proto/ with protoc and grpc_python_plugin into a temporary directory,
starts spoold on a free loopback port, then walks the thumbnail job of the README: create a
queue, enqueue {"file_id": "abc-123", "type": "resize"}, lease it, ack it, and enqueue the
"done" message. Run with Debian's /usr/bin/python3, which sees python3-grpcio.
"""
import json
import os
import subprocess
import sys
import tempfile
import time
import unittest

SOURCE = os.environ.get("SPOOL_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
BIN = os.environ.get("SPOOL_BIN_DIR", os.path.join(SOURCE, "build", "bin"))


def generate_stubs(out_dir):
    def protoc(proto_path, proto):
        subprocess.run(
            ["protoc", f"--proto_path={proto_path}", f"--python_out={out_dir}",
             f"--grpc_out={out_dir}", "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin",
             proto],
            check=True)
    protoc(f"{SOURCE}/proto", f"{SOURCE}/proto/spool/v1/queue.proto")
    protoc(f"{SOURCE}/tests", f"{SOURCE}/tests/reflection.proto")
    for d in ("spool", "spool/v1"):
        open(os.path.join(out_dir, d, "__init__.py"), "a").close()
    sys.path.insert(0, out_dir)


class ThumbnailJobTest(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmp = tempfile.TemporaryDirectory()
        generate_stubs(cls.tmp.name)
        global grpc, pb, pb_grpc, duration_pb2
        import grpc
        from google.protobuf import duration_pb2
        from spool.v1 import queue_pb2 as pb
        from spool.v1 import queue_pb2_grpc as pb_grpc
        port_file = os.path.join(cls.tmp.name, "port")
        cls.server = subprocess.Popen(
            [os.path.join(BIN, "spoold"), "--listen", "127.0.0.1:0",
             "--data-dir", os.path.join(cls.tmp.name, "data"), "--port-file", port_file])
        deadline = time.time() + 20
        while not os.path.exists(port_file):
            if time.time() > deadline or cls.server.poll() is not None:
                raise RuntimeError("spoold did not start")
            time.sleep(0.05)
        with open(port_file) as f:
            port = int(f.read())
        cls.channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        cls.stub = pb_grpc.QueueServiceStub(cls.channel)

    @classmethod
    def tearDownClass(cls):
        cls.channel.close()
        cls.server.terminate()
        cls.server.wait(timeout=10)
        cls.tmp.cleanup()

    def test_thumbnail_job_end_to_end(self):
        stub = self.stub
        stub.CreateQueue(pb.CreateQueueRequest(name="thumbnails"))
        stub.CreateQueue(pb.CreateQueueRequest(name="done"))
        job = json.dumps({"file_id": "abc-123", "type": "resize"}).encode()
        sent = stub.Enqueue(pb.EnqueueRequest(
            queue="thumbnails", messages=[pb.EnqueueEntry(payload=job)]))
        self.assertEqual(len(sent.results), 1)

        leased = stub.Lease(pb.LeaseRequest(
            queue="thumbnails", max_messages=1,
            visibility_timeout=duration_pb2.Duration(seconds=60),
            wait_time=duration_pb2.Duration(seconds=5)))
        self.assertEqual(len(leased.messages), 1)
        m = leased.messages[0]
        self.assertEqual(json.loads(m.payload), {"file_id": "abc-123", "type": "resize"})
        self.assertEqual(m.message_id, sent.results[0].message_id)
        self.assertEqual(m.delivery_count, 1)

        # ... make the thumbnails, then ack and tell the notifier.
        acked = stub.Ack(pb.AckRequest(queue="thumbnails", receipts=[m.receipt]))
        self.assertEqual(acked.results[0].outcome, pb.OUTCOME_OK)
        stub.Enqueue(pb.EnqueueRequest(queue="done", messages=[pb.EnqueueEntry(
            payload=json.dumps({"file_id": "abc-123", "thumbnails": 3}).encode())]))

        q = stub.GetQueue(pb.GetQueueRequest(name="thumbnails"))
        self.assertEqual(q.stats.total, 0)
        self.assertEqual(q.stats.acked_total, 1)
        self.assertEqual(q.config.visibility_timeout.seconds, 30)  # default filled in
        self.assertEqual(stub.GetQueue(pb.GetQueueRequest(name="done")).stats.ready, 1)

    def test_server_reflection_lists_the_service(self):
        import reflection_pb2
        import reflection_pb2_grpc
        stub = reflection_pb2_grpc.ServerReflectionStub(self.channel)
        responses = stub.ServerReflectionInfo(
            iter([reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=10)
        names = {s.name for r in responses for s in r.list_services_response.service}
        self.assertIn("spool.v1.QueueService", names)
        self.assertIn("grpc.health.v1.Health", names)

    def test_errors_carry_codes_and_field_names(self):
        with self.assertRaises(grpc.RpcError) as e:
            self.stub.GetQueue(pb.GetQueueRequest(name="no-such-queue"))
        self.assertEqual(e.exception.code(), grpc.StatusCode.NOT_FOUND)
        with self.assertRaises(grpc.RpcError) as e:
            self.stub.CreateQueue(pb.CreateQueueRequest(
                name="bad", config=pb.QueueConfig(visibility_timeout=duration_pb2.Duration(seconds=0))))
        self.assertEqual(e.exception.code(), grpc.StatusCode.INVALID_ARGUMENT)
        self.assertIn("config.visibility_timeout", e.exception.details())


if __name__ == "__main__":
    unittest.main(verbosity=2)
