"""Money in a sharded venue: an account's money spread over two shards behind a gateway,
moved where its buys need it, never spent twice (docs/scaling.md, "Money across
shards")."""

from __future__ import annotations

import contextlib
import json
import random
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import grpc
import pytest
from conftest import OPERATOR_TOKEN, on_thread, serving
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_money import BUYERS, PIDS
from test_money import Venue as OneShard
from test_shards import GATEWAY_TOKEN, HOUR, LIMITS, ROUTES, Venue, market, pid

from spotex._core import Exchange, SpotexError
from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex._proto.spotex.v1 import spotex_pb2_grpc as rpc
from spotex.client import Client, RpcError
from spotex.cluster.gateway import ShardGateway
from spotex.cluster.money import in_transit, parse_token
from spotex.cluster.routes import Routes, ShardSpec
from spotex.server.ledger import MoneySettings

D = 1_000_000
MONEY = MoneySettings(default_credit=0, maker_fee_bps=10, taker_fee_bps=20)


@contextlib.contextmanager
def money_venue(base: Path) -> Iterator[tuple[Venue, dict]]:
    """Two engines checking money behind a gateway; the engines' servers by shard."""
    with contextlib.ExitStack() as stack:
        engines, servers = {}, {}
        for index in (1, 2):
            r = stack.enter_context(serving(base / f"shard{index}", shard_index=index,
                                            gateway_token=GATEWAY_TOKEN, limits=LIMITS,
                                            tick_seconds=0.2, money=MONEY))
            engines[index], servers[index] = r.target, r.server
        table = Routes([ShardSpec(i, (a,)) for i, a in engines.items()], ROUTES)
        gw, _ = stack.enter_context(on_thread(
            lambda: ShardGateway.start("127.0.0.1:0", table, GATEWAY_TOKEN, base / "gateway",
                                       OPERATOR_TOKEN, limits=LIMITS, access_log=False),
            lambda g: g.stop(0.5)))
        yield Venue(f"127.0.0.1:{gw.port}", engines), servers


def engine_call(target: str, method: str, request: object) -> object:
    """A call to one engine as the gateway makes it (its token, acting as an operator)."""
    md = (("authorization", f"Bearer {GATEWAY_TOKEN}"), ("spotex-account", "0"),
          ("spotex-roles", "operator"))
    with grpc.insecure_channel(target) as ch:
        stub = rpc.OperatorStub(ch) if method in ("MoveMoney", "ListMoves") else rpc.MarketStub(ch)
        return getattr(stub, method)(request, metadata=md, timeout=10)


def shard_balance(target: str, account: int) -> pb.Balance:
    b = engine_call(target, "GetBalance", pb.GetBalanceRequest(account_id=account))
    assert isinstance(b, pb.Balance)
    return b


def check_ledgers(servers: dict) -> None:
    for index, s in servers.items():
        said = s.host.ex.check_ledger()
        assert said is None, f"shard {index}: {said}"


def test_an_account_s_money_follows_its_buys_to_either_shard_and_is_never_spent_twice(
        tmp_path: Path) -> None:
    with money_venue(tmp_path) as (v, servers):
        op, seller, buyer = market(v)
        me = buyer.balance().account_id
        op.deposit(me, "100", "wire-1")
        home = (1, 2)[me % 2]
        assert shard_balance(v.engines[home], me).current_micros == 100 * D
        # a bid on each shard: each holds $2 x 10 GPUs + 20 bps there
        for sku in ("H100", "B200"):
            buyer.place_order(pid(sku), "buy", "2", 10)
        shards = {i: shard_balance(t, me) for i, t in v.engines.items()}
        assert all(b.holds_micros == 20_040_000 for b in shards.values())
        assert sum(b.current_micros for b in shards.values()) == 100 * D
        b = buyer.balance()
        assert (b.current, b.holds, b.available, b.in_transit) == (
            Decimal(100), Decimal("40.08"), Decimal("59.92"), 0)
        # no more than the venue has: refused, and nothing changed on either shard
        with pytest.raises(RpcError) as e:
            buyer.place_order(pid("H100", 1), "buy", "3", 20)  # $60.12 held
        assert e.value.reason == "INSUFFICIENT_FUNDS"
        assert buyer.balance() == b
        # what fits on the venue fits on one shard, whatever sits on the other
        buyer.place_order(pid("H100", 1), "buy", "2.9", 20)  # $58.116 held
        assert buyer.balance().available == Decimal("1.804")
        check_ledgers(servers)
        # the gateway's own money calls: fees on both shards, credit on the home shard
        op.set_fees(0, 5, 15)
        assert {shard_balance(t, 0).taker_fee_bps for t in v.engines.values()} == {15}
        op.set_credit_limit(me, "10")
        assert buyer.balance().available == Decimal("11.804")
        assert shard_balance(v.engines[home], me).credit_limit_micros == 10 * D
        assert shard_balance(v.engines[3 - home], me).credit_limit_micros == 0
        # credit granted on the home shard buys on the other
        other_sku = "H100" if ROUTES["H100/us-east"] != home else "B200"
        buyer.place_order(pid(other_sku, 2), "buy", "1", 10)  # $10.015 held (15 bps now)
        assert buyer.balance().available == Decimal("1.789")
        check_ledgers(servers)
        # cancelled, and every dollar withdrawn, wherever it was
        buyer.cancel_all()
        op.set_credit_limit(me, "0")
        _, t = op.withdraw(me, "100", "wire-out")
        assert t is not None and t.kind == "withdrawal"
        after = buyer.balance()
        assert (after.current, after.holds, after.in_transit) == (0, 0, 0)
        with pytest.raises(RpcError) as e:
            op.withdraw(me, "0.01")
        assert e.value.reason == "INSUFFICIENT_FUNDS"
        check_ledgers(servers)
        # the statement's transfers: every shard's, by time, ids unique, moves in pairs
        ts = buyer.transfers()
        assert len({t.transfer_id for t in ts}) == len(ts)
        assert [t.time for t in ts] == sorted(t.time for t in ts)
        outs = sum(t.amount for t in ts if t.kind == "move_out")
        assert outs > 0 and outs == sum(t.amount for t in ts if t.kind == "move_in")
        assert [t.kind for t in ts][0] == "deposit" and ts[-1].kind == "withdrawal"
        paged, token = [], ""
        with grpc.insecure_channel(v.target) as ch:
            stub = rpc.MarketStub(ch)
            md = (("authorization", f"Bearer {buyer_token(op, me)}"),)
            while True:
                page = stub.ListTransfers(pb.ListTransfersRequest(page_size=1,
                                                                  page_token=token),
                                          metadata=md)
                paged.extend(x.transfer_id for x in page.transfers)
                token = page.next_page_token
                if not token:
                    break
        assert paged == [t.transfer_id for t in ts]
        # the statement leaves the moves out and opens and closes where the money was
        from click.testing import CliRunner

        from spotex.cli import main
        out = CliRunner().invoke(main, ["--server", v.target, "--token", buyer_token(op, me),
                                        "--json", "statement", "--from", "2000-01-01"])
        assert out.exit_code == 0, out.output
        said = json.loads(out.output)
        assert Decimal(str(said["opening"])) == 0 and Decimal(str(said["closing"])) == 0
        assert {t["kind"] for t in said["transfers"]} <= {"deposit", "withdrawal"}


def buyer_token(op: Client, account: int) -> str:
    from test_shards import TOKENS
    return TOKENS["buyer"]


def test_money_left_in_transit_by_a_gateway_that_died_lands_by_the_sweep(
        tmp_path: Path) -> None:
    with money_venue(tmp_path) as (v, servers):
        op, _, buyer = market(v)
        me = buyer.balance().account_id
        op.deposit(me, "50")
        home = (1, 2)[me % 2]
        # a gateway's first step, and nothing after it
        out = engine_call(v.engines[home], "MoveMoney", pb.MoveMoneyRequest(
            step=pb.MOVE_STEP_OUT, account_id=me, amount_micros=20 * D,
            other_shard=3 - home))
        assert out.move.number >= 1
        seen = buyer.balance()
        # in transit, or landed already: never on both shards, never lost
        assert seen.current + seen.in_transit == 50
        deadline = time.monotonic() + 60
        while engine_call(v.engines[home], "ListMoves", pb.ListMovesRequest()).pending:
            assert time.monotonic() < deadline, "the sweep never landed the move"
            time.sleep(0.2)
        assert shard_balance(v.engines[3 - home], me).current_micros == 20 * D
        b = buyer.balance()
        assert (b.current, b.in_transit) == (50, 0)
        # a move's IN sent again changes nothing
        again = engine_call(v.engines[3 - home], "MoveMoney", pb.MoveMoneyRequest(
            step=pb.MOVE_STEP_IN, account_id=me, amount_micros=20 * D, other_shard=home,
            number=out.move.number))
        assert again.already
        assert buyer.balance() == b
        check_ledgers(servers)


def test_moving_money_is_the_gateway_s_alone(tmp_path: Path) -> None:
    with money_venue(tmp_path) as (v, _):
        op, _, buyer = market(v)
        for target in (v.target, v.engines[1]):
            c = grpc.insecure_channel(target)
            stub = rpc.OperatorStub(c)
            with pytest.raises(grpc.RpcError) as e:
                stub.ListMoves(pb.ListMovesRequest(),
                               metadata=(("authorization", f"Bearer {OPERATOR_TOKEN}"),))
            assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED
            c.close()
        with pytest.raises(RpcError) as err:
            op.deposit(0, "5")
        assert err.value.reason == "UNKNOWN_ACCOUNT"
        with pytest.raises(RpcError) as err:
            op.deposit(buyer.balance().account_id, "-5")
        assert err.value.reason == "INVALID_AMOUNT"


def test_many_buyers_racing_on_both_shards_never_hold_more_than_they_have(
        tmp_path: Path) -> None:
    """Threads place and cancel bids on both shards at once, each account with a little
    money: the gateway moves it back and forth; at the end every shard's ledger holds,
    the venue's money is what was deposited, and no account holds more than it has."""
    rng = random.Random(7)
    with money_venue(tmp_path) as (v, servers):
        op = Client(v.target, OPERATOR_TOKEN)
        op.create_products(skus=["H100", "B200"], regions=["us-east"], from_hour=HOUR,
                           to_hour=HOUR + 3)
        s = op.create_account("s", ["seller"])
        seller = Client(v.target, s.token)
        for sku in ("H100", "B200"):
            seller.register_capacity(f"{sku}-c", sku=sku, region="us-east",
                                     nodes=[("n0", 8), ("n1", 8)], from_hour=HOUR,
                                     to_hour=HOUR + 3)
            for h in range(3):
                seller.place_order(pid(sku, h), "sell", "2.5", 6, cluster_id=f"{sku}-c")
        buyers = []
        for k in range(4):
            a = op.create_account(f"b{k}", ["buyer"])
            op.deposit(a.account_id, "30")
            buyers.append(Client(v.target, a.token))
        errors: list[BaseException] = []
        refused = [0]

        def trade(c: Client, seed: int) -> None:
            r = random.Random(seed)
            mine: list[int] = []
            try:
                for _ in range(40):
                    if mine and r.random() < 0.4:
                        with contextlib.suppress(RpcError):  # filled meanwhile
                            c.cancel_order(mine.pop(r.randrange(len(mine))))
                        continue
                    sku, h = r.choice(("H100", "B200")), r.randrange(3)
                    try:
                        o = c.place_order(pid(sku, h), "buy", str(r.randint(1, 3)),
                                          r.randint(1, 6))
                        if o.state in ("open", "partially_filled"):
                            mine.append(o.order_id)
                    except RpcError as e:
                        if e.reason != "INSUFFICIENT_FUNDS":
                            raise
                        refused[0] += 1
            except BaseException as e:  # noqa: BLE001 - reported below
                errors.append(e)
        threads = [threading.Thread(target=trade, args=(c, rng.random())) for c in buyers]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert not errors, errors
        check_ledgers(servers)
        total = Decimal(0)
        for c in buyers:
            me = c.balance().account_id
            parts = [shard_balance(t, me) for t in v.engines.values()]
            assert all(p.available_micros >= 0 for p in parts)
            b = c.balance()
            assert b.holds <= b.current + b.in_transit <= 30
            total += b.current + b.in_transit
        earned = seller.balance().current
        assert earned > 0, "nothing filled"
        assert total + earned + op.balance().current == 120
        moves = [engine_call(t, "ListMoves", pb.ListMovesRequest())
                 for t in v.engines.values()]
        assert sum(len(m.landed) for m in moves) > 0, "no money ever moved"
        assert refused[0] > 0, "the buyers never ran short: the test proves nothing"


def test_in_transit_and_page_tokens_are_read_as_documented() -> None:
    one = pb.ListMovesResponse(pending=[pb.Move(to_shard=2, number=1, account_id=5,
                                                amount_micros=7),
                                        pb.Move(to_shard=2, number=2, account_id=5,
                                                amount_micros=3),
                                        pb.Move(to_shard=2, number=3, account_id=6,
                                                amount_micros=1)])
    two = pb.ListMovesResponse(landed=[pb.ShardMark(shard=1, number=1)])
    assert in_transit(5, {1: one, 2: two}) == 3  # move 1 landed, 2 did not
    assert in_transit(6, {1: one, 2: two}) == 1
    assert parse_token("1:5,2:9", [1, 2]) == {1: "5", 2: "9"}
    assert parse_token("", [1, 2]) == {}
    for bad in ("3:1", "1:x", "junk"):
        with pytest.raises(Exception, match="page_token"):
            parse_token(bad, [1, 2])


def test_a_streamed_buy_short_of_money_is_refused_and_the_next_one_fits(
        tmp_path: Path) -> None:
    """Streaming entry does not send a refused buy again (it would reorder the stream),
    but the gateway moves the money over in the background."""
    with money_venue(tmp_path) as (v, servers):
        op, _, buyer = market(v)
        me = buyer.balance().account_id
        op.deposit(me, "20")
        away = 3 - (1, 2)[me % 2]
        sku = next(k.split("/")[0] for k, i in ROUTES.items() if i == away)
        first = list(buyer.submit_orders([dict(product_id=pid(sku), side="buy",
                                               price="1", quantity=2)]))
        assert isinstance(first[0], RpcError) and first[0].reason == "INSUFFICIENT_FUNDS"
        deadline = time.monotonic() + 30
        while shard_balance(v.engines[away], me).available_micros < 2 * D:
            assert time.monotonic() < deadline, "the money never moved"
            time.sleep(0.05)
        again = list(buyer.submit_orders([dict(product_id=pid(sku), side="buy",
                                               price="1", quantity=2)]))
        assert again[0].state == "open"
        b = buyer.balance()
        assert (b.current + b.in_transit, b.holds) == (20, Decimal("2.004"))
        check_ledgers(servers)


# ---- the engine's side, against a model: moves in any order, resent, cut short ----

Move = tuple[str, int, int, int]
moves_script = st.lists(st.tuples(
    st.sampled_from(["deposit", "bid", "cancel", "out", "in", "landed", "withdraw"]),
    st.integers(0, 2), st.integers(0, 2), st.integers(1, 40)), min_size=1, max_size=50)


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(moves_script)
def test_moves_between_three_shards_never_make_or_lose_a_dollar(script: list[Move]) -> None:
    """Three shards' exchanges, one buyer whose home is shard 0: deposits, withdrawals,
    bids and cancels on any shard, and the three steps of moves sent in any order, again,
    or never. After every step: each shard's ledger keeps its invariants and no account
    is overdrawn; the buyer's money on the shards plus what is in transit (as the gateway
    reads it) is what was deposited less withdrawn; a move's IN lands once and only in
    its number's turn. At the end each shard's journal and snapshot give it back."""
    buyer = BUYERS[0]
    shards = [OneShard() for _ in range(3)]
    journals: list[list[tuple[int, int, bytes]]] = [[] for _ in shards]
    net = 0
    sent: dict[tuple[int, int], list[tuple[int, int]]] = {}  # (src, dst): [(number, amount)]
    landed: dict[tuple[int, int], int] = {}
    orders: list[tuple[int, int]] = []

    def move(v: OneShard, r: pb.MoveMoneyRequest) -> pb.MoveMoneyResponse:
        return pb.MoveMoneyResponse.FromString(v.ex.move_money(v.t, r.SerializeToString()))

    for kind, a, b, n in script:
        src, dst = a, b if b != a else (a + 1) % 3
        v = shards[src]
        before = [(x.ex.sequence, x.ex.state_hash()) for x in shards]
        try:
            if kind == "deposit":
                shards[0].money("deposit", pb.DepositRequest(account_id=buyer,
                                                             amount_micros=n * D))
                net += n * D
            elif kind == "withdraw":
                shards[0].money("withdraw", pb.WithdrawRequest(account_id=buyer,
                                                               amount_micros=n * D // 4))
                net -= n * D // 4
            elif kind == "bid":
                r = pb.PlaceOrderRequest(product_id=PIDS[b], side=pb.SIDE_BUY,
                                         price_micros=D, quantity=n % 8 + 1)
                o = pb.Order.FromString(v.ex.place_order(v.t, buyer, r.SerializeToString(),
                                                         buyer=True, seller=True))
                orders.append((src, o.order_id))
            elif kind == "cancel" and orders:
                at, oid = orders.pop(n % len(orders))
                shards[at].ex.cancel_order(shards[at].t, buyer, pb.CancelOrderRequest(
                    order_id=oid).SerializeToString())
            elif kind == "out":
                free = pb.Balance.FromString(v.ex.balance(buyer)).available_micros
                amount = n * D // 2
                try:
                    got = move(v, pb.MoveMoneyRequest(step=pb.MOVE_STEP_OUT, account_id=buyer,
                                                      amount_micros=amount, other_shard=dst))
                except SpotexError as err:
                    assert err.reason == "INSUFFICIENT_FUNDS" and amount > free  # type: ignore[attr-defined]
                    assert [(x.ex.sequence, x.ex.state_hash()) for x in shards] == before
                else:
                    assert amount <= free
                    mine = sent.setdefault((src, dst), [])
                    assert got.move.number == len(mine) + 1
                    mine.append((got.move.number, amount))
            elif kind == "in" and sent.get((src, dst)):
                number, amount = sent[(src, dst)][n % len(sent[(src, dst)])]
                last = landed.get((src, dst), 0)
                try:
                    got = move(shards[dst], pb.MoveMoneyRequest(
                        step=pb.MOVE_STEP_IN, account_id=buyer, amount_micros=amount,
                        other_shard=src, number=number))
                except SpotexError as err:
                    assert err.reason == "MOVE_OUT_OF_ORDER" and number > last + 1  # type: ignore[attr-defined]
                else:
                    assert got.already == (number <= last)
                    if not got.already:
                        assert number == last + 1
                        landed[(src, dst)] = number
            elif kind == "landed" and landed.get((src, dst)):
                move(v, pb.MoveMoneyRequest(step=pb.MOVE_STEP_LANDED, other_shard=dst,
                                            number=landed[(src, dst)]))
        except SpotexError as err:
            assert err.reason == "INSUFFICIENT_FUNDS", err  # type: ignore[attr-defined]
            assert [(x.ex.sequence, x.ex.state_hash()) for x in shards] == before
        for x, j in zip(shards, journals, strict=True):
            j.extend(x.ex.take_journal())  # type: ignore[attr-defined]
            assert x.ex.check_ledger() is None, x.ex.check_ledger()
            assert pb.Balance.FromString(x.ex.balance(buyer)).available_micros >= 0
        listed = {i: pb.ListMovesResponse.FromString(x.ex.list_moves())
                  for i, x in enumerate(shards)}
        on_shards = sum(pb.Balance.FromString(x.ex.balance(buyer)).current_micros
                        for x in shards)
        assert on_shards + in_transit(buyer, listed) == net
        # what is pending on a source is what was sent and not said to have landed
        for (s, d), mine in sent.items():
            told = max((m.number for m in listed[s].pending if m.to_shard == d), default=0)
            assert told in (0, mine[-1][0])
    for x, j in zip(shards, journals, strict=True):
        again = Exchange(1_000)
        again.set_resale_fee_bps(150)
        for seq, ts, command in j:
            again.replay(seq, ts, command)
        assert again.state_hash() == x.ex.state_hash()
        back = Exchange.restore(x.ex.snapshot(), 1_000)
        assert back.state_hash() == x.ex.state_hash()
        assert back.list_moves() == x.ex.list_moves()


@pytest.mark.parametrize(("credits", "said"), [
    ((5 * D, 5 * D), r"shard 1's engine at \S+ gives every account \$5\.00 of credit"),
    ((0, None), r"shards 1 check money .* and the others do not"),
])
def test_a_gateway_refuses_engines_whose_default_credit_would_count_once_per_shard(
        tmp_path: Path, credits: tuple[int | None, int | None], said: str) -> None:
    import asyncio

    from spotex.cluster.gateway import CreditRefused
    with contextlib.ExitStack() as stack:
        engines = {}
        for index, credit in zip((1, 2), credits, strict=True):
            r = stack.enter_context(serving(tmp_path / f"shard{index}", shard_index=index,
                                            gateway_token=GATEWAY_TOKEN, limits=LIMITS,
                                            money=MoneySettings(default_credit=credit)))
            engines[index] = r.target
        table = Routes([ShardSpec(i, (a,)) for i, a in engines.items()], ROUTES)
        with pytest.raises(CreditRefused, match=said):
            asyncio.run(ShardGateway.start("127.0.0.1:0", table, GATEWAY_TOKEN,
                                           tmp_path / "gateway", OPERATOR_TOKEN))
        assert not (tmp_path / "gateway").exists(), "nothing is written before it starts"
