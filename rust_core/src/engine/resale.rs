//! Resales: a holder offers GPUs of an allocation again as an ask drawing on a pool of
//! that allocation's GPUs; what the pools offer and let go.

use super::{pool_of, Engine, MAX_FEE_BPS, POOL};
use crate::capacity::{ResalePool, Slot};
use crate::command::*;
use crate::reject::Reject;
use crate::types::*;

impl Engine {
    /// The GPUs of allocation `a` (index) that resting resale asks offer, per node.
    fn on_offer(&self, a: usize) -> Vec<Slot> {
        let mut by_node: Vec<Slot> = Vec::new();
        for &p in self.offers.get(&(a as u32)).map_or(&[][..], |v| v) {
            let pool = &self.pools[p as usize];
            if pool.offered == 0 {
                continue; // its ask is gone
            }
            for s in &pool.free {
                match by_node.iter_mut().find(|x| x.node == s.node) {
                    Some(x) => x.gpus |= s.gpus,
                    None => by_node.push(*s),
                }
            }
        }
        by_node
    }

    /// What a resale of `parent` by `account` would offer: the allocation's index and its
    /// GPUs `slots` asks for (empty: all it holds that no resale ask offers already).
    pub fn resale_offer(
        &self,
        account: AccountId,
        parent: TradeId,
        slots: &[Slot],
    ) -> Result<(usize, Vec<Slot>), Reject> {
        let a = self
            .allocation_index(parent)
            .filter(|&a| self.allocations[a].buyer == account)
            .ok_or(Reject::InvalidResale)?;
        // what may be offered: held and not on offer already
        let on_offer = self.on_offer(a);
        let open: Vec<Slot> = self.allocations[a]
            .slots
            .iter()
            .map(|s| {
                let busy = on_offer
                    .iter()
                    .find(|x| x.node == s.node)
                    .map_or(0, |x| x.gpus);
                Slot {
                    node: s.node,
                    gpus: s.gpus & !busy,
                }
            })
            .filter(|s| s.gpus != 0)
            .collect();
        if slots.is_empty() {
            return if open.is_empty() {
                Err(Reject::InvalidResale)
            } else {
                Ok((a, open))
            };
        }
        let mut want: Vec<Slot> = Vec::new();
        for s in slots {
            match want.iter_mut().find(|x| x.node == s.node) {
                Some(x) => x.gpus |= s.gpus,
                None => want.push(*s),
            }
        }
        want.sort();
        let within = want.iter().all(|s| {
            s.gpus != 0
                && open
                    .iter()
                    .any(|x| x.node == s.node && x.gpus & s.gpus == s.gpus)
        });
        if !within {
            return Err(Reject::InvalidResale);
        }
        Ok((a, want))
    }

    /// A resale ask (see `Command::PlaceResale`): it trades and rests as any ask, its GPUs
    /// drawn from a pool of the allocation's. Block bids and placement terms pass it over:
    /// their GPUs are one cluster's, the same in every hour, found among unsold ones.
    pub(super) fn place_resale(
        &mut self,
        o: &NewOrder,
        parent: TradeId,
        slots: &[Slot],
        fee_bps: u32,
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        self.validate_as(o, true)?;
        let (a, offered) = self.resale_offer(o.account, parent, slots)?;
        let alloc = &self.allocations[a];
        if o.side != Side::Sell
            || o.product != alloc.product
            || o.cluster != Some(alloc.cluster)
            || fee_bps > MAX_FEE_BPS
        {
            return Err(Reject::InvalidResale);
        }
        let qty: Qty = offered.iter().map(|s| s.gpus.count_ones() as Qty).sum();
        if qty == 0 || qty != o.qty {
            return Err(Reject::InvalidResale);
        }
        let pool = self.pools.len() as u32;
        self.pools.push(ResalePool {
            cluster: alloc.cluster,
            hour: alloc.hour,
            parent: a as u32,
            order: self.next_order_id,
            fee_bps,
            free: offered,
            offered: 0,
        });
        self.offers.entry(a as u32).or_default().push(pool);
        self.place_at(o, 0, POOL | pool, out)
    }

    /// A resale ask on `ch` offers fewer GPUs than its pool holds (amended down): the
    /// pool lets go of the rest, which its holder may offer again.
    pub(super) fn release_unoffered(&mut self, ch: u32) {
        if let Some(p) = pool_of(ch) {
            let pool = &mut self.pools[p];
            pool.release(pool.free_total() - pool.offered);
        }
    }
}
