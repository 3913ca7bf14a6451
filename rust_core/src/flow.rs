//! A realistic, seeded order flow for comparing engines: the mid price walks at random
//! (calmly, trending, volatile, or crashing), passive orders rest at a power-law distance
//! from the mid, about 15% of new orders are IOC orders crossing the spread, about 20% of
//! resting orders get amended, about 95% are eventually cancelled, and a small share of
//! cancels arrive twice (the late duplicate must be rejected). One product; asks draw on
//! the capacity that `workload::setup` registers. Same seed, same bytes, on every machine.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use crate::batch::{encode_order_command, encode_place, kind, RECORD};
use crate::capacity::NodeSpec;
use crate::command::{Command, NewOrder};
use crate::engine::Engine;
use crate::types::*;
use crate::workload::{seller_account, setup_commands as workload_setup, Rng, WorkloadSpec};
use crate::workload::{MID, T0, TICK};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scenario {
    /// Small symmetric steps.
    Calm,
    /// A steady drift upwards.
    Trending,
    /// Large symmetric steps.
    Volatile,
    /// Calm, then a sell-off: the mid falls fast and sellers dominate.
    Crash,
}

impl Scenario {
    pub const ALL: [Scenario; 4] = [
        Scenario::Calm,
        Scenario::Trending,
        Scenario::Volatile,
        Scenario::Crash,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::Calm => "calm",
            Scenario::Trending => "trending",
            Scenario::Volatile => "volatile",
            Scenario::Crash => "crash",
        }
    }
}

#[derive(Clone, Debug)]
pub struct FlowSpec {
    pub seed: u64,
    pub new_orders: usize,
    pub scenario: Scenario,
    /// Sellers whose clusters back the asks (handles 0..sellers, as in `workload::setup`).
    pub sellers: u32,
}

/// What the stream holds, for reporting and for tests of the mix.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowCounts {
    pub new_orders: usize,
    pub ioc: usize,
    pub amends: usize,
    pub cancels: usize,
    pub duplicate_cancels: usize,
    pub messages: usize,
    /// Per seller: the GPUs of all its asks plus all its amends, a bound on what its
    /// cluster must hold for the stream never to meet a capacity refusal.
    pub seller_gpus: Vec<Qty>,
}

enum Later {
    Amend {
        id: OrderId,
        account: AccountId,
        price: Price,
        qty: Qty,
    },
    Cancel {
        id: OrderId,
        account: AccountId,
        duplicate: bool,
    },
}

/// GPUs per node in the flow's clusters (the most a node may have).
const NODE_GPUS: u32 = 64;

/// The market the flow trades in: one product (handle 0) and one cluster per seller
/// (handles 0..sellers), each large enough that capacity never refuses an ask, so the
/// stream means the same to engines that know nothing of capacity: a seller's cluster
/// holds every GPU its asks and amends in `counts` could ever reserve or sell.
pub fn setup_commands(spec: &FlowSpec, counts: &FlowCounts) -> Vec<Command> {
    let mut cmds = workload_setup(&WorkloadSpec {
        products: 1,
        sellers: spec.sellers,
        nodes_per_cluster: 0,
        ..WorkloadSpec::default()
    });
    for c in &mut cmds {
        if let Command::RegisterCapacity {
            account,
            spec: cluster,
        } = c
        {
            let seller = (*account - seller_account(0)) as usize;
            let gpus = counts.seller_gpus.get(seller).copied().unwrap_or(0) as u64;
            let nodes = gpus.div_ceil(NODE_GPUS as u64).max(1);
            cluster.nodes = (0..nodes)
                .map(|n| NodeSpec {
                    id: format!("node-{n}"),
                    gpus: NODE_GPUS,
                    place: Default::default(),
                })
                .collect();
        }
    }
    cmds
}

/// Applies [`setup_commands`] to an engine.
pub fn setup(engine: &mut Engine, spec: &FlowSpec, counts: &FlowCounts) {
    let mut out = Vec::new();
    for c in setup_commands(spec, counts) {
        engine.apply(T0, &c, &mut out).expect("flow setup is valid");
    }
}

/// The records (64 bytes each, see `batch`) and what they contain.
pub fn generate(spec: &FlowSpec) -> (Vec<u8>, FlowCounts) {
    let mut rng = Rng(spec.seed ^ 0x5107_F10E);
    let mut out = Vec::with_capacity(spec.new_orders * 2 * RECORD);
    let mut counts = FlowCounts {
        seller_gpus: vec![0; spec.sellers as usize],
        ..FlowCounts::default()
    };
    // actions due at a later message index; the slot breaks ties deterministically
    let mut due: Due = BinaryHeap::new();
    let mut actions: Vec<Option<Later>> = Vec::new();
    let mut mid_ticks: i64 = MID / TICK;
    let mut next_id: OrderId = 1;
    let mut msg = 0usize;
    let ts = |msg: usize| T0 + 1 + msg as Timestamp;
    let crash_from = spec.new_orders / 2;

    for n in 0..spec.new_orders {
        // the mid moves
        let crashing = spec.scenario == Scenario::Crash && n >= crash_from;
        let step = match spec.scenario {
            Scenario::Calm => [-1, 0, 0, 1][rng.below(4) as usize],
            Scenario::Trending => [-1, 0, 1, 1][rng.below(4) as usize],
            Scenario::Volatile => rng.below(7) as i64 - 3,
            Scenario::Crash if crashing => [-3, -2, -1, 0, 1][rng.below(5) as usize],
            Scenario::Crash => [-1, 0, 0, 1][rng.below(4) as usize],
        };
        if rng.below(8) == 0 {
            mid_ticks = (mid_ticks + step).clamp(60, 500);
        }
        let sell_bias = if crashing { 65 } else { 50 };
        let side = if rng.below(100) < sell_bias {
            Side::Sell
        } else {
            Side::Buy
        };
        let seller = rng.below(spec.sellers as u64) as u32;
        let account = match side {
            Side::Buy => 100 + rng.below(10),
            Side::Sell => seller_account(seller),
        };
        let ioc = rng.below(100) < 15;
        let distance = (1_000 / (1 + rng.below(1_000)) as i64).min(100);
        let price_ticks = match (side, ioc) {
            (Side::Buy, true) => mid_ticks + 1 + rng.below(3) as i64,
            (Side::Sell, true) => mid_ticks - 1 - rng.below(3) as i64,
            (Side::Buy, false) => mid_ticks - distance,
            (Side::Sell, false) => mid_ticks + distance,
        };
        let qty = 1 + rng.below(16) as Qty;
        let order = NewOrder {
            tif: if ioc {
                TimeInForce::ImmediateOrCancel
            } else {
                TimeInForce::GoodTillClose
            },
            cluster: (side == Side::Sell).then_some(seller),
            ..NewOrder::limit(account, 0, side, price_ticks.max(1) * TICK, qty)
        };
        out.extend_from_slice(&encode_place(&order, ts(msg)));
        msg += 1;
        if side == Side::Sell {
            counts.seller_gpus[seller as usize] += qty;
        }
        counts.new_orders += 1;
        let id = next_id;
        next_id += 1;
        if ioc {
            counts.ioc += 1;
            continue;
        }
        // the resting order's future: amended (20%), cancelled (95%), cancelled twice (2%)
        let life = 1 + (4_000 / (1 + rng.below(1_000))) as usize;
        // (a bid already at one tick cannot step lower: no amend for it)
        let new_price = order.price + if side == Side::Buy { -TICK } else { TICK };
        if rng.below(100) < 20 && new_price > 0 {
            let new_qty = if rng.below(2) == 0 {
                (qty / 2).max(1)
            } else {
                qty
            };
            if side == Side::Sell {
                counts.seller_gpus[seller as usize] += new_qty;
            }
            let amend = Later::Amend {
                id,
                account,
                price: new_price,
                qty: new_qty,
            };
            schedule(&mut due, &mut actions, msg + life / 2, amend);
        }
        if rng.below(100) < 95 {
            let cancel = Later::Cancel {
                id,
                account,
                duplicate: false,
            };
            schedule(&mut due, &mut actions, msg + life, cancel);
            if rng.below(100) < 2 {
                let late = msg + life + 1 + rng.below(50) as usize;
                let again = Later::Cancel {
                    id,
                    account,
                    duplicate: true,
                };
                schedule(&mut due, &mut actions, late, again);
            }
        }
        // everything due by now goes out
        while let Some(&Reverse((at, slot))) = due.peek() {
            if at > msg {
                break;
            }
            due.pop();
            msg += emit(&mut out, actions[slot].take(), ts(msg), &mut counts);
        }
    }
    // the tail: what is still scheduled, in order
    while let Some(Reverse((_, slot))) = due.pop() {
        msg += emit(&mut out, actions[slot].take(), ts(msg), &mut counts);
    }
    counts.messages = msg;
    (out, counts)
}

type Due = BinaryHeap<Reverse<(usize, usize)>>;

fn schedule(due: &mut Due, actions: &mut Vec<Option<Later>>, at: usize, what: Later) {
    due.push(Reverse((at, actions.len())));
    actions.push(Some(what));
}

fn emit(out: &mut Vec<u8>, what: Option<Later>, ts: Timestamp, counts: &mut FlowCounts) -> usize {
    match what {
        Some(Later::Amend {
            id,
            account,
            price,
            qty,
        }) => {
            out.extend_from_slice(&encode_order_command(
                kind::AMEND,
                account,
                id,
                price,
                qty,
                ts,
            ));
            counts.amends += 1;
            1
        }
        Some(Later::Cancel {
            id,
            account,
            duplicate,
        }) => {
            out.extend_from_slice(&encode_order_command(kind::CANCEL, account, id, 0, 0, ts));
            counts.cancels += 1;
            counts.duplicate_cancels += duplicate as usize;
            1
        }
        None => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::apply_batch;

    #[test]
    fn the_mix_is_as_documented_and_reproducible() {
        for scenario in Scenario::ALL {
            let spec = FlowSpec {
                seed: 9,
                new_orders: 20_000,
                scenario,
                sellers: 4,
            };
            let (bytes, c) = generate(&spec);
            assert_eq!(generate(&spec).0, bytes, "same seed, same stream");
            assert_eq!(bytes.len(), c.messages * RECORD);
            let resting = c.new_orders - c.ioc;
            let share = |x: usize, of: usize| x as f64 / of as f64;
            assert!((0.13..0.17).contains(&share(c.ioc, c.new_orders)), "{c:?}");
            assert!((0.17..0.23).contains(&share(c.amends, resting)), "{c:?}");
            let first_cancels = c.cancels - c.duplicate_cancels;
            assert!(
                (0.93..0.97).contains(&share(first_cancels, resting)),
                "{c:?}"
            );
            assert!(c.duplicate_cancels > 0);
            // every amend moves the price, to a positive one (0 means "unchanged" in a
            // record): engines without that convention read the stream the same way
            for r in bytes.chunks_exact(RECORD).filter(|r| r[0] == kind::AMEND) {
                assert!(i64::from_le_bytes(r[32..40].try_into().unwrap()) > 0);
            }
            // an engine takes it: the duplicates and cancels of filled orders are refused
            let mut engine = Engine::new();
            setup(&mut engine, &spec, &c);
            let mut events = Vec::new();
            apply_batch(&mut engine, &bytes, &mut events).unwrap();
            let rejected: Vec<&[u8]> = events.chunks_exact(RECORD).filter(|e| e[4] == 2).collect();
            assert!(
                rejected.len() >= c.duplicate_cancels && rejected.len() < c.messages / 4,
                "{}",
                rejected.len()
            );
            // only cancels and amends of orders no longer live are refused: never a
            // new order, so capacity never binds
            let is_place = |e: &&&[u8]| {
                let at = u32::from_le_bytes(e[0..4].try_into().unwrap()) as usize * RECORD;
                bytes[at] == kind::PLACE
            };
            assert_eq!(rejected.iter().filter(is_place).count(), 0);
        }
    }
}
