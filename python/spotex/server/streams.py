"""Where the writer's output meets the streams: the hub of subscribers' bounded queues
(``Hub``, ``Backlog``), fed on the event loop once per writer round, and a market-data
subscription from its snapshot on (``MarketSubscription``). The gRPC streams and the web
page both read from here."""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable

from spotex.server.host import EngineHost, Published

# the most updates one stream message carries when a subscriber has a backlog
MAX_UPDATES_PER_MESSAGE = 4096


class Hub:
    """Subscribers' bounded queues, fed on the event loop. A subscriber that falls a whole
    queue behind is dropped with a clear status instead of growing memory."""

    def __init__(self) -> None:
        self.market: list[tuple[set[str] | None, Backlog]] = []
        self.executions: dict[int, list[Backlog]] = {}
        # what else follows every round's market data, on the loop and before the
        # subscribers (the web page's tape of recent trades); each must not raise
        self.taps: list[Callable[[list[tuple[str, int, bytes]]], None]] = []

    def drop_all(self) -> None:
        """Ends every stream (they resubscribe): after the state was rebuilt from disk,
        sequence numbers start again from the durable state."""
        for _, q in self.market:
            q.lag()
        for qs in self.executions.values():
            for q in qs:
                q.lag()

    def dispatch(self, out: Published) -> None:
        """One round of the writer: each subscriber gets what it is due from it as one
        queue entry (the exchange's encoded batches, joined: never decoded here), which
        travels as one stream message."""
        if out.market:
            for tap in self.taps:
                tap(out.market)
        if self.market and out.market:
            for products, q in self.market:
                mine = [(n, b) for p, n, b in out.market if products is None or p in products]
                if mine:
                    q.offer(b"".join(b for _, b in mine), sum(n for n, _ in mine))
        for account, n, batch in out.executions:
            for q in self.executions.get(account, ()):
                q.offer(batch, n)


class Backlog:
    """What one subscriber has yet to receive: encoded batches, bounded in the updates
    they hold (whatever the writer's rounds hold). Past the bound the subscriber has
    fallen behind: it gets what is queued, then a clear status, and nothing more is kept
    for it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.entries: collections.deque[tuple[int, bytes]] = collections.deque()
        self.size = 0
        self.lagged = False
        self._ready = asyncio.Event()

    def offer(self, batch: bytes, updates: int, force: bool = False) -> None:
        if self.lagged:
            return
        if not force and self.size + updates > self.limit:
            self.lagged = True
        else:
            self.entries.append((updates, batch))
            self.size += updates
        self._ready.set()

    def lag(self) -> None:
        self.lagged = True
        self._ready.set()

    async def take(self, most: int) -> bytes | None:
        """Every queued batch joined into one (about ``most`` updates at a time), or None
        once lagged and drained."""
        while not self.entries:
            if self.lagged:
                return None
            self._ready.clear()
            await self._ready.wait()
        out: list[bytes] = []
        taken = 0
        while self.entries and taken < most:
            n, batch = self.entries.popleft()
            self.size -= n
            taken += n
            out.append(batch)
        return b"".join(out)


class MarketSubscription:
    """One market-data subscriber, from its snapshot until ``end()``: the writer thread
    takes the snapshot (``snapshot``, run there), and the loop then puts it first in the
    subscriber's queue and registers the queue with the hub, so that the subscriber gets
    every update after the snapshot and none twice. A subscriber that went away while the
    writer was at it (its task cancelled) has ended already: it never registers, rather
    than staying in the hub with no one to read it."""

    def __init__(self, hub: Hub, host: EngineHost, request: bytes,
                 products: set[str] | None, limit: int) -> None:
        self.queue = Backlog(limit)
        self._hub = hub
        self._host = host
        self._request = request  # StreamMarketDataRequest bytes
        self._entry = (products, self.queue)
        self._loop = asyncio.get_running_loop()
        self._ended = False

    def snapshot(self) -> None:
        """On the writer; RefusedError for an unknown product."""
        self._host.flush()  # what came before the snapshot goes out before it registers
        snaps = self._host.ex.market_snapshots(self._request)
        self._loop.call_soon_threadsafe(self._register, snaps)

    def _register(self, snaps: bytes) -> None:
        if not self._ended:
            self.queue.offer(snaps, 1, force=True)
            self._hub.market.append(self._entry)

    def end(self) -> None:
        """Out of the hub at once (call it in ``finally``)."""
        self._ended = True
        if self._entry in self._hub.market:
            self._hub.market.remove(self._entry)
