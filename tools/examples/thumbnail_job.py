#!/usr/bin/python3
"""The README's thumbnail job as a program: one job enqueued by a "web server", leased and acked
by a "worker", and a "done" message for the notifier. It talks to a running spoold, over
plaintext, TLS or mutual TLS, with or without a bearer token:

  tools/examples/thumbnail_job.py                                  # 127.0.0.1:7420, plaintext
  tools/examples/thumbnail_job.py --server spool.internal:7420 --tls-ca ca.pem --token tok-ops
  tools/examples/thumbnail_job.py --tls-ca ca.pem --tls-cert me.pem --tls-key me.key

Generates the Python stubs from proto/ at start (protoc and grpc_python_plugin, from Debian's
protobuf-compiler and protobuf-compiler-grpc). Run it with Debian's /usr/bin/python3, which
sees python3-grpcio. Prints one line per step; exits 0 when the job went through, 1 on a gRPC
error (its status code and message are printed), 2 on bad arguments.
"""
import argparse
import json
import os
import subprocess
import sys
import tempfile

SOURCE = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))


def load_stubs(out_dir):
    subprocess.run(["protoc", f"--proto_path={SOURCE}/proto", f"--python_out={out_dir}",
                    f"--grpc_out={out_dir}", "--plugin=protoc-gen-grpc=/usr/bin/grpc_python_plugin",
                    f"{SOURCE}/proto/spool/v1/queue.proto"], check=True)
    for d in ("spool", "spool/v1"):
        open(os.path.join(out_dir, d, "__init__.py"), "a").close()
    sys.path.insert(0, out_dir)


def channel(grpc, args):
    if not args.tls_ca:
        if args.tls_cert or args.tls_key:
            sys.exit("thumbnail_job.py: --tls-cert and --tls-key need --tls-ca")
        return grpc.insecure_channel(args.server)
    if bool(args.tls_cert) != bool(args.tls_key):
        sys.exit("thumbnail_job.py: --tls-cert and --tls-key go together")

    def read(path):
        with open(path, "rb") as f:
            return f.read()
    creds = grpc.ssl_channel_credentials(
        root_certificates=read(args.tls_ca),
        private_key=read(args.tls_key) if args.tls_key else None,
        certificate_chain=read(args.tls_cert) if args.tls_cert else None)
    return grpc.secure_channel(args.server, creds)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--server", default=os.environ.get("SPOOL_SERVER", "127.0.0.1:7420"))
    p.add_argument("--token", default=os.environ.get("SPOOL_TOKEN"),
                   help="bearer token (or SPOOL_TOKEN)")
    p.add_argument("--tls-ca", help="PEM CA that signed spoold's certificate: use TLS")
    p.add_argument("--tls-cert", help="PEM client certificate, for mutual TLS")
    p.add_argument("--tls-key", help="PEM key of --tls-cert")
    p.add_argument("--queue", default="thumbnails")
    args = p.parse_args()

    with tempfile.TemporaryDirectory() as stubs:
        load_stubs(stubs)
        import grpc
        from google.protobuf.duration_pb2 import Duration
        from spool.v1 import queue_pb2 as pb, queue_pb2_grpc

        spool = queue_pb2_grpc.QueueServiceStub(channel(grpc, args))
        auth = (("authorization", f"Bearer {args.token}"),) if args.token else ()
        q, dead = args.queue, args.queue + "-dead"
        try:
            # Once, at deploy time: the work queue, its dead-letter queue, the notifier's queue.
            spool.CreateQueue(pb.CreateQueueRequest(name=dead), metadata=auth, timeout=10)
            spool.CreateQueue(pb.CreateQueueRequest(name=q, config=pb.QueueConfig(
                visibility_timeout=Duration(seconds=60), max_deliveries=5,
                dead_letter_queue=dead)), metadata=auth, timeout=10)
            spool.CreateQueue(pb.CreateQueueRequest(name="done"), metadata=auth, timeout=10)

            # The web server: enqueue and return at once.
            job = {"file_id": "abc-123", "type": "resize"}
            r = spool.Enqueue(pb.EnqueueRequest(queue=q, messages=[pb.EnqueueEntry(
                payload=json.dumps(job).encode(), dedup_id="abc-123/resize")]),
                metadata=auth, timeout=10)
            print(f"enqueued {r.results[0].message_id}")

            # A worker: wait up to 20 s for jobs, do them, ack them, tell the notifier.
            leased = spool.Lease(pb.LeaseRequest(queue=q, max_messages=10,
                                                 wait_time=Duration(seconds=20)),
                                 metadata=auth, timeout=30)
            for m in leased.messages:
                job = json.loads(m.payload)
                print(f"leased {m.message_id} (delivery {m.delivery_count}): {json.dumps(job)}")
                # ... make the thumbnails for job["file_id"] ...
                ack = spool.Ack(pb.AckRequest(queue=q, receipts=[m.receipt]),
                                metadata=auth, timeout=10)
                print(f"acked {m.message_id}: {pb.Outcome.Name(ack.results[0].outcome)}")
                spool.Enqueue(pb.EnqueueRequest(queue="done", messages=[pb.EnqueueEntry(
                    payload=json.dumps({"file_id": job["file_id"], "thumbnails": 3}).encode())]),
                    metadata=auth, timeout=10)
                print("told the notifier")
            stats = spool.GetQueue(pb.GetQueueRequest(name=q), metadata=auth, timeout=10).stats
            print(f"{q}: {stats.total} stored, {stats.acked_total} acked in all")
        except grpc.RpcError as e:
            print(f"thumbnail_job.py: {e.code().name}: {e.details()}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
