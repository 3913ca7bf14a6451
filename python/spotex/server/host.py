"""The gateway: the exchange, its writer thread, and the data directory.

Every command runs on a single thread (``spotex._core.Writer``, in Rust), in the order it
was submitted, against the exchange (``spotex._core.Exchange``, in Rust), which keeps the
order's whole life: records, client order ids, open-order limits, the command sequence,
executions and market data, and the journal entry of every command it accepts. Order
entry runs there without Python (``command_async``); other commands and views are Python
callables run in their place (``submit``, ``submit_async``, ``call``). Each round is made
durable before anything of it is acknowledged; after it, on the writer, the gateway keeps
the history, takes snapshots, retires old journal segments and hands the round's stream
messages to a publisher. It recovers on start.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import re
import struct
import time
import zlib
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from spotex._core import (
    Exchange,
    JournalError,
    JournalWriter,
    Lease,
    RefusedError,
    Writer,
    follow_jetstream,
    get_jetstream_snapshot,
    journal_bounds,
    journal_segments,
    page_size,
    put_jetstream_snapshot,
    read_jetstream,
    read_journal,
    replay_journal,
    retire_journal,
    truncate_journal,
)
from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex.server import prices as px
from spotex.server.datadir import DataDirLock
from spotex.server.executions import KEEP as KEEP_EXECUTIONS
from spotex.server.executions import snapshot_sequences
from spotex.server.history import FILE as HISTORY
from spotex.server.history import History
from spotex.server.tape import FILE as TAPE
from spotex.server.tape import Tape

T = TypeVar("T")


JOURNAL = "journal"  # a directory of segments (rust_core/src/journal.rs)
LEGACY_JOURNAL = "journal.log"  # the single-file layout before segments
ARCHIVE = "journal-archive"
# what happens to segments wholly before the oldest kept snapshot
RETENTION = ("delete", "archive", "keep")
SNAPSHOTS = "snapshots"
# the data directory's format: journal entries and snapshots of the Rust exchange
FORMAT_FILE = "FORMAT"
# a replicated engine's note of where its journal is (for ``spotex replay DATA_DIR``)
REPLICATED_FILE = "replicated.json"
FORMAT = "spotex-data 2"
_SNAP_MAGIC = b"SPXSNAP2"
_OLD_SNAP_MAGIC = b"SPXSNAP1"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Replicated:
    """A journal on NATS JetStream instead of segment files: the shard's stream on these
    servers (spotex-replicated). Recovery replays the stream; the data directory keeps
    the rest (lock, accounts, history, snapshots)."""

    servers: tuple[str, ...]
    shard: str = "main"
    replicas: int = 3
    timeout_seconds: float = 10.0
    # the shard's leader lease (JetStream key-value): this server's name in it (its
    # address; "" for host:pid), and how long it lives unless renewed
    holder: str = ""
    lease_seconds: float = 3.0


def write_snapshot(directory: Path, seq: int, exchange: bytes, meta: bytes,
                   keep: int = 3) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    body = (_SNAP_MAGIC + struct.pack("<QQ", seq, len(exchange)) + exchange
            + struct.pack("<Q", len(meta)) + meta)
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
    """``(sequence, exchange snapshot, metadata JSON)`` of a snapshot file."""
    body = path.read_bytes()
    if body[:8] == _OLD_SNAP_MAGIC:
        raise JournalError(f"{path}: a snapshot of an earlier spotex data format")
    if len(body) < 32 or body[:8] != _SNAP_MAGIC:
        raise JournalError(f"{path}: not a spotex snapshot")
    if zlib.crc32(body[:-4]) != struct.unpack("<I", body[-4:])[0]:
        raise JournalError(f"{path}: checksum mismatch")
    seq, n = struct.unpack("<QQ", body[8:24])
    engine = body[24:24 + n]
    (m,) = struct.unpack("<Q", body[24 + n:32 + n])
    return seq, engine, body[32 + n:32 + n + m]


# what the probe writes before the server calls its journal writable again: more than
# most rounds, so that a disk with room for an empty file and no more is not taken for
# one that works
PROBE_BYTES = 64 * 1024


def _probe(directory: Path) -> None:
    """Writes, fsyncs and removes ``PROBE_BYTES`` in ``directory``: raises OSError while
    the disk (or the process's file-size limit) still refuses writes. An fsync of a
    freshly opened journal succeeds on a full disk, so it is no probe alone."""
    probe = directory / ".write-probe"
    try:
        with open(probe, "wb") as f:
            f.write(bytes(PROBE_BYTES))
            f.flush()
            os.fsync(f.fileno())
    finally:
        probe.unlink(missing_ok=True)


def unavailable_message(why: str) -> str:
    """The refusal of a command while the journal cannot be written, and why."""
    return f"the journal cannot be written ({why}); nothing is accepted until it can"


class HostError(Exception):
    """A refusal decided by the gateway itself (not by the exchange)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class Published:
    """What one writer round produced for the streams, encoded once for every subscriber:
    ``(product_id, updates, MarketDataBatch bytes)`` per product and ``(account,
    executions, ExecutionBatch bytes)`` per account. Serialized batches concatenate into
    one batch."""

    market: list[tuple[str, int, bytes]] = field(default_factory=list)
    executions: list[tuple[int, int, bytes]] = field(default_factory=list)


def _deliver(results: list[tuple[Any, bool, Any]]) -> None:
    for fut, ok, value in results:
        if fut.cancelled():
            continue
        if ok:
            fut.set_result(value)
        else:
            fut.set_exception(value)


FSYNC_POLICIES = ("batch", "none")
# A shard's ids are numbered from its index << SHARD_BITS: a gateway finds the shard of
# an order or a trade from its id, and ids stay below 2**53 (exact in JSON and JavaScript)
SHARD_BITS = 48
MAX_SHARDS = 31
# how many times a new leader reads the stream again when an earlier leader appended
# after what it read (each such append was the earlier leader's last: its lease is over)
FENCE_TRIES = 5


class EngineHost:
    """The writer thread and the data directory around the exchange. With a
    ``data_dir`` every accepted command is journaled before anyone hears of it
    (``fsync="batch"``: one fsync per writer round; ``"none"``: the OS decides, for tests
    and benchmarks only), snapshots bound recovery, and construction recovers: newest
    valid snapshot, then the journal after it, to the same state.

    Call the commands and views on the writer (``call``, ``submit``, ``submit_async``);
    requests and answers are the contract's messages, serialized."""

    def __init__(self, publish: Callable[[Published], None] | None = None,
                 clock: Callable[[], int] | None = None, data_dir: Path | None = None,
                 fsync: str = "batch", snapshot_every: int = 200_000,
                 max_open_orders: int = 10_000, segment_bytes: int = 64 << 20,
                 retention: str = "delete", max_id_length: int = 128,
                 keep_ended: int = 100_000, snapshot_per_resting: int = 5,
                 resale_fee_bps: int = 0, replicated: Replicated | None = None,
                 shard_index: int = 0, default_credit: int | None = None,
                 keep_executions: int = KEEP_EXECUTIONS) -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync policy must be one of {FSYNC_POLICIES}")
        if retention not in RETENTION:
            raise ValueError(f"journal retention must be one of {RETENTION}")
        self._segment_bytes = segment_bytes
        self._retention = retention
        self._publish = publish or (lambda p: None)
        self._clock = clock or (lambda: time.time_ns() // 1000)
        self._fsync = fsync
        self._snapshot_every = snapshot_every
        # at least this many commands per resting order between automatic snapshots
        self._snapshot_per_resting = snapshot_per_resting
        self.max_open_orders = max_open_orders
        self.max_id_length = max_id_length
        self.keep_ended = keep_ended
        self.resale_fee_bps = resale_fee_bps
        # the credit limit of accounts without their own (None: money is not checked)
        self.default_credit = default_credit
        if not 0 <= shard_index <= MAX_SHARDS:
            raise ValueError(f"a shard index is 0 to {MAX_SHARDS}")
        self.shard_index = shard_index
        if replicated is not None and data_dir is None:
            raise ValueError("a replicated journal needs a data directory for the rest")
        self.replicated = replicated
        self._lease: Lease | None = None
        # why commands are refused, as Python last heard it (the writer holds its own
        # copy locked while a round is made durable: see ``refusal``)
        self._why: str | None = None
        self._said: str | None = None  # what the listeners last heard
        self._listeners: list[Callable[[str | None], None]] = []
        self._holder = ""  # this server's name in the lease
        self._next_message = 1  # the stream message a standby reads from next
        self.ex = Exchange(max_open_orders, max_id_length)
        self.ex.set_keep_ended(keep_ended)
        self.ex.set_resale_fee_bps(resale_fee_bps)
        self.ex.set_default_credit_limit(default_credit)
        # ended orders that left the exchange's memory (with a data directory)
        self.history: History | None = None
        # every trade, and the prices derived from it (a temporary file without a
        # data directory)
        self.tape: Tape | None = None
        self.snapshot_seq = 0
        self.journal: JournalWriter | None = None
        self.recovery: dict[str, Any] = {}
        self.data_dir = data_dir
        self._lock: DataDirLock | None = None
        # the writer thread, in Rust: the hot commands run there without the GIL
        self._writer = Writer(_deliver, self._after_round, fsync == "batch")
        try:
            if replicated is not None:
                # before anything is written: NATS answers, and the stream is this shard's
                check_stream(replicated, shard_index)
            if data_dir is not None:
                # before anything is read: a second owner would interleave the journal
                self._lock = DataDirLock(data_dir)
                check_format(data_dir)
                self.history = History(data_dir / HISTORY)
                started = time.perf_counter()
                if replicated is not None:
                    note = data_dir / REPLICATED_FILE
                    tmp = note.with_suffix(".tmp")
                    tmp.write_text(json.dumps({"servers": list(replicated.servers),
                                               "shard": replicated.shard}) + "\n")
                    os.replace(tmp, note)
                    self._start_replicated(replicated)
                else:
                    self._recover(data_dir)
                    self.journal = JournalWriter(data_dir / JOURNAL, segment_bytes)
                self.recovery["seconds"] = time.perf_counter() - started
            self._writer.attach(self.ex, self.journal)
            self.tape = Tape(data_dir / TAPE if data_dir is not None else None, self._clock,
                             keep_executions)
            if data_dir is not None and replicated is None:
                self._fill_tape(data_dir)
            self._fill_executions()
            self.tape.start()
            if self.journal is not None:
                self.call(self._claim_ids)
        except BaseException:
            self._writer.stop()
            if self.tape is not None:
                self.tape.close()
            if self.history is not None:
                self.history.close()
            if self._lock is not None:
                self._lock.release()
            raise

    @property
    def sequence(self) -> int:
        return self.ex.sequence

    @property
    def last_ts(self) -> int:
        """The exchange's clock (microseconds since the epoch): never steps back."""
        return self._writer.last_ts

    def now(self) -> int:
        """The venue's time now (its clock, or later): what the daily index's days are
        counted by."""
        return max(self.last_ts, self._clock())

    @property
    def unavailable(self) -> str | None:
        """Why commands are refused right now (the journal could not be written), or
        None. Read it on the writer: elsewhere it waits for the writer's round, which
        holds it while the round is made durable (up to the journal's timeout, with the
        GIL held by the reader: the whole process stalls). Off the writer, read
        ``refusal``."""
        return self._writer.unavailable

    @unavailable.setter
    def unavailable(self, why: str | None) -> None:
        self._writer.unavailable = why
        self._why = why
        self._changed()

    @property
    def refusing(self) -> bool:
        """Whether commands are refused now, read without waiting for the writer's
        round (``unavailable`` says why)."""
        return self._writer.refusing

    @property
    def refusal(self) -> str | None:
        """Why commands are refused now, or None: read without waiting for the writer
        (for the event loop, health and metrics). The reason is the last one the writer
        told Python of."""
        if not self._writer.refusing:
            return None
        return self._why or "the journal failed"

    def on_change(self, listener: Callable[[str | None], None]) -> None:
        """``listener(refusal)`` is called, on the thread that made the change (usually
        the writer), each time the engine starts or stops refusing commands: a standby,
        a journal that failed, a lease lost, and back. It must not block."""
        self._listeners.append(listener)

    def _changed(self) -> None:
        """Tells the listeners if refusing commands changed since they last heard."""
        now = self.refusal
        if now == self._said:
            return
        self._said = now
        for listener in list(self._listeners):
            try:
                listener(now)
            except Exception as err:  # noqa: BLE001 - a listener's failure is its own
                log.warning("a listener of the engine's state failed: %s", err)

    # ---- the writer ----------------------------------------------------------------

    def submit(self, fn: Callable[[], T]) -> Future[T]:
        """Runs ``fn`` on the writer thread, after everything submitted before it."""
        f: Future[T] = Future()
        self._writer.call(fn, f)
        return f

    def submit_async(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """As ``submit``, for a caller on an event loop: the result arrives on that loop."""
        loop = asyncio.get_running_loop()
        f: asyncio.Future[T] = loop.create_future()
        self._writer.call(fn, f, loop)
        return f

    def command_async(self, op: str, account: int, request: bytes, *, buyer: bool = False,
                      seller: bool = False, remaining: float | None = None
                      ) -> asyncio.Future[bytes]:
        """A hot command, run by the writer without Python: ``op`` is place, submit,
        cancel or amend, ``request`` its serialized request; the result is the serialized
        response (``PlaceOrderResponse``, ``SubmitOrdersResponse``, ...) or RefusedError.
        ``remaining``: seconds left until the caller's deadline (past it, the command is
        refused without being applied)."""
        loop = asyncio.get_running_loop()
        f: asyncio.Future[bytes] = loop.create_future()
        self._writer.command(op, self._clock(), account, buyer, seller, request, remaining,
                             f, loop)
        return f

    def flush(self) -> None:
        """On the writer: hands what the round published to the tape and the
        publisher."""
        market, executions, trades = self.ex.take_round()
        if (trades or executions) and self.tape is not None:
            self.tape.offer(self.sequence, self.last_ts, trades, executions)
        if market or executions:
            self._publish(Published(market, executions))

    def call(self, fn: Callable[[], T]) -> T:
        return self.submit(fn).result()

    def close(self) -> None:
        self._writer.stop()
        if self.journal is not None and self.unavailable is not None:
            # a round failed and its callers were told so: what it appended must never
            # be stored, not even by a last sync here
            try:
                durable = self.journal.durable_point()
                self.journal.abandon()
                if durable is not None:
                    truncate_journal(*durable)
            except Exception as err:  # noqa: BLE001 - recovery cuts a torn tail anyway
                log.warning("could not cut the journal back on close: %s", err)
        elif self.journal is not None:
            self.journal.close()
        if self._lease is not None:
            try:
                self._lease.release()  # a standby need not wait for it to expire
            except JournalError as err:
                log.warning("could not release the lease: %s", err)
        if self.tape is not None:
            self.tape.close()
        if self.history is not None:
            self.history.close()
        if self._lock is not None:
            self._lock.release()

    def _fill_executions(self) -> None:
        """Executions behind the journal (a crash between a round's journal write and
        its tape write, or a tape from before executions were kept): they cannot be
        rebuilt (replaying the journal gives trades, not executions), so each account
        whose sequence in the exchange is past what is written has a hole, and resumes
        only from after it (see ``spotex.server.executions``)."""
        assert self.tape is not None
        if self.tape.exec_seq >= self.sequence:
            return
        holes = self.tape.fill_executions(snapshot_sequences(self.ex.snapshot()),
                                          self.sequence)
        for account, last, now in holes:
            log.warning("executions %d..%d of account %d were not written before the "
                        "journal's sequence %d (a crash): a stream resumes only after "
                        "them", last + 1, now, account, self.sequence)

    def _fill_tape(self, data_dir: Path) -> None:
        """The tape behind the journal (a crash between a round's journal write and its
        tape write, or a tape new to this data directory): filled from the journal."""

        assert self.tape is not None
        if self.tape.seq >= self.sequence:
            if self.tape.seq > self.sequence:
                log.warning("the trade tape is at sequence %d, past the journal's %d",
                            self.tape.seq, self.sequence)
            return
        started = time.perf_counter()
        try:
            trades, seq = journal_trades(data_dir, self.tape.seq)
        except JournalError as err:
            log.warning("the trade tape (at sequence %d) cannot be filled from the "
                        "journal: %s", self.tape.seq, err)
            return
        n = self.tape.fill(trades, seq)
        if n:
            log.info("trade tape filled from the journal: %d trades after sequence %d "
                     "(%.2f s)", n, self.tape.seq, time.perf_counter() - started)

    def writer_stats(self) -> dict[str, Any]:
        """What the writer counted (see ``spotex._core.Writer.stats``): for metrics."""
        return self._writer.stats()

    def stamp(self) -> int:
        return self._writer.stamp(self._clock())

    def run(self, command: Callable[[int], T]) -> T:
        """On the writer: stamps one command and applies it to the exchange, then appends
        what the exchange journaled (the command if accepted; a time step if a refusal
        moved the clock)."""
        self._check_available()
        try:
            return command(self.stamp())
        finally:
            self._append()

    def _keep_history(self) -> None:
        """The records that left the exchange's memory go to the history on disk (without
        a data directory, nowhere: memory stays bounded either way)."""
        left = self.ex.take_left()
        transfers = self.ex.take_left_transfers()
        if self.history is not None:
            self.history.add(left)
            self.history.add_transfers(transfers)

    def list_transfers(self, account: int, body: bytes) -> bytes:
        """On the writer: an account's transfers, oldest first, from the history on disk
        and then the exchange's memory, one page (``ListTransfersResponse`` bytes)."""
        r = pb.ListTransfersRequest.FromString(body)
        self.ex.list_transfers(account, body)  # the exchange checks the page token
        size = page_size(r.page_size)
        after = int(r.page_token or 0)
        until = r.to_micros or (1 << 63) - 1
        older = (self.history.transfers(account, after, r.from_micros, until, size + 1)
                 if self.history is not None else [])
        if len(older) >= size:
            page = older[:size]
            return bytes(pb.ListTransfersResponse(
                transfers=[pb.Transfer.FromString(b) for _, b in page],
                next_page_token=str(page[-1][0])).SerializeToString())
        rest = pb.ListTransfersRequest()
        rest.CopyFrom(r)
        rest.page_size = size - len(older)
        if older:
            rest.page_token = str(older[-1][0])
        newer = pb.ListTransfersResponse.FromString(
            self.ex.list_transfers(account, rest.SerializeToString()))
        out = pb.ListTransfersResponse(
            transfers=[pb.Transfer.FromString(b) for _, b in older],
            next_page_token=newer.next_page_token)
        out.transfers.extend(newer.transfers)
        return bytes(out.SerializeToString())

    def _append(self) -> None:
        if self.journal is None:
            self.ex.take_journal()  # no data directory: nothing is kept
            return
        try:
            for seq, ts, command in self.ex.take_journal():
                self.journal.append(seq, ts, command, b"")
        except Exception as err:
            self.unavailable = f"{type(err).__name__}: {err}"[:200]
            log.error("journal write failed, refusing commands until it recovers: %s", err)
            raise HostError("OUTCOME_UNKNOWN", "the journal did not confirm the command: "
                            "it may or may not have been applied; look it up once the "
                            "venue serves again") from err

    def _check_available(self) -> None:
        if self.unavailable is not None:
            raise HostError("JOURNAL_UNAVAILABLE", unavailable_message(self.unavailable))

    def _after_round(self, failed: str | None) -> None:
        """On the writer, with the round's journal records durable, before any result or
        stream message of the round leaves: keeps the history, takes a snapshot when one
        is due, publishes. An exception fails the round (nothing of it is acknowledged).
        ``failed``: the journal failed during the round (why); nothing of it leaves."""
        if failed is not None:
            log.error("journal write failed, refusing commands until it recovers: %s", failed)
            self._why = failed
            self._changed()  # health says so now, not at the next tick
            return
        if self.journal is not None and self.unavailable is None:
            self._keep_history()
            # A snapshot costs in proportion to the live state and stalls the writer while
            # it is encoded; with a big book, space them out so that they stay a small
            # part of the work (recovery then replays at most a few times the live state).
            every = max(self._snapshot_every,
                        self._snapshot_per_resting * self.ex.resting_orders)
            if self.sequence - self.snapshot_seq >= every:
                self.take_snapshot()
        elif self.journal is None:
            self.ex.take_left()  # no data directory: nothing is kept
        self.flush()

    def try_resume(self) -> bool:
        """On the writer, after a journal failure: cuts the journal back to what was
        durable, rebuilds the exchange from disk (so no command whose caller was told it
        failed survives in memory), reopens the journal and accepts again. Returns
        whether commands are accepted."""
        if self.unavailable is None:
            return True
        if self.replicated is not None:
            return self._steward()
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
            self.journal.sync()
            _probe(self.data_dir)  # raises while the disk still fails
        except Exception as err:  # noqa: BLE001 - still failing: stay unavailable
            self.unavailable = f"{type(err).__name__}: {err}"[:200]
            return False
        self._recover(self.data_dir)
        self.unavailable = None
        log.warning("journal writable again: resumed at sequence %d", self.sequence)
        return True

    # ---- commands (call on the writer); requests and answers serialized ---------------

    def create_product(self, product_id: str, tick: int, lot: int, close_at: int,
                       open_at: int | None = None, auction_first: bool = False) -> None:
        self.run(lambda ts: self.ex.create_product(ts, product_id, tick, lot, close_at,
                                                   open_at, auction_first))

    def set_state(self, what: str, product_id: str) -> None:
        """``what``: halt, resume or close."""
        self.run(lambda ts: self.ex.set_state(ts, what, product_id))

    def register_capacity(self, account: int, request: bytes) -> None:
        self.run(lambda ts: self.ex.register_capacity(ts, account, request))

    def withdraw_capacity(self, account: int, request: bytes) -> int:
        return self.run(lambda ts: self.ex.withdraw_capacity(ts, account, request))

    def advance_time(self) -> None:
        """Moves the exchange's clock to now: gate closures and expiries that fell due.
        A quiet step (nothing fell due) is not journaled."""
        self.run(self.ex.advance_time)

    def place(self, account: int, request: bytes, *, buyer: bool, seller: bool) -> bytes:
        """``PlaceOrderRequest`` in, ``Order`` out."""
        return self.run(lambda ts: self.ex.place_order(ts, account, request, buyer=buyer,
                                                       seller=seller))

    def submit_orders(self, account: int, request: bytes, *, buyer: bool,
                      seller: bool) -> bytes:
        """``SubmitOrdersRequest`` in, ``SubmitOrdersResponse`` out: each order placed or
        refused on its own."""
        return self.run(lambda ts: self.ex.submit_orders(ts, account, request, buyer=buyer,
                                                         seller=seller))

    def cancel(self, account: int, request: bytes) -> bytes:
        return self.run(lambda ts: self.ex.cancel_order(ts, account, request))

    def amend(self, account: int, request: bytes) -> bytes:
        return self.run(lambda ts: self.ex.amend_order(ts, account, request))

    # ---- snapshots and recovery ----------------------------------------------------

    def take_snapshot(self) -> tuple[int, str]:
        """On the writer: writes the whole exchange at the current sequence, atomically
        (temporary file, fsync, rename), keeps the three newest, and retires the journal
        segments the oldest kept one makes unnecessary."""
        assert self.data_dir is not None
        if self.journal is not None:
            self.journal.sync()
        if self.history is not None:
            # the snapshot no longer holds what left memory: it must be on disk first
            self._keep_history()
            self.history.make_durable()
        if self.tape is not None:
            # the journal before the snapshot may be retired: the tape holds it first
            self.flush()
            self.tape.wait()
        state_hash = self.ex.state_hash()
        meta = {"sequence": self.sequence, "last_ts": self.last_ts, "state_hash": state_hash,
                "format": FORMAT}
        snapshot = self.ex.snapshot()
        write_snapshot(self.data_dir / SNAPSHOTS, self.sequence, snapshot,
                       json.dumps(meta).encode())
        self.snapshot_seq = self.sequence
        r = self.replicated
        if r is None:
            self._retire_segments()
        elif self.journal is not None and self.journal.stream_sequence is not None:
            # a new machine starts from it and reads only the stream after it
            try:
                put_jetstream_snapshot(list(r.servers), r.shard, self.journal.stream_sequence,
                                       self.last_ts, snapshot, r.replicas, r.timeout_seconds)
            except JournalError as err:
                log.warning("could not keep the snapshot in JetStream: %s", err)
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

    # ---- a replicated journal: leader and standby ------------------------------------

    def _start_replicated(self, r: Replicated) -> None:
        """Leads the shard if its lease is free (opens the journal, recovers from the
        stream); else follows the stream as a standby, refusing commands, until the
        lease is free (``try_resume``, each tick, takes it)."""
        holder = r.holder or f"{os.uname().nodename}:{os.getpid()}"
        self._holder = holder
        self._lease = Lease(list(r.servers), r.shard, holder, r.lease_seconds, r.replicas,
                            r.timeout_seconds)
        try:
            leading = self._lease.try_acquire()
        except JournalError as err:
            log.warning("could not take the lease of shard %s yet (%s)", r.shard, err)
            leading = False
        if leading:
            try:
                self._lead(fresh=True)
            except JournalError as err:  # the next tick takes the lease again
                log.warning("could not lead shard %s yet (%s)", r.shard, err)
                self._become_standby()
                return
            log.info("leading shard %s", r.shard)
        else:
            self._become_standby()

    def _become_standby(self) -> None:
        r = self.replicated
        assert r is not None and self._lease is not None
        self.journal = None
        self.ex, self._next_message = self._base_exchange()
        snap_seq = self.ex.sequence
        self._writer.attach(self.ex, None)
        try:
            self._catch_up()
            leader = self._lease.holder()
        except JournalError as err:  # the next tick tries again
            log.warning("standby of shard %s: %s", r.shard, err)
            leader = None
        self.unavailable = (f"standby: the shard's stream spotex-{r.shard} is led by "
                            f"{leader or 'no one yet'}")
        self.recovery = {"standby": True, "snapshot_seq": snap_seq,
                         "replayed": self.ex.sequence - snap_seq, "sequence": self.ex.sequence,
                         "stream": f"spotex-{r.shard}"}
        log.info("standby of shard %s at sequence %d", r.shard, self.ex.sequence)

    def _catch_up(self, until: int | None = None) -> None:
        """A standby applies what the stream gained since it last read (up to message
        ``until``)."""
        r = self.replicated
        assert r is not None
        rows, after = follow_jetstream(list(r.servers), r.shard, self._next_message, until,
                                       r.timeout_seconds)
        for seq, ts, command, _meta in rows:
            if seq <= self.ex.sequence:
                continue  # applied already, before a read that failed part way
            self.ex.replay(seq, ts, command)
            self._writer.stamp(ts)
        # only once all of it is applied: a read that fails is read again from here
        self._next_message = after
        self._keep_history()

    def _steward(self) -> bool:
        """On the writer, each tick while commands are refused: a standby catches up and
        takes the lease when it is free (then leads, from where it had read); a leader
        whose journal failed rebuilds from the stream if it still holds the lease, and
        turns standby if it lost it. Returns whether commands are accepted."""
        r = self.replicated
        assert r is not None and self._lease is not None
        try:
            if self.journal is None:
                self._catch_up()
                if not self._lease.try_acquire():
                    self.unavailable = (f"standby: the shard's stream spotex-{r.shard} is "
                                        f"led by {self._lease.holder() or 'no one yet'}")
                    return False
                # the lease is ours: read the stream to its end and fence it
                self._lead(fresh=False)
                self.unavailable = None
                self._claim_ids()
                log.warning("took the lease: leading shard %s from sequence %d", r.shard,
                            self.sequence)
                return True
            # the round that failed (the journal's, or the lease's while commands ran)
            # told its callers so: what it appended and did not store is dropped, and the
            # exchange is rebuilt from the stream, never kept as it is in memory
            self.journal.abandon()
            if not self._lease.renew():
                log.warning("lost the lease of shard %s: following as a standby", r.shard)
                self._become_standby()
                return False
            # still the leader: part of the failed round may be stored; rebuild from it
            self._lead(fresh=True)
            self.unavailable = None
            log.warning("journal writable again: resumed at sequence %d", self.sequence)
            return True
        except Exception as err:  # noqa: BLE001 - NATS unreachable: try again next tick
            log.warning("shard %s: %s: %s", r.shard, type(err).__name__, err)
            self.unavailable = f"{type(err).__name__}: {err}"[:200]
            return False

    def _claim_ids(self) -> None:
        """On the writer, leading a shard (``shard_index`` > 0): its ids are numbered from
        ``shard_index << 48``, journaled before its first id is given; a journal of
        another shard's ids is refused."""
        if not self.shard_index:
            return
        base = self.shard_index << SHARD_BITS
        order, trade = self.ex.next_ids()
        if (order, trade) == (1, 1):
            self.run(lambda ts: self.ex.set_id_base(ts, base))
            log.info("shard %d: ids from %d", self.shard_index, base)
        elif order >> SHARD_BITS != self.shard_index:
            raise JournalError(f"this journal numbers ids for shard {order >> SHARD_BITS}, "
                               f"not {self.shard_index} (--shard-index)")

    def keep_lease(self) -> None:
        """On the writer, each tick while leading: renews the lease; once it is lost
        (expired and taken), commands are refused and the next tick turns standby."""
        if self._lease is None or self.journal is None:
            return
        try:
            held = self._lease.renew()
        except JournalError as err:
            if self._lease.expires_in() > 0:
                log.warning("could not renew the lease (%s); it lives %.1f s more", err,
                            self._lease.expires_in())
                return
            # a standby may hold it now: stop serving (its fence refuses any write of
            # this server's; a read here could be stale); the next tick renews and
            # rebuilds from the stream, or follows it as a standby
            log.warning("could not renew the lease within its life (%s): refusing commands",
                        err)
            self.unavailable = f"could not renew the lease of the shard: {err}"[:200]
            return
        if not held:
            self.unavailable = "lost the lease of the shard; turning standby"

    def _open_stream(self) -> JournalWriter:
        r = self.replicated
        assert r is not None
        return JournalWriter.jetstream(list(r.servers), r.shard, r.replicas, r.timeout_seconds)

    def _lead(self, fresh: bool) -> None:
        """Opens the shard's stream for this server, which holds the lease, reads it to
        its end (``fresh``: rebuilt from the newest snapshot; else caught up from where
        this standby had read) and fences it (the journal's ``fence``): an earlier leader
        that has not yet found itself deposed can append nothing after. A fence refused
        means it appended after what was read: read again, a few times at most."""
        why: JournalError | None = None
        for _ in range(FENCE_TRIES):
            self.journal = self._open_stream()
            if fresh:
                self._recover_stream()
            else:
                self._catch_up(self.journal.stream_sequence)
            try:
                self.journal.fence(self._holder)
            except JournalError as err:
                why, fresh = err, False
                continue
            self._writer.attach(self.ex, self.journal)
            if self.tape is not None:
                # what the rounds of the earlier leader numbered was not kept here
                self.tape.mark_holes(snapshot_sequences(self.ex.snapshot()))
            return
        raise JournalError(f"could not fence the stream: {why}")

    def _recover_stream(self) -> None:
        """The exchange from the shard's stream: every record up to where the journal
        (opened first) appends after, replayed in order, each record's checksum checked.
        What another writer appends later is not read, and fences this one out."""
        r = self.replicated
        assert r is not None and self.journal is not None
        until = self.journal.stream_sequence or 0
        self.ex, self._next_message = self._base_exchange(until)
        snap_seq = self.ex.sequence
        self._catch_up(until)
        self._writer.attach(self.ex, self.journal)
        self.recovery = {"snapshot_seq": snap_seq, "replayed": self.ex.sequence - snap_seq,
                         "sequence": self.ex.sequence, "torn_tail": None,
                         "stream": f"spotex-{r.shard}"}
        if self.ex.sequence:
            log.info("recovered to sequence %d from stream spotex-%s (snapshot %d + %d "
                     "records)", self.ex.sequence, r.shard, snap_seq,
                     self.ex.sequence - snap_seq)

    def _base_exchange(self, until: int | None = None) -> tuple[Exchange, int]:
        """Where recovery from the stream starts: the shard's newest snapshot in the
        object store and the message after it, or an empty exchange and message 1 (also
        when the snapshot does not read, or is past ``until``)."""
        r = self.replicated
        assert r is not None
        ex, start = Exchange(self.max_open_orders, self.max_id_length), 1
        try:
            snap = get_jetstream_snapshot(list(r.servers), r.shard, r.timeout_seconds)
        except JournalError as err:
            log.warning("the snapshot in JetStream does not read (%s): replaying the stream "
                        "from its start", err)
            snap = None
        if snap is not None and (until is None or snap[0] <= until):
            message, last_ts, data = snap
            ex = Exchange.restore(data, self.max_open_orders)
            ex.set_max_id_length(self.max_id_length)
            self._writer.stamp(last_ts)
            start = message + 1
        ex.set_keep_ended(self.keep_ended)
        ex.set_resale_fee_bps(self.resale_fee_bps)
        ex.set_default_credit_limit(self.default_credit)
        return ex, start

    def _recover(self, data_dir: Path) -> None:
        if self.replicated is not None:
            self._recover_stream()
            return
        path = data_dir / JOURNAL
        for seq, exchange, meta in [*snapshots(data_dir / SNAPSHOTS), (0, None, None)]:
            try:
                ex, snap_seq, replayed, torn = Exchange.recover(
                    path, exchange, self.max_open_orders, self.keep_ended)
            except JournalError as err:
                if exchange is None:
                    raise
                log.warning("snapshot %d does not recover (%s); trying an older one", seq, err)
                continue
            if meta is not None:
                self._writer.stamp(json.loads(meta)["last_ts"])
            break
        if torn is not None:
            segment, offset, nbytes = torn
            log.warning("journal %s: torn tail of %d bytes at offset %d (a crash mid-write); "
                        "recovering to the last good record", segment, nbytes, offset)
            truncate_journal(segment, offset)
        ex.set_max_id_length(self.max_id_length)
        ex.set_resale_fee_bps(self.resale_fee_bps)
        ex.set_default_credit_limit(self.default_credit)
        self.ex = ex
        self._writer.attach(ex, self.journal)
        self._keep_history()  # what left memory again on the way (writing twice is harmless)
        self.snapshot_seq = snap_seq
        self.recovery = {"snapshot_seq": snap_seq, "replayed": replayed,
                         "sequence": self.sequence, "torn_tail": torn}
        if snap_seq or replayed:
            log.info("recovered to sequence %d (snapshot %d + %d journal records)",
                     self.sequence, snap_seq, replayed)

    # ---- views (call on the writer for a consistent answer) ------------------------

    def state_hash(self) -> str:
        return self.ex.state_hash()

    def get_order(self, account: int, request: bytes) -> bytes:
        """``GetOrderRequest`` in, ``Order`` out: from memory, or from the history."""
        try:
            return self.ex.get_order(account, request)
        except RefusedError as err:
            if err.reason != "UNKNOWN_ORDER" or self.history is None:
                raise
            r = pb.GetOrderRequest.FromString(request)
            if not r.order_id:  # by client order id: the account's own, on disk
                old = self.history.by_client_order_id(account, r.client_order_id)
                if old is None:
                    raise
                return old
            found = self.history.get(r.order_id)
            if found is None:
                raise
        owner, order = found
        if owner != account:
            raise HostError("NOT_OWNER", "the order belongs to another account")
        return order

    def list_orders(self, account: int, request: bytes) -> bytes:
        """``ListOrdersRequest`` in, ``ListOrdersResponse`` out: one page of the orders in
        memory merged with those in the history (unless only open ones are asked for),
        oldest first."""
        listed = self.ex.list_orders(account, request)  # refuses a malformed token
        r = pb.ListOrdersRequest.FromString(request)
        if self.history is None or r.open_only:
            return listed
        size = page_size(r.page_size)
        after = int(r.page_token or 0)
        old = self.history.orders(account, r.product_id, after, size + 1)
        if not old:
            return listed
        page = pb.ListOrdersResponse.FromString(listed)
        # Each source gave its first ``size`` (or ``size + 1``) orders after the token, so
        # the first ``size`` of their union are the first ``size`` of all the account's.
        orders = {i: o for i, o in old}
        orders.update((o.order_id, o.SerializeToString()) for o in page.orders)
        ids = sorted(orders)
        more = len(ids) > size or bool(page.next_page_token) or len(old) > size
        ids = ids[:size]
        return bytes(pb.ListOrdersResponse(
            orders=[pb.Order.FromString(orders[i]) for i in ids],
            next_page_token=str(ids[-1]) if more else "").SerializeToString())


# how many of a stream's first messages are read for its first record (the first are
# fences, one per leader that took the lease before the first command)
FIRST_MESSAGES = 16


def stream_shard(servers: list[str], shard: str, timeout_seconds: float) -> int | None:
    """The shard index whose ids a shard's stream numbers (a shard's first command sets
    its id base, ``index << 48``; a stream that begins otherwise numbers from 1: index
    0), or None when the stream holds no record yet. JournalError when it cannot be
    read."""
    try:
        rows = read_jetstream(servers, shard, 0, FIRST_MESSAGES, timeout_seconds)
    except JournalError as err:  # a shorter stream: read to its end
        end = re.search(r"it ends at (\d+), before", str(err))
        if end is None:
            raise
        rows = (read_jetstream(servers, shard, 0, int(end.group(1)), timeout_seconds)
                if int(end.group(1)) else [])
    if not rows:
        return None
    seq, ts, command, _ = rows[0]
    ex = Exchange()
    try:
        ex.replay(seq, ts, command)
    except Exception:  # noqa: BLE001 - the start was retired: nothing to tell by
        return None
    return ex.next_ids()[0] >> SHARD_BITS


def check_stream(r: Replicated, shard_index: int) -> None:
    """Before an engine writes anything (its data directory, the lease, a fence): NATS
    answers within the journal's timeout, and the shard's stream, if it holds records,
    numbers the ids of ``shard_index``. Anything else read from JetStream (no stream yet,
    a stream electing its leader) is left to the engine, which starts as a standby and
    waits."""
    servers = ", ".join(r.servers)
    try:
        found = stream_shard(list(r.servers), r.shard, r.timeout_seconds)
    except JournalError as err:
        if "connecting to NATS" in str(err):
            raise JournalError(f"no NATS server answers at {servers} within "
                               f"{r.timeout_seconds:g} s ({err}); nothing was written"
                               ) from None
        log.info("stream spotex-%s not read before start (%s)", r.shard, err)
        return
    if found is not None and found != shard_index:
        raise JournalError(
            f"the stream spotex-{r.shard} holds shard {found}'s records (ids from "
            f"{found} << {SHARD_BITS}), not shard {shard_index}'s (--shard-index "
            f"{shard_index}): give the engine its own shard's stream (--shard) or that "
            "shard's index; nothing was written")


def check_format(data_dir: Path, mark: bool = True) -> None:
    """Refuses a data directory written by an earlier spotex (its journal names gateway
    operations, not the exchange's commands), and marks a new one (unless ``mark`` is
    false: the replay tool never writes); never misreads."""
    marker = data_dir / FORMAT_FILE
    if marker.exists():
        found = marker.read_text().strip()
        if found != FORMAT:
            raise JournalError(f"{data_dir} holds data of format {found!r}; this spotex "
                               f"reads {FORMAT!r}")
        return
    old = ((data_dir / LEGACY_JOURNAL).exists() or bool(journal_segments(data_dir / JOURNAL))
           or any((data_dir / SNAPSHOTS).glob("snapshot-*.bin")))
    if old:
        raise JournalError(
            f"{data_dir} was written by an earlier spotex (its journal records gateway "
            "operations): replay or export it with that version, then start this one on an "
            "empty data directory")
    if not mark:
        return
    data_dir.mkdir(parents=True, exist_ok=True)
    tmp = marker.with_suffix(".tmp")
    tmp.write_text(FORMAT + "\n")
    os.replace(tmp, marker)


def snapshots(directory: Path) -> list[tuple[int, bytes, bytes]]:
    """Every snapshot that reads back whole, newest first; damaged ones are reported
    and passed."""
    out = []
    for path in sorted(directory.glob("snapshot-*.bin"), reverse=True):
        try:
            out.append(read_snapshot(path))
        except JournalError as err:
            log.warning("skipping snapshot: %s", err)
    return out


def journal_trades(data_dir: Path, after: int = 0,
                   whole: bool = False) -> tuple[list[px.JournalTrade], int]:
    """The trades of the commands after sequence ``after`` in the data directory's
    journal, each with its command's sequence, and the last sequence read. The replay
    starts at the newest snapshot at or before ``after`` that the journal continues (or
    the first command); with ``whole`` it must start at the first command (the index
    from the journal alone). Raises JournalError when the journal no longer holds them."""

    journal = data_dir / JOURNAL
    (first, last, count), _ = journal_bounds(journal)
    if not count:
        return [], after
    base, start = None, 0
    if first > 1 or (after and not whole):
        for path in sorted((data_dir / SNAPSHOTS).glob("snapshot-*.bin"), reverse=True):
            seq = int(path.stem.split("-")[1])
            if seq <= after and seq >= first - 1:
                start, base = seq, read_snapshot(path)[1]
                break
        if first > 1 and (base is None or whole):
            raise JournalError(f"the journal before sequence {first} was retired: its trades "
                               "are no longer in it (serve with --journal-retention keep to "
                               "keep the whole journal)")
    engine, seq, rows, _ = replay_journal(journal, snapshot=base, snapshot_seq=start)
    del engine
    auctions: dict[int, int] = {}
    if rows:
        records, _ = read_journal(journal, after=max(after, start))
        for s, _ts, command, _meta in records:
            if a := px.auction_of(command):
                auctions[s] = a
    out = [px.JournalTrade(s, px.Print(tid, ts, pid, price, qty,
                                 px.SIDE_SELL if side == "sell" else px.SIDE_BUY,
                                 auctions.get(s, 0)))
           for s, ts, tid, pid, price, qty, side in rows if s > after]
    return out, seq
