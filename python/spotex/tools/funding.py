"""Money for the tools' own traders: a simulation's or a demo's buyers get a deposit
before they bid, as a real buyer's wire would arrive first."""

from __future__ import annotations

from spotex.client import Client, RpcError

# enough that no simulation's bids are held back by money (their budgets bind instead)
BUDGET = "10000000"


def fund(op: Client, account_id: int, dollars: str = BUDGET, reference: str = "tools") -> None:
    """Deposits ``dollars`` to the account; a venue that keeps no money (a shard gateway)
    is left as it is."""
    try:
        op.deposit(account_id, dollars, reference)
    except RpcError as err:
        if err.reason != "MONEY_NOT_SHARDED":
            raise
