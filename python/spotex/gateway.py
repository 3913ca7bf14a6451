"""The gateway: the one writer that owns the engine.

Every command runs on a single thread, in the order it was submitted: the gateway stamps
it with the time and a sequence number, applies it to the engine (which releases the GIL
while it works), keeps the order records the engine does not (fills, terminal states,
client order ids), and turns the engine's events into market-data and execution messages
that it hands to a publisher. It validates and sequences; it does not match.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from spotex._core import Engine, Event, SpotexError

T = TypeVar("T")


class GatewayError(Exception):
    """A refusal decided by the gateway itself (not by the engine)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class FillRecord:
    trade_id: int
    price: int
    qty: int
    maker: bool
    ts: int


@dataclass
class OrderRecord:
    order_id: int
    account: int
    client_order_id: str
    product: str
    side: str
    order_type: str
    price: int
    quantity: int
    tif: str
    expire_at: int | None
    cluster: str | None
    gang: int
    created_at: int
    filled: int = 0
    remaining: int = 0
    state: str = "open"  # open, partially_filled, filled, cancelled, expired
    reason: str = ""
    fills: list[FillRecord] = field(default_factory=list)


@dataclass
class Published:
    """What one command produced, for the publisher to fan out on its own thread.

    ``market``: (product, sequence, kind, payload) with kind "trade", "level" or "state".
    ``executions``: (account, sequence, kind, order record, fill, allocation).
    """

    market: list[tuple[str, int, str, Any]] = field(default_factory=list)
    executions: list[tuple[int, int, str, OrderRecord | None, FillRecord | None, Any]] = field(
        default_factory=list)


class Writer:
    """The single thread that runs every command, in submission order. It drains its
    queue in batches: what a batch published goes out in one hand-off, then the batch's
    results, so a busy server pays one cross-thread wake-up per batch, not per command."""

    MAX_BATCH = 1024

    def __init__(self, flush: Callable[[], None]) -> None:
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._flush = flush
        self._thread = threading.Thread(target=self._run, name="spotex-writer", daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        f: Future[T] = Future()
        self._q.put((fn, f, None))
        return f

    def submit_async(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        loop = asyncio.get_running_loop()
        f: asyncio.Future[T] = loop.create_future()
        self._q.put((fn, f, loop))
        return f

    def stop(self) -> None:
        self._q.put(None)
        self._thread.join()

    def _run(self) -> None:
        while True:
            item = self._q.get()
            batch = [item]
            while item is not None and len(batch) < self.MAX_BATCH:
                try:
                    item = self._q.get_nowait()
                except queue.Empty:
                    break
                batch.append(item)
            done: dict[Any, list[tuple[Any, bool, Any]]] = {}
            for it in batch:
                if it is None:
                    continue
                fn, fut, loop = it
                try:
                    ok, value = True, fn()
                except BaseException as err:  # noqa: BLE001 - handed to the caller
                    ok, value = False, err
                if loop is None:
                    fut.set_result(value) if ok else fut.set_exception(value)
                else:
                    done.setdefault(loop, []).append((fut, ok, value))
            self._flush()
            for loop, results in done.items():
                loop.call_soon_threadsafe(_deliver, results)
            if batch[-1] is None:
                return


def _deliver(results: list[tuple[Any, bool, Any]]) -> None:
    for fut, ok, value in results:
        if fut.cancelled():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


class Gateway:
    def __init__(self, publish: Callable[[list[Published]], None] | None = None,
                 clock: Callable[[], int] | None = None) -> None:
        self.engine = Engine()
        self._publish = publish or (lambda p: None)
        self._outbox: list[Published] = []
        self._writer = Writer(self.flush)
        self._clock = clock or (lambda: time.time_ns() // 1000)
        self.sequence = 0  # accepted commands
        self.last_ts = 0
        self.orders: dict[int, OrderRecord] = {}
        self.by_client_id: dict[tuple[int, str], int] = {}
        self.md_sequence: dict[str, int] = {}
        # the last published (quantity, orders) of every level, per (product, side)
        self.levels: dict[tuple[str, str], dict[int, tuple[int, int]]] = {}
        self.exec_sequence: dict[int, int] = {}
        self._pending: OrderRecord | None = None

    # ---- the writer ----------------------------------------------------------------

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Runs ``fn`` on the writer thread, after everything submitted before it."""
        return self._writer.submit(fn)

    def submit_async(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """As ``submit``, for a caller on an event loop: the result arrives on that loop."""
        return self._writer.submit_async(fn)

    def flush(self) -> None:
        """On the writer: hands what was published so far to the publisher, in order."""
        if self._outbox:
            out, self._outbox = self._outbox, []
            self._publish(out)

    def call(self, fn: Callable[[], T]) -> T:
        return self.submit(fn).result()

    def close(self) -> None:
        self._writer.stop()

    def stamp(self) -> int:
        self.last_ts = max(self.last_ts, self._clock())
        return self.last_ts

    def run(self, command: Callable[[int], list[Event]]) -> list[Event]:
        """On the writer: stamps and applies one engine command, then records and
        publishes its events. Refusals raise; events time produced first still count."""
        ts = self.stamp()
        try:
            events = command(ts)
        except SpotexError as err:
            self._absorb(getattr(err, "events", []), ts)
            raise
        self.sequence += 1
        self._absorb(events, ts)
        return events

    # ---- commands (call these on the writer) ---------------------------------------

    def place(self, account: int, client_order_id: str, product: str, side: str, price: int,
              qty: int, order_type: str = "limit", tif: str = "gtc",
              expire_at: int | None = None, post_only: bool = False,
              stp: str = "cancel_newest", cluster: str | None = None,
              gang: int = 1) -> OrderRecord:
        if client_order_id and (account, client_order_id) in self.by_client_id:
            raise GatewayError("DUPLICATE_CLIENT_ORDER_ID",
                               f"client_order_id {client_order_id!r} was used before")
        pending = OrderRecord(0, account, client_order_id, product, side, order_type, price, qty,
                              tif, expire_at, cluster, gang, 0, remaining=qty)
        self._pending = pending
        try:
            self.run(lambda ts: self.engine.place(
                account, product, side, price, qty, ts=ts, order_type=order_type, tif=tif,
                expire_at=expire_at, post_only=post_only, stp=stp, cluster_id=cluster,
                gang=gang))
        finally:
            self._pending = None
        return self.orders[pending.order_id]

    def cancel(self, account: int, order_id: int) -> OrderRecord:
        self._check_owner(account, order_id)
        self.run(lambda ts: self.engine.cancel(account, order_id, ts=ts))
        return self.orders[order_id]

    def amend(self, account: int, order_id: int, price: int | None,
              qty: int | None) -> OrderRecord:
        self._check_owner(account, order_id)
        self.run(lambda ts: self.engine.amend(account, order_id, price=price, qty=qty, ts=ts))
        return self.orders[order_id]

    def _check_owner(self, account: int, order_id: int) -> None:
        rec = self.orders.get(order_id)
        if rec is not None and rec.account != account:
            raise GatewayError("NOT_OWNER", "the order belongs to another account")

    # ---- events into records and messages ------------------------------------------

    def _absorb(self, events: list[Event], ts: int) -> None:
        if not events:
            return
        out = Published()
        # levels the events may have changed: (product, side, price)
        touched: dict[tuple[str, str, int], None] = {}
        for e in events:
            kind = e.kind
            if kind == "accepted":
                p = self._pending
                assert p is not None and e.order_id is not None
                p.order_id = e.order_id
                p.created_at = ts
                self.orders[e.order_id] = p
                touched[(p.product, p.side, p.price)] = None
                if p.client_order_id:
                    self.by_client_id[(p.account, p.client_order_id)] = e.order_id
                self._execution(out, p.account, "accepted", p)
            elif kind == "trade":
                assert e.order_id is not None and e.maker_order is not None
                assert e.price is not None and e.qty is not None and e.trade_id is not None
                assert e.product is not None
                maker_rec = self.orders[e.maker_order]
                touched[(maker_rec.product, maker_rec.side, maker_rec.price)] = None
                for oid, maker in ((e.maker_order, True), (e.order_id, False)):
                    rec = self.orders[oid]
                    fill = FillRecord(e.trade_id, e.price, e.qty, maker, ts)
                    rec.fills.append(fill)
                    rec.filled += e.qty
                    rec.remaining -= e.qty
                    rec.state = "filled" if rec.remaining == 0 else "partially_filled"
                    self._execution(out, rec.account, "trade", rec, fill)
                out.market.append((e.product, self._md_next(e.product), "trade",
                                   (e.trade_id, e.price, e.qty, e.side, ts)))
            elif kind == "allocated":
                a = e.allocation
                assert a is not None
                self._execution(out, a.buyer, "allocated", self.orders[a.buy_order], None, a)
                if a.seller != a.buyer:
                    self._execution(out, a.seller, "allocated", self.orders[a.sell_order], None, a)
            elif kind in ("cancelled", "expired"):
                assert e.order_id is not None
                rec = self.orders[e.order_id]
                touched[(rec.product, rec.side, rec.price)] = None
                rec.remaining = 0
                rec.state = kind
                rec.reason = e.reason or ""
                self._execution(out, rec.account, kind, rec)
            elif kind == "amended":
                assert e.order_id is not None and e.qty is not None and e.price is not None
                rec = self.orders[e.order_id]
                touched[(rec.product, rec.side, rec.price)] = None
                touched[(rec.product, rec.side, e.price)] = None
                rec.price = e.price
                rec.remaining = e.qty
                rec.quantity = rec.filled + e.qty
                self._execution(out, rec.account, "amended", rec)
            elif kind == "product_state":
                assert e.product is not None
                out.market.append((e.product, self._md_next(e.product), "state", e.state))
        for product, side, price in touched:
            level = self.engine.level(product, side, price)
            known = self.levels.setdefault((product, side), {})
            if known.get(price, (0, 0)) != level:
                if level[0]:
                    known[price] = level
                else:
                    known.pop(price, None)
                out.market.append((product, self._md_next(product), "level",
                                   (side, price, *level)))
        self._outbox.append(out)

    def _md_next(self, product: str) -> int:
        n = self.md_sequence.get(product, 0) + 1
        self.md_sequence[product] = n
        return n

    def _execution(self, out: Published, account: int, kind: str, rec: OrderRecord | None,
                   fill: FillRecord | None = None, allocation: Any = None) -> None:
        n = self.exec_sequence.get(account, 0) + 1
        self.exec_sequence[account] = n
        out.executions.append((account, n, kind, rec, fill, allocation))

    # ---- views (call on the writer for a consistent answer) ------------------------

    def book(self, product: str, depth: int) -> tuple[int, list[Any], list[Any]]:
        bids, asks = self.engine.l2(product, depth)
        return self.md_sequence.get(product, 0), bids, asks
