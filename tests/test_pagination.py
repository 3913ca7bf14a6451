"""List calls page: an account with more than 4 MiB of orders (the gRPC message limit)
lists them all, page by page, nothing missing or repeated, from memory and from the
history on disk alike; allocations and products page the same way; bad tokens are
refused; and CreateProducts says which hours existed already."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import OPERATOR_TOKEN, serving

from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex._proto.spotex.v1 import spotex_pb2_grpc as rpc
from spotex.client import Client, RpcError
from spotex.server.history import History
from spotex.tools.testing import ServerProcess

NOW_HOUR = int(time.time()) // 3600
# about 80 bytes an Order: 60,000 of them are past 4 MiB in one message
ORDERS = 60_000


def _pages(call: Callable[[pb.ListOrdersRequest], Any], request: pb.ListOrdersRequest,
           field: str, key: str) -> tuple[list[int], int, list[int]]:
    """Walks every page; returns the ids in order, the pages and their sizes."""
    ids: list[int] = []
    sizes: list[int] = []
    token = ""
    while True:
        request.page_token = token
        page = call(request)
        items = getattr(page, field)
        sizes.append(len(items))
        ids += [getattr(x, key) for x in items]
        token = page.next_page_token
        if not token:
            return ids, len(sizes), sizes


def test_more_than_4mib_of_orders_list_page_by_page(tmp_path: Path) -> None:
    # most orders leave memory for the history: pages merge both
    server = ServerProcess(tmp_path, OPERATOR_TOKEN, "--keep-ended-orders", "5000",
                           "--orders-per-second", "1e6", "--order-burst", "1000000")
    try:
        op = Client(server.target, OPERATOR_TOKEN)
        pid = op.create_products(skus=["H100-SXM"], regions=["us-east"],
                                 from_hour=NOW_HOUR + 3, to_hour=NOW_HOUR + 4)[0].product_id
        acct = op.create_account("desk", ["buyer"])
        buyer = Client(server.target, acct.token)
        # IOC bids with nothing to match: each ends at once (most leave memory), and a few
        # resting bids stay open in memory among them
        orders = [dict(product_id=pid, side="buy", price="1.00", quantity=1,
                       tif="gtc" if i % 10_000 == 0 else "ioc",
                       client_order_id=f"o{i}") for i in range(ORDERS)]
        placed = [o.order_id for o in buyer.submit_orders(orders, per_message=1000)]
        assert len(placed) == ORDERS

        md = (("authorization", f"Bearer {acct.token}"),)
        stub = rpc.MarketStub(grpc.insecure_channel(server.target))
        # in one message, as before pages, these orders are more than gRPC's default 4 MiB
        # a client accepts: this account could never have listed them
        assert _whole(stub, md).ByteSize() > 4 * 1024 * 1024

        ids, pages, sizes = _pages(lambda r: stub.ListOrders(r, metadata=md),
                                   pb.ListOrdersRequest(page_size=777), "orders", "order_id")
        assert ids == sorted(placed), "every order once, oldest first"
        assert pages == -(-ORDERS // 777) and all(s == 777 for s in sizes[:-1])
        # the default page, and a request for more than the most
        first = stub.ListOrders(pb.ListOrdersRequest(), metadata=md)
        assert len(first.orders) == 500 and first.next_page_token
        big = stub.ListOrders(pb.ListOrdersRequest(page_size=50_000), metadata=md)
        assert len(big.orders) == 1000
        # open orders only: the resting ones, from memory
        open_ids, _, _ = _pages(lambda r: stub.ListOrders(r, metadata=md),
                                pb.ListOrdersRequest(open_only=True, page_size=2), "orders",
                                "order_id")
        assert open_ids == [placed[i] for i in range(0, ORDERS, 10_000)]
        # the SDK walks the pages itself
        assert [o.order_id for o in buyer.list_orders()] == sorted(placed)

        with pytest.raises(grpc.RpcError) as info:
            stub.ListOrders(pb.ListOrdersRequest(page_token="not-a-token"), metadata=md)
        assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "page_token" in (info.value.details() or "")
    finally:
        assert server.stop() == 0


def _whole(stub: rpc.MarketStub, md: tuple[tuple[str, str], ...]) -> pb.ListOrdersResponse:
    """Every page joined into the one message an unpaged call would have sent."""
    whole = pb.ListOrdersResponse()
    token = ""
    while True:
        page = stub.ListOrders(pb.ListOrdersRequest(page_size=1000, page_token=token),
                               metadata=md)
        whole.orders.extend(page.orders)
        token = page.next_page_token
        if not token:
            return whole


def test_products_and_allocations_page(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, OPERATOR_TOKEN)
    try:
        op = Client(server.target, OPERATOR_TOKEN)
        made = op.create_products(skus=["H100-SXM", "H200"], regions=["us-east", "eu"],
                                  from_hour=NOW_HOUR + 3, to_hour=NOW_HOUR + 6)
        md = (("authorization", f"Bearer {OPERATOR_TOKEN}"),)
        stub = rpc.MarketStub(grpc.insecure_channel(server.target))
        ids: list[str] = []
        token = ""
        while True:
            page = stub.ListProducts(pb.ListProductsRequest(page_size=5, page_token=token),
                                     metadata=md)
            assert len(page.products) <= 5
            ids += [p.product_id for p in page.products]
            token = page.next_page_token
            if not token:
                break
        assert ids == [p.product_id for p in made] and len(ids) == 12
        assert [p.product_id for p in op.list_products()] == ids

        # asking again for hours of which some exist: those are reported, not made again
        ops = rpc.OperatorStub(grpc.insecure_channel(server.target))
        answer = ops.CreateProducts(pb.CreateProductsRequest(
            skus=["H100-SXM"], regions=["us-east"], from_hour=NOW_HOUR + 5,
            to_hour=NOW_HOUR + 8, tick_micros=10_000, lot=1,
            gate_closure_lead_micros=3_600_000_000), metadata=md)
        assert [p.product_id for p in answer.existing] == [ids[2]]
        assert len(answer.products) == 2
        assert {p.product_id for p in answer.products}.isdisjoint(ids)

        # allocations: a seller's capacity, bought one GPU at a time
        seller = Client(server.target, op.create_account("s", ["seller"]).token)
        buyer_acct = op.create_account("b", ["buyer"])
        buyer = Client(server.target, buyer_acct.token)
        seller.register_capacity("c1", sku="H100-SXM", region="us-east",
                                 nodes=[(f"n{i}", 8) for i in range(2)],
                                 from_hour=NOW_HOUR + 3, to_hour=NOW_HOUR + 4)
        pid = ids[0]
        seller.place_order(pid, "sell", "2.00", 16, cluster_id="c1")
        for _ in range(7):
            buyer.place_order(pid, "buy", "2.00", 1)
        bmd = (("authorization", f"Bearer {buyer_acct.token}"),)
        trades: list[int] = []
        token = ""
        while True:
            page = stub.ListAllocations(
                pb.ListAllocationsRequest(page_size=3, page_token=token), metadata=bmd)
            assert len(page.allocations) <= 3
            trades += [a.trade_id for a in page.allocations]
            token = page.next_page_token
            if not token:
                break
        assert len(trades) == 7 and trades == sorted(set(trades))
        assert [a.trade_id for a in buyer.list_allocations()] == trades
    finally:
        assert server.stop() == 0


def test_an_order_that_left_memory_is_found_by_its_client_order_id(tmp_path: Path) -> None:
    """The SDK resolves an unknown outcome by client order id: an order that ended and
    left memory must still be found (else it would be called not applied), in the
    history on disk, also in a history file from before client order ids were kept."""
    import sqlite3

    with serving(tmp_path / "data", keep_ended=2) as r:
        op = Client(r.target, OPERATOR_TOKEN)
        pid = op.create_products(skus=["H100-SXM"], regions=["us-east"],
                                 from_hour=NOW_HOUR + 3, to_hour=NOW_HOUR + 4)[0].product_id
        buyer = Client(r.target, op.create_account("desk", ["buyer"]).token)
        placed = [buyer.place_order(pid, "buy", "1.00", 1, tif="ioc", client_order_id=f"c{i}")
                  for i in range(10)]
        for i in (0, 5, 9):  # the first ones left memory long ago
            assert buyer.get_order(client_order_id=f"c{i}").order_id == placed[i].order_id
        with pytest.raises(RpcError) as err:
            buyer.get_order(client_order_id="never-sent")
        assert err.value.reason == "UNKNOWN_ORDER"
        other = Client(r.target, op.create_account("other", ["buyer"]).token)
        with pytest.raises(RpcError) as err:  # another account's order is not its own
            other.get_order(client_order_id="c0")
        assert err.value.reason == "UNKNOWN_ORDER"
    # a history file written before: the client order ids are read from its records
    path = tmp_path / "old.sqlite3"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE orders (order_id INTEGER PRIMARY KEY, account INTEGER NOT NULL, "
               "product TEXT NOT NULL, record BLOB NOT NULL)")
    db.execute("INSERT INTO orders VALUES (7, 3, 'p', ?)",
               (pb.Order(order_id=7, client_order_id="old-7").SerializeToString(),))
    db.commit()
    db.close()
    h = History(path)
    found = h.by_client_order_id(3, "old-7")
    assert found is not None and pb.Order.FromString(found).order_id == 7
    assert h.by_client_order_id(4, "old-7") is None
