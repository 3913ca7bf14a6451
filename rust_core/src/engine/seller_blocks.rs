//! Seller blocks: a seller's GPUs of one cluster for several consecutive hours, offered to
//! block auctions only and sold whole or not at all (possibly to several bids together,
//! as long as every GPU-hour of it is sold).
//!
//! A seller block rests beside the books, never in them: it reserves its GPUs in each of
//! its hours as an ask does (so nothing else offers them twice), is seen by an auction as
//! one ask over its hours, and trades only when an auction's result names it sold. An
//! auction's fills then take their GPUs from the sold seller blocks of their cluster-hour
//! first (cheapest first), then from the resting asks; a sold seller block that the fills
//! applied would not use whole is not sold, and the fills that used it are dropped (see
//! `auction::clear_auction`).

use std::cmp::Reverse;

use super::{Engine, MAX_BLOCK_HOURS};
use crate::codec::{self, CodecError, Dec, Enc};
use crate::command::*;
use crate::reject::Reject;
use crate::types::*;

/// A seller-block leg of a block's plan: this bit and the seller block's place in the
/// clear's list of sold seller blocks (`Engine::selling`).
pub(super) const SELLER_LEG: u32 = 1 << 30;

/// The place of a seller block in `Engine::selling`, when leg index `i` names one.
pub(super) fn seller_leg(i: u32) -> Option<usize> {
    (i & SELLER_LEG != 0 && i & (1 << 31) == 0).then_some((i & !SELLER_LEG) as usize)
}

/// A seller block at rest: its terms, its products hour by hour, the GPUs of it not yet
/// sold in each hour (all of them, but while an auction's result is applied), and whether
/// an auction being cleared holds it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SellerBlock {
    pub id: OrderId,
    pub block: NewSellerBlock,
    pub products: Vec<ProductHandle>,
    pub left: Vec<Qty>,
    pub frozen: bool,
}

impl Engine {
    /// The products of `hours` consecutive hours from `first`'s, of its SKU and region,
    /// each listed; `None` when one is not.
    fn products_from(&self, first: ProductHandle, hours: u32) -> Option<Vec<ProductHandle>> {
        let p = self.products.get(first as usize)?;
        (0..hours as i64)
            .map(|k| {
                let id = format!(
                    "{}/{}/{}",
                    p.sku,
                    p.region,
                    crate::product::format_hour(p.hour + k)
                );
                self.product_index.get(&id).copied()
            })
            .collect()
    }

    pub(super) fn place_seller_block(
        &mut self,
        b: &NewSellerBlock,
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        if !b.tif.rests() || b.hours == 0 || b.hours > MAX_BLOCK_HOURS {
            return Err(Reject::InvalidAuction);
        }
        self.product(b.product)?;
        let products = (self.products_from(b.product, b.hours)).ok_or(Reject::InvalidBlock)?;
        for &p in &products {
            let leg = NewOrder {
                cluster: Some(b.cluster),
                tif: b.tif,
                ..NewOrder::limit(b.account, p, Side::Sell, b.price, b.qty)
            };
            self.validate_in(&leg, false, true)?;
        }
        let id = self.accept_whole(b.account, b.product, Side::Sell, b.price, b.qty, out);
        for &p in &products {
            let ch = self.cluster_hour(b.cluster, self.products[p as usize].hour);
            self.cluster_hours[ch as usize].offered += b.qty;
        }
        if let TimeInForce::GoodTillTime(at) = b.tif {
            self.expiries.push(Reverse((at, id)));
        }
        let left = vec![b.qty; products.len()];
        self.seller_blocks.insert(
            id,
            SellerBlock {
                id,
                block: b.clone(),
                products,
                left,
                frozen: false,
            },
        );
        Ok(())
    }

    /// The resting seller block `id`, if it is one.
    pub fn seller_block(&self, id: OrderId) -> Option<&SellerBlock> {
        self.seller_blocks.get(&id)
    }

    /// Takes seller block `id` out, its unsold GPUs no longer reserved.
    fn remove_seller_block(&mut self, id: OrderId) -> Option<SellerBlock> {
        let sb = self.seller_blocks.remove(&id)?;
        for (k, &p) in sb.products.iter().enumerate() {
            let hour = self.products[p as usize].hour;
            if let Some(&ch) = self.cluster_hour_index.get(&(sb.block.cluster, hour)) {
                self.cluster_hours[ch as usize].offered -= sb.left[k];
            }
        }
        Some(sb)
    }

    /// The owner cancels a seller block; `None` when `id` is not one.
    pub(super) fn cancel_seller_block(
        &mut self,
        account: AccountId,
        id: OrderId,
        out: &mut Vec<Event>,
    ) -> Option<Result<(), Reject>> {
        let sb = self.seller_blocks.get(&id)?;
        if sb.block.account != account {
            return Some(Err(Reject::NotOwner));
        }
        if sb.frozen {
            return Some(Err(Reject::AuctionInProgress));
        }
        let sb = self.remove_seller_block(id).expect("it rests");
        out.push(Event::Cancelled {
            order_id: id,
            account,
            product: sb.block.product,
            qty: sb.block.qty,
            reason: CancelReason::Requested,
        });
        Some(Ok(()))
    }

    /// A seller block's good-till-time came.
    pub(super) fn expire_seller_block(&mut self, id: OrderId, at: Timestamp, out: &mut Vec<Event>) {
        let due = (self.seller_blocks.get(&id))
            .is_some_and(|sb| sb.block.tif == TimeInForce::GoodTillTime(at));
        if due {
            let sb = self.remove_seller_block(id).expect("it rests");
            out.push(Self::seller_block_expired(&sb, ExpireReason::GoodTillTime));
        }
    }

    /// Gate closure of `product`: every seller block spanning it expires (it can no
    /// longer be sold whole), in id order.
    pub(super) fn close_seller_blocks(&mut self, product: ProductHandle, out: &mut Vec<Event>) {
        let ids: Vec<OrderId> = (self.seller_blocks.values())
            .filter(|sb| sb.products.contains(&product))
            .map(|sb| sb.id)
            .collect();
        for id in ids {
            let sb = self.remove_seller_block(id).expect("it rests");
            out.push(Self::seller_block_expired(&sb, ExpireReason::GateClosure));
        }
    }

    fn seller_block_expired(sb: &SellerBlock, reason: ExpireReason) -> Event {
        Event::Expired {
            order_id: sb.id,
            account: sb.block.account,
            product: sb.block.product,
            qty: sb.block.qty,
            reason,
        }
    }

    /// The sold seller blocks an auction's fills used whole leave; what they sold is in
    /// their trades.
    pub(super) fn settle_seller_blocks(&mut self, sold: &[OrderId]) {
        for id in sold {
            if (self.seller_blocks.get(id)).is_some_and(|sb| sb.left.iter().all(|&l| l == 0)) {
                self.seller_blocks.remove(id);
            }
        }
    }

    pub(super) fn snapshot_seller_blocks(&self, e: &mut Enc) {
        e.u32(self.seller_blocks.len() as u32);
        for sb in self.seller_blocks.values() {
            let b = &sb.block;
            e.u64(sb.id);
            e.u64(b.account);
            e.u32(b.cluster);
            e.u32(b.product);
            e.u32(b.hours);
            e.i64(b.price);
            e.i64(b.qty);
            codec::put_tif(e, b.tif);
            e.u8(sb.frozen as u8);
        }
    }

    /// Reads what `snapshot_seller_blocks` wrote, for an engine whose products and
    /// cluster-hours are restored (the reservations are in the cluster-hours already).
    pub(super) fn restore_seller_blocks(&mut self, d: &mut Dec) -> Result<(), CodecError> {
        for _ in 0..d.count(46)? {
            let (id, account, cluster, product) = (d.u64()?, d.u64()?, d.u32()?, d.u32()?);
            let (hours, price, qty) = (d.u32()?, d.i64()?, d.i64()?);
            let (tif, frozen) = (codec::get_tif(d)?, d.u8()? != 0);
            let products = (self.products_from(product, hours))
                .ok_or(CodecError("seller block's product or hours"))?;
            if cluster as usize >= self.clusters.len() {
                return Err(CodecError("seller block's cluster"));
            }
            if let TimeInForce::GoodTillTime(at) = tif {
                self.expiries.push(Reverse((at, id)));
            }
            let block = NewSellerBlock {
                account,
                cluster,
                product,
                hours,
                price,
                qty,
                tif,
            };
            let left = vec![qty; products.len()];
            self.seller_blocks.insert(
                id,
                SellerBlock {
                    id,
                    block,
                    products,
                    left,
                    frozen,
                },
            );
        }
        Ok(())
    }

    /// What the state hash sees of the seller blocks (nothing while there are none).
    pub(super) fn hash_seller_blocks(&self, put: &mut impl FnMut(i64)) {
        if self.seller_blocks.is_empty() {
            return;
        }
        put(-5);
        for sb in self.seller_blocks.values() {
            let b = &sb.block;
            let (tif, at) = match b.tif {
                TimeInForce::GoodTillTime(t) => (1, t),
                _ => (0, 0),
            };
            for x in [
                sb.id as i64,
                b.account as i64,
                b.cluster as i64,
                b.product as i64,
                b.hours as i64,
                b.price,
                b.qty,
                tif,
                at,
                sb.frozen as i64,
            ] {
                put(x);
            }
        }
    }
}
