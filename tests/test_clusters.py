"""Cluster ids belong to their seller: two sellers may both name a cluster ``iad-1``; an
ask, a withdrawal and a buyer's allocations resolve it within the seller's own clusters,
no refusal names another seller's, and the venue recovers to the same state. Also: the
binding's ``Events`` slices like the sequence it is."""

from __future__ import annotations

import datetime as dt
import time
from pathlib import Path

import grpc
import pytest
from conftest import OPERATOR_TOKEN, serving

import spotex
from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex._proto.spotex.v1 import spotex_pb2_grpc as pb_grpc
from spotex.client import Client, RpcError


def test_two_sellers_each_sell_from_their_own_iad_1(tmp_path: Path) -> None:
    with serving(tmp_path) as r:
        op = Client(r.target, OPERATOR_TOKEN)
        h = int(time.time()) // 3600 + 3
        pid = op.create_products(skus=["H100-SXM"], regions=["us-east"], from_hour=h,
                                 to_hour=h + 1)[0].product_id
        a, b, lab = (op.create_account(n, [role]) for n, role in
                     (("a", "seller"), ("b", "seller"), ("lab", "buyer")))
        sa, sb = Client(r.target, a.token), Client(r.target, b.token)
        sa.register_capacity("iad-1", sku="H100-SXM", region="us-east", nodes=[("a0", 8)],
                             from_hour=h, to_hour=h + 1)
        sb.register_capacity("iad-1", sku="H100-SXM", region="us-east",
                             nodes=[("b0", 8), ("b1", 8)], from_hour=h, to_hour=h + 1)
        with pytest.raises(RpcError) as twice:
            sb.register_capacity("iad-1", sku="H100-SXM", region="us-east",
                                 nodes=[("b0", 8)], from_hour=h, to_hour=h + 1)
        assert twice.value.reason == "DUPLICATE_CLUSTER"
        assert "you already have" in twice.value.message
        # a name only the other seller has: as if it did not exist
        sa.register_capacity("fra-1", sku="H100-SXM", region="us-east", nodes=[("f0", 8)],
                             from_hour=h, to_hour=h + 1)
        for call in (lambda: sb.place_order(pid, "sell", "2.00", 8, cluster_id="fra-1"),
                     lambda: sb.withdraw_capacity("fra-1", from_hour=h, to_hour=h + 1)):
            with pytest.raises(RpcError) as refused:
                call()
            assert refused.value.reason == "UNKNOWN_CLUSTER"
            assert refused.value.message == "no such cluster of yours"

        sa.place_order(pid, "sell", "2.00", 8, cluster_id="iad-1")
        sb.place_order(pid, "sell", "2.10", 16, cluster_id="iad-1")
        Client(r.target, lab.token).place_order(pid, "buy", "2.10", 16, tif="ioc")
        got = Client(r.target, lab.token).list_allocations()
        assert [(x.cluster_id, x.seller_account, x.slots) for x in got] == [
            ("iad-1", a.account_id, (("a0", tuple(range(8))),)),
            ("iad-1", b.account_id, (("b0", tuple(range(8))),)),
        ]
        # the wire names the cluster's owner too: (provider_account, cluster_id)
        with grpc.insecure_channel(r.target) as channel:
            raw = pb_grpc.MarketStub(channel).ListAllocations(  # type: ignore[no-untyped-call]
                pb.ListAllocationsRequest(), metadata=(("authorization", f"Bearer {lab.token}"),))
        assert [x.provider_account for x in raw.allocations] == [a.account_id, b.account_id]
        before = op.state_hash()
    with serving(tmp_path) as r:
        assert Client(r.target, OPERATOR_TOKEN).state_hash() == before


def test_events_slice_like_a_list() -> None:
    hour = 3_600_000_000
    t0, delivery = 490_000 * hour, 490_034
    pid = "B200/eu-west/" + dt.datetime.fromtimestamp(delivery * 3600, dt.UTC).strftime(
        "%Y-%m-%dT%H")
    e = spotex.Engine()
    e.create_product(pid, tick=10_000, lot=1, open_at=t0, close_at=(delivery - 1) * hour, ts=t0)
    e.register_capacity(7, "fra-1", sku="B200", region="eu-west", nodes=[("n0", 8)],
                        from_hour=490_000, to_hour=490_100, ts=t0)
    e.place(7, pid, "sell", 6_000_000, 8, ts=t0 + 1, cluster_id="fra-1")
    events = e.place(9, pid, "buy", 6_000_000, 4, ts=t0 + 2)
    kinds = [ev.kind for ev in events]
    assert kinds == ["accepted", "trade", "allocated"]
    assert [ev.kind for ev in events[1:]] == kinds[1:]
    assert [ev.kind for ev in events[::-1]] == kinds[::-1]
    assert [ev.kind for ev in events[-2:10]] == kinds[-2:]
    assert events[5:] == [] and events[-1].kind == "allocated"
    with pytest.raises(IndexError):
        events[3]
    with pytest.raises(TypeError):
        events["1"]  # type: ignore[call-overload]
    with pytest.raises(ValueError):
        events[::0]
