"""What operators see: Prometheus metrics scraped during a load run agree with the load's
own counts, and the log is JSON lines with an access line per call and no token."""

from __future__ import annotations

import json
import re
import time
import urllib.request
from pathlib import Path

import pytest
from conftest import OPERATOR_TOKEN
from prometheus_client.parser import text_string_to_metric_families

from spotex.client import Client, RpcError
from spotex.tools.testing import ServerProcess

NOW_HOUR = int(time.time()) // 3600


def _scrape(url: str) -> dict[str, list[tuple[dict[str, str], float]]]:
    text = urllib.request.urlopen(url, timeout=10).read().decode()
    out: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append((sample.labels, sample.value))
    return out


def _total(samples: dict[str, list[tuple[dict[str, str], float]]], name: str,
           **labels: str) -> float:
    return sum(v for lab, v in samples.get(name, [])
               if all(lab.get(k) == x for k, x in labels.items()))


def test_metrics_agree_with_the_load_and_the_log_is_json(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, OPERATOR_TOKEN, "--metrics-listen", "127.0.0.1:0",
                           "--log-format", "json", "--orders-per-second", "1e6",
                           "--order-burst", "1000000")
    try:
        port = int(re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics",
                             server.text()).group(1))  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}/metrics"
        op = Client(server.target, OPERATOR_TOKEN)
        pid = op.create_products(skus=["H100-SXM"], regions=["us-east"],
                                 from_hour=NOW_HOUR + 3, to_hour=NOW_HOUR + 4)[0].product_id
        acct = op.create_account("desk", ["buyer"])
        buyer = Client(server.target, acct.token)
        # the load: unary orders, some refused (off tick), and a bulk stream
        placed = refused = 0
        for i in range(40):
            try:
                buyer.place_order(pid, "buy", "1.005" if i % 4 == 0 else "1.00", 1,
                                  tif="ioc")
                placed += 1
            except RpcError as err:
                assert err.reason == "PRICE_OFF_TICK"
                refused += 1
        bulk = [dict(product_id=pid, side="buy", price="0.50", quantity=1, tif="gtc")
                for _ in range(3_000)]
        results = list(buyer.submit_orders(bulk, per_message=500))
        assert all(not isinstance(r, RpcError) for r in results)
        resting = buyer.list_orders(open_only=True)
        m = _scrape(url)

        assert _total(m, "spotex_orders_total", command="place", type="limit", tif="ioc",
                      outcome="accepted") == placed == 30
        assert _total(m, "spotex_orders_total", command="place",
                      outcome="PRICE_OFF_TICK") == refused == 10
        assert _total(m, "spotex_orders_total", command="place", tif="gtc",
                      outcome="accepted") == len(bulk)
        assert _total(m, "spotex_resting_orders") == len(resting) == len(bulk)
        assert _total(m, "spotex_book_orders", product=pid, side="buy") == len(bulk)
        assert _total(m, "spotex_book_gpus", product=pid, side="buy") == len(bulk)
        assert _total(m, "spotex_book_gpus", product=pid, side="sell") == 0
        calls = _total(m, "spotex_rpc_duration_seconds_count", method="Market/PlaceOrder")
        assert calls == 40
        assert _total(m, "spotex_rpc_duration_seconds_count", method="Market/PlaceOrder",
                      code="INVALID_ARGUMENT") == 10
        # every writer round is counted, and the journal synced once per round at most
        rounds = _total(m, "spotex_writer_round_jobs_count")
        assert rounds >= 1 and _total(m, "spotex_journal_sync_seconds_count") <= rounds
        assert _total(m, "spotex_journal_available") == 1
        assert _total(m, "spotex_sequence") > len(bulk)
        with pytest.raises(RpcError):
            Client(server.target, "not-a-token").list_orders()
        op.halt(pid)
        op.resume(pid)
    finally:
        assert server.stop() == 0
    lines = [json.loads(x) for x in server.text().splitlines() if x.startswith("{")]
    assert lines and len(lines) == len([x for x in server.text().splitlines() if x.strip()])
    access = [x for x in lines if x["logger"] == "spotex.access"]
    places = [x for x in access if x["method"] == "Market/PlaceOrder"]
    assert len(places) == 40
    assert {x["account"] for x in places} == {acct.account_id}
    assert sorted(x["code"] for x in places).count("INVALID_ARGUMENT") == 10
    denied = [x for x in access if x["code"] == "UNAUTHENTICATED"]
    assert denied and denied[0]["account"] is None, "a failed login is logged"
    assert any(x["msg"].startswith("stopped at sequence") for x in lines)
    assert [x["action"] for x in lines if x.get("product") == pid] == ["halt", "resume"]
    assert any(x["msg"].startswith("listed 1 product: ") for x in lines)
    assert acct.token not in server.text() and OPERATOR_TOKEN not in server.text()


def test_trades_are_counted_per_product_family(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, OPERATOR_TOKEN, "--metrics-listen", "127.0.0.1:0")
    try:
        port = int(re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics",
                             server.text()).group(1))  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}/metrics"
        op = Client(server.target, OPERATOR_TOKEN)
        buyer = Client(server.target, op.create_account("desk", ["buyer"]).token)
        # 3 GPUs for an hour, then a 2-hour block of 4
        hours = op.create_products(skus=["B200"], regions=["eu-west"], from_hour=NOW_HOUR + 3,
                                   to_hour=NOW_HOUR + 5)
        seller = Client(server.target, op.create_account("dc", ["seller"]).token)
        seller.register_capacity("c", sku="B200", region="eu-west", nodes=[("n0", 8)],
                                 from_hour=NOW_HOUR + 3, to_hour=NOW_HOUR + 5)
        seller.place_order(hours[0].product_id, "sell", "5.00", 8, cluster_id="c")
        seller.place_order(hours[1].product_id, "sell", "6.00", 8, cluster_id="c")
        assert _total(_scrape(url), "spotex_trades_total") == 0
        buyer.place_order(hours[0].product_id, "buy", "5.00", 3, tif="ioc")
        buyer.place_order(hours[0].product_id, "buy", "6.00", 4, hours=2, tif="fok")
        m = _scrape(url)
        family = {"sku": "B200", "region": "eu-west"}
        assert _total(m, "spotex_trades_total", **family) == 3  # one, then one an hour
        assert _total(m, "spotex_traded_gpu_hours_total", **family) == 3 + 4 * 2
        assert _total(m, "spotex_traded_notional_dollars_total", **family) == pytest.approx(
            3 * 5.00 + 4 * 5.00 + 4 * 6.00)
    finally:
        assert server.stop() == 0


def test_the_money_is_in_the_metrics(tmp_path: Path) -> None:
    server = ServerProcess(tmp_path, OPERATOR_TOKEN, "--metrics-listen", "127.0.0.1:0",
                           "--default-credit-limit", "0", "--taker-fee-bps", "20")
    try:
        port = int(re.search(r"metrics on http://127\.0\.0\.1:(\d+)/metrics",
                             server.text()).group(1))  # type: ignore[union-attr]
        url = f"http://127.0.0.1:{port}/metrics"
        op = Client(server.target, OPERATOR_TOKEN)
        made = op.create_account("desk", ["buyer"])
        buyer = Client(server.target, made.token)
        hours = op.create_products(skus=["B200"], regions=["eu-west"], from_hour=NOW_HOUR + 3,
                                   to_hour=NOW_HOUR + 4)
        seller = Client(server.target, op.create_account("dc", ["seller"]).token)
        seller.register_capacity("c", sku="B200", region="eu-west", nodes=[("n0", 8)],
                                 from_hour=NOW_HOUR + 3, to_hour=NOW_HOUR + 4)
        seller.place_order(hours[0].product_id, "sell", "5.00", 2, cluster_id="c")
        op.deposit(made.account_id, "100")
        op.withdraw(made.account_id, "10")
        buyer.place_order(hours[0].product_id, "buy", "5.00", 2)  # $10 and 20 bps
        buyer.place_order(hours[0].product_id, "buy", "4.00", 1)  # rests: $4.008 held
        m = _scrape(url)
        assert _total(m, "spotex_money_deposited_dollars_total") == 100
        assert _total(m, "spotex_money_withdrawn_dollars_total") == 10
        assert _total(m, "spotex_money_balances_dollars") == pytest.approx(90)
        assert _total(m, "spotex_money_fees_dollars") == pytest.approx(0.02)
        assert _total(m, "spotex_money_held_dollars") == pytest.approx(4.008)
        assert _total(m, "spotex_money_accounts") == 2  # the buyer and the seller
        assert _total(m, "spotex_money_moves_pending") == 0
    finally:
        assert server.stop() == 0
