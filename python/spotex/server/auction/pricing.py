"""Prices: the lowest price per product that every filled ask accepts (the dearest filled
ask's); the filled bids those prices do not pay (paradoxically accepted: the optimiser
cuts them and solves again), and the blocks left out that they would have paid
(paradoxically rejected: reported)."""

from __future__ import annotations

from collections.abc import Sequence

from .locality import _Places
from .model import Clearing, Fill, View, _families
from .placement import _Plan


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
    places = _Places(view)
    for b in view.bids:
        if not b.block or b.order_id in filled or (b.group and b.group in groups_filled):
            continue
        if not places.clusters(b, families.get(b.family, [])):
            continue  # nowhere it could fill (a cluster of its family; near: that one)
        costs = [sum(clearing.prices.get((b.family, h), 0) for h in range(s, s + b.hours))
                 for s in b.starts if 0 <= s and s + b.hours <= view.hours
                 and all((b.family, h) in clearing.prices for h in range(s, s + b.hours))]
        if costs and min(costs) < b.price * b.hours:
            clearing.rejected_in_money.append(b.order_id)
            clearing.rejected_welfare += (b.price * b.hours - min(costs)) * b.quantity

