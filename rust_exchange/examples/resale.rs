//! What resale costs beside an ordinary ask, in one run: a cluster of 2,000 8-GPU nodes
//! for one hour, half of it bought node by node and each of those nodes resold whole by
//! its holder, the other half offered by the cluster's owner node by node. Timed alone
//! each: placing a resale ask against placing an ordinary ask (the floor), and a bid for
//! a whole node taking a resale ask against one taking an ordinary ask.
//!
//!     cargo run --release -p spotex-exchange --example resale -- [nodes]
//!
//! Prints one JSON object.

use std::time::Instant;

use spotex_core::product::format_hour;
use spotex_exchange::{pb, Caller, Exchange};

// the clusters the exchange's tests register, shared
#[path = "../tests/common/mod.rs"]
mod common;

const HOUR: i64 = 3_600_000_000;
const H0: i64 = 490_000;
const T0: i64 = (H0 - 10) * HOUR;
const OWNER: u64 = 1;

fn pct(xs: &mut [f64], p: f64) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[((xs.len() as f64 - 1.0) * p).round() as usize]
}

fn caller(account: u64) -> Caller {
    Caller {
        account,
        buyer: true,
        seller: account == OWNER,
    }
}

/// Runs `f` once per item, each timed alone (µs), dropping what the exchange kept for
/// the journal and the streams.
fn timed<T>(ex: &mut Exchange, items: Vec<T>, mut f: impl FnMut(&mut Exchange, T)) -> Vec<f64> {
    items
        .into_iter()
        .map(|x| {
            let t = Instant::now();
            f(ex, x);
            let us = t.elapsed().as_secs_f64() * 1e6;
            ex.take_journal();
            ex.take_round();
            us
        })
        .collect()
}

fn main() {
    let nodes: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("a number of nodes"))
        .unwrap_or(2_000);
    let half = nodes / 2;
    let pid = format!("H100-SXM/us-east/{}", format_hour(H0));
    let mut ex = Exchange::new(u32::MAX);
    ex.set_resale_fee_bps(50);
    ex.create_product(T0, &pid, 10_000, 1, H0 * HOUR - HOUR, None, false)
        .unwrap();
    let cap = common::capacity("c", "H100-SXM", nodes, H0, H0 + 1);
    ex.register_capacity(T0, caller(OWNER), &cap).unwrap();
    let ask = |qty: i64| pb::PlaceOrderRequest {
        product_id: pid.clone(),
        side: pb::Side::Sell as i32,
        price_micros: 2_000_000,
        quantity: qty,
        cluster_id: "c".into(),
        ..Default::default()
    };
    let bid = |px: i64| pb::PlaceOrderRequest {
        product_id: pid.clone(),
        side: pb::Side::Buy as i32,
        price_micros: px,
        quantity: 8,
        gang: 8,
        time_in_force: pb::TimeInForce::Ioc as i32,
        ..Default::default()
    };
    // half the cluster sold node by node, one holder each
    ex.place_order(T0, caller(OWNER), &ask(8 * half as i64))
        .unwrap();
    for k in 0..half as u64 {
        ex.place_order(T0, caller(1_000 + k), &bid(2_000_000))
            .unwrap();
    }
    let trades: Vec<(u64, u64)> = (0..half as u64)
        .map(|k| {
            let all = ex
                .list_allocations(caller(1_000 + k), &pb::ListAllocationsRequest::default())
                .unwrap();
            (1_000 + k, all.allocations[0].trade_id)
        })
        .collect();
    ex.take_journal();
    ex.take_round();
    // each holder resells its node whole; the owner offers the rest node by node
    let resell = timed(&mut ex, trades, |ex, (who, trade)| {
        let r = pb::PlaceOrderRequest {
            side: pb::Side::Sell as i32,
            price_micros: 2_500_000,
            resell_trade_id: trade,
            ..Default::default()
        };
        ex.place_order(T0, caller(who), &r).unwrap();
    });
    let plain = timed(&mut ex, vec![(); half], |ex, ()| {
        ex.place_order(T0, caller(OWNER), &ask(8)).unwrap();
    });
    // bids for a whole node: the owner's asks first (cheaper), then the resales
    let take_plain = timed(&mut ex, (0..half as u64).collect(), |ex, k| {
        let o = ex
            .place_order(T0, caller(5_000 + k), &bid(2_000_000))
            .unwrap();
        assert_eq!(o.filled_quantity, 8);
    });
    let take_resale = timed(&mut ex, (0..half as u64).collect(), |ex, k| {
        let o = ex
            .place_order(T0, caller(9_000 + k), &bid(2_500_000))
            .unwrap();
        assert_eq!(o.filled_quantity, 8);
    });
    let resold = ex
        .engine()
        .allocations()
        .iter()
        .filter(|a| a.parent.is_some())
        .count();
    assert_eq!(resold, half, "every resale ask filled");
    let row = |name: &str, mut xs: Vec<f64>| {
        format!(
            "\"{name}\": {{\"p50_us\": {:.2}, \"p99_us\": {:.2}}}",
            pct(&mut xs, 0.5),
            pct(&mut xs, 0.99)
        )
    };
    let ratio = |a: &[f64], b: &[f64]| {
        let (mut a, mut b) = (a.to_vec(), b.to_vec());
        pct(&mut a, 0.5) / pct(&mut b, 0.5)
    };
    println!(
        "{{\"nodes\": {nodes}, \"resale_asks\": {half}, {}, {}, {}, {}, \"place_ratio_p50\": {:.2}, \"take_ratio_p50\": {:.2}}}",
        row("place_resale_ask", resell.clone()),
        row("place_ordinary_ask", plain.clone()),
        row("bid_takes_resale_ask", take_resale.clone()),
        row("bid_takes_ordinary_ask", take_plain.clone()),
        ratio(&resell, &plain),
        ratio(&take_resale, &take_plain),
    );
}
