//! GPU placement: which GPUs of a cluster a block gets, best fit in whole gangs, within
//! one domain when its placement terms name a level.

use super::Engine;
use crate::capacity::Level;
use crate::types::*;

impl Engine {
    /// `qty` GPUs of cluster `c` in whole gangs of `g` from `common` (per node, the GPUs
    /// free in every hour), placed best fit: the nodes with the fewest such GPUs first,
    /// then the lowest index. With a `level`, all in one domain at that level: of the
    /// domains that can hold them (only the one holding `near`, when given), the one
    /// with the fewest free gangs, then the lowest name. The GPUs as `(node, mask)` and
    /// the domain's name.
    pub(super) fn place_gpus(
        &self,
        c: usize,
        common: &[u64],
        g: u32,
        qty: Qty,
        level: Option<Level>,
        near: Option<u32>,
    ) -> Option<(Vec<(u32, u64)>, String)> {
        let nodes = &self.clusters[c].spec.nodes;
        let gangs = |n: usize| (common[n].count_ones() / g) as Qty;
        let need = qty / g as Qty;
        let mut fits: Vec<usize> = (0..nodes.len()).filter(|&n| gangs(n) > 0).collect();
        let mut domain = String::new();
        if let Some(level) = level {
            let mut domains: std::collections::BTreeMap<String, (Qty, Vec<usize>)> =
                Default::default();
            for &n in &fits {
                let d = domains.entry(nodes[n].domain_at(level)).or_default();
                d.0 += gangs(n);
                d.1.push(n);
            }
            let wanted = near.map(|n| nodes[n as usize].domain_at(level));
            let (name, (_, members)) = domains
                .into_iter()
                .filter(|(name, (free, _))| {
                    *free >= need && wanted.as_ref().is_none_or(|w| w == name)
                })
                .min_by(|a, b| (a.1 .0, &a.0).cmp(&(b.1 .0, &b.0)))?;
            domain = name;
            fits = members;
        }
        fits.sort_by_key(|&n| (common[n].count_ones(), n));
        let mut gangs_left = need;
        let mut slots = Vec::new();
        for n in fits {
            if gangs_left == 0 {
                break;
            }
            let take = (common[n].count_ones() / g).min(gangs_left as u32);
            let mut mask = 0u64;
            let mut free = common[n];
            for _ in 0..take * g {
                let bit = free & free.wrapping_neg();
                mask |= bit;
                free &= !bit;
            }
            slots.push((n as u32, mask));
            gangs_left -= take as Qty;
        }
        (gangs_left == 0).then_some((slots, domain))
    }
}
