//! Cancels and amends of resting orders: a smaller quantity keeps priority, anything
//! else leaves the book and re-enters as a taker.

use super::{pool_of, Engine, Taker};
use crate::book::NIL;
use crate::command::*;
use crate::reject::Reject;
use crate::types::*;

impl Engine {
    fn owned(&self, account: AccountId, order_id: OrderId) -> Result<u32, Reject> {
        let &i = self
            .order_index
            .get(&order_id)
            .ok_or(Reject::UnknownOrder)?;
        if self.slab.get(i).account != account {
            return Err(Reject::NotOwner);
        }
        Ok(i)
    }

    pub(super) fn cancel(
        &mut self,
        account: AccountId,
        order_id: OrderId,
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        if let Some(done) = self.cancel_block(account, order_id, out) {
            return done;
        }
        if let Some(done) = self.cancel_seller_block(account, order_id, out) {
            return done;
        }
        let i = self.owned(account, order_id)?;
        self.remove_resting(i, out, |o| Event::Cancelled {
            order_id: o.id,
            account: o.account,
            product: o.product,
            qty: o.open_qty(),
            reason: CancelReason::Requested,
        });
        Ok(())
    }

    pub(super) fn amend(
        &mut self,
        account: AccountId,
        order_id: OrderId,
        price: Option<Price>,
        qty: Option<Qty>,
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        if let Some(rb) = self.side.first(order_id) {
            // a block is all or none as placed: cancel it and place another
            return Err(if rb.block.account == account && rb.frozen {
                Reject::AuctionInProgress
            } else if rb.block.account == account {
                Reject::InvalidBlock
            } else {
                Reject::NotOwner
            });
        }
        if let Some(sb) = self.seller_block(order_id) {
            // sold whole as placed: cancel it and place another
            return Err(match (sb.block.account == account, sb.frozen) {
                (false, _) => Reject::NotOwner,
                (true, true) => Reject::AuctionInProgress,
                (true, false) => Reject::InvalidBlock,
            });
        }
        let i = self.owned(account, order_id)?;
        let o = self.slab.get(i).clone();
        let p = &self.products[o.product as usize];
        if p.state == ProductState::Halted {
            return Err(Reject::ProductHalted);
        }
        if let Some(px) = price {
            self.check_price(p, px)?;
        }
        if let Some(q) = qty {
            self.check_qty(p, q, o.gang)?;
        }
        // an iceberg's quantity is all of it, shown and hidden
        let open = o.open_qty();
        let new_price = price.unwrap_or(o.price);
        let new_qty = qty.unwrap_or(open);
        if new_price == o.price && new_qty == open {
            return Err(Reject::NothingToAmend);
        }
        if o.cluster_hour != NIL
            && new_qty > open
            && self.unreserved_at(o.cluster_hour) < new_qty - open
        {
            return Err(Reject::InsufficientCapacity);
        }
        if o.post_only && new_price != o.price && self.would_cross(o.product, o.side, new_price) {
            return Err(Reject::PostOnlyWouldCross);
        }
        if new_price == o.price && new_qty < open {
            let by = open - new_qty;
            // an iceberg gives up hidden quantity first
            let from_hidden = by.min(o.hidden);
            self.slab.get_mut(i).hidden -= from_hidden;
            if by > from_hidden {
                self.books[o.product as usize].reduce(&mut self.slab, i, by - from_hidden);
            }
            if o.cluster_hour != NIL {
                *self.offered_at(o.cluster_hour) -= by;
            }
            self.release_unoffered(o.cluster_hour);
            out.push(Event::Amended {
                order_id,
                account,
                product: o.product,
                price: new_price,
                qty: new_qty,
                priority_kept: true,
            });
            return Ok(());
        }
        // Loses priority: leaves the book and re-enters as a taker at the new terms.
        if o.cluster_hour != NIL {
            *self.offered_at(o.cluster_hour) -= open;
        }
        if new_qty < open {
            // a resale offers only the GPUs it still sells
            if let Some(p) = pool_of(o.cluster_hour) {
                let pool = &mut self.pools[p];
                pool.release(pool.free_total() - new_qty);
            }
        }
        self.books[o.product as usize].unlink(&mut self.slab, i);
        self.order_index.remove(&order_id);
        self.slab.release(i);
        out.push(Event::Amended {
            order_id,
            account,
            product: o.product,
            price: new_price,
            qty: new_qty,
            priority_kept: false,
        });
        let mut taker = Taker {
            id: o.id,
            account: o.account,
            product: o.product,
            side: o.side,
            price: new_price,
            remaining: new_qty,
            filled: o.filled,
            tif: o.tif,
            post_only: o.post_only,
            stp: o.stp,
            gang: o.gang,
            cluster: o.cluster,
            cluster_hour: o.cluster_hour,
            clip: o.clip,
        };
        // The GTD heap already holds this order's expiry; do not push it twice.
        let tif = taker.tif;
        taker.tif = match tif {
            TimeInForce::GoodTillTime(_) => TimeInForce::GoodTillClose,
            other => other,
        };
        self.match_and_rest(&mut taker, out);
        if let Some(&j) = self.order_index.get(&order_id) {
            self.slab.get_mut(j).tif = tif;
        }
        Ok(())
    }
}
