"""The blocking client: Client (one channel), Queue (one queue's operations), TLS."""
from __future__ import annotations

import os
import random
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import grpc

from . import _errors
from ._convert import (Message, QueueInfo, Seconds, duration, enqueue_requests, entry,
                       queue_config)
from .v1 import queue_pb2 as pb
from .v1 import queue_pb2_grpc as pb_grpc

PemSource = Union[str, bytes, os.PathLike]

# A gRPC message of up to 1000 payloads of 4 MiB at most each; spoold's own limit is 64 MiB.
# Reconnects start at 100 ms and back off to 2 s at most (gRPC's defaults, 1 s to 120 s, would
# leave a worker idle for minutes after a long spoold restart).
_CHANNEL_OPTIONS = [("grpc.max_receive_message_length", 64 << 20),
                    ("grpc.max_send_message_length", 64 << 20),
                    ("grpc.initial_reconnect_backoff_ms", 100),
                    ("grpc.min_reconnect_backoff_ms", 100),
                    ("grpc.max_reconnect_backoff_ms", 2000)]


def _read_pem(source: Optional[PemSource]) -> Optional[bytes]:
    """PEM bytes as given, or read from a path (str or PathLike)."""
    if source is None or isinstance(source, bytes):
        return source
    with open(source, "rb") as f:
        return f.read()


@dataclass
class TLS:
    """TLS to spoold: ca verifies its certificate (None: the system's roots); cert and key
    together make it mutual TLS. Each is PEM bytes or a file path."""
    ca: Optional[PemSource] = None
    cert: Optional[PemSource] = None
    key: Optional[PemSource] = None

    def credentials(self) -> grpc.ChannelCredentials:
        if (self.cert is None) != (self.key is None):
            raise ValueError("tls: cert and key go together (mutual TLS needs both)")
        return grpc.ssl_channel_credentials(root_certificates=_read_pem(self.ca),
                                            private_key=_read_pem(self.key),
                                            certificate_chain=_read_pem(self.cert))


def _backoff(attempt: int, base: float = 0.05, cap: float = 2.0) -> float:
    """Full-jitter exponential backoff for reconnects and retried sends."""
    return random.uniform(0, min(cap, base * (2 ** attempt)))


class Client:
    """A connection to one spoold. Thread-safe; share one per process.

    target: "host:port". token: a bearer token of spoold's --auth-file. tls: a TLS, or None
    for plaintext. timeout: the default deadline of each call, in seconds. retry_for: how long
    a send retries while spoold is unavailable (each retry carries the same dedup id, so a
    retried send never enqueues twice); 0 turns retrying off.
    """

    def __init__(self, target: str = "127.0.0.1:7420", token: Optional[str] = None,
                 tls: Optional[TLS] = None, timeout: float = 30.0, retry_for: float = 30.0,
                 options: Sequence[Tuple[str, Any]] = ()):
        self.target = target
        self.timeout = timeout
        self.retry_for = retry_for
        opts = _CHANNEL_OPTIONS + list(options)
        if tls is not None:
            self._channel = grpc.secure_channel(target, tls.credentials(), options=opts)
        else:
            self._channel = grpc.insecure_channel(target, options=opts)
        self.metadata: Tuple[Tuple[str, str], ...] = (
            (("authorization", f"Bearer {token}"),) if token else ())
        self.stub = pb_grpc.QueueServiceStub(self._channel)
        self._queues: dict = {}
        self._lock = threading.Lock()

    def queue(self, name: str) -> "Queue":
        """The Queue object for name (the same object each time; nothing is sent)."""
        with self._lock:
            q = self._queues.get(name)
            if q is None:
                q = self._queues[name] = Queue(self, name)
            return q

    def call(self, method: str, request: Any, timeout: Optional[float] = None) -> Any:
        """One unary call; a failure raises the library's exception for its status."""
        try:
            return getattr(self.stub, method)(request, timeout=timeout or self.timeout,
                                              metadata=self.metadata)
        except grpc.RpcError as e:
            raise _errors.from_rpc_error(e) from None

    def call_retrying(self, method: str, request: Any) -> Any:
        """call(), retried with backoff while the answer is UNAVAILABLE, for retry_for seconds.
        Only for requests that are safe to repeat (sends carry dedup ids)."""
        give_up = time.monotonic() + self.retry_for
        attempt = 0
        while True:
            try:
                return self.call(method, request)
            except _errors.Unavailable:
                if time.monotonic() >= give_up:
                    raise
                time.sleep(_backoff(attempt))
                attempt += 1

    def list_queues(self, prefix: str = "") -> List[QueueInfo]:
        """Every queue whose name starts with prefix, all pages."""
        out: List[QueueInfo] = []
        token = ""
        while True:
            r = self.call("ListQueues", pb.ListQueuesRequest(prefix=prefix, page_size=1000,
                                                             page_token=token))
            out.extend(QueueInfo.from_proto(q) for q in r.queues)
            token = r.next_page_token
            if not token:
                return out

    def wait_ready(self, timeout: float = 10.0) -> None:
        """Blocks until the channel is connected; Unavailable after timeout seconds."""
        try:
            grpc.channel_ready_future(self._channel).result(timeout=timeout)
        except grpc.FutureTimeoutError:
            raise _errors.Unavailable(f"spoold at {self.target} not reachable in {timeout} s")

    def close(self) -> None:
        """Flushes every queue's pending send_async, then closes the channel."""
        with self._lock:
            queues = list(self._queues.values())
        for q in queues:
            q.close()
        self._channel.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class Queue:
    """One queue's operations. Get it from Client.queue(name)."""

    def __init__(self, client: Client, name: str):
        self.client = client
        self.name = name
        self._publisher = None
        self._publisher_lock = threading.Lock()

    # --- administration ---

    def create(self, *, exist_ok: bool = False, **config: Any) -> QueueInfo:
        """Creates the queue. Settings (all optional): visibility_timeout, delay, retention,
        dedup_window (seconds or timedelta), max_deliveries, dead_letter_queue,
        max_payload_bytes, max_depth. exist_ok: an existing queue is returned as it is (its
        settings are not changed; use update() for that)."""
        request = pb.CreateQueueRequest(name=self.name, config=queue_config(**config))
        try:
            return QueueInfo.from_proto(self.client.call("CreateQueue", request))
        except _errors.AlreadyExists:
            if not exist_ok:
                raise
            return self.info()

    def info(self) -> QueueInfo:
        """Settings and counts (GetQueue)."""
        return QueueInfo.from_proto(self.client.call("GetQueue",
                                                     pb.GetQueueRequest(name=self.name)))

    def update(self, **config: Any) -> QueueInfo:
        """Replaces the whole config with these settings (unset ones take their defaults)."""
        request = pb.UpdateQueueRequest(name=self.name, config=queue_config(**config))
        return QueueInfo.from_proto(self.client.call("UpdateQueue", request))

    def delete(self) -> None:
        self.client.call("DeleteQueue", pb.DeleteQueueRequest(name=self.name))

    def purge(self) -> int:
        """Removes every message; returns how many."""
        return self.client.call("PurgeQueue", pb.PurgeQueueRequest(name=self.name)).purged

    # --- producing ---

    def send(self, payload: Any, *, attributes: Optional[Mapping[str, str]] = None,
             delay: Optional[Seconds] = None, dedup_id: Optional[str] = None) -> str:
        """Enqueues one message and returns its id once it is durable. payload: bytes and str
        as they are, dict/list as JSON. Without a dedup_id one is made up, so that a send
        retried after UNAVAILABLE never enqueues twice (a repeat of a given dedup_id within the
        queue's dedup window returns the first message's id)."""
        return self.send_batch([payload], attributes=attributes, delay=delay,
                               dedup_ids=[dedup_id])[0]

    def send_batch(self, payloads: Iterable[Any], *,
                   attributes: Optional[Mapping[str, str]] = None,
                   delay: Optional[Seconds] = None,
                   dedup_ids: Optional[Sequence[Optional[str]]] = None) -> List[str]:
        """Enqueues many messages, 1000 to a request (each request atomic); returns their ids
        in order."""
        out: List[str] = []
        for request in enqueue_requests(self.name, list(payloads), attributes, delay,
                                        dedup_ids):
            r = self.client.call_retrying("Enqueue", request)
            out.extend(x.message_id for x in r.results)
        return out

    def send_async(self, payload: Any, *, attributes: Optional[Mapping[str, str]] = None,
                   delay: Optional[Seconds] = None, dedup_id: Optional[str] = None):
        """Queues one message for this queue's Publish stream and returns at once with a
        concurrent.futures.Future of its id. Sends made within 1 ms of each other share one
        request (up to 1000); flush() waits for all of them."""
        with self._publisher_lock:
            if self._publisher is None:
                from ._publisher import Publisher
                self._publisher = Publisher(self.client, self.name)
            publisher = self._publisher
        return publisher.submit(entry(payload, attributes, delay, dedup_id or uuid.uuid4().hex))

    def flush(self, timeout: Optional[float] = None) -> None:
        """Blocks until every send_async so far is answered (durable, or failed)."""
        if self._publisher is not None:
            self._publisher.flush(timeout)

    def close(self) -> None:
        """flush(), then ends the Publish stream."""
        with self._publisher_lock:
            publisher, self._publisher = self._publisher, None
        if publisher is not None:
            publisher.close()

    # --- consuming without a worker ---

    def lease(self, max_messages: int = 1, *, wait: Seconds = 0,
              visibility_timeout: Optional[Seconds] = None) -> List[Message]:
        """Leases up to max_messages, waiting up to wait seconds (60 at most) for the first."""
        request = pb.LeaseRequest(queue=self.name, max_messages=max_messages,
                                  wait_time=duration(wait))
        if visibility_timeout is not None:
            request.visibility_timeout.CopyFrom(duration(visibility_timeout))
        timeout = self.client.timeout + float(request.wait_time.seconds)
        r = self.client.call("Lease", request, timeout=timeout)
        return [Message(self.name, m) for m in r.messages]

    def ack(self, *messages: Union[Message, str]) -> List[str]:
        """Acks messages (or receipts); returns each one's outcome name: "OK",
        "LEASE_LOST" (the lease ended first; the message will be delivered again) or
        "INVALID_RECEIPT"."""
        return self._settle("Ack", pb.AckRequest(queue=self.name,
                                                 receipts=_receipts(messages)))

    def nack(self, *messages: Union[Message, str], delay: Seconds = 0) -> List[str]:
        """Ends leases early: the messages are visible again after delay seconds."""
        return self._settle("Nack", pb.NackRequest(queue=self.name,
                                                   receipts=_receipts(messages),
                                                   delay=duration(delay)))

    def extend(self, *messages: Union[Message, str],
               visibility_timeout: Optional[Seconds] = None) -> List[str]:
        """Extends leases to visibility_timeout from now (unset: the queue's)."""
        request = pb.ExtendLeaseRequest(queue=self.name, receipts=_receipts(messages))
        if visibility_timeout is not None:
            request.visibility_timeout.CopyFrom(duration(visibility_timeout))
        return self._settle("ExtendLease", request)

    def _settle(self, method: str, request: Any) -> List[str]:
        r = self.client.call(method, request)
        return [outcome_name(x.outcome) for x in r.results]

    def peek(self, max_messages: int = 100) -> List[Any]:
        """Up to max_messages messages in queue order, whatever their state, without leasing
        them (the contract's PeekedMessage objects)."""
        return list(self.client.call("Peek", pb.PeekRequest(queue=self.name,
                                                            max_messages=max_messages)).messages)

    def __repr__(self) -> str:
        return f"<spool.Queue {self.name!r} on {self.client.target}>"


def outcome_name(outcome: int) -> str:
    return pb.Outcome.Name(outcome).removeprefix("OUTCOME_")


def _receipts(messages: Sequence[Union[Message, str]]) -> List[str]:
    return [m.receipt if isinstance(m, Message) else m for m in messages]

