"""Hostile input, role isolation, limits, slow consumers and journal failure, against real
servers on loopback."""

from __future__ import annotations

import asyncio
import math
import shutil
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import OPERATOR_TOKEN, Running, serving
from google.protobuf.descriptor import FieldDescriptor
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import spotex.server.host as host_module
from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex._proto.spotex.v1 import spotex_pb2_grpc as rpc
from spotex.client import Client, RpcError
from spotex.client.calls import _Calls, _order_request
from spotex.server.limits import Limits, TlsConfig
from spotex.tools.testing import ServerProcess

NOW_HOUR = int(time.time()) // 3600
C = grpc.StatusCode


def hour_id(h: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(h * 3600, dt.UTC).strftime("%Y-%m-%dT%H")


class World:
    """A market with one account per role, and the raw stubs a generic client uses."""

    def __init__(self, r: Running) -> None:
        self.r = r
        op = Client(r.target, OPERATOR_TOKEN)
        self.pid = op.create_products(skus=["H100-SXM"], regions=["us-east"],
                                      from_hour=NOW_HOUR + 3, to_hour=NOW_HOUR + 6)[0].product_id
        self.pid2 = f"H100-SXM/us-east/{hour_id(NOW_HOUR + 5)}"
        self.tokens = {"none": "", "operator": OPERATOR_TOKEN}
        for role in ("buyer", "seller", "other"):
            self.tokens[role] = op.create_account(role, ["seller" if role == "seller" else
                                                         "buyer"]).token
        self.client = {k: Client(r.target, t) for k, t in self.tokens.items() if t}
        self.client["seller"].register_capacity("c1", sku="H100-SXM", region="us-east",
                                                nodes=[("n0", 8), ("n1", 8)],
                                                from_hour=NOW_HOUR, to_hour=NOW_HOUR + 24)
        self.channel = grpc.insecure_channel(r.target)
        self.market = rpc.MarketStub(self.channel)
        self.operator = rpc.OperatorStub(self.channel)
        self.n = 0

    def md(self, role: str) -> tuple[tuple[str, str], ...]:
        t = self.tokens[role]
        return (("authorization", f"Bearer {t}"),) if t else ()

    def fresh_order(self) -> int:
        return self.client["buyer"].place_order(self.pid, "buy", "1.00", 1).order_id

    def unique(self) -> str:
        self.n += 1
        return f"x{self.n}"

    def spare_account(self) -> int:
        """An account of its own for the operator's account calls to change."""
        return self.client["operator"].create_account(self.unique(), ["buyer"]).account_id


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    # no clock ticks here, so the state hash moves only when a command is accepted
    limits = Limits(orders_per_second=10**6, order_burst=10**6, max_list=50, max_string=64)
    with serving(tmp_path_factory.mktemp("hardening"), tick_seconds=3600, limits=limits) as r:
        yield World(r)


def call(w: World, stub: str, method: str, request: Any, role: str) -> C:
    """The status code of one call; a server stream counts as OK once it stays open."""
    fn = getattr(getattr(w, stub), method)
    try:
        if method.startswith("Stream"):
            it = fn(request, metadata=w.md(role), timeout=0.5)
            next(iter(it), None)
        elif method == "SubmitOrders":
            list(fn(iter([request]), metadata=w.md(role), timeout=5))
        else:
            fn(request, metadata=w.md(role), timeout=5)
    except grpc.RpcError as err:
        code: C = err.code()
        return C.OK if code == C.DEADLINE_EXCEEDED and method.startswith("Stream") else code
    return C.OK


ROLES = ("none", "buyer", "seller", "operator", "other")
UN, OK, NO, BAD = C.UNAUTHENTICATED, C.OK, C.PERMISSION_DENIED, C.INVALID_ARGUMENT


def matrix(w: World) -> list[tuple[str, str, Callable[[], Any], tuple[C, ...]]]:
    """(service, RPC, request builder, expected code for none/buyer/seller/operator/other)."""
    bid = lambda: pb.PlaceOrderRequest(product_id=w.pid, side=pb.SIDE_BUY,  # noqa: E731
                                       price_micros=1_000_000, quantity=1)
    everyone = (UN, OK, OK, OK, OK)
    ops = (UN, NO, NO, OK, NO)
    return [
        ("market", "ListProducts", pb.ListProductsRequest, everyone),
        ("market", "RegisterCapacity", lambda: pb.RegisterCapacityRequest(
            cluster_id=w.unique(), sku="H100-SXM", region="us-east",
            nodes=[pb.Node(node_id="n", gpus=8)], from_hour=NOW_HOUR, to_hour=NOW_HOUR + 1),
         (UN, NO, OK, NO, NO)),
        ("market", "WithdrawCapacity", lambda: pb.WithdrawCapacityRequest(
            cluster_id="c1", from_hour=NOW_HOUR + 20, to_hour=NOW_HOUR + 21),
         (UN, NO, OK, NO, NO)),
        ("market", "PlaceOrder", bid, (UN, OK, NO, NO, OK)),
        ("market", "CancelOrder", lambda: pb.CancelOrderRequest(order_id=w.fresh_order()),
         (UN, OK, NO, NO, NO)),
        ("market", "AmendOrder", lambda: pb.AmendOrderRequest(order_id=w.fresh_order(),
                                                              price_micros=1_010_000),
         (UN, OK, NO, NO, NO)),
        ("market", "GetOrder", lambda: pb.GetOrderRequest(order_id=w.fresh_order()),
         (UN, OK, NO, NO, NO)),
        ("market", "ListOrders", pb.ListOrdersRequest, everyone),
        ("market", "GetBook", lambda: pb.GetBookRequest(product_id=w.pid), everyone),
        ("market", "ListAllocations", pb.ListAllocationsRequest, everyone),
        ("market", "StreamMarketData", lambda: pb.StreamMarketDataRequest(product_ids=[w.pid]),
         everyone),
        ("market", "StreamExecutions", pb.StreamExecutionsRequest, everyone),
        ("market", "SubmitOrders", lambda: pb.SubmitOrdersRequest(orders=[bid()]),
         (UN, OK, OK, NO, OK)),
        ("operator", "CreateProducts", lambda: pb.CreateProductsRequest(
            skus=["H200"], regions=["us-east"], from_hour=NOW_HOUR + 3, to_hour=NOW_HOUR + 4,
            tick_micros=10_000, lot=1), ops),
        ("operator", "CreateAccount", lambda: pb.CreateAccountRequest(
            name="n", roles=[pb.ROLE_BUYER]), ops),
        ("operator", "Halt", lambda: pb.ProductRequest(product_id=w.pid2), ops),
        ("operator", "Resume", lambda: pb.ProductRequest(product_id=w.pid2), ops),
        ("operator", "GetStateHash", pb.GetStateHashRequest, ops),
        ("operator", "TakeSnapshot", pb.TakeSnapshotRequest, ops),
        ("operator", "CloseProduct", lambda: pb.ProductRequest(product_id=w.pid2), ops),
        ("market", "CancelAll", pb.CancelAllRequest, (UN, OK, OK, NO, OK)),
        ("market", "PlaceBasket", lambda: pb.PlaceBasketRequest(legs=[bid()]),
         (UN, OK, NO, NO, OK)),
        ("market", "PlaceOneOf", lambda: pb.PlaceOneOfRequest(alternatives=[
            pb.PlaceOrderRequest(product_id=w.pid, side=pb.SIDE_BUY, price_micros=1_000_000,
                                 quantity=1, hours=2, time_in_force=pb.TIME_IN_FORCE_IOC)]),
         (UN, OK, NO, NO, OK)),
        ("market", "PlaceAskRange", lambda: pb.PlaceAskRangeRequest(ask=pb.PlaceOrderRequest(
            product_id=w.pid, side=pb.SIDE_SELL, price_micros=9_000_000, quantity=1,
            cluster_id="c1"), hours=2), (UN, NO, OK, NO, NO)),
        # whoever holds an allocation may resell it; holding none of that order, refused
        ("market", "Resell", lambda: pb.ResellRequest(order_id=w.fresh_order(),
                                                      price_micros=9_000_000),
         (UN, BAD, BAD, NO, BAD)),
        # no auction has run in this world yet: none to show, whoever asks
        ("market", "GetAuctionResult", pb.GetAuctionResultRequest,
         (UN, C.NOT_FOUND, C.NOT_FOUND, C.NOT_FOUND, C.NOT_FOUND)),
        ("market", "ListAuctions", pb.ListAuctionsRequest, everyone),
        ("market", "GetIndicativeAuction", lambda: pb.GetIndicativeAuctionRequest(
            from_hour=NOW_HOUR + 30, to_hour=NOW_HOUR + 31), everyone),
        ("operator", "RunAuction", lambda: pb.RunAuctionRequest(
            from_hour=NOW_HOUR + 30, to_hour=NOW_HOUR + 31, time_limit_ms=1000), ops),
        ("operator", "ListAccounts", pb.ListAccountsRequest, ops),
        # prices: public to every account
        ("market", "ListTrades", lambda: pb.ListTradesRequest(product_id=w.pid), everyone),
        ("market", "ListCandles", lambda: pb.ListCandlesRequest(product_id=w.pid,
                                                                interval="1h"), everyone),
        ("market", "GetCurve", lambda: pb.GetCurveRequest(sku="H100-SXM", region="us-east"),
         everyone),
        ("market", "GetIndex", lambda: pb.GetIndexRequest(sku="H100-SXM", region="us-east"),
         everyone),
        ("market", "ListIndex", lambda: pb.ListIndexRequest(sku="H100-SXM", region="us-east"),
         everyone),
        # money: anyone's own balance and transfers; the operator moves money
        ("market", "GetBalance", pb.GetBalanceRequest, everyone),
        ("market", "ListTransfers", pb.ListTransfersRequest, everyone),
        ("operator", "Deposit", lambda: pb.DepositRequest(account_id=w.spare_account(),
                                                          amount_micros=1_000_000), ops),
        # the spare account has no money to withdraw: refused for want of it
        ("operator", "Withdraw", lambda: pb.WithdrawRequest(account_id=w.spare_account(),
                                                            amount_micros=10**15),
         (UN, NO, NO, C.FAILED_PRECONDITION, NO)),
        ("operator", "SetCreditLimit", lambda: pb.SetCreditLimitRequest(
            account_id=w.spare_account(), credit_limit_micros=5_000_000), ops),
        ("operator", "SetFees", lambda: pb.SetFeesRequest(account_id=0), ops),
        # moving money between shards is a shard gateway's alone: even an operator is refused
        ("operator", "MoveMoney", lambda: pb.MoveMoneyRequest(
            step=pb.MOVE_STEP_OUT, account_id=w.spare_account(), amount_micros=1,
            other_shard=2), (UN, NO, NO, NO, NO)),
        ("operator", "ListMoves", pb.ListMovesRequest, (UN, NO, NO, NO, NO)),
        ("operator", "DisableAccount", lambda: pb.AccountRequest(account_id=w.spare_account()),
         ops),
        ("operator", "EnableAccount", lambda: pb.AccountRequest(account_id=w.spare_account()),
         ops),
        ("operator", "RotateToken", lambda: pb.AccountRequest(account_id=w.spare_account()),
         ops),
        ("operator", "RevokeToken", lambda: pb.AccountRequest(account_id=w.spare_account()),
         ops),
    ]


def test_every_rpc_for_every_role(world: World) -> None:
    names = {m.name for s in pb.DESCRIPTOR.services_by_name.values() for m in s.methods}
    rows = matrix(world)
    assert {r[1] for r in rows} == names, "the matrix must cover every RPC"
    got = {}
    for service, method, build, expected in rows:
        for role, want in zip(ROLES, expected, strict=True):
            got[(method, role)] = call(world, service, method, build(), role)
            assert got[(method, role)] == want, (method, role, got[(method, role)])


# ---- requests generated from the .proto descriptors --------------------------------

INTS = {FieldDescriptor.TYPE_INT64: (-(2**63), 2**63 - 1),
        FieldDescriptor.TYPE_UINT64: (0, 2**64 - 1),
        FieldDescriptor.TYPE_INT32: (-(2**31), 2**31 - 1),
        FieldDescriptor.TYPE_UINT32: (0, 2**32 - 1)}


def message(desc: Any, w: World, depth: int = 0) -> st.SearchStrategy[Any]:
    """Any message of this type: extreme integers, empty and huge strings, unknown enum
    values, real and foreign ids."""
    def field_value(f: Any) -> st.SearchStrategy[Any]:
        if f.type in INTS:
            lo, hi = INTS[f.type]
            return st.one_of(st.sampled_from([0, 1, -1 if lo < 0 else 2, lo, hi]),
                             st.integers(lo, hi), st.integers(1, 20) if lo >= 0
                             else st.integers(-5, 3_000_000))
        if f.type == FieldDescriptor.TYPE_BOOL:
            return st.booleans()
        if f.type == FieldDescriptor.TYPE_STRING:
            return st.one_of(st.sampled_from(["", w.pid, "c1", "n0", "x" * 100_000,
                                              "H100-SXM", "us-east", "\u0000\u202e"]),
                             st.text(max_size=30))
        if f.type == FieldDescriptor.TYPE_ENUM:
            return st.one_of(st.sampled_from([v.number for v in f.enum_type.values]),
                             st.integers(-3, 1000))
        if f.type == FieldDescriptor.TYPE_MESSAGE:
            if depth > 2:
                return st.none()
            return message(f.message_type, w, depth + 1)
        return st.none()

    fields = {}
    for f in desc.fields:
        v = field_value(f)
        is_repeated = f.is_repeated
        fields[f.name] = st.lists(v, max_size=3) if is_repeated else v
    cls = pb.__dict__.get(desc.name)

    def build(values: dict[str, Any]) -> Any:
        kwargs = {k: v for k, v in values.items() if v is not None}
        return cls(**kwargs)
    return st.fixed_dictionaries(fields).map(build)


DOCUMENTED = {C.OK, C.INVALID_ARGUMENT, C.NOT_FOUND, C.ALREADY_EXISTS,
              C.FAILED_PRECONDITION, C.PERMISSION_DENIED, C.UNAUTHENTICATED,
              C.RESOURCE_EXHAUSTED}
UNARY = [(svc, m) for svc, sd in (("market", "Market"), ("operator", "Operator"))
         for m in pb.DESCRIPTOR.services_by_name[sd].methods
         if not m.server_streaming and not m.client_streaming]
# what may change the venue when it succeeds (DisableAccount cancels the account's orders)
MUTATING = {"RegisterCapacity", "WithdrawCapacity", "PlaceOrder", "CancelOrder", "AmendOrder",
            "CreateProducts", "Halt", "Resume", "CloseProduct", "CancelAll", "PlaceAskRange",
            "PlaceOneOf", "PlaceBasket", "Resell", "DisableAccount", "RunAuction",
            "Deposit", "Withdraw", "SetCreditLimit", "SetFees", "MoveMoney"}


@settings(max_examples=120, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_generated_requests_get_documented_codes_and_change_nothing_when_refused(
        world: World, data: st.DataObject) -> None:
    service, method = data.draw(st.sampled_from(UNARY))
    role = data.draw(st.sampled_from(ROLES))
    request = data.draw(message(method.input_type, world))
    state = world.client["operator"].state_hash
    before = state()[1]
    code = call(world, service, method.name, request, role)
    assert code in DOCUMENTED, (method.name, role, code, request)
    health = health_pb2_grpc.HealthStub(world.channel)
    assert health.Check(health_pb2.HealthCheckRequest(), timeout=5).status == (
        health_pb2.HealthCheckResponse.SERVING)
    after = state()[1]
    if code != C.OK or method.name not in MUTATING:
        assert after == before, (method.name, role, code)


# ---- limits --------------------------------------------------------------------------

@pytest.fixture()
def tight(tmp_path: Path) -> Iterator[Running]:
    limits = Limits(orders_per_second=20, order_burst=10, max_open_orders_per_account=5,
                    max_message_bytes=64 << 10, max_list=100)
    with serving(tmp_path, tick_seconds=3600, limits=limits) as r:
        yield r


def _buyer(r: Running | ServerProcess) -> tuple[Client, str]:
    op = Client(r.target, OPERATOR_TOKEN)
    pid = op.create_products(skus=["H100-SXM"], regions=["us-east"], from_hour=NOW_HOUR + 3,
                             to_hour=NOW_HOUR + 4)[0].product_id
    return Client(r.target, op.create_account("b", ["buyer"]).token), pid


def test_limits_refuse_with_clear_codes(tight: Running) -> None:
    b, pid = _buyer(tight)
    placed, errors = [], []
    started = time.monotonic()
    while len(errors) < 3 and len(placed) < 60:
        try:
            placed.append(b.place_order(pid, "buy", "1.00", 1, tif="ioc"))
        except RpcError as err:
            errors.append(err)
    elapsed = time.monotonic() - started
    # the burst is 10, plus whatever 20/s refilled while the calls ran (a slow
    # machine earns a token or two); then refusals with a retry hint
    assert 10 <= len(placed) <= 10 + math.ceil(elapsed * 20)
    assert len(errors) == 3 and {e.reason for e in errors} == {"RATE_LIMITED"}
    assert all(e.retry_after is not None and e.retry_after > 0 for e in errors)
    assert all(e.code == C.RESOURCE_EXHAUSTED for e in errors)
    time.sleep(0.6)  # 20/s refills a dozen tokens
    rest = [b.place_order(pid, "buy", "1.00", 1) for _ in range(5)]
    with pytest.raises(RpcError) as info:
        b.place_order(pid, "buy", "1.00", 1)
    assert (info.value.code, info.value.reason) == (C.RESOURCE_EXHAUSTED, "TOO_MANY_OPEN_ORDERS")
    b.cancel_order(rest[0].order_id)
    time.sleep(0.2)
    b.place_order(pid, "buy", "1.00", 1)  # room again
    with pytest.raises(RpcError) as info:
        b.get_book("x" * 1000)
    assert (info.value.code, info.value.reason) == (C.INVALID_ARGUMENT, "FIELD_TOO_LONG")
    with pytest.raises(RpcError) as info:
        b.list_orders("y" * 100_000)  # larger than the 64 KiB message limit
    assert info.value.code == C.RESOURCE_EXHAUSTED


def test_rate_limit_carries_a_retry_hint(tight: Running) -> None:
    b, pid = _buyer(tight)
    stub = rpc.MarketStub(grpc.insecure_channel(tight.target))
    md = b._md
    req = pb.PlaceOrderRequest(product_id=pid, side=pb.SIDE_BUY, price_micros=1_000_000,
                               quantity=1, time_in_force=pb.TIME_IN_FORCE_IOC)
    for _ in range(30):
        try:
            stub.PlaceOrder(req, metadata=md, timeout=5)
        except grpc.RpcError as err:
            trailing = dict(err.trailing_metadata())
            assert trailing["spotex-reason"] == "RATE_LIMITED"
            assert int(trailing["retry-after-ms"]) > 0
            return
    raise AssertionError("never rate limited")


def test_a_command_past_its_deadline_is_not_applied(tight: Running) -> None:
    b, pid = _buyer(tight)
    gw = tight.server.host
    block = threading.Event()
    gw.submit(block.wait)  # hold the writer
    with pytest.raises(RpcError) as info:
        Client(tight.target, b._md[0][1][7:], timeout=0.3).place_order(
            pid, "buy", "1.00", 1, client_order_id="late")
    assert info.value.code == C.DEADLINE_EXCEEDED
    block.set()
    gw.call(lambda: None)
    assert all(o.client_order_id != "late" for o in b.list_orders())


# ---- journal failure -------------------------------------------------------------------

def _newest_segment(data: Path) -> Path:
    return sorted((data / host_module.JOURNAL).glob("*"))[-1]


def test_journal_failure_stops_acceptance_then_resumes(tmp_path: Path) -> None:
    """A disk that refuses writes, for real: the server's file-size limit is lowered from
    outside (prlimit) to what its journal holds, so the next write of a record fails with
    EFBIG as on a full disk. Nothing is acknowledged meanwhile; once the limit is lifted
    the server resumes on its own, and the journal replays to exactly the live state."""
    import resource

    server = ServerProcess(tmp_path, OPERATOR_TOKEN)
    try:
        b, pid = _buyer(server)
        kept = b.place_order(pid, "buy", "1.00", 2)
        limit = _newest_segment(tmp_path).stat().st_size
        old = resource.prlimit(server.pid, resource.RLIMIT_FSIZE)
        resource.prlimit(server.pid, resource.RLIMIT_FSIZE, (limit, old[1]))  # soft limit
        # the order whose write fails: sent to the journal, never confirmed; the orders
        # after it are refused before anything is applied
        body = _order_request(pid, "buy", "1.10", 1, client_order_id="lost")
        with pytest.raises(RpcError) as info:
            b._call(_Calls.place_order(body))
        assert (info.value.code, info.value.reason) == (C.UNKNOWN, "OUTCOME_UNKNOWN")
        for _ in range(3):
            with pytest.raises(RpcError) as info:
                b._call(_Calls.place_order(
                    _order_request(pid, "buy", "1.10", 1, client_order_id="refused")))
            assert info.value.code == C.UNAVAILABLE
            assert info.value.reason == "JOURNAL_UNAVAILABLE"
            time.sleep(0.6)  # the ticker tries to resume: still full
        resource.prlimit(server.pid, resource.RLIMIT_FSIZE, old)
        deadline = time.monotonic() + 10
        while True:
            try:
                b.place_order(pid, "buy", "1.20", 1)
                break
            except RpcError:
                assert time.monotonic() < deadline, "never resumed"
                time.sleep(0.1)
        orders = b.list_orders(pid)
        assert kept.order_id in {o.order_id for o in orders}
        assert "lost" not in {o.client_order_id for o in orders}, "an unacked order survived"
        # and the venue says so when asked by the client order id
        with pytest.raises(RpcError) as info:
            b._call(_Calls.get_order_by_client_id("lost"))
        assert info.value.reason == "UNKNOWN_ORDER"
        seq, h = Client(server.target, OPERATOR_TOKEN).state_hash()
    finally:
        assert server.stop() == 0, server.text()
    assert "refusing commands until it recovers" in server.text()
    assert "journal writable again" in server.text()
    # after the failure the journal on disk replays to exactly the live state
    from spotex._core import replay_journal

    engine, last, _, replayed_hash = replay_journal(tmp_path / host_module.JOURNAL)
    assert replayed_hash == h and last >= seq


# ---- TLS ---------------------------------------------------------------------------------

@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_with_and_without_client_certificates(tmp_path: Path) -> None:
    def make(name: str, *extra: str) -> tuple[Path, Path]:
        key, cert = tmp_path / f"{name}.key", tmp_path / f"{name}.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                        "1", "-keyout", str(key), "-out", str(cert), "-subj", f"/CN={name}",
                        *extra], check=True, capture_output=True)
        return cert, key
    cert, key = make("localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1")
    ccert, ckey = make("client")
    with serving(tmp_path / "a", tls=TlsConfig(cert, key)) as r:
        assert Client(r.target, OPERATOR_TOKEN, tls_ca=cert.read_bytes()).list_products() == []
        with pytest.raises(RpcError) as info:
            Client(r.target, OPERATOR_TOKEN, timeout=3).list_products()  # plaintext
        assert info.value.code == C.UNAVAILABLE
    with serving(tmp_path / "b", tls=TlsConfig(cert, key, client_ca=ccert)) as r:
        ok = Client(r.target, OPERATOR_TOKEN, tls_ca=cert.read_bytes(),
                    tls_cert=ccert.read_bytes(), tls_key=ckey.read_bytes())
        assert ok.list_products() == []
        with pytest.raises(RpcError):
            Client(r.target, OPERATOR_TOKEN, tls_ca=cert.read_bytes(), timeout=3).list_products()


# ---- slow consumers ------------------------------------------------------------------------

def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def test_soak_with_slow_subscribers_keeps_memory_flat(tmp_path: Path) -> None:
    """Sustained order traffic for a fixed time while subscribers that never read hang on;
    the server's resident memory is sampled and must level off, and a stalled subscriber
    is told it fell behind."""
    server = ServerProcess(tmp_path, OPERATOR_TOKEN, "--subscriber-queue", "2000",
                           "--fsync", "none")
    proc, target = server.proc, server.target
    try:
        b, pid = _buyer(Running(None, target, None))  # type: ignore[arg-type]
        # subscribers that never read, on channels that do not grow their receive window,
        # so the server sees them stall instead of the client library buffering for them
        slow_channel = grpc.insecure_channel(target, options=[("grpc.http2.bdp_probe", 0)])
        md = (("authorization", f"Bearer {OPERATOR_TOKEN}"),)
        slow = [rpc.MarketStub(slow_channel).StreamMarketData(
            pb.StreamMarketDataRequest(product_ids=[pid]), metadata=md, timeout=60)
            for _ in range(3)]
        for s in slow:
            assert next(s).updates[0].WhichOneof("payload") == "snapshot"
        # load that makes market data but keeps no new records: re-pricing one order
        order = b.place_order(pid, "buy", "1.00", 1)
        stub = rpc.MarketStub(grpc.insecure_channel(target))
        samples, stop = [], time.monotonic() + 10
        i = 1
        while time.monotonic() < stop:
            stub.AmendOrder(pb.AmendOrderRequest(order_id=order.order_id,
                                                 price_micros=1_000_000 + (i % 2) * 10_000),
                            metadata=b._md, timeout=5)
            i += 1
            if i % 100 == 0:
                samples.append(_rss_kb(proc.pid))
        assert i >= 2_000, "not enough load to overflow the queue and the transport"
        third = len(samples) // 3
        early, late = max(samples[:third]), max(samples[-third:])
        assert late < early + 40_000, f"resident memory kept growing: {samples}"
        with pytest.raises(grpc.RpcError) as info:
            for _ in slow[0]:
                pass
        assert info.value.code() == C.RESOURCE_EXHAUSTED, info.value
        assert dict(info.value.trailing_metadata())["spotex-reason"] == "SUBSCRIBER_LAGGED"
    finally:
        server.stop(10)


def test_a_subscriber_backlog_is_bounded_in_updates_then_ends_clearly() -> None:
    from spotex.server.service import Backlog

    async def scenario() -> None:
        q = Backlog(limit=10)
        q.offer(b"ab", 3)
        q.offer(b"cd", 4)
        assert await q.take(100) == b"abcd" and q.size == 0
        # one round bigger than what is left: the subscriber has fallen behind
        q.offer(b"e", 8)
        q.offer(b"f", 3)  # over the bound: marks it lagged, keeps nothing more
        q.offer(b"g", 1)  # after that nothing is kept at all
        assert q.lagged and q.size == 8
        assert await q.take(5) == b"e"  # whole rounds, about `most` updates at a time
        assert await q.take(5) is None
        # a snapshot goes in whatever its size; a waiting reader wakes on an offer or a lag
        r = Backlog(limit=2)
        r.offer(b"snapshot", 50, force=True)
        assert await r.take(100) == b"snapshot"
        waiting = asyncio.ensure_future(r.take(10))
        await asyncio.sleep(0)
        r.offer(b"h", 1)
        assert await waiting == b"h"
        waiting = asyncio.ensure_future(r.take(10))
        await asyncio.sleep(0)
        r.lag()
        assert await waiting is None

    asyncio.run(scenario())
