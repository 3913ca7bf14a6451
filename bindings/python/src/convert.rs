//! The values the per-call `Engine` hands to Python (`Event`, `Allocation`, `Order`,
//! `Utilisation`) and the conversions between the core's types and Python's: handles
//! and ids, events, resting orders, terms named by strings, and the code tables of batch
//! records.

use pyo3::prelude::*;

use spotex_core as core;
use spotex_core::{
    CancelReason, Event as CoreEvent, Reject, SelfTradePrevention, Side, TimeInForce,
};

use crate::engine::Engine;
use crate::errors::{invalid, reject_to_pyerr};

/// One engine event, flattened: fields that do not apply to `kind` are `None`.
#[pyclass(frozen, get_all, module = "spotex._core")]
pub(crate) struct Event {
    kind: &'static str,
    product: Option<String>,
    order_id: Option<u64>,
    account: Option<u64>,
    side: Option<&'static str>,
    price: Option<i64>,
    qty: Option<i64>,
    reason: Option<&'static str>,
    trade_id: Option<u64>,
    maker_order: Option<u64>,
    maker_account: Option<u64>,
    priority_kept: Option<bool>,
    state: Option<&'static str>,
    cluster: Option<String>,
    allocation: Option<Py<Allocation>>,
}

#[pymethods]
impl Event {
    fn __repr__(&self) -> String {
        let mut parts = vec![format!("kind={:?}", self.kind)];
        let mut add = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                parts.push(format!("{k}={v}"));
            }
        };
        add("product", self.product.as_ref().map(|p| format!("{p:?}")));
        add("order_id", self.order_id.map(|v| v.to_string()));
        add("account", self.account.map(|v| v.to_string()));
        add("side", self.side.map(|v| format!("{v:?}")));
        add("price", self.price.map(|v| v.to_string()));
        add("qty", self.qty.map(|v| v.to_string()));
        add("reason", self.reason.map(|v| format!("{v:?}")));
        add("trade_id", self.trade_id.map(|v| v.to_string()));
        add("maker_order", self.maker_order.map(|v| v.to_string()));
        add("maker_account", self.maker_account.map(|v| v.to_string()));
        add(
            "priority_kept",
            self.priority_kept
                .map(|v| if v { "True".into() } else { "False".into() }),
        );
        add("state", self.state.map(|v| format!("{v:?}")));
        add("cluster", self.cluster.as_ref().map(|v| format!("{v:?}")));
        format!("Event({})", parts.join(", "))
    }
}

/// The GPUs a buyer got for one trade.
#[pyclass(frozen, get_all, module = "spotex._core")]
#[derive(Clone)]
pub(crate) struct Allocation {
    trade_id: u64,
    product: String,
    cluster: String,
    hour: i64,
    buyer: u64,
    seller: u64,
    buy_order: u64,
    sell_order: u64,
    price: i64,
    qty: i64,
    /// `(node_id, [gpu indices])`, in node order.
    slots: Vec<(String, Vec<u32>)>,
}

#[pymethods]
impl Allocation {
    fn __repr__(&self) -> String {
        format!(
            "Allocation(trade_id={}, product={:?}, cluster={:?}, buyer={}, seller={}, qty={}, price={}, slots={:?})",
            self.trade_id, self.product, self.cluster, self.buyer, self.seller, self.qty, self.price, self.slots
        )
    }
}

/// A resting order.
#[pyclass(frozen, get_all, module = "spotex._core")]
pub(crate) struct Order {
    order_id: u64,
    account: u64,
    product: String,
    side: &'static str,
    price: i64,
    remaining: i64,
    filled: i64,
    tif: &'static str,
    expire_at: Option<i64>,
    post_only: bool,
    stp: &'static str,
    gang: u32,
    cluster: Option<String>,
    /// An iceberg's clip (0: none) and what it keeps hidden.
    clip: i64,
    hidden: i64,
}

#[pymethods]
impl Order {
    fn __repr__(&self) -> String {
        format!(
            "Order(order_id={}, account={}, product={:?}, side={:?}, price={}, remaining={}, filled={})",
            self.order_id, self.account, self.product, self.side, self.price, self.remaining, self.filled
        )
    }
}

/// Sold / offered / idle / withdrawn GPU-hours of a cluster for one hour.
#[pyclass(frozen, get_all, module = "spotex._core")]
pub(crate) struct Utilisation {
    pub(crate) capacity: i64,
    pub(crate) sold: i64,
    pub(crate) offered: i64,
    pub(crate) idle: i64,
    pub(crate) withdrawn: i64,
}

#[pymethods]
impl Utilisation {
    fn __repr__(&self) -> String {
        format!(
            "Utilisation(capacity={}, sold={}, offered={}, idle={}, withdrawn={})",
            self.capacity, self.sold, self.offered, self.idle, self.withdrawn
        )
    }
}

pub(crate) fn stp_name(s: SelfTradePrevention) -> &'static str {
    match s {
        SelfTradePrevention::CancelNewest => "cancel_newest",
        SelfTradePrevention::CancelOldest => "cancel_oldest",
        SelfTradePrevention::CancelBoth => "cancel_both",
    }
}

pub(crate) fn tif_name(t: TimeInForce) -> (&'static str, Option<i64>) {
    match t {
        TimeInForce::GoodTillClose => ("gtc", None),
        TimeInForce::GoodTillTime(at) => ("gtd", Some(at)),
        TimeInForce::ImmediateOrCancel => ("ioc", None),
        TimeInForce::FillOrKill => ("fok", None),
    }
}

impl Engine {
    fn product_id(&self, h: u32) -> String {
        self.inner.products()[h as usize].spec.id.clone()
    }

    fn cluster_id(&self, h: u32) -> String {
        self.inner.clusters()[h as usize].spec.id.clone()
    }

    pub(crate) fn product(&self, py: Python<'_>, id: &str) -> PyResult<u32> {
        self.inner
            .product_handle(id)
            .ok_or_else(|| reject_to_pyerr(py, Reject::UnknownProduct))
    }

    /// The cluster `account` registered as `id`. A cluster id is scoped to its seller;
    /// without an account, the one cluster of that id (refused when several sellers use
    /// it).
    pub(crate) fn cluster(&self, py: Python<'_>, account: Option<u64>, id: &str) -> PyResult<u32> {
        let found = match account {
            Some(a) => self.inner.cluster_handle(a, id),
            None => {
                let mut named = self.inner.clusters_named(id);
                match (named.next(), named.next()) {
                    (Some(h), None) => Some(h),
                    (Some(_), Some(_)) => {
                        return Err(invalid(
                            py,
                            "several sellers have a cluster of this id: name the account",
                        ))
                    }
                    _ => None,
                }
            }
        };
        found.ok_or_else(|| reject_to_pyerr(py, Reject::UnknownCluster))
    }

    pub(crate) fn allocation(&self, a: &core::Allocation) -> Allocation {
        let c = &self.inner.clusters()[a.cluster as usize];
        Allocation {
            trade_id: a.trade_id,
            product: self.product_id(a.product),
            cluster: c.spec.id.clone(),
            hour: a.hour,
            buyer: a.buyer,
            seller: a.seller,
            buy_order: a.buy_order,
            sell_order: a.sell_order,
            price: a.price,
            qty: a.qty(),
            slots: a
                .slots
                .iter()
                .map(|s| {
                    let gpus = (0..64).filter(|b| s.gpus & (1u64 << b) != 0).collect();
                    (c.spec.nodes[s.node as usize].id.clone(), gpus)
                })
                .collect(),
        }
    }

    pub(crate) fn convert(&self, py: Python<'_>, e: &CoreEvent) -> PyResult<Event> {
        let mut ev = Event {
            kind: "",
            product: None,
            order_id: None,
            account: None,
            side: None,
            price: None,
            qty: None,
            reason: None,
            trade_id: None,
            maker_order: None,
            maker_account: None,
            priority_kept: None,
            state: None,
            cluster: None,
            allocation: None,
        };
        match e {
            CoreEvent::ProductCreated { product } => {
                ev.kind = "product_created";
                ev.product = Some(self.product_id(*product));
            }
            CoreEvent::ProductState { product, state } => {
                ev.kind = "product_state";
                ev.product = Some(self.product_id(*product));
                ev.state = Some(state.as_str());
            }
            CoreEvent::CapacityRegistered { cluster, account } => {
                ev.kind = "capacity_registered";
                ev.cluster = Some(self.cluster_id(*cluster));
                ev.account = Some(*account);
            }
            CoreEvent::CapacityWithdrawn {
                cluster,
                account,
                gpu_hours,
            } => {
                ev.kind = "capacity_withdrawn";
                ev.cluster = Some(self.cluster_id(*cluster));
                ev.account = Some(*account);
                ev.qty = Some(*gpu_hours);
            }
            CoreEvent::Rejected { reason } => {
                ev.kind = "rejected";
                ev.reason = Some(reason.code());
            }
            CoreEvent::Chosen { alternative, .. } => {
                // one-of groups come through the exchange; the per-call engine has none
                ev.kind = "chosen";
                ev.qty = Some(*alternative as i64);
            }
            CoreEvent::Accepted {
                order_id,
                account,
                product,
                side,
                price,
                qty,
            } => {
                ev.kind = "accepted";
                ev.order_id = Some(*order_id);
                ev.account = Some(*account);
                ev.product = Some(self.product_id(*product));
                ev.side = Some(side.as_str());
                ev.price = Some(*price);
                ev.qty = Some(*qty);
            }
            CoreEvent::Trade {
                trade_id,
                product,
                price,
                qty,
                aggressor,
                maker_order,
                maker_account,
                taker_order,
                taker_account,
            } => {
                ev.kind = "trade";
                ev.trade_id = Some(*trade_id);
                ev.product = Some(self.product_id(*product));
                ev.price = Some(*price);
                ev.qty = Some(*qty);
                ev.side = Some(aggressor.as_str());
                ev.maker_order = Some(*maker_order);
                ev.maker_account = Some(*maker_account);
                ev.order_id = Some(*taker_order);
                ev.account = Some(*taker_account);
            }
            CoreEvent::Allocated { allocation } => {
                let a = &self.inner.allocations()[*allocation as usize];
                ev.kind = "allocated";
                ev.trade_id = Some(a.trade_id);
                ev.product = Some(self.product_id(a.product));
                ev.order_id = Some(a.buy_order);
                ev.account = Some(a.buyer);
                ev.price = Some(a.price);
                ev.qty = Some(a.qty());
                ev.cluster = Some(self.cluster_id(a.cluster));
                ev.allocation = Some(Py::new(py, self.allocation(a))?);
            }
            CoreEvent::Cancelled {
                order_id,
                account,
                product,
                qty,
                reason,
            } => {
                ev.kind = "cancelled";
                ev.order_id = Some(*order_id);
                ev.account = Some(*account);
                ev.product = Some(self.product_id(*product));
                ev.qty = Some(*qty);
                ev.reason = Some(reason.as_str());
            }
            CoreEvent::Expired {
                order_id,
                account,
                product,
                qty,
                reason,
            } => {
                ev.kind = "expired";
                ev.order_id = Some(*order_id);
                ev.account = Some(*account);
                ev.product = Some(self.product_id(*product));
                ev.qty = Some(*qty);
                ev.reason = Some(reason.as_str());
            }
            CoreEvent::Amended {
                order_id,
                account,
                product,
                price,
                qty,
                priority_kept,
            } => {
                ev.kind = "amended";
                ev.order_id = Some(*order_id);
                ev.account = Some(*account);
                ev.product = Some(self.product_id(*product));
                ev.price = Some(*price);
                ev.qty = Some(*qty);
                ev.priority_kept = Some(*priority_kept);
            }
            CoreEvent::Placed {
                order_id,
                level,
                domain,
            } => {
                ev.kind = "placed";
                ev.order_id = Some(*order_id);
                ev.state = Some(level.as_str());
                ev.cluster = Some(domain.clone());
            }
            CoreEvent::AuctionCleared { .. } => {
                ev.kind = "auction_cleared";
            }
        }
        Ok(ev)
    }
}

impl Engine {
    pub(crate) fn order_view(&self, o: &core::RestingOrder) -> Order {
        let (tif, expire_at) = tif_name(o.tif);
        Order {
            order_id: o.id,
            account: o.account,
            product: self.product_id(o.product),
            side: o.side.as_str(),
            price: o.price,
            remaining: o.remaining,
            filled: o.filled,
            tif,
            expire_at,
            post_only: o.post_only,
            stp: stp_name(o.stp),
            gang: o.gang,
            cluster: o.cluster.map(|c| self.cluster_id(c)),
            clip: o.clip,
            hidden: o.hidden,
        }
    }
}

pub(crate) fn parse_tif(
    py: Python<'_>,
    tif: &str,
    expire_at: Option<i64>,
) -> PyResult<TimeInForce> {
    Ok(match (tif, expire_at) {
        ("gtc", None) => TimeInForce::GoodTillClose,
        ("gtd", Some(at)) => TimeInForce::GoodTillTime(at),
        ("ioc", None) => TimeInForce::ImmediateOrCancel,
        ("fok", None) => TimeInForce::FillOrKill,
        ("gtd", None) => return Err(invalid(py, "tif 'gtd' needs expire_at")),
        ("gtc" | "ioc" | "fok", Some(_)) => {
            return Err(invalid(py, "expire_at goes with tif 'gtd' only"))
        }
        _ => return Err(invalid(py, "tif must be 'gtc', 'gtd', 'ioc' or 'fok'")),
    })
}

pub(crate) fn parse_side(py: Python<'_>, s: &str) -> PyResult<Side> {
    match s {
        "buy" | "bid" => Ok(Side::Buy),
        "sell" | "ask" => Ok(Side::Sell),
        _ => Err(invalid(py, "side must be 'buy' or 'sell'")),
    }
}

/// Machine-readable reject codes, indexed like the `code` byte of batch event records.
#[pyfunction]
pub(crate) fn reject_codes() -> Vec<&'static str> {
    Reject::ALL.iter().map(|r| r.code()).collect()
}

/// Cancel reasons, indexed like the `code` byte of batch `cancelled` records.
#[pyfunction]
pub(crate) fn cancel_reasons() -> Vec<&'static str> {
    [
        CancelReason::Requested,
        CancelReason::SelfTrade,
        CancelReason::Unfilled,
        CancelReason::FillOrKill,
        CancelReason::MinimumFill,
    ]
    .iter()
    .map(|r| r.as_str())
    .collect()
}
