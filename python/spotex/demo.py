"""A demo market in one process: two sellers list H100 capacity for the next hours, buyers
bid with and without gang constraints, and the engine prints the book, the trades and the
concrete GPUs each buyer received.

    python -m spotex.demo [--seed N]
"""

from __future__ import annotations

import argparse
import datetime as dt
import random

from spotex import Engine, SpotexError, format_price, parse_price

HOUR = 3_600_000_000
SELLERS = {101: ("hyperscaler-iad-1", 16), 102: ("neocloud-iad-7", 6)}
BUYERS = {201: "startup", 202: "lab", 203: "enterprise"}


def hour_id(h: int) -> str:
    return dt.datetime.fromtimestamp(h * 3600, dt.UTC).strftime("%Y-%m-%dT%H")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--seed", type=int, default=7)
    args = ap.parse_args()
    rng = random.Random(args.seed)

    now_hour = int(dt.datetime.now(dt.UTC).timestamp()) // 3600
    ts = now_hour * HOUR
    e = Engine()
    delivery = now_hour + 3
    pid = f"H100-SXM/us-east/{hour_id(delivery)}"
    e.create_product(pid, tick=10_000, lot=1, open_at=ts, close_at=(delivery - 1) * HOUR, ts=ts)
    for seller, (cluster, nodes) in SELLERS.items():
        e.register_capacity(seller, cluster, sku="H100-SXM", region="us-east",
                            nodes=[(f"node-{i:03}", 8) for i in range(nodes)],
                            from_hour=now_hour, to_hour=now_hour + 24, ts=ts)

    trades = []
    for _ in range(60):
        ts += rng.randint(1_000, 5_000_000)
        try:
            if rng.random() < 0.45:
                seller = rng.choice(list(SELLERS))
                price = parse_price(f"{rng.uniform(1.8, 2.6):.2f}")
                events = e.place(seller, pid, "sell", price, rng.choice([4, 8, 8, 16]), ts=ts,
                                 cluster_id=SELLERS[seller][0])
            else:
                buyer = rng.choice(list(BUYERS))
                gang = rng.choice([1, 1, 8])
                price = parse_price(f"{rng.uniform(1.6, 2.4):.2f}")
                events = e.place(buyer, pid, "buy", price, gang * rng.randint(1, 3), ts=ts,
                                 gang=gang)
        except SpotexError as err:
            print(f"  rejected: {err.reason}")
            continue
        trades += [ev for ev in events if ev.kind == "allocated"]

    print(f"\n{pid}: {len(trades)} trades\n")
    bids, asks = e.l2(pid, depth=8)
    print(f"{'bid qty':>10} {'bid':>8} | {'ask':<8} {'ask qty':<10}")
    for i in range(max(len(bids), len(asks))):
        bid = f"{bids[i][1]:>10} {format_price(bids[i][0]):>8}" if i < len(bids) else " " * 19
        ask = f"{format_price(asks[i][0]):<8} {asks[i][1]:<10}" if i < len(asks) else ""
        print(f"{bid} | {ask}")
    print("(a bid for whole 8-GPU nodes may rest above an ask that cannot place a whole node)")
    print("\nallocations (buyer <- seller: GPUs on nodes)")
    for ev in trades[-8:]:
        a = ev.allocation
        assert a is not None
        where = ", ".join(f"{node}[{','.join(map(str, g))}]" for node, g in a.slots)
        print(f"  {BUYERS[a.buyer]:<10} <- {a.cluster:<18} {a.qty:>3} GPUs "
              f"@ ${format_price(a.price)}: {where}")
    for cluster, _ in SELLERS.values():
        u = e.utilisation(cluster, delivery)
        assert u is not None
        print(f"\n{cluster}: sold {u.sold}, offered {u.offered}, idle {u.idle} of {u.capacity}")
    print(f"\nstate hash {e.state_hash()}")


if __name__ == "__main__":
    main()
