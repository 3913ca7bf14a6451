//! Generated order flow for benchmarks and engine comparisons: the benchmark workload
//! and the realistic flow of `spotex_core`, as packed records and plain setup rows.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use spotex_core as core;
use spotex_core::Command;

/// The benchmark workload (see `spotex_core::workload`): `(products, clusters, records)`
/// where products are `(id, tick, lot, open_at, close_at)`, clusters are
/// `(account, id, sku, region, nodes, from_hour, to_hour)` and records are packed commands
/// whose product and cluster handles follow the listing order.
#[pyfunction]
#[pyo3(signature = (seed=42, ops=1_000_000, products=24, sellers=4, nodes_per_cluster=2_500, max_live=1_000))]
#[allow(clippy::type_complexity)]
pub(crate) fn workload<'py>(
    py: Python<'py>,
    seed: u64,
    ops: usize,
    products: u32,
    sellers: u32,
    nodes_per_cluster: u32,
    max_live: usize,
) -> PyResult<(
    Vec<(String, i64, i64, i64, i64)>,
    Vec<(u64, String, String, String, Vec<(String, u32)>, i64, i64)>,
    Bound<'py, PyBytes>,
)> {
    let spec = core::workload::WorkloadSpec {
        seed,
        ops,
        products,
        sellers,
        nodes_per_cluster,
        max_live,
    };
    let (ps, cs) = market_of(core::workload::setup_commands(&spec));
    let recs = py.detach(|| core::workload::records(&spec));
    Ok((ps, cs, PyBytes::new(py, &recs)))
}

pub(crate) type ProductRow = (String, i64, i64, i64, i64);
pub(crate) type ClusterRow = (u64, String, String, String, Vec<(String, u32)>, i64, i64);

/// Setup commands as plain rows a caller can replay through the public API.
pub(crate) fn market_of(cmds: Vec<Command>) -> (Vec<ProductRow>, Vec<ClusterRow>) {
    let mut ps = Vec::new();
    let mut cs = Vec::new();
    for c in cmds {
        match c {
            Command::CreateProduct(p) => ps.push((p.id, p.tick, p.lot, p.open_at, p.close_at)),
            Command::RegisterCapacity { account, spec: c } => cs.push((
                account,
                c.id,
                c.sku,
                c.region,
                c.nodes.into_iter().map(|n| (n.id, n.gpus)).collect(),
                c.from_hour,
                c.to_hour,
            )),
            _ => {}
        }
    }
    (ps, cs)
}

/// The realistic order flow for engine comparisons (see `spotex_core::flow`):
/// `(products, clusters, records, counts)`, shaped like [`workload`]. `scenario` is one
/// of `calm`, `trending`, `volatile`, `crash`.
#[pyfunction]
#[pyo3(signature = (scenario, *, seed=42, new_orders=1_000_000, sellers=4))]
#[allow(clippy::type_complexity)]
pub(crate) fn flow<'py>(
    py: Python<'py>,
    scenario: &str,
    seed: u64,
    new_orders: usize,
    sellers: u32,
) -> PyResult<(
    Vec<ProductRow>,
    Vec<ClusterRow>,
    Bound<'py, PyBytes>,
    std::collections::BTreeMap<&'static str, usize>,
)> {
    use core::flow::{FlowSpec, Scenario};
    let scenario = Scenario::ALL
        .into_iter()
        .find(|s| s.name() == scenario)
        .ok_or_else(|| PyValueError::new_err(format!("unknown scenario {scenario:?}")))?;
    if sellers == 0 {
        return Err(PyValueError::new_err("sellers must be at least 1"));
    }
    let spec = FlowSpec {
        seed,
        new_orders,
        scenario,
        sellers,
    };
    let (recs, counts) = py.detach(|| core::flow::generate(&spec));
    let (ps, cs) = market_of(core::flow::setup_commands(&spec, &counts));
    let summary = [
        ("new_orders", counts.new_orders),
        ("ioc", counts.ioc),
        ("amends", counts.amends),
        ("cancels", counts.cancels),
        ("duplicate_cancels", counts.duplicate_cancels),
        ("messages", counts.messages),
    ]
    .into_iter()
    .collect();
    Ok((ps, cs, PyBytes::new(py, &recs), summary))
}
