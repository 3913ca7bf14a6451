"""The contract's words in Python: enum names to and from the generated protobuf enums.
Shared by the SDK and the server, so it imports neither the engine nor the server.
(Refusal reasons and their gRPC status codes are defined once, in the exchange.)"""

from __future__ import annotations

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
LOCALITY_TO_PB = {"": pb.LOCALITY_UNSPECIFIED, "node": pb.LOCALITY_NODE,
                  "nvlink_domain": pb.LOCALITY_NVLINK_DOMAIN, "rack": pb.LOCALITY_RACK,
                  "block": pb.LOCALITY_BLOCK, "cluster": pb.LOCALITY_CLUSTER}
LOCALITY_FROM_PB = {v: k for k, v in LOCALITY_TO_PB.items()}
ROLE_TO_PB = {"buyer": pb.ROLE_BUYER, "seller": pb.ROLE_SELLER, "operator": pb.ROLE_OPERATOR}
ROLE_FROM_PB = {v: k for k, v in ROLE_TO_PB.items()}
