"""``spotex simulate --hours N``: a market over N consecutive delivery hours in which
training-run buyers need the same whole nodes for many hours, beside hourly buyers and
sellers who offer hour by hour, all through the real SDK against a running server.

* Sellers: a cluster each over all N hours and a private cost per GPU-hour. Each turn
  one offers a random size at a random price from its cost up over a random stretch of
  hours, in one PlaceAskRange (one ask per hour), or withdraws one of its ranges
  (CancelAll by range id) to quote again.
* Hourly buyers (zero-intelligence-constrained, as in the one-hour simulation): some
  GPUs of one hour at a private value, bidding a random price up to it. Some arrive
  late: they act only in the second half of the steps.
* Training-run buyers: 1 to 3 whole nodes (gangs of 8) for D consecutive hours (4 to
  72, at most N), a third of them with a window of up to twice D to start in, and half
  of those wanting one or two nodes needing them in one rack (`locality="rack"`; a
  seller's nodes sit two to a rack, each its own NVLink domain). Each bids
  a resting block (GTC) at a random price up to its value per GPU-hour and, now and
  then, cancels it and bids again, never above its value. A run whose block filled is
  done, but some end early: when it first sees its block filled, a run decides (with
  the chance `resell`) that it will, and resells its last quarter of hours (the same
  GPUs, Resell) at 70% of what it paid for them on average, which hourly buyers may
  take.

Scored: the share of training-run demand (GPU-hours) served and of hourly demand,
surplus realised (value minus price for buyers, price minus cost for sellers, fill by
fill), price and utilisation per hour (a resold GPU-hour counted once), resales, and
checks that must hold: no fill at a loss (a block's whole cost within its value), every
block on the same GPUs in every hour (the GPUs it resold included), no GPU held by two
accounts in one hour.
Prices are integer micro-dollars throughout.
"""

from __future__ import annotations

import datetime as dt
import random
import time
from dataclasses import dataclass, field
from typing import Any

from spotex.client import Client, Order, RpcError
from spotex.tools.funding import fund
from spotex.tools.simulate import GPUS_PER_NODE, MICROS, TICK, _dollars, _png, _tick


@dataclass(frozen=True)
class RunsConfig:
    seed: int = 7
    steps: int = 3_000
    hours: int = 24
    sellers: int = 6
    nodes_per_seller: int = 4  # 32 GPUs an hour each
    hourly_buyers: int = 16
    late_hourly_buyers: int = 8  # hourly buyers acting only in the second half
    training_buyers: int = 16
    value_range: tuple[int, int] = (1_500_000, 4_000_000)  # buyers' values, $/GPU-h
    cost_range: tuple[int, int] = (1_000_000, 3_000_000)  # sellers' costs
    requote: float = 0.3  # chance an agent withdraws a quote before acting
    resell: float = 0.3  # chance a filled training run ends early
    resale_price_pct: int = 70  # it resells at this share of what it paid


@dataclass
class Trader:
    name: str
    kind: str  # "seller" | "hourly" | "training"
    unit: int  # value or cost, micro-dollars per GPU-hour
    client: Client
    cluster: str = ""
    hour: int = 0  # hourly buyers: the index of their hour
    want: int = 0  # GPUs (in every hour, for a training run)
    from_step: int = 0  # the first step it acts in
    run_hours: int = 0  # training runs: D
    window: int = 0  # training runs: hours it may start in, from `start` (0: none)
    locality: str = ""  # training runs: all nodes in one domain at this level ("": any)
    start: int = 0  # training runs: index of the first hour of its span
    ranges: list[int] = field(default_factory=list)  # sellers: range ids placed
    decided: bool = False  # training runs: saw their block filled and chose
    resold: bool = False  # and resold the end of it
    orders: list[Order] = field(default_factory=list)  # as last seen

    def refresh(self) -> None:
        self.orders = self.client.list_orders()


@dataclass
class RunsResult:
    config: RunsConfig
    products: list[str]
    # (trade id, hour index, price, quantity, block?), each trade once
    trades: list[tuple[int, int, int, int, bool]]
    capacity_per_hour: int
    block_demand: int  # GPU-hours the training runs wanted
    block_served: int  # GPU-hours of the blocks that filled
    blocks_filled: int
    training_runs: int
    hourly_fill: tuple[int, int]  # (GPUs bought, wanted) by hourly buyers
    realised_surplus: int
    loss_fills: int  # hourly fills against a value or cost: must be 0
    loss_blocks: int  # blocks that cost more than their value: must be 0
    split_blocks: int  # blocks not on the same GPUs every hour: must be 0
    rack_runs: tuple[int, int]  # (filled, placed) training runs that needed one rack
    locality_violations: int  # filled rack runs not in one rack: must be 0
    resales: tuple[int, int, int]  # (runs that resold, GPU-hours offered, GPU-hours sold)
    resale_fees: int  # paid by the resellers
    held_twice: int  # GPU-hours held by two accounts: must be 0
    refused: dict[str, int]

    def per_hour(self) -> list[dict[str, Any]]:
        rows = []
        for h, pid in enumerate(self.products):
            mine = [(p, q, b) for _, i, p, q, b in self.trades if i == h]
            volume = sum(q for _, q, _ in mine)
            rows.append({
                "product_id": pid,
                "volume": volume,
                "block_volume": sum(q for _, q, b in mine if b),
                "utilisation": round(volume / self.capacity_per_hour, 4),
                "mean_price_usd": round(sum(p * q for p, q, _ in mine) / volume / MICROS, 4)
                if volume else None,
                "low_usd": min(p for p, _, _ in mine) / MICROS if mine else None,
                "high_usd": max(p for p, _, _ in mine) / MICROS if mine else None,
            })
        return rows

    def summary(self) -> dict[str, Any]:
        volume = sum(q for *_, q, _ in self.trades)
        capacity = self.capacity_per_hour * len(self.products)
        return {
            "hours": len(self.products),
            "training_runs_filled": f"{self.blocks_filled} of {self.training_runs}",
            "block_demand_served": round(self.block_served / self.block_demand, 4)
            if self.block_demand else 0.0,
            "block_gpu_hours": f"{self.block_served} of {self.block_demand}",
            "hourly_buyers_filled": f"{self.hourly_fill[0]} of {self.hourly_fill[1]} GPUs",
            "volume_gpu_hours": volume,
            "capacity_gpu_hours": capacity,
            "utilisation": round(volume / capacity, 4) if capacity else 0.0,
            "trades": len(self.trades),
            "realised_surplus_usd": self.realised_surplus / MICROS,
            "loss_making_fills": self.loss_fills,
            "blocks_over_their_value": self.loss_blocks,
            "blocks_not_on_the_same_gpus": self.split_blocks,
            "one_rack_runs_filled": f"{self.rack_runs[0]} of {self.rack_runs[1]}",
            "one_rack_runs_outside_one_rack": self.locality_violations,
            "runs_that_resold": self.resales[0],
            "resold_gpu_hours": f"{self.resales[2]} of {self.resales[1]} offered",
            "resale_fees_usd": self.resale_fees / MICROS,
            "gpu_hours_held_twice": self.held_twice,
            "refused_orders": ", ".join(f"{k} {v}" for k, v in sorted(self.refused.items()))
            or "none",
        }


def _list_hours(op: Client, n: int) -> list[str]:
    """N consecutive hours of H100-SXM/us-east no one has listed yet, from three hours
    out; the product ids in hour order."""
    first = int(time.time()) // 3600 + 3
    for start in range(first, first + 14 * 24, n):
        made = op.create_products(skus=["H100-SXM"], regions=["us-east"], from_hour=start,
                                  to_hour=start + n, tick=_dollars(TICK), lot=1,
                                  gate_closure_lead=dt.timedelta(hours=1))
        if not any(p.listed_before for p in made):
            return [p.product_id for p in made]
    raise RuntimeError(f"no {n} free consecutive H100-SXM/us-east hours in the coming two "
                       "weeks; simulate against a server of its own")


def run(target: str, operator_token: str, cfg: RunsConfig) -> RunsResult:
    if not 4 <= cfg.hours <= 168:
        raise ValueError("a multi-hour simulation covers 4 to 168 hours")
    rng = random.Random(cfg.seed)
    op = Client(target, operator_token)
    products = _list_hours(op, cfg.hours)
    first_hour = _hour_of(products[0])
    tag = f"runs{cfg.seed}-{rng.randrange(1 << 30):x}"

    def account(name: str, role: str) -> Client:
        made = op.create_account(f"{tag}-{name}", [role])
        if role == "buyer":
            fund(op, made.account_id)
        return Client(target, made.token)

    traders: list[Trader] = []
    for i in range(cfg.sellers):
        t = Trader(f"seller-{i}", "seller", _tick(rng.randint(*cfg.cost_range)),
                   account(f"seller-{i}", "seller"), cluster=f"{tag}-c{i}")
        t.client.register_capacity(
            t.cluster, sku="H100-SXM", region="us-east",
            nodes=[(f"n{k}", GPUS_PER_NODE, "b0", f"r{k // 2}", f"nvl{k}")
                   for k in range(cfg.nodes_per_seller)],
            from_hour=first_hour, to_hour=first_hour + cfg.hours)
        traders.append(t)
    for i in range(cfg.hourly_buyers + cfg.late_hourly_buyers):
        traders.append(Trader(f"hourly-{i}", "hourly", _tick(rng.randint(*cfg.value_range)),
                              account(f"hourly-{i}", "buyer"), hour=rng.randrange(cfg.hours),
                              want=rng.randint(1, 16),
                              from_step=cfg.steps // 2 if i >= cfg.hourly_buyers else 0))
    for i in range(cfg.training_buyers):
        d = rng.randint(4, min(72, cfg.hours))
        window = min(cfg.hours, rng.randint(d + 1, 2 * d)) if rng.random() < 1 / 3 else 0
        span = window or d
        nodes = rng.randint(1, 3)
        rack = "rack" if nodes <= 2 and rng.random() < 0.5 else ""
        traders.append(Trader(f"training-{i}", "training",
                              _tick(rng.randint(*cfg.value_range)),
                              account(f"training-{i}", "buyer"),
                              want=GPUS_PER_NODE * nodes, run_hours=d,
                              window=window, start=rng.randrange(cfg.hours - span + 1),
                              locality=rack))

    refused: dict[str, int] = {}
    for step in range(cfg.steps):
        t = rng.choice(traders)
        if t.from_step > step:
            continue
        try:
            _act(t, products, rng, cfg)
        except RpcError as err:
            refused[err.reason] = refused.get(err.reason, 0) + 1
    return _score(cfg, traders, products, refused)


def _hour_of(product_id: str) -> int:
    d = dt.datetime.strptime(product_id.rsplit("/", 1)[1], "%Y-%m-%dT%H")
    return int(d.replace(tzinfo=dt.UTC).timestamp()) // 3600


def _act(t: Trader, products: list[str], rng: random.Random, cfg: RunsConfig) -> None:
    if t.kind == "seller":
        if t.ranges and rng.random() < cfg.requote:
            t.client.cancel_all(range_id=t.ranges.pop(rng.randrange(len(t.ranges))))
            return
        start = rng.randrange(cfg.hours)
        hours = rng.randint(1, cfg.hours - start)
        lowest = -(-t.unit // TICK) * TICK
        price = _tick(rng.randint(lowest, cfg.value_range[1] + MICROS // 2))
        placed = t.client.place_ask_range(products[start], _dollars(max(price, lowest)),
                                          rng.randint(1, 16), hours=hours,
                                          cluster_id=t.cluster)
        ids = {o.range_id for o in placed if isinstance(o, Order)}
        t.ranges += sorted(ids - {0})
        return
    t.refresh()
    resting = [o for o in t.orders if o.state in ("open", "partially_filled")]
    if t.kind == "hourly":
        if resting and rng.random() < cfg.requote:
            t.client.cancel_order(resting[0].order_id)
            resting = resting[1:]
        left = t.want - sum(o.filled for o in t.orders) - sum(o.remaining for o in resting)
        if left > 0:
            price = _tick(rng.randint(cfg.cost_range[0] // 2, t.unit))
            t.client.place_order(products[t.hour], "buy", _dollars(price),
                                 rng.randint(1, left))
        return
    # a training run: one resting block at a time, until one fills
    block = next((o for o in t.orders if o.side == "buy" and o.state == "filled"), None)
    if block is not None:
        if not t.decided:
            t.decided = True
            t.resold = rng.random() < cfg.resell
            if t.resold:
                # it ends early: its last quarter of hours, the same GPUs, at cost
                bought = sorted({_hour_of(f.product_id) for f in block.fills})
                paid = sum(int(f.price * MICROS) * f.quantity for f in block.fills) // sum(
                    f.quantity for f in block.fills)
                price = _tick(paid * cfg.resale_price_pct // 100)
                t.client.resell(block.order_id, _dollars(max(price, TICK)),
                                from_hour=bought[-max(1, len(bought) // 4)])
        return
    if resting:
        if rng.random() >= cfg.requote:
            return
        t.client.cancel_order(resting[0].order_id)
        floor = int(resting[0].price * MICROS)  # bids again, no lower
    else:
        floor = cfg.cost_range[0] // 2
    price = _tick(rng.randint(min(floor, t.unit), t.unit))
    t.client.place_order(products[t.start], "buy", _dollars(price), t.want,
                         gang=GPUS_PER_NODE, hours=t.run_hours, window_hours=t.window,
                         tif="gtc", locality=t.locality)


def _score(cfg: RunsConfig, traders: list[Trader], products: list[str],
           refused: dict[str, int]) -> RunsResult:
    index = {pid: i for i, pid in enumerate(products)}
    for t in traders:
        t.refresh()
    trades: dict[int, tuple[int, int, int, int, bool]] = {}
    surplus = losses = loss_blocks = split = filled_blocks = served = 0
    rack_filled = outside = fees = 0
    offered = resold = 0
    for t in traders:
        for o in t.orders:
            for f in o.fills:
                price = int(f.price * MICROS)
                gain = (price - t.unit) if o.side == "sell" else (t.unit - price)
                surplus += gain * f.quantity - int(f.fee * MICROS)
                if t.kind != "training":
                    losses += gain < 0
                if o.side == "buy":
                    hour = index[f.product_id or o.product_id]
                    trades[f.trade_id] = (f.trade_id, hour, price, f.quantity,
                                          t.kind == "training")
            if o.resell_trade_id:
                offered += o.quantity
                resold += o.filled
                fees += int(o.fees * MICROS)
        if t.kind != "training":
            continue
        for o in t.orders:
            if o.side != "buy" or o.state != "filled":
                continue
            filled_blocks += 1
            served += t.want * t.run_hours
            cost = sum(int(f.price * MICROS) * f.quantity for f in o.fills)
            loss_blocks += cost > t.unit * t.want * t.run_hours
            mine = {f.trade_id for f in o.fills}
            by_hour: dict[int, set[tuple[str, str, int]]] = {}
            racks: set[tuple[str, str, str]] = set()
            for a in t.client.list_allocations():
                # what it holds, and what it resold of it
                if a.trade_id in mine or a.parent_trade_id in mine:
                    by_hour.setdefault(a.hour, set()).update(
                        (a.cluster_id, n, g) for n, gpus in a.slots for g in gpus)
                    racks |= {(a.cluster_id, block, rack) for _, block, rack, _ in a.places}
            held = list(by_hour.values())
            split += len(held) != t.run_hours or any(h != held[0] for h in held)
            if t.locality:
                rack_filled += 1
                outside += len(racks) != 1
    hourly = [t for t in traders if t.kind == "hourly"]
    training = [t for t in traders if t.kind == "training"]
    # every seller's schedule: no GPU of an hour held by two accounts, resales included;
    # a resold GPU-hour traded twice but is one GPU-hour of capacity
    holders: dict[tuple[str, int, str, int], int] = {}
    for t in traders:
        if t.kind == "seller":
            for a in t.client.list_allocations():
                for n, gpus in a.slots:
                    for g in gpus:
                        key = (a.cluster_id, a.hour, n, g)
                        holders[key] = holders.get(key, 0) + 1
                if a.parent_trade_id:
                    trades.pop(a.trade_id, None)
    return RunsResult(
        config=cfg, products=products, trades=sorted(trades.values()),
        capacity_per_hour=cfg.sellers * cfg.nodes_per_seller * GPUS_PER_NODE,
        block_demand=sum(t.want * t.run_hours for t in training), block_served=served,
        blocks_filled=filled_blocks, training_runs=len(training),
        hourly_fill=(sum(o.filled for t in hourly for o in t.orders),
                     sum(t.want for t in hourly)),
        realised_surplus=surplus, loss_fills=losses, loss_blocks=loss_blocks,
        split_blocks=split, rack_runs=(rack_filled, sum(1 for t in training if t.locality)),
        locality_violations=outside, resales=(sum(t.resold for t in training), offered, resold),
        resale_fees=fees, held_twice=sum(n - 1 for n in holders.values()), refused=refused)


def chart(r: RunsResult) -> bytes:
    """A PNG: mean trade price per hour with its low-high band, over utilisation per hour
    split into training-run blocks and hourly orders."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = r.per_hour()
    xs = list(range(len(rows)))
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True,
                                      gridspec_kw={"height_ratios": [3, 2]})
    mean = [row["mean_price_usd"] for row in rows]
    low = [row["low_usd"] for row in rows]
    high = [row["high_usd"] for row in rows]
    top.plot(xs, [m if m is not None else float("nan") for m in mean], "o-", ms=3,
             label="mean trade price")
    top.fill_between(xs, [x if x is not None else float("nan") for x in low],
                     [x if x is not None else float("nan") for x in high], alpha=0.2,
                     label="lowest to highest")
    top.set(ylabel="$ per GPU-hour", title=(
        f"{len(rows)} hours: training runs {r.blocks_filled} of {r.training_runs} filled, "
        f"{r.block_served / r.block_demand:.0%} of their GPU-hours"
        if r.block_demand else f"{len(rows)} hours"))
    top.legend()
    cap = r.capacity_per_hour
    blocks = [row["block_volume"] / cap for row in rows]
    rest = [(row["volume"] - row["block_volume"]) / cap for row in rows]
    bottom.bar(xs, blocks, label="training-run blocks")
    bottom.bar(xs, rest, bottom=blocks, label="hourly orders")
    bottom.set(xlabel="delivery hour (from the first)", ylabel="utilisation", ylim=(0, 1))
    bottom.legend()
    fig.tight_layout()
    png = _png(fig)
    plt.close("all")
    return png
