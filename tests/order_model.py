"""A naive Python model of an order's life around the engine: records with fills and
terminal states, client-order-id dedupe, the open-order limit, the command sequence,
executions per account and market-data deltas per product, and the contract messages
they read as. It is what the gateway kept in Python before the Rust exchange took over
(rust_exchange/); tests/test_exchange.py holds the two equal on random commands.

Plain dictionaries and lists, re-deriving what it can; speed is not its business."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from spotex import wire
from spotex._core import Engine, Event, SpotexError
from spotex._proto.spotex.v1 import spotex_pb2 as pb


class ModelError(Exception):
    """A refusal decided by the model itself (not by the engine)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


@dataclass
class FillRecord:
    trade_id: int
    price: int
    qty: int
    maker: bool
    ts: int


@dataclass
class OrderRecord:
    order_id: int
    account: int
    client_order_id: str
    product: str
    side: str
    order_type: str
    price: int
    quantity: int
    tif: str
    cluster: str | None
    gang: int
    created_at: int
    filled: int = 0
    remaining: int = 0
    state: str = "open"
    reason: str = ""
    fills: list[FillRecord] = field(default_factory=list)


class OrderModel:
    """One engine and the records around it. ``ts`` is given with every command."""

    def __init__(self, max_open_orders: int) -> None:
        self.engine = Engine()
        self.max_open_orders = max_open_orders
        self.sequence = 0
        self.orders: dict[int, OrderRecord] = {}
        self.by_client_id: dict[tuple[int, str], int] = {}
        self.md_sequence: dict[str, int] = {}
        self.levels: dict[tuple[str, str], dict[int, tuple[int, int]]] = {}
        self.exec_sequence: dict[int, int] = {}
        self.market: list[Any] = []  # pb.MarketData, this round
        # (account, sequence, kind, order id, fill, allocation): the order is read when
        # the round is taken, as the gateway did
        self.executions: list[tuple[int, int, str, int | None, Any, Any]] = []
        self._pending: OrderRecord | None = None

    def open_orders(self, account: int) -> int:
        return sum(1 for r in self.orders.values() if r.account == account and r.remaining)

    # ---- commands --------------------------------------------------------------------

    def run(self, ts: int, command: Any) -> list[Event]:
        before = self.engine.now
        try:
            events: list[Event] = command(ts)
        except SpotexError as err:
            if self.engine.now != before:
                self.sequence += 1  # the clock moved: a time step of its own
            self._absorb(getattr(err, "events", []), ts)
            raise
        self.sequence += 1
        self._absorb(events, ts)
        return events

    def create_product(self, ts: int, product_id: str, tick: int, lot: int,
                       close_at: int) -> None:
        self.run(ts, lambda t: self.engine.create_product(
            product_id, tick=tick, lot=lot, open_at=t, close_at=close_at, ts=t))

    def register_capacity(self, ts: int, account: int, r: Any) -> None:
        nodes = [(n.node_id, n.gpus) for n in r.nodes]
        self.run(ts, lambda t: self.engine.register_capacity(
            account, r.cluster_id, sku=r.sku, region=r.region, nodes=nodes,
            from_hour=r.from_hour, to_hour=r.to_hour, ts=t))

    def set_state(self, ts: int, what: str, product_id: str) -> None:
        fn = getattr(self.engine, what)
        self.run(ts, lambda t: fn(product_id, ts=t))

    def advance_time(self, ts: int) -> None:
        events = self.engine.advance_time(ts)
        if events:  # a quiet step is not a command
            self.sequence += 1
            self._absorb(events, ts)

    def place(self, ts: int, account: int, buyer: bool, seller: bool, r: Any) -> Any:
        side = wire.SIDE_FROM_PB.get(r.side)
        if side is None:
            raise ModelError("INVALID_SIDE", "side must be SIDE_BUY or SIDE_SELL")
        if not (buyer if side == "buy" else seller):
            raise ModelError("ROLE_REQUIRED", "role")
        order_type = wire.TYPE_FROM_PB.get(r.order_type)
        tif = wire.TIF_FROM_PB.get(r.time_in_force)
        stp = wire.STP_FROM_PB.get(r.stp)
        if order_type is None or tif is None or stp is None:
            raise ModelError("INVALID_ENUM", "unknown order_type, time_in_force or stp")
        if len(r.client_order_id) > 64:
            raise ModelError("INVALID_CLIENT_ORDER_ID", "too long")
        if r.gang > 64:
            raise ModelError("INVALID_GANG", "gang")
        if self.open_orders(account) >= self.max_open_orders:
            raise ModelError("TOO_MANY_OPEN_ORDERS", "too many")
        if r.client_order_id and (account, r.client_order_id) in self.by_client_id:
            raise ModelError("DUPLICATE_CLIENT_ORDER_ID", "used before")
        gang = r.gang or 1
        cluster = r.cluster_id or None
        pending = OrderRecord(0, account, r.client_order_id, r.product_id, side, order_type,
                              r.price_micros, r.quantity, tif, cluster, gang, 0,
                              remaining=r.quantity)
        self._pending = pending
        try:
            self.run(ts, lambda t: self.engine.place(
                account, r.product_id, side, r.price_micros, r.quantity, ts=t,
                order_type=order_type, tif=tif,
                expire_at=r.expire_at_micros if tif == "gtd" else None,
                post_only=r.post_only, stp=stp, cluster_id=cluster, gang=gang))
        finally:
            self._pending = None
        return order_pb(self.orders[pending.order_id])

    def cancel(self, ts: int, account: int, order_id: int) -> Any:
        self._check_owner(account, order_id)
        self.run(ts, lambda t: self.engine.cancel(account, order_id, ts=t))
        return order_pb(self.orders[order_id])

    def amend(self, ts: int, account: int, order_id: int, price: int | None,
              qty: int | None) -> Any:
        self._check_owner(account, order_id)
        self.run(ts, lambda t: self.engine.amend(account, order_id, price=price, qty=qty,
                                                 ts=t))
        return order_pb(self.orders[order_id])

    def _check_owner(self, account: int, order_id: int) -> None:
        rec = self.orders.get(order_id)
        if rec is not None and rec.account != account:
            raise ModelError("NOT_OWNER", "the order belongs to another account")

    # ---- reads -----------------------------------------------------------------------

    def get_order(self, account: int, order_id: int) -> Any:
        rec = self.orders.get(order_id)
        if rec is None:
            raise ModelError("UNKNOWN_ORDER", "no such order")
        if rec.account != account:
            raise ModelError("NOT_OWNER", "the order belongs to another account")
        return order_pb(rec)

    def list_orders(self, account: int, product: str = "", open_only: bool = False) -> Any:
        return pb.ListOrdersResponse(orders=[
            order_pb(r) for r in self.orders.values()
            if r.account == account and (not product or r.product == product)
            and (not open_only or r.remaining > 0)])

    def book(self, product: str, depth: int) -> Any:
        bids, asks = self.engine.l2(product, depth)
        return book_pb(product, self.md_sequence.get(product, 0), bids, asks)

    def take_round(self) -> tuple[list[Any], list[tuple[int, Any]]]:
        market, self.market = self.market, []
        executions = [(account, pb.Execution(
            sequence=seq, kind=kind,
            order=order_pb(self.orders[oid], with_fills=False) if oid else None,
            fill=fill_pb(fill) if fill else None,
            allocation=allocation_pb(alloc, account) if alloc else None))
            for account, seq, kind, oid, fill, alloc in self.executions]
        self.executions = []
        return market, executions

    # ---- events into records and messages --------------------------------------------

    def _absorb(self, events: list[Event], ts: int) -> None:
        touched: dict[tuple[str, str, int], None] = {}
        for e in events:
            kind = e.kind
            if kind == "accepted":
                p = self._pending
                assert p is not None and e.order_id is not None
                p.order_id = e.order_id
                p.created_at = ts
                self.orders[e.order_id] = p
                touched[(p.product, p.side, p.price)] = None
                if p.client_order_id:
                    self.by_client_id[(p.account, p.client_order_id)] = e.order_id
                self._execution(p.account, "accepted", e.order_id)
            elif kind == "trade":
                assert e.order_id is not None and e.maker_order is not None
                assert e.product is not None and e.qty is not None and e.price is not None
                assert e.trade_id is not None
                maker_rec = self.orders[e.maker_order]
                touched[(maker_rec.product, maker_rec.side, maker_rec.price)] = None
                for oid, maker in ((e.maker_order, True), (e.order_id, False)):
                    rec = self.orders[oid]
                    fill = FillRecord(e.trade_id, e.price, e.qty, maker, ts)
                    rec.fills.append(fill)
                    rec.filled += e.qty
                    rec.remaining -= e.qty
                    rec.state = "filled" if rec.remaining == 0 else "partially_filled"
                    self._execution(rec.account, "trade", oid, fill)
                self._market(e.product, trade=pb.Trade(
                    trade_id=e.trade_id, price_micros=e.price, quantity=e.qty,
                    aggressor=wire.SIDE_TO_PB[e.side], time_micros=ts))
            elif kind == "allocated":
                a = e.allocation
                assert a is not None
                self._execution(a.buyer, "allocated", a.buy_order, None, a)
                if a.seller != a.buyer:
                    self._execution(a.seller, "allocated", a.sell_order, None, a)
            elif kind in ("cancelled", "expired"):
                assert e.order_id is not None
                rec = self.orders[e.order_id]
                touched[(rec.product, rec.side, rec.price)] = None
                rec.remaining = 0
                rec.state = kind
                rec.reason = e.reason or ""
                self._execution(rec.account, kind, e.order_id)
            elif kind == "amended":
                assert e.order_id is not None and e.qty is not None and e.price is not None
                rec = self.orders[e.order_id]
                touched[(rec.product, rec.side, rec.price)] = None
                touched[(rec.product, rec.side, e.price)] = None
                rec.price = e.price
                rec.remaining = e.qty
                rec.quantity = rec.filled + e.qty
                self._execution(rec.account, "amended", e.order_id)
            elif kind == "product_state":
                assert e.product is not None
                self._market(e.product, state=e.state)
        for product, side, price in touched:
            level = self.engine.level(product, side, price)
            known = self.levels.setdefault((product, side), {})
            if known.get(price, (0, 0)) != level:
                if level[0]:
                    known[price] = level
                else:
                    known.pop(price, None)
                self._market(product, level=pb.LevelUpdate(
                    side=wire.SIDE_TO_PB[side], price_micros=price, quantity=level[0],
                    orders=level[1]))

    def _market(self, product: str, **payload: Any) -> None:
        n = self.md_sequence.get(product, 0) + 1
        self.md_sequence[product] = n
        self.market.append(pb.MarketData(product_id=product, sequence=n, **payload))

    def _execution(self, account: int, kind: str, order_id: int | None,
                   fill: FillRecord | None = None, allocation: Any = None) -> None:
        n = self.exec_sequence.get(account, 0) + 1
        self.exec_sequence[account] = n
        self.executions.append((account, n, kind, order_id, fill, allocation))


# ---- the contract's messages ---------------------------------------------------------------

def fill_pb(f: FillRecord) -> Any:
    return pb.Fill(trade_id=f.trade_id, price_micros=f.price, quantity=f.qty, maker=f.maker,
                   time_micros=f.ts)


def order_pb(r: OrderRecord, with_fills: bool = True) -> Any:
    return pb.Order(
        order_id=r.order_id, client_order_id=r.client_order_id, product_id=r.product,
        side=wire.SIDE_TO_PB[r.side], order_type=wire.TYPE_TO_PB[r.order_type],
        price_micros=r.price, quantity=r.quantity, filled_quantity=r.filled,
        remaining_quantity=r.remaining, state=wire.STATE_TO_PB[r.state],
        time_in_force=wire.TIF_TO_PB[r.tif], cluster_id=r.cluster or "",
        gang=r.gang, fills=[fill_pb(f) for f in r.fills] if with_fills else [],
        created_at_micros=r.created_at, reason=r.reason, hours=1)  # the model has no blocks


def allocation_pb(a: Any, account: int) -> Any:
    return pb.Allocation(
        trade_id=a.trade_id, product_id=a.product, cluster_id=a.cluster, hour=a.hour,
        buy_order_id=a.buy_order, sell_order_id=a.sell_order, price_micros=a.price,
        quantity=a.qty, slots=[pb.Slot(node_id=n, gpu_indices=g) for n, g in a.slots],
        as_buyer=a.buyer == account, buyer_account=a.buyer, seller_account=a.seller,
        as_provider=a.seller == account,  # the model has no resales: the owner sold
        provider_account=a.seller)


def book_pb(product: str, sequence: int, bids: list[Any], asks: list[Any]) -> Any:
    def level(x: tuple[int, int, int]) -> Any:
        return pb.Level(price_micros=x[0], quantity=x[1], orders=x[2])
    return pb.Book(product_id=product, sequence=sequence, bids=[level(x) for x in bids],
                   asks=[level(x) for x in asks])


def product_pb(row: tuple[str, str, int, int, int, int]) -> Any:
    pid, state, tick, lot, open_at, close_at = row
    return pb.Product(product_id=pid, state=state, tick_micros=tick, lot=lot,
                      open_at_micros=open_at, close_at_micros=close_at)
