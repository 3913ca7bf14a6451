//! A shard's replicated journal on NATS JetStream (see spotex-replicated): reading and
//! following its stream, its snapshots in the object store, and the leader lease.

use std::sync::Mutex;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors::journal_error;
use crate::journal::{record_rows, RecordRow};

pub(crate) fn jetstream_config(
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
pub(crate) fn read_jetstream<'py>(
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

/// What a standby reads to follow a shard's stream: the records of its messages from
/// `from_message` (a stream sequence; 1: the start) to its last now, checked, and the
/// message to read from next.
#[pyfunction]
#[pyo3(signature = (servers, shard, from_message, until=None, timeout_seconds=10.0))]
pub(crate) fn follow_jetstream<'py>(
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
pub(crate) fn put_jetstream_snapshot(
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
pub(crate) fn get_jetstream_snapshot<'py>(
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
pub(crate) struct Lease {
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
