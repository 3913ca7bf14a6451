//! A seeded synthetic order flow for benchmarks: the same seed gives the same records on
//! every machine, so the pure-Rust, Python and reference-model runs replay one stream.
//!
//! The market: `products` consecutive delivery hours of one SKU and region, `sellers`
//! clusters of `nodes_per_cluster` 8-GPU nodes covering every hour, and ten buyers. The
//! mix per operation: 60% passive limit orders at a heavy-tailed distance from the mid
//! (a quarter of bids with a gang of 8), 30% cancels of a random live order, 10% IOC
//! orders that cross the spread. The book stays at a realistic depth because once a
//! product holds `max_live` orders its adds turn into cancels.

use crate::batch::{encode_order_command, encode_place, kind, RECORD};
use crate::capacity::{ClusterSpec, NodeSpec};
use crate::command::{Command, NewOrder};
use crate::engine::Engine;
use crate::product::{format_hour, ProductSpec};
use crate::types::*;

#[derive(Clone, Debug)]
pub struct WorkloadSpec {
    pub seed: u64,
    pub ops: usize,
    pub products: u32,
    pub sellers: u32,
    pub nodes_per_cluster: u32,
    pub max_live: usize,
}

impl Default for WorkloadSpec {
    fn default() -> Self {
        WorkloadSpec {
            seed: 42,
            ops: 1_000_000,
            products: 24,
            sellers: 4,
            nodes_per_cluster: 2_500,
            max_live: 1_000,
        }
    }
}

/// SplitMix64: tiny, fast, and fully specified, so streams never change with a library upgrade.
/// Shared by the seeded generators, tests and examples of the workspace.
pub struct Rng(pub u64);

impl Rng {
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

pub const START_HOUR: i64 = 490_000; // late 2025
pub const T0: Timestamp = START_HOUR * MICROS_PER_HOUR;
pub const TICK: Price = 10_000;
pub const MID: Price = 2_000_000;
pub const BUYERS: u64 = 10;

pub fn seller_account(i: u32) -> AccountId {
    1 + i as AccountId
}

/// The products (handles 0..products) and clusters (handles 0..sellers) the records use.
pub fn setup_commands(spec: &WorkloadSpec) -> Vec<Command> {
    let mut cmds = Vec::new();
    for p in 0..spec.products {
        let hour = START_HOUR + 48 + p as i64;
        cmds.push(Command::CreateProduct(ProductSpec {
            id: format!("H100-SXM/us-east/{}", format_hour(hour)),
            tick: TICK,
            lot: 1,
            open_at: T0,
            close_at: (hour - 1) * MICROS_PER_HOUR,
        }));
    }
    for s in 0..spec.sellers {
        cmds.push(Command::RegisterCapacity {
            account: seller_account(s),
            spec: ClusterSpec {
                id: format!("cluster-{s}"),
                sku: "H100-SXM".into(),
                region: "us-east".into(),
                nodes: (0..spec.nodes_per_cluster)
                    .map(|n| NodeSpec {
                        id: format!("node-{n}"),
                        gpus: 8,
                        place: Default::default(),
                    })
                    .collect(),
                from_hour: START_HOUR,
                to_hour: START_HOUR + 48 + spec.products as i64,
            },
        });
    }
    cmds
}

pub fn setup(engine: &mut Engine, spec: &WorkloadSpec) {
    let mut out = Vec::new();
    for c in setup_commands(spec) {
        engine
            .apply(T0, &c, &mut out)
            .expect("workload setup is valid");
    }
}

/// The operation records, `RECORD` bytes each.
pub fn records(spec: &WorkloadSpec) -> Vec<u8> {
    let mut rng = Rng(spec.seed);
    let mut out = Vec::with_capacity(spec.ops * RECORD);
    // live[p]: (order id, account) of orders this stream believes rest in product p
    let mut live: Vec<Vec<(OrderId, AccountId)>> = vec![Vec::new(); spec.products as usize];
    let mut next_id: OrderId = 1;
    for i in 0..spec.ops {
        let ts = T0 + 1 + i as Timestamp;
        let p = rng.below(spec.products as u64) as usize;
        let roll = rng.below(100);
        let book = &mut live[p];
        if (60..90).contains(&roll) || (roll < 60 && book.len() >= spec.max_live) {
            if book.is_empty() {
                out.extend_from_slice(&encode_order_command(kind::ADVANCE_TIME, 0, 0, 0, 0, ts));
                continue;
            }
            let k = rng.below(book.len() as u64) as usize;
            let (id, account) = book.swap_remove(k);
            out.extend_from_slice(&encode_order_command(kind::CANCEL, account, id, 0, 0, ts));
            continue;
        }
        let side = if rng.below(2) == 0 {
            Side::Buy
        } else {
            Side::Sell
        };
        let seller = rng.below(spec.sellers as u64) as u32;
        let account = match side {
            Side::Buy => 100 + rng.below(BUYERS),
            Side::Sell => seller_account(seller),
        };
        let aggressive = roll >= 90;
        // power-law distance from the mid in ticks, P(d >= x) ~ 1/x: mostly near the
        // touch, sometimes far; integer-only so the stream is identical everywhere
        let distance = (1_000 / (1 + rng.below(1_000)) as i64).min(100);
        let (price, tif) = if aggressive {
            let px = match side {
                Side::Buy => MID + 5 * TICK,
                Side::Sell => MID - 5 * TICK,
            };
            (px, TimeInForce::ImmediateOrCancel)
        } else {
            let px = match side {
                Side::Buy => MID - distance * TICK,
                Side::Sell => MID + (distance - 1) * TICK,
            };
            (px, TimeInForce::GoodTillClose)
        };
        let gang = if side == Side::Buy && rng.below(4) == 0 {
            8
        } else {
            1
        };
        let qty = if gang == 8 {
            8 * (1 + rng.below(4) as Qty)
        } else {
            1 + rng.below(16) as Qty
        };
        let order = NewOrder {
            tif,
            cluster: (side == Side::Sell).then_some(seller),
            gang,
            ..NewOrder::limit(account, p as ProductHandle, side, price, qty)
        };
        out.extend_from_slice(&encode_place(&order, ts));
        let id = next_id;
        next_id += 1;
        if !aggressive {
            book.push((id, account));
        }
    }
    out
}
