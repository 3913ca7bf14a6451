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
