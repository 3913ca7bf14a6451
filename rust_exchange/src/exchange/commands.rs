//! Operator and seller commands: products listed and their state, a shard's id base,
//! capacity registered and withdrawn, and time moving on.

use spotex_core::{ClusterSpec, Command, Event, NodeSpec, ProductSpec, Topology};

use crate::pb;
use crate::refusal::Refusal;
use crate::store::{self, command::Kind};

use super::journal::{journaled, NOBODY};
use super::{Caller, Exchange};

/// Which rule of a product's schedule is broken, for people (the engine refuses them all
/// as INVALID_SCHEDULE): the delivery hour or the gate closure already past, opening
/// after the gate closure, or the gate closure after delivery starts.
fn schedule_problem(id: &str, now: i64, open_at: i64, close_at: i64) -> Option<String> {
    const HOUR: i64 = 3_600_000_000;
    let delivery = spotex_core::product::parse_product_id(id).ok()?.2 * HOUR;
    Some(if delivery <= now {
        format!("{id} is in the past: its delivery hour has begun or ended")
    } else if close_at <= now {
        format!("{id}'s gate closure is in the past: it could not trade")
    } else if close_at > delivery {
        format!("{id}'s gate closure must be no later than the start of its delivery hour")
    } else if open_at >= close_at {
        format!("{id} must open before its gate closure")
    } else {
        return None;
    })
}

impl Exchange {
    pub fn create_product(
        &mut self,
        ts: i64,
        id: &str,
        tick: i64,
        lot: i64,
        close_at: i64,
        open_at: Option<i64>,
        auction_first: bool,
    ) -> Result<(), Refusal> {
        let open_at = open_at.unwrap_or(ts);
        let spec = ProductSpec {
            id: id.to_string(),
            tick,
            lot,
            open_at,
            close_at,
        };
        let id_ = id.to_string();
        let journal = move || {
            journaled(
                NOBODY,
                Kind::CreateProduct(store::CreateProduct {
                    product_id: id_,
                    tick_micros: tick,
                    lot,
                    close_at_micros: close_at,
                    open_at_micros: open_at,
                    auction_first,
                }),
            )
        };
        self.run(ts, &Command::CreateProduct(spec), None, journal)
            .map_err(|mut e| {
                if e.reason == "INVALID_SCHEDULE" {
                    if let Some(why) = schedule_problem(id, ts, open_at, close_at) {
                        e.message = why;
                    }
                }
                e
            })?;
        if auction_first {
            // part of the same journaled command: replay holds it again
            let product = self.product(id)?;
            let mut out = Vec::new();
            self.engine
                .apply(ts, &Command::HoldForAuction { product }, &mut out)
                .expect("a product just listed can be held");
            self.absorb(&out, ts, None);
        }
        Ok(())
    }

    /// A shard's ids: orders and trades are numbered from `base` on. Only before the
    /// first id is given (`IDS_IN_USE` after).
    pub fn set_id_base(&mut self, ts: i64, base: u64) -> Result<(), Refusal> {
        let journal = || journaled(NOBODY, Kind::IdBase(store::IdBase { base }));
        self.run(ts, &Command::IdBase { base }, None, journal)
            .map(drop)
    }

    /// The next order id and trade id to be given.
    pub fn next_ids(&self) -> (u64, u64) {
        self.engine.next_ids()
    }

    /// `what`: halt, resume or close.
    pub fn set_state(&mut self, ts: i64, what: &str, product_id: &str) -> Result<(), Refusal> {
        let product = self.product(product_id)?;
        let cmd = match what {
            "halt" => Command::Halt { product },
            "resume" => Command::Resume { product },
            "close" => Command::Close { product },
            _ => return Err(Refusal::new("INVALID_ARGUMENT", "halt, resume or close")),
        };
        let journal = || {
            journaled(
                NOBODY,
                Kind::SetState(store::SetState {
                    what: what.to_string(),
                    product_id: product_id.to_string(),
                }),
            )
        };
        self.run(ts, &cmd, None, journal).map(drop)
    }

    pub fn register_capacity(
        &mut self,
        ts: i64,
        caller: Caller,
        r: &pb::RegisterCapacityRequest,
    ) -> Result<(), Refusal> {
        let spec = ClusterSpec {
            id: r.cluster_id.clone(),
            sku: r.sku.clone(),
            region: r.region.clone(),
            nodes: r
                .nodes
                .iter()
                .map(|n| NodeSpec {
                    id: n.node_id.clone(),
                    gpus: n.gpus,
                    place: Topology {
                        block: n.block.clone(),
                        rack: n.rack.clone(),
                        domain: n.nvlink_domain.clone(),
                    },
                })
                .collect(),
            from_hour: r.from_hour,
            to_hour: r.to_hour,
        };
        let account = caller.account;
        let journal = || journaled(caller, Kind::RegisterCapacity(r.clone()));
        self.run(
            ts,
            &Command::RegisterCapacity { account, spec },
            None,
            journal,
        )
        .map(drop)
    }

    /// Returns the GPU-hours taken out of sale.
    pub fn withdraw_capacity(
        &mut self,
        ts: i64,
        caller: Caller,
        r: &pb::WithdrawCapacityRequest,
    ) -> Result<i64, Refusal> {
        let cluster = self
            .engine
            .cluster_handle(caller.account, &r.cluster_id)
            .ok_or_else(|| Refusal::new("UNKNOWN_CLUSTER", "no such cluster of yours"))?;
        let cmd = Command::WithdrawCapacity {
            account: caller.account,
            cluster,
            from_hour: r.from_hour,
            to_hour: r.to_hour,
            nodes: r.node_ids.clone(),
        };
        self.run(ts, &cmd, None, || {
            journaled(caller, Kind::WithdrawCapacity(r.clone()))
        })?;
        Ok(self
            .scratch
            .iter()
            .map(|e| match e {
                Event::CapacityWithdrawn { gpu_hours, .. } => *gpu_hours,
                _ => 0,
            })
            .sum())
    }

    /// Moves time to `ts`: gate closures and expiries that fell due. A quiet step
    /// (nothing fell due) is not a command: it is not sequenced or journaled.
    pub fn advance_time(&mut self, ts: i64) {
        self.let_go();
        let mut out = std::mem::take(&mut self.scratch);
        out.clear();
        let _ = self.engine.apply(ts, &Command::AdvanceTime, &mut out);
        if !out.is_empty() {
            self.sequence += 1;
            self.journal_time_step(ts);
            self.absorb(&out, ts, None);
        }
        self.scratch = out;
    }
}
