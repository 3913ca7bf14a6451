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
//! there. Examining a block is a walk over its hours (is the ask's cluster open and
//! offering enough in each, and could the best asks there meet its limit?) and, only if
//! so, a plan on that one cluster: its asks in those hours (each hour's book walked once
//! per arriving ask) and its nodes.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound::{Excluded, Included, Unbounded};
use std::ops::Range;

use rustc_hash::FxHashMap;

use super::{AsksByClusterHour, BlockPlan, Engine};
use crate::capacity::ClusterHandle;
use crate::codec::{self, CodecError, Dec, Enc};
use crate::command::{CancelReason, Event, ExpireReason, NewBlock};
use crate::reject::Reject;
use crate::types::*;

/// The best resting blocks of an hour examined for each ask arriving in it.
pub const RETRY_TOP: usize = 16;
/// The further resting blocks of an hour examined in turn for each ask arriving in it.
pub const RETRY_TURN: usize = 16;

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
}

impl RestingBlock {
    fn key(&self) -> BlockKey {
        (Reverse(self.block.price), self.id, self.alternative)
    }
}

/// The side book: resting blocks (and group alternatives) by id and alternative, the
/// keys of those spanning each product, and each product's turn cursor.
#[derive(Clone, Default)]
pub(super) struct SideBook {
    pub blocks: BTreeMap<(OrderId, u32), RestingBlock>,
    pub by_product: Vec<BTreeSet<BlockKey>>,
    pub cursor: Vec<Option<BlockKey>>,
}

impl SideBook {
    pub fn add_product(&mut self) {
        self.by_product.push(BTreeSet::new());
        self.cursor.push(None);
    }

    fn insert(&mut self, rb: RestingBlock) {
        let key = rb.key();
        for &p in &rb.products {
            self.by_product[p as usize].insert(key);
        }
        self.blocks.insert((rb.id, rb.alternative), rb);
    }

    /// Takes one alternative out.
    fn remove_one(&mut self, id: OrderId, alternative: u32) -> Option<RestingBlock> {
        let rb = self.blocks.remove(&(id, alternative))?;
        let key = rb.key();
        for &p in &rb.products {
            self.by_product[p as usize].remove(&key);
        }
        Some(rb)
    }

    /// Takes the block `id` out, every alternative of it, at once; the first listed.
    fn remove(&mut self, id: OrderId) -> Option<RestingBlock> {
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
            e.u8(rb.group as u8);
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
            let (id, alternative, group) = (d.u64()?, d.u32()?, d.u8()? != 0);
            let block = codec::get_block(d, true)?;
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
        });
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
        let owner = self.side.first(id)?.block.account;
        if owner != account {
            return Some(Err(Reject::NotOwner));
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
        let mut keys: Vec<(OrderId, u32)> = self.side.by_product[product as usize]
            .iter()
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

    /// An ask now rests in `product` on cluster-hour `ch`: the resting blocks that span
    /// the hour are examined (see the module's bound), best first; each that can now
    /// fill whole from that cluster does, at once.
    pub(super) fn retry_blocks(&mut self, product: ProductHandle, ch: u32, out: &mut Vec<Event>) {
        if self.side.by_product[product as usize].is_empty() {
            return;
        }
        let keys = self.side.next_to_examine(product as usize);
        let cluster = self.cluster_hours[ch as usize].cluster;
        // this cluster's asks per product, walked once per arriving ask (until a fill)
        let mut cache: FxHashMap<ProductHandle, Vec<(u32, Price, Qty, AccountId)>> =
            FxHashMap::default();
        for (_, id, alternative) in keys {
            let Some(rb) = self.side.blocks.get(&(id, alternative)) else {
                continue;
            };
            let Some(starts) = self.starts_through(rb, product, cluster) else {
                continue;
            };
            let (b, all, group) = (rb.block.clone(), rb.products.clone(), rb.group);
            let span = &all[starts.start..starts.end - 1 + b.hours as usize];
            if !self.within_reach(&b, span) {
                continue;
            }
            for &q in span {
                cache
                    .entry(q)
                    .or_insert_with(|| self.cluster_asks(q, cluster));
            }
            // what each hour would cost on this cluster, before anything is built
            let budget = b.price as i128 * b.qty as i128 * b.hours as i128;
            let cost: Vec<Option<i128>> = span
                .iter()
                .map(|q| Self::cost_of(&cache[q], b.qty, b.account))
                .collect();
            let affordable = cost.windows(b.hours as usize).any(|w| {
                w.iter()
                    .try_fold(0i128, |sum, c| c.map(|c| sum + c))
                    .is_some_and(|total| total <= budget)
            });
            if !affordable {
                continue;
            }
            let asks: Vec<AsksByClusterHour> = span
                .iter()
                .map(|&q| {
                    let list = &cache[&q];
                    let hour = self.products[q as usize].hour;
                    let key = self.cluster_hour_index[&(cluster, hour)];
                    let mut by = AsksByClusterHour::default();
                    by.insert(
                        key,
                        list.iter()
                            .filter(|a| a.3 != b.account)
                            .map(|a| (a.0, a.1, a.2))
                            .collect(),
                    );
                    by
                })
                .collect();
            let mut plan: Option<BlockPlan> = None;
            for s in 0..starts.len() {
                let end = s + b.hours as usize;
                let bound = plan.as_ref().map(|q| q.cost);
                let found = self.plan_block(&b, &span[s..end], &asks[s..end], bound, Some(cluster));
                if found.is_some() {
                    plan = found;
                }
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

    /// The starts (indices into the block's span) whose hours all hold `product` and are
    /// open with `cluster` offering at least the block's GPUs: a quick test before a
    /// plan. `None` when there is none.
    fn starts_through(
        &self,
        rb: &RestingBlock,
        product: ProductHandle,
        cluster: ClusterHandle,
    ) -> Option<Range<usize>> {
        let first = self.products[rb.products[0] as usize].hour;
        let k = (self.products[product as usize].hour - first) as usize;
        let ok = |i: usize| {
            let p = &self.products[rb.products[i] as usize];
            p.state == ProductState::Open
                && self
                    .cluster_hour_index
                    .get(&(cluster, p.hour))
                    .is_some_and(|&ch| self.cluster_hours[ch as usize].offered >= rb.block.qty)
        };
        if !ok(k) {
            return None;
        }
        let hours = rb.block.hours as usize;
        let (mut lo, mut hi) = (k, k);
        while lo > 0 && k - (lo - 1) < hours && ok(lo - 1) {
            lo -= 1;
        }
        while hi + 1 < rb.products.len() && hi + 1 - k < hours && ok(hi + 1) {
            hi += 1;
        }
        if hi + 1 - lo < hours {
            return None;
        }
        Some(lo..hi + 2 - hours)
    }

    /// Whether some start over `span` could cost at most the block's limit, priced at
    /// each hour's best ask (a floor: nothing it could take is cheaper). The common
    /// reason to wait is the price; this sees it without walking a book.
    fn within_reach(&self, b: &NewBlock, span: &[ProductHandle]) -> bool {
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
            .any(|w| w.iter().sum::<i128>() <= budget)
    }

    /// What `qty` GPUs cost from `asks` (never `buyer`'s own), cheapest first; `None`
    /// when they hold fewer.
    fn cost_of(asks: &[(u32, Price, Qty, AccountId)], qty: Qty, buyer: AccountId) -> Option<i128> {
        let (mut need, mut cost) = (qty, 0i128);
        for &(_, px, q, seller) in asks {
            if seller != buyer {
                let take = need.min(q);
                cost += px as i128 * take as i128;
                need -= take;
                if need == 0 {
                    return Some(cost);
                }
            }
        }
        None
    }

    /// The asks of `product` on `cluster`, in price-time order:
    /// `(slab index, price, quantity, seller)`.
    fn cluster_asks(
        &self,
        product: ProductHandle,
        cluster: ClusterHandle,
    ) -> Vec<(u32, Price, Qty, AccountId)> {
        let mut asks = Vec::new();
        self.each_ask(product, |i, m| {
            if m.cluster == Some(cluster) {
                asks.push((i, m.price, m.remaining, m.account));
            }
        });
        asks
    }
}
