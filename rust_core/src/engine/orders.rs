//! Orders on entry: validation before anything changes, then plain orders, icebergs,
//! minimum-fill bids and linked baskets, each accepted and handed to matching.

use super::{Engine, Taker, MAX_BASKET_LEGS};
use crate::book::NIL;
use crate::capacity::MAX_GPUS_PER_NODE;
use crate::command::*;
use crate::product::Product;
use crate::reject::Reject;
use crate::types::*;

impl Engine {
    pub(super) fn check_price(&self, p: &Product, price: Price) -> Result<(), Reject> {
        if price <= 0 {
            Err(Reject::NonPositivePrice)
        } else if price > MAX_PRICE {
            Err(Reject::PriceTooHigh)
        } else if price % p.spec.tick != 0 {
            Err(Reject::PriceOffTick)
        } else {
            Ok(())
        }
    }

    pub(super) fn check_qty(&self, p: &Product, qty: Qty, gang: u32) -> Result<(), Reject> {
        if qty <= 0 {
            Err(Reject::NonPositiveQuantity)
        } else if qty > MAX_QTY {
            Err(Reject::QuantityTooLarge)
        } else if p.spec.lot != 1 && qty % p.spec.lot != 0 {
            Err(Reject::QuantityOffLot)
        } else if qty & (gang as Qty - 1) != 0 {
            // gangs are powers of two (checked before)
            Err(Reject::QuantityOffGang)
        } else {
            Ok(())
        }
    }

    pub(super) fn would_cross(&self, product: ProductHandle, side: Side, price: Price) -> bool {
        let book = &self.books[product as usize];
        match side {
            Side::Buy => book.best_ask().is_some_and(|a| a <= price),
            Side::Sell => book.best_bid().is_some_and(|b| b >= price),
        }
    }

    /// Validates a new order completely before anything changes.
    pub(super) fn validate(&self, o: &NewOrder) -> Result<(), Reject> {
        self.validate_as(o, false)
    }

    /// As `validate`; a resale ask (`resale`) offers GPUs already sold, so neither the
    /// cluster's owner nor its unsold capacity is checked (`place_resale` checks its own).
    pub(super) fn validate_as(&self, o: &NewOrder, resale: bool) -> Result<(), Reject> {
        self.validate_in(o, resale, false)
    }

    /// As `validate_as`; an auction bid (`auction`) may also rest in an hour held for
    /// its auction, where every other bid is refused.
    pub(super) fn validate_in(
        &self,
        o: &NewOrder,
        resale: bool,
        auction: bool,
    ) -> Result<(), Reject> {
        let p = self.product(o.product)?;
        let held = p.state == ProductState::Auction;
        if held && o.side == Side::Buy && !auction {
            return Err(Reject::AuctionFirst);
        }
        match p.state {
            ProductState::Closed => return Err(Reject::ProductClosed),
            ProductState::Halted => return Err(Reject::ProductHalted),
            ProductState::Open | ProductState::Auction if self.now < p.spec.open_at => {
                return Err(Reject::ProductNotOpen)
            }
            ProductState::Open | ProductState::Auction => {}
        }
        self.check_price(p, o.price)?;
        if !o.gang.is_power_of_two()
            || o.gang > MAX_GPUS_PER_NODE
            || (o.side == Side::Sell && o.gang != 1)
        {
            return Err(Reject::InvalidGang);
        }
        self.check_qty(p, o.qty, o.gang)?;
        let tif_ok = match o.order_type {
            OrderType::Market => !o.tif.rests() && !o.post_only,
            OrderType::Limit => !o.post_only || o.tif.rests(),
        };
        if !tif_ok {
            return Err(Reject::InvalidTimeInForce);
        }
        if let TimeInForce::GoodTillTime(t) = o.tif {
            if t <= self.now {
                return Err(Reject::InvalidExpiry);
            }
        }
        match (o.side, o.cluster) {
            (Side::Buy, Some(_)) => return Err(Reject::ClusterNotAllowed),
            (Side::Buy, None) => {}
            (Side::Sell, None) => return Err(Reject::ClusterRequired),
            (Side::Sell, Some(_)) if resale => {}
            (Side::Sell, Some(c)) => {
                let cluster = self
                    .clusters
                    .get(c as usize)
                    .filter(|c| c.seller == o.account)
                    .ok_or(Reject::UnknownCluster)?;
                if cluster.spec.sku != p.sku || cluster.spec.region != p.region {
                    return Err(Reject::ClusterMismatch);
                }
                if !cluster.covers(p.hour) {
                    return Err(Reject::OutsideAvailability);
                }
                if self.unreserved(c, p.hour) < o.qty {
                    return Err(Reject::InsufficientCapacity);
                }
            }
        }
        if o.post_only && self.would_cross(o.product, o.side, o.price) {
            return Err(Reject::PostOnlyWouldCross);
        }
        Ok(())
    }

    pub(super) fn place(&mut self, o: &NewOrder, out: &mut Vec<Event>) -> Result<(), Reject> {
        self.validate(o)?;
        self.place_clipped(o, 0, out)
    }

    /// An iceberg ask: it trades on entry like any ask; what rests shows at most `clip`.
    pub(super) fn place_iceberg(
        &mut self,
        o: &NewOrder,
        clip: Qty,
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        self.validate(o)?;
        let lot = self.products[o.product as usize].spec.lot;
        if o.side != Side::Sell || !o.tif.rests() || clip <= 0 || clip > o.qty || clip % lot != 0 {
            return Err(Reject::InvalidDisplayQuantity);
        }
        self.place_clipped(o, clip, out)
    }

    /// Places a validated order, an iceberg showing `clip` when it rests (0: all).
    fn place_clipped(
        &mut self,
        o: &NewOrder,
        clip: Qty,
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        let cluster_hour = match o.cluster {
            Some(c) => self.cluster_hour(c, self.products[o.product as usize].hour),
            None => NIL,
        };
        self.place_at(o, clip, cluster_hour, out)
    }

    /// Places a validated order whose GPUs (an ask's) come from `cluster_hour`.
    pub(super) fn place_at(
        &mut self,
        o: &NewOrder,
        clip: Qty,
        cluster_hour: u32,
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        let id = self.next_order_id;
        self.next_order_id += 1;
        out.push(Event::Accepted {
            order_id: id,
            account: o.account,
            product: o.product,
            side: o.side,
            price: o.price,
            qty: o.qty,
        });
        let mut taker = Taker {
            id,
            account: o.account,
            product: o.product,
            side: o.side,
            price: o.price,
            remaining: o.qty,
            filled: 0,
            tif: o.tif,
            post_only: o.post_only,
            stp: o.stp,
            gang: o.gang,
            cluster: o.cluster,
            cluster_hour,
            clip,
        };
        if o.tif == TimeInForce::FillOrKill && !self.fills_completely(&taker) {
            out.push(Event::Cancelled {
                order_id: id,
                account: o.account,
                product: o.product,
                qty: o.qty,
                reason: CancelReason::FillOrKill,
            });
            return Ok(());
        }
        self.match_and_rest(&mut taker, out);
        Ok(())
    }

    /// A linked basket, all or none. Each leg runs as immediate-or-cancel, so no leg
    /// rests and the legs cannot touch one another: no two share a product and side,
    /// and a buy and a sell of one product draw on different books' sides and different
    /// clusters' hours. So each leg's fill-or-kill dry run on the state as it is decides
    /// for all of them; then the legs run in order, each filling completely. Otherwise
    /// each leg is accepted and cancelled (`FillOrKill`) and nothing else changes. The
    /// work is the legs' matching and dry runs, whatever the size of the engine.
    pub(super) fn place_basket(
        &mut self,
        legs: &[NewOrder],
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        if legs.is_empty() || legs.len() > MAX_BASKET_LEGS {
            return Err(Reject::InvalidBasket);
        }
        for (i, leg) in legs.iter().enumerate() {
            self.validate(leg)?;
            if legs[..i]
                .iter()
                .any(|o| o.product == leg.product && o.side == leg.side)
            {
                return Err(Reject::InvalidBasket);
            }
        }
        let now: Vec<NewOrder> = legs
            .iter()
            .map(|leg| NewOrder {
                tif: TimeInForce::ImmediateOrCancel,
                ..leg.clone()
            })
            .collect();
        let all = now.iter().all(|leg| {
            // a leg that cannot be immediate (post-only) cannot fill now
            self.validate(leg).is_ok() && {
                let cluster_hour = match leg.cluster {
                    Some(c) => self
                        .cluster_hour_index
                        .get(&(c, self.products[leg.product as usize].hour))
                        .copied()
                        .unwrap_or(NIL),
                    None => NIL,
                };
                let t = Taker {
                    id: 0,
                    account: leg.account,
                    product: leg.product,
                    side: leg.side,
                    price: leg.price,
                    remaining: leg.qty,
                    filled: 0,
                    tif: leg.tif,
                    post_only: leg.post_only,
                    stp: leg.stp,
                    gang: leg.gang,
                    cluster: leg.cluster,
                    cluster_hour,
                    clip: 0,
                };
                self.fills_completely(&t)
            }
        });
        if all {
            for leg in &now {
                self.place(leg, out)?;
            }
            return Ok(());
        }
        for leg in legs {
            let id = self.next_order_id;
            self.next_order_id += 1;
            out.push(Event::Accepted {
                order_id: id,
                account: leg.account,
                product: leg.product,
                side: leg.side,
                price: leg.price,
                qty: leg.qty,
            });
            out.push(Event::Cancelled {
                order_id: id,
                account: leg.account,
                product: leg.product,
                qty: leg.qty,
                reason: CancelReason::FillOrKill,
            });
        }
        Ok(())
    }

    /// A bid that must fill `min_qty` on entry or not at all; the rest goes on as the
    /// order's time in force says.
    pub(super) fn place_min_fill(
        &mut self,
        o: &NewOrder,
        min_qty: Qty,
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        self.validate(o)?;
        if o.side != Side::Buy
            || min_qty <= 0
            || min_qty > o.qty
            || min_qty % o.gang.max(1) as Qty != 0
        {
            return Err(Reject::InvalidMinimumFill);
        }
        let id = self.next_order_id;
        self.next_order_id += 1;
        out.push(Event::Accepted {
            order_id: id,
            account: o.account,
            product: o.product,
            side: o.side,
            price: o.price,
            qty: o.qty,
        });
        let mut taker = Taker {
            id,
            account: o.account,
            product: o.product,
            side: o.side,
            price: o.price,
            remaining: o.qty,
            filled: 0,
            tif: o.tif,
            post_only: o.post_only,
            stp: o.stp,
            gang: o.gang,
            cluster: None,
            cluster_hour: NIL,
            clip: 0,
        };
        let enough = if o.tif == TimeInForce::FillOrKill {
            self.fills_at_least(&taker, o.qty)
        } else {
            self.fills_at_least(&taker, min_qty)
        };
        if !enough {
            out.push(Event::Cancelled {
                order_id: id,
                account: o.account,
                product: o.product,
                qty: o.qty,
                reason: CancelReason::MinimumFill,
            });
            return Ok(());
        }
        self.match_and_rest(&mut taker, out);
        Ok(())
    }
}
