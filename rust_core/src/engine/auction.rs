//! Auction orders and the call auction's two steps, as the engine sees them.
//!
//! An auction order (a block, a window, a one-of group, or a one-hour bid, all
//! good-till) is accepted and rests in the side book at once, never planned on entry and
//! never tried by arriving asks. An auction is decided outside the engine (an optimiser
//! over [`Engine::auction_view`]) between two commands:
//!
//! - `AuctionStart` freezes every resting auction order whose first hour lies in the
//!   auction's window: from then until it clears, those refuse cancel and amend
//!   (`AUCTION_IN_PROGRESS`). Continuous trading goes on.
//! - `AuctionClear` carries the result: each fill (an order, its cluster, first hour,
//!   GPUs) and one clearing price per product. Each fill is checked against the state at
//!   that moment and applied, or dropped whole when it no longer fits (the order gone,
//!   a product not open, the GPUs or the asks taken meanwhile, the price above its
//!   limit). Every trade of the auction is at its product's clearing price; in each hour
//!   a fill takes its cluster's asks priced at or below the clearing price in
//!   price-time order, never the buyer's own. Then every frozen order is live again.
//!
//! Replay applies the journaled result without deciding anything again: the same state
//! on every machine.

use std::collections::BTreeSet;

use rustc_hash::FxHashMap;

use super::seller_blocks::{seller_leg, SELLER_LEG};
use super::{BlockPlan, Engine, MAX_ALTERNATIVES};
use crate::capacity::{ClusterHandle, Level, Topology};
use crate::command::*;
use crate::reject::Reject;
use crate::types::*;

/// The auction being cleared: its id and delivery window `[from_hour, to_hour)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OpenAuction {
    pub id: u64,
    pub from_hour: i64,
    pub to_hour: i64,
}

/// What an auction decides over, read from the engine after it starts: the bids (its
/// frozen auction orders and the continuous blocks resting in its window), every ask
/// resting in the hours they span, and the clusters of those asks with each node's free
/// GPUs per hour.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AuctionView {
    /// The hours seen: `[first_hour, first_hour + hours)`.
    pub first_hour: i64,
    pub hours: u32,
    pub bids: Vec<ViewBid>,
    pub asks: Vec<ViewAsk>,
    pub clusters: Vec<ViewCluster>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewBid {
    pub order_id: OrderId,
    pub alternative: u32,
    /// One alternative of a one-of group (the group is `order_id`).
    pub group: bool,
    pub account: AccountId,
    /// SKU and region, as `sku/region`.
    pub family: String,
    /// The first hour of its span (its hours, or its window) and the span's length.
    pub span_from: i64,
    pub span_hours: u32,
    pub hours: u32,
    pub qty: Qty,
    pub price: Price,
    pub gang: u32,
    /// All or none (a block, a window, a group's alternative, a continuous block);
    /// otherwise a one-hour auction bid that may fill in part, in whole gangs.
    pub whole: bool,
    /// Placement: the level all its GPUs must share a domain at (`None`: no such term,
    /// or only a preferred one, which any placement satisfies) and the allocation it
    /// must be next to, as its cluster and first node: it fills on that cluster only,
    /// and with a level in the domain there that holds that node.
    pub level: Option<Level>,
    pub near: Option<(ClusterHandle, u32)>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewAsk {
    pub order_id: OrderId,
    pub account: AccountId,
    pub cluster: ClusterHandle,
    /// Its first hour, and its hours: 1 for an ask; a seller block's, sold whole.
    pub hour: i64,
    pub qty: Qty,
    pub price: Price,
    pub hours: u32,
    pub whole: bool,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewCluster {
    pub handle: ClusterHandle,
    pub seller: AccountId,
    pub id: String,
    pub family: String,
    /// Per node: its id, GPUs, and the mask of its GPUs free in each hour of the view
    /// (0 where the cluster does not sell the hour).
    pub nodes: Vec<(String, u32, Vec<u64>)>,
    /// Per node: where it sits (block, rack, NVLink domain), for placement terms.
    pub places: Vec<Topology>,
}

impl Engine {
    /// An auction order's terms: good-till.
    fn auction_terms(b: &NewBlock) -> Result<(), Reject> {
        if !b.tif.rests() {
            return Err(Reject::InvalidAuction);
        }
        Ok(())
    }

    /// An auction bid (a block, a window or one hour): checked as any block is, then
    /// accepted and resting, untried.
    pub(super) fn place_auction_block(
        &mut self,
        b: &NewBlock,
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        Self::auction_terms(b)?;
        let products = self.block_products(b)?;
        let id = self.accept_block(b, out);
        self.rest_block(id, 0, false, b, products);
        Ok(())
    }

    /// A one-of group of auction bids: every alternative an auction order with the same
    /// time in force; it rests as its alternatives, and an auction fills at most one.
    pub(super) fn place_auction_one_of(
        &mut self,
        alts: &[NewBlock],
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        if alts.is_empty() || alts.len() > MAX_ALTERNATIVES {
            return Err(Reject::InvalidGroup);
        }
        if alts.iter().any(|b| !b.auction || b.tif != alts[0].tif) {
            return Err(Reject::InvalidAuction);
        }
        for b in alts {
            Self::auction_terms(b)?;
        }
        let products = alts
            .iter()
            .map(|b| self.block_products(b))
            .collect::<Result<Vec<_>, Reject>>()?;
        out.push(Event::Chosen {
            alternative: 0,
            order_id: self.next_order_id,
            block: alts[0].clone(),
        });
        let id = self.accept_block(&alts[0], out);
        for (k, (b, span)) in alts.iter().zip(products).enumerate() {
            self.rest_block(id, k as u32, true, b, span);
        }
        Ok(())
    }

    /// A product just listed, with nothing resting in it yet, is held for its auction.
    pub(super) fn hold_for_auction(
        &mut self,
        h: ProductHandle,
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        let p = self.product(h)?;
        let book = &self.books[h as usize];
        if p.state != ProductState::Open || book.best_bid().is_some() || book.best_ask().is_some() {
            return Err(Reject::ProductNotOpen);
        }
        self.set_state(h, ProductState::Auction, out)
    }

    /// The auction being cleared, if any.
    pub fn open_auction(&self) -> Option<OpenAuction> {
        self.auction
    }

    /// The id of the last auction started (0: none yet).
    pub fn last_auction(&self) -> u64 {
        self.last_auction
    }

    pub(super) fn start_auction(
        &mut self,
        id: u64,
        from_hour: i64,
        to_hour: i64,
    ) -> Result<(), Reject> {
        if self.auction.is_some() {
            return Err(Reject::AuctionInProgress);
        }
        if id <= self.last_auction || from_hour >= to_hour {
            return Err(Reject::AuctionNotRunning);
        }
        let products = &self.products;
        let first_hour = |rb: &super::RestingBlock| products[rb.products[0] as usize].hour;
        let ids: BTreeSet<OrderId> = (self.side.blocks.values())
            .filter(|rb| rb.block.auction && (from_hour..to_hour).contains(&first_hour(rb)))
            .map(|rb| rb.id)
            .collect();
        for rb in self.side.blocks.values_mut() {
            if ids.contains(&rb.id) {
                rb.frozen = true;
            }
        }
        let products = &self.products;
        for sb in self.seller_blocks.values_mut() {
            if (from_hour..to_hour).contains(&products[sb.products[0] as usize].hour) {
                sb.frozen = true;
            }
        }
        self.last_auction = id;
        self.auction = Some(OpenAuction {
            id,
            from_hour,
            to_hour,
        });
        Ok(())
    }

    pub(super) fn clear_auction(
        &mut self,
        id: u64,
        fills: &[AuctionFill],
        prices: &[(ProductHandle, Price)],
        abandoned: bool,
        sold: &[OrderId],
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        if self.auction.is_none_or(|a| a.id != id) {
            return Err(Reject::AuctionNotRunning);
        }
        let prices: FxHashMap<ProductHandle, Price> = prices.iter().copied().collect();
        // the seller blocks it sold that it may sell: frozen by it, cheapest first
        let mut selling: Vec<OrderId> = sold
            .iter()
            .copied()
            .filter(|s| self.seller_blocks.get(s).is_some_and(|sb| sb.frozen))
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        selling.sort_by_key(|s| (self.seller_blocks[s].block.price, *s));
        let (filled, dropped) = if selling.is_empty() {
            self.apply_fills(fills, &prices, &BTreeSet::new(), out).0
        } else {
            // each sold seller block used whole, or not sold and the fills that used it
            // dropped: tried on a copy until every one left is used whole
            let mut skip: BTreeSet<usize> = BTreeSet::new();
            loop {
                let mut trial = self.clone();
                trial.selling = selling.clone();
                let mut events = Vec::new();
                let (result, used) = trial.apply_fills(fills, &prices, &skip, &mut events);
                let short: BTreeSet<OrderId> = (selling.iter().copied())
                    .filter(|s| trial.seller_blocks[s].left.iter().any(|&l| l > 0))
                    .collect();
                if short.is_empty() {
                    trial.settle_seller_blocks(&selling);
                    trial.selling.clear();
                    *self = trial;
                    out.extend(events);
                    break result;
                }
                for (k, u) in used.iter().enumerate() {
                    if u.iter().any(|s| short.contains(s)) {
                        skip.insert(k);
                    }
                }
                selling.retain(|s| !short.contains(s));
            }
        };
        for rb in self.side.blocks.values_mut() {
            rb.frozen = false;
        }
        for sb in self.seller_blocks.values_mut() {
            sb.frozen = false;
        }
        // the hours of its window open for continuous trading (an abandoned one's wait)
        let window = self
            .auction
            .map(|a| a.from_hour..a.to_hour)
            .expect("running");
        for p in (0..self.products.len()).filter(|_| !abandoned) {
            let product = &self.products[p];
            if product.state == ProductState::Auction && window.contains(&product.hour) {
                self.set_state(p as ProductHandle, ProductState::Open, out)?;
            }
        }
        self.auction = None;
        self.side.changed();
        out.push(Event::AuctionCleared {
            auction: id,
            filled,
            dropped,
        });
        Ok(())
    }

    /// Applies each fill that fits now, in order (those in `skip`, by index, dropped):
    /// the orders filled and dropped, and per fill the seller blocks it took from.
    #[allow(clippy::type_complexity)]
    fn apply_fills(
        &mut self,
        fills: &[AuctionFill],
        prices: &FxHashMap<ProductHandle, Price>,
        skip: &BTreeSet<usize>,
        out: &mut Vec<Event>,
    ) -> ((Vec<OrderId>, Vec<OrderId>), Vec<BTreeSet<OrderId>>) {
        let (mut filled, mut dropped) = (Vec::new(), Vec::new());
        let mut used = vec![BTreeSet::new(); fills.len()];
        for (k, f) in fills.iter().enumerate() {
            let plan = if skip.contains(&k) {
                None
            } else {
                self.auction_plan(f, prices)
            };
            match plan {
                Some((b, plan, group)) => {
                    for legs in &plan.legs {
                        for &(i, _, _) in legs {
                            if let Some(s) = seller_leg(i) {
                                used[k].insert(self.selling[s]);
                            }
                        }
                    }
                    self.take_auction_fill(f, b, plan, group, out);
                    filled.push(f.order_id);
                }
                None => dropped.push(f.order_id),
            }
        }
        ((filled, dropped), used)
    }

    /// How fill `f` would be applied now: the order's terms, the plan (asks per hour at
    /// the clearing prices, the GPUs) and whether it is a group's alternative; `None`
    /// when it no longer fits, and nothing is changed either way.
    fn auction_plan(
        &self,
        f: &AuctionFill,
        prices: &FxHashMap<ProductHandle, Price>,
    ) -> Option<(NewBlock, BlockPlan, bool)> {
        let rb = self.side.blocks.get(&(f.order_id, f.alternative))?;
        if rb.block.auction && !rb.frozen {
            return None; // an auction order this auction did not see
        }
        let b = &rb.block;
        let whole = !b.auction || b.hours > 1 || b.window > 0 || rb.group;
        let gang = b.gang.max(1) as Qty;
        if f.qty <= 0 || f.qty % gang != 0 || f.qty > b.qty || (whole && f.qty != b.qty) {
            return None;
        }
        let k = rb.products.iter().position(|&p| p == f.start)?;
        let span = rb.products.get(k..k + b.hours as usize)?;
        let cluster = self.clusters.get(f.cluster as usize)?;
        let first = &self.products[span[0] as usize];
        if cluster.spec.sku != first.sku || cluster.spec.region != first.region {
            return None;
        }
        // every hour open and priced, the whole within the bid's limit
        let mut cost: i128 = 0;
        let mut chs = Vec::with_capacity(span.len());
        for &p in span {
            let product = &self.products[p as usize];
            let px = *prices.get(&p)?;
            if !matches!(product.state, ProductState::Open | ProductState::Auction) {
                return None;
            }
            cost += px as i128 * f.qty as i128;
            chs.push(*self.cluster_hour_index.get(&(f.cluster, product.hour))?);
        }
        if cost > b.price as i128 * f.qty as i128 * b.hours as i128 {
            return None;
        }
        // the GPUs: nodes ascending, whole gangs on each, free in every hour
        let mut count: Qty = 0;
        let mut last: Option<u32> = None;
        for &(node, mask) in &f.slots {
            let n = cluster.spec.nodes.get(node as usize)?;
            let all = if n.gpus >= 64 {
                !0
            } else {
                (1u64 << n.gpus) - 1
            };
            let here = mask.count_ones() as Qty;
            if last.is_some_and(|l| l >= node) || mask == 0 || mask & !all != 0 || here % gang != 0
            {
                return None;
            }
            if chs
                .iter()
                .any(|&ch| self.cluster_hours[ch as usize].free[node as usize] & mask != mask)
            {
                return None;
            }
            last = Some(node);
            count += here;
        }
        if count != f.qty {
            return None;
        }
        let placed = self.auction_placement(b, f)?;
        // each hour's asks at or below the clearing price, price-time order, never the
        // buyer's own; every leg trades at the clearing price
        let mut legs = Vec::with_capacity(span.len());
        for (&p, &ch) in span.iter().zip(&chs) {
            let px = prices[&p];
            let mut need = f.qty;
            let mut taken = Vec::new();
            // the sold seller blocks of this cluster-hour first, cheapest first
            for (s, id) in self.selling.iter().enumerate() {
                let sb = &self.seller_blocks[id];
                let Some(j) = sb.products.iter().position(|&q| q == p) else {
                    continue;
                };
                if need == 0 || sb.block.price > px {
                    break;
                }
                if sb.block.cluster != f.cluster || sb.block.account == b.account || sb.left[j] == 0
                {
                    continue;
                }
                let take = need.min(sb.left[j]);
                taken.push((SELLER_LEG | s as u32, px, take));
                need -= take;
            }
            let asks = self.asks_by_cluster_hour(p);
            for &(_, i, ask_px, q, seller) in asks.get(ch) {
                if need == 0 || ask_px > px {
                    break;
                }
                if seller == b.account {
                    continue;
                }
                let take = need.min(q);
                taken.push((i, px, take));
                need -= take;
            }
            if need > 0 {
                return None;
            }
            legs.push(taken);
        }
        let plan = BlockPlan {
            cost,
            cluster_hours: chs,
            legs,
            slots: f.slots.clone(),
            placed,
        };
        Some((b.clone(), plan, rb.group))
    }

    /// Where fill `f`'s GPUs sit against its bid's placement terms: `Some(None)` without
    /// terms; `Some(Some((level, domain)))`, the tightest level from the one it names
    /// (out to the cluster, when only preferred) at which they share a domain (the one
    /// holding the allocation it must be next to, when it names one); `None` when they
    /// break a term.
    fn auction_placement(&self, b: &NewBlock, f: &AuctionFill) -> Option<Option<(Level, String)>> {
        let near = match b.place.near {
            None => None,
            Some(t) => {
                let a = self.allocation_by_trade(t)?;
                let slot = a.slots.first()?;
                if a.cluster != f.cluster {
                    return None;
                }
                Some(slot.node)
            }
        };
        let Some(first) = b.place.level.or(near.map(|_| Level::Cluster)) else {
            return Some(None);
        };
        let nodes = &self.clusters[f.cluster as usize].spec.nodes;
        let mut level = Some(first);
        while let Some(l) = level {
            let domain = nodes[f.slots.first()?.0 as usize].domain_at(l);
            let here = |n: u32| nodes[n as usize].domain_at(l) == domain;
            if f.slots.iter().all(|&(n, _)| here(n)) && near.is_none_or(here) {
                return Some(Some((l, domain)));
            }
            level = if b.place.preferred { l.up() } else { None };
        }
        None
    }

    /// Applies a fill `auction_plan` found good: the order leaves the side book (a
    /// one-hour auction bid filled in part stays for the rest), then its trades.
    fn take_auction_fill(
        &mut self,
        f: &AuctionFill,
        b: NewBlock,
        plan: BlockPlan,
        group: bool,
        out: &mut Vec<Event>,
    ) {
        if f.qty < b.qty {
            let rb = (self.side.blocks.get_mut(&(f.order_id, 0))).expect("the bid rests");
            rb.block.qty -= f.qty;
        } else {
            self.side.remove(f.order_id);
        }
        if group {
            out.push(Event::Chosen {
                alternative: f.alternative,
                order_id: f.order_id,
                block: b.clone(),
            });
        }
        let traded = NewBlock { qty: f.qty, ..b };
        self.take_plan(f.order_id, &traded, plan, out);
    }

    /// What an auction over `[from_hour, to_hour)` decides: see [`AuctionView`]. The
    /// bids are the resting auction orders whose first hour lies in the window (frozen
    /// ones, once it has started) and the continuous blocks resting there, in id order
    /// (earlier orders win ties); the hours run from the window's first to the end of the
    /// last bid's span.
    pub fn auction_view(&self, from_hour: i64, to_hour: i64) -> AuctionView {
        let mut view = AuctionView {
            first_hour: from_hour,
            ..Default::default()
        };
        let mut end = to_hour;
        let mut families: BTreeSet<(String, String)> = BTreeSet::new();
        for rb in self.side.blocks.values() {
            let first = &self.products[rb.products[0] as usize];
            let frozen_or_open = !rb.block.auction || rb.frozen || self.auction.is_none();
            if !(from_hour..to_hour).contains(&first.hour) || !frozen_or_open {
                continue;
            }
            let b = &rb.block;
            // next to an allocation resold whole since: nowhere it could fill
            let near = match b.place.near.map(|t| self.allocation_by_trade(t)) {
                None => None,
                Some(a) => match a.and_then(|a| Some((a.cluster, a.slots.first()?.node))) {
                    None => continue,
                    near => near,
                },
            };
            end = end.max(first.hour + rb.products.len() as i64);
            families.insert((first.sku.clone(), first.region.clone()));
            view.bids.push(ViewBid {
                order_id: rb.id,
                alternative: rb.alternative,
                group: rb.group,
                account: b.account,
                family: format!("{}/{}", first.sku, first.region),
                span_from: first.hour,
                span_hours: rb.products.len() as u32,
                hours: b.hours,
                qty: b.qty,
                price: b.price,
                gang: b.gang.max(1),
                whole: !b.auction || b.hours > 1 || b.window > 0 || rb.group,
                level: b.place.level.filter(|_| !b.place.preferred),
                near,
            });
        }
        // the seller blocks it sees (frozen by it, or any while none runs) sell whole
        let sellers: Vec<&super::SellerBlock> = (self.seller_blocks.values())
            .filter(|sb| {
                let first = &self.products[sb.products[0] as usize];
                (from_hour..to_hour).contains(&first.hour)
                    && (sb.frozen || self.auction.is_none())
                    && families.contains(&(first.sku.clone(), first.region.clone()))
            })
            .collect();
        for sb in &sellers {
            let first = self.products[sb.products[0] as usize].hour;
            end = end.max(first + sb.products.len() as i64);
        }
        view.hours = (end - from_hour) as u32;
        let mut clusters: BTreeSet<ClusterHandle> = BTreeSet::new();
        for (p, product) in self.products.iter().enumerate() {
            let family = (product.sku.clone(), product.region.clone());
            if !(from_hour..end).contains(&product.hour) || !families.contains(&family) {
                continue;
            }
            let p = p as ProductHandle;
            self.each_ask(p, |_, m| {
                let ch = &self.cluster_hours[m.cluster_hour as usize];
                clusters.insert(ch.cluster);
                view.asks.push(ViewAsk {
                    order_id: m.id,
                    account: m.account,
                    cluster: ch.cluster,
                    hour: product.hour,
                    qty: m.remaining,
                    price: m.price,
                    hours: 1,
                    whole: false,
                });
            });
        }
        for sb in sellers {
            clusters.insert(sb.block.cluster);
            view.asks.push(ViewAsk {
                order_id: sb.id,
                account: sb.block.account,
                cluster: sb.block.cluster,
                hour: self.products[sb.products[0] as usize].hour,
                qty: sb.block.qty,
                price: sb.block.price,
                hours: sb.products.len() as u32,
                whole: true,
            });
        }
        for c in clusters {
            let cluster = &self.clusters[c as usize];
            let nodes = (cluster.spec.nodes.iter().enumerate())
                .map(|(n, node)| {
                    let free = (from_hour..end)
                        .map(|h| {
                            self.cluster_hour_index
                                .get(&(c, h))
                                .map_or(0, |&ch| self.cluster_hours[ch as usize].free[n])
                        })
                        .collect();
                    (node.id.clone(), node.gpus, free)
                })
                .collect();
            view.clusters.push(ViewCluster {
                handle: c,
                seller: cluster.seller,
                id: cluster.spec.id.clone(),
                family: format!("{}/{}", cluster.spec.sku, cluster.spec.region),
                nodes,
                places: cluster.spec.nodes.iter().map(|n| n.place.clone()).collect(),
            });
        }
        view
    }
}
