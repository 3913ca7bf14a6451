"""The base of every error spotex raises, in pure Python so that the SDK can raise it
without the engine extension: the engine's rejections (``spotex.exceptions``) and the
SDK's ``spotex.client.RpcError`` both derive from ``SpotexError``."""

from __future__ import annotations

from typing import Any


class SpotexError(Exception):
    """Base class of every spotex error. ``reason`` is a stable machine-readable code
    (for example ``"PRICE_OFF_TICK"``); an engine rejection also carries ``events``, what
    time produced before the command was refused (expiries, gate closures)."""

    reason: str
    events: list[Any]
