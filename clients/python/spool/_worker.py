"""Workers: a handler function run on every message of a queue, over one Subscribe stream.

The stream's credit is max_outstanding: spoold pushes that many messages at most before acks
come back, and renews their leases while the stream lives (so a long job needs no heartbeat).
concurrency threads take the pushed messages in order and call the handler. Its return acks
the message; an exception nacks it with a delay that grows with delivery_count
(retry_backoff); raising Retry(after=S) nacks it with that delay. A job still running after
timeout seconds is nacked (as a failure) and its thread's result ignored; a fresh thread takes
its place.

When the stream breaks (spoold restarting), the worker reconnects with backoff. Jobs already
running finish and are acked with plain Ack calls (their leases are stored, so they are still
valid unless their lease ran out meanwhile, which the counters show as ack_lost); messages
pushed but not started are dropped here and come back from spoold. stop() stops starting jobs,
waits up to shutdown_timeout for running ones, then ends the stream, which makes every
message still held visible again at once.
"""
from __future__ import annotations

import collections
import logging
import queue
import signal
import threading
import time
from typing import Any, Callable, Dict, List, Optional, Tuple

import grpc

from . import _errors
from ._client import Client, _backoff
from ._convert import Message, Seconds, duration, seconds, subscribe_request
from .v1 import queue_pb2 as pb

log = logging.getLogger("spool.worker")

# Stream ends after which reconnecting cannot help: the worker stops and reports it.
_FATAL = (_errors.InvalidArgument, _errors.NotFound, _errors.PermissionDenied,
          _errors.Unauthenticated)
_COUNTERS = ("received", "succeeded", "failed", "retried", "timed_out", "acked", "nacked",
             "ack_lost", "dropped", "reconnects")


class Retry(Exception):
    """Raise from a handler to have the message delivered again after `after` seconds (not
    counted as a failure)."""

    def __init__(self, after: Seconds = 0, reason: str = ""):
        super().__init__(reason or f"retry after {seconds(after)} s")
        self.after = seconds(after)


class Job(Message):
    """A message handed to a worker's handler: payload, json(), text(), attributes, id,
    delivery_count (1 on the first delivery), enqueue_time, receipt."""

    __slots__ = ("_generation", "_settled", "_started", "_thread")

    def __init__(self, queue: str, m: pb.LeasedMessage, generation: int):
        super().__init__(queue, m)
        self._generation = generation
        self._settled = False
        self._started: Optional[float] = None
        self._thread: Optional[threading.Thread] = None


Handler = Callable[[Job], Any]
ErrorHook = Callable[[Optional[Job], BaseException], None]


class Worker:
    """Runs handler on every message of queue. See the module's docstring; start() and stop()
    or run() (which also stops on SIGTERM and SIGINT)."""

    def __init__(self, client: Client, queue: str, handler: Handler, *, concurrency: int = 1,
                 max_outstanding: Optional[int] = None,
                 visibility_timeout: Optional[Seconds] = None,
                 max_lease_duration: Optional[Seconds] = None,
                 retry_backoff: Tuple[Seconds, Seconds] = (1, 300),
                 timeout: Optional[Seconds] = None, shutdown_timeout: Seconds = 30,
                 on_error: Optional[ErrorHook] = None):
        if concurrency < 1:
            raise ValueError("concurrency: at least 1")
        self.client = client
        self.queue = queue
        self.handler = handler
        self.concurrency = concurrency
        self.max_outstanding = max_outstanding or max(2 * concurrency, 1)
        if self.max_outstanding < concurrency:
            raise ValueError("max_outstanding: at least concurrency")
        self.visibility_timeout = visibility_timeout
        self.max_lease_duration = max_lease_duration
        self.retry_backoff = (seconds(retry_backoff[0]), seconds(retry_backoff[1]))
        self.timeout = None if timeout is None else seconds(timeout)
        self.shutdown_timeout = seconds(shutdown_timeout)
        self.on_error = on_error
        self.error: Optional[BaseException] = None  # why the worker stopped by itself
        self._counters: Dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        self._lock = threading.Condition()
        self._ready: "collections.deque[Job]" = collections.deque()
        self._running: Dict[int, Job] = {}  # id(job) -> job, handler under way
        self._generation = 0
        self._outbox: Optional["queue.Queue"] = None  # the live stream's requests
        self._call = None
        self._stopping = False
        self._stopped = threading.Event()
        self._threads: List[threading.Thread] = []
        self._pool_size = 0  # pool threads that take jobs (abandoned ones excluded)

    def __call__(self, job: Job) -> Any:
        """Calls the handler directly (handy in tests)."""
        return self.handler(job)

    # --- counters ---

    def stats(self) -> Dict[str, int]:
        """A snapshot of the counters: received (pushed to this worker), succeeded, failed
        (exceptions), retried (Retry raised), timed_out, acked / nacked (confirmed by spoold),
        ack_lost (an ack that came too late: the message will be delivered again), dropped
        (pushed, not started, and left to come back after a reconnect), reconnects."""
        with self._lock:
            return dict(self._counters)

    def _count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self._counters[name] += n

    # --- lifecycle ---

    def start(self) -> "Worker":
        with self._lock:
            if self._threads:
                raise RuntimeError("worker already started")
            self._threads.append(threading.Thread(target=self._stream_loop, daemon=True,
                                                  name=f"spool-worker-{self.queue}"))
            if self.timeout is not None:
                self._threads.append(threading.Thread(target=self._watch_timeouts,
                                                      daemon=True))
            for t in self._threads:
                t.start()
            for _ in range(self.concurrency):
                self._add_pool_thread()
        return self

    def _add_pool_thread(self) -> None:
        """REQUIRES: self._lock held."""
        t = threading.Thread(target=self._pool_loop, daemon=True,
                             name=f"spool-job-{self.queue}")
        self._pool_size += 1
        t.start()

    def stop(self, timeout: Optional[Seconds] = None) -> None:
        """Graceful: no new job starts; running ones get up to timeout (shutdown_timeout)
        seconds to finish and be acked; then the stream ends and spoold makes every message
        this worker still holds visible again. Returns when the worker has stopped."""
        wait = self.shutdown_timeout if timeout is None else seconds(timeout)
        with self._lock:
            if not self._threads:  # never started
                self._stopping = True
                self._stopped.set()
                return
        give_up = time.monotonic() + wait
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
            while self._running and time.monotonic() < give_up:
                self._lock.wait(min(0.1, max(0.0, give_up - time.monotonic())))
            for job in self._running.values():
                job._settled = True  # abandoned: released with the stream, result ignored
            self._running.clear()
            self._ready.clear()
            outbox, call = self._outbox, self._call
            if outbox is not None:
                outbox.put(None)  # half-close: spoold answers the last acks, then ends it
        if call is not None and not self._stopped.wait(5):
            call.cancel()
        self._stopped.wait(5)

    def join(self, timeout: Optional[float] = None) -> bool:
        """Waits until the worker has stopped (by stop() or by a fatal error)."""
        return self._stopped.wait(timeout)

    def run(self) -> None:
        """start(), then block until SIGTERM or SIGINT (then stop()) or a fatal error (then
        raise it)."""
        run_workers(self)

    @property
    def stopped(self) -> bool:
        return self._stopped.is_set()

    # --- the stream ---

    @staticmethod
    def _requests(first: pb.SubscribeRequest, outbox: "queue.Queue"):
        """The stream's requests: the first, then the settlements queued since the last one,
        acks together and nacks grouped by delay."""
        yield first
        while True:
            item = outbox.get()
            items, end = [], item is None
            if not end:
                items.append(item)
                while True:
                    try:
                        item = outbox.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        end = True
                        break
                    items.append(item)
            acks = [receipt for kind, receipt, _ in items if kind == "ack"]
            if acks:
                yield pb.SubscribeRequest(ack=acks)
            nacks: Dict[float, List[str]] = {}
            for kind, receipt, delay in items:
                if kind == "nack":
                    nacks.setdefault(delay, []).append(receipt)
            for delay, receipts in nacks.items():
                yield pb.SubscribeRequest(nack=receipts, nack_delay=duration(delay))
            if end:
                return

    def _stream_loop(self) -> None:
        attempt = 0
        try:
            while True:
                with self._lock:
                    if self._stopping:
                        return
                    self._generation += 1
                    generation = self._generation
                    outbox: "queue.Queue" = queue.Queue()
                    self._outbox = outbox
                    self._call = call = self.client.stub.Subscribe(
                        self._requests(subscribe_request(self.queue, self.max_outstanding,
                                                     self.visibility_timeout,
                                                     self.max_lease_duration), outbox),
                        metadata=self.client.metadata)
                failure: Optional[_errors.SpoolError] = None
                try:
                    for r in call:
                        attempt = 0
                        self._take(r, generation)
                except grpc.RpcError as e:
                    failure = _errors.from_rpc_error(e)
                with self._lock:
                    self._outbox = self._call = None
                    outbox.put(None)
                    stopping = self._stopping
                    # Pushed and not started: spoold gets them back (released by the stream's
                    # end, or when their leases run out after a crash).
                    self._counters["dropped"] += len(self._ready)
                    self._ready.clear()
                if stopping:
                    return
                if isinstance(failure, _FATAL):
                    self.error = failure
                    self._report(None, failure)
                    return
                self._report(None, failure or _errors.Unavailable("Subscribe stream ended"))
                time.sleep(_backoff(attempt, base=0.1, cap=5.0))
                attempt += 1
                self._count("reconnects")
        finally:
            with self._lock:
                self._stopping = True
                self._lock.notify_all()
            self._stopped.set()

    def _take(self, r: pb.SubscribeResponse, generation: int) -> None:
        acked = sum(1 for x in r.ack_results if x.outcome == pb.OUTCOME_OK)
        nacked = sum(1 for x in r.nack_results if x.outcome == pb.OUTCOME_OK)
        with self._lock:
            self._counters["acked"] += acked
            self._counters["nacked"] += nacked
            self._counters["ack_lost"] += len(r.ack_results) - acked
            for m in r.messages:
                self._counters["received"] += 1
                self._ready.append(Job(self.queue, m, generation))
            if r.messages:
                self._lock.notify_all()

    # --- the pool ---

    def _pool_loop(self) -> None:
        me = threading.current_thread()
        while True:
            with self._lock:
                while not self._ready and not self._stopping:
                    self._lock.wait()
                if self._stopping:
                    self._pool_size -= 1
                    return
                job = self._ready.popleft()
                job._started = time.monotonic()
                job._thread = me
                self._running[id(job)] = job
            self._run_one(job)
            with self._lock:
                if job._thread is not me:  # timed out: a new thread has taken this place
                    return

    def _run_one(self, job: Job) -> None:
        try:
            self.handler(job)
        except Retry as e:
            self._settle(job, ok=False, delay=e.after, counter="retried")
        except BaseException as e:  # noqa: B902 - the handler's failure, whatever it is
            if self._settle(job, ok=False, delay=self._backoff(job), counter="failed"):
                self._report(job, e)
        else:
            self._settle(job, ok=True, counter="succeeded")

    def _backoff(self, job: Job) -> float:
        low, high = self.retry_backoff
        return min(high, low * (2 ** max(0, job.delivery_count - 1)))

    def _settle(self, job: Job, ok: bool, counter: str, delay: float = 0.0) -> bool:
        """Acks or nacks job once; False if it was settled already (timed out, or abandoned
        at shutdown)."""
        with self._lock:
            if job._settled:
                return False
            job._settled = True
            self._running.pop(id(job), None)
            self._counters[counter] += 1
            self._lock.notify_all()
            live = self._outbox if job._generation == self._generation else None
            if live is not None:
                live.put(("ack", job.receipt, 0.0) if ok else ("nack", job.receipt, delay))
                return True
        # The stream this job came on has ended: settle it with a plain call.
        q = self.client.queue(self.queue)
        try:
            outcome = (q.ack(job.receipt) if ok else q.nack(job.receipt, delay=delay))[0]
        except _errors.SpoolError as e:
            self._report(job, e)
            outcome = "LEASE_LOST"
        if outcome == "OK":
            self._count("acked" if ok else "nacked")
        elif ok:
            self._count("ack_lost")
        return True

    def _watch_timeouts(self) -> None:
        assert self.timeout is not None
        while not self._stopped.wait(min(0.05, self.timeout / 4)):
            now = time.monotonic()
            with self._lock:
                late = [j for j in self._running.values()
                        if j._started is not None and now - j._started > self.timeout]
            for job in late:
                if self._settle(job, ok=False, delay=self._backoff(job), counter="timed_out"):
                    with self._lock:
                        job._thread = None  # its thread exits when the handler returns
                        self._pool_size -= 1
                        if not self._stopping:
                            self._add_pool_thread()
                    self._report(job, TimeoutError(
                        f"job {job.id} ran longer than {self.timeout} s; nacked"))

    def _report(self, job: Optional[Job], error: BaseException) -> None:
        if self.on_error is not None:
            try:
                self.on_error(job, error)
            except Exception:  # noqa: BLE001 - a failing hook must not stop the worker
                log.exception("on_error hook failed")
        elif job is not None:
            log.warning("job %s of %s failed (delivery %d): %r", job.id, self.queue,
                        job.delivery_count, error)
        else:
            log.warning("worker of %s: %s", self.queue, error)


_registered: List[Worker] = []


def worker(client: Client, queue: str, **options: Any) -> Callable[[Handler], Worker]:
    """Decorator: turns a handler function into a Worker (not started) and registers it for
    run_workers(). Options as Worker's: concurrency, max_outstanding, visibility_timeout,
    max_lease_duration, retry_backoff, timeout, shutdown_timeout, on_error."""
    def wrap(handler: Handler) -> Worker:
        w = Worker(client, queue, handler, **options)
        _registered.append(w)
        return w
    return wrap


def run_workers(*workers: Worker) -> None:
    """Starts the given workers (or every one made with @spool.worker) and blocks. SIGTERM or
    SIGINT stops them gracefully (each within its shutdown_timeout), then this returns; a
    worker that stops by itself (a fatal error such as an unknown queue) stops the rest and
    its error is raised. Signal handlers are installed only when called from the main
    thread."""
    chosen = list(workers) or list(_registered)
    if not chosen:
        raise ValueError("run_workers: no workers (decorate a handler with @spool.worker)")
    stop = threading.Event()
    previous = {}
    if threading.current_thread() is threading.main_thread():
        for s in (signal.SIGTERM, signal.SIGINT):
            previous[s] = signal.signal(s, lambda *_: stop.set())
    try:
        for w in chosen:
            if not w._threads:
                w.start()
        while not stop.wait(0.1):
            if any(w.stopped for w in chosen):
                break
    finally:
        stoppers = [threading.Thread(target=w.stop) for w in chosen]
        for t in stoppers:
            t.start()
        for t in stoppers:
            t.join()
        for s, h in previous.items():
            signal.signal(s, h)
    for w in chosen:
        if w.error is not None:
            raise w.error
