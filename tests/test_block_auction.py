"""Block auctions through a real server: auction orders wait while continuous asks rest
beside them, `RunAuction` clears them at one price per product on concrete GPUs, the
results are public and survive a restart, an auction a restart left open is abandoned
with every order it froze live again, and bad input is refused naming the term."""

from __future__ import annotations

import contextlib
import json
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import OPERATOR_TOKEN, Collector, serving

from spotex.client import Client, RpcError


def market(target: str, hours: int = 4) -> tuple[Client, Client, list[str], int]:
    """A seller with two 8-GPU nodes offering all 16 GPUs at $1.00 in every hour."""
    op = Client(target, OPERATOR_TOKEN)
    h = int(time.time()) // 3600 + 40
    ids = [p.product_id for p in op.create_products(
        skus=["H100-SXM"], regions=["us-east"], from_hour=h, to_hour=h + hours)]
    seller = Client(target, op.create_account("auction-seller", ["seller"]).token)
    seller.register_capacity("iad-9", sku="H100-SXM", region="us-east",
                             nodes=[("n0", 8), ("n1", 8)], from_hour=h, to_hour=h + hours)
    for pid in ids:
        seller.place_order(pid, "sell", "1.00", 16, cluster_id="iad-9")
    return op, seller, ids, h


def buyer(op: Client, target: str, name: str) -> Client:
    return Client(target, op.create_account(name, ["buyer"]).token)


def test_an_auction_clears_what_first_come_would_have_given_away(tmp_path: Path) -> None:
    with serving(tmp_path, web_listen="127.0.0.1:0") as r:
        op, seller, ids, h = market(r.target)
        lab, small = buyer(op, r.target, "lab"), buyer(op, r.target, "small")
        # first come, the small block would take one node for 3 hours and leave the lab
        # (all 16 GPUs for 2 hours, worth more) without; the auction sees both
        early = small.place_order(ids[0], "buy", "1.50", 8, gang=8, hours=3, auction=True)
        late = lab.place_order(ids[0], "buy", "2.00", 16, gang=8, hours=2, auction=True)
        assert (early.state, early.auction, late.state) == ("open", True, "open")
        assert small.get_book(ids[0]).bids == (), "an auction order is in no book"
        # before the gate: what would clear, each sees its own orders, nothing changes
        hash_before = op.state_hash()
        seen = lab.indicative_auction(h, h + 1)
        assert seen.your_orders == ((late.order_id, 16),) and seen.bids == 2
        assert small.indicative_auction(h, h + 1).your_orders == ((early.order_id, 0),)
        assert {p.product_id: p.quantity for p in seen.prices} == {ids[0]: 16, ids[1]: 16}
        assert op.state_hash() == hash_before
        execs = Collector(lab.executions())
        prints = Collector(small.market_data([ids[0]]))
        time.sleep(0.3)  # the streams' subscriptions register
        result = op.run_auction(h, h + 1, time_limit=5)
        assert result.state == "cleared" and result.bids == 2
        assert result.filled_orders == (late.order_id,)
        assert result.welfare == Decimal(32)  # ($2.00 - $1.00) x 16 GPUs x 2 hours
        # one price per product, every auction trade in it at that price
        prices = {p.product_id: p.price for p in result.prices}
        assert set(prices) == set(ids[:2]) and {p.quantity for p in result.prices} == {16}
        filled = lab.get_order(late.order_id)
        assert filled.state == "filled"
        assert {(f.product_id, f.price, f.auction_id) for f in filled.fills} == {
            (pid, prices[pid], result.auction_id) for pid in ids[:2]}
        assert small.get_order(early.order_id).state == "open", "it waits for the next"
        # concrete GPUs, never one twice in an hour
        got = lab.list_allocations()
        assert sum(a.quantity for a in got) == 32
        seen = [(a.hour, node, g) for a in got for node, gpus in a.slots for g in gpus]
        assert len(seen) == len(set(seen))
        execs.wait_for(lambda xs: any(x.kind == "block_allocated" for x in xs))
        assert {x.auction_id for x in execs.items if x.kind == "trade"} == {result.auction_id}
        # public: the latest, and the list; on the market data stream; on the web page
        assert small.auction_result() == result == small.auction_result(result.auction_id)
        assert [a.auction_id for a in small.list_auctions()] == [result.auction_id]
        prints.wait_for(lambda xs: any(x.kind == "auction" for x in xs))
        (p,) = [x for x in prints.items if x.kind == "auction"]
        assert (p.auction_id, p.price, p.quantity) == (result.auction_id, prices[ids[0]], 16)
        req = urllib.request.Request(
            f"http://127.0.0.1:{r.server.web_port}/api/auctions",
            headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            page = json.loads(resp.read())
        assert [a["auction_id"] for a in page["auctions"]] == [result.auction_id]
        assert page["auctions"][0]["filled_orders"] == [late.order_id]
        before = op.state_hash()
    with serving(tmp_path) as r:
        op = Client(r.target, OPERATOR_TOKEN)
        assert op.state_hash() == before, "a restart recovers to the same state"
        assert op.auction_result(result.auction_id) == result


@pytest.mark.parametrize("snapshot", [True, False])
def test_an_auction_a_restart_left_open_is_abandoned_and_its_orders_live_again(
        tmp_path: Path, snapshot: bool) -> None:
    with serving(tmp_path) as r:
        op, seller, ids, h = market(r.target)
        lab_token = op.create_account("lab", ["buyer"]).token
        lab = Client(r.target, lab_token)
        o = lab.place_order(ids[0], "buy", "2.00", 16, gang=8, hours=2, auction=True)
        host = r.server.host
        # the auction starts (journaled) and the process goes before its result
        auction_id = host.call(lambda: host.run(lambda ts: host.ex.start_auction(
            ts, h, h + 1)))
        with pytest.raises(RpcError) as frozen:
            lab.cancel_order(o.order_id)
        assert frozen.value.reason == "AUCTION_IN_PROGRESS"
        with pytest.raises(RpcError) as busy:
            op.run_auction(h, h + 1)
        assert busy.value.reason == "AUCTION_IN_PROGRESS"
        if not snapshot:
            # recovery from the journal alone
            host.take_snapshot = lambda: (host.sequence, "")  # type: ignore[method-assign]
    with serving(tmp_path) as r:
        op = Client(r.target, OPERATOR_TOKEN)
        lab_again = Client(r.target, lab_token)
        abandoned = op.auction_result()
        assert (abandoned.auction_id, abandoned.state) == (auction_id, "abandoned")
        assert abandoned.filled_orders == ()
        # live again: the next auction fills it, or its owner cancels it
        result = op.run_auction(h, h + 1, time_limit=5)
        assert result.auction_id == auction_id + 1
        assert result.filled_orders == (o.order_id,)
        assert lab_again.get_order(o.order_id).state == "filled"


def test_a_server_without_the_optimiser_refuses_auctions_before_starting_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "highspy" else real(name, *a))
    with serving(tmp_path) as r:
        op = Client(r.target, OPERATOR_TOKEN)
        before = op.state_hash()
        with pytest.raises(RpcError) as err:
            op.run_auction(1000, 1001)
        assert (err.value.reason, err.value.code.name) == ("AUCTION_UNAVAILABLE",
                                                           "FAILED_PRECONDITION")
        assert "spotex[auction]" in err.value.message
        assert op.state_hash() == before


def test_auction_bids_get_their_locality_and_colocation(running: object) -> None:
    """Three 8-GPU nodes, one in rack r1 and two in rack r2. A lab bids 16 GPUs in one
    rack and a trader 8 GPUs anywhere: only with the trader on r1 do both fill, and the
    auction finds that. Then the lab's next block, next to what it holds in one rack,
    lands in r2 although r1's node is free too."""
    r = running
    op = Client(r.target, OPERATOR_TOKEN)  # type: ignore[attr-defined]
    h = int(time.time()) // 3600 + 60
    ids = [p.product_id for p in op.create_products(
        skus=["B200"], regions=["us-west"], from_hour=h, to_hour=h + 2)]
    seller = Client(r.target, op.create_account("rack-seller", ["seller"]).token)  # type: ignore[attr-defined]
    seller.register_capacity("sjc-1", sku="B200", region="us-west",
                             nodes=[("a0", 8, "b", "r1", ""), ("b0", 8, "b", "r2", ""),
                                    ("b1", 8, "b", "r2", "")],
                             from_hour=h, to_hour=h + 2)
    seller.place_order(ids[0], "sell", "1.00", 24, cluster_id="sjc-1")
    lab = buyer(op, r.target, "rack-lab")  # type: ignore[attr-defined]
    trader = buyer(op, r.target, "rack-trader")  # type: ignore[attr-defined]
    racked = lab.place_order(ids[0], "buy", "3.00", 16, gang=8, locality="rack", auction=True)
    loose = trader.place_order(ids[0], "buy", "2.00", 8, gang=8, auction=True)
    result = op.run_auction(h, h + 1, time_limit=5)
    assert set(result.filled_orders) == {racked.order_id, loose.order_id}
    assert result.dropped_orders == ()
    got = lab.get_order(racked.order_id)
    assert (got.placed_level, got.placed_domain) == ("rack", "b/r2")
    held = lab.list_allocations()
    assert {node for a in held for node, _ in a.slots} == {"b0", "b1"}
    assert {node for a in trader.list_allocations() for node, _ in a.slots} == {"a0"}
    # next to the lab's allocation, in one rack: r2, though r1's node is free too
    seller.place_order(ids[1], "sell", "1.00", 24, cluster_id="sjc-1")
    near = lab.place_order(ids[1], "buy", "3.00", 8, gang=8, locality="rack",
                           colocate_with=held[0].trade_id, auction=True)
    second = op.run_auction(h + 1, h + 2, time_limit=5)
    assert second.filled_orders == (near.order_id,)
    placed = lab.get_order(near.order_id)
    assert (placed.placed_level, placed.placed_domain) == ("rack", "b/r2")
    nodes = {node for a in lab.list_allocations() if a.product_id == ids[1]
             for node, _ in a.slots}
    assert nodes <= {"b0", "b1"} and len(nodes) == 1


def test_bad_auction_terms_are_refused_naming_the_term(running: object) -> None:
    r = running
    op, seller, ids, h = market(r.target)  # type: ignore[attr-defined]
    lab = buyer(op, r.target, "terms-lab")  # type: ignore[attr-defined]
    cases = {
        "IOC": dict(tif="ioc"),
        "market": dict(order_type="market"),
        "post-only": dict(post_only=True),
        "minimum": dict(min_quantity=8),
        "display quantity": dict(display_quantity=4),
    }
    for word, terms in cases.items():
        with pytest.raises(RpcError) as err:
            lab.place_order(ids[0], "buy", "2.00", 8, auction=True, **terms)  # type: ignore[arg-type]
        assert err.value.reason == "INVALID_AUCTION", word
        assert word in err.value.message, (word, err.value.message)
    with pytest.raises(RpcError) as ask:
        seller.place_order(ids[0], "sell", "1.00", 8, cluster_id="iad-9", auction=True)
    assert ask.value.reason == "INVALID_AUCTION" and "one-hour ask" in ask.value.message
    with pytest.raises(RpcError) as ganged:
        seller.place_order(ids[0], "sell", "1.00", 8, cluster_id="iad-9", auction=True,
                           hours=2, gang=8)
    assert ganged.value.reason == "INVALID_AUCTION" and "gang" in ganged.value.message
    with pytest.raises(RpcError) as window:
        op.run_auction(h + 1, h)
    assert window.value.reason == "INVALID_ARGUMENT"
    with pytest.raises(RpcError) as nobody:
        lab.run_auction(h, h + 1)
    assert nobody.value.reason == "ROLE_REQUIRED"
    # nothing changed: the seller's asks all rest as placed
    assert [lvl.quantity for lvl in lab.get_book(ids[0]).asks] == [16]


def test_hours_held_for_their_auction_open_when_it_clears(tmp_path: Path) -> None:
    from spotex.server.auctions import AuctionSettings

    with serving(tmp_path, auction=AuctionSettings(hold=True)) as r:
        op, seller, ids, h = market(r.target, hours=2)
        assert {p.state for p in op.list_products()} == {"auction"}
        lab = buyer(op, r.target, "held-lab")
        with pytest.raises(RpcError) as first:
            lab.place_order(ids[0], "buy", "2.00", 8)
        assert first.value.reason == "AUCTION_FIRST" and "--auction" in first.value.message
        o = lab.place_order(ids[0], "buy", "2.00", 8, auction=True)
        result = op.run_auction(h, h + 1, time_limit=5)
        assert result.filled_orders == (o.order_id,)
        assert {p.product_id: p.state for p in op.list_products()} == {
            ids[0]: "open", ids[1]: "auction"}
        assert lab.place_order(ids[0], "buy", "2.00", 8).state == "filled"


def test_the_daily_gate_and_its_window() -> None:
    import datetime as dt

    from click.testing import CliRunner

    from spotex.cli import main
    from spotex.server.auctions import next_gate

    def hour(s: str) -> int:
        return int(dt.datetime.fromisoformat(s + ":00+00:00").timestamp()) // 3600
    at = dt.datetime(2026, 12, 6, 11, 0, tzinfo=dt.UTC)
    assert next_gate("12:00", at) == (at.replace(hour=12), hour("2026-12-07T00"))
    later = at.replace(hour=12, minute=30)
    assert next_gate("12:00", later) == (dt.datetime(2026, 12, 7, 12, 0, tzinfo=dt.UTC),
                                         hour("2026-12-08T00"))
    bad = CliRunner().invoke(main, ["serve", "--auction-schedule", "25:00"])
    assert bad.exit_code == 2 and "is not a time of day HH:MM (UTC)" in bad.output


def _worker_of(pid: int) -> int | None:
    """The auction worker the server ``pid`` started, if one runs."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            stat = (proc / "stat").read_text()
            cmd = (proc / "cmdline").read_bytes()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        if ppid == pid and b"spotex.server.auctions" in cmd:
            return int(proc.name)
    return None


def test_a_kill_9_between_an_auctions_start_and_its_clear_loses_nothing(
        tmp_path: Path) -> None:
    """The server is killed while its worker solves (the worker held still with SIGSTOP,
    so the moment is certain): after a restart the auction is abandoned, every order it
    froze is live again, the journal replays to the same state, and the next auction
    clears them."""
    import os
    import signal
    import threading

    from spotex.tools.testing import ServerProcess

    server = ServerProcess(tmp_path, OPERATOR_TOKEN)
    worker = None
    try:
        op, seller, ids, h = market(server.target)
        lab_token = op.create_account("lab", ["buyer"]).token
        lab = Client(server.target, lab_token)
        o = lab.place_order(ids[0], "buy", "2.00", 16, gang=8, hours=2, auction=True)
        def run() -> None:
            with contextlib.suppress(RpcError):  # the server dies under it
                op.run_auction(h, h + 1)
        threading.Thread(target=run, daemon=True).start()
        end = time.monotonic() + 30
        while (worker := _worker_of(server.pid)) is None:
            assert time.monotonic() < end, "no auction worker started"
            time.sleep(0.005)
        os.kill(worker, signal.SIGSTOP)
        with pytest.raises(RpcError) as frozen:
            lab.cancel_order(o.order_id)
        assert frozen.value.reason == "AUCTION_IN_PROGRESS"
        server.kill()
    finally:
        server.kill()
        if worker is not None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(worker, signal.SIGKILL)
    again = ServerProcess(tmp_path, OPERATOR_TOKEN)
    try:
        op = Client(again.target, OPERATOR_TOKEN)
        abandoned = op.auction_result()
        assert (abandoned.state, abandoned.filled_orders) == ("abandoned", ())
        lab = Client(again.target, lab_token)
        assert lab.get_order(o.order_id).state == "open"
        result = op.run_auction(h, h + 1, time_limit=5)
        assert result.filled_orders == (o.order_id,)
        assert lab.get_order(o.order_id).state == "filled"
        seq, state = op.state_hash()
    finally:
        again.stop()
    # the journal alone, replayed from its first command, gives the same state
    from spotex.server.replay import rebuild
    replayed = rebuild(tmp_path)
    assert (replayed.sequence, replayed.state_hash) == (seq, state)


def test_a_seller_block_is_sold_whole_to_two_buyers_or_not_at_all(tmp_path: Path) -> None:
    with serving(tmp_path) as r:
        op = Client(r.target, OPERATOR_TOKEN)
        h = int(time.time()) // 3600 + 40
        ids = [p.product_id for p in op.create_products(
            skus=["H200"], regions=["us-east"], from_hour=h, to_hour=h + 2)]
        seller = Client(r.target, op.create_account("block-seller", ["seller"]).token)
        seller.register_capacity("one", sku="H200", region="us-east", nodes=[("n0", 8)],
                                 from_hour=h, to_hour=h + 2)
        block = seller.place_order(ids[0], "sell", "1.00", 8, cluster_id="one", hours=2,
                                   auction=True)
        assert (block.state, block.hours, block.auction) == ("open", 2, True)
        with pytest.raises(RpcError) as taken:  # its GPUs are reserved in both hours
            seller.place_order(ids[1], "sell", "1.00", 1, cluster_id="one")
        assert taken.value.reason == "INSUFFICIENT_CAPACITY"
        a, b = buyer(op, r.target, "hour-a"), buyer(op, r.target, "hour-b")
        first = a.place_order(ids[0], "buy", "2.00", 8, gang=8, auction=True)
        # one hour of it wanted: a lone hour is never sold
        lone = op.run_auction(h, h + 2, time_limit=5)
        assert lone.filled_orders == () and seller.get_order(block.order_id).state == "open"
        second = b.place_order(ids[1], "buy", "2.00", 8, gang=8, auction=True)
        both = op.run_auction(h, h + 2, time_limit=5)
        assert set(both.filled_orders) == {first.order_id, second.order_id}
        sold = seller.get_order(block.order_id)
        assert (sold.state, sold.filled) == ("filled", 8)
        assert sorted((f.product_id, f.quantity) for f in sold.fills) == [
            (ids[0], 8), (ids[1], 8)]
        assert all(f.auction_id == both.auction_id for f in sold.fills)
        assert [x.state for x in (a.get_order(first.order_id), b.get_order(second.order_id))] \
            == ["filled", "filled"]
        before = op.state_hash()
    with serving(tmp_path) as r:
        assert Client(r.target, OPERATOR_TOKEN).state_hash() == before


def test_the_demo_ends_with_a_day_ahead_block_auction() -> None:
    import io

    from rich.console import Console

    from spotex.tools.demo import run_demo

    out = io.StringIO()
    run_demo("127.0.0.1:0", rounds=20, console=Console(file=out, width=120))
    text = out.getvalue()
    assert "day-ahead block auction 1" in text and "clearing prices (one per hour)" in text
    rows = [line for line in text.splitlines() if line.startswith("│ ") and "H100" not in line
            and line.rstrip(" │").endswith(("yes", "no"))]
    assert len(rows) == 4 and any(r.rstrip(" │").endswith("yes") for r in rows), text


def test_the_demo_without_the_optimiser_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from rich.console import Console

    import spotex.extras
    from spotex.tools.demo import auction_demo

    monkeypatch.setattr(spotex.extras, "available", lambda module: module != "highspy")
    out = io.StringIO()
    auction_demo(None, {}, {}, 0, Console(file=out, width=120))  # type: ignore[arg-type]
    assert "pip install 'spotex[auction]'" in out.getvalue()
