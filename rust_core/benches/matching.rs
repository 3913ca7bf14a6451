//! `cargo bench -p spotex-core`: the synthetic workload (60% add, 30% cancel, 10% IOC,
//! gang bids, capacity-backed asks on 10,000 nodes) through the pure-Rust engine.

use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use spotex_core::batch::{decode_command, RECORD};
use spotex_core::workload::{records, setup, WorkloadSpec};
use spotex_core::Engine;

fn matching(c: &mut Criterion) {
    let spec = WorkloadSpec {
        ops: 200_000,
        ..WorkloadSpec::default()
    };
    let recs = records(&spec);
    let cmds: Vec<_> = recs
        .chunks_exact(RECORD)
        .map(|r| decode_command(r).unwrap())
        .collect();
    let mut base = Engine::new();
    setup(&mut base, &spec);
    let mut group = c.benchmark_group("engine");
    group.throughput(Throughput::Elements(cmds.len() as u64));
    group.sample_size(10);
    group.bench_function("workload_200k_ops", |b| {
        b.iter_batched_ref(
            || (base.clone(), Vec::with_capacity(64)),
            |(engine, out)| {
                for (ts, cmd) in &cmds {
                    out.clear();
                    let _ = engine.apply(*ts, cmd, out);
                }
            },
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, matching);
criterion_main!(benches);
