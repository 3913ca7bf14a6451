"""Money on the command line: ``spotex balance``, ``spotex statement`` (an account's
transfers and its balances over a period), and the operator's ``deposit``, ``withdraw``,
``credit-limit``, ``fees`` and ``settlement`` (what every account paid, received and paid
in fees over a period, summing to zero with the venue's fee account)."""

from __future__ import annotations

import csv
import datetime as dt
import sys
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

import click
from rich.table import Table

from spotex.cli.operator import operator
from spotex.cli.output import emit
from spotex.cli.params import ACCOUNT_ID, AMOUNT, WHEN
from spotex.cli.root import client, main
from spotex.client import Balance, Transfer
from spotex.money import format_price

FEE_ACCOUNT = 0


def _dollars(d: Decimal | None) -> str:
    return "unlimited" if d is None else "$" + format_price(int(d * 1_000_000))


# a sharded venue's moves between its shards: the account's money stays its own
MOVES = ("move_out", "move_in")


def balance_table(b: Balance) -> Table:
    moving = ("in transit",) if b.in_transit else ()
    t = Table("account", "current", *moving, "holds", "available", "credit limit",
              "maker fee", "taker fee")
    t.add_row("venue fees" if b.account_id == FEE_ACCOUNT else str(b.account_id),
              _dollars(b.current), *(_dollars(b.in_transit) for _ in moving),
              _dollars(b.holds), _dollars(b.available), _dollars(b.credit_limit),
              f"{b.maker_fee_bps} bps", f"{b.taker_fee_bps} bps")
    return t


def effect(t: Transfer, account: int) -> Decimal:
    """What a transfer did to ``account``'s current balance."""
    return ((t.amount if t.credit_account_id == account else Decimal(0))
            - (t.amount if t.debit_account_id == account else Decimal(0)))


@main.command()
@click.option("--account", "account_id", type=ACCOUNT_ID, default=None,
              help="another account's (operator)")
@click.pass_context
def balance(ctx: click.Context, account_id: int | None) -> None:
    """Your balance: current (credits less debits), holds (reserved by your live buy
    orders), available (current - holds + credit limit), and your fees."""
    b = client(ctx).balance(account_id or 0)
    emit(ctx, b, lambda: balance_table(b))


@main.command()
@click.option("--from", "since", type=WHEN, required=True, help="ISO time, UTC unless said")
@click.option("--to", "until", type=WHEN, default=None, help="ISO time (default: now)")
@click.option("--account", "account_id", type=ACCOUNT_ID, default=None,
              help="another account's (operator)")
@click.option("--csv", "as_csv", is_flag=True, help="the transfers as CSV on stdout")
@click.pass_context
def statement(ctx: click.Context, since: dt.datetime, until: dt.datetime | None,
              account_id: int | None, as_csv: bool) -> None:
    """Your transfers in [--from, --to), with the balance at both ends (in a sharded
    venue, moves of your money between its shards are left out: they sum to nothing)."""
    c = client(ctx)
    until = until or dt.datetime.now(dt.UTC)
    if until <= since:
        raise click.BadParameter("--to must be after --from", param_hint="--to")
    b = c.balance(account_id or 0)
    who = b.account_id
    # every transfer from --from on: the ones after --to lead back from today's balance
    every = [t for t in c.transfers(account_id or 0, since=since) if t.kind not in MOVES]
    inside = [t for t in every if t.time < until]
    closing = b.current + b.in_transit - sum((effect(t, who) for t in every
                                              if t.time >= until), Decimal(0))
    opening = closing - sum((effect(t, who) for t in inside), Decimal(0))
    if as_csv:
        _csv(inside, who)
        return
    data = {"account_id": who, "from": since, "to": until, "opening": opening,
            "closing": closing, "transfers": inside}

    def table() -> Table:
        t = transfers_table(inside, who)
        t.title = (f"statement of account {who}, {since:%Y-%m-%d %H:%M} to "
                   f"{until:%Y-%m-%d %H:%M} UTC")
        t.caption = f"opening {_dollars(opening)}, closing {_dollars(closing)}"
        return t
    emit(ctx, data, table)


def transfers_table(transfers: Iterable[Transfer], account: int) -> Table:
    t = Table("id", "time (UTC)", "kind", "amount", "effect", "order", "trade", "reference")
    for x in transfers:
        t.add_row(str(x.transfer_id), f"{x.time:%Y-%m-%d %H:%M:%S}", x.kind,
                  _dollars(x.amount), _dollars(effect(x, account)),
                  str(x.order_id or ""), str(x.trade_id or ""), x.reference)
    return t


def _csv(transfers: Iterable[Transfer], account: int) -> None:
    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(["transfer_id", "time", "kind", "debit_account", "credit_account", "amount",
                "effect", "order_id", "trade_id", "reference"])
    for x in transfers:
        w.writerow([x.transfer_id, x.time.isoformat(), x.kind, x.debit_account_id,
                    x.credit_account_id, format_price(int(x.amount * 1_000_000)),
                    format_price(int(effect(x, account) * 1_000_000)), x.order_id,
                    x.trade_id, x.reference])


def _moved(ctx: click.Context, answer: tuple[Balance, Transfer | None]) -> None:
    b, t = answer
    emit(ctx, {"balance": b, "transfer": t}, lambda: balance_table(b))


@operator.command()
@click.argument("account_id", type=ACCOUNT_ID)
@click.argument("amount", type=AMOUNT)
@click.option("--reference", default="", help="e.g. the wire's id (kept on the transfer)")
@click.pass_context
def deposit(ctx: click.Context, account_id: int, amount: Decimal, reference: str) -> None:
    """Money into an account, in dollars."""
    _moved(ctx, client(ctx).deposit(account_id, amount, reference))


@operator.command()
@click.argument("account_id", type=ACCOUNT_ID)
@click.argument("amount", type=AMOUNT)
@click.option("--reference", default="")
@click.pass_context
def withdraw(ctx: click.Context, account_id: int, amount: Decimal, reference: str) -> None:
    """Money out of an account (at most its current balance less its holds)."""
    _moved(ctx, client(ctx).withdraw(account_id, amount, reference))


@operator.command("credit-limit")
@click.argument("account_id", type=ACCOUNT_ID)
@click.argument("amount", type=AMOUNT)
@click.pass_context
def credit_limit(ctx: click.Context, account_id: int, amount: Decimal) -> None:
    """How far below zero an account's buys may take it (its own, over the venue's
    --default-credit-limit)."""
    _moved(ctx, client(ctx).set_credit_limit(account_id, amount))


@operator.command()
@click.argument("account_id", type=click.IntRange(0, (1 << 63) - 1), default=0)
@click.option("--maker", "maker_bps", type=click.IntRange(0, 10_000), default=0,
              show_default=True, help="basis points the resting side pays")
@click.option("--taker", "taker_bps", type=click.IntRange(0, 10_000), default=0,
              show_default=True, help="basis points the arriving side pays")
@click.option("--clear", is_flag=True, help="the account pays the venue's fees again")
@click.pass_context
def fees(ctx: click.Context, account_id: int, maker_bps: int, taker_bps: int,
         clear: bool) -> None:
    """The venue's fees (ACCOUNT_ID 0, the default) or one account's own."""
    if clear and account_id == 0:
        raise click.BadParameter("--clear is for an account's own fees", param_hint="--clear")
    _moved(ctx, client(ctx).set_fees(account_id, maker_bps, taker_bps, clear=clear))


@operator.command()
@click.option("--from", "since", type=WHEN, required=True, help="ISO time, UTC unless said")
@click.option("--to", "until", type=WHEN, default=None, help="ISO time (default: now)")
@click.option("--csv", "as_csv", is_flag=True, help="CSV on stdout")
@click.pass_context
def settlement(ctx: click.Context, since: dt.datetime, until: dt.datetime | None,
               as_csv: bool) -> None:
    """Per account over [--from, --to): what it paid for GPUs, received for them, paid in
    fees, and the net; with the venue's fee account the nets sum to zero."""
    c = client(ctx)
    until = until or dt.datetime.now(dt.UTC)
    rows: list[dict[str, Any]] = []
    for a in [FEE_ACCOUNT, *(x.account_id for x in c.list_accounts() if "operator" not in x.roles)]:
        ts = c.transfers(a, since=since, until=until)
        paid = sum((t.amount for t in ts if t.kind == "trade" and t.debit_account_id == a),
                   Decimal(0))
        got = sum((t.amount for t in ts if t.kind == "trade" and t.credit_account_id == a),
                  Decimal(0))
        fee = sum((t.amount for t in ts if t.kind == "fee" and t.debit_account_id == a),
                  Decimal(0))
        taken = sum((t.amount for t in ts if t.kind == "fee" and t.credit_account_id == a),
                    Decimal(0))
        if a != FEE_ACCOUNT and not (paid or got or fee):
            continue
        rows.append({"account_id": a, "paid": paid, "received": got, "fees_paid": fee,
                     "fees_received": taken, "net": got + taken - paid - fee})
    if as_csv:
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(["account_id", "paid", "received", "fees_paid", "fees_received", "net"])
        for r in rows:
            w.writerow([r["account_id"], *(format_price(int(r[k] * 1_000_000))
                                           for k in ("paid", "received", "fees_paid",
                                                     "fees_received", "net"))])
        return

    def table() -> Table:
        t = Table("account", "paid", "received", "fees paid", "fees received", "net")
        for r in rows:
            t.add_row("venue fees" if r["account_id"] == FEE_ACCOUNT else str(r["account_id"]),
                      *(_dollars(r[k]) for k in ("paid", "received", "fees_paid",
                                                 "fees_received", "net")))
        total = sum((r["net"] for r in rows), Decimal(0))
        t.caption = f"nets sum to {_dollars(total)}"
        return t
    emit(ctx, rows, table)
