"""Core benchmark: one seeded workload through (a) the pure-Rust engine, (b) the Python
per-call binding, (c) the Python batch binding and (d) the pure-Python reference model,
in one run. Prints operations per second and per-operation latency (p50, p99), the ratio
of each path to the reference model, and checks that (a), (b) and (c) end in the same
state hash. Writes the figures as JSON to bench/results/core.json.

    python bench/bench_core.py [--ops 1000000] [--reference-ops 20000]
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np

import spotex
from spotex import batch
from spotex._core import workload
from spotex.tools.reference import ReferenceEngine, Rejected

TIF = {0: "gtc", 1: "gtd", 2: "ioc", 3: "fok"}


def market(engine: Any, products: list[Any], clusters: list[Any]) -> None:
    from spotex.tools.reference import MICROS_PER_HOUR

    t0 = products[0][3]
    for pid, tick, lot, open_at, close_at in products:
        engine.create_product(pid, tick=tick, lot=lot, open_at=open_at, close_at=close_at, ts=t0)
    for account, cid, sku, region, nodes, h0, h1 in clusters:
        engine.register_capacity(account, cid, sku=sku, region=region, nodes=nodes,
                                 from_hour=h0, to_hour=h1, ts=t0)
    assert t0 % MICROS_PER_HOUR == 0


def calls(records: bytes, products: list[Any], clusters: list[Any]) -> list[tuple[Any, ...]]:
    """Decodes the records once, outside any timing, into per-call argument tuples."""
    pids = [p[0] for p in products]
    cids = [c[1] for c in clusters]
    out: list[tuple[Any, ...]] = []
    for r in np.frombuffer(records, dtype=batch.COMMAND_DTYPE).tolist():
        kind, side, _ot, tif, _po, _stp, gang, _r, prod, clu, acct, oid, price, qty, ts, _x = r
        if kind == batch.PLACE:
            out.append(("place", acct, pids[prod], "sell" if side else "buy", price, qty, ts,
                        TIF[tif], cids[clu] if clu != batch.NO_CLUSTER else None, gang or 1))
        elif kind == batch.CANCEL:
            out.append(("cancel", acct, oid, ts))
        else:
            out.append(("advance", ts))
    return out


def run_calls(engine: Any, ops: list[tuple[Any, ...]], errors: tuple[type, ...]
              ) -> tuple[float, list[int], int]:
    lat = [0] * len(ops)
    rejected = 0
    clock = time.perf_counter_ns
    place, cancel, advance = engine.place, engine.cancel, engine.advance_time
    start = clock()
    for i, op in enumerate(ops):
        t = clock()
        try:
            if op[0] == "place":
                _, acct, pid, side, price, qty, ts, tif, cid, gang = op
                place(acct, pid, side, price, qty, ts=ts, tif=tif, cluster_id=cid, gang=gang)
            elif op[0] == "cancel":
                cancel(op[1], op[2], ts=op[3])
            else:
                advance(op[1])
        except errors:
            rejected += 1
        lat[i] = clock() - t
    return (clock() - start) / 1e9, lat, rejected


def pct(lat: list[int], q: float) -> int:
    s = sorted(lat)
    return s[min(len(s) - 1, int(len(s) * q))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--ops", type=int, default=1_000_000)
    ap.add_argument("--reference-ops", type=int, default=20_000)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--repeat", type=int, default=3, help="runs per path; the median is shown")
    ap.add_argument("--chunk", type=int, default=16_384, help="commands per batch call")
    ap.add_argument("--out", default="bench/results/core.json")
    args = ap.parse_args()

    products, clusters, records = workload(seed=args.seed, ops=args.ops)
    n = len(records) // 64
    kinds = np.frombuffer(records, dtype=batch.COMMAND_DTYPE)["kind"]
    tifs = np.frombuffer(records, dtype=batch.COMMAND_DTYPE)["tif"]
    mix = {"add": int(((kinds == batch.PLACE) & (tifs == batch.GTC)).sum()),
           "ioc": int(((kinds == batch.PLACE) & (tifs == batch.IOC)).sum()),
           "cancel": int((kinds == batch.CANCEL).sum()),
           "idle": int((kinds == batch.ADVANCE_TIME).sum())}
    print(f"workload: {n:,} operations, seed {args.seed}: "
          + ", ".join(f"{k} {v / n:.1%}" for k, v in mix.items())
          + f"; {len(products)} products, {len(clusters)} clusters x "
          f"{len(clusters[0][4])} nodes of 8 GPUs")

    results: dict[str, dict[str, Any]] = {}
    hashes: dict[str, str] = {}

    def record(name: str, secs: list[float], ops: int, p50: int | None, p99: int | None,
               rejected: int) -> None:
        med = statistics.median(secs)
        results[name] = {"ops": ops, "seconds_median": med, "ops_per_sec": ops / med,
                         "ops_per_sec_runs": [ops / s for s in secs],
                         "p50_ns": p50, "p99_ns": p99, "rejected": rejected}

    # (a) pure Rust: records applied in a Rust loop, each timed in Rust
    # throughput runs time only the whole loop; one more run times every operation
    secs = []
    for _ in range(args.repeat):
        e = spotex.Engine()
        market(e, products, clusters)
        total, _, _, rej = e.apply_batch_timed(records)
        secs.append(total / 1e9)
    hashes["rust"] = e.state_hash()
    e = spotex.Engine()
    market(e, products, clusters)
    _, p50, p99, _ = e.apply_batch_timed(records, per_op=True)
    record("rust", secs, n, p50, p99, rej)

    # (c) Python batch path: packed records in, packed events out, in calls of
    # --chunk commands (the size of a market maker's bulk message, not the whole run)
    secs = []
    view = memoryview(records)
    step = args.chunk * 64
    for _ in range(args.repeat):
        e = spotex.Engine()
        market(e, products, clusters)
        t = time.perf_counter()
        chunks = [e.apply_batch(view[i : i + step]) for i in range(0, len(records), step)]
        secs.append(time.perf_counter() - t)
    hashes["batch"] = e.state_hash()
    events = np.frombuffer(b"".join(chunks), dtype=batch.EVENT_DTYPE)
    rej = int((events["kind"] == batch.REJECTED).sum())
    record("python_batch", secs, n, None, None, rej)
    results["python_batch"]["events"] = len(events)
    results["python_batch"]["chunk"] = args.chunk

    # (b) Python per-call path
    ops = calls(records, products, clusters)
    secs, lat = [], []
    for _ in range(max(1, args.repeat - 1)):
        e = spotex.Engine()
        market(e, products, clusters)
        s, lat, rej = run_calls(e, ops, (spotex.SpotexError,))
        secs.append(s)
    hashes["per_call"] = e.state_hash()
    record("python_per_call", secs, n, pct(lat, 0.5), pct(lat, 0.99), rej)

    # (d) reference model on a prefix (it is slow by design), and the engine on the same prefix
    m = ReferenceEngine()
    market(m, products, clusters)
    s, lat, rej = run_calls(m, ops[: args.reference_ops], (Rejected,))
    record("reference_model", [s], args.reference_ops, pct(lat, 0.5), pct(lat, 0.99), rej)
    e = spotex.Engine()
    market(e, products, clusters)
    s, lat, rej2 = run_calls(e, ops[: args.reference_ops], (spotex.SpotexError,))
    record("python_per_call_prefix", [s], args.reference_ops, pct(lat, 0.5), pct(lat, 0.99), rej2)
    assert rej == rej2, "engine and reference model disagree on rejections"

    ref = results["reference_model"]["ops_per_sec"]
    print(f"\n{'path':<24}{'ops/s':>14}{'spread':>22}{'p50':>10}{'p99':>10}{'vs ref':>10}")
    for name, r in results.items():
        runs = r["ops_per_sec_runs"]
        spread = f"{min(runs) / 1e6:.2f}-{max(runs) / 1e6:.2f}M" if len(runs) > 1 else ""
        p50 = f"{r['p50_ns'] / 1000:.2f}us" if r["p50_ns"] is not None else "-"
        p99 = f"{r['p99_ns'] / 1000:.2f}us" if r["p99_ns"] is not None else "-"
        print(f"{name:<24}{r['ops_per_sec']:>14,.0f}{spread:>22}{p50:>10}{p99:>10}"
              f"{r['ops_per_sec'] / ref:>9.0f}x")
    agree = len(set(hashes.values())) == 1
    print(f"\nstate hashes {'agree' if agree else 'DIFFER'}: {hashes['rust'][:16]}...")
    print(f"rejected commands (late cancels of filled orders): {results['rust']['rejected']:,}")
    assert agree, hashes

    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": {"python": platform.python_version(),
                                           "cpu": platform.processor() or platform.machine(),
                                           "cores": __import__("os").cpu_count()},
                               "workload": {"ops": n, "seed": args.seed, "mix": mix},
                               "results": results, "state_hash": hashes["rust"]}, indent=2))


if __name__ == "__main__":
    main()
