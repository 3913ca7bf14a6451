"""The Rust exchange (rust_exchange/, ``spotex._core.Exchange``, what the service runs
on) against a naive Python model of an order's life (tests/order_model.py), step by step
on random commands, bad input included: the same outcome (the same ``Order`` message, or
a refusal with the same reason), the same command sequence and state hash, the same
market data and executions, the same orders, books, products and allocations; and the
exchange's journal replays, from the start or from a snapshot, to the same exchange."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from order_model import ModelError, OrderModel, allocation_pb, product_pb

from spotex._core import Exchange, RefusedError, SpotexError
from spotex._proto.spotex.v1 import spotex_pb2 as pb

HOUR = 3_600_000_000
T0 = 490_000 * HOUR
PID = "H100-SXM/us-east/2025-11-26T16"  # hour 490_048
OTHER = "H100-SXM/us-east/2025-11-26T17"
MAX_OPEN = 6
# account id -> (buyer, seller)
ROLES = {1: (True, True), 2: (True, True), 3: (True, False)}


def _outcome(fn: Any) -> Any:
    try:
        return fn()
    except (SpotexError, ModelError) as err:
        return ("refused", err.reason)  # type: ignore[attr-defined]


class Pair:
    """The model and the exchange, fed the same commands at the same times."""

    def __init__(self) -> None:
        self.t = T0
        self.model = OrderModel(MAX_OPEN)
        self.ex = Exchange(MAX_OPEN)
        self.journal: list[tuple[int, int, bytes]] = []

    def step(self, dt: int, on_model: Any, on_exchange: Any) -> None:
        self.t += dt
        ts = self.t
        m = _outcome(lambda: on_model(ts))
        e = _outcome(lambda: on_exchange(ts))
        assert m == e, (m, e)
        self.compare_streams()
        assert self.model.sequence == self.ex.sequence
        assert self.model.engine.state_hash() == self.ex.state_hash()
        self.journal.extend(self.ex.take_journal())
        self.views_agree()

    def views_agree(self) -> None:
        """What the service reads (products, books, allocations, where a subscription
        starts) is the same from both."""
        model, ex = self.model, self.ex
        assert pb.ListProductsResponse.FromString(ex.list_products()) == \
            pb.ListProductsResponse(products=[product_pb(r) for r in model.engine.products()])
        for product in (PID, OTHER, "garbage"):
            for depth in (0, 2):
                req = pb.GetBookRequest(product_id=product, depth=depth).SerializeToString()
                ours = _outcome(lambda product=product, depth=depth: pb.GetBookResponse(
                    book=model.book(product, depth or 20)))
                theirs = _outcome(lambda req=req: pb.GetBookResponse.FromString(
                    ex.get_book(req)))
                assert theirs == ours
        for account in ROLES:
            for product in ("", PID):
                req = pb.ListAllocationsRequest(product_id=product).SerializeToString()
                ours = pb.ListAllocationsResponse(allocations=[
                    allocation_pb(x, account) for x in model.engine.allocations(account)
                    if not product or x.product == product])
                assert pb.ListAllocationsResponse.FromString(
                    ex.list_allocations(account, req)) == ours
        known = {row[0] for row in model.engine.products()}
        for wanted in ([], [OTHER, PID], [PID, "garbage"]):
            req = pb.StreamMarketDataRequest(product_ids=wanted).SerializeToString()
            if set(wanted) - known:
                ours: Any = ("refused", "UNKNOWN_PRODUCT")
            else:
                ours = [pb.MarketData(product_id=p, sequence=book.sequence, snapshot=book)
                        for p in sorted(set(wanted) or known)
                        for book in [model.book(p, 1 << 30)]]
            theirs = _outcome(lambda req=req: list(
                pb.MarketDataBatch.FromString(ex.market_snapshots(req)).updates))
            assert theirs == ours

    def compare_streams(self) -> None:
        market, executions, trades = self.ex.take_round()
        ours, ours_x = self.model.take_round()
        # the round's trades, read once by the exchange for the tape, are its market
        # data's trades, in order
        assert trades == [(m.product_id, m.trade.trade_id, m.trade.time_micros,
                           m.trade.price_micros, m.trade.quantity, m.trade.aggressor,
                           m.trade.auction_id)
                          for m in ours if m.WhichOneof("payload") == "trade"]
        # per product, in order (the exchange groups a round's updates by product)
        theirs_by = {p: list(pb.MarketDataBatch.FromString(b).updates) for p, _, b in market}
        assert all(len(theirs_by[p]) == n for p, n, _ in market)
        ours_by: dict[str, list[Any]] = {}
        for m in ours:
            ours_by.setdefault(m.product_id, []).append(m)
        assert theirs_by == ours_by
        theirs_x = [(a, x) for a, n, batch in executions
                    for x in pb.ExecutionBatch.FromString(batch).executions]
        assert sum(n for _, n, _ in executions) == len(theirs_x)
        # per account in order; the model's executions show an order as it stands after
        # the round, the exchange's as it stood at that execution: compare the order
        # whole only where it is that order's last execution of the round
        assert sorted(a for a, _ in theirs_x) == sorted(a for a, _ in ours_x)
        for account in ROLES:
            t = [x for a, x in theirs_x if a == account]
            o = [x for a, x in ours_x if a == account]
            assert len(t) == len(o)
            last = {x.order.order_id: i for i, x in enumerate(o)}
            for i, (x, y) in enumerate(zip(t, o, strict=True)):
                assert (x.sequence, x.kind, x.fill, x.allocation, x.order.order_id) == (
                    y.sequence, y.kind, y.fill, y.allocation, y.order.order_id)
                if last[y.order.order_id] == i:
                    assert x.order == y.order

    def order_ids(self) -> list[int]:
        return list(self.model.orders)


# an order is well formed but for at most one flaw, so most orders rest and trade while
# every refusal class still comes up
FLAWS: dict[str, list[Any]] = {
    "side": [0, 7], "order_type": [5], "time_in_force": [9], "stp": [4],
    "price_micros": [0, -10_000, 2_005_000, 10**13], "quantity": [0, -1, 10**9],
    "gang": [3, 128], "expire_in": [-10**6, 0], "cluster": ["", "own", "other", "nope"],
    "client_order_id": ["x" * 70], "post_only": [True], "product": ["garbage"],
}
_FLAWED = sorted(FLAWS)
place = st.fixed_dictionaries({
    # account 3 is a buyer only: its asks are refused, so it sends few
    "account": st.sampled_from([1, 1, 2, 2, 3]),
    "side": st.sampled_from([1, 2]),
    "order_type": st.sampled_from([0, 0, 0, 1]),
    "time_in_force": st.sampled_from([0, 0, 0, 1, 2, 3]),
    "stp": st.sampled_from([0, 1, 2]),
    "price_micros": st.integers(-3, 3).map(lambda k: 2_000_000 + k * 10_000),
    "quantity": st.integers(1, 16),
    "gang": st.sampled_from([1, 1, 1, 2, 4, 8]),
    # "fit": the order's own cluster for an ask, none for a bid
    "cluster": st.just("fit"),
    "client_order_id": st.sampled_from(["", "", "", "a", "b"]),
    "post_only": st.just(False),
    "expire_in": st.integers(1, 10**9),
    "product": st.sampled_from([PID, PID, PID, OTHER]),
}).flatmap(lambda p: st.integers(0, 4 * len(FLAWS) - 1).flatmap(
    # the flaws sit at the high end: hypothesis leans to small numbers
    lambda k: st.just(p) if k < 3 * len(FLAWS) else st.sampled_from(
        FLAWS[_FLAWED[k % len(FLAWS)]]).map(
            lambda bad, k=k: {**p, _FLAWED[k % len(FLAWS)]: bad})))
ids = st.integers(0, 10**6)
accounts = st.sampled_from(list(ROLES))
steps = st.lists(st.one_of(
    *[st.tuples(st.just("place"), place) for _ in range(4)],
    st.tuples(st.just("cancel"), accounts, ids),
    st.tuples(st.just("amend"), accounts, ids,
              st.sampled_from([0, 0, 1_990_000, 2_020_000, 2_005_000]), st.integers(0, 12)),
    st.tuples(st.just("get"), accounts, ids),
    st.tuples(st.just("tick"), st.integers(0, 10 * 60_000_000)),
    # halts and closures now and then: a halted book refuses orders until resumed
    st.integers(0, 9).map(lambda k: ("state", "halt" if k == 0 else "close" if k == 1
                                     else "resume")),
), min_size=5, max_size=60)


def _setup(pair: Pair) -> None:
    m, ex = pair.model, pair.ex
    pair.step(0, lambda ts: m.create_product(ts, PID, 10_000, 1, T0 + 3 * HOUR),
              lambda ts: ex.create_product(ts, PID, 10_000, 1, T0 + 3 * HOUR))
    # a product whose gate closes while the test runs
    pair.step(1, lambda ts: m.create_product(ts, OTHER, 10_000, 1, T0 + HOUR // 2),
              lambda ts: ex.create_product(ts, OTHER, 10_000, 1, T0 + HOUR // 2))
    for a in (1, 2):
        req = pb.RegisterCapacityRequest(
            cluster_id=f"c{a}", sku="H100-SXM", region="us-east",
            nodes=[pb.Node(node_id="n0", gpus=8), pb.Node(node_id="n1", gpus=8)],
            from_hour=490_000, to_hour=490_100)
        pair.step(1, lambda ts, a=a, req=req: m.register_capacity(ts, a, req),
                  lambda ts, a=a, req=req: ex.register_capacity(ts, a, req.SerializeToString()))


def _place(pair: Pair, p: dict[str, Any]) -> None:
    a = p["account"]
    if a == 3 and p["side"] == 2 and p["cluster"] == "fit" and p["quantity"] % 3:
        a = 1 + p["quantity"] % 2  # mostly a seller's ask: account 3 may only buy
    fit = f"c{a}" if p["side"] == 2 else ""
    gang, qty = p["gang"], p["quantity"]
    tif = p["time_in_force"]
    if p["order_type"] == 1 and tif in (0, 1) and p["cluster"] == "fit":
        tif = 2  # a market order never rests: IOC (the flaws bring the refusals)
    if p["cluster"] == "fit" and gang in (2, 4, 8) and 0 < qty < 10**9:
        # a well-formed gang: bids only, in whole groups
        gang, qty = (gang, gang * max(1, qty // gang)) if p["side"] == 1 else (1, qty)
    cluster = {"fit": fit, "own": f"c{a}", "other": f"c{3 - a}" if a != 3 else "c1",
               "": "", "nope": "nope"}[p["cluster"]]
    req = pb.PlaceOrderRequest(
        client_order_id=p["client_order_id"], product_id=p["product"], side=p["side"],
        order_type=p["order_type"], price_micros=p["price_micros"], quantity=qty,
        time_in_force=tif, expire_at_micros=pair.t + p["expire_in"],
        post_only=p["post_only"], stp=p["stp"], cluster_id=cluster, gang=gang)
    if p["side"] == 1 and p["price_micros"] > 0:
        req.price_micros += 20_000  # bids lean higher, so books cross and trade often
    buyer, seller = ROLES[a]
    pair.step(
        7, lambda ts: pair.model.place(ts, a, buyer, seller, req),
        lambda ts: pb.Order.FromString(pair.ex.place_order(
            ts, a, req.SerializeToString(), buyer=buyer, seller=seller)))


def _pick(pair: Pair, k: int) -> int:
    """Mostly an order still open; sometimes any order (filled and cancelled ones too);
    now and then an id that does not exist."""
    if k % 7 == 0:
        return 10**6 + k
    everyone = pair.order_ids()
    open_ids = [o for o in everyone if pair.model.orders[o].remaining > 0]
    ids = open_ids if open_ids and k % 3 else everyone
    return ids[k % len(ids)] if ids else 10**6 + k


def _apply(pair: Pair, step: tuple[Any, ...]) -> None:
    kind = step[0]
    model, ex = pair.model, pair.ex
    if kind == "place":
        _place(pair, step[1])
    elif kind == "cancel":
        a, oid = step[1], _pick(pair, step[2])
        req = pb.CancelOrderRequest(order_id=oid).SerializeToString()
        pair.step(3, lambda ts: model.cancel(ts, a, oid),
                  lambda ts: pb.Order.FromString(ex.cancel_order(ts, a, req)))
    elif kind == "amend":
        a, oid, price, qty = step[1], _pick(pair, step[2]), step[3], step[4]
        req = pb.AmendOrderRequest(order_id=oid, price_micros=price,
                                   quantity=qty).SerializeToString()
        pair.step(3, lambda ts: model.amend(ts, a, oid, price or None, qty or None),
                  lambda ts: pb.Order.FromString(ex.amend_order(ts, a, req)))
    elif kind == "get":
        a, oid = step[1], _pick(pair, step[2])
        req = pb.GetOrderRequest(order_id=oid).SerializeToString()
        pair.step(0, lambda ts: model.get_order(a, oid),
                  lambda ts: pb.Order.FromString(ex.get_order(a, req)))
    elif kind == "state":
        what = step[1]
        pair.step(5, lambda ts: model.set_state(ts, what, PID),
                  lambda ts: ex.set_state(ts, what, PID))
    elif kind == "tick":
        pair.step(step[1], model.advance_time, ex.advance_time)


def _orders_agree(pair: Pair) -> None:
    for a in ROLES:
        for product, open_only in (("", False), (PID, True)):
            req = pb.ListOrdersRequest(product_id=product, open_only=open_only)
            theirs = pb.ListOrdersResponse.FromString(
                pair.ex.list_orders(a, req.SerializeToString()))
            assert theirs == pair.model.list_orders(a, product, open_only)


def _same_state(a: Exchange, b: Exchange) -> None:
    assert (a.sequence, a.state_hash()) == (b.sequence, b.state_hash())
    for account in ROLES:
        assert a.list_orders(account, b"") == b.list_orders(account, b"")


def _same(a: Exchange, b: Exchange) -> None:
    """The same state, the same records, and the same answer to what comes next (which
    both then take)."""
    _same_state(a, b)
    probe = pb.PlaceOrderRequest(product_id=PID, side=pb.SIDE_BUY, price_micros=2_030_000,
                                 quantity=2).SerializeToString()
    ts = T0 + 4 * HOUR // 3

    def outcome(x: Exchange) -> Any:
        try:
            return x.place_order(ts, 2, probe, buyer=True, seller=True), x.take_round()
        except RefusedError as err:
            return err.reason
    a.take_round()
    b.take_round()
    assert outcome(a) == outcome(b)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(plan=steps, cut=st.floats(0, 1))
def test_the_exchange_agrees_with_the_gateway_step_by_step(plan: list[tuple[Any, ...]],
                                                         cut: float) -> None:
    pair = Pair()
    _setup(pair)
    for step in plan:
        _apply(pair, step)
    _orders_agree(pair)
    # the exchange's journal is whole and replays to the same exchange, from the start
    # and from a snapshot taken anywhere along it
    journal = pair.journal
    assert [seq for seq, _, _ in journal] == list(range(1, pair.ex.sequence + 1))
    fresh = Exchange(MAX_OPEN)
    for entry in journal:
        fresh.replay(*entry)
    k = int(cut * len(journal))
    half = Exchange(MAX_OPEN)
    for entry in journal[:k]:
        half.replay(*entry)
    back = Exchange.restore(half.snapshot(), MAX_OPEN)
    for entry in journal[k:]:
        back.replay(*entry)
    _same_state(fresh, pair.ex)
    _same(back, fresh)


def test_a_journal_that_does_not_follow_is_refused() -> None:
    from spotex._core import JournalError

    ex = Exchange()
    ex.create_product(T0, PID, 10_000, 1, T0 + HOUR)
    [(seq, ts, cmd)] = ex.take_journal()
    fresh = Exchange()
    for bad in ((seq + 1, ts, cmd), (seq, ts, b"\xff\x01"), (seq, ts, b"")):
        try:
            fresh.replay(*bad)
        except JournalError:
            pass
        else:
            raise AssertionError(f"replayed {bad}")
    fresh.replay(seq, ts, cmd)
    assert fresh.state_hash() == ex.state_hash()
    try:
        fresh.replay(seq + 1, ts, cmd)  # the same product again: refused on replay
    except JournalError as err:
        assert "refused" in str(err)
    else:
        raise AssertionError("a refused journal record was applied")


def test_malformed_bytes_are_refused_and_change_nothing() -> None:
    ex = Exchange()
    ex.create_product(T0, PID, 10_000, 1, T0 + HOUR)
    before = (ex.sequence, ex.state_hash())
    for bad in (b"\xff\xff\xff", b"\x0a\x05ab"):
        for call in (lambda b: ex.place_order(T0 + 1, 1, b, buyer=True, seller=True),
                     lambda b: ex.cancel_order(T0 + 1, 1, b),
                     lambda b: ex.list_orders(1, b)):
            try:
                call(bad)
            except RefusedError as err:
                assert err.reason == "INVALID_ARGUMENT"
            else:
                raise AssertionError("malformed bytes were accepted")
    assert (ex.sequence, ex.state_hash()) == before
    assert ex.take_round() == ([], [], [])
