"""Why a call failed: ``RpcError``, with the gRPC status code and spotex's
machine-readable reason (the server's ``spotex-reason`` trailer)."""

from __future__ import annotations

import grpc
import grpc.aio

from spotex.errors import SpotexError

# gRPC's own failures that may come after the request was sent: the command may have
# been applied (UNKNOWN: the server failed in a way it did not explain)
_LOST = frozenset({grpc.StatusCode.DEADLINE_EXCEEDED, grpc.StatusCode.CANCELLED,
                   grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.UNKNOWN})
# what gRPC says when no connection could be made: the request never left
_NEVER_CONNECTED = "failed to connect to all addresses"


class RpcError(SpotexError):
    """A call that failed: ``code`` (grpc.StatusCode), ``reason`` (e.g.
    ``PRICE_OFF_TICK``), ``message``, and for RATE_LIMITED ``retry_after`` (seconds to
    wait before trying again; None otherwise). ``transport``: no spotex reason came with
    it (gRPC's own failure: no connection, a deadline, a connection lost), and
    ``reason`` is the code's name. ``client_order_id``: of the command, when the SDK
    looked it up (``NOT_APPLIED``, or an outcome still unknown)."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str,
                 retry_after: float | None = None, *, transport: bool = False,
                 client_order_id: str = "") -> None:
        super().__init__(f"{code.name} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.retry_after = retry_after
        self.transport = transport
        self.client_order_id = client_order_id

    @property
    def outcome_unknown(self) -> bool:
        """A command failing so may or may not have been applied: ``OUTCOME_UNKNOWN``
        (sent to the journal, never confirmed), or gRPC's own DEADLINE_EXCEEDED,
        CANCELLED, UNAVAILABLE or UNKNOWN without a spotex reason once the request may
        have been sent (not when no connection could be made)."""
        if not self.transport:
            return self.reason == "OUTCOME_UNKNOWN"
        return self.code in _LOST and not (self.code == grpc.StatusCode.UNAVAILABLE
                                           and _NEVER_CONNECTED in self.message)


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
    return RpcError(code, reason or code.name, details or "", retry_after,
                    transport=not reason)


def _resubscribable(err: grpc.RpcError, lost: int, relayed: bool = False) -> bool:
    """A market-data stream worth opening again: dropped for lagging, or ended by a
    gateway because its shard's engine was lost (a few times in a row at most: the
    gateway waits for the standby before it answers), or, from market-data relays, a
    relay gone or cut from its upstream (a few times: another relay of the address, or
    the same one started again, takes the subscription)."""
    if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return True
    if relayed and err.code() == grpc.StatusCode.UNAVAILABLE and lost <= 5:
        return True
    return _rpc_error(err).reason == "SHARD_UNAVAILABLE" and lost <= 3


def _code(n: int) -> grpc.StatusCode:
    return next(c for c in grpc.StatusCode if c.value[0] == n)
