//! Cluster ids belong to their seller (two sellers may both have an "iad-1"), refusals
//! say which rule was broken and reveal nobody else's clusters, and resale asks offer
//! only GPUs they hold and still sell.

use spotex_core::product::format_hour;
use spotex_exchange::{pb, Caller, Exchange};

mod common;
use common::*;

const A: u64 = 10;
const B: u64 = 11;

fn pid(hour: i64) -> String {
    format!("H100/us-east/{}", format_hour(hour))
}

fn order(hour: i64, side: pb::Side, price: i64, qty: i64) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        product_id: pid(hour),
        side: side as i32,
        price_micros: price,
        quantity: qty,
        ..Default::default()
    }
}

fn ask(hour: i64, price: i64, qty: i64, cluster: &str) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        cluster_id: cluster.into(),
        ..order(hour, pb::Side::Sell, price, qty)
    }
}

/// A cluster of `nodes` 8-GPU nodes named `{prefix}0`, `{prefix}1`, ...
fn cluster(
    id: &str,
    prefix: &str,
    nodes: usize,
    from: i64,
    to: i64,
) -> pb::RegisterCapacityRequest {
    let mut c = capacity(id, "H100", nodes, from, to);
    for (k, n) in c.nodes.iter_mut().enumerate() {
        n.node_id = format!("{prefix}{k}");
    }
    c
}

fn market(hours: i64) -> Exchange {
    let mut ex = Exchange::new(10_000);
    ex.set_resale_fee_bps(100);
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
    ex
}

fn allocations(ex: &Exchange, who: Caller) -> Vec<pb::Allocation> {
    let r = pb::ListAllocationsRequest {
        page_size: 1000,
        ..Default::default()
    };
    ex.list_allocations(who, &r).unwrap().allocations
}

fn no_other_seller(r: &spotex_exchange::Refusal) {
    let m = r.message.to_lowercase();
    assert!(
        !m.contains("another") && !m.contains("other seller") && !m.contains("exists"),
        "{r}"
    );
}

#[test]
fn two_sellers_each_sell_from_their_own_iad_1() {
    let mut ex = market(2);
    ex.register_capacity(T0, seller(A), &cluster("iad-1", "a", 1, H0, H0 + 2))
        .unwrap();
    // the same name under another seller is another cluster
    ex.register_capacity(T0, seller(B), &cluster("iad-1", "b", 2, H0, H0 + 2))
        .unwrap();
    // but not twice under one seller
    let twice = ex
        .register_capacity(T0, seller(B), &cluster("iad-1", "b", 1, H0, H0 + 2))
        .unwrap_err();
    assert_eq!(twice.reason, "DUPLICATE_CLUSTER");
    assert_eq!(twice.message, "you already have a cluster with this id");

    // each sells from its own: A has 8 GPUs, B 16
    ex.place_order(T0, seller(A), &ask(H0, 2_000_000, 8, "iad-1"))
        .unwrap();
    let too_many = ex
        .place_order(T0, seller(A), &ask(H0, 2_000_000, 16, "iad-1"))
        .unwrap_err();
    assert_eq!(too_many.reason, "INSUFFICIENT_CAPACITY");
    ex.place_order(T0, seller(B), &ask(H0, 2_100_000, 16, "iad-1"))
        .unwrap();

    // the buyer takes A's 8 then 8 of B's
    let bought = ex
        .place_order(T0, buyer(2), &order(H0, pb::Side::Buy, 2_100_000, 16))
        .unwrap();
    assert_eq!(bought.state, pb::OrderState::Filled as i32);
    let got = allocations(&ex, buyer(2));
    assert_eq!(got.len(), 2);
    let placed: Vec<(u64, u64, &str, &str)> = got
        .iter()
        .map(|a| {
            (
                a.seller_account,
                a.provider_account,
                a.cluster_id.as_str(),
                a.slots[0].node_id.as_str(),
            )
        })
        .collect();
    assert_eq!(placed, [(A, A, "iad-1", "a0"), (B, B, "iad-1", "b0")]);
    // each seller sees only its own sale, on its own nodes
    for (s, node) in [(A, "a0"), (B, "b0")] {
        let theirs = allocations(&ex, seller(s));
        assert_eq!(theirs.len(), 1);
        assert!(theirs[0].as_provider);
        assert_eq!(theirs[0].slots[0].node_id, node);
    }

    // withdrawals resolve within the caller's clusters: A's withdrawal leaves B's be
    let w = pb::WithdrawCapacityRequest {
        cluster_id: "iad-1".into(),
        from_hour: H0 + 1,
        to_hour: H0 + 2,
        node_ids: vec![],
    };
    assert_eq!(ex.withdraw_capacity(T0, seller(A), &w).unwrap(), 8);
    ex.place_order(T0, seller(B), &ask(H0 + 1, 2_000_000, 16, "iad-1"))
        .unwrap();
    assert_recovers(&mut ex);
}

#[test]
fn refusals_name_no_other_seller_s_cluster() {
    let mut ex = market(1);
    ex.register_capacity(T0, seller(A), &cluster("fra-1", "a", 1, H0, H0 + 1))
        .unwrap();
    let (seq, hash) = (ex.sequence(), ex.state_hash());
    // B asks from A's cluster: as if it did not exist
    let r = ex
        .place_order(T0, seller(B), &ask(H0, 2_000_000, 8, "fra-1"))
        .unwrap_err();
    assert_eq!(
        (r.reason, r.message.as_str()),
        ("UNKNOWN_CLUSTER", "no such cluster of yours")
    );
    no_other_seller(&r);
    // and the same for a name nobody has
    let none = ex
        .place_order(T0, seller(B), &ask(H0, 2_000_000, 8, "nowhere"))
        .unwrap_err();
    assert_eq!(none, r);
    let w = pb::WithdrawCapacityRequest {
        cluster_id: "fra-1".into(),
        from_hour: H0,
        to_hour: H0 + 1,
        node_ids: vec![],
    };
    let r = ex.withdraw_capacity(T0, seller(B), &w).unwrap_err();
    assert_eq!(r.reason, "UNKNOWN_CLUSTER");
    no_other_seller(&r);
    assert_eq!((ex.sequence(), ex.state_hash()), (seq, hash));
    // A's own mismatch says what differs, nothing about owners
    let h200 = format!("H200/us-east/{}", format_hour(H0));
    ex.create_product(T0, &h200, 10_000, 1, H0 * HOUR - HOUR, None, false)
        .unwrap();
    let wrong = pb::PlaceOrderRequest {
        product_id: h200,
        ..ask(H0, 2_000_000, 8, "fra-1")
    };
    let r = ex.place_order(T0, seller(A), &wrong).unwrap_err();
    assert_eq!(r.reason, "CLUSTER_MISMATCH");
    no_other_seller(&r);
}

#[test]
fn a_resale_of_another_seller_s_iad_1_resolves_through_its_allocation() {
    let mut ex = market(1);
    ex.register_capacity(T0, seller(A), &cluster("iad-1", "a", 1, H0, H0 + 1))
        .unwrap();
    ex.register_capacity(T0, seller(B), &cluster("iad-1", "b", 1, H0, H0 + 1))
        .unwrap();
    ex.place_order(T0, seller(B), &ask(H0, 2_000_000, 8, "iad-1"))
        .unwrap();
    let bought = ex
        .place_order(T0, buyer(2), &order(H0, pb::Side::Buy, 2_000_000, 8))
        .unwrap();
    let held = allocations(&ex, buyer(2));
    assert_eq!(held[0].provider_account, B);
    // naming the cluster as the allocation does: B's iad-1, not A's
    let resale = pb::PlaceOrderRequest {
        resell_trade_id: held[0].trade_id,
        resell_gpus: vec![pb::Slot {
            node_id: "b0".into(),
            gpu_indices: vec![0, 1],
            ..Default::default()
        }],
        cluster_id: "iad-1".into(),
        ..order(H0, pb::Side::Sell, 3_000_000, 2)
    };
    ex.place_order(T0, buyer(2), &resale).unwrap();
    ex.place_order(T0, buyer(3), &order(H0, pb::Side::Buy, 3_000_000, 2))
        .unwrap();
    let resold = allocations(&ex, buyer(3));
    assert_eq!(
        (
            resold[0].provider_account,
            resold[0].seller_account,
            resold[0].slots[0].node_id.as_str()
        ),
        (B, 2, "b0")
    );
    let _ = bought;
    assert_recovers(&mut ex);
}

/// Reads the fixture: a journal (seq, ts, length, command), as the exchange journaled it.
fn fixture_journal(bytes: &[u8]) -> Vec<(u64, i64, Vec<u8>)> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < bytes.len() {
        let seq = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
        let ts = i64::from_le_bytes(bytes[at + 8..at + 16].try_into().unwrap());
        let n = u32::from_le_bytes(bytes[at + 16..at + 20].try_into().unwrap()) as usize;
        out.push((seq, ts, bytes[at + 20..at + 20 + n].to_vec()));
        at += 20 + n;
    }
    out
}

/// A journal and a snapshot written before cluster ids were scoped to their seller
/// (ids unique venue-wide; tests/data/venue_wide_cluster_ids, made by the code of
/// then from the market in `gen_fixture.rs` there) read to the same state hash.
#[test]
fn a_data_directory_from_before_scoping_recovers_to_the_same_state() {
    let dir = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/data/venue_wide_cluster_ids"
    );
    let journal = std::fs::read(format!("{dir}/journal.bin")).unwrap();
    let snapshot = std::fs::read(format!("{dir}/snapshot.bin")).unwrap();
    let hash = std::fs::read_to_string(format!("{dir}/state_hash.txt")).unwrap();
    let mut replayed = Exchange::new(10_000);
    let entries = fixture_journal(&journal);
    assert!(entries.len() > 10);
    for (seq, ts, command) in entries {
        replayed.replay(seq, ts, &command).unwrap();
    }
    assert_eq!(replayed.state_hash(), hash.trim(), "journal replay");
    let mut restored = Exchange::restore(&snapshot, 10_000).unwrap();
    assert_eq!(restored.state_hash(), hash.trim(), "snapshot");
    // and it trades on: another seller may now name a cluster "iad-1" too, and each
    // seller's "iad-1" is its own (seller 10's is all on offer in that hour)
    restored
        .register_capacity(T0 + 9, seller(12), &cluster("iad-1", "z", 1, H0, H0 + 4))
        .unwrap();
    restored
        .place_order(T0 + 9, seller(12), &ask(H0 + 2, 2_000_000, 8, "iad-1"))
        .unwrap();
    let full = restored
        .place_order(T0 + 9, seller(10), &ask(H0 + 2, 2_000_000, 1, "iad-1"))
        .unwrap_err();
    assert_eq!(full.reason, "INSUFFICIENT_CAPACITY");
}

fn refusal(r: Result<pb::Order, spotex_exchange::Refusal>) -> (&'static str, String) {
    let e = r.unwrap_err();
    (e.reason, e.message)
}

#[test]
fn an_invalid_block_names_the_one_rule_it_breaks() {
    let mut ex = market(3);
    ex.register_capacity(T0, seller(A), &cluster("iad-1", "a", 1, H0, H0 + 3))
        .unwrap();
    let (seq, hash) = (ex.sequence(), ex.state_hash());
    let block = |hours: u32, window: u32| pb::PlaceOrderRequest {
        hours,
        window_hours: window,
        time_in_force: pb::TimeInForce::Ioc as i32,
        ..order(H0, pb::Side::Buy, 2_000_000, 8)
    };
    let cases: Vec<(pb::PlaceOrderRequest, Caller, &str)> = vec![
        (
            block(4, 0),
            buyer(2),
            // the fourth hour is not listed: that hour, by name
            &*format!(
                "hour {h} of the block is not listed: there is no product H100/us-east/{h}",
                h = format_hour(H0 + 3)
            )
            .leak(),
        ),
        (
            block(200, 0),
            buyer(2),
            "a block is for at most 168 hours, not 200",
        ),
        (
            block(3, 2),
            buyer(2),
            "the window of 2 hours is shorter than the block of 3",
        ),
        (
            block(2, 400),
            buyer(2),
            "a window is at most 336 hours, not 400",
        ),
        (
            block(2, 5),
            buyer(2),
            &*format!(
                "hour {} of the window is not listed: there is no product {}",
                format_hour(H0 + 3),
                pid(H0 + 3)
            )
            .leak(),
        ),
        (
            pb::PlaceOrderRequest {
                cluster_id: "iad-1".into(),
                ..pb::PlaceOrderRequest {
                    side: pb::Side::Sell as i32,
                    ..block(2, 0)
                }
            },
            seller(A),
            "a block (hours above 1, or a window) is for bids; an ask sells one hour",
        ),
        (
            pb::PlaceOrderRequest {
                order_type: pb::OrderType::Market as i32,
                ..block(2, 0)
            },
            buyer(2),
            "a block (hours above 1, or a window) is for limit orders, not market orders",
        ),
        (
            pb::PlaceOrderRequest {
                post_only: true,
                time_in_force: pb::TimeInForce::Gtc as i32,
                ..block(2, 0)
            },
            buyer(2),
            "a block (hours above 1, or a window) is not for post-only orders",
        ),
    ];
    for (r, who, want) in cases {
        let (reason, message) = refusal(ex.place_order(T0, who, &r));
        assert_eq!((reason, message.as_str()), ("INVALID_BLOCK", want), "{r:?}");
    }
    // a one-of names the alternative
    let group = pb::PlaceOneOfRequest {
        alternatives: vec![block(2, 0), block(200, 0)],
        ..Default::default()
    };
    let e = ex.place_one_of(T0, buyer(2), &group).unwrap_err();
    assert_eq!(
        (e.reason, e.message.as_str()),
        (
            "INVALID_BLOCK",
            "alternative 2: a block is for at most 168 hours, not 200"
        )
    );
    assert_eq!((ex.sequence(), ex.state_hash()), (seq, hash));

    // a resting block is not amended
    let resting = ex
        .place_order(
            T0,
            buyer(2),
            &pb::PlaceOrderRequest {
                time_in_force: pb::TimeInForce::Gtc as i32,
                ..block(2, 0)
            },
        )
        .unwrap();
    let amend = pb::AmendOrderRequest {
        order_id: resting.order_id,
        quantity: 4,
        ..Default::default()
    };
    let e = ex.amend_order(T0, buyer(2), &amend).unwrap_err();
    assert_eq!(
        (e.reason, e.message.as_str()),
        (
            "INVALID_BLOCK",
            "a block is not amended: cancel it and place another"
        )
    );
}

#[test]
fn products_in_the_past_and_prices_off_tick_say_so() {
    let mut ex = market(1);
    let past = pid(H0 - 20); // T0 is ten hours before H0
    let e = ex
        .create_product(T0, &past, 10_000, 1, (H0 - 20) * HOUR - HOUR, None, false)
        .unwrap_err();
    assert_eq!(e.reason, "INVALID_SCHEDULE");
    assert_eq!(
        e.message,
        format!("{past} is in the past: its delivery hour has begun or ended")
    );
    // its delivery is ahead, its gate closure behind
    let soon = pid(H0 - 9);
    let e = ex
        .create_product(T0, &soon, 10_000, 1, T0 - HOUR, Some(T0 - 2 * HOUR), false)
        .unwrap_err();
    assert_eq!(
        e.message,
        format!("{soon}'s gate closure is in the past: it could not trade")
    );
    let e = ex
        .create_product(T0, &soon, 10_000, 1, (H0 - 9) * HOUR + 1, None, false)
        .unwrap_err();
    assert_eq!(
        e.message,
        format!("{soon}'s gate closure must be no later than the start of its delivery hour")
    );
    let e = ex
        .create_product(T0, &soon, 10_000, 1, T0 + HOUR, Some(T0 + 2 * HOUR), false)
        .unwrap_err();
    assert_eq!(
        e.message,
        format!("{soon} must open before its gate closure")
    );

    // the tick as a person types it, on placing and on amending
    let (reason, message) =
        refusal(ex.place_order(T0, buyer(2), &order(H0, pb::Side::Buy, 2_005_000, 1)));
    assert_eq!(reason, "PRICE_OFF_TICK");
    assert!(message.ends_with("(the tick is $0.01)"), "{message}");
    let o = ex
        .place_order(T0, buyer(2), &order(H0, pb::Side::Buy, 2_000_000, 1))
        .unwrap();
    let amend = pb::AmendOrderRequest {
        order_id: o.order_id,
        price_micros: 2_000_500,
        ..Default::default()
    };
    let e = ex.amend_order(T0, buyer(2), &amend).unwrap_err();
    assert!(e.message.ends_with("(the tick is $0.01)"), "{}", e.message);
    assert_eq!(spotex_exchange::exchange::dollars(1), "$0.000001");
    assert_eq!(spotex_exchange::exchange::dollars(2_500_000), "$2.50");
    assert_eq!(spotex_exchange::exchange::dollars(5_000), "$0.005");
}

/// Seller A's "iad-1" (one node) on offer at $2; buyer 2 bought all 8 GPUs of it.
fn held_node() -> (Exchange, pb::Order, pb::Allocation) {
    let mut ex = market(1);
    ex.register_capacity(T0, seller(A), &cluster("iad-1", "a", 1, H0, H0 + 1))
        .unwrap();
    ex.place_order(T0, seller(A), &ask(H0, 2_000_000, 8, "iad-1"))
        .unwrap();
    let bought = ex
        .place_order(T0, buyer(2), &order(H0, pb::Side::Buy, 2_000_000, 8))
        .unwrap();
    let held = allocations(&ex, buyer(2)).remove(0);
    (ex, bought, held)
}

#[test]
fn resell_naming_a_gpu_the_order_does_not_hold_is_refused() {
    let (mut ex, bought, _) = held_node();
    let (seq, hash) = (ex.sequence(), ex.state_hash());
    let resell = |node: &str, gpus: Vec<u32>| pb::ResellRequest {
        order_id: bought.order_id,
        price_micros: 3_000_000,
        time_in_force: pb::TimeInForce::Gtc as i32,
        gpus: vec![
            pb::Slot {
                node_id: "a0".into(),
                gpu_indices: vec![0, 1],
                ..Default::default()
            },
            pb::Slot {
                node_id: node.into(),
                gpu_indices: gpus,
                ..Default::default()
            },
        ],
        ..Default::default()
    };
    for (node, gpus, want) in [
        ("a9", vec![2], "GPU 2 of node a9"),
        ("a0", vec![8], "GPU 8 of node a0"),
        ("a0", vec![70], "GPU 70 of node a0"),
    ] {
        let e = ex.resell(T0, buyer(2), &resell(node, gpus)).unwrap_err();
        assert_eq!(e.reason, "INVALID_RESALE");
        assert_eq!(
            e.message,
            format!(
                "order {} holds no {want} to resell in those hours",
                bought.order_id
            )
        );
    }
    assert_eq!((ex.sequence(), ex.state_hash()), (seq, hash));
    // the GPUs it holds resell
    let done = ex.resell(T0, buyer(2), &resell("a0", vec![2])).unwrap();
    assert_eq!(done.results.len(), 1);
    assert_eq!(done.results[0].order.as_ref().unwrap().quantity, 3);
}

#[test]
fn a_resale_ask_amended_down_lets_go_of_the_gpus_it_no_longer_offers() {
    let (mut ex, _, held) = held_node();
    let resale = |qty: i64| pb::PlaceOrderRequest {
        resell_trade_id: held.trade_id,
        time_in_force: pb::TimeInForce::Gtc as i32,
        ..order(H0, pb::Side::Sell, 3_000_000, qty)
    };
    // all 8 on offer
    let first = ex.place_order(T0, buyer(2), &resale(0)).unwrap();
    assert_eq!(first.quantity, 8);
    assert_eq!(
        refusal(ex.place_order(T0, buyer(2), &resale(0))).0,
        "INVALID_RESALE"
    );
    // down to 3 (its priority kept): 5 GPUs are the holder's again, to offer anew
    let down = pb::AmendOrderRequest {
        order_id: first.order_id,
        quantity: 3,
        ..Default::default()
    };
    ex.amend_order(T0, buyer(2), &down).unwrap();
    let second = ex.place_order(T0, buyer(2), &resale(0)).unwrap();
    assert_eq!(second.quantity, 5);
    // down again with a new price (priority lost): 1 more is let go
    let down = pb::AmendOrderRequest {
        order_id: first.order_id,
        quantity: 2,
        price_micros: 3_100_000,
    };
    ex.amend_order(T0, buyer(2), &down).unwrap();
    let third = ex.place_order(T0, buyer(2), &resale(0)).unwrap();
    assert_eq!(third.quantity, 1);
    // the first ask sells only what it still offers, whole: a gang of 2 on one node
    ex.place_order(
        T0,
        buyer(3),
        &pb::PlaceOrderRequest {
            gang: 2,
            time_in_force: pb::TimeInForce::Ioc as i32,
            ..order(H0, pb::Side::Buy, 3_100_000, 8)
        },
    )
    .unwrap();
    let bought: i64 = allocations(&ex, buyer(3)).iter().map(|a| a.quantity).sum();
    // the 5-GPU ask gives 2 gangs (4), the first ask 1 gang (2); the 1-GPU ask none
    assert_eq!(bought, 6);
    assert_recovers(&mut ex);
}
