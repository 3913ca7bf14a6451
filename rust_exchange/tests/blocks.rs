//! Block bids: the same GPUs for consecutive hours, all or none. Scenarios for each rule,
//! then random markets where every block's outcome is checked against a small reference
//! that decides from the open asks and the sold GPUs alone, with the invariants: no GPU
//! sold twice in an hour, a filled block holds the same GPUs in every hour, never costs
//! more than its limit, and the journal replays to the same state.

use std::collections::BTreeMap;

use spotex_core::product::format_hour;
use spotex_core::workload::Rng;
use spotex_exchange::pb;
use spotex_exchange::{Caller, Exchange};

mod common;
use common::*;

const OP: Caller = Caller {
    account: 1,
    buyer: false,
    seller: false,
};

fn pid(hour: i64) -> String {
    format!("H100-SXM/us-east/{}", format_hour(hour))
}

/// Products for `hours` hours from H0, and one cluster per entry of `clusters` (nodes of
/// 8 GPUs each), each of its own seller (accounts 10, 11, ...).
fn market(hours: i64, clusters: &[usize]) -> Exchange {
    let mut ex = Exchange::new(10_000);
    for h in 0..hours {
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
    for (c, &nodes) in clusters.iter().enumerate() {
        let cap = capacity(&format!("c{c}"), "H100-SXM", nodes, H0, H0 + hours);
        ex.register_capacity(T0, seller(10 + c as u64), &cap)
            .unwrap();
    }
    let _ = OP;
    ex
}

fn ask(ex: &mut Exchange, cluster: usize, hour: i64, price: i64, qty: i64) -> u64 {
    let r = pb::PlaceOrderRequest {
        product_id: pid(hour),
        side: pb::Side::Sell as i32,
        price_micros: price,
        quantity: qty,
        cluster_id: format!("c{cluster}"),
        ..Default::default()
    };
    ex.place_order(T0 + 1, seller(10 + cluster as u64), &r)
        .unwrap()
        .order_id
}

fn block(first: i64, hours: u32, price: i64, qty: i64, gang: u32) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        product_id: pid(first),
        side: pb::Side::Buy as i32,
        price_micros: price,
        quantity: qty,
        time_in_force: pb::TimeInForce::Fok as i32,
        gang,
        hours,
        ..Default::default()
    }
}

/// The GPUs each allocation of `order` holds, by hour: `(cluster, [(node, mask)])`.
fn held(ex: &Exchange, order: u64) -> BTreeMap<i64, (u32, Vec<(u32, u64)>)> {
    let mut out: BTreeMap<i64, (u32, Vec<(u32, u64)>)> = BTreeMap::new();
    for a in ex.engine().allocations() {
        if a.buy_order == order {
            let e = out.entry(a.hour).or_insert((a.cluster, Vec::new()));
            assert_eq!(e.0, a.cluster, "one cluster for the whole block");
            e.1.extend(a.slots.iter().map(|s| (s.node, s.gpus)));
        }
    }
    for (_, slots) in out.values_mut() {
        let mut by_node: BTreeMap<u32, u64> = BTreeMap::new();
        for &(n, m) in slots.iter() {
            *by_node.entry(n).or_default() |= m;
        }
        *slots = by_node.into_iter().collect();
    }
    out
}

#[test]
fn a_block_takes_the_same_gpus_every_hour_from_the_cheapest_cluster_that_has_them() {
    let mut ex = market(3, &[2, 2]);
    // c1 is cheaper, but offers nothing in the third hour; c0 offers every hour
    for h in 0..3 {
        ask(&mut ex, 0, H0 + h, 2_000_000 + h * 10_000, 16);
    }
    ask(&mut ex, 1, H0, 1_000_000, 16);
    ask(&mut ex, 1, H0 + 1, 1_000_000, 16);
    ex.take_round();
    let b = buyer(2);
    let o = ex
        .place_order(T0 + 2, b, &block(H0, 3, 2_100_000, 8, 8))
        .unwrap();
    assert_eq!(o.state, pb::OrderState::Filled as i32);
    assert_eq!((o.quantity, o.filled_quantity, o.hours), (8, 8, 3));
    let hours: Vec<&str> = o.fills.iter().map(|f| f.product_id.as_str()).collect();
    assert_eq!(hours, [pid(H0), pid(H0 + 1), pid(H0 + 2)]);
    let prices: Vec<i64> = o.fills.iter().map(|f| f.price_micros).collect();
    assert_eq!(
        prices,
        [2_000_000, 2_010_000, 2_020_000],
        "each hour at its ask's price"
    );
    let got = held(&ex, o.order_id);
    assert_eq!(got.len(), 3);
    let first = got[&H0].clone();
    assert_eq!(first.0, 0, "c0: the only cluster with every hour");
    assert!(
        got.values().all(|g| *g == first),
        "the same GPUs in every hour"
    );
    assert_eq!(first.1.iter().map(|s| s.1.count_ones()).sum::<u32>(), 8);
    assert_eq!(first.1.len(), 1, "a gang of 8 on one node");
    // every hour's product saw its trade
    let round = ex.take_round();
    let traded: Vec<&str> = round
        .market
        .iter()
        .filter(|m| matches!(m.payload, Some(pb::market_data::Payload::Trade(_))))
        .map(|m| m.product_id.as_str())
        .collect();
    assert_eq!(traded, [pid(H0), pid(H0 + 1), pid(H0 + 2)]);
}

#[test]
fn a_block_goes_where_the_same_gpus_are_free_in_every_hour() {
    let mut ex = market(2, &[2]);
    ask(&mut ex, 0, H0, 1_000_000, 16);
    ask(&mut ex, 0, H0 + 1, 1_000_000, 16);
    // node 0 loses GPUs 0-3 in the first hour and then, best fit, node 0's others go in
    // the second: no GPU of node 0 is free in both hours
    let single = |hour: i64, qty: i64| pb::PlaceOrderRequest {
        product_id: pid(hour),
        side: pb::Side::Buy as i32,
        price_micros: 1_000_000,
        quantity: qty,
        gang: 4,
        ..Default::default()
    };
    ex.place_order(T0 + 2, buyer(3), &single(H0, 4)).unwrap();
    ex.place_order(T0 + 2, buyer(3), &single(H0 + 1, 4))
        .unwrap();
    let sold = |hour: i64| -> Vec<(u32, u64)> {
        ex.engine()
            .allocations()
            .iter()
            .filter(|a| a.hour == hour)
            .flat_map(|a| a.slots.iter().map(|s| (s.node, s.gpus)))
            .collect()
    };
    assert_eq!(sold(H0), [(0, 0x0f)]);
    assert_eq!(sold(H0 + 1), [(0, 0x0f)]);
    // 4 GPUs of node 0 (4-7) are free in both hours: a gang of 4 fits there, best fit
    let o = ex
        .place_order(T0 + 3, buyer(2), &block(H0, 2, 1_000_000, 4, 4))
        .unwrap();
    assert_eq!(o.state, pb::OrderState::Filled as i32);
    assert_eq!(held(&ex, o.order_id)[&H0].1, [(0, 0xf0)]);
    // a gang of 8 needs a whole node free in both hours: node 1
    let o = ex
        .place_order(T0 + 3, buyer(2), &block(H0, 2, 1_000_000, 8, 8))
        .unwrap();
    assert_eq!(held(&ex, o.order_id)[&(H0 + 1)].1, [(1, 0xff)]);
    // nothing whole is left in both hours: all or none
    let o = ex
        .place_order(T0 + 3, buyer(2), &block(H0, 2, 1_000_000, 8, 8))
        .unwrap();
    assert_eq!(
        (o.state, o.filled_quantity, o.reason.as_str()),
        (pb::OrderState::Cancelled as i32, 0, "fill_or_kill")
    );
}

#[test]
fn a_block_over_its_limit_or_missing_an_hour_takes_nothing() {
    let mut ex = market(3, &[2]);
    ask(&mut ex, 0, H0, 1_000_000, 8);
    ask(&mut ex, 0, H0 + 1, 3_000_000, 8);
    ex.take_round();
    // what a block that does not fill must leave as it was: allocations and the asks
    let market_of = |ex: &Exchange| {
        let asks = ex
            .list_orders(seller(10), &Default::default())
            .unwrap()
            .orders
            .iter()
            .map(|o| (o.order_id, o.remaining_quantity))
            .collect::<Vec<_>>();
        (ex.engine().allocations().len(), asks)
    };
    let before = market_of(&ex);
    // 1.00 + 3.00 = 4.00 a GPU over two hours: a limit of 1.99 a GPU-hour is 3.98
    let o = ex
        .place_order(T0 + 2, buyer(2), &block(H0, 2, 1_990_000, 8, 1))
        .unwrap();
    assert_eq!(o.state, pb::OrderState::Cancelled as i32);
    assert_eq!(market_of(&ex), before, "no GPU moved");
    // the limit is on the whole: 2.00 covers the dearer hour
    let mut ioc = block(H0, 2, 2_000_000, 8, 1);
    ioc.time_in_force = pb::TimeInForce::Ioc as i32;
    let o = ex.place_order(T0 + 2, buyer(2), &ioc).unwrap();
    assert_eq!(
        (o.state, o.reason.as_str()),
        (pb::OrderState::Filled as i32, "")
    );
    // the third hour has no asks: not a GPU of the first two is taken
    ask(&mut ex, 0, H0, 1_000_000, 8);
    ask(&mut ex, 0, H0 + 1, 1_000_000, 8);
    let before = market_of(&ex);
    let o = ex
        .place_order(T0 + 3, buyer(2), &block(H0, 3, 9_000_000, 8, 1))
        .unwrap();
    assert_eq!(o.state, pb::OrderState::Cancelled as i32);
    assert_eq!(market_of(&ex), before);
}

#[test]
fn a_window_takes_the_cheapest_start_and_the_earliest_of_equals() {
    let mut ex = market(5, &[1]);
    // hours 0..5 at 3.00, 1.00, 1.00, 1.00, 3.00: two hours cost 4.00 from hour 0, 2.00
    // from hour 1 or 2, 4.00 from hour 3
    for (h, px) in [3_000_000, 1_000_000, 1_000_000, 1_000_000, 3_000_000]
        .iter()
        .enumerate()
    {
        ask(&mut ex, 0, H0 + h as i64, *px, 8);
    }
    let mut w = block(H0, 2, 2_000_000, 8, 8);
    w.window_hours = 5;
    let o = ex.place_order(T0 + 2, buyer(2), &w).unwrap();
    assert_eq!(
        (o.state, o.hours, o.window_hours),
        (pb::OrderState::Filled as i32, 2, 5)
    );
    assert_eq!(
        o.product_id,
        pid(H0),
        "the order stays named by its window's first hour"
    );
    let traded: Vec<&str> = o.fills.iter().map(|f| f.product_id.as_str()).collect();
    assert_eq!(
        traded,
        [pid(H0 + 1), pid(H0 + 2)],
        "the cheapest start, the earliest of two"
    );
    assert_eq!(o.filled_quantity, 8);
    // what is left: hour 3 at 1.00 and hours 0 and 4 at 3.00; a one-hour window order
    let mut one = block(H0, 1, 1_000_000, 8, 8);
    one.window_hours = 5;
    let o = ex.place_order(T0 + 2, buyer(2), &one).unwrap();
    assert_eq!(o.fills[0].product_id, pid(H0 + 3));
    // a window shorter than its block, longer than two weeks, or over unlisted hours
    for (hours, window) in [(3u32, 2u32), (2, 337), (2, 6)] {
        let mut bad = block(H0, hours, 1_000_000, 8, 8);
        bad.window_hours = window;
        let err = ex.place_order(T0 + 2, buyer(2), &bad).unwrap_err();
        assert_eq!(err.reason, "INVALID_BLOCK", "{hours} in {window}");
    }
}

#[test]
fn block_terms_that_cannot_be_are_refused() {
    let mut ex = market(2, &[1]);
    let cases: Vec<(pb::PlaceOrderRequest, Caller, &str)> = vec![
        (
            {
                // resting until a time already past
                let mut b = block(H0, 2, 1_000_000, 8, 1);
                b.time_in_force = pb::TimeInForce::Gtd as i32;
                b.expire_at_micros = T0;
                b
            },
            buyer(2),
            "INVALID_EXPIRY",
        ),
        (block(H0, 3, 1_000_000, 8, 1), buyer(2), "INVALID_BLOCK"), // hour 3 not listed
        (block(H0, 169, 1_000_000, 8, 1), buyer(2), "INVALID_BLOCK"),
        (
            {
                let mut b = block(H0, 2, 1_000_000, 8, 1);
                b.side = pb::Side::Sell as i32;
                b
            },
            seller(10),
            "INVALID_BLOCK",
        ),
        (
            {
                let mut b = block(H0, 2, 1_000_000, 8, 1);
                b.post_only = true;
                b
            },
            buyer(2),
            "INVALID_BLOCK",
        ),
        (block(H0, 2, 1_000_001, 8, 1), buyer(2), "PRICE_OFF_TICK"),
        (block(H0, 2, 1_000_000, 6, 4), buyer(2), "QUANTITY_OFF_GANG"),
    ];
    for (r, who, reason) in cases {
        let seq = ex.sequence();
        // at the exchange's own time: a refusal that moved the clock would journal a step
        let err = ex.place_order(T0, who, &r).unwrap_err();
        assert_eq!(err.reason, reason, "{r:?}");
        assert_eq!(ex.sequence(), seq, "a refusal is not a command");
    }
}

/// What a block should do in this market, decided from the open asks and the GPUs sold
/// so far, by the rule written out plainly: `(cluster, cost)` of the cheapest cluster
/// (ties to the lowest) that has the buyer's GPUs in asks every hour, the same whole
/// gangs free in every hour, and a cost within the limit; None if none has.
fn reference(
    ex: &Exchange,
    sellers: &[u64],
    nodes: &[usize],
    r: &pb::PlaceOrderRequest,
    first: i64,
    buyer_account: u64,
) -> Option<(usize, i128, i64)> {
    // a window: every start in turn, the cheapest winning, ties to the earliest
    let span = if r.window_hours == 0 {
        r.hours
    } else {
        r.window_hours
    } as i64;
    let mut best: Option<(usize, i128, i64)> = None;
    for start in first..=first + span - r.hours as i64 {
        if let Some((c, cost)) = reference_at(ex, sellers, nodes, r, start, buyer_account) {
            if best.is_none_or(|b| cost < b.1) {
                best = Some((c, cost, start));
            }
        }
    }
    best
}

fn reference_at(
    ex: &Exchange,
    sellers: &[u64],
    nodes: &[usize],
    r: &pb::PlaceOrderRequest,
    first: i64,
    buyer_account: u64,
) -> Option<(usize, i128)> {
    let hours: Vec<i64> = (first..first + r.hours as i64).collect();
    let gang = r.gang.max(1) as i64;
    let budget = r.price_micros as i128 * r.quantity as i128 * r.hours as i128;
    let mut best: Option<(usize, i128)> = None;
    for (c, (&acct, &n)) in sellers.iter().zip(nodes).enumerate() {
        if acct == buyer_account {
            continue;
        }
        let asks = ex
            .list_orders(
                seller(acct),
                &pb::ListOrdersRequest {
                    open_only: true,
                    page_size: 1000,
                    ..Default::default()
                },
            )
            .unwrap()
            .orders;
        let mut cost: i128 = 0;
        let mut ok = true;
        for &h in &hours {
            let mut mine: Vec<(i64, u64, i64)> = asks
                .iter()
                .filter(|o| o.product_id == pid(h))
                .map(|o| (o.price_micros, o.order_id, o.remaining_quantity))
                .collect();
            mine.sort();
            let mut need = r.quantity;
            for (px, _, q) in mine {
                let take = need.min(q);
                cost += px as i128 * take as i128;
                need -= take;
            }
            ok &= need == 0;
        }
        // GPUs sold in any hour of the block are not free for it
        let mut sold = vec![0u64; n];
        for a in ex.engine().allocations() {
            if a.cluster as usize == c && hours.contains(&a.hour) {
                for s in &a.slots {
                    sold[s.node as usize] |= s.gpus;
                }
            }
        }
        let gangs: i64 = sold
            .iter()
            .map(|m| (8 - m.count_ones() as i64) / gang)
            .sum();
        if ok && gangs >= r.quantity / gang && cost <= budget && best.is_none_or(|b| cost < b.1) {
            best = Some((c, cost));
        }
    }
    best
}

#[test]
fn random_markets_agree_with_the_reference_and_keep_the_invariants() {
    let (mut filled, mut not) = (0, 0);
    for seed in 0..40u64 {
        let mut rng = Rng(seed);
        let hours = 4i64;
        let nodes: Vec<usize> = (0..1 + rng.next() % 3)
            .map(|_| 1 + (rng.next() % 3) as usize)
            .collect();
        let mut ex = market(hours, &nodes);
        let sellers: Vec<u64> = (0..nodes.len() as u64).map(|c| 10 + c).collect();
        let mut ts = T0 + 1;
        for _ in 0..60 {
            ts += 1;
            let h = H0 + (rng.next() % hours as u64) as i64;
            match rng.next() % 3 {
                0 => {
                    // an ask from a random cluster (refused if the cluster is full)
                    let c = (rng.next() % nodes.len() as u64) as usize;
                    let r = pb::PlaceOrderRequest {
                        product_id: pid(h),
                        side: pb::Side::Sell as i32,
                        price_micros: 1_000_000 + (rng.next() % 20) as i64 * 10_000,
                        quantity: 1 + (rng.next() % 8) as i64,
                        cluster_id: format!("c{c}"),
                        ..Default::default()
                    };
                    let _ = ex.place_order(ts, seller(sellers[c]), &r);
                }
                1 => {
                    // a one-hour bid: sells GPUs here and there
                    let gang = [1u32, 2, 4][(rng.next() % 3) as usize];
                    let r = pb::PlaceOrderRequest {
                        product_id: pid(h),
                        side: pb::Side::Buy as i32,
                        price_micros: 1_100_000,
                        quantity: gang as i64 * (1 + (rng.next() % 2) as i64),
                        time_in_force: pb::TimeInForce::Ioc as i32,
                        gang,
                        ..Default::default()
                    };
                    let _ = ex.place_order(ts, buyer(2), &r);
                }
                _ => {
                    let n = 1 + (rng.next() % 4) as u32;
                    let first = H0 + (rng.next() % (hours as u64 - n as u64 + 1)) as i64;
                    // a window over the rest of the listed hours, some of the time
                    let window = if n == 1 || rng.next() % 2 == 0 {
                        (H0 + hours - first) as u32
                    } else {
                        0
                    };
                    let gang = [1u32, 2, 4, 8][(rng.next() % 4) as usize];
                    let r = pb::PlaceOrderRequest {
                        product_id: pid(first),
                        side: pb::Side::Buy as i32,
                        price_micros: 1_000_000 + (rng.next() % 25) as i64 * 10_000,
                        quantity: gang as i64 * (1 + (rng.next() % 2) as i64),
                        time_in_force: pb::TimeInForce::Fok as i32,
                        gang,
                        hours: n,
                        window_hours: window,
                        ..Default::default()
                    };
                    let want = reference(&ex, &sellers, &nodes, &r, first, 2);
                    let o = ex.place_order(ts, buyer(2), &r).unwrap();
                    let got = held(&ex, o.order_id);
                    match want {
                        None => {
                            not += 1;
                            assert_eq!(o.state, pb::OrderState::Cancelled as i32, "seed {seed}");
                            assert!(got.is_empty());
                        }
                        Some((cluster, cost, start)) => {
                            filled += 1;
                            assert_eq!(*got.keys().next().unwrap(), start, "seed {seed}: start");
                            assert_eq!(o.state, pb::OrderState::Filled as i32, "seed {seed}");
                            let paid: i128 = o
                                .fills
                                .iter()
                                .map(|f| f.price_micros as i128 * f.quantity as i128)
                                .sum();
                            assert_eq!(paid, cost, "seed {seed}: the cheapest way");
                            assert_eq!(got.len(), n as usize);
                            let one = got.values().next().unwrap().clone();
                            assert_eq!(one.0 as usize, cluster, "seed {seed}");
                            assert!(got.values().all(|g| *g == one), "seed {seed}: same GPUs");
                            let total: u32 = one.1.iter().map(|s| s.1.count_ones()).sum();
                            assert_eq!(total as i64, r.quantity);
                            assert!(one.1.iter().all(|s| s.1.count_ones() % gang == 0));
                        }
                    }
                }
            }
        }
        // no GPU of a cluster sold twice in one hour, through everything
        let mut seen: BTreeMap<(u32, i64, u32), u64> = BTreeMap::new();
        for a in ex.engine().allocations() {
            for s in &a.slots {
                let m = seen.entry((a.cluster, a.hour, s.node)).or_default();
                assert_eq!(*m & s.gpus, 0, "seed {seed}: a GPU-hour sold twice");
                *m |= s.gpus;
            }
        }
        // and the journal rebuilds the same exchange
        let journal = ex.take_journal();
        let mut back = Exchange::new(10_000);
        for e in &journal {
            back.replay(e.seq, e.ts, &e.command).unwrap();
        }
        assert_eq!(back.state_hash(), ex.state_hash(), "seed {seed}");
    }
    // the markets are built so that both outcomes happen often
    assert!(
        filled >= 50 && not >= 50,
        "filled {filled}, not filled {not}"
    );
}

#[test]
fn a_seller_range_places_an_ask_per_hour_and_cancel_all_withdraws_it_in_one_call() {
    let mut ex = market(4, &[1]);
    // hour 2 is already fully offered: the range's ask there is refused, not the others
    ask(&mut ex, 0, H0 + 2, 3_000_000, 8);
    let other = ask(&mut ex, 0, H0 + 3, 3_000_000, 2);
    let range = pb::PlaceAskRangeRequest {
        ask: Some(pb::PlaceOrderRequest {
            client_order_id: "r".into(),
            product_id: pid(H0),
            side: pb::Side::Sell as i32,
            price_micros: 2_000_000,
            quantity: 6,
            cluster_id: "c0".into(),
            ..Default::default()
        }),
        hours: 4,
    };
    let seq = ex.sequence();
    let got = ex.place_ask_range(T0 + 2, seller(10), &range).unwrap();
    let reasons: Vec<&str> = got.results.iter().map(|r| r.reason.as_str()).collect();
    assert_eq!(reasons, ["", "", "INSUFFICIENT_CAPACITY", ""]);
    let placed: Vec<&pb::Order> = got
        .results
        .iter()
        .filter_map(|r| r.order.as_ref())
        .collect();
    let hours: Vec<String> = placed.iter().map(|o| o.product_id.clone()).collect();
    assert_eq!(hours, [pid(H0), pid(H0 + 1), pid(H0 + 3)]);
    let range_id = placed[0].range_id;
    assert_eq!(range_id, seq + 1);
    assert!(placed.iter().all(|o| o.range_id == range_id));
    let ids: Vec<String> = placed.iter().map(|o| o.client_order_id.clone()).collect();
    assert_eq!(ids, ["r#0", "r#1", "r#3"]);
    // withdrawn in one call; the seller's other asks stay
    let gone = ex
        .cancel_all(
            T0 + 3,
            seller(10),
            &pb::CancelAllRequest {
                range_id,
                ..Default::default()
            },
        )
        .unwrap();
    let mut cancelled: Vec<u64> = gone.orders.iter().map(|o| o.order_id).collect();
    cancelled.sort();
    let mut want: Vec<u64> = placed.iter().map(|o| o.order_id).collect();
    want.sort();
    assert_eq!(cancelled, want);
    let open: Vec<u64> = ex
        .list_orders(
            seller(10),
            &pb::ListOrdersRequest {
                open_only: true,
                ..Default::default()
            },
        )
        .unwrap()
        .orders
        .iter()
        .map(|o| o.order_id)
        .collect();
    assert_eq!(open.len(), 2);
    assert!(open.contains(&other));
    // the journal holds ordinary asks and cancels: it replays to the same exchange
    let journal = ex.take_journal();
    let mut back = Exchange::new(10_000);
    for e in &journal {
        back.replay(e.seq, e.ts, &e.command).unwrap();
    }
    assert_eq!(back.state_hash(), ex.state_hash());
    // ranges that cannot be
    let mut buy = range.clone();
    buy.ask.as_mut().unwrap().side = pb::Side::Buy as i32;
    let mut long = range.clone();
    long.hours = 5; // hour 4 is not listed
    let mut none = range.clone();
    none.hours = 0;
    let mut block = range.clone();
    block.ask.as_mut().unwrap().hours = 2;
    for bad in [buy, long, none, block] {
        let seq = ex.sequence();
        let err = ex.place_ask_range(T0 + 3, seller(10), &bad).unwrap_err();
        assert_eq!(err.reason, "INVALID_RANGE");
        assert_eq!(ex.sequence(), seq);
    }
}

#[test]
fn a_one_of_group_fills_its_cheapest_feasible_alternative_and_only_that() {
    let mut ex = market(4, &[1, 1]);
    // c0 offers hours 0-1 at 2.00; c1 offers hours 2-3 at 1.50 but only 4 GPUs in hour 3
    ask(&mut ex, 0, H0, 2_000_000, 8);
    ask(&mut ex, 0, H0 + 1, 2_000_000, 8);
    ask(&mut ex, 1, H0 + 2, 1_500_000, 8);
    ask(&mut ex, 1, H0 + 3, 1_500_000, 4);
    let alt = |first: i64, price: i64| block(first, 2, price, 8, 8);
    let group = |alts: Vec<pb::PlaceOrderRequest>| pb::PlaceOneOfRequest {
        alternatives: alts,
        client_order_id: "g".into(),
    };
    // the cheaper alternative (hours 2-3) cannot fill: the dearer one does
    let o = ex
        .place_one_of(
            T0 + 2,
            buyer(2),
            &group(vec![alt(H0 + 2, 3_000_000), alt(H0, 3_000_000)]),
        )
        .unwrap();
    assert_eq!(o.state, pb::OrderState::Filled as i32);
    assert_eq!(
        (o.product_id.as_str(), o.client_order_id.as_str()),
        (pid(H0).as_str(), "g")
    );
    let traded: Vec<&str> = o.fills.iter().map(|f| f.product_id.as_str()).collect();
    assert_eq!(traded, [pid(H0), pid(H0 + 1)]);
    // exactly one alternative filled: nothing was taken in hours 2-3
    assert!(ex.engine().allocations().iter().all(|a| a.hour < H0 + 2));
    // hours 1-2 have no one cluster with asks in both; hours 2-3 do (c1, now 8 in hour 3)
    ask(&mut ex, 1, H0 + 3, 1_500_000, 4);
    let o = ex
        .place_one_of(
            T0 + 3,
            buyer(2),
            &pb::PlaceOneOfRequest {
                alternatives: vec![alt(H0 + 1, 3_000_000), alt(H0 + 2, 3_000_000)],
                client_order_id: String::new(),
            },
        )
        .unwrap();
    let traded: Vec<&str> = o.fills.iter().map(|f| f.product_id.as_str()).collect();
    // hours 1-2 cannot fill in one cluster; hour 3 comes from two asks of 4
    assert_eq!(traded, [pid(H0 + 2), pid(H0 + 3), pid(H0 + 3)]);
    // none can: the group is its first alternative, cancelled
    let o = ex
        .place_one_of(
            T0 + 4,
            buyer(2),
            &group(vec![alt(H0, 9_000_000), alt(H0 + 2, 9_000_000)]),
        )
        .unwrap_err();
    assert_eq!(
        o.reason, "DUPLICATE_CLIENT_ORDER_ID",
        "the group's id is its own"
    );
    let none = ex
        .place_one_of(
            T0 + 4,
            buyer(2),
            &pb::PlaceOneOfRequest {
                alternatives: vec![alt(H0, 9_000_000), alt(H0 + 2, 9_000_000)],
                client_order_id: "h".into(),
            },
        )
        .unwrap();
    assert_eq!(
        (none.state, none.product_id.as_str(), none.filled_quantity),
        (pb::OrderState::Cancelled as i32, pid(H0).as_str(), 0)
    );
    // groups that cannot be
    // (one resting alternative beside one at once)
    let mut gtc = alt(H0, 1_000_000);
    gtc.time_in_force = pb::TimeInForce::Gtc as i32;
    for bad in [
        vec![],
        (0..17).map(|_| alt(H0, 1_000_000)).collect(),
        vec![gtc, alt(H0, 1_000_000)],
        vec![{
            let mut s = alt(H0, 1_000_000);
            s.side = pb::Side::Sell as i32;
            s
        }],
    ] {
        let seq = ex.sequence();
        let err = ex
            .place_one_of(
                T0 + 4,
                buyer(2),
                &pb::PlaceOneOfRequest {
                    alternatives: bad,
                    client_order_id: String::new(),
                },
            )
            .unwrap_err();
        assert_eq!(err.reason, "INVALID_GROUP");
        assert_eq!(ex.sequence(), seq);
    }
    // and the journal replays to the same exchange
    let journal = ex.take_journal();
    let mut back = Exchange::new(10_000);
    for e in &journal {
        back.replay(e.seq, e.ts, &e.command).unwrap();
    }
    assert_eq!(back.state_hash(), ex.state_hash());
}

#[test]
fn a_basket_fills_every_leg_completely_or_none() {
    let mut ex = market(3, &[1]);
    ask(&mut ex, 0, H0, 1_000_000, 8);
    ask(&mut ex, 0, H0 + 1, 1_000_000, 4);
    let leg = |hour: i64, qty: i64| pb::PlaceOrderRequest {
        product_id: pid(hour),
        side: pb::Side::Buy as i32,
        price_micros: 1_000_000,
        quantity: qty,
        ..Default::default()
    };
    let basket = |legs: Vec<pb::PlaceOrderRequest>| pb::PlaceBasketRequest { legs };
    let before = (ex.engine().allocations().len(), ex.state_hash());
    // the second leg wants 8 where 4 are offered: nothing trades, every leg cancelled
    let got = ex
        .place_basket(T0 + 2, buyer(2), &basket(vec![leg(H0, 8), leg(H0 + 1, 8)]))
        .unwrap();
    let states: Vec<(i32, i64, &str)> = got
        .results
        .iter()
        .map(|r| {
            let o = r.order.as_ref().unwrap();
            (o.state, o.filled_quantity, o.reason.as_str())
        })
        .collect();
    let cancelled = (pb::OrderState::Cancelled as i32, 0, "fill_or_kill");
    assert_eq!(states, [cancelled, cancelled]);
    assert_eq!(
        ex.engine().allocations().len(),
        before.0,
        "the first leg took nothing"
    );
    assert_ne!(
        ex.state_hash(),
        before.1,
        "two order ids were used, nothing else"
    );
    // 4 in the second hour: both legs fill, in one command
    let seq = ex.sequence();
    let got = ex
        .place_basket(T0 + 3, buyer(2), &basket(vec![leg(H0, 8), leg(H0 + 1, 4)]))
        .unwrap();
    assert!(got
        .results
        .iter()
        .all(|r| r.order.as_ref().unwrap().state == pb::OrderState::Filled as i32));
    assert_eq!(ex.sequence(), seq + 1, "one command, one journal record");
    // baskets that cannot be
    for bad in [
        vec![],
        vec![leg(H0, 1), leg(H0, 2)], // the same product and side twice
        (0..101).map(|k| leg(H0 + k % 3, 1)).collect(), // too many
        vec![{
            let mut b = leg(H0, 1);
            b.hours = 2;
            b
        }],
    ] {
        let seq = ex.sequence();
        let err = ex.place_basket(T0 + 4, buyer(2), &basket(bad)).unwrap_err();
        assert_eq!(err.reason, "INVALID_BASKET");
        assert_eq!(ex.sequence(), seq);
    }
    let journal = ex.take_journal();
    let mut back = Exchange::new(10_000);
    for e in &journal {
        back.replay(e.seq, e.ts, &e.command).unwrap();
    }
    assert_eq!(back.state_hash(), ex.state_hash());
}

// ---- resting blocks ------------------------------------------------------------------

fn resting(first: i64, hours: u32, price: i64, qty: i64) -> pb::PlaceOrderRequest {
    let mut r = block(first, hours, price, qty, 1);
    r.time_in_force = pb::TimeInForce::Gtc as i32;
    r
}

fn state_of(ex: &Exchange, account: u64, order_id: u64) -> pb::OrderState {
    let o = ex
        .get_order(
            buyer(account),
            &pb::GetOrderRequest {
                order_id,
                ..Default::default()
            },
        )
        .unwrap();
    pb::OrderState::try_from(o.state).unwrap()
}

#[test]
fn a_resting_block_waits_whole_and_fills_when_its_last_hour_is_offered() {
    let mut ex = market(3, &[1]);
    ask(&mut ex, 0, H0, 900_000, 8);
    ask(&mut ex, 0, H0 + 1, 1_000_000, 8);
    let b = ex
        .place_order(T0 + 2, buyer(2), &resting(H0, 3, 1_000_000, 8))
        .unwrap();
    assert_eq!(b.state, pb::OrderState::Open as i32);
    assert!(held(&ex, b.order_id).is_empty(), "nothing of it trades yet");
    // the hourly books never show it
    let book = ex
        .get_book(&pb::GetBookRequest {
            product_id: pid(H0),
            depth: 10,
        })
        .unwrap()
        .book
        .unwrap();
    assert!(book.bids.is_empty());
    assert_eq!(ex.engine().open_order_count(), 3);
    ex.take_round();
    // the last hour's ask: the block takes all three hours in the seller's command
    let last = ask(&mut ex, 0, H0 + 2, 1_100_000, 8);
    assert_eq!(state_of(&ex, 2, b.order_id), pb::OrderState::Filled);
    assert_eq!(
        ex.get_order(
            seller(10),
            &pb::GetOrderRequest {
                order_id: last,
                ..Default::default()
            }
        )
        .unwrap()
        .state,
        pb::OrderState::Filled as i32
    );
    let got = held(&ex, b.order_id);
    assert_eq!(got.len(), 3);
    let one = got.values().next().unwrap().clone();
    assert!(got.values().all(|g| *g == one), "the same GPUs every hour");
    // 0.9 + 1.0 + 1.1 = 3 x 1.0: exactly the limit on the whole
    let o = ex
        .get_order(
            buyer(2),
            &pb::GetOrderRequest {
                order_id: b.order_id,
                ..Default::default()
            },
        )
        .unwrap();
    let paid: i64 = o.fills.iter().map(|f| f.price_micros * f.quantity).sum();
    assert_eq!(paid, 3_000_000 * 8);
    assert_eq!(o.filled_quantity, 8);
    // the buyer hears of every hour's trade on its own stream
    let round = ex.take_round();
    let trades = round
        .executions
        .iter()
        .filter(|(a, e)| *a == 2 && e.kind == "trade")
        .count();
    assert_eq!(trades, 3);
    // and, last, of the whole block in one record: every hour, the same slots, the cost
    let blocks: Vec<&pb::BlockAllocation> = round
        .executions
        .iter()
        .filter(|(a, e)| *a == 2 && e.kind == "block_allocated")
        .filter_map(|(_, e)| e.block.as_ref())
        .collect();
    assert_eq!(blocks.len(), 1);
    let whole = blocks[0];
    assert_eq!(
        (whole.order_id, whole.first_hour, whole.hours),
        (b.order_id, H0, 3)
    );
    assert_eq!(whole.cluster_id, "c0");
    assert_eq!(whole.slots.len(), 1);
    assert_eq!(whole.slots[0].gpu_indices, (0..8).collect::<Vec<u32>>());
    assert_eq!(whole.cost_micros, 3_000_000 * 8);
    assert_eq!(whole.trade_ids.len(), 3);
    let last_kind = &round
        .executions
        .iter()
        .rfind(|(a, _)| *a == 2)
        .unwrap()
        .1
        .kind;
    assert_eq!(last_kind, "block_allocated");
    assert_eq!(ex.engine().open_order_count(), 0);
}

#[test]
fn an_arriving_ask_trades_with_the_hourly_bids_first() {
    let mut ex = market(2, &[2]);
    ask(&mut ex, 0, H0, 1_000_000, 8);
    let b = ex
        .place_order(T0 + 2, buyer(2), &resting(H0, 2, 2_000_000, 8))
        .unwrap();
    // an hourly bid rests in the second hour
    let bid = pb::PlaceOrderRequest {
        product_id: pid(H0 + 1),
        side: pb::Side::Buy as i32,
        price_micros: 1_500_000,
        quantity: 8,
        ..Default::default()
    };
    let hourly = ex.place_order(T0 + 3, buyer(3), &bid).unwrap();
    // the ask crosses it: the hourly bid takes it all, the block nothing
    ask(&mut ex, 0, H0 + 1, 1_200_000, 8);
    assert_eq!(state_of(&ex, 3, hourly.order_id), pb::OrderState::Filled);
    assert_eq!(state_of(&ex, 2, b.order_id), pb::OrderState::Open);
    // another ask there rests, and the block fills on the other node in both hours
    ask(&mut ex, 0, H0 + 1, 1_200_000, 8);
    assert_eq!(state_of(&ex, 2, b.order_id), pb::OrderState::Filled);
    let got = held(&ex, b.order_id);
    let one = got.values().next().unwrap().clone();
    assert!(got.values().all(|g| *g == one));
    assert_eq!(one.1, vec![(1, 0xff)], "node 0 was sold in the second hour");
}

#[test]
fn resting_blocks_fill_in_price_then_time_order() {
    let mut ex = market(2, &[1]);
    let low = ex
        .place_order(T0 + 2, buyer(2), &resting(H0, 2, 1_000_000, 8))
        .unwrap();
    let high = ex
        .place_order(T0 + 3, buyer(3), &resting(H0, 2, 1_500_000, 8))
        .unwrap();
    let later = ex
        .place_order(T0 + 4, buyer(4), &resting(H0, 2, 1_500_000, 8))
        .unwrap();
    ask(&mut ex, 0, H0, 1_000_000, 8);
    ask(&mut ex, 0, H0 + 1, 1_000_000, 8);
    // only one can have the node: the highest limit, then the oldest
    assert_eq!(state_of(&ex, 3, high.order_id), pb::OrderState::Filled);
    assert_eq!(state_of(&ex, 2, low.order_id), pb::OrderState::Open);
    assert_eq!(state_of(&ex, 4, later.order_id), pb::OrderState::Open);
}

#[test]
fn a_resting_block_is_cancelled_expires_or_closes_whole() {
    let mut ex = market(2, &[1]);
    let gtc = ex
        .place_order(T0 + 2, buyer(2), &resting(H0, 2, 1_000_000, 8))
        .unwrap();
    let mut r = resting(H0, 2, 1_000_000, 8);
    r.time_in_force = pb::TimeInForce::Gtd as i32;
    r.expire_at_micros = T0 + 100;
    let gtd = ex.place_order(T0 + 2, buyer(2), &r).unwrap();
    let cancel = ex
        .place_order(T0 + 2, buyer(2), &resting(H0, 2, 1_000_000, 8))
        .unwrap();
    // a block is not amended; another account can neither amend nor cancel it
    let amend = pb::AmendOrderRequest {
        order_id: gtc.order_id,
        price_micros: 2_000_000,
        quantity: 0,
    };
    assert_eq!(
        ex.amend_order(T0 + 3, buyer(2), &amend).unwrap_err().reason,
        "INVALID_BLOCK"
    );
    let theirs = pb::CancelOrderRequest {
        order_id: gtc.order_id,
    };
    assert_eq!(
        ex.cancel_order(T0 + 3, buyer(5), &theirs)
            .unwrap_err()
            .reason,
        "NOT_OWNER"
    );
    let o = ex
        .cancel_order(
            T0 + 3,
            buyer(2),
            &pb::CancelOrderRequest {
                order_id: cancel.order_id,
            },
        )
        .unwrap();
    assert_eq!(o.state, pb::OrderState::Cancelled as i32);
    assert_eq!(o.remaining_quantity, 0);
    ex.advance_time(T0 + 100);
    assert_eq!(state_of(&ex, 2, gtd.order_id), pb::OrderState::Expired);
    assert_eq!(state_of(&ex, 2, gtc.order_id), pb::OrderState::Open);
    // the first hour's gate closure: the block can no longer fill whole
    ex.advance_time(H0 * HOUR - HOUR);
    let o = ex
        .get_order(
            buyer(2),
            &pb::GetOrderRequest {
                order_id: gtc.order_id,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(o.state, pb::OrderState::Expired as i32);
    assert_eq!(o.reason, "gate_closure");
    assert_eq!(ex.engine().open_order_count(), 0);
}

#[test]
fn resting_blocks_carry_through_a_snapshot_and_the_journal() {
    let mut ex = market(3, &[2]);
    ask(&mut ex, 0, H0, 1_000_000, 16);
    for (k, px) in [1_000_000, 1_200_000, 1_100_000].into_iter().enumerate() {
        ex.place_order(
            T0 + 2 + k as i64,
            buyer(2 + k as u64),
            &resting(H0, 2, px, 8),
        )
        .unwrap();
    }
    let mut r = resting(H0, 2, 1_300_000, 8);
    r.time_in_force = pb::TimeInForce::Gtd as i32;
    r.expire_at_micros = T0 + 50;
    let gtd = ex.place_order(T0 + 6, buyer(6), &r).unwrap();
    let mut back = Exchange::restore(&ex.snapshot(), 10_000).unwrap();
    assert_eq!(back.state_hash(), ex.state_hash());
    // from here both behave alike: the expiry, then an ask filling the best two
    for e in [&mut ex, &mut back] {
        e.advance_time(T0 + 50);
        ask(e, 0, H0 + 1, 1_000_000, 16);
    }
    assert_eq!(back.state_hash(), ex.state_hash());
    assert_eq!(state_of(&back, 6, gtd.order_id), pb::OrderState::Expired);
    let filled: Vec<u64> = ex
        .engine()
        .allocations()
        .iter()
        .map(|a| a.buyer)
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    assert_eq!(filled, vec![3, 4], "the two best limits");
    let journal = ex.take_journal();
    let mut again = Exchange::new(10_000);
    for e in &journal {
        again.replay(e.seq, e.ts, &e.command).unwrap();
    }
    assert_eq!(again.state_hash(), ex.state_hash());
}

/// Random markets with resting blocks (fewer per hour than the retry examines at once):
/// after every command no resting block could fill (the reference finds no way), every
/// block that filled holds the same GPUs in every hour within its limit, no GPU-hour is
/// sold twice, and the journal and a snapshot rebuild the same state.
#[test]
fn random_resting_blocks_never_wait_when_they_could_fill() {
    let (mut from_rest, mut on_entry, mut waiting, mut groups) = (0, 0, 0, 0);
    for seed in 0..40u64 {
        let mut rng = Rng(1000 + seed);
        let hours = 4i64;
        let nodes: Vec<usize> = (0..1 + rng.next() % 3)
            .map(|_| 1 + (rng.next() % 2) as usize)
            .collect();
        let mut ex = market(hours, &nodes);
        let sellers: Vec<u64> = (0..nodes.len() as u64).map(|c| 10 + c).collect();
        // resting blocks: id -> (request, first hour)
        // resting blocks and groups: id -> alternatives (one for a block), each
        // (request, first hour)
        let mut open: BTreeMap<u64, Vec<(pb::PlaceOrderRequest, i64)>> = BTreeMap::new();
        let mut placed = 0;
        let mut ts = T0 + 1;
        for _ in 0..70 {
            ts += 1;
            let h = H0 + (rng.next() % hours as u64) as i64;
            match rng.next() % 4 {
                0 | 1 => {
                    let c = (rng.next() % nodes.len() as u64) as usize;
                    let r = pb::PlaceOrderRequest {
                        product_id: pid(h),
                        side: pb::Side::Sell as i32,
                        price_micros: 1_000_000 + (rng.next() % 20) as i64 * 10_000,
                        quantity: 1 + (rng.next() % 8) as i64,
                        cluster_id: format!("c{c}"),
                        ..Default::default()
                    };
                    let _ = ex.place_order(ts, seller(sellers[c]), &r);
                }
                2 => {
                    let gang = [1u32, 2, 4][(rng.next() % 3) as usize];
                    let r = pb::PlaceOrderRequest {
                        product_id: pid(h),
                        side: pb::Side::Buy as i32,
                        price_micros: 1_100_000,
                        quantity: gang as i64,
                        time_in_force: pb::TimeInForce::Ioc as i32,
                        gang,
                        ..Default::default()
                    };
                    let _ = ex.place_order(ts, buyer(2), &r);
                }
                _ if placed < 12 || open.is_empty() => {
                    placed += 1;
                    let alternative = |rng: &mut Rng, tif: pb::TimeInForce| {
                        let n = 1 + (rng.next() % 3) as u32;
                        let first = H0 + (rng.next() % (hours as u64 - n as u64 + 1)) as i64;
                        // (one hour without a window is an hourly order, not a block)
                        let window = if n == 1 || rng.next() % 3 == 0 {
                            (H0 + hours - first) as u32
                        } else {
                            0
                        };
                        let gang = [1u32, 2, 4, 8][(rng.next() % 4) as usize];
                        let r = pb::PlaceOrderRequest {
                            product_id: pid(first),
                            side: pb::Side::Buy as i32,
                            price_micros: 1_000_000 + (rng.next() % 25) as i64 * 10_000,
                            quantity: gang as i64 * (1 + (rng.next() % 2) as i64),
                            time_in_force: tif as i32,
                            gang,
                            hours: n,
                            window_hours: window,
                            ..Default::default()
                        };
                        (r, first)
                    };
                    let tif = if rng.next() % 4 == 0 {
                        pb::TimeInForce::Fok
                    } else {
                        pb::TimeInForce::Gtc
                    };
                    let (o, alts) = if tif == pb::TimeInForce::Gtc && rng.next() % 3 == 0 {
                        // a resting one-of group of two
                        let alts = vec![alternative(&mut rng, tif), alternative(&mut rng, tif)];
                        let g = pb::PlaceOneOfRequest {
                            alternatives: alts.iter().map(|a| a.0.clone()).collect(),
                            client_order_id: String::new(),
                        };
                        (ex.place_one_of(ts, buyer(2), &g).unwrap(), alts)
                    } else {
                        let a = alternative(&mut rng, tif);
                        (ex.place_order(ts, buyer(2), &a.0).unwrap(), vec![a])
                    };
                    if o.state == pb::OrderState::Filled as i32 {
                        on_entry += 1;
                    } else if o.state == pb::OrderState::Open as i32 {
                        groups += (alts.len() > 1) as usize;
                        open.insert(o.order_id, alts);
                    }
                }
                _ => {
                    // the owner cancels one of them
                    let id = *open.keys().nth(rng.next() as usize % open.len()).unwrap();
                    ex.cancel_order(ts, buyer(2), &pb::CancelOrderRequest { order_id: id })
                        .unwrap();
                    open.remove(&id);
                }
            }
            let ids: Vec<u64> = open.keys().copied().collect();
            for id in ids {
                let alts = open[&id].clone();
                match state_of(&ex, 2, id) {
                    pb::OrderState::Open => {
                        for (r, first) in &alts {
                            let way = reference(&ex, &sellers, &nodes, r, *first, 2);
                            assert_eq!(way, None, "seed {seed}: {id} rests but could fill");
                        }
                    }
                    pb::OrderState::Filled => {
                        from_rest += 1;
                        open.remove(&id);
                        // the alternative it became; it alone traded
                        let o = ex
                            .get_order(
                                buyer(2),
                                &pb::GetOrderRequest {
                                    order_id: id,
                                    ..Default::default()
                                },
                            )
                            .unwrap();
                        let (r, first) = alts
                            .iter()
                            .find(|(r, _)| {
                                r.product_id == o.product_id
                                    && r.hours == o.hours
                                    && r.window_hours == o.window_hours
                                    && r.price_micros == o.price_micros
                                    && r.quantity == o.quantity
                            })
                            .cloned()
                            .expect("one of its alternatives");
                        let got = held(&ex, id);
                        let span = r.window_hours.max(r.hours) as i64;
                        assert!(
                            got.keys().all(|&h| first <= h && h < first + span),
                            "seed {seed}: hours outside the alternative that filled"
                        );
                        assert_eq!(got.len(), r.hours as usize, "seed {seed}");
                        let one = got.values().next().unwrap().clone();
                        assert!(got.values().all(|g| *g == one), "seed {seed}: same GPUs");
                        let total: u32 = one.1.iter().map(|s| s.1.count_ones()).sum();
                        assert_eq!(total as i64, r.quantity);
                        let o = ex
                            .get_order(
                                buyer(2),
                                &pb::GetOrderRequest {
                                    order_id: id,
                                    ..Default::default()
                                },
                            )
                            .unwrap();
                        let paid: i128 = o
                            .fills
                            .iter()
                            .map(|f| f.price_micros as i128 * f.quantity as i128)
                            .sum();
                        let budget = r.price_micros as i128 * r.quantity as i128 * r.hours as i128;
                        assert!(paid <= budget, "seed {seed}: over its limit");
                    }
                    other => panic!(
                        "seed {seed}: block {id} is {other:?}: {:?} {alts:?}",
                        ex.get_order(
                            buyer(2),
                            &pb::GetOrderRequest {
                                order_id: id,
                                ..Default::default()
                            }
                        )
                    ),
                }
            }
        }
        waiting += open.len();
        let _ = &groups;
        let mut seen: BTreeMap<(u32, i64, u32), u64> = BTreeMap::new();
        for a in ex.engine().allocations() {
            for s in &a.slots {
                let m = seen.entry((a.cluster, a.hour, s.node)).or_default();
                assert_eq!(*m & s.gpus, 0, "seed {seed}: a GPU-hour sold twice");
                *m |= s.gpus;
            }
        }
        let restored = Exchange::restore(&ex.snapshot(), 10_000).unwrap();
        assert_eq!(restored.state_hash(), ex.state_hash(), "seed {seed}");
        let journal = ex.take_journal();
        let mut back = Exchange::new(10_000);
        for e in &journal {
            back.replay(e.seq, e.ts, &e.command).unwrap();
        }
        assert_eq!(back.state_hash(), ex.state_hash(), "seed {seed}");
    }
    assert!(
        from_rest >= 20 && on_entry >= 20 && waiting >= 20 && groups >= 10,
        "filled from rest {from_rest}, on entry {on_entry}, left waiting {waiting}, \
         groups resting {groups}"
    );
}

#[test]
fn deep_resting_blocks_take_turns_within_the_bound() {
    use spotex_core::{RETRY_TOP, RETRY_TURN};
    let mut ex = market(2, &[4]);
    ask(&mut ex, 0, H0, 1_000_000, 32);
    // 40 blocks ahead of it that can never fill (more GPUs than the cluster has)
    let deep = 40u64;
    for k in 0..deep {
        ex.place_order(T0 + 2, buyer(100 + k), &resting(H0, 2, 2_000_000, 64))
            .unwrap();
    }
    let last = ex
        .place_order(T0 + 3, buyer(2), &resting(H0, 2, 1_000_000, 8))
        .unwrap();
    // enough in the second hour at once; each later ask there is one more look
    let mut asks = 0;
    while state_of(&ex, 2, last.order_id) == pb::OrderState::Open {
        ask(&mut ex, 0, H0 + 1, 1_000_000, if asks == 0 { 8 } else { 1 });
        asks += 1;
        assert!(asks < 10, "never examined");
    }
    // not among the best examined on the first ask, but its turn came within the bound
    let rest = deep as usize + 1 - RETRY_TOP;
    assert!(
        asks >= 2,
        "examined at once although {deep} blocks are ahead"
    );
    assert!(asks <= 1 + rest.div_ceil(RETRY_TURN), "took {asks} asks");
}

/// Random baskets of buys and sells over random books: a basket fills exactly when its
/// legs, sent one by one as immediate-or-cancel orders to a copy of the exchange, would
/// every one fill completely, and then leaves the same market; otherwise nothing trades.
#[test]
fn random_baskets_fill_exactly_when_every_leg_would_alone() {
    let (mut all, mut none) = (0, 0);
    for seed in 0..60u64 {
        let mut rng = Rng(7_000 + seed);
        let hours = 3i64;
        let nodes: Vec<usize> = (0..2 + rng.next() % 2)
            .map(|_| 1 + (rng.next() % 2) as usize)
            .collect();
        let mut ex = market(hours, &nodes);
        let trader = Caller {
            account: 10, // the seller of c0, buying too
            buyer: true,
            seller: true,
        };
        let mut ts = T0 + 1;
        for _ in 0..12 {
            ts += 1;
            let h = H0 + (rng.next() % hours as u64) as i64;
            let c = 1 + (rng.next() % (nodes.len() as u64 - 1)) as usize;
            let r = pb::PlaceOrderRequest {
                product_id: pid(h),
                side: pb::Side::Sell as i32,
                price_micros: 1_000_000 + (rng.next() % 10) as i64 * 10_000,
                quantity: 1 + (rng.next() % 6) as i64,
                cluster_id: format!("c{c}"),
                ..Default::default()
            };
            let _ = ex.place_order(ts, seller(10 + c as u64), &r);
            let bid = pb::PlaceOrderRequest {
                product_id: pid(H0 + (rng.next() % hours as u64) as i64),
                side: pb::Side::Buy as i32,
                price_micros: 900_000 + (rng.next() % 10) as i64 * 10_000,
                quantity: 1 + (rng.next() % 4) as i64,
                gang: [1u32, 2][(rng.next() % 2) as usize],
                ..Default::default()
            };
            let _ = ex.place_order(ts, buyer(3), &bid);
        }
        for _ in 0..6 {
            ts += 1;
            // up to four legs, no product and side twice
            let mut legs: Vec<pb::PlaceOrderRequest> = Vec::new();
            for _ in 0..1 + rng.next() % 4 {
                let h = H0 + (rng.next() % hours as u64) as i64;
                let sell = rng.next() % 3 == 0;
                let side = if sell { pb::Side::Sell } else { pb::Side::Buy };
                if legs
                    .iter()
                    .any(|l| l.product_id == pid(h) && l.side == side as i32)
                {
                    continue;
                }
                legs.push(pb::PlaceOrderRequest {
                    product_id: pid(h),
                    side: side as i32,
                    price_micros: if sell { 900_000 } else { 1_050_000 },
                    quantity: 1 + (rng.next() % 5) as i64,
                    cluster_id: if sell { "c0".into() } else { String::new() },
                    stp: (rng.next() % 3) as i32,
                    ..Default::default()
                });
            }
            // the legs alone, in order, on a copy
            let mut copy = Exchange::restore(&ex.snapshot(), 10_000).unwrap();
            let each = legs.iter().all(|l| {
                let mut l = l.clone();
                l.time_in_force = pb::TimeInForce::Ioc as i32;
                copy.place_order(ts, trader, &l)
                    .is_ok_and(|o| o.state == pb::OrderState::Filled as i32)
            });
            let (trades, hash) = (ex.engine().allocations().len(), ex.state_hash());
            let request = pb::PlaceBasketRequest { legs: legs.clone() };
            let Ok(got) = ex.place_basket(ts, trader, &request) else {
                // a leg that cannot be (more than the cluster has): refused, no change
                assert!(!each);
                assert_eq!(ex.state_hash(), hash, "seed {seed}");
                continue;
            };
            let states: Vec<i32> = got
                .results
                .iter()
                .map(|r| r.order.as_ref().unwrap().state)
                .collect();
            if each {
                all += 1;
                assert!(
                    states.iter().all(|&s| s == pb::OrderState::Filled as i32),
                    "seed {seed}: {legs:?}"
                );
                assert_eq!(ex.engine().state_hash(), copy.engine().state_hash());
            } else {
                none += 1;
                assert!(
                    states
                        .iter()
                        .all(|&s| s == pb::OrderState::Cancelled as i32),
                    "seed {seed}: {legs:?}"
                );
                assert_eq!(ex.engine().allocations().len(), trades, "seed {seed}");
            }
        }
        let journal = ex.take_journal();
        let mut back = Exchange::new(10_000);
        for e in &journal {
            back.replay(e.seq, e.ts, &e.command).unwrap();
        }
        assert_eq!(back.state_hash(), ex.state_hash(), "seed {seed}");
    }
    assert!(all >= 30 && none >= 30, "filled {all}, cancelled {none}");
}

#[test]
fn a_resting_one_of_group_fills_one_alternative_and_the_others_go_with_it() {
    let mut ex = market(3, &[1, 1]);
    let alt = |first: i64| resting(first, 2, 1_000_000, 8);
    let group = |alts: Vec<pb::PlaceOrderRequest>| pb::PlaceOneOfRequest {
        alternatives: alts,
        client_order_id: String::new(),
    };
    // hours 0-1 or hours 1-2, both waiting
    let g = ex
        .place_one_of(T0 + 2, buyer(2), &group(vec![alt(H0), alt(H0 + 1)]))
        .unwrap();
    assert_eq!(g.state, pb::OrderState::Open as i32);
    assert_eq!(g.product_id, pid(H0), "as its first alternative");
    assert_eq!(
        ex.engine().open_order_count(),
        1,
        "one order, two alternatives"
    );
    // hour 1 from c0: neither alternative whole yet; hour 2 from c0: hours 1-2 fill
    ask(&mut ex, 0, H0 + 1, 1_000_000, 8);
    assert_eq!(state_of(&ex, 2, g.order_id), pb::OrderState::Open);
    ex.take_round();
    ask(&mut ex, 0, H0 + 2, 1_000_000, 8);
    let o = ex
        .get_order(
            buyer(2),
            &pb::GetOrderRequest {
                order_id: g.order_id,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(o.state, pb::OrderState::Filled as i32);
    assert_eq!(
        o.product_id,
        pid(H0 + 1),
        "it became the alternative that filled"
    );
    let hours: Vec<&str> = o.fills.iter().map(|f| f.product_id.as_str()).collect();
    assert_eq!(hours, [pid(H0 + 1), pid(H0 + 2)]);
    let round = ex.take_round();
    assert!(round
        .executions
        .iter()
        .any(|(a, e)| *a == 2 && e.kind == "block_allocated"));
    // the other alternative went with it: hours 0-1 offered again, nothing more trades
    ask(&mut ex, 1, H0, 1_000_000, 8);
    ask(&mut ex, 1, H0 + 1, 1_000_000, 8);
    assert_eq!(ex.engine().open_order_count(), 2, "only the two asks");
    assert!(ex
        .engine()
        .allocations()
        .iter()
        .all(|a| a.buy_order != g.order_id || a.hour > H0));
    assert_eq!(
        ex.engine().allocations().len(),
        2,
        "the group's two hours only"
    );

    // a resting group ends whole: cancelled, or at the last gate closure of its hours
    let mut ex = market(3, &[1, 1]);
    let g = ex
        .place_one_of(T0 + 2, buyer(2), &group(vec![alt(H0), alt(H0 + 1)]))
        .unwrap();
    let c = ex
        .cancel_order(
            T0 + 3,
            buyer(2),
            &pb::CancelOrderRequest {
                order_id: g.order_id,
            },
        )
        .unwrap();
    assert_eq!(c.state, pb::OrderState::Cancelled as i32);
    assert_eq!(ex.engine().open_order_count(), 0);
    let g = ex
        .place_one_of(T0 + 4, buyer(2), &group(vec![alt(H0), alt(H0 + 1)]))
        .unwrap();
    let back = Exchange::restore(&ex.snapshot(), 10_000).unwrap();
    assert_eq!(back.state_hash(), ex.state_hash());
    // hour 0 closes: the first alternative can no longer fill, the second still can
    ex.advance_time(H0 * HOUR - HOUR);
    assert_eq!(state_of(&ex, 2, g.order_id), pb::OrderState::Open);
    ask(&mut ex, 0, H0 + 1, 1_000_000, 8);
    ask(&mut ex, 0, H0 + 2, 1_000_000, 8);
    assert_eq!(state_of(&ex, 2, g.order_id), pb::OrderState::Filled);
    let journal = ex.take_journal();
    let mut again = Exchange::new(10_000);
    for e in &journal {
        again.replay(e.seq, e.ts, &e.command).unwrap();
    }
    assert_eq!(again.state_hash(), ex.state_hash());

    // a group is all at once or all resting, with one time in force
    let mut mixed = alt(H0 + 1);
    mixed.time_in_force = pb::TimeInForce::Fok as i32;
    let err = ex
        .place_one_of(T0 + 5, buyer(2), &group(vec![alt(H0 + 1), mixed]))
        .unwrap_err();
    assert_eq!(err.reason, "INVALID_GROUP");
}
