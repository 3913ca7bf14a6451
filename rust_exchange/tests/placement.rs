//! Where the GPUs sit: nodes registered with their place (block, rack, NVLink domain),
//! carried into every allocation, kept by snapshots and the journal.

use spotex_core::product::format_hour;
use spotex_exchange::pb;
use spotex_exchange::Exchange;

mod common;
use common::*;

fn pid(hour: i64) -> String {
    format!("GB200/us-south/{}", format_hour(hour))
}

/// A node of 4 GPUs at `block/rack/domain` (the NVL72 shape: 18 such trays a domain).
fn node(id: &str, block: &str, rack: &str, domain: &str) -> pb::Node {
    pb::Node {
        node_id: id.into(),
        gpus: 4,
        block: block.into(),
        rack: rack.into(),
        nvlink_domain: domain.into(),
    }
}

/// `hours` products from H0 and one cluster "c0" of seller 10 with these nodes.
fn market(hours: i64, nodes: Vec<pb::Node>) -> Exchange {
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
    let cap = pb::RegisterCapacityRequest {
        cluster_id: "c0".into(),
        sku: "GB200".into(),
        region: "us-south".into(),
        nodes,
        from_hour: H0,
        to_hour: H0 + hours,
    };
    ex.register_capacity(T0, seller(10), &cap).unwrap();
    ex
}

#[test]
fn nodes_carry_their_place_into_allocations_snapshots_and_the_journal() {
    let mut ex = market(
        1,
        vec![
            node("t0", "pod1", "r1", "nvl1"),
            node("t1", "pod1", "r1", "nvl1"),
            node("t2", "", "", ""),
        ],
    );
    let ask = pb::PlaceOrderRequest {
        product_id: pid(H0),
        side: pb::Side::Sell as i32,
        price_micros: 1_000_000,
        quantity: 12,
        cluster_id: "c0".into(),
        ..Default::default()
    };
    ex.place_order(T0, seller(10), &ask).unwrap();
    let bid = pb::PlaceOrderRequest {
        product_id: pid(H0),
        side: pb::Side::Buy as i32,
        price_micros: 1_000_000,
        quantity: 12,
        gang: 4,
        ..Default::default()
    };
    ex.place_order(T0, buyer(2), &bid).unwrap();
    let got = ex
        .list_allocations(buyer(2), &pb::ListAllocationsRequest::default())
        .unwrap()
        .allocations;
    let mut places: Vec<(String, String, String, String)> = got
        .iter()
        .flat_map(|a| a.slots.iter())
        .map(|s| {
            (
                s.node_id.clone(),
                s.block.clone(),
                s.rack.clone(),
                s.nvlink_domain.clone(),
            )
        })
        .collect();
    places.sort();
    let want = |n: &str, b: &str, r: &str, d: &str| (n.into(), b.into(), r.into(), d.into());
    assert_eq!(
        places,
        vec![
            want("t0", "pod1", "r1", "nvl1"),
            want("t1", "pod1", "r1", "nvl1"),
            want("t2", "", "", ""),
        ]
    );
    let back = Exchange::restore(&ex.snapshot(), 10_000).unwrap();
    assert_eq!(back.state_hash(), ex.state_hash());
    assert_eq!(
        back.engine().clusters()[0].spec.nodes[0].place.domain,
        "nvl1"
    );
    let journal = ex.take_journal();
    let mut again = Exchange::new(10_000);
    for e in &journal {
        again.replay(e.seq, e.ts, &e.command).unwrap();
    }
    assert_eq!(again.state_hash(), ex.state_hash());
    // a label the venue cannot keep is refused with the rest of the registration
    let bad = pb::RegisterCapacityRequest {
        cluster_id: "c1".into(),
        sku: "GB200".into(),
        region: "us-south".into(),
        nodes: vec![node("t9", "pod 1", "r1", "nvl1")],
        from_hour: H0,
        to_hour: H0 + 1,
    };
    assert_eq!(
        ex.register_capacity(T0, seller(11), &bad)
            .unwrap_err()
            .reason,
        "INVALID_CAPACITY"
    );
}

#[test]
fn a_node_without_a_label_is_alone_at_that_level() {
    use spotex_core::{Level, NodeSpec, Topology};
    let n = |id: &str, b: &str, r: &str, d: &str| NodeSpec {
        id: id.into(),
        gpus: 4,
        place: Topology {
            block: b.into(),
            rack: r.into(),
            domain: d.into(),
        },
    };
    let (a, b, c) = (
        n("a", "p", "r", "d"),
        n("b", "p", "r", ""),
        n("c", "p", "", ""),
    );
    assert_eq!(a.domain_at(Level::Domain), "p/r/d");
    assert_eq!(a.domain_at(Level::Rack), b.domain_at(Level::Rack));
    assert_ne!(b.domain_at(Level::Domain), c.domain_at(Level::Domain));
    assert_ne!(b.domain_at(Level::Domain), a.domain_at(Level::Domain));
    assert_eq!(a.domain_at(Level::Block), c.domain_at(Level::Block));
    assert_ne!(c.domain_at(Level::Rack), a.domain_at(Level::Rack));
    assert_eq!(c.domain_at(Level::Cluster), a.domain_at(Level::Cluster));
}

/// Cluster c0: NVLink domains nvl1 (trays t0, t1) and nvl2 (t2, t3, t4) in rack r1,
/// t5 alone in rack r2 of the same pod, and t6 with no labels; every GPU offered in
/// each of `hours` hours.
fn fleet(hours: i64) -> Exchange {
    let mut ex = market(
        hours,
        vec![
            node("t0", "pod1", "r1", "nvl1"),
            node("t1", "pod1", "r1", "nvl1"),
            node("t2", "pod1", "r1", "nvl2"),
            node("t3", "pod1", "r1", "nvl2"),
            node("t4", "pod1", "r1", "nvl2"),
            node("t5", "pod1", "r2", "nvl3"),
            node("t6", "", "", ""),
        ],
    );
    for h in 0..hours {
        let ask = pb::PlaceOrderRequest {
            product_id: pid(H0 + h),
            side: pb::Side::Sell as i32,
            price_micros: 1_000_000,
            quantity: 28,
            cluster_id: "c0".into(),
            ..Default::default()
        };
        ex.place_order(T0, seller(10), &ask).unwrap();
    }
    ex
}

fn bid(qty: i64, locality: pb::Locality) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        product_id: pid(H0),
        side: pb::Side::Buy as i32,
        price_micros: 1_000_000,
        quantity: qty,
        gang: 4,
        time_in_force: pb::TimeInForce::Ioc as i32,
        locality: locality as i32,
        ..Default::default()
    }
}

/// The nodes `order` holds, by name, sorted.
fn nodes_of(ex: &Exchange, account: u64, order: u64) -> Vec<String> {
    let mut got: Vec<String> = ex
        .list_allocations(buyer(account), &pb::ListAllocationsRequest::default())
        .unwrap()
        .allocations
        .into_iter()
        .filter(|a| a.buy_order_id == order)
        .flat_map(|a| a.slots.into_iter().map(|s| s.node_id))
        .collect();
    got.sort();
    got.dedup();
    got
}

#[test]
fn a_required_locality_fills_in_one_domain_best_fit_or_not_at_all() {
    let mut ex = fleet(1);
    // 8 GPUs in one NVLink domain: nvl1 (2 trays) fits tighter than nvl2 (3)
    let o = ex
        .place_order(T0, buyer(2), &bid(8, pb::Locality::NvlinkDomain))
        .unwrap();
    assert_eq!(o.state, pb::OrderState::Filled as i32);
    assert_eq!(nodes_of(&ex, 2, o.order_id), ["t0", "t1"]);
    assert_eq!(
        (o.placed_level, o.placed_domain.as_str()),
        (pb::Locality::NvlinkDomain as i32, "pod1/r1/nvl1")
    );
    // 12: only nvl2 holds three trays
    let o = ex
        .place_order(T0, buyer(2), &bid(12, pb::Locality::NvlinkDomain))
        .unwrap();
    assert_eq!(nodes_of(&ex, 2, o.order_id), ["t2", "t3", "t4"]);
    // 8 more: t5 and t6 are free but in no one domain, nor rack, nor block: nothing
    for level in [
        pb::Locality::NvlinkDomain,
        pb::Locality::Rack,
        pb::Locality::Block,
    ] {
        let o = ex.place_order(T0, buyer(2), &bid(8, level)).unwrap();
        assert_eq!(o.state, pb::OrderState::Cancelled as i32, "{level:?}");
        assert_eq!(o.filled_quantity, 0);
    }
    // preferred from the NVLink domain: it climbs to the cluster, and says so
    let mut prefer = bid(8, pb::Locality::NvlinkDomain);
    prefer.locality_preferred = true;
    let o = ex.place_order(T0, buyer(2), &prefer).unwrap();
    assert_eq!(o.state, pb::OrderState::Filled as i32);
    assert_eq!(nodes_of(&ex, 2, o.order_id), ["t5", "t6"]);
    assert_eq!(o.placed_level, pb::Locality::Cluster as i32);
}

#[test]
fn a_required_locality_waits_and_fills_when_a_domain_frees_up() {
    // two hours: t0 and t1 are sold in the second hour only
    let mut ex = fleet(2);
    let mut hourly = bid(8, pb::Locality::NvlinkDomain);
    hourly.product_id = pid(H0 + 1);
    ex.place_order(T0, buyer(3), &hourly).unwrap();
    // a two-hour block of 12 in one domain: nvl2 has three trays free in both hours
    let mut block = bid(12, pb::Locality::NvlinkDomain);
    block.hours = 2;
    block.time_in_force = pb::TimeInForce::Gtc as i32;
    let o = ex.place_order(T0, buyer(2), &block).unwrap();
    assert_eq!(nodes_of(&ex, 2, o.order_id), ["t2", "t3", "t4"]);
    // 8 more over both hours in one domain: none left; it waits, taking nothing
    block.quantity = 8;
    let w = ex.place_order(T0, buyer(2), &block).unwrap();
    assert_eq!(w.state, pb::OrderState::Open as i32);
    assert!(nodes_of(&ex, 2, w.order_id).is_empty());
}

#[test]
fn a_bid_next_to_an_allocation_it_holds_shares_its_domain() {
    let mut ex = fleet(1);
    // one tray: every node holds one gang, so the lowest name wins
    let first = ex
        .place_order(T0, buyer(2), &bid(4, pb::Locality::Node))
        .unwrap();
    assert_eq!(nodes_of(&ex, 2, first.order_id), ["t0"]);
    assert_eq!(first.placed_domain, "node:t0");
    let trade = first.fills[0].trade_id;
    // grow the job next to itself: the other tray of nvl1
    let mut near = bid(4, pb::Locality::NvlinkDomain);
    near.colocate_with = trade;
    let o = ex.place_order(T0, buyer(2), &near).unwrap();
    assert_eq!(nodes_of(&ex, 2, o.order_id), ["t1"]);
    assert_eq!(o.placed_domain, "pod1/r1/nvl1");
    // nvl1 is full: no more next to it, though nvl2 has room
    let o = ex.place_order(T0, buyer(2), &near).unwrap();
    assert_eq!(o.state, pb::OrderState::Cancelled as i32);
    // placement terms that cannot be, refused without a trace
    let theirs = ex.place_order(T0, buyer(3), &near).unwrap_err();
    assert_eq!(
        theirs.reason, "INVALID_PLACEMENT",
        "someone else's allocation"
    );
    let mut ask = bid(4, pb::Locality::Rack);
    ask.side = pb::Side::Sell as i32;
    ask.cluster_id = "c0".into();
    ask.gang = 1;
    let seq = ex.sequence();
    assert_eq!(
        ex.place_order(T0, seller(10), &ask).unwrap_err().reason,
        "INVALID_PLACEMENT"
    );
    let mut vague = bid(4, pb::Locality::Unspecified);
    vague.locality_preferred = true;
    assert_eq!(
        ex.place_order(T0, buyer(2), &vague).unwrap_err().reason,
        "INVALID_PLACEMENT"
    );
    let mut unknown = bid(4, pb::Locality::Rack);
    unknown.locality = 99;
    assert_eq!(
        ex.place_order(T0, buyer(2), &unknown).unwrap_err().reason,
        "INVALID_ENUM"
    );
    assert_eq!(ex.sequence(), seq, "refusals are not commands");
    let back = Exchange::restore(&ex.snapshot(), 10_000).unwrap();
    assert_eq!(back.state_hash(), ex.state_hash());
    let journal = ex.take_journal();
    let mut again = Exchange::new(10_000);
    for e in &journal {
        again.replay(e.seq, e.ts, &e.command).unwrap();
    }
    assert_eq!(again.state_hash(), ex.state_hash());
}

/// Random fleets (two clusters of labelled 4-GPU trays) and bids with required
/// locality: a filled bid's GPUs all sit in one domain at its level, the same in every
/// hour; and a bid that did not fill had no domain that could hold it. The reference
/// tries every cluster whose open asks carry the bid within its limit, and every domain
/// there, counting whole gangs free in every hour.
#[test]
fn random_required_locality_is_never_violated_and_never_missed() {
    use spotex_core::workload::Rng;
    use spotex_core::Level;
    let levels = [
        (pb::Locality::Node, Level::Node),
        (pb::Locality::NvlinkDomain, Level::Domain),
        (pb::Locality::Rack, Level::Rack),
        (pb::Locality::Block, Level::Block),
        (pb::Locality::Cluster, Level::Cluster),
    ];
    let (mut filled, mut missed) = (0, 0);
    for seed in 0..40u64 {
        let mut rng = Rng(seed);
        let hours = 2i64;
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
        let pick =
            |rng: &mut Rng, xs: &[&str]| xs[(rng.next() % xs.len() as u64) as usize].to_string();
        for c in 0..2u64 {
            let nodes = (0..4 + rng.next() % 5)
                .map(|i| pb::Node {
                    node_id: format!("t{i}"),
                    gpus: 4,
                    block: pick(&mut rng, &["p1", "p2"]),
                    rack: pick(&mut rng, &["r1", "r2"]),
                    nvlink_domain: pick(&mut rng, &["d1", "d2", "d3", ""]),
                })
                .collect();
            let cap = pb::RegisterCapacityRequest {
                cluster_id: format!("c{c}"),
                sku: "GB200".into(),
                region: "us-south".into(),
                nodes,
                from_hour: H0,
                to_hour: H0 + hours,
            };
            ex.register_capacity(T0, seller(10 + c), &cap).unwrap();
        }
        for step in 0..40 {
            let ts = T0 + step;
            let h = H0 + (rng.next() % hours as u64) as i64;
            match rng.next() % 3 {
                0 => {
                    let c = rng.next() % 2;
                    let ask = pb::PlaceOrderRequest {
                        product_id: pid(h),
                        side: pb::Side::Sell as i32,
                        price_micros: 1_000_000 + (rng.next() % 10) as i64 * 10_000,
                        quantity: 1 + (rng.next() % 8) as i64,
                        cluster_id: format!("c{c}"),
                        ..Default::default()
                    };
                    let _ = ex.place_order(ts, seller(10 + c), &ask);
                }
                1 => {
                    let mut b = bid(4, pb::Locality::Unspecified);
                    b.product_id = pid(h);
                    b.price_micros = 1_200_000;
                    let _ = ex.place_order(ts, buyer(3), &b);
                }
                _ => {
                    let (lp, level) = levels[(rng.next() % 5) as usize];
                    let n = 1 + (rng.next() % 2) as u32;
                    let mut b = bid(4 * (1 + (rng.next() % 2) as i64), lp);
                    b.product_id = pid(H0 + (rng.next() % (hours as u64 - n as u64 + 1)) as i64);
                    b.hours = n;
                    b.price_micros = 1_100_000;
                    let first = H0 + (0..hours).find(|k| pid(H0 + k) == b.product_id).unwrap();
                    let could = reference_fits(&ex, &b, first, level);
                    let o = ex.place_order(ts, buyer(2), &b).unwrap();
                    if o.state == pb::OrderState::Filled as i32 {
                        filled += 1;
                        assert!(
                            could,
                            "seed {seed}: filled where the reference finds no way"
                        );
                        // every GPU in one domain at the level, the same in every hour
                        // per hour: (domain, cluster, node) -> GPUs, over its trades
                        type Held = std::collections::BTreeMap<(String, u32, u32), u64>;
                        let mut by_hour: std::collections::BTreeMap<i64, Held> = Default::default();
                        for a in ex.engine().allocations() {
                            if a.buy_order == o.order_id {
                                let spec = &ex.engine().clusters()[a.cluster as usize].spec;
                                for s in &a.slots {
                                    let node = &spec.nodes[s.node as usize];
                                    let key = (node.domain_at(level), a.cluster, s.node);
                                    *by_hour.entry(a.hour).or_default().entry(key).or_default() |=
                                        s.gpus;
                                }
                            }
                        }
                        assert_eq!(by_hour.len(), n as usize);
                        let sets: Vec<Held> = by_hour.into_values().collect();
                        assert!(sets.iter().all(|s| *s == sets[0]), "seed {seed}: same GPUs");
                        let domains: std::collections::BTreeSet<(&String, u32)> =
                            sets[0].keys().map(|(d, c, _)| (d, *c)).collect();
                        assert_eq!(domains.len(), 1, "seed {seed}: {domains:?} at {level:?}");
                    } else {
                        missed += 1;
                        assert!(!could, "seed {seed}: a domain could hold {b:?}");
                    }
                }
            }
        }
    }
    assert!(
        filled >= 30 && missed >= 30,
        "filled {filled}, not {missed}"
    );
}

/// Whether some cluster's open asks (never the buyer's) carry `b` in every hour of its
/// span within its limit, and some domain there at `level` has its whole gangs free in
/// every hour.
fn reference_fits(
    ex: &Exchange,
    b: &pb::PlaceOrderRequest,
    first: i64,
    level: spotex_core::Level,
) -> bool {
    let hours: Vec<i64> = (first..first + b.hours as i64).collect();
    let gang = b.gang as i64;
    let budget = b.price_micros as i128 * b.quantity as i128 * b.hours as i128;
    for (c, cluster) in ex.engine().clusters().iter().enumerate() {
        let asks = ex
            .list_orders(
                seller(cluster.seller),
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
                .filter(|o| o.product_id == pid(h) && o.cluster_id == cluster.spec.id)
                .map(|o| (o.price_micros, o.order_id, o.remaining_quantity))
                .collect();
            mine.sort();
            let mut need = b.quantity;
            for (px, _, q) in mine {
                let take = need.min(q);
                cost += px as i128 * take as i128;
                need -= take;
            }
            ok &= need == 0;
        }
        if !ok || cost > budget {
            continue;
        }
        let nodes = &cluster.spec.nodes;
        let mut sold = vec![0u64; nodes.len()];
        for a in ex.engine().allocations() {
            if a.cluster as usize == c && hours.contains(&a.hour) {
                for s in &a.slots {
                    sold[s.node as usize] |= s.gpus;
                }
            }
        }
        let mut domains: std::collections::BTreeMap<String, i64> = Default::default();
        for (n, node) in nodes.iter().enumerate() {
            *domains.entry(node.domain_at(level)).or_default() +=
                (node.gpus as i64 - sold[n].count_ones() as i64) / gang;
        }
        if domains.values().any(|&g| g >= b.quantity / gang) {
            return true;
        }
    }
    false
}
