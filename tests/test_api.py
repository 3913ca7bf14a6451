"""The Python surface as users see it: exceptions, the batch path, money conversion."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import spotex
from spotex import batch
from spotex._core import flow, workload

HOUR = spotex.MICROS_PER_HOUR
T0 = 490_000 * HOUR
DELIVERY = 490_034
PID = "B200/eu-west/" + __import__("datetime").datetime.fromtimestamp(
    DELIVERY * 3600, __import__("datetime").UTC).strftime("%Y-%m-%dT%H")


def market() -> spotex.Engine:
    e = spotex.Engine()
    e.create_product(PID, tick=10_000, lot=1, open_at=T0, close_at=(DELIVERY - 1) * HOUR, ts=T0)
    e.register_capacity(7, "fra-1", sku="B200", region="eu-west",
                        nodes=[("n0", 8), ("n1", 8)], from_hour=490_000, to_hour=490_100, ts=T0)
    return e


def test_rejections_raise_named_exceptions_and_change_nothing() -> None:
    e = market()
    e.place(7, PID, "sell", 6_000_000, 4, ts=T0 + 1, cluster_id="fra-1")
    before = e.state_hash()
    cases: list[tuple[dict[str, object], type[Exception], str]] = [
        ({"price": 6_000_001}, spotex.InvalidOrderError, "PRICE_OFF_TICK"),
        ({"qty": 0}, spotex.InvalidOrderError, "NON_POSITIVE_QUANTITY"),
        ({"gang": 3, "qty": 3}, spotex.InvalidOrderError, "INVALID_GANG"),
        ({"post_only": True, "price": 6_000_000}, spotex.PostOnlyWouldCrossError,
         "POST_ONLY_WOULD_CROSS"),
        ({"cluster_id": "fra-1"}, spotex.CapacityError, "CLUSTER_NOT_ALLOWED"),
        ({"tif": "nope"}, spotex.InvalidOrderError, "INVALID_ARGUMENT"),
    ]
    for kw, exc, reason in cases:
        args: dict[str, object] = {"price": 5_000_000, "qty": 1, **kw}
        with pytest.raises(exc) as info:
            e.place(9, PID, "buy", args.pop("price"), args.pop("qty"),  # type: ignore[arg-type]
                    ts=T0 + 1, **args)  # type: ignore[arg-type]
        assert info.value.reason == reason  # type: ignore[attr-defined]
        assert isinstance(info.value, spotex.SpotexError)
    with pytest.raises(spotex.UnknownProductError):
        e.place(9, "B200/eu-west/2030-01-01T00", "buy", 5_000_000, 1, ts=T0 + 1)
    with pytest.raises(spotex.NotOwnerError):
        e.cancel(9, 1, ts=T0 + 1)
    with pytest.raises(spotex.UnknownOrderError):
        e.cancel(7, 99, ts=T0 + 1)
    assert e.state_hash() == before


def test_a_trade_hands_the_buyer_concrete_gpus() -> None:
    e = market()
    e.place(7, PID, "sell", 6_000_000, 12, ts=T0 + 1, cluster_id="fra-1")
    events = e.place(9, PID, "buy", 6_100_000, 8, ts=T0 + 2, gang=8)
    kinds = [ev.kind for ev in events]
    assert kinds == ["accepted", "trade", "allocated"]
    a = events[2].allocation
    assert a is not None
    assert (a.buyer, a.seller, a.qty, a.price) == (9, 7, 8, 6_000_000)
    assert a.slots == [("n0", list(range(8)))]
    assert [x.trade_id for x in e.allocations(9)] == [a.trade_id]
    u = e.utilisation("fra-1", DELIVERY)
    assert u is not None and (u.sold, u.offered, u.idle) == (8, 4, 4)
    # a second whole node is no longer there: the 4 left cannot hold a gang of 8
    got = e.place(9, PID, "buy", 6_100_000, 8, ts=T0 + 3, gang=8, tif="ioc")
    assert [ev.kind for ev in got] == ["accepted", "cancelled"]


def test_expiry_before_a_refused_command_travels_on_the_exception() -> None:
    e = market()
    oid = e.place(9, PID, "buy", 5_000_000, 1, ts=T0 + 1, tif="gtd", expire_at=T0 + 5)[0].order_id
    with pytest.raises(spotex.UnknownOrderError) as info:
        e.cancel(9, oid, ts=T0 + 10)
    assert [(ev.kind, ev.order_id) for ev in info.value.events] == [  # type: ignore[attr-defined]
        ("expired", oid)]


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32), ops=st.integers(1, 3_000))
def test_batch_path_equals_per_call_path(seed: int, ops: int) -> None:
    products, clusters, records = workload(seed=seed, ops=ops, products=3, sellers=2,
                                           nodes_per_cluster=4, max_live=50)

    def fresh() -> spotex.Engine:
        e = spotex.Engine()
        for pid, tick, lot, o, c in products:
            e.create_product(pid, tick=tick, lot=lot, open_at=o, close_at=c, ts=o)
        for acct, cid, sku, region, nodes, h0, h1 in clusters:
            e.register_capacity(acct, cid, sku=sku, region=region, nodes=nodes, from_hour=h0,
                                to_hour=h1, ts=products[0][3])
        return e

    a, b = fresh(), fresh()
    events = batch.apply(a, records)
    per_call: list[tuple[int, str]] = []
    cmds = np.frombuffer(records, dtype=batch.COMMAND_DTYPE)
    for i, r in enumerate(cmds):
        try:
            if r["kind"] == batch.PLACE:
                got = b.place(int(r["account"]), products[r["product"]][0],
                              "sell" if r["side"] else "buy", int(r["price"]), int(r["qty"]),
                              ts=int(r["ts"]), tif="ioc" if r["tif"] == batch.IOC else "gtc",
                              cluster_id=None if r["cluster"] == batch.NO_CLUSTER
                              else clusters[r["cluster"]][1], gang=int(r["gang"]) or 1)
            elif r["kind"] == batch.CANCEL:
                got = b.cancel(int(r["account"]), int(r["order_id"]), ts=int(r["ts"]))
            else:
                got = b.advance_time(int(r["ts"]))
            per_call += [(i, ev.kind) for ev in got]
        except spotex.SpotexError as err:
            per_call += [(i, ev.kind) for ev in err.events]  # type: ignore[attr-defined]
            per_call.append((i, "rejected"))
    from_batch = [(int(ev["command"]), batch.EVENT_KINDS[int(ev["kind"])]) for ev in events]
    assert from_batch == per_call
    assert a.state_hash() == b.state_hash()


def test_malformed_batch_records_are_rejected_not_applied() -> None:
    e = market()
    cmds = batch.commands(2)
    cmds[0]["kind"] = 99
    cmds[1]["kind"] = batch.PLACE
    cmds[1]["side"] = 7
    before = e.state_hash()
    ev = batch.apply(e, cmds)
    assert list(ev["kind"]) == [batch.REJECTED, batch.REJECTED]
    assert {batch.REJECT_CODES[c] for c in ev["code"]} == {"INVALID_BATCH_RECORD"}
    assert e.state_hash() == before
    with pytest.raises(spotex.InvalidOrderError):
        e.apply_batch(b"\x00" * 65)


def test_prices_convert_exactly() -> None:
    assert spotex.parse_price("2.10") == 2_100_000
    assert spotex.parse_price(Decimal("0.000001")) == 1
    assert spotex.format_price(2_100_000) == "2.10"
    assert spotex.format_price(6_789_012) == "6.789012"
    with pytest.raises(ValueError):
        spotex.parse_price("2.1000001")
    with pytest.raises(TypeError):
        spotex.parse_price(2.1)  # type: ignore[arg-type]


def test_the_flow_is_reproducible_and_refuses_bad_specs() -> None:
    products, clusters, records, counts = flow("crash", seed=3, new_orders=2_000)
    assert flow("crash", seed=3, new_orders=2_000)[2] == records
    assert flow("calm", seed=3, new_orders=2_000)[2] != records
    assert len(records) == 64 * counts["messages"] and counts["new_orders"] == 2_000
    assert len(products) == 1 and len(clusters) == 4
    # the whole stream goes through the batch path; of the new orders none is refused
    e = spotex.Engine()
    for pid, tick, lot, open_at, close_at in products:
        e.create_product(pid, tick=tick, lot=lot, open_at=open_at, close_at=close_at,
                         ts=open_at)
    for account, cid, sku, region, nodes, h0, h1 in clusters:
        e.register_capacity(account, cid, sku=sku, region=region, nodes=nodes, from_hour=h0,
                            to_hour=h1, ts=products[0][3])
    events = np.frombuffer(e.apply_batch(records), dtype=batch.EVENT_DTYPE)
    commands = np.frombuffer(records, dtype=batch.COMMAND_DTYPE)
    refused = events[events["kind"] == batch.REJECTED]
    assert len(refused) >= counts["duplicate_cancels"]
    assert (commands["kind"][refused["command"]] != batch.PLACE).all()
    with pytest.raises(ValueError, match="unknown scenario"):
        flow("meltdown")
    with pytest.raises(ValueError, match="sellers"):
        flow("calm", sellers=0)


def test_the_sdk_loads_neither_the_engine_nor_the_server_nor_the_extras() -> None:
    import subprocess
    import sys

    heavy = ("spotex._core", "spotex.server", "spotex.cluster", "spotex.tools", "numpy",
             "matplotlib", "hdrh")
    code = ("import sys, spotex, spotex.client\n"
            "from spotex.client import RpcError\n"
            "assert issubclass(RpcError, spotex.SpotexError)\n"
            f"print([m for m in {heavy!r} if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]", out.stdout
    # the engine's names still load on first use, under the same base class
    import spotex
    from spotex.client import RpcError

    assert issubclass(spotex.InvalidOrderError, spotex.SpotexError)
    assert issubclass(RpcError, spotex.SpotexError) and spotex.Engine is not None


def test_typed_terms_and_their_words_place_the_same_orders() -> None:
    from spotex import OrderType, SelfTradePrevention, Side, TimeInForce

    typed, words = market(), market()
    orders = [
        ((7, PID, Side.SELL, 6_000_000, 4), {"cluster_id": "fra-1"},
         {"cluster_id": "fra-1"}),
        ((9, PID, Side.BUY, 6_100_000, 2),
         {"tif": TimeInForce.IOC, "stp": SelfTradePrevention.CANCEL_BOTH},
         {"tif": "ioc", "stp": "cancel_both"}),
        ((9, PID, Side.BUY, 6_100_000, 1), {"order_type": OrderType.MARKET, "tif": TimeInForce.FOK},
         {"order_type": "market", "tif": "fok"}),
        ((9, PID, Side.BUY, 5_000_000, 1), {"tif": TimeInForce.GTD, "expire_at": T0 + 50},
         {"tif": "gtd", "expire_at": T0 + 50}),
    ]
    for k, ((account, pid, side, price, qty), kw_typed, kw_words) in enumerate(orders):
        got = typed.place(account, pid, side, price, qty, ts=T0 + 1 + k, **kw_typed)
        want = words.place(account, pid, "sell" if side == Side.SELL else "buy", price, qty,
                           ts=T0 + 1 + k, **kw_words)
        assert len(got) == len(want) and [e.kind for e in got] == [e.kind for e in want]
        assert [(e.order_id, e.qty, e.price) for e in got] == \
            [(e.order_id, e.qty, e.price) for e in want]
    assert typed.state_hash() == words.state_hash()
    # an event list is read only when asked; reading twice gives the same events
    ev = typed.place(9, PID, Side.BUY, 5_010_000, 1, ts=T0 + 9)
    assert len(ev) == 1 and ev[0].kind == ev[-1].kind == "accepted"
    with pytest.raises(IndexError):
        ev[1]
    with pytest.raises(TypeError):
        typed.place(9, PID, 1, 5_000_000, 1, ts=T0 + 10)  # type: ignore[arg-type]
