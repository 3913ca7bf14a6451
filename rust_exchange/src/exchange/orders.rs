//! New orders: each request checked (roles, limits, client order ids) and turned into the
//! engine's command with the record it becomes; ranges, one-of groups, bulk entry and
//! baskets.

use rustc_hash::FxHashSet;
use spotex_core::{
    Command, NewBlock, NewOrder, OrderType, Placement, SelfTradePrevention, Side, TimeInForce,
    MAX_BLOCK_HOURS,
};

use crate::pb;
use crate::records::{locality_of, OrderRecord, OrderState};
use crate::refusal::{status_code, Refusal};
use crate::store::command::Kind;

use super::journal::journaled;
use super::{Caller, Exchange, Pending, MAX_CLIENT_ORDER_ID};

pub(super) fn check_client_order_id(id: &str) -> Result<(), Refusal> {
    if id.len() > MAX_CLIENT_ORDER_ID {
        return Err(Refusal::new(
            "INVALID_CLIENT_ORDER_ID",
            "client_order_id is at most 64 chars",
        ));
    }
    Ok(())
}

/// An auction order's terms, each broken one named: a good-till limit bid without
/// minimum, iceberg or resale terms (placement terms it keeps); or a seller block (an ask of 2 hours or
/// more, sold whole) without gang, window, iceberg, placement or resale terms.
fn auction_terms(
    r: &pb::PlaceOrderRequest,
    side: Side,
    order_type: OrderType,
    tif: TimeInForce,
) -> Result<(), Refusal> {
    let seller = side == Side::Sell;
    let broken = if seller && r.hours <= 1 {
        "a one-hour ask takes part in the auction as it rests: place it without auction \
         (an auction ask is a seller block, of 2 hours or more, sold whole)"
    } else if seller && r.gang > 1 {
        "a seller block has no gang: the auction places the buyers' gangs on its cluster"
    } else if seller && r.window_hours > 0 {
        "a seller block has no window: it is for its hours from its product's"
    } else if seller && r.display_quantity != 0 {
        "a seller block has no display quantity: it is never in a book to show"
    } else if seller && (r.locality != pb::Locality::Unspecified as i32 || r.colocate_with != 0) {
        "a seller block has no locality or colocation: those are a bid's terms"
    } else if order_type != OrderType::Limit {
        "an auction order is a limit order, not a market order"
    } else if !tif.rests() {
        "an auction order waits for its auction: GTC or GTD, not IOC or FOK"
    } else if r.post_only {
        "an auction order is not post-only (it never rests in a continuous book)"
    } else if r.min_quantity != 0 {
        "an auction order has no minimum fill (a block is all or none already)"
    } else if r.display_quantity != 0 {
        "an auction order has no display quantity"
    } else if r.resell_trade_id != 0 {
        "a resale ask trades continuously, not in an auction"
    } else {
        return Ok(());
    };
    Err(Refusal::new("INVALID_AUCTION", broken))
}

/// Micro-dollars as a person types dollars: `$0.01`, `$2.50`, `$0.000001`.
pub fn dollars(micros: i64) -> String {
    let sign = if micros < 0 { "-" } else { "" };
    let m = micros.unsigned_abs();
    let mut frac = format!("{:06}", m % 1_000_000);
    while frac.len() > 2 && frac.ends_with('0') {
        frac.pop();
    }
    format!("{sign}${}.{frac}", m / 1_000_000)
}

impl Exchange {
    pub fn place_order(
        &mut self,
        ts: i64,
        caller: Caller,
        r: &pb::PlaceOrderRequest,
    ) -> Result<pb::Order, Refusal> {
        let id = self.place(ts, caller, r)?;
        Ok(self.orders[&id].to_pb(true))
    }

    /// A seller's range: one ask per hour from the ask's product on, each placed or
    /// refused on its own, all with one `range_id` (the sequence number the range began
    /// at) for CancelAll. Each ask is journaled as the ordinary ask it is.
    pub fn place_ask_range(
        &mut self,
        ts: i64,
        caller: Caller,
        r: &pb::PlaceAskRangeRequest,
    ) -> Result<pb::SubmitOrdersResponse, Refusal> {
        let ask = r
            .ask
            .as_ref()
            .ok_or_else(|| Refusal::new("INVALID_RANGE", "a range needs its first hour's ask"))?;
        if ask.side != pb::Side::Sell as i32 || !(1..=MAX_BLOCK_HOURS).contains(&r.hours) {
            return Err(Refusal::new(
                "INVALID_RANGE",
                "a range is a sell of 1 to 168 consecutive hours",
            ));
        }
        if ask.hours > 1 || ask.window_hours > 0 || ask.min_quantity != 0 {
            return Err(Refusal::new(
                "INVALID_RANGE",
                "the asks of a range are one hour each (no hours, window or minimum)",
            ));
        }
        let first = self.product(&ask.product_id)?;
        let (sku, region, hour) = {
            let p = &self.engine.products()[first as usize];
            (p.sku.clone(), p.region.clone(), p.hour)
        };
        let mut asks = Vec::with_capacity(r.hours as usize);
        for k in 0..r.hours as i64 {
            let id = format!(
                "{sku}/{region}/{}",
                spotex_core::product::format_hour(hour + k)
            );
            if self.engine.product_handle(&id).is_none() {
                return Err(Refusal::new(
                    "INVALID_RANGE",
                    format!("hour {k} of the range is not listed ({id})"),
                ));
            }
            let mut one = ask.clone();
            one.product_id = id;
            if !ask.client_order_id.is_empty() {
                one.client_order_id = format!("{}#{k}", ask.client_order_id);
            }
            asks.push(one);
        }
        let range_id = self.sequence + 1;
        for one in &mut asks {
            one.range_id = range_id;
        }
        Ok(self.submit_orders(ts, caller, &pb::SubmitOrdersRequest { orders: asks }))
    }

    /// A new order of `caller` fits: under the open-order limit, and a client order id
    /// not used before (while its order is in memory).
    fn check_room(&self, caller: Caller, client_order_id: &str) -> Result<(), Refusal> {
        let open = self.open_orders.get(&caller.account).copied().unwrap_or(0);
        if open >= self.max_open_orders && !self.replaying {
            return Err(Refusal::new(
                "TOO_MANY_OPEN_ORDERS",
                format!(
                    "at most {} open orders per account; cancel some first",
                    self.max_open_orders
                ),
            ));
        }
        let key = (caller.account, client_order_id.to_string());
        if let Some(id) = self
            .by_client_id
            .get(&key)
            .filter(|_| !client_order_id.is_empty())
        {
            return Err(Refusal::new(
                "DUPLICATE_CLIENT_ORDER_ID",
                format!("client_order_id {client_order_id:?} was used before (order {id})"),
            ));
        }
        Ok(())
    }

    /// One-of: up to 16 block (or window) bids, of which at most one fills, at once: the
    /// cheapest that can, ties to the first listed. Answers the order the group became
    /// (the winner, or the first alternative, cancelled, when none could fill).
    pub fn place_one_of(
        &mut self,
        ts: i64,
        caller: Caller,
        r: &pb::PlaceOneOfRequest,
    ) -> Result<pb::Order, Refusal> {
        self.let_go();
        if r.alternatives.is_empty() || r.alternatives.len() > spotex_core::MAX_ALTERNATIVES {
            return Err(spotex_core::Reject::InvalidGroup.into());
        }
        if !caller.buyer {
            return Err(Refusal::new(
                "ROLE_REQUIRED",
                "placing a buy order needs the role buyer",
            ));
        }
        check_client_order_id(&r.client_order_id)?;
        self.check_room(caller, &r.client_order_id)?;
        let mut blocks = Vec::with_capacity(r.alternatives.len());
        let mut alternatives = Vec::with_capacity(r.alternatives.len());
        for a in &r.alternatives {
            let tif = match pb::TimeInForce::try_from(a.time_in_force) {
                Ok(pb::TimeInForce::Ioc) => TimeInForce::ImmediateOrCancel,
                Ok(pb::TimeInForce::Fok) => TimeInForce::FillOrKill,
                Ok(pb::TimeInForce::Gtc) => TimeInForce::GoodTillClose,
                Ok(pb::TimeInForce::Gtd) => TimeInForce::GoodTillTime(a.expire_at_micros),
                _ => return Err(spotex_core::Reject::InvalidGroup.into()),
            };
            if a.side != pb::Side::Buy as i32
                || a.order_type != pb::OrderType::Limit as i32
                || a.post_only
                || a.min_quantity != 0
                || !a.cluster_id.is_empty()
                || a.gang > 64
            {
                return Err(spotex_core::Reject::InvalidGroup.into());
            }
            if a.product_id.len() > self.max_id_length && !self.replaying {
                return Err(Refusal::new("FIELD_TOO_LONG", "a product id is too long"));
            }
            let product = self.product(&a.product_id)?;
            let gang = a.gang.max(1);
            let locality = pb::Locality::try_from(a.locality)
                .map_err(|_| Refusal::new("INVALID_ENUM", "unknown locality"))?;
            let place = Placement {
                level: locality_of(locality),
                preferred: a.locality_preferred,
                near: Some(a.colocate_with).filter(|&t| t != 0),
            };
            blocks.push(NewBlock {
                account: caller.account,
                product,
                hours: a.hours.max(1),
                price: a.price_micros,
                qty: a.quantity,
                gang,
                tif,
                window: a.window_hours,
                place: place.clone(),
                auction: a.auction,
            });
            let record = OrderRecord {
                order_id: 0,
                account: caller.account,
                client_order_id: r.client_order_id.clone(),
                product: a.product_id.clone(),
                side: Side::Buy,
                order_type: OrderType::Limit,
                price: a.price_micros,
                quantity: a.quantity,
                tif,
                cluster: String::new(),
                gang,
                created_at: ts,
                filled: 0,
                remaining: a.quantity,
                state: OrderState::Open,
                reason: String::new(),
                fills: Vec::new(),
                hours: a.hours.max(1),
                window: a.window_hours,
                min_qty: 0,
                range_id: 0,
                display: 0,
                place,
                placed: None,
                resale: None,
                auction: a.auction,
            };
            alternatives.push((record, product));
        }
        let need = alternatives
            .iter()
            .map(|(r, p)| self.entry_need(r, *p))
            .max()
            .unwrap_or(0);
        self.check_funds(caller.account, need)?;
        let (record, product) = alternatives[0].clone();
        let pending = Pending {
            record,
            product,
            alternatives,
            rest: Vec::new(),
        };
        let journal = || journaled(caller, Kind::OneOf(r.clone()));
        let id = self
            .run(
                ts,
                &Command::PlaceOneOf(blocks.clone()),
                Some(pending),
                journal,
            )
            .map_err(|mut e| {
                if e.reason == "INVALID_BLOCK" {
                    // name the alternative and the rule it breaks
                    let why = blocks
                        .iter()
                        .enumerate()
                        .find_map(|(k, b)| Some((k, self.engine.block_problem(b)?)));
                    if let Some((k, why)) = why {
                        e.message = format!("alternative {}: {why}", k + 1);
                    }
                }
                e
            })?
            .expect("an accepted group has an id");
        Ok(self.orders[&id].to_pb(true))
    }

    /// Bulk entry: each order of the message placed or refused on its own, in order.
    pub fn submit_orders(
        &mut self,
        ts: i64,
        caller: Caller,
        r: &pb::SubmitOrdersRequest,
    ) -> pb::SubmitOrdersResponse {
        let results = r
            .orders
            .iter()
            .map(|o| match self.place(ts, caller, o) {
                Ok(id) => pb::OrderResult {
                    order: Some(self.orders[&id].to_pb(true)),
                    ..Default::default()
                },
                Err(e) => pb::OrderResult {
                    order: None,
                    code: status_code(e.reason),
                    reason: e.reason.to_string(),
                    message: e.message,
                },
            })
            .collect();
        pb::SubmitOrdersResponse { results }
    }

    /// Places an order; returns its id once accepted.
    pub(super) fn place(
        &mut self,
        ts: i64,
        caller: Caller,
        r: &pb::PlaceOrderRequest,
    ) -> Result<u64, Refusal> {
        let resale;
        let r = if r.resell_trade_id != 0 {
            resale = self.resale_request(caller, r)?;
            &resale
        } else {
            r
        };
        let (command, pending) = self.prepare(ts, caller, r)?;
        self.check_funds(
            caller.account,
            self.entry_need(&pending.record, pending.product),
        )?;
        let product = pending.product;
        let journal = || journaled(caller, Kind::Place(r.clone()));
        let accepted = self
            .run(ts, &command, Some(pending), journal)
            .map_err(|mut e| {
                // say what the rule is, where the product has one
                let spec = &self.engine.products()[product as usize].spec;
                match e.reason {
                    "PRICE_OFF_TICK" => {
                        e.message += &format!(" (the tick is {})", dollars(spec.tick))
                    }
                    "QUANTITY_OFF_LOT" => e.message += &format!(" (the lot is {})", spec.lot),
                    "INVALID_BLOCK" => {
                        if let Command::PlaceBlock(b) = &command {
                            if let Some(why) = self.engine.block_problem(b) {
                                e.message = why;
                            }
                        }
                    }
                    _ => {}
                }
                e
            })?;
        Ok(accepted.expect("an accepted order has an id"))
    }

    /// An order request checked and turned into the engine's command, with the record
    /// it becomes once accepted.
    fn prepare(
        &mut self,
        ts: i64,
        caller: Caller,
        r: &pb::PlaceOrderRequest,
    ) -> Result<(Command, Pending), Refusal> {
        // before the checks: which client order ids are known must not depend on whether
        // an earlier, unjournaled refusal happened to let records go
        self.let_go();
        let longest = r.product_id.len().max(r.cluster_id.len());
        if longest > self.max_id_length && !self.replaying {
            return Err(Refusal::new(
                "FIELD_TOO_LONG",
                format!(
                    "ids and names have at most {} characters",
                    self.max_id_length
                ),
            ));
        }
        let side = match pb::Side::try_from(r.side) {
            Ok(pb::Side::Buy) => Side::Buy,
            Ok(pb::Side::Sell) => Side::Sell,
            _ => {
                return Err(Refusal::new(
                    "INVALID_SIDE",
                    "side must be SIDE_BUY or SIDE_SELL",
                ))
            }
        };
        let (may, role) = match side {
            Side::Buy => (caller.buyer, "buyer"),
            // whoever holds an allocation may resell it (resale_request checked that)
            Side::Sell => (caller.seller || r.resell_trade_id != 0, "seller"),
        };
        if !may {
            return Err(Refusal::new(
                "ROLE_REQUIRED",
                format!("placing a {} order needs the role {role}", side.as_str()),
            ));
        }
        let terms = (
            pb::OrderType::try_from(r.order_type),
            pb::TimeInForce::try_from(r.time_in_force),
            pb::SelfTradePrevention::try_from(r.stp),
            pb::Locality::try_from(r.locality),
        );
        let (Ok(order_type), Ok(tif), Ok(stp), Ok(locality)) = terms else {
            return Err(Refusal::new(
                "INVALID_ENUM",
                "unknown order_type, time_in_force, stp or locality",
            ));
        };
        let place = Placement {
            level: locality_of(locality),
            preferred: r.locality_preferred,
            near: Some(r.colocate_with).filter(|&t| t != 0),
        };
        if r.locality_preferred && place.level.is_none() {
            return Err(spotex_core::Reject::InvalidPlacement.into());
        }
        check_client_order_id(&r.client_order_id)?;
        if r.gang > 64 {
            return Err(Refusal::new(
                "INVALID_GANG",
                "gang must be a power of two from 1 to 64",
            ));
        }
        self.check_room(caller, &r.client_order_id)?;
        let product = self.product(&r.product_id)?;
        // a cluster id is its seller's name for it: an ask names one of the caller's own
        // clusters, a resale its allocation's (someone else's, by that seller's name)
        let cluster = if r.cluster_id.is_empty() {
            None
        } else if side == Side::Buy {
            // the engine refuses it (CLUSTER_NOT_ALLOWED) in its turn: a buyer's name for
            // a cluster is nobody's
            Some(spotex_core::ClusterHandle::MAX)
        } else if r.resell_trade_id != 0 {
            Some(self.resale_cluster(caller, r)?)
        } else {
            Some(
                self.engine
                    .cluster_handle(caller.account, &r.cluster_id)
                    .ok_or(spotex_core::Reject::UnknownCluster)?,
            )
        };
        let order_type = match order_type {
            pb::OrderType::Limit => OrderType::Limit,
            pb::OrderType::Market => OrderType::Market,
        };
        let tif = match tif {
            pb::TimeInForce::Gtc => TimeInForce::GoodTillClose,
            pb::TimeInForce::Gtd => TimeInForce::GoodTillTime(r.expire_at_micros),
            pb::TimeInForce::Ioc => TimeInForce::ImmediateOrCancel,
            pb::TimeInForce::Fok => TimeInForce::FillOrKill,
        };
        let stp = match stp {
            pb::SelfTradePrevention::StpCancelNewest => SelfTradePrevention::CancelNewest,
            pb::SelfTradePrevention::StpCancelOldest => SelfTradePrevention::CancelOldest,
            pb::SelfTradePrevention::StpCancelBoth => SelfTradePrevention::CancelBoth,
        };
        let gang = r.gang.max(1);
        let order = NewOrder {
            account: caller.account,
            product,
            side,
            order_type,
            price: r.price_micros,
            qty: r.quantity,
            tif,
            post_only: r.post_only,
            stp,
            cluster,
            gang,
        };
        let pending = Pending {
            product,
            alternatives: Vec::new(),
            rest: Vec::new(),
            record: OrderRecord {
                order_id: 0,
                account: caller.account,
                client_order_id: r.client_order_id.clone(),
                product: r.product_id.clone(),
                side,
                order_type,
                price: r.price_micros,
                quantity: r.quantity,
                tif,
                cluster: r.cluster_id.clone(),
                gang,
                created_at: ts,
                filled: 0,
                remaining: r.quantity,
                state: OrderState::Open,
                reason: String::new(),
                fills: Vec::new(),
                hours: r.hours.max(1),
                window: r.window_hours,
                min_qty: r.min_quantity,
                range_id: r.range_id,
                display: r.display_quantity,
                place: place.clone(),
                placed: None,
                resale: (r.resell_trade_id != 0).then_some((r.resell_trade_id, r.resale_fee_bps)),
                auction: r.auction,
            },
        };
        if r.auction {
            auction_terms(r, side, order_type, tif)?;
            if side == Side::Sell {
                let cluster = cluster.ok_or(spotex_core::Reject::ClusterRequired)?;
                let command = Command::PlaceSellerBlock(spotex_core::NewSellerBlock {
                    account: caller.account,
                    cluster,
                    product,
                    hours: r.hours,
                    price: r.price_micros,
                    qty: r.quantity,
                    tif,
                });
                return Ok((command, pending));
            }
        }
        if r.resell_trade_id != 0 {
            // a resale is a plain ask: one hour, all of it shown, no placement terms
            let plain = r.display_quantity == 0
                && r.hours <= 1
                && r.window_hours == 0
                && r.min_quantity == 0
                && !place.is_set();
            if side != Side::Sell || !plain {
                return Err(spotex_core::Reject::InvalidResale.into());
            }
            let slots = self.resale_slots(caller, r)?;
            let command = Command::PlaceResale {
                order,
                parent: r.resell_trade_id,
                slots,
                fee_bps: r.resale_fee_bps,
            };
            return Ok((command, pending));
        }
        if place.is_set() && (side != Side::Buy || r.display_quantity != 0) {
            // placement terms are a bid's
            return Err(spotex_core::Reject::InvalidPlacement.into());
        }
        let command = if r.display_quantity != 0 {
            if r.hours > 1 || r.window_hours > 0 || r.min_quantity != 0 {
                return Err(spotex_core::Reject::InvalidDisplayQuantity.into());
            }
            Command::PlaceIceberg {
                order,
                clip: r.display_quantity,
            }
        } else if r.hours > 1 || r.window_hours > 0 || place.is_set() || r.auction {
            if r.min_quantity != 0 && !r.auction {
                // a block is all or none already
                return Err(spotex_core::Reject::InvalidMinimumFill.into());
            }
            // a block: a bid for the same GPUs over consecutive hours, at once
            let what = if place.is_set() && r.hours <= 1 && r.window_hours == 0 {
                "placement terms"
            } else {
                "a block (hours above 1, or a window)"
            };
            let broken = if side != Side::Buy {
                Some(format!("{what} is for bids; an ask sells one hour"))
            } else if order_type != OrderType::Limit {
                Some(format!("{what} is for limit orders, not market orders"))
            } else if r.post_only {
                Some(format!("{what} is not for post-only orders"))
            } else {
                None
            };
            if let Some(why) = broken {
                return Err(Refusal::new("INVALID_BLOCK", why));
            }
            if cluster.is_some() {
                return Err(spotex_core::Reject::ClusterNotAllowed.into());
            }
            Command::PlaceBlock(NewBlock {
                account: caller.account,
                product,
                hours: r.hours.max(1),
                price: r.price_micros,
                qty: r.quantity,
                gang,
                tif,
                window: r.window_hours,
                place,
                auction: r.auction,
            })
        } else if r.min_quantity != 0 {
            Command::PlaceMinFill {
                order,
                min_qty: r.min_quantity,
            }
        } else {
            Command::Place(order)
        };
        Ok((command, pending))
    }

    /// A linked basket: up to 100 one-hour orders across products, all filled
    /// completely or none, at once (fill-or-kill as a whole). One result per leg, in
    /// order: the legs' orders, all filled, or all cancelled (`fill_or_kill`).
    pub fn place_basket(
        &mut self,
        ts: i64,
        caller: Caller,
        r: &pb::PlaceBasketRequest,
    ) -> Result<pb::SubmitOrdersResponse, Refusal> {
        if r.legs.is_empty() || r.legs.len() > spotex_core::MAX_BASKET_LEGS {
            return Err(spotex_core::Reject::InvalidBasket.into());
        }
        let mut seen: FxHashSet<(&str, i32)> = FxHashSet::default();
        let mut ids: FxHashSet<&str> = FxHashSet::default();
        for leg in &r.legs {
            let fresh = seen.insert((leg.product_id.as_str(), leg.side))
                && (leg.client_order_id.is_empty() || ids.insert(leg.client_order_id.as_str()));
            if !fresh || leg.hours > 1 || leg.window_hours > 0 || leg.min_quantity != 0 {
                return Err(spotex_core::Reject::InvalidBasket.into());
            }
        }
        let mut orders = Vec::with_capacity(r.legs.len());
        let mut pendings = Vec::with_capacity(r.legs.len());
        for leg in &r.legs {
            let mut fok = leg.clone();
            fok.time_in_force = pb::TimeInForce::Fok as i32;
            let (command, pending) = self.prepare(ts, caller, &fok)?;
            let Command::Place(order) = command else {
                return Err(spotex_core::Reject::InvalidBasket.into());
            };
            orders.push(order);
            pendings.push(pending);
        }
        let need = pendings
            .iter()
            .map(|p| self.entry_need(&p.record, p.product))
            .sum();
        self.check_funds(caller.account, need)?;
        // the legs' records wait in order: each accepted leg takes the next
        let mut first = pendings.remove(0);
        pendings.reverse();
        first.rest = pendings;
        let n = orders.len() as u64;
        let journal = || journaled(caller, Kind::Basket(r.clone()));
        let last = self
            .run(ts, &Command::PlaceBasket(orders), Some(first), journal)?
            .expect("an accepted basket has ids");
        // the engine numbers the legs one after another
        let results = (last + 1 - n..=last)
            .map(|id| pb::OrderResult {
                order: Some(self.orders[&id].to_pb(true)),
                ..Default::default()
            })
            .collect();
        Ok(pb::SubmitOrdersResponse { results })
    }
}
