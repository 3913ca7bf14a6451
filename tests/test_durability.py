"""Durability: the journal, snapshots, recovery and crash safety.

For random command logs the live state hash equals a full replay of the journal, a
snapshot plus the journal tail, and a recovered gateway. Damage at the tail is detected
and cut; damage in the middle is refused. A server killed with SIGKILL under load comes
back with every acknowledged order.
"""

from __future__ import annotations

import random
import re
import shutil
import tempfile
import threading
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spotex import JournalError, SpotexError
from spotex._core import journal_segments, read_journal, replay_journal
from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex.client import Client, RpcError
from spotex.server.host import JOURNAL, SNAPSHOTS, EngineHost, HostError, read_snapshot
from spotex.tools.testing import ServerProcess

HOUR = 3_600_000_000
T0 = 490_000 * HOUR
PID = "H100-SXM/us-east/2025-11-26T16"  # hour 490_048


class Clock:
    def __init__(self) -> None:
        self.t = T0

    def __call__(self) -> int:
        self.t += 7
        return self.t


ops = st.lists(st.tuples(
    st.sampled_from(["bid", "bid", "ask", "ask", "cancel", "amend", "tick", "snapshot"]),
    st.integers(1, 3), st.integers(-4, 4), st.integers(1, 16), st.integers(0, 10**6)),
    min_size=1, max_size=60)


def capacity(account: int) -> bytes:
    return pb.RegisterCapacityRequest(
        cluster_id=f"c{account}", sku="H100-SXM", region="us-east",
        nodes=[pb.Node(node_id="n0", gpus=8), pb.Node(node_id="n1", gpus=8)],
        from_hour=490_000, to_hour=490_100).SerializeToString()


def order(side: str, price: int, qty: int, account: int, gang: int = 1) -> bytes:
    return pb.PlaceOrderRequest(
        product_id=PID, side=pb.SIDE_BUY if side == "buy" else pb.SIDE_SELL,
        price_micros=price, quantity=qty, gang=gang,
        cluster_id=f"c{account}" if side == "sell" else "").SerializeToString()


def place(gw: EngineHost, account: int, side: str, price: int, qty: int, gang: int = 1) -> bytes:
    """On the writer: an order from an account that may buy and sell."""
    return gw.place(account, order(side, price, qty, account, gang), buyer=True, seller=True)


def order_ids(gw: EngineHost) -> list[int]:
    """Every order the exchange keeps, oldest first (on the writer)."""
    return sorted(o.order_id for a in (1, 2, 3)
                  for o in pb.ListOrdersResponse.FromString(gw.ex.list_orders(a, b"")).orders)


def orders(gw: EngineHost) -> list[bytes]:
    """Every account's orders as the contract lists them (on the writer)."""
    return [gw.ex.list_orders(a, b"") for a in (1, 2, 3)]


def drive(gw: EngineHost, plan: list[tuple[str, int, int, int, int]]) -> None:
    """Applies a plan on the gateway's writer, ignoring refusals as a server would."""
    def go() -> None:
        gw.create_product(PID, 10_000, 1, 490_047 * HOUR, T0)
        for account in (1, 2, 3):
            gw.register_capacity(account, capacity(account))
        apply(gw, plan)
    gw.call(go)


def apply(gw: EngineHost, plan: list[tuple[str, int, int, int, int]]) -> None:
    """On the writer: the plan's orders, cancels, amends, ticks and snapshots."""
    for kind, account, px, qty, pick in plan:
        try:
            if kind in ("bid", "ask"):
                place(gw, account, "buy" if kind == "bid" else "sell",
                      2_000_000 + px * 10_000, qty,
                      gang=8 if kind == "bid" and qty % 8 == 0 else 1)
            elif kind in ("cancel", "amend") and (ids := order_ids(gw)):
                oid = ids[pick % len(ids)]
                if kind == "cancel":
                    gw.cancel(account, pb.CancelOrderRequest(order_id=oid).SerializeToString())
                else:
                    gw.amend(account, pb.AmendOrderRequest(
                        order_id=oid, quantity=qty).SerializeToString())
            elif kind == "tick":
                gw.advance_time()
            elif kind == "snapshot" and gw.data_dir is not None:
                gw.take_snapshot()
        except (SpotexError, HostError):
            pass
    gw.advance_time()  # time moves on (a quiet step is not journaled: the hash has no clock)


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(plan=ops)
def test_live_replay_snapshot_and_recovery_agree(tmp_path: Path, plan: Any) -> None:
    d = Path(tempfile.mkdtemp(dir=tmp_path))
    gw = EngineHost(clock=Clock(), data_dir=d, fsync="none", snapshot_every=10**9)
    drive(gw, plan)
    live_hash = gw.call(gw.state_hash)
    live_orders = gw.call(lambda: orders(gw))
    seq = gw.sequence
    gw.close()

    engine, last, _, replayed_hash = replay_journal(d / JOURNAL)
    assert (last, replayed_hash) == (seq, live_hash), "full replay differs"

    snaps = sorted((d / SNAPSHOTS).glob("snapshot-*.bin"))
    if snaps:
        snap_seq, exchange, _ = read_snapshot(snaps[-1])
        engine, last, _, replayed_hash = replay_journal(d / JOURNAL, snapshot=exchange,
                                         snapshot_seq=snap_seq)
        assert replayed_hash == live_hash, "snapshot + tail differs"

    back = EngineHost(clock=Clock(), data_dir=d, fsync="none")
    assert back.call(back.state_hash) == live_hash, "recovery differs"
    assert back.call(lambda: orders(back)) == live_orders
    back.close()


def test_refusals_that_move_the_clock_are_journaled_as_time_steps(tmp_path: Path) -> None:
    gw = EngineHost(clock=Clock(), data_dir=tmp_path, fsync="none")
    drive(gw, [("bid", 1, 0, 1, 0)])
    before = gw.sequence
    with pytest.raises(SpotexError):
        gw.call(lambda: place(gw, 1, "buy", 1, 1))  # off tick: refused, but time moves
    assert gw.sequence == before + 1
    live, seq = gw.call(gw.state_hash), gw.sequence
    gw.close()
    engine, last, _, replayed_hash = replay_journal(tmp_path / JOURNAL)
    assert (last, replayed_hash) == (seq, live)


def test_torn_tail_is_cut_and_middle_damage_refused(tmp_path: Path) -> None:
    d = tmp_path / "data"
    gw = EngineHost(clock=Clock(), data_dir=d, fsync="none")
    drive(gw, [("bid", 1, -1, 2, 0)] * 20)
    h, n = gw.call(gw.state_hash), gw.sequence
    gw.close()
    journal_dir = d / JOURNAL
    [(_, journal)] = journal_segments(journal_dir)  # one segment at this size
    good = journal.read_bytes()
    records, tail = read_journal(journal_dir)
    assert tail is None and len(records) == n
    last_offset = len(good) - len(records[-1][2]) - len(records[-1][3]) - 28
    rng = random.Random(3)
    for _ in range(10):
        # a crash mid-write: the last record is cut short or garbled
        cut = rng.randrange(1, len(good) - last_offset)
        journal.write_bytes(good[:-cut])
        records, tail = read_journal(journal_dir)
        assert len(records) == n - 1
        assert tail == (journal, last_offset, len(good) - cut - last_offset)
        flipped = bytearray(good)
        flipped[rng.randrange(last_offset, len(good))] ^= 0x10
        journal.write_bytes(bytes(flipped))
        assert len(read_journal(journal_dir)[0]) == n - 1
    # recovery reports the torn tail, cuts it and continues from the last good record
    journal.write_bytes(good[:-5])
    back = EngineHost(clock=Clock(), data_dir=d, fsync="none")
    assert back.recovery["torn_tail"] is not None and back.sequence == n - 1
    assert journal.stat().st_size == last_offset
    back.close()
    # damage with good records after it is refused, never skipped
    middle = bytearray(good)
    middle[len(good) // 2] ^= 0x01
    journal.write_bytes(bytes(middle))
    with pytest.raises(JournalError):
        EngineHost(clock=Clock(), data_dir=d, fsync="none")
    journal.write_bytes(good)
    again = EngineHost(clock=Clock(), data_dir=d, fsync="none")
    assert again.call(again.state_hash) == h
    again.close()


def _start(data: Path, token: str, fsync: str = "batch") -> tuple[ServerProcess, str]:
    # money checked, with the venue's fees: a buyer's bids need its deposit
    server = ServerProcess(data, token, "--snapshot-every", "500", "--fsync", fsync,
                           "--default-credit-limit", "0", "--maker-fee-bps", "10",
                           "--taker-fee-bps", "20", timeout=30)
    return server, server.target


# "none" leaves the fsync to the OS, but a crash of the process alone (SIGKILL, the OS
# survives) must still lose nothing acknowledged
@pytest.mark.parametrize(("fsync", "rounds"), [("batch", 20), ("none", 6)])
def test_sigkill_under_load_loses_nothing_acknowledged(tmp_path: Path, fsync: str,
                                                       rounds: int) -> None:
    """Rounds of load from three buyers and a seller, each ended by SIGKILL at a random
    moment; each bounded (at most a second of load, a 30 s start). After every kill:
    every acknowledged order is there, every acknowledged fill has its transfers (its
    value to the seller, both fees to the venue), each buyer holds exactly its live bids'
    worth and has its deposit less what it paid, and the accounts sum to the deposits."""
    data, token = tmp_path / "data", "op"
    proc, target = _start(data, token, fsync)
    op = Client(target, token)
    now_hour = int(time.time()) // 3600
    pid = op.create_products(skus=["H100-SXM"], regions=["us-east"], from_hour=now_hour + 3,
                             to_hour=now_hour + 4)[0].product_id
    made = [op.create_account(f"b{i}", ["buyer"]) for i in range(3)]
    tokens = [a.token for a in made]
    for a in made:
        op.deposit(a.account_id, "500")
    s = op.create_account("s", ["seller"])
    Client(target, s.token).register_capacity(
        "c", sku="H100-SXM", region="us-east", nodes=[(f"n{i}", 8) for i in range(64)],
        from_hour=now_hour + 3, to_hour=now_hour + 4)
    acked: dict[int, str] = {}  # order id -> last acknowledged state
    # acknowledged fills, the buyer's or the seller's: trade -> (the buyer's fee, px, qty)
    fills: dict[int, tuple[int, Decimal, int]] = {}
    lock = threading.Lock()
    rng = random.Random(11)
    later = {"open": {"open", "partially_filled", "filled", "cancelled"},
             "partially_filled": {"partially_filled", "filled", "cancelled"},
             "filled": {"filled"}, "cancelled": {"cancelled"}}

    try:
        for _round in range(rounds):
            stop = threading.Event()

            def client(k: int, target: str = target, stop: threading.Event = stop) -> None:
                # an answer lost to the kill stays unknown: only acknowledgements count here
                c = Client(target, tokens[k], timeout=5, resolve_timeout=0)
                while not stop.is_set():
                    try:
                        o = c.place_order(pid, "buy", "1.00", 1 + rng.randrange(8))
                        with lock:
                            acked[o.order_id] = o.state
                            fills.update({f.trade_id: (20, f.price, f.quantity)
                                          for f in o.fills})
                        if rng.random() < 0.4:
                            with lock:
                                acked[o.order_id] = c.cancel_order(o.order_id).state
                    except (RpcError, grpc.RpcError):
                        return

            def seller(target: str = target, stop: threading.Event = stop) -> None:
                c = Client(target, s.token, timeout=5, resolve_timeout=0)
                while not stop.wait(0.05):
                    try:
                        o = c.place_order(pid, "sell", "1.00", 1 + rng.randrange(4),
                                          cluster_id="c")
                        with lock:  # the bids it hit were resting: their buyers are makers
                            fills.update({f.trade_id: (10, f.price, f.quantity)
                                          for f in o.fills})
                    except RpcError as err:
                        if err.reason == "INSUFFICIENT_CAPACITY":
                            continue  # all 512 GPUs offered: the buyers' bids rest
                        return
                    except grpc.RpcError:
                        return
            threads = [threading.Thread(target=client, args=(k,)) for k in range(3)]
            threads.append(threading.Thread(target=seller))
            for t in threads:
                t.start()
            time.sleep(0.3 + rng.random() * 0.7)
            proc.kill()
            stop.set()
            for t in threads:
                t.join(10)
            proc, target = _start(data, token, fsync)
            assert acked, "the load produced no acknowledged order"
            owners = [Client(target, t) for t in tokens]
            op = Client(target, token)
            found = {o.order_id: o for c in owners for o in c.list_orders(pid)}
            with lock:
                for oid, state in acked.items():
                    assert oid in found, f"acknowledged order {oid} lost"
                    assert found[oid].state in later[state], (oid, state, found[oid].state)
            # every acknowledged fill's money: its value from the buyer to the seller and
            # each side's fee (buyer taker 20 bps here, seller maker 10) to the venue
            moved: dict[int, dict[str, tuple[Decimal, int]]] = {}
            for a in made:
                for t in op.transfers(a.account_id):
                    if t.trade_id:
                        moved.setdefault(t.trade_id, {})[t.kind] = (t.amount,
                                                                    t.debit_account_id)
            buyers = {a.account_id for a in made}
            with lock:
                for trade, (bps, px, qty) in fills.items():
                    value = px * qty
                    got = moved.get(trade, {})
                    assert {k: v[0] for k, v in got.items()} == {
                        "trade": value, "fee": value * bps / 10_000}, (trade, got)
                    assert got["trade"][1] == got["fee"][1] in buyers, (trade, got)
            # each buyer's money: its deposit less what its fills cost, and holds of
            # exactly its live bids ($1 a GPU and the dearer fee, 20 bps)
            total = Decimal(0)
            for c in owners:
                mine = c.list_orders(pid)
                live = sum(o.remaining for o in mine
                           if o.state in ("open", "partially_filled"))
                paid = sum((f.price * f.quantity * Decimal("1.002") if not f.maker
                            else f.price * f.quantity * Decimal("1.001"))
                           for o in mine for f in o.fills)
                b = c.balance()
                assert (b.current, b.holds) == (500 - paid, Decimal(live) * Decimal("1.002")), b
                total += b.current
            total += op.balance(s.account_id).current + op.balance().current
            assert total == 1500, "the accounts sum to the deposits"
            assert fills or _round < rounds - 1, "nothing ever filled"
    except BaseException:
        proc.kill()  # a failed round leaves no server behind
        raise
    assert proc.stop(20) == 0
    m = re.search(r"stopped at sequence (\d+), state hash (\w+)", proc.text())
    assert m, proc.text()
    engine, last, _, replayed_hash = replay_journal(data / JOURNAL)
    assert (last, replayed_hash) == (int(m.group(1)), m.group(2))
    # two recoveries of the same data agree with each other and with the stopped server
    seen = []
    for _ in range(2):
        back = EngineHost(data_dir=data, fsync="none")
        seen.append((back.sequence, back.call(back.state_hash), back.call(back.ex.snapshot)))
        assert back.call(back.ex.check_ledger) is None
        back.close()
    assert seen[0] == seen[1] and seen[0][:2] == (int(m.group(1)), m.group(2))
    shutil.rmtree(data)


def test_replay_tool_rebuilds_verifies_exports_and_draws(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from spotex.cli import main

    d = tmp_path / "data"
    gw = EngineHost(clock=Clock(), data_dir=d, fsync="none", snapshot_every=40,
                 snapshot_per_resting=0)
    drive(gw, [])  # the product and the clusters

    def some(lo: int) -> None:
        for k in range(lo, lo + 20):
            _try(lambda k=k: place(gw, 1 + k % 3, "buy" if k % 2 else "sell",
                                   2_000_000 + (k % 5) * 10_000, 1 + k % 4))
    for lo in range(0, 80, 20):  # several writer batches, so several snapshots
        gw.call(lambda lo=lo: some(lo))
    live, seq = gw.call(gw.state_hash), gw.sequence
    gw.close()
    csv_path, charts = tmp_path / "trades.csv", tmp_path / "charts"
    r = CliRunner().invoke(main, ["replay", str(d), "--product", PID, "--verify",
                                  "--trades-csv", str(csv_path), "--charts", str(charts)])
    assert r.exit_code == 0, r.output
    assert f"replayed to sequence {seq} ({seq} journal records" in r.output and live in r.output
    assert "NO" not in r.output and "yes" in r.output
    lines = csv_path.read_text().splitlines()
    assert lines[0].startswith("sequence,time_utc,trade_id") and len(lines) > 1
    for png in ("depth.png", "prices.png"):
        assert (charts / png).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    report = (charts / "report.html").read_text()
    assert report.count("data:image/png;base64,") == 2
    # the allocations are listed, and a crossed book is explained exactly when crossed
    from spotex.server.replay import CROSSED_NOTE, rebuild

    back = rebuild(d)
    allocs = [a for a in back.engine.all_allocations() if a.product == PID]
    assert allocs and report.split("<h2>allocations</h2>")[1].count("<tr>") == len(allocs) + 1
    bids, asks = back.engine.l2(PID, 1)
    crossed = bool(bids and asks and bids[0][0] >= asks[0][0])
    assert (CROSSED_NOTE in report) == crossed and (CROSSED_NOTE[:40] in r.output) == crossed
    # replaying to an earlier point gives that point's state
    early = CliRunner().invoke(main, ["replay", str(d), "--seq", "5"])
    assert "replayed to sequence 5 (" in early.output
    assert replay_journal(d / JOURNAL, until_seq=5)[3] in early.output
    # --time takes ISO 8601 with a zone, or UTC without one; a bad one is one clear line
    for when in ("2025-11-24T16:00:00Z", "2025-11-24T17:00+01:00", "2025-11-24T16:00"):
        at = CliRunner().invoke(main, ["replay", str(d), "--time", when])
        assert at.exit_code == 0 and "replayed to sequence 0 (" in at.output, at.output
    bad = CliRunner().invoke(main, ["replay", str(d), "--time", "yesterday"])
    assert bad.exit_code == 2 and "not an ISO 8601 time" in bad.output
    assert bad.exception is None or isinstance(bad.exception, SystemExit)


def _try(fn: Any) -> None:
    try:
        fn()
    except (SpotexError, HostError):
        pass
