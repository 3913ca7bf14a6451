"""The auction as one mixed-integer program (``_Program``), solved with HiGHS.

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

How it is solved (``_Program``): the program is built once per clearing. Its LP
relaxation is solved (interior point at scale) and rounded: the bids the LP fills most
first, each on its LP columns first, then blocks moved to better columns where the
GPUs are; first come (arrival order, cheapest cluster) is always a candidate, so the
result is never worse than it. Small programs then go to the MIP whole (to 0.5% of
its bound); large ones only where the LP and the rounding disagree, and only when
rounding is more than 0.5% from the LP bound. The gap reported is against the best
bound known.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Callable
from typing import Any

from spotex.extras import require

from .locality import _Places, _Zones
from .model import _TIE, Ask, Bid, View, _dollars, _families

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

    def __init__(self, view: View, banned: dict[tuple[int, int, int], int],
                 places: _Places | None = None) -> None:
        self.view = view
        families = _families(view)
        places = places or _Places(view)
        zones = _Zones(view, places)
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
        # a bid with a level: a column per zone (domains alike, _Zones) that could hold
        # it alone, in every cluster and start; col -> zone, zone -> its columns
        self.zone_of: dict[int, int] = {}
        self.zones: list[tuple[int, str, tuple[str, ...]]] = []  # (cluster, level, names)
        zone_index: dict[tuple[int, str, tuple[str, ...]], int] = {}
        zone_cols: dict[int, list[tuple[int, int, int, int]]] = {}  # zone -> (col, s, e, per)
        # one-hour bids with a level on more than one column: they fill on one of them
        switched: list[list[int]] = []
        for rank, b in enumerate(view.bids):
            if b.quantity % b.gang:
                continue
            tie = _TIE * (n_bids - rank)
            cols: list[tuple[int, int, int]] = []
            holds = None
            if b.level and b.block:
                def holds(c: int, s: int, b: Bid = b) -> bool:
                    return any(zones.room(c, b.level, zone[0], s, b.hours, b.gang)
                               >= b.quantity // b.gang for zone in zones.for_bid(b, c))
            for c, s in _candidates(view, b, places.clusters(b, families.get(b.family, [])),
                                    floor, banned, least, holds):
                span = range(s, s + b.hours)
                if b.block:
                    if any(supply.get((c, h), 0) < b.quantity for h in span):
                        continue  # the cluster offers too few GPUs in some hour
                    value = _dollars((b.price * b.hours - sum(cheapest[c, h] for h in span))
                                     * b.quantity) + tie
                    per = b.quantity
                    upper = 1
                else:
                    room = supply.get((c, s), 0) // b.gang
                    if room <= 0:
                        continue
                    value = _dollars((b.price - cheapest[c, s]) * b.gang) + tie
                    upper = min(room, b.quantity // b.gang, banned.get((b.order_id, c, s), room))
                    per = b.gang
                for zone in zones.for_bid(b, c) if b.level else [None]:
                    bound = upper
                    if zone is not None:
                        fit = zones.room(c, b.level, zone[0], s, b.hours, b.gang)
                        if fit < (b.quantity // b.gang if b.block else 1):
                            continue  # no domain of the zone holds it
                        bound = upper if b.block else min(upper, fit)
                    col = self._column(value, bound, True)
                    if zone is not None:
                        z = zone_index.setdefault((c, b.level, zone), len(zone_index))
                        if z == len(self.zones):
                            self.zones.append((c, b.level, zone))
                        self.zone_of[col] = z
                        zone_cols.setdefault(z, []).append((col, s, s + b.hours, per))
                    spans.setdefault(c, []).append((col, s, s + b.hours, per))
                    self.col_of[col] = (b, c, s, per)
                    cols.append((col, c, s))
            if not cols:
                continue
            self.bid_cols[b.order_id] = cols
            self._row(0, 1 if b.block else b.quantity // b.gang, {c: 1.0 for c, _, _ in cols})
            if b.group:
                groups.setdefault(b.group, {}).update({c: 1.0 for c, _, _ in cols})
            if b.level and not b.block and len(cols) > 1:
                switched.append([col for col, _, _ in cols])
        for terms in groups.values():
            self._row(0, 1, terms)
        self.n_bid_cols = len(self.cost)
        # a zone's columns, and those of the zones (of other levels) whose nodes are all
        # its own, use at most the GPUs free in its domains, per segment of hours where
        # the same columns run (at the segment's least)
        nodes = [frozenset(n for name in names for n in places.domains(c, level)[name])
                 for c, level, names in self.zones]
        # zone -> the zones whose rows count its columns: its own first
        self.zone_in: dict[int, tuple[int, ...]] = {}
        for z, (c, level, _) in enumerate(self.zones):
            self.zone_in[z] = (z, *(o for o, (oc, olevel, _) in enumerate(self.zones)
                                    if o != z and oc == c and olevel != level
                                    and nodes[z] <= nodes[o]))
        counted: dict[int, list[tuple[int, int, int, int]]] = {}
        for z, zcols in zone_cols.items():
            for o in self.zone_in[z]:
                counted.setdefault(o, []).extend(zcols)
        # (zone, hour) -> its GPUs (the least of its segment); per zone with rows, its
        # segments [(first hour, end hour, GPUs, slack col)]. As the clusters' rows: one
        # row per segment, each minus the one before (a slack per segment), so a column
        # is in two rows. A zone with at least the GPUs its cluster's asks offer in every
        # hour needs no rows (those of its cluster hold it)
        self.zone_cap: dict[tuple[int, int], int] = {}
        self.zone_segments: dict[int, list[tuple[int, int, int, int]]] = {}
        for z, zcols in sorted(counted.items()):
            c, level, names = self.zones[z]
            bounds = sorted({s for _, s, _, _ in zcols} | {e for _, _, e, _ in zcols})
            segs = list(itertools.pairwise(bounds))
            free = {h: zones.capacity(c, level, names, h) for h in range(bounds[0], bounds[-1])}
            caps = [min(free[h] for h in range(first_h, end_h)) for first_h, end_h in segs]
            for (first_h, end_h), cap in zip(segs, caps, strict=True):
                for h in range(first_h, end_h):
                    self.zone_cap[z, h] = cap
            if all(free[h] >= supply.get((c, h), 0) for h in free):
                continue
            first = len(self.rows)
            index = {h: i for i, h in enumerate(bounds)}
            info: list[tuple[int, int, int, int]] = []
            for i in range(len(segs)):
                rhs = float(caps[i] - (caps[i - 1] if i else 0))
                self.rows.append((rhs, rhs, {}))
            for i, (first_h, end_h) in enumerate(segs):
                slack = self._column(0.0, float("inf"), False)
                self.rows[first + i][2][slack] = 1.0
                if i + 1 < len(segs):
                    self.rows[first + i + 1][2][slack] = -1.0
                info.append((first_h, end_h, caps[i], slack))
            for col, s, e, per in zcols:
                self.rows[first + index[s]][2][col] = float(per)
                if index[e] < len(segs):
                    self.rows[first + index[e]][2][col] = -float(per)
            self.zone_segments[z] = info
        # a one-hour bid with a level fills on one column: a switch per column (binary),
        # the column's gangs at most its bound times its switch, one switch on
        self.switch_of: dict[int, int] = {}
        for xs in switched:
            for col in xs:
                y = self._column(0.0, 1, True)
                self.switch_of[col] = y
                self.rows.append((-self.upper[col], 0.0, {col: 1.0, y: -self.upper[col]}))
            self.rows.append((0.0, 1.0, {self.switch_of[col]: 1.0 for col in xs}))
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

    def ban(self, limits: dict[tuple[int, int, int], int]) -> None:
        """Keeps bids off where placement could not give them the GPUs: (bid, cluster,
        start) -> the most units its columns there may take from now on (a block: 0),
        in the LP too (warm from its basis) and in the last solution."""
        changed = []
        for (bid, c, s), most in sorted(limits.items()):
            for col, cc, ss in self.bid_cols.get(bid, ()):
                if (cc, ss) == (c, s) and self.upper[col] > most:
                    self.upper[col] = float(most)
                    changed.append(col)
        for col in changed:
            if col in self.best:
                if self.upper[col] >= 1:
                    self.best[col] = min(self.best[col], self.upper[col])
                else:
                    del self.best[col]
        live = [col for col in changed if self.col_of[col][0].order_id not in self.lp_cut]
        if self.lp is not None and live:
            import numpy as np

            self.lp.changeColsBounds(len(live), np.array(live, dtype=np.int32),
                                     np.zeros(len(live)),
                                     np.array([self.upper[col] for col in live]))

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
        # the domains a bid's column with a level names, to place it in first
        domains = {col: self.zones[z][2] for col, z in self.zone_of.items()}
        return {"values": column, "bid_cols": live, "gap": gap, "blocks": blocks,
                "domains": domains}

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
        zused: dict[tuple[int, int], int] = {}  # (zone, hour) -> GPUs its columns use
        values: dict[int, float] = dict(prior or {})
        groups: set[int] = set()
        for col, v in values.items():
            b, c, s, per = self.col_of[col]
            for h in range(s, s + b.hours):
                used[c, h] = used.get((c, h), 0) + round(v) * per
            self._zone_use(col, zused, round(v))
            if b.group:
                groups.add(b.group)
        for b, cols in order:
            if b.group and b.group in groups:
                continue
            got = 0
            for col, c, s in cols:
                span = range(s, s + b.hours)
                if b.block:
                    if self.upper[col] < 1 or any(
                            self.offered.get((c, h), 0) - used.get((c, h), 0) < b.quantity
                            for h in span):
                        continue
                    if self.zone_of and self._zone_left(col, zused) < b.quantity:
                        continue
                    if positive and self.cost[col] <= _dollars(sum(
                            self._step_cost(c, h, used.get((c, h), 0), b.quantity)
                            for h in span)):
                        continue
                    n = 1
                else:
                    n = min(int(self.upper[col]), b.quantity // b.gang - got,
                            (self.offered.get((c, s), 0) - used.get((c, s), 0)) // b.gang)
                    if self.zone_of:
                        n = min(n, self._zone_left(col, zused) // b.gang)
                    while positive and n > 0 and self.cost[col] * n <= _dollars(
                            self._step_cost(c, s, used.get((c, s), 0), n * b.gang)):
                        n -= 1
                    if n <= 0:
                        continue
                for h in span:
                    used[c, h] = used.get((c, h), 0) + n * self.col_of[col][3]
                self._zone_use(col, zused, n)
                values[col] = float(n)
                got += n
                if b.group:
                    groups.add(b.group)
                if b.block or got >= b.quantity // b.gang or col in self.switch_of:
                    break
        return values

    def _zone_use(self, col: int, zused: dict[tuple[int, int], int], n: int) -> None:
        """Counts ``n`` units of column ``col`` in the zones that count it (if any)."""
        z = self.zone_of.get(col)
        if z is not None:
            b, _, s, per = self.col_of[col]
            for o in self.zone_in[z]:
                for h in range(s, s + b.hours):
                    zused[o, h] = zused.get((o, h), 0) + n * per

    def _zone_left(self, col: int, zused: dict[tuple[int, int], int]) -> int:
        """GPUs left through column ``col``'s hours in the zones that count it (none:
        plenty)."""
        z = self.zone_of.get(col)
        if z is None:
            return 1 << 62
        b, _, s, _ = self.col_of[col]
        return min(self.zone_cap[o, h] - zused.get((o, h), 0) for o in self.zone_in[z]
                   for h in range(s, s + b.hours))

    def _improve(self, values: dict[int, float], live: dict[int, list[tuple[int, int, int]]],
                 until: float, focus: dict[int, set[int]] | None = None) -> dict[int, float]:
        """Local search on a solution: each filled block moved to the column of its own
        that adds most welfare where the GPUs are (releasing its own first), over and
        over until nothing moves (or ``until``). With ``focus``, only moves to where GPUs
        were freed (cluster -> hours; a move frees its old place in turn)."""
        values = dict(values)
        used: dict[tuple[int, int], int] = {}
        zused: dict[tuple[int, int], int] = {}
        for col, v in values.items():
            b, c, s, per = self.col_of[col]
            for h in range(s, s + b.hours):
                used[c, h] = used.get((c, h), 0) + round(v) * per
            self._zone_use(col, zused, round(v))

        def gain(col: int) -> float:
            b, c, s, per = self.col_of[col]
            return self.cost[col] - _dollars(sum(self._step_cost(c, h, used.get((c, h), 0), per)
                                                 for h in range(s, s + b.hours)))

        def fits(col: int) -> bool:
            b, c, s, per = self.col_of[col]
            return all(self.offered.get((c, h), 0) - used.get((c, h), 0) >= per
                       for h in range(s, s + b.hours)) and (
                not self.zone_of or self._zone_left(col, zused) >= per)

        def move(col: int, by: int) -> None:
            b, c, s, per = self.col_of[col]
            for h in range(s, s + b.hours):
                used[c, h] = used.get((c, h), 0) + by * per
            self._zone_use(col, zused, by)
        for _ in range(5):
            changed = False
            for col in sorted(values):
                b = self.col_of[col][0]
                if not b.block or time.monotonic() > until:
                    continue
                targets = [o for o, c, s in live[b.order_id] if self.upper[o] >= 1 and (
                    focus is None or c in focus
                    and not focus[c].isdisjoint(range(s, s + b.hours)))]
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
        and at most those and the ordinary asks' together; and the zones' rows and a
        one-hour bid with a level on one column."""
        used: dict[tuple[int, int], int] = {}
        blocks: dict[tuple[int, int], int] = {}
        zused: dict[tuple[int, int], int] = {}
        switched: set[int] = set()
        for col, v in values.items():
            if col in self.block_of:
                a = self.block_of[col]
                for h in range(a.hour, a.hour + a.hours):
                    blocks[a.cluster, h] = blocks.get((a.cluster, h), 0) + round(v) * a.quantity
                continue
            b, c, s, per = self.col_of[col]
            for h in range(s, s + b.hours):
                used[c, h] = used.get((c, h), 0) + round(v) * per
            self._zone_use(col, zused, round(v))
            if col in self.switch_of and round(v) > 0:
                if b.order_id in switched:
                    return False
                switched.add(b.order_id)
        if any(q > self.zone_cap[k] for k, q in zused.items()):
            return False
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
        for col, y in self.switch_of.items():
            out[y] = 1.0 if round(values.get(col, 0.0)) > 0 else 0.0
        if self.zone_segments:
            zused: dict[tuple[int, int], int] = {}
            for col, v in values.items():
                if col not in self.block_of:
                    self._zone_use(col, zused, round(v))
            for z, zsegs in self.zone_segments.items():
                for a, _, cap, slack in zsegs:
                    out[slack] = float(cap - zused.get((z, a), 0))
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


# the clusters and starts a block is offered to the solver at: the cheapest few by the
# sum of their cheapest asks over its hours (a block on a dearer one gives less welfare
# for the same GPUs; the choice among the cheapest is the solver's). 12 was too few at
# venue scale: the cheap clusters' GPUs could then be shared only fractionally, and
# rounding the LP lost 7%; with 24, 0.5%
CANDIDATES = 24


def _candidates(view: View, b: Bid, clusters: list[int], cheapest: dict[tuple[int, int], int],
                banned: dict[tuple[int, int, int], int],
                least: dict[tuple[int, int], int] | None = None,
                holds: Callable[[int, int], bool] | None = None) -> list[tuple[int, int]]:
    """``cheapest``: the least price of a GPU per cluster's hour, to rank by; ``least``
    (default ``cheapest``): what a block must be able to pay there to be offered;
    ``holds``: whether a cluster and start could hold it at all (a block with a level:
    some domain there alone), asked before the cheapest are kept."""
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
    if holds is not None:
        kept = (x for x in priced if holds(x[1], x[2]))
        return [(c, s) for _, c, s in itertools.islice(kept, CANDIDATES)]
    return [(c, s) for _, c, s in priced[:CANDIDATES]]

