//! spotex-core: the deterministic engine of the spotex GPU-hour exchange.
//!
//! Pure Rust with no I/O and no clock: the caller stamps every command with its time.
//! Same commands in, same events and the same [`Engine::state_hash`] out.

pub mod batch;
pub mod book;
pub mod capacity;
pub mod codec;
pub mod command;
pub mod engine;
pub mod flow;
pub mod journal;
pub mod product;
pub mod reject;
pub mod types;
pub mod workload;

pub use book::RestingOrder;
pub use capacity::{Cluster, ClusterHandle, ClusterSpec, Level, NodeSpec, Slot, Topology};
pub use command::{
    Allocation, AuctionFill, CancelReason, Command, Event, ExpireReason, NewBlock, NewOrder,
    NewSellerBlock, Placement,
};
pub use engine::{
    AuctionView, Engine, OpenAuction, RestingBlock, SellerBlock, Utilisation, ViewAsk, ViewBid,
    ViewCluster, MAX_ALTERNATIVES, MAX_BASKET_LEGS, MAX_BLOCK_HOURS, MAX_FEE_BPS, RETRY_TOP,
    RETRY_TURN,
};
pub use product::{Product, ProductSpec};
pub use reject::Reject;
pub use types::*;
