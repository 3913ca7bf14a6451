"""Executions streams that resume: ``ExecutionStream`` (blocking) and
``AsyncExecutionStream`` (asyncio), what ``subscribe_executions`` returns and
``executions()`` iterates.

A subscription is live once the server's first message (``ExecutionBatch.start``) came:
what the account does from then on reaches it. Subscribe, then place: every execution of
the order arrives. The stream remembers the last sequence it yielded (before the first,
where the server said it went live) and, when the connection is lost, the server
restarts or the stream falls behind (``SUBSCRIBER_LAGGED``), subscribes again with that
as ``from_sequence``: the server sends what was missed, then live again, so every
execution is yielded exactly once, in order. It tries for ``reconnect_timeout`` seconds
(0.1 s doubling to 2 s between tries) before it raises. A refusal (a sequence no longer
kept, a token revoked) is raised at once. Through a shard gateway, which numbers
executions per shard and cannot resume them, a lost stream is raised as before.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import grpc.aio

from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex.client.convert import _execution
from spotex.client.errors import _rpc_error
from spotex.client.types import Execution

# refusals after which subscribing again from the last sequence serves
RESUMABLE = frozenset({"SUBSCRIBER_LAGGED", "SHARD_UNAVAILABLE", "JOURNAL_UNAVAILABLE"})
_TRANSPORT = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.CANCELLED,
                        grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL,
                        grpc.StatusCode.DEADLINE_EXCEEDED})


def _give_up_unless(retry: bool, err: grpc.RpcError | None, delay: float,
                    deadline: float) -> None:
    """Raises the stream's failure (``err``; None: it ended before its first message)
    unless it is worth opening again: a retry asked for, a failure that a resume can
    outlast, and time left for another wait of ``delay``."""
    if (not retry or (err is not None and not _resumable(err))
            or time.monotonic() + delay > deadline):
        if err is None:
            raise _rpc_error(_Ended()) from None
        raise _rpc_error(err) from None


def _resumable(err: grpc.RpcError) -> bool:
    e = _rpc_error(err)
    return e.code in _TRANSPORT if e.transport else e.reason in RESUMABLE


class _Cursor:
    """Where a stream stands: the last sequence yielded (or where it went live)."""

    def __init__(self, from_sequence: int | None) -> None:
        self.sequence = from_sequence
        self.live_from_sequence = 0
        self.oldest_kept = 0
        self.resumable = True
        self.resumes = 0

    def start(self, first: Any) -> list[Any]:
        """The server's first message; returns executions it carried (none from a server
        that says where it stands; all from one before it did)."""
        if not first.HasField("start"):
            self.resumable = False  # a server that cannot resume
            return list(first.executions)
        s = first.start
        self.live_from_sequence, self.oldest_kept = s.live_from_sequence, s.oldest_kept
        if s.live_from_sequence == 0:
            self.resumable = False  # a shard gateway: sequences per shard
        elif self.sequence is None:
            self.sequence = s.live_from_sequence - 1
        return []

    def take(self, batch: Any) -> list[Execution]:
        out = []
        for m in batch.executions:
            if self.resumable and self.sequence is not None:
                if m.sequence <= self.sequence:
                    continue  # never from a server that keeps its word; cheap to be sure
                self.sequence = m.sequence
            out.append(_execution(m))
        return out

    def request(self) -> Any:
        return pb.StreamExecutionsRequest(from_sequence=self.sequence)  # None: unset


class _Where:
    """Where a stream stands, for its reader, and what both clients' streams hold."""

    def __init__(self, stubs: dict[str, Any], metadata: Any, from_sequence: int | None = None,
                 resume: bool = True, reconnect_timeout: float = 30.0) -> None:
        self._stub = stubs["market"]
        self._md = metadata
        self._cursor = _Cursor(from_sequence)
        self._resume = resume
        self.reconnect_timeout = reconnect_timeout
        self._closed = False
        self._pending: list[Any] = []
        self._call: Any = None

    @property
    def sequence(self) -> int | None:
        return self._cursor.sequence

    @property
    def live_from_sequence(self) -> int:
        return self._cursor.live_from_sequence

    @property
    def oldest_kept(self) -> int:
        return self._cursor.oldest_kept

    @property
    def resumes(self) -> int:
        return self._cursor.resumes


class ExecutionStream(_Where):
    """A live executions subscription (``Client.subscribe_executions``): iterate it for
    the account's executions; ``close()`` ends it. ``live_from_sequence``: the first
    execution that came live (those before it, after ``from_sequence``, came from
    history); ``sequence``: the last one yielded; ``resumes``: how many times it
    subscribed again."""

    def __init__(self, stubs: dict[str, Any], metadata: Any, from_sequence: int | None = None,
                 resume: bool = True, reconnect_timeout: float = 30.0) -> None:
        super().__init__(stubs, metadata, from_sequence, resume, reconnect_timeout)
        self._open(retry=False)

    def _open(self, retry: bool) -> None:
        delay, deadline = 0.1, time.monotonic() + self.reconnect_timeout
        while True:
            call = self._stub.StreamExecutions(self._cursor.request(), metadata=self._md)
            try:
                first = next(call)
            except StopIteration:
                err: grpc.RpcError | None = None
            except grpc.RpcError as e:
                err = e
            else:
                self._pending = self._cursor.start(first)
                self._call = call
                return
            call.cancel()
            if self._closed:
                return
            _give_up_unless(retry, err, delay, deadline)
            time.sleep(delay)
            delay = min(2.0, delay * 2)

    def __iter__(self) -> Iterator[Execution]:
        while not self._closed:
            pending, self._pending = self._pending, []
            for m in pending:
                yield _execution(m)
            err: grpc.RpcError | None = None
            try:
                for batch in self._call:
                    yield from self._cursor.take(batch)
            except grpc.RpcError as e:
                err = e
            if self._closed:
                return
            if (not self._resume or not self._cursor.resumable
                    or (err is not None and not _resumable(err))):
                if err is None or err.code() == grpc.StatusCode.CANCELLED:
                    return
                raise _rpc_error(err) from None
            self._cursor.resumes += 1
            try:
                self._open(retry=True)
            except ValueError:  # the client's channel was closed
                return

    def close(self) -> None:
        self._closed = True
        if self._call is not None:
            self._call.cancel()

    def __enter__(self) -> ExecutionStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class AsyncExecutionStream(_Where):
    """As ``ExecutionStream``, for ``AsyncClient``: ``await
    client.subscribe_executions()``, then ``async for``."""

    async def _open(self, retry: bool) -> None:
        delay, deadline = 0.1, time.monotonic() + self.reconnect_timeout
        while True:
            call = self._stub.StreamExecutions(self._cursor.request(), metadata=self._md)
            err: grpc.RpcError | None = None
            try:
                first = await call.read()
            except grpc.RpcError as e:
                err = e
            else:
                if first is not grpc.aio.EOF:
                    self._pending = self._cursor.start(first)
                    self._call = call
                    return
            call.cancel()
            if self._closed:
                return
            _give_up_unless(retry, err, delay, deadline)
            await asyncio.sleep(delay)
            delay = min(2.0, delay * 2)

    async def __aiter__(self) -> AsyncIterator[Execution]:
        while not self._closed:
            pending, self._pending = self._pending, []
            for m in pending:
                yield _execution(m)
            err: grpc.RpcError | None = None
            try:
                while (batch := await self._call.read()) is not grpc.aio.EOF:
                    for e in self._cursor.take(batch):
                        yield e
            except grpc.RpcError as e:
                err = e
            except asyncio.CancelledError:
                self._call.cancel()
                raise
            if self._closed:
                return
            if (not self._resume or not self._cursor.resumable
                    or (err is not None and not _resumable(err))):
                if err is None or err.code() == grpc.StatusCode.CANCELLED:
                    return
                raise _rpc_error(err) from None
            self._cursor.resumes += 1
            await self._open(retry=True)

    def close(self) -> None:
        self._closed = True
        if self._call is not None:
            self._call.cancel()


class _Ended(grpc.RpcError):
    """A stream that ended before its first message."""

    def code(self) -> grpc.StatusCode:
        return grpc.StatusCode.UNAVAILABLE

    def details(self) -> str:
        return "the executions stream ended before it went live"

    def trailing_metadata(self) -> tuple[()]:
        return ()
