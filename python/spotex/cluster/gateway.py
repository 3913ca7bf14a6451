"""The shard gateway (``spotex gateway``): one venue over several engines.

Each shard is an engine process (``spotex serve --shard-index I --gateway-token T``, with
standbys when its journal is replicated) that owns every product of some (SKU, region)
pairs: a block, a window, a one-of group or a colocation never leaves one SKU and region,
so every order but a basket across them lives in one shard. The gateway is the edge
without an engine: it owns the accounts, authenticates each call, applies the limits,
and routes the request to its shard's engine, acting for the caller (the engines trust
the gateway's token):

- by product (``SKU/region/hour``): an explicit route, else a stable hash of
  ``SKU/region`` over the shards;
- by id: a shard numbers its orders and trades from ``index << 48``;
- by cluster (WithdrawCapacity): the shard that knows it.

Views without a product, mass cancels and the streams fan out to every shard and
merge, so a client sees one venue. A fan-out never waits on a shard none of whose
engines can be reached: it is refused at once with ``SHARD_UNAVAILABLE`` naming that
shard (a mass cancel after cancelling on the others, saying so), and one waiting for a
failover is refused before the caller's deadline; never a part of the venue passed
off as the whole. Request bytes pass through unchanged; the gateway
parses only what it routes by. Block auctions are the venue's: one auction on every
shard under one id (``spotex.cluster.auctions``), run by an operator's ``RunAuction``
or at the gateway's daily gate (``--auction-schedule``).

A shard's engines are tried in turn: the gateway calls the one whose health says it
serves the Market (the leader); when a call finds a standby or no engine it looks for the
leader again until ``failover_seconds`` pass. A command is never sent twice unless it
surely was not applied (refused by a standby, or no connection); a connection lost during
a command is reported as ``OUTCOME_UNKNOWN``, as is an engine's own (never sent again).
A lookup by client order id asks every shard, so that the caller can resolve it.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health_pb2
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from spotex._core import page_size
from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex.cluster.auctions import OPERATOR_SERVICE, AuctionRefused, ShardAuctions
from spotex.cluster.engines import MARKET, Engines, ShardError, _reason
from spotex.cluster.money import INT64_MAX, MoneyFailed, ShardMoney, shortfall
from spotex.cluster.routes import Routes
from spotex.server.accounts import BUYER, OPERATOR, SELLER, Account, AccountError, Accounts
from spotex.server.datadir import DataDirLock
from spotex.server.host import SHARD_BITS
from spotex.server.limits import Limits, ListenError, TlsConfig
from spotex.server.metrics import Metrics, Observe
from spotex.server.service import (
    AccountsService,
    Edge,
    _check_listen,
    _fail,
    grpc_server,
    whose_money,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
# what an engine's answer keeps when the gateway passes it on
_PASSED = ("grpc-status-details-bin", "spotex-reason", "retry-after-ms")


class Front(Edge):
    """The gateway's edge: accounts and limits here, engines behind."""

    def __init__(self, accounts: Accounts, limits: Limits, routes: Routes, token: str,
                 failover_seconds: float) -> None:
        super().__init__(accounts, limits)
        self.routes = routes
        self.engines = {s.index: Engines(s, token, failover_seconds,
                                         limits.max_message_bytes) for s in routes.shards}
        self.auctions = ShardAuctions(self.engines)
        self.money = ShardMoney(self.engines)

    async def call(self, context: Any, index: int, service: str, method: str, body: bytes,
                   account: Account, *, command: bool = True, dead_fast: bool = False,
                   then: str = "", funded: int = 0) -> bytes:
        """One call to shard ``index``'s leader; ``dead_fast``: refused at once when none
        of its engines can be reached (``then`` added to what the refusal says).
        ``funded`` (a buy, a withdrawal: the account whose money it needs): refused for
        want of money on that shard, the account's money on the other shards is moved
        there (half, then all of it) and the call sent again."""
        engines = self.engines[index]
        try:
            for everything in (False, True, None):
                try:
                    return await engines.unary(service, method, body, account,
                                               context.time_remaining(), command=command,
                                               dead_fast=dead_fast)
                except grpc.aio.AioRpcError as err:
                    if (not funded or everything is None or not shortfall(err)
                            or not await self.money.gather(
                                funded, index, everything=everything,
                                timeout=context.time_remaining())):
                        raise
            raise AssertionError("unreachable")
        except grpc.aio.AioRpcError as err:
            await pass_on(context, err)
        except ShardError as err:
            await _fail(context, err.reason, f"{err}; {then}" if then else str(err))

    async def fan_out(self, context: Any, service: str, method: str, body: bytes,
                      account: Account, *, command: bool = True
                      ) -> tuple[dict[int, bytes], dict[int, ShardError]]:
        """The same call to every shard at once: the answers by shard, and the shards
        that gave none (``SHARD_UNAVAILABLE``: refused at once when none of the shard's
        engines can be reached, else after its failover or shortly before the caller's
        deadline; ``OUTCOME_UNKNOWN``: its engine was lost during the call). An engine's
        own refusal is passed on to the caller (the first, in shard order)."""
        timeout = context.time_remaining()

        async def one(index: int) -> bytes | grpc.aio.AioRpcError | ShardError:
            try:
                return await self.engines[index].unary(service, method, body, account,
                                                       timeout, command=command,
                                                       dead_fast=True)
            except (grpc.aio.AioRpcError, ShardError) as err:
                return err
        got = await asyncio.gather(*(one(i) for i in self.routes.indices))
        answers: dict[int, bytes] = {}
        missing: dict[int, ShardError] = {}
        for index, a in zip(self.routes.indices, got, strict=True):
            if isinstance(a, grpc.aio.AioRpcError):
                await pass_on(context, a)
            elif isinstance(a, ShardError):
                missing[index] = a
            else:
                answers[index] = a
        return answers, missing

    async def each(self, context: Any, service: str, method: str, body: bytes,
                   account: Account, *, command: bool = True, what: str = "") -> list[bytes]:
        """The same call to every shard, answers in shard order; refused, naming the
        shards that gave none, unless every shard answered (``what``: what the
        refusal says was or was not done)."""
        answers, missing = await self.fan_out(context, service, method, body, account,
                                              command=command)
        if missing:
            await self.missing(context, missing, what)
        return list(answers.values())

    async def missing(self, context: Any, missing: dict[int, ShardError], what: str
                      ) -> NoReturn:
        """The refusal of a fan-out that lacks ``missing``'s shards: each shard's own
        error (``OUTCOME_UNKNOWN`` if any is, else ``SHARD_UNAVAILABLE``), then ``what``."""
        said = "; ".join(str(e) for e in missing.values())
        unknown = any(e.reason == "OUTCOME_UNKNOWN" for e in missing.values())
        log.warning("a call to every shard lacks shard %s: %s",
                    ", ".join(map(str, missing)), said)
        await _fail(context, "OUTCOME_UNKNOWN" if unknown else "SHARD_UNAVAILABLE",
                    f"{said}; {what}" if what else said)


async def pass_on(context: Any, err: grpc.aio.AioRpcError) -> NoReturn:
    """An engine's refusal, to the caller as the engine gave it; an engine lost (no
    reason: the connection failed) as SHARD_UNAVAILABLE."""
    if err.code() == grpc.StatusCode.UNAVAILABLE and not _reason(err):
        await _fail(context, "SHARD_UNAVAILABLE", "a shard's engine was lost during the "
                    f"call ({err.details()}); what it did not answer may have been "
                    "applied: look it up, or send it again with the same client order id")
    trailing = tuple((k, v) for k, v in err.trailing_metadata() or () if k in _PASSED)
    await context.abort(err.code(), err.details() or "", trailing)
    raise AssertionError("abort returns only by raising")


async def _answered(context: Any, work: Awaitable[T]) -> T:
    """An auction call's answer: a shard's refusal passed on as the engine gave it, the
    gateway's own (naming the shard) as it says."""
    try:
        return await work
    except grpc.aio.AioRpcError as err:
        await pass_on(context, err)
    except ShardError as err:
        await _fail(context, err.reason, str(err))
    except AuctionRefused as err:
        await _fail(context, err.reason, str(err), err.code)


async def _parse(context: Any, cls: Any, body: bytes) -> Any:
    """The request, or INVALID_ARGUMENT for bytes that are not one."""
    try:
        return cls.FromString(body)
    except DecodeError:
        await _fail(context, "INVALID_ARGUMENT", f"malformed {cls.__name__}")


def _merge_by(key: Callable[[Any], int], lists: list[Any], size: int, more: bool
              ) -> tuple[list[Any], str]:
    """Pages of shards merged by id: the first ``size``, and the token of the next page
    (every shard's page starts after the same id, so a page of the merge is exact)."""
    rows = sorted((x for part in lists for x in part), key=key)
    if len(rows) > size:
        rows, more = rows[:size], True
    return rows, (str(key(rows[-1])) if more and rows else "")


async def _money_answer(context: Any, work: Awaitable[T]) -> T:
    """A money call's answer: a shard's refusal passed on, the gateway's own as it
    says (naming the shard)."""
    try:
        return await work
    except grpc.aio.AioRpcError as err:
        await pass_on(context, err)
    except ShardError as err:
        await _fail(context, err.reason, f"{err}; an account's money is every shard's")
    except MoneyFailed as err:
        await _fail(context, err.reason, str(err), err.code)


class ShardMarket:
    """The Market service over the shards. Order entry keeps request bytes as they came."""

    def __init__(self, f: Front) -> None:
        self.f = f

    async def _whose(self, context: Any, account_id: int) -> int:
        a = await self.f.auth(context)
        try:
            return whose_money(a, account_id, self.f.accounts)
        except AccountError as err:
            await _fail(context, err.reason, str(err))

    async def GetBalance(self, request: Any, context: Any) -> Any:
        account = await self._whose(context, request.account_id)
        return await _money_answer(context, self.f.money.balance(
            account, context.time_remaining()))

    async def ListTransfers(self, request: Any, context: Any) -> Any:
        account = await self._whose(context, request.account_id)
        r = pb.ListTransfersRequest()
        r.CopyFrom(request)
        r.account_id = account
        return await _money_answer(context, self.f.money.transfers(
            r, context.time_remaining(), page_size(request.page_size)))

    async def _routed(self, context: Any, method: str, body: bytes, index: int,
                      account: Account, *, command: bool = True, dead_fast: bool = False,
                      then: str = "", funded: bool = False) -> bytes:
        """``funded``: a call that may hold the caller's money (see ``Front.call``)."""
        return await self.f.call(context, index, MARKET, method, body, account,
                                 command=command, dead_fast=dead_fast, then=then,
                                 funded=account.account_id if funded else 0)

    async def place_order(self, body: bytes, context: Any) -> bytes:
        a = await self.f.auth(context, BUYER, SELLER)
        await self.f.throttle(context, a)
        o = await _parse(context, pb.PlaceOrderRequest, body)
        return await self._routed(context, "PlaceOrder", body, self.f.routes.of_order(o), a,
                                  funded=o.side == pb.SIDE_BUY)

    async def _by_order_id(self, context: Any, method: str, cls: Any, body: bytes,
                           *roles: str, command: bool = True) -> bytes:
        a = await self.f.auth(context, *roles)
        if command:
            await self.f.throttle(context, a)
        r = await _parse(context, cls, body)
        return await self._routed(context, method, body, self.f.routes.of_id(r.order_id), a,
                                  command=command, funded=method == "AmendOrder")

    async def cancel_order(self, body: bytes, context: Any) -> bytes:
        return await self._by_order_id(context, "CancelOrder", pb.CancelOrderRequest, body,
                                       BUYER, SELLER)

    async def amend_order(self, body: bytes, context: Any) -> bytes:
        return await self._by_order_id(context, "AmendOrder", pb.AmendOrderRequest, body,
                                       BUYER, SELLER)

    async def resell(self, body: bytes, context: Any) -> bytes:
        return await self._by_order_id(context, "Resell", pb.ResellRequest, body,
                                       BUYER, SELLER)

    async def get_order(self, body: bytes, context: Any) -> bytes:
        a = await self.f.auth(context)
        r = await _parse(context, pb.GetOrderRequest, body)
        if r.order_id or not r.client_order_id:
            return await self._routed(context, "GetOrder", body,
                                      self.f.routes.of_id(r.order_id), a, command=False)
        return await self._by_client_order_id(context, body, a)

    async def _by_client_order_id(self, context: Any, body: bytes, a: Account) -> bytes:
        """An order by its client order id: an account's orders may be on any shard (each
        numbers its own), so every shard is asked and the first that has it answers.
        UNKNOWN_ORDER only when every shard says so; else the refusal of a shard that
        could not say (JOURNAL_UNAVAILABLE, SHARD_UNAVAILABLE), so that a caller
        resolving an unknown outcome asks again rather than take it as not applied."""
        async def ask(index: int) -> bytes | grpc.aio.AioRpcError | ShardError:
            try:
                return await self.f.engines[index].unary(
                    MARKET, "GetOrder", body, a, context.time_remaining(), command=False)
            except (grpc.aio.AioRpcError, ShardError) as err:
                return err
        asking = {asyncio.ensure_future(ask(i)): i for i in self.f.routes.indices}
        refused: dict[int, grpc.aio.AioRpcError | ShardError] = {}
        try:
            waiting = set(asking)
            while waiting:
                done, waiting = await asyncio.wait(waiting,
                                                   return_when=asyncio.FIRST_COMPLETED)
                for t in done:
                    got = t.result()
                    if isinstance(got, bytes):
                        return got
                    refused[asking[t]] = got
        finally:
            for t in asking:
                t.cancel()
        unsure = [e for _, e in sorted(refused.items())
                  if isinstance(e, ShardError) or _reason(e) != "UNKNOWN_ORDER"]
        err = unsure[0] if unsure else refused[min(refused)]
        if isinstance(err, ShardError):
            await _fail(context, err.reason, str(err))
        await pass_on(context, err)

    async def cancel_all(self, body: bytes, context: Any) -> bytes:
        a = await self.f.auth(context, BUYER, SELLER)
        r = await _parse(context, pb.CancelAllRequest, body)
        if r.product_id or r.range_id:
            index = (self.f.routes.of_product(r.product_id) if r.product_id
                     else self.f.routes.of_id(r.range_id))
            return await self._routed(context, "CancelAll", body, index, a)
        answers, missing = await self.f.fan_out(context, MARKET, "CancelAll", body, a)
        if missing:
            # what could be cancelled is (a mass cancel is a trader's brake); the refusal
            # says it was not cancelled everywhere, and the call can be made again
            await self.f.missing(context, missing, _partly_cancelled(
                answers, "call CancelAll again once every shard serves"))
        return _cancelled(list(answers.values()))

    async def _one_shard(self, context: Any, orders: Any, what: str) -> int:
        """The one shard of a basket's legs or a group's alternatives."""
        shards = sorted({self.f.routes.of_order(o) for o in orders})
        if len(shards) > 1:
            await _fail(context, "CROSS_SHARD", f"{what} of shards "
                        f"{', '.join(map(str, shards))}: a basket or group trades in one "
                        "shard (its SKUs and regions routed to one engine)")
        return shards[0] if shards else self.f.routes.indices[0]

    async def place_basket(self, body: bytes, context: Any) -> bytes:
        a = await self.f.auth(context, BUYER, SELLER)
        r = await _parse(context, pb.PlaceBasketRequest, body)
        await self.f.throttle(context, a, max(1, min(len(r.legs), 100)))
        index = await self._one_shard(context, r.legs, "a basket with legs")
        return await self._routed(context, "PlaceBasket", body, index, a, funded=True)

    async def place_one_of(self, body: bytes, context: Any) -> bytes:
        a = await self.f.auth(context, BUYER)
        await self.f.throttle(context, a)
        r = await _parse(context, pb.PlaceOneOfRequest, body)
        index = await self._one_shard(context, r.alternatives, "a group with alternatives")
        return await self._routed(context, "PlaceOneOf", body, index, a, funded=True)

    async def place_ask_range(self, body: bytes, context: Any) -> bytes:
        a = await self.f.auth(context, SELLER)
        r = await _parse(context, pb.PlaceAskRangeRequest, body)
        await self.f.throttle(context, a, max(1, min(r.hours, 168)))
        return await self._routed(context, "PlaceAskRange", body,
                                  self.f.routes.of_product(r.ask.product_id), a)

    async def register_capacity(self, body: bytes, context: Any) -> bytes:
        a = await self.f.auth(context, SELLER)
        r = await _parse(context, pb.RegisterCapacityRequest, body)
        return await self._routed(context, "RegisterCapacity", body,
                                  self.f.routes.of_market(r.sku, r.region), a)

    async def withdraw_capacity(self, body: bytes, context: Any) -> bytes:
        """The shard that knows the cluster withdraws; the others refuse without change."""
        a = await self.f.auth(context, SELLER)
        last: grpc.aio.AioRpcError | None = None
        for index in self.f.routes.indices:
            try:
                return await self.f.engines[index].unary(
                    MARKET, "WithdrawCapacity", body, a, context.time_remaining(),
                    command=True)
            except grpc.aio.AioRpcError as err:
                if _reason(err) != "UNKNOWN_CLUSTER":
                    await pass_on(context, err)
                last = err
            except ShardError as err:
                await _fail(context, err.reason, str(err))
        assert last is not None
        await pass_on(context, last)

    async def get_book(self, body: bytes, context: Any) -> bytes:
        a = await self.f.auth(context)
        r = await _parse(context, pb.GetBookRequest, body)
        return await self._routed(context, "GetBook", body,
                                  self.f.routes.of_product(r.product_id), a, command=False)

    async def priced(self, context: Any, method: str, cls: Any, body: bytes) -> bytes:
        """A price call (ListTrades, ListCandles, GetCurve, GetIndex, ListIndex): one
        product, or one SKU-region family, and so one shard, which holds its every trade
        and book (the gateway routes markets by SKU and region). Nothing to merge; the
        shard's page tokens pass through as they are."""
        a = await self.f.auth(context)
        r = await _parse(context, cls, body)
        product = getattr(r, "product_id", "")
        index = (self.f.routes.of_product(product) if product
                 else self.f.routes.of_market(r.sku, r.region))
        return await self._routed(context, method, body, index, a, command=False)

    async def _listed(self, context: Any, body: bytes, method: str, request: Any,
                      response: Any, rows: str, key: Callable[[Any], int]) -> bytes:
        """A list call: one shard's with a product, else every shard's pages merged."""
        a = await self.f.auth(context)
        r = await _parse(context, request, body)
        if r.product_id:
            return await self._routed(context, method, body,
                                      self.f.routes.of_product(r.product_id), a, command=False)
        parts = [response.FromString(b) for b in await self.f.each(
            context, MARKET, method, body, a, command=False,
            what=f"the venue's {rows} are not listed without every shard: ask with a "
            f"product_id for another shard's")]
        page, token = _merge_by(key, [getattr(p, rows) for p in parts], page_size(r.page_size),
                                any(p.next_page_token for p in parts))
        return bytes(response(**{rows: page}, next_page_token=token).SerializeToString())

    async def list_orders(self, body: bytes, context: Any) -> bytes:
        return await self._listed(context, body, "ListOrders", pb.ListOrdersRequest,
                                  pb.ListOrdersResponse, "orders", lambda o: o.order_id)

    async def list_allocations(self, body: bytes, context: Any) -> bytes:
        return await self._listed(context, body, "ListAllocations", pb.ListAllocationsRequest,
                                  pb.ListAllocationsResponse, "allocations",
                                  lambda x: x.trade_id)

    async def list_products(self, body: bytes, context: Any) -> bytes:
        """Shard by shard: the token names the shard and that shard's own token."""
        a = await self.f.auth(context)
        r = await _parse(context, pb.ListProductsRequest, body)
        indices = self.f.routes.indices
        at, _, inner = r.page_token.partition(".")
        if r.page_token and (not at.isdigit() or int(at) not in indices):
            await _fail(context, "INVALID_ARGUMENT",
                        "malformed page_token: pass the next_page_token of the previous page")
        k = indices.index(int(at)) if r.page_token else 0
        while True:
            ask = pb.ListProductsRequest(page_size=r.page_size, page_token=inner)
            # a shard with no engine running is named at once, with the page token that
            # lists the shards after it (as the views over every shard are refused)
            then = (f"page_token \"{indices[k + 1]}.\" lists the products of the shards "
                    "after it" if k + 1 < len(indices) else "")
            got = pb.ListProductsResponse.FromString(await self._routed(
                context, "ListProducts", ask.SerializeToString(), indices[k], a,
                command=False, dead_fast=True, then=then))
            if got.next_page_token:
                token = f"{indices[k]}.{got.next_page_token}"
            elif k + 1 < len(indices):
                token = f"{indices[k + 1]}."
            else:
                token = ""
            if got.products or not token:
                return bytes(pb.ListProductsResponse(products=got.products,
                                                     next_page_token=token)
                             .SerializeToString())
            k, inner = (k if got.next_page_token else k + 1), token.partition(".")[2]

    async def get_auction_result(self, body: bytes, context: Any) -> bytes:
        """The venue's auction (0: the latest): every shard's part of it, merged."""
        a = await self.f.auth(context)
        r = await _parse(context, pb.GetAuctionResultRequest, body)
        got = await _answered(context, self.f.auctions.result(r.auction_id, a,
                                                              context.time_remaining()))
        return bytes(got.SerializeToString())

    async def list_auctions(self, body: bytes, context: Any) -> bytes:
        a = await self.f.auth(context)
        await _parse(context, pb.ListAuctionsRequest, body)
        got = await _answered(context, self.f.auctions.listed(body, a,
                                                              context.time_remaining()))
        return bytes(got.SerializeToString())

    async def get_indicative_auction(self, body: bytes, context: Any) -> bytes:
        """Every shard's indicative auction, as the caller (its own orders on each)."""
        a = await self.f.auth(context)
        await _parse(context, pb.GetIndicativeAuctionRequest, body)
        got = await _answered(context, self.f.auctions.indicative(body, a,
                                                                  context.time_remaining()))
        return bytes(got.SerializeToString())

    async def submit_orders(self, requests: AsyncIterator[bytes],
                            context: Any) -> AsyncIterator[bytes]:
        """Each message's orders go to their shards' streams (split when they span
        shards); the answers come back in the caller's order. A buy refused
        ``INSUFFICIENT_FUNDS`` on a stream stays refused (sending it again later would
        reorder the stream), and the account's money is moved to that shard in the
        background, so that the next buy there fits."""
        a = await self.f.auth(context, BUYER, SELLER)
        token_at_auth = a.token_sha256
        upstream: dict[int, Upstream] = {}
        pending: asyncio.Queue[tuple[asyncio.Future[bytes], tuple[int, ...]] | None] = (
            asyncio.Queue(1024))
        loop = asyncio.get_running_loop()

        async def stream_of(index: int) -> Upstream:
            if index not in upstream:
                e = self.f.engines[index]
                upstream[index] = Upstream(await e.leader_channel(), e.metadata(a), index)
            return upstream[index]

        async def read() -> None:
            try:
                async for body in requests:
                    try:
                        r = pb.SubmitOrdersRequest.FromString(body)
                    except DecodeError:
                        await _fail(context, "INVALID_ARGUMENT", "malformed SubmitOrdersRequest")
                    refused = await self.f.admit(context, a, token_at_auth, len(r.orders))
                    if refused is not None:
                        f = loop.create_future()
                        f.set_result(refused)
                        await pending.put((f, ()))
                        continue
                    groups: dict[int, list[int]] = {}
                    for i, o in enumerate(r.orders):
                        groups.setdefault(self.f.routes.of_order(o), []).append(i)
                    if len(groups) <= 1:
                        index = next(iter(groups), self.f.routes.indices[0])
                        await pending.put(((await stream_of(index)).send(body), (index,)))
                        continue
                    parts = []
                    for index, at in groups.items():
                        sub = pb.SubmitOrdersRequest(orders=[r.orders[i] for i in at])
                        parts.append((at, (await stream_of(index)).send(
                            sub.SerializeToString())))
                    await pending.put((asyncio.ensure_future(_joined(len(r.orders), parts)),
                                       tuple(groups)))
            finally:
                await pending.put(None)
        reader = asyncio.create_task(read())
        try:
            while (item := await pending.get()) is not None:
                fut, indices = item
                try:
                    answer = await fut
                    if b"INSUFFICIENT_FUNDS" in answer:
                        for index in indices:
                            self.f.money.gather_later(a.account_id, index)
                    yield answer
                except grpc.aio.AioRpcError as err:
                    await pass_on(context, err)
                except ShardError as err:
                    await _fail(context, err.reason, str(err))
            await reader  # a refusal of the stream itself (malformed, too many orders)
        finally:
            reader.cancel()
            for u in upstream.values():
                u.close()

    async def _fan_in(self, context: Any, method: str, requests: dict[int, bytes],
                      account: Account, recast: Callable[[int, bytes], bytes] | None = None
                      ) -> AsyncIterator[bytes]:
        """The shards' streams as one: batches as each shard sends them (through
        ``recast(index, batch)`` if given). One shard's stream ending ends this one with
        its status."""
        q: asyncio.Queue[bytes | grpc.aio.AioRpcError | ShardError] = asyncio.Queue(
            self.f.limits.subscriber_queue)

        async def pump(index: int, body: bytes) -> None:
            e = self.f.engines[index]
            try:
                # a shard with no engine running ends the stream at once, naming it
                ch = await e.leader_channel(dead_fast=True)
                call = ch.unary_stream(f"/{MARKET}/{method}")(body, metadata=e.metadata(account))
                async for batch in call:
                    q.put_nowait(batch if recast is None else recast(index, batch))
                q.put_nowait(ShardError("SHARD_UNAVAILABLE",
                                        f"shard {index}'s stream ended; subscribe again"))
            except (grpc.aio.AioRpcError, ShardError) as err:
                q.put_nowait(err)
            except asyncio.QueueFull:
                lagged.set()  # the caller fell behind: its stream ends
        lagged = asyncio.Event()
        pumps = [asyncio.create_task(pump(i, b)) for i, b in requests.items()]
        try:
            while True:
                if lagged.is_set():
                    await _fail(context, "SUBSCRIBER_LAGGED", "the stream fell behind; "
                                "subscribe again", grpc.StatusCode.RESOURCE_EXHAUSTED)
                # lagging means the queue is full: the next get never waits
                item = await q.get()
                if isinstance(item, grpc.aio.AioRpcError):
                    await pass_on(context, item)
                if isinstance(item, ShardError):
                    await _fail(context, item.reason, str(item))
                yield item
        finally:
            for p in pumps:
                p.cancel()

    async def stream_market_data(self, body: bytes, context: Any) -> AsyncIterator[bytes]:
        a = await self.f.auth(context)
        r = await _parse(context, pb.StreamMarketDataRequest, body)
        await self.f.bounded(context, tuple(r.product_ids), (r.product_ids,))
        if r.product_ids:
            wanted: dict[int, list[str]] = {}
            for p in r.product_ids:
                wanted.setdefault(self.f.routes.of_product(p), []).append(p)
            requests = {i: pb.StreamMarketDataRequest(product_ids=ps).SerializeToString()
                        for i, ps in wanted.items()}
        else:
            requests = dict.fromkeys(self.f.routes.indices, body)
        async for m in self._fan_in(context, "StreamMarketData", requests, a):
            yield m

    async def stream_executions(self, body: bytes, context: Any) -> AsyncIterator[bytes]:
        """The caller's executions on every shard. Each shard numbers an account's
        executions on its own: here their sequence is the shard's index << 48 plus the
        shard's, so none repeats and each shard's follow one another (as ids do).

        The first message says the stream is live once every shard's stream is (each
        shard's first message, held until then with what follows it); it gives no
        sequence (``live_from_sequence`` 0): one number cannot say where each shard
        stands, so a resume (``from_sequence``) is refused UNIMPLEMENTED
        ``RESUME_NOT_SHARDED``."""
        a = await self.f.auth(context)
        r = await _parse(context, pb.StreamExecutionsRequest, body)
        if r.HasField("from_sequence"):
            await _fail(context, "RESUME_NOT_SHARDED", RESUME_NOT_SHARDED,
                        grpc.StatusCode.UNIMPLEMENTED)
        shards = list(self.f.routes.indices)
        live: set[int] = set()
        held: list[bytes] | None = []

        def recast(index: int, batch: bytes) -> bytes:
            b = pb.ExecutionBatch.FromString(batch)
            if b.HasField("start"):
                live.add(index)
                return b""
            for e in b.executions:
                e.sequence |= index << SHARD_BITS
            return bytes(b.SerializeToString())

        async for m in self._fan_in(context, "StreamExecutions",
                                    dict.fromkeys(shards, body), a, recast):
            if held is None:
                if m:
                    yield m
                continue
            if m:
                held.append(m)
            if len(live) == len(shards):
                yield pb.ExecutionBatch(start=pb.ExecutionStreamStart()).SerializeToString()
                for h in held:
                    yield h
                held = None


RESUME_NOT_SHARDED = ("a venue of shards cannot resume executions: each shard numbers "
                      "them on its own; subscribe without from_sequence and list your "
                      "orders to catch up (see docs/scaling.md)")


def _partly_cancelled(answers: dict[int, bytes], then: str) -> str:
    """What a mass cancel that lacks some shards did on the others (their open orders
    are cancelled, the missing shards' are not), then ``then``."""
    n = sum(len(pb.CancelAllResponse.FromString(b).orders) for b in answers.values())
    where = (f", on shard{'s' if len(answers) > 1 else ''} "
             f"{', '.join(map(str, answers))} only" if answers else "")
    return f"{n} open order{'s' if n != 1 else ''} cancelled{where}; {then}"


def _cancelled(answers: list[bytes]) -> bytes:
    orders = [o for b in answers for o in pb.CancelAllResponse.FromString(b).orders]
    orders.sort(key=lambda o: o.order_id)
    return bytes(pb.CancelAllResponse(orders=orders).SerializeToString())


async def _joined(n: int, parts: list[tuple[list[int], asyncio.Future[bytes]]]) -> bytes:
    results: list[Any] = [None] * n
    for at, fut in parts:
        got = pb.SubmitOrdersResponse.FromString(await fut).results
        for i, res in zip(at, got, strict=True):
            results[i] = res
    return bytes(pb.SubmitOrdersResponse(results=results).SerializeToString())


class Upstream:
    """A caller's SubmitOrders stream to one shard: messages in, in order, by one
    writer; answers paired with them in order."""

    def __init__(self, channel: grpc.aio.Channel, metadata: Any, index: int) -> None:
        self.call = channel.stream_stream(f"/{MARKET}/SubmitOrders")(metadata=metadata)
        self.index = index
        self.outgoing: asyncio.Queue[bytes] = asyncio.Queue()
        self.waiting: asyncio.Queue[asyncio.Future[bytes]] = asyncio.Queue()
        self.tasks = [asyncio.create_task(self._write()), asyncio.create_task(self._read())]

    def send(self, body: bytes) -> asyncio.Future[bytes]:
        fut: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self.waiting.put_nowait(fut)
        self.outgoing.put_nowait(body)
        return fut

    async def _write(self) -> None:
        try:
            while True:
                await self.call.write(await self.outgoing.get())
        except (grpc.aio.AioRpcError, asyncio.InvalidStateError):
            pass  # the reader fails what waits

    async def _read(self) -> None:
        try:
            while True:
                answer = await self.call.read()
                if answer is grpc.aio.EOF:
                    raise ShardError("SHARD_UNAVAILABLE", f"shard {self.index} ended the stream")
                fut = await self.waiting.get()
                if not fut.done():
                    fut.set_result(answer)
        except (grpc.aio.AioRpcError, ShardError) as err:
            # what waits fails, and so does what is sent later
            while True:
                fut = await self.waiting.get()
                if not fut.done():
                    fut.set_exception(err)

    def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        self.call.cancel()


def market_handlers(m: ShardMarket) -> grpc.GenericRpcHandler:
    uu = grpc.unary_unary_rpc_method_handler
    us = grpc.unary_stream_rpc_method_handler
    handlers = {
        "ListProducts": uu(m.list_products), "RegisterCapacity": uu(m.register_capacity),
        "WithdrawCapacity": uu(m.withdraw_capacity), "PlaceOrder": uu(m.place_order),
        "CancelOrder": uu(m.cancel_order), "AmendOrder": uu(m.amend_order),
        "GetOrder": uu(m.get_order), "ListOrders": uu(m.list_orders),
        "GetBook": uu(m.get_book), "ListAllocations": uu(m.list_allocations),
        "StreamMarketData": us(m.stream_market_data),
        "StreamExecutions": us(m.stream_executions),
        "SubmitOrders": grpc.stream_stream_rpc_method_handler(m.submit_orders),
        "CancelAll": uu(m.cancel_all), "PlaceAskRange": uu(m.place_ask_range),
        "PlaceOneOf": uu(m.place_one_of), "PlaceBasket": uu(m.place_basket),
        "Resell": uu(m.resell), "GetAuctionResult": uu(m.get_auction_result),
        "ListAuctions": uu(m.list_auctions),
        "GetIndicativeAuction": uu(m.get_indicative_auction),
        "GetBalance": uu(m.GetBalance, request_deserializer=pb.GetBalanceRequest.FromString,
                         response_serializer=pb.Balance.SerializeToString),
        "ListTransfers": uu(m.ListTransfers,
                            request_deserializer=pb.ListTransfersRequest.FromString,
                            response_serializer=pb.ListTransfersResponse.SerializeToString)}
    for method, cls in (("ListTrades", pb.ListTradesRequest),
                        ("ListCandles", pb.ListCandlesRequest),
                        ("GetCurve", pb.GetCurveRequest), ("GetIndex", pb.GetIndexRequest),
                        ("ListIndex", pb.ListIndexRequest)):
        handlers[method] = uu(functools.partial(_priced, m, method, cls))
    return grpc.method_handlers_generic_handler(MARKET, handlers)


async def _priced(m: ShardMarket, method: str, cls: Any, body: bytes, context: Any) -> bytes:
    return await m.priced(context, method, cls, body)


class ShardOperator(AccountsService):
    """The operator's calls: accounts here; products and state on the shards."""

    s: Front

    def __init__(self, f: Front) -> None:
        super().__init__(f)

    async def _trader(self, context: Any, account_id: int) -> Account:
        """The operator calling, once ``account_id`` is known to be a trader's."""
        a = await self.s.auth(context, OPERATOR)
        t = self.s.accounts.get(account_id)
        if t is None or t.has(OPERATOR):
            await _fail(context, "UNKNOWN_ACCOUNT", f"no trading account {account_id} (0 is "
                        "the venue's fee account: it takes fees, not deposits)")
        return a

    async def _at_home(self, context: Any, method: str, request: Any, a: Account,
                       gather: bool = False) -> Any:
        """A money command on the account's home shard (``gather``: refused for want of
        money there, the money free on the other shards is moved home first), answered
        with the account's balance over every shard."""
        home = self.s.money.home(request.account_id)
        answer = pb.BalanceResponse.FromString(await self.s.call(
            context, home, OPERATOR_SERVICE, method, request.SerializeToString(), a,
            funded=request.account_id if gather else 0))
        try:  # done: a shard that cannot be read now leaves the home shard's balance
            answer.balance.CopyFrom(await self.s.money.balance(request.account_id,
                                                               context.time_remaining()))
        except (grpc.aio.AioRpcError, ShardError) as err:
            log.warning("account %d's balance over every shard not read: %s",
                        request.account_id, err)
        log.warning("money: %s for account %d on shard %d: %s", method, request.account_id,
                    home, " ".join(str(request).split()),
                    extra={"account": request.account_id, "action": method})
        return answer

    async def Deposit(self, request: Any, context: Any) -> Any:
        a = await self._trader(context, request.account_id)
        return await self._at_home(context, "Deposit", request, a)

    async def Withdraw(self, request: Any, context: Any) -> Any:
        a = await self._trader(context, request.account_id)
        return await self._at_home(context, "Withdraw", request, a, gather=True)

    async def SetCreditLimit(self, request: Any, context: Any) -> Any:
        a = await self._trader(context, request.account_id)
        return await self._at_home(context, "SetCreditLimit", request, a)

    async def SetFees(self, request: Any, context: Any) -> Any:
        """Fees are every shard's: set on each."""
        if request.account_id == 0:
            a = await self.s.auth(context, OPERATOR)
        else:
            a = await self._trader(context, request.account_id)
        answers = await self.s.each(context, OPERATOR_SERVICE, "SetFees",
                                    request.SerializeToString(), a,
                                    what="fees are set on every shard: set them again once "
                                    "every shard serves")
        answer = pb.BalanceResponse.FromString(answers[0])
        try:
            answer.balance.CopyFrom(await self.s.money.balance(request.account_id,
                                                               context.time_remaining()))
        except (grpc.aio.AioRpcError, ShardError) as err:
            log.warning("account %d's balance over every shard not read: %s",
                        request.account_id, err)
        return answer

    async def MoveMoney(self, request: Any, context: Any) -> Any:
        await self.s.auth(context, OPERATOR)
        await _fail(context, "NOT_GATEWAY", "the gateway moves money between its shards "
                    "itself (docs/scaling.md)", grpc.StatusCode.PERMISSION_DENIED)

    async def ListMoves(self, request: Any, context: Any) -> Any:
        await self.s.auth(context, OPERATOR)
        await _fail(context, "NOT_GATEWAY", "the gateway moves money between its shards "
                    "itself (docs/scaling.md)", grpc.StatusCode.PERMISSION_DENIED)

    async def _forward(self, context: Any, method: str, request: Any, index: int,
                       cls: Any) -> Any:
        a = await self.s.auth(context, OPERATOR)
        return cls.FromString(await self.s.call(context, index, OPERATOR_SERVICE, method,
                                                request.SerializeToString(), a))

    async def CreateProducts(self, request: Any, context: Any) -> Any:
        """Each (SKU, region) pair's products on its shard."""
        a = await self.s.auth(context, OPERATOR)
        r = request
        count = max(0, r.to_hour - r.from_hour) * len(r.skus) * len(r.regions)
        if count > self.s.limits.max_products_per_call:
            await _fail(context, "TOO_MANY_PRODUCTS",
                        f"at most {self.s.limits.max_products_per_call} products per call")
        calls = []
        for sku in r.skus or [""]:
            for region in r.regions or [""]:
                one = pb.CreateProductsRequest()
                one.CopyFrom(r)
                one.ClearField("skus")
                one.ClearField("regions")
                one.skus.extend([sku] if sku else [])
                one.regions.extend([region] if region else [])
                calls.append(self.s.call(context, self.s.routes.of_market(sku, region),
                                         OPERATOR_SERVICE, "CreateProducts",
                                         one.SerializeToString(), a))
        out = pb.CreateProductsResponse()
        for b in await asyncio.gather(*calls):
            got = pb.CreateProductsResponse.FromString(b)
            out.products.extend(got.products)
            out.existing.extend(got.existing)
        return out

    async def Halt(self, request: Any, context: Any) -> Any:
        return await self._forward(context, "Halt", request,
                                   self.s.routes.of_product(request.product_id),
                                   pb.ProductResponse)

    async def Resume(self, request: Any, context: Any) -> Any:
        return await self._forward(context, "Resume", request,
                                   self.s.routes.of_product(request.product_id),
                                   pb.ProductResponse)

    async def CloseProduct(self, request: Any, context: Any) -> Any:
        return await self._forward(context, "CloseProduct", request,
                                   self.s.routes.of_product(request.product_id),
                                   pb.ProductResponse)

    async def DisableAccount(self, request: Any, context: Any) -> Any:
        """The kill switch: refused here at once, then its open orders on every shard
        cancelled."""
        a = await self._account_change(
            context, lambda: self.s.accounts.set_enabled(request.account_id, False))
        acting = Account(a.account_id, a.name, [BUYER, SELLER], "")
        answers, missing = await self.s.fan_out(context, MARKET, "CancelAll", b"", acting)
        if missing:
            await self.s.missing(context, missing, f"account {a.account_id} is disabled "
                                 "(every call of it refused from now); " + _partly_cancelled(
                                     answers, "disable it again once every shard serves"))
        cancelled = pb.CancelAllResponse.FromString(_cancelled(list(answers.values())))
        log.warning("account %d disabled; %d open orders cancelled", a.account_id,
                    len(cancelled.orders), extra={"account": a.account_id})
        from spotex.server.service import _account
        return pb.AccountResponse(account=_account(a), cancelled=cancelled.orders)

    async def _hashes(self, context: Any, method: str) -> Any:
        a = await self.s.auth(context, OPERATOR)
        answers = [pb.GetStateHashResponse.FromString(b) for b in await self.s.each(
            context, OPERATOR_SERVICE, method, b"", a, command=method == "TakeSnapshot",
            what="the venue's hash needs every shard's" + (
                " (the other shards took their snapshots)" if method == "TakeSnapshot"
                else ""))]
        return venue_hash(self.s.routes.indices, answers)

    async def GetStateHash(self, request: Any, context: Any) -> Any:
        return await self._hashes(context, "GetStateHash")

    async def TakeSnapshot(self, request: Any, context: Any) -> Any:
        return await self._hashes(context, "TakeSnapshot")

    async def RunAuction(self, request: Any, context: Any) -> Any:
        """The venue's auction: one on every shard under one id, the results merged."""
        a = await self.s.auth(context, OPERATOR)
        r = request
        return await _answered(context, self.s.auctions.run(
            r.from_hour, r.to_hour, r.time_limit_ms, r.auction_id, a,
            context.time_remaining()))


def venue_hash(indices: list[int], answers: list[Any]) -> Any:
    """The venue's sequence (the sum of the shards') and hash: SHA-256 of each shard's
    index and state hash, one line each, in index order."""
    lines = "".join(f"{i} {r.state_hash}\n" for i, r in zip(indices, answers, strict=True))
    return pb.GetStateHashResponse(sequence=sum(r.sequence for r in answers),
                                   state_hash=hashlib.sha256(lines.encode()).hexdigest())


class _Shards(Collector):
    """The gateway's metrics: its view of its shards (leaders, failovers, refusals) and
    its accounts, read at each scrape."""

    def __init__(self, front: Front) -> None:
        self.front = front

    def collect(self) -> Iterator[Metric]:
        leader = GaugeMetricFamily(
            "spotex_gateway_shard_leader", "1 for the engine the gateway calls as its "
            "shard's leader, 0 for the others.", labels=["shard", "engine"])
        changes = CounterMetricFamily(
            "spotex_gateway_leader_changes", "Times the gateway found another engine "
            "leading the shard (a standby took over).", labels=["shard"])
        lost = CounterMetricFamily(
            "spotex_gateway_shard_unavailable", "Calls refused SHARD_UNAVAILABLE: no engine "
            "of the shard served in time, or its engine was lost during the call.",
            labels=["shard"])
        for index, engines in sorted(self.front.engines.items()):
            for k, address in enumerate(engines.spec.addresses):
                leader.add_metric([str(index), address], 1 if k == engines.leader else 0)
            changes.add_metric([str(index)], engines.leader_changes)
            lost.add_metric([str(index)], engines.refused)
        auctions = CounterMetricFamily(
            "spotex_gateway_auctions", "Block auctions the gateway ran, by outcome: "
            "cleared (on every shard), partial (some shards ran it, one refused), refused "
            "(no shard ran it).", labels=["outcome"])
        for outcome, n in self.front.auctions.outcomes.items():
            auctions.add_metric([outcome], n)
        money = self.front.money
        yield CounterMetricFamily("spotex_gateway_money_moves", "Moves of an account's money "
                                  "between shards this gateway began (a shard short of it "
                                  "for a buy or a withdrawal).", value=money.moves)
        yield CounterMetricFamily("spotex_gateway_money_moved_micros", "Micro-dollars those "
                                  "moves took out of their source shards.",
                                  value=money.moved_micros)
        yield CounterMetricFamily("spotex_gateway_money_landed_late", "Moves left in "
                                  "transit (their mover failed) that the sweep landed.",
                                  value=money.landed_late)
        yield leader
        yield changes
        yield lost
        yield auctions
        yield GaugeMetricFamily("spotex_gateway_accounts", "Accounts the gateway knows.",
                                value=len(self.front.accounts.all()))



class TokenRefused(ListenError):
    """The engines refuse the gateway's token (another than their --gateway-token)."""


async def check_token(routes: Routes, token: str, timeout: float = 2.0) -> None:
    """Every engine that answers within ``timeout`` takes ``token``; else TokenRefused,
    naming them. Engines not started yet are not judged: a call they refuse later is
    refused SHARD_UNAVAILABLE, saying the same."""
    shards = [Engines(s, token, timeout, Limits().max_message_bytes) for s in routes.shards]
    try:
        said = [x for found in await asyncio.gather(*(e.token_check(timeout) for e in shards))
                for x in found]
        credits = [(e.index, *x) for e, found in zip(shards, await asyncio.gather(
            *(e.default_credit(timeout) for e in shards)), strict=True) for x in found]
    finally:
        for e in shards:
            await e.close()
    if said:
        raise TokenRefused(said[0] + (f" (and {len(said) - 1} more engines)"
                                      if len(said) > 1 else ""))
    check_credit(credits)


class CreditRefused(ListenError):
    """Engines whose default credit limit would be granted once per shard."""


def check_credit(credits: list[tuple[int, str, int]]) -> None:
    """Behind a gateway an engine's default credit limit is 0 or unlimited (money not
    checked), the same on every shard: a default credit would be granted once per shard
    (docs/scaling.md, "Money across shards")."""
    for index, address, credit in credits:
        if credit not in (0, INT64_MAX):
            raise CreditRefused(
                f"shard {index}'s engine at {address} gives every account "
                f"${credit / 1e6:,.2f} of credit (--default-credit-limit): behind a gateway "
                "that would be granted once per shard; start the engines with 0 (set an "
                "account's own credit through the gateway) or unlimited")
    if len({c for *_, c in credits}) > 1:
        checked = sorted({i for i, _, c in credits if c == 0})
        raise CreditRefused(
            f"shards {', '.join(map(str, checked))} check money (--default-credit-limit 0) "
            "and the others do not (unlimited): start every engine with the same setting")


class ShardGateway:
    """A running shard gateway: ``await ShardGateway.start(...)``, then ``stop()``."""

    def __init__(self, server: grpc.aio.Server, port: int, front: Front,
                 lock: DataDirLock | None, metrics: Metrics | None = None,
                 metrics_port: int | None = None,
                 scheduled: asyncio.Task[None] | None = None) -> None:
        self.grpc = server
        # money left in transit between shards (by this gateway or one before it) lands
        self._sweep = asyncio.create_task(front.money.sweep())
        self.port = port
        self.front = front
        self._lock = lock
        self.metrics = metrics
        self.metrics_port = metrics_port
        self._scheduled = scheduled  # the daily auction, with --auction-schedule

    @classmethod
    async def start(cls, listen: str, routes: Routes, gateway_token: str,
                    data_dir: Path | None = None, operator_token: str | None = None,
                    limits: Limits | None = None, failover_seconds: float = 15.0,
                    tls: TlsConfig | None = None, access_log: bool = True,
                    metrics_listen: str | None = None, auction_schedule: str = ""
                    ) -> ShardGateway:
        """``auction_schedule`` ("HH:MM" UTC): the venue's block auction every day then,
        over the hours of the next UTC day, on every shard under one id (the engines must
        have no schedule of their own)."""
        if not gateway_token:
            raise ListenError("a gateway needs the token its engines trust (--gateway-token)")
        _check_listen(listen)
        if metrics_listen:
            _check_listen(metrics_listen)
        # before anything is written: the engines that answer take the gateway's token
        await check_token(routes, gateway_token)
        limits = limits or Limits()
        lock = DataDirLock(data_dir) if data_dir is not None else None
        metrics: Metrics | None = None
        try:
            accounts = Accounts(data_dir / "accounts.json" if data_dir else None,
                                operator_token)
            front = Front(accounts, limits, routes, gateway_token, failover_seconds)
            metrics = Metrics(_Shards(front)) if metrics_listen else None
            server, port, health_servicer, _ = grpc_server(
                listen, limits, tls, Observe(metrics, access_log),
                market_handlers(ShardMarket(front)), ShardOperator(front))
            try:
                metrics_port = (metrics.serve(metrics_listen) if metrics and metrics_listen
                                else None)
            except OSError as err:
                raise ListenError(f"cannot listen on {metrics_listen}: "
                                  f"{err.strerror or err}") from None
            await server.start()
        except BaseException:
            if metrics is not None:
                metrics.close()
            if lock is not None:
                lock.release()
            raise
        for name in ("", MARKET, OPERATOR_SERVICE):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
        log.info("spotex gateway listening on %s:%d for shards %s",
                 listen.rsplit(":", 1)[0], port,
                 ", ".join(f"{s.index} ({' '.join(s.addresses)})" for s in routes.shards))
        if metrics_port is not None:
            log.info("metrics on http://%s:%d/metrics", metrics_listen.rsplit(":", 1)[0]
                     if metrics_listen else "", metrics_port)
        scheduled = None
        if auction_schedule:
            scheduled = asyncio.create_task(front.auctions.on_schedule(auction_schedule))
            log.info("block auctions every day at %s UTC for the next day's hours, on "
                     "every shard", auction_schedule)
        return cls(server, port, front, lock, metrics, metrics_port, scheduled)

    async def stop(self, grace: float = 2.0) -> None:
        self._sweep.cancel()
        if self._scheduled is not None:
            self._scheduled.cancel()
        if self.metrics is not None:
            self.metrics.close()
        await self.grpc.stop(grace)
        for e in self.front.engines.values():
            await e.close()
        if self._lock is not None:
            self._lock.release()


async def run_gateway(listen: str, routes: Routes, gateway_token: str, data_dir: Path | None,
                      operator_token: str | None, failover_seconds: float = 15.0,
                      ready: Callable[[ShardGateway], None] | None = None,
                      limits: Limits | None = None, metrics_listen: str | None = None,
                      auction_schedule: str = "") -> None:
    """Runs until SIGTERM or SIGINT."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    gw = await ShardGateway.start(listen, routes, gateway_token, data_dir, operator_token,
                                  limits, failover_seconds, metrics_listen=metrics_listen,
                                  auction_schedule=auction_schedule)
    if ready:
        ready(gw)
    await stop.wait()
    await gw.stop()
