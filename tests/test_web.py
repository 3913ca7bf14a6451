"""The web page, in a real browser: headless Chromium (Debian's package) opens the
server's page, shows the book of a product, sees a trade appear live and the cluster's
utilisation move, and saves a screenshot (the README shows one taken this way; set
SPOTEX_SCREENSHOT_DIR to keep it). The browser is driven over the DevTools protocol on
a pipe: no driver, no extra package. The API underneath is checked without a browser,
and so are the streams: viewers that hang up leave no subscription behind, and stopping
the server with viewers still watching ends their streams cleanly."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import re
import select
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import types
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from conftest import OPERATOR_TOKEN
from prometheus_client.parser import text_string_to_metric_families

from spotex.client import Client
from spotex.server.service import Hub, MarketSubscription
from spotex.tools.testing import ServerProcess

NOW_HOUR = int(time.time()) // 3600
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
needs_browser = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("SPOTEX_REQUIRE_BROWSER"),
    reason="no chromium here (Debian: apt-get install chromium); CI installs it")


class Browser:
    """Headless Chromium on --remote-debugging-pipe: commands go in on its fd 3, answers
    and events come out on its fd 4, each a JSON message ending in a NUL byte."""

    def __init__(self, exe: str, width: int = 1280, height: int = 860) -> None:
        to_r, self._to = os.pipe()
        self._from, from_w = os.pipe()
        self._profile = tempfile.mkdtemp(prefix="spotex-chromium-")
        cmd = [exe, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
               "--disable-dev-shm-usage", "--remote-debugging-pipe",
               f"--user-data-dir={self._profile}", f"--window-size={width},{height}",
               "about:blank"]
        def onto_3_and_4() -> None:  # in the child: the descriptors the protocol expects
            os.dup2(to_r, 3)
            os.dup2(from_w, 4)
        self.proc = subprocess.Popen(cmd, preexec_fn=onto_3_and_4, close_fds=False,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        os.close(to_r)
        os.close(from_w)
        self._buf = b""
        self._n = 0

    def send(self, method: str, params: dict[str, Any] | None = None,
             session: str | None = None, timeout: float = 30.0) -> dict[str, Any]:
        self._n += 1
        msg: dict[str, Any] = {"id": self._n, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self._to, json.dumps(msg).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            while b"\0" in self._buf:
                raw, self._buf = self._buf.split(b"\0", 1)
                answer = json.loads(raw)
                if answer.get("id") == self._n:
                    if "error" in answer:
                        raise RuntimeError(f"{method}: {answer['error']}")
                    return dict(answer.get("result", {}))
            left = deadline - time.monotonic()
            assert left > 0, f"no answer to {method} in {timeout} s"
            ready, _, _ = select.select([self._from], [], [], left)
            if ready:
                chunk = os.read(self._from, 1 << 20)
                assert chunk, "the browser went away"
                self._buf += chunk

    def open(self, url: str, width: int = 1280, height: int = 860) -> str:
        target = self.send("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = str(self.send("Target.attachToTarget",
                                {"targetId": target, "flatten": True})["sessionId"])
        self.send("Emulation.setDeviceMetricsOverride", {
            "width": width, "height": height, "deviceScaleFactor": 1, "mobile": False},
            session)
        self.send("Page.navigate", {"url": url}, session)
        return session

    def evaluate(self, session: str, expression: str) -> Any:
        r = self.send("Runtime.evaluate", {"expression": expression, "returnByValue": True},
                      session)
        return r.get("result", {}).get("value")

    def wait_for(self, session: str, expression: str, timeout: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            value = self.evaluate(session, expression)
            if value:
                return value
            time.sleep(0.1)
        raise AssertionError(f"the page never showed: {expression}\n"
                             + str(self.evaluate(session, "document.body.innerText")))

    def close(self) -> None:
        try:
            self.send("Browser.close", timeout=5)
        except (AssertionError, RuntimeError, OSError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        os.close(self._to)
        os.close(self._from)
        shutil.rmtree(self._profile, ignore_errors=True)


def _web_port(server: ServerProcess) -> int:
    deadline = time.monotonic() + 10
    while not (m := re.search(r"web page on http://127\.0\.0\.1:(\d+)/", server.text())):
        assert time.monotonic() < deadline, server.text()
        time.sleep(0.05)
    return int(m.group(1))


def _market(server: ServerProcess) -> tuple[str, Client]:
    """A product with 16 GPUs offered at $2.10 and 8 at $2.25 from a seller's 24-GPU
    cluster, a bid at $1.95, and a buyer."""
    op = Client(server.target, OPERATOR_TOKEN)
    pid = op.create_products(skus=["H100-SXM"], regions=["us-east"], from_hour=NOW_HOUR + 3,
                             to_hour=NOW_HOUR + 5)[0].product_id
    seller = Client(server.target, op.create_account("neocloud", ["seller"]).token)
    seller.register_capacity("iad-1", sku="H100-SXM", region="us-east",
                             nodes=[("n0", 8), ("n1", 8), ("n2", 8)], from_hour=NOW_HOUR + 3,
                             to_hour=NOW_HOUR + 5)
    seller.place_order(pid, "sell", "2.10", 16, cluster_id="iad-1")
    seller.place_order(pid, "sell", "2.25", 8, cluster_id="iad-1")
    buyer = Client(server.target, op.create_account("startup", ["buyer"]).token)
    buyer.place_order(pid, "buy", "1.95", 4)
    return pid, buyer


def _png_size(data: bytes) -> tuple[int, int]:
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    width, height = struct.unpack(">II", data[16:24])
    return int(width), int(height)


@needs_browser
def test_the_page_shows_a_trade_live_in_headless_chromium(tmp_path: Path) -> None:
    assert CHROMIUM is not None, "SPOTEX_REQUIRE_BROWSER is set but there is no chromium"
    server = ServerProcess(tmp_path / "data", OPERATOR_TOKEN, "--web-listen", "127.0.0.1:0")
    browser = Browser(CHROMIUM)
    try:
        port = _web_port(server)
        pid, buyer = _market(server)
        page = browser.open(f"http://127.0.0.1:{port}/#token={OPERATOR_TOKEN}&product={pid}")
        # the token left the address bar; the product's book came in over the stream
        browser.wait_for(page, f"document.body.dataset.streaming === {json.dumps(pid)}")
        # two rows: the bid beside the first ask, and the second ask
        browser.wait_for(page, "document.querySelectorAll('#book tbody tr').length === 2")
        assert "token" not in browser.evaluate(page, "location.href")
        book = browser.evaluate(page, "document.querySelector('#book').innerText")
        assert "2.10" in book and "16" in book and "1.95" in book
        assert browser.evaluate(page, "document.querySelectorAll('#trades li').length") == 0
        browser.wait_for(page, "document.querySelector('#util').innerText.includes('0/24')")

        buyer.place_order(pid, "buy", "2.20", 8, gang=8)  # takes 8 of the 16 at $2.10

        trade = browser.wait_for(page, "(document.querySelector('#trades li.trade') || {})"
                                       ".textContent")
        assert "8 GPUs at $2.10" in trade and "buyer took" in trade
        browser.wait_for(page, "document.querySelector('#book').innerText.includes('8')")
        browser.wait_for(page, "document.querySelector('#util').innerText.includes('8/24')",
                         timeout=15)
        shot = base64.b64decode(browser.send("Page.captureScreenshot", {"format": "png"},
                                             page)["data"])
        assert _png_size(shot) == (1280, 860)
        (tmp_path / "web.png").write_bytes(shot)
        if keep := os.environ.get("SPOTEX_SCREENSHOT_DIR"):
            Path(keep).mkdir(parents=True, exist_ok=True)
            (Path(keep) / "web.png").write_bytes(shot)
        # a viewer who opens the page after the trade sees it too, not only later ones
        later = browser.open(f"http://127.0.0.1:{port}/#token={OPERATOR_TOKEN}&product={pid}")
        shown = browser.wait_for(later, "(document.querySelector('#trades li.trade') || {})"
                                        ".textContent")
        assert "8 GPUs at $2.10" in shown and "buyer took" in shown
    finally:
        browser.close()
        assert server.stop() == 0, server.text()


def _get(port: int, path: str, token: str | None) -> tuple[int, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
            kind = r.headers.get("Content-Type", "")
            return r.status, json.loads(body) if "json" in kind else body
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_the_page_s_api_checks_tokens_and_input(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", OPERATOR_TOKEN, "--web-listen", "127.0.0.1:0")
    try:
        port = _web_port(server)
        pid, buyer = _market(server)
        status, page = _get(port, "/", None)
        assert status == 200 and b"<title>spotex</title>" in page
        assert _get(port, "/api/products", None)[0] == 401
        assert _get(port, "/api/products", "wrong")[0] == 401
        status, listed = _get(port, "/api/products", buyer._md[0][1][7:])
        assert status == 200 and [p["product_id"] for p in listed["products"]][0] == pid
        status, book = _get(port, f"/api/book?product={pid}&depth=5", OPERATOR_TOKEN)
        assert status == 200 and book["asks"][0]["price_micros"] == "2100000"
        assert _get(port, "/api/book?product=nope", OPERATOR_TOKEN)[0] == 404
        assert _get(port, f"/api/book?product={pid}&depth=x", OPERATOR_TOKEN)[0] == 400
        # utilisation and the replay report are for operators
        assert _get(port, "/api/utilisation", buyer._md[0][1][7:])[0] == 403
        status, util = _get(port, f"/api/utilisation?from={NOW_HOUR + 3}&to={NOW_HOUR + 5}",
                            OPERATOR_TOKEN)
        assert status == 200 and [(r["cluster"], r["capacity"], r["offered"])
                                  for r in util["rows"]] == [("iad-1", 24, 24), ("iad-1", 24, 0)]
        # a cluster id is its seller's own: each row names the owner
        seller_id = next(a.account_id for a in Client(server.target, OPERATOR_TOKEN)
                         .list_accounts() if a.name == "neocloud")
        assert {r["owner"] for r in util["rows"]} == {seller_id}
        assert _get(port, "/nope", None)[0] == 404
        status, report = _get(port, f"/api/report?product={pid}", OPERATOR_TOKEN)
        assert status == 200 and pid.encode() in report

        # recent trades: none yet; then the one a buyer makes, newest first
        q = urllib.parse.quote(pid)
        assert _get(port, f"/api/trades?product={q}", OPERATOR_TOKEN) == (
            200, {"product_id": pid, "trades": []})
        buyer.place_order(pid, "buy", "2.20", 8, gang=8)  # takes 8 of the 16 at $2.10
        buyer.place_order(pid, "buy", "2.25", 2)  # and 2 more of them
        deadline = time.monotonic() + 30
        while len(trades := _get(port, f"/api/trades?product={q}", OPERATOR_TOKEN)[1]
                  ["trades"]) < 2:
            assert time.monotonic() < deadline, trades
            time.sleep(0.05)
        assert [(t["quantity"], t["price_micros"], t["aggressor"]) for t in trades] == [
            ("2", "2100000", "SIDE_BUY"), ("8", "2100000", "SIDE_BUY")]
        # the forward curve of the product's SKU and region, for the chart
        sku, region, _ = pid.split("/")
        status, curve = _get(port, f"/api/curve?sku={sku}&region={region}", OPERATOR_TOKEN)
        assert status == 200 and curve["points"][0]["product_id"] == pid
        assert (curve["points"][0]["last_price_micros"], curve["points"][0]["volume"]) == (
            "2100000", "10")
        assert _get(port, f"/api/curve?sku=nope&region={region}", OPERATOR_TOKEN)[0] == 404
        assert int(trades[0]["trade_id"]) > int(trades[1]["trade_id"])
        status, one = _get(port, f"/api/trades?product={q}&limit=1", buyer._md[0][1][7:])
        assert status == 200 and one["trades"] == trades[:1]
        # the money: the buyer's own (this server does not check it: no limit shown), and
        # the operator's is the venue's fee account
        status, money = _get(port, "/api/balance", buyer._md[0][1][7:])
        assert status == 200 and (money["current"], money["available"]) == ("-21.00", None)
        assert _get(port, "/api/balance", OPERATOR_TOKEN)[1]["account_id"] == 0
        assert _get(port, "/api/balance", None)[0] == 401
        assert _get(port, f"/api/trades?product={q}", None)[0] == 401
        assert _get(port, f"/api/trades?product={q}&limit=0", OPERATOR_TOKEN)[0] == 400
        assert _get(port, "/api/trades?product=nope", OPERATOR_TOKEN)[0] == 404

        # only GET; a request it cannot read (a header line over 8 KiB) is a 400
        req = urllib.request.Request(f"http://127.0.0.1:{port}/api/products", data=b"{}")
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(req, timeout=10)
        assert refused.value.code == 405 and json.loads(refused.value.read())["error"]
        with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
            conn.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 20_000
                         + b"\r\n\r\n")
            assert re.match(rb"HTTP/1\.[01] 400 ", conn.recv(1 << 16))
    finally:
        code = server.stop()
    # and nobody's bad request is an error with a traceback in the server's log
    assert code == 0 and "Traceback" not in server.text(), server.text()


def _subscribers(metrics_port: int) -> float:
    """The spotex_subscribers gauge of market-data streams."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics",
                                  timeout=10).read().decode()
    return sum(s.value for f in text_string_to_metric_families(text) for s in f.samples
               if s.name == "spotex_subscribers" and s.labels == {"stream": "market_data"})


def _watch(port: int, pid: str) -> tuple[socket.socket, bytes]:
    """A viewer of the product's stream on a plain socket, once its snapshot came in:
    the socket and what it read so far."""
    conn = socket.create_connection(("127.0.0.1", port), timeout=30)
    conn.sendall(f"GET /api/stream?product={urllib.parse.quote(pid)} HTTP/1.1\r\n"
                 f"Host: 127.0.0.1\r\nAuthorization: Bearer {OPERATOR_TOKEN}\r\n\r\n"
                 .encode())
    got = b""
    while b'"snapshot"' not in got:
        chunk = conn.recv(1 << 16)
        assert chunk, f"the stream ended before its snapshot: {got!r}"
        got += chunk
    assert got.startswith(b"HTTP/1.1 200 "), got
    return conn, got


def _until(what: str, check: Any, timeout: float = 60.0) -> None:
    """Polls ``check`` until it holds; the bound is generous (a slow shared CI machine),
    the wait is as short as the server is quick."""
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_viewers_that_hang_up_leave_no_subscription(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", OPERATOR_TOKEN, "--web-listen", "127.0.0.1:0",
                           "--metrics-listen", "127.0.0.1:0")
    watching: list[tuple[socket.socket, bytes]] = []
    try:
        port = _web_port(server)
        metrics = int(re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics",
                                server.text()).group(1))  # type: ignore[union-attr]
        pid, _ = _market(server)
        viewers = [_watch(port, pid)[0] for _ in range(5)]
        assert _subscribers(metrics) == 5
        # they close their tabs, with nothing trading: no write ever finds them gone
        for conn in viewers:
            conn.close()
        _until("the closed streams stay subscribed", lambda: _subscribers(metrics) == 0)

        # viewers still watching when the server stops see their stream end cleanly (the
        # chunked body's last chunk), and the server logs no traceback for them
        watching = [_watch(port, pid) for _ in range(3)]
        assert _subscribers(metrics) == 3
    finally:
        code = server.stop()
    for conn, got in watching:
        while chunk := conn.recv(1 << 16):
            got += chunk
        conn.close()
        assert got.endswith(b"\r\n0\r\n\r\n"), got
    log = server.text()
    assert code == 0, log
    assert "Traceback" not in log and " ERROR " not in log, log


def test_a_viewer_gone_before_its_snapshot_arrives_never_subscribes() -> None:
    """The writer takes the snapshot and hands the registration to the loop; a viewer
    that went away meanwhile (its task cancelled, ``end()`` run) must not be registered
    after the fact, with no one left to unregister it."""
    async def scenario() -> Hub:
        hub = Hub()
        gateway = types.SimpleNamespace(
            flush=lambda: None, ex=types.SimpleNamespace(market_snapshots=lambda _: b""))
        sub = MarketSubscription(hub, gateway, b"", None, 10)  # type: ignore[arg-type]
        sub.snapshot()  # as the writer would: the registration is now on its way
        sub.end()
        for _ in range(3):
            await asyncio.sleep(0)  # the registration has run
        return hub
    assert asyncio.run(scenario()).market == []
