"""Each account's executions kept on disk, so that a stream can resume after the last one
its client saw (``StreamExecutionsRequest.from_sequence``).

The executions live in the trade tape's SQLite file (``spotex.server.tape``), written by
the tape's thread from each writer round, in the same transaction as the round's trades.
Per account the file keeps one contiguous run of sequences, ``oldest .. last``
(``exec_accounts``): every execution in it is on disk, in ``executions``. A resume from
``f`` is served when ``oldest - 1 <= f <= last``. What cannot be served never is:

- retention keeps at least the last ``keep`` executions of each account (up to an eighth
  more before it prunes), so ``oldest`` moves up;
- a hole (executions the exchange numbered that were never written: a crash between a
  round's journal write and the tape's, or rounds led by another engine of a replicated
  shard) moves ``oldest`` past it, since nothing before a hole resumes without it. The
  journal cannot give the lost executions back: its replay through the binding
  (``spotex._core.replay_journal``) returns trades, not executions, and recovery replays
  quietly. At start the host compares each account's sequence in the exchange (its
  snapshot's ``execution_sequence``) with the file's, and marks the holes
  (``Tape.fill_executions``).

Executions are stored as the exchange encoded them, one row per account and round: the
round's ``ExecutionBatch`` for the account, which holds its executions ``first ..
first + n - 1`` (the exchange numbers each account's executions one by one and puts a
round's into one batch, in order). Only the first record's sequence is read; the rest is
never decoded (about a microsecond a round and account on the tape's thread, whatever
the round holds). An ``ExecutionBatch`` is a run of field-1 records, so batches join
into one, and one cut at a record boundary is still one (``after``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

from spotex._proto.spotex.v1 import spotex_pb2 as pb

# the executions kept per account, at least (a resume from before them is refused)
KEEP = 100_000

SCHEMA = """
CREATE TABLE IF NOT EXISTS executions (account INTEGER NOT NULL, first INTEGER NOT NULL,
  last INTEGER NOT NULL, time INTEGER NOT NULL, batch BLOB NOT NULL,
  PRIMARY KEY (account, first)) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS exec_accounts (account INTEGER PRIMARY KEY,
  oldest INTEGER NOT NULL, last INTEGER NOT NULL);
"""


def _varint(b: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        c = b[i]
        i += 1
        value |= (c & 0x7F) << shift
        if c < 0x80:
            return value, i
        shift += 7


def _skip(b: bytes, i: int, wire: int) -> int:
    if wire == 0:
        return _varint(b, i)[1]
    if wire == 1:
        return i + 8
    if wire == 2:
        n, i = _varint(b, i)
        return i + n
    if wire == 5:
        return i + 4
    raise ValueError(f"protobuf wire type {wire} not expected")


def records(batch: bytes) -> Iterator[tuple[int, int, int]]:
    """``(sequence, start, end)`` of each execution in ``ExecutionBatch`` bytes:
    ``batch[start:end]`` is the record, itself a one-execution batch."""
    i, n = 0, len(batch)
    while i < n:
        start = i
        key, i = _varint(batch, i)
        if key != 0x0A:  # not an execution (a stream's start): skipped
            i = _skip(batch, i, key & 7)
            continue
        length, i = _varint(batch, i)
        end = i + length
        if length and batch[i] == 0x08:  # Execution.sequence comes first (field 1)
            seq = _varint(batch, i + 1)[0]
        else:
            seq = pb.Execution.FromString(batch[i:end]).sequence
        yield seq, start, end
        i = end


def after(batch: bytes, sequence: int) -> tuple[bytes, int]:
    """The executions of ``batch`` after ``sequence`` (in order: those of one account
    ascend), and the first of them (0: none)."""
    for seq, start, _ in records(batch):
        if seq > sequence:
            return batch[start:], seq
    return b"", 0


def first_sequence(batch: bytes) -> int:
    """The sequence of the first execution in ``ExecutionBatch`` bytes (0: none)."""
    for seq, _, _ in records(batch):
        return seq
    return 0


def snapshot_sequences(snapshot: bytes) -> dict[int, int]:
    """Each account's execution sequence in an exchange snapshot
    (``spotex.store.v1.Snapshot.execution_sequence``, field 6), read without decoding the
    rest."""
    out: dict[int, int] = {}
    i, n = 0, len(snapshot)
    while i < n:
        key, i = _varint(snapshot, i)
        if key != (6 << 3 | 2):
            i = _skip(snapshot, i, key & 7)
            continue
        length, i = _varint(snapshot, i)
        end = i + length
        account = sequence = 0
        while i < end:
            k, i = _varint(snapshot, i)
            if k == 0x08:
                account, i = _varint(snapshot, i)
            elif k == 0x10:
                sequence, i = _varint(snapshot, i)
            else:
                i = _skip(snapshot, i, k & 7)
        out[account] = sequence
    return out


class Kept:
    """The tape thread's side: folds executions in, marks holes, prunes. Called within
    the tape's transactions."""

    def __init__(self, db: sqlite3.Connection, keep: int = KEEP) -> None:
        self._db = db
        self.keep = max(1, keep)
        self._slack = max(1, self.keep // 8)
        self._range: dict[int, tuple[int, int]] = {}

    def range(self, account: int) -> tuple[int, int] | None:
        r = self._range.get(account)
        if r is None:
            row = self._db.execute("SELECT oldest, last FROM exec_accounts WHERE account = ?",
                                   (account,)).fetchone()
            if row is None:
                return None
            r = self._range[account] = (int(row[0]), int(row[1]))
        return r

    def _set(self, account: int, oldest: int, last: int) -> None:
        self._range[account] = (oldest, last)
        self._db.execute("INSERT OR REPLACE INTO exec_accounts VALUES (?, ?, ?)",
                         (account, oldest, last))

    def add(self, rows: list[tuple[int, int, bytes, int]]) -> int:
        """``(account, executions, ExecutionBatch bytes, round's clock)`` of one round or
        many, in order (many rounds in one call write in one statement). Returns how many
        executions were stored."""
        stored = 0
        touched: set[int] = set()
        out: list[tuple[int, int, int, int, bytes]] = []
        insert = "INSERT OR REPLACE INTO executions VALUES (?, ?, ?, ?, ?)"
        for account, n, batch, clock in rows:
            first = first_sequence(batch)
            if not n or not first:
                continue
            end = first + n - 1
            r = self.range(account)
            oldest, last = r if r is not None else (0, 0)
            if end <= last:
                continue  # written already
            if first <= last:  # partly written already: the rest
                batch, first = after(batch, last)
            elif r is None or first > last + 1:
                # a new account, or a hole: what is kept begins here (what is pending is
                # written first, so that the deletion comes after it)
                oldest = first
                if out:
                    self._db.executemany(insert, out)
                    out = []
                self._db.execute("DELETE FROM executions WHERE account = ?", (account,))
            out.append((account, first, end, clock, batch))
            self._range[account] = (oldest, end)
            touched.add(account)
            stored += end - first + 1
        if out:
            self._db.executemany(insert, out)
        for account in touched:
            oldest, last = self._range[account]
            if last - oldest + 1 > self.keep + self._slack:
                oldest = last - self.keep + 1
                # a round's row that straddles the cut stays whole: more is kept, not less
                self._db.execute("DELETE FROM executions WHERE account = ? AND last < ?",
                                 (account, oldest))
                self._range[account] = (oldest, last)
        self._db.executemany("INSERT OR REPLACE INTO exec_accounts VALUES (?, ?, ?)",
                             [(a, *self._range[a]) for a in touched])
        return stored

    def holes(self, sequences: dict[int, int]) -> list[tuple[int, int, int]]:
        """Each account's sequence in the exchange: where the file is behind it, the
        executions in between were never written; what is kept then begins after them.
        Returns ``(account, last written, exchange's)`` of each hole."""
        out = []
        for account, seq in sequences.items():
            r = self.range(account)
            last = r[1] if r is not None else 0
            if seq > last:
                out.append((account, last, seq))
                self._db.execute("DELETE FROM executions WHERE account = ?", (account,))
                self._set(account, seq + 1, seq)
        return out


# ---- queries (the tape's reader connection) --------------------------------------------


def kept_range(db: sqlite3.Connection, account: int) -> tuple[int, int]:
    """``(oldest, last)``: the account's kept executions; ``(1, 0)`` when it has none."""
    row = db.execute("SELECT oldest, last FROM exec_accounts WHERE account = ?",
                     (account,)).fetchone()
    return (int(row[0]), int(row[1])) if row else (1, 0)


def read(db: sqlite3.Connection, account: int, after_seq: int, upto: int,
         limit: int) -> list[tuple[int, int, bytes]]:
    """``(first, last, ExecutionBatch bytes)`` of the account's executions in
    (after_seq, upto], oldest first, by rounds, about ``limit`` executions at most (at
    least one round)."""
    out: list[tuple[int, int, bytes]] = []
    taken = 0
    rows = db.execute("SELECT first, last, batch FROM executions WHERE account = ? AND "
                      "last > ? AND first <= ? ORDER BY first", (account, after_seq, upto))
    for first, last, batch in rows:
        first, last, batch = int(first), int(last), bytes(batch)
        if first <= after_seq:
            batch, first = after(batch, after_seq)
        if out and taken + last - first + 1 > limit:
            break
        out.append((first, last, batch))
        taken += last - first + 1
    return out
