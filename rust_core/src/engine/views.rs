//! Read-only views: resting orders, books by level (l2) and by order (l3), allocations
//! and each cluster-hour's utilisation.

use super::Engine;
use crate::book::{Book, RestingOrder};
use crate::capacity::ClusterHandle;
use crate::command::*;
use crate::types::*;

/// Sold / offered / idle GPU-hours of one cluster for one hour.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Utilisation {
    pub capacity: Qty,
    pub sold: Qty,
    pub offered: Qty,
    pub idle: Qty,
    pub withdrawn: Qty,
}

impl Engine {
    pub fn utilisation(&self, cluster: ClusterHandle, hour: i64) -> Option<Utilisation> {
        let c = self.clusters.get(cluster as usize)?;
        if !c.covers(hour) {
            return None;
        }
        Some(match self.cluster_hour_index.get(&(cluster, hour)) {
            None => Utilisation {
                capacity: c.total_gpus,
                sold: 0,
                offered: 0,
                idle: c.total_gpus,
                withdrawn: 0,
            },
            Some(&i) => {
                let ch = &self.cluster_hours[i as usize];
                let sold: Qty = ch.sold.iter().map(|m| m.count_ones() as Qty).sum();
                Utilisation {
                    capacity: c.total_gpus,
                    sold,
                    offered: ch.offered,
                    idle: ch.free_total - ch.offered,
                    withdrawn: c.total_gpus - sold - ch.free_total,
                }
            }
        })
    }

    /// The allocation of trade `trade_id` (allocations are kept in trade order).
    pub fn allocation_by_trade(&self, trade_id: TradeId) -> Option<&Allocation> {
        let i = self.allocation_index(trade_id)?;
        Some(&self.allocations[i])
    }

    pub(super) fn allocation_index(&self, trade_id: TradeId) -> Option<usize> {
        self.allocations
            .binary_search_by_key(&trade_id, |a| a.trade_id)
            .ok()
    }

    /// A resting order by id (`None` once it is filled, cancelled or expired).
    pub fn order(&self, order_id: OrderId) -> Option<&RestingOrder> {
        self.order_index.get(&order_id).map(|&i| self.slab.get(i))
    }

    pub fn book(&self, product: ProductHandle) -> Option<&Book> {
        self.books.get(product as usize)
    }

    /// Aggregated levels, best first: (price, quantity, order count).
    pub fn l2(&self, product: ProductHandle, side: Side, depth: usize) -> Vec<(Price, Qty, u32)> {
        let Some(book) = self.books.get(product as usize) else {
            return Vec::new();
        };
        book.side(side)
            .iter()
            .take(depth)
            .map(|(p, l)| (p, l.total, l.count))
            .collect()
    }

    /// One level: (quantity, order count), zeros when nothing rests at `price`.
    pub fn level(&self, product: ProductHandle, side: Side, price: Price) -> (Qty, u32) {
        self.books
            .get(product as usize)
            .and_then(|b| b.side(side).at(price))
            .map_or((0, 0), |l| (l.total, l.count))
    }

    /// Every resting order of one side, in priority order.
    pub fn l3(&self, product: ProductHandle, side: Side) -> Vec<&RestingOrder> {
        let Some(book) = self.books.get(product as usize) else {
            return Vec::new();
        };
        book.orders(&self.slab, side)
            .into_iter()
            .map(|i| self.slab.get(i))
            .collect()
    }

    /// Resting orders and resting blocks.
    pub fn open_order_count(&self) -> usize {
        self.order_index.len() + self.side.orders().count()
    }

    /// Allocations where the account is buyer or seller, in trade order.
    pub fn allocations_of(&self, account: AccountId) -> Vec<&Allocation> {
        self.allocations_by_account
            .get(&account)
            .map(|v| v.iter().map(|&i| &self.allocations[i as usize]).collect())
            .unwrap_or_default()
    }

    pub fn allocations(&self) -> &[Allocation] {
        &self.allocations
    }
}
