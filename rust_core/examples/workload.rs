//! Runs the benchmark workload once through the engine and prints throughput:
//! `cargo run --release -p spotex-core --example workload [OPS]` (handy under a profiler).

use spotex_core::batch::{decode_command, RECORD};
use spotex_core::workload::{records, setup, WorkloadSpec};
use spotex_core::Engine;

fn main() {
    let ops = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(1_000_000);
    let spec = WorkloadSpec {
        ops,
        ..WorkloadSpec::default()
    };
    let recs = records(&spec);
    let cmds: Vec<_> = recs
        .chunks_exact(RECORD)
        .map(|r| decode_command(r).unwrap())
        .collect();
    let mut engine = Engine::new();
    setup(&mut engine, &spec);
    let mut out = Vec::with_capacity(64);
    let mut rejected = 0usize;
    let start = std::time::Instant::now();
    for (ts, cmd) in &cmds {
        out.clear();
        rejected += engine.apply(*ts, cmd, &mut out).is_err() as usize;
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "{} ops in {:.3}s: {:.0} ops/s, {} rejected, {} open orders",
        cmds.len(),
        secs,
        cmds.len() as f64 / secs,
        rejected,
        engine.open_order_count()
    );
}
