"""The gRPC service (``spotex.v1.Market`` and ``spotex.v1.Operator``) on ``grpc.aio``.

Handlers authenticate the caller, check its role, validate what the engine cannot, and
hand commands to the gateway's single writer thread; they never touch the engine
themselves. Market data and executions fan out from the writer to bounded per-subscriber
queues on the event loop. Health checking and reflection are served too.
"""

from __future__ import annotations

import asyncio
import collections
import datetime as dt
import errno
import functools
import logging
import signal
import socket
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from spotex import wire
from spotex._core import SpotexError
from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex._proto.spotex.v1 import spotex_pb2_grpc as pb_grpc
from spotex.accounts import BUYER, OPERATOR, SELLER, Account, Accounts
from spotex.gateway import FillRecord, Gateway, GatewayError, OrderRecord, Published
from spotex.limits import Limits, TlsConfig, TokenBucket

log = logging.getLogger("spotex.server")
T = TypeVar("T")
HOUR = 3_600_000_000


class _Status(collections.namedtuple("_Status", ("code", "details", "trailing_metadata")),
              grpc.Status):
    pass


async def _fail(context: grpc.aio.ServicerContext, reason: str, message: str,
                code: grpc.StatusCode | None = None, retry_after: float | None = None) -> NoReturn:
    code = code or wire.status_for(reason)
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


class Hub:
    """Subscribers' bounded queues, fed on the event loop. A subscriber that falls a whole
    queue behind is dropped with a clear status instead of growing memory."""

    def __init__(self) -> None:
        self.market: list[tuple[set[str] | None, Backlog]] = []
        self.executions: dict[int, list[Backlog]] = {}

    def drop_all(self) -> None:
        """Ends every stream (they resubscribe): after the state was rebuilt from disk,
        sequence numbers start again from the durable state."""
        for _, q in self.market:
            q.lag()
        for qs in self.executions.values():
            for q in qs:
                q.lag()

    def dispatch_all(self, outs: list[Published]) -> None:
        """One round of the writer: each subscriber gets what it is due from it as one
        queue entry, which travels as one stream message."""
        if self.market:
            msgs = [(p, _market_pb(p, seq, kind, payload))
                    for out in outs for p, seq, kind, payload in out.market]
            if msgs:
                for products, q in self.market:
                    mine = [m for p, m in msgs if products is None or p in products]
                    if mine:
                        q.offer(mine)
        if self.executions:
            due: dict[int, list[Any]] = {}
            for out in outs:
                for account, seq, kind, rec, fill, alloc in out.executions:
                    if account not in self.executions:
                        continue
                    due.setdefault(account, []).append(pb.Execution(
                        sequence=seq, kind=kind,
                        order=order_pb(rec, with_fills=False) if rec else None,
                        fill=fill_pb(fill) if fill else None,
                        allocation=allocation_pb(alloc, account) if alloc else None))
            for account, ms in due.items():
                for q in self.executions.get(account, ()):
                    q.offer(ms)


class Backlog:
    """What one subscriber has yet to receive, bounded in updates (whatever the writer's
    rounds hold). Past the bound the subscriber has fallen behind: it gets what is queued,
    then a clear status, and nothing more is kept for it."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.entries: collections.deque[list[Any]] = collections.deque()
        self.size = 0
        self.lagged = False
        self._ready = asyncio.Event()

    def offer(self, entry: list[Any], force: bool = False) -> None:
        if self.lagged:
            return
        if not force and self.size + len(entry) > self.limit:
            self.lagged = True
        else:
            self.entries.append(entry)
            self.size += len(entry)
        self._ready.set()

    def lag(self) -> None:
        self.lagged = True
        self._ready.set()

    async def take(self, most: int) -> list[Any] | None:
        """Every queued update (about ``most`` at a time), or None once lagged and drained."""
        while not self.entries:
            if self.lagged:
                return None
            self._ready.clear()
            await self._ready.wait()
        out: list[Any] = []
        while self.entries and len(out) < most:
            entry = self.entries.popleft()
            self.size -= len(entry)
            out.extend(entry)
        return out


# the most updates one stream message carries when a subscriber has a backlog
MAX_UPDATES_PER_MESSAGE = 4096


async def _drain(q: Backlog, context: Any, hint: str,
                 wrap: Callable[[list[Any]], Any]) -> AsyncIterator[Any]:
    """A subscriber's messages until it falls too far behind, then a clear status.
    Updates waiting in its backlog go out together, as one message."""
    while (updates := await q.take(MAX_UPDATES_PER_MESSAGE)) is not None:
        yield wrap(updates)
    await _fail(context, "SUBSCRIBER_LAGGED", f"the stream fell behind; {hint}",
                grpc.StatusCode.RESOURCE_EXHAUSTED)


def _market_pb(product: str, seq: int, kind: str, payload: Any) -> Any:
    if kind == "trade":
        trade_id, price, qty, side, ts = payload
        return pb.MarketData(product_id=product, sequence=seq, trade=pb.Trade(
            trade_id=trade_id, price_micros=price, quantity=qty,
            aggressor=wire.SIDE_TO_PB[side], time_micros=ts))
    if kind == "level":
        side, price, qty, orders = payload
        return pb.MarketData(product_id=product, sequence=seq, level=pb.LevelUpdate(
            side=wire.SIDE_TO_PB[side], price_micros=price, quantity=qty, orders=orders))
    return pb.MarketData(product_id=product, sequence=seq, state=payload)


class Service:
    def __init__(self, gateway: Gateway, accounts: Accounts, hub: Hub, limits: Limits) -> None:
        self.gw = gateway
        self.accounts = accounts
        self.hub = hub
        self.limits = limits
        self.bucket = TokenBucket(limits.orders_per_second, limits.order_burst)

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

    async def writer(self, fn: Callable[[], T]) -> T:
        return await self.gw.submit_async(fn)

    async def auth(self, context: grpc.aio.ServicerContext, *roles: str) -> Account:
        token = ""
        for key, value in context.invocation_metadata() or ():
            if key == "authorization" and isinstance(value, str) and value.startswith("Bearer "):
                token = value[len("Bearer "):]
        account = self.accounts.authenticate(token) if token else None
        if account is None:
            await _fail(context, "UNAUTHENTICATED", "missing or unknown bearer token")
        if roles and not any(account.has(r) for r in roles):
            await _fail(context, "ROLE_REQUIRED", f"this call needs the role {' or '.join(roles)}")
        return account

    async def command(self, context: grpc.aio.ServicerContext, fn: Callable[[], T]) -> T:
        """Runs ``fn`` on the writer unless the caller's deadline passes first: a command
        whose caller stopped waiting is not applied."""
        remaining = context.time_remaining()
        deadline = None if remaining is None else time.monotonic() + remaining

        def guarded() -> T:
            if deadline is not None and time.monotonic() > deadline:
                raise GatewayError("DEADLINE_EXCEEDED", "the deadline passed before the "
                                   "command reached the engine; it was not applied")
            return fn()
        try:
            return await self.writer(guarded)
        except (SpotexError, GatewayError) as err:
            await _fail(context, err.reason, str(err))  # type: ignore[attr-defined]


class MarketService(pb_grpc.MarketServicer):  # type: ignore[misc]
    def __init__(self, s: Service) -> None:
        self.s = s

    async def ListProducts(self, request: Any, context: Any) -> Any:
        await self.s.auth(context)
        rows = await self.s.writer(self.s.gw.engine.products)
        return pb.ListProductsResponse(products=[product_pb(r) for r in rows])

    async def RegisterCapacity(self, request: Any, context: Any) -> Any:
        a = await self.s.auth(context, SELLER)
        await self.s.bounded(context, (request.cluster_id, request.sku, request.region,
                                       *(n.node_id for n in request.nodes)), (request.nodes,))
        nodes = [(n.node_id, n.gpus) for n in request.nodes]
        gw = self.s.gw
        await self.s.command(context, lambda: gw.register_capacity(
            a.account_id, request.cluster_id, request.sku, request.region, nodes,
            request.from_hour, request.to_hour))
        return pb.RegisterCapacityResponse(cluster_id=request.cluster_id)

    async def WithdrawCapacity(self, request: Any, context: Any) -> Any:
        a = await self.s.auth(context, SELLER)
        await self.s.bounded(context, (request.cluster_id, *request.node_ids),
                             (request.node_ids,))
        gw = self.s.gw

        def go() -> int:
            if request.cluster_id not in dict(gw.engine.clusters(a.account_id)):
                raise GatewayError("UNKNOWN_CLUSTER", "no such cluster of yours")
            events = gw.withdraw_capacity(a.account_id, request.cluster_id, request.from_hour,
                                          request.to_hour, list(request.node_ids) or None)
            return sum(e.qty or 0 for e in events if e.kind == "capacity_withdrawn")
        n = await self.s.command(context, go)
        return pb.WithdrawCapacityResponse(gpu_hours_withdrawn=n)

    def _place(self, a: Account, r: Any) -> Any:
        """Validates and places one order on the writer; raises on refusal."""
        side = wire.SIDE_FROM_PB.get(r.side)
        if side is None:
            raise GatewayError("INVALID_SIDE", "side must be SIDE_BUY or SIDE_SELL")
        if not a.has(BUYER if side == "buy" else SELLER):
            raise GatewayError("ROLE_REQUIRED", f"placing a {side} order needs the role "
                               f"{BUYER if side == 'buy' else SELLER}")
        order_type = wire.TYPE_FROM_PB.get(r.order_type)
        tif = wire.TIF_FROM_PB.get(r.time_in_force)
        stp = wire.STP_FROM_PB.get(r.stp)
        if order_type is None or tif is None or stp is None:
            raise GatewayError("INVALID_ENUM", "unknown order_type, time_in_force or stp")
        if len(r.client_order_id) > 64:
            raise GatewayError("INVALID_CLIENT_ORDER_ID", "client_order_id is at most 64 chars")
        if r.gang > 64:
            raise GatewayError("INVALID_GANG", "gang must be a power of two from 1 to 64")
        gw = self.s.gw
        return gw.place(a.account_id, r.client_order_id, r.product_id, side, r.price_micros,
                        r.quantity, order_type=order_type, tif=tif,
                        expire_at=r.expire_at_micros if tif == "gtd" else None,
                        post_only=r.post_only, stp=stp, cluster=r.cluster_id or None,
                        gang=r.gang or 1)

    async def PlaceOrder(self, request: Any, context: Any) -> Any:
        a = await self.s.auth(context, BUYER, SELLER)
        await self.s.bounded(context, (request.product_id, request.cluster_id))
        await self.s.throttle(context, a)
        rec = await self.s.command(context, lambda: order_pb(self._place(a, request)))
        return pb.PlaceOrderResponse(order=rec)

    async def CancelOrder(self, request: Any, context: Any) -> Any:
        a = await self.s.auth(context, BUYER, SELLER)
        await self.s.throttle(context, a)
        gw = self.s.gw
        rec = await self.s.command(
            context, lambda: order_pb(gw.cancel(a.account_id, request.order_id)))
        return pb.CancelOrderResponse(order=rec)

    async def AmendOrder(self, request: Any, context: Any) -> Any:
        a = await self.s.auth(context, BUYER, SELLER)
        await self.s.throttle(context, a)
        gw = self.s.gw
        rec = await self.s.command(context, lambda: order_pb(gw.amend(
            a.account_id, request.order_id, request.price_micros or None,
            request.quantity or None)))
        return pb.AmendOrderResponse(order=rec)

    async def GetOrder(self, request: Any, context: Any) -> Any:
        a = await self.s.auth(context)
        gw = self.s.gw

        def go() -> Any:
            rec = gw.orders.get(request.order_id)
            if rec is None:
                raise GatewayError("UNKNOWN_ORDER", "no such order")
            if rec.account != a.account_id:
                raise GatewayError("NOT_OWNER", "the order belongs to another account")
            return order_pb(rec)
        return pb.GetOrderResponse(order=await self.s.command(context, go))

    async def ListOrders(self, request: Any, context: Any) -> Any:
        a = await self.s.auth(context)
        await self.s.bounded(context, (request.product_id,))
        gw = self.s.gw

        def go() -> list[Any]:
            return [order_pb(r) for r in gw.orders.values()
                    if r.account == a.account_id
                    and (not request.product_id or r.product == request.product_id)
                    and (not request.open_only or r.remaining > 0)]
        return pb.ListOrdersResponse(orders=await self.s.command(context, go))

    async def GetBook(self, request: Any, context: Any) -> Any:
        await self.s.auth(context)
        await self.s.bounded(context, (request.product_id,))
        gw = self.s.gw
        depth = min(request.depth or 20, 10_000)
        seq, bids, asks = await self.s.command(
            context, lambda: gw.book(request.product_id, depth))
        return pb.GetBookResponse(book=book_pb(request.product_id, seq, bids, asks))

    async def ListAllocations(self, request: Any, context: Any) -> Any:
        a = await self.s.auth(context)
        gw = self.s.gw
        rows = await self.s.writer(lambda: gw.engine.allocations(a.account_id))
        return pb.ListAllocationsResponse(allocations=[
            allocation_pb(x, a.account_id) for x in rows
            if not request.product_id or x.product == request.product_id])

    async def StreamMarketData(self, request: Any, context: Any) -> AsyncIterator[Any]:
        await self.s.auth(context)
        await self.s.bounded(context, tuple(request.product_ids), (request.product_ids,))
        gw, hub = self.s.gw, self.s.hub
        loop = asyncio.get_running_loop()
        q = Backlog(self.s.limits.subscriber_queue)
        wanted = set(request.product_ids) or None
        entry = (wanted, q)

        def subscribe() -> None:
            gw.flush()  # what came before the snapshot goes out before it registers
            known = {row[0] for row in gw.engine.products()}
            if wanted and not wanted <= known:
                raise GatewayError("UNKNOWN_PRODUCT", "no such product: "
                                   + ", ".join(sorted(wanted - known)))
            snaps = [(p, *gw.book(p, 1 << 30)) for p in sorted(wanted or known)]

            def register() -> None:
                q.offer([pb.MarketData(product_id=p, sequence=seq,
                                       snapshot=book_pb(p, seq, bids, asks))
                         for p, seq, bids, asks in snaps], force=True)
                hub.market.append(entry)
            loop.call_soon_threadsafe(register)
        await self.s.command(context, subscribe)
        try:
            async for m in _drain(q, context, "resubscribe for a fresh snapshot",
                                  lambda ms: pb.MarketDataBatch(updates=ms)):
                yield m
        finally:
            if entry in hub.market:
                hub.market.remove(entry)

    async def StreamExecutions(self, request: Any, context: Any) -> AsyncIterator[Any]:
        a = await self.s.auth(context)
        hub = self.s.hub
        q = Backlog(self.s.limits.subscriber_queue)
        # registered on the loop, so it sees every execution published after this point
        await self.s.writer(lambda: None)
        hub.executions.setdefault(a.account_id, []).append(q)
        try:
            async for m in _drain(q, context, "list your orders to catch up",
                                  lambda ms: pb.ExecutionBatch(executions=ms)):
                yield m
        finally:
            hub.executions[a.account_id].remove(q)

    async def SubmitOrders(self, request_iterator: Any, context: Any) -> AsyncIterator[Any]:
        a = await self.s.auth(context, BUYER, SELLER)
        # Pipelined: orders go to the writer as they arrive, answers come back in order.
        # The bounded queue is the back-pressure on a client that sends faster than we match.
        pending: asyncio.Queue[asyncio.Future[Any] | None] = asyncio.Queue(1024)

        async def read() -> None:
            try:
                async for req in request_iterator:
                    limit = self.s.limits.max_orders_per_message
                    if len(req.orders) > limit:
                        await _fail(context, "TOO_MANY_ORDERS",
                                    f"at most {limit} orders per message")
                    wait = self.s.bucket.take(a.account_id, len(req.orders), time.monotonic())
                    if wait:
                        await pending.put(_resolved([pb.OrderResult(
                            code=grpc.StatusCode.RESOURCE_EXHAUSTED.value[0],
                            reason="RATE_LIMITED",
                            message=f"over the order rate; retry in {wait * 1000:.0f} ms")
                            for _ in req.orders]))
                        continue
                    await pending.put(self.s.gw.submit_async(
                        functools.partial(self._results, a, list(req.orders))))
            finally:
                await pending.put(None)
        reader = asyncio.create_task(read())
        try:
            while (fut := await pending.get()) is not None:
                yield pb.SubmitOrdersResponse(results=await fut)
        finally:
            reader.cancel()

    def _results(self, a: Account, orders: list[Any]) -> list[Any]:
        for o in orders:
            if len(o.product_id) > self.s.limits.max_string or len(o.cluster_id) > 64:
                raise GatewayError("FIELD_TOO_LONG", "an id in the message is too long")
        return [self._result(a, o) for o in orders]

    def _result(self, a: Account, order: Any) -> Any:
        """On the writer: one order of a bulk message, refused or placed."""
        try:
            return pb.OrderResult(order=order_pb(self._place(a, order)))
        except (SpotexError, GatewayError) as err:
            reason = err.reason  # type: ignore[attr-defined]
            return pb.OrderResult(code=wire.status_for(reason).value[0], reason=reason,
                                  message=str(err))


class OperatorService(pb_grpc.OperatorServicer):  # type: ignore[misc]
    def __init__(self, s: Service) -> None:
        self.s = s

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
        gw = self.s.gw

        def go() -> list[Any]:
            created = []
            existing = {row[0] for row in gw.engine.products()}
            for sku in r.skus:
                for region in r.regions:
                    for h in range(r.from_hour, r.to_hour):
                        when = dt.datetime.fromtimestamp(h * 3600, dt.UTC).strftime("%Y-%m-%dT%H")
                        pid = f"{sku}/{region}/{when}"
                        if pid in existing:
                            continue  # listing again is harmless
                        gw.create_product(pid, r.tick_micros, r.lot,
                                          h * HOUR - r.gate_closure_lead_micros,
                                          r.open_at_micros or None)
                        created.append(pid)
            rows = {row[0]: row for row in gw.engine.products()}
            return [product_pb(rows[p]) for p in created]
        return pb.CreateProductsResponse(products=await self.s.command(context, go))

    async def CreateAccount(self, request: Any, context: Any) -> Any:
        await self.s.auth(context, OPERATOR)
        roles = [wire.ROLE_FROM_PB.get(x, "") for x in request.roles]
        try:
            acct, token = self.s.accounts.create(request.name, roles)
        except ValueError as err:
            await _fail(context, "INVALID_ACCOUNT", str(err))
        return pb.CreateAccountResponse(account_id=acct.account_id, token=token)

    async def _state(self, context: Any, request: Any, what: str) -> Any:
        await self.s.auth(context, OPERATOR)
        await self.s.bounded(context, (request.product_id,))
        gw = self.s.gw

        def go() -> Any:
            gw.set_state(what, request.product_id)
            row = next(x for x in gw.engine.products() if x[0] == request.product_id)
            return product_pb(row)
        return pb.ProductResponse(product=await self.s.command(context, go))

    async def Halt(self, request: Any, context: Any) -> Any:
        return await self._state(context, request, "halt")

    async def Resume(self, request: Any, context: Any) -> Any:
        return await self._state(context, request, "resume")

    async def CloseProduct(self, request: Any, context: Any) -> Any:
        return await self._state(context, request, "close")

    async def TakeSnapshot(self, request: Any, context: Any) -> Any:
        await self.s.auth(context, OPERATOR)
        gw = self.s.gw
        if gw.data_dir is None:
            await _fail(context, "NO_DATA_DIR", "the server runs without a data directory",
                        grpc.StatusCode.FAILED_PRECONDITION)
        seq, h = await self.s.writer(gw.take_snapshot)
        return pb.GetStateHashResponse(sequence=seq, state_hash=h)

    async def GetStateHash(self, request: Any, context: Any) -> Any:
        await self.s.auth(context, OPERATOR)
        gw = self.s.gw
        seq, h = await self.s.writer(lambda: (gw.sequence, gw.engine.state_hash()))
        return pb.GetStateHashResponse(sequence=seq, state_hash=h)


class ListenError(OSError):
    """The server cannot take its address (in use, or not an address of this host)."""


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


def _listen(listen: str, gateway: Gateway, data_dir: Path | None,
            operator_token: str | None, hub: Hub, limits: Limits,
            tls: TlsConfig | None) -> tuple[grpc.aio.Server, int, Any, tuple[str, ...]]:
    accounts = Accounts(data_dir / "accounts.json" if data_dir else None, operator_token)
    s = Service(gateway, accounts, hub, limits)
    server = grpc.aio.server(options=[
        ("grpc.max_receive_message_length", limits.max_message_bytes),
        # grpcio shares ports by default: a second server on the same port would take
        # half of the calls, each against its own engine
        ("grpc.so_reuseport", 0)])
    pb_grpc.add_MarketServicer_to_server(MarketService(s), server)
    pb_grpc.add_OperatorServicer_to_server(OperatorService(s), server)
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

    def __init__(self, grpc_server: grpc.aio.Server, port: int, gateway: Gateway,
                 ticker: asyncio.Task[None]) -> None:
        self.grpc = grpc_server
        self.port = port
        self.gateway = gateway
        self._ticker = ticker

    @classmethod
    async def start(cls, listen: str = "127.0.0.1:50551", data_dir: Path | None = None,
                    operator_token: str | None = None, tick_seconds: float = 0.5,
                    fsync: str = "batch", snapshot_every: int = 200_000,
                    limits: Limits | None = None, tls: TlsConfig | None = None,
                    segment_bytes: int = 64 << 20, retention: str = "delete") -> Server:
        """Recovers from ``data_dir`` (snapshot + journal), then listens."""
        loop = asyncio.get_running_loop()
        hub = Hub()

        def publish(outs: list[Published]) -> None:
            loop.call_soon_threadsafe(hub.dispatch_all, outs)
        _check_listen(listen)  # before recovery, which may take a while
        limits = limits or Limits()
        # the gateway locks the data directory before it reads it (DataDirInUse)
        gateway = await asyncio.to_thread(Gateway, publish, None, data_dir, fsync,
                                          snapshot_every, limits.max_open_orders_per_account,
                                          segment_bytes, retention)
        try:
            server, port, health_servicer, names = _listen(
                listen, gateway, data_dir, operator_token, hub, limits, tls)
        except BaseException:
            gateway.close()
            raise
        await server.start()
        for name in ("", *names[:2]):
            await health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)

        async def tick() -> None:
            # gate closure and good-till-time expiry happen on their own as time passes
            while True:
                await asyncio.sleep(tick_seconds)
                if gateway.unavailable is not None:
                    if await gateway.submit_async(gateway.try_resume):
                        hub.drop_all()
                    continue
                try:
                    await gateway.submit_async(gateway.advance_time)
                except (SpotexError, GatewayError):
                    pass  # the journal failed under it; the next tick tries to resume
        ticker = asyncio.create_task(tick())
        log.info("spotex listening on %s", listen.rsplit(":", 1)[0] + f":{port}")
        return cls(server, port, gateway, ticker)

    async def stop(self, grace: float = 2.0) -> None:
        self._ticker.cancel()
        await self.grpc.stop(grace)
        gw = self.gateway
        seq, h = await gw.submit_async(lambda: (gw.sequence, gw.engine.state_hash()))
        if gw.data_dir is not None and gw.unavailable is None and seq > gw.snapshot_seq:
            # the next start recovers from here without replaying the journal
            try:
                await gw.submit_async(gw.take_snapshot)
                log.info("snapshot at sequence %d", seq)
            except Exception as err:  # noqa: BLE001 - the journal still holds everything
                log.error("no snapshot on stop (%s); the next start replays the journal", err)
        gw.close()
        log.info("stopped at sequence %d, state hash %s", seq, h)


async def serve(listen: str, data_dir: Path | None, operator_token: str | None,
                ready: Callable[[Server], None] | None = None, fsync: str = "batch",
                snapshot_every: int = 200_000, limits: Limits | None = None,
                tls: TlsConfig | None = None, segment_bytes: int = 64 << 20,
                retention: str = "delete") -> None:
    """Runs until SIGTERM or SIGINT, then shuts down gracefully."""
    server = await Server.start(listen, data_dir, operator_token, fsync=fsync,
                                snapshot_every=snapshot_every, limits=limits, tls=tls,
                                segment_bytes=segment_bytes, retention=retention)
    if ready:
        ready(server)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("shutting down")
    await server.stop()


def _resolved(value: Any) -> asyncio.Future[Any]:
    f: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
    f.set_result(value)
    return f


# ---- the gateway's records as contract messages -------------------------------------

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
        created_at_micros=r.created_at, reason=r.reason)


def allocation_pb(a: Any, account: int) -> Any:
    return pb.Allocation(
        trade_id=a.trade_id, product_id=a.product, cluster_id=a.cluster, hour=a.hour,
        buy_order_id=a.buy_order, sell_order_id=a.sell_order, price_micros=a.price,
        quantity=a.qty, slots=[pb.Slot(node_id=n, gpu_indices=g) for n, g in a.slots],
        as_buyer=a.buyer == account)


def level_pb(level: tuple[int, int, int]) -> Any:
    return pb.Level(price_micros=level[0], quantity=level[1], orders=level[2])


def book_pb(product: str, sequence: int, bids: list[Any], asks: list[Any]) -> Any:
    return pb.Book(product_id=product, sequence=sequence, bids=[level_pb(x) for x in bids],
                   asks=[level_pb(x) for x in asks])


def product_pb(row: tuple[str, str, int, int, int, int]) -> Any:
    pid, state, tick, lot, open_at, close_at = row
    return pb.Product(product_id=pid, state=state, tick_micros=tick, lot=lot,
                      open_at_micros=open_at, close_at_micros=close_at)
