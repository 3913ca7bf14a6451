//! Scalar types of the market: money, quantity, time, identifiers and the
//! small enums every order carries.

/// Price in micro-dollars per GPU-hour (`$2.10` is `2_100_000`). Never a float.
pub type Price = i64;
/// Quantity in whole GPUs; one unit is one GPU for one delivery hour.
pub type Qty = i64;
/// Microseconds since the Unix epoch, UTC. Supplied by the caller: the core never reads a clock.
pub type Timestamp = i64;
/// Engine-assigned order identifier, strictly increasing from 1.
pub type OrderId = u64;
/// Account identifier assigned by the gateway.
pub type AccountId = u64;
/// Engine-assigned trade identifier, strictly increasing from 1.
pub type TradeId = u64;
/// Dense handle of a product, assigned in creation order from 0.
pub type ProductHandle = u32;

/// Largest accepted price: $1M per GPU-hour. Keeps `price * qty` far from overflow.
pub const MAX_PRICE: Price = 1_000_000_000_000;
/// Largest accepted quantity for one order: ten million GPU-hours.
pub const MAX_QTY: Qty = 10_000_000;

pub const MICROS_PER_HOUR: Timestamp = 3_600_000_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Side {
    Buy,
    Sell,
}

impl Side {
    pub fn opposite(self) -> Side {
        match self {
            Side::Buy => Side::Sell,
            Side::Sell => Side::Buy,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Buy => "buy",
            Side::Sell => "sell",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OrderType {
    /// Trades at the limit price or better.
    Limit,
    /// Trades at any price up to (buy) or down to (sell) a mandatory protection price;
    /// never rests.
    Market,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TimeInForce {
    /// Good till the product's gate closure.
    GoodTillClose,
    /// Good till the given time (expired once the engine's time reaches it), or closure if earlier.
    GoodTillTime(Timestamp),
    /// Fill what is possible now, cancel the rest.
    ImmediateOrCancel,
    /// Fill everything now or nothing at all.
    FillOrKill,
}

impl TimeInForce {
    pub fn rests(self) -> bool {
        matches!(
            self,
            TimeInForce::GoodTillClose | TimeInForce::GoodTillTime(_)
        )
    }
}

/// What happens when an incoming order would trade with a resting order of the same account.
/// The incoming order's mode decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum SelfTradePrevention {
    /// Cancel the incoming order's remaining quantity.
    #[default]
    CancelNewest,
    /// Cancel the resting order and keep matching.
    CancelOldest,
    /// Cancel both.
    CancelBoth,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ProductState {
    Open,
    Halted,
    Closed,
    /// Held for its block auction: asks and auction bids rest, no other bid is taken,
    /// nothing trades continuously; open once the auction whose window holds it clears.
    Auction,
}

impl ProductState {
    pub fn as_str(self) -> &'static str {
        match self {
            ProductState::Open => "open",
            ProductState::Halted => "halted",
            ProductState::Closed => "closed",
            ProductState::Auction => "auction",
        }
    }
}
