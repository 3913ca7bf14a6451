"""Price calls against a plain GetBook, in one run on one server:

    python bench/bench_prices.py [--calls 300] [--days 30]

A server (``spotex serve``, its own process) lists one SKU and region for 168 delivery
hours, with a resting bid and ask in every hour and a trade in some; its trade tape is
seeded first with a month of trades, one a minute (``--days``), through the tape's own
path (``Tape.offer``), so the family has a month of 1-minute candles. Then, one call at
a time over gRPC (generated stubs, no SDK conversion):

- ``GetBook`` of one product, depth 20: the baseline;
- ``GetCurve`` of the 168 hours (books, last trades, auction prices, volumes);
- ``ListCandles`` of the family at 1m over the month: one page of 1,000 candles, and the
  whole month page by page (``--days`` x 1,440 candles).

Prints p50/p99 per call and the ratios to GetBook; writes bench/results/prices.json.
"""

from __future__ import annotations

import argparse
import json
import secrets
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

import grpc

from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex._proto.spotex.v1 import spotex_pb2_grpc as pb_grpc
from spotex.client import Client
from spotex.server.prices import DAY, MINUTE
from spotex.server.tape import FILE as TAPE
from spotex.server.tape import Tape
from spotex.tools.loadgen import histogram, machine, summary
from spotex.tools.testing import ServerProcess

RESULTS = Path(__file__).parent / "results"
SKU, REGION = "H100-SXM", "bench-1"


def seed_tape(data_dir: Path, days: int, start: int) -> int:
    """A month of trades, one a minute, folded through the tape's own path (their ids
    numbered as a shard 30 would, apart from the ids this server gives)."""
    data_dir.mkdir(parents=True, exist_ok=True)
    tape = Tape(data_dir / TAPE)
    tape.start()
    n = days * 1440
    product = f"{SKU}/{REGION}/2020-01-01T00"  # a past hour: candles of the family
    batch: list[Any] = []
    for i in range(n):
        batch.append(pb.MarketData(product_id=product, trade=pb.Trade(
            trade_id=(30 << 48) + i, price_micros=2_000_000 + (i % 50) * 10_000, quantity=8,
            aggressor=pb.SIDE_BUY, time_micros=start + i * MINUTE)))
        if len(batch) == 1000 or i == n - 1:
            raw = pb.MarketDataBatch(updates=batch).SerializeToString()
            tape.offer(0, 0, [(product, len(batch), raw)])
            batch = []
    tape.wait()
    tape.close()
    return n


def timed(fn: Any, calls: int) -> dict[str, float]:
    h = histogram()
    for _ in range(calls):
        t = time.perf_counter()
        fn()
        h.record_value(max(1, int((time.perf_counter() - t) * 1e6)))
    return summary(h)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--days", type=int, default=30)
    args = ap.parse_args()
    token = secrets.token_urlsafe(16)
    now_hour = int(time.time()) // 3600
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "data"
        started = time.perf_counter()
        month_start = (int(time.time() * 1e6) // DAY - args.days - 1) * DAY
        seeded = seed_tape(data, args.days, month_start)
        seed_s = time.perf_counter() - started
        print(f"seeded the tape with {seeded} trades ({args.days} days, one a minute) in "
              f"{seed_s:.1f} s")
        server = ServerProcess(data, token, "--fsync", "none")
        try:
            op = Client(server.target, token)
            seller = Client(server.target, op.create_account("s", ["seller"]).token)
            buyer = Client(server.target, op.create_account("b", ["buyer"]).token)
            products = op.create_products(skus=[SKU], regions=[REGION],
                                          from_hour=now_hour + 2, to_hour=now_hour + 170)
            seller.register_capacity("c", sku=SKU, region=REGION,
                                     nodes=[(f"n{i}", 8) for i in range(4)],
                                     from_hour=now_hour, to_hour=now_hour + 200)
            for i, p in enumerate(products):
                seller.place_order(p.product_id, "sell", "2.50", 16, cluster_id="c")
                buyer.place_order(p.product_id, "buy", "2.00", 8)
                if i % 4 == 0:
                    buyer.place_order(p.product_id, "buy", "2.50", 8)
            channel = grpc.insecure_channel(server.target)
            stub = pb_grpc.MarketStub(channel)
            md = (("authorization", f"Bearer {token}"),)
            book_req = pb.GetBookRequest(product_id=products[0].product_id, depth=20)
            curve_req = pb.GetCurveRequest(sku=SKU, region=REGION)
            assert len(stub.GetCurve(curve_req, metadata=md).points) == 168
            page_req = pb.ListCandlesRequest(sku=SKU, region=REGION, interval="1m",
                                             from_micros=month_start, page_size=1000)

            def month() -> int:
                n, token_ = 0, ""
                while True:
                    r = stub.ListCandles(pb.ListCandlesRequest(
                        sku=SKU, region=REGION, interval="1m", from_micros=month_start,
                        page_size=1000, page_token=token_), metadata=md)
                    n += len(r.candles)
                    token_ = r.next_page_token
                    if not token_:
                        return n
            candles = month()
            assert candles >= seeded, candles
            for _ in range(20):  # warm up
                stub.GetBook(book_req, metadata=md)
                stub.GetCurve(curve_req, metadata=md)
                stub.ListCandles(page_req, metadata=md)
            results = {
                "GetBook (1 product, depth 20)": timed(
                    lambda: stub.GetBook(book_req, metadata=md), args.calls),
                "GetCurve (168 hours)": timed(
                    lambda: stub.GetCurve(curve_req, metadata=md), args.calls),
                "ListCandles 1m, one page of 1,000": timed(
                    lambda: stub.ListCandles(page_req, metadata=md), args.calls),
                f"ListCandles 1m, the month ({candles} candles, "
                f"{(candles + 999) // 1000} pages)": timed(month, max(5, args.calls // 20)),
            }
            channel.close()
        finally:
            server.stop()
    base = results["GetBook (1 product, depth 20)"]["p50"]
    print(f"{'call':58} {'p50 ms':>8} {'p99 ms':>8} {'p50 / GetBook':>14}")
    for name, s in results.items():
        print(f"{name:58} {s['p50']:8.2f} {s['p99']:8.2f} {s['p50'] / base:13.1f}x")
    RESULTS.mkdir(exist_ok=True)
    out: dict[str, Any] = defaultdict(dict)
    out.update({"machine": machine(), "calls": args.calls, "days": args.days,
                "seeded_trades": seeded, "seed_seconds": seed_s, "results": results})
    (RESULTS / "prices.json").write_text(json.dumps(out, indent=2))
    print(f"wrote {RESULTS / 'prices.json'}")


if __name__ == "__main__":
    sys.exit(main())
