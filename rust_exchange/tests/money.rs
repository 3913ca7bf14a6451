//! Money: deposits, holds, fills, fees, withdrawals and credit, in the exchange's
//! ledger; the invariants after every command, and the same state from the journal and
//! from a snapshot.

use spotex_core::product::format_hour;
use spotex_core::workload::Rng;
use spotex_exchange::{pb, Caller, Exchange, FEE_ACCOUNT};

mod common;
use common::*;

const SELLER: u64 = 10;
const BUYER: u64 = 20;
const OTHER: u64 = 21;
const D: i64 = 1_000_000; // a dollar in micro-dollars

fn pid(hour: i64) -> String {
    format!("H100/us-east/{}", format_hour(hour))
}

fn trader(account: u64) -> Caller {
    Caller {
        account,
        buyer: true,
        seller: true,
    }
}

/// `hours` products from H0; SELLER's cluster of `nodes` 8-GPU nodes, all offered at
/// $2 every hour; money checked (no credit), fees maker 10 bps and taker 20 bps.
fn market(hours: i64, nodes: usize) -> Exchange {
    let mut ex = Exchange::new(10_000);
    ex.set_default_credit_limit(Some(0));
    for h in 0..hours {
        let close = (H0 + h) * HOUR - HOUR;
        ex.create_product(T0, &pid(H0 + h), 10_000, 1, close, None, false)
            .unwrap();
    }
    let cap = capacity("c0", "H100", nodes, H0, H0 + hours);
    ex.register_capacity(T0, seller(SELLER), &cap).unwrap();
    for h in 0..hours {
        ex.place_order(T0, seller(SELLER), &ask(H0 + h, 8 * nodes as i64, 2 * D))
            .unwrap();
    }
    let fees = pb::SetFeesRequest {
        account_id: FEE_ACCOUNT,
        maker_fee_bps: 10,
        taker_fee_bps: 20,
        clear: false,
    };
    ex.set_fees(T0, &fees).unwrap();
    ex
}

fn ask(hour: i64, qty: i64, price: i64) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        product_id: pid(hour),
        side: pb::Side::Sell as i32,
        price_micros: price,
        quantity: qty,
        cluster_id: "c0".into(),
        ..Default::default()
    }
}

fn bid(hour: i64, qty: i64, price: i64) -> pb::PlaceOrderRequest {
    pb::PlaceOrderRequest {
        product_id: pid(hour),
        side: pb::Side::Buy as i32,
        price_micros: price,
        quantity: qty,
        ..Default::default()
    }
}

fn deposit(ex: &mut Exchange, account: u64, amount: i64) {
    let r = pb::DepositRequest {
        account_id: account,
        amount_micros: amount,
        reference: "wire".into(),
    };
    ex.deposit(T0, &r).unwrap();
}

/// (current, holds, available) of an account.
fn money(ex: &Exchange, account: u64) -> (i64, i64, i64) {
    let b = ex.balance(account);
    (b.current_micros, b.holds_micros, b.available_micros)
}

#[test]
fn a_fill_moves_the_trade_price_and_both_fees_and_the_ledger_sums_to_the_deposits() {
    let mut ex = market(1, 1);
    deposit(&mut ex, BUYER, 100 * D);
    // takes 8 GPUs at $2 with a limit of $2.50: $16 and the taker's 20 bps
    ex.place_order(T0, buyer(BUYER), &bid(H0, 8, 2_500_000))
        .unwrap();
    assert_eq!(
        money(&ex, BUYER),
        (100 * D - 16 * D - 32_000, 0, 84 * D - 32_000)
    );
    // the seller made the book: $16 less its maker 10 bps
    assert_eq!(money(&ex, SELLER).0, 16 * D - 16_000);
    assert_eq!(money(&ex, FEE_ACCOUNT).0, 48_000);
    ex.check_ledger().unwrap();
    let order = ex
        .list_orders(
            buyer(BUYER),
            &pb::ListOrdersRequest {
                page_size: 10,
                ..Default::default()
            },
        )
        .unwrap()
        .orders;
    assert_eq!(
        order[0].fills[0].fee_micros, 32_000,
        "the buyer's fill names its fee"
    );
    // each transfer of the trade names it
    let transfers = ex
        .list_transfers(
            BUYER,
            &pb::ListTransfersRequest {
                page_size: 100,
                ..Default::default()
            },
        )
        .unwrap()
        .transfers;
    let kinds: Vec<i32> = transfers.iter().map(|t| t.kind).collect();
    assert!(kinds.starts_with(&[pb::TransferKind::Deposit as i32]));
    assert!(kinds.contains(&(pb::TransferKind::Trade as i32)));
    assert!(kinds.contains(&(pb::TransferKind::Fee as i32)));
    assert_recovers(&mut ex);
}

#[test]
fn a_resting_bid_holds_its_worst_case_and_gives_it_back_when_cancelled() {
    let mut ex = market(3, 1);
    deposit(&mut ex, BUYER, 50 * D);
    // below the asks: rests, holding 8 x $1.50 plus the dearer fee (20 bps)
    let o = ex
        .place_order(T0, buyer(BUYER), &bid(H0, 8, 1_500_000))
        .unwrap();
    assert_eq!(
        money(&ex, BUYER),
        (50 * D, 12 * D + 24_000, 38 * D - 24_000)
    );
    // a block of three hours holds three hours
    let mut block = bid(H0, 8, 1_000_000);
    block.hours = 3;
    block.time_in_force = pb::TimeInForce::Gtc as i32;
    ex.place_order(T0, buyer(BUYER), &block).unwrap();
    assert_eq!(money(&ex, BUYER).1, 12 * D + 24_000 + 24 * D + 48_000);
    ex.check_ledger().unwrap();
    ex.cancel_order(
        T0,
        buyer(BUYER),
        &pb::CancelOrderRequest {
            order_id: o.order_id,
        },
    )
    .unwrap();
    assert_eq!(money(&ex, BUYER).1, 24 * D + 48_000);
    ex.check_ledger().unwrap();
    assert_recovers(&mut ex);
}

#[test]
fn what_the_account_cannot_cover_is_refused_and_changes_nothing() {
    let mut ex = market(1, 2);
    deposit(&mut ex, BUYER, 10 * D);
    let before = (ex.sequence(), ex.state_hash());
    // 8 x $1.50 = $12 > $10
    let e = ex
        .place_order(T0, buyer(BUYER), &bid(H0, 8, 1_500_000))
        .unwrap_err();
    assert_eq!(e.reason, "INSUFFICIENT_FUNDS");
    assert!(e.message.contains("$10.00 available"), "{}", e.message);
    // a market buy holds the dearest ask: 16 x $2
    let mut market_buy = bid(H0, 16, 0);
    market_buy.order_type = pb::OrderType::Market as i32;
    market_buy.time_in_force = pb::TimeInForce::Ioc as i32;
    let e = ex.place_order(T0, buyer(BUYER), &market_buy).unwrap_err();
    assert_eq!(e.reason, "INSUFFICIENT_FUNDS");
    // a one-of group holds its dearest alternative; a basket the sum of its legs
    let alt = |price| pb::PlaceOrderRequest {
        time_in_force: pb::TimeInForce::Gtc as i32,
        ..bid(H0, 4, price)
    };
    let group = pb::PlaceOneOfRequest {
        alternatives: vec![alt(1_000_000), alt(3_000_000)],
        ..Default::default()
    };
    assert_eq!(
        ex.place_one_of(T0, buyer(BUYER), &group)
            .unwrap_err()
            .reason,
        "INSUFFICIENT_FUNDS"
    );
    // withdrawing more than is free, nothing, a negative amount, fees past 100%
    let too_much = pb::WithdrawRequest {
        account_id: BUYER,
        amount_micros: 10 * D + 1,
        reference: String::new(),
    };
    assert_eq!(
        ex.withdraw(T0, &too_much).unwrap_err().reason,
        "INSUFFICIENT_FUNDS"
    );
    for amount in [0, -5] {
        let r = pb::DepositRequest {
            account_id: BUYER,
            amount_micros: amount,
            reference: String::new(),
        };
        assert_eq!(ex.deposit(T0, &r).unwrap_err().reason, "INVALID_AMOUNT");
    }
    let r = pb::SetFeesRequest {
        account_id: 0,
        maker_fee_bps: 10_001,
        taker_fee_bps: 0,
        clear: false,
    };
    assert_eq!(ex.set_fees(T0, &r).unwrap_err().reason, "INVALID_FEE");
    assert_eq!((ex.sequence(), ex.state_hash()), before);
    // credit lets it buy: $5 of credit covers the $12
    let credit = pb::SetCreditLimitRequest {
        account_id: BUYER,
        credit_limit_micros: 5 * D,
    };
    ex.set_credit_limit(T0, &credit).unwrap();
    ex.place_order(T0, buyer(BUYER), &bid(H0, 8, 1_500_000))
        .unwrap();
    assert_eq!(money(&ex, BUYER).2, 3 * D - 24_000);
    // and credit in use cannot be taken away
    let none = pb::SetCreditLimitRequest {
        account_id: BUYER,
        credit_limit_micros: 0,
    };
    assert_eq!(
        ex.set_credit_limit(T0, &none).unwrap_err().reason,
        "CREDIT_IN_USE"
    );
    ex.check_ledger().unwrap();
    assert_recovers(&mut ex);
}

#[test]
fn an_amend_resizes_the_hold_and_is_refused_when_it_would_not_fit() {
    let mut ex = market(1, 1);
    deposit(&mut ex, BUYER, 20 * D);
    let o = ex
        .place_order(T0, buyer(BUYER), &bid(H0, 4, 1_000_000))
        .unwrap();
    let amend = |price, quantity| pb::AmendOrderRequest {
        order_id: o.order_id,
        price_micros: price,
        quantity,
    };
    // 8 x $3 would need $24 and cross the ask; refused, the bid unchanged
    let e = ex
        .amend_order(T0, buyer(BUYER), &amend(3_000_000, 8))
        .unwrap_err();
    assert_eq!(e.reason, "INSUFFICIENT_FUNDS");
    assert_eq!(money(&ex, BUYER).1, 4 * D + 8_000);
    ex.amend_order(T0, buyer(BUYER), &amend(0, 2)).unwrap();
    assert_eq!(money(&ex, BUYER).1, 2 * D + 4_000);
    ex.check_ledger().unwrap();
}

#[test]
fn a_resale_credits_the_reseller_less_its_fee_not_the_clusters_owner() {
    let mut ex = market(1, 1);
    ex.set_resale_fee_bps(150);
    deposit(&mut ex, BUYER, 100 * D);
    deposit(&mut ex, OTHER, 100 * D);
    let bought = ex
        .place_order(T0, buyer(BUYER), &bid(H0, 8, 2 * D))
        .unwrap();
    let owner_before = money(&ex, SELLER).0;
    let resell = pb::ResellRequest {
        order_id: bought.order_id,
        price_micros: 3 * D,
        ..Default::default()
    };
    ex.resell(T0, trader(BUYER), &resell).unwrap();
    let buyer_before = money(&ex, BUYER).0;
    ex.place_order(T0, buyer(OTHER), &bid(H0, 8, 3 * D))
        .unwrap();
    // $24 less 150 bps resale fee to the reseller; the owner gets nothing more
    assert_eq!(money(&ex, BUYER).0 - buyer_before, 24 * D - 360_000);
    assert_eq!(money(&ex, SELLER).0, owner_before);
    ex.check_ledger().unwrap();
    assert_recovers(&mut ex);
}

/// Random commands from several accounts; after each, the ledger's invariants; at the
/// end, the journal and the snapshot give back the same state (money included).
#[test]
fn random_trading_keeps_the_ledger_whole() {
    for seed in 1..=12u64 {
        let mut rng = Rng(seed);
        let mut ex = market(4, 2);
        let accounts = [BUYER, OTHER, 22, 23];
        for &a in &accounts {
            deposit(&mut ex, a, (20 + rng.below(80) as i64) * D);
        }
        let mut ids: Vec<(u64, u64)> = Vec::new();
        let mut now = T0;
        for _ in 0..300 {
            let who = accounts[rng.below(4) as usize];
            let hour = H0 + rng.below(4) as i64;
            let price = (1 + rng.below(30) as i64) * 100_000;
            match rng.below(10) {
                0..=4 => {
                    let mut r = bid(hour, 1 + rng.below(12) as i64, price);
                    if rng.below(4) == 0 {
                        r.hours = 1 + rng.below((H0 + 4 - hour) as u64) as u32;
                    }
                    if let Ok(o) = ex.place_order(now, buyer(who), &r) {
                        ids.push((who, o.order_id));
                    }
                }
                5 => {
                    let r = ask(hour, 1 + rng.below(8) as i64, price);
                    let _ = ex.place_order(now, seller(SELLER), &r);
                }
                6 if !ids.is_empty() => {
                    let (who, id) = ids[rng.below(ids.len() as u64) as usize];
                    let r = pb::CancelOrderRequest { order_id: id };
                    let _ = ex.cancel_order(now, buyer(who), &r);
                }
                7 if !ids.is_empty() => {
                    let (who, id) = ids[rng.below(ids.len() as u64) as usize];
                    let r = pb::AmendOrderRequest {
                        order_id: id,
                        price_micros: price,
                        quantity: 1 + rng.below(10) as i64,
                    };
                    let _ = ex.amend_order(now, buyer(who), &r);
                }
                8 => {
                    let r = pb::WithdrawRequest {
                        account_id: who,
                        amount_micros: (1 + rng.below(20) as i64) * D,
                        reference: String::new(),
                    };
                    let _ = ex.withdraw(now, &r);
                }
                _ => {
                    // time moves on: gate closures expire what rests in closed hours
                    now += rng.below(3) as i64 * HOUR / 2;
                    ex.advance_time(now);
                }
            }
            if let Err(e) = ex.check_ledger() {
                panic!("seed {seed}: {e}");
            }
            for &a in &accounts {
                assert!(money(&ex, a).2 >= 0, "seed {seed}: {a} overdrawn");
            }
        }
        assert_recovers(&mut ex);
    }
}

fn step(
    step: pb::MoveStep,
    account: u64,
    amount: i64,
    other: u32,
    number: u64,
) -> pb::MoveMoneyRequest {
    pb::MoveMoneyRequest {
        step: step as i32,
        account_id: account,
        amount_micros: amount,
        other_shard: other,
        number,
    }
}

/// Shard 0 and shard 1's exchanges, the buyer's money all on shard 0.
fn two_shards() -> (Exchange, Exchange) {
    let mut a = market(2, 1);
    let b = market(2, 1);
    deposit(&mut a, BUYER, 100 * D);
    (a, b)
}

#[test]
fn money_moves_between_shards_once_in_order_and_never_sits_in_both() {
    use pb::MoveStep::{In, Landed, Out};
    let (mut a, mut b) = two_shards();
    // a bid on shard 1 has nothing to hold there
    let refused = b.place_order(T0, buyer(BUYER), &bid(H0, 2, 2 * D));
    assert_eq!(refused.unwrap_err().reason, "INSUFFICIENT_FUNDS");
    // out of shard 0: never more than it has available there
    let too_much = a.move_money(T0, &step(Out, BUYER, 101 * D, 1, 0));
    assert_eq!(too_much.unwrap_err().reason, "INSUFFICIENT_FUNDS");
    let before = (a.sequence(), a.state_hash());
    let out = a.move_money(T0, &step(Out, BUYER, 30 * D, 1, 0)).unwrap();
    let m = out.r#move.unwrap();
    assert_eq!((m.to_shard, m.number, m.amount_micros), (1, 1, 30 * D));
    assert_ne!(a.state_hash(), before.1);
    assert_eq!(money(&a, BUYER).0, 70 * D);
    assert_eq!(a.list_moves().pending.len(), 1);
    // a second move's IN cannot land before the first's
    let second = a.move_money(T0, &step(Out, BUYER, 5 * D, 1, 0)).unwrap();
    assert_eq!(second.r#move.unwrap().number, 2);
    let early = b.move_money(T0, &step(In, BUYER, 5 * D, 0, 2));
    assert_eq!(early.unwrap_err().reason, "MOVE_OUT_OF_ORDER");
    // IN lands once: a resent IN changes nothing
    let landed = b.move_money(T0, &step(In, BUYER, 30 * D, 0, 1)).unwrap();
    assert!(!landed.already);
    assert_eq!(landed.balance.unwrap().current_micros, 30 * D);
    let (seq, hash) = (b.sequence(), b.state_hash());
    let again = b.move_money(T0, &step(In, BUYER, 30 * D, 0, 1)).unwrap();
    assert!(again.already);
    assert_eq!((b.sequence(), b.state_hash()), (seq, hash));
    b.move_money(T0, &step(In, BUYER, 5 * D, 0, 2)).unwrap();
    assert_eq!(b.list_moves().landed[0].number, 2);
    // the bid fits now
    b.place_order(T0, buyer(BUYER), &bid(H0, 2, 2 * D)).unwrap();
    // LANDED forgets the pending moves up to the number, and only once
    a.move_money(T0, &step(Landed, 0, 0, 1, 1)).unwrap();
    assert_eq!(a.list_moves().pending.len(), 1);
    let seq = a.sequence();
    a.move_money(T0, &step(Landed, 0, 0, 1, 1)).unwrap();
    assert_eq!(a.sequence(), seq, "nothing left to forget: no command");
    a.move_money(T0, &step(Landed, 0, 0, 1, 2)).unwrap();
    assert!(a.list_moves().pending.is_empty());
    // the venue's money: what was deposited, in one shard or the other, never both
    let total =
        money(&a, BUYER).0 + money(&b, BUYER).0 + money(&b, SELLER).0 + money(&b, FEE_ACCOUNT).0;
    assert_eq!(total, 100 * D);
    for ex in [&a, &b] {
        ex.check_ledger().unwrap();
    }
    // bad steps change nothing
    let seq = b.sequence();
    for bad in [
        step(pb::MoveStep::Unspecified, BUYER, D, 0, 1),
        step(Out, BUYER, 0, 0, 0),
        step(Out, FEE_ACCOUNT, D, 0, 0),
        step(In, BUYER, -D, 0, 3),
    ] {
        assert!(b.move_money(T0, &bad).is_err(), "{bad:?}");
    }
    assert_eq!(b.sequence(), seq);
    assert_recovers(&mut a);
    assert_recovers(&mut b);
}

#[test]
fn credit_on_the_home_shard_can_be_spent_on_another() {
    use pb::MoveStep::{In, Out};
    let mut a = market(1, 1);
    let mut b = market(1, 1);
    let credit = pb::SetCreditLimitRequest {
        account_id: BUYER,
        credit_limit_micros: 10 * D,
    };
    a.set_credit_limit(T0, &credit).unwrap();
    a.move_money(T0, &step(Out, BUYER, 10 * D, 1, 0)).unwrap();
    assert_eq!(money(&a, BUYER), (-10 * D, 0, 0));
    let refused = a.move_money(T0, &step(Out, BUYER, 1, 1, 0));
    assert_eq!(refused.unwrap_err().reason, "INSUFFICIENT_FUNDS");
    b.move_money(T0, &step(In, BUYER, 10 * D, 0, 1)).unwrap();
    assert_eq!(money(&b, BUYER).2, 10 * D);
    // the credit is in use: it cannot be lowered, and nothing can be withdrawn
    let lower = pb::SetCreditLimitRequest {
        account_id: BUYER,
        credit_limit_micros: 0,
    };
    assert_eq!(
        a.set_credit_limit(T0, &lower).unwrap_err().reason,
        "CREDIT_IN_USE"
    );
    for ex in [&a, &b] {
        ex.check_ledger().unwrap();
    }
    assert_recovers(&mut a);
    assert_recovers(&mut b);
}
