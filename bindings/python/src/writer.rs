//! `spotex._core.Writer`: the one thread that runs every command, in submission order.
//!
//! The hot commands (PlaceOrder, SubmitOrders, CancelOrder, AmendOrder) arrive as request
//! bytes with the caller's identity and run here without the GIL: the exchange decodes,
//! matches, journals and encodes the response; the journal is group-committed once per
//! round. Other work (operator commands, views, snapshots) comes as Python callables and
//! runs here with the GIL, in its place in the order. At the end of a round the writer
//! takes the GIL once: the Python side keeps the round's history and publishes its market
//! data (`after_round`), and each event loop gets the round's results in one
//! `call_soon_threadsafe`: one wake-up per round, not per command.
//!
//! Nothing of a round leaves before its journal records are durable. A journal that
//! cannot be written makes the writer refuse every command (`JOURNAL_UNAVAILABLE`) until
//! the Python side has rebuilt the exchange from disk and clears `unavailable`.
//!
//! Locks: the writer never waits for the GIL while it holds the exchange, the journal or
//! its state, so a Python thread that holds the GIL and waits for one of them always gets
//! it.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc::{channel, Receiver, Sender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use prost::Message;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyBytes, PyList, PyTuple};

use spotex_core::journal::Journal;
use spotex_exchange::{pb, status_code, Caller, Refusal};

use crate::errors::refused;
use crate::exchange::{lock, Exchange, Shared};
use crate::journal::{lock_journal, JournalWriter, SharedJournal};

/// The most jobs one round takes from the queue.
const MAX_ROUND: usize = 1024;

#[derive(Clone, Copy, Debug)]
enum Op {
    Place,
    Submit,
    Cancel,
    Amend,
    CancelAll,
    AskRange,
    OneOf,
    Basket,
    Resell,
}

impl Op {
    fn parse(word: &str) -> PyResult<Op> {
        Ok(match word {
            "place" => Op::Place,
            "submit" => Op::Submit,
            "cancel" => Op::Cancel,
            "amend" => Op::Amend,
            "cancel_all" => Op::CancelAll,
            "ask_range" => Op::AskRange,
            "one_of" => Op::OneOf,
            "basket" => Op::Basket,
            "resell" => Op::Resell,
            _ => {
                return Err(PyValueError::new_err(format!(
                    "unknown command {word:?}: place, submit, cancel, amend, cancel_all, \
                     ask_range, one_of, basket or resell"
                )))
            }
        })
    }
}

struct Native {
    op: Op,
    ts: i64,
    caller: Caller,
    request: Vec<u8>,
    deadline: Option<Instant>,
}

enum Job {
    Native(Native, Py<PyAny>, Py<PyAny>),
    Python(Py<PyAny>, Py<PyAny>, Option<Py<PyAny>>),
    Stop,
}

enum Outcome {
    Bytes(Vec<u8>),
    Refused(Refusal),
    Value(Py<PyAny>),
    Error(PyErr),
}

/// Upper bounds of the time buckets (seconds) of the writer's histograms.
const SECONDS: [f64; 12] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
];
/// Upper bounds of the jobs-per-round buckets.
const JOBS: [f64; 11] = [
    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0, 1024.0,
];

/// A histogram with fixed buckets: counts per bucket (the last one past every bound),
/// and the sum of what was observed.
#[derive(Clone, Debug)]
struct Hist {
    bounds: &'static [f64],
    counts: Vec<u64>,
    sum: f64,
}

impl Hist {
    fn new(bounds: &'static [f64]) -> Hist {
        Hist {
            bounds,
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
        }
    }

    fn observe(&mut self, v: f64) {
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum += v;
    }

    /// `(bounds, cumulative counts per bound and +Inf, sum)`, as Prometheus shows them.
    fn export(&self) -> (Vec<f64>, Vec<u64>, f64) {
        let mut total = 0;
        let cumulative = self
            .counts
            .iter()
            .map(|c| {
                total += c;
                total
            })
            .collect();
        (self.bounds.to_vec(), cumulative, self.sum)
    }
}

const TYPES: [&str; 2] = ["limit", "market"];
const TIFS: [&str; 4] = ["gtc", "gtd", "ioc", "fok"];

/// What the writer counted since it started: for metrics, never for results.
#[derive(Clone)]
struct Stats {
    round_jobs: Hist,
    round_seconds: Hist,
    sync_seconds: Hist,
    /// orders accepted, by type and time in force
    accepted: [[u64; 4]; 2],
    /// `(command, type, time in force, reason)`: refused orders, cancels and amends
    /// (type and time in force empty for those); cancels and amends done count under
    /// the reason "accepted"
    other: std::collections::BTreeMap<(&'static str, &'static str, &'static str, String), u64>,
}

impl Stats {
    fn new() -> Stats {
        Stats {
            round_jobs: Hist::new(&JOBS),
            round_seconds: Hist::new(&SECONDS),
            sync_seconds: Hist::new(&SECONDS),
            accepted: [[0; 4]; 2],
            other: Default::default(),
        }
    }

    fn order(&mut self, order_type: i32, tif: i32, refused: Option<&str>) {
        let (t, f) = (order_type.clamp(0, 1) as usize, tif.clamp(0, 3) as usize);
        match refused {
            None => self.accepted[t][f] += 1,
            Some(reason) => {
                *self
                    .other
                    .entry(("place", TYPES[t], TIFS[f], reason.to_string()))
                    .or_default() += 1
            }
        }
    }

    fn command(&mut self, command: &'static str, refused: Option<&str>) {
        let reason = refused.unwrap_or("accepted").to_string();
        *self.other.entry((command, "", "", reason)).or_default() += 1;
    }
}

/// What the writer and the Python side share; locked briefly, never across the GIL.
struct State {
    ex: Option<Shared>,
    journal: Option<SharedJournal>,
    /// fsync once per round (`True`), or only hand the records to the OS
    sync: bool,
    /// why commands are refused now (the journal could not be written), or None
    unavailable: Option<String>,
    /// `unavailable.is_some()`, readable without this lock (by the event loop, before it
    /// queues a command)
    refusing: Arc<AtomicBool>,
    /// the exchange's clock: never steps back
    last_ts: i64,
    /// how many times the journal failed: a round during which it failed acknowledges
    /// nothing (records of its earlier commands may not be durable)
    failures: u64,
    stats: Stats,
}

impl State {
    fn fail(&mut self, why: String) {
        if self.unavailable.is_none() {
            self.failures += 1;
        }
        self.unavailable = Some(why);
        self.refusing.store(true, Ordering::Release);
    }

    fn accept(&mut self) {
        self.unavailable = None;
        self.refusing.store(false, Ordering::Release);
    }
}

fn state(s: &Arc<Mutex<State>>) -> MutexGuard<'_, State> {
    s.lock().unwrap_or_else(|e| e.into_inner())
}

fn unavailable(why: &str) -> Refusal {
    Refusal::new(
        "JOURNAL_UNAVAILABLE",
        format!("the journal cannot be written ({why}); nothing is accepted until it can"),
    )
}

fn malformed(e: prost::DecodeError) -> Refusal {
    Refusal::new("INVALID_ARGUMENT", format!("malformed request: {e}"))
}

/// Every order of a `SubmitOrdersRequest` refused for one reason (the bulk stream answers
/// per order, never with a failed call).
fn refuse_all(request: &[u8], why: Refusal) -> Result<Vec<u8>, Refusal> {
    let n = pb::SubmitOrdersRequest::decode(request)
        .map_err(malformed)?
        .orders
        .len();
    let result = pb::OrderResult {
        order: None,
        code: status_code(why.reason),
        reason: why.reason.to_string(),
        message: why.message,
    };
    Ok(pb::SubmitOrdersResponse {
        results: vec![result; n],
    }
    .encode_to_vec())
}

/// One hot command: applied to the exchange, journaled (not yet durable), answered.
fn run(st: &mut State, job: &Native) -> Result<Vec<u8>, Refusal> {
    if let Some(why) = &st.unavailable {
        let why = unavailable(why);
        return match job.op {
            Op::Submit => refuse_all(&job.request, why),
            _ => Err(why),
        };
    }
    if job.deadline.is_some_and(|d| Instant::now() > d) {
        return Err(Refusal::new(
            "DEADLINE_EXCEEDED",
            "the deadline passed before the command reached the engine; it was not applied",
        ));
    }
    st.last_ts = st.last_ts.max(job.ts);
    let (ts, caller, body) = (st.last_ts, job.caller, &job.request[..]);
    let shared = st.ex.as_ref().ok_or_else(|| unavailable("no exchange"))?;
    let mut ex = lock(shared);
    let order = |o: pb::Order| Some(o);
    let stats = &mut st.stats;
    let answer = match job.op {
        Op::Place => pb::PlaceOrderRequest::decode(body)
            .map_err(malformed)
            .and_then(|r| {
                let placed = ex.place_order(ts, caller, &r);
                let refused = placed.as_ref().err().map(|e| e.reason);
                stats.order(r.order_type, r.time_in_force, refused);
                placed
            })
            .map(|o| pb::PlaceOrderResponse { order: order(o) }.encode_to_vec()),
        Op::Submit => pb::SubmitOrdersRequest::decode(body)
            .map_err(malformed)
            .map(|r| {
                let answer = ex.submit_orders(ts, caller, &r);
                for (o, result) in r.orders.iter().zip(&answer.results) {
                    let refused = (result.code != 0).then_some(result.reason.as_str());
                    stats.order(o.order_type, o.time_in_force, refused);
                }
                answer.encode_to_vec()
            }),
        Op::Cancel => pb::CancelOrderRequest::decode(body)
            .map_err(malformed)
            .and_then(|r| ex.cancel_order(ts, caller, &r))
            .map(|o| pb::CancelOrderResponse { order: order(o) }.encode_to_vec()),
        Op::Amend => pb::AmendOrderRequest::decode(body)
            .map_err(malformed)
            .and_then(|r| ex.amend_order(ts, caller, &r))
            .map(|o| pb::AmendOrderResponse { order: order(o) }.encode_to_vec()),
        Op::CancelAll => pb::CancelAllRequest::decode(body)
            .map_err(malformed)
            .and_then(|r| ex.cancel_all(ts, caller, &r))
            .map(|r| r.encode_to_vec()),
        Op::Basket => pb::PlaceBasketRequest::decode(body)
            .map_err(malformed)
            .and_then(|r| ex.place_basket(ts, caller, &r))
            .map(|r| r.encode_to_vec()),
        Op::Resell => pb::ResellRequest::decode(body)
            .map_err(malformed)
            .and_then(|r| ex.resell(ts, caller, &r))
            .map(|r| r.encode_to_vec()),
        Op::OneOf => pb::PlaceOneOfRequest::decode(body)
            .map_err(malformed)
            .and_then(|r| ex.place_one_of(ts, caller, &r))
            .map(|o| pb::PlaceOrderResponse { order: order(o) }.encode_to_vec()),
        Op::AskRange => pb::PlaceAskRangeRequest::decode(body)
            .map_err(malformed)
            .and_then(|r| {
                let answer = ex.place_ask_range(ts, caller, &r)?;
                if let Some(ask) = &r.ask {
                    for result in &answer.results {
                        let refused = (result.code != 0).then_some(result.reason.as_str());
                        stats.order(ask.order_type, ask.time_in_force, refused);
                    }
                }
                Ok(answer.encode_to_vec())
            }),
    };
    match job.op {
        Op::Cancel => stats.command("cancel", answer.as_ref().err().map(|e| e.reason)),
        Op::Amend => stats.command("amend", answer.as_ref().err().map(|e| e.reason)),
        Op::CancelAll => stats.command("cancel_all", answer.as_ref().err().map(|e| e.reason)),
        Op::OneOf => stats.command("one_of", answer.as_ref().err().map(|e| e.reason)),
        Op::Basket => stats.command("basket", answer.as_ref().err().map(|e| e.reason)),
        Op::Resell => stats.command("resell", answer.as_ref().err().map(|e| e.reason)),
        _ => {}
    }
    // what the command journaled (the command if accepted; a clock step if a refusal
    // moved the clock)
    let entries = ex.take_journal();
    drop(ex);
    if let Some(journal) = st.journal.clone() {
        let mut j = lock_journal(&journal);
        let failed = match j.as_mut() {
            None => Some("journal closed".to_string()),
            Some(j) => entries
                .iter()
                .find_map(|e| j.append(e.seq, e.ts, &e.command, b"").err())
                .map(|e| format!("append: {e}")),
        };
        if let Some(why) = failed {
            let refusal = unavailable(&why);
            st.fail(why);
            return Err(refusal);
        }
    }
    answer
}

/// Makes the round's records durable (or hands them to the OS). The round fails (the
/// reason is returned) if the journal failed at any point since `failures` was read at
/// its start. While the journal is unavailable nothing is appended and nothing synced:
/// the round's answers (refusals, views) stand.
fn commit(st: &mut State, failures: u64) -> Option<String> {
    if st.unavailable.is_none() {
        if let Some(journal) = st.journal.clone() {
            let mut j = lock_journal(&journal);
            let started = Instant::now();
            let done = match j.as_mut() {
                None => Err("journal closed".to_string()),
                Some(j) if st.sync => j.sync().map_err(|e| format!("sync: {e}")),
                Some(j) => j.flush().map_err(|e| format!("flush: {e}")),
            };
            drop(j);
            st.stats
                .sync_seconds
                .observe(started.elapsed().as_secs_f64());
            if let Err(why) = done {
                st.fail(why);
            }
        }
    }
    if st.failures == failures {
        return None;
    }
    Some(
        st.unavailable
            .clone()
            .unwrap_or_else(|| "the journal failed".into()),
    )
}

struct Thread {
    rx: Receiver<Job>,
    pending: Arc<AtomicUsize>,
    state: Arc<Mutex<State>>,
    deliver: Py<PyAny>,
    after_round: Py<PyAny>,
}

type Done = (Py<PyAny>, Option<Py<PyAny>>, Outcome);
/// Results grouped by the event loop that waits for them (None: set from the writer).
type ByLoop = Vec<(Option<Py<PyAny>>, Vec<Py<PyAny>>)>;

impl Thread {
    fn run(self) {
        while let Ok(first) = self.rx.recv() {
            let mut round = vec![first];
            while round.len() < MAX_ROUND {
                match self.rx.try_recv() {
                    Ok(job) => round.push(job),
                    Err(_) => break,
                }
            }
            let started = Instant::now();
            self.pending.fetch_sub(round.len(), Ordering::Relaxed);
            let jobs = round.len();
            let failures = state(&self.state).failures;
            let mut stop = false;
            let mut done: Vec<Done> = Vec::with_capacity(round.len());
            for job in round {
                match job {
                    Job::Stop => stop = true,
                    Job::Native(native, fut, lp) => {
                        let outcome = catch_unwind(AssertUnwindSafe(|| {
                            run(&mut state(&self.state), &native)
                        }))
                        .unwrap_or_else(|_| {
                            Err(Refusal::new(
                                "INTERNAL",
                                "the exchange failed on this request; the server logged it",
                            ))
                        });
                        let outcome = match outcome {
                            Ok(bytes) => Outcome::Bytes(bytes),
                            Err(r) => Outcome::Refused(r),
                        };
                        done.push((fut, Some(lp), outcome));
                    }
                    Job::Python(f, fut, lp) => {
                        let outcome = Python::attach(|py| {
                            let outcome = match f.call0(py) {
                                Ok(v) => Outcome::Value(v),
                                Err(e) => Outcome::Error(e),
                            };
                            drop(f);
                            outcome
                        });
                        done.push((fut, lp, outcome));
                    }
                }
            }
            let failed = commit(&mut state(&self.state), failures);
            self.finish(done, failed);
            {
                let mut st = state(&self.state);
                st.stats.round_jobs.observe(jobs as f64);
                st.stats
                    .round_seconds
                    .observe(started.elapsed().as_secs_f64());
            }
            if stop {
                return;
            }
        }
    }

    /// With the GIL, once: the Python side's end of the round, then the results.
    fn finish(&self, done: Vec<Done>, mut failed: Option<String>) {
        Python::attach(|py| {
            if let Err(e) = self.after_round.call1(py, (failed.clone(),)) {
                if failed.is_none() {
                    let why = format!("{e}");
                    state(&self.state).fail(why.clone());
                    failed = Some(why);
                }
            }
            if failed.is_some() {
                // nothing of the round may be acknowledged or published
                if let Some(ex) = &state(&self.state).ex {
                    lock(ex).take_round();
                }
            }
            let mut loops: ByLoop = Vec::new();
            for (fut, lp, outcome) in done {
                let (ok, value): (bool, Py<PyAny>) = match (&failed, outcome) {
                    (Some(why), _) => (
                        false,
                        refused(
                            py,
                            Refusal::new(
                                "OUTCOME_UNKNOWN",
                                format!(
                                    "the journal did not confirm the command ({why}): it \
                                     may or may not have been applied; look it up by its \
                                     client order id once the venue serves again"
                                ),
                            ),
                        )
                        .into_value(py)
                        .into_any(),
                    ),
                    (None, Outcome::Bytes(b)) => (true, PyBytes::new(py, &b).into_any().unbind()),
                    (None, Outcome::Refused(r)) => {
                        (false, refused(py, r).into_value(py).into_any())
                    }
                    (None, Outcome::Value(v)) => (true, v),
                    (None, Outcome::Error(e)) => (false, e.into_value(py).into_any()),
                };
                let item = PyTuple::new(
                    py,
                    [
                        fut,
                        PyBool::new(py, ok).to_owned().into_any().unbind(),
                        value,
                    ],
                )
                .expect("a tuple of three")
                .into_any()
                .unbind();
                match loops.iter_mut().find(|(l, _)| match (l, &lp) {
                    (None, None) => true,
                    (Some(a), Some(b)) => a.is(b),
                    _ => false,
                }) {
                    Some((_, items)) => items.push(item),
                    None => loops.push((lp, vec![item])),
                }
            }
            for (lp, items) in loops {
                let list = PyList::new(py, items).expect("a list");
                let sent = match lp {
                    None => self.deliver.call1(py, (list,)).map(drop),
                    Some(lp) => lp
                        .call_method1(py, "call_soon_threadsafe", (&self.deliver, list))
                        .map(drop),
                };
                if let Err(e) = sent {
                    // a loop that closed meanwhile: nobody waits for these results
                    e.write_unraisable(py, None);
                }
            }
        });
    }
}

/// The writer thread and what it shares with the Python side.
#[pyclass(module = "spotex._core")]
pub struct Writer {
    tx: Sender<Job>,
    /// whether commands are refused now (as `State::refusing`)
    refusing: Arc<AtomicBool>,
    /// Set (with the GIL held, as every `send` checks it) once `stop` was called: nothing
    /// is taken after the stop job.
    stopped: AtomicBool,
    /// jobs submitted and not yet taken into a round
    pending: Arc<AtomicUsize>,
    state: Arc<Mutex<State>>,
    /// Taken by `stop`, which borrows the writer shared: the last round's Python end may
    /// still read it (`unavailable`) while `stop` waits for the thread.
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Writer {
    fn send(&self, job: Job) -> PyResult<()> {
        let stopped = || PyValueError::new_err("the writer has stopped");
        if self.stopped.load(Ordering::Acquire) {
            return Err(stopped());
        }
        self.pending.fetch_add(1, Ordering::Relaxed);
        self.tx.send(job).map_err(|_| stopped())
    }
}

#[pymethods]
impl Writer {
    /// Starts the thread. `deliver(results)` sets futures from `(future, ok, value)`
    /// tuples (on each future's loop); `after_round(failed)` runs on the writer, with the
    /// GIL, after each round's records are durable (`failed` None) or failed to be
    /// (`failed` says why: nothing of the round is acknowledged or published), before
    /// its results leave; an exception from it fails the round. `sync`: fsync once per
    /// round.
    #[new]
    #[pyo3(signature = (deliver, after_round, sync=true))]
    fn new(deliver: Py<PyAny>, after_round: Py<PyAny>, sync: bool) -> PyResult<Self> {
        let (tx, rx) = channel();
        let refusing = Arc::new(AtomicBool::new(false));
        let state = Arc::new(Mutex::new(State {
            ex: None,
            journal: None,
            sync,
            unavailable: None,
            refusing: refusing.clone(),
            last_ts: 0,
            failures: 0,
            stats: Stats::new(),
        }));
        let pending = Arc::new(AtomicUsize::new(0));
        let thread = Thread {
            rx,
            pending: pending.clone(),
            state: state.clone(),
            deliver,
            after_round,
        };
        let handle = std::thread::Builder::new()
            .name("spotex-writer".into())
            .spawn(move || thread.run())
            .map_err(|e| PyValueError::new_err(format!("cannot start the writer: {e}")))?;
        Ok(Writer {
            tx,
            refusing,
            stopped: AtomicBool::new(false),
            pending,
            state,
            thread: Mutex::new(Some(handle)),
        })
    }

    /// The exchange and the journal (None: nothing is kept) the hot commands go to;
    /// call again after recovery built a new exchange.
    #[pyo3(signature = (exchange, journal=None))]
    fn attach(&self, exchange: &Exchange, journal: Option<&JournalWriter>) {
        let mut st = state(&self.state);
        st.ex = Some(exchange.shared.clone());
        st.journal = journal.map(|j| j.shared.clone());
    }

    /// Runs `f()` on the writer, after everything submitted before it; `future` gets
    /// its result or exception on `loop` (None: set from the writer, a
    /// `concurrent.futures.Future`).
    #[pyo3(signature = (f, future, r#loop=None))]
    fn call(&self, f: Py<PyAny>, future: Py<PyAny>, r#loop: Option<Py<PyAny>>) -> PyResult<()> {
        self.send(Job::Python(f, future, r#loop))
    }

    /// A hot command: `op` is place, submit, cancel, amend or cancel_all; `request` the contract's
    /// serialized request; the answer is the serialized response (`PlaceOrderResponse`,
    /// `SubmitOrdersResponse`, ...), or RefusedError. `ts`: the time it arrived (the
    /// exchange's clock never steps back). `remaining`: seconds until the caller's
    /// deadline; past it the command is refused, not applied.
    #[pyo3(signature = (op, ts, account, buyer, seller, request, remaining, future, r#loop))]
    #[allow(clippy::too_many_arguments)]
    fn command(
        &self,
        op: &str,
        ts: i64,
        account: u64,
        buyer: bool,
        seller: bool,
        request: &[u8],
        remaining: Option<f64>,
        future: Py<PyAny>,
        r#loop: Py<PyAny>,
    ) -> PyResult<()> {
        let deadline = remaining.map(|s| {
            Instant::now() + Duration::try_from_secs_f64(s.max(0.0)).unwrap_or(Duration::MAX / 2)
        });
        let native = Native {
            op: Op::parse(op)?,
            ts,
            caller: Caller {
                account,
                buyer,
                seller,
            },
            request: request.to_vec(),
            deadline,
        };
        self.send(Job::Native(native, future, r#loop))
    }

    /// Moves the exchange's clock to at least `now` and returns it. The writer's state
    /// is locked with the GIL released (as in every reader here): the writer holds the
    /// lock while a round is made durable, and a caller holding the GIL meanwhile would
    /// stall every other Python thread, the event loop included.
    fn stamp(&self, py: Python<'_>, now: i64) -> i64 {
        py.detach(|| {
            let mut st = state(&self.state);
            st.last_ts = st.last_ts.max(now);
            st.last_ts
        })
    }

    #[getter]
    fn last_ts(&self, py: Python<'_>) -> i64 {
        py.detach(|| state(&self.state).last_ts)
    }

    /// Whether commands are refused now: a read without waiting for the writer's round
    /// (the reason is `unavailable`).
    #[getter]
    fn refusing(&self) -> bool {
        self.refusing.load(Ordering::Acquire)
    }

    /// Why commands are refused now (the journal could not be written), or None.
    #[getter]
    fn get_unavailable(&self, py: Python<'_>) -> Option<String> {
        py.detach(|| state(&self.state).unavailable.clone())
    }

    /// Set when the Python side's own journal write failed (the round it happened in
    /// acknowledges nothing); cleared once the exchange was rebuilt from disk.
    #[setter]
    fn set_unavailable(&self, py: Python<'_>, why: Option<String>) {
        py.detach(|| {
            let mut st = state(&self.state);
            match why {
                Some(why) => st.fail(why),
                None => st.accept(),
            }
        })
    }

    /// What the writer counted, for metrics: `pending` (jobs queued), histograms
    /// `round_jobs`, `round_seconds` and `sync_seconds` as `(bounds, cumulative counts
    /// with +Inf last, sum)`, and `orders` as `(command, type, tif, outcome, count)`
    /// rows (outcome `accepted` or the refusal reason).
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyDict>> {
        // a copy taken with the GIL released (see `stamp`), read with it held
        let stats = py.detach(|| state(&self.state).stats.clone());
        let d = pyo3::types::PyDict::new(py);
        d.set_item("pending", self.pending.load(Ordering::Relaxed))?;
        d.set_item("round_jobs", stats.round_jobs.export())?;
        d.set_item("round_seconds", stats.round_seconds.export())?;
        d.set_item("sync_seconds", stats.sync_seconds.export())?;
        let mut rows: Vec<(&str, &str, &str, String, u64)> = Vec::new();
        for (t, by_tif) in stats.accepted.iter().enumerate() {
            for (f, n) in by_tif.iter().enumerate() {
                if *n > 0 {
                    rows.push(("place", TYPES[t], TIFS[f], "accepted".into(), *n));
                }
            }
        }
        for ((c, t, f, r), n) in &stats.other {
            rows.push((c, t, f, r.clone(), *n));
        }
        d.set_item("orders", rows)?;
        Ok(d)
    }

    /// Finishes what was submitted before, then ends the thread.
    fn stop(&self, py: Python<'_>) {
        if !self.stopped.swap(true, Ordering::AcqRel) {
            let _ = self.tx.send(Job::Stop);
        }
        let handle = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            py.detach(|| {
                let _ = handle.join();
            });
        }
    }
}
