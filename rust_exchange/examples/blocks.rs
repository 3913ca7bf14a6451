//! Block and window matching at venue scale: 10,000 nodes (100 clusters of 100 8-GPU
//! nodes), 168 hourly products, every cluster offering in every hour at its own price
//! (with a little noise per hour), and GPUs already sold here and there. Then block bids
//! of 24 hours (gangs of 8) and windows (24 hours anywhere in 72), each timed alone:
//! p50 and p99 latency and blocks per second, beside a one-hour bid of the same size as
//! the floor of an order through the exchange. Then the work an arriving ask does with
//! 1,000 resting blocks waiting in its week, against the same asks with none.
//!
//!     cargo run --release -p spotex-exchange --example blocks -- [blocks]
//!
//! Prints one JSON object.

use std::time::Instant;

use spotex_core::product::format_hour;
use spotex_core::workload::Rng;
use spotex_core::{RETRY_TOP, RETRY_TURN};
use spotex_exchange::{pb, Caller, Exchange};

// the clusters the exchange's tests register, shared
#[path = "../tests/common/mod.rs"]
mod common;

const HOUR: i64 = 3_600_000_000;
const H0: i64 = 490_000;
const T0: i64 = (H0 - 10) * HOUR;
const HOURS: i64 = 168;
const CLUSTERS: u64 = 100;
const NODES: usize = 100;

fn pid(h: i64) -> String {
    format!("H100-SXM/us-east/{}", format_hour(h))
}

fn pct(xs: &mut [f64], p: f64) -> f64 {
    xs.sort_by(|a, b| a.total_cmp(b));
    xs[((xs.len() as f64 - 1.0) * p).round() as usize]
}

/// `count` asks of one GPU at random hours and clusters, each timed alone: p50, p99 (µs)
/// and the resting blocks each examined on average.
fn arrive(ex: &mut Exchange, count: usize, rng: &mut Rng) -> (f64, f64, f64) {
    let mut lat = Vec::with_capacity(count);
    let mut examined = 0usize;
    for _ in 0..count {
        let h = H0 + (rng.next() % HOURS as u64) as i64;
        let c = rng.next() % CLUSTERS;
        let r = pb::PlaceOrderRequest {
            product_id: pid(h),
            side: pb::Side::Sell as i32,
            price_micros: 2_500_000,
            quantity: 1,
            cluster_id: format!("c{c}"),
            ..Default::default()
        };
        let product = ex.engine().product_handle(&pid(h)).unwrap();
        let covering = ex
            .engine()
            .resting_blocks()
            .filter(|b| b.products.contains(&product))
            .count();
        let t = Instant::now();
        let seller = Caller {
            account: 100 + c,
            buyer: false,
            seller: true,
        };
        let placed = ex.place_order(T0, seller, &r);
        let us = t.elapsed().as_secs_f64() * 1e6;
        if placed.is_ok() {
            lat.push(us);
            examined += covering.min(RETRY_TOP + RETRY_TURN);
        }
        ex.take_journal();
        ex.take_round();
    }
    let n = lat.len();
    (
        pct(&mut lat, 0.5),
        pct(&mut lat, 0.99),
        examined as f64 / n as f64,
    )
}

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("a number of blocks"))
        .unwrap_or(300);
    let mut rng = Rng(7);
    let mut ex = Exchange::new(u32::MAX);
    let built = Instant::now();
    for h in 0..HOURS {
        ex.create_product(
            T0,
            &pid(H0 + h),
            10_000,
            1,
            (H0 + h) * HOUR - HOUR,
            None,
            false,
        )
        .unwrap();
    }
    let seller = |c: u64| Caller {
        account: 100 + c,
        buyer: false,
        seller: true,
    };
    for c in 0..CLUSTERS {
        let cap = common::capacity(&format!("c{c}"), "H100-SXM", NODES, H0, H0 + HOURS);
        ex.register_capacity(T0, seller(c), &cap).unwrap();
        let base = 1_500_000 + (rng.next() % 100) as i64 * 10_000;
        for h in 0..HOURS {
            // most of the cluster offered, in two asks at two prices
            let r = |px: i64, qty: i64| pb::PlaceOrderRequest {
                product_id: pid(H0 + h),
                side: pb::Side::Sell as i32,
                price_micros: px,
                quantity: qty,
                cluster_id: format!("c{c}"),
                ..Default::default()
            };
            let noise = (rng.next() % 20) as i64 * 10_000;
            ex.place_order(T0, seller(c), &r(base + noise, 400))
                .unwrap();
            ex.place_order(T0, seller(c), &r(base + noise + 50_000, 300))
                .unwrap();
        }
    }
    let hourly = Caller {
        account: 2,
        buyer: true,
        seller: false,
    };
    // GPUs sold here and there: single-hour gang bids
    for _ in 0..2_000 {
        let h = H0 + (rng.next() % HOURS as u64) as i64;
        let r = pb::PlaceOrderRequest {
            product_id: pid(h),
            side: pb::Side::Buy as i32,
            price_micros: 3_000_000,
            quantity: 8 * (1 + (rng.next() % 4) as i64),
            gang: 8,
            time_in_force: pb::TimeInForce::Ioc as i32,
            ..Default::default()
        };
        ex.place_order(T0, hourly, &r).unwrap();
    }
    ex.take_journal();
    ex.take_round();
    let setup = built.elapsed().as_secs_f64();

    let desk = Caller {
        account: 3,
        buyer: true,
        seller: false,
    };
    let mut run = |hours: u32, window: u32, count: usize, rng: &mut Rng| {
        let mut lat = Vec::with_capacity(count);
        let mut filled = 0;
        let started = Instant::now();
        for _ in 0..count {
            let span = window.max(hours) as u64;
            let first = H0 + (rng.next() % (HOURS as u64 - span + 1)) as i64;
            let r = pb::PlaceOrderRequest {
                product_id: pid(first),
                side: pb::Side::Buy as i32,
                price_micros: 2_700_000,
                quantity: 64,
                gang: 8,
                time_in_force: pb::TimeInForce::Fok as i32,
                hours,
                window_hours: window,
                ..Default::default()
            };
            let t = Instant::now();
            let o = ex.place_order(T0, desk, &r).unwrap();
            lat.push(t.elapsed().as_secs_f64() * 1e6);
            filled += (o.state == pb::OrderState::Filled as i32) as usize;
            ex.take_journal();
            ex.take_round();
        }
        let secs = started.elapsed().as_secs_f64();
        let p50 = pct(&mut lat, 0.5);
        let p99 = pct(&mut lat, 0.99);
        (p50, p99, count as f64 / secs, filled)
    };
    let one = run(1, 0, n, &mut rng);
    let block = run(24, 0, n, &mut rng);
    let window = run(24, 72, n / 3, &mut rng);

    // linked baskets: 24 one-hour bids of 8 GPUs, one per hour of a day, all or none
    let mut lat = Vec::with_capacity(n);
    let mut filled = 0;
    for _ in 0..n {
        let first = H0 + (rng.next() % (HOURS as u64 - 24 + 1)) as i64;
        let legs = (0..24)
            .map(|k| pb::PlaceOrderRequest {
                product_id: pid(first + k),
                side: pb::Side::Buy as i32,
                price_micros: 2_700_000,
                quantity: 8,
                gang: 8,
                ..Default::default()
            })
            .collect();
        let t = Instant::now();
        let got = ex
            .place_basket(T0, desk, &pb::PlaceBasketRequest { legs })
            .unwrap();
        lat.push(t.elapsed().as_secs_f64() * 1e6);
        filled += got
            .results
            .iter()
            .all(|r| r.order.as_ref().unwrap().state == pb::OrderState::Filled as i32)
            as usize;
        ex.take_journal();
        ex.take_round();
    }
    let basket = (pct(&mut lat, 0.5), pct(&mut lat, 0.99), filled);

    // arriving asks, timed alone: first with no block resting, then with 1,000 resting
    // blocks (24 hours of 64 GPUs) spread over the week, each ask then examining those
    // of its hour within the retry bound
    let bare = arrive(&mut ex, n * 10, &mut rng);
    let waiting = Caller {
        account: 4,
        buyer: true,
        seller: false,
    };
    // near the money: each limit is the average of its hours' best asks, which no one
    // cluster reaches (each hour's best is a different cluster's), so every look at one
    // gets past the quick tests and plans on the ask's cluster
    let mut resting = 0;
    while resting < 1_000 {
        let first = H0 + (rng.next() % (HOURS as u64 - 24 + 1)) as i64;
        let best: i64 = (first..first + 24)
            .map(|h| {
                let p = ex.engine().product_handle(&pid(h)).unwrap();
                ex.engine().book(p).unwrap().best_ask().unwrap()
            })
            .sum();
        let r = pb::PlaceOrderRequest {
            product_id: pid(first),
            side: pb::Side::Buy as i32,
            price_micros: (best / 24 + 9_999) / 10_000 * 10_000,
            quantity: 64,
            gang: 8,
            time_in_force: pb::TimeInForce::Gtc as i32,
            hours: 24,
            ..Default::default()
        };
        let o = ex.place_order(T0, waiting, &r).unwrap();
        resting += (o.state == pb::OrderState::Open as i32) as usize;
    }
    ex.take_journal();
    ex.take_round();
    let busy = arrive(&mut ex, n * 10, &mut rng);
    let row = |name: &str, r: (f64, f64, f64, usize), count: usize| {
        format!(
            "\"{name}\": {{\"p50_us\": {:.1}, \"p99_us\": {:.1}, \"per_sec\": {:.0}, \"filled\": {}, \"of\": {}}}",
            r.0, r.1, r.2, r.3, count
        )
    };
    let basket_row = format!(
        "\"basket_24_legs\": {{\"p50_us\": {:.1}, \"p99_us\": {:.1}, \"filled\": {}, \"of\": {n}}}",
        basket.0, basket.1, basket.2
    );
    let ask_row = |name: &str, r: (f64, f64, f64)| {
        format!(
            "\"{name}\": {{\"p50_us\": {:.1}, \"p99_us\": {:.1}, \"blocks_examined\": {:.1}}}",
            r.0, r.1, r.2
        )
    };
    println!(
        "{{\"nodes\": {}, \"products\": {}, \"resting_asks\": {}, \"setup_s\": {:.2}, {}, {}, {}, {}, \"resting_blocks\": {resting}, {}, {}, \"ask_cost_ratio_p50\": {:.1}}}",
        CLUSTERS as usize * NODES,
        HOURS,
        ex.engine().open_order_count(),
        setup,
        row("one_hour_64_gpus", one, n),
        row("block_24h_64_gpus", block, n),
        row("window_24h_in_72h_64_gpus", window, n / 3),
        basket_row,
        ask_row("ask_no_resting_blocks", bare),
        ask_row("ask_1000_resting_blocks", busy),
        busy.0 / bare.0,
    );
}
