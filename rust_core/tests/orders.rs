//! One test per order type, per lifecycle rule and per rejection.

use spotex_core::*;

const HOUR: i64 = MICROS_PER_HOUR;
const T0: i64 = 1_000 * HOUR; // trading starts
const DELIVERY: i64 = 1_100 * HOUR;
const SELLER: AccountId = 10;
const SELLER2: AccountId = 11;
const BUYER: AccountId = 20;

struct Market {
    e: Engine,
    ts: i64,
    product: ProductHandle,
    cluster: ClusterHandle,
    cluster2: ClusterHandle,
}

fn product_id() -> String {
    format!(
        "H100-SXM/us-east/{}",
        spotex_core::product::format_hour(DELIVERY / HOUR)
    )
}

impl Market {
    fn new() -> Market {
        let mut m = Market {
            e: Engine::new(),
            ts: T0,
            product: 0,
            cluster: 0,
            cluster2: 1,
        };
        m.ok(Command::CreateProduct(ProductSpec {
            id: product_id(),
            tick: 10_000,
            lot: 1,
            open_at: T0,
            close_at: DELIVERY - HOUR,
        }));
        for (seller, id) in [(SELLER, "c1"), (SELLER2, "c2")] {
            m.ok(Command::RegisterCapacity {
                account: seller,
                spec: ClusterSpec {
                    id: id.into(),
                    sku: "H100-SXM".into(),
                    region: "us-east".into(),
                    nodes: (0..4)
                        .map(|i| NodeSpec {
                            id: format!("n{i}"),
                            gpus: 8,
                            place: Default::default(),
                        })
                        .collect(),
                    from_hour: DELIVERY / HOUR - 5,
                    to_hour: DELIVERY / HOUR + 5,
                },
            });
        }
        m
    }

    fn run(&mut self, cmd: Command) -> (Result<(), Reject>, Vec<Event>) {
        self.ts += 1;
        let mut out = Vec::new();
        let r = self.e.apply(self.ts, &cmd, &mut out);
        (r, out)
    }

    fn ok(&mut self, cmd: Command) -> Vec<Event> {
        let (r, out) = self.run(cmd);
        assert_eq!(r, Ok(()), "{out:?}");
        out
    }

    fn reject(&mut self, cmd: Command) -> Reject {
        // move the clock first, so the hash before and after differ only by the command
        self.ok(Command::AdvanceTime);
        let before = self.e.state_hash();
        let mut out = Vec::new();
        let reason = self
            .e
            .apply(self.ts, &cmd, &mut out)
            .expect_err("command should be rejected");
        assert_eq!(out, vec![Event::Rejected { reason }]);
        assert_eq!(
            before,
            self.e.state_hash(),
            "a rejected command changed the state"
        );
        reason
    }

    fn ask(&self, price: Price, qty: Qty) -> NewOrder {
        NewOrder {
            cluster: Some(self.cluster),
            ..NewOrder::limit(SELLER, self.product, Side::Sell, price, qty)
        }
    }

    fn bid(&self, price: Price, qty: Qty) -> NewOrder {
        NewOrder::limit(BUYER, self.product, Side::Buy, price, qty)
    }

    fn place(&mut self, o: NewOrder) -> (OrderId, Vec<Event>) {
        let out = self.ok(Command::Place(o));
        let Event::Accepted { order_id, .. } = out[0] else {
            panic!("{out:?}")
        };
        (order_id, out)
    }

    fn trades(out: &[Event]) -> Vec<(Price, Qty, OrderId)> {
        out.iter()
            .filter_map(|e| match e {
                Event::Trade {
                    price,
                    qty,
                    maker_order,
                    ..
                } => Some((*price, *qty, *maker_order)),
                _ => None,
            })
            .collect()
    }

    fn levels(&self, side: Side) -> Vec<(Price, Qty, u32)> {
        self.e.l2(self.product, side, 100)
    }
}

fn ids(out: &[Event]) -> Vec<&'static str> {
    out.iter()
        .map(|e| match e {
            Event::Accepted { .. } => "accepted",
            Event::Rejected { .. } => "rejected",
            Event::Trade { .. } => "trade",
            Event::Allocated { .. } => "allocated",
            Event::Cancelled { .. } => "cancelled",
            Event::Expired { .. } => "expired",
            Event::Amended { .. } => "amended",
            _ => "other",
        })
        .collect()
}

#[test]
fn limit_orders_rest_and_trade_at_the_resting_price() {
    let mut m = Market::new();
    let (a1, _) = m.place(m.ask(2_100_000, 8));
    let (a2, _) = m.place(m.ask(2_000_000, 4));
    assert_eq!(
        m.levels(Side::Sell),
        vec![(2_000_000, 4, 1), (2_100_000, 8, 1)]
    );
    // a bid at 2.20 for 10 sweeps the better ask first, then part of the next
    let (b, out) = m.place(m.bid(2_200_000, 10));
    assert_eq!(
        Market::trades(&out),
        vec![(2_000_000, 4, a2), (2_100_000, 6, a1)]
    );
    assert_eq!(
        ids(&out),
        ["accepted", "trade", "allocated", "trade", "allocated"]
    );
    assert!(m.e.order(b).is_none());
    assert_eq!(m.e.order(a1).unwrap().remaining, 2);
    assert_eq!(m.e.order(a1).unwrap().filled, 6);
    assert_eq!(m.levels(Side::Sell), vec![(2_100_000, 2, 1)]);
}

#[test]
fn time_priority_within_a_level() {
    let mut m = Market::new();
    let (a1, _) = m.place(m.ask(2_000_000, 2));
    let (a2, _) = m.place(m.ask(2_000_000, 2));
    let (a3, _) = m.place(m.ask(2_000_000, 2));
    // cancel in the middle of the FIFO queue
    m.ok(Command::Cancel {
        account: SELLER,
        order_id: a2,
    });
    let (_, out) = m.place(m.bid(2_000_000, 3));
    assert_eq!(
        Market::trades(&out),
        vec![(2_000_000, 2, a1), (2_000_000, 1, a3)]
    );
    // the residual of a3 is now the touch
    assert_eq!(m.levels(Side::Sell), vec![(2_000_000, 1, 1)]);
}

#[test]
fn ioc_fills_what_it_can_and_cancels_the_rest() {
    let mut m = Market::new();
    m.place(m.ask(2_000_000, 3));
    let o = NewOrder {
        tif: TimeInForce::ImmediateOrCancel,
        ..m.bid(2_000_000, 5)
    };
    let (_, out) = m.place(o);
    assert_eq!(ids(&out), ["accepted", "trade", "allocated", "cancelled"]);
    assert!(matches!(
        out[3],
        Event::Cancelled {
            qty: 2,
            reason: CancelReason::Unfilled,
            ..
        }
    ));
    assert!(m.levels(Side::Buy).is_empty());
}

#[test]
fn fok_fills_completely_or_not_at_all() {
    let mut m = Market::new();
    m.place(m.ask(2_000_000, 3));
    let before = m.e.state_hash();
    let o = NewOrder {
        tif: TimeInForce::FillOrKill,
        ..m.bid(2_000_000, 5)
    };
    let (_, out) = m.place(o.clone());
    assert_eq!(ids(&out), ["accepted", "cancelled"]);
    assert!(matches!(
        out[1],
        Event::Cancelled {
            qty: 5,
            reason: CancelReason::FillOrKill,
            ..
        }
    ));
    assert_eq!(m.levels(Side::Sell), vec![(2_000_000, 3, 1)]);
    assert_ne!(before, m.e.state_hash(), "order ids still advance");
    m.place(m.ask(2_010_000, 2));
    let (_, out) = m.place(NewOrder {
        price: 2_010_000,
        ..o
    });
    assert_eq!(Market::trades(&out).len(), 2);
    assert!(m.levels(Side::Sell).is_empty());
}

#[test]
fn market_order_respects_its_protection_price() {
    let mut m = Market::new();
    m.place(m.ask(2_000_000, 2));
    m.place(m.ask(3_000_000, 2));
    let o = NewOrder {
        order_type: OrderType::Market,
        tif: TimeInForce::ImmediateOrCancel,
        ..m.bid(2_500_000, 4)
    };
    let (_, out) = m.place(o);
    assert_eq!(
        Market::trades(&out).iter().map(|t| t.0).collect::<Vec<_>>(),
        vec![2_000_000]
    );
    assert!(matches!(
        out.last(),
        Some(Event::Cancelled {
            qty: 2,
            reason: CancelReason::Unfilled,
            ..
        })
    ));
}

#[test]
fn post_only_rests_or_is_rejected() {
    let mut m = Market::new();
    m.place(m.ask(2_000_000, 2));
    let o = NewOrder {
        post_only: true,
        ..m.bid(2_000_000, 1)
    };
    assert_eq!(
        m.reject(Command::Place(o.clone())),
        Reject::PostOnlyWouldCross
    );
    let (id, out) = m.place(NewOrder {
        price: 1_990_000,
        ..o
    });
    assert_eq!(ids(&out), ["accepted"]);
    assert!(m.e.order(id).is_some());
}

#[test]
fn good_till_time_expires_when_time_passes() {
    let mut m = Market::new();
    let at = m.ts + 100;
    let (id, _) = m.place(NewOrder {
        tif: TimeInForce::GoodTillTime(at),
        ..m.bid(2_000_000, 1)
    });
    m.ts = at - 2;
    assert!(m.ok(Command::AdvanceTime).is_empty());
    let out = m.ok(Command::AdvanceTime);
    assert_eq!(
        out,
        vec![Event::Expired {
            order_id: id,
            account: BUYER,
            product: m.product,
            qty: 1,
            reason: ExpireReason::GoodTillTime
        }]
    );
    assert_eq!(
        m.reject(Command::Cancel {
            account: BUYER,
            order_id: id
        }),
        Reject::UnknownOrder
    );
    let past = NewOrder {
        tif: TimeInForce::GoodTillTime(m.ts),
        ..m.bid(2_000_000, 1)
    };
    assert_eq!(m.reject(Command::Place(past)), Reject::InvalidExpiry);
}

#[test]
fn gate_closure_expires_everything_and_refuses_orders() {
    let mut m = Market::new();
    let (a, _) = m.place(m.ask(2_000_000, 2));
    let (b, _) = m.place(m.bid(1_000_000, 2));
    m.ts = DELIVERY - HOUR - 1;
    let out = m.ok(Command::AdvanceTime);
    assert_eq!(ids(&out), ["other", "expired", "expired"]);
    assert!(
        matches!(out[1], Event::Expired { order_id, reason: ExpireReason::GateClosure, .. } if order_id == a)
    );
    assert!(matches!(out[2], Event::Expired { order_id, .. } if order_id == b));
    assert_eq!(
        m.reject(Command::Place(m.bid(1_000_000, 1))),
        Reject::ProductClosed
    );
    // the ask's reservation is released
    let u = m.e.utilisation(m.cluster, DELIVERY / HOUR).unwrap();
    assert_eq!((u.offered, u.sold, u.idle), (0, 0, 32));
}

#[test]
fn operator_close_halt_and_resume() {
    let mut m = Market::new();
    m.place(m.ask(2_000_000, 2));
    m.ok(Command::Halt { product: m.product });
    assert_eq!(
        m.reject(Command::Place(m.bid(2_000_000, 1))),
        Reject::ProductHalted
    );
    m.ok(Command::Resume { product: m.product });
    m.ok(Command::Close { product: m.product });
    assert!(m.levels(Side::Sell).is_empty());
    assert_eq!(
        m.reject(Command::Close { product: m.product }),
        Reject::ProductClosed
    );
    assert_eq!(
        m.reject(Command::Resume { product: m.product }),
        Reject::ProductClosed
    );
}

#[test]
fn amend_down_keeps_priority_up_or_reprice_loses_it() {
    let mut m = Market::new();
    let (a1, _) = m.place(m.ask(2_000_000, 4));
    let (a2, _) = m.place(m.ask(2_000_000, 4));
    let out = m.ok(Command::Amend {
        account: SELLER,
        order_id: a1,
        price: None,
        qty: Some(2),
    });
    assert!(matches!(
        out[0],
        Event::Amended {
            priority_kept: true,
            qty: 2,
            ..
        }
    ));
    let ids_at = |m: &Market| {
        m.e.l3(m.product, Side::Sell)
            .iter()
            .map(|o| o.id)
            .collect::<Vec<_>>()
    };
    assert_eq!(ids_at(&m), vec![a1, a2]);
    let out = m.ok(Command::Amend {
        account: SELLER,
        order_id: a1,
        price: None,
        qty: Some(3),
    });
    assert!(matches!(
        out[0],
        Event::Amended {
            priority_kept: false,
            ..
        }
    ));
    assert_eq!(ids_at(&m), vec![a2, a1]);
    assert_eq!(
        m.reject(Command::Amend {
            account: SELLER,
            order_id: a1,
            price: None,
            qty: Some(3)
        }),
        Reject::NothingToAmend
    );
}

#[test]
fn amend_into_a_cross_trades() {
    let mut m = Market::new();
    let (a, _) = m.place(m.ask(2_000_000, 4));
    let (b, _) = m.place(m.bid(1_900_000, 2));
    let out = m.ok(Command::Amend {
        account: BUYER,
        order_id: b,
        price: Some(2_000_000),
        qty: None,
    });
    assert_eq!(ids(&out), ["amended", "trade", "allocated"]);
    assert_eq!(Market::trades(&out), vec![(2_000_000, 2, a)]);
    assert!(m.e.order(b).is_none());
}

#[test]
fn self_trade_prevention_modes() {
    let mut m = Market::new();
    // the seller also bids (an account may be both)
    let (a, _) = m.place(m.ask(2_000_000, 2));
    let mine = NewOrder::limit(SELLER, m.product, Side::Buy, 2_000_000, 2);
    let (id, out) = m.place(mine.clone());
    assert!(
        matches!(out[1], Event::Cancelled { order_id, reason: CancelReason::SelfTrade, .. } if order_id == id)
    );
    assert!(m.e.order(a).is_some());

    let (_, out) = m.place(NewOrder {
        stp: SelfTradePrevention::CancelOldest,
        ..mine.clone()
    });
    assert!(matches!(out[1], Event::Cancelled { order_id, .. } if order_id == a));
    assert_eq!(
        m.levels(Side::Buy),
        vec![(2_000_000, 2, 1)],
        "the new bid rests"
    );

    let (a2, _) = m.place(m.ask(2_100_000, 2));
    let both = NewOrder {
        stp: SelfTradePrevention::CancelBoth,
        price: 2_100_000,
        ..mine
    };
    let (b2, out) = m.place(NewOrder {
        account: SELLER,
        ..both
    });
    let cancelled: Vec<_> = out
        .iter()
        .filter_map(|e| match e {
            Event::Cancelled { order_id, .. } => Some(*order_id),
            _ => None,
        })
        .collect();
    assert_eq!(cancelled, vec![a2, b2]);
}

#[test]
fn cancel_rules() {
    let mut m = Market::new();
    let (a, _) = m.place(m.ask(2_000_000, 2));
    assert_eq!(
        m.reject(Command::Cancel {
            account: BUYER,
            order_id: a
        }),
        Reject::NotOwner
    );
    assert_eq!(
        m.reject(Command::Cancel {
            account: SELLER,
            order_id: 999
        }),
        Reject::UnknownOrder
    );
    m.place(m.bid(2_000_000, 2));
    // stale cancel after a full fill
    assert_eq!(
        m.reject(Command::Cancel {
            account: SELLER,
            order_id: a
        }),
        Reject::UnknownOrder
    );
}

#[test]
fn order_term_rejections() {
    let mut m = Market::new();
    let b = m.bid(2_000_000, 1);
    let cases: Vec<(NewOrder, Reject)> = vec![
        (
            NewOrder {
                product: 99,
                ..b.clone()
            },
            Reject::UnknownProduct,
        ),
        (
            NewOrder {
                price: 0,
                ..b.clone()
            },
            Reject::NonPositivePrice,
        ),
        (
            NewOrder {
                price: -10_000,
                ..b.clone()
            },
            Reject::NonPositivePrice,
        ),
        (
            NewOrder {
                price: MAX_PRICE + 10_000,
                ..b.clone()
            },
            Reject::PriceTooHigh,
        ),
        (
            NewOrder {
                price: 2_000_001,
                ..b.clone()
            },
            Reject::PriceOffTick,
        ),
        (
            NewOrder {
                qty: 0,
                ..b.clone()
            },
            Reject::NonPositiveQuantity,
        ),
        (
            NewOrder {
                qty: MAX_QTY + 1,
                ..b.clone()
            },
            Reject::QuantityTooLarge,
        ),
        (
            NewOrder {
                order_type: OrderType::Market,
                ..b.clone()
            },
            Reject::InvalidTimeInForce,
        ),
        (
            NewOrder {
                post_only: true,
                tif: TimeInForce::ImmediateOrCancel,
                ..b.clone()
            },
            Reject::InvalidTimeInForce,
        ),
        (
            NewOrder {
                gang: 3,
                qty: 3,
                ..b.clone()
            },
            Reject::InvalidGang,
        ),
        (
            NewOrder {
                gang: 128,
                qty: 128,
                ..b.clone()
            },
            Reject::InvalidGang,
        ),
        (
            NewOrder {
                gang: 8,
                qty: 4,
                ..b.clone()
            },
            Reject::QuantityOffGang,
        ),
        (
            NewOrder {
                cluster: Some(m.cluster),
                ..b.clone()
            },
            Reject::ClusterNotAllowed,
        ),
        (
            NewOrder {
                cluster: None,
                ..m.ask(2_000_000, 1)
            },
            Reject::ClusterRequired,
        ),
        (
            NewOrder {
                cluster: Some(9),
                ..m.ask(2_000_000, 1)
            },
            Reject::UnknownCluster,
        ),
        // another seller's cluster is no cluster of this seller's
        (
            NewOrder {
                cluster: Some(m.cluster2),
                ..m.ask(2_000_000, 1)
            },
            Reject::UnknownCluster,
        ),
        (
            NewOrder {
                gang: 2,
                qty: 2,
                ..m.ask(2_000_000, 2)
            },
            Reject::InvalidGang,
        ),
        (m.ask(2_000_000, 33), Reject::InsufficientCapacity),
    ];
    for (o, want) in cases {
        assert_eq!(m.reject(Command::Place(o.clone())), want, "{o:?}");
    }
}

#[test]
fn lot_size_and_product_rejections() {
    let mut m = Market::new();
    let id = format!(
        "H200/us-east/{}",
        spotex_core::product::format_hour(DELIVERY / HOUR)
    );
    let spec = ProductSpec {
        id: id.clone(),
        tick: 10_000,
        lot: 8,
        open_at: m.ts + 50,
        close_at: DELIVERY,
    };
    m.ok(Command::CreateProduct(spec.clone()));
    assert_eq!(
        m.reject(Command::CreateProduct(spec.clone())),
        Reject::DuplicateProduct
    );
    assert_eq!(
        m.reject(Command::CreateProduct(ProductSpec {
            id: "junk".into(),
            ..spec.clone()
        })),
        Reject::InvalidProductId
    );
    assert_eq!(
        m.reject(Command::CreateProduct(ProductSpec {
            id: id.replace("H200", "B200"),
            tick: 0,
            ..spec.clone()
        })),
        Reject::InvalidTickSize
    );
    assert_eq!(
        m.reject(Command::CreateProduct(ProductSpec {
            id: id.replace("H200", "B200"),
            lot: -1,
            ..spec.clone()
        })),
        Reject::InvalidLotSize
    );
    assert_eq!(
        m.reject(Command::CreateProduct(ProductSpec {
            id: id.replace("H200", "B200"),
            close_at: DELIVERY + 1,
            ..spec.clone()
        })),
        Reject::InvalidSchedule
    );
    let h = m.e.product_handle(&id).unwrap();
    let b = NewOrder::limit(BUYER, h, Side::Buy, 2_000_000, 8);
    assert_eq!(m.reject(Command::Place(b.clone())), Reject::ProductNotOpen);
    m.ts += 100;
    assert_eq!(
        m.reject(Command::Place(NewOrder {
            qty: 4,
            ..b.clone()
        })),
        Reject::QuantityOffLot
    );
    m.ok(Command::Place(b));
    // an ask for an H200 product from an H100 cluster
    let ask = NewOrder {
        cluster: Some(m.cluster),
        ..NewOrder::limit(SELLER, h, Side::Sell, 2_000_000, 8)
    };
    assert_eq!(m.reject(Command::Place(ask)), Reject::ClusterMismatch);
}

#[test]
fn amend_rejections() {
    let mut m = Market::new();
    let (a, _) = m.place(m.ask(2_000_000, 4));
    let amend = |price, qty| Command::Amend {
        account: SELLER,
        order_id: a,
        price,
        qty,
    };
    assert_eq!(m.reject(amend(Some(5), None)), Reject::PriceOffTick);
    assert_eq!(m.reject(amend(None, Some(0))), Reject::NonPositiveQuantity);
    assert_eq!(
        m.reject(amend(None, Some(33))),
        Reject::InsufficientCapacity
    );
    assert_eq!(
        m.reject(Command::Amend {
            account: BUYER,
            order_id: a,
            price: None,
            qty: Some(1)
        }),
        Reject::NotOwner
    );
    m.ok(Command::Halt { product: m.product });
    assert_eq!(m.reject(amend(None, Some(1))), Reject::ProductHalted);
    // cancelling stays possible while halted
    m.ok(Command::Cancel {
        account: SELLER,
        order_id: a,
    });
}

#[test]
fn same_commands_same_hash() {
    let build = || {
        let mut m = Market::new();
        m.place(m.ask(2_000_000, 4));
        m.place(m.bid(2_000_000, 2));
        m.e.state_hash()
    };
    assert_eq!(build(), build());
    let mut m = Market::new();
    m.place(m.ask(2_000_000, 4));
    m.place(m.bid(2_000_000, 3));
    assert_ne!(build(), m.e.state_hash());
}

#[test]
fn snapshot_restores_the_same_state_and_behaviour() {
    let mut m = Market::new();
    m.place(m.ask(2_000_000, 4));
    m.place(NewOrder {
        tif: TimeInForce::GoodTillTime(m.ts + 1_000),
        ..m.ask(2_100_000, 8)
    });
    m.place(NewOrder {
        gang: 8,
        ..m.bid(2_000_000, 8)
    });
    m.place(m.bid(1_900_000, 3));
    m.ok(Command::Halt { product: m.product });
    let bytes = m.e.snapshot();
    let mut back = Engine::restore(&bytes).unwrap();
    assert_eq!(back.state_hash(), m.e.state_hash());
    // both go on identically: resume, trade, expire
    let cmds = vec![
        Command::Resume { product: m.product },
        Command::Place(m.bid(2_100_000, 8)),
        Command::Place(m.ask(1_900_000, 2)),
        Command::AdvanceTime,
    ];
    for (i, c) in cmds.iter().enumerate() {
        let ts = m.ts + 2_000 * (i as i64 + 1);
        let (mut a, mut b) = (Vec::new(), Vec::new());
        assert_eq!(m.e.apply(ts, c, &mut a), back.apply(ts, c, &mut b));
        assert_eq!(a, b);
    }
    assert_eq!(back.state_hash(), m.e.state_hash());
    for cut in [1, bytes.len() / 2, bytes.len() - 1] {
        assert!(Engine::restore(&bytes[..cut]).is_err());
    }
}
