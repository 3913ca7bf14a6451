"""Welfare of the block auction against first-come matching, on seeded training-run
markets: 16 to 48 nodes in 4 clusters, 24 delivery hours, training-run blocks (whole
nodes, 4 to 24 hours) and one-hour bids and asks arriving interleaved, every order GTC.

For each seed, the same orders go
- through the real engine in arrival order (continuous matching: a block fills on the
  first asks that complete it, on their cluster), and
- into one auction after every order for those hours is in (``spotex.server.auction``),
and both are compared with the offline optimum of the same orders (the same program
with no prices imposed). Welfare: the limits of what filled minus the asks' prices.

    python bench/bench_auction.py [--seeds 8] [--big]

``--big`` also times one solve at venue scale: 10,000 nodes in 100 clusters, 168
hourly products, every cluster offering every hour, 1,000 resting blocks; with
``--locality`` the nodes are labelled (blocks of 50 nodes, racks of 10, NVLink domains of
5) and a third of the blocks need one rack, a tenth one NVLink domain, one in twenty
its nodes next to a node of a cluster (in its rack).
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "python"))

import spotex  # noqa: E402
from spotex.server.auction import Ask, Bid, Cluster, View, optimise  # noqa: E402

HOUR = spotex.MICROS_PER_HOUR
H0 = 500_000  # the first delivery hour (hours since the epoch)
FAMILY = "H100-SXM/us-east"
TICK = 10_000


@dataclass
class Order:
    side: str
    cluster: int  # asks
    start: int
    hours: int
    quantity: int
    price: int
    gang: int = 1


def _price(rng: random.Random, lo: float, hi: float) -> int:
    return round(rng.uniform(lo, hi) * 100) * TICK


def market(seed: int, nodes: int, hours: int = 24) -> tuple[int, list[Order]]:
    """Four clusters of ``nodes / 4`` 8-GPU nodes; their asks, training blocks and
    one-hour bids, shuffled into one arrival order."""
    rng = random.Random(seed)
    per = nodes // 4
    orders: list[Order] = []
    for c in range(4):
        base = rng.uniform(1.6, 2.4)
        for h in range(hours):
            left = per * 8
            while left > 0:
                q = min(left, rng.choice([8, 16, 32, per * 8]))
                orders.append(Order("sell", c, h, 1, q, _price(rng, base, base + 0.4)))
                left -= q
    for _ in range(nodes // 2):  # training runs: whole nodes for hours
        length = rng.randint(4, min(24, hours))
        orders.append(Order("buy", -1, rng.randint(0, hours - length), length,
                            8 * rng.randint(1, max(1, per // 2)), _price(rng, 2.0, 3.6),
                            gang=8))
    for _ in range(nodes * 2):  # one-hour buyers
        orders.append(Order("buy", -1, rng.randrange(hours), 1, rng.randint(1, 8),
                            _price(rng, 1.5, 3.4)))
    rng.shuffle(orders)
    return per, orders


def continuous(per: int, orders: list[Order], hours: int = 24) -> int:
    """The welfare of first-come matching in the real engine, orders in arrival order."""
    e = spotex.Engine()
    t = (H0 - 30) * HOUR
    import datetime as dt
    pids = [f"{FAMILY}/" + dt.datetime.fromtimestamp((H0 + h) * 3600, dt.UTC)
            .strftime("%Y-%m-%dT%H") for h in range(hours)]
    for pid in pids:
        e.create_product(pid, tick=TICK, lot=1, open_at=t, close_at=t + 29 * HOUR, ts=t)
    for c in range(4):
        e.register_capacity(100 + c, f"c{c}", sku="H100-SXM", region="us-east",
                            nodes=[(f"c{c}n{n}", 8) for n in range(per)], from_hour=H0,
                            to_hour=H0 + hours, ts=t)
    limit: dict[int, tuple[str, int]] = {}
    welfare = 0
    for i, o in enumerate(orders):
        ts = t + 1 + i
        if o.side == "sell":
            events = e.place(100 + o.cluster, pids[o.start], "sell", o.price, o.quantity,
                             ts=ts, cluster_id=f"c{o.cluster}")
        elif o.hours > 1:
            events = e.place_block(200 + i, pids[o.start], o.hours, o.price, o.quantity,
                                   ts=ts, gang=o.gang, tif="gtc")
        else:
            events = e.place(200 + i, pids[o.start], "buy", o.price, o.quantity, ts=ts,
                             gang=o.gang)
        for ev in events:
            if ev.kind == "accepted" and ev.order_id is not None:
                limit[ev.order_id] = (o.side, o.price)
            elif ev.kind == "trade":
                sides = [limit[x] for x in (ev.order_id, ev.maker_order)]  # type: ignore[index]
                bid = next(p for s, p in sides if s == "buy")
                ask = next(p for s, p in sides if s == "sell")
                welfare += (bid - ask) * (ev.qty or 0)
    return welfare


def view_of(per: int, orders: list[Order], hours: int = 24) -> View:
    full = (1 << 8) - 1
    clusters = tuple(Cluster(f"c{c}", FAMILY, tuple((f"c{c}n{n}", 8, (full,) * hours)
                                                    for n in range(per))) for c in range(4))
    asks = tuple(Ask(i, o.cluster, o.start, o.quantity, o.price)
                 for i, o in enumerate(orders) if o.side == "sell")
    bids = tuple(Bid(i, FAMILY, o.hours, (o.start,), o.quantity, o.price, gang=o.gang)
                 for i, o in enumerate(orders) if o.side == "buy")
    return View(hours, clusters, asks, bids, TICK)


def big(seed: int = 1, locality: bool = False) -> None:
    """One solve at venue scale."""
    rng = random.Random(seed)
    hours, clusters, per = 168, 100, 100
    full = (1 << 8) - 1
    places = tuple((f"b{n // 50}", f"r{n // 10}", f"d{n // 5}") for n in range(per)) \
        if locality else ()
    cl = tuple(Cluster(f"c{c}", FAMILY, tuple((f"c{c}n{n}", 8, (full,) * hours)
                                              for n in range(per)), places)
               for c in range(clusters))
    asks = []
    for c in range(clusters):
        base = rng.uniform(1.6, 2.4)
        for h in range(hours):
            asks.append(Ask(len(asks), c, h, per * 8, _price(rng, base, base + 0.4)))
    bids = []
    for i in range(1000):
        length = rng.randint(4, 48)
        start, quantity, price = (rng.randint(0, hours - length), 8 * rng.randint(1, 16),
                                  _price(rng, 2.0, 3.6))
        level, near = "", None
        if locality:
            pick = rng.random()
            if pick < 0.05:
                level, near = "rack", (rng.randrange(clusters), rng.randrange(per))
                quantity = 8 * rng.randint(1, 10)
            elif pick < 0.15:
                level, quantity = "nvlink_domain", 8 * rng.randint(1, 5)
            elif pick < 0.48:
                level, quantity = "rack", 8 * rng.randint(1, 10)
        bids.append(Bid(10**6 + i, FAMILY, length, (start,), quantity, price, gang=8,
                        level=level, near=near))
    view = View(hours, cl, tuple(asks), tuple(bids), TICK)
    began = time.monotonic()
    c = optimise(view, time_limit=10.0)
    print(f"venue scale{' with locality' if locality else ''}: 10,000 nodes, 168 hours, "
          f"1,000 blocks: cleared in "
          f"{time.monotonic() - began:.1f} s ({c.solves} solves), gap {c.gap:.4f}, "
          f"welfare ${c.welfare / 1e6:,.0f}, {len(c.fills)} blocks filled, {len(c.cut)} cut, "
          f"{len(c.rejected_in_money)} paradoxically rejected")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--big", action="store_true")
    ap.add_argument("--locality", action="store_true",
                    help="with --big: labelled nodes, blocks that need one rack or domain")
    args = ap.parse_args()
    print(f"{'seed':>4} {'nodes':>5} {'orders':>6} {'optimum $':>10} {'continuous':>10} "
          f"{'auction':>8} {'cut':>4} {'PRB':>4} {'solve s':>7}")
    ratios: dict[str, list[float]] = {"continuous": [], "auction": []}
    for seed in range(1, args.seeds + 1):
        nodes = (16, 32, 48)[seed % 3]
        per, orders = market(seed, nodes)
        view = view_of(per, orders)
        best = optimise(view, priced=False, time_limit=30)
        cleared = optimise(view, time_limit=30)
        cont = continuous(per, orders)
        r_c, r_a = cont / best.welfare, cleared.welfare / best.welfare
        ratios["continuous"].append(r_c)
        ratios["auction"].append(r_a)
        print(f"{seed:>4} {nodes:>5} {len(orders):>6} {best.welfare / 1e6:>10.2f} "
              f"{r_c:>10.2f} {r_a:>8.2f} {len(cleared.cut):>4} "
              f"{len(cleared.rejected_in_money):>4} {cleared.seconds:>7.2f}")
    for name, xs in ratios.items():
        xs.sort()
        print(f"{name}: {xs[0]:.2f}-{xs[-1]:.2f} of the optimum (median "
              f"{xs[len(xs) // 2]:.2f})")
    if args.big:
        big(locality=args.locality)


if __name__ == "__main__":
    main()
