"""``Client``: the blocking SDK."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import Any

import grpc
import grpc.aio

from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex.client.calls import (
    T,
    _Book,
    _Call,
    _Calls,
    _connect,
    _new_client_order_id,
    _order_request,
    _resell_request,
    _updates,
    _with_id,
)
from spotex.client.convert import _market_event, _order
from spotex.client.errors import RpcError, _code, _resubscribable, _rpc_error
from spotex.client.executions import ExecutionStream
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


class Client:
    """Blocking client. ``Client("127.0.0.1:50551", token)``; use as a context manager.
    For a TLS server pass ``tls_ca`` (PEM bytes of the CA that signed it), and
    ``tls_cert``/``tls_key`` when the server asks for client certificates.

    A command whose outcome is unknown (``RpcError.outcome_unknown``: the venue sent it to
    its journal and got no confirmation, or the connection failed once it was sent) is
    looked up before the call answers: orders, one-of groups and baskets by their client
    order ids (the SDK gives every order one), a cancel by its order. For up to
    ``resolve_timeout`` seconds (0: never) the SDK asks again, waiting 0.1 s doubling to
    2 s, while the venue cannot say yet; then the call answers as if acknowledged (the
    order as it is now), raises ``NOT_APPLIED`` (safe to send again; only once the
    command's own deadline, ``timeout``, has passed: until then it may still be on its
    way to the engine), or raises the unknown outcome, its message naming the client
    order id. ``on_unknown(what)`` is called as a lookup starts (``what``: "client order
    id X", or "order N")."""

    def __init__(self, target: str, token: str, *, timeout: float = 10.0,
                 tls_ca: bytes | None = None, tls_cert: bytes | None = None,
                 tls_key: bytes | None = None, resolve_timeout: float = 30.0,
                 on_unknown: Callable[[str], None] | None = None,
                 market_data_target: str | None = None) -> None:
        self._channel, self._md, self._stubs = _connect(grpc, target, token, tls_ca,
                                                        tls_cert, tls_key)
        # market_data() from the venue's market-data relays (docs/scaling.md), when given
        self._md_channel: Any
        self._md_channel, _, self._md_stubs = (
            _connect(grpc, market_data_target, token, tls_ca, tls_cert, tls_key)
            if market_data_target else (None, None, self._stubs))
        self._timeout = timeout
        self.resolve_timeout = resolve_timeout
        self.on_unknown = on_unknown

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._channel.close()
        if self._md_channel is not None:
            self._md_channel.close()

    def _call(self, c: _Call[T], timeout: float | None = None) -> T:
        try:
            reply = getattr(self._stubs[c.service], c.method)(
                c.request, metadata=self._md,
                timeout=max(self._timeout, c.timeout) if timeout is None else timeout)
        except grpc.RpcError as err:
            raise _rpc_error(err) from None
        return c.convert(reply)

    def _steps(self, steps: Steps[T], timeout: float) -> T:
        """A lookup's calls, each answer (or refusal) handed back to its steps."""
        try:
            c = next(steps)
            while True:
                try:
                    answer = self._call(c, timeout)
                except RpcError as err:
                    c = steps.throw(err)
                else:
                    c = steps.send(answer)
        except StopIteration as done:
            result: T = done.value
            return result

    def _command(self, c: _Call[T], how: Recovery[T]) -> T:
        """A command; when its outcome is unknown, looked up as ``how`` says."""
        deadline = time.monotonic() + max(self._timeout, c.timeout)
        try:
            return self._call(c)
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
                return self._steps(look(), r.timeout(self._timeout))
            except (RpcError, NotApplied) as answer:
                wait = r.after(answer)
            time.sleep(wait)

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
        """Terms: client_order_id (yours, at most 64 chars; without one the SDK gives it
        ``sdk-`` and 16 hex digits, shown in the order), order_type, tif, expire_at, post_only, stp,
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
        terms = _with_id(terms)
        return self._command(_Calls.place_order(
            _order_request(product_id, side, price, quantity, **terms)),
            of_order(terms["client_order_id"]))

    def cancel_order(self, order_id: int) -> Order:
        """The order, cancelled. An unknown outcome is looked up by the order: still open,
        ``NOT_APPLIED``; ended (cancelled, or filled first), the order as it is."""
        return self._command(_Calls.cancel_order(order_id), of_cancel(order_id))

    def amend_order(self, order_id: int, *, price: Decimal | str | int | None = None,
                    quantity: int | None = None) -> Order:
        """An unknown outcome is not looked up (the order does not say whether this
        amend changed it): the error says so."""
        return self._command(_Calls.amend_order(order_id, price, quantity),
                             of_amend(order_id))

    def get_order(self, order_id: int = 0, *, client_order_id: str = "") -> Order:
        """One of the account's orders, by id or (without one) by its client order id:
        how a caller learns whether a command whose outcome was unknown was applied
        (``UNKNOWN_ORDER``: it was not; ``JOURNAL_UNAVAILABLE``: the venue cannot say
        yet)."""
        return self._call(_Calls.find_order(order_id, client_order_id))

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
        orders = [_with_id(o) for o in legs]
        return self._command(_Calls.place_basket([_order_request(**o) for o in orders]),
                             of_basket([o["client_order_id"] for o in orders]))

    def place_one_of(self, alternatives: Iterable[dict[str, Any]], *,
                     client_order_id: str = "") -> Order:
        """One-of: up to 16 block (or window) bids, each a dict of place_order's
        arguments (side buy, hours, and one tif for all); at most one fills. With ioc or
        fok, at once: the cheapest that can, ties to the first. With gtc (or gtd at one
        time), when none can fill now the group waits, and the first alternative that
        can fill as asks arrive does, cancelling the others in the same step. Returns
        the order the group became (the first alternative while it waits)."""
        alts = [_order_request(**{"side": "buy", **a}) for a in alternatives]
        cid = client_order_id or _new_client_order_id()
        return self._command(_Calls.place_one_of(alts, cid), of_order(cid))

    def place_ask_range(self, product_id: str, price: Decimal | str | int, quantity: int,
                        *, hours: int, cluster_id: str, **terms: Any) -> list[Order | RpcError]:
        """A seller's range: one ask per hour for ``hours`` hours from ``product_id``'s,
        each placed or refused on its own (the results in hour order); the placed ones
        share a ``range_id`` that ``cancel_all(range_id=...)`` withdraws at once."""
        terms = _with_id(terms)
        ask = _order_request(product_id, "sell", price, quantity, cluster_id=cluster_id,
                             **terms)
        return self._command(_Calls.place_ask_range(ask, hours),
                             of_asks(terms["client_order_id"]))

    def resell(self, order_id: int, price: Decimal | str | int, **terms: Any
               ) -> list[Order | RpcError]:
        """Resale of a buy order's GPUs (a block, or a one-hour bid): one resale ask per
        allocation of it this account still holds in the hours asked, each placed or
        refused on its own, sharing a range_id. Terms: from_hour and to_hour (hours
        since the epoch, [from, to); 0: from the first, to the last), gpus (which, as
        (node id, GPU indices); empty: all still held), tif, expire_at, client_order_id.
        Each fill splits the allocation: the buyer's names it as parent, this account
        keeps the rest and pays the venue's resale fee."""
        terms = _with_id(terms)
        return self._command(_Calls.resell(_resell_request(order_id, price, **terms)),
                             of_asks(terms["client_order_id"]))

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

    def run_auction(self, from_hour: int, to_hour: int, *,
                    time_limit: float | None = None) -> AuctionResult:
        """Operator: a block auction now over the delivery window ``[from_hour,
        to_hour)`` (hours since the epoch): every auction order whose first hour lies in
        it. ``time_limit``: the optimiser's, in seconds (default: the venue's)."""
        return self._call(_Calls.run_auction(from_hour, to_hour, time_limit))

    def auction_result(self, auction_id: int = 0) -> AuctionResult:
        """An auction's public result (0: the latest)."""
        return self._call(_Calls.auction_result(auction_id))

    def indicative_auction(self, from_hour: int, to_hour: int) -> IndicativeAuction:
        """What an auction over ``[from_hour, to_hour)`` would clear now (nothing is
        committed): indicative prices, and which of your auction orders would fill. The
        venue solves it at most once a minute per window."""
        return self._call(_Calls.indicative_auction(from_hour, to_hour))

    def list_auctions(self) -> list[AuctionResult]:
        """Every auction's result the venue keeps, newest first."""
        return self._all(_Calls.list_auctions)

    # ---- money (docs/trading.md, "Money") --------------------------------------------

    def balance(self, account_id: int = 0) -> Balance:
        """The caller's balance (0: its own); an operator may name any account, and its
        own is the venue's fee account, which every fee is paid to."""
        return self._call(_Calls.balance(account_id))

    def transfers(self, account_id: int = 0, *, since: dt.datetime | None = None,
                  until: dt.datetime | None = None) -> list[Transfer]:
        """The caller's transfers (an operator may name any account), oldest first."""
        return self._all(lambda t: _Calls.list_transfers(account_id, since, until, t))

    def deposit(self, account_id: int, amount: Decimal | str | int,
                reference: str = "") -> tuple[Balance, Transfer | None]:
        """Operator: money into an account (dollars, exactly)."""
        return self._call(_Calls.deposit(account_id, amount, reference))

    def withdraw(self, account_id: int, amount: Decimal | str | int,
                 reference: str = "") -> tuple[Balance, Transfer | None]:
        """Operator: money out of an account, never more than current less holds."""
        return self._call(_Calls.withdraw(account_id, amount, reference))

    def set_credit_limit(self, account_id: int, limit: Decimal | str | int
                         ) -> tuple[Balance, Transfer | None]:
        """Operator: how far below zero the account's buys may take it."""
        return self._call(_Calls.set_credit_limit(account_id, limit))

    def set_fees(self, account_id: int, maker_bps: int, taker_bps: int, *,
                 clear: bool = False) -> tuple[Balance, Transfer | None]:
        """Operator: the venue's fees (account 0) or one account's own (``clear``: the
        venue's again)."""
        return self._call(_Calls.set_fees(account_id, maker_bps, taker_bps, clear))

    # ---- price discovery (docs/trading.md, "Prices") ----------------------------------

    def list_trades(self, product_id: str = "", *, sku: str = "", region: str = "",
                    since: dt.datetime | None = None, until: dt.datetime | None = None,
                    limit: int | None = 100) -> list[TapeTrade]:
        """The public tape of one product, or of a SKU and region (every hour of them),
        newest first: trades in [since, until), at most ``limit`` (None: all)."""
        out: list[TapeTrade] = []
        token = ""
        while True:
            size = 1000 if limit is None else max(1, min(1000, limit - len(out)))
            got, token = self._call(_Calls.list_trades(product_id, sku, region, since,
                                                              until, size, token))
            out += got
            if not token or (limit is not None and len(out) >= limit):
                return out if limit is None else out[:limit]

    def list_candles(self, product_id: str = "", *, sku: str = "", region: str = "",
                     interval: str = "1h", since: dt.datetime | None = None,
                     until: dt.datetime | None = None) -> list[Candle]:
        """OHLCV at ``interval`` (1m, 1h or 1d), oldest first; intervals without trades
        are left out."""
        return self._all(lambda t: _Calls.list_candles(product_id, sku, region, interval,
                                                          since, until, t))

    def curve(self, sku: str, region: str, *, from_hour: int = 0, to_hour: int = 0
              ) -> Curve:
        """The forward curve: every listed hour's best bid and ask, last trade, last
        auction price and volume, in one call."""
        return self._call(_Calls.curve(sku, region, from_hour, to_hour))

    def index(self, sku: str, region: str, day: dt.date | str | None = None
              ) -> DailyIndex:
        """The daily index of a day (None: the latest day that ended)."""
        return self._call(_Calls.index(sku, region, day))

    def list_index(self, sku: str, region: str, *, from_day: dt.date | str | None = None,
                   to_day: dt.date | str | None = None) -> list[DailyIndex]:
        """Every day's index, newest first (no_index days included)."""
        return self._all(lambda t: _Calls.list_index(sku, region, from_day, to_day, t))

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
            call = self._md_stubs["market"].StreamMarketData(
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
                if not resubscribe or not _resubscribable(err, lost,
                                                          self._md_channel is not None):
                    raise _rpc_error(err) from None
                if err.code() == grpc.StatusCode.UNAVAILABLE:
                    time.sleep(0.5 * lost)  # a relay being started again
            finally:
                call.cancel()
            if not resubscribe:
                return

    def subscribe_executions(self, from_sequence: int | None = None, *, resume: bool = True,
                             reconnect_timeout: float = 30.0) -> ExecutionStream:
        """The caller's executions, once the subscription is live: what the account does
        after this returns reaches it. ``from_sequence``: first every execution after it
        (the last one seen; 0: from the account's first), from the history the server keeps;
        None: from now on. With ``resume`` the
        stream subscribes again after a lost connection, a restart or a lag, from the
        last sequence it yielded: every execution once, in order (see
        ``spotex.client.executions``)."""
        return ExecutionStream(self._stubs, self._md, from_sequence, resume,
                               reconnect_timeout)

    def executions(self, from_sequence: int | None = None, *, resume: bool = True,
                   reconnect_timeout: float = 30.0) -> Iterator[Execution]:
        """The caller's own order events, fills and allocations, as they happen (after
        ``from_sequence`` when given), resumed after a lost connection without a hole
        or a repeat. It subscribes at the first ``next()``: to be sure of seeing an
        order's first events, ``subscribe_executions()`` before placing it."""
        stream = self.subscribe_executions(from_sequence, resume=resume,
                                           reconnect_timeout=reconnect_timeout)
        try:
            yield from stream
        finally:
            stream.close()

    def submit_orders(self, orders: Iterable[dict[str, Any]], *, per_message: int = 100
                      ) -> Iterator[Order | RpcError]:
        """Bulk entry over one stream: each dict holds place_order's arguments; they travel
        ``per_message`` to a message. Yields, in order, the order or the error for each."""
        def requests() -> Iterator[Any]:
            batch: list[Any] = []
            for o in orders:
                batch.append(_order_request(**_with_id(o)))
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
