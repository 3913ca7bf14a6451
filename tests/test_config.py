"""One configuration file for the server: validated with messages naming the key,
overridden by SPOTEX_* variables and then by flags, shown with secrets masked."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import OPERATOR_TOKEN

from spotex.client import Client, RpcError
from spotex.server.config import SETTINGS, load
from spotex.tools.testing import ServerProcess

NOW_HOUR = int(time.time()) // 3600


def _spotex(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "spotex.cli", *args], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **(env or {})})


@pytest.mark.parametrize("text, message", [
    ('[journal]\nfsycn = "none"\n', "unknown key journal.fsycn (did you mean journal.fsync?)"),
    ("[limit]\norder_burst = 5\n", "unknown section [limit] (did you mean [limits]?)"),
    ('[limits]\norder_burst = "5"\n', "limits.order_burst: expected an integer, got '5'"),
    ("[limits]\norder_burst = 0\n", "limits.order_burst: 0 is not in the range x>=1"),
    ('[journal]\nfsync = "sometimes"\n', "journal.fsync: 'sometimes' is not one of"),
    ("[server]\naccess_log = 1\n", "server.access_log: expected true or false, got 1"),
    ("[server\n", "not valid TOML"),
])
def test_a_bad_file_is_refused_naming_the_key(tmp_path: Path, text: str, message: str) -> None:
    f = tmp_path / "spotex.toml"
    f.write_text(text)
    for args in (["config", "check", str(f)],
                 ["serve", "--config", str(f), "--data-dir", str(tmp_path / "d"),
                  "--listen", "127.0.0.1:0"]):
        out = _spotex(*args)
        assert out.returncode == 1, out
        assert message in out.stderr and "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "d").exists(), "a bad file stops the server before anything"


def test_every_setting_has_a_key_a_flag_and_a_variable(tmp_path: Path) -> None:
    f = tmp_path / "all.toml"
    f.write_text(_spotex("config", "show").stdout)  # the defaults, as a file
    assert set(load(f)) == {s.key for s in SETTINGS}
    assert _spotex("config", "check", str(f)).returncode == 0
    helptext = _spotex("serve", "--help").stdout
    assert all(s.flag.split("/")[0] in helptext and s.envvar in helptext for s in SETTINGS)


def test_show_masks_secrets_and_applies_the_environment_over_the_file(tmp_path: Path) -> None:
    f = tmp_path / "spotex.toml"
    f.write_text('[server]\noperator_token = "op-secret"\n[limits]\norder_burst = 10\n'
                 "max_open_orders = 7\n")
    out = _spotex("config", "show", "--config", str(f), env={"SPOTEX_ORDER_BURST": "20"})
    assert out.returncode == 0, out.stderr
    assert 'operator_token = "********"' in out.stdout and "op-secret" not in out.stdout
    assert "order_burst = 20" in out.stdout  # the environment over the file
    assert "max_open_orders = 7" in out.stdout  # the file over the default
    bad = _spotex("config", "show", env={"SPOTEX_ORDER_BURST": "lots"})
    assert bad.returncode == 1 and "SPOTEX_ORDER_BURST" in bad.stderr


def test_a_running_server_takes_file_then_environment_then_flags(tmp_path: Path) -> None:
    f = tmp_path / "spotex.toml"
    f.write_text("[limits]\nmax_open_orders = 2\n")

    def open_orders_allowed(*flags: str, env: dict[str, str] | None = None) -> int:
        d = tmp_path / f"d{len(list(tmp_path.iterdir()))}"
        server = ServerProcess(d, OPERATOR_TOKEN, "--config", str(f), *flags, env=env)
        try:
            op = Client(server.target, OPERATOR_TOKEN)
            pid = op.create_products(skus=["H100-SXM"], regions=["us-east"],
                                     from_hour=NOW_HOUR + 3, to_hour=NOW_HOUR + 4)[0].product_id
            buyer = Client(server.target, op.create_account("b", ["buyer"]).token)
            for n in range(10):
                try:
                    buyer.place_order(pid, "buy", "1.00", 1)
                except RpcError as err:
                    assert err.reason == "TOO_MANY_OPEN_ORDERS"
                    return n
            return 10
        finally:
            assert server.stop() == 0
    assert open_orders_allowed() == 2  # the file
    assert open_orders_allowed(env={"SPOTEX_MAX_OPEN_ORDERS": "3"}) == 3  # env over file
    assert open_orders_allowed("--max-open-orders", "4",
                               env={"SPOTEX_MAX_OPEN_ORDERS": "3"}) == 4  # flag over both
