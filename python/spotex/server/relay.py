"""Market-data relays: the fan-out to many market-data subscribers, in processes of their
own, off the order path.

A relay takes ONE ``StreamMarketData`` stream of every product from its upstream (a
spotex server, or a gateway), keeps each product's whole book from it, and serves
``spotex.v1.Market/StreamMarketData`` to its own subscribers: the same messages, the
same per-product sequences, the same snapshot first. The server then sends each round
once per relay instead of once per subscriber (with 1,000 subscribers, grpc.aio's cost
per message on the server's event loop was what slowed order entry 33-40x).

Subscribers are authenticated by the upstream, with the same checks as a subscription
made there: the relay opens the subscriber's own subscription upstream, with the
subscriber's token and products, reads its first message (the snapshot) and closes it.
A refusal there (an unknown or revoked token, a disabled account, an unknown product,
an over-long list) is the subscriber's refusal, with the same status, message and
details. The relay then waits until its own copy of those products is at least as
recent as that snapshot, so its first message is never older than the server's would
have been.

Conflation: a subscriber whose queue holds more than ``subscriber_queue`` updates (it
reads slower than the market moves) is not dropped, as it would be on the server: its
queued updates are discarded, and its next message carries a fresh snapshot of every
product it missed updates of, at the relay's latest sequence, after which deltas follow
again (sequence = snapshot's + 1). The jump is announced by the snapshot: a snapshot at
sequence S after a delta at N tells the subscriber that N+1 .. S-1 were conflated away
(trades among them included; the trade tape has them). Nothing is ever skipped without
a snapshot in its place.

When the upstream stream ends (the server restarted, or it dropped the relay), the relay
keeps its subscribers and subscribes again; each product whose book changed meanwhile
gets a fresh snapshot to its subscribers (conflation again). If the upstream stays
away for ``upstream_grace`` seconds, every subscriber's stream ends with UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex.server.streams import MAX_UPDATES_PER_MESSAGE

log = logging.getLogger(__name__)

METHOD = "/spotex.v1.Market/StreamMarketData"
# the updates a subscriber may have queued before it is conflated
SUBSCRIBER_QUEUE = 10_000
# how long a subscription waits for the relay to catch up with its upstream snapshot
CATCH_UP_SECONDS = 5.0
# how long subscribers are kept while the upstream is away
UPSTREAM_GRACE = 5.0
# the statuses' details a refusal carries through from the upstream
_PASSED = ("grpc-status-details-bin", "spotex-reason", "retry-after-ms")


class RelayError(Exception):
    """The relay cannot start: its upstream cannot be reached or refuses it."""


@dataclass
class RelayTls:
    """TLS of the relay's own listener (``cert``/``key``, client certificates checked
    against ``client_ca`` when given) and the CA it trusts for its upstream."""

    cert: Path | None = None
    key: Path | None = None
    client_ca: Path | None = None
    upstream_ca: Path | None = None


# ---- the books --------------------------------------------------------------------------------


class _Book:
    __slots__ = ("seq", "bids", "asks")

    def __init__(self, seq: int = 0) -> None:
        self.seq = seq
        self.bids: dict[int, tuple[int, int]] = {}  # price: (quantity, orders)
        self.asks: dict[int, tuple[int, int]] = {}

    def levels(self) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        return ([(p, q, n) for p, (q, n) in sorted(self.bids.items(), reverse=True)],
                [(p, q, n) for p, (q, n) in sorted(self.asks.items())])


class UpstreamGap(Exception):
    """The upstream skipped a sequence of a product: its stream is opened again."""


class Books:
    """Every product's whole book as the upstream stream left it, and its sequence."""

    def __init__(self) -> None:
        self.products: dict[str, _Book] = {}
        self._moved = asyncio.Event()  # set whenever a sequence moved

    def seq(self, product: str) -> int:
        b = self.products.get(product)
        return b.seq if b is not None else 0

    def known(self, product: str) -> None:
        """A product the upstream says exists: with no update yet, it is empty at 0."""
        self.products.setdefault(product, _Book())

    def apply(self, u: Any) -> bool:
        """One upstream update. A snapshot replaces the book; True when it changed what
        the relay had (its subscribers need the snapshot)."""
        kind = u.WhichOneof("payload")
        pid = u.product_id
        if kind == "snapshot":
            b = _Book(u.sequence)
            b.bids = {lv.price_micros: (lv.quantity, lv.orders) for lv in u.snapshot.bids}
            b.asks = {lv.price_micros: (lv.quantity, lv.orders) for lv in u.snapshot.asks}
            old = self.products.get(pid)
            self.products[pid] = b
            changed = (old is None or old.seq != b.seq or old.bids != b.bids
                       or old.asks != b.asks)
            return changed
        b = self.products.setdefault(pid, _Book())
        if u.sequence != b.seq + 1:
            raise UpstreamGap(f"{pid}: sequence {u.sequence} after {b.seq}")
        b.seq = u.sequence
        if kind == "level":
            lv = u.level
            side = b.bids if lv.side == pb.SIDE_BUY else b.asks
            if lv.quantity == 0:
                side.pop(lv.price_micros, None)
            else:
                side[lv.price_micros] = (lv.quantity, lv.orders)
        return False

    def moved(self) -> None:
        self._moved.set()
        self._moved = asyncio.Event()

    async def caught_up(self, seqs: dict[str, int], timeout: float) -> bool:
        """Waits until every product is at least at its sequence in ``seqs``."""
        deadline = time.monotonic() + timeout
        while any(self.seq(p) < s for p, s in seqs.items()):
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._moved.wait(), left)
        return True

    def snapshots(self, products: Iterable[str]) -> bytes:
        """A MarketDataBatch of the whole books of ``products``, in product-id order,
        as the server's snapshot message is."""
        batch = pb.MarketDataBatch()
        for pid in sorted(products):
            b = self.products.get(pid) or _Book()
            bids, asks = b.levels()
            batch.updates.append(pb.MarketData(
                product_id=pid, sequence=b.seq, snapshot=pb.Book(
                    product_id=pid, sequence=b.seq,
                    bids=[pb.Level(price_micros=p, quantity=q, orders=n) for p, q, n in bids],
                    asks=[pb.Level(price_micros=p, quantity=q, orders=n)
                          for p, q, n in asks])))
        out: bytes = batch.SerializeToString()
        return out


# ---- one subscriber ------------------------------------------------------------------------------


class Feed:
    """What one subscriber has yet to receive: encoded batches (with the products each
    holds), bounded in updates. Past the bound it is conflated: what is queued is
    discarded and its products marked stale; the next message is their snapshot, taken
    when it is sent (so the deltas that follow continue from it). While any product is
    stale nothing is queued: what arrives only adds its products to the stale ones."""

    def __init__(self, products: frozenset[str] | None, limit: int, books: Books) -> None:
        self.products = products  # None: every product
        self.limit = limit
        self.books = books
        self.entries: collections.deque[tuple[int, bytes, Iterable[str]]] = collections.deque()
        self.size = 0
        self.stale: set[str] = set()
        self.first = True  # the subscription's first message, a snapshot, is still due
        self.ended: str | None = None  # why the relay ends this stream
        self.conflations = 0
        self._ready = asyncio.Event()

    def offer(self, batch: bytes, updates: int, products: Iterable[str]) -> None:
        if self.stale or self.first:
            self.stale.update(products)
        elif self.size + updates > self.limit:
            self.conflate(products)
            return
        else:
            self.entries.append((updates, batch, products))
            self.size += updates
        self._ready.set()

    def conflate(self, products: Iterable[str] = ()) -> None:
        """Everything queued is replaced by a snapshot of its products (and of
        ``products``), sent next."""
        if not self.stale and not self.first:
            self.conflations += 1
        for _, _, ps in self.entries:
            self.stale.update(ps)
        self.stale.update(products)
        self.entries.clear()
        self.size = 0
        self._ready.set()

    def end(self, why: str) -> None:
        self.ended = why
        self._ready.set()

    async def take(self, most: int) -> bytes | None:
        """The next message: a snapshot of the stale products, else every queued batch
        joined (about ``most`` updates); None once the relay ends the stream."""
        while not self.entries and not self.stale and not self.first:
            if self.ended is not None:
                return None
            self._ready.clear()
            await self._ready.wait()
        if self.ended is not None:
            return None
        if self.first or self.stale:
            # the books as they are now: every delta queued after this continues them
            out = self.books.snapshots(self.stale)
            self.stale.clear()
            self.first = False
            return out
        parts: list[bytes] = []
        taken = 0
        while self.entries and taken < most:
            n, batch, _ = self.entries.popleft()
            self.size -= n
            taken += n
            parts.append(batch)
        return b"".join(parts)


# ---- the relay ----------------------------------------------------------------------------------


def _channel(target: str, ca: Path | None) -> grpc.aio.Channel:
    options = [("grpc.max_receive_message_length", 1 << 30)]
    if ca is None:
        return grpc.aio.insecure_channel(target, options=options)
    return grpc.aio.secure_channel(
        target, grpc.ssl_channel_credentials(root_certificates=ca.read_bytes()), options)


class Relay:
    """One upstream stream, many subscribers. ``await start()``, then ``await stop()``."""

    def __init__(self, upstream: str, token: str, *, subscriber_queue: int = SUBSCRIBER_QUEUE,
                 upstream_ca: Path | None = None, upstream_grace: float = UPSTREAM_GRACE,
                 catch_up: float = CATCH_UP_SECONDS) -> None:
        self.upstream = upstream
        self.limit = subscriber_queue
        self.grace = upstream_grace
        self.catch_up = catch_up
        self.books = Books()
        self.feeds: list[Feed] = []
        self._md = (("authorization", f"Bearer {token}"),)
        self._channel = _channel(upstream, upstream_ca)
        self._stream = self._channel.unary_stream(
            METHOD, request_serializer=pb.StreamMarketDataRequest.SerializeToString,
            response_deserializer=None)
        self._task: asyncio.Task[None] | None = None
        self._connected = False
        self.updates_in = 0
        self.reconnects = 0
        # filtered subscribers' batch of the current upstream message, per product set
        self._cut: dict[frozenset[str], tuple[bytes, int, list[str]] | None] = {}

    # the upstream side

    async def start(self, timeout: float = 10.0) -> None:
        """Subscribes upstream and takes its snapshot; RelayError when the upstream cannot
        be reached in ``timeout`` seconds, or refuses the relay's token."""
        call = self._stream(pb.StreamMarketDataRequest(), metadata=self._md)
        try:
            first = await asyncio.wait_for(call.read(), timeout)
        except TimeoutError:
            call.cancel()
            raise RelayError(f"cannot reach the upstream {self.upstream} "
                             f"(no answer in {timeout:g} s)") from None
        except grpc.aio.AioRpcError as err:
            call.cancel()
            if err.code() == grpc.StatusCode.UNAVAILABLE:
                raise RelayError(f"cannot reach the upstream {self.upstream}: "
                                 f"{err.details()}") from None
            raise RelayError(f"the upstream {self.upstream} refused the relay: "
                             f"{err.code().name}: {err.details()}") from None
        if first is grpc.aio.EOF:
            raise RelayError(f"the upstream {self.upstream} ended the stream at once")
        self._connected = True
        self._receive(first)
        self._task = asyncio.create_task(self._follow(call))

    async def _follow(self, call: Any) -> None:
        """Reads the upstream stream; subscribes again whenever it ends."""
        lost_at: float | None = None
        wait = 0.1
        while True:
            try:
                while (raw := await call.read()) is not grpc.aio.EOF:
                    if lost_at is not None:
                        log.info("upstream %s is back after %.1f s", self.upstream,
                                 time.monotonic() - lost_at)
                        lost_at, wait = None, 0.1
                        self._connected = True
                    self._receive(raw)
                why = "the upstream ended the stream"
            except grpc.aio.AioRpcError as err:
                why = f"{err.code().name}: {err.details()}"
            except UpstreamGap as gap:
                why = f"a gap in the upstream's sequence ({gap})"
            call.cancel()
            self._connected = False
            if lost_at is None:
                lost_at = time.monotonic()
                log.warning("lost the upstream %s (%s); subscribing again", self.upstream, why)
            elif time.monotonic() - lost_at > self.grace and self.feeds:
                log.warning("the upstream %s is still away after %.0f s: ending %d "
                            "subscribers' streams", self.upstream, self.grace, len(self.feeds))
                for f in list(self.feeds):
                    f.end(f"the relay lost its upstream {self.upstream}; subscribe again")
            await asyncio.sleep(wait)
            wait = min(wait * 2, 2.0)
            self.reconnects += 1
            call = self._stream(pb.StreamMarketDataRequest(), metadata=self._md)

    def _receive(self, raw: bytes) -> None:
        """One upstream message: the books move, then each subscriber is offered what it
        is due from it (subscribers of every product get the message as it came)."""
        batch = pb.MarketDataBatch.FromString(raw)
        updates = batch.updates
        self.updates_in += len(updates)
        renewed: set[str] = set()
        products: list[str] = []
        has_snapshot = False
        for u in updates:
            if u.WhichOneof("payload") == "snapshot":
                has_snapshot = True
                if self.books.apply(u):
                    renewed.add(u.product_id)
            else:
                self.books.apply(u)
            if not products or products[-1] != u.product_id:
                products.append(u.product_id)
        self.books.moved()
        if has_snapshot:
            # a (re)subscription's snapshot: subscribers of a product it changed get it
            # as a snapshot of their own; the deltas are cut as for filtered subscribers
            deltas = [u for u in updates if u.WhichOneof("payload") != "snapshot"]
            for f in self.feeds:
                mine = renewed if f.products is None else renewed & f.products
                if mine:
                    f.conflate(mine)
            raw = pb.MarketDataBatch(updates=deltas).SerializeToString()
            updates = deltas
            products = list(dict.fromkeys(u.product_id for u in deltas))
            if not deltas:
                return
        self._cut.clear()
        for f in self.feeds:
            if f.products is None:
                f.offer(raw, len(updates), products)
                continue
            if f.products not in self._cut:
                self._cut[f.products] = self._cut_for(f.products, updates)
            cut = self._cut[f.products]
            if cut is not None:
                f.offer(cut[0], cut[1], cut[2])

    @staticmethod
    def _cut_for(products: frozenset[str], updates: Any
                 ) -> tuple[bytes, int, list[str]] | None:
        mine = [u for u in updates if u.product_id in products]
        if not mine:
            return None
        return (pb.MarketDataBatch(updates=mine).SerializeToString(), len(mine),
                list(dict.fromkeys(u.product_id for u in mine)))

    # the subscribers' side

    async def subscribe(self, request: Any, context: Any) -> AsyncIterator[bytes]:
        """``StreamMarketData`` for one subscriber: checked upstream with its own token,
        then served from the relay's books and the upstream's deltas."""
        seqs = await self._check(request, context)
        if not await self.books.caught_up(seqs, self.catch_up):
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                "the relay is behind its upstream; subscribe again")
        for p in seqs:
            self.books.known(p)
        wanted = frozenset(request.product_ids) or None
        f = Feed(wanted, self.limit, self.books)
        f.stale.update(wanted if wanted is not None else self.books.products)
        self.feeds.append(f)
        try:
            while (m := await f.take(MAX_UPDATES_PER_MESSAGE)) is not None:
                yield m
            if f.ended is not None:
                await context.abort(grpc.StatusCode.UNAVAILABLE, f.ended)
        finally:
            self.feeds.remove(f)

    async def _check(self, request: Any, context: Any) -> dict[str, int]:
        """The subscription as the upstream answers it for this subscriber: refused
        with the upstream's own status, or the sequence of each product's snapshot."""
        if not self._connected:
            await context.abort(grpc.StatusCode.UNAVAILABLE,
                                f"the relay has lost its upstream {self.upstream}; "
                                "try again shortly")
        md = tuple((k, v) for k, v in (context.invocation_metadata() or ())
                   if k == "authorization")
        call = self._stream(request, metadata=md, timeout=self.catch_up + 5)
        try:
            first = await call.read()
        except grpc.aio.AioRpcError as err:
            trailing = tuple((k, v) for k, v in (err.trailing_metadata() or ())
                             if k in _PASSED)
            await context.abort(err.code(), err.details() or "", trailing)
        finally:
            call.cancel()
        seqs: dict[str, int] = {}
        if first is not grpc.aio.EOF:
            for u in pb.MarketDataBatch.FromString(first).updates:
                seqs[u.product_id] = max(seqs.get(u.product_id, 0), u.sequence)
        return seqs

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for f in list(self.feeds):
            f.end("the relay is stopping")
        await self._channel.close()


def handlers(relay: Relay) -> grpc.GenericRpcHandler:
    """The Market service with StreamMarketData only (anything else: UNIMPLEMENTED)."""
    return grpc.method_handlers_generic_handler("spotex.v1.Market", {
        "StreamMarketData": grpc.unary_stream_rpc_method_handler(
            relay.subscribe, request_deserializer=pb.StreamMarketDataRequest.FromString)})


async def run_relay(upstream: str, listen: str, token: str, *,
                    subscriber_queue: int = SUBSCRIBER_QUEUE, tls: RelayTls | None = None,
                    connect_timeout: float = 10.0, exit_with: int | None = None,
                    ready: Callable[[int], None] | None = None,
                    stop: asyncio.Event | None = None) -> None:
    """Runs a relay until ``stop`` is set (or SIGTERM/SIGINT when none is given), or the
    process ``exit_with`` is gone (the server that started it)."""
    import signal

    from spotex.server.limits import ListenError

    tls = tls or RelayTls()
    relay = Relay(upstream, token, subscriber_queue=subscriber_queue,
                  upstream_ca=tls.upstream_ca)
    await relay.start(connect_timeout)
    server = grpc.aio.server(options=[("grpc.so_reuseport", 1),
                                      ("grpc.max_receive_message_length", 1 << 20)])
    server.add_generic_rpc_handlers((handlers(relay),))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    try:
        if tls.cert is not None and tls.key is not None:
            creds = grpc.ssl_server_credentials(
                [(tls.key.read_bytes(), tls.cert.read_bytes())],
                root_certificates=tls.client_ca.read_bytes() if tls.client_ca else None,
                require_client_auth=tls.client_ca is not None)
            port = server.add_secure_port(listen, creds)
        else:
            port = server.add_insecure_port(listen)
    except RuntimeError:
        port = 0
    if port == 0:
        await relay.stop()
        raise ListenError(f"cannot listen on {listen} (in use, or not this host's address)")
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    own = stop is None
    stop = stop or asyncio.Event()
    if own:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
    log.info("spotex relay serving market data on %s:%d from %s (pid %d)",
             listen.rsplit(":", 1)[0], port, upstream, os.getpid())
    if ready is not None:
        ready(port)

    async def orphaned() -> None:
        while exit_with is not None and os.getppid() == exit_with:
            await asyncio.sleep(0.5)
        if exit_with is not None:
            log.warning("the server that started this relay is gone: stopping")
            stop.set()
    watch = asyncio.create_task(orphaned())
    try:
        await stop.wait()
    finally:
        watch.cancel()
        await relay.stop()
        await server.stop(0.5)


# ---- relays a server starts and supervises -------------------------------------------------------


def _upstream_of(listen: str, port: int) -> str:
    """Where a relay on this host reaches the server listening on ``listen``."""
    host = listen.rsplit(":", 1)[0]
    if host in ("", "0.0.0.0", "[::]", "::"):
        host = "127.0.0.1"
    return f"{host}:{port}"


class RelayProcesses:
    """``spotex serve --market-data-relays N``: N ``spotex relay`` processes, all serving
    on one address (the port shared, SO_REUSEPORT: the kernel spreads subscribers'
    connections over them), each following the server with a token the server made for
    them (valid for StreamMarketData only, for this run of the server). A relay that
    dies is started again (cluster.supervise's waits); they stop with the server, and
    each stops on its own if the server is gone (killed)."""

    def __init__(self, n: int, upstream: str, listen: str, *, subscriber_queue: int,
                 nice: int = 10, log_format: str = "text") -> None:
        import secrets

        self.n = n
        self.upstream = upstream
        self.listen = listen
        self.token = secrets.token_urlsafe(32)
        self.subscriber_queue = subscriber_queue
        self.nice = nice
        self.log_format = log_format
        self.procs: list[Any] = [None] * n
        self._supervisor: Any = None

    def _start(self, i: int) -> None:
        import subprocess
        import sys

        self.procs[i] = subprocess.Popen(
            [sys.executable, "-m", "spotex.cli", "relay", "--upstream", self.upstream,
             "--listen", self.listen, "--subscriber-queue", str(self.subscriber_queue),
             "--nice", str(self.nice), "--exit-with", str(os.getpid()),
             "--log-format", self.log_format],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
            env={**os.environ, "SPOTEX_RELAY_TOKEN": self.token})

    def start(self) -> RelayProcesses:
        from spotex.server.supervise import Supervisor, Watched

        for i in range(self.n):
            self._start(i)
        def watched(i: int) -> Watched:
            return Watched(f"market-data relay {i}", lambda: self.procs[i],
                           lambda: self._start(i))
        self._supervisor = Supervisor([watched(i) for i in range(self.n)]).start()
        return self

    @property
    def pids(self) -> list[int]:
        return [p.pid for p in self.procs if p is not None]

    def stop(self, timeout: float = 5.0) -> None:
        """None is started again; each is asked to stop (SIGTERM), then killed."""
        import subprocess

        if self._supervisor is not None:
            self._supervisor.stop()
        for p in self.procs:
            if p is not None and p.poll() is None:
                p.terminate()
        deadline = time.monotonic() + timeout
        for p in self.procs:
            if p is None:
                continue
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
