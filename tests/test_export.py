"""spotex export: a seller's schedule as Slurm reservations and Kubernetes Node manifests,
each parsed back against the format it claims, on a hand-made schedule and end to end."""

from __future__ import annotations

import datetime as dt
import re
import shlex
import time
from decimal import Decimal

import yaml
from click.testing import CliRunner
from conftest import OPERATOR_TOKEN, Running

from spotex.cli import main
from spotex.client import Allocation, Client
from spotex.tools import export

H = 494_000  # an hour since the epoch
LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
LABEL_KEY = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                       r"[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")


def sold(trade: int, order: int, buyer: int, hour: int,
         slots: tuple[tuple[str, tuple[int, ...]], ...]) -> Allocation:
    return Allocation(trade, f"H100-SXM/us-east/{hour}", "c:1", hour, Decimal("2"),
                      sum(len(g) for _, g in slots), slots, False, (), order, buyer)


SCHEDULE = [
    # order 7 (account 3): GPUs 0-3 of n0 for three hours, the middle one in two trades
    sold(1, 7, 3, H, (("n0", (0, 1, 2, 3)),)),
    sold(2, 7, 3, H + 1, (("n0", (0, 1)),)),
    sold(3, 7, 3, H + 1, (("n0", (2, 3)),)),
    sold(4, 7, 3, H + 2, (("n0", (0, 1, 2, 3)),)),
    # order 8 (account 4): the rest of n0 and all of n1, one hour
    sold(5, 8, 4, H + 1, (("n0", (4, 5, 6, 7)), ("n1", tuple(range(8))))),
    # order 9 (account 4): hours H and H+2, not consecutive
    sold(6, 9, 4, H, (("n1", (0, 1)),)),
    sold(7, 9, 4, H + 2, (("n1", (0, 1)),)),
]


def test_reservations_merge_consecutive_hours_of_one_order_and_gpus() -> None:
    got = [(r.order, r.owner, r.start_hour, r.end_hour, r.gpus)
           for r in export.reservations(SCHEDULE)]
    assert got == [
        (7, 3, H, H + 3, (("n0", (0, 1, 2, 3)),)),
        (9, 4, H, H + 1, (("n1", (0, 1)),)),
        (8, 4, H + 1, H + 2, (("n0", (4, 5, 6, 7)), ("n1", tuple(range(8))))),
        (9, 4, H + 2, H + 3, (("n1", (0, 1)),)),
    ]


def test_hours_of_the_same_gpus_bought_by_several_orders_are_one_reservation() -> None:
    # a basket of three one-hour orders (or hours bought from a reseller) on one node,
    # then an hour of other GPUs, then the node again after a gap
    node = (("n0", tuple(range(8))),)
    bought = [sold(1, 20, 5, H, node), sold(2, 21, 5, H + 1, node), sold(3, 22, 5, H + 2, node),
              sold(4, 23, 5, H + 3, (("n0", (0, 1)),)), sold(5, 24, 5, H + 5, node),
              # someone else's hour in between does not join the run
              sold(6, 30, 6, H + 4, node)]
    got = [(r.order, r.owner, r.start_hour, r.end_hour) for r in export.reservations(bought)]
    assert got == [(20, 5, H, H + 3), (23, 5, H + 3, H + 4), (30, 6, H + 4, H + 5),
                   (24, 5, H + 5, H + 6)]


def parse_slurm(text: str) -> list[dict[str, str]]:
    """Every command line as its key=value fields; checks what scontrol expects."""
    out = []
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        words = shlex.split(line)
        assert words[:3] == ["scontrol", "create", "reservation"], line
        fields = dict(w.split("=", 1) for w in words[3:])
        assert set(fields) == {"ReservationName", "StartTime", "EndTime", "Nodes", "Users",
                               "Flags"}, line
        start = dt.datetime.strptime(fields["StartTime"], "%Y-%m-%dT%H:%M:%S")
        end = dt.datetime.strptime(fields["EndTime"], "%Y-%m-%dT%H:%M:%S")
        assert end > start and start.minute == start.second == 0
        assert all(re.fullmatch(r"[A-Za-z0-9_.:-]+", n) for n in fields["Nodes"].split(","))
        assert re.fullmatch(r"[A-Za-z0-9_.-]+", fields["Users"])
        out.append(fields)
    return out


def test_slurm_reservations_parse_back() -> None:
    runs = export.reservations(SCHEDULE)
    fields = parse_slurm(export.slurm(runs))
    assert len(fields) == len(runs) == len({f["ReservationName"] for f in fields})
    first = fields[0]
    assert (first["StartTime"], first["EndTime"], first["Nodes"], first["Users"]) == (
        dt.datetime.fromtimestamp(H * 3600, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        dt.datetime.fromtimestamp((H + 3) * 3600, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S"),
        "n0", "spotex-3")
    assert fields[2]["Nodes"] == "n0,n1"


def test_kubernetes_nodes_parse_back_with_the_owner_of_each_hour() -> None:
    docs = list(yaml.safe_load_all(export.k8s(export.reservations(SCHEDULE), H + 1)))
    for d in docs:
        assert (d["apiVersion"], d["kind"]) == ("v1", "Node")
        labels = d["metadata"]["labels"]
        assert all(LABEL_KEY.match(k) and LABEL_VALUE.match(v) and len(v) <= 63
                   for k, v in labels.items()), labels
        assert all(isinstance(v, str) for v in d["metadata"]["annotations"].values())
        (taint,) = d["spec"]["taints"]
        assert taint["effect"] == "NoSchedule" and taint["value"] == labels["spotex.io/owner"]
    held = sorted((d["metadata"]["name"], d["metadata"]["labels"]["spotex.io/owner"],
                   d["metadata"]["annotations"]["spotex.io/gpus"]) for d in docs)
    assert held == [("n0", "spotex-3", "0,1,2,3"), ("n0", "spotex-4", "4,5,6,7"),
                    ("n1", "spotex-4", "0,1,2,3,4,5,6,7")]
    assert list(yaml.safe_load_all(export.k8s(export.reservations(SCHEDULE), H + 5))) == []


def test_a_seller_exports_what_it_sold(running: Running) -> None:
    op = Client(running.target, OPERATOR_TOKEN)
    h = int(time.time()) // 3600 + 160
    ids = [p.product_id for p in op.create_products(
        skus=["H200"], regions=["eu-west"], from_hour=h, to_hour=h + 3, tick="0.01")]
    s_token = op.create_account("export-seller", ["seller"]).token
    seller = Client(running.target, s_token)
    seller.register_capacity("ams-1", sku="H200", region="eu-west", nodes=[("n0", 8)],
                             from_hour=h, to_hour=h + 3)
    for pid in ids:
        seller.place_order(pid, "sell", "3.00", 8, cluster_id="ams-1")
    buyer = op.create_account("export-desk", ["buyer"])
    o = Client(running.target, buyer.token).place_order(ids[0], "buy", "3.00", 8, hours=3,
                                                       gang=8, tif="fok")
    assert o.state == "filled"
    base = ["--server", running.target, "--token", s_token, "export"]
    r = CliRunner().invoke(main, base)
    assert r.exit_code == 0, r.output
    (f,) = parse_slurm(r.output)
    assert (f["Nodes"], f["Users"]) == ("n0", f"spotex-{buyer.account_id}")
    assert f["EndTime"] == dt.datetime.fromtimestamp((h + 3) * 3600, dt.UTC).strftime(
        "%Y-%m-%dT%H:%M:%S")
    r = CliRunner().invoke(main, [*base, "--format", "k8s", "--at", str(h + 1)])
    (doc,) = yaml.safe_load_all(r.output)
    assert doc["metadata"]["name"] == "n0"
    assert doc["metadata"]["labels"]["spotex.io/order"] == str(o.order_id)
