"""Which shard a call belongs to: the shards and their engines' addresses as the
operator gives them (``--shard``, ``--route``), and the routing of products, SKU-region
families and ids (a shard numbers its ids from its index << 48)."""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from typing import Any

from spotex.server.host import MAX_SHARDS, SHARD_BITS


class RouteError(ValueError):
    """A shard list or route that cannot be used."""


@dataclass(frozen=True)
class ShardSpec:
    index: int  # 1 to 31: the shard's ids are numbered from index << 48
    addresses: tuple[str, ...]  # its engines (leader and standbys), host:port


def parse_shard(text: str) -> ShardSpec:
    """``INDEX=HOST:PORT[,HOST:PORT...]``."""
    index, sep, rest = text.partition("=")
    addresses = tuple(a.strip() for a in rest.split(",") if a.strip())
    if not sep or not index.strip().isdigit() or not addresses:
        raise RouteError(f"{text!r}: a shard is INDEX=HOST:PORT[,HOST:PORT...]")
    for a in addresses:
        if not re.fullmatch(r"\S+:\d{1,5}", a):
            raise RouteError(f"{text!r}: {a!r} is not HOST:PORT")
    n = int(index)
    if not 1 <= n <= MAX_SHARDS:
        raise RouteError(f"{text!r}: a shard's index is 1 to {MAX_SHARDS}")
    return ShardSpec(n, addresses)


def parse_route(text: str) -> tuple[str, int]:
    """``SKU/REGION=INDEX``."""
    market, sep, index = text.partition("=")
    if not sep or market.count("/") != 1 or not index.strip().isdigit():
        raise RouteError(f"{text!r}: a route is SKU/REGION=INDEX")
    return market.strip(), int(index)


class Routes:
    """Which shard owns what: (SKU, region) pairs by an explicit route, else by a
    stable hash (CRC-32 of ``SKU/region``) over the shards in index order; ids by their
    top bits. Every gateway given the same shards and routes routes the same."""

    def __init__(self, shards: list[ShardSpec], routes: dict[str, int] | None = None) -> None:
        if not shards:
            raise RouteError("a gateway needs at least one shard (--shard)")
        indices = [s.index for s in shards]
        if len(set(indices)) != len(indices):
            raise RouteError("two shards with one index")
        self.shards = sorted(shards, key=lambda s: s.index)
        self.indices = [s.index for s in self.shards]
        self.routes = dict(routes or {})
        for market, index in self.routes.items():
            if index not in self.indices:
                raise RouteError(f"route {market}={index}: no shard {index}")

    def of_market(self, sku: str, region: str) -> int:
        key = f"{sku}/{region}"
        if key in self.routes:
            return self.routes[key]
        return self.indices[zlib.crc32(key.encode()) % len(self.indices)]

    def of_product(self, product_id: str) -> int:
        """A malformed id goes to the first shard, which refuses it as the engine does."""
        parts = product_id.split("/")
        if len(parts) != 3:
            return self.indices[0]
        return self.of_market(parts[0], parts[1])

    def of_id(self, id_: int) -> int:
        """The shard that numbered an order or trade id (an id of no shard: the first,
        which answers that it knows no such order)."""
        index = id_ >> SHARD_BITS
        return index if index in self.indices else self.indices[0]

    def of_order(self, o: Any) -> int:
        """A PlaceOrderRequest's shard: its product's, or a resale's allocation's."""
        if not o.product_id and o.resell_trade_id:
            return self.of_id(o.resell_trade_id)
        return self.of_product(o.product_id)
