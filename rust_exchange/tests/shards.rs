//! A shard's id base: its orders and trades are numbered from `index << 48`, so two
//! shards never give the same id, and the base is journaled like any command.

use spotex_core::product::format_hour;
use spotex_exchange::{pb, Exchange};

mod common;
use common::*;

const BASE: u64 = 3 << 48;

fn pid(hour: i64) -> String {
    format!("H100/us-east/{}", format_hour(hour))
}

fn order(side: pb::Side, qty: i64) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        product_id: pid(H0),
        side: side as i32,
        price_micros: 2_000_000,
        quantity: qty,
        cluster_id: if side == pb::Side::Sell {
            "c0".into()
        } else {
            String::new()
        },
        ..Default::default()
    }
}

fn market(base: Option<u64>) -> Exchange {
    let mut ex = Exchange::new(10_000);
    if let Some(base) = base {
        ex.set_id_base(T0, base).unwrap();
    }
    ex.create_product(T0, &pid(H0), 10_000, 1, H0 * HOUR - HOUR, None, false)
        .unwrap();
    ex.register_capacity(T0, seller(1), &capacity("c0", "H100", 2, H0, H0 + 1))
        .unwrap();
    ex
}

#[test]
fn orders_and_trades_are_numbered_from_the_base_and_replay_keeps_it() {
    let mut ex = market(Some(BASE));
    let ask = ex
        .place_order(T0, seller(1), &order(pb::Side::Sell, 16))
        .unwrap();
    let bid = ex
        .place_order(T0, buyer(2), &order(pb::Side::Buy, 8))
        .unwrap();
    assert_eq!((ask.order_id, bid.order_id), (BASE, BASE + 1));
    assert_eq!(bid.fills[0].trade_id, BASE);
    assert_eq!(ex.next_ids(), (BASE + 2, BASE + 1));

    let mut again = Exchange::new(10_000);
    for e in ex.take_journal() {
        again.replay(e.seq, e.ts, &e.command).unwrap();
    }
    assert_eq!(again.state_hash(), ex.state_hash());
    assert_eq!(again.next_ids(), ex.next_ids());
    let back = Exchange::restore(&ex.snapshot(), 10_000).unwrap();
    assert_eq!(back.next_ids(), ex.next_ids());
}

#[test]
fn the_base_is_refused_once_ids_are_given_and_changes_nothing() {
    let mut ex = market(None);
    ex.place_order(T0, seller(1), &order(pb::Side::Sell, 8))
        .unwrap();
    let hash = ex.state_hash();
    let err = ex.set_id_base(T0, BASE).unwrap_err();
    assert_eq!(err.reason, "IDS_IN_USE");
    assert_eq!(ex.state_hash(), hash);
    assert_eq!(ex.next_ids(), (2, 1));

    // set twice, or to 0: refused as well
    let mut fresh = Exchange::new(10_000);
    assert_eq!(fresh.set_id_base(T0, 0).unwrap_err().reason, "IDS_IN_USE");
    fresh.set_id_base(T0, BASE).unwrap();
    assert_eq!(
        fresh.set_id_base(T0, BASE).unwrap_err().reason,
        "IDS_IN_USE"
    );
    assert_eq!(fresh.next_ids(), (BASE, BASE));
}

#[test]
fn without_a_base_ids_start_at_one() {
    let mut ex = market(None);
    let ask = ex
        .place_order(T0, seller(1), &order(pb::Side::Sell, 8))
        .unwrap();
    assert_eq!(ask.order_id, 1);
}
