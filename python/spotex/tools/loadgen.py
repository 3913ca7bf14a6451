"""The service load generator behind ``spotex bench``.

N concurrent clients, each with its own account and channel, trade over loopback
against a real server while market-data and execution subscribers stay attached. Three
phases, each bounded in time and in count:

* ``unary-latency``: one client, one call at a time: the latency a single trader sees.
* ``unary``: N clients calling at once: a realistic mix of passive limit orders near
  the mid (55%), IOC orders that cross (15%), cancels (25%) and amends (5%); sellers ask
  from their clusters, buyers bid.
* ``stream``: N clients entering orders over ``SubmitOrders``, ``per_message`` orders
  to a message, the way a market maker quotes.

Latencies go into HDR histograms (microsecond resolution, three significant digits), so
p50, p99 and p99.9 are read off a proper histogram whatever the run's length. A bare
gRPC health check against the same server, in the same run, shows the floor that
grpcio itself sets on this machine.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import platform
import random
import secrets
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hdrh.histogram import HdrHistogram

from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex._proto.spotex.v1 import spotex_pb2_grpc as rpc
from spotex.tools.testing import ServerProcess

TICK = 10_000
MID = 2_000_000
GPUS_PER_NODE = 8


@dataclass(frozen=True)
class BenchConfig:
    clients: int = 8
    duration: float = 10.0  # seconds per phase, at most
    max_orders: int = 200_000  # orders per phase, at most
    latency_calls: int = 5_000
    per_message: int = 100
    md_subscribers: int = 2
    exec_subscribers: int = 2
    products: int = 4
    nodes: int = 5_000  # per seller cluster: 40,000 GPUs an hour
    max_resting: int = 200  # per client; beyond it the client cancels
    seed: int = 1
    # the SKUs listed (in us-east); orders spread over all their products evenly
    skus: tuple[str, ...] = ("H100-SXM",)
    # each buyer-seller pair of clients trades one SKU's products (else all of them)
    sku_per_pair: bool = False


def histogram() -> HdrHistogram:
    # 1 us to 60 s, three significant digits
    return HdrHistogram(1, 60_000_000, 3)


def summary(h: HdrHistogram) -> dict[str, float]:
    """Percentiles in milliseconds."""
    ms = {name: h.get_value_at_percentile(q) / 1000
          for name, q in (("p50", 50), ("p90", 90), ("p99", 99), ("p99_9", 99.9))}
    ms["max"] = h.get_max_value() / 1000
    ms["mean"] = h.get_mean_value() / 1000
    return {"count": h.get_total_count(), **ms}


@contextlib.contextmanager
def local_server(fsync: str = "batch") -> Iterator[tuple[str, str, int]]:
    """``spotex serve`` in its own process on a free loopback port with a fresh data
    directory and the per-account limits lifted (a benchmark account is a market maker).
    Yields ``(target, operator token, server pid)``; stops the server at the end."""
    token = secrets.token_urlsafe(16)
    with tempfile.TemporaryDirectory(prefix="spotex-bench-") as data:
        server = ServerProcess(data, token, "--fsync", fsync,
                               "--orders-per-second", "1e9", "--order-burst", "1000000000",
                               "--max-open-orders", "10000000")
        try:
            yield server.target, token, server.pid
        finally:
            server.stop(15)


@dataclass
class Trader:
    """One client: its account, its channel, and the orders it believes rest."""

    name: str
    side: Any
    md: tuple[tuple[str, str], ...]
    stub: Any
    clusters: dict[str, str] = field(default_factory=dict)  # a seller's, by SKU
    own: list[str] = field(default_factory=list)  # the products it trades ([]: all)
    resting: list[int] = field(default_factory=list)
    prices: dict[int, int] = field(default_factory=dict)
    rng: random.Random = field(default_factory=random.Random)


@dataclass
class Market:
    target: str
    products: list[str]
    traders: list[Trader]
    channels: list[grpc.aio.Channel]


def setup(target: str, operator_token: str, cfg: BenchConfig) -> Market:
    """Products a few hours out, and one account per client: even clients buy, odd
    clients sell from a cluster of their own that covers every product."""
    import datetime as dt

    from spotex.client import Client

    with Client(target, operator_token) as op:
        hour = int(time.time()) // 3600 + 3
        products = [p.product_id for p in op.create_products(
            skus=list(cfg.skus), regions=["us-east"], from_hour=hour,
            to_hour=hour + cfg.products, tick=Decimal(TICK) / 1_000_000, lot=1,
            gate_closure_lead=dt.timedelta(hours=1))]
        traders: list[Trader] = []
        channels: list[grpc.aio.Channel] = []
        for i in range(cfg.clients):
            sell = i % 2 == 1
            acct = op.create_account(f"bench-{i}", ["seller" if sell else "buyer"])
            t = Trader(f"bench-{i}", pb.SIDE_SELL if sell else pb.SIDE_BUY,
                       (("authorization", f"Bearer {acct.token}"),), None,
                       rng=random.Random(cfg.seed * 1000 + i))
            if cfg.sku_per_pair:
                sku = cfg.skus[i // 2 % len(cfg.skus)]
                t.own = [p for p in products if p.startswith(f"{sku}/")]
            if sell:
                with Client(target, acct.token) as seller:
                    for sku in cfg.skus:
                        t.clusters[sku] = f"bench-{i}-{sku}"
                        seller.register_capacity(
                            t.clusters[sku], sku=sku, region="us-east",
                            nodes=[(f"n{k}", GPUS_PER_NODE) for k in range(cfg.nodes)],
                            from_hour=hour, to_hour=hour + cfg.products)
            traders.append(t)
    return Market(target, products, traders, channels)


def connect(m: Market) -> None:
    """Each trader its own channel (call inside the running event loop)."""
    for t in m.traders:
        c = grpc.aio.insecure_channel(m.target)
        m.channels.append(c)
        t.stub = rpc.MarketStub(c)


def order_request(t: Trader, products: list[str], ioc: bool = False) -> Any:
    """A limit order at a heavy-tailed distance from the mid; IOC orders cross it."""
    r = t.rng
    buy = t.side == pb.SIDE_BUY
    if ioc:
        ticks = 1 + r.randrange(3)
        price = MID + ticks * TICK if buy else MID - ticks * TICK
    else:
        distance = min(50, int(1 / (1 - r.random()))) * TICK
        price = MID - distance if buy else MID + distance
    products = t.own or products
    product = products[r.randrange(len(products))]
    return pb.PlaceOrderRequest(
        product_id=product, side=t.side, price_micros=price,
        quantity=1 + r.randrange(8), cluster_id=t.clusters.get(product.split("/")[0], ""),
        time_in_force=pb.TIME_IN_FORCE_IOC if ioc else pb.TIME_IN_FORCE_GTC)


RESTING = (pb.ORDER_STATE_OPEN, pb.ORDER_STATE_PARTIALLY_FILLED)


async def one_action(t: Trader, products: list[str], cfg: BenchConfig,
                     outcomes: Counter[str]) -> None:
    """One call of the unary mix; what it did and how it ended goes into ``outcomes``."""
    roll = t.rng.random()
    try:
        if t.resting and (roll < 0.25 or len(t.resting) >= cfg.max_resting):
            oid = t.resting.pop(t.rng.randrange(len(t.resting)))
            del t.prices[oid]
            await t.stub.CancelOrder(pb.CancelOrderRequest(order_id=oid), metadata=t.md)
            outcomes["cancel"] += 1
        elif t.resting and roll < 0.30:
            # step one tick away from the mid, as a quoter backing off does
            oid = t.resting[t.rng.randrange(len(t.resting))]
            price = t.prices[oid] + (-TICK if t.side == pb.SIDE_BUY else TICK)
            r = await t.stub.AmendOrder(pb.AmendOrderRequest(order_id=oid, price_micros=price),
                                        metadata=t.md)
            t.prices[oid] = price
            if r.order.state not in RESTING:
                t.resting.remove(oid)
            outcomes["amend"] += 1
        else:
            ioc = roll > 0.85
            r = await t.stub.PlaceOrder(order_request(t, products, ioc), metadata=t.md)
            if r.order.state in RESTING:
                t.resting.append(r.order.order_id)
                t.prices[r.order.order_id] = r.order.price_micros
            outcomes["ioc" if ioc else "place"] += 1
    except grpc.aio.AioRpcError as err:
        # a cancel or amend that raced a fill is refused: part of a real mix
        reason = dict(err.trailing_metadata() or ()).get("spotex-reason", err.code().name)
        outcomes[f"refused:{reason}"] += 1


@dataclass
class Subscribers:
    """Market-data and execution streams that stay attached through the phases."""

    market_data: int = 0
    executions: int = 0
    resubscribed: int = 0
    tasks: list[asyncio.Task[None]] = field(default_factory=list)

    def start(self, m: Market, cfg: BenchConfig) -> None:
        for i in range(cfg.md_subscribers):
            self.tasks.append(asyncio.create_task(self._md(m, i)))
        for t in m.traders[:cfg.exec_subscribers]:
            self.tasks.append(asyncio.create_task(self._exec(m, t)))

    async def _md(self, m: Market, i: int) -> None:
        t = m.traders[i % len(m.traders)]
        while True:
            call = t.stub.StreamMarketData(pb.StreamMarketDataRequest(), metadata=t.md)
            try:
                async for batch in call:
                    self.market_data += len(batch.updates)
                return
            except grpc.aio.AioRpcError as err:
                if err.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                    return
                self.resubscribed += 1  # fell behind: start again from a snapshot

    async def _exec(self, m: Market, t: Trader) -> None:
        call = t.stub.StreamExecutions(pb.StreamExecutionsRequest(), metadata=t.md)
        with contextlib.suppress(grpc.aio.AioRpcError):
            async for batch in call:
                self.executions += len(batch.executions)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def health_floor(target: str, calls: int) -> dict[str, float]:
    """The peer in the same run: a bare gRPC health check, one call at a time."""
    h = histogram()
    async with grpc.aio.insecure_channel(target) as ch:
        stub = health_pb2_grpc.HealthStub(ch)
        for _ in range(calls):
            t = time.perf_counter_ns()
            await stub.Check(health_pb2.HealthCheckRequest())
            h.record_value(max(1, (time.perf_counter_ns() - t) // 1000))
    return summary(h)


def fsync_floor(calls: int = 500, directory: str | None = None) -> dict[str, float]:
    """The other floor under a durable acknowledgement: appending a small record to a file
    in ``directory`` (by default the temporary directory, where the started server keeps
    its journal) and fsyncing it, one at a time, as the writer does once per round."""
    h = histogram()
    with tempfile.TemporaryDirectory(prefix="spotex-fsync-", dir=directory) as d:
        fd = os.open(os.path.join(d, "probe"), os.O_WRONLY | os.O_CREAT | os.O_APPEND)
        try:
            for _ in range(calls):
                os.write(fd, b"x" * 128)
                t = time.perf_counter_ns()
                os.fdatasync(fd)
                h.record_value(max(1, (time.perf_counter_ns() - t) // 1000))
        finally:
            os.close(fd)
    return summary(h)


async def unary_latency(m: Market, cfg: BenchConfig) -> dict[str, Any]:
    """One trader, one call at a time, the unary mix."""
    t = m.traders[0]
    h, outcomes = histogram(), Counter[str]()
    deadline = time.monotonic() + cfg.duration
    start = time.perf_counter()
    n = 0
    while n < cfg.latency_calls and time.monotonic() < deadline:
        t0 = time.perf_counter_ns()
        await one_action(t, m.products, cfg, outcomes)
        h.record_value(max(1, (time.perf_counter_ns() - t0) // 1000))
        n += 1
    secs = time.perf_counter() - start
    return {"calls": n, "calls_per_sec": n / secs, "latency_ms": summary(h),
            "mix": dict(outcomes)}


async def unary(m: Market, cfg: BenchConfig) -> dict[str, Any]:
    """Every trader calling at once, the unary mix."""
    h, outcomes = histogram(), Counter[str]()
    deadline = time.monotonic() + cfg.duration
    per = max(1, cfg.max_orders // len(m.traders))

    async def trader(t: Trader) -> int:
        n = 0
        while n < per and time.monotonic() < deadline:
            t0 = time.perf_counter_ns()
            await one_action(t, m.products, cfg, outcomes)
            h.record_value(max(1, (time.perf_counter_ns() - t0) // 1000))
            n += 1
        return n

    start = time.perf_counter()
    n = sum(await asyncio.gather(*(trader(t) for t in m.traders)))
    secs = time.perf_counter() - start
    return {"clients": len(m.traders), "calls": n, "calls_per_sec": n / secs,
            "latency_ms": summary(h), "mix": dict(outcomes)}


async def stream(m: Market, cfg: BenchConfig) -> dict[str, Any]:
    """Every trader entering orders over one SubmitOrders stream each, ``per_message``
    orders to a message, with a few messages in flight; latency is per message, from
    sending it to its response."""
    h, codes = histogram(), Counter[str]()
    deadline = time.monotonic() + cfg.duration
    per_trader = max(1, cfg.max_orders // len(m.traders) // cfg.per_message)
    window = 4  # messages in flight per stream

    async def trader(t: Trader) -> int:
        sent: asyncio.Queue[int] = asyncio.Queue()
        credit = asyncio.Semaphore(window)

        async def requests() -> Any:
            for _ in range(per_trader):
                if time.monotonic() >= deadline:
                    break
                await credit.acquire()
                orders = [order_request(t, m.products, ioc=t.rng.random() < 0.15)
                          for _ in range(cfg.per_message)]
                sent.put_nowait(time.perf_counter_ns())
                yield pb.SubmitOrdersRequest(orders=orders)

        n = 0
        call = t.stub.SubmitOrders(requests(), metadata=t.md)
        async for r in call:
            t0 = await sent.get()
            credit.release()
            h.record_value(max(1, (time.perf_counter_ns() - t0) // 1000))
            for x in r.results:
                codes["ok" if not x.code else x.reason] += 1
            n += len(r.results)
        return n

    start = time.perf_counter()
    n = sum(await asyncio.gather(*(trader(t) for t in m.traders)))
    secs = time.perf_counter() - start
    return {"clients": len(m.traders), "orders_per_message": cfg.per_message, "orders": n,
            "orders_per_sec": n / secs, "message_latency_ms": summary(h),
            "results": dict(codes)}


def cpu_seconds(pid: int | None) -> tuple[float, float]:
    """CPU time (user + system) of the server process, if known, and of this one."""
    mine = os.times()
    server = 0.0
    if pid is not None:
        with contextlib.suppress(OSError):
            with open(f"/proc/{pid}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
            # utime and stime are fields 14 and 15 of stat(5); [0] here is field 3
            server = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return server, mine.user + mine.system


async def run_phases(m: Market, cfg: BenchConfig, phases: list[str],
                     server_pid: int | None = None,
                     watch: dict[str, list[int]] | None = None) -> dict[str, Any]:
    """``watch``: more processes whose CPU time per order each phase measures, by name
    (a venue's engines, its NATS servers)."""
    connect(m)
    subs = Subscribers()
    subs.start(m, cfg)
    out: dict[str, Any] = {"grpc_health_check": await health_floor(m.target, 2_000),
                           "fsync": fsync_floor()}
    try:
        for phase in phases:
            md0, ex0 = subs.market_data, subs.executions
            cpu0 = cpu_seconds(server_pid)
            watched0 = {k: sum(cpu_seconds(p)[0] for p in ps) for k, ps in (watch or {}).items()}
            t0 = time.perf_counter()
            if phase == "unary-latency":
                out[phase] = await unary_latency(m, cfg)
            elif phase == "unary":
                out[phase] = await unary(m, cfg)
            elif phase == "stream":
                out[phase] = await stream(m, cfg)
            secs = time.perf_counter() - t0
            cpu1 = cpu_seconds(server_pid)
            done = out[phase].get("orders") or out[phase]["calls"]
            out[phase]["cpu_us_per_order"] = {
                "server": (cpu1[0] - cpu0[0]) / done * 1e6 if server_pid else None,
                "load_generator": (cpu1[1] - cpu0[1]) / done * 1e6,
                **{k: (sum(cpu_seconds(p)[0] for p in ps) - watched0[k]) / done * 1e6
                   for k, ps in (watch or {}).items()}}
            out[phase]["subscribers"] = {
                "market_data_messages_per_sec": (subs.market_data - md0) / secs,
                "execution_messages_per_sec": (subs.executions - ex0) / secs}
        out["subscribers"] = {"market_data": cfg.md_subscribers,
                              "executions": cfg.exec_subscribers,
                              "resubscribed_after_falling_behind": subs.resubscribed}
    finally:
        await subs.stop()
        for c in m.channels:
            await c.close()
    return out


PHASES = ["unary-latency", "unary", "stream"]


def run(cfg: BenchConfig, target: str, operator_token: str,
        phases: list[str] = PHASES, server_pid: int | None = None,
        watch: dict[str, list[int]] | None = None) -> dict[str, Any]:
    """Sets up a market on the server at ``target`` and runs the phases against it
    (with the server's pid, its CPU time per order is measured too)."""
    m = setup(target, operator_token, cfg)
    results = asyncio.run(run_phases(m, cfg, phases, server_pid, watch))
    return {"machine": machine(), "config": cfg.__dict__, "results": results}


def machine() -> dict[str, Any]:
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(),
            "grpcio": grpc.__version__}
