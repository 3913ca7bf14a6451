//! Commands into the engine and the events that come out, in the order the engine emits them.

use crate::capacity::{ClusterHandle, ClusterSpec, Level, Slot};
use crate::product::ProductSpec;
use crate::reject::Reject;
use crate::types::*;

/// A new order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewOrder {
    pub account: AccountId,
    pub product: ProductHandle,
    pub side: Side,
    pub order_type: OrderType,
    /// Limit price, or the protection price of a market order.
    pub price: Price,
    pub qty: Qty,
    pub tif: TimeInForce,
    pub post_only: bool,
    pub stp: SelfTradePrevention,
    /// Asks: the cluster the GPUs come from. Bids: none.
    pub cluster: Option<ClusterHandle>,
    /// Bids: GPUs must come in groups of this many on one node (1 = no constraint).
    pub gang: u32,
}

impl NewOrder {
    /// A plain good-till-close limit order without placement terms.
    pub fn limit(
        account: AccountId,
        product: ProductHandle,
        side: Side,
        price: Price,
        qty: Qty,
    ) -> NewOrder {
        NewOrder {
            account,
            product,
            side,
            order_type: OrderType::Limit,
            price,
            qty,
            tif: TimeInForce::GoodTillClose,
            post_only: false,
            stp: SelfTradePrevention::CancelNewest,
            cluster: None,
            gang: 1,
        }
    }
}

/// A block bid: the same GPUs (the same nodes and GPU indices) for `hours` consecutive
/// delivery hours from `product`'s hour on, all or none, at once (IOC or FOK; a block
/// does not rest). `price` is the limit per GPU-hour, applied to the whole: the block's
/// total cost is at most `price x qty x hours`, each hour trading at its asks' prices.
/// With a `window` of W hours the block may start at any hour of the first W - hours + 1
/// (its hours all inside the W from `product`'s): the cheapest start wins, ties to the
/// earliest. A window of 0 is the block's own hours.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewBlock {
    pub account: AccountId,
    /// The first hour's product; the others are the same SKU and region, hour by hour.
    pub product: ProductHandle,
    pub hours: u32,
    pub price: Price,
    /// GPUs in every hour.
    pub qty: Qty,
    pub gang: u32,
    pub tif: TimeInForce,
    /// Hours the block may move within (0: none).
    pub window: u32,
    /// Where its GPUs must (or should) sit.
    pub place: Placement,
    /// An auction order: it never matches continuously; it rests (good-till only) until
    /// an auction whose window holds its first hour fills it (see `engine::auction`).
    /// A one-hour auction bid (1 hour, no window, not in a one-of group) may fill in
    /// part there, in whole gangs; a block fills whole or not at all.
    pub auction: bool,
}

/// A seller block: `qty` GPUs of `cluster` in each of `hours` consecutive hours from
/// `product`'s, at `price` per GPU-hour, offered to block auctions only and sold whole or
/// not at all (possibly to several bids together: every GPU-hour of it sold). It rests
/// (good-till) reserving its GPUs in every hour until an auction sells it, it expires or
/// is cancelled.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSellerBlock {
    pub account: AccountId,
    pub cluster: ClusterHandle,
    pub product: ProductHandle,
    pub hours: u32,
    pub price: Price,
    pub qty: Qty,
    pub tif: TimeInForce,
}

/// A bid's placement terms: all its GPUs in one domain at `level` (the cluster's tree:
/// node, NVLink domain, rack, block, cluster), required or, when `preferred`, the
/// tightest level from there out that can be had; `near` an allocation (trade id) the
/// buyer holds, whose cluster and domain at that level the GPUs must share.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Placement {
    pub level: Option<Level>,
    pub preferred: bool,
    pub near: Option<TradeId>,
}

impl Placement {
    pub fn is_set(&self) -> bool {
        self.level.is_some() || self.near.is_some()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    CreateProduct(ProductSpec),
    Halt {
        product: ProductHandle,
    },
    Resume {
        product: ProductHandle,
    },
    /// Gate closure now: the product closes and every resting order in it expires.
    Close {
        product: ProductHandle,
    },
    RegisterCapacity {
        account: AccountId,
        spec: ClusterSpec,
    },
    /// Takes the free (unsold) GPUs of the given nodes (all nodes when empty) out of sale
    /// for the hours `[from_hour, to_hour)` that the cluster covers.
    WithdrawCapacity {
        account: AccountId,
        cluster: ClusterHandle,
        from_hour: i64,
        to_hour: i64,
        nodes: Vec<String>,
    },
    Place(NewOrder),
    /// A bid that fills at least `min_qty` on entry (a multiple of its gang) or not at
    /// all; what it does not fill then goes on as an ordinary order (rests, or ends by
    /// its time in force).
    PlaceMinFill {
        order: NewOrder,
        min_qty: Qty,
    },
    PlaceBlock(NewBlock),
    /// An iceberg ask: at most `clip` of it shows in the book at a time; when the clip
    /// is taken the next (up to `clip` of what is hidden) shows with a new time priority.
    /// The seller's capacity reserve covers the whole order.
    PlaceIceberg {
        order: NewOrder,
        clip: Qty,
    },
    /// One-of: up to 16 blocks (or windows), of which at most one fills: at once, the
    /// cheapest that can, ties to the first listed; or, when all of them are good-till
    /// (the same time in force) and none can fill now, the group rests as its
    /// alternatives and the first to fill cancels the others, in one step.
    PlaceOneOf(Vec<NewBlock>),
    /// A linked basket: every order fills completely, or none trades (all cancelled,
    /// `FillOrKill`), at once.
    PlaceBasket(Vec<NewOrder>),
    /// Resale: an ask for GPUs of an allocation its seller holds (`parent`, a trade id):
    /// `slots` of it (node indices and GPU masks; empty: every GPU of it not already on
    /// offer), in that allocation's product and cluster, `order.qty` the number of GPUs.
    /// On each fill the allocation splits: the buyer's allocation names `parent` and
    /// the parent keeps the rest; the seller is charged `fee_bps` of the trade's value.
    PlaceResale {
        order: NewOrder,
        parent: TradeId,
        slots: Vec<Slot>,
        fee_bps: u32,
    },
    Cancel {
        account: AccountId,
        order_id: OrderId,
    },
    /// `price`/`qty` of `None` keep the current value; `qty` is the new remaining quantity.
    Amend {
        account: AccountId,
        order_id: OrderId,
        price: Option<Price>,
        qty: Option<Qty>,
    },
    /// Only moves time forward (expiring orders and closing products whose time has come).
    AdvanceTime,
    PlaceSellerBlock(NewSellerBlock),
    /// A product just listed is held for its block auction (see `ProductState::Auction`).
    HoldForAuction {
        product: ProductHandle,
    },
    /// An auction begins: every resting auction order whose first hour lies in
    /// `[from_hour, to_hour)` is frozen (no cancel or amend) until it clears.
    AuctionStart {
        auction: u64,
        from_hour: i64,
        to_hour: i64,
    },
    /// An auction's result, decided outside the engine: each fill checked against the
    /// state now and applied, or dropped whole; then every frozen order is live again.
    AuctionClear {
        auction: u64,
        fills: Vec<AuctionFill>,
        /// The clearing price of each product the fills trade in.
        prices: Vec<(ProductHandle, Price)>,
        /// Cleared with nothing because its result was lost (a restart): the hours of
        /// its window stay held for the next auction.
        abandoned: bool,
        /// The seller blocks it sold: each must be used whole by the fills that are
        /// applied (the fills of one that would not be are dropped).
        sold: Vec<OrderId>,
    },
    /// Numbers orders and trades from `base` on: a shard's ids (`index << 48`) never
    /// meet another shard's. Only before the first order or trade id is given.
    IdBase {
        base: u64,
    },
}

/// One order's part of an auction's result: `qty` GPUs in every hour of `hours` from
/// product `start` on, on cluster `cluster`'s GPUs `slots` (node index, GPU mask), the
/// same in each hour. `alternative` names a one-of group's alternative (0 otherwise).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuctionFill {
    pub order_id: OrderId,
    pub alternative: u32,
    pub cluster: ClusterHandle,
    pub start: ProductHandle,
    pub qty: Qty,
    pub slots: Vec<(u32, u64)>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CancelReason {
    /// The owner asked.
    Requested,
    /// Self-trade prevention.
    SelfTrade,
    /// The unfilled rest of an IOC or market order.
    Unfilled,
    /// A fill-or-kill order that could not fill completely.
    FillOrKill,
    /// A bid that could not fill its minimum on entry.
    MinimumFill,
}

impl CancelReason {
    pub fn as_str(self) -> &'static str {
        match self {
            CancelReason::Requested => "requested",
            CancelReason::SelfTrade => "self_trade",
            CancelReason::Unfilled => "unfilled",
            CancelReason::FillOrKill => "fill_or_kill",
            CancelReason::MinimumFill => "minimum_fill",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExpireReason {
    GoodTillTime,
    GateClosure,
}

impl ExpireReason {
    pub fn as_str(self) -> &'static str {
        match self {
            ExpireReason::GoodTillTime => "good_till_time",
            ExpireReason::GateClosure => "gate_closure",
        }
    }
}

/// The GPUs a buyer received for one trade.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Allocation {
    pub trade_id: TradeId,
    pub product: ProductHandle,
    pub cluster: ClusterHandle,
    pub hour: i64,
    pub buyer: AccountId,
    pub seller: AccountId,
    pub buy_order: OrderId,
    pub sell_order: OrderId,
    pub price: Price,
    /// The GPUs the buyer holds now: those bought, less any resold since.
    pub slots: Vec<Slot>,
    /// A resale's allocation: the allocation (trade id) its GPUs came from.
    pub parent: Option<TradeId>,
    /// A resale's fee, charged to its seller (micro-dollars; 0 otherwise).
    pub fee: Price,
}

impl Allocation {
    pub fn qty(&self) -> Qty {
        self.slots.iter().map(|s| s.gpus.count_ones() as Qty).sum()
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    ProductCreated {
        product: ProductHandle,
    },
    ProductState {
        product: ProductHandle,
        state: ProductState,
    },
    CapacityRegistered {
        cluster: ClusterHandle,
        account: AccountId,
    },
    CapacityWithdrawn {
        cluster: ClusterHandle,
        account: AccountId,
        gpu_hours: Qty,
    },
    Rejected {
        reason: Reject,
    },
    /// A one-of group became this alternative: just before its order is accepted (the
    /// one that filled, or the first), or, for a resting group, just before the trades
    /// of the alternative that fills from the side book (every other one gone with it).
    Chosen {
        alternative: u32,
        order_id: OrderId,
        block: NewBlock,
    },
    Accepted {
        order_id: OrderId,
        account: AccountId,
        product: ProductHandle,
        side: Side,
        price: Price,
        qty: Qty,
    },
    Trade {
        trade_id: TradeId,
        product: ProductHandle,
        price: Price,
        qty: Qty,
        /// Side of the incoming (aggressing) order.
        aggressor: Side,
        maker_order: OrderId,
        maker_account: AccountId,
        taker_order: OrderId,
        taker_account: AccountId,
    },
    /// A trade's GPUs: index into [`crate::Engine::allocations`], where the allocation is
    /// kept (the event does not copy its slots).
    Allocated {
        allocation: u32,
    },
    Cancelled {
        order_id: OrderId,
        account: AccountId,
        product: ProductHandle,
        /// Quantity that was still open and is now gone.
        qty: Qty,
        reason: CancelReason,
    },
    Expired {
        order_id: OrderId,
        account: AccountId,
        product: ProductHandle,
        qty: Qty,
        reason: ExpireReason,
    },
    Amended {
        order_id: OrderId,
        account: AccountId,
        product: ProductHandle,
        price: Price,
        qty: Qty,
        priority_kept: bool,
    },
    /// An auction cleared: the orders it filled and those whose fill was dropped (the
    /// resources gone, or the order no longer there), in the order given; after every
    /// trade of it.
    AuctionCleared {
        auction: u64,
        filled: Vec<OrderId>,
        dropped: Vec<OrderId>,
    },
    /// A block with placement terms is about to fill: the level it got and the domain
    /// (its labels joined by '/'), just before its trades.
    Placed {
        order_id: OrderId,
        level: Level,
        domain: String,
    },
}
