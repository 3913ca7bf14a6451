"""The gateway: the one writer that owns the engine.

Every command runs on a single thread, in the order it was submitted: the gateway stamps
it with the time and a sequence number, applies it to the engine (which releases the GIL
while it works), keeps the order records the engine does not (fills, terminal states,
client order ids), and turns the engine's events into market-data and execution messages
that it hands to a publisher. It validates and sequences; it does not match.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import struct
import threading
import time
import zlib
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import orjson

from spotex._core import (
    Engine,
    Event,
    JournalError,
    JournalWriter,
    SpotexError,
    adopt_single_file_journal,
    read_journal,
    retire_journal,
    truncate_journal,
)
from spotex.datadir import DataDirLock

T = TypeVar("T")


JOURNAL = "journal"  # a directory of segments (rust_core/src/journal.rs)
LEGACY_JOURNAL = "journal.log"  # the single-file layout before segments; adopted on start
ARCHIVE = "journal-archive"
# what happens to segments wholly before the oldest kept snapshot
RETENTION = ("delete", "archive", "keep")
# The core's encoding of an AdvanceTime command (rust_core/src/codec.rs, kind 10).
ADVANCE_TIME_COMMAND = bytes([10])
SNAPSHOTS = "snapshots"
_SNAP_MAGIC = b"SPXSNAP1"
# the gateway operations a journal record may name
REPLAYABLE = frozenset({"create_product", "register_capacity", "withdraw_capacity",
                        "set_state", "advance_time", "place", "cancel", "amend"})
log = logging.getLogger("spotex.gateway")


def _op(name: str, **kw: Any) -> dict[str, Any]:
    return {"op": name, "kw": kw}


def write_snapshot(directory: Path, seq: int, engine: bytes, gateway: bytes,
                   keep: int = 3) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    body = (_SNAP_MAGIC + struct.pack("<QQ", seq, len(engine)) + engine
            + struct.pack("<Q", len(gateway)) + gateway)
    body += struct.pack("<I", zlib.crc32(body))
    final = directory / f"snapshot-{seq:016d}.bin"
    tmp = final.with_suffix(".tmp")
    with open(tmp, "wb") as f:
        f.write(body)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, final)
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    for old in sorted(directory.glob("snapshot-*.bin"))[:-keep]:
        old.unlink()
    return final


def read_snapshot(path: Path) -> tuple[int, bytes, bytes]:
    body = path.read_bytes()
    if len(body) < 32 or body[:8] != _SNAP_MAGIC:
        raise JournalError(f"{path}: not a spotex snapshot")
    if zlib.crc32(body[:-4]) != struct.unpack("<I", body[-4:])[0]:
        raise JournalError(f"{path}: checksum mismatch")
    seq, n = struct.unpack("<QQ", body[8:24])
    engine = body[24:24 + n]
    (m,) = struct.unpack("<Q", body[24 + n:32 + n])
    return seq, engine, body[32 + n:32 + n + m]


def newest_snapshot(directory: Path) -> tuple[int, bytes, bytes] | None:
    """The newest snapshot that reads back whole; damaged ones are reported and passed."""
    for path in sorted(directory.glob("snapshot-*.bin"), reverse=True):
        try:
            return read_snapshot(path)
        except JournalError as err:
            log.warning("skipping snapshot: %s", err)
    return None


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

    def __init__(self, flush: Callable[[], None], commit: Callable[[], None]) -> None:
        self._q: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._flush = flush
        self._commit = commit
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
                done.setdefault(loop, []).append((fut, ok, value))
            # Durable first; only then may results or market data of the batch leave.
            try:
                self._commit()
            except BaseException as err:  # noqa: BLE001 - nothing of the batch may be acked
                log.error("journal commit failed: %s", err)
                failed = JournalError(f"could not make the command durable: {err}")
                failed.reason = "JOURNAL_UNAVAILABLE"
                done = {lp: [(f, False, failed) for f, _, _ in rs] for lp, rs in done.items()}
            self._flush()
            for loop, results in done.items():
                if loop is None:
                    _deliver(results)
                else:
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


FSYNC_POLICIES = ("batch", "none")


class Gateway:
    """Owns the engine. With a ``data_dir`` every accepted command is journaled before
    anyone hears of it (``fsync="batch"``: one fsync per writer batch; ``"none"``: the OS
    decides, for tests and benchmarks only), snapshots bound recovery, and construction
    recovers: newest valid snapshot, then the journal tail, to the same state."""

    def __init__(self, publish: Callable[[list[Published]], None] | None = None,
                 clock: Callable[[], int] | None = None, data_dir: Path | None = None,
                 fsync: str = "batch", snapshot_every: int = 200_000,
                 max_open_orders: int = 10_000, segment_bytes: int = 64 << 20,
                 retention: str = "delete") -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync policy must be one of {FSYNC_POLICIES}")
        if retention not in RETENTION:
            raise ValueError(f"journal retention must be one of {RETENTION}")
        self._segment_bytes = segment_bytes
        self._retention = retention
        self.engine = Engine()
        self._publish = publish or (lambda p: None)
        self._outbox: list[Published] = []
        self._clock = clock or (lambda: time.time_ns() // 1000)
        self._fsync = fsync
        self._snapshot_every = snapshot_every
        self._forced_ts: int | None = None
        self.max_open_orders = max_open_orders
        self.journal: JournalWriter | None = None
        self.recovery: dict[str, Any] = {}
        self.last_ts = 0
        # why commands are refused right now (the journal could not be written), or None
        self.unavailable: str | None = None
        self._reset_state()
        self.data_dir = data_dir
        self._lock: DataDirLock | None = None
        if data_dir is not None:
            # before anything is read: a second owner would interleave the journal
            self._lock = DataDirLock(data_dir)
            try:
                self._recover(data_dir)
                self.journal = JournalWriter(data_dir / JOURNAL, segment_bytes)
            except BaseException:
                self._lock.release()
                raise
        self._writer = Writer(self.flush, self.commit)

    def _reset_state(self) -> None:
        self.engine = Engine()
        self.snapshot_seq = 0
        self.sequence = 0  # accepted commands
        self.orders: dict[int, OrderRecord] = {}
        self.by_client_id: dict[tuple[int, str], int] = {}
        self.open_orders: dict[int, int] = {}  # resting orders per account
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
        if self.journal is not None:
            self.journal.close()
        if self._lock is not None:
            self._lock.release()

    def stamp(self) -> int:
        if self._forced_ts is not None:  # replaying the journal
            self.last_ts = self._forced_ts
        else:
            self.last_ts = max(self.last_ts, self._clock())
        return self.last_ts

    def run(self, command: Callable[[int], list[Event]],
            meta: dict[str, Any] | None = None) -> list[Event]:
        """On the writer: stamps and applies one engine command, journals it (``meta``
        names the gateway operation, for recovery), then records and publishes its
        events. Refusals raise and are not journaled; events that time produced before
        the refusal still count (a replay produces them at the next command anyway)."""
        self._check_available()
        ts = self.stamp()
        before = self.engine.now
        try:
            events = command(ts)
        except SpotexError as err:
            if self.engine.now != before:
                # The refused command still moved the clock (and what fell due expired):
                # journal that as a time step, so a replay passes through the same states.
                self._journal(ts, ADVANCE_TIME_COMMAND, _op("advance_time"))
            self._absorb(getattr(err, "events", []), ts)
            raise
        encoded = self.engine.last_command()
        assert encoded is not None
        self._journal(ts, encoded, meta or {})
        self._absorb(events, ts)
        return events

    def _journal(self, ts: int, command: bytes, meta: dict[str, Any]) -> None:
        self.sequence += 1
        if self.journal is not None:
            self.journal.append(self.sequence, ts, command, orjson.dumps(meta))

    def _check_available(self) -> None:
        if self.unavailable is not None:
            raise GatewayError("JOURNAL_UNAVAILABLE", "the journal cannot be written "
                               f"({self.unavailable}); nothing is accepted until it can")

    def commit(self) -> None:
        """On the writer, after a batch: makes its journal records durable, before any
        result or market data of the batch leaves; takes a snapshot when one is due."""
        if self.journal is None or self.unavailable is not None:
            return  # nothing was appended since the failure; try_resume takes it from here
        try:
            if self._fsync == "batch":
                self.journal.sync()
            else:
                # "none" still writes every record out before acknowledging it: a crash
                # of this process loses nothing; only the OS decides when it hits the disk
                self.journal.flush()
        except Exception as err:
            # Nothing of this batch may be acknowledged or published; stop accepting
            # until the journal can be written again (see try_resume).
            self.unavailable = f"{type(err).__name__}: {err}"[:200]
            self._outbox.clear()
            log.error("journal write failed, refusing commands until it recovers: %s", err)
            raise
        if self.sequence - self.snapshot_seq >= self._snapshot_every:
            self.take_snapshot()

    def try_resume(self) -> bool:
        """On the writer, after a journal failure: cuts the journal back to what was
        durable, rebuilds every piece of state from disk (so no command whose caller was
        told it failed survives in memory), reopens the journal and accepts again.
        Returns whether commands are accepted."""
        if self.unavailable is None:
            return True
        assert self.data_dir is not None and self.journal is not None
        try:
            # only the newest segment can hold records that are not durable
            durable = self.journal.durable_point()
            try:
                self.journal.close()
            except Exception:  # noqa: BLE001 - it failed already; the file is cut below
                pass
            if durable is not None:
                truncate_journal(*durable)
            self.journal = JournalWriter(self.data_dir / JOURNAL, self._segment_bytes)
            self.journal.sync()  # the probe: raises while the disk still fails
        except Exception as err:  # noqa: BLE001 - still failing: stay unavailable
            self.unavailable = f"{type(err).__name__}: {err}"[:200]
            return False
        self.unavailable = None  # recovery re-runs commands through the normal path
        journal, self.journal = self.journal, None  # ... and must not journal them again
        self._reset_state()
        self._recover(self.data_dir)
        self.journal = journal
        log.warning("journal writable again: resumed at sequence %d", self.sequence)
        self.unavailable = None
        return True

    # ---- operations (call these on the writer); each is one journaled command -------

    def create_product(self, product_id: str, tick: int, lot: int, close_at: int,
                       open_at: int | None = None) -> list[Event]:
        return self.run(lambda ts: self.engine.create_product(
            product_id, tick=tick, lot=lot, open_at=ts if open_at is None else open_at,
            close_at=close_at, ts=ts), _op("create_product", product_id=product_id, tick=tick,
                                          lot=lot, close_at=close_at, open_at=open_at))

    def register_capacity(self, account: int, cluster_id: str, sku: str, region: str,
                          nodes: list[tuple[str, int]], from_hour: int,
                          to_hour: int) -> list[Event]:
        nodes = [(str(n), int(g)) for n, g in nodes]  # the journal keeps pairs as lists
        return self.run(lambda ts: self.engine.register_capacity(
            account, cluster_id, sku=sku, region=region, nodes=nodes, from_hour=from_hour,
            to_hour=to_hour, ts=ts), _op("register_capacity", account=account,
                                         cluster_id=cluster_id, sku=sku, region=region,
                                         nodes=nodes, from_hour=from_hour, to_hour=to_hour))

    def withdraw_capacity(self, account: int, cluster_id: str, from_hour: int, to_hour: int,
                          nodes: list[str] | None) -> list[Event]:
        return self.run(lambda ts: self.engine.withdraw_capacity(
            account, cluster_id, from_hour=from_hour, to_hour=to_hour, nodes=nodes, ts=ts),
            _op("withdraw_capacity", account=account, cluster_id=cluster_id,
                from_hour=from_hour, to_hour=to_hour, nodes=nodes))

    def set_state(self, what: str, product_id: str) -> list[Event]:
        """``what``: halt, resume or close."""
        if what not in ("halt", "resume", "close"):
            raise ValueError(what)
        fn = getattr(self.engine, what)
        return self.run(lambda ts: fn(product_id, ts=ts),
                        _op("set_state", what=what, product_id=product_id))

    def advance_time(self) -> list[Event]:
        """Moves the engine's clock to now: gate closures and expiries that fell due. A
        quiet step (nothing fell due) is not journaled, so an idle venue's journal stays
        still; the next command carries a later time anyway, and the state hash does not
        cover the clock."""
        if self._forced_ts is not None:  # replaying a journaled step
            return self.run(lambda ts: self.engine.advance_time(ts), _op("advance_time"))
        self._check_available()
        ts = self.stamp()
        events = self.engine.advance_time(ts)
        if events:
            self._journal(ts, ADVANCE_TIME_COMMAND, _op("advance_time"))
            self._absorb(events, ts)
        return events

    # ---- commands (call these on the writer) ---------------------------------------

    def place(self, account: int, client_order_id: str, product: str, side: str, price: int,
              qty: int, order_type: str = "limit", tif: str = "gtc",
              expire_at: int | None = None, post_only: bool = False,
              stp: str = "cancel_newest", cluster: str | None = None,
              gang: int = 1) -> OrderRecord:
        self._check_available()
        replaying = self._forced_ts is not None  # policy limits may have changed since
        if not replaying and self.open_orders.get(account, 0) >= self.max_open_orders:
            raise GatewayError("TOO_MANY_OPEN_ORDERS", f"at most {self.max_open_orders} "
                               "open orders per account; cancel some first")
        if client_order_id and (account, client_order_id) in self.by_client_id:
            raise GatewayError("DUPLICATE_CLIENT_ORDER_ID",
                               f"client_order_id {client_order_id!r} was used before")
        pending = OrderRecord(0, account, client_order_id, product, side, order_type, price, qty,
                              tif, expire_at, cluster, gang, 0, remaining=qty)
        self._pending = pending
        meta = _op("place", account=account, client_order_id=client_order_id, product=product,
                   side=side, price=price, qty=qty, order_type=order_type, tif=tif,
                   expire_at=expire_at, post_only=post_only, stp=stp, cluster=cluster,
                   gang=gang)
        try:
            self.run(lambda ts: self.engine.place(
                account, product, side, price, qty, ts=ts, order_type=order_type, tif=tif,
                expire_at=expire_at, post_only=post_only, stp=stp, cluster_id=cluster,
                gang=gang), meta)
        finally:
            self._pending = None
        return self.orders[pending.order_id]

    def cancel(self, account: int, order_id: int) -> OrderRecord:
        self._check_owner(account, order_id)
        self.run(lambda ts: self.engine.cancel(account, order_id, ts=ts),
                 _op("cancel", account=account, order_id=order_id))
        return self.orders[order_id]

    def amend(self, account: int, order_id: int, price: int | None,
              qty: int | None) -> OrderRecord:
        self._check_owner(account, order_id)
        self.run(lambda ts: self.engine.amend(account, order_id, price=price, qty=qty, ts=ts),
                 _op("amend", account=account, order_id=order_id, price=price, qty=qty))
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
                self.open_orders[p.account] = self.open_orders.get(p.account, 0) + 1
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
                    if rec.remaining == 0:
                        self.open_orders[rec.account] -= 1
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
                self.open_orders[rec.account] -= 1
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

    # ---- snapshots and recovery ----------------------------------------------------

    def take_snapshot(self) -> tuple[int, str]:
        """On the writer: writes the engine and gateway state at the current sequence,
        atomically (temporary file, fsync, rename). Keeps the three newest."""
        assert self.data_dir is not None
        if self.journal is not None:
            self.journal.sync()
        state_hash = self.engine.state_hash()
        gateway = {"sequence": self.sequence, "last_ts": self.last_ts, "state_hash": state_hash,
                   "md_sequence": self.md_sequence,
                   "exec_sequence": {str(k): v for k, v in self.exec_sequence.items()},
                   "orders": [asdict(r) for r in self.orders.values()]}
        write_snapshot(self.data_dir / SNAPSHOTS, self.sequence, self.engine.snapshot(),
                       json.dumps(gateway).encode())
        self.snapshot_seq = self.sequence
        self._retire_segments()
        return self.sequence, state_hash

    def _retire_segments(self) -> None:
        """Segments wholly before the oldest kept snapshot are not needed to recover
        (any kept snapshot plus the journal after it is): remove or archive them."""
        assert self.data_dir is not None
        kept = sorted((self.data_dir / SNAPSHOTS).glob("snapshot-*.bin"))
        if self._retention == "keep" or not kept:
            return
        oldest = int(kept[0].stem.split("-")[1])
        archive = self.data_dir / ARCHIVE if self._retention == "archive" else None
        retired = retire_journal(self.data_dir / JOURNAL, oldest, archive)
        if retired:
            log.info("journal: %s %d segment(s) before sequence %d",
                     "archived" if archive else "removed", len(retired), oldest + 1)

    def _recover(self, data_dir: Path) -> None:
        data_dir.mkdir(parents=True, exist_ok=True)
        snap = newest_snapshot(data_dir / SNAPSHOTS)
        if snap is not None:
            seq, engine_bytes, gateway_bytes = snap
            self.engine = Engine.restore(engine_bytes)
            g = json.loads(gateway_bytes)
            self.sequence = self.snapshot_seq = g["sequence"]
            self.last_ts = g["last_ts"]
            self.md_sequence = g["md_sequence"]
            self.exec_sequence = {int(k): v for k, v in g["exec_sequence"].items()}
            for row in g["orders"]:
                row["fills"] = [FillRecord(**f) for f in row["fills"]]
                rec = OrderRecord(**row)
                self.orders[rec.order_id] = rec
                if rec.remaining > 0:
                    self.open_orders[rec.account] = self.open_orders.get(rec.account, 0) + 1
                if rec.client_order_id:
                    self.by_client_id[(rec.account, rec.client_order_id)] = rec.order_id
            if self.engine.state_hash() != g["state_hash"]:
                raise JournalError(f"snapshot {seq}: state hash does not match its record")
        path = data_dir / JOURNAL
        if adopt_single_file_journal(data_dir / LEGACY_JOURNAL, path):
            log.info("journal: moved %s into %s as its first segment", LEGACY_JOURNAL, path)
        records, torn = read_journal(path, self.sequence)
        if torn is not None:
            segment, offset, nbytes = torn
            log.warning("journal %s: torn tail of %d bytes at offset %d (a crash mid-write); "
                        "recovering to the last good record", segment, nbytes, offset)
            truncate_journal(segment, offset)
        replayed = 0
        for seq, ts, _command, meta in records:
            if seq <= self.sequence:
                continue
            if seq != self.sequence + 1:
                raise JournalError(f"journal starts at {seq}, snapshot ends at {self.sequence}")
            self._forced_ts = ts
            try:
                m = json.loads(meta)
                if m.get("op") not in REPLAYABLE:
                    raise JournalError(f"record {seq}: unknown operation {m.get('op')!r}")
                getattr(self, m["op"])(**m["kw"])
            except (SpotexError, GatewayError, ValueError, TypeError, KeyError) as err:
                raise JournalError(f"replay of record {seq} was refused: {err}") from err
            finally:
                self._forced_ts = None
            replayed += 1
        self._outbox.clear()  # recovery publishes nothing: subscribers start from snapshots
        for product, *_ in self.engine.products():
            bids, asks = self.engine.l2(product, 1 << 30)
            self.levels[(product, "buy")] = {p: (q, n) for p, q, n in bids}
            self.levels[(product, "sell")] = {p: (q, n) for p, q, n in asks}
        self.recovery = {"snapshot_seq": self.snapshot_seq, "replayed": replayed,
                         "sequence": self.sequence, "torn_tail": torn}
        if snap is not None or replayed:
            log.info("recovered to sequence %d (snapshot %d + %d journal records)",
                     self.sequence, self.snapshot_seq, replayed)

    # ---- views (call on the writer for a consistent answer) ------------------------

    def book(self, product: str, depth: int) -> tuple[int, list[Any], list[Any]]:
        bids, asks = self.engine.l2(product, depth)
        return self.md_sequence.get(product, 0), bids, asks
