"""``spotex bench``'s load generator against a real server: bounded, and every call it
makes is counted, answered and histogrammed."""

from __future__ import annotations

from pathlib import Path

from conftest import OPERATOR_TOKEN, serving

from spotex.client import Client
from spotex.server.limits import Limits
from spotex.tools import loadgen


def test_load_generator_runs_every_phase_within_its_bounds(tmp_path: Path) -> None:
    lifted = Limits(orders_per_second=1e9, order_burst=10**9,
                    max_open_orders_per_account=10**7)
    cfg = loadgen.BenchConfig(clients=4, duration=5.0, max_orders=400, latency_calls=60,
                              per_message=20, nodes=100, max_resting=10)
    with serving(tmp_path, limits=lifted) as r:
        report = loadgen.run(cfg, r.target, OPERATOR_TOKEN)
        res = report["results"]
        seq, _ = Client(r.target, OPERATOR_TOKEN).state_hash()

    lat = res["unary-latency"]
    assert lat["calls"] == 60 == lat["latency_ms"]["count"] == sum(lat["mix"].values())
    uni = res["unary"]
    # bounded in count: each of 4 clients makes max_orders // 4 calls
    assert uni["calls"] == 400 == uni["latency_ms"]["count"] == sum(uni["mix"].values())
    assert {"place", "ioc", "cancel"} <= set(uni["mix"])
    # refusals are only cancels and amends that raced a fill
    assert set(uni["mix"]) <= {"place", "ioc", "cancel", "amend",
                               "refused:ORDER_NOT_OPEN", "refused:UNKNOWN_ORDER"}, uni["mix"]
    st = res["stream"]
    assert st["orders"] == 4 * (400 // 4 // 20) * 20 == sum(st["results"].values())
    assert st["results"] == {"ok": st["orders"]}
    assert st["message_latency_ms"]["count"] == st["orders"] // 20
    for phase in ("unary-latency", "unary", "stream"):
        assert res[phase]["subscribers"]["market_data_messages_per_sec"] > 0
    assert res["grpc_health_check"]["count"] == 2_000 and res["fsync"]["count"] == 500
    assert res["unary"]["cpu_us_per_order"]["load_generator"] > 0
    assert 0 < res["grpc_health_check"]["p50"] <= res["grpc_health_check"]["p99"]
    # every accepted call reached the engine: the sequence moved past the setup
    assert seq > 60 + 400
