"""References for tests: the offline optimum by trying every choice on tiny markets
(``brute_force``), the welfare of one choice if feasible, and the GPUs fills use."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Sequence

from .locality import _Places
from .model import Ask, Bid, Fill, View, _families
from .placement import _place_all, _Plan

# a part of a choice: (cluster, start, GPUs, the domain it must lie in or None)
_Part = tuple[int, int, int, str | None]


def brute_force(view: View) -> int:
    """The offline optimum's welfare by trying every choice (tiny markets only): each
    block on each cluster and start (with a level: and each domain there it may use) or
    out; each one-hour bid's gangs in each cluster (with a level: in one domain of one
    cluster). A choice counts when the asks cover it and its GPUs can be placed as the
    optimiser places them (``_place_all``), each part with a level in its domain."""
    families = _families(view)
    places = _Places(view)
    options: list[list[tuple[_Part, ...]]] = []
    for b in view.bids:
        mine = places.clusters(b, families.get(b.family, []))
        opts: list[tuple[_Part, ...]] = [()]

        def where(c: int, b: Bid = b) -> list[str | None]:
            allowed = places.allowed(b, c)
            return [None] if allowed is None else list(allowed)
        if b.block:
            opts += [((c, s, b.quantity, d),) for c in mine for s in b.starts
                     if 0 <= s and s + b.hours <= view.hours for d in where(c)]
        elif 0 <= b.starts[0] < view.hours and b.level:
            opts += [((c, b.starts[0], k * b.gang, d),) for c in mine for d in where(c)
                     for k in range(1, b.quantity // b.gang + 1)]
        elif 0 <= b.starts[0] < view.hours:
            for gangs in itertools.product(range(b.quantity // b.gang + 1), repeat=len(mine)):
                if 0 < sum(gangs) <= b.quantity // b.gang:
                    opts.append(tuple((c, b.starts[0], k * b.gang, None)
                                      for c, k in zip(mine, gangs, strict=True) if k))
        options.append(opts)
    # each seller block sold or not
    whole = [a for a in view.asks if a.whole]
    best = 0
    for choice in itertools.product(*options):
        picked = [(b, part) for b, parts in zip(view.bids, choice, strict=True)
                  for part in parts]
        groups = {b.group for b, parts in zip(view.bids, choice, strict=True)
                  if parts and b.group}
        if len(groups) < len([1 for b, parts in zip(view.bids, choice, strict=True)
                              if parts and b.group]):
            continue  # two alternatives of one group
        for sold in itertools.product((False, True), repeat=len(whole)):
            welfare = _feasible_welfare(view, picked,
                                        [a for a, s in zip(whole, sold, strict=True) if s],
                                        places)
            if welfare is not None:
                best = max(best, welfare)
    return best


def _feasible_welfare(view: View, picked: Sequence[tuple[Bid, _Part]],
                      blocks: Sequence[Ask] = (), places: _Places | None = None
                      ) -> int | None:
    """The welfare of filling ``picked`` and selling the seller blocks ``blocks``; None
    when the asks do not cover them, a seller block sold is not used whole, or the GPUs
    cannot be placed (each part with a domain in that domain)."""
    need: dict[tuple[int, int], int] = {}
    value = 0
    for b, (c, s, q, _) in picked:
        for h in range(s, s + b.hours):
            need[c, h] = need.get((c, h), 0) + q
        value += b.price * q * b.hours
    for a in blocks:
        if not (0 <= a.hour and a.hour + a.hours <= view.hours):
            return None
        for h in range(a.hour, a.hour + a.hours):
            need[a.cluster, h] = need.get((a.cluster, h), 0) - a.quantity
            if need[a.cluster, h] < 0:
                return None  # not sold whole
        value -= a.price * a.quantity * a.hours
    for (c, h), q in need.items():
        for a in sorted((a for a in view.asks if a.cluster == c and a.hour == h
                         and not a.whole), key=lambda a: a.price):
            take = min(q, a.quantity)
            value -= take * a.price
            q -= take
        if q > 0:
            return None
    plans = [_Plan(b.order_id, c, s, b.hours, q, () if d is None else (d,))
             for b, (c, s, q, d) in picked]
    _, unplaced = _place_all(view, plans, places, fallback=False)
    if unplaced:
        return None
    return value


def uses(view: View, fills: Iterable[Fill]) -> dict[tuple[int, str, int], int]:
    """GPU masks in use per (cluster, node, hour), for checks: a GPU twice raises."""
    out: dict[tuple[int, str, int], int] = {}
    for f in fills:
        for node, gpus in f.gpus:
            mask = sum(1 << i for i in gpus)
            for h in range(f.start, f.start + f.hours):
                key = (f.cluster, node, h)
                if out.get(key, 0) & mask:
                    raise AssertionError(f"GPU sold twice: {key}")
                out[key] = out.get(key, 0) | mask
    return out
