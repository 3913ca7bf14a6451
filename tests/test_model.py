"""The Rust engine against the pure-Python reference model, command by command.

Random sequences of every command type (orders of every type and time in force, gang
bids, iceberg asks, block and window bids at once or resting, cancels, amends, time
passing, halts, closures, capacity withdrawals, plenty of bad input) go through both;
events, books, orders, resting blocks and utilisation must agree after every step, and
the engine's own invariants must hold: among them the same GPUs in every hour of a block,
a block never partly filled, its cost within its limit, an iceberg never showing more
than its clip. At the end the command log is replayed into a fresh engine and must give
the same state hash.
"""

from __future__ import annotations

import contextlib
from typing import Any

from hypothesis import event, settings
from hypothesis import strategies as st
from hypothesis.errors import InvalidArgument
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

import spotex
from spotex.tools.reference import ReferenceEngine, Rejected


def seen(what: str) -> None:
    """Counts `what` in hypothesis's statistics (--hypothesis-show-statistics), and
    nothing when a hand-made case drives the machine."""
    with contextlib.suppress(InvalidArgument):
        event(what)

HOUR = spotex.MICROS_PER_HOUR
T0 = 490_000 * HOUR
TICK = 10_000
BASE = 2_000_000
ACCOUNTS = [1, 2, 3]
PRODUCTS = [
    ("H100-SXM/us-east/2025-11-23T14", 1),
    ("H100-SXM/us-east/2025-11-23T15", 2),
    ("H100-SXM/us-east/2025-11-23T16", 1),
]
DELIVERY = {pid: (T0 // HOUR) + 10 + i for i, (pid, _) in enumerate(PRODUCTS)}


def hour_text(h: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(h * 3600, dt.UTC).strftime("%Y-%m-%dT%H")


PRODUCT_IDS = [f"H100-SXM/us-east/{hour_text(DELIVERY[p])}" for p, _ in PRODUCTS]
LOTS = {pid: lot for pid, (_, lot) in zip(PRODUCT_IDS, PRODUCTS, strict=True)}
HOURS = {pid: DELIVERY[p] for pid, (p, _) in zip(PRODUCT_IDS, PRODUCTS, strict=True)}
# small, uneven nodes so that gangs and capacity limits bite
CLUSTERS = {1: [("a", 8), ("b", 4)], 2: [("a", 8), ("b", 8), ("c", 2)], 3: [("a", 4)]}
# where the nodes sit (block, rack, NVLink domain): cluster 3 has no labels
PLACES = {1: [("p1", "r1", "d2"), ("", "", "")],
          2: [("p1", "r1", "d1"), ("p1", "r1", "d1"), ("p1", "r2", "")]}
LOCALITIES = [None, None, None, "node", "nvlink_domain", "rack", "block", "cluster"]

EVENT_FIELDS = ("kind", "product", "order_id", "account", "side", "price", "qty", "reason",
                "trade_id", "maker_order", "maker_account", "priority_kept", "state", "cluster")


def event_key(e: Any) -> tuple[Any, ...]:
    key = tuple(getattr(e, f) for f in EVENT_FIELDS)
    a = e.allocation
    if a is None:
        return key
    slots = tuple((n, tuple(g)) for n, g in a.slots)
    return key + ((a.trade_id, a.cluster, a.hour, a.buyer, a.seller, a.buy_order, a.sell_order,
                   a.price, a.qty, slots),)


def order_key(o: Any) -> tuple[Any, ...]:
    return (o.order_id, o.account, o.product, o.side, o.price, o.remaining, o.filled, o.gang,
            o.cluster, o.post_only, o.stp, o.clip, o.hidden)


prices = st.one_of(
    st.integers(-3, 8).map(lambda k: BASE + k * TICK),
    st.sampled_from([0, -TICK, BASE + 1, 2_000_000_000_000]),
)


class EngineVersusModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.engine = spotex.Engine()
        self.model = ReferenceEngine()
        self.log: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.ts = T0
        self.order_ids: list[int] = []
        self.remaining: dict[int, int] = {}
        self.gang: dict[int, int] = {}
        self.limit: dict[int, tuple[str, int]] = {}
        self.next_gang = 1
        # blocks: order id -> (hours, quantity, limit); what the one being placed will be
        self.blocks: dict[int, tuple[int, int, int]] = {}
        self.next_block: tuple[int, int, int] | None = None
        self.trade_ids: list[int] = []
        # a placed block: order id -> (level, domain) its GPUs must all sit in
        self.placed: dict[int, tuple[str, str]] = {}
        for pid in PRODUCT_IDS:
            self.both("create_product", pid, tick=TICK, lot=LOTS[pid], open_at=T0,
                      close_at=HOURS[pid] * HOUR - HOUR, ts=self.ts)
        for account, nodes in CLUSTERS.items():
            self.both("register_capacity", account, f"c{account}", sku="H100-SXM",
                      region="us-east", nodes=nodes, from_hour=T0 // HOUR,
                      to_hour=T0 // HOUR + 24, ts=self.ts, places=PLACES.get(account))

    # ---- driving both --------------------------------------------------------------

    def both(self, method: str, *args: Any, **kw: Any) -> list[Any] | None:
        self.log.append((method, args, kw))
        try:
            got = getattr(self.engine, method)(*args, **kw)
        except spotex.SpotexError as err:
            got_err: str | None = err.reason  # type: ignore[attr-defined]
            got = getattr(err, "events", [])
        else:
            got_err = None
        try:
            want = getattr(self.model, method)(*args, **kw)
        except Rejected as err:
            want_err: str | None = err.reason
            want = err.events
        else:
            want_err = None
        assert got_err == want_err, (method, args, kw, got_err, want_err)
        assert [event_key(e) for e in got] == [event_key(e) for e in want], (method, args, kw)
        self.track(got)
        return None if got_err else got

    def track(self, events: list[Any]) -> None:
        """Follows every order's open quantity from the events alone. A block's trades
        come hour by hour: each hour must hold all its GPUs, on the same GPUs, within the
        limit on the whole, all in the one command."""
        # block id -> hour -> (GPUs, cost, slots)
        legs: dict[int, dict[int, list[Any]]] = {}
        # (bid, product, cluster, node) -> GPUs this command gave the bid there; its gang
        on_node: dict[tuple[Any, ...], int] = {}
        gangs: dict[tuple[Any, ...], int] = {}
        for e in events:
            if e.kind == "accepted":
                self.order_ids.append(e.order_id)
                self.remaining[e.order_id] = e.qty
                self.limit[e.order_id] = (e.side, e.price)
                self.gang[e.order_id] = self.next_gang
                if self.next_block is not None:
                    self.blocks[e.order_id] = self.next_block
            elif e.kind == "trade" and e.order_id in self.blocks:
                self.remaining[e.maker_order] -= e.qty
                assert self.remaining[e.maker_order] >= 0
                leg = legs.setdefault(e.order_id, {}).setdefault(e.product, [0, 0, set()])
                leg[0] += e.qty
                leg[1] += e.qty * e.price
            elif e.kind == "trade":
                for oid in (e.order_id, e.maker_order):
                    self.remaining[oid] -= e.qty
                    assert self.remaining[oid] >= 0
                taker_side, limit = self.limit[e.order_id]
                assert (e.price <= limit) if taker_side == "buy" else (e.price >= limit)
            elif e.kind in ("cancelled", "expired"):
                self.remaining[e.order_id] -= e.qty
                assert self.remaining[e.order_id] == 0, "cancel/expiry must take all that is open"
            elif e.kind == "amended":
                self.remaining[e.order_id] = e.qty
                self.limit[e.order_id] = (self.limit[e.order_id][0], e.price)
            elif e.kind == "placed":
                self.placed[e.order_id] = (e.state, e.cluster)
                seen(f"a block placed at {e.state}")
            elif e.kind == "allocated":
                a = e.allocation
                gang = self.gang[a.buy_order]
                self.trade_ids.append(a.trade_id)
                if a.buy_order in self.placed:
                    # the engine's and the model's placement agree (the events are equal);
                    # each GPU in the domain named, at its level
                    level, domain = self.placed[a.buy_order]
                    c = self.model.clusters[a.cluster]
                    names = [n for n, _ in c.nodes]
                    assert all(c.domain(names.index(n), level) == domain for n, _ in a.slots)
                assert sum(len(g) for _, g in a.slots) == a.qty == e.qty
                if a.buy_order in self.blocks:
                    held = legs[a.buy_order][a.product][2]
                    held |= {(a.cluster, n, g) for n, gpus in a.slots for g in gpus}
                else:
                    # a gang may take GPUs from several asks of its cluster (several
                    # allocations): what the command gave the bid on each node is whole gangs
                    for n, g in a.slots:
                        key = (a.buy_order, a.product, a.cluster, n)
                        on_node[key] = on_node.get(key, 0) + len(g)
                        gangs[key] = gang
        assert all(q % gangs[k] == 0 for k, q in on_node.items()), "gang split across nodes"
        for oid, hours in legs.items():
            n, qty, limit = self.blocks[oid]
            assert len(hours) == n, "a block filled in some of its hours"
            assert all(q == qty for q, _, _ in hours.values()), "a block hour short of GPUs"
            assert sum(c for _, c, _ in hours.values()) <= limit * qty * n, "over its limit"
            held = [h for _, _, h in hours.values()]
            assert all(h == held[0] for h in held), "not the same GPUs in every hour"
            seen(f"a block of {n} hours filled " + (
                "on entry" if oid == events[0].order_id else "from the side book"))
            self.remaining[oid] = 0

    def tick(self, delta: int) -> int:
        self.ts += delta
        return self.ts

    # ---- rules ---------------------------------------------------------------------

    @rule(
        account=st.sampled_from(ACCOUNTS),
        product=st.sampled_from(PRODUCT_IDS),
        side=st.sampled_from(["buy", "sell"]),
        price=prices,
        qty=st.one_of(st.integers(1, 12), st.sampled_from([0, -1, 16, 10_000_001])),
        order_type=st.sampled_from(["limit"] * 6 + ["market"]),
        tif=st.sampled_from(["gtc", "gtc", "gtc", "gtd", "ioc", "fok"]),
        post_only=st.booleans(),
        stp=st.sampled_from(["cancel_newest", "cancel_oldest", "cancel_both"]),
        gang=st.sampled_from([1, 1, 1, 2, 4, 8, 3]),
        cluster_owner=st.sampled_from([None, "own", "own", "own", 1, 2]),
        expiry=st.integers(-5, 400),
        delta=st.integers(0, 40),
        clip=st.sampled_from([0, 0, 0, 1, 2, 4, 20, -1]),
    )
    def place(self, account: int, product: str, side: str, price: int, qty: int,
              order_type: str, tif: str, post_only: bool, stp: str, gang: int,
              cluster_owner: Any, expiry: int, delta: int, clip: int) -> None:
        ts = self.tick(delta)
        if side == "sell":
            gang = 1
            cluster = f"c{account}" if cluster_owner in (None, "own") else f"c{cluster_owner}"
        else:
            cluster = None if cluster_owner != 2 else "c2"
        expire_at = ts + expiry if tif == "gtd" else None
        self.next_gang = gang
        self.both("place", account, product, side, price, qty, ts=ts, order_type=order_type,
                  tif=tif, expire_at=expire_at, post_only=post_only and order_type == "limit",
                  stp=stp, cluster_id=cluster, gang=gang, clip=clip)

    @rule(
        account=st.sampled_from(ACCOUNTS),
        product=st.sampled_from(PRODUCT_IDS[:1] * 3 + PRODUCT_IDS[1:]),
        hours=st.sampled_from([1, 2, 2, 2, 3, 3, 0, 4]),
        window=st.sampled_from([0, 0, 0, 3, 2]),
        price=st.one_of(st.integers(0, 8).map(lambda k: BASE + k * TICK), prices),
        # even, mostly: the second hour's lot is 2
        qty=st.one_of(st.integers(1, 4).map(lambda n: 2 * n), st.sampled_from([1, 0, 16])),
        gang=st.sampled_from([1, 1, 2, 2, 4, 8, 3]),
        tif=st.sampled_from(["fok", "ioc", "gtc", "gtc", "gtd"]),
        expiry=st.integers(-5, 400),
        delta=st.integers(0, 40),
        locality=st.sampled_from(LOCALITIES),
        preferred=st.booleans(),
        near=st.sampled_from([False] * 4 + [True]),
        data=st.data(),
    )
    def place_block(self, account: int, product: str, hours: int, window: int, price: int,
                    qty: int, gang: int, tif: str, expiry: int, delta: int,
                    locality: str | None, preferred: bool, near: bool,
                    data: st.DataObject) -> None:
        ts = self.tick(delta)
        expire_at = ts + expiry if tif == "gtd" else None
        self.next_gang = gang
        self.next_block = (hours, qty, price)
        try:
            near_trade = (data.draw(st.sampled_from(self.trade_ids + [10_000]))
                          if near else None)
            got = self.both("place_block", account, product, hours, price, qty, ts=ts,
                            gang=gang, tif=tif, expire_at=expire_at, window=window,
                            locality=locality, preferred=preferred and locality is not None,
                            near=near_trade)
        finally:
            self.next_block = None
        seen("block: " + ("refused" if got is None else got[-1].kind))

    @initialize(stock=st.lists(st.tuples(st.sampled_from(ACCOUNTS), st.integers(-2, 6),
                                         st.integers(1, 3), st.sampled_from([0, 0, 2])),
                               max_size=3))
    def stocked(self, stock: list[tuple[int, int, int, int]]) -> None:
        """Some runs start with sellers already offering in every hour."""
        for account, k, n, clip in stock:
            self.asks_every_hour(account, BASE + k * TICK, 2 * n, clip, 0)

    @rule(account=st.sampled_from(ACCOUNTS), price=st.integers(-2, 6).map(
              lambda k: BASE + k * TICK), qty=st.integers(1, 4).map(lambda n: 2 * n),
          clip=st.sampled_from([0, 0, 2]), delta=st.integers(0, 40))
    def asks_every_hour(self, account: int, price: int, qty: int, clip: int,
                        delta: int) -> None:
        """A seller offers in every listed hour, as a range does: what blocks wait for."""
        ts = self.tick(delta)
        for pid in PRODUCT_IDS:
            self.next_gang = 1
            self.both("place", account, pid, "sell", price, qty, ts=ts,
                      cluster_id=f"c{account}", clip=clip if qty >= clip else 0)

    @rule(account=st.sampled_from(ACCOUNTS), product=st.sampled_from(PRODUCT_IDS),
          gang=st.sampled_from([1, 2, 2, 4]), delta=st.integers(0, 40))
    def hourly_buy(self, account: int, product: str, gang: int, delta: int) -> None:
        """A one-hour gang bid that takes what it can: GPUs sold in one hour and not the
        next, which a block must then go around."""
        self.next_gang = gang
        self.both("place", account, product, "buy", BASE + 8 * TICK, 2 * gang,
                  ts=self.tick(delta), tif="ioc", gang=gang)

    @rule(data=st.data(), delta=st.integers(0, 40), account=st.sampled_from(ACCOUNTS))
    def cancel(self, data: st.DataObject, delta: int, account: int) -> None:
        oid = data.draw(st.sampled_from(self.order_ids + [0, 10_000]))
        self.both("cancel", account, oid, ts=self.tick(delta))

    @rule(data=st.data(), delta=st.integers(0, 40), account=st.sampled_from(ACCOUNTS),
          price=st.none() | prices, qty=st.none() | st.integers(-1, 12))
    def amend(self, data: st.DataObject, delta: int, account: int, price: int | None,
              qty: int | None) -> None:
        oid = data.draw(st.sampled_from(self.order_ids + [0]))
        if oid in self.remaining and data.draw(st.booleans()):
            # most amends come from the owner
            o = self.engine.order(oid)
            if o is not None:
                account = o.account
        self.both("amend", account, oid, price=price, qty=qty, ts=self.tick(delta))

    @rule(delta=st.integers(1, 500))
    def advance_time(self, delta: int) -> None:
        self.both("advance_time", self.tick(delta))

    @rule(product=st.sampled_from(PRODUCT_IDS), what=st.sampled_from(["halt", "resume", "close"]),
          delta=st.integers(0, 40), roll=st.integers(0, 9))
    def operator(self, product: str, what: str, delta: int, roll: int) -> None:
        if what == "close" and roll > 1:
            what = "resume"
        self.both(what, product, ts=self.tick(delta))

    @rule(account=st.sampled_from(ACCOUNTS), owner=st.sampled_from(ACCOUNTS),
          nodes=st.none() | st.lists(st.sampled_from(["a", "b", "c", "zz"]), max_size=2),
          start=st.integers(-2, 12), length=st.integers(0, 3), delta=st.integers(0, 40))
    def withdraw(self, account: int, owner: int, nodes: list[str] | None, start: int,
                 length: int, delta: int) -> None:
        h = T0 // HOUR + start
        self.both("withdraw_capacity", account, f"c{owner}", from_hour=h, to_hour=h + length,
                  nodes=nodes, ts=self.tick(delta))

    # ---- invariants ----------------------------------------------------------------

    @invariant()
    def books_agree_and_never_cross(self) -> None:
        for pid in PRODUCT_IDS:
            assert self.engine.l2(pid, 100) == self.model.l2(pid, 100)
            eb, ea = self.engine.l3(pid)
            mb, ma = self.model.l3(pid)
            assert [order_key(o) for o in eb] == [order_key(o) for o in mb]
            assert [order_key(o) for o in ea] == [order_key(o) for o in ma]
            self.no_tradeable_cross(pid, eb, ea)
            assert [o.price for o in eb] == sorted((o.price for o in eb), reverse=True)
            assert [o.price for o in ea] == sorted(o.price for o in ea)

    def no_tradeable_cross(self, pid: str, bids: list[Any], asks: list[Any]) -> None:
        """A bid may rest at or above an ask only when that ask's cluster cannot place one
        gang of the bid (gang bids pass over such asks); any other cross must have traded."""
        for b in bids:
            for a in asks:
                if b.price < a.price:
                    break
                assert b.gang > 1, f"crossed book at rest: {order_key(b)} / {order_key(a)}"
                free = self.model.clusters[a.cluster].hour_free(HOURS[pid])
                gangs = sum(len(f) // b.gang for f in free)
                assert a.remaining < b.gang or gangs == 0, "a placeable cross did not trade"

    @invariant()
    def quantity_is_conserved(self) -> None:
        # placed (as amended) = filled + resting + cancelled/expired, order by order
        resting = self.engine.resting_blocks()
        assert resting == self.model.resting_blocks()
        for oid, rem in self.remaining.items():
            if oid in self.blocks:
                # a block is whole or gone: never partly filled
                assert (oid in resting) == (rem > 0)
                assert rem in (0, self.blocks[oid][1])
                continue
            o = self.engine.order(oid)
            if rem == 0:
                assert o is None
            else:
                # an iceberg shows at most its clip, and keeps the rest hidden
                assert o is not None and o.remaining + o.hidden == rem
                assert o.clip == 0 or 0 < o.remaining <= o.clip
                if o.clip and o.filled >= o.clip:
                    seen("an iceberg showed a refilled clip")
        assert self.engine.open_order_count() == sum(1 for r in self.remaining.values() if r)

    @invariant()
    def no_gpu_hour_sold_twice(self) -> None:
        seen: set[tuple[str, int, str, int]] = set()
        for account in ACCOUNTS:
            for a in self.engine.allocations(account):
                if a.seller != account:
                    continue
                for node, gpus in a.slots:
                    for g in gpus:
                        key = (a.cluster, a.hour, node, g)
                        assert key not in seen, f"GPU-hour sold twice: {key}"
                        seen.add(key)
        for account in CLUSTERS:
            for pid in PRODUCT_IDS:
                u = self.engine.utilisation(f"c{account}", HOURS[pid])
                m = self.model.utilisation(f"c{account}", HOURS[pid])
                assert u is not None and m is not None
                got = {k: getattr(u, k) for k in m}
                assert got == m
                assert u.sold + u.offered <= u.capacity - u.withdrawn
                assert u.idle >= 0

    def teardown(self) -> None:
        replay = spotex.Engine()
        for method, args, kw in self.log:
            try:
                getattr(replay, method)(*args, **kw)
            except spotex.SpotexError:
                pass
        assert replay.state_hash() == self.engine.state_hash()


EngineVersusModel.TestCase.settings = settings(
    max_examples=int(__import__("os").environ.get("SPOTEX_MODEL_EXAMPLES", "150")),
    stateful_step_count=60,
    deadline=None,
)
TestEngineVersusModel = EngineVersusModel.TestCase


def test_model_tracks_price_time_priority_on_a_known_case() -> None:
    """A hand-made case pinning what both implementations compare on."""
    m = EngineVersusModel()
    m.next_gang = 1
    pid = PRODUCT_IDS[0]
    a1 = m.both("place", 1, pid, "sell", BASE, 2, ts=m.tick(1), cluster_id="c1")
    a2 = m.both("place", 2, pid, "sell", BASE, 2, ts=m.tick(1), cluster_id="c2")
    assert a1 and a2
    got = m.both("place", 3, pid, "buy", BASE, 3, ts=m.tick(1))
    assert got is not None
    trades = [(e.maker_order, e.qty) for e in got if e.kind == "trade"]
    assert trades == [(a1[0].order_id, 2), (a2[0].order_id, 1)]


def test_model_and_engine_agree_on_resting_blocks_and_sold_gpus() -> None:
    """Hand-made: a block goes around GPUs sold in one of its hours, and resting blocks
    fill highest limit first when asks arrive."""
    m = EngineVersusModel()
    first, second = PRODUCT_IDS[0], PRODUCT_IDS[1]
    m.both("place", 1, first, "sell", BASE, 8, ts=m.tick(1), cluster_id="c1")
    m.both("place", 1, second, "sell", BASE, 10, ts=m.tick(1), cluster_id="c1")
    # node b loses two GPUs in the second hour only: only node a can hold gangs of 4 in
    # both hours
    m.next_gang = 2
    m.both("place", 3, second, "buy", BASE, 2, ts=m.tick(1), tif="ioc", gang=2)
    m.next_gang, m.next_block = 4, (2, 8, BASE)
    got = m.both("place_block", 2, first, 2, BASE, 8, ts=m.tick(1), gang=4)
    m.next_block = None
    assert got is not None
    held = {(a.allocation.hour, n, tuple(g)) for a in got if a.kind == "allocated"
            for n, g in a.allocation.slots}
    assert {(n, g) for _, n, g in held} == {("a", tuple(range(8)))}
    # two blocks rest; asks arriving in both hours fill the higher limit first
    m.next_gang, m.next_block = 1, (2, 2, BASE)
    low = m.both("place_block", 2, first, 2, BASE, 2, ts=m.tick(1), tif="gtc")
    m.next_block = (2, 2, BASE + 2 * TICK)
    high = m.both("place_block", 3, first, 2, BASE + 2 * TICK, 2, ts=m.tick(1), tif="gtc")
    m.next_block = None
    assert low and high
    assert m.engine.resting_blocks() == [low[0].order_id, high[0].order_id]
    m.both("place", 1, first, "sell", BASE, 2, ts=m.tick(1), cluster_id="c1")
    m.both("place", 1, second, "sell", BASE, 2, ts=m.tick(1), cluster_id="c1")
    assert m.engine.resting_blocks() == [low[0].order_id]
