//! Order storage and the per-product book: price levels in priority order, each a FIFO
//! queue of resting orders kept as an intrusive doubly linked list in one slab, so that
//! cancelling from the middle of a queue is O(1) and a level lookup is a binary search.

use crate::capacity::ClusterHandle;
use crate::types::*;

pub(crate) const NIL: u32 = u32::MAX;

/// A resting order as the book holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RestingOrder {
    pub id: OrderId,
    pub account: AccountId,
    pub product: ProductHandle,
    pub side: Side,
    pub price: Price,
    /// Open quantity shown in the book (an iceberg's current clip).
    pub remaining: Qty,
    /// An iceberg's clip: at most this much shows at a time (0: not an iceberg).
    pub clip: Qty,
    /// An iceberg's open quantity not shown yet.
    pub hidden: Qty,
    /// Quantity traded so far.
    pub filled: Qty,
    pub tif: TimeInForce,
    pub post_only: bool,
    pub stp: SelfTradePrevention,
    pub gang: u32,
    pub cluster: Option<ClusterHandle>,
    /// Index of the cluster-hour an ask draws on (`NIL` for bids).
    pub(crate) cluster_hour: u32,
    pub(crate) prev: u32,
    pub(crate) next: u32,
}

impl RestingOrder {
    /// Everything still open: what shows and what an iceberg keeps hidden.
    pub fn open_qty(&self) -> Qty {
        self.remaining + self.hidden
    }
}

/// All resting orders of the engine, addressed by slot.
#[derive(Default, Clone, Debug)]
pub struct Slab {
    pub(crate) slots: Vec<RestingOrder>,
    free: Vec<u32>,
}

impl Slab {
    pub fn insert(&mut self, order: RestingOrder) -> u32 {
        match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = order;
                i
            }
            None => {
                self.slots.push(order);
                (self.slots.len() - 1) as u32
            }
        }
    }

    pub fn release(&mut self, i: u32) {
        self.free.push(i);
    }

    #[inline]
    pub fn get(&self, i: u32) -> &RestingOrder {
        &self.slots[i as usize]
    }

    #[inline]
    pub fn get_mut(&mut self, i: u32) -> &mut RestingOrder {
        &mut self.slots[i as usize]
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    pub(crate) head: u32,
    pub(crate) tail: u32,
    pub total: Qty,
    pub count: u32,
}

/// The price levels of one side, sorted so that the best level is last: bids by
/// ascending price, asks by descending price. Books hold tens to hundreds of levels
/// with activity near the touch, where a sorted vector beats a tree: the best level is
/// one load away and inserting near the end moves little.
#[derive(Clone, Debug)]
pub struct Levels {
    side: Side,
    levels: Vec<(Price, Level)>,
}

impl Levels {
    fn new(side: Side) -> Levels {
        Levels {
            side,
            levels: Vec::new(),
        }
    }

    /// Index where `price` is, or would be inserted.
    fn search(&self, price: Price) -> Result<usize, usize> {
        match self.side {
            Side::Buy => self.levels.binary_search_by(|(p, _)| p.cmp(&price)),
            Side::Sell => self.levels.binary_search_by(|(p, _)| price.cmp(p)),
        }
    }

    fn get_mut(&mut self, price: Price) -> Option<&mut Level> {
        self.search(price).ok().map(|i| &mut self.levels[i].1)
    }

    fn remove(&mut self, price: Price) {
        if let Ok(i) = self.search(price) {
            self.levels.remove(i);
        }
    }

    fn entry(&mut self, price: Price) -> &mut Level {
        let i = match self.search(price) {
            Ok(i) => i,
            Err(i) => {
                self.levels.insert(
                    i,
                    (
                        price,
                        Level {
                            head: NIL,
                            tail: NIL,
                            total: 0,
                            count: 0,
                        },
                    ),
                );
                i
            }
        };
        &mut self.levels[i].1
    }

    /// The level at exactly `price`, if any orders rest there.
    pub fn at(&self, price: Price) -> Option<&Level> {
        self.search(price).ok().map(|i| &self.levels[i].1)
    }

    pub fn best(&self) -> Option<Price> {
        self.levels.last().map(|(p, _)| *p)
    }

    pub fn is_empty(&self) -> bool {
        self.levels.is_empty()
    }

    pub fn len(&self) -> usize {
        self.levels.len()
    }

    /// Levels best first: `(price, level)`.
    pub fn iter(&self) -> impl Iterator<Item = (Price, &Level)> {
        self.levels.iter().rev().map(|(p, l)| (*p, l))
    }

    /// The best level at `from` or worse (`None` = the best level).
    fn at_or_behind(&self, from: Option<Price>) -> Option<(Price, Level)> {
        let end = match from {
            None => self.levels.len(),
            Some(p) => match self.search(p) {
                Ok(i) => i + 1,
                Err(i) => i,
            },
        };
        end.checked_sub(1).map(|i| self.levels[i])
    }
}

/// One product's two sides.
#[derive(Clone, Debug)]
pub struct Book {
    pub bids: Levels,
    pub asks: Levels,
}

impl Default for Book {
    fn default() -> Self {
        Book {
            bids: Levels::new(Side::Buy),
            asks: Levels::new(Side::Sell),
        }
    }
}

impl Book {
    pub fn side(&self, side: Side) -> &Levels {
        match side {
            Side::Buy => &self.bids,
            Side::Sell => &self.asks,
        }
    }

    fn side_mut(&mut self, side: Side) -> &mut Levels {
        match side {
            Side::Buy => &mut self.bids,
            Side::Sell => &mut self.asks,
        }
    }

    pub fn best_bid(&self) -> Option<Price> {
        self.bids.best()
    }

    pub fn best_ask(&self) -> Option<Price> {
        self.asks.best()
    }

    /// Best level of `side` at or behind `from` in priority order (`None` = from the top).
    pub fn next_level(&self, side: Side, from: Option<Price>) -> Option<(Price, Level)> {
        self.side(side).at_or_behind(from)
    }

    /// Appends the order in slot `i` at the back of its price level.
    pub fn push_back(&mut self, slab: &mut Slab, i: u32) {
        let (side, price, qty) = {
            let o = slab.get(i);
            (o.side, o.price, o.remaining)
        };
        let level = self.side_mut(side).entry(price);
        let tail = level.tail;
        {
            let o = slab.get_mut(i);
            o.prev = tail;
            o.next = NIL;
        }
        if tail == NIL {
            level.head = i;
        } else {
            slab.get_mut(tail).next = i;
        }
        level.tail = i;
        level.total += qty;
        level.count += 1;
    }

    /// Takes the order in slot `i` out of its level (the slot itself stays allocated).
    pub fn unlink(&mut self, slab: &mut Slab, i: u32) {
        let (side, price, qty, prev, next) = {
            let o = slab.get(i);
            (o.side, o.price, o.remaining, o.prev, o.next)
        };
        let levels = self.side_mut(side);
        let level = levels
            .get_mut(price)
            .expect("resting order without its level");
        if prev == NIL {
            level.head = next;
        } else {
            slab.get_mut(prev).next = next;
        }
        if next == NIL {
            level.tail = prev;
        } else {
            slab.get_mut(next).prev = prev;
        }
        level.total -= qty;
        level.count -= 1;
        if level.count == 0 {
            levels.remove(price);
        }
    }

    /// Lowers the open quantity of a resting order in place, keeping its priority.
    pub fn reduce(&mut self, slab: &mut Slab, i: u32, by: Qty) {
        let o = slab.get_mut(i);
        o.remaining -= by;
        let (side, price) = (o.side, o.price);
        self.side_mut(side)
            .get_mut(price)
            .expect("resting order without its level")
            .total -= by;
    }

    /// Slots of one side in priority order.
    pub fn orders(&self, slab: &Slab, side: Side) -> Vec<u32> {
        let mut out = Vec::new();
        let mut walk = |level: &Level| {
            let mut i = level.head;
            while i != NIL {
                out.push(i);
                i = slab.get(i).next;
            }
        };
        self.side(side).iter().for_each(|(_, l)| walk(l));
        out
    }
}
