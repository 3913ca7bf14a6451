//! Cancels (one order, or all of an account's) and amends, by the order's owner.

use spotex_core::Command;

use crate::pb;
use crate::refusal::Refusal;
use crate::store::command::Kind;

use super::journal::journaled;
use super::orders::dollars;
use super::{Caller, Exchange};

impl Exchange {
    pub fn cancel_order(
        &mut self,
        ts: i64,
        caller: Caller,
        r: &pb::CancelOrderRequest,
    ) -> Result<pb::Order, Refusal> {
        self.cancel(ts, caller, r)?;
        Ok(self.orders[&r.order_id].to_pb(true))
    }

    pub(super) fn cancel(
        &mut self,
        ts: i64,
        caller: Caller,
        r: &pb::CancelOrderRequest,
    ) -> Result<(), Refusal> {
        self.check_owner(caller, r.order_id)?;
        let cmd = Command::Cancel {
            account: caller.account,
            order_id: r.order_id,
        };
        self.run(ts, &cmd, None, || journaled(caller, Kind::Cancel(*r)))
            .map(drop)
    }

    /// Mass cancel: every open order of `caller` (of one product, unless the id is
    /// empty), oldest first. Each cancel is a command of its own in the journal and the
    /// streams, as if sent one by one; nothing else runs between them. Returns the
    /// cancelled orders.
    pub fn cancel_all(
        &mut self,
        ts: i64,
        caller: Caller,
        r: &pb::CancelAllRequest,
    ) -> Result<pb::CancelAllResponse, Refusal> {
        if !r.product_id.is_empty() {
            self.product(&r.product_id)?;
        }
        let open: Vec<u64> = self
            .orders
            .values()
            .filter(|o| o.account == caller.account && o.is_open())
            .filter(|o| r.product_id.is_empty() || o.product == r.product_id)
            .filter(|o| r.range_id == 0 || o.range_id == r.range_id)
            .map(|o| o.order_id)
            .collect();
        let mut orders = Vec::with_capacity(open.len());
        for order_id in open {
            // an open order of the caller's own: the cancel cannot be refused
            if self
                .cancel(ts, caller, &pb::CancelOrderRequest { order_id })
                .is_ok()
            {
                orders.push(self.orders[&order_id].to_pb(true));
            }
        }
        Ok(pb::CancelAllResponse { orders })
    }

    /// A price or quantity of 0 keeps the current one; the quantity is the new remaining.
    pub fn amend_order(
        &mut self,
        ts: i64,
        caller: Caller,
        r: &pb::AmendOrderRequest,
    ) -> Result<pb::Order, Refusal> {
        self.amend(ts, caller, r)?;
        Ok(self.orders[&r.order_id].to_pb(true))
    }

    pub(super) fn amend(
        &mut self,
        ts: i64,
        caller: Caller,
        r: &pb::AmendOrderRequest,
    ) -> Result<(), Refusal> {
        self.check_owner(caller, r.order_id)?;
        let extra = self.amend_extra(r.order_id, r.price_micros, r.quantity);
        self.check_funds(caller.account, extra)?;
        let cmd = Command::Amend {
            account: caller.account,
            order_id: r.order_id,
            price: (r.price_micros != 0).then_some(r.price_micros),
            qty: (r.quantity != 0).then_some(r.quantity),
        };
        self.run(ts, &cmd, None, || journaled(caller, Kind::Amend(*r)))
            .map_err(|mut e| {
                match e.reason {
                    "INVALID_BLOCK" => {
                        e.message = "a block is not amended: cancel it and place another".into()
                    }
                    "PRICE_OFF_TICK" => {
                        let tick = self.orders.get(&r.order_id).and_then(|o| {
                            let p = self.engine.product_handle(&o.product)?;
                            Some(self.engine.products()[p as usize].spec.tick)
                        });
                        if let Some(tick) = tick {
                            e.message += &format!(" (the tick is {})", dollars(tick));
                        }
                    }
                    _ => {}
                }
                e
            })
            .map(drop)
    }

    fn check_owner(&self, caller: Caller, order_id: u64) -> Result<(), Refusal> {
        match self.orders.get(&order_id) {
            Some(rec) if rec.account != caller.account => Err(Refusal::new(
                "NOT_OWNER",
                "the order belongs to another account",
            )),
            _ => Ok(()),
        }
    }
}
