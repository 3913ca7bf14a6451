//! orderbook-rs on the flow, emulating spotex's semantics with its API.
//!
//! What orderbook-rs 0.15.3 does, as read in its source (and pricelevel 0.10.2's):
//! - Order ids are chosen by the caller: `Id::Sequential(u64)` carries the stream's
//!   order id itself, so trades name the stream's ids and no mapping is needed.
//! - Price-time priority: levels in a skip map, best first; within a level a FIFO queue
//!   by insertion sequence (a partially filled maker keeps its place). Every trade is at
//!   the level's, i.e. the maker's, price.
//! - `TimeInForce::Ioc` matches what crosses and drops the rest, as spotex does; the
//!   dropped rest surfaces as `Err(InsufficientLiquidity)`, with the trades that did
//!   happen only on the trade listener or in the `SubmitFailure` of
//!   `add_order_with_committed`, which is what this adapter submits with.
//! - `cancel_order` of an id that is not resting returns `Ok(None)`: a refusal.
//! - An amend is emulated as `cancel_order` + a new GTC order under the same id, at the
//!   new price with the new quantity: the order loses its place and re-enters as a
//!   taker, as in spotex. (orderbook-rs's own `update_order(UpdatePriceAndQuantity)` is
//!   the same cancel + re-add internally, but reports its trades on the listener only.)
//!   Every amend in the flow moves its order's price, to a positive one, with a positive
//!   quantity (checked before timing): spotex keeps the place of an order whose amend
//!   keeps the price, which cancel + add would not reproduce.
//! - Self-trade prevention stays off (its default): the flow's buyers and sellers are
//!   never the same account.

use std::time::{Duration, Instant};

use orderbook_rs::{Id, OrderBook, OrderBookError, OrderType, Side, TimeInForce, TimestampMs};
use pricelevel::{Hash32, Price, Quantity};
use spotex_core::{Command, OrderType as SpotexOrderType, TimeInForce as SpotexTif, Timestamp};

use crate::report::Line;

/// One message of the flow in orderbook-rs terms, translated before timing.
#[derive(Clone, Copy, Debug)]
pub enum Op {
    Place {
        id: u64,
        side: Side,
        price: u128,
        qty: u64,
        tif: TimeInForce,
        at: TimestampMs,
    },
    Cancel {
        id: u64,
    },
    Amend {
        id: u64,
        price: u128,
        qty: u64,
        at: TimestampMs,
    },
}

/// Translates the decoded flow. Places get the stream's order ids 1, 2, 3, ... in
/// order, as spotex assigns them. Panics on anything the adapter cannot express
/// faithfully, so a change in the flow cannot silently skew the comparison.
pub fn translate(cmds: &[(Timestamp, Command)]) -> Vec<Op> {
    // current price of each order by id (index 0 unused): to check that every amend
    // changes its order's price, the only kind that cancel + add reproduces (spotex
    // keeps the place of an order whose amend only lowers its quantity)
    let mut price_of: Vec<i64> = vec![0];
    let millis = |ts: Timestamp| {
        TimestampMs::new(u64::try_from(ts / 1_000).expect("the flow's times are positive"))
    };
    cmds.iter()
        .map(|(ts, cmd)| match cmd {
            Command::Place(o) => {
                assert!(
                    o.order_type == SpotexOrderType::Limit && o.gang <= 1 && !o.post_only,
                    "the adapter handles plain limit orders only: {o:?}"
                );
                let tif = match o.tif {
                    SpotexTif::GoodTillClose => TimeInForce::Gtc,
                    SpotexTif::ImmediateOrCancel => TimeInForce::Ioc,
                    other => panic!("time in force {other:?} is not in the flow"),
                };
                let id = price_of.len() as u64;
                price_of.push(o.price);
                Op::Place {
                    id,
                    side: match o.side {
                        spotex_core::Side::Buy => Side::Buy,
                        spotex_core::Side::Sell => Side::Sell,
                    },
                    price: u128::try_from(o.price).expect("places have positive prices"),
                    qty: u64::try_from(o.qty).expect("places have positive quantities"),
                    tif,
                    at: millis(*ts),
                }
            }
            Command::Cancel { order_id, .. } => Op::Cancel { id: *order_id },
            Command::Amend {
                order_id,
                price: Some(price),
                qty: Some(qty),
                ..
            } => {
                // an order never placed is refused by both engines
                if let Some(current) = price_of.get_mut(*order_id as usize) {
                    assert_ne!(
                        *current, *price,
                        "amend of order {order_id} keeps its price"
                    );
                    *current = *price;
                }
                Op::Amend {
                    id: *order_id,
                    price: u128::try_from(*price)
                        .expect("amends have positive prices (checked when decoding)"),
                    qty: u64::try_from(*qty)
                        .expect("amends have positive quantities (checked when decoding)"),
                    at: millis(*ts),
                }
            }
            other => panic!("command not in the flow: {other:?}"),
        })
        .collect()
}

/// One run: a fresh book, then the timed loop over every operation. Trades and refusals
/// go to `lines`; the book is dropped after timing.
pub fn timed_run(ops: &[Op], lines: &mut Vec<Line>) -> Duration {
    let book: OrderBook<()> = OrderBook::new("GPU-HOUR");
    lines.clear();

    let start = Instant::now();
    for op in ops {
        match *op {
            Op::Place {
                id,
                side,
                price,
                qty,
                tif,
                at,
            } => submit(&book, id, side, price, qty, tif, at, lines),
            Op::Cancel { id } => {
                if cancel(&book, id).is_none() {
                    lines.push(Line::Refused { order: id });
                }
            }
            Op::Amend { id, price, qty, at } => match cancel(&book, id) {
                Some(side) => submit(&book, id, side, price, qty, TimeInForce::Gtc, at, lines),
                None => lines.push(Line::Refused { order: id }),
            },
        }
    }
    start.elapsed()
}

/// Cancels a resting order; its side if it was live, `None` if not.
fn cancel(book: &OrderBook<()>, id: u64) -> Option<Side> {
    book.cancel_order(Id::Sequential(id))
        .unwrap_or_else(|e| panic!("orderbook-rs failed to cancel order {id}: {e}"))
        .map(|order| order.side())
}

/// Submits a limit order (matching it, then resting a GTC remainder) and records its trades.
#[allow(clippy::too_many_arguments)]
fn submit(
    book: &OrderBook<()>,
    id: u64,
    side: Side,
    price: u128,
    qty: u64,
    tif: TimeInForce,
    at: TimestampMs,
    lines: &mut Vec<Line>,
) {
    let order = OrderType::Standard {
        id: Id::Sequential(id),
        price: Price::new(price),
        quantity: Quantity::new(qty),
        side,
        user_id: Hash32::zero(),
        timestamp: at,
        time_in_force: tif,
        extra_fields: (),
    };
    let outcome = book.add_order_with_committed(order);
    let trades = match &outcome {
        Ok((_, trades)) => trades.as_ref(),
        // an IOC whose rest was dropped: the trades it made come with the "error"
        Err(failure)
            if tif.is_immediate()
                && matches!(failure.error, OrderBookError::InsufficientLiquidity { .. }) =>
        {
            failure.committed.as_deref()
        }
        Err(failure) => panic!("orderbook-rs refused order {id}: {}", failure.error),
    };
    let Some(trades) = trades else { return };
    for t in trades.match_result.trades().as_vec() {
        lines.push(Line::Trade {
            taker: stream_id(t.taker_order_id()),
            maker: stream_id(t.maker_order_id()),
            // both came from the flow's i64 values
            price: t.price().as_u128() as i64,
            qty: t.quantity().as_u64() as i64,
        });
    }
}

/// The stream's order id inside an orderbook-rs id (the adapter only makes sequential ids).
fn stream_id(id: Id) -> u64 {
    match id {
        Id::Sequential(n) => n,
        other => panic!("orderbook-rs reported an id the adapter never made: {other}"),
    }
}
