//! A gang bid against the asks. The asks of one cluster-hour, taken in price-time order,
//! may together supply a gang: an ask too small for a whole gang is not lost to the bid
//! but waits for the next ask of its cluster-hour; a gang is filled as soon as, walking
//! the asks in price-time order, the asks met so far on one cluster-hour hold it and the
//! cluster-hour can place it on one node. Each ask trades at its own price (the resting
//! order's price), one trade per ask, and the allocator places the whole gangs on nodes
//! and hands their GPUs to the asks in turn, so a gang's GPUs share one node even when
//! two trades name them. An ask that cannot (yet) contribute to a gang is passed over and
//! keeps its priority.
//!
//! The walk is planned first, on a copy of the asks it meets (level by level, only as far
//! as it goes), then carried out; the fill-or-kill dry run uses the same plan, so the two
//! never disagree.

use rustc_hash::FxHashMap;

use super::{Engine, Taker};
use crate::capacity::Slot;
use crate::command::*;
use crate::types::*;

/// What the gang bid does, in order.
pub(super) enum Step {
    /// Self-trade prevention takes the resting ask in this slot out.
    CancelResting(u32),
    /// Self-trade prevention cancels the bid; nothing follows.
    CancelTaker,
    /// Whole gangs on cluster-hour `ch` from these asks: `(slab index, price, quantity)`,
    /// in price-time order.
    Fill {
        ch: u32,
        parts: Vec<(u32, Price, Qty)>,
    },
}

/// An ask as the planned walk sees it.
struct Seen {
    i: u32,
    price: Price,
    account: AccountId,
    ch: u32,
    shown: Qty,
    hidden: Qty,
    clip: Qty,
    /// Waiting, with its whole `shown`, in its cluster-hour's list.
    pending: bool,
}

/// Per cluster-hour, the asks waiting for a gang: their GPUs in all and the asks (indices
/// into the walk's asks), in price-time order.
type Pending = FxHashMap<u32, (Qty, Vec<usize>)>;

impl Engine {
    /// The steps of a gang bid (`t.gang > 1`) against the asks, until `need` of it fills,
    /// the asks within its limit run out, or self-trade prevention cancels it.
    ///
    /// Determinism: the asks are met in price-time order; the maps are looked up by
    /// cluster-hour, never iterated. A refilled iceberg goes to the back of its level, as
    /// `fill_resting` puts it, and the walk goes on from the front of that level with the
    /// asks waiting there and behind it forgotten (they are met again, in their order).
    pub(super) fn plan_gang_bid(&self, t: &Taker, need: Qty) -> Vec<Step> {
        let g = t.gang as Qty;
        let book = &self.books[t.product as usize];
        let mut steps = Vec::new();
        let mut asks: Vec<Seen> = Vec::new();
        // the walk's order: indices into `asks`, whole levels, best price first
        let mut order: Vec<usize> = Vec::new();
        let mut from: Option<Price> = None;
        let mut gangs_left: FxHashMap<u32, Qty> = FxHashMap::default();
        let mut pending: Pending = FxHashMap::default();
        let (mut need, mut pos) = (need, 0usize);
        while need > 0 {
            if pos == order.len() {
                // the next level within the limit, whole
                let next = book.next_level(Side::Sell, from);
                let Some((px, level)) = next.filter(|(px, _)| *px <= t.price) else {
                    break;
                };
                let mut i = level.head;
                while i != crate::book::NIL {
                    let m = self.slab.get(i);
                    order.push(asks.len());
                    asks.push(Seen {
                        i,
                        price: m.price,
                        account: m.account,
                        ch: m.cluster_hour,
                        shown: m.remaining,
                        hidden: m.hidden,
                        clip: m.clip,
                        pending: false,
                    });
                    i = m.next;
                }
                from = Some(px + 1);
                continue;
            }
            let k = order[pos];
            if asks[k].shown == 0 {
                pos += 1; // taken, or cancelled by self-trade prevention
                continue;
            }
            if asks[k].account == t.account {
                if t.stp != SelfTradePrevention::CancelNewest {
                    steps.push(Step::CancelResting(asks[k].i));
                    (asks[k].shown, asks[k].hidden) = (0, 0);
                }
                if t.stp != SelfTradePrevention::CancelOldest {
                    steps.push(Step::CancelTaker);
                    break;
                }
                pos += 1;
                continue;
            }
            let ch = asks[k].ch;
            let left = *gangs_left
                .entry(ch)
                .or_insert_with(|| self.placeable_at(ch, t.gang, Qty::MAX) / g);
            let (waiting, list) = pending.entry(ch).or_default();
            let gangs = (need.min(*waiting + asks[k].shown) / g).min(left);
            if gangs == 0 {
                if left > 0 {
                    // it may yet complete a gang with the next ask of its cluster-hour
                    *waiting += asks[k].shown;
                    list.push(k);
                    asks[k].pending = true;
                }
                pos += 1;
                continue;
            }
            // the waiting asks and this one, in price-time order, give the gangs
            list.push(k);
            asks[k].pending = true;
            let mut q = gangs * g;
            let (mut parts, mut kept, mut refills) = (Vec::new(), Vec::new(), Vec::new());
            for &p in list.iter() {
                let a = &mut asks[p];
                let take = a.shown.min(q);
                if take > 0 {
                    parts.push((a.i, a.price, take));
                    a.shown -= take;
                    q -= take;
                }
                if a.shown > 0 {
                    kept.push(p);
                } else {
                    a.pending = false;
                    if a.hidden > 0 {
                        refills.push(p);
                    }
                }
            }
            *waiting = kept.iter().map(|&p| asks[p].shown).sum();
            *list = kept;
            *gangs_left.get_mut(&ch).expect("looked up above") -= gangs;
            need -= gangs * g;
            steps.push(Step::Fill { ch, parts });
            if refills.is_empty() {
                pos += 1;
                continue;
            }
            // an iceberg's next clip shows at the back of its level: go on from the front
            // of the best such level, as if the walk had started again
            let mut restart = Price::MAX;
            for p in refills {
                let a = &mut asks[p];
                let shown = a.clip.min(a.hidden);
                (a.shown, a.hidden) = (shown, a.hidden - shown);
                let price = a.price;
                restart = restart.min(price);
                let at = order.iter().position(|&x| x == p).expect("in the walk");
                order.remove(at);
                let back = order.partition_point(|&x| asks[x].price <= price);
                order.insert(back, p);
            }
            pos = order.partition_point(|&x| asks[x].price < restart);
            let mut again: Vec<u32> = Vec::new();
            for &x in &order[pos..] {
                if asks[x].pending && !again.contains(&asks[x].ch) {
                    again.push(asks[x].ch);
                }
            }
            for c in again {
                let (waiting, list) = pending.get_mut(&c).expect("an ask waits there");
                while let Some(&last) = list.last() {
                    if asks[last].price < restart {
                        break;
                    }
                    list.pop();
                    asks[last].pending = false;
                    *waiting -= asks[last].shown;
                }
            }
        }
        steps
    }

    /// Matches a gang bid by its plan. Returns false when self-trade prevention
    /// cancelled it.
    pub(super) fn match_gang_bid(&mut self, t: &mut Taker, out: &mut Vec<Event>) -> bool {
        for step in self.plan_gang_bid(t, t.remaining) {
            match step {
                Step::CancelResting(i) => self.remove_resting(i, out, |o| Event::Cancelled {
                    order_id: o.id,
                    account: o.account,
                    product: o.product,
                    qty: o.open_qty(),
                    reason: CancelReason::SelfTrade,
                }),
                Step::CancelTaker => {
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
                Step::Fill { ch, parts } => {
                    let total = parts.iter().map(|p| p.2).sum();
                    // whole gangs, each on one node; their GPUs one by one in node order,
                    // each ask taking its share in turn
                    let slots = self.allocate_at(ch, t.gang, total);
                    let mut gpus = slots.iter().flat_map(|s| {
                        (0..64)
                            .filter(move |b| s.gpus & (1u64 << b) != 0)
                            .map(move |b| (s.node, 1u64 << b))
                    });
                    let mut shares = Vec::with_capacity(parts.len());
                    for &(_, _, qty) in &parts {
                        let mut mine: Vec<Slot> = Vec::new();
                        for (node, bit) in gpus.by_ref().take(qty as usize) {
                            match mine.last_mut() {
                                Some(s) if s.node == node => s.gpus |= bit,
                                _ => mine.push(Slot { node, gpus: bit }),
                            }
                        }
                        shares.push(mine);
                    }
                    for ((i, price, qty), mine) in parts.into_iter().zip(shares) {
                        self.trade_slots(t, i, price, qty, ch, mine, out);
                    }
                }
            }
        }
        true
    }

    /// Whether the gang bid `t` could fill `need` now (the fill-or-kill dry run).
    pub(super) fn gang_bid_fills(&self, t: &Taker, need: Qty) -> bool {
        let filled: Qty = self
            .plan_gang_bid(t, need)
            .iter()
            .map(|s| match s {
                Step::Fill { parts, .. } => parts.iter().map(|p| p.2).sum(),
                _ => 0,
            })
            .sum();
        filled >= need
    }
}
