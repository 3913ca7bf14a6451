"""The price-discovery commands over the SDK: curve, candles, index, trades."""

from __future__ import annotations

import csv
import datetime as dt
import sys
from decimal import Decimal
from typing import Any

import click

from spotex.cli.output import _table, emit
from spotex.cli.root import client, main
from spotex.client import DailyIndex


def _usd(x: Decimal | None) -> str:
    if x is None:
        return ""
    return f"{x:.2f}" if x == round(x, 2) else str(x)


def _when(value: str | None, name: str) -> dt.datetime | None:
    if not value:
        return None
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 time",
                                 param_hint=name) from None
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _scope(target: str | None, region: str | None) -> dict[str, str]:
    """A product id, or a SKU and region: ``spotex trades H100/us-east/2026-01-05T10`` or
    ``spotex trades H100 us-east``."""
    if not target:
        raise click.UsageError("give a product id, or a SKU and a region")
    if region is None:
        if target.count("/") != 2:
            raise click.UsageError("give a product id (SKU/region/YYYY-MM-DDTHH), or a SKU "
                                   "and a region")
        return {"product_id": target}
    return {"sku": target, "region": region}


@main.command()
@click.argument("sku")
@click.argument("region")
@click.option("--from-hour", type=int, default=0, help="first delivery hour (hours since "
              "the epoch); default: the first listed")
@click.option("--to-hour", type=int, default=0, help="the hour after the last")
@click.pass_context
def curve(ctx: click.Context, sku: str, region: str, from_hour: int, to_hour: int) -> None:
    """The forward curve of a SKU and region: per delivery hour, best bid and ask, the
    last trade, the last auction's price there, and volume."""
    c = client(ctx).curve(sku, region, from_hour=from_hour, to_hour=to_hour)

    def table() -> Any:
        t = _table("product", "bid $", "bid GPUs", "ask $", "ask GPUs", "last $", "auction $",
                   "volume", "state", title=f"{sku} {region} forward curve",
                   drop=("state", "bid GPUs", "ask GPUs", "auction $"))
        for p in c.points:
            t.add_row(p.product_id, _usd(p.bid), str(p.bid_quantity or ""), _usd(p.ask),
                      str(p.ask_quantity or ""), _usd(p.last), _usd(p.auction_price),
                      str(p.volume), p.state)
        t.caption = f"as of {c.as_of:%Y-%m-%d %H:%M:%S} UTC"
        return t
    emit(ctx, c, table)


@main.command()
@click.argument("target")
@click.argument("region", required=False)
@click.option("--interval", default="1h", show_default=True, help="1m, 1h or 1d")
@click.option("--since", default=None, help="from this time (ISO 8601, UTC unless it says)")
@click.option("--until", default=None, help="up to this time")
@click.pass_context
def candles(ctx: click.Context, target: str, region: str | None, interval: str,
            since: str | None, until: str | None) -> None:
    """OHLCV candles of a product (TARGET a product id) or of a SKU and region (TARGET the
    SKU, then REGION), oldest first."""
    cs = client(ctx).list_candles(**_scope(target, region), interval=interval,
                                  since=_when(since, "--since"), until=_when(until, "--until"))

    def table() -> Any:
        t = _table("start (UTC)", "open $", "high $", "low $", "close $", "volume", "trades",
                   "vwap $", drop=("vwap $", "trades"))
        for c in cs:
            t.add_row(f"{c.start:%Y-%m-%d %H:%M}", _usd(c.open), _usd(c.high), _usd(c.low),
                      _usd(c.close), str(c.volume), str(c.trades), _usd(c.vwap))
        return t
    emit(ctx, cs, table)


@main.command()
@click.argument("target")
@click.argument("region", required=False)
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, None))
@click.option("--since", default=None, help="from this time (ISO 8601, UTC unless it says)")
@click.option("--until", default=None, help="up to this time")
@click.pass_context
def trades(ctx: click.Context, target: str, region: str | None, limit: int,
           since: str | None, until: str | None) -> None:
    """The public trade tape of a product (TARGET a product id) or of a SKU and region,
    newest first (no accounts)."""
    ts = client(ctx).list_trades(**_scope(target, region), since=_when(since, "--since"),
                                 until=_when(until, "--until"), limit=limit)

    def table() -> Any:
        t = _table("time (UTC)", "trade", "product", "$", "GPUs", "aggressor", "auction",
                   drop=("auction", "aggressor"))
        for x in ts:
            t.add_row(f"{x.time:%Y-%m-%d %H:%M:%S.%f}"[:-3], str(x.trade_id), x.product_id,
                      _usd(x.price), str(x.quantity), x.aggressor or "",
                      str(x.auction_id or ""))
        return t
    emit(ctx, ts, table)


@main.command()
@click.argument("sku")
@click.argument("region")
@click.option("--day", default=None, help="one day (YYYY-MM-DD, UTC); default: every day")
@click.option("--from-day", default=None, help="from this day (default: the first traded)")
@click.option("--to-day", default=None, help="to this day (default: the latest ended)")
@click.option("--csv", "as_csv", is_flag=True, help="CSV on stdout, oldest first")
@click.pass_context
def index(ctx: click.Context, sku: str, region: str, day: str | None, from_day: str | None,
          to_day: str | None, as_csv: bool) -> None:
    """The daily transaction-based index of a SKU and region (docs/index.md)."""
    c = client(ctx)
    days = [c.index(sku, region, day)] if day else c.list_index(
        sku, region, from_day=from_day, to_day=to_day)
    if as_csv:
        _csv(days)
        return

    def table() -> Any:
        t = _table("day", "status", "index $", "GPU-h", "trades", "outliers", "revision",
                   title=f"{sku} {region} daily index", drop=("revision", "outliers"))
        for d in days:
            rev = "" if d.revision <= 1 else (
                f"{d.revision} (was {_usd(d.previous_price) or d.previous_status})")
            t.add_row(d.day.isoformat(), d.status, _usd(d.price), str(d.volume),
                      str(d.trades), f"{d.excluded_trades} ({d.excluded_volume} GPU-h)", rev)
        return t
    emit(ctx, days, table)


def _csv(days: list[DailyIndex]) -> None:
    """The same columns as ``spotex replay --index --csv``, plus the revision."""
    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(["sku", "region", "day", "status", "price_usd", "volume", "trades",
                "excluded_volume", "excluded_trades", "median_usd", "revision"])
    for d in sorted(days, key=lambda d: d.day):
        w.writerow([d.sku, d.region, d.day.isoformat(), d.status,
                    _usd(d.price) if d.price else "", d.volume, d.trades, d.excluded_volume,
                    d.excluded_trades, _usd(d.median), d.revision])
