//! The binary codec of the journal and of snapshots: commands, and the whole engine state.
//!
//! Little-endian fixed-width integers, strings as a u32 length then UTF-8 bytes. Every
//! decode checks lengths and enum values and fails with `CodecError` instead of panicking:
//! a journal can be damaged, and damage must be reported, never applied.

use std::fmt;

use crate::capacity::{ClusterSpec, Level, NodeSpec, Slot, Topology};
use crate::command::{
    Allocation, AuctionFill, Command, NewBlock, NewOrder, NewSellerBlock, Placement,
};
use crate::product::ProductSpec;
use crate::types::*;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodecError(pub &'static str);

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "malformed record: {}", self.0)
    }
}

impl std::error::Error for CodecError {}

#[derive(Default)]
pub struct Enc(pub Vec<u8>);

impl Enc {
    pub fn u8(&mut self, x: u8) {
        self.0.push(x);
    }
    pub fn u32(&mut self, x: u32) {
        self.0.extend_from_slice(&x.to_le_bytes());
    }
    pub fn u64(&mut self, x: u64) {
        self.0.extend_from_slice(&x.to_le_bytes());
    }
    pub fn i64(&mut self, x: i64) {
        self.0.extend_from_slice(&x.to_le_bytes());
    }
    pub fn str(&mut self, s: &str) {
        self.u32(s.len() as u32);
        self.0.extend_from_slice(s.as_bytes());
    }
    pub fn opt_u32(&mut self, x: Option<u32>) {
        self.u32(x.unwrap_or(u32::MAX));
    }
}

pub struct Dec<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Dec<'a> {
    pub fn new(buf: &'a [u8]) -> Dec<'a> {
        Dec { buf, pos: 0 }
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        let end = self
            .pos
            .checked_add(n)
            .ok_or(CodecError("length overflow"))?;
        let s = self.buf.get(self.pos..end).ok_or(CodecError("truncated"))?;
        self.pos = end;
        Ok(s)
    }
    pub fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.take(1)?[0])
    }
    pub fn u32(&mut self) -> Result<u32, CodecError> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().unwrap()))
    }
    pub fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    pub fn i64(&mut self) -> Result<i64, CodecError> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into().unwrap()))
    }
    pub fn str(&mut self) -> Result<String, CodecError> {
        let n = self.u32()? as usize;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|_| CodecError("bad utf-8"))
    }
    pub fn opt_u32(&mut self) -> Result<Option<u32>, CodecError> {
        Ok(match self.u32()? {
            u32::MAX => None,
            x => Some(x),
        })
    }
    /// A count of items that each take at least `min_size` bytes: refuses counts the
    /// remaining bytes cannot hold, so a damaged length cannot make us allocate wildly.
    pub fn count(&mut self, min_size: usize) -> Result<usize, CodecError> {
        let n = self.u32()? as usize;
        if n.saturating_mul(min_size.max(1)) > self.buf.len() - self.pos {
            return Err(CodecError("count larger than the record"));
        }
        Ok(n)
    }
    pub fn done(&self) -> Result<(), CodecError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(CodecError("trailing bytes"))
        }
    }
}

pub fn side_code(s: Side) -> u8 {
    s as u8
}

pub fn side_of(x: u8) -> Result<Side, CodecError> {
    match x {
        0 => Ok(Side::Buy),
        1 => Ok(Side::Sell),
        _ => Err(CodecError("side")),
    }
}

pub fn put_tif(e: &mut Enc, t: TimeInForce) {
    match t {
        TimeInForce::GoodTillClose => e.u8(0),
        TimeInForce::GoodTillTime(at) => {
            e.u8(1);
            e.i64(at)
        }
        TimeInForce::ImmediateOrCancel => e.u8(2),
        TimeInForce::FillOrKill => e.u8(3),
    }
}

pub fn get_tif(d: &mut Dec) -> Result<TimeInForce, CodecError> {
    Ok(match d.u8()? {
        0 => TimeInForce::GoodTillClose,
        1 => TimeInForce::GoodTillTime(d.i64()?),
        2 => TimeInForce::ImmediateOrCancel,
        3 => TimeInForce::FillOrKill,
        _ => return Err(CodecError("time in force")),
    })
}

pub fn stp_of(x: u8) -> Result<SelfTradePrevention, CodecError> {
    match x {
        0 => Ok(SelfTradePrevention::CancelNewest),
        1 => Ok(SelfTradePrevention::CancelOldest),
        2 => Ok(SelfTradePrevention::CancelBoth),
        _ => Err(CodecError("self-trade prevention")),
    }
}

pub fn state_of(x: u8) -> Result<ProductState, CodecError> {
    match x {
        0 => Ok(ProductState::Open),
        1 => Ok(ProductState::Halted),
        2 => Ok(ProductState::Closed),
        3 => Ok(ProductState::Auction),
        _ => Err(CodecError("product state")),
    }
}

pub fn put_product_spec(e: &mut Enc, s: &ProductSpec) {
    e.str(&s.id);
    e.i64(s.tick);
    e.i64(s.lot);
    e.i64(s.open_at);
    e.i64(s.close_at);
}

pub fn get_product_spec(d: &mut Dec) -> Result<ProductSpec, CodecError> {
    Ok(ProductSpec {
        id: d.str()?,
        tick: d.i64()?,
        lot: d.i64()?,
        open_at: d.i64()?,
        close_at: d.i64()?,
    })
}

pub fn put_cluster_spec(e: &mut Enc, s: &ClusterSpec) {
    e.str(&s.id);
    e.str(&s.sku);
    e.str(&s.region);
    e.u32(s.nodes.len() as u32);
    for n in &s.nodes {
        e.str(&n.id);
        e.u32(n.gpus);
        e.str(&n.place.block);
        e.str(&n.place.rack);
        e.str(&n.place.domain);
    }
    e.i64(s.from_hour);
    e.i64(s.to_hour);
}

/// A cluster's spec; `placed` when the nodes carry their topology labels (the layout
/// since those came; older records have none).
pub fn get_cluster_spec(d: &mut Dec, placed: bool) -> Result<ClusterSpec, CodecError> {
    let (id, sku, region) = (d.str()?, d.str()?, d.str()?);
    let n = d.count(8)?;
    let mut nodes = Vec::with_capacity(n);
    for _ in 0..n {
        let (id, gpus) = (d.str()?, d.u32()?);
        let place = if placed {
            Topology {
                block: d.str()?,
                rack: d.str()?,
                domain: d.str()?,
            }
        } else {
            Topology::default()
        };
        nodes.push(NodeSpec { id, gpus, place });
    }
    Ok(ClusterSpec {
        id,
        sku,
        region,
        nodes,
        from_hour: d.i64()?,
        to_hour: d.i64()?,
    })
}

/// Encodes one command (the journal payload of an engine command).
pub fn encode_command(cmd: &Command) -> Vec<u8> {
    let mut e = Enc::default();
    match cmd {
        Command::CreateProduct(s) => {
            e.u8(1);
            put_product_spec(&mut e, s);
        }
        Command::Halt { product } => {
            e.u8(2);
            e.u32(*product);
        }
        Command::Resume { product } => {
            e.u8(3);
            e.u32(*product);
        }
        Command::Close { product } => {
            e.u8(4);
            e.u32(*product);
        }
        Command::RegisterCapacity { account, spec } => {
            e.u8(16); // 5 before nodes had their place

            e.u64(*account);
            put_cluster_spec(&mut e, spec);
        }
        Command::WithdrawCapacity {
            account,
            cluster,
            from_hour,
            to_hour,
            nodes,
        } => {
            e.u8(6);
            e.u64(*account);
            e.u32(*cluster);
            e.i64(*from_hour);
            e.i64(*to_hour);
            e.u32(nodes.len() as u32);
            for n in nodes {
                e.str(n);
            }
        }
        Command::Place(o) => {
            e.u8(7);
            e.u64(o.account);
            e.u32(o.product);
            e.u8(side_code(o.side));
            e.u8(matches!(o.order_type, OrderType::Market) as u8);
            e.i64(o.price);
            e.i64(o.qty);
            put_tif(&mut e, o.tif);
            e.u8(o.post_only as u8);
            e.u8(o.stp as u8);
            e.opt_u32(o.cluster);
            e.u32(o.gang);
        }
        Command::PlaceMinFill { order, min_qty } => {
            e.u8(12);
            e.0.extend(encode_command(&Command::Place(order.clone())));
            e.i64(*min_qty);
        }
        Command::PlaceBasket(legs) => {
            e.u8(14);
            e.u32(legs.len() as u32);
            for o in legs {
                e.0.extend(encode_command(&Command::Place(o.clone())));
            }
        }
        Command::PlaceOneOf(alts) => {
            e.u8(13);
            e.u32(alts.len() as u32);
            for b in alts {
                e.0.extend(encode_command(&Command::PlaceBlock(b.clone())));
            }
        }
        Command::PlaceIceberg { order, clip } => {
            e.u8(15);
            e.0.extend(encode_command(&Command::Place(order.clone())));
            e.i64(*clip);
        }
        Command::PlaceResale {
            order,
            parent,
            slots,
            fee_bps,
        } => {
            e.u8(18);
            e.0.extend(encode_command(&Command::Place(order.clone())));
            e.u64(*parent);
            put_slots(&mut e, slots);
            e.u32(*fee_bps);
        }
        Command::PlaceBlock(b) => {
            // 11 before blocks had placement terms; 20 an auction order
            e.u8(if b.auction { 20 } else { 17 });
            put_block(&mut e, b);
        }
        Command::PlaceSellerBlock(b) => {
            e.u8(24);
            e.u64(b.account);
            e.u32(b.cluster);
            e.u32(b.product);
            e.u32(b.hours);
            e.i64(b.price);
            e.i64(b.qty);
            put_tif(&mut e, b.tif);
        }
        Command::HoldForAuction { product } => {
            e.u8(23);
            e.u32(*product);
        }
        Command::AuctionStart {
            auction,
            from_hour,
            to_hour,
        } => {
            e.u8(21);
            e.u64(*auction);
            e.i64(*from_hour);
            e.i64(*to_hour);
        }
        Command::AuctionClear {
            auction,
            fills,
            prices,
            abandoned,
            sold,
        } => {
            e.u8(22);
            e.u64(*auction);
            e.u8(*abandoned as u8);
            e.u32(sold.len() as u32);
            for id in sold {
                e.u64(*id);
            }
            e.u32(fills.len() as u32);
            for f in fills {
                e.u64(f.order_id);
                e.u32(f.alternative);
                e.u32(f.cluster);
                e.u32(f.start);
                e.i64(f.qty);
                e.u32(f.slots.len() as u32);
                for &(node, mask) in &f.slots {
                    e.u32(node);
                    e.u64(mask);
                }
            }
            e.u32(prices.len() as u32);
            for &(p, px) in prices {
                e.u32(p);
                e.i64(px);
            }
        }
        Command::Cancel { account, order_id } => {
            e.u8(8);
            e.u64(*account);
            e.u64(*order_id);
        }
        Command::Amend {
            account,
            order_id,
            price,
            qty,
        } => {
            e.u8(9);
            e.u64(*account);
            e.u64(*order_id);
            e.i64(price.unwrap_or(0));
            e.i64(qty.unwrap_or(0));
        }
        Command::AdvanceTime => e.u8(10),
        Command::IdBase { base } => {
            e.u8(19);
            e.u64(*base);
        }
    }
    e.0
}

fn decode_order(d: &mut Dec) -> Result<NewOrder, CodecError> {
    Ok(NewOrder {
        account: d.u64()?,
        product: d.u32()?,
        side: side_of(d.u8()?)?,
        order_type: match d.u8()? {
            0 => OrderType::Limit,
            1 => OrderType::Market,
            _ => return Err(CodecError("order type")),
        },
        price: d.i64()?,
        qty: d.i64()?,
        tif: get_tif(d)?,
        post_only: d.u8()? != 0,
        stp: stp_of(d.u8()?)?,
        cluster: d.opt_u32()?,
        gang: d.u32()?,
    })
}

/// A block bid's terms (commands and snapshots write them alike).
pub fn put_block(e: &mut Enc, b: &NewBlock) {
    e.u64(b.account);
    e.u32(b.product);
    e.u32(b.hours);
    e.i64(b.price);
    e.i64(b.qty);
    e.u32(b.gang);
    put_tif(e, b.tif);
    e.u32(b.window);
    e.u8(b.place.level.map_or(0, |l| l as u8 + 1));
    e.u8(b.place.preferred as u8);
    e.u64(b.place.near.unwrap_or(0));
}

/// A block's terms; `placed` when they carry placement (the layout since; older
/// records have none).
pub fn get_block(d: &mut Dec, placed: bool) -> Result<NewBlock, CodecError> {
    let (account, product, hours) = (d.u64()?, d.u32()?, d.u32()?);
    let (price, qty, gang) = (d.i64()?, d.i64()?, d.u32()?);
    let (tif, window) = (get_tif(d)?, d.u32()?);
    let place = if placed {
        let level = match d.u8()? {
            0 => None,
            x => Some(*Level::ALL.get(x as usize - 1).ok_or(CodecError("level"))?),
        };
        let preferred = d.u8()? != 0;
        let near = Some(d.u64()?).filter(|&t| t != 0);
        Placement {
            level,
            preferred,
            near,
        }
    } else {
        Placement::default()
    };
    Ok(NewBlock {
        account,
        product,
        hours,
        price,
        qty,
        gang,
        tif,
        window,
        place,
        auction: false,
    })
}

pub fn decode_command(buf: &[u8]) -> Result<Command, CodecError> {
    let mut d = Dec::new(buf);
    let tag = d.u8()?;
    let cmd = match tag {
        1 => Command::CreateProduct(get_product_spec(&mut d)?),
        2 => Command::Halt { product: d.u32()? },
        3 => Command::Resume { product: d.u32()? },
        4 => Command::Close { product: d.u32()? },
        5 | 16 => Command::RegisterCapacity {
            account: d.u64()?,
            spec: get_cluster_spec(&mut d, tag == 16)?,
        },
        6 => {
            let (account, cluster, from_hour, to_hour) = (d.u64()?, d.u32()?, d.i64()?, d.i64()?);
            let n = d.count(4)?;
            let mut nodes = Vec::with_capacity(n);
            for _ in 0..n {
                nodes.push(d.str()?);
            }
            Command::WithdrawCapacity {
                account,
                cluster,
                from_hour,
                to_hour,
                nodes,
            }
        }
        7 => Command::Place(decode_order(&mut d)?),
        8 => Command::Cancel {
            account: d.u64()?,
            order_id: d.u64()?,
        },
        9 => {
            let (account, order_id, price, qty) = (d.u64()?, d.u64()?, d.i64()?, d.i64()?);
            Command::Amend {
                account,
                order_id,
                price: (price != 0).then_some(price),
                qty: (qty != 0).then_some(qty),
            }
        }
        10 => Command::AdvanceTime,
        19 => Command::IdBase { base: d.u64()? },
        12 => {
            if d.u8()? != 7 {
                return Err(CodecError("minimum fill of a non-order"));
            }
            Command::PlaceMinFill {
                order: decode_order(&mut d)?,
                min_qty: d.i64()?,
            }
        }
        11 | 17 => Command::PlaceBlock(get_block(&mut d, tag == 17)?),
        20 => Command::PlaceBlock(NewBlock {
            auction: true,
            ..get_block(&mut d, true)?
        }),
        23 => Command::HoldForAuction { product: d.u32()? },
        21 => Command::AuctionStart {
            auction: d.u64()?,
            from_hour: d.i64()?,
            to_hour: d.i64()?,
        },
        22 => {
            let (auction, abandoned) = (d.u64()?, d.u8()? != 0);
            let mut sold = Vec::new();
            for _ in 0..d.count(8)? {
                sold.push(d.u64()?);
            }
            let mut fills = Vec::new();
            for _ in 0..d.count(32)? {
                let (order_id, alternative, cluster, start, qty) =
                    (d.u64()?, d.u32()?, d.u32()?, d.u32()?, d.i64()?);
                let mut slots = Vec::new();
                for _ in 0..d.count(12)? {
                    slots.push((d.u32()?, d.u64()?));
                }
                fills.push(AuctionFill {
                    order_id,
                    alternative,
                    cluster,
                    start,
                    qty,
                    slots,
                });
            }
            let mut prices = Vec::new();
            for _ in 0..d.count(12)? {
                prices.push((d.u32()?, d.i64()?));
            }
            Command::AuctionClear {
                auction,
                fills,
                prices,
                abandoned,
                sold,
            }
        }
        24 => Command::PlaceSellerBlock(NewSellerBlock {
            account: d.u64()?,
            cluster: d.u32()?,
            product: d.u32()?,
            hours: d.u32()?,
            price: d.i64()?,
            qty: d.i64()?,
            tif: get_tif(&mut d)?,
        }),
        15 => {
            if d.u8()? != 7 {
                return Err(CodecError("iceberg of a non-order"));
            }
            Command::PlaceIceberg {
                order: decode_order(&mut d)?,
                clip: d.i64()?,
            }
        }
        18 => {
            if d.u8()? != 7 {
                return Err(CodecError("resale of a non-order"));
            }
            Command::PlaceResale {
                order: decode_order(&mut d)?,
                parent: d.u64()?,
                slots: get_slots(&mut d)?,
                fee_bps: d.u32()?,
            }
        }
        14 => {
            let n = d.u32()? as usize;
            if n > 100 {
                return Err(CodecError("basket size"));
            }
            let mut legs = Vec::with_capacity(n);
            for _ in 0..n {
                if d.u8()? != 7 {
                    return Err(CodecError("basket leg"));
                }
                legs.push(decode_order(&mut d)?);
            }
            Command::PlaceBasket(legs)
        }
        13 => {
            let n = d.u32()? as usize;
            if n > 16 {
                return Err(CodecError("one-of group size"));
            }
            let mut alts = Vec::with_capacity(n);
            for _ in 0..n {
                let inner = d.u8()?;
                if inner != 11 && inner != 17 && inner != 20 {
                    return Err(CodecError("one-of alternative"));
                }
                let mut b = get_block(&mut d, inner != 11)?;
                b.auction = inner == 20;
                alts.push(b);
            }
            Command::PlaceOneOf(alts)
        }
        _ => return Err(CodecError("command kind")),
    };
    d.done()?;
    Ok(cmd)
}

/// An allocation as a snapshot keeps it (version 3 on: with its lineage and fee).
pub fn put_allocation(e: &mut Enc, a: &Allocation) {
    e.u64(a.trade_id);
    e.u32(a.product);
    e.u32(a.cluster);
    e.i64(a.hour);
    e.u64(a.buyer);
    e.u64(a.seller);
    e.u64(a.buy_order);
    e.u64(a.sell_order);
    e.i64(a.price);
    put_slots(e, &a.slots);
    e.u64(a.parent.unwrap_or(0));
    e.i64(a.fee);
}

/// `lineage`: the snapshot is version 3 or later (parent and fee follow the slots).
pub fn get_allocation(d: &mut Dec, lineage: bool) -> Result<Allocation, CodecError> {
    let mut a = Allocation {
        trade_id: d.u64()?,
        product: d.u32()?,
        cluster: d.u32()?,
        hour: d.i64()?,
        buyer: d.u64()?,
        seller: d.u64()?,
        buy_order: d.u64()?,
        sell_order: d.u64()?,
        price: d.i64()?,
        slots: Vec::new(),
        parent: None,
        fee: 0,
    };
    a.slots = get_slots(d)?;
    if lineage {
        let parent = d.u64()?;
        a.parent = (parent != 0).then_some(parent);
        a.fee = d.i64()?;
    }
    Ok(a)
}

pub fn put_slots(e: &mut Enc, slots: &[Slot]) {
    e.u32(slots.len() as u32);
    for s in slots {
        e.u32(s.node);
        e.u64(s.gpus);
    }
}

pub fn get_slots(d: &mut Dec) -> Result<Vec<Slot>, CodecError> {
    let n = d.count(12)?;
    let mut slots = Vec::with_capacity(n);
    for _ in 0..n {
        slots.push(Slot {
            node: d.u32()?,
            gpus: d.u64()?,
        });
    }
    Ok(slots)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_round_trip_and_damage_is_refused() {
        let cmds = vec![
            Command::CreateProduct(ProductSpec {
                id: "H100/r/2026-01-01T00".into(),
                tick: 10,
                lot: 1,
                open_at: 1,
                close_at: 2,
            }),
            Command::WithdrawCapacity {
                account: 3,
                cluster: 1,
                from_hour: 5,
                to_hour: 9,
                nodes: vec!["a".into(), "b".into()],
            },
            Command::Place(NewOrder {
                tif: TimeInForce::GoodTillTime(77),
                cluster: Some(4),
                gang: 8,
                ..NewOrder::limit(1, 2, Side::Sell, 300, 16)
            }),
            Command::Amend {
                account: 1,
                order_id: 9,
                price: None,
                qty: Some(3),
            },
            Command::AdvanceTime,
            Command::IdBase { base: 2 << 48 },
        ];
        for c in cmds {
            let b = encode_command(&c);
            assert_eq!(decode_command(&b).unwrap(), c);
            assert!(decode_command(&b[..b.len() - 1]).is_err());
            let mut longer = b.clone();
            longer.push(0);
            assert!(decode_command(&longer).is_err());
        }
        assert!(decode_command(&[99]).is_err());
        // a huge count in a short record is refused, not allocated
        assert!(decode_command(&[
            6, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
            255, 255, 255, 127
        ])
        .is_err());
    }
}
