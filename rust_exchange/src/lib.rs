//! spotex-exchange: the order's whole life around the engine, deterministic and pure.
//!
//! The engine (`spotex-core`) matches; the exchange keeps everything per order around it:
//! order records with fills and terminal states, client-order-id dedupe, per-account
//! open-order limits, the command sequence, market-data deltas with per-product sequences
//! and executions with per-account sequences. It speaks the public contract: requests
//! and responses are the protobuf messages generated from `protos/`. Time is an input.

pub mod exchange;
pub mod records;
pub mod recovery;
pub mod refusal;

/// Generated messages, nested as their packages are (prost refers across them so).
mod generated {
    pub mod spotex {
        /// The public contract (`protos/spotex/v1`).
        pub mod v1 {
            include!(concat!(env!("OUT_DIR"), "/spotex.v1.rs"));
        }
        /// The exchange's journal commands and snapshots (`proto/spotex/store/v1`).
        pub mod store {
            pub mod v1 {
                include!(concat!(env!("OUT_DIR"), "/spotex.store.v1.rs"));
            }
        }
    }
}

/// The exchange's own store format (`spotex.store.v1`): journal commands and snapshots.
pub use generated::spotex::store::v1 as store;
/// The contract's messages (`spotex.v1`), generated from `protos/` by the build.
pub use generated::spotex::v1 as pb;

pub use exchange::{Caller, Exchange, JournalEntry, Round, StoreError, FEE_ACCOUNT, OUTSIDE};
pub use recovery::{recover, Recovery};
pub use refusal::{status_code, Refusal, STATUS_CODES};
