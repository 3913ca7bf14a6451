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
from pathlib import Path
from typing import TypeVar

import nats
import pytest
from conftest import OPERATOR_TOKEN, serving

from spotex._core import JournalError, JournalWriter, read_jetstream
from spotex.client import Client, RpcError
from spotex.gateway import Replicated
from spotex.nats_cluster import NatsCluster, free_port


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NatsCluster]:
    with NatsCluster(tmp_path_factory.mktemp("nats"), 3) as c:
        yield c


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
    async def damage() -> None:
        nc = await nats.connect(cluster.urls)
        await nc.jetstream().publish("spotex.fence.journal", b"\x05\x00\x00\x00garbage")
        await nc.close()
    asyncio.run(damage())
    with pytest.raises(JournalError, match="message 3"):
        read_jetstream(cluster.urls, "fence")


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
    pid = op.create_products(skus=["H100-SXM"], regions=["us-east"], from_hour=hour,
                             to_hour=hour + 1)[0].product_id
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


def test_a_new_machine_starts_from_the_snapshot_in_jetstream_and_reads_only_the_rest(
        tmp_path: Path, cluster: NatsCluster) -> None:
    leader = Serve(tmp_path / "a", cluster.urls, "snap")
    try:
        leader.wait_up()
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
        recovery = r.server.gateway.recovery
        assert recovery["snapshot_seq"] == at > 0
        assert recovery["replayed"] == seq - at
        assert Client(r.target, OPERATOR_TOKEN).state_hash() == (seq, before)


def test_cluster_up_runs_a_venue_on_three_nats_servers_and_stops_them_all(
        tmp_path: Path) -> None:
    target = f"127.0.0.1:{free_port()}"
    spotex = str(Path(sys.executable).parent / "spotex")
    proc = subprocess.Popen([spotex, "cluster", "up", "--dir", str(tmp_path), "--nats-port",
                             "0", "--listen", target, "--operator-token", "tok"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        op = Client(target, "tok")
        end = time.monotonic() + 60
        while True:
            try:
                op.state_hash()
                break
            except RpcError:
                assert time.monotonic() < end and proc.poll() is None, "not up"
                time.sleep(0.2)
        op.create_products(skus=["H100-SXM"], regions=["us-east"], from_hour=500_000,
                           to_hour=500_001)
        configs = sorted((tmp_path / "nats").glob("n*/nats.conf"))
        assert len(configs) == 3
        assert all("sync_interval: always" in c.read_text() for c in configs)
    finally:
        proc.send_signal(signal.SIGTERM)
        out = proc.communicate(timeout=60)[0].decode()
    assert proc.returncode == 0, out
    assert "NATS JetStream: nats://127.0.0.1:" in out
    # the NATS servers went with it
    assert not [p for p in Path("/proc").glob("[0-9]*/cmdline")
                if str(tmp_path).encode() in _read(p)]


def _read(p: Path) -> bytes:
    try:
        return p.read_bytes()
    except OSError:
        return b""  # gone meanwhile


class Serve:
    """``spotex serve`` in a process of its own (so that it can be SIGKILLed), journaling
    to the shard's stream."""

    def __init__(self, data: Path, urls: list[str], shard: str) -> None:
        self.target = f"127.0.0.1:{free_port()}"
        self.log = data.with_suffix(".log")
        spotex = str(Path(sys.executable).parent / "spotex")
        with open(self.log, "wb") as out:
            self.proc = subprocess.Popen(
                [spotex, "serve", "--listen", self.target, "--data-dir", str(data),
                 "--operator-token", OPERATOR_TOKEN, "--journal-nats", ",".join(urls),
                 "--shard", shard, "--no-access-log"],
                stdout=out, stderr=subprocess.STDOUT)

    def wait_up(self, timeout: float = 60) -> None:
        end = time.monotonic() + timeout
        while True:
            try:
                Client(self.target, OPERATOR_TOKEN).state_hash()
                return
            except RpcError:
                assert time.monotonic() < end and self.proc.poll() is None, \
                    self.log.read_text()[-2000:]
                time.sleep(0.1)

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


def test_a_standby_takes_over_when_the_leader_is_killed_and_loses_nothing_acknowledged(
        tmp_path: Path, cluster: NatsCluster) -> None:
    import random

    from spotex.accounts import Accounts

    rng = random.Random(11)
    # the accounts are provisioned to both servers (they are not in the stream)
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    accounts = Accounts(tmp_path / "a" / "accounts.json")
    tokens = [accounts.create(f"t{i}", ["buyer", "seller"])[1] for i in range(4)]
    (tmp_path / "b" / "accounts.json").write_bytes((tmp_path / "a" / "accounts.json")
                                                   .read_bytes())
    leader = Serve(tmp_path / "a", cluster.urls, "failover")
    leader.wait_up()
    standby = Serve(tmp_path / "b", cluster.urls, "failover")
    standby.wait_up()
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
            client = Client(leader.target, tokens[k], timeout=5)
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
                assert time.monotonic() - killed < 30, standby.log.read_text()[-2000:]
                time.sleep(0.05)
        took = time.monotonic() - killed
        print(f"standby serving {took:.2f} s after the leader was killed")
        assert took < 30
        # every acknowledged order is there, once
        for oid, k in acked.items():
            got = Client(standby.target, tokens[k]).get_order(oid)
            assert got.order_id == oid
        # the new leader's state is a fresh replay of the stream
        seq, state = Client(standby.target, OPERATOR_TOKEN).state_hash()
        from spotex._core import Exchange
        fresh = Exchange()
        for s, ts, command, _ in read_jetstream(cluster.urls, "failover"):
            fresh.replay(s, ts, command)
        assert (fresh.sequence, fresh.state_hash()) == (seq, state)
    finally:
        stop.set()
        leader.stop()
        standby.stop()
        for i, node in enumerate(cluster.nodes):
            if node.proc is None:
                cluster.restart(i)
