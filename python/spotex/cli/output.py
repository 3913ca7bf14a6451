"""How the commands print: a table for a person (ids whole, one row per line when
piped, columns dropped first on a narrow terminal) or the same data as JSON with
``--json``; the tables of orders, products, accounts, allocations and books."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
from collections.abc import Callable, Iterable, Iterator
from decimal import Decimal
from typing import Any

import click
from rich import box
from rich.table import Table

from spotex.client import (
    AccountInfo,
    Allocation,
    MarketEvent,
    Order,
    Product,
    RpcError,
)


def plain(x: Any) -> Any:
    """SDK values as JSON: dataclasses as objects, Decimal as a string (exact), times in
    ISO 8601."""
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return {f.name: plain(getattr(x, f.name)) for f in dataclasses.fields(x)}
    if isinstance(x, Decimal):
        return str(x)
    if isinstance(x, dt.datetime):
        return x.isoformat().replace("+00:00", "Z")
    if isinstance(x, list | tuple):
        return [plain(v) for v in x]
    if isinstance(x, dict):
        return {str(k): plain(v) for k, v in x.items()}
    return x


# columns a person reads an identifier from: never wrapped or cut
_IDS = frozenset({"id", "product", "trade", "account", "cluster", "resold from"})


class _Table(Table):
    """A table whose identifiers stay whole on one line (``grep`` finds them, a reader
    copies them), and whose other cells wrap between words (a header or a word is never
    split). On a terminal too narrow for all of it, the columns named in ``drop`` go
    first, in that order."""

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
            else:  # other cells wrap between words, never inside one ("fille" / "d")
                c.min_width = max(len(w) for x in [c.header, *c.cells] for w in
                                  [*str(x).split(), ""])
        optional = [*self.drop, *(str(c.header) for c in reversed(self.columns)
                                  if not c.no_wrap and str(c.header) not in self.drop)]
        for name in ["", *optional]:
            self.columns = [c for c in self.columns if str(c.header) != name]
            for i, c in enumerate(self.columns):
                c._index = i  # rich pads a column by its place: the last has no right pad
            need = self.__rich_measure__(console, console.options.update_width(1 << 16)).maximum
            if need <= console.width:
                break
        return max(int(console.width), need)


def _table(*headers: str, drop: tuple[str, ...] = (), **kw: Any) -> _Table:
    return _Table(*headers, drop=drop, **kw)


def emit(ctx: click.Context, data: Any, table: Callable[[], Any]) -> None:
    """``data`` as JSON with ``--json``, else ``table()`` for a person."""
    if ctx.obj.get("json"):
        click.echo(json.dumps(plain(data)))
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


@contextlib.contextmanager
def until_interrupted() -> Iterator[None]:
    """Ctrl-C is how a person ends a live view: it ends the command, exit 0, no
    ``Aborted!``."""
    try:
        yield
    except KeyboardInterrupt:
        pass


class NoLive:
    def __enter__(self) -> NoLive:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def update(self, *a: Any, **k: Any) -> None:
        return None


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


def auctions_table(auctions: Iterable[Any]) -> Table:
    """Auction results: one row each, its prices summed up."""
    t = _table("auction", "window (UTC)", "state", "filled", "dropped", "GPU-hours",
               "welfare $", "gap", "solve s", drop=("gap", "solve s", "dropped"))
    for a in auctions:
        span = (f"{dt.datetime.fromtimestamp(a.from_hour * 3600, dt.UTC):%Y-%m-%dT%H}"
                f"+{a.to_hour - a.from_hour}h")
        t.add_row(str(a.auction_id), span, a.state, str(len(a.filled_orders)),
                  str(len(a.dropped_orders)), str(sum(p.quantity for p in a.prices)),
                  f"{a.welfare:.2f}", f"{a.gap:.4f}", f"{a.solve_seconds:.2f}")
    return t


def prices_table(prices: Iterable[Any]) -> Table:
    """Clearing prices and GPUs per product."""
    t = _table("product", "clearing $", "GPUs")
    for p in prices:
        t.add_row(p.product_id, f"{p.price:.2f}", str(p.quantity))
    return t


def auction_prices_table(a: Any) -> Table:
    """An auction's clearing price and volume per product."""
    t = prices_table(a.prices)
    t.caption = (f"auction {a.auction_id} {a.state}: {len(a.filled_orders)} orders "
                 f"filled, {len(a.dropped_orders)} dropped, "
                 f"{len(a.paradoxically_rejected)} paradoxically rejected; welfare "
                 f"${a.welfare:.2f}, gap {a.gap:.4f}, {a.solve_seconds:.2f} s")
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


def emit_range(ctx: click.Context, got: list[Any]) -> None:
    """Orders placed together with one range id, and the refused, as one table."""

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
