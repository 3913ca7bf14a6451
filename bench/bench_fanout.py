"""Market-data fan-out: how order latency and the server's CPU hold up as subscribers
grow, and whether every subscriber sees every trade.

    python bench/bench_fanout.py [--subscribers 1000] [--pairs 200] [--relays 2]

One trader enters buy-sell pairs that trade (an ask, then a bid that crosses it), one
pair at a time, and times each pair from the first send to the second answer. The same
run is made with one market-data subscriber and with ``--subscribers`` of them, spread
over ``--processes`` processes of their own (each holding its share of the streams on a
few channels), at the lowest CPU priority (SCHED_IDLE: they stand in for clients on
other machines). The server runs with ``--market-data-relays RELAYS`` and subscribers
connect to the relays' address (``--relays 0``: to the server itself, as before the
relays). Each subscriber counts the trades it receives; the run waits until all have
seen every trade, or a deadline. Reported: pair latency p50 and p99 in both runs and
their ratio (target: p50 within 3x), trades seen, and the server's CPU per update
delivered (CPU time of the server process and of its relays over updates sent to all
subscribers). Writes bench/results/fanout.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import secrets
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import grpc

from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex.client import Client
from spotex.tools.loadgen import cpu_seconds, histogram, machine, summary
from spotex.tools.testing import ServerProcess

RESULTS = Path(__file__).parent / "results"


# ---- a subscriber process (this script with --subscribe) ----------------------------------

async def subscribe_main(target: str, token: str, product: str, streams: int,
                         expect: int, seconds: float) -> None:
    """``streams`` market-data subscriptions; prints ``ready`` once all have their
    snapshot, then the trades each saw, as JSON, once all saw ``expect`` or time is up."""
    try:  # the lowest priority there is: run only on a CPU nothing else wants
        os.sched_setscheduler(0, os.SCHED_IDLE, os.sched_param(0))
    except (AttributeError, OSError):
        os.nice(19)
    md = (("authorization", f"Bearer {token}"),)
    channels = [grpc.aio.insecure_channel(target) for _ in range(max(1, streams // 50))]
    seen = [0] * streams
    updates = [0] * streams
    ready = asyncio.Event()
    snapshotted = 0

    async def one(i: int) -> None:
        nonlocal snapshotted
        ch = channels[i % len(channels)]
        call = ch.unary_stream(
            "/spotex.v1.Market/StreamMarketData",
            request_serializer=pb.StreamMarketDataRequest.SerializeToString,
            response_deserializer=pb.MarketDataBatch.FromString)
        first = True
        async for batch in call(pb.StreamMarketDataRequest(product_ids=[product]), metadata=md):
            updates[i] += len(batch.updates)
            seen[i] += sum(1 for u in batch.updates if u.WhichOneof("payload") == "trade")
            if first:
                first = False
                snapshotted += 1
                if snapshotted == streams:
                    ready.set()
            if seen[i] >= expect:
                return
    tasks = [asyncio.ensure_future(one(i)) for i in range(streams)]
    await asyncio.wait_for(ready.wait(), 120)
    print("ready", flush=True)
    await asyncio.wait(tasks, timeout=seconds)
    for t in tasks:
        t.cancel()
    print(json.dumps({"seen": seen, "updates": sum(updates)}), flush=True)
    for ch in channels:
        await ch.close()


# ---- the run --------------------------------------------------------------------------------

async def pairs(target: str, seller: Any, buyer: Any, product: str, n: int) -> dict[str, float]:
    h = histogram()
    async with grpc.aio.insecure_channel(target) as ch:
        place = ch.unary_unary("/spotex.v1.Market/PlaceOrder")
        for k in range(n):
            price = 2_000_000 + (k % 20) * 10_000
            ask = pb.PlaceOrderRequest(product_id=product, side=pb.SIDE_SELL,
                                       price_micros=price, quantity=1, cluster_id="fanout")
            bid = pb.PlaceOrderRequest(product_id=product, side=pb.SIDE_BUY,
                                       price_micros=price, quantity=1)
            t = time.perf_counter_ns()
            await place(ask.SerializeToString(), metadata=seller)
            await place(bid.SerializeToString(), metadata=buyer)
            h.record_value(max(1, (time.perf_counter_ns() - t) // 1000))
    return summary(h)


def relays_of(server: ServerProcess, n: int, timeout: float = 60.0) -> tuple[str, list[int]]:
    """The address the server's relays share and their pids, once all ``n`` serve."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        text = server.text()
        found = re.search(r"market data: \d+ relays at (\S+) \(pids ([\d ]+)\)", text)
        if found and text.count("spotex relay serving market data") >= n:
            return found.group(1), [int(p) for p in found.group(2).split()]
        time.sleep(0.05)
    raise RuntimeError("the relays did not start: " + server.text())


def run(subscribers: int, processes: int, n_pairs: int, seconds: float,
        relays: int) -> dict[str, Any]:
    token = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="spotex-fanout-") as data:
        server = ServerProcess(data, token, "--orders-per-second", "1e9",
                               "--order-burst", "1000000000",
                               "--subscriber-queue", "1000000",
                               "--market-data-relays", str(relays))
        subs: list[subprocess.Popen[str]] = []
        try:
            md_target, pids = relays_of(server, relays) if relays else (server.target, [])
            pids = [server.pid, *pids]
            op = Client(server.target, token)
            h = int(time.time()) // 3600 + 3
            product = op.create_products(skus=["H100-SXM"], regions=["us-east"],
                                         from_hour=h, to_hour=h + 1,
                                         tick="0.01")[0].product_id
            s = op.create_account("seller", ["seller"])
            b = op.create_account("buyer", ["buyer"])
            watcher = op.create_account("watcher", ["buyer"])
            Client(server.target, s.token).register_capacity(
                "fanout", sku="H100-SXM", region="us-east",
                nodes=[(f"n{i}", 8) for i in range(max(1, n_pairs // 8 + 1))],
                from_hour=h, to_hour=h + 1)
            per = [subscribers // processes + (1 if i < subscribers % processes else 0)
                   for i in range(min(processes, subscribers))]
            for k in per:
                subs.append(subprocess.Popen(
                    [sys.executable, __file__, "--subscribe", md_target, watcher.token,
                     product, str(k), str(n_pairs), str(seconds)],
                    stdout=subprocess.PIPE, text=True))
            for p in subs:
                assert p.stdout is not None
                assert p.stdout.readline().strip() == "ready", "a subscriber did not start"
            cpu0 = [cpu_seconds(p)[0] for p in pids]
            latency = asyncio.run(pairs(server.target,
                                        (("authorization", f"Bearer {s.token}"),),
                                        (("authorization", f"Bearer {b.token}"),),
                                        product, n_pairs))
            seen: list[int] = []
            delivered = 0
            for p in subs:
                out, _ = p.communicate(timeout=seconds + 60)
                r = json.loads(out.strip().splitlines()[-1])
                seen += r["seen"]
                delivered += r["updates"]
            cpus = [cpu_seconds(p)[0] - c0 for p, c0 in zip(pids, cpu0, strict=True)]
            cpu = sum(cpus)
        finally:
            for p in subs:
                if p.poll() is None:
                    p.kill()
            server.stop()
    return {"subscribers": subscribers, "relays": relays, "pairs": n_pairs,
            "pair_latency_ms": latency,
            "every_subscriber_saw_every_trade": all(x >= n_pairs for x in seen),
            "fewest_trades_seen": min(seen), "updates_delivered": delivered,
            "server_cpu_s": cpu, "of_which_server_process_s": cpus[0],
            "of_which_relays_s": cpu - cpus[0],
            "server_cpu_us_per_update": cpu / max(1, delivered) * 1e6}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--subscribe", nargs=6, help=argparse.SUPPRESS)
    ap.add_argument("--subscribers", type=int, default=1000)
    ap.add_argument("--processes", type=int, default=8)
    ap.add_argument("--relays", type=int, default=2,
                    help="market-data relays the server starts (0: subscribe to the server)")
    ap.add_argument("--pairs", type=int, default=200)
    ap.add_argument("--seconds", type=float, default=60.0,
                    help="how long subscribers wait for every trade, at most")
    ap.add_argument("--out", type=Path, default=RESULTS / "fanout.json")
    cfg = ap.parse_args()
    if cfg.subscribe:
        target, token, product, streams, expect, seconds = cfg.subscribe
        asyncio.run(subscribe_main(target, token, product, int(streams), int(expect),
                                   float(seconds)))
        return
    one = run(1, 1, cfg.pairs, cfg.seconds, cfg.relays)
    many = run(cfg.subscribers, cfg.processes, cfg.pairs, cfg.seconds, cfg.relays)
    ratio = many["pair_latency_ms"]["p50"] / one["pair_latency_ms"]["p50"]
    for r in (one, many):
        lat = r["pair_latency_ms"]
        print(f"{r['subscribers']:5d} subscribers: pair p50 {lat['p50']:.2f} ms, "
              f"p99 {lat['p99']:.2f} ms; every trade seen by all: "
              f"{r['every_subscriber_saw_every_trade']} (fewest {r['fewest_trades_seen']} "
              f"of {r['pairs']}); {r['updates_delivered']:,} updates delivered, "
              f"server CPU (with {r['relays']} relays) "
              f"{r['server_cpu_us_per_update']:.1f} us per update (server process "
              f"{r['of_which_server_process_s'] / max(1, r['updates_delivered']) * 1e6:.1f})")
    print(f"pair p50 with {cfg.subscribers} subscribers / with 1: {ratio:.2f}x (target <= 3x)")
    result = {"one": one, "many": many, "p50_ratio": ratio, "machine": machine(),
              "processes": cfg.processes}
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {cfg.out}")


if __name__ == "__main__":
    main()
