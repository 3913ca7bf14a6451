"""The exceptions spotex raises. Every rejection by the engine raises one of these, with a
stable machine-readable code in ``err.reason`` (for example ``"PRICE_OFF_TICK"``)."""

from spotex._core import (
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
from spotex.errors import SpotexError

__all__ = [
    "CapacityError",
    "InvalidOrderError",
    "InvalidProductError",
    "JournalError",
    "NotOwnerError",
    "PostOnlyWouldCrossError",
    "ProductStateError",
    "SpotexError",
    "UnknownOrderError",
    "UnknownProductError",
]
