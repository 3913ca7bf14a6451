"""The operator's replay: rebuild the books from a data directory's journal (in the Rust
core) at any sequence number or time, show a product's book, trades and allocations,
verify recorded state hashes, export trades as CSV, and draw the depth chart and price
history as PNG, with an HTML report that holds them."""

from __future__ import annotations

import base64
import contextlib
import csv
import datetime as dt
import html
import io
import json
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from spotex._core import (
    Engine,
    Exchange,
    JournalError,
    JournalWriter,
    journal_bounds,
    journal_segments,
    read_jetstream,
    replay_audit,
    replay_journal,
)
from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex.server.host import (
    FORMAT,
    FORMAT_FILE,
    JOURNAL,
    REPLICATED_FILE,
    SNAPSHOTS,
    check_format,
    read_snapshot,
)

Trade = tuple[int, int, int, str, int, int, str]


@dataclass
class Replay:
    engine: Engine
    sequence: int
    trades: list[Trade]
    records: int
    torn_tail: tuple[Path, int, int] | None
    # where the replay began: 0 (the first command), or the snapshot it started from
    # when older journal segments were retired
    start: int = 0
    # the exchange's state hash there: the books', and the ledger's once there is money
    state_hash: str = ""
    # the money there: None when the ledger's invariants hold (else what broke), and
    # every account's balance (spotex.v1.Balance), by id
    ledger_problem: str | None = None
    balances: list[Any] = field(default_factory=list)


# why a book may show bids at or above asks, said wherever one is shown crossed
CROSSED_NOTE = ("bids at or above asks here are gang bids the asks cannot fill: they want "
                "whole nodes' GPUs, and those asks offer GPUs spread over nodes, or from a "
                "cluster whose free GPUs are not on one node")


def _dollars(micros: int) -> str:
    """Dollars as a trader reads them: at least two decimals (1.40), more only when the
    price has them."""
    d = Decimal(micros) / 1_000_000
    return f"{d:.2f}" if d == round(d, 2) else str(d)


def _iso(micros: int) -> str:
    return dt.datetime.fromtimestamp(micros / 1e6, dt.UTC).isoformat(timespec="milliseconds")


def _journal(data_dir: Path) -> Path:
    check_format(data_dir, mark=False)
    return data_dir / JOURNAL


def rebuild(data_dir: Path, until_seq: int | None = None,
            until: dt.datetime | None = None) -> Replay:
    """Replays the journal up to the given sequence number or time: from the first
    command when the whole journal is kept (so every trade is listed), otherwise from the
    oldest snapshot the kept segments continue."""
    journal = _journal(data_dir)
    (first_seq, last_seq, count), torn = journal_bounds(journal)
    snapshots = sorted((data_dir / SNAPSHOTS).glob("snapshot-*.bin"))
    if not count and not snapshots:
        raise JournalError(f"{data_dir} holds no journal records and no snapshots")
    until_ts = int(until.timestamp() * 1_000_000) if until else None
    first = first_seq if count else None
    start, base = 0, None
    if first is None or first > 1:  # older segments were retired: begin at a snapshot
        for path in snapshots:
            seq, exchange, gateway = read_snapshot(path)
            if first is not None and seq < first - 1:
                continue  # the journal no longer continues it
            if (until_seq is not None and seq > until_seq) or (
                    until_ts is not None and json.loads(gateway)["last_ts"] > until_ts):
                break
            start, base = seq, exchange
            break
        else:
            base = None
        if base is None:
            oldest = (first or 1) - 1
            raise JournalError(f"the journal before sequence {oldest + 1} was retired: the "
                               f"oldest state that can be rebuilt is at sequence {oldest} "
                               "(serve with --journal-retention keep or archive to keep more)")
    last = last_seq if count else start
    if until_seq is not None and until_seq > last:
        raise JournalError(f"sequence {until_seq} is past the end of the journal ({last})")
    engine, seq, trades, state_hash, problem, balances = replay_audit(
        journal, until_seq=until_seq, until_ts=until_ts, snapshot=base, snapshot_seq=start)
    return Replay(engine, seq, trades, count, torn, start, state_hash, problem,
                  [pb.Balance.FromString(b) for b in balances])


def verify(data_dir: Path) -> list[tuple[int, str, str, bool]]:
    """For every snapshot: (sequence, hash recorded in it, hash of a replay of the journal
    to that sequence, equal?). The replay starts from the previous snapshot (or the first
    command), so the journal between every two snapshots is checked; the snapshot's own
    engine bytes are checked too. Where the journal before the oldest snapshot was
    retired, that snapshot is checked against its own bytes alone."""
    out = []
    journal = _journal(data_dir)
    segments = journal_segments(journal)
    base: tuple[bytes | None, int] | None = (None, 0) if segments and segments[0][0] <= 1 \
        else None
    for path in sorted((data_dir / SNAPSHOTS).glob("snapshot-*.bin")):
        seq, exchange, gateway = read_snapshot(path)
        recorded = json.loads(gateway)["state_hash"]
        restored = Exchange.restore(exchange).state_hash()
        if base is not None:
            replayed = replay_journal(journal, until_seq=seq, snapshot=base[0],
                                      snapshot_seq=base[1])[3]
            ok = recorded == replayed == restored
        else:
            replayed, ok = "(journal retired)", recorded == restored
        out.append((seq, recorded, replayed, ok))
        base = (exchange, seq)
    return out


def trades_csv(trades: list[Trade], path: Path, product: str | None = None) -> int:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["sequence", "time_utc", "trade_id", "product", "price_usd", "quantity",
                    "aggressor"])
        n = 0
        for seq, ts, tid, pid, price, qty, side in trades:
            if product and pid != product:
                continue
            w.writerow([seq, _iso(ts), tid, pid, _dollars(price), qty, side])
            n += 1
    return n


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
    return buf.getvalue()


def depth_chart(engine: Engine, product: str) -> bytes:
    """Cumulative GPUs on each side against price, as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    bids, asks = engine.l2(product, 1 << 20)
    fig, ax = plt.subplots(figsize=(8, 4.5))
    for levels, colour, label in ((bids, "tab:green", "bids"), (asks, "tab:red", "asks")):
        if not levels:
            continue
        xs = [float(_dollars(p)) for p, _, _ in levels]
        cum, ys = 0, []
        for _, q, _ in levels:
            cum += q
            ys.append(cum)
        ax.step(xs, ys, where="post", color=colour, label=label)
        ax.fill_between(xs, ys, step="post", alpha=0.2, color=colour)
    ax.set_xlabel("price ($ per GPU-hour)")
    ax.set_ylabel("cumulative GPUs")
    ax.set_title(f"depth: {product}")
    ax.legend()
    data = _png(fig)
    plt.close(fig)
    return data


def price_history(trades: list[Trade], product: str) -> bytes:
    """Trade prices over time (marker size by quantity), as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    mine = [t for t in trades if t[3] == product]
    fig, ax = plt.subplots(figsize=(8, 4.5))
    if mine:
        xs: Any = [dt.datetime.fromtimestamp(t[1] / 1e6, dt.UTC) for t in mine]
        ys = [float(_dollars(t[4])) for t in mine]
        ax.plot(xs, ys, color="tab:blue", linewidth=1)
        ax.scatter(xs, ys, s=[max(4, t[5]) for t in mine], color="tab:blue", alpha=0.5)
    ax.set_xlabel("time (UTC)")
    ax.set_ylabel("trade price ($ per GPU-hour)")
    ax.set_title(f"price history: {product} ({len(mine)} trades)")
    fig.autofmt_xdate()
    data = _png(fig)
    plt.close(fig)
    return data


def html_report(r: Replay, product: str, depth_png: bytes, history_png: bytes) -> str:
    bids, asks = r.engine.l2(product, 20)

    def img(data: bytes, alt: str) -> str:
        return f'<img alt="{alt}" src="data:image/png;base64,{base64.b64encode(data).decode()}">'

    rows = "".join(
        f"<tr><td>{b[1] if b else ''}</td><td>{_dollars(b[0]) if b else ''}</td>"
        f"<td>{_dollars(a[0]) if a else ''}</td><td>{a[1] if a else ''}</td></tr>"
        for b, a in ((bids[i] if i < len(bids) else None, asks[i] if i < len(asks) else None)
                     for i in range(max(len(bids), len(asks)))))
    trades = "".join(
        f"<tr><td>{seq}</td><td>{_iso(ts)}</td><td>{tid}</td><td>{_dollars(px)}</td>"
        f"<td>{q}</td><td>{side}</td></tr>"
        for seq, ts, tid, pid, px, q, side in r.trades[-200:] if pid == product)
    allocations = "".join(
        f"<tr><td>{a.trade_id}</td><td>{html.escape(a.cluster)}</td><td>{a.buyer}</td>"
        f"<td>{a.seller}</td><td>{a.qty}</td><td>{_dollars(a.price)}</td><td>"
        + html.escape(", ".join(f"{n}[{','.join(map(str, g))}]" for n, g in a.slots))
        + "</td></tr>"
        for a in r.engine.all_allocations() if a.product == product)
    crossed = bool(bids and asks and bids[0][0] >= asks[0][0])
    p = html.escape(product)
    note = f"<p><em>{html.escape(CROSSED_NOTE)}.</em></p>" if crossed else ""
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>spotex replay: {p}</title>
<style>body{{font-family:sans-serif;margin:2em}}table{{border-collapse:collapse}}
td,th{{border:1px solid #ccc;padding:2px 8px;text-align:right}}</style></head><body>
<h1>{p}</h1><p>replayed to sequence {r.sequence} of {r.records} journal records;
state hash <code>{r.state_hash}</code></p>
{img(depth_png, "depth chart")}{img(history_png, "price history")}
<h2>book</h2><table><tr><th>bid GPUs</th><th>bid $</th><th>ask $</th><th>ask GPUs</th></tr>
{rows}</table>{note}<h2>trades (last 200)</h2><table><tr><th>seq</th><th>time</th><th>trade</th>
<th>$</th><th>GPUs</th><th>aggressor</th></tr>{trades}</table>
<h2>allocations</h2><table><tr><th>trade</th><th>cluster</th><th>buyer</th><th>seller</th>
<th>GPUs</th><th>$/GPU-h</th><th>where</th></tr>{allocations}</table></body></html>"""


def stream_shard_name(stream: str) -> str:
    """The shard of a stream's name: ``spotex-s1`` (or ``s1``) is shard ``s1``."""
    return stream.removeprefix("spotex-")


def replicated_of(data_dir: Path) -> tuple[list[str], str] | None:
    """The NATS servers and shard a replicated engine's data directory journals to (it
    notes them when it starts), or None for a file journal."""
    path = data_dir / REPLICATED_FILE
    if not path.exists():
        return None
    noted = json.loads(path.read_text())
    return list(noted["servers"]), str(noted["shard"])


@contextlib.contextmanager
def from_stream(servers: list[str], shard: str, data_dir: Path | None = None,
                timeout_seconds: float = 10.0) -> Iterator[Path]:
    """A temporary data directory holding the shard's stream as a file journal (every
    record as the stream holds it, its checksum verified on the way) and the local
    snapshots of ``data_dir`` if given: ``rebuild`` and ``verify`` read it as they read
    any. Nothing is written to the stream or to ``data_dir``."""
    rows = read_jetstream(servers, shard, timeout_seconds=timeout_seconds)
    if rows and rows[0][0] != 1:
        raise JournalError(f"the stream spotex-{shard} begins at sequence {rows[0][0]}: "
                           "its start was removed, so it cannot be replayed from the start")
    tmp = Path(tempfile.mkdtemp(prefix="spotex-replay-"))
    try:
        (tmp / FORMAT_FILE).write_text(FORMAT + "\n")
        journal = JournalWriter(tmp / JOURNAL)
        for seq, ts, command, meta in rows:
            journal.append(seq, ts, command, meta)
        journal.close()
        if data_dir is not None and (data_dir / SNAPSHOTS).is_dir():
            shutil.copytree(data_dir / SNAPSHOTS, tmp / SNAPSHOTS)
        yield tmp
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
