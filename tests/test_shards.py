"""One venue over two shards: two engines (each owning one SKU's products, numbering its
ids from its index << 48) behind a shard gateway that owns the accounts. A client of the
gateway sees one venue; each engine holds only its own shard."""

from __future__ import annotations

import contextlib
import hashlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest
from conftest import OPERATOR_TOKEN, Collector, on_thread, serving
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spotex.client import Client, Order, RpcError
from spotex.cluster.gateway import ShardGateway
from spotex.cluster.routes import RouteError, Routes, ShardSpec, parse_route, parse_shard
from spotex.server.limits import Limits

GATEWAY_TOKEN = "test-gateway-token"
HOUR = 500_000
ROUTES = {"H100/us-east": 1, "B200/us-east": 2}
LIMITS = Limits(orders_per_second=1e6, order_burst=1_000_000)


@dataclass
class Venue:
    target: str  # the gateway
    engines: dict[int, str]  # shard index -> its engine's address


@contextlib.contextmanager
def venue(base: Path, routes: dict[str, int] = ROUTES) -> Iterator[Venue]:
    with contextlib.ExitStack() as stack:
        engines = {}
        for index in (1, 2):
            r = stack.enter_context(serving(base / f"shard{index}", shard_index=index,
                                            gateway_token=GATEWAY_TOKEN, limits=LIMITS,
                                            tick_seconds=0.2))
            engines[index] = r.target
        table = Routes([ShardSpec(i, (a,)) for i, a in engines.items()], routes)
        gw, _ = stack.enter_context(on_thread(
            lambda: ShardGateway.start("127.0.0.1:0", table, GATEWAY_TOKEN, base / "gateway",
                                       OPERATOR_TOKEN, limits=LIMITS, access_log=False),
            lambda g: g.stop(0.5)))
        yield Venue(f"127.0.0.1:{gw.port}", engines)


def pid(sku: str, h: int = 0) -> str:
    return f"{sku}/us-east/2027-01-15T{8 + h:02d}"  # HOUR + h, as the products are listed


TOKENS: dict[str, str] = {}


def market(v: Venue) -> tuple[Client, Client, Client]:
    """Products of both SKUs, a seller with a cluster of each, a buyer (their tokens in
    TOKENS)."""
    op = Client(v.target, OPERATOR_TOKEN)
    made = op.create_products(skus=["H100", "B200"], regions=["us-east"], from_hour=HOUR,
                              to_hour=HOUR + 3)
    assert sorted(p.product_id for p in made) == sorted(
        pid(s, h) for s in ("H100", "B200") for h in range(3))
    for name in ("seller", "buyer"):
        TOKENS[name] = op.create_account(name, [name]).token
    seller, buyer = Client(v.target, TOKENS["seller"]), Client(v.target, TOKENS["buyer"])
    for sku in ("H100", "B200"):
        seller.register_capacity(f"{sku}-c", sku=sku, region="us-east",
                                 nodes=[("n0", 8), ("n1", 8)], from_hour=HOUR,
                                 to_hour=HOUR + 3)
    return op, seller, buyer


def test_routes_parse_and_refuse_what_cannot_be_used() -> None:
    assert parse_shard("2=127.0.0.1:1,127.0.0.1:2") == ShardSpec(2, ("127.0.0.1:1",
                                                                     "127.0.0.1:2"))
    assert parse_route("H100/us-east=2") == ("H100/us-east", 2)
    for bad in ("2", "x=127.0.0.1:1", "0=127.0.0.1:1", "32=127.0.0.1:1", "1=nohost"):
        with pytest.raises(RouteError):
            parse_shard(bad)
    with pytest.raises(RouteError, match="no shard 3"):
        Routes([ShardSpec(1, ("a:1",))], {"H100/us-east": 3})
    with pytest.raises(RouteError, match="one index"):
        Routes([ShardSpec(1, ("a:1",)), ShardSpec(1, ("b:1",))])
    r = Routes([ShardSpec(1, ("a:1",)), ShardSpec(2, ("b:1",))], {"H100/us-east": 2})
    assert r.of_product("H100/us-east/2027-01-15T08") == 2
    # without a route: a stable hash, the same for every hour of a SKU and region
    hashed = {r.of_product(f"A100/eu-west/2027-01-15T{h:02d}") for h in range(24)}
    assert len(hashed) == 1
    assert r.of_id((2 << 48) + 5) == 2 and r.of_id(7) == 1 and r.of_id(9 << 48) == 1


def test_a_client_of_the_gateway_trades_on_both_shards_as_one_venue(tmp_path: Path) -> None:
    with venue(tmp_path) as v:
        op, seller, buyer = market(v)
        asks = {s: seller.place_order(pid(s), "sell", "2.00", 16, cluster_id=f"{s}-c")
                for s in ("H100", "B200")}
        # each shard numbers its own ids
        assert asks["H100"].order_id >> 48 == 1 and asks["B200"].order_id >> 48 == 2
        bids = {s: buyer.place_order(pid(s), "buy", "2.50", 8, gang=8)
                for s in ("H100", "B200")}
        for s, b in bids.items():
            assert b.state == "filled" and b.order_id >> 48 == ROUTES[f"{s}/us-east"]
            assert b.fills[0].trade_id >> 48 == ROUTES[f"{s}/us-east"]
        # by id: the shard that gave it
        assert buyer.get_order(bids["B200"].order_id).fills == bids["B200"].fills
        assert seller.cancel_order(asks["H100"].order_id).state == "cancelled"
        with pytest.raises(RpcError) as err:
            buyer.get_order((2 << 48) + 999)
        assert err.value.reason == "UNKNOWN_ORDER"
        # views without a product: both shards, merged by id (every page)
        listed = seller.list_orders()
        assert [o.order_id for o in listed] == sorted(a.order_id for a in asks.values())
        allocs = buyer.list_allocations()
        assert sorted(a.product_id for a in allocs) == sorted(pid(s) for s in asks)
        assert [a.trade_id for a in allocs] == sorted(a.trade_id for a in allocs)
        assert len(op.list_products()) == 6
        # a resale names no product: it goes where its allocation's trade id was given
        bought = next(a for a in allocs if a.product_id == pid("B200"))
        resale = buyer.place_order("", "sell", "3.00", 0, resell_trade_id=bought.trade_id)
        assert resale.order_id >> 48 == 2 and resale.product_id == pid("B200")
        # the engines: each holds its own products only
        for index, sku in ((1, "H100"), (2, "B200")):
            own = Client(v.engines[index], OPERATOR_TOKEN).list_products()
            assert {p.product_id.split("/")[0] for p in own} == {sku}
        # the venue's hash is the shards' hashes, in index order
        lines = "".join(f"{i} {Client(v.engines[i], OPERATOR_TOKEN).state_hash()[1]}\n"
                        for i in (1, 2))
        assert op.state_hash()[1] == hashlib.sha256(lines.encode()).hexdigest()


def test_pages_across_shards_are_exact(tmp_path: Path) -> None:
    with venue(tmp_path) as v:
        _, seller, _ = market(v)
        placed = [seller.place_order(pid(s, h), "sell", "3.00", 1, cluster_id=f"{s}-c")
                  for s in ("H100", "B200", "H100") for h in range(3)]
        ch = grpc.insecure_channel(v.target)
        from spotex._proto.spotex.v1 import spotex_pb2 as pb
        from spotex._proto.spotex.v1 import spotex_pb2_grpc as pb_grpc
        stub = pb_grpc.MarketStub(ch)
        md = (("authorization", f"Bearer {TOKENS['seller']}"),)
        for size in (1, 2, 4, 100):
            got, token = [], ""
            while True:
                r = stub.ListOrders(pb.ListOrdersRequest(page_size=size, page_token=token),
                                    metadata=md)
                assert len(r.orders) <= size
                got += [o.order_id for o in r.orders]
                if not (token := r.next_page_token):
                    break
            assert got == sorted(o.order_id for o in placed), size
            products, token = [], ""
            while True:
                p = stub.ListProducts(pb.ListProductsRequest(page_size=size, page_token=token),
                                      metadata=md)
                products += [x.product_id for x in p.products]
                if not (token := p.next_page_token):
                    break
            assert sorted(products) == sorted(pid(s, h) for s in ("H100", "B200")
                                              for h in range(3)), size
        with pytest.raises(grpc.RpcError) as err:
            stub.ListProducts(pb.ListProductsRequest(page_token="x.1"), metadata=md)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        ch.close()


def test_bulk_entry_spanning_shards_answers_in_order_and_a_basket_stays_in_one(
        tmp_path: Path) -> None:
    with venue(tmp_path) as v:
        _, seller, buyer = market(v)
        orders = [{"product_id": pid(s, h), "side": "sell", "price": f"2.{h}0", "quantity": 2,
                   "cluster_id": f"{s}-c", "client_order_id": f"{s}-{h}"}
                  for h in range(3) for s in ("H100", "B200")]
        orders.append({**orders[0], "quantity": 0, "client_order_id": "bad"})
        got = list(seller.submit_orders(orders, per_message=4))
        assert len(got) == len(orders)
        for o, r in zip(orders[:-1], got[:-1], strict=True):
            assert isinstance(r, Order) and r.client_order_id == o["client_order_id"]
            assert r.order_id >> 48 == ROUTES[o["product_id"].rsplit("/", 1)[0]]
        assert isinstance(got[-1], RpcError) and got[-1].reason == "NON_POSITIVE_QUANTITY"

        before = buyer.list_orders()
        with pytest.raises(RpcError) as err:
            buyer.place_basket([{"product_id": pid("H100"), "side": "buy", "price": "3",
                                 "quantity": 1},
                                {"product_id": pid("B200"), "side": "buy", "price": "3",
                                 "quantity": 1}])
        assert err.value.reason == "CROSS_SHARD" and "shards 1, 2" in err.value.message
        assert buyer.list_orders() == before
        legs = buyer.place_basket([{"product_id": pid("B200", h), "side": "buy",
                                    "price": "3", "quantity": 1} for h in range(2)])
        assert [o.state for o in legs] == ["filled", "filled"]


def test_streams_fan_in_from_every_shard(tmp_path: Path) -> None:
    with venue(tmp_path) as v:
        _, seller, buyer = market(v)
        # live once every shard's stream is; where it stands is per shard, so unsaid
        live = buyer.subscribe_executions()
        assert (live.live_from_sequence, live.oldest_kept) == (0, 0)
        execs = Collector(iter(live))
        with pytest.raises(RpcError) as err:
            buyer.subscribe_executions(from_sequence=0)
        assert (err.value.code, err.value.reason) == (grpc.StatusCode.UNIMPLEMENTED,
                                                     "RESUME_NOT_SHARDED")
        assert "each shard numbers them on its own" in err.value.message
        md = Collector(buyer.market_data([pid("H100"), pid("B200")]))
        md.wait_for(lambda xs: {x.product_id for x in xs} == {pid("H100"), pid("B200")})
        for s in ("H100", "B200"):
            seller.place_order(pid(s), "sell", "2.00", 8, cluster_id=f"{s}-c")
            buyer.place_order(pid(s), "buy", "2.00", 8, gang=8)
        execs.wait_for(lambda xs: {x.allocation.product_id for x in xs
                                   if x.kind == "allocated"} == {pid("H100"), pid("B200")},
                       timeout=10)
        md.wait_for(lambda xs: {x.product_id for x in xs if x.kind == "trade"}
                    == {pid("H100"), pid("B200")}, timeout=10)
        # each shard numbers the buyer's executions; through the gateway they carry the
        # shard's index above bit 48, so none repeats and each shard's follow on from 1
        low: dict[int, list[int]] = {}
        for x in list(execs.items):
            low.setdefault(x.sequence >> 48, []).append(x.sequence & ((1 << 48) - 1))
            if x.order is not None:
                assert x.order.order_id >> 48 == x.sequence >> 48
        assert sorted(low) == [1, 2]
        for seqs in low.values():
            assert seqs == list(range(1, len(seqs) + 1))
        buyer.close()


def test_capacity_the_kill_switch_and_product_state_reach_the_right_shard(
        tmp_path: Path) -> None:
    with venue(tmp_path) as v:
        op, seller, buyer = market(v)
        assert seller.withdraw_capacity("B200-c", from_hour=HOUR + 2, to_hour=HOUR + 3) == 16
        with pytest.raises(RpcError) as err:
            seller.withdraw_capacity("nowhere", from_hour=HOUR, to_hour=HOUR + 1)
        assert err.value.reason == "UNKNOWN_CLUSTER"
        assert op.halt(pid("B200")).state == "halted"
        with pytest.raises(RpcError) as err:
            buyer.place_order(pid("B200"), "buy", "1", 1)
        assert err.value.reason == "PRODUCT_HALTED"
        op.resume(pid("B200"))
        resting = [buyer.place_order(pid(s, 1), "buy", "1", 1) for s in ("H100", "B200")]
        account, cancelled = op.disable_account(
            next(a.account_id for a in op.list_accounts() if a.name == "buyer"))
        assert not account.enabled
        assert sorted(o.order_id for o in cancelled) == sorted(o.order_id for o in resting)
        with pytest.raises(RpcError) as err:
            buyer.place_order(pid("H100"), "buy", "1", 1)
        assert err.value.reason == "ACCOUNT_DISABLED"


def test_an_engine_takes_the_gateway_s_word_only_with_its_token(tmp_path: Path) -> None:
    with venue(tmp_path) as v:
        market(v)
        engine = v.engines[1]
        # the gateway's accounts are not the engine's: a token of the gateway is unknown
        with pytest.raises(RpcError) as err:
            Client(engine, TOKENS["seller"]).list_orders()
        assert err.value.reason == "UNAUTHENTICATED"
        for token in ("wrong", OPERATOR_TOKEN):
            ch = grpc.insecure_channel(engine)
            from spotex._proto.spotex.v1 import spotex_pb2 as pb
            from spotex._proto.spotex.v1 import spotex_pb2_grpc as pb_grpc
            md = (("authorization", f"Bearer {token}"), ("spotex-account", "2"),
                  ("spotex-roles", "seller"))
            if token == OPERATOR_TOKEN:
                # a real token's own account, whatever the metadata says
                r = pb_grpc.MarketStub(ch).ListOrders(pb.ListOrdersRequest(), metadata=md)
                assert list(r.orders) == []
            else:
                with pytest.raises(grpc.RpcError) as e:
                    pb_grpc.MarketStub(ch).ListOrders(pb.ListOrdersRequest(), metadata=md)
                assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
            ch.close()


def test_a_shard_keeps_its_id_base_over_a_restart_and_refuses_another(tmp_path: Path) -> None:
    data = tmp_path / "shard"
    with serving(data, shard_index=3, gateway_token=GATEWAY_TOKEN) as r:
        op = Client(r.target, OPERATOR_TOKEN)
        op.create_products(skus=["H100"], regions=["us-east"], from_hour=HOUR,
                           to_hour=HOUR + 1)
        token = op.create_account("s", ["seller"]).token
        seller = Client(r.target, token)
        seller.register_capacity("c", sku="H100", region="us-east", nodes=[("n0", 8)],
                                 from_hour=HOUR, to_hour=HOUR + 1)
        first = seller.place_order(pid("H100"), "sell", "2", 1, cluster_id="c")
        assert first.order_id == 3 << 48
    with serving(data, shard_index=3) as r:
        again = Client(r.target, token).place_order(
            pid("H100"), "sell", "2", 1, cluster_id="c")
        assert again.order_id == (3 << 48) + 1
    from spotex._core import JournalError
    with pytest.raises(JournalError, match="shard 3, not 4"), serving(data, shard_index=4):
        pass


@settings(max_examples=8, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.sampled_from(["H100", "B200"]), st.integers(0, 2),
                          st.sampled_from(["buy", "sell"]), st.integers(1, 4),
                          st.integers(1, 6)), min_size=1, max_size=25))
def test_two_shards_trade_exactly_as_one_engine(tmp_path_factory: pytest.TempPathFactory,
                                                 flow: list[tuple[str, int, str, int, int]]
                                                 ) -> None:
    """The same orders, one at a time, on one engine and on two shards behind a gateway:
    every order ends the same (state, fills' prices and quantities); only ids differ."""
    base = tmp_path_factory.mktemp("venues")

    def run(target: str) -> list[tuple[str, int, list[tuple[str, int]]]]:
        _, seller, buyer = market(Venue(target, {}))
        out = []
        for sku, h, side, price, qty in flow:
            who, terms = (seller, {"cluster_id": f"{sku}-c"}) if side == "sell" else (
                buyer, {})
            try:
                o = who.place_order(pid(sku, h), side, str(price), qty, **terms)
                out.append((o.state, o.filled, [(str(f.price), f.quantity) for f in o.fills]))
            except RpcError as err:
                out.append((err.reason, 0, []))
        return out
    with venue(base / "sharded") as v:
        sharded = run(v.target)
    with serving(base / "one", limits=LIMITS) as r:
        single = run(r.target)
    assert sharded == single


def test_a_gateway_without_its_token_or_shards_does_not_start(tmp_path: Path) -> None:
    from spotex.server.service import ListenError
    table = Routes([ShardSpec(1, ("127.0.0.1:1",))])

    async def start(token: str) -> ShardGateway:
        return await ShardGateway.start("127.0.0.1:0", table, token, tmp_path)
    with pytest.raises(ListenError, match="gateway-token"), on_thread(
            lambda: start(""), lambda g: g.stop()):
        pass
    with pytest.raises(RouteError, match="at least one shard"):
        Routes([])


def test_spotex_gateway_serves_until_sigterm_and_says_what_is_wrong_in_one_line(
        tmp_path: Path) -> None:
    import signal
    import subprocess
    import sys
    import time

    from spotex.cluster.nats import free_port
    spotex = str(Path(sys.executable).parent / "spotex")
    for args, says in (([], "Missing option '--shard'"),
                       (["--shard", "1=nohost"], "is not HOST:PORT"),
                       (["--shard", "1=127.0.0.1:1"], "--gateway-token")):
        out = subprocess.run([spotex, "gateway", "--data-dir", str(tmp_path / "g"), *args],
                             capture_output=True, text=True, timeout=60,
                             env={"PATH": "/usr/bin:/bin"})
        assert out.returncode != 0 and says in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
    with contextlib.ExitStack() as stack:
        engines = [stack.enter_context(serving(tmp_path / f"e{i}", shard_index=i,
                                               gateway_token=GATEWAY_TOKEN))
                   for i in (1, 2)]
        target = f"127.0.0.1:{free_port()}"
        proc = subprocess.Popen(
            [spotex, "gateway", "--listen", target, "--data-dir", str(tmp_path / "g"),
             "--shard", f"1={engines[0].target}", "--shard", f"2={engines[1].target}",
             "--route", "B200/us-east=2"],
            env={"PATH": "/usr/bin:/bin", "SPOTEX_GATEWAY_TOKEN": GATEWAY_TOKEN,
                 "SPOTEX_OPERATOR_TOKEN": OPERATOR_TOKEN},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            op = Client(target, OPERATOR_TOKEN)
            end = time.monotonic() + 30
            while True:
                try:
                    made = op.create_products(skus=["B200"], regions=["us-east"],
                                              from_hour=HOUR, to_hour=HOUR + 1)
                    break
                except RpcError:
                    assert time.monotonic() < end and proc.poll() is None, "not up"
                    time.sleep(0.1)
            assert [p.product_id for p in made] == [pid("B200")]
            assert [p.product_id for p in Client(engines[1].target, OPERATOR_TOKEN)
                    .list_products()] == [pid("B200")]
        finally:
            proc.send_signal(signal.SIGTERM)
            out = proc.communicate(timeout=30)[0]
        assert proc.returncode == 0, out


def _env() -> dict[str, str]:
    """A bare environment, but the spotex under test (PYTHONPATH, when the tests run
    with one)."""
    import os
    return {"PATH": "/usr/bin:/bin", **{k: v for k, v in os.environ.items()
                                        if k == "PYTHONPATH"}}


def test_a_gateway_with_another_token_than_its_engines_says_so_in_one_line(
        tmp_path: Path) -> None:
    """At start, when its engines answer: one line naming the engine, exit non-zero, and
    nothing written. An engine that refuses it later (started after the gateway): the
    call is refused SHARD_UNAVAILABLE saying so, not passed off as the caller's token."""
    import asyncio
    import subprocess
    import sys

    from spotex.cluster.engines import Engines, ShardError
    from spotex.server.accounts import Account
    spotex = str(Path(sys.executable).parent / "spotex")
    with contextlib.ExitStack() as stack:
        engines = [stack.enter_context(serving(tmp_path / f"e{i}", shard_index=i,
                                               gateway_token=GATEWAY_TOKEN))
                   for i in (1, 2)]
        started = time.monotonic()
        out = subprocess.run(
            [spotex, "gateway", "--listen", "127.0.0.1:0", "--data-dir", str(tmp_path / "g"),
             "--shard", f"1={engines[0].target}", "--shard", f"2={engines[1].target}",
             "--gateway-token", "not-the-engines-token"],
            capture_output=True, text=True, timeout=60, env=_env())
        assert time.monotonic() - started < 20
        assert out.returncode != 0, out.stderr
        assert "refuses the gateway's token" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
        assert not (tmp_path / "g").exists()

        async def call() -> bytes:
            shard = Engines(ShardSpec(1, (engines[0].target,)), "not-the-engines-token",
                            2.0, 1 << 20)
            try:
                return await shard.unary("spotex.v1.Market", "ListOrders", b"",
                                         Account(7, "", ["buyer"], ""), 5.0, command=False)
            finally:
                await shard.close()
        with pytest.raises(ShardError, match="refuses the gateway's token") as e:
            asyncio.run(call())
        assert e.value.reason == "SHARD_UNAVAILABLE"


def test_the_gateway_s_metrics_show_calls_leaders_failovers_and_shards_lost(
        tmp_path: Path) -> None:
    from test_metrics import _scrape, _total

    from spotex.cluster.nats import free_port
    gone = f"127.0.0.1:{free_port()}"  # an engine address no one serves
    with contextlib.ExitStack() as stack:
        one = stack.enter_context(serving(tmp_path / "e1", shard_index=1,
                                          gateway_token=GATEWAY_TOKEN, limits=LIMITS))
        lose = contextlib.ExitStack()
        stack.callback(lose.close)
        two = lose.enter_context(serving(tmp_path / "e2", shard_index=2,
                                         gateway_token=GATEWAY_TOKEN, limits=LIMITS))
        # shard 1 lists the lost engine first: the first call finds the other leading
        table = Routes([ShardSpec(1, (gone, one.target)), ShardSpec(2, (two.target,))],
                       ROUTES)
        gw, _ = stack.enter_context(on_thread(
            lambda: ShardGateway.start("127.0.0.1:0", table, GATEWAY_TOKEN,
                                       tmp_path / "gateway", OPERATOR_TOKEN, limits=LIMITS,
                                       failover_seconds=1.0, access_log=False,
                                       metrics_listen="127.0.0.1:0"),
            lambda g: g.stop(0.5)))
        v = Venue(f"127.0.0.1:{gw.port}", {1: one.target, 2: two.target})
        op, _, buyer = market(v)
        accounts = len(op.list_accounts())
        buyer.place_order(pid("H100"), "buy", "1.00", 1)
        buyer.place_order(pid("B200"), "buy", "1.00", 1)
        lose.close()  # shard 2's only engine: its calls are refused, nothing else
        with pytest.raises(RpcError, match="SHARD_UNAVAILABLE"):
            buyer.place_order(pid("B200"), "buy", "1.00", 1)
        buyer.place_order(pid("H100"), "buy", "1.00", 1)
        m = _scrape(f"http://127.0.0.1:{gw.metrics_port}/metrics")
    assert _total(m, "spotex_rpc_duration_seconds_count", method="Market/PlaceOrder",
                  code="OK") == 3
    assert _total(m, "spotex_rpc_duration_seconds_count", method="Market/PlaceOrder",
                  code="UNAVAILABLE") == 1
    assert _total(m, "spotex_gateway_shard_leader", shard="1", engine=one.target) == 1
    assert _total(m, "spotex_gateway_shard_leader", shard="1", engine=gone) == 0
    assert _total(m, "spotex_gateway_leader_changes_total", shard="1") == 1
    assert _total(m, "spotex_gateway_leader_changes_total", shard="2") == 0
    assert _total(m, "spotex_gateway_shard_unavailable_total", shard="2") == 1
    assert _total(m, "spotex_gateway_shard_unavailable_total", shard="1") == 0
    assert _total(m, "spotex_gateway_accounts") == accounts >= 2
    # none run here (tests/test_shard_auctions.py counts them)
    assert [v for lab, v in m["spotex_gateway_auctions_total"]
            if lab.get("outcome") == "cleared"] == [0]


# ---- client order ids and unknown outcomes ------------------------------------------------

def test_an_order_is_found_by_its_client_order_id_on_any_shard(tmp_path: Path) -> None:
    """Shards number their orders apart, so a lookup by client order id asks every one:
    the shard that has it answers; UNKNOWN_ORDER only when none has it and all could
    say. The SDK's resolution of an unknown outcome works through the gateway."""
    from test_unknown_outcome import UNKNOWN, Losing

    with contextlib.ExitStack() as stack:
        one = stack.enter_context(serving(tmp_path / "e1", shard_index=1,
                                          gateway_token=GATEWAY_TOKEN, limits=LIMITS))
        lose = contextlib.ExitStack()
        stack.callback(lose.close)
        two = lose.enter_context(serving(tmp_path / "e2", shard_index=2,
                                         gateway_token=GATEWAY_TOKEN, limits=LIMITS))
        table = Routes([ShardSpec(1, (one.target,)), ShardSpec(2, (two.target,))], ROUTES)
        gw, _ = stack.enter_context(on_thread(
            lambda: ShardGateway.start("127.0.0.1:0", table, GATEWAY_TOKEN,
                                       tmp_path / "gateway", OPERATOR_TOKEN, limits=LIMITS,
                                       failover_seconds=1.0, access_log=False),
            lambda g: g.stop(0.5)))
        v = Venue(f"127.0.0.1:{gw.port}", {1: one.target, 2: two.target})
        _, seller, buyer = market(v)
        placed = {s: buyer.place_order(pid(s), "buy", "1.00", 1, client_order_id=f"mine-{s}")
                  for s in ("H100", "B200")}
        for s, o in placed.items():
            assert o.order_id >> 48 == ROUTES[f"{s}/us-east"]
            assert buyer.get_order(client_order_id=f"mine-{s}") == o
        for who, cid in ((buyer, "nowhere"), (seller, "mine-H100")):  # ids are each account's
            with pytest.raises(RpcError) as err:
                who.get_order(client_order_id=cid)
            assert (err.value.code, err.value.reason) == (grpc.StatusCode.NOT_FOUND,
                                                          "UNKNOWN_ORDER")
        # an answer lost after the venue applied the order: found on its shard
        c = Client(v.target, TOKENS["buyer"], timeout=1)
        c._stubs["market"] = Losing(c._stubs["market"], "PlaceOrder", UNKNOWN, send=True)
        found = c.place_order(pid("B200", 1), "buy", "1.00", 1)
        assert found.order_id >> 48 == 2 and found.state == "open"
        c._stubs["market"] = Losing(c._stubs["market"], "PlaceOrder", UNKNOWN, send=False)
        with pytest.raises(RpcError) as err:
            c.place_order(pid("H100", 1), "buy", "1.00", 1)
        assert err.value.reason == "NOT_APPLIED"
        # shard 2's engine lost: shard 1's orders are still found, and a miss is not
        # UNKNOWN_ORDER (shard 2 could not say)
        lose.close()
        assert buyer.get_order(client_order_id="mine-H100") == placed["H100"]
        with pytest.raises(RpcError) as err:
            buyer.get_order(client_order_id="nowhere")
        assert err.value.reason == "SHARD_UNAVAILABLE"


class FakeEngine:
    """An engine on loopback that answers each Market method as ``answers`` says, in
    turn (the last one again after): response bytes, or (code, reason) to refuse. It
    counts the calls, and its health says it serves."""

    def __init__(self, answers: dict[str, list[bytes | tuple[grpc.StatusCode, str]]]) -> None:
        from concurrent.futures import ThreadPoolExecutor

        from grpc_health.v1 import health, health_pb2, health_pb2_grpc

        self.calls: dict[str, int] = dict.fromkeys(answers, 0)

        def handler(method: str) -> grpc.RpcMethodHandler:
            def answer(request: bytes, context: grpc.ServicerContext) -> bytes:
                self.calls[method] += 1
                todo = answers[method]
                got = todo.pop(0) if len(todo) > 1 else todo[0]
                if isinstance(got, tuple):
                    context.set_trailing_metadata((("spotex-reason", got[1]),))
                    context.abort(got[0], f"refused {got[1]}")
                return got
            return grpc.unary_unary_rpc_method_handler(answer)
        self.server = grpc.server(ThreadPoolExecutor(4))
        self.server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
            "spotex.v1.Market", {m: handler(m) for m in answers}),))
        serving_ = health.HealthServicer()
        serving_.set("spotex.v1.Market", health_pb2.HealthCheckResponse.SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(serving_, self.server)
        self.target = f"127.0.0.1:{self.server.add_insecure_port('127.0.0.1:0')}"
        self.server.start()

    def stop(self) -> None:
        self.server.stop(0)


def test_the_gateway_never_resends_a_command_whose_outcome_is_unknown(tmp_path: Path) -> None:
    """OUTCOME_UNKNOWN (status UNKNOWN) goes to the caller as the engine gave it, the
    command sent once; JOURNAL_UNAVAILABLE (surely not applied) is sent again."""
    from spotex._proto.spotex.v1 import spotex_pb2 as pb
    from spotex.client.calls import _Calls, _order_request

    order = pb.PlaceOrderResponse(order=pb.Order(
        order_id=(1 << 48) + 1, client_order_id="once", product_id=pid("H100"),
        side=pb.SIDE_BUY, order_type=pb.ORDER_TYPE_LIMIT, price_micros=1_000_000, quantity=1,
        remaining_quantity=1, state=pb.ORDER_STATE_OPEN, time_in_force=pb.TIME_IN_FORCE_GTC)
    ).SerializeToString()
    unknown = (grpc.StatusCode.UNKNOWN, "OUTCOME_UNKNOWN")
    refused = (grpc.StatusCode.UNAVAILABLE, "JOURNAL_UNAVAILABLE")
    engine = FakeEngine({"PlaceOrder": [unknown, refused, order]})
    try:
        table = Routes([ShardSpec(1, (engine.target,))], {"H100/us-east": 1})
        with on_thread(lambda: ShardGateway.start("127.0.0.1:0", table, GATEWAY_TOKEN, None,
                                                  OPERATOR_TOKEN, limits=LIMITS,
                                                  failover_seconds=5.0, access_log=False),
                       lambda g: g.stop(0.5)) as (gw, _):
            target = f"127.0.0.1:{gw.port}"
            token = Client(target, OPERATOR_TOKEN).create_account("b", ["buyer"]).token
            b = Client(target, token)
            body = _order_request(pid("H100"), "buy", "1.00", 1, client_order_id="once")
            with pytest.raises(RpcError) as err:
                b._call(_Calls.place_order(body))
            assert (err.value.code, err.value.reason) == (grpc.StatusCode.UNKNOWN,
                                                          "OUTCOME_UNKNOWN")
            assert engine.calls["PlaceOrder"] == 1
            # refused before it was applied: the gateway sends it again, and answers
            assert b._call(_Calls.place_order(body)).order_id == (1 << 48) + 1
            assert engine.calls["PlaceOrder"] == 3
    finally:
        engine.stop()


def _refused_soon(call: Callable[[], object], within: float = 5.0) -> RpcError:
    """The refusal of ``call`` (SHARD_UNAVAILABLE), answered within ``within`` seconds:
    well before the SDK's deadline (10 s) and the gateway's failover time (15 s)."""
    start = time.monotonic()
    with pytest.raises(RpcError) as err:
        call()
    took = time.monotonic() - start
    assert err.value.reason == "SHARD_UNAVAILABLE", err.value
    assert took < within, (took, err.value)
    return err.value


def test_a_shard_with_no_engine_running_is_named_at_once_by_the_venue_s_views(
        tmp_path: Path) -> None:
    """Every engine of shard 2 gone (its leader stopped, its standby's address served
    by no one): the views of the whole venue are refused at once naming shard 2, not at
    the caller's deadline; a mass cancel and the kill switch cancel on shard 1 and say
    shard 2's orders are not cancelled; shard 1 trades on, and its views by product
    answer."""
    from spotex.cluster.nats import free_port
    gone = f"127.0.0.1:{free_port()}"  # shard 2's standby: no one serves there
    with contextlib.ExitStack() as stack:
        one = stack.enter_context(serving(tmp_path / "e1", shard_index=1,
                                          gateway_token=GATEWAY_TOKEN, limits=LIMITS))
        lose = contextlib.ExitStack()
        stack.callback(lose.close)
        two = lose.enter_context(serving(tmp_path / "e2", shard_index=2,
                                         gateway_token=GATEWAY_TOKEN, limits=LIMITS))
        table = Routes([ShardSpec(1, (one.target,)), ShardSpec(2, (two.target, gone))],
                       ROUTES)
        gw, _ = stack.enter_context(on_thread(  # the default failover time: 15 s
            lambda: ShardGateway.start("127.0.0.1:0", table, GATEWAY_TOKEN,
                                       tmp_path / "gateway", OPERATOR_TOKEN, limits=LIMITS,
                                       access_log=False),
            lambda g: g.stop(0.5)))
        v = Venue(f"127.0.0.1:{gw.port}", {1: one.target, 2: two.target})
        op, seller, buyer = market(v)
        seller.place_order(pid("H100", 2), "sell", "2.00", 8, cluster_id="H100-c")
        buyer.place_order(pid("H100", 2), "buy", "2.00", 8, gang=8)  # an allocation
        mine = [buyer.place_order(pid(s, 1), "buy", "1", 1) for s in ("H100", "B200")]
        lose.close()  # shard 2 has no engine left

        for call in (buyer.list_orders, buyer.list_allocations, op.state_hash):
            err = _refused_soon(call)
            assert f"shard 2 has no engine running: none of {two.target}, {gone} answers" \
                in err.message, err.message
        assert "ask with a product_id" in _refused_soon(buyer.list_orders).message
        # the products: shard 1's page, then shard 2 named at once (with the token that
        # lists the shards after it); the streams over every shard end at once naming it
        err = _refused_soon(op.list_products)
        assert f"shard 2 has no engine running: none of {two.target}, {gone}" in err.message
        err = _refused_soon(lambda: next(iter(buyer.executions())))
        assert "shard 2 has no engine running" in err.message, err.message
        err = _refused_soon(lambda: next(iter(buyer.market_data(resubscribe=False))))
        assert "shard 2 has no engine running" in err.message, err.message
        # a stream of shard 1's products alone is served
        assert next(iter(buyer.market_data([pid("H100", 1)]))).product_id == pid("H100", 1)
        err = _refused_soon(buyer.cancel_all)
        assert "1 open order cancelled, on shard 1 only; call CancelAll again" in err.message
        assert buyer.get_order(mine[0].order_id).state == "cancelled"
        # shard 1 serves on: its views by product, new orders
        assert [o.order_id for o in buyer.list_orders(pid("H100", 1))] == [mine[0].order_id]
        assert [a.product_id for a in buyer.list_allocations(pid("H100", 2))] == [
            pid("H100", 2)]
        again = buyer.place_order(pid("H100", 1), "buy", "1", 1)
        # the kill switch: disabled at the gateway, cancelled where a shard serves
        buyer_id = next(a.account_id for a in op.list_accounts() if a.name == "buyer")
        err = _refused_soon(lambda: op.disable_account(buyer_id))
        assert (f"account {buyer_id} is disabled" in err.message
                and "1 open order cancelled, on shard 1 only" in err.message), err.message
        with pytest.raises(RpcError) as refused:
            buyer.place_order(pid("H100"), "buy", "1", 1)
        assert refused.value.reason == "ACCOUNT_DISABLED"
        op.enable_account(buyer_id)
        assert buyer.get_order(again.order_id).state == "cancelled"


class _Standby:
    """An engine that never takes over: its health says NOT_SERVING and it refuses every
    Market call as a standby does (JOURNAL_UNAVAILABLE)."""

    def __init__(self, server: grpc.aio.Server, port: int) -> None:
        self.server, self.target = server, f"127.0.0.1:{port}"

    @classmethod
    async def start(cls) -> _Standby:
        from grpc_health.v1 import health, health_pb2, health_pb2_grpc

        async def refuse(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            await context.abort(grpc.StatusCode.UNAVAILABLE, "a standby",
                                (("spotex-reason", "JOURNAL_UNAVAILABLE"),))
            raise AssertionError("abort raises")

        class Market(grpc.GenericRpcHandler):
            def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler:
                return grpc.unary_unary_rpc_method_handler(refuse)

        server = grpc.aio.server()
        checks = health.aio.HealthServicer()
        await checks.set("spotex.v1.Market", health_pb2.HealthCheckResponse.NOT_SERVING)
        health_pb2_grpc.add_HealthServicer_to_server(checks, server)
        server.add_generic_rpc_handlers([Market()])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        return cls(server, port)


def test_a_shard_whose_standby_never_takes_over_is_named_before_the_caller_s_deadline(
        tmp_path: Path) -> None:
    """A shard whose engine answers but never leads (a standby, the NATS quorum lost):
    the gateway waits for a failover, but answers SHARD_UNAVAILABLE naming the shard
    before the caller's deadline passes, not DEADLINE_EXCEEDED."""
    with contextlib.ExitStack() as stack:
        one = stack.enter_context(serving(tmp_path / "e1", shard_index=1,
                                          gateway_token=GATEWAY_TOKEN, limits=LIMITS))
        standby, _ = stack.enter_context(on_thread(_Standby.start,
                                                   lambda s: s.server.stop(0)))
        table = Routes([ShardSpec(1, (one.target,)), ShardSpec(2, (standby.target,))],
                       ROUTES)
        gw, _ = stack.enter_context(on_thread(  # failover time 15 s: the deadline is first
            lambda: ShardGateway.start("127.0.0.1:0", table, GATEWAY_TOKEN,
                                       tmp_path / "gateway", OPERATOR_TOKEN, limits=LIMITS,
                                       access_log=False),
            lambda g: g.stop(0.5)))
        op = Client(f"127.0.0.1:{gw.port}", OPERATOR_TOKEN, timeout=5)
        token = op.create_account("b", ["buyer"]).token
        buyer = Client(f"127.0.0.1:{gw.port}", token, timeout=5)
        for call in (buyer.list_orders,
                     lambda: buyer.place_order(pid("B200"), "buy", "1", 1)):
            with pytest.raises(RpcError) as err:
                call()
            assert err.value.reason == "SHARD_UNAVAILABLE", err.value
            assert "shard 2 has no engine serving after" in err.value.message
