//! Why the exchange refused a request: a stable machine-readable reason (the code in the
//! error's `google.rpc.ErrorInfo`) and a message for people. A refused request changes
//! nothing but the clock (see [`crate::Exchange`]).

use spotex_core::Reject;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: &'static str,
    pub message: String,
}

impl Refusal {
    pub fn new(reason: &'static str, message: impl Into<String>) -> Refusal {
        Refusal {
            reason,
            message: message.into(),
        }
    }
}

impl From<Reject> for Refusal {
    fn from(r: Reject) -> Refusal {
        Refusal::new(r.code(), r.message())
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.reason, self.message)
    }
}

impl std::error::Error for Refusal {}

/// The gRPC status code of each refusal reason that is not INVALID_ARGUMENT (3): defined
/// once, here; the service reads it through the binding.
pub const STATUS_CODES: &[(&str, i32)] = &[
    ("UNKNOWN_PRODUCT", 5),
    ("UNKNOWN_ORDER", 5),
    ("UNKNOWN_AUCTION", 5),
    ("UNKNOWN_CLUSTER", 5),
    ("DUPLICATE_PRODUCT", 6),
    ("DUPLICATE_CLUSTER", 6),
    ("DUPLICATE_CLIENT_ORDER_ID", 6),
    ("PRODUCT_NOT_OPEN", 9),
    ("PRODUCT_HALTED", 9),
    ("PRODUCT_CLOSED", 9),
    ("POST_ONLY_WOULD_CROSS", 9),
    ("INSUFFICIENT_CAPACITY", 9),
    ("IDS_IN_USE", 9),
    ("AUCTION_IN_PROGRESS", 9),
    ("AUCTION_NOT_RUNNING", 9),
    ("AUCTION_FIRST", 9),
    // money: a buy (or amend, withdrawal) that its account cannot cover; a credit limit
    // below what its holds use
    ("INSUFFICIENT_FUNDS", 9),
    ("MOVE_OUT_OF_ORDER", 9),
    ("CREDIT_IN_USE", 9),
    ("NOT_OWNER", 7),
    ("ROLE_REQUIRED", 7),
    ("ACCOUNT_DISABLED", 7),
    ("UNKNOWN_ACCOUNT", 5),
    ("OPERATOR_ACCOUNT", 9),
    ("UNAUTHENTICATED", 16),
    ("RATE_LIMITED", 8),
    ("TOO_MANY_OPEN_ORDERS", 8),
    ("TOO_MANY_ORDERS", 8),
    ("TOO_MANY_PRODUCTS", 8),
    ("SUBSCRIBER_LAGGED", 8),
    ("DEADLINE_EXCEEDED", 4),
    ("JOURNAL_UNAVAILABLE", 14),
    // published to the journal, never confirmed: maybe applied (gRPC UNKNOWN, which no
    // client retries by itself); resolved by looking the order up by client order id
    ("OUTCOME_UNKNOWN", 2),
    ("SHARD_UNAVAILABLE", 14),
    ("INTERNAL", 13),
];

/// The gRPC status code for a refusal reason.
pub fn status_code(reason: &str) -> i32 {
    STATUS_CODES
        .iter()
        .find(|(r, _)| *r == reason)
        .map_or(3, |(_, c)| *c)
}
