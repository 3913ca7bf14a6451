//! Snapshots and the audit hash: the whole state as bytes and back (every version still
//! read), and the SHA-256 state hash over it in a canonical order.

use std::cmp::Reverse;

use sha2::{Digest, Sha256};

use super::{Engine, POOL};
use crate::book::{Book, RestingOrder, NIL};
use crate::capacity::{Cluster, ClusterHandle, ClusterHour, ResalePool};
use crate::codec::{self, CodecError, Dec, Enc};
use crate::product::Product;
use crate::types::*;

/// Bumped whenever the snapshot layout changes.
pub const SNAPSHOT_VERSION: u32 = 4;

impl Engine {
    /// The whole engine state as bytes; `restore` gives back an engine with the same
    /// state hash that behaves identically from there on.
    pub fn snapshot(&self) -> Vec<u8> {
        let mut e = Enc::default();
        e.u32(SNAPSHOT_VERSION);
        e.i64(self.now);
        e.u64(self.next_order_id);
        e.u64(self.next_trade_id);
        e.u32(self.products.len() as u32);
        for (p, book) in self.products.iter().zip(&self.books) {
            codec::put_product_spec(&mut e, &p.spec);
            e.u8(p.state as u8);
            for side in [Side::Buy, Side::Sell] {
                let slots = book.orders(&self.slab, side);
                e.u32(slots.len() as u32);
                for i in slots {
                    let o = self.slab.get(i);
                    e.u64(o.id);
                    e.u64(o.account);
                    e.i64(o.price);
                    e.i64(o.remaining);
                    e.i64(o.filled);
                    codec::put_tif(&mut e, o.tif);
                    e.u8(o.post_only as u8);
                    e.u8(o.stp as u8);
                    e.u32(o.gang);
                    e.opt_u32(o.cluster);
                    e.i64(o.clip);
                    e.i64(o.hidden);
                }
            }
        }
        e.u32(self.clusters.len() as u32);
        for c in &self.clusters {
            e.u64(c.seller);
            codec::put_cluster_spec(&mut e, &c.spec);
        }
        e.u32(self.cluster_hours.len() as u32);
        for ch in &self.cluster_hours {
            e.u32(ch.cluster);
            e.i64(ch.hour);
            e.i64(ch.offered);
            for (f, s) in ch.free.iter().zip(&ch.sold) {
                e.u64(*f);
                e.u64(*s);
            }
        }
        e.u32(self.allocations.len() as u32);
        for a in &self.allocations {
            codec::put_allocation(&mut e, a);
        }
        // the pools of resting resale asks (the others are spent)
        let live: Vec<&ResalePool> = self.pools.iter().filter(|p| p.offered > 0).collect();
        e.u32(live.len() as u32);
        for p in live {
            e.u64(p.order);
            e.u32(p.parent);
            e.u32(p.fee_bps);
            e.i64(p.offered);
            codec::put_slots(&mut e, &p.free);
        }
        self.side.snapshot(&mut e);
        // version 4: the auctions
        e.u64(self.last_auction);
        match self.auction {
            Some(a) => {
                e.u8(1);
                e.u64(a.id);
                e.i64(a.from_hour);
                e.i64(a.to_hour);
            }
            None => e.u8(0),
        }
        self.snapshot_seller_blocks(&mut e);
        e.0
    }

    pub fn restore(buf: &[u8]) -> Result<Engine, CodecError> {
        let mut d = Dec::new(buf);
        // version 1 is version 2 without resting blocks or icebergs, version 2 is 3
        // without resales
        let version = d.u32()?;
        if !(1..=SNAPSHOT_VERSION).contains(&version) {
            return Err(CodecError("unknown snapshot version"));
        }
        let mut en = Engine::new();
        en.now = d.i64()?;
        en.next_order_id = d.u64()?;
        en.next_trade_id = d.u64()?;
        let n = d.count(40)?;
        for h in 0..n as ProductHandle {
            let spec = codec::get_product_spec(&mut d)?;
            let mut p = Product::new(spec).map_err(|_| CodecError("invalid product"))?;
            p.state = codec::state_of(d.u8()?)?;
            en.product_index.insert(p.spec.id.clone(), h);
            en.closures.push(Reverse((p.spec.close_at, h)));
            en.products.push(p);
            en.books.push(Book::default());
            en.side.add_product();
            for side in [Side::Buy, Side::Sell] {
                for _ in 0..d.count(50)? {
                    let (id, account, price, remaining, filled) =
                        (d.u64()?, d.u64()?, d.i64()?, d.i64()?, d.i64()?);
                    let tif = codec::get_tif(&mut d)?;
                    let (post_only, stp) = (d.u8()? != 0, codec::stp_of(d.u8()?)?);
                    let (gang, cluster) = (d.u32()?, d.opt_u32()?);
                    let (clip, hidden) = if version >= 2 {
                        (d.i64()?, d.i64()?)
                    } else {
                        (0, 0)
                    };
                    let i = en.slab.insert(RestingOrder {
                        clip,
                        hidden,
                        id,
                        account,
                        product: h,
                        side,
                        price,
                        remaining,
                        filled,
                        tif,
                        post_only,
                        stp,
                        gang,
                        cluster,
                        cluster_hour: NIL, // linked below, once cluster-hours exist
                        prev: NIL,
                        next: NIL,
                    });
                    en.order_index.insert(id, i);
                    if let TimeInForce::GoodTillTime(at) = tif {
                        en.expiries.push(Reverse((at, id)));
                    }
                    en.books[h as usize].push_back(&mut en.slab, i);
                }
            }
        }
        for h in 0..d.count(20)? as ClusterHandle {
            let seller = d.u64()?;
            let spec = codec::get_cluster_spec(&mut d, version >= 2)?;
            let c = Cluster::new(seller, spec).map_err(|_| CodecError("invalid cluster"))?;
            if en
                .cluster_index
                .insert((c.seller, c.spec.id.clone()), h)
                .is_some()
            {
                return Err(CodecError("duplicate cluster"));
            }
            en.clusters.push(c);
        }
        for i in 0..d.count(20)? as u32 {
            let (cluster, hour, offered) = (d.u32()?, d.i64()?, d.i64()?);
            let c = en
                .clusters
                .get(cluster as usize)
                .ok_or(CodecError("cluster handle"))?;
            let n = c.spec.nodes.len();
            let (mut free, mut sold) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for _ in 0..n {
                free.push(d.u64()?);
                sold.push(d.u64()?);
            }
            en.cluster_hours
                .push(ClusterHour::restore(cluster, hour, c, free, sold, offered));
            en.cluster_hour_index.insert((cluster, hour), i);
        }
        for i in 0..d.count(60)? as u32 {
            let a = codec::get_allocation(&mut d, version >= 3)?;
            if a.cluster as usize >= en.clusters.len() {
                return Err(CodecError("allocation's cluster"));
            }
            en.allocations.push(a);
            en.index_allocation(i);
        }
        let mut pools = Vec::new();
        if version >= 3 {
            for _ in 0..d.count(32)? {
                let (order, parent, fee_bps, offered) = (d.u64()?, d.u32()?, d.u32()?, d.i64()?);
                let free = codec::get_slots(&mut d)?;
                let a = en
                    .allocations
                    .get(parent as usize)
                    .ok_or(CodecError("resale's allocation"))?;
                pools.push(ResalePool {
                    cluster: a.cluster,
                    hour: a.hour,
                    parent,
                    order,
                    fee_bps,
                    free,
                    offered,
                });
            }
        }
        if version >= 2 {
            en.side.restore(&mut d, en.products.len())?;
        }
        if version >= 4 {
            en.last_auction = d.u64()?;
            if d.u8()? != 0 {
                en.auction = Some(super::OpenAuction {
                    id: d.u64()?,
                    from_hour: d.i64()?,
                    to_hour: d.i64()?,
                });
            }
            en.restore_seller_blocks(&mut d)?;
        }
        for rb in en.side.orders() {
            if let TimeInForce::GoodTillTime(at) = rb.block.tif {
                en.expiries.push(Reverse((at, rb.id)));
            }
        }
        d.done()?;
        // asks draw on their cluster-hour
        for o in en.slab.slots.iter_mut() {
            if let Some(c) = o.cluster {
                let hour = en.products[o.product as usize].hour;
                o.cluster_hour = *en
                    .cluster_hour_index
                    .get(&(c, hour))
                    .ok_or(CodecError("ask without its cluster-hour"))?;
            }
        }
        // resale asks draw on their pools
        for p in pools {
            let i = en.pools.len() as u32;
            let slab = *en
                .order_index
                .get(&p.order)
                .ok_or(CodecError("resale pool without its ask"))?;
            en.slab.get_mut(slab).cluster_hour = POOL | i;
            en.offers.entry(p.parent).or_default().push(i);
            en.pools.push(p);
        }
        Ok(en)
    }

    /// SHA-256 over the whole market state in a canonical order, as lowercase hex:
    /// products, books (every resting order in priority order), capacity, allocations
    /// and the id counters. Equal command sequences give equal hashes on every machine.
    /// The clock itself is left out, so a refused command changes nothing the hash
    /// sees; what time did (expiries, gate closures) is in the books and products.
    pub fn state_hash(&self) -> String {
        let mut h = Sha256::new();
        let mut put = |x: i64| h.update(x.to_le_bytes());
        put(self.next_order_id as i64);
        put(self.next_trade_id as i64);
        put(self.products.len() as i64);
        let mut text = Vec::new();
        for (p, book) in self.products.iter().zip(&self.books) {
            text.push(p.spec.id.clone());
            for x in [
                p.spec.tick,
                p.spec.lot,
                p.spec.open_at,
                p.spec.close_at,
                p.state as i64,
            ] {
                put(x);
            }
            for side in [Side::Buy, Side::Sell] {
                put(-1);
                for i in book.orders(&self.slab, side) {
                    let o = self.slab.get(i);
                    let (tif, at) = match o.tif {
                        TimeInForce::GoodTillClose => (0, 0),
                        TimeInForce::GoodTillTime(t) => (1, t),
                        TimeInForce::ImmediateOrCancel => (2, 0),
                        TimeInForce::FillOrKill => (3, 0),
                    };
                    for x in [
                        o.id as i64,
                        o.account as i64,
                        o.side as i64,
                        o.price,
                        o.remaining,
                        o.filled,
                        tif,
                        at,
                        o.post_only as i64,
                        o.stp as i64,
                        o.gang as i64,
                        o.cluster.map_or(-1, |c| c as i64),
                        o.clip,
                        o.hidden,
                    ] {
                        put(x);
                    }
                }
            }
        }
        put(self.clusters.len() as i64);
        for c in &self.clusters {
            text.push(c.spec.id.clone());
            text.push(c.spec.sku.clone());
            text.push(c.spec.region.clone());
            put(c.seller as i64);
            put(c.spec.from_hour);
            put(c.spec.to_hour);
            for n in &c.spec.nodes {
                text.push(n.id.clone());
                put(n.gpus as i64);
                for label in [&n.place.block, &n.place.rack, &n.place.domain] {
                    text.push(label.clone());
                }
            }
        }
        let mut keys: Vec<_> = self.cluster_hour_index.iter().collect();
        keys.sort();
        put(keys.len() as i64);
        for (&(c, hour), &i) in keys {
            let ch = &self.cluster_hours[i as usize];
            put(c as i64);
            put(hour);
            put(ch.offered);
            for (f, s) in ch.free.iter().zip(&ch.sold) {
                put(*f as i64);
                put(*s as i64);
            }
        }
        put(self.allocations.len() as i64);
        for a in &self.allocations {
            for x in [
                a.trade_id as i64,
                a.buy_order as i64,
                a.sell_order as i64,
                a.price,
            ] {
                put(x);
            }
            for s in &a.slots {
                put(s.node as i64);
                put(s.gpus as i64);
            }
            put(a.parent.unwrap_or(0) as i64);
            put(a.fee);
        }
        for p in self.pools.iter().filter(|p| p.offered > 0) {
            for x in [p.order as i64, p.parent as i64, p.fee_bps as i64, p.offered] {
                put(x);
            }
            for s in &p.free {
                put(s.node as i64);
                put(s.gpus as i64);
            }
        }
        self.side.hash_into(&mut put);
        self.hash_seller_blocks(&mut put);
        if self.last_auction != 0 {
            // only auctions add to what older states hashed
            put(-4);
            put(self.last_auction as i64);
            let a = self
                .auction
                .map_or((0, 0, 0), |a| (a.id, a.from_hour, a.to_hour));
            put(a.0 as i64);
            put(a.1);
            put(a.2);
        }
        for s in text {
            h.update((s.len() as u64).to_le_bytes());
            h.update(s.as_bytes());
        }
        h.finalize().iter().map(|b| format!("{b:02x}")).collect()
    }
}
