//! The exchange: one engine and everything the venue keeps per order around it.
//!
//! Each request is decoded from the contract, checked against the caller's account and
//! roles, stamped with the time it is given, and applied to the engine; what the engine
//! emits becomes order records, executions (per-account sequences) and market-data
//! deltas (per-product sequences), gathered in a [`Round`] that the caller takes after
//! each writer round. A refused request changes nothing but the clock: what fell due
//! before it (expiries, gate closures) still happens, as it would at the next command.
//!
//! Deterministic: no clock, no I/O, no hash-map iteration order in any result.
//!
//! One type, [`Exchange`], its `impl` spread over the modules below by concern: this one
//! holds the state, its settings and `run`, which applies one command.

use std::collections::{BTreeMap, VecDeque};

use rustc_hash::FxHashMap;
use spotex_core::{Command, Engine, Event, ProductHandle, Side};

use crate::pb;
use crate::records::OrderRecord;
use crate::refusal::Refusal;
use crate::store;

mod amend;
mod auctions;
mod commands;
mod events;
mod journal;
mod ledger;
mod orders;
mod outputs;
mod resale;
mod views;

pub use auctions::KEEP_AUCTIONS;
pub use journal::{JournalEntry, StoreError};
pub use ledger::{fee_of, FEE_ACCOUNT, KEEP_TRANSFERS, OUTSIDE};
pub use orders::dollars;
pub use views::{page_size, page_token, DEFAULT_PAGE, MAX_PAGE};

/// Who is asking: the authenticated account and the roles the edge found on it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caller {
    pub account: u64,
    pub buyer: bool,
    pub seller: bool,
}

/// What the requests of one writer round produced for the streams, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Round {
    pub market: Vec<pb::MarketData>,
    /// `(account, execution)`: each account's private stream.
    pub executions: Vec<(u64, pb::Execution)>,
}

/// The longest client order id.
pub const MAX_CLIENT_ORDER_ID: usize = 64;
/// The longest product or cluster id a request may name, unless set otherwise.
pub const MAX_ID_LENGTH: usize = 128;
/// Ended orders (filled, cancelled, expired) kept in memory, unless set otherwise.
pub const KEEP_ENDED: usize = 100_000;

pub struct Exchange {
    engine: Engine,
    /// Accepted commands, refused ones that moved the clock included (each is one
    /// journal record).
    sequence: u64,
    orders: BTreeMap<u64, OrderRecord>,
    by_client_id: FxHashMap<(u64, String), u64>,
    open_orders: FxHashMap<u64, u32>,
    max_open_orders: u32,
    max_id_length: usize,
    /// The venue's resale fee in basis points, stamped on each resale ask it accepts.
    resale_fee_bps: u32,
    /// Ended orders still in `orders`, oldest ending first; past `keep_ended` the oldest
    /// leave memory (into `left`, for the caller to keep on disk), at the next command.
    ended: VecDeque<u64>,
    keep_ended: usize,
    left: Vec<OrderRecord>,
    md_sequence: Vec<u64>,
    /// The last published `(quantity, orders)` of every level, per product and side.
    levels: FxHashMap<(ProductHandle, Side), BTreeMap<i64, (i64, u32)>>,
    exec_sequence: FxHashMap<u64, u64>,
    round: Round,
    journal: Vec<JournalEntry>,
    /// Applying the journal: policy limits are not checked again, nothing is journaled.
    replaying: bool,
    /// Build no stream messages (a recovery publishes nothing; only sequences move).
    quiet: bool,
    scratch: Vec<Event>,
    /// Trades made since this process started (not replayed ones), per product: count,
    /// GPU-hours, notional in micro-dollars. Operators' counters, outside the state hash.
    traded: FxHashMap<ProductHandle, TradeTotals>,
    /// The auctions' results, oldest first (the latest `KEEP_AUCTIONS`).
    auctions: VecDeque<pb::AuctionResult>,
    /// While an auction's result is applied: its id, and what it traded per product.
    clearing: Option<u64>,
    cleared: auctions::Cleared,
    /// The money: balances, holds, fees, transfers.
    ledger: ledger::Ledger,
}

/// What traded in one product: trades, GPU-hours and notional (micro-dollars).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TradeTotals {
    pub trades: u64,
    pub gpu_hours: i64,
    pub notional_micros: i128,
}

/// An order waiting for the engine's verdict: becomes a record when accepted. A one-of
/// group waits as its alternatives: the engine's `Chosen` picks the one it became.
struct Pending {
    record: OrderRecord,
    product: ProductHandle,
    alternatives: Vec<(OrderRecord, ProductHandle)>,
    /// A basket's later legs, last first: each accepted leg takes the next.
    rest: Vec<Pending>,
}

impl Exchange {
    pub fn new(max_open_orders: u32) -> Exchange {
        Exchange {
            engine: Engine::new(),
            sequence: 0,
            orders: BTreeMap::new(),
            by_client_id: FxHashMap::default(),
            open_orders: FxHashMap::default(),
            max_open_orders,
            max_id_length: MAX_ID_LENGTH,
            resale_fee_bps: 0,
            ended: VecDeque::new(),
            keep_ended: KEEP_ENDED,
            left: Vec::new(),
            md_sequence: Vec::new(),
            levels: FxHashMap::default(),
            exec_sequence: FxHashMap::default(),
            round: Round::default(),
            journal: Vec::new(),
            replaying: false,
            quiet: false,
            scratch: Vec::new(),
            traded: FxHashMap::default(),
            auctions: VecDeque::new(),
            clearing: None,
            cleared: auctions::Cleared::default(),
            ledger: ledger::Ledger::new(),
        }
    }

    /// Trades made since this process started, per product (in no set order); replayed
    /// and recovered trades are not counted.
    pub fn traded(&self) -> impl Iterator<Item = (ProductHandle, &TradeTotals)> + '_ {
        self.traded.iter().map(|(p, t)| (*p, t))
    }

    /// The fee charged to a resale's seller on each fill, in basis points of its value
    /// (at most 10,000). Each resale ask keeps the fee it was placed with, journal and
    /// replay included.
    pub fn set_resale_fee_bps(&mut self, bps: u32) {
        self.resale_fee_bps = bps.min(spotex_core::MAX_FEE_BPS);
    }

    /// The longest product or cluster id an order may name (a policy limit of the venue,
    /// not checked again on replay).
    pub fn set_max_id_length(&mut self, n: usize) {
        self.max_id_length = n;
    }

    /// How many ended orders (filled, cancelled, expired) stay in memory; older ones leave
    /// it (see [`Exchange::take_left`]) and their client order ids may be used again.
    /// Part of the exchange's behaviour: replay needs the same value.
    pub fn set_keep_ended(&mut self, n: usize) {
        self.keep_ended = n;
    }

    /// The journal entries of the commands applied since the last call, in order.
    pub fn take_journal(&mut self) -> Vec<JournalEntry> {
        std::mem::take(&mut self.journal)
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The engine alone, for views of the books (the replay tool).
    pub fn into_engine(self) -> Engine {
        self.engine
    }

    pub fn sequence(&self) -> u64 {
        self.sequence
    }

    /// What the round so far produced for the streams; starts a new round.
    pub fn take_round(&mut self) -> Round {
        std::mem::take(&mut self.round)
    }

    /// Applies one command at `ts` and journals it (`journal`) once accepted. Returns
    /// the id of an accepted new order.
    fn run(
        &mut self,
        ts: i64,
        cmd: &Command,
        pending: Option<Pending>,
        journal: impl FnOnce() -> store::Command,
    ) -> Result<Option<u64>, Refusal> {
        self.let_go();
        let before = self.engine.now();
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        let result = self.engine.apply(ts, cmd, &mut out);
        let outcome = match result {
            Ok(()) => {
                self.sequence += 1;
                self.journal_entry(ts, journal);
                Ok(self.absorb(&out, ts, pending))
            }
            Err(reject) => {
                if self.engine.now() != before {
                    // the clock moved before the refusal: a time step of its own
                    self.sequence += 1;
                    self.journal_time_step(ts);
                }
                out.pop(); // the `Rejected` event
                self.absorb(&out, ts, None);
                Err(reject.into())
            }
        };
        self.scratch = out;
        outcome
    }
}
