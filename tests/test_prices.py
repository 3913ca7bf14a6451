"""Price discovery: the trade tape, candles, the forward curve and the daily index.

The tape's derived data (candles, product statistics, the published index) agrees with
a plain recomputation from the trades, however the trades arrive in rounds (hypothesis,
with empty hours and days under the minimum volume); a server answers ListTrades,
ListCandles, GetCurve, GetIndex and ListIndex from its trades and refuses bad input with
one clear reason each; the index recomputed from the journal alone equals the published
one; a restart keeps the tape, and a tape behind the journal is filled from it.
"""

from __future__ import annotations

import datetime as dt
import sys
import tempfile
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from spotex._proto.spotex.v1 import spotex_pb2 as pb
from spotex.client import Client, RpcError
from spotex.server import prices as px
from spotex.server import prices_rpc as pr
from spotex.server import tape as tp
from spotex.server.host import EngineHost
from spotex.server.prices import DAY, HOUR, MINUTE, Print
from spotex.server.tape import FILE as TAPE
from spotex.server.tape import Tape, rows_of, trades_of

sys.path.insert(0, str(Path(__file__).parent))
from conftest import OPERATOR_TOKEN, Running  # noqa: E402

D0 = 20_400  # a day number (2025-11-08)
T0 = D0 * DAY


# ---- plain recomputations ----------------------------------------------------------


def plain_candles(trades: list[Print], width: int) -> dict[tuple[str, int], tuple[Any, ...]]:
    groups: dict[tuple[str, int], list[Print]] = defaultdict(list)
    for t in trades:
        for scope in (t.product, "/".join(t.product.split("/")[:2])):
            groups[(scope, t.time // width * width)].append(t)
    out = {}
    for k, ts in groups.items():
        ts = sorted(ts, key=lambda t: (t.time, t.trade_id))
        vol = sum(t.qty for t in ts)
        notional = sum(t.price * t.qty for t in ts)
        out[k] = (ts[0].price, max(t.price for t in ts), min(t.price for t in ts),
                  ts[-1].price, vol, len(ts), round(Decimal(notional) / vol + Decimal("1e-9")))
    return out


def plain_index(trades: list[Print]) -> dict[tuple[str, int], tuple[str, int, int, int]]:
    """(status, price, counted volume, counted trades) per (family, day), as docs/index.md
    says, written out again without the module's helpers."""
    days: dict[tuple[str, int], list[Print]] = defaultdict(list)
    for t in trades:
        days[("/".join(t.product.split("/")[:2]), t.time // DAY)].append(t)
    out = {}
    for k, ts in days.items():
        by_price = sorted(ts, key=lambda t: t.price)
        total = sum(t.qty for t in ts)
        cum, median = 0, 0
        for t in by_price:
            cum += t.qty
            if cum * 2 >= total:
                median = t.price
                break
        kept = [t for t in ts if abs(t.price - median) <= median / 2]
        vol = sum(t.qty for t in kept)
        if vol >= px.MIN_VOLUME and len(kept) >= px.MIN_TRADES:
            price = int(Decimal(sum(t.price * t.qty for t in kept)) / vol + Decimal("0.5"))
            out[k] = ("published", price, vol, len(kept))
        else:
            out[k] = ("no_index", 0, vol, len(kept))
    return out


# ---- generated markets ---------------------------------------------------------------


PRODUCTS = ["H100/us-east/2025-11-10T00", "H100/us-east/2025-11-10T01",
            "H100/eu-west/2025-11-10T00", "B200/us-east/2025-11-12T05"]


@st.composite
def markets(draw: Any) -> list[Print]:
    """Trades over a few days: some minutes busy, whole hours and days empty, days
    under the minimum volume, an outlier now and then, auction trades at one price."""
    n = draw(st.integers(0, 60))
    t = T0 + draw(st.integers(0, DAY))
    out = []
    for i in range(n):
        # mostly seconds apart; now and then an empty hour, or a day or two
        t += draw(st.sampled_from([0, 1, 7_000_000, 50 * MINUTE, 3 * HOUR, DAY, 2 * DAY]))
        base = draw(st.sampled_from([2_000_000, 2_100_000, 1_900_000]))
        price = base * draw(st.sampled_from([1, 1, 1, 1, 3])) + draw(st.integers(0, 5)) * 10_000
        out.append(Print(i + 1, t, draw(st.sampled_from(PRODUCTS)), price,
                         draw(st.sampled_from([1, 8, 40, 64])), draw(st.sampled_from([1, 2])),
                         draw(st.sampled_from([0, 0, 0, 7]))))
    return out


def rounds(trades: list[Print], cuts: list[int]) -> list[list[Print]]:
    out, start = [], 0
    for c in sorted(set(cuts)):
        out.append(trades[start:c])
        start = c
    out.append(trades[start:])
    return out


def market_bytes(trades: list[Print]) -> list[tuple[str, int, bytes]]:
    """A round's market data as the exchange publishes it: one batch per product."""
    batches: dict[str, list[Any]] = defaultdict(list)
    for t in trades:
        batches[t.product].append(pb.MarketData(product_id=t.product, trade=pb.Trade(
            trade_id=t.trade_id, price_micros=t.price, quantity=t.qty, aggressor=t.aggressor,
            time_micros=t.time, auction_id=t.auction_id)))
    return [(p, len(u), pb.MarketDataBatch(updates=u).SerializeToString())
            for p, u in batches.items()]


@settings(max_examples=60, deadline=None)
@given(trades=markets(), cuts=st.lists(st.integers(0, 60), max_size=6))
def test_the_tape_agrees_with_a_plain_recomputation(trades: list[Print], cuts: list[int]
                                                    ) -> None:
    d = Path(tempfile.mkdtemp())
    tape = Tape(d / TAPE)
    tape.start()
    try:
        for seq, part in enumerate(rounds(trades, cuts), 1):
            tape.offer(seq, part[-1].time if part else 0, rows_of(trades_of(market_bytes(part))))
        end = (trades[-1].time if trades else T0) // DAY * DAY + DAY  # the last day ended
        tape.wait(tape.tick(end))
        families = {px.family(p) for p in PRODUCTS}

        def read(db: Any) -> Any:
            tape_trades = {f: tp.query_trades(db, "", f, 0, pr.FAR, None, 10_000)
                           for f in families}
            cs = {(scope, w): tp.query_candles(db, scope, w, 0, pr.FAR, 100_000)
                  for scope in [*PRODUCTS, *families] for w in px.INTERVALS.values()}
            idx = {f: tp.query_index(db, f, 0, 10**6, 10_000) for f in families}
            return tape_trades, cs, idx, {f: tp.query_stats(db, f) for f in families}
        tape_trades, cs, idx, stats = tape.read_sync(read)
    finally:
        tape.close()

    # the tape: every trade, anonymised, newest first
    for f in families:
        mine = sorted((t for t in trades if px.family(t.product) == f),
                      key=lambda t: (t.time, t.trade_id), reverse=True)
        assert tape_trades[f] == mine
    # candles
    for w in px.INTERVALS.values():
        want = plain_candles(trades, w)
        got = {(scope, c.start): (c.open, c.high, c.low, c.close, c.volume, c.trades, c.vwap)
               for (scope, width), rows in cs.items() if width == w for c in rows}
        assert got == want
    # the index: every day from the family's first trading day to the last that ended,
    # a number only when the day reached the minimum
    want_idx = plain_index(trades)
    for f in families:
        rows = {r[0]: (r[2], r[3], r[4], r[5]) for r in idx[f]}
        days = [d for (fam, d) in want_idx if fam == f]
        if not days:
            assert rows == {}
            continue
        assert sorted(rows) == list(range(min(days), end // DAY))
        for day, got in rows.items():
            assert got == want_idx.get((f, day), ("no_index", 0, 0, 0))
    # the curve's trade side
    for f in families:
        for product, s in stats[f].items():
            mine = [t for t in trades if t.product == product]
            last = max(mine, key=lambda t: (t.time, t.trade_id))
            assert (s.volume, s.trades, s.last_price, s.last_qty) == (
                sum(t.qty for t in mine), len(mine), last.price, last.qty)
            auctions = [t for t in mine if t.auction_id]
            if auctions:
                a = max(t.auction_id for t in auctions)
                assert (s.auction_id, s.auction_qty) == (
                    a, sum(t.qty for t in auctions if t.auction_id == a))


def test_the_index_rules_at_their_edges() -> None:
    # under the minimum volume: no index, though there are trades
    assert px.index_of([(2_000_000, 99, 3)]).status == "no_index"
    assert px.index_of([(2_000_000, 100, 2)]).status == "no_index"
    v = px.index_of([(2_000_000, 50, 1), (2_000_001, 50, 1), (2_000_000, 1, 1)])
    assert (v.status, v.price, v.volume, v.trades) == ("published", 2_000_000, 101, 3)
    # an outlier beyond half the median away is left out, and said so
    v = px.index_of([(2_000_000, 100, 3), (9_000_000, 10, 1)])
    assert (v.price, v.excluded_volume, v.excluded_trades) == (2_000_000, 10, 1)
    # at the band's edge it counts; half a micro-dollar rounds up
    v = px.index_of([(2_000_000, 100, 3), (3_000_000, 1, 1)])
    assert v.excluded_trades == 0
    assert px.index_of([(2_000_000, 100, 3), (2_000_001, 100, 3)]).price == 2_000_001


# ---- through a server ------------------------------------------------------------------


NOW_HOUR = int(dt.datetime.now(dt.UTC).timestamp()) // 3600
SKU, REGION = "H100-SXM", "us-west"


def hour_id(h: int) -> str:
    return dt.datetime.fromtimestamp(h * 3600, dt.UTC).strftime("%Y-%m-%dT%H")


@pytest.fixture(scope="module")
def venue(running: Running) -> dict[str, Any]:
    op = Client(running.target, OPERATOR_TOKEN)
    seller = op.create_account("prices-seller", ["seller"])
    buyer = op.create_account("prices-buyer", ["buyer"])
    products = op.create_products(skus=[SKU], regions=[REGION], from_hour=NOW_HOUR + 3,
                                  to_hour=NOW_HOUR + 7, tick="0.01")
    s = Client(running.target, seller.token)
    s.register_capacity("sfo-1", sku=SKU, region=REGION,
                        nodes=[(f"n{i}", 8) for i in range(32)], from_hour=NOW_HOUR,
                        to_hour=NOW_HOUR + 24)
    b = Client(running.target, buyer.token)
    p0, p1 = products[0].product_id, products[1].product_id
    s.place_order(p0, "sell", "2.00", 120, cluster_id="sfo-1")
    s.place_order(p0, "sell", "2.20", 100, cluster_id="sfo-1")
    for q in (40, 40, 40, 8):
        b.place_order(p0, "buy", "2.20", q)
    s.place_order(p1, "sell", "3.00", 8, cluster_id="sfo-1")
    b.place_order(p1, "buy", "2.50", 16)
    return {"op": op, "seller": s, "buyer": b, "products": [p.product_id for p in products],
            "ids": (seller.account_id, buyer.account_id)}


def test_list_trades_is_the_anonymised_tape(venue: dict[str, Any]) -> None:
    b, p0 = venue["buyer"], venue["products"][0]
    trades = b.list_trades(p0)
    assert [(t.price, t.quantity, t.aggressor) for t in trades] == [
        (Decimal("2.20"), 8, "buy"), (Decimal("2.00"), 40, "buy"), (Decimal("2.00"), 40, "buy"),
        (Decimal("2.00"), 40, "buy")]
    assert [t.trade_id for t in trades] == sorted((t.trade_id for t in trades), reverse=True)
    fam = b.list_trades(sku=SKU, region=REGION, limit=None)
    assert fam == trades  # the other hour has not traded
    # paged: two at a time, the same trades
    assert b.list_trades(p0, limit=3) == trades[:3]
    raw = pb.ListTradesResponse.DESCRIPTOR
    assert not [f.name for f in pb.TapeTrade.DESCRIPTOR.fields if "account" in f.name]
    assert raw.fields_by_name["trades"]


def test_candles_curve_and_index_from_the_trades(venue: dict[str, Any]) -> None:
    b, p0 = venue["buyer"], venue["products"][0]
    trades = b.list_trades(p0)
    for interval in ("1m", "1h", "1d"):
        cs = b.list_candles(sku=SKU, region=REGION, interval=interval)
        assert sum(c.volume for c in cs) == 128
        assert sum(c.trades for c in cs) == 4
        assert min(c.low for c in cs) == Decimal("2.00")
        assert max(c.high for c in cs) == Decimal("2.20")
    day = b.list_candles(p0, interval="1d")
    assert [(c.open, c.close, c.vwap) for c in day] == [
        (Decimal("2.00"), Decimal("2.20"), Decimal("2.0125"))]

    curve = b.curve(SKU, REGION)
    assert [p.product_id for p in curve.points] == venue["products"]
    first, second = curve.points[0], curve.points[1]
    assert (first.last, first.last_quantity, first.volume, first.trades) == (
        Decimal("2.20"), 8, 128, 4)
    assert (first.bid, first.ask, first.ask_quantity) == (None, Decimal("2.20"), 92)
    assert (second.bid, second.bid_quantity, second.ask, second.last) == (
        Decimal("2.50"), 16, Decimal("3.00"), None)
    assert curve.points[2].volume == 0 and curve.points[2].auction_id == 0
    assert [p.hour for p in b.curve(SKU, REGION, from_hour=NOW_HOUR + 4,
                                    to_hour=NOW_HOUR + 6).points] == [NOW_HOUR + 4, NOW_HOUR + 5]

    today = b.index(SKU, REGION, dt.datetime.now(dt.UTC).date())
    want = px.index_of([(int(t.price * 1_000_000), t.quantity, 1) for t in trades])
    assert (today.status, today.volume, today.trades) == ("provisional", 128, 4)
    assert today.price == Decimal(want.price) / 1_000_000 == Decimal("2.0125")
    listed = b.list_index(SKU, REGION, to_day=dt.datetime.now(dt.UTC).date())
    assert listed == [today]
    yesterday = b.index(SKU, REGION)
    assert (yesterday.status, yesterday.price, yesterday.revision) == ("no_index", None, 0)


@pytest.mark.parametrize(("call", "reason", "code"), [
    (lambda b: b.list_trades(sku="A100", region=REGION), "UNKNOWN_SKU", "NOT_FOUND"),
    (lambda b: b.list_trades(sku=SKU, region="mars"), "UNKNOWN_REGION", "NOT_FOUND"),
    (lambda b: b.curve("A100", REGION), "UNKNOWN_SKU", "NOT_FOUND"),
    (lambda b: b.index(SKU, "mars"), "UNKNOWN_REGION", "NOT_FOUND"),
    (lambda b: b.list_candles(sku=SKU, region=REGION, interval="5m"), "INTERVAL_NOT_KEPT",
     "INVALID_ARGUMENT"),
    (lambda b: b.list_trades("H100-SXM/us-west/2020-01-01T00"), "UNKNOWN_PRODUCT",
     "NOT_FOUND"),
    (lambda b: b.list_trades("nope"), "INVALID_PRODUCT_ID", "INVALID_ARGUMENT"),
    (lambda b: b.index(SKU, REGION, "2999-01-01"), "INVALID_DAY", "INVALID_ARGUMENT"),
    (lambda b: b.index(SKU, REGION, "yesterday"), "INVALID_DAY", "INVALID_ARGUMENT"),
])
def test_bad_input_is_refused_with_one_reason(venue: dict[str, Any], call: Any, reason: str,
                                              code: str) -> None:
    with pytest.raises(RpcError) as e:
        call(venue["buyer"])
    assert (e.value.reason, e.value.code.name) == (reason, code)
    assert e.value.message
    if reason == "INTERVAL_NOT_KEPT":
        assert "1m, 1h, 1d" in e.value.message


def test_a_page_token_belongs_to_its_query(running: Running, venue: dict[str, Any]) -> None:
    from spotex._proto.spotex.v1 import spotex_pb2_grpc as pb_grpc

    p0, p1 = venue["products"][0], venue["products"][1]
    channel = grpc.insecure_channel(running.target)
    stub = pb_grpc.MarketStub(channel)
    md = (("authorization", f"Bearer {OPERATOR_TOKEN}"),)
    first = stub.ListTrades(pb.ListTradesRequest(product_id=p0, page_size=2), metadata=md)
    assert len(first.trades) == 2 and first.next_page_token
    rest = stub.ListTrades(pb.ListTradesRequest(product_id=p0, page_size=2,
                                                page_token=first.next_page_token), metadata=md)
    assert [t.trade_id for t in (*first.trades, *rest.trades)] == sorted(
        (t.trade_id for t in (*first.trades, *rest.trades)), reverse=True)
    for wrong in (pb.ListTradesRequest(product_id=p1, page_token=first.next_page_token),
                  pb.ListTradesRequest(product_id=p0, from_micros=1,
                                       page_token=first.next_page_token)):
        with pytest.raises(grpc.RpcError) as e:
            stub.ListTrades(wrong, metadata=md)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert dict(e.value.trailing_metadata())["spotex-reason"] == "PAGE_TOKEN_MISMATCH"
    with pytest.raises(grpc.RpcError) as e:
        stub.ListCandles(pb.ListCandlesRequest(product_id=p0, interval="1m",
                                               page_token=first.next_page_token), metadata=md)
    assert dict(e.value.trailing_metadata())["spotex-reason"] == "PAGE_TOKEN_MISMATCH"
    with pytest.raises(grpc.RpcError) as e:
        stub.ListTrades(pb.ListTradesRequest(product_id=p0, page_token="%%"), metadata=md)
    assert dict(e.value.trailing_metadata())["spotex-reason"] == "INVALID_ARGUMENT"
    channel.close()


# ---- the journal, replay and restarts ------------------------------------------------


class Clock:
    def __init__(self, t: int) -> None:
        self.t = t

    def __call__(self) -> int:
        self.t += 7
        return self.t


PID = "H100-SXM/us-east/2025-11-26T16"


def _trade_days(d: Path, clock: Clock, days: int = 3) -> EngineHost:
    """A venue that trades on several days (one under the minimum), then lets them end."""
    sys.path.insert(0, str(Path(__file__).parent))
    from test_durability import place

    def capacity(account: int) -> bytes:
        return pb.RegisterCapacityRequest(
            cluster_id=f"c{account}", sku="H100-SXM", region="us-east",
            nodes=[pb.Node(node_id=f"n{i}", gpus=8) for i in range(50)],
            from_hour=490_000, to_hour=490_100).SerializeToString()

    gw = EngineHost(clock=clock, data_dir=d, fsync="none", snapshot_every=10**9)

    def go() -> None:
        gw.create_product(PID, 10_000, 1, 490_047 * 3_600_000_000, clock.t)
        for account in (1, 2, 3):
            gw.register_capacity(account, capacity(account))
    gw.call(go)
    for day in range(days):
        clock.t = T0 + day * DAY + 3600 * 1_000_000

        def trade(n: int = 4 if day != 1 else 1) -> None:
            for i in range(n):
                place(gw, 1, "sell", 2_000_000 + 10_000 * i, 32)
                place(gw, 2, "buy", 2_000_000 + 10_000 * i, 32)
            place(gw, 3, "sell", 2_000_000, 8)
            place(gw, 2, "buy", 2_050_000, 8)
        gw.call(trade)
    clock.t = T0 + days * DAY + 1
    gw.call(gw.advance_time)
    return gw


def _published(gw: EngineHost) -> list[tuple[Any, ...]]:
    assert gw.tape is not None
    gw.tape.wait(gw.tape.tick(gw.now()))
    return gw.tape.read_sync(lambda db: tp.query_index(db, "H100-SXM/us-east", 0, 10**6, 100))


def test_replay_index_equals_the_published_index(tmp_path: Path) -> None:
    from spotex.cli import main

    gw = _trade_days(tmp_path, Clock(T0))
    published = _published(gw)
    gw.close()
    assert [r[2] for r in published] == ["published", "no_index", "published"]
    runner = CliRunner()
    out = runner.invoke(main, ["replay", str(tmp_path), "--index", "--csv"])
    assert out.exit_code == 0, out.output
    lines = out.output.strip().splitlines()
    assert lines[0] == "sku,region,day,status,price_usd,volume,trades,excluded_volume," \
        "excluded_trades,median_usd"
    rows = {line.split(",")[2]: line.split(",") for line in lines[1:]}
    for r in published:
        day = px.day_name(r[0])
        assert rows[day][3] == r[2]
        price = rows[day][4]
        assert (Decimal(price) * 1_000_000 if price else 0) == r[3]
        assert (int(rows[day][5]), int(rows[day][6])) == (r[4], r[5])


def test_a_restart_keeps_the_tape_and_a_lost_one_is_filled_from_the_journal(
        tmp_path: Path) -> None:
    clock = Clock(T0)
    gw = _trade_days(tmp_path, clock)
    before = gw.tape.read_sync(  # type: ignore[union-attr]
        lambda db: tp.query_trades(db, PID, "", 0, pr.FAR, None, 1000))
    published = _published(gw)
    gw.close()
    assert len(before) == 12

    back = EngineHost(clock=clock, data_dir=tmp_path, fsync="none")
    assert back.tape is not None
    assert back.tape.read_sync(
        lambda db: tp.query_trades(db, PID, "", 0, pr.FAR, None, 1000)) == before
    assert _published(back) == published
    back.close()

    # a crash between the journal write and the tape write: the tape lost its last
    # rounds; the start fills them in from the journal, and corrects nothing it had right
    db = tp.sqlite3.connect(tmp_path / TAPE)
    db.execute("DELETE FROM trades WHERE trade_id > 6")
    db.execute("UPDATE meta SET value = 5 WHERE key = 'seq'")
    db.commit()
    db.close()
    again = EngineHost(clock=clock, data_dir=tmp_path, fsync="none")
    assert again.tape is not None
    assert again.tape.read_sync(
        lambda db: tp.query_trades(db, PID, "", 0, pr.FAR, None, 1000)) == before
    again.close()


def test_a_correction_is_a_new_revision_that_names_what_it_replaced(tmp_path: Path) -> None:
    tape = Tape(tmp_path / TAPE)
    fam = "H100/us-east"
    trades = [Print(i, T0 + i, f"{fam}/2025-11-10T00", 2_000_000, 50, 1, 0) for i in (1, 2)]
    tape.start()
    tape.offer(1, T0 + 2, rows_of(trades_of(market_bytes(trades))))
    tape.wait(tape.tick(T0 + DAY))
    first = tape.read_sync(lambda db: tp.query_index(db, fam, D0, D0, 1))[0]
    tape.close()
    assert (first[1], first[2]) == (1, "no_index")  # two trades: under the minimum
    # the journal held a third trade of that day that the tape had not stored
    tape = Tape(tmp_path / TAPE)
    late = Print(3, T0 + 3, f"{fam}/2025-11-10T00", 2_300_000, 50, 1, 0)
    tape.fill([px.JournalTrade(2, late)], 2)
    tape.start()
    row = tape.read_sync(lambda db: tp.query_index(db, fam, D0, D0, 1))[0]
    tape.close()
    assert row[1:4] == (2, "published", 2_100_000)
    assert row[10:12] == (0, "no_index")
    got = pr.index_row("H100", "us-east", D0, row)
    assert (got.revision, got.previous_status) == (2, "no_index")


def test_the_cli_shows_curve_candles_trades_and_index(running: Running,
                                                       venue: dict[str, Any]) -> None:
    from spotex.cli import main

    base = ["--server", running.target, "--token", OPERATOR_TOKEN]
    runner = CliRunner()
    curve = runner.invoke(main, [*base, "curve", SKU, REGION])
    assert curve.exit_code == 0, curve.output
    assert venue["products"][0] in curve.output and "2.20" in curve.output
    got = runner.invoke(main, [*base, "--json", "candles", SKU, REGION, "--interval", "1d"])
    assert got.exit_code == 0, got.output
    assert '"volume": 128' in got.output
    trades = runner.invoke(main, [*base, "trades", venue["products"][0], "--limit", "2"])
    assert trades.exit_code == 0 and trades.output.count("2.20") + trades.output.count(
        "2.00") == 2, trades.output
    today = dt.datetime.now(dt.UTC).date().isoformat()
    got = runner.invoke(main, [*base, "index", SKU, REGION, "--to-day", today, "--csv"])
    assert got.exit_code == 0, got.output
    last = got.output.splitlines()[-1]
    assert last.startswith(f"{SKU},{REGION},{today},provisional,2.0125,128,4")
    bad = runner.invoke(main, [*base, "candles", SKU, REGION, "--interval", "5m"])
    assert bad.exit_code != 0
    assert "INTERVAL_NOT_KEPT" in bad.output and "1m, 1h, 1d" in bad.output


def test_a_shard_gateway_routes_the_price_calls_to_the_family_s_shard(tmp_path: Path
                                                                       ) -> None:
    from test_shards import market, pid, venue

    with venue(tmp_path) as v:
        _, seller, buyer = market(v)
        for sku in ("H100", "B200"):
            seller.place_order(pid(sku), "sell", "2.00", 16, cluster_id=f"{sku}-c")
            buyer.place_order(pid(sku), "buy", "2.50", 8, gang=8)
        for sku, shard in (("H100", 1), ("B200", 2)):
            tape = buyer.list_trades(sku=sku, region="us-east")
            assert [(t.price, t.quantity, t.trade_id >> 48) for t in tape] == [
                (Decimal("2.00"), 8, shard)]
            assert buyer.list_trades(pid(sku)) == tape
            curve = buyer.curve(sku, "us-east")
            assert [p.product_id for p in curve.points] == [pid(sku, h) for h in range(3)]
            assert (curve.points[0].last, curve.points[0].ask) == (Decimal("2.00"),
                                                                 Decimal("2.00"))
            assert [c.volume for c in buyer.list_candles(sku=sku, region="us-east")] == [8]
            assert buyer.index(sku, "us-east").status == "no_index"
        with pytest.raises(RpcError) as e:
            buyer.list_candles(pid("H100"), interval="2h")
        assert e.value.reason == "INTERVAL_NOT_KEPT"
