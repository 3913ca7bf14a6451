"""Bulk entry: commands as numpy structured arrays of packed 64-byte records, applied by
the core in one call with the GIL released, and their events back as another array.

Rejections are events here (kind ``REJECTED`` with the reason's index into
``REJECT_CODES``), never exceptions, so one bad record does not stop a batch.
Products and clusters are addressed by handle: ``engine.product_handle(id)``.
"""

from __future__ import annotations

from typing import Any

from spotex.extras import require

require("numpy", "batch", "spotex.batch")  # a clear message when the extra is missing
import numpy as np  # noqa: E402
import numpy.typing as npt  # noqa: E402

from spotex._core import Engine, cancel_reasons, reject_codes  # noqa: E402

PLACE, CANCEL, AMEND, ADVANCE_TIME = 1, 2, 3, 4
BUY, SELL = 0, 1
LIMIT, MARKET = 0, 1
GTC, GTD, IOC, FOK = 0, 1, 2, 3
CANCEL_NEWEST, CANCEL_OLDEST, CANCEL_BOTH = 0, 1, 2
NO_CLUSTER = 0xFFFF_FFFF

ACCEPTED, REJECTED, TRADE, CANCELLED, EXPIRED, AMENDED, ALLOCATED, OTHER = range(1, 9)
EVENT_KINDS = {ACCEPTED: "accepted", REJECTED: "rejected", TRADE: "trade",
               CANCELLED: "cancelled", EXPIRED: "expired", AMENDED: "amended",
               ALLOCATED: "allocated", OTHER: "other"}
REJECT_CODES: list[str] = reject_codes()
CANCEL_REASONS: list[str] = cancel_reasons()

COMMAND_DTYPE = np.dtype([
    ("kind", "u1"), ("side", "u1"), ("order_type", "u1"), ("tif", "u1"),
    ("post_only", "u1"), ("stp", "u1"), ("gang", "u1"), ("reserved", "u1"),
    ("product", "<u4"), ("cluster", "<u4"), ("account", "<u8"), ("order_id", "<u8"),
    ("price", "<i8"), ("qty", "<i8"), ("ts", "<i8"), ("expire_at", "<i8"),
])
EVENT_DTYPE = np.dtype([
    ("command", "<u4"), ("kind", "u1"), ("code", "u1"), ("side", "u1"), ("reserved", "u1"),
    ("order_id", "<u8"), ("account", "<u8"), ("other_order", "<u8"), ("other_account", "<u8"),
    ("price", "<i8"), ("qty", "<i8"), ("product", "<u4"), ("cluster", "<u4"),
])
assert COMMAND_DTYPE.itemsize == 64 and EVENT_DTYPE.itemsize == 64

Commands = npt.NDArray[Any]


def commands(n: int) -> Commands:
    """A zeroed command array of length n (gang 0 means 1; no cluster)."""
    a = np.zeros(n, dtype=COMMAND_DTYPE)
    a["cluster"] = NO_CLUSTER
    return a


def apply(engine: Engine, cmds: Commands | bytes) -> npt.NDArray[Any]:
    """Applies the commands in order; returns one event record per event."""
    if isinstance(cmds, bytes):
        raw = memoryview(cmds)
    else:  # no copy: the core reads the array's memory as bytes
        raw = np.ascontiguousarray(cmds, COMMAND_DTYPE).view(np.uint8).data
    return np.frombuffer(engine.apply_batch(raw), dtype=EVENT_DTYPE)
