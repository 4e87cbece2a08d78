"""Spool's Python client: send jobs in one line, run workers with a handler function.

    import spool
    client = spool.Client("127.0.0.1:7420")
    q = client.queue("thumbnails")
    q.create(visibility_timeout=60, exist_ok=True)
    q.send({"file_id": "abc-123", "type": "resize"}, dedup_id="abc-123/resize")

    @spool.worker(client, "thumbnails", concurrency=8)
    def make_thumbnails(job: spool.Job):
        ...  # return: ack; raise: nack with backoff; raise spool.Retry(after=30): nack, 30 s

    spool.run_workers()

The asyncio API is spool.aio. See clients/python/README.md.
"""
from ._client import TLS, Client, Queue
from ._convert import Message, QueueInfo
from ._errors import (AlreadyExists, Cancelled, DeadlineExceeded, FailedPrecondition,
                      InvalidArgument, NotFound, PermissionDenied, ResourceExhausted,
                      SpoolError, Unauthenticated, Unavailable)
from ._worker import Job, Retry, Worker, run_workers, worker

__version__ = "0.1.0"

__all__ = ["Client", "Queue", "TLS", "Message", "QueueInfo", "Job", "Retry", "Worker",
           "worker", "run_workers", "SpoolError", "InvalidArgument", "NotFound",
           "AlreadyExists", "PermissionDenied", "Unauthenticated", "ResourceExhausted",
           "FailedPrecondition", "Unavailable", "DeadlineExceeded", "Cancelled"]
