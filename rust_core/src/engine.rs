//! The engine: owns every product's book, every cluster's capacity and every allocation,
//! applies commands one at a time and emits their events in a deterministic order.
//!
//! Matching rule: price-time priority, trades at the resting order's price. A bid's gang
//! constraint limits what it takes from each ask to what the ask's cluster can place in
//! whole gangs; an ask that can place nothing is passed over and keeps its priority.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;
use sha2::{Digest, Sha256};

use crate::book::{Book, RestingOrder, Slab, NIL};
use crate::capacity::{
    Cluster, ClusterHandle, ClusterHour, ClusterSpec, Level, ResalePool, Slot, MAX_GPUS_PER_NODE,
};
use crate::codec::{self, CodecError, Dec, Enc};
use crate::command::*;
use crate::product::{Product, ProductSpec};
use crate::reject::Reject;
use crate::types::*;

mod side_book;
pub use side_book::{RestingBlock, RETRY_TOP, RETRY_TURN};

/// One hour's asks a block may take, by cluster-hour, each list in price-time order:
/// `(slab index, price, quantity)`.
type AsksByClusterHour = FxHashMap<u32, Vec<(u32, Price, Qty)>>;
/// A cluster a block could fill from: its cost, index, cluster-hours and asks per hour.
type Candidate = (i128, usize, Vec<u32>, Vec<Vec<(u32, Price, Qty)>>);

/// The most consecutive hours one block bid may cover (a week).
pub const MAX_BLOCK_HOURS: u32 = 168;
/// The most hours a block's window may span (two weeks).
pub const MAX_WINDOW_HOURS: u32 = 336;
/// The most alternatives of one one-of group.
pub const MAX_ALTERNATIVES: usize = 16;
/// A resale ask's `cluster_hour` is this bit and the index of its pool (see `ResalePool`).
const POOL: u32 = 1 << 31;

/// The pool a resale ask draws on, when `ch` (an ask's `cluster_hour`) names one.
fn pool_of(ch: u32) -> Option<usize> {
    (ch != NIL && ch & POOL != 0).then_some((ch & !POOL) as usize)
}

/// The most a resale's fee may be, in basis points (all of the trade's value).
pub const MAX_FEE_BPS: u32 = 10_000;

/// The most orders of one linked basket.
pub const MAX_BASKET_LEGS: usize = 100;

/// How a block would fill: its cost, its cluster-hours (one per hour), per hour the asks
/// it takes as `(slab index, price, quantity)`, and its GPUs as `(node, mask)`.
struct BlockPlan {
    cost: i128,
    cluster_hours: Vec<u32>,
    legs: Vec<Vec<(u32, Price, Qty)>>,
    slots: Vec<(u32, u64)>,
    /// With placement terms: the level it got and the domain's name.
    placed: Option<(Level, String)>,
}

/// The incoming side of a match: a new order, or an amended one re-entering the book.
struct Taker {
    id: OrderId,
    account: AccountId,
    product: ProductHandle,
    side: Side,
    price: Price,
    remaining: Qty,
    filled: Qty,
    tif: TimeInForce,
    post_only: bool,
    stp: SelfTradePrevention,
    gang: u32,
    cluster: Option<ClusterHandle>,
    cluster_hour: u32,
    /// An iceberg ask's clip (0: none).
    clip: Qty,
}

/// A copy of what an ask draws on, for a fill-or-kill dry run.
enum Stock {
    Hour(ClusterHour),
    Pool(ResalePool),
}

impl Stock {
    fn placeable(&self, gang: u32, max: Qty) -> Qty {
        match self {
            Stock::Hour(c) => c.placeable(gang, max),
            Stock::Pool(p) => p.placeable(gang, max),
        }
    }

    fn allocate(&mut self, gang: u32, qty: Qty) {
        match self {
            Stock::Hour(c) => drop(c.allocate(gang, qty)),
            Stock::Pool(p) => drop(p.allocate(gang, qty)),
        }
    }
}

/// Sold / offered / idle GPU-hours of one cluster for one hour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utilisation {
    pub capacity: Qty,
    pub sold: Qty,
    pub offered: Qty,
    pub idle: Qty,
    pub withdrawn: Qty,
}

#[derive(Default, Clone)]
pub struct Engine {
    now: Timestamp,
    products: Vec<Product>,
    books: Vec<Book>,
    product_index: FxHashMap<String, ProductHandle>,
    clusters: Vec<Cluster>,
    /// A cluster's id is its seller's name for it: the same id under two sellers is two
    /// clusters, so the index is keyed by (seller, id).
    cluster_index: FxHashMap<(AccountId, String), ClusterHandle>,
    cluster_hours: Vec<ClusterHour>,
    cluster_hour_index: FxHashMap<(ClusterHandle, i64), u32>,
    slab: Slab,
    order_index: FxHashMap<OrderId, u32>,
    next_order_id: OrderId,
    next_trade_id: TradeId,
    /// Good-till-time expiries, lazily pruned: an entry whose order is gone is skipped.
    expiries: BinaryHeap<Reverse<(Timestamp, OrderId)>>,
    closures: BinaryHeap<Reverse<(Timestamp, ProductHandle)>>,
    allocations: Vec<Allocation>,
    allocations_by_account: FxHashMap<AccountId, Vec<u32>>,
    /// The GPUs resale asks offer, and per allocation (index) the pools drawing on it.
    pools: Vec<ResalePool>,
    offers: FxHashMap<u32, Vec<u32>>,
    /// Block bids waiting whole, beside the hourly books.
    side: side_book::SideBook,
}

/// Bumped whenever the snapshot layout changes.
pub const SNAPSHOT_VERSION: u32 = 3;

fn crosses(taker: Side, limit: Price, resting: Price) -> bool {
    match taker {
        Side::Buy => resting <= limit,
        Side::Sell => resting >= limit,
    }
}

impl Engine {
    pub fn new() -> Engine {
        Engine {
            next_order_id: 1,
            next_trade_id: 1,
            ..Default::default()
        }
    }

    /// The next order id and trade id to be given.
    pub fn next_ids(&self) -> (OrderId, TradeId) {
        (self.next_order_id, self.next_trade_id)
    }

    fn set_id_base(&mut self, base: u64) -> Result<(), Reject> {
        if self.next_order_id != 1 || self.next_trade_id != 1 || base == 0 {
            return Err(Reject::IdsInUse);
        }
        self.next_order_id = base;
        self.next_trade_id = base;
        Ok(())
    }

    /// The engine's time: the largest timestamp it has been given.
    pub fn now(&self) -> Timestamp {
        self.now
    }

    /// Applies one command stamped `ts`. Time first moves to `ts` (never backwards),
    /// expiring what is due; then the command runs. Events go to `out`; a refused command
    /// emits one `Rejected` event, returns the reason and changes nothing.
    pub fn apply(
        &mut self,
        ts: Timestamp,
        cmd: &Command,
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        self.advance(ts, out);
        let result = match cmd {
            Command::CreateProduct(spec) => self.create_product(spec, out),
            Command::Halt { product } => self.set_state(*product, ProductState::Halted, out),
            Command::Resume { product } => self.set_state(*product, ProductState::Open, out),
            Command::Close { product } => {
                let p = self.product(*product)?;
                if p.state == ProductState::Closed {
                    Err(Reject::ProductClosed)
                } else {
                    self.close(*product, out);
                    Ok(())
                }
            }
            Command::RegisterCapacity { account, spec } => {
                self.register_capacity(*account, spec, out)
            }
            Command::WithdrawCapacity {
                account,
                cluster,
                from_hour,
                to_hour,
                nodes,
            } => self.withdraw_capacity(*account, *cluster, *from_hour, *to_hour, nodes, out),
            Command::Place(order) => self.place(order, out),
            Command::PlaceBlock(block) => self.place_block(block, out),
            Command::PlaceIceberg { order, clip } => self.place_iceberg(order, *clip, out),
            Command::PlaceOneOf(alts) => self.place_one_of(alts, out),
            Command::PlaceBasket(legs) => self.place_basket(legs, out),
            Command::PlaceMinFill { order, min_qty } => self.place_min_fill(order, *min_qty, out),
            Command::PlaceResale {
                order,
                parent,
                slots,
                fee_bps,
            } => self.place_resale(order, *parent, slots, *fee_bps, out),
            Command::Cancel { account, order_id } => self.cancel(*account, *order_id, out),
            Command::Amend {
                account,
                order_id,
                price,
                qty,
            } => self.amend(*account, *order_id, *price, *qty, out),
            Command::AdvanceTime => Ok(()),
            Command::IdBase { base } => self.set_id_base(*base),
        };
        if let Err(reason) = result {
            out.push(Event::Rejected { reason });
        }
        result
    }

    // ---- time ----------------------------------------------------------------------

    /// Moves time to `ts` and processes what fell due, in time order; at equal times,
    /// good-till-time expiries before gate closures.
    fn advance(&mut self, ts: Timestamp, out: &mut Vec<Event>) {
        if ts <= self.now {
            return;
        }
        self.now = ts;
        loop {
            let expiry = self.expiries.peek().map(|r| r.0).filter(|(t, _)| *t <= ts);
            let closure = self.closures.peek().map(|r| r.0).filter(|(t, _)| *t <= ts);
            match (expiry, closure) {
                (Some((te, id)), c) if c.is_none_or(|(tc, _)| te <= tc) => {
                    self.expiries.pop();
                    self.expire_block(id, te, out);
                    if let Some(&i) = self.order_index.get(&id) {
                        if self.slab.get(i).tif == TimeInForce::GoodTillTime(te) {
                            self.remove_resting(i, out, |o| Event::Expired {
                                order_id: o.id,
                                account: o.account,
                                product: o.product,
                                qty: o.open_qty(),
                                reason: ExpireReason::GoodTillTime,
                            });
                        }
                    }
                }
                (_, Some((_, p))) => {
                    self.closures.pop();
                    if self.products[p as usize].state != ProductState::Closed {
                        self.close(p, out);
                    }
                }
                _ => break,
            }
        }
    }

    // ---- products ------------------------------------------------------------------

    fn product(&self, h: ProductHandle) -> Result<&Product, Reject> {
        self.products.get(h as usize).ok_or(Reject::UnknownProduct)
    }

    pub fn product_handle(&self, id: &str) -> Option<ProductHandle> {
        self.product_index.get(id).copied()
    }

    pub fn products(&self) -> &[Product] {
        &self.products
    }

    fn create_product(&mut self, spec: &ProductSpec, out: &mut Vec<Event>) -> Result<(), Reject> {
        let product = Product::new(spec.clone())?;
        if self.product_index.contains_key(&spec.id) {
            return Err(Reject::DuplicateProduct);
        }
        if spec.close_at <= self.now {
            return Err(Reject::InvalidSchedule);
        }
        let h = self.products.len() as ProductHandle;
        self.product_index.insert(spec.id.clone(), h);
        self.closures.push(Reverse((spec.close_at, h)));
        self.products.push(product);
        self.books.push(Book::default());
        self.side.add_product();
        out.push(Event::ProductCreated { product: h });
        Ok(())
    }

    fn set_state(
        &mut self,
        h: ProductHandle,
        state: ProductState,
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        let p = self.product(h)?;
        if p.state == ProductState::Closed {
            return Err(Reject::ProductClosed);
        }
        if p.state != state {
            self.products[h as usize].state = state;
            out.push(Event::ProductState { product: h, state });
        }
        Ok(())
    }

    /// Gate closure: every resting order expires, in order-id order, then every resting
    /// block spanning the product.
    fn close(&mut self, h: ProductHandle, out: &mut Vec<Event>) {
        self.products[h as usize].state = ProductState::Closed;
        out.push(Event::ProductState {
            product: h,
            state: ProductState::Closed,
        });
        let book = &self.books[h as usize];
        let mut slots = book.orders(&self.slab, Side::Buy);
        slots.extend(book.orders(&self.slab, Side::Sell));
        slots.sort_by_key(|&i| self.slab.get(i).id);
        for i in slots {
            self.remove_resting(i, out, |o| Event::Expired {
                order_id: o.id,
                account: o.account,
                product: o.product,
                qty: o.open_qty(),
                reason: ExpireReason::GateClosure,
            });
        }
        self.close_blocks(h, out);
    }

    // ---- capacity ------------------------------------------------------------------

    /// The cluster `seller` registered as `id` (a cluster id is scoped to its seller).
    pub fn cluster_handle(&self, seller: AccountId, id: &str) -> Option<ClusterHandle> {
        self.cluster_index.get(&(seller, id.to_string())).copied()
    }

    /// Every cluster registered as `id`, by any seller, in registration order (tools that
    /// name a cluster without its seller; on a venue where ids are unique, at most one).
    pub fn clusters_named<'a>(&'a self, id: &'a str) -> impl Iterator<Item = ClusterHandle> + 'a {
        self.clusters
            .iter()
            .enumerate()
            .filter(move |(_, c)| c.spec.id == id)
            .map(|(h, _)| h as ClusterHandle)
    }

    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }

    fn register_capacity(
        &mut self,
        account: AccountId,
        spec: &ClusterSpec,
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        let cluster = Cluster::new(account, spec.clone())?;
        let key = (account, spec.id.clone());
        if self.cluster_index.contains_key(&key) {
            return Err(Reject::DuplicateCluster);
        }
        let h = self.clusters.len() as ClusterHandle;
        self.cluster_index.insert(key, h);
        self.clusters.push(cluster);
        out.push(Event::CapacityRegistered {
            cluster: h,
            account,
        });
        Ok(())
    }

    fn withdraw_capacity(
        &mut self,
        account: AccountId,
        cluster: ClusterHandle,
        from_hour: i64,
        to_hour: i64,
        nodes: &[String],
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        let c = self
            .clusters
            .get(cluster as usize)
            .filter(|c| c.seller == account)
            .ok_or(Reject::UnknownCluster)?;
        if from_hour >= to_hour {
            return Err(Reject::InvalidCapacity);
        }
        let node_ix: Vec<u32> = if nodes.is_empty() {
            (0..c.spec.nodes.len() as u32).collect()
        } else {
            let mut ix = Vec::with_capacity(nodes.len());
            for n in nodes {
                let i = c
                    .spec
                    .nodes
                    .iter()
                    .position(|s| &s.id == n)
                    .ok_or(Reject::InvalidCapacity)?;
                ix.push(i as u32);
            }
            ix.sort_unstable();
            ix.dedup();
            ix
        };
        let from = from_hour.max(c.spec.from_hour);
        let to = to_hour.min(c.spec.to_hour);
        // Check every hour before touching any, so a refusal changes nothing.
        for hour in from..to {
            if let Some(&i) = self.cluster_hour_index.get(&(cluster, hour)) {
                let ch = &self.cluster_hours[i as usize];
                if ch.withdrawal_leaves(&node_ix) < ch.offered {
                    return Err(Reject::InsufficientCapacity);
                }
            }
        }
        let mut gpu_hours = 0;
        for hour in from..to {
            let i = self.cluster_hour(cluster, hour);
            let ch = &mut self.cluster_hours[i as usize];
            let before = ch.free_total;
            ch.withdraw(&node_ix);
            gpu_hours += before - ch.free_total;
        }
        out.push(Event::CapacityWithdrawn {
            cluster,
            account,
            gpu_hours,
        });
        Ok(())
    }

    /// Index of the cluster-hour, created on first use with every GPU free.
    fn cluster_hour(&mut self, cluster: ClusterHandle, hour: i64) -> u32 {
        if let Some(&i) = self.cluster_hour_index.get(&(cluster, hour)) {
            return i;
        }
        let i = self.cluster_hours.len() as u32;
        self.cluster_hours.push(ClusterHour::new(
            cluster,
            hour,
            &self.clusters[cluster as usize],
        ));
        self.cluster_hour_index.insert((cluster, hour), i);
        i
    }

    fn unreserved(&self, cluster: ClusterHandle, hour: i64) -> Qty {
        match self.cluster_hour_index.get(&(cluster, hour)) {
            Some(&i) => self.cluster_hours[i as usize].unreserved(),
            None => self.clusters[cluster as usize].total_gpus,
        }
    }

    pub fn utilisation(&self, cluster: ClusterHandle, hour: i64) -> Option<Utilisation> {
        let c = self.clusters.get(cluster as usize)?;
        if !c.covers(hour) {
            return None;
        }
        Some(match self.cluster_hour_index.get(&(cluster, hour)) {
            None => Utilisation {
                capacity: c.total_gpus,
                sold: 0,
                offered: 0,
                idle: c.total_gpus,
                withdrawn: 0,
            },
            Some(&i) => {
                let ch = &self.cluster_hours[i as usize];
                let sold: Qty = ch.sold.iter().map(|m| m.count_ones() as Qty).sum();
                Utilisation {
                    capacity: c.total_gpus,
                    sold,
                    offered: ch.offered,
                    idle: ch.free_total - ch.offered,
                    withdrawn: c.total_gpus - sold - ch.free_total,
                }
            }
        })
    }

    // ---- orders --------------------------------------------------------------------

    fn check_price(&self, p: &Product, price: Price) -> Result<(), Reject> {
        if price <= 0 {
            Err(Reject::NonPositivePrice)
        } else if price > MAX_PRICE {
            Err(Reject::PriceTooHigh)
        } else if price % p.spec.tick != 0 {
            Err(Reject::PriceOffTick)
        } else {
            Ok(())
        }
    }

    fn check_qty(&self, p: &Product, qty: Qty, gang: u32) -> Result<(), Reject> {
        if qty <= 0 {
            Err(Reject::NonPositiveQuantity)
        } else if qty > MAX_QTY {
            Err(Reject::QuantityTooLarge)
        } else if p.spec.lot != 1 && qty % p.spec.lot != 0 {
            Err(Reject::QuantityOffLot)
        } else if qty & (gang as Qty - 1) != 0 {
            // gangs are powers of two (checked before)
            Err(Reject::QuantityOffGang)
        } else {
            Ok(())
        }
    }

    fn would_cross(&self, product: ProductHandle, side: Side, price: Price) -> bool {
        let book = &self.books[product as usize];
        match side {
            Side::Buy => book.best_ask().is_some_and(|a| a <= price),
            Side::Sell => book.best_bid().is_some_and(|b| b >= price),
        }
    }

    /// Validates a new order completely before anything changes.
    fn validate(&self, o: &NewOrder) -> Result<(), Reject> {
        self.validate_as(o, false)
    }

    /// As `validate`; a resale ask (`resale`) offers GPUs already sold, so neither the
    /// cluster's owner nor its unsold capacity is checked (`place_resale` checks its own).
    fn validate_as(&self, o: &NewOrder, resale: bool) -> Result<(), Reject> {
        let p = self.product(o.product)?;
        match p.state {
            ProductState::Closed => return Err(Reject::ProductClosed),
            ProductState::Halted => return Err(Reject::ProductHalted),
            ProductState::Open if self.now < p.spec.open_at => return Err(Reject::ProductNotOpen),
            ProductState::Open => {}
        }
        self.check_price(p, o.price)?;
        if !o.gang.is_power_of_two()
            || o.gang > MAX_GPUS_PER_NODE
            || (o.side == Side::Sell && o.gang != 1)
        {
            return Err(Reject::InvalidGang);
        }
        self.check_qty(p, o.qty, o.gang)?;
        let tif_ok = match o.order_type {
            OrderType::Market => !o.tif.rests() && !o.post_only,
            OrderType::Limit => !o.post_only || o.tif.rests(),
        };
        if !tif_ok {
            return Err(Reject::InvalidTimeInForce);
        }
        if let TimeInForce::GoodTillTime(t) = o.tif {
            if t <= self.now {
                return Err(Reject::InvalidExpiry);
            }
        }
        match (o.side, o.cluster) {
            (Side::Buy, Some(_)) => return Err(Reject::ClusterNotAllowed),
            (Side::Buy, None) => {}
            (Side::Sell, None) => return Err(Reject::ClusterRequired),
            (Side::Sell, Some(_)) if resale => {}
            (Side::Sell, Some(c)) => {
                let cluster = self
                    .clusters
                    .get(c as usize)
                    .filter(|c| c.seller == o.account)
                    .ok_or(Reject::UnknownCluster)?;
                if cluster.spec.sku != p.sku || cluster.spec.region != p.region {
                    return Err(Reject::ClusterMismatch);
                }
                if !cluster.covers(p.hour) {
                    return Err(Reject::OutsideAvailability);
                }
                if self.unreserved(c, p.hour) < o.qty {
                    return Err(Reject::InsufficientCapacity);
                }
            }
        }
        if o.post_only && self.would_cross(o.product, o.side, o.price) {
            return Err(Reject::PostOnlyWouldCross);
        }
        Ok(())
    }

    fn place(&mut self, o: &NewOrder, out: &mut Vec<Event>) -> Result<(), Reject> {
        self.validate(o)?;
        self.place_clipped(o, 0, out)
    }

    /// An iceberg ask: it trades on entry like any ask; what rests shows at most `clip`.
    fn place_iceberg(
        &mut self,
        o: &NewOrder,
        clip: Qty,
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        self.validate(o)?;
        let lot = self.products[o.product as usize].spec.lot;
        if o.side != Side::Sell || !o.tif.rests() || clip <= 0 || clip > o.qty || clip % lot != 0 {
            return Err(Reject::InvalidDisplayQuantity);
        }
        self.place_clipped(o, clip, out)
    }

    /// Places a validated order, an iceberg showing `clip` when it rests (0: all).
    fn place_clipped(
        &mut self,
        o: &NewOrder,
        clip: Qty,
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        let cluster_hour = match o.cluster {
            Some(c) => self.cluster_hour(c, self.products[o.product as usize].hour),
            None => NIL,
        };
        self.place_at(o, clip, cluster_hour, out)
    }

    /// Places a validated order whose GPUs (an ask's) come from `cluster_hour`.
    fn place_at(
        &mut self,
        o: &NewOrder,
        clip: Qty,
        cluster_hour: u32,
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        let id = self.next_order_id;
        self.next_order_id += 1;
        out.push(Event::Accepted {
            order_id: id,
            account: o.account,
            product: o.product,
            side: o.side,
            price: o.price,
            qty: o.qty,
        });
        let mut taker = Taker {
            id,
            account: o.account,
            product: o.product,
            side: o.side,
            price: o.price,
            remaining: o.qty,
            filled: 0,
            tif: o.tif,
            post_only: o.post_only,
            stp: o.stp,
            gang: o.gang,
            cluster: o.cluster,
            cluster_hour,
            clip,
        };
        if o.tif == TimeInForce::FillOrKill && !self.fills_completely(&taker) {
            out.push(Event::Cancelled {
                order_id: id,
                account: o.account,
                product: o.product,
                qty: o.qty,
                reason: CancelReason::FillOrKill,
            });
            return Ok(());
        }
        self.match_and_rest(&mut taker, out);
        Ok(())
    }

    /// A block bid: the same GPUs in every hour of the block, all or none, now.
    ///
    /// Each cluster of the SKU and region that covers every hour is a candidate. In each
    /// hour the block takes that cluster's asks (never the buyer's own) in price-time
    /// order until it has its GPUs; the GPUs themselves are the ones free in every hour
    /// of the block, placed best fit in whole gangs (the nodes with the fewest such GPUs
    /// first, then the lowest index). The candidate with the lowest total cost wins, ties
    /// to the lowest cluster; it must cost at most `price x qty x hours`. Each hour trades
    /// at its asks' prices, one trade and allocation per ask taken. The work is bounded
    /// by the asks of the block's hours and the nodes of the candidate clusters.
    ///
    /// A good-till block that cannot fill now rests whole in the side book (see
    /// `side_book`) until it fills, is cancelled, or expires (its time, or the gate
    /// closure of any of its hours: the first hour of its span closes first).
    fn place_block(&mut self, b: &NewBlock, out: &mut Vec<Event>) -> Result<(), Reject> {
        let products = self.block_products(b)?;
        let plan = self.best_plan(b, &products);
        if plan.is_none() && b.tif.rests() {
            let id = self.accept_block(b, out);
            self.rest_block(id, 0, false, b, products);
            return Ok(());
        }
        self.fill_block(b, plan, out);
        Ok(())
    }

    /// One-of: at most one of the alternatives (blocks or windows) fills, at once: the
    /// cheapest that can, ties to the first listed. The group is one order: `Chosen`
    /// names the alternative it became (the first when none could fill). When every
    /// alternative is good-till with the same time in force and none can fill now, the
    /// group rests in the side book as its alternatives, each tried as a resting block;
    /// the first to fill takes the others out in the same step.
    fn place_one_of(&mut self, alts: &[NewBlock], out: &mut Vec<Event>) -> Result<(), Reject> {
        let rests = alts.first().is_some_and(|b| b.tif.rests());
        if alts.is_empty()
            || alts.len() > MAX_ALTERNATIVES
            || alts
                .iter()
                .any(|b| b.tif.rests() != rests || (rests && b.tif != alts[0].tif))
        {
            return Err(Reject::InvalidGroup);
        }
        let products = alts
            .iter()
            .map(|b| self.block_products(b))
            .collect::<Result<Vec<_>, Reject>>()?;
        let mut chosen: Option<(usize, BlockPlan)> = None;
        for (i, b) in alts.iter().enumerate() {
            if let Some(plan) = self.best_plan(b, &products[i]) {
                if chosen.as_ref().is_none_or(|(_, q)| plan.cost < q.cost) {
                    chosen = Some((i, plan));
                }
            }
        }
        let (i, plan) = match chosen {
            Some((i, plan)) => (i, Some(plan)),
            None => (0, None),
        };
        out.push(Event::Chosen {
            alternative: i as u32,
            order_id: self.next_order_id,
            block: alts[i].clone(),
        });
        if plan.is_none() && rests {
            let id = self.accept_block(&alts[0], out);
            for (k, (b, span)) in alts.iter().zip(products).enumerate() {
                self.rest_block(id, k as u32, true, b, span);
            }
            return Ok(());
        }
        self.fill_block(&alts[i], plan, out);
        Ok(())
    }

    /// A linked basket, all or none. Each leg runs as immediate-or-cancel, so no leg
    /// rests and the legs cannot touch one another: no two share a product and side,
    /// and a buy and a sell of one product draw on different books' sides and different
    /// clusters' hours. So each leg's fill-or-kill dry run on the state as it is decides
    /// for all of them; then the legs run in order, each filling completely. Otherwise
    /// each leg is accepted and cancelled (`FillOrKill`) and nothing else changes. The
    /// work is the legs' matching and dry runs, whatever the size of the engine.
    fn place_basket(&mut self, legs: &[NewOrder], out: &mut Vec<Event>) -> Result<(), Reject> {
        if legs.is_empty() || legs.len() > MAX_BASKET_LEGS {
            return Err(Reject::InvalidBasket);
        }
        for (i, leg) in legs.iter().enumerate() {
            self.validate(leg)?;
            if legs[..i]
                .iter()
                .any(|o| o.product == leg.product && o.side == leg.side)
            {
                return Err(Reject::InvalidBasket);
            }
        }
        let now: Vec<NewOrder> = legs
            .iter()
            .map(|leg| NewOrder {
                tif: TimeInForce::ImmediateOrCancel,
                ..leg.clone()
            })
            .collect();
        let all = now.iter().all(|leg| {
            // a leg that cannot be immediate (post-only) cannot fill now
            self.validate(leg).is_ok() && {
                let cluster_hour = match leg.cluster {
                    Some(c) => self
                        .cluster_hour_index
                        .get(&(c, self.products[leg.product as usize].hour))
                        .copied()
                        .unwrap_or(NIL),
                    None => NIL,
                };
                let t = Taker {
                    id: 0,
                    account: leg.account,
                    product: leg.product,
                    side: leg.side,
                    price: leg.price,
                    remaining: leg.qty,
                    filled: 0,
                    tif: leg.tif,
                    post_only: leg.post_only,
                    stp: leg.stp,
                    gang: leg.gang,
                    cluster: leg.cluster,
                    cluster_hour,
                    clip: 0,
                };
                self.fills_completely(&t)
            }
        });
        if all {
            for leg in &now {
                self.place(leg, out)?;
            }
            return Ok(());
        }
        for leg in legs {
            let id = self.next_order_id;
            self.next_order_id += 1;
            out.push(Event::Accepted {
                order_id: id,
                account: leg.account,
                product: leg.product,
                side: leg.side,
                price: leg.price,
                qty: leg.qty,
            });
            out.push(Event::Cancelled {
                order_id: id,
                account: leg.account,
                product: leg.product,
                qty: leg.qty,
                reason: CancelReason::FillOrKill,
            });
        }
        Ok(())
    }

    /// Which rule of a block's shape `b` breaks, for people (`None`: its shape is good;
    /// a refusal then has another reason): the one `block_products` refuses it by with
    /// `InvalidBlock`, the first broken in the order checked.
    pub fn block_problem(&self, b: &NewBlock) -> Option<String> {
        let span = if b.window == 0 { b.hours } else { b.window };
        if b.hours == 0 {
            return Some("a block is for at least 1 hour".into());
        }
        if b.hours > MAX_BLOCK_HOURS {
            return Some(format!(
                "a block is for at most {MAX_BLOCK_HOURS} hours, not {}",
                b.hours
            ));
        }
        if span < b.hours {
            return Some(format!(
                "the window of {} hours is shorter than the block of {}",
                b.window, b.hours
            ));
        }
        if span > MAX_WINDOW_HOURS {
            return Some(format!(
                "a window is at most {MAX_WINDOW_HOURS} hours, not {}",
                b.window
            ));
        }
        let first = self.products.get(b.product as usize)?;
        for k in 0..span as i64 {
            let hour = crate::product::format_hour(first.hour + k);
            let id = format!("{}/{}/{hour}", first.sku, first.region);
            if !self.product_index.contains_key(&id) {
                let whose = if b.window == 0 { "block" } else { "window" };
                return Some(format!(
                    "hour {hour} of the {whose} is not listed: there is no product {id}"
                ));
            }
        }
        None
    }

    /// The products of a block's span (its hours, or its window), each listed, open and
    /// taking the bid's terms; the refusal otherwise.
    fn block_products(&self, b: &NewBlock) -> Result<Vec<ProductHandle>, Reject> {
        let span = if b.window == 0 { b.hours } else { b.window };
        if b.hours == 0 || b.hours > MAX_BLOCK_HOURS || span < b.hours || span > MAX_WINDOW_HOURS {
            return Err(Reject::InvalidBlock);
        }
        let first = self.product(b.product)?;
        let (sku, region, hour) = (&first.sku, &first.region, first.hour);
        if let Some(t) = b.place.near {
            // next to an allocation the buyer holds, of this SKU and region
            let held = self.allocation_by_trade(t).is_some_and(|a| {
                let c = &self.clusters[a.cluster as usize].spec;
                a.buyer == b.account && !a.slots.is_empty() && &c.sku == sku && &c.region == region
            });
            if !held {
                return Err(Reject::InvalidPlacement);
            }
        }
        let mut products = Vec::with_capacity(span as usize);
        for k in 0..span as i64 {
            let id = format!("{sku}/{region}/{}", crate::product::format_hour(hour + k));
            let p = self
                .product_index
                .get(&id)
                .copied()
                .ok_or(Reject::InvalidBlock)?;
            let mut leg = NewOrder::limit(b.account, p, Side::Buy, b.price, b.qty);
            leg.gang = b.gang;
            leg.tif = b.tif;
            self.validate(&leg)?;
            products.push(p);
        }
        Ok(products)
    }

    /// The cheapest way to fill `b` over its span now: the cheapest start, ties to the
    /// earliest.
    fn best_plan(&self, b: &NewBlock, products: &[ProductHandle]) -> Option<BlockPlan> {
        // each hour's asks that the block may take, by cluster-hour, in price-time
        // order: one pass over each book of the span
        let asks: Vec<AsksByClusterHour> = products
            .iter()
            .map(|&p| self.asks_by_cluster_hour(p, b.account))
            .collect();
        let mut plan: Option<BlockPlan> = None;
        for start in 0..=products.len() - b.hours as usize {
            let end = start + b.hours as usize;
            let bound = plan.as_ref().map(|q| q.cost);
            let (span, asks) = (&products[start..end], &asks[start..end]);
            if let Some(p) = self.plan_block(b, span, asks, bound, None) {
                plan = Some(p);
            }
        }
        plan
    }

    /// Accepts a block: its id.
    fn accept_block(&mut self, b: &NewBlock, out: &mut Vec<Event>) -> OrderId {
        let id = self.next_order_id;
        self.next_order_id += 1;
        out.push(Event::Accepted {
            order_id: id,
            account: b.account,
            product: b.product,
            side: Side::Buy,
            price: b.price,
            qty: b.qty,
        });
        id
    }

    /// Accepts the block and fills it by `plan`, or cancels it when there is none.
    fn fill_block(&mut self, b: &NewBlock, plan: Option<BlockPlan>, out: &mut Vec<Event>) {
        let id = self.accept_block(b, out);
        let Some(plan) = plan else {
            out.push(Event::Cancelled {
                order_id: id,
                account: b.account,
                product: b.product,
                qty: b.qty,
                reason: match b.tif {
                    TimeInForce::FillOrKill => CancelReason::FillOrKill,
                    _ => CancelReason::Unfilled,
                },
            });
            return;
        };
        self.take_plan(id, b, plan, out);
    }

    /// Block `id` takes what `plan` says, hour by hour.
    fn take_plan(&mut self, id: OrderId, b: &NewBlock, plan: BlockPlan, out: &mut Vec<Event>) {
        if let Some((level, domain)) = plan.placed.clone() {
            out.push(Event::Placed {
                order_id: id,
                level,
                domain,
            });
        }
        // the block's GPUs, one by one in node order: each hour's asks take them in turn
        let gpus: Vec<(u32, u64)> = plan
            .slots
            .iter()
            .flat_map(|&(node, mask)| {
                (0..64)
                    .filter(move |bit| mask & (1u64 << bit) != 0)
                    .map(move |bit| (node, 1u64 << bit))
            })
            .collect();
        for (k, legs) in plan.legs.iter().enumerate() {
            let ch = plan.cluster_hours[k];
            let mut next = 0usize;
            for &(i, price, qty) in legs {
                let mut slots: Vec<Slot> = Vec::new();
                for &(node, bit) in &gpus[next..next + qty as usize] {
                    match slots.last_mut() {
                        Some(s) if s.node == node => s.gpus |= bit,
                        _ => slots.push(Slot { node, gpus: bit }),
                    }
                }
                next += qty as usize;
                self.block_trade(b.account, id, i, price, qty, ch, slots, out);
            }
        }
    }

    /// The asks of `product` that `buyer` may take, by cluster-hour, each list in
    /// price-time order: `(slab index, price, quantity)`.
    fn asks_by_cluster_hour(&self, product: ProductHandle, buyer: AccountId) -> AsksByClusterHour {
        let mut by = AsksByClusterHour::default();
        self.each_ask(product, |i, m| {
            if m.account != buyer {
                by.entry(m.cluster_hour)
                    .or_default()
                    .push((i, m.price, m.remaining));
            }
        });
        by
    }

    /// Every ask of `product` that a block may take, in price-time order, with its slab
    /// index: all but resales (a block's GPUs are unsold ones, the same in every hour).
    fn each_ask(&self, product: ProductHandle, mut f: impl FnMut(u32, &RestingOrder)) {
        let book = &self.books[product as usize];
        let mut from: Option<Price> = None;
        while let Some((px, level)) = book.next_level(Side::Sell, from) {
            let mut i = level.head;
            while i != NIL {
                let m = self.slab.get(i);
                if pool_of(m.cluster_hour).is_none() {
                    f(i, m);
                }
                i = m.next;
            }
            from = Some(px + 1);
        }
    }

    /// The cheapest way to fill a block over `products` now, if there is one costing
    /// less than `bound` (see `place_block`), from cluster `only` if given. Clusters are
    /// ranked by what their asks would cost; only then are GPUs looked for, cheapest
    /// cluster first, so the work is the asks' lists plus the nodes of the clusters tried.
    fn plan_block(
        &self,
        b: &NewBlock,
        products: &[ProductHandle],
        asks: &[AsksByClusterHour],
        bound: Option<i128>,
        only: Option<ClusterHandle>,
    ) -> Option<BlockPlan> {
        let first = &self.products[products[0] as usize];
        let hours: Vec<i64> = products
            .iter()
            .map(|&p| self.products[p as usize].hour)
            .collect();
        let budget = b.price as i128 * b.qty as i128 * b.hours as i128;
        let g = b.gang.max(1);
        let none = Vec::new();
        // every cluster whose asks could carry the block, with their cost
        let mut ranked: Vec<Candidate> = Vec::new();
        for (c, cluster) in self.clusters.iter().enumerate() {
            if only.is_some_and(|o| o as usize != c)
                || cluster.spec.sku != first.sku
                || cluster.spec.region != first.region
                || !hours.iter().all(|&h| cluster.covers(h))
            {
                continue;
            }
            // asks create their cluster-hour: without one there is nothing to take
            let Some(chs) = hours
                .iter()
                .map(|&h| {
                    self.cluster_hour_index
                        .get(&(c as ClusterHandle, h))
                        .copied()
                })
                .collect::<Option<Vec<u32>>>()
            else {
                continue;
            };
            let mut cost: i128 = 0;
            let mut legs = Vec::with_capacity(hours.len());
            for (k, &ch) in chs.iter().enumerate() {
                let mut need = b.qty;
                let mut taken = Vec::new();
                for &(i, px, q) in asks[k].get(&ch).unwrap_or(&none) {
                    let take = need.min(q);
                    taken.push((i, px, take));
                    cost += px as i128 * take as i128;
                    need -= take;
                    if need == 0 {
                        break;
                    }
                }
                if need > 0 {
                    break;
                }
                legs.push(taken);
            }
            if legs.len() == hours.len() && cost <= budget && bound.is_none_or(|x| cost < x) {
                ranked.push((cost, c, chs, legs));
            }
        }
        ranked.sort_by_key(|r| (r.0, r.1));
        // placement: the levels to try, tightest first, and a colocation's cluster and node
        let near = b.place.near.and_then(|t| self.allocation_by_trade(t));
        // an allocation resold whole since a resting block named it: nowhere to be near
        let near = match near.map(|a| a.slots.first().map(|s| (a.cluster as usize, s.node))) {
            Some(None) => return None,
            other => other.flatten(),
        };
        let first_level = b.place.level.or(near.map(|_| Level::Cluster));
        let levels: Vec<Option<Level>> = match first_level {
            None => vec![None],
            Some(l) if b.place.preferred => std::iter::successors(Some(l), |l| l.up())
                .map(Some)
                .collect(),
            Some(l) => vec![Some(l)],
        };
        let mut commons: Vec<Option<Vec<u64>>> = vec![None; ranked.len()];
        for level in levels {
            for (k, (cost, c, chs, legs)) in ranked.iter().enumerate() {
                if near.is_some_and(|(nc, _)| nc != *c) {
                    continue;
                }
                // the GPUs free in every hour of the block
                let common = commons[k].get_or_insert_with(|| {
                    (0..self.clusters[*c].spec.nodes.len())
                        .map(|n| {
                            chs.iter()
                                .fold(!0u64, |m, &ch| m & self.cluster_hours[ch as usize].free[n])
                        })
                        .collect()
                });
                let near_node = near.map(|(_, n)| n);
                if let Some((slots, domain)) =
                    self.place_gpus(*c, common, g, b.qty, level, near_node)
                {
                    return Some(BlockPlan {
                        cost: *cost,
                        cluster_hours: chs.clone(),
                        legs: legs.clone(),
                        slots,
                        placed: level.map(|l| (l, domain)),
                    });
                }
            }
        }
        None
    }

    /// `qty` GPUs of cluster `c` in whole gangs of `g` from `common` (per node, the GPUs
    /// free in every hour), placed best fit: the nodes with the fewest such GPUs first,
    /// then the lowest index. With a `level`, all in one domain at that level: of the
    /// domains that can hold them (only the one holding `near`, when given), the one
    /// with the fewest free gangs, then the lowest name. The GPUs as `(node, mask)` and
    /// the domain's name.
    fn place_gpus(
        &self,
        c: usize,
        common: &[u64],
        g: u32,
        qty: Qty,
        level: Option<Level>,
        near: Option<u32>,
    ) -> Option<(Vec<(u32, u64)>, String)> {
        let nodes = &self.clusters[c].spec.nodes;
        let gangs = |n: usize| (common[n].count_ones() / g) as Qty;
        let need = qty / g as Qty;
        let mut fits: Vec<usize> = (0..nodes.len()).filter(|&n| gangs(n) > 0).collect();
        let mut domain = String::new();
        if let Some(level) = level {
            let mut domains: std::collections::BTreeMap<String, (Qty, Vec<usize>)> =
                Default::default();
            for &n in &fits {
                let d = domains.entry(nodes[n].domain_at(level)).or_default();
                d.0 += gangs(n);
                d.1.push(n);
            }
            let wanted = near.map(|n| nodes[n as usize].domain_at(level));
            let (name, (_, members)) = domains
                .into_iter()
                .filter(|(name, (free, _))| {
                    *free >= need && wanted.as_ref().is_none_or(|w| w == name)
                })
                .min_by(|a, b| (a.1 .0, &a.0).cmp(&(b.1 .0, &b.0)))?;
            domain = name;
            fits = members;
        }
        fits.sort_by_key(|&n| (common[n].count_ones(), n));
        let mut gangs_left = need;
        let mut slots = Vec::new();
        for n in fits {
            if gangs_left == 0 {
                break;
            }
            let take = (common[n].count_ones() / g).min(gangs_left as u32);
            let mut mask = 0u64;
            let mut free = common[n];
            for _ in 0..take * g {
                let bit = free & free.wrapping_neg();
                mask |= bit;
                free &= !bit;
            }
            slots.push((n as u32, mask));
            gangs_left -= take as Qty;
        }
        (gangs_left == 0).then_some((slots, domain))
    }

    /// The allocation of trade `trade_id` (allocations are kept in trade order).
    pub fn allocation_by_trade(&self, trade_id: TradeId) -> Option<&Allocation> {
        let i = self.allocation_index(trade_id)?;
        Some(&self.allocations[i])
    }

    fn allocation_index(&self, trade_id: TradeId) -> Option<usize> {
        self.allocations
            .binary_search_by_key(&trade_id, |a| a.trade_id)
            .ok()
    }

    /// The GPUs of allocation `a` (index) that resting resale asks offer, per node.
    fn on_offer(&self, a: usize) -> Vec<Slot> {
        let mut by_node: Vec<Slot> = Vec::new();
        for &p in self.offers.get(&(a as u32)).map_or(&[][..], |v| v) {
            let pool = &self.pools[p as usize];
            if pool.offered == 0 {
                continue; // its ask is gone
            }
            for s in &pool.free {
                match by_node.iter_mut().find(|x| x.node == s.node) {
                    Some(x) => x.gpus |= s.gpus,
                    None => by_node.push(*s),
                }
            }
        }
        by_node
    }

    /// What a resale of `parent` by `account` would offer: the allocation's index and its
    /// GPUs `slots` asks for (empty: all it holds that no resale ask offers already).
    pub fn resale_offer(
        &self,
        account: AccountId,
        parent: TradeId,
        slots: &[Slot],
    ) -> Result<(usize, Vec<Slot>), Reject> {
        let a = self
            .allocation_index(parent)
            .filter(|&a| self.allocations[a].buyer == account)
            .ok_or(Reject::InvalidResale)?;
        // what may be offered: held and not on offer already
        let on_offer = self.on_offer(a);
        let open: Vec<Slot> = self.allocations[a]
            .slots
            .iter()
            .map(|s| {
                let busy = on_offer
                    .iter()
                    .find(|x| x.node == s.node)
                    .map_or(0, |x| x.gpus);
                Slot {
                    node: s.node,
                    gpus: s.gpus & !busy,
                }
            })
            .filter(|s| s.gpus != 0)
            .collect();
        if slots.is_empty() {
            return if open.is_empty() {
                Err(Reject::InvalidResale)
            } else {
                Ok((a, open))
            };
        }
        let mut want: Vec<Slot> = Vec::new();
        for s in slots {
            match want.iter_mut().find(|x| x.node == s.node) {
                Some(x) => x.gpus |= s.gpus,
                None => want.push(*s),
            }
        }
        want.sort();
        let within = want.iter().all(|s| {
            s.gpus != 0
                && open
                    .iter()
                    .any(|x| x.node == s.node && x.gpus & s.gpus == s.gpus)
        });
        if !within {
            return Err(Reject::InvalidResale);
        }
        Ok((a, want))
    }

    /// A resale ask (see `Command::PlaceResale`): it trades and rests as any ask, its GPUs
    /// drawn from a pool of the allocation's. Block bids and placement terms pass it over:
    /// their GPUs are one cluster's, the same in every hour, found among unsold ones.
    fn place_resale(
        &mut self,
        o: &NewOrder,
        parent: TradeId,
        slots: &[Slot],
        fee_bps: u32,
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        self.validate_as(o, true)?;
        let (a, offered) = self.resale_offer(o.account, parent, slots)?;
        let alloc = &self.allocations[a];
        if o.side != Side::Sell
            || o.product != alloc.product
            || o.cluster != Some(alloc.cluster)
            || fee_bps > MAX_FEE_BPS
        {
            return Err(Reject::InvalidResale);
        }
        let qty: Qty = offered.iter().map(|s| s.gpus.count_ones() as Qty).sum();
        if qty == 0 || qty != o.qty {
            return Err(Reject::InvalidResale);
        }
        let pool = self.pools.len() as u32;
        self.pools.push(ResalePool {
            cluster: alloc.cluster,
            hour: alloc.hour,
            parent: a as u32,
            order: self.next_order_id,
            fee_bps,
            free: offered,
            offered: 0,
        });
        self.offers.entry(a as u32).or_default().push(pool);
        self.place_at(o, 0, POOL | pool, out)
    }

    /// One leg of a block: the block takes `qty` of the ask in slot `i` at `price`, on
    /// the GPUs `slots` of cluster-hour `ch`.
    #[allow(clippy::too_many_arguments)]
    fn block_trade(
        &mut self,
        buyer: AccountId,
        order: OrderId,
        i: u32,
        price: Price,
        qty: Qty,
        ch: u32,
        slots: Vec<Slot>,
        out: &mut Vec<Event>,
    ) {
        let trade_id = self.next_trade_id;
        self.next_trade_id += 1;
        let (sell_order, seller, product) = {
            let m = self.slab.get(i);
            (m.id, m.account, m.product)
        };
        out.push(Event::Trade {
            trade_id,
            product,
            price,
            qty,
            aggressor: Side::Buy,
            maker_order: sell_order,
            maker_account: seller,
            taker_order: order,
            taker_account: buyer,
        });
        let cluster_hour = &mut self.cluster_hours[ch as usize];
        cluster_hour.offered -= qty;
        for s in &slots {
            cluster_hour.take(s.node as usize, s.gpus);
        }
        let allocation = Allocation {
            trade_id,
            product,
            cluster: cluster_hour.cluster,
            hour: cluster_hour.hour,
            buyer,
            seller,
            buy_order: order,
            sell_order,
            price,
            slots,
            parent: None,
            fee: 0,
        };
        self.keep_allocation(allocation, out);
        self.fill_resting(product, i, qty);
    }

    /// A bid that must fill `min_qty` on entry or not at all; the rest goes on as the
    /// order's time in force says.
    fn place_min_fill(
        &mut self,
        o: &NewOrder,
        min_qty: Qty,
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        self.validate(o)?;
        if o.side != Side::Buy
            || min_qty <= 0
            || min_qty > o.qty
            || min_qty % o.gang.max(1) as Qty != 0
        {
            return Err(Reject::InvalidMinimumFill);
        }
        let id = self.next_order_id;
        self.next_order_id += 1;
        out.push(Event::Accepted {
            order_id: id,
            account: o.account,
            product: o.product,
            side: o.side,
            price: o.price,
            qty: o.qty,
        });
        let mut taker = Taker {
            id,
            account: o.account,
            product: o.product,
            side: o.side,
            price: o.price,
            remaining: o.qty,
            filled: 0,
            tif: o.tif,
            post_only: o.post_only,
            stp: o.stp,
            gang: o.gang,
            cluster: None,
            cluster_hour: NIL,
            clip: 0,
        };
        let enough = if o.tif == TimeInForce::FillOrKill {
            self.fills_at_least(&taker, o.qty)
        } else {
            self.fills_at_least(&taker, min_qty)
        };
        if !enough {
            out.push(Event::Cancelled {
                order_id: id,
                account: o.account,
                product: o.product,
                qty: o.qty,
                reason: CancelReason::MinimumFill,
            });
            return Ok(());
        }
        self.match_and_rest(&mut taker, out);
        Ok(())
    }

    /// Matches the taker against the book, then rests what is left (or cancels it).
    fn match_and_rest(&mut self, t: &mut Taker, out: &mut Vec<Event>) {
        if !self.match_taker(t, out) {
            return;
        }
        if t.remaining == 0 {
            return;
        }
        if !t.tif.rests() {
            out.push(Event::Cancelled {
                order_id: t.id,
                account: t.account,
                product: t.product,
                qty: t.remaining,
                reason: CancelReason::Unfilled,
            });
            return;
        }
        if t.cluster_hour != NIL {
            *self.offered_at(t.cluster_hour) += t.remaining;
        }
        if let TimeInForce::GoodTillTime(at) = t.tif {
            self.expiries.push(Reverse((at, t.id)));
        }
        // an iceberg shows its clip and keeps the rest hidden
        let shown = if t.clip > 0 {
            t.clip.min(t.remaining)
        } else {
            t.remaining
        };
        let i = self.slab.insert(RestingOrder {
            id: t.id,
            account: t.account,
            product: t.product,
            side: t.side,
            price: t.price,
            remaining: shown,
            clip: t.clip,
            hidden: t.remaining - shown,
            filled: t.filled,
            tif: t.tif,
            post_only: t.post_only,
            stp: t.stp,
            gang: t.gang,
            cluster: t.cluster,
            cluster_hour: t.cluster_hour,
            prev: NIL,
            next: NIL,
        });
        self.order_index.insert(t.id, i);
        self.books[t.product as usize].push_back(&mut self.slab, i);
        if t.side == Side::Sell && t.cluster_hour != NIL && pool_of(t.cluster_hour).is_none() {
            // a new or moved ask: the resting blocks of its hour may fill now
            self.retry_blocks(t.product, t.cluster_hour, out);
        }
    }

    /// Takes a resting order out of the book and forgets it, emitting `event(order)`.
    fn remove_resting(
        &mut self,
        i: u32,
        out: &mut Vec<Event>,
        event: impl FnOnce(&RestingOrder) -> Event,
    ) {
        let o = self.slab.get(i);
        out.push(event(o));
        let (id, product, ch, remaining) = (o.id, o.product, o.cluster_hour, o.open_qty());
        if ch != NIL {
            *self.offered_at(ch) -= remaining;
        }
        self.books[product as usize].unlink(&mut self.slab, i);
        self.order_index.remove(&id);
        self.slab.release(i);
    }

    /// The matching loop. Returns false when self-trade prevention cancelled the taker.
    fn match_taker(&mut self, t: &mut Taker, out: &mut Vec<Event>) -> bool {
        let book_side = t.side.opposite();
        let mut from: Option<Price> = None;
        'levels: while t.remaining > 0 {
            let Some((px, level)) = self.books[t.product as usize].next_level(book_side, from)
            else {
                break;
            };
            if !crosses(t.side, t.price, px) {
                break;
            }
            let mut i = level.head;
            // an iceberg refilled in this pass shows again at the back of this level
            let mut refilled = false;
            while i != NIL {
                let m = self.slab.get(i);
                let (next, m_account, m_remaining, m_cluster_hour, m_gang) =
                    (m.next, m.account, m.remaining, m.cluster_hour, m.gang);
                let refills = m.hidden > 0;
                if m_account == t.account {
                    let cancel_resting = t.stp != SelfTradePrevention::CancelNewest;
                    let cancel_taker = t.stp != SelfTradePrevention::CancelOldest;
                    if cancel_resting {
                        self.remove_resting(i, out, |o| Event::Cancelled {
                            order_id: o.id,
                            account: o.account,
                            product: o.product,
                            qty: o.open_qty(),
                            reason: CancelReason::SelfTrade,
                        });
                    }
                    if cancel_taker {
                        out.push(Event::Cancelled {
                            order_id: t.id,
                            account: t.account,
                            product: t.product,
                            qty: t.remaining,
                            reason: CancelReason::SelfTrade,
                        });
                        t.remaining = 0;
                        return false;
                    }
                    i = next;
                    continue;
                }
                let want = t.remaining.min(m_remaining);
                let (ch, gang) = match t.side {
                    Side::Buy => (m_cluster_hour, t.gang),
                    Side::Sell => (t.cluster_hour, m_gang),
                };
                let qty = if gang == 1 {
                    want
                } else {
                    self.placeable_at(ch, gang, want)
                };
                if qty > 0 {
                    self.trade(t, i, px, qty, ch, gang, out);
                    if t.remaining == 0 {
                        break 'levels;
                    }
                    refilled |= refills && qty == m_remaining;
                }
                i = next;
            }
            if refilled {
                continue 'levels; // the same level again, from its head
            }
            from = Some(match book_side {
                Side::Buy => px - 1,
                Side::Sell => px + 1,
            });
        }
        true
    }

    /// One fill between the taker and the resting order in slot `i`, with its allocation.
    #[allow(clippy::too_many_arguments)]
    fn trade(
        &mut self,
        t: &mut Taker,
        i: u32,
        price: Price,
        qty: Qty,
        ch: u32,
        gang: u32,
        out: &mut Vec<Event>,
    ) {
        let trade_id = self.next_trade_id;
        self.next_trade_id += 1;
        let (maker_order, maker_account, product) = {
            let m = self.slab.get(i);
            (m.id, m.account, m.product)
        };
        out.push(Event::Trade {
            trade_id,
            product,
            price,
            qty,
            aggressor: t.side,
            maker_order,
            maker_account,
            taker_order: t.id,
            taker_account: t.account,
        });
        if t.side == Side::Buy {
            // the maker is the ask: its reservation turns into sold GPUs
            *self.offered_at(ch) -= qty;
        }
        let (buyer, seller, buy_order, sell_order) = match t.side {
            Side::Buy => (t.account, maker_account, t.id, maker_order),
            Side::Sell => (maker_account, t.account, maker_order, t.id),
        };
        let mut allocation = Allocation {
            trade_id,
            product,
            cluster: 0,
            hour: 0,
            buyer,
            seller,
            buy_order,
            sell_order,
            price,
            slots: Vec::new(),
            parent: None,
            fee: 0,
        };
        match pool_of(ch) {
            None => {
                let cluster_hour = &mut self.cluster_hours[ch as usize];
                allocation.cluster = cluster_hour.cluster;
                allocation.hour = cluster_hour.hour;
                allocation.slots = cluster_hour.allocate(gang, qty);
            }
            Some(p) => {
                // a resale: the GPUs leave the allocation they came from
                let pool = &mut self.pools[p];
                allocation.cluster = pool.cluster;
                allocation.hour = pool.hour;
                allocation.slots = pool.allocate(gang, qty);
                let value = price as i128 * qty as i128 * pool.fee_bps as i128;
                allocation.fee = (value / MAX_FEE_BPS as i128) as Price;
                let parent = &mut self.allocations[pool.parent as usize];
                allocation.parent = Some(parent.trade_id);
                for s in &allocation.slots {
                    let held = parent.slots.iter_mut().find(|x| x.node == s.node);
                    let held = held.expect("a pool's GPUs are its allocation's");
                    debug_assert_eq!(held.gpus & s.gpus, s.gpus);
                    held.gpus &= !s.gpus;
                }
                parent.slots.retain(|x| x.gpus != 0);
            }
        }
        self.keep_allocation(allocation, out);

        t.remaining -= qty;
        t.filled += qty;
        self.fill_resting(product, i, qty);
    }

    /// Keeps a trade's allocation, indexed for its accounts, and says so.
    fn keep_allocation(&mut self, allocation: Allocation, out: &mut Vec<Event>) {
        let n = self.allocations.len() as u32;
        self.allocations.push(allocation);
        self.index_allocation(n);
        out.push(Event::Allocated { allocation: n });
    }

    /// Indexes allocation `n` for its buyer, its seller and, when they differ (a resale),
    /// the cluster's owner, whose schedule follows the GPUs to their new holder.
    fn index_allocation(&mut self, n: u32) {
        let a = &self.allocations[n as usize];
        let owner = self.clusters[a.cluster as usize].seller;
        let mut accounts = [a.buyer, a.seller, owner];
        accounts.sort_unstable();
        for (k, &account) in accounts.iter().enumerate() {
            if k == 0 || accounts[k - 1] != account {
                self.allocations_by_account
                    .entry(account)
                    .or_default()
                    .push(n);
            }
        }
    }

    /// A resale ask on `ch` offers fewer GPUs than its pool holds (amended down): the
    /// pool lets go of the rest, which its holder may offer again.
    fn release_unoffered(&mut self, ch: u32) {
        if let Some(p) = pool_of(ch) {
            let pool = &mut self.pools[p];
            pool.release(pool.free_total() - pool.offered);
        }
    }

    /// The GPUs reserved by the asks drawing on `ch`: a cluster-hour, or a resale pool.
    fn offered_at(&mut self, ch: u32) -> &mut Qty {
        match pool_of(ch) {
            Some(p) => &mut self.pools[p].offered,
            None => &mut self.cluster_hours[ch as usize].offered,
        }
    }

    fn unreserved_at(&self, ch: u32) -> Qty {
        match pool_of(ch) {
            Some(p) => self.pools[p].unreserved(),
            None => self.cluster_hours[ch as usize].unreserved(),
        }
    }

    fn placeable_at(&self, ch: u32, gang: u32, max: Qty) -> Qty {
        match pool_of(ch) {
            Some(p) => self.pools[p].placeable(gang, max),
            None => self.cluster_hours[ch as usize].placeable(gang, max),
        }
    }

    /// The resting order in slot `i` of `product`'s book traded `qty`: it leaves the book
    /// once nothing remains.
    fn fill_resting(&mut self, product: ProductHandle, i: u32, qty: Qty) {
        let book = &mut self.books[product as usize];
        book.reduce(&mut self.slab, i, qty);
        let m = self.slab.get_mut(i);
        m.filled += qty;
        if m.remaining == 0 && m.hidden > 0 {
            // an iceberg's next clip shows, behind every order already at its price
            let next = m.clip.min(m.hidden);
            m.hidden -= next;
            book.unlink(&mut self.slab, i);
            self.slab.get_mut(i).remaining = next;
            book.push_back(&mut self.slab, i);
        } else if m.remaining == 0 {
            let id = m.id;
            book.unlink(&mut self.slab, i);
            self.order_index.remove(&id);
            self.slab.release(i);
        }
    }

    /// Dry run of `match_taker` for fill-or-kill: could the taker fill completely now?
    /// Mirrors the matching loop without changing anything; placement is simulated on
    /// private copies of the cluster-hours it would draw on.
    fn fills_completely(&self, t: &Taker) -> bool {
        self.fills_at_least(t, t.remaining)
    }

    /// As `fills_completely`, for `need` of the taker's quantity.
    fn fills_at_least(&self, t: &Taker, need: Qty) -> bool {
        let book = &self.books[t.product as usize];
        let book_side = t.side.opposite();
        let mut need = need;
        // Bids draw on many cluster-hours, all with the taker's gang: each gang placed
        // lowers that cluster-hour's gang count by exactly one, so a count suffices.
        let mut gangs_used: Vec<(u32, Qty)> = Vec::new();
        // Asks draw on one cluster-hour for bids of any gang: simulate on a copy, made
        // when the first gang bid is met; single-GPU fills before that are replayed.
        let mut copy: Option<Stock> = None;
        let mut singles: Qty = 0;
        let mut from: Option<Price> = None;
        while let Some((px, level)) = book.next_level(book_side, from) {
            if !crosses(t.side, t.price, px) {
                break;
            }
            let mut i = level.head;
            while i != NIL {
                let m = self.slab.get(i);
                i = m.next;
                if m.account == t.account {
                    if t.stp == SelfTradePrevention::CancelOldest {
                        continue;
                    }
                    return false;
                }
                // an iceberg: each clip as it would show, while the last was taken whole
                let (mut shown, mut hidden) = (m.remaining, m.hidden);
                loop {
                    let want = need.min(shown);
                    let qty = match t.side {
                        Side::Buy if t.gang == 1 => want,
                        Side::Buy => {
                            let g = t.gang as Qty;
                            let pos = gangs_used.iter().position(|(c, _)| *c == m.cluster_hour);
                            let used = pos.map_or(0, |p| gangs_used[p].1);
                            let free_gangs =
                                self.placeable_at(m.cluster_hour, t.gang, Qty::MAX) / g - used;
                            let take = (want / g).min(free_gangs);
                            match pos {
                                Some(p) => gangs_used[p].1 += take,
                                None => gangs_used.push((m.cluster_hour, take)),
                            }
                            take * g
                        }
                        Side::Sell => match (&mut copy, m.gang) {
                            (None, 1) => {
                                singles += want;
                                want
                            }
                            (slot, gang) => {
                                let ch = slot.get_or_insert_with(|| {
                                    // the ask's cluster-hour, or a fresh one (all its
                                    // GPUs free) for an ask that would create it
                                    let mut c = match (t.cluster_hour, t.cluster) {
                                        (NIL, Some(cl)) => Stock::Hour(ClusterHour::new(
                                            cl,
                                            self.products[t.product as usize].hour,
                                            &self.clusters[cl as usize],
                                        )),
                                        (i, _) => match pool_of(i) {
                                            Some(p) => Stock::Pool(self.pools[p].clone()),
                                            None => {
                                                Stock::Hour(self.cluster_hours[i as usize].clone())
                                            }
                                        },
                                    };
                                    c.allocate(1, singles);
                                    c
                                });
                                let q = ch.placeable(gang, want);
                                ch.allocate(gang, q);
                                q
                            }
                        },
                    };
                    need -= qty;
                    if need == 0 {
                        return true;
                    }
                    if qty < shown || hidden == 0 {
                        break;
                    }
                    shown = m.clip.min(hidden);
                    hidden -= shown;
                }
            }
            from = Some(match book_side {
                Side::Buy => px - 1,
                Side::Sell => px + 1,
            });
        }
        false
    }

    fn owned(&self, account: AccountId, order_id: OrderId) -> Result<u32, Reject> {
        let &i = self
            .order_index
            .get(&order_id)
            .ok_or(Reject::UnknownOrder)?;
        if self.slab.get(i).account != account {
            return Err(Reject::NotOwner);
        }
        Ok(i)
    }

    fn cancel(
        &mut self,
        account: AccountId,
        order_id: OrderId,
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        if let Some(done) = self.cancel_block(account, order_id, out) {
            return done;
        }
        let i = self.owned(account, order_id)?;
        self.remove_resting(i, out, |o| Event::Cancelled {
            order_id: o.id,
            account: o.account,
            product: o.product,
            qty: o.open_qty(),
            reason: CancelReason::Requested,
        });
        Ok(())
    }

    fn amend(
        &mut self,
        account: AccountId,
        order_id: OrderId,
        price: Option<Price>,
        qty: Option<Qty>,
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        if let Some(rb) = self.side.first(order_id) {
            // a block is all or none as placed: cancel it and place another
            return Err(if rb.block.account == account {
                Reject::InvalidBlock
            } else {
                Reject::NotOwner
            });
        }
        let i = self.owned(account, order_id)?;
        let o = self.slab.get(i).clone();
        let p = &self.products[o.product as usize];
        if p.state == ProductState::Halted {
            return Err(Reject::ProductHalted);
        }
        if let Some(px) = price {
            self.check_price(p, px)?;
        }
        if let Some(q) = qty {
            self.check_qty(p, q, o.gang)?;
        }
        // an iceberg's quantity is all of it, shown and hidden
        let open = o.open_qty();
        let new_price = price.unwrap_or(o.price);
        let new_qty = qty.unwrap_or(open);
        if new_price == o.price && new_qty == open {
            return Err(Reject::NothingToAmend);
        }
        if o.cluster_hour != NIL
            && new_qty > open
            && self.unreserved_at(o.cluster_hour) < new_qty - open
        {
            return Err(Reject::InsufficientCapacity);
        }
        if o.post_only && new_price != o.price && self.would_cross(o.product, o.side, new_price) {
            return Err(Reject::PostOnlyWouldCross);
        }
        if new_price == o.price && new_qty < open {
            let by = open - new_qty;
            // an iceberg gives up hidden quantity first
            let from_hidden = by.min(o.hidden);
            self.slab.get_mut(i).hidden -= from_hidden;
            if by > from_hidden {
                self.books[o.product as usize].reduce(&mut self.slab, i, by - from_hidden);
            }
            if o.cluster_hour != NIL {
                *self.offered_at(o.cluster_hour) -= by;
            }
            self.release_unoffered(o.cluster_hour);
            out.push(Event::Amended {
                order_id,
                account,
                product: o.product,
                price: new_price,
                qty: new_qty,
                priority_kept: true,
            });
            return Ok(());
        }
        // Loses priority: leaves the book and re-enters as a taker at the new terms.
        if o.cluster_hour != NIL {
            *self.offered_at(o.cluster_hour) -= open;
        }
        if new_qty < open {
            // a resale offers only the GPUs it still sells
            if let Some(p) = pool_of(o.cluster_hour) {
                let pool = &mut self.pools[p];
                pool.release(pool.free_total() - new_qty);
            }
        }
        self.books[o.product as usize].unlink(&mut self.slab, i);
        self.order_index.remove(&order_id);
        self.slab.release(i);
        out.push(Event::Amended {
            order_id,
            account,
            product: o.product,
            price: new_price,
            qty: new_qty,
            priority_kept: false,
        });
        let mut taker = Taker {
            id: o.id,
            account: o.account,
            product: o.product,
            side: o.side,
            price: new_price,
            remaining: new_qty,
            filled: o.filled,
            tif: o.tif,
            post_only: o.post_only,
            stp: o.stp,
            gang: o.gang,
            cluster: o.cluster,
            cluster_hour: o.cluster_hour,
            clip: o.clip,
        };
        // The GTD heap already holds this order's expiry; do not push it twice.
        let tif = taker.tif;
        taker.tif = match tif {
            TimeInForce::GoodTillTime(_) => TimeInForce::GoodTillClose,
            other => other,
        };
        self.match_and_rest(&mut taker, out);
        if let Some(&j) = self.order_index.get(&order_id) {
            self.slab.get_mut(j).tif = tif;
        }
        Ok(())
    }

    // ---- snapshots -----------------------------------------------------------------

    /// The whole engine state as bytes; `restore` gives back an engine with the same
    /// state hash that behaves identically from there on.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut e = Enc::default();
        e.u32(SNAPSHOT_VERSION);
        e.i64(self.now);
        e.u64(self.next_order_id);
        e.u64(self.next_trade_id);
        e.u32(self.products.len() as u32);
        for (p, book) in self.products.iter().zip(&self.books) {
            codec::put_product_spec(&mut e, &p.spec);
            e.u8(p.state as u8);
            for side in [Side::Buy, Side::Sell] {
                let slots = book.orders(&self.slab, side);
                e.u32(slots.len() as u32);
                for i in slots {
                    let o = self.slab.get(i);
                    e.u64(o.id);
                    e.u64(o.account);
                    e.i64(o.price);
                    e.i64(o.remaining);
                    e.i64(o.filled);
                    codec::put_tif(&mut e, o.tif);
                    e.u8(o.post_only as u8);
                    e.u8(o.stp as u8);
                    e.u32(o.gang);
                    e.opt_u32(o.cluster);
                    e.i64(o.clip);
                    e.i64(o.hidden);
                }
            }
        }
        e.u32(self.clusters.len() as u32);
        for c in &self.clusters {
            e.u64(c.seller);
            codec::put_cluster_spec(&mut e, &c.spec);
        }
        e.u32(self.cluster_hours.len() as u32);
        for ch in &self.cluster_hours {
            e.u32(ch.cluster);
            e.i64(ch.hour);
            e.i64(ch.offered);
            for (f, s) in ch.free.iter().zip(&ch.sold) {
                e.u64(*f);
                e.u64(*s);
            }
        }
        e.u32(self.allocations.len() as u32);
        for a in &self.allocations {
            codec::put_allocation(&mut e, a);
        }
        // the pools of resting resale asks (the others are spent)
        let live: Vec<&ResalePool> = self.pools.iter().filter(|p| p.offered > 0).collect();
        e.u32(live.len() as u32);
        for p in live {
            e.u64(p.order);
            e.u32(p.parent);
            e.u32(p.fee_bps);
            e.i64(p.offered);
            codec::put_slots(&mut e, &p.free);
        }
        self.side.snapshot(&mut e);
        e.0
    }

    pub fn restore(buf: &[u8]) -> Result<Engine, CodecError> {
        let mut d = Dec::new(buf);
        // version 1 is version 2 without resting blocks or icebergs, version 2 is 3
        // without resales
        let version = d.u32()?;
        if !(1..=SNAPSHOT_VERSION).contains(&version) {
            return Err(CodecError("unknown snapshot version"));
        }
        let mut en = Engine::new();
        en.now = d.i64()?;
        en.next_order_id = d.u64()?;
        en.next_trade_id = d.u64()?;
        let n = d.count(40)?;
        for h in 0..n as ProductHandle {
            let spec = codec::get_product_spec(&mut d)?;
            let mut p = Product::new(spec).map_err(|_| CodecError("invalid product"))?;
            p.state = codec::state_of(d.u8()?)?;
            en.product_index.insert(p.spec.id.clone(), h);
            en.closures.push(Reverse((p.spec.close_at, h)));
            en.products.push(p);
            en.books.push(Book::default());
            en.side.add_product();
            for side in [Side::Buy, Side::Sell] {
                for _ in 0..d.count(50)? {
                    let (id, account, price, remaining, filled) =
                        (d.u64()?, d.u64()?, d.i64()?, d.i64()?, d.i64()?);
                    let tif = codec::get_tif(&mut d)?;
                    let (post_only, stp) = (d.u8()? != 0, codec::stp_of(d.u8()?)?);
                    let (gang, cluster) = (d.u32()?, d.opt_u32()?);
                    let (clip, hidden) = if version >= 2 {
                        (d.i64()?, d.i64()?)
                    } else {
                        (0, 0)
                    };
                    let i = en.slab.insert(RestingOrder {
                        clip,
                        hidden,
                        id,
                        account,
                        product: h,
                        side,
                        price,
                        remaining,
                        filled,
                        tif,
                        post_only,
                        stp,
                        gang,
                        cluster,
                        cluster_hour: NIL, // linked below, once cluster-hours exist
                        prev: NIL,
                        next: NIL,
                    });
                    en.order_index.insert(id, i);
                    if let TimeInForce::GoodTillTime(at) = tif {
                        en.expiries.push(Reverse((at, id)));
                    }
                    en.books[h as usize].push_back(&mut en.slab, i);
                }
            }
        }
        for h in 0..d.count(20)? as ClusterHandle {
            let seller = d.u64()?;
            let spec = codec::get_cluster_spec(&mut d, version >= 2)?;
            let c = Cluster::new(seller, spec).map_err(|_| CodecError("invalid cluster"))?;
            if en
                .cluster_index
                .insert((c.seller, c.spec.id.clone()), h)
                .is_some()
            {
                return Err(CodecError("duplicate cluster"));
            }
            en.clusters.push(c);
        }
        for i in 0..d.count(20)? as u32 {
            let (cluster, hour, offered) = (d.u32()?, d.i64()?, d.i64()?);
            let c = en
                .clusters
                .get(cluster as usize)
                .ok_or(CodecError("cluster handle"))?;
            let n = c.spec.nodes.len();
            let (mut free, mut sold) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for _ in 0..n {
                free.push(d.u64()?);
                sold.push(d.u64()?);
            }
            en.cluster_hours
                .push(ClusterHour::restore(cluster, hour, c, free, sold, offered));
            en.cluster_hour_index.insert((cluster, hour), i);
        }
        for i in 0..d.count(60)? as u32 {
            let a = codec::get_allocation(&mut d, version >= 3)?;
            if a.cluster as usize >= en.clusters.len() {
                return Err(CodecError("allocation's cluster"));
            }
            en.allocations.push(a);
            en.index_allocation(i);
        }
        let mut pools = Vec::new();
        if version >= 3 {
            for _ in 0..d.count(32)? {
                let (order, parent, fee_bps, offered) = (d.u64()?, d.u32()?, d.u32()?, d.i64()?);
                let free = codec::get_slots(&mut d)?;
                let a = en
                    .allocations
                    .get(parent as usize)
                    .ok_or(CodecError("resale's allocation"))?;
                pools.push(ResalePool {
                    cluster: a.cluster,
                    hour: a.hour,
                    parent,
                    order,
                    fee_bps,
                    free,
                    offered,
                });
            }
        }
        if version >= 2 {
            en.side.restore(&mut d, en.products.len())?;
        }
        for rb in en.side.orders() {
            if let TimeInForce::GoodTillTime(at) = rb.block.tif {
                en.expiries.push(Reverse((at, rb.id)));
            }
        }
        d.done()?;
        // asks draw on their cluster-hour
        for o in en.slab.slots.iter_mut() {
            if let Some(c) = o.cluster {
                let hour = en.products[o.product as usize].hour;
                o.cluster_hour = *en
                    .cluster_hour_index
                    .get(&(c, hour))
                    .ok_or(CodecError("ask without its cluster-hour"))?;
            }
        }
        // resale asks draw on their pools
        for p in pools {
            let i = en.pools.len() as u32;
            let slab = *en
                .order_index
                .get(&p.order)
                .ok_or(CodecError("resale pool without its ask"))?;
            en.slab.get_mut(slab).cluster_hour = POOL | i;
            en.offers.entry(p.parent).or_default().push(i);
            en.pools.push(p);
        }
        Ok(en)
    }

    // ---- views ---------------------------------------------------------------------

    /// A resting order by id (`None` once it is filled, cancelled or expired).
    pub fn order(&self, order_id: OrderId) -> Option<&RestingOrder> {
        self.order_index.get(&order_id).map(|&i| self.slab.get(i))
    }

    pub fn book(&self, product: ProductHandle) -> Option<&Book> {
        self.books.get(product as usize)
    }

    /// Aggregated levels, best first: (price, quantity, order count).
    pub fn l2(&self, product: ProductHandle, side: Side, depth: usize) -> Vec<(Price, Qty, u32)> {
        let Some(book) = self.books.get(product as usize) else {
            return Vec::new();
        };
        book.side(side)
            .iter()
            .take(depth)
            .map(|(p, l)| (p, l.total, l.count))
            .collect()
    }

    /// One level: (quantity, order count), zeros when nothing rests at `price`.
    pub fn level(&self, product: ProductHandle, side: Side, price: Price) -> (Qty, u32) {
        self.books
            .get(product as usize)
            .and_then(|b| b.side(side).at(price))
            .map_or((0, 0), |l| (l.total, l.count))
    }

    /// Every resting order of one side, in priority order.
    pub fn l3(&self, product: ProductHandle, side: Side) -> Vec<&RestingOrder> {
        let Some(book) = self.books.get(product as usize) else {
            return Vec::new();
        };
        book.orders(&self.slab, side)
            .into_iter()
            .map(|i| self.slab.get(i))
            .collect()
    }

    /// Resting orders and resting blocks.
    pub fn open_order_count(&self) -> usize {
        self.order_index.len() + self.side.orders().count()
    }

    /// Allocations where the account is buyer or seller, in trade order.
    pub fn allocations_of(&self, account: AccountId) -> Vec<&Allocation> {
        self.allocations_by_account
            .get(&account)
            .map(|v| v.iter().map(|&i| &self.allocations[i as usize]).collect())
            .unwrap_or_default()
    }

    pub fn allocations(&self) -> &[Allocation] {
        &self.allocations
    }

    /// SHA-256 over the whole market state in a canonical order, as lowercase hex:
    /// products, books (every resting order in priority order), capacity, allocations
    /// and the id counters. Equal command sequences give equal hashes on every machine.
    /// The clock itself is left out, so a refused command changes nothing the hash
    /// sees; what time did (expiries, gate closures) is in the books and products.
    pub fn state_hash(&self) -> String {
        let mut h = Sha256::new();
        let mut put = |x: i64| h.update(x.to_le_bytes());
        put(self.next_order_id as i64);
        put(self.next_trade_id as i64);
        put(self.products.len() as i64);
        let mut text = Vec::new();
        for (p, book) in self.products.iter().zip(&self.books) {
            text.push(p.spec.id.clone());
            for x in [
                p.spec.tick,
                p.spec.lot,
                p.spec.open_at,
                p.spec.close_at,
                p.state as i64,
            ] {
                put(x);
            }
            for side in [Side::Buy, Side::Sell] {
                put(-1);
                for i in book.orders(&self.slab, side) {
                    let o = self.slab.get(i);
                    let (tif, at) = match o.tif {
                        TimeInForce::GoodTillClose => (0, 0),
                        TimeInForce::GoodTillTime(t) => (1, t),
                        TimeInForce::ImmediateOrCancel => (2, 0),
                        TimeInForce::FillOrKill => (3, 0),
                    };
                    for x in [
                        o.id as i64,
                        o.account as i64,
                        o.side as i64,
                        o.price,
                        o.remaining,
                        o.filled,
                        tif,
                        at,
                        o.post_only as i64,
                        o.stp as i64,
                        o.gang as i64,
                        o.cluster.map_or(-1, |c| c as i64),
                        o.clip,
                        o.hidden,
                    ] {
                        put(x);
                    }
                }
            }
        }
        put(self.clusters.len() as i64);
        for c in &self.clusters {
            text.push(c.spec.id.clone());
            text.push(c.spec.sku.clone());
            text.push(c.spec.region.clone());
            put(c.seller as i64);
            put(c.spec.from_hour);
            put(c.spec.to_hour);
            for n in &c.spec.nodes {
                text.push(n.id.clone());
                put(n.gpus as i64);
                for label in [&n.place.block, &n.place.rack, &n.place.domain] {
                    text.push(label.clone());
                }
            }
        }
        let mut keys: Vec<_> = self.cluster_hour_index.iter().collect();
        keys.sort();
        put(keys.len() as i64);
        for (&(c, hour), &i) in keys {
            let ch = &self.cluster_hours[i as usize];
            put(c as i64);
            put(hour);
            put(ch.offered);
            for (f, s) in ch.free.iter().zip(&ch.sold) {
                put(*f as i64);
                put(*s as i64);
            }
        }
        put(self.allocations.len() as i64);
        for a in &self.allocations {
            for x in [
                a.trade_id as i64,
                a.buy_order as i64,
                a.sell_order as i64,
                a.price,
            ] {
                put(x);
            }
            for s in &a.slots {
                put(s.node as i64);
                put(s.gpus as i64);
            }
            put(a.parent.unwrap_or(0) as i64);
            put(a.fee);
        }
        for p in self.pools.iter().filter(|p| p.offered > 0) {
            for x in [p.order as i64, p.parent as i64, p.fee_bps as i64, p.offered] {
                put(x);
            }
            for s in &p.free {
                put(s.node as i64);
                put(s.gpus as i64);
            }
        }
        self.side.hash_into(&mut put);
        for s in text {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}
