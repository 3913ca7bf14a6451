"""Locality: how much whole-domain demand a fleet serves when the bid can say "all in one
NVLink domain", against the same demand placed topology-blind, in the same run.

The fleet (one hour, through a real server on loopback and the SDK):
* an NVL72-style cluster: 16 NVLink domains of 18 trays of 4 GPUs (72 GPUs a domain), two
  domains a rack, two racks a block;
* an HGX-style cluster: 96 nodes of 8 GPUs, 8 nodes a rack (each node its own domain).
Every GPU is offered at one price. The same seeded stream of jobs then arrives twice, on
two copies of the fleet: distributed-training jobs that need 32 to 72 GPUs (gangs of 4)
inside one NVLink domain, interleaved with small jobs of 4 to 16 GPUs that do not care.

* locality-aware: the training jobs bid with `locality="nvlink_domain"` (required);
* topology-blind: the same bids without it. A job served there only counts when its
  GPUs happen to land in one domain; otherwise it holds GPUs it cannot use.

    python bench/bench_locality.py [--jobs 100] [--seed 3] [--out bench/results]

Prints a table and writes locality.json and locality.png (with matplotlib).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import secrets
import time
from pathlib import Path
from typing import Any

from spotex.client import Client
from spotex.tools.demo import start_server

DOMAINS, TRAYS, HGX = 16, 18, 96


def fleet(op: Client, target: str, tag: str, hour: int) -> tuple[Client, str]:
    """A seller with both clusters for `hour`, every GPU offered; the product."""
    pid = op.create_products(skus=["GB200"], regions=[tag], from_hour=hour,
                             to_hour=hour + 1, tick="0.01")[0].product_id
    seller = Client(target, op.create_account(f"{tag}-seller", ["seller"]).token)
    nvl = [(f"d{d}t{t}", 4, f"b{d // 4}", f"r{d // 2}", f"nvl{d}")
           for d in range(DOMAINS) for t in range(TRAYS)]
    seller.register_capacity(f"{tag}-nvl", sku="GB200", region=tag, nodes=nvl,
                             from_hour=hour, to_hour=hour + 1)
    hgx = [(f"h{n}", 8, "hb0", f"hr{n // 8}", "") for n in range(HGX)]
    seller.register_capacity(f"{tag}-hgx", sku="GB200", region=tag, nodes=hgx,
                             from_hour=hour, to_hour=hour + 1)
    for cluster, gpus in ((f"{tag}-nvl", DOMAINS * TRAYS * 4), (f"{tag}-hgx", HGX * 8)):
        seller.place_order(pid, "sell", "2.00", gpus, cluster_id=cluster)
    return seller, pid


def jobs(n: int, seed: int) -> list[tuple[str, int]]:
    """(kind, GPUs): a third training jobs of 32-72 GPUs, the rest small jobs."""
    rng = random.Random(seed)
    return [("training", 4 * rng.randint(8, 18)) if rng.random() < 1 / 3
            else ("small", 4 * rng.randint(1, 4)) for _ in range(n)]


def run(op: Client, target: str, tag: str, hour: int, stream: list[tuple[str, int]],
        aware: bool) -> dict[str, Any]:
    _, pid = fleet(op, target, tag, hour)
    desk = Client(target, op.create_account(f"{tag}-desk", ["buyer"]).token)
    wanted = served = stranded = jobs_served = jobs_wanted = 0
    small = 0
    for kind, gpus in stream:
        terms: dict[str, Any] = {"gang": 4, "tif": "ioc"}
        if kind == "training" and aware:
            terms["locality"] = "nvlink_domain"
        o = desk.place_order(pid, "buy", "2.00", gpus, **terms)
        if kind == "small":
            small += o.filled
            continue
        jobs_wanted += 1
        wanted += gpus
        if o.filled < gpus:
            stranded += o.filled  # a partial fill cannot run the job either
            continue
        trades = {f.trade_id for f in o.fills}
        places = {(a.cluster_id, p[3] or p[0]) for a in desk.list_allocations(pid)
                  if a.trade_id in trades for p in a.places}
        if len(places) == 1:
            jobs_served += 1
            served += gpus
        else:
            stranded += gpus
    return {"training_jobs_served": jobs_served, "training_jobs": jobs_wanted,
            "training_gpus_served": served, "training_gpus_wanted": wanted,
            "gpus_held_but_unusable": stranded, "small_job_gpus": small}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=100)
    ap.add_argument("--seed", type=int, default=3)
    ap.add_argument("--out", type=Path, default=Path("bench/results"))
    args = ap.parse_args()
    token = secrets.token_urlsafe(16)
    server, loop = start_server("127.0.0.1:0", token)
    try:
        target = f"127.0.0.1:{server.port}"
        op = Client(target, token)
        hour = int(time.time()) // 3600 + 5
        stream = jobs(args.jobs, args.seed)
        started = time.perf_counter()
        aware = run(op, target, "aware", hour, stream, True)
        blind = run(op, target, "blind", hour + 1, stream, False)
        secs = time.perf_counter() - started
    finally:
        asyncio.run_coroutine_threadsafe(server.stop(1.0), loop).result(10)
    capacity = DOMAINS * TRAYS * 4 + HGX * 8
    print(f"{args.jobs} jobs (seed {args.seed}) on {capacity} GPUs, each stream twice, "
          f"{secs:.1f} s")
    print(f"{'':34} {'locality-aware':>15} {'topology-blind':>15}")
    for key, label in (("training_jobs_served", "training jobs served"),
                       ("training_gpus_served", "training GPUs served"),
                       ("gpus_held_but_unusable", "GPUs held but unusable"),
                       ("small_job_gpus", "small-job GPUs")):
        print(f"{label:34} {aware[key]:>15} {blind[key]:>15}")
    print(f"{'training jobs wanted':34} {aware['training_jobs']:>15} "
          f"{blind['training_jobs']:>15}")
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"jobs": args.jobs, "seed": args.seed, "capacity_gpus": capacity,
              "locality_aware": aware, "topology_blind": blind}
    (args.out / "locality.json").write_text(json.dumps(report, indent=2))
    try:
        import matplotlib
    except ImportError:
        return
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    labels = ["training GPUs served\nin one NVLink domain", "GPUs held\nbut unusable",
              "small-job GPUs"]
    keys = ["training_gpus_served", "gpus_held_but_unusable", "small_job_gpus"]
    xs = range(len(keys))
    ax.bar([x - 0.2 for x in xs], [aware[k] for k in keys], 0.4, label="locality-aware")
    ax.bar([x + 0.2 for x in xs], [blind[k] for k in keys], 0.4, label="topology-blind")
    ax.set_xticks(list(xs), labels)
    ax.set(ylabel="GPUs", title=(
        f"{aware['training_jobs_served']} vs {blind['training_jobs_served']} of "
        f"{aware['training_jobs']} training jobs served in one domain"))
    ax.legend()
    fig.tight_layout()
    fig.savefig(args.out / "locality.png", dpi=110)


if __name__ == "__main__":
    main()
