"""A small, obviously-correct reference model of the spotex engine, in pure Python.

It exists to be compared against the Rust core (tests drive both with the same commands
and require the same events, books and allocations) and as the baseline in benchmarks.
It favours plainness over speed: books are re-sorted lists, the amount an ask offers is
recomputed from the resting asks, placement scans every node, and fill-or-kill is decided
by trying the order on a deep copy of the whole market.

Its API mirrors ``spotex.Engine`` method for method; rejections raise ``Rejected`` with
the same reason codes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

MICROS_PER_HOUR = 3_600_000_000
MAX_PRICE = 1_000_000_000_000
MAX_QTY = 10_000_000
MAX_GPUS_PER_NODE = 64
MAX_BLOCK_HOURS = 168
MAX_WINDOW_HOURS = 336
# resting blocks examined per arriving ask: the best of its hour, then more in turn
RETRY_TOP = 16
RETRY_TURN = 16
# the levels of a cluster's tree, tightest first
LEVELS: list[str | None] = ["node", "nvlink_domain", "rack", "block", "cluster"]


class Rejected(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
        # events that time produced before the command was refused
        self.events: list[RefEvent] = []


@dataclass
class RefAllocation:
    trade_id: int
    product: str
    cluster: str
    hour: int
    buyer: int
    seller: int
    buy_order: int
    sell_order: int
    price: int
    qty: int
    slots: list[tuple[str, list[int]]]


@dataclass
class RefEvent:
    kind: str
    product: str | None = None
    order_id: int | None = None
    account: int | None = None
    side: str | None = None
    price: int | None = None
    qty: int | None = None
    reason: str | None = None
    trade_id: int | None = None
    maker_order: int | None = None
    maker_account: int | None = None
    priority_kept: bool | None = None
    state: str | None = None
    cluster: str | None = None
    allocation: RefAllocation | None = None


@dataclass
class RefOrder:
    order_id: int
    account: int
    product: str
    side: str
    price: int
    remaining: int
    filled: int
    tif: str
    expire_at: int | None
    post_only: bool
    stp: str
    gang: int
    cluster: str | None
    seq: int = 0  # time priority: smaller is earlier
    clip: int = 0  # an iceberg ask shows at most this much (0: all)
    hidden: int = 0  # an iceberg's open quantity not shown yet


@dataclass
class RefBlock:
    """A block bid resting whole until it can fill."""
    order_id: int
    account: int
    product: str  # its span's first hour
    hours: int
    price: int
    qty: int
    gang: int
    tif: str
    expire_at: int | None
    products: list[str]  # its span, hour by hour
    level: str | None = None  # placement: all GPUs in one domain at this level
    preferred: bool = False
    near: int | None = None  # next to this trade's allocation


@dataclass
class BlockPlan:
    cost: int
    cluster: RefCluster
    legs: list[list[tuple[RefOrder, int]]]  # per hour: (ask, quantity taken)
    gpus: list[tuple[int, int]]  # (node, GPU index), in the order they are handed out
    placed: tuple[str, str] | None = None  # with placement terms: (level, domain)


@dataclass
class RefProduct:
    id: str
    sku: str
    region: str
    hour: int
    tick: int
    lot: int
    open_at: int
    close_at: int
    handle: int
    state: str = "open"


@dataclass
class RefCluster:
    id: str
    seller: int
    sku: str
    region: str
    nodes: list[tuple[str, int]]
    from_hour: int
    to_hour: int
    # (hour) -> per node: free GPU indices, sold GPU indices
    free: dict[int, list[set[int]]] = field(default_factory=dict)
    sold: dict[int, list[set[int]]] = field(default_factory=dict)
    # per node: (block, rack, NVLink domain), as registered ("" where not given)
    places: list[tuple[str, str, str]] = field(default_factory=list)

    def domain(self, n: int, level: str) -> str:
        """The name of the domain holding node `n` at `level`: its labels down to that
        level joined by '/', or the node alone where the label there is missing."""
        node = f"node:{self.nodes[n][0]}"
        if level == "cluster":
            return ""
        if level == "node":
            return node
        depth = {"block": 1, "rack": 2, "nvlink_domain": 3}[level]
        labels = (self.places[n] if self.places else ("", "", ""))[:depth]
        return node if not labels[-1] else "/".join(labels)

    def hour_free(self, hour: int) -> list[set[int]]:
        if hour not in self.free:
            self.free[hour] = [set(range(g)) for _, g in self.nodes]
            self.sold[hour] = [set() for _ in self.nodes]
        return self.free[hour]


def _is_name(s: str, extra: str = "-_.") -> bool:
    return 0 < len(s) <= 64 and all(c.isascii() and (c.isalnum() or c in extra) for c in s)


def _hour_text(hour: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(hour * 3600, dt.UTC).strftime("%Y-%m-%dT%H")


def _hour_of(text: str) -> int | None:
    import datetime as dt

    if len(text) != 13 or text[4] != "-" or text[7] != "-" or text[10] != "T":
        return None
    if not all(text[i].isdigit() for i in (0, 1, 2, 3, 5, 6, 8, 9, 11, 12)):
        return None
    try:
        d = dt.datetime(int(text[0:4]), int(text[5:7]), int(text[8:10]), int(text[11:13]),
                        tzinfo=dt.UTC)
    except ValueError:
        return None
    if d.year < 1970:
        return None
    return int(d.timestamp()) // 3600


class ReferenceEngine:
    def __init__(self) -> None:
        self.now = 0
        self.products: dict[str, RefProduct] = {}
        self.clusters: dict[str, RefCluster] = {}
        self.orders: dict[int, RefOrder] = {}
        self.next_order_id = 1
        self.next_trade_id = 1
        self.next_seq = 1
        self.allocations: list[RefAllocation] = []
        self.events: list[RefEvent] = []
        self.blocks: dict[int, RefBlock] = {}
        self.block_cursor: dict[str, tuple[int, int] | None] = {}

    # ---- plumbing ------------------------------------------------------------------

    def _run(self, ts: int, fn: Any, *args: Any) -> list[RefEvent]:
        self.events = []
        self._advance(ts)
        due = len(self.events)
        try:
            fn(*args)
        except Rejected as err:
            err.events = self.events[:due]
            self.events = []
            raise
        return self.events

    def _emit(self, kind: str, **kw: Any) -> None:
        self.events.append(RefEvent(kind, **kw))

    # ---- time ----------------------------------------------------------------------

    def _advance(self, ts: int) -> None:
        if ts <= self.now:
            return
        self.now = ts
        while True:
            due: list[tuple[int, int, int]] = []
            for o in self.orders.values():
                if o.tif == "gtd" and o.expire_at is not None and o.expire_at <= ts:
                    due.append((o.expire_at, 0, o.order_id))
            for b in self.blocks.values():
                if b.tif == "gtd" and b.expire_at is not None and b.expire_at <= ts:
                    due.append((b.expire_at, 0, b.order_id))
            for p in self.products.values():
                if p.state != "closed" and p.close_at <= ts:
                    due.append((p.close_at, 1, p.handle))
            if not due:
                return
            _, what, key = min(due)
            if what == 0 and key in self.blocks:
                b = self.blocks.pop(key)
                self._emit("expired", order_id=b.order_id, account=b.account, product=b.product,
                           qty=b.qty, reason="good_till_time")
            elif what == 0:
                o = self.orders[key]
                self._remove(o)
                self._emit("expired", order_id=o.order_id, account=o.account, product=o.product,
                           qty=o.remaining + o.hidden, reason="good_till_time")
            else:
                self._close(next(p for p in self.products.values() if p.handle == key))

    def _close(self, p: RefProduct) -> None:
        p.state = "closed"
        self._emit("product_state", product=p.id, state="closed")
        for o in sorted(self._resting(p.id), key=lambda o: o.order_id):
            self._remove(o)
            self._emit("expired", order_id=o.order_id, account=o.account, product=o.product,
                       qty=o.remaining + o.hidden, reason="gate_closure")
        # a resting block spanning the hour can no longer fill whole
        for oid in sorted(b.order_id for b in self.blocks.values() if p.id in b.products):
            b = self.blocks.pop(oid)
            self._emit("expired", order_id=oid, account=b.account, product=b.product,
                       qty=b.qty, reason="gate_closure")

    # ---- books ---------------------------------------------------------------------

    def _resting(self, product: str) -> list[RefOrder]:
        return [o for o in self.orders.values() if o.product == product]

    def _side(self, product: str, side: str) -> list[RefOrder]:
        orders = [o for o in self._resting(product) if o.side == side]
        if side == "buy":
            return sorted(orders, key=lambda o: (-o.price, o.seq))
        return sorted(orders, key=lambda o: (o.price, o.seq))

    def _remove(self, o: RefOrder) -> None:
        del self.orders[o.order_id]

    def _rest(self, o: RefOrder) -> None:
        if o.clip:
            o.remaining, o.hidden = min(o.clip, o.remaining), max(0, o.remaining - o.clip)
        o.seq = self.next_seq
        self.next_seq += 1
        self.orders[o.order_id] = o
        if o.side == "sell":
            assert o.cluster is not None
            self._retry_blocks(o.product)

    def _filled(self, m: RefOrder, qty: int) -> None:
        """A resting order traded `qty`: an iceberg's next clip shows at the back of its
        level once the last is gone; any other order leaves when nothing remains."""
        m.remaining -= qty
        m.filled += qty
        if m.remaining == 0 and m.hidden:
            m.remaining = min(m.clip, m.hidden)
            m.hidden -= m.remaining
            m.seq = self.next_seq
            self.next_seq += 1
        elif m.remaining == 0:
            self._remove(m)

    # ---- capacity ------------------------------------------------------------------

    def _offered(self, cluster: str, hour: int) -> int:
        return sum(o.remaining + o.hidden for o in self.orders.values()
                   if o.cluster == cluster and self.products[o.product].hour == hour)

    def _unreserved(self, cluster: str, hour: int) -> int:
        c = self.clusters[cluster]
        free = c.free[hour] if hour in c.free else [set(range(g)) for _, g in c.nodes]
        return sum(len(f) for f in free) - self._offered(cluster, hour)

    @staticmethod
    def _placeable(free: list[set[int]], gang: int, want: int) -> int:
        gangs = sum(len(f) // gang for f in free)
        return min(gangs, want // gang) * gang

    @staticmethod
    def _allocate(c: RefCluster, hour: int, gang: int, qty: int) -> list[tuple[str, list[int]]]:
        free = c.hour_free(hour)
        taken: dict[int, list[int]] = {}
        for _ in range(qty // gang):
            node = min((i for i, f in enumerate(free) if len(f) >= gang),
                       key=lambda i: (len(free[i]), i))
            gpus = sorted(free[node])[:gang]
            free[node] -= set(gpus)
            c.sold[hour][node] |= set(gpus)
            taken.setdefault(node, []).extend(gpus)
        return [(c.nodes[n][0], sorted(g)) for n, g in sorted(taken.items())]

    def register_capacity(self, account: int, cluster_id: str, *, sku: str, region: str,
                          nodes: list[tuple[str, int]], from_hour: int, to_hour: int,
                          ts: int, places: list[tuple[str, str, str]] | None = None
                          ) -> list[RefEvent]:
        def go() -> None:
            ok = all(_is_name(s, "-_.:") for s in (cluster_id, sku, region))
            ok = ok and 0 < len(nodes) <= 100_000 and from_hour < to_hour
            ok = ok and to_hour - from_hour <= 24 * 366
            ids = [n for n, _ in nodes]
            ok = ok and len(set(ids)) == len(ids)
            ok = ok and all(0 < g <= MAX_GPUS_PER_NODE and _is_name(n, "-_.:") for n, g in nodes)
            ok = ok and all(not x or _is_name(x, "-_.:") for p in places or [] for x in p)
            if not ok:
                raise Rejected("INVALID_CAPACITY")
            # ids are each seller's own; the model keeps them venue-wide, as its tests
            # name each seller's clusters apart
            if cluster_id in self.clusters:
                raise Rejected("DUPLICATE_CLUSTER")
            self.clusters[cluster_id] = RefCluster(cluster_id, account, sku, region, list(nodes),
                                                   from_hour, to_hour, places=list(places or []))
            self._emit("capacity_registered", cluster=cluster_id, account=account)
        return self._run(ts, go)

    def withdraw_capacity(self, account: int, cluster_id: str, *, from_hour: int, to_hour: int,
                          nodes: list[str] | None = None, ts: int) -> list[RefEvent]:
        if cluster_id not in self.clusters or self.clusters[cluster_id].seller != account:
            raise Rejected("UNKNOWN_CLUSTER")

        def go() -> None:
            c = self.clusters[cluster_id]
            if from_hour >= to_hour:
                raise Rejected("INVALID_CAPACITY")
            names = [n for n, _ in c.nodes]
            if nodes and any(n not in names for n in nodes):
                raise Rejected("INVALID_CAPACITY")
            picked = range(len(names)) if not nodes else sorted({names.index(n) for n in nodes})
            hours = range(max(from_hour, c.from_hour), min(to_hour, c.to_hour))
            for h in hours:
                free = c.free.get(h) or [set(range(g)) for _, g in c.nodes]
                left = sum(len(f) for i, f in enumerate(free) if i not in picked)
                if left < self._offered(cluster_id, h):
                    raise Rejected("INSUFFICIENT_CAPACITY")
            removed = 0
            for h in hours:
                free = c.hour_free(h)
                for i in picked:
                    removed += len(free[i])
                    free[i] = set()
            self._emit("capacity_withdrawn", cluster=cluster_id, account=account, qty=removed)
        return self._run(ts, go)

    def utilisation(self, cluster_id: str, hour: int) -> dict[str, int] | None:
        c = self.clusters[cluster_id]
        if not c.from_hour <= hour < c.to_hour:
            return None
        capacity = sum(g for _, g in c.nodes)
        free = c.free.get(hour) or [set(range(g)) for _, g in c.nodes]
        sold = sum(len(s) for s in c.sold.get(hour, []))
        offered = self._offered(cluster_id, hour)
        free_total = sum(len(f) for f in free)
        return {"capacity": capacity, "sold": sold, "offered": offered,
                "idle": free_total - offered, "withdrawn": capacity - sold - free_total}

    # ---- products ------------------------------------------------------------------

    def create_product(self, product_id: str, *, tick: int, lot: int, open_at: int,
                       close_at: int, ts: int) -> list[RefEvent]:
        def go() -> None:
            parts = product_id.split("/")
            hour = _hour_of(parts[2]) if len(parts) == 3 else None
            if hour is None or not _is_name(parts[0]) or not _is_name(parts[1]):
                raise Rejected("INVALID_PRODUCT_ID")
            if tick <= 0:
                raise Rejected("INVALID_TICK_SIZE")
            if lot <= 0:
                raise Rejected("INVALID_LOT_SIZE")
            if open_at >= close_at or close_at > hour * MICROS_PER_HOUR:
                raise Rejected("INVALID_SCHEDULE")
            if product_id in self.products:
                raise Rejected("DUPLICATE_PRODUCT")
            if close_at <= self.now:
                raise Rejected("INVALID_SCHEDULE")
            self.products[product_id] = RefProduct(product_id, parts[0], parts[1], hour, tick, lot,
                                                   open_at, close_at, len(self.products))
            self._emit("product_created", product=product_id)
        return self._run(ts, go)

    def _product(self, product_id: str) -> RefProduct:
        if product_id not in self.products:
            raise Rejected("UNKNOWN_PRODUCT")
        return self.products[product_id]

    def _set_state(self, product_id: str, state: str, ts: int) -> list[RefEvent]:
        def go() -> None:
            p = self._product(product_id)
            if p.state == "closed":
                raise Rejected("PRODUCT_CLOSED")
            if p.state != state:
                p.state = state
                self._emit("product_state", product=p.id, state=state)
        return self._run(ts, go)

    def halt(self, product_id: str, *, ts: int) -> list[RefEvent]:
        self._product(product_id)
        return self._set_state(product_id, "halted", ts)

    def resume(self, product_id: str, *, ts: int) -> list[RefEvent]:
        self._product(product_id)
        return self._set_state(product_id, "open", ts)

    def close(self, product_id: str, *, ts: int) -> list[RefEvent]:
        self._product(product_id)

        def go() -> None:
            p = self._product(product_id)
            if p.state == "closed":
                raise Rejected("PRODUCT_CLOSED")
            self._close(p)
        return self._run(ts, go)

    def advance_time(self, ts: int) -> list[RefEvent]:
        return self._run(ts, lambda: None)

    # ---- orders --------------------------------------------------------------------

    def _check_open(self, p: RefProduct) -> None:
        if p.state == "closed":
            raise Rejected("PRODUCT_CLOSED")
        if p.state == "halted":
            raise Rejected("PRODUCT_HALTED")
        if self.now < p.open_at:
            raise Rejected("PRODUCT_NOT_OPEN")

    def _check_price(self, p: RefProduct, price: int) -> None:
        if price <= 0:
            raise Rejected("NON_POSITIVE_PRICE")
        if price > MAX_PRICE:
            raise Rejected("PRICE_TOO_HIGH")
        if price % p.tick:
            raise Rejected("PRICE_OFF_TICK")

    def _check_qty(self, p: RefProduct, qty: int, gang: int) -> None:
        if qty <= 0:
            raise Rejected("NON_POSITIVE_QUANTITY")
        if qty > MAX_QTY:
            raise Rejected("QUANTITY_TOO_LARGE")
        if qty % p.lot:
            raise Rejected("QUANTITY_OFF_LOT")
        if qty % gang:
            raise Rejected("QUANTITY_OFF_GANG")

    def _crosses(self, product: str, side: str, price: int) -> bool:
        other = self._side(product, "sell" if side == "buy" else "buy")
        if not other:
            return False
        return other[0].price <= price if side == "buy" else other[0].price >= price

    def place(self, account: int, product_id: str, side: str, price: int, qty: int, *, ts: int,
              order_type: str = "limit", tif: str = "gtc", expire_at: int | None = None,
              post_only: bool = False, stp: str = "cancel_newest",
              cluster_id: str | None = None, gang: int = 1, clip: int = 0) -> list[RefEvent]:
        self._product(product_id)
        # a cluster id is its seller's own: an ask names one of the seller's (a bid naming
        # one is refused in its turn, whatever the name)
        mine = cluster_id in self.clusters and self.clusters[cluster_id].seller == account
        if side == "sell" and cluster_id is not None and not mine:
            raise Rejected("UNKNOWN_CLUSTER")

        def go() -> None:
            p = self._product(product_id)
            self._check_open(p)
            self._check_price(p, price)
            if gang < 1 or gang & (gang - 1) or gang > MAX_GPUS_PER_NODE or (
                    side == "sell" and gang != 1):
                raise Rejected("INVALID_GANG")
            self._check_qty(p, qty, gang)
            rests = tif in ("gtc", "gtd")
            if order_type == "market" and (rests or post_only):
                raise Rejected("INVALID_TIME_IN_FORCE")
            if post_only and not rests:
                raise Rejected("INVALID_TIME_IN_FORCE")
            if tif == "gtd" and (expire_at is None or expire_at <= self.now):
                raise Rejected("INVALID_EXPIRY")
            if side == "buy" and cluster_id is not None:
                raise Rejected("CLUSTER_NOT_ALLOWED")
            if side == "sell":
                if cluster_id is None:
                    raise Rejected("CLUSTER_REQUIRED")
                c = self.clusters[cluster_id]
                if c.sku != p.sku or c.region != p.region:
                    raise Rejected("CLUSTER_MISMATCH")
                if not c.from_hour <= p.hour < c.to_hour:
                    raise Rejected("OUTSIDE_AVAILABILITY")
                if self._unreserved(cluster_id, p.hour) < qty:
                    raise Rejected("INSUFFICIENT_CAPACITY")
            if post_only and self._crosses(product_id, side, price):
                raise Rejected("POST_ONLY_WOULD_CROSS")
            if clip and (side != "sell" or not rests or clip <= 0 or clip > qty
                         or clip % p.lot):
                raise Rejected("INVALID_DISPLAY_QUANTITY")
            oid = self.next_order_id
            self.next_order_id += 1
            self._emit("accepted", order_id=oid, account=account, product=product_id, side=side,
                       price=price, qty=qty)
            o = RefOrder(oid, account, product_id, side, price, qty, 0, tif, expire_at,
                         post_only, stp, gang, cluster_id, clip=clip)
            if tif == "fok":
                trial, trial_order = copy.deepcopy(self), copy.copy(o)
                trial.events = []
                if not trial._match(trial_order) or trial_order.remaining > 0:
                    self._emit("cancelled", order_id=oid, account=account, product=product_id,
                               qty=qty, reason="fill_or_kill")
                    return
            self._match_and_rest(o)
        return self._run(ts, go)

    # ---- blocks --------------------------------------------------------------------

    def place_block(self, account: int, product_id: str, hours: int, price: int, qty: int, *,
                    ts: int, gang: int = 1, tif: str = "fok", expire_at: int | None = None,
                    window: int = 0, locality: str | None = None, preferred: bool = False,
                    near: int | None = None) -> list[RefEvent]:
        """The same GPUs in every one of `hours` consecutive hours, all or none: at once
        (IOC, FOK), or resting whole (GTC, GTD) until asks let it fill."""
        first = self._product(product_id)

        def go() -> None:
            span = window or hours
            if not 0 < hours <= MAX_BLOCK_HOURS or span < hours or span > MAX_WINDOW_HOURS:
                raise Rejected("INVALID_BLOCK")
            if near is not None:
                held = self._allocation(near)
                c = self.clusters[held.cluster] if held else None
                if held is None or c is None or held.buyer != account or (
                        c.sku, c.region) != (first.sku, first.region):
                    raise Rejected("INVALID_PLACEMENT")
            products = []
            for k in range(span):
                pid = f"{first.sku}/{first.region}/{_hour_text(first.hour + k)}"
                if pid not in self.products:
                    raise Rejected("INVALID_BLOCK")
                self._check_bid(self.products[pid], price, qty, gang, tif, expire_at)
                products.append(pid)
            oid = self.next_order_id
            self.next_order_id += 1
            self._emit("accepted", order_id=oid, account=account, product=product_id,
                       side="buy", price=price, qty=qty)
            terms = (locality, preferred, near)
            plan = self._best_plan(account, hours, price, qty, gang, products, range(
                span - hours + 1), terms)
            if plan is not None:
                self._take(oid, account, plan)
            elif tif in ("gtc", "gtd"):
                self.blocks[oid] = RefBlock(oid, account, product_id, hours, price, qty, gang,
                                            tif, expire_at, products, *terms)
            else:
                self._emit("cancelled", order_id=oid, account=account, product=product_id,
                           qty=qty, reason="fill_or_kill" if tif == "fok" else "unfilled")
        return self._run(ts, go)

    def _check_bid(self, p: RefProduct, price: int, qty: int, gang: int, tif: str,
                   expire_at: int | None) -> None:
        """What a limit bid of one hour must pass (as `place` checks it)."""
        self._check_open(p)
        self._check_price(p, price)
        if gang < 1 or gang & (gang - 1) or gang > MAX_GPUS_PER_NODE:
            raise Rejected("INVALID_GANG")
        self._check_qty(p, qty, gang)
        if tif == "gtd" and (expire_at is None or expire_at <= self.now):
            raise Rejected("INVALID_EXPIRY")

    def _best_plan(self, account: int, hours: int, price: int, qty: int, gang: int,
                   products: list[str], starts: list[int] | range,
                   terms: tuple[str | None, bool, int | None]) -> BlockPlan | None:
        """Every start in turn; the cheapest plan wins, ties to the earliest."""
        best: BlockPlan | None = None
        for s in starts:
            plan = self._plan(account, price, qty, gang, products[s:s + hours], terms)
            if plan is not None and (best is None or plan.cost < best.cost):
                best = plan
        return best

    def _plan(self, account: int, price: int, qty: int, gang: int, products: list[str],
              terms: tuple[str | None, bool, int | None] = (None, False, None)
              ) -> BlockPlan | None:
        """The block over exactly these hours: every cluster that has the GPUs in asks
        (never the buyer's own, cheapest first) in every hour within the limit on the
        whole, cheapest first, ties to the first registered; the first of them with
        `qty` GPUs free in every hour, in whole gangs, placed best fit. With placement
        terms: level by level (the asked one, or from it out when preferred), only in
        one domain at that level: the one with the fewest free gangs that holds them,
        then the lowest name (only the domain of the `near` allocation, when given)."""
        level, preferred, near = terms
        hours = [self.products[pid].hour for pid in products]
        first = self.products[products[0]]
        budget = price * qty * len(products)
        ranked = []
        for index, c in enumerate(self.clusters.values()):
            if c.sku != first.sku or c.region != first.region:
                continue
            if not all(c.from_hour <= h < c.to_hour for h in hours):
                continue
            cost, legs = 0, []
            for pid in products:
                need, taken = qty, []
                for o in self._side(pid, "sell"):
                    if o.cluster != c.id or o.account == account or need == 0:
                        continue
                    take = min(need, o.remaining)
                    taken.append((o, take))
                    cost += o.price * take
                    need -= take
                if need:
                    break
                legs.append(taken)
            if len(legs) == len(products) and cost <= budget:
                ranked.append((cost, index, c, legs))
        held = self._allocation(near) if near is not None else None
        start = level or ("cluster" if held else None)
        levels: list[str | None] = [None] if start is None else (
            LEVELS[LEVELS.index(start):] if preferred else [start])
        for lv in levels:
            for cost, _, c, legs in sorted(ranked, key=lambda r: (r[0], r[1])):
                if held is not None and c.id != held.cluster:
                    continue
                common = [set.intersection(*(c.hour_free(h)[n] for h in hours))
                          for n in range(len(c.nodes))]
                fits = [n for n in range(len(c.nodes)) if len(common[n]) >= gang]
                domain = ""
                if lv is not None:
                    wanted = None
                    if held is not None:
                        near_node = [x for x, _ in c.nodes].index(held.slots[0][0])
                        wanted = c.domain(near_node, lv)
                    groups: dict[str, list[int]] = {}
                    for n in fits:
                        groups.setdefault(c.domain(n, lv), []).append(n)
                    holding = [(sum(len(common[n]) // gang for n in ns), name, ns)
                               for name, ns in groups.items()
                               if sum(len(common[n]) // gang for n in ns) >= qty // gang
                               and wanted in (None, name)]
                    if not holding:
                        continue
                    _, domain, fits = min(holding, key=lambda d: (d[0], d[1]))
                fits = sorted(fits, key=lambda n: (len(common[n]), n))
                gangs, gpus = qty // gang, []
                for n in fits:
                    take = min(len(common[n]) // gang, gangs)
                    gpus += [(n, g) for g in sorted(common[n])[:take * gang]]
                    gangs -= take
                if gangs == 0:
                    return BlockPlan(cost, c, legs, gpus,
                                     (lv, domain) if lv is not None else None)
        return None

    def _allocation(self, trade_id: int) -> RefAllocation | None:
        return next((a for a in self.allocations if a.trade_id == trade_id), None)

    def _take(self, oid: int, buyer: int, plan: BlockPlan) -> None:
        """Block `oid` takes its plan: hour by hour, each ask in turn, on the GPUs in the
        order the plan hands them out."""
        if plan.placed is not None:
            self._emit("placed", order_id=oid, state=plan.placed[0], cluster=plan.placed[1])
        c = plan.cluster
        for taken in plan.legs:
            given = 0
            for o, qty in taken:
                hour = self.products[o.product].hour
                mine = plan.gpus[given:given + qty]
                given += qty
                slots: list[tuple[int, list[int]]] = []
                for n, g in mine:
                    if slots and slots[-1][0] == n:
                        slots[-1][1].append(g)
                    else:
                        slots.append((n, [g]))
                free, sold = c.hour_free(hour), c.sold[hour]
                for n, g in mine:
                    free[n].discard(g)
                    sold[n].add(g)
                trade_id = self.next_trade_id
                self.next_trade_id += 1
                self._emit("trade", trade_id=trade_id, product=o.product, price=o.price,
                           qty=qty, side="buy", maker_order=o.order_id,
                           maker_account=o.account, order_id=oid, account=buyer)
                a = RefAllocation(trade_id, o.product, c.id, hour, buyer, o.account, oid,
                                  o.order_id, o.price, qty,
                                  [(c.nodes[n][0], sorted(gs)) for n, gs in slots])
                self.allocations.append(a)
                self._emit("allocated", trade_id=trade_id, product=o.product, order_id=oid,
                           account=buyer, price=o.price, qty=qty, cluster=c.id, allocation=a)
                self._filled(o, qty)

    def _retry_blocks(self, product_id: str) -> None:
        """An ask now rests in `product_id`: the resting blocks spanning the hour are
        examined, the best RETRY_TOP (highest limit, then oldest), then RETRY_TURN more in
        turn after a cursor; each is planned as a fresh block would be (every cluster,
        every start of its span with every hour open, the cheapest), and fills if it can."""
        spanning = sorted((-b.price, b.order_id) for b in self.blocks.values()
                          if product_id in b.products)
        keys = spanning[:RETRY_TOP]
        if len(spanning) > RETRY_TOP:
            last_top = keys[-1]
            cursor = self.block_cursor.get(product_id)
            after = cursor if cursor is not None and cursor > last_top else last_top
            more = [k for k in spanning if k > after][:RETRY_TURN]
            if len(more) < RETRY_TURN and after > last_top:
                more += [k for k in spanning if last_top < k <= after][:RETRY_TURN - len(more)]
            self.block_cursor[product_id] = more[-1] if more else None
            keys += more
        for _, oid in keys:
            b = self.blocks.get(oid)
            if b is None:
                continue
            starts = [s for s in range(len(b.products) - b.hours + 1)
                      if all(self.products[q].state == "open"
                             for q in b.products[s:s + b.hours])]
            plan = self._best_plan(b.account, b.hours, b.price, b.qty, b.gang, b.products,
                                   starts, (b.level, b.preferred, b.near))
            if plan is not None:
                del self.blocks[oid]
                self._take(oid, b.account, plan)

    def _match_and_rest(self, o: RefOrder) -> None:
        if not self._match(o) or o.remaining == 0:
            return
        if o.tif in ("gtc", "gtd"):
            self._rest(o)
        else:
            self._emit("cancelled", order_id=o.order_id, account=o.account, product=o.product,
                       qty=o.remaining, reason="unfilled")

    def _match(self, t: RefOrder) -> bool:
        """Matches `t` against the book, always the best resting order it can still trade
        with next (an iceberg's refilled clip goes behind its level, and is met again);
        False if self-trade prevention cancelled it."""
        if t.side == "buy" and t.gang > 1:
            return self._match_gang(t)
        p = self.products[t.product]
        passed: set[int] = set()  # orders that could place nothing for `t`
        while t.remaining > 0:
            book = [m for m in self._side(t.product, "sell" if t.side == "buy" else "buy")
                    if m.order_id not in passed]
            if not book:
                break
            m = book[0]
            if not (m.price <= t.price if t.side == "buy" else m.price >= t.price):
                break
            if m.account == t.account:
                if t.stp in ("cancel_oldest", "cancel_both"):
                    self._remove(m)
                    self._emit("cancelled", order_id=m.order_id, account=m.account,
                               product=m.product, qty=m.remaining + m.hidden, reason="self_trade")
                if t.stp in ("cancel_newest", "cancel_both"):
                    self._emit("cancelled", order_id=t.order_id, account=t.account,
                               product=t.product, qty=t.remaining, reason="self_trade")
                    t.remaining = 0
                    return False
                continue
            ask, bid = (m, t) if t.side == "buy" else (t, m)
            assert ask.cluster is not None
            cluster = self.clusters[ask.cluster]
            want = min(t.remaining, m.remaining)
            qty = self._placeable(cluster.hour_free(p.hour), bid.gang, want)
            if qty == 0:
                passed.add(m.order_id)
                continue
            trade_id = self.next_trade_id
            self.next_trade_id += 1
            self._emit("trade", trade_id=trade_id, product=t.product, price=m.price, qty=qty,
                       side=t.side, maker_order=m.order_id, maker_account=m.account,
                       order_id=t.order_id, account=t.account)
            slots = self._allocate(cluster, p.hour, bid.gang, qty)
            a = RefAllocation(trade_id, t.product, cluster.id, p.hour, bid.account, ask.account,
                              bid.order_id, ask.order_id, m.price, qty, slots)
            self.allocations.append(a)
            self._emit("allocated", trade_id=trade_id, product=t.product, order_id=bid.order_id,
                       account=bid.account, price=m.price, qty=qty, cluster=cluster.id,
                       allocation=a)
            t.remaining -= qty
            t.filled += qty
            self._filled(m, qty)
        return True

    def _match_gang(self, t: RefOrder) -> bool:
        """A gang bid: the asks met so far of each cluster, in price-time order, wait
        together; at the first ask whose cluster's asks so far hold a gang that cluster can
        place, they fill as many gangs as they, the cluster and the bid allow, each ask at
        its own price, the gangs placed best fit and their GPUs handed to the asks in turn.
        Then the walk starts again from the best ask. False if self-trade prevention
        cancelled the bid."""
        p = self.products[t.product]
        while t.remaining > 0:
            waiting: dict[str, list[RefOrder]] = {}
            for m in self._side(t.product, "sell"):
                if m.price > t.price:
                    return True
                if m.account == t.account:
                    if t.stp in ("cancel_oldest", "cancel_both"):
                        self._remove(m)
                        self._emit("cancelled", order_id=m.order_id, account=m.account,
                                   product=m.product, qty=m.remaining + m.hidden,
                                   reason="self_trade")
                    if t.stp in ("cancel_newest", "cancel_both"):
                        self._emit("cancelled", order_id=t.order_id, account=t.account,
                                   product=t.product, qty=t.remaining, reason="self_trade")
                        t.remaining = 0
                        return False
                    break  # walk again
                assert m.cluster is not None
                c = self.clusters[m.cluster]
                group = waiting.setdefault(m.cluster, [])
                group.append(m)
                held = sum(o.remaining for o in group)
                qty = self._placeable(c.hour_free(p.hour), t.gang, min(t.remaining, held))
                if qty == 0:
                    continue
                gpus = [(n, g) for n, gs in self._allocate(c, p.hour, t.gang, qty) for g in gs]
                for o in group:
                    take = min(o.remaining, qty)
                    if take == 0:
                        break
                    mine, gpus, qty = gpus[:take], gpus[take:], qty - take
                    slots: list[tuple[str, list[int]]] = []
                    for n, g in mine:
                        if slots and slots[-1][0] == n:
                            slots[-1][1].append(g)
                        else:
                            slots.append((n, [g]))
                    trade_id = self.next_trade_id
                    self.next_trade_id += 1
                    self._emit("trade", trade_id=trade_id, product=t.product, price=o.price,
                               qty=take, side="buy", maker_order=o.order_id,
                               maker_account=o.account, order_id=t.order_id, account=t.account)
                    a = RefAllocation(trade_id, t.product, c.id, p.hour, t.account, o.account,
                                      t.order_id, o.order_id, o.price, take, slots)
                    self.allocations.append(a)
                    self._emit("allocated", trade_id=trade_id, product=t.product,
                               order_id=t.order_id, account=t.account, price=o.price, qty=take,
                               cluster=c.id, allocation=a)
                    t.remaining -= take
                    t.filled += take
                    self._filled(o, take)
                break  # walk again
            else:
                return True
        return True

    def _owned(self, account: int, order_id: int) -> RefOrder:
        o = self.orders.get(order_id)
        if o is None:
            raise Rejected("UNKNOWN_ORDER")
        if o.account != account:
            raise Rejected("NOT_OWNER")
        return o

    def cancel(self, account: int, order_id: int, *, ts: int) -> list[RefEvent]:
        def go() -> None:
            b = self.blocks.get(order_id)
            if b is not None:
                if b.account != account:
                    raise Rejected("NOT_OWNER")
                del self.blocks[order_id]
                self._emit("cancelled", order_id=order_id, account=account, product=b.product,
                           qty=b.qty, reason="requested")
                return
            o = self._owned(account, order_id)
            self._remove(o)
            self._emit("cancelled", order_id=o.order_id, account=o.account, product=o.product,
                       qty=o.remaining + o.hidden, reason="requested")
        return self._run(ts, go)

    def amend(self, account: int, order_id: int, *, price: int | None = None,
              qty: int | None = None, ts: int) -> list[RefEvent]:
        def go() -> None:
            if order_id in self.blocks:  # a block is all or none as placed
                raise Rejected("INVALID_BLOCK" if self.blocks[order_id].account == account
                               else "NOT_OWNER")
            o = self._owned(account, order_id)
            p = self.products[o.product]
            if p.state == "halted":
                raise Rejected("PRODUCT_HALTED")
            if price is not None:
                self._check_price(p, price)
            if qty is not None:
                self._check_qty(p, qty, o.gang)
            open_qty = o.remaining + o.hidden  # an iceberg's quantity is all of it
            new_price = o.price if price is None else price
            new_qty = open_qty if qty is None else qty
            if new_price == o.price and new_qty == open_qty:
                raise Rejected("NOTHING_TO_AMEND")
            if (o.cluster is not None and new_qty > open_qty
                    and self._unreserved(o.cluster, p.hour) < new_qty - open_qty):
                raise Rejected("INSUFFICIENT_CAPACITY")
            if o.post_only and new_price != o.price and self._crosses(o.product, o.side,
                                                                      new_price):
                raise Rejected("POST_ONLY_WOULD_CROSS")
            keep = new_price == o.price and new_qty < open_qty
            self._emit("amended", order_id=o.order_id, account=o.account, product=o.product,
                       price=new_price, qty=new_qty, priority_kept=keep)
            if keep:
                # an iceberg gives up what is hidden first
                by = open_qty - new_qty
                from_hidden = min(by, o.hidden)
                o.hidden -= from_hidden
                o.remaining -= by - from_hidden
            else:
                o.price, o.remaining, o.hidden = new_price, new_qty, 0
                self._remove(o)
                self._match_and_rest(o)
        return self._run(ts, go)

    # ---- views ---------------------------------------------------------------------

    def l2(self, product_id: str, depth: int = 10
           ) -> tuple[list[tuple[int, int, int]], list[tuple[int, int, int]]]:
        self._product(product_id)

        def levels(side: str) -> list[tuple[int, int, int]]:
            out: list[tuple[int, int, int]] = []
            for o in self._side(product_id, side):
                if out and out[-1][0] == o.price:
                    px, q, n = out[-1]
                    out[-1] = (px, q + o.remaining, n + 1)
                else:
                    out.append((o.price, o.remaining, 1))
            return out[:depth]
        return levels("buy"), levels("sell")

    def l3(self, product_id: str) -> tuple[list[RefOrder], list[RefOrder]]:
        self._product(product_id)
        return self._side(product_id, "buy"), self._side(product_id, "sell")

    def order(self, order_id: int) -> RefOrder | None:
        return self.orders.get(order_id)

    def open_order_count(self) -> int:
        return len(self.orders) + len(self.blocks)

    def resting_blocks(self) -> list[int]:
        return sorted(self.blocks)

    def allocations_of(self, account: int) -> list[RefAllocation]:
        return [a for a in self.allocations if account in (a.buyer, a.seller)]
