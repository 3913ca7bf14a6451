"""Block auctions of a sharded venue, run by its gateway as one auction.

Shards hold disjoint (SKU, region) families and an auction never mixes families in one
fill, so the venue's auction over a window is one auction per shard over that window,
under one id: the gateway numbers it one above the highest any shard has used (and any
it sent itself), sends ``RunAuction`` with that id to every shard at once, and merges
their results into one. The views (``GetAuctionResult``, ``ListAuctions``,
``GetIndicativeAuction``) ask every shard and merge what they answer per id.

A shard that refuses the run while others ran it leaves a partial auction: the others
cleared their families' orders under the id, the refusing shard's orders were not
decided and wait, live. The caller is told which shard refused and which ran it; the
next run gets the next id on every shard.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any, TypeAlias

import grpc

from spotex._core import page_size
from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex.cluster.engines import MARKET, Engines, ShardError, _reason
from spotex.server.accounts import OPERATOR, Account
from spotex.server.auctions import daily, hour_id

log = logging.getLogger(__name__)
OPERATOR_SERVICE = "spotex.v1.Operator"
# the longest window an auction takes, as the engine (hours)
MAX_WINDOW = 24 * 14
# what an engine refuses before it starts an auction: the id it was sent stays unused
_BEFORE_START = {"AUCTION_IN_PROGRESS", "AUCTION_UNAVAILABLE", "INVALID_ARGUMENT"}
# the account the gateway's own schedule acts as on the engines
SCHEDULE = Account(0, "auction schedule", [OPERATOR], "")

Answer: TypeAlias = "bytes | grpc.aio.AioRpcError | ShardError"


class AuctionRefused(Exception):
    """An auction call the gateway answers with a refusal of its own: ``reason`` and,
    when it is not the reason's usual one, ``code``."""

    def __init__(self, reason: str, message: str, code: grpc.StatusCode | None = None
                 ) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = code


def _why(err: grpc.aio.AioRpcError | ShardError) -> tuple[str, str, grpc.StatusCode | None]:
    """A shard's refusal: its reason, what it said, its status code."""
    if isinstance(err, ShardError):
        return err.reason, str(err), None
    return _reason(err) or err.code().name, err.details() or "", err.code()


class ShardAuctions:
    """The venue's auctions over the shards ``engines`` (by index). One runs at a time
    (``AUCTION_IN_PROGRESS`` for a second, as an engine answers)."""

    def __init__(self, engines: dict[int, Engines]) -> None:
        self.engines = engines
        self.indices = sorted(engines)
        self._lock = asyncio.Lock()
        self.last_sent = 0  # the highest id this gateway sent that a shard may have used
        self.outcomes = {"cleared": 0, "partial": 0, "refused": 0}  # runs, for metrics

    async def _each(self, service: str, method: str, body: bytes, account: Account,
                    timeout: float | None, *, command: bool) -> dict[int, Answer]:
        """The same call to every shard at once: each shard's answer or refusal."""
        async def one(index: int) -> Answer:
            try:
                return await self.engines[index].unary(service, method, body, account,
                                                       timeout, command=command,
                                                       dead_fast=True)
            except (grpc.aio.AioRpcError, ShardError) as err:
                return err
        answers = await asyncio.gather(*(one(i) for i in self.indices))
        return dict(zip(self.indices, answers, strict=True))

    @staticmethod
    def _all(answers: dict[int, Answer]) -> list[bytes]:
        """Every shard's answer, or the first refusal (in shard order) raised."""
        for a in answers.values():
            if not isinstance(a, bytes):
                raise a
        return [a for a in answers.values() if isinstance(a, bytes)]

    async def last_id(self, account: Account, timeout: float | None) -> tuple[int, str]:
        """The highest auction id any shard has used (its newest result) or this gateway
        sent, and who used it."""
        body = pb.ListAuctionsRequest(page_size=1).SerializeToString()
        answers = await self._each(MARKET, "ListAuctions", body, account, timeout,
                                   command=False)
        last, by = self.last_sent, "this gateway"
        for index, a in answers.items():
            if not isinstance(a, bytes):
                reason, said, code = _why(a)
                raise AuctionRefused(reason, f"the auction was not started: shard {index} "
                                     f"did not say its last auction id ({reason}: {said})",
                                     code)
            newest = pb.ListAuctionsResponse.FromString(a).auctions
            if newest and newest[0].auction_id > last:
                last, by = newest[0].auction_id, f"shard {index}"
        return last, by

    async def run(self, from_hour: int, to_hour: int, time_limit_ms: int, auction_id: int,
                  account: Account, timeout: float | None) -> Any:
        """One auction over ``[from_hour, to_hour)`` on every shard, numbered
        ``auction_id`` (0: one above the venue's last); the shards' results merged."""
        if self._lock.locked():
            raise AuctionRefused("AUCTION_IN_PROGRESS", "another auction is being cleared; "
                                 "run this one once it has (GetAuctionResult)")
        if to_hour <= from_hour:
            raise AuctionRefused("INVALID_ARGUMENT", "an auction's window ends after it "
                                 "begins: to_hour must be above from_hour")
        if to_hour - from_hour > MAX_WINDOW:
            raise AuctionRefused("INVALID_ARGUMENT", "an auction's window is at most two "
                                 f"weeks ({MAX_WINDOW} hours)")
        async with self._lock:
            last, by = await self.last_id(account, timeout)
            if auction_id and auction_id <= last:
                raise AuctionRefused("INVALID_ARGUMENT", f"auction id {auction_id} is taken: "
                                     f"ids rise, and the venue's last was {last} ({by})")
            number = auction_id or last + 1
            body = pb.RunAuctionRequest(from_hour=from_hour, to_hour=to_hour,
                                        time_limit_ms=time_limit_ms,
                                        auction_id=number).SerializeToString()
            # the next auction is numbered above this one, even if this call is cancelled
            # while the shards clear it (they go on), unless no shard started it
            before, self.last_sent = self.last_sent, number
            answers = await self._each(OPERATOR_SERVICE, "RunAuction", body, account,
                                       timeout, command=True)
            ran = {i: pb.AuctionResult.FromString(a) for i, a in answers.items()
                   if isinstance(a, bytes)}
            failed = {i: a for i, a in answers.items() if not isinstance(a, bytes)}
            if not ran and all(_why(a)[0] in _BEFORE_START for a in failed.values()):
                self.last_sent = before
            if failed:
                self.outcomes["partial" if ran else "refused"] += 1
                raise self._refusal(number, from_hour, to_hour, ran, failed)
            self.outcomes["cleared"] += 1
            result = merged(ran.values())
            log.info("auction %d cleared on shards %s: %d filled, %d dropped, welfare "
                     "$%.2f", number, ", ".join(map(str, ran)), len(result.filled_orders),
                     len(result.dropped_orders), result.welfare_micros / 1e6)
            return result

    def _refusal(self, number: int, from_hour: int, to_hour: int, ran: dict[int, Any],
                 failed: dict[int, grpc.aio.AioRpcError | ShardError]) -> AuctionRefused:
        """What the caller is told when a shard did not run auction ``number``: the
        first refusal's reason and code, every shard named."""
        said = []
        for index, err in failed.items():
            reason, text, _ = _why(err)
            did = "may have run it" if reason == "SHARD_UNAVAILABLE" else "refused it"
            said.append(f"shard {index} {did}: {reason}: {text}")
        window = f"over {hour_id(from_hour)} to {hour_id(to_hour)}"
        if ran:
            shards = ", ".join(map(str, ran))
            tail = (f"; shard{'s' if len(ran) > 1 else ''} {shards} ran it (GetAuctionResult "
                    f"{number} shows what they cleared): the others' auction orders wait, "
                    "live; run another auction over the window for them (it gets the next "
                    "id on every shard)")
            log.warning("auction %d %s ran on shards %s only: %s", number, window, shards,
                        "; ".join(said))
        else:
            tail = ""
        reason, _, code = _why(next(iter(failed.values())))
        return AuctionRefused(reason, f"auction {number} {window}: {'; '.join(said)}{tail}",
                              code)

    async def result(self, auction_id: int, account: Account, timeout: float | None) -> Any:
        """Auction ``auction_id`` (0: the latest, the highest id any shard has) as the
        venue's: the results of the shards that have it, merged."""
        body = pb.GetAuctionResultRequest(auction_id=auction_id).SerializeToString()
        answers = await self._each(MARKET, "GetAuctionResult", body, account, timeout,
                                   command=False)
        found, missing = [], None
        for a in answers.values():
            if isinstance(a, bytes):
                found.append(pb.AuctionResult.FromString(a))
            elif isinstance(a, grpc.aio.AioRpcError) and _reason(a) == "UNKNOWN_AUCTION":
                missing = missing or a
            else:
                raise a
        if not found:
            assert missing is not None
            raise missing  # the engine's own answer: UNKNOWN_AUCTION, NOT_FOUND
        # each shard's latest: only those of the highest id are that auction
        latest = max(r.auction_id for r in found)
        return merged(r for r in found if r.auction_id == latest)

    async def listed(self, body: bytes, account: Account, timeout: float | None) -> Any:
        """A page of the venue's auctions, newest first: every shard's page after the same
        id, merged per id (so the merge's page is exact, as ListOrders')."""
        r = pb.ListAuctionsRequest.FromString(body)
        parts = [pb.ListAuctionsResponse.FromString(a) for a in self._all(await self._each(
            MARKET, "ListAuctions", body, account, timeout, command=False))]
        by_id: dict[int, list[Any]] = {}
        for p in parts:
            for a in p.auctions:
                by_id.setdefault(a.auction_id, []).append(a)
        ids = sorted(by_id, reverse=True)
        size = page_size(r.page_size)
        more = len(ids) > size or any(p.next_page_token for p in parts)
        ids = ids[:size]
        return pb.ListAuctionsResponse(auctions=[merged(by_id[i]) for i in ids],
                                       next_page_token=str(ids[-1]) if more and ids else "")

    async def indicative(self, body: bytes, account: Account, timeout: float | None) -> Any:
        """What the venue's auction over the window would clear now: every shard's
        indicative answer (the caller's own orders on each), merged."""
        parts = [pb.IndicativeAuction.FromString(a) for a in self._all(await self._each(
            MARKET, "GetIndicativeAuction", body, account, timeout, command=False))]
        return pb.IndicativeAuction(
            from_hour=parts[0].from_hour, to_hour=parts[0].to_hour,
            computed_at_micros=max(p.computed_at_micros for p in parts),
            prices=sorted((x for p in parts for x in p.prices), key=_product),
            welfare_micros=sum(p.welfare_micros for p in parts),
            gap=max(p.gap for p in parts), bids=sum(p.bids for p in parts),
            your_orders=sorted((o for p in parts for o in p.your_orders), key=_order))

    async def on_schedule(self, schedule: str) -> None:
        """The venue's daily auction at the gateway's gate, for ever (a task the gateway
        cancels when it stops); the engines' own time limits apply."""
        async def run(first: int, last: int) -> Any:
            return await self.run(first, last, 0, 0, SCHEDULE, None)
        await daily(schedule, run)


def merged(parts: Iterable[Any]) -> Any:
    """The shards' results of one auction as the venue's: its id and window; started the
    earliest, cleared the latest; ``cleared`` only if every shard cleared it; the prices
    and orders of all (sorted), the welfare and bids summed, the gap and solve time the
    largest."""
    rs = list(parts)
    states = {r.state for r in rs}
    return pb.AuctionResult(
        auction_id=rs[0].auction_id, from_hour=min(r.from_hour for r in rs),
        to_hour=max(r.to_hour for r in rs),
        started_at_micros=min((r.started_at_micros for r in rs if r.started_at_micros),
                              default=0),
        cleared_at_micros=max(r.cleared_at_micros for r in rs),
        state="cleared" if states == {"cleared"} else max(states - {"cleared"}),
        prices=sorted((p for r in rs for p in r.prices), key=_product),
        welfare_micros=sum(r.welfare_micros for r in rs), gap=max(r.gap for r in rs),
        solve_micros=max(r.solve_micros for r in rs), bids=sum(r.bids for r in rs),
        filled_orders=sorted(o for r in rs for o in r.filled_orders),
        dropped_orders=sorted(o for r in rs for o in r.dropped_orders),
        paradoxically_rejected=sorted(o for r in rs for o in r.paradoxically_rejected),
        rejected_welfare_micros=sum(r.rejected_welfare_micros for r in rs),
        first_come_welfare_micros=sum(r.first_come_welfare_micros for r in rs))


def _product(price: Any) -> str:
    return str(price.product_id)


def _order(order: Any) -> int:
    return int(order.order_id)
