//! Money: every account's balance, the holds of its live buy orders, fees, and the
//! transfers that move them, in one double-entry ledger inside the exchange.
//!
//! Amounts are micro-dollars (`i64`; products in `i128` and refused past `i64`). A buy
//! order reserves its worst case while it lives (limit x remaining x hours, plus the
//! dearer of its account's maker and taker fee; a market buy the dearest ask resting
//! when it arrives; a one-of group its dearest alternative until one is chosen). Every
//! trade moves its value from buyer to seller and each side's fee to the venue's fee
//! account (0); deposits come from, and withdrawals go to, the outside
//! ([`OUTSIDE`]). Fees round down to the micro-dollar, in the trader's favour, and
//! only the venue's fee account takes them: the payer never pays more than the payee
//! and the fee account receive together, so the ledger always sums to zero.
//!
//! Deterministic like the rest of the exchange: ordered maps only, the command's time
//! as the only clock. The funds check is the edge's policy (the venue's default credit
//! limit is a setting); it is not made again on replay, which applies what was accepted.

use std::collections::{BTreeMap, VecDeque};

use rustc_hash::FxHashMap;

use sha2::{Digest, Sha256};
use spotex_core::{OrderType, Side, MAX_FEE_BPS};

use crate::pb;
use crate::records::OrderRecord;
use crate::refusal::Refusal;
use crate::store::{self, command::Kind};

use super::journal::{journaled, NOBODY};
use super::{orders::dollars, Exchange};

/// The venue's own account, which every fee is paid to.
pub const FEE_ACCOUNT: u64 = 0;
/// Outside the venue: where deposits come from and withdrawals go.
pub const OUTSIDE: u64 = u64::MAX;
/// Transfers kept in memory (older ones leave for the history on disk).
pub const KEEP_TRANSFERS: usize = 100_000;
/// The longest reference a deposit or withdrawal may carry.
pub const MAX_REFERENCE: usize = 128;

/// One account's money.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Money {
    current: i64,
    holds: i64,
    /// Its own credit limit; `None`: the venue's default.
    credit: Option<i64>,
    /// Its own `(maker, taker)` fees; `None`: the venue's.
    fees: Option<(u32, u32)>,
}

/// A live buy order's hold, and the `(maker, taker)` fees it was placed with: its fills
/// pay those, so a fee raised later never takes more than it holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Hold {
    account: u64,
    amount: i64,
    fees: (u32, u32),
}

#[derive(Clone, Debug, Default)]
pub(super) struct Ledger {
    /// Looked up by id; never iterated in a result but sorted first (hash, snapshot).
    accounts: FxHashMap<u64, Money>,
    /// Each live buy order's hold.
    holds: FxHashMap<u64, Hold>,
    /// One-of groups resting unchosen: what their dearest alternative needs.
    groups: FxHashMap<u64, i64>,
    fees: (u32, u32),
    next_transfer: u64,
    deposited: i64,
    withdrawn: i64,
    transfers: VecDeque<pb::Transfer>,
    keep: usize,
    left: Vec<pb::Transfer>,
    /// The venue's credit limit for accounts without their own; `None`: no limit (a
    /// venue, or a test, that does not check money).
    default_credit: Option<i64>,
    /// Orders whose hold may have changed in the command being applied.
    pub(super) touched: Vec<u64>,
    /// Money between a sharded venue's shards (the gateway's moves).
    moves: Moves,
}

/// A shard's side of money moving between shards: what it sent and has not heard has
/// landed, the last number it gave per destination, and the last it took in per source
/// (a move lands once, in number order, so a resent IN changes nothing).
#[derive(Clone, Debug, Default)]
struct Moves {
    pending: BTreeMap<(u32, u64), (u64, i64, i64)>,
    out: BTreeMap<u32, u64>,
    landed: BTreeMap<u32, u64>,
    moved_in: i64,
    moved_out: i64,
}

impl Moves {
    fn is_empty(&self) -> bool {
        self.out.is_empty() && self.landed.is_empty()
    }
}

fn marks(m: &BTreeMap<u32, u64>) -> Vec<pb::ShardMark> {
    m.iter()
        .map(|(&shard, &number)| pb::ShardMark { shard, number })
        .collect()
}

fn pending_move(
    &(to_shard, number): &(u32, u64),
    &(account, amount, ts): &(u64, i64, i64),
) -> pb::Move {
    pb::Move {
        to_shard,
        number,
        account_id: account,
        amount_micros: amount,
        time_micros: ts,
    }
}

/// What `qty` GPUs for `hours` at `price` need held, with the dearer of the fees.
fn need((maker, taker): (u32, u32), price: i64, qty: i64, hours: u32) -> i128 {
    let value = i128::from(price) * i128::from(qty) * i128::from(hours.max(1));
    value + fee_of(value, maker.max(taker))
}

/// A map's entries in key order (a hash map's own order never reaches a result).
fn sorted<V: Copy>(m: &FxHashMap<u64, V>) -> Vec<(u64, V)> {
    let mut v: Vec<(u64, V)> = m.iter().map(|(&k, &x)| (k, x)).collect();
    v.sort_unstable_by_key(|e| e.0);
    v
}

fn clamp(x: i128) -> i64 {
    x.clamp(i64::MIN as i128, i64::MAX as i128) as i64
}

/// The fee on `value` at `bps`, rounded down to the micro-dollar.
pub fn fee_of(value: i128, bps: u32) -> i128 {
    value * i128::from(bps) / i128::from(MAX_FEE_BPS)
}

impl Ledger {
    pub(super) fn new() -> Ledger {
        Ledger {
            keep: KEEP_TRANSFERS,
            ..Ledger::default()
        }
    }

    fn is_empty(&self) -> bool {
        self.accounts.is_empty()
            && self.holds.is_empty()
            && self.groups.is_empty()
            && self.fees == (0, 0)
            && self.next_transfer == 0
            && self.moves.is_empty()
    }

    /// Whether money is part of the venue's state hash: once any was deposited or a fee
    /// or credit limit set. Before that, balances and holds follow from the orders and
    /// their fills alone, and a venue hashes as it did before it kept money.
    fn in_hash(&self) -> bool {
        self.deposited != 0
            || self.withdrawn != 0
            || !self.moves.is_empty()
            || self.fees != (0, 0)
            || self
                .accounts
                .values()
                .any(|m| m.credit.is_some() || m.fees.is_some())
    }

    fn credit_of(&self, m: &Money) -> Option<i64> {
        m.credit.or(self.default_credit)
    }

    fn push(&mut self, t: pb::Transfer) {
        self.transfers.push_back(t);
        while self.transfers.len() > self.keep {
            if let Some(old) = self.transfers.pop_front() {
                self.left.push(old);
            }
        }
    }

    /// Records one transfer and moves `current`.
    #[allow(clippy::too_many_arguments)]
    fn transfer(
        &mut self,
        ts: i64,
        kind: pb::TransferKind,
        debit: u64,
        credit: u64,
        amount: i64,
        order: u64,
        trade: u64,
        reference: &str,
    ) -> pb::Transfer {
        self.next_transfer += 1;
        if debit != OUTSIDE {
            self.accounts.entry(debit).or_default().current -= amount;
        }
        if credit != OUTSIDE {
            self.accounts.entry(credit).or_default().current += amount;
        }
        let t = pb::Transfer {
            transfer_id: self.next_transfer,
            debit_account_id: debit,
            credit_account_id: credit,
            amount_micros: amount,
            kind: kind as i32,
            order_id: order,
            trade_id: trade,
            time_micros: ts,
            reference: reference.to_string(),
        };
        self.push(t.clone());
        t
    }

    fn to_store(&self) -> store::Ledger {
        store::Ledger {
            accounts: sorted(&self.accounts)
                .into_iter()
                .map(|(account, m)| store::AccountMoney {
                    account,
                    current_micros: m.current,
                    holds_micros: m.holds,
                    has_credit_limit: m.credit.is_some(),
                    credit_limit_micros: m.credit.unwrap_or(0),
                    has_fees: m.fees.is_some(),
                    maker_fee_bps: m.fees.map_or(0, |f| f.0),
                    taker_fee_bps: m.fees.map_or(0, |f| f.1),
                })
                .collect(),
            holds: sorted(&self.holds)
                .into_iter()
                .map(|(order, h)| store::OrderHold {
                    order,
                    account: h.account,
                    amount_micros: h.amount,
                    group_need_micros: self.groups.get(&order).copied().unwrap_or(0),
                    maker_fee_bps: h.fees.0,
                    taker_fee_bps: h.fees.1,
                })
                .collect(),
            maker_fee_bps: self.fees.0,
            taker_fee_bps: self.fees.1,
            next_transfer: self.next_transfer,
            deposited_micros: self.deposited,
            withdrawn_micros: self.withdrawn,
            transfers: self.transfers.iter().cloned().collect(),
            pending_moves: self
                .moves
                .pending
                .iter()
                .map(|(k, v)| pending_move(k, v))
                .collect(),
            moved_out: marks(&self.moves.out),
            landed: marks(&self.moves.landed),
            moved_in_micros: self.moves.moved_in,
            moved_out_micros: self.moves.moved_out,
        }
    }

    fn from_store(s: store::Ledger) -> Ledger {
        let mut l = Ledger::new();
        for a in s.accounts {
            l.accounts.insert(
                a.account,
                Money {
                    current: a.current_micros,
                    holds: a.holds_micros,
                    credit: a.has_credit_limit.then_some(a.credit_limit_micros),
                    fees: a.has_fees.then_some((a.maker_fee_bps, a.taker_fee_bps)),
                },
            );
        }
        for h in s.holds {
            l.holds.insert(
                h.order,
                Hold {
                    account: h.account,
                    amount: h.amount_micros,
                    fees: (h.maker_fee_bps, h.taker_fee_bps),
                },
            );
            if h.group_need_micros != 0 {
                l.groups.insert(h.order, h.group_need_micros);
            }
        }
        l.fees = (s.maker_fee_bps, s.taker_fee_bps);
        l.next_transfer = s.next_transfer;
        l.deposited = s.deposited_micros;
        l.withdrawn = s.withdrawn_micros;
        l.transfers = s.transfers.into_iter().collect();
        for m in s.pending_moves {
            let v = (m.account_id, m.amount_micros, m.time_micros);
            l.moves.pending.insert((m.to_shard, m.number), v);
        }
        l.moves.out = s.moved_out.iter().map(|m| (m.shard, m.number)).collect();
        l.moves.landed = s.landed.iter().map(|m| (m.shard, m.number)).collect();
        l.moves.moved_in = s.moved_in_micros;
        l.moves.moved_out = s.moved_out_micros;
        l
    }

    /// The money's part of the state hash: balances, holds, fees, the transfer count
    /// (not the transfers kept, which only say how it got here).
    fn hash_into(&self, h: &mut Sha256) {
        let mut put = |x: i64| h.update(x.to_le_bytes());
        put(self.fees.0 as i64);
        put(self.fees.1 as i64);
        put(self.next_transfer as i64);
        put(self.deposited);
        put(self.withdrawn);
        for (account, m) in sorted(&self.accounts) {
            put(account as i64);
            put(m.current);
            put(m.holds);
            put(m.credit.map_or(-1, |c| c));
            put(m.fees.map_or(-1, |f| f.0 as i64));
            put(m.fees.map_or(-1, |f| f.1 as i64));
        }
        put(-2);
        for (order, h) in sorted(&self.holds) {
            put(order as i64);
            put(h.account as i64);
            put(h.amount);
            put(h.fees.0 as i64);
            put(h.fees.1 as i64);
            put(self.groups.get(&order).copied().unwrap_or(0));
        }
        if !self.moves.is_empty() {
            put(-3);
            put(self.moves.moved_in);
            put(self.moves.moved_out);
            for (&(to, n), &(account, amount, ts)) in &self.moves.pending {
                for x in [to as i64, n as i64, account as i64, amount, ts] {
                    put(x);
                }
            }
            put(-4);
            for (&shard, &n) in self.moves.out.iter().chain(self.moves.landed.iter()) {
                put(shard as i64);
                put(n as i64);
            }
        }
    }
}

impl Exchange {
    /// The credit limit of accounts without their own (micro-dollars; `None`: money is
    /// not checked). A policy of the venue like the open-order limit: not journaled, and
    /// not checked again on replay.
    pub fn set_default_credit_limit(&mut self, limit: Option<i64>) {
        self.ledger.default_credit = limit.map(|l| l.max(0));
    }

    /// How many transfers stay in memory; older ones leave it (see
    /// [`Exchange::take_left_transfers`]).
    pub fn set_keep_transfers(&mut self, n: usize) {
        self.ledger.keep = n;
    }

    /// The transfers that left memory since the last call, oldest first: for the caller
    /// to keep on disk.
    pub fn take_left_transfers(&mut self) -> Vec<pb::Transfer> {
        std::mem::take(&mut self.ledger.left)
    }

    /// The state hash: the engine's, and the money's once any was deposited or a fee or
    /// credit limit set (a venue without money hashes as it did before it kept money).
    pub fn state_hash(&self) -> String {
        let engine = self.engine.state_hash();
        if !self.ledger.in_hash() {
            return engine;
        }
        let mut h = Sha256::new();
        h.update(engine.as_bytes());
        self.ledger.hash_into(&mut h);
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }

    pub(super) fn ledger_snapshot(&self) -> Option<store::Ledger> {
        (!self.ledger.is_empty()).then(|| self.ledger.to_store())
    }

    /// The ledger back from a snapshot, after the orders. A snapshot from before the
    /// exchange kept money has none: its live buy orders hold what they need from here
    /// on (without fees, which did not exist), and balances start at zero.
    pub(super) fn ledger_restore(&mut self, s: Option<store::Ledger>) {
        let default_credit = self.ledger.default_credit;
        match s {
            Some(s) => self.ledger = Ledger::from_store(s),
            None => {
                self.ledger = Ledger::new();
                for (&id, rec) in &self.orders {
                    let need = clamp(self.need_of(rec));
                    if need > 0 {
                        let hold = Hold {
                            account: rec.account,
                            amount: need,
                            fees: (0, 0),
                        };
                        self.ledger.holds.insert(id, hold);
                        self.ledger.accounts.entry(rec.account).or_default().holds += need;
                    }
                }
            }
        }
        self.ledger.default_credit = default_credit;
    }

    /// An account's money (nothing yet: all zero, the venue's limit and fees).
    fn money_of(&self, account: u64) -> Money {
        self.ledger
            .accounts
            .get(&account)
            .copied()
            .unwrap_or_default()
    }

    /// `(maker, taker)` fees of an account: its own, else the venue's.
    pub fn fees_of(&self, account: u64) -> (u32, u32) {
        self.ledger
            .accounts
            .get(&account)
            .and_then(|m| m.fees)
            .unwrap_or(self.ledger.fees)
    }

    /// An account's balance as the contract shows it.
    pub fn balance(&self, account: u64) -> pb::Balance {
        let m = self.money_of(account);
        let credit = self.ledger.credit_of(&m);
        let (maker, taker) = self.fees_of(account);
        pb::Balance {
            account_id: account,
            current_micros: m.current,
            holds_micros: m.holds,
            available_micros: clamp(
                i128::from(m.current) - i128::from(m.holds)
                    + i128::from(credit.unwrap_or(i64::MAX)),
            ),
            credit_limit_micros: credit.unwrap_or(i64::MAX),
            maker_fee_bps: maker,
            taker_fee_bps: taker,
            in_transit_micros: 0,
        }
    }

    /// The money as a whole, for metrics: `(accounts, their current balances summed,
    /// holds, the venue's fees, deposited, withdrawn, moved in, moved out, moves pending,
    /// their micro-dollars)`.
    pub fn money_totals(&self) -> (usize, i128, i128, i64, i64, i64, i64, i64, usize, i64) {
        let l = &self.ledger;
        let current = l.accounts.values().map(|m| i128::from(m.current)).sum();
        let holds = l.accounts.values().map(|m| i128::from(m.holds)).sum();
        let fees = l.accounts.get(&FEE_ACCOUNT).map_or(0, |m| m.current);
        let traders = l.accounts.keys().filter(|&&a| a != FEE_ACCOUNT).count();
        let pending = l.moves.pending.values().map(|&(_, amount, _)| amount).sum();
        (
            traders,
            current,
            holds,
            fees,
            l.deposited,
            l.withdrawn,
            l.moves.moved_in,
            l.moves.moved_out,
            l.moves.pending.len(),
            pending,
        )
    }

    /// Every account the ledger knows (the venue's fee account 0 among them), by id.
    pub fn balances(&self) -> Vec<pb::Balance> {
        sorted(&self.ledger.accounts)
            .into_iter()
            .map(|(account, _)| self.balance(account))
            .collect()
    }

    /// What a buy order's record needs held while it lives: limit x remaining x hours
    /// plus the dearer fee. Nothing for a sell, an ended order, or a market order (it
    /// never rests).
    pub(super) fn need_of(&self, rec: &OrderRecord) -> i128 {
        if rec.side != Side::Buy || !rec.is_open() || rec.order_type == OrderType::Market {
            return 0;
        }
        let fees = self.order_fees(rec.order_id, rec.account);
        need(fees, rec.price, rec.remaining, rec.hours)
    }

    /// The fees a buy order pays: those it was placed with while it holds, else the
    /// account's now.
    fn order_fees(&self, order: u64, account: u64) -> (u32, u32) {
        self.ledger
            .holds
            .get(&order)
            .map_or_else(|| self.fees_of(account), |h| h.fees)
    }

    /// What a new buy order needs held before it reaches the book: as it will rest, or,
    /// for a market buy, its quantity at the dearest ask resting now or its protection
    /// price, the lower (no fill can cost more: the book does not change within the
    /// command).
    pub(super) fn entry_need(
        &self,
        rec: &OrderRecord,
        product: spotex_core::ProductHandle,
    ) -> i128 {
        if rec.side != Side::Buy {
            return 0;
        }
        if rec.order_type == OrderType::Market {
            // no fill above the dearest ask resting now, nor above its protection price
            let dearest = self
                .engine
                .l2(product, Side::Sell, usize::MAX)
                .last()
                .map_or(0, |l| l.0);
            let worst = if rec.price > 0 {
                dearest.min(rec.price)
            } else {
                dearest
            };
            return need(self.fees_of(rec.account), worst, rec.quantity, rec.hours);
        }
        need(
            self.fees_of(rec.account),
            rec.price,
            rec.quantity,
            rec.hours,
        )
    }

    /// What an amend to `price` and `qty` (0: unchanged) would hold beyond what the
    /// order holds now.
    pub(super) fn amend_extra(&self, order: u64, price: i64, qty: i64) -> i128 {
        let Some(rec) = self.orders.get(&order) else {
            return 0;
        };
        if rec.side != Side::Buy || !rec.is_open() || rec.order_type == OrderType::Market {
            return 0;
        }
        let price = if price != 0 { price } else { rec.price };
        let qty = if qty != 0 { qty } else { rec.remaining };
        let held = self.ledger.holds.get(&order).map_or(0, |h| h.amount);
        need(self.order_fees(order, rec.account), price, qty, rec.hours) - i128::from(held)
    }

    /// Refuses, changing nothing, when `need` more than the account's available money
    /// (on the live path only: replay applies what was accepted).
    pub(super) fn check_funds(&self, account: u64, need: i128) -> Result<(), Refusal> {
        if self.replaying || need <= 0 {
            return Ok(());
        }
        let m = self.money_of(account);
        let Some(credit) = self.ledger.credit_of(&m) else {
            return Ok(());
        };
        let available = i128::from(m.current) - i128::from(m.holds) + i128::from(credit);
        if need > available {
            return Err(Refusal::new(
                "INSUFFICIENT_FUNDS",
                format!(
                    "this needs {} held and the account has {} available (a buy holds \
                     limit x quantity x hours plus its fee; deposit, or ask the operator \
                     for credit)",
                    dollars(clamp(need)),
                    dollars(clamp(available.max(0)))
                ),
            ));
        }
        Ok(())
    }

    /// A one-of group rests unchosen: it holds its dearest alternative.
    pub(super) fn hold_group(&mut self, order: u64, need: i128) {
        self.ledger.groups.insert(order, clamp(need));
        self.ledger.touched.push(order);
    }

    /// A group became one of its alternatives: its record holds from now on.
    pub(super) fn group_chosen(&mut self, order: u64) {
        self.ledger.groups.remove(&order);
        self.ledger.touched.push(order);
    }

    /// One trade's money: its value from buyer to seller, each side's fee to the venue.
    /// A resale's seller pays its resale fee in place of the maker or taker fee. Returns
    /// the buyer's and the seller's fee.
    pub(super) fn settle_trade(
        &mut self,
        ts: i64,
        trade: u64,
        maker_order: u64,
        taker_order: u64,
        price: i64,
        qty: i64,
    ) -> (i64, i64) {
        let (maker, taker) = (&self.orders[&maker_order], &self.orders[&taker_order]);
        let ((buy, buyer_is_maker), sell) = if maker.side == Side::Buy {
            ((maker, true), taker)
        } else {
            ((taker, false), maker)
        };
        let (buyer, buy_order) = (buy.account, buy.order_id);
        let (seller, sell_order) = (sell.account, sell.order_id);
        let value = i128::from(price) * i128::from(qty);
        let (bm, bt) = self.order_fees(buy_order, buyer);
        let buyer_fee = fee_of(value, if buyer_is_maker { bm } else { bt });
        let seller_fee = match sell.resale {
            Some((_, bps)) => fee_of(value, bps),
            None => {
                let (sm, st) = self.fees_of(seller);
                fee_of(value, if buyer_is_maker { st } else { sm })
            }
        };
        let (value, buyer_fee, seller_fee) = (clamp(value), clamp(buyer_fee), clamp(seller_fee));
        let l = &mut self.ledger;
        l.transfer(
            ts,
            pb::TransferKind::Trade,
            buyer,
            seller,
            value,
            buy_order,
            trade,
            "",
        );
        if buyer_fee != 0 {
            l.transfer(
                ts,
                pb::TransferKind::Fee,
                buyer,
                FEE_ACCOUNT,
                buyer_fee,
                buy_order,
                trade,
                "",
            );
        }
        if seller_fee != 0 {
            l.transfer(
                ts,
                pb::TransferKind::Fee,
                seller,
                FEE_ACCOUNT,
                seller_fee,
                sell_order,
                trade,
                "",
            );
        }
        l.touched.push(buy_order);
        (buyer_fee, seller_fee)
    }

    /// After a command: every touched order holds what it needs now (a hold or release
    /// transfer for each change).
    pub(super) fn settle_holds(&mut self) {
        if self.ledger.touched.is_empty() {
            return;
        }
        let mut touched = std::mem::take(&mut self.ledger.touched);
        touched.sort_unstable();
        touched.dedup();
        for &order in &touched {
            let Some(rec) = self.orders.get(&order) else {
                continue;
            };
            let account = rec.account;
            let held = self.ledger.holds.get(&order).copied();
            let fees = held.map_or_else(|| self.fees_of(account), |h| h.fees);
            let need = if !rec.is_open() {
                0
            } else if let Some(&group) = self.ledger.groups.get(&order) {
                group
            } else if rec.side == Side::Buy && rec.order_type != OrderType::Market {
                clamp(need(fees, rec.price, rec.remaining, rec.hours))
            } else {
                0
            };
            let held = held.map_or(0, |h| h.amount);
            if need == held {
                continue;
            }
            if need == 0 {
                self.ledger.holds.remove(&order);
                self.ledger.groups.remove(&order);
            } else {
                let hold = Hold {
                    account,
                    amount: need,
                    fees,
                };
                self.ledger.holds.insert(order, hold);
            }
            // a hold moves no money: state of the order and its account, not a transfer
            self.ledger.accounts.entry(account).or_default().holds += need - held;
        }
        touched.clear();
        self.ledger.touched = touched;
    }

    /// An operator's command on money: sequenced and journaled as itself, the engine's
    /// clock untouched.
    fn money_command(&mut self, ts: i64, kind: Kind) {
        self.sequence += 1;
        self.journal_entry(ts, || journaled(NOBODY, kind));
    }

    fn check_account(account: u64, what: &str) -> Result<(), Refusal> {
        if account == FEE_ACCOUNT || account == OUTSIDE {
            return Err(Refusal::new(
                "UNKNOWN_ACCOUNT",
                format!("{what} needs a trader's account (0 is the venue's fee account)"),
            ));
        }
        Ok(())
    }

    fn check_amount(amount: i64, reference: &str) -> Result<(), Refusal> {
        if amount <= 0 {
            return Err(Refusal::new(
                "INVALID_AMOUNT",
                "an amount must be positive (micro-dollars)",
            ));
        }
        if reference.chars().count() > MAX_REFERENCE {
            return Err(Refusal::new(
                "FIELD_TOO_LONG",
                format!("a reference has at most {MAX_REFERENCE} characters"),
            ));
        }
        Ok(())
    }

    /// Money in: the account's current balance grows by `amount`.
    pub fn deposit(
        &mut self,
        ts: i64,
        r: &pb::DepositRequest,
    ) -> Result<pb::BalanceResponse, Refusal> {
        Self::check_account(r.account_id, "a deposit")?;
        Self::check_amount(r.amount_micros, &r.reference)?;
        let current = self
            .ledger
            .accounts
            .get(&r.account_id)
            .map_or(0, |m| m.current);
        if current.checked_add(r.amount_micros).is_none()
            || self.ledger.deposited.checked_add(r.amount_micros).is_none()
        {
            return Err(Refusal::new("INVALID_AMOUNT", "the amount is too large"));
        }
        let (id, amount) = (r.account_id, r.amount_micros);
        Ok(self.across(ts, Kind::Deposit(r.clone()), id, amount, &r.reference))
    }

    /// Money out: never more than the account's current balance less its holds (credit
    /// is not withdrawn).
    pub fn withdraw(
        &mut self,
        ts: i64,
        r: &pb::WithdrawRequest,
    ) -> Result<pb::BalanceResponse, Refusal> {
        Self::check_account(r.account_id, "a withdrawal")?;
        Self::check_amount(r.amount_micros, &r.reference)?;
        let m = self.money_of(r.account_id);
        let free = i128::from(m.current) - i128::from(m.holds);
        if i128::from(r.amount_micros) > free {
            return Err(Refusal::new(
                "INSUFFICIENT_FUNDS",
                format!(
                    "at most {} can be withdrawn (current {} less holds {})",
                    dollars(clamp(free.max(0))),
                    dollars(m.current),
                    dollars(m.holds)
                ),
            ));
        }
        let (id, amount) = (r.account_id, r.amount_micros);
        Ok(self.across(ts, Kind::Withdraw(r.clone()), id, -amount, &r.reference))
    }

    /// An account's own credit limit (how far below zero its buys may take it).
    pub fn set_credit_limit(
        &mut self,
        ts: i64,
        r: &pb::SetCreditLimitRequest,
    ) -> Result<pb::BalanceResponse, Refusal> {
        Self::check_account(r.account_id, "a credit limit")?;
        if r.credit_limit_micros < 0 {
            return Err(Refusal::new(
                "INVALID_AMOUNT",
                "a credit limit is 0 or more (micro-dollars)",
            ));
        }
        let m = self.money_of(r.account_id);
        let short = i128::from(m.holds) - i128::from(m.current);
        if i128::from(r.credit_limit_micros) < short {
            return Err(Refusal::new(
                "CREDIT_IN_USE",
                format!(
                    "the account's holds use {} of credit now; cancel orders first",
                    dollars(clamp(short))
                ),
            ));
        }
        self.money_command(ts, Kind::CreditLimit(*r));
        self.ledger.accounts.entry(r.account_id).or_default().credit = Some(r.credit_limit_micros);
        Ok(self.money_answer(r.account_id, None))
    }

    /// The venue's maker and taker fees (account 0), or one account's own (`clear`: the
    /// venue's again). Orders resting keep their holds; new holds and fills use these.
    pub fn set_fees(
        &mut self,
        ts: i64,
        r: &pb::SetFeesRequest,
    ) -> Result<pb::BalanceResponse, Refusal> {
        if r.maker_fee_bps > MAX_FEE_BPS || r.taker_fee_bps > MAX_FEE_BPS {
            return Err(Refusal::new(
                "INVALID_FEE",
                format!("a fee is 0 to {MAX_FEE_BPS} basis points"),
            ));
        }
        if r.account_id == OUTSIDE || (r.account_id == FEE_ACCOUNT && r.clear) {
            return Err(Refusal::new(
                "UNKNOWN_ACCOUNT",
                "fees are the venue's (account 0) or a trader's",
            ));
        }
        let fees = (r.maker_fee_bps, r.taker_fee_bps);
        let now = if r.account_id == FEE_ACCOUNT {
            self.ledger.fees
        } else {
            match self.ledger.accounts.get(&r.account_id).and_then(|m| m.fees) {
                Some(f) => f,
                None if r.clear => fees, // nothing to clear: no command
                None => (u32::MAX, u32::MAX),
            }
        };
        if now != fees || r.clear {
            self.money_command(ts, Kind::Fees(*r));
            if r.account_id == FEE_ACCOUNT {
                self.ledger.fees = fees;
            } else {
                let m = self.ledger.accounts.entry(r.account_id).or_default();
                m.fees = (!r.clear).then_some(fees);
            }
        }
        Ok(self.money_answer(r.account_id, None))
    }

    /// Money across the venue's edge, journaled as `kind`: `amount` in (a deposit), or
    /// `-amount` out (a withdrawal), its reference kept on the transfer.
    fn across(
        &mut self,
        ts: i64,
        kind: Kind,
        account: u64,
        amount: i64,
        reference: &str,
    ) -> pb::BalanceResponse {
        self.money_command(ts, kind);
        let (tk, debit, credit) = if amount > 0 {
            self.ledger.deposited += amount;
            (pb::TransferKind::Deposit, OUTSIDE, account)
        } else {
            self.ledger.withdrawn -= amount;
            (pb::TransferKind::Withdrawal, account, OUTSIDE)
        };
        let l = &mut self.ledger;
        let t = l.transfer(ts, tk, debit, credit, amount.abs(), 0, 0, reference);
        self.money_answer(account, Some(t))
    }

    /// One step of money moving between a sharded venue's shards (see
    /// `MoveMoneyRequest`). OUT takes at most what the account has available here (its
    /// credit too, so credit granted on its home shard can be spent on another); IN
    /// applies each source's moves once and in order; LANDED forgets what arrived.
    pub fn move_money(
        &mut self,
        ts: i64,
        r: &pb::MoveMoneyRequest,
    ) -> Result<pb::MoveMoneyResponse, Refusal> {
        let step = pb::MoveStep::try_from(r.step).unwrap_or(pb::MoveStep::Unspecified);
        if step != pb::MoveStep::Landed {
            Self::check_account(r.account_id, "moving money")?;
            Self::check_amount(r.amount_micros, "")?;
        }
        let (account, amount, other) = (r.account_id, r.amount_micros, r.other_shard);
        let mut answer = pb::MoveMoneyResponse::default();
        match step {
            pb::MoveStep::Out => {
                if !self.replaying {
                    let m = self.money_of(account);
                    let credit = self.ledger.credit_of(&m).unwrap_or(0);
                    let free = i128::from(m.current) - i128::from(m.holds) + i128::from(credit);
                    if i128::from(amount) > free {
                        return Err(Refusal::new(
                            "INSUFFICIENT_FUNDS",
                            format!(
                                "at most {} can move out of this shard",
                                dollars(clamp(free.max(0)))
                            ),
                        ));
                    }
                }
                self.money_command(ts, Kind::Move(*r));
                let l = &mut self.ledger;
                let n = l.moves.out.entry(other).or_default();
                *n += 1;
                let key = (other, *n);
                l.moves.pending.insert(key, (account, amount, ts));
                l.moves.moved_out += amount;
                let reference = format!("to shard {other}, move {}", key.1);
                let tk = pb::TransferKind::MoveOut;
                l.transfer(ts, tk, account, OUTSIDE, amount, 0, 0, &reference);
                answer.r#move = Some(pending_move(&key, &(account, amount, ts)));
            }
            pb::MoveStep::In => {
                let last = self.ledger.moves.landed.get(&other).copied().unwrap_or(0);
                if r.number <= last {
                    answer.already = true;
                } else if r.number != last + 1 {
                    return Err(Refusal::new(
                        "MOVE_OUT_OF_ORDER",
                        format!(
                            "shard {other}'s move {} cannot land before its move {}",
                            r.number,
                            last + 1
                        ),
                    ));
                } else {
                    let current = self.money_of(account).current;
                    if current.checked_add(amount).is_none()
                        || self.ledger.moves.moved_in.checked_add(amount).is_none()
                    {
                        return Err(Refusal::new("INVALID_AMOUNT", "the amount is too large"));
                    }
                    self.money_command(ts, Kind::Move(*r));
                    let l = &mut self.ledger;
                    l.moves.landed.insert(other, r.number);
                    l.moves.moved_in += amount;
                    let reference = format!("from shard {other}, move {}", r.number);
                    let tk = pb::TransferKind::MoveIn;
                    l.transfer(ts, tk, OUTSIDE, account, amount, 0, 0, &reference);
                }
            }
            pb::MoveStep::Landed => {
                let moves = &self.ledger.moves;
                let any = moves
                    .pending
                    .range((other, 0)..=(other, r.number))
                    .next()
                    .is_some();
                if any {
                    self.money_command(ts, Kind::Move(*r));
                    let n = r.number;
                    let p = &mut self.ledger.moves.pending;
                    p.retain(|&(to, number), _| to != other || number > n);
                }
                return Ok(answer);
            }
            pb::MoveStep::Unspecified => {
                return Err(Refusal::new(
                    "INVALID_ARGUMENT",
                    "a move's step is OUT, IN or LANDED",
                ))
            }
        }
        answer.balance = Some(self.balance(account));
        Ok(answer)
    }

    /// The moves this shard sent that have not been said to have landed, and the last
    /// move landed here from each source.
    pub fn list_moves(&self) -> pb::ListMovesResponse {
        let m = &self.ledger.moves;
        pb::ListMovesResponse {
            pending: m.pending.iter().map(|(k, v)| pending_move(k, v)).collect(),
            landed: marks(&m.landed),
        }
    }

    fn money_answer(&self, account: u64, transfer: Option<pb::Transfer>) -> pb::BalanceResponse {
        pb::BalanceResponse {
            balance: Some(self.balance(account)),
            transfer,
        }
    }

    /// An account's transfers in `[from, to)` (0: unbounded), oldest first, paged by
    /// transfer id; from memory (the caller adds what left it).
    pub fn list_transfers(
        &self,
        account: u64,
        r: &pb::ListTransfersRequest,
    ) -> Result<pb::ListTransfersResponse, Refusal> {
        let after = super::page_token(&r.page_token)?;
        let size = super::page_size(r.page_size);
        let to = if r.to_micros == 0 {
            i64::MAX
        } else {
            r.to_micros
        };
        let mut transfers: Vec<pb::Transfer> = self
            .ledger
            .transfers
            .iter()
            .filter(|t| {
                t.transfer_id > after
                    && (t.debit_account_id == account || t.credit_account_id == account)
                    && t.time_micros >= r.from_micros
                    && t.time_micros < to
            })
            .take(size + 1)
            .cloned()
            .collect();
        let next_page_token = if transfers.len() > size {
            transfers.truncate(size);
            transfers
                .last()
                .map_or(String::new(), |t| t.transfer_id.to_string())
        } else {
            String::new()
        };
        Ok(pb::ListTransfersResponse {
            transfers,
            next_page_token,
        })
    }

    /// The ledger's invariants, for tests: the accounts sum to deposits less
    /// withdrawals; each account's holds are the sum of its orders' holds; every live
    /// buy order holds what it needs; no account with a credit limit is below it.
    pub fn check_ledger(&self) -> Result<(), String> {
        let l = &self.ledger;
        let total: i128 = l.accounts.values().map(|m| i128::from(m.current)).sum();
        let net = i128::from(l.deposited) - i128::from(l.withdrawn) + i128::from(l.moves.moved_in)
            - i128::from(l.moves.moved_out);
        if total != net {
            return Err(format!(
                "accounts sum to {total}, deposits less withdrawals and moves out, plus \
                 moves in, are {net}"
            ));
        }
        let mut per_account: BTreeMap<u64, i64> = BTreeMap::new();
        for (
            &order,
            &Hold {
                account, amount, ..
            },
        ) in &l.holds
        {
            *per_account.entry(account).or_default() += amount;
            let rec = self
                .orders
                .get(&order)
                .ok_or_else(|| format!("order {order} holds {amount} and has no record"))?;
            let need = l
                .groups
                .get(&order)
                .copied()
                .unwrap_or_else(|| clamp(self.need_of(rec)));
            if need != amount || rec.account != account {
                return Err(format!("order {order} holds {amount}, needs {need}"));
            }
        }
        for (id, rec) in &self.orders {
            if self.need_of(rec) > 0 && !l.holds.contains_key(id) {
                return Err(format!("live buy order {id} holds nothing"));
            }
        }
        for (&account, m) in &l.accounts {
            if m.holds != per_account.get(&account).copied().unwrap_or(0) {
                return Err(format!(
                    "account {account} holds {}, its orders {}",
                    m.holds,
                    per_account.get(&account).copied().unwrap_or(0)
                ));
            }
            if let Some(credit) = l.credit_of(m) {
                if i128::from(m.current) - i128::from(m.holds) + i128::from(credit) < 0 {
                    return Err(format!("account {account} is below its credit limit"));
                }
            }
        }
        Ok(())
    }
}
