"""Money in a sharded venue: one account's money spread over the shards, never spent
twice (docs/scaling.md, "Money across shards").

Each shard's exchange holds against the money the account has *on that shard*, so a
dollar backs orders on one shard only. An account's deposits, withdrawals and credit
limit live on its home shard (its id modulo the number of shards, in shard order). When
a shard refuses a buy ``INSUFFICIENT_FUNDS``, the gateway moves money to it from the
others (first half of what each has free, then, if the buy still does not fit, all of
it) and sends the buy again; a withdrawal gathers the money free on every shard home
first. A view of the account (its balance, its transfers) is every shard's, merged.

A move is three journaled steps: ``OUT`` on the source (the money leaves the account
there and waits, numbered per destination), ``IN`` on the destination (applied once,
in number order: a resent ``IN`` changes nothing), ``LANDED`` on the source (it forgets
the moves that arrived). Whatever fails between them, the money is on the source or in
transit, never on both shards; a sweep every few seconds (and at the gateway's start)
lands whatever was left in transit, so a gateway that dies mid-move loses nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

import grpc

from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex.cluster.engines import MARKET, Engines, ShardError, _reason
from spotex.server.accounts import OPERATOR, Account

log = logging.getLogger(__name__)
OPERATOR_SERVICE = "spotex.v1.Operator"
# the gateway's own calls for money (moves, and the sweep): an operator's
GATEWAY = Account(0, "gateway", [OPERATOR], "")
INT64_MAX = 2**63 - 1
SHARD_BITS = 48  # a shard numbers its ids (transfers here) from index << 48
SWEEP_SECONDS = 5.0
STEP_SECONDS = 10.0  # each step of a move waits at most this


class MoneyFailed(Exception):
    """A money call the gateway could not complete; ``reason`` as the contract says."""

    def __init__(self, reason: str, message: str,
                 code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE) -> None:
        super().__init__(message)
        self.reason = reason
        self.code = code


def shortfall(err: BaseException) -> bool:
    """Whether a shard refused for want of money on that shard."""
    return isinstance(err, grpc.aio.AioRpcError) and _reason(err) == "INSUFFICIENT_FUNDS"


class ShardMoney:
    """The gateway's side of money over ``engines`` (by shard index, in shard order)."""

    def __init__(self, engines: dict[int, Engines]) -> None:
        self.engines = engines
        self.indices = list(engines)
        self._locks: dict[int, asyncio.Lock] = {}
        self.moves = 0  # moves begun by this gateway
        self.moved_micros = 0
        self.landed_late = 0  # moves the sweep landed (their mover did not)
        self._later: dict[tuple[int, int], asyncio.Task[int]] = {}

    def home(self, account_id: int) -> int:
        return self.indices[account_id % len(self.indices)]

    # ---- calls to one shard ----

    async def _op(self, index: int, method: str, request: Any, cls: Any,
                  timeout: float | None = STEP_SECONDS, *, command: bool = True) -> Any:
        body = await self.engines[index].unary(OPERATOR_SERVICE, method,
                                               request.SerializeToString(), GATEWAY,
                                               timeout, command=command, dead_fast=True)
        return cls.FromString(body)

    async def _balance(self, index: int, account_id: int, timeout: float | None) -> Any:
        body = await self.engines[index].unary(
            MARKET, "GetBalance", pb.GetBalanceRequest(account_id=account_id)
            .SerializeToString(), GATEWAY, timeout, command=False, dead_fast=True)
        return pb.Balance.FromString(body)

    async def _every(self, work: Any) -> list[Any]:
        """``work(index)`` on every shard at once, answers in shard order; a shard that
        gives none fails the whole (the first error, in shard order)."""
        got = await asyncio.gather(*(work(i) for i in self.indices), return_exceptions=True)
        for g in got:
            if isinstance(g, BaseException):
                raise g
        return list(got)

    # ---- views ----

    async def balance(self, account_id: int, timeout: float | None) -> Any:
        """The account's money on every shard, summed; credit and fees are its home
        shard's; what is moving between shards is ``in_transit``."""
        parts = await self._every(lambda i: self._balance(i, account_id, timeout))
        moves = await self._every(lambda i: self._op(i, "ListMoves", pb.ListMovesRequest(),
                                                     pb.ListMovesResponse, timeout,
                                                     command=False))
        home = parts[self.indices.index(self.home(account_id))]
        unlimited = any(p.credit_limit_micros == INT64_MAX for p in parts)
        current = sum(p.current_micros for p in parts)
        holds = sum(p.holds_micros for p in parts)
        available = INT64_MAX if unlimited else sum(p.available_micros for p in parts)
        return pb.Balance(account_id=home.account_id, current_micros=current,
                          holds_micros=holds, available_micros=min(available, INT64_MAX),
                          credit_limit_micros=home.credit_limit_micros,
                          maker_fee_bps=home.maker_fee_bps,
                          taker_fee_bps=home.taker_fee_bps,
                          in_transit_micros=in_transit(account_id, dict(
                              zip(self.indices, moves, strict=True))))

    async def transfers(self, request: Any, timeout: float | None, size: int) -> Any:
        """A page of the account's transfers on every shard, merged by time. The page
        token holds each shard's own (``index:token`` pairs); ids are the shard's ORed
        with ``index << 48`` so that they stay unique across the venue."""
        tokens = parse_token(request.page_token, self.indices)

        async def one(index: int) -> Any:
            r = pb.ListTransfersRequest()
            r.CopyFrom(request)
            r.page_size, r.page_token = size, tokens.get(index, "")
            body = await self.engines[index].unary(MARKET, "ListTransfers",
                                                   r.SerializeToString(), GATEWAY, timeout,
                                                   command=False, dead_fast=True)
            return pb.ListTransfersResponse.FromString(body)
        pages = dict(zip(self.indices, await self._every(one), strict=True))
        rows = sorted(((t.time_micros, i, t.transfer_id, t) for i, p in pages.items()
                       for t in p.transfers), key=lambda x: x[:3])
        taken, rest = rows[:size], rows[size:]
        for _, i, tid, _ in taken:
            tokens[i] = str(tid)
        more = bool(rest) or any(p.next_page_token for p in pages.values())
        out = pb.ListTransfersResponse(next_page_token=(
            ",".join(f"{i}:{t}" for i, t in sorted(tokens.items())) if more else ""))
        for _, i, tid, t in taken:
            t.transfer_id = (i << SHARD_BITS) | tid
            out.transfers.append(t)
        return out

    # ---- moving money ----

    def _lock(self, account_id: int) -> asyncio.Lock:
        lock = self._locks.get(account_id)
        if lock is None:
            lock = self._locks[account_id] = asyncio.Lock()
        return lock

    async def gather(self, account_id: int, to: int, *, everything: bool,
                     timeout: float | None = STEP_SECONDS) -> int:
        """Moves the account's free money on the other shards to shard ``to``: half of
        each one's (all of it with ``everything``). Returns the micro-dollars that
        landed; a shard that cannot be reached is passed over."""
        timeout = STEP_SECONDS if timeout is None else min(timeout, STEP_SECONDS)
        async with self._lock(account_id):
            others = [i for i in self.indices if i != to]
            got = await asyncio.gather(*(self._balance(i, account_id, timeout)
                                         for i in others), return_exceptions=True)
            landed = 0
            for index, b in zip(others, got, strict=True):
                if isinstance(b, BaseException):
                    log.warning("money of account %d on shard %d not known: %s",
                                account_id, index, b)
                    continue
                free = b.available_micros
                if free <= 0 or b.credit_limit_micros == INT64_MAX:
                    continue
                amount = free if everything else (free + 1) // 2
                try:
                    landed += await self.move(account_id, index, to, amount, timeout)
                except (grpc.aio.AioRpcError, ShardError) as err:
                    log.warning("moving $%s of account %d from shard %d to %d failed: %s",
                                amount / 1e6, account_id, index, to,
                                _said(err))
            return landed

    def gather_later(self, account_id: int, to: int) -> None:
        """``gather`` (half) in the background, once at a time per account and shard: a
        streamed buy was refused there for want of money."""
        key = (account_id, to)
        if key in self._later:
            return
        task = asyncio.create_task(self.gather(account_id, to, everything=False))
        self._later[key] = task
        task.add_done_callback(lambda t: self._done_later(key, t))

    def _done_later(self, key: tuple[int, int], task: asyncio.Task[int]) -> None:
        self._later.pop(key, None)
        if not task.cancelled() and (err := task.exception()) is not None:
            log.warning("moving money of account %d to shard %d failed: %s", key[0], key[1],
                        _said(err))

    async def move(self, account_id: int, source: int, to: int, amount: int,
                   timeout: float | None = STEP_SECONDS) -> int:
        """One move, each step within ``timeout``; the micro-dollars that landed on
        ``to`` (an exception leaves the money in transit, for the sweep to land)."""
        timeout = STEP_SECONDS if timeout is None else min(timeout, STEP_SECONDS)
        out = await self._op(source, "MoveMoney", pb.MoveMoneyRequest(
            step=pb.MOVE_STEP_OUT, account_id=account_id, amount_micros=amount, other_shard=to),
            pb.MoveMoneyResponse, timeout)
        self.moves += 1
        self.moved_micros += amount
        n = out.move.number
        log.info("moving $%s of account %d from shard %d to shard %d (move %d)",
                 amount / 1e6, account_id, source, to, n,
                 extra={"account": account_id, "action": "move"})
        try:
            await self._op(to, "MoveMoney", pb.MoveMoneyRequest(
                step=pb.MOVE_STEP_IN, account_id=account_id, amount_micros=amount,
                other_shard=source, number=n), pb.MoveMoneyResponse, timeout)
        except grpc.aio.AioRpcError as err:
            if _reason(err) != "MOVE_OUT_OF_ORDER":
                raise
            await self.settle(source)  # an earlier move was left in transit: land it first
            return amount
        try:  # landed: the source forgetting it can wait for the sweep
            await self._op(source, "MoveMoney", pb.MoveMoneyRequest(
                step=pb.MOVE_STEP_LANDED, other_shard=to, number=n), pb.MoveMoneyResponse,
                timeout)
        except (grpc.aio.AioRpcError, ShardError) as err:
            log.info("shard %d not told that move %d landed: %s", source, n, _said(err))
        return amount

    async def settle(self, source: int) -> int:
        """Lands every move shard ``source`` sent that is still in transit, in order;
        returns how many it landed. A destination that cannot be reached is left for the
        next sweep."""
        listed = await self._op(source, "ListMoves", pb.ListMovesRequest(),
                                pb.ListMovesResponse, command=False)
        by_dest: dict[int, list[Any]] = {}
        for m in sorted(listed.pending, key=lambda m: (m.to_shard, m.number)):
            by_dest.setdefault(m.to_shard, []).append(m)
        count = 0
        for to, moves in by_dest.items():
            if to not in self.engines:
                log.error("shard %d has money in transit to shard %d, which this gateway "
                          "does not know", source, to)
                continue
            last = 0
            try:
                for m in moves:
                    got = await self._op(to, "MoveMoney", pb.MoveMoneyRequest(
                        step=pb.MOVE_STEP_IN, account_id=m.account_id,
                        amount_micros=m.amount_micros, other_shard=source,
                        number=m.number), pb.MoveMoneyResponse)
                    last = m.number
                    count += not got.already
            except (grpc.aio.AioRpcError, ShardError) as err:
                log.warning("money in transit from shard %d to %d stays so for now: %s",
                            source, to, _said(err))
            if last:
                await self._op(source, "MoveMoney", pb.MoveMoneyRequest(
                    step=pb.MOVE_STEP_LANDED, other_shard=to, number=last), pb.MoveMoneyResponse)
        self.landed_late += count
        return count

    async def sweep(self) -> None:
        """Lands what any gateway left in transit: at start, then every few seconds."""
        while True:
            for index in self.indices:
                try:
                    await self.settle(index)
                except (grpc.aio.AioRpcError, ShardError) as err:
                    log.debug("sweep of shard %d: %s", index, err)
            await asyncio.sleep(SWEEP_SECONDS)


def _said(err: BaseException) -> str:
    return str(err.details() if isinstance(err, grpc.aio.AioRpcError) else err)


def in_transit(account_id: int, moves: dict[int, Any]) -> int:
    """What of the account's money has left one shard and not reached another, from
    every shard's ``ListMovesResponse``: a pending move is in transit unless its
    destination says it landed."""
    landed = {(to, m.shard): m.number for to, r in moves.items() for m in r.landed}
    return sum(m.amount_micros for source, r in moves.items() for m in r.pending
               if m.account_id == account_id
               and m.number > landed.get((m.to_shard, source), 0))


def parse_token(token: str, indices: Iterable[int]) -> dict[int, str]:
    """``index:token`` pairs, comma separated (empty: from the start)."""
    out: dict[int, str] = {}
    known = set(indices)
    for part in filter(None, token.split(",")):
        index, sep, tok = part.partition(":")
        if not sep or not index.isdigit() or int(index) not in known or not tok.isdigit():
            raise MoneyFailed("INVALID_ARGUMENT", f"page_token {token!r} is not one this "
                              "gateway gave", grpc.StatusCode.INVALID_ARGUMENT)
        out[int(index)] = tok
    return out
