"""What a running server shows operators: Prometheus metrics on an HTTP port of their own
(``spotex serve --metrics-listen HOST:PORT``, ``spotex gateway --metrics-listen``), and a
log line per RPC (logger ``spotex.access``: method, status code, latency, account id;
never a token).

Counts of the order path come from the writer itself (``spotex._core.Writer.stats``),
read when Prometheus scrapes: orders by type, time in force and outcome, jobs and time
per writer round, journal sync time, the writer's queue. The rest is read from the
gateway and the hub at the same moment; RPC latency is observed as each call ends.
"""

from __future__ import annotations

import asyncio
import contextvars
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc
from prometheus_client import CollectorRegistry, Histogram, start_http_server
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from spotex.server.host import EngineHost
    from spotex.server.streams import Hub

access = logging.getLogger("spotex.access")

# the authenticated account of the call being served (set by the service's auth)
account_of_call: contextvars.ContextVar[int | None] = contextvars.ContextVar(
    "spotex_account", default=None)

RPC_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0, 5.0)


def _histogram(name: str, doc: str, data: tuple[list[float], list[int], float]
               ) -> HistogramMetricFamily:
    bounds, cumulative, total = data
    buckets = [(repr(b), c) for b, c in zip(bounds, cumulative, strict=False)]
    buckets.append(("+Inf", cumulative[-1]))
    return HistogramMetricFamily(name, doc, buckets=buckets, sum_value=total)


class _State(Collector):
    """Read at each scrape, from the thread that serves it."""

    def __init__(self, host: EngineHost, hub: Hub) -> None:
        self.host = host
        self.hub = hub
        self._stats: dict[str, Any] | None = None  # the writer's counts, last read

    def writer_stats(self) -> dict[str, Any]:
        """The writer's counts, read on the writer between its rounds: read from here
        they would wait, holding the GIL, for a round that NATS holds up (the whole
        process stalled). A writer that does not get to it within a second: the counts
        of the last scrape."""
        try:
            self._stats = self.host.submit(self.host.writer_stats).result(timeout=1.0)
        except Exception:  # noqa: BLE001 - busy (NATS electing) or stopped
            if self._stats is None:
                self._stats = self.host.writer_stats()
        return self._stats

    def collect(self) -> Iterator[Metric]:
        stats = self.writer_stats()
        orders = CounterMetricFamily(
            "spotex_orders", "Orders placed (command place: by order type, time in force "
            "and outcome: accepted or the refusal reason), cancels and amends.",
            labels=["command", "type", "tif", "outcome"])
        for command, kind, tif, outcome, n in stats["orders"]:
            orders.add_metric([command, kind, tif, outcome], n)
        yield orders
        yield _histogram("spotex_writer_round_jobs", "Jobs (commands, views) per writer round.",
                         stats["round_jobs"])
        yield _histogram("spotex_writer_round_seconds",
                         "Time of a writer round: its jobs, the journal's sync, publishing.",
                         stats["round_seconds"])
        yield _histogram("spotex_journal_sync_seconds",
                         "Time to make a round's journal records durable (fdatasync).",
                         stats["sync_seconds"])
        yield GaugeMetricFamily("spotex_writer_queue_jobs",
                                "Jobs submitted to the writer and not yet taken.",
                                value=stats["pending"])
        yield GaugeMetricFamily("spotex_resting_orders", "Orders resting in the books.",
                                value=self.host.ex.resting_orders)
        depth = GaugeMetricFamily("spotex_book_gpus",
                                  "GPUs resting in a product's book, by side.",
                                  labels=["product", "side"])
        orders_ = GaugeMetricFamily("spotex_book_orders",
                                    "Orders resting in a product's book, by side.",
                                    labels=["product", "side"])
        for product, bid_q, ask_q, bid_n, ask_n in self.host.ex.depth_totals():
            if bid_n or ask_n:  # empty books stay out: a venue lists many hours ahead
                depth.add_metric([product, "buy"], bid_q)
                depth.add_metric([product, "sell"], ask_q)
                orders_.add_metric([product, "buy"], bid_n)
                orders_.add_metric([product, "sell"], ask_n)
        yield depth
        yield orders_
        trades = CounterMetricFamily(
            "spotex_trades", "Trades since the server started, by product family (a "
            "block's trade in each of its hours counts once an hour).", labels=["sku", "region"])
        gpu_hours = CounterMetricFamily(
            "spotex_traded_gpu_hours", "GPU-hours traded since the server started, by "
            "product family.", labels=["sku", "region"])
        notional = CounterMetricFamily(
            "spotex_traded_notional_dollars", "What the GPU-hours traded since the server "
            "started cost their buyers, in dollars, by product family.",
            labels=["sku", "region"])
        for sku, region, n, q, micros in self.host.ex.trade_totals():
            trades.add_metric([sku, region], n)
            gpu_hours.add_metric([sku, region], q)
            notional.add_metric([sku, region], micros / 1_000_000)
        yield trades
        yield gpu_hours
        yield notional
        yield from _money(self.host.ex.money_totals())
        yield GaugeMetricFamily("spotex_sequence", "Commands applied since the venue began.",
                                value=self.host.sequence)
        yield GaugeMetricFamily("spotex_journal_available",
                                "1 while the journal takes writes; 0 while commands are "
                                "refused (JOURNAL_UNAVAILABLE).",
                                value=0 if self.host.refusal else 1)
        subs = GaugeMetricFamily("spotex_subscribers", "Open stream subscriptions.",
                                 labels=["stream"])
        backlog = GaugeMetricFamily("spotex_subscriber_backlog_updates",
                                    "The largest backlog of one subscriber, in updates.",
                                    labels=["stream"])
        market = [q for _, q in list(self.hub.market)]
        executions = [q for qs in list(self.hub.executions.values()) for q in list(qs)]
        for name, queues in (("market_data", market), ("executions", executions)):
            subs.add_metric([name], len(queues))
            backlog.add_metric([name], max((q.size for q in queues), default=0))
        yield subs
        yield backlog
        recovery = self.host.recovery
        yield GaugeMetricFamily("spotex_recovery_seconds",
                                "How long the last start took to recover its state.",
                                value=recovery.get("seconds", 0.0))
        yield GaugeMetricFamily("spotex_recovery_records",
                                "Journal records replayed at the last start.",
                                value=recovery.get("replayed", 0))


class Metrics:
    """A server's registry (RPC latency, and what ``state`` reads at each scrape);
    ``serve`` exposes it over HTTP. A shard gateway brings a ``state`` of its own
    (``spotex.cluster.gateway``)."""

    def __init__(self, state: Collector) -> None:
        self.registry = CollectorRegistry()
        self.rpc = Histogram("spotex_rpc_duration_seconds",
                             "Time from a call's arrival to its end, by method and status code.",
                             ["method", "code"], registry=self.registry, buckets=RPC_BUCKETS)
        self.registry.register(state)
        self._http: Any = None

    @classmethod
    def of_engine(cls, host: EngineHost, hub: Hub) -> Metrics:
        """An engine's: its writer, books, journal, streams and recovery."""
        return cls(_State(host, hub))

    def serve(self, listen: str) -> int:
        """Starts the HTTP endpoint (``/metrics``) on ``host:port``; returns the port."""
        bind, _, port = listen.rpartition(":")
        self._http, _ = start_http_server(int(port), bind.strip("[]") or "127.0.0.1",
                                          registry=self.registry)
        return int(self._http.server_port)

    def close(self) -> None:
        if self._http is not None:
            self._http.shutdown()
            self._http.server_close()
            self._http = None


def _code(context: Any, error: BaseException | None) -> str:
    if error is not None and not isinstance(error, grpc.aio.AbortError):
        return "CANCELLED" if isinstance(error, asyncio.CancelledError) else "UNKNOWN"
    code = context.code()
    if code is None:
        return "OK"
    if isinstance(code, grpc.StatusCode):
        return str(code.name)
    by_value = {int(c.value[0]): str(c.name) for c in grpc.StatusCode}
    return by_value.get(int(code), str(code))


class Observe(grpc.aio.ServerInterceptor):  # type: ignore[misc]
    """Times every call of spotex's own services, counts it in ``metrics`` (if any) and
    logs an access line (if ``log``)."""

    def __init__(self, metrics: Metrics | None, log: bool) -> None:
        self.metrics = metrics
        self.log = log

    def done(self, method: str, context: Any, started: float,
             error: BaseException | None) -> None:
        seconds = time.perf_counter() - started
        code = _code(context, error)
        if self.metrics is not None:
            self.metrics.rpc.labels(method, code).observe(seconds)
        if self.log:
            account = account_of_call.get()
            # after the answer went out: the line is not on the caller's path
            asyncio.get_running_loop().call_soon(
                lambda: access.info("rpc %s %s %.2f ms account=%s", method, code,
                                    seconds * 1000, account if account is not None else "-",
                                    extra={"method": method, "code": code,
                                           "ms": round(seconds * 1000, 3),
                                           "account": account}))

    async def intercept_service(self, continuation: Callable[[Any], Awaitable[Any]],
                                details: Any) -> Any:
        handler = await continuation(details)
        full = details.method or ""
        if handler is None or not full.startswith("/spotex."):
            return handler
        method = full.rsplit(".", 1)[-1]  # "Market/PlaceOrder"
        if handler.unary_unary is not None:
            return grpc.unary_unary_rpc_method_handler(
                self._unary(method, handler.unary_unary),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.unary_stream is not None:
            return grpc.unary_stream_rpc_method_handler(
                self._stream(method, handler.unary_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        if handler.stream_stream is not None:
            return grpc.stream_stream_rpc_method_handler(
                self._stream(method, handler.stream_stream),
                request_deserializer=handler.request_deserializer,
                response_serializer=handler.response_serializer)
        return handler

    def _unary(self, method: str, behavior: Callable[..., Awaitable[Any]]
               ) -> Callable[..., Awaitable[Any]]:
        async def observed(request: Any, context: Any) -> Any:
            started = time.perf_counter()
            account_of_call.set(None)
            error: BaseException | None = None
            try:
                return await behavior(request, context)
            except BaseException as err:
                error = err
                raise
            finally:
                self.done(method, context, started, error)
        return observed

    def _stream(self, method: str, behavior: Callable[..., Any]) -> Callable[..., Any]:
        if not inspect.isasyncgenfunction(behavior):
            return behavior  # spotex's streams are async generators; leave others alone

        async def observed(request: Any, context: Any) -> AsyncIterator[Any]:
            started = time.perf_counter()
            account_of_call.set(None)
            error: BaseException | None = None
            try:
                async for message in behavior(request, context):
                    yield message
            except BaseException as err:
                error = err
                raise
            finally:
                self.done(method, context, started, error)
        return observed


def _money(totals: tuple[int, int, int, int, int, int, int, int, int, int]) -> Iterator[Metric]:
    """The ledger as a whole (docs/trading.md, "Money"), in dollars."""
    (accounts, current, holds, fees, deposited, withdrawn, moved_in, moved_out, pending,
     in_transit) = totals
    d = 1_000_000
    yield GaugeMetricFamily("spotex_money_accounts", "Accounts with money on this engine.",
                            value=accounts)
    yield GaugeMetricFamily("spotex_money_balances_dollars", "Every account's current "
                            "balance summed (the venue's fee account too).", value=current / d)
    yield GaugeMetricFamily("spotex_money_held_dollars", "Money held by live buy orders.",
                            value=holds / d)
    yield GaugeMetricFamily("spotex_money_fees_dollars", "The venue's fee account.",
                            value=fees / d)
    yield CounterMetricFamily("spotex_money_deposited_dollars", "Money deposited, ever.",
                              value=deposited / d)
    yield CounterMetricFamily("spotex_money_withdrawn_dollars", "Money withdrawn, ever.",
                              value=withdrawn / d)
    yield CounterMetricFamily("spotex_money_moved_in_dollars", "Behind a shard gateway: "
                              "money moved here from other shards, ever.", value=moved_in / d)
    yield CounterMetricFamily("spotex_money_moved_out_dollars", "Behind a shard gateway: "
                              "money moved from here to other shards, ever.",
                              value=moved_out / d)
    yield GaugeMetricFamily("spotex_money_moves_pending", "Moves sent from here not yet "
                            "known to have landed (the gateway's sweep lands them within "
                            "seconds; one that stays says a shard is unreachable).",
                            value=pending)
    yield GaugeMetricFamily("spotex_money_in_transit_dollars", "What those moves carry.",
                            value=in_transit / d)
