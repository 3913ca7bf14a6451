"""``AsyncClient``: the asyncio SDK, with the same calls as ``Client``, each awaited."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import AsyncIterator, Callable, Iterable
from decimal import Decimal
from typing import Any

import grpc
import grpc.aio

from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex.client.calls import (
    T,
    _aupdates,
    _Book,
    _Call,
    _Calls,
    _connect,
    _new_client_order_id,
    _order_request,
    _resell_request,
    _with_id,
)
from spotex.client.convert import _market_event
from spotex.client.errors import RpcError, _resubscribable, _rpc_error
from spotex.client.executions import AsyncExecutionStream
from spotex.client.resolve import (
    SETTLE,
    Lookup,
    NotApplied,
    Recovery,
    Resolving,
    Steps,
    of_amend,
    of_asks,
    of_basket,
    of_cancel,
    of_order,
)
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
    Execution,
    IndicativeAuction,
    MarketEvent,
    NodeArg,
    Order,
    Product,
    Side,
    TapeTrade,
    Transfer,
)


class AsyncClient:
    """asyncio client with the same calls as ``Client``, each awaited, and the same
    resolution of unknown outcomes (``resolve_timeout``, ``on_unknown``)."""

    def __init__(self, target: str, token: str, *, timeout: float = 10.0,
                 tls_ca: bytes | None = None, tls_cert: bytes | None = None,
                 tls_key: bytes | None = None, resolve_timeout: float = 30.0,
                 on_unknown: Callable[[str], None] | None = None,
                 market_data_target: str | None = None) -> None:
        self._channel, self._md, self._stubs = _connect(grpc.aio, target, token, tls_ca,
                                                        tls_cert, tls_key)
        # market_data() from the venue's market-data relays (docs/scaling.md), when given
        self._md_channel: Any
        self._md_channel, _, self._md_stubs = (
            _connect(grpc.aio, market_data_target, token, tls_ca, tls_cert, tls_key)
            if market_data_target else (None, None, self._stubs))
        self._timeout = timeout
        self.resolve_timeout = resolve_timeout
        self.on_unknown = on_unknown

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self._channel.close()
        if self._md_channel is not None:
            await self._md_channel.close()

    async def _call(self, c: _Call[T], timeout: float | None = None) -> T:
        try:
            reply = await getattr(self._stubs[c.service], c.method)(
                c.request, metadata=self._md,
                timeout=max(self._timeout, c.timeout) if timeout is None else timeout)
        except grpc.RpcError as err:
            raise _rpc_error(err) from None
        return c.convert(reply)

    async def _steps(self, steps: Steps[T], timeout: float) -> T:
        """As ``Client._steps``."""
        try:
            c = next(steps)
            while True:
                try:
                    answer = await self._call(c, timeout)
                except RpcError as err:
                    c = steps.throw(err)
                else:
                    c = steps.send(answer)
        except StopIteration as done:
            result: T = done.value
            return result

    async def _command(self, c: _Call[T], how: Recovery[T]) -> T:
        """As ``Client._command``."""
        deadline = time.monotonic() + max(self._timeout, c.timeout)
        try:
            return await self._call(c)
        except RpcError as err:
            if not err.outcome_unknown:
                raise
            r = Resolving(err, how, self.resolve_timeout, deadline + SETTLE)
        look: Lookup[T] | None = how.look
        if look is None or r.bound <= 0:
            raise r.unresolved()
        if self.on_unknown is not None:
            self.on_unknown(how.what)
        while True:
            try:
                return await self._steps(look(), r.timeout(self._timeout))
            except (RpcError, NotApplied) as answer:
                wait = r.after(answer)
            await asyncio.sleep(wait)

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
        orders = [_with_id(o) for o in legs]
        return await self._command(
            _Calls.place_basket([_order_request(**o) for o in orders]),
            of_basket([o["client_order_id"] for o in orders]))

    async def place_one_of(self, alternatives: Iterable[dict[str, Any]], *,
                           client_order_id: str = "") -> Order:
        alts = [_order_request(**{"side": "buy", **a}) for a in alternatives]
        cid = client_order_id or _new_client_order_id()
        return await self._command(_Calls.place_one_of(alts, cid), of_order(cid))

    async def place_ask_range(self, product_id: str, price: Decimal | str | int,
                              quantity: int, *, hours: int, cluster_id: str,
                              **terms: Any) -> list[Order | RpcError]:
        terms = _with_id(terms)
        ask = _order_request(product_id, "sell", price, quantity, cluster_id=cluster_id,
                             **terms)
        return await self._command(_Calls.place_ask_range(ask, hours),
                                   of_asks(terms["client_order_id"]))

    async def resell(self, order_id: int, price: Decimal | str | int, **terms: Any
                     ) -> list[Order | RpcError]:
        terms = _with_id(terms)
        return await self._command(_Calls.resell(_resell_request(order_id, price, **terms)),
                                   of_asks(terms["client_order_id"]))

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

    async def run_auction(self, from_hour: int, to_hour: int, *,
                          time_limit: float | None = None) -> AuctionResult:
        return await self._call(_Calls.run_auction(from_hour, to_hour, time_limit))

    async def auction_result(self, auction_id: int = 0) -> AuctionResult:
        return await self._call(_Calls.auction_result(auction_id))

    async def indicative_auction(self, from_hour: int, to_hour: int) -> IndicativeAuction:
        return await self._call(_Calls.indicative_auction(from_hour, to_hour))

    async def list_auctions(self) -> list[AuctionResult]:
        return await self._all(_Calls.list_auctions)

    # ---- money (docs/trading.md, "Money") --------------------------------------------

    async def balance(self, account_id: int = 0) -> Balance:
        """The caller's balance (0: its own); an operator may name any account, and its
        own is the venue's fee account, which every fee is paid to."""
        return await self._call(_Calls.balance(account_id))

    async def transfers(self, account_id: int = 0, *, since: dt.datetime | None = None,
                  until: dt.datetime | None = None) -> list[Transfer]:
        """The caller's transfers (an operator may name any account), oldest first."""
        return await self._all(lambda t: _Calls.list_transfers(account_id, since, until, t))

    async def deposit(self, account_id: int, amount: Decimal | str | int,
                reference: str = "") -> tuple[Balance, Transfer | None]:
        """Operator: money into an account (dollars, exactly)."""
        return await self._call(_Calls.deposit(account_id, amount, reference))

    async def withdraw(self, account_id: int, amount: Decimal | str | int,
                 reference: str = "") -> tuple[Balance, Transfer | None]:
        """Operator: money out of an account, never more than current less holds."""
        return await self._call(_Calls.withdraw(account_id, amount, reference))

    async def set_credit_limit(self, account_id: int, limit: Decimal | str | int
                         ) -> tuple[Balance, Transfer | None]:
        """Operator: how far below zero the account's buys may take it."""
        return await self._call(_Calls.set_credit_limit(account_id, limit))

    async def set_fees(self, account_id: int, maker_bps: int, taker_bps: int, *,
                 clear: bool = False) -> tuple[Balance, Transfer | None]:
        """Operator: the venue's fees (account 0) or one account's own (``clear``: the
        venue's again)."""
        return await self._call(_Calls.set_fees(account_id, maker_bps, taker_bps, clear))

    # ---- price discovery (docs/trading.md, "Prices") ----------------------------------

    async def list_trades(self, product_id: str = "", *, sku: str = "", region: str = "",
                    since: dt.datetime | None = None, until: dt.datetime | None = None,
                    limit: int | None = 100) -> list[TapeTrade]:
        """The public tape of one product, or of a SKU and region (every hour of them),
        newest first: trades in [since, until), at most ``limit`` (None: all)."""
        out: list[TapeTrade] = []
        token = ""
        while True:
            size = 1000 if limit is None else max(1, min(1000, limit - len(out)))
            got, token = await self._call(_Calls.list_trades(product_id, sku, region, since,
                                                              until, size, token))
            out += got
            if not token or (limit is not None and len(out) >= limit):
                return out if limit is None else out[:limit]

    async def list_candles(self, product_id: str = "", *, sku: str = "", region: str = "",
                     interval: str = "1h", since: dt.datetime | None = None,
                     until: dt.datetime | None = None) -> list[Candle]:
        """OHLCV at ``interval`` (1m, 1h or 1d), oldest first; intervals without trades
        are left out."""
        return await self._all(lambda t: _Calls.list_candles(product_id, sku, region, interval,
                                                          since, until, t))

    async def curve(self, sku: str, region: str, *, from_hour: int = 0, to_hour: int = 0
              ) -> Curve:
        """The forward curve: every listed hour's best bid and ask, last trade, last
        auction price and volume, in one call."""
        return await self._call(_Calls.curve(sku, region, from_hour, to_hour))

    async def index(self, sku: str, region: str, day: dt.date | str | None = None
              ) -> DailyIndex:
        """The daily index of a day (None: the latest day that ended)."""
        return await self._call(_Calls.index(sku, region, day))

    async def list_index(self, sku: str, region: str, *, from_day: dt.date | str | None = None,
                   to_day: dt.date | str | None = None) -> list[DailyIndex]:
        """Every day's index, newest first (no_index days included)."""
        return await self._all(lambda t: _Calls.list_index(sku, region, from_day, to_day, t))

    async def take_snapshot(self) -> tuple[int, str]:
        return await self._call(_Calls.take_snapshot())

    async def place_order(self, product_id: str, side: Side, price: Decimal | str | int,
                          quantity: int, **terms: Any) -> Order:
        terms = _with_id(terms)
        return await self._command(_Calls.place_order(
            _order_request(product_id, side, price, quantity, **terms)),
            of_order(terms["client_order_id"]))

    async def cancel_order(self, order_id: int) -> Order:
        return await self._command(_Calls.cancel_order(order_id), of_cancel(order_id))

    async def amend_order(self, order_id: int, *, price: Decimal | str | int | None = None,
                          quantity: int | None = None) -> Order:
        return await self._command(_Calls.amend_order(order_id, price, quantity),
                                   of_amend(order_id))

    async def get_order(self, order_id: int = 0, *, client_order_id: str = "") -> Order:
        return await self._call(_Calls.find_order(order_id, client_order_id))

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
            call = self._md_stubs["market"].StreamMarketData(
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
                if not _resubscribable(err, lost, self._md_channel is not None):
                    raise _rpc_error(err) from None
                if err.code() == grpc.StatusCode.UNAVAILABLE:
                    await asyncio.sleep(0.5 * lost)  # a relay being started again
            finally:
                call.cancel()

    async def subscribe_executions(self, from_sequence: int | None = None, *, resume: bool = True,
                                   reconnect_timeout: float = 30.0) -> AsyncExecutionStream:
        """As ``Client.subscribe_executions``: returns once the subscription is live."""
        stream = AsyncExecutionStream(self._stubs, self._md, from_sequence, resume,
                                      reconnect_timeout)
        await stream._open(retry=False)
        return stream

    async def executions(self, from_sequence: int | None = None, *, resume: bool = True,
                         reconnect_timeout: float = 30.0) -> AsyncIterator[Execution]:
        """As ``Client.executions``: resumed without a hole or a repeat."""
        stream = await self.subscribe_executions(from_sequence, resume=resume,
                                                 reconnect_timeout=reconnect_timeout)
        try:
            async for e in stream:
                yield e
        finally:
            stream.close()
