//! What the streams carry: market-data messages with per-product sequences, executions
//! with per-account sequences, and allocations as the contract encodes them.

use std::collections::BTreeMap;

use spotex_core::{Allocation, ProductHandle};

use crate::pb;
use crate::records::{locality_to_pb, FillRecord};

use super::Exchange;

/// GPUs of one node, with the node's place, as the contract gives them.
pub(super) fn slot_pb(cluster: &spotex_core::Cluster, node: u32, gpus: u64) -> pb::Slot {
    let n = &cluster.spec.nodes[node as usize];
    pb::Slot {
        node_id: n.id.clone(),
        gpu_indices: (0..64).filter(|b| gpus & (1u64 << b) != 0).collect(),
        block: n.place.block.clone(),
        rack: n.place.rack.clone(),
        nvlink_domain: n.place.domain.clone(),
    }
}

impl Exchange {
    pub(super) fn market(&mut self, product: ProductHandle, payload: pb::market_data::Payload) {
        let i = product as usize;
        if self.md_sequence.len() <= i {
            self.md_sequence.resize(i + 1, 0);
        }
        self.md_sequence[i] += 1;
        if self.quiet {
            return; // recovery publishes nothing: only the sequence moves
        }
        self.round.market.push(pb::MarketData {
            product_id: self.engine.products()[i].spec.id.clone(),
            sequence: self.md_sequence[i],
            payload: Some(payload),
        });
    }

    /// One execution on `account`'s stream; the order as it stands at this point.
    pub(super) fn execution(
        &mut self,
        account: u64,
        kind: &str,
        order_id: Option<u64>,
        fill: Option<FillRecord>,
        allocation: Option<&Allocation>,
    ) {
        let allocation = match allocation {
            Some(a) if !self.quiet => Some(self.allocation_pb(a, account)),
            _ => None,
        };
        self.send_execution(account, kind, order_id, fill, allocation, None);
    }

    pub(super) fn send_execution(
        &mut self,
        account: u64,
        kind: &str,
        order_id: Option<u64>,
        fill: Option<FillRecord>,
        allocation: Option<pb::Allocation>,
        block: Option<pb::BlockAllocation>,
    ) {
        let n = self.exec_sequence.entry(account).or_default();
        *n += 1;
        let sequence = *n;
        if self.quiet {
            return;
        }
        let order = order_id
            .and_then(|id| self.orders.get(&id))
            .map(|r| r.to_pb(false));
        self.round.executions.push((
            account,
            pb::Execution {
                sequence,
                kind: kind.to_string(),
                order,
                fill: fill.as_ref().map(FillRecord::to_pb),
                allocation,
                block,
                auction_id: self.clearing.unwrap_or(0),
            },
        ));
    }

    /// A filled block's allocations (one per hour and ask taken) as one record: the
    /// first hour's slots, which every hour shares.
    pub(super) fn block_allocation(
        &self,
        order_id: u64,
        allocations: &[u32],
    ) -> pb::BlockAllocation {
        let all = self.engine.allocations();
        let first = &all[allocations[0] as usize];
        let placed = self.orders[&order_id].placed.as_ref();
        let cluster = &self.engine.clusters()[first.cluster as usize];
        let mut hours: Vec<i64> = allocations.iter().map(|&i| all[i as usize].hour).collect();
        hours.dedup();
        let mut slots: BTreeMap<u32, u64> = BTreeMap::new();
        for &i in allocations {
            let a = &all[i as usize];
            if a.hour == first.hour {
                for s in &a.slots {
                    *slots.entry(s.node).or_default() |= s.gpus;
                }
            }
        }
        pb::BlockAllocation {
            order_id,
            cluster_id: cluster.spec.id.clone(),
            first_hour: first.hour,
            hours: hours.len() as u32,
            slots: slots
                .into_iter()
                .map(|(node, gpus)| slot_pb(cluster, node, gpus))
                .collect(),
            cost_micros: allocations
                .iter()
                .map(|&i| all[i as usize].price * all[i as usize].qty())
                .sum(),
            trade_ids: allocations
                .iter()
                .map(|&i| all[i as usize].trade_id)
                .collect(),
            placed_level: locality_to_pb(placed.map(|p| p.0)) as i32,
            placed_domain: placed.map_or(String::new(), |p| p.1.clone()),
            provider_account: cluster.seller,
        }
    }

    /// An allocation as `account` sees it (buyer or seller).
    pub fn allocation_pb(&self, a: &Allocation, account: u64) -> pb::Allocation {
        let cluster = &self.engine.clusters()[a.cluster as usize];
        pb::Allocation {
            trade_id: a.trade_id,
            product_id: self.engine.products()[a.product as usize].spec.id.clone(),
            cluster_id: cluster.spec.id.clone(),
            hour: a.hour,
            buy_order_id: a.buy_order,
            sell_order_id: a.sell_order,
            price_micros: a.price,
            quantity: a.qty(),
            slots: a
                .slots
                .iter()
                .map(|s| slot_pb(cluster, s.node, s.gpus))
                .collect(),
            as_buyer: a.buyer == account,
            buyer_account: a.buyer,
            parent_trade_id: a.parent.unwrap_or(0),
            fee_micros: a.fee,
            seller_account: a.seller,
            as_provider: cluster.seller == account,
            provider_account: cluster.seller,
        }
    }
}
