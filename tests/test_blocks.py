"""Block bids end to end: through the server, the SDK and the CLI, a bid for the same GPUs
over consecutive hours fills all or none, each hour at its asks' prices, and the buyer
holds the same node and GPU indices in every hour. (The rules and a reference model are
tested on the exchange itself: rust_exchange/tests/blocks.rs.)"""

from __future__ import annotations

import json
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from conftest import OPERATOR_TOKEN, Collector, Running, serving

from spotex.cli import main
from spotex.client import Client, RpcError


def test_a_block_through_the_service_sdk_and_cli(running: Running) -> None:
    op = Client(running.target, OPERATOR_TOKEN)
    h = int(time.time()) // 3600 + 60
    made = op.create_products(skus=["GB200"], regions=["us-south"], from_hour=h,
                              to_hour=h + 4, tick="0.01")
    ids = [p.product_id for p in made]
    seller = Client(running.target, op.create_account("block-seller", ["seller"]).token)
    seller.register_capacity("dal-1", sku="GB200", region="us-south",
                             nodes=[("n0", 8), ("n1", 8)], from_hour=h, to_hour=h + 4)
    for k, pid in enumerate(ids):
        seller.place_order(pid, "sell", f"3.{k}0", 16, cluster_id="dal-1")
    token = op.create_account("block-desk", ["buyer"]).token
    desk = Client(running.target, token)

    o = desk.place_order(ids[0], "buy", "3.20", 8, gang=8, hours=3, tif="fok")
    assert (o.state, o.hours, o.filled) == ("filled", 3, 8)
    assert [f.product_id for f in o.fills] == ids[:3]
    assert [str(f.price) for f in o.fills] == ["3", "3.1", "3.2"]
    held = {a.hour: a.slots for a in desk.list_allocations()}
    assert sorted(held) == [h, h + 1, h + 2]
    assert len({held[x] for x in held}) == 1, "the same GPUs in every hour"
    # the last hour has nothing left but the seller's other 8 GPUs: a 3-hour block of 16
    # cannot fill, and takes nothing
    no = desk.place_order(ids[1], "buy", "9.00", 16, hours=3, tif="ioc")
    assert (no.state, no.filled, no.reason) == ("cancelled", 0, "unfilled")
    assert len(desk.list_allocations()) == 3

    # a window: 2 hours anywhere in the 4 listed, the cheapest start: hours 0-1 (8 GPUs
    # left at 3.00 and 3.10) beat 1-2 and 2-3
    w = desk.place_order(ids[0], "buy", "3.30", 8, gang=8, hours=2, window_hours=4,
                         tif="fok")
    assert (w.state, w.window_hours) == ("filled", 4)
    assert [f.product_id for f in w.fills] == ids[:2]

    # the same from the command line: what is left, hours 2-3
    r = CliRunner().invoke(main, ["--server", running.target, "--token", token, "--json",
                                  "order", "buy", ids[2], "8", "3.50", "--hours", "2",
                                  "--tif", "fok", "--gang", "8"])
    assert r.exit_code == 0, r.output
    block: dict[str, Any] = json.loads(r.output)
    assert block["hours"] == 2 and block["state"] == "filled"
    assert [f["product_id"] for f in block["fills"]] == ids[2:4]
    # a minimum fill from the command line: 8 GPUs are left in the last hour, so a
    # minimum of 16 takes nothing and a minimum of 8 takes the 8 and rests the rest
    base = ["--server", running.target, "--token", token, "--json", "order", "buy", ids[3]]
    r = CliRunner().invoke(main, [*base, "16", "3.40", "--min", "16"])
    assert json.loads(r.output)["reason"] == "minimum_fill", r.output
    r = CliRunner().invoke(main, [*base, "16", "3.40", "--min", "8"])
    got = json.loads(r.output)
    assert (got["filled"], got["remaining"], got["min_quantity"]) == (8, 8, 8), r.output
    # a good-till block that cannot fill waits whole; it is not amended
    r = CliRunner().invoke(main, ["--server", running.target, "--token", token, "--json",
                                  "order", "buy", ids[0], "8", "3.50", "--hours", "2"])
    waiting = json.loads(r.output)
    assert (waiting["state"], waiting["filled"]) == ("open", 0), r.output
    bad = CliRunner().invoke(main, ["--server", running.target, "--token", token, "amend",
                                    str(waiting["order_id"]), "--price", "3.60"])
    assert bad.exit_code == 1 and "INVALID_BLOCK" in bad.output, bad.output
    assert desk.cancel_order(waiting["order_id"]).state == "cancelled"


def test_a_seller_range_through_the_sdk(running: Running) -> None:
    op = Client(running.target, OPERATOR_TOKEN)
    h = int(time.time()) // 3600 + 80
    ids = [p.product_id for p in op.create_products(
        skus=["MI300X"], regions=["eu-north"], from_hour=h, to_hour=h + 3, tick="0.01")]
    seller = Client(running.target, op.create_account("range-seller", ["seller"]).token)
    seller.register_capacity("arn-1", sku="MI300X", region="eu-north", nodes=[("n0", 8)],
                             from_hour=h, to_hour=h + 3)
    keep = seller.place_order(ids[1], "sell", "5.00", 2, cluster_id="arn-1")
    got = seller.place_ask_range(ids[0], "2.50", 7, hours=3, cluster_id="arn-1")
    # the middle hour has only 6 GPUs left to offer: that hour alone is refused
    assert [getattr(x, "reason", "") for x in got] == ["", "INSUFFICIENT_CAPACITY", ""]
    placed = [x for x in got if not isinstance(x, RpcError)]
    assert [o.product_id for o in placed] == [ids[0], ids[2]]
    assert len({o.range_id for o in placed}) == 1 and placed[0].range_id > 0
    gone = seller.cancel_all(range_id=placed[0].range_id)
    assert sorted(o.order_id for o in gone) == sorted(o.order_id for o in placed)
    assert [o.order_id for o in seller.list_orders(open_only=True)] == [keep.order_id]


def test_a_one_of_group_through_the_sdk_and_cli(running: Running) -> None:
    op = Client(running.target, OPERATOR_TOKEN)
    h = int(time.time()) // 3600 + 100
    east = [p.product_id for p in op.create_products(
        skus=["H100-SXM"], regions=["us-east"], from_hour=h, to_hour=h + 2, tick="0.01")]
    west = [p.product_id for p in op.create_products(
        skus=["H200"], regions=["us-west"], from_hour=h, to_hour=h + 2, tick="0.01")]
    seller = Client(running.target, op.create_account("group-seller", ["seller"]).token)
    for cluster, sku, region, ids, px in (("e1", "H100-SXM", "us-east", east, "2.00"),
                                          ("w1", "H200", "us-west", west, "3.00")):
        seller.register_capacity(cluster, sku=sku, region=region, nodes=[("n0", 8)],
                                 from_hour=h, to_hour=h + 2)
        for pid in ids:
            seller.place_order(pid, "sell", px, 8, cluster_id=cluster)
    token = op.create_account("group-desk", ["buyer"]).token
    desk = Client(running.target, token)
    o = desk.place_one_of([dict(product_id=west[0], price="3.50", quantity=8, hours=2,
                                gang=8, tif="fok"),
                           dict(product_id=east[0], price="3.50", quantity=8, hours=2,
                                gang=8, tif="fok")], client_order_id="run-7")
    assert (o.state, o.product_id, o.client_order_id) == ("filled", east[0], "run-7")
    assert {a.product_id for a in desk.list_allocations()} == set(east), "one alternative"
    # the cheaper is gone: the CLI's group takes the H200s
    r = CliRunner().invoke(main, ["--server", running.target, "--token", token, "--json",
                                  "one-of", "--alt", f"{east[0]}:8:3.50:2",
                                  "--alt", f"{west[0]}:8:3.50:2", "--gang", "8"])
    assert r.exit_code == 0, r.output
    assert [f["product_id"] for f in json.loads(r.output)["fills"]] == west

    # a resting group: both sold out, so it waits; the seller lists hours h..h+1 of
    # us-east again, and the east alternative fills, the west one going with it
    r = CliRunner().invoke(main, ["--server", running.target, "--token", token, "--json",
                                  "one-of", "--alt", f"{west[0]}:8:3.50:2",
                                  "--alt", f"{east[0]}:8:3.50:2", "--gang", "8",
                                  "--tif", "gtc"])
    waiting = json.loads(r.output)
    assert (waiting["state"], waiting["product_id"]) == ("open", west[0]), r.output
    more = Client(running.target, op.create_account("group-seller-2", ["seller"]).token)
    more.register_capacity("e2", sku="H100-SXM", region="us-east", nodes=[("n0", 8)],
                           from_hour=h, to_hour=h + 2)
    for pid in east:
        more.place_order(pid, "sell", "2.50", 8, cluster_id="e2")
    done = desk.get_order(waiting["order_id"])
    assert (done.state, done.product_id) == ("filled", east[0])
    assert [f.product_id for f in done.fills] == east
    assert desk.list_orders(open_only=True) == [], "the other alternative went with it"


def test_a_basket_through_the_sdk(running: Running) -> None:
    op = Client(running.target, OPERATOR_TOKEN)
    h = int(time.time()) // 3600 + 120
    ids = [p.product_id for p in op.create_products(
        skus=["L40S"], regions=["ap-south"], from_hour=h, to_hour=h + 2, tick="0.01")]
    seller = Client(running.target, op.create_account("basket-seller", ["seller"]).token)
    seller.register_capacity("bom-1", sku="L40S", region="ap-south", nodes=[("n0", 8)],
                             from_hour=h, to_hour=h + 2)
    seller.place_order(ids[0], "sell", "1.00", 8, cluster_id="bom-1")
    seller.place_order(ids[1], "sell", "1.00", 4, cluster_id="bom-1")
    desk = Client(running.target, op.create_account("basket-desk", ["buyer"]).token)
    legs = [dict(product_id=ids[0], side="buy", price="1.00", quantity=8),
            dict(product_id=ids[1], side="buy", price="1.00", quantity=8)]
    got = desk.place_basket(legs)
    assert [(o.state, o.filled, o.reason) for o in got] == [("cancelled", 0, "fill_or_kill")] * 2
    assert desk.list_allocations() == []
    legs[1]["quantity"] = 4
    got = desk.place_basket(legs)
    assert [o.state for o in got] == ["filled", "filled"]
    assert sum(a.quantity for a in desk.list_allocations()) == 12


def test_a_resting_block_survives_a_restart_and_fills_from_a_later_ask(
        tmp_path: Path) -> None:
    h = int(time.time()) // 3600 + 30
    with serving(tmp_path) as r:
        op = Client(r.target, OPERATOR_TOKEN)
        ids = [p.product_id for p in op.create_products(
            skus=["H200"], regions=["ap-east"], from_hour=h, to_hour=h + 3, tick="0.01")]
        seller_token = op.create_account("rest-seller", ["seller"]).token
        seller = Client(r.target, seller_token)
        seller.register_capacity("hkg-1", sku="H200", region="ap-east", nodes=[("n0", 8)],
                                 from_hour=h, to_hour=h + 3)
        seller.place_order(ids[0], "sell", "3.00", 8, cluster_id="hkg-1")
        desk_token = op.create_account("rest-desk", ["buyer"]).token
        desk = Client(r.target, desk_token)
        # hours 0-1 at 3.10 a GPU-hour on the whole: the second hour has no ask yet
        o = desk.place_order(ids[0], "buy", "3.10", 8, hours=2, tif="gtc")
        assert (o.state, o.filled, o.hours) == ("open", 0, 2)
        assert [x.order_id for x in desk.list_orders(open_only=True)] == [o.order_id]
        assert desk.get_book(ids[0]).bids == (), "a resting block is not in the depth"
        op.take_snapshot()
        # half of the second hour's GPUs: the block keeps waiting
        seller.place_order(ids[1], "sell", "3.30", 4, cluster_id="hkg-1")
        assert desk.get_order(o.order_id).state == "open"
    with serving(tmp_path) as r:
        desk = Client(r.target, desk_token)
        assert desk.get_order(o.order_id).state == "open", "it waits across a restart"
        seller = Client(r.target, seller_token)
        stream = Collector(desk.executions())
        seller.place_order(ids[1], "sell", "3.10", 4, cluster_id="hkg-1")
        # 8 x 3.00 + 4 x 3.10 + 4 x 3.30 = 16 x 3.10: the ask arriving in its last hour
        # fills it, whole, within its limit on the whole
        got = desk.get_order(o.order_id)
        assert (got.state, got.filled) == ("filled", 8)
        assert sorted((f.product_id, str(f.price), f.quantity) for f in got.fills) == [
            (ids[0], "3", 8), (ids[1], "3.1", 4), (ids[1], "3.3", 4)]
        # one allocation per ask taken; together, the whole node in both hours
        held: dict[int, set[int]] = {}
        for a in desk.list_allocations():
            for node, gpus in a.slots:
                assert node == "n0"
                held.setdefault(a.hour, set()).update(gpus)
        assert held == {h: set(range(8)), h + 1: set(range(8))}
        # the buyer's stream ends the fill with the whole block in one record
        stream.wait_for(lambda xs: any(x.kind == "block_allocated" for x in xs), timeout=30)
        whole = next(x.block for x in stream.items if x.kind == "block_allocated")
        assert whole is not None
        assert (whole.order_id, whole.first_hour, whole.hours) == (o.order_id, h, 2)
        assert whole.slots == (("n0", tuple(range(8))),)
        assert whole.cost == Decimal("49.60") and len(whole.trade_ids) == 3


def test_an_iceberg_ask_through_the_sdk_and_cli(running: Running) -> None:
    op = Client(running.target, OPERATOR_TOKEN)
    h = int(time.time()) // 3600 + 90
    pid = op.create_products(skus=["L40S"], regions=["us-west"], from_hour=h,
                             to_hour=h + 1, tick="0.01")[0].product_id
    token = op.create_account("iceberg-seller", ["seller"]).token
    seller = Client(running.target, token)
    seller.register_capacity("sjc-1", sku="L40S", region="us-west",
                             nodes=[("n0", 8), ("n1", 8), ("n2", 8)], from_hour=h,
                             to_hour=h + 1)
    r = CliRunner().invoke(main, ["--server", running.target, "--token", token, "--json",
                                  "order", "sell", pid, "24", "1.50", "--cluster", "sjc-1",
                                  "--display", "8"])
    assert r.exit_code == 0, r.output
    ice = json.loads(r.output)
    assert (ice["display_quantity"], ice["remaining"]) == (8, 24), r.output
    assert [(lv.quantity, lv.orders) for lv in seller.get_book(pid).asks] == [(8, 1)]
    desk = Client(running.target, op.create_account("iceberg-desk", ["buyer"]).token)
    b = desk.place_order(pid, "buy", "1.50", 20, tif="ioc")
    assert [f.quantity for f in b.fills] == [8, 8, 4], "the clips, one after another"
    assert [(lv.quantity, lv.orders) for lv in desk.get_book(pid).asks] == [(4, 1)]
    left = seller.get_order(ice["order_id"])
    assert (left.filled, left.remaining, left.display_quantity) == (20, 4, 8)
    with pytest.raises(RpcError) as err:
        desk.place_order(pid, "buy", "1.40", 4, display_quantity=2)  # icebergs are asks
    assert err.value.reason == "INVALID_DISPLAY_QUANTITY"
