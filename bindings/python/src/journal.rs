//! Journal files: the `JournalWriter` (a directory of segments, or a shard's JetStream
//! stream) shared with the writer thread, and reading, bounding, retiring and cutting a
//! journal directory's segments.

use std::sync::{Arc, Mutex};

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use spotex_core as core;

use crate::errors::journal_error;
use crate::replicated::jetstream_config;

/// The journal behind a `JournalWriter`, shared with the writer thread
/// ([`crate::writer::Writer`]), which appends the hot commands' records and syncs them without
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

pub(crate) fn open_journal(j: &mut Option<Log>) -> PyResult<&mut Log> {
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

    /// The newest segment and the length up to which it is durable (cut it back to this
    /// after a failure; older segments are durable whole), or None before any record.
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

pub(crate) type RecordRow<'py> = (u64, i64, Bound<'py, PyBytes>, Bound<'py, PyBytes>);
pub(crate) type TornRow = (std::path::PathBuf, u64, u64);

pub(crate) fn record_rows<'py>(
    py: Python<'py>,
    recs: &[core::journal::Record],
) -> Vec<RecordRow<'py>> {
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

/// The records of a journal directory with a sequence above `after` as `(seq, ts, command,
/// meta)`, and the torn tail as `(segment path, offset, bytes)` or None. Corruption
/// followed by good records, or a gap between segments, raises JournalError.
#[pyfunction]
#[pyo3(signature = (path, after=0))]
#[allow(clippy::type_complexity)]
pub(crate) fn read_journal<'py>(
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
pub(crate) fn journal_bounds(
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
pub(crate) fn journal_segments(
    path: std::path::PathBuf,
) -> PyResult<Vec<(u64, std::path::PathBuf)>> {
    core::journal::segments(&path).map_err(|e| journal_error(format!("{}: {e}", path.display())))
}

/// Removes (or moves into `archive`) the segments holding only records at or below
/// `upto`; never the newest. Returns the retired paths.
#[pyfunction]
#[pyo3(signature = (path, upto, archive=None))]
pub(crate) fn retire_journal(
    path: std::path::PathBuf,
    upto: u64,
    archive: Option<std::path::PathBuf>,
) -> PyResult<Vec<std::path::PathBuf>> {
    core::journal::retire(&path, upto, archive.as_deref())
        .map_err(|e| journal_error(format!("retiring segments of {}: {e}", path.display())))
}

/// Cuts a journal at `offset`, dropping a torn tail.
#[pyfunction]
pub(crate) fn truncate_journal(path: std::path::PathBuf, offset: u64) -> PyResult<()> {
    core::journal::truncate(&path, offset).map_err(|e| journal_error(format!("truncate: {e}")))
}
