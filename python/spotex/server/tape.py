"""The trade tape: every trade of the venue on disk, with what is derived from it (candles
at 1m, 1h and 1d per product and per family, each product's trade statistics, and the
published daily index), in one SQLite file of the data directory. Memory stays bounded:
the tape lives on disk, and its own thread folds in each writer round's trades.

The writer hands each round's market data to ``offer`` (a queue put: nothing of the tape
runs on the order path); the tape's thread decodes the trades, folds them through the
pure functions of ``spotex.server.prices`` and commits, with the journal sequence the
round reached, in one transaction. A crash between a round's journal write and its tape
write leaves the tape behind the journal: the next start fills it from the journal
(``fill``), so the tape never lacks a trade the journal holds. Reads run on their own
connection and thread (``read``), after the tape has caught up with what was offered
before them (read your own trades).

Each account's executions are kept in the same file, from the same rounds
(``spotex.server.executions``): what a resumed executions stream catches up from.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import sqlite3
import tempfile
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar

from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex.server import executions as xs
from spotex.server import prices as px
from spotex.server.prices import DAY, INTERVALS, Print

FILE = "tape.sqlite3"
T = TypeVar("T")
log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS trades (trade_id INTEGER PRIMARY KEY, time INTEGER NOT NULL,
  product TEXT NOT NULL, family TEXT NOT NULL, price INTEGER NOT NULL,
  qty INTEGER NOT NULL, aggressor INTEGER NOT NULL, auction INTEGER NOT NULL);
CREATE INDEX IF NOT EXISTS trades_by_product ON trades (product, time, trade_id);
CREATE INDEX IF NOT EXISTS trades_by_family ON trades (family, time, trade_id);
CREATE TABLE IF NOT EXISTS candles (scope TEXT NOT NULL, width INTEGER NOT NULL,
  start INTEGER NOT NULL, ot INTEGER, oid INTEGER, open INTEGER, high INTEGER,
  low INTEGER, ct INTEGER, cid INTEGER, close INTEGER, volume INTEGER, notional INTEGER,
  trades INTEGER, PRIMARY KEY (scope, width, start)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS products (product TEXT PRIMARY KEY, family TEXT NOT NULL,
  volume INTEGER, trades INTEGER, lt INTEGER, lid INTEGER, lprice INTEGER, lqty INTEGER,
  auction INTEGER, aprice INTEGER, aqty INTEGER);
CREATE INDEX IF NOT EXISTS products_by_family ON products (family);
CREATE TABLE IF NOT EXISTS idx (family TEXT NOT NULL, day INTEGER NOT NULL,
  revision INTEGER, status TEXT, price INTEGER, volume INTEGER, trades INTEGER,
  xvolume INTEGER, xtrades INTEGER, median INTEGER, published_at INTEGER,
  prev_price INTEGER, prev_status TEXT, methodology TEXT,
  PRIMARY KEY (family, day)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS idx_log (family TEXT, day INTEGER, revision INTEGER,
  status TEXT, price INTEGER, published_at INTEGER, methodology TEXT);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER);
"""

_CANDLE_UPSERT = """
INSERT INTO candles VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (scope, width, start) DO UPDATE SET
  open = CASE WHEN (excluded.ot, excluded.oid) < (ot, oid) THEN excluded.open ELSE open END,
  ot = CASE WHEN (excluded.ot, excluded.oid) < (ot, oid) THEN excluded.ot ELSE ot END,
  oid = CASE WHEN (excluded.ot, excluded.oid) < (ot, oid) THEN excluded.oid ELSE oid END,
  close = CASE WHEN (excluded.ct, excluded.cid) > (ct, cid) THEN excluded.close ELSE close END,
  ct = CASE WHEN (excluded.ct, excluded.cid) > (ct, cid) THEN excluded.ct ELSE ct END,
  cid = CASE WHEN (excluded.ct, excluded.cid) > (ct, cid) THEN excluded.cid ELSE cid END,
  high = max(high, excluded.high), low = min(low, excluded.low),
  volume = volume + excluded.volume, notional = notional + excluded.notional,
  trades = trades + excluded.trades
"""

_PRODUCT_UPSERT = """
INSERT INTO products VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (product) DO UPDATE SET
  volume = volume + excluded.volume, trades = trades + excluded.trades,
  lprice = CASE WHEN (excluded.lt, excluded.lid) > (lt, lid) THEN excluded.lprice
    ELSE lprice END,
  lqty = CASE WHEN (excluded.lt, excluded.lid) > (lt, lid) THEN excluded.lqty ELSE lqty END,
  lt = CASE WHEN (excluded.lt, excluded.lid) > (lt, lid) THEN excluded.lt ELSE lt END,
  lid = CASE WHEN (excluded.lt, excluded.lid) > (lt, lid) THEN excluded.lid ELSE lid END,
  aprice = CASE WHEN excluded.auction > auction THEN excluded.aprice ELSE aprice END,
  aqty = CASE WHEN excluded.auction > auction THEN excluded.aqty
    WHEN excluded.auction = auction AND auction > 0 THEN aqty + excluded.aqty ELSE aqty END,
  auction = max(auction, excluded.auction)
"""


# a trade as the exchange hands it over: (product, trade id, time, price, GPUs,
# aggressor, auction id)
TradeRow = tuple[str, int, int, int, int, int, int]


def rows_of(trades: Iterable[Print]) -> list[TradeRow]:
    """Prints as the exchange hands trades over (for tests and tools that feed a tape)."""
    return [(t.product, t.trade_id, t.time, t.price, t.qty, t.aggressor, t.auction_id)
            for t in trades]


def trades_of(market: Iterable[tuple[str, int, bytes]]) -> list[Print]:
    """The trades in a writer round's market data (``Published.market``)."""
    out = []
    for product, _, data in market:
        for u in pb.MarketDataBatch.FromString(data).updates:
            if u.WhichOneof("payload") == "trade":
                t = u.trade
                out.append(Print(t.trade_id, t.time_micros, u.product_id or product,
                                 t.price_micros, t.quantity, t.aggressor, t.auction_id))
    return out


# the tape folds what has queued up at least this often, and waits no longer for more
FOLD_PAUSE = 0.02
FOLD_BATCH = 64


class Tape:
    """The tape of one engine. ``path`` None: a temporary file, removed on close (a server
    without a data directory keeps nothing, but memory stays bounded all the same)."""

    def __init__(self, path: Path | None, clock: Callable[[], int] | None = None,
                 keep_executions: int = xs.KEEP) -> None:
        self._temp = path is None
        if path is None:
            fd, name = tempfile.mkstemp(prefix="spotex-tape-", suffix=".sqlite3")
            os.close(fd)
            path = Path(name)
        self.path = path
        self._clock = clock or (lambda: time.time_ns() // 1000)
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA + xs.SCHEMA)
        self.seq = self._meta("seq")
        # the journal sequence through which every execution is written or marked lost
        # (behind ``seq`` in a tape from before executions were kept)
        self.exec_seq = self._meta("exec_seq")
        self.kept = xs.Kept(self._db, keep_executions)
        # every day before this one is published (for every family then traded)
        self.published_through = self._meta("published_through")
        # (journal sequence, clock, market data, executions, the exchange's execution
        # sequences when holes are to be marked)
        self._queue: queue.SimpleQueue[
            tuple[int, int, list[Any], list[tuple[int, int, bytes]], dict[int, int] | None]
            | None] = queue.SimpleQueue()
        self.offered = 0  # items put (by the writer)
        self._done = 0  # items folded in (by the tape's thread)
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self.failed: BaseException | None = None
        self._reader = ThreadPoolExecutor(1, thread_name_prefix="spotex-tape-read")
        self._rdb: sqlite3.Connection | None = None

    # ---- writing (the tape's thread; ``fill`` before it starts) ---------------------

    def _meta(self, key: str) -> int:
        row = self._db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def _set_meta(self, key: str, value: int) -> None:
        self._db.execute("INSERT OR REPLACE INTO meta VALUES (?, ?)", (key, value))

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="spotex-tape", daemon=True)
        self._thread.start()

    def offer(self, seq: int, clock: int, trades: list[TradeRow],
              executions: list[tuple[int, int, bytes]] | None = None) -> None:
        """On the writer: a round's trades as the exchange read them out of the round
        (``(product, trade id, time, price, GPUs, aggressor, auction id)``: no level
        update is decoded for them) and executions (``Published``), the journal sequence
        it reached, and the venue's clock then. Costs a queue put."""
        self.offered += 1
        self._queue.put((seq, clock, trades, executions or [], None))

    def tick(self, clock: int | None = None) -> int:
        """Asks the tape to publish what fell due by ``clock`` (the index of each day that
        ended); returns the mark to ``wait`` for."""
        self.offered += 1
        self._queue.put((0, self._clock() if clock is None else clock, [], [], None))
        return self.offered

    def wait(self, mark: int | None = None, timeout: float = 30.0) -> None:
        """Until everything offered up to ``mark`` (now: everything so far) is folded in."""
        mark = self.offered if mark is None else mark
        with self._cond:
            if not self._cond.wait_for(lambda: self._done >= mark or self.failed is not None,
                                       timeout):
                raise TimeoutError("the trade tape did not catch up")
        if self.failed is not None:
            raise RuntimeError(f"the trade tape failed: {self.failed}")

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            items = [item]
            if item is not None and self._queue.qsize() < FOLD_BATCH:
                # under load, rounds come faster than folds: one transaction for many
                # rounds costs the order path (whose GIL this thread takes) far less than
                # one per round; a reader waits for what it needs at most this long more
                time.sleep(FOLD_PAUSE)
            while True:
                try:
                    items.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            stop = None in items
            work = [i for i in items if i is not None]
            try:
                self._fold(work)
            except BaseException as err:  # noqa: BLE001 - said to every reader
                log.exception("the trade tape failed; the next start fills it from the "
                              "journal")
                with self._cond:
                    self.failed = err
                    self._cond.notify_all()
                return
            with self._cond:
                self._done += len(work)
                self._cond.notify_all()
            if stop:
                return

    def mark_holes(self, sequences: dict[int, int]) -> None:
        """On the writer, once the exchange moved on without publishing (a standby that
        now leads): as ``fill_executions``, in turn with the rounds."""
        self.offered += 1
        self._queue.put((0, 0, [], [], sequences))

    def _fold(self, items: list[tuple[int, int, list[Any], list[Any], Any]]) -> None:
        trades: list[Print] = []
        seq = self.seq
        clock = 0
        synced = self.exec_seq >= self.seq
        with self._db:
            self._db.execute("BEGIN")
            rows: list[tuple[int, int, bytes, int]] = []
            for s, c, market, executions, sequences in items:
                if sequences is not None:
                    if rows:  # the rounds before the holes are marked, in turn
                        self.kept.add(rows)
                        rows = []
                    for account, last, now in self.kept.holes(sequences):
                        log.warning("executions %d..%d of account %d were not kept (led "
                                    "by another engine)", last + 1, now, account)
                trades += [Print(t, ts, p, px, q, a, au) for p, t, ts, px, q, a, au in market]
                rows += [(a, n, b, c) for a, n, b in executions]
                seq = max(seq, s)
                clock = max(clock, c)
            if rows:
                self.kept.add(rows)
            self._add(trades)
            if seq != self.seq:
                self._set_meta("seq", seq)
                if synced:
                    self._set_meta("exec_seq", seq)
            if clock:
                self._publish_due(clock)
        self.seq = seq
        if synced:
            self.exec_seq = max(self.exec_seq, seq)

    def _add(self, trades: list[Print]) -> list[Print]:
        """Inserts the trades the tape lacks (within the caller's transaction) and folds
        them into candles and product statistics; returns those it lacked."""
        new = []
        for t in trades:
            cur = self._db.execute(
                "INSERT OR IGNORE INTO trades VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (t.trade_id, t.time, t.product, px.family(t.product), t.price, t.qty,
                 t.aggressor, t.auction_id))
            if cur.rowcount:
                new.append(t)
        if not new:
            return new
        rows = []
        for width in INTERVALS.values():
            for (scope, start), c in px.candles(new, width).items():
                rows.append((scope, width, start, *c.open_key, c.open, c.high, c.low,
                             *c.close_key, c.close, c.volume, c.notional, c.trades))
        self._db.executemany(_CANDLE_UPSERT, rows)
        self._db.executemany(_PRODUCT_UPSERT, [
            (p, px.family(p), s.volume, s.trades, *s.last_key, s.last_price, s.last_qty,
             s.auction_id, s.auction_price, s.auction_qty)
            for p, s in px.product_stats(new).items()])
        return new

    def _publish_due(self, clock: int) -> None:
        """Publishes the index of every family for every day that ended by ``clock`` and
        is not published yet: from the family's first trading day on, each day a number
        or no_index."""
        today = clock // DAY
        if today <= self.published_through:
            return
        for (fam,) in self._db.execute("SELECT DISTINCT family FROM products").fetchall():
            first = self._first_day(fam)
            if first is None:
                continue
            for day in range(max(first, self.published_through), today):
                self._publish(fam, day, clock)
        self.published_through = today
        self._set_meta("published_through", today)

    def _first_day(self, fam: str) -> int | None:
        row = self._db.execute("SELECT MIN(start) FROM candles WHERE scope = ? AND width = ?",
                               (fam, DAY)).fetchone()
        return None if row[0] is None else int(row[0]) // DAY

    def _publish(self, fam: str, day: int, clock: int) -> bool:
        """Publishes (fam, day) as computed now: a first publication, or a correction
        when it differs from what was published. Returns whether it wrote."""
        v = compute_day(self._db, fam, day)
        old = self._db.execute("SELECT revision, status, price, volume, trades, xvolume, "
                               "xtrades, median FROM idx WHERE family = ? AND day = ?",
                               (fam, day)).fetchone()
        if old is not None and tuple(old[1:]) == (v.status, v.price, v.volume, v.trades,
                                                  v.excluded_volume, v.excluded_trades,
                                                  v.median):
            return False
        revision = 1 if old is None else int(old[0]) + 1
        prev_price, prev_status = (0, "") if old is None else (int(old[2]), str(old[1]))
        self._db.execute("INSERT OR REPLACE INTO idx VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, "
                         "?, ?, ?, ?)",
                         (fam, day, revision, v.status, v.price, v.volume, v.trades,
                          v.excluded_volume, v.excluded_trades, v.median, clock, prev_price,
                          prev_status, px.METHODOLOGY))
        self._db.execute("INSERT INTO idx_log VALUES (?, ?, ?, ?, ?, ?, ?)",
                         (fam, day, revision, v.status, v.price, clock, px.METHODOLOGY))
        if revision > 1:
            log.warning("index %s %s corrected (revision %d): %s %d -> %s %d", fam,
                        px.day_name(day), revision, prev_status, prev_price, v.status,
                        v.price)
        return True

    def fill(self, trades: list[px.JournalTrade], seq: int) -> int:
        """Before the thread starts: the trades of the journal after the tape's sequence
        (a crash between a round's journal write and its tape write), then the sequence
        the journal reached. Days already published that gained trades are published
        again: a correction. Returns the trades the tape lacked."""
        with self._db:
            self._db.execute("BEGIN")
            new = self._add([t.trade for t in trades])
            for fam, day in sorted({(px.family(t.product), t.time // DAY) for t in new}):
                if day < self.published_through:
                    self._publish(fam, day, self._clock())
            self._set_meta("seq", max(seq, self.seq))
        self.seq = max(seq, self.seq)
        return len(new)

    def fill_executions(self, sequences: dict[int, int], seq: int
                        ) -> list[tuple[int, int, int]]:
        """Before the thread starts, when executions were not written through the
        journal's sequence ``seq`` (a crash, or a tape older than kept executions):
        each account's execution sequence in the exchange now. Whatever it numbered past
        what is written is lost (the journal cannot give executions back), and what is
        kept for the account then begins after it. Returns the holes: ``(account, last
        written, exchange's)``."""
        with self._db:
            self._db.execute("BEGIN")
            holes = self.kept.holes(sequences)
            self._set_meta("exec_seq", max(seq, self.exec_seq))
        self.exec_seq = max(seq, self.exec_seq)
        return holes

    def close(self) -> None:
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(30)
        self._reader.shutdown(wait=True)
        self._db.close()
        if self._temp:
            for suffix in ("", "-wal", "-shm"):
                Path(str(self.path) + suffix).unlink(missing_ok=True)

    # ---- reading (the reader thread) -------------------------------------------------

    def read(self, fn: Callable[[sqlite3.Connection], T], mark: int | None = None
             ) -> asyncio.Future[T]:
        """``fn(connection)`` on the reader thread, once the tape has folded in what was
        offered before this call (or up to ``mark``)."""
        mark = self.offered if mark is None else mark

        def go() -> T:
            self.wait(mark)
            return fn(self._connection())
        return asyncio.get_running_loop().run_in_executor(self._reader, go)

    def read_sync(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """As ``read``, from a thread without an event loop (tests, tools)."""
        mark = self.offered

        def go() -> T:
            self.wait(mark)
            return fn(self._connection())
        return self._reader.submit(go).result()

    def _connection(self) -> sqlite3.Connection:
        if self._rdb is None:
            self._rdb = sqlite3.connect(self.path, isolation_level=None,
                                        check_same_thread=False)
        return self._rdb


# ---- queries (each takes the reader's connection) --------------------------------------


def _scope(product: str, fam: str) -> tuple[str, str]:
    return ("product", product) if product else ("family", fam)


def query_trades(db: sqlite3.Connection, product: str, fam: str, lo: int, hi: int,
                 before: tuple[int, int] | None, limit: int) -> list[Print]:
    """Newest first: the trades of the product (or family) with time in [lo, hi), before
    the tape position ``before`` (time, trade id)."""
    col, value = _scope(product, fam)
    sql = (f"SELECT trade_id, time, product, price, qty, aggressor, auction FROM trades "
           f"WHERE {col} = ? AND time >= ? AND time < ?")
    args: list[Any] = [value, lo, hi]
    if before is not None:
        sql += " AND (time, trade_id) < (?, ?)"
        args += list(before)
    sql += " ORDER BY time DESC, trade_id DESC LIMIT ?"
    return [Print(*r) for r in db.execute(sql, (*args, limit))]


def query_candles(db: sqlite3.Connection, scope: str, width: int, lo: int, hi: int,
                  limit: int) -> list[px.Candle]:
    """Oldest first: the candles of ``scope`` starting in [lo, hi)."""
    rows = db.execute("SELECT start, ot, oid, open, high, low, ct, cid, close, volume, "
                      "notional, trades FROM candles WHERE scope = ? AND width = ? AND "
                      "start >= ? AND start < ? ORDER BY start LIMIT ?",
                      (scope, width, lo, hi, limit))
    return [px.Candle(r[0], (r[1], r[2]), r[3], r[4], r[5], (r[6], r[7]), r[8], r[9], r[10],
                      r[11]) for r in rows]


def query_stats(db: sqlite3.Connection, fam: str) -> dict[str, px.ProductStats]:
    rows = db.execute("SELECT product, volume, trades, lt, lid, lprice, lqty, auction, "
                      "aprice, aqty FROM products WHERE family = ?", (fam,))
    return {r[0]: px.ProductStats(r[1], r[2], (r[3], r[4]), r[5], r[6], r[7], r[8], r[9])
            for r in rows}


def query_index(db: sqlite3.Connection, fam: str, lo: int, hi: int,
                limit: int) -> list[tuple[Any, ...]]:
    """Newest first: published rows of days in [lo, hi]: (day, revision, status, price,
    volume, trades, xvolume, xtrades, median, published_at, prev_price, prev_status,
    methodology)."""
    return db.execute("SELECT day, revision, status, price, volume, trades, xvolume, "
                      "xtrades, median, published_at, prev_price, prev_status, methodology "
                      "FROM idx WHERE family = ? AND day >= ? AND day <= ? "
                      "ORDER BY day DESC LIMIT ?", (fam, lo, hi, limit)).fetchall()


def first_day(db: sqlite3.Connection, fam: str) -> int | None:
    row = db.execute("SELECT MIN(start) FROM candles WHERE scope = ? AND width = ?",
                     (fam, DAY)).fetchone()
    return None if row[0] is None else int(row[0]) // DAY


def compute_day(db: sqlite3.Connection, fam: str, day: int) -> px.IndexValue:
    levels = db.execute(
        "SELECT price, SUM(qty), COUNT(*) FROM trades WHERE family = ? AND time >= ? "
        "AND time < ? GROUP BY price", (fam, day * DAY, (day + 1) * DAY)).fetchall()
    return px.index_of((int(p), int(q), int(n)) for p, q, n in levels)
