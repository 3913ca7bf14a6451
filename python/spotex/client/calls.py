"""Every call described once, as a request and a converter of its answer
(``_Calls``), with what both clients share: order and resale requests, the gap check
of a market-data stream, TLS credentials. The two clients only differ in how they send."""

from __future__ import annotations

import datetime as dt
import secrets
from collections.abc import AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar

import grpc
import grpc.aio

from spotex import wire
from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex._proto.spotex.v1 import spotex_pb2_grpc as pb_grpc
from spotex.client.convert import (
    _account_info,
    _allocation,
    _auction,
    _balance,
    _book,
    _candle,
    _curve,
    _daily_index,
    _indicative,
    _order,
    _product,
    _range,
    _result,
    _tape_trade,
    _transfer,
)
from spotex.client.errors import RpcError
from spotex.client.types import (
    Account,
    AccountInfo,
    Allocation,
    AuctionResult,
    Balance,
    Book,
    Candle,
    Curve,
    DailyIndex,
    IndicativeAuction,
    MarketEvent,
    NodeArg,
    Order,
    Product,
    Side,
    SlotArg,
    TapeTrade,
    Transfer,
)
from spotex.money import parse_price

T = TypeVar("T")


@dataclass(frozen=True)
class _Call(Generic[T]):
    service: Literal["market", "operator"]
    method: str
    request: Any
    convert: Callable[[Any], T]
    # the least deadline this call needs, seconds (an auction solves for a while)
    timeout: float = 0.0


def _micros(when: dt.datetime | None) -> int:
    """A time as microseconds since the epoch (naive: UTC); None: 0."""
    if when is None:
        return 0
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return int(when.timestamp() * 1_000_000)


def _new_client_order_id() -> str:
    """An id for an order the caller gave none: ``sdk-`` and 64 random bits, unique per
    order, and short enough (20 chars) that a range's ``#index`` stays within the venue's
    64."""
    return "sdk-" + secrets.token_hex(8)


def _with_id(terms: dict[str, Any]) -> dict[str, Any]:
    """``terms`` with a client order id: the caller's, or a new one. Every order the SDK
    places carries one, so that an unknown outcome can be looked up."""
    return {**terms, "client_order_id": terms.get("client_order_id") or _new_client_order_id()}


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
                   resell_trade_id: int = 0, resell_gpus: Iterable[SlotArg] = (),
                   auction: bool = False) -> Any:
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
        resell_trade_id=resell_trade_id, resell_gpus=_slots(resell_gpus), auction=auction)


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
    def get_order_by_client_id(client_order_id: str) -> _Call[Order]:
        """The caller's order of this client order id: UNKNOWN_ORDER when there is none,
        JOURNAL_UNAVAILABLE while the venue cannot say yet."""
        return _Call("market", "GetOrder", pb.GetOrderRequest(client_order_id=client_order_id),
                     lambda r: _order(r.order))

    @staticmethod
    def find_order(order_id: int, client_order_id: str) -> _Call[Order]:
        """``get_order``'s call: by id, or (``order_id`` 0) by client order id."""
        if order_id:
            return _Calls.get_order(order_id)
        if client_order_id:
            return _Calls.get_order_by_client_id(client_order_id)
        raise ValueError("give an order_id or a client_order_id")

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
    def run_auction(from_hour: int, to_hour: int, time_limit: float | None
                    ) -> _Call[AuctionResult]:
        ms = 0 if time_limit is None else max(1, round(time_limit * 1000))
        # the server's own limit may be longer than the caller's: up to an hour
        wait = 3 * (time_limit or 3600) + 30
        return _Call("operator", "RunAuction",
                     pb.RunAuctionRequest(from_hour=from_hour, to_hour=to_hour,
                                          time_limit_ms=ms), _auction, wait)

    @staticmethod
    def auction_result(auction_id: int) -> _Call[AuctionResult]:
        return _Call("market", "GetAuctionResult",
                     pb.GetAuctionResultRequest(auction_id=auction_id), _auction)

    @staticmethod
    def indicative_auction(from_hour: int, to_hour: int) -> _Call[IndicativeAuction]:
        return _Call("market", "GetIndicativeAuction",
                     pb.GetIndicativeAuctionRequest(from_hour=from_hour, to_hour=to_hour),
                     _indicative, 60.0)

    @staticmethod
    def list_auctions(page_token: str) -> _Call[tuple[list[AuctionResult], str]]:
        return _Call("market", "ListAuctions", pb.ListAuctionsRequest(page_token=page_token),
                     lambda r: ([_auction(a) for a in r.auctions], r.next_page_token))

    # ---- money ------------------------------------------------------------------------

    @staticmethod
    def balance(account_id: int) -> _Call[Balance]:
        return _Call("market", "GetBalance", pb.GetBalanceRequest(account_id=account_id),
                     _balance)

    @staticmethod
    def list_transfers(account_id: int, since: dt.datetime | None, until: dt.datetime | None,
                       page_token: str) -> _Call[tuple[list[Transfer], str]]:
        return _Call("market", "ListTransfers", pb.ListTransfersRequest(
            account_id=account_id, from_micros=_micros(since), to_micros=_micros(until),
            page_size=1000, page_token=page_token),
            lambda r: ([_transfer(t) for t in r.transfers], r.next_page_token))

    @staticmethod
    def money(method: str, request: Any) -> _Call[tuple[Balance, Transfer | None]]:
        return _Call("operator", method, request, lambda r: (
            _balance(r.balance), _transfer(r.transfer) if r.HasField("transfer") else None))

    @staticmethod
    def deposit(account_id: int, amount: Decimal | str | int, reference: str
                ) -> _Call[tuple[Balance, Transfer | None]]:
        return _Calls.money("Deposit", pb.DepositRequest(
            account_id=account_id, amount_micros=parse_price(amount), reference=reference))

    @staticmethod
    def withdraw(account_id: int, amount: Decimal | str | int, reference: str
                 ) -> _Call[tuple[Balance, Transfer | None]]:
        return _Calls.money("Withdraw", pb.WithdrawRequest(
            account_id=account_id, amount_micros=parse_price(amount), reference=reference))

    @staticmethod
    def set_credit_limit(account_id: int, limit: Decimal | str | int
                         ) -> _Call[tuple[Balance, Transfer | None]]:
        return _Calls.money("SetCreditLimit", pb.SetCreditLimitRequest(
            account_id=account_id, credit_limit_micros=parse_price(limit)))

    @staticmethod
    def set_fees(account_id: int, maker_bps: int, taker_bps: int, clear: bool
                 ) -> _Call[tuple[Balance, Transfer | None]]:
        return _Calls.money("SetFees", pb.SetFeesRequest(
            account_id=account_id, maker_fee_bps=maker_bps, taker_fee_bps=taker_bps,
            clear=clear))

    # ---- price discovery ------------------------------------------------------------

    @staticmethod
    def list_trades(product_id: str, sku: str, region: str, since: dt.datetime | None,
                    until: dt.datetime | None, page_size: int, page_token: str
                    ) -> _Call[tuple[list[TapeTrade], str]]:
        return _Call("market", "ListTrades", pb.ListTradesRequest(
            product_id=product_id, sku=sku, region=region, from_micros=_micros(since),
            to_micros=_micros(until), page_size=page_size, page_token=page_token),
            lambda r: ([_tape_trade(t) for t in r.trades], r.next_page_token))

    @staticmethod
    def list_candles(product_id: str, sku: str, region: str, interval: str,
                     since: dt.datetime | None, until: dt.datetime | None, page_token: str
                     ) -> _Call[tuple[list[Candle], str]]:
        return _Call("market", "ListCandles", pb.ListCandlesRequest(
            product_id=product_id, sku=sku, region=region, interval=interval,
            from_micros=_micros(since), to_micros=_micros(until), page_size=1000,
            page_token=page_token),
            lambda r: ([_candle(c) for c in r.candles], r.next_page_token))

    @staticmethod
    def curve(sku: str, region: str, from_hour: int, to_hour: int) -> _Call[Curve]:
        return _Call("market", "GetCurve", pb.GetCurveRequest(
            sku=sku, region=region, from_hour=from_hour, to_hour=to_hour), _curve)

    @staticmethod
    def index(sku: str, region: str, day: dt.date | str | None) -> _Call[DailyIndex]:
        return _Call("market", "GetIndex", pb.GetIndexRequest(
            sku=sku, region=region, day=str(day or "")), _daily_index)

    @staticmethod
    def list_index(sku: str, region: str, from_day: dt.date | str | None,
                   to_day: dt.date | str | None, page_token: str
                   ) -> _Call[tuple[list[DailyIndex], str]]:
        return _Call("market", "ListIndex", pb.ListIndexRequest(
            sku=sku, region=region, from_day=str(from_day or ""), to_day=str(to_day or ""),
            page_size=1000, page_token=page_token),
            lambda r: ([_daily_index(d) for d in r.days], r.next_page_token))

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


def _connect(channels: Any, target: str, token: str, ca: bytes | None, cert: bytes | None,
             key: bytes | None) -> tuple[Any, tuple[tuple[str, str], ...], dict[str, Any]]:
    """A channel from ``channels`` (``grpc`` or ``grpc.aio``), TLS when given a CA or a
    client certificate; the call metadata carrying the token; the two services' stubs."""
    if ca is None and cert is None:
        channel = channels.insecure_channel(target)
    else:
        channel = channels.secure_channel(target, grpc.ssl_channel_credentials(
            root_certificates=ca, private_key=key, certificate_chain=cert))
    return (channel, (("authorization", f"Bearer {token}"),),
            {"market": pb_grpc.MarketStub(channel), "operator": pb_grpc.OperatorStub(channel)})


def _updates(call: Any) -> Iterator[Any]:
    """The market-data updates of a stream of batches, one at a time."""
    for batch in call:
        yield from batch.updates


async def _aupdates(call: Any) -> AsyncIterator[Any]:
    """As ``_updates``, for the asyncio client."""
    async for batch in call:
        for m in batch.updates:
            yield m
