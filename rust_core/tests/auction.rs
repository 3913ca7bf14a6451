//! Auction orders and the auction's two commands: orders rest untried, `AuctionStart`
//! freezes those of its window, `AuctionClear` applies each fill checked against the
//! state at that moment (at one price per product) or drops it whole, and a snapshot or
//! a replay of the same commands gives the same state.

use spotex_core::*;

const HOUR: i64 = MICROS_PER_HOUR;
const T0: i64 = 1_000 * HOUR;
const H0: i64 = 1_100; // the first delivery hour
const SELLER: AccountId = 10;
const BUYER: AccountId = 20;
const BUYER2: AccountId = 21;
const USD: Price = 1_000_000;

struct Market {
    e: Engine,
    ts: i64,
    log: Vec<(i64, Command)>,
}

impl Market {
    /// `hours` products from `H0`; one cluster `c0` of two 8-GPU nodes.
    fn new(hours: i64) -> Market {
        let mut m = Market {
            e: Engine::new(),
            ts: T0,
            log: Vec::new(),
        };
        for h in 0..hours {
            m.ok(Command::CreateProduct(ProductSpec {
                id: format!(
                    "H100-SXM/us-east/{}",
                    spotex_core::product::format_hour(H0 + h)
                ),
                tick: 10_000,
                lot: 1,
                open_at: T0,
                close_at: (H0 + h - 1) * HOUR,
            }));
        }
        m.ok(Command::RegisterCapacity {
            account: SELLER,
            spec: ClusterSpec {
                id: "c0".into(),
                sku: "H100-SXM".into(),
                region: "us-east".into(),
                nodes: (0..2)
                    .map(|k| NodeSpec {
                        id: format!("n{k}"),
                        gpus: 8,
                        place: Default::default(),
                    })
                    .collect(),
                from_hour: H0,
                to_hour: H0 + hours,
            },
        });
        m
    }

    fn apply(&mut self, cmd: Command) -> (Result<(), Reject>, Vec<Event>) {
        self.ts += 1;
        let mut out = Vec::new();
        let r = self.e.apply(self.ts, &cmd, &mut out);
        self.log.push((self.ts, cmd));
        (r, out)
    }

    fn ok(&mut self, cmd: Command) -> Vec<Event> {
        let (r, out) = self.apply(cmd);
        assert_eq!(r, Ok(()), "{out:?}");
        out
    }

    fn ask(&mut self, hour: i64, price: Price, qty: Qty) -> OrderId {
        let o = NewOrder {
            cluster: Some(0),
            ..NewOrder::limit(SELLER, hour as ProductHandle, Side::Sell, price, qty)
        };
        accepted(&self.ok(Command::Place(o)))
    }

    fn bid(&mut self, buyer: AccountId, hour: i64, hours: u32, price: Price, qty: Qty) -> OrderId {
        let b = NewBlock {
            account: buyer,
            product: hour as ProductHandle,
            hours,
            price,
            qty,
            gang: 8,
            tif: TimeInForce::GoodTillClose,
            window: 0,
            place: Placement::default(),
            auction: true,
        };
        accepted(&self.ok(Command::PlaceBlock(b)))
    }
}

fn accepted(out: &[Event]) -> OrderId {
    out.iter()
        .find_map(|e| match e {
            Event::Accepted { order_id, .. } => Some(*order_id),
            _ => None,
        })
        .expect("accepted")
}

fn trades(out: &[Event]) -> Vec<(ProductHandle, Price, Qty, OrderId)> {
    out.iter()
        .filter_map(|e| match e {
            Event::Trade {
                product,
                price,
                qty,
                taker_order,
                ..
            } => Some((*product, *price, *qty, *taker_order)),
            _ => None,
        })
        .collect()
}

fn cleared(out: &[Event]) -> (Vec<OrderId>, Vec<OrderId>) {
    out.iter()
        .find_map(|e| match e {
            Event::AuctionCleared {
                filled, dropped, ..
            } => Some((filled.clone(), dropped.clone())),
            _ => None,
        })
        .expect("cleared")
}

fn fill(order_id: OrderId, start: ProductHandle, qty: Qty, node: u32) -> AuctionFill {
    AuctionFill {
        order_id,
        alternative: 0,
        cluster: 0,
        start,
        qty,
        slots: vec![(node, (1u64 << qty) - 1)],
    }
}

#[test]
fn an_auction_bid_rests_untried_and_fills_at_the_clearing_price_when_it_clears() {
    let mut m = Market::new(2);
    m.ask(0, USD, 8);
    m.ask(1, 2 * USD, 8);
    // a continuous block would fill at once; an auction one waits
    let b = m.bid(BUYER, 0, 2, 3 * USD, 8);
    assert!(m.e.resting_block(b).is_some());
    assert_eq!(m.e.l2(0, Side::Sell, 10), vec![(USD, 8, 1)]);
    // frozen once its auction starts: no cancel, no amend, no second auction
    m.ok(Command::AuctionStart {
        auction: 1,
        from_hour: H0,
        to_hour: H0 + 1,
    });
    let cancel = Command::Cancel {
        account: BUYER,
        order_id: b,
    };
    assert_eq!(m.apply(cancel.clone()).0, Err(Reject::AuctionInProgress));
    let again = Command::AuctionStart {
        auction: 2,
        from_hour: H0,
        to_hour: H0 + 1,
    };
    assert_eq!(m.apply(again).0, Err(Reject::AuctionInProgress));
    let view = m.e.auction_view(H0, H0 + 1);
    assert_eq!((view.first_hour, view.hours), (H0, 2), "the block's span");
    assert_eq!(view.bids.len(), 1);
    assert_eq!(view.asks.len(), 2);
    assert_eq!(view.clusters[0].nodes[0].2, vec![0xff, 0xff]);
    // the clearing: one price per product, above the asks' own
    let out = m.ok(Command::AuctionClear {
        auction: 1,
        fills: vec![fill(b, 0, 8, 1)],
        prices: vec![(0, USD + 10_000), (1, 2 * USD)],
        abandoned: false,
        sold: vec![],
    });
    assert_eq!(
        trades(&out),
        vec![(0, USD + 10_000, 8, b), (1, 2 * USD, 8, b)]
    );
    assert_eq!(cleared(&out), (vec![b], vec![]));
    assert!(m.e.resting_block(b).is_none());
    assert_eq!(m.e.open_auction(), None);
    // the GPUs are the ones the result named, in both hours
    let a = &m.e.allocations()[0];
    assert_eq!((a.slots[0].node, a.slots[0].gpus), (1, 0xff));
    // cancel works again on what was not filled; the auction is over
    assert_eq!(m.apply(cancel).0, Err(Reject::UnknownOrder));
}

#[test]
fn a_fill_whose_gpus_or_asks_went_meanwhile_is_dropped_whole_and_its_order_waits() {
    let mut m = Market::new(2);
    m.ask(0, USD, 8);
    m.ask(1, USD, 8);
    let b = m.bid(BUYER, 0, 2, 2 * USD, 8);
    let over = m.bid(BUYER2, 0, 2, USD, 8);
    m.ok(Command::AuctionStart {
        auction: 1,
        from_hour: H0,
        to_hour: H0 + 2,
    });
    // continuous trading goes on: a one-hour bid takes hour 1's ask meanwhile
    m.ok(Command::Place(NewOrder {
        tif: TimeInForce::ImmediateOrCancel,
        ..NewOrder::limit(BUYER2, 1, Side::Buy, USD, 8)
    }));
    let before = m.e.state_hash();
    let out = m.ok(Command::AuctionClear {
        auction: 1,
        fills: vec![
            fill(b, 0, 8, 0),
            // over its limit at these prices
            fill(over, 0, 8, 1),
        ],
        prices: vec![(0, USD), (1, USD + 10_000)],
        abandoned: false,
        sold: vec![],
    });
    assert!(trades(&out).is_empty(), "nothing half-filled");
    assert_eq!(cleared(&out), (vec![], vec![b, over]));
    assert_ne!(m.e.state_hash(), before, "the orders are live again");
    // still resting, for the next auction, and cancellable again
    assert!(m.e.resting_block(b).is_some());
    m.ok(Command::Cancel {
        account: BUYER,
        order_id: b,
    });
}

#[test]
fn a_one_hour_auction_bid_fills_in_part_and_waits_with_the_rest() {
    let mut m = Market::new(1);
    m.ask(0, USD, 8);
    let b = m.bid(BUYER, 0, 1, 2 * USD, 16);
    m.ok(Command::AuctionStart {
        auction: 1,
        from_hour: H0,
        to_hour: H0 + 1,
    });
    let out = m.ok(Command::AuctionClear {
        auction: 1,
        fills: vec![fill(b, 0, 8, 0)],
        prices: vec![(0, USD)],
        abandoned: false,
        sold: vec![],
    });
    assert_eq!(trades(&out), vec![(0, USD, 8, b)]);
    assert_eq!(m.e.resting_block(b).map(|rb| rb.block.qty), Some(8));
}

#[test]
fn a_gpu_is_never_given_twice_in_one_clearing() {
    let mut m = Market::new(1);
    m.ask(0, USD, 16);
    let a = m.bid(BUYER, 0, 1, 2 * USD, 8);
    let b = m.bid(BUYER2, 0, 1, 2 * USD, 8);
    m.ok(Command::AuctionStart {
        auction: 1,
        from_hour: H0,
        to_hour: H0 + 1,
    });
    let out = m.ok(Command::AuctionClear {
        auction: 1,
        fills: vec![fill(a, 0, 8, 0), fill(b, 0, 8, 0)],
        prices: vec![(0, USD)],
        abandoned: false,
        sold: vec![],
    });
    assert_eq!(cleared(&out), (vec![a], vec![b]));
}

#[test]
fn orders_placed_after_the_start_wait_for_the_next_auction() {
    let mut m = Market::new(1);
    m.ask(0, USD, 8);
    m.ok(Command::AuctionStart {
        auction: 1,
        from_hour: H0,
        to_hour: H0 + 1,
    });
    let late = m.bid(BUYER, 0, 1, 2 * USD, 8);
    assert!(m.e.auction_view(H0, H0 + 1).bids.is_empty());
    let out = m.ok(Command::AuctionClear {
        auction: 1,
        fills: vec![fill(late, 0, 8, 0)],
        prices: vec![(0, USD)],
        abandoned: false,
        sold: vec![],
    });
    assert_eq!(cleared(&out), (vec![], vec![late]));
    // a result for an auction not running is refused, and changes nothing
    let stale = Command::AuctionClear {
        auction: 1,
        fills: vec![],
        prices: vec![],
        abandoned: false,
        sold: vec![],
    };
    assert_eq!(m.apply(stale).0, Err(Reject::AuctionNotRunning));
}

#[test]
fn auction_terms_are_good_till() {
    let mut m = Market::new(1);
    let b = NewBlock {
        account: BUYER,
        product: 0,
        hours: 1,
        price: USD,
        qty: 8,
        gang: 8,
        tif: TimeInForce::ImmediateOrCancel,
        window: 0,
        place: Placement::default(),
        auction: true,
    };
    assert_eq!(
        m.apply(Command::PlaceBlock(b.clone())).0,
        Err(Reject::InvalidAuction)
    );
    let mixed = vec![
        NewBlock {
            tif: TimeInForce::GoodTillClose,
            ..b.clone()
        },
        NewBlock {
            tif: TimeInForce::GoodTillClose,
            auction: false,
            ..b
        },
    ];
    assert_eq!(
        m.apply(Command::PlaceOneOf(mixed)).0,
        Err(Reject::InvalidAuction)
    );
}

fn placed(out: &[Event]) -> Option<(Level, String)> {
    out.iter().find_map(|e| match e {
        Event::Placed { level, domain, .. } => Some((*level, domain.clone())),
        _ => None,
    })
}

#[test]
fn a_fill_that_breaks_its_placement_terms_is_dropped_whole() {
    // two unlabelled 8-GPU nodes: they share the cluster and no rack
    let mut m = Market::new(2);
    let run = |m: &mut Market, auction: u64, fills: Vec<AuctionFill>, hour: i64| {
        m.ok(Command::AuctionStart {
            auction,
            from_hour: H0 + hour,
            to_hour: H0 + hour + 1,
        });
        m.ok(Command::AuctionClear {
            auction,
            fills,
            prices: vec![(hour as ProductHandle, USD)],
            abandoned: false,
            sold: vec![],
        })
    };
    let block = |account, qty, place| NewBlock {
        account,
        product: 0,
        hours: 1,
        price: 2 * USD,
        qty,
        gang: 8,
        tif: TimeInForce::GoodTillClose,
        window: 0,
        place,
        auction: true,
    };
    let across = |order_id| AuctionFill {
        slots: vec![(0, 0xff), (1, 0xff)],
        ..fill(order_id, 0, 16, 0)
    };
    m.ask(0, USD, 16);
    // one rack required: 16 GPUs on two nodes are not in one rack
    let rack = Placement {
        level: Some(Level::Rack),
        ..Placement::default()
    };
    let required = accepted(&m.ok(Command::PlaceBlock(block(BUYER, 16, rack.clone()))));
    let out = run(&mut m, 1, vec![across(required)], 0);
    assert_eq!(cleared(&out), (vec![], vec![required]));
    assert!(trades(&out).is_empty());
    m.ok(Command::Cancel {
        account: BUYER,
        order_id: required,
    });
    // only preferred: the tightest level they share, here the cluster
    let preferred = Placement {
        preferred: true,
        ..rack
    };
    let loose = accepted(&m.ok(Command::PlaceBlock(block(BUYER2, 16, preferred))));
    let out = run(&mut m, 2, vec![across(loose)], 0);
    assert_eq!(cleared(&out), (vec![loose], vec![]));
    assert_eq!(placed(&out), Some((Level::Cluster, String::new())));
    let allocation = match out.iter().find(|e| matches!(e, Event::Trade { .. })) {
        Some(Event::Trade { trade_id, .. }) => *trade_id,
        _ => panic!("traded"),
    };
    // next to that allocation (its first node is n0), on one node: n1 breaks it, n0 fits
    m.ask(1, USD, 8);
    let near = Placement {
        level: Some(Level::Node),
        near: Some(allocation),
        ..Placement::default()
    };
    let next = accepted(&m.ok(Command::PlaceBlock(NewBlock {
        product: 1,
        ..block(BUYER2, 8, near)
    })));
    // the view tells the optimiser the terms and where the nodes sit
    let view = m.e.auction_view(H0 + 1, H0 + 2);
    assert_eq!(
        (view.bids[0].level, view.bids[0].near),
        (Some(Level::Node), Some((0, 0)))
    );
    assert_eq!(view.clusters[0].places.len(), 2);
    let out = run(&mut m, 3, vec![fill(next, 1, 8, 1)], 1);
    assert_eq!(cleared(&out), (vec![], vec![next]));
    let out = run(&mut m, 4, vec![fill(next, 1, 8, 0)], 1);
    assert_eq!(cleared(&out), (vec![next], vec![]));
    assert_eq!(placed(&out), Some((Level::Node, "node:n0".to_string())));
}

#[test]
fn a_snapshot_mid_auction_and_a_replay_give_the_same_state() {
    let mut m = Market::new(2);
    m.ask(0, USD, 16);
    m.ask(1, USD, 8);
    let b = m.bid(BUYER, 0, 2, 2 * USD, 8);
    let g = {
        let alt = |hours| NewBlock {
            account: BUYER2,
            product: 0,
            hours,
            price: 2 * USD,
            qty: 8,
            gang: 8,
            tif: TimeInForce::GoodTillClose,
            window: 0,
            place: Placement::default(),
            auction: true,
        };
        accepted(&m.ok(Command::PlaceOneOf(vec![alt(2), alt(1)])))
    };
    m.ok(Command::AuctionStart {
        auction: 7,
        from_hour: H0,
        to_hour: H0 + 1,
    });
    let restored = Engine::restore(&m.e.snapshot()).expect("restores");
    assert_eq!(restored.state_hash(), m.e.state_hash());
    assert_eq!(restored.open_auction(), m.e.open_auction());
    let clear = Command::AuctionClear {
        auction: 7,
        fills: vec![
            fill(b, 0, 8, 0),
            AuctionFill {
                alternative: 1,
                ..fill(g, 0, 8, 1)
            },
        ],
        prices: vec![(0, USD), (1, USD)],
        abandoned: false,
        sold: vec![],
    };
    let mut r = restored;
    let mut out = Vec::new();
    r.apply(m.ts + 1, &clear, &mut out).expect("clears");
    let live = m.ok(clear);
    assert_eq!(out, live);
    assert_eq!(cleared(&live), (vec![b, g], vec![]));
    assert_eq!(r.state_hash(), m.e.state_hash());
    // the same commands from the start, through their own encoding
    let mut replayed = Engine::new();
    for (ts, cmd) in &m.log {
        let cmd = codec::decode_command(&codec::encode_command(cmd)).expect("decodes");
        let _ = replayed.apply(*ts, &cmd, &mut Vec::new());
    }
    assert_eq!(replayed.state_hash(), m.e.state_hash());
}

#[test]
fn an_hour_held_for_its_auction_takes_no_continuous_bid_until_the_auction_clears_it() {
    let mut m = Market::new(2);
    for p in 0..2 {
        m.ok(Command::HoldForAuction { product: p });
    }
    assert_eq!(m.e.products()[0].state, ProductState::Auction);
    m.ask(0, USD, 8);
    let bid = NewOrder::limit(BUYER2, 0, Side::Buy, 2 * USD, 8);
    assert_eq!(
        m.apply(Command::Place(bid.clone())).0,
        Err(Reject::AuctionFirst)
    );
    let b = m.bid(BUYER, 0, 1, 2 * USD, 8);
    // an auction lost to a restart leaves its hours held
    let start = |id| Command::AuctionStart {
        auction: id,
        from_hour: H0,
        to_hour: H0 + 1,
    };
    m.ok(start(1));
    m.ok(Command::AuctionClear {
        auction: 1,
        fills: vec![],
        prices: vec![],
        abandoned: true,
        sold: vec![],
    });
    assert_eq!(m.e.products()[0].state, ProductState::Auction);
    m.ok(start(2));
    let out = m.ok(Command::AuctionClear {
        auction: 2,
        fills: vec![fill(b, 0, 8, 0)],
        prices: vec![(0, USD)],
        abandoned: false,
        sold: vec![],
    });
    assert_eq!(cleared(&out), (vec![b], vec![]));
    // its window's hour opens; the next hour waits for its own auction
    assert_eq!(m.e.products()[0].state, ProductState::Open);
    assert_eq!(m.e.products()[1].state, ProductState::Auction);
    assert_eq!(m.apply(Command::Place(bid)).0, Ok(()));
}

/// A small generator (xorshift) for the randomised test below.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Random markets and random, mostly hostile results: a clear never panics, never sells
/// a GPU-hour twice or trades off its product's clearing price or over a bid's limit;
/// every fill is applied or dropped; a snapshot and a replay of the commands give the
/// same state.
#[test]
fn random_results_never_sell_a_gpu_twice_nor_trade_off_the_clearing_price() {
    let mut applied = 0;
    for seed in 1..=300u64 {
        let mut rng = Rng(seed * 0x9E37_79B9_7F4A_7C15);
        let hours = 4;
        let mut m = Market::new(hours);
        let mut tops = Vec::new();
        for h in 0..hours {
            // half the hour's GPUs cheap, maybe the rest dearer
            let mut top = USD + 10_000 * rng.below(20) as i64;
            m.ask(h, top, 8);
            if rng.below(2) == 0 {
                top += 10_000 * rng.below(50) as i64;
                m.ask(h, top, 8);
            }
            tops.push(top);
        }
        let mut bids = Vec::new();
        for k in 0..1 + rng.below(6) {
            let n = 1 + rng.below(hours as u64) as u32;
            let start = rng.below(hours as u64 - n as u64 + 1) as i64;
            let gang = [1, 2, 8][rng.below(3) as usize];
            let qty = gang as i64 * (1 + rng.below(2) as i64);
            let b = NewBlock {
                account: BUYER + k % 2,
                product: start as ProductHandle,
                hours: n,
                price: USD + 50 * 10_000 + 10_000 * rng.below(150) as i64,
                qty,
                gang,
                tif: TimeInForce::GoodTillClose,
                window: 0,
                place: Placement::default(),
                auction: true,
            };
            bids.push((accepted(&m.ok(Command::PlaceBlock(b.clone()))), b));
        }
        m.ok(Command::AuctionStart {
            auction: 1,
            from_hour: H0,
            to_hour: H0 + hours,
        });
        let mut fills = Vec::new();
        for _ in 0..rng.below(8) {
            let (id, b) = &bids[rng.below(bids.len() as u64) as usize];
            fills.push(AuctionFill {
                order_id: if rng.below(10) == 0 { 999 } else { *id },
                alternative: (rng.below(8) == 0) as u32,
                cluster: rng.below(3) as u32, // 1 and 2 are no cluster
                start: if rng.below(4) == 0 {
                    rng.below(hours as u64 + 1) as u32
                } else {
                    b.product
                },
                qty: if rng.below(4) == 0 {
                    rng.below(20) as i64
                } else {
                    b.qty
                },
                slots: if rng.below(2) == 0 {
                    // the GPUs a fill of the whole would name: full nodes from a random one
                    let first = rng.below(2) as u32;
                    match b.qty {
                        16 => vec![(0, 0xff), (1, 0xff)],
                        q => vec![(first, ((1u64 << q) - 1) << (8 - q))],
                    }
                } else {
                    (0..rng.below(3))
                        .map(|_| (rng.below(3) as u32, rng.next() & 0x1ff))
                        .collect()
                },
            });
        }
        let mut prices: Vec<(ProductHandle, Price)> = Vec::new();
        for p in 0..hours as u32 {
            if rng.below(8) != 0 {
                let px = tops[p as usize] + 10_000 * rng.below(30) as i64 - 100_000;
                prices.push((p, px.max(10_000)));
            }
        }
        let before = m.e.allocations().len();
        let out = m.ok(Command::AuctionClear {
            auction: 1,
            fills: fills.clone(),
            prices: prices.clone(),
            abandoned: false,
            sold: vec![],
        });
        let (filled, dropped) = cleared(&out);
        assert_eq!(filled.len() + dropped.len(), fills.len(), "seed {seed}");
        applied += filled.len();
        // every trade at its product's clearing price; each block within its limit
        let price_of: std::collections::HashMap<_, _> = prices.iter().copied().collect();
        let mut cost: std::collections::HashMap<OrderId, i128> = Default::default();
        for (p, px, q, taker) in trades(&out) {
            assert_eq!(Some(&px), price_of.get(&p), "seed {seed}");
            *cost.entry(taker).or_default() += px as i128 * q as i128;
        }
        for (id, b) in &bids {
            let paid = cost.get(id).copied().unwrap_or(0);
            assert!(
                paid <= b.price as i128 * b.qty as i128 * b.hours as i128,
                "seed {seed}"
            );
        }
        // no GPU-hour sold twice (the allocations of one cluster and hour are disjoint)
        let mut held: std::collections::HashMap<(ClusterHandle, i64, u32), u64> =
            Default::default();
        for a in &m.e.allocations()[before..] {
            for s in &a.slots {
                let mask = held.entry((a.cluster, a.hour, s.node)).or_default();
                assert_eq!(*mask & s.gpus, 0, "seed {seed}: a GPU sold twice");
                *mask |= s.gpus;
            }
        }
        let restored = Engine::restore(&m.e.snapshot()).expect("restores");
        assert_eq!(restored.state_hash(), m.e.state_hash(), "seed {seed}");
        let mut replayed = Engine::new();
        for (ts, cmd) in &m.log {
            let cmd = codec::decode_command(&codec::encode_command(cmd)).expect("decodes");
            let _ = replayed.apply(*ts, &cmd, &mut Vec::new());
        }
        assert_eq!(replayed.state_hash(), m.e.state_hash(), "seed {seed}");
    }
    // the sane fills among the hostile ones were applied
    assert!(applied >= 20, "only {applied} fills applied");
}

impl Market {
    fn seller_block(&mut self, hour: i64, hours: u32, price: Price, qty: Qty) -> OrderId {
        let b = NewSellerBlock {
            account: SELLER,
            cluster: 0,
            product: hour as ProductHandle,
            hours,
            price,
            qty,
            tif: TimeInForce::GoodTillClose,
        };
        accepted(&self.ok(Command::PlaceSellerBlock(b)))
    }
}

fn makers(out: &[Event]) -> Vec<OrderId> {
    out.iter()
        .filter_map(|e| match e {
            Event::Trade { maker_order, .. } => Some(*maker_order),
            _ => None,
        })
        .collect()
}

#[test]
fn a_seller_block_is_sold_whole_to_several_bids_or_not_at_all() {
    let mut m = Market::new(2);
    let sb = m.seller_block(0, 2, USD, 8);
    // its GPUs are reserved in both hours: only 8 more may be offered in each
    let over = NewOrder {
        cluster: Some(0),
        ..NewOrder::limit(SELLER, 0, Side::Sell, USD, 9)
    };
    assert_eq!(
        m.apply(Command::Place(over)).0,
        Err(Reject::InsufficientCapacity)
    );
    let first = m.bid(BUYER, 0, 1, 2 * USD, 8);
    let second = m.bid(BUYER2, 1, 1, 2 * USD, 8);
    let start = |id| Command::AuctionStart {
        auction: id,
        from_hour: H0,
        to_hour: H0 + 2,
    };
    m.ok(start(1));
    assert_eq!(
        m.apply(Command::Cancel {
            account: SELLER,
            order_id: sb
        })
        .0,
        Err(Reject::AuctionInProgress)
    );
    let view = m.e.auction_view(H0, H0 + 2);
    assert_eq!(
        view.asks
            .iter()
            .map(|a| (a.order_id, a.hours, a.whole))
            .collect::<Vec<_>>(),
        vec![(sb, 2, true)]
    );
    // a lone hour of it is never sold: its one fill is dropped, and it waits
    let out = m.ok(Command::AuctionClear {
        auction: 1,
        fills: vec![fill(first, 0, 8, 0)],
        prices: vec![(0, USD), (1, USD)],
        abandoned: false,
        sold: vec![sb],
    });
    assert_eq!(cleared(&out), (vec![], vec![first]));
    assert!(trades(&out).is_empty());
    assert!(m.e.seller_block(sb).is_some_and(|s| !s.frozen));
    // both hours bought, by two buyers: sold whole, at the clearing prices
    m.ok(start(2));
    let out = m.ok(Command::AuctionClear {
        auction: 2,
        fills: vec![fill(first, 0, 8, 0), fill(second, 1, 8, 1)],
        prices: vec![(0, USD + 10_000), (1, USD)],
        abandoned: false,
        sold: vec![sb],
    });
    assert_eq!(cleared(&out), (vec![first, second], vec![]));
    assert_eq!(
        trades(&out),
        vec![(0, USD + 10_000, 8, first), (1, USD, 8, second)]
    );
    assert_eq!(makers(&out), vec![sb, sb]);
    assert!(m.e.seller_block(sb).is_none(), "sold: gone");
    let restored = Engine::restore(&m.e.snapshot()).expect("restores");
    assert_eq!(restored.state_hash(), m.e.state_hash());
}

#[test]
fn a_seller_block_rests_reserving_its_gpus_until_cancelled_or_its_gate_closes() {
    let mut m = Market::new(2);
    let sb = m.seller_block(0, 2, USD, 16);
    let again = Engine::restore(&m.e.snapshot()).expect("restores");
    assert_eq!(again.state_hash(), m.e.state_hash());
    assert_eq!(
        again.seller_block(sb).map(|s| s.products.clone()),
        Some(vec![0, 1])
    );
    let out = m.ok(Command::Cancel {
        account: SELLER,
        order_id: sb,
    });
    assert!(matches!(out[0], Event::Cancelled { order_id, .. } if order_id == sb));
    m.ask(0, USD, 16); // its GPUs are free to offer again
    let sb = m.seller_block(1, 1, USD, 16);
    // the gate of its hour closes: it expires
    m.ts = H0 * HOUR + 1;
    let out = m.ok(Command::AdvanceTime);
    assert!(out.iter().any(
        |e| matches!(e, Event::Expired { order_id, reason: ExpireReason::GateClosure, .. } if *order_id == sb)
    ));
}

/// Random seller blocks, bids and results: a seller block named sold is either sold
/// whole (every GPU-hour of it traded, then gone) or not traded at all and still there.
#[test]
fn random_results_sell_a_seller_block_whole_or_not_at_all() {
    let mut sold_whole = 0;
    for seed in 1..=300u64 {
        let mut rng = Rng(seed * 0x2545_F491_4F6C_DD1D);
        let hours = 3;
        let mut m = Market::new(hours);
        let mut blocks = Vec::new();
        for _ in 0..1 + rng.below(2) {
            let n = 2 + rng.below(2) as u32;
            let start = rng.below(hours as u64 - n as u64 + 1) as i64;
            let qty = [4, 8][rng.below(2) as usize];
            let px = USD + 10_000 * rng.below(30) as i64;
            let b = NewSellerBlock {
                account: SELLER,
                cluster: 0,
                product: start as ProductHandle,
                hours: n,
                price: px,
                qty,
                tif: TimeInForce::GoodTillClose,
            };
            if let (Ok(()), out) = m.apply(Command::PlaceSellerBlock(b.clone())) {
                blocks.push((accepted(&out), b));
            }
        }
        let mut bids = Vec::new();
        for k in 0..1 + rng.below(5) {
            let h = rng.below(hours as u64) as i64;
            let qty = [4, 8][rng.below(2) as usize];
            let b = NewBlock {
                account: BUYER + k % 2,
                product: h as ProductHandle,
                hours: 1,
                price: 2 * USD,
                qty,
                gang: 4,
                tif: TimeInForce::GoodTillClose,
                window: 0,
                place: Placement::default(),
                auction: true,
            };
            bids.push((accepted(&m.ok(Command::PlaceBlock(b.clone()))), b));
        }
        m.ok(Command::AuctionStart {
            auction: 1,
            from_hour: H0,
            to_hour: H0 + hours,
        });
        let mut fills = Vec::new();
        for (id, b) in &bids {
            if rng.below(4) == 0 {
                continue;
            }
            let node = rng.below(2) as u32;
            let mask = if b.qty == 8 {
                0xff
            } else {
                0x0f << (4 * rng.below(2))
            };
            fills.push(AuctionFill {
                order_id: *id,
                alternative: 0,
                cluster: 0,
                start: b.product,
                qty: b.qty,
                slots: vec![(node, mask)],
            });
        }
        let sold: Vec<OrderId> = blocks.iter().map(|(id, _)| *id).collect();
        let prices = (0..hours as u32).map(|p| (p, 2 * USD)).collect();
        let out = m.ok(Command::AuctionClear {
            auction: 1,
            fills,
            prices,
            abandoned: false,
            sold,
        });
        for (id, b) in &blocks {
            let mut per_hour = vec![0; hours as usize];
            for e in &out {
                if let Event::Trade {
                    maker_order,
                    product,
                    qty,
                    ..
                } = e
                {
                    if maker_order == id {
                        per_hour[*product as usize] += qty;
                    }
                }
            }
            let span = b.product as usize..(b.product + b.hours) as usize;
            let traded: Qty = per_hour.iter().sum();
            if traded == 0 {
                let left = m.e.seller_block(*id).map(|s| s.left.clone());
                assert_eq!(left, Some(vec![b.qty; b.hours as usize]), "seed {seed}");
            } else {
                sold_whole += 1;
                assert!(m.e.seller_block(*id).is_none(), "seed {seed}");
                for (h, &q) in per_hour.iter().enumerate() {
                    let want = if span.contains(&h) { b.qty } else { 0 };
                    assert_eq!(q, want, "seed {seed}: hour {h} of {id}");
                }
            }
        }
        let restored = Engine::restore(&m.e.snapshot()).expect("restores");
        assert_eq!(restored.state_hash(), m.e.state_hash(), "seed {seed}");
    }
    assert!(sold_whole >= 20, "only {sold_whole} seller blocks sold");
}
