//! The spotex core on the flow: the records decoded once into commands, then applied to
//! a fresh engine per run.

use std::time::{Duration, Instant};

use spotex_core::batch::{decode_command, RECORD};
use spotex_core::flow::{self, FlowCounts, FlowSpec};
use spotex_core::{Command, Engine, Event, Timestamp};

use crate::report::Line;

/// The flow's records as the engine's own commands (done before timing). Panics on an
/// amend that does not name a positive price and quantity: in a record 0 means
/// "unchanged", which the peers have no way to say, and the flow never emits one.
pub fn decode(records: &[u8]) -> Vec<(Timestamp, Command)> {
    records
        .chunks_exact(RECORD)
        .enumerate()
        .map(|(i, r)| {
            let (ts, cmd) = decode_command(r).expect("the flow's records decode");
            if let Command::Amend {
                order_id,
                price,
                qty,
                ..
            } = cmd
            {
                assert!(
                    price.is_some_and(|p| p > 0) && qty.is_some_and(|q| q > 0),
                    "record {i} amends order {order_id} to price {} qty {}: every amend in \
                     the flow must name a positive price and quantity",
                    price.unwrap_or(0),
                    qty.unwrap_or(0)
                );
            }
            (ts, cmd)
        })
        .collect()
}

/// One run: a fresh engine with the flow's market set up, then the timed loop over every
/// command. Trades and refusals go to `lines`; the engine is dropped after timing.
pub fn timed_run(
    spec: &FlowSpec,
    counts: &FlowCounts,
    cmds: &[(Timestamp, Command)],
    lines: &mut Vec<Line>,
) -> Duration {
    let mut engine = Engine::new();
    flow::setup(&mut engine, spec, counts);
    let mut events = Vec::with_capacity(64);
    lines.clear();

    let start = Instant::now();
    for (ts, cmd) in cmds {
        events.clear();
        if engine.apply(*ts, cmd, &mut events).is_err() {
            lines.push(Line::Refused {
                order: refused_order(cmd),
            });
            continue;
        }
        for event in &events {
            if let Event::Trade {
                taker_order,
                maker_order,
                price,
                qty,
                ..
            } = *event
            {
                lines.push(Line::Trade {
                    taker: taker_order,
                    maker: maker_order,
                    price,
                    qty,
                });
            }
        }
    }
    start.elapsed()
}

/// The order a refused command was about. Only cancels and amends can be refused: the
/// flow sizes capacity so that no place ever is.
fn refused_order(cmd: &Command) -> u64 {
    match cmd {
        Command::Cancel { order_id, .. } | Command::Amend { order_id, .. } => *order_id,
        other => panic!("spotex refused a command the flow expects accepted: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use spotex_core::batch::{encode_order_command, kind};

    use super::*;

    #[test]
    fn an_amend_to_a_positive_price_and_quantity_decodes() {
        let record = encode_order_command(kind::AMEND, 7, 3, 1_990_000, 5, 1_000);
        let cmds = decode(&record);
        assert!(matches!(
            cmds[..],
            [(
                1_000,
                Command::Amend {
                    order_id: 3,
                    price: Some(1_990_000),
                    qty: Some(5),
                    ..
                }
            )]
        ));
    }

    #[test]
    #[should_panic(expected = "record 1 amends order 3 to price 0 qty 5")]
    fn an_amend_record_with_price_0_stops_the_run() {
        let mut records = encode_order_command(kind::CANCEL, 7, 2, 0, 0, 1_000).to_vec();
        records.extend(encode_order_command(kind::AMEND, 7, 3, 0, 5, 1_000));
        decode(&records);
    }
}
