"""The one boundary between protobuf messages and the SDK's types: every
message a call returns becomes a dataclass here, and nowhere else."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from decimal import Decimal
from typing import Any

from spotex import wire
from spotex.client.errors import RpcError, _code
from spotex.client.types import (
    AccountInfo,
    Allocation,
    AuctionPrice,
    AuctionResult,
    Balance,
    BlockAllocation,
    Book,
    Candle,
    Curve,
    CurvePoint,
    DailyIndex,
    Execution,
    Fill,
    IndicativeAuction,
    Level,
    MarketEvent,
    Order,
    Product,
    TapeTrade,
    Transfer,
    _price,
)

# what the exchange says of a limit that is not there (money is not checked)
_UNLIMITED = 2**63 - 1
_TRANSFER_KINDS = {1: "deposit", 2: "withdrawal", 3: "trade", 4: "fee", 5: "move_out",
                   6: "move_in"}


def _balance(b: Any) -> Balance:
    unlimited = b.credit_limit_micros == _UNLIMITED
    return Balance(b.account_id, _price(b.current_micros), _price(b.holds_micros),
                   None if unlimited else _price(b.available_micros),
                   None if unlimited else _price(b.credit_limit_micros),
                   b.maker_fee_bps, b.taker_fee_bps, _price(b.in_transit_micros))


def _transfer(t: Any) -> Transfer:
    return Transfer(t.transfer_id, t.debit_account_id, t.credit_account_id,
                    _price(t.amount_micros), _TRANSFER_KINDS.get(t.kind, "unknown"),
                    t.order_id, t.trade_id, _ts(t.time_micros), t.reference)


def _account_info(a: Any) -> AccountInfo:
    return AccountInfo(a.account_id, a.name, tuple(wire.ROLE_FROM_PB.get(r, "") for r in a.roles),
                       a.enabled, a.has_token)


def _ts(micros: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(micros / 1e6, dt.UTC)


def _fill(f: Any, product_id: str = "") -> Fill:
    """A fill names its product: a block's fill the hour it traded in, any other the
    order's own product (which the wire leaves out)."""
    return Fill(f.trade_id, _price(f.price_micros), f.quantity, f.maker,
                f.product_id or product_id, _price(f.fee_micros), f.auction_id)


def _order(o: Any) -> Order:
    return Order(o.order_id, o.client_order_id, o.product_id, wire.SIDE_FROM_PB[o.side],  # type: ignore[arg-type]
                 wire.TYPE_FROM_PB[o.order_type], _price(o.price_micros), o.quantity,
                 o.filled_quantity, o.remaining_quantity, wire.STATE_FROM_PB[o.state],
                 wire.TIF_FROM_PB[o.time_in_force], o.cluster_id or None, o.gang,
                 tuple(_fill(f, o.product_id) for f in o.fills), o.reason, max(1, o.hours),
                 o.window_hours,
                 o.min_quantity, o.range_id, o.display_quantity,
                 wire.LOCALITY_FROM_PB.get(o.locality, ""), o.locality_preferred,
                 o.colocate_with, wire.LOCALITY_FROM_PB.get(o.placed_level, ""),
                 o.placed_domain, o.resell_trade_id, o.resale_fee_bps, _price(o.fees_micros),
                 o.auction)


def _allocation(a: Any) -> Allocation:
    return Allocation(a.trade_id, a.product_id, a.cluster_id, a.hour, _price(a.price_micros),
                      a.quantity, tuple((s.node_id, tuple(s.gpu_indices)) for s in a.slots),
                      a.as_buyer,
                      tuple((s.node_id, s.block, s.rack, s.nvlink_domain) for s in a.slots),
                      a.buy_order_id, a.buyer_account, a.parent_trade_id, _price(a.fee_micros),
                      a.seller_account, a.as_provider, a.provider_account)


def _book(b: Any) -> Book:
    def levels(xs: Any) -> tuple[Level, ...]:
        return tuple(Level(_price(x.price_micros), x.quantity, x.orders) for x in xs)
    return Book(b.product_id, b.sequence, levels(b.bids), levels(b.asks))


def _product(p: Any, listed_before: bool = False) -> Product:
    return Product(p.product_id, p.state, _price(p.tick_micros), p.lot, _ts(p.open_at_micros),
                   _ts(p.close_at_micros), listed_before)


def _range(skus: Iterable[str], regions: Iterable[str], r: Any) -> list[Product]:
    """Every product of a CreateProducts range, new or listed before, in the order asked
    for (SKU, then region, then hour): a caller indexes it by hour whatever was listed."""
    sku_at = {s: i for i, s in enumerate(skus)}
    region_at = {g: i for i, g in enumerate(regions)}

    def key(p: Product) -> tuple[int, int, str]:
        sku, region, hour = p.product_id.split("/", 2)
        return sku_at.get(sku, len(sku_at)), region_at.get(region, len(region_at)), hour
    return sorted([*(_product(p) for p in r.products),
                   *(_product(p, True) for p in r.existing)], key=key)


def _market_event(m: Any) -> MarketEvent:
    which = m.WhichOneof("payload")
    if which == "snapshot":
        return MarketEvent("snapshot", m.product_id, m.sequence, book=_book(m.snapshot))
    if which == "level":
        x = m.level
        return MarketEvent("level", m.product_id, m.sequence, side=wire.SIDE_FROM_PB[x.side],  # type: ignore[arg-type]
                           price=_price(x.price_micros), quantity=x.quantity, orders=x.orders)
    if which == "trade":
        x = m.trade
        return MarketEvent("trade", m.product_id, m.sequence,
                           side=wire.SIDE_FROM_PB[x.aggressor], price=_price(x.price_micros),  # type: ignore[arg-type]
                           quantity=x.quantity, trade_id=x.trade_id,
                           auction_id=x.auction_id or None)
    if which == "auction":
        x = m.auction
        return MarketEvent("auction", m.product_id, m.sequence, price=_price(x.price_micros),
                           quantity=x.quantity, auction_id=x.auction_id)
    return MarketEvent("state", m.product_id, m.sequence, state=m.state)


def _result(x: Any) -> Order | RpcError:
    """One result of a bulk answer: the order, or why it was refused."""
    if x.code:
        return RpcError(_code(x.code), x.reason, x.message)
    return _order(x.order)


def _execution(e: Any) -> Execution:
    return Execution(e.sequence, e.kind, _order(e.order) if e.HasField("order") else None,
                     _fill(e.fill, e.order.product_id) if e.HasField("fill") else None,
                     _allocation(e.allocation) if e.HasField("allocation") else None,
                     _block(e.block) if e.HasField("block") else None, e.auction_id)


def _indicative(r: Any) -> IndicativeAuction:
    return IndicativeAuction(
        r.from_hour, r.to_hour, _ts(r.computed_at_micros),
        tuple(AuctionPrice(p.product_id, _price(p.price_micros), p.quantity)
              for p in r.prices),
        _price(r.welfare_micros), r.gap, r.bids,
        tuple((o.order_id, o.quantity) for o in r.your_orders))


def _auction(r: Any) -> AuctionResult:
    return AuctionResult(
        r.auction_id, r.from_hour, r.to_hour, r.state,
        _ts(r.started_at_micros) if r.started_at_micros else None,
        _ts(r.cleared_at_micros) if r.cleared_at_micros else None,
        tuple(AuctionPrice(p.product_id, _price(p.price_micros), p.quantity)
              for p in r.prices),
        _price(r.welfare_micros), r.gap, r.solve_micros / 1_000_000, r.bids,
        tuple(r.filled_orders), tuple(r.dropped_orders), tuple(r.paradoxically_rejected),
        _price(r.rejected_welfare_micros))


def _block(b: Any) -> BlockAllocation:
    return BlockAllocation(b.order_id, b.cluster_id, b.first_hour, b.hours,
                           tuple((s.node_id, tuple(s.gpu_indices)) for s in b.slots),
                           _price(b.cost_micros), tuple(b.trade_ids), b.provider_account)


def _maybe_price(micros: int) -> Decimal | None:
    return _price(micros) if micros else None


def _tape_trade(t: Any) -> TapeTrade:
    side = {1: "buy", 2: "sell"}.get(t.aggressor)
    return TapeTrade(t.trade_id, t.product_id, _price(t.price_micros), t.quantity,
                     side,  # type: ignore[arg-type]
                     _ts(t.time_micros), t.auction_id)


def _candle(c: Any) -> Candle:
    return Candle(_ts(c.start_micros), _price(c.open_price_micros),
                  _price(c.high_price_micros), _price(c.low_price_micros),
                  _price(c.close_price_micros), c.volume, c.trades, _price(c.vwap_micros))


def _curve(c: Any) -> Curve:
    return Curve(c.sku, c.region, _ts(c.as_of_micros), tuple(
        CurvePoint(p.product_id, p.hour, p.state, _maybe_price(p.best_bid_micros),
                   p.bid_quantity, _maybe_price(p.best_ask_micros), p.ask_quantity,
                   _maybe_price(p.last_price_micros), p.last_quantity,
                   _ts(p.last_time_micros) if p.last_time_micros else None, p.auction_id,
                   _maybe_price(p.auction_price_micros), p.auction_quantity, p.volume,
                   p.trades)
        for p in c.points))


def _daily_index(d: Any) -> DailyIndex:
    return DailyIndex(d.sku, d.region, dt.date.fromisoformat(d.day), d.status,
                      _maybe_price(d.price_micros), d.volume, d.trades, d.excluded_volume,
                      d.excluded_trades, _maybe_price(d.median_micros),
                      _ts(d.published_at_micros) if d.published_at_micros else None,
                      d.revision, _maybe_price(d.previous_price_micros), d.previous_status,
                      d.methodology)
