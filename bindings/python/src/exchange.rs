//! `spotex._core.Exchange`: the Rust exchange (spotex-exchange) behind protobuf bytes.
//! Requests go in as the contract's serialized messages with the caller's identity and
//! the time; responses and the round's stream messages come out serialized. A refusal
//! raises `RefusedError` with the machine-readable `reason`.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard};

use prost::Message;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use spotex_exchange::{pb, Caller, Exchange as CoreExchange, Refusal};

use crate::errors::{refused, JournalError};

fn decode<M: Message + Default>(py: Python<'_>, bytes: &[u8]) -> PyResult<M> {
    M::decode(bytes).map_err(|e| {
        refused(
            py,
            Refusal::new("INVALID_ARGUMENT", format!("malformed request: {e}")),
        )
    })
}

fn encode<'py>(py: Python<'py>, m: &impl Message) -> Bound<'py, PyBytes> {
    PyBytes::new(py, &m.encode_to_vec())
}

type Outcome<'py> = PyResult<Bound<'py, PyBytes>>;

/// A trade of a round: (product, trade id, time, price, GPUs, aggressor side as the
/// contract's enum, auction id).
type TradeTuple = (String, u64, i64, i64, i64, i32, u64);

/// The exchange behind the Python object, shared with the writer thread
/// ([`crate::writer::Writer`]), which runs the hot commands on it without the GIL. Only
/// one thread uses it at a time: the writer runs every command and view.
pub type Shared = Arc<Mutex<CoreExchange>>;

/// Locks the exchange; a panic while it was held (the writer survives one) leaves it
/// usable: the exchange's own operations never leave it half changed.
pub fn lock(shared: &Shared) -> MutexGuard<'_, CoreExchange> {
    shared.lock().unwrap_or_else(|e| e.into_inner())
}

#[pyclass(module = "spotex._core")]
pub struct Exchange {
    pub(crate) shared: Shared,
}

fn wrap(inner: CoreExchange) -> Exchange {
    Exchange {
        shared: Arc::new(Mutex::new(inner)),
    }
}

/// An auction's view as Python tuples: `(first_hour, hours, bids, asks, clusters)`.
type ViewTuple = (
    i64,
    u32,
    Vec<(
        u64,
        u32,
        bool,
        u64,
        String,
        i64,
        u32,
        u32,
        i64,
        i64,
        u32,
        (bool, &'static str, Option<(u32, u32)>),
    )>,
    Vec<(u64, u64, u32, i64, i64, i64, u32, bool)>,
    Vec<(
        u32,
        u64,
        String,
        String,
        Vec<(String, u32, Vec<u64>)>,
        Vec<(String, String, String)>,
    )>,
);

fn view_tuple(v: spotex_core::AuctionView) -> ViewTuple {
    let bids = (v.bids.into_iter())
        .map(|b| {
            (
                b.order_id,
                b.alternative,
                b.group,
                b.account,
                b.family,
                b.span_from,
                b.span_hours,
                b.hours,
                b.qty,
                b.price,
                b.gang,
                (b.whole, b.level.map_or("", |l| l.as_str()), b.near),
            )
        })
        .collect();
    let asks = (v.asks.into_iter())
        .map(|a| {
            (
                a.order_id, a.account, a.cluster, a.hour, a.qty, a.price, a.hours, a.whole,
            )
        })
        .collect();
    let clusters = (v.clusters.into_iter())
        .map(|c| {
            let places = (c.places.into_iter())
                .map(|p| (p.block, p.rack, p.domain))
                .collect();
            (c.handle, c.seller, c.id, c.family, c.nodes, places)
        })
        .collect();
    (v.first_hour, v.hours, bids, asks, clusters)
}

fn caller(account: u64, buyer: bool, seller: bool) -> Caller {
    Caller {
        account,
        buyer,
        seller,
    }
}

#[pymethods]
impl Exchange {
    #[new]
    #[pyo3(signature = (max_open_orders=10_000, max_id_length=128))]
    fn new(max_open_orders: u32, max_id_length: usize) -> Self {
        let mut inner = CoreExchange::new(max_open_orders);
        inner.set_max_id_length(max_id_length);
        wrap(inner)
    }

    /// The longest product or cluster id an order may name.
    fn set_max_id_length(&mut self, n: usize) {
        lock(&self.shared).set_max_id_length(n);
    }

    /// The fee a resale's seller pays on each fill, in basis points of its value (each
    /// resale ask keeps the fee it was accepted with).
    fn set_resale_fee_bps(&mut self, bps: u32) {
        lock(&self.shared).set_resale_fee_bps(bps);
    }

    /// How many ended orders stay in memory (older ones leave it: `take_left`).
    fn set_keep_ended(&mut self, n: usize) {
        lock(&self.shared).set_keep_ended(n);
    }

    /// The records that left memory since the last call, oldest first, as
    /// `(order_id, account, product_id, client_order_id, Order bytes)`: for the caller to
    /// keep on disk.
    #[allow(clippy::type_complexity)]
    fn take_left<'py>(
        &mut self,
        py: Python<'py>,
    ) -> Vec<(u64, u64, String, String, Bound<'py, PyBytes>)> {
        lock(&self.shared)
            .take_left()
            .into_iter()
            .map(|r| {
                let order = encode(py, &r.to_pb(true));
                (r.order_id, r.account, r.product, r.client_order_id, order)
            })
            .collect()
    }

    /// An exchange back from `snapshot()` bytes.
    #[staticmethod]
    #[pyo3(signature = (snapshot, max_open_orders=10_000))]
    fn restore(snapshot: &[u8], max_open_orders: u32) -> PyResult<Exchange> {
        CoreExchange::restore(snapshot, max_open_orders)
            .map(wrap)
            .map_err(|e| JournalError::new_err(e.0))
    }

    /// Rebuilds an exchange from `snapshot` (or from nothing) and the journal directory
    /// `path` after it. Returns `(exchange, snapshot sequence, records replayed, torn
    /// tail as (segment, offset, bytes) or None)`.
    #[staticmethod]
    #[pyo3(signature = (path, snapshot=None, max_open_orders=10_000, keep_ended=100_000))]
    #[allow(clippy::type_complexity)]
    fn recover(
        py: Python<'_>,
        path: std::path::PathBuf,
        snapshot: Option<&[u8]>,
        max_open_orders: u32,
        keep_ended: usize,
    ) -> PyResult<(Exchange, u64, u64, Option<(std::path::PathBuf, u64, u64)>)> {
        let (inner, r) = py
            .detach(|| spotex_exchange::recover(&path, snapshot, max_open_orders, keep_ended, None))
            .map_err(|e| JournalError::new_err(format!("{}: {e}", path.display())))?;
        let torn = r.torn_tail.map(|t| (t.path, t.offset, t.bytes));
        Ok((wrap(inner), r.snapshot_seq, r.replayed, torn))
    }

    /// The whole exchange (engine, records, sequences) in the store's encoding.
    fn snapshot<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        // the whole exchange: the event loop runs meanwhile
        let guard = lock(&self.shared);
        let inner = &*guard;
        let bytes = py.detach(|| inner.snapshot());
        PyBytes::new(py, &bytes)
    }

    /// The journal entries of the commands applied since the last call, as
    /// `(sequence, time, command)`.
    fn take_journal<'py>(&mut self, py: Python<'py>) -> Vec<(u64, i64, Bound<'py, PyBytes>)> {
        lock(&self.shared)
            .take_journal()
            .into_iter()
            .map(|e| (e.seq, e.ts, PyBytes::new(py, &e.command)))
            .collect()
    }

    /// Applies one journaled command again (recovery, replay); raises JournalError when
    /// it does not follow or is refused.
    fn replay(&mut self, seq: u64, ts: i64, command: &[u8]) -> PyResult<()> {
        lock(&self.shared)
            .replay(seq, ts, command)
            .map_err(|e| JournalError::new_err(e.0))
    }

    #[getter]
    fn sequence(&self) -> u64 {
        lock(&self.shared).sequence()
    }

    /// Orders resting in the books now.
    #[getter]
    fn resting_orders(&self) -> usize {
        lock(&self.shared).engine().open_order_count()
    }

    fn state_hash(&self, py: Python<'_>) -> String {
        let guard = lock(&self.shared);
        let inner = &*guard;
        py.detach(|| inner.state_hash())
    }

    #[pyo3(signature = (ts, product_id, tick, lot, close_at, open_at=None, auction_first=false))]
    #[allow(clippy::too_many_arguments)]
    fn create_product(
        &mut self,
        py: Python<'_>,
        ts: i64,
        product_id: &str,
        tick: i64,
        lot: i64,
        close_at: i64,
        open_at: Option<i64>,
        auction_first: bool,
    ) -> PyResult<()> {
        lock(&self.shared)
            .create_product(ts, product_id, tick, lot, close_at, open_at, auction_first)
            .map_err(|r| refused(py, r))
    }

    /// A shard's ids: orders and trades are numbered from `base` on (journaled; only
    /// before the first id is given).
    fn set_id_base(&mut self, py: Python<'_>, ts: i64, base: u64) -> PyResult<()> {
        lock(&self.shared)
            .set_id_base(ts, base)
            .map_err(|r| refused(py, r))
    }

    /// `(next order id, next trade id)`.
    fn next_ids(&self) -> (u64, u64) {
        lock(&self.shared).next_ids()
    }

    /// `what`: halt, resume or close.
    fn set_state(&mut self, py: Python<'_>, ts: i64, what: &str, product_id: &str) -> PyResult<()> {
        lock(&self.shared)
            .set_state(ts, what, product_id)
            .map_err(|r| refused(py, r))
    }

    fn register_capacity(
        &mut self,
        py: Python<'_>,
        ts: i64,
        account: u64,
        request: &[u8],
    ) -> PyResult<()> {
        let r = decode(py, request)?;
        lock(&self.shared)
            .register_capacity(ts, caller(account, false, true), &r)
            .map_err(|e| refused(py, e))
    }

    fn withdraw_capacity(
        &mut self,
        py: Python<'_>,
        ts: i64,
        account: u64,
        request: &[u8],
    ) -> PyResult<i64> {
        let r = decode(py, request)?;
        lock(&self.shared)
            .withdraw_capacity(ts, caller(account, false, true), &r)
            .map_err(|e| refused(py, e))
    }

    fn advance_time(&mut self, ts: i64) {
        lock(&self.shared).advance_time(ts)
    }

    /// `PlaceOrderRequest` bytes in, `Order` bytes out.
    #[pyo3(signature = (ts, account, request, *, buyer, seller))]
    fn place_order<'py>(
        &mut self,
        py: Python<'py>,
        ts: i64,
        account: u64,
        request: &[u8],
        buyer: bool,
        seller: bool,
    ) -> Outcome<'py> {
        let r = decode(py, request)?;
        let o = lock(&self.shared)
            .place_order(ts, caller(account, buyer, seller), &r)
            .map_err(|e| refused(py, e))?;
        Ok(encode(py, &o))
    }

    /// `SubmitOrdersRequest` bytes in, `SubmitOrdersResponse` bytes out: each order placed
    /// or refused on its own.
    #[pyo3(signature = (ts, account, request, *, buyer, seller))]
    fn submit_orders<'py>(
        &mut self,
        py: Python<'py>,
        ts: i64,
        account: u64,
        request: &[u8],
        buyer: bool,
        seller: bool,
    ) -> Outcome<'py> {
        // a whole message of orders: the event loop runs meanwhile
        let mut guard = lock(&self.shared);
        let inner = &mut *guard;
        let answer = py.detach(|| {
            pb::SubmitOrdersRequest::decode(request)
                .map(|r| inner.submit_orders(ts, caller(account, buyer, seller), &r))
                .map(|answer| answer.encode_to_vec())
        });
        match answer {
            Ok(bytes) => Ok(PyBytes::new(py, &bytes)),
            Err(e) => Err(refused(
                py,
                Refusal::new("INVALID_ARGUMENT", format!("malformed request: {e}")),
            )),
        }
    }

    /// `CancelOrderRequest` bytes in, `Order` bytes out.
    fn cancel_order<'py>(
        &mut self,
        py: Python<'py>,
        ts: i64,
        account: u64,
        request: &[u8],
    ) -> Outcome<'py> {
        let r = decode(py, request)?;
        let o = lock(&self.shared)
            .cancel_order(ts, caller(account, false, false), &r)
            .map_err(|e| refused(py, e))?;
        Ok(encode(py, &o))
    }

    /// `AmendOrderRequest` bytes in, `Order` bytes out.
    fn amend_order<'py>(
        &mut self,
        py: Python<'py>,
        ts: i64,
        account: u64,
        request: &[u8],
    ) -> Outcome<'py> {
        let r = decode(py, request)?;
        let o = lock(&self.shared)
            .amend_order(ts, caller(account, false, false), &r)
            .map_err(|e| refused(py, e))?;
        Ok(encode(py, &o))
    }

    /// Starts a block auction over the delivery window `[from_hour, to_hour)`
    /// (freezing its orders): its id, `auction_id` when given (a sharded venue's
    /// gateway numbers its auctions the same on every shard; it must be above the last),
    /// else the next.
    #[pyo3(signature = (ts, from_hour, to_hour, auction_id=0))]
    fn start_auction(
        &mut self,
        py: Python<'_>,
        ts: i64,
        from_hour: i64,
        to_hour: i64,
        auction_id: u64,
    ) -> PyResult<u64> {
        let mut ex = lock(&self.shared);
        let id = if auction_id == 0 {
            ex.next_auction()
        } else {
            auction_id
        };
        ex.start_auction(ts, id, from_hour, to_hour)
            .map_err(|e| refused(py, e))
    }

    /// The running auction: `(id, from_hour, to_hour)`, or None.
    fn open_auction(&self) -> Option<(u64, i64, i64)> {
        lock(&self.shared).open_auction()
    }

    /// What the running auction decides over (see `spotex.server.auctions`), or None:
    /// `(first_hour, hours, bids, asks, clusters)`.
    fn auction_view(&self) -> Option<ViewTuple> {
        lock(&self.shared)
            .auction_view()
            .map(|(_, v)| view_tuple(v))
    }

    /// What an auction over `[from_hour, to_hour)` would decide over now.
    fn auction_view_of(&self, from_hour: i64, to_hour: i64) -> ViewTuple {
        view_tuple(lock(&self.shared).auction_view_of(from_hour, to_hour))
    }

    /// Applies the running auction's result; `AuctionResult` bytes out. `fills`:
    /// `(order_id, alternative, seller, cluster_id, start_product_id, quantity,
    /// [(node_id, [gpu index])])`; `prices`: `(product_id, price)`; `report`: an
    /// `AuctionResult` with what the solver said.
    #[allow(clippy::too_many_arguments, clippy::type_complexity)]
    fn clear_auction<'py>(
        &mut self,
        py: Python<'py>,
        ts: i64,
        auction_id: u64,
        fills: Vec<(u64, u32, u64, String, String, i64, Vec<(String, Vec<u32>)>)>,
        prices: Vec<(String, i64)>,
        report: &[u8],
        abandoned: bool,
        sold: Vec<u64>,
    ) -> Outcome<'py> {
        let report: pb::AuctionResult = decode(py, report)?;
        let clear = spotex_exchange::store::AuctionClear {
            auction_id,
            fills: fills
                .into_iter()
                .map(
                    |(order_id, alternative, seller, cluster_id, start, quantity, gpus)| {
                        spotex_exchange::store::AuctionFill {
                            order_id,
                            alternative,
                            seller,
                            cluster_id,
                            start_product_id: start,
                            quantity,
                            gpus: gpus
                                .into_iter()
                                .map(|(node_id, gpu_indices)| pb::Slot {
                                    node_id,
                                    gpu_indices,
                                    ..Default::default()
                                })
                                .collect(),
                        }
                    },
                )
                .collect(),
            prices: prices
                .into_iter()
                .map(|(product_id, price_micros)| pb::AuctionPrice {
                    product_id,
                    price_micros,
                    quantity: 0,
                })
                .collect(),
            report: Some(report),
            abandoned,
            sold_blocks: sold,
        };
        let result = lock(&self.shared)
            .clear_auction(ts, &clear)
            .map_err(|e| refused(py, e))?;
        Ok(encode(py, &result))
    }

    /// An auction's `AuctionResult` bytes (0: the latest).
    fn auction_result<'py>(&self, py: Python<'py>, auction_id: u64) -> Outcome<'py> {
        let r = lock(&self.shared)
            .auction_result(auction_id)
            .map_err(|e| refused(py, e))?;
        Ok(encode(py, &r))
    }

    /// `ListAuctionsRequest` bytes in, `ListAuctionsResponse` bytes out.
    fn list_auctions<'py>(&self, py: Python<'py>, request: &[u8]) -> Outcome<'py> {
        let r: pb::ListAuctionsRequest = decode(py, request)?;
        let page = lock(&self.shared)
            .list_auctions(&r)
            .map_err(|e| refused(py, e))?;
        Ok(encode(py, &page))
    }

    /// The credit limit (micro-dollars) of accounts without their own; `None`: money is
    /// not checked (a policy of the venue: not journaled, not checked on replay).
    #[pyo3(signature = (limit))]
    fn set_default_credit_limit(&mut self, limit: Option<i64>) {
        lock(&self.shared).set_default_credit_limit(limit);
    }

    /// How many transfers stay in memory (older ones leave it: `take_left_transfers`).
    fn set_keep_transfers(&mut self, n: usize) {
        lock(&self.shared).set_keep_transfers(n);
    }

    /// The transfers that left memory since the last call, oldest first, as
    /// `(transfer_id, debit, credit, time, Transfer bytes)`: for the caller to keep.
    fn take_left_transfers<'py>(
        &mut self,
        py: Python<'py>,
    ) -> Vec<(u64, u64, u64, i64, Bound<'py, PyBytes>)> {
        lock(&self.shared)
            .take_left_transfers()
            .into_iter()
            .map(|t| {
                let (id, d, c, ts) = (
                    t.transfer_id,
                    t.debit_account_id,
                    t.credit_account_id,
                    t.time_micros,
                );
                (id, d, c, ts, encode(py, &t))
            })
            .collect()
    }

    /// A money command of the operator, journaled: `what` is deposit, withdraw,
    /// credit_limit or fees; the request's bytes in, `BalanceResponse` bytes out.
    fn money<'py>(&mut self, py: Python<'py>, ts: i64, what: &str, request: &[u8]) -> Outcome<'py> {
        let mut ex = lock(&self.shared);
        let answer = match what {
            "deposit" => ex.deposit(ts, &decode(py, request)?),
            "withdraw" => ex.withdraw(ts, &decode(py, request)?),
            "credit_limit" => ex.set_credit_limit(ts, &decode(py, request)?),
            "fees" => ex.set_fees(ts, &decode(py, request)?),
            _ => {
                return Err(pyo3::exceptions::PyValueError::new_err(format!(
                    "unknown money command {what:?}: deposit, withdraw, credit_limit or fees"
                )))
            }
        }
        .map_err(|e| refused(py, e))?;
        Ok(encode(py, &answer))
    }

    /// One step of money moving between shards, journaled: `MoveMoneyRequest` bytes in,
    /// `MoveMoneyResponse` bytes out.
    fn move_money<'py>(&mut self, py: Python<'py>, ts: i64, request: &[u8]) -> Outcome<'py> {
        let r: pb::MoveMoneyRequest = decode(py, request)?;
        let answer = lock(&self.shared)
            .move_money(ts, &r)
            .map_err(|e| refused(py, e))?;
        Ok(encode(py, &answer))
    }

    /// `ListMovesResponse` bytes: the moves out not yet landed, the last landed per source.
    fn list_moves<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        encode(py, &lock(&self.shared).list_moves())
    }

    /// An account's `Balance` bytes.
    fn balance<'py>(&self, py: Python<'py>, account: u64) -> Bound<'py, PyBytes> {
        encode(py, &lock(&self.shared).balance(account))
    }

    /// `ListTransfersRequest` bytes in (its account already settled by the caller),
    /// `ListTransfersResponse` bytes out: the transfers still in memory.
    fn list_transfers<'py>(&self, py: Python<'py>, account: u64, request: &[u8]) -> Outcome<'py> {
        let r: pb::ListTransfersRequest = decode(py, request)?;
        let page = lock(&self.shared)
            .list_transfers(account, &r)
            .map_err(|e| refused(py, e))?;
        Ok(encode(py, &page))
    }

    /// The ledger's invariants (for tests): `None` when they hold, else what broke.
    fn check_ledger(&self) -> Option<String> {
        lock(&self.shared).check_ledger().err()
    }

    /// `GetOrderRequest` bytes in, `Order` bytes out.
    fn get_order<'py>(&self, py: Python<'py>, account: u64, request: &[u8]) -> Outcome<'py> {
        let r = decode(py, request)?;
        let o = lock(&self.shared)
            .get_order(caller(account, false, false), &r)
            .map_err(|e| refused(py, e))?;
        Ok(encode(py, &o))
    }

    /// `ListOrdersRequest` bytes in, `ListOrdersResponse` bytes out.
    fn list_orders<'py>(&self, py: Python<'py>, account: u64, request: &[u8]) -> Outcome<'py> {
        let r: pb::ListOrdersRequest = decode(py, request)?;
        let page = lock(&self.shared)
            .list_orders(caller(account, false, false), &r)
            .map_err(|e| refused(py, e))?;
        Ok(encode(py, &page))
    }

    /// `ListProductsRequest` bytes in, `ListProductsResponse` bytes out; without a request,
    /// every product in one response.
    #[pyo3(signature = (request=None))]
    fn list_products<'py>(&self, py: Python<'py>, request: Option<&[u8]>) -> Outcome<'py> {
        let ex = lock(&self.shared);
        let page = match request {
            None => ex.all_products(),
            Some(bytes) => ex
                .list_products(&decode(py, bytes)?)
                .map_err(|e| refused(py, e))?,
        };
        Ok(encode(py, &page))
    }

    /// `GetBookRequest` bytes in, `GetBookResponse` bytes out.
    fn get_book<'py>(&self, py: Python<'py>, request: &[u8]) -> Outcome<'py> {
        let r = decode(py, request)?;
        let b = lock(&self.shared)
            .get_book(&r)
            .map_err(|e| refused(py, e))?;
        Ok(encode(py, &b))
    }

    /// `ListAllocationsRequest` bytes in, `ListAllocationsResponse` bytes out.
    fn list_allocations<'py>(&self, py: Python<'py>, account: u64, request: &[u8]) -> Outcome<'py> {
        let r = decode(py, request)?;
        let caller = caller(account, false, false);
        let page = lock(&self.shared)
            .list_allocations(caller, &r)
            .map_err(|e| refused(py, e))?;
        Ok(encode(py, &page))
    }

    /// What rests in each product's book: `(product_id, bid GPUs, ask GPUs, bid orders,
    /// ask orders)`, products in the order they were listed (for metrics).
    fn depth_totals(&self) -> Vec<(String, i64, i64, u32, u32)> {
        let ex = lock(&self.shared);
        let engine = ex.engine();
        engine
            .products()
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let side = |s| {
                    engine
                        .l2(i as _, s, usize::MAX)
                        .iter()
                        .fold((0, 0), |(q, n), l| (q + l.1, n + l.2))
                };
                let (bq, bn) = side(spotex_core::Side::Buy);
                let (aq, an) = side(spotex_core::Side::Sell);
                (p.spec.id.clone(), bq, aq, bn, an)
            })
            .collect()
    }

    /// The money as a whole (for metrics): `(accounts, current summed, holds, the venue's
    /// fees, deposited, withdrawn, moved in, moved out, moves pending, their amount)`, in
    /// micro-dollars.
    #[allow(clippy::type_complexity)]
    fn money_totals(&self) -> (usize, i128, i128, i64, i64, i64, i64, i64, usize, i64) {
        lock(&self.shared).money_totals()
    }

    /// What traded since this process started, per product family: `(sku, region,
    /// trades, GPU-hours, notional in micro-dollars)`, by SKU then region (for metrics).
    fn trade_totals(&self) -> Vec<(String, String, u64, i64, i128)> {
        let ex = lock(&self.shared);
        let products = ex.engine().products();
        let mut by_family: BTreeMap<(String, String), (u64, i64, i128)> = BTreeMap::new();
        for (p, t) in ex.traded() {
            let mut parts = products[p as usize].spec.id.splitn(3, '/');
            let (sku, region) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
            let e = by_family
                .entry((sku.to_string(), region.to_string()))
                .or_default();
            e.0 += t.trades;
            e.1 += t.gpu_hours;
            e.2 += t.notional_micros;
        }
        by_family
            .into_iter()
            .map(|((sku, region), (n, q, v))| (sku, region, n, q, v))
            .collect()
    }

    /// GPUs per cluster and delivery hour in `[from_hour, to_hour)` (at most a week of
    /// hours): `(cluster, sku, region, hour, capacity, sold, offered, idle, withdrawn,
    /// owner)`, for the hours each cluster covers; a cluster id is its owner's own, so
    /// two sellers' rows may share one.
    #[allow(clippy::type_complexity)]
    fn utilisation(
        &self,
        from_hour: i64,
        to_hour: i64,
    ) -> Vec<(String, String, String, i64, i64, i64, i64, i64, i64, u64)> {
        let ex = lock(&self.shared);
        let engine = ex.engine();
        let to_hour = to_hour.min(from_hour.saturating_add(7 * 24));
        let mut rows = Vec::new();
        for (i, c) in engine.clusters().iter().enumerate() {
            for hour in from_hour..to_hour {
                if let Some(u) = engine.utilisation(i as _, hour) {
                    rows.push((
                        c.spec.id.clone(),
                        c.spec.sku.clone(),
                        c.spec.region.clone(),
                        hour,
                        u.capacity,
                        u.sold,
                        u.offered,
                        u.idle,
                        u.withdrawn,
                        c.seller,
                    ));
                }
            }
        }
        rows
    }

    /// `StreamMarketDataRequest` bytes in; a `MarketDataBatch` of whole-book snapshots out,
    /// where the subscription starts.
    fn market_snapshots<'py>(&self, py: Python<'py>, request: &[u8]) -> Outcome<'py> {
        let r: pb::StreamMarketDataRequest = decode(py, request)?;
        let updates = lock(&self.shared)
            .market_snapshots(&r.product_ids)
            .map_err(|e| refused(py, e))?;
        Ok(encode(py, &pb::MarketDataBatch { updates }))
    }

    /// What the round produced for the streams, and a new round, encoded once for every
    /// subscriber: per product (in order of first update) `(product_id, updates, bytes)`
    /// with the bytes a `MarketDataBatch` of that product's updates, and per account
    /// `(account, executions, bytes)` with the bytes an `ExecutionBatch`. Serialized
    /// batches concatenate into one batch, so a subscriber's message is their join.
    #[allow(clippy::type_complexity)]
    fn take_round<'py>(
        &mut self,
        py: Python<'py>,
    ) -> (
        Vec<(String, usize, Bound<'py, PyBytes>)>,
        Vec<(u64, usize, Bound<'py, PyBytes>)>,
        Vec<TradeTuple>,
    ) {
        let round = lock(&self.shared).take_round();
        let mut products: Vec<(String, pb::MarketDataBatch)> = Vec::new();
        // the round's trades read here once, so the trade tape need not decode every
        // level update of the round to find them
        let mut trades: Vec<TradeTuple> = Vec::new();
        for m in round.market {
            if let Some(pb::market_data::Payload::Trade(t)) = &m.payload {
                trades.push((
                    m.product_id.clone(),
                    t.trade_id,
                    t.time_micros,
                    t.price_micros,
                    t.quantity,
                    t.aggressor,
                    t.auction_id,
                ));
            }
            match products.iter_mut().find(|(p, _)| *p == m.product_id) {
                Some((_, batch)) => batch.updates.push(m),
                None => products.push((
                    m.product_id.clone(),
                    pb::MarketDataBatch { updates: vec![m] },
                )),
            }
        }
        let mut accounts: Vec<(u64, pb::ExecutionBatch)> = Vec::new();
        for (account, e) in round.executions {
            match accounts.iter_mut().find(|(a, _)| *a == account) {
                Some((_, batch)) => batch.executions.push(e),
                None => accounts.push((
                    account,
                    pb::ExecutionBatch {
                        executions: vec![e],
                        ..Default::default()
                    },
                )),
            }
        }
        (
            products
                .into_iter()
                .map(|(p, b)| (p, b.updates.len(), encode(py, &b)))
                .collect(),
            accounts
                .into_iter()
                .map(|(a, b)| (a, b.executions.len(), encode(py, &b)))
                .collect(),
            trades,
        )
    }
}

/// The items of a list call's page for a request's `page_size` (0: the default; more
/// than the most: the most).
#[pyfunction]
pub fn page_size(asked: u32) -> usize {
    spotex_exchange::exchange::page_size(asked)
}

/// How many orders a serialized `SubmitOrdersRequest` carries (for the rate limit, before
/// the writer sees it); RefusedError if it does not decode.
#[pyfunction]
pub fn count_orders(py: Python<'_>, request: &[u8]) -> PyResult<usize> {
    let r: pb::SubmitOrdersRequest = decode(py, request)?;
    Ok(r.orders.len())
}

/// The gRPC status code of every refusal reason that is not INVALID_ARGUMENT (3).
#[pyfunction]
pub fn status_codes() -> Vec<(&'static str, i32)> {
    spotex_exchange::STATUS_CODES.to_vec()
}
