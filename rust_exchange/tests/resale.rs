//! Resale: a holder offers GPUs of an allocation as an ask; each fill splits the
//! allocation (the buyer's names it as parent), ids stay, a fee is charged to the
//! seller, and the cluster owner's schedule follows the GPUs to their new holder.

use std::collections::BTreeMap;

use spotex_core::product::format_hour;
use spotex_core::workload::Rng;
use spotex_exchange::{pb, Caller, Exchange};

mod common;
use common::*;

const OWNER: u64 = 10;

fn pid(hour: i64) -> String {
    format!("H100/us-east/{}", format_hour(hour))
}

fn trader(account: u64) -> Caller {
    Caller {
        account,
        buyer: true,
        seller: false,
    }
}

/// `hours` products from H0; cluster "c0" of OWNER: `nodes` nodes of 8 GPUs, all on
/// offer at $2 every hour.
fn market(hours: i64, nodes: usize) -> Exchange {
    let mut ex = Exchange::new(10_000);
    ex.set_resale_fee_bps(150);
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
    let cap = capacity("c0", "H100", nodes, H0, H0 + hours);
    ex.register_capacity(T0, seller(OWNER), &cap).unwrap();
    let ask = pb::PlaceOrderRequest {
        product_id: pid(H0),
        side: pb::Side::Sell as i32,
        price_micros: 2_000_000,
        quantity: 8 * nodes as i64,
        cluster_id: "c0".into(),
        ..Default::default()
    };
    let range = pb::PlaceAskRangeRequest {
        ask: Some(ask),
        hours: hours as u32,
    };
    let placed = ex.place_ask_range(T0, seller(OWNER), &range).unwrap();
    assert!(placed.results.iter().all(|r| r.code == 0));
    ex
}

fn bid(hour: i64, qty: i64, price: i64, gang: u32) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        product_id: pid(hour),
        side: pb::Side::Buy as i32,
        price_micros: price,
        quantity: qty,
        gang,
        time_in_force: pb::TimeInForce::Ioc as i32,
        ..Default::default()
    }
}

fn allocations(ex: &Exchange, who: u64) -> Vec<pb::Allocation> {
    let r = pb::ListAllocationsRequest {
        page_size: 1000,
        ..Default::default()
    };
    ex.list_allocations(trader(who), &r).unwrap().allocations
}

fn gpus(a: &pb::Allocation) -> Vec<(String, Vec<u32>)> {
    a.slots
        .iter()
        .map(|s| (s.node_id.clone(), s.gpu_indices.clone()))
        .collect()
}

#[test]
fn a_block_s_last_hours_resold_split_its_allocations_and_follow_the_new_owner() {
    let mut ex = market(24, 2);
    let block = pb::PlaceOrderRequest {
        hours: 24,
        ..bid(H0, 8, 2_000_000, 8)
    };
    let first = ex.place_order(T0, trader(2), &block).unwrap();
    assert_eq!(first.state, pb::OrderState::Filled as i32);
    let bought = allocations(&ex, 2);
    assert_eq!(bought.len(), 24);

    // buyer 2 resells the last 8 hours
    let resell = pb::ResellRequest {
        order_id: first.order_id,
        from_hour: H0 + 16,
        price_micros: 3_000_000,
        time_in_force: pb::TimeInForce::Gtc as i32,
        client_order_id: "tail".into(),
        ..Default::default()
    };
    let asks = ex.resell(T0, trader(2), &resell).unwrap().results;
    assert_eq!(asks.len(), 8);
    for (k, r) in asks.iter().enumerate() {
        let o = r.order.as_ref().expect("placed");
        assert_eq!(o.resell_trade_id, bought[16 + k].trade_id);
        assert_eq!(o.resale_fee_bps, 150);
        assert_eq!(o.quantity, 8);
        assert_eq!(o.product_id, pid(H0 + 16 + k as i64));
        assert_eq!(o.client_order_id, format!("tail#{k}"));
    }
    // on offer already: a second resale of the same hours is refused, changing nothing
    let hash = ex.state_hash();
    let again = ex.resell(T0, trader(2), &resell).unwrap().results;
    assert!(again.iter().all(|r| r.reason == "INVALID_RESALE"));
    assert_eq!(ex.state_hash(), hash);

    // buyer 3 takes them hour by hour (the owner's own asks are cheaper, so it pays
    // the resale's price only once the owner's are gone: buy the owner's first)
    for h in 16..24 {
        ex.place_order(T0, trader(4), &bid(H0 + h, 8, 2_000_000, 1))
            .unwrap();
        let o = ex
            .place_order(T0, trader(3), &bid(H0 + h, 8, 3_000_000, 4))
            .unwrap();
        assert_eq!(o.filled_quantity, 8, "hour {h}");
    }
    let theirs = allocations(&ex, 3);
    assert_eq!(theirs.len(), 8);
    let ours = allocations(&ex, 2);
    for (k, a) in theirs.iter().enumerate() {
        let parent = &bought[16 + k];
        assert_eq!(a.parent_trade_id, parent.trade_id);
        assert_eq!(gpus(a), gpus(parent), "the same concrete GPUs");
        assert_eq!(a.seller_account, 2);
        assert_eq!(a.price_micros, 3_000_000);
        assert_eq!(a.fee_micros, 3_000_000 * 8 * 150 / 10_000);
        // the parent keeps its id, and now holds nothing
        let p = ours.iter().find(|x| x.trade_id == parent.trade_id).unwrap();
        assert_eq!(p.quantity, 0);
    }
    for (k, a) in ours.iter().take(16).enumerate() {
        assert_eq!(gpus(a), gpus(&bought[k]), "hours not resold stay");
    }
    // the owner's schedule: every hour still provisioned, the last 8 for buyer 3
    let schedule: BTreeMap<i64, Vec<u64>> = allocations(&ex, OWNER)
        .iter()
        .filter(|a| a.as_provider && a.quantity > 0 && a.buyer_account != 4)
        .fold(BTreeMap::new(), |mut m, a| {
            m.entry(a.hour).or_default().push(a.buyer_account);
            m
        });
    assert_eq!(schedule.len(), 24);
    for (hour, owners) in &schedule {
        let want = if *hour >= H0 + 16 { 3 } else { 2 };
        assert_eq!(owners, &vec![want], "hour {hour}");
    }
    // the reseller's orders show the fees paid
    let fees: i64 = asks
        .iter()
        .map(|r| {
            let id = r.order.as_ref().unwrap().order_id;
            let got = ex
                .get_order(
                    trader(2),
                    &pb::GetOrderRequest {
                        order_id: id,
                        ..Default::default()
                    },
                )
                .unwrap();
            assert_eq!(got.fills.len(), 1);
            assert_eq!(got.fills[0].fee_micros, got.fees_micros);
            got.fees_micros
        })
        .sum();
    assert_eq!(fees, 8 * (3_000_000 * 8 * 150 / 10_000));
    // nothing left to resell in those hours
    let none = ex.resell(T0, trader(2), &resell).unwrap_err();
    assert_eq!(none.reason, "INVALID_RESALE");
    assert_recovers(&mut ex);
}

#[test]
fn resale_is_checked_and_a_refusal_changes_nothing() {
    let mut ex = market(2, 1);
    let o = ex
        .place_order(T0, trader(2), &bid(H0, 8, 2_000_000, 1))
        .unwrap();
    let trade = allocations(&ex, 2)[0].trade_id;
    let ask = |gpus: Vec<pb::Slot>, qty: i64| pb::PlaceOrderRequest {
        side: pb::Side::Sell as i32,
        price_micros: 2_500_000,
        quantity: qty,
        resell_trade_id: trade,
        resell_gpus: gpus,
        ..Default::default()
    };
    let slot = |node: &str, idx: Vec<u32>| pb::Slot {
        node_id: node.into(),
        gpu_indices: idx,
        ..Default::default()
    };
    let hash = ex.state_hash();
    let refusals = [
        // someone else's allocation, or one that does not exist: the same answer
        (trader(3), ask(vec![], 0)),
        (
            trader(2),
            pb::PlaceOrderRequest {
                resell_trade_id: 999,
                ..ask(vec![], 0)
            },
        ),
        // GPUs not held, a node of another cluster, a wrong quantity
        (trader(2), ask(vec![slot("n0", vec![8])], 0)),
        (trader(2), ask(vec![slot("n9", vec![0])], 0)),
        (trader(2), ask(vec![slot("n0", vec![0, 1])], 3)),
        // a resale is a plain one-hour ask
        (
            trader(2),
            pb::PlaceOrderRequest {
                display_quantity: 2,
                time_in_force: pb::TimeInForce::Gtc as i32,
                ..ask(vec![], 0)
            },
        ),
        (
            trader(2),
            pb::PlaceOrderRequest {
                side: pb::Side::Buy as i32,
                ..ask(vec![], 0)
            },
        ),
        // another hour's product
        (
            trader(2),
            pb::PlaceOrderRequest {
                product_id: pid(H0 + 1),
                ..ask(vec![], 0)
            },
        ),
    ];
    for (who, r) in &refusals {
        let e = ex.place_order(T0, *who, r).unwrap_err();
        assert_eq!(e.reason, "INVALID_RESALE", "{r:?}");
        assert_eq!(ex.state_hash(), hash);
    }
    // half of it, resting; the same GPUs again are on offer already, the others not
    let half = pb::PlaceOrderRequest {
        time_in_force: pb::TimeInForce::Gtc as i32,
        ..ask(vec![slot("n0", vec![0, 1, 2, 3])], 0)
    };
    let first = ex.place_order(T0, trader(2), &half).unwrap();
    assert_eq!(first.quantity, 4);
    let e = ex.place_order(T0, trader(2), &half).unwrap_err();
    assert_eq!(e.reason, "INVALID_RESALE");
    let ioc = pb::PlaceOrderRequest {
        time_in_force: pb::TimeInForce::Ioc as i32,
        ..ask(vec![], 0)
    };
    let rest = ex.place_order(T0, trader(2), &ioc).unwrap();
    assert_eq!(rest.quantity, 4, "all not on offer: GPUs 4 to 7");
    assert_eq!(rest.state, pb::OrderState::Cancelled as i32, "IOC, no bid");
    // cancelled, its GPUs may be offered again
    ex.cancel_order(
        T0,
        trader(2),
        &pb::CancelOrderRequest {
            order_id: first.order_id,
        },
    )
    .unwrap();
    ex.place_order(T0, trader(2), &half).unwrap();
    let _ = o;
    assert_recovers(&mut ex);
}

/// Every holder of every hour, from the allocations: no GPU held twice, the GPUs held
/// are exactly the GPUs sold, and each lineage sums to its original allocation.
fn check_holdings(ex: &Exchange, original: &BTreeMap<u64, Vec<(u32, u64)>>, seed: u64) {
    let all = ex.engine().allocations();
    let mut held: BTreeMap<i64, BTreeMap<u32, u64>> = BTreeMap::new();
    for a in all {
        let hour = held.entry(a.hour).or_default();
        for s in &a.slots {
            let m = hour.entry(s.node).or_default();
            assert_eq!(*m & s.gpus, 0, "seed {seed}: a GPU held twice");
            *m |= s.gpus;
        }
    }
    for (&hour, nodes) in &held {
        let sold = ex.engine().utilisation(0, hour).unwrap().sold;
        let total: i64 = nodes.values().map(|m| m.count_ones() as i64).sum();
        assert_eq!(
            total, sold,
            "seed {seed}: held is what was sold, hour {hour}"
        );
    }
    // each allocation's GPUs now, with its descendants', are its original GPUs
    let mut tree: BTreeMap<u64, Vec<u64>> = BTreeMap::new();
    for a in all {
        if let Some(p) = a.parent {
            tree.entry(p).or_default().push(a.trade_id);
        }
    }
    let by_id: BTreeMap<u64, &spotex_core::Allocation> =
        all.iter().map(|a| (a.trade_id, a)).collect();
    fn union(
        id: u64,
        tree: &BTreeMap<u64, Vec<u64>>,
        by_id: &BTreeMap<u64, &spotex_core::Allocation>,
        into: &mut BTreeMap<u32, u64>,
    ) {
        for s in &by_id[&id].slots {
            let m = into.entry(s.node).or_default();
            assert_eq!(*m & s.gpus, 0);
            *m |= s.gpus;
        }
        for &c in tree.get(&id).map_or(&[][..], |v| v) {
            union(c, tree, by_id, into);
        }
    }
    for a in all {
        let mut got = BTreeMap::new();
        union(a.trade_id, &tree, &by_id, &mut got);
        let want: BTreeMap<u32, u64> = original[&a.trade_id].iter().copied().collect();
        assert_eq!(got, want, "seed {seed}: lineage of {}", a.trade_id);
    }
}

#[test]
fn random_resale_chains_never_hold_a_gpu_twice_and_lineages_sum_to_their_originals() {
    let mut chains = 0;
    for seed in 0..40u64 {
        let mut rng = Rng(seed);
        let hours = 3;
        let mut ex = market(hours, 2);
        let mut original: BTreeMap<u64, Vec<(u32, u64)>> = BTreeMap::new();
        let mut resting: Vec<(u64, u64)> = Vec::new(); // (account, order id)
        for _ in 0..120 {
            let who = 2 + rng.below(4);
            let hour = H0 + rng.below(hours as u64) as i64;
            match rng.below(4) {
                0 | 1 => {
                    let gang = [1, 2, 4][rng.below(3) as usize];
                    let qty = gang as i64 * (1 + rng.below(3) as i64);
                    let price = 1_500_000 + 500_000 * rng.below(4) as i64;
                    let _ = ex.place_order(T0, trader(who), &bid(hour, qty, price, gang));
                }
                2 => {
                    // resell some GPUs of something it holds
                    let mine: Vec<_> = ex
                        .engine()
                        .allocations()
                        .iter()
                        .filter(|a| a.buyer == who && !a.slots.is_empty())
                        .map(|a| (a.trade_id, a.slots.clone()))
                        .collect();
                    if mine.is_empty() {
                        continue;
                    }
                    let (trade, slots) = &mine[rng.below(mine.len() as u64) as usize];
                    let s = slots[rng.below(slots.len() as u64) as usize];
                    let picked: Vec<u32> = (0..64u32)
                        .filter(|i| s.gpus >> i & 1 == 1 && rng.below(2) == 0)
                        .collect();
                    let r = pb::PlaceOrderRequest {
                        side: pb::Side::Sell as i32,
                        price_micros: 1_500_000 + 500_000 * rng.below(4) as i64,
                        time_in_force: pb::TimeInForce::Gtc as i32,
                        resell_trade_id: *trade,
                        resell_gpus: if picked.is_empty() {
                            vec![]
                        } else {
                            vec![pb::Slot {
                                node_id: format!("n{}", s.node),
                                gpu_indices: picked,
                                ..Default::default()
                            }]
                        },
                        ..Default::default()
                    };
                    if let Ok(o) = ex.place_order(T0, trader(who), &r) {
                        resting.push((who, o.order_id));
                    }
                }
                _ => {
                    if !resting.is_empty() {
                        let (who, id) =
                            resting.swap_remove(rng.below(resting.len() as u64) as usize);
                        let _ = ex.cancel_order(
                            T0,
                            trader(who),
                            &pb::CancelOrderRequest { order_id: id },
                        );
                    }
                }
            }
            for a in ex.engine().allocations() {
                original
                    .entry(a.trade_id)
                    .or_insert_with(|| a.slots.iter().map(|s| (s.node, s.gpus)).collect());
            }
            check_holdings(&ex, &original, seed);
        }
        // a chain: GPUs resold by someone who bought them in a resale
        let all = ex.engine().allocations();
        let resold: Vec<u64> = all.iter().filter_map(|a| a.parent).collect();
        if all
            .iter()
            .any(|a| a.parent.is_some() && resold.contains(&a.trade_id))
        {
            chains += 1;
        }
        assert_recovers(&mut ex);
    }
    assert!(chains >= 10, "only {chains} of 40 markets resold a resale");
}
