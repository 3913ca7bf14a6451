//! The fuzz harness (fuzz/harness.rs) on a seeded stream of byte strings, biased towards
//! valid records, plus every crash the fuzzer ever found (fuzz/regressions/), so CI
//! checks the command path without a sanitizer toolchain.

include!("../fuzz/harness.rs");

use spotex_core::workload::Rng;

#[test]
fn random_command_streams_never_panic_or_leak_a_rejection() {
    let mut rng = Rng(7);
    for _ in 0..400 {
        let n = (rng.next() % 12) as usize;
        let mut data = Vec::new();
        for _ in 0..n {
            let mut r = [0u8; RECORD];
            for b in r.iter_mut() {
                *b = rng.next() as u8;
            }
            // mostly plausible: a known kind and enums, small handles, sane numbers
            if rng.next() % 4 != 0 {
                r[0] = 1 + (rng.next() % 4) as u8;
                for b in &mut r[1..6] {
                    *b %= 3;
                }
                r[6] = [0, 1, 2, 8][(rng.next() % 4) as usize];
                r[8..12].copy_from_slice(&((rng.next() % 3) as u32).to_le_bytes());
                r[12..16].copy_from_slice(&((rng.next() % 3) as u32).to_le_bytes());
                r[16..24].copy_from_slice(&(1 + rng.next() % 3).to_le_bytes());
                r[24..32].copy_from_slice(&(rng.next() % 20).to_le_bytes());
                r[32..40].copy_from_slice(
                    &(((rng.next() % 40) as i64 - 5) * 10_000 + 1_800_000).to_le_bytes(),
                );
                r[40..48].copy_from_slice(&((rng.next() % 20) as i64 - 2).to_le_bytes());
                let ts = spotex_core::workload::T0 + (rng.next() % 1_000_000_000) as i64;
                r[48..56].copy_from_slice(&ts.to_le_bytes());
            }
            data.extend_from_slice(&r);
        }
        let tail = (rng.next() % 40) as usize;
        data.extend((0..tail).map(|_| rng.next() as u8));
        check(&data);
    }
}

#[test]
fn regressions_found_by_the_fuzzer() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions");
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            check(&std::fs::read(e.path()).unwrap());
        }
    }
}
