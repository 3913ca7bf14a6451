"""The price-discovery calls (ListTrades, ListCandles, GetCurve, GetIndex, ListIndex):
what they check, their page tokens (bound to the query that made them) and how their
answers are built from the tape's rows. Shared by the server (``MarketService``) and the
shard gateway; refusals are ``Refusal``, which each turns into its status."""

from __future__ import annotations

import base64
import hashlib
import json
import time
from dataclasses import dataclass, field
from typing import Any

import grpc

from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex.server import prices as px
from spotex.server import tape as tp

FAR = 1 << 62  # "to the last"
INVALID = grpc.StatusCode.INVALID_ARGUMENT
NOT_FOUND = grpc.StatusCode.NOT_FOUND
# the reasons these calls add to the contract's table, and their status codes
REASONS = {"UNKNOWN_SKU": NOT_FOUND, "UNKNOWN_REGION": NOT_FOUND,
           "INTERVAL_NOT_KEPT": INVALID, "PAGE_TOKEN_MISMATCH": INVALID,
           "INVALID_DAY": INVALID}


class Refusal(Exception):
    def __init__(self, reason: str, message: str,
                 code: grpc.StatusCode | None = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = code or REASONS.get(reason, INVALID)


# ---- what is listed ---------------------------------------------------------------------


@dataclass
class Listing:
    """The venue's products, as last read: id -> (state, delivery hour)."""

    products: dict[str, tuple[str, int]] = field(default_factory=dict)
    families: dict[str, set[str]] = field(default_factory=dict)  # sku -> regions
    read_at: float = 0.0

    @staticmethod
    def of(products: list[Any]) -> Listing:
        out = Listing(read_at=time.monotonic())
        for p in products:
            try:
                sku, region, _ = px.split(p.product_id)
                hour = px.hour_of(p.product_id)
            except ValueError:
                continue
            out.products[p.product_id] = (p.state, hour)
            out.families.setdefault(sku, set()).add(region)
        return out

    def fresh(self, seconds: float = 1.0) -> bool:
        return time.monotonic() - self.read_at < seconds


def all_products(ex: Any) -> list[Any]:
    """On the writer: every listed product, page by page."""
    out: list[Any] = []
    token = ""
    while True:
        page = pb.ListProductsResponse.FromString(ex.list_products(
            pb.ListProductsRequest(page_size=1000, page_token=token).SerializeToString()))
        out += page.products
        token = page.next_page_token
        if not token:
            return out


def _names(xs: set[str] | list[str], most: int = 12) -> str:
    xs = sorted(xs)
    shown = ", ".join(xs[:most])
    return shown + (f" and {len(xs) - most} more" if len(xs) > most else "") if xs else "none"


def family_of(listing: Listing, sku: str, region: str) -> str:
    """``SKU/region`` when listed; else the refusal naming what is."""
    if not sku or not region:
        raise Refusal("INVALID_ARGUMENT", "name a SKU and a region (sku and region)")
    if sku not in listing.families:
        raise Refusal("UNKNOWN_SKU", f"no product of SKU {sku!r} is listed; listed SKUs: "
                      f"{_names(set(listing.families))}")
    if region not in listing.families[sku]:
        raise Refusal("UNKNOWN_REGION", f"SKU {sku} is not listed in region {region!r}; "
                      f"it is listed in {_names(listing.families[sku])}")
    return f"{sku}/{region}"


def scope_of(listing: Listing, product_id: str, sku: str, region: str) -> tuple[str, str]:
    """``(product, family)`` of a query: one product (family empty), or a family."""
    if product_id:
        try:
            px.split(product_id)
            px.hour_of(product_id)
        except ValueError:
            raise Refusal("INVALID_PRODUCT_ID", f"not a product id (SKU/region/"
                          f"YYYY-MM-DDTHH): {product_id!r}") from None
        if product_id not in listing.products:
            raise Refusal("UNKNOWN_PRODUCT", f"unknown product {product_id}", NOT_FOUND)
        return product_id, ""
    return "", family_of(listing, sku, region)


def needs_refresh(listing: Listing, product_id: str, sku: str) -> bool:
    """Whether the listing may be too old to answer for this query."""
    if product_id:
        return product_id not in listing.products
    return bool(sku) and sku not in listing.families or not listing.fresh(1.0)


# ---- page tokens ------------------------------------------------------------------------


def _query_hash(query: tuple[Any, ...]) -> str:
    return hashlib.sha256(json.dumps(query).encode()).hexdigest()[:16]


def make_token(query: tuple[Any, ...], cursor: list[int]) -> str:
    raw = json.dumps([_query_hash(query), *cursor], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def read_token(query: tuple[Any, ...], token: str, n: int) -> list[int] | None:
    """The cursor of a page token of this query (None without a token)."""
    if not token:
        return None
    try:
        raw = json.loads(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4)))
        ok = (isinstance(raw, list) and len(raw) > 1 and isinstance(raw[0], str)
              and all(isinstance(x, int) for x in raw[1:]))
    except (ValueError, TypeError):
        ok = False
    if not ok:
        raise Refusal("INVALID_ARGUMENT", "malformed page_token: pass the next_page_token "
                      "of the previous page")
    if raw[0] != _query_hash(query) or len(raw) != n + 1:
        raise Refusal("PAGE_TOKEN_MISMATCH", "this page token belongs to another query: "
                      "pass it with the same product (or SKU and region), interval and "
                      "time range as the call that gave it, or leave it empty to start "
                      "again")
    return [int(x) for x in raw[1:]]


def time_range(frm: int, to: int) -> tuple[int, int]:
    lo, hi = max(0, frm), (to or FAR)
    if hi <= lo:
        raise Refusal("INVALID_ARGUMENT", "to_micros must be above from_micros (0: to the "
                      "last)")
    return lo, hi


def interval_of(name: str) -> int:
    if name not in px.INTERVALS:
        raise Refusal("INTERVAL_NOT_KEPT", f"the venue keeps candles at {px.KEPT}, not "
                      f"{name or '(none given)'!r}")
    return px.INTERVALS[name]


def day_of(name: str, today: int) -> int:
    try:
        day = px.day_number(name)
    except ValueError:
        raise Refusal("INVALID_DAY", f"a day is YYYY-MM-DD (UTC), not {name!r}") from None
    if day > today:
        raise Refusal("INVALID_DAY", f"{name} has not begun (today is {px.day_name(today)} "
                      "UTC)")
    return day


# ---- answers ----------------------------------------------------------------------------


def tape_trade(t: px.Print) -> Any:
    return pb.TapeTrade(trade_id=t.trade_id, product_id=t.product, price_micros=t.price,
                        quantity=t.qty, aggressor=t.aggressor,  # type: ignore[arg-type]
                        time_micros=t.time,
                        auction_id=t.auction_id)


def candle(c: px.Candle) -> Any:
    return pb.Candle(start_micros=c.start, open_price_micros=c.open,
                     high_price_micros=c.high, low_price_micros=c.low,
                     close_price_micros=c.close, volume=c.volume, trades=c.trades,
                     vwap_micros=c.vwap)


def list_trades(db: Any, r: Any, product: str, fam: str, size: int) -> Any:
    """On the tape's reader: a ListTrades page."""
    lo, hi = time_range(r.from_micros, r.to_micros)
    query = ("trades", product, fam, lo, hi)
    cursor = read_token(query, r.page_token, 2)
    rows = tp.query_trades(db, product, fam, lo, hi,
                           (cursor[0], cursor[1]) if cursor else None, size + 1)
    more = len(rows) > size
    rows = rows[:size]
    return pb.ListTradesResponse(
        trades=[tape_trade(t) for t in rows],
        next_page_token=make_token(query, list(rows[-1].key)) if more else "")


def list_candles(db: Any, r: Any, product: str, fam: str, size: int) -> Any:
    width = interval_of(r.interval)
    lo, hi = time_range(r.from_micros, r.to_micros)
    query = ("candles", product, fam, width, lo, hi)
    cursor = read_token(query, r.page_token, 1)
    start = lo - lo % width  # the interval that holds lo
    if cursor:
        start = cursor[0] + 1
    rows = tp.query_candles(db, product or fam, width, start, hi, size + 1)
    more = len(rows) > size
    rows = rows[:size]
    return pb.ListCandlesResponse(
        candles=[candle(c) for c in rows],
        next_page_token=make_token(query, [rows[-1].start]) if more else "")


def curve(sku: str, region: str, as_of: int, listed: list[tuple[str, str, int]],
          books: list[bytes], stats: dict[str, px.ProductStats]) -> Any:
    """The curve from each listed hour's (product, state, hour), its book (GetBook, depth
    1) and its trade statistics."""
    points = []
    for (product, state, hour), raw in zip(listed, books, strict=True):
        b = pb.GetBookResponse.FromString(raw).book
        s = stats.get(product) or px.ProductStats()
        points.append(pb.CurvePoint(
            product_id=product, hour=hour, state=state,
            best_bid_micros=b.bids[0].price_micros if b.bids else 0,
            bid_quantity=b.bids[0].quantity if b.bids else 0,
            best_ask_micros=b.asks[0].price_micros if b.asks else 0,
            ask_quantity=b.asks[0].quantity if b.asks else 0,
            last_price_micros=s.last_price, last_quantity=s.last_qty,
            last_time_micros=s.last_key[0], auction_id=s.auction_id,
            auction_price_micros=s.auction_price, auction_quantity=s.auction_qty,
            volume=s.volume, trades=s.trades))
    return pb.Curve(sku=sku, region=region, as_of_micros=as_of, points=points)


def index_row(sku: str, region: str, day: int, row: tuple[Any, ...] | None) -> Any:
    """A published (or no_index) day from the tape's row; a day before the family's first
    trade has none: no_index, nothing counted."""
    if row is None:
        return pb.DailyIndex(sku=sku, region=region, day=px.day_name(day), status="no_index",
                             methodology=px.METHODOLOGY)
    (_, revision, status, price, volume, trades, xvolume, xtrades, median, published_at,
     prev_price, prev_status, methodology) = row
    return pb.DailyIndex(sku=sku, region=region, day=px.day_name(day), status=status,
                         price_micros=price, volume=volume, trades=trades,
                         excluded_volume=xvolume, excluded_trades=xtrades,
                         median_micros=median, published_at_micros=published_at,
                         revision=revision, previous_price_micros=prev_price,
                         previous_status=prev_status, methodology=methodology)


def provisional(sku: str, region: str, day: int, v: px.IndexValue) -> Any:
    return pb.DailyIndex(sku=sku, region=region, day=px.day_name(day), status="provisional",
                         price_micros=v.price, volume=v.volume, trades=v.trades,
                         excluded_volume=v.excluded_volume,
                         excluded_trades=v.excluded_trades, median_micros=v.median,
                         methodology=px.METHODOLOGY)


def get_index(db: Any, fam: str, day: int, today: int) -> Any:
    sku, region = fam.split("/")
    if day == today:
        return provisional(sku, region, day, tp.compute_day(db, fam, day))
    rows = tp.query_index(db, fam, day, day, 1)
    return index_row(sku, region, day, rows[0] if rows else None)


def list_index(db: Any, r: Any, fam: str, today: int, size: int) -> Any:
    sku, region = fam.split("/")
    hi = day_of(r.to_day, today) if r.to_day else today - 1
    if r.from_day:
        lo = day_of(r.from_day, today)
    else:
        first = tp.first_day(db, fam)
        lo = today if first is None else first
    query = ("index", fam, lo, hi)
    cursor = read_token(query, r.page_token, 1)
    if cursor:
        hi = cursor[0] - 1
    days = list(range(hi, lo - 1, -1))[:size + 1]
    more = len(days) > size
    days = days[:size]
    if not days:
        return pb.ListIndexResponse()
    rows = {row[0]: row for row in tp.query_index(db, fam, days[-1], days[0], size)}
    out = [provisional(sku, region, d, tp.compute_day(db, fam, d)) if d == today
           else index_row(sku, region, d, rows.get(d)) for d in days]
    return pb.ListIndexResponse(days=out,
                                next_page_token=make_token(query, [days[-1]]) if more else "")
