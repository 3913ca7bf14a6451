"""spotex: an exchange for GPU-hours.

The matching engine lives in the Rust extension ``spotex._core``; this package is its
public face. Prices are integer micro-dollars per GPU-hour, quantities whole GPUs, times
integer microseconds since the Unix epoch (UTC).

The engine's names load the extension on first use, so the SDK (``spotex.client``) and
the money helpers work without it.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from spotex.errors import SpotexError
from spotex.money import format_price, parse_price

if TYPE_CHECKING:
    from spotex._core import (
        MICROS_PER_HOUR,
        Allocation,
        Engine,
        Event,
        Events,
        Order,
        OrderType,
        SelfTradePrevention,
        Side,
        TimeInForce,
        Utilisation,
    )
    from spotex.exceptions import (
        CapacityError,
        InvalidOrderError,
        InvalidProductError,
        JournalError,
        NotOwnerError,
        PostOnlyWouldCrossError,
        ProductStateError,
        UnknownOrderError,
        UnknownProductError,
    )

_ENGINE = ("MICROS_PER_HOUR", "Allocation", "Engine", "Event", "Events", "Order", "OrderType",
           "SelfTradePrevention", "Side", "TimeInForce", "Utilisation")
_EXCEPTIONS = ("CapacityError", "InvalidOrderError", "InvalidProductError", "JournalError",
               "NotOwnerError", "PostOnlyWouldCrossError", "ProductStateError",
               "UnknownOrderError", "UnknownProductError")
_LAZY = {**dict.fromkeys(_ENGINE, "spotex._core"),
         **dict.fromkeys(_EXCEPTIONS, "spotex.exceptions")}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'spotex' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "MICROS_PER_HOUR",
    "Allocation",
    "CapacityError",
    "Engine",
    "Event",
    "Events",
    "InvalidOrderError",
    "InvalidProductError",
    "JournalError",
    "NotOwnerError",
    "Order",
    "OrderType",
    "PostOnlyWouldCrossError",
    "ProductStateError",
    "SelfTradePrevention",
    "Side",
    "SpotexError",
    "TimeInForce",
    "UnknownOrderError",
    "UnknownProductError",
    "Utilisation",
    "format_price",
    "parse_price",
]
