"""The GPUs of a solution. Nodes are never variables of the program: a block is placed
on a cluster, and the GPUs are chosen after the solve (best fit, the same GPUs in every
hour, nodes in the same state looked at once as a class; a bid with a level all in one
domain, ``_place_all``); a block the cluster cannot hold that way is cut from that
cluster at that start (a one-hour bid's gangs capped at what fits), or rather an
earlier, cheaper block in its hours whose GPUs it needed (``_blame``), and the model
solved again."""

from __future__ import annotations

import bisect
import time
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from .locality import _Places
from .model import LEVELS, Bid, Cluster, Fill, View


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
        # node -> the list of its class's nodes (the same object as in ``classes``)
        self.class_of: list[list[int]] = [[] for _ in cluster.nodes]
        for members in self.classes.values():
            for n in members:
                self.class_of[n] = members

    def measure(self, domains: dict[str, tuple[int, ...]], start: int, hours: int,
                gang: int) -> dict[str, tuple[int, int]]:
        """Per domain (its nodes): how many gangs of ``gang`` GPUs it holds free
        through ``hours`` from ``start`` (each on one node: best fit places that many,
        never more), and its GPU-hours free over the window. Each class once."""
        span = range(start, start + hours)
        seen: dict[int, tuple[int, int]] = {}  # id of a class's list -> its node's two
        out = {}
        for name, nodes in domains.items():
            room = spare = 0
            for n in nodes:
                got = seen.get(id(self.class_of[n]))
                if got is None:
                    mask = -1
                    for h in span:
                        mask &= self.free[n][h]
                    got = (mask.bit_count() // gang, sum(m.bit_count() for m in self.free[n]))
                    seen[id(self.class_of[n])] = got
                room += got[0]
                spare += got[1]
            out[name] = (room, spare)
        return out

    def place(self, start: int, hours: int, quantity: int, gang: int,
              within: Collection[int] | None = None
              ) -> tuple[tuple[str, tuple[int, ...]], ...] | None:
        """Best fit: each gang on the node with the fewest GPUs free through ``hours``
        from ``start`` that still holds it (ties: the first node), on the lowest GPU
        indices free in every one of those hours; only on the nodes ``within`` when
        given. None, and nothing taken, when not every gang fits."""
        span = range(start, start + hours)
        # per class: [GPUs free through the span, its nodes, how many of them this
        # block has touched (always its first ones: ties go to the first node)]
        classes: list[tuple[int, int, list[int], list[int]]] = []
        for (gpus, masks), members in self.classes.items():
            if within is not None:
                members = [n for n in members if n in within]
                if not members:
                    continue
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
            self.class_of[n] = members
        return tuple((self.cluster.nodes[n][0], tuple(sorted(g)))
                     for n, g in sorted(chosen.items()))


@dataclass(frozen=True)
class _Plan:
    """A filled bid before its GPUs are chosen; ``domains``: the domains (at its bid's
    level) to place it in first, by name (none: any its bid allows)."""
    order_id: int
    cluster: int
    start: int
    hours: int
    quantity: int
    domains: tuple[str, ...] = ()


def _plans(view: View, result: dict[str, Any]) -> list[_Plan]:
    """The solution's fills, in the order GPUs are chosen (``_order``), each with the
    domains its column names (``result["domains"]``: column -> domain names)."""
    values = result["values"]
    by_id = {b.order_id: b for b in view.bids}
    hints = result.get("domains", {})
    chosen: list[_Plan] = []
    for bid_id, cols in result["bid_cols"].items():
        b = by_id[bid_id]
        for col, c, s in cols:
            n = round(values[col])
            if n > 0:
                chosen.append(_Plan(bid_id, c, s, b.hours, b.quantity if b.block else n * b.gang,
                                    hints.get(col, ())))
    return _order(view, chosen)


def _order(view: View, plans: list[_Plan]) -> list[_Plan]:
    """Plans in the order GPUs are chosen: by start hour, as interval colouring goes
    (then whole-node gangs always fit when every hour has the GPUs), longer, larger (the
    bid's quantity), earlier first among equal starts."""
    rank = {b.order_id: i for i, b in enumerate(view.bids)}
    by_id = {b.order_id: b for b in view.bids}

    def key(p: _Plan) -> tuple[int, int, int, int, int]:
        b = by_id[p.order_id]
        return p.start, -b.hours, -b.quantity, rank[p.order_id], p.cluster
    return sorted(plans, key=key)


def _tightness(b: Bid) -> int:
    """How few places a bid's fill may take: near a node with a level, then by level
    (node first), then the rest."""
    if not b.level:
        return len(LEVELS) + 1
    return 0 if b.near is not None else 1 + LEVELS.index(b.level)


def _place_all(view: View, plans: list[_Plan], places: _Places | None = None,
               fallback: bool = True) -> tuple[list[Fill], dict[tuple[int, int, int], int]]:
    """Concrete GPUs for every plan (in ``_order``); where a plan did not fit, (bid,
    cluster, start) -> the gangs that did (a block: 0).

    A plan whose bid has a level goes whole into one domain: of those it may use (its
    ``domains``, else every one its bid allows) the one with the fewest free gangs
    through its hours that still holds it (as the engine chooses), then the fewest
    GPU-hours free over the window (the one other fills can least use), then the lowest
    name. With such plans, when not all fit, the plans with a level are placed first
    instead, the tightest first (near a node, then node, NVLink domain, rack, block,
    cluster); and with ``fallback``, both orders again with any domain their bids allow.
    The first way that places every plan is kept; if none does, what could not be placed
    the way that left the fewest out (the first of those)."""
    places = places or _Places(view)
    by_id = {b.order_id: b for b in view.bids}
    first = _order(view, plans)
    orders = [first]
    if any(by_id[p.order_id].level for p in plans):
        orders.append(sorted(first, key=lambda p: _tightness(by_id[p.order_id])))
    tries = [(o, True) for o in orders]
    if fallback and any(p.domains for p in plans):
        tries += [(o, False) for o in orders]
    where = {id(p): i for i, p in enumerate(first)}
    best: tuple[list[Fill], dict[tuple[int, int, int], int]] | None = None
    for order, hinted in tries:
        placed, unplaced = _place_in_order(view, order, places, hinted)
        if not unplaced:
            # the fills in the first order, whichever placed them
            return [f for _, f in sorted(placed, key=lambda x: where[id(x[0])])], {}
        if best is None or len(unplaced) < len(best[1]):
            best = ([f for _, f in placed], unplaced)
    assert best is not None
    return best


def _place_in_order(view: View, plans: list[_Plan], places: _Places, hinted: bool
                    ) -> tuple[list[tuple[_Plan, Fill]], dict[tuple[int, int, int], int]]:
    nodes: dict[int, _Nodes] = {}  # the clusters plans use
    by_id = {b.order_id: b for b in view.bids}
    fills: list[tuple[_Plan, Fill]] = []
    unplaced: dict[tuple[int, int, int], int] = {}
    for p in plans:
        b = by_id[p.order_id]
        if p.cluster not in nodes:
            nodes[p.cluster] = _Nodes(view.clusters[p.cluster])
        on = nodes[p.cluster]
        allowed = places.allowed(b, p.cluster)
        if allowed is None:
            gpus = on.place(p.start, p.hours, p.quantity, b.gang)
            if gpus is None:
                fit = 0
                while not b.block and fit + 1 < p.quantity // b.gang and on.place(
                        p.start, p.hours, b.gang, b.gang) is not None:
                    fit += 1
                unplaced[b.order_id, p.cluster, p.start] = fit
                continue
        else:
            if hinted and p.domains:
                allowed = {d: allowed[d] for d in p.domains if d in allowed}
            need = p.quantity // b.gang
            rooms = on.measure(allowed, p.start, p.hours, b.gang)
            fitting = [(room, spare, name) for name, (room, spare) in rooms.items()
                       if room >= need]
            if not fitting:
                most = max((room for room, _ in rooms.values()), default=0)
                unplaced[b.order_id, p.cluster, p.start] = 0 if b.block else min(most, need - 1)
                continue
            gpus = on.place(p.start, p.hours, p.quantity, b.gang, set(allowed[min(fitting)[2]]))
            assert gpus is not None  # the domain holds that many gangs
        fills.append((p, Fill(b.order_id, p.cluster, p.start, p.hours, gpus)))
    return fills, unplaced


# how many blocks placed before one that did not fit are tried in its stead
BLAME = 8


def _blame(view: View, plans: list[_Plan], unplaced: dict[tuple[int, int, int], int],
           places: _Places, worth: dict[tuple[int, int, int], float],
           until: float = float("inf")) -> dict[tuple[int, int, int], int]:
    """What to keep off where ``plans`` did not all fit (``unplaced``, from
    ``_place_all``): for each plan that did not, a block on its cluster in its hours
    worth less (``worth``: by (bid, cluster, start)) without which every plan of that
    cluster fits, the least worth first (up to BLAME of them, and none tried after
    ``until``, a ``time.monotonic()``); else the plan itself, as ``unplaced`` says.
    Keeping off the plan that came last would lose the better one where an earlier,
    cheaper block took the GPUs it needed."""
    by_id = {b.order_id: b for b in view.bids}
    rank = {b.order_id: i for i, b in enumerate(view.bids)}
    out: dict[tuple[int, int, int], int] = {}

    def key(p: _Plan) -> tuple[int, int, int]:
        return p.order_id, p.cluster, p.start
    for failed, fit in unplaced.items():
        plan = next(p for p in plans if key(p) == failed)
        mine = [p for p in plans if p.cluster == plan.cluster]
        cheaper = sorted((p for p in mine if p is not plan and by_id[p.order_id].block
                          and p.start < plan.start + plan.hours
                          and plan.start < p.start + p.hours
                          and worth.get(key(p), 0.0) < worth.get(failed, 0.0)),
                         key=lambda p: (worth.get(key(p), 0.0), -rank[p.order_id]))
        instead = next((other for other in cheaper[:BLAME] if time.monotonic() <= until
                        and not _place_all(view, [p for p in mine if p is not other],
                                           places)[1]), None)
        if instead is None:
            out[failed] = fit
        else:
            out[key(instead)] = 0
    return out
