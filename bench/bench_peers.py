"""Peer benchmark, one command for every engine:

    python bench/bench_peers.py [--orders 1000000] [--runs 3] [--rust-runs 5] [--no-rust]
        [--peer-runs R] [--reference-orders 10000] [--seed 42]
        [--scenarios calm,trending,volatile,crash] [--out bench/results/peers_py.json]

The same seeded order flow (``spotex_core::flow``, in Python ``spotex._core.flow``: one product,
limit GTC and IOC orders, cancels, amends, duplicate cancels) per scenario (calm, trending,
volatile, crash) through:

1. Rust (skipped with ``--no-rust``): ``cargo run --release --manifest-path
   bench/peers-rs/Cargo.toml -- --orders N --runs RUST_RUNS --seed S ...``, the spotex core
   against orderbook-rs, each in its own loop over the decoded stream; its output streams
   through and its results go to peers_rs.json next to --out;
2. Python: spotex per-call (``Engine.place`` / ``cancel`` / ``amend`` per message), spotex batch
   (``Engine.apply_batch`` over the packed records in chunks), liquibook (C++ liquibook through
   its SWIG wrapper; trades arrive by callback), lightmatchingengine (pure Python; trades are
   returned by ``add_order``), and the pure-Python reference model
   ``spotex.reference.ReferenceEngine`` on a smaller flow of the same scenario, with spotex
   beside it on that flow; results to --out.

Every engine's output is turned, after timing, into the canonical report stream (one line per
trade ``T taker maker price qty`` and per refused cancel or amend ``X id``); its SHA-256 must be
the same for every engine on a stream, in Rust and in Python alike: the run checks that per
scenario and exits non-zero, with where the reports first differ, if not. It ends with one
summary of every engine (messages per second, median of the runs and the min-max spread, the
ratios of spotex to each peer, the worst scenario per engine and the worst-vs-worst ratios) and
writes peers.json next to --out: the machine, the load average at start and end, both parts,
the hash check and the summary. (--out peers_py_small.json: peers_rs_small.json and
peers_small.json.)

Peers need the ``bench`` extra: ``pip install -e '.[bench]'``; the Rust part, cargo.
"""

from __future__ import annotations

import argparse
import gc
import hashlib
import json
import os
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

import spotex
from spotex import batch
from spotex._core import flow
from spotex.tools.reference import ReferenceEngine, Rejected

sys.path.insert(0, str(Path(__file__).parent))
import bench_core  # noqa: E402  (the market set-up the core benchmark uses too)

SCENARIOS = ("calm", "trending", "volatile", "crash")
CHUNK = 16_384  # records per apply_batch call, as in bench_core.py

# per-call opcodes (the record kinds)
PLACE, CANCEL, AMEND = batch.PLACE, batch.CANCEL, batch.AMEND

SEMANTICS = {
    "spotex_per_call": "native: place (limit, GTC or IOC) / cancel / amend; refusals raise "
                       "SpotexError",
    "spotex_batch": "native: the packed records; refusals are REJECTED events",
    "liquibook": "OrderBook<shared_ptr<SimpleOrder>> (liquibook_book_OrderBook: matching "
                 "without the depth tracker); IOC via add(order, oc_immediate_or_cancel) (the "
                 "book reads conditions from add(), not from the order); cancel of a dead "
                 "order refused by liquibook (on_cancel_reject); amend = cancel + add of a new "
                 "SimpleOrder at the new price and remaining qty (the wrapper's books never "
                 "update SimpleOrder, so after replace() the order keeps its old price for "
                 "later trades and cancels); fills from on_fill(inbound, matched, qty, price); "
                 "liquibook id -> stream id map",
    "lightmatchingengine": "add_order with int micro-dollar prices; IOC = add_order then "
                           "cancel_order of the remainder; cancel/amend of an order whose "
                           "leaves_qty is 0 refused by the adapter (LME keeps filled orders in "
                           "order_id_map, and cancel_order of one fails an assert once its "
                           "price level is gone); amend = cancel_order + add_order; LME id -> "
                           "stream id map; taker = the order add_order returns, makers = the "
                           "passive trades in the list (the per-level aggressive trade is "
                           "skipped)",
    "reference_model": "native (same API as Engine; refusals raise Rejected)",
}


# ---- the stream ----------------------------------------------------------------------


@dataclass
class Stream:
    """One flow, decoded once (outside any timing) into columns."""

    scenario: str
    products: list[Any]
    clusters: list[Any]
    records: bytes
    counts: dict[str, int]
    kind: list[int] = field(default_factory=list)
    side: list[int] = field(default_factory=list)  # 0 buy, 1 sell
    tif: list[int] = field(default_factory=list)
    cluster: list[int] = field(default_factory=list)
    account: list[int] = field(default_factory=list)
    order_id: list[int] = field(default_factory=list)  # places: the id the stream gives it
    price: list[int] = field(default_factory=list)
    qty: list[int] = field(default_factory=list)
    ts: list[int] = field(default_factory=list)

    @property
    def messages(self) -> int:
        return len(self.kind)

    @property
    def product(self) -> str:
        return str(self.products[0][0])


def load(scenario: str, seed: int, new_orders: int) -> Stream:
    products, clusters, records, counts = flow(scenario, seed=seed, new_orders=new_orders)
    assert len(products) == 1, "the flow trades one product"
    a = np.frombuffer(records, dtype=batch.COMMAND_DTYPE)
    s = Stream(scenario, products, clusters, records, dict(counts))
    s.kind, s.side, s.tif = a["kind"].tolist(), a["side"].tolist(), a["tif"].tolist()
    s.cluster, s.account = a["cluster"].tolist(), a["account"].tolist()
    s.order_id, s.price, s.qty, s.ts = (a["order_id"].tolist(), a["price"].tolist(),
                                        a["qty"].tolist(), a["ts"].tolist())
    kinds = set(s.kind)
    assert kinds <= {PLACE, CANCEL, AMEND}, kinds
    assert set(a["order_type"].tolist()) == {batch.LIMIT}
    assert set(s.tif) <= {batch.GTC, batch.IOC}
    # an amend record's price or quantity 0 means "unchanged", which the peers have no way to
    # say: the flow always names a new, positive price and quantity
    bad = np.flatnonzero((a["kind"] == AMEND) & ((a["price"] <= 0) | (a["qty"] <= 0)))
    assert not bad.size, (
        f"{scenario}: {bad.size} amend records without a positive price and quantity, the "
        f"first record {bad[0]}: order {a['order_id'][bad[0]]}, price {a['price'][bad[0]]}, "
        f"qty {a['qty'][bad[0]]}")
    # places get ids 1, 2, 3, ... in stream order
    next_id = 1
    for i, k in enumerate(s.kind):
        if k == PLACE:
            s.order_id[i] = next_id
            next_id += 1
    return s


def mix(s: Stream) -> dict[str, Any]:
    c = s.counts
    n = s.messages
    gtc = c["new_orders"] - c["ioc"]
    return {**c, "share_of_messages": {"place_gtc": gtc / n, "place_ioc": c["ioc"] / n,
                                       "cancel": c["cancels"] / n, "amend": c["amends"] / n}}


# ---- reports -------------------------------------------------------------------------


@dataclass
class Report:
    text: str
    trades: int
    refusals: int

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode("ascii")).hexdigest()


def report(lines: list[str]) -> Report:
    trades = sum(1 for x in lines if x[0] == "T")
    return Report("".join(lines), trades, len(lines) - trades)


def first_difference(a: str, b: str) -> tuple[int, str, str] | None:
    """The first differing line (1-based) of two reports, or None if they are equal."""
    if a == b:
        return None
    la, lb = a.splitlines(), b.splitlines()
    for i, (x, y) in enumerate(zip(la, lb, strict=False)):
        if x != y:
            return i + 1, x, y
    i = min(len(la), len(lb))
    return i + 1, la[i] if i < len(la) else "<end>", lb[i] if i < len(lb) else "<end>"


# ---- spotex (and the reference model): per-call -------------------------------------


def market(engine: Any, s: Stream) -> None:
    bench_core.market(engine, s.products, s.clusters)


def call_ops(s: Stream, typed: bool = False) -> list[tuple[Any, ...]]:
    """Per-call argument tuples for Engine (and, as words, ReferenceEngine): with ``typed``
    the side and time in force are ``spotex.Side`` and ``spotex.TimeInForce`` values."""
    cids = [c[1] for c in s.clusters]
    tifs: dict[int, Any] = {batch.GTC: "gtc", batch.IOC: "ioc"}
    sides: tuple[Any, Any] = ("buy", "sell")
    if typed:
        tifs = {batch.GTC: spotex.TimeInForce.GTC, batch.IOC: spotex.TimeInForce.IOC}
        sides = (spotex.Side.BUY, spotex.Side.SELL)
    ops: list[tuple[Any, ...]] = []
    for i, k in enumerate(s.kind):
        if k == PLACE:
            clu = s.cluster[i]
            ops.append((PLACE, s.account[i], sides[1] if s.side[i] else sides[0], s.price[i],
                        s.qty[i], s.ts[i], tifs[s.tif[i]],
                        cids[clu] if clu != batch.NO_CLUSTER else None))
        elif k == CANCEL:
            ops.append((CANCEL, s.account[i], s.order_id[i], s.ts[i]))
        else:
            ops.append((AMEND, s.account[i], s.order_id[i], s.price[i], s.qty[i], s.ts[i]))
    return ops


def run_calls(engine: Any, product: str, ops: list[tuple[Any, ...]],
              refused: type[Exception]) -> tuple[float, list[Any]]:
    """Per message one call; keeps the event lists that may hold trades and, for a refused
    cancel or amend, the order id."""
    out: list[Any] = []
    keep = out.append
    place, cancel, amend = engine.place, engine.cancel, engine.amend
    clock = time.perf_counter
    start = clock()
    for op in ops:
        k = op[0]
        if k == PLACE:
            ev = place(op[1], product, op[2], op[3], op[4], ts=op[5], tif=op[6],
                       cluster_id=op[7])
            if len(ev) > 1:
                keep(ev)
        elif k == CANCEL:
            try:
                cancel(op[1], op[2], ts=op[3])
            except refused:
                keep(op[2])
        else:
            try:
                ev = amend(op[1], op[2], price=op[3], qty=op[4], ts=op[5])
            except refused:
                keep(op[2])
                continue
            if len(ev) > 1:
                keep(ev)
    return clock() - start, out


def calls_report(out: list[Any]) -> Report:
    lines: list[str] = []
    for item in out:
        if type(item) is int:
            lines.append(f"X {item}\n")
            continue
        for e in item:
            if e.kind == "trade":
                lines.append(f"T {e.order_id} {e.maker_order} {e.price} {e.qty}\n")
    return report(lines)


# ---- spotex: batch -------------------------------------------------------------------


def run_batch(engine: Any, records: bytes) -> tuple[float, list[bytes]]:
    view = memoryview(records)
    step = CHUNK * batch.COMMAND_DTYPE.itemsize
    chunks = [view[i : i + step] for i in range(0, len(records), step)]
    apply = engine.apply_batch
    clock = time.perf_counter
    start = clock()
    out = [apply(c) for c in chunks]
    return clock() - start, out


def batch_report(out: list[bytes], s: Stream) -> Report:
    lines: list[str] = []
    for n, raw in enumerate(out):
        ev = np.frombuffer(raw, dtype=batch.EVENT_DTYPE)
        ev = ev[(ev["kind"] == batch.TRADE) | (ev["kind"] == batch.REJECTED)]
        cmd = ev["command"].astype(np.int64) + n * CHUNK
        for kind, c, taker, maker, price, qty in zip(
                ev["kind"].tolist(), cmd.tolist(), ev["order_id"].tolist(),
                ev["other_order"].tolist(), ev["price"].tolist(), ev["qty"].tolist(),
                strict=True):
            if kind == batch.TRADE:
                lines.append(f"T {taker} {maker} {price} {qty}\n")
            else:
                assert s.kind[c] != PLACE, f"a place was rejected (record {c}): the flow never is"
                lines.append(f"X {s.order_id[c]}\n")
    return report(lines)


# ---- liquibook -----------------------------------------------------------------------


def liquibook_module() -> Any:
    import liquibook

    return liquibook


def liquibook_listener(lb: Any, out: list[Any]) -> Any:
    """An OrderListener (a SWIG director) that appends each fill as the tuple liquibook hands
    over (inbound order, matched order, qty, price) and each refused cancel as the order."""

    class Listener(lb.OrderListener):  # type: ignore[misc]
        def __init__(self) -> None:
            lb.OrderListener.__init__(self)
            self.keep = out.append

        def on_accept(self, order: Any) -> None:
            pass

        def on_reject(self, order: Any, reason: str) -> None:
            raise RuntimeError(f"liquibook rejected an order: {reason}")

        def on_fill(self, order: Any, matched: Any, qty: int, price: int) -> None:
            self.keep((order, matched, qty, price))

        def on_cancel(self, order: Any) -> None:
            pass

        def on_cancel_reject(self, order: Any, reason: str) -> None:
            self.keep(order)

        def on_replace(self, order: Any, delta: int, price: int) -> None:
            pass

        def on_replace_reject(self, order: Any, reason: str) -> None:
            pass

    return Listener()


def liquibook_ops(lb: Any, s: Stream) -> tuple[list[tuple[Any, ...]], dict[int, int]]:
    """liquibook's own command objects (SimpleOrder), made before timing, fresh for every run
    (a book holds on to them), and the map from liquibook's order ids to the stream's."""
    ioc, gtc = lb.oc_immediate_or_cancel, lb.oc_no_conditions
    order = lb.SimpleOrder
    ids: dict[int, int] = {}
    is_buy: dict[int, bool] = {}
    ops: list[tuple[Any, ...]] = []
    for i, k in enumerate(s.kind):
        sid = s.order_id[i]
        if k == PLACE:
            buy = s.side[i] == batch.BUY
            o = order(buy, s.price[i], s.qty[i])
            ids[o.order_id_] = sid
            is_buy[sid] = buy
            ops.append((PLACE, sid, o, ioc if s.tif[i] == batch.IOC else gtc))
        elif k == CANCEL:
            ops.append((CANCEL, sid))
        else:
            o = order(is_buy[sid], s.price[i], s.qty[i])
            ids[o.order_id_] = sid
            ops.append((AMEND, sid, o))
    return ops, ids


def run_liquibook(lb: Any, ops: list[tuple[Any, ...]]) -> tuple[float, list[Any]]:
    out: list[Any] = []
    listener = liquibook_listener(lb, out)
    book = lb.liquibook_book_OrderBook()
    book.set_order_listener(listener)
    add, cancel = book.add, book.cancel
    gtc = lb.oc_no_conditions
    live: dict[int, Any] = {}
    clock = time.perf_counter
    start = clock()
    for op in ops:
        k = op[0]
        if k == PLACE:
            live[op[1]] = op[2]
            add(op[2], op[3])
        elif k == CANCEL:
            cancel(live[op[1]])  # a dead order: liquibook calls on_cancel_reject
        else:
            new = op[2]
            n = len(out)
            cancel(live[op[1]])
            if len(out) == n:  # not refused
                live[op[1]] = new
                add(new, gtc)
    elapsed = clock() - start
    book.set_order_listener(None)
    return elapsed, out


def liquibook_report(out: list[Any], ids: dict[int, int]) -> Report:
    lines: list[str] = []
    for item in out:
        if type(item) is tuple:
            taker, maker, qty, price = item
            lines.append(f"T {ids[taker.order_id_]} {ids[maker.order_id_]} {price} {qty}\n")
        elif type(item) is int:
            lines.append(f"X {item}\n")
        else:
            lines.append(f"X {ids[item.order_id_]}\n")
    return report(lines)


# ---- lightmatchingengine -------------------------------------------------------------


def lme_ops(s: Stream) -> list[tuple[Any, ...]]:
    from lightmatchingengine.lightmatchingengine import Side

    side_of: dict[int, int] = {}
    ops: list[tuple[Any, ...]] = []
    for i, k in enumerate(s.kind):
        sid = s.order_id[i]
        if k == PLACE:
            side_of[sid] = Side.SELL if s.side[i] else Side.BUY
            ops.append((PLACE, sid, s.price[i], s.qty[i], side_of[sid], s.tif[i] == batch.IOC))
        elif k == CANCEL:
            ops.append((CANCEL, sid))
        else:
            ops.append((AMEND, sid, s.price[i], s.qty[i], side_of[sid]))
    return ops


def run_lme(product: str, ops: list[tuple[Any, ...]]) -> tuple[float, list[Any], list[int]]:
    """Returns the time, the output ((taker stream id, trades) per add_order that traded, a
    stream id per refusal) and, for LME order id n, the stream id at made[n - 1]."""
    from lightmatchingengine.lightmatchingengine import LightMatchingEngine

    engine = LightMatchingEngine()
    add, cancel = engine.add_order, engine.cancel_order
    out: list[Any] = []
    keep = out.append
    made: list[int] = []
    note = made.append
    live: dict[int, Any] = {}
    clock = time.perf_counter
    start = clock()
    for op in ops:
        k = op[0]
        if k == PLACE:
            sid = op[1]
            o, trades = add(product, op[2], op[3], op[4])
            note(sid)
            if trades:
                keep((sid, trades))
            if op[5]:
                if o.leaves_qty:
                    cancel(o.order_id, product)
            else:
                live[sid] = o
        elif k == CANCEL:
            o = live.get(op[1])
            if o is None or not o.leaves_qty:
                keep(op[1])
            else:
                cancel(o.order_id, product)
        else:
            sid = op[1]
            o = live.get(sid)
            if o is None or not o.leaves_qty:
                keep(sid)
                continue
            cancel(o.order_id, product)
            o, trades = add(product, op[2], op[3], op[4])
            note(sid)
            if trades:
                keep((sid, trades))
            live[sid] = o
    return clock() - start, out, made


def lme_report(out: list[Any], made: list[int]) -> Report:
    lines: list[str] = []
    for item in out:
        if type(item) is int:
            lines.append(f"X {item}\n")
            continue
        taker, trades = item
        aggressor = trades[0].order_id  # each price level: the aggressive trade, then makers
        for t in trades:
            if t.order_id != aggressor:
                lines.append(f"T {taker} {made[t.order_id - 1]} {int(t.trade_price)} "
                             f"{int(t.trade_qty)}\n")
    return report(lines)


# ---- runs ----------------------------------------------------------------------------


@dataclass
class Result:
    messages: int
    secs: list[float] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)
    last: Report | None = None

    def add(self, secs: float, rep: Report) -> None:
        self.secs.append(secs)
        self.hashes.append(rep.sha256)
        self.last = rep

    @property
    def rates(self) -> list[float]:
        return [self.messages / x for x in self.secs]

    @property
    def median(self) -> float:
        return float(statistics.median(self.rates))

    def as_json(self) -> dict[str, Any]:
        assert self.last is not None
        return {"messages": self.messages, "runs": len(self.secs), "seconds": self.secs,
                "msgs_per_sec_runs": self.rates, "msgs_per_sec_median": self.median,
                "msgs_per_sec_min": min(self.rates), "msgs_per_sec_max": max(self.rates),
                "report_sha256": self.hashes[0],
                "same_report_every_run": len(set(self.hashes)) == 1,
                "trades": self.last.trades, "refusals": self.last.refusals}


def timed(runs: int, messages: int, once: Callable[[], tuple[float, Report]]) -> Result:
    r = Result(messages)
    for _ in range(runs):
        # the inputs built so far are not the engine's garbage: keep the collector off them
        gc.collect()
        gc.freeze()
        try:
            secs, rep = once()
        finally:
            gc.unfreeze()
        r.add(secs, rep)
    return r


def spotex_per_call(s: Stream, ops: list[tuple[Any, ...]]) -> tuple[float, Report]:
    e = spotex.Engine()
    market(e, s)
    secs, out = run_calls(e, s.product, ops, spotex.SpotexError)
    return secs, calls_report(out)


def spotex_batch(s: Stream) -> tuple[float, Report]:
    e = spotex.Engine()
    market(e, s)
    secs, out = run_batch(e, s.records)
    return secs, batch_report(out, s)


def reference(s: Stream, ops: list[tuple[Any, ...]]) -> tuple[float, Report]:
    m = ReferenceEngine()
    market(m, s)
    secs, out = run_calls(m, s.product, ops, Rejected)
    return secs, calls_report(out)


def liquibook_once(lb: Any, s: Stream) -> tuple[float, Report]:
    ops, ids = liquibook_ops(lb, s)
    gc.freeze()  # the freshly made orders as well
    secs, out = run_liquibook(lb, ops)
    return secs, liquibook_report(out, ids)


def lme_once(s: Stream, ops: list[tuple[Any, ...]]) -> tuple[float, Report]:
    secs, out, made = run_lme(s.product, ops)
    return secs, lme_report(out, made)


# ---- Rust: the spotex core against orderbook-rs ------------------------------------

REPO = Path(__file__).resolve().parent.parent
RUST_MANIFEST = "bench/peers-rs/Cargo.toml"  # cargo runs in REPO


def sibling(out: Path, part: str) -> Path:
    """The file of another part of the run, next to --out: peers_py.json -> peers{part}.json,
    peers_py_small.json -> peers{part}_small.json (a name without "_py": name{part}.json)."""
    if "_py" in out.name:
        return out.with_name(out.name.replace("_py", part, 1))
    return out.with_name(f"{out.stem}{part or '_all'}{out.suffix}")


def repo_relative(p: Path) -> Path:
    """The path as peers-rs reads it: relative to the repository root, or absolute."""
    p = p.resolve()
    try:
        return p.relative_to(REPO)
    except ValueError:
        return p


def run_rust(args: argparse.Namespace, names: list[str], out: Path,
             reports: Path) -> dict[str, Any]:
    """Runs bench/peers-rs on the same flows (its output streams through) and returns its
    results. It writes each scenario's report text (spotex's) into ``reports``, to locate a
    difference from the Python engines' reports."""
    cmd = ["cargo", "run", "--release", "--manifest-path", RUST_MANIFEST, "--",
           "--orders", str(args.orders), "--runs", str(args.rust_runs), "--seed", str(args.seed),
           "--scenarios", ",".join(names), "--out", str(repo_relative(out)),
           "--reports", str(reports)]
    print(f"$ {shlex.join(cmd)}", flush=True)
    started = time.time()
    # exit status 1: spotex and orderbook-rs disagree; the results are written all the same,
    # and the hash check below reports it
    status = subprocess.run(cmd, cwd=REPO, check=False).returncode
    if status not in (0, 1) or not out.exists() or out.stat().st_mtime < started:
        sys.exit(f"the Rust comparison failed (exit status {status}): {shlex.join(cmd)}")
    res: dict[str, Any] = json.loads(out.read_text())
    f = res["flow"]
    assert (f["seed"], f["new_orders"], f["scenarios"]) == (args.seed, args.orders, names), f
    return res


def cross_check(name: str, rust: dict[str, Any], py: dict[str, Result],
                reports: Path) -> dict[str, Any]:
    """Every engine's report hash on the scenario's stream, in Rust and in Python: all the
    same, or where spotex in Rust and spotex per-call in Python first differ."""
    hashes = {"spotex_rust": rust["engines"]["spotex"]["report_sha256"],
              "orderbook_rs": rust["engines"]["orderbook-rs"]["report_sha256"]}
    hashes |= {eng: r.hashes[0] for eng, r in py.items()}
    check: dict[str, Any] = {"hashes": hashes, "agree": len(set(hashes.values())) == 1}
    if rust["difference"]:
        check["spotex_rust_vs_orderbook_rs"] = rust["difference"]
    base = py["spotex_per_call"].last
    assert base is not None
    if hashes["spotex_rust"] != base.sha256:
        d = first_difference((reports / f"{name}.txt").read_text(), base.text)
        assert d is not None
        check["spotex_rust_vs_spotex_per_call"] = {"line": d[0], "spotex_rust": d[1],
                                                   "spotex_per_call": d[2]}
    return check


# ---- output --------------------------------------------------------------------------

LABELS = {"spotex_rust": "spotex Rust", "orderbook_rs": "orderbook-rs",
          "spotex_batch": "spotex batch", "spotex_per_call": "spotex per-call",
          "liquibook": "liquibook", "lightmatchingengine": "lightmatchingengine",
          "reference_model": "reference model*"}
SMALL = "_small_flow"  # spotex beside the reference model, on its smaller flow
# (spotex, peer): the ratios of medians the summary gives
PAIRS = [("spotex_rust", "orderbook_rs"),
         *((f"spotex_{how}{small}", peer) for how in ("batch", "per_call")
           for peer, small in (("liquibook", ""), ("lightmatchingengine", ""),
                               ("reference_model", SMALL)))]


def rate(x: float) -> str:
    return f"{x / 1e6:.2f}M" if x >= 999_500 else f"{x / 1e3:.0f}k"


def times(x: float) -> str:
    return f"{x:.0f}x" if x >= 100 else f"{x:.1f}x"


def table(rows: Iterable[tuple[str, Result]], batch_med: float, call_med: float) -> None:
    """One row per engine; the last two columns: spotex batch's and spotex per-call's median
    over this engine's."""
    print(f"  {'engine':<22}{'runs':>5}{'msgs/s':>11}{'min-max':>16}"
          f"{'batch/this':>12}{'per-call/this':>15}")
    for name, r in rows:
        spread = f"{rate(min(r.rates))}-{rate(max(r.rates))}"
        b = f"{batch_med / r.median:.1f}x" if name != "spotex_batch" else ""
        c = f"{call_med / r.median:.1f}x" if not name.startswith("spotex") else ""
        print(f"  {name:<22}{len(r.secs):>5}{rate(r.median):>11}{spread:>16}{b:>12}{c:>15}")


def summarize(per_scenario: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Per scenario every engine's median and spread with the ratios of PAIRS; per engine its
    worst scenario, and the ratios of the worst medians. ``per_scenario`` maps a scenario to
    each engine's results (as_json, or the same fields from peers-rs)."""
    keep = ("messages", "msgs_per_sec_median", "msgs_per_sec_min", "msgs_per_sec_max")
    scenarios: dict[str, Any] = {}
    for name, engines in per_scenario.items():
        eng = {e: {k: r[k] for k in keep} | {"runs": len(r["msgs_per_sec_runs"])}
               for e, r in engines.items()}
        scenarios[name] = {"engines": eng, "ratios": {
            f"{a}_over_{b}": eng[a]["msgs_per_sec_median"] / eng[b]["msgs_per_sec_median"]
            for a, b in PAIRS if a in eng}}
    names = list(scenarios)
    worst: dict[str, Any] = {}
    for e in scenarios[names[0]]["engines"]:
        sc = min(names, key=lambda x: scenarios[x]["engines"][e]["msgs_per_sec_median"])
        worst[e] = {"scenario": sc,
                    "msgs_per_sec_median": scenarios[sc]["engines"][e]["msgs_per_sec_median"]}
    return {"scenarios": scenarios, "worst": worst, "worst_over_worst": {
        f"{a}_over_{b}": worst[a]["msgs_per_sec_median"] / worst[b]["msgs_per_sec_median"]
        for a, b in PAIRS if a in worst}}


def print_summary(summary: dict[str, Any], reference_orders: int) -> None:
    """The summary as a table: a row per scenario and engine; a ratio column per spotex
    variant, filled on the rows of the peers it is compared with."""
    cols = (("spotex_rust", "Rust/this"), ("spotex_batch", "batch/this"),
            ("spotex_per_call", "per-call/this"))
    print("\nsummary: msgs/s, median of the runs and min-max; spotex's median over the row's")
    print(f"  {'scenario':<10}{'engine':<21}{'msgs/s':>9}{'min-max':>16}"
          + "".join(f"{head:>15}" for _, head in cols))
    for name, sc in summary["scenarios"].items():
        first = name
        for e, label in LABELS.items():
            r = sc["engines"].get(e)
            if r is None:
                continue
            spread = f"{rate(r['msgs_per_sec_min'])}-{rate(r['msgs_per_sec_max'])}"
            small = SMALL if e == "reference_model" else ""
            ratios = "".join(
                f"{times(x):>15}" if (x := sc["ratios"].get(f"{a}{small}_over_{e}")) else " " * 15
                for a, _ in cols)
            print(f"  {first:<10}{label:<21}{rate(r['msgs_per_sec_median']):>9}{spread:>16}"
                  f"{ratios}".rstrip())
            first = ""
    print("\nworst scenario (lowest median msgs/s):")
    worst = summary["worst"]
    for e, label in LABELS.items():
        if e in worst:
            print(f"  {label:<21}{rate(worst[e]['msgs_per_sec_median']):>9}  "
                  f"({worst[e]['scenario']})")
    print("worst vs worst:")
    wvw = summary["worst_over_worst"]
    for a in ("spotex_rust", "spotex_batch", "spotex_per_call"):
        parts = [f"/ {LABELS[b]} {times(x)}" for b in LABELS
                 if (x := wvw.get(f"{a}_over_{b}") or wvw.get(f"{a}{SMALL}_over_{b}"))]
        if parts:
            print(f"  {LABELS[a]:<17}" + ", ".join(parts))
    print(f"* reference model: on a smaller flow of each scenario ({reference_orders:,} new "
          f"orders); its ratios are spotex's medians on that same flow")


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions: dict[str, str | None] = {}
    for pkg in ("spotex", "numpy", "liquibook", "lightmatchingengine"):
        try:
            versions[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            versions[pkg] = None
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "implementation": platform.python_implementation(), "platform": platform.platform(),
            "packages": versions, "load_average_at_start": os.getloadavg()}


def loads(x: Iterable[float]) -> str:
    return ", ".join(f"{v:.2f}" for v in x)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--orders", type=int, default=1_000_000, help="new orders per flow")
    ap.add_argument("--runs", type=int, default=3,
                    help="runs per Python engine (fresh engine each)")
    ap.add_argument("--rust-runs", type=int, default=5,
                    help="runs per engine in the Rust comparison (fresh engine each)")
    ap.add_argument("--no-rust", action="store_true", help="skip the Rust comparison")
    ap.add_argument("--peer-runs", type=int, default=None,
                    help="runs for lightmatchingengine (default: --runs)")
    ap.add_argument("--reference-orders", type=int, default=10_000,
                    help="new orders in the flow the reference model checks")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--scenarios", default=",".join(SCENARIOS),
                    help="comma-separated subset of " + ", ".join(SCENARIOS))
    ap.add_argument("--out", default="bench/results/peers_py.json",
                    help="the Python part's JSON; the Rust part's and the combined JSON go "
                         "next to it\n(peers_py*.json -> peers_rs*.json, peers*.json)")
    args = ap.parse_args()
    names = [x for x in args.scenarios.split(",") if x]
    assert names and set(names) <= set(SCENARIOS), names
    peer_runs = args.runs if args.peer_runs is None else args.peer_runs
    out = Path(args.out)
    rust_out, combined_out = sibling(out, "_rs"), sibling(out, "")

    lb = liquibook_module()  # the bench extra is there before the long runs begin
    load_at_start = os.getloadavg()
    started = time.perf_counter()
    rust: dict[str, Any] | None = None
    with tempfile.TemporaryDirectory(prefix="spotex-peers-") as tmp:
        reports = Path(tmp)
        if not args.no_rust:
            print("==== Rust: the spotex core against orderbook-rs", flush=True)
            rust = run_rust(args, names, rust_out, reports)
            print("\n==== Python: spotex batch and per-call, liquibook, lightmatchingengine, "
                  "the reference model")
        info = machine()
        pk = info["packages"]
        print(f"{info['cpu']}, {info['cores']} cores, Python {info['python']}; spotex "
              f"{pk['spotex']}, liquibook {pk['liquibook']}, lightmatchingengine "
              f"{pk['lightmatchingengine']}")
        print(f"flow: seed {args.seed}, {args.orders:,} new orders per scenario; {args.runs} "
              f"runs per engine ({peer_runs} for lightmatchingengine); the reference model on "
              f"{args.reference_orders:,} new orders; batch calls of {CHUNK:,} records")
        py_started = time.perf_counter()
        scenarios: dict[str, Any] = {}
        checks: dict[str, Any] = {}  # the cross-language hash check
        engines_by_scenario: dict[str, dict[str, Any]] = {}  # every engine, for the summary
        failures: list[str] = []
        medians: dict[str, dict[str, float]] = {}
        for name in names:
            s = load(name, args.seed, args.orders)
            n = s.messages
            m = mix(s)
            sh = m["share_of_messages"]
            print(f"\n{name}: {n:,} messages: place GTC {sh['place_gtc']:.1%}, IOC "
                  f"{sh['place_ioc']:.1%}, cancel {sh['cancel']:.1%} (of them duplicates "
                  f"{s.counts['duplicate_cancels']:,}), amend {sh['amend']:.1%}", flush=True)

            ops = call_ops(s, typed=True)
            results: dict[str, Result] = {}
            results["spotex_batch"] = timed(args.runs, n, partial(spotex_batch, s))
            results["spotex_per_call"] = timed(args.runs, n, partial(spotex_per_call, s, ops))
            del ops
            results["liquibook"] = timed(args.runs, n, partial(liquibook_once, lb, s))
            lops = lme_ops(s)
            results["lightmatchingengine"] = timed(peer_runs, n, partial(lme_once, s, lops))
            del lops

            # the reference model on a smaller flow of the same scenario, with spotex beside it
            small = load(name, args.seed, args.reference_orders)
            sops = call_ops(small)
            ref = {"reference_model": timed(1, small.messages, partial(reference, small, sops)),
                   "spotex_per_call": timed(args.runs, small.messages,
                                            partial(spotex_per_call, small, sops)),
                   "spotex_batch": timed(args.runs, small.messages, partial(spotex_batch, small))}
            del sops

            base = results["spotex_per_call"].last
            assert base is not None
            agree = True
            diffs: dict[str, Any] = {}
            for eng, r in results.items():
                assert r.last is not None
                if len(set(r.hashes)) != 1:
                    failures.append(f"{name}/{eng}: the report differs between runs")
                d = first_difference(base.text, r.last.text)
                if d is not None:
                    agree = False
                    diffs[eng] = {"line": d[0], "spotex_per_call": d[1], eng: d[2]}
                    failures.append(f"{name}/{eng}: report differs from spotex per-call at "
                                    f"line {d[0]}: {d[1]!r} vs {d[2]!r}")
            rbase = ref["spotex_per_call"].last
            assert rbase is not None
            ref_agree = True
            for eng in ("reference_model", "spotex_batch"):
                rother = ref[eng].last
                assert rother is not None
                rd = first_difference(rbase.text, rother.text)
                if rd is not None:
                    ref_agree = False
                    failures.append(f"{name}/{eng} on the reference flow: report differs from "
                                    f"spotex per-call at line {rd[0]}: {rd[1]!r} vs {rd[2]!r}")

            bm = results["spotex_batch"].median
            cm = results["spotex_per_call"].median
            table(results.items(), bm, cm)
            print(f"  report {'hashes agree' if agree else 'hashes DIFFER'}: "
                  f"{base.sha256[:16]}... ({base.trades:,} trades, {base.refusals:,} refusals)")
            rr, rs, rb = ref["reference_model"], ref["spotex_per_call"], ref["spotex_batch"]
            print(f"  reference model, {small.messages:,} messages: {rate(rr.median)} msgs/s; "
                  f"on it spotex per-call {rate(rs.median)} ({times(rs.median / rr.median)}), "
                  f"batch {rate(rb.median)} ({times(rb.median / rr.median)}); report hashes "
                  f"{'agree' if ref_agree else 'DIFFER'}: {rbase.sha256[:16]}... "
                  f"({rbase.trades:,} trades, {rbase.refusals:,} refusals)")

            engines = {eng: r.as_json() for eng, r in results.items()}
            engines_by_scenario[name] = dict(engines)
            engines_by_scenario[name]["reference_model"] = rr.as_json()
            engines_by_scenario[name]["spotex_per_call" + SMALL] = rs.as_json()
            engines_by_scenario[name]["spotex_batch" + SMALL] = rb.as_json()
            if rust is not None:
                rsc = next(x for x in rust["scenarios"] if x["name"] == name)
                engines_by_scenario[name]["spotex_rust"] = rsc["engines"]["spotex"]
                engines_by_scenario[name]["orderbook_rs"] = rsc["engines"]["orderbook-rs"]
                check = checks[name] = cross_check(name, rsc, results, reports)
                if check["agree"]:
                    print(f"  Rust and Python: every report hash is {base.sha256} (spotex Rust, "
                          f"orderbook-rs, spotex batch, spotex per-call, liquibook, "
                          f"lightmatchingengine)")
                else:
                    print("  Rust and Python: report hashes DIFFER:")
                    for eng, h in check["hashes"].items():
                        print(f"    {LABELS[eng]:<20} {h}")
                    hints = [f"{w}: {check[w]}" for w in ("spotex_rust_vs_spotex_per_call",
                                                          "spotex_rust_vs_orderbook_rs")
                             if w in check]
                    for hint in hints:
                        print(f"    {hint}")
                    failures.append("; ".join([f"{name}: the report hashes differ between Rust "
                                               f"and Python", *hints]))
            sys.stdout.flush()

            medians[name] = {eng: r.median for eng, r in results.items()}
            medians[name]["reference_model"] = rr.median
            ratios = {f"{a}_over_{b}": results[a].median / results[b].median
                      for a in ("spotex_batch", "spotex_per_call")
                      for b in ("liquibook", "lightmatchingengine")}
            ratios["spotex_per_call_over_reference_model"] = rs.median / rr.median
            ratios["spotex_batch_over_reference_model"] = rb.median / rr.median
            ratios["spotex_batch_over_spotex_per_call"] = bm / cm
            scenarios[name] = {
                "flow": m, "messages": n,
                "engines": engines,
                "report_hashes_agree": agree, "differences": diffs,
                "reference_check": {"new_orders": args.reference_orders,
                                    "flow": mix(small), "messages": small.messages,
                                    "engines": {eng: r.as_json() for eng, r in ref.items()},
                                    "report_hashes_agree": ref_agree},
                "ratios": ratios,
            }

    worst: dict[str, Any] = {}
    for eng in medians[names[0]]:
        sc = min(names, key=lambda x: medians[x][eng])
        worst[eng] = {"scenario": sc, "msgs_per_sec_median": medians[sc][eng]}
    summary = summarize(engines_by_scenario)
    print_summary(summary, args.reference_orders)

    total = time.perf_counter() - started
    print(f"\n{'all report hashes agree' if not failures else 'DISAGREEMENTS:'}"
          f"{''.join(chr(10) + '  ' + f for f in failures)}")
    info["load_average_at_end"] = load_at_end = os.getloadavg()
    print(f"total {total:.0f}s; load average (1, 5, 15 min) at start {loads(load_at_start)}, "
          f"at end {loads(load_at_end)}")

    py: dict[str, Any] = {
        "machine": info,
        "args": {"orders": args.orders, "runs": args.runs, "peer_runs": peer_runs,
                 "reference_orders": args.reference_orders, "seed": args.seed,
                 "chunk": CHUNK},
        "method": "messages per second = records in the stream / seconds of the timed "
                  "section (the engine processing the pre-decoded stream and collecting its "
                  "trade/refusal outputs); report building and hashing after timing; fresh "
                  "engine per run; the median of the runs",
        "semantics": SEMANTICS,
        "scenarios": scenarios,
        "worst_scenario": worst,
        "all_agree": not failures, "failures": failures,
        "seconds_total": time.perf_counter() - py_started,
    }
    written: list[tuple[Path, dict[str, Any]]] = [(out, py)]
    if rust is not None:
        written.append((combined_out, {
            "benchmark": "peers",
            "machine": {k: v for k, v in info.items() if not k.startswith("load_average")}
            | {"rustc": rust["machine"]["rustc"]},
            "load_average": {"at_start": load_at_start,
                             "python_part_start": info["load_average_at_start"],
                             "at_end": load_at_end},
            "args": {**py["args"], "rust_runs": args.rust_runs, "scenarios": names},
            "files": {"rust": str(rust_out), "python": str(out)},
            "rust": rust,
            "python": py,
            "cross_language_check": checks,
            "summary": summary,
            "all_agree": not failures, "failures": failures,
            "seconds_total": total,
        }))
    else:
        print(f"(no Rust part: {combined_out} left as it was)")
    for path, doc in written:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(doc, indent=2) + "\n")
        print(f"wrote {path}")
    if failures:
        sys.exit(1)


if __name__ == "__main__":
    main()
