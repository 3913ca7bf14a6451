//! Replay of a journal in Rust: the exchange rebuilt from a snapshot or from nothing up
//! to a sequence or a time, with the trades seen on the way.

use pyo3::prelude::*;

use spotex_core as core;

use crate::engine::Engine;
use crate::errors::journal_error;

pub(crate) type TradeRow = (u64, i64, u64, String, i64, i64, &'static str);

/// Rebuilds the exchange from its journal in Rust: from `snapshot` (an exchange snapshot,
/// taken at `snapshot_seq`) or from nothing, applying records up to `until_seq` /
/// `until_ts`. Returns the engine (for views of the books), the last sequence applied,
/// the trades seen on the way as `(seq, ts, trade_id, product, price, qty, aggressor)`,
/// and the exchange's state hash there (the books' and, once there is money, the
/// ledger's).
#[pyfunction]
#[pyo3(signature = (path, *, until_seq=None, until_ts=None, snapshot=None, snapshot_seq=0))]
pub(crate) fn replay_journal(
    py: Python<'_>,
    path: std::path::PathBuf,
    until_seq: Option<u64>,
    until_ts: Option<i64>,
    snapshot: Option<&[u8]>,
    snapshot_seq: u64,
) -> PyResult<(Engine, u64, Vec<TradeRow>, String)> {
    let (ex, last, trades, hash) = py
        .detach(|| replayed(path, until_seq, until_ts, snapshot, snapshot_seq))
        .map_err(journal_error)?;
    Ok((Engine::wrap(ex.into_engine()), last, trades, hash))
}

/// `replay_journal`, and the money there for an audit: `None` when the ledger's
/// invariants hold (else what broke), and every account's `Balance` bytes, by id.
#[pyfunction]
#[pyo3(signature = (path, *, until_seq=None, until_ts=None, snapshot=None, snapshot_seq=0))]
#[allow(clippy::type_complexity)]
pub(crate) fn replay_audit<'py>(
    py: Python<'py>,
    path: std::path::PathBuf,
    until_seq: Option<u64>,
    until_ts: Option<i64>,
    snapshot: Option<&[u8]>,
    snapshot_seq: u64,
) -> PyResult<(
    Engine,
    u64,
    Vec<TradeRow>,
    String,
    Option<String>,
    Vec<Bound<'py, pyo3::types::PyBytes>>,
)> {
    use prost::Message;
    let (ex, last, trades, hash) = py
        .detach(|| replayed(path, until_seq, until_ts, snapshot, snapshot_seq))
        .map_err(journal_error)?;
    let problem = ex.check_ledger().err();
    let balances = ex
        .balances()
        .iter()
        .map(|b| pyo3::types::PyBytes::new(py, &b.encode_to_vec()))
        .collect();
    Ok((
        Engine::wrap(ex.into_engine()),
        last,
        trades,
        hash,
        problem,
        balances,
    ))
}

type Replayed = (spotex_exchange::Exchange, u64, Vec<TradeRow>, String);

fn replayed(
    path: std::path::PathBuf,
    until_seq: Option<u64>,
    until_ts: Option<i64>,
    snapshot: Option<&[u8]>,
    snapshot_seq: u64,
) -> Result<Replayed, String> {
    use spotex_exchange::pb::market_data::Payload;
    {
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
        let hash = ex.state_hash();
        Ok((ex, last, trades, hash))
    }
}
