//! Block bids, windows and one-of groups on entry: their shape and span checked, the
//! cheapest plan over the clusters found, and the plan taken hour by hour. What cannot
//! fill now and may rest goes to the side book (`side_book`).

use super::seller_blocks::seller_leg;
use super::{
    pool_of, AsksByClusterHour, BlockPlan, Engine, MAX_ALTERNATIVES, MAX_BLOCK_HOURS,
    MAX_WINDOW_HOURS,
};
use crate::book::{RestingOrder, NIL};
use crate::capacity::{ClusterHandle, Level, Slot};
use crate::command::*;
use crate::reject::Reject;
use crate::types::*;

/// A cluster a block could fill from: its cost, index, cluster-hours and asks per hour.
type Candidate = (i128, usize, Vec<u32>, Vec<Vec<(u32, Price, Qty)>>);

impl Engine {
    /// A block bid: the same GPUs in every hour of the block, all or none, now.
    ///
    /// Each cluster of the SKU and region that covers every hour is a candidate. In each
    /// hour the block takes that cluster's asks (never the buyer's own) in price-time
    /// order until it has its GPUs; the GPUs themselves are the ones free in every hour
    /// of the block, placed best fit in whole gangs (the nodes with the fewest such GPUs
    /// first, then the lowest index). The candidate with the lowest total cost wins, ties
    /// to the lowest cluster; it must cost at most `price x qty x hours`. Each hour trades
    /// at its asks' prices, one trade and allocation per ask taken. The work is bounded
    /// by the asks of the block's hours and the nodes of the candidate clusters.
    ///
    /// A good-till block that cannot fill now rests whole in the side book (see
    /// `side_book`) until it fills, is cancelled, or expires (its time, or the gate
    /// closure of any of its hours: the first hour of its span closes first).
    pub(super) fn place_block(&mut self, b: &NewBlock, out: &mut Vec<Event>) -> Result<(), Reject> {
        if b.auction {
            return self.place_auction_block(b, out);
        }
        let products = self.block_products(b)?;
        let plan = self.best_plan(b, &products);
        if plan.is_none() && b.tif.rests() {
            let id = self.accept_block(b, out);
            self.rest_block(id, 0, false, b, products);
            return Ok(());
        }
        self.fill_block(b, plan, out);
        Ok(())
    }

    /// One-of: at most one of the alternatives (blocks or windows) fills, at once: the
    /// cheapest that can, ties to the first listed. The group is one order: `Chosen`
    /// names the alternative it became (the first when none could fill). When every
    /// alternative is good-till with the same time in force and none can fill now, the
    /// group rests in the side book as its alternatives, each tried as a resting block;
    /// the first to fill takes the others out in the same step.
    pub(super) fn place_one_of(
        &mut self,
        alts: &[NewBlock],
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        if alts.iter().any(|b| b.auction) {
            return self.place_auction_one_of(alts, out);
        }
        let rests = alts.first().is_some_and(|b| b.tif.rests());
        if alts.is_empty()
            || alts.len() > MAX_ALTERNATIVES
            || alts
                .iter()
                .any(|b| b.tif.rests() != rests || (rests && b.tif != alts[0].tif))
        {
            return Err(Reject::InvalidGroup);
        }
        let products = alts
            .iter()
            .map(|b| self.block_products(b))
            .collect::<Result<Vec<_>, Reject>>()?;
        let mut chosen: Option<(usize, BlockPlan)> = None;
        for (i, b) in alts.iter().enumerate() {
            if let Some(plan) = self.best_plan(b, &products[i]) {
                if chosen.as_ref().is_none_or(|(_, q)| plan.cost < q.cost) {
                    chosen = Some((i, plan));
                }
            }
        }
        let (i, plan) = match chosen {
            Some((i, plan)) => (i, Some(plan)),
            None => (0, None),
        };
        out.push(Event::Chosen {
            alternative: i as u32,
            order_id: self.next_order_id,
            block: alts[i].clone(),
        });
        if plan.is_none() && rests {
            let id = self.accept_block(&alts[0], out);
            for (k, (b, span)) in alts.iter().zip(products).enumerate() {
                self.rest_block(id, k as u32, true, b, span);
            }
            return Ok(());
        }
        self.fill_block(&alts[i], plan, out);
        Ok(())
    }

    /// Which rule of a block's shape `b` breaks, for people (`None`: its shape is good;
    /// a refusal then has another reason): the one `block_products` refuses it by with
    /// `InvalidBlock`, the first broken in the order checked.
    pub fn block_problem(&self, b: &NewBlock) -> Option<String> {
        let span = if b.window == 0 { b.hours } else { b.window };
        if b.hours == 0 {
            return Some("a block is for at least 1 hour".into());
        }
        if b.hours > MAX_BLOCK_HOURS {
            return Some(format!(
                "a block is for at most {MAX_BLOCK_HOURS} hours, not {}",
                b.hours
            ));
        }
        if span < b.hours {
            return Some(format!(
                "the window of {} hours is shorter than the block of {}",
                b.window, b.hours
            ));
        }
        if span > MAX_WINDOW_HOURS {
            return Some(format!(
                "a window is at most {MAX_WINDOW_HOURS} hours, not {}",
                b.window
            ));
        }
        let first = self.products.get(b.product as usize)?;
        for k in 0..span as i64 {
            let hour = crate::product::format_hour(first.hour + k);
            let id = format!("{}/{}/{hour}", first.sku, first.region);
            if !self.product_index.contains_key(&id) {
                let whose = if b.window == 0 { "block" } else { "window" };
                return Some(format!(
                    "hour {hour} of the {whose} is not listed: there is no product {id}"
                ));
            }
        }
        None
    }

    /// The products of a block's span (its hours, or its window), each listed, open and
    /// taking the bid's terms; the refusal otherwise.
    pub(super) fn block_products(&self, b: &NewBlock) -> Result<Vec<ProductHandle>, Reject> {
        let span = if b.window == 0 { b.hours } else { b.window };
        if b.hours == 0 || b.hours > MAX_BLOCK_HOURS || span < b.hours || span > MAX_WINDOW_HOURS {
            return Err(Reject::InvalidBlock);
        }
        let first = self.product(b.product)?;
        let (sku, region, hour) = (&first.sku, &first.region, first.hour);
        if let Some(t) = b.place.near {
            // next to an allocation the buyer holds, of this SKU and region
            let held = self.allocation_by_trade(t).is_some_and(|a| {
                let c = &self.clusters[a.cluster as usize].spec;
                a.buyer == b.account && !a.slots.is_empty() && &c.sku == sku && &c.region == region
            });
            if !held {
                return Err(Reject::InvalidPlacement);
            }
        }
        let mut products = Vec::with_capacity(span as usize);
        for k in 0..span as i64 {
            let id = format!("{sku}/{region}/{}", crate::product::format_hour(hour + k));
            let p = self
                .product_index
                .get(&id)
                .copied()
                .ok_or(Reject::InvalidBlock)?;
            let mut leg = NewOrder::limit(b.account, p, Side::Buy, b.price, b.qty);
            leg.gang = b.gang;
            leg.tif = b.tif;
            self.validate_in(&leg, false, b.auction)?;
            products.push(p);
        }
        Ok(products)
    }

    /// The cheapest way to fill `b` over its span now: the cheapest start, ties to the
    /// earliest.
    fn best_plan(&self, b: &NewBlock, products: &[ProductHandle]) -> Option<BlockPlan> {
        // each hour's asks by cluster-hour, in price-time order: one pass over each book
        // of the span
        let asks: Vec<AsksByClusterHour> = products
            .iter()
            .map(|&p| self.asks_by_cluster_hour(p))
            .collect();
        let asks: Vec<&AsksByClusterHour> = asks.iter().collect();
        self.cheapest_start(b, products, &asks, |_| true, None)
    }

    /// The cheapest plan for `b` over the starts of its span (`products`, with `asks`
    /// their asks hour by hour) that `usable` allows: every cluster of every start is
    /// weighed (see `plan_block`); the lowest cost wins, ties to the earliest start, and
    /// within a start to the lowest cluster (the first registered). A fresh block and a
    /// resting one tried again are planned by this one function. `only` (ascending), when
    /// given, limits the clusters weighed: a resting block tried again passes the
    /// clusters whose asks in its span changed since it was last planned, when none
    /// of the others can have gained a plan (see `side_book`).
    pub(super) fn cheapest_start(
        &self,
        b: &NewBlock,
        products: &[ProductHandle],
        asks: &[&AsksByClusterHour],
        usable: impl Fn(usize) -> bool,
        only: Option<&[ClusterHandle]>,
    ) -> Option<BlockPlan> {
        let mut plan: Option<BlockPlan> = None;
        for start in 0..=products.len() - b.hours as usize {
            if !usable(start) {
                continue;
            }
            let end = start + b.hours as usize;
            let bound = plan.as_ref().map(|q| q.cost);
            let (span, asks) = (&products[start..end], &asks[start..end]);
            if let Some(p) = self.plan_block(b, span, asks, bound, only) {
                plan = Some(p);
            }
        }
        plan
    }

    /// Accepts a block: its id.
    pub(super) fn accept_block(&mut self, b: &NewBlock, out: &mut Vec<Event>) -> OrderId {
        self.accept_whole(b.account, b.product, Side::Buy, b.price, b.qty, out)
    }

    /// Accepts an order that lives beside the books (a block, a seller block): its id.
    pub(super) fn accept_whole(
        &mut self,
        account: AccountId,
        product: ProductHandle,
        side: Side,
        price: Price,
        qty: Qty,
        out: &mut Vec<Event>,
    ) -> OrderId {
        let id = self.next_order_id;
        self.next_order_id += 1;
        out.push(Event::Accepted {
            order_id: id,
            account,
            product,
            side,
            price,
            qty,
        });
        id
    }

    /// Accepts the block and fills it by `plan`, or cancels it when there is none.
    fn fill_block(&mut self, b: &NewBlock, plan: Option<BlockPlan>, out: &mut Vec<Event>) {
        let id = self.accept_block(b, out);
        let Some(plan) = plan else {
            out.push(Event::Cancelled {
                order_id: id,
                account: b.account,
                product: b.product,
                qty: b.qty,
                reason: match b.tif {
                    TimeInForce::FillOrKill => CancelReason::FillOrKill,
                    _ => CancelReason::Unfilled,
                },
            });
            return;
        };
        self.take_plan(id, b, plan, out);
    }

    /// Block `id` takes what `plan` says, hour by hour.
    pub(super) fn take_plan(
        &mut self,
        id: OrderId,
        b: &NewBlock,
        plan: BlockPlan,
        out: &mut Vec<Event>,
    ) {
        if let Some((level, domain)) = plan.placed.clone() {
            out.push(Event::Placed {
                order_id: id,
                level,
                domain,
            });
        }
        // the block's GPUs, one by one in node order: each hour's asks take them in turn
        let gpus: Vec<(u32, u64)> = plan
            .slots
            .iter()
            .flat_map(|&(node, mask)| {
                (0..64)
                    .filter(move |bit| mask & (1u64 << bit) != 0)
                    .map(move |bit| (node, 1u64 << bit))
            })
            .collect();
        for (k, legs) in plan.legs.iter().enumerate() {
            let ch = plan.cluster_hours[k];
            let mut next = 0usize;
            for &(i, price, qty) in legs {
                let mut slots: Vec<Slot> = Vec::new();
                for &(node, bit) in &gpus[next..next + qty as usize] {
                    match slots.last_mut() {
                        Some(s) if s.node == node => s.gpus |= bit,
                        _ => slots.push(Slot { node, gpus: bit }),
                    }
                }
                next += qty as usize;
                self.block_trade(b.account, id, i, price, qty, ch, slots, out);
            }
        }
    }

    /// The asks of `product` a block may take, by cluster-hour, each list in price-time
    /// order: `(slab index, price, quantity, seller)`; the buyer's own are skipped where
    /// they are used (`plan_block`), so one walk serves every buyer.
    pub(super) fn asks_by_cluster_hour(&self, product: ProductHandle) -> AsksByClusterHour {
        let mut by = Vec::new();
        self.each_ask(product, |i, m| {
            by.push((m.cluster_hour, i, m.price, m.remaining, m.account));
        });
        // price-time order (the walk's) within each cluster-hour
        let mut order: Vec<(u32, u32)> = (by.iter().enumerate())
            .map(|(n, a)| (a.0, n as u32))
            .collect();
        order.sort_unstable();
        let by = order.into_iter().map(|(_, n)| by[n as usize]).collect();
        AsksByClusterHour(by)
    }

    /// Every ask of `product` that a block may take, in price-time order, with its slab
    /// index: all but resales (a block's GPUs are unsold ones, the same in every hour).
    pub(super) fn each_ask(&self, product: ProductHandle, mut f: impl FnMut(u32, &RestingOrder)) {
        let book = &self.books[product as usize];
        let mut from: Option<Price> = None;
        while let Some((px, level)) = book.next_level(Side::Sell, from) {
            let mut i = level.head;
            while i != NIL {
                let m = self.slab.get(i);
                if pool_of(m.cluster_hour).is_none() {
                    f(i, m);
                }
                i = m.next;
            }
            from = Some(px + 1);
        }
    }

    /// The cheapest way to fill a block over `products` now, if there is one costing
    /// less than `bound` (see `place_block`), on the clusters `only` names (ascending;
    /// `None`: every cluster). Clusters are
    /// ranked by what their asks would cost; only then are GPUs looked for, cheapest
    /// cluster first, so the work is the asks' lists plus the nodes of the clusters tried.
    pub(super) fn plan_block(
        &self,
        b: &NewBlock,
        products: &[ProductHandle],
        asks: &[&AsksByClusterHour],
        bound: Option<i128>,
        only: Option<&[ClusterHandle]>,
    ) -> Option<BlockPlan> {
        let first = &self.products[products[0] as usize];
        let hours: Vec<i64> = products
            .iter()
            .map(|&p| self.products[p as usize].hour)
            .collect();
        let budget = b.price as i128 * b.qty as i128 * b.hours as i128;
        let g = b.gang.max(1);
        // every cluster whose asks could carry the block, with their cost
        let mut ranked: Vec<Candidate> = Vec::new();
        let all = 0..self.clusters.len() as ClusterHandle;
        let chosen: Box<dyn Iterator<Item = ClusterHandle>> = match only {
            Some(cs) => Box::new(cs.iter().copied()),
            None => Box::new(all),
        };
        for c in chosen {
            let (c, cluster) = (c as usize, &self.clusters[c as usize]);
            if cluster.spec.sku != first.sku
                || cluster.spec.region != first.region
                || !hours.iter().all(|&h| cluster.covers(h))
            {
                continue;
            }
            // asks create their cluster-hour: without one there is nothing to take
            let Some(chs) = hours
                .iter()
                .map(|&h| {
                    self.cluster_hour_index
                        .get(&(c as ClusterHandle, h))
                        .copied()
                })
                .collect::<Option<Vec<u32>>>()
            else {
                continue;
            };
            // what it would cost (no lists built for a cluster that cannot carry it)
            let take = |ch: u32, k: usize, mut f: Box<dyn FnMut(u32, Price, Qty) + '_>| {
                let mut need = b.qty;
                for &(_, i, px, q, seller) in asks[k].get(ch) {
                    if seller == b.account {
                        continue; // never the buyer's own
                    }
                    let take = need.min(q);
                    f(i, px, take);
                    need -= take;
                    if need == 0 {
                        break;
                    }
                }
                need == 0
            };
            let mut cost: i128 = 0;
            let carries = chs
                .iter()
                .enumerate()
                .all(|(k, &ch)| take(ch, k, Box::new(|_, px, q| cost += px as i128 * q as i128)));
            if carries && cost <= budget && bound.is_none_or(|x| cost < x) {
                let legs = (chs.iter().enumerate())
                    .map(|(k, &ch)| {
                        let mut taken = Vec::new();
                        take(ch, k, Box::new(|i, px, q| taken.push((i, px, q))));
                        taken
                    })
                    .collect();
                ranked.push((cost, c, chs, legs));
            }
        }
        ranked.sort_by_key(|r| (r.0, r.1));
        // placement: the levels to try, tightest first, and a colocation's cluster and node
        let near = b.place.near.and_then(|t| self.allocation_by_trade(t));
        // an allocation resold whole since a resting block named it: nowhere to be near
        let near = match near.map(|a| a.slots.first().map(|s| (a.cluster as usize, s.node))) {
            Some(None) => return None,
            other => other.flatten(),
        };
        let first_level = b.place.level.or(near.map(|_| Level::Cluster));
        let levels: Vec<Option<Level>> = match first_level {
            None => vec![None],
            Some(l) if b.place.preferred => std::iter::successors(Some(l), |l| l.up())
                .map(Some)
                .collect(),
            Some(l) => vec![Some(l)],
        };
        let mut commons: Vec<Option<Vec<u64>>> = vec![None; ranked.len()];
        for level in levels {
            for (k, (cost, c, chs, legs)) in ranked.iter().enumerate() {
                if near.is_some_and(|(nc, _)| nc != *c) {
                    continue;
                }
                // the GPUs free in every hour of the block
                let common = commons[k].get_or_insert_with(|| {
                    (0..self.clusters[*c].spec.nodes.len())
                        .map(|n| {
                            chs.iter()
                                .fold(!0u64, |m, &ch| m & self.cluster_hours[ch as usize].free[n])
                        })
                        .collect()
                });
                let near_node = near.map(|(_, n)| n);
                if let Some((slots, domain)) =
                    self.place_gpus(*c, common, g, b.qty, level, near_node)
                {
                    return Some(BlockPlan {
                        cost: *cost,
                        cluster_hours: chs.clone(),
                        legs: legs.clone(),
                        slots,
                        placed: level.map(|l| (l, domain)),
                    });
                }
            }
        }
        None
    }

    /// One leg of a block: the block takes `qty` of the ask in slot `i` at `price`, on
    /// the GPUs `slots` of cluster-hour `ch`.
    #[allow(clippy::too_many_arguments)]
    fn block_trade(
        &mut self,
        buyer: AccountId,
        order: OrderId,
        i: u32,
        price: Price,
        qty: Qty,
        ch: u32,
        slots: Vec<Slot>,
        out: &mut Vec<Event>,
    ) {
        let trade_id = self.next_trade_id;
        self.next_trade_id += 1;
        let hour = self.cluster_hours[ch as usize].hour;
        let seller_block = seller_leg(i).map(|s| self.selling[s]);
        let (sell_order, seller, product) = match seller_block {
            Some(id) => {
                // an auction's sold seller block: this hour's GPUs of it
                let sb = self.seller_blocks.get_mut(&id).expect("it is sold");
                let k = (sb.products.iter())
                    .position(|&p| self.products[p as usize].hour == hour)
                    .expect("it spans the hour");
                sb.left[k] -= qty;
                (id, sb.block.account, sb.products[k])
            }
            None => {
                let m = self.slab.get(i);
                (m.id, m.account, m.product)
            }
        };
        out.push(Event::Trade {
            trade_id,
            product,
            price,
            qty,
            aggressor: Side::Buy,
            maker_order: sell_order,
            maker_account: seller,
            taker_order: order,
            taker_account: buyer,
        });
        let cluster_hour = &mut self.cluster_hours[ch as usize];
        cluster_hour.offered -= qty;
        for s in &slots {
            cluster_hour.take(s.node as usize, s.gpus);
        }
        let allocation = Allocation {
            trade_id,
            product,
            cluster: cluster_hour.cluster,
            hour: cluster_hour.hour,
            buyer,
            seller,
            buy_order: order,
            sell_order,
            price,
            slots,
            parent: None,
            fee: 0,
        };
        self.keep_allocation(allocation, out);
        if seller_block.is_none() {
            self.fill_resting(product, i, qty);
        }
    }
}
