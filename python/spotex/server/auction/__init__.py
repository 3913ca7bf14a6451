"""The block auction's optimiser: one call auction over a delivery window, solved as a
mixed-integer program with HiGHS (``highspy``), with the rules of docs/trading.md ("Block
auctions"):

1. maximise welfare: the limits of the filled bids minus the prices of the asks used;
2. every block whole or not at all, on the same GPUs (node and indices) in every hour
   of it, its gangs on one node each, all of it in one cluster; at most one
   alternative of a one-of group; no GPU-hour sold twice; placement terms kept: a bid
   with a level (``Bid.level``) fills once, all in one domain at that level, one
   ``near`` a node (``Bid.near``) on that node's cluster only and, with a level, in
   that node's domain (named as the engine names them, ``locality``);
3. one clearing price per product (family x hour), on the tick, for every trade in it;
4. no paradoxically accepted order: every filled bid's limit covers its cost at the
   clearing prices (a block: summed over its hours), every filled ask's price is at or
   below the clearing price. Blocks in the money at those prices but left out
   (paradoxically rejected) are allowed, counted and reported with the welfare they
   would have added;
5. ties go to the earlier order (a preference far below a micro-dollar per GPU-hour).

The model sees what the exchange gives it (``View``): asks (resting and auction ones,
each of one cluster and hour; seller blocks), bids (one-hour bids may fill in part and across
clusters; blocks and windows whole, in one cluster; with placement terms), and each
cluster's nodes with the GPUs free in every hour and their places (block, rack, NVLink
domain).

Where each part lives:

- ``model``: the terms in and out (``View``, ``Cluster``, ``Ask``, ``Bid``, ``Fill``,
  ``Clearing``), money in micro-dollars;
- ``locality``: placement terms: the domains of a cluster at a level, those a bid may
  fill in, and zones (domains alike, one row each in the program);
- ``program``: the program (``_Program``: its columns and rows, seller blocks among them,
  zones for bids with a level), its LP relaxation, rounding, local search and the MIP;
- ``placement``: the GPUs chosen after the solve (``_Nodes``; a bid with a level in one
  domain), and what to keep off where they could not be placed;
- ``pricing``: the clearing prices, the paradoxically accepted and rejected bids;
- ``reference``: ``brute_force`` and the other checks tests compare against;
- here, ``optimise``: solve, price, cut, place, and solve again until nothing is cut
  and everything is placed.

Prices: the lowest price per product that every filled ask accepts (the dearest filled
ask's). When a filled bid cannot pay them, it is cut and the model solved again
(EUPHEMIA's way with paradoxically accepted blocks), until none is left: the last
solution without it, repaired where it freed GPUs, against the last LP bound (cutting
bids only lowers the optimum); the LP is solved again at the end if that leaves the
gap over 0.5%.
"""

from __future__ import annotations

import time

from .locality import _Places, check_levels
from .model import LEVELS, MICROS, Ask, Bid, Clearing, Cluster, Fill, View
from .placement import _blame, _place_all, _plans
from .pricing import _paradoxically_accepted, _price, _report_rejected
from .program import GAP, _Program
from .reference import brute_force, uses

__all__ = ["LEVELS", "MICROS", "Ask", "Bid", "Clearing", "Cluster", "Fill", "View",
           "brute_force", "optimise", "uses"]


def optimise(view: View, *, time_limit: float = 10.0, priced: bool = True) -> Clearing:
    """The auction's clearing of ``view``; with ``priced=False`` the offline optimum
    (welfare only, no clearing prices imposed: the benchmark's yardstick)."""
    began = time.monotonic()
    for a in view.asks:
        if a.hours < 1 or a.hours > 1 and not a.whole:
            raise ValueError(f"ask {a.order_id}: {a.hours} hours; an ask of several hours "
                             "is a seller block (whole=True)")
    check_levels(view)
    places = _Places(view)  # the domains bids with a level may fill in
    # with seller blocks every solve is fresh: repairing the last solution where a cut
    # bid freed GPUs could leave a seller block it sold partly unused
    blocks = any(a.whole for a in view.asks)
    cut: set[int] = set()  # bids cut as paradoxically accepted
    solves = 0
    program = _Program(view, {}, places)
    fresh = True  # solve the LP (else repair the last solution, against the last bound)
    while True:
        solves += 1
        left = time_limit - (time.monotonic() - began)
        result = program.solve(cut, left, fresh)
        plans = _plans(view, result)
        clearing = _price(view, plans, result["blocks"])
        paradox = _paradoxically_accepted(view, clearing, plans) if priced else []
        if not paradox and result["gap"] > GAP and not fresh and \
                time.monotonic() - began < time_limit:
            fresh = True  # the last bound is stale: tighten it (and round again) once
            continue
        if not paradox:
            # the GPUs, now that the set is settled (placement may still fail for a block
            # on fragmented nodes, or one domain too full: it, or an earlier cheaper block
            # that took its GPUs, is kept off that cluster and start and the auction
            # solved again; past the time limit, without seller blocks sold, the fills
            # that could be placed are kept as they are)
            fills, unplaced = _place_all(view, plans, places)
            late = time.monotonic() - began > time_limit
            if unplaced and not (late and not result["blocks"]):
                # each plan's part of the objective, to keep off the cheaper one
                worth = {(bid, c, s): program.cost[col] * result["values"][col]
                         for bid, cols in result["bid_cols"].items()
                         for col, c, s in cols if result["values"][col] > 0}
                program.ban(_blame(view, plans, unplaced, places, worth,
                                   until=began + time_limit))
                fresh = True
                continue
            clearing = _price(view, fills, result["blocks"])
            paradox = _paradoxically_accepted(view, clearing, fills) if priced else []
        fresh = blocks
        clearing.gap, clearing.solves = result["gap"], solves
        if not paradox:
            if priced:
                clearing.cut = sorted(cut)
                _report_rejected(view, clearing, clearing.fills)
            clearing.seconds = time.monotonic() - began
            return clearing
        # the furthest short first: a third of them at a time (at least one: cutting one
        # may lower the prices enough for the others), so that a long list does not
        # take a solve each; past the time limit, all at once
        batch = max(1, len(paradox) // 3)
        cut |= set(paradox if time.monotonic() - began > time_limit else paradox[:batch])


