"""The market simulator behind ``spotex simulate``: agents trade one delivery hour through
the real SDK against a running server, and the run is scored the way experimental
economics scores a market.

* Zero-intelligence-constrained buyers (Gode and Sunder): each wants some GPUs at a
  private value per GPU-hour and bids a random price no higher than that value. Some
  need whole 8-GPU nodes (a gang of 8); every buyer has a budget it never commits past.
* Zero-intelligence-constrained sellers: a cluster each, a private cost per GPU-hour,
  asks at a random price no lower than that cost.
* A large seller, a hyperscaler with surplus: a low cost and a big cluster whose
  capacity it releases in tranches as the run goes on.

Agents re-quote: now and then one cancels its oldest resting order. No agent can trade
at a loss, so all surplus is gains from trade. Allocative efficiency is the surplus
realised (buyers' value minus price, plus price minus sellers' cost, over every fill)
over the most the schedules allow (the area between demand and supply up to where they
cross). Prices are integer micro-dollars throughout.
"""

from __future__ import annotations

import datetime as dt
import io
import random
import time
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from spotex.client import Client, Order, RpcError
from spotex.tools.funding import fund

MICROS = 1_000_000
TICK = 10_000  # $0.01
GPUS_PER_NODE = 8


@dataclass(frozen=True)
class SimConfig:
    seed: int = 7
    steps: int = 3_000
    buyers: int = 24
    sellers: int = 8
    gang_share: float = 0.25  # buyers that need whole nodes
    nodes_per_seller: int = 4  # 32 GPUs each
    large_seller_nodes: int = 12  # 96 GPUs, released in tranches
    tranches: int = 4
    value_range: tuple[int, int] = (1_500_000, 4_000_000)  # buyers' values, $/GPU-h
    cost_range: tuple[int, int] = (1_000_000, 3_500_000)  # sellers' costs
    large_seller_cost: int = 1_200_000
    requote: float = 0.35  # chance an agent cancels its oldest resting order first


@dataclass
class Agent:
    name: str
    side: str  # "buy" | "sell"
    unit: int  # value (buyers) or cost (sellers), micro-dollars per GPU-hour
    want: int  # GPUs to buy, or GPUs it may sell so far
    client: Client
    gang: int = 1
    budget: int = 0  # buyers: micro-dollars they may commit in all
    cluster: str = ""
    orders: dict[int, Order] = field(default_factory=dict)  # its orders, as last seen

    def refresh(self, product: str) -> None:
        """What happened to its orders since it last looked (others trade against them)."""
        self.orders = {o.order_id: o for o in self.client.list_orders(product)}

    @property
    def resting(self) -> list[Order]:
        return sorted((o for o in self.orders.values()
                       if o.state in ("open", "partially_filled")), key=lambda o: o.order_id)

    @property
    def filled(self) -> int:
        return sum(o.filled for o in self.orders.values())

    @property
    def spent(self) -> int:
        """Micro-dollars paid (buyers) or received (sellers) so far."""
        return sum(int(f.price * MICROS) * f.quantity
                   for o in self.orders.values() for f in o.fills)

    def fills(self) -> list[tuple[int, int]]:
        return [(int(f.price * MICROS), f.quantity)
                for o in self.orders.values() for f in o.fills]


@dataclass
class SimResult:
    config: SimConfig
    product_id: str  # the delivery hour the agents traded
    trades: list[tuple[int, int, int]]  # (trade id, price, quantity), in trade order
    realised_surplus: int
    max_surplus: int
    equilibrium: tuple[int, int, int]  # (quantity, lowest price, highest price)
    volume: int
    capacity: int
    demand_units: list[int]  # every wanted GPU's value, highest first
    supply_units: list[int]  # every offered GPU's cost, lowest first
    refused: dict[str, int]
    gang_fill: tuple[int, int]  # (GPUs bought, wanted) by buyers of whole nodes
    single_fill: tuple[int, int]  # the same for buyers of single GPUs
    loss_trades: int  # fills against an agent's value or cost: must be 0
    budget_breaches: int  # buyers who spent more than their budget: must be 0

    @property
    def efficiency(self) -> float:
        return self.realised_surplus / self.max_surplus if self.max_surplus else 0.0

    @property
    def utilisation(self) -> float:
        return self.volume / self.capacity if self.capacity else 0.0

    def summary(self) -> dict[str, Any]:
        q, lo, hi = self.equilibrium
        prices = [p for _, p, _ in self.trades]
        return {
            "allocative_efficiency": round(self.efficiency, 4),
            "realised_surplus_usd": self.realised_surplus / MICROS,
            "max_surplus_usd": self.max_surplus / MICROS,
            "volume_gpu_hours": self.volume,
            "trades": len(self.trades),
            "competitive_quantity": q,
            "competitive_price_usd": [lo / MICROS, hi / MICROS],
            "first_price_usd": prices[0] / MICROS if prices else None,
            "last_price_usd": prices[-1] / MICROS if prices else None,
            "mean_price_usd": round(sum(prices) / len(prices) / MICROS, 4) if prices else None,
            "capacity_gpu_hours": self.capacity,
            "utilisation": round(self.utilisation, 4),
            "gang_buyers_filled": f"{self.gang_fill[0]} of {self.gang_fill[1]} GPUs",
            "single_gpu_buyers_filled": f"{self.single_fill[0]} of {self.single_fill[1]} GPUs",
            "refused_orders": self.refused,
            "loss_making_fills": self.loss_trades,
            "budget_breaches": self.budget_breaches,
        }


def competitive(demand: list[int], supply: list[int]) -> tuple[int, int, int, int]:
    """The most surplus the schedules allow and where they cross: ``(surplus, quantity,
    lowest, highest clearing price)``. ``demand`` holds unit values highest first,
    ``supply`` unit costs lowest first."""
    q = 0
    surplus = 0
    while q < min(len(demand), len(supply)) and demand[q] >= supply[q]:
        surplus += demand[q] - supply[q]
        q += 1
    if q == 0:
        return 0, 0, 0, 0
    # any price between the last trading pair's bounds and the first excluded pair's
    lo = max(supply[q - 1], demand[q] if q < len(demand) else 0)
    hi = min(demand[q - 1], supply[q] if q < len(supply) else demand[q - 1])
    return surplus, q, min(lo, hi), max(lo, hi)


def _dollars(micros: int) -> Decimal:
    return Decimal(micros) / MICROS


def _tick(micros: int) -> int:
    return micros // TICK * TICK


def run(target: str, operator_token: str, cfg: SimConfig) -> SimResult:
    """Creates a product an hour ahead, the agents and their clusters, and trades."""
    rng = random.Random(cfg.seed)
    op = Client(target, operator_token)
    # a product of its own: the first delivery hour from three hours out that the server
    # does not list yet (on a shared server, earlier runs hold the nearer ones)
    first = int(time.time()) // 3600 + 3
    for hour in range(first, first + 7 * 24):
        [made] = op.create_products(skus=["H100-SXM"], regions=["us-east"], from_hour=hour,
                                    to_hour=hour + 1, tick=_dollars(TICK), lot=1,
                                    gate_closure_lead=dt.timedelta(hours=1))
        if not made.listed_before:
            product = made.product_id
            break
    else:
        raise RuntimeError("every H100-SXM/us-east hour of the coming week is listed already; "
                           "simulate against a server of its own")
    tag = f"sim{cfg.seed}-{rng.randrange(1 << 30):x}"  # names unique on a shared server

    agents: list[Agent] = []
    for i in range(cfg.buyers):
        gang = GPUS_PER_NODE if rng.random() < cfg.gang_share else 1
        want = gang * rng.randint(1, 2) if gang > 1 else rng.randint(1, 12)
        value = _tick(rng.randint(*cfg.value_range))
        # budgets bind for some: enough for 60% to 150% of the demand at the value
        budget = int(value * want * rng.uniform(0.6, 1.5))
        acct = op.create_account(f"{tag}-buyer-{i}", ["buyer"])
        fund(op, acct.account_id)
        agents.append(Agent(f"buyer-{i}", "buy", value, want, Client(target, acct.token),
                            gang=gang, budget=budget))
    sellers: list[Agent] = []
    for i in range(cfg.sellers + 1):
        is_large = i == cfg.sellers
        nodes = cfg.large_seller_nodes if is_large else cfg.nodes_per_seller
        acct = op.create_account(f"{tag}-seller-{i}", ["seller"])
        c = Client(target, acct.token)
        cluster = f"{tag}-c{i}"
        c.register_capacity(cluster, sku="H100-SXM", region="us-east",
                            nodes=[(f"n{k}", GPUS_PER_NODE) for k in range(nodes)],
                            from_hour=hour, to_hour=hour + 1)
        cost = cfg.large_seller_cost if is_large else _tick(rng.randint(*cfg.cost_range))
        capacity = nodes * GPUS_PER_NODE
        # the large seller starts with its first tranche; the rest come later
        sellers.append(Agent("hyperscaler" if is_large else f"seller-{i}", "sell", cost,
                             capacity // cfg.tranches if is_large else capacity, c,
                             cluster=cluster))
    agents += sellers
    large = sellers[-1]
    large_capacity = cfg.large_seller_nodes * GPUS_PER_NODE

    refused: dict[str, int] = {}
    for step in range(cfg.steps):
        if large.want < large_capacity and step and step % (cfg.steps // cfg.tranches) == 0:
            large.want = min(large_capacity, large.want + large_capacity // cfg.tranches)
        a = rng.choice(agents)
        try:
            _act(a, product, rng, cfg)
        except RpcError as err:
            refused[err.reason] = refused.get(err.reason, 0) + 1

    return _score(cfg, agents, product, refused, op)


def _act(a: Agent, product: str, rng: random.Random, cfg: SimConfig) -> None:
    a.refresh(product)
    resting = a.resting
    if resting and rng.random() < cfg.requote:
        a.client.cancel_order(resting[0].order_id)  # re-quote: the oldest goes
        resting = resting[1:]
    left = a.want - a.filled - sum(o.remaining for o in resting)
    if a.side == "buy":
        lots = left // a.gang
        if lots <= 0:
            return
        # ZI-C: a random price up to the value, never above it
        price = _tick(rng.randint(cfg.cost_range[0] // 2, a.unit))
        held = sum(int(o.price * MICROS) * o.remaining for o in resting)
        affordable = (a.budget - a.spent - held) // price // a.gang
        lots = min(rng.randint(1, lots), affordable)
        if lots > 0:
            a.client.place_order(product, "buy", _dollars(price), lots * a.gang, gang=a.gang)
    elif left > 0:
        # ZI-C: a random price from the cost up, never below it
        lowest = -(-a.unit // TICK) * TICK
        price = _tick(rng.randint(lowest, cfg.value_range[1] + MICROS // 2))
        a.client.place_order(product, "sell", _dollars(max(price, lowest)),
                             rng.randint(1, min(left, 16)), cluster_id=a.cluster)


def _score(cfg: SimConfig, agents: list[Agent], product: str, refused: dict[str, int],
           op: Client) -> SimResult:
    for a in agents:
        a.refresh(product)
    buyers = [a for a in agents if a.side == "buy"]
    sellers = [a for a in agents if a.side == "sell"]
    surplus = 0
    losses = 0
    for a in agents:
        for price, qty in a.fills():
            gain = (a.unit - price) if a.side == "buy" else (price - a.unit)
            losses += gain < 0
            surplus += gain * qty
    demand = sorted((a.unit for a in buyers for _ in range(a.want)), reverse=True)
    # by the end every tranche is out: a seller's ``want`` is its whole capacity
    supply = sorted(a.unit for a in sellers for _ in range(a.want))
    best, q, lo, hi = competitive(demand, supply)
    # the book's trade ids, prices and sizes, from the buyers' side (each trade once)
    trades = sorted({(f.trade_id, int(f.price * MICROS), f.quantity)
                     for a in buyers for o in a.orders.values() for f in o.fills})
    return SimResult(
        config=cfg, product_id=product, trades=trades, realised_surplus=surplus, max_surplus=best,
        equilibrium=(q, lo, hi), volume=sum(qty for _, _, qty in trades),
        capacity=sum(a.want for a in sellers), demand_units=demand,
        supply_units=supply, refused=refused, loss_trades=losses,
        gang_fill=(sum(a.filled for a in buyers if a.gang > 1),
                   sum(a.want for a in buyers if a.gang > 1)),
        single_fill=(sum(a.filled for a in buyers if a.gang == 1),
                     sum(a.want for a in buyers if a.gang == 1)),
        budget_breaches=sum(a.spent > a.budget for a in buyers))


def charts(r: SimResult) -> tuple[bytes, bytes]:
    """PNGs: the price path against the competitive price band, and the supply and demand
    schedules with the competitive quantity and the volume traded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    q, lo, hi = r.equilibrium
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.plot(range(1, len(r.trades) + 1), [p / MICROS for _, p, _ in r.trades], ".-",
            lw=0.8, ms=3, label="trade price")
    if hi - lo >= TICK:
        ax.axhspan(lo / MICROS, hi / MICROS, color="tab:green", alpha=0.2,
                   label="competitive price")
    else:
        ax.axhline(lo / MICROS, color="tab:green", ls="--", label="competitive price")
    ax.set(xlabel="trade", ylabel="$ per GPU-hour",
           title=f"price path: {len(r.trades)} trades, efficiency {r.efficiency:.1%}")
    ax.legend()
    fig.tight_layout()
    price = _png(fig)

    fig, ax = plt.subplots(figsize=(8, 4.5))
    d, s = r.demand_units, r.supply_units
    ax.step(range(len(d) + 1), [d[0] / MICROS, *(v / MICROS for v in d)], where="pre",
            label="demand (buyers' values)")
    ax.step(range(len(s) + 1), [s[0] / MICROS, *(c / MICROS for c in s)], where="pre",
            label="supply (sellers' costs)")
    ax.axvline(q, color="tab:green", ls="--", lw=1, label=f"competitive quantity {q}")
    ax.axvline(r.volume, color="tab:red", ls=":", lw=1, label=f"traded {r.volume}")
    ax.set(xlabel="GPU-hours", ylabel="$ per GPU-hour", title="supply and demand")
    ax.legend()
    fig.tight_layout()
    sd = _png(fig)
    plt.close("all")
    return price, sd


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()
