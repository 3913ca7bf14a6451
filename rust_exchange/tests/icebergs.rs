//! Iceberg asks: a seller shows a clip of a large order and keeps the rest hidden. The
//! book shows only the clip; each refill goes behind every order at its price; the
//! capacity reserve covers the whole; a taker sweeps refills at the same price; and
//! random flows keep the invariants (never more than the clip shown, quantity conserved,
//! the journal and a snapshot rebuild the same state).

use spotex_core::product::format_hour;
use spotex_core::workload::Rng;
use spotex_exchange::pb;
use spotex_exchange::Exchange;

mod common;
use common::*;

fn pid() -> String {
    format!("H100-SXM/us-east/{}", format_hour(H0))
}

/// One product, and clusters `c0` (seller 10) and `c1` (seller 11) of `nodes` 8-GPU nodes.
fn market(nodes: usize) -> Exchange {
    let mut ex = Exchange::new(10_000);
    ex.create_product(T0, &pid(), 10_000, 1, H0 * HOUR - HOUR, None, false)
        .unwrap();
    for c in 0..2u64 {
        let cap = capacity(&format!("c{c}"), "H100-SXM", nodes, H0, H0 + 1);
        ex.register_capacity(T0, seller(10 + c), &cap).unwrap();
    }
    ex
}

fn ask(qty: i64, price: i64, cluster: u64, display: i64) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        product_id: pid(),
        side: pb::Side::Sell as i32,
        price_micros: price,
        quantity: qty,
        cluster_id: format!("c{cluster}"),
        display_quantity: display,
        ..Default::default()
    }
}

fn bid(qty: i64, price: i64, tif: pb::TimeInForce) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        product_id: pid(),
        side: pb::Side::Buy as i32,
        price_micros: price,
        quantity: qty,
        time_in_force: tif as i32,
        ..Default::default()
    }
}

fn asks(ex: &Exchange) -> Vec<(i64, i64, u32)> {
    let book = ex
        .get_book(&pb::GetBookRequest {
            product_id: pid(),
            depth: 10,
        })
        .unwrap()
        .book
        .unwrap();
    book.asks
        .iter()
        .map(|l| (l.price_micros, l.quantity, l.orders))
        .collect()
}

/// `(maker order, quantity)` of each fill of `order`, in order.
fn fills(ex: &Exchange, account: u64, order: u64) -> Vec<i64> {
    ex.get_order(
        buyer(account),
        &pb::GetOrderRequest {
            order_id: order,
            ..Default::default()
        },
    )
    .unwrap()
    .fills
    .iter()
    .map(|f| f.quantity)
    .collect()
}

#[test]
fn the_book_shows_the_clip_and_each_refill_goes_to_the_back() {
    let mut ex = market(3);
    let ice = ex
        .place_order(T0, seller(10), &ask(24, 1_000_000, 0, 8))
        .unwrap();
    assert_eq!(ice.display_quantity, 8);
    assert_eq!(ice.remaining_quantity, 24, "its owner sees the whole");
    assert_eq!(
        asks(&ex),
        vec![(1_000_000, 8, 1)],
        "the public sees the clip"
    );
    let plain = ex
        .place_order(T0, seller(11), &ask(8, 1_000_000, 1, 0))
        .unwrap();
    assert_eq!(asks(&ex), vec![(1_000_000, 16, 2)]);
    // 12: the clip, then the next clip shows behind the plain ask, which gives 4
    let b = ex
        .place_order(T0, buyer(2), &bid(12, 1_000_000, pb::TimeInForce::Ioc))
        .unwrap();
    assert_eq!(fills(&ex, 2, b.order_id), vec![8, 4]);
    assert_eq!(fills(&ex, 11, plain.order_id), vec![4]);
    assert_eq!(asks(&ex), vec![(1_000_000, 12, 2)]);
    // 20: the plain ask's 4, the clip, and the last clip at the same price, swept
    let b = ex
        .place_order(T0, buyer(3), &bid(20, 1_000_000, pb::TimeInForce::Ioc))
        .unwrap();
    assert_eq!(fills(&ex, 3, b.order_id), vec![4, 8, 8]);
    let o = ex
        .get_order(
            seller(10),
            &pb::GetOrderRequest {
                order_id: ice.order_id,
                ..Default::default()
            },
        )
        .unwrap();
    assert_eq!(
        (o.state, o.filled_quantity),
        (pb::OrderState::Filled as i32, 24)
    );
    assert!(asks(&ex).is_empty());
}

#[test]
fn the_reserve_covers_the_whole_and_fill_or_kill_counts_what_is_hidden() {
    let mut ex = market(3);
    let ice = ex
        .place_order(T0, seller(10), &ask(24, 1_000_000, 0, 8))
        .unwrap();
    // the cluster's 24 GPUs are all offered, though 8 show
    let more = ex.place_order(T0, seller(10), &ask(1, 1_000_000, 0, 0));
    assert_eq!(more.unwrap_err().reason, "INSUFFICIENT_CAPACITY");
    // a fill-or-kill of 20 sees the hidden clips behind the shown one
    let b = ex
        .place_order(T0, buyer(2), &bid(20, 1_000_000, pb::TimeInForce::Fok))
        .unwrap();
    assert_eq!(b.state, pb::OrderState::Filled as i32);
    // 25 is more than there is: killed, nothing trades
    let b = ex
        .place_order(T0, buyer(2), &bid(25, 1_000_000, pb::TimeInForce::Fok))
        .unwrap();
    assert_eq!(b.state, pb::OrderState::Cancelled as i32);
    // cancelled: the whole rest leaves, and its capacity is free again
    let o = ex
        .cancel_order(
            T0,
            seller(10),
            &pb::CancelOrderRequest {
                order_id: ice.order_id,
            },
        )
        .unwrap();
    assert_eq!((o.filled_quantity, o.remaining_quantity), (20, 0));
    assert!(ex
        .place_order(T0, seller(10), &ask(4, 1_000_000, 0, 0))
        .is_ok());
}

#[test]
fn icebergs_that_cannot_be_are_refused_and_change_nothing() {
    let mut ex = market(3);
    let mut on_bid = bid(8, 1_000_000, pb::TimeInForce::Gtc);
    on_bid.display_quantity = 4;
    let mut ioc = ask(8, 1_000_000, 0, 4);
    ioc.time_in_force = pb::TimeInForce::Ioc as i32;
    let mut block = ask(8, 1_000_000, 0, 4);
    block.hours = 2;
    let cases = [
        (ask(8, 1_000_000, 0, 9), seller(10)),
        (ask(8, 1_000_000, 0, -1), seller(10)),
        (on_bid, buyer(2)),
        (ioc, seller(10)),
        (block, seller(10)),
    ];
    for (r, who) in cases {
        let (seq, hash) = (ex.sequence(), ex.state_hash());
        let err = ex.place_order(T0, who, &r).unwrap_err();
        assert_eq!(err.reason, "INVALID_DISPLAY_QUANTITY", "{r:?}");
        assert_eq!((ex.sequence(), ex.state_hash()), (seq, hash));
    }
}

#[test]
fn random_flows_never_show_more_than_the_clip_and_conserve_quantity() {
    let mut refills = 0;
    for seed in 0..30u64 {
        let mut rng = Rng(seed);
        let mut ex = market(4);
        let mut icebergs: Vec<(u64, u64, i64)> = Vec::new(); // (id, seller, clip)
        let mut ts = T0;
        for _ in 0..80 {
            ts += 1;
            match rng.next() % 5 {
                0 | 1 => {
                    let c = rng.next() % 2;
                    let qty = 1 + (rng.next() % 16) as i64;
                    let clip = if rng.next() % 2 == 0 {
                        1 + (rng.next() % qty as u64) as i64
                    } else {
                        0
                    };
                    let px = 1_000_000 + (rng.next() % 4) as i64 * 10_000;
                    if let Ok(o) = ex.place_order(ts, seller(10 + c), &ask(qty, px, c, clip)) {
                        if clip > 0 {
                            icebergs.push((o.order_id, 10 + c, clip));
                        }
                    }
                }
                2 | 3 => {
                    let tif =
                        [pb::TimeInForce::Ioc, pb::TimeInForce::Fok][(rng.next() % 2) as usize];
                    let qty = 1 + (rng.next() % 24) as i64;
                    let px = 1_000_000 + (rng.next() % 4) as i64 * 10_000;
                    let _ = ex.place_order(ts, buyer(2), &bid(qty, px, tif));
                }
                _ => {
                    if let Some(&(id, owner, _)) = icebergs.get(rng.next() as usize % 8) {
                        // down (hidden first, priority kept) or up, or a new price
                        let r = pb::AmendOrderRequest {
                            order_id: id,
                            price_micros: [0, 1_010_000][(rng.next() % 2) as usize],
                            quantity: 1 + (rng.next() % 12) as i64,
                        };
                        let _ = ex.amend_order(ts, seller(owner), &r);
                    }
                }
            }
            for &(id, owner, clip) in &icebergs {
                if let Some(o) = ex.engine().order(id) {
                    assert!(o.remaining <= clip, "seed {seed}: shows more than its clip");
                    assert!(o.remaining > 0, "seed {seed}: an empty clip rests");
                    // what the owner sees is all of it, and adds up
                    let rec = ex
                        .get_order(
                            seller(owner),
                            &pb::GetOrderRequest {
                                order_id: id,
                                ..Default::default()
                            },
                        )
                        .unwrap();
                    assert_eq!(o.open_qty(), rec.remaining_quantity, "seed {seed}");
                    assert_eq!(o.filled, rec.filled_quantity, "seed {seed}");
                    assert_eq!(rec.filled_quantity + rec.remaining_quantity, rec.quantity);
                    refills += (o.filled >= clip) as usize;
                }
            }
            // the book never crosses at rest
            let book = ex
                .get_book(&pb::GetBookRequest {
                    product_id: pid(),
                    depth: 1,
                })
                .unwrap()
                .book
                .unwrap();
            if let (Some(b), Some(a)) = (book.bids.first(), book.asks.first()) {
                assert!(b.price_micros < a.price_micros, "seed {seed}: crossed");
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
    assert!(refills > 20, "icebergs refilled {refills} times");
}
