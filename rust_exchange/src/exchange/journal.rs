//! The journal and snapshots: each accepted command journaled as the store's command,
//! replayed through the same code as the live request, and the whole exchange as a
//! snapshot and back.

use prost::Message;
use spotex_core::{Command, Engine, ProductHandle, Side};

use crate::records::OrderRecord;
use crate::refusal::Refusal;
use crate::store::{self, command::Kind};

use super::{Caller, Exchange};

/// One command for the journal: its sequence number, its time, and the encoded
/// [`store::Command`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalEntry {
    pub seq: u64,
    pub ts: i64,
    pub command: Vec<u8>,
}

/// Why a journal or a snapshot cannot be applied: never guessed past.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreError(pub String);

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StoreError {}

pub(super) fn journaled(caller: Caller, kind: Kind) -> store::Command {
    store::Command {
        account: caller.account,
        buyer: caller.buyer,
        seller: caller.seller,
        kind: Some(kind),
    }
}

pub(super) fn time_step() -> store::Command {
    journaled(NOBODY, Kind::AdvanceTime(store::AdvanceTime {}))
}

pub(super) const NOBODY: Caller = Caller {
    account: 0,
    buyer: false,
    seller: false,
};

impl Exchange {
    /// Journals the command just sequenced (built only when it is journaled).
    pub(super) fn journal_entry(&mut self, ts: i64, command: impl FnOnce() -> store::Command) {
        if !self.replaying {
            self.journal.push(JournalEntry {
                seq: self.sequence,
                ts,
                command: command().encode_to_vec(),
            });
        }
    }

    pub(super) fn journal_time_step(&mut self, ts: i64) {
        self.journal_entry(ts, time_step);
    }

    /// Applies one journaled command again (recovery, replay), through the same code as
    /// the live request. It must be the next in sequence and be accepted again.
    pub fn replay(&mut self, seq: u64, ts: i64, command: &[u8]) -> Result<(), StoreError> {
        self.replay_with(seq, ts, command, false)
    }

    /// As [`Exchange::replay`], keeping what the command publishes in the round (the
    /// operator's replay lists the trades).
    pub fn replay_published(
        &mut self,
        seq: u64,
        ts: i64,
        command: &[u8],
    ) -> Result<(), StoreError> {
        self.replay_with(seq, ts, command, true)
    }

    fn replay_with(
        &mut self,
        seq: u64,
        ts: i64,
        command: &[u8],
        publish: bool,
    ) -> Result<(), StoreError> {
        if seq != self.sequence + 1 {
            return Err(StoreError(format!(
                "journal record {seq} does not follow sequence {}",
                self.sequence
            )));
        }
        let c = store::Command::decode(command)
            .map_err(|e| StoreError(format!("journal record {seq} does not decode: {e}")))?;
        let caller = Caller {
            account: c.account,
            buyer: c.buyer,
            seller: c.seller,
        };
        self.replaying = true;
        self.quiet = !publish;
        let result = match c.kind {
            Some(Kind::Place(r)) => self.place(ts, caller, &r).map(drop),
            Some(Kind::OneOf(r)) => self.place_one_of(ts, caller, &r).map(drop),
            Some(Kind::Basket(r)) => self.place_basket(ts, caller, &r).map(drop),
            Some(Kind::Cancel(r)) => self.cancel(ts, caller, &r),
            Some(Kind::Amend(r)) => self.amend(ts, caller, &r),
            Some(Kind::RegisterCapacity(r)) => self.register_capacity(ts, caller, &r),
            Some(Kind::WithdrawCapacity(r)) => self.withdraw_capacity(ts, caller, &r).map(drop),
            Some(Kind::CreateProduct(p)) => self.create_product(
                ts,
                &p.product_id,
                p.tick_micros,
                p.lot,
                p.close_at_micros,
                Some(p.open_at_micros),
                p.auction_first,
            ),
            Some(Kind::SetState(s)) => self.set_state(ts, &s.what, &s.product_id),
            Some(Kind::IdBase(b)) => self.set_id_base(ts, b.base),
            Some(Kind::AuctionStart(a)) => self
                .start_auction(ts, a.auction_id, a.from_hour, a.to_hour)
                .map(drop),
            Some(Kind::AuctionClear(c)) => self.clear_auction(ts, &c).map(drop),
            Some(Kind::Deposit(r)) => self.deposit(ts, &r).map(drop),
            Some(Kind::Withdraw(r)) => self.withdraw(ts, &r).map(drop),
            Some(Kind::CreditLimit(r)) => self.set_credit_limit(ts, &r).map(drop),
            Some(Kind::Fees(r)) => self.set_fees(ts, &r).map(drop),
            Some(Kind::Move(r)) => self.move_money(ts, &r).map(drop),
            // a time step always counts, whether or not something falls due again
            Some(Kind::AdvanceTime(_)) => self
                .run(ts, &Command::AdvanceTime, None, time_step)
                .map(drop),
            None => Err(Refusal::new("INVALID_ARGUMENT", "an empty command")),
        };
        self.replaying = false;
        self.quiet = false;
        match result {
            Ok(()) if self.sequence == seq => Ok(()),
            Ok(()) => Err(StoreError(format!(
                "journal record {seq} left the sequence at {}",
                self.sequence
            ))),
            Err(r) => Err(StoreError(format!(
                "journal record {seq} was refused on replay: {r}"
            ))),
        }
    }

    /// The whole exchange at its current sequence, in the store's encoding.
    pub fn snapshot(&self) -> Vec<u8> {
        let products = self.engine.products().len();
        let mut market_sequence = self.md_sequence.clone();
        market_sequence.resize(products, 0);
        let mut execution_sequence: Vec<store::AccountSequence> = self
            .exec_sequence
            .iter()
            .map(|(&account, &sequence)| store::AccountSequence { account, sequence })
            .collect();
        execution_sequence.sort_by_key(|a| a.account);
        store::Snapshot {
            sequence: self.sequence,
            last_ts: self.engine.now(),
            engine: self.engine.snapshot(),
            orders: self.orders.values().map(OrderRecord::to_store).collect(),
            market_sequence,
            execution_sequence,
            state_hash: self.state_hash(),
            ended: self.ended.iter().copied().collect(),
            auctions: self.auctions.iter().cloned().collect(),
            ledger: self.ledger_snapshot(),
        }
        .encode_to_vec()
    }

    /// An exchange back from [`Exchange::snapshot`]: the same state, the same hash, the
    /// same answers from there on. Derived state (client-order-id index, open-order
    /// counts, the last published levels) is rebuilt, not stored.
    pub fn restore(bytes: &[u8], max_open_orders: u32) -> Result<Exchange, StoreError> {
        let s = store::Snapshot::decode(bytes)
            .map_err(|e| StoreError(format!("snapshot does not decode: {e}")))?;
        let engine =
            Engine::restore(&s.engine).map_err(|e| StoreError(format!("snapshot engine: {e}")))?;
        let mut ex = Exchange::new(max_open_orders);
        ex.ended = s.ended.iter().copied().collect();
        ex.auctions = s.auctions.into_iter().collect();
        ex.engine = engine;
        ex.sequence = s.sequence;
        ex.md_sequence = s.market_sequence;
        ex.exec_sequence = s
            .execution_sequence
            .iter()
            .map(|a| (a.account, a.sequence))
            .collect();
        for r in &s.orders {
            let rec = OrderRecord::from_store(r)
                .ok_or_else(|| StoreError("snapshot: an order record does not read".into()))?;
            if rec.is_open() {
                *ex.open_orders.entry(rec.account).or_default() += 1;
            }
            if !rec.client_order_id.is_empty() {
                ex.by_client_id
                    .insert((rec.account, rec.client_order_id.clone()), rec.order_id);
            }
            ex.orders.insert(rec.order_id, rec);
        }
        ex.ledger_restore(s.ledger);
        if ex.state_hash() != s.state_hash {
            return Err(StoreError(
                "snapshot: state hash does not match its record".into(),
            ));
        }
        for h in 0..ex.engine.products().len() as ProductHandle {
            for side in [Side::Buy, Side::Sell] {
                let levels = ex.engine.l2(h, side, usize::MAX);
                if !levels.is_empty() {
                    let known = levels.into_iter().map(|(p, q, n)| (p, (q, n))).collect();
                    ex.levels.insert((h, side), known);
                }
            }
        }
        Ok(ex)
    }
}
