//! Seller capacity and the GPU-slot allocator.
//!
//! A seller registers clusters (nodes of N GPUs of one SKU in one region, available for a
//! range of delivery hours). For every cluster and hour the engine keeps, per node, which
//! GPUs are still free (neither sold nor withdrawn), and how many GPU-hours open asks
//! offer. The invariant `offered <= free` is what makes "no GPU-hour is sold twice" hold:
//! an ask reserves a count, and a trade turns part of that count into concrete GPUs.

use std::collections::BTreeSet;

use crate::reject::Reject;
use crate::types::{AccountId, OrderId, Qty};

pub type ClusterHandle = u32;

/// Largest number of GPUs on one node: a node's GPUs are one `u64` bit mask.
pub const MAX_GPUS_PER_NODE: u32 = 64;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NodeSpec {
    pub id: String,
    pub gpus: u32,
    /// Where the node sits: its block, rack and NVLink domain, as the site labels them.
    pub place: Topology,
}

/// A node's place in its cluster's tree, outermost first: block (a fabric block or pod),
/// rack, NVLink domain. An empty label means the node shares that level with no other.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Topology {
    pub block: String,
    pub rack: String,
    pub domain: String,
}

/// A level of the tree, tightest first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    Node,
    Domain,
    Rack,
    Block,
    Cluster,
}

impl Level {
    pub const ALL: [Level; 5] = [
        Level::Node,
        Level::Domain,
        Level::Rack,
        Level::Block,
        Level::Cluster,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Level::Node => "node",
            Level::Domain => "nvlink_domain",
            Level::Rack => "rack",
            Level::Block => "block",
            Level::Cluster => "cluster",
        }
    }

    /// The next level out (the cluster is the last).
    pub fn up(self) -> Option<Level> {
        match self {
            Level::Node => Some(Level::Domain),
            Level::Domain => Some(Level::Rack),
            Level::Rack => Some(Level::Block),
            Level::Block => Some(Level::Cluster),
            Level::Cluster => None,
        }
    }
}

impl NodeSpec {
    /// The name of the domain that holds this node at `level` ("" for the cluster):
    /// the labels down to that level joined by '/', and the node's own id where a label
    /// is missing (then the node shares that level with no other).
    pub fn domain_at(&self, level: Level) -> String {
        let p = &self.place;
        let parts: Vec<&str> = match level {
            Level::Cluster => return String::new(),
            Level::Node => return format!("node:{}", self.id),
            Level::Block => vec![&p.block],
            Level::Rack => vec![&p.block, &p.rack],
            Level::Domain => vec![&p.block, &p.rack, &p.domain],
        };
        if parts.last().is_some_and(|l| l.is_empty()) {
            return format!("node:{}", self.id);
        }
        parts.join("/")
    }
}

/// What a seller supplies to register a cluster.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClusterSpec {
    pub id: String,
    pub sku: String,
    pub region: String,
    pub nodes: Vec<NodeSpec>,
    /// First available delivery hour (hours since the epoch), inclusive.
    pub from_hour: i64,
    /// Last available delivery hour, exclusive.
    pub to_hour: i64,
}

#[derive(Clone, Debug)]
pub struct Cluster {
    pub spec: ClusterSpec,
    pub seller: AccountId,
    pub total_gpus: Qty,
}

impl Cluster {
    pub fn new(seller: AccountId, spec: ClusterSpec) -> Result<Cluster, Reject> {
        let name_ok = |s: &str| {
            !s.is_empty()
                && s.len() <= 64
                && s.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
        };
        if !name_ok(&spec.id) || !name_ok(&spec.sku) || !name_ok(&spec.region) {
            return Err(Reject::InvalidCapacity);
        }
        if spec.nodes.is_empty() || spec.nodes.len() > 100_000 || spec.from_hour >= spec.to_hour {
            return Err(Reject::InvalidCapacity);
        }
        if spec.to_hour - spec.from_hour > 24 * 366 {
            return Err(Reject::InvalidCapacity);
        }
        let mut ids = BTreeSet::new();
        for n in &spec.nodes {
            if n.gpus == 0 || n.gpus > MAX_GPUS_PER_NODE || !name_ok(&n.id) || !ids.insert(&n.id) {
                return Err(Reject::InvalidCapacity);
            }
            let p = &n.place;
            if [&p.block, &p.rack, &p.domain]
                .iter()
                .any(|l| !l.is_empty() && !name_ok(l))
            {
                return Err(Reject::InvalidCapacity);
            }
        }
        let total_gpus = spec.nodes.iter().map(|n| n.gpus as Qty).sum();
        Ok(Cluster {
            spec,
            seller,
            total_gpus,
        })
    }

    pub fn covers(&self, hour: i64) -> bool {
        self.spec.from_hour <= hour && hour < self.spec.to_hour
    }

    pub fn full_mask(&self, node: usize) -> u64 {
        mask_of(self.spec.nodes[node].gpus)
    }
}

pub fn mask_of(gpus: u32) -> u64 {
    if gpus >= 64 {
        u64::MAX
    } else {
        (1u64 << gpus) - 1
    }
}

/// A set of node indices with O(1) insert and remove and a fast lowest member: one bit per
/// node, plus one summary bit per 64-node word. No allocation after construction.
#[derive(Clone, Debug)]
pub struct NodeSet {
    words: Vec<u64>,
    summary: Vec<u64>,
    len: usize,
}

impl NodeSet {
    pub fn new(nodes: usize) -> NodeSet {
        let words = nodes.div_ceil(64);
        NodeSet {
            words: vec![0; words],
            summary: vec![0; words.div_ceil(64)],
            len: 0,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn insert(&mut self, i: u32) {
        let (w, b) = (i as usize / 64, i % 64);
        if self.words[w] & (1 << b) == 0 {
            self.words[w] |= 1 << b;
            self.summary[w / 64] |= 1 << (w % 64);
            self.len += 1;
        }
    }

    pub fn remove(&mut self, i: u32) {
        let (w, b) = (i as usize / 64, i % 64);
        if self.words[w] & (1 << b) != 0 {
            self.words[w] &= !(1 << b);
            if self.words[w] == 0 {
                self.summary[w / 64] &= !(1 << (w % 64));
            }
            self.len -= 1;
        }
    }

    pub fn first(&self) -> Option<u32> {
        if self.len == 0 {
            return None;
        }
        let (s, bits) = self.summary.iter().enumerate().find(|(_, x)| **x != 0)?;
        let w = s * 64 + bits.trailing_zeros() as usize;
        Some((w * 64) as u32 + self.words[w].trailing_zeros())
    }
}

/// One concrete placement: these GPUs (bit i = GPU index i) of this node.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Slot {
    pub node: u32,
    pub gpus: u64,
}

/// Free GPUs of one cluster for one delivery hour.
#[derive(Clone, Debug)]
pub struct ClusterHour {
    pub cluster: ClusterHandle,
    pub hour: i64,
    /// Per node: GPUs neither sold nor withdrawn.
    pub free: Vec<u64>,
    /// Per node: GPUs sold.
    pub sold: Vec<u64>,
    /// GPU-hours reserved by open asks on this cluster and hour.
    pub offered: Qty,
    /// Total free GPUs (sum of popcounts of `free`).
    pub free_total: Qty,
    /// Nodes grouped by their free count: `by_free[f]` holds node indices with exactly f
    /// free GPUs. Best fit for a gang of g is the lowest index in the first non-empty
    /// bucket at or above g.
    by_free: Vec<NodeSet>,
}

impl ClusterHour {
    pub fn new(handle: ClusterHandle, hour: i64, cluster: &Cluster) -> ClusterHour {
        let n = cluster.spec.nodes.len();
        let free: Vec<u64> = (0..n).map(|i| cluster.full_mask(i)).collect();
        // buckets only up to the largest node: most fleets are all 8-GPU nodes
        let widest = cluster.spec.nodes.iter().map(|n| n.gpus).max().unwrap_or(0) as usize;
        let mut by_free = vec![NodeSet::new(n); widest + 1];
        for (i, m) in free.iter().enumerate() {
            by_free[m.count_ones() as usize].insert(i as u32);
        }
        ClusterHour {
            cluster: handle,
            hour,
            sold: vec![0; n],
            offered: 0,
            free_total: cluster.total_gpus,
            free,
            by_free,
        }
    }

    /// Rebuilds a cluster-hour from its stored masks (snapshot restore).
    pub fn restore(
        handle: ClusterHandle,
        hour: i64,
        cluster: &Cluster,
        free: Vec<u64>,
        sold: Vec<u64>,
        offered: Qty,
    ) -> ClusterHour {
        let mut ch = ClusterHour::new(handle, hour, cluster);
        for (i, m) in free.iter().enumerate() {
            ch.set_free(i, *m);
        }
        ch.sold = sold;
        ch.offered = offered;
        ch
    }

    /// GPUs neither sold, withdrawn nor reserved by an ask.
    pub fn unreserved(&self) -> Qty {
        self.free_total - self.offered
    }

    fn set_free(&mut self, node: usize, mask: u64) {
        let before = self.free[node].count_ones() as usize;
        let after = mask.count_ones() as usize;
        if before != after {
            self.by_free[before].remove(node as u32);
            self.by_free[after].insert(node as u32);
        }
        self.free_total += after as Qty - before as Qty;
        self.free[node] = mask;
    }

    /// Marks the GPUs of `mask` on `node` sold; each must be free.
    pub fn take(&mut self, node: usize, mask: u64) {
        debug_assert_eq!(
            self.free[node] & mask,
            mask,
            "taking GPUs that are not free"
        );
        self.set_free(node, self.free[node] & !mask);
        self.sold[node] |= mask;
    }

    /// How many GPUs, up to `max`, can be placed right now in whole gangs of `gang`
    /// GPUs, each gang on one node.
    pub fn placeable(&self, gang: u32, max: Qty) -> Qty {
        let g = gang as usize;
        let wanted = max / gang as Qty;
        let mut gangs: Qty = 0;
        for f in g..self.by_free.len() {
            gangs += self.by_free[f].len() as Qty * (f / g) as Qty;
            if gangs >= wanted {
                return wanted * gang as Qty;
            }
        }
        gangs * gang as Qty
    }

    /// Places `qty` GPUs in gangs of `gang`, best fit per gang: the node whose free count
    /// is the smallest that still holds the gang, lowest node index on ties, lowest GPU
    /// indices on the node. The caller has checked `placeable`. Returns the slots, one
    /// per node, in node order.
    pub fn allocate(&mut self, gang: u32, qty: Qty) -> Vec<Slot> {
        debug_assert!(qty % gang as Qty == 0);
        let g = gang as usize;
        let mut gangs_left = qty / gang as Qty;
        let mut slots: Vec<Slot> = Vec::new();
        while gangs_left > 0 {
            let (f, node) = (g..self.by_free.len())
                .find_map(|f| self.by_free[f].first().map(|n| (f, n as usize)))
                .expect("allocate called beyond placeable capacity");
            // Gang by gang, best fit keeps choosing this node while it still holds a gang:
            // its new free count is below every other non-empty bucket at or above g
            // (there were none between g and f). So take those gangs at once.
            let take = ((f / g) as Qty).min(gangs_left);
            gangs_left -= take;
            let mut taken = 0u64;
            let mut free = self.free[node];
            for _ in 0..take as usize * g {
                let bit = free & free.wrapping_neg();
                taken |= bit;
                free &= !bit;
            }
            self.set_free(node, free);
            self.sold[node] |= taken;
            match slots.iter_mut().find(|s| s.node == node as u32) {
                Some(s) => s.gpus |= taken,
                None => slots.push(Slot {
                    node: node as u32,
                    gpus: taken,
                }),
            }
        }
        slots.sort();
        slots
    }

    /// Free GPUs that would remain if the given nodes were withdrawn.
    pub fn withdrawal_leaves(&self, nodes: &[u32]) -> Qty {
        let removed: Qty = nodes
            .iter()
            .map(|&n| self.free[n as usize].count_ones() as Qty)
            .sum();
        self.free_total - removed
    }

    /// Takes the given nodes' free GPUs out of sale for this hour; sold GPUs stay sold.
    /// The engine checks `withdrawal_leaves` against open asks first.
    pub fn withdraw(&mut self, nodes: &[u32]) {
        for &n in nodes {
            self.set_free(n as usize, 0);
        }
    }
}

/// The GPUs a resale ask offers: some slots of one allocation its seller holds, for that
/// allocation's cluster and hour. They are sold already (the cluster-hour counts them
/// sold); a fill moves them from the holder to the buyer, placed as `ClusterHour`
/// places free GPUs (best fit per gang, then the lowest node, the lowest GPU indices).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResalePool {
    pub cluster: ClusterHandle,
    pub hour: i64,
    /// The allocation the GPUs come from (its index in the engine's allocations).
    pub parent: u32,
    /// The resale ask drawing on the pool.
    pub order: OrderId,
    /// Charged to the seller on each fill, in basis points of the trade's value.
    pub fee_bps: u32,
    /// The GPUs not sold yet, one slot per node, in node order.
    pub free: Vec<Slot>,
    /// GPUs reserved by the ask while it rests.
    pub offered: Qty,
}

impl ResalePool {
    pub fn free_total(&self) -> Qty {
        self.free.iter().map(|s| s.gpus.count_ones() as Qty).sum()
    }

    pub fn unreserved(&self) -> Qty {
        self.free_total() - self.offered
    }

    /// Lets `n` GPUs go from the pool (its ask offers fewer): from the nodes with the
    /// fewest GPUs in it first (ties: the highest node), the highest GPU indices first,
    /// so that whole gangs stay on offer.
    pub fn release(&mut self, n: Qty) {
        let mut left = n.max(0);
        while left > 0 {
            let Some(k) = (0..self.free.len()).min_by_key(|&k| {
                (
                    self.free[k].gpus.count_ones(),
                    std::cmp::Reverse(self.free[k].node),
                )
            }) else {
                break;
            };
            let gpus = &mut self.free[k].gpus;
            while left > 0 && *gpus != 0 {
                *gpus &= !(1u64 << (63 - gpus.leading_zeros()));
                left -= 1;
            }
            self.free.retain(|s| s.gpus != 0);
        }
    }

    /// As `ClusterHour::placeable`, over the pool's GPUs.
    pub fn placeable(&self, gang: u32, max: Qty) -> Qty {
        let gangs: Qty = self
            .free
            .iter()
            .map(|s| (s.gpus.count_ones() / gang) as Qty)
            .sum();
        gangs.min(max / gang as Qty) * gang as Qty
    }

    /// As `ClusterHour::allocate`, over the pool's GPUs: they leave the pool.
    pub fn allocate(&mut self, gang: u32, qty: Qty) -> Vec<Slot> {
        let mut taken: Vec<Slot> = Vec::new();
        for _ in 0..qty / gang as Qty {
            let k = (0..self.free.len())
                .filter(|&k| self.free[k].gpus.count_ones() >= gang)
                .min_by_key(|&k| (self.free[k].gpus.count_ones(), self.free[k].node))
                .expect("allocate called beyond placeable capacity");
            let mut gpus = 0u64;
            for _ in 0..gang {
                let free = self.free[k].gpus & !gpus;
                gpus |= free & free.wrapping_neg();
            }
            self.free[k].gpus &= !gpus;
            let node = self.free[k].node;
            match taken.iter_mut().find(|s| s.node == node) {
                Some(s) => s.gpus |= gpus,
                None => taken.push(Slot { node, gpus }),
            }
        }
        self.free.retain(|s| s.gpus != 0);
        taken.sort();
        taken
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cluster(gpus: &[u32]) -> Cluster {
        Cluster::new(
            1,
            ClusterSpec {
                id: "c".into(),
                sku: "H100".into(),
                region: "r".into(),
                nodes: gpus
                    .iter()
                    .enumerate()
                    .map(|(i, &g)| NodeSpec {
                        id: format!("n{i}"),
                        gpus: g,
                        place: Topology::default(),
                    })
                    .collect(),
                from_hour: 0,
                to_hour: 10,
            },
        )
        .unwrap()
    }

    #[test]
    fn best_fit_prefers_the_tightest_node() {
        let c = cluster(&[8, 8, 8]);
        let mut ch = ClusterHour::new(0, 0, &c);
        // 6 GPUs on node 0 leaves it with 2 free
        assert_eq!(
            ch.allocate(2, 6),
            vec![Slot {
                node: 0,
                gpus: 0b111111
            }]
        );
        // a gang of 2 fits node 0 exactly: no new node broken
        assert_eq!(
            ch.allocate(2, 2),
            vec![Slot {
                node: 0,
                gpus: 0b11000000
            }]
        );
        // a gang of 4 goes to node 1 (tie with node 2 broken by index)
        assert_eq!(
            ch.allocate(4, 4),
            vec![Slot {
                node: 1,
                gpus: 0b1111
            }]
        );
        assert_eq!(ch.placeable(8, 100), 8);
        assert_eq!(ch.placeable(4, 100), 12);
        assert_eq!(ch.placeable(1, 5), 5);
        assert_eq!(ch.free_total, 12);
    }

    #[test]
    fn withdraw_removes_only_free_gpus() {
        let c = cluster(&[8, 4]);
        let mut ch = ClusterHour::new(0, 0, &c);
        // best fit puts the 3 GPUs on the smaller node
        assert_eq!(
            ch.allocate(1, 3),
            vec![Slot {
                node: 1,
                gpus: 0b111
            }]
        );
        assert_eq!(ch.withdrawal_leaves(&[0]), 1);
        ch.withdraw(&[0]);
        assert_eq!(ch.free_total, 1);
        assert_eq!(ch.sold[1], 0b111);
        assert_eq!(ch.placeable(1, 8), 1);
        assert_eq!(ch.placeable(2, 8), 0);
    }

    #[test]
    fn rejects_bad_capacity() {
        let mut spec = cluster(&[8]).spec;
        spec.nodes.push(NodeSpec {
            id: "n0".into(),
            gpus: 8,
            place: Topology::default(),
        });
        assert_eq!(
            Cluster::new(1, spec.clone()).unwrap_err(),
            Reject::InvalidCapacity
        );
        spec.nodes.truncate(1);
        spec.nodes[0].gpus = 65;
        assert_eq!(
            Cluster::new(1, spec.clone()).unwrap_err(),
            Reject::InvalidCapacity
        );
        spec.nodes[0].gpus = 8;
        spec.to_hour = spec.from_hour;
        assert_eq!(Cluster::new(1, spec).unwrap_err(), Reject::InvalidCapacity);
    }
}
