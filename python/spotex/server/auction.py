"""The block auction's optimiser: one call auction over a delivery window, solved as a
mixed-integer program with HiGHS (``highspy``), with the rules of docs/trading.md ("Block
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

Seller blocks: an ask ``whole`` (``hours`` consecutive hours from ``hour``, ``quantity``
GPUs in each) is sold whole or not at all: in every one of its hours all its GPUs are
used by the bids filled in that cluster's hour (one bid or several, splitting its GPUs
and hours). The GPUs used in a cluster's hour come from the seller blocks sold there
first, then from the ordinary asks cheapest first (price, then order id), as the engine
assigns them; a seller block's price counts in each of its hours' clearing price (rule
3), and welfare counts it over all its GPU-hours. In the program each is a binary
column: it adds its GPUs to its hours' capacity, costs its price less the cheapest
ordinary asks' it saves, and one more row per segment of it keeps the bids' GPUs there
at least the seller blocks'. The heuristics never sell one (they are feasible without);
the MIP does, and with seller blocks every cut solves afresh.

The model sees what the exchange gives it (``View``): asks (resting and auction ones,
each of one cluster and hour; seller blocks), bids (one-hour bids may fill in part and across
clusters; blocks and windows whole, in one cluster), and each cluster's nodes with the
GPUs free in every hour. Money is integer micro-dollars in and out; HiGHS works in
dollars. Nodes are never variables: a block is placed on a cluster, and the GPUs are
chosen after the solve (best fit, the same GPUs in every hour, nodes in the same state
looked at once as a class); a block the cluster cannot hold that way is cut from that
cluster at that start (a one-hour bid's gangs capped at what fits) and the model solved
again.

How it is solved (``_Program``): the program is built once per clearing. Its LP
relaxation is solved (interior point at scale) and rounded: the bids the LP fills most
first, each on its LP columns first, then blocks moved to better columns where the
GPUs are; first come (arrival order, cheapest cluster) is always a candidate, so the
result is never worse than it. Small programs then go to the MIP whole (to 0.5% of
its bound); large ones only where the LP and the rounding disagree, and only when
rounding is more than 0.5% from the LP bound. The gap reported is against the best
bound known.

Prices: the lowest price per product that every filled ask accepts (the dearest filled
ask's). When a filled bid cannot pay them, it is cut and the model solved again
(EUPHEMIA's way with paradoxically accepted blocks), until none is left: the last
solution without it, repaired where it freed GPUs, against the last LP bound (cutting
bids only lowers the optimum); the LP is solved again at the end if that leaves the
gap over 0.5%.
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
    # per node: its (block, rack, NVLink domain) labels ("": none); () = no labels
    places: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class Ask:
    order_id: int
    cluster: int  # index into View.clusters
    hour: int  # index into the window (a seller block: its first hour)
    quantity: int  # GPUs (a seller block: in each of its hours)
    price: int  # micro-dollars per GPU-hour
    hours: int = 1  # a seller block: its consecutive hours from ``hour``
    # sold whole or not at all: every one of its GPUs in every one of its hours (a
    # seller block; the only kind of ask of several hours)
    whole: bool = False


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
    # placement: the level its GPUs must share a domain at ("": none) and the node it
    # must be next to, (cluster index, node index)
    level: str = ""
    near: tuple[int, int] | None = None

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
    # the whole asks (seller blocks) sold, by order id; each is in ``asks`` too, at its
    # first hour with its quantity (it sells that many GPUs in each of its hours)
    sold_blocks: list[int] = field(default_factory=list)


def _dollars(micros: int) -> float:
    return micros / MICROS


# a solution the solver has not proved within this of its bound goes to the MIP
GAP = 0.005
# programs with at most this many integer columns always go to the MIP (it closes them
# to GAP in a second or so); larger ones only where the LP and the rounding disagree,
# when rounding is further off than GAP
MIP_COLUMNS = 4_000


class _Program:
    """The auction as one program, built once per clearing and solved again as bids are
    cut (their columns' bounds set to 0, the LP warm-started from its last basis).

    Columns: a block on a cluster and start (binary); a one-hour bid's gangs on a
    cluster (integer); for a cluster's hour with asks at more than one price, the GPUs
    bought above the cheapest price, per price (continuous, at the difference); a slack
    per segment (below). The cheapest asks' price is in the bid columns' values, so a
    cluster's hours with one price need no ask columns.

    Capacity: GPUs used in a cluster's hour at most the GPUs its asks offer. A cluster's
    hours are cut into segments where a column starts or ends (and around an hour with
    several prices): within one segment the same columns cover every hour, so one row
    (at the segment's least capacity) holds for all of them; and each row minus the
    row before (with a slack per segment: used + slack = capacity) leaves every column
    in two rows, where it starts and after it ends (a network matrix). Same polytope,
    a tenth of the nonzeros: its LP solves in about a second at venue scale."""

    def __init__(self, view: View, banned: dict[tuple[int, int, int], int]) -> None:
        self.view = view
        families = _families(view)
        n_bids = max(1, len(view.bids))
        # (cluster, hour) -> [(price, GPUs)] by price, equal prices merged
        self.ladder: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for a in sorted(view.asks, key=lambda a: (a.price, a.order_id)):
            if a.whole:
                continue
            steps = self.ladder.setdefault((a.cluster, a.hour), [])
            if steps and steps[-1][0] == a.price:
                steps[-1] = (a.price, steps[-1][1] + a.quantity)
            else:
                steps.append((a.price, a.quantity))
        # the ordinary asks' GPUs (all the heuristics use: they never sell a seller block)
        self.offered = {k: sum(q for _, q in v) for k, v in self.ladder.items()}
        # the cheapest ordinary ask's price, in the bid columns' values (0 where only
        # seller blocks offer: a seller block's column pays back this price per GPU-hour,
        # as its GPUs are used before any ordinary ask's)
        cheapest = {k: v[0][0] for k, v in self.ladder.items()}
        # seller blocks within the window, by order id
        self.blocks = sorted((a for a in view.asks if a.whole and a.quantity > 0
                              and 0 <= a.hour and a.hour + a.hours <= view.hours),
                             key=lambda a: a.order_id)
        # every GPU any ask offers, and the least price of one, per cluster's hour (for
        # which bid columns exist and where a block is offered first)
        supply = dict(self.offered)
        floor = dict(cheapest)
        # what a block must pay at least per GPU-hour there to be offered: nothing where
        # a seller block offers (one below its price may still help use it whole with a
        # dearer bid: the offline optimum may take it; prices then cut it)
        least = floor
        if self.blocks:
            least = dict(cheapest)
            for a in self.blocks:
                for h in range(a.hour, a.hour + a.hours):
                    supply[a.cluster, h] = supply.get((a.cluster, h), 0) + a.quantity
                    cheapest.setdefault((a.cluster, h), 0)
                    floor[a.cluster, h] = min(floor.get((a.cluster, h), a.price), a.price)
                    least[a.cluster, h] = 0
        self.cheapest = cheapest
        self.cost: list[float] = []
        self.upper: list[float] = []
        self.integer: list[bool] = []
        self.rows: list[tuple[float, float, dict[int, float]]] = []
        # bid -> [(col, cluster, start)]; col -> (bid, cluster, start, GPUs per unit)
        self.bid_cols: dict[int, list[tuple[int, int, int]]] = {}
        self.col_of: dict[int, tuple[Bid, int, int, int]] = {}
        spans: dict[int, list[tuple[int, int, int, int]]] = {}  # cluster -> (col, s, e, per)
        groups: dict[int, dict[int, float]] = {}
        for rank, b in enumerate(view.bids):
            if b.quantity % b.gang:
                continue
            tie = _TIE * (n_bids - rank)
            cols: list[tuple[int, int, int]] = []
            for c, s in _candidates(view, b, families.get(b.family, []), floor, banned,
                                    least):
                span = range(s, s + b.hours)
                if b.block:
                    if any(supply.get((c, h), 0) < b.quantity for h in span):
                        continue  # the cluster offers too few GPUs in some hour
                    value = _dollars((b.price * b.hours - sum(cheapest[c, h] for h in span))
                                     * b.quantity) + tie
                    col = self._column(value, 1, True)
                    per = b.quantity
                else:
                    room = supply.get((c, s), 0) // b.gang
                    if room <= 0:
                        continue
                    value = _dollars((b.price - cheapest[c, s]) * b.gang) + tie
                    col = self._column(value, min(room, b.quantity // b.gang,
                                                  banned.get((b.order_id, c, s), room)),
                                       True)
                    per = b.gang
                spans.setdefault(c, []).append((col, s, s + b.hours, per))
                self.col_of[col] = (b, c, s, per)
                cols.append((col, c, s))
            if not cols:
                continue
            self.bid_cols[b.order_id] = cols
            self._row(0, 1 if b.block else b.quantity // b.gang, {c: 1.0 for c, _, _ in cols})
            if b.group:
                groups.setdefault(b.group, {}).update({c: 1.0 for c, _, _ in cols})
        for terms in groups.values():
            self._row(0, 1, terms)
        self.n_bid_cols = len(self.cost)
        # per cluster: segments [(first hour, end hour, capacity, slack col, row)]
        self.segments: dict[int, list[tuple[int, int, int, int, int]]] = {}
        # extra ask columns: col -> (cluster, hour, price step)
        self.extra: dict[tuple[int, int], list[int]] = {}
        # seller blocks' columns (binary): col -> the ask
        self.block_of: dict[int, Ask] = {}
        rank_of = {a.order_id: i for i, a in enumerate(self.blocks)}
        for c, cs in sorted(spans.items()):
            cuts = {s for _, s, _, _ in cs} | {e for _, _, e, _ in cs}
            # its seller blocks that bids could use whole: some bid column in every hour
            mine = [a for a in self.blocks if a.cluster == c]
            if mine:
                covered = {h for _, s, e, _ in cs for h in range(s, e)}
                mine = [a for a in mine if covered.issuperset(range(a.hour, a.hour + a.hours))]
            cuts |= {a.hour for a in mine} | {a.hour + a.hours for a in mine}
            lo, hi = min(cuts), max(cuts)
            several = [h for h in range(lo, hi) if len(self.ladder.get((c, h), ())) > 1]
            cuts |= set(several) | {h + 1 for h in several}
            bounds = sorted(cuts)
            segs = list(itertools.pairwise(bounds))
            index = {h: i for i, h in enumerate(bounds)}
            first = len(self.rows)
            capacity = []
            for first_h, end_h in segs:
                ladders = [self.ladder.get((c, h), [(0, 0)]) for h in range(first_h, end_h)]
                capacity.append(min(steps[0][1] for steps in ladders))
            for i in range(len(segs)):
                rhs = float(capacity[i] - (capacity[i - 1] if i else 0))
                self.rows.append((rhs, rhs, {}))
            seg_info = []
            for i, (first_h, end_h) in enumerate(segs):
                slack = self._column(0.0, float("inf"), False)
                self.rows[first + i][2][slack] = 1.0
                if i + 1 < len(segs):
                    self.rows[first + i + 1][2][slack] = -1.0
                seg_info.append((first_h, end_h, capacity[i], slack, first + i))
                if end_h - first_h == 1 and len(self.ladder.get((c, first_h), ())) > 1:
                    steps = self.ladder[c, first_h]
                    for price, q in steps[1:]:
                        col = self._column(-_dollars(price - steps[0][0]), q, False)
                        self.extra.setdefault((c, first_h), []).append(col)
                        self.rows[first + i][2][col] = -1.0
                        if i + 1 < len(segs):
                            self.rows[first + i + 1][2][col] = 1.0
            self.segments[c] = seg_info
            for col, s, e, per in cs:
                self.rows[first + index[s]][2][col] = float(per)
                if index[e] < len(segs):
                    self.rows[first + index[e]][2][col] = -float(per)
            # a seller block sold adds its GPUs to the capacity of its hours (its column
            # in the rows as a bid's, negated), pays its price less the cheapest ordinary
            # asks' it saves, and is used whole: in each segment of it the bids' GPUs at
            # least the seller blocks' there (one more row per such segment)
            floors: dict[int, dict[int, float]] = {}
            for a in mine:
                span = range(a.hour, a.hour + a.hours)
                value = _dollars((sum(cheapest[c, h] for h in span) - a.price * a.hours)
                                 * a.quantity) + _TIE * (len(self.blocks) - rank_of[a.order_id])
                col = self._column(value, 1, True)
                self.block_of[col] = a
                self.rows[first + index[a.hour]][2][col] = -float(a.quantity)
                if index[a.hour + a.hours] < len(segs):
                    self.rows[first + index[a.hour + a.hours]][2][col] = float(a.quantity)
                for i in range(index[a.hour], index[a.hour + a.hours]):
                    floors.setdefault(i, {})[col] = -float(a.quantity)
            for i, terms in sorted(floors.items()):
                first_h, end_h = segs[i]
                for col, s, e, per in cs:
                    if s <= first_h and end_h <= e:
                        terms[col] = float(per)
                self.rows.append((0.0, float("inf"), terms))
        self.cut: set[int] = set()  # the bids cut (their columns' bounds 0)
        self.lp_cut: set[int] = set()  # those the LP has been told of
        self.lp: Any = None
        self.x: list[float] | None = None  # the last LP solution
        self.bound = float("inf")  # and its objective
        self.best: dict[int, float] = {}  # bid columns of the last solution
        # the orders bids are tried in: arrival (first come), and by the LP's solution
        self.first_come: list[tuple[int, list[tuple[int, int, int]]]] | None = None
        self.rounding: list[tuple[int, list[tuple[int, int, int]]]] | None = None

    def _column(self, cost: float, upper: float, integer: bool) -> int:
        self.cost.append(cost)
        self.upper.append(upper)
        self.integer.append(integer)
        return len(self.cost) - 1

    def _row(self, lower: float, upper: float, terms: dict[int, float]) -> None:
        if terms:
            self.rows.append((lower, upper, terms))

    def _highs(self, time_limit: float, integer: bool, fix: dict[int, float] | None = None
               ) -> Any:
        highspy = require("highspy", "auction", "the block auction")
        import numpy as np

        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        h.setOptionValue("time_limit", max(0.1, time_limit))
        h.setOptionValue("threads", 1)
        h.setOptionValue("random_seed", 0)
        h.setOptionValue("mip_rel_gap", GAP)
        n = len(self.cost)
        upper = np.array(self.upper)
        lower = np.zeros(n)
        for bid in self.cut:
            for col, _, _ in self.bid_cols.get(bid, ()):
                upper[col] = 0.0
        for col, v in (fix or {}).items():
            lower[col] = upper[col] = v
        h.addCols(n, np.array(self.cost), lower, upper, 0,
                  np.array([], dtype=np.int32), np.array([], dtype=np.int32),
                  np.array([], dtype=np.float64))
        starts: list[int] = []
        index: list[int] = []
        value: list[float] = []
        for _, _, terms in self.rows:
            starts.append(len(index))
            for col, v in sorted(terms.items()):
                index.append(col)
                value.append(v)
        h.addRows(len(self.rows), np.array([r[0] for r in self.rows], dtype=np.float64),
                  np.array([r[1] for r in self.rows], dtype=np.float64), len(index),
                  np.array(starts, dtype=np.int32), np.array(index, dtype=np.int32),
                  np.array(value, dtype=np.float64))
        if integer:
            h.changeColsIntegrality(n, np.arange(n, dtype=np.int32),
                                    np.array([highspy.HighsVarType.kInteger if i else
                                              highspy.HighsVarType.kContinuous
                                              for i in self.integer]))
        h.changeObjectiveSense(highspy.ObjSense.kMaximize)
        return h

    def _relaxation(self, cut: set[int], time_limit: float) -> tuple[list[float], float] | None:
        """The LP's solution and bound, warm from the last basis once built; None when
        it does not finish within the limit."""
        highspy = require("highspy", "auction", "the block auction")
        import numpy as np

        new = cut - self.lp_cut
        self.lp_cut |= new
        if self.lp is None:
            self.lp = self._highs(time_limit, integer=False)
            # interior point (with crossover) where simplex is slow: large programs
            if self.n_bid_cols > MIP_COLUMNS:
                self.lp.setOptionValue("solver", "ipm")
        else:
            cols = [col for bid in sorted(new) for col, _, _ in self.bid_cols.get(bid, ())]
            if cols:
                self.lp.changeColsBounds(len(cols), np.array(cols, dtype=np.int32),
                                         np.zeros(len(cols)), np.zeros(len(cols)))
            self.lp.setOptionValue("solver", "simplex")
            self.lp.setOptionValue("time_limit", max(0.1, time_limit))
        self.lp.run()
        if self.lp.getModelStatus() != highspy.HighsModelStatus.kOptimal:
            return None
        return list(self.lp.getSolution().col_value), self.lp.getInfo().objective_function_value

    def solve(self, cut: set[int], time_limit: float, fresh: bool) -> dict[str, Any]:
        """The best solution found within ``time_limit`` without the bids ``cut``, and
        its gap. ``fresh``: solve the LP relaxation (warm from its last basis) and round
        it; else repair the last solution where the bids cut since left GPUs, against
        the last LP bound (still a bound: cutting bids only lowers the optimum)."""
        began = time.monotonic()
        self.cut = set(cut)
        # where local search looks (None: everywhere): cluster -> hours GPUs were freed
        focus: dict[int, set[int]] | None = None
        if fresh or self.x is None:
            relaxed = self._relaxation(cut, time_limit)
            if relaxed:
                self.x, self.bound = relaxed
        else:
            relaxed = None
            focus = {}
            for c in self.best:
                b, cluster, start, _ = self.col_of[c]
                if b.order_id in cut:
                    focus.setdefault(cluster, set()).update(range(start, start + b.hours))
        bound = self.bound
        live = {bid: cols for bid, cols in self.bid_cols.items() if bid not in cut}
        by_id = {b.order_id: b for b in self.view.bids}
        if self.first_come is None:
            # arrival order, each bid on its cheapest columns first
            rank = {b.order_id: i for i, b in enumerate(self.view.bids)}
            self.first_come = [(bid, sorted(cols, key=lambda x: (
                -self.cost[x[0]] if by_id[bid].block else self.cheapest[x[1], x[2]], x[0])))
                for bid, cols in sorted(self.bid_cols.items(), key=lambda kv: rank[kv[0]])]
        if relaxed:
            x = relaxed[0]
            rank = {b.order_id: i for i, b in enumerate(self.view.bids)}

            def share(bid: int) -> float:
                return sum(x[c] for c, _, _ in live[bid]) / max(
                    1.0, max(self.upper[c] for c, _, _ in live[bid]))
            # rounding: the bids the LP fills most first, each on its LP columns first
            self.rounding = [(bid, sorted(cols, key=lambda c: (-x[c[0]], -self.cost[c[0]], c[0])))
                             for bid, cols in sorted(live.items(),
                                                     key=lambda kv: (-share(kv[0]), rank[kv[0]]))]
        orders = [[(by_id[bid], cols) for bid, cols in self.first_come if bid in live]]
        rest = orders[0]
        if self.rounding is not None:
            rest = [(by_id[bid], cols) for bid, cols in self.rounding if bid in live]
            if relaxed:
                orders.append(rest)
        if self.best:
            # the last solution without what was cut since, then the rest as rounded
            kept: dict[int, set[int]] = {}
            for c in self.best:
                kept.setdefault(self.col_of[c][0].order_id, set()).add(c)
            if relaxed:
                orders.append([(b, sorted(cols, key=lambda x: x[0] not in kept[b.order_id]))
                               for b, cols in rest if b.order_id in kept]
                              + [(b, cols) for b, cols in rest if b.order_id not in kept])
        else:
            kept = {}
        best: tuple[float, dict[int, float]] | None = None
        if self.best and not relaxed:
            # repair: the last solution as it stands, the bids it left out put in where
            # the GPUs freed let them, then local search where GPUs were freed
            orders.append([(b, cols) for b, cols in rest if b.order_id not in kept])
        for i, order in enumerate(orders):
            prior = {c: v for c, v in self.best.items() if self.col_of[c][0].order_id in live
                     } if self.best and not relaxed and i == len(orders) - 1 else {}
            values = self._fill(order, positive=i > 0, prior=prior)
            if i > 0:
                values = self._improve(values, live, began + time_limit / 2,
                                       focus if i == len(orders) - 1 else None)
            objective = sum(self.cost[c] * v for c, v in self._complete(values).items())
            if best is None or objective > best[0] + 1e-9:
                best = (objective, values)
        assert best is not None
        gap = _gap(best[0], bound)
        left = time_limit - (time.monotonic() - began)
        n_int = self.n_bid_cols
        if left > 0.05 and (n_int <= MIP_COLUMNS and gap > 1e-9
                            or relaxed and gap > GAP):
            fix: dict[int, float] = {}
            if n_int > MIP_COLUMNS and relaxed:
                # too large to solve whole: only where the LP and the rounding disagree
                # (the bid columns they agree on fixed; as RINS does)
                x = relaxed[0]
                for c in range(self.n_bid_cols):
                    if abs(x[c] - best[1].get(c, 0.0)) < 1e-6:
                        fix[c] = best[1].get(c, 0.0)
            import numpy as np
            # the best solution so far as the MIP's start. HiGHS 1.16 can map a start
            # wrongly through presolve's substitutions (it then reports an objective and
            # bound that its solution does not have: 0.76 for one worth 0.56 under an LP
            # bound of 0.64): its solution is valued here, and on a mismatch its bound is
            # dropped and the MIP run again without the start. With seller blocks (whose
            # columns presolve merges with the bids that alone use them) never a start
            start = not self.block_of
            while True:
                h = self._highs(left, integer=True, fix=fix)
                if start:
                    full = self._complete(best[1])
                    cols = sorted(full)
                    h.setSolution(len(cols), np.array(cols, dtype=np.int32),
                                  np.array([full[c] for c in cols], dtype=np.float64))
                h.run()
                info = h.getInfo()
                solution = list(h.getSolution().col_value)
                if info.primal_solution_status != 2 or len(solution) != len(self.cost):
                    break
                found = {c: solution[c] for c in itertools.chain(
                    range(self.n_bid_cols), self.block_of) if round(solution[c]) > 0}
                objective = sum(self.cost[c] * v for c, v in self._complete(found).items()) \
                    if self._holds(found) else float("-inf")
                if abs(objective - info.objective_function_value) > 1e-6 * max(
                        1.0, abs(objective)):
                    left = time_limit - (time.monotonic() - began)
                    if start and left > 0.05:
                        start = False
                        continue
                    break
                if objective > best[0] + 1e-9:
                    best = (objective, found)
                mip_bound = info.mip_dual_bound
                if mip_bound == mip_bound and abs(mip_bound) < 1e30:
                    bound = min(bound, mip_bound)
                break
            gap = _gap(best[0], bound)
        self.best = {c: v for c, v in best[1].items() if round(v) > 0 and c not in self.block_of}
        column = [0.0] * len(self.cost)
        for c, v in self.best.items():
            column[c] = v
        blocks = sorted(self.block_of[c].order_id for c, v in best[1].items()
                        if c in self.block_of and round(v) > 0)
        return {"values": column, "bid_cols": live, "gap": gap, "blocks": blocks}

    def _step_cost(self, c: int, h: int, used: int, more: int) -> int:
        """Micro-dollars the next ``more`` GPUs of a cluster's hour cost above its
        cheapest asks' price, ``used`` already taken."""
        steps = self.ladder[c, h]
        if len(steps) == 1:
            return 0
        extra, below = 0, 0
        for price, q in steps:
            take = max(0, min(q, used + more - below) - max(0, used - below))
            extra += take * (price - steps[0][0])
            below += q
        return extra

    def _fill(self, order: list[tuple[Bid, list[tuple[int, int, int]]]], positive: bool,
              prior: dict[int, float] | None = None) -> dict[int, float]:
        """The bids in ``order``, each on the first of its columns that still has the
        GPUs (a one-hour bid: as many gangs as fit); with ``positive``, only where it
        adds welfare (the dearer asks it needs cost less than it brings); after the
        columns ``prior`` (taken as they are)."""
        used: dict[tuple[int, int], int] = {}
        values: dict[int, float] = dict(prior or {})
        groups: set[int] = set()
        for col, v in values.items():
            b, c, s, per = self.col_of[col]
            for h in range(s, s + b.hours):
                used[c, h] = used.get((c, h), 0) + round(v) * per
            if b.group:
                groups.add(b.group)
        for b, cols in order:
            if b.group and b.group in groups:
                continue
            got = 0
            for col, c, s in cols:
                span = range(s, s + b.hours)
                if b.block:
                    if any(self.offered.get((c, h), 0) - used.get((c, h), 0) < b.quantity
                           for h in span):
                        continue
                    if positive and self.cost[col] <= _dollars(sum(
                            self._step_cost(c, h, used.get((c, h), 0), b.quantity)
                            for h in span)):
                        continue
                    n = 1
                else:
                    n = min(int(self.upper[col]), b.quantity // b.gang - got,
                            (self.offered.get((c, s), 0) - used.get((c, s), 0)) // b.gang)
                    while positive and n > 0 and self.cost[col] * n <= _dollars(
                            self._step_cost(c, s, used.get((c, s), 0), n * b.gang)):
                        n -= 1
                    if n <= 0:
                        continue
                for h in span:
                    used[c, h] = used.get((c, h), 0) + n * self.col_of[col][3]
                values[col] = float(n)
                got += n
                if b.group:
                    groups.add(b.group)
                if b.block or got >= b.quantity // b.gang:
                    break
        return values

    def _improve(self, values: dict[int, float], live: dict[int, list[tuple[int, int, int]]],
                 until: float, focus: dict[int, set[int]] | None = None) -> dict[int, float]:
        """Local search on a solution: each filled block moved to the column of its own
        that adds most welfare where the GPUs are (releasing its own first), over and
        over until nothing moves (or ``until``). With ``focus``, only moves to where GPUs
        were freed (cluster -> hours; a move frees its old place in turn)."""
        values = dict(values)
        used: dict[tuple[int, int], int] = {}
        for col, v in values.items():
            b, c, s, per = self.col_of[col]
            for h in range(s, s + b.hours):
                used[c, h] = used.get((c, h), 0) + round(v) * per

        def gain(col: int) -> float:
            b, c, s, per = self.col_of[col]
            return self.cost[col] - _dollars(sum(self._step_cost(c, h, used.get((c, h), 0), per)
                                                 for h in range(s, s + b.hours)))

        def fits(col: int) -> bool:
            b, c, s, per = self.col_of[col]
            return all(self.offered.get((c, h), 0) - used.get((c, h), 0) >= per
                       for h in range(s, s + b.hours))

        def move(col: int, by: int) -> None:
            b, c, s, per = self.col_of[col]
            for h in range(s, s + b.hours):
                used[c, h] = used.get((c, h), 0) + by * per
        for _ in range(5):
            changed = False
            for col in sorted(values):
                b = self.col_of[col][0]
                if not b.block or time.monotonic() > until:
                    continue
                targets = [o for o, c, s in live[b.order_id] if focus is None or c in focus
                           and not focus[c].isdisjoint(range(s, s + b.hours))]
                if not targets:
                    continue
                move(col, -1)
                best = (gain(col), col)
                for other in targets:
                    if other != col and self.cost[other] > best[0] + 1e-9 and fits(other):
                        g = gain(other)
                        if g > best[0] + 1e-9:
                            best = (g, other)
                move(best[1], 1)
                if best[1] != col:
                    del values[col]
                    values[best[1]] = 1.0
                    changed = True
                    if focus is not None:
                        _, c, s, _ = self.col_of[col]
                        focus.setdefault(c, set()).update(range(s, s + b.hours))
            if not changed:
                break
        return values

    def _holds(self, values: dict[int, float]) -> bool:
        """Whether bid and seller block columns ``values`` keep the capacity rows: in
        each cluster's hour the bids use at least the seller blocks' GPUs sold there
        and at most those and the ordinary asks' together."""
        used: dict[tuple[int, int], int] = {}
        blocks: dict[tuple[int, int], int] = {}
        for col, v in values.items():
            if col in self.block_of:
                a = self.block_of[col]
                for h in range(a.hour, a.hour + a.hours):
                    blocks[a.cluster, h] = blocks.get((a.cluster, h), 0) + round(v) * a.quantity
                continue
            b, c, s, per = self.col_of[col]
            for h in range(s, s + b.hours):
                used[c, h] = used.get((c, h), 0) + round(v) * per
        return all(blocks.get(k, 0) <= used.get(k, 0)
                   <= blocks.get(k, 0) + self.offered.get(k, 0)
                   for k in used.keys() | blocks.keys())

    def _complete(self, values: dict[int, float]) -> dict[int, float]:
        """Every column's value for bid (and seller block) columns ``values``: the
        dearer asks' GPUs each hour needs (cheapest first, after the seller blocks') and
        the segments' slacks."""
        out = dict(values)
        used: dict[tuple[int, int], int] = {}
        for col, v in values.items():
            if col in self.block_of:
                # a seller block sold: its GPUs come first, as if the bids used fewer
                ask = self.block_of[col]
                for h in range(ask.hour, ask.hour + ask.hours):
                    key = (ask.cluster, h)
                    used[key] = used.get(key, 0) - round(v) * ask.quantity
                continue
            _, c, s, per = self.col_of[col]
            b = self.col_of[col][0]
            for h in range(s, s + b.hours):
                used[c, h] = used.get((c, h), 0) + round(v) * per
        for col in self.block_of:
            out.setdefault(col, 0.0)
        for (c, h), cols in self.extra.items():
            over = used.get((c, h), 0) - self.ladder[c, h][0][1]
            for col, (_, q) in zip(cols, self.ladder[c, h][1:], strict=True):
                take = max(0, min(q, over))
                out[col] = float(take)
                over -= take
        for c, segs in self.segments.items():
            for a, _, capacity, slack, _ in segs:
                bought = sum(out.get(col, 0.0) for col in self.extra.get((c, a), ()))
                out[slack] = capacity + bought - used.get((c, a), 0)
        return out


def _gap(objective: float, bound: float) -> float:
    if bound == float("inf"):
        return 1.0
    return max(0.0, bound - objective) / max(abs(bound), 1e-9)


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
    for a in view.asks:
        if a.hours < 1 or a.hours > 1 and not a.whole:
            raise ValueError(f"ask {a.order_id}: {a.hours} hours; an ask of several hours "
                             "is a seller block (whole=True)")
    # with seller blocks every solve is fresh: repairing the last solution where a cut
    # bid freed GPUs could leave a seller block it sold partly unused
    blocks = any(a.whole for a in view.asks)
    # (bid, cluster, start) -> the most gangs placement fits there (a block: 0, kept off
    # that cluster at that start; a window's other starts there are still offered)
    banned: dict[tuple[int, int, int], int] = {}
    cut: set[int] = set()  # bids cut as paradoxically accepted
    solves = 0
    program = _Program(view, banned)
    fresh = True  # solve the LP (else repair the last solution, against the last bound)
    while True:
        solves += 1
        left = time_limit - (time.monotonic() - began)
        result = program.solve(cut, left, fresh)
        plans = _plans(view, result)
        clearing = _price(view, plans, result["blocks"])
        paradox = _paradoxically_accepted(view, clearing, plans) if priced else []
        if not paradox and result["gap"] > GAP and not fresh and \
                time.monotonic() - began < time_limit:
            fresh = True  # the last bound is stale: tighten it (and round again) once
            continue
        if not paradox:
            # the GPUs, now that the set is settled (placement may still fail for a block
            # on fragmented nodes: it is kept off that cluster and the auction solved again)
            fills, unplaced = _place_all(view, plans)
            if unplaced:
                banned.update(unplaced)
                program = _Program(view, banned)
                fresh = True
                continue
            clearing = _price(view, fills, result["blocks"])
            paradox = _paradoxically_accepted(view, clearing, fills) if priced else []
        fresh = blocks
        clearing.gap, clearing.solves = result["gap"], solves
        if not paradox:
            if priced:
                clearing.cut = sorted(cut)
                _report_rejected(view, clearing, clearing.fills)
            clearing.seconds = time.monotonic() - began
            return clearing
        # one at a time, the one furthest short first; past the time limit, all at once
        cut |= set(paradox if time.monotonic() - began > time_limit else paradox[:1])


def _families(view: View) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, c in enumerate(view.clusters):
        out.setdefault(c.family, []).append(i)
    return out


# the clusters and starts a block is offered to the solver at: the cheapest few by the
# sum of their cheapest asks over its hours (a block on a dearer one gives less welfare
# for the same GPUs; the choice among the cheapest is the solver's). 12 was too few at
# venue scale: the cheap clusters' GPUs could then be shared only fractionally, and
# rounding the LP lost 7%; with 24, 0.5%
CANDIDATES = 24


def _candidates(view: View, b: Bid, clusters: list[int], cheapest: dict[tuple[int, int], int],
                banned: dict[tuple[int, int, int], int],
                least: dict[tuple[int, int], int] | None = None) -> list[tuple[int, int]]:
    """``cheapest``: the least price of a GPU per cluster's hour, to rank by; ``least``
    (default ``cheapest``): what a block must be able to pay there to be offered."""
    options = [(c, s) for c in clusters for s in b.starts
               if 0 <= s and s + b.hours <= view.hours and banned.get((b.order_id, c, s), 1) > 0]
    if not b.block:
        return options
    least = cheapest if least is None else least
    priced = []
    for c, s in options:
        hours = range(s, s + b.hours)
        if all((c, h) in cheapest for h in hours):
            cost = sum(cheapest[c, h] for h in hours)
            # its cheapest asks alone it can pay (``least`` is at most ``cheapest``)
            if sum(least[c, h] for h in hours) <= b.price * b.hours:
                priced.append((cost, c, s))
    priced.sort()
    return [(c, s) for _, c, s in priced[:CANDIDATES]]


@dataclass(frozen=True)
class _Plan:
    """A filled bid before its GPUs are chosen."""
    order_id: int
    cluster: int
    start: int
    hours: int
    quantity: int


def _plans(view: View, result: dict[str, Any]) -> list[_Plan]:
    """The solution's fills, in the order GPUs are chosen: by start hour, as interval
    colouring goes (then whole-node gangs always fit when every hour has the GPUs),
    longer, larger, earlier first among equal starts."""
    values = result["values"]
    rank = {b.order_id: i for i, b in enumerate(view.bids)}
    by_id = {b.order_id: b for b in view.bids}
    chosen: list[tuple[Bid, _Plan]] = []
    for bid_id, cols in result["bid_cols"].items():
        b = by_id[bid_id]
        for col, c, s in cols:
            n = round(values[col])
            if n > 0:
                chosen.append((b, _Plan(bid_id, c, s, b.hours,
                                        b.quantity if b.block else n * b.gang)))
    chosen.sort(key=lambda x: (x[1].start, -x[0].hours, -x[0].quantity, rank[x[0].order_id]))
    return [p for _, p in chosen]


def _place_all(view: View, plans: list[_Plan]
               ) -> tuple[list[Fill], dict[tuple[int, int, int], int]]:
    """Concrete GPUs for every plan, in order; where a plan did not fit, (bid, cluster,
    start) -> the gangs that did (a block: 0)."""
    nodes = [_Nodes(c) for c in view.clusters]
    by_id = {b.order_id: b for b in view.bids}
    fills: list[Fill] = []
    unplaced: dict[tuple[int, int, int], int] = {}
    for p in plans:
        b = by_id[p.order_id]
        gpus = nodes[p.cluster].place(p.start, p.hours, p.quantity, b.gang)
        if gpus is None:
            fit = 0
            while not b.block and fit + 1 < p.quantity // b.gang and nodes[p.cluster].place(
                    p.start, p.hours, b.gang, b.gang) is not None:
                fit += 1
            unplaced[b.order_id, p.cluster, p.start] = fit
            continue
        fills.append(Fill(b.order_id, p.cluster, p.start, p.hours, gpus))
    return fills, unplaced


def _price(view: View, fills: Sequence[Fill | _Plan], blocks: Sequence[int] = ()
           ) -> Clearing:
    """The asks each cluster's hour needs and the products' prices: the seller blocks
    sold (``blocks``, order ids) first, whole, then the ordinary asks cheapest first
    (price, then order id), as the engine assigns them."""
    need: dict[tuple[int, int], int] = {}
    for f in fills:
        for h in range(f.start, f.start + f.hours):
            need[f.cluster, h] = need.get((f.cluster, h), 0) + f.quantity
    sold: dict[int, tuple[int, int]] = {}
    prices: dict[tuple[str, int], int] = {}
    cost = 0
    chosen = set(blocks)
    whole = sorted((a for a in view.asks if a.order_id in chosen), key=lambda a: a.order_id)
    asks = sorted((a for a in view.asks if not a.whole), key=lambda a: (a.price, a.order_id))
    for a in whole:
        sold[a.order_id] = (a.hour, a.quantity)
        cost += a.quantity * a.hours * a.price
        for h in range(a.hour, a.hour + a.hours):
            need[a.cluster, h] = need.get((a.cluster, h), 0) - a.quantity
            key = (view.clusters[a.cluster].family, h)
            prices[key] = max(prices.get(key, 0), a.price)
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
    return Clearing([f for f in fills if isinstance(f, Fill)], sold, prices, value - cost,
                    0.0, 0.0, sold_blocks=[a.order_id for a in whole])


def _cost(view: View, clearing: Clearing, fill: Fill | _Plan) -> int:
    family = view.clusters[fill.cluster].family
    return sum(clearing.prices.get((family, h), 0)
               for h in range(fill.start, fill.start + fill.hours))


def _paradoxically_accepted(view: View, clearing: Clearing,
                            fills: Sequence[Fill | _Plan]) -> list[int]:
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
    # each seller block sold or not
    whole = [a for a in view.asks if a.whole]
    best = 0
    for choice in itertools.product(*options):
        picked = [(b, part) for b, parts in zip(view.bids, choice, strict=True)
                  for part in parts]
        groups = {b.group for b, parts in zip(view.bids, choice, strict=True)
                  if parts and b.group}
        if len(groups) < len([1 for b, parts in zip(view.bids, choice, strict=True)
                              if parts and b.group]):
            continue  # two alternatives of one group
        for sold in itertools.product((False, True), repeat=len(whole)):
            welfare = _feasible_welfare(view, picked,
                                        [a for a, s in zip(whole, sold, strict=True) if s])
            if welfare is not None:
                best = max(best, welfare)
    return best


def _feasible_welfare(view: View, picked: Sequence[tuple[Bid, tuple[int, int, int]]],
                      blocks: Sequence[Ask] = ()) -> int | None:
    """The welfare of filling ``picked`` and selling the seller blocks ``blocks``; None
    when the GPUs cannot be placed, the asks do not cover them, or a seller block sold
    is not used whole."""
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
    for a in blocks:
        if not (0 <= a.hour and a.hour + a.hours <= view.hours):
            return None
        for h in range(a.hour, a.hour + a.hours):
            need[a.cluster, h] = need.get((a.cluster, h), 0) - a.quantity
            if need[a.cluster, h] < 0:
                return None  # not sold whole
        value -= a.price * a.quantity * a.hours
    for (c, h), q in need.items():
        for a in sorted((a for a in view.asks if a.cluster == c and a.hour == h
                         and not a.whole), key=lambda a: a.price):
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
