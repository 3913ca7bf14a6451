//! Recovery: the newest snapshot and the journal after it, back to the same exchange.
//! The journal is spotex-core's directory of segments, holding [`crate::JournalEntry`]
//! commands in the store's encoding.

use std::path::Path;

use spotex_core::journal::{self, Journal, TornTail};

use crate::exchange::{Exchange, StoreError};

/// What a recovery did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Recovery {
    /// The snapshot's sequence (0 without one).
    pub snapshot_seq: u64,
    pub replayed: u64,
    /// A torn last record found (and not applied): a crash mid-write.
    pub torn_tail: Option<TornTail>,
}

/// Rebuilds the exchange from `snapshot` (or from nothing) and the journal records of
/// `dir` after it, up to `until_seq` when given. `keep_ended` must be what the live
/// exchange kept, so the same records leave memory in the same order.
pub fn recover(
    dir: &Path,
    snapshot: Option<&[u8]>,
    max_open_orders: u32,
    keep_ended: usize,
    until_seq: Option<u64>,
) -> Result<(Exchange, Recovery), StoreError> {
    let mut ex = match snapshot {
        Some(bytes) => Exchange::restore(bytes, max_open_orders)?,
        None => Exchange::new(max_open_orders),
    };
    ex.set_keep_ended(keep_ended);
    let snapshot_seq = ex.sequence();
    let (records, torn_tail) =
        journal::read_dir(dir, snapshot_seq).map_err(|e| StoreError(e.to_string()))?;
    let mut replayed = 0;
    for r in &records {
        if until_seq.is_some_and(|s| r.seq > s) {
            break;
        }
        ex.replay(r.seq, r.ts, &r.command)?;
        replayed += 1;
    }
    Ok((
        ex,
        Recovery {
            snapshot_seq,
            replayed,
            torn_tail,
        },
    ))
}

impl Exchange {
    /// Appends the journal entries of the commands applied since the last call to
    /// `journal` (not yet made durable: the caller syncs once per round).
    pub fn write_journal(&mut self, journal: &mut impl Journal) -> std::io::Result<usize> {
        let entries = self.take_journal();
        for e in &entries {
            journal.append(e.seq, e.ts, &e.command, &[])?;
        }
        Ok(entries.len())
    }
}
