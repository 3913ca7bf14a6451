//! Minimum fills: a bid fills at least its minimum on entry, or nothing; what it does
//! not fill goes on as its time in force says. Scenarios, then random books checked
//! against the plain rule (the GPUs offered at or under the limit by others decide).

use spotex_core::product::format_hour;
use spotex_core::workload::Rng;
use spotex_exchange::pb;
use spotex_exchange::{Caller, Exchange};

mod common;
use common::*;

fn who(account: u64, buyer: bool) -> Caller {
    Caller {
        account,
        buyer,
        seller: !buyer,
    }
}

fn pid() -> String {
    format!("H100-SXM/us-east/{}", format_hour(H0))
}

fn market(nodes: usize) -> Exchange {
    let mut ex = Exchange::new(10_000);
    ex.create_product(T0, &pid(), 10_000, 1, H0 * HOUR - HOUR, None, false)
        .unwrap();
    let cap = capacity("c", "H100-SXM", nodes, H0, H0 + 1);
    ex.register_capacity(T0, who(10, false), &cap).unwrap();
    ex
}

fn ask(ex: &mut Exchange, price: i64, qty: i64) {
    let r = pb::PlaceOrderRequest {
        product_id: pid(),
        side: pb::Side::Sell as i32,
        price_micros: price,
        quantity: qty,
        cluster_id: "c".into(),
        ..Default::default()
    };
    ex.place_order(T0, who(10, false), &r).unwrap();
}

fn bid(price: i64, qty: i64, min: i64, gang: u32, tif: pb::TimeInForce) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        product_id: pid(),
        side: pb::Side::Buy as i32,
        price_micros: price,
        quantity: qty,
        min_quantity: min,
        gang,
        time_in_force: tif as i32,
        ..Default::default()
    }
}

#[test]
fn at_least_the_minimum_or_nothing_and_the_rest_goes_on() {
    let mut ex = market(2);
    ask(&mut ex, 1_000_000, 3);
    ask(&mut ex, 1_200_000, 2);
    let gtc = pb::TimeInForce::Gtc;
    // 3 at or under 1.00: short of a minimum of 4, so nothing trades
    let o = ex
        .place_order(T0, who(2, true), &bid(1_000_000, 8, 4, 1, gtc))
        .unwrap();
    assert_eq!(
        (
            o.state,
            o.filled_quantity,
            o.reason.as_str(),
            o.min_quantity
        ),
        (pb::OrderState::Cancelled as i32, 0, "minimum_fill", 4)
    );
    // 5 at or under 1.20: the minimum is met, the rest (3) rests
    let o = ex
        .place_order(T0, who(2, true), &bid(1_200_000, 8, 4, 1, gtc))
        .unwrap();
    assert_eq!(
        (o.state, o.filled_quantity, o.remaining_quantity),
        (pb::OrderState::PartiallyFilled as i32, 5, 3)
    );
    // with IOC the rest is cancelled instead (of the 6 new GPUs the resting 3 take 3)
    ask(&mut ex, 1_000_000, 6);
    let o = ex
        .place_order(
            T0,
            who(3, true),
            &bid(1_000_000, 8, 2, 1, pb::TimeInForce::Ioc),
        )
        .unwrap();
    assert_eq!(
        (o.state, o.filled_quantity, o.reason.as_str()),
        (pb::OrderState::Cancelled as i32, 3, "unfilled")
    );
}

#[test]
fn a_minimum_counts_whole_gangs_that_can_be_placed() {
    let mut ex = market(2);
    ask(&mut ex, 1_000_000, 16);
    // two gangs of 4 sold: best fit puts both on node 0, which is then full
    for _ in 0..2 {
        let r = bid(1_000_000, 4, 0, 4, pb::TimeInForce::Ioc);
        ex.place_order(T0, who(3, true), &r).unwrap();
    }
    let left = ex
        .engine()
        .allocations()
        .iter()
        .map(|a| a.slots.len())
        .sum::<usize>();
    assert_eq!(
        left, 2,
        "best fit: both gangs of 4 on node 0... then node 1"
    );
    let gang8 = bid(1_000_000, 8, 8, 8, pb::TimeInForce::Gtc);
    let o = ex.place_order(T0, who(2, true), &gang8).unwrap();
    // node 0 is full and node 1 has 8 free: one gang fits
    assert_eq!(o.filled_quantity, 8, "{o:?}");
}

#[test]
fn minimums_that_cannot_be_are_refused() {
    let mut ex = market(1);
    let gtc = pb::TimeInForce::Gtc;
    let mut block = bid(1_000_000, 8, 8, 1, pb::TimeInForce::Fok);
    block.hours = 2;
    let mut sell = bid(1_000_000, 8, 4, 1, gtc);
    sell.side = pb::Side::Sell as i32;
    sell.cluster_id = "c".into();
    for (r, caller) in [
        (bid(1_000_000, 8, 9, 1, gtc), who(2, true)), // above the quantity
        (bid(1_000_000, 8, -1, 1, gtc), who(2, true)),
        (bid(1_000_000, 16, 4, 8, gtc), who(2, true)), // not whole gangs
        (sell, who(10, false)),
        (block, who(2, true)),
    ] {
        let seq = ex.sequence();
        let err = ex.place_order(T0, caller, &r).unwrap_err();
        assert_eq!(err.reason, "INVALID_MINIMUM_FILL", "{r:?}");
        assert_eq!(ex.sequence(), seq);
    }
}

#[test]
fn random_books_agree_with_the_rule_and_replay() {
    for seed in 0..50u64 {
        let mut rng = Rng(seed);
        let mut ex = market(4);
        let mut ts = T0;
        for _ in 0..40 {
            ts += 1;
            if rng.next() % 2 == 0 {
                let r = pb::PlaceOrderRequest {
                    product_id: pid(),
                    side: pb::Side::Sell as i32,
                    price_micros: 1_000_000 + (rng.next() % 10) as i64 * 10_000,
                    quantity: 1 + (rng.next() % 6) as i64,
                    cluster_id: "c".into(),
                    ..Default::default()
                };
                let _ = ex.place_order(ts, who(10, false), &r); // refused when full
                continue;
            }
            let limit = 1_000_000 + (rng.next() % 10) as i64 * 10_000;
            let qty = 1 + (rng.next() % 10) as i64;
            let min = 1 + (rng.next() % qty as u64) as i64;
            // the rule: what others offer at or under the limit decides
            let book = ex
                .get_book(&pb::GetBookRequest {
                    product_id: pid(),
                    depth: 1000,
                })
                .unwrap()
                .book
                .unwrap();
            let offered: i64 = book
                .asks
                .iter()
                .filter(|l| l.price_micros <= limit)
                .map(|l| l.quantity)
                .sum();
            let r = bid(limit, qty, min, 1, pb::TimeInForce::Ioc);
            let o = ex.place_order(ts, who(2, true), &r).unwrap();
            let want = if offered >= min { offered.min(qty) } else { 0 };
            assert_eq!(o.filled_quantity, want, "seed {seed}: {offered} offered");
            if want == 0 {
                assert_eq!(o.reason, "minimum_fill", "seed {seed}");
            }
        }
        let journal = ex.take_journal();
        let mut back = Exchange::new(10_000);
        for e in &journal {
            back.replay(e.seq, e.ts, &e.command).unwrap();
        }
        assert_eq!(back.state_hash(), ex.state_hash(), "seed {seed}");
    }
}
