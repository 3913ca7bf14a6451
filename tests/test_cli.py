"""The command line on everyday mistakes: a wrong token, a server that is down, a price or
a quantity that is not one. Each gives one line saying what was wrong and a non-zero
exit, never a traceback; a good order still goes through."""

from __future__ import annotations

import datetime as dt
import json
import socket
import time
from pathlib import Path
from typing import Any

import click
import pytest
from click.testing import CliRunner, Result
from conftest import OPERATOR_TOKEN, Running

from spotex.cli import main
from spotex.client import Client


@pytest.fixture(scope="module")
def trader(running: Running) -> dict[str, Any]:
    op = Client(running.target, OPERATOR_TOKEN)
    h = int(time.time()) // 3600 + 5
    pid = op.create_products(skus=["B300"], regions=["us-west"], from_hour=h,
                             to_hour=h + 1, tick="0.01")[0].product_id
    return {"target": running.target, "pid": pid,
            "token": op.create_account("cli-buyer", ["buyer"]).token}


def spotex(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def one_line_error(r: Result, code: int) -> str:
    assert r.exit_code == code, r.output
    assert "Traceback" not in r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), r.exception
    errors = [line for line in r.output.splitlines() if line.startswith("Error")]
    assert len(errors) == 1, r.output
    return errors[0]


def test_a_wrong_token_and_a_server_that_is_down(trader: dict[str, Any]) -> None:
    line = one_line_error(spotex("--server", trader["target"], "--token", "wrong",
                                 "products"), 1)
    assert line.startswith("Error: UNAUTHENTICATED") and line.count("UNAUTHENTICATED") == 1
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]  # nobody listens once it is closed
    line = one_line_error(spotex("--server", f"127.0.0.1:{free}", "--token", "t",
                                 "products"), 1)
    assert "UNAVAILABLE" in line
    # gRPC's words, then what to check, on the same line
    assert line.endswith(f"; is `spotex serve` running at 127.0.0.1:{free}? (--server, "
                         "SPOTEX_SERVER, or the profile)"), line
    err = json.loads(spotex("--server", f"127.0.0.1:{free}", "--token", "t", "products",
                            "--json").output)["error"]
    assert err["code"] == "UNAVAILABLE" and f"127.0.0.1:{free}" in err["hint"], err
    # a server that answered, however it refused, gets no hint
    assert "hint" not in json.loads(spotex("--server", trader["target"], "--token", "wrong",
                                           "--json", "products").output)["error"]


@pytest.mark.parametrize("price", ["abc", "$2.10", "2,10", "2.1234567", "NaN", "Infinity",
                                   "1e3", " "])
def test_a_price_that_is_not_one(trader: dict[str, Any], price: str) -> None:
    line = one_line_error(spotex("--server", trader["target"], "--token", trader["token"],
                                 "order", "buy", trader["pid"], "8", price), 2)
    assert "not a price" in line


@pytest.mark.parametrize("args", [["order", "buy", "P", "9999999999999999999999", "2.10"],
                                  ["order", "buy", "P", "0", "2.10"],
                                  ["order", "buy", "P", "8", "-2"],
                                  ["book", "P", "--depth", "-1"]])
def test_numbers_out_of_range(trader: dict[str, Any], args: list[str]) -> None:
    one_line_error(spotex("--server", trader["target"], "--token", trader["token"], *args), 2)


def test_a_refusal_names_its_reason_and_a_good_order_goes_through(
        trader: dict[str, Any]) -> None:
    base = ("--server", trader["target"], "--token", trader["token"])
    line = one_line_error(spotex(*base, "order", "buy", "no/such/product", "8", "2.10"), 1)
    assert line.startswith("Error: NOT_FOUND UNKNOWN_PRODUCT")
    ok = spotex(*base, "order", "buy", trader["pid"], "8", "2.10")
    assert ok.exit_code == 0 and "open" in ok.output, ok.output


# ---- every command -----------------------------------------------------------------------

# commands with tests of their own (a server, a data directory, a configuration file)
# cluster up: tests/test_replicated.py; gateway: tests/test_shards.py
ELSEWHERE = {"serve", "demo", "bench", "simulate", "replay", "config check", "config show",
             "cluster up", "gateway", "relay"}  # relay: tests/test_relay.py


def leaves(group: click.Group, prefix: str = "") -> set[str]:
    out: set[str] = set()
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            out |= leaves(cmd, f"{prefix}{name} ")
        else:
            out.add(prefix + name)
    return out


ORDERS_FILE = Path(__file__).resolve().parent / "data" / "orders.jsonl"


def calls(pid: str, order_id: int) -> dict[str, list[str]]:
    """One good invocation of each command that talks to a server."""
    h = str(int(time.time()) // 3600 + 30)
    return {
        "products": ["products"], "book": ["book", pid], "orders": ["orders"],
        "allocations": ["allocations"], "get": ["get", str(order_id)],
        "order": ["order", "buy", pid, "1", "1.00"],
        "amend": ["amend", str(order_id), "--price", "1.01"],
        "cancel": ["cancel", str(order_id)], "cancel-all": ["cancel-all"],
        "one-of": ["one-of", "--alt", f"{pid}:1:1.00:1"],
        "executions": ["executions", "--seconds", "0.5"],
        "submit": ["submit", str(ORDERS_FILE)],
        "basket": ["basket", str(ORDERS_FILE)], "export": ["export"],
        "resell": ["resell", str(order_id), "2.00", "--gpu", "n0:0,1"],
        "watch": ["watch", pid, "--seconds", "0.5"], "login": ["login"],
        "seller register": ["seller", "register", "cz", "--sku", "H100-SXM", "--region",
                            "us-west", "--node", "n0:8", "--from-hour", h, "--to-hour", h],
        "seller withdraw": ["seller", "withdraw", "cz", "--from-hour", h, "--to-hour", h],
        "seller range": ["seller", "range", pid, "1", "2.00", "--cluster", "cz", "--hours",
                         "2"],
        "operator create-products": ["operator", "create-products", "--sku", "Z", "--region",
                                     "r", "--from-hour", h, "--to-hour", h],
        "operator halt": ["operator", "halt", pid], "operator resume": ["operator", "resume", pid],
        "operator close": ["operator", "close", pid],
        "operator accounts": ["operator", "accounts"],
        "operator create-account": ["operator", "create-account", "x", "--role", "buyer"],
        "operator disable": ["operator", "disable", "2"],
        "operator enable": ["operator", "enable", "2"],
        "operator rotate-token": ["operator", "rotate-token", "2"],
        "operator revoke-token": ["operator", "revoke-token", "2"],
        "operator snapshot": ["operator", "snapshot"],
        "operator state-hash": ["operator", "state-hash"],
        "operator auction run": ["operator", "auction", "run", "--from-hour", h,
                                 "--to-hour", str(int(h) + 1)],
        "auctions": ["auctions"], "auction": ["auction"],
        "indicative": ["indicative", "--from-hour", h, "--to-hour", str(int(h) + 1)],
        "curve": ["curve", "H100", "us-east"], "candles": ["candles", pid],
        "trades": ["trades", pid], "index": ["index", "H100", "us-east"],
        "balance": ["balance"], "statement": ["statement", "--from", "2026-01-01"],
        "operator deposit": ["operator", "deposit", "2", "10"],
        "operator withdraw": ["operator", "withdraw", "2", "10"],
        "operator credit-limit": ["operator", "credit-limit", "2", "10"],
        "operator fees": ["operator", "fees", "--maker", "1"],
        "operator settlement": ["operator", "settlement", "--from", "2026-01-01"],
    }


def test_every_command_says_in_one_line_when_the_token_is_wrong_or_the_server_down(
        trader: dict[str, Any], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))  # no saved profile
    every = calls(trader["pid"], 1)
    assert set(every) | ELSEWHERE == leaves(main), "a command without a test"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        free = s.getsockname()[1]
    for name, args in every.items():
        line = one_line_error(spotex("--server", trader["target"], "--token", "wrong", *args), 1)
        assert "UNAUTHENTICATED" in line, (name, line)
        line = one_line_error(spotex("--server", f"127.0.0.1:{free}", "--token", "t", *args), 1)
        assert "UNAVAILABLE" in line and "is `spotex serve` running" in line, (name, line)
        line = one_line_error(spotex("--server", trader["target"], *args), 2)
        assert "--token" in line, (name, line)


@pytest.mark.parametrize("args, says", [
    (["seller", "register", "c", "--sku", "S", "--region", "r", "--node", "n0",
      "--from-hour", "1", "--to-hour", "2"], "NODE:GPUS"),
    (["seller", "register", "c", "--sku", "S", "--region", "r", "--node", "n0:8",
      "--from-hour", "tomorrow", "--to-hour", "2"], "is not an hour"),
    (["seller", "register", "c", "--sku", "S", "--region", "r", "--node", "n0:8@pod1/r1",
      "--from-hour", "1", "--to-hour", "2"], "BLOCK/RACK/DOMAIN"),
    (["seller", "withdraw", "c", "--from-hour", "2026-11-30T18:30", "--to-hour", "2"],
     "not on the hour"),
    (["order", "buy", "P", "1", "1.00", "--tif", "gtd"], "--expire-at"),
    (["order", "buy", "P", "1", "1.00", "--tif", "gtd", "--expire-at", "soon"],
     "not an ISO 8601 time"),
    (["order", "buy", "P", "1", "1.00", "--expire-at", "2026-12-01T10:00Z"], "--tif gtd"),
    (["order", "buy", "P", "1", "1.00", "--stp", "never"], "--stp"),
    (["amend", "5"], "--price, --quantity"),
    (["amend", "0", "--price", "1"], "ORDER_ID"),
    (["operator", "disable", "0"], "ACCOUNT_ID"),
    (["operator", "create-account", "x"], "--role"),
    (["operator", "create-products", "--sku", "S", "--region", "r", "--from-hour", "1",
      "--to-hour", "2", "--tick", "0"], "--tick"),
])
def test_malformed_and_out_of_range_values(trader: dict[str, Any], args: list[str],
                                           says: str) -> None:
    line = one_line_error(spotex("--server", trader["target"], "--token", trader["token"],
                                 *args), 2)
    assert says in line, line


def test_a_session_through_every_command_with_json(trader: dict[str, Any], tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path))
    t = trader["target"]

    def ok(*args: str, token: str | None = None) -> Any:
        r = spotex("--server", t, *(("--token", token) if token else ()), "--json", *args)
        assert r.exit_code == 0, (args, r.output)
        return [json.loads(x) for x in r.output.splitlines() if x.strip()][-1] \
            if args[0] != "watch" else [json.loads(x) for x in r.output.splitlines()]

    h = int(time.time()) // 3600 + 40
    made = ok("operator", "create-products", "--sku", "L40S", "--region", "eu", "--from-hour",
              str(h), "--to-hour", str(h + 2), "--tick", "0.01", token=OPERATOR_TOKEN)
    pid = made[0]["product_id"]
    assert [p["product_id"] for p in made] == [pid, made[1]["product_id"]]
    seller = ok("operator", "create-account", "cli-seller", "--role", "seller",
                token=OPERATOR_TOKEN)
    buyer = ok("operator", "create-account", "cli-desk", "--role", "buyer",
               token=OPERATOR_TOKEN)
    reg = ok("seller", "register", "cli-c", "--sku", "L40S", "--region", "eu", "--node",
             "n0:8@pod1/r1/nvl1", "--node", "n1:8", "--from-hour", str(h), "--to-hour",
             str(h + 2), token=seller["token"])
    assert (reg["gpus"], reg["hours"]) == (16, 2)
    ask = ok("order", "sell", pid, "16", "2.00", "--cluster", "cli-c", token=seller["token"])
    assert ask["state"] == "open"
    # the buyer saves a profile and trades without --token from here on
    saved = ok("login", "--profile", "desk", token=buyer["token"])
    assert (Path(saved["file"]).stat().st_mode & 0o777) == 0o600
    monkeypatch.setenv("SPOTEX_PROFILE", "desk")
    bid = ok("order", "buy", pid, "8", "2.05", "--gang", "8", "--stp", "cancel_both")
    assert (bid["state"], bid["filled"], bid["fills"][0]["price"]) == ("filled", 8, "2")
    # the GPUs came from n0, which the seller registered with its place
    held = ok("allocations")
    assert [node for a in held for node, _ in a["slots"]] == ["n0"]
    assert [p for a in held for p in a["places"]] == [["n0", "pod1", "r1", "nvl1"]]
    rest = ok("order", "buy", pid, "2", "1.50", "--tif", "gtd", "--expire-at",
              (dt.datetime.now(dt.UTC) + dt.timedelta(minutes=30)).isoformat())
    assert rest["time_in_force"] == "gtd"
    assert ok("get", str(bid["order_id"]))["fills"][0]["quantity"] == 8
    assert ok("amend", str(rest["order_id"]), "--price", "1.60")["price"] == "1.6"
    assert ok("book", pid)["bids"][0]["price"] == "1.6"
    events = ok("watch", pid, "--seconds", "1")
    assert events[0]["kind"] == "snapshot" and events[0]["book"]["asks"][0]["quantity"] == 8
    mkt = ok("order", "buy", pid, "1", "9.00", "--type", "market", "--tif", "ioc")
    assert mkt["filled"] == 1  # at the ask, not at the protection price
    assert ok("get", str(mkt["order_id"]))["fills"][0]["price"] == "2"
    assert len(ok("orders", "--open")) == 1
    assert ok("cancel-all")[0]["order_id"] == rest["order_id"]
    allocs = ok("allocations")
    assert sum(a["quantity"] for a in allocs) == 9 and allocs[0]["slots"][0][0] == "n0"
    assert any(p["product_id"] == pid for p in ok("products"))
    # the operator's side
    op = ("--profile", "none")
    assert ok(*op, "operator", "halt", pid, token=OPERATOR_TOKEN)["state"] == "halted"
    assert ok(*op, "operator", "resume", pid, token=OPERATOR_TOKEN)["state"] == "open"
    killed = ok(*op, "operator", "disable", str(seller["account_id"]), token=OPERATOR_TOKEN)
    assert [o["order_id"] for o in killed["cancelled"]] == [ask["order_id"]]
    assert ok(*op, "operator", "enable", str(seller["account_id"]),
              token=OPERATOR_TOKEN)["enabled"]
    new = ok(*op, "operator", "rotate-token", str(seller["account_id"]), token=OPERATOR_TOKEN)
    assert new["token"] != seller["token"]
    assert not ok(*op, "operator", "revoke-token", str(seller["account_id"]),
                  token=OPERATOR_TOKEN)["has_token"]
    names = {a["name"] for a in ok(*op, "operator", "accounts", token=OPERATOR_TOKEN)}
    assert {"cli-seller", "cli-desk"} <= names
    seq = ok(*op, "operator", "state-hash", token=OPERATOR_TOKEN)["sequence"]
    assert ok(*op, "operator", "snapshot", token=OPERATOR_TOKEN)["sequence"] == seq
    assert ok(*op, "operator", "close", made[1]["product_id"],
              token=OPERATOR_TOKEN)["state"] == "closed"
    assert spotex("--version").output.startswith("spotex ")
    # bulk entry from a file, each line placed or refused on its own
    orders = tmp_path / "orders.jsonl"
    orders.write_text(json.dumps(dict(product_id=pid, side="buy", price="1.10", quantity=1))
                      + "\n\n" + json.dumps(dict(product_id=pid, side="buy", price="1.105",
                                                  quantity=1)) + "\n")
    got = ok("submit", str(orders))
    assert got[0]["state"] == "open" and got[1]["refused"] == "PRICE_OFF_TICK"
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json\n")
    assert "line 1" in one_line_error(spotex("--server", t, "submit", str(bad)), 2)
    # the desk's executions, live: an order placed while it listens shows up
    import threading

    later = threading.Timer(0.5, lambda: Client(t, buyer["token"]).place_order(
        pid, "buy", "1.20", 1))
    later.start()
    r = spotex("--server", t, "--json", "executions", "--seconds", "2")
    later.join()
    kinds = [json.loads(x)["kind"] for x in r.output.splitlines() if x.strip()]
    assert r.exit_code == 0 and "accepted" in kinds, r.output


@pytest.mark.parametrize(("args", "says"), [
    (["order", "buy", "P", "8", "-1"], "prices are positive"),
    (["order", "buy", "P", "-3", "2.10"], "a quantity is 1 to"),
    (["order", "buy", "P", "1.5", "2.10"], "not a whole number of GPUs"),
])
def test_negative_and_fractional_numbers_say_what_is_wrong(
        trader: dict[str, Any], args: list[str], says: str) -> None:
    line = one_line_error(spotex("--server", trader["target"], "--token", trader["token"],
                                 *args), 2)
    assert says in line and "No such option" not in line, line


def test_json_after_the_command_and_errors_as_json(trader: dict[str, Any]) -> None:
    base = ("--server", trader["target"], "--token", trader["token"])
    before = spotex(*base, "--json", "orders")
    after = spotex(*base, "orders", "--json")
    assert after.exit_code == 0, after.output
    assert json.loads(after.output) == json.loads(before.output)
    # a refusal, a usage mistake found before --json is read, and one after it: JSON on
    # stderr (CliRunner mixes the two), with the exit codes of the plain form
    for args, code, reason in (
            (("order", "buy", "no/such/product", "8", "2.10", "--json"), 1, "UNKNOWN_PRODUCT"),
            (("--json", "order", "buy", trader["pid"], "8", "abc"), 2, ""),
            (("order", "buy", trader["pid"], "8", "abc", "--json"), 2, "")):
        r = spotex(*base, *args)
        assert r.exit_code == code, r.output
        err = json.loads(r.output)["error"]
        assert err["reason"] == reason and err["message"], err
        assert err["code"] == ("NOT_FOUND" if reason else "USAGE")


def test_piped_tables_keep_one_row_per_line(trader: dict[str, Any]) -> None:
    base = ("--server", trader["target"], "--token", trader["token"])
    assert spotex(*base, "order", "buy", trader["pid"], "8", "2.10").exit_code == 0
    listed = spotex(*base, "orders").output  # CliRunner's output is not a terminal
    rows = [line for line in listed.splitlines() if trader["pid"] in line]
    assert rows and all("buy" in row and "2.10" in row for row in rows), listed


def test_narrow_terminals_drop_columns_not_ids() -> None:
    from rich.console import Console

    from spotex.cli.output import _table, print_table

    pid = "H100-SXM/us-east/2026-12-06T04 +24h in 48h"
    for width in (200, 80, 50):
        t = _table("id", "product", "side", "state", "reason", drop=("reason",))
        t.add_row("562949953421312", pid, "buy", "resting", "")
        console = Console(width=width, record=True)
        print_table(console, t)
        text = console.export_text()
        assert "562949953421312" in text and pid in text, text
        widest = max(len(line.rstrip()) for line in text.splitlines())
        # the other columns go first; only the ids alone may be wider than the terminal
        assert widest <= width or [str(c.header) for c in t.columns] == ["id", "product"]


def test_narrow_terminals_split_no_header_or_word() -> None:
    from rich.console import Console

    from spotex.cli.output import _table, print_table

    for width in (100, 80, 66, 60, 50):
        t = _table("id", "product", "side", "type", "tif", "$", "qty", "filled", "avg $",
                   "state", "reason", drop=("type", "tif", "avg $", "reason", "filled"))
        t.add_row("562949953421312", "H100-SXM/us-east/2026-12-06T04", "buy", "limit", "gtc",
                  "2.20", "8", "8", "2.10", "partially_filled", "INSUFFICIENT_CAPACITY")
        console = Console(width=width, record=True)
        print_table(console, t)
        text = console.export_text()
        lines = text.splitlines()
        kept = [str(c.header) for c in t.columns]
        assert len(kept) >= 2, text
        # the header on one line, every column's header and word in it whole
        header = next(line for line in lines if " id " in f"{line} ")
        row = next(line for line in lines if "562949953421312" in line)
        for name in kept:
            assert name in header, (width, text)
        for word in ("buy", "limit", "gtc", "partially_filled", "INSUFFICIENT_CAPACITY"):
            assert (word in row) == any(word in line for line in lines), (width, text)
        assert max(len(line.rstrip()) for line in lines) <= width, text


@pytest.mark.parametrize("command", [["executions"], ["watch", "PID"]])
def test_ctrl_c_ends_a_live_view_quietly_with_exit_0(trader: dict[str, Any],
                                                     command: list[str]) -> None:
    """Ctrl-C is the documented way to end ``watch`` and ``executions``: a real SIGINT to
    a real process, once it shows an event, ends it with exit 0 and no ``Aborted!``."""
    import os
    import queue
    import signal
    import subprocess
    import sys
    import threading

    args = [trader["pid"] if a == "PID" else a for a in command]
    view = subprocess.Popen(
        [sys.executable, "-m", "spotex.cli", "--server", trader["target"], "--token",
         trader["token"], "--json", *args], env={**os.environ, "PYTHONUNBUFFERED": "1"},
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in view.stdout:  # type: ignore[union-attr]
            lines.put(line)
    threading.Thread(target=read, daemon=True).start()
    try:
        # an event of the buyer's own (for executions) on the product (for watch), until
        # the view shows one: it is then inside its loop
        buyer = Client(trader["target"], trader["token"])
        deadline = time.monotonic() + 60
        while True:
            assert time.monotonic() < deadline and view.poll() is None, "nothing shown"
            buyer.place_order(trader["pid"], "buy", "1.00", 1, tif="ioc")
            try:
                assert json.loads(lines.get(timeout=1.0))
                break
            except queue.Empty:
                continue
        view.send_signal(signal.SIGINT)
        view.wait(timeout=30)
        err = view.stderr.read()  # type: ignore[union-attr]
    finally:
        if view.poll() is None:
            view.kill()
    assert view.returncode == 0, err
    assert "Aborted" not in err and "Traceback" not in err, err


def test_a_one_hour_order_s_fills_name_its_product(trader: dict[str, Any]) -> None:
    """The wire leaves a one-hour fill's product out (it is the order's); the SDK and
    ``--json`` give it, as they do a block's fills."""
    op = Client(trader["target"], OPERATOR_TOKEN)
    hour = int(time.time()) // 3600 + 40  # a product of its own: no other bid takes the ask
    pid = op.create_products(skus=["B300"], regions=["us-west"], from_hour=hour,
                             to_hour=hour + 1, tick="0.01")[0].product_id
    seller = Client(trader["target"], op.create_account("cli-fill-seller", ["seller"]).token)
    seller.register_capacity("fills-1", sku="B300", region="us-west", nodes=[("n0", 8)],
                             from_hour=hour, to_hour=hour + 1)
    seller.place_order(pid, "sell", "2.00", 1, cluster_id="fills-1")
    r = spotex("--server", trader["target"], "--token", trader["token"], "order", "buy",
               pid, "1", "2.10", "--tif", "ioc", "--json")
    assert r.exit_code == 0, r.output
    placed = json.loads(r.output)
    assert placed["state"] == "filled", placed
    assert [f["product_id"] for f in placed["fills"]] == [pid]
    listed = Client(trader["target"], trader["token"]).list_orders()
    got = next(o for o in listed if o.order_id == placed["order_id"])
    assert [f.product_id for f in got.fills] == [pid]


def test_export_to_kubernetes_without_pyyaml_says_which_extra(
        trader: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import sys
    monkeypatch.setitem(sys.modules, "yaml", None)  # an import of it now fails
    line = one_line_error(spotex("--server", trader["target"], "--token", trader["token"],
                                 "export", "--format", "k8s"), 1)
    assert "pip install 'spotex[export]'" in line, line


def test_creating_products_listed_before_says_so(trader: dict[str, Any]) -> None:
    base = ("--server", trader["target"], "--token", OPERATOR_TOKEN)
    h = int(time.time()) // 3600 + 60
    args = ("operator", "create-products", "--sku", "B300", "--region", "ap-south",
            "--from-hour", str(h), "--to-hour", str(h + 2))
    assert "2 listed" in spotex(*base, *args).output
    again = spotex(*base, *args[:-1], str(h + 3))
    assert again.exit_code == 0, again.output
    assert "2 of 3 already listed" in again.output, again.output
    made = Client(trader["target"], OPERATOR_TOKEN).create_products(
        skus=["B300"], regions=["ap-south"], from_hour=h - 1, to_hour=h + 3)
    # every product of the range, in hour order, whichever were listed before
    assert [p.listed_before for p in made] == [False, True, True, True]
    assert [p.product_id for p in made] == sorted(p.product_id for p in made)


# ---- orders whose outcome is unknown ---------------------------------------------------

def test_get_finds_an_order_by_its_client_order_id(trader: dict[str, Any]) -> None:
    base = ("--server", trader["target"], "--token", trader["token"])
    placed = spotex(*base, "--json", "order", "buy", trader["pid"], "1", "1.00",
                    "--client-order-id", "cli-mine")
    assert placed.exit_code == 0, placed.output
    got = spotex(*base, "--json", "get", "--client-order-id", "cli-mine")
    assert got.exit_code == 0, got.output
    assert json.loads(got.output) == json.loads(placed.output)
    line = one_line_error(spotex(*base, "get", "--client-order-id", "cli-never"), 1)
    assert line.startswith("Error: NOT_FOUND UNKNOWN_ORDER")
    assert "ORDER_ID or --client-order-id" in one_line_error(spotex(*base, "get"), 2)
    # the SDK names an order it gave no id to
    made = spotex(*base, "--json", "order", "buy", trader["pid"], "1", "1.00")
    assert json.loads(made.output)["client_order_id"].startswith("sdk-")


def losing_client(*losses: tuple[str, Any, bool], **options: Any) -> type[Client]:
    """The SDK's client over a stub losing answers as ``losses`` say (method, error,
    whether the request still reached the venue); see tests/test_unknown_outcome.py."""
    from test_unknown_outcome import Losing

    class LosingClient(Client):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **{**kwargs, **options})
            for method, err, send in losses:
                self._stubs["market"] = Losing(self._stubs["market"], method, err, send=send,
                                               times=1 if method != "GetOrder" else 1e9)
    return LosingClient


def test_an_order_whose_answer_was_lost_says_it_checks_then_tells_the_truth(
        trader: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    import grpc
    from test_unknown_outcome import UNKNOWN, Lost

    from spotex.cli import root

    base = ("--server", trader["target"], "--token", trader["token"])

    def order(cid: str, *extra: str) -> Result:
        return spotex(*base, *extra, "order", "buy", trader["pid"], "1", "1.00",
                      "--client-order-id", cid)

    def checking(cid: str) -> str:
        return f"the venue may have applied this; checking (client order id {cid})..."
    # applied: the order, as if acknowledged
    monkeypatch.setattr(root, "Client", losing_client(("PlaceOrder", UNKNOWN, True)))
    r = order("cli-lost-1")
    assert r.exit_code == 0, r.output
    assert r.stderr.splitlines() == [checking("cli-lost-1")]
    assert "open" in r.stdout
    # not applied: one line, safe to send again
    monkeypatch.setattr(root, "Client", losing_client(("PlaceOrder", UNKNOWN, False),
                                                      timeout=1))
    r = order("cli-lost-2")
    line = one_line_error(r, 1)
    assert line.startswith("Error: UNAVAILABLE NOT_APPLIED: the venue did not apply it "
                           "(looked up by client order id cli-lost-2")
    assert "safe to send it again" in line and r.stderr.startswith(checking("cli-lost-2"))
    # the venue cannot say in time: still unknown, the id named
    monkeypatch.setattr(root, "Client", losing_client(
        ("PlaceOrder", UNKNOWN, False),
        ("GetOrder", Lost(grpc.StatusCode.UNAVAILABLE, "JOURNAL_UNAVAILABLE"), False),
        resolve_timeout=0.3))
    line = one_line_error(order("cli-lost-3"), 1)
    assert line.startswith("Error: UNKNOWN OUTCOME_UNKNOWN") and "cli-lost-3" in line
    # under --json: the error as JSON, the line on stderr as well
    r = order("cli-lost-4", "--json")
    assert r.exit_code == 1 and r.stderr.splitlines()[0] == checking("cli-lost-4")
    assert json.loads(r.stderr.splitlines()[-1])["error"]["reason"] == "OUTCOME_UNKNOWN"
