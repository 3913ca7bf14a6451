"""The operator's commands (``spotex operator ...``): products, accounts and their
tokens, halts, snapshots, the state hash."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import click
from rich.table import Table

from spotex.cli.output import accounts_table, auction_prices_table, emit, products_table
from spotex.cli.params import ACCOUNT_ID, HOUR, PRICE
from spotex.cli.root import client, main


@main.group()
def operator() -> None:
    """Run the venue: products, accounts, halts, snapshots (needs the operator token)."""


@operator.command("create-products")
@click.option("--sku", "skus", multiple=True, required=True)
@click.option("--region", "regions", multiple=True, required=True)
@click.option("--from-hour", type=HOUR, required=True)
@click.option("--to-hour", type=HOUR, required=True)
@click.option("--tick", type=PRICE, default=Decimal("0.01"), show_default=True)
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


@operator.group("auction")
def auction_group() -> None:
    """Block auctions: run one now over a delivery window."""


@auction_group.command("run")
@click.option("--from-hour", type=HOUR, required=True,
              help="the window's first delivery hour")
@click.option("--to-hour", type=HOUR, required=True, help="the hour after its last")
@click.option("--time-limit", type=click.FloatRange(0.1, 3600), default=None,
              help="the optimiser's limit in seconds (default: the venue's)")
@click.pass_context
def run_auction(ctx: click.Context, from_hour: int, to_hour: int,
                time_limit: float | None) -> None:
    """Clear every auction order whose first hour is in [from, to) now."""
    if to_hour <= from_hour:
        raise click.BadParameter("the window ends after it begins", param_hint="--to-hour")
    a = client(ctx).run_auction(from_hour, to_hour, time_limit=time_limit)
    emit(ctx, a, lambda: auction_prices_table(a))


@operator.command("state-hash")
@click.pass_context
def state_hash(ctx: click.Context) -> None:
    """The venue's command sequence and state hash (compare with a replay)."""
    seq, h = client(ctx).state_hash()
    emit(ctx, {"sequence": seq, "state_hash": h}, lambda: f"sequence {seq}, state hash {h}")
