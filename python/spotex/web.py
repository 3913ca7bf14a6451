"""The venue's web page, served by the server itself on its own port (``spotex serve
--web-listen HOST:PORT``): products, the live depth and trades of a chosen product,
utilisation per cluster and hour, and the replay report, for anyone with a token (the
last two for operators). No build step: one HTML file with plain JavaScript
(``spotex/web/index.html``), over a small JSON API on the same event loop as the gRPC
service:

- ``GET /`` the page; ``GET /api/products``; ``GET /api/book?product=P&depth=N``;
- ``GET /api/stream?product=P``: newline-delimited JSON, a snapshot then every update
  of the product, as the market-data stream sends them (chunked, open until closed);
- ``GET /api/utilisation?from=H&to=H`` and ``GET /api/report?product=P`` (operators).

Every API call takes ``Authorization: Bearer <token>`` like the gRPC service; the page
keeps the token in the browser's session storage and never puts it in a URL.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import urllib.parse
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from google.protobuf import json_format

from spotex._core import RefusedError
from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex.accounts import OPERATOR, Account, Accounts

if TYPE_CHECKING:
    from spotex.gateway import Gateway
    from spotex.server import Hub

log = logging.getLogger("spotex.web")

MAX_REQUEST = 16 * 1024
STATUS = {200: "OK", 400: "Bad Request", 401: "Unauthorized", 403: "Forbidden",
          404: "Not Found", 405: "Method Not Allowed", 413: "Payload Too Large",
          501: "Not Implemented"}


class _Fail(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def _json(m: Any) -> Any:
    return json_format.MessageToDict(m, preserving_proto_field_name=True)


class Web:
    def __init__(self, gateway: Gateway, hub: Hub, accounts: Accounts,
                 data_dir: Path | None, subscriber_queue: int) -> None:
        self.gw = gateway
        self.hub = hub
        self.accounts = accounts
        self.data_dir = data_dir
        self.subscriber_queue = subscriber_queue
        self.page = resources.files("spotex").joinpath("web/index.html").read_bytes()
        self._server: asyncio.Server | None = None
        self._open: set[asyncio.StreamWriter] = set()

    async def start(self, listen: str) -> int:
        host, _, port = listen.rpartition(":")
        self._server = await asyncio.start_server(self._serve, host.strip("[]") or "127.0.0.1",
                                                  int(port), limit=MAX_REQUEST)
        return int(self._server.sockets[0].getsockname()[1])

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            for w in list(self._open):
                w.close()
            await self._server.wait_closed()

    # ---- HTTP ----------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._open.add(writer)
        started = time.perf_counter()
        path, status = "-", 500
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
            lines = head.decode("latin-1").split("\r\n")
            method, target, _ = (lines[0].split(" ") + ["", ""])[:3]
            headers = {k.strip().lower(): v.strip() for k, _, v in
                       (x.partition(":") for x in lines[1:] if x)}
            url = urllib.parse.urlsplit(target)
            path = url.path
            query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
            if method != "GET":
                raise _Fail(405, "only GET")
            status = await self._route(path, query, headers, writer)
        except _Fail as err:
            status = err.status
            await self._send(writer, err.status, json.dumps({"error": str(err)}).encode(),
                             "application/json")
        except (asyncio.LimitOverrunError, asyncio.IncompleteReadError, TimeoutError,
                ConnectionError, ValueError):
            status = 400
        except asyncio.CancelledError:
            raise
        finally:
            self._open.discard(writer)
            writer.close()
            log.debug("web %s %d %.1f ms", path, status, (time.perf_counter() - started) * 1000)

    async def _send(self, writer: asyncio.StreamWriter, status: int, body: bytes,
                    kind: str) -> None:
        writer.write(f"HTTP/1.1 {status} {STATUS.get(status, '')}\r\nContent-Type: {kind}\r\n"
                     f"Content-Length: {len(body)}\r\nCache-Control: no-store\r\n"
                     "Connection: close\r\n\r\n".encode() + body)
        await writer.drain()

    def _auth(self, headers: dict[str, str], *roles: str) -> Account:
        value = headers.get("authorization", "")
        token = value[len("Bearer "):] if value.startswith("Bearer ") else ""
        account = self.accounts.authenticate(token) if token else None
        if account is None:
            raise _Fail(401, "missing or unknown bearer token")
        if not account.enabled:
            raise _Fail(403, "this account is disabled by the operator")
        if roles and not any(account.has(r) for r in roles):
            raise _Fail(403, f"this needs the role {' or '.join(roles)}")
        return account

    async def _route(self, path: str, q: dict[str, str], headers: dict[str, str],
                     writer: asyncio.StreamWriter) -> int:
        gw = self.gw
        if path in ("/", "/index.html"):
            await self._send(writer, 200, self.page, "text/html; charset=utf-8")
            return 200
        if path == "/api/products":
            self._auth(headers)
            listed = await gw.submit_async(gw.ex.list_products)
            body = _json(pb.ListProductsResponse.FromString(listed))
        elif path == "/api/book":
            self._auth(headers)
            request = pb.GetBookRequest(product_id=q.get("product", ""),
                                        depth=_int(q, "depth", 20, 1, 1000))
            body = _json(pb.GetBookResponse.FromString(
                await self._view(lambda: gw.ex.get_book(request.SerializeToString()))).book)
        elif path == "/api/utilisation":
            self._auth(headers, OPERATOR)
            now = int(time.time()) // 3600
            lo = _int(q, "from", now, 0, 1 << 40)
            hi = _int(q, "to", lo + 24, lo + 1, lo + 7 * 24)
            rows = await gw.submit_async(lambda: gw.ex.utilisation(lo, hi))
            names = ("cluster", "sku", "region", "hour", "capacity", "sold", "offered", "idle",
                     "withdrawn")
            body = {"from": lo, "to": hi, "rows": [dict(zip(names, r, strict=True))
                                                   for r in rows]}
        elif path == "/api/report":
            self._auth(headers, OPERATOR)
            html = await self._report(q.get("product", ""))
            await self._send(writer, 200, html.encode(), "text/html; charset=utf-8")
            return 200
        elif path == "/api/stream":
            self._auth(headers)
            await self._stream(q.get("product", ""), writer)
            return 200
        else:
            raise _Fail(404, f"no such page: {path}")
        await self._send(writer, 200, json.dumps(body).encode(), "application/json")
        return 200

    async def _view(self, fn: Any) -> bytes:
        try:
            return bytes(await self.gw.submit_async(fn))
        except RefusedError as err:
            raise _Fail(404 if err.reason.startswith("UNKNOWN") else 400, str(err)) from None

    async def _report(self, product: str) -> str:
        from spotex.extras import available

        if self.data_dir is None:
            raise _Fail(501, "the server runs without a data directory: nothing to replay")
        if not available("matplotlib"):
            raise _Fail(501, "the replay report draws charts: install the charts extra "
                             "(pip install 'spotex[charts]')")
        from spotex import replay as rp

        def build() -> str:
            r = rp.rebuild(self.data_dir)  # type: ignore[arg-type]
            if product not in {p[0] for p in r.engine.products()}:
                raise _Fail(404, f"no product {product!r} in the journal")
            return rp.html_report(r, product, rp.depth_chart(r.engine, product),
                                  rp.price_history(r.trades, product))
        return await asyncio.to_thread(build)

    async def _stream(self, product: str, writer: asyncio.StreamWriter) -> None:
        """A snapshot of the product, then its updates as the hub hands them out."""
        from spotex.server import Backlog

        gw, hub = self.gw, self.hub
        loop = asyncio.get_running_loop()
        q = Backlog(self.subscriber_queue)
        entry = ({product}, q)
        body = pb.StreamMarketDataRequest(product_ids=[product]).SerializeToString()

        def subscribe() -> None:
            gw.flush()
            snaps = gw.ex.market_snapshots(body)

            def register() -> None:
                q.offer(snaps, 1, force=True)
                hub.market.append(entry)
            loop.call_soon_threadsafe(register)
        try:
            await self.gw.submit_async(subscribe)
        except RefusedError as err:
            raise _Fail(404, str(err)) from None
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/x-ndjson\r\n"
                     b"Cache-Control: no-store\r\nTransfer-Encoding: chunked\r\n"
                     b"Connection: close\r\n\r\n")
        try:
            while (batch := await q.take(4096)) is not None:
                lines = "".join(json.dumps(_json(u)) + "\n" for u in
                                pb.MarketDataBatch.FromString(batch).updates).encode()
                writer.write(f"{len(lines):x}\r\n".encode() + lines + b"\r\n")
                await writer.drain()
            writer.write(b"0\r\n\r\n")
        finally:
            if entry in hub.market:
                hub.market.remove(entry)


def _int(q: dict[str, str], key: str, default: int, lo: int, hi: int) -> int:
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
