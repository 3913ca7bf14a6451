"""``spotex cluster up`` watches what it started: a dead engine or NATS server is logged
and started again as it was, after a wait that grows while it keeps dying, and nothing
is started once it stops. So a shard that lost its leader has a standby again, and a
second kill costs nothing."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from spotex.client import Client, RpcError
from spotex.cluster.supervise import Supervisor, Watched


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Sleeper:
    """A process to watch: ``sleep`` started again by ``start``."""

    def __init__(self) -> None:
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.start()

    def start(self) -> None:
        self.proc = subprocess.Popen(["sleep", "600"])
        self.starts += 1

    def kill(self) -> int:
        assert self.proc is not None
        pid = self.proc.pid
        self.proc.kill()
        self.proc.wait(10)  # dead for sure before the supervisor looks
        return pid


@pytest.fixture
def sleeper() -> Iterator[Sleeper]:
    s = Sleeper()
    yield s
    if s.proc is not None and s.proc.poll() is None:
        s.proc.kill()
        s.proc.wait(10)


def test_a_dead_process_is_logged_and_started_again_later_each_time_until_it_runs_long(
        sleeper: Sleeper, caplog: pytest.LogCaptureFixture) -> None:
    clock = Clock()
    sup = Supervisor([Watched("sleeper", lambda: sleeper.proc, sleeper.start)],
                     clock=clock)
    caplog.set_level(logging.WARNING, "spotex.cluster.supervise")
    sup.check()
    assert sleeper.starts == 1 and not caplog.records  # alive: nothing to do
    waits = []
    for _ in range(7):  # dying again at once: 0.5 s, then twice as long, up to 10 s
        pid = sleeper.kill()
        clock.now += 1.0
        sup.check()
        said = caplog.records[-1].getMessage()
        assert f"sleeper (pid {pid}) killed by SIGKILL after 1.0 s" in said, said
        wait = float(re.search(r"again in ([\d.]+) s", said).group(1))  # type: ignore[union-attr]
        waits.append(wait)
        starts = sleeper.starts
        clock.now += wait - 0.01
        sup.check()
        assert sleeper.starts == starts, "started before its wait"
        clock.now += 0.01
        sup.check()
        assert sleeper.starts == starts + 1
        assert sleeper.proc is not None and sleeper.proc.poll() is None
        assert f"sleeper started again (pid {sleeper.proc.pid}; restart {starts})" in (
            caplog.records[-1].getMessage())
    assert waits == [0.5, 1, 2, 4, 8, 10, 10]
    # it ran 30 s: the next death waits 0.5 s again
    clock.now += 30
    sleeper.kill()
    sup.check()
    assert "again in 0.5 s" in caplog.records[-1].getMessage()
    m = {x.name: x for x in sup.collect()}
    assert [s.value for s in m["spotex_cluster_restarts"].samples
            if s.name.endswith("_total")] == [7]
    assert [s.value for s in m["spotex_cluster_process_up"].samples] == [0]
    # stopped: nothing is started again, however long
    sup.stop()
    clock.now += 60
    sup.check()
    assert sleeper.starts == 8 and sleeper.proc is not None and sleeper.proc.poll() is not None


def test_the_supervisor_s_thread_starts_a_killed_process_and_stops(sleeper: Sleeper) -> None:
    sup = Supervisor([Watched("sleeper", lambda: sleeper.proc, sleeper.start)],
                     poll=0.05).start()
    try:
        sleeper.kill()
        end = time.monotonic() + 30
        while sleeper.starts < 2:
            assert time.monotonic() < end, "not started again"
            time.sleep(0.05)
    finally:
        sup.stop()
    assert sup._thread is not None and not sup._thread.is_alive()


# -- `spotex cluster up`, its processes killed ------------------------------------------

def _health(address: str) -> int | None:
    """The engine's Market health (a leader SERVING, a standby NOT_SERVING); None: no
    answer."""
    with grpc.insecure_channel(address) as ch:
        try:
            return int(health_pb2_grpc.HealthStub(ch).Check(
                health_pb2.HealthCheckRequest(service="spotex.v1.Market"), timeout=2).status)
        except grpc.RpcError:
            return None


SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


class Patience:
    """Polls, each wait bounded, and all of them by the test's own bound (``whole``
    seconds from now); a wait that fails shows the tails of the engines' logs under
    ``logs``."""

    def __init__(self, whole: float, logs: Path) -> None:
        self.end = time.monotonic() + whole
        self.whole = whole
        self.logs = logs

    def until(self, what: str, check: Callable[[], object], within: float) -> object:
        end = min(time.monotonic() + within, self.end)
        while not (got := check()):
            if time.monotonic() > end:
                tails = "".join(f"\n--- {x.name}:\n{x.read_text(errors='replace')[-3000:]}"
                                for x in sorted(self.logs.glob("shard*.log")))
                raise AssertionError(f"{what}: not within {within} s (the whole test: "
                                     f"{self.whole} s at most){tails}")
            time.sleep(0.1)
        return got

    def leading(self, engines: list[str]) -> str:
        """The one engine whose health says it serves (a deposed leader stops serving
        on its next tick)."""
        def one() -> str | None:
            serving = [a for a in engines if _health(a) == SERVING]
            return serving[0] if len(serving) == 1 else None
        found = self.until("one engine leading", one, within=30)
        assert isinstance(found, str)
        return found


def _pids(marker: bytes) -> list[int]:
    """The processes whose command line holds ``marker``."""
    found = []
    for p in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            if marker in p.read_bytes():
                found.append(int(p.parent.name))
        except OSError:
            pass  # gone meanwhile
    return found


def _engine_pid(address: str) -> int:
    pids = _pids(b"--listen\0" + address.encode() + b"\0")
    assert len(pids) == 1, (address, pids)
    return pids[0]


def _answers(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_cluster_up_starts_a_killed_leader_and_nats_server_again_so_a_second_kill_costs_nothing(
        tmp_path: Path) -> None:
    """One shard, a leader and a standby. The leader is SIGKILLed: the shard serves
    through the gateway again, and the killed engine is started again, so that the
    shard has a leader and a standby again. Then the new leader is SIGKILLed, and the
    same holds; an engine started again has led by then. Then a NATS server is
    SIGKILLed: it is started again on its port, and orders go on. Every exit and start
    is in `cluster up`'s log; SIGTERM leaves nothing behind."""
    spotex = str(Path(sys.executable).parent / "spotex")
    began = time.monotonic()
    wait = Patience(90, tmp_path)
    proc = subprocess.Popen([spotex, "cluster", "up", "--dir", str(tmp_path), "--nats-port",
                             "0", "--listen", "127.0.0.1:0", "--operator-token", "tok",
                             "--shards", "1", "--standbys", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    said: list[str] = []
    threading.Thread(target=lambda: said.extend(proc.stdout or ()), daemon=True).start()
    try:
        def said_once(pattern: str) -> str | None:
            assert proc.poll() is None, "".join(said)
            found = re.search(pattern, "".join(said), re.M)
            return found.group(1) if found else None
        target = wait.until("cluster up", lambda: said_once(r"^gateway: (\S+:\d+)"), 90)
        engines = str(said_once(r"^shard 1: .* engines (.*) \(logs")).split(", ")
        nats_port = int(str(said_once(r"NATS JetStream: nats://127\.0\.0\.1:(\d+)")))
        assert isinstance(target, str) and len(engines) == 2
        op = Client(target, "tok", timeout=30)
        pid = op.create_products(skus=["H100"], regions=["us-east"], from_hour=500_000,
                                 to_hour=500_001)[0].product_id
        seller = Client(target, op.create_account("s", ["seller"]).token, timeout=30)
        seller.register_capacity("c", sku="H100", region="us-east", nodes=[("n0", 8)],
                                 from_hour=500_000, to_hour=500_001)
        made = op.create_account("b", ["buyer"])
        op.deposit(made.account_id, "1000")  # cluster up checks money by default
        buyer = Client(target, made.token, timeout=10)
        acked = []

        def order() -> bool:
            try:
                acked.append(buyer.place_order(pid, "buy", "1.00", 1).order_id)
                return True
            except RpcError as err:
                assert err.reason in ("SHARD_UNAVAILABLE", "JOURNAL_UNAVAILABLE",
                                      "OUTCOME_UNKNOWN", "NOT_APPLIED"), err
                return False
        wait.until("an order before the kills", order, within=30)
        print(f"up and trading after {time.monotonic() - began:.1f} s")

        original = {_engine_pid(a) for a in engines}
        leaders = []  # the pid leading after each kill
        for kill in (1, 2):
            leader = wait.leading(engines)
            victim = _engine_pid(leader)
            os.kill(victim, signal.SIGKILL)
            killed = time.monotonic()
            wait.until("the shard serving through the gateway", order, within=45)
            print(f"kill {kill}: serving {time.monotonic() - killed:.1f} s after")
            # the killed engine is started again: the shard has a leader and a standby
            # again (the one started again may be either: it is back before the lease
            # the killed one held runs out, and contends for it)
            marker = b"--listen\0" + leader.encode() + b"\0"
            wait.until("the killed engine started again",
                       lambda m=marker, v=victim: _pids(m) not in ([], [v]),  # type: ignore[misc]
                       within=30)
            wait.until("a leader and a standby", lambda: sorted(
                _health(a) or 0 for a in engines) == sorted([SERVING, NOT_SERVING]),
                within=30)
            leaders.append(_engine_pid(wait.leading(engines)))
            print(f"kill {kill}: a leader and a standby {time.monotonic() - killed:.1f} s "
                  "after")
        # an engine the supervisor started again took over (after the first kill, or the
        # second: the original standby then took over first)
        assert set(leaders) - original, (leaders, original)

        # a NATS server lost: started again on its port, and orders go on
        config = str(tmp_path / "nats" / "n1" / "nats.conf").encode()
        (nats_pid,) = _pids(config)
        os.kill(nats_pid, signal.SIGKILL)
        killed = time.monotonic()
        wait.until("the NATS server started again",
                   lambda: _pids(config) not in ([], [nats_pid]) and _answers(nats_port),
                   within=30)
        print(f"NATS server back {time.monotonic() - killed:.1f} s after")
        wait.until("orders after the NATS server's return", order, within=45)
        # nothing acknowledged was lost across the kills
        assert set(acked) <= {o.order_id for o in buyer.list_orders()}
        for c in (op, seller, buyer):
            c.close()
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(60)
    out = "".join(said)
    assert proc.returncode == 0, out
    assert len(re.findall(r"engine [01] of shard 1 \(\S+\) \(pid \d+\) killed by SIGKILL",
                          out)) == 2, out
    assert re.search(r"nats-server n1 \(\S+\) \(pid \d+\) killed by SIGKILL", out), out
    # each death logged, then a start (the same engine may have been killed twice)
    assert len(re.findall(r"\) started again \(pid \d+; restart [12]\)", out)) == 3, out
    assert not [p for p in Path("/proc").glob("[0-9]*/cmdline")
                if str(tmp_path).encode() in _read(p)], "a process left behind"
    print(f"the whole test: {time.monotonic() - began:.1f} s")


def _read(p: Path) -> bytes:
    try:
        return p.read_bytes()
    except OSError:
        return b""
