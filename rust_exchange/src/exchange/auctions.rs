//! Block auctions at the exchange: the two journaled commands (start, clear), the view
//! an optimiser decides over, and the public results.
//!
//! The decision itself is made outside (the edge runs the optimiser off the writer
//! thread, between the two commands); the clear carries it, naming products, clusters
//! and nodes by their ids, and is applied through the engine's checks, live and on
//! replay alike. A result naming something that no longer exists drops that fill.

use std::collections::BTreeMap;

use spotex_core::{AuctionFill, AuctionView, Command, ProductHandle};

use crate::pb;
use crate::refusal::Refusal;
use crate::store::{self, command::Kind};

use super::journal::{journaled, NOBODY};
use super::views::{page_size, page_token};
use super::Exchange;

/// Auction results kept (older ones are in the journal).
pub const KEEP_AUCTIONS: usize = 1_000;

/// What the clear being applied did: GPUs traded per product, the orders filled and
/// dropped.
#[derive(Clone, Debug, Default)]
pub(super) struct Cleared {
    pub volume: BTreeMap<ProductHandle, i64>,
    pub filled: Vec<u64>,
    pub dropped: Vec<u64>,
}

impl Exchange {
    /// Starts auction `id` (the next after the last one: `Engine::last_auction` + 1)
    /// over the delivery window `[from_hour, to_hour)`: its orders are frozen.
    pub fn start_auction(
        &mut self,
        ts: i64,
        id: u64,
        from_hour: i64,
        to_hour: i64,
    ) -> Result<u64, Refusal> {
        if from_hour >= to_hour {
            return Err(Refusal::new(
                "INVALID_ARGUMENT",
                "an auction's window ends after it begins (to_hour > from_hour)",
            ));
        }
        let last = self.engine.last_auction();
        if id <= last && self.engine.open_auction().is_none() {
            return Err(Refusal::new(
                "INVALID_ARGUMENT",
                format!("auction id {id} is taken: ids rise, and the last was {last}"),
            ));
        }
        let cmd = Command::AuctionStart {
            auction: id,
            from_hour,
            to_hour,
        };
        let journal = || {
            journaled(
                NOBODY,
                Kind::AuctionStart(store::AuctionStart {
                    auction_id: id,
                    from_hour,
                    to_hour,
                }),
            )
        };
        self.run(ts, &cmd, None, journal)?;
        Ok(id)
    }

    /// The running auction's view (see [`AuctionView`]), with its id; `None` when no
    /// auction is running.
    pub fn auction_view(&self) -> Option<(u64, AuctionView)> {
        let a = self.engine.open_auction()?;
        Some((a.id, self.engine.auction_view(a.from_hour, a.to_hour)))
    }

    /// What an auction over the window would decide over now, none running (an
    /// indicative solve).
    pub fn auction_view_of(&self, from_hour: i64, to_hour: i64) -> AuctionView {
        self.engine.auction_view(from_hour, to_hour)
    }

    /// Applies the running auction's result `c` (journaled as given): its public result.
    pub fn clear_auction(
        &mut self,
        ts: i64,
        c: &store::AuctionClear,
    ) -> Result<pb::AuctionResult, Refusal> {
        let open = self
            .engine
            .open_auction()
            .filter(|a| a.id == c.auction_id)
            .ok_or(spotex_core::Reject::AuctionNotRunning)?;
        let fills: Vec<AuctionFill> = c.fills.iter().map(|f| self.resolve(f)).collect();
        let prices: Vec<(ProductHandle, i64)> = (c.prices.iter())
            .filter_map(|p| Some((self.product(&p.product_id).ok()?, p.price_micros)))
            .collect();
        let cmd = Command::AuctionClear {
            auction: c.auction_id,
            fills,
            prices,
            abandoned: c.abandoned,
            sold: c.sold_blocks.clone(),
        };
        self.clearing = Some(c.auction_id);
        self.cleared = Cleared::default();
        let journal = || journaled(NOBODY, Kind::AuctionClear(c.clone()));
        let outcome = self.run(ts, &cmd, None, journal);
        self.clearing = None;
        outcome?;
        let cleared = std::mem::take(&mut self.cleared);
        let mut result = c.report.clone().unwrap_or_default();
        result.auction_id = c.auction_id;
        result.from_hour = open.from_hour;
        result.to_hour = open.to_hour;
        result.cleared_at_micros = ts;
        result.state = if c.abandoned { "abandoned" } else { "cleared" }.into();
        result.prices = (c.prices.iter())
            .map(|p| pb::AuctionPrice {
                product_id: p.product_id.clone(),
                price_micros: p.price_micros,
                quantity: (self.product(&p.product_id).ok())
                    .and_then(|h| cleared.volume.get(&h).copied())
                    .unwrap_or(0),
            })
            .collect();
        for p in &result.prices {
            if let Ok(h) = self.product(&p.product_id) {
                let print = pb::AuctionPrint {
                    auction_id: c.auction_id,
                    price_micros: p.price_micros,
                    quantity: p.quantity,
                    time_micros: ts,
                };
                self.market(h, pb::market_data::Payload::Auction(print));
            }
        }
        result.filled_orders = cleared.filled;
        result.dropped_orders = cleared.dropped;
        self.auctions.push_back(result.clone());
        if self.auctions.len() > KEEP_AUCTIONS {
            self.auctions.pop_front();
        }
        Ok(result)
    }

    /// A journaled fill in the engine's terms; one naming what does not exist gets a
    /// cluster no engine has, so the engine drops it like any fill that no longer fits.
    fn resolve(&self, f: &store::AuctionFill) -> AuctionFill {
        let nowhere = AuctionFill {
            order_id: f.order_id,
            alternative: f.alternative,
            cluster: spotex_core::ClusterHandle::MAX,
            start: ProductHandle::MAX,
            qty: f.quantity,
            slots: Vec::new(),
        };
        let Some(cluster) = self.engine.cluster_handle(f.seller, &f.cluster_id) else {
            return nowhere;
        };
        let Ok(start) = self.product(&f.start_product_id) else {
            return nowhere;
        };
        let nodes = &self.engine.clusters()[cluster as usize].spec.nodes;
        let mut slots = Vec::with_capacity(f.gpus.len());
        for s in &f.gpus {
            let Some(n) = nodes.iter().position(|n| n.id == s.node_id) else {
                return nowhere;
            };
            let mut mask = 0u64;
            for &g in &s.gpu_indices {
                if g >= 64 {
                    return nowhere;
                }
                mask |= 1 << g;
            }
            slots.push((n as u32, mask));
        }
        slots.sort_unstable();
        AuctionFill {
            order_id: f.order_id,
            alternative: f.alternative,
            cluster,
            start,
            qty: f.quantity,
            slots,
        }
    }

    /// An auction's result (0: the latest).
    pub fn auction_result(&self, id: u64) -> Result<pb::AuctionResult, Refusal> {
        let found = if id == 0 {
            self.auctions.back()
        } else {
            self.auctions.iter().rev().find(|a| a.auction_id == id)
        };
        found.cloned().ok_or_else(|| {
            Refusal::new(
                "UNKNOWN_AUCTION",
                if id == 0 {
                    "no auction has cleared yet".to_string()
                } else {
                    format!("no auction {id} (the latest {KEEP_AUCTIONS} are kept)")
                },
            )
        })
    }

    /// One page of the auctions' results, newest first (a token is the id the next
    /// page starts below).
    pub fn list_auctions(
        &self,
        r: &pb::ListAuctionsRequest,
    ) -> Result<pb::ListAuctionsResponse, Refusal> {
        let below = match page_token(&r.page_token)? {
            0 => u64::MAX,
            t => t,
        };
        let size = page_size(r.page_size);
        let mut auctions: Vec<pb::AuctionResult> = (self.auctions.iter().rev())
            .filter(|a| a.auction_id < below)
            .take(size + 1)
            .cloned()
            .collect();
        let next_page_token = if auctions.len() > size {
            auctions.truncate(size);
            auctions
                .last()
                .map_or(String::new(), |a| a.auction_id.to_string())
        } else {
            String::new()
        };
        Ok(pb::ListAuctionsResponse {
            auctions,
            next_page_token,
        })
    }

    /// The auction being cleared: `(id, from_hour, to_hour)`.
    pub fn open_auction(&self) -> Option<(u64, i64, i64)> {
        self.engine
            .open_auction()
            .map(|a| (a.id, a.from_hour, a.to_hour))
    }

    /// The id the next auction gets.
    pub fn next_auction(&self) -> u64 {
        self.engine.last_auction() + 1
    }
}
