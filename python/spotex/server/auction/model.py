"""The auction's terms, in and out: what the exchange gives the optimiser (``View``: its
``Cluster``s with their nodes' free GPUs, the ``Ask``s, the ``Bid``s) and what it gives
back (``Clearing``: the ``Fill``s, the asks sold, the prices). Money is integer
micro-dollars in and out; HiGHS works in dollars (``_dollars``)."""

from __future__ import annotations

from dataclasses import dataclass, field

MICROS = 1_000_000
# a bid's placement levels, tightest first (docs/trading.md, "Locality")
LEVELS = ("node", "nvlink_domain", "rack", "block", "cluster")
# the first-come preference: a dollar-millionth of a micro-dollar per GPU-hour and place
_TIE = 1e-12


@dataclass(frozen=True)
class Cluster:
    name: str
    family: str  # SKU/region: the products it sells
    # (node id, GPUs, the bit mask of its GPUs free in each hour of the window)
    nodes: tuple[tuple[str, int, tuple[int, ...]], ...]
    # per node: its (block, rack, NVLink domain) labels ("": none); () = no labels
    places: tuple[tuple[str, str, str], ...] = ()


@dataclass(frozen=True)
class Ask:
    order_id: int
    cluster: int  # index into View.clusters
    hour: int  # index into the window (a seller block: its first hour)
    quantity: int  # GPUs (a seller block: in each of its hours)
    price: int  # micro-dollars per GPU-hour
    hours: int = 1  # a seller block: its consecutive hours from ``hour``
    # sold whole or not at all: every one of its GPUs in every one of its hours (a
    # seller block; the only kind of ask of several hours)
    whole: bool = False


@dataclass(frozen=True)
class Bid:
    order_id: int
    family: str
    hours: int  # 1: a one-hour bid (fills in part); more: a block, whole or nothing
    starts: tuple[int, ...]  # the first hours it may take (a window: several)
    quantity: int  # GPUs
    price: int  # limit, micro-dollars per GPU-hour (a block: over its hours)
    gang: int = 1
    group: int = 0  # a one-of group (0: none): at most one of its bids fills
    whole: bool = False  # a one-hour bid that fills completely or not at all
    # placement: the level its GPUs must share a domain at ("": none; one of LEVELS) and
    # the node it must be next to, (cluster index, node index): that cluster only, and
    # with a level the domain there that holds that node
    level: str = ""
    near: tuple[int, int] | None = None

    @property
    def block(self) -> bool:
        return self.hours > 1 or self.whole or len(self.starts) > 1


@dataclass(frozen=True)
class View:
    """What the auction decides: a window of ``hours`` delivery hours."""
    hours: int
    clusters: tuple[Cluster, ...]
    asks: tuple[Ask, ...]
    bids: tuple[Bid, ...]  # in arrival order: earlier ones win ties
    tick: int = 10_000


@dataclass(frozen=True)
class Fill:
    """A bid's part of the clearing: ``gpus`` per node, the same in each of its hours."""
    order_id: int
    cluster: int
    start: int
    hours: int
    gpus: tuple[tuple[str, tuple[int, ...]], ...]

    @property
    def quantity(self) -> int:
        return sum(len(g) for _, g in self.gpus)


@dataclass
class Clearing:
    fills: list[Fill]
    asks: dict[int, tuple[int, int]]  # ask id -> (hour, GPUs sold)
    prices: dict[tuple[str, int], int]  # (family, hour) -> micro-dollars per GPU-hour
    welfare: int  # micro-dollars: filled bids' limits minus the asks' prices
    gap: float  # the solver's relative gap on the last solve
    seconds: float
    cut: list[int] = field(default_factory=list)  # bids cut as paradoxically accepted
    rejected_in_money: list[int] = field(default_factory=list)  # paradoxically rejected
    rejected_welfare: int = 0  # what those would have added at the clearing prices
    solves: int = 0
    # the whole asks (seller blocks) sold, by order id; each is in ``asks`` too, at its
    # first hour with its quantity (it sells that many GPUs in each of its hours)
    sold_blocks: list[int] = field(default_factory=list)


def _dollars(micros: int) -> float:
    return micros / MICROS



def _families(view: View) -> dict[str, list[int]]:
    out: dict[str, list[int]] = {}
    for i, c in enumerate(view.clusters):
        out.setdefault(c.family, []).append(i)
    return out

