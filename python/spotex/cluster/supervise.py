"""``spotex cluster up``'s supervisor: it watches every process the command started
(the NATS servers and the engines), logs each exit (which process, its pid, its exit
code or signal), and starts a dead one again as it was: an engine with the same options
and data directory (it finds the shard's lease held by the engine that took over, and
follows it as a standby), a NATS server with its configuration (the same ports, the
same store). A process that keeps dying is started again after 0.5 s, then 1, 2, 4, 8
and 10 s at most; once it has run for 30 s the wait is 0.5 s again. Nothing is
started once the supervisor stops (the command stopping), so what it stops stays
stopped."""

from __future__ import annotations

from spotex.cluster.nats import NatsCluster, Node
from spotex.cluster.up import Engine, Shards
from spotex.server.supervise import Supervisor, Watched

__all__ = ["Supervisor", "Watched", "supervisor_of"]


def _nats_server(cluster: NatsCluster, node: Node) -> Watched:
    return Watched(f"nats-server {node.name} ({node.url})", lambda: node.proc,
                   lambda: cluster.start_node(node))


def _engine(name: str, e: Engine) -> Watched:
    return Watched(f"{name} ({e.target})", lambda: e.proc, e.start)


def supervisor_of(nats: NatsCluster, shards: Shards) -> Supervisor:
    """Every NATS server of ``nats`` and every engine of ``shards``, watched."""
    watched = [_nats_server(nats, n) for n in nats.nodes]
    for index, engines in shards.engines.items():
        watched += [_engine(f"engine {k} of shard {index}", e)
                    for k, e in enumerate(engines)]
    return Supervisor(watched)
