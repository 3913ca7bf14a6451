"""spotex: an exchange for GPU-hours.

The matching engine lives in the Rust extension ``spotex._core``; this package is its
public face. Prices are integer micro-dollars per GPU-hour, quantities whole GPUs, times
integer microseconds since the Unix epoch (UTC).
"""

from spotex._core import (
    MICROS_PER_HOUR,
    Allocation,
    Engine,
    Event,
    Order,
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
    SpotexError,
    UnknownOrderError,
    UnknownProductError,
)
from spotex.money import format_price, parse_price

__all__ = [
    "MICROS_PER_HOUR",
    "Allocation",
    "CapacityError",
    "Engine",
    "Event",
    "InvalidOrderError",
    "InvalidProductError",
    "JournalError",
    "NotOwnerError",
    "Order",
    "PostOnlyWouldCrossError",
    "ProductStateError",
    "SpotexError",
    "UnknownOrderError",
    "UnknownProductError",
    "Utilisation",
    "format_price",
    "parse_price",
]
