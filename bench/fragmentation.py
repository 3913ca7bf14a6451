"""Fragmentation: the engine's best-fit allocator against first-fit, on one random workload
in the same run. A seller offers a whole cluster for one hour; buyers arrive with IOC bids
for gangs of 1, 2, 4 or 8 GPUs. Reports the gang demand that could not be placed and the
stranded GPUs left at the end (free GPUs on partly used nodes, useless to a whole-node
buyer). Best-fit is the real engine; first-fit is a small simulation here, and a best-fit
simulation beside it must reproduce the engine's figures exactly.

    python bench/fragmentation.py [--nodes 10000] [--orders 20000] [--seed 1]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import random
import time
from pathlib import Path

import spotex

HOUR = spotex.MICROS_PER_HOUR
H = 490_100


def sizes(nodes: int) -> list[int]:
    """A mixed fleet: every third node is a 4-GPU node, the rest 8-GPU nodes."""
    return [4 if i % 3 == 0 else 8 for i in range(nodes)]


def stranded(free: list[int], size: list[int]) -> int:
    return sum(f for f, s in zip(free, size, strict=True) if 0 < f < s)


def simulate(nodes: int, demand: list[tuple[int, int]], best: bool) -> tuple[int, int]:
    """Returns (rejected GPUs, stranded GPUs) for one allocation policy."""
    size = sizes(nodes)
    free = list(size)
    rejected = 0
    for gang, qty in demand:
        placeable = sum(f // gang for f in free) * gang
        take = min(qty, placeable)
        rejected += qty - take
        for _ in range(take // gang):
            fits = [i for i in range(nodes) if free[i] >= gang] if best else None
            if best:
                assert fits is not None
                node = min(fits, key=lambda i: (free[i], i))
            else:
                node = next(i for i in range(nodes) if free[i] >= gang)
            free[node] -= gang
    return rejected, stranded(free, size)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--nodes", type=int, default=10_000)
    ap.add_argument("--orders", type=int, default=12_000)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--simulate-nodes", type=int, default=500,
                    help="cluster size for the pure-Python cross-check (it is O(nodes) per gang)")
    ap.add_argument("--out", default="bench/results/fragmentation.json")
    args = ap.parse_args()

    def demand(n_orders: int, nodes: int) -> list[tuple[int, int]]:
        rng = random.Random(args.seed)
        out: list[tuple[int, int]] = []
        # small gangs for 60% of the fleet, then whole-node (gang of 8) demand for more
        # than what is left: where the small gangs went decides how much of it fits
        total = sum(sizes(nodes))
        while sum(q for _, q in out) < total * 6 // 10:
            gang = rng.choice([1, 1, 2, 4])
            out.append((gang, gang * rng.randint(1, 3)))
        while sum(q for _, q in out) < total * 11 // 10:
            out.append((8, 8 * rng.randint(1, 2)))
        return out

    def engine_run(nodes: int, dem: list[tuple[int, int]]) -> tuple[int, int, float]:
        e = spotex.Engine()
        pid = "H100-SXM/us-east/" + dt.datetime.fromtimestamp(H * 3600, dt.UTC).strftime(
            "%Y-%m-%dT%H")
        t0 = (H - 200) * HOUR
        e.create_product(pid, tick=10_000, lot=1, open_at=t0, close_at=(H - 1) * HOUR, ts=t0)
        e.register_capacity(1, "c", sku="H100-SXM", region="us-east",
                            nodes=[(f"n{i}", g) for i, g in enumerate(sizes(nodes))],
                            from_hour=H - 1, to_hour=H + 1, ts=t0)
        e.place(1, pid, "sell", 2_000_000, sum(sizes(nodes)), ts=t0 + 1, cluster_id="c")
        rejected = 0
        start = time.perf_counter()
        for i, (gang, qty) in enumerate(dem):
            events = e.place(2, pid, "buy", 2_500_000, qty, ts=t0 + 2 + i, tif="ioc", gang=gang)
            rejected += sum(ev.qty or 0 for ev in events if ev.kind == "cancelled")
        secs = time.perf_counter() - start
        free = sizes(nodes)
        for a in e.allocations(2):
            for node, gpus in a.slots:
                free[int(node[1:])] -= len(gpus)
        return rejected, stranded(free, sizes(nodes)), secs

    dem = demand(args.orders, args.nodes)
    rej, strand, secs = engine_run(args.nodes, dem)
    ff_rej, ff_stranded = simulate_fast_first_fit(args.nodes, dem)
    print(f"{args.nodes:,} nodes (8 and 4 GPUs), {len(dem):,} IOC gang bids "
          f"({sum(q for _, q in dem):,} GPUs wanted, {sum(sizes(args.nodes)):,} offered)")
    print(f"{'policy':<22}{'rejected gang demand':>22}{'stranded GPUs':>16}")
    print(f"{'best-fit (engine)':<22}{rej:>22,}{strand:>16,}")
    print(f"{'first-fit':<22}{ff_rej:>22,}{ff_stranded:>16,}")
    print(f"engine: {len(dem) / secs:,.0f} gang orders/s with allocation on {args.nodes:,} nodes "
          "(per-call Python path)")

    small = demand(args.orders * args.simulate_nodes // args.nodes, args.simulate_nodes)
    sim_best = simulate(args.simulate_nodes, small, best=True)
    eng_small = engine_run(args.simulate_nodes, small)[:2]
    assert sim_best == eng_small, (sim_best, eng_small)
    print(f"cross-check at {args.simulate_nodes} nodes: engine {eng_small} == best-fit "
          f"simulation {sim_best}; first-fit {simulate(args.simulate_nodes, small, best=False)}")

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"nodes": args.nodes, "orders": len(dem), "seed": args.seed,
                               "best_fit": {"rejected": rej, "stranded": strand},
                               "first_fit": {"rejected": ff_rej, "stranded": ff_stranded},
                               "engine_orders_per_sec": len(dem) / secs}, indent=2))


def simulate_fast_first_fit(nodes: int, demand: list[tuple[int, int]]) -> tuple[int, int]:
    """First-fit at full size: the lowest-index node with room. Free space only shrinks, so
    a node that cannot hold a gang of g never can again: one cursor per gang size."""
    size = sizes(nodes)
    free = list(size)
    cursor = {g: 0 for g in (1, 2, 4, 8)}
    rejected = 0
    for gang, qty in demand:
        placed = 0
        while placed < qty:
            i = cursor[gang]
            while i < nodes and free[i] < gang:
                i += 1
            cursor[gang] = i
            if i == nodes:
                break
            free[i] -= gang
            placed += gang
        # an IOC takes what fits; first-fit places gang by gang, so the count is the same
        rejected += qty - placed
    return rejected, stranded(free, size)


if __name__ == "__main__":
    main()
