//! The exchange on a journal of N commands: how fast it applies them live (records,
//! streams and journal encoding included, the journal written and synced per round), and
//! how fast recovery rebuilds it, against the floor of reading the journal alone.
//!
//!     cargo run --release -p spotex-exchange --example recovery -- [commands]
//!
//! Prints one JSON object. The order flow is seeded: 45% resting bids and asks around $2,
//! 3% crossing IOC bids, 45% cancels of resting orders, 7% amends.

use std::time::Instant;

use spotex_core::journal::{self, Journal, Segments};
use spotex_core::workload::Rng;
use spotex_exchange::{pb, recover, Caller, Exchange};

const HOUR: i64 = 3_600_000_000;
const T0: i64 = 490_000 * HOUR;
const PID: &str = "H100-SXM/us-east/2025-11-26T16";
const ROUND: u64 = 1_000;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map(|a| a.parse().expect("a number of commands"))
        .unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().expect("a scratch directory");
    let dir = tmp.path().join("journal");
    let mut j = Segments::open(&dir, journal::SEGMENT_BYTES).expect("a journal");

    let mut ex = Exchange::new(u32::MAX);
    let traders: Vec<Caller> = (1..=4)
        .map(|account| Caller {
            account,
            buyer: true,
            seller: true,
        })
        .collect();
    ex.create_product(T0, PID, 10_000, 1, T0 + 47 * HOUR, None, false)
        .unwrap();
    for t in &traders {
        let nodes = (0..40_000)
            .map(|i| pb::Node {
                node_id: format!("n{i}"),
                gpus: 8,
                ..Default::default()
            })
            .collect();
        let cap = pb::RegisterCapacityRequest {
            cluster_id: format!("c{}", t.account),
            sku: "H100-SXM".into(),
            region: "us-east".into(),
            nodes,
            from_hour: 490_000,
            to_hour: 490_100,
        };
        ex.register_capacity(T0, *t, &cap).unwrap();
    }

    let mut rng = Rng(7);
    let mut resting: Vec<(Caller, u64)> = Vec::new();
    let (mut refused, mut ts) = (0u64, T0);
    let start = Instant::now();
    for i in 0..n {
        ts += 1;
        let who = traders[rng.below(4) as usize];
        let roll = rng.below(100);
        let result = if roll < 45 || resting.is_empty() {
            let sell = rng.below(2) == 1;
            let away = 1 + rng.below(40) as i64;
            let req = pb::PlaceOrderRequest {
                product_id: PID.into(),
                side: if sell { pb::Side::Sell } else { pb::Side::Buy } as i32,
                price_micros: 2_000_000 + if sell { away } else { -away } * 10_000,
                quantity: 1 + rng.below(4) as i64,
                cluster_id: if sell {
                    format!("c{}", who.account)
                } else {
                    String::new()
                },
                ..Default::default()
            };
            ex.place_order(ts, who, &req).map(|o| {
                if o.remaining_quantity > 0 {
                    resting.push((who, o.order_id));
                }
            })
        } else if roll < 48 {
            let req = pb::PlaceOrderRequest {
                product_id: PID.into(),
                side: pb::Side::Buy as i32,
                price_micros: 2_100_000,
                quantity: 1 + rng.below(2) as i64,
                time_in_force: pb::TimeInForce::Ioc as i32,
                ..Default::default()
            };
            ex.place_order(ts, who, &req).map(drop)
        } else if roll < 93 {
            let (owner, order_id) = resting.swap_remove(rng.below(resting.len() as u64) as usize);
            ex.cancel_order(ts, owner, &pb::CancelOrderRequest { order_id })
                .map(drop)
        } else {
            let (owner, order_id) = resting[rng.below(resting.len() as u64) as usize];
            let req = pb::AmendOrderRequest {
                order_id,
                price_micros: 0,
                quantity: 1,
            };
            ex.amend_order(ts, owner, &req).map(drop)
        };
        if result.is_err() {
            refused += 1; // an order that an earlier trade filled, and the like
        }
        if i % ROUND == ROUND - 1 {
            ex.take_round();
            // the transfers that left memory go to the caller (the server's history)
            ex.take_left_transfers();
            ex.write_journal(&mut j).unwrap();
            j.sync().unwrap();
        }
    }
    ex.take_round();
    ex.write_journal(&mut j).unwrap();
    j.sync().unwrap();
    let live_s = start.elapsed().as_secs_f64();
    let records = ex.sequence();
    let bytes: u64 = journal::segments(&dir)
        .unwrap()
        .iter()
        .map(|(_, p)| std::fs::metadata(p).unwrap().len())
        .sum();

    let t = Instant::now();
    let (read, _) = journal::read_dir(&dir, 0).unwrap();
    let read_s = t.elapsed().as_secs_f64();
    assert_eq!(read.len() as u64, records);
    drop(read);

    let t = Instant::now();
    let (back, rec) = recover(
        &dir,
        None,
        u32::MAX,
        spotex_exchange::exchange::KEEP_ENDED,
        None,
    )
    .unwrap();
    let recover_s = t.elapsed().as_secs_f64();
    assert_eq!(back.state_hash(), ex.state_hash(), "recovery differs");
    assert_eq!(rec.replayed, records);

    let t = Instant::now();
    let snap = ex.snapshot();
    let snapshot_s = t.elapsed().as_secs_f64();
    let t = Instant::now();
    let restored = Exchange::restore(&snap, u32::MAX).unwrap();
    let restore_s = t.elapsed().as_secs_f64();
    assert_eq!(restored.state_hash(), ex.state_hash());

    println!(
        "{{\"commands\": {n}, \"journal_records\": {records}, \"refused\": {refused}, \
         \"journal_bytes\": {bytes}, \
         \"live_commands_per_s\": {:.0}, \
         \"read_journal_records_per_s\": {:.0}, \
         \"recovery_records_per_s\": {:.0}, \"recovery_s\": {recover_s:.3}, \
         \"snapshot_bytes\": {}, \"snapshot_s\": {snapshot_s:.3}, \"restore_s\": {restore_s:.3}, \
         \"state_hash\": \"{}\"}}",
        n as f64 / live_s,
        records as f64 / read_s,
        records as f64 / recover_s,
        snap.len(),
        ex.state_hash()
    );
}
