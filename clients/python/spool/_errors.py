"""The library's exceptions: one class per gRPC status a caller may want to catch, each carrying
the server's message (which names the field that was wrong)."""
from __future__ import annotations

from typing import Optional

import grpc


class SpoolError(Exception):
    """Any error from spoold or from this library. ``code`` is the gRPC status name
    (``"NOT_FOUND"``), ``message`` the server's text."""

    code: str = "UNKNOWN"

    def __init__(self, message: str, code: Optional[str] = None):
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class InvalidArgument(SpoolError):
    code = "INVALID_ARGUMENT"


class NotFound(SpoolError):
    code = "NOT_FOUND"


class AlreadyExists(SpoolError):
    code = "ALREADY_EXISTS"


class PermissionDenied(SpoolError):
    code = "PERMISSION_DENIED"


class Unauthenticated(SpoolError):
    code = "UNAUTHENTICATED"


class ResourceExhausted(SpoolError):
    """The queue is full (``max_depth``) or the server is at a limit: back off and retry."""
    code = "RESOURCE_EXHAUSTED"


class FailedPrecondition(SpoolError):
    code = "FAILED_PRECONDITION"


class Unavailable(SpoolError):
    """spoold could not be reached, or is shutting down."""
    code = "UNAVAILABLE"


class DeadlineExceeded(SpoolError):
    code = "DEADLINE_EXCEEDED"


class Cancelled(SpoolError):
    code = "CANCELLED"


_BY_CODE = {c.code: c for c in (InvalidArgument, NotFound, AlreadyExists, PermissionDenied,
                                Unauthenticated, ResourceExhausted, FailedPrecondition,
                                Unavailable, DeadlineExceeded, Cancelled)}

# google.rpc.Code numbers, for the code field of a PublishResponse.
_NUMBERS = {c.value[0]: c.name for c in grpc.StatusCode}


def from_code(code: str, message: str) -> SpoolError:
    cls = _BY_CODE.get(code, SpoolError)
    return cls(message) if cls is not SpoolError else SpoolError(message, code)


def from_number(number: int, message: str) -> SpoolError:
    return from_code(_NUMBERS.get(number, "UNKNOWN"), message)


def from_rpc_error(e: grpc.RpcError) -> SpoolError:
    """The library's exception for a failed call (a grpc.RpcError that is also a Call)."""
    try:
        code, details = e.code().name, e.details() or ""
    except AttributeError:  # not a Call: should not happen with grpcio's errors
        code, details = "UNKNOWN", str(e)
    return from_code(code, details)
