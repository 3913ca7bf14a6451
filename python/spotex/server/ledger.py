"""The venue's money settings at the edge: the credit limit of accounts without their own
(a policy, like the open-order limit) and the venue's maker and taker fees (state: set by
a journaled command when the configuration differs from what the exchange holds). The
ledger itself (balances, holds, transfers) lives in the Rust exchange."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

from spotex._proto.spotex.v1 import spotex_pb2 as pb

if TYPE_CHECKING:
    from spotex.server.host import EngineHost

log = logging.getLogger(__name__)

# the venue's own account: every fee is paid to it
FEE_ACCOUNT = 0


@dataclass(frozen=True)
class MoneySettings:
    # micro-dollars an account may spend beyond its balance unless it has its own limit;
    # None: money is not checked (holds and transfers are still kept)
    default_credit: int | None = 0
    maker_fee_bps: int = 0
    taker_fee_bps: int = 0


# what a program (a test, a tool) that does not deal in money starts a server with
UNCHECKED = MoneySettings(default_credit=None)


def venue_fees(host: EngineHost) -> tuple[int, int]:
    b = pb.Balance.FromString(host.ex.balance(FEE_ACCOUNT))
    return b.maker_fee_bps, b.taker_fee_bps


def apply_fees(host: EngineHost, money: MoneySettings) -> None:
    """On the writer, once the host serves: the configured venue fees, journaled when
    they differ from the exchange's (a restart with the same settings writes nothing)."""
    want = (money.maker_fee_bps, money.taker_fee_bps)
    have = venue_fees(host)
    if have == want:
        return
    request = pb.SetFeesRequest(account_id=FEE_ACCOUNT, maker_fee_bps=want[0],
                                taker_fee_bps=want[1]).SerializeToString()
    host.run(lambda ts: host.ex.money(ts, "fees", request))
    log.warning("venue fees now maker %d bps, taker %d bps (were %d and %d)", *want, *have)
