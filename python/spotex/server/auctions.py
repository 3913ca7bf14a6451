"""Block auctions at the venue: one auction run from start to clear on an engine host.

1. ``AuctionStart`` on the writer (journaled): the auction's id; its orders are frozen.
2. The exchange's view of it (its bids, every ask of the hours they span, each node's
   free GPUs), read on the writer right after, so it is the state the start fixed.
3. The optimiser (``spotex.server.auction``) in a worker process of its own (``python -m
   spotex.server.auctions``, the problem in on stdin, the decision out on stdout), within
   the time limit: the writer and the event loop go on serving continuous trading
   meanwhile, and nothing of the server's process (its threads, its ``__main__``) is
   copied or run again.
4. ``AuctionClear`` on the writer (journaled), carrying the result: the exchange checks
   each fill against the state at that moment and applies it, or drops it whole.

A restart between 1 and 4 leaves the auction open in the journal; the server abandons it
when it starts (an empty ``AuctionClear``), so every order it froze is live again.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import importlib.util
import logging
import os
import pickle
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex.server import auction
from spotex.server.host import EngineHost, HostError

if TYPE_CHECKING:
    from spotex._core import _AuctionView

log = logging.getLogger("spotex.server.auctions")

# the optimiser's time limit unless the venue or the request sets one
DEFAULT_TIME_LIMIT = 10.0
DAY = 24


@dataclass(frozen=True)
class AuctionSettings:
    """The venue's auctions: a daily ``schedule`` ("HH:MM", UTC: at that time every day,
    one auction over the hours of the next UTC day; empty: none), the optimiser's
    ``time_limit`` in seconds, and whether hours listed are ``hold``-ed for their
    auction (no continuous bid until it clears them)."""
    schedule: str = ""
    time_limit: float = DEFAULT_TIME_LIMIT
    hold: bool = False


def next_gate(schedule: str, now: dt.datetime) -> tuple[dt.datetime, int]:
    """The next time ``schedule`` ("HH:MM" UTC) comes after ``now``, and the first hour
    (hours since the epoch) of the UTC day after that: the auction's window starts
    there."""
    hh, mm = (int(x) for x in schedule.split(":"))
    gate = now.astimezone(dt.UTC).replace(hour=hh, minute=mm, second=0, microsecond=0)
    if gate <= now:
        gate += dt.timedelta(days=1)
    day = gate.replace(hour=0, minute=0) + dt.timedelta(days=1)
    return gate, int(day.timestamp()) // 3600


def now() -> dt.datetime:
    """The time the gates are reckoned by (UTC)."""
    return dt.datetime.now(dt.UTC)


async def daily(schedule: str, run: Callable[[int, int], Awaitable[Any]]) -> None:
    """At each gate of ``schedule`` ("HH:MM" UTC), for ever: ``run(first, first + 24)``
    over the hours of the next UTC day. A run that fails is logged, and the next day's
    runs. An engine's schedule runs its own auctions; a shard gateway's runs the venue's
    (every shard's under one id)."""
    while True:
        gate, first = next_gate(schedule, now())
        await asyncio.sleep(max(0.0, (gate - now()).total_seconds()))
        log.info("the auction gate at %s: clearing the hours from %s", gate, hour_id(first))
        try:
            await run(first, first + DAY)
        except Exception as err:  # noqa: BLE001 - the next gate tries again
            log.error("the scheduled auction at %s did not run: %s", gate, err)


def hour_id(hour: int) -> str:
    return dt.datetime.fromtimestamp(hour * 3600, dt.UTC).strftime("%Y-%m-%dT%H")


@dataclass(frozen=True)
class Problem:
    """An exchange view as the optimiser's ``View``, and the way back to the exchange's
    names: per optimiser bid, its (order id, alternative); per cluster, (seller, id)."""
    view: auction.View
    first_hour: int
    bids: tuple[tuple[int, int], ...]
    clusters: tuple[tuple[int, str], ...]


def problem(v: _AuctionView, tick: int = 10_000) -> Problem:
    first_hour, hours, bids, asks, clusters = v
    index = {c[0]: k for k, c in enumerate(clusters)}

    def near(at: tuple[int, int] | None) -> tuple[int, int] | None:
        # the allocation's cluster has no asks here: nowhere it could fill (-1)
        return None if at is None else (index.get(at[0], -1), at[1])
    view = auction.View(
        hours=hours,
        clusters=tuple(auction.Cluster(name=f"{seller}:{cid}", family=family,
                                       nodes=tuple((n, g, tuple(m)) for n, g, m in nodes),
                                       places=tuple(places))
                       for _, seller, cid, family, nodes, places in clusters),
        asks=tuple(auction.Ask(order_id=oid, cluster=index[c], hour=h - first_hour,
                               quantity=q, price=px, hours=n, whole=whole)
                   for oid, _, c, h, q, px, n, whole in asks),
        bids=tuple(auction.Bid(order_id=k + 1, family=family, hours=n,
                               starts=tuple(range(start - first_hour,
                                                  start - first_hour + span - n + 1)),
                               quantity=q, price=px, gang=gang,
                               group=oid if group else 0, whole=whole, level=level,
                               near=near(at))
                   for k, (oid, _, group, _, family, start, span, n, q, px, gang,
                           (whole, level, at)) in enumerate(bids)),
        tick=tick)
    return Problem(view, first_hour, tuple((b[0], b[1]) for b in bids),
                   tuple((c[1], c[2]) for c in clusters))


Fills = list[tuple[int, int, int, str, str, int, list[tuple[str, list[int]]]]]


# the fills, the prices, the report (AuctionResult bytes), the seller blocks sold
Decision = tuple[Fills, list[tuple[str, int]], bytes, list[int]]


def decide(p: Problem, time_limit: float) -> Decision:
    """The optimiser on ``p``: the fills and prices in the exchange's names, and the
    report (an ``AuctionResult`` with what the solver said). Runs in a worker process."""
    began = time.monotonic()
    if p.view.bids:
        c = auction.optimise(p.view, time_limit=time_limit)
    else:
        c = auction.Clearing([], {}, {}, 0, 0.0, 0.0)
    fills: Fills = []
    for f in c.fills:
        order_id, alternative = p.bids[f.order_id - 1]
        seller, cluster_id = p.clusters[f.cluster]
        family = p.view.clusters[f.cluster].family
        start = f"{family}/{hour_id(p.first_hour + f.start)}"
        fills.append((order_id, alternative, seller, cluster_id, start, f.quantity,
                      [(node, list(gpus)) for node, gpus in f.gpus]))
    prices = sorted((f"{family}/{hour_id(p.first_hour + h)}", px)
                    for (family, h), px in c.prices.items())
    rejected = sorted({p.bids[k - 1][0] for k in c.rejected_in_money})
    volume: dict[str, int] = {}
    for f in c.fills:
        family = p.view.clusters[f.cluster].family
        for h in range(f.start, f.start + f.hours):
            pid = f"{family}/{hour_id(p.first_hour + h)}"
            volume[pid] = volume.get(pid, 0) + f.quantity
    report = pb.AuctionResult(
        welfare_micros=c.welfare, gap=c.gap,
        solve_micros=int((time.monotonic() - began) * 1_000_000), bids=len(p.view.bids),
        paradoxically_rejected=rejected, rejected_welfare_micros=c.rejected_welfare,
        prices=[pb.AuctionPrice(product_id=pid, price_micros=px, quantity=volume.get(pid, 0))
                for pid, px in prices])
    return fills, prices, report.SerializeToString(), sorted(c.sold_blocks)




async def decide_in_worker(v: _AuctionView, time_limit: float) -> Decision:
    """``decide`` on the exchange's view ``v`` in a worker process (the view turned into
    the optimiser's problem there too: nothing of it on the server's event loop); it is
    killed when it overruns its time limit well past what the optimiser's own allows."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "spotex.server.auctions", stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await asyncio.wait_for(
            proc.communicate(pickle.dumps((v, time_limit))), timeout=3 * time_limit + 30)
    except BaseException:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        raise
    if proc.returncode != 0:
        tail = err.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
        raise RuntimeError(f"the optimiser's worker exited {proc.returncode}: {tail[0]}")
    decision: Decision = pickle.loads(out)
    return decision


# an indicative result is solved at most this often per window (seconds)
INDICATIVE_EVERY = 60.0
# and within at most this time limit
INDICATIVE_LIMIT = 5.0


@dataclass(frozen=True)
class Indicative:
    """What an auction would clear now: the public part, and per account its orders."""
    public: Any  # IndicativeAuction without your_orders
    mine: dict[int, list[tuple[int, int]]]  # account -> [(order id, GPUs it would get)]
    at: float  # time.monotonic() when solved


class AuctionRunner:
    """Runs a server's auctions, one at a time, each solved in a worker process."""

    def __init__(self, host: EngineHost, settings: AuctionSettings | None = None) -> None:
        self.host = host
        self.settings = settings or AuctionSettings()
        self.time_limit = self.settings.time_limit
        self._lock = asyncio.Lock()
        self._indicative: dict[tuple[int, int], Indicative] = {}
        self._solving = asyncio.Lock()

    @staticmethod
    def check_optimiser() -> None:
        """HostError AUCTION_UNAVAILABLE when the optimiser (HiGHS) is not installed: an
        auction is refused before it starts, rather than cleared with nothing."""
        if importlib.util.find_spec("highspy") is None:
            raise HostError("AUCTION_UNAVAILABLE", "block auctions need the optimiser, "
                            "which this server lacks: pip install 'spotex[auction]'")

    async def indicative(self, from_hour: int, to_hour: int, account: int) -> Any:
        """``IndicativeAuction``: what an auction over the window would clear now, with
        ``account``'s own orders; solved at most every ``INDICATIVE_EVERY`` seconds per
        window (the last answer serves until then), nothing committed."""
        if self._lock.locked():
            raise HostError("AUCTION_IN_PROGRESS", "an auction is being cleared; its "
                            "result will be there shortly (GetAuctionResult)")
        self.check_optimiser()
        key = (from_hour, to_hour)
        async with self._solving:
            got = self._indicative.get(key)
            if got is None or time.monotonic() - got.at >= INDICATIVE_EVERY:
                got = await self._solve_indicative(from_hour, to_hour)
                self._indicative = {k: v for k, v in self._indicative.items()
                                    if time.monotonic() - v.at < INDICATIVE_EVERY}
                self._indicative[key] = got
        out = pb.IndicativeAuction()
        out.CopyFrom(got.public)
        out.your_orders.extend(pb.IndicativeOrder(order_id=o, quantity=q)
                               for o, q in got.mine.get(account, []))
        return out

    async def _solve_indicative(self, from_hour: int, to_hour: int) -> Indicative:
        host = self.host
        v = await host.submit_async(lambda: host.ex.auction_view_of(from_hour, to_hour))
        fills, _, report, _ = await decide_in_worker(
            v, min(self.time_limit, INDICATIVE_LIMIT))
        r = pb.AuctionResult.FromString(report)
        got: dict[int, int] = {}
        for order_id, *_, quantity, _gpus in fills:
            got[order_id] = got.get(order_id, 0) + quantity
        mine: dict[int, list[tuple[int, int]]] = {}
        seen: set[int] = set()
        for order_id, _, _, account, *_ in v[2]:
            if order_id not in seen:  # a group's alternatives: one order
                seen.add(order_id)
                mine.setdefault(account, []).append((order_id, got.get(order_id, 0)))
        public = pb.IndicativeAuction(
            from_hour=from_hour, to_hour=to_hour,
            computed_at_micros=int(time.time() * 1_000_000), prices=r.prices,
            welfare_micros=r.welfare_micros, gap=r.gap, bids=r.bids)
        return Indicative(public, mine, time.monotonic())

    async def on_schedule(self) -> None:
        """Runs the venue's daily auction at its gate, for ever (a task the server
        cancels when it stops)."""
        await daily(self.settings.schedule, self.run)

    def close(self) -> None:
        """Nothing outlives a run (its worker ends with it)."""

    async def abandon_open(self) -> Any:
        """An auction a restart left open: cleared with nothing, its orders live again."""
        host = self.host

        def go() -> bytes | None:
            open_ = host.ex.open_auction()
            if open_ is None:
                return None
            return host.run(lambda ts: host.ex.clear_auction(
                ts, open_[0], [], [], pb.AuctionResult().SerializeToString(), True, []))
        out = await host.submit_async(go)
        if out is None:
            return None
        result = pb.AuctionResult.FromString(out)
        log.warning("auction %d was left open by a restart: abandoned, its orders are "
                    "live again", result.auction_id)
        return result

    async def run(self, from_hour: int, to_hour: int, time_limit: float | None = None,
                  auction_id: int = 0) -> Any:
        """One auction over ``[from_hour, to_hour)``, start to clear, numbered
        ``auction_id`` (0: the engine's next). HostError or the exchange's refusal
        (AUCTION_IN_PROGRESS while another runs) when it cannot."""
        if self._lock.locked():
            raise HostError("AUCTION_IN_PROGRESS", "another auction is being cleared; "
                            "run this one once it has (GetAuctionResult)")
        self.check_optimiser()
        async with self._lock:
            host = self.host
            started = time.time()

            def start() -> tuple[int, _AuctionView | None]:
                started_id = host.run(lambda ts: host.ex.start_auction(
                    ts, from_hour, to_hour, auction_id))
                return started_id, host.ex.auction_view()
            started_id, v = await host.submit_async(start)
            assert v is not None
            limit = self.time_limit if time_limit is None else time_limit
            try:
                fills, prices, report, sold = await decide_in_worker(v, limit)
            except Exception as err:  # noqa: BLE001 - the auction must still clear
                log.error("auction %d: the optimiser failed (%s); cleared with nothing",
                          started_id, err)
                fills, prices, report, sold = [], [], pb.AuctionResult().SerializeToString(), []
            r = pb.AuctionResult.FromString(report)
            r.started_at_micros = int(started * 1_000_000)
            report = r.SerializeToString()
            out = await host.submit_async(lambda: host.run(lambda ts: host.ex.clear_auction(
                ts, started_id, fills, prices, report, False, sold)))
            result = pb.AuctionResult.FromString(out)
            log.info("auction %d cleared: %d filled, %d dropped, welfare $%.2f, gap %.4f, "
                     "%.2f s", result.auction_id, len(result.filled_orders),
                     len(result.dropped_orders), result.welfare_micros / 1e6, result.gap,
                     result.solve_micros / 1e6)
            return result


def result_json(r: Any) -> dict[str, Any]:
    """An AuctionResult for people and the web page: dollars as decimal strings."""
    def usd(m: int) -> str:
        return f"{m / 1_000_000:.6f}".rstrip("0").rstrip(".")
    return {
        "auction_id": r.auction_id, "from_hour": hour_id(r.from_hour),
        "to_hour": hour_id(r.to_hour), "state": r.state,
        "cleared_at_micros": r.cleared_at_micros,
        "prices": [{"product_id": p.product_id, "price": usd(p.price_micros),
                    "quantity": p.quantity} for p in r.prices],
        "welfare": usd(r.welfare_micros), "gap": r.gap,
        "solve_seconds": r.solve_micros / 1e6, "bids": r.bids,
        "filled_orders": list(r.filled_orders), "dropped_orders": list(r.dropped_orders),
        "paradoxically_rejected": list(r.paradoxically_rejected),
        "rejected_welfare": usd(r.rejected_welfare_micros),
    }


def _worker() -> None:
    """The worker: a pickled ``(view, time_limit)`` on stdin, the pickled decision on
    stdout (the server's own pickle, between its own processes)."""
    # background work: the order path (the server, its clients) goes first for the CPU.
    # SCHED_IDLE runs it only on a CPU nothing else wants (Linux); elsewhere the lowest
    # priority. On a machine with cores to spare it changes nothing.
    try:
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)
    v, limit = pickle.loads(sys.stdin.buffer.read())
    # the decision alone on stdout: what the solver prints goes to stderr
    result = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)
    decision = decide(problem(v), limit)
    result.write(pickle.dumps(decision))
    result.close()


if __name__ == "__main__":
    _worker()
