// The command-path fuzz harness, shared by the cargo-fuzz target and a cargo test.
// Arbitrary bytes as 64-byte batch records and one journal-encoded command, applied to
// an engine with a small market: nothing may panic, a rejected command must leave the
// state hash unchanged, and a snapshot must restore to the same hash.

use spotex_core::batch::{self, apply_record, RECORD};
use spotex_core::codec::decode_command;
use spotex_core::workload::{setup, WorkloadSpec};
use spotex_core::{Command, Engine};

pub fn check(data: &[u8]) {
    let spec = WorkloadSpec {
        ops: 0,
        products: 2,
        sellers: 2,
        nodes_per_cluster: 3,
        ..WorkloadSpec::default()
    };
    let mut engine = Engine::new();
    setup(&mut engine, &spec);
    let mut events = Vec::new();
    let (records, rest) = data.split_at(data.len() / RECORD * RECORD);
    for r in records.chunks_exact(RECORD) {
        events.clear();
        // let time pass first: what falls due is time's doing, not the command's
        if let Ok((ts, _)) = batch::decode_command(r) {
            let _ = engine.apply(ts, &Command::AdvanceTime, &mut events);
        }
        let before = engine.state_hash();
        if apply_record(&mut engine, r, &mut events).is_err() {
            assert_eq!(before, engine.state_hash(), "a rejected record changed the state");
        }
    }
    if let Ok(cmd) = decode_command(rest) {
        events.clear();
        let _ = engine.apply(i64::MAX / 2, &cmd, &mut events);
    }
    let restored = Engine::restore(&engine.snapshot()).expect("a snapshot restores");
    assert_eq!(restored.state_hash(), engine.state_hash());
}
