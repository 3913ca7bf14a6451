//! What the exchange's test files share: the hours they trade and their callers.

#![allow(dead_code)] // each test file uses its own part

use spotex_exchange::{pb, Caller, Exchange};

pub const HOUR: i64 = 3_600_000_000;
/// The first delivery hour.
pub const H0: i64 = 490_000;
/// The time the tests trade at: ten hours before H0.
pub const T0: i64 = (H0 - 10) * HOUR;

pub fn seller(account: u64) -> Caller {
    Caller {
        account,
        buyer: false,
        seller: true,
    }
}

pub fn buyer(account: u64) -> Caller {
    Caller {
        account,
        buyer: true,
        seller: false,
    }
}

/// A cluster in us-east of `nodes` 8-GPU nodes (`n0`, `n1`, ...) over hours `[from, to)`.
pub fn capacity(
    cluster: &str,
    sku: &str,
    nodes: usize,
    from: i64,
    to: i64,
) -> pb::RegisterCapacityRequest {
    pb::RegisterCapacityRequest {
        cluster_id: cluster.into(),
        sku: sku.into(),
        region: "us-east".into(),
        nodes: (0..nodes)
            .map(|n| pb::Node {
                node_id: format!("n{n}"),
                gpus: 8,
                ..Default::default()
            })
            .collect(),
        from_hour: from,
        to_hour: to,
    }
}

/// The snapshot and the journal give back the same exchange.
pub fn assert_recovers(ex: &mut Exchange) {
    let back = Exchange::restore(&ex.snapshot(), 10_000).unwrap();
    assert_eq!(back.state_hash(), ex.state_hash(), "snapshot");
    let mut again = Exchange::new(10_000);
    for e in ex.take_journal() {
        again.replay(e.seq, e.ts, &e.command).unwrap();
    }
    assert_eq!(again.state_hash(), ex.state_hash(), "journal replay");
}
