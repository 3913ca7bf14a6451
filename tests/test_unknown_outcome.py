"""The SDK and unknown outcomes: every order it places carries a client order id (its own
when the caller gives none), and a command answered OUTCOME_UNKNOWN (or lost in
transport once sent) is looked up by that id until the venue says applied or not."""

from __future__ import annotations

import re
import time
from typing import Any

import pytest
from conftest import OPERATOR_TOKEN, Running

from spotex.client import Client

NOW_HOUR = int(time.time()) // 3600
GENERATED = re.compile(r"sdk-[0-9a-f]{16}")


@pytest.fixture(scope="module")
def market(running: Running) -> dict[str, Any]:
    op = Client(running.target, OPERATOR_TOKEN)
    made = op.create_products(skus=["A100"], regions=["ap-south"], from_hour=NOW_HOUR + 3,
                              to_hour=NOW_HOUR + 7)
    seller = Client(running.target, op.create_account("unk-seller", ["seller"]).token)
    seller.register_capacity("unk-c", sku="A100", region="ap-south", nodes=[("n0", 8)],
                             from_hour=NOW_HOUR, to_hour=NOW_HOUR + 24)
    buyer = Client(running.target, op.create_account("unk-buyer", ["buyer"]).token)
    return {"pids": [p.product_id for p in made], "seller": seller, "buyer": buyer,
            "target": running.target}


def test_every_order_carries_a_client_order_id(market: dict[str, Any]) -> None:
    pids, buyer, seller = market["pids"], market["buyer"], market["seller"]
    a = buyer.place_order(pids[0], "buy", "0.50", 1)
    b = buyer.place_order(pids[0], "buy", "0.50", 1)
    assert GENERATED.fullmatch(a.client_order_id) and GENERATED.fullmatch(b.client_order_id)
    assert a.client_order_id != b.client_order_id
    assert buyer.get_order(client_order_id=a.client_order_id).order_id == a.order_id
    # the caller's own is kept
    assert buyer.place_order(pids[0], "buy", "0.50", 1,
                             client_order_id="mine-1").client_order_id == "mine-1"
    group = buyer.place_one_of([{"product_id": pids[1], "price": "0.50", "quantity": 1,
                                 "hours": 2, "tif": "gtc"}])
    assert GENERATED.fullmatch(group.client_order_id)
    legs = buyer.place_basket([{"product_id": p, "side": "buy", "price": "0.50",
                                "quantity": 1} for p in pids[:2]])
    assert all(GENERATED.fullmatch(o.client_order_id) for o in legs)
    assert len({o.client_order_id for o in legs}) == 2
    asks = seller.place_ask_range(pids[0], "9.00", 1, hours=2, cluster_id="unk-c")
    ids = [o.client_order_id for o in asks if not isinstance(o, Exception)]
    assert len(ids) == 2 and ids[0].endswith("#0") and ids[1] == ids[0][:-1] + "1"
    assert GENERATED.fullmatch(ids[0][:-2])
    bulk = list(buyer.submit_orders([{"product_id": pids[2], "side": "buy", "price": "0.50",
                                      "quantity": 1}] * 2))
    assert len({o.client_order_id for o in bulk if not isinstance(o, Exception)}) == 2
