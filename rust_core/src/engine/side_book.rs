//! Resting blocks: block bids (and windows) that could not fill on entry wait here,
//! whole, beside the hourly books, and are tried again when an ask comes to rest in one
//! of their hours.
//!
//! They never enter an hourly book, so they never change an hourly order's priority and
//! are never seen in the hourly depth. An arriving ask trades first with the hourly bids
//! it crosses; only what then rests is offered to the resting blocks. A block takes asks
//! only when it fills whole, on the same GPUs in every hour, as on entry.
//!
//! Bounded work per arriving ask: of the resting blocks whose span holds the ask's hour,
//! the best `RETRY_TOP` in price-time order (highest limit first, then oldest) are
//! examined, then `RETRY_TURN` more taking turns (a cursor per hour goes round the rest),
//! so a block `n` deep in its hour is examined within `n / RETRY_TURN` arriving asks
//! there. Examining a block is a look at its hours (could the best asks of some start
//! whose hours are all open meet its limit?) and, only if so, the plan a fresh block
//! would get now: every cluster, every such start, the cheapest within its limit, from
//! the asks of its hours (each hour's book walked once per arriving ask, until a fill)
//! and the nodes of the clusters whose asks could carry it. A block that found no plan
//! anywhere when last planned, with nothing but asks arriving since, is planned on only
//! the clusters of the asks that arrived in its span since (whether it was examined for
//! them or passed over): the same plan, since no other cluster can have gained one.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::ops::Bound::{Excluded, Included, Unbounded};

use rustc_hash::FxHashMap;

use super::{AsksByClusterHour, Engine};
use crate::capacity::ClusterHandle;
use crate::codec::{self, CodecError, Dec, Enc};
use crate::command::{CancelReason, Event, ExpireReason, NewBlock};
use crate::reject::Reject;
use crate::types::*;

/// The best resting blocks of an hour examined for each ask arriving in it.
pub const RETRY_TOP: usize = 16;
/// The further resting blocks of an hour examined in turn for each ask arriving in it.
pub const RETRY_TURN: usize = 16;
/// The latest arriving asks remembered per product (their clusters), for planning a
/// resting block on only the clusters whose asks changed since it was last planned.
const ARRIVALS_KEPT: usize = 32;

/// A block's place among the resting blocks of an hour: highest limit first, then
/// oldest, then (for a one-of group) the alternative listed first.
pub(super) type BlockKey = (Reverse<Price>, OrderId, u32);

/// A block bid waiting, whole, until it can fill or its time in force ends; or one
/// alternative of a resting one-of group (the group's alternatives share its id).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestingBlock {
    pub id: OrderId,
    /// Its index in its one-of group (0 for a block of its own).
    pub alternative: u32,
    /// One alternative of a one-of group.
    pub group: bool,
    pub block: NewBlock,
    /// The products of its span (its hours, or its window), hour by hour.
    pub products: Vec<ProductHandle>,
    /// An auction order in an auction being cleared: no cancel or amend until it clears.
    pub frozen: bool,
}

impl RestingBlock {
    fn key(&self) -> BlockKey {
        (Reverse(self.block.price), self.id, self.alternative)
    }
}

/// The side book: resting blocks (and group alternatives) by id and alternative, the
/// keys of those spanning each product, and each product's turn cursor.
///
/// And what spares work, never changing a result (kept out of the snapshot and the state
/// hash; a restored engine starts with every block unplanned): when each resting block
/// was last planned over every cluster that could hold it and found none, and the asks
/// that arrived since, per product. Only an arriving ask adds to a cluster's supply in
/// an hour, except for what `changed` records (a halt or resume, capacity registered or
/// withdrawn, a cancel, an amend, an expiry or gate closure, an iceberg's next clip);
/// everything else only takes away (trades, fills). So a block with no plan anywhere
/// when last planned, with nothing `changed` since, can now have one only on the clusters
/// of the asks that arrived in its span since, and those are all it needs planning on.
#[derive(Clone, Default)]
pub(super) struct SideBook {
    pub blocks: BTreeMap<(OrderId, u32), RestingBlock>,
    pub by_product: Vec<BTreeSet<BlockKey>>,
    /// Auction orders spanning each product: never tried by arriving asks, only expired
    /// with them (by gate closure).
    pub auction_by_product: Vec<BTreeSet<BlockKey>>,
    pub cursor: Vec<Option<BlockKey>>,
    /// Bumped by whatever other than an arriving ask may open a plan.
    epoch: u64,
    /// Arriving asks counted, all products.
    seq: u64,
    /// Per product, the latest arrivals `(seq, cluster)`, oldest first, and the `seq` of
    /// the last one forgotten.
    arrivals: Vec<(VecDeque<(u64, ClusterHandle)>, u64)>,
    /// Per resting block (id, alternative): the `(epoch, seq)` at which it was last
    /// planned on every cluster that could hold it and found none. Only looked up.
    planned: FxHashMap<(OrderId, u32), (u64, u64)>,
}

impl SideBook {
    pub fn add_product(&mut self) {
        self.by_product.push(BTreeSet::new());
        self.auction_by_product.push(BTreeSet::new());
        self.cursor.push(None);
        self.arrivals.push((VecDeque::new(), 0));
    }

    /// Something other than an arriving ask may have opened a plan for any block.
    pub fn changed(&mut self) {
        self.epoch += 1;
    }

    /// An ask arrived in `p` on `cluster`.
    fn arrived(&mut self, p: usize, cluster: ClusterHandle) {
        self.seq += 1;
        let (log, forgot) = &mut self.arrivals[p];
        if log.len() == ARRIVALS_KEPT {
            *forgot = log.pop_front().expect("full").0;
        }
        log.push_back((self.seq, cluster));
    }

    /// Block `key` was planned everywhere now and found nothing.
    fn mark_planned(&mut self, key: (OrderId, u32)) {
        self.planned.insert(key, (self.epoch, self.seq));
    }

    /// The clusters block `key` (over `span`) need be planned on, ascending: those of
    /// the asks that arrived in its span since it was last planned everywhere, when
    /// nothing else changed since and every such arrival is remembered; `None`: every
    /// cluster.
    fn clusters_to_plan(
        &self,
        key: (OrderId, u32),
        span: &[ProductHandle],
    ) -> Option<Vec<ClusterHandle>> {
        let &(epoch, seq) = self.planned.get(&key)?;
        if epoch != self.epoch {
            return None;
        }
        let mut clusters = Vec::new();
        for &q in span {
            let (log, forgot) = &self.arrivals[q as usize];
            if *forgot > seq {
                return None;
            }
            clusters.extend(log.iter().rev().take_while(|a| a.0 > seq).map(|a| a.1));
        }
        clusters.sort_unstable();
        clusters.dedup();
        Some(clusters)
    }

    fn index(&mut self, auction: bool) -> &mut Vec<BTreeSet<BlockKey>> {
        if auction {
            &mut self.auction_by_product
        } else {
            &mut self.by_product
        }
    }

    fn insert(&mut self, rb: RestingBlock) {
        let key = rb.key();
        let index = self.index(rb.block.auction);
        for &p in &rb.products {
            index[p as usize].insert(key);
        }
        self.blocks.insert((rb.id, rb.alternative), rb);
    }

    /// Takes one alternative out.
    fn remove_one(&mut self, id: OrderId, alternative: u32) -> Option<RestingBlock> {
        let rb = self.blocks.remove(&(id, alternative))?;
        self.planned.remove(&(id, alternative));
        let key = rb.key();
        let index = self.index(rb.block.auction);
        for &p in &rb.products {
            index[p as usize].remove(&key);
        }
        Some(rb)
    }

    /// Takes the block `id` out, every alternative of it, at once; the first listed.
    pub(super) fn remove(&mut self, id: OrderId) -> Option<RestingBlock> {
        let alternatives: Vec<u32> = self.alternatives(id).map(|rb| rb.alternative).collect();
        let mut first = None;
        for k in alternatives {
            let rb = self.remove_one(id, k);
            first = first.or(rb);
        }
        first
    }

    fn alternatives(&self, id: OrderId) -> impl Iterator<Item = &RestingBlock> {
        self.blocks
            .range((id, 0)..=(id, u32::MAX))
            .map(|(_, rb)| rb)
    }

    pub fn first(&self, id: OrderId) -> Option<&RestingBlock> {
        self.alternatives(id).next()
    }

    /// The resting blocks and groups (a group counts once), each by its first
    /// alternative still waiting, in id order.
    pub fn orders(&self) -> impl Iterator<Item = &RestingBlock> {
        let mut last = None;
        self.blocks.values().filter(move |rb| {
            let new = last != Some(rb.id);
            last = Some(rb.id);
            new
        })
    }

    /// The keys to examine for an ask arriving in product `p`, moving its cursor.
    fn next_to_examine(&mut self, p: usize) -> Vec<BlockKey> {
        let set = &self.by_product[p];
        let mut keys: Vec<BlockKey> = set.iter().take(RETRY_TOP).copied().collect();
        if set.len() > RETRY_TOP {
            let last_top = keys[RETRY_TOP - 1];
            let after = self.cursor[p].filter(|c| *c > last_top).unwrap_or(last_top);
            let mut more: Vec<BlockKey> = set
                .range((Excluded(after), Unbounded))
                .take(RETRY_TURN)
                .copied()
                .collect();
            if more.len() < RETRY_TURN && after > last_top {
                // round again from just below the best
                let left = RETRY_TURN - more.len();
                more.extend(
                    set.range((Excluded(last_top), Included(after)))
                        .take(left)
                        .copied(),
                );
            }
            self.cursor[p] = more.last().copied();
            keys.extend(more);
        }
        keys
    }

    pub fn snapshot(&self, e: &mut Enc) {
        e.u32(self.blocks.len() as u32);
        for rb in self.blocks.values() {
            e.u64(rb.id);
            e.u32(rb.alternative);
            // flags: a group's alternative, an auction order, frozen in an auction
            e.u8(rb.group as u8 | (rb.block.auction as u8) << 1 | (rb.frozen as u8) << 2);
            codec::put_block(e, &rb.block);
            e.u32(rb.products.len() as u32);
            for &p in &rb.products {
                e.u32(p);
            }
        }
        let cursors: Vec<(usize, BlockKey)> = self
            .cursor
            .iter()
            .enumerate()
            .filter_map(|(p, c)| c.map(|c| (p, c)))
            .collect();
        e.u32(cursors.len() as u32);
        for (p, (Reverse(price), id, alternative)) in cursors {
            e.u32(p as u32);
            e.i64(price);
            e.u64(id);
            e.u32(alternative);
        }
    }

    /// Reads what `snapshot` wrote, for an engine whose products are already restored.
    pub fn restore(&mut self, d: &mut Dec, products: usize) -> Result<(), CodecError> {
        for _ in 0..d.count(45)? {
            let (id, alternative, flags) = (d.u64()?, d.u32()?, d.u8()?);
            let mut block = codec::get_block(d, true)?;
            block.auction = flags & 2 != 0;
            let (group, frozen) = (flags & 1 != 0, flags & 4 != 0);
            let n = d.count(4)?;
            let mut span = Vec::with_capacity(n);
            for _ in 0..n {
                let p = d.u32()?;
                if p as usize >= products {
                    return Err(CodecError("resting block product"));
                }
                span.push(p);
            }
            self.insert(RestingBlock {
                id,
                alternative,
                group,
                block,
                products: span,
                frozen,
            });
        }
        for _ in 0..d.count(20)? {
            let p = d.u32()? as usize;
            let key = (Reverse(d.i64()?), d.u64()?, d.u32()?);
            *self.cursor.get_mut(p).ok_or(CodecError("cursor product"))? = Some(key);
        }
        Ok(())
    }

    /// What the state hash sees of the side book.
    pub fn hash_into(&self, put: &mut impl FnMut(i64)) {
        put(self.blocks.len() as i64);
        for rb in self.blocks.values() {
            let b = &rb.block;
            let (tif, at) = match b.tif {
                TimeInForce::GoodTillTime(t) => (1, t),
                _ => (0, 0),
            };
            for x in [
                rb.id as i64,
                rb.alternative as i64,
                rb.group as i64,
                b.account as i64,
                b.product as i64,
                b.hours as i64,
                b.window as i64,
                b.price,
                b.qty,
                b.gang as i64,
                tif,
                at,
            ] {
                put(x);
            }
            if b.auction {
                // only auction orders add to what older states hashed
                put(-3);
                put(rb.frozen as i64);
            }
        }
        for (p, c) in self.cursor.iter().enumerate() {
            if let Some((Reverse(price), id, alternative)) = c {
                put(p as i64);
                put(*price);
                put(*id as i64);
                put(*alternative as i64);
            }
        }
    }
}

impl Engine {
    /// Puts block `id` (alternative `alternative` of a one-of group when `group`),
    /// which could not fill on entry, in the side book.
    pub(super) fn rest_block(
        &mut self,
        id: OrderId,
        alternative: u32,
        group: bool,
        b: &NewBlock,
        products: Vec<ProductHandle>,
    ) {
        if alternative == 0 {
            if let TimeInForce::GoodTillTime(at) = b.tif {
                self.expiries.push(Reverse((at, id)));
            }
        }
        self.side.insert(RestingBlock {
            id,
            alternative,
            group,
            block: b.clone(),
            products,
            frozen: false,
        });
        // it was just planned on every cluster, and could not fill
        self.side.mark_planned((id, alternative));
    }

    /// The resting block `id` (a group's first alternative still waiting), if it is one.
    pub fn resting_block(&self, id: OrderId) -> Option<&RestingBlock> {
        self.side.first(id)
    }

    /// Every resting block and group alternative, by id and alternative.
    pub fn resting_blocks(&self) -> impl Iterator<Item = &RestingBlock> {
        self.side.blocks.values()
    }

    /// The owner cancels a resting block; `None` when `id` is not one.
    pub(super) fn cancel_block(
        &mut self,
        account: AccountId,
        id: OrderId,
        out: &mut Vec<Event>,
    ) -> Option<Result<(), Reject>> {
        let first = self.side.first(id)?;
        if first.block.account != account {
            return Some(Err(Reject::NotOwner));
        }
        if first.frozen {
            return Some(Err(Reject::AuctionInProgress));
        }
        let rb = self.side.remove(id).expect("the block rests");
        out.push(Event::Cancelled {
            order_id: id,
            account,
            product: rb.block.product,
            qty: rb.block.qty,
            reason: CancelReason::Requested,
        });
        Some(Ok(()))
    }

    /// A resting block's good-till-time came.
    pub(super) fn expire_block(&mut self, id: OrderId, at: Timestamp, out: &mut Vec<Event>) {
        // a group's alternatives share their time in force
        let due = self
            .side
            .first(id)
            .is_some_and(|rb| rb.block.tif == TimeInForce::GoodTillTime(at));
        if due {
            let rb = self.side.remove(id).expect("the block rests");
            out.push(Self::block_expired(&rb, ExpireReason::GoodTillTime));
        }
    }

    /// Gate closure of `product`: every resting block spanning it expires (it can no
    /// longer fill whole), in order-id order; a group's alternatives spanning it drop
    /// out, and the group expires with its last.
    pub(super) fn close_blocks(&mut self, product: ProductHandle, out: &mut Vec<Event>) {
        let mut keys: Vec<(OrderId, u32)> = (self.side.by_product[product as usize].iter())
            .chain(&self.side.auction_by_product[product as usize])
            .map(|k| (k.1, k.2))
            .collect();
        keys.sort_unstable();
        for (id, alternative) in keys {
            let rb = self
                .side
                .remove_one(id, alternative)
                .expect("the block rests");
            if self.side.first(id).is_none() {
                out.push(Self::block_expired(&rb, ExpireReason::GateClosure));
            }
        }
    }

    fn block_expired(rb: &RestingBlock, reason: ExpireReason) -> Event {
        Event::Expired {
            order_id: rb.id,
            account: rb.block.account,
            product: rb.block.product,
            qty: rb.block.qty,
            reason,
        }
    }

    /// An ask now rests in `product`: the resting blocks that span the hour are examined
    /// (see the module's bound), best first, and each is planned exactly as a fresh block
    /// entering now would be (`cheapest_start`: every cluster, every start of its span
    /// whose hours are all open, the cheapest plan within its limit, ties to the earliest
    /// start, then the first registered cluster). One that can fill whole does, at once,
    /// whichever asks its plan takes (the one that arrived or not).
    ///
    /// A block with no plan anywhere when last planned is planned again on only the
    /// clusters whose asks in its span changed since (`SideBook::clusters_to_plan`):
    /// the others still have none, so the plan is the one every cluster would give.
    pub(super) fn retry_blocks(
        &mut self,
        product: ProductHandle,
        cluster: ClusterHandle,
        out: &mut Vec<Event>,
    ) {
        self.side.arrived(product as usize, cluster);
        if self.side.by_product[product as usize].is_empty() {
            return;
        }
        let keys = self.side.next_to_examine(product as usize);
        // each hour's asks by cluster-hour, walked once per arriving ask (until a fill)
        let mut cache: FxHashMap<ProductHandle, AsksByClusterHour> = FxHashMap::default();
        for (_, id, alternative) in keys {
            let Some(rb) = self.side.blocks.get(&(id, alternative)) else {
                continue;
            };
            let (b, span, group) = (rb.block.clone(), rb.products.clone(), rb.group);
            let hours = b.hours as usize;
            let open: Vec<bool> = span
                .iter()
                .map(|&p| self.products[p as usize].state == ProductState::Open)
                .collect();
            let usable = |s: usize| open[s..s + hours].iter().all(|&o| o);
            // a block next to an allocation: that allocation may have changed (resold)
            let only = if b.place.near.is_some() {
                None
            } else {
                self.side.clusters_to_plan((id, alternative), &span)
            };
            if !self.within_reach(&b, &span, usable) {
                // not even at each hour's best ask: no plan on any cluster
                self.side.mark_planned((id, alternative));
                continue;
            }
            if only.as_ref().is_some_and(|cs| cs.is_empty()) {
                continue;
            }
            for &q in &span {
                cache
                    .entry(q)
                    .or_insert_with(|| self.asks_by_cluster_hour(q));
            }
            let asks: Vec<&AsksByClusterHour> = span.iter().map(|q| &cache[q]).collect();
            let plan = self.cheapest_start(&b, &span, &asks, usable, only.as_deref());
            if plan.is_none() {
                self.side.mark_planned((id, alternative));
            }
            if let Some(plan) = plan {
                // the block, or the group with every alternative, at once
                self.side.remove(id);
                if group {
                    out.push(Event::Chosen {
                        alternative,
                        order_id: id,
                        block: b.clone(),
                    });
                }
                self.take_plan(id, &b, plan, out);
                cache.clear();
            }
        }
    }

    /// Whether some start over `span` that `usable` allows could cost at most the
    /// block's limit, priced at each hour's best ask (a floor: nothing it could take is
    /// cheaper). The common reason to wait is the price; this sees it without walking a
    /// book.
    fn within_reach(
        &self,
        b: &NewBlock,
        span: &[ProductHandle],
        usable: impl Fn(usize) -> bool,
    ) -> bool {
        let budget = b.price as i128 * b.qty as i128 * b.hours as i128;
        let floor: Vec<i128> = span
            .iter()
            .map(|&p| {
                self.books[p as usize]
                    .best_ask()
                    .map_or(i128::MAX / 512, |px| px as i128 * b.qty as i128)
            })
            .collect();
        floor
            .windows(b.hours as usize)
            .enumerate()
            .any(|(s, w)| usable(s) && w.iter().sum::<i128>() <= budget)
    }
}
