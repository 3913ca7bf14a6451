"""Money: the exchange's ledger against a plain recomputation from its own order records,
after every random command (hypothesis), and through a real server: deposits, holds,
fills, fees, resale, amend, cancel, expiry, the kill switch, refusals that change
nothing, and the same state from the journal and from a snapshot."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from conftest import OPERATOR_TOKEN, serving
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spotex._core import Exchange, SpotexError
from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex.client import Client, RpcError
from spotex.server.ledger import MoneySettings

HOUR = 3_600_000_000
H0 = 490_048
T0 = (H0 - 10) * HOUR
PIDS = [f"H100-SXM/us-east/2025-11-26T{16 + k}" for k in range(3)]  # hours H0..H0+2
SELLER, BUYERS = 10, (20, 21, 22)
MAKER, TAKER, RESALE = 10, 25, 150  # basis points
D = 1_000_000


def _fee(value: int, bps: int) -> int:
    return value * bps // 10_000


class Venue:
    """The binding's exchange with money checked, and what was deposited and withdrawn."""

    def __init__(self) -> None:
        self.ex = Exchange(1_000)
        self.ex.set_default_credit_limit(0)
        self.ex.set_resale_fee_bps(RESALE)
        self.t = T0
        self.deposited: dict[int, int] = {}
        for k, pid in enumerate(PIDS):
            self.ex.create_product(T0, pid, 10_000, 1, (H0 + k) * HOUR - HOUR, None, False)
        cap = pb.RegisterCapacityRequest(
            cluster_id="c0", sku="H100-SXM", region="us-east", from_hour=H0, to_hour=H0 + 3,
            nodes=[pb.Node(node_id=f"n{i}", gpus=8) for i in range(2)])
        self.ex.register_capacity(T0, SELLER, cap.SerializeToString())
        self.money("fees", pb.SetFeesRequest(account_id=0, maker_fee_bps=MAKER,
                                             taker_fee_bps=TAKER))

    def money(self, what: str, r: Any) -> pb.BalanceResponse:
        return pb.BalanceResponse.FromString(self.ex.money(self.t, what, r.SerializeToString()))

    def balance(self, account: int) -> pb.Balance:
        return pb.Balance.FromString(self.ex.balance(account))

    def orders(self, account: int) -> list[pb.Order]:
        out: list[pb.Order] = []
        token = ""
        while True:
            request = pb.ListOrdersRequest(page_size=1000, page_token=token)
            page = pb.ListOrdersResponse.FromString(
                self.ex.list_orders(account, request.SerializeToString()))
            out += page.orders
            token = page.next_page_token
            if not token:
                return out

    def expected(self) -> tuple[dict[int, int], dict[int, int]]:
        """(current, holds) per account, recomputed from the order records alone: each
        fill's value from buyer to seller, each side's fee by its role, each live buy
        order holding limit x remaining x hours plus the dearer fee."""
        current = {a: self.deposited.get(a, 0) for a in (0, SELLER, *BUYERS)}
        holds = {a: 0 for a in current}
        for account in (SELLER, *BUYERS):
            for o in self.orders(account):
                buy = o.side == pb.SIDE_BUY
                for f in o.fills:
                    value = f.price_micros * f.quantity
                    if buy:
                        fee = _fee(value, MAKER if f.maker else TAKER)
                        current[account] -= value + fee
                    else:
                        fee = _fee(value, RESALE if o.resell_trade_id else
                                   (MAKER if f.maker else TAKER))
                        current[account] += value - fee
                    current[0] += fee
                live = o.state in (pb.ORDER_STATE_OPEN, pb.ORDER_STATE_PARTIALLY_FILLED)
                if buy and live:
                    value = o.price_micros * o.remaining_quantity * max(1, o.hours)
                    holds[account] += value + _fee(value, max(MAKER, TAKER))
        return current, holds

    def check(self) -> None:
        assert self.ex.check_ledger() is None, self.ex.check_ledger()
        current, holds = self.expected()
        for a in current:
            b = self.balance(a)
            assert (b.current_micros, b.holds_micros) == (current[a], holds[a]), a
            if a:
                assert b.available_micros >= 0, (a, b)

    def replays(self) -> None:
        """The journal from the start, and a snapshot, give back the same exchange."""
        again = Exchange(1_000)
        again.set_resale_fee_bps(RESALE)
        for seq, ts, command in self.journal:
            again.replay(seq, ts, command)
        assert again.state_hash() == self.ex.state_hash()
        back = Exchange.restore(self.ex.snapshot(), 1_000)
        back.set_default_credit_limit(0)
        assert back.state_hash() == self.ex.state_hash()
        for a in (0, SELLER, *BUYERS):
            assert back.balance(a) == self.ex.balance(a)


Step = tuple[str, int, int, int, int]
steps = st.lists(st.tuples(
    st.sampled_from(["deposit", "bid", "block", "ask", "cancel", "amend", "withdraw",
                     "resell", "time"]),
    st.integers(0, 2), st.integers(0, 1), st.integers(10, 30), st.integers(1, 16)),
    min_size=1, max_size=40)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps)
def test_the_ledger_is_what_the_orders_say_after_every_command(script: list[Step]) -> None:
    v = Venue()
    for b in BUYERS:  # enough for most bids, not for the largest blocks
        v.money("deposit", pb.DepositRequest(account_id=b, amount_micros=50 * D))
        v.deposited[b] = 50 * D
    v.journal = []  # type: ignore[attr-defined]
    v.journal.extend(v.ex.take_journal())  # type: ignore[attr-defined]
    ids: list[tuple[int, int]] = []
    for kind, who, hour, price, qty in script:
        buyer = BUYERS[who]
        price_micros = price * 100_000
        v.t += HOUR // 20
        try:
            if kind == "deposit":
                v.money("deposit", pb.DepositRequest(account_id=buyer, amount_micros=qty * 5 * D))
                v.deposited[buyer] = v.deposited.get(buyer, 0) + qty * 5 * D
            elif kind == "withdraw":
                v.money("withdraw", pb.WithdrawRequest(account_id=buyer, amount_micros=qty * D))
                v.deposited[buyer] = v.deposited.get(buyer, 0) - qty * D
            elif kind in ("bid", "block"):
                r = pb.PlaceOrderRequest(product_id=PIDS[hour], side=pb.SIDE_BUY,
                                         price_micros=price_micros, quantity=qty)
                if kind == "block":
                    r.hours = 3 - hour if hour < 2 else 1
                o = pb.Order.FromString(v.ex.place_order(v.t, buyer, r.SerializeToString(),
                                                         buyer=True, seller=True))
                ids.append((buyer, o.order_id))
            elif kind == "ask":
                r = pb.PlaceOrderRequest(product_id=PIDS[hour], side=pb.SIDE_SELL, cluster_id="c0",
                                         price_micros=price_micros, quantity=qty)
                v.ex.place_order(v.t, SELLER, r.SerializeToString(), buyer=False,
                                   seller=True)
            elif kind == "resell":
                # a buyer resells GPUs it bought: a resale ask from that allocation
                held = [(b, f.trade_id) for b in BUYERS for o in v.orders(b)
                        if o.side == pb.SIDE_BUY for f in o.fills]
                if held:
                    holder, trade = held[price % len(held)]
                    r = pb.PlaceOrderRequest(side=pb.SIDE_SELL, resell_trade_id=trade,
                                             price_micros=price_micros)
                    o = pb.Order.FromString(v.ex.place_order(v.t, holder, r.SerializeToString(),
                                                         buyer=True, seller=True))
                    ids.append((holder, o.order_id))
            elif kind == "cancel" and ids:
                holder, oid = ids[price % len(ids)]
                v.ex.cancel_order(v.t, holder, pb.CancelOrderRequest(
                    order_id=oid).SerializeToString())
            elif kind == "amend" and ids:
                holder, oid = ids[price % len(ids)]
                v.ex.amend_order(v.t, holder, pb.AmendOrderRequest(
                    order_id=oid, price_micros=price_micros, quantity=qty).SerializeToString())
            elif kind == "time":
                # gate closures expire what rests in the hours that closed
                v.t += qty * HOUR // 4
                v.ex.advance_time(v.t)
        except SpotexError as err:
            if err.reason == "INSUFFICIENT_FUNDS":  # type: ignore[attr-defined]
                pass  # refused: nothing changed, which check() shows
        v.journal.extend(v.ex.take_journal())  # type: ignore[attr-defined]
        v.check()
    v.replays()


def test_a_refusal_for_money_changes_nothing() -> None:
    v = Venue()
    v.money("deposit", pb.DepositRequest(account_id=BUYERS[0], amount_micros=10 * D))
    before = (v.ex.sequence, v.ex.state_hash())
    bad: list[tuple[str, Any]] = [
        ("withdraw", pb.WithdrawRequest(account_id=BUYERS[0], amount_micros=10 * D + 1)),
        ("deposit", pb.DepositRequest(account_id=BUYERS[0], amount_micros=0)),
        ("deposit", pb.DepositRequest(account_id=BUYERS[0], amount_micros=-1)),
        ("fees", pb.SetFeesRequest(account_id=0, maker_fee_bps=10_001)),
        ("credit_limit", pb.SetCreditLimitRequest(account_id=BUYERS[0],
                                                  credit_limit_micros=-1)),
    ]
    reasons = []
    for what, r in bad:
        with pytest.raises(SpotexError) as err:
            v.money(what, r)
        reasons.append(err.value.reason)  # type: ignore[attr-defined]
    assert reasons == ["INSUFFICIENT_FUNDS", "INVALID_AMOUNT", "INVALID_AMOUNT", "INVALID_FEE",
                       "INVALID_AMOUNT"]
    with pytest.raises(SpotexError) as err:
        v.ex.place_order(v.t, BUYERS[0], pb.PlaceOrderRequest(
            product_id=PIDS[0], side=pb.SIDE_BUY, price_micros=2 * D,
            quantity=5).SerializeToString(), buyer=True, seller=False)
    assert err.value.reason == "INSUFFICIENT_FUNDS"  # type: ignore[attr-defined]
    assert (v.ex.sequence, v.ex.state_hash()) == before


def _hour(k: int) -> int:
    return int(dt.datetime.now(dt.UTC).timestamp()) // 3600 + 3 + k


def test_money_moves_through_a_server_and_survives_a_restart(tmp_path: Path) -> None:
    money = MoneySettings(default_credit=0, maker_fee_bps=MAKER, taker_fee_bps=TAKER)
    h = _hour(0)
    with serving(tmp_path, money=money, resale_fee_bps=RESALE) as r:
        op = Client(r.target, OPERATOR_TOKEN)
        pid = op.create_products(skus=["H100"], regions=["us-east"], from_hour=h,
                                 to_hour=h + 1)[0].product_id
        sa, ba = op.create_account("s", ["seller"]), op.create_account("b", ["buyer"])
        seller, buyer = Client(r.target, sa.token), Client(r.target, ba.token)
        seller.register_capacity("c1", sku="H100", region="us-east", nodes=[("n0", 8)],
                                 from_hour=h, to_hour=h + 1)
        seller.place_order(pid, "sell", "2.00", 8, cluster_id="c1")
        with pytest.raises(RpcError) as err:
            buyer.place_order(pid, "buy", "2.10", 8)
        assert err.value.reason == "INSUFFICIENT_FUNDS"
        assert "$0.00 available" in str(err.value)
        b, t = op.deposit(ba.account_id, "100", "wire-7")
        assert (b.current, t is not None and t.reference) == (Decimal(100), "wire-7")
        # a resting bid below the ask holds 4 x $1.50 plus 25 bps
        resting = buyer.place_order(pid, "buy", "1.50", 4)
        assert buyer.balance().holds == Decimal("6.015")
        # the kill switch cancels it, and its hold goes back
        op.disable_account(ba.account_id)
        op.enable_account(ba.account_id)
        assert buyer.get_order(resting.order_id).state == "cancelled"
        assert buyer.balance().holds == 0
        buyer.place_order(pid, "buy", "2.10", 8)
        # $16 and the taker's 25 bps; the seller $16 less its maker 10 bps; the venue both
        assert buyer.balance().current == Decimal("100") - Decimal("16.04")
        assert seller.balance().current == Decimal("15.984")
        assert op.balance().current == Decimal("0.056")
        # a buyer sees only its own money; an operator any
        with pytest.raises(RpcError) as err:
            buyer.balance(sa.account_id)
        assert err.value.reason == "NOT_OWNER"
        assert op.balance(sa.account_id).current == Decimal("15.984")
        with pytest.raises(RpcError) as err:
            op.deposit(999, "5")
        assert err.value.reason == "UNKNOWN_ACCOUNT"
        kinds = [x.kind for x in buyer.transfers()]
        assert kinds == ["deposit", "trade", "fee"]
        seq, state = op.state_hash()
    with serving(tmp_path, money=money, resale_fee_bps=RESALE) as r:
        op = Client(r.target, OPERATOR_TOKEN)
        # the same state (money in the hash), and the same fees: nothing journaled again
        assert op.state_hash() == (seq, state)
        assert op.balance(ba.account_id).current == Decimal("83.96")
        assert [x.kind for x in op.transfers(ba.account_id)] == kinds


def test_transfers_that_left_memory_are_listed_from_the_history_on_disk(tmp_path: Path) -> None:
    h = _hour(0)
    with serving(tmp_path, money=MoneySettings(default_credit=0)) as r:
        host = r.server.host
        host.call(lambda: host.ex.set_keep_transfers(3))  # the latest three stay in memory
        op = Client(r.target, OPERATOR_TOKEN)
        pid = op.create_products(skus=["H100"], regions=["us-east"], from_hour=h,
                                 to_hour=h + 1)[0].product_id
        b = op.create_account("b", ["buyer"])
        buyer = Client(r.target, b.token)
        for k in range(7):
            op.deposit(b.account_id, str(10 + k), f"wire-{k}")
        # a resting bid holds money but moves none: not a transfer
        buyer.cancel_order(buyer.place_order(pid, "buy", "1.00", 2).order_id)
        every = buyer.transfers()
        assert [t.transfer_id for t in every] == list(range(1, 8))
        assert [(t.kind, t.reference) for t in every] == [("deposit", f"wire-{k}")
                                                          for k in range(7)]
        # page by page, across disk and memory, and bounded by time
        page = pb.ListTransfersResponse.FromString(host.call(lambda: host.list_transfers(
            b.account_id, pb.ListTransfersRequest(page_size=4).SerializeToString())))
        assert [t.transfer_id for t in page.transfers] == [1, 2, 3, 4]
        assert page.next_page_token == "4"
        since = every[4].time
        assert buyer.balance().current == sum(range(10, 17))
        assert [t.transfer_id for t in buyer.transfers(since=since)] == [
            t.transfer_id for t in every if t.time >= since]


def test_replay_audits_the_money_at_any_point(tmp_path: Path) -> None:
    """``spotex replay`` rebuilds the ledger with the books: it checks the invariants and
    lists every account's money at the end or at a sequence, as the server had it."""
    from click.testing import CliRunner

    from spotex.cli import main
    money = MoneySettings(default_credit=0, maker_fee_bps=MAKER, taker_fee_bps=TAKER)
    h = _hour(0)
    with serving(tmp_path, money=money) as r:
        op = Client(r.target, OPERATOR_TOKEN)
        pid = op.create_products(skus=["H100"], regions=["us-east"], from_hour=h,
                                 to_hour=h + 1)[0].product_id
        sa, ba = op.create_account("s", ["seller"]), op.create_account("b", ["buyer"])
        seller, buyer = Client(r.target, sa.token), Client(r.target, ba.token)
        seller.register_capacity("c1", sku="H100", region="us-east", nodes=[("n0", 8)],
                                 from_hour=h, to_hour=h + 1)
        op.deposit(ba.account_id, "100")
        after_deposit = op.state_hash()[0]
        seller.place_order(pid, "sell", "2.00", 8, cluster_id="c1")
        buyer.place_order(pid, "buy", "2.10", 4)
        buyer.place_order(pid, "buy", "1.50", 2)  # rests: holds $3 and 25 bps
        held = {a: (op.balance(a).current, op.balance(a).holds)
                for a in (0, sa.account_id, ba.account_id)}

    def replay(*more: str) -> Any:
        out = CliRunner().invoke(main, ["replay", str(tmp_path), *more])
        assert out.exit_code == 0, out.output
        return out.output

    said = " ".join(replay().split())
    assert "money: 2 accounts hold $100.00 (venue fees $0.03)" in said
    assert "the ledger's invariants hold" in said
    rows = [line.split(",") for line in replay("--balances", "--csv").splitlines()[1:]]
    assert {int(a): (Decimal(c), Decimal(h)) for _, a, c, h in rows} == held
    early = [line.split(",") for line in replay("--balances", "--csv", "--seq",
                                                str(after_deposit)).splitlines()[1:]]
    assert [(a, Decimal(c), Decimal(h)) for _, a, c, h in early] == [
        (str(ba.account_id), 100, 0)]
    assert "balances at sequence" in replay("--balances")
    out = CliRunner().invoke(main, ["replay", str(tmp_path), "--csv"])
    assert out.exit_code != 0 and "--balances" in out.output
