"""The ``spotex`` commands over the SDK: trading (products, book, watch, order, amend,
cancel, cancel-all, get, orders, allocations), ``seller`` (capacity) and ``operator``
(products, accounts, halts, snapshots), and ``login``. Every command prints a table, or
with ``spotex --json`` the same data as JSON. Registered on ``spotex.cli.main``."""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import datetime as dt
import json
import os
import queue
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
from rich import box
from rich.live import Live
from rich.table import Table

from spotex.client import AccountInfo, Allocation, Client, MarketEvent, NodeArg, Order, Product


def _plain(x: Any) -> Any:
    """SDK values as JSON: dataclasses as objects, Decimal as a string (exact), times in
    ISO 8601."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: _plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, Decimal):
        return str(x)
    if isinstance(x, dt.datetime):
        return x.isoformat().replace("+00:00", "Z")
    if isinstance(x, list | tuple):
        return [_plain(v) for v in x]
    if isinstance(x, dict):
        return {str(k): _plain(v) for k, v in x.items()}
    return x


# columns a person reads an identifier from: never wrapped or cut
_IDS = frozenset({"id", "product", "trade", "account", "cluster", "resold from"})


class _Table(Table):
    """A table whose identifiers stay whole on one line (``grep`` finds them, a reader
    copies them), and whose other cells wrap. On a terminal too narrow for all of it, the
    columns named in ``drop`` go first, in that order."""

    def __init__(self, *headers: str, drop: tuple[str, ...] = (), **kw: Any) -> None:
        # no vertical rules, one space between columns: 80 columns go further
        kw.setdefault("box", box.SIMPLE_HEAD)
        kw.setdefault("collapse_padding", True)
        kw.setdefault("pad_edge", False)
        super().__init__(*headers, **kw)
        self.drop = drop
        for c in self.columns:
            c.overflow = "fold"
            c.no_wrap = str(c.header) in _IDS

    def fit(self, console: Any) -> int:
        """Drops what must go for the table to fit ``console``; the width to print it
        at, wider than the console only when the identifiers alone do not fit (the
        terminal then wraps the line, but the text keeps each id whole)."""
        for c in self.columns:
            if c.no_wrap:
                c.min_width = max([len(str(x)) for x in c.cells] + [len(str(c.header))])
        optional = [*self.drop, *(str(c.header) for c in reversed(self.columns)
                                  if not c.no_wrap and str(c.header) not in self.drop)]
        for name in ["", *optional]:
            self.columns = [c for c in self.columns if str(c.header) != name]
            need = self.__rich_measure__(console, console.options.update_width(1 << 16)).maximum
            if need <= console.width:
                break
        return max(int(console.width), need)


def _table(*headers: str, drop: tuple[str, ...] = (), **kw: Any) -> _Table:
    return _Table(*headers, drop=drop, **kw)


def emit(ctx: click.Context, data: Any, table: Callable[[], Any]) -> None:
    """``data`` as JSON with ``--json``, else ``table()`` for a person."""
    if ctx.obj.get("json"):
        click.echo(json.dumps(_plain(data)))
        return
    shown = table()
    console = ctx.obj["console"]
    if not isinstance(shown, _Table):
        console.print(shown)
        return
    print_table(console, shown)


def print_table(console: Any, table: _Table) -> None:
    """``table`` fitted to ``console``, wider than it only if its ids alone are."""
    width = console.width
    console.width = table.fit(console)  # rich clamps a print's width to the console's
    try:
        console.print(table)
    finally:
        console.width = width


class _Hour(click.ParamType[int]):
    """A delivery hour: hours since the epoch (490000), or a UTC time on the hour
    (2026-11-30T18, 2026-11-30T18:00Z)."""

    name = "hour"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if text.isdigit():
            return int(text)
        try:
            when = dt.datetime.fromisoformat(text if len(text) != 13 else text + ":00")
        except ValueError:
            self.fail(f"{value!r} is not an hour: give 2026-11-30T18 or hours since the epoch",
                      param, ctx)
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        if when.minute or when.second or when.microsecond:
            self.fail(f"{value!r} is not on the hour", param, ctx)
        return int(when.timestamp()) // 3600


class _Node(click.ParamType[NodeArg]):
    """A node and its GPUs, n0:8, and where it sits: n0:8@pod1/rack3/nvl2 (its block,
    rack and NVLink domain; a label left empty is shared with no other node)."""

    name = "node:gpus[@block/rack/domain]"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> NodeArg:
        if isinstance(value, tuple):
            return value
        text, at, where = str(value).partition("@")
        node, _, gpus = text.rpartition(":")
        if not node or not gpus.isdigit() or not 1 <= int(gpus) <= 1024:
            self.fail(f"{value!r} is not NODE:GPUS like n0:8", param, ctx)
        if not at:
            return node, int(gpus)
        labels = where.split("/")
        if len(labels) != 3:
            self.fail(f"{value!r}: the place is BLOCK/RACK/DOMAIN, like n0:8@pod1/r3/nvl2",
                      param, ctx)
        return node, int(gpus), labels[0], labels[1], labels[2]


@contextlib.contextmanager
def _until_interrupted() -> Iterator[None]:
    """Ctrl-C is how a person ends a live view: it ends the command, exit 0, no
    ``Aborted!``."""
    try:
        yield
    except KeyboardInterrupt:
        pass


class _When(click.ParamType[dt.datetime]):
    """A time in ISO 8601, UTC unless it says otherwise."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> dt.datetime:
        if isinstance(value, dt.datetime):
            return value
        try:
            when = dt.datetime.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time like 2026-11-30T17:30Z", param, ctx)
        return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


class _NodeGpus(click.ParamType[tuple[str, tuple[int, ...]]]):
    """GPUs of one node: NODE:I,J,... (n0:4,5,6,7)."""

    name = "node:gpus"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[str, tuple[int, ...]]:
        node, _, idx = str(value).rpartition(":")
        try:
            gpus = tuple(int(i) for i in idx.split(","))
        except ValueError:
            gpus = ()
        if not node or not gpus or any(not 0 <= g < 64 for g in gpus):
            self.fail(f"{value!r} is not NODE:I,J,... (GPU indices 0 to 63)", param, ctx)
        return node, gpus


HOUR, NODE, WHEN, NODE_GPUS = _Hour(), _Node(), _When(), _NodeGpus()
ACCOUNT_ID = click.IntRange(1, (1 << 63) - 1)
ORDER_ID = click.IntRange(1, (1 << 64) - 1)


def register(main: click.Group, client: Callable[[click.Context], Client],
             price: click.ParamType[Decimal], quantity: click.ParamType[int]) -> None:
    """Adds the commands to ``main``; ``client(ctx)`` gives the authenticated SDK."""

    # ---- tables ---------------------------------------------------------------------

    def orders_table(orders: Iterable[Order]) -> Table:
        t = _table("id", "product", "side", "type", "tif", "$", "qty", "filled", "avg $",
                   "state", "reason", drop=("type", "tif", "avg $", "reason", "filled", "side"))
        for o in orders:
            paid = sum(f.price * f.quantity for f in o.fills)
            avg = f"{paid / (o.filled * o.hours):.2f}" if o.filled and o.fills else ""
            product = o.product_id + (f" +{o.hours}h" if o.hours > 1 else "") + (
                f" in {o.window_hours}h" if o.window_hours else "")
            t.add_row(str(o.order_id), product, o.side, o.order_type, o.time_in_force,
                      f"{o.price:.2f}", str(o.quantity), str(o.filled), avg, o.state, o.reason)
        return t

    def products_table(products: Iterable[Product]) -> Table:
        t = _table("product", "state", "tick $", "lot", "gate closure (UTC)",
                   drop=("lot", "tick $"))
        for p in products:
            t.add_row(p.product_id, p.state + (" (listed before)" if p.listed_before else ""),
                      str(p.tick), str(p.lot), f"{p.close_at:%Y-%m-%d %H:%M}")
        return t

    def accounts_table(accounts: Iterable[AccountInfo]) -> Table:
        t = _table("account", "name", "roles", "enabled", "token")
        for a in accounts:
            t.add_row(str(a.account_id), a.name, ",".join(a.roles), "yes" if a.enabled else "NO",
                      "yes" if a.has_token else "revoked")
        return t

    def allocations_table(allocations: Iterable[Allocation]) -> Table:
        t = _table("trade", "product", "cluster", "role", "GPUs", "$/GPU-h", "where",
                   "resold from", drop=("resold from", "role", "cluster"))
        for a in allocations:
            where = ", ".join(f"{n}[{','.join(map(str, g))}]" for n, g in a.slots)
            t.add_row(str(a.trade_id), a.product_id, a.cluster_id,
                      "buyer" if a.as_buyer else "seller", str(a.quantity), f"{a.price:.2f}",
                      where or "(resold)",
                      f"{a.parent_trade_id} (fee {a.fee:.2f})" if a.parent_trade_id else "")
        return t

    # ---- trading --------------------------------------------------------------------

    @main.command()
    @click.pass_context
    def products(ctx: click.Context) -> None:
        """List products."""
        ps = client(ctx).list_products()
        emit(ctx, ps, lambda: products_table(ps))

    @main.command()
    @click.argument("product_id")
    @click.option("--depth", default=10, show_default=True, type=click.IntRange(1, 10_000))
    @click.pass_context
    def book(ctx: click.Context, product_id: str, depth: int) -> None:
        """Show a product's order book."""
        b = client(ctx).get_book(product_id, depth)
        emit(ctx, b, lambda: book_table(b, []))

    def book_table(b: Any, trades: Iterable[MarketEvent]) -> Table:
        t = _table("bid GPUs", "bid $", "ask $", "ask GPUs",
                  title=f"{b.product_id}  (sequence {b.sequence})")
        for i in range(max(len(b.bids), len(b.asks))):
            bid = b.bids[i] if i < len(b.bids) else None
            ask = b.asks[i] if i < len(b.asks) else None
            t.add_row(str(bid.quantity) if bid else "", f"{bid.price:.2f}" if bid else "",
                      f"{ask.price:.2f}" if ask else "", str(ask.quantity) if ask else "")
        shown = list(trades)
        if shown:
            t.caption = "last trades: " + ", ".join(
                f"{e.quantity}@{e.price:.2f}" for e in reversed(shown))
        return t

    @main.command()
    @click.argument("product_id")
    @click.option("--depth", default=10, show_default=True, type=click.IntRange(1, 1000))
    @click.option("--seconds", default=0.0, type=click.FloatRange(0, None),
                  help="stop after this long (0: until Ctrl-C)")
    @click.pass_context
    def watch(ctx: click.Context, product_id: str, depth: int, seconds: float) -> None:
        """A live book and the last trades of a product (with --json: every market-data
        event as a JSON line)."""
        c = client(ctx)
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
        with _until_interrupted(), Live(view(), console=ctx.obj["console"], auto_refresh=False,
                  transient=False) if not as_json else _NoLive() as live:
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
                    click.echo(json.dumps(_plain(e)))
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
    @click.pass_context
    def executions(ctx: click.Context, seconds: float) -> None:
        """Your executions as they happen: accepted, trades, allocations, cancels (a
        line each; with --json, a JSON line each)."""
        c = client(ctx)
        c.list_orders(open_only=True)  # a wrong token or a server that is down fails here
        events: queue.Queue[Any] = queue.Queue()

        def read() -> None:
            try:
                for e in c.executions():
                    events.put(e)
            except BaseException as err:  # noqa: BLE001 - handed to the main thread
                events.put(err)
        threading.Thread(target=read, daemon=True, name="spotex-executions").start()
        deadline = time.monotonic() + seconds if seconds else None
        with _until_interrupted():
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
                click.echo(json.dumps(_plain(e)))
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
        from spotex.client import RpcError
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
    @click.argument("quantity", type=quantity)
    @click.argument("price", type=price)
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
    @click.option("--client-order-id", default="", help="your id for it (at most 64 chars)")
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
    @click.pass_context
    def order(ctx: click.Context, side: str, product_id: str, quantity: int, price: Decimal,
              order_type: str, tif: str, expire_at: dt.datetime | None, cluster: str | None,
              gang: int, post_only: bool, stp: str, client_order_id: str, hours: int,
              window: int, min_quantity: int, display_quantity: int, locality: str | None,
              prefer: bool, colocate_with: int) -> None:
        """Place an order: spotex order buy PRODUCT 8 2.10 --gang 8"""
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
                                    colocate_with=colocate_with)
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
    @click.pass_context
    def one_of(ctx: click.Context, alts: tuple[str, ...], gang: int, tif: str,
               client_order_id: str) -> None:
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
                parsed.append(dict(product_id=pid_, quantity=quantity.convert(qty, None, ctx),
                                   price=price.convert(px, None, ctx), hours=int(hours),
                                   window_hours=int(parts[4]) if len(parts) == 5 else 0,
                                   gang=gang, tif=tif))
            except (click.BadParameter, ValueError):
                raise click.BadParameter(f"{a!r} is not PRODUCT:QTY:PRICE:HOURS[:WINDOW]",
                                         param_hint="--alt") from None
        o = client(ctx).place_one_of(parsed, client_order_id=client_order_id)
        emit(ctx, o, lambda: orders_table([o]))

    @main.command()
    @click.argument("order_id", type=ORDER_ID)
    @click.option("--price", type=price, default=None, help="the new limit price")
    @click.option("--quantity", type=quantity, default=None, help="the new remaining quantity")
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
    @click.argument("order_id", type=ORDER_ID)
    @click.pass_context
    def get(ctx: click.Context, order_id: int) -> None:
        """Show one of your orders, with its fills."""
        o = client(ctx).get_order(order_id)

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

    # ---- seller ---------------------------------------------------------------------

    @main.group()
    def seller() -> None:
        """Register and withdraw capacity (asks are `spotex order sell ... --cluster`)."""

    @seller.command("register")
    @click.argument("cluster_id")
    @click.option("--sku", required=True)
    @click.option("--region", required=True)
    @click.option("--node", "nodes", type=NODE, multiple=True, required=True,
                  help="NODE:GPUS, once per node (n0:8), with its place if the site has "
                       "one: n0:8@pod1/rack3/nvl2 (block/rack/NVLink domain)")
    @click.option("--from-hour", type=HOUR, required=True, help="first hour, inclusive")
    @click.option("--to-hour", type=HOUR, required=True, help="last hour, exclusive")
    @click.pass_context
    def register_capacity(ctx: click.Context, cluster_id: str, sku: str, region: str,
                          nodes: tuple[NodeArg, ...], from_hour: int,
                          to_hour: int) -> None:
        """Register a cluster's nodes for a range of delivery hours."""
        cid = client(ctx).register_capacity(cluster_id, sku=sku, region=region, nodes=nodes,
                                            from_hour=from_hour, to_hour=to_hour)
        gpus = sum(n[1] for n in nodes)
        data = {"cluster_id": cid, "nodes": len(nodes), "gpus": gpus,
                "hours": to_hour - from_hour}
        emit(ctx, data, lambda: f"registered {cid}: {len(nodes)} nodes, {gpus} GPUs, "
                                f"{to_hour - from_hour} hours")

    @main.command()
    @click.option("--format", "fmt", type=click.Choice(["slurm", "k8s"]), default="slurm",
                  show_default=True)
    @click.option("--at", "at_hour", type=HOUR, default=None,
                  help="k8s: the nodes reserved at this hour (default: this hour)")
    @click.option("--cluster", default=None, help="only this cluster")
    @click.pass_context
    def export(ctx: click.Context, fmt: str, at_hour: int | None, cluster: str | None) -> None:
        """A seller's schedule for its scheduler: Slurm reservations (one scontrol command
        per buyer's run of hours), or Kubernetes Node manifests with the buyer as owner
        (labels and a NoSchedule taint) for the nodes reserved at one hour."""
        from spotex.tools import export as ex

        # the GPUs on this seller's clusters, with whoever holds them now (resales too)
        sold = [a for a in client(ctx).list_allocations()
                if a.as_provider and a.quantity > 0
                and (cluster is None or a.cluster_id == cluster)]
        runs = ex.reservations(sold)
        if ctx.obj.get("json"):
            click.echo(json.dumps([_plain(r) for r in runs]))
            return
        if fmt == "slurm":
            click.echo(ex.slurm(runs), nl=False)
            return
        hour = at_hour if at_hour is not None else int(time.time()) // 3600
        click.echo(ex.k8s(runs, hour), nl=False)

    @seller.command("range")
    @click.argument("product_id")
    @click.argument("quantity", type=quantity)
    @click.argument("price", type=price)
    @click.option("--cluster", required=True, help="the cluster the GPUs come from")
    @click.option("--hours", required=True, type=click.IntRange(1, 168),
                  help="one ask per hour for this many hours from PRODUCT's")
    @click.option("--client-order-id", default="", help="each ask gets it with #hour")
    @click.pass_context
    def ask_range(ctx: click.Context, product_id: str, quantity: int, price: Decimal,
                  cluster: str, hours: int, client_order_id: str) -> None:
        """Post one ask per hour over a range of hours (each placed or refused on its
        own); `spotex cancel-all --range ID` withdraws the range."""
        got = client(ctx).place_ask_range(product_id, price, quantity, hours=hours,
                                          cluster_id=cluster, client_order_id=client_order_id)
        emit_range(ctx, got)

    def emit_range(ctx: click.Context, got: list[Any]) -> None:
        """Orders placed together with one range id, and the refused, as one table."""
        from spotex.client import RpcError

        placed = [o for o in got if not isinstance(o, RpcError)]
        rows = [o if not isinstance(o, RpcError) else {"refused": o.reason,
                                                       "message": o.message} for o in got]

        def table() -> Any:
            t = orders_table(placed)
            refused = [o for o in got if isinstance(o, RpcError)]
            t.caption = (f"range {placed[0].range_id}" if placed else "nothing placed") + (
                f"; {len(refused)} refused: "
                + ", ".join(sorted({r.reason for r in refused})) if refused else "")
            return t
        emit(ctx, rows, table)

    @main.command()
    @click.argument("order_id", type=ORDER_ID)
    @click.argument("price", type=price)
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

    @seller.command("withdraw")
    @click.argument("cluster_id")
    @click.option("--from-hour", type=HOUR, required=True)
    @click.option("--to-hour", type=HOUR, required=True)
    @click.option("--node", "node_ids", multiple=True, help="only these nodes (default: all)")
    @click.pass_context
    def withdraw_capacity(ctx: click.Context, cluster_id: str, from_hour: int, to_hour: int,
                          node_ids: tuple[str, ...]) -> None:
        """Withdraw unsold capacity of a cluster for a range of hours."""
        n = client(ctx).withdraw_capacity(cluster_id, from_hour=from_hour, to_hour=to_hour,
                                          node_ids=node_ids)
        emit(ctx, {"cluster_id": cluster_id, "gpu_hours_withdrawn": n},
             lambda: f"withdrew {n} GPU-hours from {cluster_id}")

    # ---- operator -------------------------------------------------------------------

    @main.group()
    def operator() -> None:
        """Run the venue: products, accounts, halts, snapshots (needs the operator token)."""

    @operator.command("create-products")
    @click.option("--sku", "skus", multiple=True, required=True)
    @click.option("--region", "regions", multiple=True, required=True)
    @click.option("--from-hour", type=HOUR, required=True)
    @click.option("--to-hour", type=HOUR, required=True)
    @click.option("--tick", type=price, default=Decimal("0.01"), show_default=True)
    @click.option("--lot", type=click.IntRange(1, 10_000), default=1, show_default=True)
    @click.option("--gate-closure-minutes", type=click.IntRange(0, 7 * 24 * 60), default=60,
                  show_default=True, help="trading stops this long before delivery")
    @click.pass_context
    def create_products(ctx: click.Context, skus: tuple[str, ...], regions: tuple[str, ...],
                        from_hour: int, to_hour: int, tick: Decimal, lot: int,
                        gate_closure_minutes: int) -> None:
        """List products: every SKU x region x hour in [from, to)."""
        if tick <= 0:
            raise click.BadParameter("the tick must be above 0", param_hint="--tick")
        made = client(ctx).create_products(
            skus=skus, regions=regions, from_hour=from_hour, to_hour=to_hour, tick=tick,
            lot=lot, gate_closure_lead=dt.timedelta(minutes=gate_closure_minutes))
        before = [p for p in made if p.listed_before]

        def table() -> Table:
            t = products_table(made)
            t.caption = (f"{len(before)} of {len(made)} already listed, left as they were"
                         if before else f"{len(made)} listed")
            return t
        emit(ctx, made, table)

    def state_command(name: str, method: str, doc: str) -> None:
        @operator.command(name, help=doc)
        @click.argument("product_id")
        @click.pass_context
        def change(ctx: click.Context, product_id: str) -> None:
            p = getattr(client(ctx), method)(product_id)
            emit(ctx, p, lambda: products_table([p]))
    state_command("halt", "halt", "Halt trading in a product (resting orders stay).")
    state_command("resume", "resume", "Resume trading in a halted product.")
    state_command("close", "close_product", "Close a product for good (orders cancelled).")

    @operator.command("accounts")
    @click.pass_context
    def accounts(ctx: click.Context) -> None:
        """List the accounts."""
        al = client(ctx).list_accounts()
        emit(ctx, al, lambda: accounts_table(al))

    @operator.command("create-account")
    @click.argument("name")
    @click.option("--role", "roles", type=click.Choice(["buyer", "seller", "operator"]),
                  multiple=True, required=True)
    @click.pass_context
    def create_account(ctx: click.Context, name: str, roles: tuple[str, ...]) -> None:
        """Create an account; its token is shown once. A name is a label for people, not
        an identity: the account id and the token tell two accounts of one name apart."""
        c = client(ctx)
        a = c.create_account(name, roles)
        emit(ctx, a, lambda: f"account {a.account_id}: token {a.token}  (shown once)")
        twins = [x.account_id for x in c.list_accounts() if x.name == name]
        if len(twins) > 1:
            click.echo(f"note: accounts {', '.join(map(str, twins))} are all named {name!r}; "
                       "their ids tell them apart", err=True)

    @operator.command("disable")
    @click.argument("account_id", type=ACCOUNT_ID)
    @click.pass_context
    def disable(ctx: click.Context, account_id: int) -> None:
        """The kill switch: refuse the account's calls and cancel its open orders."""
        a, cancelled = client(ctx).disable_account(account_id)
        emit(ctx, {"account": a, "cancelled": cancelled},
             lambda: f"account {a.account_id} disabled; {len(cancelled)} open orders cancelled")

    @operator.command("enable")
    @click.argument("account_id", type=ACCOUNT_ID)
    @click.pass_context
    def enable(ctx: click.Context, account_id: int) -> None:
        """Let a disabled account trade again."""
        a = client(ctx).enable_account(account_id)
        emit(ctx, a, lambda: accounts_table([a]))

    @operator.command("rotate-token")
    @click.argument("account_id", type=ACCOUNT_ID)
    @click.pass_context
    def rotate_token(ctx: click.Context, account_id: int) -> None:
        """Give an account a new token (shown once); the old one stops working at once."""
        a = client(ctx).rotate_token(account_id)
        emit(ctx, a, lambda: f"account {a.account_id}: new token {a.token}  (shown once)")

    @operator.command("revoke-token")
    @click.argument("account_id", type=ACCOUNT_ID)
    @click.pass_context
    def revoke_token(ctx: click.Context, account_id: int) -> None:
        """Make an account's token stop working (rotate-token gives a new one)."""
        a = client(ctx).revoke_token(account_id)
        emit(ctx, a, lambda: accounts_table([a]))

    @operator.command("snapshot")
    @click.pass_context
    def snapshot(ctx: click.Context) -> None:
        """Take a snapshot now (recovery starts from the newest)."""
        seq, h = client(ctx).take_snapshot()
        emit(ctx, {"sequence": seq, "state_hash": h},
             lambda: f"snapshot at sequence {seq}, state hash {h}")

    @operator.command("state-hash")
    @click.pass_context
    def state_hash(ctx: click.Context) -> None:
        """The venue's command sequence and state hash (compare with a replay)."""
        seq, h = client(ctx).state_hash()
        emit(ctx, {"sequence": seq, "state_hash": h}, lambda: f"sequence {seq}, state hash {h}")

    # ---- profiles -------------------------------------------------------------------

    @main.command()
    @click.option("--profile", "name", default=None,
                  help="the profile to write (default: the one in use, or 'default')")
    @click.pass_context
    def login(ctx: click.Context, name: str | None) -> None:
        """Check --server and --token against the server and save them as a profile, so
        later commands need neither."""
        c = client(ctx)
        c.list_products()  # a wrong token or a server that is down fails here
        name = name or ctx.obj["profile"]
        path = save_profile(name, ctx.obj["server"], ctx.obj["token"])
        emit(ctx, {"profile": name, "server": ctx.obj["server"], "file": str(path)},
             lambda: f"saved profile {name!r} ({ctx.obj['server']}) in {path}")


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


class _NoLive:
    def __enter__(self) -> _NoLive:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, *a: Any, **k: Any) -> None:
        return None


def profiles_file() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "spotex" / "profiles.toml"


def load_profiles() -> dict[str, dict[str, str]]:
    import tomllib

    path = profiles_file()
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise click.ClickException(f"{path}: {err}") from None
    return {k: {a: str(b) for a, b in v.items()} for k, v in data.items() if isinstance(v, dict)}


def save_profile(name: str, server: str, token: str) -> Path:
    """Writes the profile (owner-only: it holds a token)."""
    path = profiles_file()
    profiles = load_profiles()
    profiles[name] = {"server": server, "token": token}
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"[{json.dumps(k)}]\nserver = {json.dumps(v['server'])}\n"
                   f"token = {json.dumps(v['token'])}\n\n" for k, v in profiles.items())
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)
    return path
