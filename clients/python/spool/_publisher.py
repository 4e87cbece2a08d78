"""send_async's machinery: one Publish stream per queue, fed by a batching thread.

A batcher thread takes what send_async queued, waits up to LINGER for more (up to 1000), and
writes it as one PublishRequest; a reader thread takes the answers, which come in request
order, and resolves each message's future. At most MAX_IN_FLIGHT requests wait for answers
(the rest wait in the batcher: backpressure, not memory). When the stream breaks with
UNAVAILABLE (spoold restarting), the requests without an answer are written again on a new
stream, with the same dedup ids, so none is enqueued twice; any other end fails them.
"""
from __future__ import annotations

import collections
import queue
import threading
import time
from concurrent.futures import Future
from typing import Deque, List, Optional, Tuple

import grpc

from . import _errors
from ._client import Client, _backoff
from .v1 import queue_pb2 as pb

LINGER = 0.001
MAX_BATCH = 1000
MAX_IN_FLIGHT = 32

_CLOSE = object()


class Publisher:
    def __init__(self, client: Client, queue_name: str):
        self.client = client
        self.queue_name = queue_name
        self.requests_sent = 0  # PublishRequests written, resends included
        self._submitted: "queue.Queue" = queue.Queue()
        self._lock = threading.Condition()
        # (request, futures) written on the current stream and not answered, in order.
        self._in_flight: Deque[Tuple[pb.PublishRequest, List[Future]]] = collections.deque()
        self._unresolved = 0
        self._sequence = 0
        self._outbox: Optional["queue.Queue"] = None  # the current stream's requests
        self._closed = False
        self._failing_since: Optional[float] = None  # first failure of an unbroken run
        self._attempt = 0
        self._batcher = threading.Thread(target=self._batch_loop, daemon=True,
                                         name=f"spool-publish-{queue_name}")
        self._batcher.start()

    def submit(self, e: pb.EnqueueEntry) -> Future:
        f: Future = Future()
        with self._lock:
            if self._closed:
                raise RuntimeError("send_async after close()")
            self._unresolved += 1
        self._submitted.put((e, f))
        return f

    def flush(self, timeout: Optional[float] = None) -> None:
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._lock:
            while self._unresolved:
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    raise TimeoutError(f"flush: {self._unresolved} sends still unanswered")
                self._lock.wait(left)

    def close(self) -> None:
        self.flush()
        with self._lock:
            self._closed = True
        self._submitted.put(_CLOSE)
        self._batcher.join(timeout=10)
        with self._lock:
            if self._outbox is not None:
                self._outbox.put(None)  # half-close: the stream ends OK
                self._outbox = None

    # --- the batcher thread ---

    def _batch_loop(self) -> None:
        while True:
            first = self._submitted.get()
            if first is _CLOSE:
                return
            batch = [first]
            give_up = time.monotonic() + LINGER
            while len(batch) < MAX_BATCH:
                try:
                    item = self._submitted.get_nowait()
                except queue.Empty:
                    left = give_up - time.monotonic()
                    if left <= 0:
                        break
                    try:
                        item = self._submitted.get(timeout=left)
                    except queue.Empty:
                        break
                if item is _CLOSE:
                    self._submitted.put(_CLOSE)
                    break
                batch.append(item)
            self._write(batch)

    def _write(self, batch: list) -> None:
        with self._lock:
            while len(self._in_flight) >= MAX_IN_FLIGHT:
                self._lock.wait()
            self._sequence += 1
            request = pb.PublishRequest(queue=self.queue_name, sequence=self._sequence,
                                        messages=[e for e, _ in batch])
            self._in_flight.append((request, [f for _, f in batch]))
            if self._outbox is None:
                self._open_stream()
            else:
                self.requests_sent += 1
                self._outbox.put(request)

    # --- the stream ---

    def _open_stream(self) -> None:
        """REQUIRES: self._lock held. A new stream, with every unanswered request written on
        it first, in order (their dedup ids make a request that did get through harmless)."""
        outbox: "queue.Queue" = queue.Queue()
        for request, _ in self._in_flight:
            self.requests_sent += 1
            outbox.put(request)
        self._outbox = outbox
        responses = self.client.stub.Publish(iter(outbox.get, None),
                                             metadata=self.client.metadata)
        threading.Thread(target=self._read_loop, args=(responses, outbox), daemon=True,
                         name=f"spool-publish-read-{self.queue_name}").start()

    def _read_loop(self, responses, outbox) -> None:
        failure: Optional[_errors.SpoolError] = None
        try:
            for r in responses:
                with self._lock:
                    request, futures = self._in_flight.popleft()
                    self._failing_since, self._attempt = None, 0
                    self._lock.notify_all()
                if r.sequence != request.sequence:
                    failure = _errors.SpoolError(
                        f"Publish answered sequence {r.sequence}, expected {request.sequence}")
                    for f in futures:
                        f.set_exception(failure)
                    self._resolved(len(futures))
                    break
                if r.code:
                    error = _errors.from_number(r.code, r.error)
                    for f in futures:
                        f.set_exception(error)
                else:
                    for f, result in zip(futures, r.results):
                        f.set_result(result.message_id)
                self._resolved(len(futures))
        except grpc.RpcError as e:
            failure = _errors.from_rpc_error(e)
        self._stream_ended(outbox, failure)

    def _resolved(self, n: int) -> None:
        with self._lock:
            self._unresolved -= n
            self._lock.notify_all()

    def _stream_ended(self, outbox, failure: Optional[_errors.SpoolError]) -> None:
        with self._lock:
            if self._outbox is outbox:
                self._outbox = None
                outbox.put(None)
            if not self._in_flight:
                return  # ended with nothing owed (a half-close, or idle)
            now = time.monotonic()
            if self._failing_since is None:
                self._failing_since = now
            if (isinstance(failure, _errors.Unavailable)
                    and now - self._failing_since < self.client.retry_for):
                self._attempt += 1
                attempt = self._attempt
                failed = []
            else:
                failed = list(self._in_flight)
                self._in_flight.clear()
                self._failing_since = None
                self._lock.notify_all()
        if failed:
            error = failure or _errors.Unavailable("Publish stream ended without answers")
            for _, futures in failed:
                for f in futures:
                    f.set_exception(error)
                self._resolved(len(futures))
            return
        time.sleep(_backoff(attempt, base=0.05, cap=1.0))
        with self._lock:
            if self._outbox is None and self._in_flight:
                self._open_stream()
            # else: the batcher opened one meanwhile and wrote on it what was owed
