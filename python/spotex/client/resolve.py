"""What the SDK does when a command's outcome is unknown (see ``RpcError.outcome_unknown``):
it looks the command up until the venue says whether it was applied, within the
client's ``resolve_timeout``.

A lookup is described once, as steps: a generator that yields the calls to make and
gets each answer back (or the ``RpcError`` thrown in), and returns what the command
would have answered. Both clients drive the same steps (``Client`` blocking, ``AsyncClient``
awaiting), and judge each failed attempt with ``Resolving.after``: the venue cannot
say yet (try again after a wait that doubles from 0.1 s to 2 s), it did not apply the
command (``NOT_APPLIED``), or something else answered (the outcome stays unknown)."""

from __future__ import annotations

import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import grpc

from spotex.client.calls import _Call, _Calls, _new_client_order_id
from spotex.client.errors import _LOST, RpcError
from spotex.client.types import Order

T = TypeVar("T")

# the calls of a lookup, each answer sent back in; returns the command's answer
Steps = Generator[_Call[Any], Any, T]
Lookup = Callable[[], Steps[T]]

FIRST_WAIT = 0.1
LONGEST_WAIT = 2.0
# how long after a command's deadline it may still reach the engine: the venue's clock for
# it starts when the request arrives, later than the client's by the network's delay
SETTLE = 1.0
# answers of a lookup that say nothing yet: ask again (and gRPC's own failures of the
# connection or the deadline, a connection never made included: the venue may be back)
_CANNOT_SAY = frozenset({"JOURNAL_UNAVAILABLE", "SHARD_UNAVAILABLE", "OUTCOME_UNKNOWN"})
_OPEN = ("open", "partially_filled")


class NotApplied(Exception):
    """Raised by a lookup's steps: the venue answered, and the command is not in it."""

    def __init__(self, detail: str) -> None:
        super().__init__(detail)
        self.detail = detail


@dataclass(frozen=True)
class Recovery(Generic[T]):
    """How a command's unknown outcome is resolved: ``what`` is looked up ("client order
    id X", "order N"), by ``look``'s steps (None: the SDK cannot tell, it only says how);
    ``later`` tells the caller how to resolve it when the SDK could not."""

    what: str
    later: str
    look: Lookup[T] | None = None
    client_order_id: str = ""


class Resolving:
    """One command whose outcome is unknown: ``err`` as it came, looked up as ``how``
    says for at most ``bound`` seconds (0: not at all). ``settled``: the monotonic time
    after which the command can no longer be applied (its deadline, plus ``SETTLE`` for
    the venue's clock starting later): until then a "not there" may only mean "not yet"
    (a command whose connection was lost may still be on its way to the engine, which
    refuses it once its deadline has passed), so it is asked again after it."""

    def __init__(self, err: RpcError, how: Recovery[Any], bound: float,
                 settled: float) -> None:
        self.err = err
        self.what = how.what
        self.later = how.later
        self.client_order_id = how.client_order_id
        self.bound = max(0.0, bound) if how.look is not None else 0.0
        self.started = time.monotonic()
        self.settled = settled
        self.wait = FIRST_WAIT
        self.tries = 0

    def left(self) -> float:
        return self.started + self.bound - time.monotonic()

    def timeout(self, usual: float) -> float:
        """A lookup's deadline: the client's, cut to what is left of the bound."""
        self.tries += 1
        return max(0.05, min(usual, self.left()))

    def after(self, answer: Exception) -> float:
        """A lookup failed with ``answer``: the seconds to wait before the next one, or
        raises what the caller is told (``NOT_APPLIED``, or the outcome still unknown)."""
        if isinstance(answer, NotApplied) or (isinstance(answer, RpcError) and
                                              answer.reason == "UNKNOWN_ORDER" and
                                              not answer.transport):
            early = self.settled - time.monotonic()
            if early <= 0:
                raise self.not_applied(getattr(answer, "detail", "")) from None
            if early > self.left():
                raise self.unresolved("not there yet, but the command's deadline had not "
                                      "passed") from None
            return early
        assert isinstance(answer, RpcError)
        if not (answer.reason in _CANNOT_SAY or (answer.transport and answer.code in _LOST)):
            raise self.unresolved(answer.reason) from None
        wait = min(self.wait, self.left())
        if wait <= 0:
            raise self.unresolved(answer.reason) from None
        self.wait = min(2 * self.wait, LONGEST_WAIT)
        return wait

    def not_applied(self, detail: str) -> RpcError:
        return RpcError(grpc.StatusCode.UNAVAILABLE, "NOT_APPLIED",
                        f"the venue did not apply it (looked up by {self.what}{detail}, "
                        f"after {self.err.reason}); it is safe to send it again",
                        client_order_id=self.client_order_id)

    def unresolved(self, last: str | None = None) -> RpcError:
        """The command's own error, its message saying what the SDK looked up (and for
        how long) and how to learn the outcome."""
        e = self.err
        looked = "" if last is None else (
            f"; still unknown after {self.tries} lookups by {self.what} in "
            f"{time.monotonic() - self.started:.1f} s (the last answered {last})")
        return RpcError(e.code, e.reason, f"{e.message}{looked}; {self.later}", e.retry_after,
                        transport=e.transport, client_order_id=self.client_order_id)


def by_client_id(client_order_id: str) -> Steps[Order]:
    """An order, a one-of group's order: the one of this client order id."""
    order: Order = yield _Calls.get_order_by_client_id(client_order_id)
    return order


def basket_by_client_ids(ids: list[str]) -> Steps[list[Order]]:
    """A basket's legs, by their client order ids: all of them, or (the first not found)
    none, as a basket is accepted whole or not at all."""
    orders: list[Order] = [(yield _Calls.get_order_by_client_id(ids[0]))]
    for cid in ids[1:]:
        try:
            orders.append((yield _Calls.get_order_by_client_id(cid)))
        except RpcError as err:
            if err.reason != "UNKNOWN_ORDER":
                raise
            raise RpcError(err.code, "LEG_NOT_FOUND", f"leg {cid} of a basket whose first "
                           "leg was found is not") from None
    return orders


def cancelled(order_id: int) -> Steps[Order]:
    """Whether a cancel was applied: once the venue can say (a lookup by a client order id
    nobody used answers UNKNOWN_ORDER, not JOURNAL_UNAVAILABLE: what memory holds is what
    the journal holds), the order as it is. Still open: the cancel was not applied;
    cancelled (or ended otherwise): it no longer rests, as the cancel asked."""
    try:
        yield _Calls.get_order_by_client_id(_new_client_order_id())
    except RpcError as err:
        if err.reason != "UNKNOWN_ORDER" or err.transport:
            raise
    order: Order = yield _Calls.get_order(order_id)
    if order.state in _OPEN:
        raise NotApplied(f": it is {order.state.replace('_', ' ')}")
    return order


def of_order(client_order_id: str) -> Recovery[Order]:
    """An order or a one-of group: looked up by its client order id."""
    return Recovery(f"client order id {client_order_id}",
                    f"look it up by client order id {client_order_id} once the venue "
                    "serves again, or send it again with the same id",
                    lambda: by_client_id(client_order_id), client_order_id)


def of_basket(ids: list[str]) -> Recovery[list[Order]]:
    return Recovery(f"client order id {ids[0]} (the basket's first leg)",
                    f"look its legs up by client order ids {', '.join(ids[:3])}"
                    f"{', ...' if len(ids) > 3 else ''} once the venue serves again, or "
                    "send it again with the same ids", lambda: basket_by_client_ids(ids),
                    ids[0])


def of_asks(client_order_id: str) -> Recovery[Any]:
    """A range or a resale: not looked up by the SDK (which of its asks were placed, each
    on its own, is more than one lookup can tell)."""
    return Recovery(f"client order id {client_order_id}",
                    f"look its asks up by client order ids {client_order_id}#0, "
                    f"{client_order_id}#1, ... once the venue serves again",
                    None, client_order_id)


def of_cancel(order_id: int) -> Recovery[Order]:
    return Recovery(f"order {order_id}", f"look order {order_id} up once the venue serves "
                    "again; cancelling it again is safe", lambda: cancelled(order_id))


def of_amend(order_id: int) -> Recovery[Order]:
    """An amend: not looked up (the order's price and quantity do not say whether this
    amend changed them)."""
    return Recovery(f"order {order_id}", f"look order {order_id} up once the venue serves "
                    "again before amending it again")

