"""Durability benchmark: replay speed from disk, by the operator's replay tool and by the
server's recovery (both in Rust), on a journal of the core benchmark's workload. Writes
bench/results/durability.json. (Acknowledged orders per second under each fsync policy:
``spotex bench --fsync batch`` and ``--fsync none``.)

    python bench/bench_durability.py [--ops 200000]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
from bench_core import calls, market  # noqa: E402

from spotex import SpotexError, wire  # noqa: E402
from spotex._core import journal_segments, replay_journal, workload  # noqa: E402
from spotex._proto.spotex.v1 import spotex_pb2 as pb  # noqa: E402
from spotex.server.host import JOURNAL, EngineHost, HostError  # noqa: E402


class _Engine:
    """Adapts the workload's per-call form to gateway operations."""

    def __init__(self, gw: EngineHost) -> None:
        self.gw = gw

    def create_product(self, pid: str, *, tick: int, lot: int, open_at: int, close_at: int,
                       ts: int) -> None:
        self.gw.create_product(pid, tick, lot, close_at, open_at)

    def register_capacity(self, account: int, cid: str, **kw: Any) -> None:
        self.gw.register_capacity(account, pb.RegisterCapacityRequest(
            cluster_id=cid, sku=kw["sku"], region=kw["region"],
            nodes=[pb.Node(node_id=n, gpus=g) for n, g in kw["nodes"]],
            from_hour=kw["from_hour"], to_hour=kw["to_hour"]).SerializeToString())


def build_journal(d: Path, ops: int) -> int:
    products, clusters, records = workload(ops=ops)
    now = [products[0][3]]  # the workload's own times: the gateway stamps these
    gw = EngineHost(clock=lambda: now[0], data_dir=d, fsync="none", snapshot_every=10**12)

    def go() -> None:
        market(_Engine(gw), products, clusters)
        for op in calls(records, products, clusters):
            now[0] = op[-4] if op[0] == "place" else op[-1]
            try:
                if op[0] == "place":
                    _, acct, pid, side, price, qty, _ts, tif, cid, gang = op
                    gw.place(acct, pb.PlaceOrderRequest(
                        product_id=pid, side=wire.SIDE_TO_PB[side], price_micros=price,
                        quantity=qty, time_in_force=wire.TIF_TO_PB[tif], cluster_id=cid or "",
                        gang=gang).SerializeToString(), buyer=True, seller=True)
                elif op[0] == "cancel":
                    gw.cancel(op[1], pb.CancelOrderRequest(order_id=op[2]).SerializeToString())
                else:
                    gw.advance_time()
            except (SpotexError, HostError):
                pass
    gw.call(go)
    n = gw.sequence
    gw.close()
    return n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--ops", type=int, default=200_000)
    ap.add_argument("--out", default="bench/results/durability.json")
    args = ap.parse_args()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp) / "data"
        t = time.perf_counter()
        n = build_journal(d, args.ops)
        size = sum(p.stat().st_size for _, p in journal_segments(d / JOURNAL))
        results["journal"] = {"records": n, "bytes": size,
                              "build_seconds": time.perf_counter() - t}
        t = time.perf_counter()
        engine, last, trades, _ = replay_journal(d / JOURNAL)
        secs = time.perf_counter() - t
        assert last == n
        results["replay_rust"] = {"records_per_sec": n / secs, "seconds": secs,
                                  "trades": len(trades)}
        t = time.perf_counter()
        gw = EngineHost(data_dir=d, fsync="none")
        secs = time.perf_counter() - t
        assert gw.call(gw.state_hash) == engine.state_hash()
        gw.close()
        results["recovery_server"] = {"records_per_sec": n / secs, "seconds": secs}

    print(json.dumps(results, indent=2))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": {"cores": os.cpu_count()}, "results": results},
                              indent=2))


if __name__ == "__main__":
    main()
