//! The engine: owns every product's book, every cluster's capacity and every allocation,
//! applies commands one at a time and emits their events in a deterministic order.
//!
//! Matching rule: price-time priority, trades at the resting order's price. A bid's gang
//! constraint limits what it takes to what the asks' cluster-hours can place in whole
//! gangs, each on one node; the asks of one cluster-hour, in price-time order, may
//! together supply a gang (`gangs`). An ask that can supply nothing is passed over and
//! keeps its priority.
//!
//! One type, [`Engine`], its `impl` spread over the modules below by concern: this one
//! holds the state, the limits and the command dispatch (`apply`) with the clock.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;

use crate::book::{Book, Slab, NIL};
use crate::capacity::{Cluster, ClusterHandle, ClusterHour, Level, ResalePool};
use crate::command::*;
use crate::product::Product;
use crate::reject::Reject;
use crate::types::*;

mod amend;
mod auction;
mod blocks;
mod clusters;
mod gangs;
mod matching;
mod orders;
mod placement;
mod products;
mod resale;
mod seller_blocks;
mod side_book;
mod snapshot;
mod views;

pub use auction::{AuctionView, OpenAuction, ViewAsk, ViewBid, ViewCluster};
pub use seller_blocks::SellerBlock;
pub use side_book::{RestingBlock, RETRY_TOP, RETRY_TURN};
pub use snapshot::SNAPSHOT_VERSION;
pub use views::Utilisation;

/// One hour's asks, by cluster-hour, each cluster-hour's in price-time order:
/// `(cluster-hour, slab index, price, quantity, seller)` (a block skips its buyer's own),
/// sorted by cluster-hour (one list, looked up by cluster-hour: few allocations however
/// many clusters offer).
#[derive(Default)]
struct AsksByClusterHour(Vec<(u32, u32, Price, Qty, AccountId)>);

impl AsksByClusterHour {
    /// The asks of cluster-hour `ch`, in price-time order.
    fn get(&self, ch: u32) -> &[(u32, u32, Price, Qty, AccountId)] {
        let lo = self.0.partition_point(|a| a.0 < ch);
        let hi = lo + self.0[lo..].partition_point(|a| a.0 == ch);
        &self.0[lo..hi]
    }
}

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
    /// The auction being cleared, and the id of the last one started.
    auction: Option<OpenAuction>,
    last_auction: u64,
    /// Seller blocks at rest, by id; and while an auction's result is applied, the ones
    /// it sold, cheapest first (a seller-block leg names its place here).
    seller_blocks: std::collections::BTreeMap<OrderId, SellerBlock>,
    selling: Vec<OrderId>,
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
        if matches!(
            cmd,
            Command::Halt { .. }
                | Command::Resume { .. }
                | Command::Close { .. }
                | Command::RegisterCapacity { .. }
                | Command::WithdrawCapacity { .. }
                | Command::Cancel { .. }
                | Command::Amend { .. }
        ) {
            // what may open a resting block's plan other than an arriving ask
            self.side.changed();
        }
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
            Command::PlaceSellerBlock(block) => self.place_seller_block(block, out),
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
            Command::HoldForAuction { product } => self.hold_for_auction(*product, out),
            Command::AuctionStart {
                auction,
                from_hour,
                to_hour,
            } => self.start_auction(*auction, *from_hour, *to_hour),
            Command::AuctionClear {
                auction,
                fills,
                prices,
                abandoned,
                sold,
            } => self.clear_auction(*auction, fills, prices, *abandoned, sold, out),
        };
        if let Err(reason) = result {
            out.push(Event::Rejected { reason });
        }
        result
    }

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
            if expiry.is_some() || closure.is_some() {
                self.side.changed();
            }
            match (expiry, closure) {
                (Some((te, id)), c) if c.is_none_or(|(tc, _)| te <= tc) => {
                    self.expiries.pop();
                    self.expire_block(id, te, out);
                    self.expire_seller_block(id, te, out);
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
}
