"""Durability benchmark: replay speed from disk, in the Rust core and through the
gateway's recovery, on a journal of the core benchmark's workload. Writes
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

from spotex import SpotexError  # noqa: E402
from spotex._core import journal_segments, replay_journal, workload  # noqa: E402
from spotex.gateway import JOURNAL, Gateway, GatewayError  # noqa: E402


class _Engine:
    """Adapts the workload's per-call form to gateway operations."""

    def __init__(self, gw: Gateway) -> None:
        self.gw = gw

    def create_product(self, pid: str, *, tick: int, lot: int, open_at: int, close_at: int,
                       ts: int) -> None:
        self.gw.create_product(pid, tick, lot, close_at, open_at)

    def register_capacity(self, account: int, cid: str, **kw: Any) -> None:
        kw.pop("ts")
        self.gw.register_capacity(account, cid, kw["sku"], kw["region"], kw["nodes"],
                                  kw["from_hour"], kw["to_hour"])


def build_journal(d: Path, ops: int) -> int:
    products, clusters, records = workload(ops=ops)
    t0 = products[0][3]
    gw = Gateway(clock=lambda: t0, data_dir=d, fsync="none", snapshot_every=10**12)

    def go() -> None:
        market(_Engine(gw), products, clusters)
        for op in calls(records, products, clusters):
            gw._forced_ts = op[-4] if op[0] == "place" else op[-1]
            try:
                if op[0] == "place":
                    _, acct, pid, side, price, qty, _ts, tif, cid, gang = op
                    gw.place(acct, "", pid, side, price, qty, tif=tif, cluster=cid, gang=gang)
                elif op[0] == "cancel":
                    gw.cancel(op[1], op[2])
                else:
                    gw.advance_time()
            except (SpotexError, GatewayError):
                pass
        gw._forced_ts = None
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
        engine, last, trades = replay_journal(d / JOURNAL)
        secs = time.perf_counter() - t
        assert last == n
        results["replay_rust"] = {"records_per_sec": n / secs, "seconds": secs,
                                  "trades": len(trades)}
        t = time.perf_counter()
        gw = Gateway(data_dir=d, fsync="none")
        secs = time.perf_counter() - t
        assert gw.call(gw.engine.state_hash) == engine.state_hash()
        gw.close()
        results["recovery_gateway"] = {"records_per_sec": n / secs, "seconds": secs}

    print(json.dumps(results, indent=2))
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"machine": {"cores": os.cpu_count()}, "results": results},
                              indent=2))


if __name__ == "__main__":
    main()
