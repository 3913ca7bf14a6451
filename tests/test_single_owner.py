"""One server per data directory and per port: a second one refuses to start, clearly and
without touching anything, while the first keeps serving and its journal stays whole."""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import OPERATOR_TOKEN, serving

import spotex.server.service as server_module
from spotex._core import journal_segments, replay_journal
from spotex.client import Client
from spotex.server.datadir import DataDirInUse, DataDirLock
from spotex.server.host import JOURNAL, EngineHost
from spotex.server.service import ListenError, Server
from spotex.tools.testing import ServerProcess


def _journal_bytes(data: Path) -> bytes:
    return b"".join(path.read_bytes() for _, path in journal_segments(data / JOURNAL))


def _serve(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "spotex.cli", "serve", *args],
                          capture_output=True, text=True, timeout=60)


def _one_line_error(err: str) -> str:
    assert "Traceback" not in err, err
    errors = [line for line in err.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, err
    return errors[0]


def _trade(target: str, hour_offset: int = 3) -> tuple[Client, str]:
    op = Client(target, OPERATOR_TOKEN)
    h = int(time.time()) // 3600 + hour_offset
    pid = op.create_products(skus=["H100-SXM"], regions=["us-east"], from_hour=h,
                             to_hour=h + 1)[0].product_id
    seller = Client(target, op.create_account("s", ["seller"]).token)
    buyer = Client(target, op.create_account("b", ["buyer"]).token)
    seller.register_capacity("c1", sku="H100-SXM", region="us-east", nodes=[("n0", 8)],
                             from_hour=h, to_hour=h + 1)
    seller.place_order(pid, "sell", "2.10", 8, cluster_id="c1")
    assert buyer.place_order(pid, "buy", "2.20", 4, gang=4).state == "filled"
    return buyer, pid


def test_second_server_on_a_data_dir_or_a_port_refuses_to_start(tmp_path: Path) -> None:
    data, other = tmp_path / "data", tmp_path / "other"
    first = ServerProcess(data, OPERATOR_TOKEN)
    try:
        buyer, pid = _trade(first.target)
        journal_before = _journal_bytes(data)

        same_dir = _serve("--listen", "127.0.0.1:0", "--data-dir", str(data),
                          "--operator-token", OPERATOR_TOKEN)
        assert same_dir.returncode != 0
        line = _one_line_error(same_dir.stderr)
        assert str(data) in line and f"pid {first.pid}" in line, line

        port = first.target.rsplit(":", 1)[1]
        same_port = _serve("--listen", f"127.0.0.1:{port}", "--data-dir", str(other),
                           "--operator-token", OPERATOR_TOKEN)
        assert same_port.returncode != 0
        line = _one_line_error(same_port.stderr)
        assert f"127.0.0.1:{port}" in line and "in use" in line, line
        assert not other.exists(), "a refused server must not create its data directory"

        # the refused servers wrote nothing; the first still serves and still journals
        assert _journal_bytes(data).startswith(journal_before)
        assert buyer.place_order(pid, "buy", "2.00", 4).state == "open"
        assert len(buyer.list_allocations(pid)) == 1
        # the replay tool only reads, so it runs beside the live server
        replayed = subprocess.run([sys.executable, "-m", "spotex.cli", "replay", str(data)],
                                  capture_output=True, text=True, timeout=60)
        assert replayed.returncode == 0 and "state hash" in replayed.stdout, replayed.stderr
    finally:
        code = first.stop()
    assert code == 0
    m = re.search(r"stopped at sequence (\d+), state hash (\w+)", first.text())
    assert m, first.text()
    engine, last, _, replayed_hash = replay_journal(data / JOURNAL)
    assert (last, replayed_hash) == (int(m.group(1)), m.group(2))


def test_grpc_itself_refuses_a_shared_port(tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Without the friendly check in front, gRPC's own bind (port sharing off) refuses,
    and the refused server lets go of its data directory."""
    monkeypatch.setattr(server_module, "_check_listen", lambda listen: None)
    with serving(tmp_path / "a") as running:
        with pytest.raises(ListenError):
            asyncio.run(Server.start(running.target, tmp_path / "b", OPERATOR_TOKEN))
        DataDirLock(tmp_path / "b").release()  # free again


def test_the_gateway_holds_its_data_dir_until_closed(tmp_path: Path) -> None:
    gw = EngineHost(data_dir=tmp_path, fsync="none")
    with pytest.raises(DataDirInUse) as info:
        EngineHost(data_dir=tmp_path, fsync="none")
    assert info.value.data_dir == tmp_path and info.value.pid is not None
    gw.close()
    EngineHost(data_dir=tmp_path, fsync="none").close()  # the lock went with close()


def test_a_killed_owner_leaves_no_stale_lock(tmp_path: Path) -> None:
    first = ServerProcess(tmp_path, OPERATOR_TOKEN)
    first.kill()
    again = ServerProcess(tmp_path, OPERATOR_TOKEN)
    assert again.stop() == 0
