"""The trading commands over the SDK: products, book, watch, order, one-of, basket,
submit, amend, cancel, cancel-all, get, orders, allocations, executions, resell."""

from __future__ import annotations

import collections
import datetime as dt
import json
import queue
import threading
import time
from decimal import Decimal
from typing import Any

import click
from rich.live import Live
from rich.table import Table

from spotex.cli.output import (
    NoLive,
    allocations_table,
    auction_prices_table,
    auctions_table,
    book_table,
    emit,
    emit_range,
    orders_table,
    plain,
    prices_table,
    products_table,
    until_interrupted,
)
from spotex.cli.params import HOUR, NODE_GPUS, ORDER_ID, PRICE, QUANTITY, WHEN
from spotex.cli.root import client, main
from spotex.client import (
    MarketEvent,
    RpcError,
)


@main.command()
@click.pass_context
def products(ctx: click.Context) -> None:
    """List products."""
    ps = client(ctx).list_products()
    emit(ctx, ps, lambda: products_table(ps))


@main.command()
@click.pass_context
def auctions(ctx: click.Context) -> None:
    """The block auctions' results, newest first."""
    got = client(ctx).list_auctions()
    emit(ctx, got, lambda: auctions_table(got))


@main.command()
@click.option("--from-hour", type=HOUR, required=True, help="the window's first hour")
@click.option("--to-hour", type=HOUR, required=True, help="the hour after its last")
@click.pass_context
def indicative(ctx: click.Context, from_hour: int, to_hour: int) -> None:
    """What an auction over [from, to) would clear now, and which of your auction orders
    would fill (nothing is committed; solved at most once a minute)."""
    if to_hour <= from_hour:
        raise click.BadParameter("the window ends after it begins", param_hint="--to-hour")
    a = client(ctx).indicative_auction(from_hour, to_hour)

    def table() -> Any:
        t = prices_table(a.prices)
        mine = ", ".join(f"{o} {'gets ' + str(q) + ' GPUs' if q else 'would not fill'}"
                         for o, q in a.your_orders) or "none"
        t.caption = (f"indicative at {a.computed_at:%H:%M:%S} UTC, {a.bids} bids, welfare "
                     f"${a.welfare:.2f}; your auction orders: {mine}")
        return t
    emit(ctx, a, table)


@main.command()
@click.argument("auction_id", type=click.IntRange(0), default=0)
@click.pass_context
def auction(ctx: click.Context, auction_id: int) -> None:
    """One auction's clearing prices and volumes (default: the latest)."""
    a = client(ctx).auction_result(auction_id)
    emit(ctx, a, lambda: auction_prices_table(a))


@main.command()
@click.argument("product_id")
@click.option("--depth", default=10, show_default=True, type=click.IntRange(1, 10_000))
@click.pass_context
def book(ctx: click.Context, product_id: str, depth: int) -> None:
    """Show a product's order book."""
    b = client(ctx).get_book(product_id, depth)
    emit(ctx, b, lambda: book_table(b, []))


@main.command()
@click.argument("product_id")
@click.option("--depth", default=10, show_default=True, type=click.IntRange(1, 1000))
@click.option("--seconds", default=0.0, type=click.FloatRange(0, None),
              help="stop after this long (0: until Ctrl-C)")
@click.option("--market-data", envvar="SPOTEX_MARKET_DATA", default="", metavar="HOST:PORT",
              help="stream from the venue's market-data relays at this address (or "
              "SPOTEX_MARKET_DATA; empty: from the server)")
@click.pass_context
def watch(ctx: click.Context, product_id: str, depth: int, seconds: float,
          market_data: str) -> None:
    """A live book and the last trades of a product (with --json: every market-data
    event as a JSON line)."""
    c = client(ctx, market_data)
    c.get_book(product_id, 1)  # an unknown product fails here, with its reason
    events: queue.Queue[MarketEvent | BaseException] = queue.Queue()

    def read() -> None:
        try:
            for e in c.market_data([product_id]):
                events.put(e)
        except BaseException as err:  # noqa: BLE001 - handed to the main thread
            events.put(err)
    threading.Thread(target=read, daemon=True, name="spotex-watch").start()
    levels: dict[str, dict[Decimal, int]] = {"buy": {}, "sell": {}}
    trades: collections.deque[MarketEvent] = collections.deque(maxlen=8)
    sequence = 0

    def view() -> Any:
        from spotex.client import Book, Level
        bids = sorted(levels["buy"].items(), reverse=True)[:depth]
        asks = sorted(levels["sell"].items())[:depth]
        b = Book(product_id, sequence, tuple(Level(p, q, 0) for p, q in bids),
                 tuple(Level(p, q, 0) for p, q in asks))
        return book_table(b, trades)
    deadline = time.monotonic() + seconds if seconds else None
    as_json = ctx.obj.get("json")
    with until_interrupted(), Live(view(), console=ctx.obj["console"], auto_refresh=False,
              transient=False) if not as_json else NoLive() as live:
        while deadline is None or time.monotonic() < deadline:
            try:
                e = events.get(timeout=0.2 if deadline is None else
                               max(0.0, min(0.2, deadline - time.monotonic())))
            except queue.Empty:
                continue
            if isinstance(e, BaseException):
                raise e
            sequence = e.sequence
            if as_json:
                click.echo(json.dumps(plain(e)))
                continue
            if e.kind == "snapshot" and e.book is not None:
                levels["buy"] = {x.price: x.quantity for x in e.book.bids}
                levels["sell"] = {x.price: x.quantity for x in e.book.asks}
            elif e.kind == "level" and e.side and e.price is not None:
                if e.quantity:
                    levels[e.side][e.price] = e.quantity
                else:
                    levels[e.side].pop(e.price, None)
            elif e.kind == "trade":
                trades.append(e)
            live.update(view(), refresh=True)


@main.command()
@click.argument("file", type=click.File("r"))
@click.pass_context
def basket(ctx: click.Context, file: Any) -> None:
    """A linked basket: FILE (or -) holds up to 100 orders, one a line as JSON (as for
    `spotex submit`); all fill completely or none, at once."""
    legs = _orders_from(file)
    try:
        got = client(ctx).place_basket(legs)
    except TypeError as err:  # an unknown term in a line
        raise click.BadParameter(str(err), param_hint="FILE") from None
    emit(ctx, got, lambda: orders_table(got))


@main.command()
@click.option("--seconds", default=0.0, type=click.FloatRange(0, None),
              help="stop after this long (0: until Ctrl-C)")
@click.option("--from-sequence", type=click.IntRange(0, None), default=None,
              help="first every execution after this sequence (the last one you saw; 0: "
                   "from your first), from the history the venue keeps; then live")


@click.pass_context
def executions(ctx: click.Context, seconds: float, from_sequence: int | None) -> None:
    """Your executions as they happen: accepted, trades, allocations, cancels (a
    line each; with --json, a JSON line each). The stream resumes by itself after a lost
    connection or a restart of the server, from the last execution shown: none twice,
    none left out. Where it went live goes to stderr (not with --json)."""
    c = client(ctx)
    c.list_orders(open_only=True)  # a wrong token or a server that is down fails here
    stream = c.subscribe_executions(from_sequence)  # a sequence not kept fails here
    if stream.live_from_sequence and not ctx.obj.get("json"):
        click.echo(f"live from #{stream.live_from_sequence}", err=True)
    events: queue.Queue[Any] = queue.Queue()

    def read() -> None:
        try:
            for e in stream:
                events.put(e)
        except BaseException as err:  # noqa: BLE001 - handed to the main thread
            events.put(err)
    threading.Thread(target=read, daemon=True, name="spotex-executions").start()
    deadline = time.monotonic() + seconds if seconds else None
    with until_interrupted():
        show_executions(ctx, events, deadline)


def show_executions(ctx: click.Context, events: queue.Queue[Any],
                    deadline: float | None) -> None:
    while deadline is None or time.monotonic() < deadline:
        try:
            e = events.get(timeout=0.2)
        except queue.Empty:
            continue
        if isinstance(e, BaseException):
            raise e
        if ctx.obj.get("json"):
            click.echo(json.dumps(plain(e)))
            continue
        what = f"#{e.sequence} {e.kind}"
        if e.order is not None:
            what += f" order {e.order.order_id} {e.order.product_id} {e.order.state}"
        if e.fill is not None:
            what += f" {e.fill.quantity}@{e.fill.price:.2f}"
        if e.allocation is not None:
            where = ", ".join(f"{n}[{','.join(map(str, g))}]" for n, g in e.allocation.slots)
            what += f" GPUs {where}"
        if e.block is not None:
            b = e.block
            where = ", ".join(f"{n}[{','.join(map(str, g))}]" for n, g in b.slots)
            what += (f" {b.cluster_id} GPUs {where} for {b.hours} hours, "
                     f"${b.cost:,.2f} in all")
        click.echo(what)


@main.command()
@click.argument("file", type=click.File("r"))
@click.option("--per-message", default=100, show_default=True,
              type=click.IntRange(1, 1000), help="orders per stream message")


@click.pass_context
def submit(ctx: click.Context, file: Any, per_message: int) -> None:
    """Bulk entry: FILE (or - for stdin) holds one order a line as JSON, with
    place_order's arguments ({"product_id": ..., "side": "buy", "price": "2.10",
    "quantity": 8, "tif": "ioc"}); each is placed or refused on its own."""
    orders = _orders_from(file)
    try:
        got = list(client(ctx).submit_orders(orders, per_message=per_message))
    except TypeError as err:  # an unknown term in a line
        raise click.BadParameter(str(err), param_hint="FILE") from None
    rows = [{"refused": o.reason, "message": o.message} if isinstance(o, RpcError)
            else o for o in got]
    placed = [o for o in got if not isinstance(o, RpcError)]

    def table() -> Any:
        t = orders_table(placed)
        t.caption = f"{len(placed)} placed, {len(got) - len(placed)} refused"
        return t
    emit(ctx, rows, table)


@main.command()
@click.argument("side", type=click.Choice(["buy", "sell"]))
@click.argument("product_id")
@click.argument("quantity", type=QUANTITY)
@click.argument("price", type=PRICE)
@click.option("--type", "order_type", type=click.Choice(["limit", "market"]),
              default="limit", show_default=True,
              help="market: PRICE is the protection price (the worst it may trade at)")


@click.option("--tif", type=click.Choice(["gtc", "gtd", "ioc", "fok"]), default="gtc",
              show_default=True, help="gtc: good till gate closure; gtd: till --expire-at")


@click.option("--expire-at", type=WHEN, default=None, help="gtd: when the order expires")
@click.option("--cluster", default=None, help="asks: the cluster the GPUs come from")
@click.option("--gang", default=1, show_default=True, type=click.IntRange(1, 1024),
              help="bids: GPUs that must sit on one node together")


@click.option("--post-only", is_flag=True, help="refuse instead of trading at once")
@click.option("--stp", type=click.Choice(["cancel_newest", "cancel_oldest", "cancel_both"]),
              default="cancel_newest", show_default=True, help="self-trade prevention")


@click.option("--client-order-id", default="",
              help="your id for it (at most 64 chars; default: one the SDK makes)")
@click.option("--hours", default=1, show_default=True, type=click.IntRange(1, 168),
              help="bids: a block of the same GPUs for this many consecutive hours from "
                   "PRODUCT's, all or none; with --tif gtc or gtd it waits whole until "
                   "it can fill; PRICE is per GPU-hour")


@click.option("--window", default=0, show_default=True, type=click.IntRange(0, 336),
              help="bids: the block may start anywhere inside this many hours from "
                   "PRODUCT's; the cheapest start wins, ties to the earliest")


@click.option("--min", "min_quantity", default=0, show_default=True,
              type=click.IntRange(0, 10_000_000),
              help="bids: fill at least this many GPUs at once or nothing; the rest "
                   "goes on as --tif says")


@click.option("--display", "display_quantity", default=0, show_default=True,
              type=click.IntRange(0, 10_000_000),
              help="asks: an iceberg showing at most this many GPUs at a time (0: all)")


@click.option("--locality", type=click.Choice(["node", "nvlink_domain", "rack", "block",
                                               "cluster"]), default=None,
              help="bids: all the GPUs in one domain at this level, or none")


@click.option("--prefer", is_flag=True,
              help="with --locality: the tightest level from there out that can be had")


@click.option("--near", "colocate_with", type=click.IntRange(0), default=0,
              help="bids: next to your allocation of this trade id (same cluster, and "
                   "domain at --locality)")


@click.option("--auction", is_flag=True,
              help="bids: wait for the block auction of PRODUCT's hour instead of "
                   "trading continuously (gtc or gtd); asks with --hours 2 or more: a "
                   "seller block, offered to the auction only and sold whole or not at all")


@click.pass_context
def order(ctx: click.Context, side: str, product_id: str, quantity: int, price: Decimal,
          order_type: str, tif: str, expire_at: dt.datetime | None, cluster: str | None,
          gang: int, post_only: bool, stp: str, client_order_id: str, hours: int,
          window: int, min_quantity: int, display_quantity: int, locality: str | None,
          prefer: bool, colocate_with: int, auction: bool) -> None:
    """Place an order: spotex order buy PRODUCT 8 2.10 --gang 8

    When its answer is lost (the venue may have applied it), the order is looked up by
    its client order id first: the order, or an error saying it was not applied (safe
    to send again) or is still unknown (`spotex get --client-order-id ID` later)."""
    if tif == "gtd" and expire_at is None:
        raise click.UsageError("--tif gtd needs --expire-at")
    if expire_at is not None and tif != "gtd":
        raise click.UsageError("--expire-at goes with --tif gtd")
    o = client(ctx).place_order(product_id, side, price, quantity,  # type: ignore[arg-type]
                                order_type=order_type, tif=tif, expire_at=expire_at,
                                cluster_id=cluster, gang=gang, post_only=post_only,
                                stp=stp, client_order_id=client_order_id, hours=hours,
                                window_hours=window, min_quantity=min_quantity,
                                display_quantity=display_quantity,
                                locality=locality or "", locality_preferred=prefer,
                                colocate_with=colocate_with, auction=auction)
    emit(ctx, o, lambda: orders_table([o]))


@main.command("one-of")
@click.option("--alt", "alts", multiple=True, required=True,
              metavar="PRODUCT:QTY:PRICE:HOURS[:WINDOW]",
              help="an alternative: a block bid (up to 16 of them)")


@click.option("--gang", default=1, show_default=True, type=click.IntRange(1, 64))
@click.option("--tif", type=click.Choice(["ioc", "fok", "gtc"]), default="fok",
              show_default=True,
              help="gtc: when none can fill now, the group waits; the first "
                   "alternative to fill cancels the others")


@click.option("--client-order-id", default="")
@click.option("--auction", is_flag=True,
              help="every alternative waits for the block auction (with --tif gtc)")
@click.pass_context
def one_of(ctx: click.Context, alts: tuple[str, ...], gang: int, tif: str,
           client_order_id: str, auction: bool) -> None:
    """Bid for one of several blocks: at most one fills, the cheapest that can
    (now, or with --tif gtc the first that can as asks arrive)."""
    if len(alts) > 16:
        raise click.BadParameter("at most 16 alternatives", param_hint="--alt")
    parsed = []
    for a in alts:
        parts = a.split(":")  # product ids hold no colon
        try:
            if len(parts) not in (4, 5):
                raise ValueError
            pid_, qty, px, hours = parts[:4]
            parsed.append(dict(product_id=pid_, quantity=QUANTITY.convert(qty, None, ctx),
                               price=PRICE.convert(px, None, ctx), hours=int(hours),
                               window_hours=int(parts[4]) if len(parts) == 5 else 0,
                               gang=gang, tif=tif, auction=auction))
        except (click.BadParameter, ValueError):
            raise click.BadParameter(f"{a!r} is not PRODUCT:QTY:PRICE:HOURS[:WINDOW]",
                                     param_hint="--alt") from None
    o = client(ctx).place_one_of(parsed, client_order_id=client_order_id)
    emit(ctx, o, lambda: orders_table([o]))


@main.command()
@click.argument("order_id", type=ORDER_ID)
@click.option("--price", type=PRICE, default=None, help="the new limit price")
@click.option("--quantity", type=QUANTITY, default=None, help="the new remaining quantity")
@click.pass_context
def amend(ctx: click.Context, order_id: int, price: Decimal | None,
          quantity: int | None) -> None:
    """Change an open order's price or remaining quantity."""
    if price is None and quantity is None:
        raise click.UsageError("give --price, --quantity or both")
    o = client(ctx).amend_order(order_id, price=price, quantity=quantity)
    emit(ctx, o, lambda: orders_table([o]))


@main.command()
@click.argument("order_id", type=ORDER_ID)
@click.pass_context
def cancel(ctx: click.Context, order_id: int) -> None:
    """Cancel an order."""
    o = client(ctx).cancel_order(order_id)
    emit(ctx, o, lambda: orders_table([o]))


@main.command("cancel-all")
@click.option("--product", default="", help="only this product's orders")
@click.option("--range", "range_id", default=0, type=click.IntRange(0, (1 << 64) - 1),
              help="only the orders of this range (`seller range`)")


@click.pass_context
def cancel_all(ctx: click.Context, product: str, range_id: int) -> None:
    """Cancel every open order of yours (mass cancel)."""
    os_ = client(ctx).cancel_all(product, range_id=range_id)
    emit(ctx, os_, lambda: orders_table(os_))


@main.command()
@click.argument("order_id", type=ORDER_ID, required=False)
@click.option("--client-order-id", default="",
              help="the order of this client order id instead (whether an order whose "
                   "outcome was unknown was applied: NOT_FOUND UNKNOWN_ORDER if not)")
@click.pass_context
def get(ctx: click.Context, order_id: int | None, client_order_id: str) -> None:
    """Show one of your orders, with its fills: by ORDER_ID, or by --client-order-id."""
    if (order_id is None) == (not client_order_id):
        raise click.UsageError("give ORDER_ID or --client-order-id (one of them)")
    o = client(ctx).get_order(order_id or 0, client_order_id=client_order_id)

    def table() -> Table:
        t = orders_table([o])
        if o.fills:
            t.caption = "fills: " + ", ".join(
                f"trade {f.trade_id} {f.quantity}@{f.price:.2f}"
                f"{' (maker)' if f.maker else ''}" for f in o.fills)
        return t
    emit(ctx, o, table)


@main.command()
@click.option("--product", default="")
@click.option("--open", "open_only", is_flag=True)
@click.pass_context
def orders(ctx: click.Context, product: str, open_only: bool) -> None:
    """List your orders."""
    os_ = client(ctx).list_orders(product, open_only=open_only)
    emit(ctx, os_, lambda: orders_table(os_))


@main.command()
@click.option("--product", default="")
@click.pass_context
def allocations(ctx: click.Context, product: str) -> None:
    """List the GPUs you bought (or sold)."""
    al = client(ctx).list_allocations(product)
    emit(ctx, al, lambda: allocations_table(al))


@main.command()
@click.argument("order_id", type=ORDER_ID)
@click.argument("price", type=PRICE)
@click.option("--from-hour", type=HOUR, default=0,
              help="first hour to resell, inclusive (default: the order's first)")


@click.option("--to-hour", type=HOUR, default=0,
              help="last hour, exclusive (default: to the order's last)")


@click.option("--gpu", "gpus", type=NODE_GPUS, multiple=True,
              help="NODE:I,J,... GPUs of that node only, once per node (default: all)")


@click.option("--tif", type=click.Choice(["gtc", "ioc", "fok"]), default="gtc",
              show_default=True)


@click.option("--client-order-id", default="", help="each ask gets it with #index")
@click.pass_context
def resell(ctx: click.Context, order_id: int, price: Decimal, from_hour: int, to_hour: int,
           gpus: tuple[tuple[str, tuple[int, ...]], ...], tif: str,
           client_order_id: str) -> None:
    """Resell GPUs a buy order bought (a block or a one-hour bid): one ask per hour
    held, on the same GPUs, sharing a range id (`spotex cancel-all --range ID`). Each
    fill moves those GPUs to the buyer; you pay the venue's resale fee."""
    got = client(ctx).resell(order_id, price, from_hour=from_hour, to_hour=to_hour,
                             gpus=gpus, tif=tif, client_order_id=client_order_id)
    emit_range(ctx, got)


def _orders_from(file: Any) -> list[dict[str, Any]]:
    """Orders written one a line as JSON objects (blank lines skipped); a line that is not
    one is named by its number."""
    orders = []
    for n, line in enumerate(file, 1):
        if not line.strip():
            continue
        try:
            o = json.loads(line)
            if not isinstance(o, dict):
                raise ValueError("not an object")
        except ValueError as err:
            raise click.BadParameter(f"line {n}: {err}", param_hint="FILE") from None
        orders.append(o)
    return orders
