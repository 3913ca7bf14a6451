"""Placement terms: where a bid's GPUs may go. A bid with a ``level`` fills all in one
domain at that level: one cluster, and there nodes that share their domain. A node's
domain is named as the engine names it (``NodeSpec::domain_at``), since the engine
checks every fill against it and drops one that breaks it:

- ``cluster``: "" (the whole cluster is one domain);
- ``node``: "node:" and the node's id;
- ``block``, ``rack``, ``nvlink_domain``: the labels from the block down to that level
  joined by "/" (block; block/rack; block/rack/domain), or "node:" and the node's id
  when the label of that level itself is empty (the node shares it with no other).

A bid ``near`` an allocation (cluster index, node index) fills on that cluster only and,
with a level, in the domain there that holds that node; a cluster not in the view (or,
with a level, a node not in the cluster) leaves it nowhere to fill.

In this optimiser a bid with a level fills as one fill: a block whole in one domain, a
one-hour bid's gangs (as many as it gets) in one domain of one cluster."""

from __future__ import annotations

from typing import Any

from .model import LEVELS, Bid, Cluster, View


def domain_of(cluster: Cluster, node: int, level: str) -> str:
    """The name of the domain holding ``node`` (its index) at ``level``."""
    if level == "cluster":
        return ""
    name = cluster.nodes[node][0]
    if level == "node":
        return f"node:{name}"
    block, rack, nvlink = cluster.places[node] if node < len(cluster.places) else ("", "", "")
    parts = {"block": (block,), "rack": (block, rack), "nvlink_domain": (block, rack, nvlink)}
    labels = parts[level]
    if not labels[-1]:
        return f"node:{name}"
    return "/".join(labels)


class _Places:
    """A view's domains, worked out as bids ask for them."""

    def __init__(self, view: View) -> None:
        self.view = view
        # (cluster, level) -> domain name -> its nodes (indices, in order), by name
        self._domains: dict[tuple[int, str], dict[str, tuple[int, ...]]] = {}

    def domains(self, c: int, level: str) -> dict[str, tuple[int, ...]]:
        """Every domain of cluster ``c`` at ``level``, by name, with its nodes."""
        key = (c, level)
        if key not in self._domains:
            cluster = self.view.clusters[c]
            out: dict[str, list[int]] = {}
            for n in range(len(cluster.nodes)):
                out.setdefault(domain_of(cluster, n, level), []).append(n)
            self._domains[key] = {d: tuple(out[d]) for d in sorted(out)}
        return self._domains[key]

    def clusters(self, b: Bid, mine: list[int]) -> list[int]:
        """Of the clusters of the bid's family ``mine``, those it may fill on."""
        if b.near is None:
            return mine
        c, n = b.near
        if c not in mine or b.level and not 0 <= n < len(self.view.clusters[c].nodes):
            return []
        return [c]

    def allowed(self, b: Bid, c: int) -> dict[str, tuple[int, ...]] | None:
        """The domains a fill of ``b`` on cluster ``c`` may lie in, by name (None: any of
        its nodes; a bid without a level)."""
        if not b.level:
            return None
        every = self.domains(c, b.level)
        if b.near is None:
            return every
        if b.near[0] != c or not 0 <= b.near[1] < len(self.view.clusters[c].nodes):
            return {}
        name = domain_of(self.view.clusters[c], b.near[1], b.level)
        return {name: every[name]}


def check_levels(view: View) -> None:
    for b in view.bids:
        if b.level and b.level not in LEVELS:
            raise ValueError(f"bid {b.order_id}: placement level {b.level!r}; one of "
                             f"{', '.join(LEVELS)} (or none)")


class _Zones:
    """Domains for the program: per cluster and level, the domains whose nodes are in
    the same state (as many nodes of each size with the same free masks) are one zone,
    alike for any bid (at venue scale most of a cluster's domains are untouched and one
    zone); a domain some bid must be ``near`` is a zone of its own."""

    def __init__(self, view: View, places: _Places) -> None:
        self.view = view
        self.places = places
        # (cluster, level) -> the domains near bids need there
        self.near: dict[tuple[int, str], set[str]] = {}
        for b in view.bids:
            if b.level and b.near is not None:
                c, n = b.near
                if 0 <= c < len(view.clusters) and 0 <= n < len(view.clusters[c].nodes):
                    self.near.setdefault((c, b.level), set()).add(
                        domain_of(view.clusters[c], n, b.level))
        self._zones: dict[tuple[int, str], list[tuple[str, ...]]] = {}
        # (cluster, level, domain) -> its nodes' states: [(how many, GPUs, free masks)]
        self._states: dict[tuple[int, str, str], list[tuple[int, int, tuple[int, ...]]]] = {}

    def states(self, c: int, level: str, name: str) -> list[tuple[int, int, tuple[int, ...]]]:
        key = (c, level, name)
        if key not in self._states:
            nodes = self.view.clusters[c].nodes
            count: dict[tuple[int, tuple[int, ...]], int] = {}
            for n in self.places.domains(c, level)[name]:
                state = (nodes[n][1], nodes[n][2])
                count[state] = count.get(state, 0) + 1
            self._states[key] = sorted((k, g, masks) for (g, masks), k in count.items())
        return self._states[key]

    def zones(self, c: int, level: str) -> list[tuple[str, ...]]:
        """Cluster ``c``'s zones at ``level``: each its domains' names, by name."""
        if (c, level) not in self._zones:
            near = self.near.get((c, level), set())
            alike: dict[Any, list[str]] = {}
            for name in self.places.domains(c, level):
                key = ("near", name) if name in near else tuple(self.states(c, level, name))
                alike.setdefault(key, []).append(name)
            self._zones[c, level] = sorted(tuple(names) for names in alike.values())
        return self._zones[c, level]

    def for_bid(self, b: Bid, c: int) -> list[tuple[str, ...]]:
        """The zones a fill of ``b`` (with a level) on cluster ``c`` may use."""
        allowed = self.places.allowed(b, c) or {}
        if b.near is None:
            return self.zones(c, b.level)
        return [(name,) for name in allowed]

    def room(self, c: int, level: str, name: str, start: int, hours: int, gang: int) -> int:
        """Gangs of ``gang`` one domain holds free through ``hours`` from ``start``,
        nothing else placed."""
        total = 0
        for k, g, masks in self.states(c, level, name):
            mask = (1 << g) - 1
            for h in range(start, start + hours):
                mask &= masks[h]
            total += k * (mask.bit_count() // gang)
        return total

    def capacity(self, c: int, level: str, names: tuple[str, ...], hour: int) -> int:
        """GPUs free in ``hour`` in the domains ``names`` (a zone: all in one state)."""
        return len(names) * sum(k * (masks[hour] & ((1 << g) - 1)).bit_count()
                                for k, g, masks in self.states(c, level, names[0]))
