"""Memory bounded by live state: two million orders that never rest (IOC orders with
nothing to match, through SubmitOrders) leave the server's resident memory flat after
warm-up, and the very first order is still answered (from the history on disk).
Bounded: 2,000,000 orders, and a deadline it fails past."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import grpc
from conftest import OPERATOR_TOKEN

from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex.client import Client
from spotex.tools.testing import ServerProcess

ORDERS = 2_000_000
PER_MESSAGE = 1_000
DEADLINE_S = 240.0
# what the last third of the run may add to the resident set over the first third
GROWTH_BOUND_MB = 25


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmRSS")


async def _stream(target: str, md: tuple[tuple[str, str], ...], messages: list[bytes],
                  pid: int, samples: list[float]) -> int:
    """Sends ``ORDERS`` orders, 4 messages in flight; samples the server's memory every
    100 messages. Returns the orders answered."""
    async with grpc.aio.insecure_channel(target) as ch:
        call = ch.stream_stream("/spotex.v1.Market/SubmitOrders")(metadata=md)
        total = ORDERS // PER_MESSAGE
        sent = answered = 0
        deadline = time.monotonic() + DEADLINE_S
        while sent < min(4, total):
            await call.write(messages[sent % len(messages)])
            sent += 1
        while answered < total:
            answer = await call.read()
            assert answer is not grpc.aio.EOF, "the stream ended early"
            answered += 1
            if answered % 100 == 0:
                samples.append(_rss_mb(pid))
            assert time.monotonic() < deadline, f"only {answered * PER_MESSAGE} orders in time"
            if sent < total:
                await call.write(messages[sent % len(messages)])
                sent += 1
        await call.done_writing()
    return answered * PER_MESSAGE


def test_two_million_orders_leave_memory_flat(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, OPERATOR_TOKEN, "--fsync", "none",
                           "--orders-per-second", "1e9", "--order-burst", "1000000000",
                           "--keep-ended-orders", "10000", "--snapshot-every", "500000")
    try:
        op = Client(server.target, OPERATOR_TOKEN)
        h = int(time.time()) // 3600 + 3
        product = op.create_products(skus=["H100-SXM"], regions=["us-east"], from_hour=h,
                                     to_hour=h + 1)[0].product_id
        token = op.create_account("soak", ["buyer"]).token
        buyer = Client(server.target, token)
        first = buyer.place_order(product, "buy", "1.00", 1, tif="ioc")
        assert first.state == "cancelled"  # nothing to match: it never rests
        ioc = pb.PlaceOrderRequest(product_id=product, side=pb.SIDE_BUY, price_micros=1_000_000,
                                   quantity=1, time_in_force=pb.TIME_IN_FORCE_IOC)
        messages = [pb.SubmitOrdersRequest(orders=[ioc] * PER_MESSAGE).SerializeToString()]
        samples: list[float] = []
        md = (("authorization", f"Bearer {token}"),)
        sent = asyncio.run(_stream(server.target, md, messages, server.pid, samples))
        assert sent == ORDERS
        # flat after warm-up: the last third within the bound of the first third
        third = len(samples) // 3
        early, late = max(samples[:third]), max(samples[-third:])
        assert late < early + GROWTH_BOUND_MB, f"resident memory kept growing: {samples}"
        # the very first order left memory long ago and is still answered
        again = buyer.get_order(first.order_id)
        assert (again.order_id, again.state) == (first.order_id, "cancelled")
    finally:
        assert server.stop() == 0
