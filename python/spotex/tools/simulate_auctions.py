"""``spotex simulate --hours N --auctions``: the same seeded training-run market twice
through a real server, first come and by auction, against the offline optimum.

A market: four sellers' clusters of whole 8-GPU nodes offering every hour in asks of
several sizes around a seller's own price level; training runs wanting 1 or more whole
nodes for 4 to 24 consecutive hours; one-hour buyers of a few GPUs. Every order is
good-till, and they arrive shuffled into one order.

* First come: every order as it arrives, continuously (a block fills on the first asks
  that complete it, or rests until some do).
* Auction: the asks as they arrive (resting in the continuous book), every bid an
  auction order; then one auction over the N hours, after the gate.
* Mixed: as the auction, but the one-hour bids trade continuously as they arrive (only
  the blocks wait for the auction): what letting one-hour orders trade before the gate
  costs.

Welfare (both, and the optimum): the limits of what filled (per GPU-hour) minus the
prices of the asks that sold, in micro-dollars. The optimum is the exact program over the
same orders with no prices imposed (HiGHS, ``spotex.server.auction``). Each run uses its
own SKUs (``SIMC<seed>``, ``SIMA<seed>``, ``SIMM<seed>``), so runs on one server never
meet.
"""

from __future__ import annotations

import random
import time
from dataclasses import dataclass
from typing import Any

from spotex.client import Client, Order
from spotex.extras import require
from spotex.tools.funding import fund

GPUS = 8
TICK = 10_000
REGION = "us-east"


@dataclass(frozen=True)
class Want:
    side: str
    cluster: int  # asks: which seller's cluster (0-3); bids: -1
    start: int  # hour index
    hours: int
    quantity: int
    price: int  # micro-dollars per GPU-hour
    gang: int = 1


def _price(rng: random.Random, lo: float, hi: float) -> int:
    return round(rng.uniform(lo, hi) * 100) * TICK


def market(seed: int, hours: int) -> tuple[int, list[Want]]:
    """Four clusters of ``per`` nodes (4 to 12 each), their asks, training blocks and
    one-hour bids, shuffled into one arrival order."""
    rng = random.Random(seed)
    per = rng.randint(4, 12)
    wants: list[Want] = []
    for c in range(4):
        base = rng.uniform(1.6, 2.4)
        for h in range(hours):
            left = per * GPUS
            while left > 0:
                q = min(left, rng.choice([8, 16, 32, per * GPUS]))
                wants.append(Want("sell", c, h, 1, q, _price(rng, base, base + 0.4)))
                left -= q
    for _ in range(per * 2):  # training runs: whole nodes for hours
        length = rng.randint(4, min(24, hours))
        wants.append(Want("buy", -1, rng.randint(0, hours - length), length,
                          GPUS * rng.randint(1, max(1, per // 2)), _price(rng, 2.0, 3.6),
                          gang=GPUS))
    for _ in range(per * 8):  # one-hour buyers
        wants.append(Want("buy", -1, rng.randrange(hours), 1, rng.randint(1, 8),
                          _price(rng, 1.5, 3.4)))
    rng.shuffle(wants)
    return per, wants


def optimum(per: int, wants: list[Want], hours: int) -> int:
    """The offline optimum's welfare of the same orders (micro-dollars)."""
    require("highspy", "auction", "the offline optimum")
    from spotex.server import auction as a
    family = f"SIM/{REGION}"
    full = (1 << GPUS) - 1
    clusters = tuple(a.Cluster(f"c{c}", family, tuple((f"n{n}", GPUS, (full,) * hours)
                                                      for n in range(per)))
                     for c in range(4))
    asks = tuple(a.Ask(i, w.cluster, w.start, w.quantity, w.price)
                 for i, w in enumerate(wants) if w.side == "sell")
    bids = tuple(a.Bid(i, family, w.hours, (w.start,), w.quantity, w.price, gang=w.gang)
                 for i, w in enumerate(wants) if w.side == "buy")
    return a.optimise(a.View(hours, clusters, asks, bids, TICK), time_limit=60,
                      priced=False).welfare


@dataclass
class Outcome:
    welfare: int
    filled_blocks: int
    blocks: int
    auction: dict[str, Any] | None = None


def _welfare(orders: list[Order]) -> int:
    value = 0
    for o in orders:
        limit = int(o.price * 1_000_000)
        gpu_hours = o.filled * o.hours
        value += limit * gpu_hours if o.side == "buy" else -limit * gpu_hours
    return value


def _play(op: Client, target: str, sku: str, per: int, wants: list[Want], hours: int,
          first_hour: int, by_auction: bool, time_limit: float,
          hourly_by_auction: bool = True) -> Outcome:
    pids = [p.product_id for p in op.create_products(
        skus=[sku], regions=[REGION], from_hour=first_hour, to_hour=first_hour + hours)]
    sellers = []
    for c in range(4):
        s = Client(target, op.create_account(f"{sku}-seller{c}", ["seller"]).token)
        s.register_capacity(f"c{c}", sku=sku, region=REGION,
                            nodes=[(f"n{n}", GPUS) for n in range(per)],
                            from_hour=first_hour, to_hour=first_hour + hours)
        sellers.append(s)
    made = op.create_account(f"{sku}-desk", ["buyer"])
    fund(op, made.account_id)
    desk = Client(target, made.token)
    for w in wants:
        price = f"{w.price / 1_000_000:.2f}"
        if w.side == "sell":
            sellers[w.cluster].place_order(pids[w.start], "sell", price, w.quantity,
                                           cluster_id=f"c{w.cluster}")
        else:
            desk.place_order(pids[w.start], "buy", price, w.quantity, gang=w.gang,
                             hours=w.hours,
                             auction=by_auction and (w.hours > 1 or hourly_by_auction))
    report = None
    if by_auction:
        r = op.run_auction(first_hour, first_hour + hours, time_limit=time_limit)
        report = {"auction_id": r.auction_id, "gap": r.gap, "solve_seconds": r.solve_seconds,
                  "filled": len(r.filled_orders), "dropped": len(r.dropped_orders),
                  "paradoxically_rejected": len(r.paradoxically_rejected)}
    mine = desk.list_orders() + [o for s in sellers for o in s.list_orders()]
    blocks = [o for o in mine if o.side == "buy" and o.hours > 1]
    return Outcome(_welfare(mine), sum(1 for o in blocks if o.filled), len(blocks), report)


def run(target: str, operator_token: str, *, hours: int = 24, seed: int = 7, runs: int = 3,
        time_limit: float = 10.0) -> list[dict[str, Any]]:
    """``runs`` seeded markets from ``seed`` on, each played first come and by auction
    through the server at ``target``: one row per market."""
    op = Client(target, operator_token)
    first_hour = int(time.time()) // 3600 + 48
    rows = []
    for k in range(runs):
        s = seed + k
        per, wants = market(s, hours)
        best = optimum(per, wants, hours)
        cont = _play(op, target, f"SIMC{s}", per, wants, hours, first_hour, False,
                     time_limit)
        auct = _play(op, target, f"SIMA{s}", per, wants, hours, first_hour, True,
                     time_limit)
        mixed = _play(op, target, f"SIMM{s}", per, wants, hours, first_hour, True,
                      time_limit, hourly_by_auction=False)
        rows.append({
            "seed": s, "nodes": 4 * per, "orders": len(wants), "optimum_usd": best / 1e6,
            "first_come": cont.welfare / best if best else 1.0,
            "auction": auct.welfare / best if best else 1.0,
            "auction_hourly_continuous": mixed.welfare / best if best else 1.0,
            "blocks": cont.blocks, "blocks_filled_first_come": cont.filled_blocks,
            "blocks_filled_auction": auct.filled_blocks, **(auct.auction or {})})
    return rows
