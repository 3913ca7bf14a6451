"""Block auctions of a venue of two shards (H100 on shard 1, B200 on shard 2) behind a
gateway: one auction on every shard under one id, numbered above every shard's last,
its results merged; a shard's refusal reported by shard, the next run still numbered
above all; the gateway's daily gate. Needs the optimiser (highspy)."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from conftest import OPERATOR_TOKEN, Collector, Running, on_thread, serving
from test_shards import GATEWAY_TOKEN, HOUR, LIMITS, ROUTES, Venue, market, pid

from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex._proto.spotex.v1 import spotex_pb2_grpc as pb_grpc
from spotex.client import Client, RpcError
from spotex.cluster.gateway import ShardGateway
from spotex.cluster.routes import Routes, ShardSpec
from spotex.cluster.up import auction_options

pytest.importorskip("highspy")
SKUS = ("H100", "B200")


@dataclass
class Shards:
    venue: Venue
    gateway: ShardGateway
    loop: asyncio.AbstractEventLoop  # the gateway's
    engines: dict[int, Running]


@contextlib.contextmanager
def shards(base: Path, schedule: str = "") -> Iterator[Shards]:
    with contextlib.ExitStack() as stack:
        engines = {i: stack.enter_context(serving(base / f"shard{i}", shard_index=i,
                                                  gateway_token=GATEWAY_TOKEN, limits=LIMITS,
                                                  tick_seconds=0.2))
                   for i in (1, 2)}
        table = Routes([ShardSpec(i, (r.target,)) for i, r in engines.items()], ROUTES)
        gw, loop = stack.enter_context(on_thread(
            lambda: ShardGateway.start("127.0.0.1:0", table, GATEWAY_TOKEN, base / "gateway",
                                       OPERATOR_TOKEN, limits=LIMITS, access_log=False,
                                       auction_schedule=schedule),
            lambda g: g.stop(0.5)))
        v = Venue(f"127.0.0.1:{gw.port}", {i: r.target for i, r in engines.items()})
        yield Shards(v, gw, loop, engines)


def on_engine(s: Shards, index: int) -> Client:
    """Shard ``index``'s engine itself, as its operator."""
    return Client(s.engines[index].target, OPERATOR_TOKEN)


def subscribed(execs: Collector, client: Client, sku: str) -> None:
    """Once ``execs`` (``client``'s executions through the gateway) hears from ``sku``'s
    shard: a probe order placed and cancelled until its events come through."""
    end = time.monotonic() + 30
    while True:
        probe = client.place_order(pid(sku, 2), "buy", "0.01", 1)
        client.cancel_order(probe.order_id)
        try:
            execs.wait_for(lambda xs, probe_id=probe.order_id: any(
                x.order is not None and x.order.order_id == probe_id for x in xs),
                timeout=0.5)
            return
        except AssertionError:
            assert time.monotonic() < end, f"no executions from {sku}'s shard"


def test_the_gateway_runs_one_auction_on_every_shard_under_one_id(tmp_path: Path) -> None:
    with shards(tmp_path) as s:
        op, seller, buyer = market(s.venue)
        for sku in SKUS:
            for h in range(3):
                seller.place_order(pid(sku, h), "sell", "1.00", 16, cluster_id=f"{sku}-c")
        execs = Collector(buyer.executions())
        for sku in SKUS:
            subscribed(execs, buyer, sku)
        bids = {sku: buyer.place_order(pid(sku), "buy", "2.00", 8, gang=8, hours=2,
                                       auction=True) for sku in SKUS}
        assert {b.state for b in bids.values()} == {"open"}
        ids = sorted(b.order_id for b in bids.values())
        assert [i >> 48 for i in ids] == [1, 2], "one bid on each shard"

        # before the gate: the buyer's own orders on both shards, both families priced
        seen = buyer.indicative_auction(HOUR, HOUR + 1)
        assert seen.your_orders == tuple((i, 8) for i in ids) and seen.bids == 2
        assert {p.product_id for p in seen.prices} == {pid(k, h) for k in SKUS
                                                       for h in (0, 1)}
        assert seller.indicative_auction(HOUR, HOUR + 1).your_orders == ()

        result = op.run_auction(HOUR, HOUR + 1, time_limit=5)
        assert (result.auction_id, result.state, result.bids) == (1, "cleared", 2)
        assert (result.from_hour, result.to_hour) == (HOUR, HOUR + 1)
        assert result.filled_orders == tuple(ids)
        assert result.welfare == Decimal(32)  # ($2 - $1) x 8 GPUs x 2 hours, twice
        assert [p.product_id for p in result.prices] == sorted(
            pid(k, h) for k in SKUS for h in (0, 1))
        assert {p.quantity for p in result.prices} == {8}
        # each shard ran auction 1 over its own family
        for index, sku in ((1, "H100"), (2, "B200")):
            own = on_engine(s, index).auction_result(1)
            assert own.filled_orders == (bids[sku].order_id,)
            assert {p.product_id.split("/")[0] for p in own.prices} == {sku}
        # the venue's result, as the latest, by id and in the list
        assert buyer.auction_result() == result == buyer.auction_result(1)
        assert buyer.list_auctions() == [result]
        for b in bids.values():
            got = buyer.get_order(b.order_id)
            assert got.state == "filled" and {f.auction_id for f in got.fills} == {1}
        execs.wait_for(lambda xs: {x.fill.product_id.split("/")[0] for x in xs
                                   if x.kind == "trade"} == set(SKUS), timeout=10)
        assert {x.auction_id for x in execs.items if x.kind == "trade"} == {1}

        # the next gets the next id on every shard
        again = op.run_auction(HOUR + 2, HOUR + 3, time_limit=5)
        assert (again.auction_id, again.state, again.bids) == (2, "cleared", 0)
        assert [on_engine(s, i).auction_result().auction_id for i in (1, 2)] == [2, 2]
        assert [a.auction_id for a in buyer.list_auctions()] == [2, 1]

        # refused at the gateway before any shard hears of it: nothing changes
        before = op.state_hash()
        for window in ((HOUR + 1, HOUR), (HOUR, HOUR + 24 * 14 + 1)):
            with pytest.raises(RpcError) as err:
                op.run_auction(*window)
            assert err.value.code == grpc.StatusCode.INVALID_ARGUMENT
        with pytest.raises(RpcError) as err:
            buyer.run_auction(HOUR, HOUR + 1)
        assert err.value.reason == "ROLE_REQUIRED"
        assert op.state_hash() == before
        assert [a.auction_id for a in buyer.list_auctions()] == [2, 1]
        buyer.close()


def test_the_venue_numbers_above_every_shard_and_a_partial_run_names_the_shards(
        tmp_path: Path) -> None:
    with shards(tmp_path) as s:
        op, _, buyer = market(s.venue)
        channel = grpc.insecure_channel(s.venue.target)
        stub = pb_grpc.OperatorStub(channel)
        md = (("authorization", f"Bearer {OPERATOR_TOKEN}"),)
        # none yet: NOT_FOUND as an engine answers
        with pytest.raises(RpcError) as err:
            buyer.auction_result()
        assert (err.value.code, err.value.reason) == (grpc.StatusCode.NOT_FOUND,
                                                      "UNKNOWN_AUCTION")
        assert buyer.list_auctions() == []
        # an engine run on its own: the venue shows shard 2's part as auction 1
        own = on_engine(s, 2).run_auction(HOUR, HOUR + 1, time_limit=1)
        assert own.auction_id == 1
        assert buyer.auction_result(1) == own == buyer.auction_result()
        # the venue's next is above every shard's last: 2 on both
        assert op.run_auction(HOUR, HOUR + 1, time_limit=1).auction_id == 2
        assert [on_engine(s, i).auction_result().auction_id for i in (1, 2)] == [2, 2]
        # an id of the caller's: refused at or below the last, else used on every shard
        with pytest.raises(grpc.RpcError) as rpc:
            stub.RunAuction(pb.RunAuctionRequest(from_hour=HOUR, to_hour=HOUR + 1,
                                                 auction_id=2), metadata=md, timeout=60)
        assert rpc.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "taken" in (rpc.value.details() or "")
        got = stub.RunAuction(pb.RunAuctionRequest(from_hour=HOUR, to_hour=HOUR + 1,
                                                   time_limit_ms=1000, auction_id=5),
                              metadata=md, timeout=60)
        assert got.auction_id == 5
        assert [on_engine(s, i).auction_result().auction_id for i in (1, 2)] == [5, 5]

        # shard 2 is clearing an auction of its own (started, not cleared): it refuses
        # the venue's, which shard 1 runs; the caller is told both
        host = s.engines[2].server.host
        assert host.call(lambda: host.run(lambda ts: host.ex.start_auction(
            ts, HOUR, HOUR + 1, 0))) == 6
        with pytest.raises(RpcError) as err:
            op.run_auction(HOUR, HOUR + 1, time_limit=1)
        assert err.value.reason == "AUCTION_IN_PROGRESS"
        assert "shard 2 refused it" in err.value.message
        assert "shard 1 ran it" in err.value.message and "auction 6" in err.value.message
        assert on_engine(s, 1).auction_result().auction_id == 6
        # shard 2's own ends (abandoned, as a restart would): auction 6 of the venue is
        # shard 1's cleared one and shard 2's abandoned one, so abandoned
        asyncio.run_coroutine_threadsafe(s.engines[2].server.auctions.abandon_open(),
                                         s.engines[2].loop).result(30)
        assert buyer.auction_result(6).state == "abandoned"
        # the next run is above every shard's last, and clears on both
        nxt = op.run_auction(HOUR, HOUR + 1, time_limit=1)
        assert (nxt.auction_id, nxt.state) == (7, "cleared")

        # one at a time: a second while one runs is refused, as by an engine
        lock = s.gateway.front.auctions._lock
        asyncio.run_coroutine_threadsafe(lock.acquire(), s.loop).result(10)
        try:
            with pytest.raises(RpcError) as err:
                op.run_auction(HOUR, HOUR + 1, time_limit=1)
            assert err.value.reason == "AUCTION_IN_PROGRESS"
        finally:
            s.loop.call_soon_threadsafe(lock.release)
        assert s.gateway.front.auctions.outcomes == {"cleared": 3, "partial": 1,
                                                     "refused": 0}

        # the venue's list, newest first, exact page by page
        everything = [a.auction_id for a in buyer.list_auctions()]
        assert everything == [7, 6, 5, 2, 1]
        market_stub = pb_grpc.MarketStub(channel)
        for size in (1, 2, 3):
            ids, token = [], ""
            while True:
                page = market_stub.ListAuctions(pb.ListAuctionsRequest(
                    page_size=size, page_token=token), metadata=md)
                assert len(page.auctions) <= size
                ids += [a.auction_id for a in page.auctions]
                if not (token := page.next_page_token):
                    break
            assert ids == everything, size
        channel.close()


def test_the_gateway_s_daily_gate_runs_the_venue_s_auction(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from spotex.server import auctions
    # the gateway's clock: half a second before 12:00 UTC on 2027-01-14 when the gate is
    # first reckoned (however long the venue took to start), running on from there
    gate = dt.datetime(2027, 1, 14, 12, 0, tzinfo=dt.UTC)
    first_asked: list[dt.datetime] = []

    def clock() -> dt.datetime:
        real = dt.datetime.now(dt.UTC)
        first_asked[:] = first_asked or [real]
        return gate - dt.timedelta(seconds=0.5) + (real - first_asked[0])
    monkeypatch.setattr(auctions, "now", clock)
    with shards(tmp_path, schedule="12:00") as s:
        _, _, buyer = market(s.venue)
        end = time.monotonic() + 60
        while True:
            # cleared on both shards: the gateway answers an id once any shard has it,
            # and the other may still be solving
            try:
                mine = [on_engine(s, i).auction_result().auction_id for i in (1, 2)]
                if mine == [1, 1]:
                    result = buyer.auction_result()
                    break
            except RpcError as err:
                assert err.reason == "UNKNOWN_AUCTION", err
            assert time.monotonic() < end, "the gate's auction never cleared on both"
            time.sleep(0.1)
        # the hours of the next UTC day, one id on both shards
        first = int(dt.datetime(2027, 1, 15, tzinfo=dt.UTC).timestamp()) // 3600
        assert (result.auction_id, result.from_hour, result.to_hour, result.state) == (
            1, first, first + 24, "cleared")
        assert [on_engine(s, i).auction_result().auction_id for i in (1, 2)] == [1, 1]


def test_cluster_up_gives_its_engines_no_schedule_and_the_venue_s_hold() -> None:
    assert auction_options("12:00", "auto") == ("--auction-schedule", "",
                                                "--auction-hold", "on")
    assert auction_options("", "auto")[-1] == "off"
    assert auction_options("12:00", "off")[-1] == "off"
    assert auction_options("", "on")[-1] == "on"


def test_spotex_gateway_refuses_a_schedule_that_is_no_time_of_day(tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", **{k: v for k, v in os.environ.items()
                                       if k == "PYTHONPATH"}}
    for command in (["gateway", "--shard", "1=127.0.0.1:1"], ["cluster", "up"]):
        out = subprocess.run([sys.executable, "-m", "spotex.cli", *command,
                              "--auction-schedule", "25:00"], capture_output=True,
                             text=True, timeout=60, cwd=tmp_path, env=env)
        assert out.returncode == 2 and "is not a time of day" in out.stderr, out.stderr
        assert "Traceback" not in out.stderr
