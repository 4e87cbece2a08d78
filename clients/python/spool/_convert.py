"""Between Python values and the contract's messages: payloads, durations, queue configs."""
from __future__ import annotations

import datetime
import json
import uuid
from dataclasses import dataclass, field
from typing import Any, Dict, Iterator, Mapping, Optional, Sequence, Union

from google.protobuf import duration_pb2

from .v1 import queue_pb2 as pb

Seconds = Union[int, float, datetime.timedelta]
Payload = Union[bytes, bytearray, memoryview, str, dict, list]


def payload_bytes(payload: Any) -> bytes:
    """bytes as they are, str as UTF-8, anything else JSON has a form for as compact JSON."""
    if isinstance(payload, bytes):
        return payload
    if isinstance(payload, (bytearray, memoryview)):
        return bytes(payload)
    if isinstance(payload, str):
        return payload.encode()
    try:
        return json.dumps(payload, separators=(",", ":")).encode()
    except TypeError as e:
        raise TypeError(f"payload: {e} (send bytes, str, or a JSON-serialisable value)") from None


def seconds(value: Seconds) -> float:
    if isinstance(value, datetime.timedelta):
        return value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"a duration in seconds or a timedelta, not {type(value).__name__}")
    return float(value)


def duration(value: Seconds) -> duration_pb2.Duration:
    s = seconds(value)
    whole = int(s // 1)
    return duration_pb2.Duration(seconds=whole, nanos=int(round((s - whole) * 1e9)))


def from_duration(d: duration_pb2.Duration) -> float:
    return d.seconds + d.nanos / 1e9


def entry(payload: Any, attributes: Optional[Mapping[str, str]], delay: Optional[Seconds],
          dedup_id: Optional[str]) -> pb.EnqueueEntry:
    e = pb.EnqueueEntry(payload=payload_bytes(payload), dedup_id=dedup_id or "")
    if attributes:
        e.attributes.update(attributes)
    if delay is not None:
        e.delay.CopyFrom(duration(delay))
    return e


def enqueue_requests(queue: str, payloads: Sequence[Any],
                     attributes: Optional[Mapping[str, str]], delay: Optional[Seconds],
                     dedup_ids: Optional[Sequence[Optional[str]]]) -> Iterator[pb.EnqueueRequest]:
    """send_batch's EnqueueRequests, 1000 entries each; a dedup id is made up where none is
    given, so that a request retried after UNAVAILABLE never enqueues twice."""
    ids = list(dedup_ids) if dedup_ids is not None else [None] * len(payloads)
    if len(ids) != len(payloads):
        raise ValueError("dedup_ids: one per payload")
    for start in range(0, len(payloads), 1000):
        yield pb.EnqueueRequest(queue=queue, messages=[
            entry(p, attributes, delay, d or uuid.uuid4().hex)
            for p, d in zip(payloads[start:start + 1000], ids[start:start + 1000])])


def subscribe_request(queue: str, max_outstanding: int, visibility_timeout: Optional[Seconds],
                      max_lease_duration: Optional[Seconds]) -> pb.SubscribeRequest:
    """A worker's first Subscribe request."""
    r = pb.SubscribeRequest(queue=queue, max_outstanding=max_outstanding)
    if visibility_timeout is not None:
        r.visibility_timeout.CopyFrom(duration(visibility_timeout))
    if max_lease_duration is not None:
        r.max_lease_duration.CopyFrom(duration(max_lease_duration))
    return r


_DURATION_FIELDS = ("visibility_timeout", "retention", "delay", "dedup_window")
_NUMBER_FIELDS = ("max_deliveries", "max_payload_bytes", "max_depth")
CONFIG_FIELDS = _DURATION_FIELDS + _NUMBER_FIELDS + ("dead_letter_queue",)


def queue_config(**config: Any) -> pb.QueueConfig:
    """A QueueConfig from keyword arguments (durations in seconds); None leaves a field unset."""
    c = pb.QueueConfig()
    for name, value in config.items():
        if value is None:
            continue
        if name in _DURATION_FIELDS:
            getattr(c, name).CopyFrom(duration(value))
        elif name in _NUMBER_FIELDS:
            setattr(c, name, int(value))
        elif name == "dead_letter_queue":
            c.dead_letter_queue = value
        else:
            raise TypeError(f"unknown queue setting {name!r}; known: {', '.join(CONFIG_FIELDS)}")
    return c


@dataclass
class QueueInfo:
    """A queue as GetQueue describes it. Durations in seconds; stats as GetQueue's counts
    (ready, leased, delayed, total, enqueued_total, ...) with oldest_ready_age in seconds."""
    name: str
    config: Dict[str, Any] = field(default_factory=dict)
    stats: Dict[str, Any] = field(default_factory=dict)
    create_time: Optional[datetime.datetime] = None

    @classmethod
    def from_proto(cls, q: pb.Queue) -> "QueueInfo":
        config: Dict[str, Any] = {}
        for name in _DURATION_FIELDS:
            config[name] = from_duration(getattr(q.config, name))
        for name in _NUMBER_FIELDS:
            config[name] = getattr(q.config, name)
        config["dead_letter_queue"] = q.config.dead_letter_queue
        stats: Dict[str, Any] = {}
        for f in q.stats.DESCRIPTOR.fields:
            v = getattr(q.stats, f.name)
            stats[f.name] = from_duration(v) if f.name == "oldest_ready_age" else v
        created = (q.create_time.ToDatetime(tzinfo=datetime.timezone.utc)
                   if q.HasField("create_time") else None)
        return cls(q.name, config, stats, created)


class Message:
    """A leased message: payload (bytes), json(), text(), attributes, delivery_count, id,
    receipt (what Ack and Nack take), enqueue_time and lease_deadline (UTC datetimes)."""

    __slots__ = ("queue", "id", "payload", "attributes", "receipt", "delivery_count",
                 "_m")

    def __init__(self, queue: str, m: pb.LeasedMessage):
        self.queue = queue
        self.id: str = m.message_id
        self.payload: bytes = m.payload
        self.attributes: Dict[str, str] = dict(m.attributes)
        self.receipt: str = m.receipt
        self.delivery_count: int = m.delivery_count
        self._m = m

    def json(self) -> Any:
        return json.loads(self.payload)

    def text(self) -> str:
        return self.payload.decode()

    @property
    def enqueue_time(self) -> datetime.datetime:
        return self._m.enqueue_time.ToDatetime(tzinfo=datetime.timezone.utc)

    @property
    def lease_deadline(self) -> datetime.datetime:
        return self._m.lease_deadline.ToDatetime(tzinfo=datetime.timezone.utc)

    def __repr__(self) -> str:
        return (f"<{type(self).__name__} {self.queue}/{self.id} delivery {self.delivery_count}, "
                f"{len(self.payload)} bytes>")
