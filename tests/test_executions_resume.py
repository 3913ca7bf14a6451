"""Executions without holes, against real servers on loopback: a stream says when it is
live, a late subscriber catches up from the history the server keeps, a subscriber cut
off by a real disconnect (a TCP proxy that drops its connections) or by a restart of the
server resumes from the last sequence it saw, and sees every execution exactly once; a
from_sequence the server cannot serve is refused in one clear line."""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import OPERATOR_TOKEN, Running, serving

from spotex.client import AsyncClient, Client, ExecutionStream, RpcError

NOW_HOUR = int(time.time()) // 3600
SKU, REGION = "H100-SXM", "us-east"


class Proxy:
    """A TCP proxy to a server: ``cut()`` drops every connection and refuses new ones
    (the client sees its connection die, as when a network goes), ``restore()`` lets
    them through again, to the same server or another."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self._open = True
        self._lock = threading.Lock()
        self._socks: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.target = f"127.0.0.1:{self._listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                if not self._open:
                    conn.close()
                    continue
                host, port = self.upstream.rsplit(":", 1)
                try:
                    up = socket.create_connection((host, int(port)), timeout=2)
                except OSError:
                    conn.close()
                    continue
                up.settimeout(None)
                self._socks += [conn, up]
            for a, b in ((conn, up), (up, conn)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(a: socket.socket, b: socket.socket) -> None:
        try:
            while data := a.recv(65536):
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        with self._lock:
            self._open = False
            for s in self._socks:
                try:
                    s.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
                s.close()
            self._socks = []

    def restore(self, upstream: str | None = None) -> None:
        with self._lock:
            self.upstream = upstream or self.upstream
            self._open = True

    def close(self) -> None:
        self.cut()
        self._listener.close()


class Reader:
    """Iterates a stream on a thread: what it yielded, and how it ended."""

    def __init__(self, stream: ExecutionStream) -> None:
        self.stream = stream
        self.items: list[Any] = []
        self.error: BaseException | None = None
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self) -> None:
        try:
            for e in self.stream:
                self.items.append(e)
        except BaseException as err:  # noqa: BLE001 - the test asserts on it
            self.error = err

    def until(self, pred: Callable[[list[Any]], bool], timeout: float = 30.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.error is not None:
                raise AssertionError(f"the stream failed: {self.error!r}")
            if pred(self.items):
                return
            time.sleep(0.02)
        raise AssertionError(f"timed out with {[e.sequence for e in self.items]}")

    def close(self) -> None:
        self.stream.close()
        self._t.join(5)


def venue(target: str, tokens: dict[str, str] | None = None
          ) -> tuple[Client, Client, str, dict[str, str]]:
    """A seller with a cluster and a buyer (made once, then by their tokens again after
    a restart), and a product."""
    product = f"{SKU}/{REGION}/" + time.strftime("%Y-%m-%dT%H", time.gmtime(
        (NOW_HOUR + 3) * 3600))
    if tokens is None:
        op = Client(target, OPERATOR_TOKEN)
        tokens = {"seller": op.create_account("seller", ["seller"]).token,
                  "buyer": op.create_account("buyer", ["buyer"]).token}
        op.create_products(skus=[SKU], regions=[REGION], from_hour=NOW_HOUR + 3,
                           to_hour=NOW_HOUR + 4, tick="0.01")
        Client(target, tokens["seller"]).register_capacity(
            "c1", sku=SKU, region=REGION, nodes=[(f"n{i}", 8) for i in range(8)],
            from_hour=NOW_HOUR, to_hour=NOW_HOUR + 24)
        op.close()
    return (Client(target, tokens["seller"]), Client(target, tokens["buyer"]), product,
            tokens)


def trade(seller: Client, buyer: Client, product: str, rounds: int) -> None:
    """Each round: one GPU sold, one bought (the buyer's executions: accepted, trade,
    allocated)."""
    for _ in range(rounds):
        seller.place_order(product, "sell", "2.00", 1, cluster_id="c1")
        buyer.place_order(product, "buy", "2.00", 1)


def last_sequence(client: Client) -> int:
    """The account's last execution, as a new live stream says where it starts."""
    with client.subscribe_executions() as s:
        return s.live_from_sequence - 1


def exactly_once(r: Reader, last: int) -> None:
    r.until(lambda xs: bool(xs) and xs[-1].sequence >= last)
    time.sleep(0.3)  # nothing more comes twice
    assert [e.sequence for e in r.items] == list(range(1, last + 1))


def test_a_live_and_a_late_subscriber_see_every_execution_once(tmp_path: Path) -> None:
    with serving(tmp_path, tick_seconds=0.2) as r:
        seller, buyer, product, _ = venue(r.target)
        # live once subscribe_executions returns: the order placed next is seen whole
        live = buyer.subscribe_executions()
        assert (live.live_from_sequence, live.oldest_kept) == (1, 0)
        early = Reader(live)
        trade(seller, buyer, product, 4)
        # subscribes after the orders, from the account's first execution
        late = Reader(buyer.subscribe_executions(from_sequence=0))
        assert late.stream.live_from_sequence == 13 and late.stream.oldest_kept == 1
        trade(seller, buyer, product, 3)
        last = last_sequence(buyer)
        assert last == 21
        exactly_once(early, last)
        exactly_once(late, last)
        assert [e.kind for e in late.items[:3]] == ["accepted", "trade", "allocated"]
        assert [(e.sequence, e.kind) for e in late.items] == \
            [(e.sequence, e.kind) for e in early.items]
        # from the middle: what came after it, then live
        mid = Reader(buyer.subscribe_executions(from_sequence=10))
        trade(seller, buyer, product, 1)
        mid.until(lambda xs: len(xs) >= 14)
        time.sleep(0.3)
        assert [e.sequence for e in mid.items] == list(range(11, 25))
        for x in (early, late, mid):
            x.close()


def test_cut_off_by_a_disconnect_and_a_restart_resumes_exactly_once(tmp_path: Path) -> None:
    proxy: Proxy | None = None
    try:
        with serving(tmp_path, tick_seconds=0.2) as r:
            seller, buyer, product, tokens = venue(r.target)
            proxy = Proxy(r.target)
            through = Client(proxy.target, tokens["buyer"])
            reader = Reader(through.subscribe_executions())
            trade(seller, buyer, product, 2)
            reader.until(lambda xs: len(xs) == 6)
            # a real disconnect: its connection dies, and the venue goes on without it
            proxy.cut()
            trade(seller, buyer, product, 3)
            proxy.restore()
            trade(seller, buyer, product, 1)
            exactly_once(reader, 18)
            assert reader.stream.resumes >= 1
            proxy.cut()
            resumes = reader.stream.resumes
        # the server stops (a snapshot on the way out); the client keeps trying
        with serving(tmp_path, tick_seconds=0.2) as r2:
            seller, buyer, product, _ = venue(r2.target, tokens)
            trade(seller, buyer, product, 2)  # while the subscriber cannot reach it
            proxy.restore(r2.target)
            trade(seller, buyer, product, 1)
            exactly_once(reader, 27)
            assert reader.stream.resumes > resumes
            reader.close()
            through.close()
    finally:
        if proxy is not None:
            proxy.close()


def test_a_sequence_the_server_cannot_serve_is_refused_saying_what_it_can(
        tmp_path: Path) -> None:
    with serving(tmp_path, tick_seconds=0.2, keep_executions=4) as r:
        seller, buyer, product, _ = venue(r.target)
        with pytest.raises(RpcError) as err:
            buyer.subscribe_executions(from_sequence=1)
        assert (err.value.code, err.value.reason) == (grpc.StatusCode.OUT_OF_RANGE,
                                                     "SEQUENCE_IN_FUTURE")
        assert "past your last execution (0); from_sequence may be 0" in err.value.message
        trade(seller, buyer, product, 4)  # 12 executions: the last 4 or 5 kept
        with pytest.raises(RpcError) as err:
            buyer.subscribe_executions(from_sequence=13)
        assert err.value.reason == "SEQUENCE_IN_FUTURE"
        assert "past your last execution (12)" in err.value.message, err.value.message
        with pytest.raises(RpcError) as err:
            buyer.subscribe_executions(from_sequence=0)
        assert (err.value.code, err.value.reason) == (grpc.StatusCode.OUT_OF_RANGE,
                                                     "SEQUENCE_NOT_KEPT")
        start = last_sequence(buyer) + 1
        with buyer.subscribe_executions() as s:
            oldest = s.oldest_kept
        assert 8 <= oldest <= 9 and start == 13
        assert (f"executions after 0 are no longer all kept (the oldest kept is {oldest}); "
                f"from_sequence may be {oldest - 1} to 12") in err.value.message
        # nothing changed: what is kept is served
        s = buyer.subscribe_executions(from_sequence=oldest - 1)
        it = iter(s)
        assert [next(it).sequence for _ in range(13 - oldest)] == list(range(oldest, 13))
        s.close()


def test_executions_lost_in_a_crash_are_a_hole_a_stream_resumes_only_after(
        tmp_path: Path) -> None:
    with serving(tmp_path, tick_seconds=0.2) as r:
        seller, buyer, product, tokens = venue(r.target)
        trade(seller, buyer, product, 3)
        assert last_sequence(buyer) == 9
    # as if the server died before the tape wrote the buyer's last six executions (the
    # journal has their commands; it cannot give executions back)
    db = sqlite3.connect(tmp_path / "tape.sqlite3")
    with db:
        db.execute("DELETE FROM executions WHERE last > 3")
        db.execute("UPDATE exec_accounts SET last = min(last, 3)")
        db.execute("UPDATE meta SET value = 0 WHERE key = 'exec_seq'")
    db.close()
    with serving(tmp_path, tick_seconds=0.2) as r2:
        seller, buyer, product, _ = venue(r2.target, tokens)
        with pytest.raises(RpcError) as err:
            buyer.subscribe_executions(from_sequence=3)
        assert err.value.reason == "SEQUENCE_NOT_KEPT"
        assert "from_sequence may be 9 (nothing kept after it yet)" in err.value.message
        s = buyer.subscribe_executions(from_sequence=9)
        assert s.live_from_sequence == 10
        reader = Reader(s)
        trade(seller, buyer, product, 1)
        reader.until(lambda xs: len(xs) == 3)
        assert [e.sequence for e in reader.items] == [10, 11, 12]
        reader.close()


def test_the_asyncio_client_subscribes_live_then_places(running_async: Running) -> None:
    async def main() -> list[int]:
        seller, buyer, product, tokens = venue(running_async.target)
        async with AsyncClient(running_async.target, tokens["buyer"]) as b:
            stream = await b.subscribe_executions()
            assert stream.live_from_sequence == 1
            trade(seller, buyer, product, 1)
            got = []
            async for e in stream:
                got.append(e.sequence)
                if len(got) == 3:
                    break
            stream.close()
            return got
    assert asyncio.run(main()) == [1, 2, 3]


@pytest.fixture
def running_async(tmp_path: Path) -> Any:
    with serving(tmp_path, tick_seconds=0.2) as r:
        yield r


def test_the_cli_catches_up_from_a_sequence_and_refuses_one_it_cannot(tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from spotex.cli import main
    with serving(tmp_path, tick_seconds=0.2) as r:
        seller, buyer, product, tokens = venue(r.target)
        trade(seller, buyer, product, 2)
        common = ["--server", r.target, "--token", tokens["buyer"]]
        got = CliRunner().invoke(main, [*common, "--json", "executions", "--from-sequence",
                                        "3", "--seconds", "1"])
        assert got.exit_code == 0, got.output
        assert [json.loads(x)["sequence"] for x in got.output.splitlines()] == [4, 5, 6]
        got = CliRunner().invoke(main, [*common, "executions", "--from-sequence", "7",
                                        "--seconds", "1"])
        errors = [x for x in got.output.splitlines() if x.startswith("Error")]
        assert got.exit_code != 0 and len(errors) == 1, got.output
        assert "OUT_OF_RANGE SEQUENCE_IN_FUTURE" in errors[0], errors
        assert "from_sequence may be 0 to 6" in errors[0], errors
