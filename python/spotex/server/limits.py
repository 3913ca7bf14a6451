"""Limits that protect the engine and the venue, with safe defaults. All are set from
``spotex serve`` options; the README lists them."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Limits:
    max_message_bytes: int = 4 << 20
    """Largest request the server accepts (gRPC refuses bigger ones with RESOURCE_EXHAUSTED)."""
    max_open_orders_per_account: int = 10_000
    """Resting orders one account may have at once."""
    orders_per_second: float = 2_000.0
    """Sustained order-entry rate per account (place, amend, cancel; each bulk order counts)."""
    order_burst: int = 4_000
    """Orders an account may send at once above the sustained rate."""
    max_string: int = 128
    """Longest id or name in a request (product, cluster, node, account name...)."""
    max_list: int = 10_000
    """Most items in a request list (nodes, product ids, SKUs x regions...)."""
    max_orders_per_message: int = 1_000
    """Most orders in one SubmitOrders message."""
    max_products_per_call: int = 20_000
    """Most products one CreateProducts call may list."""
    subscriber_queue: int = 10_000
    """Messages a stream subscriber may fall behind before it is dropped."""


class TokenBucket:
    """Per-account order rate: ``rate`` per second sustained, ``burst`` at once."""

    def __init__(self, rate: float, burst: int) -> None:
        self.rate, self.burst = rate, burst
        self.level: dict[int, tuple[float, float]] = {}  # account -> (tokens, when)

    def take(self, account: int, n: int, now: float) -> float:
        """Takes ``n`` tokens; returns 0.0, or the seconds to wait before retrying."""
        tokens, when = self.level.get(account, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - when) * self.rate)
        if tokens >= n:
            self.level[account] = (tokens - n, now)
            return 0.0
        self.level[account] = (tokens, now)
        return (n - tokens) / self.rate


@dataclass(frozen=True)
class TlsConfig:
    """Serve TLS with this certificate; with ``client_ca``, require client certificates."""

    cert: Path
    key: Path
    client_ca: Path | None = None


class ListenError(OSError):
    """The server cannot take its address (in use, or not an address of this host)."""
