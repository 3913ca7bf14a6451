//! The exchange's rules of an order's life, one scenario each: records and fills,
//! executions and market data with their sequences, refusals that change nothing,
//! client-order-id dedupe, the open-order limit, and time.

use prost::Message;
use spotex_core::workload::Rng;
use spotex_exchange::pb::{self, market_data::Payload};
use spotex_exchange::{Caller, Exchange};

const HOUR: i64 = 3_600_000_000;
const T0: i64 = 490_000 * HOUR;
const PID: &str = "H100-SXM/us-east/2025-11-26T16";
const SELLER: Caller = Caller {
    account: 1,
    buyer: false,
    seller: true,
};
const BUYER: Caller = Caller {
    account: 2,
    buyer: true,
    seller: false,
};

fn market() -> Exchange {
    let mut ex = Exchange::new(3);
    ex.create_product(T0, PID, 10_000, 1, T0 + 2 * HOUR, None, false)
        .unwrap();
    let cap = pb::RegisterCapacityRequest {
        cluster_id: "c1".into(),
        sku: "H100-SXM".into(),
        region: "us-east".into(),
        nodes: vec![
            pb::Node {
                node_id: "n0".into(),
                gpus: 8,
                ..Default::default()
            },
            pb::Node {
                node_id: "n1".into(),
                gpus: 8,
                ..Default::default()
            },
        ],
        from_hour: 490_000,
        to_hour: 490_100,
    };
    ex.register_capacity(T0, SELLER, &cap).unwrap();
    ex.take_round();
    ex
}

fn order(side: pb::Side, price: i64, qty: i64) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        product_id: PID.into(),
        side: side as i32,
        price_micros: price,
        quantity: qty,
        cluster_id: if side == pb::Side::Sell {
            "c1".into()
        } else {
            String::new()
        },
        ..Default::default()
    }
}

#[test]
fn a_partial_fill_then_an_amend_keeps_the_record_whole() {
    let mut ex = market();
    let ask = ex
        .place_order(T0 + 1, SELLER, &order(pb::Side::Sell, 2_000_000, 8))
        .unwrap();
    let bid = ex
        .place_order(T0 + 2, BUYER, &order(pb::Side::Buy, 2_100_000, 3))
        .unwrap();
    assert_eq!(bid.state, pb::OrderState::Filled as i32);
    assert_eq!(bid.fills.len(), 1);
    assert_eq!(
        (bid.fills[0].price_micros, bid.fills[0].maker),
        (2_000_000, false)
    );
    let amended = ex
        .amend_order(
            T0 + 3,
            SELLER,
            &pb::AmendOrderRequest {
                order_id: ask.order_id,
                price_micros: 0,
                quantity: 2,
            },
        )
        .unwrap();
    // quantity is what was filled plus the new remaining
    assert_eq!(
        (
            amended.quantity,
            amended.filled_quantity,
            amended.remaining_quantity
        ),
        (5, 3, 2)
    );
    assert_eq!(amended.state, pb::OrderState::PartiallyFilled as i32);
    assert_eq!(ex.sequence(), 2 + 3, "two set-up commands and three orders");
}

#[test]
fn executions_and_market_data_carry_gapless_sequences() {
    let mut ex = market();
    ex.place_order(T0 + 1, SELLER, &order(pb::Side::Sell, 2_000_000, 8))
        .unwrap();
    ex.place_order(T0 + 2, BUYER, &order(pb::Side::Buy, 2_000_000, 8))
        .unwrap();
    let round = ex.take_round();
    let kinds = |account: u64| -> Vec<(u64, String)> {
        round
            .executions
            .iter()
            .filter(|(a, _)| *a == account)
            .map(|(_, e)| (e.sequence, e.kind.clone()))
            .collect()
    };
    assert_eq!(
        kinds(1),
        [(1, "accepted"), (2, "trade"), (3, "allocated")]
            .map(|(s, k)| (s, k.to_string()))
            .to_vec()
    );
    assert_eq!(
        kinds(2),
        [(1, "accepted"), (2, "trade"), (3, "allocated")]
            .map(|(s, k)| (s, k.to_string()))
            .to_vec()
    );
    let seqs: Vec<u64> = round.market.iter().map(|m| m.sequence).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    // the ask's level appears, then the trade, then the level is gone
    let payloads: Vec<&Payload> = round
        .market
        .iter()
        .map(|m| m.payload.as_ref().unwrap())
        .collect();
    assert!(matches!(payloads[0], Payload::Level(l) if l.quantity == 8));
    assert!(matches!(payloads[1], Payload::Trade(t) if t.quantity == 8));
    assert!(matches!(payloads[2], Payload::Level(l) if l.quantity == 0));
    // the buyer's allocation names the GPUs, as the buyer sees it
    let allocation = |account: u64| {
        round
            .executions
            .iter()
            .find(|(a, e)| *a == account && e.kind == "allocated")
            .and_then(|(_, e)| e.allocation.clone())
            .unwrap()
    };
    let (bought, sold) = (allocation(2), allocation(1));
    assert!(bought.as_buyer && !sold.as_buyer);
    assert_eq!((bought.quantity, bought.slots.len()), (8, 1));
    assert_eq!(bought.slots, sold.slots);
}

#[test]
fn refusals_change_nothing_but_time() {
    let mut ex = market();
    let (seq, hash) = (ex.sequence(), ex.state_hash());
    let mut bad = order(pb::Side::Buy, 2_005_000, 1); // off tick
    let refused = ex.place_order(T0, BUYER, &bad).unwrap_err();
    assert_eq!(refused.reason, "PRICE_OFF_TICK");
    assert!(refused.message.contains("the tick is $0.01)"));
    bad.product_id = "garbage".into();
    let refused = ex.place_order(T0, BUYER, &bad).unwrap_err();
    assert_eq!(refused.reason, "UNKNOWN_PRODUCT");
    assert!(
        refused.message.contains("\"garbage\""),
        "{}",
        refused.message
    );
    assert_eq!(
        ex.place_order(T0, SELLER, &order(pb::Side::Buy, 2_000_000, 1))
            .unwrap_err()
            .reason,
        "ROLE_REQUIRED"
    );
    assert_eq!((ex.sequence(), ex.state_hash()), (seq, hash));
    assert_eq!(ex.take_round(), Default::default());

    // a resting good-till-time order expires when time passes it; a refused command
    // that moves time past it still expires it, as one sequenced time step
    let mut gtd = order(pb::Side::Buy, 1_000_000, 1);
    gtd.time_in_force = pb::TimeInForce::Gtd as i32;
    gtd.expire_at_micros = T0 + 100;
    ex.place_order(T0 + 1, BUYER, &gtd).unwrap();
    ex.take_round();
    let seq = ex.sequence();
    let mut late = order(pb::Side::Buy, 2_005_000, 1);
    late.client_order_id = "late".into();
    assert!(ex.place_order(T0 + 200, BUYER, &late).is_err());
    assert_eq!(ex.sequence(), seq + 1);
    let round = ex.take_round();
    assert_eq!(round.executions[0].1.kind, "expired");
}

#[test]
fn client_order_ids_and_the_open_order_limit() {
    let mut ex = market();
    let mut o = order(pb::Side::Buy, 1_000_000, 1);
    o.client_order_id = "x".into();
    ex.place_order(T0 + 1, BUYER, &o).unwrap();
    assert_eq!(
        ex.place_order(T0 + 2, BUYER, &o).unwrap_err().reason,
        "DUPLICATE_CLIENT_ORDER_ID"
    );
    o.client_order_id.clear();
    ex.place_order(T0 + 3, BUYER, &o).unwrap();
    let third = ex.place_order(T0 + 4, BUYER, &o).unwrap();
    assert_eq!(
        ex.place_order(T0 + 5, BUYER, &o).unwrap_err().reason,
        "TOO_MANY_OPEN_ORDERS"
    );
    // a cancel frees a place; another account's order is not yours to cancel
    let cancel = pb::CancelOrderRequest {
        order_id: third.order_id,
    };
    assert_eq!(
        ex.cancel_order(T0 + 6, SELLER, &cancel).unwrap_err().reason,
        "NOT_OWNER"
    );
    let done = ex.cancel_order(T0 + 6, BUYER, &cancel).unwrap();
    assert_eq!(
        (done.state, done.reason.as_str()),
        (pb::OrderState::Cancelled as i32, "requested")
    );
    ex.place_order(T0 + 7, BUYER, &o).unwrap();
    let open = ex.list_orders(
        BUYER,
        &pb::ListOrdersRequest {
            open_only: true,
            ..Default::default()
        },
    );
    assert_eq!(open.unwrap().orders.len(), 3);
    let all = ex.list_orders(BUYER, &Default::default()).unwrap();
    let ids: Vec<u64> = all.orders.iter().map(|o| o.order_id).collect();
    let mut sorted = ids.clone();
    sorted.sort();
    assert_eq!((ids.len(), &ids), (4, &sorted), "oldest first");
    assert_eq!(all.next_page_token, "", "one page holds them all");

    // page by page, two at a time: the same orders, none twice, then no token
    let mut paged = Vec::new();
    let mut token = String::new();
    loop {
        let page = ex
            .list_orders(
                BUYER,
                &pb::ListOrdersRequest {
                    page_size: 2,
                    page_token: token.clone(),
                    ..Default::default()
                },
            )
            .unwrap();
        assert!(page.orders.len() <= 2);
        paged.extend(page.orders.iter().map(|o| o.order_id));
        token = page.next_page_token;
        if token.is_empty() {
            break;
        }
    }
    assert_eq!(paged, ids);
    let bad = pb::ListOrdersRequest {
        page_token: "x".into(),
        ..Default::default()
    };
    assert_eq!(
        ex.list_orders(BUYER, &bad).unwrap_err().reason,
        "INVALID_ARGUMENT"
    );
    // the seller sees none of the buyer's orders on any page
    assert!(ex
        .list_orders(SELLER, &Default::default())
        .unwrap()
        .orders
        .iter()
        .all(|o| !ids.contains(&o.order_id)));
}

#[test]
fn a_quiet_clock_step_is_not_a_command() {
    let mut ex = market();
    let seq = ex.sequence();
    for k in 1..50 {
        ex.advance_time(T0 + k);
    }
    assert_eq!(ex.sequence(), seq);
    // gate closure falls due: one sequenced step, the product's state on the stream
    ex.advance_time(T0 + 2 * HOUR);
    assert_eq!(ex.sequence(), seq + 1);
    let round = ex.take_round();
    assert!(matches!(
        round.market[0].payload.as_ref().unwrap(),
        Payload::State(s) if s == "closed"
    ));
}

#[test]
fn responses_are_the_contract_s_messages() {
    let mut ex = market();
    let o = ex
        .place_order(T0 + 1, BUYER, &order(pb::Side::Buy, 1_000_000, 2))
        .unwrap();
    let bytes = pb::PlaceOrderResponse { order: Some(o) }.encode_to_vec();
    let back = pb::PlaceOrderResponse::decode(bytes.as_slice()).unwrap();
    let got = ex
        .get_order(
            BUYER,
            &pb::GetOrderRequest {
                order_id: back.order.as_ref().unwrap().order_id,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(back.order.unwrap(), got);
}

#[test]
fn the_journal_and_a_snapshot_rebuild_the_same_exchange() {
    let mut ex = market();
    let ask = ex
        .place_order(T0 + 1, SELLER, &order(pb::Side::Sell, 2_000_000, 8))
        .unwrap();
    ex.place_order(T0 + 2, BUYER, &order(pb::Side::Buy, 2_000_000, 3))
        .unwrap();
    let mut gtd = order(pb::Side::Buy, 1_000_000, 1);
    gtd.time_in_force = pb::TimeInForce::Gtd as i32;
    gtd.expire_at_micros = T0 + 50;
    gtd.client_order_id = "g".into();
    ex.place_order(T0 + 3, BUYER, &gtd).unwrap();
    ex.advance_time(T0 + 60); // the GTD order expires: a journaled time step
    let amend = pb::AmendOrderRequest {
        order_id: ask.order_id,
        price_micros: 1_990_000,
        quantity: 0,
    };
    ex.amend_order(T0 + 70, SELLER, &amend).unwrap();
    let journal = ex.take_journal();
    assert_eq!(
        journal.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=ex.sequence()).collect::<Vec<_>>()
    );

    let rebuild = |from: usize| {
        let mut half = Exchange::new(3);
        for e in &journal[..from] {
            half.replay(e.seq, e.ts, &e.command).unwrap();
        }
        let mut back = Exchange::restore(&half.snapshot(), 3).unwrap();
        for e in &journal[from..] {
            back.replay(e.seq, e.ts, &e.command).unwrap();
        }
        back
    };
    for from in 0..=journal.len() {
        let mut back = rebuild(from);
        assert_eq!(
            (back.sequence(), back.state_hash()),
            (ex.sequence(), ex.state_hash())
        );
        for who in [SELLER, BUYER] {
            assert_eq!(
                back.list_orders(who, &Default::default()),
                ex.list_orders(who, &Default::default())
            );
        }
        // the dedupe index came back: the same client order id is refused again
        assert_eq!(
            back.place_order(T0 + 80, BUYER, &gtd).unwrap_err().reason,
            "DUPLICATE_CLIENT_ORDER_ID"
        );
        // and what comes next carries on the same sequences
        ex.take_round();
        let next = order(pb::Side::Buy, 1_990_000, 1);
        let mut live = Exchange::restore(&ex.snapshot(), 3).unwrap();
        live.place_order(T0 + 90, BUYER, &next).unwrap();
        back.place_order(T0 + 90, BUYER, &next).unwrap();
        assert_eq!(back.take_round(), live.take_round());
    }
    // a record out of sequence, or one that no longer decodes, is refused
    let mut fresh = Exchange::new(3);
    assert!(fresh.replay(2, journal[1].ts, &journal[1].command).is_err());
    assert!(fresh.replay(1, journal[0].ts, &[0xff, 0x01]).is_err());
}

#[test]
fn ended_orders_leave_memory_oldest_first_and_the_market_does_not_notice() {
    let run = |keep: usize| {
        let mut ex = market();
        ex.set_keep_ended(keep);
        let mut o = order(pb::Side::Buy, 1_000_000, 1);
        for i in 0..6 {
            o.client_order_id = format!("c{i}");
            let placed = ex.place_order(T0 + 10 * i + 1, BUYER, &o).unwrap();
            let cancel = pb::CancelOrderRequest {
                order_id: placed.order_id,
            };
            ex.cancel_order(T0 + 10 * i + 2, BUYER, &cancel).unwrap();
        }
        ex.advance_time(T0 + 100); // a command: what is due to leave, leaves
        ex
    };
    let (mut small, mut large) = (run(2), run(1_000));
    assert_eq!(small.state_hash(), large.state_hash());
    assert_eq!(small.sequence(), large.sequence());
    let left: Vec<String> = small
        .take_left()
        .into_iter()
        .map(|r| r.client_order_id)
        .collect();
    assert_eq!(left, ["c0", "c1", "c2", "c3"]);
    assert!(large.take_left().is_empty());
    let kept = small
        .list_orders(BUYER, &Default::default())
        .unwrap()
        .orders;
    assert_eq!(
        kept.iter()
            .map(|o| o.client_order_id.as_str())
            .collect::<Vec<_>>(),
        ["c4", "c5"]
    );
    // a record that left is not in memory; its client order id may be used again
    let gone = pb::GetOrderRequest {
        order_id: 1,
        ..Default::default()
    };
    assert_eq!(
        small.get_order(BUYER, &gone).unwrap_err().reason,
        "UNKNOWN_ORDER"
    );
    let mut again = order(pb::Side::Buy, 1_000_000, 1);
    again.client_order_id = "c0".into();
    small.place_order(T0 + 200, BUYER, &again).unwrap();
    again.client_order_id = "c5".into();
    assert_eq!(
        small
            .place_order(T0 + 201, BUYER, &again)
            .unwrap_err()
            .reason,
        "DUPLICATE_CLIENT_ORDER_ID"
    );
    // the journal and a snapshot bring back the same kept records, and the same leave
    let journal = small.take_journal();
    for cut in [0, journal.len() / 2, journal.len()] {
        let mut half = Exchange::new(3);
        half.set_keep_ended(2);
        for e in &journal[..cut] {
            half.replay(e.seq, e.ts, &e.command).unwrap();
        }
        let mut back = Exchange::restore(&half.snapshot(), 3).unwrap();
        back.set_keep_ended(2);
        for e in &journal[cut..] {
            back.replay(e.seq, e.ts, &e.command).unwrap();
        }
        assert_eq!(
            back.list_orders(BUYER, &Default::default()),
            small.list_orders(BUYER, &Default::default())
        );
        assert_eq!(back.state_hash(), small.state_hash());
    }
}

#[test]
fn a_client_order_id_is_free_again_the_same_way_live_and_on_replay() {
    // an order that ends at once leaves memory at the next command; a refusal that the
    // journal never sees must not change whether its client order id is still known
    let mut ex = market();
    ex.set_keep_ended(0);
    let mut ioc = order(pb::Side::Buy, 1_000_000, 1);
    ioc.time_in_force = pb::TimeInForce::Ioc as i32;
    ioc.client_order_id = "a".into();
    ex.place_order(T0 + 1, BUYER, &ioc).unwrap(); // nothing to match: cancelled
    let seq = ex.sequence();
    let mut off_tick = order(pb::Side::Buy, 1_005_000, 1);
    off_tick.client_order_id = "b".into();
    // refused by the engine at the same time: not a command, not journaled
    assert!(ex.place_order(T0 + 1, BUYER, &off_tick).is_err());
    assert_eq!(ex.sequence(), seq);
    ex.place_order(T0 + 1, BUYER, &ioc).unwrap(); // "a" again: its order left memory
    let journal = ex.take_journal();
    let mut back = Exchange::new(3);
    back.set_keep_ended(0);
    for e in &journal {
        back.replay(e.seq, e.ts, &e.command).unwrap();
    }
    assert_eq!(back.state_hash(), ex.state_hash());
}

/// One of `xs`, drawn from the workspace's seeded stream.
fn pick<T: Copy>(rng: &mut Rng, xs: &[T]) -> T {
    xs[rng.below(xs.len() as u64) as usize]
}

#[test]
fn hostile_requests_are_refused_or_applied_never_a_panic_and_the_journal_still_replays() {
    let prices = [
        i64::MIN,
        -1,
        0,
        1,
        9_999,
        1_990_000,
        2_000_000,
        2_010_000,
        1_000_000_000_000,
        i64::MAX,
    ];
    let qtys = [
        i64::MIN,
        -1,
        0,
        1,
        3,
        8,
        16,
        10_000_000,
        10_000_001,
        i64::MAX,
    ];
    let enums = [i32::MIN, -1, 0, 1, 2, 3, 4, 99, i32::MAX];
    let gangs = [0, 1, 2, 3, 8, 64, 65, u32::MAX];
    let long = "x".repeat(5_000);
    let products = [
        PID,
        "",
        "garbage",
        "H100-SXM/us-east/2025-11-26T16 ",
        "ü/ü/ü",
        &long,
    ];
    let clusters = ["", "c1", "nope", &long];
    let ids = ["", "a", "b", &long];
    let callers = [
        SELLER,
        BUYER,
        Caller {
            account: 0,
            buyer: true,
            seller: true,
        },
        Caller {
            account: u64::MAX,
            buyer: true,
            seller: true,
        },
    ];
    let (mut accepted, mut refused) = (0, 0);
    for seed in 0..20 {
        let mut rng = Rng(seed);
        let mut ex = market();
        let keep = pick(&mut rng, &[0usize, 1, 5, 100_000]);
        ex.set_keep_ended(keep);
        let mut ts = T0;
        let mut placed: Vec<u64> = vec![0, 1, u64::MAX];
        for _ in 0..400 {
            ts += pick(&mut rng, &[0i64, 1, 1_000_000, 600_000_000, -5]);
            let who = pick(&mut rng, &callers);
            match rng.next() % 6 {
                0..=2 => {
                    let sell = rng.next() % 2 == 0;
                    let mut r = pb::PlaceOrderRequest {
                        client_order_id: pick(&mut rng, &ids).to_string(),
                        product_id: pick(&mut rng, &products).to_string(),
                        side: pick(&mut rng, &enums),
                        order_type: pick(&mut rng, &enums),
                        price_micros: pick(&mut rng, &prices),
                        quantity: pick(&mut rng, &qtys),
                        time_in_force: pick(&mut rng, &enums),
                        expire_at_micros: ts
                            + pick(&mut rng, &prices).saturating_abs() % 10_000_000,
                        post_only: rng.next() % 4 == 0,
                        stp: pick(&mut rng, &enums),
                        cluster_id: pick(&mut rng, &clusters).to_string(),
                        gang: pick(&mut rng, &gangs),
                        // blocks too: over hours listed or not, and far too many
                        hours: pick(&mut rng, &[0u32, 1, 1, 2, 3, 169, u32::MAX]),
                        window_hours: pick(&mut rng, &[0u32, 0, 0, 1, 3, 337, u32::MAX]),
                        min_quantity: pick(&mut rng, &[0i64, 0, 0, 1, 4, -1, i64::MAX]),
                        range_id: pick(&mut rng, &[0u64, 0, 7, u64::MAX]),
                        display_quantity: pick(&mut rng, &[0i64, 0, 1, -3, i64::MAX]),
                        locality: pick(&mut rng, &[0i32, 0, 0, 2, 5, 99, -1]),
                        locality_preferred: pick(&mut rng, &[false, false, true]),
                        colocate_with: pick(&mut rng, &[0u64, 0, 0, 1, u64::MAX]),
                        resell_trade_id: pick(&mut rng, &[0u64, 0, 0, 1, 2, u64::MAX]),
                        resell_gpus: if rng.next() % 4 == 0 {
                            vec![pb::Slot {
                                node_id: pick(&mut rng, &["n0", "", "zz"]).to_string(),
                                gpu_indices: vec![pick(&mut rng, &[0u32, 3, 64, u32::MAX])],
                                ..Default::default()
                            }]
                        } else {
                            Vec::new()
                        },
                        resale_fee_bps: pick(&mut rng, &[0u32, 50, u32::MAX]),
                        auction: pick(&mut rng, &[false, false, false, true]),
                    };
                    if rng.next() % 2 == 0 {
                        // half of them sane but for one hostile field at most
                        let hostile = r.clone();
                        r = order(
                            if sell { pb::Side::Sell } else { pb::Side::Buy },
                            pick(&mut rng, &[1_990_000, 2_000_000, 2_010_000]),
                            pick(&mut rng, &[1, 2, 3, 8]),
                        );
                        match rng.next() % 8 {
                            0 => r.price_micros = hostile.price_micros,
                            1 => r.quantity = hostile.quantity,
                            2 => r.gang = hostile.gang,
                            3 => r.client_order_id = hostile.client_order_id,
                            4 => r.time_in_force = hostile.time_in_force,
                            _ => {}
                        }
                    }
                    match ex.place_order(ts, who, &r) {
                        Ok(o) => {
                            accepted += 1;
                            placed.push(o.order_id);
                        }
                        Err(_) => refused += 1,
                    }
                }
                3 => {
                    let order_id = pick(&mut rng, &placed);
                    let _ = ex.cancel_order(ts, who, &pb::CancelOrderRequest { order_id });
                }
                4 => {
                    let r = pb::AmendOrderRequest {
                        order_id: pick(&mut rng, &placed),
                        price_micros: pick(&mut rng, &prices),
                        quantity: pick(&mut rng, &qtys),
                    };
                    let _ = ex.amend_order(ts, who, &r);
                }
                _ => {
                    ex.advance_time(ts);
                    let _ = ex.get_order(
                        who,
                        &pb::GetOrderRequest {
                            order_id: pick(&mut rng, &placed),
                            ..Default::default()
                        },
                    );
                }
            }
            ex.take_round();
        }
        let journal = ex.take_journal();
        let mut back = Exchange::new(3);
        back.set_keep_ended(keep);
        for e in &journal {
            back.replay(e.seq, e.ts, &e.command).unwrap();
        }
        assert_eq!(back.state_hash(), ex.state_hash(), "seed {seed}");
    }
    // not a test that cannot fail: orders got through, and hostile ones were refused
    assert!(
        accepted > 50 && refused > 500,
        "{accepted} accepted, {refused} refused"
    );
}

#[test]
fn cancel_all_cancels_the_callers_open_orders_each_as_a_command_of_its_own() {
    let mut ex = Exchange::new(10);
    let other = "H100-SXM/us-east/2025-11-26T17";
    for p in [PID, other] {
        ex.create_product(T0, p, 10_000, 1, T0 + 2 * HOUR, None, false)
            .unwrap();
    }
    let mut ids = Vec::new();
    for (i, p) in [PID, other, PID].iter().enumerate() {
        let mut o = order(pb::Side::Buy, 1_000_000 + i as i64 * 10_000, 1);
        o.product_id = (*p).into();
        ids.push(ex.place_order(T0 + 1, BUYER, &o).unwrap().order_id);
    }
    let before = ex.sequence();
    ex.take_journal();
    ex.take_round();

    let by_product = pb::CancelAllRequest {
        product_id: PID.into(),
        ..Default::default()
    };
    let done = ex.cancel_all(T0 + 2, BUYER, &by_product).unwrap();
    let cancelled: Vec<u64> = done.orders.iter().map(|o| o.order_id).collect();
    assert_eq!(cancelled, vec![ids[0], ids[2]]);
    assert!(done
        .orders
        .iter()
        .all(|o| o.state == pb::OrderState::Cancelled as i32));
    // one journaled command per cancel, and a market-data update for each
    assert_eq!(ex.sequence(), before + 2);
    assert_eq!(ex.take_journal().len(), 2);
    assert!(!ex.take_round().market.is_empty());
    // the other product's order is still open; then all of them go
    let open = |ex: &Exchange| {
        ex.list_orders(
            BUYER,
            &pb::ListOrdersRequest {
                open_only: true,
                ..Default::default()
            },
        )
        .unwrap()
        .orders
        .len()
    };
    assert_eq!(open(&ex), 1);
    let all = ex.cancel_all(T0 + 3, BUYER, &Default::default()).unwrap();
    assert_eq!(all.orders.len(), 1);
    assert_eq!(open(&ex), 0);
    // nothing left: an empty answer, no command
    let seq = ex.sequence();
    assert!(ex
        .cancel_all(T0 + 4, BUYER, &Default::default())
        .unwrap()
        .orders
        .is_empty());
    assert_eq!(ex.sequence(), seq);
    // an unknown product is refused
    let bad = pb::CancelAllRequest {
        product_id: "nope".into(),
        ..Default::default()
    };
    assert_eq!(
        ex.cancel_all(T0 + 5, BUYER, &bad).unwrap_err().reason,
        "UNKNOWN_PRODUCT"
    );
}
