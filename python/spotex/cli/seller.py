"""A seller's commands: ``seller register``, ``seller withdraw``, ``seller range``, and
``export`` (what it sold, for Slurm or Kubernetes)."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import click

from spotex.cli.output import emit, emit_range, plain
from spotex.cli.params import HOUR, NODE, PRICE, QUANTITY
from spotex.cli.root import client, main
from spotex.client import (
    NodeArg,
)


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
        click.echo(json.dumps([plain(r) for r in runs]))
        return
    if fmt == "slurm":
        click.echo(ex.slurm(runs), nl=False)
        return
    hour = at_hour if at_hour is not None else int(time.time()) // 3600
    click.echo(ex.k8s(runs, hour), nl=False)


@seller.command("range")
@click.argument("product_id")
@click.argument("quantity", type=QUANTITY)
@click.argument("price", type=PRICE)
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
