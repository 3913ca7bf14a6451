"""The gRPC service (``spotex.v1.Market`` and ``spotex.v1.Operator``) on ``grpc.aio``.

Handlers authenticate the caller, check its role, validate what the engine cannot, and
hand commands to the engine host's single writer thread; they never touch the engine
themselves. Market data and executions fan out from the writer to bounded per-subscriber
queues on the event loop. Health checking and reflection are served too.
"""

from __future__ import annotations

import asyncio
import collections
import dataclasses
import datetime as dt
import errno
import functools
import logging
import os
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from spotex import wire
from spotex._core import RefusedError, SpotexError, count_orders, page_size, status_codes
from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex._proto.spotex.v1 import spotex_pb2_grpc as pb_grpc
from spotex.server import executions as xs
from spotex.server import prices_rpc as pr
from spotex.server.accounts import (
    BUYER,
    OPERATOR,
    ROLES,
    SELLER,
    Account,
    AccountError,
    Accounts,
    token_hash,
)
from spotex.server.auctions import AuctionRunner, AuctionSettings
from spotex.server.executions import KEEP as KEEP_EXECUTIONS
from spotex.server.host import EngineHost, HostError, Published, Replicated, unavailable_message
from spotex.server.ledger import FEE_ACCOUNT, MoneySettings, apply_fees
from spotex.server.limits import Limits, ListenError, TlsConfig, TokenBucket
from spotex.server.metrics import Metrics, Observe, account_of_call
from spotex.server.prices import DAY
from spotex.server.relay import RelayProcesses, _upstream_of
from spotex.server.streams import MAX_UPDATES_PER_MESSAGE, Backlog, Hub, MarketSubscription
from spotex.server.tape import query_stats
from spotex.server.web import Web

log = logging.getLogger(__name__)
T = TypeVar("T")
HOUR = 3_600_000_000


class _Status(collections.namedtuple("_Status", ("code", "details", "trailing_metadata")),
              grpc.Status):
    pass


# every refusal reason's status code, defined once in the exchange (rust_exchange/)
_BY_VALUE = {c.value[0]: c for c in grpc.StatusCode}
STATUS = {reason: _BY_VALUE[code] for reason, code in status_codes()}
# the server's own reasons (the exchange never sends them)
STATUS.update({
    "SEQUENCE_IN_FUTURE": grpc.StatusCode.OUT_OF_RANGE,
    "SEQUENCE_NOT_KEPT": grpc.StatusCode.OUT_OF_RANGE,
})


def status_for(reason: str) -> grpc.StatusCode:
    return STATUS.get(reason, grpc.StatusCode.INVALID_ARGUMENT)


async def _fail(context: grpc.aio.ServicerContext, reason: str, message: str,
                code: grpc.StatusCode | None = None, retry_after: float | None = None) -> NoReturn:
    code = code or status_for(reason)
    info = error_details_pb2.ErrorInfo(reason=reason, domain="spotex")
    trailing = [("spotex-reason", reason)]
    if retry_after is not None:
        ms = str(max(1, int(retry_after * 1000)))
        info.metadata["retry_after_ms"] = ms
        trailing.append(("retry-after-ms", ms))
    detail = any_pb2.Any()
    detail.Pack(info)
    status = status_pb2.Status(code=code.value[0], message=message, details=[detail])
    await context.abort_with_status(_Status(code, message, (
        ("grpc-status-details-bin", status.SerializeToString()), *trailing)))
    raise AssertionError("unreachable")  # abort_with_status raises


def _auction_code(err: Any) -> grpc.StatusCode | None:
    """An auction refused for want of the optimiser is a precondition of the server."""
    return grpc.StatusCode.FAILED_PRECONDITION if err.reason == "AUCTION_UNAVAILABLE" else None


def _kept(oldest: int, last: int) -> str:
    """What a stream can resume from: the sequences kept (an execution's sequence as
    ``from_sequence`` resumes after it)."""
    if oldest > last:
        return f"from_sequence may be {last} (nothing kept after it yet), or unset (live)"
    return f"from_sequence may be {oldest - 1} to {last}, or unset (live only)"


async def _drain(q: Backlog, context: Any, hint: str) -> AsyncIterator[bytes]:
    """A subscriber's messages until it falls too far behind, then a clear status.
    Batches waiting in its backlog go out together, as one message."""
    while (batch := await q.take(MAX_UPDATES_PER_MESSAGE)) is not None:
        yield batch
    await _fail(context, "SUBSCRIBER_LAGGED", f"the stream fell behind; {hint}",
                grpc.StatusCode.RESOURCE_EXHAUSTED)


class Edge:
    """What every call passes at the edge, with or without an engine behind it:
    authentication, the account's role, its order rate and the size of what it sends.

    ``gateway_token``: the token a shard gateway (``spotex gateway``) presents. A call
    bearing it acts for the account the gateway names in its metadata (``spotex-account``,
    ``spotex-roles``); the gateway authenticated it and owns the accounts."""

    def __init__(self, accounts: Accounts, limits: Limits,
                 gateway_token: str | None = None, relay_token: str | None = None) -> None:
        self.accounts = accounts
        self.limits = limits
        self.bucket = TokenBucket(limits.orders_per_second, limits.order_burst)
        self._gateway = token_hash(gateway_token) if gateway_token else None
        # the token of the market-data relays this server started: StreamMarketData only
        self._relay = token_hash(relay_token) if relay_token else None

    async def auth_market_data(self, context: grpc.aio.ServicerContext) -> Account:
        """As ``auth`` (any role), or the server's own market-data relays."""
        if self._relay is not None:
            value = dict(context.invocation_metadata() or ()).get("authorization")
            if (isinstance(value, str) and value.startswith("Bearer ")
                    and token_hash(value[len("Bearer "):]) == self._relay):
                return Account(0, "market-data relay", [], "")
        return await self.auth(context)

    async def throttle(self, context: Any, account: Account, n: int = 1) -> None:
        wait = self.bucket.take(account.account_id, n, time.monotonic())
        if wait:
            await _fail(context, "RATE_LIMITED", f"over {self.limits.orders_per_second:g} "
                        "orders per second; retry later", retry_after=wait)

    async def bounded(self, context: Any, strings: tuple[str, ...] = (),
                      lists: tuple[Any, ...] = ()) -> None:
        """Refuses over-long ids, names and lists before they reach anything else."""
        if any(len(x) > self.limits.max_string for x in strings):
            await _fail(context, "FIELD_TOO_LONG",
                        f"ids and names have at most {self.limits.max_string} characters")
        if any(len(x) > self.limits.max_list for x in lists):
            await _fail(context, "LIST_TOO_LONG",
                        f"lists have at most {self.limits.max_list} items")

    async def admit(self, context: Any, a: Account, token_at_auth: str, n: int
                    ) -> bytes | None:
        """A SubmitOrders message of ``n`` orders on a stream opened by ``a``: None when it
        may go on; else the answer refusing each of its orders (the account disabled
        since, or over its rate). Over the message size, or with a token rotated or
        revoked since the stream opened, the stream itself is refused."""
        limit = self.limits.max_orders_per_message
        if n > limit:
            await _fail(context, "TOO_MANY_ORDERS", f"at most {limit} orders per message")
        if not a.enabled:  # the kill switch, while the stream is open
            return _refused_all(n, "ACCOUNT_DISABLED",
                                "this account is disabled by the operator")
        if a.token_sha256 != token_at_auth:  # rotated or revoked meanwhile
            await _fail(context, "UNAUTHENTICATED", "the token of this stream was rotated "
                        "or revoked; open it again with the new one")
        wait = self.bucket.take(a.account_id, n, time.monotonic())
        if wait:
            return _refused_all(n, "RATE_LIMITED",
                                f"over the order rate; retry in {wait * 1000:.0f} ms")
        return None

    async def auth(self, context: grpc.aio.ServicerContext, *roles: str) -> Account:
        metadata = dict(context.invocation_metadata() or ())
        token = ""
        value = metadata.get("authorization")
        if isinstance(value, str) and value.startswith("Bearer "):
            token = value[len("Bearer "):]
        if token and self._gateway is not None and token_hash(token) == self._gateway:
            account: Account | None = _on_behalf(metadata)
        else:
            account = self.accounts.authenticate(token) if token else None
        if account is None:
            await _fail(context, "UNAUTHENTICATED", "missing or unknown bearer token")
        account_of_call.set(account.account_id)
        if not account.enabled:
            await _fail(context, "ACCOUNT_DISABLED", "this account is disabled by the operator")
        if roles and not any(account.has(r) for r in roles):
            await _fail(context, "ROLE_REQUIRED", f"this call needs the role {' or '.join(roles)}")
        return account


def _on_behalf(metadata: dict[str, Any]) -> Account | None:
    """The account a shard gateway's call acts for, from its metadata."""
    try:
        account_id = int(metadata.get("spotex-account", ""))
    except ValueError:
        return None
    roles = [r for r in str(metadata.get("spotex-roles", "")).split(",") if r in ROLES]
    return Account(account_id, "", roles, "gateway")


class Service(Edge):
    """The edge with the engine behind it (the engine host's writer) and its streams."""

    def __init__(self, host: EngineHost, accounts: Accounts, hub: Hub, limits: Limits,
                 gateway_token: str | None = None,
                 auctions: AuctionRunner | None = None,
                 relay_token: str | None = None) -> None:
        super().__init__(accounts, limits, gateway_token, relay_token)
        self.host = host
        self.hub = hub
        self.auctions = auctions or AuctionRunner(host)
        self.listing = pr.Listing()

    async def writer(self, fn: Callable[[], T]) -> T:
        return await self.host.submit_async(fn)

    async def command(self, context: grpc.aio.ServicerContext, fn: Callable[[], T]) -> T:
        """Runs ``fn`` on the writer unless the caller's deadline passes first: a command
        whose caller stopped waiting is not applied."""
        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining

        def guarded() -> T:
            if deadline is not None and time.monotonic() > deadline:
                raise HostError("DEADLINE_EXCEEDED", "the deadline passed before the "
                                   "command reached the engine; it was not applied")
            return fn()
        try:
            return await self.writer(guarded)
        except (SpotexError, HostError) as err:
            await _fail(context, err.reason, str(err))  # type: ignore[attr-defined]

    async def native(self, context: grpc.aio.ServicerContext, op: str, account: Account,
                     body: bytes) -> bytes:
        """A hot command (request bytes in, response bytes out), run by the writer in Rust
        unless the caller's deadline passes first. Refused at once while the journal is
        known unavailable (a standby; NATS electing), rather than queued behind the
        writer's attempts to recover."""
        if (why := self.host.refusal) is not None:
            await _fail(context, "JOURNAL_UNAVAILABLE", unavailable_message(why))
        try:
            return await self.host.command_async(
                op, account.account_id, body, buyer=account.has(BUYER),
                seller=account.has(SELLER), remaining=context.time_remaining())
        except SpotexError as err:
            await _fail(context, err.reason, str(err))  # type: ignore[attr-defined]


class MarketService:
    def __init__(self, s: Service) -> None:
        self.s = s

    async def ListProducts(self, request: Any, context: Any) -> Any:
        await self.s.auth(context)
        ex, body = self.s.host.ex, request.SerializeToString()
        return pb.ListProductsResponse.FromString(
            await self.s.command(context, lambda: ex.list_products(body)))

    async def RegisterCapacity(self, request: Any, context: Any) -> Any:
        a = await self.s.auth(context, SELLER)
        await self.s.bounded(context, (request.cluster_id, request.sku, request.region,
                                       *(n.node_id for n in request.nodes)), (request.nodes,))
        host, body = self.s.host, request.SerializeToString()
        await self.s.command(context, lambda: host.register_capacity(a.account_id, body))
        return pb.RegisterCapacityResponse(cluster_id=request.cluster_id)

    async def WithdrawCapacity(self, request: Any, context: Any) -> Any:
        a = await self.s.auth(context, SELLER)
        await self.s.bounded(context, (request.cluster_id, *request.node_ids),
                             (request.node_ids,))
        host, body = self.s.host, request.SerializeToString()
        n = await self.s.command(context, lambda: host.withdraw_capacity(a.account_id, body))
        return pb.WithdrawCapacityResponse(gpu_hours_withdrawn=n)

    # PlaceOrder, CancelOrder, AmendOrder and SubmitOrders take and return bytes: Python
    # neither parses nor builds their messages (see market_handlers)

    async def place_order(self, body: bytes, context: Any) -> bytes:
        a = await self.s.auth(context, BUYER, SELLER)
        await self.s.throttle(context, a)
        return await self.s.native(context, "place", a, body)

    async def cancel_order(self, body: bytes, context: Any) -> bytes:
        a = await self.s.auth(context, BUYER, SELLER)
        await self.s.throttle(context, a)
        return await self.s.native(context, "cancel", a, body)

    async def amend_order(self, body: bytes, context: Any) -> bytes:
        a = await self.s.auth(context, BUYER, SELLER)
        await self.s.throttle(context, a)
        return await self.s.native(context, "amend", a, body)

    async def cancel_all(self, body: bytes, context: Any) -> bytes:
        a = await self.s.auth(context, BUYER, SELLER)
        return await self.s.native(context, "cancel_all", a, body)

    async def place_basket(self, body: bytes, context: Any) -> bytes:
        a = await self.s.auth(context, BUYER, SELLER)
        try:
            legs = len(pb.PlaceBasketRequest.FromString(body).legs)
        except DecodeError:
            await _fail(context, "INVALID_ARGUMENT", "malformed PlaceBasketRequest")
        await self.s.throttle(context, a, max(1, min(legs, 100)))
        return await self.s.native(context, "basket", a, body)

    async def resell(self, body: bytes, context: Any) -> bytes:
        # whoever holds the allocation may resell it (the exchange checks it)
        a = await self.s.auth(context, BUYER, SELLER)
        await self.s.throttle(context, a)
        return await self.s.native(context, "resell", a, body)

    async def place_one_of(self, body: bytes, context: Any) -> bytes:
        a = await self.s.auth(context, BUYER)
        await self.s.throttle(context, a)
        return await self.s.native(context, "one_of", a, body)

    async def place_ask_range(self, body: bytes, context: Any) -> bytes:
        a = await self.s.auth(context, SELLER)
        try:
            request = pb.PlaceAskRangeRequest.FromString(body)
        except DecodeError:
            await _fail(context, "INVALID_ARGUMENT", "malformed PlaceAskRangeRequest")
        await self.s.throttle(context, a, max(1, min(request.hours, 168)))
        return await self.s.native(context, "ask_range", a, body)

    async def GetOrder(self, request: Any, context: Any) -> Any:
        a = await self.s.auth(context)
        host, body = self.s.host, request.SerializeToString()
        by_client_id = bool(request.client_order_id and not request.order_id)
        if by_client_id and (why := host.refusal) is not None:
            # memory may still hold what the journal did not confirm: no answer yet
            await _fail(context, "JOURNAL_UNAVAILABLE", unavailable_message(why))

        def look() -> bytes:
            # again on the writer: a round may have failed since the check above (the
            # lookup queued behind it), its command still in memory until the rebuild
            if by_client_id and (why := host.unavailable) is not None:
                raise HostError("JOURNAL_UNAVAILABLE", unavailable_message(why))
            return host.get_order(a.account_id, body)
        order = await self.s.command(context, look)
        return pb.GetOrderResponse(order=pb.Order.FromString(order))

    async def ListOrders(self, request: Any, context: Any) -> Any:
        a = await self.s.auth(context)
        await self.s.bounded(context, (request.product_id,))
        host, body = self.s.host, request.SerializeToString()
        return pb.ListOrdersResponse.FromString(
            await self.s.command(context, lambda: host.list_orders(a.account_id, body)))

    async def GetBook(self, request: Any, context: Any) -> Any:
        await self.s.auth(context)
        await self.s.bounded(context, (request.product_id,))
        ex, body = self.s.host.ex, request.SerializeToString()
        return pb.GetBookResponse.FromString(
            await self.s.command(context, lambda: ex.get_book(body)))

    async def ListAllocations(self, request: Any, context: Any) -> Any:
        a = await self.s.auth(context)
        ex, body = self.s.host.ex, request.SerializeToString()
        return pb.ListAllocationsResponse.FromString(
            await self.s.command(context, lambda: ex.list_allocations(a.account_id, body)))

    async def GetAuctionResult(self, request: Any, context: Any) -> Any:
        await self.s.auth(context)
        ex, auction_id = self.s.host.ex, request.auction_id
        return pb.AuctionResult.FromString(
            await self.s.command(context, lambda: ex.auction_result(auction_id)))

    async def GetIndicativeAuction(self, request: Any, context: Any) -> Any:
        a = await self.s.auth(context)
        if not 0 < request.to_hour - request.from_hour <= 24 * 14:
            await _fail(context, "INVALID_ARGUMENT", "an auction's window is 1 to 336 hours: "
                        "to_hour above from_hour")
        try:
            return await self.s.auctions.indicative(request.from_hour, request.to_hour,
                                                    a.account_id)
        except (SpotexError, HostError) as err:
            await _fail(context, err.reason, str(err), _auction_code(err))

    async def ListAuctions(self, request: Any, context: Any) -> Any:
        await self.s.auth(context)
        ex, body = self.s.host.ex, request.SerializeToString()
        return pb.ListAuctionsResponse.FromString(
            await self.s.command(context, lambda: ex.list_auctions(body)))

    # ---- money: an account's balance and transfers ----

    async def _whose(self, context: Any, account_id: int) -> int:
        a = await self.s.auth(context)
        try:  # behind a gateway, the gateway keeps the accounts and has checked this one
            return whose_money(a, account_id, None if _gateways(a) else self.s.accounts)
        except AccountError as err:
            await _fail(context, err.reason, str(err))

    async def GetBalance(self, request: Any, context: Any) -> Any:
        account = await self._whose(context, request.account_id)
        ex = self.s.host.ex
        return pb.Balance.FromString(
            await self.s.command(context, lambda: ex.balance(account)))

    async def ListTransfers(self, request: Any, context: Any) -> Any:
        account = await self._whose(context, request.account_id)
        host, body = self.s.host, request.SerializeToString()
        return pb.ListTransfersResponse.FromString(
            await self.s.command(context, lambda: host.list_transfers(account, body)))

    # ---- price discovery (spotex.server.prices_rpc; the tape: spotex.server.tape) ----

    async def _listing(self, context: Any, product_id: str = "", sku: str = "",
                       refresh: bool = False) -> pr.Listing:
        """The listed products, read again when the query may need newer ones."""
        if refresh or pr.needs_refresh(self.s.listing, product_id, sku):
            ex = self.s.host.ex
            products = await self.s.command(context, lambda: pr.all_products(ex))
            self.s.listing = pr.Listing.of(products)
        return self.s.listing

    async def _priced(self, context: Any, work: Any) -> Any:
        try:
            return await work
        except pr.Refusal as err:
            await _fail(context, err.reason, str(err), err.code)

    async def _scope(self, context: Any, r: Any) -> tuple[str, str]:
        await self.s.bounded(context, (r.product_id, r.sku, r.region))
        listing = await self._listing(context, r.product_id, r.sku)
        try:
            return pr.scope_of(listing, r.product_id, r.sku, r.region)
        except pr.Refusal as err:
            await _fail(context, err.reason, str(err), err.code)

    async def _tape_page(self, context: Any, request: Any, page: Any) -> Any:
        """One page of a product's or family's trades or candles, read from the tape."""
        await self.s.auth(context)
        product, fam = await self._scope(context, request)
        size = page_size(request.page_size)
        tape = self.s.host.tape
        assert tape is not None
        return await self._priced(context, tape.read(
            lambda db: page(db, request, product, fam, size)))

    async def ListTrades(self, request: Any, context: Any) -> Any:
        return await self._tape_page(context, request, pr.list_trades)

    async def ListCandles(self, request: Any, context: Any) -> Any:
        return await self._tape_page(context, request, pr.list_candles)

    async def GetCurve(self, request: Any, context: Any) -> Any:
        await self.s.auth(context)
        await self.s.bounded(context, (request.sku, request.region))
        listing = await self._listing(context, sku=request.sku)
        try:
            fam = pr.family_of(listing, request.sku, request.region)
        except pr.Refusal as err:
            await _fail(context, err.reason, str(err), err.code)
        lo, hi = request.from_hour, request.to_hour or pr.FAR
        prefix = fam + "/"
        listed = sorted((h, p, st) for p, (st, h) in listing.products.items()
                        if p.startswith(prefix) and lo <= h < hi)
        rows = [(p, st, h) for h, p, st in listed]
        host = self.s.host
        tape = host.tape
        assert tape is not None
        stats = tape.read(lambda db: query_stats(db, fam))

        def books() -> tuple[int, list[bytes]]:
            return host.last_ts, [host.ex.get_book(pb.GetBookRequest(
                product_id=p, depth=1).SerializeToString()) for p, _, _ in rows]
        as_of, raw = await self.s.command(context, books)
        return pr.curve(request.sku, request.region, as_of, rows, raw, await stats)

    async def _index_scope(self, context: Any, r: Any) -> tuple[str, int, int]:
        await self.s.auth(context)
        await self.s.bounded(context, (r.sku, r.region))
        listing = await self._listing(context, sku=r.sku)
        try:
            fam = pr.family_of(listing, r.sku, r.region)
        except pr.Refusal as err:
            await _fail(context, err.reason, str(err), err.code)
        host = self.s.host
        assert host.tape is not None
        now = host.now()
        # the tape publishes every day that ended first
        return fam, now // DAY, host.tape.tick(now)

    async def GetIndex(self, request: Any, context: Any) -> Any:
        fam, today, mark = await self._index_scope(context, request)
        try:
            day = pr.day_of(request.day, today) if request.day else today - 1
        except pr.Refusal as err:
            await _fail(context, err.reason, str(err), err.code)
        tape = self.s.host.tape
        assert tape is not None
        return await self._priced(context, tape.read(
            lambda db: pr.get_index(db, fam, day, today), mark))

    async def ListIndex(self, request: Any, context: Any) -> Any:
        fam, today, mark = await self._index_scope(context, request)
        size = page_size(request.page_size)
        tape = self.s.host.tape
        assert tape is not None
        return await self._priced(context, tape.read(
            lambda db: pr.list_index(db, request, fam, today, size), mark))

    async def StreamMarketData(self, request: Any, context: Any) -> AsyncIterator[bytes]:
        await self.s.auth_market_data(context)
        await self.s.bounded(context, tuple(request.product_ids), (request.product_ids,))
        sub = MarketSubscription(self.s.hub, self.s.host, request.SerializeToString(),
                                 set(request.product_ids) or None,
                                 self.s.limits.subscriber_queue)
        try:
            await self.s.command(context, sub.snapshot)
            async for m in _drain(sub.queue, context, "resubscribe for a fresh snapshot"):
                yield m
        finally:
            sub.end()

    async def StreamExecutions(self, request: Any, context: Any) -> AsyncIterator[bytes]:
        """The caller's executions after ``from_sequence`` (unset: from now on), none twice
        and none left out: the live queue registers first, then what is kept on disk up
        to where it stood is read (the tape folds in every round offered before), sent,
        and the live queue follows, without what the catch-up sent already. The first
        message says where the stream stands (``ExecutionBatch.start``)."""
        a = await self.s.auth(context)
        account, hub = a.account_id, self.s.hub
        tape = self.s.host.tape
        assert tape is not None
        asked = request.from_sequence if request.HasField("from_sequence") else None
        q = Backlog(self.s.limits.subscriber_queue)
        # registered on the loop, so it sees every execution published after this point;
        # every round published before it was offered to the tape first
        await self.s.writer(lambda: None)
        hub.executions.setdefault(account, []).append(q)
        mark = tape.offered
        try:
            oldest, last = await tape.read(lambda db: xs.kept_range(db, account), mark)
            if asked is not None and asked > last:
                await _fail(context, "SEQUENCE_IN_FUTURE",
                            f"from_sequence {asked} is past your last execution ({last}); "
                            f"{_kept(oldest, last)}")
            if asked is not None and asked < oldest - 1:
                await _fail(context, "SEQUENCE_NOT_KEPT",
                            f"executions after {asked} are no longer all kept (the oldest "
                            f"kept is {oldest}); {_kept(oldest, last)} (list your orders "
                            "to catch up)")
            yield pb.ExecutionBatch(start=pb.ExecutionStreamStart(
                from_sequence=asked or 0, live_from_sequence=last + 1,
                oldest_kept=oldest if oldest <= last else 0)).SerializeToString()
            sent = last if asked is None else asked
            while sent < last:
                rows = await tape.read(functools.partial(
                    xs.read, account=account, after_seq=sent, upto=last,
                    limit=MAX_UPDATES_PER_MESSAGE))
                if not rows or rows[0][0] != sent + 1:  # pruned meanwhile
                    await _fail(context, "SEQUENCE_NOT_KEPT",
                                f"executions after {sent} left the history while being "
                                "sent: resume from a later sequence")
                yield b"".join(b for _, _, b in rows)
                sent = rows[-1][1]
            joined = False
            async for m in _drain(q, context, "resume from the last sequence seen"):
                if not joined:
                    m, first = xs.after(m, sent)
                    if not m:
                        continue
                    if first != sent + 1:
                        # never by construction; a replicated shard's earlier leader's
                        # rounds not yet marked as a hole could
                        await _fail(context, "SEQUENCE_NOT_KEPT",
                                    f"executions {sent + 1}..{first - 1} were not kept: "
                                    f"resume from {first - 1}, or 0 for live only")
                    joined = True
                yield m
        finally:
            hub.executions[account].remove(q)

    async def submit_orders(self, requests: AsyncIterator[bytes],
                            context: Any) -> AsyncIterator[bytes]:
        a = await self.s.auth(context, BUYER, SELLER)
        host, buyer, seller = self.s.host, a.has(BUYER), a.has(SELLER)
        account, token_at_auth = a.account_id, a.token_sha256
        # Pipelined: messages go to the writer as they arrive, answers come back in order.
        # The bounded queue is the back-pressure on a client that sends faster than we match.
        pending: asyncio.Queue[asyncio.Future[bytes] | None] = asyncio.Queue(1024)

        async def read() -> None:
            try:
                async for body in requests:
                    try:
                        n = count_orders(body)
                    except RefusedError:
                        await _fail(context, "INVALID_ARGUMENT", "malformed SubmitOrdersRequest")
                    refused = await self.s.admit(context, a, token_at_auth, n)
                    if refused is not None:
                        await pending.put(_resolved(refused))
                        continue
                    # while the journal is unavailable the writer refuses every order
                    await pending.put(host.command_async("submit", account, body, buyer=buyer,
                                                       seller=seller))
            finally:
                await pending.put(None)
        reader = asyncio.create_task(read())
        try:
            while (fut := await pending.get()) is not None:
                try:
                    yield await fut
                except (SpotexError, HostError) as err:
                    await _fail(context, err.reason, str(err))  # type: ignore[attr-defined]
        finally:
            reader.cancel()


def _account(a: Account) -> Any:
    return pb.Account(account_id=a.account_id, name=a.name,
                      roles=[wire.ROLE_TO_PB[r] for r in a.roles], enabled=a.enabled,
                      has_token=bool(a.token_sha256))


def _refused_all(n: int, reason: str, message: str) -> bytes:
    result = pb.OrderResult(code=status_for(reason).value[0], reason=reason, message=message)
    return bytes(pb.SubmitOrdersResponse(results=[result] * n).SerializeToString())


def market_handlers(svc: MarketService) -> grpc.GenericRpcHandler:
    """The Market service's methods: order entry with raw bytes in and out (the exchange
    decodes and encodes them), the rest with the generated messages."""
    typed = {}
    for method in pb.DESCRIPTOR.services_by_name["Market"].methods:
        request = getattr(pb, method.input_type.name).FromString
        response = getattr(pb, method.output_type.name).SerializeToString
        if not hasattr(svc, method.name):
            continue
        if method.name.startswith("Stream"):
            # the streams send the exchange's encoded batches as they are
            typed[method.name] = grpc.unary_stream_rpc_method_handler(
                getattr(svc, method.name), request_deserializer=request)
        else:
            typed[method.name] = grpc.unary_unary_rpc_method_handler(
                getattr(svc, method.name), request_deserializer=request,
                response_serializer=response)
    raw = {"PlaceOrder": grpc.unary_unary_rpc_method_handler(svc.place_order),
           "CancelOrder": grpc.unary_unary_rpc_method_handler(svc.cancel_order),
           "AmendOrder": grpc.unary_unary_rpc_method_handler(svc.amend_order),
           "CancelAll": grpc.unary_unary_rpc_method_handler(svc.cancel_all),
           "PlaceAskRange": grpc.unary_unary_rpc_method_handler(svc.place_ask_range),
           "PlaceOneOf": grpc.unary_unary_rpc_method_handler(svc.place_one_of),
           "PlaceBasket": grpc.unary_unary_rpc_method_handler(svc.place_basket),
           "Resell": grpc.unary_unary_rpc_method_handler(svc.resell),
           "SubmitOrders": grpc.stream_stream_rpc_method_handler(svc.submit_orders)}
    return grpc.method_handlers_generic_handler("spotex.v1.Market", {**typed, **raw})


class AccountsService(pb_grpc.OperatorServicer):  # type: ignore[misc]
    """The operator's calls on accounts: they need no engine (a shard gateway serves
    them the same)."""

    def __init__(self, s: Edge) -> None:
        self.s = s

    async def CreateAccount(self, request: Any, context: Any) -> Any:
        await self.s.auth(context, OPERATOR)
        roles = [wire.ROLE_FROM_PB.get(x, "") for x in request.roles]
        try:
            acct, token = self.s.accounts.create(request.name, roles)
        except ValueError as err:
            await _fail(context, "INVALID_ACCOUNT", str(err))
        return pb.CreateAccountResponse(account_id=acct.account_id, token=token)

    async def ListAccounts(self, request: Any, context: Any) -> Any:
        await self.s.auth(context, OPERATOR)
        try:
            after = int(request.page_token or 0)
        except ValueError:
            await _fail(context, "INVALID_ARGUMENT", "malformed page_token: pass the "
                        "next_page_token of the previous page")
        size = page_size(request.page_size)
        rows = [a for a in self.s.accounts.all() if a.account_id > after][:size + 1]
        more = len(rows) > size
        rows = rows[:size]
        return pb.ListAccountsResponse(
            accounts=[_account(a) for a in rows],
            next_page_token=str(rows[-1].account_id) if more else "")

    async def _account_change(self, context: Any, change: Callable[[], Any]) -> Any:
        await self.s.auth(context, OPERATOR)
        try:
            return change()
        except AccountError as err:
            await _fail(context, err.reason, str(err))

    async def EnableAccount(self, request: Any, context: Any) -> Any:
        a = await self._account_change(
            context, lambda: self.s.accounts.set_enabled(request.account_id, True))
        log.warning("account %d enabled", a.account_id, extra={"account": a.account_id})
        return pb.AccountResponse(account=_account(a))

    async def RotateToken(self, request: Any, context: Any) -> Any:
        a, token = await self._account_change(
            context, lambda: self.s.accounts.rotate(request.account_id))
        log.warning("account %d: token rotated", a.account_id, extra={"account": a.account_id})
        return pb.RotateTokenResponse(account=_account(a), token=token)

    async def RevokeToken(self, request: Any, context: Any) -> Any:
        a = await self._account_change(
            context, lambda: self.s.accounts.revoke(request.account_id))
        log.warning("account %d: token revoked", a.account_id, extra={"account": a.account_id})
        return pb.AccountResponse(account=_account(a))



class OperatorService(AccountsService):
    s: Service

    def __init__(self, s: Service) -> None:
        super().__init__(s)

    async def CreateProducts(self, request: Any, context: Any) -> Any:
        await self.s.auth(context, OPERATOR)
        r = request
        hours = r.to_hour - r.from_hour
        count = hours * len(r.skus) * len(r.regions)
        if hours <= 0 or count == 0:
            await _fail(context, "INVALID_SCHEDULE", "need skus, regions and from_hour < to_hour")
        await self.s.bounded(context, (*r.skus, *r.regions), (r.skus, r.regions))
        if count > self.s.limits.max_products_per_call:
            await _fail(context, "TOO_MANY_PRODUCTS",
                        f"at most {self.s.limits.max_products_per_call} products per call")
        if r.gate_closure_lead_micros < 0:
            await _fail(context, "INVALID_SCHEDULE", "gate closure lead must not be negative")
        host = self.s.host

        def products() -> dict[str, Any]:
            listed = pb.ListProductsResponse.FromString(host.ex.list_products()).products
            return {p.product_id: p for p in listed}

        def go() -> tuple[list[Any], list[Any]]:
            created, before = [], []
            existing = products()
            for sku in r.skus:
                for region in r.regions:
                    for h in range(r.from_hour, r.to_hour):
                        when = dt.datetime.fromtimestamp(h * 3600, dt.UTC).strftime("%Y-%m-%dT%H")
                        pid = f"{sku}/{region}/{when}"
                        if pid in existing:
                            before.append(pid)  # listing again is harmless: reported
                            continue
                        host.create_product(pid, r.tick_micros, r.lot,
                                            h * HOUR - r.gate_closure_lead_micros,
                                            r.open_at_micros or None,
                                            self.s.auctions.settings.hold)
                        created.append(pid)
            rows = products()
            return [rows[p] for p in created], [rows[p] for p in before]
        made, existed = await self.s.command(context, go)
        if made:
            log.info("listed %d product%s: %s ... %s", len(made), "s" * (len(made) != 1),
                     made[0].product_id, made[-1].product_id, extra={"products": len(made)})
        return pb.CreateProductsResponse(products=made, existing=existed)

    async def _state(self, context: Any, request: Any, what: str) -> Any:
        await self.s.auth(context, OPERATOR)
        await self.s.bounded(context, (request.product_id,))
        host = self.s.host

        def go() -> Any:
            host.set_state(what, request.product_id)
            listed = pb.ListProductsResponse.FromString(host.ex.list_products()).products
            return next(p for p in listed if p.product_id == request.product_id)
        product = await self.s.command(context, go)
        log.warning("product %s: %s by the operator", request.product_id,
                    {"halt": "halted", "resume": "resumed", "close": "closed"}[what],
                    extra={"product": request.product_id, "action": what})
        return pb.ProductResponse(product=product)

    async def Halt(self, request: Any, context: Any) -> Any:
        return await self._state(context, request, "halt")

    async def Resume(self, request: Any, context: Any) -> Any:
        return await self._state(context, request, "resume")

    async def CloseProduct(self, request: Any, context: Any) -> Any:
        return await self._state(context, request, "close")

    async def DisableAccount(self, request: Any, context: Any) -> Any:
        """The kill switch: from now on every call of the account is refused (an open
        SubmitOrders stream's next messages too), then its open orders are cancelled, each
        journaled and streamed as a cancel. Calls admitted before run first."""
        a = await self._account_change(
            context, lambda: self.s.accounts.set_enabled(request.account_id, False))
        try:
            cancelled = await self.s.host.command_async(
                "cancel_all", a.account_id, pb.CancelAllRequest().SerializeToString())
        except SpotexError as err:
            await _fail(context, err.reason, str(err))  # type: ignore[attr-defined]
        log.warning("account %d disabled; %d open orders cancelled", a.account_id,
                    len(pb.CancelAllResponse.FromString(cancelled).orders),
                    extra={"account": a.account_id})
        return pb.AccountResponse(account=_account(a),
                                  cancelled=pb.CancelAllResponse.FromString(cancelled).orders)

    async def TakeSnapshot(self, request: Any, context: Any) -> Any:
        await self.s.auth(context, OPERATOR)
        host = self.s.host
        if host.data_dir is None:
            await _fail(context, "NO_DATA_DIR", "the server runs without a data directory",
                        grpc.StatusCode.FAILED_PRECONDITION)
        seq, h = await self.s.writer(host.take_snapshot)
        return pb.GetStateHashResponse(sequence=seq, state_hash=h)

    async def RunAuction(self, request: Any, context: Any) -> Any:
        await self.s.auth(context, OPERATOR)
        if request.to_hour <= request.from_hour:
            await _fail(context, "INVALID_ARGUMENT", "an auction's window ends after it "
                        "begins: to_hour must be above from_hour")
        if request.to_hour - request.from_hour > 24 * 14:
            await _fail(context, "INVALID_ARGUMENT", "an auction's window is at most two "
                        "weeks (336 hours)")
        limit = request.time_limit_ms / 1000 if request.time_limit_ms else None
        try:
            return await self.s.auctions.run(request.from_hour, request.to_hour, limit,
                                             request.auction_id)
        except (SpotexError, HostError) as err:
            await _fail(context, err.reason, str(err), _auction_code(err))

    # ---- money (the ledger is the exchange's: spotex-exchange's ledger module) ----

    async def _money(self, context: Any, what: str, request: Any) -> Any:
        caller = await self.s.auth(context, OPERATOR)
        await self.s.bounded(context, (request.reference,) if what in ("deposit", "withdraw")
                             else ())
        aid = request.account_id
        # behind a gateway, the gateway keeps the accounts and has checked this one
        if not (what == "fees" and aid == FEE_ACCOUNT) and not _gateways(caller):
            a = self.s.accounts.get(aid)
            if a is None or a.has(OPERATOR):
                await _fail(context, "UNKNOWN_ACCOUNT", f"no trading account {aid} (0 is the "
                            "venue's fee account: it takes fees, not deposits)")
        host = self.s.host
        body = request.SerializeToString()
        answer = pb.BalanceResponse.FromString(await self.s.command(
            context, lambda: host.run(lambda ts: host.ex.money(ts, what, body))))
        log.warning("money: %s for account %d: %s", what, aid,
                    " ".join(str(request).split()), extra={"account": aid, "action": what})
        return answer

    async def Deposit(self, request: Any, context: Any) -> Any:
        return await self._money(context, "deposit", request)

    async def Withdraw(self, request: Any, context: Any) -> Any:
        return await self._money(context, "withdraw", request)

    async def SetCreditLimit(self, request: Any, context: Any) -> Any:
        return await self._money(context, "credit_limit", request)

    async def SetFees(self, request: Any, context: Any) -> Any:
        return await self._money(context, "fees", request)

    async def _gateway_only(self, context: Any) -> None:
        if not _gateways(await self.s.auth(context, OPERATOR)):
            await _fail(context, "NOT_GATEWAY", "only a shard gateway moves money between "
                        "shards (docs/scaling.md)", grpc.StatusCode.PERMISSION_DENIED)

    async def MoveMoney(self, request: Any, context: Any) -> Any:
        await self._gateway_only(context)
        host, body = self.s.host, request.SerializeToString()
        answer = pb.MoveMoneyResponse.FromString(await self.s.command(
            context, lambda: host.run(lambda ts: host.ex.move_money(ts, body))))
        if not answer.already and request.step != pb.MOVE_STEP_LANDED:
            log.info("money: %s %d for account %d (shard %d, move %d)",
                     pb.MoveStep.Name(request.step), request.amount_micros,
                     request.account_id, request.other_shard,
                     answer.move.number or request.number,
                     extra={"account": request.account_id, "action": "move"})
        return answer

    async def ListMoves(self, request: Any, context: Any) -> Any:
        """Only what is durable: a move out whose round failed is still in memory until
        the rebuild, and landing it elsewhere would make money (its number is given
        again after the rebuild), so the moves are not listed meanwhile."""
        await self._gateway_only(context)
        host = self.s.host
        if (why := host.refusal) is not None:
            await _fail(context, "JOURNAL_UNAVAILABLE", unavailable_message(why))

        def listed() -> bytes:
            # on the writer: a round may have failed since the check above
            if (why := host.unavailable) is not None:
                raise HostError("JOURNAL_UNAVAILABLE", unavailable_message(why))
            return host.ex.list_moves()
        return pb.ListMovesResponse.FromString(await self.s.command(context, listed))

    async def GetStateHash(self, request: Any, context: Any) -> Any:
        await self.s.auth(context, OPERATOR)
        host = self.s.host
        seq, h = await self.s.writer(lambda: (host.sequence, host.state_hash()))
        return pb.GetStateHashResponse(sequence=seq, state_hash=h)


def whose_money(a: Account, account_id: int, accounts: Accounts | None) -> int:
    """The account a money view by ``a`` is about: its own (0), or another's for an
    operator, whose own is the venue's fee account; AccountError otherwise (another's
    money without the role, or an account ``accounts`` does not know; None: not
    checked)."""
    if account_id in (0, a.account_id):
        return FEE_ACCOUNT if a.has(OPERATOR) else int(a.account_id)
    if not a.has(OPERATOR):
        raise AccountError("NOT_OWNER", "another account's money needs the role operator")
    if account_id != FEE_ACCOUNT and accounts is not None and accounts.get(account_id) is None:
        raise AccountError("UNKNOWN_ACCOUNT", f"no account {account_id}")
    return account_id


def _gateways(a: Account) -> bool:
    """Whether the caller is a shard gateway acting for an account (see
    ``Edge._gateway``): the gateway owns the accounts and has checked them."""
    return a.token_sha256 == "gateway"


def _loopback(host: str) -> bool:
    import ipaddress

    name = host.strip("[]")
    if name in ("localhost", ""):
        return name == "localhost"
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _check_listen(listen: str) -> None:
    """Refuses an address another process listens on, with a clear message, before any
    work; gRPC's own bind (with port sharing off) is the guard against a race."""
    host, _, port = listen.rpartition(":")
    if not port.isdigit() or int(port) == 0:
        return
    try:
        addrs = socket.getaddrinfo(host.strip("[]") or None, int(port),
                                   type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as e:
        raise ListenError(f"cannot listen on {listen}: {e.strerror}") from None
    for family, kind, proto, _, addr in addrs:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(addr)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise ListenError(f"cannot listen on {listen}: the address is in use "
                                      "(another spotex server?)") from None
                raise ListenError(f"cannot listen on {listen}: {e.strerror}") from None


def _market_data_listen(listen: str, given: str | None) -> str:
    """Where the relays serve: as given, else the server's host at its port + 1 (a free
    port when the server's is 0)."""
    if given:
        return given
    host, _, port = listen.rpartition(":")
    if port.isdigit() and int(port) != 0:
        return f"{host}:{int(port) + 1}"
    with socket.socket(socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET) as s:
        s.bind((host.strip("[]") or "0.0.0.0", 0))
        return f"{host}:{s.getsockname()[1]}"


def _listen(listen: str, host: EngineHost, accounts: Accounts, hub: Hub, limits: Limits,
            tls: TlsConfig | None, observe: Observe, gateway_token: str | None = None,
            auctions: AuctionRunner | None = None, relay_token: str | None = None
            ) -> tuple[grpc.aio.Server, int, Any, tuple[str, ...]]:
    s = Service(host, accounts, hub, limits, gateway_token, auctions, relay_token)
    return grpc_server(listen, limits, tls, observe, market_handlers(MarketService(s)),
                       OperatorService(s))


def grpc_server(listen: str, limits: Limits, tls: TlsConfig | None, observe: Any,
                market: grpc.GenericRpcHandler, operator: AccountsService
                ) -> tuple[grpc.aio.Server, int, Any, tuple[str, ...]]:
    """The venue's gRPC server (not started): the Market and Operator services, health
    and reflection, on ``listen`` (plaintext, or TLS). Returns it, its port, its health
    servicer and the services' names."""
    server = grpc.aio.server(interceptors=[observe], options=[
        ("grpc.max_receive_message_length", limits.max_message_bytes),
        # grpcio shares ports by default: a second server on the same port would take
        # half of the calls, each against its own engine
        ("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((market,))
    pb_grpc.add_OperatorServicer_to_server(operator, server)
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    names = (pb.DESCRIPTOR.services_by_name["Market"].full_name,
             pb.DESCRIPTOR.services_by_name["Operator"].full_name,
             health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
             reflection.SERVICE_NAME)
    reflection.enable_server_reflection(names, server)
    try:
        if tls is None:
            port = server.add_insecure_port(listen)
        else:
            creds = grpc.ssl_server_credentials(
                [(tls.key.read_bytes(), tls.cert.read_bytes())],
                root_certificates=tls.client_ca.read_bytes() if tls.client_ca else None,
                require_client_auth=tls.client_ca is not None)
            port = server.add_secure_port(listen, creds)
    except RuntimeError:  # grpcio's "Failed to bind"
        port = 0
    if port == 0:
        raise ListenError(f"cannot listen on {listen} (in use, or not this host's address)")
    return server, port, health_servicer, names


class Server:
    """A running spotex server: ``await Server.start(...)``, then ``await stop()``."""

    def __init__(self, grpc_server: grpc.aio.Server, port: int, host: EngineHost,
                 ticker: asyncio.Task[None], metrics: Metrics | None = None,
                 metrics_port: int | None = None, web: Web | None = None,
                 web_port: int | None = None, auctions: AuctionRunner | None = None,
                 relays: RelayProcesses | None = None) -> None:
        self.grpc = grpc_server
        self.port = port
        self.host = host
        self._ticker = ticker
        self.metrics = metrics
        # where /metrics is served, when it is
        self.metrics_port = metrics_port
        self.web = web
        self.web_port = web_port
        self.auctions = auctions or AuctionRunner(host)
        # the market-data relays it started, if any
        self.relays = relays

    @classmethod
    async def start(cls, listen: str = "127.0.0.1:50551", data_dir: Path | None = None,
                    operator_token: str | None = None, tick_seconds: float = 0.5,
                    fsync: str = "batch", snapshot_every: int = 200_000,
                    limits: Limits | None = None, tls: TlsConfig | None = None,
                    segment_bytes: int = 64 << 20, retention: str = "delete",
                    keep_ended: int = 100_000, metrics_listen: str | None = None,
                    access_log: bool = True, web_listen: str | None = None,
                    resale_fee_bps: int = 0, replicated: Replicated | None = None,
                    shard_index: int = 0, gateway_token: str | None = None,
                    auction: AuctionSettings | None = None, market_data_relays: int = 0,
                    market_data_listen: str | None = None, relay_nice: int = 10,
                    log_format: str = "text", money: MoneySettings | None = None,
                    keep_executions: int = KEEP_EXECUTIONS) -> Server:
        """Recovers from ``data_dir`` (snapshot + journal), then listens; with
        ``metrics_listen`` (host:port) serves Prometheus metrics there too. A shard of a
        venue behind ``spotex gateway`` numbers its ids from ``shard_index << 48`` and
        takes calls the gateway makes with ``gateway_token`` for its accounts. With
        ``market_data_relays``, starts that many market-data relays serving on
        ``market_data_listen`` (default: the server's host, its port + 1; a free port when
        the server's is 0) and supervises them."""
        loop = asyncio.get_running_loop()
        hub = Hub()

        def publish(out: Published) -> None:
            loop.call_soon_threadsafe(hub.dispatch, out)
        _check_listen(listen)  # before recovery, which may take a while
        relays: RelayProcesses | None = None
        if market_data_relays:
            if tls is not None:
                raise ListenError("--market-data-relays does not work with TLS yet: run "
                                  "`spotex relay` with --tls-cert, --tls-key and "
                                  "--upstream-ca instead")
            market_data_listen = _market_data_listen(listen, market_data_listen)
            _check_listen(market_data_listen)
        money = money or MoneySettings()
        limits = limits or Limits()
        if replicated is not None and not replicated.holder:
            # the standbys' refusals name the leader by its address
            replicated = dataclasses.replace(replicated,
                                             holder=f"{listen} (pid {os.getpid()})")
        # the host locks the data directory before it reads it (DataDirInUse)
        host = await asyncio.to_thread(EngineHost, publish, None, data_dir, fsync,
                                          snapshot_every, limits.max_open_orders_per_account,
                                          segment_bytes, retention, limits.max_string,
                                          keep_ended, resale_fee_bps=resale_fee_bps,
                                          replicated=replicated, shard_index=shard_index,
                                          default_credit=money.default_credit,
                                          keep_executions=keep_executions)
        metrics = Metrics.of_engine(host, hub) if metrics_listen else None
        auctions = AuctionRunner(host, auction)
        web, web_port = None, None
        try:
            accounts = Accounts(data_dir / "accounts.json" if data_dir else None, operator_token)
            relay_token = None
            if market_data_relays and market_data_listen:
                relays = RelayProcesses(market_data_relays, "", market_data_listen,
                                        subscriber_queue=limits.subscriber_queue,
                                        nice=relay_nice, log_format=log_format)
                relay_token = relays.token
            server, port, health_servicer, names = _listen(
                listen, host, accounts, hub, limits, tls, Observe(metrics, access_log),
                gateway_token, auctions, relay_token)
        except BaseException:
            host.close()
            raise
        where = metrics_listen
        try:
            metrics_port = metrics.serve(metrics_listen) if metrics and metrics_listen else None
            if web_listen:
                where = web_listen
                web = Web(host, hub, accounts, data_dir, limits.subscriber_queue)
                web_port = await web.start(web_listen)
        except OSError as err:
            if metrics is not None:
                metrics.close()
            host.close()
            raise ListenError(f"cannot listen on {where}: {err.strerror or err}") from None
        except BaseException:
            host.close()
            raise
        if host.refusal is None:
            # an auction a crash left between its start and its clear
            await auctions.abandon_open()
            if replicated is None:
                await host.submit_async(lambda: apply_fees(host, money))
        await server.start()
        await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        serving: list[bool | None] = [None]
        saying = asyncio.Lock()  # one change at a time: both services say the same

        async def say_health() -> None:
            # the services serve while commands are accepted: a standby, or a server whose
            # journal fails, says NOT_SERVING (a host or balancer finds the leader so).
            # ``refusal`` is read without waiting for the writer: the event loop never
            # waits on a round that NATS holds up
            async with saying:
                now = host.refusal is None
                if serving[0] is not now:
                    serving[0] = now
                    status = (health_pb2.HealthCheckResponse.SERVING if now
                              else health_pb2.HealthCheckResponse.NOT_SERVING)
                    for name in names[:2]:
                        await health_servicer.set(name, status)

        def changed(_why: str | None) -> None:
            # on the writer, as the engine starts or stops refusing: health says so now
            if not loop.is_closed():
                loop.call_soon_threadsafe(lambda: loop.create_task(say_health()))
        host.on_change(changed)
        await say_health()

        async def tick() -> None:
            # gate closure and good-till-time expiry happen on their own as time passes
            while True:
                await asyncio.sleep(tick_seconds)
                try:
                    if host.refusal is not None:
                        if await host.submit_async(host.try_resume):
                            hub.drop_all()
                        continue
                    if host.replicated is not None:
                        await host.submit_async(host.keep_lease)
                    await host.submit_async(host.advance_time)
                except (SpotexError, HostError):
                    pass  # the journal failed under it; the next tick tries to resume
                finally:
                    await say_health()  # and a change no listener heard of
        ticker = asyncio.create_task(tick())
        if auctions.settings.schedule:
            scheduled = asyncio.create_task(auctions.on_schedule())
            ticker.add_done_callback(lambda _: scheduled.cancel())
            log.info("block auctions every day at %s UTC for the next day's hours%s",
                     auctions.settings.schedule,
                     " (held for them until they clear)" if auctions.settings.hold else "")
        bind = listen.rsplit(":", 1)[0]
        if tls is None and not _loopback(bind):
            log.warning("listening on %s without TLS: tokens and orders cross the network in "
                        "the clear; give --tls-cert and --tls-key", bind)
        if metrics_port is not None:
            log.info("metrics on http://%s:%d/metrics", metrics_listen.rsplit(":", 1)[0]
                     if metrics_listen else bind, metrics_port)
        if web_port is not None:
            log.info("web page on http://%s:%d/", web_listen.rsplit(":", 1)[0]
                     if web_listen else bind, web_port)
        log.info("spotex listening on %s", bind + f":{port}")
        if relays is not None:
            relays.upstream = _upstream_of(listen, port)
            relays.start()
            log.info("market data: %d relays at %s (pids %s)", relays.n, relays.listen,
                     " ".join(map(str, relays.pids)))
        return cls(server, port, host, ticker, metrics, metrics_port, web, web_port,
                   auctions, relays)

    async def stop(self, grace: float = 2.0) -> None:
        self._ticker.cancel()
        if self.relays is not None:
            await asyncio.to_thread(self.relays.stop)
        if self.web is not None:
            await self.web.close()
        await self.grpc.stop(grace)
        host = self.host
        seq, h = await host.submit_async(lambda: (host.sequence, host.state_hash()))
        if host.data_dir is not None and host.refusal is None and seq > host.snapshot_seq:
            # the next start recovers from here without replaying the journal
            try:
                await host.submit_async(host.take_snapshot)
                log.info("snapshot at sequence %d", seq)
            except Exception as err:  # noqa: BLE001 - the journal still holds everything
                log.error("no snapshot on stop (%s); the next start replays the journal", err)
        self.auctions.close()
        host.close()
        if self.metrics is not None:
            self.metrics.close()
        log.info("stopped at sequence %d, state hash %s", seq, h,
                 extra={"sequence": seq, "state_hash": h})


async def serve(listen: str, data_dir: Path | None, operator_token: str | None,
                ready: Callable[[Server], None] | None = None, fsync: str = "batch",
                snapshot_every: int = 200_000, limits: Limits | None = None,
                tls: TlsConfig | None = None, segment_bytes: int = 64 << 20,
                retention: str = "delete", keep_ended: int = 100_000,
                metrics_listen: str | None = None, access_log: bool = True,
                web_listen: str | None = None, resale_fee_bps: int = 0,
                replicated: Replicated | None = None, shard_index: int = 0,
                gateway_token: str | None = None,
                auction: AuctionSettings | None = None, market_data_relays: int = 0,
                market_data_listen: str | None = None, relay_nice: int = 10,
                log_format: str = "text", money: MoneySettings | None = None,
                keep_executions: int = KEEP_EXECUTIONS) -> None:
    """Runs until SIGTERM or SIGINT, then shuts down gracefully."""
    # before the server says it listens: a SIGTERM right after that is a graceful stop
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    server = await Server.start(listen, data_dir, operator_token, fsync=fsync,
                                snapshot_every=snapshot_every, limits=limits, tls=tls,
                                segment_bytes=segment_bytes, retention=retention,
                                keep_ended=keep_ended, metrics_listen=metrics_listen,
                                access_log=access_log, web_listen=web_listen,
                                resale_fee_bps=resale_fee_bps, replicated=replicated,
                                shard_index=shard_index, gateway_token=gateway_token,
                                auction=auction, market_data_relays=market_data_relays,
                                market_data_listen=market_data_listen,
                                relay_nice=relay_nice, log_format=log_format, money=money,
                                keep_executions=keep_executions)
    if ready:
        ready(server)
    await stop.wait()
    log.info("shutting down")
    await server.stop()


def _resolved(value: Any) -> asyncio.Future[Any]:
    f: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    f.set_result(value)
    return f
