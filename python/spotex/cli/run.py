"""The commands that run something: ``serve`` (one engine), ``gateway`` (the shard
gateway), ``cluster up``, ``config``, ``demo``, ``bench``, ``simulate``, ``replay``."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.table import Table

from spotex.cli.root import _require, console, main
from spotex.extras import available
from spotex.server.config import BY_KEY, credit_micros, effective, load, resolve, show
from spotex.server.config import options as config_options
from spotex.server.ledger import MoneySettings
from spotex.server.limits import Limits, TlsConfig


@main.command()
@config_options
@click.pass_context
def serve(ctx: click.Context, /, **params: Any) -> None:
    """Run the spotex server until SIGTERM or Ctrl-C (recovering from --data-dir first).

    Every setting can come from a TOML file (--config), a SPOTEX_* variable or a flag,
    the later overriding the earlier: see `spotex config show`."""
    from spotex.server.host import Replicated
    from spotex.server.logs import configure
    from spotex.server.service import serve as run

    c = resolve(ctx, params)
    configure(c["server.log_format"])
    metrics_listen = c["server.metrics_listen"] or None
    for key, flag in (("server.metrics_listen", "--metrics-listen"),
                      ("server.web_listen", "--web-listen"),
                      ("server.market_data_listen", "--market-data-listen")):
        if c[key] and not re.fullmatch(r"\S*:\d{1,5}", c[key]):
            raise click.BadParameter(f"{c[key]!r} is not HOST:PORT", param_hint=f"{flag} / {key}")
    operator_token = c["server.operator_token"] or None
    if not operator_token:
        console.print("[yellow]no operator token (--operator-token, SPOTEX_OPERATOR_TOKEN or "
                      "server.operator_token): operator calls are disabled[/yellow]")
    tls_cert, tls_key, tls_ca = (Path(c[k]) if c[k] else None
                                 for k in ("tls.cert", "tls.key", "tls.client_ca"))
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("the TLS certificate and key go together (--tls-cert, --tls-key)")
    if tls_ca and not tls_cert:
        raise click.UsageError("a client CA (--tls-client-ca) needs --tls-cert and --tls-key")
    for path in (tls_cert, tls_key, tls_ca):
        if path is not None and not path.is_file():
            raise click.UsageError(f"{path}: no such file")
    limits = Limits(max_open_orders_per_account=c["limits.max_open_orders"],
                    orders_per_second=c["limits.orders_per_second"],
                    order_burst=c["limits.order_burst"],
                    max_message_bytes=c["limits.max_message_bytes"],
                    subscriber_queue=c["limits.subscriber_queue"])
    tls = TlsConfig(tls_cert, tls_key, tls_ca) if tls_cert and tls_key else None
    from spotex._core import JournalError
    from spotex.server.auctions import AuctionSettings
    from spotex.server.datadir import DataDirInUse
    from spotex.server.limits import ListenError
    try:
        asyncio.run(run(c["server.listen"], Path(c["server.data_dir"]), operator_token,
                        fsync=c["journal.fsync"], snapshot_every=c["journal.snapshot_every"],
                        limits=limits, tls=tls, segment_bytes=c["journal.segment_mb"] << 20,
                        retention=c["journal.retention"],
                        keep_ended=c["journal.keep_ended_orders"],
                        keep_executions=c["journal.keep_executions"],
                        resale_fee_bps=c["market.resale_fee_bps"],
                        money=MoneySettings(credit_micros(c["market.default_credit_limit"]),
                                            c["market.maker_fee_bps"],
                                            c["market.taker_fee_bps"]),
                        replicated=Replicated(
                            tuple(u.strip() for u in c["journal.nats"].split(",") if u.strip()),
                            c["journal.shard"], c["journal.replicas"],
                            lease_seconds=c["journal.lease_seconds"])
                        if c["journal.nats"] else None,
                        shard_index=c["journal.shard_index"],
                        gateway_token=c["server.gateway_token"] or None,
                        metrics_listen=metrics_listen, access_log=c["server.access_log"],
                        web_listen=c["server.web_listen"] or None,
                        market_data_relays=c["server.market_data_relays"],
                        market_data_listen=c["server.market_data_listen"] or None,
                        relay_nice=c["server.relay_nice"],
                        log_format=c["server.log_format"],
                        auction=AuctionSettings(
                            c["auction.schedule"], c["auction.time_limit"],
                            c["auction.hold"] == "on" or (c["auction.hold"] == "auto"
                                                          and bool(c["auction.schedule"])))))
    except (DataDirInUse, ListenError, JournalError) as e:
        # an operator's mistake or a damaged journal: one line, not a traceback
        raise click.ClickException(str(e)) from None


@main.command()
@click.option("--upstream", required=True, metavar="HOST:PORT",
              help="the spotex server (or gateway) whose market data it relays")
@click.option("--listen", default="127.0.0.1:50552", show_default=True, metavar="HOST:PORT",
              help="where subscribers connect (several relays may share it: SO_REUSEPORT)")
@click.option("--token", envvar="SPOTEX_RELAY_TOKEN", default="",
              help="a token the upstream accepts for StreamMarketData, any role (or "
              "SPOTEX_RELAY_TOKEN); subscribers use their own tokens, checked upstream")
@click.option("--subscriber-queue", type=click.IntRange(1, None), default=10_000,
              show_default=True, help="updates a subscriber may fall behind before it "
              "is conflated (its next message a fresh snapshot instead of the deltas)")
@click.option("--connect-timeout", type=click.FloatRange(0.1, 600), default=10.0,
              show_default=True, help="seconds to reach the upstream at start")
@click.option("--tls-cert", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tls-key", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--tls-client-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="require subscribers' client certificates signed by this CA")
@click.option("--upstream-ca", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="reach the upstream over TLS, trusting this CA")
@click.option("--nice", type=click.IntRange(0, 19), default=0, show_default=True,
              help="CPU niceness to run at")
@click.option("--log-format", type=click.Choice(("text", "json")), default="text")
@click.option("--exit-with", type=int, default=None, hidden=True)
def relay(upstream: str, listen: str, token: str, subscriber_queue: int,
          connect_timeout: float, tls_cert: Path | None, tls_key: Path | None,
          tls_client_ca: Path | None, upstream_ca: Path | None, nice: int, log_format: str,
          exit_with: int | None) -> None:
    """Serve market data (StreamMarketData) to many subscribers from ONE stream of the
    upstream's: snapshot then deltas with the upstream's sequences, a slow subscriber
    conflated to a fresh snapshot. Run it off the order path (docs/scaling.md)."""
    from spotex.server.limits import ListenError
    from spotex.server.logs import configure
    from spotex.server.relay import RelayError, RelayTls, run_relay

    configure(log_format)
    for value, flag in ((upstream, "--upstream"), (listen, "--listen")):
        if not re.fullmatch(r"\S*:\d{1,5}", value):
            raise click.BadParameter(f"{value!r} is not HOST:PORT", param_hint=flag)
    if not token:
        raise click.UsageError("the relay needs a token for its upstream (--token or "
                               "SPOTEX_RELAY_TOKEN)")
    if (tls_cert is None) != (tls_key is None):
        raise click.UsageError("the TLS certificate and key go together (--tls-cert, --tls-key)")
    if nice:
        os.nice(nice)
    try:
        asyncio.run(run_relay(upstream, listen, token, subscriber_queue=subscriber_queue,
                              tls=RelayTls(tls_cert, tls_key, tls_client_ca, upstream_ca),
                              connect_timeout=connect_timeout, exit_with=exit_with))
    except (RelayError, ListenError) as e:
        raise click.ClickException(str(e)) from None


@main.command()
@click.option("--listen", default="127.0.0.1:50551", show_default=True)
@click.option("--shard", "shards", multiple=True, required=True, metavar="INDEX=HOST:PORT,...",
              help="a shard (repeat for each): its index (its engines' --shard-index) and "
              "the addresses of its engines, leader and standbys, in any order")


@click.option("--route", "routes", multiple=True, metavar="SKU/REGION=INDEX",
              help="the shard of a SKU and region (repeatable); others go by a stable hash "
              "of SKU/REGION over the shards")


@click.option("--data-dir", type=click.Path(path_type=Path), default="spotex-gateway",
              show_default=True, help="the accounts (the gateway owns them)")


@click.option("--gateway-token", envvar="SPOTEX_GATEWAY_TOKEN", default="",
              help="the token the engines trust (their --gateway-token; or "
              "SPOTEX_GATEWAY_TOKEN)")


@click.option("--operator-token", envvar="SPOTEX_OPERATOR_TOKEN", default="",
              help="or SPOTEX_OPERATOR_TOKEN")


@click.option("--failover-seconds", type=click.FloatRange(0.1, 600), default=15.0,
              show_default=True, help="how long a call waits for its shard's leader "
              "(a standby taking over) before it is refused")


@click.option("--orders-per-second", type=click.FloatRange(0, None, min_open=True),
              default=Limits.orders_per_second, show_default=True,
              help="sustained order-entry rate per account")


@click.option("--order-burst", type=click.IntRange(1, None), default=Limits.order_burst,
              show_default=True, help="orders per account at once above that rate")


@click.option("--metrics-listen", default="", metavar="HOST:PORT",
              help="serve Prometheus metrics at http://HOST:PORT/metrics: calls by method "
              "and code, each shard's leader, failovers (empty: off)")


@click.option("--auction-schedule", type=BY_KEY["auction.schedule"].kind, default="",
              envvar="SPOTEX_AUCTION_SCHEDULE",
              help="run the venue's block auction every day at HH:MM UTC over the hours of "
              "the next UTC day, on every shard under one id (give the engines no "
              "schedule of their own; empty: none)")


def gateway(listen: str, shards: tuple[str, ...], routes: tuple[str, ...], data_dir: Path,
            gateway_token: str, operator_token: str, failover_seconds: float,
            orders_per_second: float, order_burst: int, metrics_listen: str,
            auction_schedule: str) -> None:
    """Serve one venue over several engines, each owning some SKUs and regions: calls are
    routed to their shard's leader; views, mass cancels and streams fan out and merge."""
    from spotex.cluster.gateway import run_gateway
    from spotex.cluster.routes import RouteError, Routes, parse_route, parse_shard
    from spotex.server.datadir import DataDirInUse
    from spotex.server.limits import ListenError
    from spotex.server.logs import configure

    configure("text")
    try:
        table = Routes([parse_shard(x) for x in shards], dict(parse_route(x) for x in routes))
        limits = Limits(orders_per_second=orders_per_second, order_burst=order_burst)
        asyncio.run(run_gateway(listen, table, gateway_token, data_dir, operator_token or None,
                                failover_seconds=failover_seconds, limits=limits,
                                metrics_listen=metrics_listen or None,
                                auction_schedule=auction_schedule))
    except (RouteError, DataDirInUse, ListenError) as e:
        raise click.ClickException(str(e)) from None


@main.group()
def cluster() -> None:
    """A sharded, replicated venue on this machine: NATS JetStream servers, engines (a
    leader and standbys per shard) journaling to them, and a gateway in front."""


@cluster.command("up")
@click.option("--dir", "base", type=click.Path(path_type=Path), default="spotex-cluster",
              show_default=True, help="the NATS servers' stores, the engines' data and logs, "
              "the gateway's accounts")


@click.option("--nats", "n", type=click.IntRange(1, 5), default=3, show_default=True,
              help="NATS servers (3: the streams' quorum survives one lost)")


@click.option("--nats-port", type=click.IntRange(0, 65000), default=4222,
              show_default=True, help="server i takes clients on this + i (peers + 100, "
              "monitoring + 200); 0: free ports")


@click.option("--shards", type=click.IntRange(1, 31), default=2, show_default=True,
              help="engines' shards; SKUs and regions are spread over them (--route)")


@click.option("--standbys", type=click.IntRange(0, 4), default=1, show_default=True,
              help="standby engines per shard, following its stream, taking over")


@click.option("--route", "routes", multiple=True, metavar="SKU/REGION=INDEX",
              help="the shard of a SKU and region (repeatable); others by a stable hash")


@click.option("--listen", default="127.0.0.1:50551", show_default=True,
              help="the gateway's address; engine k of shard i listens on its port + 10 i "
              "+ k")


@click.option("--operator-token", envvar="SPOTEX_OPERATOR_TOKEN", default="",
              help="or SPOTEX_OPERATOR_TOKEN")


@click.option("--metrics-listen", default="", metavar="HOST:PORT",
              help="the gateway's Prometheus metrics at http://HOST:PORT/metrics (empty: off)")


@click.option("--auction-schedule", type=BY_KEY["auction.schedule"].kind, default="",
              envvar="SPOTEX_AUCTION_SCHEDULE",
              help="the gateway runs the venue's block auction every day at HH:MM UTC over "
              "the next UTC day's hours, on every shard under one id (empty: none)")


@click.option("--auction-hold", type=BY_KEY["auction.hold"].kind, default="auto",
              envvar="SPOTEX_AUCTION_HOLD", show_default=True,
              help="the engines hold hours listed for their auction: on, off, or auto (on "
              "when --auction-schedule is set)")


@click.option("--default-credit-limit", "credit", type=click.Choice(["0", "unlimited"]),
              default="0", show_default=True,
              help="0: buyers need money deposited first (an account's own credit limit is "
              "set with `spotex operator credit-limit`); unlimited: money is not checked")
def cluster_up(base: Path, n: int, nats_port: int, shards: int, standbys: int,
               routes: tuple[str, ...], listen: str, operator_token: str,
               metrics_listen: str, auction_schedule: str, auction_hold: str,
               credit: str) -> None:
    """Start N NATS JetStream servers on loopback (fsync on every write), SHARDS shards
    of engines (a leader and STANDBYS standbys each, journaling to the shard's stream,
    replicated min(3, N) times) and a gateway at --listen that routes every call to its
    shard's leader, until Ctrl-C or SIGTERM, which stops them all. A NATS server or an
    engine that dies is logged and started again as it was (an engine as a standby)."""
    import secrets

    from spotex.cluster.gateway import ShardGateway, run_gateway
    from spotex.cluster.nats import NatsCluster, NatsError
    from spotex.cluster.routes import RouteError, Routes, parse_route
    from spotex.cluster.supervise import Supervisor, supervisor_of
    from spotex.cluster.up import EngineError, Shards, auction_options
    from spotex.server.datadir import DataDirInUse
    from spotex.server.limits import ListenError
    from spotex.server.logs import configure

    configure("text")
    port = int(listen.rsplit(":", 1)[1]) if re.fullmatch(r"\S+:\d{1,5}", listen) else -1
    if port < 0:
        raise click.BadParameter(f"{listen!r} is not HOST:PORT", param_hint="--listen")
    try:
        table = dict(parse_route(x) for x in routes)
        nats = NatsCluster(base / "nats", n, nats_port or None)
    except (RouteError, NatsError) as e:
        raise click.ClickException(str(e)) from None
    try:
        nats.start()
    except NatsError as e:
        nats.stop()
        raise click.ClickException(str(e)) from None
    # the engines trust the gateway by this token; it lives as long as the cluster
    engines = Shards(base, nats.urls, secrets.token_urlsafe(24), operator_token, shards,
                     standbys, port, min(3, n),
                     options=auction_options(auction_schedule, auction_hold), credit=credit)
    supervisor: Supervisor | None = None
    try:
        click.echo(f"NATS JetStream: {','.join(nats.urls)} (logs under {base / 'nats'})")
        engines.start()
        for s in engines.specs():
            click.echo(f"shard {s.index}: stream spotex-s{s.index}, engines "
                       f"{', '.join(s.addresses)} (logs under {base})")
        # every process started is watched: a dead one is started again
        supervisor = supervisor_of(nats, engines).start()

        def ready(gw: ShardGateway) -> None:
            if gw.metrics is not None and supervisor is not None:
                gw.metrics.registry.register(supervisor)
            click.echo(f"gateway: {listen.rsplit(':', 1)[0]}:{gw.port} "
                       f"(accounts under {base / 'gateway'})")
            click.echo("money: " + ("checked: a buyer needs a deposit first (spotex operator "
                                    "deposit ACCOUNT DOLLARS)" if credit == "0" else
                                    "not checked (--default-credit-limit unlimited)"))
        asyncio.run(run_gateway(listen, Routes(engines.specs(), table), engines.gateway_token,
                                base / "gateway", operator_token or None, ready=ready,
                                metrics_listen=metrics_listen or None,
                                auction_schedule=auction_schedule))
    except (DataDirInUse, ListenError, EngineError, RouteError) as e:
        raise click.ClickException(str(e)) from None
    finally:
        if supervisor is not None:  # first: nothing is started again while stopping
            supervisor.stop()
        engines.stop()
        nats.stop()


@main.group()
def config() -> None:
    """Check a configuration file, or show the settings a server would run with."""


@config.command("check")
@click.argument("file", type=click.Path(path_type=Path))
def config_check(file: Path) -> None:
    """Validate FILE: every key known, every value of its type and range."""
    n = len(load(file))
    click.echo(f"{file}: ok ({n} setting{'s' if n != 1 else ''})")


@config.command("show")
@click.option("--config", "file", type=click.Path(path_type=Path), envvar="SPOTEX_CONFIG",
              default=None, help="a TOML file of settings")


def config_show(file: Path | None) -> None:
    """The effective settings (defaults, then FILE, then SPOTEX_* variables), as TOML,
    with secrets masked."""
    click.echo(show(effective(load(file) if file else {}, {}, os.environ)), nl=False)


@main.command()
@click.option("--listen", default="127.0.0.1:0", show_default=True)
@click.option("--rounds", default=300, show_default=True, help="orders the agents send")
@click.option("--seed", default=7, show_default=True)
@click.option("--linger", default=0.0, show_default=True,
              help="seconds to keep the server up afterwards, with tokens printed")


def demo(listen: str, rounds: int, seed: int, linger: float) -> None:
    """Start a server with demo sellers and buyers trading, and show the result."""
    from spotex.tools.demo import run_demo

    run_demo(listen, rounds, seed, linger, console)


@main.command()
@click.option("--target", default=None,
              help="host:port of a running server to load (with --operator-token); "
                   "default: start one on loopback with a fresh data directory")


@click.option("--operator-token", envvar="SPOTEX_OPERATOR_TOKEN", default=None)
@click.option("--clients", default=8, show_default=True, help="concurrent clients")
@click.option("--duration", default=10.0, show_default=True, help="seconds per phase, at most")
@click.option("--max-orders", default=200_000, show_default=True, help="orders per phase, at most")
@click.option("--per-message", default=100, show_default=True,
              help="orders per SubmitOrders message")


@click.option("--md-subscribers", default=2, show_default=True)
@click.option("--exec-subscribers", default=2, show_default=True)
@click.option("--phase", "phases", multiple=True, type=click.Choice(["unary-latency", "unary",
              "stream"]), help="run only these phases (repeatable); default: all")


@click.option("--fsync", type=click.Choice(["batch", "none"]), default="batch",
              show_default=True, help="the started server's fsync policy")


@click.option("--out", type=click.Path(dir_okay=False, path_type=Path),
              default=Path("bench/results/loadgen.json"), show_default=True)


def bench(target: str | None, operator_token: str | None, clients: int, duration: float,
          max_orders: int, per_message: int, md_subscribers: int, exec_subscribers: int,
          phases: tuple[str, ...], fsync: str, out: Path) -> None:
    """Load a server with N concurrent clients and report throughput and latency."""
    import json

    _require("hdrh", "bench", "spotex bench")
    from spotex.tools import loadgen

    cfg = loadgen.BenchConfig(clients=clients, duration=duration, max_orders=max_orders,
                              per_message=per_message, md_subscribers=md_subscribers,
                              exec_subscribers=exec_subscribers)
    if target and not operator_token:
        raise click.UsageError("--target needs --operator-token (or SPOTEX_OPERATOR_TOKEN)")
    pid = None
    with contextlib.ExitStack() as stack:
        if not target:
            target, operator_token, pid = stack.enter_context(loadgen.local_server(fsync))
        assert operator_token is not None
        with console.status(f"loading {target} with {clients} clients"):
            report = loadgen.run(cfg, target, operator_token, list(phases) or loadgen.PHASES,
                                 pid)
    if not phases or "stream" in phases:
        report["config"]["fsync"] = fsync
    res = report["results"]
    t = Table("phase", "clients", "per second", "p50 ms", "p99 ms", "p99.9 ms", "max ms",
              "server CPU µs/order",
              title=f"spotex bench: {report['machine']['cpu']}, {report['machine']['cores']} cores")
    floor = res["grpc_health_check"]
    t.add_row("grpc health check (floor)", "1", "", f"{floor['p50']:.2f}", f"{floor['p99']:.2f}",
              f"{floor['p99_9']:.2f}", f"{floor['max']:.2f}", "")
    fs = res["fsync"]
    t.add_row("fdatasync of a journal append (floor)", "1", "", f"{fs['p50']:.2f}",
              f"{fs['p99']:.2f}", f"{fs['p99_9']:.2f}", f"{fs['max']:.2f}", "")
    for name, r in res.items():
        if not isinstance(r, dict) or ("latency_ms" not in r and "message_latency_ms" not in r):
            continue
        lat = r.get("latency_ms") or r["message_latency_ms"]
        rate = (f"{r['orders_per_sec']:,.0f} orders" if "orders_per_sec" in r
                else f"{r['calls_per_sec']:,.0f} calls")
        label = name + (f" ({r['orders_per_message']}/msg, per message)"
                        if "orders_per_message" in r else "")
        cpu = r["cpu_us_per_order"]["server"]
        t.add_row(label, str(r.get("clients", 1)), rate, f"{lat['p50']:.2f}",
                  f"{lat['p99']:.2f}", f"{lat['p99_9']:.2f}", f"{lat['max']:.2f}",
                  f"{cpu:.0f}" if cpu is not None else "-")
    console.print(t)
    console.print(f"subscribers attached: {res['subscribers']}")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    console.print(f"wrote {out}")


@main.command()
@click.option("--target", default=None,
              help="host:port of a running server (with --operator-token); default: start "
                   "one on loopback")


@click.option("--operator-token", envvar="SPOTEX_OPERATOR_TOKEN", default=None)
@click.option("--steps", default=3_000, show_default=True, help="agent actions")
@click.option("--buyers", default=24, show_default=True)
@click.option("--sellers", default=8, show_default=True, help="besides the large seller")
@click.option("--seed", default=7, show_default=True)
@click.option("--hours", default=1, show_default=True, type=click.IntRange(1, 168),
              help="delivery hours; from 4, training-run buyers bid blocks across them")


@click.option("--training-buyers", default=16, show_default=True, type=click.IntRange(0, 1000),
              help="with --hours: buyers of whole nodes for 4 to 72 hours")
@click.option("--auctions", is_flag=True,
              help="with --hours: seeded training-run markets played first come and by "
                   "block auction, each against the offline optimum")
@click.option("--runs", default=3, show_default=True, type=click.IntRange(1, 100),
              help="with --auctions: markets, seeds from --seed on")


@click.option("--out-dir", type=click.Path(file_okay=False, path_type=Path),
              default=Path("bench/results"), show_default=True,
              help="simulate.json, simulate_prices.png and simulate_supply_demand.png "
                   "(with --hours: simulate_hours.json and simulate_hours.png)")


def simulate(target: str | None, operator_token: str | None, steps: int, buyers: int,
             sellers: int, seed: int, hours: int, training_buyers: int, auctions: bool,
             runs: int, out_dir: Path) -> None:
    """Zero-intelligence agents trade through the SDK: one delivery hour (allocative
    efficiency, volume, prices, utilisation), or with --hours N a market of N hours with
    training-run buyers (block demand served, prices and utilisation per hour, surplus);
    prints and draws them."""

    from spotex.tools import simulate as sim

    if target and not operator_token:
        raise click.UsageError("--target needs --operator-token (or SPOTEX_OPERATOR_TOKEN)")
    if 1 < hours < 4:
        raise click.UsageError("--hours is 1 (one delivery hour) or 4 to 168")
    if auctions:
        if hours < 4:
            raise click.UsageError("--auctions needs --hours (4 to 168)")
        _simulate_auctions(target, operator_token, hours, seed, runs, out_dir)
        return
    if hours > 1:
        _simulate_runs(target, operator_token, steps, buyers, sellers, seed, hours,
                       training_buyers, out_dir)
        return
    cfg = sim.SimConfig(seed=seed, steps=steps, buyers=buyers, sellers=sellers)
    result = _on_a_server(target, operator_token,
                          f"{buyers} buyers and {sellers + 1} sellers trading",
                          lambda t, token: sim.run(t, token, cfg))
    summary = result.summary()
    _print_summary(f"simulation, seed {seed}, {steps} steps", summary)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "simulate.json").write_text(json.dumps(
        {"config": {k: v for k, v in cfg.__dict__.items()}, "summary": summary,
         "price_path_usd": [p / 1_000_000 for _, p, _ in result.trades]}, indent=2))
    if not available("matplotlib"):
        console.print(f"wrote simulate.json to {out_dir}; no charts without matplotlib "
                      "(pip install 'spotex[charts]')")
        return
    prices, sd = sim.charts(result)
    (out_dir / "simulate_prices.png").write_bytes(prices)
    (out_dir / "simulate_supply_demand.png").write_bytes(sd)
    console.print(f"wrote simulate.json, simulate_prices.png, simulate_supply_demand.png "
                  f"to {out_dir}")


T = TypeVar("T")


def _on_a_server(target: str | None, operator_token: str | None, doing: str,
                 run: Callable[[str, str], T]) -> T:
    """`run(target, operator token)` against the server given, or one started on loopback
    for it and stopped after; a RuntimeError of the run becomes one line."""
    import secrets

    from spotex.tools.demo import start_server

    server = None
    if not target:
        operator_token = secrets.token_urlsafe(16)
        server, loop = start_server("127.0.0.1:0", operator_token)
        target = f"127.0.0.1:{server.port}"
    assert operator_token is not None
    try:
        with console.status(f"{doing} on {target}"):
            return run(target, operator_token)
    except RuntimeError as e:
        raise click.ClickException(str(e)) from None
    finally:
        if server is not None:
            asyncio.run_coroutine_threadsafe(server.stop(1.0), loop).result(10)


def _print_summary(title: str, summary: dict[str, Any]) -> None:
    t = Table("measure", "value", title=title)
    for k, v in summary.items():
        t.add_row(k.replace("_", " "), str(v))
    console.print(t)


def _simulate_auctions(target: str | None, operator_token: str | None, hours: int,
                       seed: int, runs: int, out_dir: Path) -> None:
    """``simulate --hours N --auctions``: first come and by auction, against the optimum."""

    from spotex.tools import simulate_auctions as sa

    rows = _on_a_server(target, operator_token,
                        f"{runs} training-run markets over {hours} hours, first come and "
                        "by auction", lambda t, token: sa.run(t, token, hours=hours,
                                                              seed=seed, runs=runs))
    t = Table("seed", "nodes", "optimum $", "first come", "auction", "mixed", "blocks",
              "gap", "solve s", title=f"welfare against the offline optimum, {hours} hours",
              caption="mixed: one-hour bids continuous, blocks by auction; blocks: filled "
                      "first come / by auction / bid")
    for r in rows:
        t.add_row(str(r["seed"]), str(r["nodes"]), f"{r['optimum_usd']:.0f}",
                  f"{r['first_come']:.3f}", f"{r['auction']:.3f}",
                  f"{r['auction_hourly_continuous']:.3f}",
                  f"{r['blocks_filled_first_come']}/{r['blocks_filled_auction']}/"
                  f"{r['blocks']}", f"{r['gap']:.4f}", f"{r['solve_seconds']:.2f}")
    width = console.width  # the figures whole, never folded (rich clamps to the console's)
    console.width = max(width, 100)
    try:
        console.print(t)
    finally:
        console.width = width
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "simulate_auctions.json").write_text(json.dumps(rows, indent=2))
    console.print(f"wrote simulate_auctions.json to {out_dir}")


def _simulate_runs(target: str | None, operator_token: str | None, steps: int, buyers: int,
                   sellers: int, seed: int, hours: int, training_buyers: int,
                   out_dir: Path) -> None:
    """``simulate --hours N``: training runs beside hourly buyers over N hours."""

    from spotex.tools import simulate_runs as runs

    cfg = runs.RunsConfig(seed=seed, steps=steps, hours=hours, sellers=sellers,
                          hourly_buyers=buyers, training_buyers=training_buyers)
    result = _on_a_server(target, operator_token,
                          f"{training_buyers} training runs, {buyers} hourly buyers and "
                          f"{sellers} sellers trading {hours} hours",
                          lambda t, token: runs.run(t, token, cfg))
    summary = result.summary()
    _print_summary(f"simulation over {hours} hours, seed {seed}, {steps} steps", summary)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "simulate_hours.json").write_text(json.dumps(
        {"config": dict(cfg.__dict__), "summary": summary, "per_hour": result.per_hour()},
        indent=2))
    if not available("matplotlib"):
        console.print(f"wrote simulate_hours.json to {out_dir}; no chart without matplotlib "
                      "(pip install 'spotex[charts]')")
        return
    (out_dir / "simulate_hours.png").write_bytes(runs.chart(result))
    console.print(f"wrote simulate_hours.json and simulate_hours.png to {out_dir}")


def _replay_index(data_dir: Path, as_csv: bool) -> None:
    """The daily index from the journal's trades alone: the audit any user can run."""
    import csv
    import sys
    import time

    from spotex._core import JournalError
    from spotex.server import prices as px
    from spotex.server.host import journal_trades

    try:
        trades, _ = journal_trades(data_dir, whole=True)
    except JournalError as e:
        raise click.ClickException(str(e)) from None
    today = time.time_ns() // 1000 // px.DAY
    rows = px.index_days([t.trade for t in trades], today)
    if as_csv:
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(px.INDEX_CSV_HEADER)
        for row in rows:
            w.writerow(px.index_csv_row(*row))
        return
    t = Table("SKU", "region", "day", "status", "index $", "GPU-h", "trades", "outliers",
              title=f"daily index ({px.METHODOLOGY}) from {len(trades)} trades of the journal")
    for fam, day, status, v in rows:
        t.add_row(*fam.split("/"), px.day_name(day), status,
                  px.dollars(v.price) if v.price else "", str(v.volume), str(v.trades),
                  f"{v.excluded_trades} ({v.excluded_volume} GPU-h)")
    console.print(t if rows else "no trades in the journal")


@main.command()
@click.argument("data_dir", type=click.Path(exists=True, file_okay=False, path_type=Path),
                required=False)
@click.option("--nats", default="", metavar="URLS",
              help="read a replicated shard's stream from these NATS servers (comma "
              "separated) instead of a data directory's journal")
@click.option("--stream", default="", metavar="NAME",
              help="with --nats: the shard's stream (spotex-SHARD, or SHARD)")
@click.option("--seq", "until_seq", type=int, default=None, help="replay up to this sequence")
@click.option("--time", "until", default=None,
              help="replay up to this time: ISO 8601, UTC unless it says otherwise "
                   "(2026-11-30T13:05, 2026-11-30T13:05:00Z, ...+01:00)")


@click.option("--product", default=None, help="show this product's book, trades, allocations")
@click.option("--verify", is_flag=True, help="check every snapshot's hash against a replay")
@click.option("--trades-csv", type=click.Path(path_type=Path), default=None)
@click.option("--charts", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="write depth.png, prices.png and report.html for --product here")
@click.option("--index", "index", is_flag=True,
              help="recompute the daily index of every SKU and region from the journal "
                   "alone (docs/index.md), to compare with what the venue published")
@click.option("--balances", is_flag=True,
              help="every account's money at that point: current, holds and, with "
              "--csv, on stdout")
@click.option("--csv", "as_csv", is_flag=True, help="with --index or --balances: CSV on "
              "stdout")
def replay(data_dir: Path | None, nats: str, stream: str, until_seq: int | None,
           until: str | None, product: str | None, verify: bool, trades_csv: Path | None,
           charts: Path | None, index: bool, balances: bool, as_csv: bool) -> None:
    """Rebuild the books and the money from a data directory's journal, or a replicated
    shard's stream (--nats URLS --stream NAME; or the data directory of one of its
    engines), never changing either. The ledger's invariants are checked there (exit 1
    if they do not hold)."""
    if index:
        if data_dir is None:
            raise click.UsageError("--index reads a data directory's journal")
        _replay_index(data_dir, as_csv)
        return
    if as_csv and not balances:
        raise click.UsageError("--csv goes with --index or --balances")

    from spotex.server import replay as rp

    if charts is not None:
        _require("matplotlib", "charts", "--charts")
    when = None
    if until:
        try:
            when = dt.datetime.fromisoformat(until)
        except ValueError:
            raise click.BadParameter(f"{until!r} is not an ISO 8601 time",
                                     param_hint="--time") from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
    from spotex._core import JournalError

    if bool(nats) != bool(stream):
        raise click.UsageError("--nats and --stream go together")
    if data_dir is None and not nats:
        raise click.UsageError("give a data directory, or --nats URLS --stream NAME")
    where: tuple[list[str], str] | None = None
    if nats:
        where = ([u.strip() for u in nats.split(",") if u.strip()],
                 rp.stream_shard_name(stream))
    elif data_dir is not None:
        try:
            where = rp.replicated_of(data_dir)
        except (OSError, ValueError, KeyError) as e:
            raise click.ClickException(f"{data_dir}: unreadable {e}") from None
    with contextlib.ExitStack() as stack:
        try:
            if where is not None:
                servers, shard = where
                with console.status(f"reading the stream spotex-{shard}"):
                    data_dir = stack.enter_context(rp.from_stream(servers, shard, data_dir))
            assert data_dir is not None
            with console.status("replaying the journal"):
                r = rp.rebuild(data_dir, until_seq, when)
        except JournalError as e:
            raise click.ClickException(str(e)) from None
        if balances and as_csv:
            _balances_csv(r)
            return
        _replayed(r, data_dir, verify, trades_csv, product, charts)
        if balances:
            _balances_table(r)
        _ledger_holds(r)


def _ledger_holds(r: Any) -> None:
    """Exit 1, saying what broke, when the replayed ledger's invariants do not hold."""
    if r.ledger_problem is not None:
        raise click.ClickException(f"the ledger's invariants do not hold at sequence "
                                   f"{r.sequence}: {r.ledger_problem}")


def _money_line(r: Any) -> str:
    """One line of the money at a replay's point."""
    if not r.balances:
        return "money: none moved yet"
    fees = sum(b.current_micros for b in r.balances if b.account_id == 0)
    held = sum(b.holds_micros for b in r.balances)
    traders = [b for b in r.balances if b.account_id != 0]
    net = sum(b.current_micros for b in r.balances)
    state = ("the ledger's invariants hold" if r.ledger_problem is None
             else "[red]the ledger's invariants do NOT hold[/red]")
    return (f"money: {len(traders)} accounts hold ${net / 1e6:,.2f} (venue fees "
            f"${fees / 1e6:,.2f}), ${held / 1e6:,.2f} held by live buys; {state}")


def _balances_table(r: Any) -> None:
    t = Table("account", "current", "holds", title=f"balances at sequence {r.sequence}")
    for b in r.balances:
        t.add_row("venue fees" if b.account_id == 0 else str(b.account_id),
                  f"${b.current_micros / 1e6:,.6f}", f"${b.holds_micros / 1e6:,.6f}")
    console.print(t if r.balances else "no account has money yet")


def _balances_csv(r: Any) -> None:
    import csv
    import sys

    from spotex.money import format_price
    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(["sequence", "account_id", "current", "holds"])
    for b in r.balances:
        w.writerow([r.sequence, b.account_id, format_price(b.current_micros),
                    format_price(b.holds_micros)])
    _ledger_holds(r)


def _replayed(r: Any, data_dir: Path, verify: bool, trades_csv: Path | None,
              product: str | None, charts: Path | None) -> None:
    """What ``replay`` shows of a replay ``r`` of ``data_dir``."""
    from spotex.server import replay as rp
    from spotex.tools.demo import book_rows
    if r.torn_tail:
        segment, offset, nbytes = r.torn_tail
        console.print(f"[yellow]journal has a torn tail: {nbytes} bytes at offset {offset} "
                      f"of {segment.name} (ignored)[/yellow]")
    began = f" from the snapshot at {r.start}" if r.start else ""
    console.print(f"replayed to sequence {r.sequence}{began} ({r.records} journal records "
                  f"kept); state hash {r.state_hash}")
    console.print(_money_line(r))
    if verify:
        t = Table("snapshot seq", "recorded hash", "replayed hash", "ok")
        results = rp.verify(data_dir)
        for seq, recorded, replayed, ok in results:
            t.add_row(str(seq), recorded[:16], replayed[:16], "yes" if ok else "[red]NO[/red]")
        console.print(t if results else "no snapshots to verify against")
        if not all(ok for *_, ok in results):
            raise click.ClickException("a replayed state hash differs from the recorded one")
    if trades_csv:
        n = rp.trades_csv(r.trades, trades_csv, product)
        console.print(f"wrote {n} trades to {trades_csv}")
    if product:
        if product not in {p[0] for p in r.engine.products()}:
            raise click.ClickException(f"no product {product} at that point")
        t = Table("bid GPUs", "bid $", "ask $", "ask GPUs", title=f"{product} book")
        bids, asks = r.engine.l2(product, 15)
        for row in book_rows(bids, asks):
            t.add_row(*row)
        console.print(t)
        if bids and asks and bids[0][0] >= asks[0][0]:
            console.print(f"[dim]{rp.CROSSED_NOTE}[/dim]")
        mine = [x for x in r.trades if x[3] == product]
        console.print(f"{len(mine)} trades; last: "
                      + ", ".join(f"{q}@{rp._dollars(px)}" for *_, px, q, _ in mine[-5:]))
        allocs = [a for a in r.engine.all_allocations() if a.product == product]
        console.print(f"{len(allocs)} allocations, {sum(a.qty for a in allocs)} GPUs")
        if charts:
            charts.mkdir(parents=True, exist_ok=True)
            depth, prices = rp.depth_chart(r.engine, product), rp.price_history(r.trades, product)
            (charts / "depth.png").write_bytes(depth)
            (charts / "prices.png").write_bytes(prices)
            (charts / "report.html").write_text(rp.html_report(r, product, depth, prices))
            console.print(f"wrote depth.png, prices.png and report.html to {charts}")
