"""Money for the tools' own traders: a simulation's or a demo's buyers get a deposit
before they bid, as a real buyer's wire would arrive first."""

from __future__ import annotations

from spotex.client import Client

# enough that no simulation's bids are held back by money (their budgets bind instead)
BUDGET = "10000000"


def fund(op: Client, account_id: int, dollars: str = BUDGET, reference: str = "tools") -> None:
    """Deposits ``dollars`` to the account (behind a shard gateway: on its home shard;
    the gateway moves it where the account's buys need it)."""
    op.deposit(account_id, dollars, reference)
