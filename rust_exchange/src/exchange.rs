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

use std::collections::{BTreeMap, VecDeque};

use prost::Message;
use rustc_hash::{FxHashMap, FxHashSet};
use spotex_core::{
    Allocation, ClusterSpec, Command, Engine, Event, NewBlock, NewOrder, NodeSpec, OrderType,
    Placement, ProductHandle, ProductSpec, SelfTradePrevention, Side, Slot, TimeInForce, Topology,
    MAX_BLOCK_HOURS,
};

use crate::pb;
use crate::records::{
    locality_of, locality_to_pb, side_to_pb, FillRecord, OrderRecord, OrderState,
};
use crate::refusal::{status_code, Refusal};
use crate::store::{self, command::Kind};

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

/// Items of a list call's page when the request asks for none.
pub const DEFAULT_PAGE: usize = 500;
/// The most items of a page; a request for more is served this many.
pub const MAX_PAGE: usize = 1000;

/// A request's page size: 0 is the default, more than the most is the most.
pub fn page_size(asked: u32) -> usize {
    match asked {
        0 => DEFAULT_PAGE,
        n => (n as usize).min(MAX_PAGE),
    }
}

/// Where a page starts: after the id (or position) a token names; the first page has
/// none.
pub fn page_token(token: &str) -> Result<u64, Refusal> {
    if token.is_empty() {
        return Ok(0);
    }
    token.parse().map_err(|_| {
        Refusal::new(
            "INVALID_ARGUMENT",
            "malformed page_token: pass the next_page_token of the previous page",
        )
    })
}

/// Cuts `items` (up to `size + 1` of them) to a page, and names where the next starts
/// (empty: nothing more).
fn next_token<T>(items: &mut Vec<T>, size: usize, key: impl Fn(&T) -> u64) -> String {
    if items.len() <= size {
        return String::new();
    }
    items.truncate(size);
    items.last().map(|t| key(t).to_string()).unwrap_or_default()
}

/// The longest client order id.
pub const MAX_CLIENT_ORDER_ID: usize = 64;
/// The longest product or cluster id a request may name, unless set otherwise.
pub const MAX_ID_LENGTH: usize = 128;
/// Ended orders (filled, cancelled, expired) kept in memory, unless set otherwise.
pub const KEEP_ENDED: usize = 100_000;

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

fn journaled(caller: Caller, kind: Kind) -> store::Command {
    store::Command {
        account: caller.account,
        buyer: caller.buyer,
        seller: caller.seller,
        kind: Some(kind),
    }
}

fn time_step() -> store::Command {
    journaled(NOBODY, Kind::AdvanceTime(store::AdvanceTime {}))
}

const NOBODY: Caller = Caller {
    account: 0,
    buyer: false,
    seller: false,
};

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
}

/// What traded in one product: trades, GPU-hours and notional (micro-dollars).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TradeTotals {
    pub trades: u64,
    pub gpu_hours: i64,
    pub notional_micros: i128,
}

fn check_client_order_id(id: &str) -> Result<(), Refusal> {
    if id.len() > MAX_CLIENT_ORDER_ID {
        return Err(Refusal::new(
            "INVALID_CLIENT_ORDER_ID",
            "client_order_id is at most 64 chars",
        ));
    }
    Ok(())
}

/// GPUs of one node, with the node's place, as the contract gives them.
/// Which rule of a product's schedule is broken, for people (the engine refuses them all
/// as INVALID_SCHEDULE): the delivery hour or the gate closure already past, opening
/// after the gate closure, or the gate closure after delivery starts.
fn schedule_problem(id: &str, now: i64, open_at: i64, close_at: i64) -> Option<String> {
    const HOUR: i64 = 3_600_000_000;
    let delivery = spotex_core::product::parse_product_id(id).ok()?.2 * HOUR;
    Some(if delivery <= now {
        format!("{id} is in the past: its delivery hour has begun or ended")
    } else if close_at <= now {
        format!("{id}'s gate closure is in the past: it could not trade")
    } else if close_at > delivery {
        format!("{id}'s gate closure must be no later than the start of its delivery hour")
    } else if open_at >= close_at {
        format!("{id} must open before its gate closure")
    } else {
        return None;
    })
}

/// Micro-dollars as a person types dollars: `$0.01`, `$2.50`, `$0.000001`.
pub fn dollars(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    let mut frac = format!("{:06}", m % 1_000_000);
    while frac.len() > 2 && frac.ends_with('0') {
        frac.pop();
    }
    format!("{sign}${}.{frac}", m / 1_000_000)
}

fn slot_pb(cluster: &spotex_core::Cluster, node: u32, gpus: u64) -> pb::Slot {
    let n = &cluster.spec.nodes[node as usize];
    pb::Slot {
        node_id: n.id.clone(),
        gpu_indices: (0..64).filter(|b| gpus & (1u64 << b) != 0).collect(),
        block: n.place.block.clone(),
        rack: n.place.rack.clone(),
        nvlink_domain: n.place.domain.clone(),
    }
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

    /// The records that left memory since the last call, in the order they left: for the
    /// caller to keep on disk, where queries still find them.
    pub fn take_left(&mut self) -> Vec<OrderRecord> {
        std::mem::take(&mut self.left)
    }

    /// Ended orders beyond `keep_ended` leave memory, oldest ending first. Runs before
    /// each command, so a command's own answer always finds its records.
    fn let_go(&mut self) {
        while self.ended.len() > self.keep_ended {
            let Some(id) = self.ended.pop_front() else {
                break;
            };
            if let Some(rec) = self.orders.remove(&id) {
                let key = (rec.account, rec.client_order_id.clone());
                if self.by_client_id.get(&key) == Some(&id) {
                    self.by_client_id.remove(&key);
                }
                self.left.push(rec);
            }
        }
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

    pub fn state_hash(&self) -> String {
        self.engine.state_hash()
    }

    /// What the round so far produced for the streams; starts a new round.
    pub fn take_round(&mut self) -> Round {
        std::mem::take(&mut self.round)
    }

    // ---- operator and seller commands ------------------------------------------------

    pub fn create_product(
        &mut self,
        ts: i64,
        id: &str,
        tick: i64,
        lot: i64,
        close_at: i64,
        open_at: Option<i64>,
    ) -> Result<(), Refusal> {
        let open_at = open_at.unwrap_or(ts);
        let spec = ProductSpec {
            id: id.to_string(),
            tick,
            lot,
            open_at,
            close_at,
        };
        let id_ = id.to_string();
        let journal = move || {
            journaled(
                NOBODY,
                Kind::CreateProduct(store::CreateProduct {
                    product_id: id_,
                    tick_micros: tick,
                    lot,
                    close_at_micros: close_at,
                    open_at_micros: open_at,
                }),
            )
        };
        self.run(ts, &Command::CreateProduct(spec), None, journal)
            .map_err(|mut e| {
                if e.reason == "INVALID_SCHEDULE" {
                    if let Some(why) = schedule_problem(id, ts, open_at, close_at) {
                        e.message = why;
                    }
                }
                e
            })
            .map(drop)
    }

    /// A shard's ids: orders and trades are numbered from `base` on. Only before the
    /// first id is given (`IDS_IN_USE` after).
    pub fn set_id_base(&mut self, ts: i64, base: u64) -> Result<(), Refusal> {
        let journal = || journaled(NOBODY, Kind::IdBase(store::IdBase { base }));
        self.run(ts, &Command::IdBase { base }, None, journal)
            .map(drop)
    }

    /// The next order id and trade id to be given.
    pub fn next_ids(&self) -> (u64, u64) {
        self.engine.next_ids()
    }

    /// `what`: halt, resume or close.
    pub fn set_state(&mut self, ts: i64, what: &str, product_id: &str) -> Result<(), Refusal> {
        let product = self.product(product_id)?;
        let cmd = match what {
            "halt" => Command::Halt { product },
            "resume" => Command::Resume { product },
            "close" => Command::Close { product },
            _ => return Err(Refusal::new("INVALID_ARGUMENT", "halt, resume or close")),
        };
        let journal = || {
            journaled(
                NOBODY,
                Kind::SetState(store::SetState {
                    what: what.to_string(),
                    product_id: product_id.to_string(),
                }),
            )
        };
        self.run(ts, &cmd, None, journal).map(drop)
    }

    pub fn register_capacity(
        &mut self,
        ts: i64,
        caller: Caller,
        r: &pb::RegisterCapacityRequest,
    ) -> Result<(), Refusal> {
        let spec = ClusterSpec {
            id: r.cluster_id.clone(),
            sku: r.sku.clone(),
            region: r.region.clone(),
            nodes: r
                .nodes
                .iter()
                .map(|n| NodeSpec {
                    id: n.node_id.clone(),
                    gpus: n.gpus,
                    place: Topology {
                        block: n.block.clone(),
                        rack: n.rack.clone(),
                        domain: n.nvlink_domain.clone(),
                    },
                })
                .collect(),
            from_hour: r.from_hour,
            to_hour: r.to_hour,
        };
        let account = caller.account;
        let journal = || journaled(caller, Kind::RegisterCapacity(r.clone()));
        self.run(
            ts,
            &Command::RegisterCapacity { account, spec },
            None,
            journal,
        )
        .map(drop)
    }

    /// Returns the GPU-hours taken out of sale.
    pub fn withdraw_capacity(
        &mut self,
        ts: i64,
        caller: Caller,
        r: &pb::WithdrawCapacityRequest,
    ) -> Result<i64, Refusal> {
        let cluster = self
            .engine
            .cluster_handle(caller.account, &r.cluster_id)
            .ok_or_else(|| Refusal::new("UNKNOWN_CLUSTER", "no such cluster of yours"))?;
        let cmd = Command::WithdrawCapacity {
            account: caller.account,
            cluster,
            from_hour: r.from_hour,
            to_hour: r.to_hour,
            nodes: r.node_ids.clone(),
        };
        self.run(ts, &cmd, None, || {
            journaled(caller, Kind::WithdrawCapacity(r.clone()))
        })?;
        Ok(self
            .scratch
            .iter()
            .map(|e| match e {
                Event::CapacityWithdrawn { gpu_hours, .. } => *gpu_hours,
                _ => 0,
            })
            .sum())
    }

    /// Moves time to `ts`: gate closures and expiries that fell due. A quiet step
    /// (nothing fell due) is not a command: it is not sequenced or journaled.
    pub fn advance_time(&mut self, ts: i64) {
        self.let_go();
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        let _ = self.engine.apply(ts, &Command::AdvanceTime, &mut out);
        if !out.is_empty() {
            self.sequence += 1;
            self.journal_time_step(ts);
            self.absorb(&out, ts, None);
        }
        self.scratch = out;
    }

    // ---- orders ----------------------------------------------------------------------

    pub fn place_order(
        &mut self,
        ts: i64,
        caller: Caller,
        r: &pb::PlaceOrderRequest,
    ) -> Result<pb::Order, Refusal> {
        let id = self.place(ts, caller, r)?;
        Ok(self.orders[&id].to_pb(true))
    }

    /// A seller's range: one ask per hour from the ask's product on, each placed or
    /// refused on its own, all with one `range_id` (the sequence number the range began
    /// at) for CancelAll. Each ask is journaled as the ordinary ask it is.
    pub fn place_ask_range(
        &mut self,
        ts: i64,
        caller: Caller,
        r: &pb::PlaceAskRangeRequest,
    ) -> Result<pb::SubmitOrdersResponse, Refusal> {
        let ask = r
            .ask
            .as_ref()
            .ok_or_else(|| Refusal::new("INVALID_RANGE", "a range needs its first hour's ask"))?;
        if ask.side != pb::Side::Sell as i32 || !(1..=MAX_BLOCK_HOURS).contains(&r.hours) {
            return Err(Refusal::new(
                "INVALID_RANGE",
                "a range is a sell of 1 to 168 consecutive hours",
            ));
        }
        if ask.hours > 1 || ask.window_hours > 0 || ask.min_quantity != 0 {
            return Err(Refusal::new(
                "INVALID_RANGE",
                "the asks of a range are one hour each (no hours, window or minimum)",
            ));
        }
        let first = self.product(&ask.product_id)?;
        let (sku, region, hour) = {
            let p = &self.engine.products()[first as usize];
            (p.sku.clone(), p.region.clone(), p.hour)
        };
        let mut asks = Vec::with_capacity(r.hours as usize);
        for k in 0..r.hours as i64 {
            let id = format!(
                "{sku}/{region}/{}",
                spotex_core::product::format_hour(hour + k)
            );
            if self.engine.product_handle(&id).is_none() {
                return Err(Refusal::new(
                    "INVALID_RANGE",
                    format!("hour {k} of the range is not listed ({id})"),
                ));
            }
            let mut one = ask.clone();
            one.product_id = id;
            if !ask.client_order_id.is_empty() {
                one.client_order_id = format!("{}#{k}", ask.client_order_id);
            }
            asks.push(one);
        }
        let range_id = self.sequence + 1;
        for one in &mut asks {
            one.range_id = range_id;
        }
        Ok(self.submit_orders(ts, caller, &pb::SubmitOrdersRequest { orders: asks }))
    }

    /// A new order of `caller` fits: under the open-order limit, and a client order id
    /// not used before (while its order is in memory).
    fn check_room(&self, caller: Caller, client_order_id: &str) -> Result<(), Refusal> {
        let open = self.open_orders.get(&caller.account).copied().unwrap_or(0);
        if open >= self.max_open_orders && !self.replaying {
            return Err(Refusal::new(
                "TOO_MANY_OPEN_ORDERS",
                format!(
                    "at most {} open orders per account; cancel some first",
                    self.max_open_orders
                ),
            ));
        }
        let key = (caller.account, client_order_id.to_string());
        if !client_order_id.is_empty() && self.by_client_id.contains_key(&key) {
            return Err(Refusal::new(
                "DUPLICATE_CLIENT_ORDER_ID",
                format!("client_order_id {client_order_id:?} was used before"),
            ));
        }
        Ok(())
    }

    /// One-of: up to 16 block (or window) bids, of which at most one fills, at once: the
    /// cheapest that can, ties to the first listed. Answers the order the group became
    /// (the winner, or the first alternative, cancelled, when none could fill).
    pub fn place_one_of(
        &mut self,
        ts: i64,
        caller: Caller,
        r: &pb::PlaceOneOfRequest,
    ) -> Result<pb::Order, Refusal> {
        self.let_go();
        if r.alternatives.is_empty() || r.alternatives.len() > spotex_core::MAX_ALTERNATIVES {
            return Err(spotex_core::Reject::InvalidGroup.into());
        }
        if !caller.buyer {
            return Err(Refusal::new(
                "ROLE_REQUIRED",
                "placing a buy order needs the role buyer",
            ));
        }
        check_client_order_id(&r.client_order_id)?;
        self.check_room(caller, &r.client_order_id)?;
        let mut blocks = Vec::with_capacity(r.alternatives.len());
        let mut alternatives = Vec::with_capacity(r.alternatives.len());
        for a in &r.alternatives {
            let tif = match pb::TimeInForce::try_from(a.time_in_force) {
                Ok(pb::TimeInForce::Ioc) => TimeInForce::ImmediateOrCancel,
                Ok(pb::TimeInForce::Fok) => TimeInForce::FillOrKill,
                Ok(pb::TimeInForce::Gtc) => TimeInForce::GoodTillClose,
                Ok(pb::TimeInForce::Gtd) => TimeInForce::GoodTillTime(a.expire_at_micros),
                _ => return Err(spotex_core::Reject::InvalidGroup.into()),
            };
            if a.side != pb::Side::Buy as i32
                || a.order_type != pb::OrderType::Limit as i32
                || a.post_only
                || a.min_quantity != 0
                || !a.cluster_id.is_empty()
                || a.gang > 64
            {
                return Err(spotex_core::Reject::InvalidGroup.into());
            }
            if a.product_id.len() > self.max_id_length && !self.replaying {
                return Err(Refusal::new("FIELD_TOO_LONG", "a product id is too long"));
            }
            let product = self.product(&a.product_id)?;
            let gang = a.gang.max(1);
            let locality = pb::Locality::try_from(a.locality)
                .map_err(|_| Refusal::new("INVALID_ENUM", "unknown locality"))?;
            let place = Placement {
                level: locality_of(locality),
                preferred: a.locality_preferred,
                near: Some(a.colocate_with).filter(|&t| t != 0),
            };
            blocks.push(NewBlock {
                account: caller.account,
                product,
                hours: a.hours.max(1),
                price: a.price_micros,
                qty: a.quantity,
                gang,
                tif,
                window: a.window_hours,
                place: place.clone(),
            });
            let record = OrderRecord {
                order_id: 0,
                account: caller.account,
                client_order_id: r.client_order_id.clone(),
                product: a.product_id.clone(),
                side: Side::Buy,
                order_type: OrderType::Limit,
                price: a.price_micros,
                quantity: a.quantity,
                tif,
                cluster: String::new(),
                gang,
                created_at: ts,
                filled: 0,
                remaining: a.quantity,
                state: OrderState::Open,
                reason: String::new(),
                fills: Vec::new(),
                hours: a.hours.max(1),
                window: a.window_hours,
                min_qty: 0,
                range_id: 0,
                display: 0,
                place,
                placed: None,
                resale: None,
            };
            alternatives.push((record, product));
        }
        let (record, product) = alternatives[0].clone();
        let pending = Pending {
            record,
            product,
            alternatives,
            rest: Vec::new(),
        };
        let journal = || journaled(caller, Kind::OneOf(r.clone()));
        let id = self
            .run(
                ts,
                &Command::PlaceOneOf(blocks.clone()),
                Some(pending),
                journal,
            )
            .map_err(|mut e| {
                if e.reason == "INVALID_BLOCK" {
                    // name the alternative and the rule it breaks
                    let why = blocks
                        .iter()
                        .enumerate()
                        .find_map(|(k, b)| Some((k, self.engine.block_problem(b)?)));
                    if let Some((k, why)) = why {
                        e.message = format!("alternative {}: {why}", k + 1);
                    }
                }
                e
            })?
            .expect("an accepted group has an id");
        Ok(self.orders[&id].to_pb(true))
    }

    /// Bulk entry: each order of the message placed or refused on its own, in order.
    pub fn submit_orders(
        &mut self,
        ts: i64,
        caller: Caller,
        r: &pb::SubmitOrdersRequest,
    ) -> pb::SubmitOrdersResponse {
        let results = r
            .orders
            .iter()
            .map(|o| match self.place(ts, caller, o) {
                Ok(id) => pb::OrderResult {
                    order: Some(self.orders[&id].to_pb(true)),
                    ..Default::default()
                },
                Err(e) => pb::OrderResult {
                    order: None,
                    code: status_code(e.reason),
                    reason: e.reason.to_string(),
                    message: e.message,
                },
            })
            .collect();
        pb::SubmitOrdersResponse { results }
    }

    /// Places an order; returns its id once accepted.
    fn place(
        &mut self,
        ts: i64,
        caller: Caller,
        r: &pb::PlaceOrderRequest,
    ) -> Result<u64, Refusal> {
        let resale;
        let r = if r.resell_trade_id != 0 {
            resale = self.resale_request(caller, r)?;
            &resale
        } else {
            r
        };
        let (command, pending) = self.prepare(ts, caller, r)?;
        let product = pending.product;
        let journal = || journaled(caller, Kind::Place(r.clone()));
        let accepted = self
            .run(ts, &command, Some(pending), journal)
            .map_err(|mut e| {
                // say what the rule is, where the product has one
                let spec = &self.engine.products()[product as usize].spec;
                match e.reason {
                    "PRICE_OFF_TICK" => {
                        e.message += &format!(" (the tick is {})", dollars(spec.tick))
                    }
                    "QUANTITY_OFF_LOT" => e.message += &format!(" (the lot is {})", spec.lot),
                    "INVALID_BLOCK" => {
                        if let Command::PlaceBlock(b) = &command {
                            if let Some(why) = self.engine.block_problem(b) {
                                e.message = why;
                            }
                        }
                    }
                    _ => {}
                }
                e
            })?;
        Ok(accepted.expect("an accepted order has an id"))
    }

    /// An order request checked and turned into the engine's command, with the record
    /// it becomes once accepted.
    fn prepare(
        &mut self,
        ts: i64,
        caller: Caller,
        r: &pb::PlaceOrderRequest,
    ) -> Result<(Command, Pending), Refusal> {
        // before the checks: which client order ids are known must not depend on whether
        // an earlier, unjournaled refusal happened to let records go
        self.let_go();
        let longest = r.product_id.len().max(r.cluster_id.len());
        if longest > self.max_id_length && !self.replaying {
            return Err(Refusal::new(
                "FIELD_TOO_LONG",
                format!(
                    "ids and names have at most {} characters",
                    self.max_id_length
                ),
            ));
        }
        let side = match pb::Side::try_from(r.side) {
            Ok(pb::Side::Buy) => Side::Buy,
            Ok(pb::Side::Sell) => Side::Sell,
            _ => {
                return Err(Refusal::new(
                    "INVALID_SIDE",
                    "side must be SIDE_BUY or SIDE_SELL",
                ))
            }
        };
        let (may, role) = match side {
            Side::Buy => (caller.buyer, "buyer"),
            // whoever holds an allocation may resell it (resale_request checked that)
            Side::Sell => (caller.seller || r.resell_trade_id != 0, "seller"),
        };
        if !may {
            return Err(Refusal::new(
                "ROLE_REQUIRED",
                format!("placing a {} order needs the role {role}", side.as_str()),
            ));
        }
        let terms = (
            pb::OrderType::try_from(r.order_type),
            pb::TimeInForce::try_from(r.time_in_force),
            pb::SelfTradePrevention::try_from(r.stp),
            pb::Locality::try_from(r.locality),
        );
        let (Ok(order_type), Ok(tif), Ok(stp), Ok(locality)) = terms else {
            return Err(Refusal::new(
                "INVALID_ENUM",
                "unknown order_type, time_in_force, stp or locality",
            ));
        };
        let place = Placement {
            level: locality_of(locality),
            preferred: r.locality_preferred,
            near: Some(r.colocate_with).filter(|&t| t != 0),
        };
        if r.locality_preferred && place.level.is_none() {
            return Err(spotex_core::Reject::InvalidPlacement.into());
        }
        check_client_order_id(&r.client_order_id)?;
        if r.gang > 64 {
            return Err(Refusal::new(
                "INVALID_GANG",
                "gang must be a power of two from 1 to 64",
            ));
        }
        self.check_room(caller, &r.client_order_id)?;
        let product = self.product(&r.product_id)?;
        // a cluster id is its seller's name for it: an ask names one of the caller's own
        // clusters, a resale its allocation's (someone else's, by that seller's name)
        let cluster = if r.cluster_id.is_empty() {
            None
        } else if side == Side::Buy {
            // the engine refuses it (CLUSTER_NOT_ALLOWED) in its turn: a buyer's name for
            // a cluster is nobody's
            Some(spotex_core::ClusterHandle::MAX)
        } else if r.resell_trade_id != 0 {
            Some(self.resale_cluster(caller, r)?)
        } else {
            Some(
                self.engine
                    .cluster_handle(caller.account, &r.cluster_id)
                    .ok_or(spotex_core::Reject::UnknownCluster)?,
            )
        };
        let order_type = match order_type {
            pb::OrderType::Limit => OrderType::Limit,
            pb::OrderType::Market => OrderType::Market,
        };
        let tif = match tif {
            pb::TimeInForce::Gtc => TimeInForce::GoodTillClose,
            pb::TimeInForce::Gtd => TimeInForce::GoodTillTime(r.expire_at_micros),
            pb::TimeInForce::Ioc => TimeInForce::ImmediateOrCancel,
            pb::TimeInForce::Fok => TimeInForce::FillOrKill,
        };
        let stp = match stp {
            pb::SelfTradePrevention::StpCancelNewest => SelfTradePrevention::CancelNewest,
            pb::SelfTradePrevention::StpCancelOldest => SelfTradePrevention::CancelOldest,
            pb::SelfTradePrevention::StpCancelBoth => SelfTradePrevention::CancelBoth,
        };
        let gang = r.gang.max(1);
        let order = NewOrder {
            account: caller.account,
            product,
            side,
            order_type,
            price: r.price_micros,
            qty: r.quantity,
            tif,
            post_only: r.post_only,
            stp,
            cluster,
            gang,
        };
        let pending = Pending {
            product,
            alternatives: Vec::new(),
            rest: Vec::new(),
            record: OrderRecord {
                order_id: 0,
                account: caller.account,
                client_order_id: r.client_order_id.clone(),
                product: r.product_id.clone(),
                side,
                order_type,
                price: r.price_micros,
                quantity: r.quantity,
                tif,
                cluster: r.cluster_id.clone(),
                gang,
                created_at: ts,
                filled: 0,
                remaining: r.quantity,
                state: OrderState::Open,
                reason: String::new(),
                fills: Vec::new(),
                hours: r.hours.max(1),
                window: r.window_hours,
                min_qty: r.min_quantity,
                range_id: r.range_id,
                display: r.display_quantity,
                place: place.clone(),
                placed: None,
                resale: (r.resell_trade_id != 0).then_some((r.resell_trade_id, r.resale_fee_bps)),
            },
        };
        if r.resell_trade_id != 0 {
            // a resale is a plain ask: one hour, all of it shown, no placement terms
            let plain = r.display_quantity == 0
                && r.hours <= 1
                && r.window_hours == 0
                && r.min_quantity == 0
                && !place.is_set();
            if side != Side::Sell || !plain {
                return Err(spotex_core::Reject::InvalidResale.into());
            }
            let slots = self.resale_slots(caller, r)?;
            let command = Command::PlaceResale {
                order,
                parent: r.resell_trade_id,
                slots,
                fee_bps: r.resale_fee_bps,
            };
            return Ok((command, pending));
        }
        if place.is_set() && (side != Side::Buy || r.display_quantity != 0) {
            // placement terms are a bid's
            return Err(spotex_core::Reject::InvalidPlacement.into());
        }
        let command = if r.display_quantity != 0 {
            if r.hours > 1 || r.window_hours > 0 || r.min_quantity != 0 {
                return Err(spotex_core::Reject::InvalidDisplayQuantity.into());
            }
            Command::PlaceIceberg {
                order,
                clip: r.display_quantity,
            }
        } else if r.hours > 1 || r.window_hours > 0 || place.is_set() {
            if r.min_quantity != 0 {
                // a block is all or none already
                return Err(spotex_core::Reject::InvalidMinimumFill.into());
            }
            // a block: a bid for the same GPUs over consecutive hours, at once
            let what = if place.is_set() && r.hours <= 1 && r.window_hours == 0 {
                "placement terms"
            } else {
                "a block (hours above 1, or a window)"
            };
            let broken = if side != Side::Buy {
                Some(format!("{what} is for bids; an ask sells one hour"))
            } else if order_type != OrderType::Limit {
                Some(format!("{what} is for limit orders, not market orders"))
            } else if r.post_only {
                Some(format!("{what} is not for post-only orders"))
            } else {
                None
            };
            if let Some(why) = broken {
                return Err(Refusal::new("INVALID_BLOCK", why));
            }
            if cluster.is_some() {
                return Err(spotex_core::Reject::ClusterNotAllowed.into());
            }
            Command::PlaceBlock(NewBlock {
                account: caller.account,
                product,
                hours: r.hours.max(1),
                price: r.price_micros,
                qty: r.quantity,
                gang,
                tif,
                window: r.window_hours,
                place,
            })
        } else if r.min_quantity != 0 {
            Command::PlaceMinFill {
                order,
                min_qty: r.min_quantity,
            }
        } else {
            Command::Place(order)
        };
        Ok((command, pending))
    }

    /// A resale ask completed from its allocation, as it is journaled: its product and
    /// cluster (when left empty), its quantity (when 0: the GPUs offered) and the venue's
    /// fee now (on replay, the fee it was placed with).
    fn resale_request(
        &self,
        caller: Caller,
        r: &pb::PlaceOrderRequest,
    ) -> Result<pb::PlaceOrderRequest, Refusal> {
        let mut r = r.clone();
        let held = self
            .engine
            .allocations_of(caller.account)
            .into_iter()
            .find(|a| a.trade_id == r.resell_trade_id && a.buyer == caller.account);
        // someone else's allocation is refused as one that does not exist
        let a = held.ok_or(spotex_core::Reject::InvalidResale)?;
        if r.product_id.is_empty() {
            r.product_id = self.engine.products()[a.product as usize].spec.id.clone();
        }
        if r.cluster_id.is_empty() {
            r.cluster_id = self.engine.clusters()[a.cluster as usize].spec.id.clone();
        }
        if r.quantity == 0 {
            let slots = self.resale_slots(caller, &r)?;
            r.quantity = self
                .engine
                .resale_offer(caller.account, r.resell_trade_id, &slots)
                .map(|(_, offered)| offered.iter().map(|s| s.gpus.count_ones() as i64).sum())
                .map_err(Refusal::from)?;
        }
        if !self.replaying {
            r.resale_fee_bps = self.resale_fee_bps;
        }
        Ok(r)
    }

    /// The cluster of the allocation a resale sells from, which the request's cluster id
    /// (when given) must name.
    fn resale_cluster(
        &self,
        caller: Caller,
        r: &pb::PlaceOrderRequest,
    ) -> Result<spotex_core::ClusterHandle, Refusal> {
        self.engine
            .allocation_by_trade(r.resell_trade_id)
            .filter(|a| a.buyer == caller.account)
            .map(|a| a.cluster)
            .filter(|&c| {
                r.cluster_id.is_empty()
                    || self.engine.clusters()[c as usize].spec.id == r.cluster_id
            })
            .ok_or_else(|| spotex_core::Reject::InvalidResale.into())
    }

    /// A resale's GPUs as the engine names them: node indices of the allocation's
    /// cluster and GPU masks.
    fn resale_slots(
        &self,
        caller: Caller,
        r: &pb::PlaceOrderRequest,
    ) -> Result<Vec<Slot>, Refusal> {
        if r.resell_gpus.is_empty() {
            return Ok(Vec::new());
        }
        let cluster = &self.engine.clusters()[self.resale_cluster(caller, r)? as usize];
        let bad = || {
            Refusal::new(
                "INVALID_RESALE",
                "resell_gpus names a node of the allocation's cluster and GPU indices 0 to 63",
            )
        };
        let mut slots = Vec::with_capacity(r.resell_gpus.len());
        for s in &r.resell_gpus {
            let node = cluster
                .spec
                .nodes
                .iter()
                .position(|n| n.id == s.node_id)
                .ok_or_else(bad)?;
            let mut gpus = 0u64;
            for &g in &s.gpu_indices {
                if g >= 64 {
                    return Err(bad());
                }
                gpus |= 1 << g;
            }
            if gpus == 0 {
                return Err(bad());
            }
            slots.push(Slot {
                node: node as u32,
                gpus,
            });
        }
        Ok(slots)
    }

    /// Resale of a buy order's GPUs: one resale ask per allocation of the order the
    /// caller still holds in the hours asked (and of the GPUs asked), each placed or
    /// refused on its own, all with one `range_id` for CancelAll.
    pub fn resell(
        &mut self,
        ts: i64,
        caller: Caller,
        r: &pb::ResellRequest,
    ) -> Result<pb::SubmitOrdersResponse, Refusal> {
        let nothing = || {
            Refusal::new(
                "INVALID_RESALE",
                format!(
                    "order {} holds no GPUs of yours in those hours to resell",
                    r.order_id
                ),
            )
        };
        let to = if r.to_hour == 0 { i64::MAX } else { r.to_hour };
        let mut asks = Vec::new();
        let range_id = self.sequence + 1;
        let held: Vec<&Allocation> = self
            .engine
            .allocations_of(caller.account)
            .into_iter()
            .filter(|a| {
                a.buyer == caller.account
                    && a.buy_order == r.order_id
                    && !a.slots.is_empty()
                    && r.from_hour <= a.hour
                    && a.hour < to
            })
            .collect();
        // every GPU named must be one the order holds (in some hour asked), as a
        // PlaceOrder resale refuses a GPU its allocation does not hold
        for g in &r.gpus {
            for &i in &g.gpu_indices {
                let holds = i < 64
                    && held.iter().any(|a| {
                        let nodes = &self.engine.clusters()[a.cluster as usize].spec.nodes;
                        a.slots.iter().any(|s| {
                            nodes[s.node as usize].id == g.node_id && s.gpus & (1 << i) != 0
                        })
                    });
                if !holds {
                    return Err(Refusal::new(
                        "INVALID_RESALE",
                        format!(
                            "order {} holds no GPU {i} of node {} to resell in those hours",
                            r.order_id, g.node_id
                        ),
                    ));
                }
            }
        }
        for a in held {
            let cluster = &self.engine.clusters()[a.cluster as usize];
            // the GPUs asked for that this allocation holds
            let mut gpus = Vec::new();
            for s in &a.slots {
                let node = &cluster.spec.nodes[s.node as usize].id;
                let mut mask = s.gpus;
                if !r.gpus.is_empty() {
                    let asked: u64 = r
                        .gpus
                        .iter()
                        .filter(|g| &g.node_id == node)
                        .flat_map(|g| g.gpu_indices.iter())
                        .filter(|&&i| i < 64)
                        .fold(0, |m, &i| m | 1 << i);
                    mask &= asked;
                }
                if mask != 0 {
                    gpus.push(slot_pb(cluster, s.node, mask));
                }
            }
            if gpus.is_empty() {
                continue;
            }
            let k = asks.len();
            asks.push(pb::PlaceOrderRequest {
                client_order_id: if r.client_order_id.is_empty() {
                    String::new()
                } else {
                    format!("{}#{k}", r.client_order_id)
                },
                side: pb::Side::Sell as i32,
                price_micros: r.price_micros,
                time_in_force: r.time_in_force,
                expire_at_micros: r.expire_at_micros,
                resell_trade_id: a.trade_id,
                resell_gpus: if r.gpus.is_empty() { Vec::new() } else { gpus },
                range_id,
                ..Default::default()
            });
        }
        if asks.is_empty() {
            return Err(nothing());
        }
        Ok(self.submit_orders(ts, caller, &pb::SubmitOrdersRequest { orders: asks }))
    }

    /// A linked basket: up to 100 one-hour orders across products, all filled
    /// completely or none, at once (fill-or-kill as a whole). One result per leg, in
    /// order: the legs' orders, all filled, or all cancelled (`fill_or_kill`).
    pub fn place_basket(
        &mut self,
        ts: i64,
        caller: Caller,
        r: &pb::PlaceBasketRequest,
    ) -> Result<pb::SubmitOrdersResponse, Refusal> {
        if r.legs.is_empty() || r.legs.len() > spotex_core::MAX_BASKET_LEGS {
            return Err(spotex_core::Reject::InvalidBasket.into());
        }
        let mut seen: FxHashSet<(&str, i32)> = FxHashSet::default();
        let mut ids: FxHashSet<&str> = FxHashSet::default();
        for leg in &r.legs {
            let fresh = seen.insert((leg.product_id.as_str(), leg.side))
                && (leg.client_order_id.is_empty() || ids.insert(leg.client_order_id.as_str()));
            if !fresh || leg.hours > 1 || leg.window_hours > 0 || leg.min_quantity != 0 {
                return Err(spotex_core::Reject::InvalidBasket.into());
            }
        }
        let mut orders = Vec::with_capacity(r.legs.len());
        let mut pendings = Vec::with_capacity(r.legs.len());
        for leg in &r.legs {
            let mut fok = leg.clone();
            fok.time_in_force = pb::TimeInForce::Fok as i32;
            let (command, pending) = self.prepare(ts, caller, &fok)?;
            let Command::Place(order) = command else {
                return Err(spotex_core::Reject::InvalidBasket.into());
            };
            orders.push(order);
            pendings.push(pending);
        }
        // the legs' records wait in order: each accepted leg takes the next
        let mut first = pendings.remove(0);
        pendings.reverse();
        first.rest = pendings;
        let n = orders.len() as u64;
        let journal = || journaled(caller, Kind::Basket(r.clone()));
        let last = self
            .run(ts, &Command::PlaceBasket(orders), Some(first), journal)?
            .expect("an accepted basket has ids");
        // the engine numbers the legs one after another
        let results = (last + 1 - n..=last)
            .map(|id| pb::OrderResult {
                order: Some(self.orders[&id].to_pb(true)),
                ..Default::default()
            })
            .collect();
        Ok(pb::SubmitOrdersResponse { results })
    }

    pub fn cancel_order(
        &mut self,
        ts: i64,
        caller: Caller,
        r: &pb::CancelOrderRequest,
    ) -> Result<pb::Order, Refusal> {
        self.cancel(ts, caller, r)?;
        Ok(self.orders[&r.order_id].to_pb(true))
    }

    fn cancel(
        &mut self,
        ts: i64,
        caller: Caller,
        r: &pb::CancelOrderRequest,
    ) -> Result<(), Refusal> {
        self.check_owner(caller, r.order_id)?;
        let cmd = Command::Cancel {
            account: caller.account,
            order_id: r.order_id,
        };
        self.run(ts, &cmd, None, || journaled(caller, Kind::Cancel(*r)))
            .map(drop)
    }

    /// Mass cancel: every open order of `caller` (of one product, unless the id is
    /// empty), oldest first. Each cancel is a command of its own in the journal and the
    /// streams, as if sent one by one; nothing else runs between them. Returns the
    /// cancelled orders.
    pub fn cancel_all(
        &mut self,
        ts: i64,
        caller: Caller,
        r: &pb::CancelAllRequest,
    ) -> Result<pb::CancelAllResponse, Refusal> {
        if !r.product_id.is_empty() {
            self.product(&r.product_id)?;
        }
        let open: Vec<u64> = self
            .orders
            .values()
            .filter(|o| o.account == caller.account && o.is_open())
            .filter(|o| r.product_id.is_empty() || o.product == r.product_id)
            .filter(|o| r.range_id == 0 || o.range_id == r.range_id)
            .map(|o| o.order_id)
            .collect();
        let mut orders = Vec::with_capacity(open.len());
        for order_id in open {
            // an open order of the caller's own: the cancel cannot be refused
            if self
                .cancel(ts, caller, &pb::CancelOrderRequest { order_id })
                .is_ok()
            {
                orders.push(self.orders[&order_id].to_pb(true));
            }
        }
        Ok(pb::CancelAllResponse { orders })
    }

    /// A price or quantity of 0 keeps the current one; the quantity is the new remaining.
    pub fn amend_order(
        &mut self,
        ts: i64,
        caller: Caller,
        r: &pb::AmendOrderRequest,
    ) -> Result<pb::Order, Refusal> {
        self.amend(ts, caller, r)?;
        Ok(self.orders[&r.order_id].to_pb(true))
    }

    fn amend(&mut self, ts: i64, caller: Caller, r: &pb::AmendOrderRequest) -> Result<(), Refusal> {
        self.check_owner(caller, r.order_id)?;
        let cmd = Command::Amend {
            account: caller.account,
            order_id: r.order_id,
            price: (r.price_micros != 0).then_some(r.price_micros),
            qty: (r.quantity != 0).then_some(r.quantity),
        };
        self.run(ts, &cmd, None, || journaled(caller, Kind::Amend(*r)))
            .map_err(|mut e| {
                match e.reason {
                    "INVALID_BLOCK" => {
                        e.message = "a block is not amended: cancel it and place another".into()
                    }
                    "PRICE_OFF_TICK" => {
                        let tick = self.orders.get(&r.order_id).and_then(|o| {
                            let p = self.engine.product_handle(&o.product)?;
                            Some(self.engine.products()[p as usize].spec.tick)
                        });
                        if let Some(tick) = tick {
                            e.message += &format!(" (the tick is {})", dollars(tick));
                        }
                    }
                    _ => {}
                }
                e
            })
            .map(drop)
    }

    pub fn get_order(&self, caller: Caller, r: &pb::GetOrderRequest) -> Result<pb::Order, Refusal> {
        let rec = self
            .orders
            .get(&r.order_id)
            .ok_or_else(|| Refusal::new("UNKNOWN_ORDER", "no such order"))?;
        if rec.account != caller.account {
            return Err(Refusal::new(
                "NOT_OWNER",
                "the order belongs to another account",
            ));
        }
        Ok(rec.to_pb(true))
    }

    /// The caller's orders, oldest first.
    /// One page of the caller's orders in memory, oldest first. Scans the records in
    /// memory after the token (open orders and the `keep_ended` most recent ended ones):
    /// older ended orders are the caller's to merge in (the gateway's history).
    pub fn list_orders(
        &self,
        caller: Caller,
        r: &pb::ListOrdersRequest,
    ) -> Result<pb::ListOrdersResponse, Refusal> {
        let after = page_token(&r.page_token)?;
        let size = page_size(r.page_size);
        let mut orders: Vec<pb::Order> = self
            .orders
            .range(after.saturating_add(1)..)
            .map(|(_, o)| o)
            .filter(|o| o.account == caller.account)
            .filter(|o| r.product_id.is_empty() || o.product == r.product_id)
            .filter(|o| !r.open_only || o.is_open())
            .take(size + 1)
            .map(|o| o.to_pb(true))
            .collect();
        let next_page_token = next_token(&mut orders, size, |o| o.order_id);
        Ok(pb::ListOrdersResponse {
            orders,
            next_page_token,
        })
    }

    // ---- views ------------------------------------------------------------------------

    /// One page of the products, in the order they were listed (a token is a position:
    /// products are never removed).
    pub fn list_products(
        &self,
        r: &pb::ListProductsRequest,
    ) -> Result<pb::ListProductsResponse, Refusal> {
        let after = page_token(&r.page_token)? as usize;
        let size = page_size(r.page_size);
        let all = self.engine.products();
        let end = all.len().min(after.saturating_add(size));
        let products = self.products_pb(after, end);
        let next_page_token = if end < all.len() {
            end.to_string()
        } else {
            String::new()
        };
        Ok(pb::ListProductsResponse {
            products,
            next_page_token,
        })
    }

    /// Every product, in the order they were listed (for the service's own use; clients
    /// page through `list_products`).
    pub fn all_products(&self) -> pb::ListProductsResponse {
        pb::ListProductsResponse {
            products: self.products_pb(0, usize::MAX),
            next_page_token: String::new(),
        }
    }

    fn products_pb(&self, from: usize, to: usize) -> Vec<pb::Product> {
        let all = self.engine.products();
        all.get(from.min(all.len())..to.min(all.len()))
            .unwrap_or_default()
            .iter()
            .map(|p| pb::Product {
                product_id: p.spec.id.clone(),
                state: p.state.as_str().to_string(),
                tick_micros: p.spec.tick,
                lot: p.spec.lot,
                open_at_micros: p.spec.open_at,
                close_at_micros: p.spec.close_at,
            })
            .collect()
    }

    /// The aggregated book to `depth` levels a side (0: 20; at most 10,000), with the
    /// market-data sequence it stands at: a subscriber's deltas follow from there.
    pub fn get_book(&self, r: &pb::GetBookRequest) -> Result<pb::GetBookResponse, Refusal> {
        let product = self.product(&r.product_id)?;
        let depth = if r.depth == 0 {
            20
        } else {
            r.depth.min(10_000)
        };
        Ok(pb::GetBookResponse {
            book: Some(self.book(product, depth as usize)),
        })
    }

    fn book(&self, product: ProductHandle, depth: usize) -> pb::Book {
        let levels = |side| {
            self.engine
                .l2(product, side, depth)
                .into_iter()
                .map(|(price_micros, quantity, orders)| pb::Level {
                    price_micros,
                    quantity,
                    orders,
                })
                .collect()
        };
        pb::Book {
            product_id: self.engine.products()[product as usize].spec.id.clone(),
            sequence: self.md_sequence.get(product as usize).copied().unwrap_or(0),
            bids: levels(Side::Buy),
            asks: levels(Side::Sell),
        }
    }

    /// Where a market-data subscription starts: a whole-book snapshot of each product
    /// asked for (every product when none is named), in product-id order.
    pub fn market_snapshots(&self, product_ids: &[String]) -> Result<Vec<pb::MarketData>, Refusal> {
        let mut handles: Vec<ProductHandle> = if product_ids.is_empty() {
            (0..self.engine.products().len() as ProductHandle).collect()
        } else {
            let unknown: Vec<&str> = product_ids
                .iter()
                .filter(|p| self.engine.product_handle(p).is_none())
                .map(String::as_str)
                .collect();
            if !unknown.is_empty() {
                let mut unknown = unknown;
                unknown.sort_unstable();
                unknown.dedup();
                return Err(Refusal::new(
                    "UNKNOWN_PRODUCT",
                    format!("no such product: {}", unknown.join(", ")),
                ));
            }
            product_ids
                .iter()
                .filter_map(|p| self.engine.product_handle(p))
                .collect()
        };
        handles.sort_by(|a, b| {
            let ps = self.engine.products();
            ps[*a as usize].spec.id.cmp(&ps[*b as usize].spec.id)
        });
        handles.dedup();
        Ok(handles
            .into_iter()
            .map(|h| {
                let book = self.book(h, usize::MAX);
                pb::MarketData {
                    product_id: book.product_id.clone(),
                    sequence: book.sequence,
                    payload: Some(pb::market_data::Payload::Snapshot(book)),
                }
            })
            .collect())
    }

    /// The caller's allocations, bought or sold, in trade order.
    pub fn list_allocations(
        &self,
        caller: Caller,
        r: &pb::ListAllocationsRequest,
    ) -> Result<pb::ListAllocationsResponse, Refusal> {
        let after = page_token(&r.page_token)?;
        let size = page_size(r.page_size);
        let mut allocations: Vec<pb::Allocation> = self
            .engine
            .allocations_of(caller.account)
            .into_iter()
            .filter(|a| a.trade_id > after)
            .map(|a| self.allocation_pb(a, caller.account))
            .filter(|a| r.product_id.is_empty() || a.product_id == r.product_id)
            .take(size + 1)
            .collect();
        let next_page_token = next_token(&mut allocations, size, |a| a.trade_id);
        Ok(pb::ListAllocationsResponse {
            allocations,
            next_page_token,
        })
    }

    fn check_owner(&self, caller: Caller, order_id: u64) -> Result<(), Refusal> {
        match self.orders.get(&order_id) {
            Some(rec) if rec.account != caller.account => Err(Refusal::new(
                "NOT_OWNER",
                "the order belongs to another account",
            )),
            _ => Ok(()),
        }
    }

    fn product(&self, id: &str) -> Result<ProductHandle, Refusal> {
        self.engine.product_handle(id).ok_or_else(|| {
            let shown: String = id.chars().take(80).collect();
            Refusal::new(
                spotex_core::Reject::UnknownProduct.code(),
                format!("no such product: {shown:?} (ids read SKU/region/YYYY-MM-DDTHH)"),
            )
        })
    }

    // ---- applying a command ----------------------------------------------------------

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

    /// Journals the command just sequenced (built only when it is journaled).
    fn journal_entry(&mut self, ts: i64, command: impl FnOnce() -> store::Command) {
        if !self.replaying {
            self.journal.push(JournalEntry {
                seq: self.sequence,
                ts,
                command: command().encode_to_vec(),
            });
        }
    }

    fn journal_time_step(&mut self, ts: i64) {
        self.journal_entry(ts, time_step);
    }

    // ---- the journal and snapshots ---------------------------------------------------

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
            ),
            Some(Kind::SetState(s)) => self.set_state(ts, &s.what, &s.product_id),
            Some(Kind::IdBase(b)) => self.set_id_base(ts, b.base),
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
            state_hash: self.engine.state_hash(),
            ended: self.ended.iter().copied().collect(),
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
        if engine.state_hash() != s.state_hash {
            return Err(StoreError(
                "snapshot: state hash does not match its record".into(),
            ));
        }
        let mut ex = Exchange::new(max_open_orders);
        ex.ended = s.ended.iter().copied().collect();
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

    /// Turns the engine's events into records, executions and market-data deltas.
    fn absorb(&mut self, events: &[Event], ts: i64, mut pending: Option<Pending>) -> Option<u64> {
        let mut accepted = None;
        // the first hour each block traded in: an arriving ask may fill several resting
        // blocks in one command
        let mut block_hour: FxHashMap<u64, ProductHandle> = FxHashMap::default();
        // the allocations of each block that filled here, by order id
        let mut blocks: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        // levels the events may have changed, in the order first touched
        let mut touched: Vec<(ProductHandle, Side, i64)> = Vec::new();
        let mut seen: FxHashSet<(ProductHandle, Side, i64)> = FxHashSet::default();
        let mut touch = |key: (ProductHandle, Side, i64)| {
            if seen.insert(key) {
                touched.push(key);
            }
        };
        for e in events {
            match e {
                Event::Chosen {
                    alternative,
                    order_id,
                    block,
                } => match pending.as_mut() {
                    Some(p) if !p.alternatives.is_empty() => {
                        let (record, product) = p.alternatives[*alternative as usize].clone();
                        p.record = record;
                        p.product = product;
                    }
                    _ => {
                        // a resting group fills from the side book: its order becomes the
                        // alternative that fills
                        let product = self.engine.products()[block.product as usize]
                            .spec
                            .id
                            .clone();
                        let rec = self.orders.get_mut(order_id).expect("a record per order");
                        rec.product = product;
                        rec.price = block.price;
                        rec.quantity = block.qty;
                        rec.remaining = block.qty;
                        rec.gang = block.gang;
                        rec.hours = block.hours;
                        rec.window = block.window;
                    }
                },
                Event::Accepted { order_id, .. } => {
                    let Pending {
                        mut record,
                        product,
                        mut rest,
                        ..
                    } = pending.take().expect("an accepted order was pending");
                    if let Some(mut next) = rest.pop() {
                        next.rest = rest;
                        pending = Some(next);
                    }
                    record.order_id = *order_id;
                    touch((product, record.side, record.price));
                    *self.open_orders.entry(record.account).or_default() += 1;
                    if !record.client_order_id.is_empty() {
                        self.by_client_id
                            .insert((record.account, record.client_order_id.clone()), *order_id);
                    }
                    let account = record.account;
                    self.orders.insert(*order_id, record);
                    self.execution(account, "accepted", Some(*order_id), None, None);
                    accepted = Some(*order_id);
                }
                Event::Trade {
                    trade_id,
                    product,
                    price,
                    qty,
                    aggressor,
                    maker_order,
                    taker_order,
                    ..
                } => {
                    let maker = &self.orders[maker_order];
                    touch((*product, maker.side, maker.price));
                    // a block (always the taker: it takes asks, on entry or from the side
                    // book) names each fill's hour
                    let taker = &self.orders[taker_order];
                    let product_id = if taker.hours > 1 || taker.window > 0 {
                        self.engine.products()[*product as usize].spec.id.clone()
                    } else {
                        String::new()
                    };
                    for (oid, is_maker) in [(*maker_order, true), (*taker_order, false)] {
                        let rec = self.orders.get_mut(&oid).expect("a record per order");
                        let block = !is_maker && !product_id.is_empty();
                        let fill = FillRecord {
                            trade_id: *trade_id,
                            price: *price,
                            qty: *qty,
                            maker: is_maker,
                            ts,
                            product: if block {
                                product_id.clone()
                            } else {
                                String::new()
                            },
                            fee: 0,
                        };
                        rec.fills.push(fill.clone());
                        // a block's legs come hour by hour: its first hour counts the GPUs
                        let first = *block_hour.entry(oid).or_insert(*product);
                        if block && first != *product {
                            // a later hour of a block: the same GPUs again, counted once
                            let account = rec.account;
                            self.execution(account, "trade", Some(oid), Some(fill), None);
                            continue;
                        }
                        rec.filled += qty;
                        rec.remaining -= qty;
                        rec.state = if rec.remaining == 0 {
                            OrderState::Filled
                        } else {
                            OrderState::PartiallyFilled
                        };
                        let account = rec.account;
                        if rec.remaining == 0 {
                            self.close_one(account, oid);
                        }
                        self.execution(account, "trade", Some(oid), Some(fill), None);
                    }
                    if !self.replaying {
                        let t = self.traded.entry(*product).or_default();
                        t.trades += 1;
                        t.gpu_hours += *qty;
                        t.notional_micros += i128::from(*price) * i128::from(*qty);
                    }
                    let trade = pb::Trade {
                        trade_id: *trade_id,
                        price_micros: *price,
                        quantity: *qty,
                        aggressor: side_to_pb(*aggressor) as i32,
                        time_micros: ts,
                    };
                    self.market(*product, pb::market_data::Payload::Trade(trade));
                }
                Event::Allocated { allocation } => {
                    let a = self.engine.allocations()[*allocation as usize].clone();
                    let rec = &self.orders[&a.buy_order];
                    if rec.hours > 1 || rec.window > 0 {
                        blocks.entry(a.buy_order).or_default().push(*allocation);
                    }
                    if a.fee != 0 {
                        // a resale's fee, on its seller's fill
                        let rec = self.orders.get_mut(&a.sell_order).expect("a record");
                        if let Some(f) = rec.fills.iter_mut().rfind(|f| f.trade_id == a.trade_id) {
                            f.fee = a.fee;
                        }
                    }
                    self.execution(a.buyer, "allocated", Some(a.buy_order), None, Some(&a));
                    if a.seller != a.buyer {
                        self.execution(a.seller, "allocated", Some(a.sell_order), None, Some(&a));
                    }
                    // a resale: the cluster's owner provisions the GPUs for their new holder
                    let owner = self.engine.clusters()[a.cluster as usize].seller;
                    if owner != a.buyer && owner != a.seller {
                        self.execution(owner, "allocated", None, None, Some(&a));
                    }
                }
                Event::Cancelled {
                    order_id,
                    product,
                    reason,
                    ..
                } => {
                    let side = self.end(*order_id, OrderState::Cancelled, reason.as_str());
                    touch((*product, side.0, side.1));
                }
                Event::Expired {
                    order_id,
                    product,
                    reason,
                    ..
                } => {
                    let side = self.end(*order_id, OrderState::Expired, reason.as_str());
                    touch((*product, side.0, side.1));
                }
                Event::Amended {
                    order_id,
                    product,
                    price,
                    qty,
                    ..
                } => {
                    let rec = self.orders.get_mut(order_id).expect("a record per order");
                    touch((*product, rec.side, rec.price));
                    touch((*product, rec.side, *price));
                    rec.price = *price;
                    rec.remaining = *qty;
                    rec.quantity = rec.filled + qty;
                    let account = rec.account;
                    self.execution(account, "amended", Some(*order_id), None, None);
                }
                Event::ProductState { product, state } => {
                    let state = state.as_str().to_string();
                    self.market(*product, pb::market_data::Payload::State(state));
                }
                Event::Placed {
                    order_id,
                    level,
                    domain,
                } => {
                    let rec = self.orders.get_mut(order_id).expect("a record per order");
                    rec.placed = Some((*level, domain.clone()));
                }
                Event::ProductCreated { .. }
                | Event::CapacityRegistered { .. }
                | Event::CapacityWithdrawn { .. }
                | Event::Rejected { .. } => {}
            }
        }
        // each block filled in this command, in one record after its trades
        for (order_id, allocations) in blocks {
            let block = self.block_allocation(order_id, &allocations);
            let account = self.orders[&order_id].account;
            self.send_execution(
                account,
                "block_allocated",
                Some(order_id),
                None,
                None,
                Some(block),
            );
        }
        for (product, side, price) in touched {
            let level = self.engine.level(product, side, price);
            let known = self.levels.entry((product, side)).or_default();
            if known.get(&price).copied().unwrap_or((0, 0)) != level {
                if level.0 != 0 {
                    known.insert(price, level);
                } else {
                    known.remove(&price);
                }
                let update = pb::LevelUpdate {
                    side: side_to_pb(side) as i32,
                    price_micros: price,
                    quantity: level.0,
                    orders: level.1,
                };
                self.market(product, pb::market_data::Payload::Level(update));
            }
        }
        accepted
    }

    /// An order's end (cancelled or expired); returns its side and price, whose level
    /// changed.
    fn end(&mut self, order_id: u64, state: OrderState, reason: &'static str) -> (Side, i64) {
        let rec = self.orders.get_mut(&order_id).expect("a record per order");
        rec.remaining = 0;
        rec.state = state;
        rec.reason = reason.to_string();
        let (account, level) = (rec.account, (rec.side, rec.price));
        self.close_one(account, order_id);
        let kind = match state {
            OrderState::Expired => "expired",
            _ => "cancelled",
        };
        self.execution(account, kind, Some(order_id), None, None);
        level
    }

    /// An order ended: one open order fewer for its account, one more ended record.
    fn close_one(&mut self, account: u64, order_id: u64) {
        self.ended.push_back(order_id);
        if let Some(n) = self.open_orders.get_mut(&account) {
            *n = n.saturating_sub(1);
        }
    }

    fn market(&mut self, product: ProductHandle, payload: pb::market_data::Payload) {
        let i = product as usize;
        if self.md_sequence.len() <= i {
            self.md_sequence.resize(i + 1, 0);
        }
        self.md_sequence[i] += 1;
        if self.quiet {
            return; // recovery publishes nothing: only the sequence moves
        }
        self.round.market.push(pb::MarketData {
            product_id: self.engine.products()[i].spec.id.clone(),
            sequence: self.md_sequence[i],
            payload: Some(payload),
        });
    }

    /// One execution on `account`'s stream; the order as it stands at this point.
    fn execution(
        &mut self,
        account: u64,
        kind: &str,
        order_id: Option<u64>,
        fill: Option<FillRecord>,
        allocation: Option<&Allocation>,
    ) {
        let allocation = match allocation {
            Some(a) if !self.quiet => Some(self.allocation_pb(a, account)),
            _ => None,
        };
        self.send_execution(account, kind, order_id, fill, allocation, None);
    }

    fn send_execution(
        &mut self,
        account: u64,
        kind: &str,
        order_id: Option<u64>,
        fill: Option<FillRecord>,
        allocation: Option<pb::Allocation>,
        block: Option<pb::BlockAllocation>,
    ) {
        let n = self.exec_sequence.entry(account).or_default();
        *n += 1;
        let sequence = *n;
        if self.quiet {
            return;
        }
        let order = order_id
            .and_then(|id| self.orders.get(&id))
            .map(|r| r.to_pb(false));
        self.round.executions.push((
            account,
            pb::Execution {
                sequence,
                kind: kind.to_string(),
                order,
                fill: fill.as_ref().map(FillRecord::to_pb),
                allocation,
                block,
            },
        ));
    }

    /// A filled block's allocations (one per hour and ask taken) as one record: the
    /// first hour's slots, which every hour shares.
    fn block_allocation(&self, order_id: u64, allocations: &[u32]) -> pb::BlockAllocation {
        let all = self.engine.allocations();
        let first = &all[allocations[0] as usize];
        let placed = self.orders[&order_id].placed.as_ref();
        let cluster = &self.engine.clusters()[first.cluster as usize];
        let mut hours: Vec<i64> = allocations.iter().map(|&i| all[i as usize].hour).collect();
        hours.dedup();
        let mut slots: BTreeMap<u32, u64> = BTreeMap::new();
        for &i in allocations {
            let a = &all[i as usize];
            if a.hour == first.hour {
                for s in &a.slots {
                    *slots.entry(s.node).or_default() |= s.gpus;
                }
            }
        }
        pb::BlockAllocation {
            order_id,
            cluster_id: cluster.spec.id.clone(),
            first_hour: first.hour,
            hours: hours.len() as u32,
            slots: slots
                .into_iter()
                .map(|(node, gpus)| slot_pb(cluster, node, gpus))
                .collect(),
            cost_micros: allocations
                .iter()
                .map(|&i| all[i as usize].price * all[i as usize].qty())
                .sum(),
            trade_ids: allocations
                .iter()
                .map(|&i| all[i as usize].trade_id)
                .collect(),
            placed_level: locality_to_pb(placed.map(|p| p.0)) as i32,
            placed_domain: placed.map_or(String::new(), |p| p.1.clone()),
            provider_account: cluster.seller,
        }
    }

    /// An allocation as `account` sees it (buyer or seller).
    pub fn allocation_pb(&self, a: &Allocation, account: u64) -> pb::Allocation {
        let cluster = &self.engine.clusters()[a.cluster as usize];
        pb::Allocation {
            trade_id: a.trade_id,
            product_id: self.engine.products()[a.product as usize].spec.id.clone(),
            cluster_id: cluster.spec.id.clone(),
            hour: a.hour,
            buy_order_id: a.buy_order,
            sell_order_id: a.sell_order,
            price_micros: a.price,
            quantity: a.qty(),
            slots: a
                .slots
                .iter()
                .map(|s| slot_pb(cluster, s.node, s.gpus))
                .collect(),
            as_buyer: a.buyer == account,
            buyer_account: a.buyer,
            parent_trade_id: a.parent.unwrap_or(0),
            fee_micros: a.fee,
            seller_account: a.seller,
            as_provider: cluster.seller == account,
            provider_account: cluster.seller,
        }
    }
}
