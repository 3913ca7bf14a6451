"""Resale: the README's walk-through run as written against a real server; the command
line; and, on random markets (hypothesis) driven through the exchange the service runs
on, the properties of ownership: no GPU held by two accounts for one hour through any
chain of resales, every lineage summing to its original allocation, what is held being
exactly what was sold, and a journal that replays to the same exchange."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from conftest import OPERATOR_TOKEN, serving
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spotex._core import Exchange, SpotexError
from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex.cli import main
from spotex.client import Client

README = Path(__file__).resolve().parents[1] / "README.md"


def walkthrough() -> tuple[str, str]:
    """The README's resale script and the output it says it prints."""
    text = README.read_text()
    section = text[text.index("## Resale walk-through"):]
    script = re.search(r"```python\n(.*?)```", section, re.S)
    printed = re.search(r"It prints:\n\n```text\n(.*?)```", section, re.S)
    assert script and printed, "the README's resale walk-through has a script and output"
    return script.group(1), printed.group(1)


def test_the_readme_walkthrough_runs_as_written_and_survives_a_restart(tmp_path: Path) -> None:
    script, printed = walkthrough()
    with serving(tmp_path, resale_fee_bps=50) as r:
        env = {**os.environ, "SPOTEX_SERVER": r.target, "SPOTEX_OPERATOR_TOKEN": OPERATOR_TOKEN}
        out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        assert out.stdout == printed
        before = Client(r.target, OPERATOR_TOKEN).state_hash()
    with serving(tmp_path, resale_fee_bps=0) as r:
        # recovered from the journal: the same state, fees as they were charged
        assert Client(r.target, OPERATOR_TOKEN).state_hash() == before


def test_the_command_line_resells_some_gpus_and_says_what_is_wrong(tmp_path: Path) -> None:
    with serving(tmp_path, resale_fee_bps=100) as r:
        op = Client(r.target, OPERATOR_TOKEN)
        h = int(time.time()) // 3600 + 3
        pid = op.create_products(skus=["H100-SXM"], regions=["us-east"], from_hour=h,
                                 to_hour=h + 1)[0].product_id
        seller, lab, other = (op.create_account(n, [role]) for n, role in
                              (("s", "seller"), ("lab", "buyer"), ("other", "buyer")))
        s = Client(r.target, seller.token)
        s.register_capacity("c", sku="H100-SXM", region="us-east", nodes=[("n0", 8)],
                            from_hour=h, to_hour=h + 1)
        s.place_order(pid, "sell", "2.00", 8, cluster_id="c")
        bought = Client(r.target, lab.token).place_order(pid, "buy", "2.00", 8, tif="ioc")

        def cli(token: str, *args: str) -> Any:
            return CliRunner().invoke(main, ["--server", r.target, "--token", token, *args])
        got = cli(lab.token, "--json", "resell", str(bought.order_id), "2.50",
                  "--gpu", "n0:4,5,6,7")
        assert got.exit_code == 0, got.output
        [ask] = json.loads(got.output)
        assert (ask["quantity"], ask["resale_fee_bps"]) == (4, 100)
        # the same GPUs again: refused in the table, the exit code says so too
        again = cli(lab.token, "resell", str(bought.order_id), "2.50", "--gpu", "n0:4")
        assert "INVALID_RESALE" in again.output
        # someone else's order, and a malformed --gpu: one line each, non-zero
        for token, args in ((other.token, [str(bought.order_id), "2.50"]),
                            (lab.token, [str(bought.order_id), "2.50", "--gpu", "n0:x"])):
            bad = cli(token, "resell", *args)
            assert bad.exit_code != 0 and "Traceback" not in bad.output
            errors = [x for x in bad.output.splitlines() if x.startswith("Error")]
            assert len(errors) == 1, bad.output
        # the other buyer takes two of them with a gang bid
        Client(r.target, other.token).place_order(pid, "buy", "2.50", 2, gang=2, tif="ioc")
        [row] = json.loads(cli(other.token, "--json", "allocations").output)
        bought_trade = Client(r.target, lab.token).get_order(bought.order_id).fills[0].trade_id
        assert row["parent_trade_id"] == bought_trade and row["fee"] == "0.05"
        [held] = Client(r.target, other.token).list_allocations()
        assert held.slots == (("n0", (4, 5)),) and held.fee == Decimal("0.05")
        lab_held = [a for a in Client(r.target, lab.token).list_allocations() if a.as_buyer]
        assert lab_held[0].slots == (("n0", (0, 1, 2, 3, 6, 7)),)


# ---- random markets --------------------------------------------------------------------

HOUR = 3_600_000_000
H0 = 490_050
T0 = (H0 - 10) * HOUR
OWNER, TRADERS = 1, (2, 3, 4)
HOURS = 2


def pid(h: int) -> str:
    return f"H100-SXM/us-east/2025-11-26T{h - 490_032:02d}"


def market() -> Exchange:
    ex = Exchange(1_000)
    ex.set_resale_fee_bps(25)
    for h in range(H0, H0 + HOURS):
        ex.create_product(T0, pid(h), 10_000, 1, h * HOUR - HOUR)
    cap = pb.RegisterCapacityRequest(
        cluster_id="c", sku="H100-SXM", region="us-east",
        nodes=[pb.Node(node_id=f"n{i}", gpus=8) for i in range(2)], from_hour=H0,
        to_hour=H0 + HOURS)
    ex.register_capacity(T0, OWNER, cap.SerializeToString())
    for h in range(H0, H0 + HOURS):
        ask = pb.PlaceOrderRequest(product_id=pid(h), side=pb.SIDE_SELL, price_micros=2_000_000,
                                   quantity=10, cluster_id="c")
        ex.place_order(T0, OWNER, ask.SerializeToString(), buyer=False, seller=True)
    return ex


def allocations(ex: Exchange, account: int) -> list[Any]:
    req = pb.ListAllocationsRequest(page_size=1000).SerializeToString()
    return list(pb.ListAllocationsResponse.FromString(ex.list_allocations(account, req))
                .allocations)


ACTION = st.one_of(
    st.tuples(st.just("bid"), st.sampled_from(TRADERS), st.integers(0, HOURS - 1),
              st.sampled_from([1, 2, 4]), st.integers(1, 3), st.integers(0, 3)),
    st.tuples(st.just("resell"), st.sampled_from(TRADERS), st.integers(0, 50),
              st.integers(0, 255), st.integers(0, 3), st.booleans()),
    st.tuples(st.just("cancel"), st.sampled_from(TRADERS), st.integers(0, 50)),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(ACTION, min_size=1, max_size=40))
def test_no_gpu_is_held_twice_through_resale_chains_and_lineages_sum(actions: list[Any]) -> None:
    ex = market()
    original: dict[int, set[tuple[str, int]]] = {}
    resting: list[tuple[int, int]] = []
    for act in actions:
        if act[0] == "bid":
            _, who, h, gang, n, dearer = act
            req = pb.PlaceOrderRequest(product_id=pid(H0 + h), side=pb.SIDE_BUY,
                                       price_micros=2_000_000 + 250_000 * dearer,
                                       quantity=gang * n, gang=gang,
                                       time_in_force=pb.TIME_IN_FORCE_IOC)
            ex.place_order(T0, who, req.SerializeToString(), buyer=True, seller=False)
        elif act[0] == "resell":
            _, who, pick, mask, dearer, some = act
            mine = [a for a in allocations(ex, who) if a.as_buyer and a.quantity > 0]
            if not mine:
                continue
            a = mine[pick % len(mine)]
            slot = a.slots[pick % len(a.slots)]
            gpus = [g for k, g in enumerate(slot.gpu_indices) if mask >> k & 1]
            req = pb.PlaceOrderRequest(
                side=pb.SIDE_SELL, price_micros=2_000_000 + 250_000 * dearer,
                resell_trade_id=a.trade_id, time_in_force=pb.TIME_IN_FORCE_GTC,
                resell_gpus=[pb.Slot(node_id=slot.node_id, gpu_indices=gpus)]
                if some and gpus else [])
            try:
                o = pb.Order.FromString(ex.place_order(T0, who, req.SerializeToString(),
                                                       buyer=True, seller=False))
            except SpotexError as err:
                assert err.reason == "INVALID_RESALE"  # type: ignore[attr-defined]
                continue
            resting.append((who, o.order_id))
        elif resting:
            who, oid = resting.pop(act[2] % len(resting))
            try:
                ex.cancel_order(T0, who, pb.CancelOrderRequest(order_id=oid).SerializeToString())
            except SpotexError:
                pass  # filled since
        everything = {a.trade_id: a for a in allocations(ex, OWNER)}  # the owner sees all
        for a in everything.values():
            original.setdefault(a.trade_id, {(s.node_id, g) for s in a.slots
                                             for g in s.gpu_indices})
        # no GPU held twice in an hour; held is what was sold
        held: dict[int, set[tuple[str, int]]] = {}
        for a in everything.values():
            gpus = {(s.node_id, g) for s in a.slots for g in s.gpu_indices}
            assert not held.setdefault(a.hour, set()) & gpus, "a GPU held twice"
            held[a.hour] |= gpus
        for _, _, _, hour, _, sold, *_ in ex.utilisation(H0, H0 + HOURS):
            assert len(held.get(hour, set())) == sold
        # a lineage: an allocation's GPUs with all its descendants' are its original ones
        children: dict[int, list[int]] = {}
        for a in everything.values():
            if a.parent_trade_id:
                children.setdefault(a.parent_trade_id, []).append(a.trade_id)

        for t in everything:
            assert lineage(t, everything, children) == original[t]
        # a resale's buyer holds what it bought, with the fee charged to its seller
        for a in everything.values():
            if a.parent_trade_id:
                assert a.fee_micros == a.price_micros * original_qty(original, a) * 25 // 10_000
    again = Exchange(1_000)
    for seq, ts, command in ex.take_journal():
        again.replay(seq, ts, command)
    assert again.state_hash() == ex.state_hash()
    assert Exchange.restore(ex.snapshot()).state_hash() == ex.state_hash()


def lineage(t: int, everything: dict[int, Any], children: dict[int, list[int]]
            ) -> set[tuple[str, int]]:
    """The GPUs allocation ``t`` holds, with all its descendants'."""
    a = everything[t]
    out = {(s.node_id, g) for s in a.slots for g in s.gpu_indices}
    for c in children.get(t, []):
        out |= lineage(c, everything, children)
    return out


def original_qty(original: dict[int, set[tuple[str, int]]], a: Any) -> int:
    return len(original[a.trade_id])
