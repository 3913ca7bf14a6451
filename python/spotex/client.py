"""The spotex SDK: ``Client`` (blocking) and ``AsyncClient`` (asyncio).

Prices go in as ``Decimal`` or strings of dollars per GPU-hour and come back as
``Decimal``; they travel as exact integer micro-dollars. Calls raise ``RpcError`` (a
``SpotexError``) with the gRPC status code and spotex's machine-readable reason.
Users never see a protobuf message: every call is described once here as a request and
a converter, and the two clients only differ in how they send it.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar

import grpc
import grpc.aio

from spotex import wire
from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex._proto.spotex.v1 import spotex_pb2_grpc as pb_grpc
from spotex.errors import SpotexError
from spotex.money import parse_price

T = TypeVar("T")
Side = Literal["buy", "sell"]


class RpcError(SpotexError):
    """A call the server refused: ``code`` (grpc.StatusCode), ``reason`` (e.g.
    ``PRICE_OFF_TICK``), ``message``, and for RATE_LIMITED ``retry_after`` (seconds to
    wait before trying again; None otherwise)."""

    def __init__(self, code: grpc.StatusCode, reason: str, message: str,
                 retry_after: float | None = None) -> None:
        super().__init__(f"{code.name} {reason}: {message}")
        self.code = code
        self.reason = reason
        self.message = message
        self.retry_after = retry_after


def _rpc_error(err: grpc.RpcError) -> RpcError:
    code = err.code() if hasattr(err, "code") else grpc.StatusCode.UNKNOWN
    reason = ""
    retry_after = None
    trailing = err.trailing_metadata() if hasattr(err, "trailing_metadata") else None
    for key, value in trailing or ():
        if key == "spotex-reason":
            reason = value
        elif key == "retry-after-ms" and str(value).isdigit():
            retry_after = int(value) / 1000
    details = err.details() if hasattr(err, "details") else str(err)
    return RpcError(code, reason or code.name, details or "", retry_after)


def _resubscribable(err: grpc.RpcError, lost: int) -> bool:
    """A market-data stream worth opening again: dropped for lagging, or ended by a
    gateway because its shard's engine was lost (a few times in a row at most: the
    gateway waits for the standby before it answers)."""
    if err.code() == grpc.StatusCode.RESOURCE_EXHAUSTED:
        return True
    return _rpc_error(err).reason == "SHARD_UNAVAILABLE" and lost <= 3


def _price(micros: int) -> Decimal:
    return Decimal(micros) / 1_000_000


@dataclass(frozen=True)
class Product:
    product_id: str
    state: str
    tick: Decimal
    lot: int
    open_at: dt.datetime
    close_at: dt.datetime
    # create_products: True for a product of the range that was listed before the call
    # (left as it was, with its own tick, lot and times)
    listed_before: bool = False


@dataclass(frozen=True)
class Fill:
    trade_id: int
    price: Decimal
    quantity: int
    maker: bool
    product_id: str = ""  # the product it traded in (a block's fill: that hour's)
    fee: Decimal = Decimal(0)  # a resale's fill: the fee its seller paid


@dataclass(frozen=True)
class Order:
    order_id: int
    client_order_id: str
    product_id: str
    side: Side
    order_type: str
    price: Decimal
    quantity: int
    filled: int
    remaining: int
    state: str  # open, partially_filled, filled, cancelled, expired
    time_in_force: str
    cluster_id: str | None
    gang: int
    fills: tuple[Fill, ...]
    reason: str
    hours: int = 1  # a block's consecutive hours (its quantities: GPUs in every hour)
    window_hours: int = 0  # a block's window from product_id's hour (0: none)
    min_quantity: int = 0  # the minimum it had to fill on entry (0: none)
    range_id: int = 0  # the range (place_ask_range) or group it belongs to (0: none)
    display_quantity: int = 0  # an iceberg ask's clip: at most this much shows (0: none)
    locality: str = ""  # placement asked: node, nvlink_domain, rack, block, cluster ("": none)
    locality_preferred: bool = False
    colocate_with: int = 0  # the trade id of an allocation to sit next to (0: none)
    placed_level: str = ""  # once filled with placement terms: the level it got
    placed_domain: str = ""  # and the domain, its labels joined by '/'
    resell_trade_id: int = 0  # a resale ask: the allocation its GPUs come from (0: none)
    resale_fee_bps: int = 0  # and the venue's fee on each fill, in basis points
    fees: Decimal = Decimal(0)  # fees paid so far


@dataclass(frozen=True)
class Allocation:
    trade_id: int
    product_id: str
    cluster_id: str
    hour: int
    price: Decimal
    quantity: int
    slots: tuple[tuple[str, tuple[int, ...]], ...]  # (node id, GPU indices)
    as_buyer: bool
    # each slot's node and where it sits: (node id, block, rack, NVLink domain)
    places: tuple[tuple[str, str, str, str], ...] = ()
    buy_order_id: int = 0
    buyer_account: int = 0  # whom the seller provisions these GPUs for
    parent_trade_id: int = 0  # a resale's: the allocation its GPUs came from (0: none)
    fee: Decimal = Decimal(0)  # a resale's fee, paid by its seller
    seller_account: int = 0  # the cluster's owner, or a reseller
    as_provider: bool = False  # the GPUs are on the caller's cluster (its schedule)
    # the cluster's owner: cluster ids are each seller's own, so (provider_account,
    # cluster_id) names the cluster
    provider_account: int = 0


@dataclass(frozen=True)
class Level:
    price: Decimal
    quantity: int
    orders: int


@dataclass(frozen=True)
class Book:
    product_id: str
    sequence: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


@dataclass(frozen=True)
class MarketEvent:
    """One market-data message. ``kind``: snapshot (``book``), level (``side``, ``price``,
    ``quantity`` 0 = level gone), trade (``price``, ``quantity``, ``side`` = aggressor),
    or state (``state``)."""

    kind: str
    product_id: str
    sequence: int
    book: Book | None = None
    side: Side | None = None
    price: Decimal | None = None
    quantity: int | None = None
    orders: int | None = None
    trade_id: int | None = None
    state: str | None = None


@dataclass(frozen=True)
class BlockAllocation:
    """A filled block's GPUs in one record: the same slots in each of its hours."""
    order_id: int
    cluster_id: str
    first_hour: int  # hours since the Unix epoch
    hours: int
    slots: tuple[tuple[str, tuple[int, ...]], ...]  # (node id, GPU indices)
    cost: Decimal  # what the whole block paid
    trade_ids: tuple[int, ...]
    provider_account: int = 0  # the cluster's owner


@dataclass(frozen=True)
class Execution:
    sequence: int
    kind: str  # accepted, trade, allocated, cancelled, expired, amended, block_allocated
    order: Order | None
    fill: Fill | None
    allocation: Allocation | None
    block: BlockAllocation | None = None  # block_allocated: the whole block


@dataclass(frozen=True)
class Account:
    account_id: int
    token: str


@dataclass(frozen=True)
class AccountInfo:
    """An account as the operator sees it (never its token)."""

    account_id: int
    name: str
    roles: tuple[str, ...]
    enabled: bool  # False: the kill switch is on
    has_token: bool  # False once revoked, until rotated


def _account_info(a: Any) -> AccountInfo:
    return AccountInfo(a.account_id, a.name, tuple(wire.ROLE_FROM_PB.get(r, "") for r in a.roles),
                       a.enabled, a.has_token)


def _ts(micros: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(micros / 1e6, dt.UTC)


def _fill(f: Any, product_id: str = "") -> Fill:
    """A fill names its product: a block's fill the hour it traded in, any other the
    order's own product (which the wire leaves out)."""
    return Fill(f.trade_id, _price(f.price_micros), f.quantity, f.maker,
                f.product_id or product_id, _price(f.fee_micros))


def _order(o: Any) -> Order:
    return Order(o.order_id, o.client_order_id, o.product_id, wire.SIDE_FROM_PB[o.side],  # type: ignore[arg-type]
                 wire.TYPE_FROM_PB[o.order_type], _price(o.price_micros), o.quantity,
                 o.filled_quantity, o.remaining_quantity, wire.STATE_FROM_PB[o.state],
                 wire.TIF_FROM_PB[o.time_in_force], o.cluster_id or None, o.gang,
                 tuple(_fill(f, o.product_id) for f in o.fills), o.reason, max(1, o.hours),
                 o.window_hours,
                 o.min_quantity, o.range_id, o.display_quantity,
                 wire.LOCALITY_FROM_PB.get(o.locality, ""), o.locality_preferred,
                 o.colocate_with, wire.LOCALITY_FROM_PB.get(o.placed_level, ""),
                 o.placed_domain, o.resell_trade_id, o.resale_fee_bps, _price(o.fees_micros))


def _allocation(a: Any) -> Allocation:
    return Allocation(a.trade_id, a.product_id, a.cluster_id, a.hour, _price(a.price_micros),
                      a.quantity, tuple((s.node_id, tuple(s.gpu_indices)) for s in a.slots),
                      a.as_buyer,
                      tuple((s.node_id, s.block, s.rack, s.nvlink_domain) for s in a.slots),
                      a.buy_order_id, a.buyer_account, a.parent_trade_id, _price(a.fee_micros),
                      a.seller_account, a.as_provider, a.provider_account)


def _book(b: Any) -> Book:
    def levels(xs: Any) -> tuple[Level, ...]:
        return tuple(Level(_price(x.price_micros), x.quantity, x.orders) for x in xs)
    return Book(b.product_id, b.sequence, levels(b.bids), levels(b.asks))


def _product(p: Any, listed_before: bool = False) -> Product:
    return Product(p.product_id, p.state, _price(p.tick_micros), p.lot, _ts(p.open_at_micros),
                   _ts(p.close_at_micros), listed_before)


def _range(skus: Iterable[str], regions: Iterable[str], r: Any) -> list[Product]:
    """Every product of a CreateProducts range, new or listed before, in the order asked
    for (SKU, then region, then hour): a caller indexes it by hour whatever was listed."""
    sku_at = {s: i for i, s in enumerate(skus)}
    region_at = {g: i for i, g in enumerate(regions)}

    def key(p: Product) -> tuple[int, int, str]:
        sku, region, hour = p.product_id.split("/", 2)
        return sku_at.get(sku, len(sku_at)), region_at.get(region, len(region_at)), hour
    return sorted([*(_product(p) for p in r.products),
                   *(_product(p, True) for p in r.existing)], key=key)


def _market_event(m: Any) -> MarketEvent:
    which = m.WhichOneof("payload")
    if which == "snapshot":
        return MarketEvent("snapshot", m.product_id, m.sequence, book=_book(m.snapshot))
    if which == "level":
        x = m.level
        return MarketEvent("level", m.product_id, m.sequence, side=wire.SIDE_FROM_PB[x.side],  # type: ignore[arg-type]
                           price=_price(x.price_micros), quantity=x.quantity, orders=x.orders)
    if which == "trade":
        x = m.trade
        return MarketEvent("trade", m.product_id, m.sequence,
                           side=wire.SIDE_FROM_PB[x.aggressor], price=_price(x.price_micros),  # type: ignore[arg-type]
                           quantity=x.quantity, trade_id=x.trade_id)
    return MarketEvent("state", m.product_id, m.sequence, state=m.state)


def _result(x: Any) -> Order | RpcError:
    """One result of a bulk answer: the order, or why it was refused."""
    if x.code:
        return RpcError(_code(x.code), x.reason, x.message)
    return _order(x.order)


def _execution(e: Any) -> Execution:
    return Execution(e.sequence, e.kind, _order(e.order) if e.HasField("order") else None,
                     _fill(e.fill, e.order.product_id) if e.HasField("fill") else None,
                     _allocation(e.allocation) if e.HasField("allocation") else None,
                     _block(e.block) if e.HasField("block") else None)


def _block(b: Any) -> BlockAllocation:
    return BlockAllocation(b.order_id, b.cluster_id, b.first_hour, b.hours,
                           tuple((s.node_id, tuple(s.gpu_indices)) for s in b.slots),
                           _price(b.cost_micros), tuple(b.trade_ids), b.provider_account)


@dataclass(frozen=True)
class _Call(Generic[T]):
    service: Literal["market", "operator"]
    method: str
    request: Any
    convert: Callable[[Any], T]


# A node to register: (node id, GPUs), or with its place (block, rack, NVLink domain).
NodeArg = tuple[str, int] | tuple[str, int, str, str, str]


def _node(n: NodeArg) -> Any:
    if len(n) == 5:
        node, gpus, block, rack, domain = n
        return pb.Node(node_id=node, gpus=gpus, block=block, rack=rack, nvlink_domain=domain)
    node, gpus = n[0], n[1]
    return pb.Node(node_id=node, gpus=gpus)


def _order_request(product_id: str, side: Side, price: Decimal | str | int, quantity: int, *,
                   client_order_id: str = "", order_type: str = "limit", tif: str = "gtc",
                   expire_at: dt.datetime | None = None, post_only: bool = False,
                   stp: str = "cancel_newest", cluster_id: str | None = None,
                   gang: int = 1, hours: int = 1, window_hours: int = 0,
                   min_quantity: int = 0, display_quantity: int = 0, locality: str = "",
                   locality_preferred: bool = False, colocate_with: int = 0,
                   resell_trade_id: int = 0, resell_gpus: Iterable[SlotArg] = ()) -> Any:
    if locality not in wire.LOCALITY_TO_PB:
        raise ValueError("locality must be one of node, nvlink_domain, rack, block, cluster")
    if side not in wire.SIDE_TO_PB:
        raise ValueError("side must be 'buy' or 'sell'")
    return pb.PlaceOrderRequest(
        client_order_id=client_order_id, product_id=product_id, side=wire.SIDE_TO_PB[side],
        order_type=wire.TYPE_TO_PB[order_type], price_micros=parse_price(price),
        quantity=quantity, time_in_force=wire.TIF_TO_PB[tif],
        expire_at_micros=int(expire_at.timestamp() * 1_000_000) if expire_at else 0,
        post_only=post_only, stp=wire.STP_TO_PB[stp], cluster_id=cluster_id or "", gang=gang,
        hours=hours, window_hours=window_hours, min_quantity=min_quantity,
        display_quantity=display_quantity, locality=wire.LOCALITY_TO_PB[locality],
        locality_preferred=locality_preferred, colocate_with=colocate_with,
        resell_trade_id=resell_trade_id, resell_gpus=_slots(resell_gpus))


# GPUs named by a seller: (node id, GPU indices)
SlotArg = tuple[str, Iterable[int]]


def _slots(gpus: Iterable[SlotArg]) -> list[Any]:
    return [pb.Slot(node_id=node, gpu_indices=list(idx)) for node, idx in gpus]


def _resell_request(order_id: int, price: Decimal | str | int, *, from_hour: int = 0,
                    to_hour: int = 0, gpus: Iterable[SlotArg] = (), tif: str = "gtc",
                    expire_at: dt.datetime | None = None, client_order_id: str = "") -> Any:
    return pb.ResellRequest(
        order_id=order_id, from_hour=from_hour, to_hour=to_hour, gpus=_slots(gpus),
        price_micros=parse_price(price), time_in_force=wire.TIF_TO_PB[tif],
        expire_at_micros=int(expire_at.timestamp() * 1_000_000) if expire_at else 0,
        client_order_id=client_order_id)


class _Calls:
    """Every unary call, described once."""

    @staticmethod
    def list_products(page_token: str) -> _Call[tuple[list[Product], str]]:
        return _Call("market", "ListProducts", pb.ListProductsRequest(page_token=page_token),
                     lambda r: ([_product(p) for p in r.products], r.next_page_token))

    @staticmethod
    def register_capacity(cluster_id: str, sku: str, region: str, nodes: Iterable[NodeArg],
                          from_hour: int, to_hour: int) -> _Call[str]:
        return _Call("market", "RegisterCapacity", pb.RegisterCapacityRequest(
            cluster_id=cluster_id, sku=sku, region=region, nodes=[_node(n) for n in nodes],
            from_hour=from_hour, to_hour=to_hour), lambda r: r.cluster_id)

    @staticmethod
    def withdraw_capacity(cluster_id: str, from_hour: int, to_hour: int,
                          node_ids: Iterable[str] = ()) -> _Call[int]:
        return _Call("market", "WithdrawCapacity", pb.WithdrawCapacityRequest(
            cluster_id=cluster_id, from_hour=from_hour, to_hour=to_hour,
            node_ids=list(node_ids)), lambda r: r.gpu_hours_withdrawn)

    @staticmethod
    def place_order(request: Any) -> _Call[Order]:
        return _Call("market", "PlaceOrder", request, lambda r: _order(r.order))

    @staticmethod
    def cancel_order(order_id: int) -> _Call[Order]:
        return _Call("market", "CancelOrder", pb.CancelOrderRequest(order_id=order_id),
                     lambda r: _order(r.order))

    @staticmethod
    def amend_order(order_id: int, price: Decimal | str | int | None,
                    quantity: int | None) -> _Call[Order]:
        return _Call("market", "AmendOrder", pb.AmendOrderRequest(
            order_id=order_id, price_micros=parse_price(price) if price is not None else 0,
            quantity=quantity or 0), lambda r: _order(r.order))

    @staticmethod
    def get_order(order_id: int) -> _Call[Order]:
        return _Call("market", "GetOrder", pb.GetOrderRequest(order_id=order_id),
                     lambda r: _order(r.order))

    @staticmethod
    def list_orders(product_id: str, open_only: bool,
                    page_token: str) -> _Call[tuple[list[Order], str]]:
        return _Call("market", "ListOrders", pb.ListOrdersRequest(
            product_id=product_id, open_only=open_only, page_token=page_token),
            lambda r: ([_order(o) for o in r.orders], r.next_page_token))

    @staticmethod
    def get_book(product_id: str, depth: int = 20) -> _Call[Book]:
        return _Call("market", "GetBook", pb.GetBookRequest(product_id=product_id, depth=depth),
                     lambda r: _book(r.book))

    @staticmethod
    def list_allocations(product_id: str,
                         page_token: str) -> _Call[tuple[list[Allocation], str]]:
        return _Call("market", "ListAllocations", pb.ListAllocationsRequest(
            product_id=product_id, page_token=page_token),
            lambda r: ([_allocation(a) for a in r.allocations], r.next_page_token))

    @staticmethod
    def create_products(skus: Iterable[str], regions: Iterable[str], from_hour: int,
                        to_hour: int, tick: Decimal | str | int, lot: int,
                        gate_closure_lead: dt.timedelta) -> _Call[list[Product]]:
        skus, regions = list(skus), list(regions)
        return _Call("operator", "CreateProducts", pb.CreateProductsRequest(
            skus=skus, regions=regions, from_hour=from_hour, to_hour=to_hour,
            tick_micros=parse_price(tick), lot=lot,
            gate_closure_lead_micros=int(gate_closure_lead.total_seconds() * 1_000_000)),
            lambda r: _range(skus, regions, r))

    @staticmethod
    def create_account(name: str, roles: Iterable[str]) -> _Call[Account]:
        return _Call("operator", "CreateAccount", pb.CreateAccountRequest(
            name=name, roles=[wire.ROLE_TO_PB[x] for x in roles]),
            lambda r: Account(r.account_id, r.token))

    @staticmethod
    def cancel_all(product_id: str, range_id: int) -> _Call[list[Order]]:
        return _Call("market", "CancelAll", pb.CancelAllRequest(product_id=product_id,
                                                                range_id=range_id),
                     lambda r: [_order(o) for o in r.orders])

    @staticmethod
    def place_basket(legs: list[Any]) -> _Call[list[Order]]:
        return _Call("market", "PlaceBasket", pb.PlaceBasketRequest(legs=legs),
                     lambda r: [_order(x.order) for x in r.results])

    @staticmethod
    def place_one_of(alternatives: list[Any], client_order_id: str) -> _Call[Order]:
        return _Call("market", "PlaceOneOf", pb.PlaceOneOfRequest(
            alternatives=alternatives, client_order_id=client_order_id),
            lambda r: _order(r.order))

    @staticmethod
    def place_ask_range(ask: Any, hours: int) -> _Call[list[Order | RpcError]]:
        return _Call("market", "PlaceAskRange", pb.PlaceAskRangeRequest(ask=ask, hours=hours),
                     lambda r: [_result(x) for x in r.results])

    @staticmethod
    def resell(request: Any) -> _Call[list[Order | RpcError]]:
        return _Call("market", "Resell", request, lambda r: [_result(x) for x in r.results])

    @staticmethod
    def list_accounts(page_token: str) -> _Call[tuple[list[AccountInfo], str]]:
        return _Call("operator", "ListAccounts", pb.ListAccountsRequest(page_token=page_token),
                     lambda r: ([_account_info(a) for a in r.accounts], r.next_page_token))

    @staticmethod
    def disable_account(account_id: int) -> _Call[tuple[AccountInfo, list[Order]]]:
        return _Call("operator", "DisableAccount", pb.AccountRequest(account_id=account_id),
                     lambda r: (_account_info(r.account), [_order(o) for o in r.cancelled]))

    @staticmethod
    def account_change(method: str, account_id: int) -> _Call[AccountInfo]:
        return _Call("operator", method, pb.AccountRequest(account_id=account_id),
                     lambda r: _account_info(r.account))

    @staticmethod
    def rotate_token(account_id: int) -> _Call[Account]:
        return _Call("operator", "RotateToken", pb.AccountRequest(account_id=account_id),
                     lambda r: Account(r.account.account_id, r.token))

    @staticmethod
    def product_state(method: str, product_id: str) -> _Call[Product]:
        return _Call("operator", method, pb.ProductRequest(product_id=product_id),
                     lambda r: _product(r.product))

    @staticmethod
    def state_hash() -> _Call[tuple[int, str]]:
        return _Call("operator", "GetStateHash", pb.GetStateHashRequest(),
                     lambda r: (r.sequence, r.state_hash))

    @staticmethod
    def take_snapshot() -> _Call[tuple[int, str]]:
        return _Call("operator", "TakeSnapshot", pb.TakeSnapshotRequest(),
                     lambda r: (r.sequence, r.state_hash))


class _Book:
    """Tracks per-product sequences of a market-data stream to spot a gap."""

    def __init__(self) -> None:
        self.seq: dict[str, int] = {}

    def gap(self, e: MarketEvent) -> bool:
        if e.kind == "snapshot":
            self.seq[e.product_id] = e.sequence
            return False
        last = self.seq.get(e.product_id)
        self.seq[e.product_id] = e.sequence
        return last is None or e.sequence != last + 1


def _credentials(ca: bytes | None, cert: bytes | None, key: bytes | None) -> Any:
    return grpc.ssl_channel_credentials(root_certificates=ca, private_key=key,
                                        certificate_chain=cert)


class Client:
    """Blocking client. ``Client("127.0.0.1:50551", token)``; use as a context manager.
    For a TLS server pass ``tls_ca`` (PEM bytes of the CA that signed it), and
    ``tls_cert``/``tls_key`` when the server asks for client certificates."""

    def __init__(self, target: str, token: str, *, timeout: float = 10.0,
                 tls_ca: bytes | None = None, tls_cert: bytes | None = None,
                 tls_key: bytes | None = None) -> None:
        if tls_ca is None and tls_cert is None:
            self._channel = grpc.insecure_channel(target)
        else:
            self._channel = grpc.secure_channel(target, _credentials(tls_ca, tls_cert, tls_key))
        self._md = (("authorization", f"Bearer {token}"),)
        self._timeout = timeout
        self._stubs: dict[str, Any] = {"market": pb_grpc.MarketStub(self._channel),
                       "operator": pb_grpc.OperatorStub(self._channel)}

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()

    def _call(self, c: _Call[T]) -> T:
        try:
            reply = getattr(self._stubs[c.service], c.method)(
                c.request, metadata=self._md, timeout=self._timeout)
        except grpc.RpcError as err:
            raise _rpc_error(err) from None
        return c.convert(reply)

    def _all(self, page: Callable[[str], _Call[tuple[list[T], str]]]) -> list[T]:
        """Every item of a list call, page by page."""
        items: list[T] = []
        token = ""
        while True:
            got, token = self._call(page(token))
            items += got
            if not token:
                return items

    def list_products(self) -> list[Product]:
        return self._all(_Calls.list_products)

    def register_capacity(self, cluster_id: str, *, sku: str, region: str,
                          nodes: Iterable[NodeArg], from_hour: int,
                          to_hour: int) -> str:
        """`nodes`: (node id, GPUs), or (node id, GPUs, block, rack, NVLink domain) with
        the node's place as the site labels it (an empty label: shared with no other)."""
        return self._call(_Calls.register_capacity(cluster_id, sku, region, nodes, from_hour,
                                                   to_hour))

    def withdraw_capacity(self, cluster_id: str, *, from_hour: int, to_hour: int,
                          node_ids: Iterable[str] = ()) -> int:
        return self._call(_Calls.withdraw_capacity(cluster_id, from_hour, to_hour, node_ids))

    def place_order(self, product_id: str, side: Side, price: Decimal | str | int,
                    quantity: int, **terms: Any) -> Order:
        """Terms: client_order_id, order_type, tif, expire_at, post_only, stp,
        cluster_id (asks), gang (bids), hours (bids: 2 to 168 makes a block: the same
        GPUs for that many consecutive hours from the product's, all or none: at once
        with IOC or FOK, or waiting whole with GTC or GTD until asks let it fill; the
        price is the limit per GPU-hour over the whole block), window_hours (a
        block may start anywhere inside this many hours from the product's: the cheapest
        start wins, ties to the earliest), min_quantity (bids of one hour: fill at least
        this many GPUs on entry or nothing; the rest goes on as tif says),
        locality (bids: "node", "nvlink_domain", "rack", "block" or "cluster": all the
        GPUs in one domain at that level, or none; the order is placed as a block),
        locality_preferred (the tightest level from there out that can be had instead),
        colocate_with (the trade id of an allocation the buyer holds: the same cluster,
        and domain at `locality`),
        display_quantity (resting asks: an iceberg showing at most this many GPUs at a
        time; each refill takes a new time priority), resell_trade_id (a resale ask: GPUs
        of an allocation this account holds; product_id and cluster_id may be "", and
        quantity 0 offers all of resell_gpus), resell_gpus (which of its GPUs, as
        (node id, GPU indices); empty: all not on offer already)."""
        return self._call(_Calls.place_order(
            _order_request(product_id, side, price, quantity, **terms)))

    def cancel_order(self, order_id: int) -> Order:
        return self._call(_Calls.cancel_order(order_id))

    def amend_order(self, order_id: int, *, price: Decimal | str | int | None = None,
                    quantity: int | None = None) -> Order:
        return self._call(_Calls.amend_order(order_id, price, quantity))

    def get_order(self, order_id: int) -> Order:
        return self._call(_Calls.get_order(order_id))

    def list_orders(self, product_id: str = "", *, open_only: bool = False) -> list[Order]:
        """The account's orders, oldest first (every page)."""
        return self._all(lambda t: _Calls.list_orders(product_id, open_only, t))

    def get_book(self, product_id: str, depth: int = 20) -> Book:
        return self._call(_Calls.get_book(product_id, depth))

    def list_allocations(self, product_id: str = "") -> list[Allocation]:
        """The account's allocations, oldest first (every page)."""
        return self._all(lambda t: _Calls.list_allocations(product_id, t))

    def create_products(self, *, skus: Iterable[str], regions: Iterable[str], from_hour: int,
                        to_hour: int, tick: Decimal | str | int = "0.01", lot: int = 1,
                        gate_closure_lead: dt.timedelta = dt.timedelta(hours=1)
                        ) -> list[Product]:
        return self._call(_Calls.create_products(skus, regions, from_hour, to_hour, tick, lot,
                                                 gate_closure_lead))

    def create_account(self, name: str, roles: Iterable[str]) -> Account:
        return self._call(_Calls.create_account(name, roles))

    def cancel_all(self, product_id: str = "", *, range_id: int = 0) -> list[Order]:
        """Mass cancel: every open order of this account (of one product, or of one
        range, if given)."""
        return self._call(_Calls.cancel_all(product_id, range_id))

    def place_basket(self, legs: Iterable[dict[str, Any]]) -> list[Order]:
        """A linked basket: up to 100 one-hour orders (each a dict of place_order's
        arguments) across products, all filled completely or none, at once. Returns the
        legs' orders: all filled, or all cancelled (fill_or_kill)."""
        return self._call(_Calls.place_basket([_order_request(**o) for o in legs]))

    def place_one_of(self, alternatives: Iterable[dict[str, Any]], *,
                     client_order_id: str = "") -> Order:
        """One-of: up to 16 block (or window) bids, each a dict of place_order's
        arguments (side buy, hours, and one tif for all); at most one fills. With ioc or
        fok, at once: the cheapest that can, ties to the first. With gtc (or gtd at one
        time), when none can fill now the group waits, and the first alternative that
        can fill as asks arrive does, cancelling the others in the same step. Returns
        the order the group became (the first alternative while it waits)."""
        alts = [_order_request(**{"side": "buy", **a}) for a in alternatives]
        return self._call(_Calls.place_one_of(alts, client_order_id))

    def place_ask_range(self, product_id: str, price: Decimal | str | int, quantity: int,
                        *, hours: int, cluster_id: str, **terms: Any) -> list[Order | RpcError]:
        """A seller's range: one ask per hour for ``hours`` hours from ``product_id``'s,
        each placed or refused on its own (the results in hour order); the placed ones
        share a ``range_id`` that ``cancel_all(range_id=...)`` withdraws at once."""
        ask = _order_request(product_id, "sell", price, quantity, cluster_id=cluster_id,
                             **terms)
        return self._call(_Calls.place_ask_range(ask, hours))

    def resell(self, order_id: int, price: Decimal | str | int, **terms: Any
               ) -> list[Order | RpcError]:
        """Resale of a buy order's GPUs (a block, or a one-hour bid): one resale ask per
        allocation of it this account still holds in the hours asked, each placed or
        refused on its own, sharing a range_id. Terms: from_hour and to_hour (hours
        since the epoch, [from, to); 0: from the first, to the last), gpus (which, as
        (node id, GPU indices); empty: all still held), tif, expire_at, client_order_id.
        Each fill splits the allocation: the buyer's names it as parent, this account
        keeps the rest and pays the venue's resale fee."""
        return self._call(_Calls.resell(_resell_request(order_id, price, **terms)))

    def list_accounts(self) -> list[AccountInfo]:
        return self._all(_Calls.list_accounts)

    def disable_account(self, account_id: int) -> tuple[AccountInfo, list[Order]]:
        """The kill switch: refuses the account's calls and cancels its open orders."""
        return self._call(_Calls.disable_account(account_id))

    def enable_account(self, account_id: int) -> AccountInfo:
        return self._call(_Calls.account_change("EnableAccount", account_id))

    def rotate_token(self, account_id: int) -> Account:
        """A new token (shown once); the old one stops working at once."""
        return self._call(_Calls.rotate_token(account_id))

    def revoke_token(self, account_id: int) -> AccountInfo:
        return self._call(_Calls.account_change("RevokeToken", account_id))

    def halt(self, product_id: str) -> Product:
        return self._call(_Calls.product_state("Halt", product_id))

    def resume(self, product_id: str) -> Product:
        return self._call(_Calls.product_state("Resume", product_id))

    def close_product(self, product_id: str) -> Product:
        return self._call(_Calls.product_state("CloseProduct", product_id))

    def state_hash(self) -> tuple[int, str]:
        return self._call(_Calls.state_hash())

    def take_snapshot(self) -> tuple[int, str]:
        """Writes a snapshot now; returns its sequence and state hash."""
        return self._call(_Calls.take_snapshot())

    def market_data(self, product_ids: Iterable[str] = (), *,
                    resubscribe: bool = True) -> Iterator[MarketEvent]:
        """Snapshot, then changes, per product. On a sequence gap, when the server drops
        a lagging stream, or when a shard behind a gateway fails over to its standby,
        resubscribes and starts again from a fresh snapshot."""
        ids = list(product_ids)
        lost = 0  # failovers in a row without an update since
        while True:
            call = self._stubs["market"].StreamMarketData(
                pb.StreamMarketDataRequest(product_ids=ids), metadata=self._md)
            seen = _Book()
            try:
                for m in _updates(call):
                    e = _market_event(m)
                    if seen.gap(e):
                        call.cancel()
                        break
                    lost = 0
                    yield e
                else:
                    return
            except grpc.RpcError as err:
                lost += 1
                if not resubscribe or not _resubscribable(err, lost):
                    raise _rpc_error(err) from None
            finally:
                call.cancel()
            if not resubscribe:
                return

    def executions(self) -> Iterator[Execution]:
        """The caller's own order events, fills and allocations, as they happen."""
        call = self._stubs["market"].StreamExecutions(pb.StreamExecutionsRequest(),
                                                      metadata=self._md)
        try:
            for batch in call:
                for m in batch.executions:
                    yield _execution(m)
        except grpc.RpcError as err:
            if err.code() != grpc.StatusCode.CANCELLED:
                raise _rpc_error(err) from None
        finally:
            call.cancel()

    def submit_orders(self, orders: Iterable[dict[str, Any]], *, per_message: int = 100
                      ) -> Iterator[Order | RpcError]:
        """Bulk entry over one stream: each dict holds place_order's arguments; they travel
        ``per_message`` to a message. Yields, in order, the order or the error for each."""
        def requests() -> Iterator[Any]:
            batch: list[Any] = []
            for o in orders:
                batch.append(_order_request(**o))
                if len(batch) == per_message:
                    yield pb.SubmitOrdersRequest(orders=batch)
                    batch = []
            if batch:
                yield pb.SubmitOrdersRequest(orders=batch)
        try:
            for r in self._stubs["market"].SubmitOrders(requests(), metadata=self._md):
                for x in r.results:
                    if x.code:
                        yield RpcError(_code(x.code), x.reason, x.message)
                    else:
                        yield _order(x.order)
        except grpc.RpcError as err:
            raise _rpc_error(err) from None


def _updates(call: Any) -> Iterator[Any]:
    """The market-data updates of a stream of batches, one at a time."""
    for batch in call:
        yield from batch.updates


async def _aupdates(call: Any) -> AsyncIterator[Any]:
    """As ``_updates``, for the asyncio client."""
    async for batch in call:
        for m in batch.updates:
            yield m


def _code(n: int) -> grpc.StatusCode:
    return next(c for c in grpc.StatusCode if c.value[0] == n)


class AsyncClient:
    """asyncio client with the same calls as ``Client``, each awaited."""

    def __init__(self, target: str, token: str, *, timeout: float = 10.0,
                 tls_ca: bytes | None = None, tls_cert: bytes | None = None,
                 tls_key: bytes | None = None) -> None:
        if tls_ca is None and tls_cert is None:
            self._channel = grpc.aio.insecure_channel(target)
        else:
            self._channel = grpc.aio.secure_channel(
                target, _credentials(tls_ca, tls_cert, tls_key))
        self._md = (("authorization", f"Bearer {token}"),)
        self._timeout = timeout
        self._stubs: dict[str, Any] = {"market": pb_grpc.MarketStub(self._channel),
                       "operator": pb_grpc.OperatorStub(self._channel)}

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()

    async def _call(self, c: _Call[T]) -> T:
        try:
            reply = await getattr(self._stubs[c.service], c.method)(
                c.request, metadata=self._md, timeout=self._timeout)
        except grpc.RpcError as err:
            raise _rpc_error(err) from None
        return c.convert(reply)

    async def _all(self, page: Callable[[str], _Call[tuple[list[T], str]]]) -> list[T]:
        """Every item of a list call, page by page."""
        items: list[T] = []
        token = ""
        while True:
            got, token = await self._call(page(token))
            items += got
            if not token:
                return items

    async def list_products(self) -> list[Product]:
        return await self._all(_Calls.list_products)

    async def register_capacity(self, cluster_id: str, *, sku: str, region: str,
                                nodes: Iterable[NodeArg], from_hour: int,
                                to_hour: int) -> str:
        return await self._call(_Calls.register_capacity(cluster_id, sku, region, nodes,
                                                         from_hour, to_hour))

    async def withdraw_capacity(self, cluster_id: str, *, from_hour: int, to_hour: int,
                                node_ids: Iterable[str] = ()) -> int:
        return await self._call(_Calls.withdraw_capacity(cluster_id, from_hour, to_hour,
                                                         node_ids))

    async def create_products(self, *, skus: Iterable[str], regions: Iterable[str],
                              from_hour: int, to_hour: int, tick: Decimal | str | int = "0.01",
                              lot: int = 1,
                              gate_closure_lead: dt.timedelta = dt.timedelta(hours=1)
                              ) -> list[Product]:
        return await self._call(_Calls.create_products(skus, regions, from_hour, to_hour, tick,
                                                       lot, gate_closure_lead))

    async def create_account(self, name: str, roles: Iterable[str]) -> Account:
        return await self._call(_Calls.create_account(name, roles))

    async def cancel_all(self, product_id: str = "", *, range_id: int = 0) -> list[Order]:
        return await self._call(_Calls.cancel_all(product_id, range_id))

    async def place_basket(self, legs: Iterable[dict[str, Any]]) -> list[Order]:
        return await self._call(_Calls.place_basket([_order_request(**o) for o in legs]))

    async def place_one_of(self, alternatives: Iterable[dict[str, Any]], *,
                           client_order_id: str = "") -> Order:
        alts = [_order_request(**{"side": "buy", **a}) for a in alternatives]
        return await self._call(_Calls.place_one_of(alts, client_order_id))

    async def place_ask_range(self, product_id: str, price: Decimal | str | int,
                              quantity: int, *, hours: int, cluster_id: str,
                              **terms: Any) -> list[Order | RpcError]:
        ask = _order_request(product_id, "sell", price, quantity, cluster_id=cluster_id,
                             **terms)
        return await self._call(_Calls.place_ask_range(ask, hours))

    async def resell(self, order_id: int, price: Decimal | str | int, **terms: Any
                     ) -> list[Order | RpcError]:
        return await self._call(_Calls.resell(_resell_request(order_id, price, **terms)))

    async def list_accounts(self) -> list[AccountInfo]:
        return await self._all(_Calls.list_accounts)

    async def disable_account(self, account_id: int) -> tuple[AccountInfo, list[Order]]:
        return await self._call(_Calls.disable_account(account_id))

    async def enable_account(self, account_id: int) -> AccountInfo:
        return await self._call(_Calls.account_change("EnableAccount", account_id))

    async def rotate_token(self, account_id: int) -> Account:
        return await self._call(_Calls.rotate_token(account_id))

    async def revoke_token(self, account_id: int) -> AccountInfo:
        return await self._call(_Calls.account_change("RevokeToken", account_id))

    async def halt(self, product_id: str) -> Product:
        return await self._call(_Calls.product_state("Halt", product_id))

    async def resume(self, product_id: str) -> Product:
        return await self._call(_Calls.product_state("Resume", product_id))

    async def close_product(self, product_id: str) -> Product:
        return await self._call(_Calls.product_state("CloseProduct", product_id))

    async def state_hash(self) -> tuple[int, str]:
        return await self._call(_Calls.state_hash())

    async def take_snapshot(self) -> tuple[int, str]:
        return await self._call(_Calls.take_snapshot())

    async def place_order(self, product_id: str, side: Side, price: Decimal | str | int,
                          quantity: int, **terms: Any) -> Order:
        return await self._call(_Calls.place_order(
            _order_request(product_id, side, price, quantity, **terms)))

    async def cancel_order(self, order_id: int) -> Order:
        return await self._call(_Calls.cancel_order(order_id))

    async def amend_order(self, order_id: int, *, price: Decimal | str | int | None = None,
                          quantity: int | None = None) -> Order:
        return await self._call(_Calls.amend_order(order_id, price, quantity))

    async def get_order(self, order_id: int) -> Order:
        return await self._call(_Calls.get_order(order_id))

    async def list_orders(self, product_id: str = "", *, open_only: bool = False
                          ) -> list[Order]:
        return await self._all(lambda t: _Calls.list_orders(product_id, open_only, t))

    async def get_book(self, product_id: str, depth: int = 20) -> Book:
        return await self._call(_Calls.get_book(product_id, depth))

    async def list_allocations(self, product_id: str = "") -> list[Allocation]:
        return await self._all(lambda t: _Calls.list_allocations(product_id, t))

    async def market_data(self, product_ids: Iterable[str] = ()) -> AsyncIterator[MarketEvent]:
        """As ``Client.market_data``: resubscribes from a snapshot after a gap, a drop or
        a shard's failover."""
        ids = list(product_ids)
        lost = 0
        while True:
            call = self._stubs["market"].StreamMarketData(
                pb.StreamMarketDataRequest(product_ids=ids), metadata=self._md)
            seen = _Book()
            try:
                async for m in _aupdates(call):
                    e = _market_event(m)
                    if seen.gap(e):
                        break
                    lost = 0
                    yield e
                else:
                    return
            except grpc.RpcError as err:
                lost += 1
                if not _resubscribable(err, lost):
                    raise _rpc_error(err) from None
            finally:
                call.cancel()

    async def executions(self) -> AsyncIterator[Execution]:
        call = self._stubs["market"].StreamExecutions(pb.StreamExecutionsRequest(),
                                                      metadata=self._md)
        try:
            async for batch in call:
                for m in batch.executions:
                    yield _execution(m)
        finally:
            call.cancel()
