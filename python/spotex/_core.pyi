"""Type stubs for the Rust extension ``spotex._core``."""

import os
import pathlib
from collections.abc import Callable, Iterator
from typing import Any, Literal, SupportsIndex, final, overload

from typing_extensions import Buffer

from spotex.errors import SpotexError as SpotexError

__all__ = [
    "Allocation",
    "CapacityError",
    "Engine",
    "Exchange",
    "RefusedError",
    "count_orders",
    "page_size",
    "status_codes",
    "Event",
    "Events",
    "OrderType",
    "SelfTradePrevention",
    "Side",
    "TimeInForce",
    "InvalidOrderError",
    "InvalidProductError",
    "JournalError",
    "JournalWriter",
    "Writer",
    "journal_bounds",
    "journal_segments",
    "retire_journal",
    "MICROS_PER_HOUR",
    "NotOwnerError",
    "Order",
    "PostOnlyWouldCrossError",
    "ProductStateError",
    "SpotexError",
    "UnknownOrderError",
    "UnknownProductError",
    "Utilisation",
    "cancel_reasons",
    "flow",
    "read_journal",
    "read_jetstream",
    "follow_jetstream",
    "put_jetstream_snapshot",
    "get_jetstream_snapshot",
    "Lease",
    "reject_codes",
    "replay_audit",
    "replay_journal",
    "truncate_journal",
    "workload",
]

MICROS_PER_HOUR: int


class InvalidOrderError(SpotexError): ...
class PostOnlyWouldCrossError(InvalidOrderError): ...
class InvalidProductError(SpotexError): ...
class UnknownProductError(SpotexError): ...
class ProductStateError(SpotexError): ...
class UnknownOrderError(SpotexError): ...
class NotOwnerError(SpotexError): ...
class CapacityError(SpotexError): ...

@final
class Allocation:
    trade_id: int
    product: str
    cluster: str
    hour: int
    buyer: int
    seller: int
    buy_order: int
    sell_order: int
    price: int
    qty: int
    slots: list[tuple[str, list[int]]]

@final
class Event:
    kind: Literal[
        "product_created", "product_state", "capacity_registered", "capacity_withdrawn",
        "rejected", "accepted", "trade", "allocated", "cancelled", "expired", "amended",
        "chosen", "placed",
    ]
    product: str | None
    order_id: int | None
    account: int | None
    side: Literal["buy", "sell"] | None
    price: int | None
    qty: int | None
    reason: str | None
    trade_id: int | None
    maker_order: int | None
    maker_account: int | None
    priority_kept: bool | None
    # product_state: the state; placed: the level a block got
    state: str | None
    cluster: str | None  # capacity events: the cluster; placed: the domain
    allocation: Allocation | None

@final
class Side:
    BUY: Side
    SELL: Side
    def __int__(self) -> int: ...

@final
class OrderType:
    LIMIT: OrderType
    MARKET: OrderType
    def __int__(self) -> int: ...

@final
class TimeInForce:
    GTC: TimeInForce
    GTD: TimeInForce
    IOC: TimeInForce
    FOK: TimeInForce
    def __int__(self) -> int: ...

@final
class SelfTradePrevention:
    CANCEL_NEWEST: SelfTradePrevention
    CANCEL_OLDEST: SelfTradePrevention
    CANCEL_BOTH: SelfTradePrevention
    def __int__(self) -> int: ...

@final
class Events:
    """What one order, cancel or amend produced; each ``Event`` is built when read."""

    def __len__(self) -> int: ...
    @overload
    def __getitem__(self, index: SupportsIndex, /) -> Event: ...
    @overload
    def __getitem__(self, index: slice, /) -> list[Event]: ...
    def __iter__(self) -> Iterator[Event]: ...

@final
class Order:
    order_id: int
    account: int
    product: str
    side: Literal["buy", "sell"]
    price: int
    remaining: int
    filled: int
    tif: Literal["gtc", "gtd", "ioc", "fok"]
    expire_at: int | None
    post_only: bool
    stp: Literal["cancel_newest", "cancel_oldest", "cancel_both"]
    gang: int
    cluster: str | None
    clip: int  # an iceberg's clip (0: none)
    hidden: int  # what an iceberg keeps hidden

@final
class Utilisation:
    capacity: int
    sold: int
    offered: int
    idle: int
    withdrawn: int

_Level = tuple[int, int, int]

@final
class Engine:
    def __init__(self) -> None: ...
    @property
    def now(self) -> int: ...
    def create_product(
        self, product_id: str, *, tick: int, lot: int, open_at: int, close_at: int, ts: int
    ) -> list[Event]: ...
    def halt(self, product_id: str, *, ts: int) -> list[Event]: ...
    def resume(self, product_id: str, *, ts: int) -> list[Event]: ...
    def close(self, product_id: str, *, ts: int) -> list[Event]: ...
    def advance_time(self, ts: int) -> list[Event]: ...
    def register_capacity(
        self,
        account: int,
        cluster_id: str,
        *,
        sku: str,
        region: str,
        nodes: list[tuple[str, int]],
        from_hour: int,
        to_hour: int,
        ts: int,
        places: list[tuple[str, str, str]] | None = None,  # (block, rack, nvlink_domain)
    ) -> list[Event]: ...
    def withdraw_capacity(
        self,
        account: int,
        cluster_id: str,
        *,
        from_hour: int,
        to_hour: int,
        nodes: list[str] | None = None,
        ts: int,
    ) -> list[Event]: ...
    def place(
        self,
        account: int,
        product_id: str,
        side: Side | str,  # or "buy" | "sell"
        price: int,
        qty: int,
        *,
        ts: int,
        order_type: OrderType | str | None = None,  # or "limit" (the default) | "market"
        tif: TimeInForce | str | None = None,  # or "gtc" (the default) | "gtd" | "ioc" | "fok"
        expire_at: int | None = None,
        post_only: bool = False,
        stp: SelfTradePrevention | str | None = None,  # or "cancel_newest" (the default) ...
        cluster_id: str | None = None,
        gang: int = 1,
        clip: int = 0,  # asks that rest: an iceberg showing at most this much
    ) -> Events: ...
    def place_block(
        self,
        account: int,
        product_id: str,
        hours: int,
        price: int,
        qty: int,
        *,
        ts: int,
        gang: int = 1,
        tif: TimeInForce | str | None = None,  # "fok" (the default) | "ioc" | "gtc" | "gtd"
        expire_at: int | None = None,
        window: int = 0,
        # all GPUs in one domain at this level: "node", "nvlink_domain", "rack", "block",
        # "cluster"; or the tightest from there out when preferred; near a trade id held
        locality: str | None = None,
        preferred: bool = False,
        near: int | None = None,
    ) -> Events: ...
    def resting_blocks(self) -> list[int]: ...
    def cancel(self, account: int, order_id: int, *, ts: int) -> Events: ...
    def amend(
        self, account: int, order_id: int, *, price: int | None = None, qty: int | None = None,
        ts: int,
    ) -> Events: ...
    def apply_batch(self, records: Buffer) -> bytes: ...
    def apply_batch_timed(
        self, records: Buffer, per_op: bool = False
    ) -> tuple[int, int, int, int]: ...
    def snapshot(self) -> bytes: ...
    @staticmethod
    def restore(snapshot: bytes) -> Engine: ...
    def product_handle(self, product_id: str) -> int: ...
    def cluster_handle(self, cluster_id: str, account: int | None = None) -> int: ...
    def products(self) -> list[tuple[str, str, int, int, int, int]]: ...
    def l2(self, product_id: str, depth: int = 10) -> tuple[list[_Level], list[_Level]]: ...
    def level(self, product_id: str, side: str, price: int) -> tuple[int, int]: ...
    def l3(self, product_id: str) -> tuple[list[Order], list[Order]]: ...
    def order(self, order_id: int) -> Order | None: ...
    def open_order_count(self) -> int: ...
    def all_allocations(self) -> list[Allocation]: ...
    def allocations(self, account: int) -> list[Allocation]: ...
    def utilisation(
        self, cluster_id: str, hour: int, account: int | None = None
    ) -> Utilisation | None: ...
    def clusters(self, account: int) -> list[tuple[str, list[str]]]: ...
    def state_hash(self) -> str: ...

def reject_codes() -> list[str]: ...
def cancel_reasons() -> list[str]: ...
def flow(
    scenario: str,
    *,
    seed: int = 42,
    new_orders: int = 1_000_000,
    sellers: int = 4,
) -> tuple[
    list[tuple[str, int, int, int, int]],
    list[tuple[int, str, str, str, list[tuple[str, int]], int, int]],
    bytes,
    dict[str, int],
]: ...

def workload(
    seed: int = 42,
    ops: int = 1_000_000,
    products: int = 24,
    sellers: int = 4,
    nodes_per_cluster: int = 2_500,
    max_live: int = 1_000,
) -> tuple[
    list[tuple[str, int, int, int, int]],
    list[tuple[int, str, str, str, list[tuple[str, int]], int, int]],
    bytes,
]: ...

class JournalError(SpotexError): ...
class RefusedError(SpotexError): ...

def page_size(asked: int) -> int: ...
def count_orders(request: bytes) -> int: ...
def status_codes() -> list[tuple[str, int]]: ...

_AuctionView = tuple[
    int, int,
    list[tuple[int, int, bool, int, str, int, int, int, int, int, int,
               tuple[bool, str, tuple[int, int] | None]]],
    list[tuple[int, int, int, int, int, int, int, bool]],
    list[tuple[int, int, str, str, list[tuple[str, int, list[int]]],
               list[tuple[str, str, str]]]],
]


@final
class Exchange:
    """The Rust exchange behind protobuf bytes (rust_exchange/)."""

    def __new__(cls, max_open_orders: int = 10_000, max_id_length: int = 128) -> Exchange: ...
    def set_max_id_length(self, n: int) -> None: ...
    @staticmethod
    def restore(snapshot: bytes, max_open_orders: int = 10_000) -> Exchange: ...
    @staticmethod
    def recover(
        path: str | os.PathLike[str], snapshot: bytes | None = None,
        max_open_orders: int = 10_000, keep_ended: int = 100_000,
    ) -> tuple[Exchange, int, int, tuple[pathlib.Path, int, int] | None]: ...
    def set_keep_ended(self, n: int) -> None: ...
    def set_resale_fee_bps(self, bps: int) -> None: ...
    def take_left(self) -> list[tuple[int, int, str, str, bytes]]: ...
    def set_default_credit_limit(self, limit: int | None) -> None: ...
    def set_keep_transfers(self, n: int) -> None: ...
    def take_left_transfers(self) -> list[tuple[int, int, int, int, bytes]]: ...
    def money(self, ts: int, what: str, request: bytes) -> bytes: ...
    def move_money(self, ts: int, request: bytes) -> bytes: ...
    def list_moves(self) -> bytes: ...
    def balance(self, account: int) -> bytes: ...
    def list_transfers(self, account: int, request: bytes) -> bytes: ...
    def check_ledger(self) -> str | None: ...
    def snapshot(self) -> bytes: ...
    def take_journal(self) -> list[tuple[int, int, bytes]]: ...
    def replay(self, seq: int, ts: int, command: bytes) -> None: ...
    @property
    def sequence(self) -> int: ...
    @property
    def resting_orders(self) -> int: ...
    def state_hash(self) -> str: ...
    def create_product(
        self, ts: int, product_id: str, tick: int, lot: int, close_at: int,
        open_at: int | None = None, auction_first: bool = False,
    ) -> None: ...
    def set_state(self, ts: int, what: str, product_id: str) -> None: ...
    def set_id_base(self, ts: int, base: int) -> None: ...
    def next_ids(self) -> tuple[int, int]: ...
    def register_capacity(self, ts: int, account: int, request: bytes) -> None: ...
    def withdraw_capacity(self, ts: int, account: int, request: bytes) -> int: ...
    def advance_time(self, ts: int) -> None: ...
    def place_order(
        self, ts: int, account: int, request: bytes, *, buyer: bool, seller: bool
    ) -> bytes: ...
    def submit_orders(
        self, ts: int, account: int, request: bytes, *, buyer: bool, seller: bool
    ) -> bytes: ...
    def cancel_order(self, ts: int, account: int, request: bytes) -> bytes: ...
    def amend_order(self, ts: int, account: int, request: bytes) -> bytes: ...
    # block auctions: the view is (first_hour, hours, bids, asks, clusters);
    # bids: (order_id, alternative, group, account, family, span_from, span_hours, hours,
    # quantity, price, gang, (whole, level required ("" none), near: (cluster handle,
    # node index) or None)); asks: (order_id, account, cluster, hour, quantity, price,
    # hours, whole: a seller block); clusters: (handle, seller, cluster_id, family,
    # [(node_id, gpus, free masks)], [(block, rack, nvlink domain) per node])
    def start_auction(self, ts: int, from_hour: int, to_hour: int,
                      auction_id: int = 0) -> int: ...
    def open_auction(self) -> tuple[int, int, int] | None: ...
    def auction_view(self) -> _AuctionView | None: ...
    def auction_view_of(self, from_hour: int, to_hour: int) -> _AuctionView: ...
    def clear_auction(
        self, ts: int, auction_id: int,
        fills: list[tuple[int, int, int, str, str, int, list[tuple[str, list[int]]]]],
        prices: list[tuple[str, int]], report: bytes, abandoned: bool, sold: list[int],
    ) -> bytes: ...
    def auction_result(self, auction_id: int) -> bytes: ...
    def list_auctions(self, request: bytes) -> bytes: ...
    def get_order(self, account: int, request: bytes) -> bytes: ...
    def list_orders(self, account: int, request: bytes) -> bytes: ...
    def list_products(self, request: bytes | None = None) -> bytes: ...
    def get_book(self, request: bytes) -> bytes: ...
    def list_allocations(self, account: int, request: bytes) -> bytes: ...
    def utilisation(
        self, from_hour: int, to_hour: int
    ) -> list[tuple[str, str, str, int, int, int, int, int, int, int]]: ...
    def depth_totals(self) -> list[tuple[str, int, int, int, int]]: ...
    def trade_totals(self) -> list[tuple[str, str, int, int, int]]: ...
    def money_totals(self) -> tuple[int, int, int, int, int, int, int, int, int, int]: ...
    def market_snapshots(self, request: bytes) -> bytes: ...
    def take_round(
        self,
    ) -> tuple[list[tuple[str, int, bytes]], list[tuple[int, int, bytes]],
               list[tuple[str, int, int, int, int, int, int]]]: ...

@final
class JournalWriter:
    def __new__(
        cls, path: str | os.PathLike[str], segment_bytes: int = ...
    ) -> JournalWriter: ...
    @staticmethod
    def jetstream(
        servers: list[str], shard: str, replicas: int = 3, timeout_seconds: float = 10.0
    ) -> JournalWriter: ...
    @property
    def stream_sequence(self) -> int | None: ...
    def append(self, seq: int, ts: int, command: bytes, meta: bytes) -> None: ...
    def flush(self) -> None: ...
    def sync(self) -> None: ...
    def fence(self, holder: str) -> None: ...
    def abandon(self) -> None: ...
    def durable_point(self) -> tuple[pathlib.Path, int] | None: ...
    def close(self) -> None: ...

@final
class Writer:
    """The writer thread (see bindings/python/src/writer.rs)."""

    def __new__(
        cls,
        deliver: Callable[[list[tuple[Any, bool, Any]]], None],
        after_round: Callable[[str | None], None],
        sync: bool = True,
    ) -> Writer: ...
    def attach(self, exchange: Exchange, journal: JournalWriter | None = None) -> None: ...
    def call(self, f: Callable[[], Any], future: Any, loop: Any | None = ...) -> None: ...
    def command(
        self,
        op: str,
        ts: int,
        account: int,
        buyer: bool,
        seller: bool,
        request: bytes,
        remaining: float | None,
        future: Any,
        loop: Any,
    ) -> None: ...
    def stamp(self, now: int) -> int: ...
    def stats(self) -> dict[str, Any]: ...
    @property
    def last_ts(self) -> int: ...
    @property
    def refusing(self) -> bool: ...
    @property
    def unavailable(self) -> str | None: ...
    @unavailable.setter
    def unavailable(self, why: str | None) -> None: ...
    def stop(self) -> None: ...

def read_journal(
    path: str | os.PathLike[str], after: int = 0
) -> tuple[list[tuple[int, int, bytes, bytes]], tuple[pathlib.Path, int, int] | None]: ...
def read_jetstream(
    servers: list[str], shard: str, after: int = 0, until: int | None = None,
    timeout_seconds: float = 10.0,
) -> list[tuple[int, int, bytes, bytes]]: ...
def follow_jetstream(
    servers: list[str], shard: str, from_message: int, until: int | None = None,
    timeout_seconds: float = 10.0,
) -> tuple[list[tuple[int, int, bytes, bytes]], int]: ...
def put_jetstream_snapshot(
    servers: list[str], shard: str, message: int, last_ts: int, snapshot: bytes,
    replicas: int = 3, timeout_seconds: float = 10.0,
) -> None: ...
def get_jetstream_snapshot(
    servers: list[str], shard: str, timeout_seconds: float = 10.0
) -> tuple[int, int, bytes] | None: ...
@final
class Lease:
    def __new__(
        cls, servers: list[str], shard: str, holder: str, ttl_seconds: float = 3.0,
        replicas: int = 3, timeout_seconds: float = 10.0,
    ) -> Lease: ...
    def try_acquire(self) -> bool: ...
    def renew(self) -> bool: ...
    def expires_in(self) -> float: ...
    def release(self) -> None: ...
    def holder(self) -> str | None: ...
def journal_segments(path: str | os.PathLike[str]) -> list[tuple[int, pathlib.Path]]: ...
def journal_bounds(
    path: str | os.PathLike[str],
) -> tuple[tuple[int, int, int], tuple[pathlib.Path, int, int] | None]: ...
def retire_journal(
    path: str | os.PathLike[str], upto: int, archive: str | os.PathLike[str] | None = None
) -> list[pathlib.Path]: ...
def truncate_journal(path: str | os.PathLike[str], offset: int) -> None: ...
def replay_journal(
    path: str | os.PathLike[str],
    *,
    until_seq: int | None = None,
    until_ts: int | None = None,
    snapshot: bytes | None = None,
    snapshot_seq: int = 0,
) -> tuple[Engine, int, list[tuple[int, int, int, str, int, int, str]], str]: ...
def replay_audit(
    path: str | os.PathLike[str],
    *,
    until_seq: int | None = None,
    until_ts: int | None = None,
    snapshot: bytes | None = None,
    snapshot_seq: int = 0,
) -> tuple[
    Engine, int, list[tuple[int, int, int, str, int, int, str]], str, str | None, list[bytes]
]: ...
