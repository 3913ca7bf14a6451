"""The GPUs of a solution. Nodes are never variables of the program: a block is placed
on a cluster, and the GPUs are chosen after the solve (best fit, the same GPUs in every
hour, nodes in the same state looked at once as a class); a block the cluster cannot
hold that way is cut from that cluster at that start (a one-hour bid's gangs capped at
what fits) and the model solved again."""

from __future__ import annotations

import bisect
from dataclasses import dataclass
from typing import Any

from .model import Bid, Cluster, Fill, View


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

