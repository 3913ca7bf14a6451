"""``spotex export``: a seller's schedule in the form its scheduler consumes.

A seller's allocations (one per trade and hour) become reservations: one per holder,
cluster and set of GPUs, over the consecutive hours it holds them (a 24-hour block is one
reservation, not 24, and so are 8 hours bought one by one or back from a reseller).
From those:

* Slurm: one ``scontrol create reservation`` command per reservation, for the nodes it
  touches, the buyer as its user, ``Flags=OVERLAP`` (two buyers may hold different GPUs
  of one node in the same hour) and the GPU indices in a comment line above it.
* Kubernetes: the nodes reserved at one hour, each as a Node manifest carrying the
  buyer as owner in labels (``spotex.io/owner``, ``spotex.io/order``), the GPU indices
  and the end in annotations, and a ``NoSchedule`` taint keyed to the owner, for
  ``kubectl apply`` (or a controller) to hand the node to the buyer's workloads.

Both are checked against their formats by the tests, which parse them back.
"""

from __future__ import annotations

import datetime as dt
import shlex
from collections.abc import Iterable
from dataclasses import dataclass

from spotex.client import Allocation


@dataclass(frozen=True)
class Reservation:
    owner: int  # the buyer's account
    order: int  # the buy order
    cluster: str
    gpus: tuple[tuple[str, tuple[int, ...]], ...]  # (node id, GPU indices), by node
    start_hour: int  # hours since the epoch, inclusive
    end_hour: int  # exclusive

    @property
    def name(self) -> str:
        return f"spotex-o{self.order}-{self.cluster}-h{self.start_hour}"

    @property
    def nodes(self) -> tuple[str, ...]:
        return tuple(n for n, _ in self.gpus)


def reservations(allocations: Iterable[Allocation]) -> list[Reservation]:
    """What a seller sold, as reservations: one per holder, cluster and set of GPUs over
    consecutive hours, whatever orders bought them (a block, a basket of hours, hours
    bought from a reseller): an order's GPUs in one hour continue the holder's run of
    the same GPUs that ended the hour before. A reservation takes the name and order
    label of its first hour's order. In start order, then by name."""
    held: dict[tuple[int, int, int, str], dict[str, set[int]]] = {}
    for a in allocations:
        if a.as_buyer:
            continue
        nodes = held.setdefault((a.hour, a.buy_order_id, a.buyer_account, a.cluster_id), {})
        for node, gpus in a.slots:
            nodes.setdefault(node, set()).update(gpus)
    runs: list[Reservation] = []
    open_runs: dict[tuple[int, str, tuple[tuple[str, tuple[int, ...]], ...]], int] = {}
    for (hour, order, owner, cluster), nodes in sorted(held.items()):
        taken = tuple((n, tuple(sorted(g))) for n, g in sorted(nodes.items()))
        at = open_runs.get((owner, cluster, taken))
        if at is not None and runs[at].end_hour == hour:
            r = runs[at]
            runs[at] = Reservation(owner, r.order, cluster, taken, r.start_hour, hour + 1)
        else:
            open_runs[owner, cluster, taken] = len(runs)
            runs.append(Reservation(owner, order, cluster, taken, hour, hour + 1))
    return sorted(runs, key=lambda r: (r.start_hour, r.name))


def _time(hour: int) -> str:
    return dt.datetime.fromtimestamp(hour * 3600, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S")


def user(owner: int) -> str:
    """The buyer as a Slurm user and a Kubernetes label value."""
    return f"spotex-{owner}"


def slurm(runs: Iterable[Reservation]) -> str:
    """``scontrol create reservation`` commands, one a reservation, times in UTC."""
    lines = ["# spotex reservations (UTC); GPU indices per node in the comment above each"]
    for r in runs:
        lines.append("# GPUs: " + " ".join(f"{n}[{','.join(map(str, g))}]"
                                           for n, g in r.gpus))
        fields = {
            "ReservationName": r.name,
            "StartTime": _time(r.start_hour),
            "EndTime": _time(r.end_hour),
            "Nodes": ",".join(r.nodes),
            "Users": user(r.owner),
            "Flags": "OVERLAP",
        }
        lines.append("scontrol create reservation "
                     + " ".join(f"{k}={shlex.quote(v)}" for k, v in fields.items()))
    return "\n".join(lines) + "\n"


def k8s(runs: Iterable[Reservation], hour: int) -> str:
    """Node manifests for the nodes reserved at `hour`, one document a node and owner."""
    from spotex.extras import require

    yaml = require("yaml", "export", "spotex export --format k8s")
    docs = []
    for r in runs:
        if not r.start_hour <= hour < r.end_hour:
            continue
        for node, gpus in r.gpus:
            docs.append({
                "apiVersion": "v1",
                "kind": "Node",
                "metadata": {
                    "name": node,
                    "labels": {
                        "spotex.io/owner": user(r.owner),
                        "spotex.io/order": str(r.order),
                    },
                    "annotations": {
                        "spotex.io/cluster": r.cluster,
                        "spotex.io/gpus": ",".join(map(str, gpus)),
                        "spotex.io/until": _time(r.end_hour) + "Z",
                    },
                },
                "spec": {
                    "taints": [{"key": "spotex.io/owner", "value": user(r.owner),
                                "effect": "NoSchedule"}],
                },
            })
    return str(yaml.safe_dump_all(docs, sort_keys=False))
