"""The service against the floor it runs on, measured side by side in one run: a bare
``grpc.aio`` server that echoes the same bytes (in its own process, as spotex is), and
the disk's fdatasync in the directory the data lives in.

    python bench/bench_floor.py [--seconds 8] [--calls 3000]

* unary PlaceOrder, one call at a time: p50 and p99 against the echo's, and against the
  floor of a durable acknowledgement (echo p50 + one fdatasync p50);
* SubmitOrders, 100 orders a message, 4 messages in flight, one client: orders/s against
  the echo's, with no subscribers and with 2 market-data and 2 execution subscribers
  attached (they read in this process while the client sends).

Writes bench/results/floor.json. The orders are IOC orders that find nothing to match
(unary: each is accepted, journaled and cancelled, leaving the book as it was) and
passive bids spread over 50 ticks (streaming: they rest, so subscribers see level updates
and every order its executions).
"""

from __future__ import annotations

import argparse
import asyncio
import json
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
from spotex.tools.loadgen import fsync_floor, histogram, machine, summary
from spotex.tools.testing import ServerProcess

PLACE = "/spotex.v1.Market/PlaceOrder"
SUBMIT = "/spotex.v1.Market/SubmitOrders"
RESULTS = Path(__file__).parent / "results"


# ---- the echo server (run as this script with --echo) ------------------------------------

async def echo_main() -> None:
    """Answers PlaceOrder and SubmitOrders with the request's own bytes: gRPC's work
    and nothing else."""
    async def unary(request: bytes, context: Any) -> bytes:
        return request

    async def stream(requests: Any, context: Any) -> Any:
        async for request in requests:
            yield request
    server = grpc.aio.server(options=[("grpc.so_reuseport", 0)])
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler(
        "spotex.v1.Market", {"PlaceOrder": grpc.unary_unary_rpc_method_handler(unary),
                             "SubmitOrders": grpc.stream_stream_rpc_method_handler(stream)}),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    print(f"listening on 127.0.0.1:{port}", flush=True)
    await server.wait_for_termination()


class EchoProcess:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, __file__, "--echo"],
                                     stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        m = re.search(r"listening on (\S+)", line)
        if not m:
            self.proc.kill()
            raise RuntimeError(f"the echo server did not start: {line!r}")
        self.target = m.group(1)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# ---- the measurements --------------------------------------------------------------------

async def unary_latency(target: str, md: Any, payload: bytes, calls: int,
                        seconds: float) -> dict[str, float]:
    h = histogram()
    deadline = time.monotonic() + seconds
    async with grpc.aio.insecure_channel(target) as ch:
        call = ch.unary_unary(PLACE)
        for _ in range(50):  # warm the connection
            await call(payload, metadata=md)
        n = 0
        while n < calls and time.monotonic() < deadline:
            t = time.perf_counter_ns()
            await call(payload, metadata=md)
            h.record_value(max(1, (time.perf_counter_ns() - t) // 1000))
            n += 1
    return summary(h)


async def stream_rate(target: str, md: Any, payloads: list[bytes], per_message: int,
                      seconds: float, max_orders: int, inflight: int = 4) -> dict[str, float]:
    """One SubmitOrders stream, ``inflight`` messages outstanding, until the time or the
    order budget runs out; orders/s counted on the answers."""
    async with grpc.aio.insecure_channel(target) as ch:
        call = ch.stream_stream(SUBMIT)(metadata=md)
        sent = answered = 0
        start = time.perf_counter()
        deadline = time.monotonic() + seconds
        for _ in range(inflight):
            await call.write(payloads[sent % len(payloads)])
            sent += 1
        while True:
            answer = await call.read()
            if answer is grpc.aio.EOF:
                break
            answered += 1
            if time.monotonic() < deadline and sent * per_message < max_orders:
                await call.write(payloads[sent % len(payloads)])
                sent += 1
            elif answered == sent:
                break
        await call.done_writing()
        secs = time.perf_counter() - start
    return {"orders": answered * per_message, "seconds": secs,
            "orders_per_sec": answered * per_message / secs}


class Subscribers:
    """Market-data and execution streams that read everything they are sent."""

    def __init__(self, target: str, product: str, md: Any, market: int, executions: int):
        self.received = 0
        self.channel = grpc.aio.insecure_channel(target)
        streams = [self.channel.unary_stream("/spotex.v1.Market/StreamMarketData")(
            pb.StreamMarketDataRequest(product_ids=[product]).SerializeToString(),
            metadata=md) for _ in range(market)]
        streams += [self.channel.unary_stream("/spotex.v1.Market/StreamExecutions")(
            pb.StreamExecutionsRequest().SerializeToString(), metadata=md)
            for _ in range(executions)]
        self.tasks = [asyncio.ensure_future(self._read(s)) for s in streams]

    async def _read(self, stream: Any) -> None:
        async for message in stream:
            self.received += len(message)

    async def stop(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.channel.close()


def market(target: str, operator_token: str) -> tuple[str, Any]:
    """One product a few hours out and one buyer (a market maker: limits lifted)."""
    with Client(target, operator_token) as op:
        hour = int(time.time()) // 3600 + 3
        product = op.create_products(skus=["H100-SXM"], regions=["us-east"], from_hour=hour,
                                     to_hour=hour + 1, tick="0.01")[0].product_id
        buyer = op.create_account("floor-bench", ["buyer"])
        # money checked as a real venue does: every bid holds its worst case
        op.deposit(buyer.account_id, "1000000000")
    return product, (("authorization", f"Bearer {buyer.token}"),)


def payloads(product: str, per_message: int) -> tuple[bytes, list[bytes]]:
    ioc = pb.PlaceOrderRequest(product_id=product, side=pb.SIDE_BUY, price_micros=1_000_000,
                               quantity=1, time_in_force=pb.TIME_IN_FORCE_IOC)
    messages = [pb.SubmitOrdersRequest(orders=[
        pb.PlaceOrderRequest(product_id=product, side=pb.SIDE_BUY,
                             price_micros=1_000_000 + ((m * per_message + k) % 50) * 10_000,
                             quantity=1 + k % 4)
        for k in range(per_message)]).SerializeToString() for m in range(64)]
    return ioc.SerializeToString(), messages


async def measure(spotex: str, echo: str, product: str, md: Any, cfg: argparse.Namespace,
                  data_dir: str) -> dict[str, Any]:
    unary_payload, stream_payloads = payloads(product, cfg.per_message)
    out: dict[str, Any] = {}
    out["unary_place_order_ms"] = {
        "spotex": await unary_latency(spotex, md, unary_payload, cfg.calls, cfg.seconds),
        "echo": await unary_latency(echo, md, unary_payload, cfg.calls, cfg.seconds),
        "fdatasync": fsync_floor(min(cfg.calls, 1000), directory=data_dir),
    }
    budget = cfg.max_orders
    for target in (echo, spotex):  # warm both: connections, caches, the server's code paths
        await stream_rate(target, md, stream_payloads, cfg.per_message, 1.0, budget)
    out["submit_orders"] = {
        "echo": await stream_rate(echo, md, stream_payloads, cfg.per_message, cfg.seconds,
                                  budget),
        "spotex": await stream_rate(spotex, md, stream_payloads, cfg.per_message,
                                    cfg.seconds, budget),
    }
    subs = Subscribers(spotex, product, md, market=2, executions=2)
    await asyncio.sleep(0.5)  # subscribed and snapshotted before the load
    with_subs = await stream_rate(spotex, md, stream_payloads, cfg.per_message, cfg.seconds,
                                  budget)
    await asyncio.sleep(0.5)
    with_subs["subscriber_bytes"] = subs.received
    await subs.stop()
    out["submit_orders"]["spotex_with_2_md_2_exec_subscribers"] = with_subs
    return out


def report(r: dict[str, Any]) -> str:
    u = r["unary_place_order_ms"]
    floor50 = u["echo"]["p50"] + u["fdatasync"]["p50"]
    floor99 = u["echo"]["p99"] + u["fdatasync"]["p99"]
    s = r["submit_orders"]
    lines = [
        "unary PlaceOrder, one call at a time (ms)",
        f"  spotex      p50 {u['spotex']['p50']:7.3f}  p99 {u['spotex']['p99']:7.3f}",
        f"  echo        p50 {u['echo']['p50']:7.3f}  p99 {u['echo']['p99']:7.3f}",
        f"  fdatasync   p50 {u['fdatasync']['p50']:7.3f}  p99 {u['fdatasync']['p99']:7.3f}",
        f"  spotex / (echo + fdatasync): p50 {u['spotex']['p50'] / floor50:.2f}x, "
        f"p99 {u['spotex']['p99'] / floor99:.2f}x  (target p50 <= 1.15x)",
        "SubmitOrders, 100 orders a message, 4 in flight (orders/s)",
        f"  echo                       {s['echo']['orders_per_sec']:10,.0f}",
        f"  spotex                     {s['spotex']['orders_per_sec']:10,.0f}  "
        f"({s['spotex']['orders_per_sec'] / s['echo']['orders_per_sec']:.2f}x echo; "
        "target >= 0.5x and >= 150k)",
        f"  spotex, 2+2 subscribers    "
        f"{s['spotex_with_2_md_2_exec_subscribers']['orders_per_sec']:10,.0f}  "
        "(target >= 100k)",
    ]
    r["ratios"] = {
        "unary_p50_vs_echo_plus_fdatasync": u["spotex"]["p50"] / floor50,
        "unary_p99_vs_echo_plus_fdatasync": u["spotex"]["p99"] / floor99,
        "stream_vs_echo": s["spotex"]["orders_per_sec"] / s["echo"]["orders_per_sec"],
    }
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--echo", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=8.0, help="at most, per measurement")
    ap.add_argument("--calls", type=int, default=3000, help="unary calls, at most")
    ap.add_argument("--max-orders", type=int, default=400_000,
                    help="streamed orders per measurement, at most")
    ap.add_argument("--per-message", type=int, default=100)
    ap.add_argument("--out", type=Path, default=RESULTS / "floor.json")
    cfg = ap.parse_args()
    if cfg.echo:
        asyncio.run(echo_main())
        return
    token = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="spotex-floor-") as data:
        server = ServerProcess(data, token, "--orders-per-second", "1e9",
                               "--order-burst", "1000000000", "--max-open-orders", "100000000",
                               "--default-credit-limit", "0")
        echo = EchoProcess()
        try:
            product, md = market(server.target, token)
            result = asyncio.run(measure(server.target, echo.target, product, md, cfg, data))
        finally:
            echo.stop()
            server.stop()
    print(report(result))
    result["machine"] = machine()
    cfg.out.parent.mkdir(parents=True, exist_ok=True)
    cfg.out.write_text(json.dumps(result, indent=2))
    print(f"wrote {cfg.out}")


if __name__ == "__main__":
    main()
