"""Service benchmark over loopback: starts ``spotex serve`` in its own process and measures
from this one (a) unary PlaceOrder latency, one call at a time, (b) unary throughput with
concurrent asyncio callers, and (c) streaming bulk entry (SubmitOrders). The orders are
passive bids that rest, alternating with cancels, so the book stays small. Bounded in
count; the server stops at the end. Writes bench/results/service.json.

    python bench/bench_service.py [--unary 3000] [--concurrent 16] [--stream 30000]
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

from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex.client import AsyncClient, Client


def pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    return s[min(len(s) - 1, int(len(s) * q))]


def start_server(token: str, data: str, *extra: str) -> tuple[subprocess.Popen[str], str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "spotex.cli", "serve", "--listen", "127.0.0.1:0",
         "--data-dir", data, "--operator-token", token,
         # a benchmark account is a market maker: lift the per-account defaults
         "--orders-per-second", "1e9", "--order-burst", "1000000000",
         "--max-open-orders", "10000000", *extra],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True)
    assert proc.stderr is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        m = re.search(r"listening on (\S+)", line)
        if m:
            return proc, m.group(1)
    proc.kill()
    raise RuntimeError("server did not start")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--unary", type=int, default=3000)
    ap.add_argument("--concurrent", type=int, default=16)
    ap.add_argument("--concurrent-orders", type=int, default=10_000)
    ap.add_argument("--stream", type=int, default=30_000)
    ap.add_argument("--per-message", type=int, default=100)
    ap.add_argument("--out", default="bench/results/service.json")
    args = ap.parse_args()

    token = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory() as data:
        proc, target = start_server(token, data)
        try:
            results = run(target, token, args)
        finally:
            proc.terminate()
            proc.wait(10)
    print(json.dumps(results, indent=2))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": {"cores": os.cpu_count()}, "results": results},
                              indent=2))


def bench_market(target: str, token: str) -> tuple[str, Client, str]:
    """One product three hours out and a buyer: (product id, buyer client, buyer token)."""
    op = Client(target, token)
    now_hour = int(time.time()) // 3600
    pid = op.create_products(skus=["H100-SXM"], regions=["us-east"], from_hour=now_hour + 3,
                             to_hour=now_hour + 4)[0].product_id
    buyer = op.create_account("bench", ["buyer"])
    return pid, Client(target, buyer.token), buyer.token


def run(target: str, token: str, args: argparse.Namespace) -> dict[str, Any]:
    pid, c, buyer_token = bench_market(target, token)
    results: dict[str, Any] = {}

    # (0) the peer in the same run: a bare gRPC health check against the same server
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    with grpc.insecure_channel(target) as ch:
        health = health_pb2_grpc.HealthStub(ch)
        lat = []
        for _ in range(args.unary):
            t = time.perf_counter()
            health.Check(health_pb2.HealthCheckRequest())
            lat.append(time.perf_counter() - t)
    results["grpc_health_check"] = {"calls": args.unary, "p50_ms": pct(lat, .5) * 1e3,
                                    "p99_ms": pct(lat, .99) * 1e3,
                                    "p999_ms": pct(lat, .999) * 1e3}

    # (a) unary latency: place a resting bid, then cancel it, one call at a time
    lat: list[float] = []
    start = time.perf_counter()
    for i in range(args.unary):
        t = time.perf_counter()
        o = c.place_order(pid, "buy", "1.00", 1 + i % 8)
        lat.append(time.perf_counter() - t)
        c.cancel_order(o.order_id)
    secs = time.perf_counter() - start
    results["unary_place"] = {"calls": args.unary, "p50_ms": pct(lat, .5) * 1e3,
                              "p99_ms": pct(lat, .99) * 1e3, "p999_ms": pct(lat, .999) * 1e3,
                              "calls_per_sec_sequential": 2 * args.unary / secs}

    # (b) unary throughput with concurrent callers on one channel
    async def concurrent() -> tuple[float, list[float]]:
        lat: list[float] = []
        async with AsyncClient(target, buyer_token) as ac:
            per = args.concurrent_orders // args.concurrent

            async def worker(w: int) -> None:
                for i in range(per):
                    t = time.perf_counter()
                    await ac.place_order(pid, "buy", f"1.{(w + i) % 50:02d}", 1)
                    lat.append(time.perf_counter() - t)
            t0 = time.perf_counter()
            await asyncio.gather(*(worker(w) for w in range(args.concurrent)))
            return time.perf_counter() - t0, lat
    secs, lat = asyncio.run(concurrent())
    results["unary_concurrent"] = {"callers": args.concurrent, "orders": len(lat),
                                   "orders_per_sec": len(lat) / secs,
                                   "p50_ms": pct(lat, .5) * 1e3, "p99_ms": pct(lat, .99) * 1e3,
                                   "p999_ms": pct(lat, .999) * 1e3}

    # (c) streaming bulk entry: one order per message, then market-maker batches
    md = (("authorization", f"Bearer {buyer_token}"),)
    for per in (1, args.per_message):
        orders = [pb.PlaceOrderRequest(product_id=pid, side=pb.SIDE_BUY,
                                       price_micros=500_000 + (i % 50) * 10_000,
                                       quantity=1 + i % 8) for i in range(args.stream)]
        reqs = [pb.SubmitOrdersRequest(orders=orders[i:i + per])
                for i in range(0, len(orders), per)]
        t0 = time.perf_counter()
        ok = sum(1 for r in c._stubs["market"].SubmitOrders(iter(reqs), metadata=md)
                 for x in r.results if not x.code)
        secs = time.perf_counter() - t0
        results[f"stream_submit_{per}_per_message"] = {
            "orders": args.stream, "accepted": ok, "orders_per_sec": args.stream / secs}
    return results


if __name__ == "__main__":
    main()
