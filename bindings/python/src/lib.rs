//! `spotex._core`: the thin PyO3 face of spotex-core. Types in, types out; every engine
//! rejection becomes a named Python exception; the GIL is released while the core works.

mod exchange;
mod terms;
mod writer;

use std::sync::{Arc, Mutex};

use pyo3::buffer::PyBuffer;
use pyo3::create_exception;
use pyo3::exceptions::{PyIndexError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use spotex_core as core;
use spotex_core::{
    CancelReason, Command, Engine as CoreEngine, Event as CoreEvent, NewBlock, NewOrder, OrderType,
    Reject, SelfTradePrevention, Side, TimeInForce,
};

// The base class is pure Python (spotex/errors.py), so the SDK raises the same base
// without loading this extension.
pyo3::import_exception!(spotex.errors, SpotexError);
create_exception!(
    _core,
    InvalidOrderError,
    SpotexError,
    "The order's terms are invalid."
);
create_exception!(
    _core,
    PostOnlyWouldCrossError,
    InvalidOrderError,
    "A post-only order would trade on arrival."
);
create_exception!(
    _core,
    InvalidProductError,
    SpotexError,
    "The product definition is invalid or exists already."
);
create_exception!(_core, UnknownProductError, SpotexError, "No such product.");
create_exception!(
    _core,
    ProductStateError,
    SpotexError,
    "The product is not open, halted, or closed."
);
create_exception!(_core, UnknownOrderError, SpotexError, "No such open order.");
create_exception!(
    _core,
    NotOwnerError,
    SpotexError,
    "The order or cluster belongs to another account."
);
create_exception!(
    _core,
    JournalError,
    SpotexError,
    "The journal or a snapshot is corrupt or unreadable."
);
create_exception!(
    _core,
    CapacityError,
    SpotexError,
    "Capacity or placement terms are invalid or insufficient."
);

/// One arm per rejection class; the instance carries the machine-readable `reason`.
fn reject_to_pyerr(py: Python<'_>, r: Reject) -> PyErr {
    use Reject::*;
    let msg = r.message();
    let err = match r {
        InvalidProductId | DuplicateProduct | InvalidTickSize | InvalidLotSize
        | InvalidSchedule => InvalidProductError::new_err(msg),
        UnknownProduct => UnknownProductError::new_err(msg),
        ProductNotOpen | ProductHalted | ProductClosed => ProductStateError::new_err(msg),
        PostOnlyWouldCross => PostOnlyWouldCrossError::new_err(msg),
        NonPositivePrice
        | PriceTooHigh
        | PriceOffTick
        | NonPositiveQuantity
        | QuantityTooLarge
        | QuantityOffLot
        | InvalidTimeInForce
        | InvalidExpiry
        | NothingToAmend
        | InvalidGang
        | QuantityOffGang
        | InvalidBatchRecord
        | InvalidBlock
        | InvalidMinimumFill
        | InvalidGroup
        | InvalidBasket
        | InvalidDisplayQuantity
        | InvalidPlacement
        | InvalidResale
        | IdsInUse => InvalidOrderError::new_err(msg),
        UnknownOrder => UnknownOrderError::new_err(msg),
        NotOwner => NotOwnerError::new_err(msg),
        ClusterRequired | ClusterNotAllowed | UnknownCluster | DuplicateCluster
        | InvalidCapacity | ClusterMismatch | OutsideAvailability | InsufficientCapacity => {
            CapacityError::new_err(msg)
        }
    };
    // Exceptions have a __dict__, so this cannot fail in practice; ignore if it did.
    let _ = err.value(py).setattr("reason", r.code());
    err
}

fn invalid(py: Python<'_>, what: &str) -> PyErr {
    let err = InvalidOrderError::new_err(what.to_string());
    let _ = err.value(py).setattr("reason", "INVALID_ARGUMENT");
    err
}

/// One engine event, flattened: fields that do not apply to `kind` are `None`.
#[pyclass(frozen, get_all, module = "spotex._core")]
struct Event {
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
struct Allocation {
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
struct Order {
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
struct Utilisation {
    capacity: i64,
    sold: i64,
    offered: i64,
    idle: i64,
    withdrawn: i64,
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

fn stp_name(s: SelfTradePrevention) -> &'static str {
    match s {
        SelfTradePrevention::CancelNewest => "cancel_newest",
        SelfTradePrevention::CancelOldest => "cancel_oldest",
        SelfTradePrevention::CancelBoth => "cancel_both",
    }
}

fn tif_name(t: TimeInForce) -> (&'static str, Option<i64>) {
    match t {
        TimeInForce::GoodTillClose => ("gtc", None),
        TimeInForce::GoodTillTime(at) => ("gtd", Some(at)),
        TimeInForce::ImmediateOrCancel => ("ioc", None),
        TimeInForce::FillOrKill => ("fok", None),
    }
}

/// What one order, cancel or amend produced: a sequence of `Event`, built only as it is
/// read (`len()` costs nothing; most passive orders are never looked into).
#[pyclass(module = "spotex._core", sequence)]
struct Events {
    engine: Py<Engine>,
    events: Vec<CoreEvent>,
}

impl Events {
    fn all(&self, py: Python<'_>) -> PyResult<Vec<Event>> {
        let engine = self.engine.borrow(py);
        self.events.iter().map(|e| engine.convert(py, e)).collect()
    }
}

#[pymethods]
impl Events {
    fn __len__(&self) -> usize {
        self.events.len()
    }

    /// An event by index (negative from the end), or a list of events by slice, as a
    /// list answers.
    fn __getitem__<'py>(
        &self,
        py: Python<'py>,
        index: &Bound<'py, PyAny>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let n = self.events.len() as isize;
        if let Ok(slice) = index.cast::<pyo3::types::PySlice>() {
            let ix = slice.indices(n)?;
            let engine = self.engine.borrow(py);
            let mut picked = Vec::with_capacity(ix.slicelength);
            let mut i = ix.start;
            for _ in 0..ix.slicelength {
                picked.push(engine.convert(py, &self.events[i as usize])?);
                i += ix.step;
            }
            return Ok(pyo3::types::PyList::new(py, picked)?.into_any());
        }
        let index: isize = index.extract()?;
        let i = if index < 0 { index + n } else { index };
        if !(0..n).contains(&i) {
            return Err(PyIndexError::new_err("event index out of range"));
        }
        Ok(Bound::new(
            py,
            self.engine
                .borrow(py)
                .convert(py, &self.events[i as usize])?,
        )?
        .into_any())
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        let list = pyo3::types::PyList::new(py, self.all(py)?)?;
        list.call_method0("__iter__")
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let list = pyo3::types::PyList::new(py, self.all(py)?)?;
        Ok(list.repr()?.to_string())
    }
}

#[pyclass(module = "spotex._core")]
struct Engine {
    inner: CoreEngine,
    scratch: Vec<CoreEvent>,
    /// Kept between batch calls so its pages stay mapped: first-touch page faults
    /// cost more than the encoding itself.
    batch_out: Vec<u8>,
}

fn journal_error(msg: String) -> PyErr {
    JournalError::new_err(msg)
}

/// The bytes behind any C-contiguous buffer of unsigned bytes (bytes, bytearray,
/// memoryview, `ndarray.view(np.uint8)`), without copying. The caller must not resize
/// or write the buffer while the call runs.
fn record_slice<'a>(py: Python<'_>, buf: &'a PyBuffer<u8>) -> PyResult<&'a [u8]> {
    if !buf.is_c_contiguous() {
        return Err(invalid(
            py,
            "batch records must be a C-contiguous byte buffer",
        ));
    }
    // SAFETY: the buffer is contiguous, `len_bytes` long, and `buf` keeps the exporter
    // alive (and its memory pinned) for the lifetime of the returned slice.
    Ok(unsafe { std::slice::from_raw_parts(buf.buf_ptr() as *const u8, buf.len_bytes()) })
}

impl Engine {
    fn product_id(&self, h: u32) -> String {
        self.inner.products()[h as usize].spec.id.clone()
    }

    fn cluster_id(&self, h: u32) -> String {
        self.inner.clusters()[h as usize].spec.id.clone()
    }

    fn product(&self, py: Python<'_>, id: &str) -> PyResult<u32> {
        self.inner
            .product_handle(id)
            .ok_or_else(|| reject_to_pyerr(py, Reject::UnknownProduct))
    }

    /// The cluster `account` registered as `id`. A cluster id is scoped to its seller;
    /// without an account, the one cluster of that id (refused when several sellers use
    /// it).
    fn cluster(&self, py: Python<'_>, account: Option<u64>, id: &str) -> PyResult<u32> {
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

    fn allocation(&self, a: &core::Allocation) -> Allocation {
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

    fn convert(&self, py: Python<'_>, e: &CoreEvent) -> PyResult<Event> {
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
        }
        Ok(ev)
    }

    /// Runs one command; a rejection raises, otherwise the events come back as Python
    /// objects. Commands that can touch a whole book or cluster (capacity, gate closure,
    /// time, product state) release the GIL while the core works. An order, cancel or
    /// amend takes about a microsecond, less than handing the GIL over and back: released,
    /// a server's event-loop thread takes it and the writer waits up to the interpreter's
    /// switch interval (5 ms) to get it back, once per order (see the README's service
    /// figures), so those run holding it.
    fn run(&mut self, py: Python<'_>, ts: i64, cmd: Command) -> PyResult<Vec<Event>> {
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        let inner = &mut self.inner;
        let short = matches!(
            cmd,
            Command::Place(_) | Command::Cancel { .. } | Command::Amend { .. }
        );
        let result = if short {
            inner.apply(ts, &cmd, &mut out)
        } else {
            py.detach(|| inner.apply(ts, &cmd, &mut out))
        };
        let converted = out
            .iter()
            .map(|e| self.convert(py, e))
            .collect::<PyResult<Vec<_>>>();
        self.scratch = out;
        match result {
            Err(r) => {
                // Time moved before the command was refused: what fell due (expiries,
                // gate closures) happened all the same and travels on the exception.
                let err = reject_to_pyerr(py, r);
                let mut due = converted?;
                due.pop(); // the `rejected` event itself
                err.value(py).setattr("events", due)?;
                Err(err)
            }
            Ok(()) => converted,
        }
    }
}

impl Engine {
    /// As `run`, for the per-call hot path: the events stay in Rust until read.
    fn run_lazy(slf: &Bound<'_, Engine>, ts: i64, cmd: Command) -> PyResult<Events> {
        let py = slf.py();
        let events = {
            let mut this = slf.borrow_mut();
            let mut out = Vec::with_capacity(4);
            let result = this.inner.apply(ts, &cmd, &mut out);
            if let Err(r) = result {
                // what time did before the refusal travels on the exception, as in `run`
                let err = reject_to_pyerr(py, r);
                out.pop();
                let due = out
                    .iter()
                    .map(|e| this.convert(py, e))
                    .collect::<PyResult<Vec<_>>>()?;
                err.value(py).setattr("events", due)?;
                return Err(err);
            }
            out
        };
        Ok(Events {
            engine: slf.clone().unbind(),
            events,
        })
    }
}

fn parse_tif(py: Python<'_>, tif: &str, expire_at: Option<i64>) -> PyResult<TimeInForce> {
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

fn parse_side(py: Python<'_>, s: &str) -> PyResult<Side> {
    match s {
        "buy" | "bid" => Ok(Side::Buy),
        "sell" | "ask" => Ok(Side::Sell),
        _ => Err(invalid(py, "side must be 'buy' or 'sell'")),
    }
}

#[pymethods]
impl Engine {
    #[new]
    fn new() -> Self {
        Engine {
            inner: CoreEngine::new(),
            scratch: Vec::with_capacity(16),
            batch_out: Vec::new(),
        }
    }

    /// The engine's time in microseconds since the epoch (the largest timestamp seen).
    #[getter]
    fn now(&self) -> i64 {
        self.inner.now()
    }

    #[pyo3(signature = (product_id, *, tick, lot, open_at, close_at, ts))]
    fn create_product(
        &mut self,
        py: Python<'_>,
        product_id: String,
        tick: i64,
        lot: i64,
        open_at: i64,
        close_at: i64,
        ts: i64,
    ) -> PyResult<Vec<Event>> {
        let spec = core::ProductSpec {
            id: product_id,
            tick,
            lot,
            open_at,
            close_at,
        };
        self.run(py, ts, Command::CreateProduct(spec))
    }

    #[pyo3(signature = (product_id, *, ts))]
    fn halt(&mut self, py: Python<'_>, product_id: &str, ts: i64) -> PyResult<Vec<Event>> {
        let product = self.product(py, product_id)?;
        self.run(py, ts, Command::Halt { product })
    }

    #[pyo3(signature = (product_id, *, ts))]
    fn resume(&mut self, py: Python<'_>, product_id: &str, ts: i64) -> PyResult<Vec<Event>> {
        let product = self.product(py, product_id)?;
        self.run(py, ts, Command::Resume { product })
    }

    #[pyo3(signature = (product_id, *, ts))]
    fn close(&mut self, py: Python<'_>, product_id: &str, ts: i64) -> PyResult<Vec<Event>> {
        let product = self.product(py, product_id)?;
        self.run(py, ts, Command::Close { product })
    }

    #[pyo3(signature = (ts))]
    fn advance_time(&mut self, py: Python<'_>, ts: i64) -> PyResult<Vec<Event>> {
        self.run(py, ts, Command::AdvanceTime)
    }

    /// `places`, when given, one `(block, rack, nvlink_domain)` per node.
    #[pyo3(signature = (account, cluster_id, *, sku, region, nodes, from_hour, to_hour, ts,
        places=None))]
    #[allow(clippy::too_many_arguments)]
    fn register_capacity(
        &mut self,
        py: Python<'_>,
        account: u64,
        cluster_id: String,
        sku: String,
        region: String,
        nodes: Vec<(String, u32)>,
        from_hour: i64,
        to_hour: i64,
        ts: i64,
        places: Option<Vec<(String, String, String)>>,
    ) -> PyResult<Vec<Event>> {
        let mut places = places.unwrap_or_default().into_iter();
        let spec = core::ClusterSpec {
            id: cluster_id,
            sku,
            region,
            nodes: nodes
                .into_iter()
                .map(|(id, gpus)| core::NodeSpec {
                    id,
                    gpus,
                    place: places
                        .next()
                        .map(|(block, rack, domain)| core::Topology {
                            block,
                            rack,
                            domain,
                        })
                        .unwrap_or_default(),
                })
                .collect(),
            from_hour,
            to_hour,
        };
        self.run(py, ts, Command::RegisterCapacity { account, spec })
    }

    #[pyo3(signature = (account, cluster_id, *, from_hour, to_hour, nodes=None, ts))]
    #[allow(clippy::too_many_arguments)]
    fn withdraw_capacity(
        &mut self,
        py: Python<'_>,
        account: u64,
        cluster_id: &str,
        from_hour: i64,
        to_hour: i64,
        nodes: Option<Vec<String>>,
        ts: i64,
    ) -> PyResult<Vec<Event>> {
        let cluster = self.cluster(py, Some(account), cluster_id)?;
        let nodes = nodes.unwrap_or_default();
        self.run(
            py,
            ts,
            Command::WithdrawCapacity {
                account,
                cluster,
                from_hour,
                to_hour,
                nodes,
            },
        )
    }

    /// Places an order. `side` is "buy" or "sell"; `order_type` "limit" or "market"
    /// (`price` is then the protection price); `tif` one of "gtc", "gtd" (with
    /// `expire_at`), "ioc", "fok"; `stp` one of "cancel_newest", "cancel_oldest",
    /// "cancel_both".
    #[pyo3(signature = (account, product_id, side, price, qty, *, ts, order_type=None, tif=None,
        expire_at=None, post_only=false, stp=None, cluster_id=None, gang=1, clip=0))]
    #[allow(clippy::too_many_arguments)]
    fn place(
        slf: &Bound<'_, Self>,
        account: u64,
        product_id: &str,
        side: &Bound<'_, PyAny>,
        price: i64,
        qty: i64,
        ts: i64,
        order_type: Option<&Bound<'_, PyAny>>,
        tif: Option<&Bound<'_, PyAny>>,
        expire_at: Option<i64>,
        post_only: bool,
        stp: Option<&Bound<'_, PyAny>>,
        cluster_id: Option<&str>,
        gang: u32,
        clip: i64,
    ) -> PyResult<Events> {
        let py = slf.py();
        let (product, cluster) = {
            let this = slf.borrow();
            let product = this.product(py, product_id)?;
            let cluster = match cluster_id {
                // a bid naming a cluster: the engine refuses it (CLUSTER_NOT_ALLOWED) in
                // its turn, whatever the name
                Some(_) if terms::word(side)? == "buy" => Some(u32::MAX),
                Some(c) => Some(this.cluster(py, Some(account), c)?),
                None => None,
            };
            (product, cluster)
        };
        let side = parse_side(py, terms::word(side)?)?;
        let order_type = order_type.map_or(Ok("limit"), terms::word)?;
        let tif = tif.map_or(Ok("gtc"), terms::word)?;
        let stp = stp.map_or(Ok("cancel_newest"), terms::word)?;
        let order_type = match order_type {
            "limit" => OrderType::Limit,
            "market" => OrderType::Market,
            _ => return Err(invalid(py, "order_type must be 'limit' or 'market'")),
        };
        let tif = parse_tif(py, tif, expire_at)?;
        let stp = match stp {
            "cancel_newest" => SelfTradePrevention::CancelNewest,
            "cancel_oldest" => SelfTradePrevention::CancelOldest,
            "cancel_both" => SelfTradePrevention::CancelBoth,
            _ => {
                return Err(invalid(
                    py,
                    "stp must be 'cancel_newest', 'cancel_oldest' or 'cancel_both'",
                ))
            }
        };
        let order = NewOrder {
            account,
            product,
            side,
            order_type,
            price,
            qty,
            tif,
            post_only,
            stp,
            cluster,
            gang,
        };
        if clip != 0 {
            return Engine::run_lazy(slf, ts, Command::PlaceIceberg { order, clip });
        }
        Engine::run_lazy(slf, ts, Command::Place(order))
    }

    /// A block bid: the same GPUs for `hours` consecutive hours from `product_id`'s, all
    /// or none; `price` is per GPU-hour, the limit on the whole. `window` lets it start
    /// anywhere in that many hours (0: none). With tif "gtc"/"gtd" it rests whole until
    /// it can fill.
    #[pyo3(signature = (account, product_id, hours, price, qty, *, ts, gang=1, tif=None,
        expire_at=None, window=0, locality=None, preferred=false, near=None))]
    #[allow(clippy::too_many_arguments)]
    fn place_block(
        slf: &Bound<'_, Self>,
        account: u64,
        product_id: &str,
        hours: u32,
        price: i64,
        qty: i64,
        ts: i64,
        gang: u32,
        tif: Option<&Bound<'_, PyAny>>,
        expire_at: Option<i64>,
        window: u32,
        locality: Option<&str>,
        preferred: bool,
        near: Option<u64>,
    ) -> PyResult<Events> {
        let py = slf.py();
        let product = slf.borrow().product(py, product_id)?;
        let tif = parse_tif(py, tif.map_or(Ok("fok"), terms::word)?, expire_at)?;
        let level = match locality {
            None => None,
            Some(name) => Some(
                core::Level::ALL
                    .into_iter()
                    .find(|l| l.as_str() == name)
                    .ok_or_else(|| {
                        invalid(
                            py,
                            "locality must be 'node', 'nvlink_domain', 'rack', 'block' or \
                             'cluster'",
                        )
                    })?,
            ),
        };
        let block = NewBlock {
            account,
            product,
            hours,
            price,
            qty,
            gang,
            tif,
            window,
            place: core::Placement {
                level,
                preferred,
                near,
            },
        };
        Engine::run_lazy(slf, ts, Command::PlaceBlock(block))
    }

    /// The ids of the resting blocks, in id order.
    fn resting_blocks(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self.inner.resting_blocks().map(|b| b.id).collect();
        ids.dedup(); // a one-of group's alternatives share one id
        ids
    }

    #[pyo3(signature = (account, order_id, *, ts))]
    fn cancel(slf: &Bound<'_, Self>, account: u64, order_id: u64, ts: i64) -> PyResult<Events> {
        Engine::run_lazy(slf, ts, Command::Cancel { account, order_id })
    }

    /// Changes price and/or remaining quantity. Lowering the quantity keeps priority;
    /// a new price or a higher quantity sends the order to the back of its level.
    #[pyo3(signature = (account, order_id, *, price=None, qty=None, ts))]
    fn amend(
        slf: &Bound<'_, Self>,
        account: u64,
        order_id: u64,
        price: Option<i64>,
        qty: Option<i64>,
        ts: i64,
    ) -> PyResult<Events> {
        let cmd = Command::Amend {
            account,
            order_id,
            price,
            qty,
        };
        Engine::run_lazy(slf, ts, cmd)
    }

    /// Applies packed 64-byte command records (see `spotex.batch`) and returns packed
    /// 64-byte event records. Rejections are events here, not exceptions.
    fn apply_batch<'py>(
        &mut self,
        py: Python<'py>,
        records: PyBuffer<u8>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let records = record_slice(py, &records)?;
        let Engine {
            inner, batch_out, ..
        } = self;
        batch_out.clear();
        py.detach(|| core::batch::apply_batch(inner, records, batch_out))
            .map_err(|_| invalid(py, "batch length must be a multiple of 64 bytes"))?;
        Ok(PyBytes::new(py, batch_out))
    }

    /// Benchmark helper: applies the records one by one in Rust without making any Python
    /// object, and returns `(total_ns, p50_ns, p99_ns, rejected)`. With `per_op`, each
    /// command is timed with the monotonic clock (the core itself never reads one);
    /// without, only the total is (percentiles are then 0) so timer overhead stays out.
    #[pyo3(signature = (records, per_op=false))]
    fn apply_batch_timed(
        &mut self,
        py: Python<'_>,
        records: PyBuffer<u8>,
        per_op: bool,
    ) -> PyResult<(u64, u64, u64, u64)> {
        use core::batch::RECORD;
        let records = record_slice(py, &records)?;
        if records.len() % RECORD != 0 {
            return Err(invalid(py, "batch length must be a multiple of 64 bytes"));
        }
        let inner = &mut self.inner;
        Ok(py.detach(|| {
            let mut lat: Vec<u64> =
                Vec::with_capacity(if per_op { records.len() / RECORD } else { 0 });
            let mut out = Vec::with_capacity(64);
            let mut rejected = 0;
            let start = std::time::Instant::now();
            for r in records.chunks_exact(RECORD) {
                let t = per_op.then(std::time::Instant::now);
                out.clear();
                rejected += u64::from(core::batch::apply_record(inner, r, &mut out).is_err());
                if let Some(t) = t {
                    lat.push(t.elapsed().as_nanos() as u64);
                }
            }
            let total = start.elapsed().as_nanos() as u64;
            lat.sort_unstable();
            let pct = |q: f64| {
                lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1)))
                    .copied()
                    .unwrap_or(0)
            };
            (total, pct(0.50), pct(0.99), rejected)
        }))
    }

    /// The whole engine state as bytes (see `Engine.restore`).
    fn snapshot<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let inner = &self.inner;
        let bytes = py.detach(|| inner.snapshot());
        PyBytes::new(py, &bytes)
    }

    /// An engine rebuilt from `snapshot()` bytes, with the same state hash.
    #[staticmethod]
    fn restore(py: Python<'_>, snapshot: &[u8]) -> PyResult<Engine> {
        let inner = py
            .detach(|| CoreEngine::restore(snapshot))
            .map_err(|e| journal_error(format!("snapshot: {e}")))?;
        Ok(Engine::wrap(inner))
    }

    fn product_handle(&self, py: Python<'_>, product_id: &str) -> PyResult<u32> {
        self.product(py, product_id)
    }

    /// The handle of `account`'s cluster `cluster_id` (without an account: the one
    /// cluster of that id).
    #[pyo3(signature = (cluster_id, account=None))]
    fn cluster_handle(
        &self,
        py: Python<'_>,
        cluster_id: &str,
        account: Option<u64>,
    ) -> PyResult<u32> {
        self.cluster(py, account, cluster_id)
    }

    /// `[(product_id, state, tick, lot, open_at, close_at)]` in listing order.
    fn products(&self) -> Vec<(String, &'static str, i64, i64, i64, i64)> {
        self.inner
            .products()
            .iter()
            .map(|p| {
                let s = &p.spec;
                (
                    s.id.clone(),
                    p.state.as_str(),
                    s.tick,
                    s.lot,
                    s.open_at,
                    s.close_at,
                )
            })
            .collect()
    }

    /// Aggregated book, best first on each side: `([(price, qty, orders)], [...])`.
    #[pyo3(signature = (product_id, depth=10))]
    #[allow(clippy::type_complexity)]
    fn l2(
        &self,
        py: Python<'_>,
        product_id: &str,
        depth: usize,
    ) -> PyResult<(Vec<(i64, i64, u32)>, Vec<(i64, i64, u32)>)> {
        let h = self.product(py, product_id)?;
        Ok((
            self.inner.l2(h, Side::Buy, depth),
            self.inner.l2(h, Side::Sell, depth),
        ))
    }

    /// One level of the book: `(quantity, orders)`, `(0, 0)` when nothing rests there.
    fn level(
        &self,
        py: Python<'_>,
        product_id: &str,
        side: &str,
        price: i64,
    ) -> PyResult<(i64, u32)> {
        let h = self.product(py, product_id)?;
        Ok(self.inner.level(h, parse_side(py, side)?, price))
    }

    /// Every resting order, in priority order: `(bids, asks)`.
    fn l3(&self, py: Python<'_>, product_id: &str) -> PyResult<(Vec<Order>, Vec<Order>)> {
        let h = self.product(py, product_id)?;
        let f = |side| {
            self.inner
                .l3(h, side)
                .into_iter()
                .map(|o| self.order_view(o))
                .collect()
        };
        Ok((f(Side::Buy), f(Side::Sell)))
    }

    /// A resting order, or None once it is filled, cancelled or expired.
    fn order(&self, order_id: u64) -> Option<Order> {
        self.inner.order(order_id).map(|o| self.order_view(o))
    }

    fn open_order_count(&self) -> usize {
        self.inner.open_order_count()
    }

    /// Every allocation, in trade order (for operators and replay).
    fn all_allocations(&self) -> Vec<Allocation> {
        self.inner
            .allocations()
            .iter()
            .map(|a| self.allocation(a))
            .collect()
    }

    /// Allocations where `account` is buyer or seller, in trade order.
    fn allocations(&self, account: u64) -> Vec<Allocation> {
        self.inner
            .allocations_of(account)
            .into_iter()
            .map(|a| self.allocation(a))
            .collect()
    }

    #[pyo3(signature = (cluster_id, hour, account=None))]
    fn utilisation(
        &self,
        py: Python<'_>,
        cluster_id: &str,
        hour: i64,
        account: Option<u64>,
    ) -> PyResult<Option<Utilisation>> {
        let c = self.cluster(py, account, cluster_id)?;
        Ok(self.inner.utilisation(c, hour).map(|u| Utilisation {
            capacity: u.capacity,
            sold: u.sold,
            offered: u.offered,
            idle: u.idle,
            withdrawn: u.withdrawn,
        }))
    }

    /// `[(cluster_id, node_ids)]` registered by `account`.
    fn clusters(&self, account: u64) -> Vec<(String, Vec<String>)> {
        self.inner
            .clusters()
            .iter()
            .filter(|c| c.seller == account)
            .map(|c| {
                (
                    c.spec.id.clone(),
                    c.spec.nodes.iter().map(|n| n.id.clone()).collect(),
                )
            })
            .collect()
    }

    fn state_hash(&self, py: Python<'_>) -> String {
        let inner = &self.inner;
        py.detach(|| inner.state_hash())
    }
}

impl Engine {
    fn wrap(inner: CoreEngine) -> Engine {
        Engine {
            inner,
            scratch: Vec::with_capacity(16),
            batch_out: Vec::new(),
        }
    }

    fn order_view(&self, o: &core::RestingOrder) -> Order {
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

/// Machine-readable reject codes, indexed like the `code` byte of batch event records.
#[pyfunction]
fn reject_codes() -> Vec<&'static str> {
    Reject::ALL.iter().map(|r| r.code()).collect()
}

/// Cancel reasons, indexed like the `code` byte of batch `cancelled` records.
#[pyfunction]
fn cancel_reasons() -> Vec<&'static str> {
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

/// The benchmark workload (see `spotex_core::workload`): `(products, clusters, records)`
/// where products are `(id, tick, lot, open_at, close_at)`, clusters are
/// `(account, id, sku, region, nodes, from_hour, to_hour)` and records are packed commands
/// whose product and cluster handles follow the listing order.
#[pyfunction]
#[pyo3(signature = (seed=42, ops=1_000_000, products=24, sellers=4, nodes_per_cluster=2_500, max_live=1_000))]
#[allow(clippy::type_complexity)]
fn workload<'py>(
    py: Python<'py>,
    seed: u64,
    ops: usize,
    products: u32,
    sellers: u32,
    nodes_per_cluster: u32,
    max_live: usize,
) -> PyResult<(
    Vec<(String, i64, i64, i64, i64)>,
    Vec<(u64, String, String, String, Vec<(String, u32)>, i64, i64)>,
    Bound<'py, PyBytes>,
)> {
    let spec = core::workload::WorkloadSpec {
        seed,
        ops,
        products,
        sellers,
        nodes_per_cluster,
        max_live,
    };
    let (ps, cs) = market_of(core::workload::setup_commands(&spec));
    let recs = py.detach(|| core::workload::records(&spec));
    Ok((ps, cs, PyBytes::new(py, &recs)))
}

type ProductRow = (String, i64, i64, i64, i64);
type ClusterRow = (u64, String, String, String, Vec<(String, u32)>, i64, i64);

/// Setup commands as plain rows a caller can replay through the public API.
fn market_of(cmds: Vec<Command>) -> (Vec<ProductRow>, Vec<ClusterRow>) {
    let mut ps = Vec::new();
    let mut cs = Vec::new();
    for c in cmds {
        match c {
            Command::CreateProduct(p) => ps.push((p.id, p.tick, p.lot, p.open_at, p.close_at)),
            Command::RegisterCapacity { account, spec: c } => cs.push((
                account,
                c.id,
                c.sku,
                c.region,
                c.nodes.into_iter().map(|n| (n.id, n.gpus)).collect(),
                c.from_hour,
                c.to_hour,
            )),
            _ => {}
        }
    }
    (ps, cs)
}

/// The realistic order flow for engine comparisons (see `spotex_core::flow`):
/// `(products, clusters, records, counts)`, shaped like [`workload`]. `scenario` is one
/// of `calm`, `trending`, `volatile`, `crash`.
#[pyfunction]
#[pyo3(signature = (scenario, *, seed=42, new_orders=1_000_000, sellers=4))]
#[allow(clippy::type_complexity)]
fn flow<'py>(
    py: Python<'py>,
    scenario: &str,
    seed: u64,
    new_orders: usize,
    sellers: u32,
) -> PyResult<(
    Vec<ProductRow>,
    Vec<ClusterRow>,
    Bound<'py, PyBytes>,
    std::collections::BTreeMap<&'static str, usize>,
)> {
    use core::flow::{FlowSpec, Scenario};
    let scenario = Scenario::ALL
        .into_iter()
        .find(|s| s.name() == scenario)
        .ok_or_else(|| PyValueError::new_err(format!("unknown scenario {scenario:?}")))?;
    if sellers == 0 {
        return Err(PyValueError::new_err("sellers must be at least 1"));
    }
    let spec = FlowSpec {
        seed,
        new_orders,
        scenario,
        sellers,
    };
    let (recs, counts) = py.detach(|| core::flow::generate(&spec));
    let (ps, cs) = market_of(core::flow::setup_commands(&spec, &counts));
    let summary = [
        ("new_orders", counts.new_orders),
        ("ioc", counts.ioc),
        ("amends", counts.amends),
        ("cancels", counts.cancels),
        ("duplicate_cancels", counts.duplicate_cancels),
        ("messages", counts.messages),
    ]
    .into_iter()
    .collect();
    Ok((ps, cs, PyBytes::new(py, &recs), summary))
}

/// The journal behind a `JournalWriter`, shared with the writer thread
/// ([`writer::Writer`]), which appends the hot commands' records and syncs them without
/// the GIL. None once closed.
pub(crate) type SharedJournal = Arc<Mutex<Option<Log>>>;

/// Where records go: a directory of segment files, or a shard's JetStream stream.
pub(crate) enum Log {
    Files(core::journal::Segments),
    JetStream(Box<spotex_replicated::JetStreamJournal>),
}

impl core::journal::Journal for Log {
    fn append(&mut self, seq: u64, ts: i64, command: &[u8], meta: &[u8]) -> std::io::Result<()> {
        match self {
            Log::Files(j) => j.append(seq, ts, command, meta),
            Log::JetStream(j) => j.append(seq, ts, command, meta),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            Log::Files(j) => j.flush(),
            Log::JetStream(j) => j.flush(),
        }
    }

    fn sync(&mut self) -> std::io::Result<()> {
        match self {
            Log::Files(j) => j.sync(),
            Log::JetStream(j) => j.sync(),
        }
    }
}

pub(crate) fn lock_journal(j: &SharedJournal) -> std::sync::MutexGuard<'_, Option<Log>> {
    j.lock().unwrap_or_else(|e| e.into_inner())
}

fn open_journal(j: &mut Option<Log>) -> PyResult<&mut Log> {
    j.as_mut()
        .ok_or_else(|| journal_error("journal closed".into()))
}

/// Appends checksummed records to a journal directory of segments; `sync` makes them
/// durable.
#[pyclass(module = "spotex._core")]
pub(crate) struct JournalWriter {
    pub(crate) shared: SharedJournal,
}

#[pymethods]
impl JournalWriter {
    #[new]
    #[pyo3(signature = (path, segment_bytes=core::journal::SEGMENT_BYTES))]
    fn new(path: std::path::PathBuf, segment_bytes: u64) -> PyResult<Self> {
        let j = core::journal::Segments::open(&path, segment_bytes)
            .map_err(|e| journal_error(format!("{}: {e}", path.display())))?;
        Ok(JournalWriter {
            shared: Arc::new(Mutex::new(Some(Log::Files(j)))),
        })
    }

    /// A shard's journal on NATS JetStream (see spotex-replicated): fenced, each round
    /// acknowledged once a quorum of the stream's servers stored it.
    #[staticmethod]
    #[pyo3(signature = (servers, shard, replicas=3, timeout_seconds=10.0))]
    fn jetstream(
        py: Python<'_>,
        servers: Vec<String>,
        shard: String,
        replicas: usize,
        timeout_seconds: f64,
    ) -> PyResult<Self> {
        let cfg = jetstream_config(servers, shard, replicas, timeout_seconds)?;
        let j = py
            .detach(|| spotex_replicated::JetStreamJournal::open(&cfg))
            .map_err(|e| journal_error(format!("{}: {e}", cfg.stream())))?;
        Ok(JournalWriter {
            shared: Arc::new(Mutex::new(Some(Log::JetStream(Box::new(j))))),
        })
    }

    fn append(&mut self, seq: u64, ts: i64, command: &[u8], meta: &[u8]) -> PyResult<()> {
        use core::journal::Journal;
        open_journal(&mut lock_journal(&self.shared))?
            .append(seq, ts, command, meta)
            .map_err(|e| journal_error(format!("append: {e}")))
    }

    /// Hands what was appended to the operating system (survives a crash of this
    /// process, not a power loss).
    fn flush(&mut self) -> PyResult<()> {
        use core::journal::Journal;
        open_journal(&mut lock_journal(&self.shared))?
            .flush()
            .map_err(|e| journal_error(format!("flush: {e}")))
    }

    fn sync(&mut self, py: Python<'_>) -> PyResult<()> {
        use core::journal::Journal;
        let mut guard = lock_journal(&self.shared);
        let j = open_journal(&mut guard)?;
        py.detach(|| j.sync())
            .map_err(|e| journal_error(format!("sync: {e}")))
    }

    /// The newest segment and the length up to which it is durable (cut it back to this
    /// after a failure; older segments are durable whole), or None before any record.
    /// A JetStream journal: the stream's last message sequence it appends after (None for
    /// files).
    #[getter]
    fn stream_sequence(&self) -> Option<u64> {
        match lock_journal(&self.shared).as_ref() {
            Some(Log::JetStream(j)) => Some(j.last_sequence()),
            _ => None,
        }
    }

    /// A JetStream journal of a leader about to serve: fences the stream (an empty
    /// message naming `holder`, expecting the last sequence the journal opened at), so
    /// no earlier leader can append after it. JournalError: another writer appended after
    /// that (open the journal again and read what it added), or no answer in time.
    fn fence(&mut self, py: Python<'_>, holder: &str) -> PyResult<()> {
        let mut guard = lock_journal(&self.shared);
        match open_journal(&mut guard)? {
            Log::JetStream(j) => py
                .detach(|| j.fence(holder))
                .map_err(|e| journal_error(format!("fence: {e}"))),
            Log::Files(_) => Err(PyValueError::new_err("only a JetStream journal is fenced")),
        }
    }

    fn durable_point(&self) -> Option<(std::path::PathBuf, u64)> {
        match lock_journal(&self.shared).as_ref() {
            Some(Log::Files(j)) => j.durable_point(),
            _ => None,
        }
    }

    /// Closes without writing what was appended and not yet made durable (a round that
    /// failed: its callers were told so, so its records must never be stored later).
    fn abandon(&mut self) {
        if let Some(Log::Files(j)) = lock_journal(&self.shared).take() {
            j.abandon();
        }
    }

    /// Makes everything durable and closes. If that fails, what was not written is
    /// dropped, never written later: the caller cuts the file back to its durable point.
    fn close(&mut self, py: Python<'_>) -> PyResult<()> {
        use core::journal::Journal;
        let mut guard = lock_journal(&self.shared);
        let Some(mut j) = guard.take() else {
            return Ok(());
        };
        match py.detach(|| j.sync()) {
            Ok(()) => Ok(()),
            Err(e) => {
                if let Log::Files(j) = j {
                    j.abandon();
                }
                Err(journal_error(format!("sync: {e}")))
            }
        }
    }
}

fn jetstream_config(
    servers: Vec<String>,
    shard: String,
    replicas: usize,
    timeout_seconds: f64,
) -> PyResult<spotex_replicated::Config> {
    if !(timeout_seconds > 0.0 && timeout_seconds <= 3600.0) {
        return Err(PyValueError::new_err(
            "timeout_seconds is above 0, at most 3600",
        ));
    }
    Ok(spotex_replicated::Config {
        servers,
        shard,
        replicas,
        timeout: std::time::Duration::from_secs_f64(timeout_seconds),
    })
}

/// The records of a shard's JetStream stream with a sequence above `after`, as
/// `(seq, ts, command, meta)`, each record's checksum verified. Damage raises JournalError.
#[pyfunction]
#[pyo3(signature = (servers, shard, after=0, until=None, timeout_seconds=10.0))]
fn read_jetstream<'py>(
    py: Python<'py>,
    servers: Vec<String>,
    shard: String,
    after: u64,
    until: Option<u64>,
    timeout_seconds: f64,
) -> PyResult<Vec<RecordRow<'py>>> {
    let cfg = jetstream_config(servers, shard, 1, timeout_seconds)?;
    let recs = py
        .detach(|| spotex_replicated::read(&cfg, after, until))
        .map_err(|e| journal_error(format!("{}: {e}", cfg.stream())))?;
    Ok(record_rows(py, &recs))
}

fn record_rows<'py>(py: Python<'py>, recs: &[core::journal::Record]) -> Vec<RecordRow<'py>> {
    recs.iter()
        .map(|r| {
            (
                r.seq,
                r.ts,
                PyBytes::new(py, &r.command),
                PyBytes::new(py, &r.meta),
            )
        })
        .collect()
}

/// What a standby reads to follow a shard's stream: the records of its messages from
/// `from_message` (a stream sequence; 1: the start) to its last now, checked, and the
/// message to read from next.
#[pyfunction]
#[pyo3(signature = (servers, shard, from_message, until=None, timeout_seconds=10.0))]
fn follow_jetstream<'py>(
    py: Python<'py>,
    servers: Vec<String>,
    shard: String,
    from_message: u64,
    until: Option<u64>,
    timeout_seconds: f64,
) -> PyResult<(Vec<RecordRow<'py>>, u64)> {
    let cfg = jetstream_config(servers, shard, 1, timeout_seconds)?;
    let (recs, next) = py
        .detach(|| spotex_replicated::follow(&cfg, from_message, until))
        .map_err(|e| journal_error(format!("{}: {e}", cfg.stream())))?;
    Ok((record_rows(py, &recs), next))
}

/// Keeps a snapshot of a shard's exchange (`Exchange.snapshot()` bytes, taken with the
/// stream at message `message`) as the shard's newest, in JetStream's object store.
#[pyfunction]
#[pyo3(signature = (servers, shard, message, last_ts, snapshot, replicas=3, timeout_seconds=10.0))]
#[allow(clippy::too_many_arguments)]
fn put_jetstream_snapshot(
    py: Python<'_>,
    servers: Vec<String>,
    shard: String,
    message: u64,
    last_ts: i64,
    snapshot: &[u8],
    replicas: usize,
    timeout_seconds: f64,
) -> PyResult<()> {
    let cfg = jetstream_config(servers, shard, replicas, timeout_seconds)?;
    let snap = spotex_replicated::Snapshot {
        message,
        last_ts,
        bytes: snapshot.to_vec(),
    };
    py.detach(|| spotex_replicated::put_snapshot(&cfg, &snap))
        .map_err(|e| journal_error(e.to_string()))
}

/// The shard's newest snapshot in JetStream's object store as `(message, last_ts,
/// snapshot bytes)`, its checksum verified; None if there is none.
#[pyfunction]
#[pyo3(signature = (servers, shard, timeout_seconds=10.0))]
fn get_jetstream_snapshot<'py>(
    py: Python<'py>,
    servers: Vec<String>,
    shard: String,
    timeout_seconds: f64,
) -> PyResult<Option<(u64, i64, Bound<'py, PyBytes>)>> {
    let cfg = jetstream_config(servers, shard, 1, timeout_seconds)?;
    let snap = py
        .detach(|| spotex_replicated::get_snapshot(&cfg))
        .map_err(|e| journal_error(e.to_string()))?;
    Ok(snap.map(|s| (s.message, s.last_ts, PyBytes::new(py, &s.bytes))))
}

/// A shard's leader lease in JetStream's key-value store (see spotex-replicated).
#[pyclass(module = "spotex._core")]
struct Lease {
    inner: Mutex<spotex_replicated::Lease>,
}

#[pymethods]
impl Lease {
    #[new]
    #[pyo3(signature = (servers, shard, holder, ttl_seconds=3.0, replicas=3, timeout_seconds=10.0))]
    fn new(
        py: Python<'_>,
        servers: Vec<String>,
        shard: String,
        holder: String,
        ttl_seconds: f64,
        replicas: usize,
        timeout_seconds: f64,
    ) -> PyResult<Self> {
        if !(0.5..=3600.0).contains(&ttl_seconds) {
            return Err(PyValueError::new_err("ttl_seconds is 0.5 to 3600"));
        }
        let cfg = jetstream_config(servers, shard, replicas, timeout_seconds)?;
        let ttl = std::time::Duration::from_secs_f64(ttl_seconds);
        let lease = py
            .detach(|| spotex_replicated::Lease::open(&cfg, &holder, ttl))
            .map_err(|e| journal_error(e.to_string()))?;
        Ok(Lease {
            inner: Mutex::new(lease),
        })
    }

    fn try_acquire(&self, py: Python<'_>) -> PyResult<bool> {
        py.detach(|| self.lock().try_acquire())
            .map_err(|e| journal_error(e.to_string()))
    }

    fn renew(&self, py: Python<'_>) -> PyResult<bool> {
        py.detach(|| self.lock().renew())
            .map_err(|e| journal_error(e.to_string()))
    }

    /// Seconds the lease surely still lives for this holder (0 when not held).
    fn expires_in(&self) -> f64 {
        self.lock().expires_in().as_secs_f64()
    }

    fn release(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| self.lock().release())
            .map_err(|e| journal_error(e.to_string()))
    }

    fn holder(&self, py: Python<'_>) -> PyResult<Option<String>> {
        py.detach(|| self.lock().holder())
            .map_err(|e| journal_error(e.to_string()))
    }
}

impl Lease {
    fn lock(&self) -> std::sync::MutexGuard<'_, spotex_replicated::Lease> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

type RecordRow<'py> = (u64, i64, Bound<'py, PyBytes>, Bound<'py, PyBytes>);
type TornRow = (std::path::PathBuf, u64, u64);

/// The records of a journal directory with a sequence above `after` as `(seq, ts, command,
/// meta)`, and the torn tail as `(segment path, offset, bytes)` or None. Corruption
/// followed by good records, or a gap between segments, raises JournalError.
#[pyfunction]
#[pyo3(signature = (path, after=0))]
#[allow(clippy::type_complexity)]
fn read_journal<'py>(
    py: Python<'py>,
    path: std::path::PathBuf,
    after: u64,
) -> PyResult<(Vec<RecordRow<'py>>, Option<TornRow>)> {
    let (recs, torn) = py
        .detach(|| core::journal::read_dir(&path, after))
        .map_err(|e| journal_error(format!("{}: {e}", path.display())))?;
    Ok((
        record_rows(py, &recs),
        torn.map(|t| (t.path, t.offset, t.bytes)),
    ))
}

/// What a journal directory holds, without handing the records over: `(first sequence,
/// last sequence, records)` (`(0, 0, 0)` when empty) and the torn tail as `(segment,
/// offset, bytes)` or None.
#[pyfunction]
#[allow(clippy::type_complexity)]
fn journal_bounds(
    py: Python<'_>,
    path: std::path::PathBuf,
) -> PyResult<((u64, u64, usize), Option<TornRow>)> {
    let (recs, torn) = py
        .detach(|| core::journal::read_dir(&path, 0))
        .map_err(|e| journal_error(format!("{}: {e}", path.display())))?;
    let first = recs.first().map_or(0, |r| r.seq);
    let last = recs.last().map_or(0, |r| r.seq);
    Ok((
        (first, last, recs.len()),
        torn.map(|t| (t.path, t.offset, t.bytes)),
    ))
}

/// The segments of a journal directory as `(first sequence, path)`, oldest first.
#[pyfunction]
fn journal_segments(path: std::path::PathBuf) -> PyResult<Vec<(u64, std::path::PathBuf)>> {
    core::journal::segments(&path).map_err(|e| journal_error(format!("{}: {e}", path.display())))
}

/// Removes (or moves into `archive`) the segments holding only records at or below
/// `upto`; never the newest. Returns the retired paths.
#[pyfunction]
#[pyo3(signature = (path, upto, archive=None))]
fn retire_journal(
    path: std::path::PathBuf,
    upto: u64,
    archive: Option<std::path::PathBuf>,
) -> PyResult<Vec<std::path::PathBuf>> {
    core::journal::retire(&path, upto, archive.as_deref())
        .map_err(|e| journal_error(format!("retiring segments of {}: {e}", path.display())))
}

/// Cuts a journal at `offset`, dropping a torn tail.
#[pyfunction]
fn truncate_journal(path: std::path::PathBuf, offset: u64) -> PyResult<()> {
    core::journal::truncate(&path, offset).map_err(|e| journal_error(format!("truncate: {e}")))
}

type TradeRow = (u64, i64, u64, String, i64, i64, &'static str);

/// Rebuilds the exchange from its journal in Rust: from `snapshot` (an exchange snapshot,
/// taken at `snapshot_seq`) or from nothing, applying records up to `until_seq` /
/// `until_ts`. Returns the engine (for views of the books), the last sequence applied,
/// and the trades seen on the way as `(seq, ts, trade_id, product, price, qty,
/// aggressor)`.
#[pyfunction]
#[pyo3(signature = (path, *, until_seq=None, until_ts=None, snapshot=None, snapshot_seq=0))]
fn replay_journal(
    py: Python<'_>,
    path: std::path::PathBuf,
    until_seq: Option<u64>,
    until_ts: Option<i64>,
    snapshot: Option<&[u8]>,
    snapshot_seq: u64,
) -> PyResult<(Engine, u64, Vec<TradeRow>)> {
    use spotex_exchange::pb::market_data::Payload;
    let result = py.detach(|| -> Result<(CoreEngine, u64, Vec<TradeRow>), String> {
        let mut ex = match snapshot {
            Some(b) => spotex_exchange::Exchange::restore(b, u32::MAX).map_err(|e| e.0)?,
            None => spotex_exchange::Exchange::new(u32::MAX),
        };
        if ex.sequence() != snapshot_seq {
            return Err(format!(
                "the snapshot is at sequence {}, not {snapshot_seq}",
                ex.sequence()
            ));
        }
        let (recs, _) = core::journal::read_dir(&path, snapshot_seq).map_err(|e| e.to_string())?;
        let mut last = snapshot_seq;
        let mut trades = Vec::new();
        for r in recs {
            if until_seq.is_some_and(|s| r.seq > s) || until_ts.is_some_and(|t| r.ts > t) {
                break;
            }
            ex.replay_published(r.seq, r.ts, &r.command)
                .map_err(|e| e.0)?;
            for m in ex.take_round().market {
                if let Some(Payload::Trade(t)) = m.payload {
                    let aggressor = if t.aggressor == spotex_exchange::pb::Side::Sell as i32 {
                        "sell"
                    } else {
                        "buy"
                    };
                    trades.push((
                        r.seq,
                        r.ts,
                        t.trade_id,
                        m.product_id,
                        t.price_micros,
                        t.quantity,
                        aggressor,
                    ));
                }
            }
            last = r.seq;
        }
        Ok((ex.into_engine(), last, trades))
    });
    let (inner, last, trades) = result.map_err(journal_error)?;
    Ok((Engine::wrap(inner), last, trades))
}

#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add_class::<Engine>()?;
    m.add_class::<exchange::Exchange>()?;
    m.add("RefusedError", py.get_type::<exchange::RefusedError>())?;
    m.add_function(wrap_pyfunction!(exchange::count_orders, m)?)?;
    m.add_function(wrap_pyfunction!(exchange::page_size, m)?)?;
    m.add_function(wrap_pyfunction!(exchange::status_codes, m)?)?;
    m.add_class::<Event>()?;
    m.add_class::<Events>()?;
    m.add_class::<terms::PySide>()?;
    m.add_class::<terms::PyOrderType>()?;
    m.add_class::<terms::PyTimeInForce>()?;
    m.add_class::<terms::PyStp>()?;
    m.add_class::<Order>()?;
    m.add_class::<Allocation>()?;
    m.add_class::<Utilisation>()?;
    m.add_function(wrap_pyfunction!(reject_codes, m)?)?;
    m.add_function(wrap_pyfunction!(cancel_reasons, m)?)?;
    m.add_function(wrap_pyfunction!(workload, m)?)?;
    m.add_function(wrap_pyfunction!(flow, m)?)?;
    m.add_class::<JournalWriter>()?;
    m.add_class::<writer::Writer>()?;
    m.add_function(wrap_pyfunction!(read_journal, m)?)?;
    m.add_function(wrap_pyfunction!(read_jetstream, m)?)?;
    m.add_function(wrap_pyfunction!(follow_jetstream, m)?)?;
    m.add_function(wrap_pyfunction!(put_jetstream_snapshot, m)?)?;
    m.add_function(wrap_pyfunction!(get_jetstream_snapshot, m)?)?;
    m.add_class::<Lease>()?;
    m.add_function(wrap_pyfunction!(truncate_journal, m)?)?;
    m.add_function(wrap_pyfunction!(replay_journal, m)?)?;
    m.add_function(wrap_pyfunction!(journal_segments, m)?)?;
    m.add_function(wrap_pyfunction!(journal_bounds, m)?)?;
    m.add_function(wrap_pyfunction!(retire_journal, m)?)?;
    m.add("JournalError", py.get_type::<JournalError>())?;
    m.add("SpotexError", py.get_type::<SpotexError>())?;
    m.add("InvalidOrderError", py.get_type::<InvalidOrderError>())?;
    m.add(
        "PostOnlyWouldCrossError",
        py.get_type::<PostOnlyWouldCrossError>(),
    )?;
    m.add("InvalidProductError", py.get_type::<InvalidProductError>())?;
    m.add("UnknownProductError", py.get_type::<UnknownProductError>())?;
    m.add("ProductStateError", py.get_type::<ProductStateError>())?;
    m.add("UnknownOrderError", py.get_type::<UnknownOrderError>())?;
    m.add("NotOwnerError", py.get_type::<NotOwnerError>())?;
    m.add("CapacityError", py.get_type::<CapacityError>())?;
    m.add("MICROS_PER_HOUR", core::MICROS_PER_HOUR)?;
    Ok(())
}
