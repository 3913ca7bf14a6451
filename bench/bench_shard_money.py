"""What money across shards costs a buy, through a shard gateway over two engines:

    python bench/bench_shard_money.py [--buys 300]

One process: two engines checking money (no credit) behind a gateway, all on loopback.
A buyer's whole money is $10. Three kinds of buy, each timed from the SDK's call to its
answer, the same number of each, interleaved so that the machine's drift falls on all:

- ``fits``: a $5 bid on the home shard, which has all $10 (no move);
- ``one move``: a $5 bid on the other shard, which has none: refused there, half of
  the $10 moved over (three journaled steps), sent again;
- ``two moves``: a $10 bid on the home shard, which has $5 now: half of the other's $5
  is not enough, so the rest is moved too, and the bid is sent a third time (all $10
  are home again for the next round).

Between buys the bid is cancelled (untimed), so every buy starts from the same place.
Prints each kind's median, p90 and mean in milliseconds, and the ratio to ``fits``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

from spotex.client import AsyncClient
from spotex.cluster.gateway import ShardGateway
from spotex.cluster.routes import Routes, ShardSpec
from spotex.server.ledger import MoneySettings
from spotex.server.limits import Limits
from spotex.server.service import Server

TOKEN, GATEWAY = "bench-operator", "bench-gateway"
HOUR = 500_000
LIMITS = Limits(orders_per_second=1e9, order_burst=10**9)


async def run(buys: int, base: Path) -> dict[str, list[float]]:
    engines = [await Server.start("127.0.0.1:0", base / f"s{i}", TOKEN, tick_seconds=1,
                                  shard_index=i, gateway_token=GATEWAY, limits=LIMITS,
                                  access_log=False, money=MoneySettings(default_credit=0))
               for i in (1, 2)]
    specs = [ShardSpec(i, (f"127.0.0.1:{e.port}",))
             for i, e in zip((1, 2), engines, strict=True)]
    routes = Routes(specs, {"H100/us-east": 1, "B200/us-east": 2})
    gw = await ShardGateway.start("127.0.0.1:0", routes, GATEWAY, base / "gw", TOKEN,
                                  limits=LIMITS, access_log=False)
    target = f"127.0.0.1:{gw.port}"
    op = AsyncClient(target, TOKEN)
    await op.create_products(skus=["H100", "B200"], regions=["us-east"], from_hour=HOUR,
                             to_hour=HOUR + 1)
    made = await op.create_account("buyer", ["buyer"])
    await op.deposit(made.account_id, "10")
    buyer = AsyncClient(target, made.token)
    home = routes.indices[made.account_id % 2]
    sku = {1: "H100", 2: "B200"}
    pid = {i: f"{sku[i]}/us-east/2027-01-15T08" for i in (1, 2)}
    times: dict[str, list[float]] = {"fits": [], "one move": [], "two moves": []}

    async def timed(kind: str, shard: int, price: str) -> None:
        t0 = time.perf_counter()
        o = await buyer.place_order(pid[shard], "buy", price, 1)
        times[kind].append((time.perf_counter() - t0) * 1000)
        await buyer.cancel_order(o.order_id)

    other = 3 - home
    for _ in range(buys):
        # all $10 on the home shard
        await timed("fits", home, "5")
        await timed("one move", other, "5")  # half of $10 moved: $5 on each shard
        await timed("two moves", home, "10")  # half of $5 is not enough: then the rest
        b = await buyer.balance()
        assert (b.current, b.holds, b.in_transit) == (10, 0, 0), b
    await buyer.close()
    await op.close()
    await gw.stop(0)
    for e in engines:
        await e.stop(0)
    return times


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--buys", type=int, default=300, help="rounds (one buy of each kind)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as d:
        times = asyncio.run(run(args.buys, Path(d)))
    fits = statistics.median(times["fits"])
    print(f"{'buy':<10} {'n':>5} {'p50 ms':>8} {'p90 ms':>8} {'mean ms':>8} {'p50 / fits':>10}")
    for kind, xs in times.items():
        xs = sorted(xs)
        p50 = statistics.median(xs)
        print(f"{kind:<10} {len(xs):>5} {p50:>8.2f} {xs[int(0.9 * (len(xs) - 1))]:>8.2f} "
              f"{statistics.fmean(xs):>8.2f} {p50 / fits:>10.2f}")


if __name__ == "__main__":
    main()
