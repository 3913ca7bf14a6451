"""One shard's engines as the gateway sees them: a channel to each, which one leads,
and the search for a new leader when it is lost (a standby taking over).

The search is one task per shard, however many calls wait on it: rounds of health
checks of every engine, until one serves or no caller waits any longer. Each round also
says whether any engine answered at all: a shard none of whose engines can be reached
(connections refused, or no answer within a second) has nothing running that could take
over, and a caller that asks (``dead_fast``, the fan-out views) is refused at once
instead of waiting out the failover time."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex.cluster.routes import ShardSpec
from spotex.server.accounts import Account

log = logging.getLogger(__name__)
MARKET = "spotex.v1.Market"


# a gateway reconnects to a lost engine within this (gRPC's default backs off to 120 s):
# a standby started again must be found by the next failover
RECONNECT_MS = (("grpc.initial_reconnect_backoff_ms", 200),
                ("grpc.min_reconnect_backoff_ms", 200),
                ("grpc.max_reconnect_backoff_ms", 2000))


# what gRPC says when no connection could be made: the request never left
NEVER_CONNECTED = "failed to connect to all addresses"
RECENT = 0.5  # seconds a round of health checks that reached no engine is believed
# an account id no one has: its balance says an engine's default credit limit
PROBE_ACCOUNT = (1 << 63) - 1


class ShardError(Exception):
    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def search_time(failover_seconds: float, timeout: float | None) -> float:
    """How long a call looks for its shard's leader: the failover time, but ending
    before the caller's deadline (by a fifth of it, at most a second) so that the caller
    hears which shard failed rather than its own deadline passing."""
    if timeout is None:
        return failover_seconds
    return max(0.0, min(failover_seconds, timeout - min(1.0, timeout / 5)))


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
                   ("grpc.max_send_message_length", max_message_bytes), *RECONNECT_MS]
        self.channels = [grpc.aio.insecure_channel(a, options=options)
                         for a in spec.addresses]
        self.leader = 0
        self._methods: dict[tuple[int, str], Any] = {}  # (engine, path): its callable
        self._generation = 0  # changes each time a search finds the leader
        self._search: asyncio.Task[None] | None = None  # the search under way
        self._search_until = 0.0  # it goes on until then unless it finds the leader
        self._round = asyncio.Event()  # set (and replaced) as each round of checks ends
        self.reachable = True  # the last round reached an engine (a leader or a standby)
        self._checked_at = -1.0  # when the last round ended
        self.leader_changes = 0  # for metrics: another engine found leading
        self.refused = 0  # for metrics: calls refused SHARD_UNAVAILABLE

    def metadata(self, account: Account) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self._token}"),
                ("spotex-account", str(account.account_id)),
                ("spotex-roles", ",".join(account.roles)))

    def token_refused(self, i: int) -> str:
        """What is said when engine ``i`` refuses the gateway's token."""
        return (f"shard {self.index}'s engine at {self.spec.addresses[i]} refuses the "
                "gateway's token: the gateway's --gateway-token (SPOTEX_GATEWAY_TOKEN) is "
                "not its engines' --gateway-token; nothing was applied")

    async def token_check(self, timeout: float) -> list[str]:
        """Asks every engine of the shard, with the gateway's token, for a view that
        changes nothing: what is said of each that refuses the token. An engine that does
        not answer within ``timeout`` (not started yet) is not judged."""
        async def one(i: int) -> str | None:
            call = self.channels[i].unary_unary(f"/{MARKET}/ListProducts")
            try:
                await call(b"", metadata=self.metadata(Account(0, "", [], "gateway")),
                           timeout=timeout)
            except grpc.aio.AioRpcError as err:
                if err.code() == grpc.StatusCode.UNAUTHENTICATED:
                    return self.token_refused(i)
            return None
        found = await asyncio.gather(*(one(i) for i in range(len(self.channels))))
        return [x for x in found if x is not None]

    async def default_credit(self, timeout: float) -> list[tuple[str, int]]:
        """Each engine's credit limit for an account without its own (the engine's
        ``--default-credit-limit``; 2**63 - 1: money not checked), read as the balance of
        an account nobody has; engines that do not answer it within ``timeout`` (not
        started, a standby, an engine before money) are left out."""
        probe = pb.GetBalanceRequest(account_id=PROBE_ACCOUNT).SerializeToString()

        async def one(i: int) -> tuple[str, int] | None:
            call = self.channels[i].unary_unary(f"/{MARKET}/GetBalance")
            try:
                got = await call(probe, metadata=self.metadata(
                    Account(0, "", ["operator"], "gateway")), timeout=timeout)
            except grpc.aio.AioRpcError:
                return None
            return self.spec.addresses[i], pb.Balance.FromString(got).credit_limit_micros
        found = await asyncio.gather(*(one(i) for i in range(len(self.channels))))
        return [x for x in found if x is not None]

    async def close(self) -> None:
        for ch in self.channels:
            await ch.close()

    async def _health(self, i: int, timeout: float) -> int | None:
        """Engine ``i``'s health for the Market; None when it did not answer (no
        connection, or not within ``timeout``)."""
        stub = health_pb2_grpc.HealthStub(self.channels[i])
        try:
            r = await stub.Check(health_pb2.HealthCheckRequest(service=MARKET),
                                 timeout=timeout)
        except grpc.aio.AioRpcError:
            return None
        return int(r.status)

    async def _serving(self, i: int, timeout: float) -> bool:
        return bool(await self._health(i, timeout) == health_pb2.HealthCheckResponse.SERVING)

    async def _searching(self) -> None:
        """Rounds of health checks of every engine (the leader first) until one serves
        or ``_search_until`` passes; each round's end wakes the callers waiting."""
        try:
            while True:
                order = [(self.leader + k) % len(self.channels)
                         for k in range(len(self.channels))]
                left = self._search_until - time.monotonic()
                found = await asyncio.gather(*(self._health(i, min(1.0, max(0.05, left)))
                                               for i in order))
                self.reachable = any(h is not None for h in found)
                self._checked_at = time.monotonic()
                serving = [i for i, h in zip(order, found, strict=True)
                           if h == health_pb2.HealthCheckResponse.SERVING]
                if serving:
                    if serving[0] != self.leader:
                        log.warning("shard %d: now led by %s", self.index,
                                    self.spec.addresses[serving[0]])
                        self.leader_changes += 1
                    self.leader = serving[0]
                    self._generation += 1
                    return
                left = self._search_until - time.monotonic()
                if left <= 0:
                    return
                self._round.set()
                self._round = asyncio.Event()
                await asyncio.sleep(min(0.2, left))
        finally:
            self._search = None
            self._round.set()
            self._round = asyncio.Event()

    async def find_leader(self, seen: int, deadline: float, *, dead_fast: bool = False
                          ) -> bool:
        """Waits for the search to find the engine that serves the Market (health
        SERVING), until ``deadline``; a caller that saw generation ``seen`` and finds it
        changed uses the leader another call found. ``dead_fast``: gives up as soon as a
        round reaches none of the shard's engines (one that ended in the last
        ``RECENT`` seconds will do: the caller's own call has just failed too)."""
        if (dead_fast and not self.reachable and self._generation == seen
                and time.monotonic() - self._checked_at < RECENT):
            return False
        while self._generation == seen:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self._search_until = max(self._search_until, deadline)
            if self._search is None:
                self._search = asyncio.create_task(self._searching())
            ended = self._round
            try:
                await asyncio.wait_for(ended.wait(), left)
            except TimeoutError:
                break
            if dead_fast and not self.reachable and self._generation == seen:
                return False
        return self._generation != seen

    async def unary(self, service: str, method: str, body: bytes, account: Account,
                    timeout: float | None, *, command: bool, dead_fast: bool = False
                    ) -> bytes:
        """One call to the shard's leader, the request and answer as bytes. ``command``:
        it changes the venue, so it is sent again only when it surely was not applied.
        ``dead_fast``: refused at once when none of the shard's engines can be reached,
        rather than after waiting for one to come back."""
        start = time.monotonic()
        wait = search_time(self.failover_seconds, timeout)
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
                if err.code() == grpc.StatusCode.UNAUTHENTICATED:
                    # the gateway authenticated the caller: the engine refused the
                    # gateway itself, before applying anything
                    self.refused += 1
                    said = self.token_refused(self.leader)
                    log.error("%s", said)
                    raise ShardError("SHARD_UNAVAILABLE", said) from None
                if err.code() != grpc.StatusCode.UNAVAILABLE:
                    raise
                reason = _reason(err)
                if reason not in ("", "JOURNAL_UNAVAILABLE"):
                    raise
                # a call on a channel still connecting is queued and sent once it connects:
                # only gRPC's "failed to connect" says the request never left
                sent = ready or NEVER_CONNECTED not in (err.details() or "")
                if reason == "" and sent and command:
                    self.refused += 1
                    raise ShardError("OUTCOME_UNKNOWN", f"shard {self.index}'s engine was "
                                     "lost during the call; it may or may not have been "
                                     "applied: look the order up by its client order id "
                                     "once the shard serves again") from None
                if not await self.find_leader(seen, deadline, dead_fast=dead_fast):
                    self.refused += 1
                    if not self.reachable:
                        raise ShardError("SHARD_UNAVAILABLE", f"shard {self.index} has no "
                                         "engine running: none of "
                                         f"{', '.join(self.spec.addresses)} answers "
                                         f"({err.details()})") from None
                    raise ShardError("SHARD_UNAVAILABLE", f"shard {self.index} has no "
                                     f"engine serving after {wait:.3g} s "
                                     f"({err.details()})") from None

    async def leader_channel(self, *, dead_fast: bool = False) -> grpc.aio.Channel:
        """The leader's channel for a stream (looked up first when it is not serving).
        ``dead_fast``: ShardError (``SHARD_UNAVAILABLE``) at once when none of the shard's
        engines can be reached, rather than after the failover time."""
        seen, i = self._generation, self.leader
        if not await self._serving(i, 1.0):
            found = await self.find_leader(seen, time.monotonic() + self.failover_seconds,
                                           dead_fast=dead_fast)
            if dead_fast and not found and not self.reachable:
                self.refused += 1
                raise ShardError("SHARD_UNAVAILABLE", f"shard {self.index} has no engine "
                                 f"running: none of {', '.join(self.spec.addresses)} "
                                 "answers")
        return self.channels[self.leader]
