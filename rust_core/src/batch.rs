//! The batch codec: fixed 64-byte little-endian records for bulk order entry and the
//! events they produce, so a caller can hand over millions of commands in one buffer.
//!
//! Command record:
//!
//! | offset | type | field |
//! |---|---|---|
//! | 0 | u8 | kind: 1 place, 2 cancel, 3 amend, 4 advance time |
//! | 1 | u8 | side: 0 buy, 1 sell |
//! | 2 | u8 | order type: 0 limit, 1 market |
//! | 3 | u8 | time in force: 0 GTC, 1 GTD, 2 IOC, 3 FOK |
//! | 4 | u8 | post only: 0 or 1 |
//! | 5 | u8 | self-trade prevention: 0 cancel newest, 1 cancel oldest, 2 cancel both |
//! | 6 | u8 | gang (0 means 1) |
//! | 7 | u8 | reserved, 0 |
//! | 8 | u32 | product handle |
//! | 12 | u32 | cluster handle (`u32::MAX` = none) |
//! | 16 | u64 | account |
//! | 24 | u64 | order id (cancel, amend) |
//! | 32 | i64 | price (amend: 0 = unchanged) |
//! | 40 | i64 | quantity (amend: 0 = unchanged) |
//! | 48 | i64 | timestamp |
//! | 56 | i64 | good-till-time expiry (GTD only) |
//!
//! Event record:
//!
//! | offset | type | field |
//! |---|---|---|
//! | 0 | u32 | index of the command in the batch |
//! | 4 | u8 | kind: 1 accepted, 2 rejected, 3 trade, 4 cancelled, 5 expired, 6 amended, 7 allocated, 8 other |
//! | 5 | u8 | code: reject reason (index into [`Reject::ALL`]), cancel or expiry reason, amend: 1 if priority kept |
//! | 6 | u8 | side (trade: the aggressor's) |
//! | 7 | u8 | reserved |
//! | 8 | u64 | order id (trade: taker order; allocation: buy order) |
//! | 16 | u64 | account (trade: taker; allocation: buyer) |
//! | 24 | u64 | trade: maker order; allocation: trade id |
//! | 32 | u64 | trade: maker account; allocation: seller |
//! | 40 | i64 | price |
//! | 48 | i64 | quantity |
//! | 56 | u32 | product handle |
//! | 60 | u32 | allocation: cluster handle |

use crate::command::*;
use crate::engine::Engine;
use crate::reject::Reject;
use crate::types::*;

pub const RECORD: usize = 64;

pub mod kind {
    pub const PLACE: u8 = 1;
    pub const CANCEL: u8 = 2;
    pub const AMEND: u8 = 3;
    pub const ADVANCE_TIME: u8 = 4;
}

pub mod event_kind {
    pub const ACCEPTED: u8 = 1;
    pub const REJECTED: u8 = 2;
    pub const TRADE: u8 = 3;
    pub const CANCELLED: u8 = 4;
    pub const EXPIRED: u8 = 5;
    pub const AMENDED: u8 = 6;
    pub const ALLOCATED: u8 = 7;
    pub const OTHER: u8 = 8;
}

fn u32_at(r: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(r[o..o + 4].try_into().unwrap())
}
fn u64_at(r: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(r[o..o + 8].try_into().unwrap())
}
fn i64_at(r: &[u8], o: usize) -> i64 {
    i64::from_le_bytes(r[o..o + 8].try_into().unwrap())
}

/// Decodes one 64-byte command record into its timestamp and command.
pub fn decode_command(r: &[u8]) -> Result<(Timestamp, Command), Reject> {
    let bad = Reject::InvalidBatchRecord;
    if r.len() != RECORD {
        return Err(bad);
    }
    let ts = i64_at(r, 48);
    let account = u64_at(r, 16);
    let order_id = u64_at(r, 24);
    let price = i64_at(r, 32);
    let qty = i64_at(r, 40);
    let cmd = match r[0] {
        kind::PLACE => {
            let side = match r[1] {
                0 => Side::Buy,
                1 => Side::Sell,
                _ => return Err(bad),
            };
            let order_type = match r[2] {
                0 => OrderType::Limit,
                1 => OrderType::Market,
                _ => return Err(bad),
            };
            let tif = match r[3] {
                0 => TimeInForce::GoodTillClose,
                1 => TimeInForce::GoodTillTime(i64_at(r, 56)),
                2 => TimeInForce::ImmediateOrCancel,
                3 => TimeInForce::FillOrKill,
                _ => return Err(bad),
            };
            let post_only = match r[4] {
                0 => false,
                1 => true,
                _ => return Err(bad),
            };
            let stp = match r[5] {
                0 => SelfTradePrevention::CancelNewest,
                1 => SelfTradePrevention::CancelOldest,
                2 => SelfTradePrevention::CancelBoth,
                _ => return Err(bad),
            };
            let cluster = match u32_at(r, 12) {
                u32::MAX => None,
                c => Some(c),
            };
            Command::Place(NewOrder {
                account,
                product: u32_at(r, 8),
                side,
                order_type,
                price,
                qty,
                tif,
                post_only,
                stp,
                cluster,
                gang: r[6].max(1) as u32,
            })
        }
        kind::CANCEL => Command::Cancel { account, order_id },
        kind::AMEND => Command::Amend {
            account,
            order_id,
            price: (price != 0).then_some(price),
            qty: (qty != 0).then_some(qty),
        },
        kind::ADVANCE_TIME => Command::AdvanceTime,
        _ => return Err(bad),
    };
    Ok((ts, cmd))
}

/// Encodes a place command as a record (used by tests and Rust benchmarks).
pub fn encode_place(o: &NewOrder, ts: Timestamp) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[0] = kind::PLACE;
    r[1] = o.side as u8;
    r[2] = match o.order_type {
        OrderType::Limit => 0,
        OrderType::Market => 1,
    };
    let (tif, at) = match o.tif {
        TimeInForce::GoodTillClose => (0, 0),
        TimeInForce::GoodTillTime(t) => (1, t),
        TimeInForce::ImmediateOrCancel => (2, 0),
        TimeInForce::FillOrKill => (3, 0),
    };
    r[3] = tif;
    r[4] = o.post_only as u8;
    r[5] = o.stp as u8;
    r[6] = o.gang as u8;
    r[8..12].copy_from_slice(&o.product.to_le_bytes());
    r[12..16].copy_from_slice(&o.cluster.unwrap_or(u32::MAX).to_le_bytes());
    r[16..24].copy_from_slice(&o.account.to_le_bytes());
    r[32..40].copy_from_slice(&o.price.to_le_bytes());
    r[40..48].copy_from_slice(&o.qty.to_le_bytes());
    r[48..56].copy_from_slice(&ts.to_le_bytes());
    r[56..64].copy_from_slice(&at.to_le_bytes());
    r
}

/// Encodes a cancel (`kind::CANCEL`) or amend (`kind::AMEND`) record.
pub fn encode_order_command(
    kind: u8,
    account: AccountId,
    order_id: OrderId,
    price: Price,
    qty: Qty,
    ts: Timestamp,
) -> [u8; RECORD] {
    let mut r = [0u8; RECORD];
    r[0] = kind;
    r[16..24].copy_from_slice(&account.to_le_bytes());
    r[24..32].copy_from_slice(&order_id.to_le_bytes());
    r[32..40].copy_from_slice(&price.to_le_bytes());
    r[40..48].copy_from_slice(&qty.to_le_bytes());
    r[48..56].copy_from_slice(&ts.to_le_bytes());
    r
}

#[allow(clippy::too_many_arguments)]
#[inline]
fn push_event(
    out: &mut Vec<u8>,
    index: u32,
    kind: u8,
    code: u8,
    side: u8,
    a: u64,
    b: u64,
    c: u64,
    d: u64,
    price: i64,
    qty: i64,
    product: u32,
    cluster: u32,
) {
    // one stack record, one append: cheaper than eleven bounds-checked appends
    let mut r = [0u8; RECORD];
    r[0..4].copy_from_slice(&index.to_le_bytes());
    r[4..8].copy_from_slice(&[kind, code, side, 0]);
    r[8..16].copy_from_slice(&a.to_le_bytes());
    r[16..24].copy_from_slice(&b.to_le_bytes());
    r[24..32].copy_from_slice(&c.to_le_bytes());
    r[32..40].copy_from_slice(&d.to_le_bytes());
    r[40..48].copy_from_slice(&price.to_le_bytes());
    r[48..56].copy_from_slice(&qty.to_le_bytes());
    r[56..60].copy_from_slice(&product.to_le_bytes());
    r[60..64].copy_from_slice(&cluster.to_le_bytes());
    out.extend_from_slice(&r);
}

pub fn reject_index(r: Reject) -> u8 {
    Reject::ALL
        .iter()
        .position(|x| *x == r)
        .unwrap_or(u8::MAX as usize) as u8
}

/// Appends the records of one command's events.
pub fn encode_events(engine: &Engine, index: u32, events: &[Event], out: &mut Vec<u8>) {
    for e in events {
        match e {
            Event::Accepted {
                order_id,
                account,
                product,
                side,
                price,
                qty,
            } => push_event(
                out,
                index,
                event_kind::ACCEPTED,
                0,
                *side as u8,
                *order_id,
                *account,
                0,
                0,
                *price,
                *qty,
                *product,
                0,
            ),
            Event::Rejected { reason } => push_event(
                out,
                index,
                event_kind::REJECTED,
                reject_index(*reason),
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
            ),
            Event::Trade {
                product,
                price,
                qty,
                aggressor,
                maker_order,
                maker_account,
                taker_order,
                taker_account,
                ..
            } => push_event(
                out,
                index,
                event_kind::TRADE,
                0,
                *aggressor as u8,
                *taker_order,
                *taker_account,
                *maker_order,
                *maker_account,
                *price,
                *qty,
                *product,
                0,
            ),
            Event::Cancelled {
                order_id,
                account,
                product,
                qty,
                reason,
            } => push_event(
                out,
                index,
                event_kind::CANCELLED,
                *reason as u8,
                0,
                *order_id,
                *account,
                0,
                0,
                0,
                *qty,
                *product,
                0,
            ),
            Event::Expired {
                order_id,
                account,
                product,
                qty,
                reason,
            } => push_event(
                out,
                index,
                event_kind::EXPIRED,
                *reason as u8,
                0,
                *order_id,
                *account,
                0,
                0,
                0,
                *qty,
                *product,
                0,
            ),
            Event::Amended {
                order_id,
                account,
                product,
                price,
                qty,
                priority_kept,
            } => push_event(
                out,
                index,
                event_kind::AMENDED,
                *priority_kept as u8,
                0,
                *order_id,
                *account,
                0,
                0,
                *price,
                *qty,
                *product,
                0,
            ),
            Event::Allocated { allocation } => {
                let a = &engine.allocations()[*allocation as usize];
                push_event(
                    out,
                    index,
                    event_kind::ALLOCATED,
                    0,
                    0,
                    a.buy_order,
                    a.buyer,
                    a.trade_id,
                    a.seller,
                    a.price,
                    a.qty(),
                    a.product,
                    a.cluster,
                )
            }
            _ => push_event(out, index, event_kind::OTHER, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
        }
    }
}

/// Applies every record of `records` in order and appends their event records to `out`.
/// A malformed record is rejected (`InvalidBatchRecord`) like any other bad command.
/// Returns the number of commands applied; `records.len()` must be a multiple of 64.
pub fn apply_batch(
    engine: &mut Engine,
    records: &[u8],
    out: &mut Vec<u8>,
) -> Result<usize, Reject> {
    if records.len() % RECORD != 0 {
        return Err(Reject::InvalidBatchRecord);
    }
    let mut events = Vec::with_capacity(16);
    for (index, r) in records.chunks_exact(RECORD).enumerate() {
        events.clear();
        let _ = apply_record(engine, r, &mut events);
        encode_events(engine, index as u32, &events, out);
    }
    Ok(records.len() / RECORD)
}

/// Decodes and applies one record; a malformed record is rejected like a bad command
/// (one `Rejected` event, nothing changes, time does not move).
pub fn apply_record(
    engine: &mut Engine,
    record: &[u8],
    events: &mut Vec<Event>,
) -> Result<(), Reject> {
    match decode_command(record) {
        Ok((ts, cmd)) => engine.apply(ts, &cmd, events),
        Err(reason) => {
            events.push(Event::Rejected { reason });
            Err(reason)
        }
    }
}
