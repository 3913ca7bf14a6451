"""The venue's web page, served by the server itself on its own port (``spotex serve
--web-listen HOST:PORT``): products, the depth and trades of a chosen product (the
recent ones, then live), utilisation per cluster and hour, and the replay report, for
anyone with a token (the last two for operators). No build step: one HTML file with
plain JavaScript (``spotex/web/index.html``), over a small JSON API served by aiohttp on
the same event loop as the gRPC service:

- ``GET /`` the page; ``GET /api/products``; ``GET /api/book?product=P&depth=N``;
- ``GET /api/trades?product=P&limit=N``: the product's most recent trades, newest first
  (those since the server started, at most ``TRADES_KEPT``);
- ``GET /api/stream?product=P``: newline-delimited JSON, a snapshot then every update
  of the product, as the market-data stream sends them (open until either side closes;
  a viewer that goes away is unsubscribed at once);
- ``GET /api/utilisation?from=H&to=H`` and ``GET /api/report?product=P`` (operators);
- ``GET /api/balance``: the caller's money in dollars (an operator's: the venue's fees).

Every API call takes ``Authorization: Bearer <token>`` like the gRPC service; the page
keeps the token in the browser's session storage and never puts it in a URL. Refusals
are JSON, ``{"error": "..."}``, with their HTTP status (but for aiohttp's plain 400 to a
request it cannot read).
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web
from aiohttp.http import HttpProcessingError
from google.protobuf import json_format

from spotex._core import RefusedError
from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex.server.accounts import OPERATOR, Account, Accounts
from spotex.server.streams import MAX_UPDATES_PER_MESSAGE, MarketSubscription

if TYPE_CHECKING:
    from spotex.server.host import EngineHost
    from spotex.server.streams import Hub

log = logging.getLogger(__name__)
# aiohttp's own log of its connections (it names it the "logger" of its request handler)
http_log = logging.getLogger(f"{__name__}.http")

# the most a request's body may hold (the API reads none: GET only); the request line
# and each header line are bounded by aiohttp (8 KiB), past which it answers 400
MAX_REQUEST = 16 * 1024
# how long stopping the server waits for a request still at work (a replay report)
SHUTDOWN_SECONDS = 2.0
# the recent trades kept per product, for the products that traded last
TRADES_KEPT = 100
PRODUCTS_KEPT = 1000

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class _Fail(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _json(m: Any) -> Any:
    return json_format.MessageToDict(m, preserving_proto_field_name=True)


class _ClientFaults(logging.Filter):
    """aiohttp logs a request it cannot read (a header line over 8 KiB, not HTTP at all)
    as an error with a traceback. That is the client's fault, and anyone can send one:
    a debug line is enough. Every other record passes as it is."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError):
            log.debug("web: a request it could not read: %s", exc.message)
            return False
        return True


http_log.addFilter(_ClientFaults())


class Tape:
    """The most recent trades of each product, as the market data of every round shows
    them: the exchange keeps no trade history the page could ask for, and the stream
    carries only what trades after a viewer subscribes. It lives in memory (a restarted
    server starts with an empty tape), bounded in trades per product and in products
    (those that traded longest ago go first). Decoding each round's market data costs the
    event loop time in proportion to its updates; only a server with a web page pays it."""

    def __init__(self, per_product: int = TRADES_KEPT, products: int = PRODUCTS_KEPT) -> None:
        self.per_product = per_product
        self.products = products
        self._trades: collections.OrderedDict[str, collections.deque[pb.Trade]] = (
            collections.OrderedDict())

    def record(self, market: list[tuple[str, int, bytes]]) -> None:
        """A hub tap: ``(product_id, updates, MarketDataBatch bytes)`` of one round."""
        for product, _, batch in market:
            for update in pb.MarketDataBatch.FromString(batch).updates:
                if update.WhichOneof("payload") != "trade":
                    continue
                kept = self._trades.get(product)
                if kept is None:
                    kept = self._trades[product] = collections.deque(maxlen=self.per_product)
                    if len(self._trades) > self.products:
                        self._trades.popitem(last=False)
                self._trades.move_to_end(product)
                trade = pb.Trade()
                trade.CopyFrom(update.trade)  # not a view into the whole batch
                kept.append(trade)

    def recent(self, product: str, limit: int) -> list[pb.Trade]:
        """Newest first."""
        kept = self._trades.get(product, ())
        return list(reversed(kept))[:limit]


class Web:
    def __init__(self, host: EngineHost, hub: Hub, accounts: Accounts,
                 data_dir: Path | None, subscriber_queue: int) -> None:
        self.host = host
        self.hub = hub
        self.accounts = accounts
        self.data_dir = data_dir
        self.subscriber_queue = subscriber_queue
        self.page = resources.files("spotex.server").joinpath("web/index.html").read_bytes()
        self.tape = Tape()
        self._runner: web.AppRunner | None = None
        self._streams: set[MarketSubscription] = set()

    async def start(self, listen: str) -> int:
        """Listens on ``listen`` (host:port, port 0 for any); returns the port."""
        bind, _, port = listen.rpartition(":")
        app = web.Application(client_max_size=MAX_REQUEST, middlewares=[self._errors])
        get = [("/", self._page), ("/index.html", self._page),
               ("/api/products", self._products), ("/api/book", self._book),
               ("/api/trades", self._trades), ("/api/stream", self._stream),
               ("/api/utilisation", self._utilisation), ("/api/report", self._report),
               ("/api/auctions", self._auctions), ("/api/curve", self._curve),
               ("/api/balance", self._balance)]
        # GET only, as before: a HEAD of the stream would subscribe and send nothing
        app.add_routes([web.get(path, fn, allow_head=False) for path, fn in get])
        app.on_response_prepare.append(_no_store)
        app.on_shutdown.append(self._end_streams)
        # handler_cancellation: when a viewer goes away, aiohttp cancels its request's
        # task there and then, so a stream waiting for the next update leaves the hub at
        # once (by default it would only notice at its next write, which for a quiet
        # product may never come). access_log: requests are logged at debug in _errors.
        self._runner = web.AppRunner(app, handler_cancellation=True, access_log=None,
                                     logger=http_log, shutdown_timeout=SHUTDOWN_SECONDS)
        await self._runner.setup()
        try:
            await web.TCPSite(self._runner, bind.strip("[]") or "127.0.0.1", int(port)).start()
        except BaseException:
            await self._runner.cleanup()
            self._runner = None
            raise
        self.hub.taps.append(self.tape.record)
        return int(self._runner.addresses[0][1])

    async def close(self) -> None:
        """Stops listening, ends the open streams (their viewers see the stream end) and
        waits for the requests at work, at most ``SHUTDOWN_SECONDS``."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
            self.hub.taps.remove(self.tape.record)

    async def _end_streams(self, _app: web.Application) -> None:
        # a stream otherwise waits for updates until the shutdown timeout, then is
        # cancelled; ended like a subscriber that fell behind, it sends what is queued
        # and finishes its response
        for sub in self._streams:
            sub.queue.lag()

    # ---- HTTP ----------------------------------------------------------------------

    @web.middleware
    async def _errors(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Every refusal as JSON with its status, aiohttp's own (no such route, not GET,
        too big) too; one debug line per request."""
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except _Fail as err:
            status = err.status
            return web.json_response({"error": str(err)}, status=err.status)
        except web.HTTPException as err:
            status = err.status
            message = {404: f"no such page: {request.path}", 405: "only GET"}
            return web.json_response({"error": message.get(err.status, err.reason)},
                                     status=err.status)
        finally:
            log.debug("web %s %d %.1f ms", request.path, status,
                      (time.perf_counter() - started) * 1000)

    def _auth(self, request: web.Request, *roles: str) -> Account:
        value = request.headers.get("Authorization", "")
        token = value[len("Bearer "):] if value.startswith("Bearer ") else ""
        account = self.accounts.authenticate(token) if token else None
        if account is None:
            raise _Fail(401, "missing or unknown bearer token")
        if not account.enabled:
            raise _Fail(403, "this account is disabled by the operator")
        if roles and not any(account.has(r) for r in roles):
            raise _Fail(403, f"this needs the role {' or '.join(roles)}")
        return account

    async def _page(self, _request: web.Request) -> web.Response:
        return web.Response(body=self.page, content_type="text/html", charset="utf-8")

    async def _products(self, request: web.Request) -> web.Response:
        self._auth(request)
        host = self.host
        listed = await host.submit_async(host.ex.list_products)
        return web.json_response(_json(pb.ListProductsResponse.FromString(listed)))

    async def _book(self, request: web.Request) -> web.Response:
        self._auth(request)
        q = request.query
        body = pb.GetBookRequest(product_id=q.get("product", ""),
                                 depth=_int(q, "depth", 20, 1, 1000)).SerializeToString()
        host = self.host
        book = pb.GetBookResponse.FromString(await self._view(lambda: host.ex.get_book(body)))
        return web.json_response(_json(book.book))

    async def _trades(self, request: web.Request) -> web.Response:
        self._auth(request)
        product = request.query.get("product", "")
        limit = _int(request.query, "limit", 50, 1, TRADES_KEPT)
        # an unknown product is a 404, as for its book (the tape knows only what traded)
        body = pb.GetBookRequest(product_id=product, depth=1).SerializeToString()
        host = self.host
        await self._view(lambda: host.ex.get_book(body))
        return web.json_response({"product_id": product, "trades": [
            _json(t) for t in self.tape.recent(product, limit)]})

    async def _auctions(self, request: web.Request) -> web.Response:
        """The latest block auctions' results (newest first), prices in dollars."""
        from spotex.server.auctions import result_json
        self._auth(request)
        limit = _int(request.query, "limit", 10, 1, 100)
        body = pb.ListAuctionsRequest(page_size=limit).SerializeToString()
        host = self.host
        page = pb.ListAuctionsResponse.FromString(
            await self._view(lambda: host.ex.list_auctions(body)))
        return web.json_response({"auctions": [result_json(a) for a in page.auctions]})

    async def _balance(self, request: web.Request) -> web.Response:
        """The caller's balance (an operator's own is the venue's fee account)."""
        from spotex.money import format_price
        from spotex.server.ledger import FEE_ACCOUNT

        a = self._auth(request)
        account = FEE_ACCOUNT if a.has(OPERATOR) else a.account_id
        host = self.host
        b = pb.Balance.FromString(await self._view(lambda: host.ex.balance(account)))
        unlimited = b.credit_limit_micros == (1 << 63) - 1
        return web.json_response({
            "account_id": b.account_id, "current": format_price(b.current_micros),
            "holds": format_price(b.holds_micros),
            "available": None if unlimited else format_price(b.available_micros),
            "credit_limit": None if unlimited else format_price(b.credit_limit_micros),
            "maker_fee_bps": b.maker_fee_bps, "taker_fee_bps": b.taker_fee_bps})

    async def _curve(self, request: web.Request) -> web.Response:
        """A SKU and region's forward curve (as GetCurve answers it), for the chart."""
        from spotex.server import prices_rpc as pr
        from spotex.server.tape import query_stats

        self._auth(request)
        sku, region = request.query.get("sku", ""), request.query.get("region", "")
        host = self.host
        listing = pr.Listing.of(await host.submit_async(lambda: pr.all_products(host.ex)))
        try:
            fam = pr.family_of(listing, sku, region)
        except pr.Refusal as err:
            raise _Fail(404 if err.code == pr.NOT_FOUND else 400, str(err)) from None
        rows = sorted(((p, st, h) for p, (st, h) in listing.products.items()
                       if p.startswith(fam + "/")), key=lambda r: r[2])
        assert host.tape is not None
        stats = host.tape.read(lambda db: query_stats(db, fam))

        def books() -> tuple[int, list[bytes]]:
            return host.last_ts, [host.ex.get_book(pb.GetBookRequest(
                product_id=p, depth=1).SerializeToString()) for p, _, _ in rows]
        as_of, raw = await host.submit_async(books)
        return web.json_response(_json(pr.curve(sku, region, as_of, rows, raw, await stats)))

    async def _utilisation(self, request: web.Request) -> web.Response:
        self._auth(request, OPERATOR)
        now = int(time.time()) // 3600
        lo = _int(request.query, "from", now, 0, 1 << 40)
        hi = _int(request.query, "to", lo + 24, lo + 1, lo + 7 * 24)
        host = self.host
        rows = await host.submit_async(lambda: host.ex.utilisation(lo, hi))
        names = ("cluster", "sku", "region", "hour", "capacity", "sold", "offered", "idle",
                 "withdrawn", "owner")
        return web.json_response({"from": lo, "to": hi, "rows": [
            dict(zip(names, r, strict=True)) for r in rows]})

    async def _view(self, fn: Any) -> bytes:
        try:
            return bytes(await self.host.submit_async(fn))
        except RefusedError as err:
            raise _Fail(404 if err.reason.startswith("UNKNOWN") else 400, str(err)) from None

    async def _report(self, request: web.Request) -> web.Response:
        from spotex.extras import available

        self._auth(request, OPERATOR)
        product = request.query.get("product", "")
        data_dir = self.data_dir
        if data_dir is None:
            raise _Fail(501, "the server runs without a data directory: nothing to replay")
        if not available("matplotlib"):
            raise _Fail(501, "the replay report draws charts: install the charts extra "
                             "(pip install 'spotex[charts]')")
        from spotex.server import replay as rp

        def build() -> str:
            r = rp.rebuild(data_dir)
            if product not in {p[0] for p in r.engine.products()}:
                raise _Fail(404, f"no product {product!r} in the journal")
            return rp.html_report(r, product, rp.depth_chart(r.engine, product),
                                  rp.price_history(r.trades, product))
        html = await asyncio.to_thread(build)
        return web.Response(text=html, content_type="text/html")

    async def _stream(self, request: web.Request) -> web.StreamResponse:
        """A snapshot of the product, then its updates as the hub hands them out, until
        the viewer goes away (aiohttp cancels this task: ``finally`` unsubscribes) or the
        server stops (``_end_streams``)."""

        self._auth(request)
        product = request.query.get("product", "")
        sub = MarketSubscription(
            self.hub, self.host, pb.StreamMarketDataRequest(product_ids=[product])
            .SerializeToString(), {product}, self.subscriber_queue)
        self._streams.add(sub)
        try:
            try:
                await self.host.submit_async(sub.snapshot)
            except RefusedError as err:
                raise _Fail(404, str(err)) from None
            response = web.StreamResponse(headers={"Content-Type": "application/x-ndjson"})
            try:
                await response.prepare(request)
                while (batch := await sub.queue.take(MAX_UPDATES_PER_MESSAGE)) is not None:
                    updates = pb.MarketDataBatch.FromString(batch).updates
                    await response.write("".join(json.dumps(_json(u)) + "\n"
                                                 for u in updates).encode())
                await response.write_eof()
            except ConnectionResetError:
                pass  # the viewer went away while we wrote to it: nothing more to do
            return response
        finally:
            sub.end()
            self._streams.discard(sub)


async def _no_store(_request: web.Request, response: web.StreamResponse) -> None:
    # books, trades and tokens' answers go stale at once: no cache keeps them
    response.headers["Cache-Control"] = "no-store"


def _int(q: Mapping[str, str], key: str, default: int, lo: int, hi: int) -> int:
    raw = q.get(key)
    if raw is None:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise _Fail(400, f"{key} must be a whole number") from None
    if not lo <= value <= hi:
        raise _Fail(400, f"{key} must be between {lo} and {hi}")
    return value
