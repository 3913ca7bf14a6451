//! What the exchange's test files share: the hours they trade and their callers.

#![allow(dead_code)] // each test file uses its own part

use spotex_exchange::Caller;

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
