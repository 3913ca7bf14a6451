//! Resales: a resale ask completed from the allocation it sells, its GPUs named as the
//! engine names them, and the resale of a buy order's GPUs hour by hour.

use spotex_core::{Allocation, Slot};

use crate::pb;
use crate::refusal::Refusal;

use super::outputs::slot_pb;
use super::{Caller, Exchange};

impl Exchange {
    /// A resale ask completed from its allocation, as it is journaled: its product and
    /// cluster (when left empty), its quantity (when 0: the GPUs offered) and the venue's
    /// fee now (on replay, the fee it was placed with).
    pub(super) fn resale_request(
        &self,
        caller: Caller,
        r: &pb::PlaceOrderRequest,
    ) -> Result<pb::PlaceOrderRequest, Refusal> {
        let mut r = r.clone();
        let held = self
            .engine
            .allocations_of(caller.account)
            .into_iter()
            .find(|a| a.trade_id == r.resell_trade_id && a.buyer == caller.account);
        // someone else's allocation is refused as one that does not exist
        let a = held.ok_or(spotex_core::Reject::InvalidResale)?;
        if r.product_id.is_empty() {
            r.product_id = self.engine.products()[a.product as usize].spec.id.clone();
        }
        if r.cluster_id.is_empty() {
            r.cluster_id = self.engine.clusters()[a.cluster as usize].spec.id.clone();
        }
        if r.quantity == 0 {
            let slots = self.resale_slots(caller, &r)?;
            r.quantity = self
                .engine
                .resale_offer(caller.account, r.resell_trade_id, &slots)
                .map(|(_, offered)| offered.iter().map(|s| s.gpus.count_ones() as i64).sum())
                .map_err(Refusal::from)?;
        }
        if !self.replaying {
            r.resale_fee_bps = self.resale_fee_bps;
        }
        Ok(r)
    }

    /// The cluster of the allocation a resale sells from, which the request's cluster id
    /// (when given) must name.
    pub(super) fn resale_cluster(
        &self,
        caller: Caller,
        r: &pb::PlaceOrderRequest,
    ) -> Result<spotex_core::ClusterHandle, Refusal> {
        self.engine
            .allocation_by_trade(r.resell_trade_id)
            .filter(|a| a.buyer == caller.account)
            .map(|a| a.cluster)
            .filter(|&c| {
                r.cluster_id.is_empty()
                    || self.engine.clusters()[c as usize].spec.id == r.cluster_id
            })
            .ok_or_else(|| spotex_core::Reject::InvalidResale.into())
    }

    /// A resale's GPUs as the engine names them: node indices of the allocation's
    /// cluster and GPU masks.
    pub(super) fn resale_slots(
        &self,
        caller: Caller,
        r: &pb::PlaceOrderRequest,
    ) -> Result<Vec<Slot>, Refusal> {
        if r.resell_gpus.is_empty() {
            return Ok(Vec::new());
        }
        let cluster = &self.engine.clusters()[self.resale_cluster(caller, r)? as usize];
        let bad = || {
            Refusal::new(
                "INVALID_RESALE",
                "resell_gpus names a node of the allocation's cluster and GPU indices 0 to 63",
            )
        };
        let mut slots = Vec::with_capacity(r.resell_gpus.len());
        for s in &r.resell_gpus {
            let node = cluster
                .spec
                .nodes
                .iter()
                .position(|n| n.id == s.node_id)
                .ok_or_else(bad)?;
            let mut gpus = 0u64;
            for &g in &s.gpu_indices {
                if g >= 64 {
                    return Err(bad());
                }
                gpus |= 1 << g;
            }
            if gpus == 0 {
                return Err(bad());
            }
            slots.push(Slot {
                node: node as u32,
                gpus,
            });
        }
        Ok(slots)
    }

    /// Resale of a buy order's GPUs: one resale ask per allocation of the order the
    /// caller still holds in the hours asked (and of the GPUs asked), each placed or
    /// refused on its own, all with one `range_id` for CancelAll.
    pub fn resell(
        &mut self,
        ts: i64,
        caller: Caller,
        r: &pb::ResellRequest,
    ) -> Result<pb::SubmitOrdersResponse, Refusal> {
        let nothing = || {
            Refusal::new(
                "INVALID_RESALE",
                format!(
                    "order {} holds no GPUs of yours in those hours to resell",
                    r.order_id
                ),
            )
        };
        let to = if r.to_hour == 0 { i64::MAX } else { r.to_hour };
        let mut asks = Vec::new();
        let range_id = self.sequence + 1;
        let held: Vec<&Allocation> = self
            .engine
            .allocations_of(caller.account)
            .into_iter()
            .filter(|a| {
                a.buyer == caller.account
                    && a.buy_order == r.order_id
                    && !a.slots.is_empty()
                    && r.from_hour <= a.hour
                    && a.hour < to
            })
            .collect();
        // every GPU named must be one the order holds (in some hour asked), as a
        // PlaceOrder resale refuses a GPU its allocation does not hold
        for g in &r.gpus {
            for &i in &g.gpu_indices {
                let holds = i < 64
                    && held.iter().any(|a| {
                        let nodes = &self.engine.clusters()[a.cluster as usize].spec.nodes;
                        a.slots.iter().any(|s| {
                            nodes[s.node as usize].id == g.node_id && s.gpus & (1 << i) != 0
                        })
                    });
                if !holds {
                    return Err(Refusal::new(
                        "INVALID_RESALE",
                        format!(
                            "order {} holds no GPU {i} of node {} to resell in those hours",
                            r.order_id, g.node_id
                        ),
                    ));
                }
            }
        }
        for a in held {
            let cluster = &self.engine.clusters()[a.cluster as usize];
            // the GPUs asked for that this allocation holds
            let mut gpus = Vec::new();
            for s in &a.slots {
                let node = &cluster.spec.nodes[s.node as usize].id;
                let mut mask = s.gpus;
                if !r.gpus.is_empty() {
                    let asked: u64 = r
                        .gpus
                        .iter()
                        .filter(|g| &g.node_id == node)
                        .flat_map(|g| g.gpu_indices.iter())
                        .filter(|&&i| i < 64)
                        .fold(0, |m, &i| m | 1 << i);
                    mask &= asked;
                }
                if mask != 0 {
                    gpus.push(slot_pb(cluster, s.node, mask));
                }
            }
            if gpus.is_empty() {
                continue;
            }
            let k = asks.len();
            asks.push(pb::PlaceOrderRequest {
                client_order_id: if r.client_order_id.is_empty() {
                    String::new()
                } else {
                    format!("{}#{k}", r.client_order_id)
                },
                side: pb::Side::Sell as i32,
                price_micros: r.price_micros,
                time_in_force: r.time_in_force,
                expire_at_micros: r.expire_at_micros,
                resell_trade_id: a.trade_id,
                resell_gpus: if r.gpus.is_empty() { Vec::new() } else { gpus },
                range_id,
                ..Default::default()
            });
        }
        if asks.is_empty() {
            return Err(nothing());
        }
        Ok(self.submit_orders(ts, caller, &pb::SubmitOrdersRequest { orders: asks }))
    }
}
