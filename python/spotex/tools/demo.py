"""A demo market: a real server on loopback, two sellers listing H100 and H200 capacity,
three buyers bidding (some for whole 8-GPU nodes), all through the SDK. Prints the book,
the trades and the GPUs each buyer got, and the tokens to connect with while it runs.
Then a day-ahead block auction over later hours: training runs bid blocks as auction
orders against the sellers' asks, and one auction clears them at one price per hour."""

from __future__ import annotations

import asyncio
import collections
import random
import secrets
import threading
import time
from decimal import Decimal
from typing import Any

from rich.console import Console
from rich.progress import track
from rich.table import Table

from spotex.client import Client, RpcError
from spotex.server.ledger import MoneySettings
from spotex.server.service import Server

SELLERS = {"hyperscaler": ("iad-1", 16), "neocloud": ("iad-7", 6)}
BUYERS = ["startup", "lab", "enterprise"]
# spot price ranges per GPU-hour, 2026 market
PRICES = {"H100-SXM": (Decimal("1.80"), Decimal("2.60")),
          "H200": (Decimal("2.80"), Decimal("4.50"))}


def start_server(listen: str, operator_token: str) -> tuple[Server, asyncio.AbstractEventLoop]:
    loop = asyncio.new_event_loop()
    box: dict[str, Server] = {}
    ready = threading.Event()

    def main() -> None:
        asyncio.set_event_loop(loop)

        async def boot() -> None:
            # a venue with fees: the maker pays 5 bps, the taker 10
            box["s"] = await Server.start(listen, None, operator_token,
                                          money=MoneySettings(0, 5, 10))
            ready.set()
        loop.run_until_complete(boot())
        loop.run_forever()
    threading.Thread(target=main, daemon=True, name="spotex-server").start()
    if not ready.wait(30):
        raise RuntimeError("server did not start")
    return box["s"], loop


def book_rows(bids: Any, asks: Any) -> list[tuple[str, str, str, str]]:
    """Side-by-side rows of (price, qty, orders) levels, prices in dollars."""
    def px(micros: int) -> str:
        return f"{Decimal(micros) / 1_000_000:.2f}"
    rows = []
    for i in range(max(len(bids), len(asks))):
        b = bids[i] if i < len(bids) else None
        a = asks[i] if i < len(asks) else None
        rows.append((str(b[1]) if b else "", px(b[0]) if b else "",
                     px(a[0]) if a else "", str(a[1]) if a else ""))
    return rows


def book_table(client: Client, product_id: str, depth: int = 8) -> Table:
    book = client.get_book(product_id, depth=depth)
    t = Table("bid GPUs", "bid $", "ask $", "ask GPUs",
              title=f"{product_id}  (sequence {book.sequence})")

    def levels(xs: Any) -> list[tuple[int, int, int]]:
        return [(int(x.price * 1_000_000), x.quantity, x.orders) for x in xs]
    for row in book_rows(levels(book.bids), levels(book.asks)):
        t.add_row(*row)
    return t


def auction_demo(op: Client, sellers: dict[str, Client], buyers: dict[str, Client],
                 now_hour: int, console: Console) -> None:
    """Eight later hours of H100s, held for their auction: the sellers' asks rest, the
    training runs bid blocks, one auction clears them; prints what it decided."""
    from spotex.extras import available

    if not available("highspy"):
        console.print("[dim]block auctions need the optimiser: pip install "
                      "'spotex\\[auction]'[/dim]")  # an escaped bracket, not markup
        return
    first = now_hour + 12
    ids = [p.product_id for p in op.create_products(
        skus=["H100-SXM"], regions=["us-east"], from_hour=first, to_hour=first + 8)]
    for name, (cluster, nodes) in SELLERS.items():
        for k, pid in enumerate(ids):
            sellers[name].place_order(pid, "sell", f"{1.90 + 0.05 * (k % 3):.2f}", 8 * nodes // 2,
                                      cluster_id=f"{cluster}-h100-sxm")
    runs = [("startup", 0, 6, 8, "2.30"), ("lab", 1, 6, 64, "2.60"),
            ("enterprise", 2, 4, 32, "2.45"), ("startup", 4, 4, 48, "2.20")]
    placed = {}
    for name, start, hours, gpus, price in runs:
        o = buyers[name].place_order(ids[start], "buy", price, gpus, gang=8, hours=hours,
                                     auction=True)
        placed[o.order_id] = (name, ids[start], hours, gpus, price)
    r = op.run_auction(first, first + 8, time_limit=5)
    t = Table(title=f"day-ahead block auction {r.auction_id}: training runs, decided together")
    for col in ("buyer", "from (UTC)", "hours", "GPUs", "limit $", "filled"):
        t.add_column(col, overflow="fold")
    for oid, (name, pid, hours, gpus, price) in placed.items():
        t.add_row(name, pid.rsplit("/", 1)[1], str(hours), str(gpus), price,
                  "yes" if oid in r.filled_orders else "no")
    console.print(t)
    prices = ", ".join(f"{p.product_id[-2:]}h ${p.price:.2f}" for p in r.prices)
    console.print(f"clearing prices (one per hour): {prices or 'none'}; welfare "
                  f"${r.welfare:.2f}, solved in {r.solve_seconds:.2f} s (gap {r.gap:.4f})")


def run_demo(listen: str = "127.0.0.1:50551", rounds: int = 300, seed: int = 7,
             linger: float = 0.0, console: Console | None = None) -> None:
    console = console or Console()
    rng = random.Random(seed)
    op_token = secrets.token_urlsafe(16)
    server, loop = start_server(listen, op_token)
    target = f"127.0.0.1:{server.port}"
    op = Client(target, op_token)
    now_hour = int(time.time()) // 3600
    products = op.create_products(skus=list(PRICES), regions=["us-east"],
                                  from_hour=now_hour + 2, to_hour=now_hour + 8)
    sellers = {}
    for name, (cluster, nodes) in SELLERS.items():
        acct = op.create_account(name, ["seller"])
        c = Client(target, acct.token)
        for sku in PRICES:
            c.register_capacity(f"{cluster}-{sku.lower()}", sku=sku, region="us-east",
                                nodes=[(f"node-{i:03}", 8) for i in range(nodes)],
                                from_hour=now_hour, to_hour=now_hour + 24)
        sellers[name] = c
    buyers = {}
    tokens = {"operator": op_token}
    for name in BUYERS:
        acct = op.create_account(name, ["buyer"])
        buyers[name] = Client(target, acct.token)
        tokens[name] = acct.token
        # a buyer's bids need money behind them: the operator deposits some
        op.deposit(acct.account_id, "20000", f"demo-{name}")

    refused: collections.Counter[str] = collections.Counter()
    for _ in track(range(rounds), description="trading", console=console):
        p = rng.choice(products)
        sku = p.product_id.split("/")[0]
        lo, hi = PRICES[sku]
        price = (lo + (hi - lo) * Decimal(rng.random())).quantize(Decimal("0.01"))
        try:
            if rng.random() < 0.45:
                name = rng.choice(list(sellers))
                sellers[name].place_order(p.product_id, "sell", price, rng.choice([4, 8, 8, 16]),
                                          cluster_id=f"{SELLERS[name][0]}-{sku.lower()}")
            else:
                gang = rng.choice([1, 1, 8])
                buyers[rng.choice(BUYERS)].place_order(p.product_id, "buy", price - lo / 10,
                                                       gang * rng.randint(1, 3), gang=gang)
        except RpcError as err:
            refused[err.reason] += 1

    busiest = max(products, key=lambda p: len(op.get_book(p.product_id, 50).asks))
    console.print(book_table(op, busiest.product_id))
    shown = op.get_book(busiest.product_id, 1)
    if shown.bids and shown.asks and shown.bids[0].price >= shown.asks[0].price:
        from spotex.server.replay import CROSSED_NOTE

        console.print(f"[dim]{CROSSED_NOTE}[/dim]")
    t = Table(title="allocations (most recent)")
    for col in ("buyer", "product", "cluster", "GPUs", "$/GPU-h", "where"):
        t.add_column(col, overflow="fold")  # ids and GPU lists whole, not cut short
    rows = [(n, a) for n, c in buyers.items() for a in c.list_allocations()]
    rows.sort(key=lambda x: x[1].trade_id)
    for name, a in rows[-10:]:
        where = ", ".join(f"{node}[{','.join(map(str, g))}]" for node, g in a.slots)
        t.add_row(name, a.product_id, a.cluster_id, str(a.quantity), f"{a.price:.2f}", where)
    console.print(t)
    auction_demo(op, sellers, buyers, now_hour, console)
    money = Table(title="money (current balance; the venue's fee account first)")
    for col in ("account", "current", "held by live bids", "available"):
        money.add_column(col)
    fees = op.balance()
    money.add_row("venue fees", f"{fees.current:.2f}", "", "")
    for name, c in buyers.items():
        b = c.balance()
        money.add_row(name, f"{b.current:.2f}", f"{b.holds:.2f}", f"{b.available:.2f}")
    for name, c in sellers.items():
        b = c.balance()
        money.add_row(name, f"{b.current:.2f}", "", "")
    console.print(money)
    seq, h = op.state_hash()
    why = ", ".join(f"{n} {reason}" for reason, n in refused.most_common())
    console.print(f"{len(rows)} trades, {sum(refused.values())} orders refused"
                  f"{f' ({why})' if why else ''}; sequence {seq}, state hash {h[:16]}...")
    console.print("[dim]a refusal is the server saying why (here: asks for more GPUs than "
                  "a cluster has free); the sequence counts the commands applied, and the "
                  "state hash is what a replay of the same commands reproduces[/dim]")
    if linger:
        console.print(f"server on {target} for {linger:.0f}s more; tokens:")
        for name, tok in tokens.items():
            console.print(f"  {name:<11} {tok}")
        time.sleep(linger)
    asyncio.run_coroutine_threadsafe(server.stop(1.0), loop).result(10)
    console.print("next: run a server of your own and open its web page:\n"
                  "  spotex serve --operator-token op-secret --web-listen 127.0.0.1:9552 &\n"
                  "  open http://127.0.0.1:9552/#token=op-secret  (the README's first look "
                  "lists products and trades on it; `spotex --help` lists every command)")
