"""Where the GPUs sit, end to end: a seller registers nodes with their place, a buyer bids
for one NVLink domain through the SDK and next to its own allocation through the CLI.
(The rules are tested on the exchange itself: rust_exchange/tests/placement.rs.)"""

from __future__ import annotations

import json
import time

import pytest
from click.testing import CliRunner
from conftest import OPERATOR_TOKEN, Running

from spotex.cli import main
from spotex.client import Client, RpcError


def test_locality_and_colocation_through_the_sdk_and_cli(running: Running) -> None:
    op = Client(running.target, OPERATOR_TOKEN)
    h = int(time.time()) // 3600 + 140
    pid = op.create_products(skus=["GB200"], regions=["us-central"], from_hour=h,
                             to_hour=h + 1, tick="0.01")[0].product_id
    seller = Client(running.target, op.create_account("nvl-seller", ["seller"]).token)
    seller.register_capacity("nvl-c", sku="GB200", region="us-central", nodes=[
        ("t0", 4, "pod1", "r1", "nvl1"), ("t1", 4, "pod1", "r1", "nvl1"),
        ("t2", 4, "pod1", "r2", "nvl2"), ("t3", 4, "", "", "")], from_hour=h, to_hour=h + 1)
    seller.place_order(pid, "sell", "4.00", 16, cluster_id="nvl-c")
    token = op.create_account("nvl-desk", ["buyer"]).token
    desk = Client(running.target, token)
    # one tray in one NVLink domain: four domains of one or two trays, best fit is a
    # one-tray domain, the lowest name first ("node:t3" has no labels)
    o = desk.place_order(pid, "buy", "4.00", 4, gang=4, tif="ioc", locality="node")
    assert (o.state, o.placed_level, o.placed_domain) == ("filled", "node", "node:t0")
    held = desk.list_allocations()
    assert held[0].places == (("t0", "pod1", "r1", "nvl1"),)
    # next to it, in its NVLink domain, from the command line
    r = CliRunner().invoke(main, ["--server", running.target, "--token", token, "--json",
                                  "order", "buy", pid, "4", "4.00", "--gang", "4", "--tif",
                                  "ioc", "--locality", "nvlink_domain", "--near",
                                  str(o.fills[0].trade_id)])
    assert r.exit_code == 0, r.output
    near = json.loads(r.output)
    assert (near["state"], near["placed_domain"]) == ("filled", "pod1/r1/nvl1")
    assert {a.places[0][0] for a in desk.list_allocations()} == {"t0", "t1"}
    # placement is a bid's term
    with pytest.raises(RpcError) as err:
        seller.place_order(pid, "sell", "4.00", 1, cluster_id="nvl-c", locality="rack")
    assert err.value.reason == "INVALID_PLACEMENT"
    with pytest.raises(ValueError):
        desk.place_order(pid, "buy", "4.00", 4, locality="rak")


def test_the_locality_study_serves_more_whole_domain_jobs_and_strands_none(
        running: Running) -> None:
    """bench/bench_locality.py, small: on the same stream, locality-aware bids never hold
    GPUs they cannot use, and serve at least as many whole-domain jobs as blind ones."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).parent.parent / "bench" / "bench_locality.py"
    spec = importlib.util.spec_from_file_location("bench_locality", path)
    assert spec is not None and spec.loader is not None
    study = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(study)
    op = Client(running.target, OPERATOR_TOKEN)
    hour = int(time.time()) // 3600 + 200
    stream = study.jobs(40, 5)
    aware = study.run(op, running.target, "loc-aware", hour, stream, True)
    blind = study.run(op, running.target, "loc-blind", hour + 1, stream, False)
    assert aware["training_jobs"] == blind["training_jobs"] > 0
    assert aware["gpus_held_but_unusable"] == 0
    assert aware["training_jobs_served"] >= blind["training_jobs_served"]
    assert aware["training_gpus_served"] > 0
