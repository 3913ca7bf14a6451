"""The block auction's optimiser: one call auction over a delivery window, solved as a
mixed-integer program by HiGHS (``highspy``), with the rules of docs/trading.md ("Block
auctions"):

1. maximise welfare: the limits of the filled bids minus the prices of the asks used;
2. every block whole or not at all, on the same GPUs (node and indices) in every hour
   of it, its gangs on one node each, all of it in one cluster; at most one
   alternative of a one-of group; no GPU-hour sold twice;
3. one clearing price per product (family x hour), on the tick, for every trade in it;
4. no paradoxically accepted order: every filled bid's limit covers its cost at the
   clearing prices (a block: summed over its hours), every filled ask's price is at or
   below the clearing price. Blocks in the money at those prices but left out
   (paradoxically rejected) are allowed, counted and reported with the welfare they
   would have added;
5. ties go to the earlier order (a preference far below a micro-dollar per GPU-hour).

The model sees what the exchange gives it (``View``): asks (resting and auction ones,
each of one cluster and hour), bids (one-hour bids may fill in part and across
clusters; blocks and windows whole, in one cluster), and each cluster's nodes with the
GPUs free in every hour. Money is integer micro-dollars in and out; HiGHS works in
dollars. Nodes are never variables: a block is placed on a cluster, and the GPUs are
chosen after the solve (best fit, the same GPUs in every hour); a block the cluster
cannot hold that way is cut from that cluster and the model solved again.

Prices: the lowest price per product that every filled ask accepts (the dearest filled
ask's). When a filled bid cannot pay them, it is cut and the model solved again
(EUPHEMIA's way with paradoxically accepted blocks), until none is left.
"""

from __future__ import annotations

import bisect
import itertools
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from spotex.extras import require

MICROS = 1_000_000
# the first-come preference: a dollar-millionth of a micro-dollar per GPU-hour and place
_TIE = 1e-12


@dataclass(frozen=True)
class Cluster:
    name: str
    family: str  # SKU/region: the products it sells
    # (node id, GPUs, the bit mask of its GPUs free in each hour of the window)
    nodes: tuple[tuple[str, int, tuple[int, ...]], ...]


@dataclass(frozen=True)
class Ask:
    order_id: int
    cluster: int  # index into View.clusters
    hour: int  # index into the window
    quantity: int
    price: int  # micro-dollars per GPU-hour


@dataclass(frozen=True)
class Bid:
    order_id: int
    family: str
    hours: int  # 1: a one-hour bid (fills in part); more: a block, whole or nothing
    starts: tuple[int, ...]  # the first hours it may take (a window: several)
    quantity: int  # GPUs
    price: int  # limit, micro-dollars per GPU-hour (a block: over its hours)
    gang: int = 1
    group: int = 0  # a one-of group (0: none): at most one of its bids fills
    whole: bool = False  # a one-hour bid that fills completely or not at all

    @property
    def block(self) -> bool:
        return self.hours > 1 or self.whole or len(self.starts) > 1


@dataclass(frozen=True)
class View:
    """What the auction decides: a window of ``hours`` delivery hours."""
    hours: int
    clusters: tuple[Cluster, ...]
    asks: tuple[Ask, ...]
    bids: tuple[Bid, ...]  # in arrival order: earlier ones win ties
    tick: int = 10_000


@dataclass(frozen=True)
class Fill:
    """A bid's part of the clearing: ``gpus`` per node, the same in each of its hours."""
    order_id: int
    cluster: int
    start: int
    hours: int
    gpus: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def quantity(self) -> int:
        return sum(len(g) for _, g in self.gpus)


@dataclass
class Clearing:
    fills: list[Fill]
    asks: dict[int, tuple[int, int]]  # ask id -> (hour, GPUs sold)
    prices: dict[tuple[str, int], int]  # (family, hour) -> micro-dollars per GPU-hour
    welfare: int  # micro-dollars: filled bids' limits minus the asks' prices
    gap: float  # the solver's relative gap on the last solve
    seconds: float
    cut: list[int] = field(default_factory=list)  # bids cut as paradoxically accepted
    rejected_in_money: list[int] = field(default_factory=list)  # paradoxically rejected
    rejected_welfare: int = 0  # what those would have added at the clearing prices
    solves: int = 0


def _dollars(micros: int) -> float:
    return micros / MICROS


class _Model:
    """The columns and rows of one solve, built in bulk."""

    def __init__(self) -> None:
        self.cost: list[float] = []
        self.lower: list[float] = []
        self.upper: list[float] = []
        self.integer: list[int] = []
        self.rows: list[tuple[float, float, dict[int, float]]] = []

    def column(self, cost: float, upper: float, integer: bool = True) -> int:
        self.cost.append(cost)
        self.lower.append(0.0)
        self.upper.append(upper)
        self.integer.append(1 if integer else 0)
        return len(self.cost) - 1

    def row(self, lower: float, upper: float, terms: dict[int, float]) -> None:
        if terms:
            self.rows.append((lower, upper, terms))

    def solve(self, time_limit: float, start: dict[int, float] | None = None
              ) -> tuple[list[float], float]:
        """The best solution within ``time_limit`` (at most 0.5% from the bound), from
        ``start`` (a feasible solution by column) when given, and its gap."""
        highspy = require("highspy", "auction", "the block auction")
        import numpy as np

        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("time_limit", max(0.1, time_limit))
        h.setOptionValue("threads", 1)
        h.setOptionValue("random_seed", 0)
        n = len(self.cost)
        h.addCols(n, np.array(self.cost), np.array(self.lower), np.array(self.upper), 0,
                  np.array([], dtype=np.int32), np.array([], dtype=np.int32),
                  np.array([], dtype=np.float64))
        if self.rows:
            starts: list[int] = []
            index: list[int] = []
            value: list[float] = []
            for _, _, terms in self.rows:
                starts.append(len(index))
                for col, v in sorted(terms.items()):
                    index.append(col)
                    value.append(v)
            h.addRows(len(self.rows), np.array([r[0] for r in self.rows]),
                      np.array([r[1] for r in self.rows]), len(index),
                      np.array(starts, dtype=np.int32), np.array(index, dtype=np.int32),
                      np.array(value, dtype=np.float64))
        h.changeColsIntegrality(n, np.arange(n, dtype=np.int32),
                                np.array([highspy.HighsVarType.kInteger if i else
                                          highspy.HighsVarType.kContinuous
                                          for i in self.integer]))
        h.changeObjectiveSense(highspy.ObjSense.kMaximize)
        h.setOptionValue("mip_rel_gap", 0.005)
        if start:
            cols = sorted(start)
            h.setSolution(len(cols), np.array(cols, dtype=np.int32),
                          np.array([start[c] for c in cols], dtype=np.float64))
        h.run()
        info = h.getInfo()
        values = list(h.getSolution().col_value)
        if info.primal_solution_status != 2 or len(values) != n:
            # no solution of its own within the limit: the start, else nothing trades
            values = [0.0] * n
            for col, v in (start or {}).items():
                values[col] = v
            return values, 1.0
        gap = info.mip_gap
        return values, float(gap) if gap == gap and gap < 1e30 else 0.0


class _Nodes:
    """One cluster's GPUs still free per node and hour, for placement. Nodes in the same
    state (as many GPUs, the same free masks in every hour) are interchangeable: they
    form one class, looked at once however many nodes it holds (at venue scale most of
    a cluster's nodes are untouched and one class)."""

    def __init__(self, cluster: Cluster) -> None:
        self.cluster = cluster
        self.free = [[m & ((1 << g) - 1) for m in masks] for _, g, masks in cluster.nodes]
        # (GPUs, free masks by hour) -> the nodes in that state, in index order
        self.classes: dict[tuple[int, tuple[int, ...]], list[int]] = {}
        for n, (_, g, _) in enumerate(cluster.nodes):
            self.classes.setdefault((g, tuple(self.free[n])), []).append(n)

    def place(self, start: int, hours: int, quantity: int, gang: int
              ) -> tuple[tuple[str, tuple[int, ...]], ...] | None:
        """Best fit: each gang on the node with the fewest GPUs free through ``hours``
        from ``start`` that still holds it (ties: the first node), on the lowest GPU
        indices free in every one of those hours. None, and nothing taken, when not
        every gang fits."""
        span = range(start, start + hours)
        # per class: [GPUs free through the span, its nodes, how many of them this
        # block has touched (always its first ones: ties go to the first node)]
        classes: list[tuple[int, int, list[int], list[int]]] = []
        for (gpus, masks), members in self.classes.items():
            mask = (1 << gpus) - 1
            for h in span:
                mask &= masks[h]
            if mask.bit_count() >= gang:
                classes.append((mask.bit_count(), mask, members, [0]))
        touched: dict[int, int] = {}  # node -> GPUs free through the span now
        chosen: dict[int, list[int]] = {}
        for _ in range(quantity // gang):
            best: tuple[int, int] | None = None
            for room, _, members, used in classes:
                if used[0] < len(members) and room >= gang and (
                        best is None or (room, members[used[0]]) < best):
                    best = (room, members[used[0]])
            for n, mask in touched.items():
                room = mask.bit_count()
                if room >= gang and (best is None or (room, n) < best):
                    best = (room, n)
            if best is None:
                return None
            n = best[1]
            if n not in touched:
                cls = next(c for c in classes if c[3][0] < len(c[2]) and c[2][c[3][0]] == n)
                cls[3][0] += 1
                touched[n] = cls[1]
            mask = touched[n]
            picked = [i for i in range(self.cluster.nodes[n][1]) if mask >> i & 1][:gang]
            touched[n] = mask & ~sum(1 << i for i in picked)
            chosen.setdefault(n, []).extend(picked)
        for n, picks in chosen.items():
            node = self.cluster.nodes[n]
            key = (node[1], tuple(self.free[n]))
            self.classes[key].remove(n)
            if not self.classes[key]:
                del self.classes[key]
            bits = sum(1 << i for i in picks)
            for h in span:
                self.free[n][h] &= ~bits
            members = self.classes.setdefault((node[1], tuple(self.free[n])), [])
            bisect.insort(members, n)
        return tuple((self.cluster.nodes[n][0], tuple(sorted(g)))
                     for n, g in sorted(chosen.items()))


def optimise(view: View, *, time_limit: float = 10.0, priced: bool = True) -> Clearing:
    """The auction's clearing of ``view``; with ``priced=False`` the offline optimum
    (welfare only, no clearing prices imposed: the benchmark's yardstick)."""
    began = time.monotonic()
    banned: set[tuple[int, int]] = set()  # (bid, cluster) a block cannot be placed on
    cut: set[int] = set()  # bids cut as paradoxically accepted
    solves = 0
    while True:
        solves += 1
        left = time_limit - (time.monotonic() - began)
        result = _solve_once(view, banned, cut, left)
        fills, unplaced = _place_all(view, result)
        if unplaced:
            banned |= unplaced
            continue
        clearing = _price(view, result, fills)
        clearing.gap, clearing.solves = result["gap"], solves
        if not priced:
            clearing.seconds = time.monotonic() - began
            return clearing
        paradox = _paradoxically_accepted(view, clearing, fills)
        if not paradox:
            clearing.cut = sorted(cut)
            _report_rejected(view, clearing, fills)
            clearing.seconds = time.monotonic() - began
            return clearing
        # one at a time, the one furthest short first; past the time limit, all at once
        cut |= set(paradox if time.monotonic() - began > time_limit else paradox[:1])


def _families(view: View) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, c in enumerate(view.clusters):
        out.setdefault(c.family, []).append(i)
    return out


def _solve_once(view: View, banned: set[tuple[int, int]], cut: set[int],
                time_limit: float) -> dict[str, Any]:
    m = _Model()
    families = _families(view)
    n_bids = max(1, len(view.bids))
    use: dict[tuple[int, int], dict[int, float]] = {}  # (cluster, hour) -> GPU use terms
    offered: dict[tuple[int, int], int] = {}
    ask_col: dict[int, int] = {}
    for a in view.asks:
        col = m.column(-_dollars(a.price), a.quantity, integer=False)
        ask_col[a.order_id] = col
        use.setdefault((a.cluster, a.hour), {})[col] = -1.0
        offered[a.cluster, a.hour] = offered.get((a.cluster, a.hour), 0) + a.quantity
    cheapest: dict[tuple[int, int], int] = {}
    for a in view.asks:
        key = (a.cluster, a.hour)
        cheapest[key] = min(cheapest.get(key, a.price), a.price)
    bid_cols: dict[int, list[tuple[int, int, int]]] = {}  # bid -> [(col, cluster, start)]
    groups: dict[int, dict[int, float]] = {}
    for rank, b in enumerate(view.bids):
        if b.order_id in cut or b.quantity % b.gang:
            continue
        tie = _TIE * (n_bids - rank)
        cols: list[tuple[int, int, int]] = []
        for c, s in _candidates(view, b, families.get(b.family, []), cheapest, banned):
            span = range(s, s + b.hours)
            if b.block and any(offered.get((c, h), 0) < b.quantity for h in span):
                continue  # the cluster offers too few GPUs in some hour
            if b.block:
                value = _dollars(b.price) * b.quantity * b.hours + tie
                col = m.column(value, 1)
                per = float(b.quantity)
            else:
                room = offered.get((c, s), 0) // b.gang
                if room <= 0:
                    continue
                value = _dollars(b.price) * b.gang + tie
                col = m.column(value, min(room, b.quantity // b.gang))
                per = float(b.gang)
            for h in span:
                use.setdefault((c, h), {})[col] = per
            cols.append((col, c, s))
        if not cols:
            continue
        bid_cols[b.order_id] = cols
        if b.block:
            m.row(0, 1, {col: 1.0 for col, _, _ in cols})
        else:
            m.row(0, b.quantity // b.gang, {col: 1.0 for col, _, _ in cols})
        if b.group:
            g = groups.setdefault(b.group, {})
            for col, _, _ in cols:
                g[col] = 1.0
    for terms in use.values():
        m.row(-1e30, 0, terms)  # GPUs used in a cluster's hour <= GPUs sold by its asks
    for terms in groups.values():
        m.row(0, 1, terms)
    start = _first_come(view, bid_cols, m.upper, ask_col, cheapest)
    values, gap = m.solve(time_limit, start)
    return {"values": values, "ask_col": ask_col, "bid_cols": bid_cols, "gap": gap}


def _first_come(view: View, bid_cols: dict[int, list[tuple[int, int, int]]],
                upper: list[float], ask_col: dict[int, int],
                cheapest: dict[tuple[int, int], int]) -> dict[int, float]:
    """A feasible start for the solver, and the floor it can only improve on: the bids
    in arrival order, each on the cheapest of its clusters and starts that still has the
    GPUs (a one-hour bid: as many gangs as fit), the asks used cheapest first."""
    room: dict[tuple[int, int], int] = {}
    for a in view.asks:
        room[a.cluster, a.hour] = room.get((a.cluster, a.hour), 0) + a.quantity
    start: dict[int, float] = {}
    groups: set[int] = set()
    for b in view.bids:
        cols = bid_cols.get(b.order_id)
        if not cols or (b.group and b.group in groups):
            continue
        ranked = sorted(cols, key=lambda x: (sum(cheapest.get((x[1], h), 0)
                                                 for h in range(x[2], x[2] + b.hours)), x[0]))
        for col, c, s in ranked:
            hours = range(s, s + b.hours)
            if b.block:
                if all(room.get((c, h), 0) >= b.quantity for h in hours):
                    for h in hours:
                        room[c, h] -= b.quantity
                    start[col] = 1.0
                    groups.add(b.group)
                    break
            else:
                n = min(int(upper[col]), room.get((c, s), 0) // b.gang,
                        b.quantity // b.gang - int(sum(start.get(x[0], 0) for x in cols)))
                if n > 0:
                    room[c, s] -= n * b.gang
                    start[col] = float(n)
    # the asks that cover what the start uses, cheapest first
    need: dict[tuple[int, int], int] = {}
    for a in view.asks:
        need[a.cluster, a.hour] = need.get((a.cluster, a.hour), 0) + a.quantity
    for key in need:
        need[key] -= room.get(key, 0)
    for a in sorted(view.asks, key=lambda a: (a.price, a.order_id)):
        take = min(a.quantity, need.get((a.cluster, a.hour), 0))
        if take > 0:
            start[ask_col[a.order_id]] = float(take)
            need[a.cluster, a.hour] -= take
    return start


# the clusters and starts a block is offered to the solver at: the cheapest few by the
# sum of their cheapest asks over its hours (a block on a dearer one gives less welfare
# for the same GPUs; the choice among the cheapest is the solver's)
CANDIDATES = 12


def _candidates(view: View, b: Bid, clusters: list[int], cheapest: dict[tuple[int, int], int],
                banned: set[tuple[int, int]]) -> list[tuple[int, int]]:
    options = [(c, s) for c in clusters if (b.order_id, c) not in banned
               for s in b.starts if 0 <= s and s + b.hours <= view.hours]
    if not b.block:
        return options
    priced = []
    for c, s in options:
        hours = range(s, s + b.hours)
        if all((c, h) in cheapest for h in hours):
            cost = sum(cheapest[c, h] for h in hours)
            if cost <= b.price * b.hours:  # its cheapest asks alone it can pay
                priced.append((cost, c, s))
    priced.sort()
    return [(c, s) for _, c, s in priced[:CANDIDATES]]


def _place_all(view: View, result: dict[str, Any]
               ) -> tuple[list[Fill], set[tuple[int, int]]]:
    """Concrete GPUs for every filled bid, by start hour; the (bid, cluster) pairs a
    block could not be placed on."""
    values = result["values"]
    nodes = [_Nodes(c) for c in view.clusters]
    chosen: list[tuple[Bid, int, int, int]] = []  # (bid, cluster, start, gangs or 1)
    rank = {b.order_id: i for i, b in enumerate(view.bids)}
    by_id = {b.order_id: b for b in view.bids}
    for bid_id, cols in result["bid_cols"].items():
        for col, c, s in cols:
            n = round(values[col])
            if n > 0:
                chosen.append((by_id[bid_id], c, s, n))
    # in start order, as interval colouring goes: then whole-node gangs always fit when
    # every hour has the GPUs (longer, larger, earlier first among equal starts)
    chosen.sort(key=lambda x: (x[2], -x[0].hours, -x[0].quantity, rank[x[0].order_id]))
    fills: list[Fill] = []
    unplaced: set[tuple[int, int]] = set()
    for b, c, s, n in chosen:
        quantity = b.quantity if b.block else n * b.gang
        gpus = nodes[c].place(s, b.hours, quantity, b.gang)
        if gpus is None:
            if b.block:
                unplaced.add((b.order_id, c))
            continue
        fills.append(Fill(b.order_id, c, s, b.hours, gpus))
    return fills, unplaced


def _price(view: View, result: dict[str, Any], fills: list[Fill]) -> Clearing:
    """The asks each cluster's hour needs (cheapest first) and the products' prices."""
    need: dict[tuple[int, int], int] = {}
    for f in fills:
        for h in range(f.start, f.start + f.hours):
            need[f.cluster, h] = need.get((f.cluster, h), 0) + f.quantity
    sold: dict[int, tuple[int, int]] = {}
    prices: dict[tuple[str, int], int] = {}
    cost = 0
    asks = sorted(view.asks, key=lambda a: (a.price, a.order_id))
    for a in asks:
        want = need.get((a.cluster, a.hour), 0)
        if want <= 0:
            continue
        q = min(want, a.quantity)
        need[a.cluster, a.hour] = want - q
        sold[a.order_id] = (a.hour, q)
        cost += q * a.price
        key = (view.clusters[a.cluster].family, a.hour)
        prices[key] = max(prices.get(key, 0), a.price)
    by_id = {b.order_id: b for b in view.bids}
    value = sum(by_id[f.order_id].price * f.quantity * f.hours for f in fills)
    return Clearing(fills, sold, prices, value - cost, 0.0, 0.0)


def _cost(view: View, clearing: Clearing, fill: Fill) -> int:
    family = view.clusters[fill.cluster].family
    return sum(clearing.prices.get((family, h), 0)
               for h in range(fill.start, fill.start + fill.hours))


def _paradoxically_accepted(view: View, clearing: Clearing, fills: list[Fill]) -> list[int]:
    """The filled bids the clearing prices do not pay, the furthest short first (ties:
    the later order first)."""
    by_id = {b.order_id: b for b in view.bids}
    rank = {b.order_id: i for i, b in enumerate(view.bids)}
    short: dict[int, int] = {}
    for f in fills:
        b = by_id[f.order_id]
        gap = _cost(view, clearing, f) - b.price * f.hours
        if gap > 0:
            short[b.order_id] = max(short.get(b.order_id, 0), gap)
    return sorted(short, key=lambda i: (-short[i], -rank[i]))


def _report_rejected(view: View, clearing: Clearing, fills: list[Fill]) -> None:
    """Blocks left out that the clearing prices would have paid: paradoxically
    rejected, counted with the welfare each would have added (its limit minus the
    prices, over its GPU-hours; the cheapest start of a window)."""
    filled = {f.order_id for f in fills}
    groups_filled = {b.group for b in view.bids if b.group and b.order_id in filled}
    families = _families(view)
    for b in view.bids:
        if not b.block or b.order_id in filled or (b.group and b.group in groups_filled):
            continue
        if not families.get(b.family):
            continue
        costs = [sum(clearing.prices.get((b.family, h), 0) for h in range(s, s + b.hours))
                 for s in b.starts if 0 <= s and s + b.hours <= view.hours
                 and all((b.family, h) in clearing.prices for h in range(s, s + b.hours))]
        if costs and min(costs) < b.price * b.hours:
            clearing.rejected_in_money.append(b.order_id)
            clearing.rejected_welfare += (b.price * b.hours - min(costs)) * b.quantity


def brute_force(view: View) -> int:
    """The offline optimum's welfare by trying every choice (tiny markets only): each
    block on each cluster and start or out; each one-hour bid's gangs in each cluster."""
    families = _families(view)
    options: list[list[tuple[tuple[int, int, int], ...]]] = []
    for b in view.bids:
        mine = families.get(b.family, [])
        opts: list[tuple[tuple[int, int, int], ...]] = [()]
        if b.block:
            opts += [((c, s, b.quantity),) for c in mine for s in b.starts
                     if 0 <= s and s + b.hours <= view.hours]
        elif 0 <= b.starts[0] < view.hours:
            for gangs in itertools.product(range(b.quantity // b.gang + 1), repeat=len(mine)):
                if 0 < sum(gangs) <= b.quantity // b.gang:
                    opts.append(tuple((c, b.starts[0], k * b.gang)
                                      for c, k in zip(mine, gangs, strict=True) if k))
        options.append(opts)
    best = 0
    for choice in itertools.product(*options):
        picked = [(b, part) for b, parts in zip(view.bids, choice, strict=True)
                  for part in parts]
        groups = {b.group for b, parts in zip(view.bids, choice, strict=True)
                  if parts and b.group}
        if len(groups) < len([1 for b, parts in zip(view.bids, choice, strict=True)
                              if parts and b.group]):
            continue  # two alternatives of one group
        welfare = _feasible_welfare(view, picked)
        if welfare is not None:
            best = max(best, welfare)
    return best


def _feasible_welfare(view: View, picked: Sequence[tuple[Bid, tuple[int, int, int]]]
                      ) -> int | None:
    nodes = [_Nodes(c) for c in view.clusters]
    need: dict[tuple[int, int], int] = {}
    value = 0
    order = sorted(picked, key=lambda x: (x[1][1], -x[0].hours, -x[1][2]))
    for b, (c, s, q) in order:
        if nodes[c].place(s, b.hours, q, b.gang) is None:
            return None
        for h in range(s, s + b.hours):
            need[c, h] = need.get((c, h), 0) + q
        value += b.price * q * b.hours
    for (c, h), q in need.items():
        for a in sorted((a for a in view.asks if a.cluster == c and a.hour == h),
                        key=lambda a: a.price):
            take = min(q, a.quantity)
            value -= take * a.price
            q -= take
        if q > 0:
            return None
    return value


def uses(view: View, fills: Iterable[Fill]) -> dict[tuple[int, str, int], int]:
    """GPU masks in use per (cluster, node, hour), for checks: a GPU twice raises."""
    out: dict[tuple[int, str, int], int] = {}
    for f in fills:
        for node, gpus in f.gpus:
            mask = sum(1 << i for i in gpus)
            for h in range(f.start, f.start + f.hours):
                key = (f.cluster, node, h)
                if out.get(key, 0) & mask:
                    raise AssertionError(f"GPU sold twice: {key}")
                out[key] = out.get(key, 0) | mask
    return out
