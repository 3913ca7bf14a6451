"""The market simulator: its scoring against a brute-force reference, and a short run
through the SDK against a real server in which no agent trades at a loss."""

from __future__ import annotations

from pathlib import Path

from conftest import OPERATOR_TOKEN, serving
from hypothesis import given
from hypothesis import strategies as st

from spotex import simulate as sim


def brute_force_surplus(values: list[int], costs: list[int]) -> int:
    """The best pairing of k units, over every k: the k highest values with the k lowest
    costs, whatever k."""
    d, s = sorted(values, reverse=True), sorted(costs)
    return max(sum(d[i] - s[i] for i in range(k)) for k in range(min(len(d), len(s)) + 1))


def test_competitive_on_a_textbook_schedule() -> None:
    # values 5 4 3 1 against costs 1 2 4 6: two units trade (the third pair, 3 against 4,
    # would lose money); a price from 3 (the first excluded buyer's value) to 4 (the
    # second buyer's value and the first excluded seller's cost) clears the market
    assert sim.competitive([5, 4, 3, 1], [1, 2, 4, 6]) == ((5 - 1) + (4 - 2), 2, 3, 4)


@given(st.lists(st.integers(1, 50), max_size=30), st.lists(st.integers(1, 50), max_size=30))
def test_competitive_surplus_is_the_most_any_pairing_gives(values: list[int],
                                                           costs: list[int]) -> None:
    surplus, q, lo, hi = sim.competitive(sorted(values, reverse=True), sorted(costs))
    assert surplus == brute_force_surplus(values, costs)
    if q:
        d, s = sorted(values, reverse=True), sorted(costs)
        # at a price in the band, exactly the first q buyers and sellers want to trade
        assert lo <= hi and s[q - 1] <= hi and lo <= d[q - 1]


def test_a_short_simulation_through_the_sdk(tmp_path: Path) -> None:
    cfg = sim.SimConfig(seed=3, steps=600, buyers=10, sellers=4)
    with serving(tmp_path) as r:
        result = sim.run(r.target, OPERATOR_TOKEN, cfg)
        # a second run on the same server lists a product of its own (it used to stop
        # with an IndexError when its hour existed already)
        again = sim.run(r.target, OPERATOR_TOKEN, sim.SimConfig(seed=4, steps=50, buyers=3,
                                                                sellers=2))
        assert again.product_id != result.product_id
    s = result.summary()
    assert result.trades, "agents whose values and costs overlap trade"
    # ZI-C: nobody trades at a loss, nobody spends past the budget, so every fill adds
    # surplus and the total stays within what the schedules allow
    assert result.loss_trades == 0 and result.budget_breaches == 0
    assert 0 < result.realised_surplus <= result.max_surplus
    assert 0 < result.efficiency <= 1
    assert result.volume == sum(q for _, _, q in result.trades) <= result.capacity
    assert len({t for t, _, _ in result.trades}) == len(result.trades)
    lo, hi = min(result.supply_units), max(result.demand_units)
    assert all(lo <= p <= hi for _, p, _ in result.trades)
    assert s["volume_gpu_hours"] == result.volume and s["trades"] == len(result.trades)
    prices, sd = sim.charts(result)
    assert prices[:8] == sd[:8] == b"\x89PNG\r\n\x1a\n"
