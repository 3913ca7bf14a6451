//! spotex-exchange: the order's whole life around the engine, deterministic and pure.
//!
//! The engine (`spotex-core`) matches; the exchange keeps everything per order around it:
//! order records with fills and terminal states, client-order-id dedupe, per-account
//! open-order limits, the command sequence, market-data deltas with per-product sequences
//! and executions with per-account sequences. It speaks the public contract: requests
//! and responses are the protobuf messages generated from `protos/`. Time is an input.

pub mod exchange;
pub mod records;
pub mod refusal;

/// The contract's messages (`spotex.v1`), generated from `protos/` by the build.
pub mod pb {
    include!(concat!(env!("OUT_DIR"), "/spotex.v1.rs"));
}

pub use exchange::{Caller, Exchange, Round};
pub use refusal::Refusal;
