//! `spotex._core.Engine`: the per-call engine, one command per call, its events as
//! Python objects (`Events`, built only as they are read), and batches of packed records.

use pyo3::buffer::PyBuffer;
use pyo3::exceptions::PyIndexError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use spotex_core as core;
use spotex_core::{
    Command, Engine as CoreEngine, Event as CoreEvent, NewBlock, NewOrder, OrderType,
    SelfTradePrevention, Side,
};

use crate::convert::{parse_side, parse_tif, Allocation, Event, Order, Utilisation};
use crate::errors::{invalid, journal_error, reject_to_pyerr};
use crate::terms;

/// What one order, cancel or amend produced: a sequence of `Event`, built only as it is
/// read (`len()` costs nothing; most passive orders are never looked into).
#[pyclass(module = "spotex._core", sequence)]
pub(crate) struct Events {
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
pub(crate) struct Engine {
    pub(crate) inner: CoreEngine,
    scratch: Vec<CoreEvent>,
    /// Kept between batch calls so its pages stay mapped: first-touch page faults
    /// cost more than the encoding itself.
    batch_out: Vec<u8>,
}

/// The bytes behind any C-contiguous buffer of unsigned bytes (bytes, bytearray,
/// memoryview, `ndarray.view(np.uint8)`), without copying. The caller must not resize
/// or write the buffer while the call runs.
pub(crate) fn record_slice<'a>(py: Python<'_>, buf: &'a PyBuffer<u8>) -> PyResult<&'a [u8]> {
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
            auction: false,
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
    pub(crate) fn wrap(inner: CoreEngine) -> Engine {
        Engine {
            inner,
            scratch: Vec::with_capacity(16),
            batch_out: Vec::new(),
        }
    }
}
