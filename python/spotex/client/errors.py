"""Why a call failed: ``RpcError``, with the gRPC status code and spotex's
machine-readable reason (the server's ``spotex-reason`` trailer)."""

from __future__ import annotations

import grpc
import grpc.aio

from spotex.errors import SpotexError


class RpcError(SpotexError):
    """A call the server refused: ``code`` (grpc.StatusCode), ``reason`` (e.g.
    ``PRICE_OFF_TICK``), ``message``, and for RATE_LIMITED ``retry_after`` (seconds to
    wait before trying again; None otherwise)."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{code.name} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


def _rpc_error(err: grpc.RpcError) -> RpcError:
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    reason = ""
    retry_after = None
    trailing = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == "spotex-reason":
            reason = value
        elif key == "retry-after-ms" and str(value).isdigit():
            retry_after = int(value) / 1000
    details = err.details() if hasattr(err, "details") else str(err)
    return RpcError(code, reason or code.name, details or "", retry_after)


def _resubscribable(err: grpc.RpcError, lost: int) -> bool:
    """A market-data stream worth opening again: dropped for lagging, or ended by a
    gateway because its shard's engine was lost (a few times in a row at most: the
    gateway waits for the standby before it answers)."""
    if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return True
    return _rpc_error(err).reason == "SHARD_UNAVAILABLE" and lost <= 3


def _code(n: int) -> grpc.StatusCode:
    return next(c for c in grpc.StatusCode if c.value[0] == n)
