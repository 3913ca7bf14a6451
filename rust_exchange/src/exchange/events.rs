//! From the engine's events to order records: accepted, filled, ended; the levels they
//! touched; and ended records leaving memory past `keep_ended`.

use std::collections::BTreeMap;

use rustc_hash::{FxHashMap, FxHashSet};
use spotex_core::{Event, ProductHandle, Side};

use crate::pb;
use crate::records::{side_to_pb, FillRecord, OrderRecord, OrderState};

use super::{Exchange, Pending};

impl Exchange {
    /// The records that left memory since the last call, in the order they left: for the
    /// caller to keep on disk, where queries still find them.
    pub fn take_left(&mut self) -> Vec<OrderRecord> {
        std::mem::take(&mut self.left)
    }

    /// Ended orders beyond `keep_ended` leave memory, oldest ending first. Runs before
    /// each command, so a command's own answer always finds its records.
    pub(super) fn let_go(&mut self) {
        while self.ended.len() > self.keep_ended {
            let Some(id) = self.ended.pop_front() else {
                break;
            };
            if let Some(rec) = self.orders.remove(&id) {
                let key = (rec.account, rec.client_order_id.clone());
                if self.by_client_id.get(&key) == Some(&id) {
                    self.by_client_id.remove(&key);
                }
                self.left.push(rec);
            }
        }
    }

    /// Turns the engine's events into records, executions and market-data deltas.
    pub(super) fn absorb(
        &mut self,
        events: &[Event],
        ts: i64,
        mut pending: Option<Pending>,
    ) -> Option<u64> {
        let mut accepted = None;
        // the first hour each block traded in: an arriving ask may fill several resting
        // blocks in one command
        let mut block_hour: FxHashMap<u64, ProductHandle> = FxHashMap::default();
        // the allocations of each block that filled here, by order id
        let mut blocks: BTreeMap<u64, Vec<u32>> = BTreeMap::new();
        // levels the events may have changed, in the order first touched
        let mut touched: Vec<(ProductHandle, Side, i64)> = Vec::new();
        let mut seen: FxHashSet<(ProductHandle, Side, i64)> = FxHashSet::default();
        let mut touch = |key: (ProductHandle, Side, i64)| {
            if seen.insert(key) {
                touched.push(key);
            }
        };
        for e in events {
            match e {
                Event::Chosen {
                    alternative,
                    order_id,
                    block,
                } => match pending.as_mut() {
                    Some(p) if !p.alternatives.is_empty() => {
                        let (record, product) = p.alternatives[*alternative as usize].clone();
                        p.record = record;
                        p.product = product;
                        // chosen on entry: it holds as the alternative it became
                        p.alternatives.clear();
                    }
                    _ => {
                        // a resting group fills from the side book: its order becomes the
                        // alternative that fills
                        let product = self.engine.products()[block.product as usize]
                            .spec
                            .id
                            .clone();
                        let rec = self.orders.get_mut(order_id).expect("a record per order");
                        rec.product = product;
                        rec.price = block.price;
                        rec.quantity = block.qty;
                        rec.remaining = block.qty;
                        rec.gang = block.gang;
                        rec.hours = block.hours;
                        rec.window = block.window;
                        self.group_chosen(*order_id);
                    }
                },
                Event::Accepted { order_id, .. } => {
                    let Pending {
                        mut record,
                        product,
                        mut rest,
                        alternatives,
                    } = pending.take().expect("an accepted order was pending");
                    if !alternatives.is_empty() {
                        // a group resting unchosen holds its dearest alternative
                        let need = alternatives
                            .iter()
                            .map(|(r, p)| self.entry_need(r, *p))
                            .max()
                            .unwrap_or(0);
                        self.hold_group(*order_id, need);
                    }
                    self.ledger.touched.push(*order_id);
                    if let Some(mut next) = rest.pop() {
                        next.rest = rest;
                        pending = Some(next);
                    }
                    record.order_id = *order_id;
                    touch((product, record.side, record.price));
                    *self.open_orders.entry(record.account).or_default() += 1;
                    if !record.client_order_id.is_empty() {
                        self.by_client_id
                            .insert((record.account, record.client_order_id.clone()), *order_id);
                    }
                    let account = record.account;
                    self.orders.insert(*order_id, record);
                    self.execution(account, "accepted", Some(*order_id), None, None);
                    accepted = Some(*order_id);
                }
                Event::Trade {
                    trade_id,
                    product,
                    price,
                    qty,
                    aggressor,
                    maker_order,
                    taker_order,
                    ..
                } => {
                    let (buyer_fee, seller_fee) =
                        self.settle_trade(ts, *trade_id, *maker_order, *taker_order, *price, *qty);
                    let maker = &self.orders[maker_order];
                    touch((*product, maker.side, maker.price));
                    // a block (always the taker: it takes asks, on entry or from the side
                    // book) names each fill's hour
                    let taker = &self.orders[taker_order];
                    let product_id = if taker.hours > 1 || taker.window > 0 {
                        self.engine.products()[*product as usize].spec.id.clone()
                    } else {
                        String::new()
                    };
                    // a seller block (a maker of several hours) names each fill's hour too
                    let hour_id = self.engine.products()[*product as usize].spec.id.clone();
                    for (oid, is_maker) in [(*maker_order, true), (*taker_order, false)] {
                        let rec = self.orders.get_mut(&oid).expect("a record per order");
                        let fee = if rec.side == Side::Buy {
                            buyer_fee
                        } else {
                            seller_fee
                        };
                        if is_maker && rec.hours > 1 {
                            let fill = FillRecord {
                                trade_id: *trade_id,
                                price: *price,
                                qty: *qty,
                                maker: true,
                                ts,
                                product: hour_id.clone(),
                                fee,
                                auction: self.clearing.unwrap_or(0),
                            };
                            rec.fills.push(fill.clone());
                            // its first hour counts its GPUs; the others are the same
                            if hour_id == rec.product {
                                rec.filled += qty;
                                rec.remaining -= qty;
                                rec.state = if rec.remaining == 0 {
                                    OrderState::Filled
                                } else {
                                    OrderState::PartiallyFilled
                                };
                            }
                            let account = rec.account;
                            if rec.remaining == 0 && hour_id == rec.product {
                                self.close_one(account, oid);
                            }
                            self.execution(account, "trade", Some(oid), Some(fill), None);
                            continue;
                        }
                        let block = !is_maker && !product_id.is_empty();
                        let fill = FillRecord {
                            trade_id: *trade_id,
                            price: *price,
                            qty: *qty,
                            maker: is_maker,
                            ts,
                            product: if block {
                                product_id.clone()
                            } else {
                                String::new()
                            },
                            fee,
                            auction: self.clearing.unwrap_or(0),
                        };
                        rec.fills.push(fill.clone());
                        // a block's legs come hour by hour: its first hour counts the GPUs
                        let first = *block_hour.entry(oid).or_insert(*product);
                        if block && first != *product {
                            // a later hour of a block: the same GPUs again, counted once
                            let account = rec.account;
                            self.execution(account, "trade", Some(oid), Some(fill), None);
                            continue;
                        }
                        rec.filled += qty;
                        rec.remaining -= qty;
                        rec.state = if rec.remaining == 0 {
                            OrderState::Filled
                        } else {
                            OrderState::PartiallyFilled
                        };
                        let account = rec.account;
                        if rec.remaining == 0 {
                            self.close_one(account, oid);
                        }
                        self.execution(account, "trade", Some(oid), Some(fill), None);
                    }
                    if self.clearing.is_some() {
                        *self.cleared.volume.entry(*product).or_default() += *qty;
                    }
                    if !self.replaying {
                        let t = self.traded.entry(*product).or_default();
                        t.trades += 1;
                        t.gpu_hours += *qty;
                        t.notional_micros += i128::from(*price) * i128::from(*qty);
                    }
                    let trade = pb::Trade {
                        trade_id: *trade_id,
                        price_micros: *price,
                        quantity: *qty,
                        aggressor: side_to_pb(*aggressor) as i32,
                        time_micros: ts,
                        auction_id: self.clearing.unwrap_or(0),
                    };
                    self.market(*product, pb::market_data::Payload::Trade(trade));
                }
                Event::Allocated { allocation } => {
                    let a = self.engine.allocations()[*allocation as usize].clone();
                    let rec = &self.orders[&a.buy_order];
                    if rec.hours > 1 || rec.window > 0 {
                        blocks.entry(a.buy_order).or_default().push(*allocation);
                    }
                    if a.fee != 0 {
                        // a resale's fee, on its seller's fill
                        let rec = self.orders.get_mut(&a.sell_order).expect("a record");
                        if let Some(f) = rec.fills.iter_mut().rfind(|f| f.trade_id == a.trade_id) {
                            f.fee = a.fee;
                        }
                    }
                    self.execution(a.buyer, "allocated", Some(a.buy_order), None, Some(&a));
                    if a.seller != a.buyer {
                        self.execution(a.seller, "allocated", Some(a.sell_order), None, Some(&a));
                    }
                    // a resale: the cluster's owner provisions the GPUs for their new holder
                    let owner = self.engine.clusters()[a.cluster as usize].seller;
                    if owner != a.buyer && owner != a.seller {
                        self.execution(owner, "allocated", None, None, Some(&a));
                    }
                }
                Event::Cancelled {
                    order_id,
                    product,
                    reason,
                    ..
                } => {
                    let side = self.end(*order_id, OrderState::Cancelled, reason.as_str());
                    touch((*product, side.0, side.1));
                }
                Event::Expired {
                    order_id,
                    product,
                    reason,
                    ..
                } => {
                    let side = self.end(*order_id, OrderState::Expired, reason.as_str());
                    touch((*product, side.0, side.1));
                }
                Event::Amended {
                    order_id,
                    product,
                    price,
                    qty,
                    ..
                } => {
                    self.ledger.touched.push(*order_id);
                    let rec = self.orders.get_mut(order_id).expect("a record per order");
                    touch((*product, rec.side, rec.price));
                    touch((*product, rec.side, *price));
                    rec.price = *price;
                    rec.remaining = *qty;
                    rec.quantity = rec.filled + qty;
                    let account = rec.account;
                    self.execution(account, "amended", Some(*order_id), None, None);
                }
                Event::ProductState { product, state } => {
                    let state = state.as_str().to_string();
                    self.market(*product, pb::market_data::Payload::State(state));
                }
                Event::Placed {
                    order_id,
                    level,
                    domain,
                } => {
                    let rec = self.orders.get_mut(order_id).expect("a record per order");
                    rec.placed = Some((*level, domain.clone()));
                }
                Event::AuctionCleared {
                    filled, dropped, ..
                } => {
                    self.cleared.filled = filled.clone();
                    self.cleared.dropped = dropped.clone();
                }
                Event::ProductCreated { .. }
                | Event::CapacityRegistered { .. }
                | Event::CapacityWithdrawn { .. }
                | Event::Rejected { .. } => {}
            }
        }
        // each block filled in this command, in one record after its trades
        for (order_id, allocations) in blocks {
            let block = self.block_allocation(order_id, &allocations);
            let account = self.orders[&order_id].account;
            self.send_execution(
                account,
                "block_allocated",
                Some(order_id),
                None,
                None,
                Some(block),
            );
        }
        for (product, side, price) in touched {
            let level = self.engine.level(product, side, price);
            let known = self.levels.entry((product, side)).or_default();
            if known.get(&price).copied().unwrap_or((0, 0)) != level {
                if level.0 != 0 {
                    known.insert(price, level);
                } else {
                    known.remove(&price);
                }
                let update = pb::LevelUpdate {
                    side: side_to_pb(side) as i32,
                    price_micros: price,
                    quantity: level.0,
                    orders: level.1,
                };
                self.market(product, pb::market_data::Payload::Level(update));
            }
        }
        // every order these events touched holds what it needs now
        self.settle_holds();
        accepted
    }

    /// An order's end (cancelled or expired); returns its side and price, whose level
    /// changed.
    fn end(&mut self, order_id: u64, state: OrderState, reason: &'static str) -> (Side, i64) {
        self.ledger.touched.push(order_id);
        let rec = self.orders.get_mut(&order_id).expect("a record per order");
        rec.remaining = 0;
        rec.state = state;
        rec.reason = reason.to_string();
        let (account, level) = (rec.account, (rec.side, rec.price));
        self.close_one(account, order_id);
        let kind = match state {
            OrderState::Expired => "expired",
            _ => "cancelled",
        };
        self.execution(account, kind, Some(order_id), None, None);
        level
    }

    /// An order ended: one open order fewer for its account, one more ended record.
    fn close_one(&mut self, account: u64, order_id: u64) {
        self.ended.push_back(order_id);
        if let Some(n) = self.open_orders.get_mut(&account) {
            *n = n.saturating_sub(1);
        }
    }
}
