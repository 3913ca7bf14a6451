"""Market-data relays (issue 27, fan-out off the order path): a relay serves what the
server serves (snapshot, then the same deltas with the same sequences), conflates a
slow subscriber to a snapshot rather than skipping silently, refuses what the server
refuses, is started again when it dies and stops with the server."""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import OPERATOR_TOKEN, Collector, on_thread, serving

from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex.client import Client
from spotex.server.relay import Books, Feed, run_relay
from spotex.tools.testing import ServerProcess

HOUR = int(time.time()) // 3600


def _stream(target: str, token: str, products: list[str], options: Any = ()) -> Any:
    ch = grpc.insecure_channel(target, options=list(options))
    call = ch.unary_stream("/spotex.v1.Market/StreamMarketData",
                           request_serializer=pb.StreamMarketDataRequest.SerializeToString,
                           response_deserializer=pb.MarketDataBatch.FromString)
    return ch, call(pb.StreamMarketDataRequest(product_ids=products),
                    metadata=(("authorization", f"Bearer {token}"),), timeout=60)


class Updates:
    """A stream's updates, read on a thread into a list."""

    def __init__(self, target: str, token: str, products: list[str], options: Any = (),
                 pause: threading.Event | None = None) -> None:
        self.items: list[Any] = []
        self.messages = 0
        self.error: grpc.RpcError | None = None
        self._ch, self._call = _stream(target, token, products, options)
        self._pause = pause
        threading.Thread(target=self._run, daemon=True).start()

    def _run(self) -> None:
        try:
            for batch in self._call:
                self.messages += 1
                self.items.extend(batch.updates)
                if self._pause is not None:
                    self._pause.wait(60)
        except grpc.RpcError as err:
            self.error = err

    def wait_for_seq(self, product: str, seq: int, timeout: float = 20.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if any(u.product_id == product and u.sequence >= seq for u in self.items):
                return
            time.sleep(0.02)
        raise AssertionError(f"no sequence {seq}; have {[u.sequence for u in self.items]}")

    def close(self) -> None:
        self._call.cancel()
        self._ch.close()


@pytest.fixture
def venue(tmp_path: Path) -> Iterator[dict[str, Any]]:
    """A server, a product with capacity behind it, a seller, a buyer, and a relay in
    front of it (in this process, on its own loop, with the watcher's token)."""
    with serving(tmp_path / "data", tick_seconds=0.2) as r:
        op = Client(r.target, OPERATOR_TOKEN)
        pid = op.create_products(skus=["H100-SXM"], regions=["us-east"], from_hour=HOUR + 3,
                                 to_hour=HOUR + 4, tick="0.01")[0].product_id
        seller = op.create_account("seller", ["seller"])
        buyer = op.create_account("buyer", ["buyer"])
        watcher = op.create_account("watcher", ["buyer"])
        s = Client(r.target, seller.token)
        s.register_capacity("c1", sku="H100-SXM", region="us-east",
                            nodes=[(f"n{i}", 8) for i in range(64)], from_hour=HOUR,
                            to_hour=HOUR + 24)
        with relay_on_thread(r.target, watcher.token, queue=10_000) as port:
            yield {"target": r.target, "relay": f"127.0.0.1:{port}", "pid": pid, "op": op,
                   "seller": s, "buyer": Client(r.target, buyer.token),
                   "watcher": watcher, "buyer_id": buyer.account_id}


class relay_on_thread:
    def __init__(self, upstream: str, token: str, queue: int) -> None:
        self.args = (upstream, token, queue)

    def __enter__(self) -> int:
        upstream, token, queue = self.args

        async def start() -> tuple[asyncio.Event, asyncio.Task[None], int]:
            stop = asyncio.Event()
            port: asyncio.Future[int] = asyncio.get_running_loop().create_future()
            task = asyncio.create_task(run_relay(upstream, "127.0.0.1:0", token,
                                                 subscriber_queue=queue, stop=stop,
                                                 ready=port.set_result))
            return stop, task, await port

        async def stop(s: tuple[asyncio.Event, asyncio.Task[None], int]) -> None:
            s[0].set()
            await s[1]
        self._cm = on_thread(start, stop)
        (_, _, port), _ = self._cm.__enter__()
        return port

    def __exit__(self, *exc: Any) -> None:
        self._cm.__exit__(*exc)


def _book(u: Any) -> tuple[Any, ...]:
    b = u.snapshot
    return (u.product_id, u.sequence, [(x.price_micros, x.quantity, x.orders) for x in b.bids],
            [(x.price_micros, x.quantity, x.orders) for x in b.asks])


def _trade(venue: dict[str, Any]) -> int:
    """Asks, bids that cross them in part, a cancel, an amend: the product's sequence
    at the end."""
    pid, s, b = venue["pid"], venue["seller"], venue["buyer"]
    asks = [s.place_order(pid, "sell", f"2.{k}0", 3, cluster_id="c1") for k in range(1, 5)]
    b.place_order(pid, "buy", "2.20", 4)
    b.place_order(pid, "buy", "1.50", 2)
    s.cancel_order(asks[3].order_id)
    b.place_order(pid, "buy", "2.30", 2)
    return Client(venue["target"], OPERATOR_TOKEN).get_book(venue["pid"]).sequence


def test_a_relay_serves_the_same_snapshot_and_deltas_as_the_server(venue: dict[str, Any]
                                                                   ) -> None:
    pid, token = venue["pid"], venue["watcher"].token
    venue["seller"].place_order(pid, "sell", "3.00", 1, cluster_id="c1")  # a book to snapshot
    direct = Updates(venue["target"], token, [pid])
    relayed = Updates(venue["relay"], token, [pid])
    every = Updates(venue["relay"], token, [])  # every product, as the server's relay
    for u in (direct, relayed, every):
        u.wait_for_seq(pid, 1)
    last = _trade(venue)
    for u in (direct, relayed, every):
        u.wait_for_seq(pid, last)
    assert [u.SerializeToString() for u in relayed.items] == \
        [u.SerializeToString() for u in direct.items]
    assert [u.SerializeToString() for u in every.items] == \
        [u.SerializeToString() for u in direct.items]
    kinds = [u.WhichOneof("payload") for u in direct.items]
    assert kinds[0] == "snapshot" and "trade" in kinds and "level" in kinds
    # a subscription made now starts from the same snapshot on both
    late_direct = Updates(venue["target"], token, [pid])
    late_relay = Updates(venue["relay"], token, [pid])
    for u in (late_direct, late_relay):
        u.wait_for_seq(pid, last)
    assert _book(late_relay.items[0]) == _book(late_direct.items[0])
    assert late_relay.items[0].sequence == last
    for u in (direct, relayed, every, late_direct, late_relay):
        u.close()


def test_a_relay_refuses_what_the_server_refuses(venue: dict[str, Any]) -> None:
    relay, pid = venue["relay"], venue["pid"]
    cases = [("not-a-token", [pid], grpc.StatusCode.UNAUTHENTICATED, "UNAUTHENTICATED"),
             (venue["watcher"].token, ["H100-SXM/nowhere/2030-01-01T00"],
              grpc.StatusCode.NOT_FOUND, "UNKNOWN_PRODUCT")]
    for token, products, code, reason in cases:
        for target in (venue["target"], relay):
            ch, call = _stream(target, token, products)
            with pytest.raises(grpc.RpcError) as err:
                next(iter(call))
            assert err.value.code() == code, target
            assert dict(err.value.trailing_metadata())["spotex-reason"] == reason, target
            ch.close()
    # the kill switch: a disabled account is refused by the relay as by the server
    venue["op"].disable_account(venue["buyer_id"])
    buyer_token = venue["buyer"]._md[0][1].split(" ", 1)[1]
    ch, call = _stream(relay, buyer_token, [pid])
    with pytest.raises(grpc.RpcError) as err:
        next(iter(call))
    assert dict(err.value.trailing_metadata())["spotex-reason"] == "ACCOUNT_DISABLED"
    ch.close()
    # anything but market data is not the relay's
    ch = grpc.insecure_channel(relay)
    with pytest.raises(grpc.RpcError) as err:
        ch.unary_unary("/spotex.v1.Market/PlaceOrder")(b"", timeout=5)
    assert err.value.code() == grpc.StatusCode.UNIMPLEMENTED
    ch.close()


def test_a_slow_subscriber_is_conflated_to_a_snapshot_never_a_silent_gap(
        tmp_path: Path) -> None:
    """A subscriber that stops reading while thousands of updates go by: the relay (its
    queue bounded at 50 updates) discards what it queued and sends a fresh snapshot when
    the subscriber reads again; every delta it gets continues the one before it or the
    last snapshot; its book ends as the server's."""
    with serving(tmp_path / "data", tick_seconds=0.2) as r:
        op = Client(r.target, OPERATOR_TOKEN)
        pid = op.create_products(skus=["H100-SXM"], regions=["us-east"], from_hour=HOUR + 3,
                                 to_hour=HOUR + 4, tick="0.01")[0].product_id
        seller = op.create_account("seller", ["seller"])
        watcher = op.create_account("watcher", ["buyer"])
        s = Client(r.target, seller.token)
        s.register_capacity("c1", sku="H100-SXM", region="us-east",
                            nodes=[(f"n{i}", 8) for i in range(500)], from_hour=HOUR,
                            to_hour=HOUR + 24)
        with relay_on_thread(r.target, watcher.token, queue=50) as port:
            paused = threading.Event()
            slow = Updates(f"127.0.0.1:{port}", watcher.token, [pid],
                           options=[("grpc.http2.bdp_probe", 0),
                                    ("grpc.http2.lookahead_bytes", 1024)], pause=paused)
            slow.wait_for_seq(pid, 0)
            orders = [{"product_id": pid, "side": "sell", "price": f"{2 + k / 100:.2f}",
                       "quantity": 1, "cluster_id": "c1"} for k in range(2000)]
            for k in range(0, 2000, 400):  # 5 rounds of 400 new levels
                assert all(not isinstance(o, Exception)
                           for o in s.submit_orders(orders[k:k + 400], per_message=400))
            last = op.get_book(pid).sequence
            paused.set()  # it reads again
            slow.wait_for_seq(pid, last)
            direct = Updates(r.target, watcher.token, [pid])
            direct.wait_for_seq(pid, last)
            seq, snapshots = None, 0
            for u in slow.items:
                if u.WhichOneof("payload") == "snapshot":
                    snapshots += 1
                    book = u
                else:
                    assert seq is not None and u.sequence == seq + 1, "a gap no snapshot announced"
                seq = u.sequence
            assert snapshots >= 2, "the slow subscriber was never conflated"
            assert len([u for u in slow.items if u.WhichOneof("payload") != "snapshot"]) < last
            if book.sequence == last:
                assert _book(book) == _book(direct.items[0])
            slow.close()
            direct.close()


def test_a_feed_over_its_bound_is_conflated_to_a_snapshot_of_what_it_missed() -> None:
    async def go() -> None:
        books = Books()
        for seq in (1, 2, 3):
            books.apply(pb.MarketData(product_id="a", sequence=seq, level=pb.LevelUpdate(
                side=pb.SIDE_BUY, price_micros=seq, quantity=seq, orders=1)))
        f = Feed(frozenset({"a", "b"}), 2, books)
        f.stale.update({"a", "b"})
        first = pb.MarketDataBatch.FromString(await f.take(100))
        assert [(u.product_id, u.sequence) for u in first.updates] == [("a", 3), ("b", 0)]
        f.offer(b"x", 1, ["a"])
        f.offer(b"y", 1, ["a"])
        assert await f.take(100) == b"xy"  # within its bound: deltas as they came
        f.offer(b"x", 2, ["a"])
        f.offer(b"y", 1, ["b"])  # over: conflated
        assert f.conflations == 1 and not f.entries
        f.offer(b"z", 1, ["a"])  # while stale, nothing is queued
        snap = pb.MarketDataBatch.FromString(await f.take(100))
        assert [u.WhichOneof("payload") for u in snap.updates] == ["snapshot", "snapshot"]
        assert [u.snapshot.bids[0].price_micros for u in snap.updates[:1]] == [3]
    asyncio.run(go())


# ---- relays the server starts ----------------------------------------------------------------


def _relays(server: ServerProcess, n: int, timeout: float = 30.0) -> tuple[str, list[int]]:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        found = re.search(r"market data: \d+ relays at (\S+) \(pids ([\d ]+)\)", server.text())
        if found and server.text().count("spotex relay serving market data") >= n:
            return found.group(1), [int(p) for p in found.group(2).split()]
        time.sleep(0.05)
    raise AssertionError(server.text())


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _gone(pids: list[int], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if not any(_alive(p) for p in pids):
            return True
        time.sleep(0.05)
    return False


def test_a_relay_that_dies_is_started_again_and_relays_stop_with_the_server(
        tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", OPERATOR_TOKEN, "--market-data-relays", "2")
    try:
        address, pids = _relays(server, 2)
        op = Client(server.target, OPERATOR_TOKEN)
        pid = op.create_products(skus=["H100-SXM"], regions=["us-east"], from_hour=HOUR + 3,
                                 to_hour=HOUR + 4)[0].product_id
        watcher = op.create_account("watcher", ["buyer"])
        # the relays' token is good for market data only, and only on this server
        with open(f"/proc/{pids[0]}/environ", "rb") as f:
            env = dict(x.split(b"=", 1) for x in f.read().split(b"\0") if b"=" in x)
        relay_token = env[b"SPOTEX_RELAY_TOKEN"].decode()
        with pytest.raises(Exception, match="UNAUTHENTICATED"):
            Client(server.target, relay_token).list_products()

        seller = op.create_account("seller", ["seller"])
        s = Client(server.target, seller.token)
        s.register_capacity("c1", sku="H100-SXM", region="us-east", nodes=[("n1", 8)],
                            from_hour=HOUR, to_hour=HOUR + 24)
        # the SDK, its market data from the relays, follows them through their deaths
        sdk = Collector(Client(server.target, watcher.token,
                               market_data_target=address).market_data([pid]))
        sdk.wait_for(lambda xs: [x.kind for x in xs] == ["snapshot"])

        for p in pids:
            os.kill(p, signal.SIGKILL)
        end = time.monotonic() + 30
        while server.text().count("started again") < 2 and time.monotonic() < end:
            time.sleep(0.05)
        assert f"market-data relay 0 (pid {pids[0]}) killed by SIGKILL" in server.text()
        restarted = [int(m.group(1)) for i in (0, 1) if (m := re.search(
            rf"market-data relay {i} started again \(pid (\d+)", server.text()))]
        assert len(restarted) == 2, server.text()
        end = time.monotonic() + 30
        while server.text().count("spotex relay serving market data") < 4:
            assert time.monotonic() < end, server.text()
            time.sleep(0.05)
        s.place_order(pid, "sell", "2.00", 1, cluster_id="c1")
        # it subscribed again (a fresh snapshot), and has the ask, as a delta after that
        # snapshot or in it (it may have subscribed again after the ask)
        sdk.wait_for(lambda xs: any(x.sequence >= 1 for x in xs), timeout=20)
        assert [x.kind for x in sdk.items][:2] == ["snapshot", "snapshot"]
        # every relay serves on the shared address: subscriptions land on both
        streams = [Updates(address, watcher.token, [pid]) for _ in range(8)]
        for u in streams:
            u.wait_for_seq(pid, 0)
            u.close()
        assert server.stop() == 0
        assert _gone(restarted), "a relay outlived the server"
    finally:
        server.kill()


def test_relays_stop_on_their_own_when_the_server_is_killed(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path / "data", OPERATOR_TOKEN, "--market-data-relays", "1")
    try:
        _, pids = _relays(server, 1)
        server.kill()
        assert _gone(pids), "a relay outlived its killed server"
    finally:
        server.kill()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_a_relay_with_an_unreachable_upstream_or_a_refused_token_says_so_in_one_line(
        venue: dict[str, Any]) -> None:
    def relay(upstream: str, token: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "spotex.cli", "relay", "--upstream", upstream,
             "--listen", f"127.0.0.1:{_free_port()}", "--token", token,
             "--connect-timeout", "5"], capture_output=True, text=True, timeout=60)
    gone = relay(f"127.0.0.1:{_free_port()}", "x")
    assert gone.returncode != 0
    assert gone.stderr.count("\n") == 1, gone.stderr
    assert gone.stderr.startswith("Error: cannot reach the upstream 127.0.0.1:")
    refused = relay(venue["target"], "not-a-token")
    assert refused.returncode != 0
    assert refused.stderr.count("\n") == 1, refused.stderr
    assert "refused the relay: UNAUTHENTICATED" in refused.stderr
