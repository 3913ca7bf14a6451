"""One shard's engines as the gateway sees them: a channel to each, which one leads,
and the search for a new leader when it is lost (a standby taking over)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from spotex.cluster.routes import ShardSpec
from spotex.server.accounts import Account

log = logging.getLogger(__name__)
MARKET = "spotex.v1.Market"


class ShardError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def _reason(err: grpc.aio.AioRpcError) -> str:
    for key, value in err.trailing_metadata() or ():
        if key == "spotex-reason":
            return str(value)
    return ""


class Engines:
    """One shard's engines: the channels to each, and which one leads."""

    def __init__(self, spec: ShardSpec, token: str, failover_seconds: float,
                 max_message_bytes: int) -> None:
        self.spec = spec
        self.index = spec.index
        self._token = token
        self.failover_seconds = failover_seconds
        options = [("grpc.max_receive_message_length", max_message_bytes),
                   ("grpc.max_send_message_length", max_message_bytes)]
        self.channels = [grpc.aio.insecure_channel(a, options=options)
                         for a in spec.addresses]
        self.leader = 0
        self._methods: dict[tuple[int, str], Any] = {}  # (engine, path): its callable
        self._generation = 0  # changes each time the leader is looked up
        self._finding = asyncio.Lock()
        self.leader_changes = 0  # for metrics: another engine found leading
        self.refused = 0  # for metrics: calls refused SHARD_UNAVAILABLE

    def metadata(self, account: Account) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self._token}"),
                ("spotex-account", str(account.account_id)),
                ("spotex-roles", ",".join(account.roles)))

    async def close(self) -> None:
        for ch in self.channels:
            await ch.close()

    async def _serving(self, i: int, timeout: float) -> bool:
        stub = health_pb2_grpc.HealthStub(self.channels[i])
        try:
            r = await stub.Check(health_pb2.HealthCheckRequest(service=MARKET),
                                 timeout=timeout)
        except grpc.aio.AioRpcError:
            return False
        return bool(r.status == health_pb2.HealthCheckResponse.SERVING)

    async def find_leader(self, seen: int, deadline: float) -> bool:
        """Looks for the engine that serves the Market (health SERVING), until
        ``deadline``; a caller that saw generation ``seen`` and finds it changed uses the
        leader another call found."""
        async with self._finding:
            if self._generation != seen:
                return True
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                order = [(self.leader + k) % len(self.channels)
                         for k in range(len(self.channels))]
                found = await asyncio.gather(*(self._serving(i, min(1.0, left))
                                               for i in order))
                for i, ok in zip(order, found, strict=True):
                    if ok:
                        if i != self.leader:
                            log.warning("shard %d: now led by %s", self.index,
                                        self.spec.addresses[i])
                            self.leader_changes += 1
                        self.leader = i
                        self._generation += 1
                        return True
                await asyncio.sleep(min(0.2, max(0.0, deadline - time.monotonic())))

    async def unary(self, service: str, method: str, body: bytes, account: Account,
                    timeout: float | None, *, command: bool) -> bytes:
        """One call to the shard's leader, the request and answer as bytes. ``command``:
        it changes the venue, so it is sent again only when it surely was not applied."""
        start = time.monotonic()
        wait = self.failover_seconds if timeout is None else min(timeout,
                                                                 self.failover_seconds)
        deadline = start + wait  # for finding a leader; each try has the caller's time
        md = self.metadata(account)
        while True:
            seen, ch = self._generation, self.channels[self.leader]
            ready = ch.get_state(try_to_connect=True) == grpc.ChannelConnectivity.READY
            left = None if timeout is None else max(0.001,
                                                    start + timeout - time.monotonic())
            path = f"/{service}/{method}"
            call = self._methods.get((self.leader, path))
            if call is None:
                call = self._methods[self.leader, path] = ch.unary_unary(path)
            try:
                out: bytes = await call(body, metadata=md, timeout=left)
                return out
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                reason = _reason(err)
                if reason not in ("", "JOURNAL_UNAVAILABLE"):
                    raise
                if reason == "" and ready and command:
                    self.refused += 1
                    raise ShardError("OUTCOME_UNKNOWN", f"shard {self.index}'s engine was "
                                     "lost during the call; it may or may not have been "
                                     "applied: look the order up by its client order id "
                                     "once the shard serves again") from None
                if not await self.find_leader(seen, deadline):
                    self.refused += 1
                    raise ShardError("SHARD_UNAVAILABLE", f"shard {self.index} has no "
                                     f"engine serving after {wait:g} s "
                                     f"({err.details()})") from None

    async def leader_channel(self) -> grpc.aio.Channel:
        """The leader's channel for a stream (looked up first when it is not serving)."""
        seen, i = self._generation, self.leader
        if not await self._serving(i, 1.0):
            await self.find_leader(seen, time.monotonic() + self.failover_seconds)
        return self.channels[self.leader]
