"""The command line's own argument types: prices in dollars, whole-GPU quantities,
delivery hours, times, nodes and GPUs, ids; each refuses a bad value in one line
saying what it should look like."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Any

import click

from spotex.client import (
    NodeArg,
)


class _Price(click.ParamType[Decimal]):
    """Dollars per GPU-hour, written plainly: 2, 2.1, 2.10. No exponent, sign, currency
    symbol, thousands separator or more than six decimals (a micro-dollar)."""

    name = "price"
    _FORM = re.compile(r"\d{1,7}(\.\d{1,6})?")

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> Decimal:
        if isinstance(value, Decimal):
            return value
        text = str(value).strip()
        if text.startswith("-"):
            self.fail(f"{value!r}: prices are positive", param, ctx)
        if not self._FORM.fullmatch(text):
            self.fail(f"{value!r} is not a price in dollars like 2.10 (at most six decimals)",
                      param, ctx)
        return Decimal(text)


class _Quantity(click.ParamType[int]):
    """Whole GPUs (GPU-hours per hour), 1 to 10,000,000."""

    name = "quantity"
    MAX = 10_000_000

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            n = value
        else:
            text = str(value).strip()
            if not re.fullmatch(r"-?\d+", text):
                self.fail(f"{value!r} is not a whole number of GPUs", param, ctx)
            n = int(text)
        if not 1 <= n <= self.MAX:
            self.fail(f"{value!r}: a quantity is 1 to {self.MAX:,} GPUs", param, ctx)
        return n


PRICE = _Price()


class _Amount(_Price):
    """An amount of money in dollars: up to a trillion, to the micro-dollar."""

    name = "dollars"
    _FORM = re.compile(r"\d{1,13}(\.\d{1,6})?")


AMOUNT = _Amount()
QUANTITY = _Quantity()


class _Hour(click.ParamType[int]):
    """A delivery hour: hours since the epoch (490000), or a UTC time on the hour
    (2026-11-30T18, 2026-11-30T18:00Z)."""

    name = "hour"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> int:
        if isinstance(value, int):
            return value
        text = str(value).strip()
        if text.isdigit():
            return int(text)
        try:
            when = dt.datetime.fromisoformat(text if len(text) != 13 else text + ":00")
        except ValueError:
            self.fail(f"{value!r} is not an hour: give 2026-11-30T18 or hours since the epoch",
                      param, ctx)
        if when.tzinfo is None:
            when = when.replace(tzinfo=dt.UTC)
        if when.minute or when.second or when.microsecond:
            self.fail(f"{value!r} is not on the hour", param, ctx)
        return int(when.timestamp()) // 3600


class _Node(click.ParamType[NodeArg]):
    """A node and its GPUs, n0:8, and where it sits: n0:8@pod1/rack3/nvl2 (its block,
    rack and NVLink domain; a label left empty is shared with no other node)."""

    name = "node:gpus[@block/rack/domain]"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> NodeArg:
        if isinstance(value, tuple):
            return value
        text, at, where = str(value).partition("@")
        node, _, gpus = text.rpartition(":")
        if not node or not gpus.isdigit() or not 1 <= int(gpus) <= 1024:
            self.fail(f"{value!r} is not NODE:GPUS like n0:8", param, ctx)
        if not at:
            return node, int(gpus)
        labels = where.split("/")
        if len(labels) != 3:
            self.fail(f"{value!r}: the place is BLOCK/RACK/DOMAIN, like n0:8@pod1/r3/nvl2",
                      param, ctx)
        return node, int(gpus), labels[0], labels[1], labels[2]


class _When(click.ParamType[dt.datetime]):
    """A time in ISO 8601, UTC unless it says otherwise."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> dt.datetime:
        if isinstance(value, dt.datetime):
            return value
        try:
            when = dt.datetime.fromisoformat(str(value).strip())
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 time like 2026-11-30T17:30Z", param, ctx)
        return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


class _NodeGpus(click.ParamType[tuple[str, tuple[int, ...]]]):
    """GPUs of one node: NODE:I,J,... (n0:4,5,6,7)."""

    name = "node:gpus"

    def convert(self, value: Any, param: click.Parameter | None,
                ctx: click.Context | None) -> tuple[str, tuple[int, ...]]:
        node, _, idx = str(value).rpartition(":")
        try:
            gpus = tuple(int(i) for i in idx.split(","))
        except ValueError:
            gpus = ()
        if not node or not gpus or any(not 0 <= g < 64 for g in gpus):
            self.fail(f"{value!r} is not NODE:I,J,... (GPU indices 0 to 63)", param, ctx)
        return node, gpus


HOUR, NODE, WHEN, NODE_GPUS = _Hour(), _Node(), _When(), _NodeGpus()
ACCOUNT_ID = click.IntRange(1, (1 << 63) - 1)
ORDER_ID = click.IntRange(1, (1 << 64) - 1)
