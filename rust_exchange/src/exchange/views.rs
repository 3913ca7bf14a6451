//! Views and pages: orders, products, books, market-data snapshots and allocations, list
//! calls paged by token.

use spotex_core::{ProductHandle, Side};

use crate::pb;
use crate::refusal::Refusal;

use super::{Caller, Exchange};

/// Items of a list call's page when the request asks for none.
pub const DEFAULT_PAGE: usize = 500;
/// The most items of a page; a request for more is served this many.
pub const MAX_PAGE: usize = 1000;

/// A request's page size: 0 is the default, more than the most is the most.
pub fn page_size(asked: u32) -> usize {
    match asked {
        0 => DEFAULT_PAGE,
        n => (n as usize).min(MAX_PAGE),
    }
}

/// Where a page starts: after the id (or position) a token names; the first page has
/// none.
pub fn page_token(token: &str) -> Result<u64, Refusal> {
    if token.is_empty() {
        return Ok(0);
    }
    token.parse().map_err(|_| {
        Refusal::new(
            "INVALID_ARGUMENT",
            "malformed page_token: pass the next_page_token of the previous page",
        )
    })
}

/// Cuts `items` (up to `size + 1` of them) to a page, and names where the next starts
/// (empty: nothing more).
pub(super) fn next_token<T>(items: &mut Vec<T>, size: usize, key: impl Fn(&T) -> u64) -> String {
    if items.len() <= size {
        return String::new();
    }
    items.truncate(size);
    items.last().map(|t| key(t).to_string()).unwrap_or_default()
}

impl Exchange {
    /// An order by id, or (`order_id` 0) the caller's by its client order id.
    pub fn get_order(&self, caller: Caller, r: &pb::GetOrderRequest) -> Result<pb::Order, Refusal> {
        let id = if r.order_id == 0 && !r.client_order_id.is_empty() {
            let key = (caller.account, r.client_order_id.clone());
            *self.by_client_id.get(&key).ok_or_else(|| {
                Refusal::new(
                    "UNKNOWN_ORDER",
                    format!(
                        "no order of yours has client_order_id {:?} (one that ended long \
                         ago may have left memory: ListOrders finds it)",
                        r.client_order_id
                    ),
                )
            })?
        } else {
            r.order_id
        };
        let rec = self
            .orders
            .get(&id)
            .ok_or_else(|| Refusal::new("UNKNOWN_ORDER", "no such order"))?;
        if rec.account != caller.account {
            return Err(Refusal::new(
                "NOT_OWNER",
                "the order belongs to another account",
            ));
        }
        Ok(rec.to_pb(true))
    }

    /// One page of the caller's orders in memory, oldest first. Scans the records in
    /// memory after the token (open orders and the `keep_ended` most recent ended ones):
    /// older ended orders are the caller's to merge in (the gateway's history).
    pub fn list_orders(
        &self,
        caller: Caller,
        r: &pb::ListOrdersRequest,
    ) -> Result<pb::ListOrdersResponse, Refusal> {
        let after = page_token(&r.page_token)?;
        let size = page_size(r.page_size);
        let mut orders: Vec<pb::Order> = self
            .orders
            .range(after.saturating_add(1)..)
            .map(|(_, o)| o)
            .filter(|o| o.account == caller.account)
            .filter(|o| r.product_id.is_empty() || o.product == r.product_id)
            .filter(|o| !r.open_only || o.is_open())
            .take(size + 1)
            .map(|o| o.to_pb(true))
            .collect();
        let next_page_token = next_token(&mut orders, size, |o| o.order_id);
        Ok(pb::ListOrdersResponse {
            orders,
            next_page_token,
        })
    }

    /// One page of the products, in the order they were listed (a token is a position:
    /// products are never removed).
    pub fn list_products(
        &self,
        r: &pb::ListProductsRequest,
    ) -> Result<pb::ListProductsResponse, Refusal> {
        let after = page_token(&r.page_token)? as usize;
        let size = page_size(r.page_size);
        let all = self.engine.products();
        let end = all.len().min(after.saturating_add(size));
        let products = self.products_pb(after, end);
        let next_page_token = if end < all.len() {
            end.to_string()
        } else {
            String::new()
        };
        Ok(pb::ListProductsResponse {
            products,
            next_page_token,
        })
    }

    /// Every product, in the order they were listed (for the service's own use; clients
    /// page through `list_products`).
    pub fn all_products(&self) -> pb::ListProductsResponse {
        pb::ListProductsResponse {
            products: self.products_pb(0, usize::MAX),
            next_page_token: String::new(),
        }
    }

    fn products_pb(&self, from: usize, to: usize) -> Vec<pb::Product> {
        let all = self.engine.products();
        all.get(from.min(all.len())..to.min(all.len()))
            .unwrap_or_default()
            .iter()
            .map(|p| pb::Product {
                product_id: p.spec.id.clone(),
                state: p.state.as_str().to_string(),
                tick_micros: p.spec.tick,
                lot: p.spec.lot,
                open_at_micros: p.spec.open_at,
                close_at_micros: p.spec.close_at,
            })
            .collect()
    }

    /// The aggregated book to `depth` levels a side (0: 20; at most 10,000), with the
    /// market-data sequence it stands at: a subscriber's deltas follow from there.
    pub fn get_book(&self, r: &pb::GetBookRequest) -> Result<pb::GetBookResponse, Refusal> {
        let product = self.product(&r.product_id)?;
        let depth = if r.depth == 0 {
            20
        } else {
            r.depth.min(10_000)
        };
        Ok(pb::GetBookResponse {
            book: Some(self.book(product, depth as usize)),
        })
    }

    fn book(&self, product: ProductHandle, depth: usize) -> pb::Book {
        let levels = |side| {
            self.engine
                .l2(product, side, depth)
                .into_iter()
                .map(|(price_micros, quantity, orders)| pb::Level {
                    price_micros,
                    quantity,
                    orders,
                })
                .collect()
        };
        pb::Book {
            product_id: self.engine.products()[product as usize].spec.id.clone(),
            sequence: self.md_sequence.get(product as usize).copied().unwrap_or(0),
            bids: levels(Side::Buy),
            asks: levels(Side::Sell),
        }
    }

    /// Where a market-data subscription starts: a whole-book snapshot of each product
    /// asked for (every product when none is named), in product-id order.
    pub fn market_snapshots(&self, product_ids: &[String]) -> Result<Vec<pb::MarketData>, Refusal> {
        let mut handles: Vec<ProductHandle> = if product_ids.is_empty() {
            (0..self.engine.products().len() as ProductHandle).collect()
        } else {
            let unknown: Vec<&str> = product_ids
                .iter()
                .filter(|p| self.engine.product_handle(p).is_none())
                .map(String::as_str)
                .collect();
            if !unknown.is_empty() {
                let mut unknown = unknown;
                unknown.sort_unstable();
                unknown.dedup();
                return Err(Refusal::new(
                    "UNKNOWN_PRODUCT",
                    format!("no such product: {}", unknown.join(", ")),
                ));
            }
            product_ids
                .iter()
                .filter_map(|p| self.engine.product_handle(p))
                .collect()
        };
        handles.sort_by(|a, b| {
            let ps = self.engine.products();
            ps[*a as usize].spec.id.cmp(&ps[*b as usize].spec.id)
        });
        handles.dedup();
        Ok(handles
            .into_iter()
            .map(|h| {
                let book = self.book(h, usize::MAX);
                pb::MarketData {
                    product_id: book.product_id.clone(),
                    sequence: book.sequence,
                    payload: Some(pb::market_data::Payload::Snapshot(book)),
                }
            })
            .collect())
    }

    /// The caller's allocations, bought or sold, in trade order.
    pub fn list_allocations(
        &self,
        caller: Caller,
        r: &pb::ListAllocationsRequest,
    ) -> Result<pb::ListAllocationsResponse, Refusal> {
        let after = page_token(&r.page_token)?;
        let size = page_size(r.page_size);
        let mut allocations: Vec<pb::Allocation> = self
            .engine
            .allocations_of(caller.account)
            .into_iter()
            .filter(|a| a.trade_id > after)
            .map(|a| self.allocation_pb(a, caller.account))
            .filter(|a| r.product_id.is_empty() || a.product_id == r.product_id)
            .take(size + 1)
            .collect();
        let next_page_token = next_token(&mut allocations, size, |a| a.trade_id);
        Ok(pb::ListAllocationsResponse {
            allocations,
            next_page_token,
        })
    }

    pub(super) fn product(&self, id: &str) -> Result<ProductHandle, Refusal> {
        self.engine.product_handle(id).ok_or_else(|| {
            let shown: String = id.chars().take(80).collect();
            Refusal::new(
                spotex_core::Reject::UnknownProduct.code(),
                format!("no such product: {shown:?} (ids read SKU/region/YYYY-MM-DDTHH)"),
            )
        })
    }
}
