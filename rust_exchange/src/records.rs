//! Order records: what the exchange remembers of every order it accepted, resting or
//! done, and how a record reads as the contract's `Order`.

use crate::{pb, store};
use spotex_core::{Level, OrderType, Placement, Side, TimeInForce};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FillRecord {
    pub trade_id: u64,
    pub price: i64,
    pub qty: i64,
    pub maker: bool,
    pub ts: i64,
    /// A block's fill: the product (hour) it traded in; empty for a one-hour order.
    pub product: String,
    /// A resale's fill: the fee its seller paid.
    pub fee: i64,
    /// An auction's fill: its id (0: continuous trading).
    pub auction: u64,
}

impl FillRecord {
    pub fn to_pb(&self) -> pb::Fill {
        pb::Fill {
            trade_id: self.trade_id,
            price_micros: self.price,
            quantity: self.qty,
            maker: self.maker,
            time_micros: self.ts,
            product_id: self.product.clone(),
            fee_micros: self.fee,
            auction_id: self.auction,
        }
    }
}

/// Where an order is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OrderState {
    Open,
    PartiallyFilled,
    Filled,
    Cancelled,
    Expired,
}

impl OrderState {
    fn from_pb(s: i32) -> Option<OrderState> {
        Some(match pb::OrderState::try_from(s).ok()? {
            pb::OrderState::Open => OrderState::Open,
            pb::OrderState::PartiallyFilled => OrderState::PartiallyFilled,
            pb::OrderState::Filled => OrderState::Filled,
            pb::OrderState::Cancelled => OrderState::Cancelled,
            pb::OrderState::Expired => OrderState::Expired,
            _ => return None,
        })
    }

    fn to_pb(self) -> pb::OrderState {
        match self {
            OrderState::Open => pb::OrderState::Open,
            OrderState::PartiallyFilled => pb::OrderState::PartiallyFilled,
            OrderState::Filled => pb::OrderState::Filled,
            OrderState::Cancelled => pb::OrderState::Cancelled,
            OrderState::Expired => pb::OrderState::Expired,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrderRecord {
    pub order_id: u64,
    pub account: u64,
    pub client_order_id: String,
    pub product: String,
    pub side: Side,
    pub order_type: OrderType,
    pub price: i64,
    pub quantity: i64,
    pub tif: TimeInForce,
    pub cluster: String,
    pub gang: u32,
    pub created_at: i64,
    pub filled: i64,
    pub remaining: i64,
    pub state: OrderState,
    pub reason: String,
    pub fills: Vec<FillRecord>,
    /// A block's consecutive hours (its quantities count GPUs in every hour); else 1.
    pub hours: u32,
    /// A block's window from its product's hour; 0: none.
    pub window: u32,
    /// The minimum fill it had on entry; 0: none.
    pub min_qty: i64,
    /// The range (or the caller's own group) it belongs to; 0: none.
    pub range_id: u64,
    /// An iceberg's clip; 0: none.
    pub display: i64,
    /// Placement terms asked for.
    pub place: Placement,
    /// Once filled with placement terms: the level it got and the domain.
    pub placed: Option<(Level, String)>,
    /// A resale: the allocation (trade id) its GPUs come from, and its fee in basis
    /// points; `None` otherwise.
    pub resale: Option<(u64, u32)>,
    /// An auction order.
    pub auction: bool,
}

/// A level as the contract names it.
pub fn locality_to_pb(level: Option<Level>) -> pb::Locality {
    match level {
        None => pb::Locality::Unspecified,
        Some(Level::Node) => pb::Locality::Node,
        Some(Level::Domain) => pb::Locality::NvlinkDomain,
        Some(Level::Rack) => pb::Locality::Rack,
        Some(Level::Block) => pb::Locality::Block,
        Some(Level::Cluster) => pb::Locality::Cluster,
    }
}

pub fn locality_of(l: pb::Locality) -> Option<Level> {
    match l {
        pb::Locality::Unspecified => None,
        pb::Locality::Node => Some(Level::Node),
        pb::Locality::NvlinkDomain => Some(Level::Domain),
        pb::Locality::Rack => Some(Level::Rack),
        pb::Locality::Block => Some(Level::Block),
        pb::Locality::Cluster => Some(Level::Cluster),
    }
}

pub fn side_to_pb(side: Side) -> pb::Side {
    match side {
        Side::Buy => pb::Side::Buy,
        Side::Sell => pb::Side::Sell,
    }
}

impl OrderRecord {
    pub fn is_open(&self) -> bool {
        self.remaining > 0
    }

    /// The contract's `Order`; executions carry it without its fills (the fill travels
    /// beside it), responses and queries with them.
    pub fn to_pb(&self, with_fills: bool) -> pb::Order {
        pb::Order {
            order_id: self.order_id,
            client_order_id: self.client_order_id.clone(),
            product_id: self.product.clone(),
            side: side_to_pb(self.side) as i32,
            order_type: match self.order_type {
                OrderType::Limit => pb::OrderType::Limit,
                OrderType::Market => pb::OrderType::Market,
            } as i32,
            price_micros: self.price,
            quantity: self.quantity,
            filled_quantity: self.filled,
            remaining_quantity: self.remaining,
            state: self.state.to_pb() as i32,
            time_in_force: match self.tif {
                TimeInForce::GoodTillClose => pb::TimeInForce::Gtc,
                TimeInForce::GoodTillTime(_) => pb::TimeInForce::Gtd,
                TimeInForce::ImmediateOrCancel => pb::TimeInForce::Ioc,
                TimeInForce::FillOrKill => pb::TimeInForce::Fok,
            } as i32,
            cluster_id: self.cluster.clone(),
            gang: self.gang,
            fills: if with_fills {
                self.fills.iter().map(FillRecord::to_pb).collect()
            } else {
                Vec::new()
            },
            created_at_micros: self.created_at,
            reason: self.reason.clone(),
            hours: self.hours,
            window_hours: self.window,
            min_quantity: self.min_qty,
            range_id: self.range_id,
            display_quantity: self.display,
            locality: locality_to_pb(self.place.level) as i32,
            locality_preferred: self.place.preferred,
            colocate_with: self.place.near.unwrap_or(0),
            placed_level: locality_to_pb(self.placed.as_ref().map(|p| p.0)) as i32,
            placed_domain: self.placed.as_ref().map_or(String::new(), |p| p.1.clone()),
            resell_trade_id: self.resale.map_or(0, |r| r.0),
            resale_fee_bps: self.resale.map_or(0, |r| r.1),
            fees_micros: self.fills.iter().map(|f| f.fee).sum(),
            auction: self.auction,
        }
    }
}

impl OrderRecord {
    /// The record as the store keeps it in a snapshot.
    pub fn to_store(&self) -> store::OrderRecord {
        store::OrderRecord {
            order: Some(self.to_pb(true)),
            account: self.account,
            expire_at_micros: match self.tif {
                TimeInForce::GoodTillTime(t) => t,
                _ => 0,
            },
        }
    }

    /// A record back from a snapshot; None if it does not read as one.
    pub fn from_store(r: &store::OrderRecord) -> Option<OrderRecord> {
        let o = r.order.as_ref()?;
        Some(OrderRecord {
            order_id: o.order_id,
            account: r.account,
            client_order_id: o.client_order_id.clone(),
            product: o.product_id.clone(),
            side: match pb::Side::try_from(o.side).ok()? {
                pb::Side::Buy => Side::Buy,
                pb::Side::Sell => Side::Sell,
                pb::Side::Unspecified => return None,
            },
            order_type: match pb::OrderType::try_from(o.order_type).ok()? {
                pb::OrderType::Limit => OrderType::Limit,
                pb::OrderType::Market => OrderType::Market,
            },
            price: o.price_micros,
            quantity: o.quantity,
            tif: match pb::TimeInForce::try_from(o.time_in_force).ok()? {
                pb::TimeInForce::Gtc => TimeInForce::GoodTillClose,
                pb::TimeInForce::Gtd => TimeInForce::GoodTillTime(r.expire_at_micros),
                pb::TimeInForce::Ioc => TimeInForce::ImmediateOrCancel,
                pb::TimeInForce::Fok => TimeInForce::FillOrKill,
            },
            cluster: o.cluster_id.clone(),
            gang: o.gang,
            created_at: o.created_at_micros,
            filled: o.filled_quantity,
            remaining: o.remaining_quantity,
            state: OrderState::from_pb(o.state)?,
            reason: o.reason.clone(),
            fills: o
                .fills
                .iter()
                .map(|f| FillRecord {
                    trade_id: f.trade_id,
                    price: f.price_micros,
                    qty: f.quantity,
                    maker: f.maker,
                    ts: f.time_micros,
                    product: f.product_id.clone(),
                    fee: f.fee_micros,
                    auction: f.auction_id,
                })
                .collect(),
            hours: o.hours.max(1),
            window: o.window_hours,
            min_qty: o.min_quantity,
            range_id: o.range_id,
            display: o.display_quantity,
            place: Placement {
                level: locality_of(
                    pb::Locality::try_from(o.locality).unwrap_or(pb::Locality::Unspecified),
                ),
                preferred: o.locality_preferred,
                near: Some(o.colocate_with).filter(|&t| t != 0),
            },
            placed: locality_of(
                pb::Locality::try_from(o.placed_level).unwrap_or(pb::Locality::Unspecified),
            )
            .map(|l| (l, o.placed_domain.clone())),
            resale: (o.resell_trade_id != 0).then_some((o.resell_trade_id, o.resale_fee_bps)),
            auction: o.auction,
        })
    }
}
