//! Where the GPUs sit: nodes registered with their place (block, rack, NVLink domain),
//! carried into every allocation, kept by snapshots and the journal.

use spotex_core::product::format_hour;
use spotex_exchange::pb;
use spotex_exchange::{Caller, Exchange};

const HOUR: i64 = 3_600_000_000;
const H0: i64 = 490_000;
const T0: i64 = (H0 - 10) * HOUR;

fn seller(account: u64) -> Caller {
    Caller {
        account,
        buyer: false,
        seller: true,
    }
}

fn buyer(account: u64) -> Caller {
    Caller {
        account,
        buyer: true,
        seller: false,
    }
}

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
        ex.create_product(T0, &pid(H0 + h), 10_000, 1, (H0 + h) * HOUR - HOUR, None)
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
