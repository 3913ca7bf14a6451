"""The contract's words in Python: enum names to and from the generated protobuf enums,
and rejection reasons to gRPC status codes. Shared by the SDK and the server, so it
imports neither the engine nor the server."""

from __future__ import annotations

import grpc

from spotex._proto.spotex.v1 import spotex_pb2 as pb

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
