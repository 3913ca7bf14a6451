//! Capacity: sellers' clusters, registered and withdrawn, and their cluster-hours (each
//! hour's GPUs, created on first use); what the asks drawing on a cluster-hour or a
//! resale pool reserve and can still place.

use super::{pool_of, Engine};
use crate::capacity::{Cluster, ClusterHandle, ClusterHour, ClusterSpec};
use crate::command::*;
use crate::reject::Reject;
use crate::types::*;

impl Engine {
    /// The cluster `seller` registered as `id` (a cluster id is scoped to its seller).
    pub fn cluster_handle(&self, seller: AccountId, id: &str) -> Option<ClusterHandle> {
        self.cluster_index.get(&(seller, id.to_string())).copied()
    }

    /// Every cluster registered as `id`, by any seller, in registration order (tools that
    /// name a cluster without its seller; on a venue where ids are unique, at most one).
    pub fn clusters_named<'a>(&'a self, id: &'a str) -> impl Iterator<Item = ClusterHandle> + 'a {
        self.clusters
            .iter()
            .enumerate()
            .filter(move |(_, c)| c.spec.id == id)
            .map(|(h, _)| h as ClusterHandle)
    }

    pub fn clusters(&self) -> &[Cluster] {
        &self.clusters
    }

    pub(super) fn register_capacity(
        &mut self,
        account: AccountId,
        spec: &ClusterSpec,
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        let cluster = Cluster::new(account, spec.clone())?;
        let key = (account, spec.id.clone());
        if self.cluster_index.contains_key(&key) {
            return Err(Reject::DuplicateCluster);
        }
        let h = self.clusters.len() as ClusterHandle;
        self.cluster_index.insert(key, h);
        self.clusters.push(cluster);
        out.push(Event::CapacityRegistered {
            cluster: h,
            account,
        });
        Ok(())
    }

    pub(super) fn withdraw_capacity(
        &mut self,
        account: AccountId,
        cluster: ClusterHandle,
        from_hour: i64,
        to_hour: i64,
        nodes: &[String],
        out: &mut Vec<Event>,
    ) -> Result<(), Reject> {
        let c = self
            .clusters
            .get(cluster as usize)
            .filter(|c| c.seller == account)
            .ok_or(Reject::UnknownCluster)?;
        if from_hour >= to_hour {
            return Err(Reject::InvalidCapacity);
        }
        let node_ix: Vec<u32> = if nodes.is_empty() {
            (0..c.spec.nodes.len() as u32).collect()
        } else {
            let mut ix = Vec::with_capacity(nodes.len());
            for n in nodes {
                let i = c
                    .spec
                    .nodes
                    .iter()
                    .position(|s| &s.id == n)
                    .ok_or(Reject::InvalidCapacity)?;
                ix.push(i as u32);
            }
            ix.sort_unstable();
            ix.dedup();
            ix
        };
        let from = from_hour.max(c.spec.from_hour);
        let to = to_hour.min(c.spec.to_hour);
        // Check every hour before touching any, so a refusal changes nothing.
        for hour in from..to {
            if let Some(&i) = self.cluster_hour_index.get(&(cluster, hour)) {
                let ch = &self.cluster_hours[i as usize];
                if ch.withdrawal_leaves(&node_ix) < ch.offered {
                    return Err(Reject::InsufficientCapacity);
                }
            }
        }
        let mut gpu_hours = 0;
        for hour in from..to {
            let i = self.cluster_hour(cluster, hour);
            let ch = &mut self.cluster_hours[i as usize];
            let before = ch.free_total;
            ch.withdraw(&node_ix);
            gpu_hours += before - ch.free_total;
        }
        out.push(Event::CapacityWithdrawn {
            cluster,
            account,
            gpu_hours,
        });
        Ok(())
    }

    /// Index of the cluster-hour, created on first use with every GPU free.
    pub(super) fn cluster_hour(&mut self, cluster: ClusterHandle, hour: i64) -> u32 {
        if let Some(&i) = self.cluster_hour_index.get(&(cluster, hour)) {
            return i;
        }
        let i = self.cluster_hours.len() as u32;
        self.cluster_hours.push(ClusterHour::new(
            cluster,
            hour,
            &self.clusters[cluster as usize],
        ));
        self.cluster_hour_index.insert((cluster, hour), i);
        i
    }

    pub(super) fn unreserved(&self, cluster: ClusterHandle, hour: i64) -> Qty {
        match self.cluster_hour_index.get(&(cluster, hour)) {
            Some(&i) => self.cluster_hours[i as usize].unreserved(),
            None => self.clusters[cluster as usize].total_gpus,
        }
    }

    /// The GPUs reserved by the asks drawing on `ch`: a cluster-hour, or a resale pool.
    pub(super) fn offered_at(&mut self, ch: u32) -> &mut Qty {
        match pool_of(ch) {
            Some(p) => &mut self.pools[p].offered,
            None => &mut self.cluster_hours[ch as usize].offered,
        }
    }

    pub(super) fn unreserved_at(&self, ch: u32) -> Qty {
        match pool_of(ch) {
            Some(p) => self.pools[p].unreserved(),
            None => self.cluster_hours[ch as usize].unreserved(),
        }
    }

    pub(super) fn placeable_at(&self, ch: u32, gang: u32, max: Qty) -> Qty {
        match pool_of(ch) {
            Some(p) => self.pools[p].placeable(gang, max),
            None => self.cluster_hours[ch as usize].placeable(gang, max),
        }
    }
}
