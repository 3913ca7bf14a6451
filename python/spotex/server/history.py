"""Order history on disk: the records of ended orders that the exchange no longer keeps in
memory (it keeps live orders and the most recent ended ones), so that memory is bounded
by live state while GetOrder and ListOrders still answer for every order ever placed.

One SQLite file in the data directory (Python's own ``sqlite3``: no dependency), written
by the writer thread once per round. It is derived data: recovery replays the journal
after the newest snapshot, which lets the same records go again, and writing a record
twice is harmless. Before a snapshot is written (which no longer holds what left
memory), the history is checkpointed to disk, so no record is ever in neither.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

FILE = "history.sqlite3"


class History:
    def __init__(self, path: Path) -> None:
        # the writer thread opens it and is the only one that uses it
        self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS orders (order_id INTEGER PRIMARY KEY, "
                         "account INTEGER NOT NULL, product TEXT NOT NULL, "
                         "record BLOB NOT NULL, coid TEXT)")
        self._db.execute("CREATE INDEX IF NOT EXISTS by_account ON orders (account, order_id)")
        self._client_order_ids()
        # money's transfers that left the exchange's memory (accounts as SQLite's signed
        # integers: the outside, 2^64-1, is -1)
        self._db.execute("CREATE TABLE IF NOT EXISTS transfers (transfer_id INTEGER PRIMARY "
                         "KEY, debit INTEGER NOT NULL, credit INTEGER NOT NULL, "
                         "time INTEGER NOT NULL, record BLOB NOT NULL)")
        self._db.execute("CREATE INDEX IF NOT EXISTS by_debit ON transfers (debit, transfer_id)")
        self._db.execute("CREATE INDEX IF NOT EXISTS by_credit ON transfers "
                         "(credit, transfer_id)")

    def _client_order_ids(self) -> None:
        """Orders are found by client order id too (``coid``, indexed by account). A file
        from before that gets the column, filled once from its records."""
        columns = {r[1] for r in self._db.execute("PRAGMA table_info(orders)")}
        if "coid" not in columns:
            self._db.execute("ALTER TABLE orders ADD COLUMN coid TEXT")
        if self._db.execute("SELECT 1 FROM orders WHERE coid IS NULL LIMIT 1").fetchone():
            from spotex._proto.spotex.v1 import spotex_pb2 as pb
            with self._db:
                self._db.execute("BEGIN")
                rows = self._db.execute("SELECT order_id, record FROM orders "
                                        "WHERE coid IS NULL").fetchall()
                self._db.executemany(
                    "UPDATE orders SET coid = ? WHERE order_id = ?",
                    [(pb.Order.FromString(bytes(r)).client_order_id, i) for i, r in rows])
        self._db.execute("CREATE INDEX IF NOT EXISTS by_coid ON orders (account, coid) "
                         "WHERE coid != ''")

    def add(self, rows: list[tuple[int, int, str, str, bytes]]) -> None:
        """``(order_id, account, product_id, client_order_id, Order bytes)``, as the
        exchange lets go."""
        if rows:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany(
                    "INSERT OR REPLACE INTO orders (order_id, account, product, coid, record) "
                    "VALUES (?, ?, ?, ?, ?)", rows)

    def add_transfers(self, rows: list[tuple[int, int, int, int, bytes]]) -> None:
        """``(transfer_id, debit, credit, time, Transfer bytes)``, as the exchange lets go."""
        if rows:
            with self._db:
                self._db.execute("BEGIN")
                self._db.executemany("INSERT OR REPLACE INTO transfers VALUES (?, ?, ?, ?, ?)",
                                     [(t, _signed(d), _signed(c), ts, b)
                                      for t, d, c, ts, b in rows])

    def transfers(self, account: int, after: int, since: int, until: int,
                  limit: int) -> list[tuple[int, bytes]]:
        """``(transfer_id, Transfer bytes)`` of an account's transfers that left memory,
        oldest first: ids above ``after``, times in ``[since, until)``, at most
        ``limit``."""
        a = _signed(account)
        rows = self._db.execute(
            "SELECT transfer_id, record FROM transfers WHERE (debit = ? OR credit = ?) "
            "AND transfer_id > ? AND time >= ? AND time < ? ORDER BY transfer_id LIMIT ?",
            (a, a, min(after, (1 << 63) - 1), since, until, limit))
        return [(int(i), bytes(r)) for i, r in rows]

    def make_durable(self) -> None:
        """Everything added is on disk (fsynced) when this returns."""
        self._db.execute("PRAGMA wal_checkpoint(FULL)")

    def get(self, order_id: int) -> tuple[int, bytes] | None:
        """``(account, Order bytes)`` of an order that left memory, or None."""
        if not 0 < order_id < 1 << 63:  # ids are assigned from 1; SQLite's are signed
            return None
        row = self._db.execute("SELECT account, record FROM orders WHERE order_id = ?",
                               (order_id,)).fetchone()
        return (int(row[0]), bytes(row[1])) if row else None

    def by_client_order_id(self, account: int, client_order_id: str) -> bytes | None:
        """The Order bytes of the account's latest order with that client order id that
        left memory, or None."""
        if not client_order_id:
            return None
        row = self._db.execute(
            "SELECT record FROM orders WHERE account = ? AND coid = ? "
            "ORDER BY order_id DESC LIMIT 1", (account, client_order_id)).fetchone()
        return bytes(row[0]) if row else None

    def orders(self, account: int, product: str = "", after: int = 0,
               limit: int = -1) -> list[tuple[int, bytes]]:
        """``(order_id, Order bytes)`` of an account's orders that left memory, oldest
        first: those with an id above ``after``, at most ``limit`` (-1: all)."""
        query = "SELECT order_id, record FROM orders WHERE account = ? AND order_id > ?"
        args: list[object] = [account, min(after, (1 << 63) - 1)]
        if product:
            query += " AND product = ?"
            args.append(product)
        rows = self._db.execute(query + " ORDER BY order_id LIMIT ?", (*args, limit))
        return [(int(r[0]), bytes(r[1])) for r in rows]

    def close(self) -> None:
        self._db.close()


def _signed(account: int) -> int:
    """An account id as SQLite keeps it (a signed 64-bit integer)."""
    return account - (1 << 64) if account >= 1 << 63 else account
