//! Products: listing, halting and resuming, and the gate closure that ends trading in one.

use std::cmp::Reverse;

use super::Engine;
use crate::book::Book;
use crate::command::*;
use crate::product::{Product, ProductSpec};
use crate::reject::Reject;
use crate::types::*;

impl Engine {
    pub(super) fn product(&self, h: ProductHandle) -> Result<&Product, Reject> {
        self.products.get(h as usize).ok_or(Reject::UnknownProduct)
    }

    pub fn product_handle(&self, id: &str) -> Option<ProductHandle> {
        self.product_index.get(id).copied()
    }

    pub fn products(&self) -> &[Product] {
        &self.products
    }

    pub(super) fn create_product(
        &mut self,
        spec: &ProductSpec,
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        let product = Product::new(spec.clone())?;
        if self.product_index.contains_key(&spec.id) {
            return Err(Reject::DuplicateProduct);
        }
        if spec.close_at <= self.now {
            return Err(Reject::InvalidSchedule);
        }
        let h = self.products.len() as ProductHandle;
        self.product_index.insert(spec.id.clone(), h);
        self.closures.push(Reverse((spec.close_at, h)));
        self.products.push(product);
        self.books.push(Book::default());
        self.side.add_product();
        out.push(Event::ProductCreated { product: h });
        Ok(())
    }

    pub(super) fn set_state(
        &mut self,
        h: ProductHandle,
        state: ProductState,
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        let p = self.product(h)?;
        if p.state == ProductState::Closed {
            return Err(Reject::ProductClosed);
        }
        if p.state != state {
            self.products[h as usize].state = state;
            out.push(Event::ProductState { product: h, state });
        }
        Ok(())
    }

    /// Gate closure: every resting order expires, in order-id order, then every resting
    /// block spanning the product.
    pub(super) fn close(&mut self, h: ProductHandle, out: &mut Vec<Event>) {
        self.products[h as usize].state = ProductState::Closed;
        out.push(Event::ProductState {
            product: h,
            state: ProductState::Closed,
        });
        let book = &self.books[h as usize];
        let mut slots = book.orders(&self.slab, Side::Buy);
        slots.extend(book.orders(&self.slab, Side::Sell));
        slots.sort_by_key(|&i| self.slab.get(i).id);
        for i in slots {
            self.remove_resting(i, out, |o| Event::Expired {
                order_id: o.id,
                account: o.account,
                product: o.product,
                qty: o.open_qty(),
                reason: ExpireReason::GateClosure,
            });
        }
        self.close_blocks(h, out);
        self.close_seller_blocks(h, out);
    }
}
