"""The one boundary between the generated protobuf messages and everything else: enum
names, order records to ``Order`` messages, allocations to ``Allocation`` messages, and
engine rejection codes to gRPC status codes."""

from __future__ import annotations

from typing import Any

import grpc

from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex.gateway import FillRecord, OrderRecord

SIDE_TO_PB = {"buy": pb.SIDE_BUY, "sell": pb.SIDE_SELL}
SIDE_FROM_PB = {pb.SIDE_BUY: "buy", pb.SIDE_SELL: "sell"}
TYPE_TO_PB = {"limit": pb.ORDER_TYPE_LIMIT, "market": pb.ORDER_TYPE_MARKET}
TYPE_FROM_PB = {v: k for k, v in TYPE_TO_PB.items()}
TIF_TO_PB = {"gtc": pb.TIME_IN_FORCE_GTC, "gtd": pb.TIME_IN_FORCE_GTD,
             "ioc": pb.TIME_IN_FORCE_IOC, "fok": pb.TIME_IN_FORCE_FOK}
TIF_FROM_PB = {v: k for k, v in TIF_TO_PB.items()}
STP_TO_PB = {"cancel_newest": pb.STP_CANCEL_NEWEST, "cancel_oldest": pb.STP_CANCEL_OLDEST,
             "cancel_both": pb.STP_CANCEL_BOTH}
STP_FROM_PB = {v: k for k, v in STP_TO_PB.items()}
STATE_TO_PB = {"open": pb.ORDER_STATE_OPEN, "partially_filled": pb.ORDER_STATE_PARTIALLY_FILLED,
               "filled": pb.ORDER_STATE_FILLED, "cancelled": pb.ORDER_STATE_CANCELLED,
               "expired": pb.ORDER_STATE_EXPIRED}
STATE_FROM_PB = {v: k for k, v in STATE_TO_PB.items()}
ROLE_TO_PB = {"buyer": pb.ROLE_BUYER, "seller": pb.ROLE_SELLER, "operator": pb.ROLE_OPERATOR}
ROLE_FROM_PB = {v: k for k, v in ROLE_TO_PB.items()}

# Rejection reasons by gRPC status code; anything not listed is INVALID_ARGUMENT.
_CODES: dict[str, grpc.StatusCode] = {}
for _code, _reasons in {
    grpc.StatusCode.NOT_FOUND: ["UNKNOWN_PRODUCT", "UNKNOWN_ORDER", "UNKNOWN_CLUSTER"],
    grpc.StatusCode.ALREADY_EXISTS: ["DUPLICATE_PRODUCT", "DUPLICATE_CLUSTER",
                                     "DUPLICATE_CLIENT_ORDER_ID"],
    grpc.StatusCode.FAILED_PRECONDITION: ["PRODUCT_NOT_OPEN", "PRODUCT_HALTED", "PRODUCT_CLOSED",
                                          "POST_ONLY_WOULD_CROSS", "INSUFFICIENT_CAPACITY"],
    grpc.StatusCode.PERMISSION_DENIED: ["NOT_OWNER", "ROLE_REQUIRED"],
    grpc.StatusCode.UNAUTHENTICATED: ["UNAUTHENTICATED"],
    grpc.StatusCode.RESOURCE_EXHAUSTED: ["RATE_LIMITED", "TOO_MANY_OPEN_ORDERS", "TOO_MANY_ORDERS",
                                         "TOO_MANY_PRODUCTS", "SUBSCRIBER_LAGGED"],
    grpc.StatusCode.DEADLINE_EXCEEDED: ["DEADLINE_EXCEEDED"],
    grpc.StatusCode.UNAVAILABLE: ["JOURNAL_UNAVAILABLE"],
}.items():
    for _r in _reasons:
        _CODES[_r] = _code


def status_for(reason: str) -> grpc.StatusCode:
    return _CODES.get(reason, grpc.StatusCode.INVALID_ARGUMENT)


def fill_pb(f: FillRecord) -> Any:
    return pb.Fill(trade_id=f.trade_id, price_micros=f.price, quantity=f.qty, maker=f.maker,
                   time_micros=f.ts)


def order_pb(r: OrderRecord, with_fills: bool = True) -> Any:
    return pb.Order(
        order_id=r.order_id, client_order_id=r.client_order_id, product_id=r.product,
        side=SIDE_TO_PB[r.side], order_type=TYPE_TO_PB[r.order_type], price_micros=r.price,
        quantity=r.quantity, filled_quantity=r.filled, remaining_quantity=r.remaining,
        state=STATE_TO_PB[r.state], time_in_force=TIF_TO_PB[r.tif], cluster_id=r.cluster or "",
        gang=r.gang, fills=[fill_pb(f) for f in r.fills] if with_fills else [],
        created_at_micros=r.created_at, reason=r.reason)


def allocation_pb(a: Any, account: int) -> Any:
    return pb.Allocation(
        trade_id=a.trade_id, product_id=a.product, cluster_id=a.cluster, hour=a.hour,
        buy_order_id=a.buy_order, sell_order_id=a.sell_order, price_micros=a.price,
        quantity=a.qty, slots=[pb.Slot(node_id=n, gpu_indices=g) for n, g in a.slots],
        as_buyer=a.buyer == account)


def level_pb(level: tuple[int, int, int]) -> Any:
    return pb.Level(price_micros=level[0], quantity=level[1], orders=level[2])


def book_pb(product: str, sequence: int, bids: list[Any], asks: list[Any]) -> Any:
    return pb.Book(product_id=product, sequence=sequence, bids=[level_pb(x) for x in bids],
                   asks=[level_pb(x) for x in asks])


def product_pb(row: tuple[str, str, int, int, int, int]) -> Any:
    pid, state, tick, lot, open_at, close_at = row
    return pb.Product(product_id=pid, state=state, tick_micros=tick, lot=lot,
                      open_at_micros=open_at, close_at_micros=close_at)
