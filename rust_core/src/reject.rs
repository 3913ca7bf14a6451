//! Why a command was refused. A rejected command changes nothing.

use std::fmt;

/// Every reason the engine refuses a command. The string codes are the machine-readable
/// reasons that the bindings and the service expose; they never change meaning.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Reject {
    // products
    InvalidProductId,
    DuplicateProduct,
    InvalidTickSize,
    InvalidLotSize,
    InvalidSchedule,
    UnknownProduct,
    ProductNotOpen,
    ProductHalted,
    ProductClosed,
    // order terms
    NonPositivePrice,
    PriceTooHigh,
    PriceOffTick,
    NonPositiveQuantity,
    QuantityTooLarge,
    QuantityOffLot,
    InvalidTimeInForce,
    InvalidExpiry,
    PostOnlyWouldCross,
    // order lifecycle
    UnknownOrder,
    NotOwner,
    NothingToAmend,
    // capacity and placement
    InvalidGang,
    QuantityOffGang,
    ClusterRequired,
    ClusterNotAllowed,
    UnknownCluster,
    DuplicateCluster,
    InvalidCapacity,
    ClusterMismatch,
    OutsideAvailability,
    InsufficientCapacity,
    /// A block bid's terms: a buy of 1 to 168 consecutive hours (in a window of at most
    /// 336), IOC or FOK.
    InvalidBlock,
    /// A minimum fill: bids only, above 0, at most the quantity, a multiple of the gang.
    InvalidMinimumFill,
    /// A one-of group: 1 to 16 alternatives, each a block or window bid.
    InvalidGroup,
    /// A basket: 1 to 100 one-hour orders, no two of one product and side.
    InvalidBasket,
    // batch entry
    InvalidBatchRecord,
    InvalidDisplayQuantity,
    InvalidPlacement,
    /// A resale: GPUs of an allocation the seller holds and has not already offered.
    InvalidResale,
    /// An id base after ids were given, or one that does not fit.
    IdsInUse,
    /// An auction order's terms: a good-till limit bid (or one-of group) without
    /// placement terms.
    InvalidAuction,
    /// Cancel or amend of an order frozen in an auction being cleared; or an auction
    /// started while one runs.
    AuctionInProgress,
    /// An auction's result for an auction that is not running.
    AuctionNotRunning,
    /// A continuous bid in an hour held for its block auction.
    AuctionFirst,
}

impl Reject {
    pub const ALL: [Reject; 44] = [
        Reject::InvalidProductId,
        Reject::DuplicateProduct,
        Reject::InvalidTickSize,
        Reject::InvalidLotSize,
        Reject::InvalidSchedule,
        Reject::UnknownProduct,
        Reject::ProductNotOpen,
        Reject::ProductHalted,
        Reject::ProductClosed,
        Reject::NonPositivePrice,
        Reject::PriceTooHigh,
        Reject::PriceOffTick,
        Reject::NonPositiveQuantity,
        Reject::QuantityTooLarge,
        Reject::QuantityOffLot,
        Reject::InvalidTimeInForce,
        Reject::InvalidExpiry,
        Reject::PostOnlyWouldCross,
        Reject::UnknownOrder,
        Reject::NotOwner,
        Reject::NothingToAmend,
        Reject::InvalidGang,
        Reject::InvalidBlock,
        Reject::InvalidMinimumFill,
        Reject::InvalidGroup,
        Reject::InvalidBasket,
        Reject::QuantityOffGang,
        Reject::ClusterRequired,
        Reject::ClusterNotAllowed,
        Reject::UnknownCluster,
        Reject::DuplicateCluster,
        Reject::InvalidCapacity,
        Reject::ClusterMismatch,
        Reject::OutsideAvailability,
        Reject::InsufficientCapacity,
        Reject::InvalidBatchRecord,
        Reject::InvalidDisplayQuantity,
        Reject::InvalidPlacement,
        Reject::InvalidResale,
        Reject::IdsInUse,
        Reject::InvalidAuction,
        Reject::AuctionInProgress,
        Reject::AuctionNotRunning,
        Reject::AuctionFirst,
    ];

    /// Stable machine-readable code.
    pub fn code(self) -> &'static str {
        match self {
            Reject::InvalidProductId => "INVALID_PRODUCT_ID",
            Reject::DuplicateProduct => "DUPLICATE_PRODUCT",
            Reject::InvalidTickSize => "INVALID_TICK_SIZE",
            Reject::InvalidLotSize => "INVALID_LOT_SIZE",
            Reject::InvalidSchedule => "INVALID_SCHEDULE",
            Reject::UnknownProduct => "UNKNOWN_PRODUCT",
            Reject::ProductNotOpen => "PRODUCT_NOT_OPEN",
            Reject::ProductHalted => "PRODUCT_HALTED",
            Reject::ProductClosed => "PRODUCT_CLOSED",
            Reject::NonPositivePrice => "NON_POSITIVE_PRICE",
            Reject::PriceTooHigh => "PRICE_TOO_HIGH",
            Reject::PriceOffTick => "PRICE_OFF_TICK",
            Reject::NonPositiveQuantity => "NON_POSITIVE_QUANTITY",
            Reject::QuantityTooLarge => "QUANTITY_TOO_LARGE",
            Reject::QuantityOffLot => "QUANTITY_OFF_LOT",
            Reject::InvalidTimeInForce => "INVALID_TIME_IN_FORCE",
            Reject::InvalidExpiry => "INVALID_EXPIRY",
            Reject::PostOnlyWouldCross => "POST_ONLY_WOULD_CROSS",
            Reject::UnknownOrder => "UNKNOWN_ORDER",
            Reject::NotOwner => "NOT_OWNER",
            Reject::NothingToAmend => "NOTHING_TO_AMEND",
            Reject::InvalidGang => "INVALID_GANG",
            Reject::InvalidBlock => "INVALID_BLOCK",
            Reject::InvalidMinimumFill => "INVALID_MINIMUM_FILL",
            Reject::InvalidGroup => "INVALID_GROUP",
            Reject::InvalidBasket => "INVALID_BASKET",
            Reject::QuantityOffGang => "QUANTITY_OFF_GANG",
            Reject::ClusterRequired => "CLUSTER_REQUIRED",
            Reject::ClusterNotAllowed => "CLUSTER_NOT_ALLOWED",
            Reject::UnknownCluster => "UNKNOWN_CLUSTER",
            Reject::DuplicateCluster => "DUPLICATE_CLUSTER",
            Reject::InvalidCapacity => "INVALID_CAPACITY",
            Reject::ClusterMismatch => "CLUSTER_MISMATCH",
            Reject::OutsideAvailability => "OUTSIDE_AVAILABILITY",
            Reject::InsufficientCapacity => "INSUFFICIENT_CAPACITY",
            Reject::InvalidBatchRecord => "INVALID_BATCH_RECORD",
            Reject::InvalidDisplayQuantity => "INVALID_DISPLAY_QUANTITY",
            Reject::InvalidPlacement => "INVALID_PLACEMENT",
            Reject::InvalidResale => "INVALID_RESALE",
            Reject::IdsInUse => "IDS_IN_USE",
            Reject::InvalidAuction => "INVALID_AUCTION",
            Reject::AuctionInProgress => "AUCTION_IN_PROGRESS",
            Reject::AuctionNotRunning => "AUCTION_NOT_RUNNING",
            Reject::AuctionFirst => "AUCTION_FIRST",
        }
    }

    /// Human-readable explanation, for error messages.
    pub fn message(self) -> &'static str {
        match self {
            Reject::InvalidProductId => "product id must look like SKU/region/YYYY-MM-DDTHH",
            Reject::DuplicateProduct => "a product with this id already exists",
            Reject::InvalidTickSize => "tick size must be a positive number of micro-dollars",
            Reject::InvalidLotSize => "lot size must be a positive number of GPUs",
            Reject::InvalidSchedule => {
                "product must open before its gate closure, and close no later than delivery"
            }
            Reject::UnknownProduct => "no such product",
            Reject::ProductNotOpen => "the product is not open for trading yet",
            Reject::ProductHalted => "trading in the product is halted",
            Reject::ProductClosed => "the product is past gate closure",
            Reject::NonPositivePrice => "price must be positive",
            Reject::PriceTooHigh => "price exceeds the maximum of $1,000,000 per GPU-hour",
            Reject::PriceOffTick => "price is not a multiple of the product's tick size",
            Reject::NonPositiveQuantity => "quantity must be positive",
            Reject::QuantityTooLarge => "quantity exceeds the maximum of 10,000,000 GPUs",
            Reject::QuantityOffLot => "quantity is not a multiple of the product's lot size",
            Reject::InvalidTimeInForce => {
                "time in force does not fit the order type (market: IOC or FOK; post-only: GTC or GTD)"
            }
            Reject::InvalidExpiry => "good-till-time expiry must be after the current time",
            Reject::PostOnlyWouldCross => "post-only order would trade on arrival",
            Reject::UnknownOrder => "no such open order (never placed, or already done)",
            Reject::NotOwner => "the order belongs to another account",
            Reject::NothingToAmend => "the amendment changes neither price nor quantity",
            Reject::InvalidGang => "gang size must be a power of two from 1 to 64",
            Reject::InvalidGroup => "a one-of group has 1 to 16 alternatives, each a block bid",
            Reject::InvalidBasket => {
                "a basket has 1 to 100 one-hour orders, no two of one product and side"
            }
            Reject::InvalidMinimumFill => {
                "a minimum fill is for bids: above 0, at most the quantity, whole gangs"
            }
            Reject::InvalidBlock => {
                "a block is a limit bid for 1 to 168 consecutive hours, inside a window of at \
                 most 336, every hour of it listed; it is not amended (cancel it and place \
                 another)"
            }
            Reject::QuantityOffGang => "quantity is not a multiple of the gang size",
            Reject::ClusterRequired => "an ask must name the cluster it sells from",
            Reject::ClusterNotAllowed => "only asks name a cluster; bids use placement constraints",
            Reject::UnknownCluster => "no such cluster of yours",
            Reject::DuplicateCluster => "you already have a cluster with this id",
            Reject::InvalidCapacity => {
                "capacity needs at least one node, distinct node ids, 1 to 64 GPUs per node and a non-empty hour range"
            }
            Reject::ClusterMismatch => {
                "the cluster's SKU or region differ from the product's"
            }
            Reject::OutsideAvailability => "the cluster is not available in the product's delivery hour",
            Reject::InsufficientCapacity => {
                "not enough unsold, unoffered GPUs in the cluster for this hour"
            }
            Reject::InvalidBatchRecord => "the batch record has an unknown kind or enum value",
            Reject::InvalidPlacement => {
                "placement terms are for bids; a colocation names an allocation of this SKU \
                 and region that the buyer holds"
            }
            Reject::InvalidResale => {
                "a resale offers GPUs of an allocation the seller holds, not already on \
                 offer, in that allocation's product and cluster, for a fee of at most 10,000 \
                 basis points"
            }
            Reject::InvalidDisplayQuantity => {
                "a display quantity is for resting asks: above 0, at most the quantity, whole lots"
            }
            Reject::IdsInUse => {
                "a shard's id base is set once, before any order or trade id is given"
            }
            Reject::InvalidAuction => {
                "an auction order is a good-till (GTC or GTD) limit bid: one hour, a block, \
                 a window or a one-of group, without minimum, iceberg or resale terms"
            }
            Reject::AuctionInProgress => {
                "an auction is being cleared: its orders cannot be cancelled or amended, \
                 and no other auction starts, until it has cleared"
            }
            Reject::AuctionNotRunning => "no such auction is running",
            Reject::AuctionFirst => {
                "this hour trades in its block auction first: bid with auction (--auction), \
                 or continuously once its auction has cleared"
            }
        }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code(), self.message())
    }
}

impl std::error::Error for Reject {}
