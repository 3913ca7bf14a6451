"""End to end: the real server on loopback, driven through the SDK and generic clients."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import OPERATOR_TOKEN, Collector, Running
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from spotex.client import Client, MarketEvent, RpcError
from spotex.tools.testing import ServerProcess

ROOT = Path(__file__).resolve().parent.parent
NOW_HOUR = int(time.time()) // 3600


def hour_id(h: int) -> str:
    return dt.datetime.fromtimestamp(h * 3600, dt.UTC).strftime("%Y-%m-%dT%H")


@pytest.fixture(scope="module")
def market(running: Running) -> dict[str, Any]:
    op = Client(running.target, OPERATOR_TOKEN)
    seller = op.create_account("neocloud", ["seller"])
    buyer = op.create_account("startup", ["buyer"])
    buyer2 = op.create_account("lab", ["buyer"])
    both = op.create_account("reseller", ["buyer", "seller"])
    products = op.create_products(skus=["H100-SXM"], regions=["us-east"],
                                  from_hour=NOW_HOUR + 3, to_hour=NOW_HOUR + 6, tick="0.01")
    assert [p.product_id for p in products] == [
        f"H100-SXM/us-east/{hour_id(h)}" for h in range(NOW_HOUR + 3, NOW_HOUR + 6)]
    # listing again creates nothing new, and answers with the same products, marked
    again = op.create_products(skus=["H100-SXM"], regions=["us-east"], from_hour=NOW_HOUR + 3,
                               to_hour=NOW_HOUR + 6)
    assert [(p.product_id, p.listed_before) for p in again] == [
        (p.product_id, True) for p in products]
    s = Client(running.target, seller.token)
    s.register_capacity("iad-1", sku="H100-SXM", region="us-east",
                        nodes=[(f"n{i}", 8) for i in range(4)], from_hour=NOW_HOUR,
                        to_hour=NOW_HOUR + 24)
    return {"op": op, "seller": s, "buyer": Client(running.target, buyer.token),
            "buyer2": Client(running.target, buyer2.token),
            "both": Client(running.target, both.token), "products": products,
            "ids": {"seller": seller.account_id, "buyer": buyer.account_id}}


def test_trades_and_allocations_reach_everyone(running: Running, market: dict[str, Any]) -> None:
    pid = market["products"][0].product_id
    s, b = market["seller"], market["buyer"]
    md = Collector(Client(running.target, OPERATOR_TOKEN).market_data([pid]))
    seller_exec = Collector(s.executions())
    buyer_exec = Collector(b.executions())
    md.wait_for(lambda xs: any(x.kind == "snapshot" for x in xs))

    ask = s.place_order(pid, "sell", "2.10", 12, cluster_id="iad-1", client_order_id="a-1")
    assert (ask.state, ask.remaining, ask.client_order_id) == ("open", 12, "a-1")
    s.place_order(pid, "sell", Decimal("2.30"), 8, cluster_id="iad-1")
    whole = b.place_order(pid, "buy", "2.20", 8, gang=8)
    assert (whole.state, whole.filled) == ("filled", 8)
    assert whole.fills[0].price == Decimal("2.10")
    part = b.place_order(pid, "buy", "2.40", 6)
    assert [f.price for f in part.fills] == [Decimal("2.10"), Decimal("2.30")]
    assert part.state == "filled"

    allocs = b.list_allocations(pid)
    assert [a.quantity for a in allocs] == [8, 4, 2]
    assert allocs[0].slots == (("n0", tuple(range(8))),)
    assert all(a.as_buyer for a in allocs)
    assert [a.trade_id for a in s.list_allocations(pid)] == [a.trade_id for a in allocs]
    assert not any(a.as_buyer for a in s.list_allocations(pid))

    buyer_exec.wait_for(lambda xs: sum(x.kind == "allocated" for x in xs) == 3)
    seller_exec.wait_for(lambda xs: sum(x.kind == "allocated" for x in xs) == 3)
    assert {x.kind for x in buyer_exec.items} == {"accepted", "trade", "allocated"}
    assert all(x.allocation.as_buyer for x in buyer_exec.items if x.kind == "allocated")
    seqs = [x.sequence for x in buyer_exec.items]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))

    # the market-data stream: trades, and a book rebuilt from it equals GetBook and the engine
    md.wait_for(lambda xs: sum(x.kind == "trade" for x in xs) == 3)
    book = s.get_book(pid, depth=100)
    md.wait_for(lambda xs: xs[-1].sequence >= book.sequence)
    rebuilt = rebuild([x for x in md.items if x.sequence <= book.sequence])
    assert rebuilt == {"buy": {}, "sell": {lv.price: lv.quantity for lv in book.asks}}
    # ... and the engine itself, rebuilt from the journal the server wrote
    from spotex._core import replay_journal
    from spotex.server.host import JOURNAL

    gw = running.server.host
    assert gw.data_dir is not None
    engine = gw.call(lambda: replay_journal(gw.data_dir / JOURNAL)[0])  # type: ignore[operator]
    engine_bids, engine_asks = engine.l2(pid, 100)
    assert [(int(lv.price * 1_000_000), lv.quantity, lv.orders) for lv in book.asks] == engine_asks
    assert book.bids == () and engine_bids == []


def rebuild(events: list[MarketEvent]) -> dict[str, dict[Decimal, int]]:
    book: dict[str, dict[Decimal, int]] = {"buy": {}, "sell": {}}
    last = None
    for e in events:
        if e.kind == "snapshot":
            assert e.book is not None
            book = {"buy": {lv.price: lv.quantity for lv in e.book.bids},
                    "sell": {lv.price: lv.quantity for lv in e.book.asks}}
        else:
            assert last is not None and e.sequence == last + 1, "gap in market data"
            if e.kind == "level":
                assert e.side is not None and e.price is not None and e.quantity is not None
                if e.quantity:
                    book[e.side][e.price] = e.quantity
                else:
                    book[e.side].pop(e.price, None)
        last = e.sequence
    return book


def code_of(fn: Callable[[], Any]) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(RpcError) as info:
        fn()
    return info.value.code, info.value.reason


def test_role_boundaries_hold(running: Running, market: dict[str, Any]) -> None:
    pid = market["products"][1].product_id
    b, b2, s = market["buyer"], market["buyer2"], market["seller"]
    mine = b.place_order(pid, "buy", "1.50", 8, gang=8)
    denied = grpc.StatusCode.PERMISSION_DENIED
    assert code_of(lambda: b2.cancel_order(mine.order_id)) == (denied, "NOT_OWNER")
    assert code_of(lambda: b2.get_order(mine.order_id)) == (denied, "NOT_OWNER")
    assert code_of(lambda: b2.amend_order(mine.order_id, quantity=16)) == (denied, "NOT_OWNER")
    assert all(o.order_id != mine.order_id for o in b2.list_orders())
    assert code_of(lambda: b.place_order(pid, "sell", "2.00", 1, cluster_id="iad-1")) == (
        denied, "ROLE_REQUIRED")
    assert code_of(lambda: b.register_capacity("x", sku="H100-SXM", region="us-east",
                                               nodes=[("n", 8)], from_hour=1, to_hour=2)) == (
        denied, "ROLE_REQUIRED")
    assert code_of(lambda: s.halt(pid)) == (denied, "ROLE_REQUIRED")
    assert code_of(lambda: b.create_account("x", ["operator"])) == (denied, "ROLE_REQUIRED")
    # another seller cannot sell from or withdraw this seller's cluster: a cluster id is
    # its seller's own, so to another seller it is no cluster of theirs
    both = market["both"]
    assert code_of(lambda: both.place_order(pid, "sell", "2.00", 1, cluster_id="iad-1")) == (
        grpc.StatusCode.NOT_FOUND, "UNKNOWN_CLUSTER")
    assert code_of(lambda: both.withdraw_capacity("iad-1", from_hour=NOW_HOUR,
                                                  to_hour=NOW_HOUR + 1))[0] == (
        grpc.StatusCode.NOT_FOUND)
    for token in ("", "not-a-token"):
        anon = Client(running.target, token)
        assert code_of(anon.list_products)[0] == grpc.StatusCode.UNAUTHENTICATED
        assert code_of(lambda a=anon: a.get_order(mine.order_id))[0] == (
            grpc.StatusCode.UNAUTHENTICATED)
    assert b.get_order(mine.order_id).state == "open"
    assert b.cancel_order(mine.order_id).state == "cancelled"


def test_bad_input_gets_clear_errors_and_changes_nothing(market: dict[str, Any]) -> None:
    pid = market["products"][1].product_id
    b = market["buyer"]

    def snapshot() -> Any:
        return b.list_orders(), b.get_book(pid, depth=100)
    before = snapshot()
    bad = grpc.StatusCode.INVALID_ARGUMENT
    assert code_of(lambda: b.place_order(pid, "buy", "2.001", 1)) == (bad, "PRICE_OFF_TICK")
    assert code_of(lambda: b.place_order(pid, "buy", "2.00", 0)) == (bad, "NON_POSITIVE_QUANTITY")
    assert code_of(lambda: b.place_order(pid, "buy", "2.00", 3, gang=3)) == (bad, "INVALID_GANG")
    assert code_of(lambda: b.place_order("nope", "buy", "2.00", 1))[0] == (
        grpc.StatusCode.NOT_FOUND)
    assert code_of(lambda: b.cancel_order(10**12))[0] == grpc.StatusCode.NOT_FOUND
    assert snapshot() == before
    b.place_order(pid, "buy", "1.00", 1, client_order_id="dup")
    assert code_of(lambda: b.place_order(pid, "buy", "1.00", 1, client_order_id="dup")) == (
        grpc.StatusCode.ALREADY_EXISTS, "DUPLICATE_CLIENT_ORDER_ID")


def test_operator_halts_resumes_and_closes(market: dict[str, Any]) -> None:
    pid = market["products"][2].product_id
    op, b = market["op"], market["buyer"]
    resting = b.place_order(pid, "buy", "1.00", 2)
    assert op.halt(pid).state == "halted"
    assert code_of(lambda: b.place_order(pid, "buy", "1.00", 1)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "PRODUCT_HALTED")
    assert op.resume(pid).state == "open"
    b.place_order(pid, "buy", "1.00", 1)
    assert op.close_product(pid).state == "closed"
    assert b.get_order(resting.order_id).state == "expired"
    assert code_of(lambda: b.place_order(pid, "buy", "1.00", 1)) == (
        grpc.StatusCode.FAILED_PRECONDITION, "PRODUCT_CLOSED")
    states = {p.product_id: p.state for p in b.list_products()}
    assert states[pid] == "closed"


def test_operator_takes_a_snapshot_on_demand(running: Running, market: dict[str, Any]) -> None:
    import json

    from spotex.server.host import read_snapshot

    seq, h = market["op"].take_snapshot()
    assert seq <= market["op"].state_hash()[0]  # the clock ticker may have moved on since
    data_dir = running.server.host.data_dir
    assert data_dir is not None
    got_seq, _, gateway = read_snapshot(data_dir / "snapshots" / f"snapshot-{seq:016d}.bin")
    assert (got_seq, json.loads(gateway)["state_hash"]) == (seq, h)
    assert code_of(lambda: market["buyer"].take_snapshot())[1] == "ROLE_REQUIRED"


def test_bulk_entry_answers_each_order_in_order(market: dict[str, Any]) -> None:
    pid = market["products"][1].product_id
    b = market["buyer"]
    orders = [{"product_id": pid, "side": "buy", "price": f"1.{i:02d}", "quantity": 1}
              for i in range(1, 21)]
    orders[5]["price"] = "1.005"  # off tick
    results = list(b.submit_orders(orders, per_message=7))
    assert len(results) == 20
    assert isinstance(results[5], RpcError) and results[5].reason == "PRICE_OFF_TICK"
    placed = [r for r in results if not isinstance(r, RpcError)]
    assert [o.price for o in placed] == [Decimal(o["price"]) for i, o in enumerate(orders)
                                         if i != 5]


def test_health_and_reflection_serve_generic_clients(running: Running) -> None:
    with grpc.insecure_channel(running.target) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        for name in ("", "spotex.v1.Market", "spotex.v1.Operator"):
            r = health.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)
            assert r.status == health_pb2.HealthCheckResponse.SERVING
        refl = reflection_pb2_grpc.ServerReflectionStub(ch)
        replies = list(refl.ServerReflectionInfo(iter([
            reflection_pb2.ServerReflectionRequest(list_services="")]), timeout=5))
        names = {s.name for s in replies[0].list_services_response.service}
        assert {"spotex.v1.Market", "spotex.v1.Operator", "grpc.health.v1.Health"} <= names


def test_a_client_built_from_the_proto_alone(running: Running, market: dict[str, Any],
                                             tmp_path: Path) -> None:
    """Generates stubs from protos/ in a clean directory and trades with them in a separate
    interpreter that never imports the spotex package."""
    pid = market["products"][1].product_id
    token = market["op"].create_account("generic", ["buyer"]).token
    script = tmp_path / "generic.py"
    script.write_text(textwrap.dedent(f"""
        import os, sys, grpc
        from grpc_tools import protoc
        assert protoc.main(["protoc", "-I{ROOT / 'protos'}", "--python_out=.",
                            "--grpc_python_out=.", "spotex/v1/spotex.proto"]) == 0
        open("spotex/__init__.py", "w").close(); open("spotex/v1/__init__.py", "w").close()
        sys.path.insert(0, ".")
        from spotex.v1 import spotex_pb2 as pb, spotex_pb2_grpc as rpc
        import spotex
        assert os.path.dirname(spotex.__file__) == os.path.abspath("spotex"), spotex.__file__
        md = (("authorization", "Bearer {token}"),)
        stub = rpc.MarketStub(grpc.insecure_channel("{running.target}"))
        placed = stub.PlaceOrder(pb.PlaceOrderRequest(product_id="{pid}", side=pb.SIDE_BUY,
            price_micros=1_230_000, quantity=2), metadata=md).order
        assert placed.state == pb.ORDER_STATE_OPEN, placed
        done = stub.CancelOrder(pb.CancelOrderRequest(order_id=placed.order_id),
                                metadata=md).order
        assert done.state == pb.ORDER_STATE_CANCELLED, done
        print("ok", placed.order_id)
    """))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    r = subprocess.run([sys.executable, "-I", str(script)], cwd=tmp_path, env=env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("ok ")


def test_async_client_trades_and_streams(running: Running, market: dict[str, Any]) -> None:
    import asyncio

    from spotex.client import AsyncClient

    pid = market["products"][1].product_id
    token = market["op"].create_account("async-buyer", ["buyer"]).token

    async def go() -> None:
        async with AsyncClient(running.target, token) as c:
            stream = c.market_data([pid])
            first = await stream.__anext__()
            assert first.kind == "snapshot"
            o = await c.place_order(pid, "buy", "1.11", 3)
            nxt = await asyncio.wait_for(stream.__anext__(), 5)
            assert (nxt.kind, nxt.side, nxt.price, nxt.sequence) == (
                "level", "buy", Decimal("1.11"), first.sequence + 1)
            await stream.aclose()
            assert (await c.cancel_order(o.order_id)).state == "cancelled"
    asyncio.run(go())


def test_serve_stops_gracefully_on_sigterm(tmp_path: Path) -> None:
    import signal

    server = ServerProcess(tmp_path, "t")
    try:
        assert Client(server.target, "t").list_products() == []
        server.proc.send_signal(signal.SIGTERM)
        assert server.proc.wait(15) == 0
    finally:
        server.kill()
