"""The command line on everyday mistakes: a wrong token, a server that is down, a price or
a quantity that is not one. Each gives one line saying what was wrong and a non-zero
exit, never a traceback; a good order still goes through."""

from __future__ import annotations

import socket
import time
from typing import Any

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
