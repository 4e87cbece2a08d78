"""The asyncio API (grpc.aio): AsyncClient, AsyncQueue and AsyncWorker, the same concepts as
the blocking ones with coroutines. A handler is an ``async def``; concurrency is how many of
its calls run at once, as tasks.

    client = spool.aio.AsyncClient("127.0.0.1:7420")
    q = client.queue("thumbnails")
    await q.create(exist_ok=True)
    await q.send({"file_id": "abc-123"})

    async def handle(job): ...
    worker = q.worker(handle, concurrency=8)
    await worker.start(); ...; await worker.stop()
"""
from __future__ import annotations

import asyncio
import logging
import random
from typing import Any, Awaitable, Callable, Dict, List, Mapping, Optional, Sequence, Tuple

import grpc
import grpc.aio

from . import _errors
from ._client import _CHANNEL_OPTIONS, TLS, outcome_name
from ._convert import (Message, QueueInfo, Seconds, duration, enqueue_requests, queue_config,
                       seconds, subscribe_request)
from ._worker import _COUNTERS, _FATAL, Job, Retry
from .v1 import queue_pb2 as pb
from .v1 import queue_pb2_grpc as pb_grpc

log = logging.getLogger("spool.aio")

AsyncHandler = Callable[[Job], Awaitable[Any]]


def _backoff(attempt: int, base: float, cap: float) -> float:
    return random.uniform(0, min(cap, base * (2 ** attempt)))


class AsyncClient:
    """A grpc.aio channel to one spoold; arguments as spool.Client's. Create it inside the
    event loop that uses it; close with ``await client.close()`` or ``async with``."""

    def __init__(self, target: str = "127.0.0.1:7420", token: Optional[str] = None,
                 tls: Optional[TLS] = None, timeout: float = 30.0, retry_for: float = 30.0,
                 options: Sequence[Tuple[str, Any]] = ()):
        self.target, self.timeout, self.retry_for = target, timeout, retry_for
        opts = _CHANNEL_OPTIONS + list(options)
        self._channel = (grpc.aio.secure_channel(target, tls.credentials(), options=opts)
                         if tls is not None else grpc.aio.insecure_channel(target, options=opts))
        self.metadata = (("authorization", f"Bearer {token}"),) if token else ()
        self.stub = pb_grpc.QueueServiceStub(self._channel)

    def queue(self, name: str) -> "AsyncQueue":
        return AsyncQueue(self, name)

    async def call(self, method: str, request: Any, timeout: Optional[float] = None) -> Any:
        try:
            return await getattr(self.stub, method)(request, timeout=timeout or self.timeout,
                                                    metadata=self.metadata)
        except grpc.RpcError as e:
            raise _errors.from_rpc_error(e) from None

    async def call_retrying(self, method: str, request: Any) -> Any:
        loop = asyncio.get_running_loop()
        give_up = loop.time() + self.retry_for
        attempt = 0
        while True:
            try:
                return await self.call(method, request)
            except _errors.Unavailable:
                if loop.time() >= give_up:
                    raise
                await asyncio.sleep(_backoff(attempt, 0.05, 2.0))
                attempt += 1

    async def list_queues(self, prefix: str = "") -> List[QueueInfo]:
        out: List[QueueInfo] = []
        token = ""
        while True:
            r = await self.call("ListQueues", pb.ListQueuesRequest(
                prefix=prefix, page_size=1000, page_token=token))
            out.extend(QueueInfo.from_proto(q) for q in r.queues)
            token = r.next_page_token
            if not token:
                return out

    async def close(self) -> None:
        await self._channel.close()

    async def __aenter__(self) -> "AsyncClient":
        return self

    async def __aexit__(self, *exc: Any) -> None:
        await self.close()


class AsyncQueue:
    def __init__(self, client: AsyncClient, name: str):
        self.client, self.name = client, name

    async def create(self, *, exist_ok: bool = False, **config: Any) -> QueueInfo:
        request = pb.CreateQueueRequest(name=self.name, config=queue_config(**config))
        try:
            return QueueInfo.from_proto(await self.client.call("CreateQueue", request))
        except _errors.AlreadyExists:
            if not exist_ok:
                raise
            return await self.info()

    async def info(self) -> QueueInfo:
        return QueueInfo.from_proto(await self.client.call(
            "GetQueue", pb.GetQueueRequest(name=self.name)))

    async def delete(self) -> None:
        await self.client.call("DeleteQueue", pb.DeleteQueueRequest(name=self.name))

    async def purge(self) -> int:
        return (await self.client.call("PurgeQueue",
                                       pb.PurgeQueueRequest(name=self.name))).purged

    async def send(self, payload: Any, *, attributes: Optional[Mapping[str, str]] = None,
                   delay: Optional[Seconds] = None, dedup_id: Optional[str] = None) -> str:
        """As Queue.send: durable when it returns; retried with its dedup id while
        UNAVAILABLE."""
        return (await self.send_batch([payload], attributes=attributes, delay=delay,
                                      dedup_ids=[dedup_id]))[0]

    async def send_batch(self, payloads: Sequence[Any], *,
                         attributes: Optional[Mapping[str, str]] = None,
                         delay: Optional[Seconds] = None,
                         dedup_ids: Optional[Sequence[Optional[str]]] = None) -> List[str]:
        out: List[str] = []
        for request in enqueue_requests(self.name, list(payloads), attributes, delay,
                                        dedup_ids):
            r = await self.client.call_retrying("Enqueue", request)
            out.extend(x.message_id for x in r.results)
        return out

    async def lease(self, max_messages: int = 1, *, wait: Seconds = 0,
                    visibility_timeout: Optional[Seconds] = None) -> List[Message]:
        request = pb.LeaseRequest(queue=self.name, max_messages=max_messages,
                                  wait_time=duration(wait))
        if visibility_timeout is not None:
            request.visibility_timeout.CopyFrom(duration(visibility_timeout))
        r = await self.client.call("Lease", request,
                                   timeout=self.client.timeout + request.wait_time.seconds)
        return [Message(self.name, m) for m in r.messages]

    async def ack(self, *messages: Any) -> List[str]:
        r = await self.client.call("Ack", pb.AckRequest(
            queue=self.name, receipts=[getattr(m, "receipt", m) for m in messages]))
        return [outcome_name(x.outcome) for x in r.results]

    async def nack(self, *messages: Any, delay: Seconds = 0) -> List[str]:
        r = await self.client.call("Nack", pb.NackRequest(
            queue=self.name, receipts=[getattr(m, "receipt", m) for m in messages],
            delay=duration(delay)))
        return [outcome_name(x.outcome) for x in r.results]

    def worker(self, handler: AsyncHandler, **options: Any) -> "AsyncWorker":
        return AsyncWorker(self.client, self.name, handler, **options)


class AsyncWorker:
    """The asyncio worker: one Subscribe stream, up to concurrency handler tasks at once.
    Options and behaviour as spool.Worker's (ack on return, nack with backoff on an exception,
    Retry, timeout, reconnect, graceful stop)."""

    def __init__(self, client: AsyncClient, queue: str, handler: AsyncHandler, *,
                 concurrency: int = 1, max_outstanding: Optional[int] = None,
                 visibility_timeout: Optional[Seconds] = None,
                 max_lease_duration: Optional[Seconds] = None,
                 retry_backoff: Tuple[Seconds, Seconds] = (1, 300),
                 timeout: Optional[Seconds] = None, shutdown_timeout: Seconds = 30,
                 on_error: Optional[Callable[[Optional[Job], BaseException], Any]] = None):
        self.client, self.queue, self.handler = client, queue, handler
        self.concurrency = concurrency
        self.max_outstanding = max_outstanding or 2 * concurrency
        if self.max_outstanding < concurrency:
            raise ValueError("max_outstanding: at least concurrency")
        self.visibility_timeout, self.max_lease_duration = visibility_timeout, max_lease_duration
        self.retry_backoff = (seconds(retry_backoff[0]), seconds(retry_backoff[1]))
        self.timeout = None if timeout is None else seconds(timeout)
        self.shutdown_timeout = seconds(shutdown_timeout)
        self.on_error = on_error
        self.error: Optional[BaseException] = None
        self._counters: Dict[str, int] = dict.fromkeys(_COUNTERS, 0)
        self._generation = 0
        self._call: Optional[grpc.aio.StreamStreamCall] = None
        self._ready: "asyncio.Queue[Job]" = asyncio.Queue()
        self._running: set = set()
        self._stopping = False
        self._tasks: List["asyncio.Task[None]"] = []
        self._write_lock = asyncio.Lock()

    def stats(self) -> Dict[str, int]:
        return dict(self._counters)

    async def start(self) -> "AsyncWorker":
        self._tasks = [asyncio.create_task(self._stream_loop())]
        self._tasks += [asyncio.create_task(self._pool_loop()) for _ in range(self.concurrency)]
        return self

    async def run(self) -> None:
        """start(), then wait until the worker stops by itself (raising its error)."""
        await self.start()
        await self._tasks[0]
        await self.stop()
        if self.error is not None:
            raise self.error

    async def stop(self, timeout: Optional[Seconds] = None) -> None:
        self._stopping = True
        wait = self.shutdown_timeout if timeout is None else seconds(timeout)
        loop = asyncio.get_running_loop()
        give_up = loop.time() + wait
        while self._running and loop.time() < give_up:
            await asyncio.sleep(0.02)
        for job in self._running:
            job._settled = True
        self._running.clear()
        call = self._call
        if call is not None:
            async with self._write_lock:
                try:
                    await call.done_writing()
                except Exception:  # noqa: BLE001 - the stream has ended already
                    pass
        try:
            await asyncio.wait_for(asyncio.shield(self._tasks[0]), 5)
        except (asyncio.TimeoutError, IndexError):
            if call is not None:
                call.cancel()
        for t in self._tasks[1:]:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _stream_loop(self) -> None:
        attempt = 0
        while not self._stopping:
            self._generation += 1
            generation = self._generation
            call = self.client.stub.Subscribe(metadata=self.client.metadata)
            self._call = call
            failure: Optional[_errors.SpoolError] = None
            try:
                await call.write(subscribe_request(self.queue, self.max_outstanding,
                                                   self.visibility_timeout,
                                                   self.max_lease_duration))
                while True:
                    r = await call.read()
                    if r is grpc.aio.EOF:
                        break
                    attempt = 0
                    self._take(r, generation)
            except grpc.RpcError as e:
                failure = _errors.from_rpc_error(e)
            except asyncio.CancelledError:
                raise
            self._call = None
            while not self._ready.empty():
                self._ready.get_nowait()
                self._counters["dropped"] += 1
            if self._stopping:
                return
            if isinstance(failure, _FATAL):
                self.error = failure
                await self._report(None, failure)
                self._stopping = True
                return
            await self._report(None, failure or _errors.Unavailable("Subscribe stream ended"))
            await asyncio.sleep(_backoff(attempt, 0.1, 5.0))
            attempt += 1
            self._counters["reconnects"] += 1

    def _take(self, r: pb.SubscribeResponse, generation: int) -> None:
        acked = sum(1 for x in r.ack_results if x.outcome == pb.OUTCOME_OK)
        self._counters["acked"] += acked
        self._counters["ack_lost"] += len(r.ack_results) - acked
        self._counters["nacked"] += sum(1 for x in r.nack_results if x.outcome == pb.OUTCOME_OK)
        for m in r.messages:
            self._counters["received"] += 1
            self._ready.put_nowait(Job(self.queue, m, generation))

    async def _pool_loop(self) -> None:
        while True:
            job = await self._ready.get()
            if self._stopping or job._generation != self._generation:
                continue  # held until the stream ends, which releases it
            self._running.add(job)
            try:
                if self.timeout is None:
                    await self.handler(job)
                else:
                    await asyncio.wait_for(self.handler(job), self.timeout)
            except Retry as e:
                await self._settle(job, False, "retried", e.after)
            except asyncio.TimeoutError as e:
                if await self._settle(job, False, "timed_out", self._backoff(job)):
                    await self._report(job, e)
            except asyncio.CancelledError:
                raise
            except Exception as e:  # noqa: BLE001 - the handler's failure
                if await self._settle(job, False, "failed", self._backoff(job)):
                    await self._report(job, e)
            else:
                await self._settle(job, True, "succeeded")

    def _backoff(self, job: Job) -> float:
        low, high = self.retry_backoff
        return min(high, low * (2 ** max(0, job.delivery_count - 1)))

    async def _settle(self, job: Job, ok: bool, counter: str, delay: float = 0.0) -> bool:
        if job._settled:
            return False
        job._settled = True
        self._running.discard(job)
        self._counters[counter] += 1
        call = self._call
        if call is not None and job._generation == self._generation:
            request = (pb.SubscribeRequest(ack=[job.receipt]) if ok else
                       pb.SubscribeRequest(nack=[job.receipt], nack_delay=duration(delay)))
            try:
                async with self._write_lock:
                    await call.write(request)
                return True
            except Exception:  # noqa: BLE001 - the stream broke: fall back to a plain call
                pass
        q = self.client.queue(self.queue)
        try:
            outcome = (await (q.ack(job) if ok else q.nack(job, delay=delay)))[0]
        except _errors.SpoolError as e:
            await self._report(job, e)
            outcome = "LEASE_LOST"
        if outcome == "OK":
            self._counters["acked" if ok else "nacked"] += 1
        elif ok:
            self._counters["ack_lost"] += 1
        return True

    async def _report(self, job: Optional[Job], error: BaseException) -> None:
        if self.on_error is not None:
            try:
                result = self.on_error(job, error)
                if asyncio.iscoroutine(result):
                    await result
            except Exception:  # noqa: BLE001
                log.exception("on_error hook failed")
        else:
            log.warning("worker of %s: job %s: %r", self.queue, job and job.id, error)


def worker(client: AsyncClient, queue: str, **options: Any) -> Callable[[AsyncHandler],
                                                                       AsyncWorker]:
    """Decorator: an async handler into an AsyncWorker (not started)."""
    return lambda handler: AsyncWorker(client, queue, handler, **options)
