"""What the SDK hands its users: plain frozen dataclasses (orders, fills,
allocations, books, market events, executions, accounts), prices as ``Decimal``."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Literal

Side = Literal["buy", "sell"]

# A node to register: (node id, GPUs), or with its place (block, rack, NVLink domain).
NodeArg = tuple[str, int] | tuple[str, int, str, str, str]

# GPUs named by a seller: (node id, GPU indices)
SlotArg = tuple[str, Iterable[int]]


def _price(micros: int) -> Decimal:
    return Decimal(micros) / 1_000_000


@dataclass(frozen=True)
class Product:
    product_id: str
    state: str
    tick: Decimal
    lot: int
    open_at: dt.datetime
    close_at: dt.datetime
    # create_products: True for a product of the range that was listed before the call
    # (left as it was, with its own tick, lot and times)
    listed_before: bool = False


@dataclass(frozen=True)
class Fill:
    trade_id: int
    price: Decimal
    quantity: int
    maker: bool
    product_id: str = ""  # the product it traded in (a block's fill: that hour's)
    fee: Decimal = Decimal(0)  # a resale's fill: the fee its seller paid
    auction_id: int = 0  # a fill in an auction: which one (0: continuous trading)


@dataclass(frozen=True)
class Order:
    order_id: int
    client_order_id: str
    product_id: str
    side: Side
    order_type: str
    price: Decimal
    quantity: int
    filled: int
    remaining: int
    state: str  # open, partially_filled, filled, cancelled, expired
    time_in_force: str
    cluster_id: str | None
    gang: int
    fills: tuple[Fill, ...]
    reason: str
    hours: int = 1  # a block's consecutive hours (its quantities: GPUs in every hour)
    window_hours: int = 0  # a block's window from product_id's hour (0: none)
    min_quantity: int = 0  # the minimum it had to fill on entry (0: none)
    range_id: int = 0  # the range (place_ask_range) or group it belongs to (0: none)
    display_quantity: int = 0  # an iceberg ask's clip: at most this much shows (0: none)
    locality: str = ""  # placement asked: node, nvlink_domain, rack, block, cluster ("": none)
    locality_preferred: bool = False
    colocate_with: int = 0  # the trade id of an allocation to sit next to (0: none)
    placed_level: str = ""  # once filled with placement terms: the level it got
    placed_domain: str = ""  # and the domain, its labels joined by '/'
    resell_trade_id: int = 0  # a resale ask: the allocation its GPUs come from (0: none)
    resale_fee_bps: int = 0  # and the venue's fee on each fill, in basis points
    fees: Decimal = Decimal(0)  # fees paid so far
    auction: bool = False  # an auction order: it waits for the auction of its hours


@dataclass(frozen=True)
class Allocation:
    trade_id: int
    product_id: str
    cluster_id: str
    hour: int
    price: Decimal
    quantity: int
    slots: tuple[tuple[str, tuple[int, ...]], ...]  # (node id, GPU indices)
    as_buyer: bool
    # each slot's node and where it sits: (node id, block, rack, NVLink domain)
    places: tuple[tuple[str, str, str, str], ...] = ()
    buy_order_id: int = 0
    buyer_account: int = 0  # whom the seller provisions these GPUs for
    parent_trade_id: int = 0  # a resale's: the allocation its GPUs came from (0: none)
    fee: Decimal = Decimal(0)  # a resale's fee, paid by its seller
    seller_account: int = 0  # the cluster's owner, or a reseller
    as_provider: bool = False  # the GPUs are on the caller's cluster (its schedule)
    # the cluster's owner: cluster ids are each seller's own, so (provider_account,
    # cluster_id) names the cluster
    provider_account: int = 0


@dataclass(frozen=True)
class Level:
    price: Decimal
    quantity: int
    orders: int


@dataclass(frozen=True)
class Book:
    product_id: str
    sequence: int
    bids: tuple[Level, ...]
    asks: tuple[Level, ...]


@dataclass(frozen=True)
class MarketEvent:
    """One market-data message. ``kind``: snapshot (``book``), level (``side``, ``price``,
    ``quantity`` 0 = level gone), trade (``price``, ``quantity``, ``side`` = aggressor,
    ``auction_id`` when an auction's), state (``state``), or auction (a block auction
    priced the product: ``price`` its clearing price, ``quantity`` the GPUs it traded,
    ``auction_id``)."""

    kind: str
    product_id: str
    sequence: int
    book: Book | None = None
    side: Side | None = None
    price: Decimal | None = None
    quantity: int | None = None
    orders: int | None = None
    trade_id: int | None = None
    state: str | None = None
    auction_id: int | None = None


@dataclass(frozen=True)
class BlockAllocation:
    """A filled block's GPUs in one record: the same slots in each of its hours."""
    order_id: int
    cluster_id: str
    first_hour: int  # hours since the Unix epoch
    hours: int
    slots: tuple[tuple[str, tuple[int, ...]], ...]  # (node id, GPU indices)
    cost: Decimal  # what the whole block paid
    trade_ids: tuple[int, ...]
    provider_account: int = 0  # the cluster's owner


@dataclass(frozen=True)
class Execution:
    sequence: int
    kind: str  # accepted, trade, allocated, cancelled, expired, amended, block_allocated
    order: Order | None
    fill: Fill | None
    allocation: Allocation | None
    block: BlockAllocation | None = None  # block_allocated: the whole block
    auction_id: int = 0  # what an auction did: which one


@dataclass(frozen=True)
class AuctionPrice:
    product_id: str
    price: Decimal  # the clearing price: every trade of the auction in the product
    quantity: int  # GPUs traded there


@dataclass(frozen=True)
class AuctionResult:
    """An auction's public result (see docs/trading.md, "Block auctions")."""
    auction_id: int
    from_hour: int  # its delivery window, hours since the epoch: [from_hour, to_hour)
    to_hour: int
    state: str  # cleared; abandoned (a restart between its start and its clear)
    started_at: dt.datetime | None
    cleared_at: dt.datetime | None
    prices: tuple[AuctionPrice, ...]
    welfare: Decimal  # the filled bids' limits minus the asks' prices
    gap: float  # the solver's relative gap to its bound (0: proven optimal)
    solve_seconds: float
    bids: int  # the bids it decided over
    filled_orders: tuple[int, ...]
    dropped_orders: tuple[int, ...]  # fills continuous trading made impossible meanwhile
    paradoxically_rejected: tuple[int, ...]  # blocks in the money left out
    rejected_welfare: Decimal


@dataclass(frozen=True)
class IndicativeAuction:
    """What an auction over the window would clear if it ran now; nothing committed."""
    from_hour: int
    to_hour: int
    computed_at: dt.datetime
    prices: tuple[AuctionPrice, ...]  # indicative clearing price and GPUs per product
    welfare: Decimal
    gap: float
    bids: int
    your_orders: tuple[tuple[int, int], ...]  # (order id, GPUs it would get; 0: none)


@dataclass(frozen=True)
class Account:
    account_id: int
    token: str


@dataclass(frozen=True)
class AccountInfo:
    """An account as the operator sees it (never its token)."""

    account_id: int
    name: str
    roles: tuple[str, ...]
    enabled: bool  # False: the kill switch is on
    has_token: bool  # False once revoked, until rotated


# ---- price discovery -------------------------------------------------------------------


@dataclass(frozen=True)
class TapeTrade:
    """A trade on the public tape (no accounts, no orders)."""
    trade_id: int
    product_id: str
    price: Decimal
    quantity: int
    aggressor: Side | None  # the side that took liquidity
    time: dt.datetime
    auction_id: int = 0  # an auction's trade (0: continuous trading)


@dataclass(frozen=True)
class Candle:
    """OHLCV of one interval (its trades' time in [start, start + interval))."""
    start: dt.datetime
    open: Decimal
    high: Decimal
    low: Decimal
    close: Decimal
    volume: int  # GPU-hours
    trades: int
    vwap: Decimal


@dataclass(frozen=True)
class CurvePoint:
    """One delivery hour of a forward curve; None where there is nothing."""
    product_id: str
    hour: int  # hours since the epoch
    state: str
    bid: Decimal | None
    bid_quantity: int
    ask: Decimal | None
    ask_quantity: int
    last: Decimal | None  # the last trade's price
    last_quantity: int
    last_time: dt.datetime | None
    auction_id: int  # the last auction that traded the hour (0: none)
    auction_price: Decimal | None
    auction_quantity: int
    volume: int  # GPUs traded in the hour so far
    trades: int


@dataclass(frozen=True)
class Curve:
    sku: str
    region: str
    as_of: dt.datetime
    points: tuple[CurvePoint, ...]  # by hour


@dataclass(frozen=True)
class DailyIndex:
    """One UTC day's transaction-based index of a SKU and region (docs/index.md)."""
    sku: str
    region: str
    day: dt.date
    status: str  # published, no_index, provisional (the day has not ended)
    price: Decimal | None  # None: no number (no_index, or provisional under the minimum)
    volume: int  # GPU-hours that counted
    trades: int
    excluded_volume: int  # outliers left out
    excluded_trades: int
    median: Decimal | None
    published_at: dt.datetime | None
    revision: int  # 1 as first published; each correction adds one
    previous_price: Decimal | None  # a correction: the value it replaced
    previous_status: str
    methodology: str


@dataclass(frozen=True)
class Balance:
    """An account's money (see docs/trading.md, "Money"). ``available`` is what a new buy
    may hold: current - holds + credit limit; None (with ``credit_limit`` None) when the
    venue does not check money. ``in_transit``: a sharded venue's money on its way from
    one shard to another (the account's whole money is ``current + in_transit``)."""
    account_id: int
    current: Decimal  # credits minus debits
    holds: Decimal  # reserved by its live buy orders
    available: Decimal | None
    credit_limit: Decimal | None
    maker_fee_bps: int
    taker_fee_bps: int
    in_transit: Decimal = Decimal(0)


@dataclass(frozen=True)
class Transfer:
    """One movement of money. ``kind``: deposit, withdrawal, trade or fee; in a sharded
    venue also move_out and move_in (the account's money going from one shard to
    another: a pair sums to nothing). Deposits come from and withdrawals go to
    ``OUTSIDE``; fees go to account 0 (the venue's). A hold moves no money and is not a
    transfer (``Balance.holds``)."""
    transfer_id: int
    debit_account_id: int
    credit_account_id: int
    amount: Decimal
    kind: str
    order_id: int
    trade_id: int
    time: dt.datetime
    reference: str


# the account deposits come from and withdrawals go to: outside the venue
OUTSIDE = 2**64 - 1
