//! Hourly matching: a taker against one product's book in price-time priority, each
//! trade with its allocation, what is left resting (or cancelled); and the fill-or-kill
//! dry run that mirrors the matching loop without changing anything.

use std::cmp::Reverse;

use super::{pool_of, Engine, Taker, MAX_FEE_BPS};
use crate::book::{RestingOrder, NIL};
use crate::capacity::{ClusterHour, ResalePool, Slot};
use crate::command::*;
use crate::types::*;

/// A copy of what an ask draws on, for a fill-or-kill dry run.
enum Stock {
    Hour(ClusterHour),
    Pool(ResalePool),
}

impl Stock {
    fn placeable(&self, gang: u32, max: Qty) -> Qty {
        match self {
            Stock::Hour(c) => c.placeable(gang, max),
            Stock::Pool(p) => p.placeable(gang, max),
        }
    }

    fn allocate(&mut self, gang: u32, qty: Qty) {
        match self {
            Stock::Hour(c) => drop(c.allocate(gang, qty)),
            Stock::Pool(p) => drop(p.allocate(gang, qty)),
        }
    }
}

fn crosses(taker: Side, limit: Price, resting: Price) -> bool {
    match taker {
        Side::Buy => resting <= limit,
        Side::Sell => resting >= limit,
    }
}

impl Engine {
    /// Matches the taker against the book, then rests what is left (or cancels it).
    pub(super) fn match_and_rest(&mut self, t: &mut Taker, out: &mut Vec<Event>) {
        if !self.match_taker(t, out) {
            return;
        }
        if t.remaining == 0 {
            return;
        }
        if !t.tif.rests() {
            out.push(Event::Cancelled {
                order_id: t.id,
                account: t.account,
                product: t.product,
                qty: t.remaining,
                reason: CancelReason::Unfilled,
            });
            return;
        }
        if t.cluster_hour != NIL {
            *self.offered_at(t.cluster_hour) += t.remaining;
        }
        if let TimeInForce::GoodTillTime(at) = t.tif {
            self.expiries.push(Reverse((at, t.id)));
        }
        // an iceberg shows its clip and keeps the rest hidden
        let shown = if t.clip > 0 {
            t.clip.min(t.remaining)
        } else {
            t.remaining
        };
        let i = self.slab.insert(RestingOrder {
            id: t.id,
            account: t.account,
            product: t.product,
            side: t.side,
            price: t.price,
            remaining: shown,
            clip: t.clip,
            hidden: t.remaining - shown,
            filled: t.filled,
            tif: t.tif,
            post_only: t.post_only,
            stp: t.stp,
            gang: t.gang,
            cluster: t.cluster,
            cluster_hour: t.cluster_hour,
            prev: NIL,
            next: NIL,
        });
        self.order_index.insert(t.id, i);
        self.books[t.product as usize].push_back(&mut self.slab, i);
        if t.side == Side::Sell && t.cluster_hour != NIL && pool_of(t.cluster_hour).is_none() {
            // a new or moved ask: the resting blocks of its hour may fill now
            let cluster = self.cluster_hours[t.cluster_hour as usize].cluster;
            self.retry_blocks(t.product, cluster, out);
        }
    }

    /// Takes a resting order out of the book and forgets it, emitting `event(order)`.
    pub(super) fn remove_resting(
        &mut self,
        i: u32,
        out: &mut Vec<Event>,
        event: impl FnOnce(&RestingOrder) -> Event,
    ) {
        let o = self.slab.get(i);
        out.push(event(o));
        let (id, product, ch, remaining) = (o.id, o.product, o.cluster_hour, o.open_qty());
        if ch != NIL {
            *self.offered_at(ch) -= remaining;
        }
        self.books[product as usize].unlink(&mut self.slab, i);
        self.order_index.remove(&id);
        self.slab.release(i);
    }

    /// The matching loop. Returns false when self-trade prevention cancelled the taker.
    fn match_taker(&mut self, t: &mut Taker, out: &mut Vec<Event>) -> bool {
        if t.side == Side::Buy && t.gang > 1 {
            // the asks of one cluster-hour may together supply a gang (see `gangs`)
            return self.match_gang_bid(t, out);
        }
        let book_side = t.side.opposite();
        let mut from: Option<Price> = None;
        'levels: while t.remaining > 0 {
            let Some((px, level)) = self.books[t.product as usize].next_level(book_side, from)
            else {
                break;
            };
            if !crosses(t.side, t.price, px) {
                break;
            }
            let mut i = level.head;
            // an iceberg refilled in this pass shows again at the back of this level
            let mut refilled = false;
            while i != NIL {
                let m = self.slab.get(i);
                let (next, m_account, m_remaining, m_cluster_hour, m_gang) =
                    (m.next, m.account, m.remaining, m.cluster_hour, m.gang);
                let refills = m.hidden > 0;
                if m_account == t.account {
                    let cancel_resting = t.stp != SelfTradePrevention::CancelNewest;
                    let cancel_taker = t.stp != SelfTradePrevention::CancelOldest;
                    if cancel_resting {
                        self.remove_resting(i, out, |o| Event::Cancelled {
                            order_id: o.id,
                            account: o.account,
                            product: o.product,
                            qty: o.open_qty(),
                            reason: CancelReason::SelfTrade,
                        });
                    }
                    if cancel_taker {
                        out.push(Event::Cancelled {
                            order_id: t.id,
                            account: t.account,
                            product: t.product,
                            qty: t.remaining,
                            reason: CancelReason::SelfTrade,
                        });
                        t.remaining = 0;
                        return false;
                    }
                    i = next;
                    continue;
                }
                let want = t.remaining.min(m_remaining);
                let (ch, gang) = match t.side {
                    Side::Buy => (m_cluster_hour, t.gang),
                    Side::Sell => (t.cluster_hour, m_gang),
                };
                let qty = if gang == 1 {
                    want
                } else {
                    self.placeable_at(ch, gang, want)
                };
                if qty > 0 {
                    self.trade(t, i, px, qty, ch, gang, out);
                    if t.remaining == 0 {
                        break 'levels;
                    }
                    refilled |= refills && qty == m_remaining;
                }
                i = next;
            }
            if refilled {
                continue 'levels; // the same level again, from its head
            }
            from = Some(match book_side {
                Side::Buy => px - 1,
                Side::Sell => px + 1,
            });
        }
        true
    }

    /// One fill between the taker and the resting order in slot `i`, with its allocation.
    #[allow(clippy::too_many_arguments)]
    fn trade(
        &mut self,
        t: &mut Taker,
        i: u32,
        price: Price,
        qty: Qty,
        ch: u32,
        gang: u32,
        out: &mut Vec<Event>,
    ) {
        let slots = self.allocate_at(ch, gang, qty);
        self.trade_slots(t, i, price, qty, ch, slots, out);
    }

    /// Places `qty` GPUs in whole gangs of `gang` on what `ch` names: a cluster-hour's
    /// free GPUs or a resale pool's.
    pub(super) fn allocate_at(&mut self, ch: u32, gang: u32, qty: Qty) -> Vec<Slot> {
        match pool_of(ch) {
            None => self.cluster_hours[ch as usize].allocate(gang, qty),
            Some(p) => self.pools[p].allocate(gang, qty),
        }
    }

    /// One fill between the taker and the resting order in slot `i`, on the GPUs `slots`
    /// (already placed) of `ch`, with its allocation.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn trade_slots(
        &mut self,
        t: &mut Taker,
        i: u32,
        price: Price,
        qty: Qty,
        ch: u32,
        slots: Vec<Slot>,
        out: &mut Vec<Event>,
    ) {
        let trade_id = self.next_trade_id;
        self.next_trade_id += 1;
        let (maker_order, maker_account, product) = {
            let m = self.slab.get(i);
            (m.id, m.account, m.product)
        };
        out.push(Event::Trade {
            trade_id,
            product,
            price,
            qty,
            aggressor: t.side,
            maker_order,
            maker_account,
            taker_order: t.id,
            taker_account: t.account,
        });
        if t.side == Side::Buy {
            // the maker is the ask: its reservation turns into sold GPUs
            *self.offered_at(ch) -= qty;
        }
        let (buyer, seller, buy_order, sell_order) = match t.side {
            Side::Buy => (t.account, maker_account, t.id, maker_order),
            Side::Sell => (maker_account, t.account, maker_order, t.id),
        };
        let mut allocation = Allocation {
            trade_id,
            product,
            cluster: 0,
            hour: 0,
            buyer,
            seller,
            buy_order,
            sell_order,
            price,
            slots,
            parent: None,
            fee: 0,
        };
        match pool_of(ch) {
            None => {
                let cluster_hour = &self.cluster_hours[ch as usize];
                allocation.cluster = cluster_hour.cluster;
                allocation.hour = cluster_hour.hour;
            }
            Some(p) => {
                // a resale: the GPUs leave the allocation they came from
                let pool = &self.pools[p];
                allocation.cluster = pool.cluster;
                allocation.hour = pool.hour;
                let value = price as i128 * qty as i128 * pool.fee_bps as i128;
                allocation.fee = (value / MAX_FEE_BPS as i128) as Price;
                let parent = &mut self.allocations[pool.parent as usize];
                allocation.parent = Some(parent.trade_id);
                for s in &allocation.slots {
                    let held = parent.slots.iter_mut().find(|x| x.node == s.node);
                    let held = held.expect("a pool's GPUs are its allocation's");
                    debug_assert_eq!(held.gpus & s.gpus, s.gpus);
                    held.gpus &= !s.gpus;
                }
                parent.slots.retain(|x| x.gpus != 0);
            }
        }
        self.keep_allocation(allocation, out);

        t.remaining -= qty;
        t.filled += qty;
        self.fill_resting(product, i, qty);
    }

    /// Keeps a trade's allocation, indexed for its accounts, and says so.
    pub(super) fn keep_allocation(&mut self, allocation: Allocation, out: &mut Vec<Event>) {
        let n = self.allocations.len() as u32;
        self.allocations.push(allocation);
        self.index_allocation(n);
        out.push(Event::Allocated { allocation: n });
    }

    /// Indexes allocation `n` for its buyer, its seller and, when they differ (a resale),
    /// the cluster's owner, whose schedule follows the GPUs to their new holder.
    pub(super) fn index_allocation(&mut self, n: u32) {
        let a = &self.allocations[n as usize];
        let owner = self.clusters[a.cluster as usize].seller;
        let mut accounts = [a.buyer, a.seller, owner];
        accounts.sort_unstable();
        for (k, &account) in accounts.iter().enumerate() {
            if k == 0 || accounts[k - 1] != account {
                self.allocations_by_account
                    .entry(account)
                    .or_default()
                    .push(n);
            }
        }
    }

    /// The resting order in slot `i` of `product`'s book traded `qty`: it leaves the book
    /// once nothing remains.
    pub(super) fn fill_resting(&mut self, product: ProductHandle, i: u32, qty: Qty) {
        let book = &mut self.books[product as usize];
        book.reduce(&mut self.slab, i, qty);
        let m = self.slab.get_mut(i);
        m.filled += qty;
        if m.remaining == 0 && m.hidden > 0 {
            // an iceberg's next clip shows, behind every order already at its price: more
            // than was left may be offered, with no ask arriving
            self.side.changed();
            let m = self.slab.get_mut(i);
            let next = m.clip.min(m.hidden);
            m.hidden -= next;
            book.unlink(&mut self.slab, i);
            self.slab.get_mut(i).remaining = next;
            book.push_back(&mut self.slab, i);
        } else if m.remaining == 0 {
            let id = m.id;
            book.unlink(&mut self.slab, i);
            self.order_index.remove(&id);
            self.slab.release(i);
        }
    }

    /// Dry run of `match_taker` for fill-or-kill: could the taker fill completely now?
    /// Mirrors the matching loop without changing anything; placement is simulated on
    /// private copies of the cluster-hours it would draw on. A gang bid's dry run is its
    /// plan (`gangs`), the very walk it would take.
    pub(super) fn fills_completely(&self, t: &Taker) -> bool {
        self.fills_at_least(t, t.remaining)
    }

    /// As `fills_completely`, for `need` of the taker's quantity.
    pub(super) fn fills_at_least(&self, t: &Taker, need: Qty) -> bool {
        if t.side == Side::Buy && t.gang > 1 {
            return self.gang_bid_fills(t, need);
        }
        let book = &self.books[t.product as usize];
        let book_side = t.side.opposite();
        let mut need = need;
        // Asks draw on one cluster-hour for bids of any gang: simulate on a copy, made
        // when the first gang bid is met; single-GPU fills before that are replayed.
        let mut copy: Option<Stock> = None;
        let mut singles: Qty = 0;
        let mut from: Option<Price> = None;
        while let Some((px, level)) = book.next_level(book_side, from) {
            if !crosses(t.side, t.price, px) {
                break;
            }
            let mut i = level.head;
            while i != NIL {
                let m = self.slab.get(i);
                i = m.next;
                if m.account == t.account {
                    if t.stp == SelfTradePrevention::CancelOldest {
                        continue;
                    }
                    return false;
                }
                // an iceberg: each clip as it would show, while the last was taken whole
                let (mut shown, mut hidden) = (m.remaining, m.hidden);
                loop {
                    let want = need.min(shown);
                    let qty = match t.side {
                        // a gang bid is planned by `gangs`, above
                        Side::Buy => want,
                        Side::Sell => match (&mut copy, m.gang) {
                            (None, 1) => {
                                singles += want;
                                want
                            }
                            (slot, gang) => {
                                let ch = slot.get_or_insert_with(|| {
                                    // the ask's cluster-hour, or a fresh one (all its
                                    // GPUs free) for an ask that would create it
                                    let mut c = match (t.cluster_hour, t.cluster) {
                                        (NIL, Some(cl)) => Stock::Hour(ClusterHour::new(
                                            cl,
                                            self.products[t.product as usize].hour,
                                            &self.clusters[cl as usize],
                                        )),
                                        (i, _) => match pool_of(i) {
                                            Some(p) => Stock::Pool(self.pools[p].clone()),
                                            None => {
                                                Stock::Hour(self.cluster_hours[i as usize].clone())
                                            }
                                        },
                                    };
                                    c.allocate(1, singles);
                                    c
                                });
                                let q = ch.placeable(gang, want);
                                ch.allocate(gang, q);
                                q
                            }
                        },
                    };
                    need -= qty;
                    if need == 0 {
                        return true;
                    }
                    if qty < shown || hidden == 0 {
                        break;
                    }
                    shown = m.clip.min(hidden);
                    hidden -= shown;
                }
            }
            from = Some(match book_side {
                Side::Buy => px - 1,
                Side::Sell => px + 1,
            });
        }
        false
    }
}
