"""The journal on NATS JetStream (spotex-replicated), on a real three-server cluster on
loopback: rounds acknowledged by a quorum, a second writer fenced out, every record's
own checksum verified on read (a damaged one refused, never skipped), and a server that
journals there recovering on another data directory, after one NATS server was lost, to
the same state."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import TypeVar

import nats
import pytest
from conftest import OPERATOR_TOKEN, serving

from spotex._core import JournalError, JournalWriter, Lease, read_jetstream
from spotex.client import Client, RpcError
from spotex.cluster.nats import NatsCluster, free_port
from spotex.cluster.up import Engine, Shards
from spotex.errors import SpotexError
from spotex.server.host import Replicated


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path_factory.mktemp("nats"), 3) as c:
        yield c


def publish(cluster: NatsCluster, subject: str, payload: bytes) -> None:
    """A message any NATS client could put on a stream's subject."""
    async def send() -> None:
        nc = await nats.connect(cluster.urls)
        await nc.jetstream().publish(subject, payload)
        await nc.close()
    asyncio.run(send())


def test_rounds_are_fenced_and_every_record_is_checked(cluster: NatsCluster) -> None:
    first = JournalWriter.jetstream(cluster.urls, "fence", replicas=3)
    late = JournalWriter.jetstream(cluster.urls, "fence", replicas=3)
    assert first.stream_sequence == late.stream_sequence == 0
    # a round is one message of its records
    for seq in (1, 2):
        first.append(seq, 1000 + seq, f"command {seq}".encode(), b"")
    first.sync()
    assert first.stream_sequence == 1
    first.append(3, 1003, b"command 3", b"")
    first.sync()
    assert first.stream_sequence == 2
    # the other writer still believes the stream is empty: its round is refused whole
    late.append(1, 5000, b"a rival command", b"")
    with pytest.raises(JournalError, match="fenced"):
        late.sync()
    # and it stays refused: part of a round may be stored, it must recover first
    with pytest.raises(JournalError):
        late.append(2, 5001, b"again", b"")
    got = read_jetstream(cluster.urls, "fence")
    assert [(s, t, c) for s, t, c, _ in got] == [
        (1, 1001, b"command 1"), (2, 1002, b"command 2"), (3, 1003, b"command 3")]
    assert [s for s, *_ in read_jetstream(cluster.urls, "fence", after=1)] == [2, 3]
    assert [s for s, *_ in read_jetstream(cluster.urls, "fence", until=1)] == [1, 2]

    # a message that is not a whole journal record, put there by any client: refused
    publish(cluster, "spotex.fence.journal", b"\x05\x00\x00\x00garbage")
    with pytest.raises(JournalError, match="message 3"):
        read_jetstream(cluster.urls, "fence")


def test_a_new_leader_fences_the_stream_so_an_earlier_leader_appends_nothing_after(
        cluster: NatsCluster, tmp_path: Path) -> None:
    old = JournalWriter.jetstream(cluster.urls, "takeover", replicas=3)
    old.append(1, 1001, b"one", b"")
    old.sync()
    new = JournalWriter.jetstream(cluster.urls, "takeover", replicas=3)
    # the old leader, not yet aware it was deposed, appends after what the new one read:
    # the new one's fence is refused, so it cannot serve without that record
    old.append(2, 1002, b"two", b"")
    old.sync()
    with pytest.raises(JournalError, match="fenced"):
        new.fence("new")
    new = JournalWriter.jetstream(cluster.urls, "takeover", replicas=3)
    assert new.stream_sequence == 2
    new.fence("new")
    assert new.stream_sequence == 3
    # fenced: nothing the old leader sends now is stored, however it retries
    old.append(3, 1003, b"three from the old leader", b"")
    with pytest.raises(JournalError, match="fenced"):
        old.sync()
    new.append(3, 2003, b"three", b"")
    new.sync()
    # readers skip the fence; the records follow one another
    assert [(s, c) for s, _, c, _ in read_jetstream(cluster.urls, "takeover")] == [
        (1, b"one"), (2, b"two"), (3, b"three")]
    # fencing is only for a stream, and only between rounds
    new.append(4, 2004, b"four", b"")
    with pytest.raises(JournalError, match="between rounds"):
        new.fence("new")
    with pytest.raises(ValueError, match="JetStream"):
        JournalWriter(tmp_path / "journal").fence("x")

    # an empty message without the leader's header is not a fence: damage, refused
    publish(cluster, "spotex.takeover.journal", b"")
    with pytest.raises(JournalError, match="message 5"):
        read_jetstream(cluster.urls, "takeover")


def test_a_lease_has_one_holder_and_says_how_long_it_surely_lives(
        cluster: NatsCluster) -> None:
    # the venue's servers all keep leases 3 s (the default); the bucket is made with it
    a = Lease(cluster.urls, "lease", "a")
    b = Lease(cluster.urls, "lease", "b")
    assert a.expires_in() == 0 and a.holder() is None
    assert a.try_acquire() and not b.try_acquire()
    assert a.holder() == "a" and 0 < a.expires_in() <= 3
    assert b.expires_in() == 0 and not b.renew()
    assert a.renew() and 0 < a.expires_in() <= 3
    a.release()
    assert a.expires_in() == 0 and not a.renew()
    assert b.try_acquire() and b.holder() == "b" and 0 < b.expires_in() <= 3
    b.release()
    # a server given another lease life is refused: holders count the life themselves
    with pytest.raises(JournalError, match="keeps a lease 3 s, not 30 s"):
        Lease(cluster.urls, "lease", "c", ttl_seconds=30)


def test_a_bad_shard_or_no_server_is_a_clear_error(cluster: NatsCluster) -> None:
    with pytest.raises(JournalError, match="shard"):
        JournalWriter.jetstream(cluster.urls, "no spaces")
    with pytest.raises(JournalError, match="NATS"):
        JournalWriter.jetstream(["nats://127.0.0.1:1"], "x", timeout_seconds=1.0)


T = TypeVar("T")


def serving_again(call: Callable[[], T], within: float = 30) -> T:
    """``call`` once the server accepts commands again: refused meanwhile (a standby, or
    JetStream electing a leader), never acknowledged and lost."""
    end = time.monotonic() + within
    while True:
        try:
            return call()
        except RpcError as err:
            assert err.reason == "JOURNAL_UNAVAILABLE", err
            assert time.monotonic() < end, f"not serving again in {within} s"
            time.sleep(0.1)


def orders(target: str) -> tuple[Client, str]:
    op = Client(target, OPERATOR_TOKEN)
    hour = 500_000
    # a server on a new stream may start as a standby (JetStream still electing the
    # stream's leader after an earlier test's restart of a NATS server): it refuses until
    # it takes the lease
    pid = serving_again(lambda: op.create_products(
        skus=["H100-SXM"], regions=["us-east"], from_hour=hour, to_hour=hour + 1),
        within=60)[0].product_id
    seller = Client(target, op.create_account("s", ["seller"]).token)
    seller.register_capacity("c", sku="H100-SXM", region="us-east", nodes=[("n0", 8)],
                             from_hour=hour, to_hour=hour + 1)
    return seller, pid


def test_a_server_recovers_from_the_stream_on_another_machine_after_a_lost_nats_server(
        tmp_path: Path, cluster: NatsCluster) -> None:
    log = Replicated(tuple(cluster.urls), "venue", 3)
    with serving(tmp_path / "a", replicated=log) as r:
        op = Client(r.target, OPERATOR_TOKEN)
        seller, pid = orders(r.target)
        placed = [seller.place_order(pid, "sell", f"2.{k:02d}", 1, cluster_id="c")
                  for k in range(4)]
        # one NATS server lost: a quorum of two still stores (and acknowledges) rounds,
        # once JetStream has elected new leaders where it must (commands may be refused
        # meanwhile, never acknowledged and lost)
        cluster.kill(2)
        try:
            for k in range(4):
                placed.append(serving_again(lambda k=k: seller.place_order(
                    pid, "sell", f"3.{k:02d}", 1, cluster_id="c")))
            assert len({o.order_id for o in placed}) == 8
            seq, before = op.state_hash()
        finally:
            cluster.restart(2)
    # another machine: a fresh data directory, the same shard's stream
    with serving(tmp_path / "b", replicated=log) as r:
        op = Client(r.target, OPERATOR_TOKEN)
        assert op.state_hash() == (seq, before)
        # and it goes on from there, appending after what it read (once it holds the
        # lease: the first server's release may not have reached NATS)
        serving_again(lambda: op.create_products(skus=["H100-SXM"], regions=["us-east"],
                                                 from_hour=500_001, to_hour=500_002))
        assert op.state_hash()[0] == seq + 1


def test_a_leader_cut_off_from_the_nats_quorum_stops_serving_and_serves_again_after(
        tmp_path: Path, cluster: NatsCluster) -> None:
    log = Replicated(tuple(cluster.urls), "quorum", 3)
    with serving(tmp_path / "a", replicated=log) as r:
        seller, pid = orders(r.target)
        placed = [seller.place_order(pid, "sell", "2.00", 1, cluster_id="c")]
        gw = r.server.host
        # two of three NATS servers lost: the lease cannot be renewed, so once its life
        # has passed (a standby elsewhere could hold it) the leader refuses commands,
        # keeping its journal, at once rather than after a round's timeout
        cluster.kill(1)
        cluster.kill(2)
        try:
            end = time.monotonic() + 60
            while gw.unavailable is None:
                assert time.monotonic() < end, "still serving without its lease"
                time.sleep(0.1)
            with pytest.raises(RpcError, match="lease") as refused:
                seller.place_order(pid, "sell", "2.01", 1, cluster_id="c")
            assert refused.value.reason == "JOURNAL_UNAVAILABLE"
        finally:
            cluster.restart(1)
            cluster.restart(2)
        # the quorum back: it renews (or takes the lease again, fencing) and serves
        placed.append(serving_again(lambda: seller.place_order(pid, "sell", "2.02", 1,
                                                               cluster_id="c"), within=60))
        assert [o.order_id for o in seller.list_orders()] == [o.order_id for o in placed]
        assert Client(r.target, OPERATOR_TOKEN).state_hash() == replayed(cluster.urls,
                                                                          "quorum")


class HealthProbe:
    """Checks the Market's health every 50 ms with a deadline of a second, on a thread of
    this process (so a server that holds the GIL while it waits stalls it too): every
    answer, or the error, with when it was asked and how long it took."""

    def __init__(self, target: str) -> None:
        import grpc
        from grpc_health.v1 import health_pb2, health_pb2_grpc
        self.samples: list[tuple[float, float, object]] = []
        self._stop = threading.Event()
        self._channel = grpc.insecure_channel(target)
        stub = health_pb2_grpc.HealthStub(self._channel)
        request = health_pb2.HealthCheckRequest(service="spotex.v1.Market")

        def run() -> None:
            while not self._stop.is_set():
                t0 = time.monotonic()
                try:
                    status: object = stub.Check(request, timeout=1.0).status
                except grpc.RpcError as err:
                    status = err.code().name
                self.samples.append((t0, time.monotonic() - t0, status))
                time.sleep(0.05)
        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def first(self, status: int, after: float, within: float) -> float:
        """When the first check asked after ``after`` answered ``status``."""
        end = time.monotonic() + within
        while time.monotonic() < end:
            for t0, took, s in list(self.samples):
                if t0 >= after and s == status:
                    return t0 + took
            time.sleep(0.01)
        raise AssertionError(f"no health check said {status} within {within} s")

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._channel.close()


def test_health_says_not_serving_as_the_engine_refuses_and_answers_during_an_election(
        tmp_path: Path, cluster: NatsCluster) -> None:
    """Health follows the engine's state when it changes, not at its next tick (2 s
    here), and answers within its deadline while the NATS quorum is lost with a round
    waiting on it (the writer then holds its state: read from the event loop, the whole
    process stalled until the round timed out, 10 s)."""
    from grpc_health.v1 import health_pb2
    serving_, not_serving = (health_pb2.HealthCheckResponse.SERVING,
                             health_pb2.HealthCheckResponse.NOT_SERVING)
    # (the lease's life is the bucket's, the same for every shard: the default, 3 s;
    # renewed every tick, 2 s here)
    log = Replicated(tuple(cluster.urls), "health", 3)
    with serving(tmp_path / "a", replicated=log, tick_seconds=2) as r:
        seller, pid = orders(r.target)
        op = Client(r.target, OPERATOR_TOKEN)
        buyer = Client(r.target, op.create_account("b", ["buyer"]).token, timeout=15,
                       resolve_timeout=1)
        gw = r.server.host
        probe = HealthProbe(r.target)
        stop = threading.Event()
        try:
            # the engine starts refusing (here: told so on the writer), and accepts again
            probe.first(serving_, 0, 10)
            t = time.monotonic()
            # (the round it happens in fails: its callers hear OUTCOME_UNKNOWN)
            gw.submit(lambda: setattr(gw, "unavailable", "a test")).exception(5)
            assert probe.first(not_serving, t, 5) - t < 0.5
            t = time.monotonic()
            gw.submit(lambda: setattr(gw, "unavailable", None)).result(5)
            assert probe.first(serving_, t, 5) - t < 0.5

            def trade() -> None:
                while not stop.is_set():
                    try:
                        buyer.place_order(pid, "buy", "1.00", 1)
                    except (RpcError, SpotexError):
                        pass
                    time.sleep(0.02)
            trader = threading.Thread(target=trade, daemon=True)
            trader.start()
            time.sleep(0.5)
            # the quorum lost with orders in flight: a round waits 10 s for its
            # acknowledgement, then fails; the engine refuses from then on
            t_lost = time.monotonic()
            cluster.kill(1)
            cluster.kill(2)
            try:
                end = time.monotonic() + 40
                while not gw.refusing:
                    assert time.monotonic() < end, "still serving without a quorum"
                    time.sleep(0.005)
                refusing = time.monotonic()
                said = probe.first(not_serving, refusing - 0.1, 5)
            finally:
                cluster.restart(1)
                cluster.restart(2)
            probe.first(serving_, said, 60)
            stop.set()
            trader.join(20)
        finally:
            stop.set()
            probe.close()
        assert said - refusing < 0.5, f"NOT_SERVING {said - refusing:.2f} s after refusing"
        during = [x for x in probe.samples if x[0] >= t_lost]
        failed = [x for x in during if not isinstance(x[2], int)]
        assert not failed, f"health checks not answered in time: {failed[:5]}"
        answered = [t0 + took for t0, took, _ in during]
        gap = max(b - a for a, b in zip([t_lost, *answered], answered, strict=False))
        assert gap < 1.0, f"no health answer for {gap:.2f} s during the election"


def _spotex_serve(data: Path, *args: str, timeout: float = 60
                  ) -> tuple[subprocess.CompletedProcess[str], float]:
    """``spotex serve`` with ``args`` to its end (it is expected to refuse to start), and
    how long it took."""
    import os
    spotex = str(Path(sys.executable).parent / "spotex")
    env = {"PATH": "/usr/bin:/bin", **{k: v for k, v in os.environ.items()
                                       if k == "PYTHONPATH"}}
    started = time.monotonic()
    out = subprocess.run([spotex, "serve", "--listen", f"127.0.0.1:{free_port()}",
                          "--data-dir", str(data), *args], capture_output=True, text=True,
                         timeout=timeout, env=env)
    return out, time.monotonic() - started


def _one_error_line(out: subprocess.CompletedProcess[str]) -> str:
    assert out.returncode != 0, out.stderr
    assert "Traceback" not in out.stderr, out.stderr
    errors = [x for x in out.stderr.splitlines() if x.startswith("Error: ")]
    assert len(errors) == 1, out.stderr
    return errors[0]


def test_an_engine_given_another_shard_s_stream_refuses_in_one_line_writing_nothing(
        tmp_path: Path, cluster: NatsCluster) -> None:
    log = Replicated(tuple(cluster.urls), "ident", 3)
    with serving(tmp_path / "one", replicated=log, shard_index=1) as r:
        serving_again(lambda: Client(r.target, OPERATOR_TOKEN).create_products(
            skus=["H100-SXM"], regions=["us-east"], from_hour=500_000, to_hour=500_001),
            within=60)
        seq, before = Client(r.target, OPERATOR_TOKEN).state_hash()
        # shard 2's engine, or an engine of no shard, given shard 1's stream: refused
        # before it writes anything (its data directory, the lease, a fence)
        from spotex.server.host import EngineHost
        with pytest.raises(JournalError, match="holds shard 1's records"):
            EngineHost(data_dir=tmp_path / "two", replicated=log, shard_index=2)
        assert not (tmp_path / "two").exists()
        out, _ = _spotex_serve(tmp_path / "three", "--journal-nats", ",".join(cluster.urls),
                               "--shard", "ident")
        assert "holds shard 1's records" in _one_error_line(out)
        assert "not shard 0's" in out.stderr
        assert not (tmp_path / "three").exists()
        # the shard's own leader went on undisturbed
        assert Client(r.target, OPERATOR_TOKEN).state_hash() == (seq, before)
        assert r.server.host.refusal is None


def test_an_engine_whose_nats_never_answers_refuses_in_one_line_writing_nothing(
        tmp_path: Path) -> None:
    import socket
    with socket.socket() as hole:  # takes connections, never says a word
        hole.bind(("127.0.0.1", 0))
        hole.listen(8)
        url = f"nats://127.0.0.1:{hole.getsockname()[1]}"
        out, took = _spotex_serve(tmp_path / "data", "--journal-nats", url, "--shard", "s1")
    line = _one_error_line(out)
    assert f"no NATS server answers at {url}" in line and "nothing was written" in line
    assert took < 30
    assert not (tmp_path / "data").exists()


def test_replay_reads_a_replicated_shard_from_its_stream_or_an_engine_s_data_directory(
        tmp_path: Path, cluster: NatsCluster) -> None:
    from click.testing import CliRunner

    from spotex.cli import main
    log = Replicated(tuple(cluster.urls), "rp", 3)
    with serving(tmp_path / "a", replicated=log) as r:
        op = Client(r.target, OPERATOR_TOKEN)
        seller, pid = orders(r.target)
        buyer = Client(r.target, op.create_account("b", ["buyer"]).token)
        for k in range(4):
            seller.place_order(pid, "sell", f"2.{k:02d}", 1, cluster_id="c")
        buyer.place_order(pid, "buy", "2.01", 3)  # trades twice, rests one
        op.take_snapshot()
        seller.place_order(pid, "sell", "2.50", 1, cluster_id="c")
        seq, state = op.state_hash()
        said = f"replayed to sequence {seq} ({seq} journal records kept); state hash {state}"
        for args in (["--nats", ",".join(cluster.urls), "--stream", "spotex-rp"],
                     ["--nats", cluster.urls[0], "--stream", "rp"],
                     [str(tmp_path / "a")]):
            out = CliRunner().invoke(main, ["replay", *args, "--product", pid, "--verify"])
            assert out.exit_code == 0, out.output
            assert said in " ".join(out.output.split()), out.output
            assert "2 trades" in out.output
        # the local snapshot, checked against the stream
        assert "yes" in out.output and "NO" not in out.output
        # a sequence before the end
        out = CliRunner().invoke(main, ["replay", str(tmp_path / "a"), "--seq", "2"])
        assert out.exit_code == 0 and "replayed to sequence 2" in out.output, out.output
    bad = CliRunner().invoke(main, ["replay", "--nats", cluster.urls[0]])
    assert bad.exit_code != 0 and "--nats and --stream go together" in bad.output
    bad = CliRunner().invoke(main, ["replay", "--nats", cluster.urls[0], "--stream", "none"])
    assert bad.exit_code == 1 and "stream not found" in bad.output, bad.output
    assert not bad.exception or isinstance(bad.exception, SystemExit)


def test_a_command_in_the_round_that_lost_the_lease_is_refused_and_never_stored(
        tmp_path: Path, cluster: NatsCluster) -> None:
    from spotex.client.calls import _order_request
    log = Replicated(tuple(cluster.urls), "lapse", 3)
    with serving(tmp_path / "a", replicated=log) as r:
        seller, pid = orders(r.target)
        kept = seller.place_order(pid, "sell", "2.00", 1, cluster_id="c")
        gw = r.server.host
        account = next(a.account_id for a in Client(r.target, OPERATOR_TOKEN)
                       .list_accounts() if a.name == "s")
        body = _order_request(pid, "sell", "2.50", 1, cluster_id="c").SerializeToString()
        queued = threading.Event()

        async def place() -> bytes:
            f = gw.command_async("place", account, body, seller=True)
            queued.set()
            return await f
        # the writer busy: the order, then the lease found lost, queue up and run in one
        # round: the order is applied and journaled (not yet stored) before the round fails
        busy = gw.submit(lambda: time.sleep(0.5))
        placing = asyncio.run_coroutine_threadsafe(place(), r.loop)
        assert queued.wait(10)
        gw.submit(lambda: setattr(gw, "unavailable", "lost the lease of the shard (test)"))
        busy.result(10)
        with pytest.raises(SpotexError, match="did not confirm") as e:
            placing.result(10)
        assert e.value.reason == "OUTCOME_UNKNOWN"
        # the next ticks rebuild from the stream (the lease still held): the refused order
        # is neither in the venue nor in the stream, the one acknowledged is
        serving_again(lambda: seller.get_order(kept.order_id))
        serving_again(lambda: seller.place_order(pid, "sell", "2.01", 1, cluster_id="c"))
        assert [o.price for o in seller.list_orders()] == [Decimal("2.00"), Decimal("2.01")]
        assert Client(r.target, OPERATOR_TOKEN).state_hash() == replayed(cluster.urls, "lapse")


def test_a_new_machine_starts_from_the_snapshot_in_jetstream_and_reads_only_the_rest(
        tmp_path: Path, cluster: NatsCluster) -> None:
    leader = serve(tmp_path / "a", cluster.urls, "snap")
    try:
        op = Client(leader.target, OPERATOR_TOKEN)
        seller, pid = orders(leader.target)
        for k in range(5):
            seller.place_order(pid, "sell", f"2.{k:02d}", 1, cluster_id="c")
        at, _ = op.take_snapshot()  # kept in the object store too
        for k in range(3):
            seller.place_order(pid, "sell", f"3.{k:02d}", 1, cluster_id="c")
        seq, before = op.state_hash()
    finally:
        leader.kill()  # no snapshot on the way out
    with serving(tmp_path / "b", replicated=Replicated(tuple(cluster.urls), "snap", 3)) as r:
        # it starts as a standby (the killed leader's lease has not expired yet) from the
        # snapshot, reading the stream only after it
        recovery = r.server.host.recovery
        assert recovery["snapshot_seq"] == at > 0
        assert recovery["replayed"] == seq - at
        assert Client(r.target, OPERATOR_TOKEN).state_hash() == (seq, before)


def test_cluster_up_runs_two_shards_with_standbys_behind_a_gateway_and_stops_them_all(
        tmp_path: Path) -> None:
    import re
    spotex = str(Path(sys.executable).parent / "spotex")
    proc = subprocess.Popen([spotex, "cluster", "up", "--dir", str(tmp_path), "--nats-port",
                             "0", "--listen", "127.0.0.1:0", "--operator-token", "tok",
                             "--route", "H100-SXM/us-east=1", "--route", "B200/us-east=2",
                             # the gateway's gate: the engines have none, and hold hours
                             "--auction-schedule", "12:00"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    said: list[str] = []
    try:
        assert proc.stdout is not None
        target = None
        while target is None:
            line = proc.stdout.readline()
            assert line or proc.poll() is None, "".join(said)
            said.append(line)
            if m := re.search(r"^gateway: (\S+:\d+)", line):
                target = m.group(1)
        threading.Thread(target=lambda: said.extend(proc.stdout or ()), daemon=True).start()
        engines = {int(m.group(1)): m.group(2).split(", ") for m in
                   (re.search(r"^shard (\d+): .* engines (.*) \(logs", x) for x in said) if m}
        assert sorted(engines) == [1, 2] and all(len(a) == 2 for a in engines.values())
        op = Client(target, "tok")
        made = op.create_products(skus=["H100-SXM", "B200"], regions=["us-east"],
                                  from_hour=500_000, to_hour=500_002)
        assert len(made) == 4
        assert {p.state for p in made} == {"auction"}, "held for the gateway's auction"
        auction = op.run_auction(500_000, 500_001, time_limit=1)
        for index, sku in ((1, "H100-SXM"), (2, "B200")):
            leader = Client(engines[index][0], "tok")
            assert {p.product_id.split("/")[0] for p in leader.list_products()} == {sku}
            assert leader.auction_result(auction.auction_id).from_hour == 500_000
            # the standby follows the shard's stream
            standby = Client(engines[index][1], "tok")
            end = time.monotonic() + 30
            while standby.state_hash() != leader.state_hash():
                assert time.monotonic() < end, "the standby does not follow"
                time.sleep(0.1)
        configs = sorted((tmp_path / "nats").glob("n*/nats.conf"))
        assert len(configs) == 3
        assert all("sync_interval: always" in c.read_text() for c in configs)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(90)
    out = "".join(said)
    assert proc.returncode == 0, out
    assert "NATS JetStream: nats://127.0.0.1:" in out
    logs = sorted(tmp_path.glob("shard*.log"))
    assert len(logs) == 4 and not [x for x in logs if "every day at" in x.read_text()], (
        "an engine under the gateway runs no schedule of its own")
    # the engines and the NATS servers went with it
    assert not [p for p in Path("/proc").glob("[0-9]*/cmdline")
                if str(tmp_path).encode() in _read(p)]


def _read(p: Path) -> bytes:
    try:
        return p.read_bytes()
    except OSError:
        return b""  # gone meanwhile


def wait_up(e: Engine, timeout: float = 60) -> None:
    """Until the engine answers (a leader or a standby)."""
    end = time.monotonic() + timeout
    while True:
        try:
            Client(e.target, OPERATOR_TOKEN).state_hash()
            return
        except RpcError:
            assert time.monotonic() < end and e.alive, e.text()[-2000:]
            time.sleep(0.1)


def serve(data: Path, urls: list[str], shard: str) -> Engine:
    """``spotex serve`` in a process of its own (so that it can be SIGKILLed), journaling
    to the shard's stream."""
    e = Engine(data, f"127.0.0.1:{free_port()}", {"SPOTEX_OPERATOR_TOKEN": OPERATOR_TOKEN},
               "--journal-nats", ",".join(urls), "--shard", shard)
    try:
        wait_up(e)
    except BaseException:
        e.kill()
        raise
    return e


def leading(engines: list[Engine], within: float = 30) -> Engine:
    """The engine of a shard that serves the Market (its health says so), once it is the
    only one: the leader (a deposed leader stops serving on its next tick)."""
    import grpc
    from grpc_health.v1 import health_pb2, health_pb2_grpc
    end = time.monotonic() + within
    while time.monotonic() < end:
        serving = []
        for e in engines:
            if not e.alive:
                continue
            with grpc.insecure_channel(e.target) as ch:
                try:
                    r = health_pb2_grpc.HealthStub(ch).Check(
                        health_pb2.HealthCheckRequest(service="spotex.v1.Market"), timeout=2)
                except grpc.RpcError:
                    continue
            if r.status == health_pb2.HealthCheckResponse.SERVING:
                serving.append(e)
        if len(serving) == 1:
            return serving[0]
        time.sleep(0.1)
    raise AssertionError("no engine of the shard leads alone")


def replayed(urls: list[str], shard: str) -> tuple[int, str]:
    """A fresh exchange's sequence and state hash from the shard's stream."""
    from spotex._core import Exchange
    end = time.monotonic() + 30
    while True:
        try:  # a NATS server just lost: the stream may be electing its leader
            rows = read_jetstream(urls, shard, timeout_seconds=10)
            break
        except JournalError:
            if time.monotonic() > end:
                raise
            time.sleep(0.5)
    fresh = Exchange()
    for s, ts, command, _ in rows:
        fresh.replay(s, ts, command)
    return fresh.sequence, fresh.state_hash()


def test_a_standby_takes_over_when_the_leader_is_killed_and_loses_nothing_acknowledged(
        tmp_path: Path, cluster: NatsCluster) -> None:
    import random

    from spotex.server.accounts import Accounts

    rng = random.Random(11)
    # the accounts are provisioned to both servers (they are not in the stream)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    accounts = Accounts(tmp_path / "a" / "accounts.json")
    tokens = [accounts.create(f"t{i}", ["buyer", "seller"])[1] for i in range(4)]
    (tmp_path / "b" / "accounts.json").write_bytes((tmp_path / "a" / "accounts.json")
                                                   .read_bytes())
    leader = serve(tmp_path / "a", cluster.urls, "failover")
    standby = serve(tmp_path / "b", cluster.urls, "failover")
    try:
        op = Client(leader.target, OPERATOR_TOKEN)
        pid = op.create_products(skus=["H100-SXM"], regions=["us-east"], from_hour=500_000,
                                 to_hour=500_001)[0].product_id
        # the standby refuses commands, naming the leader
        with pytest.raises(RpcError, match=f"led by {leader.target}"):
            Client(standby.target, tokens[0]).place_order(pid, "buy", "1.00", 1)

        acked: dict[int, int] = {}  # order id -> account's token index
        stop = threading.Event()

        def trader(k: int) -> None:
            # no lookups of an unknown outcome: they could only ask the leader killed
            client = Client(leader.target, tokens[k], timeout=5, resolve_timeout=0)
            n = 0
            while not stop.is_set() and n < 400:
                n += 1
                try:
                    o = client.place_order(pid, "buy", f"1.{n % 90 + 10}", 1,
                                           client_order_id=f"t{k}-{n}")
                except RpcError:
                    continue  # not acknowledged: may or may not be in the stream
                assert o.order_id not in acked, "an order acknowledged twice"
                acked[o.order_id] = k
        threads = [threading.Thread(target=trader, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        time.sleep(rng.uniform(0.5, 1.5))
        cluster.kill(rng.randrange(3))  # a NATS server lost
        time.sleep(rng.uniform(0.3, 1.0))
        leader.kill()  # the leader engine lost
        killed = time.monotonic()
        stop.set()
        for t in threads:
            t.join(30)
        assert len(acked) > 20
        # the standby serves within a bounded time (30 s): the lease's life, plus NATS electing
        # new leaders where the server killed led, plus a few ticks
        new = Client(standby.target, tokens[0], timeout=5)
        while True:
            try:
                new.place_order(pid, "buy", "1.00", 1, client_order_id="after")
                break
            except RpcError:
                assert time.monotonic() - killed < 30, standby.text()[-2000:]
                time.sleep(0.05)
        took = time.monotonic() - killed
        print(f"standby serving {took:.2f} s after the leader was killed")
        assert took < 30
        # every acknowledged order is there, once
        for oid, k in acked.items():
            got = Client(standby.target, tokens[k]).get_order(oid)
            assert got.order_id == oid
        # the new leader's state is a fresh replay of the stream
        assert Client(standby.target, OPERATOR_TOKEN).state_hash() == replayed(
            cluster.urls, "failover")
    finally:
        stop.set()
        leader.stop()
        standby.stop()
        for i, node in enumerate(cluster.nodes):
            if node.proc is None:
                cluster.restart(i)


def test_two_shards_with_standbys_lose_a_leader_and_a_nats_server_and_nothing_acknowledged(
        tmp_path: Path, cluster: NatsCluster) -> None:
    """Three NATS servers, two shards (a leader and a standby each, as processes) behind a
    gateway, four traders on both shards at once. At random moments one shard's leader
    is SIGKILLed, then one NATS server. No acknowledged order is lost or acknowledged
    twice, the shard serves again through the gateway within 30 s, and each shard's state
    is a fresh replay of its stream."""
    import random

    from conftest import Collector, on_thread

    from spotex.cluster.gateway import ShardGateway
    from spotex.cluster.routes import Routes
    from spotex.server.limits import Limits

    rng = random.Random()
    seed = rng.randrange(1 << 30)
    rng.seed(seed)
    print("seed", seed)
    limits = Limits(orders_per_second=1e6, order_burst=1_000_000)
    shards = Shards(tmp_path, cluster.urls, "gw-token", OPERATOR_TOKEN, shards=2,
                    standbys=1, replicas=3).start()
    routes = Routes(shards.specs(), {"H100/us-east": 1, "B200/us-east": 2})
    stop = threading.Event()
    try:
        with on_thread(lambda: ShardGateway.start(
                "127.0.0.1:0", routes, "gw-token", tmp_path / "gateway", OPERATOR_TOKEN,
                limits=limits, failover_seconds=30, access_log=False),
                lambda g: g.stop(0.5)) as (gw, _):
            target = f"127.0.0.1:{gw.port}"
            op = Client(target, OPERATOR_TOKEN, timeout=30)
            pids = [op.create_products(skus=[sku], regions=["us-east"], from_hour=500_000,
                                       to_hour=500_001)[0].product_id
                    for sku in ("H100", "B200")]
            tokens = [op.create_account(f"t{i}", ["buyer"]).token for i in range(4)]
            acked: dict[int, tuple[int, str]] = {}  # order id -> (trader, client order id)
            lock = threading.Lock()

            def trader(k: int) -> None:
                client = Client(target, tokens[k], timeout=5)
                n = 0
                while not stop.is_set() and n < 400:
                    n += 1
                    coid = f"t{k}-{n}"
                    try:
                        o = client.place_order(pids[n % 2], "buy", f"1.{n % 90 + 10}", 1,
                                               client_order_id=coid)
                    except RpcError:
                        continue  # not acknowledged: may or may not be in the stream
                    with lock:
                        assert o.order_id not in acked, "an order acknowledged twice"
                        acked[o.order_id] = (k, coid)
            threads = [threading.Thread(target=trader, args=(k,)) for k in range(4)]
            for t in threads:
                t.start()
            victim = rng.choice([1, 2])
            # a market-data subscriber through the gateway, on the shard to lose its leader
            watcher = Client(target, tokens[1], timeout=30)
            md = Collector(watcher.market_data([pids[victim - 1]]))
            time.sleep(rng.uniform(0.5, 1.5))
            shards.engines[victim][0].kill()  # a shard's leader engine lost
            killed = time.monotonic()
            time.sleep(rng.uniform(0.2, 1.0))
            cluster.kill(rng.randrange(3))  # and a NATS server
            # the shard serves again through the gateway: its standby took the lease
            client = Client(target, tokens[0], timeout=5)
            while True:
                try:
                    o = client.place_order(pids[victim - 1], "buy", "1.00", 1,
                                           client_order_id="after")
                    break
                except RpcError as err:
                    assert time.monotonic() - killed < 30, (err, shards.engines[victim][1]
                                                            .text()[-3000:])
                    time.sleep(0.05)
            took = time.monotonic() - killed
            print(f"shard {victim} serving {took:.2f} s after its leader was killed")
            assert took < 30 and o.order_id >> 48 == victim
            # the subscriber resubscribed to the new leader (a fresh snapshot) and sees the
            # book change after the failover: the bid at 1.00 no trader else sends
            one = Decimal("1.00")
            md.wait_for(lambda es: any(
                (e.kind == "level" and e.price == one) or (e.kind == "snapshot" and e.book
                                                           and one in {x.price for x in
                                                                       e.book.bids})
                for e in es), timeout=30)
            watcher.close()
            stop.set()
            for t in threads:
                t.join(60)
            assert len(acked) > 20
            # every acknowledged order is on its shard, once (by client order id too)
            for k in range(4):
                listed = Client(target, tokens[k], timeout=30).list_orders()
                mine = {oid for oid, (who, _) in acked.items() if who == k}
                assert mine <= {x.order_id for x in listed}
                coids = [x.client_order_id for x in listed]
                assert len(coids) == len(set(coids))
            # each shard's leader holds a fresh replay of its stream (a shard whose
            # leader could not renew its lease while NATS elected may have a new one too)
            for index, es in shards.engines.items():
                leader = leading(es)
                assert Client(leader.target, OPERATOR_TOKEN, timeout=30).state_hash() == (
                    replayed(cluster.urls, f"s{index}")), index
    finally:
        stop.set()
        shards.stop()
        for i, node in enumerate(cluster.nodes):
            if node.proc is None:
                cluster.restart(i)
