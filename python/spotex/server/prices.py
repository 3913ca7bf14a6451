"""Price discovery as pure functions of the venue's trades: candles, the daily index,
each product's trade statistics (the forward curve's trade side), and the trades of a
journal. The server folds live trades through these (``spotex.server.tape``), and
``spotex replay --index`` runs the same functions over the trades a replay of the journal
yields, so both give the same numbers to the digit. Everything is integer arithmetic:
prices in micro-dollars, quantities in GPUs (GPU-hours), times in microseconds.

The index's methodology is written in docs/index.md; the constants here are the ones it
names.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

MINUTE = 60_000_000
HOUR = 60 * MINUTE
DAY = 24 * HOUR
# the candle intervals the venue keeps, by name
INTERVALS = {"1m": MINUTE, "1h": HOUR, "1d": DAY}
KEPT = ", ".join(INTERVALS)

# ---- the daily index's methodology (docs/index.md) ----
METHODOLOGY = "spotex-index-1"
# the least that must count (after outliers) for a day to publish a number
MIN_VOLUME = 100  # GPU-hours
MIN_TRADES = 3
# a trade counts when its price is within this fraction of the day's volume-weighted
# median: |price - median| <= median * BAND_NUM / BAND_DEN
BAND_NUM, BAND_DEN = 1, 2

SIDE_BUY, SIDE_SELL = 1, 2  # spotex.v1.Side


class Print(NamedTuple):
    """A trade as the tape holds it: what the public market data says of it."""

    trade_id: int
    time: int  # microseconds since the epoch
    product: str  # SKU/region/YYYY-MM-DDTHH
    price: int  # micro-dollars per GPU-hour
    qty: int  # GPUs (GPU-hours)
    aggressor: int  # spotex.v1.Side
    auction_id: int  # 0: continuous trading

    @property
    def key(self) -> tuple[int, int]:
        """The tape's order: by time, then trade id."""
        return (self.time, self.trade_id)


def split(product: str) -> tuple[str, str, str]:
    """``(sku, region, YYYY-MM-DDTHH)`` of a product id (ValueError if it is not one)."""
    parts = product.split("/")
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"not a product id (SKU/region/YYYY-MM-DDTHH): {product!r}")
    return parts[0], parts[1], parts[2]


def family(product: str) -> str:
    """A product's SKU-region family, ``SKU/region``."""
    sku, region, _ = split(product)
    return f"{sku}/{region}"


def hour_of(product: str) -> int:
    """A product's delivery hour, in hours since the epoch."""
    when = dt.datetime.strptime(split(product)[2], "%Y-%m-%dT%H").replace(tzinfo=dt.UTC)
    return int(when.timestamp()) // 3600


def day_name(day: int) -> str:
    """Days since the epoch as YYYY-MM-DD."""
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()


def day_number(name: str) -> int:
    """YYYY-MM-DD as days since the epoch (ValueError if it is not a date)."""
    if len(name) != 10:
        raise ValueError(f"not a date (YYYY-MM-DD): {name!r}")
    return (dt.date.fromisoformat(name) - dt.date(1970, 1, 1)).days


def half_up(num: int, den: int) -> int:
    """``num / den`` rounded half up (den > 0, num >= 0)."""
    return (2 * num + den) // (2 * den)


# ---- candles -----------------------------------------------------------------------


@dataclass
class Candle:
    start: int
    open_key: tuple[int, int]
    open: int
    high: int
    low: int
    close_key: tuple[int, int]
    close: int
    volume: int
    notional: int  # sum of price x quantity
    trades: int

    @property
    def vwap(self) -> int:
        return half_up(self.notional, self.volume) if self.volume else 0

    @staticmethod
    def of(start: int, t: Print) -> Candle:
        return Candle(start, t.key, t.price, t.price, t.price, t.key, t.price, t.qty,
                      t.price * t.qty, 1)

    def merge(self, o: Candle) -> None:
        """Folds another candle of the same interval in (in any order)."""
        if o.open_key < self.open_key:
            self.open_key, self.open = o.open_key, o.open
        if o.close_key > self.close_key:
            self.close_key, self.close = o.close_key, o.close
        self.high = max(self.high, o.high)
        self.low = min(self.low, o.low)
        self.volume += o.volume
        self.notional += o.notional
        self.trades += o.trades


def scopes(product: str) -> tuple[str, str]:
    """What a trade's candles are kept for: its product and its family."""
    return (product, family(product))


def candles(trades: Iterable[Print], width: int) -> dict[tuple[str, int], Candle]:
    """Every non-empty candle of ``width`` microseconds, per scope (each product and
    each family) and interval start, from the trades (in any order)."""
    out: dict[tuple[str, int], Candle] = {}
    for t in trades:
        start = t.time - t.time % width
        for scope in scopes(t.product):
            c = out.get((scope, start))
            if c is None:
                out[(scope, start)] = Candle.of(start, t)
            else:
                c.merge(Candle.of(start, t))
    return out


# ---- each product's trades: the forward curve's trade side ---------------------------


@dataclass
class ProductStats:
    volume: int = 0
    trades: int = 0
    last_key: tuple[int, int] = (0, 0)
    last_price: int = 0
    last_qty: int = 0
    auction_id: int = 0  # the last auction that traded the product
    auction_price: int = 0
    auction_qty: int = 0

    def add(self, t: Print) -> None:
        self.volume += t.qty
        self.trades += 1
        if t.key > self.last_key:
            self.last_key, self.last_price, self.last_qty = t.key, t.price, t.qty
        if t.auction_id:
            if t.auction_id > self.auction_id:
                self.auction_id, self.auction_price, self.auction_qty = \
                    t.auction_id, t.price, 0
            if t.auction_id == self.auction_id:
                self.auction_qty += t.qty


def product_stats(trades: Iterable[Print]) -> dict[str, ProductStats]:
    out: dict[str, ProductStats] = {}
    for t in trades:
        out.setdefault(t.product, ProductStats()).add(t)
    return out


# ---- the daily index ---------------------------------------------------------------


@dataclass(frozen=True)
class IndexValue:
    """One family's one day, as the methodology computes it from that day's trades."""

    status: str  # published (enough counted) or no_index
    price: int  # the index (0 with no_index)
    volume: int  # counted
    trades: int
    excluded_volume: int
    excluded_trades: int
    median: int  # 0 without trades


def weighted_median(levels: list[tuple[int, int, int]]) -> int:
    """The lower volume-weighted median of ``(price, quantity, trades)`` levels sorted by
    price: the least price at which at least half the volume has traded at or below."""
    total = sum(q for _, q, _ in levels)
    cum = 0
    for price, q, _ in levels:
        cum += q
        if 2 * cum >= total:
            return price
    return 0


def index_of(levels: Iterable[tuple[int, int, int]]) -> IndexValue:
    """The index of one day from its trades, as ``(price, quantity, trades)`` (each trade
    ``(price, qty, 1)``, or trades of one price aggregated): the volume-weighted mean
    of the trades within the band around the volume-weighted median, rounded half up to
    a micro-dollar, when they reach the minimum volume and trade count."""
    agg: dict[int, list[int]] = {}
    for price, q, n in levels:
        a = agg.setdefault(price, [0, 0])
        a[0] += q
        a[1] += n
    ordered = [(p, a[0], a[1]) for p, a in sorted(agg.items())]
    median = weighted_median(ordered)
    volume = trades = notional = xvolume = xtrades = 0
    for price, q, n in ordered:
        if abs(price - median) * BAND_DEN <= median * BAND_NUM:
            volume += q
            trades += n
            notional += price * q
        else:
            xvolume += q
            xtrades += n
    if volume >= MIN_VOLUME and trades >= MIN_TRADES:
        return IndexValue("published", half_up(notional, volume), volume, trades, xvolume,
                          xtrades, median)
    return IndexValue("no_index", 0, volume, trades, xvolume, xtrades, median)


def daily_index(trades: Iterable[Print]) -> dict[tuple[str, int], IndexValue]:
    """Every (family, day) with trades, and its value: the plain recomputation."""
    days: dict[tuple[str, int], list[tuple[int, int, int]]] = {}
    for t in trades:
        days.setdefault((family(t.product), t.time // DAY), []).append((t.price, t.qty, 1))
    return {k: index_of(v) for k, v in days.items()}


# ---- the trades of a journal (the replay's side) ------------------------------------


def _varint(b: bytes, i: int) -> tuple[int, int]:
    shift = value = 0
    while True:
        byte = b[i]
        i += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            return value, i
        shift += 7


def _fields(b: bytes) -> Iterable[tuple[int, int, int | bytes]]:
    """``(field number, wire type, value)`` of a protobuf message's top level."""
    i = 0
    while i < len(b):
        key, i = _varint(b, i)
        number, kind = key >> 3, key & 7
        if kind == 0:
            value, i = _varint(b, i)
            yield number, kind, value
        elif kind == 2:
            n, i = _varint(b, i)
            yield number, kind, b[i:i + n]
            i += n
        elif kind == 1:
            i += 8
        elif kind == 5:
            i += 4
        else:
            raise ValueError(f"wire type {kind}")


# spotex.store.v1.Command: auction_clear = 22, its auction_id = 1
_AUCTION_CLEAR, _AUCTION_ID = 22, 1


def auction_of(command: bytes) -> int:
    """The auction a journaled command clears (its trades are that auction's), or 0."""
    for number, kind, value in _fields(command):
        if number == _AUCTION_CLEAR and kind == 2:
            assert isinstance(value, bytes)
            for n, k, v in _fields(value):
                if n == _AUCTION_ID and k == 0:
                    assert isinstance(v, int)
                    return v
    return 0


class JournalTrade(NamedTuple):
    seq: int
    trade: Print


def index_days(trades: Iterable[Print], today: int
               ) -> list[tuple[str, int, str, IndexValue]]:
    """Every family's every day from its first trading day to ``today`` (days since the
    epoch), oldest first: ``(family, day, status, value)``, as the venue publishes them
    (a day without trades: no_index; ``today``, not ended: provisional)."""
    values = daily_index(trades)
    first: dict[str, int] = {}
    for fam, day in values:
        first[fam] = min(day, first.get(fam, day))
    empty = IndexValue("no_index", 0, 0, 0, 0, 0, 0)
    out = []
    for fam in sorted(first):
        for day in range(first[fam], today + 1):
            v = values.get((fam, day))
            if day == today:
                if v is not None:
                    out.append((fam, day, "provisional", v))
                continue
            v = v or empty
            out.append((fam, day, v.status, v))
    return out


def dollars(micros: int) -> str:
    """Exact dollars, at least two decimals (2.10; 2.0125)."""
    from decimal import Decimal

    d = Decimal(micros) / 1_000_000
    return f"{d:.2f}" if d == round(d, 2) else str(d)


INDEX_CSV_HEADER = ["sku", "region", "day", "status", "price_usd", "volume", "trades",
                    "excluded_volume", "excluded_trades", "median_usd"]


def index_csv_row(fam: str, day: int, status: str, v: IndexValue) -> list[str]:
    sku, region = fam.split("/")
    return [sku, region, day_name(day), status, dollars(v.price) if v.price else "",
            str(v.volume), str(v.trades), str(v.excluded_volume), str(v.excluded_trades),
            dollars(v.median) if v.median else ""]
