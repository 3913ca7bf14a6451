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

    def hour_free(self, hour: int) -> list[set[int]]:
        if hour not in self.free:
            self.free[hour] = [set(range(g)) for _, g in self.nodes]
            self.sold[hour] = [set() for _ in self.nodes]
        return self.free[hour]


def _is_name(s: str, extra: str = "-_.") -> bool:
    return 0 < len(s) <= 64 and all(c.isascii() and (c.isalnum() or c in extra) for c in s)


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
            for p in self.products.values():
                if p.state != "closed" and p.close_at <= ts:
                    due.append((p.close_at, 1, p.handle))
            if not due:
                return
            _, what, key = min(due)
            if what == 0:
                o = self.orders[key]
                self._remove(o)
                self._emit("expired", order_id=o.order_id, account=o.account, product=o.product,
                           qty=o.remaining, reason="good_till_time")
            else:
                self._close(next(p for p in self.products.values() if p.handle == key))

    def _close(self, p: RefProduct) -> None:
        p.state = "closed"
        self._emit("product_state", product=p.id, state="closed")
        for o in sorted(self._resting(p.id), key=lambda o: o.order_id):
            self._remove(o)
            self._emit("expired", order_id=o.order_id, account=o.account, product=o.product,
                       qty=o.remaining, reason="gate_closure")

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
        o.seq = self.next_seq
        self.next_seq += 1
        self.orders[o.order_id] = o

    # ---- capacity ------------------------------------------------------------------

    def _offered(self, cluster: str, hour: int) -> int:
        return sum(o.remaining for o in self.orders.values()
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
                          ts: int) -> list[RefEvent]:
        def go() -> None:
            ok = all(_is_name(s, "-_.:") for s in (cluster_id, sku, region))
            ok = ok and 0 < len(nodes) <= 100_000 and from_hour < to_hour
            ok = ok and to_hour - from_hour <= 24 * 366
            ids = [n for n, _ in nodes]
            ok = ok and len(set(ids)) == len(ids)
            ok = ok and all(0 < g <= MAX_GPUS_PER_NODE and _is_name(n, "-_.:") for n, g in nodes)
            if not ok:
                raise Rejected("INVALID_CAPACITY")
            if cluster_id in self.clusters:
                raise Rejected("DUPLICATE_CLUSTER")
            self.clusters[cluster_id] = RefCluster(cluster_id, account, sku, region, list(nodes),
                                                   from_hour, to_hour)
            self._emit("capacity_registered", cluster=cluster_id, account=account)
        return self._run(ts, go)

    def withdraw_capacity(self, account: int, cluster_id: str, *, from_hour: int, to_hour: int,
                          nodes: list[str] | None = None, ts: int) -> list[RefEvent]:
        if cluster_id not in self.clusters:
            raise Rejected("UNKNOWN_CLUSTER")

        def go() -> None:
            c = self.clusters[cluster_id]
            if c.seller != account:
                raise Rejected("CLUSTER_MISMATCH")
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
              cluster_id: str | None = None, gang: int = 1) -> list[RefEvent]:
        self._product(product_id)
        if cluster_id is not None and cluster_id not in self.clusters:
            raise Rejected("UNKNOWN_CLUSTER")

        def go() -> None:
            p = self._product(product_id)
            if p.state == "closed":
                raise Rejected("PRODUCT_CLOSED")
            if p.state == "halted":
                raise Rejected("PRODUCT_HALTED")
            if self.now < p.open_at:
                raise Rejected("PRODUCT_NOT_OPEN")
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
                if c.seller != account or c.sku != p.sku or c.region != p.region:
                    raise Rejected("CLUSTER_MISMATCH")
                if not c.from_hour <= p.hour < c.to_hour:
                    raise Rejected("OUTSIDE_AVAILABILITY")
                if self._unreserved(cluster_id, p.hour) < qty:
                    raise Rejected("INSUFFICIENT_CAPACITY")
            if post_only and self._crosses(product_id, side, price):
                raise Rejected("POST_ONLY_WOULD_CROSS")
            oid = self.next_order_id
            self.next_order_id += 1
            self._emit("accepted", order_id=oid, account=account, product=product_id, side=side,
                       price=price, qty=qty)
            o = RefOrder(oid, account, product_id, side, price, qty, 0, tif, expire_at,
                         post_only, stp, gang, cluster_id)
            if tif == "fok":
                trial, trial_order = copy.deepcopy(self), copy.copy(o)
                trial.events = []
                if not trial._match(trial_order) or trial_order.remaining > 0:
                    self._emit("cancelled", order_id=oid, account=account, product=product_id,
                               qty=qty, reason="fill_or_kill")
                    return
            self._match_and_rest(o)
        return self._run(ts, go)

    def _match_and_rest(self, o: RefOrder) -> None:
        if not self._match(o) or o.remaining == 0:
            return
        if o.tif in ("gtc", "gtd"):
            self._rest(o)
        else:
            self._emit("cancelled", order_id=o.order_id, account=o.account, product=o.product,
                       qty=o.remaining, reason="unfilled")

    def _match(self, t: RefOrder) -> bool:
        """Matches `t` against the book; False if self-trade prevention cancelled it."""
        p = self.products[t.product]
        for m in self._side(t.product, "sell" if t.side == "buy" else "buy"):
            if t.remaining == 0:
                break
            if not (m.price <= t.price if t.side == "buy" else m.price >= t.price):
                break
            if m.account == t.account:
                if t.stp in ("cancel_oldest", "cancel_both"):
                    self._remove(m)
                    self._emit("cancelled", order_id=m.order_id, account=m.account,
                               product=m.product, qty=m.remaining, reason="self_trade")
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
            m.remaining -= qty
            m.filled += qty
            if m.remaining == 0:
                self._remove(m)
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
            o = self._owned(account, order_id)
            self._remove(o)
            self._emit("cancelled", order_id=o.order_id, account=o.account, product=o.product,
                       qty=o.remaining, reason="requested")
        return self._run(ts, go)

    def amend(self, account: int, order_id: int, *, price: int | None = None,
              qty: int | None = None, ts: int) -> list[RefEvent]:
        def go() -> None:
            o = self._owned(account, order_id)
            p = self.products[o.product]
            if p.state == "halted":
                raise Rejected("PRODUCT_HALTED")
            if price is not None:
                self._check_price(p, price)
            if qty is not None:
                self._check_qty(p, qty, o.gang)
            new_price = o.price if price is None else price
            new_qty = o.remaining if qty is None else qty
            if new_price == o.price and new_qty == o.remaining:
                raise Rejected("NOTHING_TO_AMEND")
            if (o.cluster is not None and new_qty > o.remaining
                    and self._unreserved(o.cluster, p.hour) < new_qty - o.remaining):
                raise Rejected("INSUFFICIENT_CAPACITY")
            if o.post_only and new_price != o.price and self._crosses(o.product, o.side,
                                                                      new_price):
                raise Rejected("POST_ONLY_WOULD_CROSS")
            keep = new_price == o.price and new_qty < o.remaining
            self._emit("amended", order_id=o.order_id, account=o.account, product=o.product,
                       price=new_price, qty=new_qty, priority_kept=keep)
            o.price, o.remaining = new_price, new_qty
            if not keep:
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
        return len(self.orders)

    def allocations_of(self, account: int) -> list[RefAllocation]:
        return [a for a in self.allocations if account in (a.buyer, a.seller)]
