"""The spotex SDK: ``Client`` (blocking) and ``AsyncClient`` (asyncio), pure Python over
the generated gRPC stubs; it never loads the engine extension or the server.

Prices go in as ``Decimal`` or strings of dollars per GPU-hour and come back as
``Decimal``; they travel as exact integer micro-dollars. Calls raise ``RpcError`` (a
``SpotexError``) with the gRPC status code and spotex's machine-readable reason.
Every order carries a client order id (the SDK's own when the caller gives none), and a
command whose outcome is unknown is looked up by it before the call answers
(``resolve``): applied, ``NOT_APPLIED``, or still unknown after ``resolve_timeout``.
Users never see a protobuf message: every call is described once (``calls``) as a
request and a converter (``convert``), and the two clients (``sync``, ``aio``) only
differ in how they send it. What they return is in ``types``.
"""

from spotex.client.aio import AsyncClient
from spotex.client.errors import RpcError
from spotex.client.executions import AsyncExecutionStream, ExecutionStream
from spotex.client.sync import Client
from spotex.client.types import (
    Account,
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
    NodeArg,
    Order,
    Product,
    Side,
    SlotArg,
    TapeTrade,
    Transfer,
)

__all__ = [
    "Account",
    "AccountInfo",
    "Allocation",
    "AsyncClient",
    "AsyncExecutionStream",
    "AuctionPrice",
    "AuctionResult",
    "Balance",
    "BlockAllocation",
    "Book",
    "Candle",
    "Client",
    "Curve",
    "CurvePoint",
    "DailyIndex",
    "Execution",
    "ExecutionStream",
    "Fill",
    "IndicativeAuction",
    "Level",
    "MarketEvent",
    "NodeArg",
    "Order",
    "Product",
    "RpcError",
    "Side",
    "SlotArg",
    "TapeTrade",
    "Transfer",
]
