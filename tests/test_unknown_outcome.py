"""The SDK and unknown outcomes: every order it places carries a client order id (its own
when the caller gives none), and a command answered OUTCOME_UNKNOWN (or lost in
transport once sent) is looked up by that id until the venue says applied or not."""

from __future__ import annotations

import asyncio
import math
import re
import threading
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import OPERATOR_TOKEN, Running

from spotex.client import AsyncClient, Client, RpcError

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
    token = op.create_account("unk-buyer", ["buyer"]).token
    return {"pids": [p.product_id for p in made], "seller": seller,
            "buyer": Client(running.target, token), "buyer_token": token,
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


# ---- resolution, against a stub that loses answers ------------------------------------

class Lost(grpc.RpcError):
    """An answer as gRPC would raise it: ``reason`` in the spotex-reason trailer, or none
    (gRPC's own failure)."""

    def __init__(self, code: grpc.StatusCode, reason: str = "",
                 details: str = "the answer was lost") -> None:
        super().__init__(details)
        self._code, self._reason, self._details = code, reason, details

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> tuple[tuple[str, str], ...]:
        return (("spotex-reason", self._reason),) if self._reason else ()


UNKNOWN = Lost(grpc.StatusCode.UNKNOWN, "OUTCOME_UNKNOWN", "the journal did not confirm")


class Losing:
    """A stub whose ``method`` fails as ``err`` for the next ``times`` calls, after
    really sending the request when ``send`` (the venue applied it, the answer was lost)
    or without sending it; every other call goes through. ``late``: the request is sent
    that many seconds after the failure, from a thread (it was still on its way)."""

    def __init__(self, real: Any, method: str, err: grpc.RpcError, *, send: bool,
                 times: float = 1, aio: bool = False, late: float = 0.0) -> None:
        self.real, self.method, self.err, self.send = real, method, err, send
        self.left, self.aio, self.calls, self.late = times, aio, 0, late
        self.sent: list[Any] = []

    def __getattr__(self, name: str) -> Any:
        real = getattr(self.real, name)
        if name != self.method:
            return real

        def call(request: Any, **kw: Any) -> Any:
            self.calls += 1
            if self.left <= 0:
                return real(request, **kw)
            self.left -= 1
            if self.late:
                def later() -> None:
                    time.sleep(self.late)
                    self.sent.append(real(request, **kw))
                threading.Thread(target=later, daemon=True).start()
            elif self.send:
                real(request, **kw)
            raise self.err

        async def acall(request: Any, **kw: Any) -> Any:
            self.calls += 1
            if self.left <= 0:
                return await real(request, **kw)
            self.left -= 1
            if self.send:
                await real(request, **kw)
            raise self.err
        return acall if self.aio else call


def losing(c: Any, method: str, err: grpc.RpcError, *, send: bool, times: float = 1,
           late: float = 0.0) -> Losing:
    stub = Losing(c._stubs["market"], method, err, send=send, times=times,
                  aio=isinstance(c, AsyncClient), late=late)
    c._stubs["market"] = stub
    return stub


def buyer(market: dict[str, Any], **options: Any) -> tuple[Client, list[str]]:
    seen: list[str] = []
    c = Client(market["target"], market["buyer_token"], on_unknown=seen.append, **options)
    return c, seen


def test_an_applied_order_whose_answer_was_lost_is_found(market: dict[str, Any]) -> None:
    pid = market["pids"][0]
    for err in (UNKNOWN, Lost(grpc.StatusCode.DEADLINE_EXCEEDED, details="Deadline Exceeded"),
                Lost(grpc.StatusCode.UNAVAILABLE, details="Socket closed")):
        c, seen = buyer(market)
        losing(c, "PlaceOrder", err, send=True)
        o = c.place_order(pid, "buy", "0.40", 1)
        # answered as if acknowledged: the order as it is, by the id the SDK gave it
        assert o.state == "open" and GENERATED.fullmatch(o.client_order_id)
        assert seen == [f"client order id {o.client_order_id}"]
        assert c.get_order(o.order_id) == o
    # a one-of group, and a basket's legs
    c, seen = buyer(market)
    losing(c, "PlaceOneOf", UNKNOWN, send=True)
    group = c.place_one_of([{"product_id": market["pids"][1], "price": "0.40", "quantity": 1,
                             "hours": 2, "tif": "gtc"}], client_order_id="group-lost")
    assert (group.client_order_id, group.state, group.hours) == ("group-lost", "open", 2)
    losing(c, "PlaceBasket", UNKNOWN, send=True)
    legs = c.place_basket([{"product_id": p, "side": "buy", "price": "0.40", "quantity": 1}
                           for p in market["pids"][:2]])
    assert [o.product_id for o in legs] == market["pids"][:2]
    assert all(o.state == "cancelled" for o in legs)  # nothing to fill them: none filled
    assert len(seen) == 2


def test_an_order_never_applied_is_not_applied(market: dict[str, Any]) -> None:
    # not there is believed once the command's deadline (1 s here) has passed: a command
    # still on its way is refused by the engine after it
    c, seen = buyer(market, timeout=1)
    losing(c, "PlaceOrder", UNKNOWN, send=False)
    with pytest.raises(RpcError) as info:
        c.place_order(market["pids"][0], "buy", "0.40", 1, client_order_id="never")
    e = info.value
    assert (e.code, e.reason, e.client_order_id) == (grpc.StatusCode.UNAVAILABLE,
                                                      "NOT_APPLIED", "never")
    assert "did not apply it (looked up by client order id never" in e.message
    assert "safe to send it again" in e.message and seen == ["client order id never"]
    # and it is: the same id again
    assert c.place_order(market["pids"][0], "buy", "0.40", 1,
                         client_order_id="never").client_order_id == "never"


def test_an_order_still_on_its_way_when_first_looked_up_is_found(
        market: dict[str, Any]) -> None:
    """The connection lost with the request still on its way: the first lookups do not
    find it, and the SDK does not call it not applied before the command's own deadline
    has passed (after which the engine would refuse it); then it is found."""
    c, seen = buyer(market, timeout=2)
    stub = losing(c, "PlaceOrder", Lost(grpc.StatusCode.UNAVAILABLE, details="Socket closed"),
                  send=False, late=0.3)
    o = c.place_order(market["pids"][0], "buy", "0.35", 1)
    assert o.state == "open" and stub.sent[0].order.order_id == o.order_id
    assert seen == [f"client order id {o.client_order_id}"]


def test_an_outcome_the_venue_cannot_tell_in_time_stays_unknown(
        market: dict[str, Any]) -> None:
    c, seen = buyer(market, resolve_timeout=0.5)
    losing(c, "PlaceOrder", UNKNOWN, send=False)
    lookups = losing(c, "GetOrder", Lost(grpc.StatusCode.UNAVAILABLE, "JOURNAL_UNAVAILABLE"),
                     send=False, times=math.inf)
    started = time.monotonic()
    with pytest.raises(RpcError) as info:
        c.place_order(market["pids"][0], "buy", "0.40", 1, client_order_id="limbo")
    e = info.value
    assert (e.code, e.reason, e.client_order_id) == (grpc.StatusCode.UNKNOWN,
                                                      "OUTCOME_UNKNOWN", "limbo")
    assert "still unknown after" in e.message and "client order id limbo" in e.message
    assert e.outcome_unknown and seen == ["client order id limbo"]
    assert lookups.calls >= 2 and time.monotonic() - started < 10
    # a lookup answered otherwise: no more lookups, the outcome stays unknown
    c, seen = buyer(market)
    losing(c, "PlaceOrder", UNKNOWN, send=False)
    lookups = losing(c, "GetOrder", Lost(grpc.StatusCode.INTERNAL, "INTERNAL"), send=False)
    with pytest.raises(RpcError) as info:
        c.place_order(market["pids"][0], "buy", "0.40", 1)
    assert info.value.reason == "OUTCOME_UNKNOWN" and "the last answered INTERNAL" in (
        info.value.message)
    assert lookups.calls == 1 and len(seen) == 1
    # resolution off: the error at once, saying how to resolve it
    c, seen = buyer(market, resolve_timeout=0)
    losing(c, "PlaceOrder", UNKNOWN, send=False)
    with pytest.raises(RpcError) as info:
        c.place_order(market["pids"][0], "buy", "0.40", 1)
    assert info.value.reason == "OUTCOME_UNKNOWN" and seen == []
    cid = info.value.client_order_id
    assert GENERATED.fullmatch(cid) and f"client order id {cid}" in info.value.message


def test_failures_that_say_nothing_was_applied_are_not_looked_up(
        market: dict[str, Any]) -> None:
    for err in (Lost(grpc.StatusCode.UNAVAILABLE, "JOURNAL_UNAVAILABLE"),
                Lost(grpc.StatusCode.UNAVAILABLE, details="failed to connect to all "
                     "addresses; last error: Connection refused"),
                Lost(grpc.StatusCode.DEADLINE_EXCEEDED, "DEADLINE_EXCEEDED")):
        c, seen = buyer(market)
        losing(c, "PlaceOrder", err, send=False)
        with pytest.raises(RpcError) as info:
            c.place_order(market["pids"][0], "buy", "0.40", 1)
        assert not info.value.outcome_unknown and seen == []
        assert info.value.reason == (err.trailing_metadata() or (("", "UNAVAILABLE"),))[0][1]


def test_a_cancel_is_looked_up_by_its_order_and_an_amend_is_not(
        market: dict[str, Any]) -> None:
    c, seen = buyer(market, timeout=1)
    o = c.place_order(market["pids"][0], "buy", "0.30", 1)
    losing(c, "CancelOrder", UNKNOWN, send=False)
    with pytest.raises(RpcError) as info:
        c.cancel_order(o.order_id)
    assert info.value.reason == "NOT_APPLIED" and "it is open" in info.value.message
    assert seen == [f"order {o.order_id}"]
    losing(c, "CancelOrder", Lost(grpc.StatusCode.DEADLINE_EXCEEDED), send=True)
    assert c.cancel_order(o.order_id).state == "cancelled"
    o = c.place_order(market["pids"][0], "buy", "0.30", 1)
    losing(c, "AmendOrder", UNKNOWN, send=True)
    with pytest.raises(RpcError) as info:
        c.amend_order(o.order_id, price="0.31")
    assert info.value.reason == "OUTCOME_UNKNOWN"
    assert f"look order {o.order_id} up" in info.value.message and len(seen) == 2


def test_the_async_client_resolves_the_same(market: dict[str, Any]) -> None:
    async def go() -> None:
        seen: list[str] = []
        async with AsyncClient(market["target"], market["buyer_token"], timeout=1,
                               on_unknown=seen.append) as c:
            losing(c, "PlaceOrder", UNKNOWN, send=True)
            o = await c.place_order(market["pids"][0], "buy", "0.20", 1)
            assert o.state == "open" and seen == [f"client order id {o.client_order_id}"]
            assert (await c.get_order(client_order_id=o.client_order_id)) == o
            losing(c, "PlaceOrder", UNKNOWN, send=False)
            with pytest.raises(RpcError) as info:
                await c.place_order(market["pids"][0], "buy", "0.20", 1)
            assert info.value.reason == "NOT_APPLIED" and len(seen) == 2
    asyncio.run(go())


# ---- a journal that fails for real ------------------------------------------------------

def test_an_order_whose_journal_write_failed_resolves_to_not_applied(tmp_path: Path) -> None:
    """The server's file-size limit lowered to what its journal holds (as in
    tests/test_hardening.py): the order's write fails, the venue answers OUTCOME_UNKNOWN,
    and the SDK looks it up. The disk is given back as the lookup starts; once the server
    resumes, rebuilt from its journal, the lookup says the order is not there."""
    import resource

    from spotex.tools.testing import ServerProcess

    server = ServerProcess(tmp_path, OPERATOR_TOKEN)
    old = resource.prlimit(server.pid, resource.RLIMIT_FSIZE)
    try:
        op = Client(server.target, OPERATOR_TOKEN)
        pid = op.create_products(skus=["H100-SXM"], regions=["us-east"],
                                 from_hour=NOW_HOUR + 3, to_hour=NOW_HOUR + 4)[0].product_id
        token = op.create_account("b", ["buyer"]).token
        kept = Client(server.target, token).place_order(pid, "buy", "1.00", 2)
        segment = sorted((tmp_path / "journal").glob("*"))[-1]
        resource.prlimit(server.pid, resource.RLIMIT_FSIZE, (segment.stat().st_size, old[1]))
        seen: list[str] = []

        def disk_back(what: str) -> None:
            seen.append(what)
            resource.prlimit(server.pid, resource.RLIMIT_FSIZE, old)
        c = Client(server.target, token, on_unknown=disk_back, timeout=2)
        with pytest.raises(RpcError) as info:
            c.place_order(pid, "buy", "1.10", 1)
        e = info.value
        assert (e.code, e.reason) == (grpc.StatusCode.UNAVAILABLE, "NOT_APPLIED"), e
        assert "after OUTCOME_UNKNOWN" in e.message
        assert seen == [f"client order id {e.client_order_id}"]
        assert e.client_order_id not in {o.client_order_id for o in c.list_orders()}
        # safe to send again, with the same id
        again = c.place_order(pid, "buy", "1.10", 1, client_order_id=e.client_order_id)
        assert again.state == "open"
        assert {o.order_id for o in c.list_orders()} == {kept.order_id, again.order_id}
    finally:
        resource.prlimit(server.pid, resource.RLIMIT_FSIZE, old)
        assert server.stop() == 0, server.text()
    assert "journal writable again" in server.text()


def test_a_lookup_queued_behind_a_failed_round_waits_for_the_rebuild(tmp_path: Path) -> None:
    """A lookup by client order id that reached the server before a round failed, and
    waited behind it on the writer, is refused JOURNAL_UNAVAILABLE: the failed round's
    command is still in memory until the exchange is rebuilt from its journal, so
    finding it there would call applied what may not be."""
    from conftest import serving

    from spotex.client.calls import _Calls

    with serving(tmp_path, tick_seconds=0.2) as r:
        op = Client(r.target, OPERATOR_TOKEN)
        pid = op.create_products(skus=["H100-SXM"], regions=["us-east"],
                                 from_hour=NOW_HOUR + 3, to_hour=NOW_HOUR + 4)[0].product_id
        b = Client(r.target, op.create_account("b", ["buyer"]).token)
        b.place_order(pid, "buy", "1.00", 1, client_order_id="here")
        host = r.server.host

        def round_fails() -> None:
            time.sleep(1.0)  # the lookup arrives meanwhile, passes the first check, waits
            host.unavailable = "a round failed (test)"
        failing = host.submit(round_fails)
        with pytest.raises(RpcError) as info:
            b._call(_Calls.get_order_by_client_id("here"))
        assert info.value.reason == "JOURNAL_UNAVAILABLE"
        with pytest.raises(Exception, match="did not confirm"):
            failing.result(10)  # the round it failed in acknowledges nothing
        # the next ticks rebuild the exchange from the journal: found again
        deadline = time.monotonic() + 10
        while True:
            try:
                assert b.get_order(client_order_id="here").client_order_id == "here"
                break
            except RpcError as err:
                assert err.reason == "JOURNAL_UNAVAILABLE"
                assert time.monotonic() < deadline, "never rebuilt"
                time.sleep(0.1)
