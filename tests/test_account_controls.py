"""What an operator and a desk need when something goes wrong: mass cancel, the kill
switch (an account's calls refused, its open orders cancelled, an open bulk stream cut
off), token rotation and revocation; all of it kept across a restart."""

from __future__ import annotations

import queue
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import OPERATOR_TOKEN, serving

from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex._proto.spotex.v1 import spotex_pb2_grpc as rpc
from spotex.client import Client, RpcError

NOW_HOUR = int(time.time()) // 3600
C = grpc.StatusCode


def _bid(pid: str, price: str = "1.00") -> dict[str, Any]:
    return dict(product_id=pid, side="buy", price=price, quantity=1)


def test_mass_cancel_kill_switch_and_tokens(tmp_path: Path) -> None:
    with serving(tmp_path) as r:
        op = Client(r.target, OPERATOR_TOKEN)
        p1, p2 = (p.product_id for p in op.create_products(
            skus=["H100-SXM"], regions=["us-east"], from_hour=NOW_HOUR + 3,
            to_hour=NOW_HOUR + 5))
        acct = op.create_account("desk", ["buyer"])
        other = Client(r.target, op.create_account("other", ["buyer"]).token)
        desk = Client(r.target, acct.token)
        mine = [desk.place_order(**_bid(p)) for p in (p1, p2, p1, p2)]
        theirs = other.place_order(**_bid(p1))

        # mass cancel, one product: only the desk's orders of it
        gone = desk.cancel_all(p1)
        assert [o.order_id for o in gone] == [mine[0].order_id, mine[2].order_id]
        assert all(o.state == "cancelled" for o in gone)
        assert {o.order_id for o in desk.list_orders(open_only=True)} == {
            mine[1].order_id, mine[3].order_id}
        with pytest.raises(RpcError) as info:
            desk.cancel_all("no/such/product")
        assert info.value.reason == "UNKNOWN_PRODUCT"

        # a bulk stream stays open across the kill switch
        requests: queue.Queue[Any] = queue.Queue()

        def feed() -> Iterator[Any]:
            while (m := requests.get()) is not None:
                yield m
        stub = rpc.MarketStub(grpc.insecure_channel(r.target))
        answers = stub.SubmitOrders(feed(), metadata=(("authorization",
                                                       f"Bearer {acct.token}"),))
        one = pb.SubmitOrdersRequest(orders=[pb.PlaceOrderRequest(
            product_id=p2, side=pb.SIDE_BUY, price_micros=900_000, quantity=1)])
        requests.put(one)
        first = next(answers)
        assert first.results[0].code == 0
        streamed = first.results[0].order.order_id

        # the kill switch: its open orders go, and every call after is refused
        info_, cancelled = op.disable_account(acct.account_id)
        assert not info_.enabled
        assert {o.order_id for o in cancelled} == {mine[1].order_id, mine[3].order_id,
                                                   streamed}
        for call in (lambda: desk.place_order(**_bid(p1)), desk.list_orders):
            with pytest.raises(RpcError) as info:
                call()
            assert (info.value.code, info.value.reason) == (C.PERMISSION_DENIED,
                                                            "ACCOUNT_DISABLED")
        requests.put(one)
        refused = next(answers)
        assert [x.reason for x in refused.results] == ["ACCOUNT_DISABLED"]
        requests.put(None)
        assert list(answers) == []
        # nobody else was touched
        assert [o.order_id for o in other.list_orders(open_only=True)] == [theirs.order_id]

        op.enable_account(acct.account_id)
        assert desk.place_order(**_bid(p1)).state == "open"

        # rotation: the old token stops at once, the new one works
        rotated = op.rotate_token(acct.account_id)
        with pytest.raises(RpcError) as info:
            desk.list_orders()
        assert info.value.code == C.UNAUTHENTICATED
        desk = Client(r.target, rotated.token)
        assert len(desk.list_orders(open_only=True)) == 1
        # revocation: no token works until the next rotation
        assert not op.revoke_token(acct.account_id).has_token
        with pytest.raises(RpcError):
            desk.list_orders()
        listed = {a.account_id: a for a in op.list_accounts()}
        assert listed[acct.account_id].has_token is False
        assert listed[acct.account_id].roles == ("buyer",)
        again = op.rotate_token(acct.account_id)

        # the operator account is not managed through the API; unknown ids are refused
        with pytest.raises(RpcError) as info:
            op.disable_account(1)
        assert info.value.reason == "OPERATOR_ACCOUNT"
        with pytest.raises(RpcError) as info:
            op.rotate_token(999)
        assert (info.value.code, info.value.reason) == (C.NOT_FOUND, "UNKNOWN_ACCOUNT")
        with pytest.raises(RpcError) as info:
            Client(r.target, again.token).list_accounts()
        assert info.value.reason == "ROLE_REQUIRED"
        op.disable_account(acct.account_id)

    # kept across a restart: still disabled, the latest token is the one that counts
    with serving(tmp_path) as r:
        with pytest.raises(RpcError) as info:
            Client(r.target, again.token).list_orders()
        assert info.value.reason == "ACCOUNT_DISABLED"
        with pytest.raises(RpcError) as info:
            Client(r.target, rotated.token).list_orders()
        assert info.value.code == C.UNAUTHENTICATED
        Client(r.target, OPERATOR_TOKEN).enable_account(acct.account_id)
        assert len(Client(r.target, again.token).list_orders(open_only=True)) == 0
